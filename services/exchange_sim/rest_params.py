"""The signed endpoints' parameters (pure): a request's query or form fields -> typed values,
or the ``RestError`` Binance USD-M answers for them (codes and messages as its error code page
and the endpoints' pages give them). The bodies of the answers are in ``private_rest``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Mapping

from services.exchange_sim.account import (ALGO_TYPES, BUY, CONDITIONAL, CONTRACT_PRICE, LIMIT, MARK_PRICE, MARKET,
                                           SELL, STOP, TAKE_PROFIT, TRAILING_STOP_MARKET, ZERO, SymbolRules)
from services.exchange_sim.algo import CALLBACK_MAX, CALLBACK_MIN, AlgoRequest
from services.exchange_sim.rest import INVALID_SYMBOL, RestError, int_param, mandatory
from services.exchange_sim.trading import CLIENT_ID_RE, TIME_IN_FORCE, OrderRequest

DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
CONDITIONAL_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
# Binance's answer on /fapi/v1/order for a conditional type since the Algo Service took them
# (derivatives change log 2025-11-06, effective 2025-12-09; error code page, -4120)
E_SWITCH_ALGO = (-4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.")
LIST_DEFAULT_LIMIT = 500
LIST_MAX_LIMIT = 1000


def _illegal(name: str, legal: str) -> RestError:
    return RestError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def decimal_param(params: Mapping[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not DECIMAL_RE.match(raw):
        raise _illegal(name, DECIMAL_RE.pattern)
    return Decimal(raw)


def bool_param(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise RestError(-1130, f"Data sent for parameter '{name}' is not valid.")
    return raw == "true"


def symbol_of(params: Mapping[str, str], rules: Mapping[str, SymbolRules], required: bool = True) -> str | None:
    raw = params.get("symbol")
    if not raw:
        if required:
            raise mandatory("symbol")
        return None
    if raw not in rules:
        raise RestError(*INVALID_SYMBOL)
    return raw


def _side(params: Mapping[str, str]) -> str:
    """``side``: mandatory, BUY or SELL."""
    side = params.get("side")
    if not side:
        raise mandatory("side")
    if side not in (BUY, SELL):
        raise RestError(-1117, "Invalid side.")
    return side


def _one_way(params: Mapping[str, str]) -> None:
    """``positionSide``: the sim's accounts are in one-way mode, so BOTH or nothing."""
    if params.get("positionSide", "BOTH") != "BOTH":
        raise RestError(-4061, "Order's position side does not match user's setting.")


def order_request(params: Mapping[str, str], rules: Mapping[str, SymbolRules]) -> tuple[OrderRequest, str]:
    """``POST /fapi/v1/order`` parameters -> (request, ``newOrderRespType``)."""
    symbol = symbol_of(params, rules)
    assert symbol is not None
    side = _side(params)
    otype = params.get("type")
    if not otype:
        raise mandatory("type")
    if otype in CONDITIONAL_TYPES:
        raise RestError(*E_SWITCH_ALGO)  # since 2025-12-09 they go to POST /fapi/v1/algoOrder
    if otype not in (MARKET, LIMIT):
        raise RestError(-1116, "Invalid orderType.")
    _one_way(params)
    qty = decimal_param(params, "quantity")
    if qty is None:
        raise mandatory("quantity")
    price = decimal_param(params, "price")
    tif = params.get("timeInForce") or None
    if otype == LIMIT:
        if price is None:
            raise mandatory("price")
        if tif is None:
            raise mandatory("timeInForce")
        if tif not in TIME_IN_FORCE:
            raise RestError(-1115, "Invalid timeInForce.")
    elif price is not None:
        raise RestError(-1106, "Parameter 'price' sent when not required.")
    cid = params.get("newClientOrderId") or None
    if cid is not None and not CLIENT_ID_RE.match(cid):
        raise _illegal("newClientOrderId", CLIENT_ID_RE.pattern)
    resp_type = params.get("newOrderRespType", "ACK")
    if resp_type not in ("ACK", "RESULT"):
        raise RestError(-1130, "Data sent for parameter 'newOrderRespType' is not valid.")
    return OrderRequest(symbol=symbol, side=side, type=otype, qty=qty, price=price, tif=tif or "GTC",
                        reduce_only=bool_param(params, "reduceOnly"), client_id=cid), resp_type


def modify_request(params: Mapping[str, str], rules: Mapping[str, SymbolRules]
                   ) -> tuple[str, int | None, str | None, str, Decimal, Decimal]:
    """``PUT /fapi/v1/order`` parameters -> (symbol, orderId, origClientOrderId, side, quantity,
    price): all of symbol, side, quantity and price are mandatory, and one of the two ids
    (``orderId`` prevails when both are sent). ``priceMatch`` is not modelled: refused -1020."""
    symbol = symbol_of(params, rules)
    assert symbol is not None
    oid, cid = order_ref(params)
    side = _side(params)
    qty = decimal_param(params, "quantity")
    if qty is None:
        raise mandatory("quantity")
    if params.get("priceMatch"):
        raise RestError(-1020, "This operation is not supported.")
    price = decimal_param(params, "price")
    if price is None:
        raise mandatory("price")
    return symbol, oid, (None if oid is not None else cid), side, qty, price


