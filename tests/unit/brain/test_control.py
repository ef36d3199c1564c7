"""Operators' commands in the brain (services/brain/control.py): every command is the trader's
own move (pause refuses signals as RISK_REJECT PAUSED, close is the trader's exit, close all its
flatten, clear the kill switch risk.clear_halt), checked on the trader's pure functions."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import replace
from decimal import Decimal

import msgspec
import pytest

from common import wire
from services.brain import control, risk, rotation, trader, trader_entries, trader_exits, trader_fills
from venue import orders as om
from venue.port import ExchangeFill

NOW = 1_733_011_200_000  # 2024-12-01 00:00 UTC
FILTERS = {sym: risk.SymbolFilters(symbol=sym, tick_size=Decimal("0.1"), step_size=Decimal("0.001"),
                                   min_qty=Decimal("0.001"), min_notional=Decimal("5"))
           for sym in ("AAAUSDT", "BBBUSDT", "CCCUSDT")}
CFG = trader.TraderConfig(risk=risk.RiskConfig(max_order_notional_usdt=2_000.0, max_total_notional_usdt=10_000.0,
                                               max_leverage=5.0),
                          rotation=rotation.RotationConfig(cooldown_s=60.0))
C, S = wire.ControlCommand, wire.ControlStatus
PAUSED_BY = control.PauseState(paused=True, by="127.0.0.1 (page)", at_ms=NOW - 1_000)


def ctx(now: int = NOW, equity: float = 10_000.0) -> trader.Ctx:
    quotes = {s: risk.Quote(mark_price=100.0, updated_ms=now) for s in FILTERS}
    return trader.Ctx(now_ms=now, equity=equity, market=risk.Market(filters=FILTERS, quotes=quotes))


def signal(symbol="AAAUSDT", t=NOW) -> wire.SignalGenerated:
    return wire.SignalGenerated(signal_id=f"{symbol}-{t}-BUY", symbol=symbol, side="BUY", entry=100.0, stop=98.0,
                                target=104.0, confidence=0.6, cold=False, features={"rr": 2.0})


def cmd(command=C.PAUSE, symbol="", requested_ms=NOW, client="127.0.0.1", via="page") -> wire.Control:
    return wire.Control(request_id="0123456789abcdef", command=command, symbol=symbol, requested_ms=requested_ms,
                        client=client, via=via)


def holding(*symbols: str) -> trader.TraderState:
    """A trader holding a filled long of 19.8 at 100.0 in each symbol."""
    st = trader.TraderState()
    for i, sym in enumerate(symbols):
        st, acts = trader_entries.on_signal(CFG, st, signal(sym), ctx())
        (new,) = [a for a in acts if isinstance(a, trader.NewOrder)]
        cid = new.order.client_order_id
        st, _ = trader_fills.on_order_event(CFG, st, cid, om.Send(at_ms=NOW), ctx())
        f = ExchangeFill(trade_id=str(i), client_order_id=cid, exchange_order_id="9", symbol=sym, side="BUY",
                         qty=Decimal("19.8"), price=Decimal("100.0"), fee=Decimal("0.01"))
        st, _ = trader_fills.on_fill(CFG, st, f, ctx())
    return st


def new_orders(result):
    return [a for a in result[1] if isinstance(a, trader.NewOrder)]


def published(result, cls):
    return [a.body for a in result[1] if isinstance(a, trader.Publish) and isinstance(a.body, cls)]


class TestPause:
    def test_a_signal_while_paused_is_refused_as_risk_reject_paused(self):
        """The refusal carries the reason PAUSED, who paused and when; the trader sends nothing."""
        result = control.gate_signal(PAUSED_BY, trader.TraderState(), signal())
        (rej,) = published(result, wire.RiskReject)
        assert (rej.symbol, rej.reason, rej.signal_id) == ("AAAUSDT", "PAUSED", "AAAUSDT-1733011200000-BUY")
        assert rej.detail == "entries paused by 127.0.0.1 (page) at 2024-11-30 23:59:59 UTC"
        assert new_orders(result) == []
        assert dict(result[0].counters) == {"signals": 1, "risk_rejects": 1, "rejected:PAUSED": 1}

    def test_not_paused_the_signal_goes_to_the_trader(self):
        """No pause: gate_signal stands aside (None) and the trader decides as always."""
        assert control.gate_signal(control.PauseState(), trader.TraderState(), signal()) is None

    def test_pause_sets_who_and_when_and_is_saved(self):
        """PAUSE records the asker and the time, asks for the state to be saved, answers DONE."""
        out = control.decide(CFG, control.PauseState(), trader.TraderState(), cmd(), ctx(), ready=True)
        assert out.pause == control.PauseState(paused=True, by="127.0.0.1 (page)", at_ms=NOW)
        assert out.save and out.reply.status is S.DONE and out.reply.detail == "entries paused"
        assert out.reply.request_id == "0123456789abcdef" and out.reply.command is C.PAUSE

    def test_pause_drops_entries_waiting_for_a_rotation(self):
        """An entry a rotation left waiting would enter after the pause: it is dropped, counted."""
        waiting = trader.PendingEntry(signal=signal("CCCUSDT"), after_symbol="AAAUSDT", expires_ms=NOW + 60_000)
        st = replace(holding("AAAUSDT"), pending=(waiting,))
        out = control.decide(CFG, control.PauseState(), st, cmd(), ctx(), ready=True)
        st2, actions = out.result
        assert st2.pending == () and actions == [] and st2.counters["skipped:PAUSED"] == 1
        assert out.reply.detail == "entries paused; 1 entry waiting for a rotation dropped"

    def test_pause_twice_changes_nothing(self):
        """A second PAUSE keeps the first asker and saves nothing."""
        out = control.decide(CFG, PAUSED_BY, trader.TraderState(), cmd(client="10.0.0.9"), ctx(), ready=True)
        assert out.pause == PAUSED_BY and not out.save and out.result is None
        assert out.reply.detail == "already paused by 127.0.0.1 (page)"

    def test_pause_works_while_the_trader_is_still_starting(self):
        """Pausing needs no account: it is accepted before the execution shell is ready."""
        out = control.decide(CFG, control.PauseState(), trader.TraderState(), cmd(), ctx(), ready=False)
        assert out.pause.paused and out.reply.status is S.DONE

    def test_resume_lifts_the_pause_and_the_next_signal_trades(self):
        """After RESUME the same signal reaches the trader and becomes an entry order."""
        out = control.decide(CFG, PAUSED_BY, trader.TraderState(), cmd(C.RESUME), ctx(), ready=True)
        assert out.pause == control.PauseState() and out.save
        assert out.reply.detail == "entries resumed (paused by 127.0.0.1 (page))"
        assert control.gate_signal(out.pause, trader.TraderState(), signal()) is None
        (order,) = new_orders(trader_entries.on_signal(CFG, trader.TraderState(), signal(), ctx()))
        assert order.order.client_order_id == "ae-AAAUSDT-1733011200000-BUY-0"

    def test_the_pause_record_round_trips_and_an_unreadable_one_stays_paused(self):
        """Saved as JSON; a damaged record must never resume trading by itself."""
        assert control.PauseState.from_json(PAUSED_BY.to_json()) == PAUSED_BY
        assert control.PauseState.from_json(b"{not json").paused is True
        assert control.PauseState.from_json(b'{"v": 2, "paused": false}').paused is True
        # valid JSON of another shape (found by a review: it raised AttributeError): paused too
        assert [control.PauseState.from_json(b).paused for b in (b"[1]", b"null", b'"x"', b"7")] == [True] * 4


class TestClose:
    def test_close_is_the_traders_own_reduce_only_exit_reason_manual(self):
        """CLOSE sends the trader's exit: reduce-only MARKET, whole position, deterministic ax- id."""
        st = holding("AAAUSDT", "BBBUSDT")
        out = control.decide(CFG, control.PauseState(), st, cmd(C.CLOSE, "AAAUSDT"), ctx(), ready=True)
        (exit_,) = new_orders(out.result)
        o = exit_.order
        assert (o.symbol, o.side, o.qty, o.reduce_only, o.order_type) == ("AAAUSDT", "SELL", Decimal("19.8"), True,
                                                                          "MARKET")
        assert o.client_order_id == "ax-AAAUSDT-1733011200000-BUY-1"
        assert out.result[0].trades["AAAUSDT"].exit_reason == "MANUAL"
        assert out.result[0].trades["BBBUSDT"].exit_reason == ""
        assert out.reply.status is S.DONE and out.reply.detail == "exit sent (ax-AAAUSDT-1733011200000-BUY-1)"

    def test_close_while_an_exit_is_in_flight_sends_nothing_more(self):
        """Never two live exits: the second CLOSE says which exit is already on its way."""
        st = holding("AAAUSDT")
        st, _ = trader_exits.on_prices(CFG, st, "AAAUSDT", 97.0, 99.0, ctx())  # the stop fired: exit 1 in flight
        out = control.decide(CFG, control.PauseState(), st, cmd(C.CLOSE, "AAAUSDT"), ctx(), ready=True)
        assert new_orders(out.result) == []
        assert out.reply.detail == "an exit is already in flight (ax-AAAUSDT-1733011200000-BUY-1)"

    def test_close_of_a_symbol_without_a_position_is_refused(self):
        """Nothing to close: REFUSED with the reason, the trader untouched."""
        out = control.decide(CFG, control.PauseState(), holding("AAAUSDT"), cmd(C.CLOSE, "CCCUSDT"), ctx(), ready=True)
        assert out.result is None and out.reply.status is S.REFUSED
        assert out.reply.detail == "no open position in CCCUSDT"

    def test_close_all_flattens_every_position(self):
        """CLOSE_ALL is trader.flatten: one exit per position, reason FLATTEN."""
        out = control.decide(CFG, control.PauseState(), holding("AAAUSDT", "BBBUSDT"), cmd(C.CLOSE_ALL), ctx(),
                             ready=True)
        assert sorted(a.order.client_order_id for a in new_orders(out.result)) == [
            "ax-AAAUSDT-1733011200000-BUY-1", "ax-BBBUSDT-1733011200000-BUY-1"]
        assert {t.exit_reason for t in out.result[0].trades.values()} == {"FLATTEN"}
        assert out.reply.detail == ("AAAUSDT: exit sent (ax-AAAUSDT-1733011200000-BUY-1); "
                                    "BBBUSDT: exit sent (ax-BBBUSDT-1733011200000-BUY-1)")

    def test_close_all_when_flat_is_done_with_nothing_to_do(self):
        out = control.decide(CFG, control.PauseState(), trader.TraderState(), cmd(C.CLOSE_ALL), ctx(), ready=True)
        assert out.result is None and out.reply.status is S.DONE and out.reply.detail == "no positions to close"

    def test_close_waits_for_a_ready_trader(self):
        """Before recovery the trader's state is not the account's: orders are refused."""
        out = control.decide(CFG, control.PauseState(), holding("AAAUSDT"), cmd(C.CLOSE, "AAAUSDT"), ctx(),
                             ready=False)
        assert out.result is None and out.reply.status is S.REFUSED
        assert out.reply.detail.startswith("the trader is still starting")

    def test_a_stale_command_is_refused(self):
        """Older than 30 s: its sender was told long ago that nobody answered."""
        out = control.decide(CFG, control.PauseState(), holding("AAAUSDT"),
                             cmd(C.CLOSE, "AAAUSDT", requested_ms=NOW - 31_000), ctx(), ready=True)
        assert out.result is None and out.reply.detail == "stale: asked 31.0 s ago (limit 30 s)"


