"""The journal's store port (common/journal_store.py): the typed rows each question answers,
read from a real database written the way the orchestrator writes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from common import journal_store, wire
from common.errors import StoreError
from common.journal_store import AlgoRow, CandleRow, EntryPlanRow, OrderRow, SymbolRow
from services.orchestrator import db

T_MS = 1_733_011_200_000


def write(path: Path, *bodies: object) -> Path:
    """Journal ``bodies`` in order, one batch, the n-th at ``T_MS + n`` ms."""
    conn = db.connect(path)
    rows = [row for i, b in enumerate(bodies)
            for row in db.rows_for(wire.Envelope(wire.SCHEMA_VERSION, "brain:1", i + 1, (T_MS + i) * 1_000_000,
                                                 (T_MS + i) * 1_000_000, b))]
    db.write_batch(conn, rows)
    conn.close()
    return path


SIGNAL = wire.SignalGenerated(signal_id="s1", symbol="BTCUSDT", side="BUY", entry=100.0, stop=95.0, target=110.0,
                              confidence=0.6, cold=False, strategy="smc", features={"a": 1.5})
ENTRY = wire.OrderRequest(client_order_id="ae-1", symbol="BTCUSDT", side="BUY", order_type="MARKET", qty=0.5,
                          price=0.0, reduce_only=False, signal_id="s1")
FILLED = wire.OrderUpdate(client_order_id="ae-1", exchange_order_id="77", symbol="BTCUSDT", status="FILLED",
                          filled_qty=0.5, avg_price=101.0)
EXIT = wire.OrderRequest(client_order_id="ax-1", symbol="BTCUSDT", side="SELL", order_type="LIMIT", qty=0.5,
                         price=120.0, reduce_only=True, signal_id="s1")
FILL = wire.Fill(symbol="BTCUSDT", trade_id="t9", client_order_id="ax-1", exchange_order_id="78", side="SELL",
                 qty=0.1, price=120.0, fee=0.01, fee_asset="USDT", liquidity="MAKER")
STOP = wire.AlgoOrderUpdate(client_algo_id="as-1", symbol="BTCUSDT", side="SELL", order_type="STOP_MARKET",
                            trigger_price="95.0", state="LIVE", trade_id="s1", role="STOP", algo_id="5",
                            sent_ms=T_MS)
CANDLES = [wire.CandleClosed(symbol="BTCUSDT", interval_s=60, open_ms=T_MS + i * 60_000,
                             close_ms=T_MS + i * 60_000 + 59_999, open=1.0 + i, high=2.0 + i, low=0.5, close=1.5,
                             volume=3.0, quote_volume=4.0, trades=5, buy_volume=1.0) for i in range(3)]
RULES = wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0,
                        price_precision=2, quantity_precision=3)


@pytest.fixture
def journal(tmp_path):
    path = write(tmp_path / "j.sqlite3", SIGNAL, ENTRY, FILLED, EXIT, FILL, STOP, *CANDLES, RULES,
                 wire.ModelState(name="risk", version=3, state=b"{}"))
    with journal_store.read_only(path) as reader:
        yield reader


class TestReads:
    def test_orders_in_states_carry_their_fills(self, journal):
        """An open order comes back as one typed row with its journaled fill ids."""
        assert journal.orders_in_states(["NEW_LOCAL", "NEW"]) == [OrderRow(
            client_order_id="ax-1", exchange_order_id="", symbol="BTCUSDT", side="SELL", order_type="LIMIT",
            qty=0.5, price=120.0, reduce_only=True, status="NEW_LOCAL", filled_qty=0.0, avg_price=0.0,
            signal_id="s1", created_ns=(T_MS + 3) * 1_000_000, updated_ns=(T_MS + 3) * 1_000_000,
            fill_trade_ids=frozenset({"t9"}))]

    def test_entry_plans_join_the_signal(self, journal):
        """A filled entry is read with its signal's stop, target, confidence and features."""
        assert journal.entry_plans(["NEW_LOCAL"], 0) == [EntryPlanRow(
            client_order_id="ae-1", symbol="BTCUSDT", side="BUY", created_ns=(T_MS + 1) * 1_000_000,
            filled_qty=0.5, avg_price=101.0, signal_id="s1", stop=95.0, target=110.0, confidence=0.6,
            features='{"a":1.5}')]

    def test_ids_and_last_actions(self, journal):
        """Order ids since a time, the ids the journal knows, the newest update per symbol."""
        assert journal.order_ids_since((T_MS + 2) * 1_000_000) == frozenset({"ax-1"})
        assert journal.known_ids(["ae-1", "as-1", "zz"]) == frozenset({"ae-1", "as-1"})
        assert journal.known_ids([]) == frozenset()
        assert journal.last_order_update_ns(0) == {"BTCUSDT": (T_MS + 3) * 1_000_000}
        assert journal.closed_trade_ids() == frozenset()

    def test_protective_orders(self, journal):
        """A protective order comes back with its exact trigger text; its id is known."""
        assert journal.algo_orders_in_states(["LIVE"]) == [AlgoRow(
            client_algo_id="as-1", algo_id="5", symbol="BTCUSDT", side="SELL", order_type="STOP_MARKET",
            trigger_price="95.0", working_type="MARK_PRICE", close_position=True, trade_id="s1", role="STOP",
            state="LIVE", actual_order_id="", sent_ms=T_MS)]
        assert journal.algo_orders_in_states(["CANCELED"]) == []
        assert journal.algo_ids() == frozenset({"as-1"})

    def test_model_state(self, journal):
        """A saved state by name, all of them, and None for a name never saved."""
        assert journal.model_state("risk") == b"{}"
        assert journal.model_state("nope") is None
        assert journal.model_states() == {"risk": b"{}"}

    def test_candles_newest_n_oldest_first(self, journal):
        """``limit`` keeps the newest candles, returned oldest first; the window bounds hold."""
        assert journal.candle_symbols() == ["BTCUSDT"]
        got = journal.candles("BTCUSDT", 60, T_MS, T_MS + 10 * 60_000, 2)
        assert got == [CandleRow("BTCUSDT", T_MS + 60_000, T_MS + 119_999, 2.0, 3.0, 0.5, 1.5, 3.0, 4.0, 5, 1.0),
                       CandleRow("BTCUSDT", T_MS + 120_000, T_MS + 179_999, 3.0, 4.0, 0.5, 1.5, 3.0, 4.0, 5, 1.0)]
        assert journal.candles("BTCUSDT", 60, T_MS, T_MS + 60_000, 5) == [got[0]._replace(
            open_ms=T_MS, close_ms=T_MS + 59_999, open=1.0, high=2.0)]

    def test_symbol_rules(self, journal):
        """The symbols table as typed rows."""
        assert journal.symbol_rules() == [SymbolRow(symbol="BTCUSDT", tick_size=0.1, step_size=0.001,
                                                    min_qty=0.001, min_notional=100.0, price_precision=2,
                                                    quantity_precision=3)]


