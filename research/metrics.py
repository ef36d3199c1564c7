"""The numbers of a backtest report, as pure functions of plain lists.

Nothing here reads a file or a clock; the same input always gives the same output (the
bootstrap draws from ``random.Random(seed)``). Conventions:

- returns are simple daily returns (``equity_today / equity_yesterday - 1``), one per UTC day
  of the tested range, 0 on a day without a closed trade (equity only moves when a trade
  closes); annualised with ``periods_per_year = 365`` (crypto trades every day);
- the standard deviation of Sharpe is the sample one (``n - 1``); Sortino's downside deviation
  is ``sqrt(mean(min(r, 0)^2))`` over *all* returns (the usual definition, target 0);
- Calmar is the annualised compound return divided by the maximum drawdown as a fraction;
- a trade is a win when its outcome in R is > 0 (the confidence model's own definition,
  ``services/brain/model.py``);
- R is the risk planned at entry, ``|entry price - stop| * qty``. ``outcome_r`` (the trader's,
  ``services/brain/trader.py``) is the price move in R *before fees*; ``net_r`` is the net PnL
  (after fees and funding) in R: the money a trade made per unit risked.

A ratio that cannot be computed (no trades, a flat curve, no loss day) is ``None``, never a
made-up number.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

DAY_MS = 86_400_000
PERIODS_PER_YEAR = 365


def equity_curve(start_equity: float, closes: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """(closed ms, equity after it) for each (closed ms, net PnL), in the given order."""
    eq, out = start_equity, []
    for ms, pnl in closes:
        eq += pnl
        out.append((ms, eq))
    return out


def drawdowns(start_equity: float, curve: Sequence[tuple[int, float]]) -> list[tuple[int, float, float]]:
    """(ms, drawdown in quote currency, drawdown in % of the running peak) for each point."""
    peak, out = start_equity, []
    for ms, eq in curve:
        peak = max(peak, eq)
        dd = peak - eq
        out.append((ms, dd, dd / peak * 100.0 if peak > 0 else 0.0))
    return out


def max_drawdown(start_equity: float, curve: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """The largest drawdown: (quote currency, % of the peak it fell from). (0, 0) for no trades."""
    dds = drawdowns(start_equity, curve)
    return (max((d for _, d, _ in dds), default=0.0), max((p for _, _, p in dds), default=0.0))


def daily_returns(start_equity: float, curve: Sequence[tuple[int, float]], start_ms: int,
                  end_ms: int) -> list[float]:
    """One return per UTC day from ``start_ms``'s day to the day of ``end_ms - 1``, from the
    equity at the end of each day (the last point of ``curve`` on or before it)."""
    first, last = start_ms // DAY_MS, (end_ms - 1) // DAY_MS
    by_day: dict[int, float] = {}
    for ms, eq in curve:
        by_day[ms // DAY_MS] = eq
    eq, out = start_equity, []
    for day in range(first, last + 1):
        new = by_day.get(day, eq)
        out.append(new / eq - 1.0 if eq > 0 else 0.0)
        eq = new
    return out


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def sharpe(returns: Sequence[float], periods_per_year: int = PERIODS_PER_YEAR) -> float | None:
    """Annualised Sharpe ratio (risk-free rate 0): mean / sample sd * sqrt(periods)."""
    if len(returns) < 2:
        return None
    m = _mean(returns)
    sd = math.sqrt(math.fsum((r - m) ** 2 for r in returns) / (len(returns) - 1))
    return m / sd * math.sqrt(periods_per_year) if sd > 0 else None


def sortino(returns: Sequence[float], periods_per_year: int = PERIODS_PER_YEAR) -> float | None:
    """Annualised Sortino ratio (target 0): mean / sqrt(mean(min(r, 0)^2)) * sqrt(periods)."""
    if len(returns) < 2:
        return None
    down = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    return _mean(returns) / down * math.sqrt(periods_per_year) if down > 0 else None


def calmar(start_equity: float, end_equity: float, days: float, max_drawdown_pct: float) -> float | None:
    """Annualised compound return / maximum drawdown (both as fractions)."""
    if days <= 0 or start_equity <= 0 or end_equity <= 0 or max_drawdown_pct <= 0:
        return None
    annual = (end_equity / start_equity) ** (PERIODS_PER_YEAR / days) - 1.0
    return annual / (max_drawdown_pct / 100.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Interval:
    """A point estimate with its bootstrap interval (``low``/``high`` None below 2 samples)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int
    level: float
    resamples: int
    seed: int


