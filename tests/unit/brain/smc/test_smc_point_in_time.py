"""``aegis smc`` writes point in time by default: on real Binance candles a run on any prefix
of a file writes exactly the first rows of the run on the whole file (0 cells changed),
each row holds what became known at its close, and ``--reference-view`` still writes the
old layout, which does change on prefixes (so the prefix check can fail)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from services.brain.smc import (FairValueGap, FairValueGapMitigated, LiquidityPool,
                                LiquiditySwept, OrderBlock, OrderBlockMitigated,
                                OrderBlockReset, Pivot, SessionWindow, SmcConfig, Structure,
                                Swing, point_in_time, run_batch)
from services.brain.smc_cli import main, read_candles

DATA = Path(__file__).resolve().parents[4] / "services" / "exchange_sim" / "data"
BTC_15M = DATA / "BTCUSDT_15m_2024.csv"  # 34,945 real 15m bars of 2024, in the repository
BTC_1M = DATA / "BTCUSDT_1m_2024-12.csv"
ROWS_15M = 34_945
CUTS_15M = (1, 700, 4_000, 9_000, 20_000)
L5 = ("--swing-length", "5", "--bar-seconds", "900")  # a one-row file cannot infer the bar
OPTS_1M = ("--fvg-join-consecutive", "--close-mitigation", "--break-on-wick")
# the reference view of the whole 15m file with --swing-length 5, as written before the
# point-in-time view existed (commit 9d0d232): sha256 of the CSV
REFERENCE_VIEW_SHA256 = "d5a3a6730fa202517c0c0ef205c0c19a8a2a40e88633719dcb5dce98ff848c14"


def head_lines(src: Path, dst: Path, rows: int) -> Path:
    with src.open() as fh:
        dst.write_text("".join(next(fh) for _ in range(rows + 1)))
    return dst


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def run(src: Path, out: Path, *extra: str) -> list[list[str]]:
    assert main([str(src), "--out", str(out), *extra]) == 0
    return rows_of(out)


def changed_cells(prefix: list[list[str]], full: list[list[str]]) -> tuple[int, int, int]:
    """``(changed, gone, gone order blocks)``: prefix cells whose text differs from the same
    cell of the full run; of those, non-empty ones that are empty there; of those, ``OB``."""
    header = prefix[0]
    assert header == full[0]
    changed = gone = gone_ob = 0
    for a, b in zip(prefix[1:], full[1:len(prefix)]):
        for name, x, y in zip(header, a, b):
            if x != y:
                changed += 1
                if x and not y:
                    gone += 1
                    gone_ob += name == "OB"
    return changed, gone, gone_ob


@pytest.fixture(scope="module")
def btc15(tmp_path_factory):
    """The whole 15m file with L = 5, both views, and the labels behind them."""
    tmp = tmp_path_factory.mktemp("smc_pit")
    c = read_candles(BTC_15M)
    labels, _ = run_batch(c["time_ms"], c["open"], c["high"], c["low"], c["close"],
                          c["volume"], SmcConfig(swing_length=5))
    return {"labels": labels, "pit": run(BTC_15M, tmp / "pit.csv", *L5),
            "ref_path": tmp / "ref.csv", "ref": run(BTC_15M, tmp / "ref.csv", *L5,
                                                    "--reference-view")}


@pytest.fixture(scope="module")
def btc1(tmp_path_factory):
    """The first 12,000 bars of the 1m file, default swing length, other options."""
    tmp = tmp_path_factory.mktemp("smc_pit_1m")
    return run(head_lines(BTC_1M, tmp / "full.csv", 12_000), tmp / "f.csv", *OPTS_1M)


def column(rows: list[list[str]], name: str) -> list[str]:
    k = rows[0].index(name)
    return [r[k] for r in rows[1:]]


def cells(rows: list[list[str]], t: int, *names: str) -> list[str]:
    return [rows[t + 1][rows[0].index(n)] for n in names]


class TestNoHindsight:
    @pytest.mark.parametrize("cut", CUTS_15M)
    def test_a_prefix_of_the_15m_file_writes_exactly_the_first_rows_of_the_full_run(
            self, btc15, tmp_path, cut):
        """Point in time: every cell of a run on the first ``cut`` bars, empty or not,
        equals the same cell of the run on all 34,945 bars (0 cells changed)."""
        src = head_lines(BTC_15M, tmp_path / "prefix.csv", cut)
        prefix = run(src, tmp_path / "out.csv", *L5)
        full = btc15["pit"]
        assert len(prefix) == cut + 1 and len(full) == ROWS_15M + 1
        assert changed_cells(prefix, full) == (0, 0, 0)
        assert prefix == full[:cut + 1]

    @pytest.mark.parametrize("cut", (3_000, 7_500))
    def test_a_prefix_of_the_1m_file_with_other_options_changes_no_cell(self, btc1, tmp_path,
                                                                       cut):
        """Same with the default swing length (50), joined gaps (a gap can be mitigated on
        the bar it becomes known), body mitigation and wick breaks, on 12,000 real 1m bars."""
        full = btc1
        prefix = run(head_lines(BTC_1M, tmp_path / "prefix.csv", cut), tmp_path / "p.csv",
                     *OPTS_1M)
        assert changed_cells(prefix, full) == (0, 0, 0)
        assert prefix == full[:cut + 1]
        assert sum(1 for x in column(full, "OB") if x) > 0  # the file does hold blocks


class TestReferenceView:
    def test_reference_view_is_the_old_output_byte_for_byte(self, btc15):
        """``--reference-view`` writes exactly what ``aegis smc`` wrote before this view
        existed (same bytes on the whole 15m file)."""
        digest = hashlib.sha256(btc15["ref_path"].read_bytes()).hexdigest()
        assert digest == REFERENCE_VIEW_SHA256

    def test_reference_view_changes_on_a_prefix(self, btc15, tmp_path):
        """The check has teeth: the reference view of the first 10,000 bars differs from the
        whole-file run in 269 cells, 174 of them values that are gone later, 29 of those
        order blocks (reset later, so the reference deletes their rows)."""
        src = head_lines(BTC_15M, tmp_path / "prefix.csv", 10_000)
        prefix = run(src, tmp_path / "out.csv", *L5, "--reference-view")
        assert changed_cells(prefix, btc15["ref"]) == (269, 174, 29)

    def test_reference_band_needs_the_reference_view(self, tmp_path, capsys):
        """The whole file's liquidity band is hindsight: asked for without
        ``--reference-view`` it is refused with one line and exit 2, nothing written."""
        src = head_lines(BTC_15M, tmp_path / "in.csv", 50)
        out = tmp_path / "out.csv"
        assert main([str(src), "--out", str(out), "--reference-band"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("aegis smc: --reference-band") and err.count("\n") == 1
        assert not out.exists()
        assert main([str(src), "--out", str(out), "--reference-band", "--reference-view"]) == 0


class TestWhatARowSays:
    def test_each_event_is_written_once_on_the_row_of_the_close_that_made_it_known(self, btc15):
        """Every pivot, swing, gap, structure label, block and pool record sits on its
        ``known_at`` row naming the bar it is about; every gap mitigation and sweep on the
        bar that did it."""
        pit, labels = btc15["pit"], btc15["labels"]
        for kind, direction, index in (
                (Pivot, "PivotHighLow", "PivotIndex"), (Swing, "HighLow", "SwingIndex"),
                (FairValueGap, "FVG", "FVGIndex"), (OrderBlock, "OB", "OBIndex"),
                (LiquidityPool, "Liquidity", "LiquidityIndex"),
                (FairValueGapMitigated, "MitigatedFVG", "MitigatedFVGIndex"),
                (LiquiditySwept, "SweptLiquidity", "SweptLiquidityIndex")):
            want = sorted((x.known_at, x.direction, x.index) for x in labels
                          if isinstance(x, kind))
            got = sorted((t, int(d), int(i))
                         for t, (ds, xs) in enumerate(zip(column(pit, direction),
                                                          column(pit, index)))
                         for d, i in zip(ds.split(), xs.split()))
            assert got == want, kind.__name__
        structures = [(x.known_at, x.kind, x.direction, x.index) for x in labels
                      if isinstance(x, Structure)]
        got = [(t, "BOS" if b else "CHOCH", int(b or c), int(i)) for t, (b, c, i) in
               enumerate(zip(column(pit, "BOS"), column(pit, "CHOCH"),
                             column(pit, "StructureIndex"))) if b or c]
        assert got == structures and len(got) == 1673

    def test_swing_rows_carry_the_earlier_bar_they_confirm(self, btc15):
        """Bar 26 closes: the pivot low on bar 21 (26 - L) is decided, and with it the swing
        high on bar 10 is confirmed (its run of highs ended); the reference view writes that
        swing back on row 10 instead."""
        pit, ref = btc15["pit"], btc15["ref"]
        assert cells(pit, 26, "PivotHighLow", "PivotLevel", "PivotIndex", "HighLow",
                     "swing_highs_lows.Level", "SwingIndex") == ["-1", "42209.46", "21", "1",
                                                                 "42775.0", "10"]
        assert cells(pit, 10, "HighLow") == [""]
        assert cells(ref, 10, "HighLow", "swing_highs_lows.Level") == ["1", "42775.0"]

    def test_a_block_known_late_shows_its_state_as_of_that_close(self, btc15):
        """The bearish block on bar 970 formed when bar 984 closed, but is known only at
        1028 (its swing horizon); by then bar 1007 had mitigated and bar 1027 reset it: the
        row says so, and no later row changes it. The reference view deletes the block."""
        pit, ref = btc15["pit"], btc15["ref"]
        assert cells(pit, 1028, "OB", "ob.Top", "ob.Bottom", "OBIndex", "OBFormedIndex",
                     "OBMitigatedAt", "OBResetAt") == ["-1", "46750.0", "46468.33", "970",
                                                       "984", "1007", "1027"]
        assert cells(ref, 970, "OB") == [""]

    def test_several_events_at_one_close_are_listed_in_row_order(self, btc15):
        """Bar 244 mitigated three bullish blocks and bar 90 two gaps (while a new gap was
        found): each column of the group lists them, space-separated, in the same order."""
        pit = btc15["pit"]
        assert cells(pit, 244, "MitigatedOB", "MitigatedOBIndex") == ["1 1 1", "27 61 93"]
        assert cells(pit, 90, "FVG", "FVGIndex", "MitigatedFVG", "MitigatedFVGIndex") == [
            "-1", "89", "1 1", "83 84"]


def test_hand_made_events_fill_placeholders_and_catch_up_state():
    """Two structure labels at one close list 0 where a kind does not apply; a block known
    at 20 that bar 17 mitigated and bar 20 reset shows both on its row, and the reset (this
    bar's own) also in the reset group; one session keeps unprefixed names."""
    labels = [
        Structure(kind="BOS", direction=1, index=3, level=1.5, broken_index=19, known_at=20),
        Structure(kind="CHOCH", direction=-1, index=8, level=2.5, broken_index=20, known_at=20),
        OrderBlock(direction=1, index=12, top=3.0, bottom=2.0, volume=9.0, percentage=50.0,
                   formed_index=15, known_at=20),
        OrderBlockMitigated(direction=1, index=12, mitigated_index=16, at_index=17,
                            known_at=20),
        OrderBlockReset(direction=1, index=12, at_index=20, known_at=20),
    ]
    view = point_in_time(labels, 21, SmcConfig(swing_length=5, timeframes=(),
                                               sessions=(SessionWindow.named("London"),)))
    rows = [view.header()] + list(view.rows())
    assert rows[0][-7:] == ["Active", "High", "Low", "Direction", "CurrentRetracement%",
                            "DeepestRetracement%", "RetracementIndex"]
    assert cells(rows, 20, "BOS", "CHOCH", "bos_choch.Level", "BrokenIndex",
                 "StructureIndex") == ["1 0", "0 -1", "1.5 2.5", "19 20", "3 8"]
    assert cells(rows, 20, "OB", "OBIndex", "OBFormedIndex", "OBMitigatedAt", "OBResetAt",
                 "MitigatedOB", "ResetOB", "ResetOBIndex") == ["1", "12", "15", "17", "20",
                                                               "", "1", "12"]
    assert all(x == "" for t in range(20) for x in rows[t + 1])