class TestKillSwitch:
    def halted(self) -> trader.TraderState:
        rs = risk.update_equity(CFG.risk, risk.initial_state(10_000.0, NOW), 9_700.0, NOW)
        assert rs.halted and rs.halt_reason == "DAILY_LOSS"
        return replace(trader.TraderState(), risk=rs)

    def test_clear_resets_the_halt_and_the_baseline_at_the_current_equity(self):
        """risk.clear_halt at the account's equity: the next check does not trip again at once."""
        out = control.decide(CFG, control.PauseState(), self.halted(), cmd(C.CLEAR_KILL_SWITCH), ctx(equity=9_700.0),
                             ready=True)
        rs = out.result[0].risk
        assert (rs.halted, rs.day_start_equity_usdt, rs.peak_equity_usdt) == (False, 9_700.0, 9_700.0)
        assert out.reply.detail == ("kill switch cleared (was DAILY_LOSS: lost 300.00 USDT today (limit 250.0)); "
                                    "new baseline 9700.00 USDT")
        assert risk.update_equity(CFG.risk, rs, 9_700.0, NOW).halted is False

    def test_clear_when_not_tripped_is_refused(self):
        out = control.decide(CFG, control.PauseState(), trader.TraderState(), cmd(C.CLEAR_KILL_SWITCH), ctx(),
                             ready=True)
        assert out.reply.status is S.REFUSED and out.reply.detail == "the kill switch is not tripped"

    def test_clear_without_a_known_equity_is_refused(self):
        out = control.decide(CFG, control.PauseState(), self.halted(), cmd(C.CLEAR_KILL_SWITCH),
                             ctx(equity=math.nan), ready=True)
        assert out.result is None and out.reply.status is S.REFUSED


