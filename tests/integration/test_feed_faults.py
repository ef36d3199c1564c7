"""The feed process against the sim process under every fault the sim can inject: it stays the
same process, recovers, counts what it refused exactly, reports the gaps the sim made, times
its recoveries, and hydrates candles from REST within the rate limit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from common import bus, records, wire, zmqutil
from common.config import endpoints
from common.records import Kind
from common.ring import Ring
from tests.conftest import REPO

pytestmark = pytest.mark.integration

RING_CAPACITY = 1 << 20
WAIT_S = 30.0  # generous upper bound for any one condition (slow CI); tests never assert on time
FAST_RECOVERY = {  # seconds: quick reconnects and a short watchdog so faults resolve fast
    "AEGIS_FEED__SILENCE_TIMEOUT_S": "1.5",
    "AEGIS_FEED__RECONNECT_INITIAL_S": "0.2",
    "AEGIS_FEED__RECONNECT_MAX_S": "1.0",
    "AEGIS_FEED__HYDRATE_CANDLES": "0",
    "AEGIS_FEED__ROLLOVER_S": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = pred()
        if out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class SimProc:
    """``python -m services.exchange_sim`` on 127.0.0.1, with its REST and test-control API."""

    def __init__(self, procs, log: Path, *, symbols: int, speed: float, port: int = 0,
                 env: dict[str, str] | None = None) -> None:
        self.procs, self.log, self.symbols, self.speed = procs, log, symbols, speed
        self.env = env
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = self.procs.python(
            "-m", "services.exchange_sim", "--port", str(self.port), "--symbols", str(self.symbols),
            "--speed", str(self.speed), "--source", "ticks", cwd=REPO, env=self.env, stdout=subprocess.PIPE,
            stderr=open(self.log, "a"), text=True)
        if self.port == 0:
            line = self.proc.stdout.readline()
            assert line.startswith("PORT "), self.log.read_text()[-2000:]
            self.port = int(line.split()[1])
        wait_until(self._pings, "the sim to answer")

    def _pings(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("/fapi/v1/ping"), timeout=1):
                return True
        except OSError:
            return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url("/_sim/stats"), timeout=5) as r:
            return json.loads(r.read())

    def fault(self, **body: Any) -> dict:
        req = urllib.request.Request(self.url("/_sim/fault"), data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            out = json.loads(r.read())
        assert out["ok"], out
        return out

    def stop(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        assert self.proc.wait(10) == 0


class FeedProc:
    """``python -m services.feed`` with a private run dir and a ring this test owns and reads."""

    def __init__(self, procs, tmp: Path, sim_port: int, **env_extra: str) -> None:
        self.tmp = tmp
        self.run_dir = tmp / "run"
        self.ring_path = str(tmp / "feed.ring")
        self.ring = Ring.create(self.ring_path, RING_CAPACITY)
        self.log = tmp / "feed.log"
        env = dict(os.environ)
        env.update({"AEGIS_RUN_DIR": str(self.run_dir), "AEGIS_RING__PATH": self.ring_path,
                    "AEGIS_SIM__PORT": str(sim_port), "AEGIS_LOG__LEVEL": "info",
                    "AEGIS_FEED__STATUS_INTERVAL_S": "0.2", "PYTHONUNBUFFERED": "1"})
        env.update(env_extra)
        self.proc = procs.python("-m", "services.feed", cwd=REPO, env=env, stderr=open(self.log, "w"))
        self.pid = self.proc.pid
        self.final: dict | None = None
        self._reader = None
        self._chunks: list[np.ndarray] = []

    @property
    def endpoints(self):
        return endpoints(self.run_dir)

    def wait_ready(self) -> None:
        wait_until(lambda: (self.run_dir / "feed.ready").exists() or self.proc.poll() is not None,
                   "the feed to be ready")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def stats(self) -> dict:
        """The feed's latest stats file (named by pid, or pid and start time)."""
        for path in (self.run_dir / "stats").glob(f"feed.{self.pid}*.json"):
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return {}
        return {}

    def wait_for(self, pred: Callable[[dict], Any], what: str, timeout_s: float = WAIT_S) -> dict:
        try:
            return wait_until(lambda: (lambda s: s if s and pred(s) else None)(self.stats()), what, timeout_s)
        except AssertionError:
            raise AssertionError(f"timed out waiting for {what}; stats={self.stats()}\n"
                                 f"{self.log.read_text()[-3000:]}") from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> dict:
        """SIGTERM, exit 0, and the final stats."""
        os.killpg(self.pid, signal.SIGTERM)
        assert self.proc.wait(15) == 0, self.log.read_text()[-3000:]
        self.final = self.stats()
        return self.final

    def records(self) -> np.ndarray:
        """Every record in the ring so far (the test is the only reader; the ring never wraps
        here). Callable while the feed runs: what was read before is kept, not read twice."""
        if self._reader is None:
            self._reader = self.ring.reader("saved")
        out = records.empty(65536)
        while True:
            n = self._reader.read_batch(out)
            if n == 0:
                break
            self._chunks.append(out[:n].copy())
        assert self._reader.lost == 0
        return np.concatenate(self._chunks) if self._chunks else records.empty(0)

    def names(self) -> list[str]:
        return self.ring.symbol_names()


