"""Capture files: a compact, seekable, self-checking record of frames as they were received.

A pure reader and writer over binary file objects (no sockets, no clock of its own): the
``aegis capture`` shell (``cli.capture``) owns the sockets and the time, and replay
reads records back through ``open_capture``.

Layout (every integer little-endian; every part carries a CRC32, so any flipped byte is
caught by the part that holds it)::

    file header   0  8s  magic b"AEGISCAP"
                  8  u16 format version (FORMAT_VERSION)
                 10  u16 flags (0)
                 12  u32 header body length H (<= 1 MiB)
                 16  u32 CRC32 of bytes 0..16 followed by the body
                 20  H   body: msgpack map of ``Header`` (wire schema, symbols, start ns, meta)
    block         0  4s  magic b"CBLK"
    (44 bytes     4  u32 block number (0, 1, 2, ... : a lost, repeated or moved block shows)
     + payload)   8  u32 payload length P (compressed)
                 12  u32 raw length (decompressed)
                 16  u32 record count
                 20  u32 CRC32 of the payload
                 24  i64 first receive time ns
                 32  i64 last receive time ns
                 40  u32 CRC32 of bytes 0..40 of this block header
                 44  P   payload: zlib(msgpack array of records [recv ns, kind, [frame, ...]])
    ... more blocks ...
    index         0  4s  magic b"CIDX"
                  4  u32 block count B
                  8  B x 32: u64 block offset, u32 payload length, u32 record count,
                             i64 first ns, i64 last ns
               8+32B u32 CRC32 of the index up to here
    footer        0  4s  magic b"CEND"   (the last 24 bytes of a closed file)
                  4  u64 index offset
                 12  u64 total record count
                 20  u32 CRC32 of bytes 0..20

Receive times never decrease within a file (the writer refuses otherwise), so the index
seeks to a time with a binary search over the blocks' last times.

Reading damaged files. The unit of integrity is the block: a reader yields every record of
every intact block before the damage, then raises ``CaptureDecodeError`` (a ``DecodeError``)
saying where (file offset, block number) and what (bad magic, CRC mismatch, truncated,
undecodable record); it never hangs and never raises anything else. A file ends *cleanly*
only where a writer can have stopped between two of its writes: after the header or after
any complete block (the writer died before ``close``: ``index_missing`` is True and every
complete block is read sequentially), or with a valid index and footer. Anything else (part
of a header, block, index or footer; bytes after the footer; a damaged index or footer)
raises, after every record before it.
"""

from __future__ import annotations

import bisect
import io
import os
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator, Sequence

import msgspec

from common import wire
from common.errors import ConfigError, DataError, DecodeError

MAGIC = b"AEGISCAP"
FORMAT_VERSION = 1
BLOCK_MAGIC = b"CBLK"
INDEX_MAGIC = b"CIDX"
FOOTER_MAGIC = b"CEND"

KIND_ZMQ = 1  # frames exactly as received from a SUB socket: [topic, payload]
KIND_WS_RAW = 2  # one raw WebSocket text frame, as the feed received it
KIND_NAMES = {KIND_ZMQ: "zmq", KIND_WS_RAW: "ws_raw"}
RAW_TOPIC_PREFIX = wire.RAW_TOPIC_PREFIX  # the feed's raw frames (feed.publish_raw)

_FILE_HDR = struct.Struct("<8sHHII")  # magic, version, flags, body length, CRC
_BLOCK_HDR = struct.Struct("<4sIIIIIqqI")
_INDEX_HEAD = struct.Struct("<4sI")
_INDEX_ENTRY = struct.Struct("<QIIqq")
_FOOTER = struct.Struct("<4sQQI")
BLOCK_HEADER_SIZE = _BLOCK_HDR.size  # 44
FOOTER_SIZE = _FOOTER.size  # 24

MAX_HEADER_BODY = 1 << 20  # a header is a few hundred bytes; more means damage
MAX_BLOCK_BYTES = 1 << 30  # per block, compressed or raw: a reader's allocation bound
MAX_RECORD_BYTES = 256 << 20  # one record; the writer refuses larger ones


class CaptureDecodeError(DecodeError):
    """A capture file is damaged: ``offset`` (bytes from the start) and ``block`` say where."""

    def __init__(self, what: str, *, offset: int, block: int | None = None,
                 reason: str = "capture_damaged") -> None:
        where = f"offset {offset}" + ("" if block is None else f", block {block}")
        super().__init__(f"capture damaged at {where}: {what}", reason=reason)
        self.offset = offset
        self.block = block


