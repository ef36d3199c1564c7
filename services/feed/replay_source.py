"""The feed in replay mode: a capture's raw WebSocket frames into the ring, in lock-step.

``aegis replay`` (``cli.replay``) runs the stack with ``mode =
"replay"``; the feed then reads ``replay.file`` instead of opening WebSockets. Every raw
frame (capture records of kind ``ws_raw``) goes through the same sink as a live frame
(``services.feed.sink.Feed``: decode, firewall, sequencing, gaps), with the capture's receive
time as the firewall's reference clock, never today's wall clock.

Why it is deterministic. The brain's decisions depend on how the ticks are cut into the
batches it reads (quiet candles close, and the paper broker answers, batch by batch). So
the cut is made here, as a pure function of the capture (``chunk_bounds``): a batch ends
when it holds ``replay.chunk`` ticks or when the next frame falls in a new ``chunk_ms``
bucket of capture time. Each batch is committed to the ring at once (one cursor store) and
the feed waits until the brain has read all of it before it writes the next one (lock-step
on the ring's reader cursor), so the brain reads exactly these batches, at any speed. Pacing
(``replay.speed``: 1 = recorded pace, 0 = as fast as the brain goes) only ever sleeps
between batches.

A damaged capture stops the replay at the damage: everything before it is replayed, the
error (with its file offset) goes to the stats file, and the feed stays up, idle, so that
the supervisor does not restart it into the same damage.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import msgspec
import structlog

from common import bus, records, service, wire, zmqutil
from common.capture_file import KIND_WS_RAW, Capture, Record, open_capture
from common.config import AegisConfig
from common.errors import DecodeError, RingError
from common.ring import READER_CURSOR_W, Ring, RingWriter, ring_load
from services.feed import discovery
from services.feed.sink import Feed

log = structlog.get_logger(__name__)
NAME = "feed"
RING_RETRY_S = 0.5
STATS_INTERVAL_S = 0.25  # the replay's progress bar reads the stats file
SPIN_WAIT_S = 0.0002  # lock-step: the brain reads a batch within microseconds to milliseconds


# ---------------------------------------------------------------------------- pure core
class _Data(msgspec.Struct):
    s: Any = None


class _Frame(msgspec.Struct):
    s: Any = None
    data: _Data | None = None


_FRAME = msgspec.json.Decoder(_Frame)


def frame_symbol(raw: bytes) -> str | None:
    """The symbol a raw Binance frame is about (combined-stream or bare), or None."""
    try:
        f = _FRAME.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    s = f.data.s if f.data is not None else f.s
    return s if isinstance(s, str) and s else None


def replay_symbols(header_symbols: Iterable[str], frames: Iterable[bytes]) -> list[str]:
    """The ring's symbol order for a replay: the capture header's symbols (the stack's, in its
    order), else every symbol the frames mention, sorted (the same order every time)."""
    given = [s for s in header_symbols if s]
    if given:
        return list(dict.fromkeys(given))
    return sorted({s for s in map(frame_symbol, frames) if s is not None})


def bucket(recv_ns: int, chunk_ms: int) -> int:
    return recv_ns // (chunk_ms * 1_000_000)


@dataclass(slots=True)
class Chunker:
    """Where batches end, from the capture alone (no clock, no speed): before a frame in a
    new ``chunk_ms`` bucket, and as soon as ``chunk`` ticks are staged."""

    chunk: int
    chunk_ms: int
    current: int | None = None

    def starts_new(self, recv_ns: int) -> bool:
        """Called before each frame: True when the staged ticks must be committed first."""
        b = bucket(recv_ns, self.chunk_ms)
        new = self.current is not None and b != self.current
        self.current = b
        return new


def pace_delay_s(first_ns: int, at_ns: int, started_s: float, now_s: float, speed: float) -> float:
    """How long to wait before committing a batch whose first frame was received at ``at_ns``
    (0 = as fast as possible): the capture's own pace divided by ``speed``."""
    if speed <= 0:
        return 0.0
    return max(0.0, started_s + (at_ns - first_ns) / 1e9 / speed - now_s)


