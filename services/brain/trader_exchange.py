"""What the exchange says on its side (pure): protective orders' answers and audits
(``on_algo_event``, ``on_open_algos``, ``protection``'s rules), the exchange's position of a
symbol (``on_exchange_position``: flat under an open trade frees the slot; another size:
``trader_resize``), reconciliation's
repairs and the adoption of positions no trade of ours holds (``on_reconciled``), and the
fills of a symbol fetched after the exchange said flat (``on_symbol_fills``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Sequence

from common.fastcopy import replace
from common import wire
from venue import order_rules
from venue import orders as om
from services.brain import protection as pr
from services.brain import trader_fills, trader_resize
from venue import algo_orders as ao
from venue.port import ExchangeFill, ExchangePosition
from services.brain.trader_state import (
    Action, CheckPosition, Ctx, Dispatch, FetchSymbolFills, Problem, Publish, Result, TraderConfig, TraderState,
    count as _count, with_algo as _with_algo, with_order as _with_order, with_trade as _with_trade,
)
from services.brain.trader_exits import exit_trade
from services.brain.trader_restart import adopt
from services.brain.trader_views import busy, position_body


# ---------------------------------------------------------------------------- the exchange's side
def on_algo_event(cfg: TraderConfig, st: TraderState, cid: str, event: ao.Event, ctx: Ctx) -> Result:
    """An answer or update about one protective order (``protection``'s rules)."""
    o = st.algos.get(cid)
    if o is None:
        return _count(st, "unknown_algo_events"), [Problem("UNKNOWN_ALGO", f"{type(event).__name__} for {cid}", cid)]
    new, effects = ao.apply(o, event)
    st = _with_algo(st, new)
    actions: list[Action] = []
    if new.state != o.state or new.algo_id != o.algo_id or new.actual_order_id != o.actual_order_id:
        actions.append(Publish(pr.to_wire(new)))
    for e in effects:
        if isinstance(e, ao.AlgoError):
            actions.append(Problem(e.kind, e.detail, cid))
        else:
            actions.append(Dispatch(e, new.symbol))
    t = st.trades.get(new.symbol)
    if t is None or cid not in t.algo_cids:
        return pr.prune(st), actions
    st = pr.confirmed(st, t, new, ctx.now_ms)
    t = st.trades[t.symbol]
    if new.state in (ao.A.TRIGGERED, ao.A.FINISHED) and o.state not in (ao.A.TRIGGERED, ao.A.FINISHED):
        st, acts = pr.on_triggered(st, t, new)
        return st, [*actions, *acts]
    if new.state == ao.A.REJECTED and cid == t.stop_cid:
        # the exchange would not hold the stop (e.g. -2021: the price is already past it):
        # nothing protects the position, so the local layer exits now
        st = _count(st, "protection_rejected")
        st, acts = exit_trade(cfg, _with_trade(st, replace(t, stop_cid="")), replace(t, stop_cid=""), pr.STOP, ctx)
        return st, [*actions, Problem("PROTECTION_REJECTED", f"{cid}: {new.reject_code} {new.reject_reason}", cid),
                    *acts]
    forgotten = any(isinstance(e, ao.AlgoError) and e.kind == order_rules.NOT_FOUND_AFTER_ACK for e in effects)
    if new.state == ao.A.EXPIRED and cid == t.stop_cid and t.position > 0:
        # the exchange expires a closePosition stop when the position is gone: ask, do not re-arm
        # a stop for a position that may no longer exist (it would be refused, -4509)
        st = _count(_with_trade(st, replace(t, stop_cid="", protected_ms=0)), "protection_expired")
        return st, [*actions, Dispatch(CheckPosition(symbol=t.symbol), t.symbol)]
    moved = pr.replaced(cfg, st, t, new, ctx)
    if moved is not None:  # a strategy moved this level: its successor goes out now
        return moved[0], [*actions, *moved[1]]
    if (new.state in (ao.A.CANCELED, ao.A.REJECTED) or forgotten) and cid == t.stop_cid \
            and t.position > 0 and not pr.closing(st, t):
        # the stop is gone while the position is not (cancelled by hand, expired): re-arm
        t = replace(t, stop_cid="", target_cid="" if t.target_cid and st.algos[t.target_cid].is_terminal
                    else t.target_cid, protected_ms=0)
        st, t, cancels = pr.disarm(_with_trade(st, t), t)
        st, acts = pr.arm(cfg, _with_trade(st, t), t, ctx)
        return _count(st, "protections_rearmed"), [*actions, *cancels, *acts]
    return st, actions


def on_open_algos(cfg: TraderConfig, st: TraderState, open_algos: list[Any], ctx: Ctx) -> Result:
    """The exchange's open conditional orders (an audit): a stop we think live that the
    exchange does not list is asked about (gone -> re-armed); a held position without a stop is
    armed; a protective order of ours (ps-/pt-) that no open trade owns is cancelled, so it can
    never close a later position on its symbol."""
    open_ids = {o.client_algo_id for o in open_algos}
    actions: list[Action] = []
    for t in list(st.trades.values()):
        if t.position <= 0 or t.flat_at_exchange_ms:
            continue
        for cid in (t.stop_cid, t.target_cid):
            o = st.algos.get(cid) if cid else None
            if o is not None and o.state == ao.A.LIVE and cid not in open_ids:
                actions.append(Dispatch(ao.QueryAlgo(client_algo_id=cid, not_before_ms=0), t.symbol))
        if not t.stop_cid and not pr.closing(st, t):
            st, acts = pr.arm(cfg, st, t, ctx)
            actions += acts
    owned = set().union(*(t.algo_cids for t in st.trades.values())) if st.trades else set()
    for o in open_algos:
        cid = o.client_algo_id
        ours = cid.startswith((pr.STOP_PREFIX + "-", pr.STOP_PREFIX + ".", pr.TARGET_PREFIX + "-",
                               pr.TARGET_PREFIX + "."))
        if not ours or cid in owned or (cid in st.algos and not st.algos[cid].is_terminal):
            continue
        stray = ao.AlgoOrder(client_algo_id=cid, symbol=o.symbol, side=o.side, order_type=o.order_type,
                             trigger_price=o.trigger_price, close_position=o.close_position, state=ao.A.LIVE,
                             algo_id=o.algo_id, confirmed=True, send_count=1, role="STRAY")
        new, effects = ao.apply(stray, ao.CancelRequest())
        st = _count(_with_algo(st, new), "stray_protection_cancelled")
        actions += [Problem("STRAY_PROTECTION", f"{cid} on {o.symbol}: no open trade owns it; cancelling", cid),
                    Publish(pr.to_wire(new)), *(Dispatch(e, o.symbol) for e in effects)]
    return st, actions


def on_exchange_position(cfg: TraderConfig, st: TraderState, symbol: str, qty: Decimal, ctx: Ctx,
                         read_ms: int = 0) -> Result:
    """The exchange's position of ``symbol`` (user stream, or a REST read sent at ``read_ms``).
    A flat exchange position under a trade that still holds one frees the slot at once
    (``protection`` rule 4); one of another size is ``trader_resize``'s."""
    t = st.trades.get(symbol)
    if t is not None and qty != 0:
        return trader_resize.on_exchange_size(cfg, st, t, qty, ctx, read_ms)
    if t is None or qty != 0 or t.position <= 0 or t.flat_at_exchange_ms:
        return st, []
    entry = st.orders.get(t.entry_cid)
    if entry is not None and not entry.is_terminal and not t.entry_qty:
        return st, []  # the entry is still on its way: flat is what we expect
    triggered = [o.role for cid, o in st.algos.items()
                 if cid in t.algo_cids and o.state in (ao.A.TRIGGERED, ao.A.FINISHED)]
    reason = t.exit_reason or (triggered[0] if triggered else pr.EXTERNAL)
    st, t, cancels = pr.disarm(st, t)
    t = replace(t, flat_at_exchange_ms=ctx.now_ms, exit_reason=reason)
    st = _count(_with_trade(st, t), "closed_at_exchange")
    since = t.first_fill_ms or t.opened_ms
    return st, [*cancels, Dispatch(FetchSymbolFills(symbol=symbol, since_ms=since), symbol),
                Publish(wire.Position(symbol=symbol, qty=0.0, entry_price=0.0))]


REMAINDER = "remainder"  # ``on_reconciled``'s other caller: the read after our exit closed a trade
ADOPTION_COUNTERS = ("reconciled_adopted", "remainder_adopted")  # in the heartbeat
_FOUND_BY = {"reconciliation": ("reconciled_adopted", "found by reconciliation"),
             REMAINDER: ("remainder_adopted", "left when our exit closed the trade")}


def on_reconciled(cfg: TraderConfig, st: TraderState, symbols: Sequence[str], adopted_orders: Sequence[str],
                  positions: Sequence[ExchangePosition], sent_ms: int, ctx: Ctx,
                  found_by: str = "reconciliation") -> Result:
    """Reconciliation repaired ``symbols`` and adopted ``adopted_orders`` (``wire.Reconciled``);
    ``positions`` is the exchange's answer to a read the shell sent at ``sent_ms``, after the
    message came (the message's own values are seconds old: none is used).

    - an adopted order id is used: no order is ever sent under it again;
    - a trade the exchange shows flat: ``on_exchange_position`` (slot freed, closing fills fetched),
      unless its first fill came after the read was sent (the read may predate its position);
    - a trade the exchange holds at another size: ``trader_resize`` (less: the trade follows the
      exchange; more: kept at its size and reported once), unless the read may predate our own
      latest doing on the symbol;
    - a position with no trade of ours: adopted (``adopt``) and protected by an exchange-held
      stop, unless the read may not show our own latest doing on the symbol (an entry or a
      close at or after ``sent_ms``, or ``trader_views.busy``: an order of ours still live on
      it, a protective order of ours that may still be alive, an entry waiting for it): then
      the next run tells again. Nothing is adopted twice, no order is sent but the
      new trade's protection: the same message again finds the trade and changes nothing.

    ``found_by`` REMAINDER: the same rules for the read the shell sends after our own exit closed
    a trade (``CheckRemainder``): a part of the position someone added by hand is adopted and
    protected at once, not at the next reconciliation (counted ``remainder_adopted``)."""
    actions: list[Action] = []
    if adopted_orders:
        st = replace(st, used_cids=st.used_cids | frozenset(adopted_orders))
    held = {p.symbol: p for p in positions if p.qty != 0}
    for sym in sorted(set(symbols)):
        p, t = held.get(sym), st.trades.get(sym)
        if t is not None:
            if t.first_fill_ms > sent_ms:
                continue  # the read may predate the trade's position (``user_feed.apply_position_read``)
            if p is None:
                st, acts = on_exchange_position(cfg, st, sym, Decimal(0), ctx)
                actions += acts
            elif st.last_action_ms.get(sym, 0) < sent_ms:
                st, acts = trader_resize.on_exchange_size(cfg, st, t, p.qty, ctx, read_ms=sent_ms)
                actions += acts
            continue
        if p is None:
            continue
        if st.last_action_ms.get(sym, 0) >= sent_ms or busy(st, sym):
            st = _count(st, "reconciled_adoption_deferred")
            continue
        t = adopt(cfg, symbol=sym, qty=p.qty, entry_price=p.entry_price, now_ms=ctx.now_ms)
        if found_by == REMAINDER:  # unprotected since our close cancelled the old stop: measured so
            t = replace(t, unprotected_from_ms=st.last_action_ms.get(sym, 0))
        counter, how = _FOUND_BY[found_by]
        st = _count(_with_trade(st, t), counter)
        actions += [Problem("POSITION_ADOPTED", f"{sym}: {p.qty} @ {p.entry_price}, {how}"),
                    Publish(position_body(t, ctx))]
        st, acts = pr.arm(cfg, st, t, ctx)
        actions += acts
    return st, actions


def on_symbol_fills(cfg: TraderConfig, st: TraderState, symbol: str, fills: list[ExchangeFill], ctx: Ctx) -> Result:
    """The symbol's fills, fetched after the exchange said flat: our own orders' fills go the
    usual way; the closing fills of an order we never sent (manual close, liquidation) become
    the trade's exit, one tracked exit per exchange order, never more than the exchange closed
    (``trader_resize.foreign_room``: all of it when flat, the part that left when smaller)."""
    actions: list[Action] = []
    before = st.trades.get(symbol)
    for f in sorted(fills, key=lambda x: (x.time_ms, x.trade_id)):
        t = st.trades.get(symbol)
        if t is None:
            break
        if t.first_fill_ms and f.time_ms and f.time_ms < t.first_fill_ms:
            continue
        cid = f.client_order_id or next((k for k, o in st.orders.items()
                                         if o.exchange_order_id == f.exchange_order_id and o.symbol == symbol), "")
        if not cid and f.side == pr.close_side(t) and t.position > 0:
            cid = f"x.{f.exchange_order_id}"[:36]
            room = trader_resize.foreign_room(t)
            if not (cid in st.orders and f.trade_id in st.orders[cid].trade_ids):
                if room <= 0:
                    continue  # the exchange holds all of the trade: not a close of it
                if f.qty > room:  # it closed more than the trade's part (a position added by hand): that part
                    f = replace(f, qty=room, fee=f.fee * room / f.qty)
            if cid not in st.orders:
                qty = t.position if t.flat_at_exchange_ms else min(room, sum(
                    (g.qty for g in {g.trade_id: g for g in fills if g.exchange_order_id == f.exchange_order_id
                                     and g.side == f.side}.values()), Decimal(0)))
                order = replace(om.new_order(client_order_id=cid, symbol=symbol, side=f.side, order_type="MARKET",
                                             qty=qty, reduce_only=True, signal_id=t.trade_id),
                                state=om.S.ACKED, confirmed=True, exchange_order_id=f.exchange_order_id)
                st = _with_trade(_with_order(st, order), replace(t, exit_cids=t.exit_cids | {cid}))
        if not cid or (cid not in st.orders and cid not in st.algos):
            continue
        st, acts = trader_fills.on_fill(cfg, st, f, ctx, client_order_id=cid)
        actions += acts
    if before is not None:
        st, acts = trader_resize.after_fills(cfg, st, before, ctx)
        actions += acts
    return st, actions
