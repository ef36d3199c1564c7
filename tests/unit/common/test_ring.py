"""Shared-memory ring: segment validation, exact round trips, overrun accounting, resume, symbols."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from common import ring as rg
from common.errors import RingError
from common.records import MAX_SYMBOLS, RECORD_SIZE, SYMBOL_NAME_BYTES, TICK_DTYPE, Flag, Kind, empty
from common.ring import Ring

PAYLOAD = [f for f in TICK_DTYPE.names if f != "stamp"]


@pytest.fixture
def ring_path(short_tmp):
    return str(short_tmp / "t.ring")


@pytest.fixture
def make_ring(ring_path):
    """Create rings at ``ring_path`` and close every one of them at teardown."""
    opened: list[Ring] = []

    def make(capacity: int = 16) -> Ring:
        r = Ring.create(ring_path, capacity)
        opened.append(r)
        return r

    def attach(**kw) -> Ring:
        r = Ring.attach(ring_path, **kw)
        opened.append(r)
        return r

    make.attach = attach
    yield make
    for r in opened:
        r.close()


def records(seqs) -> np.ndarray:
    """Records whose every field is derived from the sequence number (stamp left at 0)."""
    s = np.asarray(seqs, np.int64)
    recs = empty(len(s))
    recs["recv_ns"] = s * 3 + 1
    recs["event_ms"] = s * 7 - 5
    recs["id"] = s
    recs["price"] = s * 0.5 + 0.25
    recs["qty"] = (s * 2654435761 % 1000003) / 1000.0
    recs["aux"] = -s * 1.5
    recs["aux_qty"] = (s % 97) * 0.125
    recs["symbol_id"] = s % 4096
    recs["kind"] = s % 4 + 1
    recs["flags"] = s % 16
    return recs


def read_all(reader, batch: int = 7) -> np.ndarray:
    out, got = empty(batch), []
    while n := reader.read_batch(out):
        got.append(out[:n].copy())
    return np.concatenate(got) if got else empty(0)


def assert_exact(delivered: np.ndarray) -> None:
    """Every delivered record is byte-identical to what was written for its sequence."""
    seqs = delivered["stamp"] - 1
    want = records(seqs)
    want["stamp"] = seqs + 1
    assert delivered.tobytes() == want.tobytes()


def patch_file(path: str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


class TestSegment:
    def test_create_then_attach_sees_same_capacity_and_zero_counters(self, make_ring, ring_path):
        """A fresh segment attaches with its capacity, the documented size and all counters at 0."""
        make_ring(64)
        r = make_ring.attach()
        assert (r.capacity, r.path) == (64, ring_path)
        assert os.path.getsize(ring_path) == rg.SLOTS_OFFSET + 64 * RECORD_SIZE
        assert r.counters() == {"written": 0, "read": 0, "lost": 0, "resyncs": 0, "lag": 0, "symbols": 0}

    def test_layout_blocks_are_128_byte_aligned_and_slots_page_aligned(self):
        """Writer, reader and symbol blocks start on 128-byte boundaries; slots on a page."""
        for w in (rg.WRITER_CURSOR_W, rg.READER_CURSOR_W, rg.SYMBOL_COUNT_W):
            assert (w * 8) % rg.BLOCK_BYTES == 0
        assert rg.SLOTS_OFFSET % 4096 == 0
        assert rg.SLOTS_OFFSET >= rg.NAMES_OFFSET + MAX_SYMBOLS * SYMBOL_NAME_BYTES

    @pytest.mark.parametrize("capacity", [0, 1, 3, 12, -8, 2.0])
    def test_create_rejects_capacity_that_is_not_a_power_of_two(self, ring_path, capacity):
        """Only powers of two >= 2 are accepted as capacity."""
        with pytest.raises(RingError):
            Ring.create(ring_path, capacity)

    @pytest.mark.parametrize("offset,data,needle", [
        (0, b"NOTARING", "magic"),
        (8, struct.pack("<I", 2), "version"),
        (12, struct.pack("<I", 32), "record size"),
        (16, struct.pack("<Q", 12), "power of two"),
        (16, struct.pack("<Q", 32), "needs"),
        (24, struct.pack("<Q", 100), "symbol capacity"),
    ])
    def test_attach_rejects_corrupt_header_field(self, make_ring, ring_path, offset, data, needle):
        """Each header field is validated and named in the error."""
        make_ring(16).close()
        patch_file(ring_path, offset, data)
        with pytest.raises(RingError, match=needle):
            Ring.attach(ring_path)

    def test_attach_rejects_truncated_file(self, make_ring, ring_path):
        """A file shorter than its header's capacity needs is refused, not mapped."""
        make_ring(16).close()
        os.truncate(ring_path, rg.SLOTS_OFFSET + 8 * RECORD_SIZE)
        with pytest.raises(RingError, match="needs"):
            Ring.attach(ring_path)

    @pytest.mark.parametrize("size", [0, 7, 100, rg.SLOTS_OFFSET + 16 * RECORD_SIZE])
    def test_attach_rejects_random_garbage_of_any_size(self, ring_path, size):
        """Random bytes (even of a plausible size) give RingError, never another exception."""
        with open(ring_path, "wb") as f:
            f.write(np.random.default_rng(size).bytes(size))
        with pytest.raises(RingError):
            Ring.attach(ring_path)

    def test_attach_to_missing_file_is_a_ring_error(self, ring_path):
        """A segment that does not exist yet is reported as RingError."""
        with pytest.raises(RingError, match="cannot map"):
            Ring.attach(ring_path)

    def test_unlink_removes_file_and_ignores_missing(self, make_ring, ring_path):
        """unlink deletes the segment and is a no-op the second time."""
        make_ring(8)
        Ring.unlink(ring_path)
        assert not os.path.exists(ring_path)
        Ring.unlink(ring_path)

    def test_close_is_idempotent_and_use_after_close_is_a_ring_error(self, make_ring):
        """After close every writer/reader call raises RingError instead of touching freed memory."""
        r = make_ring(8)
        w, rd = r.writer(), r.reader()
        r.close()
        r.close()
        with pytest.raises(RingError):
            w.publish(0, 1, 0, 0, 0, 0, 1.0, 1.0)
        with pytest.raises(RingError):
            rd.read_batch(empty(4))
        with pytest.raises(RingError):
            r.counters()

    def test_create_over_existing_segment_leaves_old_mapping_usable(self, make_ring):
        """Re-creating swaps in a new file; a process still mapping the old one is unharmed."""
        old = make_ring(8)
        old.writer().write_batch(records(range(3)))
        new = make_ring(8)
        assert old.counters()["written"] == 3
        assert new.counters()["written"] == 0

    def test_read_only_attach_shows_counters_but_refuses_writer_and_reader(self, make_ring):
        """The supervisor's read-only view reads counters and symbols and cannot write."""
        r = make_ring(8)
        r.register_symbol("BTCUSDT")
        r.writer().write_batch(records(range(5)))
        ro = make_ring.attach(readonly=True)
        assert ro.counters()["written"] == 5
        assert ro.symbol_names() == ["BTCUSDT"]
        for call in (ro.writer, ro.reader, lambda: ro.register_symbol("ETHUSDT")):
            with pytest.raises(RingError, match="read-only"):
                call()


