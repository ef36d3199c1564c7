"""The Parquet catalog: its layout, its manifests, and the readers a backtest streams from.

On disk::

    DIR/klines_1m/BTCUSDT/2024-01.parquet     one file per (dataset, symbol, UTC month)
    DIR/klines_1m/BTCUSDT/manifest.json       what each month file holds and came from
    DIR/aggTrades/BTCUSDT/2024-01.parquet
    DIR/fundingRate/BTCUSDT/2024-01.parquet

A month file has the kind's typed columns (``research.kinds``: int64 ms times, float64
prices and quantities, see there why not decimal128), sorted by time, zstd-compressed, in
row groups of ``ROW_GROUP_ROWS`` rows with min/max statistics (so a reader skips to a start
time without decoding what comes before). The symbol is not a column: it is the folder.

Each ``manifest.json`` records, per month: the source files (name, sha256, the span of time
each one covers, rows, where it came from), the row count, first and last timestamp, the
gaps found (``from_ms``/``to_ms``: open times of the first and last missing bar) and the
cells that had more digits than a float64 keeps. A month file counts as present only when
its manifest entry exists and its row count matches the file's: a file written by an
interrupted run is never taken for a complete one.

Readers: ``iter_bars`` streams record batches of one dataset for several symbols in time
order (a k-way merge over per-symbol month files, never the whole range in memory);
``read_funding`` returns the funding settlements of a range as one small table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import ConfigError, DataError
from research.convert import Gap
from research.kinds import kind_spec, parse_dataset

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
ROW_GROUP_ROWS = 65_536  # ~1.5 months of 1m bars, ~3 MB of aggTrades: a reader's unit of skipping
# a reader decodes one page of each column at a time. With pyarrow's 1 MiB pages a month of
# 1m klines is one page per column, decoded whole (~2.5 MB held per symbol stream); with
# 64 KiB pages an open month file holds ~1.1 MB, mostly per-column read and decode buffers
# (smaller pages or another codec measured no better)
DATA_PAGE_BYTES = 64 << 10
READ_BUFFER_BYTES = 64 << 10  # read column chunks through a buffer, not whole


def open_parquet(path: Path) -> pq.ParquetFile:
    """A month file opened for streaming. pyarrow's default pre-buffers whole row groups
    ahead of the reader and keeps them until the file is closed (measured: 77 MB held while
    streaming an 88 MB file 1,000 rows at a time); a buffered, non-pre-buffered reader holds a
    page per column (1.8 MB for the same file)."""
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
COMPRESSION = "zstd"
DEFAULT_BATCH_ROWS = 65_536
SYMBOL_COLUMN = "symbol"


# --------------------------------------------------------------------------- layout
def partition_path(catalog: Path, dataset: str, symbol: str, month: str) -> Path:
    return catalog / dataset / symbol / f"{month}.parquet"


def manifest_path(catalog: Path, dataset: str, symbol: str) -> Path:
    return catalog / dataset / symbol / MANIFEST


# --------------------------------------------------------------------------- records
@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    """One file a partition's rows came from."""

    name: str
    sha256: str
    span: tuple[int, int]  # [start, end) ms the file covers (its month or day)
    rows: int  # rows it gave to this partition
    origin: str  # the URL it was downloaded from, or "import:<path>"
    inexact_cells: int = 0  # cells of the file with more than 15 significant digits

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "span_ms": list(self.span),
                "rows": self.rows, "origin": self.origin, "inexact_cells": self.inexact_cells}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SourceRecord:
        return cls(name=d["name"], sha256=d["sha256"], span=(int(d["span_ms"][0]), int(d["span_ms"][1])),
                   rows=int(d["rows"]), origin=d["origin"], inexact_cells=int(d.get("inexact_cells", 0)))


