"""The signed endpoints' answers, in Binance USD-M's shapes (pure); their parameters are
read by ``rest_params``.

Shapes follow Binance's documented responses and the real bodies ccxt recorded from Binance
(``tests/data/binance_usdm/rest_responses_subset.json``: orders, ``userTrades``, positions,
account): ids and times are JSON numbers, prices, quantities and money are strings. Decimal places as Binance prints them: prices with the symbol's
``pricePrecision``, quantities with its ``quantityPrecision``, quote amounts with both
added (``cumQuote``, ``quoteQty``), average prices with three more than the price, and
USDT balances, PnL and commissions with 8 (``realizedPnl`` is ``"0"`` when nothing was
realised, as in the samples).

Algo orders (``/fapi/v1/algoOrder`` and friends) follow Binance's "New/Cancel/Query Algo
Order", "Current All Algo Open Orders" and "Query All Algo Orders" pages and the response
schemas of Binance's own connector (``binance-connector-python``, USD-M client): the answer
to a new order, to a query and the list entries carry different key sets, kept as
documented. Numbers are strings with the symbol's precisions as for orders; ids and times
are numbers, ``actualOrderId`` a string ("" before the trigger).

Also here: the test-only records of ``/_sim/trades``, ``/_sim/orders`` and ``/_sim/account``.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping

from services.exchange_sim.account import (BRACKETS, BUY, CANCELED, CONDITIONAL, CROSSED, EXPIRED, LIMIT,
                                           MAKER_FEE, MARKET, SELL, TAKER_FEE, TRAILING_STOP_MARKET, ZERO,
                                           Account, AlgoOrder, Fill, Order, Position, SymbolRules,
                                           liquidation_price, maint_margin, mark_of, order_im, position_im,
                                           totals, unrealized)
from services.exchange_sim.algo import MARKET_TYPES
from services.exchange_sim.rest import RestError, int_param
from services.exchange_sim.rest_params import LIST_MAX_LIMIT, limit_param, not_valid, symbol_of
from services.exchange_sim.trading import OrderRequest, max_notional

ACCOUNT_ALIAS = "SimA"  # Binance shows a short random alias per account
MARK_DECIMALS = 8  # as the mark price stream and premiumIndex print it


# ---------------------------------------------------------------------------- formatting
def fixed(x: Decimal, places: int) -> str:
    q = x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{abs(q) if not q else q:f}"  # never "-0.00"


def plain(x: Decimal) -> str:
    """Without trailing zeros (``67445.90`` -> ``67445.9``), as Binance prints entry prices."""
    return "0.0" if not x else f"{x.normalize():f}"


def usdt(x: Decimal) -> str:
    return fixed(x, 8)


def pnl_str(x: Decimal) -> str:
    return "0" if not x else usdt(x)


def mark_str(mark: Decimal, rules: SymbolRules) -> str:
    return fixed(mark, max(MARK_DECIMALS, rules.price_decimals + 1))


# ---------------------------------------------------------------------------- orders and trades
def test_order_body(req: OrderRequest, rules: SymbolRules) -> dict[str, Any]:
    """``POST /fapi/v1/order/test``: Binance documents the new-order fields "with invalid
    values": the order's shape, orderId 0, nothing executed, times 0."""
    o = Order(order_id=0, client_id=req.client_id or "", symbol=req.symbol, side=req.side, type=req.type,
              tif="GTC" if req.type == MARKET else req.tif, price=req.price or ZERO, orig_qty=req.qty,
              reduce_only=req.reduce_only, time_ms=0, update_ms=0)
    return order_body(o, rules)


