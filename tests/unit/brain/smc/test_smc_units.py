"""SMC features on small hand-made candle sequences: one scenario per feature, exact values."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from services.brain.smc import (FairValueGap, FairValueGapMitigated, LiquidityPool,
                                LiquiditySwept, OrderBlock, OrderBlockMitigated,
                                OrderBlockReset, Pivot, PreviousHighLow, Retracement,
                                SessionRange, SessionWindow, SmcConfig, SmcInputError, Structure,
                                Swing, new_state, run_batch, update)
from services.brain.smc.history import History
from services.brain.smc.structure import StructureState, step_structure

MONDAY_MS = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)  # a Monday
QUARTER_MS = 15 * 60_000
HOUR_MS = 3_600_000


def cfg(**kw) -> SmcConfig:
    """Swing length 2 and no per-bar features unless asked: keeps expected lists short."""
    base = dict(swing_length=2, timeframes=(), sessions=())
    base.update(kw)
    return SmcConfig(**base)


def feed(candles, config, *, step_ms=QUARTER_MS, start_ms=MONDAY_MS):
    """Run (o, h, l, c[, v]) tuples through one state; returns the labels in order."""
    st = new_state(config)
    out = []
    for k, bar in enumerate(candles):
        o, h, low, c = bar[:4]
        v = bar[4] if len(bar) > 4 else 1.0
        out += update(st, start_ms + k * step_ms, o, h, low, c, v)
    return out


def zigzag(points, *, mirror=False, spread=0.25):
    """Doji candles (open == close, so never a gap) whose mid price runs straight between
    the ``(bar, price)`` turning points; high/low = mid -/+ ``spread``. ``mirror`` turns
    the picture upside down (price -> 30 - price), making bullish scenarios bearish."""
    out = []
    for (i0, p0), (i1, p1) in zip(points, points[1:]):
        for i in range(i0, i1):
            m = p0 + (p1 - p0) * (i - i0) / (i1 - i0)
            out.append(30.0 - m if mirror else m)
    m_last = points[-1][1]
    out.append(30.0 - m_last if mirror else m_last)
    return [(m, m + spread, m - spread, m) for m in out]


def of(kind, labels):
    return [x for x in labels if isinstance(x, kind)]


class TestSwings:
    def test_clear_swing_high_is_a_pivot_at_lag_l_and_a_swing_when_the_next_low_is_known(self):
        """A peak at bar 5 is a pivot known at bar 7 and becomes a swing when the trough
        at bar 9 is confirmed (bar 11)."""
        highs = [10, 11, 12, 13, 14, 15, 14, 13, 12, 11, 12, 13, 14, 15]
        candles = [(h - 0.5, h, h - 1, h - 0.5) for h in highs]
        labels = feed(candles, cfg())
        assert of(Pivot, labels) == [Pivot(direction=1, index=5, level=15, known_at=7),
                                     Pivot(direction=-1, index=9, level=10, known_at=11)]
        assert of(Swing, labels) == [Swing(direction=1, index=5, level=15, known_at=11)]

    def test_higher_pivot_in_the_same_run_replaces_the_first_as_the_swing(self):
        """Two peaks with no low pivot between them: only the higher one (bar 9) becomes
        the swing, known when the low pivot at bar 13 is (bar 15)."""
        highs = [10, 11, 12, 13, 14, 15, 14.5, 14.8, 16, 17, 16.5, 16, 9, 8, 9, 10]
        lows = [9 + 0.1 * i for i in range(12)] + [8, 7, 8, 9]
        candles = [((h + lo) / 2, h, lo, (h + lo) / 2) for h, lo in zip(highs, lows)]
        labels = feed(candles, cfg())
        assert of(Pivot, labels) == [Pivot(direction=1, index=5, level=15, known_at=7),
                                     Pivot(direction=1, index=9, level=17, known_at=11),
                                     Pivot(direction=-1, index=13, level=7, known_at=15)]
        assert of(Swing, labels) == [Swing(direction=1, index=9, level=17, known_at=15)]

    def test_no_bar_before_twice_the_swing_length_minus_one_can_be_a_pivot(self):
        """The reference's rolling window needs 2L bars: bar 2 (L = 2) is the highest of
        its window but cannot be a pivot; bar 3 can."""
        highs = [10, 11, 15, 12, 11, 10, 9, 8]
        candles = [(h - 0.5, h, h - 1, h - 0.5) for h in highs]
        assert of(Pivot, feed(candles, cfg())) == []
        highs = [10, 11, 12, 15, 11, 10, 9, 8]
        candles = [(h - 0.5, h, h - 1, h - 0.5) for h in highs]
        assert of(Pivot, feed(candles, cfg())) == [Pivot(direction=1, index=3, level=15,
                                                         known_at=5)]


# low A (bar 4), high B (8), low C (12), high D (16), low E (20), then drift
BOS_POINTS = [(0, 11.0), (4, 10.0), (8, 11.0), (12, 10.5), (16, 12.0), (20, 11.0), (26, 11.5)]
CHOCH_POINTS = [(0, 11.0), (4, 10.0), (8, 11.0), (12, 9.5), (16, 12.0), (20, 11.0), (26, 11.5)]


class TestStructure:
    @pytest.mark.parametrize("mirror", [False, True], ids=["bullish", "bearish"])
    def test_bos_labels_the_broken_swing_with_its_break_once_the_next_high_is_settled(self, mirror):
        """Low, high B, higher low, higher high: a BOS on B's row, broken by the first close
        beyond B from bar 10 (bar 15), known when the higher high settles (bar 22)."""
        labels = feed(zigzag(BOS_POINTS, mirror=mirror), cfg())
        d = -1 if mirror else 1
        level = 30.0 - 11.25 if mirror else 11.25
        assert of(Structure, labels) == [Structure(kind="BOS", direction=d, index=8, level=level,
                                                   broken_index=15, known_at=22)]

    @pytest.mark.parametrize("mirror", [False, True], ids=["bullish", "bearish"])
    def test_choch_when_a_lower_low_is_followed_by_a_break_of_the_last_high(self, mirror):
        """Low, high B, lower low, then a high above B: a CHoCH on B's row."""
        labels = feed(zigzag(CHOCH_POINTS, mirror=mirror), cfg())
        d = -1 if mirror else 1
        level = 30.0 - 11.25 if mirror else 11.25
        assert of(Structure, labels) == [Structure(kind="CHOCH", direction=d, index=8,
                                                   level=level, broken_index=15, known_at=22)]

    def test_break_on_wick_uses_the_high_instead_of_the_close(self):
        """With close_break off the same BOS breaks one bar earlier: bar 14's high 11.5
        exceeds 11.25 while its close (11.25) does not."""
        labels = feed(zigzag(BOS_POINTS), cfg(close_break=False))
        assert [(s.index, s.broken_index) for s in of(Structure, labels)] == [(8, 14)]


