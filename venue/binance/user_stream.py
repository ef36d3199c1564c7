"""Binance USD-M user data stream: raw event bytes -> typed, exact events (pure, sans-I/O).

The user data stream (``wss://fstream.binance.com/private/ws/<listenKey>``) is the
exchange's own account of what happened to our orders and positions, pushed as it happens.
This module only decodes; the connection (listenKey create / keepalive / close, reconnect,
resync by REST after a gap) is the shell's.

Events (Binance's documentation, "User Data Streams" of USD-M futures):

    ORDER_TRADE_UPDATE  every order state change and every trade   -> OrderUpdate
    TRADE_LITE          a reduced, faster trade report               -> TradeLite
    ACCOUNT_UPDATE      balances and positions changed, with reason  -> AccountUpdate
                        m (ORDER, FUNDING_FEE, ADJUSTMENT, ...)
    ALGO_UPDATE         an Algo Service (conditional) order changed  -> AlgoUpdate
    listenKeyExpired    the key lapsed: the stream ends              -> ListenKeyExpired
    MARGIN_CALL         positions near liquidation                   -> MarginCall
    anything else       (ACCOUNT_CONFIG_UPDATE, STRATEGY_UPDATE, ...) -> Unrecognised

Rules:
- prices, quantities and money are decimal strings -> ``Decimal``, never float; order and
  trade ids are JSON integers (they exceed 2**53: never through float) -> ``str``;
- a combined-stream wrapper (``{"stream": ..., "data": {...}}``) is unwrapped;
- anything malformed raises ``DecodeError`` with a short reason (the caller counts it by
  reason and logs it); nothing else escapes;
- an event type we do not model decodes to ``Unrecognised`` (counted, never applied): it can
  never change a position;
- unknown extra fields are ignored (Binance adds fields without notice).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Union

import orjson

from common.errors import DecodeError

# Binance's algo statuses (``ALGO_UPDATE.o.X``), and which of them are final.
ALGO_LIVE = frozenset({"NEW", "TRIGGERING", "TRIGGERED"})
ALGO_FINAL = frozenset({"CANCELED", "FINISHED", "REJECTED", "EXPIRED"})
ALGO_STATUSES = ALGO_LIVE | ALGO_FINAL
ORDER_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED",
                            "EXPIRED_IN_MATCH", "REJECTED"})
EXECUTION_TYPES = frozenset({"NEW", "CANCELED", "CALCULATED", "EXPIRED", "TRADE", "AMENDMENT"})
SIDES = frozenset({"BUY", "SELL"})


@dataclass(frozen=True, kw_only=True)
class OrderUpdate:
    """``ORDER_TRADE_UPDATE``: one order's new state, and the trade that made it, if any."""

    event_ms: int  # E
    transaction_ms: int  # T
    symbol: str
    client_order_id: str  # c; "autoclose-..." liquidation, "adl_autoclose" ADL
    exchange_order_id: str  # i
    side: str
    order_type: str  # o
    original_type: str  # ot
    execution_type: str  # x: NEW | TRADE | CANCELED | EXPIRED | CALCULATED | AMENDMENT
    status: str  # X
    qty: Decimal  # q
    price: Decimal  # p
    avg_price: Decimal  # ap
    last_qty: Decimal  # l: this trade's quantity (0 unless x == TRADE)
    last_price: Decimal  # L
    cum_qty: Decimal  # z
    fee: Decimal  # n (absent when there is none)
    fee_asset: str  # N
    trade_id: str  # t ("0" when no trade)
    maker: bool  # m
    reduce_only: bool  # R
    close_position: bool  # cp
    realized_pnl: Decimal  # rp

    @property
    def is_trade(self) -> bool:
        return self.execution_type == "TRADE" and self.last_qty > 0

    @property
    def is_liquidation(self) -> bool:
        return self.client_order_id.startswith("autoclose-") or self.client_order_id == "adl_autoclose"


@dataclass(frozen=True, kw_only=True)
class TradeLite:
    event_ms: int
    transaction_ms: int
    symbol: str
    client_order_id: str
    exchange_order_id: str
    side: str
    qty: Decimal  # original quantity
    price: Decimal  # original price
    last_qty: Decimal
    last_price: Decimal
    trade_id: str
    maker: bool


@dataclass(frozen=True, kw_only=True)
class BalanceChange:
    asset: str
    wallet: Decimal  # wb
    cross_wallet: Decimal  # cw
    change: Decimal  # bc: balance change except PnL and commission