def order_body(o: Order, rules: SymbolRules, query: bool = False) -> dict[str, Any]:
    """An order as ``POST``/``DELETE /fapi/v1/order`` answer it (``query``: as ``GET`` does,
    with ``time`` and without ``cumQty``)."""
    pd, qd = rules.price_decimals, rules.qty_decimals
    body: dict[str, Any] = {
        "orderId": o.order_id, "symbol": o.symbol, "status": o.status, "clientOrderId": o.client_id,
        "price": "0" if o.type == MARKET else fixed(o.price, pd), "avgPrice": fixed(o.avg_price, pd + 3),
        "origQty": fixed(o.orig_qty, qd), "executedQty": fixed(o.executed_qty, qd)}
    if not query:
        body["cumQty"] = fixed(o.executed_qty, qd)
    body.update({
        "cumQuote": fixed(o.cum_quote, pd + qd), "timeInForce": o.tif, "type": o.type,
        "reduceOnly": o.reduce_only, "closePosition": o.close_position, "side": o.side, "positionSide": "BOTH",
        "stopPrice": fixed(o.stop_price, pd), "workingType": o.working_type, "priceProtect": o.price_protect,
        "origType": o.orig_type or o.type, "priceMatch": "NONE", "selfTradePreventionMode": "NONE",
        "goodTillDate": 0})
    if query:
        body["time"] = o.time_ms
    body["updateTime"] = o.update_ms
    return body


def algo_body(a: AlgoOrder, rules: SymbolRules, order: Order | None, kind: str) -> dict[str, Any]:
    """An algo order as ``POST /fapi/v1/algoOrder`` (``kind="new"``), ``GET`` (``"query"``) or
    the list endpoints (``"list"``) answer it; ``order`` is the one it triggered, if any."""
    pd, qd = rules.price_decimals, rules.qty_decimals
    body: dict[str, Any] = {
        "algoId": a.algo_id, "clientAlgoId": a.client_algo_id, "algoType": CONDITIONAL, "orderType": a.type,
        "symbol": a.symbol, "side": a.side, "positionSide": "BOTH", "timeInForce": a.tif,
        "quantity": fixed(a.qty, qd), "algoStatus": a.status}
    if kind != "new":
        body["actualOrderId"] = str(a.actual_order_id) if a.actual_order_id is not None else ""
        body["actualPrice"] = fixed(order.avg_price if order is not None else ZERO, pd + 3)
    if kind == "query":
        body["actualType"] = order.type if order is not None else (MARKET if a.type in MARKET_TYPES else LIMIT)
        body["actualQty"] = fixed(order.orig_qty if order is not None else a.qty, qd)
    body.update({"triggerPrice": fixed(a.trigger_price, pd), "price": fixed(a.price, pd), "icebergQuantity": None})
    if kind == "list":
        zero = fixed(ZERO, pd)
        body.update({"tpTriggerPrice": zero, "tpPrice": zero, "slTriggerPrice": zero, "slPrice": zero})
    if kind != "new":
        body["tpOrderType"] = ""
    body.update({"selfTradePreventionMode": a.stp, "workingType": a.working_type, "priceMatch": "NONE",
                 "closePosition": a.close_position, "priceProtect": a.price_protect,
                 "reduceOnly": a.reduce_only})
    if kind == "new":
        trailing = a.type == TRAILING_STOP_MARKET
        body["activatePrice"] = fixed(a.activate_price, pd) if trailing else ""
        body["callbackRate"] = fixed(a.callback_rate, 1) if trailing else ""
    body.update({"createTime": a.create_ms, "updateTime": a.update_ms, "triggerTime": a.trigger_ms,
                 "goodTillDate": 0})
    return body


def algo_order_of(acc: Account, a: AlgoOrder) -> Order | None:
    """The order an algo order placed when it triggered (None before, or once out of history)."""
    return acc.orders.get(a.actual_order_id) if a.actual_order_id is not None else None


