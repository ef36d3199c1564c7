"""Prototypes of the production changes the profile points to, so their effect is measured in
the same run as the code they would replace; they exist to size the proposals in
``bench/FINDINGS.md``.

1. ``publish_entry_point``: call ``ring_publish``'s compiled overload directly (applied:
   ``RingWriter.publish`` is now a C call, with this entry point as its fallback where the
   C publisher is not built).
2. ``fused_process_batch``: the brain's ``engine.process_batch`` as one compiled call
   (latencies, histogram, order check, conflation, candles) entered through its compiled
   overload: one argument unboxing per batch instead of five numba calls and a numpy ufunc,
   each resolving the types of NamedTuples of 17 and 21 arrays in Python.
3. Cursor pre-check (applied: ``RingReader.read_batch`` returns 0 on a word comparison when
   the ring is empty).
"""

from __future__ import annotations

from typing import Any, Callable

from numba import njit

from common.histogram import record_many
from common.ring import ring_publish
from services.brain import candles, conflate, engine


def publish_entry_point() -> Callable[..., int]:
    return ring_publish.overloads[ring_publish.signatures[0]].entry_point


@njit(nogil=True)
def _fused(cstate, fstate, counts, last_id, order_stats, scratch, batch, n, now_ns):
    for i in range(n):
        scratch[i] = now_ns - batch[i].recv_ns
    record_many(counts, scratch, n)
    engine.check_order(last_id, order_stats, batch, n)
    conflate.update_conflated(fstate, batch, n)
    return candles.update_candles(cstate, batch, n)


def fused_process_batch(core: engine.BrainCore, batch) -> Callable[[Any, int, int], int]:
    """``process(batch, n, now_ns) -> closed candles``, bound to ``core`` and ``batch``."""
    _fused(core.candles, core.conflate, core.latency.counts, core.last_id, core.order_stats,
           core.scratch_ns, batch, 0, 0)  # compile for these types
    ep = _fused.overloads[_fused.signatures[0]].entry_point
    args = (core.candles, core.conflate, core.latency.counts, core.last_id, core.order_stats,
            core.scratch_ns, batch)

    def process(n: int, now_ns: int) -> int:
        return ep(*args, n, now_ns)

    return process
