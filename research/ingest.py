"""The imperative shell of ``aegis data download`` and ``aegis data import``.

Download, per partition (dataset, symbol, month) of the plan, in a bounded thread pool:

1. for each archive file of the partition: fetch its ``.CHECKSUM`` (404: the file is
   *missing*; a month file that is missing falls back to that month's day files);
2. a file already in the catalog with the same sha256 is *kept*, not downloaded again;
3. otherwise the zip is downloaded under a temporary name, its sha256 checked (a mismatch:
   *refused*, deleted), converted into a checked part (a bad file: *refused* with its
   reason), and deleted;
4. the month file is rebuilt from its sources (fresh parts, plus the kept rows of sources
   already there) and renamed into place; the main thread then writes the manifest entry.

A file that still fails after the retries is *failed* (retried by the next run). Nothing
is half-written: temp names, renames, and a month file that disagrees with its manifest
entry is rebuilt. One ``aegis data`` command at a time per catalog (a lock file).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import structlog

from common.errors import AegisError, ConfigError, DataError, DecodeError
from research.archive import (DEFAULT_BASE_URL, ArchiveFile, PartitionRequest, Period, checksum_url,
                              daily_files, file_url, import_target, parse_checksum, plan)
from research.catalog import (PartitionRecord, SourceRecord, is_present, load_manifest, merge_sources,
                              partition_path, save_manifest)
from research.convert import refuse
from research.fetch import HttpConfig, Stopped, download, file_sha256, get_text
from research.kinds import dataset_name, kind_spec
from research.writer import (Cancelled, Part, Piece, assemble, clean_tmp, convert_file, find_staged, stage,
                             tmp_name)

log = structlog.get_logger(__name__)
LOCK_FILE = ".lock"
MAX_WORKERS = 32



class FileStatus(StrEnum):
    """What became of one archive file (a counter label; compares equal to its value)."""

    DOWNLOADED = "downloaded"
    RESUMED = "resumed"  # checked by an interrupted run and staged: not fetched again
    IMPORTED = "imported"
    KEPT = "kept"  # already in the catalog with the same sha256
    MISSING = "missing"  # the archive answers 404
    REFUSED = "refused"  # a bad file: see its reason
    FAILED = "failed"  # network or disk trouble after the retries: tried again next run


class MonthStatus(StrEnum):
    """What became of one month file."""

    WRITTEN = "written"
    UNCHANGED = "unchanged"
    ABSENT = "absent"  # no file of it in the archive
    NOT_WRITTEN = "not_written"  # its files were refused or failed, or they conflict


DOWNLOADED, RESUMED, IMPORTED, KEPT = (FileStatus.DOWNLOADED, FileStatus.RESUMED, FileStatus.IMPORTED,
                                       FileStatus.KEPT)
MISSING, REFUSED, FAILED = FileStatus.MISSING, FileStatus.REFUSED, FileStatus.FAILED
WRITTEN, UNCHANGED, ABSENT, NOT_WRITTEN = (MonthStatus.WRITTEN, MonthStatus.UNCHANGED, MonthStatus.ABSENT,
                                           MonthStatus.NOT_WRITTEN)


@dataclass(frozen=True, kw_only=True)
class DownloadConfig:
    catalog: Path
    base_url: str = DEFAULT_BASE_URL
    workers: int = 4
    http: HttpConfig = field(default_factory=HttpConfig)


@dataclass(frozen=True, kw_only=True)
class FileOutcome:
    name: str
    status: FileStatus
    reason: str = ""  # the refusal or failure reason (a counter label)
    message: str = ""
    bytes: int = 0


@dataclass(frozen=True, kw_only=True)
class PartitionOutcome:
    dataset: str
    symbol: str
    month: str
    status: MonthStatus
    files: tuple[FileOutcome, ...]
    record: PartitionRecord | None = None
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class RunReport:
    partitions: tuple[PartitionOutcome, ...]
    seconds: float

    @property
    def files(self) -> list[FileOutcome]:
        return [f for p in self.partitions for f in p.files]

    def file_counts(self) -> Counter[str]:
        return Counter(f.status for f in self.files)

    def reasons(self) -> Counter[str]:
        """Refusals and failures by reason: the counters of bad input."""
        return Counter(f.reason for f in self.files if f.status in (REFUSED, FAILED))

    def partition_counts(self) -> Counter[str]:
        return Counter(p.status for p in self.partitions)

    @property
    def rows_written(self) -> int:
        return sum(p.record.rows for p in self.partitions if p.status == WRITTEN and p.record)

    @property
    def bytes_downloaded(self) -> int:
        return sum(f.bytes for f in self.files if f.status == DOWNLOADED)

    @property
    def ok(self) -> bool:
        """No file was refused or failed and every month could be written (missing files
        are not errors)."""
        c = self.file_counts()
        return c[REFUSED] == 0 and c[FAILED] == 0 and self.partition_counts()[NOT_WRITTEN] == 0


class ProgressPort(Protocol):
    """Where the shell reports progress (a progress bar; nothing in tests)."""

    def add_files(self, n: int) -> None: ...

    def file_done(self, outcome: FileOutcome) -> None: ...


class NoProgress:
    def add_files(self, n: int) -> None:
        pass

    def file_done(self, outcome: FileOutcome) -> None:
        pass


@contextmanager
def catalog_lock(catalog: Path) -> Iterator[None]:
    """Hold the catalog's lock file; ConfigError when another command holds it."""
    catalog.mkdir(parents=True, exist_ok=True)
    fd = os.open(catalog / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another aegis data command is using {catalog}") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


# --------------------------------------------------------------------------- one file
@dataclass(frozen=True, kw_only=True)
class _Fetched:
    outcome: FileOutcome
    fresh: tuple[SourceRecord, Part] | None = None  # downloaded (or resumed) and checked


def _fetch_file(f: ArchiveFile, stored: dict[str, SourceRecord], cfg: DownloadConfig,
                stop: threading.Event) -> _Fetched:
    url = file_url(cfg.base_url, f)
    try:
        text = get_text(checksum_url(cfg.base_url, f), cfg.http, stop)
        if text is None:
            return _Fetched(outcome=FileOutcome(name=f.name, status=MISSING, message="HTTP 404"))
        try:
            sha = parse_checksum(text)
        except DecodeError as exc:
            raise refuse("checksum_mismatch", f"{f.name}.CHECKSUM is unreadable: {exc}") from None
        old = stored.get(f.name)
        if old is not None and old.sha256 == sha:
            return _Fetched(outcome=FileOutcome(name=f.name, status=KEPT))  # stays among the stored sources
        staged = find_staged(cfg.catalog, f.name, sha)
        if staged is not None:
            return _Fetched(outcome=FileOutcome(name=f.name, status=RESUMED), fresh=staged)
        zip_path = tmp_name(cfg.catalog, f.name, ".zip")
        try:
            size = download(url, zip_path, sha256=sha, cfg=cfg.http, stop=stop)
            if size is None:
                return _Fetched(outcome=FileOutcome(name=f.name, status=MISSING,
                                                    message="HTTP 404 for the zip (its CHECKSUM exists)"))
            parts, state = convert_file(zip_path, catalog=cfg.catalog, kind=f.kind, interval=f.interval,
                                        period=f.period, test_crc=False, stop=stop)
        finally:
            zip_path.unlink(missing_ok=True)
        (part,) = parts  # the period check keeps a file's rows inside one month
        source = SourceRecord(name=f.name, sha256=sha, span=(f.period.start_ms, f.period.end_ms),
                              rows=state.rows, origin=url, inexact_cells=state.inexact_cells)
        part = stage(cfg.catalog, source, part)
        return _Fetched(outcome=FileOutcome(name=f.name, status=DOWNLOADED, bytes=size), fresh=(source, part))
    except DecodeError as exc:
        log.warning("data.file_refused", file=f.name, reason=exc.reason, error=str(exc))
        return _Fetched(outcome=FileOutcome(name=f.name, status=REFUSED, reason=exc.reason, message=str(exc)))
    except (Stopped, Cancelled):
        raise Cancelled("interrupted") from None
    except AegisError as exc:
        log.warning("data.file_failed", file=f.name, reason=exc.reason, error=str(exc))
        return _Fetched(outcome=FileOutcome(name=f.name, status=FAILED, reason=exc.reason, message=str(exc)))
    except OSError as exc:  # the local disk (full, not writable): the file is retried next run
        log.warning("data.file_failed", file=f.name, reason="io", error=str(exc))
        return _Fetched(outcome=FileOutcome(name=f.name, status=FAILED, reason="io", message=str(exc)))


# --------------------------------------------------------------------------- one partition
def _requested_files(req: PartitionRequest, stored: PartitionRecord | None) -> tuple[ArchiveFile, ...]:
    """A month already built from its month file is refreshed from the month file, never cut
    back to some of its days."""
    month_file = ArchiveFile(kind=req.kind, symbol=req.symbol, interval=req.interval, period=req.month)
    if stored is not None and any(s.name == month_file.name for s in stored.sources):
        return (month_file,)
    return req.files


def _fetch_all(files: tuple[ArchiveFile, ...], stored: dict[str, SourceRecord], cfg: DownloadConfig,
               stop: threading.Event, progress: ProgressPort, pool: Executor) -> list[_Fetched]:
    """Fetch ``files`` on the shared file pool; results in the order of ``files``."""
    def one(f: ArchiveFile) -> _Fetched:
        got = _fetch_file(f, stored, cfg, stop)
        progress.file_done(got.outcome)
        return got

    futures = [pool.submit(one, f) for f in files]
    try:
        return [fut.result() for fut in futures]
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise


def build_partition(req: PartitionRequest, stored: PartitionRecord | None, cfg: DownloadConfig,
                    stop: threading.Event, progress: ProgressPort, files_pool: Executor) -> PartitionOutcome:
    """Fetch, check and write one month file. Never raises but Cancelled.

    Its files are fetched on ``files_pool`` (shared by all months: at most ``workers``
    transfers at once), so the day files of one month download in parallel too."""
    spec = kind_spec(req.kind)
    if stored is not None and not is_present(cfg.catalog, stored):
        stored = None  # its file is gone or disagrees with the manifest: rebuild it
    by_name = {s.name: s for s in stored.sources} if stored else {}
    requested = _requested_files(req, stored)
    results = _fetch_all(requested, by_name, cfg, stop, progress, files_pool)
    if (len(requested) == 1 and requested[0].period.is_month and spec.daily
            and results[0].outcome.status == MISSING):
        # not published (yet): the current month, or the days before a month file appears
        days = daily_files(req.kind, req.symbol, req.interval, req.month, date(1970, 1, 1), date(9999, 12, 31))
        progress.add_files(len(days))
        results += _fetch_all(days, by_name, cfg, stop, progress, files_pool)
    outcomes = [r.outcome for r in results]
    # fresh parts are staged: they wait there until a month file takes them
    fresh = [r.fresh for r in results if r.fresh is not None]
    ident = dict(dataset=req.dataset, symbol=req.symbol, month=req.month.label)
    if not fresh:
        if stored is not None:
            return PartitionOutcome(**ident, status=UNCHANGED, files=tuple(outcomes), record=stored)
        bad = any(o.status in (REFUSED, FAILED) for o in outcomes)
        return PartitionOutcome(**ident, status=NOT_WRITTEN if bad else ABSENT, files=tuple(outcomes))
    try:
        sources = merge_sources(stored.sources if stored else (), tuple(s for s, _ in fresh))
    except DataError as exc:
        return PartitionOutcome(**ident, status=NOT_WRITTEN, files=tuple(outcomes), message=str(exc))
    parts = {s.name: p for s, p in fresh}
    final = partition_path(cfg.catalog, req.dataset, req.symbol, req.month.label)
    pieces = [Piece(source=s, path=parts[s.name].path, from_catalog=False) if s.name in parts
              else Piece(source=s, path=final, from_catalog=True) for s in sources]
    try:
        record = assemble(catalog=cfg.catalog, kind=req.kind, interval=req.interval, symbol=req.symbol,
                          month=req.month, pieces=pieces, stop=stop)
    except (DecodeError, OSError) as exc:  # a disk error, or a month file that no longer checks
        log.warning("data.partition_not_written", dataset=req.dataset, symbol=req.symbol,
                    month=req.month.label, error=str(exc))
        return PartitionOutcome(**ident, status=NOT_WRITTEN, files=tuple(outcomes), message=str(exc))
    return PartitionOutcome(**ident, status=WRITTEN, files=tuple(outcomes), record=record)


# --------------------------------------------------------------------------- download
def run_download(*, cfg: DownloadConfig, symbols: list[str], kinds: list[str], interval: str | None,
                 first: date, last: date, progress: ProgressPort | None = None) -> RunReport:
    """Bring the catalog up to date with the archive for the given range."""
    progress = progress or NoProgress()
    if not 1 <= cfg.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be 1..{MAX_WORKERS}, got {cfg.workers}")
    requests = plan(symbols=symbols, kinds=kinds, interval=interval, first=first, last=last)
    started = time.monotonic()
    stop = threading.Event()
    with catalog_lock(cfg.catalog):
        clean_tmp(cfg.catalog)
        manifests = {(r.dataset, r.symbol): load_manifest(cfg.catalog, r.dataset, r.symbol) for r in requests}
        progress.add_files(sum(len(_requested_files(r, manifests[(r.dataset, r.symbol)].get(r.month.label)))
                               for r in requests))
        outcomes: list[PartitionOutcome] = []
        # months wait on their files; files run on their own pool, so no month can starve it
        pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="data-month")
        files_pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="data-file")
        try:
            futures = [pool.submit(build_partition, r, manifests[(r.dataset, r.symbol)].get(r.month.label),
                                   cfg, stop, progress, files_pool) for r in requests]
            for fut in as_completed(futures):
                out = fut.result()
                outcomes.append(out)
                if out.status == WRITTEN and out.record is not None:
                    recs = manifests[(out.dataset, out.symbol)]
                    recs[out.month] = out.record
                    save_manifest(cfg.catalog, out.dataset, out.symbol, recs)
        except BaseException:
            stop.set()  # running transfers and conversions stop at their next chunk
            files_pool.shutdown(wait=False, cancel_futures=True)
            pool.shutdown(wait=True, cancel_futures=True)
            files_pool.shutdown(wait=True)
            clean_tmp(cfg.catalog)
            raise
        pool.shutdown(wait=True)
        files_pool.shutdown(wait=True)
    order = {(r.dataset, r.symbol, r.month.label): i for i, r in enumerate(requests)}
    outcomes.sort(key=lambda o: order[(o.dataset, o.symbol, o.month)])
    return RunReport(partitions=tuple(outcomes), seconds=time.monotonic() - started)


