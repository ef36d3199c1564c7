"""Our streaming SMC features against the reference library (smartmoneyconcepts 0.0.27).

Ground truth: the reference's own outputs on the EURUSD fixture (tests/data/smc/EURUSD),
which the installed reference still reproduces under pandas 3 (first test). Every settled
row must match exactly; every other row must be one of the differences docs/smc.md lists,
and each test below shows that the set of differing rows is exactly that list, with its
count on the fixture. Float32 columns are compared after rounding both sides to float32
(the reference stores them so; the CSV files print them in full).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc as reference

from services.brain.smc import (Pivot, SessionWindow, SmcConfig, Structure, reference_columns,
                                run_batch)
from tests.conftest import BTC_15M_CSV, SMC_DATA

EURUSD = SMC_DATA  # the reference's outputs are stored gzip-compressed (*.csv.gz)
BTC_15M = BTC_15M_CSV
SWING_LENGTH = 5  # the fixture's
N_ROWS = 24_424
F32 = {"bos_choch": ("Level",), "ob": ("Top", "Bottom", "OBVolume", "Percentage"),
       "liquidity": ("Level",), "previous_high_low": ("PreviousHigh", "PreviousLow"),
       "sessions": ("High", "Low"), "swing_highs_lows": (), "fvg": (), "retracements": ()}
CSV = {"swing_highs_lows": "swing_highs_lows_result_data.csv.gz", "fvg": "fvg_result_data.csv.gz",
       "bos_choch": "bos_choch_result_data.csv.gz", "ob": "ob_result_data.csv.gz",
       "liquidity": "liquidity_result_data.csv.gz", "sessions_London": "sessions_result_data.csv.gz",
       "retracements": "retracements_result_data.csv.gz"}


def diff_rows(ours: dict, ref: pd.DataFrame, function: str) -> np.ndarray:
    """Rows where any of the reference's columns differs (NaN equals NaN)."""
    bad = np.zeros(len(ref), dtype=bool)
    for col in ref.columns:
        a = np.asarray(ours[col], dtype=float)
        b = ref[col].to_numpy(dtype=float)
        if col in F32[function]:
            a, b = a.astype(np.float32), b.astype(np.float32)
        bad |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return np.flatnonzero(bad)


def frame_of(cols: dict) -> pd.DataFrame:
    return pd.DataFrame({k: v for k, v in cols.items()})


class Run:
    """Our labels and columns for one candle frame, plus the reference run on it."""

    def __init__(self, df: pd.DataFrame, config: SmcConfig) -> None:
        times = (df.index.as_unit("ms").asi8).tolist()
        self.labels, self.state = run_batch(times, df["open"], df["high"], df["low"],
                                            df["close"], df["volume"], config)
        self.cols = reference_columns(self.labels, len(df), config)
        self.our_swings = frame_of(self.cols["swing_highs_lows"])


def eurusd_frame() -> pd.DataFrame:
    """The fixture as SOURCES.md says the reference was run on it."""
    df = pd.read_csv(EURUSD / "EURUSD_15M.csv").set_index("Date")
    df.index = pd.to_datetime(df.index, format="%Y.%m.%d %H:%M:%S")
    return df.rename(columns=str.lower)


def fixture_config(**kw) -> SmcConfig:
    kw.setdefault("sessions", (SessionWindow.named("London"),))
    return SmcConfig(swing_length=SWING_LENGTH, **kw)


def whole_file_band(df: pd.DataFrame) -> float:
    """The reference's liquidity band: 1 % of the whole file's range (hindsight)."""
    return float((df["high"].max() - df["low"].min()) * 0.01)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return eurusd_frame()


@pytest.fixture(scope="module")
def run(df) -> Run:
    return Run(df, fixture_config(liquidity_band=whole_file_band(df)))


@pytest.fixture(scope="module")
def csv():
    return {k: pd.read_csv(EURUSD / f) for k, f in CSV.items()}


