"""Backtest throughput (issue 18): the same EMA(10)/EMA(30) cross, long only, on the
repository's real BTCUSDT 1m bars (December 2024, 41,761 bars), in five engines side by side
in one run, interleaved: AEGIS's backtest on its two engines (``aegis``: the fast engine,
``research.fast_backtest``, the default of ``aegis backtest``; ``aegis_shell``:
``research.backtest``, the live execution shell with every message; both the live trader, risk
checks and paper broker, the same trades), a plain Python loop with one call per bar
(``research.strategies.ema_cross.ema_cross_reference``), NautilusTrader's ``BacktestEngine``
and backtrader. Each engine computes the two averages the same way (by hand, seeded with the
first close) and trades at the close of the bar that crossed; each one's trades are compared
with the plain loop's (entry and exit bar). The AEGIS engines and the plain loop are also
timed in CPU-seconds of this process (``time.process_time``: less inflated than wall time on a
busy machine; ``cpu_bars_per_s``). Then the SMC strategy through AEGIS's backtest on both
engines (candles/s, wall and CPU), the SMC update alone (microseconds per candle, p50 and p99), and the peak memory
(RSS) of a fresh process streaming a year of 1m bars for many symbols from a catalog
(``research.catalog.iter_bars``; the catalog synthesized in a temp dir from the real December
bars, time-shifted into each month of 2025 and copied under derived symbol names).

NautilusTrader runs in its own virtualenv (``.venv-nautilus``, made by ``make setup-bench``: it
needs pandas < 3, AEGIS pandas 3) through ``bench/nautilus_contender.py``; its time is the
engine's ``run()`` alone, as for the others. A contender that cannot be imported is recorded as
unavailable with the reason.

    .venv/bin/python -m bench --only backtest --repeats 1 --out /tmp/bench-bt
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import REPO, log, summarize
from common import log as log_mod

DEC1_MS = 1_733_011_200_000  # 2024-12-01 00:00 UTC
MINUTE_MS = 60_000
FAST, SLOW = 10, 30
SMC_DAYS = 7  # the SMC strategy through the backtest: the first December week
SMC_UPDATE_BARS = 20_000
STREAM_MONTHS = 12  # a year: every month of 2025
STREAM_SYMBOLS = 20  # full mode (quick: 5)


# ----------------------------------------------------------------------------- data
def build_catalog(root: Path) -> Path:
    """The repository's real BTCUSDT 1m month as a catalog (``aegis data import`` of the local archive)."""
    from research.ingest import run_import
    from research.localarchive import build_archive

    archive = build_archive(root / "archive")
    cat = root / "catalog"
    for z in sorted(archive.rglob("monthly/klines/BTCUSDT/1m/*.zip")):
        if not run_import(catalog=cat, path=z).ok:
            raise RuntimeError(f"import of {z.name} failed")
    return cat


def load_bars(cat: Path) -> dict[str, list]:
    from research.catalog import iter_bars

    cols = ("open_time", "open", "high", "low", "close", "volume")
    out: dict[str, list] = {c: [] for c in cols}
    for batch in iter_bars(cat, "klines_1m", ["BTCUSDT"], 0, 2**62, columns=list(cols)):
        for c in cols:
            out[c] += batch.column(c).to_pylist()
    return out


# ----------------------------------------------------------------------------- contenders
CPU_S: dict[str, float] = {}  # engine -> CPU-seconds of its last run (process_time)


def plain_loop(bars: dict[str, list]) -> tuple[float, list[tuple[int, int]], list[float]]:
    from research.strategies.ema_cross import ema_cross_reference

    t0, c0 = time.perf_counter(), time.process_time()
    trades = ema_cross_reference(bars["open_time"], bars["close"], FAST, SLOW)
    s = time.perf_counter() - t0
    CPU_S["plain_loop"] = time.process_time() - c0
    return s, [(a, c) for a, _, c, _ in trades], [p for _, x, _, y in trades for p in (x, y)]


def aegis_config():
    """Fees and slippage off, no re-entry cooldown: a fill at the bar's close, as in the others."""
    from common.config import AegisConfig

    base = AegisConfig()
    return replace(base, trading=replace(base.trading, paper_slippage_bps=0.0, taker_fee_rate=0.0,
                                         maker_fee_rate=0.0, cooldown_s=0.0))


