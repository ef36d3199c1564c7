"""Archive CSV rows -> typed Arrow batches, and every check a file must pass.

The pure core: ``detect_layout`` (header row or not, which column layout), ``type_batch``
(text -> int64 ms times, float64 decimals, booleans), ``check_batch`` (a fold over batches:
keys strictly increasing, times inside the file's period, bars on their grid, gaps found)
and ``find_gaps``. ``read_batches`` is the thin reading loop around pyarrow's streaming CSV
reader: a file is never loaded whole, one block of text (``BLOCK_BYTES``) at a time.

A bad file raises ``DecodeError`` whose ``reason`` is one of ``REASONS`` (the counter label
the download and import reports count), with a message that names the line or the column:

| reason | what was wrong | what happens |
|---|---|---|
| ``checksum_mismatch`` | the zip's sha256 differs from its ``.CHECKSUM`` | refused, the zip deleted |
| ``bad_zip`` | not a zip, truncated, a CRC error, not exactly one CSV inside | refused |
| ``wrong_columns`` | a header that is not the kind's, or a row with the wrong number of cells | refused |
| ``non_numeric`` | a cell that is not a number (or not true/false), empty, NaN or infinite | refused |
| ``bad_time`` | a timestamp before 2017 or after 2099 (or a file mixing ms and us) | refused |
| ``unsorted`` | a row whose key or time goes back | refused |
| ``duplicate`` | a row whose key repeats the previous row's | refused |
| ``off_grid`` | two bars closer or further apart than a whole number of intervals | refused |
| ``out_of_period`` | a row outside the month or day the file is named for | refused |
| ``empty`` | no data rows | refused |

Gaps (missing 1m bars, or missing bars of any fixed interval) are not a refusal: the data
is kept and each gap is reported with the open times of its first and last missing bar.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from common.errors import DecodeError
from research.kinds import EXACT_FLOAT_DIGITS, Column, KindSpec

REASONS = ("checksum_mismatch", "bad_zip", "wrong_columns", "non_numeric", "bad_time",
           "unsorted", "duplicate", "off_grid", "out_of_period", "empty")
BLOCK_BYTES = 4 << 20  # CSV text read per block: ~50k kline rows, bounded memory per file
US_THRESHOLD = 10**14  # ms timestamps of 1973..5138 are below, us ones of 1973.. above
MIN_TIME_MS = 1_483_228_800_000  # 2017-01-01: Binance opened in July 2017
MAX_TIME_MS = 4_102_444_800_000  # 2100-01-01
TRUE_VALUES = ["true", "True", "TRUE"]
FALSE_VALUES = ["false", "False", "FALSE"]

Opener = Callable[[], IO[bytes]]


def refuse(reason: str, message: str) -> DecodeError:
    assert reason in REASONS, reason
    return DecodeError(message, reason=reason)


# --------------------------------------------------------------------------- the layout
@dataclass(frozen=True, kw_only=True)
class Layout:
    columns: tuple[Column, ...]
    header: bool  # the first line is a header row (skipped)


def detect_layout(first_line: str, spec: KindSpec) -> Layout:
    """Which of the kind's layouts a file uses, and whether its first line is a header. Pure."""
    line = first_line.lstrip("\ufeff").rstrip("\r\n")
    cells = [c.strip() for c in line.split(",")]
    header = bool(cells) and not _looks_numeric(cells[0])
    by_count = {len(layout): layout for layout in spec.layouts}
    names = " or ".join(",".join(c.name for c in lay) for lay in spec.layouts)
    if header:
        for layout in spec.layouts:
            if cells == [c.name for c in layout]:
                return Layout(columns=layout, header=True)
        raise refuse("wrong_columns", f"header {line[:200]!r} is not the {spec.name} header ({names})")
    if len(cells) not in by_count:
        counts = " or ".join(str(n) for n in sorted(by_count))
        raise refuse("wrong_columns", f"line 1 has {len(cells)} cells; {spec.name} rows have {counts}")
    return Layout(columns=by_count[len(cells)], header=False)


def _looks_numeric(cell: str) -> bool:
    return cell.lstrip("-").replace(".", "", 1).isdigit()


# --------------------------------------------------------------------------- typing
def count_inexact(text: pa.Array) -> int:
    """Cells whose decimal has more significant digits than a float64 keeps exactly. Pure."""
    digits = pc.replace_substring(pc.replace_substring(text, "-", ""), ".", "")
    significant = pc.utf8_length(pc.utf8_trim(digits, "0"))
    return int(pc.sum(pc.greater(significant, EXACT_FLOAT_DIGITS)).as_py() or 0)


