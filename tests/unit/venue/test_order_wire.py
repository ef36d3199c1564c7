"""An order and its wire rows (venue.orders): the request row is the inverse of the request
it was made from, so the journal holds what was asked, field for field."""

from __future__ import annotations

from decimal import Decimal

from common import wire
from venue import orders as om


def test_a_limit_request_comes_back_field_for_field():
    """order_from_request then to_order_request gives the same request (GTC spelled out)."""
    req = wire.OrderRequest(client_order_id="ae-1", symbol="BTCUSDT", side="BUY", order_type="LIMIT", qty=0.003,
                            price=97123.4, reduce_only=False, signal_id="s1", time_in_force="GTX")
    assert om.to_order_request(om.order_from_request(req)) == req


def test_a_market_exit_has_no_price_and_no_time_in_force():
    """A reduce-only MARKET order (a triggered stop's): price 0, time in force empty, exact qty."""
    o = om.new_order(client_order_id="ps-1", symbol="ETHUSDT", side="SELL", order_type="MARKET",
                     qty=Decimal("0.123"), reduce_only=True, signal_id="s2")
    assert om.to_order_request(o) == wire.OrderRequest(client_order_id="ps-1", symbol="ETHUSDT", side="SELL",
                                                       order_type="MARKET", qty=0.123, price=0.0, reduce_only=True,
                                                       signal_id="s2", time_in_force="")
