"""The ccxt broker: exact parsing of raw Binance bodies, every error class, hedge mode, and the
requests ccxt really sends (a real ``binanceusdm`` over a fake HTTP session)."""

from __future__ import annotations

import json
from decimal import Decimal as D

import ccxt
import pytest
import requests
from tests.unit.venue.binance.ccxt_fakes import (
    BIG_ORDER_ID, ERROR_BODIES, USER_TRADES, FakeExchange, FakeSession, HttpFailure, raw_order, raw_trade,
    response,
)

from common.errors import AmbiguousError, ConfigError, DecodeError, DefinitiveError, TransientError
from venue.binance.bodies import (
    balance_from_raw, fill_from_raw, order_from_raw, position_from_raw, reply_from_text,
)
from venue import ratelimit
from venue.port import AlgoSpec, ExchangeAlgoOrder, OrderSpec
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig, make_exchange

CFG = CcxtConfig(leverage=3, margin_type="ISOLATED")
NOW_MS = 1_700_000_000_000
MARKET_BUY = OrderSpec(client_order_id="ae-sig1-0", symbol="BTCUSDT", side="BUY", order_type="MARKET",
                       qty=D("0.002"))


def broker(ex: FakeExchange | None = None) -> tuple[CcxtBroker, FakeExchange]:
    ex = ex or FakeExchange()
    return CcxtBroker(CFG, exchange=ex, clock_ms=lambda: NOW_MS, governor=ratelimit.Governor()), ex


def ccxt_error(code: int, msg: str, cls: type = ccxt.ExchangeError) -> Exception:
    """As ccxt raises a coded Binance error: the raw body in the text."""
    return cls("binanceusdm " + json.dumps({"code": code, "msg": msg}, separators=(",", ":")))


class TestRawBodies:
    def test_order_id_beyond_2_pow_53_and_decimals_stay_exact(self):
        o = order_from_raw(raw_order())
        assert o.exchange_order_id == "8389765519993908929" and int(o.exchange_order_id) > 2**53
        assert (o.qty, o.executed_qty, o.avg_price, o.price) == (D("0.002"), D("0.002"), D("40000.10"), D(0))
        assert (o.status, o.order_type, o.side, o.reduce_only, o.update_ms) == (
            "FILLED", "MARKET", "BUY", False, 1_700_000_000_123)

    def test_ccxt_static_open_order_with_stringified_numbers(self):
        """ccxt's recorded bodies carry ids and times as strings: read them the same."""
        o = order_from_raw({"orderId": "664082074", "symbol": "LTCUSDT", "status": "NEW",
                            "clientOrderId": "x-1", "price": "50.00", "avgPrice": "0.00000", "origQty": "0.200",
                            "executedQty": "0.000", "type": "LIMIT", "reduceOnly": "true", "side": "BUY",
                            "time": "1707907323983"})
        assert (o.exchange_order_id, o.price, o.qty, o.reduce_only, o.update_ms) == (
            "664082074", D("50.00"), D("0.200"), True, 1_707_907_323_983)

    def test_real_user_trades_rows(self):
        """ccxt's recorded row (ids and time as strings) and Binance's documented row (numbers,
        a negative realised PnL and a negative fee, i.e. a rebate) read exactly."""
        a, b = (fill_from_raw(r) for r in USER_TRADES)
        assert (a.trade_id, a.exchange_order_id, a.side, a.qty, a.price, a.fee, a.realized_pnl, a.liquidity) == (
            "272536245", "3524852987", "BUY", D("0.010"), D("36567.10"), D("0.14626840"), D(0), "taker")
        assert (a.time_ms, a.client_order_id, a.fee_asset) == (1_699_972_836_419, "", "USDT")
        assert (b.trade_id, b.exchange_order_id, b.side, b.qty, b.price, b.fee, b.realized_pnl, b.liquidity) == (
            "698759", "25851813", "SELL", D("0.002"), D("7819.01"), D("-0.07819010"), D("-0.91539999"), "taker")
        assert (b.time_ms, b.client_order_id) == (1_569_514_978_020, "")

    def test_position_and_balance_rows(self):
        p = position_from_raw({"symbol": "BTCUSDT", "positionAmt": "-0.009", "entryPrice": "67445.9",
                               "markPrice": "67502.68519858", "unRealizedProfit": "-0.51106678",
                               "leverage": "20", "positionSide": "BOTH"})
        assert (p.qty, p.entry_price, p.mark_price, p.unrealized_pnl, p.leverage) == (
            D("-0.009"), D("67445.9"), D("67502.68519858"), D("-0.51106678"), 20)
        b = balance_from_raw({"assets": [{"asset": "BNB", "walletBalance": "1", "marginBalance": "1"},
                                         {"asset": "USDT", "walletBalance": "31.02261200",
                                          "marginBalance": "31.52261200", "availableBalance": "30.00000001"}]})
        assert (b.wallet, b.equity, b.available) == (D("31.02261200"), D("31.52261200"), D("30.00000001"))

    @pytest.mark.parametrize("text,status,code", [
        ('binanceusdm {"code":-2019,"msg":"Margin is insufficient."}', 0, -2019),
        ('binanceusdm 429 Too Many Requests {"code":-1003,"msg":"Too many requests"}', 429, -1003),
        ("binanceusdm POST http://h/fapi/v1/order 503 Service Unavailable ", 503, None),
    ])
    def test_reply_from_ccxt_text(self, text, status, code):
        r = reply_from_text(text)
        assert (r.http_status, r.code) == (status, code)

    def test_text_without_an_answer_gives_none(self):
        assert reply_from_text("binanceusdm GET http://h/fapi/v1/order") is None


