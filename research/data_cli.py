"""``aegis data``: Binance's public data archive -> a local Parquet catalog.

    aegis data download --symbols BTCUSDT,ETHUSDT --kinds klines,aggTrades,fundingRate,markPriceKlines
                        --interval 1m --from 2024-01-01 --to 2024-03-31 --catalog DIR
                        [--base-url URL] [--workers N]
    aegis data list --catalog DIR [--json]
    aegis data import FILE --catalog DIR [--symbol S --kind K --interval I]

Exit status: 0 when every file was stored, kept or is simply not in the archive (missing);
1 when a file was refused (bad checksum, damaged zip, wrong columns, ...) or failed (network,
after retries); 2 for bad arguments. docs/data.md explains the catalog and every check.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from common import log as aegis_log
from common.errors import ConfigError, DataError
from research.archive import DEFAULT_BASE_URL, parse_day
from research.catalog import holdings
from research.fetch import HttpConfig
from research.ingest import (FAILED, MISSING, REFUSED, WRITTEN, DownloadConfig, FileOutcome,
                             RunReport, describe, run_download, run_import)
from research.kinds import INTERVAL_MS, KINDS

MAX_GAPS_SHOWN = 5
MAX_MISSING_SHOWN = 20


def fmt_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _csv_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


class RichProgress:
    """A progress bar over files, on stderr."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=False)
        self.task = self.progress.add_task("files", total=0)
        self.counts: dict[str, int] = {}

    def add_files(self, n: int) -> None:
        total = self.progress.tasks[0].total or 0
        self.progress.update(self.task, total=total + n)

    def file_done(self, outcome: FileOutcome) -> None:
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        desc = "files " + " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        self.progress.update(self.task, advance=1, description=desc)


def print_report(report: RunReport, out: Console) -> None:
    files = report.file_counts()
    parts = report.partition_counts()
    mb = report.bytes_downloaded / 1e6
    rate = report.rows_written / report.seconds if report.seconds > 0 else 0.0
    out.print(f"files: {', '.join(f'{k} {v}' for k, v in sorted(files.items())) or 'none'}")
    out.print(f"month files: {', '.join(f'{k} {v}' for k, v in sorted(parts.items())) or 'none'}")
    fetched = f"downloaded {mb:.2f} MB, " if report.bytes_downloaded else ""
    out.print(f"{fetched}wrote {report.rows_written:,} rows in {report.seconds:.2f} s ({rate:,.0f} rows/s)")
    if report.reasons():
        out.print("refused or failed, by reason: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(report.reasons().items())))
    for p in report.partitions:
        for f in p.files:
            if f.status in (REFUSED, FAILED):
                out.print(f"  {f.status.upper()} {f.name} ({f.reason}): {f.message}")
        if p.message:
            out.print(f"  NOT WRITTEN {p.dataset}/{p.symbol}/{p.month}: {p.message}")
    missing = [(p, [f.name for f in p.files if f.status == MISSING]) for p in report.partitions]
    missing = [(p, names) for p, names in missing if names]
    if missing:
        n = sum(len(names) for _, names in missing)
        out.print(f"missing from the archive: {n} files (a symbol listed later, or not published yet)")
        for p, names in missing[:MAX_MISSING_SHOWN]:
            what = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} day files"
            out.print(f"  {p.dataset}/{p.symbol}/{p.month}: {what}")
        if len(missing) > MAX_MISSING_SHOWN:
            out.print(f"  ... and {len(missing) - MAX_MISSING_SHOWN} more months")
    for p in report.partitions:
        if p.status == WRITTEN and p.record is not None and p.record.gaps:
            gaps = p.record.gaps
            bars = sum(g.bars for g in gaps)
            out.print(f"gaps in {p.dataset}/{p.symbol}/{p.month}: {len(gaps)} ({bars} bars missing; data kept)")
            for g in gaps[:MAX_GAPS_SHOWN]:
                out.print(f"  {fmt_ms(g.from_ms)} .. {fmt_ms(g.to_ms)} UTC ({g.bars} bars)")
            if len(gaps) > MAX_GAPS_SHOWN:
                out.print(f"  ... and {len(gaps) - MAX_GAPS_SHOWN} more (manifest.json has them all)")


def _write_summary(path: str | None, report: RunReport) -> None:
    if path:
        Path(path).write_text(json.dumps(describe(report), indent=1) + "\n")


