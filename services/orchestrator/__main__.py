"""Orchestrator shell: owns the database and the ring segment, writes the journal.

Start-up: create the run directory (0700), the ring segment (or re-attach to a valid one a
previous incarnation left: feed and brain may still be using it), the database (WAL,
schema). Then loop: drain the journal PULL socket in batches, one transaction per batch
(``journal.JournalWriter``); publish the trading permission and the heartbeat; periodic WAL
checkpoint. SIGTERM/SIGINT: drain what is queued, checkpoint, exit 0.

A disk that refuses a write (full, read-only, failing) is not a crash: the writer keeps what
it could not write, retries, and entries are halted meanwhile (docs/journal.md). The exit
code is ``policy.CHILD_EXIT_STORAGE_FAULT`` when the run directory cannot be written at
start, or when it stops with the journal still refused; the supervisor never restarts on it.

The orchestrator never deletes the ring: a restart of the orchestrator must not pull the
segment from under a running feed and brain. The supervisor removes it at final shutdown.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Callable

import structlog
import zmq

from common import bus, service, wire, zmqutil
from common.config import AegisConfig
from common.errors import DecodeError, RingError
from common.log import RateLimiter
from common.ring import Ring
from services.orchestrator import db, policy, storage
from services.orchestrator import journal as jn
from services.orchestrator.reconciler import ReconcileOutcome, Reconciler

log = structlog.get_logger(__name__)
NAME = "orchestrator"
JOURNAL_BATCH = 5_000  # messages per transaction at most
POLL_MS = 100


def open_ring(cfg: AegisConfig) -> Ring:
    """Attach to a valid existing segment, else (re)create it."""
    path = service.ring_path(cfg)
    if os.path.exists(path):
        try:
            ring = Ring.attach(path)
            if ring.capacity == cfg.ring.capacity:
                log.info("orchestrator.ring_attached", path=path, **ring.counters())
                return ring
            ring.close()
            log.warning("orchestrator.ring_recreated", path=path, reason="capacity changed")
        except RingError as exc:
            log.warning("orchestrator.ring_recreated", path=path, reason=str(exc))
    ring = Ring.create(path, cfg.ring.capacity)
    log.info("orchestrator.ring_created", path=path, capacity=cfg.ring.capacity)
    return ring


def main(argv: list[str] | None = None) -> int:
    args = service.arg_parser(NAME, "database, ring owner, journal writer").parse_args(argv)
    cfg = service.bootstrap(NAME, args)
    if args.spare and not service.serve_as_spare(NAME, cfg):
        return 0
    stop = service.StopFlag()
    service.install_stop_handlers(stop)
    try:
        rd = service.ensure_run_dir(service.run_dir(cfg))
        service.mark_starting(rd, NAME)
    except OSError as exc:  # the run directory's disk is full or read-only
        return storage_fault_at_start(exc, service.run_dir(cfg))
    ep = service.endpoints(rd, cfg)  # tcp: loads the CURVE keys, or refuses to start
    started = time.monotonic()

    try:
        ring = open_ring(cfg)
    except RingError as exc:  # e.g. the shm filesystem is too small: say so, do not crash
        log.error("orchestrator.ring_unavailable", error=str(exc))
        print(f"aegis orchestrator: {exc}", file=sys.stderr)
        return 2
    journal = bus.Subscriber.bind_pull(ep.journal)
    sync = zmqutil.router(ep.journal_sync)  # journal-then-act: answered after the commit
    poller = zmq.Poller()
    poller.register(journal.socket, zmq.POLLIN)
    poller.register(sync, zmq.POLLIN)
    # where each publisher's stream stood at our last commit: a gap after a restart of ours
    # is then exactly the messages that died in our queue
    writer = jn.JournalWriter(service.db_path(cfg), writer_config(cfg), connect=connector(cfg),
                              on_connect=lambda conn: seed_sequences(journal.tracker, db.load_sequences(conn)))
    writer.open()  # a disk that refuses even this: DEGRADED from the start, retried, not a crash
    pub = bus.Publisher.bind_pub(NAME, ep.orchestrator_pub)
    stats = {"journal_rejected": 0, "journal_gaps": 0, "checkpoints": 0, "sync_acked": 0, "sync_refused": 0}
    rec = make_reconciler(cfg, ring)
    limiter = RateLimiter(60.0)

    def verdict() -> wire.TradingPermission:
        return jn.permission(writer.fault, None if rec is None else rec.trading_allowed,
                             "" if rec is None else rec.last_status)

    def stats_doc() -> dict:
        extra = {} if rec is None else {"reconcile": rec.counters(), "reconcile_status": rec.last_status}
        w = writer.counters
        perm = verdict()
        return {"service": NAME, **stats, "journal_messages": w["journal_messages"],
                "rows_written": w["rows_written"], "batches": w["batches"], "journal": writer.status(),
                "permission": {"allowed": perm.allowed, "reason": perm.reason, "detail": perm.detail}, **extra}

    def write_stats() -> None:
        try:
            service.write_json_atomic(service.stats_path(rd, NAME), stats_doc())
        except OSError as exc:  # the run directory's disk: not a reason to stop writing the journal
            if limiter.allow("stats", time.monotonic()):
                log.warning("orchestrator.stats_write_failed", error=str(exc))

    try:
        service.mark_ready(rd, NAME)
    except OSError as exc:  # nobody may think we are up: close all and say why
        for closing in (writer.close, journal.close, sync.close, pub.close, ring.close, zmqutil.term):
            closing()
        return storage_fault_at_start(exc, rd)
    log.info("orchestrator.ready", run_dir=str(rd), db=str(service.db_path(cfg)), journal=writer.status()["state"])

    next_beat = next_ckpt = next_stats = 0.0
    published: wire.TradingPermission | None = None
    try:
        while True:
            stopping = stop.is_set()
            ready = dict(poller.poll(0 if stopping else POLL_MS))
            if sync in ready:
                serve_sync(sync, writer, journal.tracker, stats)
            batch = journal.drain(JOURNAL_BATCH) if journal.socket in ready else []
            if batch:
                writer.add(batch)
            writer.flush()  # at once when healthy; while DEGRADED when the retry is due
            if rec is not None and writer.ok and writer.conn is not None:
                apply_reconcile(rec.poll(writer.conn), writer, pub, stats)
            stats["journal_rejected"] = sum(journal.rejected.values())
            stats["journal_gaps"] = journal.tracker.gaps
            now = time.monotonic()
            perm = verdict()
            changed = perm != published
            beat = now >= next_beat or changed  # a change goes out at once, with a fresh heartbeat
            if beat:
                pub.publish(perm)
                published = perm
                next_beat = now + cfg.heartbeat_interval_s
                rc = {} if rec is None else {**rec.counters(), "reconcile_ok": float(rec.trading_allowed)}
                pub.publish(wire.Heartbeat(service=NAME, pid=os.getpid(), uptime_s=now - started,
                                           state=wire.ServiceState.RUNNING if perm.allowed else wire.ServiceState.DEGRADED,
                                           counters={**stats, **journal_counters(writer), **_ring_counters(ring),
                                                     **rc, "trading_allowed": float(perm.allowed)}))
            if now >= next_ckpt:
                next_ckpt = now + cfg.orchestrator.wal_checkpoint_interval_s
                if next_beat and writer.checkpoint("PASSIVE"):  # not on the very first pass
                    stats["checkpoints"] += 1
            if now >= next_stats:
                next_stats = now + 1.0
                write_stats()
            if stopping and not batch:
                break
    finally:
        if rec is not None:
            rec.close()
        while writer.pending and writer.flush(force=True):  # one last try for what is kept
            pass
        writer.spill()  # still refused: to the spill directory, else said lost
        writer.checkpoint("TRUNCATE")
        degraded = not writer.ok
        writer.close()
        write_stats()
        journal.close()
        sync.close()
        pub.close()
        ring.close()
        zmqutil.term()
        log.info("orchestrator.stopped", journal=writer.status()["state"], **stats, **writer.counters)
    return policy.CHILD_EXIT_STORAGE_FAULT if degraded else 0


def writer_config(cfg: AegisConfig) -> jn.WriterConfig:
    o = cfg.orchestrator
    return jn.WriterConfig(max_pending=o.journal_pending_max_messages, retry_initial_s=o.journal_retry_initial_s,
                           retry_max_s=o.journal_retry_max_s, batch=JOURNAL_BATCH, spill_dir=o.journal_spill_dir)


def connector(cfg: AegisConfig) -> Callable[[Path], Any]:
    """``db.connect``, or (tests only, ``orchestrator.fault_disk_full_file``) a connection whose
    writes fail as on a full disk while that file exists."""
    flag = cfg.orchestrator.fault_disk_full_file
    if not flag:
        return db.connect
    log.warning("orchestrator.fault_injection_armed", file=flag, note="test only: writes fail while it exists")
    return lambda path: storage.FaultInjection(db.connect(path), Path(flag))


def seed_sequences(tracker: wire.SequenceTracker, stored: dict[str, int]) -> None:
    """The database's last written sequence per stream, never moving the tracker backwards."""
    for k, v in stored.items():
        tracker.last[k] = max(tracker.last.get(k, 0), v)


