"""The Algo Service core (``algo``) and its REST parameters and bodies (``private_rest``),
without sockets or clocks: placing, refusing, cancelling, triggering and settling
conditional orders, with every number worked out by hand.

The book is ``trading_helpers.BOOK`` (bid 60000.00, ask 60000.10, last 60000.00: mark
60000.05) unless a test moves it with ``at``: a book locked at one price, as ``POST
/_sim/price`` leaves it.
"""

from __future__ import annotations

from decimal import Decimal as D

import orjson
import pytest

from services.exchange_sim import account as acc_mod
from services.exchange_sim import algo, trading
from services.exchange_sim import private_rest as pr
from services.exchange_sim import rest_params as rp
from services.exchange_sim.account import (CANCELED, EXPIRED, FILLED, FINISHED, FIRST_ALGO_ID, NEW, REJECTED,
                                           TRIGGERED, Quote, from_json, new_account, to_json)
from services.exchange_sim.algo import AlgoRequest
from services.exchange_sim.rest import RestError
from tests.unit.exchange_sim.trading_helpers import BOOK, RULES, T0, go, lim, mkt

RULES_BY = {"BTCUSDT": RULES}
A0 = FIRST_ALGO_ID


def at(price: str, last: str | None = None, trade_id: int = 600) -> Quote:
    """A book locked at ``price`` (mark = ``price``), last trade ``last`` (default: the same)."""
    p = D(price)
    return Quote(bid=p, bid_qty=D("1.500"), ask=p, ask_qty=D("0.400"), last=D(last or price), last_trade_id=trade_id)


def stop(side: str = "SELL", trigger: str = "59000.00", **kw) -> AlgoRequest:
    kw.setdefault("close_position", True)
    kw.setdefault("working_type", "MARK_PRICE")
    return AlgoRequest(symbol="BTCUSDT", side=side, type=kw.pop("type", "STOP_MARKET"),
                       trigger_price=D(trigger), **kw)


def put(acc, req: AlgoRequest, quote: Quote = BOOK, now: int = T0):
    return algo.place(acc, req, RULES, quote, now)


def refused(acc, req: AlgoRequest, quote: Quote = BOOK) -> tuple[int, str]:
    with pytest.raises(RestError) as e:
        put(acc, req, quote)
    return e.value.code, e.value.msg


def step(acc, quote: Quote, now: int = T0 + 1000):
    return algo.evaluate(acc, RULES, quote, {"BTCUSDT": quote.mark}, now)


@pytest.fixture
def long10():
    """Long 0.010 bought at the ask 60000.10 (fee 0.30000050)."""
    return go(new_account(), mkt("BUY", "0.010", client_id="entry")).account