class TestRoundTrip:
    def test_publish_round_trips_every_field_exactly(self, make_ring):
        """Each field given to publish comes back bit-exact, with stamp = sequence + 1."""
        r = make_ring(8)
        w, rd = r.writer(), r.reader()
        seq = w.publish(4095, Kind.BOOK, Flag.BUYER_IS_MAKER | Flag.NON_MARKET, 1_723_161_600_123_456_789,
                        1_723_161_600_123, 2**62 + 1, 67_123.45, 0.001, 67_123.46, 1.5)
        out = empty(4)
        assert (seq, rd.read_batch(out)) == (0, 1)
        rec = out[0]
        assert rec.tolist() == (1, 1_723_161_600_123_456_789, 1_723_161_600_123, 2**62 + 1, 67_123.45,
                                0.001, 67_123.46, 1.5, 4095, int(Kind.BOOK), 9)

    def test_write_batch_round_trips_bytes_and_overwrites_caller_stamp(self, make_ring):
        """Batch records come back byte-identical; the ring owns the stamp whatever the caller put."""
        r = make_ring(16)
        recs = records(range(10))
        recs["stamp"] = 12345
        assert r.writer().write_batch(recs) == 10
        got = read_all(r.reader())
        assert got["stamp"].tolist() == list(range(1, 11))
        assert_exact(got)

    def test_write_accepts_a_record_scalar_or_one_element_array(self, make_ring):
        """write takes a TICK_DTYPE void scalar or a 1-element array and returns the sequence."""
        r = make_ring(8)
        w = r.writer()
        recs = records(range(2))
        assert (w.write(recs[0]), w.write(recs[1:2])) == (0, 1)
        assert_exact(read_all(r.reader()))

    def test_write_rejects_wrong_dtype_and_many_records(self, make_ring):
        """A non-TICK_DTYPE input is a TypeError; write of two records a ValueError."""
        w = make_ring(8).writer()
        with pytest.raises(TypeError):
            w.write_batch(np.zeros(4, np.int64))
        with pytest.raises(ValueError):
            w.write(records(range(2)))

    def test_read_batch_rejects_an_unusable_out_buffer(self, make_ring):
        """out must be a writable contiguous TICK_DTYPE vector."""
        rd = make_ring(8).reader()
        for bad in (np.zeros(4, np.int64), empty(8)[::2], empty(4).reshape(2, 2)):
            with pytest.raises(TypeError):
                rd.read_batch(bad)

    def test_publish_write_and_write_batch_store_identical_bytes(self, make_ring):
        """The three write paths produce the same slot bytes for the same record."""
        r = make_ring(8)
        w = r.writer()
        rec = records([5])[0]
        w.publish(rec["symbol_id"], rec["kind"], rec["flags"], rec["recv_ns"], rec["event_ms"], rec["id"],
                  rec["price"], rec["qty"], rec["aux"], rec["aux_qty"])
        w.write(rec)
        w.write_batch(records([5]))
        got = read_all(r.reader())
        got["stamp"] = 0
        assert got.tobytes() == records([5, 5, 5]).tobytes()

    def test_publish_accepts_numpy_scalars_and_python_ints_for_floats(self, make_ring):
        """Mixed argument types convert instead of compiling a new kernel or failing."""
        r = make_ring(8)
        w = r.writer()
        w.publish(np.uint16(3), np.uint8(1), 0, np.int64(5), 6, 7, 100, np.float32(0.5), 0, 1)
        got = read_all(r.reader())
        fields = ["symbol_id", "kind", "price", "qty", "aux", "aux_qty"]
        assert got[fields].tolist() == [(3, 1, 100.0, 0.5, 0.0, 1.0)]

    def test_wrap_around_many_times_delivers_everything_in_order(self, make_ring):
        """A reader that keeps up on a tiny ring sees every sequence once, across 500 wraps."""
        r = make_ring(8)
        w, rd = r.writer(), r.reader()
        got = []
        for i in range(1000):
            w.write_batch(records(range(i * 4, i * 4 + 4)))
            got.append(read_all(rd, batch=3))
        got = np.concatenate(got)
        assert got["stamp"].tolist() == list(range(1, 4001))
        assert_exact(got)
        assert (rd.lost, rd.resyncs, rd.lag()) == (0, 0, 0)


