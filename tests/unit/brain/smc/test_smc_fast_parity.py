"""The compiled SMC state machines (``smc/kernel.py`` via ``smc/fast.py``, what
``services.brain.smc.update`` runs) against the pure-Python reference (``smc/engine.py`` and
the feature modules), on the repository's real candles: every label of every candle, every
field, in the same order, for several configurations, with and without history trimming."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.brain import smc
from services.brain.smc import SessionWindow, SmcConfig, SmcInputError
from services.brain.smc import engine as reference
from services.brain.smc import fast
from services.brain.smc.kernel import py_round1
from services.brain.smc_cli import read_candles
from tests.conftest import BTC_1M_CSV, BTC_15M_CSV

CONFIGS = {
    # the library default (L = 50, three timeframes, three sessions): the brain's bench case
    "default": (SmcConfig(), 4096),
    # every switch flipped, an absolute band, a session that wraps midnight, trimming often
    "flipped": (SmcConfig(swing_length=5, close_break=False, close_mitigation=True,
                          fvg_join_consecutive=True, liquidity_band=150.0, timeframes=("1h",),
                          sessions=(SessionWindow.named("Sydney"),)), 64),
    # the strategy's base and higher-timeframe shapes (no timeframes; sessions or none)
    "strategy": (SmcConfig(swing_length=3, timeframes=()), 4096),
    "htf": (SmcConfig(swing_length=2, timeframes=(), sessions=()), 1),
}


def _columns(path):
    c = read_candles(path)
    return [c[k] for k in ("time_ms", "open", "high", "low", "close", "volume")]


@pytest.fixture(scope="module")
def btc_1m():
    return _columns(BTC_1M_CSV)


@pytest.fixture(scope="module")
def btc_15m():
    return _columns(BTC_15M_CSV)


def _first_difference(cols, config, trim):
    """``None`` if both implementations emit identical labels (``==`` and ``repr``, which
    also tells -0.0 from 0.0) after every candle, else the first differing bar."""
    a = reference.new_state(config, trim_every_bars=trim)
    b = fast.new_state(config, trim_every_bars=trim)
    t, o, h, lo, c, v = cols
    for i in range(len(t)):
        la = reference.update(a, t[i], o[i], h[i], lo[i], c[i], v[i])
        lb = fast.update(b, t[i], o[i], h[i], lo[i], c[i], v[i])
        if la != lb or repr(la) != repr(lb):
            return i, la, lb
    assert (a.bars, a.horizon) == (b.bars, b.horizon)
    return None


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_label_of_every_1m_candle_equals_the_reference(btc_1m, name):
    """December 2024 BTCUSDT 1m (41,761 candles): the compiled update emits exactly the
    reference's labels after every candle, in every configuration."""
    config, trim = CONFIGS[name]
    assert _first_difference(btc_1m, config, trim) is None


def test_every_label_of_every_15m_candle_equals_the_reference(btc_15m):
    """BTCUSDT 15m, all of 2024 (34,945 candles), swing length 5: same labels after every
    candle (weekly and daily periods change many times here)."""
    assert _first_difference(btc_15m, SmcConfig(swing_length=5), 4096) is None


def test_the_package_runs_the_compiled_update():
    """``services.brain.smc`` exports the compiled path, not the reference."""
    assert smc.update is fast.update and smc.new_state is fast.new_state
    assert isinstance(smc.new_state(), fast.FastSmcState)


@pytest.mark.parametrize("bad, message", [
    ((1, 1.0, math.nan, 1.0, 1.0, 1.0), "non-finite value"),
    ((1, 1.0, 1.0, 2.0, 1.0, 1.0), "high 1.0 < low 2.0"),
    ((0, 1.0, 1.0, 1.0, 1.0, 1.0), "open time 0 not after 0"),
])
def test_a_bad_candle_is_refused_with_the_reference_message_and_changes_nothing(bad, message):
    """Non-finite values, high < low and a time not after the last are refused with the
    reference's error, and the state is left as it was (the next good candle is bar 1)."""
    for mod in (reference, fast):
        st = mod.new_state(SmcConfig(swing_length=2))
        mod.update(st, 0, 1.0, 1.0, 1.0, 1.0, 1.0)
        with pytest.raises(SmcInputError, match=message):
            mod.update(st, *bad)
        assert st.bars == 1
        labels = mod.update(st, 60_000, 1.0, 1.0, 1.0, 1.0, 1.0)
        assert [x.index for x in labels if type(x).__name__ == "SessionRange"] == [1, 1, 1]


