"""The protective (conditional) order state machine: pure, one algo order at a time.

Since 2025-12-09 Binance USD-M holds STOP_MARKET, TAKE_PROFIT_MARKET, STOP, TAKE_PROFIT and
TRAILING_STOP_MARKET orders in its Algo Service (``POST /fapi/v1/algoOrder``,
``algoType=CONDITIONAL``, our id in ``clientAlgoId``); the plain order endpoint answers
-4120 for them. An algo order waits at the exchange until its trigger price is reached (on
the mark price with ``workingType=MARK_PRICE``), then the Algo Service places a market order
in the matching engine (``actualOrderId``) and the algo order is TRIGGERED, then FINISHED once
that order is done. ``ALGO_UPDATE`` on the user data stream reports each status change.

``apply(order, event) -> (order, effects)``, like ``venue.orders`` for plain orders, with the
same money rules:

1. Journal, then act. An algo order is created NEW_LOCAL and journaled before it is sent;
   the shell persists the state ``apply`` returns before it carries out the effects.
2. One ``clientAlgoId`` for the order's whole life. Re-sent only from NEW_LOCAL; back to
   NEW_LOCAL from UNKNOWN only when a query sent after ``last_sent + recvWindow + margin``
   finds nothing (the attempt can no longer arrive). An order the exchange ever confirmed is
   never re-sent.
3. Terminal states (FINISHED, CANCELED, REJECTED, EXPIRED) never change; statuses only move
   forward (a late NEW after TRIGGERED is an old message: ignored).
4. An event the table does not allow returns the order unchanged and one ``AlgoError``.
   ``apply`` never raises for bad input.

Transitions (event -> next state):

    state           Send  Ack   Reject  Update  Cancel-   Cancel-   Canceled Timeout Query
                                                Request   Rejected
    NEW_LOCAL       SENT  .     .       .       CANCELED  .         .        .       QUERY
    SENT            .     LIVE  REJECT  UPD     .         .         CANCELED UNKNOWN QUERY
    UNKNOWN         .     LIVE  REJECT  UPD     .         .         CANCELED .       QUERY
    LIVE            .     KEEP  .       UPD     CXL_PEND  .         CANCELED .       QUERY
    TRIGGERED       .     KEEP  .       UPD     KEEP      .         CANCELED .       QUERY
    CANCEL_PENDING  .     KEEP  .       UPD     KEEP      QUERY     CANCELED UNKNOWN QUERY
    FINISHED, CANCELED, REJECTED, EXPIRED: Ack, Reject, Update, CancelRequest, CancelRejected,
                                           Canceled, Query -> KEEP (a cancel's refusal that
                                           crossed the stream's final status is a late answer)

    UPD    = the exchange's status (``EXCHANGE_STATUS``), never backwards; in CANCEL_PENDING a
             live NEW keeps CANCEL_PENDING (the cancel is in flight)
    REJECT = REJECTED; UNKNOWN (query) when the exchange says the clientAlgoId is taken
    QUERY  = what the exchange says; "not found" per rule 2
    KEEP   = unchanged: a TRIGGERED order is already a market order in the matching engine,
             there is nothing left to cancel
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping, Union

from common.fastcopy import replace
from common.errors import DefinitiveError
from venue.order_rules import (DEFAULT_RECV_WINDOW_MS, DUPLICATE_CLIENT_ID_CODE, INVALID_EVENT, INVALID_TRANSITION,
                                NOT_FOUND_AFTER_ACK, STATUS_CONFLICT, REASON_CHARS, CancelRejected, CancelRequest, Canceled,
                                Reject, Send, Timeout, attempt_dead_after_ms, bad_time)

CONDITIONAL_TYPES = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET"})
WORKING_TYPES = frozenset({"MARK_PRICE", "CONTRACT_PRICE"})


class AlgoState(str, enum.Enum):
    NEW_LOCAL = "NEW_LOCAL"  # journaled, not yet sent
    SENT = "SENT"  # request in flight
    LIVE = "LIVE"  # held by the Algo Service, not triggered (Binance NEW)
    TRIGGERED = "TRIGGERED"  # forwarded to the matching engine (TRIGGERING / TRIGGERED)
    CANCEL_PENDING = "CANCEL_PENDING"
    UNKNOWN = "UNKNOWN"  # a request timed out: query by clientAlgoId first
    FINISHED = "FINISHED"  # triggered and its market order done
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"  # cancelled by the exchange (e.g. position closed)


A = AlgoState
TERMINAL = frozenset({A.FINISHED, A.CANCELED, A.REJECTED, A.EXPIRED})
# how far along an order is: statuses never move back
_RANK = {A.NEW_LOCAL: 0, A.SENT: 1, A.UNKNOWN: 1, A.LIVE: 2, A.CANCEL_PENDING: 2, A.TRIGGERED: 3,
         A.FINISHED: 4, A.CANCELED: 4, A.REJECTED: 4, A.EXPIRED: 4}
# Binance algo status -> ours
EXCHANGE_STATUS: dict[str, AlgoState] = {
    "NEW": A.LIVE, "TRIGGERING": A.TRIGGERED, "TRIGGERED": A.TRIGGERED, "FINISHED": A.FINISHED,
    "CANCELED": A.CANCELED, "REJECTED": A.REJECTED, "EXPIRED": A.EXPIRED,
}


# ---------------------------------------------------------------------------- events
# and Send, Reject, CancelRequest, CancelRejected, Canceled, Timeout: ``venue.order_rules``
@dataclass(frozen=True, kw_only=True)
class Ack:
    algo_id: str = ""


@dataclass(frozen=True, kw_only=True)
class Update:
    """A status from the exchange: ``ALGO_UPDATE`` or a place/cancel answer's body."""

    status: str  # Binance algo status
    algo_id: str = ""
    actual_order_id: str = ""


