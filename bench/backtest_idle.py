"""Backtest CPU time with idle skipping on and off (``BacktestConfig.skip_idle``), on the
repository's real BTCUSDT 1m bars: the EMA(10)/EMA(30) cross of the ``backtest`` section (its
config: no fees, no slippage, no cooldown; the month), the Donchian example (defaults, the
month) and the SMC strategy (defaults, the first December week). Per run: bars per
CPU-second (``time.process_time``: less inflated than wall time on a busy machine), the polls
skipped, and whether trades.csv and summary.json (without the run time) are identical.

    .venv/bin/python -m bench.backtest_idle
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.backtest_section import _quiet_logs, aegis_config, build_catalog, load_bars

DEC1_MS = 1_733_011_200_000
DAY_MS = 86_400_000


def main(argv: list[str] | None = None) -> int:
    from common.config import AegisConfig
    from research.backtest import Backtest, BacktestConfig, trades_csv

    p = argparse.ArgumentParser(prog="python -m bench.backtest_idle")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    _quiet_logs()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        cat = build_catalog(Path(tmp))
        bars = load_bars(cat)
        cases = [("ema_cross", bars["open_time"][0], bars["open_time"][-1] + 60_000, aegis_config()),
                 ("donchian", bars["open_time"][0], bars["open_time"][-1] + 60_000, AegisConfig()),
                 ("smc", DEC1_MS, DEC1_MS + 7 * DAY_MS, AegisConfig())]
        for strategy, start, end, aegis in cases:
            for _ in range(args.repeats):
                out = {}
                for skip in (True, False):
                    cfg = BacktestConfig(catalog=cat, symbols=("BTCUSDT",), start_ms=start, end_ms=end,
                                         strategy=strategy, aegis=aegis, skip_idle=skip)
                    bt = Backtest(cfg)
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


if __name__ == "__main__":
    raise SystemExit(main())
