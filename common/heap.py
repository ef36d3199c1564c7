"""The garbage collector kept off the tick path (issue 17): the start-up heap frozen, and every
collection's pause measured.

Why. CPython's cyclic garbage collector stops every thread of the process while it runs. A
full collection (generation 2) walks every object the collector tracks: in a started brain
about 280,000 (numba, ccxt, numpy, the strategy's tables, the config), which took 96 to 218 ms
on this project's 2-core machine (``python -m bench.gc_pause``). CPython starts one whenever
enough objects have survived into the oldest generation, wherever the process happens to be:
in the middle of a burst of ticks, or between a stop's tick and its exit order.

Nearly all of those objects are made at start-up and live as long as the process (modules,
compiled kernels, clients), so walking them again finds nothing to free. ``gc.freeze()`` moves
every object the collector tracks into a "permanent generation" that collections skip: a full
collection then walks only what was made since (0.1 ms in the same measurement). Nothing else
changes: the collector still runs on CPython's own schedule and collects the cycles made later;
a frozen object is still freed by reference counting when the last reference to it goes. Only
a reference cycle among frozen objects would never be collected, which is why the young
generations (the start-up's recent garbage) are collected just before the freeze (about
0.3 ms). What the oldest generation held at that moment stays, garbage or not: a bounded,
one-time amount.

``GcPauses`` times each collection (a ``gc.callbacks`` hook: two clock reads per collection),
so that a service's stats say how long the collector held the process: per generation, the
number of collections, the longest pause and the total.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable


def freeze() -> dict[str, int]:
    """The young generations collected, then every tracked object frozen (``gc.freeze``).
    Returns how many objects are frozen in all. (Counting them walks the whole frozen list,
    about 10 ms for a started brain: done here once, never in a heartbeat.)"""
    gc.collect(1)
    gc.freeze()
    return {"gc_frozen": gc.get_freeze_count()}


class GcPauses:
    """Every collection of this process timed, from ``install()`` until ``close()``."""

    def __init__(self, clock_ns: Callable[[], int] = time.perf_counter_ns) -> None:
        self.clock_ns = clock_ns
        self.runs = [0, 0, 0]
        self.max_ns = [0, 0, 0]
        self.total_ns = [0, 0, 0]
        self._started = 0
        self._installed = False
        self.frozen = 0  # objects frozen at start-up (``freeze``), for the stats

    def install(self) -> GcPauses:
        if not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True
        return self

    def close(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_gc)
            self._installed = False

    def freeze(self) -> dict[str, int]:
        """``freeze()``, its count kept for the snapshots (``frozen``)."""
        out = freeze()
        self.frozen = out["gc_frozen"]
        return out

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = self.clock_ns()
            return
        if not self._started:  # installed during a collection: its start was not seen
            return
        took = self.clock_ns() - self._started
        self._started = 0
        g = info.get("generation", 2)
        g = g if 0 <= g <= 2 else 2
        self.runs[g] += 1
        self.total_ns[g] += took
        if took > self.max_ns[g]:
            self.max_ns[g] = took

    def snapshot(self) -> dict[str, Any]:
        """Per generation: collections, the longest and the total pause (ms); and the number
        of objects frozen at start-up (``frozen``, counted once by ``freeze``:
        ``gc.get_freeze_count`` walks every frozen object, far too slow for a heartbeat)."""
        return {"frozen": self.frozen,
                **{f"gen{g}": {"runs": self.runs[g], "max_ms": round(self.max_ns[g] / 1e6, 3),
                               "total_ms": round(self.total_ns[g] / 1e6, 3)} for g in range(3)}}
