"""Properties of risk rounding and of check_order over random orders, portfolios and states (Hypothesis)."""

from __future__ import annotations

import json
from decimal import Context, Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.brain import risk
from services.brain.risk import Approved, Exposure, Market, Portfolio, Quote, RiskConfig, Rejected
from tests.conftest import USDM_DATA

# real exchangeInfo symbol entries: seven USDT perpetuals as ccxt recorded them from Binance
RAW = {e["symbol"]: e for e in json.loads((USDM_DATA / "exchangeInfo_symbols_ccxt.json").read_text())["symbols"]}
# every distinct tick and step size of the real entries, written as Binance writes them
# ("0.10", "0.00010", "0.000010"), plus every power of ten USD-M uses for them (ticks 1 down
# to 0.000001, steps 1 down to 0.001) so no size class goes unsampled
TICKS = sorted({risk.filters_from_entry(e).tick_size for e in RAW.values()}
               | {Decimal(1).scaleb(-k) for k in range(7)})
STEPS = sorted({risk.filters_from_entry(e).step_size for e in RAW.values()}
               | {Decimal(1).scaleb(-k) for k in range(4)})
X = Context(prec=200)  # the test's own arithmetic, exact for these sizes

FILTERS = {s: risk.filters_from_entry(RAW[s]) for s in ("BTCUSDT", "ETHUSDT", "XRPUSDT")}
MARKS = {"BTCUSDT": 40_000.0, "ETHUSDT": 2_500.0, "XRPUSDT": 0.7}
OTHER = ("SOLUSDT", "ADAUSDT")
NOW = 1_645_233_611_962
CFG = RiskConfig(max_order_notional_usdt=1_000.0, max_total_notional_usdt=2_500.0, max_leverage=3.0,
                 max_positions=3, daily_loss_limit_usdt=100.0, max_drawdown_pct=10.0,
                 stale_data_ms=2_000, max_orders_per_minute=5)

decimals = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("10000000"), allow_nan=False,
                       allow_infinity=False, places=9)
floats = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False)


@settings(max_examples=2_000, deadline=None)
@given(price=st.one_of(decimals, floats.map(risk.to_decimal)), tick=st.sampled_from(TICKS),
       side=st.sampled_from(["BUY", "SELL"]))
def test_rounded_price_is_on_the_tick_grid_within_half_a_tick(price, tick, side):
    """Any price rounds to a multiple of the tick no more than half a tick away, and survives float()."""
    r = risk.round_price(price, tick, side)
    assert risk.is_on_grid(r, tick)
    assert X.multiply(2, abs(X.subtract(r, price))) <= tick
    if r > 0 and r < 10_000_000:
        assert Decimal(repr(float(r))) == r  # the float on the wire formats back to the same decimal


@settings(max_examples=2_000, deadline=None)
@given(qty=st.one_of(decimals, floats.map(risk.to_decimal)), step=st.sampled_from(STEPS))
def test_rounded_qty_never_exceeds_the_request_and_is_on_the_step_grid(qty, step):
    """Rounding a quantity never adds to it, stays on the step grid and loses less than one step."""
    r = risk.round_qty_down(qty, step)
    assert r <= qty
    assert risk.is_on_grid(r, step)
    assert X.subtract(qty, r) < step
    assert "E" not in risk.fmt(r)


# ---------------------------------------------------------------------------- check_order
symbols = st.sampled_from(sorted(FILTERS))
poison = st.sampled_from([float("nan"), float("inf"), -1.0, 0.0])


@st.composite
def exposures(draw):
    sym = draw(st.sampled_from([*FILTERS, *OTHER]))
    mark = MARKS.get(sym, 100.0)
    notional = draw(st.floats(0.0, 900.0))
    sign = draw(st.sampled_from([1.0, -1.0]))
    return Exposure(symbol=sym, qty=sign * notional / mark, price=mark)


@st.composite
def scenarios(draw):
    """Mostly plausible orders near the limits (so that a good share is approved), some poison."""
    sym = draw(symbols)
    mark = MARKS[sym] * draw(st.floats(0.95, 1.05))
    otype = draw(st.sampled_from(["LIMIT", "MARKET"]))
    side = draw(st.sampled_from(["BUY", "SELL"]))
    qty = draw(st.floats(0.0, 1_200.0)) / mark
    if draw(st.integers(0, 19)) == 0:
        qty = draw(poison)
    price = mark * draw(st.floats(0.85, 1.12)) if otype == "LIMIT" else 0.0
    reduce_only = draw(st.integers(0, 3)) == 0
    # a stub, not wire.OrderRequest: the wire type refuses NaN at construction, and poison must reach the checks
    order = _Stub(client_order_id="ae-p-0", symbol=sym, side=side, order_type=otype, qty=qty, price=price,
                  reduce_only=reduce_only, signal_id="p")
    equity = draw(st.floats(300.0, 5_000.0))
    positions = draw(st.lists(exposures(), max_size=3))
    if reduce_only and draw(st.integers(0, 3)) > 0:  # usually something to reduce
        held = (qty if isinstance(qty, float) and qty == qty and qty > 0 else 1.0) * draw(st.floats(0.5, 3.0))
        positions.append(Exposure(symbol=sym, qty=held if side == "SELL" else -held, price=mark))
    entries = tuple(draw(st.lists(exposures(), max_size=1)))
    state = risk.initial_state(equity * draw(st.floats(0.95, 1.08)), NOW - draw(st.integers(0, 2 * risk.DAY_MS)))
    for t in draw(st.lists(st.integers(0, 120_000), max_size=6)):
        state = risk.record_order(state, NOW - t)
    if draw(st.integers(0, 9)) == 0:
        state = risk.halt(state, NOW, "test")
    now = NOW + draw(st.integers(0, 5_000))
    quote_age = draw(st.integers(0, 2_500))
    market = Market(filters=FILTERS, quotes={s: Quote(mark_price=mark if s == sym else MARKS[s],
                                                      updated_ms=now - quote_age) for s in FILTERS})
    return order, Portfolio(equity_usdt=equity, positions=tuple(positions), open_entries=entries), state, market, now


