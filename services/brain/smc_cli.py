"""``aegis smc CANDLES.csv --swing-length N --out OUT.csv``: our SMC features for every row
of a candle file, point in time: each row shows what was known at that row's close and
never changes when more candles arrive (a run on the first k rows of a file writes exactly
the first k rows of the full run), so the file can be backtested without look-ahead.
``--reference-view`` writes the reference library's layout instead (labels written back on
the rows they describe, under its column names, to compare with ``smartmoneyconcepts``;
hindsight). docs/smc.md has both layouts, column by column.

Input: a CSV with ``open, high, low, close, volume`` columns (any case) and a time column.
An open-time column (``open_time``, ``timestamp``, ``date``, ``datetime``, ``time``) is
used as is; failing that, a close-time column (``close_datetime``, ``close_time``) is turned
into the open time as Binance's klines need: close + 1 ms - bar length (the bar length is
the most common gap between rows, or ``--bar-seconds``). Times are ISO-8601 (``YYYY.MM.DD``
also accepted; naive means UTC) or epoch numbers (s, ms, us or ns, told apart by size).

Bad input (missing column, non-numeric value, high < low, times not increasing, no rows)
prints one line naming the problem and the line number, and exits 2.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from common import filekind
from common.errors import ConfigError, DataError
from services.brain.smc import (FLOAT32_COLUMNS, REFERENCE_COLUMNS, PointInTimeView,
                                SessionWindow, SmcConfig, SmcInputError, point_in_time,
                                reference_columns, run_batch)

OPEN_TIME_COLUMNS = ("open_time", "timestamp", "date", "datetime", "time")
CLOSE_TIME_COLUMNS = ("close_datetime", "close_time")
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
INTEGER_COLUMNS = frozenset({"HighLow", "FVG", "MitigatedIndex", "BOS", "CHOCH", "BrokenIndex",
                             "OB", "Liquidity", "End", "Swept", "BrokenHigh", "BrokenLow",
                             "Active", "Direction"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

COLUMNS_HELP = """\
output (default, point in time): open_time (UTC), then per row t only what became known
at the close of bar t; an ...Index column is the 0-based row of the bar the event is about
(at or before t); empty = nothing of that kind known at this close.
  PivotHighLow PivotLevel PivotIndex   pivot decided now (bar t - swing_length): 1 high, -1 low
  HighLow Level SwingIndex             swing confirmed now (its run ended: next opposite
                                       pivot known); the reference's swing, written late
  FVG Top Bottom FVGIndex              fair value gap found now (on bar t-1; joined: t-2)
  MitigatedFVG MitigatedFVGIndex       gaps this bar mitigated
  BOS CHOCH Level BrokenIndex StructureIndex
                                       break/change confirmed now; StructureIndex = the
                                       broken swing, BrokenIndex = the bar that broke it
  OB Top Bottom OBVolume Percentage OBIndex OBFormedIndex OBMitigatedAt OBResetAt
                                       order block known now (formed when bar OBFormedIndex
                                       closed), with its state as of this close: bar that
                                       mitigated / reset it, 0 = not yet
  MitigatedOB MitigatedOBIndex         blocks this bar mitigated (became breakers)
  ResetOB ResetOBIndex                 breakers this bar reset (void from now on)
  Liquidity Level End Swept LiquidityIndex Members
                                       pool a swing joined now: mean level, last member,
                                       sweeping bar (0 = not yet), root row, swings in it
  SweptLiquidity SweptLiquidityIndex   pools this bar swept
  PreviousHigh PreviousLow BrokenHigh BrokenLow   per timeframe, as the reference (no lag)
  Active High Low                      per session, as the reference (no lag)
  Direction CurrentRetracement% DeepestRetracement% RetracementIndex
                                       newest reference retracement row settled now (it
                                       describes bar RetracementIndex - 1)
Direction columns: 1 bullish / high, -1 bearish / low. Several events of one kind at one
close: every column of the group lists them in the same order, space-separated (0 where a
value does not apply). A name used by several groups is prefixed: fvg.Top, ob.Top, ...
--reference-view: the reference library's columns and layout (docs/smc.md)."""


