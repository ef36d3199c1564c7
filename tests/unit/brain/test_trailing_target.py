"""Trailing targets (trading.trailing_callback_pct): the pure trailing rule, the exchange-held
TRAILING_STOP_MARKET that ``arm`` places in place of the TAKE_PROFIT_MARKET, the local watcher
that trails instead of exiting at the target, MoveTarget, the resize after a later entry fill,
and the restart that reads the activation price back."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from common import config, wire
from common.errors import ConfigError
from services.brain import protection as pr
from services.brain import trader, trader_exchange, trader_exits, trader_fills, trader_restart
from tests.unit.brain.test_protection import ALGO_IDS
from tests.unit.brain.test_trader import CFG, NOW, ctx, enter, fill, of_type, signal
from venue import algo_orders as ao

TRAIL = replace(CFG, trailing_callback_pct=1.0)
SIG = "AAAUSDT-1733011200000-BUY"


class TestTrailRule:
    def test_a_long_below_the_activation_price_does_not_trail(self):
        """Long, activation 104: prices up to 103.9 leave the trail inactive (extreme 0, no exit)."""
        assert pr.trail(0.0, 1, 104.0, 1.0, 95.0, 103.9) == (0.0, False)

    def test_a_long_activates_at_the_activation_price_and_follows_the_high(self):
        """Reaching 104 activates (extreme 104); a later high of 110 moves the extreme to 110."""
        assert pr.trail(0.0, 1, 104.0, 1.0, 103.0, 104.0) == (104.0, False)
        assert pr.trail(104.0, 1, 104.0, 1.0, 104.5, 110.0) == (110.0, False)

    def test_a_long_exits_on_a_retrace_of_exactly_the_callback(self):
        """Extreme 110, callback 1 %: the level is 108.9 exactly; 108.9 exits, 108.91 does not."""
        assert pr.trail_level(110.0, 1, 1.0) == Decimal("108.900")
        assert pr.trail(110.0, 1, 104.0, 1.0, 108.9, 109.5) == (110.0, True)
        assert pr.trail(110.0, 1, 104.0, 1.0, 108.91, 109.5) == (110.0, False)

    def test_a_short_mirrors_the_rule(self):
        """Short, activation 96, callback 2.5 %: 96.1 leaves it inactive; 95 activates; from the
        lowest 80 the level is 82.0: 81.99 holds, 82.0 exits."""
        assert pr.trail(0.0, -1, 96.0, 2.5, 96.1, 99.0) == (0.0, False)
        assert pr.trail(0.0, -1, 96.0, 2.5, 95.0, 97.0) == (95.0, False)
        assert pr.trail(95.0, -1, 96.0, 2.5, 80.0, 94.0) == (80.0, False)
        assert pr.trail_level(80.0, -1, 2.5) == Decimal("82.0000")
        assert pr.trail(80.0, -1, 96.0, 2.5, 81.0, 81.99) == (80.0, False)
        assert pr.trail(80.0, -1, 96.0, 2.5, 81.0, 82.0) == (80.0, True)

    def test_a_range_is_judged_against_the_extreme_known_before_it(self):
        """Extreme 110 and a range 108.0..112.0: the low may have come first, so it is judged
        against 110 (level 108.9: exit); a range 109.0..112.0 only moves the extreme to 112."""
        assert pr.trail(110.0, 1, 104.0, 1.0, 108.0, 112.0) == (110.0, True)
        assert pr.trail(110.0, 1, 104.0, 1.0, 109.0, 112.0) == (112.0, False)

    def test_a_range_that_activates_does_not_exit_in_the_same_range(self):
        """Inactive, range 100..105 with activation 104: activated at 105, no exit yet."""
        assert pr.trail(0.0, 1, 104.0, 1.0, 100.0, 105.0) == (105.0, False)

    def test_no_activation_price_never_trails(self):
        """A plan without a target (0) never activates, long or short."""
        assert pr.trail(0.0, 1, 0.0, 1.0, 1.0, 200.0) == (0.0, False)
        assert pr.trail(0.0, -1, 0.0, 1.0, 0.5, 200.0) == (0.0, False)


def filled(cfg=TRAIL, qty="19.8"):
    st, order, _ = enter()
    st, acts = trader_fills.on_fill(cfg, st, fill(order.client_order_id, "t1", qty, "100"), ctx())
    return st, order, acts


def acked(cfg, st, actions, now=NOW):
    for a in of_type(actions, trader.NewAlgo):
        cid = a.order.client_algo_id
        st, _ = trader_exchange.on_algo_event(cfg, st, cid, ao.Send(at_ms=now), ctx(now))
        st, _ = trader_exchange.on_algo_event(cfg, st, cid, ao.Ack(algo_id=ALGO_IDS[cid[:2]]), ctx(now + 40))
    return st


class TestArmTrailing:
    def test_the_target_becomes_a_trailing_stop_for_the_filled_quantity(self):
        """Stop: STOP_MARKET 98 closePosition as before; target: TRAILING_STOP_MARKET SELL 19.8,
        reduce-only (not closePosition), activation 104.0, callback 1.0 %."""
        _, _, acts = filled()
        stop, target = [a.order for a in of_type(acts, trader.NewAlgo)]
        assert (stop.order_type, stop.trigger_price, stop.close_position) == ("STOP_MARKET", Decimal("98.0"), True)
        assert (target.client_algo_id, target.order_type, target.side, target.qty, target.close_position,
                target.activation_price, target.callback_rate, target.trigger_price, target.role) == (
            f"pt-{SIG}-1", "TRAILING_STOP_MARKET", "SELL", Decimal("19.8"), False, Decimal("104.0"),
            Decimal("1.0"), Decimal(0), pr.TARGET)

    def test_off_by_default_the_target_is_a_take_profit(self):
        """trailing_callback_pct 0 (the default): TAKE_PROFIT_MARKET at 104, closePosition."""
        _, _, acts = filled(cfg=CFG)
        target = of_type(acts, trader.NewAlgo)[1].order
        assert (target.order_type, target.trigger_price, target.close_position) == (
            "TAKE_PROFIT_MARKET", Decimal("104.0"), True)

    def test_a_later_entry_fill_replaces_the_trailing_stop_for_the_whole_position(self):
        """9.9 filled, armed and acked; 9.9 more: the 9.9 trailing stop is cancelled, and on the
        confirmed cancel pt-2 goes out for 19.8 at the same activation price."""
        st, order, _ = enter()
        st, a1 = trader_fills.on_fill(TRAIL, st, fill(order.client_order_id, "t1", "9.9", "100"), ctx())
        st = acked(TRAIL, st, a1)
        st, a2 = trader_fills.on_fill(TRAIL, st, fill(order.client_order_id, "t2", "9.9", "100"), ctx())
        assert [a.effect for a in of_type(a2, trader.Dispatch)] == [ao.CancelAlgo(client_algo_id=f"pt-{SIG}-1")]
        st, a3 = trader_exchange.on_algo_event(TRAIL, st, f"pt-{SIG}-1", ao.Canceled(), ctx())
        (new,) = [a.order for a in of_type(a3, trader.NewAlgo)]
        assert (new.client_algo_id, new.qty, new.activation_price) == (f"pt-{SIG}-2", Decimal("19.8"),
                                                                       Decimal("104.0"))
        assert st.trades["AAAUSDT"].target_cid == f"pt-{SIG}-2"


class TestLocalWatcher:
    def test_the_target_starts_the_trail_and_the_retrace_exits(self):
        """High 105 at the target: no exit, extreme 105; high 110: extreme 110; low 108.9
        (1 % back): a reduce-only exit, reason TARGET."""
        st, _, acts = filled()
        st = acked(TRAIL, st, acts)
        st, a1 = trader_exits.on_prices(TRAIL, st, "AAAUSDT", 103.0, 105.0, ctx())
        assert of_type(a1, trader.NewOrder) == [] and st.trades["AAAUSDT"].trail_extreme == 105.0
        st, a2 = trader_exits.on_prices(TRAIL, st, "AAAUSDT", 104.0, 110.0, ctx())
        assert of_type(a2, trader.NewOrder) == [] and st.trades["AAAUSDT"].trail_extreme == 110.0
        st, a3 = trader_exits.on_prices(TRAIL, st, "AAAUSDT", 108.9, 109.0, ctx())
        (exit_order,) = of_type(a3, trader.NewOrder)
        assert (exit_order.order.side, exit_order.order.reduce_only, exit_order.order.qty) == (
            "SELL", True, Decimal("19.8"))
        assert st.trades["AAAUSDT"].exit_reason == trader_exits.TARGET

    def test_the_stop_still_exits_at_once(self):
        """Trailing on, low 97.9 under the stop 98: exit, reason STOP."""
        st, _, acts = filled()
        st, a = trader_exits.on_prices(TRAIL, st, "AAAUSDT", 97.9, 100.0, ctx())
        assert len(of_type(a, trader.NewOrder)) == 1 and st.trades["AAAUSDT"].exit_reason == trader_exits.STOP

    def test_a_short_trails_down(self):
        """Short from 100, stop 102, target 96: low 95 activates, low 90 moves the extreme, a
        high of 90.9 (1 % above 90) exits with a BUY."""
        sig = signal(side="SELL", stop=102.0, target=96.0)
        st, order, _ = enter(sig=sig)
        st, _ = trader_fills.on_fill(TRAIL, st, fill(order.client_order_id, "t1", "19.8", "100", side="SELL"), ctx())
        st, a1 = trader_exits.on_prices(TRAIL, st, "AAAUSDT", 95.0, 97.0, ctx())
        st, a2 = trader_exits.on_prices(TRAIL, st, "AAAUSDT", 90.0, 94.0, ctx())
        assert of_type(a1 + a2, trader.NewOrder) == [] and st.trades["AAAUSDT"].trail_extreme == 90.0
        st, a3 = trader_exits.on_prices(TRAIL, st, "AAAUSDT", 90.5, 90.9, ctx())
        (exit_order,) = of_type(a3, trader.NewOrder)
        assert exit_order.order.side == "BUY"


class TestMoveTarget:
    def test_before_activation_the_activation_price_moves_by_cancel_and_replace(self):
        """MoveTarget 106 before the trail is active: pt-1 cancelled, pt-2 trailing at 106."""
        st, _, acts = filled()
        st = acked(TRAIL, st, acts)
        st, a1 = trader.move_level(TRAIL, st, "AAAUSDT", "TARGET", 106.0, ctx())
        assert [a.effect for a in of_type(a1, trader.Dispatch)] == [ao.CancelAlgo(client_algo_id=f"pt-{SIG}-1")]
        st, a2 = trader_exchange.on_algo_event(TRAIL, st, f"pt-{SIG}-1", ao.Canceled(), ctx())
        (new,) = [a.order for a in of_type(a2, trader.NewAlgo)]
        assert (new.client_algo_id, new.order_type, new.activation_price, new.qty) == (
            f"pt-{SIG}-2", "TRAILING_STOP_MARKET", Decimal("106.0"), Decimal("19.8"))

    def test_once_the_trail_is_active_a_move_is_refused_with_the_reason(self):
        """The trail is active (extreme 105): MoveTarget 108 is refused, nothing cancelled."""
        st, _, acts = filled()
        st = acked(TRAIL, st, acts)
        st, _ = trader_exits.on_prices(TRAIL, st, "AAAUSDT", 103.0, 105.0, ctx(price=104.0))
        st, a = trader.move_level(TRAIL, st, "AAAUSDT", "TARGET", 108.0, ctx(price=104.0))
        assert st.counters["move_refused:TARGET"] == 1 and of_type(a, trader.Dispatch) == []
        assert "trailing stop is active" in a[0].detail and st.trades["AAAUSDT"].target == 104.0


class TestRestart:
    def test_restore_reads_the_target_back_from_the_activation_price(self):
        """After a restart the plan's target is the newest trailing stop's activation (106)."""
        st, _, acts = filled()
        st = acked(TRAIL, st, acts)
        st, _ = trader.move_level(TRAIL, st, "AAAUSDT", "TARGET", 106.0, ctx())
        st, _ = trader_exchange.on_algo_event(TRAIL, st, f"pt-{SIG}-1", ao.Canceled(), ctx())
        t = replace(st.trades["AAAUSDT"], target=104.0, stop_cid="", target_cid="", algo_cids=frozenset())
        back = trader_restart.restore(risk_state=st.risk, orders=st.orders, trades={"AAAUSDT": t}, used_cids=st.used_cids,
                                      last_action_ms={}, algos=st.algos)
        assert (back.trades["AAAUSDT"].target, back.trades["AAAUSDT"].target_cid) == (106.0, f"pt-{SIG}-2")


class TestConfig:
    @pytest.mark.parametrize("value", ["0.05", "10.1", "-1", "0.15", "nan"])
    def test_a_callback_outside_binances_range_is_refused(self, value):
        """0 is off; anything else must be 0.1..10 in steps of 0.1 (Binance's callbackRate)."""
        with pytest.raises(ConfigError):
            config.load(None, {"AEGIS_TRADING__TRAILING_CALLBACK_PCT": value})

    @pytest.mark.parametrize("value,expected", [("0", 0.0), ("0.1", 0.1), ("2.5", 2.5), ("10", 10.0)])
    def test_valid_callbacks_load(self, value, expected):
        """0 (off, the default), 0.1, 2.5 and 10 load as given."""
        assert config.load(None, {"AEGIS_TRADING__TRAILING_CALLBACK_PCT": value}).trading.trailing_callback_pct == expected

    def test_the_brain_gets_the_option(self):
        """config.trader_config carries trading.trailing_callback_pct to the trader."""
        from services.brain.config import trader_config
        cfg = config.load(None, {"AEGIS_TRADING__TRAILING_CALLBACK_PCT": "1.5"})
        assert trader_config(cfg).trailing_callback_pct == 1.5


class TestJournalRoundTrip:
    def test_the_journal_keeps_the_activation_price_and_recovery_reads_it_back(self, tmp_path):
        """The published update carries the activation (104.0) as the level; the orchestrator's
        row, read by the brain's recovery, is a TRAILING_STOP_MARKET with activation 104.0 and
        no trigger: ``level_of`` (what ``restore`` reads the target from) is 104.0 again."""
        from common import journal_store
        from venue.algo_orders import AlgoState
        from services.brain import recovery
        from services.orchestrator import db
        _, _, acts = filled()
        target = of_type(acts, trader.NewAlgo)[1].order
        body = pr.to_wire(target)
        assert (body.order_type, body.trigger_price, body.role) == ("TRAILING_STOP_MARKET", "104.0", "TARGET")
        conn = db.connect(tmp_path / "aegis.sqlite3")
        db.write_batch(conn, db.rows_for(wire.Envelope(wire.SCHEMA_VERSION, "brain:1", 1, 123, 124, body)))
        conn.close()
        with journal_store.read_only(tmp_path / "aegis.sqlite3") as journal:
            (row,) = journal.algo_orders_in_states([s.value for s in AlgoState])
        back = recovery._algo(row)
        assert (back.order_type, back.trigger_price, back.activation_price, back.role, back.close_position) == (
            "TRAILING_STOP_MARKET", Decimal(0), Decimal("104.0"), "TARGET", False)
        assert pr.level_of(back) == Decimal("104.0")
