"""The journal's store: the tables of the orchestrator's SQLite database and the questions
other processes ask of it, in one place.

The orchestrator is the only writer (``services/orchestrator/db.py`` turns each journal
message into rows; ``connect`` here opens its connection with the schema applied). Every
other process reads: it opens the file read-only (``read_only``: SQLite in WAL mode lets a
reader in beside the writer) and asks through ``JournalReader``, whose answers are typed rows
(frozen dataclasses, plain values as SQLite holds them). A reader never writes SQL of its own,
so a change of a table and of the queries that read it is one change in one file.

A read that fails (no schema yet, locked, damaged) raises ``StoreError``; the reader decides
what that means for it (a first start, a paused trader, ...).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from common.errors import StoreError

# what a failed read or write raises underneath ``StoreError`` (for a caller that must tell
# database failures apart and holds no sqlite3 of its own)
DatabaseError = sqlite3.Error

# ---------------------------------------------------------------------------- the schema
SCHEMA_VERSION = 5  # 2: trades table; 3: symbols table; 4: controls table; 5: external_fills table

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL, interval_s INTEGER NOT NULL, open_ms INTEGER NOT NULL,
    close_ms INTEGER NOT NULL, open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL,
    close REAL NOT NULL, volume REAL NOT NULL, quote_volume REAL NOT NULL,
    trades INTEGER NOT NULL, buy_volume REAL NOT NULL,
    PRIMARY KEY (symbol, interval_s, open_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signals (
    signal_id TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, entry REAL NOT NULL, stop REAL NOT NULL, target REAL NOT NULL,
    confidence REAL NOT NULL, cold INTEGER NOT NULL, strategy TEXT NOT NULL,
    features TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY, exchange_order_id TEXT, symbol TEXT NOT NULL,
    side TEXT NOT NULL, order_type TEXT NOT NULL, qty REAL NOT NULL, price REAL NOT NULL,
    reduce_only INTEGER NOT NULL, status TEXT NOT NULL, filled_qty REAL NOT NULL DEFAULT 0,
    avg_price REAL NOT NULL DEFAULT 0, signal_id TEXT NOT NULL DEFAULT '',
    created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    symbol TEXT NOT NULL, trade_id TEXT NOT NULL, client_order_id TEXT NOT NULL,
    exchange_order_id TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL,
    price REAL NOT NULL, fee REAL NOT NULL, fee_asset TEXT NOT NULL, liquidity TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    PRIMARY KEY (symbol, trade_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, qty REAL NOT NULL, entry_price REAL NOT NULL,
    unrealized_pnl REAL NOT NULL, realized_pnl REAL NOT NULL, updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS risk_rejects (
    ts_ns INTEGER NOT NULL, publisher TEXT NOT NULL, seq INTEGER NOT NULL,
    symbol TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, signal_id TEXT NOT NULL,
    PRIMARY KEY (publisher, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal_seq (
    stream TEXT PRIMARY KEY,  -- "<publisher>/<event type>"
    seq INTEGER NOT NULL      -- last sequence number written, committed with its rows
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trades (
    trade_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL,
    entry_price REAL NOT NULL, exit_price REAL NOT NULL, stop REAL NOT NULL,
    target REAL NOT NULL, opened_ms INTEGER NOT NULL, closed_ms INTEGER NOT NULL,
    pnl REAL NOT NULL, fees REAL NOT NULL, outcome_r REAL NOT NULL, exit_reason TEXT NOT NULL,
    confidence REAL NOT NULL, learned INTEGER NOT NULL,
    funding REAL NOT NULL DEFAULT 0,  -- received (+) or paid (-) while open, included in pnl
    signal_price REAL NOT NULL DEFAULT 0,  -- the signal's entry price (0: none, an adopted position)
    slippage_bps REAL,  -- entry average vs signal price, bps, positive = worse; NULL: no signal price
    PRIMARY KEY (trade_id, closed_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS symbols (
    symbol TEXT PRIMARY KEY, tick_size REAL NOT NULL, step_size REAL NOT NULL,
    min_qty REAL NOT NULL, min_notional REAL NOT NULL, price_precision INTEGER NOT NULL,
    quantity_precision INTEGER NOT NULL, updated_ns INTEGER NOT NULL,
    max_qty REAL NOT NULL DEFAULT 0, min_price REAL NOT NULL DEFAULT 0,
    max_price REAL NOT NULL DEFAULT 0, market_step_size REAL NOT NULL DEFAULT 0,
    market_max_qty REAL NOT NULL DEFAULT 0, percent_up REAL NOT NULL DEFAULT 0,
    percent_down REAL NOT NULL DEFAULT 0, base_asset TEXT NOT NULL DEFAULT '',
    quote_asset TEXT NOT NULL DEFAULT '', margin_asset TEXT NOT NULL DEFAULT '',
    contract_type TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS algo_orders (
    client_algo_id TEXT PRIMARY KEY, algo_id TEXT NOT NULL, symbol TEXT NOT NULL,
    side TEXT NOT NULL, order_type TEXT NOT NULL, trigger_price TEXT NOT NULL,
    working_type TEXT NOT NULL, close_position INTEGER NOT NULL, trade_id TEXT NOT NULL,
    role TEXT NOT NULL, state TEXT NOT NULL, actual_order_id TEXT NOT NULL,
    sent_ms INTEGER NOT NULL, reason TEXT NOT NULL, created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS controls (
    request_id TEXT PRIMARY KEY, command TEXT NOT NULL, symbol TEXT NOT NULL,
    client TEXT NOT NULL, via TEXT NOT NULL, requested_ms INTEGER NOT NULL,
    status TEXT NOT NULL, detail TEXT NOT NULL, created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS external_fills (
    symbol TEXT NOT NULL, trade_id TEXT NOT NULL, exchange_order_id TEXT NOT NULL,
    client_order_id TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL, price REAL NOT NULL,
    fee REAL NOT NULL, fee_asset TEXT NOT NULL, time_ms INTEGER NOT NULL, detail TEXT NOT NULL,
    reported_ns INTEGER NOT NULL,  -- when reconciliation first reported it (the row never changes)
    PRIMARY KEY (symbol, trade_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS model_state (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, state BLOB NOT NULL,
    updated_ns INTEGER NOT NULL
);
"""