@pytest.fixture
def rig(procs, short_tmp):
    """A sim (3 symbols, speed 2) and a feed on trade + bookTicker with fast recovery settings."""
    sim = SimProc(procs, short_tmp / "sim.log", symbols=3, speed=2.0)
    feed = FeedProc(procs, short_tmp, sim.port, AEGIS_FEED__MAX_SYMBOLS="3", **FAST_RECOVERY)
    feed.wait_ready()
    feed.wait_for(lambda s: s["ticks_written"] > 100, "ticks to flow")
    yield sim, feed
    feed.ring.close()


def ticks_flow_again(feed: FeedProc, after: int) -> dict:
    return feed.wait_for(lambda s: s["ticks_written"] > after + 100, "ticks to flow after the fault")


def ids_of(recs: np.ndarray, symbol_id: int, kind: Kind) -> np.ndarray:
    sel = recs[(recs["kind"] == int(kind)) & (recs["symbol_id"] == symbol_id)]
    return sel["id"]


def trade_ids(recs: np.ndarray, symbol_id: int) -> np.ndarray:
    return ids_of(recs, symbol_id, Kind.TRADE)


# ---------------------------------------------------------------------------- disconnects
@pytest.mark.parametrize("abort,cause", [(False, "closed"), (True, "aborted")])
def test_feed_recovers_from_a_server_close(rig, abort, cause):
    """A close (with a close frame, as in the 24-hour disconnect, or a dropped TCP connection)
    is one disconnect of that cause, one timed recovery, and ticks flow on in the same process."""
    sim, feed = rig
    before = feed.stats()
    sim.fault(action="close", conn="all", code=1001, abort=abort)
    s = feed.wait_for(lambda s: s["recovery_ms_by_cause"], "a recovery to be recorded")
    ticks_flow_again(feed, s["ticks_written"])
    s = feed.stop()
    assert s["pid"] == before["pid"] == feed.pid  # the same process throughout
    assert s["disconnect_causes"] == {cause: 1}
    assert s["reconnects"] == 1
    assert list(s["recovery_ms_by_cause"]) == [cause]
    assert s["last_recovery_cause"] == cause and s["last_recovery_ms"] > 0
    assert s["rejected"] == {}
    assert s["ticks_written"] == feed.ring.counters()["written"]
    print(f"recovery after close abort={abort}: {s['last_recovery_ms']} ms")


def test_feed_replaces_a_stalled_connection_after_the_silence_timeout(rig):
    """A stall longer than the silence timeout: the watchdog closes the socket, the feed
    reconnects and ticks flow again; one silent reset, cause 'silent'."""
    sim, feed = rig
    sim.fault(action="stall", conn="all", seconds=6)
    s = feed.wait_for(lambda s: s["recovery_ms_by_cause"], "a recovery to be recorded")
    ticks_flow_again(feed, s["ticks_written"])
    assert feed.alive()
    s = feed.stop()
    assert s["silent_resets"] == 1
    assert s["disconnect_causes"] == {"silent": 1}
    assert list(s["recovery_ms_by_cause"]) == ["silent"]
    print(f"recovery after a 6 s stall (silence timeout 1.5 s): {s['last_recovery_ms']} ms")


