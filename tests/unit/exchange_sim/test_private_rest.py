"""The signed endpoints' parameters (``rest_params``) and bodies (``private_rest``): Binance's codes for bad
requests, and bodies with the keys of the recorded real ones and hand-computed values."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from services.exchange_sim import faults
from services.exchange_sim import private_rest as pr
from services.exchange_sim import rest_params as rp
from services.exchange_sim.account import new_account
from services.exchange_sim.rest import RestError
from tests.conftest import USDM_DATA
from tests.unit.exchange_sim.trading_helpers import BOOK, RULES, T0, go, lim, mkt

RULES_BY = {"BTCUSDT": RULES}
MARKS = {"BTCUSDT": BOOK.mark}  # 60000.05


def recorded(method: str) -> dict:
    path = USDM_DATA / "rest_responses_subset.json"
    body = next(e["httpResponse"] for e in json.loads(path.read_text())["entries"] if e["method"] == method)
    return body[0] if isinstance(body, list) else body


def code_of(fn, *args) -> tuple[int, str]:
    with pytest.raises(RestError) as e:
        fn(*args)
    return e.value.code, e.value.msg


BASE = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}


class TestOrderParameters:
    def test_ccxt_market_order_parameters_parse(self):
        req, resp = rp.order_request({**BASE, "newClientOrderId": "x-abc:1/2", "reduceOnly": "true",
                                      "newOrderRespType": "RESULT"}, RULES_BY)
        assert (req.qty, req.reduce_only, req.client_id, req.price, resp) == (
            D("0.010"), True, "x-abc:1/2", None, "RESULT")

    def test_response_type_defaults_to_ack_as_on_binance(self):
        assert rp.order_request(BASE, RULES_BY)[1] == "ACK"

    @pytest.mark.parametrize("change, code, msg", [
        ({"symbol": "ETHUSDT"}, -1121, "Invalid symbol."),
        ({"quantity": ""}, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."),
        ({"quantity": "1e-3"}, -1100, "Illegal characters found in parameter 'quantity'; legal range is "
                                      "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'."),
        ({"price": "60000"}, -1106, "Parameter 'price' sent when not required."),
        ({"side": "LONG"}, -1117, "Invalid side."),
        ({"type": "TRAILING"}, -1116, "Invalid orderType."),
        ({"type": "LIMIT", "price": "60000"}, -1102,
         "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."),
        ({"type": "LIMIT", "price": "60000", "timeInForce": "GTD"}, -1115, "Invalid timeInForce."),
        ({"newClientOrderId": "has space"}, -1100, "Illegal characters found in parameter 'newClientOrderId'; "
                                                   "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'."),
        ({"newClientOrderId": "x" * 37}, -1100, "Illegal characters found in parameter 'newClientOrderId'; "
                                                "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'."),
        ({"positionSide": "LONG"}, -4061, "Order's position side does not match user's setting."),
    ])
    def test_bad_order_parameters_get_binances_code(self, change, code, msg):
        assert code_of(rp.order_request, {**BASE, **change}, RULES_BY) == (code, msg)

    @pytest.mark.parametrize("otype", ["STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                                       "TRAILING_STOP_MARKET"])
    def test_conditional_types_are_sent_to_the_algo_service_with_4120(self, otype):
        """Since 2025-12-09 /fapi/v1/order refuses every conditional type with -4120 (not -1116),
        whatever else the request carries."""
        assert code_of(rp.order_request, {**BASE, "type": otype, "stopPrice": "59000"}, RULES_BY) == (
            -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.")

    def test_order_lookup_needs_an_order_id_or_a_client_id(self):
        assert code_of(rp.order_ref, {"symbol": "BTCUSDT"})[0] == -1102
        assert rp.order_ref({"orderId": "4100000001"}) == (4100000001, None)


class TestBodies:
    def test_new_order_answer_has_the_recorded_keys_in_order(self):
        p = go(new_account(), lim("SELL", "0.200", "61000.00", client_id="L"))
        assert list(pr.order_body(p.order, RULES)) == list(recorded("createOrders"))

    def test_queried_order_has_the_recorded_keys_in_order_and_exact_values(self):
        """Market buy 1.000 walked to avg 60000.18: Binance prints avg with 5 decimals here."""
        p = go(new_account(), mkt("BUY", "1.000", client_id="m"))
        body = pr.order_body(p.order, RULES, query=True)
        assert list(body) == list(recorded("fetchOpenOrder"))
        assert (body["orderId"], body["status"], body["price"], body["avgPrice"], body["executedQty"],
                body["cumQuote"], body["time"]) == (4100000001, "FILLED", "0", "60000.18000", "1.000",
                                                    "60000.18000", T0)

    def test_user_trade_has_the_recorded_keys_and_exact_strings(self):
        acc = go(new_account(), mkt("BUY", "0.010")).account
        body = pr.trade_body(acc.fills[0], RULES)
        assert set(body) == set(recorded("fetchMyTrades"))
        assert body == {"symbol": "BTCUSDT", "id": 272600001, "orderId": 4100000001, "side": "BUY",
                        "price": "60000.10", "qty": "0.010", "realizedPnl": "0", "marginAsset": "USDT",
                        "quoteQty": "600.00100", "commission": "0.30000050", "commissionAsset": "USDT",
                        "time": T0, "positionSide": "BOTH", "maker": False, "buyer": True}

    def test_user_trades_filters_by_order_id_and_pages_from_an_id(self):
        acc = go(new_account(), mkt("BUY", "1.000")).account  # trades ...001-003
        acc = go(acc, mkt("BUY", "0.010")).account  # trade ...004, order ...002
        ids = lambda p: [t["id"] for t in pr.user_trades(acc, {"symbol": "BTCUSDT", **p}, RULES_BY)]  # noqa: E731
        assert ids({"orderId": "4100000002"}) == [272600004]
        assert ids({"fromId": "272600002", "limit": "2"}) == [272600002, 272600003]
        assert ids({"limit": "1"}) == [272600004]

    def test_all_orders_lists_every_status_in_a_window_shorter_than_seven_days(self):
        """allOrders as Binance documents it: filled and expired orders both listed (by creation
        time, inclusive), a window of 7 days or more refused with -1127, no window = the last 7 days."""
        acc = go(new_account(), mkt("BUY", "0.010", client_id="ae-a-0")).account  # order ...001 at T0
        acc = go(acc, lim("BUY", "0.010", "59000.00", tif="IOC", client_id="ae-b-0"), now=T0 + 5).account
        ask = lambda p, now=T0 + 10: [(o["clientOrderId"], o["status"], o["executedQty"])  # noqa: E731
                                      for o in pr.all_orders(acc, {"symbol": "BTCUSDT", **p}, RULES_BY, now)]
        assert ask({}) == [("ae-a-0", "FILLED", "0.010"), ("ae-b-0", "EXPIRED", "0.000")]
        assert ask({"startTime": str(T0 + 1), "endTime": str(T0 + 5)}) == [("ae-b-0", "EXPIRED", "0.000")]
        assert ask({"orderId": "4100000002"}) == [("ae-b-0", "EXPIRED", "0.000")]
        assert ask({}, now=T0 + 7 * 86_400_000 + 1) == []  # no window: only the last 7 days
        week = {"startTime": str(T0), "endTime": str(T0 + 7 * 86_400_000)}
        assert code_of(pr.all_orders, acc, {"symbol": "BTCUSDT", **week}, RULES_BY, T0) == (
            -1127, "More than 168 hours between startTime and endTime.")

    def test_all_orders_forgets_an_unfilled_expired_order_after_3_days_and_any_after_90(self):
        """An order with no fill that was CANCELED or EXPIRED is not found 3 days after it was made;
        a filled one is, until 90 days."""
        acc = go(new_account(), mkt("BUY", "0.010", client_id="ae-a-0")).account
        acc = go(acc, lim("BUY", "0.010", "59000.00", tif="IOC", client_id="ae-b-0")).account
        day = 86_400_000
        ask = lambda now: [o["clientOrderId"] for o in pr.all_orders(  # noqa: E731
            acc, {"symbol": "BTCUSDT", "startTime": str(now - 6 * day), "endTime": str(now)}, RULES_BY, now)]
        assert ask(T0 + 3 * day) == ["ae-a-0", "ae-b-0"]
        assert ask(T0 + 3 * day + 1) == ["ae-a-0"]
        assert pr.all_orders(acc, {"symbol": "BTCUSDT", "orderId": "1"}, RULES_BY, T0 + 90 * day + 1) == []

    def test_position_risk_v3_has_the_recorded_keys_and_exact_values(self):
        """Long 1.000 @ 60000.18 marked at 60000.05 with 9969.99991 in the wallet."""
        acc = go(new_account(), mkt("BUY", "1.000")).account
        [body] = pr.position_risk_v3(acc, {}, RULES_BY, MARKS)
        assert list(body) == list(recorded("fetchPositions"))
        assert {k: body[k] for k in ("positionAmt", "entryPrice", "breakEvenPrice", "markPrice",
                                     "unRealizedProfit", "notional", "initialMargin", "maintMargin",
                                     "liquidationPrice")} == {
            "positionAmt": "1.000", "entryPrice": "60000.18",
            "breakEvenPrice": "60030.18009",  # entry x (1 + 0.0005)
            "markPrice": "60000.05000000", "unRealizedProfit": "-0.13000000",
            "notional": "60000.05000000", "initialMargin": "3000.00250000",  # / 20
            "maintMargin": "250.00025000",  # 60000.05 x 0.005 - 50 (bracket 2)
            "liquidationPrice": "50231.33677387",  # (60000.18 - 9969.99991 - 50) / 0.995
        }

    def test_account_v2_and_its_asset_have_the_recorded_keys(self):
        real = recorded("fetchBalance")
        body = pr.account_v2(new_account(), RULES_BY, MARKS, T0)
        assert list(body) == list(real)
        assert set(body["assets"][0]) == set(real["assets"][0])
        assert body["assets"][0]["walletBalance"] == "10000.00000000"

    def test_balance_after_a_trade_is_wallet_less_fee_and_available_less_margin(self):
        acc = go(new_account(), mkt("BUY", "1.000")).account
        [b] = pr.balance(acc, MARKS, T0)
        assert (b["balance"], b["crossUnPnl"], b["availableBalance"]) == (
            "9969.99991000", "-0.13000000", "6969.86741000")  # 9969.99991 - 0.13 - 3000.0025

    def test_leverage_bracket_for_one_symbol_is_one_object_with_numbers(self):
        body = pr.leverage_bracket(["BTCUSDT"], {"symbol": "BTCUSDT"}, RULES_BY)
        assert body["brackets"][0] == {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000,
                                       "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}


class TestTradingFaults:
    def test_order_timeout_parses(self):
        f = faults.parse({"action": "order_timeout", "count": 2, "seconds": 15})
        assert (f.action, f.count, f.seconds) == ("order_timeout", 2, 15.0)

    def test_clock_skew_parses_both_ways_and_refuses_non_integers(self):
        assert faults.parse({"action": "clock_skew", "ms": -3000}).skew_ms == -3000
        with pytest.raises(faults.FaultError):
            faults.parse({"action": "clock_skew", "ms": 1.5})

    def test_http_error_400_with_a_margin_code_for_post_only(self):
        f = faults.http_fault(faults.parse({"action": "http_error", "status": 400, "code": -2019,
                                            "msg": "Margin is insufficient.", "path": "/fapi/v1/order",
                                            "method": "POST"}), T0)
        pending = [f]
        assert faults.take(pending, "/fapi/v1/order", "GET") is None
        hit = faults.take(pending, "/fapi/v1/order", "POST")
        assert hit is not None and (hit.status, hit.code, hit.msg) == (400, -2019, "Margin is insufficient.")
        assert pending == []