def cmd_download(args: argparse.Namespace) -> int:
    for k in args.kinds:
        if k not in KINDS:
            raise ConfigError(f"unknown kind {k!r}: one of {', '.join(KINDS)}")
    if args.interval not in INTERVAL_MS:
        raise ConfigError(f"unknown interval {args.interval!r}: one of {', '.join(INTERVAL_MS)}")
    if not args.symbols:
        raise ConfigError("--symbols is empty")
    cfg = DownloadConfig(catalog=Path(args.catalog), base_url=args.base_url, workers=args.workers,
                         http=HttpConfig(timeout_s=args.timeout_s, attempts=args.attempts))
    err = Console(stderr=True)
    bar = None if args.no_progress or not err.is_terminal else RichProgress(err)
    try:
        if bar is not None:
            with bar.progress:
                report = run_download(cfg=cfg, symbols=[s.upper() for s in args.symbols], kinds=args.kinds,
                                      interval=args.interval, first=args.first, last=args.last, progress=bar)
        else:
            report = run_download(cfg=cfg, symbols=[s.upper() for s in args.symbols], kinds=args.kinds,
                                  interval=args.interval, first=args.first, last=args.last)
    except (DataError, ValueError) as exc:  # ValueError: Python's own, from a value of the command line
        raise ConfigError(str(exc)) from None
    print_report(report, Console(highlight=False, soft_wrap=True))
    _write_summary(args.summary_json, report)
    return 0 if report.ok else 1


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    try:
        report = run_import(catalog=Path(args.catalog), path=path, kind=args.kind, symbol=args.symbol,
                            interval=args.interval)
    except (DataError, ValueError) as exc:  # ValueError: Python's own, from a value of the command line
        raise ConfigError(str(exc)) from None
    out = Console(highlight=False, soft_wrap=True)
    print_report(report, out)
    for p in report.partitions:
        if p.record is not None:
            r = p.record
            out.print(f"{p.status} {r.dataset}/{r.symbol}/{r.month}: {r.rows:,} rows, "
                      f"{fmt_ms(r.first_ms)} .. {fmt_ms(r.last_ms)} UTC")
    _write_summary(args.summary_json, report)
    return 0 if report.ok else 1


def cmd_list(args: argparse.Namespace) -> int:
    catalog = Path(args.catalog)
    if not catalog.is_dir():
        raise ConfigError(f"no catalog at {catalog}")
    rows = holdings(catalog)
    if args.json:
        print(json.dumps([{
            "dataset": h.dataset, "symbol": h.symbol, "months": list(h.months), "rows": h.rows,
            "first_ms": h.first_ms, "last_ms": h.last_ms, "gaps": h.gaps, "missing_bars": h.missing_bars,
            "bytes": h.bytes, "inexact_cells": h.inexact_cells, "damaged": list(h.damaged)} for h in rows],
            indent=1))
        return 0
    table = Table(title=f"catalog {catalog}")
    for col in ("kind", "symbol", "months", "rows", "first (UTC)", "last (UTC)", "gaps", "MB", "notes"):
        table.add_column(col, justify="right" if col in ("rows", "gaps", "MB") else "left",
                         no_wrap=col != "notes")
    for h in rows:
        months = h.months[0] if len(h.months) == 1 else f"{h.months[0]}..{h.months[-1]} ({len(h.months)})"
        notes = []
        if h.damaged:
            notes.append(f"damaged: {', '.join(h.damaged)}")
        if h.inexact_cells:
            notes.append(f"{h.inexact_cells} inexact cells")
        gaps = f"{h.gaps} ({h.missing_bars} bars)" if h.gaps else "0"
        table.add_row(h.dataset, h.symbol, months, f"{h.rows:,}", fmt_ms(h.first_ms), fmt_ms(h.last_ms),
                      gaps, f"{h.bytes / 1e6:.2f}", "; ".join(notes))
    Console(highlight=False, width=max(160, Console().width)).print(table)
    if not rows:
        print("the catalog is empty")
    return 1 if any(h.damaged for h in rows) else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aegis data", description=__doc__.split("\n\n")[0])
    p.add_argument("--log-level", default="warning")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("download", help="fetch archive files into the catalog (resumes)")
    d.add_argument("--symbols", type=_csv_list, required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    d.add_argument("--kinds", type=_csv_list, default=["klines"], help=f"comma-separated: {','.join(KINDS)}")
    d.add_argument("--interval", default="1m", help="kline interval (klines, markPriceKlines)")
    d.add_argument("--from", dest="first", type=parse_day, required=True, help="first day, UTC, YYYY-MM-DD")
    d.add_argument("--to", dest="last", type=parse_day, required=True, help="last day (inclusive), UTC")
    d.add_argument("--catalog", required=True)
    d.add_argument("--base-url", default=DEFAULT_BASE_URL)
    d.add_argument("--workers", type=int, default=4, help="files downloaded and checked at once (1..32)")
    d.add_argument("--attempts", type=int, default=3, help="tries per request on network errors")
    d.add_argument("--timeout-s", type=float, default=30.0)
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--summary-json", help="also write the run's summary as JSON to this path")
    d.set_defaults(fn=cmd_download)

    i = sub.add_parser("import", help="add a local archive zip or CSV to the catalog")
    i.add_argument("file")
    i.add_argument("--catalog", required=True)
    i.add_argument("--kind", choices=list(KINDS))
    i.add_argument("--symbol")
    i.add_argument("--interval")
    i.add_argument("--summary-json")
    i.set_defaults(fn=cmd_import)

    ls = sub.add_parser("list", help="what the catalog holds")
    ls.add_argument("--catalog", required=True)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    aegis_log.configure(level=args.log_level, service="data")
    return int(args.fn(args))
