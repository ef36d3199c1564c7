"""What is left at the exchange when our own exit closes a trade (``trader.CheckRemainder``).

Someone added to our position by hand; our exit sells the trade's quantity and closes the trade,
and its protective orders (``closePosition``, which covered the whole position) are cancelled.
The part added by hand must not stay naked until the next reconciliation: once the cancels are
confirmed (a new ``closePosition`` stop before that would be refused, -4130) the shell reads the
position and adopts what is left, with an exchange-held stop, in milliseconds."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from common.errors import TransientError
from services.brain import trader, trader_exchange, trader_fills
from services.brain.execution_send import REMAINDER_WAIT_MS
from tests.unit.brain.test_execution import CFG, ENTRY_FILLED, EXIT, EXIT_EID, NOW, signal, started, xfill, xorder
from tests.unit.brain.test_protection import filled_long
from tests.unit.brain.test_trader import CFG as TRADER_CFG
from tests.unit.brain.test_trader import ctx, fill, of_type, sent
from venue import algo_orders as ao
from venue.port import ExchangePosition, SubmitResult

EXIT_FILLED = SubmitResult(order=xorder(EXIT, "FILLED", "19.8", eid=EXIT_EID, side="SELL"),
                           fills=(xfill(EXIT, "7", "19.8", "98.0", eid=EXIT_EID, side="SELL"),))
CLOSED_AT = NOW + 30_000


def held(qty: str) -> list[ExchangePosition]:
    return [ExchangePosition(symbol="AAAUSDT", qty=Decimal(qty), entry_price=Decimal("100"))] if qty != "0" else []


def protected(tmp_path: Path):
    """Started with exchange-held protection (the production default): the AAAUSDT entry filled,
    its stop and target placed and acknowledged."""
    rig = started(tmp_path, cfg=CFG)
    rig.broker.submits.append(ENTRY_FILLED)
    rig.ex.on_signal(signal())
    rig.poll(3)
    t = rig.ex.st.trades["AAAUSDT"]
    assert {rig.ex.st.algos[c].state for c in (t.stop_cid, t.target_cid)} == {ao.A.LIVE}
    rig.clear()
    return rig, t


def exit_at_stop(rig) -> None:
    rig.clock.now_ms = CLOSED_AT
    rig.broker.submits.append(EXIT_FILLED)
    rig.ex.on_range("AAAUSDT", 97.9, 100.5)
    rig.poll()  # the exit's answer: filled, the trade closed, its protective orders' cancels sent
    assert "AAAUSDT" not in rig.ex.st.trades


def steps(rig) -> list[str]:
    return [c[0] for c in rig.calls if c[0] in ("submit", "cancel_algo", "positions", "place_algo")]


class TestShell:
    def test_a_part_added_by_hand_is_adopted_and_protected_once_the_cancels_are_confirmed(self, tmp_path: Path):
        """24.8 at the exchange (5 added by hand); our exit sells 19.8. Cancels first, then one
        positions read (sent after the close's millisecond), then the 5 adopted with a new
        stop and target: never a stop while the old ``closePosition`` one may still be live."""
        rig, old = protected(tmp_path)
        rig.broker.held = held("5")  # what the exchange holds after our exit
        exit_at_stop(rig)
        rig.poll()  # the cancels' answers; the read waits for a later millisecond
        assert steps(rig) == ["submit", "cancel_algo", "cancel_algo"]
        rig.clock.now_ms = CLOSED_AT + 1
        rig.poll(3)  # the read; its answer (adoption); the new stop and target placed
        assert steps(rig) == ["submit", "cancel_algo", "cancel_algo", "positions", "place_algo", "place_algo"]
        t = rig.ex.st.trades["AAAUSDT"]
        assert (t.position, t.side, t.adopted) == (Decimal(5), "BUY", True)
        assert {t.stop_cid, t.target_cid}.isdisjoint({old.stop_cid, old.target_cid})
        assert [c[1] for c in rig.calls_of("place_algo")] == [t.stop_cid, t.target_cid]
        assert rig.ex.counters["remainder_checks"] == 1 and rig.ex.remainders == {}
        # the part left waited from the close (the old stop's cancel) to its new stop: measured
        assert rig.ex.st.longest_unprotected_ms == 1
        assert rig.ex.heartbeat_counters()["remainder_adopted"] == 1.0
        rig.poll(3)  # nothing more: one read per closed trade
        assert steps(rig).count("positions") == 1

    def test_nothing_left_means_one_read_and_nothing_adopted(self, tmp_path: Path):
        rig, _ = protected(tmp_path)
        rig.broker.held = held("0")
        exit_at_stop(rig)
        rig.clock.now_ms = CLOSED_AT + 1
        rig.poll(4)
        assert steps(rig) == ["submit", "cancel_algo", "cancel_algo", "positions"]
        assert rig.ex.st.trades == {} and rig.ex.counters["remainder_checks"] == 1

    def test_cancels_not_confirmed_in_time_leave_it_to_reconciliation(self, tmp_path: Path):
        """The cancels fail (the exchange is unreachable): the symbol is never quiet; after
        ``REMAINDER_WAIT_MS`` the check is given up, counted and said; no read, no new stop."""
        rig, _ = protected(tmp_path)
        rig.broker.held = held("5")
        rig.broker.algo_cancels = [TransientError("HTTP 503")] * 2
        rig.broker.algo_queries = [TransientError("HTTP 503")] * 50  # and every question about them
        exit_at_stop(rig)
        rig.clock.now_ms = CLOSED_AT + 1
        rig.poll(2)
        assert rig.ex.remainders == {"AAAUSDT": CLOSED_AT + REMAINDER_WAIT_MS}
        rig.clock.now_ms = CLOSED_AT + REMAINDER_WAIT_MS
        rig.poll()
        assert rig.ex.remainders == {} and rig.ex.counters["remainder_checks_given_up"] == 1
        assert "positions" not in steps(rig) and rig.calls_of("place_algo") == []


class TestTrader:
    @staticmethod
    def remainder_checks(acts) -> list[trader.CheckRemainder]:
        return [a.effect for a in of_type(acts, trader.Dispatch) if isinstance(a.effect, trader.CheckRemainder)]

    def test_a_trade_our_exit_closes_asks_for_the_remainder(self):
        """Closed by our own exit's fill: the close asks for ``CheckRemainder`` (the shell reads
        once the symbol is quiet)."""
        st, _, _ = filled_long()
        st, acts = trader.request_exit(TRADER_CFG, st, "AAAUSDT", "STRATEGY", ctx())
        (new,) = of_type(acts, trader.NewOrder)
        st, _ = sent(st, new.order)
        st, acts = trader_fills.on_fill(TRADER_CFG, st, fill(new.order.client_order_id, "t9", "19.8", "99",
                                                             side="SELL"), ctx())
        assert "AAAUSDT" not in st.trades
        assert self.remainder_checks(acts) == [trader.CheckRemainder("AAAUSDT")]

    def test_a_trade_the_exchange_said_flat_asks_nothing_more(self):
        """Closed because the exchange said flat (its stop triggered, a liquidation, a manual
        close): the exchange holds nothing, there is nothing to read."""
        st, _, _ = filled_long()
        st, acts = trader_exchange.on_exchange_position(TRADER_CFG, st, "AAAUSDT", Decimal(0), ctx())
        assert self.remainder_checks(acts) == []
        manual = replace(fill("", "t9", "19.8", "99", side="SELL"), exchange_order_id="555")
        st, acts = trader_exchange.on_symbol_fills(TRADER_CFG, st, "AAAUSDT", [manual], ctx())
        assert "AAAUSDT" not in st.trades and self.remainder_checks(acts) == []
