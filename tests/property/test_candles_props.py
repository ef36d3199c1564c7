"""Properties of candle aggregation over arbitrary valid trade sequences (Hypothesis)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from common.records import Flag, Kind, empty
from services.brain import candles as cd

M = cd.INTERVAL_1M_MS
Q = cd.INTERVAL_15M_MS
N_SYMBOLS = 4
T0 = 1_700_000_000_000

# (symbol, time step since that symbol's previous trade in ms, price, qty, taker sold)
trade_steps = st.lists(
    st.tuples(
        st.integers(0, N_SYMBOLS - 1),
        st.one_of(st.integers(0, 2_000), st.integers(0, 400_000)),
        st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False),
        st.one_of(st.just(0.0), st.floats(0.0, 1e4, allow_nan=False, allow_infinity=False)),
        st.booleans(),
    ),
    max_size=300,
)


def build(steps):
    """Records and (symbol, time, price, qty) tuples; time is non-decreasing per symbol."""
    clocks = [T0] * N_SYMBOLS
    recs = empty(len(steps))
    trades = []
    for i, (sid, dt, p, q, sold) in enumerate(steps):
        clocks[sid] += dt
        r = recs[i]
        r["kind"], r["symbol_id"], r["event_ms"] = int(Kind.TRADE), sid, clocks[sid]
        r["price"], r["qty"], r["id"] = p, q, i + 1
        r["flags"] = int(Flag.BUYER_IS_MAKER) if sold else 0
        trades.append((sid, clocks[sid], p, q))
    return recs, trades


def run(recs, n, batch=64):
    """Closed candles after feeding recs[:n] in batches of ``batch``, no flush."""
    state = cd.new_state(N_SYMBOLS)
    out = []
    for j in range(0, n, batch):
        k = cd.update_candles(state, recs[j:min(n, j + batch)], min(n, j + batch) - j)
        out.append(state.out[:k].copy())
        cd.reset_output(state)
    return np.concatenate(out) if out else np.zeros(0, cd.CANDLE_DTYPE), state


@settings(max_examples=200, deadline=None)
@given(trade_steps)
def test_closed_candles_bracket_open_close_and_sum_their_volumes(steps):
    """High >= max(open, close), low <= min(open, close), volume = sum of the trades' qty."""
    recs, trades = build(steps)
    out, state = run(recs, len(recs))
    by_bucket = defaultdict(list)
    for sid, t, p, q in trades:
        by_bucket[(sid, M, t // M * M)].append(q)
        by_bucket[(sid, Q, t // Q * Q)].append(q)
    for c in out:
        assert c["high"] >= max(c["open"], c["close"])
        assert c["low"] <= min(c["open"], c["close"])
        assert c["low"] > 0
        qtys = by_bucket[(int(c["symbol_id"]), int(c["interval_ms"]), int(c["open_ms"]))]
        if c["interval_ms"] == M:
            assert c["volume"] == sum(qtys)  # exact: same order of addition
        else:
            assert np.isclose(c["volume"], sum(qtys), rtol=1e-12, atol=0)
        assert c["trades"] == len(qtys)
        assert 0 <= c["buy_volume"] <= c["volume"]
    assert state.stats[cd.STAT_LATE] == 0 and state.stats[cd.STAT_INCONSISTENT] == 0


@settings(max_examples=200, deadline=None)
@given(trade_steps, st.data())
def test_candles_closed_by_a_prefix_are_a_prefix_of_those_closed_by_the_whole(steps, data):
    """Appending trades never changes or removes a closed candle (causality)."""
    recs, _ = build(steps)
    cut = data.draw(st.integers(0, len(recs)))
    whole, _ = run(recs, len(recs))
    part, _ = run(recs, cut)
    assert np.array_equal(whole[: len(part)], part)


@settings(max_examples=100, deadline=None)
@given(trade_steps, st.integers(1, 97))
def test_batch_boundaries_do_not_change_the_candles(steps, batch):
    """The same trades fed in batches of any size close exactly the same candles."""
    recs, _ = build(steps)
    a, _ = run(recs, len(recs), batch)
    b, _ = run(recs, len(recs), len(recs) or 1)
    assert np.array_equal(a, b)


@settings(max_examples=100, deadline=None)
@given(trade_steps)
def test_every_closed_quarter_is_the_fold_of_its_minutes(steps):
    """Each closed 15 m candle has the OHLC, trades and volume of its closed 1 m candles."""
    recs, _ = build(steps)
    out, _ = run(recs, len(recs))
    minutes = defaultdict(list)
    for c in out[out["interval_ms"] == M]:
        minutes[(int(c["symbol_id"]), int(c["open_ms"]) // Q * Q)].append(c)
    for c in out[out["interval_ms"] == Q]:
        ms = minutes[(int(c["symbol_id"]), int(c["open_ms"]))]
        assert c["open"] == ms[0]["open"] and c["close"] == ms[-1]["close"]
        assert c["high"] == max(m["high"] for m in ms)
        assert c["low"] == min(m["low"] for m in ms)
        assert c["trades"] == sum(int(m["trades"]) for m in ms)
        vol = ms[0]["volume"]
        for m in ms[1:]:
            vol = vol + m["volume"]
        assert c["volume"] == vol
