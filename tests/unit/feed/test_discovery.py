"""Symbol selection from real exchangeInfo symbol entries (ccxt's recording of Binance's answer)."""

from __future__ import annotations

import json

import pytest

from common.errors import DecodeError
from services.feed import discovery
from tests.conftest import USDM_DATA

INFO = USDM_DATA / "exchangeInfo_symbols_ccxt.json"
REAL_PERPETUALS = ["BTCUSDT", "ETHUSDT", "LTCUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "TRXUSDT"]


def load(p):
    return json.loads(p.read_text())


def not_tradable_variants(info: dict) -> list[dict]:
    """Real entries with the one field changed that makes each one not a USDT perpetual that
    trades: the kinds a full exchangeInfo answer also lists (Binance documents contractType
    CURRENT_QUARTER and status PENDING_TRADING / SETTLING; BUSD and USDC quote other pairs)."""
    by_name = {e["symbol"]: e for e in info["symbols"]}
    btc, eth, ltc = by_name["BTCUSDT"], by_name["ETHUSDT"], by_name["LTCUSDT"]
    return [
        {**btc, "symbol": "BTCUSDT_231229", "contractType": "CURRENT_QUARTER", "deliveryDate": "1703836800000"},
        {**btc, "symbol": "BTCBUSD", "pair": "BTCBUSD", "quoteAsset": "BUSD", "marginAsset": "BUSD"},
        {**btc, "symbol": "BTCUSDC", "pair": "BTCUSDC", "quoteAsset": "USDC", "marginAsset": "USDC"},
        {**eth, "symbol": "NEWUSDT", "pair": "NEWUSDT", "status": "PENDING_TRADING"},
        {**ltc, "symbol": "OLDUSDT", "pair": "OLDUSDT", "status": "SETTLING"},
    ]


class TestSelectSymbols:
    def test_only_usdt_perpetuals_that_trade_are_kept(self):
        """Quarterly, BUSD- and USDC-quoted, PENDING_TRADING and SETTLING entries are filtered out;
        the seven real USDT perpetuals are kept, in the document's order."""
        info = load(INFO)
        variants = not_tradable_variants(info)
        mixed = {"symbols": [variants[0], *info["symbols"][:3], *variants[1:], *info["symbols"][3:]]}
        got = discovery.select_symbols(mixed, None, 1000)
        assert [g.symbol for g in got] == REAL_PERPETUALS
        assert [discovery.tradable(v) for v in variants] == [False] * 5

    def test_ranked_by_quote_volume(self):
        """With tickers, the most traded symbol comes first."""
        info = load(INFO)
        tickers = [{"symbol": "BTCUSDT", "quoteVolume": "10"}, {"symbol": "ETHUSDT", "quoteVolume": "99"}]
        assert [s.symbol for s in discovery.select_symbols(info, tickers, 2)] == ["ETHUSDT", "BTCUSDT"]

    def test_filters_parsed_from_real_document(self):
        """BTCUSDT's tick size, step size and min notional come from its filters (key 'notional')."""
        btc = next(s for s in discovery.select_symbols(load(INFO), None, 5) if s.symbol == "BTCUSDT")
        assert (btc.tick_size, btc.step_size, btc.min_notional) == (0.1, 0.001, 5.0)

    def test_top_n_limits_the_list(self):
        """Only N symbols are returned."""
        assert [s.symbol for s in discovery.select_symbols(load(INFO), None, 5)] == REAL_PERPETUALS[:5]

    @pytest.mark.parametrize("body", [{}, {"symbols": None}, [], "x"])
    def test_body_of_wrong_shape_is_a_decode_error(self, body):
        """A partial or garbage response gives DecodeError, so the feed can fall back."""
        with pytest.raises(DecodeError):
            discovery.select_symbols(body, None, 5)

    def test_broken_entry_does_not_lose_the_others(self):
        """One entry with a garbage filter is skipped; the rest are kept."""
        info = load(INFO)
        bad = dict(info["symbols"][0], symbol="BADUSDT",
                   filters=[{"filterType": "PRICE_FILTER", "tickSize": "nan"}])
        info["symbols"].append(bad)
        assert [s.symbol for s in discovery.select_symbols(info, None, 10)] == REAL_PERPETUALS

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
        info = load(INFO)
        assert [e["underlyingSubType"] for e in info["symbols"]] == [
            ["PoW"], ["Layer-1"], ["PoW"], ["Layer-1"], ["Payment"], ["Meme"], ["Layer-1"]]
        assert discovery.demo_flags(info) == {}
