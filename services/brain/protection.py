"""Who protects a position: the exchange's stop and target for every trade (pure).

From a trade's first entry fill the exchange holds two conditional orders in its Algo
Service: a STOP_MARKET at the plan's stop and a TAKE_PROFIT_MARKET at its target, both
``closePosition`` (they close whatever the position is when they trigger, and can never open
one), triggered on the mark price with price protection. So a position stays protected while
the brain restarts, and for as long as the host is down. The brain's own watcher
(``trader_exits.on_prices``) stays the faster layer: it exits on the tick that touches a level; the
exchange's orders are the floor under it.

The rules (each returns ``(state, actions)``; the shell journals, then sends):

1. ``arm``: on the first entry fill (and after a restart, for a position without a live
   stop), one NEW_LOCAL stop and one NEW_LOCAL target, ``clientAlgoId``
   ``ps-<signal>-<n>`` / ``pt-<signal>-<n>``; ``n`` counts placements, so a moved level is a
   new order (cancel and replace) and a replayed event can never place a second one.
2. ``disarm``: when the trade is flat (or the plan is dropped) its live protective orders are
   cancelled. They stay tracked until the exchange confirms they are over: a symbol with a
   protective order still alive takes no new entry (``blocking_algos``), so an old
   ``closePosition`` order can never close the next trade.
3. ``triggered``: an order the exchange triggered is a market order in the matching engine,
   with our ``clientAlgoId`` as its client order id: the trader tracks it as the trade's exit
   (its fills close the trade as any exit's do) and the other leg is cancelled.
4. ``move``: a strategy's MoveStop / MoveTarget changes the plan at once (the brain's own
   watcher uses the new level from the next tick) and replaces the exchange's order: cancel
   the old one, and when the exchange confirms the cancel, place the new one with the next
   ``n``. Cancel first because Binance holds at most one ``closePosition`` order per symbol,
   side and type (-4130): the new stop cannot be placed while the old one stands. The gap
   (cancel sent -> new stop confirmed) counts in ``longest_unprotected_ms``; the brain's
   watcher covers it. A cancel that finds the old order triggered leaves nothing to replace
   (the position is closing).
5. ``flat_at_exchange``: the exchange says the symbol is flat while our trade holds a position
   (a stop we have not heard of yet, a liquidation, a manual close): the slot is free at once
   (the trade no longer counts as a position), protection is cancelled, no exit is sent, and
   the symbol's fills since the trade opened are fetched to learn the real exit; if they do
   not arrive within ``external_close_wait_ms`` the trade closes at the mark, not learned.

Trailing targets (``cfg.trailing_callback_pct`` > 0): the target is a TRAILING_STOP_MARKET for
the position's quantity (reduce-only; Binance takes no closePosition on it), activated at the
plan's target with that callback (``protective_order``); a later entry fill replaces it for the
whole position (``resize``). The brain's watcher trails with the same rule (``trail``). A
MoveTarget moves the activation price by cancel and replace until the trail is active, then it
is refused (a replacement would lose the best price the exchange tracked).

Measured: ``longest_unprotected_ms``, the longest any position waited from its first fill for
the exchange to confirm its stop.
"""

from __future__ import annotations

from decimal import Decimal

from common.fastcopy import replace
from common import wire
from services.brain import risk
from services.brain.trader_state import (
    Action, Ctx, Dispatch, NewAlgo, Problem, Publish, Result, Trade, TraderConfig, TraderState, count,
    with_algo, with_trade,
)
from venue import algo_orders as ao
from venue import orders as om

STOP_PREFIX, TARGET_PREFIX = "ps", "pt"
STOP, TARGET = "STOP", "TARGET"
EXTERNAL = "EXTERNAL"  # closed by someone else: manual, liquidation, ADL
UNRESOLVED_SUFFIX = "_UNRESOLVED"  # closed at the mark: the closing fills never came


def close_side(t: Trade) -> str:
    return "SELL" if t.side == "BUY" else "BUY"


def to_wire(o: ao.AlgoOrder, reason: str = "") -> wire.AlgoOrderUpdate:
    """The journal's and the dashboard's view; ``trigger_price`` is the level the order holds
    (a trailing stop's activation price: ``level_of``)."""
    return wire.AlgoOrderUpdate(
        client_algo_id=o.client_algo_id, symbol=o.symbol, side=o.side, order_type=o.order_type,
        trigger_price=format(level_of(o), "f"), state=o.state.value, trade_id=o.trade_id, role=o.role,
        working_type=o.working_type, close_position=o.close_position, algo_id=o.algo_id,
        actual_order_id=o.actual_order_id, sent_ms=o.last_sent_ms, reason=reason or o.reject_reason)


