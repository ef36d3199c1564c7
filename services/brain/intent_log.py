"""The brain's local intent log: an order is written here, then sent, then journaled.

Why. The SQLite journal is the system of record, but it lives in another process: waiting for
its fsync'd answer before every send cost ~2.6 ms on the order path. The guarantee it gave
("no order the system cannot find again after a crash") only needs the order's intent to be
somewhere that survives the crash *before* its bytes can reach the exchange. This log is that
place, in the brain's own process: one ``write()`` of one framed record (a few microseconds),
then the send, then the journal (through the ordinary buffered path, after the send).

Durability (group commit). ``write()`` puts the record in the kernel's page cache: from that
moment a crash of the brain (SIGKILL, an exception, the OOM killer) cannot lose it. Only a
crash of the machine itself (power, kernel) can, and only for records not yet on the disk. A
background flusher thread makes them durable with one ``fdatasync`` for every record written
since the last one, at most every ``flush_interval_ms`` (2 ms by default): the send never
waits for a disk, and a burst of orders costs one disk flush. Records a machine crash can take
are then at most those of the last few milliseconds, and every one of them has a
deterministic client id (``ae-``/``ax-``/``ps-``/``pt-``, ``venue.orders.make_client_order_id``):
the restarted brain asks the exchange for the ids it knows, and both it and reconciliation
adopt orders with our prefixes that they find at the exchange (its open orders, and its order
history for those already finished) and nothing here knows (``recovery.from_history``,
``services.orchestrator.reconcile_diff``). So after any crash, every order that may have reached
the exchange is findable: in this log, or at the exchange by its id.

Format (little-endian), one record per intent, appended::

    magic  2 bytes  b"\\xae\\x17"
    length u32      payload bytes (1 .. MAX_PAYLOAD)
    crc32  u32      zlib.crc32 of the payload
    payload         msgpack of ``Intent`` (its client id, when, the wire body)

Reading (``decode``, pure) never raises: a record whose header, checksum or payload does not
check out is counted and skipped (the reader looks for the next magic that starts a good
record), a torn last record (a crash in the middle of a write) is counted and dropped. The
shell logs one line with the counts.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import msgspec
import structlog

from common import wire
from common.errors import DataError

log = structlog.get_logger(__name__)

MAGIC = b"\xae\x17"
_HEADER = struct.Struct("<2sII")
HEADER_BYTES = _HEADER.size  # 10
MAX_PAYLOAD = 64 * 1024  # an order intent is ~200 bytes; a larger length field is damage
FLUSH_INTERVAL_MS = 2.0
FILE_NAME = "brain-intents.log"

Body = Union[wire.OrderRequest, wire.AlgoOrderUpdate]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """An entry's plan (what the journal's signals row would give a restarted brain)."""

    trade_id: str
    stop: float
    target: float
    confidence: float = 0.0
    features: dict[str, float] = {}
    # the signal the entry came from: journaled again with the order after a crash that took
    # both on their way to the journal (None in records written before it was kept)
    signal: wire.SignalGenerated | None = None


class Intent(msgspec.Struct, frozen=True, kw_only=True):
    """One order (or protective order) the brain is about to send."""

    client_id: str  # the deterministic id: the key of the record
    at_ns: int  # wall clock when it was decided
    body: Body
    plan: Plan | None = None  # entries: stop, target, confidence, features


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Intent)


# ---------------------------------------------------------------------------- codec (pure)
def encode(intent: Intent) -> bytes:
    """One framed record."""
    payload = _enc.encode(intent)
    if not 0 < len(payload) <= MAX_PAYLOAD:  # execution_send and _inline catch it: the order goes anyway
        raise DataError(f"intent record of {len(payload)} bytes (at most {MAX_PAYLOAD})", reason="intent_too_large")
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


_AT_SENTINEL = 0x7EDC_BA98_7654_3210  # an at_ns no clock gives (year 2262): marks where it goes
_AT_FIELD = b"\xcf" + _AT_SENTINEL.to_bytes(8, "big")  # msgpack uint64, as every at_ns since 1970 + 4 s


@dataclass(frozen=True, slots=True)
class Template:
    """An intent encoded ahead with its time left open (the exit lane's, made before the exit
    is needed): ``stamped(at_ns)`` gives the very bytes ``encode`` gives for that time."""

    payload: bytes
    at_offset: int  # where the 8 bytes of at_ns go

    def stamped(self, at_ns: int) -> bytes:
        if not 1 << 32 <= at_ns < 1 << 64:  # another msgpack width: not this template's bytes
            raise DataError(f"intent template: at_ns {at_ns} out of range", reason="intent_time")
        p = bytearray(self.payload)
        p[self.at_offset:self.at_offset + 8] = at_ns.to_bytes(8, "big")
        return _HEADER.pack(MAGIC, len(p), zlib.crc32(p)) + p


def template(client_id: str, body: Body, plan: Plan | None = None) -> Template:
    """``Template`` of the intent ``(client_id, body, plan)``."""
    payload = _enc.encode(Intent(client_id=client_id, at_ns=_AT_SENTINEL, body=body, plan=plan))
    if not 0 < len(payload) <= MAX_PAYLOAD:  # as encode's (the exit lane catches any error)
        raise DataError(f"intent record of {len(payload)} bytes (at most {MAX_PAYLOAD})", reason="intent_too_large")
    at = payload.find(_AT_FIELD)
    if at < 0 or payload.find(_AT_FIELD, at + 1) >= 0:  # never: the sentinel is unique and 9 bytes long
        raise DataError("intent template: the time field is not where it can be filled in", reason="intent_time")
    return Template(payload=payload, at_offset=at + 1)


@dataclass(frozen=True, kw_only=True)
class Decoded:
    intents: tuple[Intent, ...]
    good_bytes: int  # the length of the prefix that ends with the last good record
    corrupt: int = 0  # damaged regions skipped (bad header, checksum or payload) before a good record
    torn: int = 0  # 1 when the file ends inside a record (or inside damage): the tail dropped
    dropped_bytes: int = 0


def _record_at(buf: bytes, i: int) -> tuple[Intent | None, int]:
    """(intent, end offset) for a good record at ``i``; (None, 0) otherwise."""
    n = len(buf)
    if n - i < HEADER_BYTES:
        return None, 0
    magic, length, crc = _HEADER.unpack_from(buf, i)
    if magic != MAGIC or not 0 < length <= MAX_PAYLOAD:
        return None, 0
    end = i + HEADER_BYTES + length
    if end > n:
        return None, 0
    payload = buf[i + HEADER_BYTES:end]
    if zlib.crc32(payload) != crc:
        return None, 0
    try:
        return _dec.decode(payload), end
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
        return None, 0


def decode(buf: bytes) -> Decoded:
    """Every good record of ``buf`` in order; damage is counted, never raised."""
    out: list[Intent] = []
    i, good_end, corrupt, dropped = 0, 0, 0, 0
    n = len(buf)
    while i < n:
        intent, end = _record_at(buf, i)
        if intent is not None:
            out.append(intent)
            i = good_end = end
            continue
        # damage at i: the next record can only start at a later magic that checks out
        j = buf.find(MAGIC, i + 1)
        while j != -1:
            nxt, _ = _record_at(buf, j)
            if nxt is not None:
                break
            j = buf.find(MAGIC, j + 1)
        if j == -1:  # nothing good after: a torn (or damaged) tail
            dropped += n - i
            return Decoded(intents=tuple(out), good_bytes=good_end, corrupt=corrupt, torn=1, dropped_bytes=dropped)
        corrupt += 1
        dropped += j - i
        i = j
    return Decoded(intents=tuple(out), good_bytes=good_end, corrupt=corrupt, dropped_bytes=dropped)


def unknown_to_journal(intents: tuple[Intent, ...] | list[Intent], known: frozenset[str] | set[str]) -> list[Intent]:
    """The intents whose client id the journal does not hold, the latest record per id, in
    log order (pure)."""
    last: dict[str, Intent] = {}
    for it in intents:
        if it.client_id not in known:
            last.pop(it.client_id, None)
            last[it.client_id] = it
    return list(last.values())


# ---------------------------------------------------------------------------- the file shell
class IntentLog:
    """Append-only file; ``append`` is one ``write``; a flusher thread group-commits."""

    def __init__(self, path: Path, *, flush_interval_ms: float = FLUSH_INTERVAL_MS, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_interval_s = max(flush_interval_ms, 0.0) / 1000.0
        self.fsync = fsync
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._written = 0  # records handed to write()
        self._synced = 0  # records known durable
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self.counters: dict[str, int] = {"intents_written": 0, "intent_syncs": 0, "intent_sync_errors": 0}
        self._thread: threading.Thread | None = None
        if fsync:
            self._thread = threading.Thread(target=self._flusher, name="intent-flusher", daemon=True)
            self._thread.start()

    # -- writing (the deciding thread)
    def append(self, intent: Intent | bytes, *, wake: bool = True) -> None:
        """One ``write()``: once it returns, a crash of this process cannot lose the record.
        ``intent`` may be a record already framed (``Template.stamped``). ``wake=False`` leaves
        the flusher asleep until ``wake()`` (the exit lane writes its frame first: a flusher
        woken now would take the interpreter at the frame's write)."""
        frame = intent if isinstance(intent, bytes) else encode(intent)
        done = 0
        while done < len(frame):  # a regular file takes it whole; a short write is finished
            done += os.write(self._fd, frame[done:])
        self._written += 1
        self.counters["intents_written"] += 1
        if wake:
            self._wake.set()

    def wake(self) -> None:
        """The flusher: records are waiting for their fsync."""
        self._wake.set()

    def sync(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything appended so far is on the disk (tests, close)."""
        target = self._written
        if not self.fsync:
            return True
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._synced < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    return self._synced >= target
        return True

    def close(self) -> None:
        if self._thread is not None:
            self.sync(2.0)
            self._stop.set()
            self._wake.set()
            self._thread.join(2.0)
        try:
            os.close(self._fd)
        except OSError:
            pass

    # -- the flusher (its own thread)
    def _flusher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            target = self._written
            if target > self._synced:
                try:
                    os.fdatasync(self._fd)
                    self.counters["intent_syncs"] += 1
                except OSError as exc:  # the record is still in the page cache: the process may crash safely
                    self.counters["intent_sync_errors"] += 1
                    log.error("brain.intent_log_sync_failed", path=str(self.path), error=str(exc))
                with self._cond:
                    self._synced = max(self._synced, target)
                    self._cond.notify_all()
            if self.flush_interval_s:
                self._stop.wait(self.flush_interval_s)  # at most one flush per interval: a burst shares it

    # -- reading (start-up)
    @staticmethod
    def read(path: Path) -> Decoded:
        """Every good record of the file at ``path`` (absent: none); damage logged once."""
        try:
            buf = Path(path).read_bytes()
        except FileNotFoundError:
            return Decoded(intents=(), good_bytes=0)
        got = decode(buf)
        if got.corrupt or got.torn:
            log.warning("brain.intent_log_damaged", path=str(path), records=len(got.intents), corrupt=got.corrupt,
                        torn=got.torn, dropped_bytes=got.dropped_bytes)
        return got


def compact(path: Path, keep: list[Intent]) -> None:
    """Rewrite the log with ``keep`` only (start-up, before the log is opened for appending):
    a temporary file, fsync'd, renamed over the old one, the directory fsync'd."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        for it in keep:
            f.write(encode(it))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
