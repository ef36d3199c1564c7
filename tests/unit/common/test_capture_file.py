"""The capture file format: exact round trips, seeking by time, files whose writer died,
and damage (truncation at every offset, a flipped byte anywhere) raising DecodeError only.

The rule pinned here (see ``common.capture_file``): a file ends cleanly only after its header,
after a complete block (index missing) or with a valid index and footer; any other end or
damage yields every record of the intact blocks before it and then raises ``DecodeError``
naming the offset and, inside a block, the block number.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest

from common import capture_file as cap
from common import wire
from common.errors import ConfigError, DataError, DecodeError

HEADER = cap.Header(start_ns=1_723_161_256_000_000_000, symbols=("BTCUSDT", "ETHUSDT"),
                    meta={"run": "test", "nested": {"x": [1, 2.5, None]}, "bin": b"\x00\xff"})


def records(n: int, *, start_ns: int = 1_000, step_ns: int = 7) -> list[cap.Record]:
    """n records: ZeroMQ ones with binary payloads, every 5th a raw WebSocket frame."""
    out = []
    for i in range(n):
        t = start_ns + (i // 3) * step_ns  # three records share each receive time
        if i % 5 == 4:
            out.append(cap.Record(t, cap.KIND_WS_RAW, (b'{"stream":"btcusdt@trade","i":%d}' % i,)))
        else:
            out.append(cap.Record(t, cap.KIND_ZMQ, (b"tick.SYM%d" % (i % 4), bytes([i % 256]) * (i % 50))))
    return out


def write(recs: list[cap.Record], *, close: bool = True, **kw) -> bytes:
    buf = io.BytesIO()
    w = cap.CaptureWriter(buf, HEADER, **kw)
    for r in recs:
        w.append(r.recv_ns, r.frames, r.kind)
    if close:
        w.close()
    else:
        w.flush()  # the blocks a killed writer had written; no index, no footer
    return buf.getvalue()


def read_all(data: bytes, **kw) -> tuple[list[cap.Record], DecodeError | None]:
    """Every record the reader yields, and the error it raised at the end (or None)."""
    got: list[cap.Record] = []
    try:
        c = cap.read_capture(io.BytesIO(data))
        for r in c.iter_records(**kw):
            got.append(r)
    except DecodeError as exc:
        return got, exc
    return got, None


SMALL = records(10)
SMALL_FILE = write(SMALL, block_records=3)  # blocks of 3, 3, 3, 1 records
SMALL_CAP = cap.read_capture(io.BytesIO(SMALL_FILE))


class TestRoundTrip:
    def test_many_records_with_large_and_binary_payloads_round_trip_exactly(self):
        """20,000 records, a 3 MiB payload and every byte value come back equal, in order."""
        recs = records(20_000)
        recs.insert(5_000, cap.Record(recs[5_000].recv_ns, cap.KIND_ZMQ,
                                      (b"candle.BIG", bytes(range(256)) * (3 * 4096))))
        recs.insert(6_000, cap.Record(recs[6_000].recv_ns, cap.KIND_ZMQ, (b"\x00\xff\x80", b"")))
        data = write(recs)
        c = cap.read_capture(io.BytesIO(data))
        assert c.header == HEADER
        assert c.index_missing is False and c.problem is None
        assert list(c.iter_records()) == recs
        assert c.records == 20_002
        assert len(c.blocks) > 4  # 4096 records per block at most, and the big one alone
        assert len(data) < 3 * 2**20  # the repetitive big payload compresses

    def test_real_envelopes_are_stored_byte_exact_and_decode_equal(self):
        """Frames from wire.encode come back byte-identical and decode to the same envelope."""
        envs = [wire.Envelope(wire.SCHEMA_VERSION, "brain:7", i + 1, 10 + i, 20 + i,
                              wire.Heartbeat(service="brain", pid=7, uptime_s=float(i)))
                for i in range(100)]
        frames = [wire.encode(e) for e in envs]
        data = write([cap.Record(100 + i, cap.KIND_ZMQ, tuple(f)) for i, f in enumerate(frames)])
        got = list(cap.read_capture(io.BytesIO(data)).iter_records())
        assert [list(r.frames) for r in got] == frames
        assert [wire.decode(r.frames) for r in got] == envs

    def test_empty_capture_is_indexed_with_no_blocks(self):
        """A writer closed without records leaves a valid file: header, empty index, footer."""
        c = cap.read_capture(io.BytesIO(write([])))
        assert (c.blocks, c.index_missing, c.problem, list(c.iter_records())) == ((), False, None, [])

    def test_labels_count_topics_and_raw_frames(self):
        """Records are counted under their topic; raw WebSocket frames under 'raw'."""
        assert [cap.record_label(r) for r in SMALL[3:6]] == ["tick.SYM3", "raw", "tick.SYM1"]
        assert cap.label(cap.KIND_ZMQ, [b"x.\xff"]) == "x.\\xff"

    def test_open_capture_reads_a_path_and_create_capture_refuses_to_overwrite(self, tmp_path):
        """create_capture writes a real file, will not replace it, and open_capture reads it."""
        path = tmp_path / "c.cap"
        with cap.create_capture(path, HEADER) as w:
            w.append(5, [b"a.b", b"c"])
        with pytest.raises(FileExistsError):
            cap.create_capture(path, HEADER)
        with cap.open_capture(path) as c:
            assert list(c.iter_records()) == [cap.Record(5, cap.KIND_ZMQ, (b"a.b", b"c"))]
        with pytest.raises(OSError):
            cap.open_capture(tmp_path / "missing.cap")


class TestWriter:
    def test_blocks_are_written_every_n_records(self):
        """block_records=3 over 10 records gives blocks of 3, 3, 3 and (at close) 1."""
        assert [b.count for b in SMALL_CAP.blocks] == [3, 3, 3, 1]
        assert [(b.first_ns, b.last_ns) for b in SMALL_CAP.blocks] == [
            (1000, 1000), (1007, 1007), (1014, 1014), (1021, 1021)]

    def test_a_block_is_written_when_the_byte_limit_would_be_passed(self):
        """block_max_bytes closes a block before the record that would overflow it."""
        data = write([cap.Record(i, cap.KIND_ZMQ, (b"t.x", b"\x01" * 400)) for i in range(10)],
                     block_max_bytes=1000)
        assert [b.count for b in cap.read_capture(io.BytesIO(data)).blocks] == [2, 2, 2, 2, 2]

    def test_a_block_is_written_when_the_interval_has_passed(self):
        """With a fake clock: flush_if_due writes the pending block once the interval is over."""
        now = [0]
        buf = io.BytesIO()
        w = cap.CaptureWriter(buf, HEADER, block_interval_ms=100, clock_ns=lambda: now[0])
        w.append(1, [b"a.b", b""])
        now[0] = 99_999_999
        assert w.flush_if_due() is False and w.blocks == 0
        now[0] = 100_000_000
        assert w.flush_if_due() is True and w.blocks == 1
        w.append(2, [b"a.b", b""])
        now[0] = 250_000_000
        w.append(3, [b"a.b", b""])  # the block open since 100 ms is due: written with this one
        assert w.blocks == 2

    @pytest.mark.parametrize("recv_ns, frames, kind, message", [
        (9, [b"a.b", b""], cap.KIND_ZMQ, "must not decrease"),
        (10, [b"a.b", b""], 7, "unknown record kind"),
        (10, [b"raw.x", b"{}"], cap.KIND_WS_RAW, "exactly 1"),
        (10, [], cap.KIND_ZMQ, ">= 1 frame"),
    ])
    def test_writer_refuses_invalid_records(self, recv_ns, frames, kind, message):
        """Decreasing times, unknown kinds and wrong frame counts are refused with DataError."""
        w = cap.CaptureWriter(io.BytesIO(), HEADER)
        w.append(10, [b"a.b", b""])
        with pytest.raises(DataError, match=message):
            w.append(recv_ns, frames, kind)


    @pytest.mark.parametrize("kw", [dict(block_records=0), dict(block_max_bytes=0), dict(block_interval_ms=-1)])
    def test_writer_refuses_impossible_block_settings(self, kw):
        """--block-records 0 (or a zero byte bound, a negative interval) is a ConfigError."""
        with pytest.raises(ConfigError, match="block_records"):
            cap.CaptureWriter(io.BytesIO(), HEADER, **kw)

    def test_writer_refuses_appending_after_close(self):
        """A closed writer is the caller's misuse: a bare ValueError, as io's on a closed file."""
        w = cap.CaptureWriter(io.BytesIO(), HEADER)
        w.close()
        with pytest.raises(ValueError, match="closed"):
            w.append(1, [b"a.b", b""])


class TestSeek:
    @pytest.mark.parametrize("with_index", [True, False], ids=["index", "no-index"])
    def test_from_gives_exactly_the_records_at_or_after_t(self, with_index):
        """For every T around the data, from_ns=T gives exactly the records with recv >= T,
        and to_ns=U stops before the first record with recv >= U."""
        recs = records(200)
        data = write(recs, block_records=7, close=with_index)
        c = cap.read_capture(io.BytesIO(data))
        assert c.index_missing is (not with_index)
        times = sorted({r.recv_ns for r in recs})
        for t in [times[0] - 1, *times, times[-1] + 1] + [x + 3 for x in times[::5]]:
            assert list(c.iter_records(from_ns=t)) == [r for r in recs if r.recv_ns >= t]
            assert list(c.iter_records(to_ns=t)) == [r for r in recs if r.recv_ns < t]
        assert list(c.iter_records(from_ns=1070, to_ns=1105)) == [
            r for r in recs if 1070 <= r.recv_ns < 1105]

    def test_seek_via_the_index_reads_nothing_before_the_target_block(self):
        """After open, iter_records(from_ns=T) touches no byte before the block holding T."""
        recs = records(300)
        data = write(recs, block_records=10)
        f = _ReadLog(data)
        c = cap.read_capture(f)
        # open reads the header, then only the footer and the index: no block
        assert f.reads[:2] == [(0, 20), (20, c.data_offset - 20)]
        assert all(at >= c.blocks[-1].end for at, _ in f.reads[2:])
        f.reads.clear()
        target = c.blocks[17]
        got = list(c.iter_records(from_ns=target.first_ns + 1))
        assert got == [r for r in recs if r.recv_ns >= target.first_ns + 1]
        assert min(at for at, _ in f.reads) == target.offset


class _ReadLog(io.BytesIO):
    """A file that remembers where each read started and how much it asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[tuple[int, int]] = []

    def read(self, n=-1):
        self.reads.append((self.tell(), n))
        return super().read(n)


