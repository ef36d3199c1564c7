"""``aegis report``: a report directory from a run's database.

    aegis report --db PATH --out DIR [--start-equity USDT] [--stats-dir DIR]

Writes into DIR: ``trades.csv`` (every closed trade), ``summary.json`` (the metrics of
``services/orchestrator/report_metrics.py`` plus activity counts), ``equity.png`` (equity and
drawdown), ``latency.png`` (per-stage latency, only with ``--stats-dir``) and ``index.html``
tying them together.

The database is opened read-only (a running orchestrator may keep writing; WAL lets us read
a consistent snapshot). Bad input (no such file, not a database, tables missing, an
unreadable stats file) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from common import filekind, journal_store
from common.errors import ConfigError, DataError, DecodeError, StoreError
from common.histogram import LatencyHistogram
from services.orchestrator import report_html, report_metrics, report_plots

REQUIRED_TABLES = ("trades", "signals", "orders", "fills", "risk_rejects", "positions")
# stats file key -> the stage it measures (any other ``*_hist`` key is shown by its name)
STAGES = {"latency_hist": "feed receive -> brain"}
_TRADE_FIELDS = tuple(f.name for f in fields(report_metrics.Trade))
CSV_COLUMNS = (*_TRADE_FIELDS[:10], "opened_utc", "closed_utc", "holding_s",
               *_TRADE_FIELDS[10:], "net_pnl")


class ReportInputError(DataError):
    """Input the report cannot use; its message is the one line the user sees."""


# ---------------------------------------------------------------------------- reading
def open_readonly(path: Path) -> journal_store.JournalReader:
    if not path.is_file():
        raise ReportInputError(f"database not found: {path}")
    if wrong := filekind.refusal(path, ("sqlite",), "a run's database"):
        raise ReportInputError(wrong)
    try:
        reader = journal_store.open_reader(path, timeout_s=5.0)
        names = reader.table_names()
    except StoreError as exc:
        raise ReportInputError(f"cannot read {path} as an AEGIS database: {exc}") from exc
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing:
        reader.close()
        raise ReportInputError(f"{path} is not an AEGIS database: missing table(s) "
                               f"{', '.join(missing)}")
    return reader


def load_trades(reader: journal_store.JournalReader) -> list[report_metrics.Trade]:
    # a database from before funding: 0; from before slippage: NULL (unknown, not zero)
    defaults = {f: "NULL" if f == "slippage_bps" else "0" for f in _TRADE_FIELDS}
    return [report_metrics.Trade(**{**d, "learned": bool(d["learned"])})
            for d in reader.trade_rows(_TRADE_FIELDS, defaults)]


def load_counts(reader: journal_store.JournalReader) -> tuple[dict[str, int], dict[str, int]]:
    """Activity counts, and risk rejects by reason (most frequent first, then by name)."""
    return reader.activity_counts(), reader.rejects_by_reason()


def load_fees(reader: journal_store.JournalReader) -> float:
    """Every fee the account paid, USDT: the sum over all fills (the entries of positions still
    open included), rounded to 6 decimals as the run summary's ``fees_usdt`` (the brain's sum
    of the same fills) is. A fill in another asset carries fee 0 (``trader_fills._apply_fill``)."""
    return round(math.fsum(reader.fill_fees()), 6)


def stats_files(stats_dir: Path) -> list[Path]:
    """The brain's stats files (``brain.<pid>-<ns>.json``), in ``stats_dir`` or in its
    ``stats/`` subdirectory (so the run directory itself works too)."""
    if not stats_dir.is_dir():
        raise ReportInputError(f"stats directory not found: {stats_dir}")
    for d in (stats_dir, stats_dir / "stats"):
        found = sorted(p for pat in ("brain.*.json", "brain-*.json") for p in d.glob(pat))
        if found:
            return found
    return []


def load_latency(paths: list[Path]) -> dict[str, LatencyHistogram]:
    """Per-stage histograms, every incarnation merged (a restarted brain leaves one file each)."""
    stages: dict[str, LatencyHistogram] = {}
    for p in paths:
        try:
            stats = json.loads(p.read_text())
            for key, value in sorted(stats.items()):
                if key.endswith("_hist") and isinstance(value, dict):
                    name = STAGES.get(key, key)
                    h = LatencyHistogram.from_dict(value)
                    stages[name] = stages[name].merge(h) if name in stages else h
        except (OSError, ValueError, AttributeError, DecodeError) as exc:
            raise ReportInputError(f"unreadable stats file {p}: {exc}") from exc
    return stages


# ---------------------------------------------------------------------------- building
def latency_summary(stages: dict[str, LatencyHistogram]) -> dict[str, dict[str, float]]:
    return {name: {"count": h.count, **({"p50": h.percentile(50) / 1e3,
                                         "p90": h.percentile(90) / 1e3,
                                         "p99": h.percentile(99) / 1e3,
                                         "p999": h.percentile(99.9) / 1e3,
                                         "max": h.max / 1e3} if h.count else {})}
            for name, h in stages.items()}


def build_summary(*, database: str, m: report_metrics.Metrics, counts: dict[str, int],
                  by_reason: dict[str, int],
                  latency: dict[str, dict[str, float]] | None, fees_usdt: float = 0.0) -> dict[str, Any]:
    """summary.json (pure). No timestamp of its own: the same database gives the same file.
    ``fees_usdt``: every fee paid (``load_fees``); the metrics hold the closed trades' share."""
    return {"database": database, "metrics": asdict(m), "counts": counts, "fees_usdt": fees_usdt,
            "risk_rejects_by_reason": by_reason, "latency_us": latency}