@dataclass(frozen=True, kw_only=True)
class PartitionRecord:
    """What one month file holds."""

    dataset: str
    symbol: str
    month: str  # YYYY-MM
    rows: int
    first_ms: int
    last_ms: int
    gaps: tuple[Gap, ...]
    sources: tuple[SourceRecord, ...]
    bytes: int = 0

    @property
    def inexact_cells(self) -> int:
        return sum(s.inexact_cells for s in self.sources)

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "symbol": self.symbol, "month": self.month,
                "file": f"{self.month}.parquet", "rows": self.rows, "bytes": self.bytes,
                "first_ms": self.first_ms, "last_ms": self.last_ms,
                "gaps": [g.to_json() for g in self.gaps], "inexact_cells": self.inexact_cells,
                "sources": [s.to_json() for s in self.sources]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PartitionRecord:
        return cls(dataset=d["dataset"], symbol=d["symbol"], month=d["month"], rows=int(d["rows"]),
                   first_ms=int(d["first_ms"]), last_ms=int(d["last_ms"]),
                   gaps=tuple(Gap(from_ms=int(g["from_ms"]), to_ms=int(g["to_ms"]), bars=int(g["bars"]))
                              for g in d.get("gaps", ())),
                   sources=tuple(SourceRecord.from_json(s) for s in d["sources"]),
                   bytes=int(d.get("bytes", 0)))


def merge_sources(stored: tuple[SourceRecord, ...],
                  fresh: tuple[SourceRecord, ...]) -> tuple[SourceRecord, ...]:
    """The sources of a partition after ``fresh`` ones are added to ``stored`` ones. Pure.

    A fresh source replaces every stored one whose span lies inside its own (a month file
    replaces that month's day files; a day file replaces the same day). A fresh source that
    covers only part of a stored one (a day into a month built from the month file) is a
    ``DataError``: the rest of the stored file's rows could not be kept apart from it."""
    kept = []
    for s in stored:
        inside = [f for f in fresh if f.span[0] <= s.span[0] and s.span[1] <= f.span[1]]
        partial = [f for f in fresh if f.span[0] < s.span[1] and s.span[0] < f.span[1]]
        if inside:
            continue
        if partial:
            raise DataError(f"{partial[0].name} covers part of {s.name}, which is already in the "
                             "catalog; a day cannot replace part of a month file")
        kept.append(s)
    out = sorted(kept + list(fresh), key=lambda s: s.span)
    for a, b in zip(out, out[1:]):
        if b.span[0] < a.span[1]:
            raise DataError(f"{a.name} and {b.name} overlap")
    return tuple(out)


# --------------------------------------------------------------------------- manifests
def load_manifest(catalog: Path, dataset: str, symbol: str) -> dict[str, PartitionRecord]:
    """month -> record, for one dataset and symbol ({} when there is none)."""
    path = manifest_path(catalog, dataset, symbol)
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    return {m: PartitionRecord.from_json(r) for m, r in doc.get("partitions", {}).items()}


def save_manifest(catalog: Path, dataset: str, symbol: str, records: dict[str, PartitionRecord]) -> None:
    """Write the manifest atomically (temp file, fsync, rename)."""
    path = manifest_path(catalog, dataset, symbol)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": MANIFEST_VERSION, "dataset": dataset, "symbol": symbol,
           "partitions": {m: records[m].to_json() for m in sorted(records)}}
    tmp = path.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_present(catalog: Path, record: PartitionRecord) -> bool:
    """The month file exists and holds exactly the rows its manifest entry says."""
    path = partition_path(catalog, record.dataset, record.symbol, record.month)
    try:
        return pq.read_metadata(path).num_rows == record.rows
    except (OSError, pa.ArrowInvalid):
        return False


def datasets(catalog: Path) -> list[tuple[str, str]]:
    """(dataset, symbol) pairs that have a manifest, sorted."""
    out = []
    for m in sorted(catalog.glob(f"*/*/{MANIFEST}")):
        out.append((m.parent.parent.name, m.parent.name))
    return out


def scan(catalog: Path) -> list[PartitionRecord]:
    """Every partition of the catalog, in (dataset, symbol, month) order."""
    out: list[PartitionRecord] = []
    for dataset, symbol in datasets(catalog):
        recs = load_manifest(catalog, dataset, symbol)
        out.extend(recs[m] for m in sorted(recs))
    return out


@dataclass(frozen=True, kw_only=True)
class Holding:
    """One line of ``aegis data list``: a dataset of one symbol."""

    dataset: str
    symbol: str
    months: tuple[str, ...]
    rows: int
    first_ms: int
    last_ms: int
    gaps: int
    missing_bars: int
    bytes: int
    inexact_cells: int
    damaged: tuple[str, ...]  # months whose file is absent or disagrees with the manifest


