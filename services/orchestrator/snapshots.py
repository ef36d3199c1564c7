"""The two reads reconciliation compares: the local database and the exchange.

``local_snapshot`` reads the journal (``common.journal_store``) on the caller's thread (the connection belongs to the
orchestrator's loop). ``fetch_exchange_snapshot`` asks the exchange through the ``Broker``
port, read methods only (``open_orders``, ``query``, ``positions``, ``fills``, ``all_orders``), and lets the
broker's errors through unchanged: the shell decides what a failure means.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

from common import journal_store
from venue.port import Broker, ExchangeOrder
from venue.order_rules import CLOCK_MARGIN_MS
from services.orchestrator.reconcile_diff import (TERMINAL_STATUSES, ExchangeSnapshot, LocalOrder, LocalPosition,
                                             LocalSnapshot, is_ours, is_terminal, orders_to_recheck)

# terminal orders and fills this recent are compared; the fills lookback must fit inside
LOCAL_WINDOW_MS = 86_400_000
# the first run's look at the order history goes back to the journal's newest order, at most this far
HISTORY_MAX_MS = 7 * 86_400_000
_NS_PER_MS = 1_000_000

def _dec(x: float) -> Decimal:
    """A REAL column as the Decimal its shortest repr spells (how ``reconcile.as_stored`` compares)."""
    return Decimal(repr(float(x)))


def _order(r: journal_store.LocalOrderRow) -> LocalOrder:
    return LocalOrder(client_order_id=r.client_order_id, exchange_order_id=r.exchange_order_id, symbol=r.symbol,
                      side=r.side, status=r.status, qty=_dec(r.qty), filled_qty=_dec(r.filled_qty),
                      avg_price=_dec(r.avg_price), updated_ms=r.updated_ns // _NS_PER_MS)


def local_snapshot(conn: Any, now_ms: int, *, also_ids: Iterable[str] = ()) -> LocalSnapshot:
    """Every non-terminal order, terminal ones updated within ``LOCAL_WINDOW_MS``, the orders
    named in ``also_ids`` whatever their age (the exchange lists them open: they are ours, not
    external), every position row, and the keys of the fills (ours, and the external ones
    already reported) within the window. ``conn``: the
    orchestrator's connection (asked through ``journal_store.JournalReader``)."""
    journal = journal_store.JournalReader(conn)
    since_ns = (now_ms - LOCAL_WINDOW_MS) * _NS_PER_MS
    orders = {r.client_order_id: _order(r) for r in journal.orders_to_compare(sorted(TERMINAL_STATUSES), since_ns)}
    for cid in sorted(set(also_ids) - orders.keys()):
        row = journal.order(cid)
        if row is not None:
            orders[cid] = _order(row)
    positions = {
        p.symbol: LocalPosition(symbol=p.symbol, qty=_dec(p.qty), entry_price=_dec(p.entry_price),
                                realized_pnl=_dec(p.realized_pnl), updated_ms=p.updated_ns // _NS_PER_MS)
        for p in journal.position_rows()}
    keys: set[tuple[str, str]] = set()
    last_fill_ms: dict[str, int] = {}
    for symbol, trade_id, ts_ns in journal.fill_keys_since(since_ns):
        keys.add((symbol, trade_id))
        last_fill_ms[symbol] = max(last_fill_ms.get(symbol, 0), ts_ns // _NS_PER_MS)
    return LocalSnapshot(taken_ms=now_ms, orders=orders, positions=positions, fill_keys=frozenset(keys),
                         last_fill_ms=last_fill_ms, latest_order_ms=journal.latest_order_ns() // _NS_PER_MS,
                         reported_fills=journal.external_fill_keys_since(now_ms - LOCAL_WINDOW_MS))


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
       symbols with a fill no known order explains and no earlier run reported as external
       (its symbol's history was read by the run that reported it), over the fills' window. Our orders found
       there that the journal lacks are adopted (``reconcile_diff``); the fills of those that
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
        asked = {f.symbol for f in fills
                 if f.exchange_order_id not in known and (f.symbol, f.trade_id) not in local.reported_fills}
        history_from = since_ms
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