class TestOverrun:
    def test_reader_lapped_by_writer_counts_exact_loss(self, make_ring):
        """100 records through a 16-slot ring: the reader skips to the safe window and counts the rest."""
        r = make_ring(16)
        w, rd = r.writer(), r.reader()
        w.write_batch(records(range(100)))
        got = read_all(rd)
        start = 100 - 16 + rg.resync_margin(16)
        assert got["stamp"].tolist() == list(range(start + 1, 101))
        assert (rd.lost, rd.resyncs) == (start, 1)
        assert_exact(got)
        assert r.counters() == {"written": 100, "read": 100 - start, "lost": start, "resyncs": 1,
                                "lag": 0, "symbols": 0}

    def test_slot_being_rewritten_is_counted_lost_not_delivered(self, make_ring):
        """A BUSY stamp on the next slot (writer mid-overwrite) makes the reader skip it and count it."""
        r = make_ring(16)
        w, rd = r.writer(), r.reader()
        w.write_batch(records(range(10)))
        r.words[rg.SLOTS_W + 3 * rg.WORDS] = rg.BUSY  # sequence 3's slot
        got = read_all(rd)
        assert got["stamp"].tolist() == [1, 2, 3, 5, 6, 7, 8, 9, 10]
        assert (rd.lost, rd.resyncs) == (1, 1)

    def test_slot_overwritten_before_cursor_publish_is_counted_lost(self, make_ring):
        """A slot already holding sequence s + capacity (cursor not yet published) is never delivered."""
        r = make_ring(8)
        w, rd = r.writer(), r.reader()
        w.write_batch(records(range(8)))
        r.words[rg.SLOTS_W + 0 * rg.WORDS] = 8 + 1  # sequence 8 landed in slot 0 ahead of the cursor
        got = read_all(rd)
        assert got["stamp"].tolist() == list(range(2, 9))
        assert rd.lost == 1

    def test_batch_larger_than_capacity_keeps_only_newest_and_accounts_all(self, make_ring):
        """A 50-record batch into 8 slots leaves the newest records readable; the rest are counted lost."""
        r = make_ring(8)
        w, rd = r.writer(), r.reader()
        assert w.write_batch(records(range(50))) == 50
        got = read_all(rd)
        assert len(got) + rd.lost == 50
        assert got["stamp"].tolist() == list(range(51 - len(got), 51))
        assert_exact(got)

    def test_writer_never_looks_at_reader_cursor(self, make_ring):
        """A reader cursor parked far behind does not stop or slow the writer (it just laps)."""
        r = make_ring(4)
        w = r.writer()
        r.reader()
        assert w.write_batch(records(range(1000))) == 1000
        assert w.cursor == 1000


