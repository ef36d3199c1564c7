"""``WsBroker``: orders over the WebSocket API, REST while it is down, and no order twice: an
unknown outcome is queried and never re-sent. The client and the REST broker are stubs."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from common.errors import AmbiguousError, DefinitiveError, TransientError
from venue.binance.ws_api import WsUnavailable
from venue.binance.ws_broker import WsBroker
from venue.port import AccountSetup, AlgoSpec, ExchangeAlgoOrder, ExchangeFill, ExchangeOrder, OrderSpec

SPEC = OrderSpec(client_order_id="ae-s1-0", symbol="BTCUSDT", side="BUY", order_type="MARKET", qty=D("0.010"))


def raw_order(status: str = "FILLED", executed: str = "0.010", cid: str = "ae-s1-0") -> dict[str, Any]:
    return {"orderId": 4100000001, "symbol": "BTCUSDT", "status": status, "clientOrderId": cid, "price": "0",
            "avgPrice": "60000.10000", "origQty": "0.010", "executedQty": executed, "cumQty": executed,
            "cumQuote": "600.00100", "timeInForce": "GTC", "type": "MARKET", "reduceOnly": False,
            "closePosition": False, "side": "BUY", "positionSide": "BOTH", "stopPrice": "0.00",
            "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET", "priceMatch": "NONE",
            "selfTradePreventionMode": "NONE", "goodTillDate": 0, "updateTime": 1_800_000_000_000}


def order(status: str = "FILLED", executed: str = "0.010") -> ExchangeOrder:
    return ExchangeOrder(client_order_id="ae-s1-0", exchange_order_id="4100000001", symbol="BTCUSDT", side="BUY",
                         order_type="MARKET", status=status, qty=D("0.010"), executed_qty=D(executed))


FILL = ExchangeFill(trade_id="1", client_order_id="", exchange_order_id="4100000001", symbol="BTCUSDT", side="BUY",
                    qty=D("0.010"), price=D("60000.10"))


class StubClient:
    """Plays a script of outcomes per method: a dict (the result) or an exception."""

    def __init__(self, **script: list[Any]) -> None:
        self.script = {k.replace("_", "."): list(v) for k, v in script.items()}
        self.calls: list[tuple[str, dict]] = []
        self.time_offset_ms = 0
        self.started = False
        self.config = type("C", (), {"url": "ws://stub/ws-fapi/v1"})()

    def call(self, method: str, params: dict, **kw: Any) -> Any:
        self.calls.append((method, dict(params)))
        out = self.script[method].pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    def start(self) -> None:
        self.started = True

    def wait_connected(self, timeout_s: float) -> bool:
        return True

    def clock_ms(self) -> int:
        return 1_000

    def close(self) -> None: ...
    def stats(self) -> dict: return {}


class StubRest:
    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[tuple] = []

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any, **kw: Any) -> Any:
            self.calls.append((name, args))
            out = self.answers[name]
            if isinstance(out, list):
                out = out.pop(0)
            if isinstance(out, BaseException):
                raise out
            return out
        return method


def lost() -> AmbiguousError:
    return AmbiguousError("ws-api order.place: connection lost before the answer", reason="ws_lost")


class TestSubmit:
    def test_an_order_goes_over_the_socket_and_its_fills_by_rest(self):
        """order.place with our client id and RESULT; a filled order's trades fetched once."""
        client = StubClient(order_place=[raw_order()])
        rest = StubRest(fills=[[FILL]])
        res = WsBroker(rest, client).submit(SPEC)
        assert (res.order.status, res.order.executed_qty, res.fills) == ("FILLED", D("0.010"), (FILL,))
        assert client.calls == [("order.place", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                 "quantity": "0.010", "newClientOrderId": "ae-s1-0",
                                                 "newOrderRespType": "RESULT"})]
        assert [c[0] for c in rest.calls] == ["fills"]

    def test_with_the_user_stream_telling_fills_no_rest_read_follows_the_answer(self):
        """``fills_after_submit`` off (the brain's execution turns it off when it has the user
        data stream): the answer alone, no ``fills`` request."""
        client = StubClient(order_place=[raw_order()])
        rest = StubRest(fills=[[FILL]])
        b = WsBroker(rest, client)
        b.fills_after_submit = False
        res = b.submit(SPEC)
        assert (res.order.status, res.order.executed_qty, res.fills) == ("FILLED", D("0.010"), ())
        assert rest.calls == []

    def test_a_limit_exit_carries_price_time_in_force_and_reduce_only(self):
        spec = OrderSpec(client_order_id="ae-x", symbol="BTCUSDT", side="SELL", order_type="LIMIT", qty=D("0.010"),
                         price=D("61000.0"), reduce_only=True)
        client = StubClient(order_place=[raw_order(status="NEW", executed="0.000", cid="ae-x")])
        WsBroker(StubRest(), client).submit(spec)
        assert client.calls[0][1] == {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.010",
                                      "newClientOrderId": "ae-x", "newOrderRespType": "RESULT", "price": "61000.0",
                                      "timeInForce": "GTC", "reduceOnly": "true"}

    def test_with_the_socket_down_the_same_order_goes_by_rest(self):
        """Nothing was sent: REST gets the very same spec (same client id)."""
        client = StubClient(order_place=[WsUnavailable("down")])
        rest = StubRest(submit="rest-result")
        b = WsBroker(rest, client)
        assert b.submit(SPEC) == "rest-result"
        assert rest.calls == [("submit", (SPEC,))]
        assert b.counters["rest_fallbacks"] == 1

    def test_an_unknown_outcome_found_by_query_is_that_order_and_nothing_is_resent(self):
        """Lost mid-request, the socket down: REST query by client id finds it FILLED."""
        client = StubClient(order_place=[lost()], order_status=[WsUnavailable("down")])
        rest = StubRest(query=order(), fills=[[FILL]])
        b = WsBroker(rest, client)
        res = b.submit(SPEC)
        assert (res.order.status, res.fills) == ("FILLED", (FILL,))
        assert [c[0] for c in client.calls] == ["order.place", "order.status"]
        assert [c[0] for c in rest.calls] == ["query", "fills"]  # no submit anywhere
        assert b.counters["ambiguous_resolved"] == 1

    def test_an_unknown_outcome_not_found_stays_unknown_and_nothing_is_resent(self):
        """'Not found' right after a loss proves nothing: AmbiguousError again, no second send."""
        client = StubClient(order_place=[lost()], order_status=[
            DefinitiveError("no such order", reason="unknown_order", code=-2013)])
        rest = StubRest()
        b = WsBroker(rest, client)
        with pytest.raises(AmbiguousError):
            b.submit(SPEC)
        assert [c[0] for c in client.calls] == ["order.place", "order.status"]
        assert rest.calls == []
        assert b.counters["ambiguous_unresolved"] == 1

    def test_an_unreadable_accepted_answer_is_unknown_and_resolved_by_query(self):
        """Status 200 but a body we cannot read: the order may exist; queried, found, returned."""
        client = StubClient(order_place=[{"orderId": 1}], order_status=[raw_order(status="NEW", executed="0.000")])
        b = WsBroker(StubRest(), client)
        assert b.submit(SPEC).order.status == "NEW"
        assert [c[0] for c in client.calls] == ["order.place", "order.status"]

    def test_a_refusal_is_not_tried_again_by_rest(self):
        """The exchange answered no: that answer stands."""
        client = StubClient(order_place=[DefinitiveError("margin", reason="insufficient_margin", code=-2019)])
        rest = StubRest()
        with pytest.raises(DefinitiveError):
            WsBroker(rest, client).submit(SPEC)
        assert rest.calls == []

    def test_a_timestamp_refusal_resyncs_the_clock_offset(self):
        """-1021: the offset is measured again from the server's time, then the error goes up."""
        client = StubClient(order_place=[TransientError("ts", reason="timestamp", code=-1021)])
        rest = StubRest(server_time_ms=1_700)
        b = WsBroker(rest, client)
        with pytest.raises(TransientError):
            b.submit(SPEC)
        assert client.time_offset_ms == 700


