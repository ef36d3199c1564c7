"""The shared-memory tick ring: single producer (feed), single consumer (brain), never blocks.

An LMAX-Disruptor-style ring of fixed 64-byte records (``common.records.TICK_DTYPE``) in a
plain file (under /dev/shm by default; any path works), mmapped by every process. The
orchestrator creates it, the feed writes, the brain reads, the supervisor attaches
read-only for the counters. We use os.open + mmap instead of multiprocessing.shared_memory
because on Python 3.11 its resource tracker unlinks segments a process merely attached to.

Segment layout (little-endian; offsets in bytes; each block on its own 128-byte boundary,
two cache lines, so the adjacent-line prefetcher does not make writer and reader fight
over one pair of lines):

    offset  size  field
    0       8     magic            b"AEGISRNG"
    8       4     version          u32, = LAYOUT_VERSION
    12      4     record_size      u32, = RECORD_SIZE (64)
    16      8     capacity         u64, slots, a power of two
    24      8     symbol_capacity  u64, = MAX_SYMBOLS
    32      8     created_ns       i64, wall clock at creation
    128     8     writer_cursor    i64, records ever committed = next sequence to write
    136     8     writer_pid       i64, last process that opened a writer
    256     8     reader_cursor    i64, next sequence to read
    264     8     reader_lost      i64, cumulative records skipped (overruns + resume skips)
    272     8     reader_resyncs   i64, times the reader was lapped and resynchronised
    280     8     reader_pid       i64, last process that opened a reader
    384     8     symbol_count     i64, names published in the table
    512     MAX_SYMBOLS * SYMBOL_NAME_BYTES   symbol table, ASCII, NUL padded
    SLOTS_OFFSET (page aligned, 4096)         capacity x 64-byte records

Publication protocol. Sequence ``s`` lives in slot ``s & (capacity - 1)``; the slot's first
word (``stamp``) is owned by the ring: 0 never written, -1 being written, ``s + 1`` holds s.

- writer: stamp = -1; release fence; payload; stamp = s + 1 (release store); after the
  slot (or the whole batch) writer_cursor = s + 1 (release store). The writer never reads
  the reader's block and never waits.
- reader at r: c = writer_cursor (acquire). r >= c: nothing new. c - r > capacity: lapped.
  Otherwise s1 = stamp (acquire); s1 != r + 1: lapped; copy the 64 bytes; acquire fence;
  s2 = stamp again; s2 != s1: torn, lapped. A lapped reader re-reads the cursor, jumps to
  max(r + 1, c_now - capacity + margin), adds exactly the sequences it jumped over to
  reader_lost and counts one resync: no torn or overwritten record is ever delivered, and
  delivered + lost == records committed since the reader started.

The hot paths are numba kernels over one int64 view of the whole mapping
(``ring_publish``, ``ring_write_batch``, ``ring_read_batch``; one array argument because
numba's per-call dispatch cost grows with every argument), usable from other njit code
through ``Ring.words``; their ordering comes from the atomic intrinsics in
``common._ring_atomics``. ``Ring``, ``RingWriter`` and ``RingReader`` are
thin Python shells around them; all state lives in the segment, so a restarted writer
continues the sequence and a restarted reader resumes from its saved cursor.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from typing import Any

import numpy as np
from numba import njit

from common._ring_atomics import fence_acquire, fence_release, load_acquire, load_relaxed, \
    store_relaxed, store_release
from common.errors import RingError
from common.records import MAX_SYMBOLS, RECORD_SIZE, SYMBOL_NAME_BYTES, TICK_DTYPE

try:  # the per-record publish in C (common/_ringc.c); optional at build time
    from common import _ringc
except ImportError:  # no compiler where it was installed: the numba entry point instead
    _ringc = None

MAGIC = b"AEGISRNG"
LAYOUT_VERSION = 1  # bump on any change to the layout above (incl. SYMBOL_NAME_BYTES)
_HEADER = struct.Struct("<8sIIQQq")  # magic, version, record_size, capacity, symbols, created_ns
BLOCK_BYTES = 128  # two cache lines: one block per writer of shared words
PAGE_BYTES = 4096
WORDS = RECORD_SIZE // 8  # int64 words per record

# int64 word indices into the control area (byte offset / 8)
WRITER_CURSOR_W = 128 // 8
WRITER_PID_W = 136 // 8
READER_CURSOR_W = 256 // 8
READER_LOST_W = 264 // 8
READER_RESYNCS_W = 272 // 8
READER_PID_W = 280 // 8
SYMBOL_COUNT_W = 384 // 8
NAMES_OFFSET = 512
SLOTS_OFFSET = -(-(NAMES_OFFSET + MAX_SYMBOLS * SYMBOL_NAME_BYTES) // PAGE_BYTES) * PAGE_BYTES
SLOTS_W = SLOTS_OFFSET // 8

BUSY = -1  # stamp of a slot being written
RESUME_MODES = ("saved", "latest")
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # prefault: no page faults on the hot path


def resync_margin(capacity: int) -> int:
    """Records a lapped reader skips beyond the oldest slot, so it is not lapped again at once."""
    return capacity // 16


def file_size(capacity: int) -> int:
    return SLOTS_OFFSET + capacity * RECORD_SIZE


@njit(cache=True, nogil=True, inline="always")
def _capacity(words):
    """Slots in the mapping. Derived from the mapping's length (fixed, validated at attach)
    rather than the header word, so a stray write to the header can never send a kernel
    out of bounds."""
    return (words.size - SLOTS_W) // WORDS


# ----------------------------------------------------------------------------- kernels


# an explicit signature: the feed may hand in Python ints, numpy scalars or IntEnum members,
# and each new combination of argument types would otherwise compile (seconds) mid-stream
@njit("int64(int64[::1], int64, int64, int64, int64, int64, int64, float64, float64, float64, float64)",
      cache=True, nogil=True)
def ring_publish(words, symbol_id, kind, flags, recv_ns, event_ms, id_, price, qty, aux, aux_qty):
    """Write one record from its fields and commit it; returns its sequence number."""
    s = words[WRITER_CURSOR_W]  # only the writer stores it: a plain load is current
    i = SLOTS_W + (s & (_capacity(words) - 1)) * WORDS
    store_relaxed(words, i, BUSY)
    fence_release()  # a reader that sees any new payload word also sees BUSY (or later)
    words[i + 1] = recv_ns
    words[i + 2] = event_ms
    words[i + 3] = id_
    words[i + 4] = np.float64(price).view(np.int64)
    words[i + 5] = np.float64(qty).view(np.int64)
    words[i + 6] = np.float64(aux).view(np.int64)
    # last word, little-endian: aux_qty f32 | symbol_id u16 | kind u8 | flags u8
    words[i + 7] = (np.int64(np.float32(aux_qty).view(np.uint32))
                    | (np.int64(symbol_id & 0xFFFF) << 32)
                    | (np.int64(kind & 0xFF) << 48)
                    | (np.int64(flags & 0xFF) << 56))
    store_release(words, i, s + 1)  # payload before stamp
    store_release(words, WRITER_CURSOR_W, s + 1)  # stamp before cursor
    return s


@njit(cache=True, nogil=True)
def ring_write_batch(words, recs, n):
    """Write and commit ``n`` records given as int64 words (``recs`` = n * 8); returns n.

    The cursor is published once per chunk of at most ``capacity`` records (once for any
    normal batch), so no slot is written twice before its sequence is published.
    """
    mask = _capacity(words) - 1
    s = words[WRITER_CURSOR_W]
    n = min(n, recs.size // WORDS)
    done = 0
    while done < n:
        m = min(n - done, mask + 1)
        for k in range(m):
            i = SLOTS_W + ((s + k) & mask) * WORDS
            j = (done + k) * WORDS
            store_relaxed(words, i, BUSY)
            fence_release()
            for w in range(1, WORDS):
                words[i + w] = recs[j + w]
            store_release(words, i, s + k + 1)
        s += m
        done += m
        store_release(words, WRITER_CURSOR_W, s)
    return n


@njit(cache=True, nogil=True, inline="always")
def _copy_slot(words, i, out, j):
    """Copy one slot's words into ``out``; -1 if it changed under us, else its stamp."""
    s1 = load_acquire(words, i)
    for w in range(1, WORDS):
        out[j + w] = words[i + w]
    fence_acquire()  # the payload loads above complete before the stamp is re-read
    if load_relaxed(words, i) != s1:
        return -1
    out[j] = s1
    return s1


