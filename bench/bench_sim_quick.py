"""How many messages a second the exchange sim sustains, at 20 and 300 symbols.

Three measurements per symbol count, every client subscribed to ``trade`` and
``bookTicker`` of every symbol (200 streams per connection, Binance's limit):

1. ``render``: the market core alone (schedule, state, JSON, framing) into null transports,
   as fast as it goes: the ceiling of one core.
2. ``loopback_max``: ``python -m services.exchange_sim --max-speed`` as a process, clients
   on 127.0.0.1 counting WebSocket frames (headers parsed, payloads skipped, so the client
   is not the bottleneck); messages/s received.
3. ``loopback_paced``: the same at recorded pace (speed 1): whether the sim keeps up with the
   ~253 messages/s per symbol of the capture, and its lag behind schedule from ``/_sim/stats``.

Usage: ``python bench/bench_sim_quick.py [--symbols 20,300] [--seconds 8] [--json out.json]``.
The machine has to lend the sim one core and the client another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.exchange_sim import recorded_market  # noqa: E402
from services.exchange_sim.engine import Player  # noqa: E402
from services.exchange_sim.hub import MAX_STREAMS, Hub  # noqa: E402
from services.exchange_sim.market import Market  # noqa: E402
from services.exchange_sim.symbols import make_specs  # noqa: E402

CHANNELS = ("trade", "bookTicker")


class NullTransport:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


def stream_groups(names: list[str]) -> list[list[str]]:
    streams = [f"{n.lower()}@{c}" for n in names for c in CHANNELS]
    return [streams[i:i + MAX_STREAMS] for i in range(0, len(streams), MAX_STREAMS)]


def bench_render(cap, n_symbols: int, seconds: float) -> dict:
    specs = make_specs(cap, n_symbols)
    hub = Hub(specs)
    conns = []
    for group in stream_groups([s.name for s in specs]):
        c = hub.connect(True, NullTransport())
        hub.subscribe(c, group)
        conns.append(c)
    player = Player(cap, specs, start_ms=1_800_000_000_000, max_speed=True)
    market = Market(cap, specs, player, hub)
    per_symbol = max(8, 16_384 // n_symbols)
    t0 = time.perf_counter()
    now = 1_800_000_000_000
    while time.perf_counter() - t0 < seconds:
        market.step(now, per_symbol)
        hub.flush(now)
        now += 1
    dt = time.perf_counter() - t0
    frames = sum(c.frames_sent for c in conns)
    return {"messages_per_s": round(frames / dt), "seconds": round(dt, 2)}


# ---------------------------------------------------------------------------- loopback
async def count_frames(port: int, streams: list[str], counter: list[int], stop: asyncio.Event) -> None:
    """A minimal WebSocket client: handshake, then count frames by parsing their headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    path = "/stream?streams=" + "/".join(streams)
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head.decode(errors="replace"))
    buf = b""
    while not stop.is_set():
        chunk = await reader.read(1 << 20)
        if not chunk:
            break
        buf += chunk
        i, n = 0, len(buf)
        frames = 0
        while i + 2 <= n:
            length = buf[i + 1] & 0x7F
            hdr = 2
            if length == 126:
                if i + 4 > n:
                    break
                length = int.from_bytes(buf[i + 2:i + 4], "big")
                hdr = 4
            elif length == 127:
                if i + 10 > n:
                    break
                length = int.from_bytes(buf[i + 2:i + 10], "big")
                hdr = 10
            if i + hdr + length > n:
                break
            i += hdr + length
            frames += 1
        counter[0] += frames
        buf = buf[i:]
    writer.close()


async def sim_stats(port: int) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /_sim/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    return orjson.loads(raw.split(b"\r\n\r\n", 1)[1])


async def loopback(n_symbols: int, seconds: float, max_speed: bool) -> dict:
    args = [sys.executable, "-m", "services.exchange_sim", "--port", "0", "--symbols", str(n_symbols),
            "--source", "ticks"]  # the recorded ticks (the default is the candles demo)
    args += ["--max-speed"] if max_speed else ["--speed", "1"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        port = int(line.split()[1])
        names = (await sim_stats(port))["symbol_names"]
        counter = [0]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(count_frames(port, g, counter, stop)) for g in stream_groups(names)]
        await asyncio.sleep(2.0)  # warm-up: handshakes, first chunks
        c0, t0 = counter[0], time.perf_counter()
        s0 = await sim_stats(port)
        lags = []
        while time.perf_counter() - t0 < seconds:
            await asyncio.sleep(1.0)
            lags.append((await sim_stats(port))["lag_ms"])
        c1, t1 = counter[0], time.perf_counter()
        s1 = await sim_stats(port)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sent = sum(s1["messages_sent"][c] for c in CHANNELS) - sum(s0["messages_sent"][c] for c in CHANNELS)
        out = {"messages_per_s": round((c1 - c0) / (t1 - t0)),
               "sent_per_s": round(sent / (t1 - t0)),
               "step_busy_ms_avg": round(s1["step_busy_ms_avg"], 3),
               "connections": len(tasks)}
        if not max_speed:
            out["lag_ms_max"] = max(lags) if lags else 0
            out["lag_ms_last"] = lags[-1] if lags else 0
            out["behind_symbols_last"] = s1["behind_symbols"]
        return out
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", default="20,300")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    cap = recorded_market.load()
    per_symbol_rate = (cap.n_trades + cap.n_books) / (cap.span_ms / 1000.0)
    results = {"recorded_messages_per_s_per_symbol": round(per_symbol_rate, 1), "runs": {}}
    for n in [int(x) for x in args.symbols.split(",")]:
        r = {"recorded_pace_needs_per_s": round(n * per_symbol_rate)}
        r["render"] = bench_render(cap, n, min(args.seconds, 5.0))
        r["loopback_max"] = asyncio.run(loopback(n, args.seconds, max_speed=True))
        r["loopback_paced"] = asyncio.run(loopback(n, args.seconds, max_speed=False))
        results["runs"][str(n)] = r
        print(json.dumps({str(n): r}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print("| symbols | recorded pace needs | render only | loopback max speed | loopback at speed 1 (lag) |")
    print("|---|---|---|---|---|")
    for n, r in results["runs"].items():
        paced = r["loopback_paced"]
        print(f"| {n} | {r['recorded_pace_needs_per_s']:,}/s | {r['render']['messages_per_s']:,}/s "
              f"| {r['loopback_max']['messages_per_s']:,}/s | {paced['messages_per_s']:,}/s "
              f"(max lag {paced['lag_ms_max']} ms) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