class Header(msgspec.Struct, frozen=True, kw_only=True):
    start_ns: int
    wire_schema: int = wire.SCHEMA_VERSION
    symbols: tuple[str, ...] = ()
    meta: dict[str, Any] = msgspec.field(default_factory=dict)
    compression: str = "zlib"


class Record(msgspec.Struct, frozen=True, array_like=True):
    recv_ns: int
    kind: int
    frames: tuple[bytes, ...]

    @property
    def topic(self) -> bytes | None:
        return self.frames[0] if self.kind == KIND_ZMQ else None


def label(kind: int, frames: Sequence[bytes]) -> str:
    """What a record is counted under: its topic, or ``raw`` for a raw WebSocket frame."""
    if kind == KIND_ZMQ:
        return bytes(frames[0]).decode("ascii", "backslashreplace")
    return "raw"


def record_label(rec: Record) -> str:
    return label(rec.kind, rec.frames)


@dataclass(frozen=True, slots=True)
class BlockInfo:
    number: int
    offset: int  # of the block header
    length: int  # payload bytes (compressed)
    count: int
    first_ns: int
    last_ns: int

    @property
    def end(self) -> int:
        return self.offset + BLOCK_HEADER_SIZE + self.length


_HEADER_ENC = msgspec.msgpack.Encoder()
_HEADER_DEC = msgspec.msgpack.Decoder(Header)
_RECORDS_ENC = msgspec.msgpack.Encoder()
_RECORDS_DEC = msgspec.msgpack.Decoder(list[Record])


