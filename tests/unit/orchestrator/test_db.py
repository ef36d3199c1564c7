"""Database: schema, WAL, idempotent journal writes."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from common import wire
from services.orchestrator import db


def env(body, seq=1):
    return wire.Envelope(wire.SCHEMA_VERSION, "brain:7", seq, 123, 124, body)


CANDLE = wire.CandleClosed(symbol="BTCUSDT", interval_s=60, open_ms=60_000, close_ms=119_999,
                           open=1.0, high=2.0, low=0.5, close=1.5, volume=4.0, trades=3)


class TestDatabase:
    def test_connect_uses_wal_and_full_sync(self, tmp_path):
        """The database is in WAL mode with synchronous=FULL (2)."""
        conn = db.connect(tmp_path / "a.sqlite3")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert db.integrity_ok(conn)

    def test_candle_written_once_even_if_delivered_twice(self, tmp_path):
        """A journal message replayed after a restart does not duplicate the candle."""
        conn = db.connect(tmp_path / "a.sqlite3")
        rows = db.rows_for(env(CANDLE))
        assert db.write_batch(conn, rows) == 1
        assert db.write_batch(conn, rows) == 0
        assert db.counts(conn)["candles"] == 1
        got = conn.execute("SELECT symbol, open_ms, close, trades FROM candles").fetchone()
        assert got == ("BTCUSDT", 60_000, 1.5, 3)

    def test_order_then_update_then_fill(self, tmp_path):
        """An order request, its update and its fill land in their tables, keyed exactly."""
        conn = db.connect(tmp_path / "a.sqlite3")
        big = str(2**62 + 3)
        msgs = [
            wire.OrderRequest(client_order_id="c1", symbol="BTCUSDT", side="BUY", order_type="MARKET", qty=0.01),
            wire.OrderUpdate(client_order_id="c1", exchange_order_id=big, symbol="BTCUSDT",
                             status="FILLED", filled_qty=0.01, avg_price=100.0),
            wire.Fill(client_order_id="c1", exchange_order_id=big, trade_id="77", symbol="BTCUSDT",
                      side="BUY", qty=0.01, price=100.0, fee=0.0004),
        ]
        rows = [r for i, m in enumerate(msgs) for r in db.rows_for(env(m, i + 1))]
        db.write_batch(conn, rows)
        assert conn.execute("SELECT status, exchange_order_id FROM orders").fetchone() == ("FILLED", big)
        assert conn.execute("SELECT trade_id, qty FROM fills").fetchone() == ("77", 0.01)

    def test_heartbeats_are_not_persisted(self):
        """Status messages produce no rows."""
        hb = wire.Heartbeat(service="feed", pid=1, uptime_s=1.0)
        assert db.rows_for(env(hb)) == []


class TestJournalSequences:
    def test_sequences_survive_a_reconnect_and_never_go_back(self, tmp_path):
        """The last sequence per stream is stored with the rows and only ever moves forward."""
        path = tmp_path / "a.sqlite3"
        conn = db.connect(path)
        db.write_batch(conn, db.sequence_rows({"brain:1-5/CANDLE_CLOSED": 7}))
        db.write_batch(conn, db.sequence_rows({"brain:1-5/CANDLE_CLOSED": 3, "feed:2-6/FILL": 1}))
        conn.close()
        assert db.load_sequences(db.connect(path)) == {"brain:1-5/CANDLE_CLOSED": 7, "feed:2-6/FILL": 1}

    def test_restarted_writer_counts_exactly_the_messages_it_never_wrote(self, tmp_path):
        """A tracker seeded from the database sees a gap of exactly the messages lost in between."""
        conn = db.connect(tmp_path / "a.sqlite3")
        db.write_batch(conn, db.sequence_rows({"brain:1-5/CANDLE_CLOSED": 10}))
        t = wire.SequenceTracker(count_initial=True)
        t.last.update(db.load_sequences(conn))
        assert t.observe("brain:1-5/CANDLE_CLOSED", 14) == 3


class TestControls:
    REQ = wire.Control(request_id="0123456789abcdef", command=wire.ControlCommand.CLOSE, symbol="BTCUSDT",
                       requested_ms=1_000, client="127.0.0.1", via="api")

    def test_request_then_answer_is_one_row_with_the_answer(self, tmp_path):
        """The dashboard's REQUESTED and the brain's DONE share a row, keyed by the request id."""
        conn = db.connect(tmp_path / "a.sqlite3")
        done = msgspec.structs.replace(self.REQ, status=wire.ControlStatus.DONE, detail="exit sent (ax-s-1)")
        db.write_batch(conn, db.rows_for(env(self.REQ, 1)) + db.rows_for(env(done, 2)))
        assert conn.execute("SELECT request_id, command, symbol, client, via, requested_ms, status, detail"
                            " FROM controls").fetchall() == [
            ("0123456789abcdef", "CLOSE", "BTCUSDT", "127.0.0.1", "api", 1_000, "DONE", "exit sent (ax-s-1)")]

    def test_a_late_request_never_overwrites_the_answer(self, tmp_path):
        """Two senders, either order: the status only moves forward from REQUESTED."""
        conn = db.connect(tmp_path / "a.sqlite3")
        refused = msgspec.structs.replace(self.REQ, status=wire.ControlStatus.REFUSED, detail="no open position")
        db.write_batch(conn, db.rows_for(env(refused, 1)))
        db.write_batch(conn, db.rows_for(env(self.REQ, 2)))
        assert conn.execute("SELECT status, detail FROM controls").fetchall() == [("REFUSED", "no open position")]
        assert db.counts(conn)["controls"] == 1
class SelfRollingBack:
    """A connection whose COMMIT fails after SQLite rolled the transaction back itself, as it
    does on SQLITE_FULL (seen on a real full tmpfs: ``in_transaction`` is False afterwards)."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def execute(self, sql, params=()):
        if sql == "COMMIT":
            self._conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, params)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


