"""A trailing target end to end: the trailing stop ``protection.protective_order`` builds (with
trading.trailing_callback_pct on) goes through the real venue layer (``WsBroker`` over the
WebSocket API) to the local exchange on 127.0.0.1; the price is pushed past its activation
price, then back by less than the callback (nothing happens), then by more (the exchange closes
the position with it). The brain's local rule (``protection.trail``) fed the same prices
decides the same way at each step."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal

import pytest
import requests

from services.brain import protection as pr
from services.brain.trader_state import Trade, TraderConfig
from tests.integration.test_ccxt_broker_sim import QTY, SYMBOL, cap, market, sim  # noqa: F401 - fixtures
from tests.integration.test_ws_api_sim import broker  # noqa: F401 - fixture
from venue.port import AlgoSpec

pytestmark = pytest.mark.integration
TICK = Decimal("0.1")
CALLBACK_PCT = 1.0


def push(sim, price: Decimal) -> None:
    r = requests.post(f"{sim.base}/_sim/price", json={"symbol": SYMBOL, "price": format(price, "f")}, timeout=5)
    assert r.status_code == 200, r.text


def spec_of(o) -> AlgoSpec:
    """The AlgoSpec the brain's shell sends for an algo order (services/brain/execution.py)."""
    return AlgoSpec(client_algo_id=o.client_algo_id, symbol=o.symbol, side=o.side, order_type=o.order_type,
                    trigger_price=o.trigger_price, working_type=o.working_type, close_position=o.close_position,
                    qty=o.qty, price_protect=o.price_protect, callback_rate=o.callback_rate,
                    activation_price=o.activation_price)


def position(broker) -> Decimal:
    return sum((p.qty for p in broker.positions() if p.symbol == SYMBOL), Decimal(0))


def wait_until(pred, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_the_exchange_closes_a_long_by_its_trailing_stop_after_the_retrace(broker, sim):
    """Long QTY; pt-...-1 is a TRAILING_STOP_MARKET SELL QTY reduce-only, activation 2 % above
    the bid, callback 1 %, beside a STOP_MARKET closePosition 10 % below. Pushed to 3 % above
    the activation: the trail is active, nothing fires; back 0.5 % from there: still NEW; back
    2 % from there: the algo order ends FINISHED, the position is flat, and the one closing fill
    belongs to the order it became (``actualOrderId``). The local rule agrees at every step."""
    broker.submit(market("trail-entry-1", "BUY"))
    bid, _ = sim.book()
    activation = (bid * Decimal("1.02")).quantize(TICK)
    trade = Trade(trade_id="trail-it", symbol=SYMBOL, side="BUY", stop=float((bid * Decimal("0.9")).quantize(TICK)),
                  target=float(activation), confidence=0.5, features={}, opened_ms=0, entry_cid="trail-entry-1",
                  entry_qty=QTY)
    cfg = replace(TraderConfig(), trailing_callback_pct=CALLBACK_PCT)
    stop = pr.protective_order(cfg, trade, pr.STOP, Decimal(repr(trade.stop)), 1)
    target = pr.protective_order(cfg, trade, pr.TARGET, activation, 1)
    assert (target.order_type, target.qty, target.close_position, target.callback_rate) == (
        "TRAILING_STOP_MARKET", QTY, False, Decimal("1.0"))
    assert broker.place_algo(spec_of(stop)).status == "NEW"
    placed = broker.place_algo(spec_of(target))
    assert (placed.status, placed.order_type, placed.qty) == ("NEW", "TRAILING_STOP_MARKET", QTY)

    extreme = 0.0
    peak = (activation * Decimal("1.03")).quantize(TICK)
    steps = [(peak, False), ((peak * Decimal("0.995")).quantize(TICK), False),
             ((peak * Decimal("0.98")).quantize(TICK), True)]
    for price, fires in steps:
        push(sim, price)
        extreme, local = pr.trail(extreme, 1, float(activation), CALLBACK_PCT, float(price), float(price))
        assert local is fires  # the brain's layer decides as the exchange should
        if not fires:
            time.sleep(0.2)  # room for a wrong trigger to show
            assert broker.query_algo(SYMBOL, target.client_algo_id).status == "NEW"
            assert position(broker) == QTY
    assert wait_until(lambda: broker.query_algo(SYMBOL, target.client_algo_id).status == "FINISHED")
    assert wait_until(lambda: position(broker) == 0)
    done = broker.query_algo(SYMBOL, target.client_algo_id)
    closing = [f for f in broker.fills(SYMBOL) if f.side == "SELL"]
    assert done.actual_order_id and [(f.exchange_order_id, f.qty) for f in closing] == [(done.actual_order_id, QTY)]
    # the closePosition stop expires with the position (the brain would cancel it otherwise)
    assert wait_until(lambda: broker.query_algo(SYMBOL, stop.client_algo_id).status == "EXPIRED")
