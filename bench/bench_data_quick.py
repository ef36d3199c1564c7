"""Quick data-catalog benchmark: ``aegis data download`` of the December 2024 BTCUSDT 1m
month from the local archive (research.localarchive: the repository's real candles laid out
as Binance's archive, served on 127.0.0.1), the same month from its 29 day files, a resumed
run, the catalog's size on disk, and ``iter_bars`` streaming speed and memory (one symbol,
and 50 derived copies of it merged by time).
Prints numbers and returns them as a dict (``run()``); it asserts nothing.

    .venv/bin/python bench/bench_data_quick.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import pyarrow as pa

from research.catalog import iter_bars
from research.fetch import HttpConfig
from research.ingest import DownloadConfig, run_download
from research.localarchive import build_archive, serving

MONTH_ZIP = "data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12.zip"
N_DERIVED = 50


def _derive(catalog: Path, n: int) -> list[str]:
    """BTCUSDT's month files and manifest copied under n derived demo symbol names."""
    src = catalog / "klines_1m" / "BTCUSDT"
    names = [f"D{i:03d}USDT" for i in range(1, n + 1)]
    for name in names:
        shutil.copytree(src, src.parent / name)
        m = src.parent / name / "manifest.json"
        doc = json.loads(m.read_text())
        doc["symbol"] = name
        for rec in doc["partitions"].values():
            rec["symbol"] = name
        m.write_text(json.dumps(doc))
    return names


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def _download(server, catalog: Path, first: date, last: date, workers: int = 4):
    cfg = DownloadConfig(catalog=catalog, base_url=server.base_url, workers=workers,
                         http=HttpConfig(attempts=1))
    t0 = time.perf_counter()
    report = run_download(cfg=cfg, symbols=["BTCUSDT"], kinds=["klines"], interval="1m", first=first, last=last)
    return report, time.perf_counter() - t0


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="aegis-data-bench-") as tmp:
        root = Path(tmp)
        build_archive(root / "archive")
        with serving(root / "archive") as server:
            # the first conversion of a process pays pyarrow's start-up (~0.3 s): warm up on a
            # day, then take the median of three downloads of the month into fresh catalogs
            _download(server, root / "warm", date(2024, 12, 5), date(2024, 12, 5))
            times = []
            for i in range(3):
                month, s = _download(server, root / f"cat_month{i}", date(2024, 12, 1), date(2024, 12, 31))
                times.append(s)
            (root / "cat_month0").rename(root / "cat_month")
            s = sorted(times)[1]
            out["month_seconds"] = s
            out["month_rows"] = month.rows_written
            out["month_rows_per_s"] = month.rows_written / s
            out["month_zip_bytes"] = (root / "archive" / MONTH_ZIP).stat().st_size
            out["month_parquet_bytes"] = _size(root / "cat_month")
            _, s = _download(server, root / "cat_month", date(2024, 12, 1), date(2024, 12, 31))
            out["resume_seconds"] = s
            days, s = _download(server, root / "cat_days", date(2024, 12, 1), date(2024, 12, 29))
            out["days_seconds"] = s
            out["days_files"] = days.file_counts()["downloaded"]
            out["days_rows_per_s"] = days.rows_written / s
        base = pa.total_allocated_bytes()
        peak, rows = 0, 0
        t0 = time.perf_counter()
        for batch in iter_bars(root / "cat_month", "klines_1m", ["BTCUSDT"], 0, 2**62, batch_rows=10_000):
            rows += batch.num_rows
            peak = max(peak, pa.total_allocated_bytes() - base)
        s = time.perf_counter() - t0
        out["stream_rows_per_s"] = rows / s
        out["stream_peak_bytes"] = peak
        # many symbols: the December month copied under derived demo names (D001USDT, ...: the
        # same real bars, not real markets), merged by time 65,536 rows at a time
        symbols = _derive(root / "cat_month", N_DERIVED)
        base = pa.total_allocated_bytes()
        peak, rows = 0, 0
        t0 = time.perf_counter()
        for batch in iter_bars(root / "cat_month", "klines_1m", symbols, 0, 2**62, batch_rows=65_536):
            rows += batch.num_rows
            peak = max(peak, pa.total_allocated_bytes() - base)
        s = time.perf_counter() - t0
        out["merge_symbols"] = len(symbols)
        out["merge_rows"] = rows
        out["merge_rows_per_s"] = rows / s
        out["merge_peak_bytes"] = peak
    print(f"download Dec 2024 month file: {out['month_rows']:,.0f} rows in {out['month_seconds']:.2f} s (median of 3) "
          f"({out['month_rows_per_s']:,.0f} rows/s, download + check + convert + write)")
    print(f"  zip {out['month_zip_bytes'] / 1e6:.2f} MB -> Parquet {out['month_parquet_bytes'] / 1e6:.2f} MB")
    print(f"resume (nothing new): {out['resume_seconds']:.3f} s")
    print(f"same month from {out['days_files']:.0f} day files: {out['days_seconds']:.2f} s "
          f"({out['days_rows_per_s']:,.0f} rows/s)")
    print(f"iter_bars 10,000-row batches: {out['stream_rows_per_s']:,.0f} rows/s, "
          f"peak {out['stream_peak_bytes'] / 1e6:.2f} MB held by pyarrow")
    print(f"iter_bars over {out['merge_symbols']:.0f} symbols ({out['merge_rows']:,.0f} rows, 65,536-row batches): "
          f"{out['merge_rows_per_s']:,.0f} rows/s, peak {out['merge_peak_bytes'] / 1e6:.1f} MB held by pyarrow")
    return out


if __name__ == "__main__":
    run()
