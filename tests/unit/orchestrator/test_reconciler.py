"""Reconciler shell: schedule, the worker thread, failures and the trading verdict, logs, close.

Threads are synchronised with events (``Reconciler.ready``, the fake broker's gate), every
wait bounded; the clock is injected, so no test sleeps."""

from __future__ import annotations

import threading

import pytest
from reconcile_fakes import FakeBroker, ex_order, ex_position
from structlog.testing import capture_logs

from common import wire
from common.errors import AmbiguousError, ConfigError, DecodeError, TransientError
from services.orchestrator import db
from services.orchestrator.reconciler import Reconciler

T_S = 1_700_000_000.0  # wall-clock seconds at the first poll
WAIT_S = 5.0  # bound on every wait for the worker


class FakeClock:
    def __init__(self, t: float = T_S) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Factory:
    """Hands out one broker (or raises), counting the calls."""

    def __init__(self, broker: FakeBroker | None = None, error: Exception | None = None) -> None:
        self.broker = broker or FakeBroker()
        self.error = error
        self.calls = 0

    def __call__(self) -> FakeBroker:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.broker


@pytest.fixture
def conn(tmp_path):
    c = db.connect(tmp_path / "aegis.sqlite3")
    yield c
    c.close()


def make(factory, clock, **kw) -> Reconciler:
    kw.setdefault("interval_s", 300.0)
    kw.setdefault("retry_interval_s", 10.0)
    return Reconciler(factory, symbols_fn=lambda: ["BTCUSDT"], clock=clock, **kw)


def run_once(r: Reconciler, conn):
    """Poll to start a run, wait for the worker, poll to collect the outcome."""
    assert r.poll(conn) is None
    assert r.ready(WAIT_S), "the worker did not finish in time"
    out = r.poll(conn)
    assert out is not None
    return out


@pytest.fixture
def closing():
    made: list[Reconciler] = []
    yield made.append
    for r in made:
        r.close()


class TestSchedule:
    def test_first_poll_runs_at_once_and_builds_the_broker_lazily(self, conn, closing):
        """No broker before the first poll; the first poll starts a run; the next collects OK."""
        factory = Factory()
        r = make(factory, FakeClock())
        closing(r)
        assert factory.calls == 0
        out = run_once(r, conn)
        assert (out.status, out.ok, out.trading_allowed, out.repairs, out.at_ms) == (
            "OK", True, True, (), 1_700_000_000_000)
        assert (factory.calls, r.runs, r.failures, r.last_status) == (1, 1, 0, "OK")

    def test_interval_is_respected(self, conn, closing):
        """Nothing is asked before interval_s has passed since the last run started; then one run."""
        clock, factory = FakeClock(), Factory()
        r = make(factory, clock, interval_s=300.0)
        closing(r)
        run_once(r, conn)
        asked = len(factory.broker.calls)
        clock.t = T_S + 299.999
        assert r.poll(conn) is None
        assert not r.ready(0.05)
        assert len(factory.broker.calls) == asked
        clock.t = T_S + 300.0
        out = run_once(r, conn)
        assert (out.status, r.runs, factory.calls) == ("OK", 2, 1)
        kinds = [c[0] for c in factory.broker.calls]
        # the same reads again, but the order history: the first run only (no fill unexplained)
        assert kinds[asked:] == [k for k in kinds[:asked] if k != "all_orders"] and "all_orders" in kinds[:asked]

    def test_poll_while_the_worker_is_busy_returns_none_without_blocking(self, conn, closing):
        """A REST call in progress never holds the orchestrator's loop."""
        gate = threading.Event()
        factory = Factory(FakeBroker(gate=gate))
        r = make(factory, FakeClock())
        closing(r)
        assert r.poll(conn) is None
        assert factory.broker.entered.wait(WAIT_S)
        assert r.poll(conn) is None
        gate.set()
        assert r.ready(WAIT_S)
        assert r.poll(conn).status == "OK"


