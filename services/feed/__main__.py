"""Feed shell: WebSocket frames in, validated tick records into the ring.

Start-up: attach the ring (retrying until the orchestrator has created a valid one: a bad
segment is counted and logged, never a crash), discover symbols (or fall back), register
them in the ring's symbol table, open one connection per group of at most 200 streams.
Each frame is decoded and validated by the pure core (``services.feed.codec``) and every
accepted tick is written to the ring at once. Heartbeats, FEED_STATUS and a stats file go
out once a second. SIGTERM/SIGINT: close the connections, write final stats, exit 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter

import structlog

from common import bus, service, wire, zmqutil
from common.config import AegisConfig, endpoints, sim_urls
from common.errors import AegisError, RingError
from common.log import RateLimiter
from common.ring import Ring
from services.feed import codec, discovery, streams
from services.feed.connection import ConnectionStats, stream_forever

log = structlog.get_logger(__name__)
NAME = "feed"
RING_RETRY_S = 0.5


async def attach_ring(path: str, stop: service.StopFlag, errors: Counter) -> Ring | None:
    limiter = RateLimiter(60.0)
    while not stop.is_set():
        try:
            return Ring.attach(path)
        except (RingError, OSError) as exc:
            errors["ring_attach"] += 1
            if limiter.allow("ring", time.monotonic()):
                log.warning("feed.ring_unavailable", path=path, error=str(exc), attempts=errors["ring_attach"])
            await asyncio.sleep(RING_RETRY_S)
    return None


async def choose_symbols(cfg: AegisConfig, rest_base: str) -> tuple[list[str], str]:
    if cfg.feed.symbols:
        return list(cfg.feed.symbols), "configured"
    try:
        infos = await discovery.discover(rest_base, cfg.feed.max_symbols)
        if infos:
            return [i.symbol for i in infos], "discovered"
        reason = "no tradable symbols"
    except (AegisError, OSError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - any failure -> fallback
        reason = repr(exc)[:200]
    log.warning("feed.discovery_failed", reason=reason, fallback=len(discovery.FALLBACK_SYMBOLS))
    return list(discovery.FALLBACK_SYMBOLS[: cfg.feed.max_symbols]), f"fallback: {reason}"


class Feed:
    """The mutable shell state of one feed process (the decoding itself is pure)."""

    def __init__(self, cfg: AegisConfig, ring: Ring, symbols: list[str]) -> None:
        self.cfg = cfg
        self.ring = ring
        self.writer = ring.writer()
        self.symbol_ids = {s: ring.register_symbol(s) for s in symbols}
        self.decoder = codec.Decoder(self.symbol_ids)
        self.received = 0
        self.written = 0
        self.rejected: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.duplicates = 0
        self.gaps = 0
        self.limiter = RateLimiter(60.0)

    def on_frame(self, raw: bytes, recv_ns: int) -> None:
        self.received += 1
        res = self.decoder.decode(raw, recv_ns)
        status = res.status
        if status == codec.TICK:
            t = res.tick
            self.writer.publish(t.symbol_id, t.kind, t.flags, t.recv_ns, t.event_ms, t.id,
                                t.price, t.qty, t.aux, t.aux_qty)
            self.written += 1
            self.accepted[res.event] += 1
        elif status == codec.EVENT:
            self.accepted[res.event] += 1
        elif status == codec.DUPLICATE:
            self.duplicates += 1
        elif status == codec.REJECTED:
            self.rejected[res.reason] += 1
            if self.limiter.allow(res.reason, time.monotonic()):
                log.warning("feed.tick_rejected", reason=res.reason, symbol=res.symbol,
                            total=self.rejected[res.reason], sample=bytes(raw[:120]))
        if res.gap is not None:
            self.gaps += 1
            if self.limiter.allow(f"gap:{res.gap.stream}", time.monotonic()):
                log.warning("feed.gap", symbol=res.gap.symbol, stream=res.gap.stream,
                            expected=res.gap.expected, got=res.gap.got, total=self.gaps)

    def counters(self) -> dict[str, float]:
        return {"frames_received": self.received, "ticks_written": self.written,
                "ticks_rejected": sum(self.rejected.values()), "ring_cursor": self.writer.cursor}


async def run(cfg: AegisConfig, stop: service.StopFlag) -> int:
    rd = service.ensure_run_dir(service.run_dir(cfg))
    ep = endpoints(rd)
    ws_base, rest_base = sim_urls(cfg)
    errors: Counter = Counter()
    started = time.monotonic()
    pub = bus.Publisher.bind_pub(NAME, ep.feed_pub)
    ring = await attach_ring(service.ring_path(cfg), stop, errors)
    if ring is None:
        pub.close()
        return 0
    symbols, source = await choose_symbols(cfg, rest_base)
    feed = Feed(cfg, ring, symbols)
    names = streams.stream_names(symbols, cfg.feed.channels)
    plan = streams.plan_connections(names, cfg.feed.streams_per_connection)
    conns = [ConnectionStats(name=f"c{i}") for i in range(len(plan))]
    ready = asyncio.Event()
    tasks = [asyncio.create_task(stream_forever(
        streams.combined_url(ws_base, group), feed.on_frame, st,
        initial_s=cfg.feed.reconnect_initial_s, max_s=cfg.feed.reconnect_max_s,
        silence_timeout_s=cfg.feed.silence_timeout_s, on_connect=lambda _s: ready.set()))
        for group, st in zip(plan, conns)]
    log.info("feed.started", symbols=len(symbols), source=source, connections=len(plan), streams=len(names))

    def snapshot() -> dict:
        return {"service": NAME, "ticks_received": feed.written,
                "frames_received": feed.received, "ticks_written": feed.written,
                "ticks_rejected": sum(feed.rejected.values()), "rejected": dict(feed.rejected),
                "duplicates": feed.duplicates, "gaps": feed.gaps,
                "accepted": dict(feed.accepted), "errors": dict(errors), "symbols": len(symbols),
                "connections": len(plan), "reconnects": sum(c.disconnects for c in conns),
                "silent_resets": sum(c.silent_resets for c in conns)}

    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, asyncio.create_task(ready.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            (rd / f"{NAME}.ready").write_text(str(os.getpid()))
        while not stop.is_set():
            now = time.monotonic()
            live = sum(c.connected for c in conns)
            state = "STREAMING" if live == len(conns) else ("DEGRADED" if live else "CONNECTING")
            pub.publish(wire.Heartbeat(service=NAME, pid=os.getpid(), uptime_s=now - started,
                                       state="RUNNING" if live else "DEGRADED", counters=feed.counters()))
            pub.publish(wire.FeedStatus(state=state, connections=live, symbols=len(symbols),
                                        message=source, detail={"rejected": float(sum(feed.rejected.values()))}))
            service.write_json_atomic(service.stats_path(rd, NAME), snapshot())
            await asyncio.wait([stopper], timeout=cfg.feed.status_interval_s)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        service.write_json_atomic(service.stats_path(rd, NAME), snapshot())
        pub.close()
        ring.close()
        zmqutil.term()
        log.info("feed.stopped", **{k: v for k, v in snapshot().items() if isinstance(v, int)})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = service.arg_parser(NAME, "market data in: WebSocket -> firewall -> ring").parse_args(argv)
    cfg = service.bootstrap(NAME, args)
    stop = service.StopFlag()
    service.install_stop_handlers(stop)
    try:
        import uvloop

        return uvloop.run(run(cfg, stop))
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        return asyncio.run(run(cfg, stop))


if __name__ == "__main__":
    sys.exit(service.run_main(main))