def open_algo_orders(acc: Account, params: Mapping[str, str],
                     rules: Mapping[str, SymbolRules]) -> list[dict[str, Any]]:
    """``GET /fapi/v1/openAlgoOrders``: ``symbol`` (else all), ``algoType``, ``algoId``."""
    symbol = symbol_of(params, rules, required=False)
    if params.get("algoType", CONDITIONAL) != CONDITIONAL:
        raise not_valid("algoType")
    aid = int_param(params, "algoId")
    algos = sorted((a for a in acc.open_algos(symbol) if a.symbol in rules), key=lambda a: a.algo_id)
    return [algo_body(a, rules[a.symbol], algo_order_of(acc, a), "list") for a in algos
            if aid is None or a.algo_id == aid]


def all_algo_orders(acc: Account, params: Mapping[str, str],
                    rules: Mapping[str, SymbolRules]) -> list[dict[str, Any]]:
    """``GET /fapi/v1/allAlgoOrders``: ``symbol``, and ``algoId`` (from it on), times,
    ``limit`` (default 500, at most 1000); ``page`` only as 1 (paging beyond is not modelled)."""
    symbol = symbol_of(params, rules)
    assert symbol is not None
    if params.get("page", "1") != "1":
        raise not_valid("page")
    algos = [a for a in acc.algos.values() if a.symbol == symbol]
    picked = _window(algos, lambda a: a.algo_id, lambda a: a.create_ms, params, "algoId")
    return [algo_body(a, rules[symbol], algo_order_of(acc, a), "list") for a in picked]


def trade_body(f: Fill, rules: SymbolRules) -> dict[str, Any]:
    pd, qd = rules.price_decimals, rules.qty_decimals
    return {"symbol": f.symbol, "id": f.trade_id, "orderId": f.order_id, "side": f.side,
            "price": fixed(f.price, pd), "qty": fixed(f.qty, qd), "realizedPnl": pnl_str(f.realized_pnl),
            "marginAsset": "USDT", "quoteQty": fixed(f.quote_qty, pd + qd), "commission": usdt(f.commission),
            "commissionAsset": "USDT", "time": f.time_ms, "positionSide": "BOTH",
            "maker": f.maker, "buyer": f.side == BUY}


def _window(items: list[Any], key_id, key_time, params: Mapping[str, str], id_name: str) -> list[Any]:
    """Binance's list paging: from an id, or within a time window, else the latest ``limit``."""
    limit = limit_param(params)
    from_id = int_param(params, id_name)
    start, end = int_param(params, "startTime"), int_param(params, "endTime")
    if start is not None and end is not None and start > end:
        raise RestError(-1023, "Start time is greater than end time.")
    if from_id is not None:
        items = [x for x in items if key_id(x) >= from_id]
    if start is not None:
        items = [x for x in items if key_time(x) >= start]
    if end is not None:
        items = [x for x in items if key_time(x) <= end]
    return items[:limit] if from_id is not None or start is not None else items[-limit:]


def user_trades(acc: Account, params: Mapping[str, str], rules: Mapping[str, SymbolRules]) -> list[dict[str, Any]]:
    """``GET /fapi/v1/userTrades``: ``symbol``, and ``orderId``, ``fromId``, ``startTime``,
    ``endTime``, ``limit`` (default 500, at most 1000)."""
    symbol = symbol_of(params, rules)
    assert symbol is not None
    oid = int_param(params, "orderId")
    fills = [f for f in acc.fills if f.symbol == symbol and (oid is None or f.order_id == oid)]
    picked = _window(fills, lambda f: f.trade_id, lambda f: f.time_ms, params, "fromId")
    return [trade_body(f, rules[symbol]) for f in picked]


ALL_ORDERS_SPAN_MS = 7 * 86_400_000  # "The query time period must be less than 7 days"
ALL_ORDERS_UNFILLED_KEPT_MS = 3 * 86_400_000  # a CANCELED/EXPIRED order with no fill: listed 3 days
ALL_ORDERS_KEPT_MS = 90 * 86_400_000  # any order: listed 90 days


