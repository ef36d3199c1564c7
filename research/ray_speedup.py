"""Measure the Ray speed-up of a split backtest: the same tasks in this process, then on a
local Ray of ``--workers`` CPUs (started first and timed apart); both sides are warmed up
first with a one-hour run of every task (imports, compiled code), with the load average next to every time.

    python -m research.ray_speedup --catalog DIR --strategy smc --symbols BTCUSDT,BTCCOPYUSDT \\
        --from 2024-12-01 --to 2024-12-14 --workers 2

Prints one JSON object: ``serial_s`` (tasks one after the other here), ``ray_start_s``,
``ray_s`` (the tasks on Ray, start-up excluded), ``speedup = serial_s / ray_s``, each task's
own run time here (``task_s``) and in its Ray worker (``ray_task_s``), the load
averages before and after, and whether both runs gave identical results. A timing on a
shared machine is only as good as the load average beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from common import log as log_mod


def main(argv: list[str] | None = None) -> int:
    from research.archive import parse_day

    p = argparse.ArgumentParser(prog="python -m research.ray_speedup", description=__doc__.split("\n")[0])
    p.add_argument("--catalog", required=True)
    p.add_argument("--strategy", default="smc")
    p.add_argument("--symbols", required=True)
    p.add_argument("--from", dest="start", required=True, type=parse_day)
    p.add_argument("--to", dest="end", required=True, type=parse_day)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    with log_mod.quieted():  # as in aegis backtest: no info line per order inside the timings
        print(json.dumps(_measure(args)))
    return 0


def _measure(args: argparse.Namespace) -> dict:
    """The serial run, the Ray run and their times (the JSON object the command prints)."""
    from research import distributed as dist
    from research.backtest import BacktestConfig
    from research.archive import day_start_ms

    cfg = BacktestConfig(catalog=Path(args.catalog), symbols=tuple(s.strip() for s in args.symbols.split(",")),
                         start_ms=day_start_ms(args.start), end_ms=day_start_ms(args.end + timedelta(days=1)), strategy=args.strategy)
    tasks = dist.split_by_symbol(cfg)
    from dataclasses import replace

    dist.execute(dist.split_by_symbol(replace(cfg, end_ms=cfg.start_ms + 3_600_000)), workers=1)  # warm imports
    load = [os.getloadavg()]
    t = time.perf_counter()
    serial = dist.execute(tasks, workers=1)
    serial_s = time.perf_counter() - t
    load.append(os.getloadavg())
    t = time.perf_counter()
    with dist.local_ray(args.workers):
        ray_start_s = time.perf_counter() - t
        # the same warm-up on the workers (one one-hour task per worker)
        dist.execute(dist.split_by_symbol(replace(cfg, end_ms=cfg.start_ms + 3_600_000)), workers=args.workers)
        load.append(os.getloadavg())
        t = time.perf_counter()
        par = dist.execute(tasks, workers=args.workers)
        ray_s = time.perf_counter() - t
        load.append(os.getloadavg())
    same = [(r.summary, r.trades) for r in serial] == [(r.summary, r.trades) for r in par]
    return {"tasks": len(tasks), "workers": args.workers, "cpus": os.cpu_count(),
            "serial_s": round(serial_s, 2), "ray_start_s": round(ray_start_s, 2), "ray_s": round(ray_s, 2),
            "speedup": round(serial_s / ray_s, 2), "task_s": [round(r.elapsed_s, 2) for r in serial],
            "ray_task_s": [round(r.elapsed_s, 2) for r in par],
            "identical": same, "load_avg_1m": [round(x[0], 2) for x in load]}


if __name__ == "__main__":
    sys.exit(main())