# the symbols columns added with the whole of a symbol's filters (wire.SymbolInfo's fields)
SYMBOL_FILTER_COLUMNS = ("max_qty", "min_price", "max_price", "market_step_size", "market_max_qty",
                         "percent_up", "percent_down")
SYMBOL_LABEL_COLUMNS = ("base_asset", "quote_asset", "margin_asset", "contract_type")

# columns added after a table's first release: (table, column, declaration). CREATE TABLE has
# them for a new database; an older database gets them by ALTER TABLE at connect.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("trades", "funding", "REAL NOT NULL DEFAULT 0"),
    ("trades", "signal_price", "REAL NOT NULL DEFAULT 0"),
    ("trades", "slippage_bps", "REAL"),
    *((("symbols", c, "REAL NOT NULL DEFAULT 0") for c in SYMBOL_FILTER_COLUMNS)),
    *((("symbols", c, "TEXT NOT NULL DEFAULT ''") for c in SYMBOL_LABEL_COLUMNS)),
)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, decl in ADDED_COLUMNS:
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}  # noqa: S608 - fixed names
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")  # noqa: S608 - fixed names


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database with WAL and FULL sync, schema applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.executescript(SCHEMA)
    _add_missing_columns(conn)
    # an older database has just been given the newer tables and columns: its version moves up
    conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE SET"
                 " value = excluded.value WHERE CAST(meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
                 (str(SCHEMA_VERSION),))
    return conn