@dataclass(frozen=True, kw_only=True)
class QueryResult:
    at_ms: int  # local time the query was sent
    found: bool
    status: str = ""
    algo_id: str = ""
    actual_order_id: str = ""


Event = Union[Send, Ack, Reject, Update, CancelRequest, CancelRejected, Canceled, Timeout, QueryResult]

UPD, REJECT, QUERY, KEEP, LIVE = "UPD", "REJECT", "QUERY", "KEEP", "LIVE_"
Target = Union[AlgoState, str]
_TERMINAL_ROW: dict[type, Target] = {Ack: KEEP, Reject: KEEP, Update: KEEP, Canceled: KEEP, QueryResult: KEEP,
                                     CancelRequest: KEEP, CancelRejected: KEEP}
TRANSITIONS: dict[AlgoState, dict[type, Target]] = {
    A.NEW_LOCAL: {Send: A.SENT, CancelRequest: A.CANCELED, QueryResult: QUERY},
    A.SENT: {Ack: LIVE, Reject: REJECT, Update: UPD, Canceled: A.CANCELED, Timeout: A.UNKNOWN, QueryResult: QUERY},
    A.UNKNOWN: {Ack: LIVE, Reject: REJECT, Update: UPD, Canceled: A.CANCELED, QueryResult: QUERY},
    A.LIVE: {Ack: KEEP, Update: UPD, CancelRequest: A.CANCEL_PENDING, Canceled: A.CANCELED, QueryResult: QUERY},
    A.TRIGGERED: {Ack: KEEP, Update: UPD, CancelRequest: KEEP, Canceled: A.CANCELED, QueryResult: QUERY},
    A.CANCEL_PENDING: {Ack: KEEP, Update: UPD, CancelRequest: KEEP, CancelRejected: QUERY, Canceled: A.CANCELED,
                       Timeout: A.UNKNOWN, QueryResult: QUERY},
    **{s: _TERMINAL_ROW for s in TERMINAL},
}


# ---------------------------------------------------------------------------- effects
@dataclass(frozen=True, kw_only=True)
class SubmitAlgo:
    client_algo_id: str
    attempt: int


@dataclass(frozen=True, kw_only=True)
class CancelAlgo:
    client_algo_id: str


@dataclass(frozen=True, kw_only=True)
class QueryAlgo:
    client_algo_id: str
    not_before_ms: int


ALGO_ID_CONFLICT = "ALGO_ID_CONFLICT"


@dataclass(frozen=True, kw_only=True)
class AlgoError:
    client_algo_id: str
    kind: str
    detail: str


Effect = Union[SubmitAlgo, CancelAlgo, QueryAlgo, AlgoError]


class InvalidAlgoOrder(DefinitiveError):
    reason = "invalid_algo_order"


