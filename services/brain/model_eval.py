"""How good is the confidence model? Prequential scores on a stream of closed trades, and
an honest SMC replay on real candles to produce that stream.

``evaluate(stream)`` walks the trades in decision order and, for each, first *predicts*
(with only the outcomes known by then), then records the score, and only then lets the
model learn it, once the outcome is known. Scores: Brier score and log loss of the model's
confidence, of the running base rate (Beta-smoothed, the model's own cold forecast) and of
a constant 0.5; and a 10-bin reliability table of the model.

``replay_trades(candles)`` makes the stream from real data, one candle at a time with the
causal SMC features (``services.brain.smc.update``) on the base timeframe (swing length 5)
and on a higher one aggregated from it (1 h, swing length 5, fed when its candle closes):

- a setup is every BOS or CHoCH ``Structure`` label, in its direction ``d``, at the bar
  whose close made it known (median ~16 bars after the break: that lag is honest);
- entry at the next candle's open; stop at the last opposite pivot known by then (a long
  needs a pivot low below the decision close, else no trade); target ``rr`` R;
- the outcome is decided by later candles' high/low, the entry candle included, stop first
  when both are hit in one candle; a candle opening beyond the stop exits at its open
  (worse than -1 R); trades still open at the end of the data are left out; R is before
  fees and slippage (the label, R > 0, hardly depends on them with a 2 R target);
- the features use only what was known at the decision bar's close.

``python -m services.brain.model_eval --candles FILE`` prints the numbers; everything is
deterministic (no randomness, a fixed order), so the same file gives the same numbers.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from common.errors import DataError
from services.brain.features import Atr, nearest_zone_distance
from services.brain.model import (FEATURES, ModelConfig, features_from_context, learn,
                                  new_state, predict)
from services.brain.smc import (FairValueGap, FairValueGapMitigated, LiquiditySwept,
                                OrderBlock, OrderBlockMitigated, OrderBlockReset, Pivot,
                                SessionRange, SmcConfig, Structure)
from services.brain.smc import new_state as smc_new_state
from services.brain.smc import update as smc_update

LOG_LOSS_EPS = 1e-15  # a forecast of exactly 0 or 1 that is wrong costs log(1e15) ~ 34.5
RELIABILITY_BINS = 10


class Outcome(NamedTuple):
    """One closed trade: features at the decision, outcome in R, the bar of the decision
    and the bar whose close settled it (``None``: learn right after predicting)."""

    features: Mapping[str, float]
    outcome_r: float
    decided_at: int | None = None
    known_at: int | None = None


class Trade(NamedTuple):
    """A replayed setup: the ``Outcome`` fields first, then what the trade was."""

    features: dict[str, float]
    outcome_r: float
    decided_at: int
    known_at: int
    direction: int
    entry: float
    stop: float
    target: float
    kind: str


# ---- scores -------------------------------------------------------------------------------

def brier(p: Sequence[float], y: Sequence[float]) -> float:
    """Mean squared error of probabilities ``p`` against outcomes ``y`` in {0, 1}."""
    pa, ya = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    return float(np.mean((pa - ya) ** 2)) if len(pa) else math.nan


def log_loss(p: Sequence[float], y: Sequence[float], eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood (natural log), ``p`` clipped to ``[eps, 1 - eps]``."""
    pa = np.clip(np.asarray(p, dtype=float), eps, 1.0 - eps)
    ya = np.asarray(y, dtype=float)
    if not len(pa):
        return math.nan
    return float(-np.mean(ya * np.log(pa) + (1.0 - ya) * np.log(1.0 - pa)))