class TestFailures:
    def test_a_database_without_a_schema_raises_store_error(self, tmp_path):
        """A file with no tables: a question raises StoreError (not sqlite3's own error)."""
        path = tmp_path / "empty.sqlite3"
        sqlite3.connect(path).close()
        with journal_store.read_only(path) as journal, pytest.raises(StoreError, match="no such table: orders"):
            journal.order_ids_since(0)

    def test_a_database_from_before_protective_orders_has_none(self, tmp_path):
        """No algo_orders table: no protective orders and no ids, not an error."""
        path = tmp_path / "old.sqlite3"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.close()
        with journal_store.read_only(path) as journal:
            assert journal.algo_orders_in_states(["LIVE"]) == [] and journal.algo_ids() == frozenset()

    def test_an_absent_file_cannot_be_opened(self, tmp_path):
        """read_only never creates a database: an absent file is a StoreError."""
        with pytest.raises(StoreError), journal_store.read_only(tmp_path / "none.sqlite3") as journal:
            journal.order_ids_since(0)
        assert not (tmp_path / "none.sqlite3").exists()


REJECT = wire.RiskReject(symbol="ETHUSDT", reason="MAX_POSITIONS", detail="3 held", signal_id="e1")
TRADE = wire.TradeClosed(trade_id="tr1", symbol="BTCUSDT", side="BUY", qty=0.5, entry_price=101.0, exit_price=120.0,
                         stop=95.0, target=110.0, opened_ms=T_MS, closed_ms=T_MS + 9, pnl=9.5, fees=0.2,
                         outcome_r=1.5, exit_reason="TARGET", confidence=0.6, learned=True)
POSITION = wire.Position(symbol="BTCUSDT", qty=0.4, entry_price=101.0, unrealized_pnl=1.0, realized_pnl=2.0)


@pytest.fixture
def full(tmp_path):
    """A journal with one of everything the page, the report and reconciliation ask about."""
    path = write(tmp_path / "full.sqlite3", SIGNAL, ENTRY, FILLED, EXIT, FILL, STOP, REJECT, REJECT.__class__(
        symbol="SOLUSDT", reason="PAUSED", detail="paused", signal_id="s2"), REJECT.__class__(
        symbol="XRPUSDT", reason="PAUSED", detail="paused", signal_id="s3"), TRADE, POSITION,
        wire.ModelState(name=wire.RISK_STATE_NAME, version=1, state=b'{"halted": false}'))
    return path


