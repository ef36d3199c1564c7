"""Reconciliation's repairs reaching the running trader (``trader_exchange.on_reconciled``): a position
the exchange holds and the brain does not is adopted once and protected; a position the brain
holds and the exchange does not frees its slot; an adopted order id is never used again; and
nothing is adopted from a read that may predate the brain's own latest doing on the symbol."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from common import wire
from common.errors import TransientError
from services.brain import trader, trader_entries, trader_exchange
from tests.unit.brain.test_execution import CFG as SHELL_CFG
from tests.unit.brain.test_execution import started
from tests.unit.brain.test_protection import filled_long, sent_and_acked
from tests.unit.brain.test_trader import CFG, NOW, ctx, enter, of_type, signal
from venue import algo_orders as ao
from venue import orders as om
from venue.port import ExchangePosition

SENT = NOW + 1_000  # when the shell sent its positions read (after the message came)


def pos(symbol: str = "BBBUSDT", qty: str = "3", entry: str = "50") -> ExchangePosition:
    return ExchangePosition(symbol=symbol, qty=Decimal(qty), entry_price=Decimal(entry))


class TestAdoption:
    def test_an_unknown_position_is_adopted_once_and_protected_by_the_exchange(self):
        """BBBUSDT held at the exchange, no trade here: one adopted trade of the exchange's size
        and side, a stop and a target placed (closePosition), no order sent; the same message
        and read again change nothing."""
        st = trader.TraderState()
        st, acts = trader_exchange.on_reconciled(CFG, st, ["BBBUSDT"], [], [pos(qty="-3")], SENT, ctx(SENT + 50))
        t = st.trades["BBBUSDT"]
        assert (t.side, t.position, t.entry_avg, t.adopted, t.confidence) == ("SELL", Decimal(3), Decimal(50),
                                                                               True, 0.0)
        assert of_type(acts, trader.NewOrder) == []
        algos = [a.order for a in of_type(acts, trader.NewAlgo)]
        assert [(a.order_type, a.side, a.close_position) for a in algos] == [
            ("STOP_MARKET", "BUY", True), ("TAKE_PROFIT_MARKET", "BUY", True)]
        assert t.stop_cid == algos[0].client_algo_id
        assert st.counters["reconciled_adopted"] == 1
        again, acts2 = trader_exchange.on_reconciled(CFG, st, ["BBBUSDT"], [], [pos(qty="-3")], SENT + 5_000, ctx(SENT + 5_050))
        assert acts2 == [] and again.trades == st.trades and again.counters["reconciled_adopted"] == 1

    def test_only_the_symbols_reconciliation_named_are_looked_at(self):
        """A position on a symbol the message did not name is left to the next run."""
        st, acts = trader_exchange.on_reconciled(CFG, trader.TraderState(), ["CCCUSDT"], [], [pos()], SENT, ctx(SENT))
        assert st.trades == {} and acts == []

    def test_a_read_that_may_predate_our_own_close_adopts_nothing(self):
        """The brain closed its BBBUSDT trade at or after the read was sent: the read may still
        show the position the close removed; adopting it would count a phantom position."""
        st = replace(trader.TraderState(), last_action_ms={"BBBUSDT": SENT})
        st, acts = trader_exchange.on_reconciled(CFG, st, ["BBBUSDT"], [], [pos()], SENT, ctx(SENT + 50))
        assert st.trades == {} and acts == [] and st.counters["reconciled_adoption_deferred"] == 1

    def test_a_live_order_of_ours_on_the_symbol_defers_the_adoption(self):
        """An order of ours still live on the symbol (its fills may be what the read shows)."""
        live = replace(om.new_order(client_order_id="ax-old-1", symbol="BBBUSDT", side="SELL", order_type="MARKET",
                                    qty=Decimal(3), reduce_only=True), state=om.S.ACKED)
        st = replace(trader.TraderState(), orders={live.client_order_id: live})
        st, acts = trader_exchange.on_reconciled(CFG, st, ["BBBUSDT"], [], [pos()], SENT, ctx(SENT + 50))
        assert "BBBUSDT" not in st.trades and acts == []

    def test_a_protective_order_of_ours_still_alive_defers_the_adoption(self):
        """Our closed trade's closePosition stop, its cancel not yet confirmed: a new stop for the
        adopted position would be refused (-4130), and a refused stop makes the trader exit the
        position at the market. Deferred; once the cancel is confirmed, the next read adopts."""
        old = replace(ao.new_algo_order(client_algo_id="ps-OLD-1", symbol="BBBUSDT", side="SELL",
                                        order_type="STOP_MARKET", trigger_price=Decimal("45")),
                      state=ao.A.CANCEL_PENDING)
        st = replace(trader.TraderState(), algos={old.client_algo_id: old})
        st, acts = trader_exchange.on_reconciled(CFG, st, ["BBBUSDT"], [], [pos()], SENT, ctx(SENT + 50))
        assert "BBBUSDT" not in st.trades and acts == [] and st.counters["reconciled_adoption_deferred"] == 1
        st = replace(st, algos={old.client_algo_id: replace(old, state=ao.A.CANCELED)})
        st, acts = trader_exchange.on_reconciled(CFG, st, ["BBBUSDT"], [], [pos()], SENT + 5_000, ctx(SENT + 5_050))
        assert st.trades["BBBUSDT"].adopted and len(of_type(acts, trader.NewAlgo)) == 2

    def test_an_adopted_order_id_is_never_used_again(self):
        """Reconciliation adopted ae-sigX-0 (sent by us, never journaled): the id is used, so the
        signal that would make it again is skipped, not sent a second time."""
        sig = signal(symbol="AAAUSDT", t=NOW + 120_000)
        cid = om.make_client_order_id(trader_entries.ENTRY_PREFIX, sig.signal_id, 0)
        st, _ = trader_exchange.on_reconciled(CFG, trader.TraderState(), [], [cid], [], SENT, ctx(SENT))
        assert cid in st.used_cids
        st, acts = trader_entries.on_signal(CFG, st, sig, ctx(NOW + 120_000))
        assert of_type(acts, trader.NewOrder) == [] and st.counters["skipped:DUPLICATE_SIGNAL"] == 1


class TestHeldTrades:
    def test_a_trade_the_exchange_shows_flat_frees_its_slot(self):
        """The trade's position is gone at the exchange (reconciliation repaired it to 0): the
        slot is freed at once and the closing fills are fetched, as a user-stream event would."""
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        st, acts = trader_exchange.on_reconciled(CFG, st, ["AAAUSDT"], [], [], SENT, ctx(SENT + 50))
        t = st.trades["AAAUSDT"]
        assert t.flat_at_exchange_ms == SENT + 50
        assert [a.effect for a in of_type(acts, trader.Dispatch)
                if isinstance(a.effect, trader.FetchSymbolFills)] == [
            trader.FetchSymbolFills(symbol="AAAUSDT", since_ms=t.first_fill_ms)]
        assert of_type(acts, trader.NewOrder) == []

    def test_a_read_sent_before_the_trades_first_fill_does_not_call_it_flat(self):
        """The entry filled after the read was sent: the read's "no position" may predate it."""
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        before = st
        st, acts = trader_exchange.on_reconciled(CFG, st, ["AAAUSDT"], [], [], NOW - 1, ctx(SENT))
        assert acts == [] and st == before

    def test_a_larger_exchange_position_is_said_once_not_adopted_into_the_trade(self):
        """The exchange holds 25 where the trade holds 19.8 (someone added by hand): one Problem
        and one count, the trade keeps its size (and R), no order; the same read again says nothing."""
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        before = st.trades["AAAUSDT"]
        st, acts = trader_exchange.on_reconciled(CFG, st, ["AAAUSDT"], [], [pos("AAAUSDT", "25", "100")], SENT, ctx(SENT))
        t = st.trades["AAAUSDT"]
        assert (t.position, t.entry_qty, t.differs_reported) == (before.position, before.entry_qty, Decimal(25))
        assert [p.kind for p in of_type(acts, trader.Problem)] == ["POSITION_LARGER_AT_EXCHANGE"]
        assert of_type(acts, trader.NewOrder) == [] and of_type(acts, trader.NewAlgo) == []
        assert st.counters["position_larger_at_exchange"] == 1
        st, acts = trader_exchange.on_reconciled(CFG, st, ["AAAUSDT"], [], [pos("AAAUSDT", "25", "100")], SENT + 60_000,
                                                 ctx(SENT + 60_000))
        assert acts == [] and st.counters["position_larger_at_exchange"] == 1

    def test_a_trade_of_the_same_size_is_left_alone(self):
        st, _, acts = filled_long()
        st = sent_and_acked(st, acts)
        before = st
        st, acts = trader_exchange.on_reconciled(CFG, st, ["AAAUSDT"], [], [pos("AAAUSDT", "19.8", "100")], SENT, ctx(SENT))
        assert acts == [] and st == before

    def test_an_entry_in_flight_holds_its_trade_and_adopts_nothing(self):
        """Our entry is still on its way (its trade holds the slot): the exchange's position is
        the entry's own fill, never a second trade."""
        st, order, _ = enter()
        st2, acts = trader_exchange.on_reconciled(CFG, st, ["AAAUSDT"], [], [pos("AAAUSDT", "19.8", "100")], SENT, ctx(SENT))
        assert st2.trades == st.trades and of_type(acts, trader.NewAlgo) == []
        assert st2.orders[order.client_order_id].state == st.orders[order.client_order_id].state


