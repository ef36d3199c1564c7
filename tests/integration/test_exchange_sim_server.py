"""The sim over real sockets on 127.0.0.1: Binance-shaped REST bodies and stream frames,
one shared market for every connection, live control messages, fault injection, and the
``python -m services.exchange_sim`` process itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from contextlib import asynccontextmanager
from decimal import Decimal

import aiohttp
import orjson
import pytest
import websockets

from services.exchange_sim import recorded_market
from services.exchange_sim.config import SimParams
from services.exchange_sim.server import SimServer, wall_ms
from tests.conftest import REPO, USDM_DATA

pytestmark = pytest.mark.integration

T0_MS = 1_800_000_050_000  # frozen sim clock: 50 s into a minute (2027-01-15 08:00:50 UTC)


@pytest.fixture(scope="module")
def cap():
    return recorded_market.load()


class Clock:
    """A sim clock the test moves by hand."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now


@asynccontextmanager
async def running(cap, clock=wall_ms, **params):
    """A sim serving the tick capture ``cap`` (the program's default source is the candles demo)."""
    server = SimServer(SimParams(**{"source": "ticks", **params}), capture=cap, clock_ms=clock)
    port = await server.start()
    try:
        yield server, port
    finally:
        await server.stop()


def run(coro, timeout_s: float = 90.0):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def get(port: int, path: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}{path}") as r:
            return r.status, orjson.loads(await r.read())


async def post(port: int, path: str, body: object) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{port}{path}", data=orjson.dumps(body)) as r:
            return r.status, orjson.loads(await r.read())


async def advance(server: SimServer, clock: Clock, ms: int, step_ms: int = 500) -> None:
    """Move the frozen clock forward in steps, waiting for the pump to play each one."""
    for _ in range(ms // step_ms):
        clock.now += step_ms
        seen = server.steps
        while server.steps < seen + 2:  # one step may have read the clock before the move
            await asyncio.sleep(0.002)


async def receive_until(ws, predicate, limit: int = 100_000, timeout_s: float = 10.0) -> list[dict]:
    out: list[dict] = []
    while len(out) < limit:
        msg = orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s))
        out.append(msg)
        if predicate(out):
            break
    return out


def sample(name: str):
    return json.loads((USDM_DATA / name).read_text())


# the top-level keys of a real /fapi/v1/exchangeInfo answer: those of Binance's documented
# example (developers.binance.com .../market-data/rest-api/Exchange-Information) and
# futuresType, which every real answer carries ("U_MARGINED")
EXCHANGE_INFO_KEYS = {"timezone", "serverTime", "futuresType", "rateLimits", "exchangeFilters", "assets",
                      "symbols"}


# ---------------------------------------------------------------------------- REST
def test_exchange_info_has_the_keys_of_the_real_binance_sample(cap):
    """exchangeInfo carries the documented keys; its symbol entries and each filter carry
    exactly the keys of the real BTCUSDT entry ccxt recorded from Binance."""
    real = sample("exchangeInfo_symbols_ccxt.json")

    async def scenario():
        async with running(cap, symbols=5) as (_, port):
            return await get(port, "/fapi/v1/exchangeInfo")

    status, info = run(scenario())
    assert status == 200
    assert set(info) == EXCHANGE_INFO_KEYS and info["futuresType"] == "U_MARGINED"
    real_sym = real["symbols"][0]
    assert real_sym["symbol"] == "BTCUSDT"
    # Binance removed MAX_NUM_ALGO_ORDERS from exchangeInfo on 2025-12-29 (derivatives change log)
    real_filters = {f["filterType"]: set(f) for f in real_sym["filters"] if f["filterType"] != "MAX_NUM_ALGO_ORDERS"}
    assert len(info["symbols"]) == 5
    for entry in info["symbols"]:
        assert set(entry) == set(real_sym)
        assert {f["filterType"]: set(f) for f in entry["filters"]} == real_filters
        assert (entry["status"], entry["contractType"], entry["quoteAsset"], entry["marginAsset"]) == \
            ("TRADING", "PERPETUAL", "USDT", "USDT")
    assert [r["rateLimitType"] for r in info["rateLimits"]] == ["REQUEST_WEIGHT", "ORDERS", "ORDERS"]


