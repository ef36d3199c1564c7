"""The order state machine: pure, one order at a time. ``apply(order, event) -> (order, effects)``.

Rules (the transition table below is all of them, in one place):

1. Journal, then act. An order is created NEW_LOCAL and journaled before anything is sent. The
   shell persists the state ``apply`` returns *before* it carries out the effects, so a
   journaled NEW_LOCAL was never sent and a journaled SENT (or CANCEL_PENDING) may have been:
   on restart, apply ``Timeout`` to those and query.
2. One client order id per order, for its whole life; every (re-)send uses it. An order is
   re-sent only from NEW_LOCAL, and it returns to NEW_LOCAL from UNKNOWN only when the exchange
   says it has no such order *and* the last attempt can no longer arrive: Binance refuses a
   request whose signed timestamp is more than ``recvWindow`` old, so a "not found" from a query
   sent later than ``last_sent_ms + recv_window_ms + CLOCK_MARGIN_MS`` proves the attempt is
   dead. An earlier "not found" proves nothing (the request may still be on the wire): stay
   UNKNOWN and query again. An order the exchange has ever confirmed (ack, fill, found) is
   never re-sent. If the exchange still says the id is taken (-4116), we go UNKNOWN and query.
   (Residual risk: a request the gateway accepted but the matching engine has not yet seen,
   Binance's -1007 "execution status unknown", is not covered by the recvWindow argument.)
3. Terminal states (FILLED, CANCELED, REJECTED, EXPIRED) never change. A fill with a new trade id
   on a CANCELED/EXPIRED order (it raced the cancel) or on a FILLED order that a query declared
   filled before its trades arrived is still counted in the quantities - the exchange executed
   it - but the state stays. Duplicate or late acks, cancels and query answers are no-ops.
4. Fills are idempotent by trade id. The filled quantity never exceeds the order quantity: an
   over-fill is reported (``OrderError(OVERFILL)``) and remembered, never applied. Quantities
   and notional are exact Decimals; ``avg_price = filled_notional / filled_qty``.
5. An event the table does not allow in the current state returns the order unchanged and one
   ``OrderError`` effect. ``apply`` never raises for bad input: it reports.

Transitions (event -> next state; markers explained below the table):

    state            Send  Ack    Reject     TradeFill Cancel-  Cancel- Cancel-  Expired Timeout Query
                                                       Request  Rejected ed
    NEW_LOCAL        SENT  .      .          .         CANCELED .       .        .       .       QUERY
    SENT             .     LIVE   REJECT     FILLS     .        .       CANCELED EXPIRED UNKNOWN QUERY
    UNKNOWN          .     LIVE   REJECT     FILLS     .        .       CANCELED EXPIRED .       QUERY
    ACKED            .     KEEP   .          FILLS     CXL_PEND .       CANCELED EXPIRED .       QUERY
    PARTIALLY_FILLED .     KEEP   .          FILLS     CXL_PEND .       CANCELED EXPIRED .       QUERY
    CANCEL_PENDING   .     KEEP   .          FILLS     .        LIVE    CANCELED EXPIRED UNKNOWN QUERY
    FILLED           .     KEEP   .          FILLS     .        .       .        .       .       KEEP
    CANCELED         .     KEEP   .          FILLS     .        .       KEEP     .       .       KEEP
    REJECTED         .     KEEP   KEEP       .         .        .       .        .       .       KEEP
    EXPIRED          .     KEEP   .          FILLS     .        .       .        KEEP    .       KEEP

    LIVE   = ACKED, or PARTIALLY_FILLED once anything is filled
    FILLS  = by the cumulative quantity: FILLED when complete, else PARTIALLY_FILLED
             (CANCEL_PENDING stays CANCEL_PENDING until complete; a terminal state stays)
    REJECT = REJECTED; UNKNOWN when the exchange says the client id is taken (-4116);
             a reject for an older attempt is a no-op
    QUERY  = what the exchange says (see ``_on_query``); "not found" per rule 2
    KEEP   = unchanged (a duplicate or late message)
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Callable, Mapping, Union

from common.fastcopy import build, replace
from common.errors import DefinitiveError
from common.wire import Fill, OrderRequest, OrderUpdate
from venue.fills import TIME_IN_FORCE
from venue.order_rules import (DEFAULT_RECV_WINDOW_MS, DUPLICATE_CLIENT_ID_CODE, INVALID_EVENT, INVALID_TRANSITION,
                                NOT_FOUND_AFTER_ACK, STATUS_CONFLICT, REASON_CHARS, CancelRejected, CancelRequest, Canceled,
                                Reject, Send, Timeout, attempt_dead_after_ms, bad_time)

# Binance's rule for newClientOrderId
CLIENT_ORDER_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_EXACT = Context(prec=100)  # sums of qty * price stay exact
_AVG = Context(prec=34)  # decimal128: the average price is a quotient, 34 digits is plenty


class OrderState(str, enum.Enum):
    NEW_LOCAL = "NEW_LOCAL"  # journaled, not yet sent
    SENT = "SENT"  # request in flight
    ACKED = "ACKED"  # the exchange accepted it (Binance status NEW)
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCEL_PENDING = "CANCEL_PENDING"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"  # a request timed out: query by client order id before anything else


S = OrderState
TERMINAL = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})


# ---------------------------------------------------------------------------- events
# and Send, Reject, CancelRequest, CancelRejected, Canceled, Timeout: ``venue.order_rules``
@dataclass(frozen=True, kw_only=True)
class Ack:
    exchange_order_id: str = ""


@dataclass(frozen=True, kw_only=True)
class TradeFill:
    trade_id: str
    qty: Decimal
    price: Decimal
    exchange_order_id: str = ""


@dataclass(frozen=True, kw_only=True)
class Expired:
    pass


@dataclass(frozen=True, kw_only=True)
class QueryResult:
    at_ms: int  # local time the query was *sent* (a lower bound on when the exchange answered)
    found: bool
    status: str = ""  # Binance status: NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, ...
    exchange_order_id: str = ""
    executed_qty: Decimal = Decimal(0)


Event = Union[Send, Ack, Reject, TradeFill, CancelRequest, CancelRejected, Canceled, Expired,
              Timeout, QueryResult]

# markers for targets computed from the order and the event
LIVE, FILLS, REJECT, QUERY, KEEP = "LIVE", "FILLS", "REJECT", "QUERY", "KEEP"
Target = Union[OrderState, str]

TRANSITIONS: dict[OrderState, dict[type, Target]] = {
    S.NEW_LOCAL: {Send: S.SENT, CancelRequest: S.CANCELED, QueryResult: QUERY},
    S.SENT: {Ack: LIVE, Reject: REJECT, TradeFill: FILLS, Canceled: S.CANCELED, Expired: S.EXPIRED,
             Timeout: S.UNKNOWN, QueryResult: QUERY},
    S.UNKNOWN: {Ack: LIVE, Reject: REJECT, TradeFill: FILLS, Canceled: S.CANCELED, Expired: S.EXPIRED,
                QueryResult: QUERY},
    S.ACKED: {Ack: KEEP, TradeFill: FILLS, CancelRequest: S.CANCEL_PENDING, Canceled: S.CANCELED,
              Expired: S.EXPIRED, QueryResult: QUERY},
    S.PARTIALLY_FILLED: {Ack: KEEP, TradeFill: FILLS, CancelRequest: S.CANCEL_PENDING,
                         Canceled: S.CANCELED, Expired: S.EXPIRED, QueryResult: QUERY},
    S.CANCEL_PENDING: {Ack: KEEP, TradeFill: FILLS, CancelRejected: LIVE, Canceled: S.CANCELED,
                       Expired: S.EXPIRED, Timeout: S.UNKNOWN, QueryResult: QUERY},
    S.FILLED: {Ack: KEEP, TradeFill: FILLS, QueryResult: KEEP},
    S.CANCELED: {Ack: KEEP, TradeFill: FILLS, Canceled: KEEP, QueryResult: KEEP},
    S.REJECTED: {Ack: KEEP, Reject: KEEP, QueryResult: KEEP},
    S.EXPIRED: {Ack: KEEP, TradeFill: FILLS, Expired: KEEP, QueryResult: KEEP},
}

# Binance order status -> ours (EXPIRED_IN_MATCH: expired by self-trade prevention)
EXCHANGE_STATUS: dict[str, OrderState] = {
    "NEW": S.ACKED, "PARTIALLY_FILLED": S.PARTIALLY_FILLED, "FILLED": S.FILLED,
    "CANCELED": S.CANCELED, "EXPIRED": S.EXPIRED, "EXPIRED_IN_MATCH": S.EXPIRED, "REJECTED": S.REJECTED,
}


# ---------------------------------------------------------------------------- effects
@dataclass(frozen=True, kw_only=True)
class SubmitOrder:
    client_order_id: str
    attempt: int  # 1 for the first send; a re-send carries the same client order id


@dataclass(frozen=True, kw_only=True)
class CancelOrder:
    client_order_id: str


@dataclass(frozen=True, kw_only=True)
class QueryOrder:
    client_order_id: str
    not_before_ms: int  # a "not found" only counts from last_sent + recvWindow + margin


@dataclass(frozen=True, kw_only=True)
class FetchTrades:
    """The exchange reports more executed than the fills we hold: fetch userTrades."""

    client_order_id: str
    missing_qty: Decimal


@dataclass(frozen=True, kw_only=True)
class FillApplied:
    client_order_id: str
    trade_id: str
    qty: Decimal
    price: Decimal


# OrderError kinds
OVERFILL = "OVERFILL"
EXCHANGE_ID_CONFLICT = "EXCHANGE_ID_CONFLICT"  # two exchange orders claim one client id


@dataclass(frozen=True, kw_only=True)
class OrderError:
    client_order_id: str
    kind: str
    detail: str


Effect = Union[SubmitOrder, CancelOrder, QueryOrder, FetchTrades, FillApplied, OrderError]


class InvalidOrder(DefinitiveError):
    """An order or client order id cannot be built from these inputs."""

    reason = "invalid_order"


# ---------------------------------------------------------------------------- the order
@dataclass(frozen=True, kw_only=True)
class Order:
    client_order_id: str
    symbol: str
    side: str  # BUY | SELL
    order_type: str  # MARKET | LIMIT
    qty: Decimal
    price: Decimal = Decimal(0)  # 0 for MARKET
    reduce_only: bool = False
    signal_id: str = ""
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS
    state: OrderState = S.NEW_LOCAL
    exchange_order_id: str = ""
    confirmed: bool = False  # the exchange has shown it holds this order (ack, fill, found)
    send_count: int = 0
    last_sent_ms: int = 0
    filled_qty: Decimal = Decimal(0)
    filled_notional: Decimal = Decimal(0)  # sum of qty * price over the counted fills, exact
    trade_ids: frozenset[str] = frozenset()
    overfill_trade_ids: frozenset[str] = frozenset()
    reject_code: int = 0
    reject_reason: str = ""
    time_in_force: str = "GTC"  # LIMIT: GTC | IOC | FOK | GTX; ignored for MARKET

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def avg_price(self) -> Decimal:
        """filled_notional / filled_qty to 34 significant digits; 0 before any fill."""
        return _AVG.divide(self.filled_notional, self.filled_qty) if self.filled_qty else Decimal(0)

    def to_dict(self) -> dict[str, Any]:
        """A journal record: Decimals as strings, sets sorted."""
        return {
            "client_order_id": self.client_order_id, "symbol": self.symbol, "side": self.side,
            "order_type": self.order_type, "qty": str(self.qty), "price": str(self.price),
            "reduce_only": self.reduce_only, "signal_id": self.signal_id,
            "recv_window_ms": self.recv_window_ms, "state": self.state.value,
            "exchange_order_id": self.exchange_order_id, "confirmed": self.confirmed,
            "send_count": self.send_count, "last_sent_ms": self.last_sent_ms,
            "filled_qty": str(self.filled_qty), "filled_notional": str(self.filled_notional),
            "trade_ids": sorted(self.trade_ids), "overfill_trade_ids": sorted(self.overfill_trade_ids),
            "reject_code": self.reject_code, "reject_reason": self.reject_reason,
            "time_in_force": self.time_in_force,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Order:
        try:
            return cls(
                client_order_id=str(d["client_order_id"]), symbol=str(d["symbol"]), side=str(d["side"]),
                order_type=str(d["order_type"]), qty=Decimal(d["qty"]), price=Decimal(d["price"]),
                reduce_only=bool(d["reduce_only"]), signal_id=str(d["signal_id"]),
                recv_window_ms=int(d["recv_window_ms"]), state=OrderState(d["state"]),
                exchange_order_id=str(d["exchange_order_id"]), confirmed=bool(d["confirmed"]),
                send_count=int(d["send_count"]), last_sent_ms=int(d["last_sent_ms"]),
                filled_qty=Decimal(d["filled_qty"]), filled_notional=Decimal(d["filled_notional"]),
                trade_ids=frozenset(map(str, d["trade_ids"])),
                overfill_trade_ids=frozenset(map(str, d["overfill_trade_ids"])),
                reject_code=int(d["reject_code"]), reject_reason=str(d["reject_reason"]),
                time_in_force=str(d.get("time_in_force", "GTC")),  # records older than the field: GTC
            )
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise InvalidOrder(f"bad order record: {exc!r}") from None


def _positive(x: Any) -> bool:
    return isinstance(x, Decimal) and x.is_finite() and x > 0


def new_order(*, client_order_id: str, symbol: str, side: str, order_type: str, qty: Decimal,
              price: Decimal = Decimal(0), reduce_only: bool = False, signal_id: str = "",
              recv_window_ms: int = DEFAULT_RECV_WINDOW_MS, time_in_force: str = "GTC") -> Order:
    """A NEW_LOCAL order; raises ``InvalidOrder`` on inputs no exchange would take."""
    if not isinstance(client_order_id, str) or not CLIENT_ORDER_ID_RE.fullmatch(client_order_id):
        raise InvalidOrder(f"client order id {client_order_id!r} breaks Binance's pattern")
    if side not in ("BUY", "SELL") or order_type not in ("MARKET", "LIMIT"):
        raise InvalidOrder(f"side {side!r} / type {order_type!r}")
    if not _positive(qty):
        raise InvalidOrder(f"qty {qty!r}")
    if not (isinstance(price, Decimal) and price.is_finite()) or (price > 0) != (order_type == "LIMIT") or price < 0:
        raise InvalidOrder(f"price {price!r} for a {order_type} order")
    if time_in_force not in TIME_IN_FORCE:
        raise InvalidOrder(f"time in force {time_in_force!r}")
    if not isinstance(recv_window_ms, int) or not 0 < recv_window_ms <= 60_000:
        raise InvalidOrder(f"recv_window_ms {recv_window_ms!r} (Binance allows up to 60000)")
    return build(Order, client_order_id=client_order_id, symbol=symbol, side=side, order_type=order_type,
                 qty=qty, price=price, reduce_only=reduce_only, signal_id=signal_id,
                 recv_window_ms=recv_window_ms, time_in_force=time_in_force)


def order_from_request(req: OrderRequest, *, recv_window_ms: int = DEFAULT_RECV_WINDOW_MS) -> Order:
    """From an approved ``wire.OrderRequest`` (floats read through their shortest repr)."""
    return new_order(client_order_id=req.client_order_id, symbol=req.symbol, side=req.side,
                     order_type=req.order_type, qty=Decimal(repr(req.qty)), price=Decimal(repr(req.price)),
                     reduce_only=req.reduce_only, signal_id=req.signal_id, recv_window_ms=recv_window_ms,
                     time_in_force=req.time_in_force or "GTC")


_PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,8}$")
_RAW_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]+$")


def make_client_order_id(prefix: str, signal_id: str, attempt: int = 0) -> str:
    """Deterministic and unique per (prefix, signal id, attempt), within Binance's 36 characters.

    ``<prefix>-<signal_id>-<attempt>`` when that fits the pattern and length, else
    ``<prefix>.<80-bit blake2b of signal_id>-<attempt>``; the character after the prefix tells
    the two forms apart. ``attempt`` numbers new orders for one signal (after a rejection);
    a re-send of the same order keeps its id and does not come through here."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise InvalidOrder(f"client id prefix {prefix!r} must be 1-8 letters or digits")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 0 <= attempt <= 99_999:
        raise InvalidOrder(f"attempt {attempt!r} must be 0..99999")
    if not isinstance(signal_id, str):
        raise InvalidOrder(f"signal id {signal_id!r} must be a string")
    raw = f"{prefix}-{signal_id}-{attempt}"
    if signal_id and _RAW_RE.fullmatch(signal_id) and len(raw) <= 36:
        return raw
    digest = hashlib.blake2b(signal_id.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()
    return f"{prefix}.{digest}-{attempt}"


# ---------------------------------------------------------------------------- apply
Result = tuple[Order, tuple[Effect, ...]]


def apply(order: Order, event: Event) -> Result:
    """One event -> (the new order, the effects for the shell). Never raises for bad input."""
    target = TRANSITIONS[order.state].get(type(event))
    if target is None:
        return _error(order, INVALID_TRANSITION, f"{type(event).__name__} in {order.state.value}")
    return _HANDLERS[type(event)](order, event, target)


def _error(o: Order, kind: str, detail: str) -> Result:
    return o, (OrderError(client_order_id=o.client_order_id, kind=kind, detail=detail),)


def _live(o: Order) -> OrderState:
    return S.PARTIALLY_FILLED if o.filled_qty > 0 else S.ACKED


def _id_problem(o: Order, exchange_order_id: Any) -> Result | None:
    """An error result when the event's exchange order id is malformed or not ours."""
    if not isinstance(exchange_order_id, str):
        return _error(o, INVALID_EVENT, f"exchange order id {exchange_order_id!r}")
    if exchange_order_id and o.exchange_order_id and exchange_order_id != o.exchange_order_id:
        return _error(o, EXCHANGE_ID_CONFLICT, f"exchange order {exchange_order_id}, we hold {o.exchange_order_id}")
    return None


def _confirm(o: Order, exchange_order_id: str) -> Order:
    return replace(o, confirmed=True, exchange_order_id=o.exchange_order_id or exchange_order_id)


def _query_effect(o: Order, now_ms: int) -> QueryOrder:
    return QueryOrder(client_order_id=o.client_order_id, not_before_ms=now_ms)


def _on_send(o: Order, e: Send, target: Target) -> Result:
    if bad_time(e.at_ms):
        return _error(o, INVALID_EVENT, f"send time {e.at_ms!r}")
    n = replace(o, state=S.SENT, send_count=o.send_count + 1, last_sent_ms=e.at_ms)
    return n, (SubmitOrder(client_order_id=o.client_order_id, attempt=n.send_count),)


def _on_ack(o: Order, e: Ack, target: Target) -> Result:
    if (bad := _id_problem(o, e.exchange_order_id)) is not None:
        return bad
    if o.is_terminal:
        return o, ()
    n = _confirm(o, e.exchange_order_id)
    return (replace(n, state=_live(n)) if target == LIVE else n), ()


def _on_reject(o: Order, e: Reject, target: Target) -> Result:
    if target == KEEP or e.attempt != o.send_count:
        return o, ()  # a duplicate, or the answer to an attempt we already gave up on
    if o.confirmed:
        return _error(o, STATUS_CONFLICT, f"reject {e.code} for an order the exchange confirmed")
    if e.code == DUPLICATE_CLIENT_ID_CODE:
        # the id is taken at the exchange: an earlier attempt did arrive. Find it; never re-send.
        return replace(o, state=S.UNKNOWN), (_query_effect(o, o.last_sent_ms),)
    return replace(o, state=S.REJECTED, reject_code=e.code, reject_reason=e.message[:REASON_CHARS]), ()


def _on_fill(o: Order, e: TradeFill, target: Target) -> Result:
    if not isinstance(e.trade_id, str) or not e.trade_id or not _positive(e.qty) or not _positive(e.price):
        return _error(o, INVALID_EVENT, f"fill {e.trade_id!r}: qty {e.qty!r} price {e.price!r}")
    if e.trade_id in o.trade_ids or e.trade_id in o.overfill_trade_ids:
        return o, ()  # idempotent: the same trade delivered again
    if (bad := _id_problem(o, e.exchange_order_id)) is not None:
        return bad
    filled = _EXACT.add(o.filled_qty, e.qty)
    if filled > o.qty:
        n = replace(o, overfill_trade_ids=o.overfill_trade_ids | {e.trade_id})
        return n, (OrderError(client_order_id=o.client_order_id, kind=OVERFILL,
                              detail=f"trade {e.trade_id} qty {e.qty} would fill {filled} of {o.qty}"),)
    n = _confirm(o, e.exchange_order_id)
    n = replace(n, filled_qty=filled, trade_ids=o.trade_ids | {e.trade_id},
                filled_notional=_EXACT.add(o.filled_notional, _EXACT.multiply(e.qty, e.price)))
    if not o.is_terminal:
        complete = filled == o.qty
        if complete:
            n = replace(n, state=S.FILLED)
        elif o.state != S.CANCEL_PENDING:
            n = replace(n, state=S.PARTIALLY_FILLED)
    return n, (FillApplied(client_order_id=o.client_order_id, trade_id=e.trade_id, qty=e.qty, price=e.price),)


def _on_cancel_request(o: Order, e: CancelRequest, target: Target) -> Result:
    if o.state == S.NEW_LOCAL:
        return replace(o, state=S.CANCELED), ()  # never at the exchange (rule 2): nothing to send
    return replace(o, state=S.CANCEL_PENDING), (CancelOrder(client_order_id=o.client_order_id),)


def _on_cancel_rejected(o: Order, e: CancelRejected, target: Target) -> Result:
    # usually it filled or expired meanwhile; the query tells which
    return replace(o, state=_live(o)), (_query_effect(o, o.last_sent_ms),)


def _on_final(o: Order, e: Canceled | Expired, target: Target) -> Result:
    if target == KEEP:
        return o, ()
    assert isinstance(target, OrderState)
    return replace(o, state=target, confirmed=True), ()


def _on_timeout(o: Order, e: Timeout, target: Target) -> Result:
    if bad_time(e.at_ms):
        return _error(o, INVALID_EVENT, f"timeout time {e.at_ms!r}")
    return replace(o, state=S.UNKNOWN), (_query_effect(o, e.at_ms),)


def _on_query(o: Order, e: QueryResult, target: Target) -> Result:
    """Apply what the exchange says about this client order id.

    found, live status (NEW / PARTIALLY_FILLED): LIVE (CANCEL_PENDING stays: the cancel is
      in flight); a final status: that state. Executed more than our fills: FetchTrades.
    not found: NEW_LOCAL from UNKNOWN when rule 2 proves the attempt dead (re-send allowed),
      else stay and query again later; an error for an order the exchange had confirmed.
    A terminal order only checks the answer for missing fills and for a different final status
    (a live status there is simply an answer older than the news that ended the order)."""
    if bad_time(e.at_ms):
        return _error(o, INVALID_EVENT, f"query time {e.at_ms!r}")
    if not e.found:
        if o.state in (S.NEW_LOCAL, S.SENT) or o.is_terminal:
            return o, ()  # not sent yet / maybe still on the wire / archived long after the end
        if o.confirmed:
            return _error(o, NOT_FOUND_AFTER_ACK, f"exchange has no order {o.client_order_id}")
        dead_after_ms = attempt_dead_after_ms(o.last_sent_ms, o.recv_window_ms)
        if o.state == S.UNKNOWN and e.at_ms > dead_after_ms:
            return replace(o, state=S.NEW_LOCAL), ()
        return o, (QueryOrder(client_order_id=o.client_order_id, not_before_ms=dead_after_ms + 1),)
    status = EXCHANGE_STATUS.get(e.status) if isinstance(e.status, str) else None
    if status is None:
        return _error(o, INVALID_EVENT, f"exchange status {e.status!r}")
    executed = e.executed_qty
    if not (isinstance(executed, Decimal) and executed.is_finite() and 0 <= executed <= o.qty):
        return _error(o, INVALID_EVENT, f"executed qty {executed!r} of {o.qty}")
    if (bad := _id_problem(o, e.exchange_order_id)) is not None:
        return bad
    effects: tuple[Effect, ...] = ()
    if executed > o.filled_qty:
        effects = (FetchTrades(client_order_id=o.client_order_id, missing_qty=executed - o.filled_qty),)
    if o.is_terminal:
        # a live status is an answer older than our final news; another final status contradicts us
        if status in TERMINAL and status != o.state:
            return o, (*effects, OrderError(client_order_id=o.client_order_id, kind=STATUS_CONFLICT,
                                            detail=f"exchange says {e.status}, we hold {o.state.value}"))
        return o, effects
    n = _confirm(o, e.exchange_order_id)
    if status in TERMINAL:
        n = replace(n, state=status)
    elif o.state != S.CANCEL_PENDING:
        n = replace(n, state=S.PARTIALLY_FILLED if status == S.PARTIALLY_FILLED else _live(n))
    return n, effects


_HANDLERS: dict[type, Callable[[Order, Any, Target], Result]] = {
    Send: _on_send, Ack: _on_ack, Reject: _on_reject, TradeFill: _on_fill,
    CancelRequest: _on_cancel_request, CancelRejected: _on_cancel_rejected,
    Canceled: _on_final, Expired: _on_final, Timeout: _on_timeout, QueryResult: _on_query,
}


# ---------------------------------------------------------------------------- wire
def trade_fill_from_wire(fill: Fill) -> TradeFill:
    return TradeFill(trade_id=fill.trade_id, qty=Decimal(repr(fill.qty)), price=Decimal(repr(fill.price)),
                     exchange_order_id=fill.exchange_order_id)


def to_order_request(order: Order) -> OrderRequest:
    """The journal's request row of ``order`` (the inverse of ``order_from_request``: floats of
    its exact values; a MARKET order has no time in force)."""
    return OrderRequest(client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
                        order_type=order.order_type, qty=float(order.qty), price=float(order.price),
                        reduce_only=order.reduce_only, signal_id=order.signal_id,
                        time_in_force="" if order.order_type == "MARKET" else order.time_in_force)


def to_order_update(order: Order, reason: str = "") -> OrderUpdate:
    return OrderUpdate(client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id,
                       symbol=order.symbol, status=order.state.value, filled_qty=float(order.filled_qty),
                       avg_price=float(order.avg_price), reason=reason or order.reject_reason)
