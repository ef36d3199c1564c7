"""The journal writer on a disk that refuses writes: messages kept in order, retried with
backoff, written exactly once when space returns, synchronous requests never acknowledged
unless committed, the bound, the spill at stop, and the trading permission.

The full disk is the test-only hook (``storage.FaultInjection``): while a flag file exists
every write raises SQLite's own "database or disk is full". The clock is the test's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from common import wire
from services.orchestrator import db, storage
from services.orchestrator import journal as jn
from services.orchestrator.storage import StorageFault

FREE = 12_288  # what the fake statvfs says is left


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


class Rig:
    def __init__(self, tmp: Path, **cfg) -> None:
        self.flag = tmp / "disk-full"
        self.path = tmp / "aegis.sqlite3"
        self.clock = Clock()
        self.seq: dict[str, int] = {}
        self.writer = jn.JournalWriter(self.path, jn.WriterConfig(**{"batch": 100, **cfg}), clock=self.clock,
                                       connect=lambda p: storage.FaultInjection(db.connect(p), self.flag),
                                       free_bytes=lambda p: FREE)
        assert self.writer.open()

    def env(self, body, publisher: str = "brain:1-1") -> wire.Envelope:
        key = f"{publisher}/{type(body).__name__}"
        self.seq[key] = self.seq.get(key, 0) + 1
        return wire.Envelope(wire.SCHEMA_VERSION, publisher, self.seq[key], 5_000, 5_001, body)

    def full(self, on: bool = True) -> None:
        if on:
            self.flag.touch()
        else:
            self.flag.unlink()

    def count(self, table: str) -> int:
        return self.writer.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names


def candle(i: int) -> wire.CandleClosed:
    return wire.CandleClosed(symbol="BTCUSDT", interval_s=60, open_ms=i * 60_000, close_ms=i * 60_000 + 59_999,
                             open=1.0, high=2.0, low=0.5, close=1.5, volume=4.0)


def fill(i: int) -> wire.Fill:
    return wire.Fill(client_order_id=f"ax-S{i}-1", exchange_order_id=str(900 + i), trade_id=str(i), symbol="BTCUSDT",
                     side="SELL", qty=0.01, price=100.0)


def order(i: int, reduce_only: bool) -> wire.OrderRequest:
    prefix = "ax" if reduce_only else "ae"
    return wire.OrderRequest(client_order_id=f"{prefix}-S{i}-0", symbol="BTCUSDT",
                             side="SELL" if reduce_only else "BUY", order_type="MARKET", qty=0.01,
                             reduce_only=reduce_only, signal_id=f"S{i}")


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.writer.close()


class TestDiskFull:
    def test_kept_messages_are_written_once_in_order_when_space_returns(self, rig):
        """Messages refused by a full disk wait in memory; when space returns each is written
        exactly once and the journal's sequence bookkeeping is exactly as without the fault."""
        w = rig.writer
        w.add([rig.env(candle(1)), rig.env(candle(2))])
        assert w.flush() == 2 and w.ok
        rig.full()
        refused = [rig.env(candle(3)), rig.env(fill(1)), rig.env(order(1, True)), rig.env(fill(2))]
        w.add(refused)
        assert w.flush() == 0
        assert (w.ok, w.fault.reason, len(w.pending)) == (False, StorageFault.DISK_FULL, 4)
        assert (rig.count("candles"), rig.count("fills"), rig.count("orders")) == (2, 0, 0)
        w.add([rig.env(candle(4))])  # new messages queue behind the kept ones
        rig.full(False)
        assert w.flush() == 0  # the retry is not due yet: nothing is tried
        rig.clock.t += 0.5
        assert w.flush() == 5 and w.ok and not w.pending
        assert (rig.count("candles"), rig.count("fills"), rig.count("orders")) == (4, 2, 1)
        assert db.load_sequences(w.conn) == {"brain:1-1/CANDLE_CLOSED": 4, "brain:1-1/FILL": 2,
                                              "brain:1-1/ORDER_REQUEST": 1}
        st = w.status()
        assert (st["state"], st["kept"], st["written_late"], st["faults"], st["dropped_candles"]) == ("OK", 5, 5, 1, 0)
        assert w.flush() == 0  # nothing written twice

    def test_retries_back_off_doubling_to_the_cap(self, rig):
        """Each failed retry doubles the wait (0.5 s, 1, 2, 4, 8, then 10 s); a retry before its time tries nothing."""
        w = rig.writer
        rig.full()
        w.add([rig.env(candle(1))])
        w.flush()
        waits = []
        for _ in range(6):
            waits.append(round(w.next_retry_s - rig.clock.t, 6))
            rig.clock.t = w.next_retry_s - 0.001
            w.flush()
            rig.clock.t = w.next_retry_s
            w.flush()
        assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
        assert w.counters["retries"] == 6
        assert w.conn.injected == 7  # one write per attempt

    def test_one_error_line_names_the_file_the_free_space_and_what_was_refused(self, rig):
        """Going DEGRADED logs exactly one error with the file, the free bytes and what could not be
        written; failed retries warn at most once a minute; recovery says so once."""
        w = rig.writer
        rig.full()
        with capture_logs() as logs:
            w.add([rig.env(candle(1)), rig.env(fill(1))])
            w.flush()
            for _ in range(3):
                rig.clock.t = w.next_retry_s
                w.flush()
            rig.full(False)
            rig.clock.t = w.next_retry_s
            w.flush()
        errors = [e for e in logs if e["log_level"] == "error"]
        assert len(errors) == 1
        e = errors[0]
        assert (e["event"], e["reason"], e["db"], e["free_bytes"], e["could_not_write"], e["error"]) == (
            "orchestrator.journal_write_failed", "JOURNAL_DISK_FULL", str(rig.path), FREE,
            "2 messages: 1 CANDLE_CLOSED, 1 FILL", "database or disk is full")
        assert [x["event"] for x in logs if x["log_level"] == "warning"] == ["orchestrator.journal_still_failing"]
        assert [x["event"] for x in logs if x["log_level"] == "info"] == ["orchestrator.journal_recovered"]

    def test_a_failing_group_is_halved_so_whatever_fits_is_written(self, rig):
        """After a failure the next group is half the size (down to one message), then grows back."""
        w = rig.writer
        assert w.group == 100
        rig.full()
        w.add([rig.env(candle(i)) for i in range(1, 4)])
        for expected in (50, 25, 12):
            w.flush()
            assert w.group == expected
            rig.clock.t = w.next_retry_s
        rig.full(False)
        assert w.flush() == 3 and w.group == 24

    def test_a_bug_is_not_a_storage_fault(self, rig):
        """Any other database error is raised as before (no silent keeping)."""
        w = rig.writer
        w.add([rig.env(candle(1))])
        w.pending[0] = jn.Item(env=w.pending[0].env, rows=(("INSERT INTO nowhere VALUES (1)", ()),), stream=None)
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            w.flush()
        assert w.ok