def test_exchange_info_filters_parse_as_decimals(cap):
    """Every tick size, step, min quantity and notional parses; BTCUSDT has its real 0.10/0.001."""

    async def scenario():
        async with running(cap, symbols=40) as (_, port):
            return (await get(port, "/fapi/v1/exchangeInfo"))[1]

    info = run(scenario())
    for entry in info["symbols"]:
        f = {x["filterType"]: x for x in entry["filters"]}
        tick = Decimal(f["PRICE_FILTER"]["tickSize"])
        step = Decimal(f["LOT_SIZE"]["stepSize"])
        assert tick > 0 and step > 0 and Decimal(f["MIN_NOTIONAL"]["notional"]) > 0
        assert Decimal(f["PRICE_FILTER"]["minPrice"]) < Decimal(f["PRICE_FILTER"]["maxPrice"])
        assert Decimal(f["LOT_SIZE"]["minQty"]) <= Decimal(f["LOT_SIZE"]["maxQty"])
        assert -tick.as_tuple().exponent <= entry["pricePrecision"]
        assert -step.as_tuple().exponent <= max(entry["quantityPrecision"], 0)
    btc = info["symbols"][0]
    f = {x["filterType"]: x for x in btc["filters"]}
    assert (btc["symbol"], f["PRICE_FILTER"]["tickSize"], f["LOT_SIZE"]["stepSize"]) == ("BTCUSDT", "0.10", "0.001")
    assert (btc["pricePrecision"], btc["quantityPrecision"]) == (2, 3)


def test_rest_shapes_match_recorded_binance_bodies(cap):
    """ping, time, klines and depth have the recorded bodies' keys and per-column JSON types."""
    recorded = {e["method"]: e["httpResponse"] for e in sample("rest_responses_subset.json")["entries"]}

    async def scenario():
        async with running(cap, symbols=3) as (_, port):
            await asyncio.sleep(0.5)
            return {p: await get(port, p) for p in (
                "/fapi/v1/ping", "/fapi/v1/time", "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=3",
                "/fapi/v1/depth?symbol=BTCUSDT&limit=5", "/fapi/v1/ticker/24hr?symbol=D001USDT")}

    r = run(scenario())
    assert r["/fapi/v1/ping"] == (200, {})
    status, t = r["/fapi/v1/time"]
    assert status == 200 and list(t) == ["serverTime"] and abs(t["serverTime"] - wall_ms()) < 60_000
    status, rows = r["/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=3"]
    real_row = recorded["fetchOHLCV"][0]
    assert status == 200 and 1 <= len(rows) <= 3
    assert [type(v) for v in rows[-1]] == [type(v) for v in real_row]
    status, depth = r["/fapi/v1/depth?symbol=BTCUSDT&limit=5"]
    assert status == 200 and list(depth) == list(recorded["fetchOrderBook"])
    assert isinstance(depth["lastUpdateId"], int) and isinstance(depth["E"], int)
    (bp, bq), (ap, aq) = depth["bids"][0], depth["asks"][0]
    assert Decimal(bp) < Decimal(ap) and Decimal(bq) > 0 and Decimal(aq) > 0
    status, tick = r["/fapi/v1/ticker/24hr?symbol=D001USDT"]
    assert status == 200 and list(tick) == [
        "symbol", "priceChange", "priceChangePercent", "weightedAvgPrice", "lastPrice", "lastQty",
        "openPrice", "highPrice", "lowPrice", "volume", "quoteVolume", "openTime", "closeTime",
        "firstId", "lastId", "count"]


def test_rest_errors_are_binance_error_bodies(cap):
    """Bad symbol, interval, limit and missing parameters answer HTTP 400 with Binance codes."""

    async def scenario():
        async with running(cap, symbols=2) as (_, port):
            return [await get(port, p) for p in (
                "/fapi/v1/klines?symbol=ETHUSDT&interval=1m",
                "/fapi/v1/klines?symbol=BTCUSDT&interval=7m",
                "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1501",
                "/fapi/v1/klines?interval=1m",
                "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=abc",
                "/fapi/v1/depth?symbol=BTCUSDT&limit=7",
                "/fapi/v1/ticker/24hr?symbol=NOPE")]

    got = run(scenario())
    assert got[0] == (400, {"code": -1121, "msg": "Invalid symbol."})
    assert got[1] == (400, {"code": -1120, "msg": "Invalid interval."})
    assert [g[1]["code"] for g in got[2:]] == [-1130, -1102, -1100, -1130, -1121]
    assert all(g[0] == 400 for g in got)