@dataclass(frozen=True, kw_only=True)
class PositionChange:
    symbol: str
    qty: Decimal  # pa, signed
    entry_price: Decimal  # ep
    breakeven_price: Decimal  # bep
    accumulated_realized: Decimal  # cr
    unrealized_pnl: Decimal  # up
    margin_type: str  # mt: cross | isolated
    isolated_wallet: Decimal  # iw
    position_side: str  # ps: BOTH in one-way mode


@dataclass(frozen=True, kw_only=True)
class AccountUpdate:
    """``ACCOUNT_UPDATE``: only the balances and positions that changed are listed."""

    event_ms: int
    transaction_ms: int
    reason: str  # m: ORDER | FUNDING_FEE | ADJUSTMENT | INSURANCE_CLEAR | MARGIN_TYPE_CHANGE ...
    balances: tuple[BalanceChange, ...]
    positions: tuple[PositionChange, ...]


@dataclass(frozen=True, kw_only=True)
class AlgoUpdate:
    """``ALGO_UPDATE``: a conditional order of the Algo Service changed status."""

    event_ms: int
    transaction_ms: int
    client_algo_id: str  # caid
    algo_id: str  # aid
    algo_type: str  # at: CONDITIONAL
    order_type: str  # o: STOP_MARKET | TAKE_PROFIT_MARKET | STOP | TAKE_PROFIT | TRAILING_STOP_MARKET
    symbol: str
    side: str
    status: str  # X: NEW | CANCELED | TRIGGERING | TRIGGERED | FINISHED | REJECTED | EXPIRED
    qty: Decimal  # q
    trigger_price: Decimal  # tp
    price: Decimal  # p
    working_type: str  # wt: MARK_PRICE | CONTRACT_PRICE
    close_position: bool  # cp
    reduce_only: bool  # R
    actual_order_id: str  # ai: the matching-engine order once triggered ("" before)
    executed_qty: Decimal  # aq
    avg_price: Decimal  # ap
    reject_reason: str  # rm (when REJECTED)

    @property
    def final(self) -> bool:
        return self.status in ALGO_FINAL


@dataclass(frozen=True, kw_only=True)
class ListenKeyExpired:
    event_ms: int
    listen_key_tail: str  # the last 4 characters only: a listenKey is a credential


@dataclass(frozen=True, kw_only=True)
class MarginCallPosition:
    symbol: str
    qty: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    maintenance_margin: Decimal


@dataclass(frozen=True, kw_only=True)
class MarginCall:
    event_ms: int
    cross_wallet: Decimal
    positions: tuple[MarginCallPosition, ...]


@dataclass(frozen=True, kw_only=True)
class Unrecognised:
    """An event type we do not model: counted by type, never applied."""

    event_type: str
    event_ms: int


UserEvent = Union[OrderUpdate, TradeLite, AccountUpdate, AlgoUpdate, ListenKeyExpired, MarginCall, Unrecognised]