def holdings(catalog: Path) -> list[Holding]:
    """What the catalog holds, per dataset and symbol."""
    out = []
    for dataset, symbol in datasets(catalog):
        recs = load_manifest(catalog, dataset, symbol)
        if not recs:
            continue
        rs = [recs[m] for m in sorted(recs)]
        out.append(Holding(
            dataset=dataset, symbol=symbol, months=tuple(r.month for r in rs),
            rows=sum(r.rows for r in rs), first_ms=min(r.first_ms for r in rs),
            last_ms=max(r.last_ms for r in rs), gaps=sum(len(r.gaps) for r in rs),
            missing_bars=sum(g.bars for r in rs for g in r.gaps), bytes=sum(r.bytes for r in rs),
            inexact_cells=sum(r.inexact_cells for r in rs),
            damaged=tuple(r.month for r in rs if not is_present(catalog, r))))
    return out


# --------------------------------------------------------------------------- reading
def _month_files(catalog: Path, dataset: str, symbol: str, start_ms: int,
                 end_ms: int) -> list[Path]:
    recs = load_manifest(catalog, dataset, symbol)
    return [partition_path(catalog, dataset, symbol, m) for m in sorted(recs)
            if recs[m].first_ms < end_ms and recs[m].last_ms >= start_ms and is_present(catalog, recs[m])]


def row_groups_between(pf: pq.ParquetFile, time_index: int, start_ms: int, end_ms: int) -> list[int]:
    """Row groups whose time statistics overlap [start, end)."""
    keep = []
    for i in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(i).column(time_index).statistics
        if stats is None or not stats.has_min_max or (stats.min < end_ms and stats.max >= start_ms):
            keep.append(i)
    return keep


def _symbol_stream(catalog: Path, dataset: str, symbol: str, time_col: str, start_ms: int,
                   end_ms: int, batch_rows: int, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    """One symbol's rows in [start, end), in batches of at most ``batch_rows``."""
    for path in _month_files(catalog, dataset, symbol, start_ms, end_ms):
        pf = open_parquet(path)
        try:
            names = pf.schema_arrow.names
            groups = row_groups_between(pf, names.index(time_col), start_ms, end_ms)
            if not groups:
                continue
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns):
                t = batch.column(time_col).to_numpy()
                lo, hi = np.searchsorted(t, start_ms, "left"), np.searchsorted(t, end_ms, "left")
                if hi > lo:
                    yield batch.slice(lo, hi - lo)
        finally:
            pf.close()