class TestSynchronous:
    def test_nothing_is_acknowledged_that_is_not_committed(self, rig):
        """While the disk is full an entry is refused without a try, an exit is tried and refused
        (not kept: its sender journals it through the buffered path), and both succeed once it is not."""
        w = rig.writer
        rig.full()
        entry, exit_ = rig.env(order(1, False)), rig.env(order(2, True))
        assert w.write_sync(exit_, "s/ORDER_REQUEST") == "JOURNAL_DISK_FULL"
        assert w.conn.injected == 1 and not w.ok and not w.pending
        assert w.write_sync(entry, "s/ORDER_REQUEST") == "JOURNAL_DISK_FULL"
        assert w.conn.injected == 1  # an entry during a fault is not even tried
        assert rig.count("orders") == 0
        rig.full(False)
        assert w.write_sync(exit_, "s/ORDER_REQUEST") == ""
        assert w.next_retry_s == rig.clock.t  # it took a write: the kept ones are tried now
        w.flush()  # nothing kept: a one-row check finds the disk writable again
        assert w.ok
        assert w.write_sync(entry, "s/ORDER_REQUEST") == ""
        assert rig.count("orders") == 2 and w.counters["sync_refused_storage"] == 2


class TestBound:
    def test_past_the_bound_the_oldest_candles_go_and_money_messages_stay(self, tmp_path):
        """Over ``max_pending`` the oldest candles are dropped down to 90 % of the bound (counted);
        fills are never dropped, even past the bound."""
        r = Rig(tmp_path, max_pending=10)
        w = r.writer
        r.full()
        w.add([r.env(candle(i)) for i in range(1, 7)] + [r.env(fill(i)) for i in range(1, 5)])
        w.flush()
        assert len(w.pending) == 10
        w.add([r.env(fill(5))])  # 11 > 10: drop the 2 oldest candles (down to 9)
        kept = [(type(it.env.body).__name__, it.env.seq) for it in w.pending]
        assert kept == [("CandleClosed", 3), ("CandleClosed", 4), ("CandleClosed", 5), ("CandleClosed", 6),
                        ("Fill", 1), ("Fill", 2), ("Fill", 3), ("Fill", 4), ("Fill", 5)]
        assert w.counters["dropped_candles"] == 2
        w.add([r.env(fill(i)) for i in range(6, 12)])  # 15: 4 candles dropped, 11 fills kept past the bound
        assert [type(it.env.body).__name__ for it in w.pending] == ["Fill"] * 11
        assert w.counters["dropped_candles"] == 6
        r.full(False)
        r.clock.t = w.next_retry_s
        assert w.flush() == 11
        assert (r.count("fills"), r.count("candles")) == (11, 0)
        w.close()


