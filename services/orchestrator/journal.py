"""The journal writer: every message the orchestrator persists goes through here, in the order
it arrived, and a message the disk refuses is kept, not lost.

States and transitions (the whole table):

    OK        --a write fails with a storage fault-->   DEGRADED   one error line: the file,
                                                                   the free bytes, what could
                                                                   not be written
    DEGRADED  --a retry fails-->                        DEGRADED   next retry later (doubling)
    DEGRADED  --every kept message written-->           OK         one info line
    any       --a write fails otherwise (a bug)-->      raised, as before

What "storage fault" means is ``storage.classify`` (disk full, read-only, I/O error).

In DEGRADED every message waits in ``pending`` in arrival order (new ones queue behind the
kept ones, so nothing is written out of order) and a retry writes them from the oldest, one
transaction per group, each group with its streams' last sequence numbers
(``db.sequence_rows``): after the retry the journal's bookkeeping is exactly what it would
have been without the fault. A group that does not fit is halved for the next try (down to
one message), so whatever space comes back is used.

Bound: at most ``max_pending`` messages wait. Past it the oldest candles are dropped (down to
90 % of the bound, counted in ``dropped_candles``): the exchange can serve candles again,
while orders, fills, positions, trades, protective orders and model state cannot be rebuilt,
so those are never dropped; if nothing but them is left the queue grows past the bound (they
are a few per minute) and says so once a minute.

At stop, what is still kept is written to ``spill_dir`` (a second filesystem, when
configured) and written into the database at the next start, before anything new; without a
spill directory it is lost and the stop says how much, by type.

A synchronous request (an order to be journaled before it is sent) is acknowledged only once
it is committed: ``write_sync`` returns the fault's reason instead, and an entry is refused
at once while DEGRADED (exits and protective orders are still tried: a small write can fit).
"""

from __future__ import annotations

import itertools
import os
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import structlog

from common import wire
from common.errors import DecodeError
from common.log import RateLimiter
from services.orchestrator import db, storage
from services.orchestrator.storage import StorageFault

log = structlog.get_logger(__name__)
FLUSH_GROUPS_PER_CALL = 4  # a big backlog is written over several loop turns, not in one long stall
SPILL_PREFIX = "journal-spill-"
_LEN = struct.Struct(">I")


@dataclass(frozen=True, kw_only=True)
class WriterConfig:
    max_pending: int = 50_000  # messages kept in memory while the disk refuses them
    retry_initial_s: float = 0.5  # first retry after a fault; doubles
    retry_max_s: float = 10.0
    batch: int = 5_000  # messages per transaction at most
    spill_dir: str = ""  # where kept messages go at stop ("" = nowhere: they are lost)


@dataclass(frozen=True)
class Item:
    """One message waiting to be written: its rows, and the stream whose sequence it moves."""

    env: wire.Envelope
    rows: tuple[db.Row, ...]
    stream: str | None  # None: no sequence bookkeeping (the orchestrator's own repairs)
    extra: tuple[db.Row, ...] = ()  # written in the same transaction (a spill file's "applied" mark)
    spill_file: str = ""  # the spill file this message came from (it stays there until applied)

    @property
    def candle(self) -> bool:
        return isinstance(self.env.body, wire.CandleClosed)


@dataclass(frozen=True, kw_only=True)
class Fault:
    reason: StorageFault
    error: str
    db: str
    free_bytes: int
    since_s: float
    what: str  # what could not be written, e.g. "3 messages: 2 CANDLE_CLOSED, 1 FILL"


def item_for(env: wire.Envelope) -> Item:
    stream = f"{env.publisher}/{env.type.value}" if env.seq > 0 else None
    return Item(env=env, rows=tuple(db.rows_for(env)), stream=stream)


def sequence_marks(items: Iterable[Item]) -> dict[str, int]:
    """The last sequence number of each stream among ``items`` (pure)."""
    out: dict[str, int] = {}
    for it in items:
        if it.stream is not None and it.env.seq > out.get(it.stream, 0):
            out[it.stream] = it.env.seq
    return out


def describe(envs: Iterable[wire.Envelope]) -> str:
    """``"3 messages: 2 CANDLE_CLOSED, 1 FILL"`` (pure)."""
    kinds = Counter(e.type.value for e in envs)
    n = sum(kinds.values())
    return f"{n} message{'s' if n != 1 else ''}: " + ", ".join(f"{v} {k}" for k, v in kinds.most_common())


def retry_delay_s(cfg: WriterConfig, failures: int) -> float:
    """Delay after the ``failures``-th failed attempt in a row (1-based): initial, doubling, capped."""
    return min(cfg.retry_max_s, cfg.retry_initial_s * (2 ** max(0, failures - 1)))


