"""The trader core: signal -> rotation -> risk -> order; fills -> position; stop/target -> exit;
flat -> TRADE_CLOSED and a lesson for the model. Exact values throughout."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common import wire
from venue import order_rules
from venue import orders as om
from services.brain import risk, rotation, trader, trader_entries, trader_exits, trader_fills, trader_restart
from venue.port import ExchangeFill

NOW = 1_733_011_200_000  # 2024-12-01 00:00 UTC
FILTERS = {
    sym: risk.SymbolFilters(symbol=sym, tick_size=Decimal("0.1"), step_size=Decimal("0.001"),
                            min_qty=Decimal("0.001"), min_notional=Decimal("5"))
    for sym in ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT")
}
CFG = trader.TraderConfig(risk=risk.RiskConfig(max_order_notional_usdt=2_000.0, max_total_notional_usdt=10_000.0,
                                               max_leverage=5.0),
                          rotation=rotation.RotationConfig(cooldown_s=60.0),
                          entry_order="market")  # these tests pin the MARKET entry; limit-IOC has its own


def ctx(now: int = NOW, price: float = 100.0, equity: float = 10_000.0, block: str = "", **prices) -> trader.Ctx:
    quotes = {s: risk.Quote(mark_price=prices.get(s, price), updated_ms=now) for s in FILTERS}
    return trader.Ctx(now_ms=now, equity=equity, market=risk.Market(filters=FILTERS, quotes=quotes),
                      block_reason=block)


def signal(symbol="AAAUSDT", side="BUY", entry=100.0, stop=98.0, target=104.0, conf=0.6, t=NOW) -> wire.SignalGenerated:
    return wire.SignalGenerated(signal_id=f"{symbol}-{t}-{side}", symbol=symbol, side=side, entry=entry, stop=stop,
                                target=target, confidence=conf, cold=False, features={"rr": 2.0})


def fill(cid, tid, qty, price, side="BUY", symbol="AAAUSDT", fee="0.01") -> ExchangeFill:
    return ExchangeFill(trade_id=tid, client_order_id=cid, exchange_order_id="9007199254740993", symbol=symbol,
                        side=side, qty=Decimal(qty), price=Decimal(price), fee=Decimal(fee))


def of_type(actions, cls):
    return [a for a in actions if isinstance(a, cls)]


def bodies(actions, cls):
    return [a.body for a in actions if isinstance(a, trader.Publish) and isinstance(a.body, cls)]


def sent(st, order: om.Order, now=NOW):
    """The shell's part after NewOrder: journaled, then Send."""
    return trader_fills.on_order_event(CFG, st, order.client_order_id, om.Send(at_ms=now), ctx(now))


def enter(st=None, sig=None, c=None):
    st = st or trader.TraderState()
    sig = sig or signal()
    st, acts = trader_entries.on_signal(CFG, st, sig, c or ctx())
    (new,) = of_type(acts, trader.NewOrder)
    st, acts2 = sent(st, new.order)
    return st, new.order, acts2