def test_feed_rides_out_a_sim_restart_on_the_same_port(procs, short_tmp):
    """The exchange goes away (connections refused for a while) and comes back with its id
    counters restarted: the feed keeps retrying, reconnects and writes ticks again. A stream
    whose new ids start at or below the last one it saw is exactly one sequence reset (the
    new ticks written, none dropped as a copy of an old one); a stream the restarted replay
    had already carried past that id is one gap; nothing is counted as a duplicate."""
    port = free_port()
    sim = SimProc(procs, short_tmp / "sim.log", symbols=3, speed=2.0, port=port)
    feed = FeedProc(procs, short_tmp, port, AEGIS_FEED__MAX_SYMBOLS="3", **FAST_RECOVERY)
    streams = [(sid, kind) for sid in range(3) for kind in (Kind.TRADE, Kind.BOOK)]
    try:
        feed.wait_ready()
        feed.wait_for(lambda s: s["ticks_written"] > 100, "ticks to flow")
        wait_until(lambda: all(len(ids_of(feed.records(), *st)) >= 2 for st in streams),
                   "two trades and two quotes on every symbol before the stop")
        sim.stop()
        feed.wait_for(lambda s: s["connect_failures"] >= 2, "connection attempts to be refused")
        # the old connection's frames were all read before its close: the ring holds them all
        old = feed.records()
        last = {st: int(ids_of(old, *st)[-1]) for st in streams}
        written = feed.stats()["ticks_written"]
        # The restarted exchange replays from its first ids at once, whether the feed is back
        # or not: a stream shows a reset only when the feed subscribes before the replay passed
        # the last id it saw, else a gap (a race: a feed held back longer than the first run
        # lasted sees only gaps; tests/unit/feed/test_streams.py pins both rules). At a quarter
        # of the first run's speed the replay takes four times as long to get there.
        sim.speed = 0.5
        sim.start()
        new = wait_until(lambda: (lambda r: (r,) if all(len(ids_of(r, *st)) for st in streams) else None)(
            feed.records()[len(old):]), "a tick on every stream after the restart", timeout_s=3 * WAIT_S)[0]
        first = {st: int(ids_of(new, *st)[0]) for st in streams}
        reset = {st for st in streams if first[st] <= last[st]}
        ticks_flow_again(feed, written)
        assert feed.alive()
        s = feed.stop()
        assert reset, (last, first)  # the real symbol's quotes, the densest stream, reset at least
        assert s["sequence_resets"] == len(reset)
        assert s["duplicates"] == 0  # no new tick was taken for a copy of an old one
        assert s["reconnects"] == 1
        assert set(s["recovery_ms_by_cause"]) <= {"closed", "aborted"}
        assert s["rejected"] == {}
        # in the ring: one step back where a stream reset, strictly increasing ids elsewhere
        recs = feed.records()
        for st in streams:
            ids = ids_of(recs, *st)
            back = [len(ids_of(old, *st)) - 1] if st in reset else []
            assert np.flatnonzero(np.diff(ids) <= 0).tolist() == back, (st, last[st], first[st])
        names = feed.names()
        assert {(g["symbol"], g["expected"], g["got"]) for g in s["gap_log"]} == {
            (names[sid], last[(sid, kind)] + 1, first[(sid, kind)]) for sid, kind in streams
            if kind == Kind.TRADE and (sid, kind) not in reset and first[(sid, kind)] != last[(sid, kind)] + 1}
        print(f"recovery across a sim restart: {s['last_recovery_ms']} ms "
              f"({s['connect_failures']} refused attempts, {len(reset)} of 6 streams reset)")
    finally:
        feed.ring.close()


