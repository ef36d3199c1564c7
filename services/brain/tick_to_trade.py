"""Tick-to-trade: from the feed's receipt of the tick behind a decision to the order's bytes
on the exchange socket (issue 17, "Performance").

Which tick (the brain's reader keeps batches, not single ticks, and says so here):

- exit: the first trade tick of the held symbol in the ring batch whose range crossed the
  stop or target (``Brain.watch_prices``). That is the touching tick or an earlier one of the
  same batch, so the figure never flatters; with one tick per batch it is the touching tick.
- entry: the first record of the ring batch in which the candle closed (``Brain.poll``): the
  closing tick or an earlier one; the analysis of the candle is inside the figure. Candles
  closed by the quiet-symbol timer have no triggering tick and give no sample.

Only a first attempt is timed (a retry after a timeout has no triggering tick). The receive
time is the ring record's ``recv_ns`` (``time.time_ns`` at the feed, CLOCK_REALTIME); the wire
time is ``venue.wirestamp`` on the same clock. The stages of each timed order are kept too
(``STAGES``: decision, journal round trip, dispatcher hop, send = governor + signing + write),
so a slow figure says where its time went.

Recording happens on the dispatcher thread after the broker call returned (off the critical
path); the histograms are ``common.histogram`` arrays, one per (kind, transport), guarded by one
lock (dispatcher threads record concurrently).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Iterator

from common.histogram import LatencyHistogram
from venue import wirestamp

KINDS = ("exit", "entry")
TRANSPORTS = ("ws", "rest")
# per order: tick receipt -> decision (ring read, candles, analysis, trader) -> after the
# intent log's write (or, without it, the synchronous journal) -> the sending thread starts
# (a dispatcher worker; for an exit sent by the deciding thread, at once) -> bytes on the socket
STAGES = ("decide", "journal", "hop", "send")
BUCKETS_US = (10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 100_000, 1_000_000)
LE_PREFIX = "ttt_le_us:"  # heartbeat counters: ttt_le_us:<kind>:<transport>:<bound>
MAX_PENDING = 4096  # marks never dispatched (an order cancelled before it was sent) are dropped beyond this


class TickToTrade:
    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.clock_ns = clock_ns
        self.trigger_ns = 0  # set by the brain around a decision: the triggering tick's recv_ns
        self.hist = {(k, t): LatencyHistogram() for k in KINDS for t in TRANSPORTS}
        self.stages = {(k, s): LatencyHistogram() for k in KINDS for s in STAGES}  # per kind: an
        # entry's decision holds the candle's analysis, an exit's does not
        self._pending: dict[str, list[Any]] = {}  # cid -> [kind, recv_ns, decided_ns, journaled_ns, dispatched_ns]
        self._lock = threading.Lock()
        self.unstamped = 0  # timed submits whose request never reached a socket (refused before sending)

    # ---------------------------------------------------------------- the decision (main thread)
    def decided(self, cid: str, reduce_only: bool) -> None:
        """An order was decided now; remember its triggering tick if the brain set one."""
        if self.trigger_ns and len(self._pending) < MAX_PENDING:
            self._pending[cid] = ["exit" if reduce_only else "entry", self.trigger_ns, self.clock_ns(), 0, 0]

    def journaled(self, cid: str) -> None:
        p = self._pending.get(cid)
        if p is not None:
            p[3] = self.clock_ns()

    def wrap(self, cid: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The dispatcher job for ``cid``'s submit: timed if the order was marked, else ``fn``."""
        p = self._pending.pop(cid, None)
        if p is None:
            return fn
        p[4] = self.clock_ns()

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = self.clock_ns()
            wirestamp.arm()
            try:
                return fn(*args, **kwargs)
            finally:
                wire_ns, transport = wirestamp.disarm()
                self.record(p, started, wire_ns, transport)

        return timed

    @contextlib.contextmanager
    def inline(self, cid: str) -> Iterator[None]:
        """Time ``cid``'s send made on the calling thread (an exit sent by the deciding thread:
        no dispatcher hop). If no request left, the mark stays for the ordinary path's ``wrap``."""
        p = self._pending.pop(cid, None)
        if p is None:
            yield
            return
        started = self.clock_ns()
        p[4] = started
        wirestamp.arm()
        try:
            yield
        finally:
            wire_ns, transport = wirestamp.disarm()
            if wire_ns:
                self.record(p, started, wire_ns, transport)
            else:
                self._pending[cid] = p

    def forget(self, cid: str) -> None:
        self._pending.pop(cid, None)

    # ---------------------------------------------------------------- recording (dispatcher thread)
    def record(self, p: list[Any], started_ns: int, wire_ns: int, transport: str) -> None:
        kind, recv_ns, decided_ns, journaled_ns, dispatched_ns = p
        if not wire_ns or transport not in TRANSPORTS:
            with self._lock:
                self.unstamped += 1
            return
        journaled_ns = journaled_ns or decided_ns
        with self._lock:
            self.hist[(kind, transport)].record(wire_ns - recv_ns)
            self.stages[(kind, "decide")].record(decided_ns - recv_ns)
            self.stages[(kind, "journal")].record(journaled_ns - decided_ns)
            self.stages[(kind, "hop")].record(started_ns - dispatched_ns)
            self.stages[(kind, "send")].record(wire_ns - started_ns)

    # ---------------------------------------------------------------- views
    def snapshot(self) -> dict[str, Any]:
        """Per kind and transport: count, p50/p99 (us) and the mergeable histogram; the stages."""
        with self._lock:
            out: dict[str, Any] = {"unstamped": self.unstamped}
            for (k, t), h in self.hist.items():
                if h.count:
                    out.setdefault(k, {})[t] = {"count": h.count, "p50_us": h.percentile(50) / 1e3,
                                                "p99_us": h.percentile(99) / 1e3, "hist": h.to_dict()}
            stages: dict[str, dict[str, Any]] = {}
            for (k, s), h in self.stages.items():
                if h.count:
                    stages.setdefault(k, {})[s] = {"count": h.count, "p50": h.percentile(50) / 1e3,
                                                   "p99": h.percentile(99) / 1e3}
            out["stages_us"] = stages  # {kind: {stage: {count, p50, p99}}}
        return out

    def counters(self) -> dict[str, float]:
        """Heartbeat form: cumulative buckets per kind and transport (Prometheus' shape)."""
        out: dict[str, float] = {}
        with self._lock:
            for (k, t), h in self.hist.items():
                if not h.count:
                    continue
                out[f"ttt_count:{k}:{t}"] = h.count
                out[f"ttt_sum_us:{k}:{t}"] = h.total / 1e3
                for b, n in zip(BUCKETS_US, h.count_le_many([int(b * 1000) for b in BUCKETS_US])):
                    out[f"{LE_PREFIX}{k}:{t}:{b:g}"] = n
        return out

