"""The trader: signals, prices and exchange answers in; orders, publications and lessons out.

Pure: every function takes the state and an input and returns ``(new state, actions)``; the
shell (``services/brain/execution.py``) carries the actions out (journal, broker, PUB) and
feeds the answers back. No clock (``Ctx.now_ms``), no sockets, no files.

The life of a trade:

1. ``on_signal``: the rotation rule (``rotation.decide``) gives the signal a slot (Take), a
   slot held by the weakest position (Rotate: exit that one first, then enter; the entry waits
   in ``pending`` until the exit is flat), or none (Skip, counted by reason). The entry is
   sized so that a stop-out loses ``risk_per_trade_pct`` of equity, then every pre-trade
   check runs (``risk.check_order``); a rejection is published as ``RISK_REJECT``. An approved
   entry becomes a NEW_LOCAL order (``NewOrder``): the shell journals it durably and only then
   sends it (``orders`` rule 1).
2. Fills (``on_fill``) move the trade's entry or exit quantity; each is published as ``FILL``
   and the position as ``POSITION``.
3. ``on_prices``: the stop or the target was touched within the batch (its low/high) -> a
   reduce-only MARKET exit. With ``trailing_callback_pct`` > 0 the target only starts a trail
   (``protection.trail``): the exit comes when the price falls back that many percent from its
   best since the target was reached. Exits are local: the brain watches the price (see README: no
   exchange-side stop yet). A refused exit is retried by ``on_timer`` after ``exit_retry_ms``.
4. Flat again: ``TRADE_CLOSED`` with the realised PnL, fees, funding and the outcome in R (PnL
   per unit of the risk planned at entry), and ``Learn`` for the model (not for adopted positions).

Funding (``on_income``): the exchange's FUNDING_FEE income rows (``GET /fapi/v1/income``, fetched
by the shell after each ``ACCOUNT_UPDATE`` m=FUNDING_FEE and on a timer) belong to the open trade
of their symbol when timed at or after the trade opened, each row once (by ``tranId``). A trade's
PnL and R include its funding: ``pnl = direction x (exit notional - entry notional) + funding``,
``R = pnl / (|entry avg - stop| x entry qty)``; fees stay apart (net = pnl - fees).

Client order ids are deterministic (``orders.make_client_order_id``): entry ``ae-<signal>-0``,
exit n ``ax-<signal>-n``. A signal whose entry id was ever used (``used_cids``, restored
from the database after a restart) is skipped: a replayed candle cannot open a second trade.

One position per symbol, at most ``rotation.max_positions``; a trade whose entry is in flight
holds its slot, and an order whose outcome is unknown blocks any new order on its trade
until a query resolves it (never two live exits, never a blind re-send).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any, Mapping, Sequence

from common.fastcopy import build, replace
from common import wire
from venue import orders as om
from services.brain import protection as pr
from services.brain import risk, rotation
from venue import algo_orders as ao
from venue.filters import is_on_grid, round_qty_down
from venue.port import ExchangeFill, ExchangeIncome, ExchangePosition
from services.brain.trading_state import (  # noqa: F401  (the trader's values, named here too)
    Action, CheckPosition, Ctx, Dispatch, FetchSymbolFills, Learn, NewAlgo, NewOrder, PendingEntry, Problem,
    Publish, Result, Trade, TraderConfig, TraderState, count as _count, with_algo as _with_algo,
    with_id, with_order as _with_order, with_trade as _with_trade, without_trade as _without_trade,
)

_EXACT = Context(prec=100)
_AVG = Context(prec=34)
ENTRY_PREFIX = "ae"
EXIT_PREFIX = "ax"
PENDING_ENTRY_TTL_MS = 60_000  # a rotation's entry waits this long for its exit to finish
# exit reasons
STOP, TARGET, ROTATION, FLATTEN, STRATEGY = "STOP", "TARGET", "ROTATION", "FLATTEN", "STRATEGY"
# reasons a signal gets no order, besides risk.REASONS and rotation's skips
DUPLICATE_SIGNAL = "DUPLICATE_SIGNAL"
TRADING_DISABLED = "TRADING_DISABLED"
NO_SIZE = "NO_SIZE"
ENTRY_NOT_FILLED = "ENTRY_NOT_FILLED"  # a limit-IOC entry expired with no fill: price beyond the bound
PROTECTION_PENDING = "PROTECTION_PENDING"  # the symbol's old protective orders are not yet cancelled
FUNDING_FEE = "FUNDING_FEE"  # the income type funding is booked as
REDUCE_ONLY_REJECTED = -2022  # Binance: "ReduceOnly Order is rejected" (no position to reduce)


# ---------------------------------------------------------------------------- views
def _mark(ctx: Ctx, symbol: str, fallback: float) -> float:
    q = ctx.market.quotes.get(symbol)
    return q.mark_price if q is not None and q.mark_price > 0 else fallback


def portfolio(st: TraderState, ctx: Ctx) -> risk.Portfolio:
    """Held positions at the mark, plus entries still in flight at the mark."""
    held, pending = [], []
    for t in st.trades.values():
        if t.flat_at_exchange_ms:
            continue  # the exchange says flat: no exposure, whatever our fills say yet
        price = _mark(ctx, t.symbol, float(t.entry_avg) or 0.0)
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
                                         stop_price=t.stop, mark_price=_mark(ctx, t.symbol, entry),
                                         confidence=t.confidence, opened_ms=t.opened_ms))
    return out


def unrealized_pnl(t: Trade, mark: float) -> float:
    if t.position <= 0 or mark <= 0:
        return 0.0
    return float(t.position) * t.direction * (mark - float(t.entry_avg))


def position_body(t: Trade, ctx: Ctx, realized: Decimal = Decimal(0)) -> wire.Position:
    mark = _mark(ctx, t.symbol, float(t.entry_avg))
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
class _Req:
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
    move = _EXACT.divide(_EXACT.multiply(ref, bps), _TEN_THOUSAND)
    if sig.side == "BUY":
        price = round_qty_down(_EXACT.add(ref, move), tick)
    else:
        raw = _EXACT.subtract(ref, move)
        down = round_qty_down(raw, tick)
        price = down if is_on_grid(raw, tick) else down + tick
    return price if price > 0 else None


def slippage_bps(side: str, signal_price: float, fill_price: Decimal) -> float | None:
    """The entry's average fill against the signal price in bps, positive = worse for us."""
    if signal_price <= 0 or fill_price <= 0:
        return None
    d = 1 if side == "BUY" else -1
    return d * (float(fill_price) - signal_price) / signal_price * 10_000.0


