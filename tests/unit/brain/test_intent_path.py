"""The order path with the brain's local intent log (``services.brain.intent_log``): an order is
written to the log, sent, then journaled; after a crash between the send and the journal the
restarted brain knows the order from the log, asks the exchange, applies its fill once and never
sends it again; an exit's frame is written by the deciding thread. Built on the fakes of
``test_execution``."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from common import wire
from common.errors import AmbiguousError
from services.brain import dispatcher as dsp
from services.brain import intent_log as il
from services.brain import jobs, recovery, trader
from services.brain.execution_send import INTENT_LOG_UNAVAILABLE
from tests.unit.brain.test_execution import (  # noqa: F401 - the shared fakes
    CFG, ENTRY, ENTRY_FILLED, ENTRY_REQUEST, EID, EXIT, EXIT_EID, NOW, SIG_ID, journal_db, make_rig, signal, xfill,
    xorder)
from venue import orders as om
from venue.binance.ws_api import WsUnavailable
from venue.port import ExchangePosition, OrderSpec, SubmitResult


def with_log(rig, path: Path) -> il.IntentLog:
    rig.ex.intents = il.IntentLog(path, fsync=False)
    return rig.ex.intents


def start(rig) -> None:
    rig.poll(3)
    assert rig.ex.ready
    rig.clear()


def on_file(path: Path) -> list[str]:
    return [it.client_id for it in il.IntentLog.read(path).intents]


class TestEntry:
    def test_the_intent_is_on_file_before_the_broker_hears_of_it_and_the_journal_follows(self, tmp_path: Path):
        """Log, send, journal: the record exists when submit runs, the synchronous journal is
        never asked, and the request row is published to the journal before the SENT update."""
        rig = make_rig(tmp_path)
        log_path = tmp_path / "intents.log"
        with_log(rig, log_path)
        start(rig)
        seen: list[list[str]] = []
        real = rig.broker.submit

        def submit(spec: OrderSpec) -> SubmitResult:
            seen.append(on_file(log_path))
            return real(spec)

        rig.broker.submit = submit  # type: ignore[method-assign]
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll()
        assert seen == [[ENTRY]]
        assert rig.calls_of("journal") == []
        assert rig.kinds()[:2] == [("OrderRequest", True), ("OrderUpdate", True)]
        assert rig.bodies(wire.OrderRequest) == [ENTRY_REQUEST]
        assert rig.statuses()[0] == "SENT"
        (it,) = il.IntentLog.read(log_path).intents
        assert (it.at_ns, it.body, it.plan) == (NOW * 1_000_000, ENTRY_REQUEST, il.Plan(
            trade_id=SIG_ID, stop=98.0, target=104.0, confidence=0.6, features={"rr": 2.0}))
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")

    def test_the_signal_is_announced_once_after_the_send_and_before_the_entrys_row(self, tmp_path: Path):
        """Live, the brain hands the signal's announcement to the shell: it is made right after
        the entry left and before the entry's journal row (one journal socket: a database that
        has the row has the signal), once; the intent record keeps the signal for a restart."""
        rig = make_rig(tmp_path)
        rig.ex.broker = WsLikeBroker(rig.broker)  # the frame leaves from the deciding thread
        log_path = tmp_path / "intents.log"
        with_log(rig, log_path)
        start(rig)
        rig.broker.submits.append(ENTRY_FILLED)
        announced: list[tuple[int, int]] = []

        def announce() -> None:
            announced.append((len(rig.calls), len(rig.published)))
            rig.published.append(("SIG", True))

        rig.ex.on_signal(signal(), announce)
        assert rig.calls == [("send_order", ENTRY, 0.0)] and announced == [(1, 0)]
        assert rig.published[:2] == [("SIG", True), (ENTRY_REQUEST, True)]
        rig.poll()
        assert announced == [(1, 0)] and rig.ex.signal_in_hand is None
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")
        (it,) = il.IntentLog.read(log_path).intents
        assert it.plan is not None and it.plan.signal == signal()
        assert rig.ex.journal_unseen[ENTRY][1] == (signal(), ENTRY_REQUEST)

    def test_a_signal_with_no_entry_is_not_announced_by_the_shell(self, tmp_path: Path):
        """Refused (its id used already): the shell never calls the announcement; the brain
        makes it after the trader's answer."""
        rig = make_rig(tmp_path)
        with_log(rig, tmp_path / "intents.log")
        start(rig)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll()
        announced: list[str] = []
        rig.ex.on_signal(signal(), lambda: announced.append("sig"))
        assert announced == [] and rig.ex.signal_in_hand is None
        assert rig.ex.st.counters["skipped:DUPLICATE_SIGNAL"] == 1

    def test_an_entry_the_log_cannot_take_is_refused_before_the_exchange(self, tmp_path: Path):
        """A failed log write stops an entry with INTENT_LOG_UNAVAILABLE; nothing is submitted."""
        rig = make_rig(tmp_path)
        log = with_log(rig, tmp_path / "intents.log")
        start(rig)

        def broken(_intent: Any, **_kw: Any) -> None:
            raise OSError(28, "No space left on device")

        log.append = broken  # type: ignore[method-assign]
        rig.ex.on_signal(signal())
        rig.poll()
        assert rig.calls_of("submit") == []
        (rej,) = rig.bodies(wire.RiskReject)
        assert (rej.reason, rej.detail) == (INTENT_LOG_UNAVAILABLE, "[Errno 28] No space left on device")
        assert rig.ex.counters["intent_log_failed"] == 1 and "AAAUSDT" not in rig.ex.st.trades