class TestCancelAndQuery:
    def test_cancel_by_client_id_over_the_socket(self):
        client = StubClient(order_cancel=[raw_order(status="CANCELED", executed="0.000")])
        out = WsBroker(StubRest(), client).cancel("BTCUSDT", "ae-s1-0")
        assert out.status == "CANCELED"
        assert client.calls == [("order.cancel", {"symbol": "BTCUSDT", "origClientOrderId": "ae-s1-0"})]

    def test_an_unknown_cancel_outcome_is_resolved_only_by_a_final_status(self):
        """Found CANCELED: that; found still NEW: the AmbiguousError."""
        c1 = StubClient(order_cancel=[lost()], order_status=[raw_order(status="CANCELED", executed="0.000")])
        assert WsBroker(StubRest(), c1).cancel("BTCUSDT", "ae-s1-0").status == "CANCELED"
        c2 = StubClient(order_cancel=[lost()], order_status=[raw_order(status="NEW", executed="0.000")])
        with pytest.raises(AmbiguousError):
            WsBroker(StubRest(), c2).cancel("BTCUSDT", "ae-s1-0")

    def test_query_unknown_order_is_none_and_a_lost_read_is_asked_by_rest(self):
        c1 = StubClient(order_status=[DefinitiveError("x", reason="unknown_order", code=-2013)])
        assert WsBroker(StubRest(), c1).query("BTCUSDT", "ae-s1-0") is None
        c2 = StubClient(order_status=[TransientError("lost", reason="ws_lost")])
        rest = StubRest(query=order())
        assert WsBroker(rest, c2).query("BTCUSDT", "ae-s1-0") == order()
        assert rest.calls == [("query", ("BTCUSDT", "ae-s1-0"))]

    def test_a_rate_limited_read_is_not_retried_by_rest(self):
        """A 429 on the socket is the shared budget's: asking REST now would only spend more."""
        c = StubClient(order_status=[TransientError("429", reason="rate_limit", code=-1003)])
        rest = StubRest()
        with pytest.raises(TransientError):
            WsBroker(rest, c).query("BTCUSDT", "ae-s1-0")
        assert rest.calls == []


