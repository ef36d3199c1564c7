"""The trader after a restart (pure): the state rebuilt from the journal and the exchange
(``restore``), every open order's fate asked first (``recovery_actions``), held positions
without a stop armed (``protect_unprotected``), and the plan given to a position the exchange
holds and we have none for (``adopt``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from common.fastcopy import replace
from venue import orders as om
from services.brain import protection as pr
from services.brain import risk
from venue import algo_orders as ao
from services.brain.trader_state import (
    Action, Ctx, Dispatch, Result, Trade, TraderConfig, TraderState, with_algo as _with_algo, with_order as
    _with_order,
)
from services.brain.trader_views import EXACT


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
        for o in sorted(mine, key=lambda o: trailing_number(o.client_algo_id)):
            if not o.is_terminal:
                newest[o.role] = o
        n = max((trailing_number(o.client_algo_id) for o in mine), default=0)
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


def trailing_number(client_id: str) -> int:
    """The number at the end of an id (0 if unreadable): a ``ps-<signal>-<n>`` protective
    order's placement, an ``adopted-<symbol>-<ms>`` trade's time."""
    tail = client_id.rsplit("-", 1)[-1]
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
                 entry_notional=EXACT.multiply(q, entry_price), adopted=True)
