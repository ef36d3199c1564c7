"""Re-discovery, the pure plan: who enters, who stopped trading, whose rules changed."""

from __future__ import annotations

import pytest

from common.errors import DecodeError
from services.feed import discovery


def entry(symbol: str, status: str = "TRADING", tick: str = "0.10") -> dict:
    return {"symbol": symbol, "status": status, "contractType": "PERPETUAL", "quoteAsset": "USDT",
            "pricePrecision": 2, "quantityPrecision": 3,
            "filters": [{"filterType": "PRICE_FILTER", "tickSize": tick},
                        {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001"},
                        {"filterType": "MIN_NOTIONAL", "notional": "5"}]}


def tickers(**vol: float) -> list[dict]:
    return [{"symbol": s, "quoteVolume": str(v)} for s, v in vol.items()]


def known(info: dict) -> dict:
    return {e["symbol"]: discovery.parse_symbol(e) for e in info["symbols"]}


def test_nothing_changed_means_nothing_to_do():
    info = {"symbols": [entry("AUSDT"), entry("BUSDT")]}
    plan = discovery.plan_rediscovery(["AUSDT", "BUSDT"], info, tickers(AUSDT=2, BUSDT=1), 2, known(info))
    assert plan == discovery.Rediscovery(add=(), gone=(), rules=())


def test_a_new_entrant_to_the_top_n_is_added_and_nobody_is_dropped():
    info = {"symbols": [entry("AUSDT"), entry("BUSDT"), entry("NEWUSDT")]}
    plan = discovery.plan_rediscovery(["AUSDT", "BUSDT"], info, tickers(AUSDT=2, BUSDT=1, NEWUSDT=9), 2,
                                      known({"symbols": info["symbols"][:2]}))
    assert plan.add == ("NEWUSDT",) and plan.gone == ()
    assert [i.symbol for i in plan.rules] == ["NEWUSDT"]  # its rules are new


def test_additions_stop_at_the_headroom():
    """max 4 symbols -> at most 5 streamed: one more entrant fits, the second waits."""
    cur = ["AUSDT", "BUSDT", "CUSDT", "DUSDT"]
    info = {"symbols": [entry(s) for s in cur + ["XUSDT", "YUSDT"]]}
    plan = discovery.plan_rediscovery(cur, info, tickers(XUSDT=9, YUSDT=8, AUSDT=7, BUSDT=6, CUSDT=1, DUSDT=1), 4,
                                      known(info))
    assert discovery.headroom(4) == 5 and plan.add == ("XUSDT",)


def test_a_symbol_that_stopped_trading_or_vanished_is_reported():
    info = {"symbols": [entry("AUSDT"), entry("BUSDT", status="SETTLING")]}
    plan = discovery.plan_rediscovery(["AUSDT", "BUSDT", "GONEUSDT"], info, tickers(AUSDT=1), 3, known(info))
    assert plan.gone == ("BUSDT", "GONEUSDT") and plan.add == ()


def test_a_changed_tick_size_is_a_rules_update():
    old = {"symbols": [entry("AUSDT", tick="0.10")]}
    new = {"symbols": [entry("AUSDT", tick="0.01")]}
    plan = discovery.plan_rediscovery(["AUSDT"], new, tickers(AUSDT=1), 1, known(old))
    assert [(i.symbol, i.tick_size) for i in plan.rules] == [("AUSDT", 0.01)]


def test_configured_symbols_are_never_ranked_or_added():
    info = {"symbols": [entry("AUSDT"), entry("NEWUSDT")]}
    plan = discovery.plan_rediscovery(["AUSDT"], info, None, 5, known(info), rank=False)
    assert plan.add == () and plan.rules == ()


def test_a_bad_body_raises_for_the_caller_to_keep_streaming():
    with pytest.raises(DecodeError):
        discovery.plan_rediscovery(["AUSDT"], {"nope": 1}, None, 2, {})
