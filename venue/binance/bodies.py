"""Binance USD-M REST bodies -> our exact types (pure).

Raw bodies, not ccxt's unified fields: prices, quantities and money are decimal strings and
become ``Decimal(str)``, never floats; ids are JSON numbers beyond 2**53 and become strings.
Also ``reply_from_text``: the Binance answer inside the text of a ccxt exception.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

import orjson

from common.errors import DecodeError, ExchangeReply
from venue.port import (AlgoSpec, Balance, Bracket, ExchangeAlgoOrder, ExchangeFill, ExchangeIncome, ExchangeOrder,
                        ExchangePosition, OrderSpec)

_STATUS_IN_TEXT = re.compile(r"(?:^|\s)([45]\d\d)(?=\s|$)")  # "binanceusdm 429 Too Many ...", "... 503 ..."


def _dec(v: Any) -> Decimal:
    if isinstance(v, bool) or v is None:
        raise DecodeError(f"not a number: {v!r}", reason="bad_response")
    return Decimal(str(v))


def as_bool(v: Any) -> bool:
    """Binance booleans: JSON true, or "true" where ccxt's recordings stringified them."""
    return v is True or (isinstance(v, str) and v.lower() == "true")


def order_from_raw(raw: Mapping[str, Any]) -> ExchangeOrder:
    """A Binance order body (POST/GET/DELETE /fapi/v1/order, openOrders) -> ``ExchangeOrder``."""
    return ExchangeOrder(
        client_order_id=str(raw["clientOrderId"]), exchange_order_id=str(raw["orderId"]),
        symbol=str(raw["symbol"]), side=str(raw["side"]), order_type=str(raw.get("origType") or raw["type"]),
        status=str(raw["status"]), qty=_dec(raw["origQty"]), executed_qty=_dec(raw.get("executedQty", 0)),
        avg_price=_dec(raw.get("avgPrice", 0)), price=_dec(raw.get("price", 0)),
        reduce_only=as_bool(raw.get("reduceOnly", False)),
        update_ms=int(raw.get("updateTime") or raw.get("time") or 0),
    )


def fill_from_raw(raw: Mapping[str, Any]) -> ExchangeFill:
    """A ``/fapi/v1/userTrades`` row -> ``ExchangeFill`` (the row has no client order id)."""
    return ExchangeFill(
        trade_id=str(raw["id"]), client_order_id="", exchange_order_id=str(raw["orderId"]),
        symbol=str(raw["symbol"]), side=str(raw["side"]), qty=_dec(raw["qty"]), price=_dec(raw["price"]),
        fee=_dec(raw.get("commission", 0)), fee_asset=str(raw.get("commissionAsset", "USDT")),
        liquidity="maker" if as_bool(raw.get("maker", False)) else "taker",
        realized_pnl=_dec(raw.get("realizedPnl", 0)), time_ms=int(raw.get("time") or 0),
    )


def income_from_raw(raw: Mapping[str, Any]) -> ExchangeIncome:
    """A ``/fapi/v1/income`` row -> ``ExchangeIncome`` (``tranId`` a number on the wire, kept as
    text). Money must be a finite number and the id and type present: else ``DecodeError``."""
    tran, kind = raw["tranId"], raw["incomeType"]
    if isinstance(tran, bool) or not isinstance(tran, (int, str)) or str(tran) == "":
        raise DecodeError(f"tranId is not an id: {tran!r}", reason="bad_response")
    if not isinstance(kind, str) or not kind:
        raise DecodeError(f"incomeType is not a name: {kind!r}", reason="bad_response")
    amount = _dec(raw["income"])
    if not amount.is_finite():
        raise DecodeError(f"income is not a finite number: {raw['income']!r}", reason="bad_response")
    t = raw.get("time") or 0
    if isinstance(t, bool) or not isinstance(t, (int, str)):
        raise DecodeError(f"time is not a number: {t!r}", reason="bad_response")
    return ExchangeIncome(
        tran_id=str(tran), symbol=str(raw.get("symbol") or ""), income_type=kind, amount=amount,
        asset=str(raw.get("asset", "USDT")), time_ms=int(t), trade_id=str(raw.get("tradeId") or ""),
    )


def position_from_raw(raw: Mapping[str, Any]) -> ExchangePosition:
    """A ``/fapi/v2/positionRisk`` row -> ``ExchangePosition``."""
    return ExchangePosition(
        symbol=str(raw["symbol"]), qty=_dec(raw["positionAmt"]), entry_price=_dec(raw.get("entryPrice", 0)),
        mark_price=_dec(raw.get("markPrice", 0)), unrealized_pnl=_dec(raw.get("unRealizedProfit", 0)),
        leverage=int(raw.get("leverage") or 0),
    )


def balance_from_raw(account: Mapping[str, Any], asset: str = "USDT") -> Balance:
    """The ``asset`` entry of ``/fapi/v2/account``."""
    for a in account.get("assets", ()):
        if a.get("asset") == asset:
            return Balance(asset=asset, wallet=_dec(a["walletBalance"]), equity=_dec(a["marginBalance"]),
                           available=_dec(a.get("availableBalance", a.get("maxWithdrawAmount", 0))))
    return Balance(asset=asset)