class TestEntries:
    def test_signal_with_a_free_slot_becomes_a_sized_market_entry(self):
        st, acts = trader_entries.on_signal(CFG, trader.TraderState(), signal(), ctx())
        (new,) = of_type(acts, trader.NewOrder)
        # 0.5% of 10,000 = 50 USDT at risk over a 2.0 stop distance = 25, capped at 1,980 USDT / 100
        assert new.order.qty == Decimal("19.8")
        assert new.order.client_order_id == "ae-AAAUSDT-1733011200000-BUY-0"
        assert new.order.state == om.S.NEW_LOCAL and new.request.order_type == "MARKET"
        assert st.trades["AAAUSDT"].entry_cid == new.order.client_order_id
        assert st.counters["orders"] == 1

    def test_send_after_the_journal_gives_a_submit_dispatch(self):
        st, order, acts = enter()
        (d,) = of_type(acts, trader.Dispatch)
        assert d.effect == om.SubmitOrder(client_order_id=order.client_order_id, attempt=1) and d.symbol == "AAAUSDT"
        assert st.orders[order.client_order_id].state == om.S.SENT

    def test_the_same_signal_twice_never_opens_a_second_order(self):
        st, _, _ = enter()
        st2, acts = trader_entries.on_signal(CFG, st, signal(), ctx())
        assert acts == [] and st2.counters["skipped:DUPLICATE_SIGNAL"] == 1

    def test_blocked_trading_publishes_a_reject_with_the_reason(self):
        st, acts = trader_entries.on_signal(CFG, trader.TraderState(), signal(), ctx(block="reconciliation MISMATCH"))
        (rej,) = bodies(acts, wire.RiskReject)
        assert rej.reason == "TRADING_DISABLED" and rej.detail == "reconciliation MISMATCH"
        assert of_type(acts, trader.NewOrder) == []

    def test_risk_rejection_is_published_and_counted(self):
        st, acts = trader_entries.on_signal(CFG, trader.TraderState(), signal(), ctx(equity=float("nan")))
        (rej,) = bodies(acts, wire.RiskReject)
        assert rej.reason == risk.EQUITY_INVALID and st.counters["risk_rejects"] == 1

    def test_stale_market_data_rejects_the_entry(self):
        c = ctx()
        old = {s: risk.Quote(mark_price=100.0, updated_ms=NOW - 60_000) for s in FILTERS}
        c = trader.Ctx(now_ms=NOW, equity=10_000.0, market=risk.Market(filters=FILTERS, quotes=old))
        _, acts = trader_entries.on_signal(CFG, trader.TraderState(), signal(), c)
        assert bodies(acts, wire.RiskReject)[0].reason == risk.STALE_DATA

    def test_an_entry_rejected_by_the_exchange_frees_its_slot(self):
        st, order, _ = enter()
        st, acts = trader_fills.on_order_event(CFG, st, order.client_order_id, om.Reject(attempt=1, code=-2019), ctx())
        assert "AAAUSDT" not in st.trades and st.counters["entries_failed"] == 1
        assert bodies(acts, wire.OrderUpdate)[0].status == "REJECTED"