# ---------------------------------------------------------------------------- writing
class CaptureWriter:
    """Buffers records and writes a block every ``block_records`` records, ``block_max_bytes``
    raw bytes or ``block_interval_ms`` (checked on ``append`` and ``flush_if_due``: an idle
    shell calls the latter, so a killed writer loses at most that much). ``close`` writes the
    index and the footer. The file object is the caller's; ``close`` does not close it."""

    def __init__(self, f: BinaryIO, header: Header, *, block_records: int = 4096,
                 block_max_bytes: int = 1 << 20, block_interval_ms: int = 1000,
                 level: int = 6, fsync: bool = False,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if block_records < 1 or block_max_bytes < 1 or block_interval_ms < 0:
            raise ConfigError("block_records, block_max_bytes must be >= 1, interval >= 0")
        self._f = f
        self._block_records = block_records
        self._block_max_bytes = block_max_bytes
        self._interval_ns = block_interval_ms * 1_000_000
        self._level = level
        self._fsync = fsync
        self._clock = clock_ns
        self._pending: list[Record] = []
        self._pending_bytes = 0
        self._block_started = 0
        self._last_ns: int | None = None
        self._index: list[BlockInfo] = []
        self.records = 0
        self.closed = False
        body = _HEADER_ENC.encode(header)
        fixed = _FILE_HDR.pack(MAGIC, FORMAT_VERSION, 0, len(body), 0)[:16]
        self._f.write(fixed + struct.pack("<I", zlib.crc32(body, zlib.crc32(fixed))) + body)
        self._offset = len(fixed) + 4 + len(body)
        self._sync()

    @property
    def blocks(self) -> int:
        return len(self._index)

    def append(self, recv_ns: int, frames: Sequence[bytes], kind: int = KIND_ZMQ) -> None:
        if self.closed:
            raise ValueError("capture writer is closed")  # as io's own on a closed file: misuse
        if kind not in KIND_NAMES:
            raise DataError(f"unknown record kind {kind}")
        if self._last_ns is not None and recv_ns < self._last_ns:
            raise DataError(f"receive times must not decrease ({recv_ns} < {self._last_ns})")
        frames = tuple(bytes(fr) for fr in frames)
        if not frames or (kind == KIND_WS_RAW and len(frames) != 1):
            raise DataError("a zmq record needs >= 1 frame, a raw record exactly 1")
        size = sum(len(fr) for fr in frames) + 16 + 5 * len(frames)  # msgpack overhead, roughly
        if size > MAX_RECORD_BYTES:
            raise DataError(f"record of {size} bytes exceeds {MAX_RECORD_BYTES}")
        now = self._clock()
        if not self._pending:
            self._block_started = now
        elif self._pending_bytes + size > self._block_max_bytes:
            self.flush()
            self._block_started = now
        self._pending.append(Record(recv_ns, kind, frames))
        self._pending_bytes += size
        self._last_ns = recv_ns
        self.records += 1
        if len(self._pending) >= self._block_records or now - self._block_started >= self._interval_ns:
            self.flush()

    def flush_if_due(self) -> bool:
        """Write the pending block if it is older than the interval; True if written."""
        if self._pending and self._clock() - self._block_started >= self._interval_ns:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Write the pending records as one block (nothing if none are pending)."""
        if not self._pending:
            return
        recs, self._pending, self._pending_bytes = self._pending, [], 0
        raw = _RECORDS_ENC.encode(recs)
        payload = zlib.compress(raw, self._level)
        if len(raw) > MAX_BLOCK_BYTES or len(payload) > MAX_BLOCK_BYTES:
            raise DataError("block too large")  # unreachable with MAX_RECORD_BYTES per record
        info = BlockInfo(len(self._index), self._offset, len(payload), len(recs),
                         recs[0].recv_ns, recs[-1].recv_ns)
        head = _BLOCK_HDR.pack(BLOCK_MAGIC, info.number, len(payload), len(raw), info.count,
                               zlib.crc32(payload), info.first_ns, info.last_ns, 0)[:40]
        self._f.write(head + struct.pack("<I", zlib.crc32(head)) + payload)
        self._offset = info.end
        self._index.append(info)
        self._sync()

    def close(self) -> None:
        """Write the last block, the index and the footer (idempotent)."""
        if self.closed:
            return
        self.flush()
        idx = bytearray(_INDEX_HEAD.pack(INDEX_MAGIC, len(self._index)))
        for b in self._index:
            idx += _INDEX_ENTRY.pack(b.offset, b.length, b.count, b.first_ns, b.last_ns)
        idx += struct.pack("<I", zlib.crc32(idx))
        foot = _FOOTER.pack(FOOTER_MAGIC, self._offset, self.records, 0)[:20]
        self._f.write(bytes(idx) + foot + struct.pack("<I", zlib.crc32(foot)))
        self._offset += len(idx) + FOOTER_SIZE
        self._sync()
        self.closed = True

    def _sync(self) -> None:
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def create_capture(path: str | os.PathLike[str], header: Header, *, overwrite: bool = False,
                   **kw: Any) -> CaptureWriter:
    """A writer on a new file (refuses to replace an existing one unless ``overwrite``).
    Closing the writer leaves the file open: close ``writer.file`` after ``writer.close()``,
    or use ``with create_capture(...) as w`` which closes both."""
    f = open(path, "wb" if overwrite else "xb")
    try:
        w = _OwningWriter(f, header, **kw)
    except BaseException:
        f.close()
        raise
    return w


class _OwningWriter(CaptureWriter):
    def __init__(self, f: BinaryIO, header: Header, **kw: Any) -> None:
        self.file = f
        super().__init__(f, header, **kw)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.file.close()


# ---------------------------------------------------------------------------- reading
class Capture:
    """A capture opened for reading. ``blocks`` come from the index, or, when the index is
    missing or damaged, from a scan of the block headers (``index_missing`` True; the scan
    stops at the first damage, recorded in ``problem`` and raised by ``iter_records`` after
    the last block before it)."""

    def __init__(self, f: BinaryIO, *, owns_file: bool = False) -> None:
        self._f = f
        self._owns = owns_file
        try:
            self.size = f.seek(0, io.SEEK_END)
            self.header, self.data_offset = self._read_header()
            indexed = self._read_trailer()
            if indexed is not None:
                self.blocks, self.index_missing, self.problem = indexed, False, None
            else:
                self.index_missing = True
                self.blocks, self.problem = self._scan()
        except (DecodeError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - a safety net: damage raises only our type
            raise CaptureDecodeError(f"unreadable: {exc!r}", offset=0,
                                     reason="capture_damaged") from None

    @property
    def records(self) -> int:
        return sum(b.count for b in self.blocks)

    def iter_records(self, from_ns: int | None = None, to_ns: int | None = None) -> Iterator[Record]:
        """Records with ``from_ns <= recv_ns < to_ns`` (either bound optional), in file order.
        Seeks straight to the first block that can hold ``from_ns``."""
        start = 0
        if from_ns is not None:
            start = bisect.bisect_left([b.last_ns for b in self.blocks], from_ns)
        for info in self.blocks[start:]:
            for rec in self._read_block(info):
                if to_ns is not None and rec.recv_ns >= to_ns:
                    return
                if from_ns is None or rec.recv_ns >= from_ns:
                    yield rec
        if self.problem is not None:
            raise self.problem

    def close(self) -> None:
        if self._owns:
            self._f.close()

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ parts
    def _read_at(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        return self._f.read(n)

    def _read_header(self) -> tuple[Header, int]:
        fixed = self._read_at(0, _FILE_HDR.size)
        if len(fixed) < _FILE_HDR.size:
            if MAGIC.startswith(fixed[:8]):
                raise CaptureDecodeError(f"truncated file header ({len(fixed)} bytes)",
                                         offset=0, reason="capture_truncated")
            raise CaptureDecodeError("bad magic: not a capture file", offset=0,
                                     reason="capture_bad_magic")
        magic, version, _flags, length, crc = _FILE_HDR.unpack(fixed)
        if magic != MAGIC:
            raise CaptureDecodeError("bad magic: not a capture file", offset=0,
                                     reason="capture_bad_magic")
        if length > MAX_HEADER_BODY:
            raise CaptureDecodeError(f"file header body length {length} is implausible", offset=12,
                                     reason="capture_header")
        body = self._read_at(_FILE_HDR.size, length)
        if len(body) < length:
            raise CaptureDecodeError(f"truncated file header (body {len(body)} of {length} bytes)",
                                     offset=_FILE_HDR.size, reason="capture_truncated")
        if zlib.crc32(body, zlib.crc32(fixed[:16])) != crc:
            raise CaptureDecodeError("file header CRC mismatch", offset=0, reason="capture_crc")
        if version != FORMAT_VERSION:
            raise CaptureDecodeError(f"format version {version} (we read {FORMAT_VERSION})",
                                     offset=8, reason="capture_version")
        try:
            header = _HEADER_DEC.decode(body)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad header
            raise CaptureDecodeError(f"undecodable file header: {exc}", offset=_FILE_HDR.size,
                                     reason="capture_header") from None
        if header.compression != "zlib":
            raise CaptureDecodeError(f"unknown compression {header.compression!r}",
                                     offset=_FILE_HDR.size, reason="capture_header")
        return header, _FILE_HDR.size + length

    def _read_trailer(self) -> tuple[BlockInfo, ...] | None:
        """The blocks from a valid footer and index, or None (missing or damaged)."""
        if self.size - self.data_offset < FOOTER_SIZE + _INDEX_HEAD.size + 4:
            return None
        foot_at = self.size - FOOTER_SIZE
        try:
            idx_at, total = self._check_footer(self._read_at(foot_at, FOOTER_SIZE), foot_at)
            blocks = self._parse_index(idx_at, foot_at)
        except CaptureDecodeError:
            return None
        if sum(b.count for b in blocks) != total:
            return None
        return blocks

    def _check_footer(self, raw: bytes, at: int) -> tuple[int, int]:
        if len(raw) < FOOTER_SIZE:
            raise CaptureDecodeError("truncated footer", offset=at, reason="capture_truncated")
        magic, idx_at, total, crc = _FOOTER.unpack(raw)
        if magic != FOOTER_MAGIC:
            raise CaptureDecodeError("bad footer magic", offset=at, reason="capture_bad_magic")
        if zlib.crc32(raw[:20]) != crc:
            raise CaptureDecodeError("footer CRC mismatch", offset=at, reason="capture_crc")
        return idx_at, total

    def _parse_index(self, at: int, end: int) -> tuple[BlockInfo, ...]:
        """The index at ``at``, which must end exactly at ``end``; blocks checked for
        contiguity and time order."""
        if not self.data_offset <= at <= end - _INDEX_HEAD.size - 4:
            raise CaptureDecodeError("index offset out of range", offset=at, reason="capture_index")
        head = self._read_at(at, _INDEX_HEAD.size)
        magic, n = _INDEX_HEAD.unpack(head)
        if magic != INDEX_MAGIC:
            raise CaptureDecodeError("bad index magic", offset=at, reason="capture_bad_magic")
        size = _INDEX_HEAD.size + n * _INDEX_ENTRY.size + 4
        if at + size != end:
            raise CaptureDecodeError(f"index of {n} blocks does not fit its place", offset=at,
                                     reason="capture_index")
        raw = self._read_at(at, size)
        if len(raw) < size:
            raise CaptureDecodeError("truncated index", offset=at, reason="capture_truncated")
        if zlib.crc32(raw[:-4]) != struct.unpack("<I", raw[-4:])[0]:
            raise CaptureDecodeError("index CRC mismatch", offset=at, reason="capture_crc")
        blocks: list[BlockInfo] = []
        expect, prev_last = self.data_offset, None
        for i, (off, length, count, first, last) in enumerate(
                _INDEX_ENTRY.iter_unpack(raw[_INDEX_HEAD.size:-4])):
            b = BlockInfo(i, off, length, count, first, last)
            if (off != expect or count < 1 or first > last or length > MAX_BLOCK_BYTES
                    or (prev_last is not None and first < prev_last)):
                raise CaptureDecodeError(f"index entry {i} is inconsistent", offset=at,
                                         block=i, reason="capture_index")
            expect, prev_last = b.end, last
            blocks.append(b)
        if expect != at:
            raise CaptureDecodeError("index does not cover the blocks", offset=at,
                                     reason="capture_index")
        return tuple(blocks)

    def _block_header(self, number: int, at: int, prev_last: int | None) -> BlockInfo:
        """Parse and check the block header at ``at`` (expected to be block ``number``)."""
        raw = self._read_at(at, BLOCK_HEADER_SIZE)
        if len(raw) < BLOCK_HEADER_SIZE:
            raise CaptureDecodeError(f"truncated block header ({len(raw)} of {BLOCK_HEADER_SIZE} bytes)",
                                     offset=at, block=number, reason="capture_truncated")
        magic, num, length, raw_len, count, _pcrc, first, last, hcrc = _BLOCK_HDR.unpack(raw)
        if magic != BLOCK_MAGIC:
            raise CaptureDecodeError(f"bad block magic {magic!r}", offset=at, block=number,
                                     reason="capture_bad_magic")
        if zlib.crc32(raw[:40]) != hcrc:
            raise CaptureDecodeError("block header CRC mismatch", offset=at, block=number,
                                     reason="capture_crc")
        if num != number:
            raise CaptureDecodeError(f"block number {num} where {number} was expected",
                                     offset=at, block=number, reason="capture_sequence")
        if (count < 1 or first > last or length > MAX_BLOCK_BYTES or raw_len > MAX_BLOCK_BYTES
                or (prev_last is not None and first < prev_last)):
            raise CaptureDecodeError("block header fields are inconsistent", offset=at,
                                     block=number, reason="capture_block")
        info = BlockInfo(number, at, length, count, first, last)
        if info.end > self.size:
            raise CaptureDecodeError(f"truncated block: {length} payload bytes announced, "
                                     f"{self.size - at - BLOCK_HEADER_SIZE} present",
                                     offset=at, block=number, reason="capture_truncated")
        return info

    def _scan(self) -> tuple[tuple[BlockInfo, ...], CaptureDecodeError | None]:
        """Walk the block headers from the start: the complete blocks, and the first damage
        (None when the file ends cleanly after a block, or with a valid index and footer)."""
        blocks: list[BlockInfo] = []
        at, prev_last = self.data_offset, None
        while at < self.size:
            magic = self._read_at(at, 4)
            if magic == INDEX_MAGIC:
                return tuple(blocks), self._scan_trailer(at, blocks)
            expected = f"where block {len(blocks)} or the index should begin"
            if len(magic) < 4:
                return tuple(blocks), CaptureDecodeError(
                    f"truncated: {len(magic)} bytes {expected}", offset=at, block=len(blocks),
                    reason="capture_truncated")
            if magic != BLOCK_MAGIC:
                return tuple(blocks), CaptureDecodeError(
                    f"bad magic {magic!r} {expected}", offset=at, block=len(blocks),
                    reason="capture_bad_magic")
            try:
                info = self._block_header(len(blocks), at, prev_last)
            except CaptureDecodeError as exc:
                return tuple(blocks), exc
            blocks.append(info)
            at, prev_last = info.end, info.last_ns
        return tuple(blocks), None

    def _scan_trailer(self, at: int, blocks: list[BlockInfo]) -> CaptureDecodeError:
        """The scan met an index (the footer was missing or bad): say what is wrong with it."""
        try:
            if self.size - at < _INDEX_HEAD.size:
                raise CaptureDecodeError("truncated index", offset=at, reason="capture_truncated")
            _, n = _INDEX_HEAD.unpack(self._read_at(at, _INDEX_HEAD.size))
            foot_at = at + _INDEX_HEAD.size + n * _INDEX_ENTRY.size + 4
            if foot_at > self.size:
                raise CaptureDecodeError("truncated index", offset=at, reason="capture_truncated")
            indexed = self._parse_index(at, foot_at)
            if list(indexed) != blocks:
                raise CaptureDecodeError("index does not match the blocks", offset=at,
                                         reason="capture_index")
            _, total = self._check_footer(self._read_at(foot_at, FOOTER_SIZE), foot_at)
            if total != sum(b.count for b in blocks):
                raise CaptureDecodeError("footer record count does not match", offset=foot_at,
                                         reason="capture_index")
            extra = self.size - foot_at - FOOTER_SIZE
            return CaptureDecodeError(f"{extra} unexpected bytes after the footer",
                                      offset=foot_at + FOOTER_SIZE, reason="capture_trailing")
        except CaptureDecodeError as exc:
            return exc

    def _read_block(self, info: BlockInfo) -> list[Record]:
        """The records of one block, every check applied; ``CaptureDecodeError`` otherwise."""
        prev = self.blocks[info.number - 1].last_ns if info.number else None
        head = self._block_header(info.number, info.offset, prev)
        if head != info:
            raise CaptureDecodeError("block header does not match the index", offset=info.offset,
                                     block=info.number, reason="capture_index")
        raw = self._read_at(info.offset, BLOCK_HEADER_SIZE + info.length)
        _, _, _, raw_len, _, pcrc, _, _, _ = _BLOCK_HDR.unpack(raw[:BLOCK_HEADER_SIZE])
        payload = raw[BLOCK_HEADER_SIZE:]
        where = dict(offset=info.offset, block=info.number)
        if len(payload) < info.length:
            raise CaptureDecodeError("truncated block payload", **where, reason="capture_truncated")
        if zlib.crc32(payload) != pcrc:
            raise CaptureDecodeError("payload CRC mismatch", **where, reason="capture_crc")
        try:
            d = zlib.decompressobj()
            data = d.decompress(payload, raw_len + 1)  # bounded: never more than announced
            ok = len(data) == raw_len and d.eof and not d.unused_data
        except zlib.error as exc:
            raise CaptureDecodeError(f"payload does not decompress: {exc}", **where,
                                     reason="capture_record") from None
        if not ok:
            raise CaptureDecodeError("payload size differs from the header", **where,
                                     reason="capture_record")
        try:
            recs = _RECORDS_DEC.decode(data)
        except Exception as exc:  # noqa: BLE001 - msgspec errors and anything else alike
            raise CaptureDecodeError(f"undecodable records: {exc}", **where,
                                     reason="capture_record") from None
        _check_records(recs, info)
        return recs


def _check_records(recs: list[Record], info: BlockInfo) -> None:
    where = dict(offset=info.offset, block=info.number, reason="capture_record")
    if len(recs) != info.count:
        raise CaptureDecodeError(f"{len(recs)} records where the header says {info.count}", **where)
    prev = info.first_ns
    for i, r in enumerate(recs):
        if r.kind not in KIND_NAMES or not r.frames or (r.kind == KIND_WS_RAW and len(r.frames) != 1):
            raise CaptureDecodeError(f"record {i}: bad kind {r.kind} or frame count", **where)
        if r.recv_ns < prev or r.recv_ns > info.last_ns:
            raise CaptureDecodeError(f"record {i}: receive time out of order", **where)
        prev = r.recv_ns
    if recs[0].recv_ns != info.first_ns or recs[-1].recv_ns != info.last_ns:
        raise CaptureDecodeError("first/last receive times differ from the header", **where)


def read_capture(f: BinaryIO) -> Capture:
    """A capture on an open binary file object (seekable; stays the caller's to close)."""
    return Capture(f)


def open_capture(path: str | os.PathLike[str]) -> Capture:
    """Open a capture file. ``OSError`` if it cannot be opened; ``DecodeError`` if it is
    not a capture (its header is bad); later damage is raised by ``iter_records``."""
    f = open(path, "rb")
    try:
        return Capture(f, owns_file=True)
    except BaseException:
        f.close()
        raise