@njit("int64(int64[::1], int64[::1], int64, int64)", cache=True, nogil=True)
def ring_read_batch(words, out, max_n, margin):
    """Copy up to ``max_n`` committed records into ``out`` (int64 words); returns the count.

    Starts at the saved reader cursor and saves it, the loss and the resync counters
    before returning. Lapped (overrun, overwritten or torn): jump to a safe position and
    count exactly the sequences jumped over as lost; continue filling ``out``.
    """
    cap = _capacity(words)
    mask = cap - 1
    max_n = min(max_n, out.size // WORDS)
    margin = min(max(margin, 0), cap)
    r = words[READER_CURSOR_W]  # only the reader stores it
    lost = words[READER_LOST_W]
    resyncs = words[READER_RESYNCS_W]
    c = load_acquire(words, WRITER_CURSOR_W)
    k = 0
    while k < max_n:
        if r >= c:
            c = load_acquire(words, WRITER_CURSOR_W)  # more may have arrived meanwhile
            if r >= c:
                break
        if c - r <= cap and _copy_slot(words, SLOTS_W + (r & mask) * WORDS, out, k * WORDS) == r + 1:
            k += 1
            r += 1
            continue
        # lapped: everything before c_now - capacity is gone, and r itself is unusable
        c = load_acquire(words, WRITER_CURSOR_W)
        nr = max(r + 1, c - cap + margin)
        lost += nr - r
        resyncs += 1
        r = nr
    store_release(words, READER_LOST_W, lost)
    store_release(words, READER_RESYNCS_W, resyncs)
    store_release(words, READER_CURSOR_W, r)
    return k


# the compiled entry points of the two hot kernels (one signature each): no per-call type
# resolution; only RingWriter.publish and RingReader.read_batch call them, with this ring's
# own int64 words and the reader's own buffer
_PUBLISH = ring_publish.overloads[ring_publish.signatures[0]].entry_point
_READ_BATCH = ring_read_batch.overloads[ring_read_batch.signatures[0]].entry_point


@njit(cache=True, nogil=True)
def ring_load(words, idx):
    """One control word, load-acquire (for the Python side)."""
    return load_acquire(words, idx)


@njit(cache=True, nogil=True)
def ring_store(words, idx, value):
    """Store one control word with release order (for the Python side)."""
    store_release(words, idx, value)


# ----------------------------------------------------------------------------- pure helpers


def parse_header(header: bytes, size: int) -> int:
    """Validate a segment's header against its file size; returns the capacity."""
    if size < SLOTS_OFFSET or len(header) < _HEADER.size:
        raise RingError(f"ring file too short: {size} bytes, a ring needs more than {SLOTS_OFFSET}")
    magic, version, record_size, capacity, symbols, _created = _HEADER.unpack_from(header)
    if magic != MAGIC:
        raise RingError(f"not a ring segment: magic {magic!r}, expected {MAGIC!r}")
    if version != LAYOUT_VERSION:
        raise RingError(f"ring layout version {version}, this build reads {LAYOUT_VERSION}")
    if record_size != RECORD_SIZE:
        raise RingError(f"ring record size {record_size}, expected {RECORD_SIZE}")
    if capacity < 2 or capacity & (capacity - 1):
        raise RingError(f"ring capacity {capacity} is not a power of two >= 2")
    if symbols != MAX_SYMBOLS:
        raise RingError(f"ring symbol capacity {symbols}, expected {MAX_SYMBOLS}")
    if size != file_size(capacity):
        raise RingError(f"ring file is {size} bytes, capacity {capacity} needs {file_size(capacity)}")
    return capacity


def resume_position(mode: str, reader_cursor: int, writer_cursor: int, capacity: int,
                    margin: int) -> tuple[int, int]:
    """Where a (re)started reader begins, and how many records that skips."""
    if mode not in RESUME_MODES:
        raise RingError(f"reader resume must be one of {RESUME_MODES}, not {mode!r}")
    r = min(reader_cursor, writer_cursor)  # a cursor past the writer cannot be honoured
    if mode == "latest":
        start = writer_cursor
    elif writer_cursor - r <= capacity:
        start = r  # everything since the saved cursor is still in the ring
    else:
        start = writer_cursor - capacity + margin  # the oldest position that is safe to read
    return start, start - r


def encode_symbol(name: str) -> bytes:
    """A symbol name as table bytes; RingError for empty, non-ASCII, NUL or > 32 bytes."""
    if not isinstance(name, str) or not name:
        raise RingError(f"invalid symbol name {name!r}: empty or not a string")
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise RingError(f"invalid symbol name {name!r}: not ASCII") from None
    if len(raw) > SYMBOL_NAME_BYTES or b"\0" in raw:
        raise RingError(f"invalid symbol name {name!r}: NUL or longer than {SYMBOL_NAME_BYTES} bytes")
    return raw


# ----------------------------------------------------------------------------- shells


def pid_alive(pid: int) -> bool:
    """True for a running process; False for none, or a zombie (dead, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _map(path: str, size: int, readonly: bool) -> mmap.mmap:
    fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
    try:
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _MAP_POPULATE, prot=prot)
    finally:
        os.close(fd)


class Ring:
    """One mapping of a ring segment. ``create`` (orchestrator) or ``attach`` (everyone else)."""

    def __init__(self, path: str, mm: mmap.mmap, capacity: int, readonly: bool) -> None:
        self.path = path
        self.capacity = capacity
        self.readonly = readonly
        self._mm: mmap.mmap | None = mm
        self._words: np.ndarray | None = np.frombuffer(mm, np.int64)
        self._names: np.ndarray | None = np.frombuffer(
            mm, np.uint8, MAX_SYMBOLS * SYMBOL_NAME_BYTES, NAMES_OFFSET).reshape(MAX_SYMBOLS, -1)
        self._children: list[RingWriter | RingReader] = []
        self._claimed: list[int] = []  # pid words of the roles this process holds
        self._symbols: list[str] = []  # names are append-only: cache and extend lazily
        self._symbol_ids: dict[str, int] = {}

    @classmethod
    def create(cls, path: str, capacity: int) -> Ring:
        """A fresh, zeroed segment at ``path`` (replacing any file there)."""
        if not isinstance(capacity, int) or capacity < 2 or capacity & (capacity - 1):
            raise RingError(f"ring capacity must be a power of two >= 2, not {capacity!r}")
        size = file_size(capacity)
        # build it under a temporary name and rename: attachers never see a half-written
        # header, and processes still mapping an old file keep their (orphaned) inode
        # instead of taking SIGBUS from a truncation under their feet
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            try:
                # reserve every block now: on a tmpfs too small for the ring (docker's default
                # /dev/shm is 64 MiB) touching a page later would kill us with SIGBUS
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                raise RingError(f"cannot allocate {size} bytes for ring {path}: "
                                f"{exc.strerror or exc} (make the shm filesystem larger, e.g. "
                                f"docker --shm-size, or set ring.capacity smaller)") from exc
            mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _MAP_POPULATE)
            np.frombuffer(mm, np.uint8)[SLOTS_OFFSET::PAGE_BYTES] = 0  # allocate every tmpfs page now
            _HEADER.pack_into(mm, 0, MAGIC, LAYOUT_VERSION, RECORD_SIZE, capacity, MAX_SYMBOLS,
                              time.time_ns())
            os.replace(tmp, path)
        except BaseException:
            Ring.unlink(tmp)
            raise
        finally:
            os.close(fd)
        return cls(path, mm, capacity, readonly=False)

    @classmethod
    def attach(cls, path: str, *, readonly: bool = False) -> Ring:
        """Map an existing segment after validating it; RingError if it is missing or invalid."""
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                header = os.pread(fd, _HEADER.size, 0)
            finally:
                os.close(fd)
            capacity = parse_header(header, size)
            mm = _map(path, size, readonly)
        except OSError as exc:
            raise RingError(f"cannot map ring {path}: {exc.strerror or exc}") from exc
        return cls(path, mm, capacity, readonly)

    @staticmethod
    def unlink(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Release the roles this process claimed, drop every view (this ring's, its writers'
        and readers'), then unmap. Idempotent."""
        if self._words is not None and not self.readonly:
            for pid_w in self._claimed:
                if int(ring_load(self._words, pid_w)) == os.getpid():
                    ring_store(self._words, pid_w, 0)
        self._claimed.clear()
        for child in self._children:
            child._detach()
        self._children.clear()
        self._words = self._names = None
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # a view escaped (``words``): unmapped when the last one is dropped

    @property
    def words(self) -> np.ndarray:
        """int64 view of the whole segment: the first argument of the ``ring_*`` kernels."""
        if self._words is None:
            raise RingError(f"ring {self.path} is closed")
        return self._words

    def _writable(self) -> np.ndarray:
        if self.readonly:
            raise RingError(f"ring {self.path} is attached read-only")
        return self.words

    def _claim(self, words: np.ndarray, pid_w: int, role: str) -> None:
        """Single producer, single consumer: refuse a second live writer (or reader).

        A role whose recorded pid is dead (crashed, or a zombie awaiting its parent) is
        taken over; that is how a restarted feed or brain continues."""
        other = int(ring_load(words, pid_w))
        if other and other != os.getpid() and pid_alive(other):
            raise RingError(f"ring {self.path} already has a live {role} (pid {other}): "
                            f"a ring has exactly one {role}")
        ring_store(words, pid_w, os.getpid())
        self._claimed.append(pid_w)

    def writer(self) -> RingWriter:
        """The producer; it continues the sequence from the shared writer cursor."""
        words = self._writable()
        self._claim(words, WRITER_PID_W, "writer")
        w = RingWriter(self)
        self._children.append(w)
        return w

    def reader(self, resume: str = "saved") -> RingReader:
        """A reader positioned per ``resume``; the records it skips count as lost."""
        words = self._writable()
        self._claim(words, READER_PID_W, "reader")
        margin = resync_margin(self.capacity)
        start, skipped = resume_position(resume, int(ring_load(words, READER_CURSOR_W)),
                                         int(ring_load(words, WRITER_CURSOR_W)), self.capacity, margin)
        ring_store(words, READER_LOST_W, ring_load(words, READER_LOST_W) + skipped)
        ring_store(words, READER_CURSOR_W, start)
        rd = RingReader(self, margin, skipped)
        self._children.append(rd)
        return rd

    def counters(self) -> dict[str, int]:
        """A snapshot; exact once the reader is stopped: written == read + lost + lag."""
        words = self.words
        r = int(ring_load(words, READER_CURSOR_W))  # reader first: then r <= w always holds
        lost = int(ring_load(words, READER_LOST_W))
        w = int(ring_load(words, WRITER_CURSOR_W))
        return {"written": w, "read": r - lost, "lost": lost,
                "resyncs": int(ring_load(words, READER_RESYNCS_W)), "lag": w - r,
                "symbols": int(ring_load(words, SYMBOL_COUNT_W))}

    def register_symbol(self, name: str) -> int:
        """The id of ``name`` in the table, appending it if new (writer side)."""
        raw = encode_symbol(name)
        words = self._writable()
        self.symbol_names()
        if name in self._symbol_ids:
            return self._symbol_ids[name]
        n = len(self._symbols)
        if n >= MAX_SYMBOLS:
            raise RingError(f"ring symbol table is full ({MAX_SYMBOLS} names)")
        row = self._names[n]
        row[:] = 0
        row[:len(raw)] = np.frombuffer(raw, np.uint8)
        ring_store(words, SYMBOL_COUNT_W, n + 1)  # release: the name bytes are visible first
        self._symbols.append(name)
        self._symbol_ids[name] = n
        return n

    def symbol_names(self) -> list[str]:
        """The current table, in id order (reader side; cheap when nothing was added)."""
        count = min(int(ring_load(self.words, SYMBOL_COUNT_W)), MAX_SYMBOLS)
        for i in range(len(self._symbols), count):
            name = self._names[i].tobytes().rstrip(b"\0").decode("ascii", "replace")
            self._symbols.append(name)
            self._symbol_ids.setdefault(name, i)
        return list(self._symbols)


def _tick_words(recs, what: str) -> np.ndarray:
    """C-contiguous int64 words of a TICK_DTYPE array or record (copied only if needed)."""
    arr = np.asarray(recs)
    if arr.dtype != TICK_DTYPE:
        raise TypeError(f"{what} must have dtype TICK_DTYPE, not {arr.dtype}")
    return np.ascontiguousarray(arr.reshape(-1)).view(np.int64)


class RingWriter:
    """The producer side. One per ring at a time (single producer).

    ``publish`` is the C publisher's bound method when ``common._ringc`` is built (one C
    call a record, ~0.1 us), else the numba entry point below; both write the same words."""

    def __init__(self, ring: Ring) -> None:
        self._words: np.ndarray | None = ring.words
        self._c = None
        if _ringc is not None:
            self._c = _ringc.Publisher(self._words, SLOTS_W, WRITER_CURSOR_W, BUSY)
            self.publish = self._c.publish  # type: ignore[method-assign]  # no Python frame per record

    @property
    def c_publisher(self) -> Any:
        """The C publisher (``common._ringc.Publisher``), None without the C extension."""
        return self._c

    def _detach(self) -> None:
        self._words = None
        if self._c is not None:
            self._c.release()  # the mapping may now be unmapped
            self.publish = self._publish_closed  # type: ignore[method-assign]

    def _publish_closed(self, *_args, **_kw) -> int:
        self._live()  # raises RingError
        return -1

    def _live(self) -> np.ndarray:
        if self._words is None:
            raise RingError("ring writer used after its ring was closed")
        return self._words

    @property
    def cursor(self) -> int:
        """Records ever committed = the next sequence number."""
        return int(ring_load(self._live(), WRITER_CURSOR_W))

    def write(self, rec) -> int:
        """Commit one record (a TICK_DTYPE scalar or 1-element array); returns its sequence."""
        recs = _tick_words(rec, "rec")
        if recs.size != WORDS:
            raise ValueError(f"write takes one record, got {recs.size // WORDS}")  # misuse: write_batch is for many
        words = self._live()
        ring_write_batch(words, recs, 1)
        return int(words[WRITER_CURSOR_W]) - 1

    def write_batch(self, recs: np.ndarray) -> int:
        """Commit every record of a TICK_DTYPE array, publishing the cursor once; returns the count."""
        data = _tick_words(recs, "recs")
        return int(ring_write_batch(self._live(), data, data.size // WORDS))

    def publish(self, symbol_id, kind, flags, recv_ns, event_ms, id, price, qty,  # noqa: A002
                aux=0.0, aux_qty=0.0) -> int:
        """Commit one record from its fields (one compiled call); returns its sequence.

        Through the kernel's compiled entry point, not numba's dispatcher: the kernel has one
        signature, so resolving the argument types on every call (about half the cost of a
        call from Python, bench/FINDINGS.md section 1) buys nothing. The entry point converts
        each scalar as int() / float() would (a float id is truncated, None is a TypeError);
        the words array is always this ring's own."""
        words = self._words
        if words is None:
            self._live()
        return _PUBLISH(words, symbol_id, kind, flags, recv_ns, event_ms, id, price, qty, aux, aux_qty)


class RingReader:
    """The consumer side. One per ring at a time (single consumer)."""

    def __init__(self, ring: Ring, margin: int, skipped: int) -> None:
        self._words: np.ndarray | None = ring.words
        self.margin = margin  # records skipped beyond the oldest slot on a resync
        self.skipped_on_attach = skipped
        self._out: np.ndarray | None = None  # the caller's buffer and its int64 view, reused
        self._out_words: np.ndarray | None = None

    def _detach(self) -> None:
        self._words = self._out = self._out_words = None

    def _live(self) -> np.ndarray:
        if self._words is None:
            raise RingError("ring reader used after its ring was closed")
        return self._words

    def read_batch(self, out: np.ndarray) -> int:
        """Fill ``out[:n]`` with the next records (``stamp`` = sequence + 1); returns n (0: none)."""
        words = self._live()
        if out is not self._out:
            if not isinstance(out, np.ndarray) or out.dtype != TICK_DTYPE or out.ndim != 1 \
                    or not out.flags.c_contiguous or not out.flags.writeable:
                raise TypeError("out must be a writable, contiguous 1-D TICK_DTYPE array")
            self._out, self._out_words = out, out.view(np.int64)
        if words[WRITER_CURSOR_W] == words[READER_CURSOR_W]:
            # nothing new (exact: only this reader stores its cursor, and a cursor seen equal
            # here is re-read with acquire order by the kernel when it is not): an empty poll
            # costs a word comparison, not a compiled call (bench/FINDINGS.md section 2)
            return 0
        return _READ_BATCH(words, self._out_words, len(out), self.margin)

    @property
    def cursor(self) -> int:
        """The next sequence to read."""
        return int(ring_load(self._live(), READER_CURSOR_W))

    @property
    def lost(self) -> int:
        """Records skipped so far (overruns and resume skips), cumulative over incarnations."""
        return int(ring_load(self._live(), READER_LOST_W))

    @property
    def resyncs(self) -> int:
        return int(ring_load(self._live(), READER_RESYNCS_W))

    def lag(self) -> int:
        """Committed records not read yet."""
        words = self._live()
        r = ring_load(words, READER_CURSOR_W)
        return int(ring_load(words, WRITER_CURSOR_W) - r)
