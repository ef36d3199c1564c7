"""Quick SMC benchmark: microseconds per candle update per symbol (the brain's path: the
compiled update, its compiled step alone (``kernel_step``: the rest of ``update`` is building
the label records), and the pure-Python reference ``smc/engine.py`` on the same candles for
the ratio), rows/s through the batch CLI path, and the SMC strategy's whole per-candle cost
(``strategy.on_candle`` on 1m candles: SMC, HTF, ATRs, zones, model; issue #18). Real candles: the EURUSD 15 m fixture (tests/data/smc) and
BTCUSDT 15 m (services/exchange_sim/data); a seeded random walk stands in if one is missing.
Prints numbers and returns them as a dict (``run()``) for the bench harness; it asserts nothing.

    .venv/bin/python -m bench.bench_smc_quick
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from services.brain.smc import SmcConfig, engine, new_state, reference_columns, run_batch, update
from services.brain.smc import kernel
from services.brain.smc_cli import read_candles, write_features

REPO = Path(__file__).resolve().parents[1]
FILES = {"EURUSD_15m": REPO / "tests" / "data" / "smc" / "EURUSD" / "EURUSD_15M.csv",
         "BTCUSDT_15m": REPO / "services" / "exchange_sim" / "data" / "BTCUSDT_15m_2024.csv"}
STRATEGY_FILE = REPO / "services" / "exchange_sim" / "data" / "BTCUSDT_1m_2024-12.csv"
STRATEGY_BARS = 10_080  # the first December week of 1m candles, as in bench.backtest_idle
STRATEGY_REPEATS = 3  # the best of (a fresh symbol state each time)
N_SYMBOLS = 10  # states advanced round-robin, as the brain does on a candle close
STREAM_BARS = 10_000  # per symbol, for the per-update timing (the batch path takes all)


def _candles(path: Path) -> dict[str, list]:
    if path.exists():
        return read_candles(path)
    rng = np.random.default_rng(7)
    n = 24_000
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 2e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0, 1e-3, (2, n))) * close
    return {"time_ms": (1_704_067_200_000 + 900_000 * np.arange(n)).tolist(),
            "open": open_.tolist(), "high": (np.maximum(open_, close) + wick[0]).tolist(),
            "low": (np.minimum(open_, close) - wick[1]).tolist(), "close": close.tolist(),
            "volume": rng.integers(1, 100, n).astype(float).tolist()}


def _stream_us(c: dict[str, list], config: SmcConfig, new=new_state,
               upd=update) -> tuple[float, float, float, float]:
    """Mean, p50 and p99 microseconds of one ``update`` call (wall clock per call), and the
    p50 of its CPU time (the thread's CPU clock around each call, less the clock's own cost
    measured the same way around nothing), N_SYMBOLS states interleaved."""
    states = [new(config) for _ in range(N_SYMBOLS)]
    t, o, h, lo, cl, v = (c[k][:STREAM_BARS]
                          for k in ("time_ms", "open", "high", "low", "close", "volume"))
    n = len(t)
    samples = np.empty(n * N_SYMBOLS, dtype=np.int64)
    cpu = np.empty(n * N_SYMBOLS, dtype=np.int64)
    k = 0
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for i in range(n):
        for st in states:
            c0 = cpu_clock()
            t0 = clock()
            upd(st, t[i], o[i], h[i], lo[i], cl[i], v[i])
            samples[k] = clock() - t0
            cpu[k] = cpu_clock() - c0
            k += 1
    empty = np.empty(10_000, dtype=np.int64)
    for j in range(len(empty)):
        c0 = cpu_clock()
        t0 = clock()
        empty[j] = clock() - t0
        empty[j] = cpu_clock() - c0
    cpu_p50 = (np.percentile(cpu, 50) - np.percentile(empty, 50)) / 1e3
    us = samples / 1e3
    return float(us.mean()), float(np.percentile(us, 50)), float(np.percentile(us, 99)), float(cpu_p50)


def _step_only(state, time_ms: int, o: float, h: float, low: float, c: float, v: float) -> None:
    """The compiled step of ``update`` alone (growing the state when it asks), no records."""
    step = kernel.step
    r = step(state.ii, state.ff, state.arena, state.ev, time_ms, o, h, low, c, v)
    while r < 0:
        state.grow(r)
        r = step(state.ii, state.ff, state.arena, state.ev, time_ms, o, h, low, c, v)


def _strategy_us(path: Path) -> tuple[float, float, float]:
    """The SMC strategy's ``on_candle`` per 1m candle, one symbol, the cold model: p50 and p99
    microseconds (wall clock per call) and the mean CPU microseconds of the whole pass; the
    best of ``STRATEGY_REPEATS`` fresh passes."""
    from types import SimpleNamespace

    from services.brain import model, strategy

    c = _candles(path)
    rows = [SimpleNamespace(symbol="BTCUSDT", open_ms=int(t), open=o, high=h, low=lo, close=cl, volume=v)
            for t, o, h, lo, cl, v in zip(*(c[k][:STRATEGY_BARS] for k in
                                            ("time_ms", "open", "high", "low", "close", "volume")))]
    ms = model.new_state(model.ModelConfig())
    best = (float("inf"), float("inf"), float("inf"))
    clock = time.perf_counter_ns
    for _ in range(STRATEGY_REPEATS):
        st = strategy.new_symbol_state(strategy.StrategyConfig())
        on_candle = strategy.on_candle
        samples = np.empty(len(rows), dtype=np.int64)
        c0 = time.process_time()
        for i, row in enumerate(rows):
            t0 = clock()
            on_candle(st, row, 60, ms)
            samples[i] = clock() - t0
        cpu = (time.process_time() - c0) / len(rows) * 1e6
        us = samples / 1e3
        best = min(best, (float(np.percentile(us, 50)), float(np.percentile(us, 99)), cpu))
    return best


def _batch_rows_per_s(path: Path, c: dict[str, list], config: SmcConfig) -> tuple[float, float]:
    """Rows/s for run_batch alone and for the whole CLI path (read, run, lay out, write)."""
    n = len(c["time_ms"])
    t0 = time.perf_counter()
    run_batch(c["time_ms"], c["open"], c["high"], c["low"], c["close"], c["volume"], config)
    batch = n / (time.perf_counter() - t0)
    if not path.exists():
        return batch, float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cc = read_candles(path)
        labels, _ = run_batch(cc["time_ms"], cc["open"], cc["high"], cc["low"], cc["close"],
                              cc["volume"], config)
        write_features(Path(tmp) / "out.csv", cc["time_ms"],
                       reference_columns(labels, n, config))
        cli = n / (time.perf_counter() - t0)
    return batch, cli


def run() -> dict[str, float]:
    results: dict[str, float] = {}
    for name, path in FILES.items():
        c = _candles(path)
        for length in (5, 50):
            config = SmcConfig(swing_length=length)  # 3 timeframes, 3 sessions: the default
            for tag, new, upd in (("", new_state, update),
                                  ("_reference", engine.new_state, engine.update)):
                mean, p50, p99, cpu = _stream_us(c, config, new, upd)
                results[f"{name}_L{length}_update{tag}_us_mean"] = mean
                results[f"{name}_L{length}_update{tag}_us_p50"] = p50
                results[f"{name}_L{length}_update{tag}_us_p99"] = p99
                results[f"{name}_L{length}_update{tag}_cpu_us_p50"] = cpu
            mean, p50, p99, cpu = _stream_us(c, config, new_state, _step_only)
            results[f"{name}_L{length}_kernel_step_us_p50"] = p50
            results[f"{name}_L{length}_kernel_step_cpu_us_p50"] = cpu
            results[f"{name}_L{length}_speedup_p50"] = (
                results[f"{name}_L{length}_update_reference_us_p50"]
                / results[f"{name}_L{length}_update_us_p50"])
        batch, cli = _batch_rows_per_s(path, c, SmcConfig(swing_length=5))
        results[f"{name}_L5_run_batch_rows_per_s"] = batch
        results[f"{name}_L5_cli_rows_per_s"] = cli
    p50, p99, cpu = _strategy_us(STRATEGY_FILE)
    results["BTCUSDT_1m_strategy_on_candle_us_p50"] = p50
    results["BTCUSDT_1m_strategy_on_candle_us_p99"] = p99
    results["BTCUSDT_1m_strategy_on_candle_cpu_us_mean"] = cpu
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os
    argparse.ArgumentParser(prog="python -m bench.bench_smc_quick",
                            description=__doc__.split("\n\n")[0]).parse_args(argv)
    print(f"load average at start: {os.getloadavg()}")
    r = run()
    print(f"smc quick bench: {N_SYMBOLS} symbol states x {STREAM_BARS:,} candles, "
          "one update per candle close (compiled, its kernel step alone, then the pure-Python "
          f"reference); batch over whole files; the SMC strategy on {STRATEGY_BARS:,} 1m candles")
    for k, v in r.items():
        print(f"  {k:48s} {v:>14,.1f}")
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