class TestFillsAndExits:
    def test_entry_fills_make_a_position_and_publish_fill_and_position(self):
        st, order, _ = enter()
        cid = order.client_order_id
        st, acts = trader_fills.on_fill(CFG, st, fill(cid, "1", "10", "100.0"), ctx())
        st, acts2 = trader_fills.on_fill(CFG, st, fill(cid, "2", "9.8", "100.1"), ctx())
        t = st.trades["AAAUSDT"]
        assert t.entry_qty == Decimal("19.8") and t.entry_notional == Decimal("1980.98")
        assert st.orders[cid].state == om.S.FILLED
        (pos,) = bodies(acts2, wire.Position)
        assert pos.qty == 19.8 and pos.entry_price == pytest.approx(100.04949494949495, abs=1e-12)
        assert [f.trade_id for f in bodies(acts + acts2, wire.Fill)] == ["1", "2"]
        assert st.fees == Decimal("0.02")

    def test_a_fill_delivered_twice_counts_once(self):
        st, order, _ = enter()
        f = fill(order.client_order_id, "1", "10", "100.0")
        st, _ = trader_fills.on_fill(CFG, st, f, ctx())
        st, acts = trader_fills.on_fill(CFG, st, f, ctx())
        assert st.trades["AAAUSDT"].entry_qty == Decimal("10") and bodies(acts, wire.Fill) == []

    def filled(self):
        st, order, _ = enter()
        st, _ = trader_fills.on_fill(CFG, st, fill(order.client_order_id, "1", "19.8", "100.0"), ctx())
        return st

    def test_price_inside_stop_and_target_does_nothing(self):
        st = self.filled()
        st2, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 98.1, 103.9, ctx())
        assert acts == [] and st2 == st

    def test_touching_the_stop_sends_one_reduce_only_exit_for_the_whole_position(self):
        st = self.filled()
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 97.9, 100.0, ctx(price=98.0))
        (new,) = of_type(acts, trader.NewOrder)
        assert new.order.reduce_only and new.order.side == "SELL" and new.order.qty == Decimal("19.8")
        assert new.order.client_order_id == "ax-AAAUSDT-1733011200000-BUY-1"
        # a second touch while the exit is in flight sends nothing
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 97.0, 97.5, ctx(price=97.0))
        assert acts == []

    def test_a_strategy_exit_sends_one_exit_named_by_its_reason(self):
        """request_exit (a strategy's Exit intent): one reduce-only exit, the trade's reason is the
        strategy's; asked again while it is in flight, or with no trade, nothing."""
        st = self.filled()
        st, acts = trader.request_exit(CFG, st, "AAAUSDT", "TIME", ctx())
        (new,) = of_type(acts, trader.NewOrder)
        assert new.order.reduce_only and new.order.qty == Decimal("19.8") and st.trades["AAAUSDT"].exit_reason == "TIME"
        assert trader.request_exit(CFG, st, "AAAUSDT", "TIME", ctx()) == (st, [])
        assert trader.request_exit(CFG, st, "BBBUSDT", "TIME", ctx()) == (st, [])

    def test_exit_fill_closes_the_trade_with_pnl_r_and_a_lesson(self):
        st = self.filled()
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 99.0, 104.2, ctx(price=104.0))
        (new,) = of_type(acts, trader.NewOrder)
        cid = new.order.client_order_id
        st, _ = sent(st, new.order)
        st, acts = trader_fills.on_fill(CFG, st, fill(cid, "7", "19.8", "104.0", side="SELL"), ctx())
        (closed,) = bodies(acts, wire.TradeClosed)
        assert closed.exit_reason == "TARGET" and closed.pnl == pytest.approx(79.2)
        assert closed.outcome_r == pytest.approx(2.0) and closed.fees == pytest.approx(0.02)
        (lesson,) = of_type(acts, trader.Learn)
        assert lesson.outcome_r == pytest.approx(2.0) and lesson.features == {"rr": 2.0}
        assert "AAAUSDT" not in st.trades and st.orders == {}
        assert st.counters["trades_closed"] == 1 and st.counters["wins"] == 1
        assert bodies(acts, wire.Position)[-1].qty == 0.0

    def test_a_refused_exit_is_retried_with_a_new_id_after_the_retry_delay(self):
        st = self.filled()
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 97.0, 99.0, ctx(price=97.0))
        (new,) = of_type(acts, trader.NewOrder)
        st, _ = sent(st, new.order)
        st, _ = trader_fills.on_order_event(CFG, st, new.order.client_order_id, om.Reject(attempt=1, code=-1001), ctx())
        assert st.trades["AAAUSDT"].exit_cid == ""
        st, acts = trader.on_timer(CFG, st, ctx(now=NOW + 1_000))
        assert of_type(acts, trader.NewOrder) == []
        st, acts = trader.on_timer(CFG, st, ctx(now=NOW + CFG.exit_retry_ms))
        (retry,) = of_type(acts, trader.NewOrder)
        assert retry.order.client_order_id == "ax-AAAUSDT-1733011200000-BUY-2"

    def test_a_timed_out_exit_blocks_any_second_exit_until_the_query_answers(self):
        st = self.filled()
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 97.0, 99.0, ctx(price=97.0))
        (new,) = of_type(acts, trader.NewOrder)
        st, _ = sent(st, new.order)
        st, acts = trader_fills.on_order_event(CFG, st, new.order.client_order_id, om.Timeout(at_ms=NOW + 5), ctx())
        assert [type(a.effect) for a in of_type(acts, trader.Dispatch)] == [om.QueryOrder]
        st, acts = trader.on_timer(CFG, st, ctx(now=NOW + 60_000))
        assert of_type(acts, trader.NewOrder) == []

    def test_an_exit_sized_on_a_partly_filled_entry_is_followed_by_one_for_the_rest(self):
        """The stop is touched after the entry's first fill (10 of 19.8): the exit sells 10;
        the entry's second fill (9.8) arrives meanwhile; when the exit is done a second exit
        sells the remaining 9.8 and its fill closes the trade."""
        st, order, _ = enter()
        cid = order.client_order_id
        st, _ = trader_fills.on_fill(CFG, st, fill(cid, "1", "10", "100.0"), ctx())
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 97.9, 100.0, ctx(price=98.0))
        (first,) = of_type(acts, trader.NewOrder)
        assert first.order.qty == Decimal("10")
        st, _ = sent(st, first.order)
        st, _ = trader_fills.on_fill(CFG, st, fill(cid, "2", "9.8", "100.0"), ctx())
        st, acts = trader_fills.on_fill(CFG, st, fill(first.order.client_order_id, "3", "10", "98.0", side="SELL"), ctx())
        (second,) = of_type(acts, trader.NewOrder)
        assert (second.order.qty, second.order.reduce_only) == (Decimal("9.8"), True)
        assert second.order.client_order_id == "ax-AAAUSDT-1733011200000-BUY-2"
        st, _ = sent(st, second.order)
        st, acts = trader_fills.on_fill(CFG, st, fill(second.order.client_order_id, "4", "9.8", "97.9", side="SELL"), ctx())
        (closed,) = bodies(acts, wire.TradeClosed)
        assert (closed.exit_reason, closed.qty) == ("STOP", 19.8) and "AAAUSDT" not in st.trades


