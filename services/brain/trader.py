"""The trader: signals, prices and exchange answers in; orders, publications and lessons out.

Pure: every function takes the state and an input and returns ``(new state, actions)``; the
shell (``services/brain/execution.py``) carries the actions out (journal, broker, PUB) and
feeds the answers back. No clock (``Ctx.now_ms``), no sockets, no files.

Each rule has one home; this module holds the commands (a strategy's intents, an operator's
CLOSE / CLOSE_ALL) and the timer, and maps the rest:

    trader_state    the values: configuration, a trade, the state, the actions
    trader_views     portfolio and held positions, a position's body, sizing, slippage
    trader_entries   ``on_signal``: rotation, sizing, the risk checks, the entry order
    trader_exits     ``exit_trade``, ``on_prices`` (stop, target, trail), ``levels``, ``planned_exit``
    trader_fills     ``on_fill`` / ``on_order_event``, funding (``on_income``), closing a trade
    trader_exchange  protective orders' answers and audits, the exchange's positions,
                     reconciliation and adoption, the fills of a symbol closed at the exchange
    trader_restart   ``restore``, ``recovery_actions``, ``protect_unprotected``, ``adopt``

The life of a trade:

1. ``trader_entries.on_signal``: the rotation rule gives the signal a slot (Take), a slot held
   by the weakest position (Rotate: exit that one first; the entry waits in ``pending`` until
   the exit is flat), or none (Skip). The entry is sized so that a stop-out loses
   ``risk_per_trade_pct`` of equity, then every pre-trade check runs; a rejection is published
   as ``RISK_REJECT``. An approved entry becomes a NEW_LOCAL order (``NewOrder``): the shell
   journals it durably and only then sends it (``orders`` rule 1).
2. Fills (``trader_fills.on_fill``) move the trade's entry or exit quantity; each is published
   as ``FILL`` and the position as ``POSITION``.
3. ``trader_exits.on_prices``: the stop or the target was touched within the batch (its
   low/high) -> a reduce-only MARKET exit (with ``trailing_callback_pct`` > 0 the target only
   starts a trail). Exits are local: the brain watches the price; the exchange-held stop
   (``protection``) is the layer beneath. A refused exit is retried by ``on_timer`` after
   ``exit_retry_ms``.
4. Flat again: ``TRADE_CLOSED`` with the realised PnL, fees, funding and the outcome in R (PnL
   per unit of the risk planned at entry), and ``Learn`` for the model (not for adopted positions).

Funding (``trader_fills.on_income``): the exchange's FUNDING_FEE income rows, fetched by the
shell after each ``ACCOUNT_UPDATE`` m=FUNDING_FEE and on a timer, belong to the open trade of
their symbol, each row once; a trade's PnL and R include it.

Client order ids are deterministic (``orders.make_client_order_id``): entry ``ae-<signal>-0``,
exit n ``ax-<signal>-n``. A signal whose entry id was ever used (``used_cids``, restored
from the database after a restart) is skipped: a replayed candle cannot open a second trade.

One position per symbol, at most ``rotation.max_positions``; a trade whose entry is in flight
holds its slot, and an order whose outcome is unknown blocks any new order on its trade
until a query resolves it (never two live exits, never a blind re-send).
"""

from __future__ import annotations

from common.fastcopy import replace
from venue import orders as om
from services.brain import protection as pr
from services.brain import trader_resize
from services.brain.trader_exits import FLATTEN, STRATEGY, exit_trade
from services.brain.trader_fills import close_at_mark, order_done
from services.brain.trader_state import (  # noqa: F401  (the trader's values, named here too)
    Action, CheckPosition, CheckRemainder, Ctx, Dispatch, FetchSymbolFills, Learn, NewAlgo, NewOrder, PendingEntry, Problem,
    Publish, Result, Trade, TraderConfig, TraderState, count as _count, with_order as _with_order,
)


def request_exit(cfg: TraderConfig, st: TraderState, symbol: str, reason: str, ctx: Ctx) -> Result:
    """A strategy's ``Exit`` intent: exit the symbol's trade (nothing when there is none or
    it is already leaving)."""
    t = st.trades.get(symbol)
    if t is None or t.exit_reason or t.flat_at_exchange_ms:
        return st, []
    return exit_trade(cfg, st, t, reason or STRATEGY, ctx)


def move_level(cfg: TraderConfig, st: TraderState, symbol: str, role: str, level: float, ctx: Ctx) -> Result:
    """A strategy's ``MoveStop`` / ``MoveTarget``: the trade's plan and its exchange-held order
    (cancel and replace, ``protection.move``). Nothing when the symbol has no trade."""
    t = st.trades.get(symbol)
    if t is None:
        return _count(st, f"move_no_trade:{role}"), []
    return pr.move(cfg, st, t, role, level, ctx)


def cancel_entry(cfg: TraderConfig, st: TraderState, symbol: str, ctx: Ctx) -> Result:
    """A strategy's ``Cancel``: withdraw the symbol's entry while it rests unfilled (a GTC
    limit entry). A limit-IOC or MARKET entry never rests: then there is nothing to cancel."""
    t = st.trades.get(symbol)
    o = st.orders.get(t.entry_cid) if t is not None else None
    if o is None or o.is_terminal or o.state not in (om.S.ACKED, om.S.NEW_LOCAL) or t.entry_qty > 0:
        return _count(st, "cancel_nothing_resting"), []
    new, effects = om.apply(o, om.CancelRequest())
    st = _count(_with_order(st, new), "entry_cancels")
    actions: list[Action] = [Publish(om.to_order_update(new))] if new.state != o.state else []
    actions += [Dispatch(e, new.symbol) for e in effects if not isinstance(e, om.OrderError)]
    if new.is_terminal:  # never sent: the slot is free now
        st, more = order_done(cfg, st, new, ctx)
        actions += more
    return st, actions


def flatten(cfg: TraderConfig, st: TraderState, ctx: Ctx) -> Result:
    """Exit every position (kill switch with flatten, or an operator's request)."""
    actions: list[Action] = []
    for t in list(st.trades.values()):
        st, acts = exit_trade(cfg, st, t, FLATTEN, ctx)
        actions += acts
    return st, actions


def on_timer(cfg: TraderConfig, st: TraderState, ctx: Ctx) -> Result:
    """Retry wanted exits whose last attempt failed; close at the mark a trade the exchange
    said was flat whose closing fills never came, or the part of one the exchange holds less
    of (``trader_resize.on_timer``); drop rotation entries that waited too long."""
    actions: list[Action] = []
    for t in list(st.trades.values()):
        if t.flat_at_exchange_ms:
            if ctx.now_ms - t.flat_at_exchange_ms >= cfg.external_close_wait_ms and t.position > 0:
                st, acts = close_at_mark(cfg, st, t, ctx)
                actions += acts
            continue
        if t.smaller_at_exchange:  # part of it left behind our back and its fills never came
            st, acts = trader_resize.on_timer(cfg, st, t, ctx)
            actions += acts
            t = st.trades[t.symbol]
        if t.exit_reason and not t.exit_cid and t.position > 0 and ctx.now_ms >= t.next_exit_ms:
            st, acts = exit_trade(cfg, st, t, t.exit_reason, ctx)
            actions += acts
    live = tuple(p for p in st.pending if p.expires_ms > ctx.now_ms)
    if len(live) != len(st.pending):
        st = _count(replace(st, pending=live), *["skipped:ROTATION_EXPIRED"] * (len(st.pending) - len(live)))
    return st, actions