# ---------------------------------------------------------------------------- gaps
def test_feed_reports_exactly_the_gap_a_short_stall_made(procs, short_tmp):
    """A stall shorter than the silence timeout drops frames on the server: the feed stays
    connected and reports one gap per symbol that traded meanwhile, missing exactly the
    trade ids the sim dropped; the ring's ids show the same holes and nothing else."""
    sim = SimProc(procs, short_tmp / "sim.log", symbols=3, speed=2.0)
    env = dict(FAST_RECOVERY, AEGIS_FEED__SILENCE_TIMEOUT_S="10", AEGIS_FEED__CHANNELS="trade",
               AEGIS_FEED__MAX_SYMBOLS="3")
    feed = FeedProc(procs, short_tmp, sim.port, **env)
    sub = None
    try:
        feed.wait_ready()
        sub = bus.Subscriber([feed.endpoints.feed_pub], [wire.EventType.FEED_STATUS])
        feed.wait_for(lambda s: s["ticks_written"] > 100, "ticks to flow")
        sim.fault(action="stall", conn="all", seconds=1.5)
        wait_until(lambda: not any(c["stalled"] for c in sim.stats()["connections"]), "the stall to end")
        dropped = sum(c["frames_dropped"] for c in sim.stats()["connections"])
        assert dropped > 0
        s = feed.wait_for(lambda s: s["gap_ids_missed"] == dropped, "the gap to be reported")
        status = wait_until(lambda: next((e.body for e in sub.drain() if e.body.detail["gaps"] == s["gaps"]),
                                         None), "FEED_STATUS to carry the gaps")
        assert status.detail["gap_ids_missed"] == float(dropped)
        # freeze the server side, let the feed drain, then compare everything exactly
        sim.fault(action="stall", conn="all", seconds=60)
        sent_before = sum(c["frames_sent"] for c in sim.stats()["connections"])
        sent = wait_until(lambda: (lambda n: n if n == sent_before else None)(
            sum(c["frames_sent"] for c in sim.stats()["connections"])), "the stall to freeze the stream")
        feed.wait_for(lambda s: s["frames_received"] == sent, "the feed to read every frame sent")
        s = feed.stop()
        assert s["reconnects"] == 0 and s["rejected"] == {} and s["duplicates"] == 0
        assert s["frames_received"] == sent == s["ticks_written"]
        assert s["gaps_by_stream"] == {"trade": s["gaps"]}
        assert 1 <= s["gaps"] <= 3
        assert s["gap_ids_missed"] == dropped
        recs = feed.records()
        holes = set()
        for sid, name in enumerate(feed.names()):
            ids = trade_ids(recs, sid)
            assert np.all(np.diff(ids) > 0)
            for i in np.flatnonzero(np.diff(ids) != 1):
                holes.add((name, int(ids[i]) + 1, int(ids[i + 1])))
        assert holes == {(g["symbol"], g["expected"], g["got"]) for g in s["gap_log"]}
        assert sum(got - exp for _, exp, got in holes) == dropped
    finally:
        if sub is not None:
            sub.close()
        feed.ring.close()


# ---------------------------------------------------------------------------- poison
def _poison_frames(now_ms: int) -> dict[str, str]:
    """Frames the firewall must refuse, in the combined-stream wrapper, with current times."""
    def trade(**over: Any) -> str:
        d = {"e": "trade", "E": now_ms, "T": now_ms, "s": "BTCUSDT", "t": 1, "p": "61800.3",
             "q": "0.010", "X": "MARKET", "m": False}
        d.update(over)
        return json.dumps({"stream": "btcusdt@trade", "data": d})

    return {
        "bad_price": trade(p="NaN"),
        "bad_qty": trade(q="-1"),
        "bad_timestamp": trade(E=now_ms + 86_400_000, T=now_ms + 86_400_000),
        "unknown_symbol": trade(s="NOPEUSDT"),
        "spot_format": trade(M=True),
        "missing_field": json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "E": now_ms}}),
        "crossed_book": json.dumps({"stream": "btcusdt@bookTicker", "data": {
            "e": "bookTicker", "u": 1, "s": "BTCUSDT", "b": "101", "B": "1", "a": "100", "A": "1",
            "T": now_ms, "E": now_ms}}),
    }


