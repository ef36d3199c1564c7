"""The layout of Binance's public data archive, and what to fetch from it. Pure functions.

The archive (``https://data.binance.vision``, backed by a public bucket) keeps USD-M futures
files under ``data/futures/um/``::

    monthly/<kind>/<SYMBOL>/[<interval>/]<SYMBOL>-<interval or kind>-<YYYY-MM>.zip
    daily/<kind>/<SYMBOL>/[<interval>/]<SYMBOL>-<interval or kind>-<YYYY-MM-DD>.zip

    klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip          (also markPriceKlines: same names)
    aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-15.zip
    fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip   (monthly only: no daily files)

Each zip holds one CSV of the same name (``.csv``), and has a sibling ``<zip>.CHECKSUM``
whose text is ``sha256sum``'s line: ``<64 hex digits>  <zip name>``. A file the archive does
not have (a symbol listed later, a month not published yet) answers HTTP 404. Daily files
appear the next day; a month's file on the first days of the following month.

The plan: whole months of the requested range come from monthly files, the days of a
partial month from daily files (fundingRate: always the monthly file, there is no daily).
Dates are UTC; ``--to`` is inclusive.
"""

from __future__ import annotations

import argparse
import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import PurePath

from common.errors import ConfigError, DataError, DecodeError
from research.kinds import INTERVAL_MS, KINDS, dataset_name, kind_spec

DEFAULT_BASE_URL = "https://data.binance.vision"
MARKET_PREFIX = "data/futures/um"  # USD-M futures; spot is data/spot, COIN-M data/futures/cm
CHECKSUM_SUFFIX = ".CHECKSUM"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9_]+)-(?P<middle>[A-Za-z0-9]+)-(?P<y>\d{4})-(?P<m>\d{2})(?:-(?P<d>\d{2}))?"
    r"\.(?P<ext>zip|csv)$")
_DAY_MS = 86_400_000


def day_start_ms(d: date) -> int:
    """Milliseconds since the epoch at the start of ``d`` (UTC midnight)."""
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) * 1000


def parse_day(text: str) -> date:
    """A day as the commands take it (``--from`` / ``--to``: YYYY-MM-DD, UTC); an argparse type,
    so a bad one is the command's usage error."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


@dataclass(frozen=True, kw_only=True, order=True)
class Period:
    """A calendar month (``day`` None) or one day, UTC."""

    year: int
    month: int
    day: int | None = None

    @property
    def is_month(self) -> bool:
        return self.day is None

    @property
    def label(self) -> str:
        head = f"{self.year:04d}-{self.month:02d}"
        return head if self.day is None else f"{head}-{self.day:02d}"

    @property
    def month_label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start_ms(self) -> int:
        return day_start_ms(date(self.year, self.month, self.day or 1))

    @property
    def end_ms(self) -> int:
        """First millisecond after the period."""
        if self.day is not None:
            return self.start_ms + _DAY_MS
        return month_of(self.start_ms + 32 * _DAY_MS).start_ms

    def days(self) -> list[Period]:
        """The days of a month (a day: itself)."""
        if self.day is not None:
            return [self]
        n = calendar.monthrange(self.year, self.month)[1]
        return [Period(year=self.year, month=self.month, day=d) for d in range(1, n + 1)]


def month_of(ms: int) -> Period:
    """The UTC month a millisecond timestamp falls in."""
    t = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return Period(year=t.year, month=t.month)


def day_of(ms: int) -> Period:
    """The UTC day a millisecond timestamp falls in."""
    t = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return Period(year=t.year, month=t.month, day=t.day)


def parse_period(label: str) -> Period:
    """``2024-01`` -> the month, ``2024-01-15`` -> the day; ``DataError`` otherwise."""
    parts = label.split("-")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise DataError(f"not a month or a day: {label!r}")
    y, m = int(parts[0]), int(parts[1])
    d = int(parts[2]) if len(parts) == 3 else None
    try:
        date(y, m, d or 1)  # range check
    except ValueError as exc:  # Python's own, for a month 13 or a day 32
        raise DataError(f"not a month or a day: {label!r} ({exc})") from None
    return Period(year=y, month=m, day=d)


@dataclass(frozen=True, kw_only=True)
class ArchiveFile:
    """One zip of the archive: what it holds and where it lives."""

    kind: str
    symbol: str
    interval: str | None
    period: Period

    @property
    def granularity(self) -> str:
        return "monthly" if self.period.is_month else "daily"

    @property
    def name(self) -> str:
        middle = self.interval if kind_spec(self.kind).has_interval else self.kind
        return f"{self.symbol}-{middle}-{self.period.label}.zip"

    @property
    def path(self) -> str:
        """Path under the archive's base URL."""
        sub = f"{self.interval}/" if kind_spec(self.kind).has_interval else ""
        return f"{MARKET_PREFIX}/{self.granularity}/{self.kind}/{self.symbol}/{sub}{self.name}"

    @property
    def dataset(self) -> str:
        return dataset_name(self.kind, self.interval)


def file_url(base_url: str, f: ArchiveFile) -> str:
    return f"{base_url.rstrip('/')}/{f.path}"


def checksum_url(base_url: str, f: ArchiveFile) -> str:
    return file_url(base_url, f) + CHECKSUM_SUFFIX


