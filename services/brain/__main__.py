"""Brain shell: ring in, candles and conflated ticks out. The app it runs, ``Brain``, is in
``services/brain/app.py``; this module starts it, runs its loop and stops it.

Loop: read a batch from the ring (busy-poll, then short sleeps when idle), fold it into the
core (``services.brain.engine``), publish each closed candle (PUB for anyone, PUSH to the
journal for the database), publish the latest tick of each changed symbol at a fixed rate,
heartbeat once a second. SIGTERM/SIGINT: drain the ring up to the writer's cursor, flush,
write final stats, exit 0. After a crash the reader resumes from its saved cursor.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import structlog

from common import bus, heap, service, wire, zmqutil
from common.config import AegisConfig, Endpoints
from common.errors import RingError
from common.log import RateLimiter
from common.ring import Ring
from services.brain import execution_build, kernels, latency, loop, recovery
from services.brain import control as brain_control
from services.brain.app import NAME, Brain
from venue import brokers

log = structlog.get_logger(__name__)
RING_RETRY_S = 0.5
DRAIN_DEADLINE_S = 5.0  # at shutdown, read what the feed wrote, but not forever


def attach_ring(path: str, stop: service.StopFlag) -> Ring | None:
    limiter, attempts = RateLimiter(60.0), 0
    while not stop.is_set():
        try:
            return Ring.attach(path)
        except (RingError, OSError) as exc:
            attempts += 1
            if limiter.allow("ring", time.monotonic()):
                log.warning("brain.ring_unavailable", path=path, error=str(exc), attempts=attempts)
            stop.sleep(RING_RETRY_S)
    return None


def run(cfg: AegisConfig, stop: service.StopFlag) -> int:
    knobs = latency.apply(cfg.brain.gil_switch_interval_us, cfg.brain.timer_slack_ns)  # before any thread
    rd = service.ensure_run_dir(service.run_dir(cfg))
    service.mark_starting(rd, NAME)
    ep = service.endpoints(rd, cfg)  # tcp: loads the CURVE keys, or refuses to start
    started = time.monotonic()
    pub = bus.Publisher.bind_pub(NAME, ep.brain_pub)
    journal = bus.Publisher.connect_journal(NAME, ep.journal)
    ring = attach_ring(service.ring_path(cfg), stop)
    if ring is None:
        return 0
    history = bus.Subscriber([ep.feed_pub], (wire.EventType.CANDLE_CLOSED, wire.EventType.SYMBOL_INFO))
    saved = recovery.load(service.db_path(cfg), time.time_ns() // 1_000_000)
    try:
        brain = Brain(cfg, ring, pub, journal, history, saved_model=saved.model_blob)
    except RingError as exc:  # another live brain reads this ring: refuse, do not corrupt it
        log.error("brain.ring_refused", error=str(exc))
        print(f"aegis brain: {exc}", file=sys.stderr)
        pub.close(), journal.close(), history.close(), ring.close(), zmqutil.term()
        return 2
    warm_strategy(cfg, brain, rd)
    brain.symbol_info.update(recovery.symbol_rules(service.db_path(cfg)))
    kernels.warm_up(brain)
    trading = start_trading(cfg, brain, ep)
    if not brain.replay:  # the dashboard's commands (a replay is the capture's alone)
        brain.control = brain_control.Control.bind(
            ep.brain_control, execution=brain.execution, publish=brain.publish_exec,
            pause=brain_control.load_pause(service.db_path(cfg)))
    pauses = heap.GcPauses().install()  # how long the garbage collector held the brain (stats: gc)
    knobs.update(pauses.freeze() if cfg.brain.gc_freeze else {})  # the start-up's objects: out of its sight
    service.mark_ready(rd, NAME)
    log.info("brain.ready", resumed_at=brain.reader.cursor, symbols=len(brain.names), **knobs)

    stats_writer = service.JsonFileWriter(service.stats_path(rd, NAME))

    def stats() -> dict:
        return {**brain.snapshot(), "loop": turn.stalls.snapshot(), "gc": pauses.snapshot()}

    def heartbeat(now: float) -> None:
        """Counters to the bus, stats to the file (written on its own thread: the file system
        never holds the loop up)."""
        brain.watch_orchestrator()
        snap = stats()
        pub.publish(wire.Heartbeat(service=NAME, pid=os.getpid(), uptime_s=now - started,
                                   counters=brain.counters(snap["execution"])))
        stats_writer.submit(snap)

    turn = loop.Loop(brain, execution=trading.execution if trading is not None else None, control=brain.control,
                     heartbeat=heartbeat, heartbeat_interval_s=cfg.heartbeat_interval_s)
    try:
        while not stop.is_set():
            turn.step()
        drain(brain)
    finally:
        stop_trading(brain, trading)
        stats_writer.close()
        final = stats()  # before the ring closes: counters live in shared memory
        service.write_json_atomic(service.stats_path(rd, NAME), final)
        log.info("brain.stopped", ticks_read=final["ticks_read"], candles=final["candles_closed"],
                 lost=final["lost"])
        pub.close()
        journal.close()
        history.close()
        ring.close()
        zmqutil.term()
        pauses.close()
    return 0


def warm_strategy(cfg: AegisConfig, brain: Brain, rd: Path) -> None:
    """The candles the strategy warms from before it decides, when the feed will not send them."""
    if cfg.mode == "replay":
        # a replay warms from the candles ``aegis replay`` put in its fresh database (the
        # capture's hydration), all of them before the first tick: the same start every time
        warm = recovery.recent_candles(service.db_path(cfg), cfg.brain.candle_interval_s,
                                       cfg.replay.history_candles, cfg.replay.warm_to_ms)
        log.info("brain.warm_from_capture", candles=len(warm))
        brain.db_history = iter(warm)
        while brain.db_history is not None:
            brain.warm_from_history(10_000)
    elif service.live_pid(rd / "feed.ready") is not None:
        # restarted inside a running stack: the feed hydrated at its own start, long ago, so
        # the strategy warms from the candles the database holds (the same K per symbol),
        # read in its idle moments once it is ready (``warm_from_history``)
        brain.db_history = recovery.iter_recent_candles(service.db_path(cfg), cfg.brain.candle_interval_s,
                                                        cfg.feed.hydrate_candles, time.time_ns() // 1_000_000)


def start_trading(cfg: AegisConfig, brain: Brain, ep: Endpoints) -> execution_build.Trading | None:
    """The execution shell (None when the mode does not trade), hooked to the brain and to
    the orchestrator's verdicts; in replay its start-up is answered before the first tick."""
    trading = execution_build.build(cfg, brain, ep) if brokers.trading_enabled(cfg) else None
    brain.execution = trading.execution if trading is not None else None
    if trading is None:
        return None
    brain.orch = bus.Subscriber([ep.orchestrator_pub], (wire.EventType.TRADING_PERMISSION,
                                                        wire.EventType.RECONCILED))
    if brain.replay:  # start-up (filters, account) answered inline, before the first tick
        for _ in range(3):
            trading.execution.poll()
        if not trading.execution.ready:
            log.error("brain.replay_execution_not_ready", error=trading.execution.start_error)
    return trading