class WsLikeBroker:
    """Adds the WebSocket broker's split submit to the fake broker: ``send_order`` writes (logged
    in ``calls``; ``fail`` is raised for exits), ``finish_order`` answers from the fake's
    submit script."""

    def __init__(self, fake: Any, fail: Exception | None = None) -> None:
        self.fake = fake
        self.fail = fail

    def send_order(self, spec: OrderSpec, *, rate_wait_s: float | None = None, prepared: Any = None) -> str:
        self.fake.calls.append(("send_order", spec.client_order_id, rate_wait_s) if prepared is None
                               else ("send_order", spec.client_order_id, rate_wait_s, prepared))
        if self.fail is not None and spec.reduce_only:
            raise self.fail
        return "frame-1"

    def finish_order(self, spec: OrderSpec, sent: str) -> SubmitResult:
        self.fake.calls.append(("finish_order", spec.client_order_id, sent))
        return self.fake._next(self.fake.submits, "finish_order")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)


def holding_ws(tmp_path: Path, fail: Exception | None = None):
    rig = make_rig(tmp_path)
    rig.ex.broker = WsLikeBroker(rig.broker, fail)
    with_log(rig, tmp_path / "intents.log")
    start(rig)
    rig.broker.submits.append(ENTRY_FILLED)
    rig.ex.on_signal(signal())
    rig.poll()
    assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")
    rig.clear()
    return rig


EXIT_FILLED = SubmitResult(order=xorder(EXIT, "FILLED", "19.8", eid=EXIT_EID, side="SELL"),
                           fills=(xfill(EXIT, "7", "19.8", "98.0", eid=EXIT_EID, side="SELL"),))