class TestRawKernels:
    def test_raw_kernels_on_ring_words_match_the_shell(self, make_ring):
        """Brain-style direct calls of ring_write_batch / ring_read_batch on Ring.words round-trip."""
        r = make_ring(16)
        r.writer()
        assert rg.ring_write_batch(r.words, records(range(6)).view(np.int64), 6) == 6
        r.reader()
        out = empty(4)
        n = rg.ring_read_batch(r.words, out.view(np.int64), 4, 1)
        assert n == 4
        assert_exact(out[:n])

    def test_read_kernel_never_writes_past_out_whatever_max_n_says(self, make_ring):
        """max_n larger than the buffer is clamped to the buffer's length."""
        r = make_ring(16)
        r.writer().write_batch(records(range(10)))
        r.reader()
        buf = empty(6)
        assert rg.ring_read_batch(r.words, buf[:3].view(np.int64), 1_000, 0) == 3
        assert buf["stamp"].tolist() == [1, 2, 3, 0, 0, 0]

    def test_corrupted_capacity_word_cannot_send_kernels_out_of_bounds(self, make_ring):
        """Kernels size the ring from the mapping, not the header word a stray write could change."""
        r = make_ring(8)
        w, rd = r.writer(), r.reader()
        r.words[16 // 8] = 1 << 40
        w.write_batch(records(range(12)))
        got = read_all(rd)
        assert len(got) + rd.lost == 12
        assert_exact(got)


class TestResume:
    def test_saved_resume_after_reader_restart_continues_exactly(self, make_ring):
        """A new process attaching with resume='saved' continues at the saved cursor, skipping nothing."""
        r = make_ring(16)
        w, rd = r.writer(), r.reader()
        w.write_batch(records(range(10)))
        assert rd.read_batch(empty(4)) == 4
        rd2 = make_ring.attach().reader("saved")
        assert (rd2.skipped_on_attach, rd2.cursor) == (0, 4)
        assert read_all(rd2)["stamp"].tolist() == list(range(5, 11))

    def test_saved_resume_after_overrun_skips_to_oldest_safe_and_counts_it(self, make_ring):
        """If the saved cursor was overwritten meanwhile, the skip is exact and counted as lost."""
        r = make_ring(16)
        w, rd = r.writer(), r.reader()
        w.write_batch(records(range(10)))
        rd.read_batch(empty(4))
        w.write_batch(records(range(10, 60)))
        rd2 = make_ring.attach().reader("saved")
        start = 60 - 16 + rg.resync_margin(16)
        assert (rd2.skipped_on_attach, rd2.lost, rd2.cursor) == (start - 4, start - 4, start)
        got = read_all(rd2)
        assert got["stamp"].tolist() == list(range(start + 1, 61))
        assert len(got) + rd2.lost + 4 == 60

    def test_latest_resume_starts_at_writer_cursor_and_reports_skip(self, make_ring):
        """resume='latest' jumps to the head; everything unread is the reported (and counted) skip."""
        r = make_ring(16)
        w = r.writer()
        w.write_batch(records(range(10)))
        r.reader().read_batch(empty(3))
        rd2 = make_ring.attach().reader("latest")
        assert (rd2.skipped_on_attach, rd2.lost, rd2.lag()) == (7, 7, 0)
        w.publish(0, 1, 0, 0, 0, 10, 0.0, 0.0)
        assert read_all(rd2)["stamp"].tolist() == [11]
        assert r.counters() == {"written": 11, "read": 4, "lost": 7, "resyncs": 0, "lag": 0, "symbols": 0}

    def test_unknown_resume_mode_is_refused(self, make_ring):
        """Only 'saved' and 'latest' are resume modes."""
        with pytest.raises(RingError):
            make_ring(8).reader("oldest")

    def test_restarted_writer_continues_the_sequence(self, make_ring):
        """A writer in a new process picks up at the shared cursor; the reader sees no gap."""
        r = make_ring(16)
        r.writer().write_batch(records(range(5)))
        w2 = make_ring.attach().writer()
        assert w2.cursor == 5
        assert w2.write_batch(records(range(5, 9))) == 4
        got = read_all(r.reader())
        assert got["stamp"].tolist() == list(range(1, 10))
        assert_exact(got)

    @pytest.mark.parametrize("mode,r,w,cap,margin,expected", [
        ("saved", 4, 10, 16, 1, (4, 0)),
        ("saved", 0, 16, 16, 1, (0, 0)),
        ("saved", 0, 17, 16, 1, (2, 2)),
        ("saved", 12, 10, 16, 1, (10, 0)),
        ("latest", 3, 10, 16, 1, (10, 7)),
        ("latest", 12, 10, 16, 1, (10, 0)),
    ])
    def test_resume_position_table(self, mode, r, w, cap, margin, expected):
        """The pure resume rule: (start, skipped) for saved/latest, full ring and impossible cursors."""
        assert rg.resume_position(mode, r, w, cap, margin) == expected


class TestSymbols:
    def test_register_returns_dense_ids_and_is_idempotent(self, make_ring):
        """Names get ids 0, 1, ... in order; registering a known name returns its id again."""
        r = make_ring(8)
        assert [r.register_symbol(s) for s in ("BTCUSDT", "ETHUSDT", "BTCUSDT")] == [0, 1, 0]
        assert r.symbol_names() == ["BTCUSDT", "ETHUSDT"]
        assert r.counters()["symbols"] == 2

    def test_another_process_resolves_names_registered_later(self, make_ring):
        """A reader's table grows lazily as the writer appends; the writer's restart reuses ids."""
        w = make_ring(8)
        rd = make_ring.attach()
        w.register_symbol("BTCUSDT")
        assert rd.symbol_names() == ["BTCUSDT"]
        w.register_symbol("1000PEPEUSDT")
        assert rd.symbol_names() == ["BTCUSDT", "1000PEPEUSDT"]
        assert make_ring.attach().register_symbol("1000PEPEUSDT") == 1

    @pytest.mark.parametrize("name", ["", "BTC\u00e9USDT", "X" * (SYMBOL_NAME_BYTES + 1), "A\0B", None,
                                      b"BTC"])
    def test_invalid_names_are_refused(self, make_ring, name):
        """Empty, non-ASCII, too long, NUL-containing and non-string names raise RingError."""
        with pytest.raises(RingError):
            make_ring(8).register_symbol(name)

    def test_name_of_exactly_32_bytes_round_trips(self, make_ring):
        """A name filling the whole slot (no NUL terminator) is read back intact."""
        r = make_ring(8)
        name = "Y" * SYMBOL_NAME_BYTES
        r.register_symbol(name)
        assert make_ring.attach().symbol_names() == [name]

    def test_full_table_refuses_new_names_but_accepts_known_ones(self, make_ring):
        """After MAX_SYMBOLS names a new one is a RingError; an existing one still returns its id."""
        r = make_ring(8)
        for i in range(MAX_SYMBOLS):
            r.register_symbol(f"S{i}")
        with pytest.raises(RingError, match="full"):
            r.register_symbol("NEWUSDT")
        assert r.register_symbol("S7") == 7
        assert len(make_ring.attach().symbol_names()) == MAX_SYMBOLS


class TestSingleRoles:
    def test_second_live_reader_is_refused(self, tmp_path):
        """A ring is single-consumer: a reader while another live process reads is a RingError."""
        import subprocess
        import sys

        from common.errors import RingError
        from common.ring import READER_PID_W, Ring, ring_store

        path = str(tmp_path / "r.ring")
        ring = Ring.create(path, 64)
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            ring_store(ring.words, READER_PID_W, other.pid)
            with pytest.raises(RingError, match="live reader"):
                ring.reader()
        finally:
            other.kill()
            other.wait()
        ring.reader()  # the other reader is dead (reaped): taken over
        ring.close()

    def test_dead_writer_is_taken_over_and_released_on_close(self, tmp_path):
        """A writer whose pid is dead is replaced; close() gives the role back (pid 0)."""
        import os

        from common.ring import WRITER_PID_W, Ring, ring_load, ring_store

        path = str(tmp_path / "w.ring")
        ring = Ring.create(path, 64)
        ring_store(ring.words, WRITER_PID_W, 2**22 + 12345)  # no such pid
        ring.writer()
        assert int(ring_load(ring.words, WRITER_PID_W)) == os.getpid()
        ring.close()
        again = Ring.attach(path)
        assert int(ring_load(again.words, WRITER_PID_W)) == 0
        again.close()

    def test_zombie_counts_as_dead(self):
        """A killed child not yet reaped is not a live owner."""
        import signal
        import subprocess
        import sys
        import time

        from common.ring import pid_alive

        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        assert pid_alive(p.pid)
        os_kill = __import__("os").kill
        os_kill(p.pid, signal.SIGKILL)
        time.sleep(0.3)  # dead, but not reaped: a zombie
        assert not pid_alive(p.pid)
        p.wait()


def test_ring_too_big_for_the_shm_filesystem_is_a_ring_error(tmp_path, monkeypatch):
    """No space for the ring (a small docker /dev/shm) gives RingError at create, never a SIGBUS later."""
    import errno

    def no_space(fd, off, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(RingError, match="cannot allocate"):
        Ring.create(str(tmp_path / "big.ring"), 1 << 10)
    assert not list(tmp_path.iterdir())  # the temporary file is gone too
