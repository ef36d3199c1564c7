"""The exchange's answers about our orders (pure): fills and status events through the order
state machine (``on_order_event``), a fill moving its trade's entry or exit (``_apply_fill``),
an order that ended (``order_done``), funding rows (``on_income``) and the close of a trade
(``_close``: ``TRADE_CLOSED`` with the PnL, fees, funding and the outcome in R, and ``Learn``).

A trade's PnL and R include its funding: ``pnl = direction x (exit notional - entry notional)
+ funding``, ``R = pnl / (|entry avg - stop| x entry qty)``; fees stay apart (net = pnl - fees).
Funding rows (``GET /fapi/v1/income``) belong to the open trade of their symbol when timed at
or after the trade opened, each row once (by ``tranId``)."""

from __future__ import annotations

import math
from decimal import Decimal

from common.fastcopy import replace
from common import wire
from venue import orders as om
from services.brain import protection as pr
from services.brain import rotation
from venue.port import ExchangeFill, ExchangeIncome
from services.brain.trader_state import (
    Action, CheckPosition, CheckRemainder, Ctx, Dispatch, Learn, Problem, Publish, Result, Trade, TraderConfig, TraderState,
    count as _count, with_order as _with_order, with_trade as _with_trade, without_trade as _without_trade,
)
from services.brain.trader_entries import enter_trade
from services.brain.trader_exits import exit_trade
from services.brain.trader_restart import adopt
from services.brain.trader_views import EXACT, add_slippage, mark_price_or, position_body, slippage_bps

ENTRY_NOT_FILLED = "ENTRY_NOT_FILLED"  # a limit-IOC entry expired with no fill: price beyond the bound
FUNDING_FEE = "FUNDING_FEE"  # the income type funding is booked as
REDUCE_ONLY_REJECTED = -2022  # Binance: "ReduceOnly Order is rejected" (no position to reduce)


# ---------------------------------------------------------------------------- exchange answers
def on_fill(cfg: TraderConfig, st: TraderState, fill: ExchangeFill, ctx: Ctx, client_order_id: str = "") -> Result:
    """One execution from the broker (idempotent by trade id)."""
    cid = client_order_id or fill.client_order_id
    event = om.TradeFill(trade_id=fill.trade_id, qty=fill.qty, price=fill.price,
                         exchange_order_id=fill.exchange_order_id)
    return on_order_event(cfg, st, cid, event, ctx, fill=fill)


def on_order_event(cfg: TraderConfig, st: TraderState, cid: str, event: om.Event, ctx: Ctx,
                   fill: ExchangeFill | None = None) -> Result:
    order = st.orders.get(cid)
    pre: list[Action] = []
    if order is None and cid in st.algos and isinstance(event, om.TradeFill):
        # a protective order triggered at the exchange: its market order carries our id
        t = st.trades.get(st.algos[cid].symbol)
        if t is not None and cid in t.algo_cids:
            st, pre = pr.on_triggered(st, t, st.algos[cid])
            order = st.orders.get(cid)
    if order is None:
        return _count(st, "unknown_order_events"), [Problem("UNKNOWN_ORDER", f"{type(event).__name__} for {cid}", cid)]
    if isinstance(event, om.TradeFill) and cid in st.algos and st.algos[cid].close_position:
        # a closePosition order closes the whole position: past the trade's part (a position
        # someone added to by hand, trader_resize) the fill is not the trade's
        part = max(Decimal(0), order.qty - order.filled_qty)
        if event.qty > part and event.trade_id not in order.trade_ids:
            if part <= 0:
                return _count(st, "fills_beyond_trade"), []
            st = _count(st, "fills_beyond_trade")
            event = replace(event, qty=part)
    new, effects = om.apply(order, event)
    # rule: an order that went back to NEW_LOCAL (its attempt is proven dead) is not re-sent:
    # the trade decides afresh (a new exit id on the next timer; an entry is simply dropped)
    if new.state == om.S.NEW_LOCAL and order.state != om.S.NEW_LOCAL:
        new, more = om.apply(new, om.CancelRequest())
        effects = (*effects, *more)
    st = _with_order(st, new)
    actions: list[Action] = list(pre)
    if new.state != order.state or new.filled_qty != order.filled_qty:
        actions.append(Publish(om.to_order_update(new)))
    for e in effects:
        if isinstance(e, om.OrderError):
            actions.append(Problem(e.kind, e.detail, cid))
        elif isinstance(e, om.FillApplied):
            st, acts = _apply_fill(cfg, st, new, e, fill, ctx)
            actions += acts
        else:
            actions.append(Dispatch(e, new.symbol))
    if new.is_terminal and not order.is_terminal:
        # fills the exchange reported but we have not counted yet are being fetched (FetchTrades)
        awaiting = any(isinstance(e, om.FetchTrades) for e in effects)
        st, acts = order_done(cfg, st, new, ctx, awaiting_fills=awaiting)
        actions += acts
    return st, actions


