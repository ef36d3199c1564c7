"""A strategy's MoveStop / MoveTarget: the plan moves at once (the brain's watcher), and the
exchange-held order is cancelled, then its successor placed with the next clientAlgoId once the
cancel is confirmed; the gap is measured. Cancel withdraws a resting entry, if any."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from services.brain import trader, trader_entries, trader_exchange, trader_exits, trader_fills, trader_restart
from tests.unit.brain.test_protection import filled_long, sent_and_acked
from tests.unit.brain.test_trader import CFG, NOW, ctx, of_type
from venue import algo_orders as ao
from venue import orders as om

SIG = "AAAUSDT-1733011200000-BUY"


def armed():
    st, _, acts = filled_long()
    return sent_and_acked(st, acts)


def cancels(actions):
    return [a.effect.client_algo_id for a in of_type(actions, trader.Dispatch) if isinstance(a.effect, ao.CancelAlgo)]


class TestMoveStop:
    def test_the_plan_moves_at_once_and_the_old_stop_is_cancelled_first(self):
        """Stop 98 -> 99: the watcher uses 99 now; the exchange's ps-1 is cancelled, nothing placed yet."""
        st = armed()
        st, acts = trader.move_level(CFG, st, "AAAUSDT", "STOP", 99.0, ctx(NOW + 1_000))
        t = st.trades["AAAUSDT"]
        assert (t.stop, t.replacing, t.unprotected_from_ms) == (99.0, frozenset({"STOP"}), NOW + 1_000)
        assert cancels(acts) == [f"ps-{SIG}-1"] and of_type(acts, trader.NewAlgo) == []
        # the local watcher already exits at the moved level
        _, exit_acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 98.9, 100.0, ctx(NOW + 1_001))
        assert of_type(exit_acts, trader.NewOrder)[0].order.reduce_only

    def test_the_confirmed_cancel_places_the_successor_and_the_gap_is_measured(self):
        """Cancel confirmed at +1,030 ms: ps-2 at 99.0 placed; its ack at +1,070 ends a 70 ms gap."""
        st = armed()
        st, _ = trader.move_level(CFG, st, "AAAUSDT", "STOP", 99.0, ctx(NOW + 1_000))
        st, acts = trader_exchange.on_algo_event(CFG, st, f"ps-{SIG}-1", ao.Canceled(), ctx(NOW + 1_030))
        (new,) = [a.order for a in of_type(acts, trader.NewAlgo)]
        assert (new.client_algo_id, new.order_type, new.trigger_price, new.close_position) == (
            f"ps-{SIG}-2", "STOP_MARKET", Decimal("99.0"), True)
        t = st.trades["AAAUSDT"]
        assert (t.stop_cid, t.target_cid, t.protect_n, t.replacing) == (
            f"ps-{SIG}-2", f"pt-{SIG}-1", 2, frozenset())
        st, _ = trader_exchange.on_algo_event(CFG, st, new.client_algo_id, ao.Send(at_ms=NOW + 1_031), ctx(NOW + 1_031))
        st, _ = trader_exchange.on_algo_event(CFG, st, new.client_algo_id, ao.Ack(algo_id="7003"), ctx(NOW + 1_070))
        assert st.trades["AAAUSDT"].protected_ms == NOW + 1_070
        assert st.longest_unprotected_ms == 70  # the 40 ms of the first arming is shorter
        assert st.counters["protection_replaced:STOP"] == 1

    def test_a_stop_that_triggered_instead_of_cancelling_is_not_replaced(self):
        """The old stop fired before the cancel: the trade is exiting, no successor is placed."""
        st = armed()
        st, _ = trader.move_level(CFG, st, "AAAUSDT", "STOP", 99.0, ctx())
        st, acts = trader_exchange.on_algo_event(CFG, st, f"ps-{SIG}-1",
                                                 ao.Update(status="TRIGGERED", actual_order_id="55"), ctx())
        assert of_type(acts, trader.NewAlgo) == []
        assert f"ps-{SIG}-1" in st.orders  # tracked as the trade's exit

    def test_a_stop_already_passed_by_the_mark_is_refused(self):
        """A long's stop at or above the mark (100) would fire at once: refused, nothing sent."""
        st = armed()
        st2, acts = trader.move_level(CFG, st, "AAAUSDT", "STOP", 100.5, ctx())
        assert st2.trades["AAAUSDT"].stop == 98.0 and cancels(acts) == []
        assert st2.counters["move_refused:STOP"] == 1 and acts[0].kind == "MOVE_REFUSED"

    def test_not_a_price_is_refused(self):
        """NaN or a negative level: refused and counted."""
        st = armed()
        for bad in (float("nan"), -1.0):
            st, acts = trader.move_level(CFG, st, "AAAUSDT", "STOP", bad, ctx())
            assert cancels(acts) == []
        assert st.counters["move_refused:STOP"] == 2

    def test_before_the_exchange_holds_anything_only_the_plan_moves(self):
        """Entry sent, not filled: no order to replace; the first arming uses the moved level."""
        from tests.unit.brain.test_trader import enter, fill
        st, order, _ = enter()
        st, acts = trader.move_level(CFG, st, "AAAUSDT", "STOP", 97.0, ctx())
        assert acts == [] and st.trades["AAAUSDT"].stop == 97.0
        st, acts = trader_fills.on_fill(CFG, st, fill(order.client_order_id, "t1", "19.8", "100"), ctx())
        assert of_type(acts, trader.NewAlgo)[0].order.trigger_price == Decimal("97.0")

    def test_no_trade_no_move(self):
        """A move for a symbol without a trade is counted, nothing else."""
        st, acts = trader.move_level(CFG, trader.TraderState(), "AAAUSDT", "STOP", 97.0, ctx())
        assert acts == [] and st.counters["move_no_trade:STOP"] == 1