def algo_from_raw(raw: Mapping[str, Any]) -> ExchangeAlgoOrder:
    """A Binance algo order body (POST/GET/DELETE /fapi/v1/algoOrder, openAlgoOrders)."""
    actual = raw.get("actualOrderId")
    return ExchangeAlgoOrder(
        client_algo_id=str(raw["clientAlgoId"]), algo_id=str(raw["algoId"]), symbol=str(raw["symbol"]),
        side=str(raw["side"]), order_type=str(raw["orderType"]), status=str(raw["algoStatus"]),
        trigger_price=_dec(raw.get("triggerPrice") or 0), close_position=as_bool(raw.get("closePosition", False)),
        qty=_dec(raw.get("quantity") or 0), actual_order_id="" if actual in (None, "", 0) else str(actual),
        update_ms=int(raw.get("updateTime") or raw.get("createTime") or 0),
    )


def brackets_from_raw(body: Any) -> dict[str, tuple[Bracket, ...]]:
    """``GET /fapi/v1/leverageBracket`` (a list, or one object when a symbol was asked for)."""
    rows = body if isinstance(body, list) else [body]
    out = {}
    for row in rows:
        tiers = tuple(sorted((Bracket(notional_floor=_dec(b["notionalFloor"]), notional_cap=_dec(b["notionalCap"]),
                                      maint_margin_ratio=_dec(b["maintMarginRatio"]), cum=_dec(b.get("cum", 0)),
                                      initial_leverage=int(b["initialLeverage"]))
                              for b in row["brackets"]), key=lambda b: b.notional_floor))
        out[str(row["symbol"])] = tiers
    return out


def _text(d: Decimal) -> str:
    return format(d, "f")


def algo_params(spec: AlgoSpec) -> dict[str, str]:
    """``POST /fapi/v1/algoOrder`` parameters for ``spec`` (decimals as their exact text)."""
    p = {"algoType": "CONDITIONAL", "symbol": spec.symbol, "side": spec.side, "type": spec.order_type,
         "clientAlgoId": spec.client_algo_id, "workingType": spec.working_type,
         "priceProtect": "TRUE" if spec.price_protect else "FALSE"}
    if spec.order_type == "TRAILING_STOP_MARKET":
        p["callbackRate"] = _text(spec.callback_rate)
        if spec.activation_price > 0:
            p["activatePrice"] = _text(spec.activation_price)
    else:
        p["triggerPrice"] = _text(spec.trigger_price)
    if spec.close_position:
        p["closePosition"] = "true"
    else:  # a quantity-based protective order must never open a position
        p["quantity"] = _text(spec.qty)
        p["reduceOnly"] = "true"
    return p


def order_params(spec: OrderSpec) -> dict[str, str]:
    """``order.place`` (WebSocket API) / ``POST /fapi/v1/order`` parameters for ``spec``, the
    answer asked as RESULT (a MARKET order comes back FILLED with its average price)."""
    p = {"symbol": spec.symbol, "side": spec.side, "type": spec.order_type, "quantity": _text(spec.qty),
         "newClientOrderId": spec.client_order_id, "newOrderRespType": "RESULT"}
    if spec.order_type == "LIMIT":
        p["price"] = _text(spec.price)
        p["timeInForce"] = spec.time_in_force
    if spec.reduce_only:
        p["reduceOnly"] = "true"
    return p


def reply_from_text(text: str) -> ExchangeReply | None:
    """The Binance answer inside a ccxt exception text ("binanceusdm {...}", "... 503 ...")."""
    code: int | None = None
    msg = ""
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            body = orjson.loads(text[start:end + 1])
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), int):
            code, msg = body["code"], str(body.get("msg", ""))
    m = _STATUS_IN_TEXT.search(text[:start] if start >= 0 else text)
    status = int(m.group(1)) if m else 0
    if code is None and not status:
        return None
    return ExchangeReply(http_status=status, code=code, msg=msg)


# ---------------------------------------------------------------------------- GET /fapi/v1/allOrders
ALL_ORDERS_WEIGHT = 5  # Binance's request weight of one call (the ``WEIGHTS`` table has it too)
ALL_ORDERS_PAGE = 1_000  # ``limit``: default 500, at most 1000
# "The query time period must be less than 7 days": one request spans at most this
ALL_ORDERS_MAX_SPAN_MS = 7 * 86_400_000 - 1
# orders Binance no longer lists: a CANCELED or EXPIRED one with no fill 3 days after it was
# made, any order 90 days after (the endpoint's notes)
ALL_ORDERS_UNFILLED_KEPT_MS = 3 * 86_400_000
ALL_ORDERS_KEPT_MS = 90 * 86_400_000
_KNOWN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH",
                             "REJECTED"})