class TestEntryFromTheDecidingThread:
    def test_an_entry_frame_is_written_by_the_deciding_thread_and_answered_by_a_worker(self, tmp_path: Path):
        """Over the WebSocket API an entry leaves from the thread that decided it (logged
        first, no dispatcher hop); its answer is a dispatcher job; with no socket it goes
        through the dispatcher's ordinary submit instead."""
        rig = make_rig(tmp_path)
        rig.ex.broker = WsLikeBroker(rig.broker)
        with_log(rig, tmp_path / "intents.log")
        start(rig)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        assert rig.calls == [("send_order", ENTRY, 0.0)] and on_file(tmp_path / "intents.log") == [ENTRY]
        rig.poll()
        assert rig.calls == [("send_order", ENTRY, 0.0), ("finish_order", ENTRY, "frame-1")]
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")
        assert rig.ex.counters["entries_sent_inline"] == 1

    def test_the_logs_flusher_is_woken_after_the_frame_left(self, tmp_path: Path):
        """The record is written before the frame; the flusher (its fsync) is woken only once
        the frame has left: woken earlier, its thread would take the interpreter at the
        write."""
        rig = make_rig(tmp_path)
        rig.ex.broker = WsLikeBroker(rig.broker)
        log = with_log(rig, tmp_path / "intents.log")
        start(rig)
        calls = rig.broker.calls

        class Woken:  # the flusher's event (no flusher thread here: fsync is off)
            def set(self) -> None:
                calls.append(("wake", on_file(tmp_path / "intents.log")))

        log._wake = Woken()  # type: ignore[assignment]
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        assert rig.calls == [("send_order", ENTRY, 0.0), ("wake", [ENTRY])]

    def test_with_no_socket_the_entry_goes_through_the_dispatcher(self, tmp_path: Path):
        """``send_order`` raised WsUnavailable (nothing sent): the ordinary submit job sends it."""
        rig = make_rig(tmp_path)
        ws = WsLikeBroker(rig.broker)
        rig.ex.broker = ws
        with_log(rig, tmp_path / "intents.log")
        start(rig)

        def refused(spec, *, rate_wait_s=None):
            rig.broker.calls.append(("send_order", spec.client_order_id, rate_wait_s))
            raise WsUnavailable("order.place: no WebSocket API connection")

        rig.ex._send_now = refused
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll()
        assert rig.calls_of("submit") == [("submit", ENTRY)]
        assert rig.ex.counters["entries_inline_fallback"] == 1
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")


class TestExitFromTheDecidingThread:
    def test_the_exit_frame_is_written_while_the_stop_is_handled_and_answered_by_a_worker(self, tmp_path: Path):
        """The exit's frame is written inside ``on_range`` itself (no queue, governor not waited
        on), logged first, and its answer is the dispatcher's ORDER job that closes the trade."""
        rig = holding_ws(tmp_path)
        rig.clock.now_ms = NOW + 30_000
        rig.broker.submits.append(EXIT_FILLED)
        rig.ex.on_range("AAAUSDT", 97.9, 100.5)
        assert rig.calls == [("send_order", EXIT, 0.0)]  # before any poll: sent by this thread
        assert on_file(tmp_path / "intents.log") == [ENTRY, EXIT]
        assert rig.disp.submitted == [(dsp.ORDER, jobs.Submit(EXIT, 1, NOW + 30_000), "AAAUSDT")]
        rig.poll()
        assert rig.calls == [("send_order", EXIT, 0.0), ("finish_order", EXIT, "frame-1")]
        (closed,) = rig.bodies(wire.TradeClosed)
        assert (closed.exit_reason, closed.qty, closed.exit_price) == ("STOP", 19.8, 98.0)
        assert (rig.ex.counters["exits_sent_inline"], rig.ex.counters["entries_sent_inline"]) == (1, 1)

    def test_the_frame_leaves_before_the_state_machine_is_told_and_is_claimed_once(self, tmp_path: Path):
        """The exit's frame is written while its order is still NEW_LOCAL (logged, before the
        state machine's Send and the dispatcher's plumbing); the SubmitOrder that follows
        claims it: one send, one finish, no second frame, no mismatch."""
        rig = holding_ws(tmp_path)
        seen = []
        real = rig.ex.broker.send_order

        def send_order(spec, *, rate_wait_s=None):
            seen.append(rig.ex.st.orders[spec.client_order_id].state)
            return real(spec, rate_wait_s=rate_wait_s)

        rig.ex.broker.send_order = send_order
        rig.ex._send_now = send_order
        rig.broker.submits.append(EXIT_FILLED)
        rig.ex.on_range("AAAUSDT", 97.9, 100.5)
        assert seen == [om.S.NEW_LOCAL]
        assert rig.ex.st.orders[EXIT].state == om.S.SENT and rig.ex._presend == {}
        rig.poll()
        assert rig.calls == [("send_order", EXIT, 0.0), ("finish_order", EXIT, "frame-1")]
        assert rig.ex.counters["exit_presend_mismatch"] == 0 and "AAAUSDT" not in rig.ex.st.trades

    def test_with_no_socket_the_exit_goes_through_the_dispatcher(self, tmp_path: Path):
        """Nothing was sent (WsUnavailable): the ordinary submit job carries the exit."""
        rig = holding_ws(tmp_path, fail=WsUnavailable("order.place: no WebSocket API connection"))
        rig.broker.submits.append(EXIT_FILLED)
        rig.ex.on_range("AAAUSDT", 97.9, 100.5)
        rig.poll()
        assert rig.calls_of("send_order") == [("send_order", EXIT, 0.0)]
        assert rig.calls_of("submit") == [("submit", EXIT)]
        assert rig.ex.counters["exits_inline_fallback"] == 1 and "AAAUSDT" not in rig.ex.st.trades

    def test_a_frame_that_may_have_left_is_an_unknown_outcome_never_a_resend(self, tmp_path: Path):
        """AmbiguousError while writing: the order goes UNKNOWN and is queried, not submitted again."""
        rig = holding_ws(tmp_path, fail=AmbiguousError("ws-api order.place: connection failed while sending"))
        rig.broker.queries.append(xorder(EXIT, "FILLED", "19.8", eid=EXIT_EID, side="SELL"))
        rig.ex.on_range("AAAUSDT", 97.9, 100.5)
        rig.poll()
        assert rig.calls_of("submit") == [] and rig.ex.st.orders[EXIT].state == om.S.UNKNOWN


