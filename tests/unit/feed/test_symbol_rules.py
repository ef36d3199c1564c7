"""The trading rules the feed publishes for the brain (SYMBOL_INFO, every filter of the one
exact ``SymbolFilters`` type), the orchestrator stores (symbols table) and the brain's filters
and the paper broker read, with exchangeInfo asked only for a symbol they lack."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from common import config as config_mod
from common import wire
from common.errors import DecodeError
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


def test_real_exchange_info_rules_carry_exactly_the_entrys_filters():
    """For each real perpetual, the feed's rules give exactly the filters read from the raw
    entry (price bounds, max quantity, MARKET_LOT_SIZE, PERCENT_PRICE included), and the entry
    made back of the rules gives them again: one type, no loss on the way."""
    info = json.loads(INFO.read_text())
    perps = [e for e in info["symbols"] if discovery.tradable(e)]
    assert len(perps) == 7
    for e in perps:
        rules = discovery.parse_symbol(e)
        want = filters.filters_from_entry(e)
        assert filters.filters_from_symbol_info(rules) == want
        assert filters.filters_from_entry(filters.entry_from_symbol_info(rules)) == want
        assert (rules.base_asset, rules.quote_asset, rules.margin_asset, rules.contract_type) == (
            e["baseAsset"], "USDT", "USDT", "PERPETUAL")
    btc = filters.filters_from_symbol_info(discovery.parse_symbol(perps[0]))
    assert (btc.max_price, btc.min_price, btc.market_max_qty, btc.percent_up, btc.percent_down) == (
        Decimal("4529764"), Decimal("556.80"), Decimal("120"), Decimal("1.05"), Decimal("0.95"))


def test_a_value_no_float_carries_exactly_is_refused():
    """A filter value with more digits than a float keeps (18 significant) is refused as the
    entry's error (DecodeError, counted by the caller), never published rounded."""
    with pytest.raises(DecodeError, match="exactly"):
        discovery.parse_symbol(entry("BTCUSDT", tick="0.123456789012345678"))
    assert discovery.infos_for({"symbols": [entry("BTCUSDT", tick="0.123456789012345678")]}, ["BTCUSDT"]) == []


def test_an_older_feeds_message_decodes_with_no_bounds():
    """A SYMBOL_INFO of a feed from before the extra filters (as old captures hold it) still
    decodes, and means what it meant: no price bounds, no max quantity, no PERCENT_PRICE."""
    import msgspec

    old = {"type": "SYMBOL_INFO", "symbol": "BTCUSDT", "tick_size": 0.1, "step_size": 0.001, "min_qty": 0.001,
           "min_notional": 5.0, "price_precision": 2, "quantity_precision": 3}
    frames = [b"symbol.BTCUSDT", msgspec.msgpack.encode([1, "feed:1", 1, 1, 1, old])]
    body = wire.decode(frames).body
    assert body == wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001,
                                   min_notional=5.0, price_precision=2, quantity_precision=3)
    assert filters.filters_from_symbol_info(body) == risk.SymbolFilters(
        symbol="BTCUSDT", tick_size=Decimal("0.1"), step_size=Decimal("0.001"), min_qty=Decimal("0.001"),
        min_notional=Decimal("5"))


def test_stored_by_the_orchestrator_and_read_back_by_the_brain(short_tmp):
    """The symbols table keeps every field of the rules; the newest message of a symbol wins."""
    path = short_tmp / "a.sqlite3"
    conn = db.connect(path)
    first = wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
    newer = discovery.parse_symbol(json.loads(INFO.read_text())["symbols"][0])
    assert newer.symbol == "BTCUSDT" and newer.percent_up == 1.05
    for i, b in enumerate((first, newer), 1):
        db.write_batch(conn, db.rows_for(wire.Envelope(1, "feed:1", i, i, i, b)))
    conn.close()
    assert recovery.symbol_rules(path) == {"BTCUSDT": newer}
    assert recovery.symbol_rules(short_tmp / "missing.sqlite3") == {}


def test_a_database_from_before_the_extra_columns_reads_and_gets_them(short_tmp):
    """A symbols table of the old layout (8 columns) is read as rules without the extra
    filters; the writer's connect adds the columns and keeps the row."""
    import sqlite3

    path = short_tmp / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE symbols (symbol TEXT PRIMARY KEY, tick_size REAL NOT NULL, step_size REAL NOT NULL,"
                " min_qty REAL NOT NULL, min_notional REAL NOT NULL, price_precision INTEGER NOT NULL,"
                " quantity_precision INTEGER NOT NULL, updated_ns INTEGER NOT NULL)")
    old.execute("INSERT INTO symbols VALUES ('ETHUSDT', 0.01, 0.001, 0.001, 20.0, 2, 3, 1)")
    old.commit()
    old.close()
    want = {"ETHUSDT": wire.SymbolInfo(symbol="ETHUSDT", tick_size=0.01, step_size=0.001, min_qty=0.001,
                                       min_notional=20.0, price_precision=2, quantity_precision=3)}
    assert recovery.symbol_rules(path) == want
    db.connect(path).close()
    assert recovery.symbol_rules(path) == want


