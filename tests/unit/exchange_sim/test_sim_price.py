"""``POST /_sim/price`` without sockets: ``Market.set_price`` moves last, book and mark at once
and shifts the rest of the replay by a persistent offset; ``faults.parse_price`` reads the body."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from services.exchange_sim import recorded_market
from services.exchange_sim import faults
from services.exchange_sim.engine import Player
from services.exchange_sim.hub import Hub
from services.exchange_sim.market import Market, PriceError
from services.exchange_sim.symbols import make_specs
from tests.unit.exchange_sim.test_replay_engine import FakeTransport, frames

START_MS = 1_800_000_000_000


@pytest.fixture(scope="module")
def cap():
    return recorded_market.load()


def build(cap):
    specs = make_specs(cap, 2)
    hub = Hub(specs)
    tr = FakeTransport()
    conn = hub.connect(False, tr)
    hub.subscribe(conn, ["btcusdt@trade", "btcusdt@bookTicker"])
    return Market(cap, specs, Player(cap, specs, start_ms=START_MS, speed=1.0), hub), hub, tr


def run(market: Market, hub: Hub, start: int, stop: int) -> None:
    for now in range(start, stop, 20):
        market.step(now)
        hub.flush(now)


def messages(tr: FakeTransport) -> list[dict]:
    return [orjson.loads(f) for f in frames(bytes(tr.data))]


class TestSetPrice:
    def test_the_push_locks_the_book_at_the_price_so_last_and_mark_equal_it(self, cap):
        """Last = bid = ask = the pushed price; the mark (book mid) and index print it."""
        market, hub, _ = build(cap)
        run(market, hub, START_MS, START_MS + 5_000)
        st = market.states[0]
        market.set_price(0, 5_890_000, START_MS + 5_000)  # 58900.00 at 2 decimals
        assert (st.last_price, st.book.b, st.book.a) == (5_890_000, 5_890_000, 5_890_000)
        assert market.mark_values(st) == ("58900.00000000", "58900.00000000")
        assert st.price_seq == 1

    def test_the_replay_carries_on_from_the_pushed_level(self, cap):
        """Every later trade and book price is the unshifted replay's plus (pushed - replay's last)."""
        plain, hub_a, tr_a = build(cap)
        moved, hub_b, tr_b = build(cap)
        cut = START_MS + 5_000
        run(plain, hub_a, START_MS, cut)
        run(moved, hub_b, START_MS, cut)
        raw_last = moved.states[0].last_price
        moved.set_price(0, 5_890_000, cut)
        off = 5_890_000 - raw_last
        assert moved.states[0].price_off == off
        n_a, n_b = len(messages(tr_a)), len(messages(tr_b))
        run(plain, hub_a, cut, cut + 20_000)
        run(moved, hub_b, cut, cut + 20_000)
        after_a, after_b = messages(tr_a)[n_a:], messages(tr_b)[n_b:]
        assert len(after_a) == len(after_b) > 10
        pd = Decimal("0.01")
        for a, b in zip(after_a, after_b):
            assert a["e"] == b["e"]
            if a["e"] == "trade":
                assert (Decimal(b["p"]) - Decimal(a["p"])) == off * pd
                assert (b["t"], b["q"]) == (a["t"], a["q"])  # ids and sizes untouched
            else:
                assert Decimal(b["b"]) - Decimal(a["b"]) == off * pd == Decimal(b["a"]) - Decimal(a["a"])
        assert moved.states[0].last_price == plain.states[0].last_price + off

    def test_a_second_push_replaces_the_offset(self, cap):
        market, hub, _ = build(cap)
        run(market, hub, START_MS, START_MS + 5_000)
        raw = market.states[0].last_price
        market.set_price(0, 5_890_000, START_MS + 5_000)
        market.set_price(0, 6_100_000, START_MS + 5_000)
        assert market.states[0].price_off == 6_100_000 - raw

    def test_shifted_prices_never_fall_below_one_tick(self, cap):
        """A push far below the replay's level: prices that would go to 0 or less print one tick."""
        market, hub, tr = build(cap)
        run(market, hub, START_MS, START_MS + 5_000)
        tick = market.specs[0].tick_units
        market.set_price(0, tick, START_MS + 5_000)  # 0.10: the replay then wanders around 0
        n = len(messages(tr))
        run(market, hub, START_MS + 5_000, START_MS + 30_000)
        later = messages(tr)[n:]
        prices = [Decimal(m["p"]) for m in later if m["e"] == "trade"]
        assert prices and min(prices) == Decimal("0.10")

    def test_off_grid_and_unseen_symbols_are_refused(self, cap):
        market, hub, _ = build(cap)
        with pytest.raises(PriceError, match="no price yet"):
            market.set_price(0, 5_890_000, START_MS)
        run(market, hub, START_MS, START_MS + 5_000)
        with pytest.raises(PriceError, match="multiple of the tick"):
            market.set_price(0, 5_890_005, START_MS + 5_000)  # tick is 0.10 = 10 units
        with pytest.raises(PriceError, match="multiple of the tick"):
            market.set_price(0, 0, START_MS + 5_000)


class TestPriceBody:
    def test_string_and_number_prices_parse_exactly(self):
        assert faults.parse_price({"symbol": "BTCUSDT", "price": "58900.10"}) == ("BTCUSDT", Decimal("58900.10"))
        assert faults.parse_price({"symbol": "BTCUSDT", "price": 58900.1}) == ("BTCUSDT", Decimal("58900.1"))

    @pytest.mark.parametrize("body", [
        [], {"price": "1"}, {"symbol": "", "price": "1"}, {"symbol": "BTCUSDT"},
        {"symbol": "BTCUSDT", "price": "-1"}, {"symbol": "BTCUSDT", "price": "0"},
        {"symbol": "BTCUSDT", "price": "1e5"}, {"symbol": "BTCUSDT", "price": True},
        {"symbol": "BTCUSDT", "price": None}])
    def test_malformed_bodies_are_refused(self, body):
        with pytest.raises(faults.FaultError):
            faults.parse_price(body)