class TestCrashBetweenSendAndJournal:
    """The brain logged and sent the entry, the exchange filled it, and the brain died before
    the journal heard of it (the database holds no order)."""

    def crashed(self, tmp_path: Path, announce: Any = None) -> Path:
        log_path = tmp_path / "intents.log"
        rig = make_rig(tmp_path)
        with_log(rig, log_path)
        start(rig)
        rig.ex.on_signal(signal(), announce)  # logged and dispatched; the process dies before anything else
        assert rig.calls_of("submit") == [] and on_file(log_path) == [ENTRY]
        return log_path

    def test_the_signal_of_an_entry_the_journal_never_heard_of_is_journaled_before_it(self, tmp_path: Path):
        """The announced signal died with the process too: the restarted brain journals it from
        the intent record, then the request."""
        log_path = self.crashed(tmp_path, announce=lambda: None)
        rig = make_rig(tmp_path)
        with_log(rig, log_path)
        rig.broker.queries += [xorder(ENTRY, "FILLED", "19.8")] * 2
        rig.broker.fill_rows.append([xfill(ENTRY, "1", "19.8", "100.0")])
        rig.poll(5)
        assert rig.published[:2] == [(signal(), True), (ENTRY_REQUEST, True)]
        assert rig.bodies(wire.SignalGenerated) == [signal()]

    @pytest.mark.parametrize("held", [False, True])
    def test_after_restart_the_order_is_known_its_fill_applied_once_and_it_is_never_resent(self, tmp_path: Path,
                                                                                          held: bool):
        """The restarted brain journals the logged request first, asks the exchange (at start-up
        and by recovery), fetches the fill once and holds 19.8 with the logged plan, whether
        or not the exchange's position already shows the fill; no submit."""
        log_path = self.crashed(tmp_path)
        positions = (ExchangePosition(symbol="AAAUSDT", qty=Decimal("19.8"), entry_price=Decimal("100.0")),) if held \
            else ()
        rig = make_rig(tmp_path, positions=positions)
        with_log(rig, log_path)
        rig.broker.queries += [xorder(ENTRY, "FILLED", "19.8")] * 2
        rig.broker.fill_rows.append([xfill(ENTRY, "1", "19.8", "100.0")])
        rig.poll(5)
        assert rig.published[0] == (ENTRY_REQUEST, True)  # journaled at start, before anything else
        assert [c for c in rig.calls if c[0] in ("submit", "query", "fills")] == [
            ("query", "AAAUSDT", ENTRY), ("query", "AAAUSDT", ENTRY), ("fills", "AAAUSDT", EID)]
        t = rig.ex.st.trades["AAAUSDT"]
        assert (t.entry_qty, t.position, t.stop, t.target, t.adopted) == (Decimal("19.8"), Decimal("19.8"), 98.0,
                                                                          104.0, False)
        assert rig.ex.counters["intents_replayed"] == 1
        assert [f.trade_id for f in rig.bodies(wire.Fill)] == ["1"]
        rig.ex.on_signal(signal())  # the same signal again: its id is used
        assert rig.calls_of("submit") == [] and rig.ex.st.counters["skipped:DUPLICATE_SIGNAL"] == 1


