"""Performance metrics of a run's closed trades (pure: trades in, numbers out).

Used by ``aegis report`` (``cli/report.py``, the shell that reads the database and draws).
No I/O, no clock: the same trades and starting equity always give the same numbers.

Conventions:

- A trade's **net PnL** is its PnL minus its fees; every metric below that speaks of
  winning, losing, equity or returns uses the net figure. ``gross_pnl_usdt`` is the sum of
  PnL before fees, ``trade_fees_usdt`` the fees of these closed trades (their entries and
  exits). The fees of positions still open are not in it: every fee paid is the report's
  ``fees_usdt`` (``cli/report.py``), the same number as the run summary's.
- A trade's PnL includes the **funding** it received (+) or paid (-) while open (the exchange's
  FUNDING_FEE income rows); ``funding_usdt`` is the sum of that part over the closed trades.
- **Slippage**: an entry's average fill against its signal's price in basis points, positive
  = worse for us (a long paid more, a short got less); ``avg_slippage_bps`` and
  ``worst_slippage_bps`` over the trades that have a signal price (adopted ones do not).
- Trades are ordered by ``(closed_ms, trade_id)``: the equity curve moves when a trade
  closes, and ties are broken by id so the order never depends on the input order.
- The **covered time span** runs from the first trade's opening to the last trade's close.
- A metric that cannot be computed (no trades, fewer than two returns, a zero deviation, a
  zero time span, no losing trade for the profit factor) is ``None``, never ``inf`` or NaN,
  so ``json.dumps(..., allow_nan=False)`` always succeeds.
- Means, medians and deviations use :mod:`statistics`, which works on exact fractions:
  three identical returns have a deviation of exactly 0, not 1e-18.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from common.errors import ConfigError

MS_PER_YEAR = 365 * 24 * 3600 * 1000  # crypto trades every day of the year: no 252-day year


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    start_equity_usdt: float = 10_000.0  # the account before the first trade

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_equity_usdt) and self.start_equity_usdt > 0):
            raise ConfigError(f"start_equity_usdt must be a positive number, "
                             f"got {self.start_equity_usdt!r}")


@dataclass(frozen=True, kw_only=True)
class Trade:
    """One closed round trip, as the ``trades`` table stores it (``wire.TradeClosed``)."""

    trade_id: str
    symbol: str
    side: str  # of the entry: BUY = long
    qty: float
    entry_price: float
    exit_price: float
    stop: float
    target: float
    opened_ms: int
    closed_ms: int
    pnl: float  # realised, before fees, funding included (USDT)
    fees: float  # USDT
    outcome_r: float
    exit_reason: str
    confidence: float
    learned: bool
    funding: float = 0.0  # received (+) or paid (-) while open (USDT, part of pnl)
    # entry average vs the signal's price, bps, positive = worse for us; None: no signal price
    slippage_bps: float | None = None

    @property
    def net_pnl(self) -> float:
        return self.pnl - self.fees

    @property
    def holding_s(self) -> float:
        return (self.closed_ms - self.opened_ms) / 1000.0


@dataclass(frozen=True, kw_only=True)
class Metrics:
    """The numbers of the summary. Fractions are 0..1, ``_pct`` values are percent."""

    start_equity_usdt: float
    final_equity_usdt: float
    trades: int
    wins: int  # net PnL > 0
    losses: int  # net PnL < 0 (a trade at exactly 0 is neither)
    win_rate: float | None  # wins / trades
    gross_pnl_usdt: float  # sum of PnL before fees
    trade_fees_usdt: float  # fees of these closed trades (not of positions still open)
    funding_usdt: float  # funding of these closed trades, received (+) or paid (-) (part of gross PnL)
    net_pnl_usdt: float
    return_pct: float  # net PnL / starting equity
    profit_factor: float | None  # net won on winners / net lost on losers; None: no loser
    avg_r: float | None
    median_r: float | None
    expectancy_usdt: float | None  # mean net PnL per trade
    avg_holding_s: float | None
    first_open_ms: int | None
    last_close_ms: int | None
    span_s: float | None  # the covered time span
    exposure: float | None  # fraction of the span with at least one position open
    max_drawdown_usdt: float  # largest fall of equity below its running peak
    max_drawdown_pct: float  # largest fall, in percent of the peak it fell from
    trades_per_year: float | None  # trades / span, scaled to a 365-day year
    sharpe_annualised: float | None  # per trade, see ``sharpe``
    sortino_annualised: float | None  # per trade, see ``sortino``
    # entries' fill against their signal price, bps, positive = worse (trades with a signal price)
    avg_slippage_bps: float | None = None
    worst_slippage_bps: float | None = None


def utc_text(ms: int) -> str:
    """``2023-11-14 22:13:20.000`` (UTC): how the report writes a time."""
    t = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)  # integer seconds: no float error
    return f"{t:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d}"


def ordered(trades: Sequence[Trade]) -> list[Trade]:
    """Trades in closing order (ties by id): the order the equity curve uses."""
    return sorted(trades, key=lambda t: (t.closed_ms, t.trade_id))


def equity_curve(trades: Sequence[Trade], start_equity: float) -> list[tuple[int, float]]:
    """``(time_ms, equity)`` points: the starting equity at the first opening, then the equity
    after each trade at its close. Empty when there is no trade (there is no time to put the
    starting point at; the plot draws a flat line)."""
    ts = ordered(trades)
    if not ts:
        return []
    points = [(min(t.opened_ms for t in ts), start_equity)]
    equity = start_equity
    for t in ts:
        equity += t.net_pnl
        points.append((t.closed_ms, equity))
    return points


def drawdown_curve(trades: Sequence[Trade], start_equity: float) -> list[tuple[int, float, float]]:
    """``(time_ms, drawdown_usdt, drawdown_pct)`` at each point of the equity curve: how far
    equity is below the highest equity seen so far (the starting equity counts as a peak),
    in USDT and in percent of that peak. Both are >= 0; 0 means "at a new high"."""
    out = []
    peak = start_equity
    for ms, equity in equity_curve(trades, start_equity):
        peak = max(peak, equity)
        out.append((ms, peak - equity, (peak - equity) / peak * 100.0))
    return out


def exposure_ms(trades: Sequence[Trade]) -> int:
    """Milliseconds during which at least one position was open: the length of the union
    of the ``[opened_ms, closed_ms]`` intervals (overlapping positions count once)."""
    total = 0
    cur_start = cur_end = None
    for start, end in sorted((t.opened_ms, t.closed_ms) for t in trades):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def trade_returns(trades: Sequence[Trade], start_equity: float) -> list[float] | None:
    """Per-trade returns in closing order: net PnL / equity just before the trade closed.
    None when the equity ever reached 0 or below (a return on nothing means nothing)."""
    out = []
    equity = start_equity
    for t in ordered(trades):
        if equity <= 0:
            return None
        out.append(t.net_pnl / equity)
        equity += t.net_pnl
    return out


def sharpe(returns: Sequence[float], trades_per_year: float | None) -> float | None:
    """Annualised Sharpe ratio of **per-trade** returns (not daily returns), risk-free rate 0:

        sharpe = mean(r) / stdev(r) * sqrt(trades_per_year)

    ``r`` are the per-trade returns (``trade_returns``), ``stdev`` the sample standard
    deviation (n - 1), and ``trades_per_year = trades / span * one 365-day year``: the pace
    of this run, extrapolated. Per-trade returns of a few trades, scaled by a pace measured
    over a short span, make a noisy number; it is comparable between runs of this engine,
    not with a fund's daily-return Sharpe. None with fewer than 2 returns, a zero deviation
    or no time span.
    """
    if len(returns) < 2 or trades_per_year is None:
        return None
    sd = statistics.stdev(returns)
    if sd == 0:
        return None
    return statistics.mean(returns) / sd * math.sqrt(trades_per_year)


def sortino(returns: Sequence[float], trades_per_year: float | None) -> float | None:
    """Annualised Sortino ratio of **per-trade** returns, target 0:

        sortino = mean(r) / downside_deviation(r) * sqrt(trades_per_year)
        downside_deviation(r) = sqrt(sum(min(r_i, 0) ** 2) / n)

    The same as ``sharpe`` but only losing trades count as risk; the downside deviation is
    taken over all ``n`` trades (Sortino and Price's definition, as in empyrical). None with
    fewer than 2 returns, no losing trade (a zero downside deviation) or no time span.
    """
    if len(returns) < 2 or trades_per_year is None:
        return None
    dd = math.sqrt(statistics.mean([min(r, 0.0) ** 2 for r in returns]))
    if dd == 0:
        return None
    return statistics.mean(returns) / dd * math.sqrt(trades_per_year)


def metrics(trades: Sequence[Trade], cfg: ReportConfig = ReportConfig()) -> Metrics:
    """Every number of the summary (see ``Metrics`` and the module docstring)."""
    start = cfg.start_equity_usdt
    ts = ordered(trades)
    n = len(ts)
    nets = [t.net_pnl for t in ts]
    won = [x for x in nets if x > 0]
    lost = [x for x in nets if x < 0]
    net = math.fsum(nets)
    curve = equity_curve(ts, start)
    dd = drawdown_curve(ts, start)
    first = min((t.opened_ms for t in ts), default=None)
    last = max((t.closed_ms for t in ts), default=None)
    span_ms = None if first is None else last - first
    per_year = n * MS_PER_YEAR / span_ms if span_ms else None
    returns = trade_returns(ts, start) or []
    slips = [t.slippage_bps for t in ts if t.slippage_bps is not None and math.isfinite(t.slippage_bps)]
    return Metrics(
        start_equity_usdt=start,
        final_equity_usdt=curve[-1][1] if curve else start,
        trades=n,
        wins=len(won),
        losses=len(lost),
        win_rate=len(won) / n if n else None,
        gross_pnl_usdt=math.fsum(t.pnl for t in ts),
        trade_fees_usdt=math.fsum(t.fees for t in ts),
        funding_usdt=math.fsum(t.funding for t in ts),
        net_pnl_usdt=net,
        return_pct=net / start * 100.0,
        profit_factor=math.fsum(won) / -math.fsum(lost) if lost else None,
        avg_r=statistics.mean(t.outcome_r for t in ts) if n else None,
        median_r=statistics.median(t.outcome_r for t in ts) if n else None,
        expectancy_usdt=statistics.mean(nets) if n else None,
        avg_holding_s=statistics.mean(t.holding_s for t in ts) if n else None,
        first_open_ms=first,
        last_close_ms=last,
        span_s=None if span_ms is None else span_ms / 1000.0,
        exposure=exposure_ms(ts) / span_ms if span_ms else None,
        max_drawdown_usdt=max((d[1] for d in dd), default=0.0),
        max_drawdown_pct=max((d[2] for d in dd), default=0.0),
        trades_per_year=per_year,
        sharpe_annualised=sharpe(returns, per_year),
        sortino_annualised=sortino(returns, per_year),
        avg_slippage_bps=statistics.mean(slips) if slips else None,
        worst_slippage_bps=max(slips) if slips else None,
    )
