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
