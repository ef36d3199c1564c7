"""Quick brain benchmark: ticks/s through candles + conflation, and the cost of a candle close.

Synthetic records for 300 symbols (45 % trades, 50 % book tickers, 5 % marks; each symbol
trades every ~1 s of event time, so minutes close as they would live) are built once, then
fed in ring-sized batches. Prints numbers and returns them as a dict (``run()``) for the
bench harness; it asserts nothing.

    .venv/bin/python bench/bench_brain_quick.py
"""

from __future__ import annotations

import time

import numpy as np

from common import histogram as hg
from common.records import Kind, empty
from services.brain import candles as cd
from services.brain import conflate as cf

N_SYMBOLS = 300
N_RECORDS = 2_000_000
BATCH = 1_024  # records per ring read
DRAIN_EVERY_MS = 100  # conflation drain period in event time (10 Hz)
T0_MS = 1_723_161_600_000
TICKS_PER_SYMBOL_S = 2.2  # ~660 records/s over 300 symbols of event time: 50 min of market


def synthetic_records(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    recs = empty(n)
    u = rng.random(n)
    kind = np.where(u < 0.45, Kind.TRADE, np.where(u < 0.95, Kind.BOOK, Kind.MARK))
    recs["kind"] = kind
    recs["symbol_id"] = rng.integers(0, N_SYMBOLS, n)
    recs["event_ms"] = T0_MS + (np.arange(n) * (1000.0 / (TICKS_PER_SYMBOL_S * N_SYMBOLS)))
    px = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    recs["price"] = np.round(px, 2)
    recs["qty"] = np.round(rng.exponential(0.5, n), 3)
    recs["aux"] = recs["price"] + 0.01
    recs["aux_qty"] = 1.0
    recs["id"] = np.arange(n)
    recs["flags"] = (rng.random(n) < 0.5).astype(np.uint8)  # BUYER_IS_MAKER half the time
    return recs


def _feed(recs, candles, conf, drain: bool) -> tuple[float, int]:
    """Seconds to push all records through; number of candles closed."""
    n_closed = 0
    next_drain = T0_MS + DRAIN_EVERY_MS
    t = time.perf_counter()
    for j in range(0, len(recs), BATCH):
        b = recs[j:j + BATCH]
        n = len(b)
        if candles is not None:
            n_closed += cd.update_candles(candles, b, n)
            cd.reset_output(candles)
        if conf is not None:
            cf.update_conflated(conf, b, n)
            if drain and b[n - 1]["event_ms"] >= next_drain:
                cf.drain_dirty(conf)
                next_drain += DRAIN_EVERY_MS
    return time.perf_counter() - t, n_closed


def close_cost_us() -> float:
    """Per-close cost: every trade of a new minute (closes 1 m) minus the same trades in one."""
    n = 200_000
    base = empty(n)
    base["kind"] = Kind.TRADE
    base["symbol_id"] = np.arange(n) % N_SYMBOLS
    base["price"], base["qty"] = 100.0, 1.0
    same = base.copy()
    same["event_ms"] = T0_MS + 1
    closing = base.copy()
    closing["event_ms"] = T0_MS + (np.arange(n) // N_SYMBOLS) * cd.INTERVAL_1M_MS
    times = {}
    for name, recs in (("same", same), ("closing", closing)):
        best = 1e9
        for _ in range(3):
            st = cd.new_state(N_SYMBOLS, cd.DEFAULT_INTERVALS_MS, 4 * BATCH)
            closes = 0
            t = time.perf_counter()
            for j in range(0, n, BATCH):
                closes += cd.update_candles(st, recs[j:j + BATCH], min(BATCH, n - j))
                cd.reset_output(st)
            best = min(best, time.perf_counter() - t)
        times[name] = (best, closes)
    extra = times["closing"][0] - times["same"][0]
    return 1e6 * extra / max(1, times["closing"][1])


def run() -> dict[str, float]:
    recs = synthetic_records(N_RECORDS)
    # warm up (loads the numba cache or compiles)
    _feed(recs[:BATCH * 4], cd.new_state(N_SYMBOLS), cf.new_state(N_SYMBOLS), True)
    results: dict[str, float] = {}
    for label, use_c, use_f in (("candles", True, False), ("conflate", False, True),
                                ("candles+conflate", True, True)):
        best, closed = 1e9, 0
        for _ in range(3):
            c = cd.new_state(N_SYMBOLS, cd.DEFAULT_INTERVALS_MS, 4 * BATCH) if use_c else None
            f = cf.new_state(N_SYMBOLS) if use_f else None
            s, closed = _feed(recs, c, f, True)
            best = min(best, s)
        results[f"{label}_ticks_per_s"] = N_RECORDS / best
        if use_c:
            results[f"{label}_candles_closed"] = closed
    results["candle_close_us"] = close_cost_us()

    lat = np.random.default_rng(2).lognormal(np.log(50_000), 1.0, 1_000_000).astype(np.int64)
    h = hg.LatencyHistogram()
    h.record_many(lat[:10])
    t = time.perf_counter()
    h.record_many(lat)
    results["histogram_ns_per_value"] = 1e9 * (time.perf_counter() - t) / len(lat)
    return results


def main() -> None:
    r = run()
    print(f"brain quick bench: {N_SYMBOLS} symbols, {N_RECORDS:,} records, batches of {BATCH}")
    for k, v in r.items():
        print(f"  {k:34s} {v:>16,.3f}" if isinstance(v, float) else f"  {k:34s} {v:>16,}")


if __name__ == "__main__":
    main()