# ----------------------------------------------------------------------------- field readers
def _field(m: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        return m[key]
    except KeyError:
        raise DecodeError(f"{what}: missing field {key!r}", reason="missing_field") from None


def _dec(m: Mapping[str, Any], key: str, what: str, default: str | None = None) -> Decimal:
    v = m.get(key, default) if default is not None else _field(m, key, what)
    if not isinstance(v, str):
        raise DecodeError(f"{what}: {key} is not a decimal string", reason="bad_number")
    try:
        d = Decimal(v)
    except InvalidOperation:
        raise DecodeError(f"{what}: {key} is not a number", reason="bad_number") from None
    if not d.is_finite():
        raise DecodeError(f"{what}: {key} is not finite", reason="bad_number")
    return d


def _int(m: Mapping[str, Any], key: str, what: str, default: int | None = None) -> int:
    v = m.get(key, default) if default is not None else _field(m, key, what)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise DecodeError(f"{what}: {key} is not a non-negative integer", reason="bad_integer")
    return v


def _id(m: Mapping[str, Any], key: str, what: str, *, allow_empty: bool = False) -> str:
    """An id: a JSON integer, or (algo ``ai``) a string that may be empty."""
    v = _field(m, key, what)
    if isinstance(v, bool):
        raise DecodeError(f"{what}: {key} is not an id", reason="bad_id")
    if isinstance(v, int) and v >= 0:
        return str(v)
    if isinstance(v, str) and (v.isdigit() or (allow_empty and v == "")):
        return v
    raise DecodeError(f"{what}: {key} is not an id", reason="bad_id")


def _str(m: Mapping[str, Any], key: str, what: str, default: str | None = None,
         allowed: frozenset[str] | None = None) -> str:
    v = m.get(key, default) if default is not None else _field(m, key, what)
    if not isinstance(v, str):
        raise DecodeError(f"{what}: {key} is not a string", reason="bad_string")
    if allowed is not None and v not in allowed:
        raise DecodeError(f"{what}: {key}={v[:32]!r} is not one of Binance's values", reason="bad_enum")
    return v


def _bool(m: Mapping[str, Any], key: str, what: str, default: bool = False) -> bool:
    v = m.get(key, default)
    if not isinstance(v, bool):
        raise DecodeError(f"{what}: {key} is not a boolean", reason="bad_bool")
    return v


def _obj(m: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    v = _field(m, key, what)
    if not isinstance(v, dict):
        raise DecodeError(f"{what}: {key} is not an object", reason="bad_shape")
    return v


def _list(m: Mapping[str, Any], key: str, what: str) -> list[Any]:
    v = m.get(key, [])
    if not isinstance(v, list):
        raise DecodeError(f"{what}: {key} is not a list", reason="bad_shape")
    return v


# ----------------------------------------------------------------------------- events
def _order_update(e: Mapping[str, Any]) -> OrderUpdate:
    w = "ORDER_TRADE_UPDATE"
    o = _obj(e, "o", w)
    return OrderUpdate(
        event_ms=_int(e, "E", w), transaction_ms=_int(e, "T", w, default=0),
        symbol=_str(o, "s", w), client_order_id=_str(o, "c", w), exchange_order_id=_id(o, "i", w),
        side=_str(o, "S", w, allowed=SIDES), order_type=_str(o, "o", w),
        original_type=_str(o, "ot", w, default=str(o.get("o", ""))),
        execution_type=_str(o, "x", w, allowed=EXECUTION_TYPES), status=_str(o, "X", w, allowed=ORDER_STATUSES),
        qty=_dec(o, "q", w), price=_dec(o, "p", w, default="0"), avg_price=_dec(o, "ap", w, default="0"),
        last_qty=_dec(o, "l", w, default="0"), last_price=_dec(o, "L", w, default="0"),
        cum_qty=_dec(o, "z", w, default="0"), fee=_dec(o, "n", w, default="0"),
        fee_asset=_str(o, "N", w, default="USDT"), trade_id=_id(o, "t", w) if "t" in o else "0",
        maker=_bool(o, "m", w), reduce_only=_bool(o, "R", w), close_position=_bool(o, "cp", w),
        realized_pnl=_dec(o, "rp", w, default="0"),
    )


def _trade_lite(e: Mapping[str, Any]) -> TradeLite:
    w = "TRADE_LITE"
    return TradeLite(
        event_ms=_int(e, "E", w), transaction_ms=_int(e, "T", w, default=0), symbol=_str(e, "s", w),
        client_order_id=_str(e, "c", w), exchange_order_id=_id(e, "i", w), side=_str(e, "S", w, allowed=SIDES),
        qty=_dec(e, "q", w), price=_dec(e, "p", w, default="0"), last_qty=_dec(e, "l", w),
        last_price=_dec(e, "L", w), trade_id=_id(e, "t", w), maker=_bool(e, "m", w),
    )


def _account_update(e: Mapping[str, Any]) -> AccountUpdate:
    w = "ACCOUNT_UPDATE"
    a = _obj(e, "a", w)
    balances = []
    for b in _list(a, "B", w):
        if not isinstance(b, dict):
            raise DecodeError(f"{w}: a balance is not an object", reason="bad_shape")
        balances.append(BalanceChange(asset=_str(b, "a", w), wallet=_dec(b, "wb", w),
                                      cross_wallet=_dec(b, "cw", w, default="0"), change=_dec(b, "bc", w, default="0")))
    positions = []
    for p in _list(a, "P", w):
        if not isinstance(p, dict):
            raise DecodeError(f"{w}: a position is not an object", reason="bad_shape")
        positions.append(PositionChange(
            symbol=_str(p, "s", w), qty=_dec(p, "pa", w), entry_price=_dec(p, "ep", w, default="0"),
            breakeven_price=_dec(p, "bep", w, default="0"), accumulated_realized=_dec(p, "cr", w, default="0"),
            unrealized_pnl=_dec(p, "up", w, default="0"), margin_type=_str(p, "mt", w, default="cross"),
            isolated_wallet=_dec(p, "iw", w, default="0"), position_side=_str(p, "ps", w, default="BOTH")))
    return AccountUpdate(event_ms=_int(e, "E", w), transaction_ms=_int(e, "T", w, default=0),
                         reason=_str(a, "m", w), balances=tuple(balances), positions=tuple(positions))


def _algo_update(e: Mapping[str, Any]) -> AlgoUpdate:
    w = "ALGO_UPDATE"
    o = _obj(e, "o", w)
    return AlgoUpdate(
        event_ms=_int(e, "E", w), transaction_ms=_int(e, "T", w, default=0),
        client_algo_id=_str(o, "caid", w), algo_id=_id(o, "aid", w), algo_type=_str(o, "at", w, default="CONDITIONAL"),
        order_type=_str(o, "o", w), symbol=_str(o, "s", w), side=_str(o, "S", w, allowed=SIDES),
        status=_str(o, "X", w, allowed=ALGO_STATUSES), qty=_dec(o, "q", w, default="0"),
        trigger_price=_dec(o, "tp", w, default="0"), price=_dec(o, "p", w, default="0"),
        working_type=_str(o, "wt", w, default="CONTRACT_PRICE"), close_position=_bool(o, "cp", w),
        reduce_only=_bool(o, "R", w), actual_order_id=_id(o, "ai", w, allow_empty=True) if "ai" in o else "",
        executed_qty=_dec(o, "aq", w, default="0"), avg_price=_dec(o, "ap", w, default="0"),
        reject_reason=_str(o, "rm", w, default=""),
    )


def _listen_key_expired(e: Mapping[str, Any]) -> ListenKeyExpired:
    # the event page's current example prints E as a string ("E": "1736996475556"), the older
    # one as a number: both are read, anything else is refused
    w = "listenKeyExpired"
    raw = _field(e, "E", w)
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        event_ms = int(raw)
    else:
        event_ms = _int(e, "E", w)
    key = e.get("listenKey", "")
    return ListenKeyExpired(event_ms=event_ms, listen_key_tail=key[-4:] if isinstance(key, str) else "")


def _margin_call(e: Mapping[str, Any]) -> MarginCall:
    w = "MARGIN_CALL"
    positions = []
    for p in _list(e, "p", w):
        if not isinstance(p, dict):
            raise DecodeError(f"{w}: a position is not an object", reason="bad_shape")
        positions.append(MarginCallPosition(symbol=_str(p, "s", w), qty=_dec(p, "pa", w),
                                            mark_price=_dec(p, "mp", w, default="0"),
                                            unrealized_pnl=_dec(p, "up", w, default="0"),
                                            maintenance_margin=_dec(p, "mm", w, default="0")))
    return MarginCall(event_ms=_int(e, "E", w), cross_wallet=_dec(e, "cw", w, default="0"), positions=tuple(positions))


DECODERS = {
    "ORDER_TRADE_UPDATE": _order_update,
    "TRADE_LITE": _trade_lite,
    "ACCOUNT_UPDATE": _account_update,
    "ALGO_UPDATE": _algo_update,
    "listenKeyExpired": _listen_key_expired,
    "MARGIN_CALL": _margin_call,
}


def decode_event(obj: Any) -> UserEvent:
    """One parsed JSON value -> a typed event (``DecodeError`` if malformed)."""
    if isinstance(obj, dict) and "data" in obj and "stream" in obj:
        obj = obj["data"]
    if not isinstance(obj, dict):
        raise DecodeError("user event is not a JSON object", reason="not_object")
    kind = obj.get("e")
    if not isinstance(kind, str) or not kind:
        raise DecodeError("user event has no event type", reason="no_event_type")
    decoder = DECODERS.get(kind)
    if decoder is None:
        return Unrecognised(event_type=kind[:64], event_ms=obj["E"] if isinstance(obj.get("E"), int) else 0)
    return decoder(obj)


def decode(raw: bytes | str) -> UserEvent:
    """One raw WebSocket text frame -> a typed event (``DecodeError`` if malformed)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DecodeError("user event is not JSON", reason="not_json") from None
    return decode_event(obj)
