"""Paper fills and the one-way position, over random books, orders and fill sequences."""

from __future__ import annotations

from decimal import Context, Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from venue.paper import BookTop, Position, apply_fill, fill_market
from services.brain.risk import is_on_grid

TICKS = st.sampled_from([Decimal("0.1"), Decimal("0.01"), Decimal("0.0001"), Decimal("1")])
SIDES = st.sampled_from(["BUY", "SELL"])
STEP = Decimal("0.001")
qtys = st.integers(1, 50_000).map(lambda n: n * STEP)
depths = st.integers(0, 5_000).map(lambda n: n * STEP)
bps = st.integers(0, 500).map(lambda n: Decimal(n) / 10)


@st.composite
def books(draw):
    tick = draw(TICKS)
    bid_ticks = draw(st.integers(1, 1_000_000))
    spread = draw(st.integers(1, 20))
    return tick, BookTop(bid=bid_ticks * tick, bid_qty=draw(depths), ask=(bid_ticks + spread) * tick,
                         ask_qty=draw(depths))


@settings(max_examples=300, deadline=None)
@given(books(), SIDES, qtys, bps, st.integers(1, 60))
def test_market_fills_sum_exactly_to_the_order_on_the_tick_grid(tb, side, qty, slippage, levels):
    """A MARKET order with a priced book fills exactly its quantity, every price on the grid,
    never better than the touch, each level no better than the one before."""
    tick, book = tb
    fills = fill_market(book, side, qty, slippage_bps=slippage, tick=tick, max_levels=levels)
    assert sum(q for q, _ in fills) == qty
    assert all(q > 0 for q, _ in fills) and len(fills) <= levels
    prices = [p for _, p in fills]
    assert all(is_on_grid(p, tick) and p > 0 for p in prices)
    if side == "BUY":
        assert prices[0] >= book.ask and prices == sorted(prices)
    else:
        assert all(p <= book.bid for p in prices) and prices == sorted(prices, reverse=True)


@settings(max_examples=300, deadline=None)
@given(books(), SIDES, qtys, bps, st.integers(-30, 30))
def test_limit_fills_never_exceed_the_order_nor_cross_the_limit(tb, side, qty, slippage, offset):
    tick, book = tb
    limit = (book.ask if side == "BUY" else book.bid) + offset * tick
    if limit <= 0:
        return
    fills = fill_market(book, side, qty, slippage_bps=slippage, tick=tick, limit=limit)
    assert sum(q for q, _ in fills) <= qty
    assert all(p <= limit for _, p in fills) if side == "BUY" else all(p >= limit for _, p in fills)


fill_seqs = st.lists(st.tuples(SIDES, qtys, st.integers(1, 200_000).map(lambda n: n * Decimal("0.1"))),
                     min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(fill_seqs, st.integers(1, 200_000).map(lambda n: n * Decimal("0.1")))
def test_position_is_the_signed_sum_and_pnl_adds_up(seq, mark):
    """qty == signed sum of fills; realised + unrealised == the cash the fills moved + qty * mark."""
    with localcontext(Context(prec=100)):  # the broker's working precision, for our sums too
        pos, realized, cash = Position(), Decimal(0), Decimal(0)
        for side, q, p in seq:
            pos, r = apply_fill(pos, side, q, p)
            realized += r
            cash += -q * p if side == "BUY" else q * p
            assert pos.cost >= 0 and (pos.qty != 0 or pos.cost == 0)
        assert pos.qty == sum(q if s == "BUY" else -q for s, q, _ in seq)
        # partial closes divide the cost: exact to the 100-digit working precision
        assert abs(realized + pos.unrealized(mark) - (cash + pos.qty * mark)) < Decimal("1e-80")