class TestWriteBatchErrors:
    def test_the_real_error_survives_a_transaction_sqlite_already_rolled_back(self, tmp_path):
        """write_batch raises "database or disk is full", not "cannot rollback - no transaction is active"."""
        conn = db.connect(tmp_path / "a.sqlite3")
        with pytest.raises(sqlite3.OperationalError, match="^database or disk is full$"):
            db.write_batch(SelfRollingBack(conn), db.rows_for(env(CANDLE)))
        assert db.counts(conn)["candles"] == 0 and not conn.in_transaction


OLD_TRADES = """CREATE TABLE trades (
    trade_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL,
    entry_price REAL NOT NULL, exit_price REAL NOT NULL, stop REAL NOT NULL,
    target REAL NOT NULL, opened_ms INTEGER NOT NULL, closed_ms INTEGER NOT NULL,
    pnl REAL NOT NULL, fees REAL NOT NULL, outcome_r REAL NOT NULL, exit_reason TEXT NOT NULL,
    confidence REAL NOT NULL, learned INTEGER NOT NULL,
    PRIMARY KEY (trade_id, closed_ms)
) WITHOUT ROWID"""

CLOSED = wire.TradeClosed(trade_id="sig-1", symbol="BTCUSDT", side="BUY", qty=0.01, entry_price=59000.0,
                          exit_price=59500.0, stop=58000.0, target=61000.0, opened_ms=1, closed_ms=2, pnl=4.941,
                          fees=0.59, outcome_r=0.4941, exit_reason="TARGET", learned=True, funding=-0.059)


class TestTradesFunding:
    def test_a_new_database_journals_a_trades_funding(self, tmp_path):
        """TRADE_CLOSED.funding lands in trades.funding."""
        conn = db.connect(tmp_path / "a.sqlite3")
        db.write_batch(conn, db.rows_for(env(CLOSED)))
        assert conn.execute("SELECT funding, pnl FROM trades").fetchall() == [(-0.059, 4.941)]

    def test_a_database_from_before_funding_gets_the_column_and_keeps_its_rows(self, tmp_path):
        """The old trades table gains funding (0 for its rows) at connect, then takes new rows."""
        path = tmp_path / "old.sqlite3"
        old = sqlite3.connect(path)
        old.execute(OLD_TRADES)
        old.execute("INSERT INTO trades VALUES ('sig-0','BTCUSDT','BUY',1,1,2,0.5,3,1,2,1,0,1,'TARGET',0.5,1)")
        old.commit()
        old.close()
        conn = db.connect(path)
        db.write_batch(conn, db.rows_for(env(CLOSED)))
        assert conn.execute("SELECT trade_id, funding FROM trades ORDER BY trade_id").fetchall() == [
            ("sig-0", 0.0), ("sig-1", -0.059)]
        conn.close()
        assert db.connect(path).execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 2  # connect twice: fine


class TestExternalFills:
    FILL = wire.ExternalFill(symbol="BTCUSDT", trade_id="9001", exchange_order_id="777", side="SELL", qty=0.002,
                             price=43000.5, time_ms=1_700_000_000_000, detail="trade 9001")

    def test_the_first_report_is_kept_and_a_second_changes_nothing(self, tmp_path):
        """EXTERNAL_FILL lands in external_fills once; the same trade again keeps the first row."""
        conn = db.connect(tmp_path / "a.sqlite3")
        db.write_batch(conn, db.rows_for(env(self.FILL)))
        db.write_batch(conn, db.rows_for(wire.Envelope(wire.SCHEMA_VERSION, "x:1", 2, 999, 999, self.FILL)))
        assert conn.execute("SELECT symbol, trade_id, qty, price, time_ms, reported_ns FROM external_fills").fetchall() \
            == [("BTCUSDT", "9001", 0.002, 43000.5, 1_700_000_000_000, 123)]

    def test_a_version_4_database_gets_the_table_and_version_5(self, tmp_path):
        """A database made before external_fills (schema 4) gains the table at connect and its
        recorded version moves to 5; its rows stay."""
        path = tmp_path / "old.sqlite3"
        old = sqlite3.connect(path)
        old.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                          "INSERT INTO meta VALUES ('schema_version', '4');" + OLD_TRADES + ";"
                          "INSERT INTO trades VALUES ('sig-0','BTCUSDT','BUY',1,1,2,0.5,3,1,2,1,0,1,'TARGET',0.5,1);")
        old.close()
        conn = db.connect(path)
        db.write_batch(conn, db.rows_for(env(self.FILL)))
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("5",)
        assert (db.counts(conn)["external_fills"], db.counts(conn)["trades"]) == (1, 1)
