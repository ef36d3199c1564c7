"""The trading rules the feed publishes for the brain (SYMBOL_INFO), the orchestrator stores
(symbols table) and the brain falls back on when exchangeInfo cannot be fetched."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from common import config as config_mod
from common import wire
from services.brain import recovery, risk
from venue import brokers, filters
from services.feed import discovery
from services.orchestrator import db
from tests.conftest import USDM_DATA

INFO = USDM_DATA / "exchangeInfo_symbols_ccxt.json"


def entry(symbol: str, tick: str = "0.10", step: str = "0.001", **extra) -> dict:
    return {"symbol": symbol, "status": "TRADING", "contractType": "PERPETUAL", "quoteAsset": "USDT",
            "pricePrecision": 2, "quantityPrecision": 3,
            "filters": [{"filterType": "PRICE_FILTER", "tickSize": tick},
                        {"filterType": "LOT_SIZE", "stepSize": step, "minQty": "0.001"},
                        {"filterType": "MIN_NOTIONAL", "notional": "5"}], **extra}


def test_real_exchange_info_becomes_exact_symbol_info_messages():
    """The seven real USDT perpetuals become SYMBOL_INFO messages whose sizes are the exchange's
    exact decimal strings; a dated future's name is counted as unusable, not published."""
    info = json.loads(INFO.read_text())
    perps = [e for e in info["symbols"] if discovery.tradable(e)]
    names = [e["symbol"] for e in perps]
    bodies, bad = discovery.info_bodies(discovery.infos_for(info, names))
    assert bad == 0 and [b.symbol for b in bodies] == names == [
        "BTCUSDT", "ETHUSDT", "LTCUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "TRXUSDT"]
    # a dated future (BTCUSDT_231229, listed beside these perpetuals) has no wire symbol name
    btc = next(e for e in info["symbols"] if e["symbol"] == "BTCUSDT")
    quarterly = {**btc, "symbol": "BTCUSDT_231229", "contractType": "CURRENT_QUARTER"}
    assert discovery.info_bodies(discovery.infos_for({"symbols": [quarterly]}, ["BTCUSDT_231229"])) == ([], 1)
    for b, e in zip(bodies, perps):
        f = {x["filterType"]: x for x in e["filters"]}
        # the float's shortest repr is the exchange's decimal string
        assert Decimal(repr(b.tick_size)) == Decimal(f["PRICE_FILTER"]["tickSize"])
        assert Decimal(repr(b.step_size)) == Decimal(f["LOT_SIZE"]["stepSize"])
        assert wire.decode(wire.encode(wire.Envelope(1, "feed:1", 1, 1, 1, b))).body == b


def test_unusable_rules_are_counted_not_published():
    info = {"symbols": [entry("BTCUSDT"), entry("ZEROUSDT", tick="0"), entry("lowerusdt"), {"symbol": "X"}]}
    infos = discovery.infos_for(info, ["BTCUSDT", "ZEROUSDT", "lowerusdt", "X", "ABSENT"])
    bodies, bad = discovery.info_bodies(infos)
    assert [b.symbol for b in bodies] == ["BTCUSDT"] and bad == 3  # zero tick, lower case, no filters


def test_stored_by_the_orchestrator_and_read_back_by_the_brain(short_tmp):
    path = short_tmp / "a.sqlite3"
    conn = db.connect(path)
    first = wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
    newer = wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=50.0)
    for i, b in enumerate((first, newer), 1):
        db.write_batch(conn, db.rows_for(wire.Envelope(1, "feed:1", i, i, i, b)))
    conn.close()
    assert recovery.symbol_rules(path) == {"BTCUSDT": newer}
    assert recovery.symbol_rules(short_tmp / "missing.sqlite3") == {}


def test_filters_fall_back_on_the_feeds_rules_when_exchange_info_fails(monkeypatch):
    cfg = config_mod.load(None, env={})
    rules = {"BTCUSDT": wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001,
                                        min_notional=100.0)}

    def down(url):
        raise OSError("connection refused")

    monkeypatch.setattr(filters, "fetch_filters", down)
    got = brokers.filters_fn(cfg, fallback=lambda: rules)()
    assert got["BTCUSDT"] == risk.SymbolFilters(symbol="BTCUSDT", tick_size=Decimal("0.1"), step_size=Decimal("0.001"),
                                                min_qty=Decimal("0.001"), min_notional=Decimal("100.0"))
    with pytest.raises(OSError):  # nothing to fall back on: the failure stands
        brokers.filters_fn(cfg, fallback=lambda: {})()
    with pytest.raises(OSError):
        brokers.filters_fn(cfg)()