def _trade_of(st: TraderState, o: om.Order) -> tuple[Trade | None, bool]:
    """(trade, is_entry) for an order, or (None, False)."""
    t = st.trades.get(o.symbol)
    if t is None:
        return None, False
    if t.entry_cid == o.client_order_id:
        return t, True
    return (t, False) if o.client_order_id in t.exit_cids else (None, False)


def _apply_fill(cfg: TraderConfig, st: TraderState, o: om.Order, e: om.FillApplied, fill: ExchangeFill | None,
                ctx: Ctx) -> Result:
    fee = whole_fee = fill.fee if fill is not None and fill.fee_asset == "USDT" else Decimal(0)
    whole = fill.qty if fill is not None and fill.trade_id == e.trade_id else e.qty  # the exchange's fill
    if whole > e.qty:  # only part of it is the trade's (``on_order_event``): so is its fee
        fee = EXACT.divide(EXACT.multiply(fee, e.qty), whole)
    st = _count(replace(st, fees=EXACT.add(st.fees, fee)), "fills")
    # the journal holds the exchange's fill as it is; the trade counts its part
    body = wire.Fill(client_order_id=o.client_order_id, exchange_order_id=o.exchange_order_id, trade_id=e.trade_id,
                     symbol=o.symbol, side=o.side, qty=float(whole), price=float(e.price), fee=float(whole_fee),
                     fee_asset=fill.fee_asset if fill is not None else "USDT",
                     liquidity=fill.liquidity if fill is not None else "taker")
    actions: list[Action] = [Publish(body)]
    t, is_entry = _trade_of(st, o)
    if t is None:
        return st, [*actions, Problem("ORPHAN_FILL", f"fill {e.trade_id} of {o.client_order_id} has no trade",
                                      o.client_order_id)]
    notional = EXACT.multiply(e.qty, e.price)
    if is_entry:
        t = replace(t, entry_qty=t.entry_qty + e.qty, entry_notional=EXACT.add(t.entry_notional, notional),
                    fees=t.fees + fee, first_fill_ms=t.first_fill_ms or ctx.now_ms, moved_ms=ctx.now_ms)
        if t.stop <= 0:  # recovered without a plan: protect it like an adopted position
            plan = adopt(cfg, symbol=t.symbol, qty=t.entry_qty * t.direction, entry_price=t.entry_avg,
                         now_ms=ctx.now_ms)
            t = replace(t, stop=plan.stop, target=plan.target, adopted=True)
    else:
        t = replace(t, exit_qty=t.exit_qty + e.qty, exit_notional=EXACT.add(t.exit_notional, notional),
                    fees=t.fees + fee, moved_ms=ctx.now_ms)
    st = _with_trade(st, t)
    if t.position <= 0 and t.exit_qty > 0:
        return _close(cfg, st, t, ctx, actions)
    actions.append(Publish(position_body(t, ctx)))
    if is_entry and not t.stop_cid:  # the position exists: the exchange holds its stop from now
        st, acts = pr.arm(cfg, st, t, ctx)
        actions += acts
        t = st.trades[t.symbol]
    elif is_entry:  # a later entry fill: a trailing target (a quantity, not closePosition) grows with it
        st, acts = pr.resize(cfg, st, t, ctx)
        actions += acts
        t = st.trades[t.symbol]
    if is_entry and t.exit_reason and not t.exit_cid:  # an exit was wanted before this filled
        st, acts = exit_trade(cfg, st, t, t.exit_reason, ctx)
        actions += acts
    elif not is_entry and t.exit_cid == o.client_order_id and o.filled_qty >= o.qty and not t.flat_at_exchange_ms:
        # the exit is done and the position is not: it was sized while the entry was still
        # filling (fills one by one from the user stream). Exit the rest now
        t = replace(t, exit_cid="")
        st, acts = exit_trade(cfg, _with_trade(st, t), t, t.exit_reason, ctx)
        actions += acts
    return st, actions