def _history(closes):
    h = History()
    for k, c in enumerate(closes):
        h.append(k, c, c, c, c, 0.0)
    return h


def _bull_bos_swings(base_index, l4, l3, l2, l1, known_at):
    """Four swings (low, high, low, high) forming a bullish BOS on the second one."""
    i = base_index
    return [Swing(direction=-1, index=i, level=l4, known_at=known_at),
            Swing(direction=1, index=i + 2, level=l3, known_at=known_at),
            Swing(direction=-1, index=i + 4, level=l2, known_at=known_at),
            Swing(direction=1, index=i + 6, level=l1, known_at=known_at)]


class TestStructureDeletionRule:
    def test_older_pattern_breaking_on_the_same_bar_as_a_newer_one_is_dropped(self):
        """The reference deletes a label when a later label broke no later; known before
        either broke, so the older one is never emitted."""
        st = StructureState(close_break=True)
        # pattern P1 on bar 2 (level 5), P2 on bar 6 (level 6): swings at 0,2,4,6,8
        swings = _bull_bos_swings(0, 3.0, 5.0, 4.0, 6.0, 0) + [
            Swing(direction=-1, index=8, level=4.5, known_at=0),
            Swing(direction=1, index=10, level=7.0, known_at=0)]
        closes = [4.0] * 12 + [7.5]  # bar 12 breaks both 5 and 6
        hist = _history(closes)
        out = []
        for t, sw in zip(range(6), swings):
            out += step_structure(st, hist, t, sw)
        assert out == []
        assert step_structure(st, hist, 12, None) == [
            Structure(kind="BOS", direction=1, index=6, level=6.0, broken_index=12, known_at=12)]

    def test_pattern_emitted_before_a_newer_pattern_is_known_stays_emitted(self):
        """Hindsight: P1 (bar 2), emitted when it broke on bar 9, stays emitted although P2
        (bar 6), known only at bar 11, broke on bar 9 too (the reference deletes P1)."""
        st = StructureState(close_break=True)
        swings = _bull_bos_swings(0, 3.0, 5.0, 4.0, 6.0, 0) + [
            Swing(direction=-1, index=8, level=4.5, known_at=0),
            Swing(direction=1, index=10, level=7.0, known_at=0)]
        hist = _history([4.0] * 9 + [6.5, 6.5, 6.5])
        out = []
        for t, sw in zip(range(4), swings[:4]):  # P1 known at t=3
            out += step_structure(st, hist, t, sw)
        out += step_structure(st, hist, 9, None)
        assert out == [Structure(kind="BOS", direction=1, index=2, level=5.0, broken_index=9,
                                 known_at=9)]
        later = step_structure(st, hist, 10, swings[4]) + step_structure(st, hist, 11, swings[5])
        assert later == [Structure(kind="BOS", direction=1, index=6, level=6.0,
                                   broken_index=9, known_at=11)]


