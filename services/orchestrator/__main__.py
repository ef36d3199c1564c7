"""Orchestrator shell: owns the database and the ring segment, writes the journal.

Start-up: create the run directory (0700), the ring segment (or re-attach to a valid one a
previous incarnation left: feed and brain may still be using it), the database (WAL,
schema). Then loop: drain the journal PULL socket in batches, one transaction per batch;
heartbeat; periodic WAL checkpoint. SIGTERM/SIGINT: drain what is queued, checkpoint, exit 0.

The orchestrator never deletes the ring: a restart of the orchestrator must not pull the
segment from under a running feed and brain. The supervisor removes it at final shutdown.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time

import structlog
import zmq

from common import bus, service, wire, zmqutil
from common.config import AegisConfig
from common.errors import DecodeError, RingError
from common.ring import Ring
from services.orchestrator import db
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
    rd = service.ensure_run_dir(service.run_dir(cfg))
    service.mark_starting(rd, NAME)
    ep = service.endpoints(rd, cfg)  # tcp: loads the CURVE keys, or refuses to start
    started = time.monotonic()

    try:
        ring = open_ring(cfg)
    except RingError as exc:  # e.g. the shm filesystem is too small: say so, do not crash
        log.error("orchestrator.ring_unavailable", error=str(exc))
        print(f"aegis orchestrator: {exc}", file=sys.stderr)
        return 2
    conn = db.connect(service.db_path(cfg))
    journal = bus.Subscriber.bind_pull(ep.journal)
    sync = zmqutil.router(ep.journal_sync)  # journal-then-act: answered after the commit
    poller = zmq.Poller()
    poller.register(journal.socket, zmq.POLLIN)
    poller.register(sync, zmq.POLLIN)
    # where each publisher's stream stood at our last commit: a gap after a restart of ours
    # is then exactly the messages that died in our queue
    journal.tracker.last.update(db.load_sequences(conn))
    pub = bus.Publisher.bind_pub(NAME, ep.orchestrator_pub)
    stats = {"journal_messages": 0, "rows_written": 0, "journal_rejected": 0,
             "journal_gaps": 0, "batches": 0, "checkpoints": 0, "sync_acked": 0, "sync_refused": 0}
    rec = make_reconciler(cfg, ring)

    def stats_doc() -> dict:
        extra = {} if rec is None else {"reconcile": rec.counters(), "reconcile_status": rec.last_status}
        return {"service": NAME, **stats, **extra}

    service.mark_ready(rd, NAME)
    log.info("orchestrator.ready", run_dir=str(rd), db=str(service.db_path(cfg)))

    next_beat = next_ckpt = next_stats = 0.0
    try:
        while True:
            stopping = stop.is_set()
            ready = dict(poller.poll(0 if stopping else POLL_MS))
            if sync in ready:
                serve_sync(sync, conn, journal.tracker, stats)
            batch = journal.drain(JOURNAL_BATCH) if journal.socket in ready else []
            if batch:
                rows = [r for env in batch for r in db.rows_for(env)]
                streams = {f"{e.publisher}/{e.type.value}" for e in batch}
                rows += db.sequence_rows({k: journal.tracker.last[k] for k in streams})
                stats["rows_written"] += db.write_batch(conn, rows) - len(streams)
                stats["journal_messages"] += len(batch)
                stats["batches"] += 1
            if rec is not None:
                apply_reconcile(rec.poll(conn), conn, pub, stats)
            stats["journal_rejected"] = sum(journal.rejected.values())
            stats["journal_gaps"] = journal.tracker.gaps
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + cfg.heartbeat_interval_s
                rc = {} if rec is None else {**rec.counters(), "reconcile_ok": float(rec.trading_allowed)}
                pub.publish(wire.Heartbeat(service=NAME, pid=os.getpid(), uptime_s=now - started,
                                           state="RUNNING" if rec is None or rec.trading_allowed else "DEGRADED",
                                           counters={**stats, **_ring_counters(ring), **rc}))
            if now >= next_ckpt:
                next_ckpt = now + cfg.orchestrator.wal_checkpoint_interval_s
                if next_beat:  # not on the very first pass
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    stats["checkpoints"] += 1
            if now >= next_stats:
                next_stats = now + 1.0
                service.write_json_atomic(service.stats_path(rd, NAME), stats_doc())
            if stopping and not batch:
                break
    finally:
        if rec is not None:
            rec.close()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        service.write_json_atomic(service.stats_path(rd, NAME), stats_doc())
        journal.close()
        sync.close()
        pub.close()
        ring.close()
        zmqutil.term()
        log.info("orchestrator.stopped", **stats)
    return 0


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


def apply_reconcile(out: ReconcileOutcome | None, conn, pub: bus.Publisher, stats: dict[str, int]) -> None:
    """Persist a run's repairs in this loop iteration (no journal write falls between the
    comparison and its repairs), then publish them for every subscriber."""
    if out is None:
        return
    repairs = out.repairs
    if repairs:
        now = time.time_ns()
        envs = [wire.Envelope(wire.SCHEMA_VERSION, "orchestrator:reconcile", 0, now, now, b) for b in repairs]
        db.write_batch(conn, [r for e in envs for r in db.rows_for(e)])
        for b in repairs:
            pub.publish(b, now)
        stats["reconcile_repairs"] = stats.get("reconcile_repairs", 0) + len(repairs)
    log.info("orchestrator.reconciled", status=out.status, repairs=len(repairs), trading_allowed=out.trading_allowed,
             error=out.error or None)


def serve_sync(sock: zmq.Socket, conn, tracker: wire.SequenceTracker, stats: dict[str, int],
               limit: int = 1_000) -> None:
    """Write each synchronous journal message in its own transaction, then acknowledge it.

    The ack (``[peer, b"ok", seq]``) goes out only after the commit returned (synchronous=FULL:
    on disk). A message that cannot be decoded or written is answered ``err`` so its sender
    does not act on it. A re-sent message (the ack was lost) is written again idempotently
    and acknowledged again."""
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
            db.write_batch(conn, db.rows_for(env) + db.sequence_rows({stream: env.seq}))
        except sqlite3.Error as exc:
            stats["sync_refused"] += 1
            log.error("orchestrator.sync_write_failed", error=str(exc))
            sock.send_multipart([peer, b"err", str(env.seq).encode()])
            continue
        stats["sync_acked"] += 1
        sock.send_multipart([peer, b"ok", str(env.seq).encode()])


def _ring_counters(ring: Ring) -> dict[str, float]:
    return {f"ring_{k}": float(v) for k, v in ring.counters().items()}


if __name__ == "__main__":
    sys.exit(service.run_main(main))