class TestSubmit:
    def test_market_order_sends_exact_text_and_fetches_its_fills(self):
        b, ex = broker()
        ex.script("create_order", raw_order())
        ex.script("fapiPrivateGetUserTrades", [raw_trade(1001), raw_trade(1002, price="40000.10")])
        res = b.submit(MARKET_BUY)
        assert ex.called("create_order") == [("BTC/USDT:USDT", "market", "buy", "0.002", None,
                                               {"newClientOrderId": "ae-sig1-0", "newOrderRespType": "RESULT"})]
        assert ex.called("fapiPrivateGetUserTrades") == [
            ({"symbol": "BTCUSDT", "limit": 1000, "orderId": "8389765519993908929"},)]
        assert res.order.exchange_order_id == str(BIG_ORDER_ID)
        assert [(f.trade_id, f.qty) for f in res.fills] == [("1001", D("0.001")), ("1002", D("0.001"))]
        assert sum(f.qty for f in res.fills) == res.order.qty

    def test_reduce_only_limit_passes_its_flag_and_price_text(self):
        b, ex = broker()
        ex.script("create_order", raw_order(status="NEW", executedQty="0.000", avgPrice="0.00", type="LIMIT",
                                            origType="LIMIT", price="40000.1", reduceOnly=True, side="SELL"))
        res = b.submit(OrderSpec(client_order_id="ae-x-1", symbol="BTCUSDT", side="SELL", order_type="LIMIT",
                                 qty=D("0.002"), price=D("40000.1"), reduce_only=True))
        [(_, typ, side, amount, price, params)] = ex.called("create_order")
        assert (typ, side, amount, price, params["reduceOnly"]) == ("limit", "sell", "0.002", "40000.1", True)
        assert (res.order.status, res.fills) == ("NEW", ())
        assert ex.called("fapiPrivateGetUserTrades") == []  # nothing executed, nothing to fetch

    @pytest.mark.parametrize("tif", ["GTC", "IOC", "GTX"])
    def test_a_limit_order_sends_its_time_in_force(self, tif):
        """timeInForce reaches Binance as the spec says (ccxt would default to GTC)."""
        b, ex = broker()
        ex.script("create_order", raw_order(status="EXPIRED", executedQty="0.000", avgPrice="0.00", type="LIMIT",
                                            origType="LIMIT", price="40000.1"))
        b.submit(OrderSpec(client_order_id="ae-x-1", symbol="BTCUSDT", side="BUY", order_type="LIMIT",
                           qty=D("0.002"), price=D("40000.1"), time_in_force=tif))
        [(_, typ, _, _, _, params)] = ex.called("create_order")
        assert (typ, params["timeInForce"]) == ("limit", tif)

    @pytest.mark.parametrize("qty,price", [(D("0.0015"), D(0)), (D("0.002"), D("40000.15"))])
    def test_off_grid_quantity_or_price_is_refused_before_sending(self, qty, price):
        """ccxt would truncate 0.0015 to 0.001: we refuse rather than send another quantity."""
        b, ex = broker()
        spec = OrderSpec(client_order_id="a", symbol="BTCUSDT", side="BUY",
                         order_type="LIMIT" if price else "MARKET", qty=qty, price=price)
        with pytest.raises(DefinitiveError) as exc:
            b.submit(spec)
        assert (exc.value.reason, exc.value.code) == ("filter", -1111)
        assert ex.called("create_order") == []

    def test_exponent_decimal_is_sent_as_plain_text(self):
        b, ex = broker()
        ex.script("create_order", raw_order(origQty="0.001", executedQty="0.000", status="NEW"))
        b.submit(OrderSpec(client_order_id="a", symbol="BTCUSDT", side="BUY", order_type="MARKET",
                           qty=D("1E-3")))
        assert ex.called("create_order")[0][3] == "0.001"

    def test_unknown_symbol_is_definitive(self):
        b, ex = broker()
        with pytest.raises(DefinitiveError) as exc:
            b.submit(OrderSpec(client_order_id="a", symbol="BTCUSD_PERP", side="BUY", order_type="MARKET",
                               qty=D(1)))
        assert exc.value.reason == "bad_symbol"

    def test_failure_to_fetch_fills_is_not_a_failure_of_the_submit(self):
        b, ex = broker()
        ex.script("create_order", raw_order())
        ex.script("fapiPrivateGetUserTrades", ccxt.RequestTimeout("binanceusdm GET /fapi/v1/userTrades"))
        res = b.submit(MARKET_BUY)
        assert (res.order.status, res.fills) == ("FILLED", ())

    @pytest.mark.parametrize("code,cls,reason", [
        (-2019, DefinitiveError, "insufficient_margin"),
        (-2022, DefinitiveError, "reduce_only"),
        (-4164, DefinitiveError, "filter"),
        (-4116, DefinitiveError, "duplicate_client_id"),
        (-1121, DefinitiveError, "bad_symbol"),
        (-1022, DefinitiveError, "auth"),
        (-1015, TransientError, "rate_limit"),
        (-1007, AmbiguousError, "server_timeout"),
        (-1001, AmbiguousError, "server_error"),
    ])
    def test_binance_code_in_ccxt_text_maps_through_the_table(self, code, cls, reason):
        b, ex = broker()
        ex.script("create_order", ccxt_error(code, "some text"))
        with pytest.raises(cls) as exc:
            b.submit(MARKET_BUY)
        assert (type(exc.value), exc.value.reason, exc.value.code) == (cls, reason, code)

    def test_code_comes_from_the_http_answer_when_ccxt_text_lacks_it(self):
        """ccxt matched the message ("Filter failure: MAX_POSITION") and dropped the code."""
        b, ex = broker()
        ex.script("create_order", HttpFailure(400, {"code": -2010, "msg": "Filter failure: MAX_POSITION"},
                                              ccxt.BadRequest("binanceusdm Filter failure: MAX_POSITION")))
        with pytest.raises(DefinitiveError) as exc:
            b.submit(MARKET_BUY)
        assert (exc.value.reason, exc.value.code, exc.value.http_status) == ("rejected", -2010, 400)

    def test_rate_limit_honours_retry_after(self):
        b, ex = broker()
        ex.script("create_order", HttpFailure(429, {"code": -1003, "msg": "Too many requests"},
                                              ccxt.DDoSProtection("binanceusdm 429 Too Many Requests"),
                                              headers={"Retry-After": "7"}))
        with pytest.raises(TransientError) as exc:
            b.submit(MARKET_BUY)
        assert (exc.value.reason, exc.value.retry_after_s, exc.value.http_status) == ("rate_limit", 7.0, 429)

    def test_ip_ban_without_retry_after_waits_until_the_ban_ends(self):
        b, ex = broker()
        msg = f"Way too many requests; IP(1.2.3.4) banned until {NOW_MS + 120_000}. Please use the websocket."
        ex.script("fapiPrivateV2GetAccount", HttpFailure(418, {"code": -1003, "msg": msg},
                                                         ccxt.DDoSProtection("binanceusdm 418")))
        with pytest.raises(TransientError) as exc:
            b.balance()
        assert (exc.value.reason, exc.value.retry_after_s) == ("rate_limit", 120.0)

    def test_timeout_during_submit_is_ambiguous(self):
        b, ex = broker()
        ex.script("create_order", ccxt.RequestTimeout("binanceusdm POST https://fapi.binance.com/fapi/v1/order"))
        with pytest.raises(AmbiguousError) as exc:
            b.submit(MARKET_BUY)
        assert exc.value.reason == "timeout"

    def test_dropped_connection_during_submit_is_ambiguous(self):
        b, ex = broker()
        ex.script("create_order", ccxt.NetworkError("binanceusdm POST url"))
        with pytest.raises(AmbiguousError):
            b.submit(MARKET_BUY)

    def test_refused_connection_during_submit_is_transient(self):
        """The connection never opened: the order cannot have left."""
        b, ex = broker()
        err = ccxt.NetworkError("binanceusdm POST url")
        err.__cause__ = requests.exceptions.ConnectionError(
            "HTTPConnectionPool: Max retries exceeded (Caused by NewConnectionError(': Failed to establish "
            "a new connection: [Errno 111] Connection refused'))")
        ex.script("create_order", err)
        with pytest.raises(TransientError):
            b.submit(MARKET_BUY)

    def test_timestamp_error_resyncs_server_time_then_is_transient(self):
        b, ex = broker()
        ex.script("create_order", ccxt_error(-1021, "Timestamp for this request is outside of the recvWindow.",
                                             ccxt.InvalidNonce))
        with pytest.raises(TransientError) as exc:
            b.submit(MARKET_BUY)
        assert exc.value.reason == "timestamp"
        assert ex.called("load_time_difference") == [()]

    def test_ccxt_choking_on_the_answer_is_ambiguous(self):
        b, ex = broker()
        ex.script("create_order", KeyError("orderId"))
        with pytest.raises(AmbiguousError) as exc:
            b.submit(MARKET_BUY)
        assert exc.value.reason == "bad_response"

    def test_unreadable_order_body_after_submit_is_ambiguous(self):
        b, ex = broker()
        ex.script("create_order", {"symbol": "BTCUSDT"})
        with pytest.raises(AmbiguousError):
            b.submit(MARKET_BUY)