# ---------------------------------------------------------------------------- placing
class TestPlace:
    def test_close_position_stop_is_held_new_as_binance_reports_it(self, long10):
        """closePosition: quantity 0, time in force GTE_GTC, reduce-only (a testnet ALGO_UPDATE)."""
        acc, a = put(long10, stop(client_algo_id="sl-1", price_protect=True))
        assert (a.algo_id, a.client_algo_id, a.status, a.type, a.side) == (A0, "sl-1", NEW, "STOP_MARKET", "SELL")
        assert (a.qty, a.tif, a.reduce_only, a.close_position, a.trigger_price) == (
            D(0), "GTE_GTC", True, True, D("59000.00"))
        assert (a.create_ms, a.update_ms, a.trigger_ms, a.actual_order_id) == (T0, T0, 0, None)
        assert acc.open_algo_ids == {"BTCUSDT": (A0,)} and acc.next_algo_id == A0 + 1
        assert acc.orders == long10.orders  # nothing reaches the matching engine yet

    def test_without_client_algo_id_one_is_made_up(self, long10):
        _, a = put(long10, stop())
        assert a.client_algo_id == trading.generated_client_id(A0) and len(a.client_algo_id) == 22

    @pytest.mark.parametrize("req, quote", [
        (stop(trigger="60100.00"), BOOK),  # SELL stop above the mark 60000.05
        (stop(side="BUY", trigger="60000.00", close_position=False, qty=D("0.010")), BOOK),  # BUY stop below
        (stop(type="TAKE_PROFIT_MARKET", trigger="59000.00"), BOOK),  # SELL target below the price
        (stop(trigger="59999.00", working_type="CONTRACT_PRICE"), at("60000.05", last="59998.00")),
    ])
    def test_a_trigger_already_met_is_refused_2021(self, long10, req, quote):
        assert refused(long10, req, quote) == (-2021, "Order would immediately trigger.")

    def test_close_position_needs_a_position_it_would_close(self, long10):
        """-4509 when flat, and for a BUY close-all against a long (nothing short to close)."""
        msg = ("Time in Force (TIF) GTE can only be used with open positions. "
               "Please ensure that positions are available.")
        assert refused(new_account(), stop()) == (-4509, msg)
        assert refused(long10, stop(side="BUY", trigger="61000.00")) == (-4509, msg)

    def test_one_close_position_order_per_side_and_type(self, long10):
        """A second SELL STOP_MARKET close-all is -4130; a TAKE_PROFIT_MARKET beside it is fine."""
        acc, _ = put(long10, stop(client_algo_id="sl-1"))
        assert refused(acc, stop(trigger="58000.00", client_algo_id="sl-2")) == (
            -4130, "An open stop or take profit order with GTE and closePosition in the direction is existing.")
        acc, tp = put(acc, stop(type="TAKE_PROFIT_MARKET", trigger="62000.00", client_algo_id="tp-1"))
        assert (tp.algo_id, acc.open_algo_ids) == (A0 + 1, {"BTCUSDT": (A0, A0 + 1)})

    def test_a_client_algo_id_of_an_open_algo_order_is_refused_until_it_is_gone(self, long10):
        acc, _ = put(long10, stop(client_algo_id="sl-1"))
        assert refused(acc, stop(type="TAKE_PROFIT_MARKET", trigger="62000.00", client_algo_id="sl-1")) == (
            -4116, "ClientOrderId is duplicated.")
        acc, _ = algo.cancel(acc, None, "sl-1", T0 + 1)
        acc, again = put(acc, stop(client_algo_id="sl-1"))
        assert (again.algo_id, acc.algo_by_client_id("sl-1").algo_id) == (A0 + 1, A0 + 1)

    def test_at_most_200_open_algo_orders(self, monkeypatch):
        monkeypatch.setattr(algo, "MAX_OPEN_ALGOS", 2)
        acc = new_account()
        for i in range(2):
            acc, _ = put(acc, stop(side="BUY", trigger=f"6100{i}.00", close_position=False, qty=D("0.010")))
        assert refused(acc, stop(side="BUY", trigger="61005.00", close_position=False, qty=D("0.010"))) == (
            -4045, "Reach max stop order limit.")

    @pytest.mark.parametrize("trigger, code", [("0", -4006), ("58999.999", -1111), ("1236007", -4007)])
    def test_trigger_price_filters(self, long10, trigger, code):
        assert refused(long10, stop(trigger=trigger))[0] == code

    def test_trigger_price_off_the_tick_is_accepted_like_a_real_testnet(self, long10):
        """Binance does not enforce the tick on triggerPrice (testnet 2026: 74960.75 on a 0.10 tick)."""
        _, a = put(long10, stop(trigger="59000.05"))
        assert a.trigger_price == D("59000.05")

    def test_quantity_filters_apply_to_quantity_orders(self):
        req = stop(side="BUY", trigger="61000.00", close_position=False, qty=D("0.0005"))
        assert refused(new_account(), req) == (-1111, "Precision is over the maximum defined for this asset.")

    def test_no_margin_check_before_the_trigger(self):
        """A BUY stop for 100 BTC (6 M USDT) on a 10,000 USDT wallet is accepted: Binance checks at the trigger."""
        _, a = put(new_account(), stop(side="BUY", trigger="61000.00", close_position=False, qty=D("100")))
        assert a.status == NEW