# ---------------------------------------------------------------------------- the order
@dataclass(frozen=True, kw_only=True)
class AlgoOrder:
    client_algo_id: str
    symbol: str
    side: str  # the closing side: SELL protects a long
    order_type: str  # STOP_MARKET | TAKE_PROFIT_MARKET | TRAILING_STOP_MARKET | ...
    trigger_price: Decimal  # 0 for a trailing stop (it has activation price and callback rate)
    working_type: str = "MARK_PRICE"
    close_position: bool = True  # closes whatever position there is when it triggers
    qty: Decimal = Decimal(0)  # only without close_position
    price_protect: bool = True
    callback_rate: Decimal = Decimal(0)  # trailing stops, percent
    activation_price: Decimal = Decimal(0)
    trade_id: str = ""  # the trade it protects (the signal id)
    role: str = ""  # STOP | TARGET
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS
    state: AlgoState = A.NEW_LOCAL
    algo_id: str = ""
    actual_order_id: str = ""
    confirmed: bool = False
    send_count: int = 0
    last_sent_ms: int = 0
    reject_code: int = 0
    reject_reason: str = ""

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def is_protecting(self) -> bool:
        """Held (or about to be held) by the exchange: NEW_LOCAL does not count."""
        return self.state in (A.SENT, A.UNKNOWN, A.LIVE, A.TRIGGERED, A.CANCEL_PENDING)

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_algo_id": self.client_algo_id, "symbol": self.symbol, "side": self.side,
            "order_type": self.order_type, "trigger_price": str(self.trigger_price),
            "working_type": self.working_type, "close_position": self.close_position, "qty": str(self.qty),
            "price_protect": self.price_protect, "callback_rate": str(self.callback_rate),
            "activation_price": str(self.activation_price), "trade_id": self.trade_id, "role": self.role,
            "recv_window_ms": self.recv_window_ms, "state": self.state.value, "algo_id": self.algo_id,
            "actual_order_id": self.actual_order_id, "confirmed": self.confirmed,
            "send_count": self.send_count, "last_sent_ms": self.last_sent_ms,
            "reject_code": self.reject_code, "reject_reason": self.reject_reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlgoOrder:
        try:
            return cls(
                client_algo_id=str(d["client_algo_id"]), symbol=str(d["symbol"]), side=str(d["side"]),
                order_type=str(d["order_type"]), trigger_price=Decimal(d["trigger_price"]),
                working_type=str(d["working_type"]), close_position=bool(d["close_position"]),
                qty=Decimal(d["qty"]), price_protect=bool(d["price_protect"]),
                callback_rate=Decimal(d["callback_rate"]), activation_price=Decimal(d["activation_price"]),
                trade_id=str(d["trade_id"]), role=str(d["role"]), recv_window_ms=int(d["recv_window_ms"]),
                state=AlgoState(d["state"]), algo_id=str(d["algo_id"]),
                actual_order_id=str(d["actual_order_id"]), confirmed=bool(d["confirmed"]),
                send_count=int(d["send_count"]), last_sent_ms=int(d["last_sent_ms"]),
                reject_code=int(d["reject_code"]), reject_reason=str(d["reject_reason"]))
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise InvalidAlgoOrder(f"bad algo order record: {exc!r}") from None


def _finite(x: Any) -> bool:
    return isinstance(x, Decimal) and x.is_finite()