class TestJournalRowAudit:
    def test_a_row_lost_on_the_way_to_the_journal_is_published_again_until_the_database_has_it(self, tmp_path: Path):
        """The buffered journal message died with a killed orchestrator: 10 s after the send the
        row is still missing, so the request and the order's state are published again (once per
        10 s); once the database has the row, nothing more."""
        dbf = journal_db(tmp_path / "aegis.db", (NOW - 1, signal()))
        rig = make_rig(tmp_path, db_path=dbf)
        with_log(rig, tmp_path / "intents.log")
        start(rig)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll()
        rig.published.clear()

        def audit(at_ms: int) -> None:
            rig.clock.now_ms = at_ms
            rig.ex._next_journal_audit = 0.0
            rig.poll(2)  # the read on a worker, then its answer

        audit(NOW + 5_000)  # missing, but young: the message may still be on its way
        assert rig.bodies(wire.OrderRequest) == []
        audit(NOW + 10_000)
        assert rig.kinds() == [("OrderRequest", True), ("OrderUpdate", True)]
        assert rig.ex.journal_unseen[ENTRY][1] == (ENTRY_REQUEST,)  # no signal in hand: the request alone
        assert rig.bodies(wire.OrderRequest) == [ENTRY_REQUEST] and rig.statuses() == ["FILLED"]
        assert rig.ex.counters["journal_rows_resent"] == 1
        journal_db(dbf, (NOW + 10_001, ENTRY_REQUEST))
        rig.published.clear()
        audit(NOW + 30_000)
        assert rig.published == [] and rig.ex.journal_unseen == {}


    def test_an_announced_entrys_signal_is_published_again_with_its_request(self, tmp_path: Path):
        rig = make_rig(tmp_path, db_path=journal_db(tmp_path / "aegis.db", (NOW - 1, signal())))
        with_log(rig, tmp_path / "intents.log")
        start(rig)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal(), lambda: None)
        rig.poll()
        rig.published.clear()
        rig.clock.now_ms = NOW + 10_000
        rig.ex._next_journal_audit = 0.0
        rig.poll(2)
        assert rig.kinds() == [("SignalGenerated", True), ("OrderRequest", True), ("OrderUpdate", True)]
        assert rig.bodies(wire.SignalGenerated) == [signal()]


class TestAdoptedAtStart:
    def test_our_open_order_neither_journal_nor_log_knows_is_adopted_and_asked_never_resent(self, tmp_path: Path):
        """A machine crash took the log's last record: the exchange's open list still names the
        entry by its ae- id; start-up journals it, holds its slot (adopted: no plan), asks its
        fate; someone else's order is left alone."""
        rig = make_rig(tmp_path)
        with_log(rig, tmp_path / "intents.log")
        mine = replace(xorder(ENTRY, "NEW", "0"), order_type="LIMIT", price=Decimal("99.5"), update_ms=NOW - 700)
        theirs = replace(xorder("web_1", "NEW", "0", eid="55"), order_type="LIMIT", price=Decimal("90"))
        rig.broker.open_orders = lambda symbol=None: [mine, theirs]  # type: ignore[method-assign]
        rig.broker.queries += [mine, mine]  # at start-up (what it executed) and by the recovery query
        rig.poll(3)
        assert rig.ex.ready and rig.ex.counters["orders_adopted"] == 1
        assert rig.bodies(wire.OrderRequest) == [wire.OrderRequest(
            client_order_id=ENTRY, symbol="AAAUSDT", side="BUY", order_type="LIMIT", qty=19.8, price=99.5)]
        assert [c for c in rig.calls if c[0] in ("submit", "query")] == [("query", "AAAUSDT", ENTRY),
                                                                         ("query", "AAAUSDT", ENTRY)]
        assert rig.ex.st.orders[ENTRY].state == om.S.ACKED and "web_1" not in rig.ex.st.orders
        t = rig.ex.st.trades["AAAUSDT"]
        assert (t.entry_cid, t.adopted) == (ENTRY, True)