# ---------------------------------------------------------------------------- triggering
class TestTrigger:
    def test_stop_waits_until_the_mark_reaches_its_trigger(self, long10):
        acc, _ = put(long10, stop())
        assert step(acc, at("59000.10")) is acc  # not yet: the same object comes back

    def test_close_position_stop_closes_the_long_at_the_pushed_price(self, long10):
        """Mark 58900.00 <= 59000.00: a reduce-only MARKET SELL of the whole 0.010 fills at
        58900.00; PnL 0.010 x (58900.00 - 60000.10) = -11.001, fee 589.00 x 0.05 % = 0.2945."""
        acc, _ = put(long10, stop(client_algo_id="sl-1"))
        after = step(acc, at("58900.00"))
        a = after.algos[A0]
        assert (a.status, a.trigger_ms, a.actual_order_id, a.update_ms) == (FINISHED, T0 + 1000, 4100000002, T0 + 1000)
        o = after.orders[4100000002]
        assert (o.type, o.side, o.status, o.orig_qty, o.avg_price, o.client_id) == (
            "MARKET", "SELL", FILLED, D("0.010"), D("58900.00"), "sl-1")
        assert (o.orig_type, o.stop_price, o.close_position, o.reduce_only, o.working_type) == (
            "STOP_MARKET", D("59000.00"), True, True, "MARK_PRICE")
        f = after.fills[-1]
        assert (f.price, f.qty, f.realized_pnl, f.commission, f.maker) == (
            D("58900.00"), D("0.010"), D("-11.00100000"), D("0.29450000"), False)
        assert after.position("BTCUSDT").qty == 0
        assert after.position("BTCUSDT").cum_realized == D("-11.00100000")
        assert after.wallet == D("9988.40449950")  # 10000 - 0.3000005 - 11.001 - 0.2945
        assert after.open_algo_ids == {} and after.client_ids["sl-1"] == 4100000002

    def test_the_target_beside_a_fired_stop_expires_with_the_position(self, long10):
        """GTE_GTC: once the stop closed the long, the close-all target has nothing to close."""
        acc, _ = put(long10, stop(client_algo_id="sl-1"))
        acc, _ = put(acc, stop(type="TAKE_PROFIT_MARKET", trigger="62000.00", client_algo_id="tp-1"))
        after = step(acc, at("58900.00"))
        assert (after.algos[A0].status, after.algos[A0 + 1].status) == (FINISHED, EXPIRED)
        assert after.algos[A0 + 1].update_ms == T0 + 1000

    def test_closing_the_position_by_hand_expires_close_position_orders(self, long10):
        acc, _ = put(long10, stop())
        closed = go(acc, mkt("SELL", "0.010", reduce_only=True)).account
        assert closed.algos[A0].status == NEW  # the trading core leaves algo orders alone ...
        settled = algo.settle(closed, "BTCUSDT", T0 + 5)
        assert (settled.algos[A0].status, settled.open_algo_ids) == (EXPIRED, {})  # ... settle expires them

    def test_contract_price_watches_the_last_trade_not_the_mark(self, long10):
        acc, _ = put(long10, stop(working_type="CONTRACT_PRICE"))
        assert step(acc, at("58900.00", last="59100.00")) is acc  # mark through, last not
        assert step(acc, at("59100.00", last="58990.00")).algos[A0].status == FINISHED

    def test_take_profit_sell_fires_at_or_above_its_trigger(self, long10):
        acc, _ = put(long10, stop(type="TAKE_PROFIT_MARKET", trigger="61000.00", close_position=False,
                                  qty=D("0.004"), reduce_only=True))
        assert step(acc, at("60999.90")) is acc
        after = step(acc, at("61000.00"))
        assert after.algos[A0].status == FINISHED
        assert after.position("BTCUSDT").qty == D("0.006")

    def test_price_protect_holds_the_trigger_while_mark_and_last_disagree_beyond_5_percent(self, long10):
        acc, _ = put(long10, stop(price_protect=True))
        assert step(acc, at("58900.00", last="62000.00")) is acc  # 3100 / 58900 = 5.3 %
        assert step(acc, at("58900.00", last="61845.00")).algos[A0].status == FINISHED  # 2945 / 58900 = 5 %

    def test_reduce_only_stop_with_nothing_to_reduce_is_rejected_at_the_trigger(self):
        acc, _ = put(new_account(), stop(close_position=False, qty=D("0.010"), reduce_only=True))
        after = step(acc, at("58900.00"))
        a = after.algos[A0]
        assert (a.status, a.reason, a.actual_order_id, a.trigger_ms) == (REJECTED, "Reduce Only reject", None, T0 + 1000)
        assert after.orders == {} and after.open_algo_ids == {}

    def test_a_buy_stop_without_margin_is_rejected_at_the_trigger_with_binances_text(self):
        acc, _ = put(new_account(), stop(side="BUY", trigger="61000.00", close_position=False, qty=D("100")))
        a = step(acc, at("61000.00")).algos[A0]
        assert (a.status, a.reason) == (REJECTED, "Margin is insufficient.")

    def test_stop_limit_triggers_into_a_resting_limit_and_finishes_when_it_fills(self, long10):
        """STOP SELL 0.010 @ 58950.00, trigger 59000.00: at 58900 the limit rests (the book
        is at 58900, above it); the algo order is TRIGGERED until the limit fills."""
        acc, _ = put(long10, AlgoRequest(symbol="BTCUSDT", side="SELL", type="STOP", qty=D("0.010"),
                                         price=D("58950.00"), trigger_price=D("59000.00"), reduce_only=True,
                                         working_type="MARK_PRICE", client_algo_id="sl-lim"))
        after = step(acc, at("58900.00"))  # sell limit 58950 above the locked 58900 book: rests
        a = after.algos[A0]
        o = after.orders[a.actual_order_id]
        assert (a.status, o.type, o.status, o.price, o.orig_type, o.client_id) == (
            TRIGGERED, "LIMIT", NEW, D("58950.00"), "STOP", "sl-lim")
        assert after.open_algo_ids == {"BTCUSDT": (A0,)}
        filled = trading.match_resting(after, RULES, at("58960.00", trade_id=601), T0 + 2000)
        settled = algo.settle(filled, "BTCUSDT", T0 + 2000)
        assert (settled.orders[a.actual_order_id].status, settled.algos[A0].status) == (FILLED, FINISHED)
        assert settled.open_algo_ids == {}

    def test_trailing_sell_follows_the_high_and_fires_one_callback_below_it(self, long10):
        """callbackRate 1 %, activated at the mark 60000.05 by default: the high goes to 61000.00,
        so it fires at 61000 x 0.99 = 60390.00, not at 60390.10."""
        acc, a = put(long10, AlgoRequest(symbol="BTCUSDT", side="SELL", type="TRAILING_STOP_MARKET",
                                         qty=D("0.010"), reduce_only=True, callback_rate=D("1"),
                                         working_type="MARK_PRICE"))
        assert (a.activate_price, a.extreme, a.activated) == (D("60000.05"), D("60000.05"), True)
        acc = step(acc, at("61000.00"))
        assert acc.algos[A0].extreme == D("61000.00")
        held = step(acc, at("60390.10"))
        assert held.algos[A0].status == NEW
        after = step(held, at("60390.00"))
        assert (after.algos[A0].status, after.fills[-1].price) == (FINISHED, D("60390.00"))

    def test_trailing_with_an_activation_price_waits_for_it(self, long10):
        req = AlgoRequest(symbol="BTCUSDT", side="SELL", type="TRAILING_STOP_MARKET", qty=D("0.010"),
                          reduce_only=True, callback_rate=D("0.5"), activate_price=D("60500.00"),
                          working_type="MARK_PRICE")
        assert refused(long10, AlgoRequest(**{**req.__dict__, "activate_price": D("60000.00")})) == (
            -2021, "Order would immediately trigger.")  # a SELL activates above the price
        acc, a = put(long10, req)
        assert a.activated is False
        acc = step(acc, at("60400.00"))
        assert acc.algos[A0].status == NEW  # 60400 < 60500 x 0.995 but not activated
        acc = step(acc, at("60500.00"))
        assert (acc.algos[A0].activated, acc.algos[A0].update_ms) == (True, T0 + 1000)
        assert step(acc, at("60197.50")).algos[A0].status == FINISHED  # 60500 x 0.995


