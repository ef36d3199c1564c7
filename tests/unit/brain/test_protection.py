"""Exchange-held protection in the trader: armed at the first fill, cancelled when flat, a
triggered stop closes the trade, a position closed behind our back frees its slot at once."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from common import wire
from services.brain import protection as pr
from services.brain import trader, trader_entries, trader_exchange, trader_exits, trader_fills, trader_restart, trader_views
from tests.unit.brain.test_trader import CFG, NOW, ctx, enter, fill, of_type, signal
from venue import algo_orders as ao
from venue import orders as om
from venue.port import ExchangeFill

ALGO_IDS = {"ps": "7001", "pt": "7002"}


def filled_long(qty="19.8", price="100"):
    """A long AAAUSDT entry, sent and filled: (state, entry order, actions of the fill)."""
    st, order, _ = enter()
    st, acts = trader_fills.on_fill(CFG, st, fill(order.client_order_id, "t1", qty, price), ctx())
    return st, order, acts


def sent_and_acked(st, actions, now=NOW):
    """The shell's part for every NewAlgo: journaled, sent, and the exchange's NEW."""
    for a in of_type(actions, trader.NewAlgo):
        cid = a.order.client_algo_id
        st, _ = trader_exchange.on_algo_event(CFG, st, cid, ao.Send(at_ms=now), ctx(now))
        st, _ = trader_exchange.on_algo_event(CFG, st, cid, ao.Ack(algo_id=ALGO_IDS[cid[:2]]), ctx(now + 40))
    return st


class TestArm:
    def test_first_entry_fill_places_a_stop_and_a_target_at_the_plan(self):
        """STOP_MARKET at 98 and TAKE_PROFIT_MARKET at 104, closePosition, on the mark, sell side."""
        st, order, acts = filled_long()
        stop, target = [a.order for a in of_type(acts, trader.NewAlgo)]
        sig_id = "AAAUSDT-1733011200000-BUY"
        assert (stop.client_algo_id, stop.order_type, stop.trigger_price, stop.side) == (
            f"ps-{sig_id}-1", "STOP_MARKET", Decimal("98.0"), "SELL")
        assert (target.client_algo_id, target.order_type, target.trigger_price) == (
            f"pt-{sig_id}-1", "TAKE_PROFIT_MARKET", Decimal("104.0"))
        assert stop.close_position and stop.working_type == "MARK_PRICE" and stop.price_protect
        t = st.trades["AAAUSDT"]
        assert (t.stop_cid, t.target_cid, t.protect_n) == (stop.client_algo_id, target.client_algo_id, 1)
        assert st.algos[stop.client_algo_id].state == ao.A.NEW_LOCAL

    def test_a_second_fill_of_the_entry_places_nothing_more(self):
        st, order, _ = enter()
        st, a1 = trader_fills.on_fill(CFG, st, fill(order.client_order_id, "t1", "9.9", "100"), ctx())
        st, a2 = trader_fills.on_fill(CFG, st, fill(order.client_order_id, "t2", "9.9", "100"), ctx())
        assert len(of_type(a1, trader.NewAlgo)) == 2 and of_type(a2, trader.NewAlgo) == []

    def test_trigger_prices_are_rounded_onto_the_tick_grid(self):
        st, order, _ = enter(sig=signal(stop=97.96, target=104.04))
        st, acts = trader_fills.on_fill(CFG, st, fill(order.client_order_id, "t1", "19.8", "100"), ctx())
        assert [a.order.trigger_price for a in of_type(acts, trader.NewAlgo)] == [Decimal("98.0"), Decimal("104.0")]

    def test_without_exchange_protection_nothing_is_placed(self):
        cfg = replace(CFG, exchange_protection=False)
        st, order, _ = enter()
        st, acts = trader_fills.on_fill(cfg, st, fill(order.client_order_id, "t1", "19.8", "100"), ctx())
        assert of_type(acts, trader.NewAlgo) == []

    def test_the_wait_for_the_exchanges_stop_is_measured(self):
        """longest_unprotected_ms: first fill at NOW, the exchange confirms the stop 40 ms later."""
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        assert st.trades["AAAUSDT"].protected_ms == NOW + 40
        assert st.longest_unprotected_ms == 40

    def test_a_refused_stop_makes_the_local_layer_exit_now(self):
        """-2021 (the price is already past the stop): nothing holds the position, exit at once."""
        st, _, acts = filled_long()
        stop = of_type(acts, trader.NewAlgo)[0].order
        st, _ = trader_exchange.on_algo_event(CFG, st, stop.client_algo_id, ao.Send(at_ms=NOW), ctx())
        st, acts = trader_exchange.on_algo_event(CFG, st, stop.client_algo_id, ao.Reject(attempt=1, code=-2021), ctx())
        (exit_order,) = of_type(acts, trader.NewOrder)
        assert exit_order.order.reduce_only and exit_order.order.side == "SELL"
        assert st.trades["AAAUSDT"].exit_reason == pr.STOP


class TestTriggered:
    def test_a_triggered_stop_closes_the_trade_through_its_fills(self):
        """TRIGGERED with the actual order id; the fills carry the clientAlgoId; flat -> closed,
        reason STOP, learned; the target is cancelled."""
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        t = st.trades["AAAUSDT"]
        st, acts = trader_exchange.on_algo_event(CFG, st, t.stop_cid, ao.Update(status="TRIGGERED", algo_id="7001",
                                                                        actual_order_id="88937381063"), ctx())
        cancels = [a.effect for a in of_type(acts, trader.Dispatch)]
        assert cancels == [ao.CancelAlgo(client_algo_id=t.target_cid)]
        assert st.trades["AAAUSDT"].exit_reason == pr.STOP
        f = ExchangeFill(trade_id="t9", client_order_id=t.stop_cid, exchange_order_id="88937381063",
                         symbol="AAAUSDT", side="SELL", qty=Decimal("19.8"), price=Decimal("97.9"))
        st, acts = trader_fills.on_fill(CFG, st, f, ctx())
        (closed,) = [a.body for a in of_type(acts, trader.Publish) if isinstance(a.body, wire.TradeClosed)]
        assert (closed.exit_reason, closed.exit_price, closed.learned) == ("STOP", 97.9, True)
        assert "AAAUSDT" not in st.trades
        assert len(of_type(acts, trader.Learn)) == 1

    def test_fills_of_a_stop_that_arrive_before_its_update_are_not_lost(self):
        """The trade fill comes first: the triggered order is tracked on the spot."""
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        t = st.trades["AAAUSDT"]
        f = ExchangeFill(trade_id="t9", client_order_id=t.stop_cid, exchange_order_id="88937381063",
                         symbol="AAAUSDT", side="SELL", qty=Decimal("19.8"), price=Decimal("97.9"))
        st, acts = trader_fills.on_fill(CFG, st, f, ctx())
        assert "AAAUSDT" not in st.trades
        assert st.counters["trades_closed"] == 1 and "unknown_order_events" not in st.counters

    def test_a_local_exit_cancels_both_protective_orders(self):
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        t = st.trades["AAAUSDT"]
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 97.5, 100.0, ctx())
        (new,) = of_type(acts, trader.NewOrder)
        st, _ = trader_fills.on_order_event(CFG, st, new.order.client_order_id, om.Send(at_ms=NOW), ctx())
        st, acts = trader_fills.on_fill(CFG, st, fill(new.order.client_order_id, "t2", "19.8", "97.5", side="SELL"), ctx())
        cancels = sorted(a.effect.client_algo_id for a in of_type(acts, trader.Dispatch)
                         if isinstance(a.effect, ao.CancelAlgo))
        assert cancels == sorted([t.stop_cid, t.target_cid])
        # until the exchange confirms the cancels, no new entry on the symbol
        st2, acts2 = trader_entries.on_signal(CFG, st, signal(t=NOW + 120_000), ctx(NOW + 120_000))
        assert of_type(acts2, trader.NewOrder) == [] and st2.counters["skipped:PROTECTION_PENDING"] == 1
        for cid in cancels:
            st, _ = trader_exchange.on_algo_event(CFG, st, cid, ao.Canceled(), ctx())
        assert st.algos == {}
        st3, acts3 = trader_entries.on_signal(CFG, st, signal(t=NOW + 120_000), ctx(NOW + 120_000))
        assert len(of_type(acts3, trader.NewOrder)) == 1


class TestClosedBehindOurBack:
    def test_flat_at_the_exchange_frees_the_slot_at_once_and_fetches_the_fills(self):
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        st, acts = trader_exchange.on_exchange_position(CFG, st, "AAAUSDT", Decimal(0), ctx(NOW + 5_000))
        t = st.trades["AAAUSDT"]
        assert t.flat_at_exchange_ms == NOW + 5_000 and t.exit_reason == pr.EXTERNAL
        assert trader_views.held_positions(st, ctx()) == []
        assert trader_views.portfolio(st, ctx()).positions == ()
        fetch = [a.effect for a in of_type(acts, trader.Dispatch) if isinstance(a.effect, trader.FetchSymbolFills)]
        assert fetch == [trader.FetchSymbolFills(symbol="AAAUSDT", since_ms=NOW)]
        # no local exit for a position that is gone, however far the price moves
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 50.0, 150.0, ctx())
        assert acts == []

    def test_the_fetched_manual_close_becomes_the_exit(self):
        st, _, acts = filled_long()
        st, _ = trader_exchange.on_exchange_position(CFG, st, "AAAUSDT", Decimal(0), ctx(NOW + 5_000))
        manual = ExchangeFill(trade_id="t5", client_order_id="", exchange_order_id="555", symbol="AAAUSDT",
                              side="SELL", qty=Decimal("19.8"), price=Decimal("101"), time_ms=NOW + 4_000)
        st, acts = trader_exchange.on_symbol_fills(CFG, st, "AAAUSDT", [manual], ctx(NOW + 5_100))
        (closed,) = [a.body for a in of_type(acts, trader.Publish) if isinstance(a.body, wire.TradeClosed)]
        assert (closed.exit_reason, closed.exit_price, closed.pnl) == ("EXTERNAL", 101.0, 19.8)
        assert "AAAUSDT" not in st.trades

    def test_without_closing_fills_the_trade_closes_at_the_mark_and_is_not_learned(self):
        st, _, _ = filled_long()
        st, _ = trader_exchange.on_exchange_position(CFG, st, "AAAUSDT", Decimal(0), ctx(NOW + 5_000))
        st, acts = trader.on_timer(CFG, st, ctx(NOW + 5_000 + CFG.external_close_wait_ms, price=99.0))
        (closed,) = [a.body for a in of_type(acts, trader.Publish) if isinstance(a.body, wire.TradeClosed)]
        assert (closed.exit_reason, closed.exit_price, closed.learned) == ("EXTERNAL_UNRESOLVED", 99.0, False)
        assert of_type(acts, trader.Learn) == []

    def test_a_reduce_only_refusal_asks_for_the_position_instead_of_retrying(self):
        """-2022 on an exit: one CheckPosition, and no retry until long after."""
        st, _, _ = filled_long()
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 97.5, 100.0, ctx())
        (new,) = of_type(acts, trader.NewOrder)
        cid = new.order.client_order_id
        st, _ = trader_fills.on_order_event(CFG, st, cid, om.Send(at_ms=NOW), ctx())
        st, acts = trader_fills.on_order_event(CFG, st, cid, om.Reject(attempt=1, code=-2022), ctx())
        assert [a.effect for a in of_type(acts, trader.Dispatch)] == [trader.CheckPosition(symbol="AAAUSDT")]
        st, acts = trader.on_timer(CFG, st, ctx(NOW + CFG.exit_retry_ms))
        assert of_type(acts, trader.NewOrder) == []
        st, acts = trader_exchange.on_exchange_position(CFG, st, "AAAUSDT", Decimal(0), ctx(NOW + 3_000))
        assert st.trades["AAAUSDT"].flat_at_exchange_ms == NOW + 3_000


class TestRestart:
    def test_restored_trades_get_their_protection_back_and_every_live_algo_is_queried(self):
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        t = st.trades["AAAUSDT"]
        bare = replace(t, stop_cid="", target_cid="", algo_cids=frozenset(), protect_n=0)
        st2 = trader_restart.restore(risk_state=st.risk, orders=st.orders, trades={"AAAUSDT": bare}, used_cids=st.used_cids,
                                     last_action_ms={}, algos=st.algos)
        t2 = st2.trades["AAAUSDT"]
        assert (t2.stop_cid, t2.target_cid, t2.protect_n) == (t.stop_cid, t.target_cid, 1)
        st2, acts = trader_restart.recovery_actions(st2, NOW + 60_000)
        queried = sorted(a.effect.client_algo_id for a in of_type(acts, trader.Dispatch)
                         if isinstance(a.effect, ao.QueryAlgo))
        assert queried == sorted([t.stop_cid, t.target_cid])

    def test_a_position_without_a_stop_is_armed(self):
        st, _, _ = filled_long()
        t = st.trades["AAAUSDT"]
        st = replace(st, trades={"AAAUSDT": replace(t, stop_cid="", target_cid="")}, algos={})
        st, acts = trader_restart.protect_unprotected(CFG, st, ctx())
        assert [a.order.client_algo_id for a in of_type(acts, trader.NewAlgo)] == [
            "ps-AAAUSDT-1733011200000-BUY-2", "pt-AAAUSDT-1733011200000-BUY-2"]


class TestAudit:
    @staticmethod
    def listed(o: ao.AlgoOrder, algo_id: str = "7001"):
        from venue.port import ExchangeAlgoOrder
        return ExchangeAlgoOrder(client_algo_id=o.client_algo_id, algo_id=algo_id, symbol=o.symbol, side=o.side,
                                 order_type=o.order_type, status="NEW", trigger_price=o.trigger_price,
                                 close_position=True)

    def test_a_live_stop_the_exchange_no_longer_lists_is_asked_about_and_rearmed_when_gone(self):
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        t = st.trades["AAAUSDT"]
        target = st.algos[t.target_cid]
        st, acts = trader_exchange.on_open_algos(CFG, st, [self.listed(target, "7002")], ctx())
        assert [a.effect for a in of_type(acts, trader.Dispatch)] == [ao.QueryAlgo(client_algo_id=t.stop_cid,
                                                                                    not_before_ms=0)]
        st, acts = trader_exchange.on_algo_event(CFG, st, t.stop_cid, ao.QueryResult(at_ms=NOW + 1, found=False), ctx())
        new = [a.order.client_algo_id for a in of_type(acts, trader.NewAlgo)]
        assert new == ["ps-AAAUSDT-1733011200000-BUY-2", "pt-AAAUSDT-1733011200000-BUY-2"]
        assert st.counters["protections_rearmed"] == 1

    def test_a_stray_protective_order_of_ours_is_cancelled(self):
        """A ps- order left at the exchange by a crash after its trade closed: cancelled, so it
        can never close the next position on the symbol."""
        stray = ao.new_algo_order(client_algo_id="ps-OLD-1", symbol="AAAUSDT", side="SELL",
                                  order_type="STOP_MARKET", trigger_price=Decimal("90"))
        st, acts = trader_exchange.on_open_algos(CFG, trader.TraderState(), [self.listed(stray, "6000")], ctx())
        assert [a.effect for a in of_type(acts, trader.Dispatch)] == [ao.CancelAlgo(client_algo_id="ps-OLD-1")]
        assert st.algos["ps-OLD-1"].state == ao.A.CANCEL_PENDING
        assert pr.blocking_algos(st, "AAAUSDT") == ["ps-OLD-1"]  # no entry until it is gone

    def test_someone_elses_conditional_order_is_left_alone(self):
        other = ao.new_algo_order(client_algo_id="manual-123", symbol="AAAUSDT", side="SELL",
                                  order_type="STOP_MARKET", trigger_price=Decimal("90"))
        st, acts = trader_exchange.on_open_algos(CFG, trader.TraderState(), [self.listed(other, "6001")], ctx())
        assert acts == [] and st.algos == {}


class TestExpired:
    def test_an_expired_stop_asks_for_the_position_instead_of_rearming(self):
        """Binance expires a closePosition stop when the position is gone: a position check,
        not a new stop that would be refused (-4509)."""
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        t = st.trades["AAAUSDT"]
        st, acts = trader_exchange.on_algo_event(CFG, st, t.stop_cid, ao.Update(status="EXPIRED", algo_id="7001"), ctx())
        assert of_type(acts, trader.NewAlgo) == []
        assert [a.effect for a in of_type(acts, trader.Dispatch)] == [trader.CheckPosition(symbol="AAAUSDT")]
        # and the audit does not arm one either while it is unknown whether a position is left
        st, acts = trader_exchange.on_open_algos(CFG, st, [], ctx())
        assert of_type(acts, trader.NewAlgo) == []