def _trigger(level: float, tick: Decimal, side: str) -> Decimal | None:
    d = risk.to_decimal(level)
    if d is None or d <= 0:
        return None
    p = risk.round_price(d, tick, side)
    return p if p > 0 else None


def trailing(cfg: TraderConfig) -> bool:
    """Whether the target is a trailing stop (``trading.trailing_callback_pct`` > 0)."""
    return cfg.trailing_callback_pct > 0


def protective_order(cfg: TraderConfig, t: Trade, role: str, price: Decimal, n: int) -> ao.AlgoOrder:
    """Placement ``n`` of ``t``'s stop or target at ``price`` (on the tick). The stop is a
    STOP_MARKET (closePosition); the target a TAKE_PROFIT_MARKET (closePosition) or, with
    trailing on, a TRAILING_STOP_MARKET for the position's quantity (reduce-only: Binance takes
    no closePosition on a trailing stop) activated at ``price`` with the configured callback."""
    prefix = STOP_PREFIX if role == STOP else TARGET_PREFIX
    common = dict(client_algo_id=om.make_client_order_id(prefix, t.trade_id, n), symbol=t.symbol,
                  side=close_side(t), trade_id=t.trade_id, role=role, recv_window_ms=cfg.recv_window_ms)
    if role == TARGET and trailing(cfg):
        return ao.new_algo_order(**common, order_type="TRAILING_STOP_MARKET", close_position=False,
                                 qty=t.position, callback_rate=Decimal(repr(cfg.trailing_callback_pct)),
                                 activation_price=price)
    kind = "STOP_MARKET" if role == STOP else "TAKE_PROFIT_MARKET"
    return ao.new_algo_order(**common, order_type=kind, trigger_price=price)


def level_of(o: ao.AlgoOrder) -> Decimal:
    """The plan level an order holds: its trigger, or a trailing stop's activation price."""
    return o.activation_price if o.order_type == "TRAILING_STOP_MARKET" else o.trigger_price


def trail_level(extreme: float, direction: int, callback_pct: float) -> Decimal:
    """Where a trailing stop closes: ``callback_pct`` % back from the best price (exact decimals,
    as the exchange computes it: a retrace of exactly the callback closes)."""
    ext = Decimal(repr(extreme))
    rate = Decimal(repr(callback_pct)) / 100
    return ext * (1 - rate) if direction > 0 else ext * (1 + rate)


def trail(extreme: float, direction: int, activation: float, callback_pct: float,
          low: float, high: float) -> tuple[float, bool]:
    """The trailing rule over one traded range ``[low, high]`` (one price: ``low == high``):
    ``(new extreme, exit?)``. ``extreme`` is the best price since the price reached
    ``activation`` (0.0: not reached yet). A long's trail activates once a price is at or above
    the activation price and then follows the highest price; it exits when a price is at or
    below that highest x (1 - callback %); a short mirrored (lowest, x (1 + callback %)) --
    Binance's TRAILING_STOP_MARKET rule. Within one range the order of prices is unknown, so
    the exit is judged against the extreme known before the range and the range's own best
    price only moves the extreme: the local layer never exits on a retrace that may not have
    happened (the exchange, which sees every mark price, may then close first)."""
    long = direction > 0
    if not extreme and activation <= 0:
        return 0.0, False  # no target: nothing to trail
    if extreme:
        worst = Decimal(repr(low if long else high))
        level = trail_level(extreme, direction, callback_pct)
        if (worst <= level) if long else (worst >= level):
            return extreme, True
    best = high if long else low
    if extreme:
        return (max(extreme, best) if long else min(extreme, best)), False
    if (best >= activation) if long else (best <= activation):
        return best, False
    return 0.0, False


def arm(cfg: TraderConfig, st: TraderState, t: Trade, ctx: Ctx) -> Result:
    """Place the exchange-held stop and target of ``t`` (rule 1)."""
    if not cfg.exchange_protection or t.position <= 0 or t.stop_cid or t.flat_at_exchange_ms:
        return st, []
    f = ctx.market.filters.get(t.symbol)
    if f is None:
        return count(st, "protection_no_filters"), [Problem("PROTECTION_NO_FILTERS", f"no filters for {t.symbol}")]
    side = close_side(t)
    n = t.protect_n + 1
    orders: list[ao.AlgoOrder] = []
    for role, level in ((STOP, t.stop), (TARGET, t.target)):
        price = _trigger(level, f.tick_size, side)
        if price is None:
            continue
        orders.append(protective_order(cfg, t, role, price, n))
    if not orders or orders[0].role != STOP:
        return count(st, "protection_no_stop"), [Problem("PROTECTION_NO_STOP", f"{t.symbol}: stop {t.stop!r}")]
    by_role = {o.role: o.client_algo_id for o in orders}
    t = replace(t, stop_cid=by_role[STOP], target_cid=by_role.get(TARGET, ""), protect_n=n,
                algo_cids=t.algo_cids | set(by_role.values()))
    st = with_trade(st, t)
    for o in orders:
        st = with_algo(st, o)
    return count(st, "protections_armed"), [NewAlgo(o) for o in orders]