class TestStartAndStop:
    def test_a_database_that_cannot_be_opened_starts_degraded_and_is_opened_later(self, tmp_path):
        """A disk that refuses even the schema: DEGRADED from the start, messages kept, written
        once the database opens; the journal's stored sequences are read on that connection."""
        attempts = []

        def connect(p):
            attempts.append(p)
            if len(attempts) < 3:
                raise sqlite3.OperationalError("database or disk is full")
            return db.connect(p)

        seen: list[dict] = []
        clock = Clock()
        w = jn.JournalWriter(tmp_path / "a.sqlite3", jn.WriterConfig(), connect=connect, clock=clock,
                             on_connect=lambda c: seen.append(db.load_sequences(c)), free_bytes=lambda p: 0)
        assert not w.open() and w.fault.reason is StorageFault.DISK_FULL
        e = wire.Envelope(wire.SCHEMA_VERSION, "brain:1-1", 1, 1, 2, fill(1))
        assert w.write_sync(e, "x/FILL") == "JOURNAL_DISK_FULL"
        w.add([e])
        clock.t = w.next_retry_s
        assert w.flush() == 0 and len(attempts) == 2
        clock.t = w.next_retry_s
        assert w.flush() == 1 and w.ok and seen == [{}]
        assert db.load_sequences(w.conn) == {"brain:1-1/FILL": 1}
        w.close()

    def test_kept_messages_go_to_the_spill_directory_at_stop_and_in_at_the_next_start_once(self, tmp_path):
        """At stop the kept messages are spilled; the next writer applies them before anything new,
        exactly once (the file's "applied" mark commits with its last message)."""
        spill = tmp_path / "spill"
        r = Rig(tmp_path, spill_dir=str(spill))
        r.full()
        r.writer.add([r.env(candle(1)), r.env(fill(1)), r.env(fill(2))])
        r.writer.flush()
        r.writer.spill()
        assert r.writer.counters["spilled_at_stop"] == 3 and not r.writer.pending
        r.writer.close()
        files = list(spill.glob("journal-spill-*.bin"))
        assert len(files) == 1
        envs, bad = jn.read_spill(files[0])
        assert ([type(e.body).__name__ for e in envs], bad) == (["CandleClosed", "Fill", "Fill"], 0)
        r.full(False)
        again = Rig(tmp_path, spill_dir=str(spill))
        w = again.writer
        assert [type(it.env.body).__name__ for it in w.pending] == ["CandleClosed", "Fill", "Fill"]
        w.add([again.env(fill(3), publisher="brain:2-2")])
        assert w.flush() == 4
        assert (again.count("candles"), again.count("fills")) == (1, 3)
        assert db.load_sequences(w.conn) == {"brain:1-1/CANDLE_CLOSED": 1, "brain:1-1/FILL": 2, "brain:2-2/FILL": 1}
        assert not list(spill.glob("journal-spill-*.bin"))
        assert w.conn.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'spill_applied:%'").fetchone() == (1,)
        w.close()

    def test_without_a_spill_directory_the_stop_says_what_is_lost(self, rig):
        """No spill directory: what is still kept at stop is counted lost and logged by type."""
        rig.full()
        rig.writer.add([rig.env(candle(1)), rig.env(fill(1))])
        rig.writer.flush()
        with capture_logs() as logs:
            rig.writer.spill()
        assert rig.writer.counters["lost_at_stop"] == 2
        assert [(x["event"], x["messages"]) for x in logs] == [
            ("orchestrator.journal_lost_at_stop", "2 messages: 1 CANDLE_CLOSED, 1 FILL")]

    def test_a_torn_spill_file_gives_what_it_holds_and_counts_the_rest(self, tmp_path):
        """A spill file cut short yields its whole records and one unreadable one."""
        envs = [wire.Envelope(wire.SCHEMA_VERSION, "brain:1-1", i, 1, 2, fill(i)) for i in (1, 2)]
        path = jn.write_spill(tmp_path, envs)
        path.write_bytes(path.read_bytes()[:-3])
        got, bad = jn.read_spill(path)
        assert (got, bad) == (envs[:1], 1)


