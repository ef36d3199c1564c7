"""A broker's counters as the heartbeat reads them (``venue.brokers.counters_of``): the
order-history pages the REST broker refused are counted whether it trades alone or under the
WebSocket broker, and the name is there, zero, for every broker from the start."""

from __future__ import annotations

import pytest
from tests.unit.venue.binance.ccxt_fakes import FakeExchange, raw_order

from common.errors import DecodeError
from venue import brokers, ratelimit
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
from venue.binance.ws_api import WsApiClient, WsApiConfig
from venue.binance.ws_broker import WsBroker

NOW_MS = 1_700_000_000_000


def rest_broker() -> tuple[CcxtBroker, FakeExchange]:
    ex = FakeExchange()
    return CcxtBroker(CcxtConfig(), exchange=ex, clock_ms=lambda: NOW_MS, governor=ratelimit.Governor()), ex


def refuse_one_page(b: CcxtBroker, ex: FakeExchange) -> None:
    ex.script("fapiPrivateGetAllOrders", [raw_order(time=NOW_MS, status="WEIRD")])
    with pytest.raises(DecodeError):
        b.all_orders("BTCUSDT", since_ms=NOW_MS, until_ms=NOW_MS + 1)


def test_every_broker_reports_all_orders_rejected_from_the_start():
    """No broker yet (the reconciler before its first run), or a REST broker that read nothing:
    the counter is there at zero."""
    assert brokers.counters_of(None) == {"all_orders_rejected": 0}
    b, _ = rest_broker()
    assert brokers.counters_of(b) == {"all_orders_rejected": 0, "markets_unseeded": 0}


def test_a_refused_history_page_is_counted_alone_and_under_the_websocket_broker():
    """The REST broker counts the page it refused; under a WsBroker (the default transport)
    the same count comes up beside the WebSocket broker's own counters."""
    b, ex = rest_broker()
    refuse_one_page(b, ex)
    assert brokers.counters_of(b) == {"all_orders_rejected": 1, "markets_unseeded": 0}
    client = WsApiClient(WsApiConfig(url="ws://127.0.0.1:9/ws-fapi/v1"), api_key="k", api_secret="s",
                         governor=ratelimit.Governor())
    ws = WsBroker(b, client)
    refuse_one_page(b, ex)
    assert brokers.counters_of(ws) == {"all_orders_rejected": 2, "markets_unseeded": 0, "ws_calls": 0,
                                       "rest_fallbacks": 0, "ambiguous_resolved": 0, "ambiguous_unresolved": 0}