def reliability(p: Sequence[float], y: Sequence[float],
                bins: int = RELIABILITY_BINS) -> list[dict[str, float]]:
    """Equal-width bins over [0, 1] (1.0 falls in the last): count, mean forecast and
    observed frequency per non-empty bin."""
    pa, ya = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    idx = np.minimum((pa * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append({"lo": b / bins, "hi": (b + 1) / bins, "n": int(m.sum()),
                         "mean_p": float(pa[m].mean()), "freq": float(ya[m].mean())})
    return rows


def scores(pm: list[float], pb: list[float], y: list[float]) -> dict[str, Any]:
    """Brier score and log loss of the model (``pm``), the base rate (``pb``) and a constant
    0.5 against the outcomes ``y``, and the model's reliability table (also ``aegis replay``'s)."""
    half = [0.5] * len(y)
    return {"n": len(y),
            "brier": {"model": brier(pm, y), "base_rate": brier(pb, y), "constant": brier(half, y)},
            "log_loss": {"model": log_loss(pm, y), "base_rate": log_loss(pb, y),
                         "constant": log_loss(half, y)}}


def evaluate(stream: Iterable[Outcome | tuple], config: ModelConfig | None = None
             ) -> dict[str, Any]:
    """Prequential scores of the model on ``stream`` (``Outcome``s or plain
    ``(features, outcome_r)`` tuples, in decision order).

    Each item is predicted with only the outcomes known before it: an item with
    ``decided_at``/``known_at`` is learned once a later item is decided at or after its
    ``known_at`` (trades overlap: a still-open trade teaches nothing yet); one without them
    is learned right after its own prediction. The base-rate forecaster is the model's
    Beta-smoothed running base rate over the same learned outcomes."""
    state = new_state(config)
    pending: list[tuple[int, int, Mapping[str, float], float]] = []  # heap by known_at
    pm: list[float] = []
    pb: list[float] = []
    ys: list[float] = []
    warm: list[int] = []
    last_decided = None
    for seq, item in enumerate(stream):
        o = item if isinstance(item, Outcome) else Outcome(*tuple(item)[:4])
        if o.decided_at is not None:
            if last_decided is not None and o.decided_at < last_decided:
                raise DataError(f"item {seq}: decided_at {o.decided_at} < {last_decided}")
            last_decided = o.decided_at
            while pending and pending[0][0] <= o.decided_at:
                _, _, f, r = heapq.heappop(pending)
                state = learn(state, f, r)
        pred = predict(state, o.features)
        pm.append(pred.confidence)
        pb.append(state.base_rate)
        ys.append(1.0 if o.outcome_r > 0 else 0.0)
        if not pred.cold:
            warm.append(seq)
        if o.decided_at is None or o.known_at is None:
            state = learn(state, o.features, o.outcome_r)
        else:
            heapq.heappush(pending, (o.known_at, seq, o.features, o.outcome_r))
    out = scores(pm, pb, ys)
    out["wins"] = int(sum(ys))
    out["base_rate"] = out["wins"] / len(ys) if ys else math.nan
    out["cold"] = len(ys) - len(warm)
    out["warm"] = scores([pm[k] for k in warm], [pb[k] for k in warm], [ys[k] for k in warm])
    out["reliability"] = reliability(pm, ys)
    out["forecasts"] = {"model": pm, "base_rate": pb, "outcome": ys}
    out["mixture"] = state.mixture
    # the weights of the loosest logistic model: what the features would say if trusted
    out["weights"] = dict(zip(("bias",) + FEATURES, state.w[-1].tolist()))
    return out


# ---- the replay ------------------------------------------------------------------------

class _Htf:
    """Higher-timeframe candles aggregated from base candles, fed to their own SMC state
    when complete; remembers the direction of the last structure label it emitted."""

    def __init__(self, bar_ms: int, htf_ms: int, config: SmcConfig) -> None:
        self.bar_ms, self.htf_ms = bar_ms, htf_ms
        self.smc = smc_new_state(config)
        self.bucket: int | None = None
        self.ohlcv = [0.0] * 5
        self.direction = 0

    def _flush(self) -> None:
        if self.bucket is not None:
            o, h, low, c, v = self.ohlcv
            for lab in smc_update(self.smc, self.bucket * self.htf_ms, o, h, low, c, v):
                if isinstance(lab, Structure):
                    self.direction = lab.direction
            self.bucket = None

    def step(self, time_ms: int, o: float, h: float, low: float, c: float, v: float) -> None:
        b = time_ms // self.htf_ms
        if self.bucket is not None and b != self.bucket:
            self._flush()  # a gap ended the bucket early: complete it now, one bar late
        if self.bucket is None:
            self.bucket, self.ohlcv = b, [o, h, low, c, v]
        else:
            x = self.ohlcv
            x[1], x[2], x[3], x[4] = max(x[1], h), min(x[2], low), c, x[4] + v
        if time_ms + self.bar_ms >= (b + 1) * self.htf_ms:
            self._flush()  # this bar's close is the bucket's close


def settle(direction: int, stop: float, target: float, o: float, h: float,
           low: float) -> float | None:
    """Exit price of an open trade on this candle, ``None`` if it survives it. Without the
    path inside the candle the worst case is assumed: stop first when both are hit, and a
    candle opening beyond the stop exits at its open."""
    d = direction
    if d * (o - stop) <= 0:
        return o
    if (d > 0 and low <= stop) or (d < 0 and h >= stop):
        return stop
    if (d > 0 and h >= target) or (d < 0 and low <= target):
        return target
    return None


def replay_trades(cols: Mapping[str, Sequence[float]], *, swing_length: int = 5,
                  htf_ms: int = 3_600_000, htf_swing_length: int = 5, rr: float = 2.0,
                  atr_bars: int = 14, atr_slow_bars: int = 96, warmup_bars: int = 100
                  ) -> tuple[list[Trade], int]:
    """The setups of the rule in the module docstring on candle columns ``time_ms, open,
    high, low, close, volume``; returns the closed trades in decision order and the number
    still open at the end (left out)."""
    t_ms, op, hi, lo, cl, vo = (cols[k] for k in ("time_ms", "open", "high", "low", "close",
                                                  "volume"))
    n = len(t_ms)
    bar_ms = int(t_ms[1] - t_ms[0]) if n > 1 else htf_ms
    smc = smc_new_state(SmcConfig(swing_length=swing_length, timeframes=()))
    htf = _Htf(bar_ms, htf_ms, SmcConfig(swing_length=htf_swing_length, timeframes=(),
                                         sessions=()))
    atr, atr_slow = Atr(atr_bars), Atr(atr_slow_bars)
    last_pivot = {1: math.nan, -1: math.nan}
    last_sweep = {1: -1, -1: -1}
    obs: dict[tuple[int, int], tuple[float, float]] = {}
    fvgs: dict[tuple[int, int], tuple[float, float]] = {}
    sessions: dict[str, bool] = {}
    to_open: list[tuple[int, int, dict[str, float], float, str]] = []
    live: list[list[Any]] = []  # [decided_at, d, features, entry, stop, target, kind]
    done: list[Trade] = []
    for t in range(n):
        o, h, low, c, v = op[t], hi[t], lo[t], cl[t], vo[t]
        for decided, d, feats, stop, kind in to_open:  # enter at this candle's open
            if d * (o - stop) > 0:
                risk = abs(o - stop)
                live.append([decided, d, feats, o, stop, o + d * rr * risk, kind])
        to_open = []
        still = []
        for tr in live:
            decided, d, feats, entry, stop, target, kind = tr
            exit_px = settle(d, stop, target, o, h, low)
            if exit_px is None:
                still.append(tr)
            else:
                done.append(Trade(feats, d * (exit_px - entry) / abs(entry - stop), decided, t,
                                  d, entry, stop, target, kind))
        live = still

        labels = smc_update(smc, int(t_ms[t]), o, h, low, c, v)
        htf.step(int(t_ms[t]), o, h, low, c, v)
        atr.step(h, low, c)
        atr_slow.step(h, low, c)
        setups = []
        for lab in labels:
            if isinstance(lab, Pivot):
                last_pivot[lab.direction] = lab.level
            elif isinstance(lab, OrderBlock):
                obs[(lab.direction, lab.index)] = (lab.top, lab.bottom)
            elif isinstance(lab, (OrderBlockMitigated, OrderBlockReset)):
                obs.pop((lab.direction, lab.index), None)
            elif isinstance(lab, FairValueGap):
                fvgs[(lab.direction, lab.index)] = (lab.top, lab.bottom)
            elif isinstance(lab, FairValueGapMitigated):
                fvgs.pop((lab.direction, lab.index), None)
            elif isinstance(lab, LiquiditySwept):
                last_sweep[lab.direction] = lab.swept_index
            elif isinstance(lab, SessionRange):
                sessions[lab.session] = bool(lab.active)
            elif isinstance(lab, Structure):
                setups.append(lab)
        if t < warmup_bars:
            continue
        for s in setups:
            d = s.direction
            stop = last_pivot[-d]  # a long's stop sits under the last pivot low
            if not (d * (c - stop) > 0):
                continue
            swept = last_sweep[-d]  # a long wants sell-side (lows) liquidity taken first
            feats = features_from_context(
                direction=d, entry=c, stop=stop, target=c + d * rr * abs(c - stop),
                atr=atr.value, atr_slow=atr_slow.value, htf_direction=htf.direction,
                is_choch=s.kind == "CHOCH", break_level=s.level,
                break_age_bars=t - s.broken_index, ob_distance=nearest_zone_distance(obs, d, c),
                fvg_distance=nearest_zone_distance(fvgs, d, c),
                swept_bars_ago=t - swept if swept >= 0 else None,
                in_asia=sessions.get("Tokyo", False), in_london=sessions.get("London", False),
                in_new_york=sessions.get("New York", False))
            to_open.append((t, d, feats, stop, s.kind))
    done.sort(key=lambda tr: tr.decided_at)  # closed in exit order; evaluate wants decisions
    return done, len(live) + len(to_open)


# ---- the command ---------------------------------------------------------------------

def _fmt(x: float) -> str:
    return f"{x:.4f}"


def report(result: dict[str, Any], trades: Sequence[Trade], still_open: int,
           path: str) -> str:
    """The numbers as text, for the terminal and the README."""
    mean_r = float(np.mean([t.outcome_r for t in trades])) if trades else math.nan
    lines = [f"replay: {path}",
             f"trades: {result['n']} closed ({still_open} still open at the end, left out); "
             f"longs {sum(1 for t in trades if t.direction > 0)}, "
             f"CHoCH {sum(1 for t in trades if t.kind == 'CHOCH')}",
             f"base rate (R > 0): {_fmt(result['base_rate'])} ({result['wins']} wins); "
             f"mean R {_fmt(mean_r)} (before fees)",
             f"cold predictions: {result['cold']}",
             "",
             f"{'':30}{'model':>10}{'base rate':>11}{'0.5':>9}"]
    for label, part in (("all", result), ("warm only", result["warm"])):
        for metric in ("brier", "log_loss"):
            m = part[metric]
            name = f"{metric} ({label}, n={part['n']})"
            lines.append(f"{name:30}{_fmt(m['model']):>10}{_fmt(m['base_rate']):>11}"
                         f"{_fmt(m['constant']):>9}")
    lines += ["", "reliability (model): bin, n, mean confidence, observed win rate"]
    lines += [f"  [{r['lo']:.1f}, {r['hi']:.1f})  {r['n']:5d}  {r['mean_p']:.3f}  {r['freq']:.3f}"
              for r in result["reliability"]]
    lines += ["", "mixture weights at the end:"]
    lines += [f"  {k:28}{w:.4f}" for k, w in result["mixture"].items()]
    lines += ["", "weights of the loosest logistic model (standardised features):"]
    lines += [f"  {k:16}{w:+.3f}" for k, w in result["weights"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m services.brain.model_eval --candles FILE [--swing-length N]``."""
    from services.brain.smc_cli import CandleFileError, read_candles

    ap = argparse.ArgumentParser(prog="python -m services.brain.model_eval",
                                 description="Prequential scores of the confidence model on "
                                             "an SMC replay of a candle file.")
    ap.add_argument("--candles", required=True, type=Path)
    ap.add_argument("--swing-length", type=int, default=5)
    ap.add_argument("--htf-minutes", type=int, default=60)
    ap.add_argument("--rr", type=float, default=2.0)
    ap.add_argument("--min-outcomes", type=int, default=ModelConfig().min_outcomes)
    args = ap.parse_args(argv)
    try:
        cols = read_candles(args.candles)
    except CandleFileError as exc:
        print(f"model_eval: {exc}", file=sys.stderr)
        return 2
    trades, still_open = replay_trades(cols, swing_length=args.swing_length,
                                       htf_ms=args.htf_minutes * 60_000, rr=args.rr)
    result = evaluate(trades, ModelConfig(min_outcomes=args.min_outcomes))
    print(report(result, trades, still_open, str(args.candles)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