def _add_slippage(acc: tuple[int, float, float], bps: float | None) -> tuple[int, float, float]:
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
            acc = _add_slippage(acc, slippage_bps(t.side, t.signal_price, t.entry_avg))
    return {"closed": list(st.slippage_closed), "open": list(acc)}


# ---------------------------------------------------------------------------- entries
def on_signal(cfg: TraderConfig, st: TraderState, sig: wire.SignalGenerated, ctx: Ctx) -> Result:
    st = _count(st, "signals")
    cid = om.make_client_order_id(ENTRY_PREFIX, sig.signal_id, 0)
    if cid in st.used_cids:
        return _count(st, f"skipped:{DUPLICATE_SIGNAL}"), []
    if pr.blocking_algos(st, sig.symbol):
        return _count(st, f"skipped:{PROTECTION_PENDING}"), []
    if ctx.block_reason:
        st = _count(st, "risk_rejects", f"rejected:{TRADING_DISABLED}")
        return st, [Publish(wire.RiskReject(symbol=sig.symbol, reason=TRADING_DISABLED,
                                            detail=ctx.block_reason, signal_id=sig.signal_id))]
    decision = rotation.decide(held_positions(st, ctx), sig, ctx.now_ms, cfg.rotation, st.last_action_ms)
    if isinstance(decision, rotation.Skip):
        return _count(st, f"skipped:{decision.reason}"), []
    if isinstance(decision, rotation.Take):
        return _enter(cfg, st, sig, ctx)
    # Rotate: only if the entry would pass risk once the weakest is gone (else exit for nothing)
    exiting = st.trades[decision.exit_symbol]
    without = _without_trade(st, exiting.symbol)
    dry = _check_entry(cfg, without, sig, ctx)
    if isinstance(dry, risk.Rejected):
        return _reject(st, sig, dry, dry_run=True)
    st, actions = _exit(cfg, st, exiting, ROTATION, ctx)
    st = _count(st, "rotations")
    st = replace(st, pending=(*st.pending, PendingEntry(signal=sig, after_symbol=exiting.symbol,
                                                        expires_ms=ctx.now_ms + PENDING_ENTRY_TTL_MS)))
    return st, actions


def _check_entry(cfg: TraderConfig, st: TraderState, sig: wire.SignalGenerated, ctx: Ctx) -> risk.Decision:
    price = _mark(ctx, sig.symbol, sig.entry)
    qty = entry_qty(cfg, sig, ctx.equity, price)
    if qty <= 0:  # say why, rather than risk's generic QTY_INVALID for a zero size
        bad_equity = not (math.isfinite(ctx.equity) and ctx.equity > 0)
        return risk.Rejected(reason=risk.EQUITY_INVALID if bad_equity else NO_SIZE, state=st.risk,
                             detail=f"equity {ctx.equity!r}" if bad_equity else
                             f"no risk distance: entry {sig.entry} stop {sig.stop}")
    otype, limit, tif = "MARKET", 0.0, ""
    f = ctx.market.filters.get(sig.symbol)
    if cfg.entry_order == "limit_ioc" and f is not None:
        p = entry_limit(cfg, sig, f.tick_size, price)
        if p is None:
            return risk.Rejected(reason=risk.PRICE_INVALID, state=st.risk,
                                 detail=f"no limit price from entry {sig.entry} and mark {price}")
        otype, limit, tif = "LIMIT", float(p), "IOC"
    req = build(_Req, client_order_id=om.make_client_order_id(ENTRY_PREFIX, sig.signal_id, 0), symbol=sig.symbol,
                side=sig.side, order_type=otype, qty=qty, price=limit,
                reduce_only=False, signal_id=sig.signal_id, time_in_force=tif)
    dec = risk.check_order(cfg.risk, st.risk, portfolio(st, ctx), req, ctx.market, ctx.now_ms)
    if isinstance(dec, risk.Approved):
        stop, entry = risk.to_decimal(sig.stop), risk.to_decimal(price)
        bad = risk.check_liquidation(side=sig.side, qty=dec.qty, entry=entry or Decimal(0), stop=stop or Decimal(0),
                                     leverage=cfg.leverage, buffer_pct=cfg.liquidation_buffer_pct,
                                     brackets=tuple(ctx.brackets.get(sig.symbol, ())))
        if bad is not None:  # refused before it counts in the rate window
            return risk.Rejected(reason=bad.reason, detail=bad.detail, state=st.risk)
    return dec


def _reject(st: TraderState, sig: wire.SignalGenerated, dec: risk.Rejected, dry_run: bool = False) -> Result:
    if not dry_run:
        st = replace(st, risk=dec.state)
    st = _count(st, "risk_rejects", f"rejected:{dec.reason}")
    return st, [Publish(wire.RiskReject(symbol=sig.symbol, reason=dec.reason, detail=dec.detail,
                                        signal_id=sig.signal_id))]


def _enter(cfg: TraderConfig, st: TraderState, sig: wire.SignalGenerated, ctx: Ctx) -> Result:
    dec = _check_entry(cfg, st, sig, ctx)
    if isinstance(dec, risk.Rejected):
        return _reject(st, sig, dec)
    order = om.order_from_request(dec.order, recv_window_ms=cfg.recv_window_ms)
    cid = order.client_order_id
    trade = build(Trade, trade_id=sig.signal_id, symbol=sig.symbol, side=sig.side, stop=sig.stop, target=sig.target,
                  confidence=sig.confidence, features=dict(sig.features), opened_ms=ctx.now_ms,
                  entry_cid=cid, signal_price=sig.entry if sig.entry > 0 else 0.0)
    # one copy of the state: the trade, the order, the risk state, the used id, the rotation's
    # clock and the counters (what _with_trade, _with_order and _count would give one by one)
    counters = dict(st.counters)
    counters["orders"] = counters.get("orders", 0) + 1
    counters["entries"] = counters.get("entries", 0) + 1
    st = replace(st, risk=dec.state, used_cids=with_id(st.used_cids, cid),
                 last_action_ms=rotation.record_action(st.last_action_ms, sig.symbol, ctx.now_ms),
                 trades={**st.trades, trade.symbol: trade}, orders={**st.orders, cid: order}, counters=counters)
    return st, [NewOrder(order, dec.order)]


