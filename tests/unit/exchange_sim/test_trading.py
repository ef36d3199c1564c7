"""The sim's matching and account core (``trading``), without sockets or clocks.

One BTCUSDT-like symbol (tick 0.10, step 0.001, min notional 100) and a hand-made book:
bid 60000.00 x 1.500, ask 60000.10 x 0.400 (``trading_helpers``). Every expected number
is worked out by hand in the comment next to it.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from services.exchange_sim import trading
from services.exchange_sim.account import (CANCELED, EXPIRED, FILLED, NEW, PARTIALLY_FILLED, Quote,
                                           new_account, totals)
from services.exchange_sim.rest import RestError
from services.exchange_sim.trading import place
from tests.unit.exchange_sim.trading_helpers import BOOK, RULES, T0, fills_of, go, lim, mkt, refused

# ---------------------------------------------------------------------------- market orders
class TestMarketOrders:
    def test_market_buy_within_the_touch_fills_once_at_the_ask(self):
        """0.010 of 0.400 at the ask: one taker trade at 60000.10, fee 600.001 x 0.05 %."""
        p = go(new_account(), mkt("BUY", "0.010", client_id="m1"))
        assert (p.order.status, p.order.executed_qty, p.order.cum_quote) == (FILLED, D("0.010"), D("600.0010"))
        assert (p.ack.status, p.ack.executed_qty) == (NEW, 0)
        assert fills_of(p.account) == [(272600001, "BUY", "60000.10", "0.010", "0.30000050", "0", False)]
        assert p.account.wallet == D("9999.69999950")
        pos = p.account.position("BTCUSDT")
        assert (pos.qty, pos.entry_price) == (D("0.010"), D("60000.10"))
        assert (p.order.order_id, p.order.client_id, p.order.time_ms) == (4100000001, "m1", T0)

    def test_market_buy_larger_than_the_touch_walks_one_tick_per_touch_sized_chunk(self):
        """1.000 vs 0.400 at the ask: 0.4 @ .10, 0.4 @ .20, 0.2 @ .30, three trade ids."""
        p = go(new_account(), mkt("BUY", "1.000"))
        assert fills_of(p.account) == [
            (272600001, "BUY", "60000.10", "0.400", "12.00002000", "0", False),  # 24000.04 x 0.0005
            (272600002, "BUY", "60000.20", "0.400", "12.00004000", "0", False),  # 24000.08 x 0.0005
            (272600003, "BUY", "60000.30", "0.200", "6.00003000", "0", False),  # 12000.06 x 0.0005
        ]
        assert p.order.avg_price == D("60000.18")  # 60000.18 / 1.000
        assert p.account.position("BTCUSDT").entry_price == D("60000.18000000")
        assert p.account.wallet == D("9969.99991000")  # 10000 - 30.00009

    def test_market_sell_walks_down_from_the_bid(self):
        """2.000 vs 1.500 at the bid: 1.5 @ 60000.00, then 0.5 @ 59999.90; a short opens."""
        p = go(new_account(), mkt("SELL", "2.000"))
        assert [(str(f.price), str(f.qty)) for f in p.account.fills] == [("60000.00", "1.500"), ("59999.90", "0.500")]
        assert p.account.position("BTCUSDT").qty == D("-2.000")

    def test_market_order_without_a_book_is_unable_to_fill(self):
        with pytest.raises(RestError) as e:
            place(new_account(), mkt("BUY", "0.010"), RULES, None, {}, T0)
        assert (e.value.code, e.value.msg) == (-2020, "Unable to fill.")

    def test_client_id_is_made_up_like_binance_when_absent(self):
        """22 base62 characters, the same for the same order id."""
        p = go(new_account(), mkt("BUY", "0.010"))
        cid = p.order.client_id
        assert len(cid) == 22 and cid.isalnum() and cid == trading.generated_client_id(4100000001)


# ---------------------------------------------------------------------------- limit orders
class TestLimitOrders:
    def test_marketable_limit_fills_up_to_its_price_and_rests_the_rest(self):
        """Buy 1.000 @ 60000.20: 0.4 @ .10 and 0.4 @ .20 now, 0.200 rests."""
        p = go(new_account(), lim("BUY", "1.000", "60000.20", client_id="L1"))
        assert (p.order.status, p.order.executed_qty) == (PARTIALLY_FILLED, D("0.800"))
        assert [str(f.price) for f in p.account.fills] == ["60000.10", "60000.20"]
        assert p.account.open_ids == {"BTCUSDT": (4100000001,)}

    def test_resting_rest_fills_as_maker_when_a_later_book_crosses_it(self):
        """The ask drops to 60000.20: the 0.200 left fills at its price, fee 0.02 %."""
        acc = go(new_account(), lim("BUY", "1.000", "60000.20")).account
        later = Quote(bid=D("60000.10"), bid_qty=D("1"), ask=D("60000.20"), ask_qty=D("0.050"),
                      last=D("60000.10"), last_trade_id=500)
        after = trading.match_resting(acc, RULES, later, T0 + 1000)
        assert fills_of(after)[-1] == (272600003, "BUY", "60000.20", "0.200", "2.40000800", "0", True)
        o = after.orders[4100000001]
        assert (o.status, o.executed_qty, o.update_ms) == (FILLED, D("1.000"), T0 + 1000)
        assert after.open_ids == {} and after.position("BTCUSDT").qty == D("1.000")

    def test_resting_order_not_crossed_leaves_the_very_same_account(self):
        acc = go(new_account(), lim("BUY", "0.010", "59990.00")).account
        assert trading.match_resting(acc, RULES, BOOK, T0 + 1) is acc

    def test_a_later_trade_through_the_price_fills_a_resting_order(self):
        """Sell @ 60001.00 rests; a trade printed at 60001.10 after it fills it, an old one does not."""
        acc = go(new_account(), lim("SELL", "0.010", "60001.00")).account
        same_trade = Quote(bid=D("60000.00"), bid_qty=D("1"), ask=D("60000.10"), ask_qty=D("1"),
                           last=D("60001.10"), last_trade_id=500)
        assert trading.match_resting(acc, RULES, same_trade, T0 + 1) is acc
        new_trade = Quote(bid=D("60000.00"), bid_qty=D("1"), ask=D("60000.10"), ask_qty=D("1"),
                          last=D("60001.10"), last_trade_id=501)
        after = trading.match_resting(acc, RULES, new_trade, T0 + 2)
        assert fills_of(after) == [(272600001, "SELL", "60001.00", "0.010", "0.12000200", "0", True)]

    def test_ioc_remainder_expires(self):
        p = go(new_account(), lim("BUY", "1.000", "60000.10", tif="IOC"))
        assert (p.order.status, p.order.executed_qty, p.account.open_ids) == (EXPIRED, D("0.400"), {})

    def test_fok_that_cannot_fill_whole_is_refused_and_changes_nothing(self):
        assert refused(new_account(), lim("BUY", "1.000", "60000.10", tif="FOK"))[0] == -5021

    def test_post_only_that_would_take_is_refused(self):
        assert refused(new_account(), lim("BUY", "0.010", "60000.10", tif="GTX"))[0] == -5022
        p = go(new_account(), lim("BUY", "0.010", "60000.00", tif="GTX"))
        assert (p.order.status, p.account.fills) == (NEW, ())

    def test_cancel_then_unknown_order_on_second_cancel(self):
        acc = go(new_account(), lim("BUY", "0.010", "59000.00", client_id="c1")).account
        acc2, o = trading.cancel(acc, "BTCUSDT", None, "c1", T0 + 5)
        assert (o.status, o.update_ms, acc2.open_ids) == (CANCELED, T0 + 5, {})
        with pytest.raises(RestError) as e:
            trading.cancel(acc2, "BTCUSDT", o.order_id, None, T0 + 6)
        assert (e.value.code, e.value.msg) == (-2011, "Unknown order sent.")

    def test_cancel_all_cancels_only_that_symbols_resting_orders(self):
        acc = go(new_account(), lim("BUY", "0.010", "59000.00")).account
        acc = go(acc, lim("BUY", "0.010", "59000.10")).account
        after = trading.cancel_all(acc, "BTCUSDT", T0 + 1)
        assert [o.status for o in after.orders.values()] == [CANCELED, CANCELED]
        assert trading.cancel_all(after, "BTCUSDT", T0 + 2) is after


# ---------------------------------------------------------------------------- client ids
class TestClientOrderIds:
    def test_duplicate_client_id_of_an_open_order_is_refused(self):
        acc = go(new_account(), lim("BUY", "0.010", "59000.00", client_id="dup")).account
        assert refused(acc, lim("BUY", "0.010", "59000.00", client_id="dup")) == (-4116, "ClientOrderId is duplicated.")

    def test_client_id_of_a_finished_order_may_be_reused_and_then_names_the_new_one(self):
        acc = go(new_account(), mkt("BUY", "0.010", client_id="again")).account
        p = go(acc, mkt("BUY", "0.010", client_id="again"))
        assert p.account.order_by_client_id("again").order_id == 4100000002


# ---------------------------------------------------------------------------- reduce-only
class TestReduceOnly:
    def test_reduce_only_without_a_position_is_rejected(self):
        assert refused(new_account(), mkt("SELL", "0.010", reduce_only=True)) == (
            -2022, "ReduceOnly Order is rejected.")

    def test_reduce_only_on_the_side_of_the_position_is_rejected(self):
        acc = go(new_account(), mkt("BUY", "0.010")).account
        assert refused(acc, mkt("BUY", "0.010", reduce_only=True))[0] == -2022

    def test_reduce_only_larger_than_the_position_closes_it_and_never_flips(self):
        """Long 0.010, reduce-only sell 0.020: 0.010 fills, the rest expires, flat."""
        acc = go(new_account(), mkt("BUY", "0.010")).account
        p = go(acc, mkt("SELL", "0.020", reduce_only=True))
        assert (p.order.status, p.order.executed_qty) == (EXPIRED, D("0.010"))
        assert p.account.position("BTCUSDT").qty == 0

    def test_resting_reduce_only_order_expires_when_the_position_is_closed(self):
        acc = go(new_account(), mkt("BUY", "0.010")).account
        acc = go(acc, lim("SELL", "0.010", "61000.00", reduce_only=True, client_id="tp")).account
        p = go(acc, mkt("SELL", "0.010", reduce_only=True))
        assert p.account.order_by_client_id("tp").status == EXPIRED and p.account.open_ids == {}

    def test_reduce_only_is_exempt_from_min_notional(self):
        acc = go(new_account(), mkt("BUY", "0.002")).account  # 120 USDT
        acc = go(acc, mkt("SELL", "0.001", reduce_only=True)).account  # 60 USDT: allowed
        assert acc.position("BTCUSDT").qty == D("0.001")


# ---------------------------------------------------------------------------- margin
class TestMargin:
    def test_order_whose_position_needs_more_margin_than_available_is_refused(self):
        """3.400 x 60000.10 / 20 = 10200.02 > 10000 available: -2019, nothing changes."""
        assert refused(new_account(), mkt("BUY", "3.400")) == (-2019, "Margin is insufficient.")

    def test_same_order_fits_at_higher_leverage(self):
        acc = trading.set_leverage(new_account(), "BTCUSDT", 25, T0)
        assert go(acc, mkt("BUY", "3.400")).order.status == FILLED

    def test_reducing_never_needs_margin(self):
        acc = go(new_account(), mkt("BUY", "3.000")).account  # 9000.x margin of 10000
        acc = trading.set_leverage(acc, "BTCUSDT", 1, T0)
        assert go(acc, mkt("SELL", "1.000")).order.status == FILLED

    def test_resting_orders_hold_margin(self):
        """A resting buy of 3.000 @ 59000 holds 8850 at 20x; another 0.500 no longer fits."""
        acc = go(new_account(), lim("BUY", "3.000", "59000.00")).account
        assert totals(acc, {"BTCUSDT": BOOK.mark}).order_im == D("8850")
        assert refused(acc, mkt("BUY", "0.500"))[0] == -2019

    def test_leverage_outside_1_to_125_is_not_valid(self):
        for bad in (0, 126):
            with pytest.raises(RestError) as e:
                trading.set_leverage(new_account(), "BTCUSDT", bad, T0)
            assert (e.value.code, e.value.msg) == (-4028, f"Leverage {bad} is not valid")

    def test_margin_type_unchanged_is_no_need_to_change(self):
        with pytest.raises(RestError) as e:
            trading.set_margin_type(new_account(), "BTCUSDT", "CROSSED", T0)
        assert (e.value.code, e.value.msg) == (-4046, "No need to change margin type.")

    def test_isolated_margin_is_refused_not_accepted_and_margined_as_cross(self):
        """The sim models cross margin only: ISOLATED answers -1020 and the account is unchanged."""
        acc = new_account()
        with pytest.raises(RestError) as e:
            trading.set_margin_type(acc, "BTCUSDT", "ISOLATED", T0)
        assert (e.value.code, e.value.msg) == (-1020, "This operation is not supported.")
        assert acc.margin_type == {}


# ---------------------------------------------------------------------------- filters
class TestFilters:
    @pytest.mark.parametrize("req, code, msg", [
        (mkt("BUY", "0.0001"), -1111, "Precision is over the maximum defined for this asset."),
        (mkt("BUY", "0"), -4003, "Quantity less than or equal to zero."),
        (mkt("BUY", "121"), -4005, "Quantity greater than max quantity."),
        (lim("BUY", "0.010", "60000.05"), -4014, "Price not increased by tick size."),
        (lim("BUY", "0.010", "60000.123"), -1111, "Precision is over the maximum defined for this asset."),
        (lim("BUY", "0.010", "0.05"), -4013, "Price less than min price."),
        # PERCENT_PRICE around the mark 60000.05: at most 63000.0525, at least 57000.0475, on ticks
        (lim("BUY", "0.010", "63001.00"), -4016, "Limit price can't be higher than 63000.00."),
        (lim("SELL", "0.010", "56999.00"), -4024, "Limit price can't be lower than 57000.10."),
        (mkt("BUY", "0.001"), -4164, "Order's notional must be no smaller than 100 (unless you choose reduce only)."),
    ])
    def test_order_breaking_a_filter_gets_binances_code_and_text(self, req, code, msg):
        assert refused(new_account(), req) == (code, msg)


# ---------------------------------------------------------------------------- PnL
class TestRealisedPnl:
    def test_close_long_at_a_higher_bid_realises_the_exact_difference_minus_fees(self):
        """Buy 0.010 @ 60000.10 (fee 0.3000005), sell @ 60100.00: +0.999, fee 0.3005."""
        acc = go(new_account(), mkt("BUY", "0.010")).account
        up = Quote(bid=D("60100.00"), bid_qty=D("1"), ask=D("60100.10"), ask_qty=D("1"))
        acc = go(acc, mkt("SELL", "0.010", reduce_only=True), quote=up).account
        assert fills_of(acc)[-1] == (272600002, "SELL", "60100.00", "0.010", "0.30050000", "0.99900000", False)
        assert acc.wallet == D("10000.39849950")  # 10000 - 0.3000005 + 0.999 - 0.3005
        assert (acc.position("BTCUSDT").qty, acc.position("BTCUSDT").entry_price) == (0, 0)

    def test_cover_short_at_a_higher_ask_realises_a_loss(self):
        """Short 0.020 @ 60000.00, cover @ 60050.10: -0.020 x 50.10 = -1.002."""
        acc = go(new_account(), mkt("SELL", "0.020")).account
        up = Quote(bid=D("60050.00"), bid_qty=D("1"), ask=D("60050.10"), ask_qty=D("1"))
        acc = go(acc, mkt("BUY", "0.020", reduce_only=True), quote=up).account
        assert acc.fills[-1].realized_pnl == D("-1.00200000")

    def test_flip_realises_the_closed_part_and_opens_the_rest_at_the_fill_price(self):
        """Long 0.010 @ 60000.10, sell 0.030 @ 60100.00: +0.999 on 0.010, short 0.020 @ 60100."""
        acc = go(new_account(), mkt("BUY", "0.010")).account
        up = Quote(bid=D("60100.00"), bid_qty=D("1"), ask=D("60100.10"), ask_qty=D("1"))
        acc = go(acc, mkt("SELL", "0.030"), quote=up).account
        pos = acc.position("BTCUSDT")
        assert (acc.fills[-1].realized_pnl, pos.qty, pos.entry_price) == (D("0.99900000"), D("-0.020"), D("60100.00"))

    def test_wallet_moves_by_exactly_the_sum_of_realised_pnl_minus_commissions(self):
        """Buy 0.5 (2 chunks), sell 0.2 into a thin bid (4), close 0.3 into a thinner one (5)."""
        up = Quote(bid=D("60123.40"), bid_qty=D("0.050"), ask=D("60123.50"), ask_qty=D("1"))
        down = Quote(bid=D("59876.50"), bid_qty=D("0.070"), ask=D("59876.60"), ask_qty=D("1"))
        acc = new_account()
        for req, q in [(mkt("BUY", "0.500"), BOOK), (mkt("SELL", "0.200"), up),
                       (mkt("SELL", "0.300", reduce_only=True), down)]:
            acc = go(acc, req, quote=q).account
        assert acc.wallet - D("10000") == sum(f.realized_pnl - f.commission for f in acc.fills)
        assert acc.position("BTCUSDT").qty == 0 and acc.fills_total == len(acc.fills) == 2 + 4 + 5


# ---------------------------------------------------------------------------- modify (PUT /fapi/v1/order)
def modify(acc, oid, qty, price, side="BUY", quote=BOOK, now=T0 + 5):
    return trading.modify(acc, "BTCUSDT", oid, None, side, D(qty), D(price), RULES, quote,
                          {"BTCUSDT": quote.mark}, now)


class TestModify:
    def test_a_resting_order_gets_its_new_price_and_quantity_and_requeues(self):
        """Same id and client id; price and quantity replaced; it waits for a trade after now."""
        p = go(new_account(), lim("BUY", "0.010", "59000.00"))
        later = Quote(bid=BOOK.bid, bid_qty=BOOK.bid_qty, ask=BOOK.ask, ask_qty=BOOK.ask_qty, last=D("60000.00"),
                      last_trade_id=777)
        acc, o = modify(p.account, p.order.order_id, "0.020", "59500.00", quote=later)
        assert (o.order_id, o.client_id, o.price, o.orig_qty, o.status, o.after_trade_id) == (
            p.order.order_id, p.order.client_id, D("59500.00"), D("0.020"), NEW, 777)
        assert acc.orders[o.order_id] == o and acc.open_ids == {"BTCUSDT": (o.order_id,)}

    def test_a_new_price_through_the_book_fills_as_taker(self):
        """GTC BUY moved to 60000.20 takes the ask 60000.10 (0.400 there) as taker."""
        p = go(new_account(), lim("BUY", "0.010", "59000.00"))
        acc, o = modify(p.account, p.order.order_id, "0.010", "60000.20")
        assert (o.status, o.executed_qty) == (FILLED, D("0.010"))
        assert fills_of(acc)[-1][1:] == ("BUY", "60000.10", "0.010", "0.30000050", "0", False)

    def test_post_only_that_would_take_is_cancelled(self):
        """GTX moved through the ask: cancelled by the amendment, as Binance documents."""
        p = go(new_account(), lim("BUY", "0.010", "59000.00", tif="GTX"))
        acc, o = modify(p.account, p.order.order_id, "0.010", "60000.20")
        assert o.status == CANCELED and o.price == D("59000.00") and acc.open_ids == {}

    def test_a_quantity_not_above_what_executed_cancels(self):
        """Partially filled 0.004 of 0.010: a new quantity of 0.004 cancels the order."""
        p = go(new_account(), lim("BUY", "0.010", "59000.00"))
        part = trading._Tx(p.account, T0)
        part.fill(p.account.orders[p.order.order_id], D("59000.00"), D("0.004"), maker=True, rules=RULES)
        acc = part.commit()
        acc, o = modify(acc, p.order.order_id, "0.004", "59100.00")
        assert o.status == CANCELED and o.executed_qty == D("0.004")

    @pytest.mark.parametrize("qty, price, side, code", [
        ("0.010", "59000.00", "BUY", -5027),  # nothing to change
        ("0.010", "59000.05", "BUY", -4014),  # off the tick: refused, the order stays
        ("0.0101", "59000.00", "BUY", -1111),
        ("0.010", "59000.00", "SELL", -1130),  # the order's side is BUY
        ("1000", "59000.00", "BUY", -2019),  # no margin for it
    ])
    def test_refusals_leave_the_order_as_it_was(self, qty, price, side, code):
        """Binance's codes; the account is the same object afterwards."""
        p = go(new_account(), lim("BUY", "0.010", "59000.00"))
        with pytest.raises(RestError) as e:
            modify(p.account, p.order.order_id, qty, price, side=side)
        assert e.value.code == code

    def test_only_limit_orders_and_only_open_ones(self):
        """A MARKET order (crafted resting) -5025; a filled one -2013."""
        p = go(new_account(), mkt("BUY", "0.010"))
        with pytest.raises(RestError) as e:
            modify(p.account, p.order.order_id, "0.010", "59000.00")
        assert e.value.code == -2013
        import dataclasses
        resting = dataclasses.replace(p.order, status=NEW)
        acc = dataclasses.replace(p.account, orders={**p.account.orders, resting.order_id: resting})
        with pytest.raises(RestError) as e:
            modify(acc, resting.order_id, "0.010", "59000.00")
        assert (e.value.code, e.value.msg) == (-5025, "Only limit order is supported.")