class TestFairValueGaps:
    def test_bullish_gap_is_known_one_bar_later_and_mitigated_when_a_low_reaches_its_top(self):
        """high[0] = 10 < low[2] = 11 around an up candle: gap 10..11 on bar 1, known at 2;
        bar 4's low 10.9 reaches the top."""
        candles = [(9.5, 10, 9, 9.8), (9.5, 12.2, 9.4, 12), (12, 13, 11, 12.5),
                   (12.5, 13, 11.5, 12), (12, 12.5, 10.9, 11)]
        labels = feed(candles, cfg())
        assert of(FairValueGap, labels) == [FairValueGap(direction=1, index=1, top=11,
                                                         bottom=10, known_at=2)]
        assert of(FairValueGapMitigated, labels) == [
            FairValueGapMitigated(direction=1, index=1, mitigated_index=4, known_at=4)]

    def test_bearish_gap_needs_a_down_candle_and_is_mitigated_by_a_high_reaching_its_bottom(self):
        """low[0] = 20 > high[2] = 19 around a down candle: gap top 20, bottom 19."""
        candles = [(20.5, 21, 20, 20.2), (20.4, 20.5, 18, 18.2), (18.5, 19, 17, 17.5),
                   (17.5, 19.1, 17, 18)]
        labels = feed(candles, cfg())
        assert of(FairValueGap, labels) == [FairValueGap(direction=-1, index=1, top=20,
                                                         bottom=19, known_at=2)]
        assert of(FairValueGapMitigated, labels) == [
            FairValueGapMitigated(direction=-1, index=1, mitigated_index=3, known_at=3)]

    def test_consecutive_gaps_join_into_the_last_with_the_widest_bounds_two_bars_later(self):
        """Gaps on bars 1 (10..11) and 2 (11.5..12.5) join into one on bar 2 (10..12.5),
        known at bar 3 when bar 2's successor shows the run is over."""
        candles = [(9.5, 10, 9, 9.8), (9.5, 11.5, 9.4, 11.4), (11.4, 12.5, 11, 12.4),
                   (12.4, 13, 12.5, 12.6), (12.6, 12.8, 12.2, 12.3)]
        assert of(FairValueGap, feed(candles, cfg())) == [
            FairValueGap(direction=1, index=1, top=11, bottom=10, known_at=2),
            FairValueGap(direction=1, index=2, top=12.5, bottom=11.5, known_at=3)]
        assert of(FairValueGap, feed(candles, cfg(fvg_join_consecutive=True))) == [
            FairValueGap(direction=1, index=2, top=12.5, bottom=10, known_at=4)]


class TestOrderBlocks:
    def test_bullish_block_forms_on_the_lowest_bar_when_a_close_crosses_the_last_high(self):
        """Bar 15 closes above swing high B (bar 8): a block on bar 12 (the lowest since B),
        known at bar 16 (no swing high at 14 or 15 possible any more), mitigated by bar 19
        (reference index 18) and reset by bar 21."""
        candles = [(*c, float(k + 1)) for k, c in enumerate(zigzag(BOS_POINTS))]
        # after the block formed: a dip under 10.25 on bar 19, a spike over 10.75 on bar 21
        candles = candles[:17] + [(11.9, 12.1, 11.6, 11.9, 1.0), (11.0, 11.2, 10.6, 11.0, 1.0),
                                  (10.5, 10.6, 10.0, 10.4, 1.0), (10.4, 10.5, 10.3, 10.4, 1.0),
                                  (10.6, 10.9, 10.5, 10.8, 1.0)]
        labels = feed(candles, cfg())
        v13, v14, v15 = 14.0, 15.0, 16.0
        pct = float(np.float32(v13) / np.float32(v14 + v15) * np.float32(100.0))
        assert of(OrderBlock, labels) == [OrderBlock(direction=1, index=12, top=10.75,
                                                     bottom=10.25, volume=v13 + v14 + v15,
                                                     percentage=pct, formed_index=15,
                                                     known_at=16)]
        assert of(OrderBlockMitigated, labels) == [OrderBlockMitigated(
            direction=1, index=12, mitigated_index=18, at_index=19, known_at=19)]
        assert of(OrderBlockReset, labels) == [OrderBlockReset(direction=1, index=12,
                                                               at_index=21, known_at=21)]