class TestShell:
    def test_the_message_makes_the_shell_read_the_positions_and_adopt_with_protection(self, tmp_path):
        """``Execution.on_reconciled``: one positions read on a worker, then the trader's decision
        on it: BBBUSDT (opened behind the brain's back) adopted and its stop placed at the
        exchange; no order submitted; the same message again reads again and adopts nothing."""
        rig = started(tmp_path, cfg=SHELL_CFG)  # exchange protection on (the production default)
        rig.broker.held = [pos("BBBUSDT", "4", "50")]
        msg = wire.Reconciled(status="REPAIRED", at_ms=NOW, symbols=("BBBUSDT",))
        rig.ex.on_reconciled(msg)
        rig.poll(2)
        t = rig.ex.st.trades["BBBUSDT"]
        assert (t.position, t.side, t.adopted) == (Decimal(4), "BUY", True)
        assert rig.calls_of("positions") == [("positions",)]
        assert rig.calls_of("submit") == []
        assert [c[1] for c in rig.calls_of("place_algo")] == [t.stop_cid, t.target_cid]
        rig.clear()
        rig.ex.on_reconciled(msg)
        rig.poll(2)
        assert rig.calls_of("positions") == [("positions",)] and rig.calls_of("place_algo") == []
        assert rig.ex.st.trades["BBBUSDT"].trade_id == t.trade_id
        assert rig.ex.counters["reconciled_heard"] == 2

    def test_a_failed_read_is_counted_and_changes_nothing(self, tmp_path):
        """The positions read fails: counted and logged, nothing adopted (the next run says it again)."""
        rig = started(tmp_path)
        rig.broker.positions = lambda: (_ for _ in ()).throw(TransientError("HTTP 503"))
        rig.ex.on_reconciled(wire.Reconciled(status="REPAIRED", at_ms=NOW, symbols=("BBBUSDT",)))
        rig.poll(2)
        assert rig.ex.st.trades == {} and rig.ex.counters["reconciled_read_failed"] == 1