class TestFailures:
    def test_broker_exception_is_unreachable_and_counted(self, conn, closing):
        """A TransientError from the broker: UNREACHABLE, not ok, counted; never reconciled -> no trading."""
        factory = Factory(FakeBroker(error=TransientError("HTTP 503")))
        r = make(factory, FakeClock())
        closing(r)
        out = run_once(r, conn)
        assert (out.status, out.ok, out.error, out.consecutive_failures, out.trading_allowed, out.report) == (
            "UNREACHABLE", False, "TransientError: HTTP 503", 1, False, None)
        assert r.counters()["reconcile_failures"] == 1.0
        assert r.counters()["reconcile_trading_allowed"] == 0.0

    def test_failing_factory_is_unreachable_and_retried_after_retry_interval(self, conn, closing):
        """The broker cannot even be built: UNREACHABLE; the next run comes after retry_interval_s."""
        clock, factory = FakeClock(), Factory(error=RuntimeError("no network"))
        r = make(factory, clock, retry_interval_s=10.0)
        closing(r)
        assert run_once(r, conn).error == "RuntimeError: no network"
        clock.t = T_S + 9.999
        assert r.poll(conn) is None and not r.ready(0.05)
        clock.t = T_S + 10.0
        factory.error = None
        assert run_once(r, conn).status == "OK"
        assert (factory.calls, r.failures, r.consecutive_failures) == (2, 1, 0)

    def test_trading_refused_after_max_consecutive_failures(self, conn, closing):
        """After a good run, failures 1 and 2 keep trading allowed; the third refuses it."""
        clock, broker = FakeClock(), FakeBroker()
        r = make(Factory(broker), clock, max_failures=3, retry_interval_s=10.0)
        closing(r)
        assert run_once(r, conn).trading_allowed
        broker.error = AmbiguousError("read timeout")
        allowed = []
        for i in range(1, 4):
            clock.t = T_S + 300.0 + 10.0 * (i - 1)
            out = run_once(r, conn)
            allowed.append((out.status, out.consecutive_failures, out.trading_allowed))
        assert allowed == [("UNREACHABLE", 1, True), ("UNREACHABLE", 2, True), ("UNREACHABLE", 3, False)]
        assert r.trading_allowed is False

    def test_mismatch_refuses_trading_and_logs_each_difference_once(self, conn, closing):
        """An external order on a traded symbol: MISMATCH, one warning for it, a summary, refusal."""
        old_ms = int(T_S * 1000) - 600_000
        broker = FakeBroker(open_orders=[ex_order("web_1", update_ms=old_ms)])
        r = make(Factory(broker), FakeClock())
        closing(r)
        assert r.poll(conn) is None and r.ready(WAIT_S)
        with capture_logs() as logs:
            out = r.poll(conn)
        assert (out.status, out.ok, out.trading_allowed) == ("MISMATCH", False, False)
        diffs = [e for e in logs if e["event"] == "reconcile.difference"]
        assert [(e["kind"], e["symbol"], e["client_order_id"], e["blocking"]) for e in diffs] == [
            ("EXTERNAL_ORDER", "BTCUSDT", "web_1", True)]
        assert [e["status"] for e in logs if e["event"] == "reconcile.done"] == ["MISMATCH"]
        assert r.counters()["reconcile_diff_EXTERNAL_ORDER"] == 1.0


    def test_refused_order_history_pages_are_counted_in_the_heartbeat(self, conn, closing):
        """The first run reads the order history; a malformed page (the ccxt broker refuses it
        whole and counts it, DecodeError) fails the run as UNREACHABLE, and the broker's count
        reaches the heartbeat as reconcile_all_orders_rejected (0 before any broker existed)."""

        class Refusing(FakeBroker):
            def __init__(self) -> None:
                super().__init__()
                self.counters = {"all_orders_rejected": 0}

            def all_orders(self, symbol, *, since_ms, until_ms):
                self.counters["all_orders_rejected"] += 1
                raise DecodeError("allOrders: the answer is not a list", reason="all_orders_shape")

        r = make(Factory(Refusing()), FakeClock())
        closing(r)
        assert r.counters()["reconcile_all_orders_rejected"] == 0.0
        out = run_once(r, conn)
        assert (out.status, out.error) == ("UNREACHABLE", "DecodeError: allOrders: the answer is not a list")
        assert r.counters()["reconcile_all_orders_rejected"] == 1.0