class TestTheOtherReaders:
    def test_page_rows_for_the_dashboard(self, full):
        """The page's rows, newest first where the page shows them so, with the open position's
        plan and protection, the totals and the saved risk state; one read transaction."""
        limits = journal_store.PageLimits(orders=1, fills=5, signals=5, rejects=2, trades=5, controls=5)
        reader = journal_store.open_reader(full, shared=True)
        with reader.snapshot():
            page = reader.page(limits, terminal_statuses=("CANCELED", "FILLED"), risk_state_name=wire.RISK_STATE_NAME,
                               control_state_name=wire.CONTROL_STATE_NAME)
        reader.close()
        [pos] = page.positions
        assert (pos["symbol"], pos["qty"], pos["plan"]["signal_id"], pos["plan"]["stop"]) == ("BTCUSDT", 0.4, "s1", 95.0)
        assert [a["client_algo_id"] for a in pos["algos"]] == ["as-1"]
        assert [o["client_order_id"] for o in page.orders] == ["ax-1"]  # newest, LIMIT 1
        assert [f["trade_id"] for f in page.fills] == ["t9"]
        assert [(s["signal_id"], s["order_status"], s["reject_reason"]) for s in page.signals] == [
            ("s1", "FILLED", None)]
        assert page.rejects_by_reason == [("PAUSED", 2), ("MAX_POSITIONS", 1)]
        assert [r["signal_id"] for r in page.rejects] == ["s3", "s2"]
        assert [t["trade_id"] for t in page.trades] == ["tr1"] and page.controls == []
        assert page.totals == {"trades": 1, "realized_pnl": 9.5, "trade_fees": 0.2, "wins": 1, "fills": 1,
                               "fees": 0.01, "orders": 2, "open_orders": 1, "signals": 1, "risk_rejects": 3}
        assert page.risk_state == {"halted": False} and page.control_state is None

    def test_report_questions(self, full):
        """Tables, closed trades with an older database's defaults, counts, rejects by reason,
        fees: what aegis report reads."""
        with journal_store.read_only(full) as reader:
            assert {"signals", "orders", "fills", "trades", "risk_rejects"} <= reader.table_names()
            rows = reader.trade_rows(("trade_id", "pnl", "learned", "nope"), {"nope": "NULL"})
            assert rows == [{"trade_id": "tr1", "pnl": 9.5, "learned": 1, "nope": None}]
            assert reader.activity_counts() == {"signals": 1, "orders": 2, "fills": 1, "risk_rejects": 3,
                                                "positions_open": 1}
            assert reader.rejects_by_reason() == {"PAUSED": 2, "MAX_POSITIONS": 1}
            assert reader.fill_fees() == [0.01]

    def test_decisions_in_their_fixed_order(self, full):
        """A run's decisions: each table in its order, no publisher (a process identity)."""
        with journal_store.read_only(full) as reader:
            got = reader.decisions()
        assert [(d["type"], d.get("signal_id") or d.get("trade_id")) for d in got] == [
            ("signal", "s1"), ("order", "s1"), ("order", "s1"), ("fill", "t9"), ("trade", "tr1"),
            ("risk_reject", "e1"), ("risk_reject", "s2"), ("risk_reject", "s3")]
        assert got[0]["features"] == {"a": 1.5} and "publisher" not in got[-1]

    def test_reconciliations_local_side(self, full):
        """Orders to compare (open ones, terminal ones since a time), one order by id, the
        position rows, the fill keys since a time, the newest order's time."""
        conn = db.connect(full)  # the orchestrator asks on its own writer connection
        reader = journal_store.JournalReader(conn)
        open_only = reader.orders_to_compare(["FILLED", "CANCELED"], (T_MS + 100) * 1_000_000)
        assert [r.client_order_id for r in open_only] == ["ax-1"]
        both = reader.orders_to_compare(["FILLED", "CANCELED"], 0)
        assert sorted(r.client_order_id for r in both) == ["ae-1", "ax-1"]
        assert reader.order("ae-1") == journal_store.LocalOrderRow(
            "ae-1", "77", "BTCUSDT", "BUY", "FILLED", 0.5, 0.5, 101.0, (T_MS + 2) * 1_000_000)
        assert reader.order("zz") is None
        assert reader.position_rows() == [journal_store.PositionRow("BTCUSDT", 0.4, 101.0, 2.0,
                                                                    (T_MS + 10) * 1_000_000)]
        assert reader.fill_keys_since(0) == [("BTCUSDT", "t9", (T_MS + 4) * 1_000_000)]
        assert reader.fill_keys_since((T_MS + 5) * 1_000_000) == []
        assert reader.latest_order_ns() == (T_MS + 3) * 1_000_000
        conn.close()

    def test_clear_model_state_and_an_odd_path(self, tmp_path):
        """aegis risk --clear-halt's one write: the row goes, a second clear finds none; a path
        with '?' and '#' opens as itself."""
        path = write(tmp_path / "a?b#c.sqlite3", wire.ModelState(name="risk_state", version=1, state=b"{}"))
        assert journal_store.clear_model_state(path, "risk_state") is True
        assert journal_store.clear_model_state(path, "risk_state") is False
        reader = journal_store.open_reader(path)
        assert reader.model_state("risk_state") is None
        reader.close()
        with pytest.raises(StoreError):
            journal_store.open_reader(tmp_path / "absent.sqlite3").table_names()