class CandleFileError(DataError):
    """The candle file cannot be used; the message says where and why."""


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds (UTC) of an ISO-8601 / ``YYYY.MM.DD HH:MM:SS`` / epoch value."""
    s = text.strip()
    if s.lstrip("-").isdigit():
        v = int(s)
        for limit, div in ((10**17, 10**6), (10**14, 10**3), (10**11, 1)):
            if abs(v) >= limit:
                return v // div
        return v * 1000
    if len(s) >= 10 and s[4] == "." and s[7] == ".":
        s = f"{s[:4]}-{s[5:7]}-{s[8:]}"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def read_candles(path: Path, bar_seconds: float | None = None) -> dict[str, list]:
    """Columns ``time_ms, open, high, low, close, volume`` of a candle CSV, validated. A file
    of another kind AEGIS knows (a capture, a database) is refused naming its reader; one that
    is not UTF-8 text is refused as such."""
    if wrong := filekind.refusal(path, ("candle_csv",), "a candle CSV"):
        raise CandleFileError(wrong)
    try:
        return _read_candles(path, bar_seconds)
    except UnicodeDecodeError:
        raise CandleFileError(f"{path}: not a candle CSV (not UTF-8 text)") from None


def _read_candles(path: Path, bar_seconds: float | None) -> dict[str, list]:
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CandleFileError(f"{path}: cannot open ({exc.strerror})") from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise CandleFileError(f"{path}: empty file")
        names = [h.strip().lower() for h in header]
        pos: dict[str, int] = {}
        for k, name in enumerate(names):
            if name in pos:
                raise CandleFileError(f"{path}: column {name!r} appears twice (case ignored)")
            pos[name] = k
        missing = [c for c in PRICE_COLUMNS if c not in pos]
        if missing:
            raise CandleFileError(f"{path}: missing column(s) {', '.join(missing)} "
                                  f"(have: {', '.join(header)})")
        time_col = next((c for c in OPEN_TIME_COLUMNS if c in pos), None)
        close_col = None if time_col else next((c for c in CLOSE_TIME_COLUMNS if c in pos), None)
        if time_col is None and close_col is None:
            raise CandleFileError(f"{path}: no time column (one of "
                                  f"{', '.join(OPEN_TIME_COLUMNS + CLOSE_TIME_COLUMNS)})")
        tcol = pos[time_col or close_col]
        cols: dict[str, list] = {c: [] for c in ("time_ms",) + PRICE_COLUMNS}
        for line, row in enumerate(reader, start=2):
            if not row or all(not x.strip() for x in row):
                continue
            if len(row) != len(header):
                raise CandleFileError(f"{path}:{line}: {len(row)} fields, header has {len(header)}")
            try:
                cols["time_ms"].append(parse_time_ms(row[tcol]))
            except (ValueError, OverflowError):
                raise CandleFileError(f"{path}:{line}: cannot read time {row[tcol]!r}") from None
            for c in PRICE_COLUMNS:
                raw = row[pos[c]]
                try:
                    v = float(raw)
                except ValueError:
                    raise CandleFileError(f"{path}:{line}: {c} is not a number: {raw!r}") from None
                if not math.isfinite(v):
                    raise CandleFileError(f"{path}:{line}: {c} is not finite: {raw!r}")
                cols[c].append(v)
            if cols["high"][-1] < cols["low"][-1]:
                raise CandleFileError(f"{path}:{line}: high {cols['high'][-1]} < low "
                                      f"{cols['low'][-1]}")
    times = cols["time_ms"]
    if not times:
        raise CandleFileError(f"{path}: no candles")
    if close_col is not None:
        bar_ms = round(bar_seconds * 1000) if bar_seconds else _common_gap(path, times)
        cols["time_ms"] = [t + 1 - bar_ms for t in times]
    for k in range(1, len(times)):
        if times[k] <= times[k - 1]:
            raise CandleFileError(f"{path}:{k + 2}: time does not increase")
    return cols


def _common_gap(path: Path, times: list[int]) -> int:
    if len(times) < 2:
        raise CandleFileError(f"{path}: one row with a close time: give --bar-seconds")
    gap, _ = Counter(b - a for a, b in zip(times, times[1:])).most_common(1)[0]
    if gap <= 0:
        raise CandleFileError(f"{path}: close times do not increase")
    return gap


def output_columns(cols: dict[str, dict[str, np.ndarray]]) -> list[tuple[str, str, str]]:
    """``(header, function_key, column)``: a reference column name that several functions
    produce is written ``<function_key>.<Column>``, a unique one as is."""
    uses = Counter(c for fk in cols for c in cols[fk])
    return [(c if uses[c] == 1 else f"{fk}.{c}", fk, c) for fk in cols for c in cols[fk]]


def _formatter(fk: str, column: str):
    function = next(f for f in REFERENCE_COLUMNS if fk == f or fk.startswith(f + "_"))
    if column in INTEGER_COLUMNS:
        return lambda v: "" if math.isnan(v) else str(int(v))
    if (function, column) in FLOAT32_COLUMNS:
        return lambda v: "" if math.isnan(v) else str(np.float32(v))
    return lambda v: "" if math.isnan(v) else repr(float(v))


def _stamp(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def write_features(out: Path, times: list[int], cols: dict[str, dict[str, np.ndarray]]) -> None:
    """The reference view (``--reference-view``)."""
    spec = output_columns(cols)
    fmts = [_formatter(fk, c) for _, fk, c in spec]
    data = [cols[fk][c].tolist() for _, fk, c in spec]
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["open_time"] + [h for h, _, _ in spec])
        for i, t in enumerate(times):
            w.writerow([_stamp(t)] + [f(col[i]) for f, col in zip(fmts, data)])


def write_point_in_time(out: Path, times: list[int], view: PointInTimeView) -> None:
    """The default view: row t as known at the close of bar t."""
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["open_time"] + view.header())
        for t, time_ms in enumerate(times):
            w.writerow([_stamp(time_ms)] + view.row(t))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aegis smc", description=__doc__.split("\n\n")[0],
                                epilog=COLUMNS_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("candles", type=Path, help="candle CSV")
    p.add_argument("--out", type=Path, required=True, help="feature CSV to write")
    p.add_argument("--reference-view", action="store_true",
                   help="write the reference library's layout (labels on the rows they "
                        "describe, rows edited by later candles: hindsight, for comparison)")
    p.add_argument("--swing-length", type=int, default=50, help="bars each side of a swing")
    p.add_argument("--fvg-join-consecutive", action="store_true")
    p.add_argument("--break-on-wick", action="store_true",
                   help="BOS/CHoCH break on high/low, not on the close")
    p.add_argument("--close-mitigation", action="store_true",
                   help="order blocks mitigated by the body, not the wick")
    p.add_argument("--liquidity-range-percent", type=float, default=0.01)
    band = p.add_mutually_exclusive_group()
    band.add_argument("--liquidity-band", type=float, default=None,
                      help="absolute liquidity band (price units)")
    band.add_argument("--reference-band", action="store_true",
                      help="the reference's band from the whole file (hindsight; only with "
                           "--reference-view)")
    p.add_argument("--timeframes", default="4h,1D,W", help="previous high/low timeframes")
    p.add_argument("--sessions", default="Tokyo,London,New York", help="UTC sessions")
    p.add_argument("--bar-seconds", type=float, default=None,
                   help="bar length, for files with a close-time column (default: inferred)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # usage errors: argparse printed them; --help: 0
        return int(exc.code or 0)
    if args.reference_band and not args.reference_view:
        print("aegis smc: --reference-band sizes the liquidity band from the whole file "
              "(hindsight); use it with --reference-view, or give --liquidity-band X",
              file=sys.stderr)
        return 2
    try:
        candles = read_candles(args.candles, args.bar_seconds)
        band = args.liquidity_band
        if args.reference_band:
            band = (max(candles["high"]) - min(candles["low"])) * args.liquidity_range_percent
        config = SmcConfig(
            swing_length=args.swing_length, close_break=not args.break_on_wick,
            close_mitigation=args.close_mitigation,
            fvg_join_consecutive=args.fvg_join_consecutive,
            liquidity_range_percent=args.liquidity_range_percent, liquidity_band=band,
            timeframes=tuple(x.strip() for x in args.timeframes.split(",") if x.strip()),
            sessions=tuple(SessionWindow.named(x.strip()) for x in args.sessions.split(",")
                           if x.strip()))
        labels, _ = run_batch(candles["time_ms"], candles["open"], candles["high"],
                              candles["low"], candles["close"], candles["volume"], config)
        n = len(candles["time_ms"])
        if args.reference_view:
            write_features(args.out, candles["time_ms"], reference_columns(labels, n, config))
        else:
            write_point_in_time(args.out, candles["time_ms"], point_in_time(labels, n, config))
    except (CandleFileError, ConfigError, SmcInputError) as exc:
        print(f"aegis smc: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aegis smc: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    view = "reference view" if args.reference_view else "point in time"
    print(f"aegis smc: {n} rows, {len(labels)} labels -> {args.out} ({view})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