# ---------------------------------------------------------------------------- cancel and state
class TestCancelAndState:
    def test_cancel_by_id_or_client_id_then_unknown(self, long10):
        acc, _ = put(long10, stop(client_algo_id="sl-1"))
        acc, a = algo.cancel(acc, A0, None, T0 + 5)
        assert (a.status, a.update_ms, acc.open_algo_ids) == (CANCELED, T0 + 5, {})
        with pytest.raises(RestError) as e:
            algo.cancel(acc, None, "sl-1", T0 + 6)
        assert (e.value.code, e.value.msg) == (-2011, "Unknown order sent.")

    def test_cancel_all_cancels_only_that_symbols_untriggered_orders(self, long10):
        acc, _ = put(long10, stop())
        acc, _ = put(acc, stop(type="TAKE_PROFIT_MARKET", trigger="62000.00"))
        after = algo.cancel_all(acc, "BTCUSDT", T0 + 5)
        assert [a.status for a in after.algos.values()] == [CANCELED, CANCELED]
        assert algo.cancel_all(after, "BTCUSDT", T0 + 6) is after

    def test_algo_orders_survive_the_state_file_round_trip(self, long10):
        acc, _ = put(long10, stop(client_algo_id="sl-1"))
        acc, _ = put(acc, AlgoRequest(symbol="BTCUSDT", side="SELL", type="TRAILING_STOP_MARKET",
                                      qty=D("0.010"), reduce_only=True, callback_rate=D("1.5")))
        acc = step(acc, at("61000.00"))
        back = from_json(orjson.loads(orjson.dumps(to_json(acc))))
        assert back == acc
        assert back.algo_by_client_id("sl-1").algo_id == A0

    def test_a_schema_1_state_reads_as_one_without_algo_orders(self, long10):
        doc = to_json(long10)
        for k in ("algos", "nextAlgoId"):
            doc.pop(k)
        doc["schema"] = 1
        back = from_json(doc)
        assert (back.algos, back.next_algo_id, back.orders) == ({}, A0, long10.orders)

    def test_algo_history_is_bounded_open_ones_kept(self, monkeypatch):
        monkeypatch.setattr(acc_mod, "MAX_CLOSED_ALGOS", 2)
        acc, _ = put(new_account(), stop(side="BUY", trigger="62000.00", close_position=False, qty=D("0.010"),
                                         client_algo_id="keep"))
        for i in range(4):
            acc, _ = put(acc, stop(side="BUY", trigger="61000.00", close_position=False, qty=D("0.010"),
                                   client_algo_id=f"c{i}"))
            acc, _ = algo.cancel(acc, None, f"c{i}", T0 + i)
        assert [a.client_algo_id for a in acc.algos.values()] == ["keep", "c2", "c3"]
        assert set(acc.client_algo_ids) == {"keep", "c2", "c3"}