# ---------------------------------------------------------------------------- typed rows
from common.journal_rows import (  # noqa: E402,F401  (the reader's answers, named here for its callers)
    OrderRow, EntryPlanRow, AlgoRow, SymbolRow, CandleRow, PageLimits, PageRows, LocalOrderRow, PositionRow,
)

SYMBOL_ROW_COLUMNS = ("symbol", "tick_size", "step_size", "min_qty", "min_notional", "price_precision",
                      "quantity_precision", *SYMBOL_FILTER_COLUMNS, *SYMBOL_LABEL_COLUMNS)

_LOCAL_ORDER_COLUMNS = ("client_order_id, COALESCE(exchange_order_id, ''), symbol, side, status, qty, filled_qty,"
                        " avg_price, updated_ns")

# the decisions of a run (``aegis replay``'s comparison), each table in a fixed order
DECISION_SQL = {
    "signal": "SELECT * FROM signals ORDER BY ts_ns, signal_id",
    "order": "SELECT * FROM orders ORDER BY created_ns, client_order_id",
    "fill": "SELECT * FROM fills ORDER BY ts_ns, symbol, trade_id",
    "trade": "SELECT * FROM trades ORDER BY closed_ms, trade_id",
    # the publisher name carries a pid and a start time: not part of a decision
    "risk_reject": "SELECT ts_ns, seq, symbol, reason, detail, signal_id FROM risk_rejects ORDER BY ts_ns, seq",
}


# ---------------------------------------------------------------------------- the reader
def _marks(n: int) -> str:
    return ",".join("?" * n)