class TestQueryCancelLists:
    def test_query_by_client_id(self):
        b, ex = broker()
        ex.script("fapiPrivateGetOrder", raw_order(clientOrderId="ae-q"))
        assert b.query("BTCUSDT", "ae-q").client_order_id == "ae-q"
        assert ex.called("fapiPrivateGetOrder") == [({"symbol": "BTCUSDT", "origClientOrderId": "ae-q"},)]

    def test_query_not_found_is_none(self):
        b, ex = broker()
        ex.script("fapiPrivateGetOrder", ccxt_error(-2013, "Order does not exist.", ccxt.OrderNotFound))
        assert b.query("BTCUSDT", "ae-q") is None

    def test_query_timeout_is_transient(self):
        b, ex = broker()
        ex.script("fapiPrivateGetOrder", ccxt.RequestTimeout("binanceusdm GET url"))
        with pytest.raises(TransientError):
            b.query("BTCUSDT", "ae-q")

    def test_cancel_unknown_order_is_definitive(self):
        b, ex = broker()
        ex.script("fapiPrivateDeleteOrder", ccxt_error(-2011, "Unknown order sent.", ccxt.OrderNotFound))
        with pytest.raises(DefinitiveError) as exc:
            b.cancel("BTCUSDT", "ae-q")
        assert (exc.value.reason, exc.value.code) == ("unknown_order", -2011)

    def test_cancel_returns_the_canceled_order(self):
        b, ex = broker()
        ex.script("fapiPrivateDeleteOrder", raw_order(status="CANCELED", executedQty="0.000"))
        assert b.cancel("BTCUSDT", "ae-sig1-0").status == "CANCELED"

    def test_open_orders_of_one_symbol_or_all(self):
        b, ex = broker()
        ex.script("fapiPrivateGetOpenOrders", [raw_order(status="NEW", orderId=1),
                                               raw_order(status="NEW", orderId=2)])
        assert [o.exchange_order_id for o in b.open_orders("BTCUSDT")] == ["1", "2"]
        b.open_orders()
        assert ex.called("fapiPrivateGetOpenOrders") == [({"symbol": "BTCUSDT"},), ({},)]

    def test_fills_page_by_trade_id(self):
        b, ex = broker()
        ex.script("fapiPrivateGetUserTrades", [raw_trade(i) for i in range(1, 1001)], [raw_trade(1001)])
        got = b.fills("BTCUSDT", since_ms=NOW_MS)
        assert len(got) == 1001 and got[-1].trade_id == "1001"
        assert ex.called("fapiPrivateGetUserTrades") == [
            ({"symbol": "BTCUSDT", "limit": 1000, "startTime": NOW_MS},),
            ({"symbol": "BTCUSDT", "limit": 1000, "fromId": 1001},)]

    def test_all_orders_asks_windows_under_seven_days_and_pages_by_creation_time(self):
        """GET /fapi/v1/allOrders (weight 5 each, in the governor): a 10-day span becomes two
        requests (7 days less 1 ms, then the rest); a full page is followed from its newest creation time, the order on the
        edge kept once; exact decimals, ids as text, oldest first."""
        b, ex = broker()
        day = 86_400_000
        row = lambda i, t: raw_order(orderId=i, clientOrderId=f"ae-s{i}-0", time=t, updateTime=t + 1)  # noqa: E731
        page1 = [row(i, NOW_MS + i) for i in range(1, 1001)]
        ex.script("fapiPrivateGetAllOrders", page1, [row(1000, NOW_MS + 1000), row(1001, NOW_MS + 1001)],
                  [row(2000, NOW_MS + 8 * day)])
        got = b.all_orders("BTCUSDT", since_ms=NOW_MS, until_ms=NOW_MS + 10 * day)
        assert [o.exchange_order_id for o in got] == [str(i) for i in range(1, 1002)] + ["2000"]
        assert (got[0].client_order_id, got[0].status, got[0].executed_qty, got[0].avg_price, got[0].update_ms) == (
            "ae-s1-0", "FILLED", D("0.002"), D("40000.10"), NOW_MS + 2)
        end1 = NOW_MS + 7 * day - 1
        assert ex.called("fapiPrivateGetAllOrders") == [
            ({"symbol": "BTCUSDT", "startTime": NOW_MS, "endTime": end1, "limit": 1000},),
            ({"symbol": "BTCUSDT", "startTime": NOW_MS + 1000, "endTime": end1, "limit": 1000},),
            ({"symbol": "BTCUSDT", "startTime": end1 + 1, "endTime": NOW_MS + 10 * day, "limit": 1000},)]
        assert b.governor.state.weight_1m == 3 * 5  # each request spent its weight of 5

    @pytest.mark.parametrize("body, reason", [
        ({"code": 0}, "all_orders_shape"),
        ([raw_order(time=NOW_MS, symbol="ETHUSDT")], "all_orders_symbol"),
        ([raw_order(time=NOW_MS, status="WEIRD")], "all_orders_status"),
        ([raw_order(time=NOW_MS, executedQty="0.003")], "all_orders_field"),
        ([raw_order(time=NOW_MS, origQty="NaN")], "all_orders_field"),
        ([raw_order(time="soon")], "all_orders_field"),
        ([raw_order(time=NOW_MS), "not a row"], "all_orders_shape"),
    ])
    def test_a_malformed_all_orders_answer_is_refused_whole_and_counted(self, body, reason):
        """One bad row refuses the whole page (it could hide the order we look for): DecodeError
        with the reason, counted on the broker."""
        b, ex = broker()
        ex.script("fapiPrivateGetAllOrders", body)
        with pytest.raises(DecodeError) as e:
            b.all_orders("BTCUSDT", since_ms=NOW_MS, until_ms=NOW_MS + 1)
        assert e.value.reason == reason and b.counters["all_orders_rejected"] == 1

    def test_income_pages_from_the_start_time_and_parses_binance_rows(self):
        """GET /fapi/v1/income (ccxt's raw fapiPrivateGetIncome): 1000 rows a page, page 2 asked
        while a page is full; each row exact (tranId a number on the wire, text here)."""
        b, ex = broker()
        row = lambda i: {"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "-0.05900000",  # noqa: E731
                         "asset": "USDT", "info": "FUNDING_FEE", "time": NOW_MS + i, "tranId": 9689322392 + i,
                         "tradeId": ""}
        ex.script("fapiPrivateGetIncome", [row(i) for i in range(1000)], [row(1000)])
        got = b.income(income_type="FUNDING_FEE", since_ms=NOW_MS)
        assert len(got) == 1001 and (got[-1].tran_id, got[-1].amount, got[-1].time_ms) == (
            "9689323392", D("-0.05900000"), NOW_MS + 1000)
        assert ex.called("fapiPrivateGetIncome") == [
            ({"incomeType": "FUNDING_FEE", "startTime": NOW_MS, "limit": 1000, "page": 1},),
            ({"incomeType": "FUNDING_FEE", "startTime": NOW_MS, "limit": 1000, "page": 2},)]

    def test_an_income_answer_that_is_not_a_list_is_our_error(self):
        """A body of the wrong shape: DefinitiveError bad_response, not a TypeError."""
        b, ex = broker()
        ex.script("fapiPrivateGetIncome", {"code": 0})
        with pytest.raises(DefinitiveError) as e:
            b.income(income_type="FUNDING_FEE", since_ms=NOW_MS)
        assert e.value.reason == "bad_response"

    @pytest.mark.parametrize("field, value", [("income", True), ("income", "NaN"), ("tranId", ""),
                                              ("incomeType", 7), ("time", 1.5)])
    def test_an_unreadable_income_row_is_refused_as_bad_response(self, field, value):
        """A row whose money, id, type or time is not what Binance sends: DefinitiveError
        bad_response (the body's DecodeError wrapped as every unreadable answer is), no crash."""
        b, ex = broker()
        row = {"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "-0.059", "asset": "USDT",
               "time": NOW_MS, "tranId": 9689322392, field: value}
        ex.script("fapiPrivateGetIncome", [row])
        with pytest.raises(DefinitiveError) as e:
            b.income(income_type="FUNDING_FEE", since_ms=NOW_MS)
        assert e.value.reason == "bad_response" and "DecodeError" in str(e.value)

    def test_positions_are_the_non_zero_rows(self):
        b, ex = broker()
        ex.script("fapiPrivateV2GetPositionRisk", [
            {"symbol": "BTCUSDT", "positionAmt": "0.000", "entryPrice": "0.0", "leverage": "3"},
            {"symbol": "ETHUSDT", "positionAmt": "-1.250", "entryPrice": "2000.5", "markPrice": "2001",
             "unRealizedProfit": "-0.625", "leverage": "3"}])
        [p] = b.positions()
        assert (p.symbol, p.qty, p.unrealized_pnl, p.leverage) == ("ETHUSDT", D("-1.250"), D("-0.625"), 3)

    def test_server_time(self):
        b, _ = broker()
        assert b.server_time_ms() == 1_700_000_000_000


def raw_algo(**over) -> dict:
    """A ``POST /fapi/v1/algoOrder`` body as Binance's documentation shows it."""
    body = {"algoId": 2146760, "clientAlgoId": "ps-sig1-1", "algoType": "CONDITIONAL", "orderType": "STOP_MARKET",
            "symbol": "BTCUSDT", "side": "SELL", "positionSide": "BOTH", "timeInForce": "GTC", "quantity": "0",
            "algoStatus": "NEW", "triggerPrice": "39000.0", "price": "0", "workingType": "MARK_PRICE",
            "priceMatch": "NONE", "closePosition": True, "priceProtect": True, "reduceOnly": False,
            "activatePrice": "", "callbackRate": "", "createTime": 1750485492076, "updateTime": 1750485492076,
            "triggerTime": 0, "goodTillDate": 0}
    body.update(over)
    return body


class TestAlgoService:
    def test_a_close_position_stop_goes_to_the_algo_endpoint_with_exact_text(self):
        """STOP_MARKET closePosition on the mark price with price protection, as ``algoOrder``."""
        b, ex = broker()
        ex.script("fapiPrivatePostAlgoOrder", raw_algo())
        got = b.place_algo(AlgoSpec(client_algo_id="ps-sig1-1", symbol="BTCUSDT", side="SELL",
                                    order_type="STOP_MARKET", trigger_price=D("39000.0")))
        assert ex.called("fapiPrivatePostAlgoOrder") == [({
            "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
            "clientAlgoId": "ps-sig1-1", "workingType": "MARK_PRICE", "priceProtect": "TRUE",
            "triggerPrice": "39000.0", "closePosition": "true"},)]
        assert got == ExchangeAlgoOrder(client_algo_id="ps-sig1-1", algo_id="2146760", symbol="BTCUSDT",
                                        side="SELL", order_type="STOP_MARKET", status="NEW",
                                        trigger_price=D("39000.0"), close_position=True, qty=D(0),
                                        update_ms=1750485492076)

    def test_a_trailing_stop_takes_a_reduce_only_quantity_and_a_callback_rate(self):
        b, ex = broker()
        ex.script("fapiPrivatePostAlgoOrder", raw_algo(orderType="TRAILING_STOP_MARKET", closePosition=False,
                                                       quantity="0.002", triggerPrice=""))
        b.place_algo(AlgoSpec(client_algo_id="pr-sig1-1", symbol="BTCUSDT", side="SELL",
                              order_type="TRAILING_STOP_MARKET", close_position=False, qty=D("0.002"),
                              callback_rate=D("1.5"), activation_price=D("41000")))
        [(params,)] = ex.called("fapiPrivatePostAlgoOrder")
        assert params == {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL",
                          "type": "TRAILING_STOP_MARKET", "clientAlgoId": "pr-sig1-1", "workingType": "MARK_PRICE",
                          "priceProtect": "TRUE", "callbackRate": "1.5", "activatePrice": "41000",
                          "quantity": "0.002", "reduceOnly": "true"}

    def test_a_timeout_while_placing_is_ambiguous(self):
        b, ex = broker()
        ex.script("fapiPrivatePostAlgoOrder", ccxt.RequestTimeout("binanceusdm POST url"))
        with pytest.raises(AmbiguousError):
            b.place_algo(AlgoSpec(client_algo_id="ps-sig1-1", symbol="BTCUSDT", side="SELL",
                                  order_type="STOP_MARKET", trigger_price=D("39000.0")))

    def test_an_unknown_symbol_is_refused_before_sending(self):
        b, ex = broker()
        with pytest.raises(DefinitiveError):
            b.place_algo(AlgoSpec(client_algo_id="ps-x-1", symbol="NOPEUSDT", side="SELL",
                                  order_type="STOP_MARKET", trigger_price=D(1)))
        assert ex.called("fapiPrivatePostAlgoOrder") == []

    def test_cancel_answer_with_ids_only_means_canceled(self):
        """Binance answers a cancel with the ids and ``code``/``msg``: the order is CANCELED."""
        b, ex = broker()
        ex.script("fapiPrivateDeleteAlgoOrder", {"algoId": 2146760, "clientAlgoId": "ps-sig1-1",
                                                 "code": "200", "msg": "success"})
        got = b.cancel_algo("BTCUSDT", "ps-sig1-1")
        assert (got.status, got.algo_id, got.client_algo_id) == ("CANCELED", "2146760", "ps-sig1-1")
        assert ex.called("fapiPrivateDeleteAlgoOrder") == [({"symbol": "BTCUSDT", "clientAlgoId": "ps-sig1-1"},)]

    def test_query_of_an_unknown_algo_order_is_none(self):
        b, ex = broker()
        ex.script("fapiPrivateGetAlgoOrder", ccxt_error(-2013, "Order does not exist.", ccxt.OrderNotFound))
        assert b.query_algo("BTCUSDT", "ps-nope-1") is None

    def test_a_triggered_algo_order_names_its_actual_order(self):
        b, ex = broker()
        ex.script("fapiPrivateGetAlgoOrder", raw_algo(algoStatus="TRIGGERED", actualOrderId="88937381063"))
        got = b.query_algo("BTCUSDT", "ps-sig1-1")
        assert (got.status, got.actual_order_id) == ("TRIGGERED", "88937381063")

    def test_open_algo_orders(self):
        b, ex = broker()
        ex.script("fapiPrivateGetOpenAlgoOrders", [raw_algo(), raw_algo(algoId=2, clientAlgoId="pt-sig1-1",
                                                                        orderType="TAKE_PROFIT_MARKET")])
        assert [(a.client_algo_id, a.order_type) for a in b.open_algo_orders()] == [
            ("ps-sig1-1", "STOP_MARKET"), ("pt-sig1-1", "TAKE_PROFIT_MARKET")]


class TestStart:
    def test_one_way_account_gets_margin_type_and_leverage_per_symbol(self):
        b, ex = broker()
        ex.script("fapiPrivatePostMarginType", {"code": 200, "msg": "success"},
                  ccxt_error(-4046, "No need to change margin type.", ccxt.MarginModeAlreadySet))
        setup = b.start(["BTCUSDT", "ETHUSDT"])
        assert (setup.one_way, setup.margin_type, setup.leverage, setup.server_time_offset_ms) == (
            True, "ISOLATED", {"BTCUSDT": 3, "ETHUSDT": 3}, 250)
        assert ex.called("fapiPrivatePostMarginType") == [({"symbol": "BTCUSDT", "marginType": "ISOLATED"},),
                                                          ({"symbol": "ETHUSDT", "marginType": "ISOLATED"},)]
        assert ex.called("fapiPrivatePostPositionSideDual") == []

    def test_hedge_mode_without_positions_is_switched_to_one_way(self):
        b, ex = broker()
        ex.script("fapiPrivateGetPositionSideDual", {"dualSidePosition": True})
        ex.script("fapiPrivatePostPositionSideDual", {"code": 200, "msg": "success"})
        assert b.start(["BTCUSDT"]).one_way is True
        assert ex.called("fapiPrivatePostPositionSideDual") == [({"dualSidePosition": "false"},)]

    def test_hedge_mode_with_positions_open_is_refused(self):
        b, ex = broker()
        ex.script("fapiPrivateGetPositionSideDual", {"dualSidePosition": True})
        ex.script("fapiPrivateV2GetPositionRisk", [{"symbol": "BTCUSDT", "positionAmt": "0.010",
                                                    "positionSide": "LONG", "leverage": "5"}])
        with pytest.raises(DefinitiveError) as exc:
            b.start(["BTCUSDT"])
        assert exc.value.reason == "hedge_mode"
        assert ex.called("fapiPrivatePostPositionSideDual") == []

    def test_symbol_not_listed_as_linear_is_refused(self):
        b, _ = broker()
        with pytest.raises(DefinitiveError) as exc:
            b.start(["BTCUSDT", "BTCUSD_PERP"])
        assert exc.value.reason == "bad_symbol"

    def test_margin_type_refusal_other_than_no_change_propagates(self):
        b, ex = broker()
        ex.script("fapiPrivatePostMarginType",
                  ccxt_error(-4048, "Margin type cannot be changed if there exists position."))
        with pytest.raises(DefinitiveError) as exc:
            b.start(["BTCUSDT"])
        assert exc.value.reason == "position_open"