# ---------------------------------------------------------------------------- exits
def _exit(cfg: TraderConfig, st: TraderState, t: Trade, reason: str, ctx: Ctx) -> Result:
    """A reduce-only MARKET order for the whole position (or, with nothing filled yet, the
    wish to exit, carried out once the entry has filled)."""
    t = replace(t, exit_reason=t.exit_reason or reason)
    if t.position <= 0 or t.exit_cid:
        return _with_trade(st, t), []
    n = t.exits_sent + 1
    cid = om.make_client_order_id(EXIT_PREFIX, t.trade_id, n)
    req = _Req(client_order_id=cid, symbol=t.symbol, side="SELL" if t.side == "BUY" else "BUY",
               order_type="MARKET", qty=float(t.position), price=0.0, reduce_only=True, signal_id=t.trade_id)
    dec = risk.check_order(cfg.risk, st.risk, portfolio(st, ctx), req, ctx.market, ctx.now_ms)
    t = replace(t, exits_sent=n, next_exit_ms=ctx.now_ms + cfg.exit_retry_ms)
    if isinstance(dec, risk.Rejected):
        st = _count(replace(_with_trade(st, t), risk=dec.state), "risk_rejects", f"rejected:{dec.reason}")
        return st, [Publish(wire.RiskReject(symbol=t.symbol, reason=dec.reason, detail=f"exit: {dec.detail}",
                                            signal_id=t.trade_id))]
    order = om.order_from_request(dec.order, recv_window_ms=cfg.recv_window_ms)
    t = replace(t, exit_cid=cid, exit_cids=t.exit_cids | {cid})
    st = replace(_with_order(_with_trade(st, t), order), risk=dec.state, used_cids=st.used_cids | {cid})
    return _count(st, "orders", "exits"), [NewOrder(order, dec.order)]


def on_prices(cfg: TraderConfig, st: TraderState, symbol: str, low: float, high: float, ctx: Ctx) -> Result:
    """The traded range of ``symbol`` since the last call: exit on a touched stop or target."""
    t = st.trades.get(symbol)
    if t is None or t.position <= 0 or t.exit_reason or t.flat_at_exchange_ms:
        return st, []
    if t.direction > 0:
        reason = STOP if low <= t.stop else TARGET if high >= t.target else ""
    else:
        reason = STOP if high >= t.stop else TARGET if low <= t.target else ""
    if reason != STOP and pr.trailing(cfg):  # the target is where the trail starts, not an exit
        extreme, fire = pr.trail(t.trail_extreme, t.direction, t.target, cfg.trailing_callback_pct, low, high)
        if extreme != t.trail_extreme:
            t = replace(t, trail_extreme=extreme)
            st = _with_trade(st, t)
        reason = TARGET if fire else ""
    return _exit(cfg, st, t, reason, ctx) if reason else (st, [])


@dataclass(frozen=True, slots=True)
class Levels:
    """The prices at which ``on_prices`` acts on a trade, for a range ``[low, high]``:

    - ``low <= exit_lo or high >= exit_hi``: it sends an exit (certain);
    - ``low <= wake_lo or high >= wake_hi``: it may change something (an exit, or a trailing
      target's best price); outside both, ``on_prices`` provably changes nothing.

    Comparisons are the ones ``on_prices`` makes (inclusive, on the same floats), so the two
    agree to the bit; a test checks ``levels`` against ``on_prices`` on random trades and
    ranges. A trailing target's exit is judged by ``protection.trail`` in exact decimals: its
    float thresholds here are pulled inward (exit) and outward (wake) by ``TRAIL_MARGIN``."""

    exit_lo: float
    exit_hi: float
    wake_lo: float
    wake_hi: float


TRAIL_MARGIN = 1e-9  # relative: far wider than a float's rounding, far narrower than a tick
_INF = math.inf


def levels(cfg: TraderConfig, t: Trade | None) -> Levels | None:
    """Where ``on_prices`` acts on ``t`` (``Levels``); None when it acts on no range at all."""
    if t is None or t.position <= 0 or t.exit_reason or t.flat_at_exchange_ms:
        return None
    long = t.direction > 0
    # a NaN level is never touched (every comparison with it is false): an infinity says so
    # and survives the max/min below
    stop = t.stop if t.stop == t.stop else (-_INF if long else _INF)
    if not pr.trailing(cfg):
        target = t.target if t.target == t.target else (_INF if long else -_INF)
        lo, hi = (stop, target) if long else (target, stop)
        return Levels(exit_lo=lo, exit_hi=hi, wake_lo=lo, wake_hi=hi)
    # trailing: the stop exits; the target only starts the trail; the trail exits at its level
    ext = t.trail_extreme
    if ext:
        level = float(pr.trail_level(ext, t.direction, cfg.trailing_callback_pct))
        inward, outward = level * (1 - TRAIL_MARGIN), level * (1 + TRAIL_MARGIN)
        if not long:
            inward, outward = outward, inward
    if long:
        move = ext if ext else (t.target if t.target > 0 else _INF)  # a new best price, or activation
        if ext:
            return Levels(exit_lo=max(stop, inward), exit_hi=_INF, wake_lo=max(stop, outward), wake_hi=move)
        return Levels(exit_lo=stop, exit_hi=_INF, wake_lo=stop, wake_hi=move)
    move = ext if ext else (t.target if t.target > 0 else -_INF)
    if ext:
        return Levels(exit_lo=-_INF, exit_hi=min(stop, inward), wake_lo=move, wake_hi=min(stop, outward))
    return Levels(exit_lo=-_INF, exit_hi=stop, wake_lo=move, wake_hi=stop)