def journal_counters(writer: jn.JournalWriter) -> dict[str, float]:
    st = writer.status()
    return {"journal_ok": float(writer.ok), "journal_pending": float(st["pending"]),
            "journal_free_bytes": float(st["free_bytes"]), "journal_faults": float(st["faults"]),
            "journal_kept": float(st["kept"]), "journal_written_late": float(st["written_late"]),
            "journal_dropped_candles": float(st["dropped_candles"]), "journal_messages": float(st["journal_messages"]),
            "rows_written": float(st["rows_written"]), "batches": float(st["batches"])}


def storage_fault_at_start(exc: OSError, where: Path) -> int:
    """The run directory cannot be written: one clear line and the exit code that tells the
    supervisor a restart would not help (``policy.CHILD_EXIT_STORAGE_FAULT``)."""
    fault = storage.classify(exc)
    if fault is None:
        raise exc
    free = storage.free_bytes(where)
    log.error("orchestrator.storage_fault_at_start", reason=fault.value, path=str(where), free_bytes=free,
              error=str(exc), effect="exiting; the supervisor does not restart this")
    print(f"aegis orchestrator: {fault.value}: cannot write {where}: {exc} ({free:,} bytes free)", file=sys.stderr)
    return policy.CHILD_EXIT_STORAGE_FAULT


