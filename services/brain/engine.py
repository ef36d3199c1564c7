"""The brain's core for one batch of ring records: order check, candles, conflation, latency.

All state lives in preallocated arrays (``BrainCore``); ``process_batch`` is the one call the
shell makes per ring read. Nothing here touches sockets, files or clocks: the receive-side
time ``now_ns`` comes in as an argument.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from numba import njit, types

from common.histogram import LatencyHistogram, record_many
from common.records import MAX_SYMBOLS, Kind
from services.brain import candles, conflate

N_KINDS = 8  # Kind values are small integers; one id sequence per (kind, symbol)
ORDERED_KINDS = (int(Kind.TRADE), int(Kind.AGG_TRADE), int(Kind.BOOK))


class BrainCore(NamedTuple):
    candles: candles.CandleState
    conflate: conflate.ConflateState
    latency: LatencyHistogram
    last_id: np.ndarray  # int64[N_KINDS, symbols]: last id seen per stream, for the order check
    order_stats: np.ndarray  # int64[2]: [records checked, out of order]
    scratch_ns: np.ndarray  # int64[batch]: latency values of one batch (no allocation)


def new_core(*, base_interval_ms: int, higher_intervals_ms: tuple[int, ...] = (),
             batch: int = 4096, max_symbols: int = MAX_SYMBOLS) -> BrainCore:
    intervals = (base_interval_ms, *higher_intervals_ms)
    levels = len(intervals)
    return BrainCore(
        candles=candles.new_state(max_symbols, intervals, levels * max(batch, max_symbols)),
        conflate=conflate.new_state(max_symbols),
        latency=LatencyHistogram(),
        last_id=np.full((N_KINDS, max_symbols), -1, np.int64),
        order_stats=np.zeros(2, np.int64),
        scratch_ns=np.zeros(batch, np.int64),
    )


@njit(cache=True, nogil=True)
def check_order(last_id, stats, batch, n):
    """Ids of one stream (trade ids, book update ids) must strictly increase per symbol.

    A violation means the pipeline reordered or duplicated a tick between the exchange and
    here: the end-to-end tests assert this stays 0.
    """
    bad = 0
    for i in range(n):
        k = batch[i].kind
        if k != 1 and k != 2 and k != 3:
            continue
        s = batch[i].symbol_id
        if s >= last_id.shape[1]:
            continue
        rid = batch[i].id
        if rid <= last_id[k, s]:
            bad += 1
        else:
            last_id[k, s] = rid
    stats[0] += n
    stats[1] += bad
    return bad


@njit(cache=True, nogil=True)
def _process(cstate, fstate, counts, last_id, order_stats, scratch, batch, n, now_ns):
    """The whole batch in one compiled call: latencies, order check, conflation, candles."""
    for i in range(n):
        scratch[i] = now_ns - batch[i].recv_ns
    record_many(counts, scratch, n)
    check_order(last_id, order_stats, batch, n)
    conflate.update_conflated(fstate, batch, n)
    return candles.update_candles(cstate, batch, n)


def _args(core: BrainCore, batch: np.ndarray) -> tuple:
    return (core.candles, core.conflate, core.latency.counts, core.last_id, core.order_stats,
            core.scratch_ns, batch)


def process_batch(core: BrainCore, batch: np.ndarray, n: int, now_ns: int) -> int:
    """Fold ``batch[:n]`` into the core. Returns how many closed candles wait in the output."""
    if not 0 <= n <= min(len(batch), len(core.scratch_ns)):
        # the caller's misuse (its n and its own buffers), never data: a bare ValueError
        raise ValueError(f"n={n} outside the batch ({len(batch)}) or the core's scratch ({len(core.scratch_ns)})")
    return int(_process(*_args(core, batch), n, now_ns))


def bind(core: BrainCore, batch: np.ndarray) -> Callable[[int, int], int]:
    """``process(n, now_ns)``: ``process_batch`` for this core and this read buffer, through
    the kernel's compiled entry point. numba's dispatcher resolves the types of every argument
    on every call, NamedTuples of 21 and 17 arrays field by field (11 to 28 us a call here,
    bench/FINDINGS.md section 3); the core and the buffer are fixed for the life of the
    brain, so their types are resolved once, here. The caller keeps ``n`` within the buffer
    (the ring reader never returns more than ``len(batch)``)."""
    if len(batch) > len(core.scratch_ns):
        # the caller's misuse (buffers it allocated), never data: a bare ValueError
        raise ValueError(f"read buffer ({len(batch)}) larger than the core's scratch ({len(core.scratch_ns)})")
    args = _args(core, batch)
    process_batch(core, batch, 0, 0)  # compile or load for these types (a no-op batch)
    key = tuple(_process.typeof_pyval(a) for a in args) + (types.int64, types.int64)
    entry = _process.overloads[key].entry_point

    def process(n: int, now_ns: int) -> int:
        return entry(*args, n, now_ns)

    return process


def rejected(core: BrainCore) -> int:
    """Records the brain's secondary firewall refused: the candle gate (trades) plus the
    conflation gate (which also sees book and mark records, e.g. a crossed book)."""
    return int(core.candles.rejects.sum() + core.conflate.rejects.sum())