class TestLiquidity:
    def test_two_equal_highs_make_a_pool_that_a_later_high_sweeps(self):
        """Highs 11.25 (bar 8) and 11.3 (bar 16) within a 0.1 band: a pool on bar 8, level
        their mean, known when bar 16's swing settles (bar 22); bar 24's high 11.5 sweeps
        it (beyond 11.25 + 0.1)."""
        points = [(0, 11.0), (4, 10.0), (8, 11.0), (12, 10.5), (16, 11.05), (20, 10.6),
                  (23, 10.9)]
        candles = zigzag(points) + [(11.0, 11.5, 10.9, 11.2), (11.2, 11.3, 11.0, 11.1)]
        labels = feed(candles, cfg(liquidity_band=0.1))
        mean = float(np.float32((11.25 + 11.3) / 2))
        assert of(LiquidityPool, labels) == [LiquidityPool(direction=1, index=8, level=mean,
                                                           end=16, members=2, swept=None,
                                                           known_at=22)]
        assert of(LiquiditySwept, labels) == [LiquiditySwept(direction=1, index=8, level=mean,
                                                             swept_index=24, known_at=24)]


def _session_labels(times_hhmm, window):
    day = MONDAY_MS
    st = new_state(cfg(sessions=(window,)))
    out = []
    for k, hhmm in enumerate(times_hhmm):
        hh, mm = map(int, hhmm.split(":"))
        ms = day + (hh * 60 + mm) * 60_000 + (HOUR_MS * 24 if k and hhmm < times_hhmm[k - 1] else 0)
        day = ms - (hh * 60 + mm) * 60_000
        out += of(SessionRange, update(st, ms, 10.0 + k, 10.5 + k, 9.5 + k, 10.0 + k, 1.0))
    return out


class TestSessions:
    def test_london_includes_both_07_00_and_16_00_and_resets_outside(self):
        """06:45 out, 07:00 in (its own high/low), 07:15 in (running), 16:00 in, 16:15 out."""
        got = _session_labels(["06:45", "07:00", "07:15", "16:00", "16:15", "07:00"],
                              SessionWindow.named("London"))
        assert [(s.active, s.high, s.low) for s in got] == [
            (0, 0.0, 0.0), (1, 11.5, 10.5), (1, 12.5, 10.5), (1, 13.5, 10.5), (0, 0.0, 0.0),
            (1, 15.5, 14.5)]

    def test_sydney_wraps_midnight(self):
        """21:00-06:00: 20:45 out, 21:00, 23:45, 00:00 and 06:00 in, 06:15 out."""
        got = _session_labels(["20:45", "21:00", "23:45", "00:00", "06:00", "06:15"],
                              SessionWindow.named("Sydney"))
        assert [s.active for s in got] == [0, 1, 1, 1, 1, 0]
        assert got[4].high == 14.5 and got[4].low == 10.5


def _period_labels(timeframe, times_ms, highs, lows):
    st = new_state(cfg(timeframes=(timeframe,)))
    out = []
    for t, h, lo in zip(times_ms, highs, lows):
        out += of(PreviousHighLow, update(st, t, (h + lo) / 2, h, lo, (h + lo) / 2, 1.0))
    return out