def not_valid(name: str) -> RestError:
    """-1130: a parameter's value is not one Binance accepts."""
    return RestError(-1130, f"Data sent for parameter '{name}' is not valid.")


def _not_required(name: str) -> RestError:
    return RestError(-1106, f"Parameter '{name}' sent when not required.")


STP_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")


def algo_request(params: Mapping[str, str], rules: Mapping[str, SymbolRules]) -> AlgoRequest:
    """``POST /fapi/v1/algoOrder`` parameters -> the request (``algo.place`` checks the rest)."""
    algo_type = params.get("algoType")
    if not algo_type:
        raise mandatory("algoType")
    if algo_type != CONDITIONAL:
        raise not_valid("algoType")  # "Only support CONDITIONAL"
    symbol = symbol_of(params, rules)
    assert symbol is not None
    side = _side(params)
    otype = params.get("type")
    if not otype:
        raise mandatory("type")
    if otype not in ALGO_TYPES:
        raise RestError(-1116, "Invalid orderType.")
    _one_way(params)
    close = bool_param(params, "closePosition")
    reduce = bool_param(params, "reduceOnly")
    qty = decimal_param(params, "quantity")
    if close:
        if otype not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise RestError(-4136, f"Target strategy invalid for orderType {otype},closePosition true")
        if qty is not None:
            raise RestError(-4137, "Quantity must be zero with closePosition equals true")
        if reduce:
            raise _not_required("reduceOnly")
    elif qty is None:
        raise mandatory("quantity")
    price = decimal_param(params, "price")
    if otype in (STOP, TAKE_PROFIT):
        if price is None:
            raise mandatory("price")
    elif price is not None:
        raise _not_required("price")
    if params.get("priceMatch", "NONE") != "NONE":
        raise not_valid("priceMatch")  # not modelled: refused rather than ignored
    trigger = decimal_param(params, "triggerPrice")
    activate = decimal_param(params, "activatePrice")
    rate = decimal_param(params, "callbackRate")
    if otype == TRAILING_STOP_MARKET:
        if trigger is not None:
            raise _not_required("triggerPrice")
        if rate is None:
            raise mandatory("callbackRate")
        if not CALLBACK_MIN <= rate <= CALLBACK_MAX or rate % CALLBACK_MIN:
            raise not_valid("callbackRate")
    else:
        if trigger is None:
            raise mandatory("triggerPrice")
        if activate is not None:
            raise _not_required("activatePrice")
        if rate is not None:
            raise _not_required("callbackRate")
    working = params.get("workingType") or CONTRACT_PRICE
    if working not in (MARK_PRICE, CONTRACT_PRICE):
        raise RestError(-4031, "Invalid parameter working type")
    tif = params.get("timeInForce") or "GTC"
    if tif not in TIME_IN_FORCE:
        raise RestError(-1115, "Invalid timeInForce.")  # GTD is not modelled
    if params.get("goodTillDate"):
        raise _not_required("goodTillDate")
    stp = params.get("selfTradePreventionMode") or "NONE"
    if stp not in STP_MODES:
        raise not_valid("selfTradePreventionMode")
    cid = params.get("clientAlgoId") or None
    if cid is not None and not CLIENT_ID_RE.match(cid):
        raise _illegal("clientAlgoId", CLIENT_ID_RE.pattern)
    if params.get("newOrderRespType", "ACK") not in ("ACK", "RESULT"):
        raise not_valid("newOrderRespType")
    return AlgoRequest(symbol=symbol, side=side, type=otype, qty=qty or ZERO, price=price or ZERO,
                       trigger_price=trigger or ZERO, working_type=working,
                       price_protect=bool_param(params, "priceProtect"), close_position=close,
                       reduce_only=reduce, tif=tif, activate_price=activate, callback_rate=rate or ZERO,
                       client_algo_id=cid, stp=stp)


def algo_ref(params: Mapping[str, str]) -> tuple[int | None, str | None]:
    """(``algoId``, ``clientAlgoId``): one of them is required."""
    return _ref(params, "algoId", "clientAlgoId")


def order_ref(params: Mapping[str, str]) -> tuple[int | None, str | None]:
    """(``orderId``, ``origClientOrderId``): one of them is required."""
    return _ref(params, "orderId", "origClientOrderId")


def _ref(params: Mapping[str, str], id_name: str, client_name: str) -> tuple[int | None, str | None]:
    """(the exchange's id, the client's id) of an order: one of the two is required (-1102)."""
    ident = int_param(params, id_name)
    cid = params.get(client_name) or None
    if ident is None and cid is None:
        raise RestError(-1102, f"Param '{client_name}' or '{id_name}' must be sent, but both were empty/null!")
    return ident, cid


def limit_param(params: Mapping[str, str]) -> int:
    limit = int_param(params, "limit")
    if limit is None:
        return LIST_DEFAULT_LIMIT
    if not 1 <= limit <= LIST_MAX_LIMIT:
        raise RestError(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit
