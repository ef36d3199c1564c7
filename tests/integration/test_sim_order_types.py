"""Order types and cancel-and-replace through the real venue layer (``WsBroker`` over the
WebSocket API, ``CcxtBroker`` behind it) against the local exchange on 127.0.0.1: LIMIT IOC
takes what it can and expires the rest, post-only (GTX) is refused with -5022 when it would
take and rests when it would not, and a second closePosition stop is refused (-4130), which is
why a moved stop is cancelled before its successor is placed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.errors import DefinitiveError
from tests.integration.test_ccxt_broker_sim import QTY, SYMBOL, cap, market, sim  # noqa: F401 - fixtures
from tests.integration.test_ws_api_sim import broker  # noqa: F401 - fixture
from venue.port import AlgoSpec, OrderSpec

pytestmark = pytest.mark.integration
TICK = Decimal("0.1")


def limit(cid: str, side: str, price: Decimal, tif: str) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol=SYMBOL, side=side, order_type="LIMIT", qty=QTY,
                     price=price.quantize(TICK), time_in_force=tif)


def test_ioc_fills_when_marketable_and_expires_empty_when_not(broker, sim):
    """IOC BUY 1 % above the ask: FILLED with its fills; IOC BUY 3 % below the bid: EXPIRED,
    nothing filled, nothing resting."""
    bid, ask = sim.book()
    took = broker.submit(limit("ioc-take-1", "BUY", ask * Decimal("1.01"), "IOC"))
    assert (took.order.status, took.order.executed_qty, sum(f.qty for f in took.fills)) == ("FILLED", QTY, QTY)
    missed = broker.submit(limit("ioc-miss-1", "BUY", bid * Decimal("0.97"), "IOC"))
    assert (missed.order.status, missed.order.executed_qty, missed.fills) == ("EXPIRED", Decimal(0), ())
    assert broker.open_orders(SYMBOL) == []


def test_post_only_is_refused_when_it_would_take_and_rests_when_it_would_not(broker, sim):
    """GTX BUY above the ask: -5022 and no order at the exchange; GTX BUY below the bid: NEW
    (resting), then cancelled."""
    bid, ask = sim.book()
    with pytest.raises(DefinitiveError) as e:
        broker.submit(limit("gtx-take-1", "BUY", ask * Decimal("1.01"), "GTX"))
    assert e.value.code == -5022
    assert broker.query(SYMBOL, "gtx-take-1") is None
    rests = broker.submit(limit("gtx-rest-1", "BUY", bid * Decimal("0.97"), "GTX"))
    assert (rests.order.status, rests.fills) == ("NEW", ())
    assert broker.cancel(SYMBOL, "gtx-rest-1").status == "CANCELED"


def test_a_stop_is_moved_by_cancel_then_place_because_two_close_position_stops_are_refused(broker, sim):
    """Long QTY with ps-m-1 at 90 % of the bid: placing ps-m-2 first is refused (-4130);
    cancelling ps-m-1 then placing ps-m-2 at 95 % leaves exactly ps-m-2 open."""
    broker.submit(market("move-entry-1", "BUY"))
    bid, _ = sim.book()

    def stop(cid: str, share: str) -> AlgoSpec:
        return AlgoSpec(client_algo_id=cid, symbol=SYMBOL, side="SELL", order_type="STOP_MARKET",
                        trigger_price=(bid * Decimal(share)).quantize(TICK))

    first = broker.place_algo(stop("ps-m-1", "0.90"))
    assert first.status == "NEW"
    with pytest.raises(DefinitiveError) as e:
        broker.place_algo(stop("ps-m-2", "0.95"))
    assert e.value.code == -4130
    assert broker.cancel_algo(SYMBOL, "ps-m-1").status == "CANCELED"
    second = broker.place_algo(stop("ps-m-2", "0.95"))
    assert (second.status, second.trigger_price) == ("NEW", (bid * Decimal("0.95")).quantize(TICK))
    assert [o.client_algo_id for o in broker.open_algo_orders(SYMBOL)] == ["ps-m-2"]
