"""The orchestrator's app: the journal writer, the journal and sync sockets, reconciliation,
the trading permission and the heartbeat, as one object whose ``step`` is one turn of the
loop. ``services.orchestrator.__main__`` is the shell around it (arguments, signals, the run
directory, start-up faults, the loop itself).

One turn (``step``): answer the synchronous journal requests (journal, then act), drain the
buffered journal in one transaction, retry kept messages when due, run reconciliation when
due (its repairs are journaled in the same turn), publish the trading permission (at once
when it changes) with a heartbeat, checkpoint the WAL, write the stats file once a second.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import structlog
import zmq

from common import bus, journal_store, service, wire, zmqutil
from common.config import AegisConfig
from common.errors import DecodeError, RingError
from common.log import RateLimiter
from common.ring import Ring
from services.orchestrator import db, policy, storage
from services.orchestrator import journal as jn
from services.orchestrator.reconciler import ReconcileOutcome, Reconciler
from services.orchestrator.reconcile_diff import for_brain

log = structlog.get_logger(__name__)
NAME = "orchestrator"
JOURNAL_BATCH = 5_000  # messages per transaction at most
POLL_MS = 100


class OrchestratorApp:
    def __init__(self, cfg: AegisConfig, rd: Path, ep: Any, ring: Ring) -> None:
        self.cfg, self.rd, self.ring = cfg, rd, ring
        self.started = time.monotonic()
        self.journal = bus.Subscriber.bind_pull(ep.journal)
        self.sync = zmqutil.router(ep.journal_sync)  # journal-then-act: answered after the commit
        self.poller = zmq.Poller()
        self.poller.register(self.journal.socket, zmq.POLLIN)
        self.poller.register(self.sync, zmq.POLLIN)
        # where each publisher's stream stood at our last commit: a gap after a restart of ours
        # is then exactly the messages that died in our queue
        tracker = self.journal.tracker
        self.writer = jn.JournalWriter(service.db_path(cfg), writer_config(cfg), connect=connector(cfg),
                                       on_connect=lambda conn: seed_sequences(tracker, db.load_sequences(conn)))
        self.writer.open()  # a disk that refuses even this: DEGRADED from the start, retried, not a crash
        self.pub = bus.Publisher.bind_pub(NAME, ep.orchestrator_pub)
        self.stats = {"journal_rejected": 0, "journal_gaps": 0, "checkpoints": 0, "sync_acked": 0, "sync_refused": 0}
        self.rec = make_reconciler(cfg, ring)
        self.limiter = RateLimiter(60.0)
        self.next_beat = self.next_ckpt = self.next_stats = 0.0
        self.published: wire.TradingPermission | None = None

    # ------------------------------------------------------------------ views
    def verdict(self) -> wire.TradingPermission:
        rec = self.rec
        return jn.permission(self.writer.fault, None if rec is None else rec.trading_allowed,
                             "" if rec is None else rec.last_status)

    def stats_doc(self) -> dict:
        rec = self.rec
        extra = {} if rec is None else {"reconcile": rec.counters(), "reconcile_status": rec.last_status,
                                        "reconcile_open_flags": [{"kind": d.kind, "symbol": d.symbol, "detail": d.detail}
                                                                 for d in rec.open_flags]}
        w = self.writer.counters
        perm = self.verdict()
        return {"service": NAME, **self.stats, "journal_messages": w["journal_messages"],
                "rows_written": w["rows_written"], "batches": w["batches"], "journal": self.writer.status(),
                "permission": {"allowed": perm.allowed, "reason": perm.reason, "detail": perm.detail}, **extra}

    def write_stats(self) -> None:
        try:
            service.write_json_atomic(service.stats_path(self.rd, NAME), self.stats_doc())
        except OSError as exc:  # the run directory's disk: not a reason to stop writing the journal
            if self.limiter.allow("stats", time.monotonic()):
                log.warning("orchestrator.stats_write_failed", error=str(exc))

    # ------------------------------------------------------------------ the loop
    def step(self, stopping: bool) -> bool:
        """One turn (see the module's docstring); True when journal messages were drained."""
        writer, stats, rec = self.writer, self.stats, self.rec
        ready = dict(self.poller.poll(0 if stopping else POLL_MS))
        if self.sync in ready:
            serve_sync(self.sync, writer, self.journal.tracker, stats)
        batch = self.journal.drain(JOURNAL_BATCH) if self.journal.socket in ready else []
        if batch:
            writer.add(batch)
        writer.flush()  # at once when healthy; while DEGRADED when the retry is due
        if rec is not None and writer.ok and writer.conn is not None:
            apply_reconcile(rec.poll(writer.conn), writer, self.pub, stats)
        stats["journal_rejected"] = sum(self.journal.rejected.values())
        stats["journal_gaps"] = self.journal.tracker.gaps
        now = time.monotonic()
        perm = self.verdict()
        if now >= self.next_beat or perm != self.published:  # a change goes out at once, with a fresh heartbeat
            self.heartbeat(perm, now)
        if now >= self.next_ckpt:
            self.next_ckpt = now + self.cfg.orchestrator.wal_checkpoint_interval_s
            if self.next_beat and writer.checkpoint("PASSIVE"):  # not on the very first pass
                stats["checkpoints"] += 1
        if now >= self.next_stats:
            self.next_stats = now + 1.0
            self.write_stats()
        return bool(batch)

    def heartbeat(self, perm: wire.TradingPermission, now: float) -> None:
        self.pub.publish(perm)
        self.published = perm
        self.next_beat = now + self.cfg.heartbeat_interval_s
        rec = self.rec
        rc = {} if rec is None else {**rec.counters(), "reconcile_ok": float(rec.trading_allowed)}
        self.pub.publish(wire.Heartbeat(
            service=NAME, pid=os.getpid(), uptime_s=now - self.started,
            state=wire.ServiceState.RUNNING if perm.allowed else wire.ServiceState.DEGRADED,
            counters={**self.stats, **journal_counters(self.writer), **_ring_counters(self.ring), **rc,
                      "trading_allowed": float(perm.allowed)}))

    def close(self) -> bool:
        """Last try for what is kept, spill the rest, checkpoint, close every socket; True
        when the journal was still refused at the end (a storage fault)."""
        writer = self.writer
        if self.rec is not None:
            self.rec.close()
        while writer.pending and writer.flush(force=True):  # one last try for what is kept
            pass
        writer.spill()  # still refused: to the spill directory, else said lost
        writer.checkpoint("TRUNCATE")
        degraded = not writer.ok
        writer.close()
        self.write_stats()
        self.close_sockets()
        log.info("orchestrator.stopped", journal=writer.status()["state"], **self.stats, **writer.counters)
        return degraded

    def close_sockets(self) -> None:
        for closing in (self.journal.close, self.sync.close, self.pub.close, self.ring.close, zmqutil.term):
            closing()


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
    comparison and its repairs), with the external fills it reported for the first time (so
    the next run does not report them again), then publish them for every subscriber."""
    if out is None:
        return
    repairs = out.repairs
    written = (*repairs, *out.flag_records)
    if written:
        now = time.time_ns()
        writer.add([wire.Envelope(wire.SCHEMA_VERSION, "orchestrator:reconcile", 0, now, now, b) for b in written])
        writer.flush()
        for b in written:
            pub.publish(b, now)
    if repairs:
        stats["reconcile_repairs"] = stats.get("reconcile_repairs", 0) + len(repairs)
        told = for_brain(out.report) if out.report is not None else None
        if told is not None:  # after the repairs are written: the running brain re-reads these symbols
            pub.publish(told, now)
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
        except journal_store.DatabaseError as exc:
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


