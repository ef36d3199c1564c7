"""The trader's reads of its own state (pure): the portfolio and the held positions as the
risk checks and the rotation see them, a position's published body, an entry's size and
limit price, and the entry slippage statistics."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any

from common import wire
from services.brain import protection as pr
from services.brain import risk, rotation
from venue.filters import is_on_grid, round_qty_down
from services.brain.trader_state import (
    Ctx, Trade, TraderConfig, TraderState,
)

EXACT = Context(prec=100)  # sums of qty * price stay exact


# ---------------------------------------------------------------------------- views
def mark_price_or(ctx: Ctx, symbol: str, fallback: float) -> float:
    """The symbol's mark price in ``ctx``, or ``fallback`` when it has none."""
    q = ctx.market.quotes.get(symbol)
    return q.mark_price if q is not None and q.mark_price > 0 else fallback


def portfolio(st: TraderState, ctx: Ctx) -> risk.Portfolio:
    """Held positions at the mark, plus entries still in flight at the mark."""
    held, pending = [], []
    for t in st.trades.values():
        if t.flat_at_exchange_ms:
            continue  # the exchange says flat: no exposure, whatever our fills say yet
        price = mark_price_or(ctx, t.symbol, float(t.entry_avg) or 0.0)
        if t.position > 0:
            held.append(risk.Exposure(symbol=t.symbol, qty=float(t.position) * t.direction, price=price))
        entry = st.orders.get(t.entry_cid)
        if entry is not None and not entry.is_terminal and entry.remaining_qty > 0:
            pending.append(risk.Exposure(symbol=t.symbol, qty=float(entry.remaining_qty) * t.direction,
                                         price=price))
    return risk.Portfolio(equity_usdt=ctx.equity, positions=tuple(held), open_entries=tuple(pending))


def held_positions(st: TraderState, ctx: Ctx) -> list[rotation.HeldPosition]:
    """The rotation's view: every trade holds its slot, even while its entry is in flight."""
    out = []
    for t in st.trades.values():
        if t.flat_at_exchange_ms:
            continue  # closing: its slot is free already
        entry = float(t.entry_avg) or t.stop  # no fill yet: R is 0 until there is one
        out.append(rotation.HeldPosition(symbol=t.symbol, side=t.side, entry_price=entry,
                                         stop_price=t.stop, mark_price=mark_price_or(ctx, t.symbol, entry),
                                         confidence=t.confidence, opened_ms=t.opened_ms))
    return out


def live_orders(st: TraderState, symbol: str) -> bool:
    """An order of ours on ``symbol`` is still working (not filled, cancelled or refused)."""
    return any(o.symbol == symbol and not o.is_terminal for o in st.orders.values())


def busy(st: TraderState, symbol: str) -> bool:
    """Something of ours works on ``symbol``: a live order, a protective order no trade of it
    holds that may still be alive (``protection.blocking_algos``: a cancel not yet confirmed
    counts; a new ``closePosition`` stop beside it would be refused, -4130), or an entry
    waiting for it. A position read now may not show what it is doing."""
    return (live_orders(st, symbol) or bool(pr.blocking_algos(st, symbol))
            or any(e.signal.symbol == symbol for e in st.pending))


def quiet(st: TraderState, symbol: str) -> bool:
    """Nothing of ours holds or works on ``symbol``: no trade, and not ``busy``."""
    return symbol not in st.trades and not busy(st, symbol)


def unrealized_pnl(t: Trade, mark: float) -> float:
    if t.position <= 0 or mark <= 0:
        return 0.0
    return float(t.position) * t.direction * (mark - float(t.entry_avg))


def position_body(t: Trade, ctx: Ctx, realized: Decimal = Decimal(0)) -> wire.Position:
    mark = mark_price_or(ctx, t.symbol, float(t.entry_avg))
    return wire.Position(symbol=t.symbol, qty=float(t.position) * t.direction, entry_price=float(t.entry_avg),
                         unrealized_pnl=unrealized_pnl(t, mark), realized_pnl=float(realized))


