"""Properties of the SMC stream over arbitrary valid OHLC sequences (Hypothesis)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.brain.smc import (FairValueGap, LiquidityPool, OrderBlock, Pivot, PreviousHighLow,
                                SessionRange, SessionWindow, SmcConfig, Structure, Swing,
                                new_state, run_batch, update)

T0_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday
QUARTER_MS = 900_000


def f32(x: float) -> float:
    return float(np.float32(x))


# one bar: (open-to-close move, upper wick, lower wick, volume, gap before it in 15 min units)
bars = st.lists(
    st.tuples(st.integers(-40, 40), st.integers(0, 20), st.integers(0, 20), st.integers(0, 50),
              st.sampled_from([1, 1, 1, 1, 2, 7, 96, 350])),
    min_size=1, max_size=70)

configs = st.builds(
    lambda length, close_break, close_mit, join, band: SmcConfig(
        swing_length=length, close_break=close_break, close_mitigation=close_mit,
        fvg_join_consecutive=join, liquidity_band=band, timeframes=("4h", "1D", "W"),
        sessions=(SessionWindow.named("London"), SessionWindow.named("Sydney"))),
    st.integers(1, 3), st.booleans(), st.booleans(), st.booleans(),
    st.sampled_from([None, 0.0, 0.05, 0.3]))


def candles(spec, start_cents):
    """Valid candles in cents / 100 (low <= open, close <= high; prices stay positive)."""
    out, t, price = [], T0_MS, start_cents
    for move, up, down, vol, gap in spec:
        o, c = price, max(1, price + move)
        h, low = max(o, c) + up, max(1, min(o, c) - down)
        t += gap * QUARTER_MS
        out.append((t, o / 100, h / 100, low / 100, c / 100, float(vol)))
        price = c
    return out


def stream(rows, config, **kw):
    """Labels emitted after each candle, one list per candle."""
    s = new_state(config, **kw)
    return [update(s, *row) for row in rows]


@settings(max_examples=100, deadline=None)
@given(spec=bars, start=st.integers(500, 20_000), config=configs)
def test_no_label_changes_under_prefix_replay(spec, start, config):
    """For every prefix, a fresh stream emits exactly what the full stream had emitted by
    then: no label depends on a later candle, none is revised or withdrawn."""
    rows = candles(spec, start)
    steps = stream(rows, config)
    for p in range(1, len(rows) + 1):
        assert stream(rows[:p], config) == steps[:p]


@settings(max_examples=100, deadline=None)
@given(spec=bars, start=st.integers(500, 20_000), config=configs)
def test_labels_are_known_no_earlier_than_their_bar_and_trimming_changes_nothing(spec, start,
                                                                                  config):
    """Every label refers to a bar at or before the one that made it known; forgetting
    history at every bar yields the same labels."""
    rows = candles(spec, start)
    steps = stream(rows, config)
    for t, step in enumerate(steps):
        assert all(x.known_at == t and 0 <= x.index <= t for x in step)
    assert stream(rows, config, trim_every_bars=1) == steps
    cols = list(zip(*rows))
    labels, _ = run_batch(cols[0], *cols[1:], config)
    assert labels == [x for step in steps for x in step]


@settings(max_examples=80, deadline=None)
@given(spec=bars, start=st.integers(500, 20_000), config=configs)
def test_every_level_lies_within_the_candles_it_refers_to(spec, start, config):
    """Swing and structure levels are their bar's high or low; gap bounds come from the bars
    around the gap; block bounds are their bar's range; a pool's level is within the range
    of the bars from its first to its last member; a previous-period level is within the
    bars before the one it is shown on; a session's range within the session so far
    (float32 where the reference stores float32)."""
    rows = candles(spec, start)
    _, o, h, lo, c, _ = (list(x) for x in zip(*rows))
    labels = [x for step in stream(rows, config) for x in step]
    for x in labels:
        i = x.index
        if isinstance(x, (Pivot, Swing)):
            assert x.level == (h[i] if x.direction == 1 else lo[i])
        elif isinstance(x, Structure):
            assert x.level == f32(h[i] if x.direction == 1 else lo[i])
            assert x.broken_index >= i + 2
        elif isinstance(x, FairValueGap):  # a joined gap spans its run: bound by all before
            assert min(lo[: i + 2]) <= x.bottom < x.top <= max(h[: i + 2])
            if not config.fvg_join_consecutive:
                assert {x.top, x.bottom} <= {h[i - 1], lo[i - 1], h[i + 1], lo[i + 1]}
        elif isinstance(x, OrderBlock):
            assert (x.top, x.bottom) in {(f32(h[i]), f32(lo[i])), (f32(lo[i]), f32(h[i]))}
            assert x.formed_index > i
        elif isinstance(x, LiquidityPool):
            assert f32(min(lo[i: x.end + 1])) <= x.level <= f32(max(h[i: x.end + 1]))
        elif isinstance(x, PreviousHighLow):
            if not math.isnan(x.high):
                assert f32(min(lo[:i])) <= x.low <= x.high <= f32(max(h[:i]))
        elif isinstance(x, SessionRange) and x.active:
            assert f32(min(lo[: i + 1])) <= x.low <= x.high <= f32(max(h[: i + 1]))