class TestWriterKilled:
    def test_a_file_without_index_and_footer_gives_every_complete_block(self):
        """The blocks a killed writer flushed are all read, sequentially, with index_missing."""
        recs = records(1_000)
        data = write(recs, block_records=64, close=False)
        c = cap.read_capture(io.BytesIO(data))
        assert c.index_missing is True and c.problem is None
        assert len(c.blocks) == 16
        assert list(c.iter_records()) == recs

    def test_a_file_cut_after_its_header_is_an_empty_capture(self):
        """A writer killed before its first block leaves a valid, empty, unindexed capture."""
        c = cap.read_capture(io.BytesIO(write([], close=False)))
        assert (c.header, c.blocks, c.index_missing, list(c.iter_records())) == (HEADER, (), True, [])


def region(data: bytes, c: cap.Capture, pos: int) -> tuple[str, int | None]:
    """Which part of a closed file byte ``pos`` belongs to."""
    if pos < c.data_offset:
        return "header", None
    for b in c.blocks:
        if b.offset <= pos < b.end:
            return "block", b.number
    return ("footer", None) if pos >= len(data) - cap.FOOTER_SIZE else ("index", None)


def records_before(c: cap.Capture, block: int) -> list[cap.Record]:
    return [r for b in c.blocks[:block] for r in c._read_block(b)]