class TestPure:
    def test_retry_delay(self):
        """0.5 s doubling up to 10 s."""
        cfg = jn.WriterConfig()
        assert [jn.retry_delay_s(cfg, n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]

    def test_permission_names_the_journal_fault_first(self):
        """A journal fault halts entries with its reason and detail; reconciliation comes next."""
        f = jn.Fault(reason=StorageFault.DISK_FULL, error="database or disk is full", db="/d/a.sqlite3",
                     free_bytes=4096, since_s=0.0, what="1 message: 1 FILL")
        assert jn.permission(f, False, "MISMATCH") == wire.TradingPermission(
            allowed=False, reason="JOURNAL_DISK_FULL",
            detail="cannot write /d/a.sqlite3: database or disk is full (4,096 bytes free)")
        assert jn.permission(None, False, "MISMATCH") == wire.TradingPermission(
            allowed=False, reason="RECONCILE_MISMATCH", detail="reconciliation MISMATCH: not trading until it passes")
        assert jn.permission(None, True) == wire.TradingPermission(allowed=True)
        assert jn.permission(None, None) == wire.TradingPermission(allowed=True)

    def test_sequence_marks_take_the_last_of_each_stream(self):
        """The bookkeeping rows of a group: the highest sequence per stream, none for repairs."""
        items = [jn.item_for(wire.Envelope(wire.SCHEMA_VERSION, p, s, 1, 2, fill(s))) for p, s in
                 (("a:1", 3), ("a:1", 4), ("b:2", 1), ("orchestrator:reconcile", 0))]
        assert jn.sequence_marks(items) == {"a:1/FILL": 4, "b:2/FILL": 1}