def all_orders(acc: Account, params: Mapping[str, str], rules: Mapping[str, SymbolRules],
               now_ms: int) -> list[dict[str, Any]]:
    """``GET /fapi/v1/allOrders`` (weight 5): ``symbol`` (required), and ``orderId`` (from it on),
    ``startTime``/``endTime`` (inclusive, on the order's creation time), ``limit`` (default 500,
    at most 1000). As Binance documents: the window must be shorter than 7 days (-1127
    otherwise), no window and no ``orderId`` means the last 7 days, and an order is no longer
    found 90 days after it was made, or 3 days after if it was CANCELED or EXPIRED with no fill."""
    symbol = symbol_of(params, rules)
    assert symbol is not None
    start, end = int_param(params, "startTime"), int_param(params, "endTime")
    if start is not None and end is not None and end - start >= ALL_ORDERS_SPAN_MS:
        raise RestError(-1127, "More than 168 hours between startTime and endTime.")
    orders = [o for o in acc.orders.values() if o.symbol == symbol and o.time_ms + ALL_ORDERS_KEPT_MS >= now_ms
              and not (o.status in (CANCELED, EXPIRED) and o.executed_qty == 0
                       and o.time_ms + ALL_ORDERS_UNFILLED_KEPT_MS < now_ms)]
    if start is None and end is None and int_param(params, "orderId") is None:
        orders = [o for o in orders if o.time_ms >= now_ms - ALL_ORDERS_SPAN_MS]
    picked = _window(orders, lambda o: o.order_id, lambda o: o.time_ms, params, "orderId")
    return [order_body(o, rules[symbol], query=True) for o in picked]


def open_orders(acc: Account, params: Mapping[str, str], rules: Mapping[str, SymbolRules]) -> list[dict[str, Any]]:
    symbol = symbol_of(params, rules, required=False)
    return [order_body(o, rules[o.symbol], query=True) for o in sorted(acc.open_orders(symbol),
                                                                          key=lambda o: o.order_id)]


# ---------------------------------------------------------------------------- positions
def _position_numbers(acc: Account, pos: Position, marks: Mapping[str, Decimal]) -> dict[str, Decimal]:
    m = mark_of(pos, marks)
    notional = pos.qty * m
    oim = sum((order_im(acc, o) for o in acc.open_orders(pos.symbol)), ZERO)
    pim = position_im(acc, pos, m)
    return {"mark": m, "notional": notional, "upnl": unrealized(pos, m), "pim": pim, "oim": oim,
            "maint": maint_margin(abs(notional)), "liq": liquidation_price(acc, pos, marks)}


def break_even(pos: Position) -> Decimal:
    """Entry moved by the taker fee of closing (Binance's ``breakEvenPrice``)."""
    if not pos.qty:
        return ZERO
    return pos.entry_price * (1 + TAKER_FEE if pos.qty > 0 else 1 - TAKER_FEE)


def _side_notionals(acc: Account, symbol: str) -> tuple[Decimal, Decimal]:
    bid = sum((o.remaining * o.price for o in acc.open_orders(symbol) if o.side == BUY), ZERO)
    ask = sum((o.remaining * o.price for o in acc.open_orders(symbol) if o.side == SELL), ZERO)
    return bid, ask


def position_risk_v3(acc: Account, params: Mapping[str, str], rules: Mapping[str, SymbolRules],
                     marks: Mapping[str, Decimal]) -> list[dict[str, Any]]:
    """``GET /fapi/v3/positionRisk``: only symbols with a position or open orders."""
    only = symbol_of(params, rules, required=False)
    syms = sorted({s for s, p in acc.positions.items() if p.qty} | set(acc.open_ids))
    out = []
    for s in syms:
        if only is not None and s != only:
            continue
        pos, r = acc.position(s), rules[s]
        n = _position_numbers(acc, pos, marks)
        bid, ask = _side_notionals(acc, s)
        out.append({
            "symbol": s, "positionSide": "BOTH", "positionAmt": fixed(pos.qty, r.qty_decimals),
            "entryPrice": plain(pos.entry_price), "breakEvenPrice": plain(break_even(pos)),
            "markPrice": mark_str(n["mark"], r), "unRealizedProfit": usdt(n["upnl"]),
            "liquidationPrice": usdt(n["liq"]), "isolatedMargin": "0", "notional": usdt(n["notional"]),
            "marginAsset": "USDT", "isolatedWallet": "0", "initialMargin": usdt(n["pim"] + n["oim"]),
            "maintMargin": usdt(n["maint"]), "positionInitialMargin": usdt(n["pim"]),
            "openOrderInitialMargin": usdt(n["oim"]), "adl": 0, "bidNotional": usdt(bid),
            "askNotional": usdt(ask), "updateTime": pos.update_ms})
    return out