def planned_exit(cfg: TraderConfig, st: TraderState, symbol: str, ctx: Ctx) -> NewOrder | None:
    """The exit order ``on_prices`` would send now for ``symbol``'s trade on a touched stop or
    target (None: none would be sent: no trade, an exit already in flight, or refused by the
    risk checks). The order does not depend on which level was touched, nor on the prices or
    the clock: a reduce-only MARKET for the whole position, its id ``ax-<trade>-<n>``."""
    t = st.trades.get(symbol)
    if levels(cfg, t) is None or t is None or t.exit_cid:
        return None
    _, actions = _exit(cfg, st, t, STOP, ctx)
    return next((a for a in actions if isinstance(a, NewOrder)), None)


def request_exit(cfg: TraderConfig, st: TraderState, symbol: str, reason: str, ctx: Ctx) -> Result:
    """A strategy's ``Exit`` intent: exit the symbol's trade (nothing when there is none or
    it is already leaving)."""
    t = st.trades.get(symbol)
    if t is None or t.exit_reason or t.flat_at_exchange_ms:
        return st, []
    return _exit(cfg, st, t, reason or STRATEGY, ctx)


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
        st, more = _order_done(cfg, st, new, ctx)
        actions += more
    return st, actions


def flatten(cfg: TraderConfig, st: TraderState, ctx: Ctx) -> Result:
    """Exit every position (kill switch with flatten, or an operator's request)."""
    actions: list[Action] = []
    for t in list(st.trades.values()):
        st, acts = _exit(cfg, st, t, FLATTEN, ctx)
        actions += acts
    return st, actions


def on_timer(cfg: TraderConfig, st: TraderState, ctx: Ctx) -> Result:
    """Retry wanted exits whose last attempt failed; close at the mark a trade the exchange
    said was flat whose closing fills never came; drop rotation entries that waited too long."""
    actions: list[Action] = []
    for t in list(st.trades.values()):
        if t.flat_at_exchange_ms:
            if ctx.now_ms - t.flat_at_exchange_ms >= cfg.external_close_wait_ms and t.position > 0:
                st, acts = _close_at_mark(cfg, st, t, ctx)
                actions += acts
            continue
        if t.exit_reason and not t.exit_cid and t.position > 0 and ctx.now_ms >= t.next_exit_ms:
            st, acts = _exit(cfg, st, t, t.exit_reason, ctx)
            actions += acts
    live = tuple(p for p in st.pending if p.expires_ms > ctx.now_ms)
    if len(live) != len(st.pending):
        st = _count(replace(st, pending=live), *["skipped:ROTATION_EXPIRED"] * (len(st.pending) - len(live)))
    return st, actions


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
        st, acts = _order_done(cfg, st, new, ctx, awaiting_fills=awaiting)
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
    fee = fill.fee if fill is not None and fill.fee_asset == "USDT" else Decimal(0)
    st = _count(replace(st, fees=_EXACT.add(st.fees, fee)), "fills")
    body = wire.Fill(client_order_id=o.client_order_id, exchange_order_id=o.exchange_order_id, trade_id=e.trade_id,
                     symbol=o.symbol, side=o.side, qty=float(e.qty), price=float(e.price), fee=float(fee),
                     fee_asset=fill.fee_asset if fill is not None else "USDT",
                     liquidity=fill.liquidity if fill is not None else "taker")
    actions: list[Action] = [Publish(body)]
    t, is_entry = _trade_of(st, o)
    if t is None:
        return st, [*actions, Problem("ORPHAN_FILL", f"fill {e.trade_id} of {o.client_order_id} has no trade",
                                      o.client_order_id)]
    notional = _EXACT.multiply(e.qty, e.price)
    if is_entry:
        t = replace(t, entry_qty=t.entry_qty + e.qty, entry_notional=_EXACT.add(t.entry_notional, notional),
                    fees=t.fees + fee, first_fill_ms=t.first_fill_ms or ctx.now_ms)
        if t.stop <= 0:  # recovered without a plan: protect it like an adopted position
            plan = adopt(cfg, symbol=t.symbol, qty=t.entry_qty * t.direction, entry_price=t.entry_avg,
                         now_ms=ctx.now_ms)
            t = replace(t, stop=plan.stop, target=plan.target, adopted=True)
    else:
        t = replace(t, exit_qty=t.exit_qty + e.qty, exit_notional=_EXACT.add(t.exit_notional, notional),
                    fees=t.fees + fee)
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
        st, acts = _exit(cfg, st, t, t.exit_reason, ctx)
        actions += acts
    elif not is_entry and t.exit_cid == o.client_order_id and o.filled_qty >= o.qty and not t.flat_at_exchange_ms:
        # the exit is done and the position is not: it was sized while the entry was still
        # filling (fills one by one from the user stream). Exit the rest now
        t = replace(t, exit_cid="")
        st, acts = _exit(cfg, _with_trade(st, t), t, t.exit_reason, ctx)
        actions += acts
    return st, actions


