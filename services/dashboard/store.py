"""The journal database, read-only: what the page shows of orders, fills, positions and the rest.

The orchestrator is the database's only writer; the dashboard opens it ``mode=ro`` (SQLite in
WAL mode: readers never block the writer, and see the last committed transaction). Every
read of one refresh runs in one read transaction, so the page never mixes two moments (a
fill without its order, a total without its rows).

``read`` returns plain rows (``DbView``); ``model`` turns them into the page.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import wire
from services.dashboard import config as dc
from venue.orders import TERMINAL

RISK_STATE_NAME = wire.RISK_STATE_NAME  # the brain's kill-switch row in model_state
TERMINAL_ORDER_STATUSES = tuple(sorted(s.value for s in TERMINAL))  # as the orders table spells them


@dataclass(frozen=True, kw_only=True)
class DbView:
    positions: list[dict[str, Any]] = field(default_factory=list)  # open ones, with their plan and protection
    orders: list[dict[str, Any]] = field(default_factory=list)  # newest first
    fills: list[dict[str, Any]] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    rejects_by_reason: list[tuple[str, int]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)  # oldest first (the curve's order)
    controls: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    risk_state: dict[str, Any] | None = None
    control_state: dict[str, Any] | None = None


def connect(path: Path) -> sqlite3.Connection | None:
    """A read-only connection, None while the database does not exist yet."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0, check_same_thread=False,
                           isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def _rows(conn: sqlite3.Connection, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sql, params).fetchall()]


def _state(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT state FROM model_state WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    try:
        out = json.loads(bytes(row[0]))
        return out if isinstance(out, dict) else {"unreadable": True}
    except ValueError:
        return {"unreadable": True}


def read(conn: sqlite3.Connection) -> DbView:
    """One consistent read of everything the page shows."""
    conn.execute("BEGIN")
    try:
        return _read(conn)
    finally:
        conn.execute("ROLLBACK")


def _read(conn: sqlite3.Connection) -> DbView:
    positions = _rows(conn, "SELECT symbol, qty, entry_price, unrealized_pnl, realized_pnl, updated_ns"
                            " FROM positions WHERE qty != 0 ORDER BY symbol")
    for p in positions:
        plan = conn.execute(
            "SELECT o.signal_id, o.created_ns, s.stop, s.target, s.confidence FROM orders o"
            " LEFT JOIN signals s ON s.signal_id = o.signal_id"
            " WHERE o.symbol = ? AND o.reduce_only = 0 AND o.filled_qty > 0 ORDER BY o.created_ns DESC LIMIT 1",
            (p["symbol"],)).fetchone()
        p["plan"] = dict(plan) if plan is not None else None
        p["algos"] = _rows(conn, "SELECT client_algo_id, trade_id, role, order_type, trigger_price, state, reason,"
                                 " updated_ns FROM algo_orders WHERE symbol = ? ORDER BY created_ns DESC, rowid DESC"
                                 " LIMIT 12", (p["symbol"],))
    orders = _rows(conn, "SELECT created_ns, updated_ns, client_order_id, exchange_order_id, symbol, side, order_type,"
                         " qty, price, reduce_only, status, filled_qty, avg_price, signal_id FROM orders"
                         f" ORDER BY created_ns DESC, client_order_id LIMIT {dc.ORDERS_SHOWN}")
    fills = _rows(conn, "SELECT ts_ns, symbol, trade_id, client_order_id, side, qty, price, fee, fee_asset, liquidity"
                        f" FROM fills ORDER BY ts_ns DESC, trade_id DESC LIMIT {dc.FILLS_SHOWN}")
    # insertion order (rowid) is arrival order: a signal's own time is its candle's close
    signals = _rows(conn, "SELECT s.rowid AS seq, s.ts_ns, s.signal_id, s.symbol, s.side, s.entry, s.stop, s.target,"
                          " s.confidence, s.cold,"
                          " (SELECT o.status FROM orders o WHERE o.signal_id = s.signal_id AND o.reduce_only = 0"
                          "  ORDER BY o.created_ns LIMIT 1) AS order_status,"
                          " (SELECT r.reason FROM risk_rejects r WHERE r.signal_id = s.signal_id"
                          "  ORDER BY r.ts_ns DESC LIMIT 1) AS reject_reason"
                          f" FROM signals s ORDER BY s.rowid DESC LIMIT {dc.SIGNALS_SHOWN}")
    by_reason = [(r[0], int(r[1])) for r in conn.execute(
        "SELECT reason, COUNT(*) FROM risk_rejects GROUP BY reason ORDER BY COUNT(*) DESC, reason").fetchall()]
    rejects = _rows(conn, "SELECT ts_ns, symbol, reason, detail, signal_id FROM risk_rejects"
                          f" ORDER BY ts_ns DESC LIMIT {dc.REJECTS_SHOWN}")
    trades = _rows(conn, "SELECT * FROM (SELECT trade_id, closed_ms, symbol, side, qty, entry_price, exit_price, pnl,"
                         " fees, outcome_r, exit_reason FROM trades"
                         f" ORDER BY closed_ms DESC, trade_id DESC LIMIT {dc.TRADES_SHOWN}) ORDER BY closed_ms, trade_id")
    t = conn.execute("SELECT COUNT(*), COALESCE(SUM(pnl), 0), COALESCE(SUM(fees), 0),"
                     " COALESCE(SUM(pnl > 0), 0) FROM trades").fetchone()
    f = conn.execute("SELECT COUNT(*), COALESCE(SUM(CASE WHEN fee_asset = 'USDT' THEN fee END), 0)"
                     " FROM fills").fetchone()
    placeholders = ",".join("?" * len(TERMINAL_ORDER_STATUSES))
    o = conn.execute(f"SELECT COUNT(*), COALESCE(SUM(status NOT IN ({placeholders})), 0) FROM orders",  # noqa: S608
                     TERMINAL_ORDER_STATUSES).fetchone()
    totals = {"trades": int(t[0]), "realized_pnl": float(t[1]), "trade_fees": float(t[2]), "wins": int(t[3]),
              "fills": int(f[0]), "fees": float(f[1]), "orders": int(o[0]), "open_orders": int(o[1]),
              "signals": int(conn.execute("SELECT COUNT(*) FROM signals").fetchone()[0]),
              "risk_rejects": sum(n for _, n in by_reason)}
    try:
        controls = _rows(conn, "SELECT request_id, requested_ms, command, symbol, client, via, status, detail"
                               f" FROM controls ORDER BY requested_ms DESC LIMIT {dc.CONTROLS_SHOWN}")
    except sqlite3.OperationalError:  # a database made before the controls table
        controls = []
    return DbView(positions=positions, orders=orders, fills=fills, signals=signals, rejects_by_reason=by_reason,
                  rejects=rejects, trades=trades, controls=controls, totals=totals,
                  risk_state=_state(conn, RISK_STATE_NAME), control_state=_state(conn, wire.CONTROL_STATE_NAME))