@pytest.fixture(scope="module")
def ref_on_our_swings(df, run):
    """The reference's swing-based functions fed with *our* swings: what it would say
    without its artificial first/last swings and without the still-pending last swing."""
    return {fn: getattr(reference, fn)(df, run.our_swings)
            for fn in ("bos_choch", "ob", "liquidity", "retracements")}


def test_installed_reference_reproduces_the_fixture_csvs_under_pandas_3(df):
    """The CSV files are the ground truth; the installed reference (pandas 3) still yields
    them exactly, so running it live on other data is a fair oracle."""
    d = df.copy()
    sw = reference.swing_highs_lows(d, swing_length=SWING_LENGTH)
    got = {"swing_highs_lows_result_data.csv.gz": sw,
           "fvg_result_data.csv.gz": reference.fvg(d),
           "fvg_consecutive_result_data.csv.gz": reference.fvg(d, join_consecutive=True),
           "bos_choch_result_data.csv.gz": reference.bos_choch(d, sw),
           "ob_result_data.csv.gz": reference.ob(d, sw),
           "liquidity_result_data.csv.gz": reference.liquidity(d, sw),
           "previous_high_low_result_data_4h.csv.gz": reference.previous_high_low(d, "4h"),
           "previous_high_low_result_data_1D.csv.gz": reference.previous_high_low(d, "1D"),
           "previous_high_low_result_data_W.csv.gz": reference.previous_high_low(d, "W"),
           "sessions_result_data.csv.gz": reference.sessions(d, "London"),
           "retracements_result_data.csv.gz": reference.retracements(d, sw)}
    for name, frame in got.items():
        pd.testing.assert_frame_equal(frame, pd.read_csv(EURUSD / name), check_dtype=False)
    assert pd.__version__.split(".")[0] == "3"


class TestSwings:
    def test_differ_only_on_the_artificial_first_and_last_rows_and_the_pending_last_swing(
            self, run, csv):
        """Rows 0 and 24423 are the reference's forced swings (the opposite of the first and
        last real ones) and row 24418 its last real swing, still pending for us because no swing
        low has followed it and a higher high could still replace it."""
        ref = csv["swing_highs_lows"]
        assert diff_rows(run.cols["swing_highs_lows"], ref, "swing_highs_lows").tolist() == [
            0, 24418, 24423]
        real = ref["HighLow"].iloc[1:-1].dropna()
        assert ref["HighLow"].iloc[0] == -real.iloc[0] == 1
        assert ref["HighLow"].iloc[-1] == -real.iloc[-1] == -1
        assert real.index[-1] == 24418
        st = run.state.swings
        assert (st.run_dir, st.best_index) == (1, 24418)
        assert Pivot(direction=1, index=24418, level=float(ref["Level"][24418]),
                     known_at=24418 + SWING_LENGTH) in run.labels

    def test_all_other_2705_swings_match(self, run, csv):
        """Every real swing of the reference but the pending last one is ours, same level."""
        ours = run.cols["swing_highs_lows"]["HighLow"]
        assert int(np.count_nonzero(~np.isnan(ours))) == 2705
        assert int(csv["swing_highs_lows"]["HighLow"].notna().sum()) == 2705 + 3


class TestFairValueGaps:
    def test_fvg_matches_every_row(self, run, csv):
        """No difference: a gap needs one bar of look-ahead and we emit it one bar later."""
        assert diff_rows(run.cols["fvg"], csv["fvg"], "fvg").size == 0
        assert int(csv["fvg"]["FVG"].notna().sum()) == 5020

    def test_joined_fvg_matches_every_row(self, df):
        """join_consecutive: the run of gaps is emitted when it has ended; no difference."""
        r = Run(df, fixture_config(fvg_join_consecutive=True, timeframes=(), sessions=()))
        ref = pd.read_csv(EURUSD / "fvg_consecutive_result_data.csv.gz")
        assert diff_rows(r.cols["fvg"], ref, "fvg").size == 0


