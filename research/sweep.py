"""Parameter sweeps: a grid, or Optuna's TPE sampler with a fixed seed, over Ray tasks.

A parameter set is one backtest split by symbol (``research.distributed``): every (set,
symbol) is a task, and all tasks of a round go to the executor at once. A set's score is its
``objective`` on the merged result: ``sharpe`` (daily, annualised), ``expectancy_r`` (mean net
PnL per trade in R, after fees: ``expectancy_net_r``) or ``net`` (net PnL in USDT). A set without a score (no trade, a flat curve) ranks
after every scored one; ties keep the order the sets were tried in.

**Reproducible Optuna.** Optuna's sampler is seeded, and it is asked for a fixed ``batch`` of
trials, the batch is run, then the scores are told back in trial order. The sampler thus sees
exactly the same history whatever the number of workers or the order tasks finish in, so the
same command gives the same trials and the same best set with 1, 2 or N workers (it does
depend on ``batch`` and ``seed``).

Search space (``--grid``, repeatable): ``name=1,2,3`` (those values) or, for Optuna only,
``name=10..60`` (an integer range when both ends are integers, else a float range).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from common.errors import ConfigError
from research import distributed as dist
from research import strategy_api as sa

OBJECTIVES = {"sharpe": "sharpe", "expectancy_r": "expectancy_net_r", "net": "net_pnl"}
DEFAULT_BATCH = 8
DEFAULT_SEED = 20241201


@dataclass(frozen=True, slots=True)
class Choices:
    values: tuple


@dataclass(frozen=True, slots=True)
class Range:
    low: float
    high: float
    integer: bool


def parse_space(specs: Sequence[str]) -> dict[str, Choices | Range]:
    """``["n=1,2,3", "rr=1.5..3"]`` -> the space; a ConfigError on anything malformed."""
    space: dict[str, Choices | Range] = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not rest.strip():
            raise ConfigError(f"--grid must be name=v1,v2,... or name=low..high, not {spec!r}")
        if name in space:
            raise ConfigError(f"--grid names {name!r} twice")
        if ".." in rest:
            lo_t, _, hi_t = rest.partition("..")
            lo, hi = _number(lo_t, spec), _number(hi_t, spec)
            if not lo < hi:
                raise ConfigError(f"--grid {spec!r}: low must be below high")
            space[name] = Range(low=lo, high=hi, integer=isinstance(lo, int) and isinstance(hi, int))
        else:
            values = tuple(sa.parse_params(f"{name}={v.strip()}")[name] for v in rest.split(",") if v.strip())
            if not values or len(set(map(repr, values))) != len(values):
                raise ConfigError(f"--grid {spec!r}: need distinct values")
            space[name] = Choices(values=values)
    return space


def _number(text: str, spec: str) -> int | float:
    v = sa.parse_params(f"x={text.strip()}")["x"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"--grid {spec!r}: {text.strip()!r} is not a number")
    return v


def grid(space: Mapping[str, Choices | Range]) -> list[dict[str, Any]]:
    """Every combination, names in sorted order, values in the order given."""
    names = sorted(space)
    for n in names:
        if isinstance(space[n], Range):
            raise ConfigError(f"--grid {n}: a range (low..high) needs --optuna; a grid takes values a,b,c")
    return [dict(zip(names, combo)) for combo in itertools.product(*(space[n].values for n in names))]


def score(summary: Mapping[str, Any], objective: str) -> float | None:
    v = summary.get(OBJECTIVES[objective])
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


# ---------------------------------------------------------------------------- searchers
class GridSearch:
    def __init__(self, space: Mapping[str, Choices | Range]) -> None:
        self.sets = grid(space)
        self.asked = False
        self.method = f"grid of {len(self.sets)}"

    def ask(self) -> list[dict[str, Any]]:
        if self.asked:
            return []
        self.asked = True
        return list(self.sets)

    def tell(self, values: Sequence[float | None]) -> None:
        pass


class OptunaSearch:
    def __init__(self, space: Mapping[str, Choices | Range], trials: int, *, seed: int = DEFAULT_SEED,
                 batch: int = DEFAULT_BATCH) -> None:
        import logging

        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        if trials < 1 or batch < 1:
            raise ConfigError("--optuna and --batch must be >= 1")
        self.optuna = optuna
        self.dists = {}
        for name in sorted(space):
            s = space[name]
            if isinstance(s, Choices):
                self.dists[name] = optuna.distributions.CategoricalDistribution(list(s.values))
            elif s.integer:
                self.dists[name] = optuna.distributions.IntDistribution(int(s.low), int(s.high))
            else:
                self.dists[name] = optuna.distributions.FloatDistribution(float(s.low), float(s.high))
        self.study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        self.left, self.batch, self.pending = trials, batch, []
        self.method = f"optuna TPE, {trials} trials, seed {seed}, batch {batch}"

    def ask(self) -> list[dict[str, Any]]:
        k = min(self.batch, self.left)
        self.left -= k
        self.pending = [self.study.ask(self.dists) for _ in range(k)]
        return [dict(t.params) for t in self.pending]

    def tell(self, values: Sequence[float | None]) -> None:
        for t, v in zip(self.pending, values, strict=True):
            if v is None:
                self.study.tell(t, state=self.optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(t, v)
        self.pending = []


def searcher(space: Mapping[str, Choices | Range], *, optuna_trials: int = 0, seed: int = DEFAULT_SEED,
             batch: int = DEFAULT_BATCH) -> GridSearch | OptunaSearch:
    if not space:
        raise ConfigError("a sweep needs at least one --grid name=values")
    return OptunaSearch(space, optuna_trials, seed=seed, batch=batch) if optuna_trials else GridSearch(space)


# ---------------------------------------------------------------------------- running
@dataclass(frozen=True, kw_only=True)
class Evaluated:
    """One parameter set run: its score, merged trades and summary, per-symbol results."""

    index: int
    params: dict[str, Any]
    value: float | None
    trades: list[dict[str, Any]]
    summary: dict[str, Any]
    results: list[dist.TaskResult]


@dataclass(kw_only=True)
class Problem:
    """One search: a base config (its ``params`` are the defaults every set overrides)."""

    prefix: str
    cfg: Any
    search: GridSearch | OptunaSearch
    models: dict[str, bytes] | None = None
    evaluated: list[Evaluated] | None = None


def run_problems(problems: Sequence[Problem], objective: str, *, workers: int, address: str = "",
                 retries: int = dist.DEFAULT_RETRIES, progress: bool = False) -> None:
    """Run every problem's search to the end; each round's tasks of all problems go out together."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective must be one of {sorted(OBJECTIVES)}, not {objective!r}")
    for p in problems:
        p.evaluated = []
    while True:
        asked = [(p, p.search.ask()) for p in problems]
        if not any(sets for _, sets in asked):
            return
        tasks, spans = [], []
        for p, sets in asked:
            for params in sets:
                k = len(p.evaluated) + sum(1 for q, _ in spans if q is p)
                cfg = replace(p.cfg, params={**dict(p.cfg.params), **params})
                t = dist.split_by_symbol(cfg, prefix=f"{p.prefix}set{k:03d}/", model=p.models)
                spans.append((p, (k, params, cfg, len(tasks), len(tasks) + len(t))))
                tasks.extend(t)
        results = dist.execute(tasks, workers=workers, address=address, retries=retries, progress=progress,
                               label="sweep")
        for p, sets in asked:
            values = []
            for q, (k, params, cfg, a, b) in spans:
                if q is not p:
                    continue
                trades, summary = dist.combine(results[a:b], cfg)
                v = score(summary, objective)
                p.evaluated.append(Evaluated(index=k, params=params, value=v, trades=trades, summary=summary,
                                             results=results[a:b]))
                values.append(v)
            if sets:
                p.search.tell(values)


def ranked(evaluated: Sequence[Evaluated]) -> list[Evaluated]:
    """Best first; unscored last; ties in the order tried."""
    return sorted(evaluated, key=lambda e: (e.value is None, -(e.value or 0.0), e.index))


def sweep_summary(p: Problem, objective: str) -> dict[str, Any]:
    order = ranked(p.evaluated or [])
    if not order:
        raise ConfigError("the sweep ran no parameter set")
    best = order[0]
    return {
        "strategy": best.summary.get("strategy"), "symbols": list(p.cfg.symbols), "from_ms": p.cfg.start_ms,
        "to_ms": p.cfg.end_ms, "objective": objective, "method": p.search.method, "base_params": dict(p.cfg.params),
        "ranked": [{"params": e.params, "objective": e.value,
                    **{k: e.summary.get(k) for k in ("trades", "net_pnl", "sharpe", "expectancy_net_r",
                                                     "max_drawdown_pct")}} for e in order],
        "best": {"params": best.params, "objective": best.value, "summary": best.summary},
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"
