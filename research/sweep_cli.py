"""``aegis sweep`` and ``aegis walkforward``: parameter searches and walk-forward evaluation.

    aegis sweep --catalog DIR --strategy donchian --symbols BTCUSDT --from 2024-12-01 --to 2024-12-29 \\
        --grid channel_bars=20,40,60 --grid rr=1.5,2,3 [--optuna N] --objective sharpe \\
        --workers 2 [--ray-address ADDR] --out DIR
    aegis walkforward ... --train 14 --test 7 [--step 7] --out DIR

``sweep`` writes ``sweep.json`` (every set ranked, the best one's summary), ``trades.csv`` (the
best set's trades) and ``report.html``. ``walkforward`` writes ``walkforward.json``,
``oos_trades.csv``, ``is_trades.csv`` and ``report.html``. Exit code 0, or 2 on a usage or
config error or a failed task (named on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import log as log_mod
from common.errors import ConfigError
from research.archive import parse_day
from research.backtest_cli import backtest_config


def parser(prog: str, walk: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("--catalog", required=True, help="the Parquet catalog (aegis data download)")
    p.add_argument("--strategy", default="", help="smc | donchian | package.module:Class | /dir/file.py:Class")
    p.add_argument("--params", default="", help="fixed strategy parameters name=value,... (the grid overrides)")
    p.add_argument("--symbols", required=True, help="comma-separated symbols")
    p.add_argument("--from", dest="start", required=True, type=parse_day, help="first day YYYY-MM-DD (UTC)")
    p.add_argument("--to", dest="end", required=True, type=parse_day, help="last day YYYY-MM-DD (UTC), included")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2|NAME=LOW..HIGH",
                   help="a parameter's values (repeat per parameter); ranges need --optuna")
    p.add_argument("--optuna", type=int, default=0, metavar="N", help="N Optuna (TPE) trials instead of the grid")
    p.add_argument("--seed", type=int, default=20241201, help="Optuna's seed")
    p.add_argument("--batch", type=int, default=8, help="Optuna trials per round (results depend on it)")
    p.add_argument("--objective", default="sharpe", choices=("sharpe", "expectancy_r", "net"),
                   help="what the best set maximises")
    if walk:
        p.add_argument("--train", type=int, required=True, metavar="DAYS", help="train (in-sample) window, days")
        p.add_argument("--test", type=int, required=True, metavar="DAYS", help="test (out-of-sample) window, days")
        p.add_argument("--step", type=int, default=0, metavar="DAYS", help="days between windows (default --test)")
    p.add_argument("--workers", type=int, default=1, help="parallel tasks (1 = in this process; >1 = local Ray)")
    p.add_argument("--ray-address", default="", help="run on this existing Ray cluster (e.g. 10.0.0.5:6379)")
    p.add_argument("--retries", type=int, default=2, help="retries of a task that raised or whose worker died")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", default=None, help="AEGIS config TOML ([trading], [strategy])")
    p.add_argument("--exchange-info", default="", help="exchangeInfo JSON with the symbols' filters")
    return p


def _setup(args: argparse.Namespace) -> tuple[Any, Any]:
    from research import sweep as sw

    cfg = backtest_config(args)
    space = sw.parse_space(args.grid)
    sw.searcher(space, optuna_trials=args.optuna, seed=args.seed, batch=args.batch)  # checks it now
    return cfg, (lambda: sw.searcher(space, optuna_trials=args.optuna, seed=args.seed, batch=args.batch))


def main(argv: list[str] | None = None) -> int:
    args = parser("aegis sweep", walk=False).parse_args(argv)
    with log_mod.quieted():  # an info line per order of every backtest would drown the result
        return _sweep(args)


def _sweep(args: argparse.Namespace) -> int:
    try:
        from research import distributed as dist
        from research import html_report
        from research import sweep as sw
        from research.backtest_files import trades_csv

        cfg, make = _setup(args)
        problem = sw.Problem(prefix="", cfg=cfg, search=make())
        with _session(args):
            sw.run_problems([problem], args.objective, workers=args.workers, address=args.ray_address,
                            retries=args.retries, progress=not args.no_progress and dist.progress_default())
        summary = sw.sweep_summary(problem, args.objective)
        best = sw.ranked(problem.evaluated)[0]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.json").write_text(sw.dumps(summary))
        (out / "trades.csv").write_text(trades_csv(best.trades))
        (out / "report.html").write_text(html_report.sweep_page(summary, best.trades))
    except ConfigError as exc:
        print(f"aegis sweep: {exc}", file=sys.stderr)
        return 2
    print(f"{summary['strategy']}: {len(summary['ranked'])} sets ({summary['method']}); best "
          f"{json.dumps(summary['best']['params'])} {args.objective} {html_report.fmt(summary['best']['objective'])} "
          f"(in-sample) -> {out}")
    return 0


def walkforward_main(argv: list[str] | None = None) -> int:
    args = parser("aegis walkforward", walk=True).parse_args(argv)
    with log_mod.quieted():
        return _walkforward(args)


def _walkforward(args: argparse.Namespace) -> int:
    try:
        from research import distributed as dist
        from research import html_report
        from research import sweep as sw
        from research.backtest_files import trades_csv
        from research.walkforward import run_walkforward

        cfg, make = _setup(args)
        with _session(args):
            res = run_walkforward(cfg, make, args.objective, train_days=args.train, test_days=args.test,
                                  step_days=args.step, workers=args.workers, address=args.ray_address,
                                  retries=args.retries, progress=not args.no_progress and dist.progress_default())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        s = res["summary"]
        (out / "walkforward.json").write_text(sw.dumps(s))
        (out / "oos_trades.csv").write_text(trades_csv(res["oos_trades"]))
        (out / "is_trades.csv").write_text(trades_csv(res["is_trades"]))
        (out / "report.html").write_text(html_report.walkforward_page(s, res["is_trades"], res["oos_trades"]))
    except ConfigError as exc:
        print(f"aegis walkforward: {exc}", file=sys.stderr)
        return 2
    o = s["oos"]
    ci = o["expectancy_net_r_ci95"]
    print(f"{s['strategy']}: {len(s['windows'])} windows; out of sample: {o['trades']} trades, net PnL "
          f"{o['net_pnl']:.2f} USDT, expectancy after fees {html_report.fmt(o['expectancy_net_r'])} R "
          f"(95% CI {html_report.fmt(ci[0])} .. {html_report.fmt(ci[1])}), Sharpe {html_report.fmt(o['sharpe'])} -> {out}")
    return 0


def _session(args: argparse.Namespace) -> Any:
    """One Ray session for the whole command (rounds of a search reuse it)."""
    from contextlib import nullcontext

    from research import distributed as dist

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, not {args.workers}")
    if args.workers == 1 and not args.ray_address:
        return nullcontext()
    return dist.ray_session(args.workers, args.ray_address)


if __name__ == "__main__":
    sys.exit(main())