class TestTruncation:
    def test_truncation_at_every_byte_offset(self):
        """Cut at every offset: at a block boundary (or the header's end) the file ends cleanly
        with index_missing and the records of the complete blocks; anywhere else the reader
        yields the records of the complete blocks, then DecodeError saying where."""
        data, c = SMALL_FILE, SMALL_CAP
        clean_cuts = {c.data_offset, *(b.end for b in c.blocks), len(data)}
        for n in range(len(data) + 1):
            got, err = read_all(data[:n])
            complete = [b for b in c.blocks if b.end <= n]
            assert got == SMALL[:sum(b.count for b in complete)], n
            if n in clean_cuts:
                assert err is None, (n, err)
                assert cap.read_capture(io.BytesIO(data[:n])).index_missing is (n != len(data))
                continue
            assert isinstance(err, cap.CaptureDecodeError), n
            assert "truncated" in str(err) and err.reason == "capture_truncated", (n, err)
            part, number = region(data, c, n)
            if part == "block":
                assert err.block == number and f"block {number}" in str(err), (n, err)
                assert err.offset == c.blocks[number].offset
            elif part == "header":
                assert err.offset in (0, 20) and not got
            else:
                assert part in str(err), (n, err)  # "truncated index" / "truncated footer"

    def test_truncation_of_a_file_without_index(self):
        """The same rule for a killed writer's file: clean exactly at block boundaries."""
        data = write(SMALL, block_records=3, close=False)
        c = cap.read_capture(io.BytesIO(data))
        for n in range(c.data_offset, len(data) + 1):
            got, err = read_all(data[:n])
            complete = [b for b in c.blocks if b.end <= n]
            assert got == SMALL[:sum(b.count for b in complete)]
            assert (err is None) == (n in {c.data_offset, *(b.end for b in c.blocks)}), n


