"""Exits (pure): the reduce-only MARKET exit of a whole position (``exit_trade``), the local watch
of the stop and the target (``on_prices``; with ``trailing_callback_pct`` > 0 the target only
starts a trail, ``protection.trail``), the prices at which that watch acts (``levels``) and the
exit it would send (``planned_exit``: the exit lane's order).

Exits are local: the brain watches the price; the exchange-held stop (``protection``) is the
slower layer beneath. A refused exit is retried by ``trader.on_timer`` after ``exit_retry_ms``.
Exit ids are ``ax-<signal>-<n>`` (``EXIT_PREFIX``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.fastcopy import replace
from common import wire
from venue import orders as om
from services.brain import protection as pr
from services.brain import risk
from services.brain.trader_state import (
    Ctx, NewOrder, Publish, Result, Trade, TraderConfig, TraderState, count as _count, with_order as
    _with_order, with_trade as _with_trade,
)
from services.brain.trader_views import UncheckedOrder, portfolio

EXIT_PREFIX = "ax"
# exit reasons
STOP, TARGET, ROTATION, FLATTEN, STRATEGY = "STOP", "TARGET", "ROTATION", "FLATTEN", "STRATEGY"


# ---------------------------------------------------------------------------- exits
def exit_trade(cfg: TraderConfig, st: TraderState, t: Trade, reason: str, ctx: Ctx) -> Result:
    """A reduce-only MARKET order for the whole position (or, with nothing filled yet, the
    wish to exit, carried out once the entry has filled)."""
    t = replace(t, exit_reason=t.exit_reason or reason)
    if t.position <= 0 or t.exit_cid:
        return _with_trade(st, t), []
    n = t.exits_sent + 1
    cid = om.make_client_order_id(EXIT_PREFIX, t.trade_id, n)
    req = UncheckedOrder(client_order_id=cid, symbol=t.symbol, side="SELL" if t.side == "BUY" else "BUY",
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
    return exit_trade(cfg, st, t, reason, ctx) if reason else (st, [])


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
    _, actions = exit_trade(cfg, st, t, STOP, ctx)
    return next((a for a in actions if isinstance(a, NewOrder)), None)