def order_done(cfg: TraderConfig, st: TraderState, o: om.Order, ctx: Ctx, awaiting_fills: bool = False) -> Result:
    """An order ended (terminal): an entry that never filled frees its slot (a limit IOC that
    found nothing within the bound says so), a failed exit is retried later (after a
    reduce-only refusal, once the exchange's position was read)."""
    t, is_entry = _trade_of(st, o)
    if t is None:
        return st, []
    if o.state == om.S.FILLED:
        return st, []  # its fills are on their way (FetchTrades): they move the trade
    if is_entry and t.entry_qty == 0 and o.filled_qty == 0 and not awaiting_fills:
        # the entry never filled: free the slot (the cooldown still applies)
        st = _without_trade(st, t.symbol)
        if o.state == om.S.EXPIRED and o.order_type == "LIMIT" and o.time_in_force == "IOC":
            # the market was beyond the slippage bound: not chased, and said why
            detail = f"limit IOC {o.side} at {o.price} found nothing within the bound (signal {t.signal_price})"
            return _count(st, "entries_failed", f"rejected:{ENTRY_NOT_FILLED}"), [
                Publish(wire.RiskReject(symbol=t.symbol, reason=ENTRY_NOT_FILLED, detail=detail,
                                        signal_id=t.trade_id))]
        return _count(st, "entries_failed"), []
    if not is_entry and t.exit_cid == o.client_order_id and t.position > 0:
        if o.reject_code == REDUCE_ONLY_REJECTED:
            # the exchange has nothing to reduce: closed behind our back? Ask before any retry
            t = replace(t, exit_cid="", next_exit_ms=ctx.now_ms + 10 * cfg.exit_retry_ms)
            return _count(_with_trade(st, t), "exit_reduce_only_rejected"), [
                Dispatch(CheckPosition(symbol=t.symbol), t.symbol)]
        return _with_trade(st, replace(t, exit_cid="", next_exit_ms=ctx.now_ms + cfg.exit_retry_ms)), []
    return st, []


def outcome_r(t: Trade) -> float:
    """PnL per unit of the planned risk (entry to stop), funding included, before fees."""
    risk_dist = abs(float(t.entry_avg) - t.stop)
    if risk_dist <= 0 or not t.entry_qty:
        return 0.0
    r = t.direction * (float(t.exit_avg) - float(t.entry_avg)) / risk_dist
    return r + float(t.funding) / (risk_dist * float(t.entry_qty)) if t.funding else r


def trade_pnl(t: Trade) -> Decimal:
    """The trade's realised PnL before fees, funding included (exact)."""
    price = EXACT.multiply(Decimal(t.direction), EXACT.subtract(t.exit_notional, t.entry_notional))
    return EXACT.add(price, t.funding)


def on_income(cfg: TraderConfig, st: TraderState, rows: list[ExchangeIncome], ctx: Ctx) -> Result:
    """The exchange's income rows: each FUNDING_FEE row of a symbol with an open trade, timed at
    or after the trade opened, is that trade's funding, once (by ``tranId``). Other rows, and
    rows of no open trade (a trade closed before its last funding was read), change nothing."""
    for r in rows:
        if r.income_type != FUNDING_FEE:
            continue
        t = st.trades.get(r.symbol)
        if t is None or r.time_ms < t.opened_ms or not t.entry_qty:
            continue
        if r.tran_id in t.funding_ids:
            continue
        t = replace(t, funding=EXACT.add(t.funding, r.amount), funding_ids=t.funding_ids | {r.tran_id})
        st = _count(_with_trade(st, t), "funding_applied")
    return st, []