def test_ticker_24hr_without_symbol_lists_every_symbol_with_quote_volume(cap):
    """All symbols come back, each with a positive quote volume to rank by."""

    async def scenario():
        async with running(cap, symbols=25, speed=5.0) as (_, port):
            await asyncio.sleep(1.0)
            return await get(port, "/fapi/v1/ticker/24hr")

    status, body = run(scenario())
    assert status == 200 and len(body) == 25
    assert all(Decimal(t["quoteVolume"]) > 0 and t["count"] > 0 for t in body)
    assert body[0]["symbol"] == "BTCUSDT"


# ---------------------------------------------------------------------------- streams
def test_combined_stream_frames_are_binance_trade_and_book_ticker(cap):
    """/stream wraps payloads as {"stream","data"} with Binance's field names and JSON types."""

    async def scenario():
        async with running(cap, symbols=3, speed=5.0) as (_, port):
            url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade/d002usdt@bookTicker"
            async with websockets.connect(url) as ws:
                return await receive_until(ws, lambda m: {x["stream"] for x in m} ==
                                           {"btcusdt@trade", "d002usdt@bookTicker"})

    msgs = run(scenario())
    trade = next(m for m in msgs if m["stream"] == "btcusdt@trade")
    book = next(m for m in msgs if m["stream"] == "d002usdt@bookTicker")
    assert list(trade) == ["stream", "data"]
    assert list(trade["data"]) == ["e", "E", "T", "s", "t", "p", "q", "X", "m"]
    d = trade["data"]
    assert (d["e"], d["s"], d["X"]) == ("trade", "BTCUSDT", "MARKET")
    assert [type(d[k]) for k in ("E", "T", "t", "p", "q", "m")] == [int, int, int, str, str, bool]
    assert list(book["data"]) == ["e", "u", "s", "b", "B", "a", "A", "T", "E"]
    b = book["data"]
    assert b["s"] == "D002USDT" and Decimal(b["b"]) < Decimal(b["a"])
    assert abs(d["E"] - wall_ms()) < 10_000  # rebased onto the wall clock


def test_raw_ws_path_sends_unwrapped_payloads(cap):
    """/ws/<stream> sends the payload itself, no wrapper."""

    async def scenario():
        async with running(cap, symbols=1, speed=5.0) as (_, port):
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/btcusdt@aggTrade") as ws:
                return orjson.loads(await asyncio.wait_for(ws.recv(), 10))

    msg = run(scenario())
    assert list(msg) == ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"]
    assert msg["e"] == "aggTrade" and msg["f"] <= msg["l"]


def test_unknown_or_too_many_streams_in_the_url_are_refused_with_http_400(cap):
    """An unknown symbol, an unknown channel or 201 streams fail the handshake with HTTP 400."""

    async def scenario():
        async with running(cap, symbols=300) as (server, port):
            many = "/".join(f"{s.stream}@trade" for s in server.specs[:201])
            out = []
            for path in ("/ws/ethusdt@trade", "/stream?streams=btcusdt@depth20", f"/stream?streams={many}"):
                try:
                    async with websockets.connect(f"ws://127.0.0.1:{port}{path}"):
                        out.append(None)
                except websockets.InvalidStatus as exc:
                    out.append((exc.response.status_code, orjson.loads(exc.response.body)))
            return out

    got = run(scenario())
    assert got[0] == (400, {"code": -1121, "msg": "Invalid symbol."})
    assert got[1][0] == 400 and got[1][1]["code"] == -1100
    assert got[2][0] == 400 and got[2][1]["code"] == -1101