class TestBosChoch:
    def test_differs_only_on_the_167_rows_the_reference_deletes(self, run, csv):
        """The only differences are the 167 rows the reference deleted (it leaves their
        BrokenIndex behind): on 62 we had emitted the label before its deleter was known
        (hindsight), on the other 105 we dropped it too and only the stray BrokenIndex differs."""
        ref = csv["bos_choch"]
        rows = diff_rows(run.cols["bos_choch"], ref, "bos_choch")
        marker = ref["BOS"].isna() & ref["CHOCH"].isna() & ref["BrokenIndex"].notna()
        assert rows.tolist() == np.flatnonzero(marker).tolist()
        assert rows.size == 167
        ours = run.cols["bos_choch"]
        labelled = ~np.isnan(ours["BOS"][rows]) | ~np.isnan(ours["CHOCH"][rows])
        assert int(labelled.sum()) == 62
        hindsight = rows[labelled]
        assert np.array_equal(ours["BrokenIndex"][hindsight],
                              ref["BrokenIndex"].to_numpy()[hindsight])
        assert np.isnan(ours["BrokenIndex"][rows[~labelled]]).all()

    def test_the_artificial_swings_change_no_bos_choch_row_on_this_fixture(self, csv,
                                                                           ref_on_our_swings):
        """Fed our swings, the reference gives its own CSV back: here its forced swings and
        our pending swing change nothing in bos_choch."""
        assert diff_rows(ref_on_our_swings["bos_choch"], csv["bos_choch"], "bos_choch").size == 0

    def test_each_hindsight_label_survives_in_the_reference_on_what_was_known_at_emission(
            self, df, run, csv):
        """For every one of the 62 labels we emitted and the reference deleted, the
        reference itself keeps the label when run on the bars and swings known when we
        emitted it: the deletion needs later data."""
        ref = csv["bos_choch"]
        swings = [x for x in run.labels if type(x).__name__ == "Swing"]
        emitted = {x.index: x for x in run.labels if isinstance(x, Structure)}
        deleted = [i for i in emitted if np.isnan(ref["BOS"][i]) and np.isnan(ref["CHOCH"][i])]
        assert len(deleted) == 62
        for i in deleted:
            lab = emitted[i]
            known = [s for s in swings if s.known_at <= lab.known_at]
            start = max(s.index for s in known if s.index < i)  # the pattern's first swing
            window = df.iloc[start:lab.known_at + 1]
            sw = pd.DataFrame({"HighLow": np.nan, "Level": np.nan}, index=range(len(window)))
            for s in known:
                if s.index >= start:
                    sw.loc[s.index - start, ["HighLow", "Level"]] = (s.direction, s.level)
            got = reference.bos_choch(window, sw)
            col = "BOS" if lab.kind == "BOS" else "CHOCH"
            row = got.iloc[i - start]
            assert (row[col], row["BrokenIndex"] + start) == (lab.direction, lab.broken_index)
            assert np.float32(row["Level"]) == np.float32(lab.level)


class TestOrderBlocks:
    def test_order_blocks_match_every_row(self, run, csv, ref_on_our_swings):
        """Formed behind the swing horizon, our blocks are the reference's; on this fixture
        no bar holds both a bullish and a bearish block and none forms after our horizon."""
        assert diff_rows(run.cols["ob"], csv["ob"], "ob").size == 0
        assert diff_rows(run.cols["ob"], ref_on_our_swings["ob"], "ob").size == 0
        assert int(csv["ob"]["OB"].notna().sum()) == 66


