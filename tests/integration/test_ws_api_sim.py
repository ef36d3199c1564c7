"""Orders over the WebSocket API against a real ``exchange_sim`` on 127.0.0.1: ``WsBroker`` on a
real ``WsApiClient`` (websockets) and a real ``CcxtBroker`` as the REST side; the sim's
``/ws-fapi/v1`` endpoint, its matching engine and its faults (``/_sim/fault``)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import orjson
import pytest
from websockets.sync.client import connect

from common.errors import AmbiguousError
from tests.conftest import USDM_DATA
from tests.integration.test_ccxt_broker_sim import QTY, SYMBOL, Sim, cap, market, sim  # noqa: F401 - fixtures
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
from venue.binance.ws_api import WsApiClient, WsApiConfig, signed_request, url_for
from venue.binance.ws_broker import WsBroker
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from venue.port import AlgoSpec, OrderSpec
from venue.ratelimit import Governor

pytestmark = pytest.mark.integration

DOCS = json.loads((USDM_DATA / "binance_docs_ws_api_examples.json").read_text())["examples"]
TIMEOUT_MS = 1_500


def make_broker(sim: Sim, timeout_ms: int = TIMEOUT_MS) -> WsBroker:
    governor = Governor()
    rest = CcxtBroker(CcxtConfig(base_url=sim.base, timeout_ms=timeout_ms), governor=governor,
                      api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET)
    client = WsApiClient(WsApiConfig(url=url_for("demo", testnet=False, rest_url=sim.base), timeout_ms=timeout_ms,
                                     backoff_initial_s=0.1, backoff_max_s=0.3),
                         api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, governor=governor)
    b = WsBroker(rest, client, connect_wait_s=10.0)
    b.start([SYMBOL])
    assert client.connected
    return b


@pytest.fixture
def broker(sim):
    b = make_broker(sim)
    yield b
    b.close()


def ws_stats(sim: Sim) -> dict:
    return sim.server.stats()["ws_api"]


def orders_with(sim: Sim, cid: str) -> list[dict]:
    return [o for o in sim.records("orders") if o["clientOrderId"] == cid]


def wait_for(pred, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_orders_queries_cancels_and_an_algo_order_go_over_the_websocket_api(broker, sim):
    """A MARKET entry fills (with its fills), a LIMIT rests and is cancelled, a protective
    STOP_MARKET is placed and cancelled: all over /ws-fapi/v1, none by REST."""
    entry = broker.submit(market("ws-entry-1", "BUY"))
    assert (entry.order.status, entry.order.executed_qty, sum(f.qty for f in entry.fills)) == ("FILLED", QTY, QTY)
    found = broker.query(SYMBOL, "ws-entry-1")
    assert (found.exchange_order_id, found.status) == (entry.order.exchange_order_id, "FILLED")

    bid, _ = sim.book()
    price = (bid * Decimal("0.97")).quantize(Decimal("0.1"))
    rest_ = broker.submit(OrderSpec(client_order_id="ws-rest-1", symbol=SYMBOL, side="BUY", order_type="LIMIT",
                                    qty=QTY, price=price))
    assert (rest_.order.status, rest_.order.price, rest_.fills) == ("NEW", price, ())
    assert broker.cancel(SYMBOL, "ws-rest-1").status == "CANCELED"
    assert broker.query(SYMBOL, "ws-rest-1").status == "CANCELED"
    assert broker.query(SYMBOL, "ws-never-sent") is None

    trigger = (bid * Decimal("0.90")).quantize(Decimal("0.1"))
    stop = broker.place_algo(AlgoSpec(client_algo_id="ws-stop-1", symbol=SYMBOL, side="SELL",
                                      order_type="STOP_MARKET", trigger_price=trigger))
    assert (stop.status, stop.close_position, stop.trigger_price) == ("NEW", True, trigger)
    gone = broker.cancel_algo(SYMBOL, "ws-stop-1")
    assert (gone.status, gone.algo_id) == ("CANCELED", stop.algo_id)
    assert broker.query_algo(SYMBOL, "ws-stop-1").status == "CANCELED"

    assert ws_stats(sim)["by_method"] == {"order.place": 2, "order.status": 3, "order.cancel": 1,
                                          "algoOrder.place": 1, "algoOrder.cancel": 1}
    assert broker.counters["rest_fallbacks"] == 0
    assert [o["clientOrderId"] for o in sim.records("orders")] == ["ws-entry-1", "ws-rest-1"]


def raw_call(sim: Sim, frames: list[bytes | str]) -> list[dict]:
    """Send frames on a fresh connection, one answer each."""
    url = url_for("demo", testnet=False, rest_url=sim.base)
    out = []
    with connect(url, proxy=None) as ws:
        for f in frames:
            ws.send(f if isinstance(f, str) else f.decode())
            out.append(orjson.loads(ws.recv(timeout=10)))
    return out


def test_answers_have_binances_envelope_and_refusals_binances_codes(sim):
    """order.place's answer has the documented keys; bad JSON, an unknown method, another key,
    a bad signature and an old timestamp get the answers REST gives (in the envelope)."""
    now = int(time.time() * 1000)
    ok = signed_request("p1", "order.place", {"symbol": SYMBOL, "side": "BUY", "type": "MARKET",
                                              "quantity": format(QTY, "f"), "newClientOrderId": "ws-raw-1"},
                        api_key=DEMO_API_KEY, secret=DEMO_API_SECRET, timestamp_ms=now, recv_window_ms=5000)
    other_key = signed_request("p2", "order.status", {"symbol": SYMBOL, "origClientOrderId": "ws-raw-1"},
                               api_key="someone-else", secret=DEMO_API_SECRET, timestamp_ms=now, recv_window_ms=5000)
    bad_sig = signed_request("p3", "order.status", {"symbol": SYMBOL, "origClientOrderId": "ws-raw-1"},
                             api_key=DEMO_API_KEY, secret="wrong", timestamp_ms=now, recv_window_ms=5000)
    old = signed_request("p4", "order.status", {"symbol": SYMBOL, "origClientOrderId": "ws-raw-1"},
                         api_key=DEMO_API_KEY, secret=DEMO_API_SECRET, timestamp_ms=now - 60_000, recv_window_ms=5000)
    answers = raw_call(sim, [ok, "{not json", b'{"id":"p5","method":"order.modify"}', other_key, bad_sig, old])
    placed = answers[0]
    example = DOCS["order.place"]["response"]
    assert list(placed) == list(example)
    assert list(placed["result"]) == list(example["result"])
    assert (placed["id"], placed["status"], placed["result"]["clientOrderId"]) == ("p1", 200, "ws-raw-1")
    assert [(r["rateLimitType"], r["interval"], r["intervalNum"], r["limit"]) for r in placed["rateLimits"]] == [
        (r["rateLimitType"], r["interval"], r["intervalNum"], r["limit"]) for r in example["rateLimits"]]
    assert [(a["id"], a["status"], a["error"]["code"], a["error"]["msg"]) for a in answers[1:]] == [
        (None, 400, -1135, "Invalid JSON request"),
        ("p5", 400, -1020, "This operation is not supported."),
        ("p2", 401, -2015, "Invalid API-key, IP, or permissions for action."),
        ("p3", 400, -1022, "Signature for this request is not valid."),
        ("p4", 400, -1021, "Timestamp for this request is outside of the recvWindow.")]
    assert "rateLimits" not in answers[1] and all("rateLimits" in a for a in answers[2:])
    assert sim.server.stats()["trading"]["signed_rejected"] == 3


def test_a_connection_dropped_after_the_order_ran_is_found_by_query_and_not_sent_twice(broker, sim):
    """The sim fills the order, then cuts the connection without answering: the broker's
    query by client id finds it FILLED; the exchange holds exactly one such order."""
    sim.fault(action="ws_api_drop", count=1, when="executed")
    res = broker.submit(market("ws-drop-1", "BUY"))
    assert (res.order.status, res.order.executed_qty, sum(f.qty for f in res.fills)) == ("FILLED", QTY, QTY)
    assert len(orders_with(sim, "ws-drop-1")) == 1
    assert (broker.counters["ambiguous_resolved"], ws_stats(sim)["dropped"]) == (1, 1)
    assert wait_for(lambda: broker.client.connected)  # it reconnects on its own
    assert broker.submit(market("ws-after-drop", "SELL", reduce_only=True)).order.status == "FILLED"
    assert ws_stats(sim)["by_method"]["order.place"] == 2


def test_a_connection_dropped_before_the_order_ran_stays_unknown_and_nothing_is_resent(broker, sim):
    """Cut before running: the query finds nothing, which proves nothing yet, so the broker
    reports the outcome unknown and sends nothing more; the exchange has no such order."""
    sim.fault(action="ws_api_drop", count=1, when="received")
    with pytest.raises(AmbiguousError):
        broker.submit(market("ws-drop-2", "BUY"))
    assert broker.counters["ambiguous_unresolved"] == 1
    assert wait_for(lambda: broker.client.connected)
    assert broker.query(SYMBOL, "ws-drop-2") is None
    assert orders_with(sim, "ws-drop-2") == []
    assert ws_stats(sim)["by_method"]["order.place"] == 1  # the one that was cut, no second


def test_while_the_websocket_api_is_refused_orders_go_by_rest_and_come_back_after(broker, sim):
    """The endpoint refuses connections: the order goes by REST with the same client id; once
    it accepts again, the client reconnects and orders use the socket again."""
    sim.fault(action="ws_api_refuse", seconds=60)
    assert wait_for(lambda: not broker.client.connected)
    res = broker.submit(market("ws-fallback-1", "BUY"))
    assert (res.order.status, res.order.client_order_id) == ("FILLED", "ws-fallback-1")
    assert broker.counters["rest_fallbacks"] == 1
    assert "order.place" not in ws_stats(sim)["by_method"]
    assert len(orders_with(sim, "ws-fallback-1")) == 1
    sim.fault(action="clear")
    assert wait_for(lambda: broker.client.connected)
    broker.submit(market("ws-back-1", "SELL", reduce_only=True))
    assert (broker.counters["rest_fallbacks"], ws_stats(sim)["by_method"]["order.place"]) == (1, 1)


def test_a_late_answer_is_unknown_then_found_exactly_once(broker, sim):
    """order_timeout: the order runs at once, its answer comes after our timeout: unknown, then
    found by the query on the same connection; one order at the exchange."""
    sim.fault(action="order_timeout", count=1, seconds=TIMEOUT_MS / 1000 + 1.5)
    res = broker.submit(market("ws-late-1", "BUY"))
    assert res.order.status == "FILLED"
    assert broker.counters["ambiguous_resolved"] == 1
    assert len(orders_with(sim, "ws-late-1")) == 1
    assert broker.client.counters["timeouts"] == 1


def test_a_prepared_order_is_written_as_prepared_accepted_once_and_a_stale_one_is_signed_afresh(broker, sim):
    """``prepare_order`` signs and frames ahead (the exit lane's way); ``send_order(prepared=)``
    writes that frame raw on websockets' connection: the sim verifies its signature and fills
    it, once. One older than ``PREPARED_MAX_AGE_MS`` is signed again at the send (the sim would
    still take the old one: it is the client that will not send a stale timestamp)."""
    from venue.binance import ws_api

    spec = market("ws-prep-1", "BUY")
    prep = broker.prepare_order(spec)
    got = broker.finish_order(spec, broker.send_order(spec, rate_wait_s=0.0, prepared=prep))
    assert (got.order.status, got.order.executed_qty) == ("FILLED", QTY)
    assert broker.client.counters["prepared_sent"] == 1 and len(orders_with(sim, "ws-prep-1")) == 1

    spec2 = market("ws-prep-2", "SELL")
    stale = broker.prepare_order(spec2)
    stale = ws_api.Prepared(rid=stale.rid, method=stale.method, params=stale.params,
                            prepared_ms=stale.prepared_ms - ws_api.PREPARED_MAX_AGE_MS - 1, text=stale.text,
                            wire=stale.wire)
    got2 = broker.finish_order(spec2, broker.send_order(spec2, rate_wait_s=0.0, prepared=stale))
    assert got2.order.status == "FILLED" and len(orders_with(sim, "ws-prep-2")) == 1
    assert (broker.client.counters["prepared_sent"], broker.client.counters["prepared_stale"]) == (1, 1)
    assert ws_stats(sim)["by_method"]["order.place"] == 2 and ws_stats(sim)["errors"] == 0
