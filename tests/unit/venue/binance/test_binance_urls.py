"""Binance endpoints by mode, and which routed WebSocket path carries which stream."""

from __future__ import annotations

import pytest

from venue import binance
from common import config as config_mod
from common.errors import ConfigError


@pytest.mark.parametrize("stream,route", [
    ("btcusdt@bookTicker", "public"), ("btcusdt@depth", "public"), ("btcusdt@depth20@100ms", "public"),
    ("btcusdt@depth@100ms", "public"), ("btcusdt@trade", "market"), ("btcusdt@aggTrade", "market"),
    ("btcusdt@markPrice@1s", "market"), ("btcusdt@kline_1m", "market"),
])
def test_stream_route(stream, route):
    assert binance.stream_route(stream) == route


def test_only_the_production_host_is_routed_by_default():
    assert binance.routed_by_default("wss://fstream.binance.com")
    assert binance.routed_by_default("wss://fstream.binance.com/")
    assert not binance.routed_by_default(binance.TESTNET_WS)
    assert not binance.routed_by_default("ws://127.0.0.1:9000")


def cfg(**over):
    return config_mod.replace(config_mod.AegisConfig(), **over)


class TestMarketUrls:
    def test_demo_is_the_sim(self):
        c = cfg(mode="demo", sim={"host": "127.0.0.1", "port": 4567})
        assert binance.market_urls(c) == ("ws://127.0.0.1:4567", "http://127.0.0.1:4567")
        assert not binance.ws_routed(c)

    @pytest.mark.parametrize("mode", ["paper", "live"])
    def test_paper_and_live_are_binance_production_routed(self, mode):
        c = cfg(mode=mode)
        assert binance.market_urls(c) == (binance.PRODUCTION_WS, binance.PRODUCTION_REST)
        assert binance.ws_routed(c)

    def test_testnet(self):
        c = cfg(mode="live", trading={"testnet": True})
        assert binance.market_urls(c) == (binance.TESTNET_WS, binance.TESTNET_REST)
        assert not binance.ws_routed(c)

    def test_explicit_urls_win_and_routing_can_be_forced(self):
        c = cfg(mode="live", feed={"ws_url": "ws://127.0.0.1:1", "rest_url": "http://127.0.0.1:1", "ws_routing": "on"})
        assert binance.market_urls(c) == ("ws://127.0.0.1:1", "http://127.0.0.1:1")
        assert binance.ws_routed(c)
        assert not binance.ws_routed(config_mod.replace(c, feed={"ws_routing": "off"}))

    def test_bad_routing_value_is_refused(self):
        with pytest.raises(ConfigError, match="ws_routing"):
            cfg(feed={"ws_routing": "yes"})