def position_risk_v2(acc: Account, params: Mapping[str, str], rules: Mapping[str, SymbolRules],
                     marks: Mapping[str, Decimal]) -> list[dict[str, Any]]:
    """``GET /fapi/v2/positionRisk``: every symbol (or the one asked for), flat ones too."""
    only = symbol_of(params, rules, required=False)
    out = []
    for s, r in rules.items():
        if only is not None and s != only:
            continue
        pos = acc.position(s)
        n = _position_numbers(acc, pos, marks) if s in marks or pos.qty else None
        lev = acc.leverage_of(s)
        out.append({
            "symbol": s, "positionAmt": fixed(pos.qty, r.qty_decimals), "entryPrice": plain(pos.entry_price),
            "breakEvenPrice": plain(break_even(pos)),
            "markPrice": mark_str(n["mark"], r) if n else mark_str(ZERO, r),
            "unRealizedProfit": usdt(n["upnl"] if n else ZERO),
            "liquidationPrice": usdt(n["liq"]) if n and pos.qty else "0", "leverage": str(lev),
            "maxNotionalValue": str(max_notional(lev)),
            "marginType": "cross" if acc.margin_type.get(s, CROSSED) == CROSSED else "isolated",
            "isolatedMargin": usdt(ZERO), "isAutoAddMargin": "false", "positionSide": "BOTH",
            "notional": usdt(n["notional"]) if n and pos.qty else "0", "isolatedWallet": "0",
            "updateTime": pos.update_ms})
    return out


# ---------------------------------------------------------------------------- balance and account
def _asset_fields(acc: Account, marks: Mapping[str, Decimal], now_ms: int) -> dict[str, Any]:
    t = totals(acc, marks)
    avail = t.available
    return {"asset": "USDT", "walletBalance": usdt(t.wallet), "unrealizedProfit": usdt(t.unrealized),
            "marginBalance": usdt(t.margin_balance), "maintMargin": usdt(t.maint),
            "initialMargin": usdt(t.initial_margin), "positionInitialMargin": usdt(t.position_im),
            "openOrderInitialMargin": usdt(t.order_im), "crossWalletBalance": usdt(t.wallet),
            "crossUnPnl": usdt(t.unrealized), "availableBalance": usdt(avail),
            "maxWithdrawAmount": usdt(max(ZERO, min(avail, t.wallet))), "marginAvailable": True,
            "updateTime": acc.update_ms}


def balance(acc: Account, marks: Mapping[str, Decimal], now_ms: int) -> list[dict[str, Any]]:
    """``GET /fapi/v2/balance`` and ``v3``: the USDT entry."""
    a = _asset_fields(acc, marks, now_ms)
    return [{"accountAlias": ACCOUNT_ALIAS, "asset": "USDT", "balance": a["walletBalance"],
             "crossWalletBalance": a["crossWalletBalance"], "crossUnPnl": a["crossUnPnl"],
             "availableBalance": a["availableBalance"], "maxWithdrawAmount": a["maxWithdrawAmount"],
             "marginAvailable": True, "updateTime": acc.update_ms}]