# ---------------------------------------------------------------------------- staging writer
class StagingWriter:
    """The ring writer's ``publish`` into a preallocated batch (no allocation per tick);
    ``commit`` writes the batch to the ring with one cursor store."""

    def __init__(self, writer: RingWriter, capacity: int) -> None:
        self.writer = writer
        self.buf = records.empty(capacity)
        self.n = 0

    @property
    def cursor(self) -> int:
        return self.writer.cursor + self.n

    def publish(self, symbol_id, kind, flags, recv_ns, event_ms, id, price, qty,  # noqa: A002
                aux=0.0, aux_qty=0.0) -> int:
        r = self.buf[self.n]
        r["symbol_id"], r["kind"], r["flags"] = symbol_id, kind, flags
        r["recv_ns"], r["event_ms"], r["id"] = recv_ns, event_ms, id
        r["price"], r["qty"], r["aux"], r["aux_qty"] = price, qty, aux, aux_qty
        self.n += 1
        return self.cursor - 1

    def commit(self) -> int:
        n = self.n
        if n:
            # the receive time the brain measures its latency from: now, as the batch enters
            # the ring (the capture's own receive times were the firewall's clock; no decision
            # reads this field, so the replay stays deterministic)
            self.buf["recv_ns"][:n] = time.time_ns()
            self.writer.write_batch(self.buf[:n])
            self.n = 0
        return n


# ---------------------------------------------------------------------------- the shell
@dataclass
class Progress:
    file: str
    records_total: int = 0
    records: int = 0  # capture records read (any kind)
    frames: int = 0  # raw WebSocket frames replayed
    skipped: int = 0  # records of other kinds (ZeroMQ events: not the feed's input)
    batches: int = 0
    ticks: int = 0
    first_ns: int | None = None
    position_ns: int | None = None
    done: bool = False
    error: str = ""
    error_offset: int | None = None
    elapsed_s: float = 0.0

    def doc(self) -> dict[str, Any]:
        return {"file": self.file, "records_total": self.records_total, "records": self.records,
                "frames": self.frames, "skipped_records": self.skipped, "batches": self.batches,
                "ticks": self.ticks, "first_ns": self.first_ns, "position_ns": self.position_ns,
                "done": self.done, "error": self.error, "error_offset": self.error_offset,
                "elapsed_s": round(self.elapsed_s, 3)}


class Replayer:
    """Plays the capture's frames through ``feed`` into the ring in lock-step batches."""

    def __init__(self, cfg: AegisConfig, ring: Ring, feed: Feed, progress: Progress,
                 should_stop: Callable[[], bool], tick: Callable[[], None]) -> None:
        self.cfg = cfg
        self.words = ring.words
        self.stage = StagingWriter(ring.writer(), cfg.replay.chunk)
        feed.writer = self.stage
        self.feed = feed
        self.p = progress
        self.should_stop = should_stop
        self.tick = tick  # heartbeats and stats while waiting
        self.started_s = time.monotonic()

    def wait_brain(self) -> bool:
        """Until the brain has read everything committed (False: asked to stop first)."""
        target = self.stage.writer.cursor
        spins = 0
        while int(ring_load(self.words, READER_CURSOR_W)) < target:
            if self.should_stop():
                return False
            spins += 1
            if spins > 200:
                time.sleep(SPIN_WAIT_S)
                if spins % 500 == 0:
                    self.tick()
        return True

    def commit(self, next_ns: int | None) -> bool:
        if self.stage.n == 0:
            return True
        at = self.p.position_ns if next_ns is None else next_ns
        self.p.ticks += self.stage.commit()
        self.p.batches += 1
        self.tick()
        ok = self.wait_brain()
        if ok and self.cfg.replay.speed > 0 and at is not None and self.p.first_ns is not None:
            delay = pace_delay_s(self.p.first_ns, at, self.started_s, time.monotonic(), self.cfg.replay.speed)
            while delay > 0 and not self.should_stop():
                time.sleep(min(delay, 0.1))
                self.tick()
                delay = pace_delay_s(self.p.first_ns, at, self.started_s, time.monotonic(),
                                     self.cfg.replay.speed)
        return ok

    def play(self, recs: Iterator[Record]) -> None:
        chunker = Chunker(self.cfg.replay.chunk, self.cfg.replay.chunk_ms)
        feed, stage, p = self.feed, self.stage, self.p
        limit = self.cfg.replay.chunk
        try:
            for rec in recs:
                p.records += 1
                if rec.kind != KIND_WS_RAW:
                    p.skipped += 1
                    continue
                if p.first_ns is None:
                    p.first_ns = rec.recv_ns
                    self.started_s = time.monotonic()
                if chunker.starts_new(rec.recv_ns) and not self.commit(rec.recv_ns):
                    return
                p.position_ns = rec.recv_ns
                p.frames += 1
                feed.on_frame(rec.frames[0], rec.recv_ns)
                if stage.n >= limit and not self.commit(None):
                    return
            self.commit(None)
        except DecodeError as exc:  # a damaged capture: keep what came before, say where
            self.commit(None)
            p.error = str(exc)
            p.error_offset = getattr(exc, "offset", None)
            log.error("feed.replay_damaged", error=p.error, offset=p.error_offset,
                      frames=p.frames, ticks=p.ticks)
        p.done = True
        p.elapsed_s = time.monotonic() - self.started_s


