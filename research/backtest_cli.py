"""``aegis backtest``: a strategy over the catalog, through the live trader (research/backtest.py).

    aegis backtest --catalog DIR --strategy smc|donchian|module:Class|/dir/file.py:Class \\
        --symbols BTCUSDT,ETHUSDT --from 2024-12-01 --to 2024-12-29 --out DIR \\
        [--params channel_bars=20,rr=2] [--config aegis.toml] [--exchange-info FILE] [--json] \\
        [--engine fast|shell] [--workers N [--ray-address ADDR]]

``--to`` is the last day, included. ``--config`` is an AEGIS TOML: its ``[trading]`` section
(risk, rotation, fees, paper balance) and, without ``--strategy``, its ``[strategy]`` section
(path and ``[strategy.params]``) are used. Exit code 0 on success, 2 on a usage or config error.

``--engine``: ``fast`` (default, ``research/fast_backtest.py``) or ``shell`` (the live execution
shell with every message and answer, as replay mode runs it): the same files, byte for byte.

``--workers N`` splits the job into one task per symbol, each symbol its own account, run on
N workers (1: in this process; more: a local Ray, or the cluster at ``--ray-address``) and
merged in a fixed order: 1, 2 or N workers write byte-identical files (research/distributed.py).
Without ``--workers`` all symbols share one account (the live trader's rotation couples them).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from common import config as config_mod
from common import log as log_mod
from common.errors import ConfigError
from research import strategy_api as sa
from research.archive import day_start_ms, parse_day


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aegis backtest", description=__doc__.split("\n")[0])
    p.add_argument("--catalog", required=True, help="the Parquet catalog (aegis data download)")
    p.add_argument("--strategy", default="", help="smc | donchian | package.module:Class | /dir/file.py:Class "
                   "(default: the config's [strategy], else smc)")
    p.add_argument("--params", default="", help="strategy parameters name=value,... (replace the config's)")
    p.add_argument("--symbols", required=True, help="comma-separated symbols")
    p.add_argument("--from", dest="start", required=True, type=parse_day, help="first day YYYY-MM-DD (UTC)")
    p.add_argument("--to", dest="end", required=True, type=parse_day, help="last day YYYY-MM-DD (UTC), included")
    p.add_argument("--out", required=True, help="output folder: trades.csv, summary.json, report.html")
    p.add_argument("--config", default=None, help="AEGIS config TOML ([trading], [strategy])")
    p.add_argument("--exchange-info", default="", help="exchangeInfo JSON with the symbols' filters")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.add_argument("--engine", choices=("fast", "shell"), default="fast",
                   help="fast (default): the lean engine; shell: the live execution shell with every message "
                   "(slower; the same trades.csv and summary.json)")
    p.add_argument("--no-skip-idle", action="store_true",
                   help="run the execution shell's timers on every bar (slower; the same trades)")
    p.add_argument("--workers", type=int, default=None,
                   help="split by symbol (one account each) over N workers: 1 = in this process, >1 = Ray")
    p.add_argument("--ray-address", default="", help="with --workers: an existing Ray cluster (HOST:PORT)")
    p.add_argument("--retries", type=int, default=2, help="with --workers: retries of a failed task")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with log_mod.quieted():  # an info line per order would drown the summary
        return _run(args)


def backtest_config(args: argparse.Namespace, *, skip_idle: bool = True) -> Any:
    """The BacktestConfig the command line asks for (shared with ``aegis sweep`` and
    ``walkforward``): ``--config``'s TOML, the strategy and its parameters (``--params``, else
    the TOML's when the strategy is the TOML's own), the symbols and the days."""
    from research.backtest import BacktestConfig

    aegis = config_mod.load(args.config) if args.config else config_mod.AegisConfig()
    path = args.strategy or aegis.strategy.path
    params = sa.parse_params(args.params) if args.params else (
        dict(aegis.strategy.params) if not args.strategy or args.strategy == aegis.strategy.path else {})
    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    return BacktestConfig(catalog=Path(args.catalog), symbols=symbols, start_ms=day_start_ms(args.start),
                          end_ms=day_start_ms(args.end + timedelta(days=1)), strategy=path, params=params, aegis=aegis,
                          exchange_info=args.exchange_info, skip_idle=skip_idle,
                          engine=getattr(args, "engine", "fast"))


def _run(args: argparse.Namespace) -> int:
    try:
        from research.backtest_files import run_backtest

        cfg = backtest_config(args, skip_idle=not args.no_skip_idle)
        if args.workers is None and not args.ray_address:
            summary = run_backtest(cfg, Path(args.out))
        else:
            summary = _split(cfg, args)
    except ConfigError as exc:
        print(f"aegis backtest: {exc}", file=sys.stderr)
        return 2
    rate = summary["candles"] / summary["elapsed_s"] if summary["elapsed_s"] > 0 else 0.0
    if args.json:
        print(json.dumps({**summary, "candles_per_s": round(rate)}))
    else:
        print(f"{summary['strategy']}: {summary['candles']} candles in {summary['elapsed_s']} s "
              f"({rate:,.0f}/s), {summary['signals']} signals, {summary['trades']} trades, "
              f"net PnL {summary['net_pnl']:.2f} USDT -> {args.out}")
    return 0


def _split(cfg, args: argparse.Namespace) -> dict:
    """The job split by symbol over ``--workers`` (research/distributed.py)."""
    import time

    from research import distributed as dist
    from research import html_report
    from research.backtest_files import trades_csv

    started = time.perf_counter()
    trades, summary, _ = dist.run_split(cfg, workers=args.workers or 1, address=args.ray_address,
                                        retries=args.retries, progress=not args.no_progress and dist.progress_default())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trades.csv").write_text(trades_csv(trades))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.html").write_text(html_report.backtest_page(summary, trades))
    return {**summary, "elapsed_s": round(time.perf_counter() - started, 3)}


if __name__ == "__main__":
    sys.exit(main())