def _account_totals(acc: Account, marks: Mapping[str, Decimal]) -> dict[str, str]:
    t = totals(acc, marks)
    return {"totalInitialMargin": usdt(t.initial_margin), "totalMaintMargin": usdt(t.maint),
            "totalWalletBalance": usdt(t.wallet), "totalUnrealizedProfit": usdt(t.unrealized),
            "totalMarginBalance": usdt(t.margin_balance), "totalPositionInitialMargin": usdt(t.position_im),
            "totalOpenOrderInitialMargin": usdt(t.order_im), "totalCrossWalletBalance": usdt(t.wallet),
            "totalCrossUnPnl": usdt(t.unrealized), "availableBalance": usdt(t.available),
            "maxWithdrawAmount": usdt(max(ZERO, min(t.available, t.wallet)))}


def account_v3(acc: Account, rules: Mapping[str, SymbolRules], marks: Mapping[str, Decimal],
               now_ms: int) -> dict[str, Any]:
    """``GET /fapi/v3/account``: totals, the USDT asset, open positions only."""
    positions = []
    for s, pos in sorted(acc.positions.items()):
        if not pos.qty:
            continue
        n = _position_numbers(acc, pos, marks)
        positions.append({
            "symbol": s, "positionSide": "BOTH", "positionAmt": fixed(pos.qty, rules[s].qty_decimals),
            "unrealizedProfit": usdt(n["upnl"]), "isolatedMargin": "0", "notional": usdt(n["notional"]),
            "isolatedWallet": "0", "initialMargin": usdt(n["pim"] + n["oim"]),
            "maintMargin": usdt(n["maint"]), "updateTime": pos.update_ms})
    a = _asset_fields(acc, marks, now_ms)
    a.pop("marginAvailable")
    return {**_account_totals(acc, marks), "assets": [a], "positions": positions}


def account_v2(acc: Account, rules: Mapping[str, SymbolRules], marks: Mapping[str, Decimal],
               now_ms: int) -> dict[str, Any]:
    """``GET /fapi/v2/account``: flags, totals, the USDT asset, every symbol's position."""
    positions = []
    for s, r in rules.items():
        pos = acc.position(s)
        n = _position_numbers(acc, pos, marks) if pos.qty or acc.open_ids.get(s) else None
        bid, ask = _side_notionals(acc, s)
        lev = acc.leverage_of(s)
        positions.append({
            "symbol": s, "initialMargin": usdt(n["pim"] + n["oim"]) if n else "0",
            "maintMargin": usdt(n["maint"]) if n else "0",
            "unrealizedProfit": usdt(n["upnl"] if n else ZERO),
            "positionInitialMargin": usdt(n["pim"]) if n else "0",
            "openOrderInitialMargin": usdt(n["oim"]) if n else "0", "leverage": str(lev),
            "isolated": acc.margin_type.get(s, CROSSED) != CROSSED, "entryPrice": plain(pos.entry_price),
            "breakEvenPrice": plain(break_even(pos)), "maxNotional": str(max_notional(lev)),
            "bidNotional": usdt(bid) if bid else "0", "askNotional": usdt(ask) if ask else "0",
            "positionSide": "BOTH", "positionAmt": fixed(pos.qty, r.qty_decimals),
            "updateTime": pos.update_ms})
    return {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "tradeGroupId": -1,
            "updateTime": 0, "multiAssetsMargin": False,
            **_account_totals(acc, marks), "assets": [_asset_fields(acc, marks, now_ms)],
            "positions": positions}


# ---------------------------------------------------------------------------- settings
def leverage_bracket(symbols: Iterable[str], params: Mapping[str, str],
                     rules: Mapping[str, SymbolRules]) -> Any:
    """``GET /fapi/v1/leverageBracket``: a list, or one object when a symbol is asked for."""
    def one(s: str) -> dict[str, Any]:
        return {"symbol": s, "notionalCoef": 1.0, "brackets": [
            {"bracket": b, "initialLeverage": lev, "notionalCap": cap, "notionalFloor": floor,
             "maintMarginRatio": float(mmr), "cum": float(cum)}
            for b, lev, floor, cap, mmr, cum in BRACKETS]}

    only = symbol_of(params, rules, required=False)
    return one(only) if only is not None else [one(s) for s in symbols]