def drain(brain: Brain) -> None:
    """At a stop: everything the feed committed before it (and the closed candles' analyses
    it starts), up to ``DRAIN_DEADLINE_S``; then the latest tick of every symbol."""
    deadline = time.monotonic() + DRAIN_DEADLINE_S
    while (brain.reader.lag() > 0 and time.monotonic() < deadline) or brain.closes:
        brain.poll()
    brain.publish_ticks(whole=True)


def stop_trading(brain: Brain, trading: execution_build.Trading | None) -> None:
    """Close what the brain holds besides its sockets: an unfinished warm-up's database
    connection, the control socket, the execution shell and the orchestrator's subscription."""
    if brain.db_history is not None and hasattr(brain.db_history, "close"):
        brain.db_history.close()
    if brain.control is not None:
        brain.control.close()
    if trading is not None:
        trading.close()
        if brain.orch is not None:
            brain.orch.close()


def main(argv: list[str] | None = None) -> int:
    args = service.arg_parser(NAME, "ring -> candles -> events").parse_args(argv)
    cfg = service.bootstrap(NAME, args)
    if args.spare and not service.serve_as_spare(NAME, cfg, warm=lambda: kernels.warm_kernels(cfg)):
        return 0
    stop = service.StopFlag()
    service.install_stop_handlers(stop)
    return run(cfg, stop)


if __name__ == "__main__":
    sys.exit(service.run_main(main))
