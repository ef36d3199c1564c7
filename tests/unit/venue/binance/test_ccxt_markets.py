"""ccxt's markets made of the feed's published rules (``CcxtBroker(rules=...)``): the same
markets ccxt makes of the exchange's own entries, with no request; exchangeInfo asked only for
a symbol the rules lack, and at most once."""

from __future__ import annotations

import json

import pytest

from common import wire
from common.errors import DefinitiveError
from services.feed import discovery
from tests.conftest import USDM_DATA
from venue import ratelimit
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig, make_exchange

CFG = CcxtConfig(base_url="http://127.0.0.1:9")  # nothing listens there: a request would fail
PERPS = [e for e in json.loads((USDM_DATA / "exchangeInfo_symbols_ccxt.json").read_text())["symbols"]
         if discovery.tradable(e)]
# what ccxt's order path reads of a market (create_order, amount/price_to_precision); not
# compared: precision base/quote (baseAssetPrecision, quotePrecision: spot only) and
# limits.market's minimum (MARKET_LOT_SIZE minQty), which the rules do not carry
KEYS = ("id", "symbol", "base", "quote", "settle", "type", "spot", "swap", "future", "option", "contract",
        "linear", "inverse", "active", "contractSize")


def order_fields(m: dict) -> dict:
    return {**{k: m[k] for k in KEYS}, "amount": m["precision"]["amount"], "price": m["precision"]["price"],
            "limits": {k: m["limits"][k] for k in ("amount", "price", "cost")},
            "market_max": m["limits"]["market"]["max"],
            "order_types": m["info"]["orderTypes"]}  # create_order refuses a type not listed


def no_network(ex) -> list:
    """Every HTTP request ccxt would send, recorded and refused."""
    sent: list = []

    def fetch(url, method="GET", headers=None, body=None):
        sent.append((method, url))
        raise AssertionError(f"request sent: {method} {url}")

    ex.fetch = fetch
    return sent


def seeded_broker(rules: dict) -> tuple[CcxtBroker, object, list]:
    ex = make_exchange(CFG, "key", "secret")
    sent = no_network(ex)
    return CcxtBroker(CFG, exchange=ex, governor=ratelimit.Governor(), rules=lambda: rules), ex, sent


def test_markets_of_the_feeds_rules_equal_ccxts_own_and_cost_no_request():
    """Each real perpetual's market, made of the feed's rules, is the market ccxt parses from
    the exchange's entry in every field its order path reads; no request is sent."""
    rules = {e["symbol"]: discovery.parse_symbol(e) for e in PERPS}
    b, ex, sent = seeded_broker(rules)
    assert b._symbol("BTCUSDT") == "BTC/USDT:USDT"
    ref = make_exchange(CFG, "key", "secret")
    for e in PERPS:
        want = ref.parse_market(e)
        got = ex.markets[want["symbol"]]
        assert order_fields(got) == order_fields(ref.set_markets([want])[want["symbol"]]), e["symbol"]
        assert b._symbol(e["symbol"]) == want["symbol"]
    assert ex.amount_to_precision("BTC/USDT:USDT", "0.002") == "0.002"
    # the whole of ccxt's request for a limit and a market order, as it would sign and send it
    for order_type, price in (("limit", "43000.1"), ("market", None)):
        with pytest.raises(AssertionError, match="request sent: POST .*/fapi/v1/order"):
            ex.create_order("BTC/USDT:USDT", order_type, "buy", "0.002", price, {"newClientOrderId": "c1"})
    sent.clear()
    assert ex.price_to_precision("BTC/USDT:USDT", "43000.1") == "43000.1"
    assert sent == [] and b.counters["markets_unseeded"] == 0


def test_a_rule_published_later_is_seeded_at_its_first_use():
    """A symbol the feed publishes after the broker started (a re-discovery) is known at its
    first order, without exchangeInfo."""
    rules: dict = {}
    b, ex, sent = seeded_broker(rules)
    rules["ETHUSDT"] = discovery.parse_symbol(next(e for e in PERPS if e["symbol"] == "ETHUSDT"))
    assert b._symbol("ETHUSDT") == "ETH/USDT:USDT" and sent == []


def test_a_symbol_without_rules_asks_exchange_info_once():
    """A symbol the rules lack (a position in one the feed does not stream), or an older feed's
    rule without its assets: one load of the exchange's markets, never a second."""
    old_style = {"BTCUSDT": wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001)}
    b, ex, _ = seeded_broker(old_style)
    loads = []
    ref = make_exchange(CFG, "key", "secret")
    everything = ref.set_markets([ref.parse_market(e) for e in PERPS])

    def load_markets(reload=False):
        loads.append(reload)
        return ex.set_markets(everything)

    ex.load_markets = load_markets
    assert b._symbol("BTCUSDT") == "BTC/USDT:USDT" and loads == [True]
    with pytest.raises(DefinitiveError) as err:
        b._symbol("NOPEUSDT")
    assert err.value.reason == "bad_symbol" and loads == [True]


def test_start_asks_exchange_info_only_for_symbols_without_rules(monkeypatch):
    """start() with every symbol covered by the rules loads no markets; without rules (the
    reconciler's broker, the tests' fakes) it loads them as before."""
    rules = {e["symbol"]: discovery.parse_symbol(e) for e in PERPS}
    b, ex, _ = seeded_broker(rules)
    loads = []
    monkeypatch.setattr(b, "_load_markets", lambda *a: loads.append(a))
    monkeypatch.setattr(b, "_call", lambda op, fn, *a, **k: {"leverage": 5} if op == "leverage" else 0)
    monkeypatch.setattr(b, "_ensure_one_way", lambda: True)
    b.start(["BTCUSDT", "ETHUSDT"])
    assert loads == []
    b.start([])
    assert loads == []
    with pytest.raises(DefinitiveError):
        b.start(["NOPEUSDT"])  # not in the rules: the exchange's markets are asked, and lack it too
    assert len(loads) == 1
