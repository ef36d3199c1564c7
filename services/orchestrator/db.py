"""The database: SQLite in WAL mode, one file, written only by the orchestrator (the rows of
each journal message; the tables themselves are ``common/journal_store.py``).

Durability choice: the connection runs ``synchronous=FULL`` (every commit is fsync'd to the
WAL before it returns). Journal messages arrive in batches and are committed once per
batch, so the fsync cost is paid per batch, not per row. Orders, fills and positions must
survive a crash (they are money); candles and signals could be rebuilt, but sharing one
connection keeps the ordering simple and the batch commit makes FULL cheap enough.

Every insert is idempotent (``INSERT OR IGNORE`` on a natural key, or an upsert), so a
journal message delivered twice after a restart never duplicates a row.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Iterable

import msgspec

from common import journal_store, wire

# the schema (tables, columns added later, the writer's connection) lives with the journal's
# read queries in ``common/journal_store.py``: the brain reads through it, the orchestrator
# writes through here
SCHEMA = journal_store.SCHEMA
SCHEMA_VERSION = journal_store.SCHEMA_VERSION
ADDED_COLUMNS = journal_store.ADDED_COLUMNS
connect = journal_store.connect

Row = tuple[str, tuple[Any, ...]]

_CANDLE_SQL = ("INSERT OR IGNORE INTO candles VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
_SIGNAL_SQL = ("INSERT OR IGNORE INTO signals VALUES (?,?,?,?,?,?,?,?,?,?,?)")
_ORDER_SQL = ("INSERT OR IGNORE INTO orders(client_order_id, exchange_order_id, symbol, side,"
              " order_type, qty, price, reduce_only, status, signal_id, created_ns, updated_ns)"
              " VALUES (?,?,?,?,?,?,?,?,'NEW_LOCAL',?,?,?)")
_ORDER_UPDATE_SQL = ("UPDATE orders SET exchange_order_id=?, status=?, filled_qty=?, avg_price=?,"
                     " updated_ns=? WHERE client_order_id=?")
_FILL_SQL = ("INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?,?,?,?,?)")
_POSITION_SQL = ("INSERT INTO positions VALUES (?,?,?,?,?,?) ON CONFLICT(symbol) DO UPDATE SET"
                 " qty=excluded.qty, entry_price=excluded.entry_price,"
                 " unrealized_pnl=excluded.unrealized_pnl, realized_pnl=excluded.realized_pnl,"
                 " updated_ns=excluded.updated_ns")
# the first report of an external fill is kept: a later one of the same trade changes nothing
_EXTERNAL_FILL_SQL = "INSERT OR IGNORE INTO external_fills VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
_REJECT_SQL = "INSERT OR IGNORE INTO risk_rejects VALUES (?,?,?,?,?,?,?)"
_TRADE_SQL = ("INSERT OR IGNORE INTO trades (trade_id, symbol, side, qty, entry_price, exit_price, stop, target,"
              " opened_ms, closed_ms, pnl, fees, outcome_r, exit_reason, confidence, learned, funding,"
              " signal_price, slippage_bps)"
              " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_SYMBOL_COLUMNS = (*journal_store.SYMBOL_ROW_COLUMNS, "updated_ns")
_SYMBOL_SQL = (f"INSERT INTO symbols ({', '.join(_SYMBOL_COLUMNS)}) VALUES ({', '.join('?' * len(_SYMBOL_COLUMNS))})"
               " ON CONFLICT(symbol) DO UPDATE SET "
               + ", ".join(f"{c}=excluded.{c}" for c in _SYMBOL_COLUMNS[1:]))
# one row per clientAlgoId; ids the exchange gave are never blanked by a later message
_ALGO_SQL = ("INSERT INTO algo_orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(client_algo_id)"
             " DO UPDATE SET state=excluded.state, trigger_price=excluded.trigger_price,"
             " algo_id=CASE WHEN excluded.algo_id != '' THEN excluded.algo_id ELSE algo_orders.algo_id END,"
             " actual_order_id=CASE WHEN excluded.actual_order_id != '' THEN excluded.actual_order_id"
             " ELSE algo_orders.actual_order_id END, sent_ms=max(algo_orders.sent_ms, excluded.sent_ms),"
             " reason=excluded.reason, updated_ns=excluded.updated_ns")
# an operator's command: one row per request; its status only moves forward (the dashboard's
# REQUESTED and the brain's DONE/REFUSED come from two senders and may arrive in either order)
_CONTROL_SQL = ("INSERT INTO controls VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(request_id) DO UPDATE SET"
                " status=excluded.status, detail=excluded.detail, updated_ns=excluded.updated_ns"
                " WHERE controls.status = 'REQUESTED'")
# a model state only moves forward: an older version delivered late never overwrites a newer
_MODEL_SQL = ("INSERT INTO model_state VALUES (?,?,?,?) ON CONFLICT(name) DO UPDATE SET"
              " version=excluded.version, state=excluded.state, updated_ns=excluded.updated_ns"
              " WHERE excluded.version >= model_state.version")


def rows_for(env: wire.Envelope) -> list[Row]:
    """The SQL statements that persist one journal message (pure: no connection here)."""
    b = env.body
    t = env.event_ns
    if isinstance(b, wire.CandleClosed):
        return [(_CANDLE_SQL, (b.symbol, b.interval_s, b.open_ms, b.close_ms, b.open, b.high,
                               b.low, b.close, b.volume, b.quote_volume, b.trades, b.buy_volume))]
    if isinstance(b, wire.SignalGenerated):
        return [(_SIGNAL_SQL, (b.signal_id, t, b.symbol, b.side, b.entry, b.stop, b.target,
                               b.confidence, int(b.cold), b.strategy,
                               msgspec.json.encode(b.features).decode()))]
    if isinstance(b, wire.OrderRequest):
        return [(_ORDER_SQL, (b.client_order_id, None, b.symbol, b.side, b.order_type, b.qty,
                              b.price, int(b.reduce_only), b.signal_id, t, t))]
    if isinstance(b, wire.OrderUpdate):
        return [(_ORDER_UPDATE_SQL, (b.exchange_order_id, b.status, b.filled_qty, b.avg_price,
                                     t, b.client_order_id))]
    if isinstance(b, wire.Fill):
        return [(_FILL_SQL, (b.symbol, b.trade_id, b.client_order_id, b.exchange_order_id,
                             b.side, b.qty, b.price, b.fee, b.fee_asset, b.liquidity, t))]
    if isinstance(b, wire.Position):
        return [(_POSITION_SQL, (b.symbol, b.qty, b.entry_price, b.unrealized_pnl,
                                 b.realized_pnl, t))]
    if isinstance(b, wire.RiskReject):
        return [(_REJECT_SQL, (t, env.publisher, env.seq, b.symbol, b.reason, b.detail,
                               b.signal_id))]
    if isinstance(b, wire.TradeClosed):
        return [(_TRADE_SQL, (b.trade_id, b.symbol, b.side, b.qty, b.entry_price, b.exit_price,
                              b.stop, b.target, b.opened_ms, b.closed_ms, b.pnl, b.fees,
                              b.outcome_r, b.exit_reason, b.confidence, int(b.learned), b.funding,
                              b.signal_price, b.slippage_bps))]
    if isinstance(b, wire.ModelState):
        return [(_MODEL_SQL, (b.name, b.version, b.state, t))]
    if isinstance(b, wire.SymbolInfo):
        return [(_SYMBOL_SQL, (*(getattr(b, c) for c in journal_store.SYMBOL_ROW_COLUMNS), t))]
    if isinstance(b, wire.AlgoOrderUpdate):
        return [(_ALGO_SQL, (b.client_algo_id, b.algo_id, b.symbol, b.side, b.order_type, b.trigger_price,
                             b.working_type, int(b.close_position), b.trade_id, b.role, b.state,
                             b.actual_order_id, b.sent_ms, b.reason, t, t))]
    if isinstance(b, wire.Control):
        return [(_CONTROL_SQL, (b.request_id, b.command.value, b.symbol, b.client, b.via, b.requested_ms,
                                b.status.value, b.detail, t, t))]
    if isinstance(b, wire.ExternalFill):
        return [(_EXTERNAL_FILL_SQL, (b.symbol, b.trade_id, b.exchange_order_id, b.client_order_id, b.side, b.qty,
                                      b.price, b.fee, b.fee_asset, b.time_ms, b.detail, t))]
    return []  # heartbeats and status are not persisted


_SEQ_SQL = ("INSERT INTO journal_seq VALUES (?, ?) ON CONFLICT(stream) DO UPDATE SET"
            " seq = max(seq, excluded.seq)")


def sequence_rows(last: dict[str, int]) -> list[Row]:
    """Statements that record the last sequence of each journal stream (same transaction as
    its rows: after a crash the orchestrator knows exactly which messages it never wrote)."""
    return [(_SEQ_SQL, (k, v)) for k, v in last.items()]


def load_sequences(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT stream, seq FROM journal_seq").fetchall())


def write_batch(conn: sqlite3.Connection, rows: Iterable[Row]) -> int:
    """Apply statements in one transaction (one fsync). Returns rows changed.

    On any error nothing of the batch stays written and the original error is raised: SQLite
    may already have rolled the transaction back itself (it does on SQLITE_FULL), and a
    second ROLLBACK would then raise "no transaction is active" in place of the real cause."""
    changed = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in rows:
            changed += conn.execute(sql, params).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the first error is the one that matters
        raise
    return changed


def integrity_ok(conn: sqlite3.Connection) -> bool:
    return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    tables = ("candles", "signals", "orders", "fills", "positions", "risk_rejects", "trades", "algo_orders",
              "controls", "external_fills")
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}  # noqa: S608 - fixed names
