"""The feed's replay source: pure batch boundaries, and lock-step batches the brain reads
exactly as cut, whatever the timing; a damaged capture stops at the damage."""

from __future__ import annotations

import json
import threading
import time

import pytest

from common import config as config_mod
from common import records
from common.capture_file import KIND_WS_RAW, KIND_ZMQ, CaptureDecodeError, Record
from common.ring import Ring
from services.feed import replay_source as rs
from services.feed.sink import Feed

T0 = 1_733_011_200_000  # ms


def trade(i: int, ms: int, symbol: str = "BTCUSDT", combined: bool = True) -> bytes:
    body = {"e": "trade", "E": ms, "T": ms, "s": symbol, "t": i, "p": f"{100 + i % 7}.5", "q": "0.01",
            "X": "MARKET", "m": bool(i % 2)}
    if combined:
        body = {"stream": f"{symbol.lower()}@trade", "data": body}
    return json.dumps(body).encode()


def raw(i: int, ms: int, symbol: str = "BTCUSDT") -> Record:
    return Record(recv_ns=ms * 1_000_000 + 5_000, kind=KIND_WS_RAW, frames=(trade(i, ms, symbol),))


class TestPure:
    def test_frame_symbol_combined_bare_and_garbage(self):
        assert rs.frame_symbol(trade(1, T0)) == "BTCUSDT"
        assert rs.frame_symbol(trade(1, T0, "ETHUSDT", combined=False)) == "ETHUSDT"
        for bad in (b"", b"not json", b"[1,2]", b'{"data": 5}', b'{"s": 7}', b'{"s": ""}'):
            assert rs.frame_symbol(bad) is None

    def test_replay_symbols_header_order_wins_else_sorted_from_frames(self):
        frames = [trade(1, T0, "SOLUSDT"), trade(2, T0, "BTCUSDT"), b"junk", trade(3, T0, "SOLUSDT")]
        assert rs.replay_symbols(("ETHUSDT", "BTCUSDT", "ETHUSDT"), frames) == ["ETHUSDT", "BTCUSDT"]
        assert rs.replay_symbols((), frames) == ["BTCUSDT", "SOLUSDT"]

    def test_chunker_cuts_on_a_new_time_bucket_only(self):
        c = rs.Chunker(chunk=10, chunk_ms=100)
        ns = [t * 1_000_000 for t in (1000, 1050, 1099, 1100, 1100, 1250, 1299)]
        assert [c.starts_new(n) for n in ns] == [False, False, False, True, False, True, False]

    def test_pace_delay(self):
        assert rs.pace_delay_s(0, 10 * 10**9, 100.0, 100.0, 0.0) == 0.0  # --max
        assert rs.pace_delay_s(0, 10 * 10**9, 100.0, 100.0, 1.0) == pytest.approx(10.0)
        assert rs.pace_delay_s(0, 10 * 10**9, 100.0, 101.0, 10.0) == pytest.approx(0.0)
        assert rs.pace_delay_s(0, 10 * 10**9, 100.0, 100.5, 2.0) == pytest.approx(4.5)


def expected_batches(recs: list[Record], chunk: int, chunk_ms: int) -> list[int]:
    """The batch sizes the module docstring promises, computed independently."""
    out: list[int] = []
    cur = None
    n = 0
    for r in recs:
        if r.kind != KIND_WS_RAW:
            continue
        b = r.recv_ns // (chunk_ms * 1_000_000)
        if cur is not None and b != cur and n:
            out.append(n)
            n = 0
        cur = b
        n += 1
        if n == chunk:
            out.append(n)
            n = 0
    if n:
        out.append(n)
    return out


@pytest.fixture
def ring(short_tmp):
    r = Ring.create(str(short_tmp / "r.ring"), 1024)
    yield r
    r.close()


def cfg_with(chunk: int, chunk_ms: int, speed: float = 0.0):
    cfg = config_mod.load(None, env={})
    return config_mod.replace(cfg, replay={"chunk": chunk, "chunk_ms": chunk_ms, "speed": speed})


class SlowBrain(threading.Thread):
    """Reads the ring like the brain (batches of up to ``read_batch``), slowly and unevenly."""

    def __init__(self, ring: Ring, total: int, read_batch: int) -> None:
        super().__init__(daemon=True)
        self.reader = ring.reader()
        self.buf = records.empty(read_batch)
        self.total = total
        self.batches: list[int] = []
        self.ids: list[int] = []

    def run(self) -> None:
        deadline = time.monotonic() + 20
        got = 0
        k = 0
        while got < self.total and time.monotonic() < deadline:
            n = self.reader.read_batch(self.buf)
            if n:
                self.batches.append(n)
                self.ids += [int(x) for x in self.buf["id"][:n]]
                got += n
                k += 1
                time.sleep(0.002 * (k % 3))  # uneven: a batch may be slow to read
            else:
                time.sleep(0.0001)