def test_subscribe_unsubscribe_and_list_over_a_live_connection(cap):
    """Control messages get Binance's {"result":...,"id":N} replies and change the streams."""

    async def scenario():
        clock = Clock(T0_MS)
        async with running(cap, clock, symbols=3) as (server, port):
            async with websockets.connect(f"ws://127.0.0.1:{port}/stream") as ws:
                async def call(msg):
                    await ws.send(orjson.dumps(msg).decode())
                    return orjson.loads(await asyncio.wait_for(ws.recv(), 5))

                r1 = await call({"method": "SUBSCRIBE", "params": ["btcusdt@trade", "d001usdt@trade"], "id": 1})
                r2 = await call({"method": "LIST_SUBSCRIPTIONS", "id": 2})
                r3 = await call({"method": "UNSUBSCRIBE", "params": ["d001usdt@trade"], "id": 3})
                r4 = await call({"method": "LIST_SUBSCRIPTIONS", "id": 4})
                r5 = await call({"method": "SUBSCRIBE", "params": ["btcusdt@nothing"], "id": 5})
                await advance(server, clock, 2_000)
                data = await receive_until(ws, lambda m: len(m) >= 20)
                return r1, r2, r3, r4, r5, data

    r1, r2, r3, r4, r5, data = run(scenario())
    assert r1 == {"result": None, "id": 1}
    assert r2 == {"result": ["btcusdt@trade", "d001usdt@trade"], "id": 2}
    assert r3 == {"result": None, "id": 3}
    assert r4 == {"result": ["btcusdt@trade"], "id": 4}
    assert r5["id"] == 5 and r5["error"]["code"] == 2
    assert {m["stream"] for m in data} == {"btcusdt@trade"}


def test_two_connections_see_the_same_events(cap):
    """Two clients on one market receive identical frames for the same streams."""

    async def scenario():
        clock = Clock(T0_MS)
        async with running(cap, clock, symbols=4) as (server, port):
            url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade/d003usdt@bookTicker/btcusdt@aggTrade"
            async with websockets.connect(url) as a, websockets.connect(url) as b:
                await advance(server, clock, 5_000)
                per_conn = server.market.sent["trade"] + server.market.sent["bookTicker"] + \
                    server.market.sent["aggTrade"]
                n = per_conn // 2
                ra = await receive_until(a, lambda m: len(m) >= n)
                rb = await receive_until(b, lambda m: len(m) >= n)
                return ra, rb, n

    ra, rb, n = run(scenario())
    assert n > 500 and ra == rb