def history_windows(since_ms: int, until_ms: int) -> list[tuple[int, int]]:
    """``[since_ms, until_ms]`` cut into the windows one ``allOrders`` request may ask
    (``startTime``/``endTime`` inclusive, each shorter than 7 days), oldest first; nothing
    before Binance's 90-day horizon (``until_ms`` minus 90 days) is asked. Empty if the
    window is empty."""
    since_ms = max(since_ms, until_ms - ALL_ORDERS_KEPT_MS)
    out = []
    start = since_ms
    while start <= until_ms:
        end = min(until_ms, start + ALL_ORDERS_MAX_SPAN_MS)
        out.append((start, end))
        start = end + 1
    return out


def _int_field(row: Mapping[str, Any], name: str, *, required: bool = True) -> int:
    v = row.get(name)
    if v is None and not required:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise DecodeError(f"allOrders: {name} is not an integer: {v!r}"[:200], reason="all_orders_field")
    try:
        n = int(v)
    except ValueError:
        raise DecodeError(f"allOrders: {name} is not an integer: {v!r}"[:200], reason="all_orders_field") from None
    if n < 0:
        raise DecodeError(f"allOrders: {name} is negative: {n}", reason="all_orders_field")
    return n


def _dec_field(row: Mapping[str, Any], name: str, *, default: str | None = None) -> Decimal:
    v = row.get(name, default)
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise DecodeError(f"allOrders: {name} is not a decimal text: {v!r}"[:200], reason="all_orders_field")
    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError):
        raise DecodeError(f"allOrders: {name} is not a decimal text: {v!r}"[:200], reason="all_orders_field") from None
    if not d.is_finite() or d < 0:
        raise DecodeError(f"allOrders: {name} is not a finite number >= 0: {v!r}"[:200], reason="all_orders_field")
    return d


def _text_field(row: Mapping[str, Any], name: str) -> str:
    v = row.get(name)
    if not isinstance(v, str) or not v:
        raise DecodeError(f"allOrders: {name} is not a name: {v!r}"[:200], reason="all_orders_field")
    return v


def history_row(row: Any, symbol: str) -> tuple[ExchangeOrder, int]:
    """One ``allOrders`` row -> (``ExchangeOrder``, its creation time ``time`` in ms).

    Stricter than ``order_from_raw``: what adopts orders into our books must be exact, so a
    row is refused (``DecodeError``, the only error that escapes) when an id, the status, a
    side or a quantity is missing or malformed, when its symbol is not the one asked, or
    when it executed more than its quantity."""
    if not isinstance(row, Mapping):
        raise DecodeError(f"allOrders: a row is not an object ({type(row).__name__})", reason="all_orders_shape")
    if row.get("symbol") != symbol:
        raise DecodeError(f"allOrders: a row of {row.get('symbol')!r} in the answer for {symbol}"[:200],
                          reason="all_orders_symbol")
    status = _text_field(row, "status")
    if status not in _KNOWN_STATUSES:
        raise DecodeError(f"allOrders: unknown status {status!r}"[:200], reason="all_orders_status")
    side = _text_field(row, "side")
    if side not in ("BUY", "SELL"):
        raise DecodeError(f"allOrders: side {side!r}"[:200], reason="all_orders_field")
    cid = row.get("clientOrderId")
    if not isinstance(cid, str):
        raise DecodeError(f"allOrders: clientOrderId is not text: {cid!r}"[:200], reason="all_orders_field")
    order_id = _int_field(row, "orderId")
    qty, executed = _dec_field(row, "origQty"), _dec_field(row, "executedQty", default="0")
    if executed > qty and qty > 0:
        raise DecodeError(f"allOrders: executed {executed} beyond quantity {qty}", reason="all_orders_field")
    created = _int_field(row, "time")
    order_type = row.get("origType") or row.get("type")
    if not isinstance(order_type, str) or not order_type:
        raise DecodeError(f"allOrders: type is not a name: {order_type!r}"[:200], reason="all_orders_field")
    order = ExchangeOrder(
        client_order_id=cid, exchange_order_id=str(order_id), symbol=symbol, side=side, order_type=order_type,
        status=status, qty=qty, executed_qty=executed, avg_price=_dec_field(row, "avgPrice", default="0"),
        price=_dec_field(row, "price", default="0"), reduce_only=as_bool(row.get("reduceOnly", False)),
        update_ms=_int_field(row, "updateTime", required=False) or created)
    return order, created


def history_from_raw(body: Any, symbol: str) -> list[tuple[ExchangeOrder, int]]:
    """A ``GET /fapi/v1/allOrders`` answer -> [(order, creation ms)], in the answer's order.
    Anything malformed (not a list, one bad row) refuses the whole answer with ``DecodeError``:
    a page with a hole in it could hide the very order we look for."""
    if not isinstance(body, list):
        raise DecodeError(f"allOrders: the answer is not a list ({type(body).__name__})", reason="all_orders_shape")
    return [history_row(r, symbol) for r in body]