# --------------------------------------------------------------------------- import
def run_import(*, catalog: Path, path: Path, kind: str | None = None, symbol: str | None = None,
               interval: str | None = None) -> RunReport:
    """Check a local zip or CSV in the archive's format and add it to the catalog.

    A ``<file>.CHECKSUM`` beside it is verified first (a mismatch refuses the file)."""
    target = import_target(path, kind=kind, symbol=symbol, interval=interval)
    dataset = dataset_name(target.kind, target.interval)
    started = time.monotonic()
    outcomes: list[PartitionOutcome] = []
    with catalog_lock(catalog):
        clean_tmp(catalog)
        sha = file_sha256(path)
        try:
            sidecar = path.with_name(path.name + ".CHECKSUM")
            if sidecar.exists():
                want = parse_checksum(sidecar.read_text())
                if want != sha:
                    raise refuse("checksum_mismatch", f"{path.name}: sha256 {sha} but {sidecar.name} says {want}")
            parts, state = convert_file(path, catalog=catalog, kind=target.kind, interval=target.interval,
                                        period=target.period, test_crc=True)
        except (DecodeError, DataError, ValueError) as exc:  # ValueError: Python's own (a text's encoding)
            reason = exc.reason if isinstance(exc, DecodeError) else "checksum_mismatch"
            log.warning("data.file_refused", file=path.name, reason=reason, error=str(exc))
            out = FileOutcome(name=path.name, status=REFUSED, reason=reason, message=str(exc))
            return RunReport(partitions=(PartitionOutcome(dataset=dataset, symbol=target.symbol, month="",
                                                          status=NOT_WRITTEN, files=(out,)),),
                             seconds=time.monotonic() - started)
        origin = f"import:{path.resolve()}"
        recs = load_manifest(catalog, dataset, target.symbol)
        try:
            for part in parts:
                outcomes.append(_import_part(catalog, target.kind, target.interval, target.symbol, part,
                                             path.name, sha, origin, target.period, state.inexact_cells, recs))
                if outcomes[-1].status == WRITTEN and outcomes[-1].record is not None:
                    recs[part.month.label] = outcomes[-1].record
                    save_manifest(catalog, dataset, target.symbol, recs)
        finally:
            for part in parts:
                part.path.unlink(missing_ok=True)
    return RunReport(partitions=tuple(outcomes), seconds=time.monotonic() - started)