class TestPreviousHighLow:
    def test_previous_day_high_low_and_the_first_bar_of_a_day_quirk(self):
        """4h bars over three days: a bar inside day 2 sees day 1's range, but the 00:00 bar
        of a day sees the day before the previous one (NaN on day 2), as the reference."""
        times = [MONDAY_MS + k * 4 * HOUR_MS for k in range(18)]
        highs = [11, 12, 13, 12, 11, 10] + [14, 15, 13, 12, 11, 10] + [9, 9, 9, 9, 16, 9]
        lows = [h - 2 for h in highs]
        got = _period_labels("1D", times, highs, lows)
        nan = [k for k, p in enumerate(got) if np.isnan(p.high)]
        assert nan == list(range(7))
        assert [(p.high, p.low) for p in got[7:12]] == [(13.0, 8.0)] * 5
        assert (got[12].high, got[12].low) == (13.0, 8.0)  # day 3 00:00: day 1 again
        assert [(p.high, p.low) for p in got[13:]] == [(15.0, 8.0)] * 5
        assert [p.broken_high for p in got] == [0] * 7 + [1] * 6 + [0, 0, 0, 1, 1]
        # day 3 00:00 still compares with day 1 (low 8), in the same group as day 2's bars
        assert [p.broken_low for p in got] == [0] * 7 + [0] * 5 + [1] + [1] * 5

    def test_weekly_uses_the_week_before_last_except_on_sunday_after_midnight(self):
        """pandas labels a Monday..Sunday week by its closing Sunday, so on a Monday bar
        'previous week' is two weeks back, while a Sunday 12:00 bar gets last week."""
        times = [MONDAY_MS + k * 12 * HOUR_MS for k in range(14 * 2 + 4)]
        highs = [10.0] * 14 + [20.0] * 14 + [30.0] * 4
        got = _period_labels("W", times, highs, [h - 1 for h in highs])
        monday3, sunday_noon2 = got[28], got[27]
        assert (monday3.high, monday3.low) == (10.0, 9.0)
        assert (sunday_noon2.high, sunday_noon2.low) == (10.0, 9.0)
        assert np.isnan(got[13].high) and np.isnan(got[26].high)

    def test_four_hour_bar_opening_a_period_sees_the_period_two_back(self):
        """1h bars: the 05:00 bar sees 00:00-04:00; the 04:00 bar sees 20:00-24:00."""
        times = [MONDAY_MS - 4 * HOUR_MS + k * HOUR_MS for k in range(10)]
        highs = [1.0, 2.0, 3.0, 4.0, 10.0, 11.0, 12.0, 13.0, 5.0, 6.0]
        got = _period_labels("4h", times, highs, [h - 0.5 for h in highs])
        assert [p.high for p in got[8:]] == [4.0, 13.0]


class TestRetracementsAndInput:
    def test_retracement_rows_are_zero_until_the_second_real_change_of_direction(self):
        """Warm-up: rows through the bar after the second swing's direction change are 0;
        the next row carries the reference's percentages, known once the horizon passed."""
        labels = feed(zigzag(BOS_POINTS), cfg())
        rows = of(Retracement, labels)
        assert [r.index for r in rows] == list(range(len(rows)))
        first = next(r for r in rows if r.direction != 0)
        assert first.index == 10  # swings at 4 (low) and 8 (high): the second change is bar 8
        assert all(r.known_at >= r.index for r in rows)

    def test_high_below_low_is_rejected_and_leaves_the_state_untouched(self):
        """A bad candle raises SmcInputError and is not counted."""
        st = new_state(cfg())
        update(st, MONDAY_MS, 1.0, 2.0, 0.5, 1.5, 1.0)
        with pytest.raises(SmcInputError):
            update(st, MONDAY_MS + QUARTER_MS, 1.0, 0.5, 2.0, 1.5, 1.0)
        with pytest.raises(SmcInputError):
            update(st, MONDAY_MS, 1.0, 2.0, 0.5, 1.5, 1.0)  # time not increasing
        with pytest.raises(SmcInputError):
            update(st, MONDAY_MS + QUARTER_MS, float("nan"), 2.0, 0.5, 1.5, 1.0)
        assert st.bars == 1

    def test_batch_equals_candle_by_candle(self):
        """run_batch is the streaming loop: same labels, same order."""
        candles = zigzag(BOS_POINTS)
        times = [MONDAY_MS + k * QUARTER_MS for k in range(len(candles))]
        cols = list(zip(*candles))
        labels, _ = run_batch(times, cols[0], cols[1], cols[2], cols[3], [1.0] * len(times),
                              cfg(timeframes=("4h",), sessions=(SessionWindow.named("Tokyo"),)))
        assert labels == feed([(*c, 1.0) for c in candles],
                              cfg(timeframes=("4h",), sessions=(SessionWindow.named("Tokyo"),)))
