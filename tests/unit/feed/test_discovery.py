"""Symbol selection from real exchangeInfo documents."""

from __future__ import annotations

import json

import pytest

from common.errors import DecodeError
from services.feed import discovery
from tests.conftest import SHARED_DATA

INFO_2021 = SHARED_DATA / "binance_usdm" / "exchangeInfo_2021-07-21.json"
INFO_2022 = SHARED_DATA / "binance_usdm" / "exchangeInfo_2022-02-19_3symbols.json"


def load(p):
    return json.loads(p.read_text())


class TestSelectSymbols:
    def test_only_usdt_perpetuals_that_trade_are_kept(self):
        """Quarterlies, BUSD-quoted and PENDING_TRADING contracts are filtered out of the real document."""
        info = load(INFO_2021)
        got = discovery.select_symbols(info, None, 1000)
        expected = [s["symbol"] for s in info["symbols"]
                    if s["contractType"] == "PERPETUAL" and s["status"] == "TRADING"
                    and s["quoteAsset"] == "USDT" and s.get("marginAsset", "USDT") == "USDT"]
        assert [g.symbol for g in got] == expected
        assert all(g.symbol.endswith("USDT") for g in got)

    def test_ranked_by_quote_volume(self):
        """With tickers, the most traded symbol comes first."""
        info = load(INFO_2022)
        tickers = [{"symbol": "BTCUSDT", "quoteVolume": "10"}, {"symbol": "ETHUSDT", "quoteVolume": "99"}]
        assert [s.symbol for s in discovery.select_symbols(info, tickers, 2)] == ["ETHUSDT", "BTCUSDT"]

    def test_filters_parsed_from_real_document(self):
        """BTCUSDT's tick size, step size and min notional come from its filters (key 'notional')."""
        btc = next(s for s in discovery.select_symbols(load(INFO_2022), None, 5) if s.symbol == "BTCUSDT")
        assert (btc.tick_size, btc.step_size, btc.min_notional) == (0.1, 0.001, 10.0)

    def test_top_n_limits_the_list(self):
        """Only N symbols are returned."""
        assert len(discovery.select_symbols(load(INFO_2021), None, 7)) == 7

    @pytest.mark.parametrize("body", [{}, {"symbols": None}, [], "x"])
    def test_body_of_wrong_shape_is_a_decode_error(self, body):
        """A partial or garbage response gives DecodeError, so the feed can fall back."""
        with pytest.raises(DecodeError):
            discovery.select_symbols(body, None, 5)

    def test_broken_entry_does_not_lose_the_others(self):
        """One entry with a garbage filter is skipped; the rest are kept."""
        info = load(INFO_2022)
        bad = dict(info["symbols"][0], symbol="BADUSDT",
                   filters=[{"filterType": "PRICE_FILTER", "tickSize": "nan"}])
        info["symbols"].append(bad)
        assert "BADUSDT" not in [s.symbol for s in discovery.select_symbols(info, None, 10)]

    def test_fallback_list_has_twenty_usdt_symbols(self):
        """The built-in fallback is 20 distinct USDT symbols."""
        assert len(set(discovery.FALLBACK_SYMBOLS)) == 20


class TestDemoFlags:
    def test_sim_labels_become_ring_flags(self):
        """SYNTHETIC-FROM-CANDLES and DERIVED-DEMO labels map to Flag.SYNTHETIC and Flag.DERIVED."""
        from common.records import Flag

        info = {"symbols": [
            {"symbol": "BTCUSDT", "underlyingSubType": ["SYNTHETIC-FROM-CANDLES"]},
            {"symbol": "D001USDT", "underlyingSubType": ["DERIVED-DEMO", "SYNTHETIC-FROM-CANDLES"]},
            {"symbol": "D002USDT", "underlyingSubType": ["DERIVED-DEMO"]},
        ]}
        assert discovery.demo_flags(info) == {
            "BTCUSDT": int(Flag.SYNTHETIC), "D001USDT": int(Flag.SYNTHETIC | Flag.DERIVED),
            "D002USDT": int(Flag.DERIVED)}

    def test_real_exchange_info_has_no_demo_flags(self):
        """Real Binance documents carry neither label: nothing is flagged."""
        assert discovery.demo_flags(load(INFO_2021)) == {}
        assert discovery.demo_flags(load(INFO_2022)) == {}