class TestLockStep:
    def play(self, ring: Ring, recs: list[Record], chunk: int, chunk_ms: int):
        cfg = cfg_with(chunk, chunk_ms)
        feed = Feed(cfg, ring, ["BTCUSDT", "ETHUSDT"])
        total = sum(r.kind == KIND_WS_RAW for r in recs)
        brain = SlowBrain(ring, total, cfg.brain.read_batch)
        brain.start()
        progress = rs.Progress(file="mem")
        rs.Replayer(cfg, ring, feed, progress, lambda: False, lambda: None).play(iter(recs))
        brain.join(25)
        return brain, progress, feed

    def test_the_brain_reads_exactly_the_batches_cut_from_the_capture(self, ring):
        # 3 symbols' worth of frames at uneven times, a ZeroMQ record in between (skipped)
        recs = [raw(i, T0 + (i * 37) % 1000 // 1 + i * 3, "BTCUSDT" if i % 3 else "ETHUSDT") for i in range(1, 400)]
        recs.sort(key=lambda r: r.recv_ns)
        recs.insert(50, Record(recv_ns=recs[50].recv_ns, kind=KIND_ZMQ, frames=(b"heartbeat.x", b"")))
        brain, progress, feed = self.play(ring, recs, chunk=16, chunk_ms=50)
        assert progress.done and progress.error == ""
        assert brain.batches == expected_batches(recs, 16, 50)
        assert progress.ticks == feed.written == 399 and progress.skipped == 1 and progress.frames == 399
        assert progress.batches == len(brain.batches)
        assert sorted(brain.ids) == sorted(range(1, 400))

    def test_same_capture_same_batches_twice(self, short_tmp):
        recs = [raw(i, T0 + i * 7) for i in range(1, 300)]
        seen = []
        for k in range(2):
            r = Ring.create(str(short_tmp / f"r{k}.ring"), 1024)
            try:
                brain, _, _ = self.play(r, recs, chunk=10, chunk_ms=25)
                seen.append(brain.batches)
            finally:
                r.close()
        assert seen[0] == seen[1] == expected_batches(recs, 10, 25)

    def test_damage_stops_after_everything_before_it(self, ring):
        recs = [raw(i, T0 + i) for i in range(1, 101)]

        def damaged():
            yield from recs[:60]
            raise CaptureDecodeError("CRC mismatch", offset=4242, block=3)

        cfg = cfg_with(32, 1000)
        feed = Feed(cfg, ring, ["BTCUSDT"])
        brain = SlowBrain(ring, 60, cfg.brain.read_batch)
        brain.start()
        progress = rs.Progress(file="mem")
        rs.Replayer(cfg, ring, feed, progress, lambda: False, lambda: None).play(damaged())
        brain.join(25)
        assert progress.done
        assert "offset 4242" in progress.error and progress.error_offset == 4242
        assert progress.ticks == 60 and brain.ids == list(range(1, 61))

    def test_stop_while_waiting_for_the_brain_returns(self, ring):
        """No reader at all: asked to stop, the replayer gives up waiting (never a hang)."""
        cfg = cfg_with(8, 1000)
        feed = Feed(cfg, ring, ["BTCUSDT"])
        progress = rs.Progress(file="mem")
        deadline = time.monotonic() + 0.3
        rs.Replayer(cfg, ring, feed, progress, lambda: time.monotonic() > deadline,
                    lambda: None).play(iter([raw(i, T0 + i) for i in range(1, 50)]))
        assert progress.ticks == 8 and not progress.done

    def test_commit_restamps_receive_time_for_latency_only(self, ring):
        cfg = cfg_with(4, 1000)
        feed = Feed(cfg, ring, ["BTCUSDT"])
        brain = SlowBrain(ring, 4, cfg.brain.read_batch)
        brain.start()
        before = time.time_ns()
        rs.Replayer(cfg, ring, feed, rs.Progress(file="m"), lambda: False, lambda: None).play(
            iter([raw(i, T0 + i) for i in range(1, 5)]))
        brain.join(5)
        assert brain.buf["recv_ns"][0] >= before  # wall time at commit, not the capture's
        assert list(brain.buf["event_ms"][:4]) == [T0 + i for i in range(1, 5)]


def test_symbols_of_a_damaged_capture_are_those_seen_before_the_damage(short_tmp):
    from common.capture_file import Header, create_capture, open_capture

    path = short_tmp / "c.cap"
    with create_capture(path, Header(start_ns=T0 * 1_000_000), block_records=10) as w:
        for i in range(1, 60):
            w.append((T0 + i) * 1_000_000, (trade(i, T0 + i, "ETHUSDT" if i < 30 else "SOLUSDT"),), KIND_WS_RAW)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    seen = set()
    with open_capture(path) as cap:
        syms, flags = rs._symbols_and_flags(cap, None, None)
        with pytest.raises(CaptureDecodeError):
            for rec in cap.iter_records():
                seen.add(rs.frame_symbol(rec.frames[0]))
    assert syms == sorted(seen) and "ETHUSDT" in seen and flags == {}
