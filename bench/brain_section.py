"""Section 3: the brain's core at 300 symbols, in one process pinned to one core.

- ticks/s through ``engine.process_batch`` (latency histogram, order check, conflation,
  1 m + 15 m candles), at the production read batch (4096) and at the small batches a
  brain that keeps up actually sees (16, 256);
- the cost of a candle close inside the candle kernel (µs per closed candle);
- the analysis at each candle close: one SMC ``update`` per symbol on real 1 m candles,
  per symbol (µs) and for the burst when all 300 symbols close the same minute (ms), which
  is what stalls the ring reader once a minute.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import bench_brain_quick as bq
from bench.harness import Children, log, producer_cpu, summarize
from services.brain import candles, engine

N_SYMBOLS = 300
BATCHES = (4096, 256, 16)
SMC_CANDLES = Path(__file__).resolve().parents[1] / "services" / "exchange_sim" / "data" / "BTCUSDT_1m_2024-12.csv"


def _records(n: int) -> np.ndarray:
    recs = bq.synthetic_records(n)
    recs["recv_ns"] = np.arange(n, dtype=np.int64) * 1_000  # 1 µs apart: latencies stay realistic
    return recs


def _through(recs: np.ndarray, batch: int) -> float:
    """Seconds to push every record through process_batch in batches of ``batch``."""
    core = engine.new_core(base_interval_ms=60_000, higher_intervals_ms=(900_000,), batch=4096)
    engine.process_batch(core, recs[:batch], batch, 0)  # warm
    core = engine.new_core(base_interval_ms=60_000, higher_intervals_ms=(900_000,), batch=4096)
    recv = recs["recv_ns"]
    n = len(recs)
    pb, reset = engine.process_batch, candles.reset_output
    t = time.perf_counter()
    for j in range(0, n - batch + 1, batch):
        if pb(core, recs[j:j + batch], batch, int(recv[j + batch - 1]) + 20_000):
            reset(core.candles)
    return time.perf_counter() - t


def _smc(repeats: int, quick: bool) -> dict[str, Any] | None:
    """µs per SMC update per symbol, and the all-symbols burst, on real 1 m candles."""
    try:
        from services.brain import smc
        from services.brain.smc_cli import read_candles
    except ImportError as exc:
        return {"unavailable": f"services.brain.smc: {exc}"}
    if SMC_CANDLES.exists():
        c = read_candles(SMC_CANDLES)
        source = SMC_CANDLES.name
    else:  # a seeded random walk stands in
        rng = np.random.default_rng(7)
        n = 2_000
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        c = {"time_ms": (1_733_011_200_000 + 60_000 * np.arange(n)).tolist(), "open": close.tolist(),
             "high": (close * 1.001).tolist(), "low": (close * 0.999).tolist(),
             "close": close.tolist(), "volume": [1.0] * n}
        source = "random walk"
    warm_bars = 100 if quick else 300
    bursts = 10 if quick else 60
    cols = [c[k] for k in ("time_ms", "open", "high", "low", "close", "volume")]
    out: dict[str, Any] = {"source": source, "history_bars": warm_bars, "bursts": bursts}
    # the compiled update the package runs, then the pure-Python reference it replaced
    for prefix, new, upd in (("", smc.new_state, smc.update),
                             ("reference_", smc.engine.new_state, smc.engine.update)):
        states = [new() for _ in range(N_SYMBOLS)]
        for i in range(warm_bars):  # every symbol gets the same history: a realistic state size
            row = [col[i] for col in cols]
            for st in states:
                upd(st, *row)
        per_symbol = np.empty(bursts * N_SYMBOLS, np.int64)
        burst_ns = np.empty(bursts, np.int64)
        clock = time.perf_counter_ns
        k = 0
        for b in range(bursts):
            row = [col[warm_bars + b] for col in cols]
            t_burst = clock()
            for st in states:
                t0 = clock()
                upd(st, *row)
                per_symbol[k] = clock() - t0
                k += 1
            burst_ns[b] = clock() - t_burst
        us = per_symbol / 1e3
        out[f"{prefix}update_us"] = {"mean": float(us.mean()), "p50": float(np.percentile(us, 50)),
                                     "p99": float(np.percentile(us, 99)), "max": float(us.max())}
        out[f"{prefix}burst_300_ms"] = summarize((burst_ns / 1e6).tolist())
    out["speedup_p50"] = out["reference_update_us"]["p50"] / out["update_us"]["p50"]
    return out


def _per_call_ns(fn, calls: int) -> float:
    fn(100)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter_ns()
        fn(calls)
        best = min(best, (time.perf_counter_ns() - t) / calls)
    return best


def per_call_overhead(recs: np.ndarray, calls: int) -> dict[str, float]:
    """ns per call of process_batch and of each kernel it calls, for a batch of 8 records
    (what a brain that keeps up reads at 100k ticks/s): nearly all of it is numba's argument
    handling (type resolution, then unboxing every array of the NamedTuple states), which
    is paid per call, not per record. ``*_entry_point``: the same kernel through its
    compiled overload, which skips the type resolution."""
    from services.brain import conflate
    core = engine.new_core(base_interval_ms=60_000, higher_intervals_ms=(900_000,), batch=4096)
    b = recs[:8]
    engine.process_batch(core, b, 8, 1)
    bound = engine.bind(core, b)  # what the brain calls: the fused kernel's entry point
    conflate.update_conflated(core.conflate, b, 0)  # compile the parts on their own too (they
    candles.update_candles(core.candles, b, 0)  # are inlined into the fused kernel otherwise)
    lat = core.scratch_ns[:8]
    ep_c = candles.update_candles.overloads[candles.update_candles.signatures[0]].entry_point
    ep_f = conflate.update_conflated.overloads[conflate.update_conflated.signatures[0]].entry_point

    def loop(f):
        def run(k):
            for _ in range(k):
                f()
        return run

    return {
        "process_batch": _per_call_ns(loop(lambda: engine.process_batch(core, b, 8, 100_000)), calls),
        "process_bound_entry_point": _per_call_ns(loop(lambda: bound(8, 100_000)), calls),
        "subtract_recv_ns": _per_call_ns(
            loop(lambda: np.subtract(100_000, b["recv_ns"][:8], out=lat)), calls),
        "latency_record_many": _per_call_ns(loop(lambda: core.latency.record_many(lat, 8)), calls),
        "check_order": _per_call_ns(
            loop(lambda: engine.check_order(core.last_id, core.order_stats, b, 8)), calls),
        "update_conflated": _per_call_ns(loop(lambda: conflate.update_conflated(core.conflate, b, 8)), calls),
        "update_candles": _per_call_ns(loop(lambda: candles.update_candles(core.candles, b, 8)), calls),
        "update_conflated_entry_point": _per_call_ns(loop(lambda: ep_f(core.conflate, b, 8)), calls),
        "update_candles_entry_point": _per_call_ns(loop(lambda: ep_c(core.candles, b, 8)), calls),
    }


def _measure(repeats: int, quick: bool) -> dict[str, Any]:
    n = 400_000 if quick else 2_000_000
    recs = _records(n)
    rates: dict[int, list[float]] = {b: [] for b in BATCHES}
    for _ in range(repeats):
        for b in BATCHES:
            m = min(n, b * 4_000) // b * b  # small batches: fewer records, same call count scale
            rates[b].append(m / _through(recs[:m], b))
    close = [bq.close_cost_us() for _ in range(repeats)]
    return {"rates": {str(b): v for b, v in rates.items()}, "candle_close_us": close,
            "smc": _smc(repeats, quick), "records": n,
            "per_call_ns": per_call_overhead(recs, 2_000 if quick else 20_000)}


def run(*, quick: bool, repeats: int) -> dict[str, Any]:
    with Children() as ch:
        r = ch.start("brain", _measure, repeats, quick, cpu=producer_cpu()).result(600)
    tput = {b: {"ticks_per_s": summarize(v), "batch": int(b)} for b, v in r["rates"].items()}
    for b, v in tput.items():
        s = v["ticks_per_s"]
        log(f"  brain process_batch batch {b:>5}: {s['median'] / 1e6:7.2f} M ticks/s "
            f"({1e9 / s['median']:.0f} ns/tick, spread {s['spread_pct']:.0f} %)")
    smc = r["smc"] or {}
    if "update_us" in smc:
        log(f"  brain SMC update per symbol: p50 {smc['update_us']['p50']:.1f} us  p99 "
            f"{smc['update_us']['p99']:.1f} us; 300-symbol close burst "
            f"{smc['burst_300_ms']['median']:.1f} ms (pure-Python reference: p50 "
            f"{smc['reference_update_us']['p50']:.1f} us, {smc['speedup_p50']:.1f}x slower)")
    for k, v in r["per_call_ns"].items():
        log(f"  brain per call (8 records) {k:30s} {v / 1e3:7.2f} us")
    return {"process_batch": tput, "candle_close_us": summarize(r["candle_close_us"]),
            "per_call_ns_batch_8": r["per_call_ns"],
            "smc_at_close": smc, "config": {"symbols": N_SYMBOLS, "records": r["records"],
                                            "mix": "45 % trades, 50 % book, 5 % mark (synthetic)"}}


def headline(sec: dict[str, Any]) -> dict[str, float]:
    return {"ticks_per_s_300_symbols": sec["process_batch"]["4096"]["ticks_per_s"]["median"]}