class TestLiquidity:
    def test_with_the_reference_band_only_rows_reached_by_its_artificial_first_swing_differ(
            self, run, csv, ref_on_our_swings):
        """With the whole-file band only rows 0, 19, 52 and 86 differ, all caused by the
        reference's forced swing high on row 0 (a pool root taking the highs that root pools for
        us), since the reference fed our swings agrees with us on every row."""
        ref = csv["liquidity"]
        assert diff_rows(run.cols["liquidity"], ref, "liquidity").tolist() == [0, 19, 52, 86]
        assert diff_rows(ref_on_our_swings["liquidity"], ref, "liquidity").tolist() == [
            0, 19, 52, 86]
        assert diff_rows(run.cols["liquidity"], ref_on_our_swings["liquidity"],
                         "liquidity").size == 0
        assert ref["Liquidity"][0] == 1

    def test_causal_band_changes_448_pool_rows(self, df, csv):
        """With the default causal band (1 % of the range seen so far, per pool) 448 rows
        differ, all where one side has a pool, while with the whole-file band only the 4 rows of
        the previous test remain, so the band is their only cause."""
        r = Run(df, fixture_config(timeframes=(), sessions=()))
        ref = csv["liquidity"]
        rows = diff_rows(r.cols["liquidity"], ref, "liquidity")
        assert rows.size == 448
        has_pool = ~np.isnan(r.cols["liquidity"]["Liquidity"]) | ref["Liquidity"].notna()
        assert has_pool.to_numpy()[rows].all()


class TestPerBarFeatures:
    @pytest.mark.parametrize("timeframe", ["4h", "1D", "W"])
    def test_previous_high_low_matches_every_row(self, run, timeframe):
        """Causal as computed by the reference (the periods it uses have always ended)."""
        ref = pd.read_csv(EURUSD / f"previous_high_low_result_data_{timeframe}.csv.gz")
        got = run.cols[f"previous_high_low_{timeframe}"]
        assert diff_rows(got, ref, "previous_high_low").size == 0

    def test_london_session_matches_every_row(self, run, csv):
        """Causal as computed by the reference."""
        assert diff_rows(run.cols["sessions_London"], csv["sessions_London"], "sessions").size == 0


class TestRetracements:
    def test_differ_only_on_the_rows_after_the_final_swing_horizon(self, run, csv,
                                                                  ref_on_our_swings):
        """Only rows 24419..24423, which describe bars after the pending swing (24418), differ:
        we have not emitted them (NaN), and every earlier row matches, warm-up included (the
        fixture holds an even number of real swings, 2,706)."""
        ref = csv["retracements"]
        assert run.state.horizon == 24418
        rows = diff_rows(run.cols["retracements"], ref, "retracements")
        assert rows.tolist() == list(range(24419, N_ROWS))
        assert np.isnan(run.cols["retracements"]["Direction"][rows]).all()
        assert int(csv["swing_highs_lows"]["HighLow"].iloc[1:-1].notna().sum()) == 2706


def btc_slice(start: int, rows: int) -> pd.DataFrame:
    """BTCUSDT 15 m bars indexed by open time (close time + 1 ms - 15 min, SOURCES.md)."""
    raw = pd.read_csv(BTC_15M).iloc[start:start + rows]
    close = pd.to_datetime(raw["close_datetime"], utc=True)
    idx = (close + pd.Timedelta(milliseconds=1) - pd.Timedelta(minutes=15)).dt.tz_localize(None)
    return raw[["open", "high", "low", "close", "volume"]].set_index(pd.DatetimeIndex(idx))


@pytest.mark.parametrize("start,length", [(0, 5), (25_000, 8)])
def test_non_default_options_agree_on_a_binance_slice(start, length):
    """Joined gaps, body mitigation of blocks and wick breaks of structure: the reference
    (fed our swings) agrees on every row but the documented ones (structure rows it
    deletes, blocks formed after our horizon)."""
    df = btc_slice(start, 4_000)
    config = SmcConfig(swing_length=length, close_break=False, close_mitigation=True,
                       fvg_join_consecutive=True, liquidity_band=whole_file_band(df),
                       timeframes=(), sessions=())
    r = Run(df, config)
    assert diff_rows(r.cols["fvg"], reference.fvg(df, join_consecutive=True), "fvg").size == 0
    ob = reference.ob(df, r.our_swings, close_mitigation=True)
    for i in diff_rows(r.cols["ob"], ob, "ob"):
        side = r.state.ob.bull if ob["OB"][i] == 1 else r.state.ob.bear
        assert np.isnan(r.cols["ob"]["OB"][i]) and i > side.last
    bc = reference.bos_choch(df, r.our_swings, close_break=False)
    marker = bc["BOS"].isna() & bc["CHOCH"].isna() & bc["BrokenIndex"].notna()
    assert diff_rows(r.cols["bos_choch"], bc, "bos_choch").tolist() == np.flatnonzero(
        marker).tolist()
    assert int((bc["BOS"].notna() | bc["CHOCH"].notna()).sum()) > 50


