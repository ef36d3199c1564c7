"""Entries (pure): a signal becomes an order, or a published reason why not.

The rotation rule (``rotation.decide``) gives the signal a slot (Take), a slot held by the
weakest position (Rotate: exit that one first, then enter; the entry waits in ``pending``
until the exit is flat), or none (Skip, counted by reason). The entry is sized so that a
stop-out loses ``risk_per_trade_pct`` of equity (``trader_views.entry_qty``), then every
pre-trade check runs (``risk.check_order``, ``risk.check_liquidation``); a rejection is
published as ``RISK_REJECT``. An approved entry becomes a NEW_LOCAL order (``NewOrder``).

Entry ids are ``ae-<signal>-0`` (``ENTRY_PREFIX``): a signal whose entry id was ever used
(``used_cids``, restored after a restart) is skipped, so a replayed candle cannot open a
second trade."""

from __future__ import annotations

import math
from decimal import Decimal

from common.fastcopy import build, replace
from common import wire
from venue import orders as om
from services.brain import protection as pr
from services.brain import risk, rotation
from services.brain.trader_state import (
    Ctx, NewOrder, PendingEntry, Publish, Result, Trade, TraderConfig, TraderState, count as _count, with_id,
    without_trade as _without_trade,
)
from services.brain.trader_exits import ROTATION, exit_trade
from services.brain.trader_views import UncheckedOrder, mark_price_or, entry_limit, entry_qty, held_positions, portfolio

ENTRY_PREFIX = "ae"
PENDING_ENTRY_TTL_MS = 60_000  # a rotation's entry waits this long for its exit to finish

# reasons a signal gets no order, besides risk.REASONS and rotation's skips
DUPLICATE_SIGNAL = "DUPLICATE_SIGNAL"
TRADING_DISABLED = "TRADING_DISABLED"
NO_SIZE = "NO_SIZE"
PROTECTION_PENDING = "PROTECTION_PENDING"  # the symbol's old protective orders are not yet cancelled


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
        return enter_trade(cfg, st, sig, ctx)
    # Rotate: only if the entry would pass risk once the weakest is gone (else exit for nothing)
    exiting = st.trades[decision.exit_symbol]
    without = _without_trade(st, exiting.symbol)
    dry = _check_entry(cfg, without, sig, ctx)
    if isinstance(dry, risk.Rejected):
        return _reject(st, sig, dry, dry_run=True)
    st, actions = exit_trade(cfg, st, exiting, ROTATION, ctx)
    st = _count(st, "rotations")
    st = replace(st, pending=(*st.pending, PendingEntry(signal=sig, after_symbol=exiting.symbol,
                                                        expires_ms=ctx.now_ms + PENDING_ENTRY_TTL_MS)))
    return st, actions


def _check_entry(cfg: TraderConfig, st: TraderState, sig: wire.SignalGenerated, ctx: Ctx) -> risk.Decision:
    price = mark_price_or(ctx, sig.symbol, sig.entry)
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
    req = build(UncheckedOrder, client_order_id=om.make_client_order_id(ENTRY_PREFIX, sig.signal_id, 0), symbol=sig.symbol,
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


def enter_trade(cfg: TraderConfig, st: TraderState, sig: wire.SignalGenerated, ctx: Ctx) -> Result:
    """The signal's entry, past rotation: the risk checks, then the trade and its entry order
    (or the published refusal)."""
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