def csv_row(t: report_metrics.Trade) -> list[Any]:
    d = asdict(t)
    d.update(opened_utc=report_metrics.utc_text(t.opened_ms), closed_utc=report_metrics.utc_text(t.closed_ms),
             holding_s=t.holding_s, net_pnl=t.net_pnl, learned=int(t.learned))
    return [d[c] for c in CSV_COLUMNS]


# ---------------------------------------------------------------------------- writing
def write_report(out: Path, *, db_path: Path, cfg: report_metrics.ReportConfig,
                 stats_dir: Path | None) -> dict[str, Any]:
    reader = open_readonly(db_path)
    try:
        trades = load_trades(reader)
        counts, by_reason = load_counts(reader)
        fees = load_fees(reader)
    except StoreError as exc:  # a table of an older schema, a damaged page
        raise ReportInputError(f"cannot read {db_path}: {exc}") from exc
    finally:
        reader.close()
    stages: dict[str, LatencyHistogram] = {}
    note: str | None = "no --stats-dir given."
    if stats_dir is not None:
        files = stats_files(stats_dir)
        stages = load_latency(files)
        if not files:
            note = f"no brain stats file in {stats_dir}."
        elif not stages:
            note = f"the brain stats files in {stats_dir} hold no latency histogram."
        else:
            note = None
    m = report_metrics.metrics(trades, cfg)
    summary = build_summary(database=str(db_path), m=m, counts=counts, by_reason=by_reason,
                            latency=latency_summary(stages) if stages else None, fees_usdt=fees)

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "trades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(csv_row(t) for t in trades)
    # allow_nan=False: an inf or NaN slipping into a metric is a bug, not a JSON extension
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    start = cfg.start_equity_usdt
    report_plots.plot_equity(out / "equity.png", report_metrics.equity_curve(trades, start),
                             report_metrics.drawdown_curve(trades, start), start)
    if stages:
        report_plots.plot_latency(out / "latency.png", stages)
    else:
        (out / "latency.png").unlink(missing_ok=True)  # a stale one from an earlier report
    (out / "index.html").write_text(report_html.render(summary, trades, latency_note=note),
                                    encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aegis report", description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, type=Path, help="the orchestrator's SQLite database")
    p.add_argument("--out", required=True, type=Path, help="report directory (created)")
    p.add_argument("--start-equity", type=float, default=report_metrics.ReportConfig().start_equity_usdt,
                   help="account equity before the first trade, USDT (default %(default)s)")
    p.add_argument("--stats-dir", type=Path,
                   help="stats directory of the run (or the run directory): latency histogram")
    args = p.parse_args(argv)
    try:
        cfg = report_metrics.ReportConfig(start_equity_usdt=args.start_equity)
    except ConfigError as exc:
        print(f"aegis report: --start-equity: {exc}", file=sys.stderr)
        return 2
    try:
        summary = write_report(args.out, db_path=args.db, cfg=cfg, stats_dir=args.stats_dir)
    except ReportInputError as exc:
        print(f"aegis report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out is a file, not writable, the disk is full
        print(f"aegis report: cannot write the report to {args.out}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    m = summary["metrics"]
    print(f"report written to {args.out}: {m['trades']} closed trades, "
          f"net {m['net_pnl_usdt']:,.2f} USDT ({m['return_pct']:+.2f} %), fees paid {summary['fees_usdt']:,.2f} USDT"
          + (f", funding {m['funding_usdt']:+,.4f} USDT" if m["funding_usdt"] else ""))
    return 0