def is_entry(body: Any) -> bool:
    """An order that opens or adds to a position (what a journal fault halts)."""
    return isinstance(body, wire.OrderRequest) and not body.reduce_only


def permission(fault: Fault | None, reconcile_allowed: bool | None,
               reconcile_status: str = "") -> wire.TradingPermission:
    """The orchestrator's verdict on new entries (pure): a journal fault first (nothing can be
    journaled), then reconciliation (``None``: no reconciliation in this mode)."""
    if fault is not None:
        return wire.TradingPermission(allowed=False, reason=fault.reason.value, detail=fault_detail(fault))
    if reconcile_allowed is False:
        status = reconcile_status or "NONE"
        return wire.TradingPermission(allowed=False, reason=f"RECONCILE_{status}",
                                      detail=f"reconciliation {status}: not trading until it passes")
    return wire.TradingPermission(allowed=True)


def fault_detail(f: Fault) -> str:
    return f"cannot write {f.db}: {f.error} ({f.free_bytes:,} bytes free)"


class JournalWriter:
    """The database connection and the messages waiting for it (see the module's docstring).

    ``connect`` opens the database (``db.connect``; a test hands in one that fails), ``clock``
    is monotonic seconds, ``on_connect`` is told each new connection (the shell reads the
    journal's sequence bookkeeping from it)."""

    def __init__(self, path: Path, cfg: WriterConfig, *, connect: Callable[[Path], Any] = db.connect,
                 clock: Callable[[], float] = time.monotonic, on_connect: Callable[[Any], None] | None = None,
                 free_bytes: Callable[[Path], int] = storage.free_bytes) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self._connect = connect
        self._clock = clock
        self._on_connect = on_connect
        self._free_bytes = free_bytes
        self.conn: Any = None
        self.pending: deque[Item] = deque()
        self.fault: Fault | None = None
        self.failures = 0  # failed attempts in a row while DEGRADED
        self.next_retry_s = 0.0
        self.group = cfg.batch
        self._candles = 0  # candles in ``pending`` (the bound drops those first)
        self._spills_loaded = False
        self._limiter = RateLimiter(60.0)
        self.counters: dict[str, int] = {
            "journal_messages": 0, "rows_written": 0, "batches": 0, "faults": 0, "retries": 0,
            "kept": 0, "written_late": 0, "dropped_candles": 0, "sync_refused_storage": 0,
            "spilled_at_stop": 0, "lost_at_stop": 0, "spill_loaded": 0, "spill_rejected": 0}

    # ------------------------------------------------------------------ views
    @property
    def ok(self) -> bool:
        return self.fault is None

    def status(self) -> dict[str, Any]:
        """The journal's state for stats, the summary and the heartbeat."""
        f = self.fault
        return {"state": "OK" if f is None else "DEGRADED", "reason": "" if f is None else f.reason.value,
                "detail": "" if f is None else fault_detail(f), "db": str(self.path),
                "free_bytes": self._free_bytes(self.path), "pending": len(self.pending), **self.counters}

    # ------------------------------------------------------------------ connection
    def open(self) -> bool:
        """Open the database (and queue any spilled messages first); False = DEGRADED."""
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - a broken connection is replaced either way
                pass
            self.conn = None
        try:
            conn = self._connect(self.path)
        except Exception as exc:
            fault = storage.classify(exc)
            if fault is None:
                raise
            self._degrade(fault, exc, "the database itself (opening it, its schema)")
            return False
        self.conn = conn
        if self._on_connect is not None:
            self._on_connect(conn)
        self._load_spills()
        return True

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def checkpoint(self, mode: str) -> bool:
        """A WAL checkpoint; skipped while DEGRADED (it writes too), a storage fault is not fatal."""
        if self.conn is None or self.fault is not None:
            return False
        try:
            self.conn.execute(f"PRAGMA wal_checkpoint({mode})")
        except Exception as exc:
            if storage.classify(exc) is None:
                raise
            log.warning("orchestrator.checkpoint_failed", mode=mode, error=str(exc))
            return False
        return True

    # ------------------------------------------------------------------ writing
    def add(self, envs: Iterable[wire.Envelope]) -> None:
        """Queue messages (in order) behind whatever is already waiting."""
        n = 0
        for env in envs:
            it = item_for(env)
            self.pending.append(it)
            self._candles += it.candle
            n += 1
        self.counters["journal_messages"] += n
        if self.fault is not None:
            self.counters["kept"] += n
            self._enforce_bound()

    def flush(self, *, force: bool = False) -> int:
        """Write what waits, oldest first; returns the messages written. While DEGRADED only
        when the retry is due (or ``force``: at stop)."""
        if self.fault is not None:
            now = self._clock()
            if not force and now < self.next_retry_s:
                return 0
            self.counters["retries"] += 1
            if self.conn is None or self.fault.reason is StorageFault.IO_ERROR:
                if not self.open():
                    return 0
            if not self.pending:
                return self._probe()
        elif not self.pending:
            return 0
        written = 0
        late = self.fault is not None
        limit = self.cfg.batch * FLUSH_GROUPS_PER_CALL
        while self.pending and written < limit:
            group = list(itertools.islice(self.pending, self.group))
            marks = sequence_marks(group)
            rows = [r for it in group for r in (*it.rows, *it.extra)] + db.sequence_rows(marks)
            try:
                changed = db.write_batch(self.conn, rows)
            except Exception as exc:
                fault = storage.classify(exc)
                if fault is None:
                    raise
                self._degrade(fault, exc, describe(it.env for it in group), shrink=True)
                return written
            for it in group:
                self.pending.popleft()
                self._candles -= it.candle
                if it.spill_file and it.extra:  # the file's last message: the whole file is applied
                    Path(it.spill_file).unlink(missing_ok=True)
            written += len(group)
            self.counters["rows_written"] += changed - len(marks)
            self.counters["batches"] += 1
            if late:
                self.counters["written_late"] += len(group)
            self.group = min(self.cfg.batch, self.group * 2)
        if self.fault is not None and not self.pending:
            self._recovered()
        return written

    def write_sync(self, env: wire.Envelope, stream: str) -> str:
        """Write one message in its own transaction: "" once it is committed, else the storage
        fault's reason (the sender must not act on it: it is not kept here either)."""
        if self.fault is not None and is_entry(env.body):
            self.counters["sync_refused_storage"] += 1
            return self.fault.reason.value
        if self.conn is None:
            self.counters["sync_refused_storage"] += 1
            return (self.fault.reason if self.fault is not None else StorageFault.IO_ERROR).value
        try:
            db.write_batch(self.conn, db.rows_for(env) + db.sequence_rows({stream: env.seq}))
        except Exception as exc:
            fault = storage.classify(exc)
            if fault is None:
                raise
            self.counters["sync_refused_storage"] += 1
            self._degrade(fault, exc, describe([env]) + " (synchronous, not acknowledged)")
            return fault.value
        if self.fault is not None:
            self.next_retry_s = self._clock()  # it took a write: try the kept ones now
        return ""

    # ------------------------------------------------------------------ state changes
    def _degrade(self, fault: StorageFault, exc: BaseException, what: str, *, shrink: bool = False) -> None:
        """Enter (or stay in) DEGRADED; ``shrink``: a group of kept messages failed, halve the next."""
        now = self._clock()
        first = self.fault is None
        if first:
            self.counters["kept"] += len(self.pending)
        self.failures = 1 if first else self.failures + 1
        self.next_retry_s = now + retry_delay_s(self.cfg, self.failures)
        if shrink:
            self.group = max(1, self.group // 2)
        self.fault = Fault(reason=fault, error=str(exc), db=str(self.path), free_bytes=self._free_bytes(self.path),
                           since_s=now if first else self.fault.since_s, what=what)  # type: ignore[union-attr]
        if first:
            self.counters["faults"] += 1
            log.error("orchestrator.journal_write_failed", reason=fault.value, db=str(self.path),
                      free_bytes=self.fault.free_bytes, could_not_write=what, error=str(exc),
                      kept_in_memory=len(self.pending), retry_in_s=round(self.next_retry_s - now, 3),
                      effect="entries halted; exits still go; kept messages are written when the disk takes them")
        elif self._limiter.allow("still", now):
            log.warning("orchestrator.journal_still_failing", reason=fault.value, db=str(self.path),
                        free_bytes=self.fault.free_bytes, kept_in_memory=len(self.pending),
                        failed_s=round(now - self.fault.since_s, 1), retry_in_s=round(self.next_retry_s - now, 3))

    def _recovered(self) -> None:
        f = self.fault
        assert f is not None
        now = self._clock()
        self.fault = None
        self.failures = 0
        log.info("orchestrator.journal_recovered", reason=f.reason.value, db=str(self.path),
                 degraded_s=round(now - f.since_s, 3), written_late=self.counters["written_late"],
                 dropped_candles=self.counters["dropped_candles"], free_bytes=self._free_bytes(self.path))

    def _probe(self) -> int:
        """Nothing waits, yet the last write failed: a one-row write says whether it works again."""
        try:
            db.write_batch(self.conn, [("INSERT OR REPLACE INTO meta VALUES ('journal_checked_ns', ?)",
                                        (str(time.time_ns()),))])
        except Exception as exc:
            fault = storage.classify(exc)
            if fault is None:
                raise
            self._degrade(fault, exc, "a one-row check")
            return 0
        self._recovered()
        return 0

    def _enforce_bound(self) -> None:
        excess = len(self.pending) - self.cfg.max_pending
        if excess <= 0:
            return
        if not self._candles:
            if self._limiter.allow("over_bound", self._clock()):
                log.warning("orchestrator.journal_pending_over_bound", pending=len(self.pending),
                            bound=self.cfg.max_pending,
                            note="nothing droppable left: orders, fills and positions are kept")
            return
        drop = len(self.pending) - int(self.cfg.max_pending * 0.9)
        kept: deque[Item] = deque()
        dropped = 0
        for it in self.pending:
            if dropped < drop and it.candle:
                dropped += 1
                continue
            kept.append(it)
        self.pending = kept
        self._candles -= dropped
        self.counters["dropped_candles"] += dropped
        log.warning("orchestrator.journal_candles_dropped", dropped=dropped, total=self.counters["dropped_candles"],
                    pending=len(self.pending), bound=self.cfg.max_pending)

    # ------------------------------------------------------------------ stop and start
    def spill(self) -> None:
        """At stop: what is still kept goes to the spill directory, else it is lost (said).
        Messages loaded from an earlier spill file and still unwritten stay in that file."""
        fresh = [it.env for it in self.pending if not it.spill_file]
        if not fresh:
            return
        kinds = describe(fresh)
        if self.cfg.spill_dir:
            try:
                path = write_spill(Path(self.cfg.spill_dir), fresh)
            except OSError as exc:
                log.error("orchestrator.journal_spill_failed", spill_dir=self.cfg.spill_dir, error=str(exc))
            else:
                self.counters["spilled_at_stop"] = len(fresh)
                log.warning("orchestrator.journal_spilled", file=str(path), messages=kinds,
                            note="written into the database at the next start")
                self.pending.clear()
                return
        self.counters["lost_at_stop"] = len(fresh)
        log.error("orchestrator.journal_lost_at_stop", db=str(self.path), messages=kinds,
                  note="no orchestrator.journal_spill_dir to keep them in")

    def _load_spills(self) -> None:
        """Queue every spill file, oldest first, ahead of anything else; each file carries its
        "applied" mark in the transaction of its last message, so a file is applied once."""
        d = self.cfg.spill_dir
        if self._spills_loaded or not d or not Path(d).is_dir():
            return
        self._spills_loaded = True
        items: list[Item] = []
        for f in sorted(Path(d).glob(f"{SPILL_PREFIX}*.bin")):
            key = f"spill_applied:{f.name}"
            if self.conn.execute("SELECT 1 FROM meta WHERE key=?", (key,)).fetchone():
                f.unlink(missing_ok=True)
                continue
            envs, bad = read_spill(f)
            self.counters["spill_rejected"] += bad
            if not envs:
                f.unlink(missing_ok=True)
                continue
            its = [replace(item_for(e), spill_file=str(f)) for e in envs]
            mark = ("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(time.time_ns())))
            its[-1] = replace(its[-1], extra=(mark,))
            items += its
            log.info("orchestrator.journal_spill_loaded", file=str(f), messages=describe(envs), rejected=bad)
        if items:
            self.counters["spill_loaded"] += len(items)
            self._candles += sum(it.candle for it in items)
            self.pending.extendleft(reversed(items))


# ---------------------------------------------------------------------------- spill files
def write_spill(directory: Path, envs: Sequence[wire.Envelope]) -> Path | None:
    """Write envelopes as length-prefixed wire frames (topic, payload), fsync'd, renamed into
    place: a reader never sees half a file."""
    if not envs:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{SPILL_PREFIX}{time.time_ns()}.bin"
    tmp = directory / f".{path.name}.tmp"
    with open(tmp, "wb") as fh:
        for env in envs:
            for frame in wire.encode(env):
                fh.write(_LEN.pack(len(frame)))
                fh.write(frame)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path


def read_spill(path: Path) -> tuple[list[wire.Envelope], int]:
    """The envelopes of a spill file and how many records were unreadable (a torn tail ends it)."""
    data = path.read_bytes()
    out: list[wire.Envelope] = []
    bad = 0
    pos = 0
    while pos < len(data):
        frames = []
        for _ in range(2):
            if pos + _LEN.size > len(data):
                return out, bad + 1
            (n,) = _LEN.unpack_from(data, pos)
            pos += _LEN.size
            if pos + n > len(data):
                return out, bad + 1
            frames.append(data[pos:pos + n])
            pos += n
        try:
            out.append(wire.decode(frames))
        except DecodeError:
            bad += 1
    return out, bad