def _order_done(cfg: TraderConfig, st: TraderState, o: om.Order, ctx: Ctx, awaiting_fills: bool = False) -> Result:
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
    price = _EXACT.multiply(Decimal(t.direction), _EXACT.subtract(t.exit_notional, t.entry_notional))
    return _EXACT.add(price, t.funding)


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
        t = replace(t, funding=_EXACT.add(t.funding, r.amount), funding_ids=t.funding_ids | {r.tran_id})
        st = _count(_with_trade(st, t), "funding_applied")
    return st, []


def _close(cfg: TraderConfig, st: TraderState, t: Trade, ctx: Ctx, actions: list[Action],
           learnable: bool = True) -> Result:
    st, t, cancels = pr.disarm(st, t)
    actions = [*actions, *cancels]
    pnl = trade_pnl(t)
    r = outcome_r(t)
    learned = learnable and not t.adopted and math.isfinite(r)
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
    keep = {k: v for k, v in st.orders.items()
            if not ((v.is_terminal or t.flat_at_exchange_ms) and (k == t.entry_cid or k in t.exit_cids))}
    st = replace(_without_trade(st, t.symbol), orders=keep, realized_pnl=_EXACT.add(st.realized_pnl, pnl),
                 funding=_EXACT.add(st.funding, t.funding),
                 slippage_closed=_add_slippage(st.slippage_closed, body.slippage_bps),
                 last_action_ms=rotation.record_action(st.last_action_ms, t.symbol, ctx.now_ms))
    st = pr.prune(st)
    st = _count(st, "trades_closed", *(["wins"] if pnl > 0 else []))
    # a rotation's entry waited for this exit
    waiting = [p for p in st.pending if p.after_symbol == t.symbol]
    st = replace(st, pending=tuple(p for p in st.pending if p.after_symbol != t.symbol))
    for p in waiting:
        if p.expires_ms > ctx.now_ms:
            st, acts = _enter(cfg, st, p.signal, ctx)
            actions += acts
    return st, actions


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
        st, acts = _exit(cfg, _with_trade(st, replace(t, stop_cid="")), replace(t, stop_cid=""), pr.STOP, ctx)
        return st, [*actions, Problem("PROTECTION_REJECTED", f"{cid}: {new.reject_code} {new.reject_reason}", cid),
                    *acts]
    forgotten = any(isinstance(e, ao.AlgoError) and e.kind == ao.NOT_FOUND_AFTER_ACK for e in effects)
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


def on_exchange_position(cfg: TraderConfig, st: TraderState, symbol: str, qty: Decimal, ctx: Ctx) -> Result:
    """The exchange's position of ``symbol`` (user stream or a REST check). A flat exchange
    position under a trade that still holds one frees the slot at once (``protection`` rule 4)."""
    t = st.trades.get(symbol)
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