def make_reconciler(cfg: AegisConfig, ring: Ring) -> Reconciler | None:
    """Reconciliation against the exchange the brain trades on (ccxt brokers only: a paper
    broker's account lives inside the brain, there is nothing outside to compare with)."""
    from venue import brokers

    if brokers.broker_kind(cfg) != "ccxt":
        return None
    t = cfg.trading
    return Reconciler(lambda: brokers.make_broker(cfg, None), interval_s=t.reconcile_interval_s,
                      symbols_fn=lambda: list(ring.symbol_names()), max_failures=t.reconcile_failures_to_halt,
                      recv_window_ms=t.recv_window_ms,
                      fills_lookback_ms=max(3_600_000, int(2_000 * t.reconcile_interval_s)))


def apply_reconcile(out: ReconcileOutcome | None, writer: jn.JournalWriter, pub: bus.Publisher,
                    stats: dict[str, int]) -> None:
    """Persist a run's repairs in this loop iteration (no journal write falls between the
    comparison and its repairs), then publish them for every subscriber."""
    if out is None:
        return
    repairs = out.repairs
    if repairs:
        now = time.time_ns()
        writer.add([wire.Envelope(wire.SCHEMA_VERSION, "orchestrator:reconcile", 0, now, now, b) for b in repairs])
        writer.flush()
        for b in repairs:
            pub.publish(b, now)
        stats["reconcile_repairs"] = stats.get("reconcile_repairs", 0) + len(repairs)
    log.info("orchestrator.reconciled", status=out.status, repairs=len(repairs), trading_allowed=out.trading_allowed,
             error=out.error or None)


def serve_sync(sock: zmq.Socket, writer: jn.JournalWriter, tracker: wire.SequenceTracker, stats: dict[str, int],
               limit: int = 1_000) -> None:
    """Write each synchronous journal message in its own transaction, then acknowledge it.

    The ack (``[peer, b"ok", seq]``) goes out only after the commit returned (synchronous=FULL:
    on disk). A message that cannot be written is answered with why (``err``, or the storage
    fault's reason such as ``JOURNAL_DISK_FULL``) so its sender does not act on it; one that
    cannot be decoded is not answered (its sender times out). A re-sent message (the ack was
    lost) is written again idempotently and acknowledged again."""
    for _ in range(limit):
        try:
            frames = sock.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return
        if len(frames) != 3:
            stats["sync_refused"] += 1
            continue  # no peer identity to answer
        peer, payload = frames[0], frames[1:]
        try:
            env = wire.decode(payload)
        except DecodeError as exc:
            stats["sync_refused"] += 1
            log.warning("orchestrator.sync_rejected", reason=exc.reason, error=str(exc))
            continue  # the sender times out and does not act
        stream = f"{env.publisher}/{env.type.value}"
        tracker.observe(stream, env.seq)
        try:
            refused = writer.write_sync(env, stream)
        except sqlite3.Error as exc:
            refused = "err"
            log.error("orchestrator.sync_write_failed", error=str(exc))
        if refused:
            stats["sync_refused"] += 1
            sock.send_multipart([peer, refused.encode(), str(env.seq).encode()])
            continue
        stats["sync_acked"] += 1
        sock.send_multipart([peer, b"ok", str(env.seq).encode()])


def _ring_counters(ring: Ring) -> dict[str, float]:
    return {f"ring_{k}": float(v) for k, v in ring.counters().items()}


if __name__ == "__main__":
    sys.exit(service.run_main(main))
