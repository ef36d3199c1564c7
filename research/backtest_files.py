"""The files of one backtest run (``aegis backtest --out DIR``): ``trades.csv`` (one row per
closed trade, floats as ``repr``), ``summary.json`` (without the run time, so the same input
gives the same bytes) and ``report.html`` (research/html_report.py, with the full metrics of
research/metrics.py computed from the two files just written).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from research.backtest import BacktestConfig, new_backtest

TRADE_COLUMNS = ("trade_id", "symbol", "side", "qty", "entry_price", "exit_price", "stop", "target", "opened_ms",
                 "closed_ms", "exit_reason", "pnl", "fees", "funding", "net_pnl", "outcome_r", "confidence")


def trades_csv(trades: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRADE_COLUMNS)
    for t in trades:
        w.writerow([repr(t[c]) if isinstance(t[c], float) else t[c] for c in TRADE_COLUMNS])
    return buf.getvalue()


def write_report(cfg: BacktestConfig, out: Path) -> None:
    """report.html of a one-account run with the full metrics (research/html_report.py), from the
    files just written."""
    from research import html_report, metrics

    summary = json.loads((out / "summary.json").read_text())
    with (out / "trades.csv").open() as f:
        trades = [{**r, "closed_ms": int(r["closed_ms"])} for r in csv.DictReader(f)]
    stats = metrics.trade_stats(trades, start_equity=float(cfg.aegis.trading.paper_balance_usdt),
                                start_ms=cfg.start_ms, end_ms=cfg.end_ms)
    (out / "report.html").write_text(html_report.backtest_page({**summary, **stats}, trades))


def run_backtest(cfg: BacktestConfig, out: Path) -> dict[str, Any]:
    """Run and write ``trades.csv``, ``summary.json`` and ``report.html`` into ``out``;
    returns the summary (with ``elapsed_s``)."""
    bt = new_backtest(cfg)
    summary = bt.run()
    out.mkdir(parents=True, exist_ok=True)
    (out / "trades.csv").write_text(trades_csv(bt.trades))
    stable = {k: v for k, v in summary.items() if k != "elapsed_s"}
    (out / "summary.json").write_text(json.dumps(stable, indent=2, sort_keys=False) + "\n")
    write_report(cfg, out)
    return summary