# ---------------------------------------------------------------------------- sizing
def entry_qty(cfg: TraderConfig, signal: wire.SignalGenerated, equity: float, price: float) -> float:
    """Risk ``risk_per_trade_pct`` of equity between entry and stop, capped at 99% of the
    notional one slot may take: the per-order limit, or the total limit shared by
    ``max_positions`` slots, whichever is smaller (so a full book of positions still fits
    the total; risk rounds the quantity down onto the step grid). 0 when it cannot be sized
    (no equity, no risk distance)."""
    risk_dist = abs(signal.entry - signal.stop)
    if not (math.isfinite(equity) and equity > 0 and risk_dist > 0 and price > 0):
        return 0.0
    qty = equity * cfg.risk_per_trade_pct / 100.0 / risk_dist
    r = cfg.risk
    slot = min(r.max_order_notional_usdt, r.max_total_notional_usdt / r.max_positions,
               equity * r.max_leverage / r.max_positions)
    return min(qty, slot * 0.99 / price)


@dataclass(frozen=True, kw_only=True)
class UncheckedOrder:
    """An order as risk.check_order reads it, before it is known to be valid."""

    client_order_id: str
    symbol: str
    side: str
    order_type: str
    qty: float
    price: float
    reduce_only: bool
    signal_id: str
    time_in_force: str = ""


_TEN_THOUSAND = Decimal(10_000)


@functools.lru_cache(maxsize=64, typed=True)
def _config_decimal(x: Any) -> Decimal | None:
    """``risk.to_decimal`` of a configured number, once per value (it is one value per run)."""
    return risk.to_decimal(x)


def entry_limit(cfg: TraderConfig, sig: wire.SignalGenerated, tick: Decimal, mark: float) -> Decimal | None:
    """The limit price of a limit-IOC entry: the signal's entry price (the mark when it has
    none) moved ``entry_slippage_bps`` against us, rounded onto the tick grid towards the
    reference (a BUY down, a SELL up) so the bound holds. None when it cannot be formed."""
    ref = risk.to_decimal(sig.entry if sig.entry > 0 else mark)
    bps = _config_decimal(cfg.entry_slippage_bps)
    if ref is None or ref <= 0 or bps is None or bps < 0 or tick <= 0:
        return None
    move = EXACT.divide(EXACT.multiply(ref, bps), _TEN_THOUSAND)
    if sig.side == "BUY":
        price = round_qty_down(EXACT.add(ref, move), tick)
    else:
        raw = EXACT.subtract(ref, move)
        down = round_qty_down(raw, tick)
        price = down if is_on_grid(raw, tick) else down + tick
    return price if price > 0 else None


def slippage_bps(side: str, signal_price: float, fill_price: Decimal) -> float | None:
    """The entry's average fill against the signal price in bps, positive = worse for us."""
    if signal_price <= 0 or fill_price <= 0:
        return None
    d = 1 if side == "BUY" else -1
    return d * (float(fill_price) - signal_price) / signal_price * 10_000.0


def add_slippage(acc: tuple[int, float, float], bps: float | None) -> tuple[int, float, float]:
    """(count, sum, worst) of entry slippages in bps, with ``bps`` added (none: unchanged)."""
    if bps is None or not math.isfinite(bps):
        return acc
    n, total, worst = acc
    return n + 1, total + bps, bps if n == 0 else max(worst, bps)


def slippage_stats(st: TraderState) -> dict[str, list[float]]:
    """Entry slippage in bps as ``[count, sum, worst]``: of the closed trades, and of the open
    trades' entries so far (the run summary merges them over the brain's incarnations)."""
    acc: tuple[int, float, float] = (0, 0.0, 0.0)
    for t in st.trades.values():
        if t.entry_qty > 0:
            acc = add_slippage(acc, slippage_bps(t.side, t.signal_price, t.entry_avg))
    return {"closed": list(st.slippage_closed), "open": list(acc)}