def bootstrap_mean(xs: Sequence[float], *, resamples: int = 2000, level: float = 0.95,
                   seed: int = 20241201) -> Interval:
    """The mean of ``xs`` with a percentile bootstrap interval: ``resamples`` resamples with
    replacement drawn by ``random.Random(seed)``; the bounds are the order statistics at
    ``(1 - level) / 2`` and ``(1 + level) / 2`` of the sorted resample means (index
    ``floor(q * (resamples - 1))``, no interpolation)."""
    n = len(xs)
    if n == 0:
        return Interval(mean=None, low=None, high=None, n=0, level=level, resamples=resamples, seed=seed)
    mean = _mean(xs)
    if n < 2 or resamples < 2:
        return Interval(mean=mean, low=None, high=None, n=n, level=level, resamples=resamples, seed=seed)
    rng = random.Random(seed)
    means = sorted(math.fsum(xs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo = means[math.floor((1 - level) / 2 * (resamples - 1))]
    hi = means[math.floor((1 + level) / 2 * (resamples - 1))]
    return Interval(mean=mean, low=lo, high=hi, n=n, level=level, resamples=resamples, seed=seed)


def brier(probs: Sequence[float], wins: Sequence[int]) -> float | None:
    """Mean squared error of the forecast probabilities against the 0/1 outcomes."""
    if not probs:
        return None
    return math.fsum((p - y) ** 2 for p, y in zip(probs, wins, strict=True)) / len(probs)


def brier_base_rate(wins: Sequence[int]) -> float | None:
    """The Brier score of always forecasting the observed win rate ``b``: ``b * (1 - b)``.
    A model is worth its keep only below this."""
    if not wins:
        return None
    b = sum(wins) / len(wins)
    return b * (1.0 - b)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bin:
    low: float
    high: float
    n: int
    mean_forecast: float | None
    win_rate: float | None


def reliability(probs: Sequence[float], wins: Sequence[int], bins: int = 10) -> list[Bin]:
    """Reliability table: ``bins`` equal bins of the forecast on [0, 1] (the last one closed,
    ``p = 1`` falls in it), each with its count, mean forecast and observed win rate. A
    calibrated model has ``win_rate`` close to ``mean_forecast`` in every filled bin."""
    ps: list[list[float]] = [[] for _ in range(bins)]
    ys: list[list[int]] = [[] for _ in range(bins)]
    for p, y in zip(probs, wins, strict=True):
        i = min(max(int(p * bins), 0), bins - 1)
        ps[i].append(p)
        ys[i].append(y)
    return [Bin(low=i / bins, high=(i + 1) / bins, n=len(ps[i]),
                mean_forecast=_mean(ps[i]) if ps[i] else None,
                win_rate=sum(ys[i]) / len(ys[i]) if ys[i] else None) for i in range(bins)]


def profit_factor(pnls: Sequence[float]) -> float | None:
    """Gross profit / gross loss (None without a loss)."""
    loss = -math.fsum(p for p in pnls if p < 0)
    return math.fsum(p for p in pnls if p > 0) / loss if loss > 0 else None


def net_r(t: dict) -> float:
    """The trade's net PnL (after fees and funding) divided by its planned risk (0 if none)."""
    risk = abs(float(t["entry_price"]) - float(t["stop"])) * float(t["qty"])
    return float(t["net_pnl"]) / risk if risk > 0 else 0.0


def trade_stats(trades: Sequence[dict], *, start_equity: float, start_ms: int, end_ms: int,
                seed: int = 20241201, bins: int = 10) -> dict:
    """Every number of a report section from its closed trades (dicts with the columns of
    ``trades.csv``), taken in the order given (sort them first: ``sort_trades``)."""
    net = [float(t["net_pnl"]) for t in trades]
    rs = [float(t["outcome_r"]) for t in trades]
    curve = equity_curve(start_equity, [(int(t["closed_ms"]), float(t["net_pnl"])) for t in trades])
    mdd, mdd_pct = max_drawdown(start_equity, curve)
    rets = daily_returns(start_equity, curve, start_ms, end_ms)
    end_equity = curve[-1][1] if curve else start_equity
    days = (end_ms - start_ms) / DAY_MS
    wins = [1 if r > 0 else 0 for r in rs]
    probs = [float(t["confidence"]) for t in trades]
    ci = bootstrap_mean(rs, seed=seed)
    ci_net = bootstrap_mean([net_r(t) for t in trades], seed=seed)
    reasons: dict[str, int] = {}
    for t in trades:
        reasons[t["exit_reason"]] = reasons.get(t["exit_reason"], 0) + 1
    return {
        "trades": len(trades), "wins": sum(wins), "win_rate": sum(wins) / len(wins) if wins else None,
        "pnl": math.fsum(float(t["pnl"]) for t in trades), "fees": math.fsum(float(t["fees"]) for t in trades),
        "funding": math.fsum(float(t["funding"]) for t in trades), "net_pnl": math.fsum(net),
        "start_equity": start_equity, "end_equity": end_equity,
        "return_pct": (end_equity / start_equity - 1.0) * 100.0 if start_equity > 0 else None,
        "max_drawdown": mdd, "max_drawdown_pct": mdd_pct,
        "sharpe": sharpe(rets), "sortino": sortino(rets), "calmar": calmar(start_equity, end_equity, days, mdd_pct),
        "profit_factor": profit_factor(net),
        "expectancy_r": ci.mean, "expectancy_r_ci95": [ci.low, ci.high],
        "expectancy_net_r": ci_net.mean, "expectancy_net_r_ci95": [ci_net.low, ci_net.high],
        "brier": brier(probs, wins), "brier_base_rate": brier_base_rate(wins),
        "calibration": [[b.low, b.high, b.n, b.mean_forecast, b.win_rate] for b in reliability(probs, wins, bins)
                        if b.n],
        "exit_reasons": dict(sorted(reasons.items())),
    }


def sort_trades(trades: Sequence[dict]) -> list[dict]:
    """Trades in the total order every merged output uses: (closed ms, symbol, trade id)."""
    return sorted(trades, key=lambda t: (int(t["closed_ms"]), str(t["symbol"]), str(t["trade_id"])))


def run_figures(tr: list[dict[str, Any]], equity_curve: list[tuple[int, float]], daily: Mapping[int, float], *,
                start_eq: float, start_ms: int, end_ms: int) -> dict[str, Any]:
    """The summary's money figures of a run (pure): trades, wins, PnL, fees, funding, equity,
    the deepest drawdown after a closed trade, the Sharpe ratio of daily returns (days with a
    closed trade; days without one return 0; x sqrt(365)), expectancy in R, exit reasons."""
    net = [t["net_pnl"] for t in tr]
    wins = sum(1 for x in net if x > 0)
    peak, mdd, mdd_pct = start_eq, 0.0, 0.0
    for _, eq in equity_curve:
        peak = max(peak, eq)
        mdd = max(mdd, peak - eq)
        mdd_pct = max(mdd_pct, (peak - eq) / peak * 100 if peak > 0 else 0.0)
    sharpe = None
    if daily:
        eq, rets = start_eq, []
        for day in range(start_ms // DAY_MS, (end_ms - 1) // DAY_MS + 1):
            new = daily.get(day, eq)
            rets.append(new / eq - 1 if eq > 0 else 0.0)
            eq = new
        if len(rets) > 1:
            mean = sum(rets) / len(rets)
            sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1))
            sharpe = mean / sd * math.sqrt(365) if sd > 0 else None
    reasons: dict[str, int] = {}
    for t in tr:
        reasons[t["exit_reason"]] = reasons.get(t["exit_reason"], 0) + 1
    rs = [t["outcome_r"] for t in tr]
    return {"trades": len(tr), "wins": wins, "win_rate": wins / len(tr) if tr else None,
            "pnl": sum(t["pnl"] for t in tr), "fees": sum(t["fees"] for t in tr),
            "funding": sum(t["funding"] for t in tr), "net_pnl": sum(net),
            "start_equity": start_eq, "end_equity": start_eq + sum(net),
            "max_drawdown": mdd, "max_drawdown_pct": mdd_pct, "sharpe": sharpe,
            "expectancy_r": sum(rs) / len(rs) if rs else None, "exit_reasons": dict(sorted(reasons.items()))}