class JournalReader:
    """The read-only questions of the journal, on one connection (``read_only`` opens it).
    Each method answers typed rows or raises ``StoreError``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def order_ids_since(self, since_ns: int) -> frozenset[str]:
        """The client ids of every order created at or after ``since_ns``."""
        return frozenset(r[0] for r in self._all("SELECT client_order_id FROM orders WHERE created_ns >= ?",
                                                 (since_ns,)))

    def orders_in_states(self, states: Sequence[str]) -> list[OrderRow]:
        """Every order whose last journaled state is one of ``states``, with its fills' ids."""
        rows = self._all(f"SELECT client_order_id, exchange_order_id, symbol, side, order_type, qty, price,"
                         f" reduce_only, status, filled_qty, avg_price, signal_id, created_ns, updated_ns"
                         f" FROM orders WHERE status IN ({_marks(len(states))})", states)  # noqa: S608
        out = []
        for r in rows:
            tids = frozenset(t[0] for t in self._all("SELECT trade_id FROM fills WHERE client_order_id = ?",
                                                     (r[0],)))
            out.append(OrderRow(client_order_id=r[0], exchange_order_id=r[1] or "", symbol=r[2], side=r[3],
                                order_type=r[4], qty=r[5], price=r[6], reduce_only=bool(r[7]), status=r[8],
                                filled_qty=r[9], avg_price=r[10], signal_id=r[11], created_ns=r[12],
                                updated_ns=r[13], fill_trade_ids=tids))
        return out

    def entry_plans(self, open_states: Sequence[str], since_ns: int) -> list[EntryPlanRow]:
        """The entries (not reduce-only) created at or after ``since_ns`` that filled, or are
        still open (in ``open_states``), with their signal's plan; oldest first."""
        rows = self._all(
            f"SELECT o.client_order_id, o.symbol, o.side, o.created_ns, o.filled_qty, o.avg_price, s.signal_id,"
            f" s.stop, s.target, s.confidence, s.features FROM orders o JOIN signals s ON s.signal_id = o.signal_id"
            f" WHERE o.reduce_only = 0 AND (o.filled_qty > 0 OR o.status IN ({_marks(len(open_states))}))"
            f" AND o.created_ns >= ? ORDER BY o.created_ns", (*open_states, since_ns))  # noqa: S608
        return [EntryPlanRow(client_order_id=r[0], symbol=r[1], side=r[2], created_ns=r[3], filled_qty=r[4],
                             avg_price=r[5], signal_id=r[6], stop=r[7], target=r[8], confidence=r[9],
                             features=r[10]) for r in rows]

    def closed_trade_ids(self) -> frozenset[str]:
        """The ids of every trade in ``trades`` (closed)."""
        return frozenset(r[0] for r in self._all("SELECT trade_id FROM trades"))

    def last_order_update_ns(self, since_ns: int) -> dict[str, int]:
        """Per symbol, the newest update of its orders created at or after ``since_ns``."""
        return {r[0]: int(r[1]) for r in self._all(
            "SELECT symbol, max(updated_ns) FROM orders WHERE created_ns >= ? GROUP BY symbol", (since_ns,))}

    def model_states(self) -> dict[str, bytes]:
        """Every saved state of ``model_state``, by name."""
        return {r[0]: bytes(r[1]) for r in self._all("SELECT name, state FROM model_state")}

    def model_state(self, name: str) -> bytes | None:
        """The saved state called ``name``; None if there is none."""
        rows = self._all("SELECT state FROM model_state WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def algo_orders_in_states(self, states: Sequence[str]) -> list[AlgoRow]:
        """Every protective order in one of ``states``; none on a database from before
        protective orders (no table)."""
        try:
            rows = self._conn.execute(
                f"SELECT client_algo_id, algo_id, symbol, side, order_type, trigger_price, working_type,"
                f" close_position, trade_id, role, state, actual_order_id, sent_ms FROM algo_orders"
                f" WHERE state IN ({_marks(len(states))})", tuple(states)).fetchall()  # noqa: S608
        except sqlite3.OperationalError:
            return []
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        return [AlgoRow(client_algo_id=r[0], algo_id=r[1], symbol=r[2], side=r[3], order_type=r[4],
                        trigger_price=r[5], working_type=r[6], close_position=bool(r[7]), trade_id=r[8],
                        role=r[9], state=r[10], actual_order_id=r[11], sent_ms=r[12]) for r in rows]

    def algo_ids(self) -> frozenset[str]:
        """The client ids of every protective order; none on a database without the table."""
        try:
            return frozenset(r[0] for r in self._conn.execute("SELECT client_algo_id FROM algo_orders"))
        except sqlite3.OperationalError:
            return frozenset()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def known_ids(self, ids: Sequence[str]) -> frozenset[str]:
        """Which of ``ids`` the journal holds, as an order's or a protective order's client id."""
        if not ids:
            return frozenset()
        marks = _marks(len(ids))
        found = {r[0] for r in self._all(
            f"SELECT client_order_id FROM orders WHERE client_order_id IN ({marks})", ids)}  # noqa: S608
        found |= {r[0] for r in self._all(
            f"SELECT client_algo_id FROM algo_orders WHERE client_algo_id IN ({marks})", ids)}  # noqa: S608
        return frozenset(found)

    def candle_symbols(self) -> list[str]:
        """The symbols ``candles`` holds, in name order."""
        return [r[0] for r in self._all("SELECT DISTINCT symbol FROM candles ORDER BY symbol")]

    def candles(self, symbol: str, interval_s: int, since_ms: int, until_ms: int, limit: int) -> list[CandleRow]:
        """The newest ``limit`` candles of ``symbol`` that open at or after ``since_ms`` and
        close at or before ``until_ms``, oldest first (one primary-key range)."""
        rows = self._all(
            "SELECT symbol, open_ms, close_ms, open, high, low, close, volume, quote_volume, trades, buy_volume"
            " FROM candles WHERE symbol = ? AND interval_s = ? AND open_ms >= ? AND close_ms <= ?"
            " ORDER BY open_ms DESC LIMIT ?", (symbol, interval_s, since_ms, until_ms, limit))
        return [CandleRow(*r) for r in reversed(rows)]

    def symbol_rules(self) -> list[SymbolRow]:
        """Every row of ``symbols``."""
        have = {r[1] for r in self._all("PRAGMA table_info(symbols)")}  # an older database has fewer
        names = [c for c in SYMBOL_ROW_COLUMNS if c in have]
        return [SymbolRow(**dict(zip(names, r))) for r in self._all(
            f"SELECT {', '.join(names)} FROM symbols")]  # noqa: S608 - fixed names


    def close(self) -> None:
        self._conn.close()

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as {column: value} (the column names the query gives)."""
        try:
            cur = self._conn.execute(sql, tuple(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    # ------------------------------------------------------------------ the dashboard's page
    @contextmanager
    def snapshot(self) -> Iterator[JournalReader]:
        """One read transaction: every question asked inside sees the same moment (a reader
        opened by ``open_reader`` only)."""
        self._all("BEGIN")
        try:
            yield self
        finally:
            self._all("ROLLBACK")

    def page(self, limits: PageLimits, *, terminal_statuses: Sequence[str], risk_state_name: str,
             control_state_name: str) -> PageRows:
        """Everything the dashboard's page shows (ask inside ``snapshot`` for one moment)."""
        positions = self._dicts("SELECT symbol, qty, entry_price, unrealized_pnl, realized_pnl, updated_ns"
                                " FROM positions WHERE qty != 0 ORDER BY symbol")
        for p in positions:
            plan = self._dicts(
                "SELECT o.signal_id, o.created_ns, s.stop, s.target, s.confidence FROM orders o"
                " LEFT JOIN signals s ON s.signal_id = o.signal_id"
                " WHERE o.symbol = ? AND o.reduce_only = 0 AND o.filled_qty > 0 ORDER BY o.created_ns DESC LIMIT 1",
                (p["symbol"],))
            p["plan"] = plan[0] if plan else None
            p["algos"] = self._dicts("SELECT client_algo_id, trade_id, role, order_type, trigger_price, state, reason,"
                                     " updated_ns FROM algo_orders WHERE symbol = ? ORDER BY created_ns DESC,"
                                     " rowid DESC LIMIT 12", (p["symbol"],))
        orders = self._dicts("SELECT created_ns, updated_ns, client_order_id, exchange_order_id, symbol, side,"
                             " order_type, qty, price, reduce_only, status, filled_qty, avg_price, signal_id FROM orders"
                             " ORDER BY created_ns DESC, client_order_id LIMIT ?", (limits.orders,))
        fills = self._dicts("SELECT ts_ns, symbol, trade_id, client_order_id, side, qty, price, fee, fee_asset,"
                            " liquidity FROM fills ORDER BY ts_ns DESC, trade_id DESC LIMIT ?", (limits.fills,))
        # insertion order (rowid) is arrival order: a signal's own time is its candle's close
        signals = self._dicts("SELECT s.rowid AS seq, s.ts_ns, s.signal_id, s.symbol, s.side, s.entry, s.stop,"
                              " s.target, s.confidence, s.cold,"
                              " (SELECT o.status FROM orders o WHERE o.signal_id = s.signal_id AND o.reduce_only = 0"
                              "  ORDER BY o.created_ns LIMIT 1) AS order_status,"
                              " (SELECT r.reason FROM risk_rejects r WHERE r.signal_id = s.signal_id"
                              "  ORDER BY r.ts_ns DESC LIMIT 1) AS reject_reason"
                              " FROM signals s ORDER BY s.rowid DESC LIMIT ?", (limits.signals,))
        by_reason = [(r[0], int(r[1])) for r in self._all(
            "SELECT reason, COUNT(*) FROM risk_rejects GROUP BY reason ORDER BY COUNT(*) DESC, reason")]
        rejects = self._dicts("SELECT ts_ns, symbol, reason, detail, signal_id FROM risk_rejects"
                              " ORDER BY ts_ns DESC LIMIT ?", (limits.rejects,))
        trades = self._dicts("SELECT * FROM (SELECT trade_id, closed_ms, symbol, side, qty, entry_price, exit_price,"
                             " pnl, fees, outcome_r, exit_reason FROM trades"
                             " ORDER BY closed_ms DESC, trade_id DESC LIMIT ?) ORDER BY closed_ms, trade_id",
                             (limits.trades,))
        t = self._one("SELECT COUNT(*), COALESCE(SUM(pnl), 0), COALESCE(SUM(fees), 0),"
                      " COALESCE(SUM(pnl > 0), 0) FROM trades")
        f = self._one("SELECT COUNT(*), COALESCE(SUM(CASE WHEN fee_asset = 'USDT' THEN fee END), 0) FROM fills")
        o = self._one(f"SELECT COUNT(*), COALESCE(SUM(status NOT IN ({_marks(len(terminal_statuses))})), 0)"
                      " FROM orders", terminal_statuses)  # noqa: S608 - placeholders only
        totals = {"trades": int(t[0]), "realized_pnl": float(t[1]), "trade_fees": float(t[2]), "wins": int(t[3]),
                  "fills": int(f[0]), "fees": float(f[1]), "orders": int(o[0]), "open_orders": int(o[1]),
                  "signals": int(self._one("SELECT COUNT(*) FROM signals")[0]),
                  "risk_rejects": sum(n for _, n in by_reason)}
        try:
            controls = self._dicts("SELECT request_id, requested_ms, command, symbol, client, via, status, detail"
                                   " FROM controls ORDER BY requested_ms DESC LIMIT ?", (limits.controls,))
        except StoreError:  # a database made before the controls table
            controls = []
        return PageRows(positions=positions, orders=orders, fills=fills, signals=signals, rejects_by_reason=by_reason,
                        rejects=rejects, trades=trades, controls=controls, totals=totals,
                        risk_state=self._json_state(risk_state_name),
                        control_state=self._json_state(control_state_name))

    def _json_state(self, name: str) -> dict[str, Any] | None:
        """A ``model_state`` row holding JSON (the brain's risk state, the control state)."""
        state = self.model_state(name)
        if state is None:
            return None
        try:
            out = json.loads(bytes(state))
            return out if isinstance(out, dict) else {"unreadable": True}
        except ValueError:
            return {"unreadable": True}

    # ------------------------------------------------------------------ aegis report
    def table_names(self) -> frozenset[str]:
        return frozenset(r[0] for r in self._all("SELECT name FROM sqlite_master WHERE type='table'"))

    def trade_rows(self, fields: Sequence[str], defaults: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every closed trade's ``fields``, oldest first; a column an older database lacks is
        ``defaults[column]`` (SQL text: "0", "NULL")."""
        have = {r[1] for r in self._all("PRAGMA table_info(trades)")}
        cols = [f if f in have else f"{defaults[f]} AS {f}" for f in fields]
        return self._dicts(f"SELECT {', '.join(cols)} FROM trades"  # noqa: S608 - fixed names
                           " ORDER BY closed_ms, trade_id")

    def activity_counts(self) -> dict[str, int]:
        """Signals, orders, fills, risk rejects, and positions open."""
        one = lambda sql: int(self._one(sql)[0])  # noqa: E731
        return {"signals": one("SELECT COUNT(*) FROM signals"), "orders": one("SELECT COUNT(*) FROM orders"),
                "fills": one("SELECT COUNT(*) FROM fills"), "risk_rejects": one("SELECT COUNT(*) FROM risk_rejects"),
                "positions_open": one("SELECT COUNT(*) FROM positions WHERE qty != 0")}

    def rejects_by_reason(self) -> dict[str, int]:
        """Risk rejects by reason, most frequent first, then by name."""
        return dict(self._all("SELECT reason, COUNT(*) AS n FROM risk_rejects GROUP BY reason ORDER BY n DESC, reason"))

    def fill_fees(self) -> list[float]:
        """Every fill's fee, in the table's order."""
        return [r[0] for r in self._all("SELECT fee FROM fills")]

    # ------------------------------------------------------------------ aegis replay
    def decisions(self) -> list[dict[str, Any]]:
        """Every decision a run left, in a fixed order: signals, orders, fills, closed trades,
        risk rejections (each table by time, then by id), each row {"type": kind, column: value}."""
        out: list[dict[str, Any]] = []
        for kind, sql in DECISION_SQL.items():
            for d in self._dicts(sql):
                if kind == "signal":
                    d["features"] = json.loads(d["features"])
                out.append({"type": kind, **d})
        return out

    # ------------------------------------------------------------------ reconciliation's local side
    def orders_to_compare(self, terminal_statuses: Sequence[str], since_ns: int) -> list[LocalOrderRow]:
        """Every order not in ``terminal_statuses``, and the terminal ones updated at or after ``since_ns``."""
        return [LocalOrderRow(*r) for r in self._all(
            f"SELECT {_LOCAL_ORDER_COLUMNS} FROM orders"  # noqa: S608 - fixed column list
            f" WHERE status NOT IN ({_marks(len(terminal_statuses))}) OR updated_ns >= ?",
            (*terminal_statuses, since_ns))]

    def order(self, client_order_id: str) -> LocalOrderRow | None:
        row = self._one(f"SELECT {_LOCAL_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?",  # noqa: S608
                        (client_order_id,))
        return LocalOrderRow(*row) if row is not None else None

    def position_rows(self) -> list[PositionRow]:
        """Every position row (flat ones too), by symbol."""
        return [PositionRow(*r) for r in self._all(
            "SELECT symbol, qty, entry_price, realized_pnl, updated_ns FROM positions ORDER BY symbol")]

    def fill_keys_since(self, since_ns: int) -> list[tuple[str, str, int]]:
        """(symbol, trade id, ts_ns) of every fill at or after ``since_ns``."""
        return [tuple(r) for r in self._all("SELECT symbol, trade_id, ts_ns FROM fills WHERE ts_ns >= ?",
                                            (since_ns,))]

    def external_fill_keys_since(self, since_ms: int) -> frozenset[tuple[str, str]]:
        """(symbol, trade id) of every external fill already reported whose exchange time is
        at or after ``since_ms``; none on a database from before the table."""
        try:
            rows = self._conn.execute("SELECT symbol, trade_id FROM external_fills WHERE time_ms >= ?",
                                      (since_ms,)).fetchall()
        except sqlite3.OperationalError:
            return frozenset()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        return frozenset((r[0], r[1]) for r in rows)

    def latest_order_ns(self) -> int:
        """The newest order's creation time (0: none)."""
        return int(self._one("SELECT max(created_ns) FROM orders")[0] or 0)


@contextmanager
def read_only(path: Path, *, timeout_s: float = 5.0) -> Iterator[JournalReader]:
    """A reader on the database at ``path``, opened read-only (``mode=ro``) and closed at the
    end of the block; ``StoreError`` if it cannot be opened."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc
    try:
        yield JournalReader(conn)
    finally:
        conn.close()


def open_reader(path: Path, *, timeout_s: float = 2.0, shared: bool = False) -> JournalReader:
    """A reader on the database at ``path``, opened read-only, kept open by the caller (who
    closes it). ``shared``: usable from any thread, and transactions only where asked
    (``JournalReader.snapshot``). ``StoreError`` if it cannot be opened; the path may hold
    any character ('?', '#': it goes in as a file URI)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s,
                               **({"check_same_thread": False, "isolation_level": None} if shared else {}))
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc
    return JournalReader(conn)


def clear_model_state(path: Path, name: str, *, timeout_s: float = 5.0) -> bool:
    """Delete one ``model_state`` row (``aegis risk --clear-halt``, with no stack running: the
    writer is not there); True if there was one. ``StoreError`` on failure."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout_s)
        try:
            with conn:
                return conn.execute("DELETE FROM model_state WHERE name = ?", (name,)).rowcount > 0
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc
