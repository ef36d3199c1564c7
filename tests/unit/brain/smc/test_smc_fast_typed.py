"""``new_state(typed_inputs=True)``: the compiled step entered through its entry point (no
type resolution per call), for callers that always pass an int open time and float prices
(the strategy). Same labels, same refusals, same state as the dispatcher's path."""

from __future__ import annotations

import math

import pytest

from services.brain.smc import SessionWindow, SmcConfig, SmcInputError, fast
from services.brain.smc_cli import read_candles
from tests.conftest import BTC_1M_CSV, BTC_15M_CSV

CONFIGS = (SmcConfig(swing_length=5), SmcConfig(swing_length=50),
           SmcConfig(swing_length=3, timeframes=(), sessions=()),
           SmcConfig(swing_length=2, fvg_join_consecutive=True, close_mitigation=True,
                     timeframes=("1h", "W"), sessions=(SessionWindow.named("Sydney"),)))


@pytest.mark.parametrize("path", [BTC_15M_CSV, BTC_1M_CSV], ids=["15m", "1m"])
@pytest.mark.parametrize("config", CONFIGS, ids=["L5", "L50", "strategy", "options"])
def test_typed_inputs_give_the_same_labels_on_real_candles(path, config):
    """Every candle of the file (the first 12,000), trimming often so the state grows and
    shrinks: the same labels field for field (repr included) and the same arrays after."""
    c = read_candles(path)
    cols = [c[k][:12_000] for k in ("time_ms", "open", "high", "low", "close", "volume")]
    a = fast.new_state(config, trim_every_bars=64)
    b = fast.new_state(config, trim_every_bars=64, typed_inputs=True)
    assert b.step is not a.step
    for row in zip(*cols):
        row = (int(row[0]), *map(float, row[1:]))
        la, lb = fast.update(a, *row), fast.update(b, *row)
        assert la == lb and repr(la) == repr(lb)
    assert (a.ii == b.ii).all() and a.ff.tobytes() == b.ff.tobytes()


@pytest.mark.parametrize("bad, message", [
    ((1, 1.0, math.nan, 1.0, 1.0, 1.0), "non-finite value"),
    ((1, 1.0, 1.0, 2.0, 1.0, 1.0), "high 1.0 < low 2.0"),
    ((0, 1.0, 1.0, 1.0, 1.0, 1.0), "open time 0 not after 0"),
])
def test_typed_inputs_refuse_a_bad_candle_the_same_way(bad, message):
    """A refused candle raises the same error and leaves the state as it was."""
    st = fast.new_state(SmcConfig(swing_length=2), typed_inputs=True)
    fast.update(st, 0, 1.0, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(SmcInputError, match=message):
        fast.update(st, *bad)
    assert st.bars == 1
    assert [x.index for x in fast.update(st, 60_000, 1.0, 1.0, 1.0, 1.0, 1.0)
            if type(x).__name__ == "SessionRange"] == [1, 1, 1]


def test_the_default_state_still_refuses_a_price_that_is_not_a_number():
    """Without the promise, numba's dispatcher checks the types: a string is a TypeError."""
    st = fast.new_state(SmcConfig(swing_length=2))
    with pytest.raises(TypeError):
        fast.update(st, 0, "1.0", 1.0, 1.0, 1.0, 1.0)
