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

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

from common.errors import StoreError

# ---------------------------------------------------------------------------- the schema
SCHEMA_VERSION = 4  # 2: trades table; 3: symbols table; 4: controls table

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
    quantity_precision INTEGER NOT NULL, updated_ns INTEGER NOT NULL
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
CREATE TABLE IF NOT EXISTS model_state (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, state BLOB NOT NULL,
    updated_ns INTEGER NOT NULL
);
"""


# columns added after a table's first release: (table, column, declaration). CREATE TABLE has
# them for a new database; an older database gets them by ALTER TABLE at connect.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("trades", "funding", "REAL NOT NULL DEFAULT 0"),
    ("trades", "signal_price", "REAL NOT NULL DEFAULT 0"),
    ("trades", "slippage_bps", "REAL"),
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
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                 (str(SCHEMA_VERSION),))
    return conn


# ---------------------------------------------------------------------------- typed rows
@dataclass(frozen=True, kw_only=True, slots=True)
class OrderRow:
    """One row of ``orders``, with the exchange trade ids of its journaled fills."""

    client_order_id: str
    exchange_order_id: str  # "" until the exchange has named it
    symbol: str
    side: str
    order_type: str
    qty: float
    price: float
    reduce_only: bool
    status: str  # venue.orders.OrderState
    filled_qty: float
    avg_price: float
    signal_id: str
    created_ns: int
    updated_ns: int
    fill_trade_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True, slots=True)
class EntryPlanRow:
    """An entry order with the plan of its signal (``orders`` joined with ``signals``)."""

    client_order_id: str
    symbol: str
    side: str
    created_ns: int
    filled_qty: float
    avg_price: float
    signal_id: str
    stop: float
    target: float
    confidence: float
    features: str  # the model's features as journaled: a JSON object


@dataclass(frozen=True, kw_only=True, slots=True)
class AlgoRow:
    """One row of ``algo_orders`` (a protective order held by the exchange)."""

    client_algo_id: str
    algo_id: str
    symbol: str
    side: str
    order_type: str
    trigger_price: str  # exact decimal text
    working_type: str
    close_position: bool
    trade_id: str
    role: str
    state: str  # venue.algo_orders.AlgoState
    actual_order_id: str
    sent_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SymbolRow:
    """One row of ``symbols``: the trading rules the feed published."""

    symbol: str
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float
    price_precision: int
    quantity_precision: int


class CandleRow(NamedTuple):
    """One row of ``candles`` (its interval is the one asked for). A named tuple, not a
    dataclass: a restarted brain reads tens of thousands of them."""

    symbol: str
    open_ms: int
    close_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    buy_volume: float


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
        return [SymbolRow(symbol=r[0], tick_size=r[1], step_size=r[2], min_qty=r[3], min_notional=r[4],
                          price_precision=r[5], quantity_precision=r[6]) for r in self._all(
            "SELECT symbol, tick_size, step_size, min_qty, min_notional, price_precision, quantity_precision"
            " FROM symbols")]


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
