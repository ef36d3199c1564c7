"""Hindsight check of ``aegis smc``: how many cells of a run on the first k rows of a candle
file differ from the same cells of the run on the whole file, for the default
(point-in-time) output and for ``--reference-view``.

    .venv/bin/python -m bench.smc_prefix_check                       # BTCUSDT 15m 2024, L=5
    .venv/bin/python -m bench.smc_prefix_check FILE.csv --swing-length 50 --cuts 1000,20000

A cell "changed" if its text differs in any way (a value that appeared, vanished or moved);
"gone" counts the non-empty cells of the prefix run that are empty in the full run, and the
last column the order blocks (``OB`` cells) among them. Point in time must give 0 changed
for every cut.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import tempfile
from collections import Counter
from pathlib import Path

from common.errors import DataError
from services.brain.smc_cli import main as smc_main

DEFAULT_CANDLES = (Path(__file__).resolve().parents[1] / "services" / "exchange_sim" / "data"
                   / "BTCUSDT_15m_2024.csv")
DEFAULT_CUTS = (1_000, 5_000, 10_000, 17_500, 25_000, 34_000)


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def compare(prefix: list[list[str]], full: list[list[str]]) -> dict:
    """Cells of ``prefix`` (header first) against the same rows of ``full``."""
    if prefix[0] != full[0]:
        raise DataError("headers differ")
    header = prefix[0]
    changed = gone = 0
    by_column: Counter[str] = Counter()
    for a, b in zip(prefix[1:], full[1:len(prefix)]):
        for name, x, y in zip(header, a, b):
            if x != y:
                changed += 1
                by_column[name] += 1
                gone += bool(x) and not y
    cells = (len(prefix) - 1) * len(header)
    gone_ob = sum(1 for a, b in zip(prefix[1:], full[1:len(prefix)])
                  for name, x, y in zip(header, a, b) if name == "OB" and x and not y)
    return {"cells": cells, "changed": changed, "gone": gone, "gone_ob": gone_ob,
            "by_column": by_column}


def _smc(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # its one-line summary per run
        code = smc_main(argv)
    if code != 0:
        raise SystemExit(code)


def run(candles: Path, cuts: list[int], swing_length: int, reference_view: bool,
        tmp: Path) -> list[tuple[int, dict]]:
    lines = candles.read_text().splitlines(keepends=True)
    extra = ["--swing-length", str(swing_length)] + (["--reference-view"] if reference_view
                                                      else [])
    full_out = tmp / "full.csv"
    _smc([str(candles), "--out", str(full_out), *extra])
    full = read_rows(full_out)
    out = []
    for k in cuts:
        src, dst = tmp / f"prefix_{k}.csv", tmp / f"prefix_{k}.out.csv"
        src.write_text("".join(lines[:k + 1]))
        _smc([str(src), "--out", str(dst), *extra])
        out.append((k, compare(read_rows(dst), full)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.smc_prefix_check",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("candles", type=Path, nargs="?", default=DEFAULT_CANDLES)
    p.add_argument("--swing-length", type=int, default=5)
    p.add_argument("--cuts", default=",".join(map(str, DEFAULT_CUTS)),
                   help="prefix lengths in rows, comma-separated")
    args = p.parse_args(argv)
    cuts = [int(x) for x in args.cuts.split(",") if x.strip()]
    print(f"{args.candles.name}, swing length {args.swing_length}")
    print(f"{'view':<15} {'rows':>7} {'cells':>10} {'changed':>8} {'gone':>6} {'OB gone':>7}"
          "  most changed columns")
    for reference_view in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            for k, r in run(args.candles, cuts, args.swing_length, reference_view, Path(tmp)):
                top = ", ".join(f"{c} {n}" for c, n in r["by_column"].most_common(4))
                view = "reference-view" if reference_view else "point in time"
                print(f"{view:<15} {k:>7} {r['cells']:>10} {r['changed']:>8} {r['gone']:>6} "
                      f"{r['gone_ob']:>7}  {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