class TestCorruption:
    @pytest.mark.parametrize("xor", [0x01, 0x80, 0xFF])
    def test_a_flipped_byte_anywhere_raises_decode_error_naming_the_part(self, xor):
        """Each byte flipped in turn: in the header, open fails; in block k, the records of
        blocks 0..k-1 come out and the error names block k; in the index or footer, every
        record comes out and the error names the index or the footer."""
        data, c = SMALL_FILE, SMALL_CAP
        for pos in range(len(data)):
            bad = bytearray(data)
            bad[pos] ^= xor
            got, err = read_all(bytes(bad))
            assert isinstance(err, cap.CaptureDecodeError), (pos, got)
            part, number = region(data, c, pos)
            if part == "header":
                assert got == [] and err.block is None
            elif part == "block":
                assert got == records_before(c, number), pos
                assert err.block == number and f"block {number}" in str(err), (pos, err)
                assert err.offset == c.blocks[number].offset
            else:
                assert got == SMALL, pos
                assert part in str(err), (pos, err)

    def test_a_flipped_byte_in_an_unindexed_file_names_the_block(self):
        """Without an index the sequential scan finds the same damage, block by block."""
        data = write(SMALL, block_records=3, close=False)
        c = cap.read_capture(io.BytesIO(data))
        for b in c.blocks:
            for pos in range(b.offset, b.end):
                bad = bytearray(data)
                bad[pos] ^= 0x10
                got, err = read_all(bytes(bad))
                assert got == records_before(c, b.number)
                assert err is not None and err.block == b.number, (pos, err)

    def test_payload_damage_is_reported_as_a_crc_mismatch(self):
        """A flipped payload byte says 'payload CRC mismatch' with the block's offset."""
        b = SMALL_CAP.blocks[2]
        bad = bytearray(SMALL_FILE)
        bad[b.offset + cap.BLOCK_HEADER_SIZE + 3] ^= 0x04
        _, err = read_all(bytes(bad))
        assert str(err) == f"capture damaged at offset {b.offset}, block 2: payload CRC mismatch"
        assert err.reason == "capture_crc"

    def test_a_repeated_block_is_detected_by_its_number(self):
        """Block 1 written twice (a splice) stops the reader at the copy, naming block 2."""
        data = write(SMALL, block_records=3, close=False)
        b1 = cap.read_capture(io.BytesIO(data)).blocks[1]
        spliced = data[:b1.end] + data[b1.offset:b1.end] + data[b1.end:]
        got, err = read_all(spliced)
        assert got == SMALL[:6]
        assert err.block == 2 and "block number 1 where 2 was expected" in str(err)

    def test_bytes_after_the_footer_are_damage(self):
        """Junk appended to a closed file: every record, then an error naming the extra bytes."""
        got, err = read_all(SMALL_FILE + b"junk")
        assert got == SMALL and "4 unexpected bytes after the footer" in str(err)

    def test_not_a_capture_file(self):
        """Other files are refused at open with 'bad magic' (an empty one as a truncated header)."""
        for data, reason, text in (
                (b"", "capture_truncated", "truncated file header (0 bytes)"),
                (b"PK\x03\x04" + bytes(40), "capture_bad_magic", "bad magic: not a capture file"),
                (b'{"stream":"x"}\n', "capture_bad_magic", "bad magic: not a capture file")):
            got, err = read_all(data)
            assert (got, type(err), err.reason, str(err)) == (
                [], cap.CaptureDecodeError, reason, f"capture damaged at offset 0: {text}")

    def test_a_newer_format_version_is_refused_plainly(self):
        """A header from format version 2 (valid CRC) is refused naming both versions."""
        fixed = bytearray(SMALL_FILE[:16])
        fixed[8:10] = struct.pack("<H", 2)
        body = SMALL_FILE[20:SMALL_CAP.data_offset]
        crc = struct.pack("<I", zlib.crc32(body, zlib.crc32(bytes(fixed))))
        _, err = read_all(bytes(fixed) + crc + SMALL_FILE[20:])
        assert "format version 2 (we read 1)" in str(err)

    def test_capture_errors_are_decode_errors(self):
        """Callers catch DecodeError (common.errors); the subclass only adds offset and block."""
        assert issubclass(cap.CaptureDecodeError, DecodeError)