def on_reconciled(cfg: TraderConfig, st: TraderState, symbols: Sequence[str], adopted_orders: Sequence[str],
                  positions: Sequence[ExchangePosition], sent_ms: int, ctx: Ctx) -> Result:
    """Reconciliation repaired ``symbols`` and adopted ``adopted_orders`` (``wire.Reconciled``);
    ``positions`` is the exchange's answer to a read the shell sent at ``sent_ms``, after the
    message came (the message's own values are seconds old: none is used).

    - an adopted order id is used: no order is ever sent under it again;
    - a trade the exchange shows flat: ``on_exchange_position`` (slot freed, closing fills fetched),
      unless its first fill came after the read was sent (the read may predate its position);
    - a trade the exchange holds at another size: a Problem, nothing resized (its own fills and
      its exchange-held stop, which closes the whole position, stay in charge);
    - a position with no trade of ours: adopted (``adopt``) and protected by an exchange-held
      stop, unless the read may not show our own latest doing on the symbol (an entry or a
      close at or after ``sent_ms``, an order of ours still live on it, an entry waiting for
      it): then the next run tells again. Nothing is adopted twice, no order is sent but the
      new trade's protection: the same message again finds the trade and changes nothing."""
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
            elif (t.position > 0 and not t.flat_at_exchange_ms and not _live_orders(st, sym)
                  and st.last_action_ms.get(sym, 0) < sent_ms
                  and (abs(p.qty) != t.position or (p.qty > 0) != (t.side == "BUY"))):
                st = _count(st, "reconciled_position_differs")
                actions.append(Problem("POSITION_DIFFERS", f"{sym}: trade {t.side} {t.position}, exchange {p.qty}"))
            continue
        if p is None:
            continue
        if (st.last_action_ms.get(sym, 0) >= sent_ms or _live_orders(st, sym)
                or any(e.signal.symbol == sym for e in st.pending)):
            st = _count(st, "reconciled_adoption_deferred")
            continue
        t = adopt(cfg, symbol=sym, qty=p.qty, entry_price=p.entry_price, now_ms=ctx.now_ms)
        st = _count(_with_trade(st, t), "reconciled_adopted")
        actions += [Problem("POSITION_ADOPTED", f"{sym}: {p.qty} @ {p.entry_price}, found by reconciliation"),
                    Publish(position_body(t, ctx))]
        st, acts = pr.arm(cfg, st, t, ctx)
        actions += acts
    return st, actions


def _live_orders(st: TraderState, symbol: str) -> bool:
    return any(o.symbol == symbol and not o.is_terminal for o in st.orders.values())


def on_symbol_fills(cfg: TraderConfig, st: TraderState, symbol: str, fills: list[ExchangeFill], ctx: Ctx) -> Result:
    """The symbol's fills, fetched after the exchange said flat: our own orders' fills go the
    usual way; the closing fills of an order we never sent (manual close, liquidation) become
    the trade's exit, one tracked exit per exchange order."""
    actions: list[Action] = []
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
            if cid not in st.orders:
                order = replace(om.new_order(client_order_id=cid, symbol=symbol, side=f.side, order_type="MARKET",
                                             qty=t.position, reduce_only=True, signal_id=t.trade_id),
                                state=om.S.ACKED, confirmed=True, exchange_order_id=f.exchange_order_id)
                st = _with_trade(_with_order(st, order), replace(t, exit_cids=t.exit_cids | {cid}))
        if not cid or (cid not in st.orders and cid not in st.algos):
            continue
        st, acts = on_fill(cfg, st, f, ctx, client_order_id=cid)
        actions += acts
    return st, actions


def _close_at_mark(cfg: TraderConfig, st: TraderState, t: Trade, ctx: Ctx) -> Result:
    """The exchange said flat and the closing fills never came: close the trade at the mark,
    said in the exit reason, and do not learn from a price we did not see filled."""
    mark = Decimal(repr(_mark(ctx, t.symbol, float(t.entry_avg))))
    rest = t.position
    t = replace(t, exit_qty=t.exit_qty + rest, exit_notional=_EXACT.add(t.exit_notional, _EXACT.multiply(rest, mark)),
                exit_reason=(t.exit_reason or pr.EXTERNAL) + pr.UNRESOLVED_SUFFIX)
    st = _count(_with_trade(st, t), "closed_at_mark")
    return _close(cfg, st, t, ctx, [Problem("CLOSED_AT_MARK", f"{t.symbol}: no closing fills within "
                                                              f"{cfg.external_close_wait_ms} ms")], learnable=False)