def iter_bars(catalog: Path | str, kind: str, symbols: list[str], start_ms: int, end_ms: int, *,
              batch_rows: int = DEFAULT_BATCH_ROWS,
              columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of ``kind`` (a catalog dataset: ``klines_1m``, ``aggTrades``, ...) for
    ``symbols`` over [start_ms, end_ms), in time order, each of at most ``batch_rows`` rows.

    Rows are ordered by (time, the symbol's place in ``symbols``, the row's place in its
    file); the first column, ``symbol``, is dictionary-encoded with ``symbols`` as its
    dictionary (index i = ``symbols[i]``), then the kind's columns (or ``columns``; the time
    column is always included). Every batch has exactly ``batch_rows`` rows but the last.
    Memory does not grow with the range: each symbol's month file is open one at a time and
    read ``batch_rows // len(symbols)`` rows at a time (row groups before ``start_ms``
    skipped by their statistics), then merged by timestamp; held are a few batches plus
    about 1-2 MB of reader buffers per symbol (bench/bench_data_quick.py: 88.5 MB for 50
    symbols of 1m klines in 65,536-row batches). A month missing from the catalog is simply
    absent from the stream."""
    catalog = Path(catalog)
    kind_name, _ = parse_dataset(kind)
    time_col = kind_spec(kind_name).time_column
    if batch_rows < 1:
        raise ConfigError("batch_rows must be at least 1")
    if len(set(symbols)) != len(symbols):
        raise ConfigError(f"symbols repeat: {symbols}")
    if columns is not None and time_col not in columns:
        columns = [time_col, *columns]
    per_symbol = max(1, batch_rows // max(1, len(symbols)))
    streams = [_symbol_stream(catalog, kind, s, time_col, start_ms, end_ms, per_symbol, columns)
               for s in symbols]
    dictionary = pa.array(symbols, pa.string())

    def out(table: pa.Table) -> pa.RecordBatch:
        batch = table.combine_chunks().to_batches()[0]
        names = [n for n in batch.schema.names if n != _ORIGIN]
        sym = pa.DictionaryArray.from_arrays(batch.column(_ORIGIN), dictionary)
        fields = [pa.field(SYMBOL_COLUMN, sym.type, nullable=False)] + [batch.schema.field(n) for n in names]
        return pa.RecordBatch.from_arrays([sym, *(batch.column(n) for n in names)], schema=pa.schema(fields))

    # merged rows are cut into batches of exactly batch_rows (the last one shorter)
    pending: pa.Table | None = None
    for table in _merge(streams, time_col):
        pending = table if pending is None else pa.concat_tables([pending, table])
        while pending.num_rows >= batch_rows:
            yield out(pending.slice(0, batch_rows))
            pending = pending.slice(batch_rows)
    if pending is not None and pending.num_rows:
        yield out(pending)


_ORIGIN = "__stream"


def _merge(streams: list[Iterator[pa.RecordBatch]], time_col: str) -> Iterator[pa.Table]:
    """K-way merge of time-sorted streams into time-sorted tables (ties: stream order).

    Each round emits every buffered row earlier than the bound (the smallest last-buffered
    time among streams not yet exhausted: no later read can bring anything before it), then
    refills the streams that ran dry or hold only rows at the bound."""
    n = len(streams)
    bufs: list[pa.Table | None] = [None] * n
    done = [False] * n

    def pull(i: int) -> None:
        try:
            batch = next(streams[i])
        except StopIteration:
            done[i] = True
            return
        codes = pa.array(np.full(batch.num_rows, i, dtype=np.int32))
        t = pa.Table.from_batches([batch]).append_column(_ORIGIN, codes)
        buf = bufs[i]
        bufs[i] = t if buf is None or buf.num_rows == 0 else pa.concat_tables([buf, t])

    def fill(i: int) -> None:
        while not done[i] and (bufs[i] is None or bufs[i].num_rows == 0):
            pull(i)

    def times(i: int) -> np.ndarray:
        return bufs[i].column(time_col).to_numpy()

    for i in range(n):
        fill(i)
    while True:
        live = [i for i in range(n) if bufs[i] is not None and bufs[i].num_rows]
        if not live:
            return
        open_ = [i for i in live if not done[i]]
        bound = min(int(times(i)[-1]) for i in open_) if open_ else None
        parts = []
        for i in live:
            k = bufs[i].num_rows if bound is None else int(np.searchsorted(times(i), bound, "left"))
            if k:
                parts.append(bufs[i].slice(0, k))
                bufs[i] = bufs[i].slice(k)
        if parts:
            if len(parts) == 1:
                yield parts[0].combine_chunks()
            else:
                merged = pa.concat_tables(parts).combine_chunks()
                order = np.argsort(merged.column(time_col).to_numpy(), kind="stable")
                yield merged.take(pa.array(order))
        for i in range(n):
            if done[i]:
                continue
            if bufs[i] is None or bufs[i].num_rows == 0:
                fill(i)
            elif bound is not None and int(times(i)[0]) == bound:
                pull(i)  # only rows at the bound are left: more may share it


def read_funding(catalog: Path | str, symbols: list[str], start_ms: int, end_ms: int) -> pa.Table:
    """Funding settlements of ``symbols`` with ``calc_time`` in [start_ms, end_ms), ordered by
    (calc_time, symbol order): columns symbol, calc_time, funding_interval_hours,
    last_funding_rate. Small (three a day per symbol), so returned whole."""
    batches = list(iter_bars(catalog, "fundingRate", symbols, start_ms, end_ms))
    if batches:
        return pa.Table.from_batches(batches)
    schema = pa.schema([pa.field(SYMBOL_COLUMN, pa.dictionary(pa.int32(), pa.string()), nullable=False),
                        *kind_spec("fundingRate").schema])
    return schema.empty_table()