class TestConfigAndSecrets:
    def test_repr_never_shows_the_keys(self):
        b = CcxtBroker(CcxtConfig(), api_key="KEY-abcdef-123456", api_secret="SECRET-abcdef-123456")
        assert "KEY-abcdef" not in repr(b) and "SECRET-abcdef" not in repr(b)

    @pytest.mark.parametrize("kw", [dict(margin_type="CROSS"), dict(leverage=0), dict(recv_window_ms=70_000),
                                    dict(timeout_ms=0), dict(testnet=True, base_url="http://127.0.0.1:1")])
    def test_bad_config_is_refused(self, kw):
        with pytest.raises(ConfigError):
            CcxtConfig(**kw)

    def test_base_url_points_every_fapi_url_at_the_sim(self):
        ex = make_exchange(CcxtConfig(base_url="http://127.0.0.1:8901/"), "k", "s")
        fapi = {k: v for k, v in ex.urls["api"].items() if k.startswith("fapi")}
        assert fapi and all(v.startswith("http://127.0.0.1:8901/f") for v in fapi.values())
        assert ex.options["fetchMarkets"]["types"] == ["linear"] and ex.options["fetchCurrencies"] is False


# ---------------------------------------------------------------------------- real ccxt, fake HTTP
@pytest.fixture
def wire():
    ex = make_exchange(CcxtConfig(), "KEY-abcdef-123456", "SECRET-abcdef-123456")
    session = FakeSession()
    ex.session = session
    ex.enableRateLimit = False  # no sleeps between the scripted answers
    return CcxtBroker(CcxtConfig(), exchange=ex, clock_ms=lambda: NOW_MS, governor=ratelimit.Governor()), session