def test_integer_prices_give_the_same_labels_as_floats():
    """Python ints (as hand-written tests pass them) are taken as floats, as the reference's
    ``array('d')`` history does: the labels are equal and carry floats."""
    rows = [(k * 60_000, 10 + k % 3, 11 + k % 5, 9 - k % 2, 10 + k % 4, 1) for k in range(40)]
    config = SmcConfig(swing_length=2)
    a, b = reference.new_state(config), fast.new_state(config)
    for row in rows:
        la, lb = reference.update(a, *row), fast.update(b, *row)
        assert la == lb and repr(la) == repr(lb)


@pytest.mark.parametrize("x", [0.25, 0.35, 0.75, -0.25, -0.04, -0.0, 0.0, 12.25, 99.95,
                               183.64999999999998, 1e-300, -1e-300, 2.0 ** 53 + 2, 1e20,
                               -45.05, 100 - (1 / 3) * 100, math.inf, -math.inf])
def test_the_kernels_round_is_pythons_round_to_one_decimal(x):
    """``py_round1`` gives ``round(x, 1)`` bit for bit (sign of zero included), halves
    rounded to even on the exact binary value as Python does."""
    want = round(x, 1)
    got = py_round1(x)
    assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want)


def test_the_kernels_round_agrees_on_many_values():
    """Two hundred thousand values spread over the range retracements take (and tenths and
    halves, the hard cases): identical to ``round(x, 1)``."""
    rng = np.random.default_rng(18)
    xs = np.concatenate([rng.uniform(-1e4, 1e4, 100_000), rng.integers(-20_000, 20_000, 50_000) / 20,
                         rng.integers(-20_000, 20_000, 50_000) / 10])
    bad = [x for x in xs.tolist() if py_round1(x) != round(x, 1)]
    assert bad == []


# ---- random candles: many ties (prices in whole cents), gaps, every option ----------------

_bars = st.lists(st.tuples(st.integers(-30, 30), st.integers(0, 12), st.integers(0, 12),
                           st.integers(0, 40), st.sampled_from([1, 1, 1, 2, 5, 96, 700])),
                 min_size=1, max_size=160)
_configs = st.builds(
    lambda length, close_break, close_mit, join, band, trim: (SmcConfig(
        swing_length=length, close_break=close_break, close_mitigation=close_mit,
        fvg_join_consecutive=join, liquidity_band=band, timeframes=("15min", "4h", "1D", "W"),
        sessions=(SessionWindow.named("London"), SessionWindow.named("Sydney"))), trim),
    st.integers(1, 4), st.booleans(), st.booleans(), st.booleans(),
    st.sampled_from([None, 0.0, 0.05, 0.3]), st.sampled_from([1, 3, 4096]))


@settings(max_examples=200, deadline=None)
@given(spec=_bars, start=st.integers(200, 5_000), case=_configs)
def test_random_candles_give_the_reference_labels(spec, start, case):
    """Random candles in whole cents (so equal highs, lows and levels are common: every tie
    rule is exercised), with time gaps and every option: both implementations emit the same
    labels after every candle, and the volume arithmetic (float32) agrees too."""
    config, trim = case
    a = reference.new_state(config, trim_every_bars=trim)
    b = fast.new_state(config, trim_every_bars=trim)
    t, price = 1_704_067_200_000, start
    for move, up, down, vol, gap in spec:
        o, c = price, max(1, price + move)
        h, low = max(o, c) + up, max(1, min(o, c) - down)
        t += gap * 900_000
        row = (t, o / 100, h / 100, low / 100, c / 100, vol / 7)
        la, lb = reference.update(a, *row), fast.update(b, *row)
        assert la == lb and repr(la) == repr(lb)
        price = c
