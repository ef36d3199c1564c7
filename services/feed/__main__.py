"""Feed shell: WebSocket frames in, validated tick records into the ring.

Start-up: attach the ring (retrying until the orchestrator has created a valid one: a bad
segment is counted and logged, never a crash), discover symbols (REST errors are retried
within the request-weight budget, then the built-in list is used and FEED_STATUS says so),
register them in the ring's symbol table, publish each one's trading rules (tick size, step
size, minimum quantity and notional: SYMBOL_INFO on PUB, again every minute, and to the
journal, so the database keeps them for a restarted brain), open one connection per group
of at most 200 streams, and hydrate the last K closed 1m candles of every symbol from REST (published as
CANDLE_CLOSED on PUB and the journal) while the connections stream.

Each frame is decoded and validated by the pure core (``services.feed.codec``) and
sequenced against its stream: duplicates (from a rollover's overlap) are dropped, gaps in
trade ids and ``pu`` chains are counted and published, and an exchange that restarted its
id counters is followed rather than ignored. Every accepted tick is written to the ring at
once. Heartbeats, FEED_STATUS and a stats file (with recovery times per fault cause) go out
once a second. SIGTERM/SIGINT: close the connections, write final stats, exit 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from typing import Any

import structlog

from common import bus, service, wire, zmqutil
from common.config import AegisConfig
from venue.binance import market_urls, ws_routed
from common.errors import AegisError, RingError, TransientError
from common.log import RateLimiter
from common.ring import Ring
from services.feed import discovery, hydrate, streams
from services.feed.connection import ConnectionStats, stream_forever
from services.feed.sink import Feed

log = structlog.get_logger(__name__)
NAME = "feed"
RING_RETRY_S = 0.5
JOURNAL_RETRY_S = 0.05
RAW_LINGER_MS = 2_000
SYMBOL_INFO_REPUBLISH_S = 60.0  # SYMBOL_INFO again on PUB for subscribers that joined late
RAW_SUBSCRIBER_WAIT_S = 0.5  # > ZeroMQ's 100 ms reconnect interval + the handshake

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


async def choose_symbols(cfg: AegisConfig, client: hydrate.RestClient
                         ) -> tuple[list[str], str, dict[str, int], list[wire.SymbolInfo]]:
    """Configured symbols, else the top N by 24h quote volume, else the fallback list; with
    where they came from, the demo flag bits per symbol (synthesized / derived data) and the
    trading rules (tick, step, minimum quantity and notional) of those exchangeInfo describes."""
    if cfg.feed.symbols:
        try:  # configured symbols may still be demo data: ask, but never fail for it
            info = await client.get_json("/fapi/v1/exchangeInfo", weight=hydrate.WEIGHT_EXCHANGE_INFO,
                                         attempts=1)
            flags = discovery.demo_flags(info)
            infos = discovery.infos_for(info, cfg.feed.symbols)
        except Exception:  # noqa: BLE001 - labels are informative; streaming matters more
            flags, infos = {}, []
        return list(cfg.feed.symbols), "configured", flags, infos
    attempts = cfg.feed.discovery_attempts
    try:
        info = await client.get_json("/fapi/v1/exchangeInfo", weight=hydrate.WEIGHT_EXCHANGE_INFO,
                                     attempts=attempts)
        try:
            tickers = await client.get_json("/fapi/v1/ticker/24hr", weight=hydrate.WEIGHT_TICKER_24H_ALL,
                                            attempts=attempts)
        except AegisError as exc:  # ranking is a nicety; exchangeInfo order still works
            log.warning("feed.tickers_unavailable", error=str(exc)[:200])
            tickers = None
        infos = discovery.select_symbols(info, tickers if isinstance(tickers, list) else None,
                                         cfg.feed.max_symbols)
        if infos:
            return [i.symbol for i in infos], "discovered", discovery.demo_flags(info), infos
        reason = "no tradable symbols"
    except Exception as exc:  # noqa: BLE001 - any failure -> fallback, never a crash
        reason = repr(exc)[:200]
    log.warning("feed.discovery_failed", reason=reason, fallback=len(discovery.FALLBACK_SYMBOLS))
    return list(discovery.FALLBACK_SYMBOLS[: cfg.feed.max_symbols]), f"fallback: {reason}", {}, []


def recovery_stats(conns: list[ConnectionStats]) -> dict[str, Any]:
    """Recovery times (fault -> first tick written after it) over every connection."""
    events = sorted(((t, c.name, cause, ms) for c in conns for cause, ms, t in c.recoveries))
    last: dict[str, float] = {}
    worst: dict[str, float] = {}
    for _t, _name, cause, ms in events:
        last[cause] = ms
        worst[cause] = max(worst.get(cause, 0.0), ms)
    out: dict[str, Any] = {
        "recoveries": [{"connection": n, "cause": c, "ms": ms, "time": t} for t, n, c, ms in events[-50:]],
        "recovery_ms_by_cause": last, "max_recovery_ms_by_cause": worst,
        "last_recovery_ms": events[-1][3] if events else None,
        "last_recovery_cause": events[-1][2] if events else None,
    }
    return out


async def run_hydration(cfg: AegisConfig, client: hydrate.RestClient, symbols: list[str],
                        pub: bus.Publisher, journal: bus.Publisher, stop: service.StopFlag,
                        report: hydrate.HydrationReport, counters: Counter) -> None:
    """Fetch and publish the last ``feed.hydrate_candles`` closed candles of every symbol."""
    wait = hydrate.settle_delay_ms(time.time_ns() // 1_000_000)
    if wait:
        await asyncio.sleep(wait / 1000)

    async def emit(c: wire.CandleClosed) -> None:
        event_ns = c.close_ms * 1_000_000
        pub.publish(c, event_ns)
        while not stop.is_set():
            try:
                journal.publish(c, event_ns)
                return
            except TransientError:  # the orchestrator is behind or restarting: wait for it
                counters["journal_full"] += 1
                await asyncio.sleep(JOURNAL_RETRY_S)

    try:
        await hydrate.hydrate(client, symbols, k=cfg.feed.hydrate_candles,
                              now_ms=time.time_ns() // 1_000_000, emit=emit,
                              concurrency=cfg.feed.hydrate_concurrency, report=report)
    except Exception as exc:  # noqa: BLE001 - hydration is best effort; streaming goes on
        report.failed["*"] = repr(exc)[:200]
        report.done = True
        log.error("feed.hydrate_aborted", error=repr(exc)[:200])
        return
    log.info("feed.hydrated", symbols=report.symbols_done, candles=report.candles,
             failed=len(report.failed), requests=report.requests, elapsed_s=report.elapsed_s)


async def run(cfg: AegisConfig, stop: service.StopFlag) -> int:
    rd = service.ensure_run_dir(service.run_dir(cfg))
    service.mark_starting(rd, NAME)
    ep = service.endpoints(rd, cfg)  # tcp: loads the CURVE keys, or refuses to start
    ws_base, rest_base = market_urls(cfg)
    routed = ws_routed(cfg)
    errors: Counter = Counter()
    started = time.monotonic()
    # XPUB: the raw frames go out while a subscriber wants them (aegis capture), not only
    # with feed.publish_raw (which sends them from the first frame on)
    pub = bus.Publisher.bind_pub(NAME, ep.feed_pub, xpub=True)
    if cfg.feed.publish_raw:  # a recorder (aegis capture --raw) must be subscribed before frame 1
        await asyncio.sleep(RAW_SUBSCRIBER_WAIT_S)
    ring = await attach_ring(service.ring_path(cfg), stop, errors)
    if ring is None:
        pub.close()
        return 0
    client = hydrate.RestClient(rest_base, weight_budget_1m=cfg.feed.rest_weight_budget_1m)
    symbols, source, flags, infos = await choose_symbols(cfg, client)
    feed = Feed(cfg, ring, symbols, flags)
    # the trading rules of each streamed symbol, for the brain (PUB, again every minute for a
    # brain that restarts) and the database (journal)
    journal = bus.Publisher.connect_journal(NAME, ep.journal)
    known: dict[str, wire.SymbolInfo] = {}
    rules: dict[str, wire.SymbolInfo] = {}

    def publish_rules(new: list[wire.SymbolInfo] | tuple[wire.SymbolInfo, ...]) -> None:
        bodies, bad = discovery.info_bodies(new)
        errors["symbol_info_unusable"] += bad
        known.update((i.symbol, i) for i in new)
        for body in bodies:
            rules[body.symbol] = body
            pub.publish(body)
            try:
                journal.publish(body)
            except TransientError:
                errors["journal_full"] += 1

    publish_rules(infos)

    def send_raw(raw: bytes) -> None:
        pub.send_raw(wire.RAW_WS_TOPIC, raw)

    raw_sent = False  # raw frames went out at some time: the last ones get RAW_LINGER_MS at close

    def follow_raw_subscribers() -> None:
        """Every frame as received on "raw.ws" (what aegis capture records) with feed.publish_raw,
        else while a subscriber wants them: on from the next status tick after one subscribes."""
        nonlocal raw_sent
        on = cfg.feed.publish_raw or pub.wanted(wire.RAW_WS_TOPIC)
        if on != (feed.raw_out is not None):
            feed.raw_out = send_raw if on else None
            raw_sent = raw_sent or on
            log.info("feed.raw_frames", on=on)

    follow_raw_subscribers()
    conns: list[ConnectionStats] = []
    tasks: list[asyncio.Task] = []
    ready = asyncio.Event()
    n_streams = 0

    def open_connections(syms: list[str]) -> None:
        """One more connection per group of at most streams_per_connection streams."""
        nonlocal n_streams
        names = streams.stream_names(syms, cfg.feed.channels)
        n_streams += len(names)
        for route, group in streams.plan_routed(names, cfg.feed.streams_per_connection, routed=routed):
            st = ConnectionStats(name=f"c{len(conns)}", streams=len(group), route=route)
            conns.append(st)
            tasks.append(asyncio.create_task(stream_forever(
                streams.combined_url(ws_base, group, route), feed, st,
                initial_s=cfg.feed.reconnect_initial_s, max_s=cfg.feed.reconnect_max_s,
                silence_timeout_s=cfg.feed.silence_timeout_s, rollover_s=cfg.feed.rollover_s,
                overlap_max_s=cfg.feed.rollover_overlap_max_s, on_connect=lambda _s: ready.set())))

    open_connections(symbols)
    log.info("feed.started", symbols=len(symbols), source=source, connections=len(conns), streams=n_streams,
             ws=ws_base, routed=routed)

    report = hydrate.HydrationReport(symbols=len(symbols), done=cfg.feed.hydrate_candles == 0)
    if cfg.feed.hydrate_candles > 0:
        tasks.append(asyncio.create_task(run_hydration(cfg, client, symbols, pub, journal, stop,
                                                       report, errors)))

    redisc: dict[str, Any] = {"runs": 0, "failures": 0, "added": [], "not_trading": [], "rules_updated": 0,
                              "last_error": ""}

    def apply_rediscovery(change: discovery.Rediscovery, info: Any) -> None:
        redisc["runs"] += 1
        added = feed.add_symbols(list(change.add), discovery.demo_flags(info))
        if added:
            symbols.extend(added)
            open_connections(added)
            redisc["added"] += added
            log.warning("feed.symbols_added", symbols=added, total=len(symbols))
            if cfg.feed.hydrate_candles > 0:
                more = hydrate.HydrationReport(symbols=len(added))
                tasks.append(asyncio.create_task(run_hydration(cfg, client, added, pub, journal, stop,
                                                               more, errors)))
        redisc["rules_updated"] += len(change.rules)
        publish_rules(change.rules)
        if change.gone and change.gone != tuple(redisc["not_trading"]):
            log.warning("feed.symbols_not_trading", symbols=list(change.gone))
        redisc["not_trading"] = list(change.gone)

    async def rediscover_forever() -> None:
        """Discovery again every ``feed.rediscover_interval_s``; a failure keeps everything as it is."""
        while not stop.is_set():
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter], timeout=cfg.feed.rediscover_interval_s)
            waiter.cancel()
            if stop.is_set():
                return
            rank = not cfg.feed.symbols
            try:
                info = await client.get_json("/fapi/v1/exchangeInfo", weight=hydrate.WEIGHT_EXCHANGE_INFO,
                                             attempts=cfg.feed.discovery_attempts)
                tickers = None
                if rank:
                    tickers = await client.get_json("/fapi/v1/ticker/24hr", weight=hydrate.WEIGHT_TICKER_24H_ALL,
                                                    attempts=cfg.feed.discovery_attempts)
                change = discovery.plan_rediscovery(list(symbols), info,
                                                    tickers if isinstance(tickers, list) else None,
                                                    cfg.feed.max_symbols, known, rank=rank)
            except Exception as exc:  # noqa: BLE001 - network, 4xx/5xx, a bad body: try again later
                redisc["failures"] += 1
                redisc["last_error"] = repr(exc)[:200]
                log.warning("feed.rediscovery_failed", error=redisc["last_error"])
                continue
            apply_rediscovery(change, info)

    if cfg.feed.rediscover_interval_s > 0:
        tasks.append(asyncio.create_task(rediscover_forever()))

    def snapshot() -> dict:
        return {"service": NAME, "pid": os.getpid(), "ticks_received": feed.written,
                "frames_received": feed.received, "ticks_written": feed.written,
                "ticks_rejected": sum(feed.rejected.values()), "rejected": dict(feed.rejected),
                "duplicates": sum(feed.duplicates.values()), "duplicates_by_event": dict(feed.duplicates),
                "gaps": feed.gaps, "gap_ids_missed": feed.gap_ids_missed,
                "gaps_by_stream": dict(feed.gaps_by_stream), "gap_log": list(feed.gap_log),
                "sequence_resets": feed.sequence_resets, "publish_raw": feed.raw_out is not None,
                "pub_dropped": pub.dropped,
                # records the C fast lane wrote (the rest of ticks_written took the Python path)
                "fast_lane_ticks": sum(feed.lane.counts()) if feed.lane is not None else 0,
                "accepted": dict(feed.accepted), "errors": dict(errors), "symbols": len(symbols),
                "source": source, "channels": list(cfg.feed.channels), "symbol_rules": len(rules),
                "rediscovery": dict(redisc),
                "connections": len(conns), "streams": n_streams,
                "reconnects": sum(c.disconnects for c in conns),
                "disconnect_causes": dict(sum((Counter(c.disconnect_causes) for c in conns), Counter())),
                "connect_failures": sum(c.connect_failures for c in conns),
                "silent_resets": sum(c.silent_resets for c in conns),
                "rollovers": sum(c.rollovers for c in conns),
                "rollover_failures": sum(c.rollover_failures for c in conns),
                "connection_detail": [{"name": c.name, "route": c.route, "streams": c.streams, "connected": c.connected,
                                       "connects": c.connects, "disconnects": c.disconnects,
                                       "rollovers": c.rollovers, "frames": c.frames,
                                       "last_overlap_ms": c.last_overlap_ms} for c in conns],
                **recovery_stats(conns),
                "hydration": {"done": report.done, "symbols": report.symbols,
                              "symbols_done": report.symbols_done, "candles": report.candles,
                              "requests": report.requests, "rejected": dict(report.rejected),
                              "failed": dict(report.failed), "elapsed_s": report.elapsed_s},
                "candles_hydrated": report.candles,
                "rest": {"requests": client.stats.requests, "throttled": client.stats.throttled,
                         "server_errors": client.stats.server_errors,
                         "waited_s": round(client.stats.waited_s, 3)}}

    def status_detail() -> dict[str, float]:
        rec = recovery_stats(conns)["last_recovery_ms"]
        return {"rejected": float(sum(feed.rejected.values())), "gaps": float(feed.gaps),
                "gap_ids_missed": float(feed.gap_ids_missed),
                "duplicates": float(sum(feed.duplicates.values())),
                "sequence_resets": float(feed.sequence_resets),
                "reconnects": float(sum(c.disconnects for c in conns)),
                "rollovers": float(sum(c.rollovers for c in conns)),
                "last_recovery_ms": float(rec) if rec is not None else -1.0,
                "hydrated_candles": float(report.candles), "hydration_done": float(report.done),
                "symbols_not_trading": float(len(redisc["not_trading"]))}

    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, asyncio.create_task(ready.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            service.mark_ready(rd, NAME)
        next_rules = time.monotonic() + SYMBOL_INFO_REPUBLISH_S
        while not stop.is_set():
            now = time.monotonic()
            live = sum(c.connected for c in conns)
            state = (wire.FeedState.STREAMING if live == len(conns)
                     else wire.FeedState.DEGRADED if live else wire.FeedState.CONNECTING)
            pub.publish(wire.Heartbeat(service=NAME, pid=os.getpid(), uptime_s=now - started,
                                       state=wire.ServiceState.RUNNING if live else wire.ServiceState.DEGRADED,
                                       counters={**feed.counters(),
                                                 "reconnects": sum(c.disconnects for c in conns),
                                                 "rollovers": sum(c.rollovers for c in conns)}))
            pub.publish(wire.FeedStatus(state=state, connections=live, symbols=len(symbols),
                                        message=source, detail=status_detail()))
            service.write_json_atomic(service.stats_path(rd, NAME), snapshot())
            follow_raw_subscribers()
            if now >= next_rules:
                next_rules = now + SYMBOL_INFO_REPUBLISH_S
                for body in list(rules.values()):
                    pub.publish(body)
            await asyncio.wait([stopper], timeout=cfg.feed.status_interval_s)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        await client.close()
        service.write_json_atomic(service.stats_path(rd, NAME), snapshot())
        # a capture records the raw frames: the last ones queued must reach it, not be dropped
        pub.close(linger_ms=RAW_LINGER_MS if raw_sent else 0)
        journal.close()
        ring.close()
        zmqutil.term()
        log.info("feed.stopped", **{k: v for k, v in snapshot().items() if isinstance(v, int)})
    return 0


def warm_imports() -> None:
    """A spare's warm-up: the event loop ``main`` imports late (no spares in replay mode)."""
    import uvloop  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    args = service.arg_parser(NAME, "market data in: WebSocket -> firewall -> ring").parse_args(argv)
    cfg = service.bootstrap(NAME, args)
    if args.spare and not service.serve_as_spare(NAME, cfg, warm=warm_imports):
        return 0
    stop = service.StopFlag()
    service.install_stop_handlers(stop)
    if cfg.mode == "replay":  # a capture's raw frames instead of WebSockets
        from services.feed import replay_source

        return replay_source.run(cfg, stop)
    try:
        import uvloop

        return uvloop.run(run(cfg, stop))
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        return asyncio.run(run(cfg, stop))


if __name__ == "__main__":
    sys.exit(service.run_main(main))