def _cancel(st: TraderState, cid: str) -> Result:
    o = st.algos.get(cid)
    if o is None or o.is_terminal:
        return st, []
    new, effects = ao.apply(o, ao.CancelRequest())
    st = with_algo(st, new)
    actions: list[Action] = [Publish(to_wire(new))] if new.state != o.state else []
    return st, [*actions, *(Dispatch(e, new.symbol) for e in effects)]


def disarm(st: TraderState, t: Trade, *, keep: str = "") -> tuple[TraderState, Trade, list[Action]]:
    """Cancel the trade's live protective orders except ``keep`` (rule 2)."""
    actions: list[Action] = []
    for cid in (t.stop_cid, t.target_cid):
        if cid and cid != keep:
            st, acts = _cancel(st, cid)
            actions += acts
    t = replace(t, stop_cid=keep if keep == t.stop_cid else "", target_cid=keep if keep == t.target_cid else "")
    return st, t, actions


def move(cfg: TraderConfig, st: TraderState, t: Trade, role: str, level: float, ctx: Ctx) -> Result:
    """A strategy's new stop or target for ``t`` (rule 4). Refused (counted, a Problem) when
    the level is not a price, or is already on the wrong side of the mark (a stop the price has
    passed is an exit, which the strategy asks for with ``Exit``)."""
    f = ctx.market.filters.get(t.symbol)
    side = close_side(t)
    price = _trigger(level, f.tick_size, side) if f is not None else None
    quote = ctx.market.quotes.get(t.symbol)
    mark = quote.mark_price if quote is not None else 0.0
    long = t.direction > 0
    passed = mark > 0 and price is not None and (
        (float(price) >= mark if long else float(price) <= mark) if role == STOP
        else (float(price) <= mark if long else float(price) >= mark))
    active = role == TARGET and trailing(cfg) and bool(t.trail_extreme)
    if price is None or passed or active or t.flat_at_exchange_ms or t.exit_reason:
        why = ("not a price" if price is None else f"already passed by the mark {mark}" if passed
               else "the trailing stop is active: it follows the price now" if active
               else "the trade is closing")
        return count(st, f"move_refused:{role}"), [Problem("MOVE_REFUSED", f"{t.symbol} {role} {level!r}: {why}")]
    t = replace(t, stop=float(price)) if role == STOP else replace(t, target=float(price))
    cid = t.stop_cid if role == STOP else t.target_cid
    live = st.algos.get(cid) if cid else None
    if not cfg.exchange_protection or live is None or live.is_terminal or closing(st, t):
        # nothing held at the exchange for this role (yet): the plan is all there is to move;
        # ``arm`` places the new level when the position exists
        return count(with_trade(st, t), f"moves:{role}"), []
    if role in t.replacing:  # a replace is under way: its placement will use the newest level
        return count(with_trade(st, t), f"moves:{role}"), []
    t = replace(t, replacing=t.replacing | {role},
                unprotected_from_ms=ctx.now_ms if role == STOP else t.unprotected_from_ms)
    st, actions = _cancel(with_trade(st, t), cid)
    st = count(st, f"moves:{role}", "protection_replaces")
    now_gone = replaced(cfg, st, st.trades[t.symbol], st.algos[cid], ctx)  # never sent: cancelled locally
    if now_gone is not None:
        st, more = now_gone
        actions = [*actions, *more]
    return st, actions


def resize(cfg: TraderConfig, st: TraderState, t: Trade, ctx: Ctx) -> Result:
    """The position grew (another entry fill) while its trailing target holds a smaller quantity:
    replace it (cancel, then place for the whole position at the same activation price, rule 4).
    The stop needs nothing: it is closePosition."""
    o = st.algos.get(t.target_cid) if t.target_cid else None
    if (o is None or o.is_terminal or o.order_type != "TRAILING_STOP_MARKET" or o.qty == t.position
            or TARGET in t.replacing or t.exit_reason or closing(st, t)):
        return st, []
    t = replace(t, replacing=t.replacing | {TARGET})
    st, actions = _cancel(with_trade(st, t), o.client_algo_id)
    st = count(st, "protection_resizes")
    now_gone = replaced(cfg, st, st.trades[t.symbol], st.algos[o.client_algo_id], ctx)
    if now_gone is not None:
        st, more = now_gone
        actions = [*actions, *more]
    return st, actions