def _import_part(catalog: Path, kind: str, interval: str | None, symbol: str, part: Part, name: str,
                 sha: str, origin: str, period: Period | None, inexact: int,
                 recs: dict[str, PartitionRecord]) -> PartitionOutcome:
    dataset = dataset_name(kind, interval)
    month = part.month
    assert part.state.first_ms is not None and part.state.last_ms is not None
    span = (period.start_ms, period.end_ms) if period else (part.state.first_ms, part.state.last_ms + 1)
    source = SourceRecord(name=name, sha256=sha, span=span, rows=part.state.rows, origin=origin,
                          inexact_cells=inexact)
    ident = dict(dataset=dataset, symbol=symbol, month=month.label)
    stored = recs.get(month.label)
    if stored is not None and not is_present(catalog, stored):
        stored = None
    if stored is not None and any(s.name == name and s.sha256 == sha for s in stored.sources):
        return PartitionOutcome(**ident, status=UNCHANGED, record=stored,
                                files=(FileOutcome(name=name, status=KEPT),))
    try:
        sources = merge_sources(stored.sources if stored else (), (source,))
    except DataError as exc:
        return PartitionOutcome(**ident, status=NOT_WRITTEN, message=str(exc),
                                files=(FileOutcome(name=name, status=REFUSED, reason="conflict",
                                                   message=str(exc)),))
    final = partition_path(catalog, dataset, symbol, month.label)
    pieces = [Piece(source=s, path=part.path, from_catalog=False) if s is source
              else Piece(source=s, path=final, from_catalog=True) for s in sources]
    record = assemble(catalog=catalog, kind=kind, interval=interval, symbol=symbol, month=month, pieces=pieces)
    return PartitionOutcome(**ident, status=WRITTEN, record=record,
                            files=(FileOutcome(name=name, status=IMPORTED),))


def describe(report: RunReport) -> dict[str, object]:
    """A JSON-able summary of a run (the CLI's --summary-json)."""
    return {
        "seconds": round(report.seconds, 3),
        "files": dict(report.file_counts()),
        "reasons": dict(report.reasons()),
        "partitions": dict(report.partition_counts()),
        "rows_written": report.rows_written,
        "bytes_downloaded": report.bytes_downloaded,
        "details": [
            {"dataset": p.dataset, "symbol": p.symbol, "month": p.month, "status": p.status,
             "message": p.message,
             "rows": p.record.rows if p.record else 0,
             "gaps": [g.to_json() for g in p.record.gaps] if p.record else [],
             "files": [{"name": f.name, "status": f.status, "reason": f.reason, "message": f.message}
                       for f in p.files]}
            for p in report.partitions],
    }