def commission_rate(params: Mapping[str, str], rules: Mapping[str, SymbolRules]) -> dict[str, Any]:
    symbol = symbol_of(params, rules)
    return {"symbol": symbol, "makerCommissionRate": f"{MAKER_FEE:f}", "takerCommissionRate": f"{TAKER_FEE:f}"}


# ---------------------------------------------------------------------------- /_sim records
def sim_trade(f: Fill, rules: SymbolRules) -> dict[str, Any]:
    return {"id": f.trade_id, "orderId": f.order_id, "clientOrderId": f.client_id, "symbol": f.symbol,
            "side": f.side, "qty": fixed(f.qty, rules.qty_decimals), "price": fixed(f.price, rules.price_decimals),
            "quoteQty": fixed(f.quote_qty, rules.price_decimals + rules.qty_decimals),
            "commission": usdt(f.commission), "commissionAsset": "USDT",
            "realizedPnl": usdt(f.realized_pnl), "maker": f.maker, "time": f.time_ms}


def sim_account(acc: Account, rules: Mapping[str, SymbolRules], marks: Mapping[str, Decimal]) -> dict[str, Any]:
    t = totals(acc, marks)
    return {
        "wallet": usdt(t.wallet), "unrealizedPnl": usdt(t.unrealized), "marginBalance": usdt(t.margin_balance),
        "availableBalance": usdt(t.available),
        "realizedPnl": usdt(sum((f.realized_pnl for f in acc.fills), ZERO)),
        "commission": usdt(sum((f.commission for f in acc.fills), ZERO)),
        "positions": [{"symbol": s, "positionAmt": fixed(p.qty, rules[s].qty_decimals),
                       "entryPrice": plain(p.entry_price), "leverage": acc.leverage_of(s),
                       "markPrice": mark_str(mark_of(p, marks), rules[s]),
                       "unrealizedPnl": usdt(unrealized(p, mark_of(p, marks))), "updateTime": p.update_ms}
                      for s, p in sorted(acc.positions.items()) if p.qty],
        "leverage": dict(acc.leverage), "marginType": dict(acc.margin_type),
        "openOrders": sum(len(v) for v in acc.open_ids.values()), "orders": len(acc.orders),
        "fills": acc.fills_total, "version": acc.version, "updateTime": acc.update_ms}



# ---------------------------------------------------------------------------- income and funding
INCOME_TYPES = ("REALIZED_PNL", "COMMISSION", "FUNDING_FEE")  # what the sim's account ever books
INCOME_DEFAULT_LIMIT = 100
INCOME_WINDOW_MS = 7 * 86_400_000  # no startTime/endTime: the last 7 days
TRADE_TRAN_OFFSET = 10_000_000_000  # tranId of a fill's REALIZED_PNL / COMMISSION rows: trade id + this
FUNDING_RATE_DEFAULT_LIMIT = 100


def _income_row(symbol: str, income_type: str, amount: Decimal, time_ms: int, tran_id: int,
                trade_id: int | None) -> dict[str, Any]:
    return {"symbol": symbol, "incomeType": income_type, "income": usdt(amount), "asset": "USDT",
            "info": income_type, "time": time_ms, "tranId": tran_id,
            "tradeId": str(trade_id) if trade_id is not None else ""}