def replaced(cfg: TraderConfig, st: TraderState, t: Trade, o: ao.AlgoOrder, ctx: Ctx) -> Result | None:
    """The cancel of a protective order being replaced is confirmed: place its successor at
    the plan's (moved) level (rule 4). None when ``o`` is not such an order."""
    role = STOP if o.client_algo_id == t.stop_cid else TARGET if o.client_algo_id == t.target_cid else ""
    if not role or role not in t.replacing or o.state != ao.A.CANCELED or t.position <= 0:
        return None
    f = ctx.market.filters.get(t.symbol)
    side = close_side(t)
    level = t.stop if role == STOP else t.target
    price = _trigger(level, f.tick_size, side) if f is not None else None
    t = replace(t, replacing=t.replacing - {role})
    if price is None:
        return count(with_trade(st, t), "protection_no_filters"), [
            Problem("PROTECTION_NO_FILTERS", f"no filters for {t.symbol}")]
    n = t.protect_n + 1
    new = protective_order(cfg, t, role, price, n)
    t = replace(t, protect_n=n, algo_cids=t.algo_cids | {new.client_algo_id},
                **({"stop_cid": new.client_algo_id, "protected_ms": 0} if role == STOP
                   else {"target_cid": new.client_algo_id}))
    st = with_algo(with_trade(st, t), new)
    return count(st, f"protection_replaced:{role}"), [NewAlgo(new)]


def blocking_algos(st: TraderState, symbol: str) -> list[str]:
    """Protective orders of ``symbol`` still alive at the exchange (or maybe alive)."""
    held = st.trades.get(symbol)
    own = held.algo_cids if held is not None else frozenset()
    return sorted(cid for cid, o in st.algos.items()
                  if o.symbol == symbol and not o.is_terminal and cid not in own)


def prune(st: TraderState) -> TraderState:
    """Forget terminal protective orders no trade refers to any more."""
    live_cids = set().union(*(t.algo_cids for t in st.trades.values())) if st.trades else set()
    keep = {k: v for k, v in st.algos.items() if not v.is_terminal or k in live_cids}
    return st if len(keep) == len(st.algos) else replace(st, algos=keep)


def closing(st: TraderState, t: Trade) -> bool:
    """One of the trade's protective orders fired or expired: the exchange is closing (or has
    closed) the position, so nothing is armed for it until its position is known."""
    return any(st.algos[c].state in (ao.A.TRIGGERED, ao.A.FINISHED, ao.A.EXPIRED)
               for c in t.algo_cids if c in st.algos)


def triggered_order(t: Trade, o: ao.AlgoOrder) -> om.Order:
    """The market order a triggered ``o`` became, as the trader tracks an exit (rule 3)."""
    order = om.new_order(client_order_id=o.client_algo_id, symbol=t.symbol, side=o.side, order_type="MARKET",
                         qty=t.position, reduce_only=True, signal_id=t.trade_id, recv_window_ms=o.recv_window_ms)
    return replace(order, state=om.S.ACKED, confirmed=True, exchange_order_id=o.actual_order_id,
                   send_count=1, last_sent_ms=o.last_sent_ms)


def on_triggered(st: TraderState, t: Trade, o: ao.AlgoOrder) -> Result:
    """Track the triggered order as the trade's exit and cancel the other leg (rule 3)."""
    if o.client_algo_id in st.orders or t.position <= 0:
        return st, []
    order = triggered_order(t, o)
    st, t, actions = disarm(st, t, keep=o.client_algo_id)
    reason = o.role if t.exit_reason in ("", EXTERNAL) else t.exit_reason  # now we know who closed it
    t = replace(t, exit_reason=reason, exit_cids=t.exit_cids | {order.client_order_id},
                exit_cid=t.exit_cid or order.client_order_id)
    st = with_trade(replace(st, orders={**st.orders, order.client_order_id: order}), t)
    # the exchange made a MARKET order of it: journaled like every order we track, so the
    # orders table holds every order the exchange holds (its fills then move the row on)
    journal = [Publish(om.to_order_request(order)), Publish(om.to_order_update(order))]
    return count(st, f"protection_triggered:{o.role}"), [*journal, *actions]


def confirmed(st: TraderState, t: Trade, o: ao.AlgoOrder, now_ms: int) -> TraderState:
    """The exchange holds the stop: the position is protected from now (rule 1's measure)."""
    if o.client_algo_id != t.stop_cid or t.protected_ms or o.state != ao.A.LIVE:
        return st
    since = t.unprotected_from_ms or t.first_fill_ms  # a replaced stop: since its cancel was sent
    waited = max(0, now_ms - since) if since else 0
    st = with_trade(st, replace(t, protected_ms=now_ms, unprotected_from_ms=0))
    return replace(st, longest_unprotected_ms=max(st.longest_unprotected_ms, waited))