def test_every_poison_frame_is_refused_with_its_reason_and_the_stream_goes_on(rig):
    """Each of the sim's poison kinds and each hand-made bad frame is refused exactly once
    with its reason; the connection survives (no reconnect) and nothing bad reaches the ring."""
    sim, feed = rig
    expected = {"bad_json": 2, "not_utf8": 1, "wrong_type": 1, "unknown_event": 1, "empty_frame": 1}
    for kind in ("garbage", "invalid_utf8", "truncated", "wrong_types", "unknown_event", "empty"):
        sim.fault(action="poison", conn="all", kind=kind)
    made = _poison_frames(int(time.time() * 1000))
    sim.fault(action="poison", conn="all", frames=list(made.values()))
    for reason in made:
        expected[reason] = expected.get(reason, 0) + 1
    s = feed.wait_for(lambda s: sum(s["rejected"].values()) == sum(expected.values()),
                      "every poison frame to be refused")
    ticks_flow_again(feed, s["ticks_written"])
    s = feed.stop()
    assert s["rejected"] == expected
    assert s["reconnects"] == 0 and s["gaps"] == 0
    recs = feed.records()
    assert len(recs) == s["ticks_written"]
    assert np.all(np.isfinite(recs["price"])) and np.all(recs["price"] > 0)
    assert np.all(recs["qty"] > 0)
    assert sorted(feed.names()) == ["BTCUSDT", "D001USDT", "D002USDT"]
    now_ms = time.time() * 1000
    assert np.all(recs["event_ms"] < now_ms + 5_000)


# ---------------------------------------------------------------------------- REST faults
def test_discovery_retries_429_418_and_5xx_then_discovers(procs, short_tmp):
    """exchangeInfo answered 429, 418 (Retry-After honoured) and 503 before succeeding: the
    feed retries within its attempts and streams the discovered symbols."""
    sim = SimProc(procs, short_tmp / "sim.log", symbols=3, speed=2.0)
    for status in (429, 418, 503):
        sim.fault(action="http_error", status=status, count=1, path="/fapi/v1/exchangeInfo")
    feed = FeedProc(procs, short_tmp, sim.port, AEGIS_FEED__MAX_SYMBOLS="3", **FAST_RECOVERY)
    try:
        feed.wait_ready()
        feed.wait_for(lambda s: s["ticks_written"] > 100, "ticks to flow")
        s = feed.stop()
        assert s["source"] == "discovered"
        assert sorted(feed.names()) == ["BTCUSDT", "D001USDT", "D002USDT"]
        assert (s["rest"]["throttled"], s["rest"]["server_errors"]) == (2, 1)
        assert s["rest"]["requests"] == 5  # 4 for exchangeInfo, 1 for the 24h tickers
        assert s["rest"]["waited_s"] > 0  # the Retry-After answers were waited out, not hammered
        assert sim.stats()["pending_http_faults"] == 0
    finally:
        feed.ring.close()


def test_discovery_that_keeps_failing_falls_back_and_says_so(procs, short_tmp):
    """exchangeInfo failing every time: the feed uses the built-in list, says 'fallback' in
    FEED_STATUS, and streams (the first fallback pair, BTCUSDT, is one the sim serves)."""
    sim = SimProc(procs, short_tmp / "sim.log", symbols=3, speed=2.0)
    sim.fault(action="http_error", status=503, count=1000, path="/fapi/v1/exchangeInfo")
    feed = FeedProc(procs, short_tmp, sim.port, AEGIS_FEED__MAX_SYMBOLS="1", **FAST_RECOVERY)
    sub = None
    try:
        feed.wait_ready()
        sub = bus.Subscriber([feed.endpoints.feed_pub], [wire.EventType.FEED_STATUS])
        feed.wait_for(lambda s: s["ticks_written"] > 100, "ticks to flow")
        status = wait_until(lambda: next((e.body for e in sub.drain()), None), "a FEED_STATUS")
        assert status.message.startswith("fallback: ")
        assert status.state == "STREAMING"
        s = feed.stop()
        assert s["source"].startswith("fallback: ")
        assert feed.names() == ["BTCUSDT"]
        assert s["rest"]["server_errors"] == 4  # feed.discovery_attempts
    finally:
        if sub is not None:
            sub.close()
        feed.ring.close()


