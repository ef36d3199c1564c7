"""Causality of the SMC stream: replayed one candle at a time over the whole EURUSD fixture,
no emitted label ever changes or disappears, a fresh run on any prefix emits exactly what
the full run had emitted by then, and every label's lag is the documented one."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from services.brain.smc import (FairValueGap, FairValueGapMitigated, LiquidityPool,
                                LiquiditySwept, OrderBlock, OrderBlockMitigated,
                                OrderBlockReset, Pivot, PreviousHighLow, Retracement,
                                SessionRange, SessionWindow, SmcConfig, Structure, Swing,
                                new_state, run_batch, update)
from tests.conftest import SMC_DATA

EURUSD = SMC_DATA
SWING_LENGTH = 5
CONFIG = SmcConfig(swing_length=SWING_LENGTH, sessions=(SessionWindow.named("London"),))
# cut points for fresh prefix runs: spread over the file, plus bars where a label that the
# reference later deletes (bos_choch hindsight) had just been emitted
CUTS = (1, 9, 10, 11, 500, 3333, 7001, 12_345, 16_000, 20_000, 24_000)


def load():
    df = pd.read_csv(EURUSD / "EURUSD_15M.csv")
    times = (pd.to_datetime(df["Date"], format="%Y.%m.%d %H:%M:%S").astype("int64")
             // 1000).tolist()
    cols = [df[c].astype(float).tolist() for c in ("Open", "High", "Low", "Close", "Volume")]
    return times, cols


class Replay:
    """The full file fed one candle at a time: labels per step and horizons per step."""

    def __init__(self) -> None:
        self.times, self.cols = load()
        st = new_state(CONFIG)
        self.steps: list[list] = []
        self.horizon: list[int] = []
        self.horizon_dir: dict[int, list[int]] = {1: [], -1: []}
        o, h, lo, c, v = self.cols
        for i, t in enumerate(self.times):
            self.steps.append(update(st, t, o[i], h[i], lo[i], c[i], v[i]))
            self.horizon.append(st.horizon)
            for d in (1, -1):
                self.horizon_dir[d].append(st.swings.horizon_for(d, i))
        self.state = st
        self.labels = [x for step in self.steps for x in step]

    def of(self, kind):
        return [x for x in self.labels if isinstance(x, kind)]


@pytest.fixture(scope="module")
def replay() -> Replay:
    return Replay()


def test_every_label_is_emitted_at_the_bar_it_names_as_known_at(replay):
    """A label returned by the update for bar t says known_at == t and refers to a bar at
    or before t: nothing claims to be known earlier than it was."""
    for t, step in enumerate(replay.steps):
        assert all(x.known_at == t and 0 <= x.index <= t for x in step)
    assert len(replay.labels) == 144_841


def test_no_label_ever_changes_or_disappears_during_the_replay(replay):
    """Zero repaints: every fact is emitted once (per bar one pivot, swing, structure label,
    gap and retracement row; one block per direction; one mitigation or reset each; per-bar
    records once per feature), a pool only grows, and labels are frozen."""
    once = defaultdict(int)
    for x in replay.labels:
        if isinstance(x, (Pivot, Swing, Structure, FairValueGap, Retracement,
                          FairValueGapMitigated)):
            once[(type(x).__name__, x.index)] += 1
        elif isinstance(x, (OrderBlock, OrderBlockMitigated, OrderBlockReset, LiquiditySwept)):
            once[(type(x).__name__, x.index, x.direction)] += 1
        elif isinstance(x, PreviousHighLow):
            once[("PreviousHighLow", x.index, x.timeframe)] += 1
        elif isinstance(x, SessionRange):
            once[("SessionRange", x.index, x.session)] += 1
    assert max(once.values()) == 1
    members = defaultdict(list)
    for x in replay.of(LiquidityPool):
        members[(x.index, x.direction)].append((x.members, x.end))
    for seq in members.values():
        assert [m for m, _ in seq] == list(range(2, len(seq) + 2))
        assert [e for _, e in seq] == sorted({e for _, e in seq})
    with pytest.raises(dataclasses.FrozenInstanceError):
        replay.labels[0].index = 0


@pytest.mark.parametrize("cut", CUTS)
def test_a_fresh_run_on_a_prefix_emits_exactly_the_labels_known_by_then(replay, cut):
    """No look-ahead: the stream over the first ``cut`` bars alone emits exactly the labels
    the full replay had emitted after its first ``cut`` bars, in the same order."""
    o, h, lo, c, v = replay.cols
    labels, _ = run_batch(replay.times[:cut], o[:cut], h[:cut], lo[:cut], c[:cut], v[:cut],
                          CONFIG)
    assert labels == [x for step in replay.steps[:cut] for x in step]


class TestLags:
    def test_pivot_lag_is_exactly_the_swing_length(self, replay):
        """A pivot is decided by the L bars after it, and emitted right then."""
        pivots = replay.of(Pivot)
        assert {x.known_at - x.index for x in pivots} == {SWING_LENGTH}
        assert len(pivots) == 3462

    def test_swing_is_known_when_the_next_opposite_pivot_is(self, replay):
        """A swing's lag is L plus the distance to the next opposite pivot: at least L + 1."""
        pivots = replay.of(Pivot)
        for s in replay.of(Swing):
            nxt = next(p for p in pivots if p.index > s.index and p.direction != s.direction)
            assert s.known_at == nxt.known_at
        lags = [s.known_at - s.index for s in replay.of(Swing)]
        assert (min(lags), int(np.median(lags)), max(lags)) == (6, 12, 51)

    def test_structure_is_known_when_its_pattern_and_its_break_both_are(self, replay):
        """known_at = max(settle time of the swing two after the broken one, broken_index)."""
        swings = replay.of(Swing)
        pos = {s.index: k for k, s in enumerate(swings)}
        for x in replay.of(Structure):
            assert x.known_at == max(swings[pos[x.index] + 2].known_at, x.broken_index)

    def test_gaps_lag_one_bar_and_mitigations_none(self, replay):
        """A gap needs the bar after it; a mitigation is known on the mitigating bar."""
        assert {x.known_at - x.index for x in replay.of(FairValueGap)} == {1}
        assert all(x.known_at == x.mitigated_index for x in replay.of(FairValueGapMitigated))

    def test_order_block_is_known_when_the_swing_horizon_passes_its_forming_bar(self, replay):
        """Formed at bar f, a block is emitted at the first bar t >= f whose horizon has
        reached f (every swing of its direction before f known); its later events carry
        max(event bar, that t)."""
        blocks = {}
        for x in replay.of(OrderBlock):
            hz = replay.horizon_dir[x.direction]
            first = next(t for t in range(x.formed_index, len(hz)) if hz[t] >= x.formed_index)
            assert x.known_at == first
            blocks[(x.index, x.direction)] = x
        for x in replay.of(OrderBlockMitigated) + replay.of(OrderBlockReset):
            assert x.known_at == max(x.at_index, blocks[(x.index, x.direction)].known_at)

    def test_pools_are_known_with_their_newest_member_and_sweeps_on_the_sweeping_bar(self,
                                                                                   replay):
        """A pool record comes with the swing that joined it; a sweep with its bar."""
        settle = {s.index: s.known_at for s in replay.of(Swing)}
        assert all(x.known_at == settle[x.end] for x in replay.of(LiquidityPool))
        assert all(x.known_at == x.swept_index for x in replay.of(LiquiditySwept))

    def test_retracement_row_is_known_when_the_horizon_passes_the_bar_it_describes(self,
                                                                                   replay):
        """Row r describes bar r - 1 and is emitted at the first bar whose horizon is past
        it; per-bar period and session records have no lag."""
        for x in replay.of(Retracement)[1:]:
            first = next(t for t in range(len(replay.horizon)) if replay.horizon[t] >= x.index)
            assert x.known_at == first
        assert all(x.known_at == x.index for x in replay.of(PreviousHighLow))
        assert all(x.known_at == x.index for x in replay.of(SessionRange))


def test_trimming_the_history_changes_no_label(replay):
    """Forgetting old bars as soon as no feature needs them (checked every bar) leaves the
    labels identical and the held history short."""
    o, h, lo, c, v = replay.cols
    n = 12_000
    labels, st = run_batch(replay.times[:n], o[:n], h[:n], lo[:n], c[:n], v[:n], CONFIG,
                           trim_every_bars=1)
    assert labels == [x for step in replay.steps[:n] for x in step]
    assert len(st.history.high) < 200
