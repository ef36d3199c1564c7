"""Fuzzing the capture reader: arbitrary bytes and mutated valid files.

Invariants on every input: opening and reading everything (with and without time bounds)
either ends or raises ``DecodeError``, nothing else; the records yielded are a prefix of the
records written (every part of the file is CRC-checked and blocks are numbered, so damage can
only cut the stream short, never change, drop or repeat a record); and the reader terminates
having read at most a few times the file's size (no loop, no unbounded allocation).
"""

from __future__ import annotations

import io

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common import capture_file as cap
from common.errors import DecodeError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER = cap.Header(start_ns=1_723_161_256_000_000_000, symbols=("BTCUSDT",), meta={"k": "v"})


def _records(n: int) -> list[cap.Record]:
    out = []
    for i in range(n):
        if i % 4 == 3:
            out.append(cap.Record(100 + i // 2, cap.KIND_WS_RAW, (b'{"e":"trade","t":%d}' % i,)))
        else:
            out.append(cap.Record(100 + i // 2, cap.KIND_ZMQ, (b"tick.S%d" % (i % 3), bytes([i]) * (i % 9))))
    return out


def _file(recs: list[cap.Record], close: bool, block_records: int = 4) -> bytes:
    buf = io.BytesIO()
    w = cap.CaptureWriter(buf, HEADER, block_records=block_records)
    for r in recs:
        w.append(r.recv_ns, r.frames, r.kind)
    w.close() if close else w.flush()
    return buf.getvalue()


RECORDS = _records(23)
VALID = {"indexed": _file(RECORDS, True), "unindexed": _file(RECORDS, False),
         "one_block": _file(RECORDS, True, block_records=100), "empty": _file([], True)}
HEADER_ONLY = _file([], False)


class _CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n=-1):
        out = super().read(n)
        self.bytes_read += len(out)
        return out


def check(data: bytes, from_ns: int | None = None, to_ns: int | None = None) -> list[cap.Record]:
    """Read ``data`` fully; assert the invariants; return what was yielded."""
    f = _CountingFile(data)
    got: list[cap.Record] = []
    try:
        c = cap.read_capture(f)
        assert isinstance(c.blocks, tuple) and c.records >= 0
        for r in c.iter_records(from_ns, to_ns):
            got.append(r)
    except DecodeError:
        pass  # the only exception allowed out (CaptureDecodeError is one)
    want = [r for r in RECORDS if (from_ns is None or r.recv_ns >= from_ns)
            and (to_ns is None or r.recv_ns < to_ns)]
    assert got == want[:len(got)]
    assert f.bytes_read <= 4 * len(data) + 1024
    return got


class TestArbitraryBytes:
    @FUZZ
    @given(st.binary(max_size=2000))
    @example(b"")
    @example(cap.MAGIC)
    def test_arbitrary_bytes(self, data):
        """Random bytes: refused (bad magic, almost always) or read; DecodeError only."""
        check(data)

    @FUZZ
    @given(st.binary(max_size=2000))
    def test_magic_followed_by_arbitrary_bytes(self, tail):
        """Past the magic check, a random header is still refused cleanly."""
        check(cap.MAGIC + tail)

    @FUZZ
    @given(st.binary(max_size=3000), st.sampled_from([b"", cap.BLOCK_MAGIC, cap.INDEX_MAGIC]))
    def test_valid_header_followed_by_arbitrary_bytes(self, tail, lead):
        """A valid header, then junk that may start like a block or an index."""
        check(HEADER_ONLY + lead + tail)


class TestMutatedFiles:
    @FUZZ
    @given(st.sampled_from(sorted(VALID)), st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=8))
    def test_byte_flips(self, which, flips):
        """Several bytes changed anywhere in a valid file."""
        buf = bytearray(VALID[which])
        for pos, x in flips:
            buf[pos % len(buf)] ^= x
        check(bytes(buf))

    @FUZZ
    @given(st.sampled_from(sorted(VALID)), st.integers(0, 10**6), st.integers(0, 10**6),
           st.binary(max_size=64))
    def test_range_replaced_by_junk(self, which, a, b, junk):
        """A range deleted, and junk (possibly nothing) put in its place."""
        data = VALID[which]
        lo, hi = sorted((a % (len(data) + 1), b % (len(data) + 1)))
        check(data[:lo] + junk + data[hi:])

    @FUZZ
    @given(st.sampled_from(sorted(VALID)), st.integers(0, 10**6), st.integers(0, 10**6),
           st.integers(0, 10**6))
    def test_range_copied_elsewhere(self, which, a, b, to):
        """A slice of the file repeated at another place (splices, duplicated blocks)."""
        data = VALID[which]
        lo, hi = sorted((a % (len(data) + 1), b % (len(data) + 1)))
        at = to % (len(data) + 1)
        check(data[:at] + data[lo:hi] + data[at:])

    @FUZZ
    @given(st.sampled_from(sorted(VALID)), st.integers(0, 10**6),
           st.one_of(st.none(), st.integers(90, 120)), st.one_of(st.none(), st.integers(90, 120)))
    def test_truncated_files_read_with_time_bounds(self, which, cut, from_ns, to_ns):
        """Truncated files read through a time window keep every invariant."""
        data = VALID[which]
        check(data[:cut % (len(data) + 1)], from_ns, to_ns)

    def test_intact_files_read_completely(self):
        """The unmutated files give all their records: the fuzz baseline is sound."""
        assert check(VALID["indexed"]) == RECORDS
        assert check(VALID["unindexed"]) == RECORDS
        assert check(VALID["empty"]) == []
