"""The user data stream end to end on 127.0.0.1: the brain's execution shell with the real ccxt
broker, the real dispatcher and the real stream client, against the local exchange.

- fills pushed by the stream reach the trader (and how long that takes, printed);
- a ghost position (closed at the exchange behind the brain's back) frees its slot on the
  ``ACCOUNT_UPDATE`` that reports it, with no exit sent and new entries still taken;
- stream faults (an expired listenKey, a dropped connection, the planned 24-hour rollover):
  detected, reconnected, resynced by REST, and no fill lost or counted twice while the stream
  was down (the fills the trader published are compared with the exchange's own record).

The latency test runs the exchange in a process of its own (``stamped_sim``), as Binance is;
the fault tests run it in this process on its own thread, so they can read its listenKey.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from common import wire
from services.brain import dispatcher as dsp
from services.brain import execution, risk, rotation, trader, user_feed
from services.exchange_sim import recorded_market
from services.exchange_sim.config import SimParams
from services.exchange_sim.server import SimServer
from tests.integration.sim_thread import server_in_thread
from venue import filters as filters_mod
from venue.binance import user_stream as us
from venue.binance import user_updates as uu
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
from venue.binance.user_stream_client import UserStreamClient, UserStreamConfig
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from venue.port import OrderSpec
from venue.ratelimit import Governor
from tests.fake_host import FnHost

pytestmark = pytest.mark.integration

BTC = "BTCUSDT"
ROUND_TRIPS = 100  # entries and exits: >= 200 fills for the delay measurement


# ---------------------------------------------------------------------------- the exchange
@dataclass
class Sim:
    base: str
    server: SimServer | None = None  # in this process (the fault tests)

    @property
    def ws(self) -> str:
        return "ws" + self.base[len("http"):]

    def fault(self, **body: Any) -> dict:
        r = requests.post(f"{self.base}/_sim/fault", json=body, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()

    def records(self, what: str) -> list[dict]:
        return requests.get(f"{self.base}/_sim/{what}", timeout=5).json()

    def mid(self, symbol: str) -> Decimal:
        b = requests.get(f"{self.base}/fapi/v1/ticker/bookTicker", params={"symbol": symbol}, timeout=5).json()
        return (Decimal(b["bidPrice"]) + Decimal(b["askPrice"])) / 2

    def set_price(self, symbol: str, price: Decimal) -> None:
        r = requests.post(f"{self.base}/_sim/price", json={"symbol": symbol, "price": format(price, "f")}, timeout=5)
        assert r.status_code == 200, r.text

    def stats(self) -> dict:
        return requests.get(f"{self.base}/_sim/stats", timeout=5).json()

    def wait_for_book(self, symbol: str = BTC) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = requests.get(f"{self.base}/fapi/v1/ticker/bookTicker", params={"symbol": symbol}, timeout=5)
                if r.status_code == 200 and Decimal(r.json().get("bidPrice", "0")) > 0:
                    return
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "no book"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cap():
    return recorded_market.load()


@pytest.fixture
def sim(cap):
    """The exchange on its own event loop thread in this process, a fresh account."""
    with server_in_thread(SimParams(symbols=3), cap) as (base, server):
        s = Sim(base=base, server=server)
        s.wait_for_book()
        yield s


@pytest.fixture
def stamped_sim(procs, tmp_path):
    """The exchange in its own process, stamping each trade it pushes (``stamped_sim``)."""
    port_file, stamps = tmp_path / "port", tmp_path / "stamps"
    procs.python("-m", "tests.integration.stamped_sim", str(port_file), str(stamps),
                 cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 90
    while not port_file.exists() or not port_file.read_text():
        assert time.monotonic() < deadline, "stamped sim did not start"
        time.sleep(0.05)
    s = Sim(base=f"http://127.0.0.1:{port_file.read_text()}")
    s.wait_for_book()
    return s, stamps


# ---------------------------------------------------------------------------- the brain's side
@dataclass
class Stack:
    ex: execution.Execution
    client: UserStreamClient
    disp: dsp.Dispatcher
    broker: CcxtBroker
    sim: Sim
    published: list[Any] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    quotes: dict[str, float] = field(default_factory=dict)
    _next_quote: float = 0.0

    def run_until(self, predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
        """The brain's loop: poll the execution, sleep 50 us when idle (its idle sleep)."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, \
                f"timed out waiting for {what}: {self.ex.snapshot()} trades {self.ex.st.trades}"
            if time.monotonic() >= self._next_quote:
                self._next_quote = time.monotonic() + 0.25
                for s in self.symbols:
                    self.quotes[s] = float(self.sim.mid(s))
            self.ex.poll()
            time.sleep(0.00005)

    def fills(self) -> list[str]:
        return [b.trade_id for b in self.published if isinstance(b, wire.Fill)]

    def stream(self) -> dict[str, Any]:
        return self.ex.snapshot()["user_stream"]

    def close(self) -> None:
        self.client.stop(timeout_s=5.0)
        self.disp.close(timeout_s=5.0)
        self.broker.close()