def _decimal_to_float(text: pa.Array, name: str, line_offset: int) -> pa.Array:
    try:
        values = pc.cast(text, pa.float64())
    except pa.ArrowInvalid as exc:
        raise refuse("non_numeric", f"column {name}: {_short(exc)}") from None
    finite = pc.is_finite(values)
    if not pc.all(finite).as_py():
        i = int(pc.index(finite, False).as_py())
        raise refuse("non_numeric", f"line {line_offset + i + 1}, column {name}: {text[i].as_py()!r} "
                                    "is not a finite number")
    return values


def type_batch(raw: pa.RecordBatch, spec: KindSpec, layout: Layout, *, micros: bool,
               line_offset: int) -> tuple[pa.RecordBatch, int]:
    """(catalog-typed batch, inexact cell count) of a batch of kept CSV columns. Pure.

    ``micros``: the file's times are microseconds (converted to ms by flooring);
    ``line_offset``: file lines before this batch's first row, for messages."""
    arrays, inexact = [], 0
    for col in layout.columns:
        if not col.keep:
            continue
        a = raw.column(col.name)
        if col.decimal:
            inexact += count_inexact(a)
            a = _decimal_to_float(a, col.name, line_offset)
        elif col.time:
            if micros:
                a = pc.divide(a, 1000)  # int64 / int64 truncates; times are positive: a floor
            bad = pc.or_(pc.less(a, MIN_TIME_MS), pc.greater_equal(a, MAX_TIME_MS))
            if pc.any(bad).as_py():
                i = int(pc.index(bad, True).as_py())
                raise refuse("bad_time", f"line {line_offset + i + 1}, column {col.name}: "
                                         f"{raw.column(col.name)[i].as_py()} is not a time of 2017-2099 "
                                         f"in {'us' if micros else 'ms'}")
        arrays.append(a)
    return pa.RecordBatch.from_arrays(arrays, schema=spec.schema), inexact


# --------------------------------------------------------------------------- checks
@dataclass(frozen=True, kw_only=True)
class Gap:
    """Bars missing between two present ones: open times of the first and last missing bar."""

    from_ms: int
    to_ms: int
    bars: int

    def to_json(self) -> dict[str, int]:
        return {"from_ms": self.from_ms, "to_ms": self.to_ms, "bars": self.bars}