class TestFoundInTheOrderHistoryAtStart:
    """A machine crash took the entry's intent record after it was sent; it filled at once,
    so the exchange's open list no longer names it: its order history (allOrders) does."""

    def test_a_filled_entry_is_adopted_with_its_fill_its_position_protected_never_resent(self, tmp_path: Path):
        """Read from the look-back (nothing on record); the entry is journaled, asked, its fill
        fetched by its order id and applied once: the trade holds the exchange's 19.8 under the
        entry's id, its exchange-held stop is placed, nothing is submitted."""
        rig = make_rig(tmp_path, positions=(ExchangePosition(symbol="AAAUSDT", qty=Decimal("19.8"),
                                                             entry_price=Decimal("100.0")),),
                       cfg=replace(CFG, exchange_protection=True))
        with_log(rig, tmp_path / "intents.log")
        rig.broker.history = [replace(xorder(ENTRY, "FILLED", "19.8"), avg_price=Decimal("100.0"),
                                      update_ms=NOW - 700)]
        rig.broker.queries += [xorder(ENTRY, "FILLED", "19.8")] * 2
        rig.broker.fill_rows.append([xfill(ENTRY, "1", "19.8", "100.0")])
        rig.poll(5)
        assert rig.ex.ready and rig.ex.counters["orders_adopted"] == 1
        assert sorted(r[0] for r in rig.broker.history_reads) == ["AAAUSDT", "BBBUSDT"]
        assert {r[1:] for r in rig.broker.history_reads} == {(NOW - 86_400_000, NOW + 1_000)}
        assert rig.bodies(wire.OrderRequest) == [wire.OrderRequest(
            client_order_id=ENTRY, symbol="AAAUSDT", side="BUY", order_type="MARKET", qty=19.8, price=0.0)]
        assert [c for c in rig.calls if c[0] in ("submit", "query", "fills")] == [
            ("query", "AAAUSDT", ENTRY), ("query", "AAAUSDT", ENTRY), ("fills", "AAAUSDT", EID)]
        t, o = rig.ex.st.trades["AAAUSDT"], rig.ex.st.orders[ENTRY]
        assert (t.entry_cid, t.entry_qty, t.position, t.adopted, o.state) == (
            ENTRY, Decimal("19.8"), Decimal("19.8"), True, om.S.FILLED)
        assert [f.trade_id for f in rig.bodies(wire.Fill)] == ["1"]
        assert t.side == "BUY" and t.stop_cid
        assert [(s.order_type, s.side, s.close_position) for s in rig.broker.algo_specs][:1] == [
            ("STOP_MARKET", "SELL", True)]

    def test_a_filled_exit_closes_its_trade_once(self, tmp_path: Path):
        """The journal holds the filled entry and its plan; the exit that closed it was lost with
        the log's last record. The position is flat; the history names the exit: adopted into the
        trade (its exchange id known at once), its fill counted once although both its own
        fetch and the flat symbol's fill read return it; the trade closes at the exit's price."""
        t0 = NOW - 60_000
        sig = f"AAAUSDT-{t0}-BUY"
        entry, exit_ = f"ae-{sig}-0", f"ax-{sig}-1"
        dbf = journal_db(tmp_path / "aegis.db", (t0, signal(t=t0)),
                         (t0, wire.OrderRequest(client_order_id=entry, symbol="AAAUSDT", side="BUY",
                                                order_type="MARKET", qty=19.8, signal_id=sig)),
                         (t0 + 1, wire.OrderUpdate(client_order_id=entry, exchange_order_id=EID, symbol="AAAUSDT",
                                                   status="FILLED", filled_qty=19.8, avg_price=100.0)),
                         (t0 + 1, wire.Fill(client_order_id=entry, exchange_order_id=EID, trade_id="1",
                                            symbol="AAAUSDT", side="BUY", qty=19.8, price=100.0)))
        rig = make_rig(tmp_path, db_path=dbf)
        with_log(rig, tmp_path / "intents.log")
        lost = replace(xorder(exit_, "FILLED", "19.8", eid=EXIT_EID, side="SELL"), reduce_only=True,
                       avg_price=Decimal("101.0"))
        rig.broker.history = [lost]
        rig.broker.queries += [lost] * 2
        exit_fill = xfill("", "2", "19.8", "101.0", eid=EXIT_EID, side="SELL")
        rig.broker.fill_rows += [[exit_fill], [exit_fill]]  # the flat symbol's fills, the exit's own
        rig.poll(6)
        assert rig.ex.ready and rig.ex.counters["orders_adopted"] == 1
        assert rig.calls_of("submit") == []
        assert [u.status for u in rig.bodies(wire.OrderUpdate) if u.client_order_id == exit_][-1:] == ["FILLED"]
        assert [(f.client_order_id, f.trade_id) for f in rig.bodies(wire.Fill)] == [(exit_, "2")]  # once
        assert "AAAUSDT" not in rig.ex.st.trades
        (closed,) = rig.bodies(wire.TradeClosed)
        assert (closed.trade_id, closed.qty, closed.entry_price, closed.exit_price) == (sig, 19.8, 100.0, 101.0)

    def test_an_unreadable_history_is_counted_and_the_start_goes_on(self, tmp_path: Path):
        """A malformed allOrders answer (DecodeError) for every symbol: each is counted and
        logged, the brain starts and trades (reconciliation reads the history again)."""
        from common.errors import DecodeError

        rig = make_rig(tmp_path)
        with_log(rig, tmp_path / "intents.log")
        rig.broker.history_error = DecodeError("allOrders: the answer is not a list", reason="all_orders_shape")
        rig.poll(3)
        assert rig.ex.ready and rig.ex.counters["order_history_unreadable"] == 2
        assert rig.ex.snapshot()["order_history_unreadable"] == 2

    def test_a_cancelled_order_with_no_fill_is_only_recorded(self, tmp_path: Path):
        """Nothing executed: its request and CANCELED state go to the journal, its id is used,
        nothing is asked, no slot is held, nothing is sent."""
        rig = make_rig(tmp_path)
        with_log(rig, tmp_path / "intents.log")
        rig.broker.history = [replace(xorder(ENTRY, "CANCELED", "0"), order_type="LIMIT", price=Decimal("99.5"))]
        rig.poll(3)
        assert rig.ex.ready and rig.ex.counters["orders_recorded_from_history"] == 1
        assert rig.updates() == [("CANCELED", 0.0)] and len(rig.bodies(wire.OrderRequest)) == 1
        assert [c for c in rig.calls if c[0] in ("submit", "query", "fills")] == []
        assert rig.ex.st.trades == {} and ENTRY in rig.ex.saved.used_cids  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- the pure rule