def new_algo_order(*, client_algo_id: str, symbol: str, side: str, order_type: str,
                   trigger_price: Decimal = Decimal(0), working_type: str = "MARK_PRICE",
                   close_position: bool = True, qty: Decimal = Decimal(0), price_protect: bool = True,
                   callback_rate: Decimal = Decimal(0), activation_price: Decimal = Decimal(0),
                   trade_id: str = "", role: str = "", recv_window_ms: int = DEFAULT_RECV_WINDOW_MS) -> AlgoOrder:
    """A NEW_LOCAL algo order; ``InvalidAlgoOrder`` on inputs the Algo Service would refuse."""
    from venue.orders import CLIENT_ORDER_ID_RE  # Binance applies the same rule to clientAlgoId

    if not isinstance(client_algo_id, str) or not CLIENT_ORDER_ID_RE.fullmatch(client_algo_id):
        raise InvalidAlgoOrder(f"clientAlgoId {client_algo_id!r} breaks Binance's pattern")
    if side not in ("BUY", "SELL") or order_type not in CONDITIONAL_TYPES or working_type not in WORKING_TYPES:
        raise InvalidAlgoOrder(f"side {side!r} / type {order_type!r} / workingType {working_type!r}")
    if not all(_finite(x) and x >= 0 for x in (trigger_price, qty, callback_rate, activation_price)):
        raise InvalidAlgoOrder("prices, quantity and callback rate must be finite and >= 0")
    if order_type == "TRAILING_STOP_MARKET":
        if not Decimal("0.1") <= callback_rate <= Decimal(10):  # Binance: 0.1 .. 10 percent
            raise InvalidAlgoOrder(f"callbackRate {callback_rate} outside 0.1..10")
        if close_position:
            raise InvalidAlgoOrder("a trailing stop takes a quantity (reduce-only), not closePosition")
    elif trigger_price <= 0:
        raise InvalidAlgoOrder(f"triggerPrice {trigger_price}")
    if close_position == (qty > 0):
        raise InvalidAlgoOrder("either closePosition or a quantity, not both and not neither")
    if not isinstance(recv_window_ms, int) or not 0 < recv_window_ms <= 60_000:
        raise InvalidAlgoOrder(f"recv_window_ms {recv_window_ms!r}")
    return AlgoOrder(client_algo_id=client_algo_id, symbol=symbol, side=side, order_type=order_type,
                     trigger_price=trigger_price, working_type=working_type, close_position=close_position,
                     qty=qty, price_protect=price_protect, callback_rate=callback_rate,
                     activation_price=activation_price, trade_id=trade_id, role=role, recv_window_ms=recv_window_ms)


# ---------------------------------------------------------------------------- apply
Result = tuple[AlgoOrder, tuple[Effect, ...]]


def apply(order: AlgoOrder, event: Event) -> Result:
    """One event -> (the new order, the effects for the shell). Never raises for bad input."""
    target = TRANSITIONS[order.state].get(type(event))
    if target is None:
        return _error(order, INVALID_TRANSITION, f"{type(event).__name__} in {order.state.value}")
    return _HANDLERS[type(event)](order, event, target)


def _error(o: AlgoOrder, kind: str, detail: str) -> Result:
    return o, (AlgoError(client_algo_id=o.client_algo_id, kind=kind, detail=detail),)


def _id_problem(o: AlgoOrder, algo_id: Any) -> Result | None:
    if not isinstance(algo_id, str):
        return _error(o, INVALID_EVENT, f"algo id {algo_id!r}")
    if algo_id and o.algo_id and algo_id != o.algo_id:
        return _error(o, ALGO_ID_CONFLICT, f"algo order {algo_id}, we hold {o.algo_id}")
    return None


def _confirm(o: AlgoOrder, algo_id: str, actual_order_id: str = "") -> AlgoOrder:
    return replace(o, confirmed=True, algo_id=o.algo_id or algo_id,
                   actual_order_id=o.actual_order_id or actual_order_id)


def _on_send(o: AlgoOrder, e: Send, target: Target) -> Result:
    if bad_time(e.at_ms):
        return _error(o, INVALID_EVENT, f"send time {e.at_ms!r}")
    n = replace(o, state=A.SENT, send_count=o.send_count + 1, last_sent_ms=e.at_ms)
    return n, (SubmitAlgo(client_algo_id=o.client_algo_id, attempt=n.send_count),)


def _on_ack(o: AlgoOrder, e: Ack, target: Target) -> Result:
    if (bad := _id_problem(o, e.algo_id)) is not None:
        return bad
    if target == KEEP:
        return (o if o.is_terminal else _confirm(o, e.algo_id)), ()
    return replace(_confirm(o, e.algo_id), state=A.LIVE), ()


def _on_reject(o: AlgoOrder, e: Reject, target: Target) -> Result:
    if target == KEEP or e.attempt != o.send_count:
        return o, ()
    if o.confirmed:
        return _error(o, STATUS_CONFLICT, f"reject {e.code} for an algo order the exchange confirmed")
    if e.code == DUPLICATE_CLIENT_ID_CODE:
        return replace(o, state=A.UNKNOWN), (QueryAlgo(client_algo_id=o.client_algo_id, not_before_ms=o.last_sent_ms),)
    return replace(o, state=A.REJECTED, reject_code=e.code, reject_reason=e.message[:REASON_CHARS]), ()