# ---------------------------------------------------------------------------- restart
def restore(*, risk_state: risk.RiskState, orders: Mapping[str, om.Order], trades: Mapping[str, Trade],
            used_cids: frozenset[str], last_action_ms: Mapping[str, int],
            algos: Mapping[str, ao.AlgoOrder] | None = None) -> TraderState:
    """The trader after a restart. Each trade gets back its protective orders (the newest
    placement of each role that may still be alive at the exchange)."""
    algos = dict(algos or {})
    out: dict[str, Trade] = {}
    for sym, t in trades.items():
        mine = [o for o in algos.values() if o.trade_id == t.trade_id and o.symbol == sym]
        newest: dict[str, ao.AlgoOrder] = {}
        for o in sorted(mine, key=lambda o: _placement(o.client_algo_id)):
            if not o.is_terminal:
                newest[o.role] = o
        n = max((_placement(o.client_algo_id) for o in mine), default=0)
        # a level a strategy moved lives in its newest protective order: the plan follows it
        if pr.STOP in newest and newest[pr.STOP].trigger_price > 0:
            t = replace(t, stop=float(newest[pr.STOP].trigger_price))
        if pr.TARGET in newest and pr.level_of(newest[pr.TARGET]) > 0:  # a trailing stop: its activation
            t = replace(t, target=float(pr.level_of(newest[pr.TARGET])))
        out[sym] = replace(t, algo_cids=t.algo_cids | {o.client_algo_id for o in mine}, protect_n=max(t.protect_n, n),
                           stop_cid=newest[pr.STOP].client_algo_id if pr.STOP in newest else "",
                           target_cid=newest[pr.TARGET].client_algo_id if pr.TARGET in newest else "")
    return TraderState(risk=risk_state, orders=dict(orders), trades=out, used_cids=used_cids,
                       last_action_ms=dict(last_action_ms), algos=algos)


def _placement(client_algo_id: str) -> int:
    """The placement number at the end of a ``ps-<signal>-<n>`` id (0 if unreadable)."""
    tail = client_algo_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def recovery_actions(st: TraderState, now_ms: int) -> Result:
    """After a restart every open order's fate is unknown: NEW_LOCAL ones may have left just
    before the crash, so all of them are queried before anything else happens on their trade."""
    actions: list[Action] = []
    for cid, o in list(st.orders.items()):
        if not o.is_terminal:
            st = _with_order(st, _unknown_after_restart(om, o, now_ms))
            actions.append(Dispatch(om.QueryOrder(client_order_id=cid, not_before_ms=now_ms), o.symbol))
    for cid, a in list(st.algos.items()):  # the same rule for protective orders
        if not a.is_terminal:
            st = _with_algo(st, _unknown_after_restart(ao, a, now_ms))
            actions.append(Dispatch(ao.QueryAlgo(client_algo_id=cid, not_before_ms=now_ms), a.symbol))
    return st, actions


def _unknown_after_restart(machine: Any, o: Any, now_ms: int) -> Any:
    """``o`` (of ``venue.orders`` or ``venue.algo_orders``: the same events by name) as its
    state machine holds it after a restart: a NEW_LOCAL may have left just before the crash,
    and a request in flight has an unknown outcome."""
    if o.state.value == "NEW_LOCAL":
        o, _ = machine.apply(o, machine.Send(at_ms=o.last_sent_ms or now_ms))
    if o.state.value in ("SENT", "CANCEL_PENDING"):
        o, _ = machine.apply(o, machine.Timeout(at_ms=now_ms))
    return o


def protect_unprotected(cfg: TraderConfig, st: TraderState, ctx: Ctx) -> Result:
    """Arm every held position that has no protective stop (after a restart, or an adoption)."""
    actions: list[Action] = []
    for t in list(st.trades.values()):
        if t.position > 0 and not t.stop_cid and not t.flat_at_exchange_ms:
            st, acts = pr.arm(cfg, st, t, ctx)
            actions += acts
    return st, actions


def adopt(cfg: TraderConfig, *, symbol: str, qty: Decimal, entry_price: Decimal, now_ms: int) -> Trade:
    """A position the exchange holds and we have no plan for: protect it with a stop
    ``adopt_stop_pct`` away and a target twice as far; confidence 0, so it rotates out first."""
    side = "BUY" if qty > 0 else "SELL"
    d = 1 if qty > 0 else -1
    px = float(entry_price)
    stop = px * (1 - d * cfg.adopt_stop_pct / 100)
    target = px * (1 + d * 2 * cfg.adopt_stop_pct / 100)
    q = abs(qty)
    return Trade(trade_id=f"adopted-{symbol}-{now_ms}", symbol=symbol, side=side, stop=stop, target=target,
                 confidence=0.0, features={}, opened_ms=now_ms, entry_cid="", entry_qty=q,
                 entry_notional=_EXACT.multiply(q, entry_price), adopted=True)