def _attach(path: str, stop: service.StopFlag) -> Ring | None:
    while not stop.is_set():
        try:
            return Ring.attach(path)
        except (RingError, OSError) as exc:
            log.warning("feed.ring_unavailable", path=path, error=str(exc))
            stop.sleep(RING_RETRY_S)
    return None


def _symbols_and_flags(cap: Capture, from_ns: int | None, to_ns: int | None) -> tuple[list[str], dict[str, int]]:
    info = cap.header.meta.get("exchange_info") if isinstance(cap.header.meta, dict) else None
    frames = (r.frames[0] for r in _until_damage(cap.iter_records(from_ns, to_ns)) if r.kind == KIND_WS_RAW)
    return replay_symbols(cap.header.symbols, frames), discovery.demo_flags(info) if isinstance(info, dict) else {}


def _until_damage(recs: Iterator[Record]) -> Iterator[Record]:
    """The records before any damage (which the replay itself reports when it gets there)."""
    try:
        yield from recs
    except DecodeError:
        return


def run(cfg: AegisConfig, stop: service.StopFlag) -> int:
    rd = service.ensure_run_dir(service.run_dir(cfg))
    service.mark_starting(rd, NAME)
    ep = service.endpoints(rd, cfg)
    started = time.monotonic()
    pub = bus.Publisher.bind_pub(NAME, ep.feed_pub)
    ring = _attach(service.ring_path(cfg), stop)
    if ring is None:
        pub.close()
        return 0
    r = cfg.replay
    from_ns = r.from_ms * 1_000_000 if r.from_ms else None
    to_ns = r.to_ms * 1_000_000 if r.to_ms else None
    progress = Progress(file=r.file)
    cap: Capture | None = None
    feed: Feed | None = None
    try:
        cap = open_capture(r.file)
        progress.records_total = cap.records
        symbols, flags = _symbols_and_flags(cap, from_ns, to_ns)
    except (OSError, DecodeError) as exc:
        progress.error, progress.done = f"cannot read {r.file}: {exc}", True
        progress.error_offset = getattr(exc, "offset", None)
        log.error("feed.replay_unreadable", file=r.file, error=str(exc))
        symbols, flags = [], {}
    feed = Feed(cfg, ring, symbols, flags, lane=False)  # batches go through the staging writer
    last_beat = 0.0

    def snapshot() -> dict[str, Any]:
        return {"service": NAME, "pid": os.getpid(), "mode": "replay", "ticks_received": feed.written,
                "frames_received": feed.received, "ticks_written": feed.written,
                "ticks_rejected": sum(feed.rejected.values()), "rejected": dict(feed.rejected),
                "duplicates": sum(feed.duplicates.values()), "gaps": feed.gaps,
                "gap_ids_missed": feed.gap_ids_missed, "accepted": dict(feed.accepted),
                "symbols": len(symbols), "source": "replay", "replay": progress.doc()}

    def tick() -> None:
        nonlocal last_beat
        now = time.monotonic()
        if now - last_beat < STATS_INTERVAL_S:
            return
        last_beat = now
        pub.publish(wire.Heartbeat(service=NAME, pid=os.getpid(), uptime_s=now - started,
                                   state=wire.ServiceState.RUNNING, counters=feed.counters()))
        state = wire.FeedState.REPLAY_DONE if progress.done else wire.FeedState.REPLAYING
        pub.publish(wire.FeedStatus(state=state, connections=0, symbols=len(symbols),
                                    message=f"replay {r.file}",
                                    detail={"frames": float(progress.frames), "ticks": float(progress.ticks)}))
        service.write_json_atomic(service.stats_path(rd, NAME), snapshot())

    try:
        service.mark_ready(rd, NAME)
        log.info("feed.replay_started", file=r.file, symbols=len(symbols), records=progress.records_total,
                 speed=r.speed, chunk=r.chunk, chunk_ms=r.chunk_ms)
        if cap is not None and not progress.done:
            rp = Replayer(cfg, ring, feed, progress, stop.is_set, tick)
            rp.play(cap.iter_records(from_ns, to_ns))
            log.info("feed.replay_done", **{k: v for k, v in progress.doc().items() if k != "file"})
        last_beat = 0.0
        tick()
        while not stop.is_set():  # done: stay up (the supervisor must not replay it again)
            stop.sleep(STATS_INTERVAL_S)
            tick()
    finally:
        if cap is not None:
            cap.close()
        service.write_json_atomic(service.stats_path(rd, NAME), snapshot())
        pub.close()
        ring.close()
        zmqutil.term()
    return 0


__all__ = ["Chunker", "StagingWriter", "Replayer", "Progress", "bucket", "frame_symbol",
           "pace_delay_s", "replay_symbols", "run"]