def aegis_backtest(cat: Path, bars: dict[str, list], strategy: str = "ema_cross",
                   end_ms: int | None = None, engine: str = "fast") -> tuple[float, list[tuple[int, int]], list[float],
                                                                            dict]:
    """One AEGIS backtest on ``engine`` (fast | shell): (wall s of the run, round trips, fill
    prices, summary with ``cpu_s``)."""
    from research.backtest import BacktestConfig, new_backtest

    end = end_ms if end_ms is not None else bars["open_time"][-1] + MINUTE_MS
    cfg = BacktestConfig(catalog=cat, symbols=("BTCUSDT",), start_ms=bars["open_time"][0], end_ms=end,
                         strategy=strategy, aegis=aegis_config(), engine=engine)
    bt = new_backtest(cfg)
    c0 = time.process_time()
    s = bt.run()
    s["cpu_s"] = time.process_time() - c0
    CPU_S["aegis" if engine == "fast" else f"aegis_{engine}"] = s["cpu_s"]
    # opened/closed at the bar's close (open + 1 minute): the bar's open time, as the others report
    trades = [(t["opened_ms"] - MINUTE_MS, t["closed_ms"] - MINUTE_MS) for t in bt.trades]
    prices = [p for t in bt.trades for p in (t["entry_price"], t["exit_price"])]
    return s["elapsed_s"], trades, prices, s


def backtrader_run(bars: dict[str, list]) -> tuple[float, list[tuple[int, int]], list[float]]:
    import backtrader as bt
    import pandas as pd

    from research.strategies.ema_cross import EmaState, ema_step

    trades: list[tuple[int, int]] = []
    prices: list[float] = []

    class Cross(bt.Strategy):
        def __init__(self) -> None:
            self.st = EmaState(FAST, SLOW)
            self.entry_ms: int | None = None

        def next(self) -> None:  # one call per bar; the averages by hand, as everywhere
            cross = ema_step(self.st, self.data.close[0])
            t_ms = int(bt.num2date(self.data.datetime[0]).timestamp() * 1000)
            if cross > 0 and not self.position:
                self.buy(size=1)
                self.entry_ms = t_ms
            elif cross < 0 and self.position:
                self.close()
                trades.append((self.entry_ms, t_ms))

        def notify_order(self, order) -> None:
            if order.status == order.Completed:
                prices.append(order.executed.price)

    idx = pd.to_datetime(bars["open_time"], unit="ms")
    df = pd.DataFrame({k: bars[k] for k in ("open", "high", "low", "close", "volume")}, index=idx)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=df, timeframe=bt.TimeFrame.Minutes))
    cerebro.addstrategy(Cross)
    cerebro.broker.setcash(10_000_000.0)
    cerebro.broker.set_coc(True)  # cheat-on-close: a market order fills at this bar's close
    t0 = time.perf_counter()
    cerebro.run()
    return time.perf_counter() - t0, trades, prices


NAUTILUS_PY = REPO / ".venv-nautilus" / "bin" / "python"


def nautilus_run(bars: dict[str, list]) -> tuple[float, list[tuple[int, int]], list[float]]:
    """``bench/nautilus_contender.py`` in NautilusTrader's own virtualenv (it needs pandas < 3)."""
    if not NAUTILUS_PY.exists():
        raise ImportError(f"no {NAUTILUS_PY.parent.parent.name} (make setup-bench installs "
                          "bench/nautilus-requirements.txt there)")
    with tempfile.TemporaryDirectory(prefix="aegis-bench-nt-") as d:
        f = Path(d) / "bars.json"
        f.write_text(json.dumps({"bars": {k: bars[k] for k in ("open_time", "open", "high", "low", "close", "volume")},
                                 "fast": FAST, "slow": SLOW}))
        p = subprocess.run([str(NAUTILUS_PY), str(REPO / "bench" / "nautilus_contender.py"), str(f)],
                           capture_output=True, timeout=1200)
    if p.returncode != 0:
        raise RuntimeError(f"nautilus contender exited {p.returncode}: {p.stderr.decode()[-1500:]}")
    r = json.loads(p.stdout.decode().strip().splitlines()[-1])
    NAUTILUS_VERSION[0] = r["version"]
    return r["seconds"], [tuple(t) for t in r["trades"]], r["prices"]


NAUTILUS_VERSION = [""]


def fills_vs_closes(bars: dict[str, list], trades: list[tuple[int, int]], prices: list[float]) -> dict[str, Any]:
    """How many of the round trips' fills were at their bar's close, and the largest gap to it."""
    close = dict(zip(bars["open_time"], bars["close"]))
    want = [close[t] for tr in trades for t in tr]
    diffs = [abs(a - b) for a, b in zip(prices, want)]
    return {"fills": len(want), "fills_at_close": sum(1 for x in diffs if x == 0),
            "max_fill_diff": max(diffs, default=0.0)}