def test_filters_are_the_feeds_rules_read_live_without_a_fetch(monkeypatch):
    """Outside replay the filters are the feed's rules as they are at each look-up (a rule
    published or changed later counts at once), and exchangeInfo is never asked for them."""
    cfg = config_mod.load(None, env={})
    rules = {"BTCUSDT": wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001,
                                        min_notional=100.0, percent_up=1.05, percent_down=0.95)}

    def never(url):
        raise AssertionError("exchangeInfo fetched")

    monkeypatch.setattr(filters, "fetch_filters", never)
    got = brokers.symbol_filters(cfg, lambda: rules)
    assert got["BTCUSDT"] == risk.SymbolFilters(symbol="BTCUSDT", tick_size=Decimal("0.1"), step_size=Decimal("0.001"),
                                                min_qty=Decimal("0.001"), min_notional=Decimal("100.0"),
                                                percent_up=Decimal("1.05"), percent_down=Decimal("0.95"))
    assert got.get("ETHUSDT") is None and list(got) == ["BTCUSDT"]
    rules["ETHUSDT"] = wire.SymbolInfo(symbol="ETHUSDT", tick_size=0.01, step_size=0.001)
    rules["BTCUSDT"] = wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.5, step_size=0.001)
    assert got["ETHUSDT"].tick_size == Decimal("0.01") and got["BTCUSDT"].tick_size == Decimal("0.5")
    assert len(got) == 2
    assert got.complete(["BTCUSDT", "ETHUSDT"]) == []  # both covered: no fetch


def test_complete_fetches_once_only_for_symbols_the_feed_has_no_rules_for(monkeypatch):
    """A position in a symbol the feed does not stream gets its filters from one exchangeInfo
    fetch; the feed's rule wins once it arrives; a failed fetch raises to the caller."""
    cfg = config_mod.load(None, env={})
    rules: dict = {}
    calls = []
    fetched = {"XRPUSDT": risk.SymbolFilters(symbol="XRPUSDT", tick_size=Decimal("0.0001"),
                                             step_size=Decimal("0.1"), min_qty=Decimal("0.1"), min_notional=Decimal(5))}

    def fetch(url):
        calls.append(url)
        return fetched

    monkeypatch.setattr(filters, "fetch_filters", fetch)
    got = brokers.symbol_filters(cfg, lambda: rules)
    assert got.complete([]) == [] and calls == []
    assert got.complete(["XRPUSDT", "NOPEUSDT"]) == ["NOPEUSDT"] and len(calls) == 1
    assert got["XRPUSDT"] == fetched["XRPUSDT"]
    assert got.complete(["XRPUSDT"]) == [] and len(calls) == 1  # kept: not asked again
    rules["XRPUSDT"] = wire.SymbolInfo(symbol="XRPUSDT", tick_size=0.001, step_size=0.1)
    assert got["XRPUSDT"].tick_size == Decimal("0.001")

    def down(url):
        raise OSError("connection refused")

    monkeypatch.setattr(filters, "fetch_filters", down)
    with pytest.raises(OSError):
        brokers.symbol_filters(cfg, lambda: {}).complete(["BTCUSDT"])


def test_replay_reads_the_saved_exchange_info(short_tmp):
    """Replay mode's filters are the capture's saved exchangeInfo (a file, no network)."""
    path = short_tmp / "info.json"
    path.write_text(INFO.read_text())
    cfg = config_mod.from_dict({"mode": "replay", "replay": {"exchange_info": str(path), "file": str(path)}})
    got = brokers.symbol_filters(cfg)
    assert isinstance(got, dict) and got["BTCUSDT"] == filters.filters_from_entry(
        json.loads(INFO.read_text())["symbols"][0])


def test_the_brain_reads_rules_the_bus_did_not_bring_from_the_journal(short_tmp, monkeypatch):
    """A ring symbol without rules (their message went out before the brain subscribed): the
    brain's once-a-second step reads the journal's copy; a rule it has from the bus is not
    replaced; once every ring symbol has its rules, or after RULES_JOURNAL_S, no more reads."""
    from types import SimpleNamespace

    from services.brain import app as brain_app

    cfg = config_mod.load(None, env={"AEGIS_DATA_DIR": str(short_tmp)})
    conn = db.connect(brain_app.service.db_path(cfg))
    stored = {s: wire.SymbolInfo(symbol=s, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=5.0)
              for s in ("BTCUSDT", "ETHUSDT")}
    for i, b in enumerate(stored.values(), 1):
        db.write_batch(conn, db.rows_for(wire.Envelope(1, "feed:1", i, i, i, b)))
    conn.close()
    from_bus = wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.5, step_size=0.01, min_qty=0.01, min_notional=10.0)
    names = ["BTCUSDT", "ETHUSDT"]
    fake = SimpleNamespace(cfg=cfg, ring=SimpleNamespace(symbol_names=lambda: list(names)),
                           symbol_info={"BTCUSDT": from_bus}, rules_missed={}, rules_read_from_journal=0)
    reads = []
    real = brain_app.recovery.symbol_rules
    monkeypatch.setattr(brain_app.recovery, "symbol_rules", lambda p: reads.append(p) or real(p))
    now = [1000.0]
    monkeypatch.setattr(brain_app.time, "monotonic", lambda: now[0])
    brain_app.Brain.rules_from_journal(fake)
    assert fake.symbol_info == {"BTCUSDT": from_bus, "ETHUSDT": stored["ETHUSDT"]}
    assert fake.rules_read_from_journal == 1 and len(reads) == 1
    brain_app.Brain.rules_from_journal(fake)
    assert len(reads) == 1 and fake.rules_missed == {}  # every ring symbol has its rules
    names.append("XRPUSDT")  # never stored: looked for, then given up on
    for _ in range(3):
        brain_app.Brain.rules_from_journal(fake)
        now[0] += brain_app.RULES_JOURNAL_S / 2
    assert len(reads) == 4 and "XRPUSDT" not in fake.symbol_info
    brain_app.Brain.rules_from_journal(fake)
    assert len(reads) == 4 and fake.rules_missed == {"XRPUSDT": 1000.0}