class _Stub:
    """Attributes only: whatever check_order is handed."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


@settings(max_examples=3_000, deadline=None)
@given(scenarios())
def test_approved_orders_satisfy_every_limit(scenario):
    """Whatever the inputs, an approved order is on the grid, inside the filters and inside every risk limit."""
    order, pf, state, market, now = scenario
    d = risk.check_order(CFG, state, pf, order, market, now)
    if isinstance(d, Rejected):
        event(f"rejected {d.reason}")
        assert d.reason in risk.REASONS
        return
    event("approved exit" if d.is_exit else "approved entry")
    assert isinstance(d, Approved)
    f = FILTERS[order.symbol]
    req_qty = risk.to_decimal(order.qty)
    step = f.market_step_size if order.order_type == "MARKET" else f.step_size
    # grid and filters
    assert risk.is_on_grid(d.qty, step) and f.min_qty <= d.qty <= req_qty
    assert d.qty <= (f.market_max_qty if order.order_type == "MARKET" else f.max_qty)
    assert Decimal(repr(d.order.qty)) == d.qty and Decimal(repr(d.order.price)) == d.price
    mark = risk.to_decimal(market.quotes[order.symbol].mark_price)
    if order.order_type == "LIMIT":
        assert risk.is_on_grid(d.price, f.tick_size) and f.min_price <= d.price <= f.max_price
        assert X.multiply(2, abs(X.subtract(d.price, risk.to_decimal(order.price)))) <= f.tick_size
        if order.side == "BUY":
            assert d.price <= X.multiply(mark, f.percent_up)
        else:
            assert d.price >= X.multiply(mark, f.percent_down)
    else:
        assert d.price == 0
    # the rate window had room, for an entry (an exit is counted but never refused by the brake)
    assert d.is_exit or risk.orders_in_window(state, now) < CFG.max_orders_per_minute
    assert d.state.order_times_ms[-1] == now
    held = sum((risk.to_decimal(p.qty) for p in pf.positions if p.symbol == order.symbol), Decimal(0))
    if d.is_exit:
        assert held != 0 and (held > 0) == (order.side == "SELL") and d.qty <= abs(held)
        return
    # entries: every limit
    assert not d.state.halted and not state.halted
    assert now - market.quotes[order.symbol].updated_ms <= CFG.stale_data_ms
    occupied = {e.symbol for e in (*pf.positions, *pf.open_entries) if e.qty != 0}
    assert order.symbol not in occupied and len(occupied) < CFG.max_positions
    ref = d.price if order.order_type == "LIMIT" else mark
    notional = X.multiply(d.qty, ref)
    assert notional == d.notional_usdt
    assert f.min_notional <= notional <= Decimal(repr(CFG.max_order_notional_usdt))
    total = notional
    for e in (*pf.positions, *pf.open_entries):
        total = X.add(total, X.multiply(abs(risk.to_decimal(e.qty)), risk.to_decimal(e.price)))
    assert total <= Decimal(repr(CFG.max_total_notional_usdt))
    assert total <= X.multiply(risk.to_decimal(pf.equity_usdt), Decimal(repr(CFG.max_leverage)))
    day_loss = state.day_start_equity_usdt - pf.equity_usdt if now // risk.DAY_MS == state.day_index else 0.0
    assert day_loss < CFG.daily_loss_limit_usdt
    peak = max(state.peak_equity_usdt, pf.equity_usdt)
    assert (peak - pf.equity_usdt) / peak * 100.0 < CFG.max_drawdown_pct


@settings(max_examples=500, deadline=None)
@given(scenarios())
def test_check_order_is_pure(scenario):
    """The same inputs give the same decision, and the inputs are not touched."""
    order, pf, state, market, now = scenario
    before = (dict(order.__dict__), pf, state)
    a = risk.check_order(CFG, state, pf, order, market, now)
    b = risk.check_order(CFG, state, pf, order, market, now)
    assert _same(a, b)
    assert (dict(order.__dict__), pf, state) == before


def _same(a, b) -> bool:
    return type(a) is type(b) and a.state == b.state and (
        (a.reason, a.detail) == (b.reason, b.detail) if isinstance(a, Rejected) else (a.qty, a.price) == (b.qty, b.price))