def test_a_binance_slice_differs_only_in_the_documented_categories():
    """On another market and swing length (BTCUSDT 15 m, 4,000 bars, L = 3, the reference
    run live) every differing row is caused by the reference's artificial or pending swings
    (absent when it is fed our swings) or is in one of our documented causal categories."""
    # swings: the forced rows and the pending swing; FVG, previous high/low, sessions: none;
    # bos_choch: the rows it deletes; ob: blocks formed after our horizon; liquidity: none;
    # retracements: the rows after our horizon
    df = btc_slice(10_000, 4_000)
    n, length = len(df), 3
    config = SmcConfig(swing_length=length, liquidity_band=whole_file_band(df),
                       sessions=(SessionWindow.named("London"), SessionWindow.named("Sydney")))
    r = Run(df, config)
    ref_sw = reference.swing_highs_lows(df, length)
    pending = r.state.swings.best_index
    assert diff_rows(r.cols["swing_highs_lows"], ref_sw, "swing_highs_lows").tolist() == [
        0, pending, n - 1]
    assert diff_rows(r.cols["fvg"], reference.fvg(df), "fvg").size == 0
    for tf in ("4h", "1D", "W"):
        got = reference.previous_high_low(df, tf)
        assert diff_rows(r.cols[f"previous_high_low_{tf}"], got, "previous_high_low").size == 0
    for name in ("London", "Sydney"):
        got = reference.sessions(df.copy(), name)
        assert diff_rows(r.cols[f"sessions_{name}"], got, "sessions").size == 0
    horizon = r.state.horizon
    caused_by_swings = {}
    for fn in ("bos_choch", "ob", "liquidity", "retracements"):
        ref_full = getattr(reference, fn)(df, ref_sw)
        ref_ours = getattr(reference, fn)(df, r.our_swings)
        by_swings = set(diff_rows(ref_ours, ref_full, fn).tolist())
        causal = diff_rows(r.cols[fn], ref_ours, fn)
        if fn == "bos_choch":
            marker = ref_ours["BOS"].isna() & ref_ours["CHOCH"].isna() & ref_ours["BrokenIndex"].notna()
            assert causal.tolist() == np.flatnonzero(marker).tolist()
        elif fn == "ob":  # formed on a bar our formation cursor has not reached
            for i in causal:
                d = ref_ours["OB"][i]
                side = r.state.ob.bull if d == 1 else r.state.ob.bear
                assert np.isnan(r.cols["ob"]["OB"][i]) and i > side.last
        elif fn == "liquidity":
            assert causal.size == 0
        else:
            assert causal.tolist() == list(range(horizon + 1, n))
        assert set(diff_rows(r.cols[fn], ref_full, fn).tolist()) <= by_swings | set(causal.tolist())
        caused_by_swings[fn] = sorted(by_swings)
    assert caused_by_swings["bos_choch"] == [3985]
    assert caused_by_swings["ob"] == []
    assert caused_by_swings["liquidity"] == [3977]
    # retracement warm-up: an odd number of real swings makes the reference's warm-up one
    # direction change longer (rows 16..20), plus the rows after our horizon
    assert caused_by_swings["retracements"] == [16, 17, 18, 19, 20] + list(range(horizon + 1, n))
    assert int(ref_sw["HighLow"].iloc[1:-1].notna().sum()) % 2 == 1
