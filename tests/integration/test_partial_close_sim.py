"""A part of a position closed at the exchange behind the brain's back, on 127.0.0.1: the
brain's execution shell with the real ccxt broker, dispatcher and user-stream client against
the local exchange (the harness of ``test_user_stream_sim``).

A manual reduce-only sell of part of the brain's long (as a partial liquidation or a close in
the app would do): the trade follows the exchange's size, the part that left is its exit at
the manual fill's price, no order of ours is sent for it, the exchange-held stop stays (one,
closePosition), and when that stop later closes the rest, the trade's PnL is the exchange's.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.brain import trader, trader_exits
from tests.integration.test_user_stream_sim import (  # noqa: F401  (the fixtures, used by name)
    BTC, assert_fills_exact, below, cap, closed, make_stack, open_trade, sim,
)
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from venue.port import OrderSpec
from venue.ratelimit import Governor

pytestmark = pytest.mark.integration


def exchange_qty(broker: CcxtBroker, symbol: str) -> Decimal:
    return next((p.qty for p in broker.positions() if p.symbol == symbol), Decimal(0))


def manual_broker(sim) -> CcxtBroker:  # noqa: F811
    """A client of the same account that is not the brain: a person trading in the app."""
    return CcxtBroker(CcxtConfig(base_url=sim.base, timeout_ms=5_000), governor=Governor(), api_key=DEMO_API_KEY,
                      api_secret=DEMO_API_SECRET)


def protected_long(stack):
    """The brain's long BTC, once its exchange-held stop is on; the trade and BTC's step size."""
    t = open_trade(stack, BTC, 1)
    stack.run_until(lambda: stack.ex.st.trades[BTC].protected_ms > 0, "the exchange-held stop")
    return t, stack.ex.filters[BTC].step_size


def added_by_hand(stack, manual: CcxtBroker, cid: str):
    """The brain's protected long BTC, then a manual MARKET buy of about half again, once the
    brain has said the larger size: (the trade, the quantity added)."""
    t, step = protected_long(stack)
    extra = (t.position / 2 / step).to_integral_value() * step
    manual.submit(OrderSpec(client_order_id=cid, symbol=BTC, side="BUY", order_type="MARKET", qty=extra))
    stack.run_until(lambda: stack.ex.st.trades[BTC].differs_reported == t.position + extra, "the larger size said")
    return t, extra


def test_the_brains_trade_follows_a_partial_close_made_at_the_exchange(sim, tmp_path):  # noqa: F811
    """Long BTC (protected); a manual reduce-only MARKET sell of about half of it. Then: the
    trade holds exactly the exchange's size, its exit is the manual fill (qty and price), no
    exit of ours was sent, one POSITION_RESIZED, the exit it keeps ready is a reduce-only sell
    of the new size, and the exchange still holds exactly one stop (closePosition) for BTC.
    The price then falls through the stop: the exchange closes the rest, and the trade's PnL
    equals the exchange's fills (sells minus buys), every fill published once."""
    stack, manual = make_stack(sim, tmp_path, protection=True), manual_broker(sim)
    try:
        t, step = protected_long(stack)
        part = (t.position / 2 / step).to_integral_value() * step
        res = manual.submit(OrderSpec(client_order_id="manual-part-1", symbol=BTC, side="SELL", order_type="MARKET",
                                      qty=part, reduce_only=True))
        left = t.position - part
        stack.run_until(lambda: stack.ex.st.trades[BTC].position == left, "the trade resized")
        resized = stack.ex.st.trades[BTC]
        held = exchange_qty(stack.broker, BTC)
        counters = dict(stack.ex.st.counters)
        lane = trader_exits.planned_exit(stack.ex.cfg, stack.ex.st, BTC, stack.ex.ctx((BTC,))).order
        algos = stack.broker.open_algo_orders(BTC)
        # the rest: the exchange's stop fires on the mark price
        sim.set_price(BTC, below(resized.stop, 0.5, stack.ex.filters[BTC].tick_size))
        stack.run_until(lambda: BTC not in stack.ex.st.trades, "the stop closed the rest")
        assert_fills_exact(stack, sim)
        trades = [x for x in sim.records("trades") if x["symbol"] == BTC]
    finally:
        manual.close()
        stack.close()
    fill_value = sum((f.qty * f.price for f in res.fills), Decimal(0))
    assert (held, resized.exit_qty, resized.exit_notional) == (left, part, fill_value)
    assert (counters.get("exits", 0), counters["position_resized"], counters["position_smaller_at_exchange"]) == (
        0, 1, 1)
    assert "position_resized_at_mark" not in counters
    assert (lane.qty, lane.side, lane.reduce_only) == (left, "SELL", True)
    stops = [a for a in algos if a.order_type == "STOP_MARKET"]
    assert [(a.client_algo_id, a.close_position) for a in stops] == [(resized.stop_cid, True)]
    [tc] = closed(stack)
    signed = sum((Decimal(x["qty"]) * Decimal(x["price"]) * (1 if x["side"] == "SELL" else -1) for x in trades),
                 Decimal(0))
    assert (tc.qty, tc.exit_reason, tc.pnl) == (float(t.position), "STOP", float(signed))


def test_a_position_added_to_by_hand_is_closed_whole_by_the_stop_and_the_trade_counts_its_part(
        sim, tmp_path):  # noqa: F811
    """Long BTC (protected); a manual MARKET buy adds about half again. The trade keeps its
    size and says so once (no order of ours). The price falls through the stop: the
    exchange's closePosition stop sells the whole position (flat at the exchange: the added
    part was protected too), and the trade's PnL is its own quantity at the stop's fill price
    against its own entry fills."""
    stack, manual = make_stack(sim, tmp_path, protection=True), manual_broker(sim)
    try:
        t, extra = added_by_hand(stack, manual, "manual-add-1")
        kept = stack.ex.st.trades[BTC]
        counters = dict(stack.ex.st.counters)
        sim.set_price(BTC, below(kept.stop, 0.5, stack.ex.filters[BTC].tick_size))
        stack.run_until(lambda: BTC not in stack.ex.st.trades, "the stop closed the trade")
        held = exchange_qty(stack.broker, BTC)
        trades = [x for x in sim.records("trades") if x["symbol"] == BTC]
    finally:
        manual.close()
        stack.close()
    assert (kept.position, counters["position_larger_at_exchange"], counters.get("exits", 0)) == (t.position, 1, 0)
    assert held == 0
    ours = [x for x in trades if x["clientOrderId"] == t.entry_cid]
    (stop_fill,) = [x for x in trades if x["side"] == "SELL"]
    assert Decimal(stop_fill["qty"]) == t.position + extra  # closePosition: the whole position
    entry_notional = sum((Decimal(x["qty"]) * Decimal(x["price"]) for x in ours), Decimal(0))
    [tc] = closed(stack)
    assert (tc.qty, tc.exit_reason, tc.exit_price) == (float(t.position), "STOP", float(Decimal(stop_fill["price"])))
    assert tc.pnl == float(t.position * Decimal(stop_fill["price"]) - entry_notional)
    fills = stack.fills()
    assert len(fills) == len(set(fills)) and str(stop_fill["id"]) in fills


def test_a_part_added_by_hand_is_protected_again_at_once_when_our_exit_closes_the_trade(sim, tmp_path):  # noqa: F811
    """Long BTC (protected); a manual MARKET buy adds about half again; then our own exit (the
    strategy's) sells the trade's quantity and closes the trade, and its protective orders are
    cancelled. The part added by hand does not wait for the next reconciliation: once the
    cancels are confirmed it is read, adopted (its size, its side) and given a new closePosition
    stop at the exchange, never refused (-4130: a second closePosition stop); the price then
    falls through that stop and the exchange closes it: flat, every fill published once."""
    stack, manual = make_stack(sim, tmp_path, protection=True), manual_broker(sim)
    try:
        t, extra = added_by_hand(stack, manual, "manual-add-2")
        ex = stack.ex
        ex.apply(trader.request_exit(ex.cfg, ex.st, BTC, trader_exits.STRATEGY, ex.ctx((BTC,))))
        stack.run_until(lambda: BTC in ex.st.trades and ex.st.trades[BTC].adopted
                        and ex.st.trades[BTC].protected_ms > 0, "the part left adopted and protected", 20)
        adopted = ex.st.trades[BTC]
        algos = stack.broker.open_algo_orders(BTC)
        counters, checks = dict(ex.st.counters), ex.counters["remainder_checks"]
        sim.set_price(BTC, below(adopted.stop, 0.5, ex.filters[BTC].tick_size))
        stack.run_until(lambda: BTC not in ex.st.trades, "the stop closed the part left")
        held = exchange_qty(stack.broker, BTC)
        theirs = sorted(str(x["id"]) for x in sim.records("trades") if x["clientOrderId"] != "manual-add-2")
        fills = stack.fills()
    finally:
        manual.close()
        stack.close()
    assert sorted(fills) == theirs  # every fill of ours (entry, exit, the adopted part's stop) once
    assert (adopted.position, adopted.side, held) == (extra, "BUY", 0)
    assert (counters["remainder_adopted"], checks) == (1, 1) and "protection_rejected" not in counters
    stops = [a for a in algos if a.order_type == "STOP_MARKET"]
    assert [(a.client_algo_id, a.close_position) for a in stops] == [(adopted.stop_cid, True)]
    first, second = closed(stack)
    assert (first.qty, first.exit_reason) == (float(t.position), trader_exits.STRATEGY)
    assert (second.qty, second.exit_reason, second.learned) == (float(extra), "STOP", False)