def income(acc: Account, params: Mapping[str, str], rules: Mapping[str, SymbolRules], now_ms: int) -> list[dict[str, Any]]:
    """``GET /fapi/v1/income`` (Binance's "Get Income History"): ``symbol``, ``incomeType``,
    ``startTime``/``endTime`` (inclusive; neither: the last 7 days), ``page`` (from 1),
    ``limit`` (default 100, at most 1000); rows ascending by time, from the window's start.

    Rows: FUNDING_FEE as settled (``funding``, ``tradeId`` ""), and per fill a COMMISSION row and,
    when it realised PnL, a REALIZED_PNL row (``tradeId`` the trade's id). ``tranId`` is unique
    within an income type, as Binance documents: a fill's two rows share trade id + 1e10. An
    income type the sim never books (TRANSFER, ...) answers an empty list; an unknown one -1130."""
    symbol = symbol_of(params, rules, required=False)
    kind = params.get("incomeType") or None
    if kind is not None and not re.fullmatch(r"[A-Z_]{1,40}", kind):
        raise RestError(-1130, "Data sent for parameter 'incomeType' is not valid.")
    limit = int_param(params, "limit")
    if limit is None:
        limit = INCOME_DEFAULT_LIMIT
    elif not 1 <= limit <= LIST_MAX_LIMIT:
        raise RestError(-1130, "Data sent for parameter 'limit' is not valid.")
    page = int_param(params, "page") or 1
    start, end = int_param(params, "startTime"), int_param(params, "endTime")
    if start is not None and end is not None and start > end:
        raise RestError(-1023, "Start time is greater than end time.")
    if start is None and end is None:
        start, end = now_ms - INCOME_WINDOW_MS, now_ms
    rows: list[tuple[int, int, int, dict[str, Any]]] = []  # (time, type order, tranId, row)
    if kind in (None, "REALIZED_PNL", "COMMISSION"):
        for f in acc.fills:
            if symbol is not None and f.symbol != symbol:
                continue
            tran = f.trade_id + TRADE_TRAN_OFFSET
            if kind in (None, "REALIZED_PNL") and f.realized_pnl:
                rows.append((f.time_ms, 0, tran, _income_row(f.symbol, "REALIZED_PNL", f.realized_pnl,
                                                             f.time_ms, tran, f.trade_id)))
            if kind in (None, "COMMISSION"):
                rows.append((f.time_ms, 1, tran, _income_row(f.symbol, "COMMISSION", -f.commission,
                                                             f.time_ms, tran, f.trade_id)))
    if kind in (None, "FUNDING_FEE"):
        for i in acc.incomes:
            if symbol is None or i.symbol == symbol:
                rows.append((i.time_ms, 2, i.tran_id, _income_row(i.symbol, i.income_type, i.income, i.time_ms,
                                                                  i.tran_id, None)))
    rows = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
    rows.sort(key=lambda r: r[:3])
    return [r[3] for r in rows[(page - 1) * limit:page * limit]]


def funding_rate(acc: Account, params: Mapping[str, str], rules: Mapping[str, SymbolRules]) -> list[dict[str, Any]]:
    """``GET /fapi/v1/fundingRate`` (public, "Get Funding Rate History"): ``symbol`` (optional),
    ``startTime``/``endTime`` (inclusive), ``limit`` (default 100, at most 1000); ascending by
    time; with a start time the first ``limit`` from it, else the most recent ``limit``.
    Each row: ``symbol``, ``fundingRate`` (8 decimals), ``fundingTime``, ``markPrice``."""
    symbol = symbol_of(params, rules, required=False)
    limit = int_param(params, "limit")
    if limit is None:
        limit = FUNDING_RATE_DEFAULT_LIMIT
    elif not 1 <= limit <= LIST_MAX_LIMIT:
        raise RestError(-1130, "Data sent for parameter 'limit' is not valid.")
    start, end = int_param(params, "startTime"), int_param(params, "endTime")
    if start is not None and end is not None and start > end:
        raise RestError(-1023, "Start time is greater than end time.")
    recs = [r for r in acc.funding if r.symbol in rules and (symbol is None or r.symbol == symbol)
            and (start is None or r.time_ms >= start) and (end is None or r.time_ms <= end)]
    recs = recs[:limit] if start is not None else recs[-limit:]
    return [{"symbol": r.symbol, "fundingRate": fixed(r.rate, 8), "fundingTime": r.time_ms,
             "markPrice": mark_str(r.mark, rules[r.symbol])} for r in recs]
