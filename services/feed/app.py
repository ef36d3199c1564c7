"""The feed's live app: the state of one running feed and what it does, as methods.

``services/feed/__main__.py`` is the shell that starts it (``FeedApp.start``), runs its status
loop (``FeedApp.run``) and closes it. What the feed does, in order:

Start-up: attach the ring (retrying until the orchestrator has created a valid one: a bad
segment is counted and logged, never a crash), discover symbols (REST errors are retried
within the request-weight budget, then the built-in list is used and FEED_STATUS says so),
register them in the ring's symbol table, publish each one's trading rules (tick size, step
size, minimum quantity and notional: SYMBOL_INFO on PUB, again every minute, and to the
journal, so the database keeps them for a restarted brain), open one connection per group
of at most 200 streams, and hydrate the last K closed 1m candles of every symbol from REST
(published as CANDLE_CLOSED on PUB and the journal) while the connections stream.

Each frame is decoded and validated by the pure core (``services.feed.codec``) and
sequenced against its stream (``services.feed.sequencer``): duplicates (from a rollover's
overlap) are dropped, gaps in trade ids and ``pu`` chains are counted and published, and an
exchange that restarted its id counters is followed rather than ignored. Every accepted tick
is written to the ring at once (``services.feed.sink``). Heartbeats, FEED_STATUS and a stats
file (with recovery times per fault cause) go out once a second; rediscovery runs every
``feed.rediscover_interval_s``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import structlog

from common import bus, heap, service, wire, zmqutil
from common.config import AegisConfig
from common.errors import AegisError, RingError, TransientError
from common.log import RateLimiter
from common.ring import Ring
from services.feed import discovery, hydrate, streams
from services.feed.connection import ConnectionStats, stream_forever
from services.feed.sink import Feed
from venue.binance import market_urls, ws_routed

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



class FeedApp:
    """One live feed: its sockets, ring, connections, symbols and counters (``start`` builds it)."""

    def __init__(self, cfg: AegisConfig, stop: service.StopFlag, rd: Path, pub: bus.Publisher,
                 journal: bus.Publisher, ring: Ring, client: hydrate.RestClient, feed: Feed,
                 symbols: list[str], source: str, errors: Counter, started: float) -> None:
        self.cfg = cfg
        self.stop = stop
        self.rd = rd
        self.pub = pub
        self.journal = journal
        self.ring = ring
        self.client = client
        self.feed = feed
        self.symbols = symbols
        self.source = source
        self.errors = errors
        self.started = started
        self.ws_base = market_urls(cfg)[0]
        self.routed = ws_routed(cfg)
        self.known: dict[str, wire.SymbolInfo] = {}  # every rule seen (rediscovery compares)
        self.rules: dict[str, wire.SymbolInfo] = {}  # the usable ones, published
        self.raw_sent = False  # raw frames went out at some time: the last ones get RAW_LINGER_MS at close
        self.conns: list[ConnectionStats] = []
        self.tasks: list[asyncio.Task] = []
        self.ready = asyncio.Event()
        self.n_streams = 0
        self.report = hydrate.HydrationReport(symbols=len(symbols), done=cfg.feed.hydrate_candles == 0)
        self.redisc: dict[str, Any] = {"runs": 0, "failures": 0, "added": [], "not_trading": [],
                                       "rules_updated": 0, "last_error": ""}
        self.gc = heap.GcPauses()  # how long the garbage collector held the feed (stats: gc)

    @classmethod
    async def start(cls, cfg: AegisConfig, stop: service.StopFlag) -> FeedApp | None:
        """Sockets, ring, symbols, rules, connections and hydration; None when asked to stop
        before the ring could be attached."""
        rd = service.ensure_run_dir(service.run_dir(cfg))
        service.mark_starting(rd, NAME)
        ep = service.endpoints(rd, cfg)  # tcp: loads the CURVE keys, or refuses to start
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
            return None
        client = hydrate.RestClient(market_urls(cfg)[1], weight_budget_1m=cfg.feed.rest_weight_budget_1m)
        symbols, source, flags, infos = await choose_symbols(cfg, client)
        feed = Feed(cfg, ring, symbols, flags)
        # the trading rules of each streamed symbol, for the brain (PUB, again every minute for a
        # brain that restarts) and the database (journal)
        journal = bus.Publisher.connect_journal(NAME, ep.journal)
        app = cls(cfg, stop, rd, pub, journal, ring, client, feed, symbols, source, errors, started)
        app.publish_rules(infos)
        app.follow_raw_subscribers()
        app.open_connections(symbols)
        log.info("feed.started", symbols=len(symbols), source=source, connections=len(app.conns),
                 streams=app.n_streams, ws=app.ws_base, routed=app.routed)
        if cfg.feed.hydrate_candles > 0:
            app.hydrate(symbols, app.report)
        if cfg.feed.rediscover_interval_s > 0:
            app.tasks.append(asyncio.create_task(app.rediscover_forever()))
        return app

    # ------------------------------------------------------------------ symbols and rules
    def publish_rules(self, new: list[wire.SymbolInfo] | tuple[wire.SymbolInfo, ...]) -> None:
        bodies, bad = discovery.info_bodies(new)
        self.errors["symbol_info_unusable"] += bad
        self.known.update((i.symbol, i) for i in new)
        for body in bodies:
            self.rules[body.symbol] = body
            self.pub.publish(body)
            try:
                self.journal.publish(body)
            except TransientError:
                self.errors["journal_full"] += 1

    def open_connections(self, syms: list[str]) -> None:
        """One more connection per group of at most streams_per_connection streams."""
        cfg = self.cfg
        names = streams.stream_names(syms, cfg.feed.channels)
        self.n_streams += len(names)
        for route, group in streams.plan_routed(names, cfg.feed.streams_per_connection, routed=self.routed):
            st = ConnectionStats(name=f"c{len(self.conns)}", streams=len(group), route=route)
            self.conns.append(st)
            self.tasks.append(asyncio.create_task(stream_forever(
                streams.combined_url(self.ws_base, group, route), self.feed, st,
                initial_s=cfg.feed.reconnect_initial_s, max_s=cfg.feed.reconnect_max_s,
                silence_timeout_s=cfg.feed.silence_timeout_s, rollover_s=cfg.feed.rollover_s,
                overlap_max_s=cfg.feed.rollover_overlap_max_s, on_connect=lambda _s: self.ready.set())))

    def hydrate(self, syms: list[str], report: hydrate.HydrationReport) -> None:
        self.tasks.append(asyncio.create_task(run_hydration(self.cfg, self.client, syms, self.pub,
                                                            self.journal, self.stop, report, self.errors)))

    def apply_rediscovery(self, change: discovery.Rediscovery, info: Any) -> None:
        redisc = self.redisc
        redisc["runs"] += 1
        added = self.feed.add_symbols(list(change.add), discovery.demo_flags(info))
        if added:
            self.symbols.extend(added)
            self.open_connections(added)
            redisc["added"] += added
            log.warning("feed.symbols_added", symbols=added, total=len(self.symbols))
            if self.cfg.feed.hydrate_candles > 0:
                self.hydrate(added, hydrate.HydrationReport(symbols=len(added)))
        redisc["rules_updated"] += len(change.rules)
        self.publish_rules(change.rules)
        if change.gone and change.gone != tuple(redisc["not_trading"]):
            log.warning("feed.symbols_not_trading", symbols=list(change.gone))
        redisc["not_trading"] = list(change.gone)

    async def rediscover_forever(self) -> None:
        """Discovery again every ``feed.rediscover_interval_s``; a failure keeps everything as it is."""
        cfg, stop, client = self.cfg, self.stop, self.client
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
                change = discovery.plan_rediscovery(list(self.symbols), info,
                                                    tickers if isinstance(tickers, list) else None,
                                                    cfg.feed.max_symbols, self.known, rank=rank)
            except Exception as exc:  # noqa: BLE001 - network, 4xx/5xx, a bad body: try again later
                self.redisc["failures"] += 1
                self.redisc["last_error"] = repr(exc)[:200]
                log.warning("feed.rediscovery_failed", error=self.redisc["last_error"])
                continue
            self.apply_rediscovery(change, info)

    # ------------------------------------------------------------------ raw frames
    def send_raw(self, raw: bytes) -> None:
        self.pub.send_raw(wire.RAW_WS_TOPIC, raw)

    def follow_raw_subscribers(self) -> None:
        """Every frame as received on "raw.ws" (what aegis capture records) with feed.publish_raw,
        else while a subscriber wants them: on from the next status tick after one subscribes."""
        feed = self.feed
        on = self.cfg.feed.publish_raw or self.pub.wanted(wire.RAW_WS_TOPIC)
        if on != (feed.raw_out is not None):
            feed.raw_out = self.send_raw if on else None
            self.raw_sent = self.raw_sent or on
            log.info("feed.raw_frames", on=on)

    # ------------------------------------------------------------------ status
    def snapshot(self) -> dict:
        feed, conns, report, client = self.feed, self.conns, self.report, self.client
        return {"service": NAME, "pid": os.getpid(), "ticks_received": feed.written,
                "frames_received": feed.received, "ticks_written": feed.written,
                "ticks_rejected": sum(feed.rejected.values()), "rejected": dict(feed.rejected),
                "duplicates": sum(feed.duplicates.values()), "duplicates_by_event": dict(feed.duplicates),
                "gaps": feed.gaps, "gap_ids_missed": feed.gap_ids_missed,
                "gaps_by_stream": dict(feed.gaps_by_stream), "gap_log": list(feed.gap_log),
                "sequence_resets": feed.sequence_resets, "publish_raw": feed.raw_out is not None,
                "pub_dropped": self.pub.dropped,
                # records the C fast lane wrote (the rest of ticks_written took the Python path)
                "fast_lane_ticks": sum(feed.lane.counts()) if feed.lane is not None else 0,
                "accepted": dict(feed.accepted), "errors": dict(self.errors), "symbols": len(self.symbols),
                "source": self.source, "channels": list(self.cfg.feed.channels), "symbol_rules": len(self.rules),
                "rediscovery": dict(self.redisc),
                "connections": len(conns), "streams": self.n_streams,
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
                         "waited_s": round(client.stats.waited_s, 3)},
                "gc": self.gc.snapshot()}

    def status_detail(self) -> dict[str, float]:
        feed, conns = self.feed, self.conns
        rec = recovery_stats(conns)["last_recovery_ms"]
        return {"rejected": float(sum(feed.rejected.values())), "gaps": float(feed.gaps),
                "gap_ids_missed": float(feed.gap_ids_missed),
                "duplicates": float(sum(feed.duplicates.values())),
                "sequence_resets": float(feed.sequence_resets),
                "reconnects": float(sum(c.disconnects for c in conns)),
                "rollovers": float(sum(c.rollovers for c in conns)),
                "last_recovery_ms": float(rec) if rec is not None else -1.0,
                "hydrated_candles": float(self.report.candles), "hydration_done": float(self.report.done),
                "symbols_not_trading": float(len(self.redisc["not_trading"]))}

    def beat(self, now: float) -> None:
        """One status tick: heartbeat, FEED_STATUS, the stats file, the raw-frame subscription."""
        conns = self.conns
        live = sum(c.connected for c in conns)
        state = (wire.FeedState.STREAMING if live == len(conns)
                 else wire.FeedState.DEGRADED if live else wire.FeedState.CONNECTING)
        self.pub.publish(wire.Heartbeat(service=NAME, pid=os.getpid(), uptime_s=now - self.started,
                                        state=wire.ServiceState.RUNNING if live else wire.ServiceState.DEGRADED,
                                        counters={**self.feed.counters(),
                                                  "reconnects": sum(c.disconnects for c in conns),
                                                  "rollovers": sum(c.rollovers for c in conns)}))
        self.pub.publish(wire.FeedStatus(state=state, connections=live, symbols=len(self.symbols),
                                         message=self.source, detail=self.status_detail()))
        service.write_json_atomic(service.stats_path(self.rd, NAME), self.snapshot())
        self.follow_raw_subscribers()

    # ------------------------------------------------------------------ life
    async def run(self) -> None:
        """Until stopped: ready after the first connection, then a status tick every
        ``feed.status_interval_s`` (SYMBOL_INFO again every minute)."""
        stopper = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait([stopper, asyncio.create_task(self.ready.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            if not self.stop.is_set():
                self.gc.install()
                if self.cfg.feed.gc_freeze:  # the start-up's objects out of the collector's sight
                    log.info("feed.heap_frozen", **self.gc.freeze())
                service.mark_ready(self.rd, NAME)
            next_rules = time.monotonic() + SYMBOL_INFO_REPUBLISH_S
            while not self.stop.is_set():
                now = time.monotonic()
                self.beat(now)
                if now >= next_rules:
                    next_rules = now + SYMBOL_INFO_REPUBLISH_S
                    for body in list(self.rules.values()):
                        self.pub.publish(body)
                await asyncio.wait([stopper], timeout=self.cfg.feed.status_interval_s)
        finally:
            stopper.cancel()

    async def close(self) -> None:
        """Cancel the tasks, write the final stats, close every socket and the ring."""
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()
        service.write_json_atomic(service.stats_path(self.rd, NAME), self.snapshot())
        # a capture records the raw frames: the last ones queued must reach it, not be dropped
        self.pub.close(linger_ms=RAW_LINGER_MS if self.raw_sent else 0)
        self.journal.close()
        self.ring.close()
        zmqutil.term()
        log.info("feed.stopped", **{k: v for k, v in self.snapshot().items() if isinstance(v, int)})
        self.gc.close()
