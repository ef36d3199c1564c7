"""The two reads reconciliation compares: the local database and the exchange.

``local_snapshot`` reads SQLite on the caller's thread (the connection belongs to the
orchestrator's loop). ``fetch_exchange_snapshot`` asks the exchange through the ``Broker``
port, read methods only (``open_orders``, ``query``, ``positions``, ``fills``, ``all_orders``), and lets the
broker's errors through unchanged: the shell decides what a failure means.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Callable, Iterable, Sequence

from venue.port import Broker, ExchangeOrder
from venue.orders import CLOCK_MARGIN_MS
from services.orchestrator.reconcile import (TERMINAL_STATUSES, ExchangeSnapshot, LocalOrder, LocalPosition,
                                             LocalSnapshot, is_ours, is_terminal, orders_to_recheck)

# terminal orders and fills this recent are compared; the fills lookback must fit inside
LOCAL_WINDOW_MS = 86_400_000
# the first run's look at the order history goes back to the journal's newest order, at most this far
HISTORY_MAX_MS = 7 * 86_400_000
_NS_PER_MS = 1_000_000

_ORDER_COLUMNS = ("client_order_id, COALESCE(exchange_order_id, ''), symbol, side, status, qty, filled_qty,"
                  " avg_price, updated_ns")


def _dec(x: float) -> Decimal:
    """A REAL column as the Decimal its shortest repr spells (how ``reconcile.as_stored`` compares)."""
    return Decimal(repr(float(x)))


def _order(row: tuple) -> LocalOrder:
    cid, eid, symbol, side, status, qty, filled, avg, updated_ns = row
    return LocalOrder(client_order_id=cid, exchange_order_id=eid, symbol=symbol, side=side, status=status,
                      qty=_dec(qty), filled_qty=_dec(filled), avg_price=_dec(avg),
                      updated_ms=updated_ns // _NS_PER_MS)


def local_snapshot(conn: sqlite3.Connection, now_ms: int, *, also_ids: Iterable[str] = ()) -> LocalSnapshot:
    """Every non-terminal order, terminal ones updated within ``LOCAL_WINDOW_MS``, the orders
    named in ``also_ids`` whatever their age (the exchange lists them open: they are ours, not
    external), every position row, and the keys of the fills within the window."""
    since_ns = (now_ms - LOCAL_WINDOW_MS) * _NS_PER_MS
    terminal = sorted(TERMINAL_STATUSES)
    rows = conn.execute(f"SELECT {_ORDER_COLUMNS} FROM orders"  # noqa: S608 - fixed column list
                        f" WHERE status NOT IN ({','.join('?' * len(terminal))}) OR updated_ns >= ?",
                        (*terminal, since_ns)).fetchall()
    orders = {r[0]: _order(r) for r in rows}
    for cid in sorted(set(also_ids) - orders.keys()):
        row = conn.execute(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?",  # noqa: S608
                           (cid,)).fetchone()
        if row is not None:
            orders[cid] = _order(row)
    positions = {
        symbol: LocalPosition(symbol=symbol, qty=_dec(qty), entry_price=_dec(entry), realized_pnl=_dec(realized),
                              updated_ms=updated_ns // _NS_PER_MS)
        for symbol, qty, entry, realized, updated_ns in conn.execute(
            "SELECT symbol, qty, entry_price, realized_pnl, updated_ns FROM positions ORDER BY symbol")}
    keys: set[tuple[str, str]] = set()
    last_fill_ms: dict[str, int] = {}
    for symbol, trade_id, ts_ns in conn.execute("SELECT symbol, trade_id, ts_ns FROM fills WHERE ts_ns >= ?",
                                                (since_ns,)):
        keys.add((symbol, trade_id))
        last_fill_ms[symbol] = max(last_fill_ms.get(symbol, 0), ts_ns // _NS_PER_MS)
    latest = conn.execute("SELECT max(created_ns) FROM orders").fetchone()[0]
    return LocalSnapshot(taken_ms=now_ms, orders=orders, positions=positions, fill_keys=frozenset(keys),
                         last_fill_ms=last_fill_ms, latest_order_ms=int(latest or 0) // _NS_PER_MS)


def history_since(local: LocalSnapshot, now_ms: int, lookback_ms: int, max_ms: int = HISTORY_MAX_MS) -> int:
    """Where a full look at the order history starts (pure): the journal's newest order (less
    the clock margin: orders a machine crash hid from the journal were made after it), or
    ``lookback_ms`` back if that is earlier or the journal holds none; never more than
    ``max_ms`` back."""
    since = now_ms - lookback_ms
    if local.latest_order_ms:
        since = min(since, local.latest_order_ms - CLOCK_MARGIN_MS)
    return max(since, now_ms - max_ms)


def fetch_exchange_snapshot(broker: Broker, local: LocalSnapshot, symbols: Sequence[str], now_ms: int,
                            fills_lookback_ms: int, *,
                            clock_ms: Callable[[], int] | None = None,
                            history_since_ms: int | None = None) -> ExchangeSnapshot:
    """Ask the exchange what reconciliation needs, in this order:

    1. every open order (all symbols: an external order anywhere is worth a flag);
    2. each local non-terminal order missing from that list, by client order id;
    3. the positions;
    4. the fills since ``now_ms - fills_lookback_ms`` of every symbol concerned: traded, with
       a position or an open order on either side, or with a local order live or updated
       since then. Asked after the positions, so a fill
       that moved a position after its answer shows here and marks the symbol in flux;
    5. each terminal local order whose record those fills contradict (``orders_to_recheck``),
       by client order id, so its executed quantity is compared too;
    6. the order history (``all_orders``, weight 5 a symbol): with ``history_since_ms`` (the
       reconciler's first run) of every symbol concerned from then on, else only of the
       symbols with a fill no known order explains, over the fills' window. Our orders found
       there that the journal lacks are adopted (``reconcile``); the fills of those that
       executed are asked by their order id (``userTrades``), however old.

    ``now_ms`` is local time before the first request; ``clock_ms`` (if given) stamps the end.
    """
    open_orders = tuple(broker.open_orders())
    listed = {o.client_order_id for o in open_orders}
    queried: dict[str, ExchangeOrder | None] = {}
    for o in local.orders.values():
        if not is_terminal(o.status) and o.client_order_id not in listed:
            queried[o.client_order_id] = broker.query(o.symbol, o.client_order_id)
    positions = tuple(broker.positions())
    since_ms = now_ms - fills_lookback_ms
    concerned = (set(symbols) | {s for s, p in local.positions.items() if p.qty != 0}
                 | {o.symbol for o in local.orders.values() if not is_terminal(o.status) or o.updated_ms >= since_ms}
                 | {p.symbol for p in positions} | {o.symbol for o in open_orders})
    fills = tuple(f for s in sorted(concerned) for f in broker.fills(s, since_ms=since_ms))
    for o in orders_to_recheck(local, fills):  # 5. terminal records the fills contradict
        if o.client_order_id not in queried and o.client_order_id not in listed:
            answer = broker.query(o.symbol, o.client_order_id)
            if answer is not None:  # long archived: the fills alone are repaired
                queried[o.client_order_id] = answer
    known = ({o.exchange_order_id for o in local.orders.values()} | {o.exchange_order_id for o in open_orders}
             | {a.exchange_order_id for a in queried.values() if a is not None})
    if history_since_ms is not None:  # 6. the whole history of every symbol concerned
        asked, history_from = concerned, history_since_ms
    else:  # ... or only where a fill is unexplained
        asked, history_from = {f.symbol for f in fills if f.exchange_order_id not in known}, since_ms
    until_ms = (clock_ms() if clock_ms is not None else now_ms) + CLOCK_MARGIN_MS
    history = tuple(h for s in sorted(asked) for h in broker.all_orders(s, since_ms=history_from, until_ms=until_ms))
    have = {f.exchange_order_id for f in fills}
    extra = tuple(f for h in history if is_ours(h.client_order_id) and h.client_order_id not in local.orders
                  and h.executed_qty > 0 and h.exchange_order_id not in have
                  for f in broker.fills(h.symbol, exchange_order_id=h.exchange_order_id))
    return ExchangeSnapshot(started_ms=now_ms, finished_ms=clock_ms() if clock_ms is not None else now_ms,
                            traded_symbols=frozenset(symbols), open_orders=open_orders, queried=queried,
                            positions=positions, fills=fills + extra, fills_since_ms=since_ms, history=history,
                            history_since_ms=history_from if asked else 0)