def parse_checksum(text: str) -> str:
    """The sha256 (lowercase hex) of a ``.CHECKSUM`` file's text; ``DecodeError`` if there is none."""
    first = text.strip().split()[0] if text.strip() else ""
    if not _SHA256.match(first):
        raise DecodeError(f"not a sha256 CHECKSUM line: {text[:80]!r}", reason="checksum_mismatch")
    return first.lower()


@dataclass(frozen=True, kw_only=True)
class PartitionRequest:
    """The files one catalog partition (dataset, symbol, month) is to be built from."""

    kind: str
    symbol: str
    interval: str | None
    month: Period
    files: tuple[ArchiveFile, ...]  # one monthly file, or daily files in date order

    @property
    def dataset(self) -> str:
        return dataset_name(self.kind, self.interval)


def months_between(first: date, last: date) -> list[Period]:
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(Period(year=y, month=m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def daily_files(kind: str, symbol: str, interval: str | None, month: Period,
                first: date, last: date) -> tuple[ArchiveFile, ...]:
    """The daily files of ``month`` that fall within ``first``..``last`` (inclusive)."""
    return tuple(
        ArchiveFile(kind=kind, symbol=symbol, interval=interval, period=d)
        for d in month.days() if first <= date(d.year, d.month, d.day or 1) <= last)


def plan(*, symbols: list[str], kinds: list[str], interval: str | None,
         first: date, last: date) -> list[PartitionRequest]:
    """Every partition the range needs, in (kind, symbol, month) order."""
    if last < first:
        raise ConfigError(f"--to {last} is before --from {first}")
    out: list[PartitionRequest] = []
    for kind in kinds:
        spec = kind_spec(kind)
        iv = interval if spec.has_interval else None
        dataset_name(kind, iv)  # validates the interval
        for symbol in symbols:
            for month in months_between(first, last):
                days = month.days()
                whole = (first <= date(month.year, month.month, 1)
                         and date(month.year, month.month, days[-1].day or 1) <= last)
                if whole or not spec.daily:
                    files: tuple[ArchiveFile, ...] = (
                        ArchiveFile(kind=kind, symbol=symbol, interval=iv, period=month),)
                else:
                    files = daily_files(kind, symbol, iv, month, first, last)
                out.append(PartitionRequest(kind=kind, symbol=symbol, interval=iv, month=month,
                                            files=files))
    return out


@dataclass(frozen=True, kw_only=True)
class NameInfo:
    """What an archive file name says: symbol, the kind if it can tell, interval, period."""

    symbol: str
    kind: str | None  # None: a kline-like name (klines, markPriceKlines, ... share names)
    interval: str | None
    period: Period


def parse_archive_name(name: str) -> NameInfo | None:
    """``BTCUSDT-1m-2024-01.zip`` / ``BTCUSDT-aggTrades-2024-01-05.csv`` -> NameInfo; None if
    the name is not in the archive's format."""
    m = _NAME.match(name)
    if m is None:
        return None
    try:
        period = parse_period(f"{m['y']}-{m['m']}" + (f"-{m['d']}" if m["d"] else ""))
    except DataError:
        return None
    middle = m["middle"]
    if middle in INTERVAL_MS:
        return NameInfo(symbol=m["symbol"], kind=None, interval=middle, period=period)
    if middle in KINDS and not KINDS[middle].has_interval:
        return NameInfo(symbol=m["symbol"], kind=middle, interval=None, period=period)
    return None


@dataclass(frozen=True, kw_only=True)
class ImportTarget:
    kind: str
    symbol: str
    interval: str | None
    period: Period | None  # None: the file's rows are routed to months by their own times
    guessed_kind: bool  # the kind came from the default, not from the name, path or user


def import_target(path: PurePath, *, kind: str | None = None, symbol: str | None = None,
                  interval: str | None = None) -> ImportTarget:
    """What a local file is, from the user's flags first, then its name and folders.

    A kline-like name (``BTCUSDT-1m-2024-01.zip``) does not say whether it holds klines or
    mark-price klines: a folder named like a kind (the archive's own layout) decides, else
    ``klines`` is assumed and ``guessed_kind`` says so. Raises ``DataError`` when something
    needed is still unknown."""
    info = parse_archive_name(path.name)
    folder_kind = next((p for p in reversed(path.parent.parts) if p in KINDS), None)
    guessed = False
    k = kind or (info.kind if info else None) or folder_kind
    if k is None and info is not None and info.interval is not None:
        k, guessed = "klines", True
    if k is None:
        raise DataError(f"cannot tell the kind of {path.name}: pass --kind ({', '.join(KINDS)})")
    spec = kind_spec(k)
    s = symbol or (info.symbol if info else None)
    if s is None:
        raise DataError(f"cannot tell the symbol of {path.name}: pass --symbol")
    iv = interval or (info.interval if info else None)
    if spec.has_interval:
        dataset_name(k, iv)  # validates
    else:
        iv = None
    if info is not None and info.kind is not None and info.kind != k:
        raise DataError(f"{path.name} is named as {info.kind}, not {k}")
    if info is not None and info.interval is not None:
        if not spec.has_interval:
            raise DataError(f"{path.name} is named as {info.interval} bars, not {k}")
        if iv != info.interval:
            raise DataError(f"{path.name} is named as {info.interval} bars, not {iv}")
    return ImportTarget(kind=k, symbol=s, interval=iv, period=info.period if info else None,
                        guessed_kind=guessed)
