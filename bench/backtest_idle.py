"""Backtest CPU time with idle skipping on and off (``BacktestConfig.skip_idle``), on the
repository's real BTCUSDT 1m bars: the EMA(10)/EMA(30) cross of the ``backtest`` section (its
config: no fees, no slippage, no cooldown; the month), the Donchian example (defaults, the
month) and the SMC strategy (defaults, the first December week). Per run: bars per
CPU-second (``time.process_time``: less inflated than wall time on a busy machine), the polls
skipped, and whether trades.csv and summary.json (without the run time) are identical.

    .venv/bin/python -m bench.backtest_idle

``--profile`` instead: the EMA cross month once under cProfile (skipping on), the functions
with the most cumulative time as a share of the run, and the same month with every bar as
warm-up (``trade_from_ms`` at its end: no trade), the cost of the bar loop alone:

    .venv/bin/python -m bench.backtest_idle --profile [--engine shell] [--strategy smc|donchian]

(``--strategy``: that strategy over its usual range instead of the EMA cross month.)

``--engine fast|shell`` (default fast, ``aegis backtest``'s default) picks the engine of both
modes. ``--engines`` instead: the three runs on both engines, interleaved, the best of
``--repeats`` in bars per CPU-second, and whether both engines wrote identical files:

    .venv/bin/python -m bench.backtest_idle --engines --repeats 3

``--core`` instead: how much of the EMA cross's round trip (entry and exit) is the trader's
pure core (``services.brain.trader*``: rotation, risk checks, sizing, the order state machine,
fills, the trade's close), every call the execution shell makes into it timed, beside the
per-bar floor and what 200,000 bars per CPU-second would leave for a round trip:

    .venv/bin/python -m bench.backtest_idle --core --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.backtest_section import aegis_config, build_catalog, load_bars
from common import log as log_mod

DEC1_MS = 1_733_011_200_000
DAY_MS = 86_400_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backtest_idle")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--profile", action="store_true", help="profile the EMA cross month instead (cProfile)")
    p.add_argument("--engine", choices=("fast", "shell"), default="fast", help="the backtest engine")
    p.add_argument("--engines", action="store_true", help="both engines side by side instead")
    p.add_argument("--strategy", choices=("ema_cross", "donchian", "smc"), default="ema_cross",
                   help="the strategy --profile runs")
    p.add_argument("--core", action="store_true",
                   help="how much of the EMA cross's round trip is the trader's pure core instead")
    args = p.parse_args(argv)
    with log_mod.quieted():  # an info line per order would be measured too
        return _measure(args)


def _measure(args: argparse.Namespace) -> int:
    from common.config import AegisConfig
    from research.backtest import BacktestConfig, new_backtest
    from research.backtest_files import trades_csv

    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        cat = build_catalog(Path(tmp))
        bars = load_bars(cat)
        cases = [("ema_cross", bars["open_time"][0], bars["open_time"][-1] + 60_000, aegis_config()),
                 ("donchian", bars["open_time"][0], bars["open_time"][-1] + 60_000, AegisConfig()),
                 ("smc", DEC1_MS, DEC1_MS + 7 * DAY_MS, AegisConfig())]
        if args.profile:
            _, start, end, aegis = next(c for c in cases if c[0] == args.strategy)
            profile(cat, start, end, engine=args.engine, strategy=args.strategy, aegis=aegis)
            print(f"load average at end: {os.getloadavg()}")
            return 0
        if args.core:
            _, start, end, aegis = cases[0]
            core(cat, start, end, aegis, args.repeats)
            print(f"load average at end: {os.getloadavg()}")
            return 0
        if args.engines:
            engines(cat, cases, args.repeats)
            print(f"load average at end: {os.getloadavg()}")
            return 0
        for strategy, start, end, aegis in cases:
            for _ in range(args.repeats):
                out = {}
                for skip in (True, False):
                    cfg = BacktestConfig(catalog=cat, symbols=("BTCUSDT",), start_ms=start, end_ms=end,
                                         strategy=strategy, aegis=aegis, skip_idle=skip, engine=args.engine)
                    bt = new_backtest(cfg)
                    t0 = time.process_time()
                    s = bt.run()
                    cpu = time.process_time() - t0
                    s.pop("elapsed_s")
                    out[skip] = (trades_csv(bt.trades), json.dumps(s, sort_keys=True))
                    print(f"{strategy:9s} skip_idle={skip!s:5s} bars {s['candles']:,} trades {s['trades']} "
                          f"polls skipped {bt.polls_skipped:,} cpu {cpu:.2f} s -> {s['candles'] / cpu:,.0f} bars/cpu-s")
                print(f"{strategy:9s} output identical: {out[True] == out[False]}")
    print(f"load average at end: {os.getloadavg()}")
    return 0


def engines(cat: Path, cases: list, repeats: int) -> None:
    """Each case on both engines, interleaved: the best CPU time of ``repeats`` runs each."""
    from research.backtest import BacktestConfig, new_backtest
    from research.backtest_files import trades_csv

    for strategy, start, end, aegis in cases:
        best: dict[str, float] = {}
        files: dict[str, tuple[str, str]] = {}
        for _ in range(repeats):
            for engine in ("shell", "fast"):
                cfg = BacktestConfig(catalog=cat, symbols=("BTCUSDT",), start_ms=start, end_ms=end, strategy=strategy,
                                     aegis=aegis, engine=engine)
                bt = new_backtest(cfg)
                t0 = time.process_time()
                s = bt.run()
                best[engine] = min(best.get(engine, float("inf")), time.process_time() - t0)
                s.pop("elapsed_s")
                files[engine] = (trades_csv(bt.trades), json.dumps(s, sort_keys=True))
        rates = {e: s["candles"] / cpu for e, cpu in best.items()}
        print(f"{strategy:9s} bars {s['candles']:,} trades {s['trades']}: shell {rates['shell']:,.0f} bars/cpu-s, "
              f"fast {rates['fast']:,.0f} bars/cpu-s ({rates['fast'] / rates['shell']:.2f}x); "
              f"identical files: {files['fast'] == files['shell']}")


def profile(cat: Path, start: int, end: int, top: int = 30, engine: str = "fast", strategy: str = "ema_cross",
            aegis: object = None) -> None:
    import cProfile
    import pstats

    from research.backtest import BacktestConfig, new_backtest

    cfg = BacktestConfig(catalog=cat, symbols=("BTCUSDT",), start_ms=start, end_ms=end, strategy=strategy,
                         aegis=aegis if aegis is not None else aegis_config(), engine=engine)
    print(f"engine: {engine}, strategy: {strategy}")
    bt = new_backtest(replace(cfg, trade_from_ms=end))  # every bar warms the strategy: the bar loop alone
    t0 = time.process_time()
    s = bt.run()
    cpu = time.process_time() - t0
    print(f"no trade (every bar warm-up): bars {s['candles']:,} cpu {cpu:.3f} s -> {s['candles'] / cpu:,.0f} bars/cpu-s")
    bt = new_backtest(cfg)
    t0 = time.process_time()
    s = bt.run()
    cpu = time.process_time() - t0
    print(f"{strategy}: bars {s['candles']:,} trades {s['trades']} cpu {cpu:.3f} s -> {s['candles'] / cpu:,.0f} "
          f"bars/cpu-s")
    bt = new_backtest(cfg)
    pr = cProfile.Profile()
    pr.enable()
    bt.run()
    pr.disable()
    st = pstats.Stats(pr)
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
    total = rows[0][1][3]  # the run itself (Backtest.run): 100 %
    print(f"cProfile, by cumulative time (share of the profiled run, {total:.2f} s):")
    for (file, line, name), (_, calls, _, cum, _) in rows[:top]:
        print(f"  {cum / total * 100:5.1f} %  {calls:8,} calls  {Path(file).name}:{line} {name}")


# the trader's pure functions the execution shell calls, by module (``module.function(...)``
# at the call sites, so wrapping the module's attribute times every call)
_CORE = {"trader": ("request_exit", "on_timer", "move_level", "cancel_entry", "flatten"),
         "trader_entries": ("on_signal",), "trader_exits": ("on_prices",),
         "trader_fills": ("on_order_event", "on_fill"),
         "trader_exchange": ("on_reconciled", "on_open_algos", "on_algo_event", "on_symbol_fills")}


def core(cat: Path, start: int, end: int, aegis: object, repeats: int) -> None:
    """How much of a round trip is the trader's pure core: the EMA cross month on the fast
    engine with every call the shell makes into the trader timed (``perf_counter_ns``; only
    the outermost call counted, so a function called inside another is not counted twice),
    next to the run's CPU time, the same month with no trade (the per-bar floor) and what
    200,000 bars per CPU-second leaves for a round trip. Best of ``repeats`` (the timed run
    with the least time in the core: a full collection of the garbage collector, when one
    falls inside a timed call, is not counted as the core's)."""
    import importlib

    from research.backtest import BacktestConfig, new_backtest

    cfg = BacktestConfig(catalog=cat, symbols=("BTCUSDT",), start_ms=start, end_ms=end, strategy="ema_cross",
                         aegis=aegis)
    spent: dict[str, int] = {}
    depth = [0]

    def timed(name: str, fn):
        def wrapper(*a, **k):
            if depth[0]:
                return fn(*a, **k)
            depth[0] = 1
            t0 = time.perf_counter_ns()
            try:
                return fn(*a, **k)
            finally:
                spent[name] = spent.get(name, 0) + time.perf_counter_ns() - t0
                depth[0] = 0
        return wrapper

    def cpu_of(c: BacktestConfig) -> tuple[float, dict]:
        bt = new_backtest(c)
        t0 = time.process_time()
        s = bt.run()
        return time.process_time() - t0, s

    floor = min(cpu_of(replace(cfg, trade_from_ms=end))[0] for _ in range(repeats))
    plain = min(cpu_of(cfg)[0] for _ in range(repeats))
    originals = []
    for mod_name, names in _CORE.items():
        mod = importlib.import_module(f"services.brain.{mod_name}")
        for n in names:
            originals.append((mod, n, getattr(mod, n)))
            setattr(mod, n, timed(f"{mod_name}.{n}", getattr(mod, n)))
    try:
        best: dict[str, int] | None = None
        for _ in range(repeats):
            spent.clear()
            _, s = cpu_of(cfg)
            if best is None or sum(spent.values()) < sum(best.values()):
                best = dict(spent)
    finally:
        for mod, n, fn in originals:
            setattr(mod, n, fn)
    trips, bars = s["trades"], s["candles"]
    total_core = sum(best.values()) / 1e3 / trips
    budget = (bars / 200_000 - floor) / trips * 1e6
    print(f"EMA cross month: bars {bars:,}, round trips {trips}; best of {repeats} (CPU-seconds): run {plain:.3f} s "
          f"({bars / plain:,.0f} bars/cpu-s), no trade {floor:.3f} s ({bars / floor:,.0f} bars/cpu-s)")
    print(f"a round trip costs the run {(plain - floor) / trips * 1e6:,.0f} us; the trader's pure core alone "
          f"{total_core:,.0f} us of it:")
    for name, ns in sorted(best.items(), key=lambda kv: -kv[1]):
        print(f"  {name:32s} {ns / 1e3 / trips:7.1f} us per round trip")
    print(f"at 200,000 bars per CPU-second a round trip may cost {budget:,.0f} us in all (with this bar floor)")


if __name__ == "__main__":
    raise SystemExit(main())