class TestMoveTarget:
    def test_the_target_is_replaced_and_the_stop_stays(self):
        """Target 104 -> 103: pt-1 cancelled, pt-2 at 103 after the confirmation; ps-1 untouched."""
        st = armed()
        st, acts = trader.move_level(CFG, st, "AAAUSDT", "TARGET", 103.0, ctx())
        assert cancels(acts) == [f"pt-{SIG}-1"]
        st, acts = trader_exchange.on_algo_event(CFG, st, f"pt-{SIG}-1", ao.Canceled(), ctx())
        (new,) = [a.order for a in of_type(acts, trader.NewAlgo)]
        assert (new.client_algo_id, new.order_type, new.trigger_price) == (
            f"pt-{SIG}-2", "TAKE_PROFIT_MARKET", Decimal("103.0"))
        t = st.trades["AAAUSDT"]
        assert (t.stop_cid, t.target_cid, t.target, t.protected_ms) == (f"ps-{SIG}-1", f"pt-{SIG}-2", 103.0, NOW + 40)


class TestRestoreKeepsMovedLevels:
    def test_a_restart_takes_the_levels_of_the_newest_live_protective_orders(self):
        """Plan 98/104 in the trade row, ps-2 at 99 live at the exchange: the restored stop is 99."""
        st = armed()
        st, _ = trader.move_level(CFG, st, "AAAUSDT", "STOP", 99.0, ctx())
        st, acts = trader_exchange.on_algo_event(CFG, st, f"ps-{SIG}-1", ao.Canceled(), ctx())
        st = sent_and_acked(st, acts)
        stale = replace(st.trades["AAAUSDT"], stop=98.0)
        back = trader_restart.restore(risk_state=st.risk, orders=st.orders, trades={"AAAUSDT": stale}, used_cids=st.used_cids,
                                      last_action_ms={}, algos=st.algos)
        assert (back.trades["AAAUSDT"].stop, back.trades["AAAUSDT"].stop_cid) == (99.0, f"ps-{SIG}-2")


class TestCancelIntent:
    def test_an_entry_not_yet_sent_is_withdrawn_and_the_slot_freed(self):
        """NEW_LOCAL entry: cancelled locally, the trade gone."""
        from tests.unit.brain.test_trader import signal
        st, acts = trader_entries.on_signal(CFG, trader.TraderState(), signal(), ctx())
        st, acts = trader.cancel_entry(CFG, st, "AAAUSDT", ctx())
        assert "AAAUSDT" not in st.trades and st.counters["entry_cancels"] == 1

    def test_a_resting_entry_gets_a_cancel_sent(self):
        """An acknowledged (resting) entry: a CancelOrder goes to the exchange."""
        from tests.unit.brain.test_trader import enter
        st, order, _ = enter()
        st, _ = trader_fills.on_order_event(CFG, st, order.client_order_id, om.Ack(exchange_order_id="9"), ctx())
        st, acts = trader.cancel_entry(CFG, st, "AAAUSDT", ctx())
        assert [a.effect for a in of_type(acts, trader.Dispatch)] == [om.CancelOrder(client_order_id=order.client_order_id)]

    def test_nothing_resting_nothing_done(self):
        """A filled entry is a position, not something to cancel: counted, nothing sent."""
        st = armed()
        st, acts = trader.cancel_entry(CFG, st, "AAAUSDT", ctx())
        assert acts == [] and st.counters["cancel_nothing_resting"] == 1
