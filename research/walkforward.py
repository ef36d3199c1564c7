"""Walk-forward evaluation: rolling train / test windows, out-of-sample kept apart.

Windows: the first train window starts at ``--from``; train ``[s, s + train)``, then test
``[s + train, s + train + test)``; the next window starts ``step`` days later (default
``step = test``, so the test windows tile the range without overlap); a window whose test
would end after ``--to`` is not run.

On each window:

1. **In-sample (IS)**: the parameter sweep (``research.sweep``: grid or Optuna) runs on the
   train window only, each set from a fresh account and a fresh confidence model; the best
   set by the objective is kept, with its score, its trades and, per symbol, the confidence
   model as it stands at the end of the train window.
2. **Out-of-sample (OOS)**: the test window is run once with that set, each symbol starting
   from the model trained on *its* train window (nothing of the test window or later went
   into it); during the test the model learns online from its own closed trades, as the live
   brain does. The strategy's own state (candle windows, SMC structure) starts empty at the
   test window's start, as it does after a restart without history.

The tasks of every window's sweep go to the executor together (each Optuna round of every
window too), then all the test runs together: same answer for 1, 2 or N workers.

The out-of-sample record is the test windows' trades put end to end (each window's accounts
start again from ``paper_balance_usdt``; the stitched curve adds up their net PnL). The
in-sample record pools the best sets' train trades: optimistic by construction, shown only
next to the out-of-sample one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from common.errors import ConfigError
from research import distributed as dist
from research import metrics
from research import sweep as sw

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    index: int
    train_from_ms: int
    train_to_ms: int
    test_from_ms: int
    test_to_ms: int


def windows(start_ms: int, end_ms: int, train_days: int, test_days: int, step_days: int = 0) -> list[Window]:
    """The rolling windows that fit inside ``[start_ms, end_ms)``."""
    step_days = step_days or test_days
    if train_days < 1 or test_days < 1 or step_days < 1:
        raise ConfigError("--train, --test and --step must be >= 1 day")
    out, s = [], start_ms
    while s + (train_days + test_days) * DAY_MS <= end_ms:
        t = s + train_days * DAY_MS
        out.append(Window(index=len(out), train_from_ms=s, train_to_ms=t, test_from_ms=t,
                          test_to_ms=t + test_days * DAY_MS))
        s += step_days * DAY_MS
    if not out:
        raise ConfigError(f"walk-forward: {train_days} + {test_days} days do not fit in the range")
    return out


def run_walkforward(cfg: Any, make_search: Any, objective: str, *, train_days: int, test_days: int,
                    step_days: int = 0, workers: int = 1, address: str = "", retries: int = dist.DEFAULT_RETRIES,
                    progress: bool = False) -> dict[str, Any]:
    """Run it; returns the result (``summary``: JSON-ready; ``is_trades``/``oos_trades``)."""
    wins = windows(cfg.start_ms, cfg.end_ms, train_days, test_days, step_days)
    problems = [sw.Problem(prefix=f"w{w.index:02d}/train/", search=make_search(),
                           cfg=replace(cfg, start_ms=w.train_from_ms, end_ms=w.train_to_ms)) for w in wins]
    sw.run_problems(problems, objective, workers=workers, address=address, retries=retries, progress=progress)
    best = [sw.ranked(p.evaluated or [])[0] for p in problems]
    tests, spans = [], []
    for w, b in zip(wins, best):
        tcfg = replace(cfg, start_ms=w.test_from_ms, end_ms=w.test_to_ms, params={**dict(cfg.params), **b.params})
        models = {r.symbol: r.model for r in b.results}
        t = dist.split_by_symbol(tcfg, prefix=f"w{w.index:02d}/test/", model=models)
        spans.append((tcfg, len(tests), len(tests) + len(t)))
        tests.extend(t)
    results = dist.execute(tests, workers=workers, address=address, retries=retries, progress=progress,
                           label="walk-forward test")
    rows, is_trades, oos_trades = [], [], []
    for w, b, (tcfg, a, z) in zip(wins, best, spans):
        trades, summary = dist.combine(results[a:z], tcfg)
        oos_trades.extend(trades)
        is_trades.extend(b.trades)
        rows.append({
            "window": w.index, "train_from_ms": w.train_from_ms, "train_to_ms": w.train_to_ms,
            "test_from_ms": w.test_from_ms, "test_to_ms": w.test_to_ms, "best_params": b.params,
            "is": {"objective": b.value, **{k: b.summary.get(k) for k in ("trades", "net_pnl", "sharpe",
                                                                           "expectancy_net_r", "expectancy_r")}},
            "oos": {"objective": sw.score(summary, objective), **{k: summary.get(k) for k in (
                "trades", "net_pnl", "sharpe", "expectancy_net_r", "expectancy_net_r_ci95", "expectancy_r",
                "model_outcomes")}},
        })
    balance = float(cfg.aegis.trading.paper_balance_usdt) * len(cfg.symbols)
    is_trades, oos_trades = metrics.sort_trades(is_trades), metrics.sort_trades(oos_trades)
    search = make_search()
    summary = {
        "strategy": best[0].summary.get("strategy"), "symbols": list(cfg.symbols), "base_params": dict(cfg.params),
        "objective": objective, "method": search.method, "train_days": train_days, "test_days": test_days,
        "step_days": step_days or test_days, "from_ms": cfg.start_ms, "to_ms": cfg.end_ms,
        "is_from_ms": wins[0].train_from_ms, "is_to_ms": wins[-1].train_to_ms,
        "oos_from_ms": wins[0].test_from_ms, "oos_to_ms": wins[-1].test_to_ms,
        "windows": rows,
        "oos": metrics.trade_stats(oos_trades, start_equity=balance, start_ms=wins[0].test_from_ms,
                                   end_ms=wins[-1].test_to_ms),
        "is": metrics.trade_stats(is_trades, start_equity=balance, start_ms=wins[0].train_from_ms,
                                  end_ms=wins[-1].train_to_ms),
    }
    return {"summary": summary, "is_trades": is_trades, "oos_trades": oos_trades}