class TestThroughRealCcxt:
    def test_submit_request_carries_exact_text_client_id_and_reduce_only(self, wire):
        b, s = wire
        s.route("POST", "/fapi/v1/order", response(200, raw_order(reduceOnly=True, executedQty="0.000",
                                                                   status="NEW")))
        res = b.submit(OrderSpec(client_order_id="ae-sig1-0", symbol="BTCUSDT", side="SELL", order_type="MARKET",
                                 qty=D("0.002"), reduce_only=True))
        [order_req] = [x for x in s.sent if x.path == "/fapi/v1/order"]
        assert {k: order_req.params[k] for k in ("symbol", "side", "type", "quantity", "newClientOrderId",
                                                 "reduceOnly", "newOrderRespType", "recvWindow")} == {
            "symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.002",
            "newClientOrderId": "ae-sig1-0", "reduceOnly": "true", "newOrderRespType": "RESULT",
            "recvWindow": "5000"}
        assert res.order.exchange_order_id == str(BIG_ORDER_ID)

    @pytest.mark.parametrize("entry", ERROR_BODIES,
                             ids=[f'{e["code"]}_http{e["http_status"]}_{i}' for i, e in enumerate(ERROR_BODIES)])
    def test_documented_error_bodies(self, wire, entry):
        """Binance's documented error texts, with their HTTP statuses, through ccxt onto our classes."""
        b, s = wire
        status = entry["http_status"]
        msg = entry["msg"].replace("%s", "2400" if status == 429 else "1615183669840")
        s.route("POST", "/fapi/v1/order", response(status, {"code": entry["code"], "msg": msg}))
        expected = {-2019: (DefinitiveError, "insufficient_margin"), -1021: (TransientError, "timestamp"),
                    -1003: (TransientError, "rate_limit"), -2011: (DefinitiveError, "unknown_order")}
        cls, reason = expected[entry["code"]]
        with pytest.raises(cls) as exc:
            b.submit(MARKET_BUY)
        assert (exc.value.reason, exc.value.code, exc.value.http_status) == (reason, entry["code"], status)

    def test_timestamp_error_measures_the_offset_again(self, wire):
        b, s = wire
        s.route("POST", "/fapi/v1/order", response(400, {"code": -1021, "msg": "Timestamp for this request "
                                                                               "is outside of the recvWindow."}))
        with pytest.raises(TransientError):
            b.submit(MARKET_BUY)
        assert s.paths()[-2:] == ["POST /fapi/v1/order", "GET /fapi/v1/time"]

    def test_429_with_retry_after(self, wire):
        b, s = wire
        s.route("POST", "/fapi/v1/order", response(429, {"code": -1003, "msg": "Too many requests"},
                                                   headers={"Retry-After": "3"}))
        with pytest.raises(TransientError) as exc:
            b.submit(MARKET_BUY)
        assert (exc.value.reason, exc.value.retry_after_s) == ("rate_limit", 3.0)

    @pytest.mark.parametrize("body", [None, {"code": -1001, "msg": "Internal error; unable to process your "
                                                                  "request. Please try again."}])
    def test_5xx_is_ambiguous_for_submit_and_transient_for_reads(self, wire, body):
        b, s = wire
        s.route("POST", "/fapi/v1/order", response(503, body))
        s.route("GET", "/fapi/v2/positionRisk", response(503, body))
        with pytest.raises(AmbiguousError) as exc:
            b.submit(MARKET_BUY)
        assert exc.value.http_status == 503
        with pytest.raises(TransientError):
            b.positions()

    def test_read_timeout_is_ambiguous_and_refused_connection_transient(self, wire):
        b, s = wire
        s.route("POST", "/fapi/v1/order", requests.exceptions.ReadTimeout("read timed out"))
        with pytest.raises(AmbiguousError):
            b.submit(MARKET_BUY)
        s.route("POST", "/fapi/v1/order", requests.exceptions.ConnectionError(
            "Max retries exceeded (Caused by NewConnectionError('Failed to establish a new connection: "
            "[Errno 111] Connection refused'))"))
        with pytest.raises(TransientError):
            b.submit(MARKET_BUY)

    def test_code_dropped_by_ccxt_message_matching_is_recovered(self, wire):
        b, s = wire
        s.route("POST", "/fapi/v1/order", response(400, {"code": -2010, "msg": "Filter failure: MAX_POSITION"}))
        with pytest.raises(DefinitiveError) as exc:
            b.submit(MARKET_BUY)
        assert (exc.value.code, exc.value.reason) == (-2010, "rejected")

    def test_query_of_an_unknown_client_id_is_none(self, wire):
        b, s = wire
        s.route("GET", "/fapi/v1/order", response(400, {"code": -2013, "msg": "Order does not exist."}))
        assert b.query("BTCUSDT", "ae-none") is None
        assert s.sent[-1].params["origClientOrderId"] == "ae-none"