def compare(ref: list[tuple[int, int]], got: list[tuple[int, int]]) -> dict[str, Any]:
    """The engine's round trips (entry bar, exit bar) against the plain loop's."""
    same = sum(1 for a, b in zip(ref, got) if a == b)
    first = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), None)
    return {"trades": len(got), "reference_trades": len(ref), "same_as_reference": same,
            "identical": got == ref, "first_difference": None if first is None else
            {"index": first, "reference": ref[first], "got": got[first]}}


# ----------------------------------------------------------------------------- SMC
def smc_update_us(bars: dict[str, list], n: int) -> dict[str, float]:
    """One ``update`` per closed 1m candle: the strategy's base SMC state (swing length 5,
    no sessions, no period features: ``strategy.new_symbol_state``) and the default state
    (3 timeframes, 3 sessions); the compiled update the package runs and, on the same bars,
    the pure-Python reference (``smc/engine.py``) it replaced (``reference_*`` keys and the
    ``speedup`` ratio). Then the SMC strategy's whole ``on_candle`` on the same bars (SMC,
    higher timeframe, ATRs, zones, the cold model: ``strategy_on_candle_*``, issue #18)."""
    from types import SimpleNamespace

    from services.brain import model, strategy
    from services.brain.smc import SmcConfig, engine, new_state, update

    out: dict[str, float] = {}
    t, o, h, lo, c, v = (bars[k][:n] for k in ("open_time", "open", "high", "low", "close", "volume"))
    clock = time.perf_counter_ns
    for name, cfg in (("strategy", SmcConfig(swing_length=5, timeframes=(), sessions=())),
                      ("default", SmcConfig(swing_length=5))):
        for prefix, new, upd in (("", new_state, update), ("reference_", engine.new_state, engine.update)):
            st = new(cfg)
            samples = np.empty(len(t), dtype=np.int64)
            for i in range(len(t)):
                t0 = clock()
                upd(st, t[i], o[i], h[i], lo[i], c[i], v[i])
                samples[i] = clock() - t0
            us = samples / 1e3
            out[f"{prefix}{name}_p50_us"] = float(np.percentile(us, 50))
            out[f"{prefix}{name}_p99_us"] = float(np.percentile(us, 99))
            out[f"{prefix}{name}_mean_us"] = float(us.mean())
        out[f"{name}_speedup"] = out[f"reference_{name}_p50_us"] / out[f"{name}_p50_us"]
    st, ms = strategy.new_symbol_state(), model.new_state(model.ModelConfig())
    samples = np.empty(len(t), dtype=np.int64)
    c0 = time.process_time()
    for i in range(len(t)):
        candle = SimpleNamespace(symbol="BTCUSDT", open_ms=t[i], open=o[i], high=h[i], low=lo[i], close=c[i],
                                 volume=v[i])
        t0 = clock()
        strategy.on_candle(st, candle, 60, ms)
        samples[i] = clock() - t0
    out["strategy_on_candle_cpu_mean_us"] = (time.process_time() - c0) / len(t) * 1e6
    out["strategy_on_candle_p50_us"] = float(np.percentile(samples / 1e3, 50))
    out["strategy_on_candle_p99_us"] = float(np.percentile(samples / 1e3, 99))
    return out


