"""The shared matching core over random books: a walk never trades beyond its limit nor more
than asked, prices only get worse chunk by chunk, and the time-in-force rules agree with the
walk (IOC keeps nothing, GTX never takes, FOK fills whole or nothing)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from venue import fills

TICK = Decimal("0.1")
STEP = Decimal("0.001")
qtys = st.integers(1, 50_000).map(lambda n: n * STEP)
depths = st.integers(0, 5_000).map(lambda n: n * STEP)


@st.composite
def cases(draw):
    side = draw(st.sampled_from(["BUY", "SELL"]))
    touch = draw(st.integers(1, 100_000)) * TICK
    limit = draw(st.none() | st.integers(1, 100_000).map(lambda n: n * TICK))
    rules = fills.TakerRules(tick=TICK, slippage_bps=Decimal(draw(st.integers(0, 200))) / 10,
                             max_levels=draw(st.integers(1, 100)), min_chunk=draw(st.sampled_from([Decimal(0), STEP])),
                             clamp_at_tick=draw(st.booleans()))
    return side, touch, draw(depths), draw(qtys), rules, limit


@settings(max_examples=400, deadline=None)
@given(cases())
def test_a_walk_respects_its_limit_its_quantity_and_gets_worse(case):
    """Sum <= qty (== qty without a limit when the price floor is clamped); no chunk beyond the
    limit; every price on the grid and > 0; each chunk no better than the one before."""
    side, touch, depth, qty, rules, limit = case
    chunks = fills.walk(side, touch, depth, qty, rules, limit)
    total = sum((q for q, _ in chunks), Decimal(0))
    assert total <= qty and all(q > 0 for q, _ in chunks)
    if limit is None and rules.clamp_at_tick:
        assert total == qty
    for _, p in chunks:
        assert p > 0 and p % TICK == 0
        if limit is not None:
            assert (p <= limit) if side == "BUY" else (p >= limit)
    prices = [p for _, p in chunks]
    assert prices == (sorted(prices) if side == "BUY" else sorted(prices, reverse=True))


@settings(max_examples=400, deadline=None)
@given(cases(), st.sampled_from(fills.TIME_IN_FORCE))
def test_time_in_force_agrees_with_the_walk(case, tif):
    """GTX is refused exactly when something would take; FOK exactly when not all would fill;
    only IOC expires the rest."""
    side, touch, depth, qty, rules, limit = case
    chunks = fills.walk(side, touch, depth, qty, rules, limit)
    out = fills.time_in_force(tif, chunks, qty)
    filled = sum((q for q, _ in chunks), Decimal(0))
    if tif == "GTX":
        assert (out.refused is not None) == bool(chunks)
    elif tif == "FOK":
        assert (out.refused is not None) == (filled < qty)
    else:
        assert out.refused is None
    assert out.expire_rest == (tif == "IOC")