def _close(cfg: TraderConfig, st: TraderState, t: Trade, ctx: Ctx, actions: list[Action],
           learnable: bool = True) -> Result:
    st, t, cancels = pr.disarm(st, t)
    actions = [*actions, *cancels]
    pnl = trade_pnl(t)
    r = outcome_r(t)
    learned = learnable and not t.adopted and not t.priced_at_mark and math.isfinite(r)
    body = wire.TradeClosed(trade_id=t.trade_id, symbol=t.symbol, side=t.side, qty=float(t.entry_qty),
                            entry_price=float(t.entry_avg), exit_price=float(t.exit_avg), stop=t.stop,
                            target=t.target, opened_ms=t.opened_ms, closed_ms=ctx.now_ms, pnl=float(pnl),
                            fees=float(t.fees), funding=float(t.funding), outcome_r=r, exit_reason=t.exit_reason or "UNKNOWN",
                            confidence=min(1.0, max(0.0, t.confidence)), learned=learned,
                            signal_price=t.signal_price,
                            slippage_bps=slippage_bps(t.side, t.signal_price, t.entry_avg))
    flat = wire.Position(symbol=t.symbol, qty=0.0, entry_price=0.0, unrealized_pnl=0.0, realized_pnl=float(pnl))
    actions = [*actions, Publish(flat), Publish(body)]
    if learned:
        actions.append(Learn(t.features, r))
    if not t.flat_at_exchange_ms and t.entry_qty > 0:  # closed by fills of ours: is anything left?
        actions.append(Dispatch(CheckRemainder(t.symbol), t.symbol))
    keep = {k: v for k, v in st.orders.items()
            if not ((v.is_terminal or t.flat_at_exchange_ms) and (k == t.entry_cid or k in t.exit_cids))}
    st = replace(_without_trade(st, t.symbol), orders=keep, realized_pnl=EXACT.add(st.realized_pnl, pnl),
                 funding=EXACT.add(st.funding, t.funding),
                 slippage_closed=add_slippage(st.slippage_closed, body.slippage_bps),
                 last_action_ms=rotation.record_action(st.last_action_ms, t.symbol, ctx.now_ms))
    st = pr.prune(st)
    st = _count(st, "trades_closed", *(["wins"] if pnl > 0 else []))
    # a rotation's entry waited for this exit
    waiting = [p for p in st.pending if p.after_symbol == t.symbol]
    st = replace(st, pending=tuple(p for p in st.pending if p.after_symbol != t.symbol))
    for p in waiting:
        if p.expires_ms > ctx.now_ms:
            st, acts = enter_trade(cfg, st, p.signal, ctx)
            actions += acts
    return st, actions


def close_at_mark(cfg: TraderConfig, st: TraderState, t: Trade, ctx: Ctx) -> Result:
    """The exchange said flat and the closing fills never came: close the trade at the mark,
    said in the exit reason, and do not learn from a price we did not see filled."""
    mark = Decimal(repr(mark_price_or(ctx, t.symbol, float(t.entry_avg))))
    rest = t.position
    t = replace(t, exit_qty=t.exit_qty + rest, exit_notional=EXACT.add(t.exit_notional, EXACT.multiply(rest, mark)),
                exit_reason=(t.exit_reason or pr.EXTERNAL) + pr.UNRESOLVED_SUFFIX)
    st = _count(_with_trade(st, t), "closed_at_mark")
    return _close(cfg, st, t, ctx, [Problem("CLOSED_AT_MARK", f"{t.symbol}: no closing fills within "
                                                              f"{cfg.external_close_wait_ms} ms")], learnable=False)