def find_gaps(times: np.ndarray, step_ms: int, prev_ms: int | None) -> tuple[list[Gap], int | None]:
    """(gaps, index of the first off-grid bar or None) in increasing bar open times. Pure.

    ``prev_ms`` is the open time of the bar before ``times[0]`` (None: there is none)."""
    if len(times) == 0:
        return [], None
    full = times if prev_ms is None else np.concatenate(([prev_ms], times))
    diffs = np.diff(full)
    shift = 0 if prev_ms is None else 1  # diffs[j] leads to times[j + 1 - shift]
    off = np.flatnonzero(diffs % step_ms != 0)
    if off.size:
        return [], int(off[0]) + 1 - shift
    gaps = []
    for j in np.flatnonzero(diffs > step_ms):
        before, after = int(full[j]), int(full[j + 1])
        gaps.append(Gap(from_ms=before + step_ms, to_ms=after - step_ms,
                        bars=(after - before) // step_ms - 1))
    return gaps, None


@dataclass(frozen=True, kw_only=True)
class Rules:
    spec: KindSpec
    step_ms: int | None  # bar length for the grid and gap checks; None: no fixed step
    span: tuple[int, int] | None  # [start, end) ms the rows must fall in; None: any


@dataclass(frozen=True, kw_only=True)
class CheckState:
    """What the checks carry from one batch to the next."""

    rows: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    last_key: int | None = None
    gaps: tuple[Gap, ...] = ()
    inexact_cells: int = 0


def _first_bad(values: np.ndarray, prev: int | None, *, strict: bool) -> tuple[int, str] | None:
    full = values if prev is None else np.concatenate(([prev], values))
    d = np.diff(full)
    bad = np.flatnonzero(d <= 0 if strict else d < 0)
    if not bad.size:
        return None
    j = int(bad[0])
    return j + (0 if prev is not None else 1), ("duplicate" if d[j] == 0 else "unsorted")


def check_batch(rules: Rules, state: CheckState, batch: pa.RecordBatch, *,
                line_offset: int, inexact: int = 0) -> CheckState:
    """The state after ``batch``; raises DecodeError for the first row that breaks a rule. Pure.

    ``line_offset``: file lines before the batch (header included), for the messages."""
    spec = rules.spec
    if batch.num_rows == 0:
        return state
    times = batch.column(spec.time_column).to_numpy()
    keys = batch.column(spec.key_column).to_numpy() if spec.key_column != spec.time_column else times
    bad = _first_bad(keys, state.last_key, strict=True)
    if bad is not None:
        i, reason = bad
        what = "repeats" if reason == "duplicate" else "goes back from"
        raise refuse(reason, f"line {line_offset + i + 1}: {spec.key_column} {int(keys[i])} {what} "
                             "the previous row's")
    if keys is not times:
        bad = _first_bad(times, state.last_ms, strict=False)
        if bad is not None:
            i = bad[0]
            raise refuse("unsorted", f"line {line_offset + i + 1}: {spec.time_column} {int(times[i])} "
                                     "goes back from the previous row's")
    if rules.span is not None:
        start, end = rules.span
        outside = np.flatnonzero((times < start) | (times >= end))
        if outside.size:
            i = int(outside[0])
            raise refuse("out_of_period", f"line {line_offset + i + 1}: {spec.time_column} "
                                          f"{int(times[i])} is outside the file's period [{start}, {end})")
    gaps: list[Gap] = []
    if rules.step_ms is not None:
        gaps, off = find_gaps(times, rules.step_ms, state.last_ms)
        if off is not None:
            raise refuse("off_grid", f"line {line_offset + off + 1}: {spec.time_column} {int(times[off])} "
                                     f"is not a whole number of {rules.step_ms} ms bars after the previous row")
    return replace(state, rows=state.rows + batch.num_rows,
                   first_ms=state.first_ms if state.first_ms is not None else int(times[0]),
                   last_ms=int(times[-1]), last_key=int(keys[-1]), gaps=state.gaps + tuple(gaps),
                   inexact_cells=state.inexact_cells + inexact)


# --------------------------------------------------------------------------- reading
@contextmanager
def open_source(path: Path, *, test_crc: bool = True) -> Iterator[Opener]:
    """An opener of the CSV text of ``path``: the one CSV inside a zip, or the file itself.

    ``test_crc``: read the zip through once first to check its CRC, so damaged bytes are
    called ``bad_zip`` rather than whatever the garbage they inflate to looks like. A zip
    whose sha256 matched its CHECKSUM is what Binance published, so downloads skip it."""
    if path.suffix.lower() != ".zip":
        yield lambda: open(path, "rb")
        return
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise refuse("bad_zip", f"{path.name}: not a readable zip ({exc})") from None
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        if len(members) != 1 or not members[0].filename.lower().endswith(".csv"):
            names = [m.filename for m in members][:5]
            raise refuse("bad_zip", f"{path.name}: expected one CSV inside, found {names}")
        if test_crc:
            try:
                broken = zf.testzip()
            except _READ_ERRORS as exc:
                raise refuse("bad_zip", f"{path.name}: the zip's data is damaged ({exc})") from None
            if broken is not None:
                raise refuse("bad_zip", f"{path.name}: CRC error in {broken}")
        yield lambda: zf.open(members[0])


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300]


def read_batches(opener: Opener, spec: KindSpec) -> Iterator[tuple[pa.RecordBatch, int, int]]:
    """(typed batch, inexact cells, file lines before it) for each block of the file."""
    try:
        with opener() as f:
            first = f.readline(1 << 16).decode("utf-8", "replace")
    except _READ_ERRORS as exc:
        raise refuse("bad_zip", f"cannot read the CSV: {exc}") from None
    if not first.strip():
        raise refuse("empty", "the file has no rows")
    layout = detect_layout(first, spec)
    kept = [c.name for c in layout.columns if c.keep]
    types = {c.name: (pa.string() if c.decimal else c.type) for c in layout.columns if c.keep}
    read = pcsv.ReadOptions(column_names=[c.name for c in layout.columns],
                            skip_rows=1 if layout.header else 0, block_size=BLOCK_BYTES,
                            use_threads=True)
    convert = pcsv.ConvertOptions(column_types=types, include_columns=kept, null_values=[],
                                  strings_can_be_null=False, quoted_strings_can_be_null=False,
                                  true_values=TRUE_VALUES, false_values=FALSE_VALUES)
    offset, micros = (1 if layout.header else 0), None
    time_name = next(c.name for c in layout.columns if c.time)
    try:
        with opener() as f:
            reader = pcsv.open_csv(f, read_options=read, convert_options=convert)
            try:
                for raw in reader:
                    if raw.num_rows == 0:
                        continue
                    if micros is None:
                        micros = int(raw.column(time_name)[0].as_py()) >= US_THRESHOLD
                    typed, inexact = type_batch(raw, spec, layout, micros=micros, line_offset=offset)
                    yield typed, inexact, offset
                    offset += raw.num_rows
            finally:
                # stop pyarrow's read-ahead before the file under it closes (a reader left
                # running on a closed Python file aborts the interpreter at exit)
                reader.close()
    except pa.ArrowInvalid as exc:
        msg = _short(exc)
        if "columns" in msg and "Expected" in msg:
            raise refuse("wrong_columns", msg) from None
        raise refuse("non_numeric", msg) from None
    except _READ_ERRORS as exc:
        raise refuse("bad_zip", f"the zip's data is damaged: {exc}") from None
    if offset == (1 if layout.header else 0):
        raise refuse("empty", "the file has a header but no rows")
