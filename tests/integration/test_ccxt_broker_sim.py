"""``CcxtBroker`` against a real ``exchange_sim`` on 127.0.0.1: real ccxt, real HTTP, real
signatures, the sim's matching engine; faults injected through ``/_sim/fault``."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
import requests

from common.errors import AmbiguousError, DefinitiveError, TransientError
from venue.port import OrderSpec
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
from services.exchange_sim import recorded_market
from services.exchange_sim.config import SimParams
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from venue.ratelimit import Governor
from services.exchange_sim.server import SimServer
from tests.integration.sim_thread import server_in_thread, wait_for_book

pytestmark = pytest.mark.integration

SYMBOL = "BTCUSDT"
QTY = Decimal("0.005")  # ~300 USDT at the capture's price: above the 100 USDT min notional
TIMEOUT_MS = 1_500  # the broker's REST timeout; the order_timeout fault answers later than this
START_WALLET = Decimal("10000")


@pytest.fixture(scope="module")
def cap():
    return recorded_market.load()


@dataclass
class Sim:
    base: str
    server: SimServer

    def fault(self, **body) -> None:
        r = requests.post(f"{self.base}/_sim/fault", json=body, timeout=5)
        assert r.status_code == 200, r.text

    def records(self, what: str) -> list[dict]:
        return requests.get(f"{self.base}/_sim/{what}", timeout=5).json()

    def book(self) -> tuple[Decimal, Decimal]:
        body = requests.get(f"{self.base}/fapi/v1/ticker/bookTicker", params={"symbol": SYMBOL}, timeout=5).json()
        return Decimal(body["bidPrice"]), Decimal(body["askPrice"])


@pytest.fixture
def sim(cap):
    """A sim on its own event loop thread, with a fresh account, and a BTCUSDT book."""
    with server_in_thread(SimParams(symbols=3, source="ticks"), cap) as (base, server):
        wait_for_book(base, SYMBOL, timeout_s=30)  # the replay needs a moment before BTCUSDT has a book
        yield Sim(base=base, server=server)


@pytest.fixture
def broker(sim):
    b = CcxtBroker(CcxtConfig(base_url=sim.base, timeout_ms=TIMEOUT_MS), governor=Governor(), api_key=DEMO_API_KEY,
                   api_secret=DEMO_API_SECRET)
    setup = b.start([SYMBOL])
    assert (setup.one_way, setup.margin_type, setup.leverage) == (True, "CROSSED", {SYMBOL: 5})
    yield b
    b.close()


def market(cid: str, side: str, qty: Decimal = QTY, reduce_only: bool = False) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol=SYMBOL, side=side, order_type="MARKET", qty=qty,
                     reduce_only=reduce_only)


def test_market_entry_and_reduce_only_exit_round_trip(broker, sim):
    """Entry fills with its fills attached; query, positions and the exit agree; the wallet
    moved by exactly the realised PnL minus the commissions the fills report."""
    entry = broker.submit(market("it-entry-1", "BUY"))
    o = entry.order
    assert (o.status, o.client_order_id, o.executed_qty) == ("FILLED", "it-entry-1", QTY)
    assert entry.fills and sum(f.qty for f in entry.fills) == QTY
    assert {f.exchange_order_id for f in entry.fills} == {entry.order.exchange_order_id}

    found = broker.query(SYMBOL, "it-entry-1")
    assert (found.exchange_order_id, found.status, found.executed_qty) == (
        entry.order.exchange_order_id, "FILLED", QTY)
    [pos] = broker.positions()
    assert (pos.symbol, pos.qty, pos.leverage) == (SYMBOL, QTY, 5)

    exit_ = broker.submit(market("it-exit-1", "SELL", reduce_only=True))
    assert (exit_.order.status, exit_.order.reduce_only, sum(f.qty for f in exit_.fills)) == ("FILLED", True, QTY)
    assert broker.positions() == []

    fills = entry.fills + exit_.fills
    wallet = broker.balance().wallet
    assert wallet == START_WALLET + sum(f.realized_pnl for f in fills) - sum(f.fee for f in fills)
    assert wallet < START_WALLET + sum(f.realized_pnl for f in fills)  # fees were paid
    assert [f.trade_id for f in broker.fills(SYMBOL)] == [f.trade_id for f in fills]


def test_limit_order_rests_is_listed_and_canceled(broker, sim):
    bid, _ = sim.book()
    price = (bid * Decimal("0.97")).quantize(Decimal("0.1"))  # far from the touch, inside PERCENT_PRICE
    res = broker.submit(OrderSpec(client_order_id="it-rest-1", symbol=SYMBOL, side="BUY", order_type="LIMIT",
                                  qty=QTY, price=price))
    assert (res.order.status, res.order.price, res.fills) == ("NEW", price, ())
    assert [o.client_order_id for o in broker.open_orders(SYMBOL)] == ["it-rest-1"]
    assert broker.cancel(SYMBOL, "it-rest-1").status == "CANCELED"
    assert broker.open_orders(SYMBOL) == []  # (all symbols weighs 40: ccxt's limiter would wait 2 s)
    assert broker.query(SYMBOL, "it-rest-1").status == "CANCELED"
    with pytest.raises(DefinitiveError) as exc:
        broker.cancel(SYMBOL, "it-rest-1")
    assert (exc.value.reason, exc.value.code) == ("unknown_order", -2011)


def test_query_of_an_unknown_client_id_is_none(broker):
    assert broker.query(SYMBOL, "it-never-sent") is None


def test_injected_margin_refusal_is_definitive(broker, sim):
    sim.fault(action="http_error", status=400, code=-2019, msg="Margin is insufficient.",
              path="/fapi/v1/order", method="POST")
    with pytest.raises(DefinitiveError) as exc:
        broker.submit(market("it-margin-1", "BUY"))
    assert (exc.value.reason, exc.value.code, exc.value.http_status) == ("insufficient_margin", -2019, 400)
    assert broker.query(SYMBOL, "it-margin-1") is None  # refused: no order


def test_injected_5xx_is_ambiguous_for_a_submit_and_transient_for_a_read(broker, sim):
    sim.fault(action="http_error", status=503, path="/fapi/v1/order", method="POST")
    with pytest.raises(AmbiguousError) as exc:
        broker.submit(market("it-5xx-1", "BUY"))
    assert (exc.value.code, exc.value.http_status) == (-1001, 503)
    assert broker.query(SYMBOL, "it-5xx-1") is None  # this time it was not executed: query says so
    sim.fault(action="http_error", status=502, path="/fapi/v2/positionRisk")
    with pytest.raises(TransientError):
        broker.positions()
    assert broker.positions() == []  # the fault was used up


def test_injected_rate_limit_carries_retry_after(broker, sim):
    sim.fault(action="http_error", status=429, path="/fapi/v2/account")
    with pytest.raises(TransientError) as exc:
        broker.balance()
    assert (exc.value.reason, exc.value.code, exc.value.retry_after_s) == ("rate_limit", -1003, 2.0)


def test_order_timeout_is_ambiguous_and_query_then_finds_the_order_exactly_once(broker, sim):
    """The sim executes the order but answers after our timeout: outcome unknown; the query by
    client id finds the one order, filled, with its fills."""
    sim.fault(action="order_timeout", count=1, seconds=TIMEOUT_MS / 1000 + 2)
    with pytest.raises(AmbiguousError) as exc:
        broker.submit(market("it-timeout-1", "BUY"))
    assert exc.value.reason == "timeout"
    found = broker.query(SYMBOL, "it-timeout-1")
    assert (found.status, found.executed_qty) == ("FILLED", QTY)
    assert [o["clientOrderId"] for o in sim.records("orders")].count("it-timeout-1") == 1
    fills = broker.fills(SYMBOL, exchange_order_id=found.exchange_order_id)
    assert sum(f.qty for f in fills) == QTY
    [pos] = broker.positions()
    assert pos.qty == QTY


def test_clock_skew_gives_a_timestamp_error_then_the_resync_lets_the_retry_through(broker, sim):
    sim.fault(action="clock_skew", ms=3_000)  # we look 3 s ahead of the sim's clock
    with pytest.raises(TransientError) as exc:
        broker.submit(market("it-skew-1", "BUY"))
    assert (exc.value.reason, exc.value.code) == ("timestamp", -1021)
    res = broker.submit(market("it-skew-1", "BUY"))  # same client id: the first was never executed
    assert res.order.status == "FILLED"


def test_markets_from_the_feeds_rules_need_no_exchange_info(sim):
    """A broker whose markets are made of the feed's rules (as the brain's is) starts, places
    a limit order on the exact grid, fills a market entry and exit, and never asks exchangeInfo:
    the sim counts only the test's own request for the rules."""
    from services.feed import discovery

    info = requests.get(f"{sim.base}/fapi/v1/exchangeInfo", timeout=5).json()
    rules = {i.symbol: i for i in discovery.select_symbols(info, None, 10)}
    b = CcxtBroker(CcxtConfig(base_url=sim.base, timeout_ms=TIMEOUT_MS), governor=Governor(), api_key=DEMO_API_KEY,
                   api_secret=DEMO_API_SECRET, rules=lambda: rules)
    try:
        assert b.start([SYMBOL]).leverage == {SYMBOL: 5}
        bid, _ = sim.book()
        rest = b.submit(OrderSpec(client_order_id="it-seed-1", symbol=SYMBOL, side="BUY", order_type="LIMIT",
                                  qty=QTY, price=(bid * Decimal("0.97")).quantize(Decimal("0.1"))))
        assert rest.order.status == "NEW"
        assert b.cancel(SYMBOL, "it-seed-1").status == "CANCELED"
        assert b.submit(market("it-seed-2", "BUY")).order.status == "FILLED"
        assert b.submit(market("it-seed-3", "SELL", reduce_only=True)).order.status == "FILLED"
    finally:
        b.close()
    assert sim.records("stats")["http_requests"]["/fapi/v1/exchangeInfo"] == 1