def make_stack(sim: Sim, tmp_path: Path, *, protection: bool,
               client_cfg: dict[str, Any] | None = None) -> Stack:
    gov = Governor()
    broker = CcxtBroker(CcxtConfig(base_url=sim.base, timeout_ms=5_000), governor=gov, api_key=DEMO_API_KEY,
                        api_secret=DEMO_API_SECRET)
    client = UserStreamClient(UserStreamConfig(rest_url=sim.base, ws_url=sim.ws, **(client_cfg or {})),
                              api_key=DEMO_API_KEY, governor=gov)
    disp = dsp.Dispatcher(4, name="it-dispatch")
    filters = filters_mod.fetch_filters(sim.base)
    symbols = sorted(filters)
    cfg = trader.TraderConfig(
        risk=risk.RiskConfig(max_order_notional_usdt=500.0, max_total_notional_usdt=5_000.0, max_leverage=5.0,
                             max_orders_per_minute=10_000, stale_data_ms=60_000, daily_loss_limit_usdt=5_000.0),
        rotation=rotation.RotationConfig(cooldown_s=0.0), exchange_protection=protection)
    stack: Stack

    def quote(symbol: str) -> risk.Quote | None:
        p = stack.quotes.get(symbol)
        return risk.Quote(mark_price=p, updated_ms=time.time_ns() // 1_000_000) if p else None

    def publish(body: Any, journal: bool = True) -> None:
        stack.published.append(body)

    ex = execution.Execution(
        cfg=cfg, broker=broker, dispatcher=disp,
        host=FnHost(publish=publish, quote=quote, filters_fn=lambda: dict(filters), symbols_fn=lambda: list(symbols)),
        db_path=tmp_path / "absent.db", balance_poll_s=3_600.0, position_poll_s=3_600.0, user_stream=client)
    stack = Stack(ex=ex, client=client, disp=disp, broker=broker, sim=sim, symbols=symbols)
    client.start()
    stack.run_until(lambda: ex.ready and client.connected and ex.user_stream.resyncs_done >= 1, "ready", 60)
    return stack


def signal(symbol: str, price: float, n: int, side: str = "BUY", stop_pct: float = 1.0) -> wire.SignalGenerated:
    d = 1 if side == "BUY" else -1
    return wire.SignalGenerated(signal_id=f"{symbol}-{n}-{side}", symbol=symbol, side=side, entry=price,
                                stop=price * (1 - d * stop_pct / 100), target=price * (1 + d * 2 * stop_pct / 100),
                                confidence=0.6, cold=False, features={"rr": 2.0})


def open_trade(stack: Stack, symbol: str, n: int, **kw: Any) -> trader.Trade:
    stack.run_until(lambda: symbol in stack.quotes, "a quote")
    stack.ex.on_signal(signal(symbol, stack.quotes[symbol], n, **kw))
    stack.run_until(lambda: symbol in stack.ex.st.trades and stack.ex.st.trades[symbol].position > 0, "the entry")
    return stack.ex.st.trades[symbol]


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


# ---------------------------------------------------------------------------- (a) fills
def test_every_fill_reaches_the_trader_through_the_stream_and_the_delay_is_printed(stamped_sim, tmp_path, monkeypatch):
    """100 round trips (entry, local stop exit) against the exchange in its own process: every
    trade the exchange made is published by the trader exactly once, every one of them came
    through the stream, and the delay from the exchange pushing a fill to the trader applying
    it is printed (p50/p99 over >= 200 fills, not asserted: timing is the bench's job)."""
    sim, stamp_file = stamped_sim
    applied_ns: dict[str, int] = {}
    first_by_stream: set[str] = set()
    original = user_feed.apply

    def timed(ex, step):
        if not isinstance(step, uu.Fill):
            return original(ex, step)
        o = ex.st.orders.get(step.client_order_id)
        known = o is None or step.fill.trade_id in o.trade_ids  # no order: REST closed the trade already
        original(ex, step)
        applied_ns.setdefault(step.fill.trade_id, time.perf_counter_ns())
        if not known:
            first_by_stream.add(step.fill.trade_id)

    monkeypatch.setattr(user_feed, "apply", timed)
    stack = make_stack(sim, tmp_path, protection=False)
    received_ns: dict[str, int] = {}
    drain = stack.client.drain

    def drain_noting_receipt(max_items):
        items = drain(max_items)
        for ns, e in items:
            if isinstance(e, us.OrderUpdate) and e.is_trade:
                received_ns.setdefault(e.trade_id, ns)
        return items

    stack.client.drain = drain_noting_receipt
    try:
        for n in range(ROUND_TRIPS):
            t = open_trade(stack, BTC, n)
            stack.ex.on_range(BTC, t.stop - 1.0, t.stop)  # the local watcher sees the stop touched
            stack.run_until(lambda: BTC not in stack.ex.st.trades, "the exit")
        sim_ids = sorted(str(t["id"]) for t in sim.records("trades"))
        # the last exit may be closed by its REST answer before the stream's copy is read
        stack.run_until(lambda: set(applied_ns) >= set(sim_ids), "every fill through the stream", timeout_s=10)
        snap = stack.ex.snapshot()
    finally:
        stack.close()
    stamps = dict(line.split() for line in stamp_file.read_text().splitlines())
    assert sorted(stack.fills()) == sim_ids  # each once: none lost, none twice
    assert sorted(applied_ns) == sim_ids  # and every one came through the stream
    assert snap["trades_closed"] == ROUND_TRIPS and snap["fills"] == len(sim_ids) >= 2 * ROUND_TRIPS
    assert snap["user_stream"]["rejects"] == {} and snap["user_stream"]["reconnects"] == 0
    assert "closed_at_exchange" not in snap["trader"]  # our own exits never look like a close behind our back
    delays_us = [(applied_ns[t] - int(stamps[t])) / 1000 for t in sim_ids]
    wire_us = [(received_ns[t] - int(stamps[t])) / 1000 for t in sim_ids]
    queue_us = [(applied_ns[t] - received_ns[t]) / 1000 for t in sim_ids]
    print(f"\nfill pushed by the exchange -> applied by the trader, over {len(delays_us)} fills "
          f"({len(first_by_stream)} first known through the stream, the rest by the REST answer first): "
          f"p50 {statistics.median(delays_us):.0f} us, p99 {percentile(delays_us, 99):.0f} us, "
          f"max {max(delays_us):.0f} us; of which exchange -> client thread p50 {statistics.median(wire_us):.0f} us "
          f"p99 {percentile(wire_us, 99):.0f} us, client thread -> trader p50 {statistics.median(queue_us):.0f} us "
          f"p99 {percentile(queue_us, 99):.0f} us")


def assert_fills_exact(stack: Stack, sim: Sim) -> None:
    """Every trade of the account was published by the trader exactly once (none lost while
    the stream was down, none counted twice when REST and the stream both brought it)."""
    sim_ids = sorted(str(t["id"]) for t in sim.records("trades"))
    assert sorted(stack.fills()) == sim_ids
    cids = [o["clientOrderId"] for o in sim.records("orders")]
    assert len(cids) == len(set(cids))  # no order sent twice


def closed(stack: Stack) -> list[wire.TradeClosed]:
    return [b for b in stack.published if isinstance(b, wire.TradeClosed)]


def below(price: float, pct: float, tick: Decimal) -> Decimal:
    return (Decimal(repr(price * (1 - pct / 100))) / tick).to_integral_value() * tick


# ---------------------------------------------------------------------------- (b) ghost position
def test_a_position_closed_behind_the_brains_back_frees_its_slot_on_its_account_update(sim, tmp_path, monkeypatch):
    """Long BTC, protected at the exchange; a manual reduce-only MARKET sell (another client id,
    another client) closes it. The step that frees the slot is the first ACCOUNT_UPDATE
    position (0) after the close; no exit order is ever sent; the trade closes at the manual
    fill's price, learned, reason EXTERNAL; the protective orders are cancelled; a new entry on
    the same symbol is taken and fills. The REST position poll is off: only the stream can tell."""
    steps: list[tuple[uu.Step, bool]] = []
    original = user_feed.apply

    def recording(ex, step):
        original(ex, step)
        t = ex.st.trades.get(BTC)
        steps.append((step, t is None or bool(t.flat_at_exchange_ms)))

    monkeypatch.setattr(user_feed, "apply", recording)
    stack = make_stack(sim, tmp_path, protection=True)
    manual = CcxtBroker(CcxtConfig(base_url=sim.base, timeout_ms=5_000), governor=Governor(), api_key=DEMO_API_KEY,
                        api_secret=DEMO_API_SECRET)
    try:
        t = open_trade(stack, BTC, 1)
        stack.run_until(lambda: stack.ex.st.trades[BTC].protected_ms > 0, "the exchange-held stop")
        steps.clear()
        res = manual.submit(OrderSpec(client_order_id="manual-close-1", symbol=BTC, side="SELL", order_type="MARKET",
                                      qty=t.position, reduce_only=True))
        stack.run_until(lambda: any(free for _, free in steps), "the slot")
        first_free = next(s for s, free in steps if free)
        positions = [s for s, _ in steps if isinstance(s, uu.Position) and s.symbol == BTC]
        stack.run_until(lambda: BTC not in stack.ex.st.trades, "the trade closed")
        stack.run_until(lambda: not any(not o.is_terminal for o in stack.ex.st.algos.values()), "protection cancelled")
        assert stack.broker.open_algo_orders(BTC) == []
        counters = dict(stack.ex.st.counters)
        problems = stack.ex.counters["problems"]
        t2 = open_trade(stack, BTC, 2)  # new entries are not blocked
        assert t2.position > 0
        assert_fills_exact(stack, sim)
    finally:
        manual.close()
        stack.close()
    assert first_free == positions[0] == uu.Position(
        symbol=BTC, qty=Decimal(0), transaction_ms=first_free.transaction_ms, reason="ORDER")
    assert counters.get("exits", 0) == 0 and counters["closed_at_exchange"] == 1
    assert counters["protections_armed"] == 1 and "protection_rejected" not in counters  # nothing re-armed
    assert problems == 0
    [tc] = closed(stack)
    assert (tc.exit_reason, tc.learned, tc.exit_price) == ("EXTERNAL", True, float(res.fills[0].price))


# ---------------------------------------------------------------------------- (c) stream faults
def test_an_expired_listen_key_gets_a_new_key_and_a_resync_that_finds_the_stop_that_fired_meanwhile(
        sim, tmp_path):
    """``listen_key_expire`` while long BTC: the client reads listenKeyExpired, its next key
    request is refused twice (503: a gap of seconds), and meanwhile the price is pushed through
    the exchange-held stop. On reconnect (a new key) the Resync's REST reads find the position
    flat and the stop triggered: the trade closes, and every fill is there exactly once."""
    stack = make_stack(sim, tmp_path, protection=True)
    try:
        t = open_trade(stack, BTC, 1)
        stack.run_until(lambda: stack.ex.st.trades[BTC].protected_ms > 0, "the exchange-held stop")
        old_key = sim.server.user.active.key
        sim.fault(action="http_error", status=503, count=2, path="/fapi/v1/listenKey", method="POST")
        sim.fault(action="listen_key_expire")
        stack.run_until(lambda: not stack.client.connected, "the stream to notice")
        sim.set_price(BTC, below(t.stop, 0.5, stack.ex.filters[BTC].tick_size))
        stack.run_until(lambda: BTC not in stack.ex.st.trades, "the trade closed", timeout_s=60)
        stack.run_until(lambda: stack.client.connected, "the stream back")
        new_key = sim.server.user.active.key
        stream = stack.stream()
        assert_fills_exact(stack, sim)
    finally:
        stack.close()
    assert new_key != old_key and sim.stats()["user_stream"]["keys_expired"] == 1
    assert stream["counters"]["ended:listen_key_expired"] == 1 and stream["connections"] == 2
    assert stream["counters"]["listen_key_post_failed"] == 2 and stream["resyncs_done"] == 2
    [tc] = closed(stack)
    assert tc.exit_reason in ("STOP", "EXTERNAL") and stack.ex.st.counters.get("exits", 0) == 0
    assert stack.ex.st.counters["protections_armed"] == 1  # nothing re-armed for a closed position


def test_a_dropped_stream_reconnects_resyncs_and_loses_no_fill_of_the_target_that_fired_meanwhile(sim, tmp_path):
    """``user_stream_close`` (TCP dropped, no close frame) while long BTC; key requests refused
    twice, the price pushed through the target meanwhile: same key on reconnect, Resync, the
    trade closes, every fill exactly once."""
    stack = make_stack(sim, tmp_path, protection=True)
    try:
        t = open_trade(stack, BTC, 1)
        stack.run_until(lambda: stack.ex.st.trades[BTC].protected_ms > 0, "the exchange-held stop")
        old_key = sim.server.user.active.key
        sim.fault(action="http_error", status=503, count=2, path="/fapi/v1/listenKey", method="POST")
        sim.fault(action="user_stream_close", abort=True)
        stack.run_until(lambda: not stack.client.connected, "the stream to notice")
        sim.set_price(BTC, below(t.target, -0.5, stack.ex.filters[BTC].tick_size))
        stack.run_until(lambda: BTC not in stack.ex.st.trades, "the trade closed", timeout_s=60)
        stack.run_until(lambda: stack.client.connected, "the stream back")
        # the trade may close (position check, fills fetched) before the stream is back: wait
        # for the reconnection's own resync rather than reading the counters at once
        stack.run_until(lambda: stack.stream()["resyncs_done"] >= 2, "the reconnection's resync")
        stream = stack.stream()
        assert_fills_exact(stack, sim)
    finally:
        stack.close()
    assert sim.server.user.active is None or sim.server.user.active.key == old_key  # closed on stop
    assert stream["counters"]["ended:aborted"] == 1 and stream["connections"] == 2
    assert stream["resyncs_done"] == 2
    [tc] = closed(stack)
    assert tc.exit_reason in ("TARGET", "EXTERNAL") and stack.ex.st.counters.get("exits", 0) == 0
    assert stack.ex.st.counters["protections_armed"] == 1  # nothing re-armed for a closed position


def test_the_planned_rollover_reconnects_and_resyncs_without_losing_a_fill(sim, tmp_path):
    """Connections replaced every 1.5 s (the 24-hour rollover, shortened): three round trips
    spread over them; every fill exactly once, each replacement resynced."""
    stack = make_stack(sim, tmp_path, protection=False, client_cfg={"max_connection_s": 1.5})
    try:
        for n in range(3):
            t = open_trade(stack, BTC, n)
            stack.ex.on_range(BTC, t.stop - 1.0, t.stop)
            stack.run_until(lambda: BTC not in stack.ex.st.trades, "the exit")
            deadline = time.monotonic() + 1.0
            stack.run_until(lambda: time.monotonic() > deadline, "a second")
        # connections roll over every 1.5 s: read the counters at a moment when the newest
        # connection's resync is done (on a loaded machine a snapshot taken at once may fall
        # between a connection and its resync)
        snap: dict[str, Any] = {}

        def current_resynced() -> bool:
            snap.clear()
            snap.update(stack.stream())
            return snap["resyncs_done"] == snap["connections"]

        stack.run_until(current_resynced, "the newest connection's resync")
        stream = snap
        assert_fills_exact(stack, sim)
    finally:
        stack.close()
    assert stream["counters"]["ended:rollover"] >= 2
    assert stream["resyncs_done"] == stream["connections"] >= 3