class FakeExecution:
    """The parts of the execution shell ``Control`` uses, recording what it is handed."""

    def __init__(self, st: trader.TraderState) -> None:
        self.st, self.cfg, self.ready = st, CFG, True
        self.runs: list[trader.Result] = []
        self.signals: list[wire.SignalGenerated] = []

    def ctx(self, symbols=()):
        return ctx()

    def apply(self, result):
        self.runs.append(result)
        self.st = result[0]

    def on_signal(self, sig):
        self.signals.append(sig)


class TestShell:
    def make(self, st=None, pause=control.PauseState()):
        ex = FakeExecution(st or trader.TraderState())
        out: list = []
        return control.Control(sock=None, execution=ex, publish=out.append, pause=pause, clock_ms=lambda: NOW), ex, out

    def test_pause_then_signal_goes_through_the_execution_shell_as_a_refusal(self):
        """The pause is saved (model_state row), answered, and the next signal is refused via apply."""
        c, ex, out = self.make()
        c.apply(cmd())
        saved, reply = out
        assert saved.name == wire.CONTROL_STATE_NAME and json.loads(saved.state)["paused"] is True
        assert reply.status is S.DONE
        c.on_signal(signal())
        assert ex.signals == [] and published(ex.runs[-1], wire.RiskReject)[0].reason == "PAUSED"
        assert c.counters() == {"paused": 1.0, "control_done": 1.0, "control_refused": 0.0, "control_rejected": 0.0}

    def test_close_hands_the_traders_exit_to_the_execution_shell(self):
        """CLOSE's new state and actions are carried out by Execution.apply, like any exit."""
        c, ex, out = self.make(holding("AAAUSDT"))
        c.apply(cmd(C.CLOSE, "AAAUSDT"))
        (run,) = ex.runs
        assert [a.order.client_order_id for a in new_orders(run)] == ["ax-AAAUSDT-1733011200000-BUY-1"]
        assert out[-1].status is S.DONE

    def test_garbage_on_the_control_socket_is_counted_not_obeyed(self):
        """Wrong frame count, bad bytes, or an answer instead of a request: rejected, counted."""
        c, ex, out = self.make()
        done = msgspec.structs.replace(cmd(), status=S.DONE)
        c.handle([b"peer", b"x"])
        c.handle([b"peer", b"control.all", b"\x00garbage"])
        c.handle([b"peer", *wire.encode(wire.Envelope(wire.SCHEMA_VERSION, "x:1", 1, 1, 1, done))])
        assert c.counts["control_rejected"] == 3 and out == [] and ex.runs == []

    def test_the_saved_pause_is_read_back_at_start(self, tmp_path):
        """load_pause reads the model_state row the orchestrator wrote; none: not paused."""
        path = tmp_path / "a.sqlite3"
        assert control.load_pause(path) == control.PauseState()
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE model_state (name TEXT PRIMARY KEY, version INTEGER, state BLOB, updated_ns INTEGER)")
        conn.execute("INSERT INTO model_state VALUES (?, 1, ?, 1)", (wire.CONTROL_STATE_NAME, PAUSED_BY.to_json()))
        conn.commit()
        conn.close()
        assert control.load_pause(path) == PAUSED_BY