def test_rediscovery_after_a_fallback_start_adds_the_real_top_symbols(procs, short_tmp):
    """Discovery fails at start (the built-in list: BTCUSDT, ETHUSDT); three seconds later it
    succeeds: the sim's next symbol by volume is added within the headroom (ring symbol table,
    a new connection, its ticks flowing, its trading rules published), and ETHUSDT, which
    this exchange does not list, is reported as not trading; nothing is dropped."""
    sim = SimProc(procs, short_tmp / "sim.log", symbols=3, speed=2.0)
    sim.fault(action="http_error", status=503, count=4, path="/fapi/v1/exchangeInfo")  # = discovery_attempts
    feed = FeedProc(procs, short_tmp, sim.port, AEGIS_FEED__MAX_SYMBOLS="2",
                    AEGIS_FEED__REDISCOVER_INTERVAL_S="3", **FAST_RECOVERY)
    # subscribed before the feed binds (ZeroMQ connects when it does): nothing published is missed
    sub = bus.Subscriber([feed.endpoints.feed_pub], [wire.EventType.SYMBOL_INFO])
    try:
        feed.wait_ready()
        s = feed.wait_for(lambda s: s.get("rediscovery", {}).get("added"), "a re-discovery that adds a symbol")
        assert s["source"].startswith("fallback: ")
        added = s["rediscovery"]["added"]
        assert len(added) == 1 and added[0] not in ("BTCUSDT", "ETHUSDT")  # headroom(2) = 3 symbols
        assert s["rediscovery"]["not_trading"] == ["ETHUSDT"]
        assert feed.names() == ["BTCUSDT", "ETHUSDT", added[0]]
        sid = feed.names().index(added[0])
        feed.wait_for(lambda s: s["connections"] == 2 and s["connection_detail"][1]["frames"] > 0,
                      "frames on a connection for the added symbol")
        rules = wait_until(lambda: [e.body for e in sub.drain() if e.body.symbol == added[0]], "its SYMBOL_INFO")
        assert rules[0].tick_size > 0 and rules[0].step_size > 0
        s = feed.stop()
        assert s["rediscovery"]["failures"] == 0 and s["symbols"] == 3
        assert (feed.records()["symbol_id"] == sid).any()  # its ticks reached the ring
    finally:
        sub.close()
        feed.ring.close()