# ---------------------------------------------------------------------------- REST parameters
BASE = {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
        "triggerPrice": "59000", "closePosition": "true"}


class TestAlgoParameters:
    def test_protective_stop_parameters_parse(self):
        req = rp.algo_request({**BASE, "workingType": "MARK_PRICE", "priceProtect": "TRUE",
                               "clientAlgoId": "ae-sl-1", "newOrderRespType": "RESULT"}, RULES_BY)
        assert req == AlgoRequest(symbol="BTCUSDT", side="SELL", type="STOP_MARKET", trigger_price=D("59000"),
                                  working_type="MARK_PRICE", price_protect=True, close_position=True,
                                  client_algo_id="ae-sl-1")

    def test_trailing_parameters_parse(self):
        req = rp.algo_request({"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL",
                               "type": "TRAILING_STOP_MARKET", "quantity": "0.010", "callbackRate": "1.5",
                               "activatePrice": "61000", "reduceOnly": "true"}, RULES_BY)
        assert (req.qty, req.callback_rate, req.activate_price, req.reduce_only, req.working_type) == (
            D("0.010"), D("1.5"), D("61000"), True, "CONTRACT_PRICE")

    @pytest.mark.parametrize("change, code, msg", [
        ({"algoType": None}, -1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed."),
        ({"algoType": "VP"}, -1130, "Data sent for parameter 'algoType' is not valid."),
        ({"symbol": "ETHUSDT"}, -1121, "Invalid symbol."),
        ({"side": None}, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."),
        ({"type": "MARKET"}, -1116, "Invalid orderType."),
        ({"type": None}, -1102, "Mandatory parameter 'type' was not sent, was empty/null, or malformed."),
        ({"positionSide": "LONG"}, -4061, "Order's position side does not match user's setting."),
        ({"type": "STOP", "price": "58000"}, -4136,
         "Target strategy invalid for orderType STOP,closePosition true"),
        ({"quantity": "0.010"}, -4137, "Quantity must be zero with closePosition equals true"),
        ({"reduceOnly": "true"}, -1106, "Parameter 'reduceOnly' sent when not required."),
        ({"closePosition": None}, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."),
        ({"closePosition": "yes"}, -1130, "Data sent for parameter 'closePosition' is not valid."),
        ({"triggerPrice": None}, -1102,
         "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or malformed."),
        ({"triggerPrice": "59,000"}, -1100, "Illegal characters found in parameter 'triggerPrice'; legal range "
                                            "is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'."),
        ({"price": "58000"}, -1106, "Parameter 'price' sent when not required."),
        ({"callbackRate": "1"}, -1106, "Parameter 'callbackRate' sent when not required."),
        ({"workingType": "LAST_PRICE"}, -4031, "Invalid parameter working type"),
        ({"timeInForce": "GTD"}, -1115, "Invalid timeInForce."),
        ({"priceMatch": "OPPONENT"}, -1130, "Data sent for parameter 'priceMatch' is not valid."),
        ({"selfTradePreventionMode": "X"}, -1130, "Data sent for parameter 'selfTradePreventionMode' is not valid."),
        ({"clientAlgoId": "x" * 37}, -1100, "Illegal characters found in parameter 'clientAlgoId'; "
                                            "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'."),
        ({"newOrderRespType": "FULL"}, -1130, "Data sent for parameter 'newOrderRespType' is not valid."),
    ])
    def test_bad_algo_parameters_get_binances_code(self, change, code, msg):
        params = {k: v for k, v in {**BASE, **change}.items() if v is not None}
        with pytest.raises(RestError) as e:
            rp.algo_request(params, RULES_BY)
        assert (e.value.code, e.value.msg) == (code, msg)

    @pytest.mark.parametrize("rate, ok", [("0.1", True), ("20", True), ("0.05", False), ("20.1", False),
                                          ("1.25", False)])
    def test_callback_rate_is_0_1_to_20_in_steps_of_0_1(self, rate, ok):
        params = {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "TRAILING_STOP_MARKET",
                  "quantity": "0.010", "callbackRate": rate}
        if ok:
            assert rp.algo_request(params, RULES_BY).callback_rate == D(rate)
        else:
            with pytest.raises(RestError) as e:
                rp.algo_request(params, RULES_BY)
            assert (e.value.code, e.value.msg) == (-1130, "Data sent for parameter 'callbackRate' is not valid.")

    def test_algo_lookup_needs_an_algo_id_or_a_client_algo_id(self):
        with pytest.raises(RestError) as e:
            rp.algo_ref({})
        assert (e.value.code, e.value.msg) == (
            -1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!")
        assert rp.algo_ref({"algoId": "17"}) == (17, None)


# ---------------------------------------------------------------------------- REST bodies
# key lists of Binance's own connector (binance-connector-python, USD-M models:
# new_algo_order_response, query_algo_order_response, current_all_algo_open_orders_response_inner)
NEW_KEYS = ["algoId", "clientAlgoId", "algoType", "orderType", "symbol", "side", "positionSide", "timeInForce",
            "quantity", "algoStatus", "triggerPrice", "price", "icebergQuantity", "selfTradePreventionMode",
            "workingType", "priceMatch", "closePosition", "priceProtect", "reduceOnly", "activatePrice",
            "callbackRate", "createTime", "updateTime", "triggerTime", "goodTillDate"]
QUERY_KEYS = ["algoId", "clientAlgoId", "algoType", "orderType", "symbol", "side", "positionSide", "timeInForce",
              "quantity", "algoStatus", "actualOrderId", "actualPrice", "actualType", "actualQty", "triggerPrice",
              "price", "icebergQuantity", "tpOrderType", "selfTradePreventionMode", "workingType", "priceMatch",
              "closePosition", "priceProtect", "reduceOnly", "createTime", "updateTime", "triggerTime",
              "goodTillDate"]
LIST_KEYS = ["algoId", "clientAlgoId", "algoType", "orderType", "symbol", "side", "positionSide", "timeInForce",
             "quantity", "algoStatus", "actualOrderId", "actualPrice", "triggerPrice", "price", "icebergQuantity",
             "tpTriggerPrice", "tpPrice", "slTriggerPrice", "slPrice", "tpOrderType", "selfTradePreventionMode",
             "workingType", "priceMatch", "closePosition", "priceProtect", "reduceOnly", "createTime", "updateTime",
             "triggerTime", "goodTillDate"]


class TestAlgoBodies:
    def test_new_algo_order_answer(self, long10):
        _, a = put(long10, stop(client_algo_id="sl-1", price_protect=True))
        body = pr.algo_body(a, RULES, None, "new")
        assert list(body) == NEW_KEYS
        assert body == {
            "algoId": A0, "clientAlgoId": "sl-1", "algoType": "CONDITIONAL", "orderType": "STOP_MARKET",
            "symbol": "BTCUSDT", "side": "SELL", "positionSide": "BOTH", "timeInForce": "GTE_GTC",
            "quantity": "0.000", "algoStatus": "NEW", "triggerPrice": "59000.00", "price": "0.00",
            "icebergQuantity": None, "selfTradePreventionMode": "NONE", "workingType": "MARK_PRICE",
            "priceMatch": "NONE", "closePosition": True, "priceProtect": True, "reduceOnly": True,
            "activatePrice": "", "callbackRate": "", "createTime": T0, "updateTime": T0, "triggerTime": 0,
            "goodTillDate": 0}

    def test_trailing_answer_shows_activation_and_callback(self, long10):
        _, a = put(long10, AlgoRequest(symbol="BTCUSDT", side="SELL", type="TRAILING_STOP_MARKET",
                                       qty=D("0.010"), reduce_only=True, callback_rate=D("1.5"),
                                       activate_price=D("60500.00")))
        body = pr.algo_body(a, RULES, None, "new")
        assert (body["activatePrice"], body["callbackRate"], body["triggerPrice"], body["quantity"]) == (
            "60500.00", "1.5", "0.00", "0.010")

    def test_query_after_the_trigger_points_at_the_order(self, long10):
        acc, _ = put(long10, stop(client_algo_id="sl-1"))
        acc = step(acc, at("58900.00"))
        a = acc.algos[A0]
        body = pr.algo_body(a, RULES, acc.orders[a.actual_order_id], "query")
        assert list(body) == QUERY_KEYS
        assert {k: body[k] for k in ("algoStatus", "actualOrderId", "actualPrice", "actualType", "actualQty",
                                     "triggerTime", "updateTime")} == {
            "algoStatus": "FINISHED", "actualOrderId": "4100000002", "actualPrice": "58900.00000",
            "actualType": "MARKET", "actualQty": "0.010", "triggerTime": T0 + 1000, "updateTime": T0 + 1000}

    def test_open_and_all_algo_lists(self, long10):
        acc, _ = put(long10, stop(client_algo_id="sl-1"))
        acc, _ = put(acc, stop(type="TAKE_PROFIT_MARKET", trigger="62000.00", client_algo_id="tp-1"))
        acc, _ = algo.cancel(acc, None, "tp-1", T0 + 5)
        [one] = pr.open_algo_orders(acc, {}, RULES_BY)
        assert list(one) == LIST_KEYS
        assert (one["clientAlgoId"], one["actualOrderId"], one["tpTriggerPrice"]) == ("sl-1", "", "0.00")
        assert [b["algoStatus"] for b in pr.all_algo_orders(acc, {"symbol": "BTCUSDT"}, RULES_BY)] == [NEW, CANCELED]
        assert [b["algoId"] for b in pr.all_algo_orders(acc, {"symbol": "BTCUSDT", "algoId": str(A0 + 1)},
                                                        RULES_BY)] == [A0 + 1]
        assert pr.open_algo_orders(acc, {"symbol": "BTCUSDT", "algoId": str(A0 + 1)}, RULES_BY) == []

    def test_triggered_order_body_points_back_at_the_algo_order(self, long10):
        acc, _ = put(long10, stop(client_algo_id="sl-1"))
        acc = step(acc, at("58900.00"))
        body = pr.order_body(acc.orders[4100000002], RULES, query=True)
        assert {k: body[k] for k in ("clientOrderId", "type", "origType", "stopPrice", "closePosition",
                                     "reduceOnly", "workingType", "status")} == {
            "clientOrderId": "sl-1", "type": "MARKET", "origType": "STOP_MARKET", "stopPrice": "59000.00",
            "closePosition": True, "reduceOnly": True, "workingType": "MARK_PRICE", "status": "FILLED"}


def test_a_limit_order_placed_by_hand_is_not_mistaken_for_an_algo_one():
    """Orders placed on /fapi/v1/order keep origType = type and stopPrice 0."""
    p = go(new_account(), lim("SELL", "0.010", "61000.00"))
    body = pr.order_body(p.order, RULES)
    assert (body["origType"], body["stopPrice"], body["closePosition"]) == ("LIMIT", "0.00", False)