# ----------------------------------------------------------------------------- memory
def synth_year(cat: Path, n_symbols: int, months: int = STREAM_MONTHS) -> list[str]:
    """``months`` months of 2025 per symbol from the real December 2024 bars, time-shifted to
    start on each month's first minute (a month longer than the data ends early: a gap), then
    copied under ``n_symbols`` derived names (D001USDT, ...: the same bars, not real markets)."""
    from datetime import datetime, timezone

    import pyarrow as pa
    import pyarrow.parquet as pq

    src = cat / "klines_1m" / "BTCUSDT"
    table = pq.read_table(src / "2024-12.parquet")
    doc = json.loads((src / "manifest.json").read_text())
    rec0 = doc["partitions"]["2024-12"]
    first = table.column("open_time")[0].as_py()
    one = cat / "klines_1m" / "SYNTH"
    one.mkdir(parents=True)
    parts = {}
    for m in range(1, months + 1):
        start = int(datetime(2025, m, 1, tzinfo=timezone.utc).timestamp() * 1000)
        end = int(datetime(2025 + m // 12, m % 12 + 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
        shift = start - first
        cols = {}
        for name in table.column_names:
            col = table.column(name)
            cols[name] = pa.compute.add(col, shift) if name in ("open_time", "close_time") else col
        t = pa.table(cols, schema=table.schema)
        t = t.filter(pa.compute.less(t.column("open_time"), end))
        label = f"2025-{m:02d}"
        pq.write_table(t, one / f"{label}.parquet", compression="zstd", row_group_size=65_536)
        times = t.column("open_time")
        parts[label] = dict(rec0, month=label, file=f"{label}.parquet", rows=t.num_rows,
                            bytes=(one / f"{label}.parquet").stat().st_size, gaps=[],
                            first_ms=times[0].as_py(), last_ms=times[-1].as_py(),
                            sources=[dict(rec0["sources"][0], name="synthetic: BTCUSDT 2024-12 time-shifted",
                                          rows=t.num_rows, span_ms=[start, end])])
    names = [f"D{i:03d}USDT" for i in range(1, n_symbols + 1)]
    for name in names:
        dst = one.parent / name
        shutil.copytree(one, dst)
        (dst / "manifest.json").write_text(json.dumps(dict(doc, symbol=name, partitions={
            k: dict(v, symbol=name) for k, v in parts.items()})))
    shutil.rmtree(one)
    return names


STREAM_CODE = """
import json, sys, time
from research.catalog import iter_bars

def hwm_kib():  # this process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent over exec)
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
    return 0

cat, symbols, batch_rows = sys.argv[1], sys.argv[2].split(','), int(sys.argv[3])
before = hwm_kib()
rows, t0 = 0, time.perf_counter()
for b in iter_bars(cat, 'klines_1m', symbols, 0, 2**62, batch_rows=batch_rows):
    rows += b.num_rows
s = time.perf_counter() - t0
print(json.dumps({'rows': rows, 'seconds': s, 'rss_before_kib': before, 'peak_rss_kib': hwm_kib()}))
"""


def stream_memory(cat: Path, symbols: list[str], batch_rows: int = 65_536) -> dict[str, Any]:
    """A fresh process streams every bar of ``symbols`` (merged by time); its peak RSS."""
    p = subprocess.run([sys.executable, "-c", STREAM_CODE, str(cat), ",".join(symbols), str(batch_rows)],
                       capture_output=True, cwd=str(REPO), timeout=1200)
    if p.returncode != 0:
        raise RuntimeError(f"stream process failed: {p.stderr.decode()[-1500:]}")
    r = json.loads(p.stdout.decode().strip().splitlines()[-1])
    r.update(symbols=len(symbols), batch_rows=batch_rows, rows_per_s=r["rows"] / r["seconds"],
             peak_rss_mib=r["peak_rss_kib"] / 1024, rss_before_mib=r["rss_before_kib"] / 1024)
    return r


# ----------------------------------------------------------------------------- the section
def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def run(*, quick: bool, repeats: int) -> dict[str, Any]:
    with log_mod.quieted():  # an info line per order would be measured too
        return _run(quick=quick, repeats=repeats)


def _run(*, quick: bool, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"contenders": {}, "unavailable": {}}
    with tempfile.TemporaryDirectory(prefix="aegis-bench-backtest-") as d:
        root = Path(d)
        cat = build_catalog(root)
        bars = load_bars(cat)
        n = len(bars["open_time"])
        if quick:
            n = 10_000
            bars = {k: v[:n] for k, v in bars.items()}
        out["config"] = {"bars": n, "strategy": f"EMA({FAST})/EMA({SLOW}) cross, long only, fill at the close",
                         "data": "BTCUSDT 1m, real (services/exchange_sim/data/BTCUSDT_1m_2024-12.csv)",
                         "repeats": repeats}
        engines = {"plain_loop": plain_loop, "aegis": lambda b: aegis_backtest(cat, b)[:3],
                   "aegis_shell": lambda b: aegis_backtest(cat, b, engine="shell")[:3],
                   "backtrader": backtrader_run, "nautilus_trader": nautilus_run}
        times: dict[str, list[float]] = {k: [] for k in engines}
        cpu: dict[str, list[float]] = {k: [] for k in engines}
        warm = {k: v[:2_000] for k, v in bars.items()}
        for engine in ("fast", "shell"):  # imports and first-call costs paid before the timed runs
            aegis_backtest(cat, warm, engine=engine)
        CPU_S.clear()
        trades: dict[str, list] = {}
        prices: dict[str, list] = {}
        for i in range(repeats):
            for name, fn in engines.items():  # interleaved: every engine once per repeat
                if name in out["unavailable"]:
                    continue
                try:
                    s, tr, px = fn(bars)
                except ImportError as exc:
                    out["unavailable"][name] = f"not installed: {exc}"
                    continue
                except Exception:  # noqa: BLE001 - recorded, the others still run
                    out["unavailable"][name] = "failed: " + traceback.format_exc()[-1500:]
                    continue
                times[name].append(n / s)
                if name in CPU_S:
                    cpu[name].append(n / CPU_S.pop(name))
                trades[name], prices[name] = tr, px
                log(f"[backtest] repeat {i + 1}/{repeats} {name}: {n / s:,.0f} bars/s, {len(tr)} trades")
        ref = trades["plain_loop"]
        for name in engines:
            if times[name]:
                out["contenders"][name] = {"bars_per_s": summarize(times[name]), **compare(ref, trades[name]),
                                           **fills_vs_closes(bars, trades[name], prices[name])}
                if cpu[name]:
                    out["contenders"][name]["cpu_bars_per_s"] = summarize(cpu[name])
        out["versions"] = {"nautilus_trader": NAUTILUS_VERSION[0] or None, "backtrader": _version("backtrader")}
        # the SMC strategy through the backtest (both engines, interleaved), and the SMC update alone
        end = bars["open_time"][0] + (1 if quick else SMC_DAYS) * 86_400_000
        for engine, key in (("fast", "smc_backtest"), ("shell", "smc_backtest_shell")):
            out[key] = {"engine": engine, "rates": [], "cpu_rates": []}
        for _ in range(repeats):
            for engine, key in (("fast", "smc_backtest"), ("shell", "smc_backtest_shell")):
                s, _, _, summary = aegis_backtest(cat, bars, strategy="smc", end_ms=end, engine=engine)
                r = out[key]
                r["rates"].append(summary["candles"] / s)
                r["cpu_rates"].append(summary["candles"] / summary["cpu_s"])
                r.update(candles=summary["candles"], signals=summary["signals"], trades=summary["trades"],
                         net_pnl=summary["net_pnl"])
        for key in ("smc_backtest", "smc_backtest_shell"):
            r = out[key]
            r["candles_per_s"], r["cpu_candles_per_s"] = summarize(r.pop("rates")), summarize(r.pop("cpu_rates"))
        log(f"[backtest] SMC strategy: {out['smc_backtest']['candles_per_s']['median']:,.0f} candles/s (fast engine), "
            f"{out['smc_backtest_shell']['candles_per_s']['median']:,.0f} (shell engine)")
        out["smc_update"] = smc_update_us(bars, min(n, SMC_UPDATE_BARS))
        su = out["smc_update"]
        log(f"[backtest] SMC update p50 {su['strategy_p50_us']:.1f} us (pure-Python reference "
            f"{su['reference_strategy_p50_us']:.1f} us, {su['strategy_speedup']:.1f}x); the SMC strategy's "
            f"on_candle p50 {su['strategy_on_candle_p50_us']:.1f} us")
        # memory: a year of 1m bars for many symbols, streamed by a fresh process
        n_sym = 5 if quick else STREAM_SYMBOLS
        symbols = synth_year(cat, n_sym, 2 if quick else STREAM_MONTHS)
        out["stream"] = stream_memory(cat, symbols)
        log(f"[backtest] streamed {out['stream']['rows']:,} bars of {n_sym} symbols: peak RSS "
            f"{out['stream']['peak_rss_mib']:.0f} MiB")
    out["loadavg"] = os.getloadavg()
    return out


def headline(sec: dict[str, Any]) -> dict[str, Any]:
    c = sec["contenders"]

    def rate(name: str) -> float | None:
        return c[name]["bars_per_s"]["median"] if name in c else None

    return {"aegis_ema_bars_per_s": rate("aegis"), "aegis_shell_ema_bars_per_s": rate("aegis_shell"),
            "plain_loop_bars_per_s": rate("plain_loop"),
            "nautilus_bars_per_s": rate("nautilus_trader"), "backtrader_bars_per_s": rate("backtrader"),
            "smc_candles_per_s": sec["smc_backtest"]["candles_per_s"]["median"],
            "smc_shell_candles_per_s": sec["smc_backtest_shell"]["candles_per_s"]["median"],
            "smc_update_p50_us": sec["smc_update"]["strategy_p50_us"],
            "smc_strategy_on_candle_p50_us": sec["smc_update"]["strategy_on_candle_p50_us"],
            "stream_peak_rss_mib": sec["stream"]["peak_rss_mib"], "stream_symbols": sec["stream"]["symbols"]}