# ---------------------------------------------------------------------------- hydration
class Clock:
    """The in-process sim's clock, moved by hand."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now


def test_feed_hydrates_closed_candles_from_rest_klines(procs, short_tmp):
    """At start-up the feed fetches every symbol's closed 1m candles from REST klines (through
    one 429 with Retry-After) and pushes each exactly once to the journal as CANDLE_CLOSED,
    equal to what the exchange's REST reports."""
    from services.exchange_sim import recorded_market
    from services.exchange_sim.config import SimParams
    from services.exchange_sim.server import SimServer

    async def scenario() -> None:
        # the sim plays 12 minutes of market ending 5 minutes ago, in a moment
        start = (time.time_ns() // 1_000_000 // 60_000 - 17) * 60_000 + 30_000
        clock = Clock(start)
        server = SimServer(SimParams(symbols=2, source="ticks"), capture=recorded_market.load(), clock_ms=clock)
        port = await server.start()
        run_dir = short_tmp / "run"
        run_dir.mkdir(mode=0o700)
        journal = bus.Subscriber.bind_pull(endpoints(run_dir).journal)
        feed = None
        try:
            for _ in range(12 * 60 // 5):
                clock.now += 5_000
                seen = server.steps
                while server.steps < seen + 2:
                    await asyncio.sleep(0.002)
            import aiohttp

            expected: dict[str, list] = {}
            async with aiohttp.ClientSession() as http:
                for name in ("BTCUSDT", "D001USDT"):
                    async with http.get(f"http://127.0.0.1:{port}/fapi/v1/klines",
                                        params={"symbol": name, "interval": "1m", "limit": "1500"}) as r:
                        expected[name] = [row for row in await r.json()]
                async with http.post(f"http://127.0.0.1:{port}/_sim/fault", data=json.dumps(
                        {"action": "http_error", "status": 429, "count": 1, "path": "/fapi/v1/klines"})) as r:
                    assert r.status == 200
            assert all(len(rows) >= 11 for rows in expected.values()), expected
            feed = FeedProc(procs, short_tmp, port, AEGIS_FEED__MAX_SYMBOLS="2",
                            AEGIS_FEED__HYDRATE_CANDLES="30", AEGIS_FEED__HYDRATE_CONCURRENCY="1",
                            AEGIS_FEED__ROLLOVER_S="0")
            # the in-process sim must keep serving while we wait, so poll asynchronously
            deadline = time.monotonic() + WAIT_S
            while not feed.stats().get("hydration", {}).get("done"):
                assert time.monotonic() < deadline and feed.alive(), feed.log.read_text()[-3000:]
                await asyncio.sleep(0.05)
            got: list[wire.CandleClosed] = []
            deadline = time.monotonic() + WAIT_S
            want = sum(len(v) for v in expected.values())
            while len(got) < want and time.monotonic() < deadline:
                got.extend(e.body for e in journal.drain() if isinstance(e.body, wire.CandleClosed))
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            got.extend(e.body for e in journal.drain() if isinstance(e.body, wire.CandleClosed))
            s = feed.stats()
            os.killpg(feed.pid, signal.SIGTERM)
            while feed.proc.poll() is None:
                await asyncio.sleep(0.05)
            assert feed.proc.returncode == 0
        finally:
            journal.close()
            zmqutil.term()
            await server.stop()
            if feed is not None:
                feed.ring.close()

        hyd = s["hydration"]
        assert hyd["failed"] == {} and hyd["symbols_done"] == 2
        assert hyd["candles"] == want == len(got)
        assert s["rest"]["throttled"] == 1
        assert journal.tracker.gaps == 0
        for name, rows in expected.items():
            mine = [c for c in got if c.symbol == name]
            assert [(c.open_ms, c.close_ms, c.open, c.high, c.low, c.close, c.volume,
                     c.quote_volume, c.trades, c.buy_volume) for c in mine] == \
                [(r[0], r[6], float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]),
                  float(r[7]), r[8], float(r[9])) for r in rows]
            assert all(c.interval_s == 60 for c in mine)

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_hydrate_pages_through_rest_klines_and_retries_a_5xx():
    """``hydrate`` against the sim's REST: K = 10 in pages of 4 (4 + 4 + 2 requests, one of them
    retried after a 500) yields exactly the last 10 closed candles the exchange reports."""
    import aiohttp

    from services.exchange_sim import recorded_market
    from services.exchange_sim.config import SimParams
    from services.exchange_sim.server import SimServer
    from services.feed import hydrate

    async def scenario() -> None:
        clock = Clock(1_800_000_030_000)  # 30 s into a minute
        server = SimServer(SimParams(symbols=2, source="ticks"), capture=recorded_market.load(), clock_ms=clock)
        port = await server.start()
        try:
            for _ in range(14 * 60 // 5):
                clock.now += 5_000
                seen = server.steps
                while server.steps < seen + 2:
                    await asyncio.sleep(0.002)
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/fapi/v1/klines",
                                    params={"symbol": "D001USDT", "interval": "1m", "limit": "1500"}) as r:
                    truth = await r.json()
                async with http.post(f"{base}/_sim/fault", data=json.dumps(
                        {"action": "http_error", "status": 500, "count": 1, "path": "/fapi/v1/klines"})) as r:
                    assert r.status == 200
            got: list[wire.CandleClosed] = []

            async def emit(c: wire.CandleClosed) -> None:
                got.append(c)

            async with hydrate.RestClient(base, clock_ms=clock) as client:
                rep = await hydrate.hydrate(client, ["D001USDT"], k=10, now_ms=clock.now, emit=emit,
                                            page_limit=4)
                stats = client.stats
        finally:
            await server.stop()
        closed = [r for r in truth if r[6] < clock.now - hydrate.CLOSE_GRACE_MS][-10:]
        assert len(closed) == 10
        assert [(c.open_ms, c.open, c.high, c.low, c.close, c.volume, c.trades) for c in got] == \
            [(r[0], float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]), r[8]) for r in closed]
        assert (rep.requests, rep.candles, rep.symbols_done, rep.failed, rep.rejected) == (3, 10, 1, {}, {})
        assert (stats.requests, stats.server_errors, stats.throttled) == (4, 1, 0)

    asyncio.run(asyncio.wait_for(scenario(), 120))