ALGO = AlgoSpec(client_algo_id="ae-p1", symbol="BTCUSDT", side="SELL", order_type="STOP_MARKET",
                trigger_price=D("59000.0"))
RAW_ALGO = {"algoId": 3000000000000001, "clientAlgoId": "ae-p1", "algoType": "CONDITIONAL",
            "orderType": "STOP_MARKET", "symbol": "BTCUSDT", "side": "SELL", "positionSide": "BOTH",
            "timeInForce": "GTE_GTC", "quantity": "0.000", "algoStatus": "NEW", "triggerPrice": "59000.00",
            "price": "0.00", "closePosition": True, "createTime": 1, "updateTime": 1}


class TestAlgo:
    def test_protection_goes_over_the_socket(self):
        client = StubClient(algoOrder_place=[RAW_ALGO])
        out = WsBroker(StubRest(), client).place_algo(ALGO)
        assert (out.algo_id, out.status, out.close_position) == ("3000000000000001", "NEW", True)
        assert client.calls[0] == ("algoOrder.place", {
            "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
            "clientAlgoId": "ae-p1", "workingType": "MARK_PRICE", "priceProtect": "TRUE", "triggerPrice": "59000.0",
            "closePosition": "true"})

    def test_an_unknown_protection_outcome_is_queried_by_rest(self):
        found = ExchangeAlgoOrder(client_algo_id="ae-p1", algo_id="3", symbol="BTCUSDT", side="SELL",
                                  order_type="STOP_MARKET", status="NEW")
        client = StubClient(algoOrder_place=[lost()])
        rest = StubRest(query_algo=found)
        assert WsBroker(rest, client).place_algo(ALGO) == found
        assert rest.calls == [("query_algo", ("BTCUSDT", "ae-p1"))]

    def test_cancel_answer_of_ids_and_code_is_a_canceled_order(self):
        """Binance answers algoOrder.cancel with the ids and code "200" only."""
        client = StubClient(algoOrder_cancel=[{"algoId": 3, "clientAlgoId": "ae-p1", "code": "200", "msg": "success"}])
        out = WsBroker(StubRest(), client).cancel_algo("BTCUSDT", "ae-p1")
        assert (out.status, out.algo_id, out.client_algo_id) == ("CANCELED", "3", "ae-p1")
        assert client.calls == [("algoOrder.cancel", {"clientAlgoId": "ae-p1"})]


def test_start_sets_up_by_rest_then_opens_the_socket_with_the_measured_offset():
    client = StubClient()
    rest = StubRest(start=AccountSetup(server_time_offset_ms=-42))
    setup = WsBroker(rest, client).start(["BTCUSDT"])
    assert (setup.server_time_offset_ms, client.time_offset_ms, client.started) == (-42, -42, True)


@pytest.mark.parametrize("env,kind,url", [
    ({}, "WsBroker", "ws://127.0.0.1:8765/ws-fapi/v1"),
    ({"AEGIS_TRADING__ORDER_TRANSPORT": "rest"}, "CcxtBroker", None),
    ({"AEGIS_MODE": "live", "AEGIS_TRADING__LIVE_CONFIRM": "1", "AEGIS_TRADING__TESTNET": "1"}, "WsBroker",
     "wss://testnet.binancefuture.com/ws-fapi/v1")])
def test_the_order_transport_chooses_the_broker(monkeypatch, env, kind, url):
    """Default "ws": a WsBroker on the exchange's /ws-fapi/v1 (the sim's in demo, Binance's
    testnet with trading.testnet); "rest": the ccxt broker alone."""
    from common import config as config_mod
    from venue import brokers

    monkeypatch.setenv("BINANCE_API_KEY", "k-unit")
    monkeypatch.setenv("BINANCE_API_SECRET", "s-unit")
    cfg = config_mod.load(None, {"AEGIS_SIM__PORT": "8765", **env})
    b = brokers.make_broker(cfg, None)
    try:
        assert type(b).__name__ == kind
        if url is not None:
            assert b.client.config.url == url
            assert not b.client.connected  # nothing opens before start()
    finally:
        b.close()


def test_order_params_carry_a_limit_orders_time_in_force():
    """order.place / POST /fapi/v1/order parameters: LIMIT sends price and the spec's
    timeInForce; MARKET sends neither."""
    from decimal import Decimal

    from venue.binance.bodies import order_params
    from venue.port import OrderSpec
    ioc = OrderSpec(client_order_id="ae-s1-0", symbol="BTCUSDT", side="BUY", order_type="LIMIT",
                    qty=Decimal("0.010"), price=Decimal("60000.1"), time_in_force="IOC")
    assert order_params(ioc) == {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.010",
                                 "newClientOrderId": "ae-s1-0", "newOrderRespType": "RESULT", "price": "60000.1",
                                 "timeInForce": "IOC"}
    mkt = OrderSpec(client_order_id="ae-s1-0", symbol="BTCUSDT", side="BUY", order_type="MARKET", qty=Decimal("0.010"))
    assert "timeInForce" not in order_params(mkt) and "price" not in order_params(mkt)