class TestRateLimitGovernor:
    """Every call spends from the process's governor: Binance's weights, its headers, 429 and
    418 back-offs, and a reserve only exits may spend (venue.ratelimit)."""

    @staticmethod
    def rig():
        ex = make_exchange(CcxtConfig(), "KEY-abcdef-123456", "SECRET-abcdef-123456")
        session = FakeSession()
        ex.session = session
        t = [1_700_000_080_000]  # 40 s into a minute: no window rolls during a test
        gov = ratelimit.Governor(clock_ms=lambda: t[0])
        b = CcxtBroker(CcxtConfig(rate_limit_wait_s=0.05), exchange=ex, clock_ms=lambda: NOW_MS, governor=gov)
        return b, session, gov

    def test_ccxts_own_throttle_is_off(self):
        assert make_exchange(CcxtConfig(), "k", "s").enableRateLimit is False

    def test_after_a_429_nothing_is_sent_until_retry_after(self):
        b, s, gov = self.rig()
        s.route("POST", "/fapi/v1/order", response(429, {"code": -1003, "msg": "Too many requests"},
                                                   headers={"Retry-After": "30"}))
        with pytest.raises(TransientError):
            b.submit(MARKET_BUY)
        sent = len(s.sent)
        with pytest.raises(TransientError) as exc:
            b.query("BTCUSDT", "ae-x")
        assert (exc.value.reason, exc.value.retry_after_s) == ("rate_limited", 30.0)
        assert len(s.sent) == sent  # refused here: nothing went out during the back-off
        assert gov.state.throttles == 1

    def test_a_418_ban_stops_even_exits(self):
        b, s, gov = self.rig()
        s.route("GET", "/fapi/v2/positionRisk", response(418, {"code": -1003, "msg": "banned"},
                                                         headers={"Retry-After": "120"}))
        with pytest.raises(TransientError):
            b.positions()
        sent = len(s.sent)
        with pytest.raises(TransientError):
            b.submit(OrderSpec(client_order_id="ax-sig1-1", symbol="BTCUSDT", side="SELL", order_type="MARKET",
                               qty=D("0.002"), reduce_only=True))
        assert len(s.sent) == sent and gov.state.bans == 1

    def test_the_weight_header_leaves_the_last_tenth_to_exits(self):
        """X-MBX-USED-WEIGHT-1M 2200 of 2400: a query (weight 5) waits; an exit (weight 0, one
        order) still goes."""
        b, s, gov = self.rig()
        s.route("GET", "/fapi/v2/positionRisk", response(200, [], headers={"X-MBX-USED-WEIGHT-1M": "2200"}))
        assert b.positions() == []
        assert gov.state.weight_1m == 2200
        with pytest.raises(TransientError) as exc:
            b.positions()
        assert exc.value.reason == "rate_limited"
        s.route("POST", "/fapi/v1/order", response(200, raw_order(reduceOnly=True, status="NEW", executedQty="0.000"),
                                                   headers={"X-MBX-ORDER-COUNT-10S": "1", "X-MBX-ORDER-COUNT-1M": "1"}))
        b.submit(OrderSpec(client_order_id="ax-sig1-1", symbol="BTCUSDT", side="SELL", order_type="MARKET",
                           qty=D("0.002"), reduce_only=True))
        assert (gov.state.orders_10s, gov.state.orders_1m) == (1, 1)


class TestLeverageBrackets:
    def test_documented_body_becomes_exact_tiers_of_the_asked_symbols(self):
        b, ex = broker()
        ex.script("fapiPrivateGetLeverageBracket", [
            {"symbol": "ETHUSDT", "notionalCoef": 1.5, "brackets": [
                {"bracket": 1, "initialLeverage": 75, "notionalCap": 10000, "notionalFloor": 0,
                 "maintMarginRatio": 0.0065, "cum": 0}]},
            {"symbol": "BTCUSDT", "notionalCoef": 1.0, "brackets": [
                {"bracket": 2, "initialLeverage": 100, "notionalCap": 600000, "notionalFloor": 50000,
                 "maintMarginRatio": 0.005, "cum": 50},
                {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0,
                 "maintMarginRatio": 0.004, "cum": 0}]}])
        got = b.leverage_brackets(["BTCUSDT"])
        assert list(got) == ["BTCUSDT"]
        assert [(t.notional_floor, t.maint_margin_ratio, t.cum, t.initial_leverage) for t in got["BTCUSDT"]] == [
            (D(0), D("0.004"), D(0), 125), (D(50000), D("0.005"), D(50), 100)]