class TestRotation:
    def full(self):
        st = trader.TraderState()
        for i, sym in enumerate(("AAAUSDT", "BBBUSDT", "CCCUSDT")):
            st, order, _ = enter(st, signal(symbol=sym, conf=0.5 + i * 0.05))
            st, _ = trader_fills.on_fill(CFG, st, fill(order.client_order_id, f"{i}", "19.8", "100.0", symbol=sym), ctx())
        return st

    def test_a_fourth_signal_that_is_not_stronger_is_skipped(self):
        st = self.full()
        later = ctx(now=NOW + 120_000)
        st, acts = trader_entries.on_signal(CFG, st, signal(symbol="DDDUSDT", conf=0.52, t=NOW + 120_000), later)
        assert acts == [] and st.counters["skipped:NOT_STRONGER"] == 1

    def test_a_stronger_signal_exits_the_weakest_first_then_enters_when_flat(self):
        st = self.full()
        later = ctx(now=NOW + 120_000)
        st, acts = trader_entries.on_signal(CFG, st, signal(symbol="DDDUSDT", conf=0.9, t=NOW + 120_000), later)
        (exit_order,) = of_type(acts, trader.NewOrder)
        assert exit_order.order.symbol == "AAAUSDT" and exit_order.order.reduce_only
        assert len(st.pending) == 1 and "DDDUSDT" not in st.trades
        st, _ = trader_fills.on_order_event(CFG, st, exit_order.order.client_order_id, om.Send(at_ms=NOW + 120_000), later)
        st, acts = trader_fills.on_fill(CFG, st, fill(exit_order.order.client_order_id, "9", "19.8", "100.0", side="SELL"),
                                        later)
        assert bodies(acts, wire.TradeClosed)[0].exit_reason == "ROTATION"
        (entry,) = of_type(acts, trader.NewOrder)
        assert entry.order.symbol == "DDDUSDT" and not entry.order.reduce_only
        assert sorted(st.trades) == ["BBBUSDT", "CCCUSDT", "DDDUSDT"] and st.pending == ()

    def test_never_more_than_three_trades_whatever_the_signals(self):
        st = self.full()
        for k in range(20):
            now = NOW + 120_000 + k * 1_000
            st, acts = trader_entries.on_signal(CFG, st, signal(symbol="DDDUSDT", conf=0.99, t=now), ctx(now=now))
            assert len(st.trades) <= 3


class TestRestart:
    def test_recovered_open_orders_are_all_queried_first(self):
        st, order, _ = enter()
        fresh = trader_restart.restore(risk_state=st.risk, orders={order.client_order_id: order}, trades=st.trades,
                                       used_cids=st.used_cids, last_action_ms={})
        st2, acts = trader_restart.recovery_actions(fresh, NOW + 10)
        assert st2.orders[order.client_order_id].state == om.S.UNKNOWN
        assert [a.effect.client_order_id for a in of_type(acts, trader.Dispatch)] == [order.client_order_id]

    def test_a_recovered_order_the_exchange_never_saw_is_cancelled_not_resent(self):
        st, order, _ = enter()
        st, _ = trader_restart.recovery_actions(st, NOW)
        late = NOW + order_rules.DEFAULT_RECV_WINDOW_MS + order_rules.CLOCK_MARGIN_MS + 1
        st, acts = trader_fills.on_order_event(CFG, st, order.client_order_id,
                                               om.QueryResult(at_ms=late, found=False), ctx(now=late))
        assert st.orders[order.client_order_id].state == om.S.CANCELED
        assert not [a for a in of_type(acts, trader.Dispatch) if isinstance(a.effect, om.SubmitOrder)]
        assert "AAAUSDT" not in st.trades

    def test_an_adopted_position_gets_a_protective_stop_and_is_not_learned(self):
        t = trader_restart.adopt(CFG, symbol="AAAUSDT", qty=Decimal("-2"), entry_price=Decimal("100"), now_ms=NOW)
        assert t.side == "SELL" and t.stop == pytest.approx(102.0) and t.target == pytest.approx(96.0)
        st = trader.TraderState(trades={"AAAUSDT": t})
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 99.0, 102.5, ctx(price=102.5))
        (new,) = of_type(acts, trader.NewOrder)
        st, _ = sent(st, new.order)
        st, acts = trader_fills.on_fill(CFG, st, fill(new.order.client_order_id, "5", "2", "102.5"), ctx())
        (closed,) = bodies(acts, wire.TradeClosed)
        assert closed.pnl == pytest.approx(-5.0) and not closed.learned and of_type(acts, trader.Learn) == []
