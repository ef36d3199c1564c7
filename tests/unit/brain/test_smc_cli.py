"""``aegis smc``: candle CSV in, our SMC features out under the reference's column names;
bad input gives one clear line on stderr and exit code 2."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc as reference

from services.brain.smc_cli import main
from tests.conftest import BTC_1M_CSV, SMC_DATA

EURUSD_CSV = SMC_DATA / "EURUSD_15M.csv"
SLICE_ROWS = 800

EXPECTED_HEADER = [
    "open_time", "HighLow", "swing_highs_lows.Level", "FVG", "fvg.Top", "fvg.Bottom",
    "fvg.MitigatedIndex", "BOS", "CHOCH", "bos_choch.Level", "BrokenIndex", "OB", "ob.Top",
    "ob.Bottom", "OBVolume", "ob.MitigatedIndex", "Percentage", "Liquidity", "liquidity.Level",
    "End", "Swept",
    "previous_high_low_4h.PreviousHigh", "previous_high_low_4h.PreviousLow",
    "previous_high_low_4h.BrokenHigh", "previous_high_low_4h.BrokenLow",
    "previous_high_low_1D.PreviousHigh", "previous_high_low_1D.PreviousLow",
    "previous_high_low_1D.BrokenHigh", "previous_high_low_1D.BrokenLow",
    "previous_high_low_W.PreviousHigh", "previous_high_low_W.PreviousLow",
    "previous_high_low_W.BrokenHigh", "previous_high_low_W.BrokenLow",
    "Active", "High", "Low", "Direction", "CurrentRetracement%", "DeepestRetracement%"]


def head_lines(src: Path, dst: Path, rows: int) -> Path:
    with src.open() as fh:
        dst.write_text("".join(next(fh) for _ in range(rows + 1)))
    return dst


def same(a, b, f32=False) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if f32:
        a, b = a.astype(np.float32), b.astype(np.float32)
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@pytest.fixture(scope="module")
def eurusd_out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smc_cli")
    src = head_lines(EURUSD_CSV, tmp / "eurusd.csv", SLICE_ROWS)
    out = tmp / "features.csv"
    code = main([str(src), "--swing-length", "5", "--out", str(out), "--reference-band",
                 "--sessions", "London", "--reference-view"])
    assert code == 0
    ref_df = pd.read_csv(src).set_index("Date")
    ref_df.index = pd.to_datetime(ref_df.index, format="%Y.%m.%d %H:%M:%S")
    return out, ref_df


def test_eurusd_slice_writes_the_reference_columns_for_every_row(eurusd_out):
    """Header is the reference's names (prefixed where two functions share one), one row per
    candle, open times in UTC."""
    out, _ = eurusd_out
    with out.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == EXPECTED_HEADER
    assert len(rows) == SLICE_ROWS + 1
    assert (rows[1][0], rows[-1][0]) == ("2022-10-10 00:00:00", "2022-10-20 07:45:00")


def test_eurusd_slice_values_agree_with_the_reference_run_on_the_same_slice(eurusd_out):
    """Gaps, previous highs/lows and the session equal the reference on every row; swings on
    every row but its two forced ones and the pending last swing; structure labels, blocks
    and pools on every row the reference does not delete or build on those swings."""
    out, df = eurusd_out
    got = pd.read_csv(out)
    d = df.copy()
    fvg = reference.fvg(d)
    assert all(same(got[f"fvg.{c}" if c != "FVG" else c], fvg[c])
               for c in ("FVG", "Top", "Bottom", "MitigatedIndex"))
    for tf in ("4h", "1D", "W"):
        phl = reference.previous_high_low(d, tf)
        for c in phl.columns:
            assert same(got[f"previous_high_low_{tf}.{c}"], phl[c], f32=True)
    ses = reference.sessions(d.copy(), "London")
    assert same(got["Active"], ses["Active"]) and same(got["High"], ses["High"], f32=True)
    sw = reference.swing_highs_lows(d, 5)
    differ = np.flatnonzero(~((got["HighLow"] == sw["HighLow"])
                              | (got["HighLow"].isna() & sw["HighLow"].isna())))
    last_real = int(sw["HighLow"].iloc[1:-1].last_valid_index())
    assert differ.tolist() == [0, last_real, SLICE_ROWS - 1]
    ob = reference.ob(d, sw)
    # the reference's block on row 794 formed on a bar after our swing horizon (its last
    # swing before that bar is still pending for us): not settled, not emitted
    assert np.isnan(got["OB"][794]) and ob["OB"][794] == 1
    keep = np.arange(SLICE_ROWS) != 794
    for c in ("OB", "Top", "Bottom", "OBVolume", "MitigatedIndex", "Percentage"):
        name = c if c in ("OB", "OBVolume", "Percentage") else f"ob.{c}"
        assert same(got[name][keep], ob[c][keep], f32=True)
    assert int(got["OB"].notna().sum()) == 7
    # structure: the reference fed the swings we wrote keeps exactly our labels (it deletes
    # with hindsight a few more, and leaves their BrokenIndex behind)
    ours_sw = pd.DataFrame({"HighLow": got["HighLow"], "Level": got["swing_highs_lows.Level"]})
    bc = reference.bos_choch(d, ours_sw)
    kept = (bc["BOS"].notna() | bc["CHOCH"].notna()).to_numpy()
    assert same(got["BOS"][kept], bc["BOS"][kept]) and same(got["CHOCH"][kept], bc["CHOCH"][kept])
    assert same(got["bos_choch.Level"][kept], bc["Level"][kept], f32=True)
    assert same(got["BrokenIndex"][kept], bc["BrokenIndex"][kept])
    assert int(kept.sum()) == 40


def test_binance_close_time_column_becomes_the_bar_open_time(tmp_path):
    """close_datetime 00:00:59.999+01:00 is the 23:00 UTC one-minute bar; the default
    sessions are prefixed by name since they share column names."""
    src = head_lines(BTC_1M_CSV, tmp_path / "btc.csv", 300)
    out = tmp_path / "f.csv"
    assert main([str(src), "--swing-length", "5", "--out", str(out)]) == 0
    got = pd.read_csv(out)
    assert got["open_time"].iloc[:2].tolist() == ["2024-11-30 23:00:00", "2024-11-30 23:01:00"]
    assert len(got) == 300
    assert {"sessions_Tokyo.Active", "sessions_London.High", "sessions_New_York.Low"} <= set(got)
    assert int(got["HighLow"].notna().sum()) > 0


BAD = [
    ("open,high,low,close,date\n1,2,0.5,1.5,2024-01-01 00:00\n", [],
     "missing column(s) volume"),
    ("date,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,1.5,1\n"
     "2024-01-01 00:15,1,abc,0.5,1.5,1\n", [], ":3: high is not a number: 'abc'"),
    ("date,open,high,low,close,volume\n2024-01-01 00:00,1,1.0,2.0,1.5,1\n", [],
     ":2: high 1.0 < low 2.0"),
    ("date,open,high,low,close,volume\n2024-01-01 00:15,1,2,0.5,1.5,1\n"
     "2024-01-01 00:00,1,2,0.5,1.5,1\n", [], ":3: time does not increase"),
    ("date,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,nan,1\n", [],
     ":2: close is not finite"),
    ("date,open,high,low,close,volume\nyesterday,1,2,0.5,1.5,1\n", [],
     ":2: cannot read time 'yesterday'"),
    ("open,high,low,close,volume\n1,2,0.5,1.5,1\n", [], "no time column"),
    ("", [], "empty file"),
    ("date,open,high,low,close,volume\n", [], "no candles"),
    ("date,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,1.5,1\n",
     ["--sessions", "Mars"], "unknown session 'Mars'"),
    ("date,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,1.5,1\n",
     ["--swing-length", "0"], "swing_length must be an int >= 1"),
    ("date,open,high,low,close,volume\n2024-01-01 00:00,1,2,0.5,1.5,1\n",
     ["--timeframes", "5h"], "must divide one day"),
]


@pytest.mark.parametrize("text,extra,message", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_exits_2_with_one_clear_line_and_no_traceback(tmp_path, capsys, text, extra,
                                                                message):
    """Each kind of bad file or option names the problem (and the line) on stderr."""
    src = tmp_path / "in.csv"
    src.write_text(text)
    out = tmp_path / "out.csv"
    assert main([str(src), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("aegis smc: ") and err.count("\n") == 1
    assert not out.exists()


def test_missing_file_and_missing_option_exit_2(tmp_path, capsys):
    """A file that is not there, or no --out, is a usage error too."""
    assert main([str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "cannot open" in capsys.readouterr().err
    assert main([str(tmp_path / "nope.csv")]) == 2
    assert "--out" in capsys.readouterr().err