def _advance(o: AlgoOrder, status: AlgoState, algo_id: str, actual: str) -> Result:
    """Move to the exchange's ``status`` unless that would go backwards."""
    if o.is_terminal:
        if status in TERMINAL and status != o.state:
            return _error(o, STATUS_CONFLICT, f"exchange says {status.value}, we hold {o.state.value}")
        return o, ()
    n = _confirm(o, algo_id, actual)
    if status == A.LIVE and o.state == A.CANCEL_PENDING:
        return n, ()  # our cancel is in flight
    if _RANK[status] < _RANK[o.state]:
        return n, ()  # an older message
    return replace(n, state=status), ()


def _reported(o: AlgoOrder, e: Update | QueryResult) -> Result:
    """The exchange's word on this algo order (a stream update, or a query that found it): its
    ids checked, its status read (``EXCHANGE_STATUS``), then ``_advance``."""
    if (bad := _id_problem(o, e.algo_id)) is not None:
        return bad
    if not isinstance(e.actual_order_id, str):
        return _error(o, INVALID_EVENT, f"actual order id {e.actual_order_id!r}")
    status = EXCHANGE_STATUS.get(e.status) if isinstance(e.status, str) else None
    if status is None:
        return _error(o, INVALID_EVENT, f"algo status {e.status!r}")
    return _advance(o, status, e.algo_id, e.actual_order_id)


def _on_update(o: AlgoOrder, e: Update, target: Target) -> Result:
    if target == KEEP and not o.is_terminal:
        return o, ()
    return _reported(o, e)


def _on_cancel_request(o: AlgoOrder, e: CancelRequest, target: Target) -> Result:
    if target == KEEP:
        return o, ()
    if o.state == A.NEW_LOCAL:
        return replace(o, state=A.CANCELED), ()  # never at the exchange: nothing to send
    return replace(o, state=A.CANCEL_PENDING), (CancelAlgo(client_algo_id=o.client_algo_id),)


def _on_cancel_rejected(o: AlgoOrder, e: CancelRejected, target: Target) -> Result:
    if target == KEEP:
        return o, ()  # already final (the user stream said so first)
    # usually it triggered or ended meanwhile: the query says which (LIVE until then)
    return replace(o, state=A.LIVE), (QueryAlgo(client_algo_id=o.client_algo_id, not_before_ms=o.last_sent_ms),)


def _on_canceled(o: AlgoOrder, e: Canceled, target: Target) -> Result:
    if target == KEEP:
        return o, ()
    return replace(o, state=A.CANCELED, confirmed=True), ()


def _on_timeout(o: AlgoOrder, e: Timeout, target: Target) -> Result:
    if bad_time(e.at_ms):
        return _error(o, INVALID_EVENT, f"timeout time {e.at_ms!r}")
    return replace(o, state=A.UNKNOWN), (QueryAlgo(client_algo_id=o.client_algo_id, not_before_ms=e.at_ms),)


def _on_query(o: AlgoOrder, e: QueryResult, target: Target) -> Result:
    if bad_time(e.at_ms):
        return _error(o, INVALID_EVENT, f"query time {e.at_ms!r}")
    if not e.found:
        if o.state in (A.NEW_LOCAL, A.SENT) or o.is_terminal:
            return o, ()
        if o.confirmed:
            return _error(o, NOT_FOUND_AFTER_ACK, f"exchange has no algo order {o.client_algo_id}")
        dead_after_ms = attempt_dead_after_ms(o.last_sent_ms, o.recv_window_ms)
        if o.state == A.UNKNOWN and e.at_ms > dead_after_ms:
            return replace(o, state=A.NEW_LOCAL), ()
        return o, (QueryAlgo(client_algo_id=o.client_algo_id, not_before_ms=dead_after_ms + 1),)
    return _reported(o, e)


_HANDLERS: dict[type, Callable[[AlgoOrder, Any, Target], Result]] = {
    Send: _on_send, Ack: _on_ack, Reject: _on_reject, Update: _on_update, CancelRequest: _on_cancel_request,
    CancelRejected: _on_cancel_rejected, Canceled: _on_canceled, Timeout: _on_timeout, QueryResult: _on_query,
}
