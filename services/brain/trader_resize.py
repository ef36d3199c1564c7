"""The exchange holds a trade's position at another size than the trade (pure): what can be
proven, and what is applied.

The exchange's position is the truth, but a read of it is news of one moment: it is compared
with the trade only when nothing of ours is moving the symbol (``settled``: the entry done, no
order of ours live on the symbol, no protective order fired, and, for a REST read, no fill of
ours applied since the read was sent). Then (``compare``):

    SAME      nothing to do (a difference reported before is forgotten)
    SMALLER   same side, less: part of the position left behind our back (a partial
              liquidation, ADL, a manual partial close in the app). The trade follows the
              exchange, so that its exits, its protection and its PnL use the real size: the
              symbol's fills are fetched, and the closing fills of orders we never sent become a
              partial exit of the trade at their own prices (``trader_exchange.on_symbol_fills``,
              never more than the part that left: ``foreign_room``). When they do not explain it
              within ``external_close_wait_ms``, the rest of that part is closed at the mark
              (``on_timer``) and the trade is not learned from (a price nobody saw filled).
    LARGER    same side, more: someone added to the position by hand. The trade keeps its size
              (its R is the risk it planned; extra risk is not adopted silently), reported once
              per exchange size. The exchange-held stop is ``closePosition``: it closes the whole
              position, the extra part too. Our own exits stay reduce-only for the trade's size.
    OPPOSITE  the exchange holds the other side: reported once per exchange size, nothing
              changed (no rule can prove what happened to our side)

Every resize is one ``Problem`` (``POSITION_RESIZED``: from, to, the price and where it came
from; the shell logs it as ``brain.position_resized``), counted (``position_resized``, and
``position_resized_at_mark`` for the fallback; ``COUNTERS`` go in the heartbeat); the
trade's new size is published as its ``POSITION`` (the journal), and reaches the exit lane by
the trade's change and a trailing target by ``protection.resize``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from common.fastcopy import replace
from services.brain import protection as pr
from services.brain.trader_views import live_orders, position_body
from services.brain.trader_views import EXACT  # the trader's sums: notionals stay exact
from services.brain.trader_state import (
    Action, Ctx, Dispatch, FetchSymbolFills, Problem, Publish, Result, Trade, TraderConfig, TraderState, count,
    with_trade,
)

SAME, SMALLER, LARGER, OPPOSITE = "SAME", "SMALLER", "LARGER", "OPPOSITE"
RESIZED = "POSITION_RESIZED"
LARGER_AT_EXCHANGE = "POSITION_LARGER_AT_EXCHANGE"
OPPOSITE_AT_EXCHANGE = "POSITION_OPPOSITE_AT_EXCHANGE"
# each of these Problems is one event (a resize, a new size at the exchange): logged every
# time under its own name, never throttled like other problems
LOG_EVENTS = {RESIZED: "brain.position_resized", LARGER_AT_EXCHANGE: "brain.position_larger_at_exchange",
              OPPOSITE_AT_EXCHANGE: "brain.position_opposite_at_exchange"}
# the trader's counters of this module, in the brain's heartbeat (zero until they count)
COUNTERS = ("position_smaller_at_exchange", "position_resized", "position_resized_at_mark",
            "position_larger_at_exchange", "position_opposite_at_exchange")
_ZERO = Decimal(0)


@dataclass(frozen=True, kw_only=True)
class Size:
    """The trade against the exchange: ``kind``, and ``gone`` (SMALLER: how much left)."""

    kind: str
    trade_qty: Decimal  # unsigned
    exchange_qty: Decimal  # signed: > 0 long
    gone: Decimal = _ZERO


def compare(side: str, trade_qty: Decimal, exchange_qty: Decimal) -> Size:
    """The trade (``side``, unsigned ``trade_qty`` > 0) against the exchange's signed non-zero
    ``exchange_qty`` (flat is ``trader_exchange.on_exchange_position``'s)."""
    held = exchange_qty if side == "BUY" else -exchange_qty  # on the trade's side: > 0
    if held <= 0:
        return Size(kind=OPPOSITE, trade_qty=trade_qty, exchange_qty=exchange_qty)
    if held == trade_qty:
        return Size(kind=SAME, trade_qty=trade_qty, exchange_qty=exchange_qty)
    if held < trade_qty:
        return Size(kind=SMALLER, trade_qty=trade_qty, exchange_qty=exchange_qty, gone=trade_qty - held)
    return Size(kind=LARGER, trade_qty=trade_qty, exchange_qty=exchange_qty)


def shrink(t: Trade, qty: Decimal, price: Decimal) -> Trade:
    """``qty`` of the trade closed at ``price``: a partial exit (exact), the position smaller."""
    return replace(t, exit_qty=t.exit_qty + qty, exit_notional=EXACT.add(t.exit_notional, EXACT.multiply(qty, price)))


def foreign_room(t: Trade) -> Decimal:
    """How much of the trade the closing fills of orders we never sent may still close: all of
    it when the exchange is flat, the part that left when it holds less, else nothing."""
    if t.flat_at_exchange_ms:
        return t.position
    if t.smaller_at_exchange:
        return max(_ZERO, t.position - t.smaller_at_exchange)
    return _ZERO


def settled(st: TraderState, t: Trade, read_ms: int = 0) -> bool:
    """Nothing of ours is moving the symbol, so a difference is not our own news in flight."""
    if t.position <= 0 or t.flat_at_exchange_ms or pr.closing(st, t):
        return False
    if read_ms and t.moved_ms >= read_ms:
        return False  # a fill of ours came after the read was sent: it may not show it
    return not live_orders(st, t.symbol)


def on_exchange_size(cfg: TraderConfig, st: TraderState, t: Trade, qty: Decimal, ctx: Ctx,
                     read_ms: int = 0) -> Result:
    """The exchange holds ``qty`` (signed, non-zero) of the trade's symbol (the module's table).
    ``read_ms``: when the REST read was sent (0: the user stream, in order with our fills)."""
    if not settled(st, t, read_ms):
        return st, []
    size = compare(t.side, t.position, qty)
    if size.kind == SAME:
        if t.smaller_at_exchange or t.differs_reported:
            t = replace(t, smaller_at_exchange=_ZERO, smaller_since_ms=0, differs_reported=_ZERO)
            return with_trade(st, t), []
        return st, []
    if size.kind == SMALLER:
        held = t.position - size.gone
        if t.smaller_at_exchange == held:
            return st, []  # already waiting for its closing fills
        t = replace(t, smaller_at_exchange=held, smaller_since_ms=ctx.now_ms, differs_reported=_ZERO)
        st = count(with_trade(st, t), "position_smaller_at_exchange")
        return st, [Dispatch(FetchSymbolFills(symbol=t.symbol, since_ms=t.first_fill_ms or t.opened_ms), t.symbol)]
    if t.differs_reported == qty:
        return st, []
    kind = LARGER_AT_EXCHANGE if size.kind == LARGER else OPPOSITE_AT_EXCHANGE
    t = replace(t, differs_reported=qty, smaller_at_exchange=_ZERO, smaller_since_ms=0)
    st = count(with_trade(st, t), kind.lower())
    note = (" kept at the trade's size; the exchange-held closePosition stop covers the whole position"
            if size.kind == LARGER else " nothing changed")
    return st, [Problem(kind, f"{t.symbol}: trade {t.side} {t.position}, exchange {qty};{note}")]


def after_fills(cfg: TraderConfig, st: TraderState, before: Trade, ctx: Ctx) -> Result:
    """The symbol's fetched fills were applied (``before``: the trade before them): a smaller
    exchange position they explain is done; the resize is said, published and reaches a
    trailing target. Nothing when no resize waits or the trade closed."""
    t = st.trades.get(before.symbol)
    if t is None or not before.smaller_at_exchange or t.flat_at_exchange_ms:
        return st, []
    if t.position > t.smaller_at_exchange:
        return st, []  # not (all) explained yet: the timer closes the rest at the mark
    part = t.exit_qty - before.exit_qty
    price = EXACT.divide(t.exit_notional - before.exit_notional, part) if part > 0 else _ZERO
    detail = f"{t.symbol}: {before.position} -> {t.position}, {part} closed at {price} by the exchange's fills"
    return _resized(cfg, replace(t, smaller_at_exchange=_ZERO, smaller_since_ms=0), st, detail, ctx)


def on_timer(cfg: TraderConfig, st: TraderState, t: Trade, ctx: Ctx) -> Result:
    """A smaller exchange position whose closing fills did not come within
    ``external_close_wait_ms``: the rest of the part that left is closed at the mark, and the
    trade will not be learned from."""
    if not t.smaller_at_exchange or ctx.now_ms - t.smaller_since_ms < cfg.external_close_wait_ms:
        return st, []
    if not settled(st, t) or t.position <= t.smaller_at_exchange:
        return with_trade(st, replace(t, smaller_at_exchange=_ZERO, smaller_since_ms=0)), []
    rest = t.position - t.smaller_at_exchange
    q = ctx.market.quotes.get(t.symbol)
    mark = Decimal(repr(q.mark_price if q is not None and q.mark_price > 0 else float(t.entry_avg)))
    new = replace(shrink(t, rest, mark), smaller_at_exchange=_ZERO, smaller_since_ms=0, priced_at_mark=True)
    detail = (f"{t.symbol}: {t.position} -> {new.position}, {rest} closed at the mark {mark}"
              f" (no closing fills within {cfg.external_close_wait_ms} ms; not learned from)")
    return _resized(cfg, new, count(st, "position_resized_at_mark"), detail, ctx)


def _resized(cfg: TraderConfig, t: Trade, st: TraderState, detail: str, ctx: Ctx) -> Result:
    st = count(with_trade(st, t), "position_resized")
    actions: list[Action] = [Problem(RESIZED, detail), Publish(position_body(t, ctx))]
    st, acts = pr.resize(cfg, st, st.trades[t.symbol], ctx)  # a trailing target holds a quantity
    return st, [*actions, *acts]