def order_intent(cid: str, at_ms: int, *, reduce_only: bool = False, stop: float = 98.0) -> il.Intent:
    body = wire.OrderRequest(client_order_id=cid, symbol="AAAUSDT", side="SELL" if reduce_only else "BUY",
                             order_type="MARKET", qty=1.5, reduce_only=reduce_only, signal_id="S1")
    plan = None if reduce_only else il.Plan(trade_id="S1", stop=stop, target=104.0, confidence=0.5)
    return il.Intent(client_id=cid, at_ns=at_ms * 1_000_000, body=body, plan=plan)


class TestWithIntents:
    def test_ids_the_journal_holds_are_left_alone(self):
        """An intent whose id the journal knows (an order or a protective order) adds nothing."""
        saved = recovery.Saved(journal_ids=frozenset({"ae-S1-0", "ps-S1-1"}))
        algo = il.Intent(client_id="ps-S1-1", at_ns=NOW * 1_000_000, body=wire.AlgoOrderUpdate(
            client_algo_id="ps-S1-1", symbol="AAAUSDT", side="SELL", order_type="STOP_MARKET", trigger_price="98",
            state="NEW_LOCAL"))
        assert recovery.with_intents(saved, [order_intent("ae-S1-0", NOW), algo], NOW) == (saved, [])

    def test_an_unknown_entry_becomes_an_open_order_with_its_plan_and_a_used_id(self):
        """The newest record per id; NEW_LOCAL sent at the intent's time; the plan from the log."""
        first, last = order_intent("ae-S1-0", NOW - 5, stop=97.0), order_intent("ae-S1-0", NOW - 2)
        saved, todo = recovery.with_intents(recovery.Saved(), [first, last], NOW)
        assert todo == [last]
        o = saved.open_orders["ae-S1-0"]
        assert (o.state, o.last_sent_ms, o.qty, o.reduce_only) == (om.S.NEW_LOCAL, NOW - 2, Decimal("1.5"), False)
        assert "ae-S1-0" in saved.used_cids and saved.last_action_ms == {"AAAUSDT": NOW - 2}
        p = saved.plans["AAAUSDT"]
        assert (p.trade_id, p.stop, p.target, p.entry_cid, p.opened_ms) == ("S1", 98.0, 104.0, "ae-S1-0", NOW - 2)

    def test_a_newer_plan_in_the_journal_wins_and_an_exit_brings_no_plan(self):
        """The journal's plan opened after the intent stays; an exit intent is an open order only."""
        newer = trader.Trade(trade_id="S9", symbol="AAAUSDT", side="BUY", stop=1.0, target=2.0, confidence=0.1,
                             features={}, opened_ms=NOW, entry_cid="ae-S9-0")
        saved, todo = recovery.with_intents(recovery.Saved(plans={"AAAUSDT": newer}),
                                            [order_intent("ae-S1-0", NOW - 10), order_intent("ax-S1-1", NOW - 1,
                                                                                            reduce_only=True)], NOW)
        assert [t.client_id for t in todo] == ["ae-S1-0", "ax-S1-1"]
        assert saved.plans["AAAUSDT"] is newer and saved.open_orders["ax-S1-1"].reduce_only

    def test_a_protective_intent_becomes_an_open_protective_order(self):
        """A logged stop the journal lacks is recovered NEW_LOCAL with its exact trigger, sent at the intent's time."""
        algo = il.Intent(client_id="ps-S1-1", at_ns=(NOW - 3) * 1_000_000, body=wire.AlgoOrderUpdate(
            client_algo_id="ps-S1-1", symbol="AAAUSDT", side="SELL", order_type="STOP_MARKET",
            trigger_price="97.90", state="NEW_LOCAL", trade_id="S1", role="STOP"))
        saved, _ = recovery.with_intents(recovery.Saved(), [algo], NOW)
        a = saved.algos["ps-S1-1"]
        assert (a.state.value, a.trigger_price, a.last_sent_ms, a.role) == ("NEW_LOCAL", Decimal("97.90"), NOW - 3,
                                                                              "STOP")

    def test_intents_older_than_the_recovery_window_are_ignored(self):
        """Past USED_IDS_DAYS an intent is history, not an order to find."""
        old = order_intent("ae-S1-0", NOW - recovery.USED_IDS_DAYS * 86_400_000 - 1)
        assert recovery.with_intents(recovery.Saved(), [old], NOW) == (recovery.Saved(), [])


class TestOpenAtStart:
    def test_week_old_and_damaged_records_are_dropped_from_the_file_at_start(self, tmp_path: Path):
        """``execution_build.open_intent_log`` rewrites the file with the records younger than
        USED_IDS_DAYS only, without a torn tail, and opens it for appending."""
        from common import config
        from services.brain import execution_build

        cfg = config.from_dict({"data_dir": str(tmp_path / "data")})
        path = execution_build.intent_log_path(cfg)
        path.parent.mkdir(parents=True)
        old = order_intent("ae-S0-0", NOW - recovery.USED_IDS_DAYS * 86_400_000 - 1)
        fresh = order_intent("ae-S1-0", NOW - 1_000)
        path.write_bytes(il.encode(old) + il.encode(fresh) + il.encode(fresh)[:7])
        log = execution_build.open_intent_log(cfg, now_ns=NOW * 1_000_000)
        try:
            log.append(order_intent("ax-S1-1", NOW, reduce_only=True))
            assert log.sync()
        finally:
            log.close()
        got = il.IntentLog.read(path)
        assert ([it.client_id for it in got.intents], got.corrupt, got.torn) == (["ae-S1-0", "ax-S1-1"], 0, 0)