class TestRepairs:
    def test_repairs_reach_the_caller_and_are_counted_by_wire_type(self, conn, closing):
        """An exchange position we do not hold: one Position repair in the outcome, counted."""
        broker = FakeBroker(positions=[ex_position("SOLUSDT", "3", "150.5")])
        r = make(Factory(broker), FakeClock())
        closing(r)
        out = run_once(r, conn)
        assert (out.status, out.repairs) == ("REPAIRED", (
            wire.Position(symbol="SOLUSDT", qty=3.0, entry_price=150.5),))
        assert out.report.adopted == ("SOLUSDT",)
        c = r.counters()
        assert (c["reconcile_repair_POSITION"], c["reconcile_diff_EXTERNAL_POSITION"]) == (1.0, 1.0)

    def test_the_running_brain_is_told_after_the_repairs_are_written(self, conn, closing):
        """``apply_reconcile``: the repairs are written, then published, then one
        ``wire.Reconciled`` naming the repaired symbols goes out for the running brain."""
        from services.orchestrator.app import apply_reconcile
        from services.orchestrator.reconcile_diff import for_brain

        broker = FakeBroker(positions=[ex_position("SOLUSDT", "3", "150.5")])
        r = make(Factory(broker), FakeClock())
        closing(r)
        out = run_once(r, conn)
        told = for_brain(out.report)
        assert told == wire.Reconciled(status="REPAIRED", at_ms=1_700_000_000_000, symbols=("SOLUSDT",))
        events: list[tuple[str, object]] = []

        class Writer:
            def add(self, envs):
                events.append(("write", tuple(e.body for e in envs)))

            def flush(self):
                events.append(("flush", None))

        class Pub:
            def publish(self, body, event_ns=None):
                events.append(("publish", body))

        stats: dict[str, int] = {}
        apply_reconcile(out, Writer(), Pub(), stats)
        assert events == [("write", out.repairs), ("flush", None), *(("publish", b) for b in out.repairs),
                          ("publish", told)]
        assert stats["reconcile_repairs"] == 1

    def test_a_run_without_repairs_tells_the_brain_nothing(self, conn, closing):
        """OK: no ``wire.Reconciled`` (nothing changed in the journal)."""
        from services.orchestrator.reconcile_diff import for_brain

        r = make(Factory(), FakeClock())
        closing(r)
        assert for_brain(run_once(r, conn).report) is None

    def test_order_journaled_while_the_exchange_was_read_is_not_external(self, conn, closing):
        """Our order, placed and journaled after the first local snapshot, is open at the exchange:
        the diff reads the database again when the worker is done, so it is ours, not external."""
        gate = threading.Event()
        broker = FakeBroker(open_orders=[ex_order("c1")], gate=gate)
        r = make(Factory(broker), FakeClock())
        closing(r)
        assert r.poll(conn) is None and broker.entered.wait(WAIT_S)
        ns = int(T_S * 1e9) - 1_000_000_000
        req = wire.OrderRequest(client_order_id="c1", symbol="BTCUSDT", side="BUY", order_type="MARKET", qty=0.01)
        upd = wire.OrderUpdate(client_order_id="c1", exchange_order_id="101", symbol="BTCUSDT", status="ACKED")
        db.write_batch(conn, [row for i, b in enumerate((req, upd))
                              for row in db.rows_for(wire.Envelope(1, "brain:7", i + 1, ns, ns, b))])
        gate.set()
        assert r.ready(WAIT_S)
        out = r.poll(conn)
        assert (out.status, out.report.differences) == ("OK", ())


class TestClose:
    def test_close_stops_the_worker_and_closes_the_broker(self, conn):
        """Idle worker: close() ends the thread and the broker is closed by it."""
        factory = Factory()
        r = make(factory, FakeClock())
        run_once(r, conn)
        r.close()
        assert factory.broker.closed
        assert r.poll(conn) is None

    def test_close_returns_while_a_rest_call_hangs(self, conn):
        """A stuck REST call cannot hang shutdown: close() gives up after join_timeout_s and
        says so. It returns while the call is still stuck (the worker alive, the broker not
        yet closed), which a close that waited for the worker never could."""
        gate = threading.Event()
        factory = Factory(FakeBroker(gate=gate))
        r = make(factory, FakeClock(), join_timeout_s=0.2)
        assert r.poll(conn) is None and factory.broker.entered.wait(WAIT_S)
        with capture_logs() as logs:
            r.close()
        assert (r._thread.is_alive(), factory.broker.closed, gate.is_set()) == (True, False, False)
        assert [e for e in logs if e["event"] == "reconcile.close_timeout"] == [
            {"event": "reconcile.close_timeout", "timeout_s": 0.2, "log_level": "warning"}]
        gate.set()  # let the daemon worker finish instead of lingering until exit

    def test_close_before_any_poll_is_a_no_op(self):
        """Nothing was started, nothing to stop; the broker is never built."""
        factory = Factory()
        make(factory, FakeClock()).close()
        assert factory.calls == 0