def test_klines_agree_with_the_streamed_trades(cap):
    """REST 1m klines equal the OHLCV of the trades the client received, closed bar included."""

    async def scenario():
        clock = Clock(T0_MS)
        async with running(cap, clock, symbols=2) as (server, port):
            url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade/btcusdt@kline_1m"
            async with websockets.connect(url) as ws:
                await advance(server, clock, 20_000)  # crosses a minute boundary (+1 s close grace)
                sent = server.market.sent["trade"] + server.market.sent["kline_1m"]
                msgs = await receive_until(ws, lambda m: len(m) >= sent)
                status, rows = await get(port, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m")
                return msgs, rows

    msgs, rows = run(scenario())
    trades = [m["data"] for m in msgs if m["stream"] == "btcusdt@trade"]
    klines = [m["data"]["k"] for m in msgs if m["stream"] == "btcusdt@kline_1m"]
    assert len(rows) == 2 and trades
    for row in rows:
        tr = [t for t in trades if row[0] <= t["T"] <= row[6]]
        prices = [Decimal(t["p"]) for t in tr]
        assert Decimal(row[1]) == prices[0] and Decimal(row[4]) == prices[-1]
        assert Decimal(row[2]) == max(prices) and Decimal(row[3]) == min(prices)
        assert Decimal(row[5]) == sum(Decimal(t["q"]) for t in tr)
        assert Decimal(row[7]) == sum(Decimal(t["p"]) * Decimal(t["q"]) for t in tr)
        assert row[8] == len(tr)
    closed = [k for k in klines if k["x"]]
    assert len(closed) == 1 and closed[0]["t"] == rows[0][0]
    assert [closed[0][k] for k in ("o", "h", "l", "c", "v", "q", "n")] == \
        [rows[0][1], rows[0][2], rows[0][3], rows[0][4], rows[0][5], rows[0][7], rows[0][8]]
    assert list(klines[0]) == ["t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"]


def test_mark_price_stream_ticks_every_second_with_binance_fields(cap):
    """markPrice@1s sends one markPriceUpdate per sim second with e,E,s,p,P,i,r,T."""

    async def scenario():
        clock = Clock(T0_MS)
        async with running(cap, clock, symbols=2) as (server, port):
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/d001usdt@markPrice@1s") as ws:
                await advance(server, clock, 4_000)
                return await receive_until(ws, lambda m: len(m) >= 4)

    msgs = run(scenario())
    assert [list(m) for m in msgs] == [["e", "E", "s", "p", "P", "i", "r", "T"]] * 4
    assert [m["E"] % 1000 for m in msgs] == [0, 0, 0, 0]
    assert all(b["E"] - a["E"] == 1000 for a, b in zip(msgs, msgs[1:]))
    assert all(Decimal(m["p"]) > 0 and m["r"] == "0.00010000" for m in msgs)


# ---------------------------------------------------------------------------- test control
def test_stats_and_faults(cap):
    """/_sim/stats counts connections and messages; poison, 429 and close faults take effect."""

    async def scenario():
        async with running(cap, symbols=2, speed=5.0) as (server, port):
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/btcusdt@trade") as ws:
                await asyncio.wait_for(ws.recv(), 10)
                _, stats = await get(port, "/_sim/stats")
                cid = stats["connections"][0]["id"]
                r_poison = await post(port, "/_sim/fault", {"action": "poison", "conn": cid, "kind": "garbage"})
                frames = [await asyncio.wait_for(ws.recv(), 10) for _ in range(200)]
                r_429 = await post(port, "/_sim/fault", {"action": "http_error", "status": 429, "count": 1})
                first = await get(port, "/fapi/v1/time")
                second = await get(port, "/fapi/v1/time")
                r_bad = await post(port, "/_sim/fault", {"action": "nope"})
                await post(port, "/_sim/fault", {"action": "close", "conn": cid, "code": 1001})
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed as exc:
                    close_code = exc.rcvd.code if exc.rcvd else None
            await asyncio.sleep(0.1)
            _, after = await get(port, "/_sim/stats")
            return stats, r_poison, frames, r_429, first, second, r_bad, close_code, after

    stats, r_poison, frames, r_429, first, second, r_bad, close_code, after = run(scenario())
    assert stats["symbols"] == 2 and len(stats["connections"]) == 1
    assert stats["connections"][0]["streams"] == 1 and stats["messages_sent"]["trade"] >= 1
    assert set(stats) >= {"loop", "lag_ms", "events_played", "messages_sent", "behind_symbols"}
    assert r_poison == (200, {"ok": True, "affected": 1})
    assert frames.count("not json at all {{") == 1
    assert r_429[0] == 200
    assert first[0] == 429 and first[1]["code"] == -1003
    assert second[0] == 200 and "serverTime" in second[1]
    assert r_bad[0] == 400
    assert close_code == 1001
    assert after["connections"] == []
    # every request but the test control's own, per path (the 429 answered one counts too)
    assert after["http_requests"] == {"/ws/btcusdt@trade": 1, "/fapi/v1/time": 2}


def printed_port(p: subprocess.Popen, timeout_s: float = 60.0) -> int:
    """The port a ``python -m services.exchange_sim --port 0`` process prints first (``PORT n``)."""
    deadline = time.monotonic() + timeout_s
    line = ""
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line.startswith("PORT ") or not line:
            break
    assert line.startswith("PORT "), line
    return int(line.split()[1])


# ---------------------------------------------------------------------------- the process
def test_module_runs_as_a_process_serves_frames_and_exits_0_on_sigterm(procs):
    """python -m services.exchange_sim --port 0 --max-speed prints PORT (and nothing else on
    stdout), streams, and exits 0 on SIGTERM (how fast is the benchmark's business)."""
    p = procs.python("-m", "services.exchange_sim", "--port", "0", "--max-speed", "--symbols", "3",
                     "--source", "ticks", cwd=REPO, stdout=subprocess.PIPE, text=True,
                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
    port = printed_port(p)

    async def scenario():
        url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade/btcusdt@bookTicker"
        async with websockets.connect(url) as ws:
            return await receive_until(ws, lambda m: {x["stream"] for x in m} ==
                                       {"btcusdt@trade", "btcusdt@bookTicker"})

    msgs = run(scenario(), 30)
    trade = next(m["data"] for m in msgs if m["stream"] == "btcusdt@trade")
    book = next(m["data"] for m in msgs if m["stream"] == "btcusdt@bookTicker")
    assert trade["e"] == "trade" and trade["s"] == "BTCUSDT" and isinstance(trade["p"], str)
    assert book["e"] == "bookTicker" and isinstance(book["u"], int) and isinstance(book["b"], str)
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=10) == 0
    assert p.stdout.read() == ""


# ---------------------------------------------------------------------------- candles source
CANDLES_CSV = REPO / "services" / "exchange_sim" / "data" / "BTCUSDT_1m_2024-12.csv"


def csv_candles(lo: int, hi: int) -> list[list[Decimal]]:
    """Rows [lo, hi) of the bundled CSV as Decimals (o, h, l, c, v), read independently of the sim."""
    with open(CANDLES_CSV) as fh:
        lines = fh.read().splitlines()[1 + lo:1 + hi]
    return [[Decimal(x) for x in ln.split(",")[:5]] for ln in lines]


def test_candles_source_serves_real_history_then_the_replayed_real_candles(cap):
    """Speed 1, 500 bars of history: REST 1m klines are the CSV's candles 0..502, exactly,
    opening one minute apart up to the minute the replay began; the label is in exchangeInfo and stats."""

    async def scenario():
        clock = Clock(T0_MS)  # 50 s into a minute: the replay starts at that minute
        server = SimServer(SimParams(source="candles", symbols=2, history_bars=500, candle_trades=12), clock_ms=clock)
        port = await server.start()
        try:
            await advance(server, clock, 10_000 + 2 * 60_000 + 2_000)
            _, rows = await get(port, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1500")
            _, info = await get(port, "/fapi/v1/exchangeInfo")
            _, stats = await get(port, "/_sim/stats")
            return server, rows, info, stats
        finally:
            await server.stop()

    server, rows, info, stats = run(scenario())
    start = T0_MS - 50_000  # the 50 s already elapsed are played before anyone connects
    assert server._started_ms == start
    closed = rows[:503]
    assert [r[0] for r in closed] == [start + (i - 500) * 60_000 for i in range(503)]
    assert [r[6] for r in closed] == [r[0] + 59_999 for r in closed]
    assert closed[499][6] < start  # history ends before the first replayed minute
    assert [[Decimal(x) for x in r[1:6]] for r in closed] == csv_candles(0, 503)
    assert all(r[8] == 12 for r in closed)  # twelve synthesized trades a candle
    assert [s["underlyingSubType"] for s in info["symbols"]] == [
        ["SYNTHETIC-FROM-CANDLES"], ["DERIVED-DEMO", "SYNTHETIC-FROM-CANDLES"]]
    assert (stats["source"], stats["synthetic"], stats["history_bars"], stats["candles_per_bar"]) == (
        "candles-synthesized", True, 500, 1)


def test_module_in_candles_mode_at_speed_60_streams_and_serves_hour_bars(procs):
    """python -m services.exchange_sim --source candles --speed 60: history bars an hour of
    candles each, contiguous up to the start, and synthesized trades on the stream."""
    p = procs.python("-m", "services.exchange_sim", "--port", "0", "--source", "candles",
                     "--speed", "60", "--symbols", "2", "--history-bars", "500", "--candle-trades", "12",
                     cwd=REPO, stdout=subprocess.PIPE, text=True,
                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
    port = printed_port(p)

    async def scenario():
        _, stats = await get(port, "/_sim/stats")
        _, rows = await get(port, "/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1500")
        url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade"
        async with websockets.connect(url) as ws:
            msgs = await receive_until(ws, lambda m: len(m) >= 3)
        return stats, rows, msgs

    stats, rows, msgs = run(scenario(), 60)
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=10) == 0
    start = stats["start_ms"]
    assert start % 60_000 == 0 and stats["candles_per_bar"] == 60
    hist = [r for r in rows if r[0] < start]
    assert len(hist) == 500 and hist[-1][0] == start - 60_000
    assert all(b[0] - a[0] == 60_000 for a, b in zip(hist, hist[1:]))
    assert all(r[8] == 60 * 12 for r in hist)
    real = csv_candles(0, 60)
    assert [Decimal(x) for x in hist[0][1:6]] == [
        real[0][0], max(r[1] for r in real), min(r[2] for r in real), real[-1][3], sum(r[4] for r in real)]
    assert all(m["data"]["e"] == "trade" and m["data"]["s"] == "BTCUSDT" for m in msgs)
    assert msgs[0]["data"]["E"] >= stats["now_ms"]  # the minute's elapsed part was not replayed late
