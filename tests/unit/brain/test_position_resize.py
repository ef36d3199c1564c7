"""A trade held at another size than the exchange's (``trader_resize``): the pure comparison,
and what the trader does with it. Less at the exchange: the trade follows, the part that
left closed at the prices of the exchange's fills (or at the mark when they never come); more
at the exchange: kept at the trade's size, said once, the closePosition stop covering all."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from common import wire
from services.brain import trader, trader_entries, trader_exchange, trader_exits, trader_fills, trader_resize
from services.brain.trader_resize import LARGER, OPPOSITE, SAME, SMALLER, Size, compare
from tests.unit.brain.test_protection import filled_long, sent_and_acked
from tests.unit.brain.test_trader import CFG, NOW, bodies, ctx, fill, of_type, signal
from venue import algo_orders as ao
from venue import orders as om
from venue.port import ExchangeFill

D = Decimal
SYM = "AAAUSDT"


def liquidation(qty: str, price: str, tid: str = "L1", eid: str = "555", at: int = NOW + 4_000) -> ExchangeFill:
    """A closing fill of an order we never sent (a partial liquidation: Binance's ``autoclose-``)."""
    return ExchangeFill(trade_id=tid, client_order_id="", exchange_order_id=eid, symbol=SYM, side="SELL",
                        qty=D(qty), price=D(price), time_ms=at)


def protected_long():
    """A long 19.8 @ 100 (stop 98, target 104), its stop and target acknowledged by the exchange."""
    st, _, acts = filled_long()
    return sent_and_acked(st, acts)


def smaller(st, held: str = "10", now: int = NOW + 5_000):
    """The user stream's ACCOUNT_UPDATE: the exchange holds ``held`` of the long."""
    return trader_exchange.on_exchange_position(CFG, st, SYM, D(held), ctx(now))


class TestCompare:
    def test_each_kind_with_exact_values(self):
        """Long 19.8 against +10, +25, -5, +19.8; short 3 against -1 and +1."""
        assert compare("BUY", D("19.8"), D("10")) == Size(kind=SMALLER, trade_qty=D("19.8"), exchange_qty=D("10"),
                                                          gone=D("9.8"))
        assert compare("BUY", D("19.8"), D("25")).kind == LARGER
        assert compare("BUY", D("19.8"), D("-5")).kind == OPPOSITE
        assert compare("BUY", D("19.8"), D("19.8")).kind == SAME
        assert compare("SELL", D("3"), D("-1")) == Size(kind=SMALLER, trade_qty=D("3"), exchange_qty=D("-1"), gone=D("2"))
        assert compare("SELL", D("3"), D("1")).kind == OPPOSITE

    def test_shrink_is_a_partial_exit_at_the_price(self):
        """9.8 of 19.8 closed at 95: exit 9.8, exit notional 931.0 exactly, position 10."""
        st = protected_long()
        t = trader_resize.shrink(st.trades[SYM], D("9.8"), D("95"))
        assert (t.exit_qty, t.exit_notional, t.position) == (D("9.8"), D("931.0"), D("10.0"))


class TestSmallerAtTheExchange:
    def test_a_smaller_position_asks_for_the_fills_once(self):
        """The exchange holds 10 of 19.8: nothing resized on a guess, the symbol's fills fetched,
        counted; the same news again asks nothing more."""
        st, acts = smaller(protected_long())
        t = st.trades[SYM]
        assert (t.position, t.smaller_at_exchange, t.smaller_since_ms) == (D("19.8"), D("10"), NOW + 5_000)
        assert [a.effect for a in of_type(acts, trader.Dispatch)] == [
            trader.FetchSymbolFills(symbol=SYM, since_ms=t.first_fill_ms)]
        assert st.counters["position_smaller_at_exchange"] == 1
        st2, acts2 = smaller(st, now=NOW + 6_000)
        assert acts2 == [] and st2 == st

    def test_the_fetched_partial_liquidation_becomes_a_partial_exit_at_its_price(self):
        """The liquidation's fill (9.8 @ 95) is the part that left: the trade holds 10, its exit
        9.8 @ 95 is journaled as a fill and the position as 10, one POSITION_RESIZED; the exit
        the lane would send is a reduce-only 10; the same fills again change nothing."""
        st, _ = smaller(protected_long())
        st, acts = trader_exchange.on_symbol_fills(CFG, st, SYM, [liquidation("9.8", "95")], ctx(NOW + 5_100))
        t = st.trades[SYM]
        assert (t.position, t.exit_qty, t.exit_notional, t.smaller_at_exchange) == (D("10.0"), D("9.8"), D("931.0"), 0)
        assert [(p.kind, p.detail) for p in of_type(acts, trader.Problem)] == [
            ("POSITION_RESIZED", "AAAUSDT: 19.8 -> 10.0, 9.8 closed at 95 by the exchange's fills")]
        assert [(f.client_order_id, f.qty, f.price) for f in bodies(acts, wire.Fill)] == [("x.555", 9.8, 95.0)]
        assert [p.qty for p in bodies(acts, wire.Position)][-1] == 10.0
        assert st.orders["x.555"].state == om.S.FILLED  # nothing of it stays live
        assert st.counters["position_resized"] == 1
        lane = trader_exits.planned_exit(CFG, st, SYM, ctx(NOW + 5_200)).order
        assert (lane.qty, lane.side, lane.reduce_only) == (D("10.0"), "SELL", True)
        again, acts2 = trader_exchange.on_symbol_fills(CFG, st, SYM, [liquidation("9.8", "95")], ctx(NOW + 5_300))
        assert again.trades[SYM] == t and of_type(acts2, trader.Problem) == []

    def test_the_trade_closes_later_with_both_parts_in_its_pnl(self):
        """After the resize the target exit sells the 10 left at 104: PnL = 9.8 x (95 - 100) +
        10 x (104 - 100) = -9.0, the exit price the average of both parts, learned."""
        st, _ = smaller(protected_long())
        st, _ = trader_exchange.on_symbol_fills(CFG, st, SYM, [liquidation("9.8", "95")], ctx(NOW + 5_100))
        st, acts = trader_exits.on_prices(CFG, st, SYM, 101.0, 104.0, ctx(NOW + 6_000, price=104.0))
        (exit_order,) = [a.order for a in of_type(acts, trader.NewOrder)]
        assert exit_order.qty == D("10.0")
        st, _ = trader_fills.on_order_event(CFG, st, exit_order.client_order_id, om.Send(at_ms=NOW + 6_000),
                                            ctx(NOW + 6_000))
        st, acts = trader_fills.on_fill(CFG, st, fill(exit_order.client_order_id, "t9", "10", "104", side="SELL"),
                                        ctx(NOW + 6_100))
        (closed,) = bodies(acts, wire.TradeClosed)
        assert (closed.qty, closed.pnl, closed.learned) == (19.8, -9.0, True)
        assert closed.exit_price == float((D("931.0") + D("1040")) / D("19.8"))
        assert SYM not in st.trades

    def test_fills_that_close_more_than_the_part_that_left_count_only_that_part(self):
        """A closing fill of 12 where 9.8 left (the rest closed something that was not the trade's):
        9.8 of it at its price, never more than the exchange took from the trade."""
        st, _ = smaller(protected_long())
        st, _ = trader_exchange.on_symbol_fills(CFG, st, SYM, [liquidation("12", "95")], ctx(NOW + 5_100))
        assert (st.trades[SYM].position, st.trades[SYM].exit_qty) == (D("10.0"), D("9.8"))

    def test_without_fills_the_part_is_closed_at_the_mark_and_not_learned(self):
        """No closing fills within external_close_wait_ms: the 9.8 close at the mark (99), said
        and counted; the trade is not learned from when it closes."""
        st, _ = smaller(protected_long())
        st, acts = trader.on_timer(CFG, st, ctx(NOW + 5_000 + CFG.external_close_wait_ms - 1, price=99.0))
        assert st.trades[SYM].position == D("19.8") and acts == []
        st, acts = trader.on_timer(CFG, st, ctx(NOW + 5_000 + CFG.external_close_wait_ms, price=99.0))
        t = st.trades[SYM]
        assert (t.position, t.exit_notional, t.priced_at_mark, t.smaller_at_exchange) == (
            D("10.0"), D("970.2"), True, 0)
        assert [p.kind for p in of_type(acts, trader.Problem)] == ["POSITION_RESIZED"]
        assert (st.counters["position_resized"], st.counters["position_resized_at_mark"]) == (1, 1)
        st, acts = trader_exchange.on_exchange_position(CFG, st, SYM, D(0), ctx(NOW + 20_000))
        st, acts = trader_exchange.on_symbol_fills(CFG, st, SYM, [liquidation("10", "99", tid="L2", eid="556")],
                                                   ctx(NOW + 20_100))
        (closed,) = bodies(acts, wire.TradeClosed)
        assert (closed.learned, of_type(acts, trader.Learn)) == (False, [])

    def test_our_own_exit_in_flight_is_never_taken_for_a_close_behind_our_back(self):
        """Our exit is live (its fills may be what the exchange shows): nothing is compared."""
        st = protected_long()
        st, acts = trader_exits.on_prices(CFG, st, SYM, 97.0, 100.0, ctx(NOW + 4_000))
        assert of_type(acts, trader.NewOrder)
        before = st
        st, acts = smaller(st)
        assert acts == [] and st == before

    def test_a_read_sent_before_our_last_fill_proves_nothing(self):
        """A REST read sent before a fill of ours moved the trade: not compared."""
        st = protected_long()
        t = st.trades[SYM]
        st2, acts = trader_exchange.on_exchange_position(CFG, st, SYM, D("10"), ctx(NOW + 5_000), read_ms=t.moved_ms)
        assert acts == [] and st2 == st
        st3, acts = trader_exchange.on_exchange_position(CFG, st, SYM, D("10"), ctx(NOW + 5_000),
                                                         read_ms=t.moved_ms + 1)
        assert st3.trades[SYM].smaller_at_exchange == D("10")

    def test_the_exchange_agreeing_again_forgets_the_wait(self):
        """The exchange holds the trade's size again before any fill came: nothing is resized."""
        st, _ = smaller(protected_long())
        st, acts = trader_exchange.on_exchange_position(CFG, st, SYM, D("19.8"), ctx(NOW + 6_000))
        assert acts == [] and st.trades[SYM].smaller_at_exchange == 0
        st, acts = trader.on_timer(CFG, st, ctx(NOW + 60_000))
        assert st.trades[SYM].position == D("19.8") and acts == []


class TestLargerAtTheExchange:
    def test_kept_at_the_trades_size_said_once_and_covered_by_the_closeposition_stop(self):
        """The exchange holds 25 of a 19.8 long: one POSITION_LARGER_AT_EXCHANGE, counted, no
        order; the trade's exit stays a reduce-only 19.8; the exchange-held stop is closePosition
        (no quantity: it closes the whole position, the added 5.2 too)."""
        st = protected_long()
        st, acts = trader_exchange.on_exchange_position(CFG, st, SYM, D("25"), ctx(NOW + 5_000))
        t = st.trades[SYM]
        assert [p.kind for p in of_type(acts, trader.Problem)] == ["POSITION_LARGER_AT_EXCHANGE"]
        assert (of_type(acts, trader.NewOrder), of_type(acts, trader.Dispatch)) == ([], [])
        assert (t.position, st.counters["position_larger_at_exchange"]) == (D("19.8"), 1)
        stop = st.algos[t.stop_cid]
        assert (stop.order_type, stop.close_position, stop.qty) == ("STOP_MARKET", True, D(0))
        lane = trader_exits.planned_exit(CFG, st, SYM, ctx(NOW + 5_100)).order
        assert (lane.qty, lane.reduce_only) == (D("19.8"), True)
        st2, acts = trader_exchange.on_exchange_position(CFG, st, SYM, D("25"), ctx(NOW + 6_000))
        assert acts == [] and st2 == st
        st3, acts = trader_exchange.on_exchange_position(CFG, st, SYM, D("30"), ctx(NOW + 7_000))
        assert [p.kind for p in of_type(acts, trader.Problem)] == ["POSITION_LARGER_AT_EXCHANGE"]

    def test_a_manual_close_of_everything_counts_only_the_trades_part(self):
        """The whole 25 is closed by hand at 103: the trade's exit is its own 19.8 at 103, with
        its share of the fee."""
        st = protected_long()
        st, _ = trader_exchange.on_exchange_position(CFG, st, SYM, D("25"), ctx(NOW + 5_000))
        st, _ = trader_exchange.on_exchange_position(CFG, st, SYM, D(0), ctx(NOW + 6_000))
        whole = replace(liquidation("25", "103"), fee=D("0.5"))
        st, acts = trader_exchange.on_symbol_fills(CFG, st, SYM, [whole], ctx(NOW + 6_100))
        (closed,) = bodies(acts, wire.TradeClosed)
        assert (closed.qty, closed.exit_price, closed.pnl) == (19.8, 103.0, float(D("19.8") * 3))
        assert closed.fees == float(D("0.01") + D("0.396"))  # its share (19.8 / 25) of the fill's fee


def test_a_trailing_target_follows_the_smaller_size():
    """With a trailing target (a quantity, not closePosition) the resize replaces it: its
    cancel goes out, the successor is placed for the new size once the cancel is confirmed."""
    cfg = replace(CFG, trailing_callback_pct=1.0)
    st = filled_trailing(cfg)
    assert st.algos[st.trades[SYM].target_cid].qty == D("19.8")
    st, _ = trader_exchange.on_exchange_position(cfg, st, SYM, D("10"), ctx(NOW + 5_000))
    st, acts = trader_exchange.on_symbol_fills(cfg, st, SYM, [liquidation("9.8", "95")], ctx(NOW + 5_100))
    t = st.trades[SYM]
    cancels = [a.effect for a in of_type(acts, trader.Dispatch) if type(a.effect).__name__ == "CancelAlgo"]
    assert [c.client_algo_id for c in cancels] == [t.target_cid] and "TARGET" in t.replacing


def filled_trailing(cfg):
    """A long 19.8 @ 100 whose target is a trailing stop, both protective orders acknowledged."""
    st, acts = trader_entries.on_signal(cfg, trader.TraderState(), signal(), ctx())
    (new,) = of_type(acts, trader.NewOrder)
    st, _ = trader_fills.on_order_event(cfg, st, new.order.client_order_id, om.Send(at_ms=NOW), ctx())
    st, acts = trader_fills.on_fill(cfg, st, fill(new.order.client_order_id, "t1", "19.8", "100"), ctx())
    for a in of_type(acts, trader.NewAlgo):
        cid = a.order.client_algo_id
        st, _ = trader_exchange.on_algo_event(cfg, st, cid, ao.Send(at_ms=NOW), ctx(NOW))
        st, _ = trader_exchange.on_algo_event(cfg, st, cid, ao.Ack(algo_id="1" + cid[:1]), ctx(NOW + 40))
    return st


def test_the_shell_logs_every_resize_under_its_own_name_and_counts_it(tmp_path):
    """Two resizes in a row (two symbols): two ``brain.position_resized`` lines, none
    throttled as other problems are; the trader's count is in the heartbeat."""
    from structlog.testing import capture_logs

    from tests.unit.brain.test_execution import make_rig

    rig = make_rig(tmp_path)
    rig.ex.st = replace(rig.ex.st, counters={"position_resized": 2})
    with capture_logs() as logs:
        rig.ex._carry_out([trader.Problem("POSITION_RESIZED", "AAAUSDT: 19.8 -> 10.0"),
                           trader.Problem("POSITION_RESIZED", "BBBUSDT: 3 -> 1")])
    assert [(e["event"], e["detail"]) for e in logs] == [("brain.position_resized", "AAAUSDT: 19.8 -> 10.0"),
                                                         ("brain.position_resized", "BBBUSDT: 3 -> 1")]
    assert rig.ex.heartbeat_counters()["position_resized"] == 2.0


def test_the_closeposition_stop_closing_a_larger_position_counts_only_the_trades_part():
    """The exchange holds 25 of a 19.8 long (5.2 added by hand); its closePosition stop fires
    and sells all 25 at 97.9 in one fill: the trade's exit is its own 19.8 at 97.9 (PnL
    19.8 x -2.1 = -41.58) with its share of the fee, not the hand-added part's proceeds (the
    order machine refused the whole fill as an over-fill before, and the trade closed at the
    mark, unlearned); the journal still gets the exchange's fill as it was."""
    st = protected_long()
    st, _ = trader_exchange.on_exchange_position(CFG, st, SYM, D("25"), ctx(NOW + 5_000))
    stop_cid = st.trades[SYM].stop_cid
    st, _ = trader_exchange.on_algo_event(CFG, st, stop_cid, ao.Update(status="FINISHED", algo_id="1",
                                                                        actual_order_id="777"), ctx(NOW + 6_000))
    whole = ExchangeFill(trade_id="s1", client_order_id=stop_cid, exchange_order_id="777", symbol=SYM, side="SELL",
                         qty=D("25"), price=D("97.9"), fee=D("0.5"), time_ms=NOW + 6_000)
    st, acts = trader_fills.on_fill(CFG, st, whole, ctx(NOW + 6_100))
    (closed,) = bodies(acts, wire.TradeClosed)
    assert (closed.qty, closed.exit_price, closed.pnl, closed.exit_reason) == (19.8, 97.9, -41.58, "STOP")
    assert [(f.qty, f.fee) for f in bodies(acts, wire.Fill)] == [(25.0, 0.5)]  # the journal has the whole fill
    assert (closed.fees, st.counters["fills_beyond_trade"]) == (float(D("0.01") + D("0.396")), 1)  # 19.8/25 of 0.5
    assert SYM not in st.trades