class TestConfig:
    def test_lookback_shorter_than_two_intervals_is_refused(self):
        """A fill could fall between two runs' lookbacks: refuse the configuration (ConfigError)."""
        with pytest.raises(ConfigError, match="fills_lookback_ms"):
            make(Factory(), FakeClock(), interval_s=3600.0, fills_lookback_ms=3_600_000)


class TestExternalFillReportedOnce:
    """A fill of someone else's order stays in the exchange's fill window for an hour: it is
    flagged at the first run that sees it, remembered in the journal, and never again (also
    after a restart of the reconciler), while it stays listed as an open flag."""

    FILL_MS = int(T_S * 1000) - 600_000  # ten minutes before the first run: old enough to judge

    def writer(self, tmp_path):
        from services.orchestrator import journal as jn
        w = jn.JournalWriter(tmp_path / "aegis.sqlite3", jn.WriterConfig())
        assert w.open()
        return w

    def broker(self):
        from reconcile_fakes import ex_fill
        return FakeBroker(fills=[ex_fill("9001", eid="777", side="SELL", qty="0.002", price="43000.5",
                                         time_ms=self.FILL_MS)])

    def run_and_journal(self, r, w, clock_t, clock):
        from services.orchestrator.app import apply_reconcile

        clock.t = clock_t
        with capture_logs() as logs:
            out = run_once(r, w.conn)
            apply_reconcile(out, w, Pub(), {})
        return out, [e for e in logs if e["event"] == "reconcile.difference"]

    def test_two_runs_over_the_same_window_flag_the_fill_once(self, tmp_path, closing):
        """Run 1 flags EXTERNAL_FILL (one warning, one count, one journal row); run 2 sees the
        same fill in its window: no difference, status OK, the count stays 1, and the fill is
        still listed among the open flags (``Report.standing``, ``reconcile_flags_open``)."""
        w, clock = self.writer(tmp_path), FakeClock()
        r = make(Factory(self.broker()), clock)
        closing(r)
        first, warned = self.run_and_journal(r, w, T_S, clock)
        assert (first.status, [d.kind for d in first.report.flagged], len(warned)) == ("REPAIRED", ["EXTERNAL_FILL"], 1)
        assert first.report.flag_records == (wire.ExternalFill(
            symbol="BTCUSDT", trade_id="9001", exchange_order_id="777", client_order_id="", side="SELL",
            qty=0.002, price=43000.5, fee=0.05185212, fee_asset="USDT", time_ms=self.FILL_MS,
            detail="trade 9001 SELL 0.002 @ 43000.5, exchange order 777"),)
        second, warned = self.run_and_journal(r, w, T_S + 300.0, clock)
        assert (second.status, second.report.differences, second.report.flagged, warned) == ("OK", (), (), [])
        assert [(d.kind, d.symbol) for d in second.report.standing] == [("EXTERNAL_FILL", "BTCUSDT")]
        c = r.counters()
        assert (c["reconcile_diff_EXTERNAL_FILL"], c["reconcile_flags_open"]) == (1.0, 1.0)
        rows = w.conn.execute("SELECT symbol, trade_id, side, qty, price, time_ms FROM external_fills").fetchall()
        assert rows == [("BTCUSDT", "9001", "SELL", 0.002, 43000.5, self.FILL_MS)]
        w.close()

    def test_a_restarted_reconciler_does_not_flag_it_again(self, tmp_path, closing):
        """The memory is the journal, not the process: a new reconciler (an orchestrator
        restart, its first run reading the whole order history) over the same database and
        the same window reports nothing new and still lists the fill as an open flag."""
        w, clock = self.writer(tmp_path), FakeClock()
        r1 = make(Factory(self.broker()), clock)
        closing(r1)
        first, warned = self.run_and_journal(r1, w, T_S, clock)
        assert ([d.kind for d in first.report.flagged], len(warned)) == (["EXTERNAL_FILL"], 1)
        r1.close()
        w.close()
        w = self.writer(tmp_path)  # the orchestrator's new connection
        r2 = make(Factory(self.broker()), clock)
        closing(r2)
        again, warned = self.run_and_journal(r2, w, T_S + 120.0, clock)
        assert (again.status, again.report.flagged, again.report.flag_records, warned) == ("OK", (), (), [])
        assert [d.kind for d in again.report.standing] == ["EXTERNAL_FILL"]
        c = r2.counters()
        assert (c.get("reconcile_diff_EXTERNAL_FILL", 0.0), c["reconcile_flags_open"]) == (0.0, 1.0)
        w.close()


class Pub:
    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, body, event_ns=None) -> None:
        self.sent.append(body)
