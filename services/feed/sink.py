"""The feed's sink: decoded, validated, sequenced frames into the ring (a thin shell over the
pure codec). Live frames come from the WebSocket connections (``services.feed.__main__``);
a replay's from a capture file (``services.feed.replay_source``)."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any, Callable

import structlog

from common.config import AegisConfig
from common.errors import RingError
from common.log import RateLimiter
from common.records import Flag, Kind
from common.ring import Ring, RingWriter
from services.feed import codec, sequencer
from services.feed import firewall as fw

try:  # the feed's C fast lane (services/feed/_feedlane.c), built into the one C extension
    from common._ringc import FeedLane
except ImportError:  # not built: every frame goes through the Python codec
    FeedLane = None

log = structlog.get_logger(__name__)
GAP_LOG = 100  # most recent gaps kept in the stats file

_TICK, _EVENT, _DUP, _REJ = codec.TICK, codec.EVENT, codec.DUPLICATE, codec.REJECTED
_decode = codec.decode
_sequence = sequencer.sequence


def make_lane(writer: object, symbol_ids: dict[str, int], seq: sequencer.SeqState,
              extra_flags: list[int], past_ms: int, future_ms: int) -> Any:
    """The C fast lane for in-order ``trade`` / ``bookTicker`` frames
    (``services/feed/_feedlane.c``, ``FeedLane``), sharing the feed's symbol table, sequence
    state and flags; None where the C extension was not built or ``writer`` is not a ring
    writer with the C publisher."""
    pub = writer.c_publisher if type(writer) is RingWriter else None
    if FeedLane is None or pub is None:
        return None
    return FeedLane(pub, symbol_ids, seq, extra_flags, past_ms, future_ms,
                    fw.MIN_EVENT_MS, fw.MAX_EVENT_MS, fw.MAX_FRAME_BYTES, fw.MAX_PRICE,
                    fw.MAX_QTY, int(Kind.TRADE), int(Kind.BOOK), int(Flag.BUYER_IS_MAKER),
                    int(Flag.NON_MARKET), RingError)


class Feed:
    """The mutable shell state of one feed process (decoding and sequencing are pure).

    It is the connections' sink: ``on_frame`` for live frames, and ``peek`` / ``delivered`` /
    ``release`` for the frames a rollover holds back until the old connection caught up.

    ``lane``: in-order ``trade`` and ``bookTicker`` frames in Binance's exact layout go through
    the C fast lane (``make_lane``; ``feed.fast_lane``), everything else, and everything the
    lane declines, through the Python codec; both give the same records, counts and state
    (tests/fuzz/test_feed_lane.py). Replacing ``writer`` (a replay's staging writer) turns
    the lane off: it writes to the ring directly.
    """

    def __init__(self, cfg: AegisConfig, ring: Ring, symbols: list[str],
                 demo_flags: dict[str, int] | None = None, *, lane: bool = True) -> None:
        self.cfg = cfg
        self.ring = ring
        self.symbol_ids = {s: ring.register_symbol(s) for s in symbols}
        # symbol id -> flag bits OR-ed into every record (SYNTHETIC / DERIVED demo data)
        self.extra_flags = [0] * (max(self.symbol_ids.values(), default=-1) + 1)
        for sym, bits in (demo_flags or {}).items():
            if sym in self.symbol_ids:
                self.extra_flags[self.symbol_ids[sym]] = bits
        self.past_ms = fw.PAST_TOLERANCE_MS
        self.future_ms = fw.FUTURE_TOLERANCE_MS
        self.sequencer = sequencer.Sequencer(self.past_ms)  # the one home of stream order
        self.seq: sequencer.SeqState = self.sequencer.state  # shared with the C lane
        self.received = 0
        self._written = 0  # by the Python path; ``written`` adds the lane's
        self.rejected: Counter[str] = Counter()
        self._accepted: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.gaps = 0
        self.gap_ids_missed = 0
        self.gaps_by_stream: Counter[str] = Counter()
        self.gap_log: deque[dict[str, Any]] = deque(maxlen=GAP_LOG)
        self.limiter = RateLimiter(60.0)
        # raw frames out as received (``feed.publish_raw``: what ``aegis capture --raw`` records)
        self.raw_out: Callable[[bytes], None] | None = None
        self.lane: Any = None
        self._take: Callable[[bytes, int], int] | None = None
        self._writer: Any = ring.writer()
        if lane and cfg.feed.fast_lane:
            self.lane = make_lane(self._writer, self.symbol_ids, self.seq, self.extra_flags,
                                  self.past_ms, self.future_ms)
            self._take = self.lane.take if self.lane is not None else None

    @property
    def writer(self) -> Any:
        return self._writer

    @writer.setter
    def writer(self, w: Any) -> None:
        self._writer = w
        self.lane = self._take = None  # the lane writes to the ring itself, never to a stand-in

    @property
    def sequence_resets(self) -> int:
        """Restarted id counters seen (``sequencer.id_counter_reset``)."""
        return self.sequencer.resets

    @property
    def written(self) -> int:
        """Ring records written by this feed (Python path and lane)."""
        if self.lane is None:
            return self._written
        trades, books = self.lane.counts()
        return self._written + trades + books

    @property
    def accepted(self) -> Counter[str]:
        """Accepted frames by event (a copy; Python path and lane)."""
        out = Counter(self._accepted)
        if self.lane is not None:
            trades, books = self.lane.counts()
            if trades:
                out["trade"] += trades
            if books:
                out["bookTicker"] += books
        return out

    def add_symbols(self, symbols: list[str], demo_flags: dict[str, int] | None = None) -> list[str]:
        """Stream more symbols (a re-discovery): register each new one in the ring's symbol
        table; returns those that were new."""
        added = []
        for s in symbols:
            if s in self.symbol_ids:
                continue
            sid = self.ring.register_symbol(s)
            self.symbol_ids[s] = sid
            self.extra_flags.extend([0] * (sid + 1 - len(self.extra_flags)))
            self.extra_flags[sid] = (demo_flags or {}).get(s, 0)
            added.append(s)
        return added

    # ------------------------------------------------------------------ sink
    def on_frame(self, raw: bytes, recv_ns: int) -> bool:
        self.received += 1
        if self.raw_out is not None:
            self.raw_out(raw)
        take = self._take
        if take is not None and take(raw, recv_ns):
            return True
        res = _decode(raw, recv_ns, self.symbol_ids, self.past_ms, self.future_ms)
        if res.status == _TICK:  # the hot path, inlined: an in-order tick goes straight to the ring
            out = _sequence(self.seq, res, False, self.past_ms)
            if out.status == _TICK and out.gap is None:
                t = out.tick
                self.writer.publish(t.symbol_id, t.kind, t.flags | self.extra_flags[t.symbol_id],
                                    t.recv_ns, t.event_ms, t.id, t.price, t.qty, t.aux, t.aux_qty)
                self._written += 1
                self._accepted[out.event] += 1
                return True
            return self._act(self._settle(res, out), raw)
        if res.status == _EVENT:
            res = self._sequence(res)
        return self._act(res, raw)

    def peek(self, raw: bytes, recv_ns: int) -> tuple[codec.Result, bytes]:
        self.received += 1
        if self.raw_out is not None:
            self.raw_out(raw)
        return _decode(raw, recv_ns, self.symbol_ids, self.past_ms, self.future_ms), raw

    def delivered(self, peeked: tuple[codec.Result, bytes]) -> bool | None:
        return sequencer.delivered(self.seq, peeked[0])

    def release(self, peeked: tuple[codec.Result, bytes]) -> bool:
        res, raw = peeked
        if res.status <= _EVENT:
            res = self._sequence(res)
        return self._act(res, raw)

    # ------------------------------------------------------------------ core steps
    def _sequence(self, res: codec.Result) -> codec.Result:
        return self._settle(res, _sequence(self.seq, res, False, self.past_ms))

    def _settle(self, res: codec.Result, out: codec.Result) -> codec.Result:
        """The sequencer's rules after id order (counter resets, kline dedupe), logged here."""
        seq = self.sequencer
        before = seq.resets
        out = seq.settle(res, out)
        if seq.resets != before and seq.last_reset is not None:
            r = seq.last_reset
            log.warning("feed.sequence_reset", symbol=r.symbol, stream=r.stream,
                        last_id=r.last_id, got=r.got)
        return out

    def _act(self, res: codec.Result, raw: bytes) -> bool:
        status = res.status
        wrote = False
        if status == _TICK:
            t = res.tick
            self.writer.publish(t.symbol_id, t.kind, t.flags | self.extra_flags[t.symbol_id],
                                t.recv_ns, t.event_ms, t.id, t.price, t.qty, t.aux, t.aux_qty)
            self._written += 1
            self._accepted[res.event] += 1
            wrote = True
        elif status == _EVENT:
            self._accepted[res.event] += 1
        elif status == _DUP:
            self.duplicates[res.event] += 1
        elif status == _REJ:
            self.rejected[res.reason] += 1
            if self.limiter.allow(res.reason, time.monotonic()):
                log.warning("feed.tick_rejected", reason=res.reason, symbol=res.symbol,
                            total=self.rejected[res.reason], sample=bytes(raw[:120]))
        if res.gap is not None:
            self._gap(res.gap)
        return wrote

    def _gap(self, gap: codec.Gap) -> None:
        self.gaps += 1
        self.gaps_by_stream[gap.stream] += 1
        if gap.stream in ("trade", "aggTrade"):  # ids are consecutive: the difference is exact
            self.gap_ids_missed += gap.got - gap.expected
        self.gap_log.append({"symbol": gap.symbol, "stream": gap.stream, "expected": gap.expected,
                             "got": gap.got, "time_ms": time.time_ns() // 1_000_000})
        if self.limiter.allow(f"gap:{gap.stream}", time.monotonic()):
            log.warning("feed.gap", symbol=gap.symbol, stream=gap.stream, expected=gap.expected,
                        got=gap.got, total=self.gaps)

    def counters(self) -> dict[str, float]:
        return {"frames_received": self.received, "ticks_written": self.written,
                "ticks_rejected": sum(self.rejected.values()), "ring_cursor": self.writer.cursor,
                "gaps": self.gaps, "duplicates": sum(self.duplicates.values())}
