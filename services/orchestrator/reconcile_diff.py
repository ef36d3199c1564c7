"""Reconciliation, the pure core: compare what we hold with what the exchange holds.

The exchange is the source of truth. ``diff(local, exchange)`` returns a ``Report``: every
difference found, the wire messages that make the local record equal the exchange's
(``repairs``: the orchestrator persists them with ``db.rows_for`` and publishes them), the
external positions adopted, what needs a human (``flagged``) and a verdict. No I/O here:
``snapshots.py`` reads both sides, ``reconciler.py`` runs it on a schedule.

Verdict (``Report.status``):

    OK        no difference.
    REPAIRED  differences, none blocking: each one is repaired (or only flagged), so once the
              repairs are written the local record equals the exchange's. Safe to trade.
    MISMATCH  at least one blocking difference: the local record cannot (yet) be made equal
              to the exchange's. Do not trade until a later run says OK or REPAIRED.

Differences (kind: when -> repair; * = blocking):

    MISSED_FILL               the exchange has a fill of one of our orders that we do not
                              -> ``wire.Fill`` under our client order id (mapped through the
                              exchange order id when the exchange row lacks it)
    ORDER_STATUS              status, executed qty or exchange order id differ
                              -> ``wire.OrderUpdate`` with the exchange's values
    ORDER_DEAD                never confirmed, not found, and asked after the last possible
                              arrival (recvWindow + clock margin, the rule of ``orders.py``)
                              -> ``wire.OrderUpdate`` CANCELED, "never reached the exchange".
                              Nothing is re-sent: the orchestrator never sends orders.
    ORDER_UNKNOWN_AT_EXCHANGE* not found, and either still possibly on the wire or once
                              confirmed by the exchange (then something is badly wrong)
    ORDER_ADOPTED             at the exchange (open, answered to a query, or in its order
                              history: ``allOrders``, already FILLED, CANCELED or EXPIRED) under
                              one of our order ids (``ae-``/``ax-``, ``OUR_ORDER_PREFIXES``) the
                              journal does not hold: the brain sends first and journals after,
                              so a crash in between leaves such an order -> ``wire.OrderRequest``
                              (the row) and ``wire.OrderUpdate`` with the exchange's values; its
                              fills come as MISSED_FILL under its id, and the position it moved
                              is a POSITION_MISMATCH repair (ours, so not flagged as external)
    EXTERNAL_ORDER            open at the exchange under a client id we never made
                              -> flagged, never cancelled; * on a symbol we trade, where it
                              may fill into the position we manage
    EXTERNAL_FILL             a fill of an order that is not ours -> flagged once (its effect on
                              the position is repaired through the position): the run that
                              first sees it also returns a ``wire.ExternalFill`` record
                              (``Report.flag_records``) for the journal; a fill the journal
                              already holds as reported (``LocalSnapshot.reported_fills``) is
                              no difference again, only listed in ``Report.standing
    POSITION_MISMATCH         both sides hold a position, qty or entry differ -> ``wire.Position``
    EXTERNAL_POSITION         the exchange holds a position, we hold none -> adopted as a
                              ``wire.Position`` and flagged
    LOCAL_POSITION_GONE       we hold a position, the exchange none -> ``wire.Position`` qty 0
    BAD_EXCHANGE_DATA*        an answer we cannot use (unknown status, non-positive fill)

Timing. The two sides are never read at the same instant, so a difference can be news that
one side has and the other has not yet heard. The shell reads the local side *after* the
exchange side, on the thread that writes the database, and persists the repairs before it
writes anything else: the only race left is the exchange moving on after its answer while
the local side already heard of it. Hence:

1. An order record written at or after ``exchange.started_ms`` may be newer than the
   exchange's answer: it is deferred to the next run, not judged.
2. A position on a symbol with a fill (either side) at or after ``started_ms`` minus the
   clock margin is in flux: deferred.
3. An exchange order or fill we cannot attribute, younger than ``FRESH_MS`` at
   ``started_ms``, may be ours and still in the journal queue: deferred.
4. "Not found" proves an order dead only when the question left after its last possible
   arrival; ``started_ms`` is a lower bound on when every question left. ``now_ms`` only
   stamps the report.

Comparisons against local values go through ``as_stored``: the database holds REAL columns,
so an exchange value is compared as it would be stored. Comparing beyond that precision
would report differences that no repair could ever remove. Entry prices are compared with a
relative tolerance (``ENTRY_PRICE_REL_TOL``): Binance rounds the entry price it reports,
ours is the exact average of our fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Mapping, NamedTuple, Union

from common import wire
from venue.port import ExchangeFill, ExchangeOrder, ExchangePosition
from venue.order_rules import CLOCK_MARGIN_MS, DEFAULT_RECV_WINDOW_MS, attempt_dead_after_ms
from venue.orders import EXCHANGE_STATUS, TERMINAL, OrderState

# ---------------------------------------------------------------------------- vocabulary
OK, REPAIRED, MISMATCH = "OK", "REPAIRED", "MISMATCH"
TRADE_SAFE = frozenset({OK, REPAIRED})

MISSED_FILL = "MISSED_FILL"
ORDER_STATUS = "ORDER_STATUS"
ORDER_DEAD = "ORDER_DEAD"
ORDER_UNKNOWN_AT_EXCHANGE = "ORDER_UNKNOWN_AT_EXCHANGE"
ORDER_ADOPTED = "ORDER_ADOPTED"
EXTERNAL_ORDER = "EXTERNAL_ORDER"
EXTERNAL_FILL = "EXTERNAL_FILL"
POSITION_MISMATCH = "POSITION_MISMATCH"
EXTERNAL_POSITION = "EXTERNAL_POSITION"
LOCAL_POSITION_GONE = "LOCAL_POSITION_GONE"
BAD_EXCHANGE_DATA = "BAD_EXCHANGE_DATA"
KINDS = (MISSED_FILL, ORDER_STATUS, ORDER_DEAD, ORDER_UNKNOWN_AT_EXCHANGE, ORDER_ADOPTED, EXTERNAL_ORDER,
         EXTERNAL_FILL, POSITION_MISMATCH, EXTERNAL_POSITION, LOCAL_POSITION_GONE, BAD_EXCHANGE_DATA)
# what a human should look at even when it is repaired: someone else trades this account
FLAGGED_KINDS = frozenset({EXTERNAL_ORDER, EXTERNAL_FILL, EXTERNAL_POSITION})

NEVER_REACHED = "never reached the exchange"
ADOPTED = "adopted from the exchange: sent, not journaled"
# the brain's order ids (``venue.orders.make_client_order_id`` with trader_entries.ENTRY_PREFIX /
# EXIT_PREFIX): "<prefix>-<signal>-<n>" or "<prefix>.<hash>-<n>"
OUR_ORDER_PREFIXES = ("ae-", "ae.", "ax-", "ax.")
RECONCILED = "reconciled with the exchange"
FRESH_MS = 2_000  # journal queue lag (ms) plus CLOCK_MARGIN_MS of skew: a younger unknown record may be ours
ENTRY_PRICE_REL_TOL = Decimal("1e-6")  # Binance rounds its entryPrice; a missed fill moves the qty anyway

_S = OrderState
_CONFIRMED_STATES = frozenset({_S.ACKED.value, _S.PARTIALLY_FILLED.value, _S.CANCEL_PENDING.value})
TERMINAL_STATUSES = frozenset(s.value for s in TERMINAL)  # as the orders table spells them
# CANCEL_PENDING is our refinement of a live order (a cancel in flight): the exchange shows it live
_LIVE_AT_EXCHANGE = frozenset({_S.ACKED, _S.PARTIALLY_FILLED})

Repair = Union[wire.OrderRequest, wire.Fill, wire.OrderUpdate, wire.Position]
_ZERO = Decimal(0)


def as_stored(d: Decimal) -> Decimal:
    """The value a REAL column gives back for ``d`` (read through the float's shortest repr)."""
    return Decimal(repr(float(d)))


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


def is_ours(client_order_id: str) -> bool:
    """An order id the brain makes (entry or exit), whatever the journal holds."""
    return client_order_id.startswith(OUR_ORDER_PREFIXES)


# ---------------------------------------------------------------------------- snapshots
@dataclass(frozen=True, kw_only=True)
class LocalOrder:
    client_order_id: str
    exchange_order_id: str  # "" until the exchange gave one
    symbol: str
    side: str
    status: str  # an ``OrderState`` name, as the orders table holds it
    qty: Decimal
    filled_qty: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    updated_ms: int = 0  # when the record last changed (orders.updated_ns)


@dataclass(frozen=True, kw_only=True)
class LocalPosition:
    symbol: str
    qty: Decimal  # signed: > 0 long, < 0 short
    entry_price: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO  # ours alone (the exchange has no per-position figure): kept by repairs
    updated_ms: int = 0


@dataclass(frozen=True, kw_only=True)
class LocalSnapshot:
    """The local orders that matter (every non-terminal one, terminal ones updated within the
    local window, and any the shell asked for by id), every position row, recent fill keys."""

    taken_ms: int
    orders: Mapping[str, LocalOrder] = field(default_factory=dict)  # by client order id
    positions: Mapping[str, LocalPosition] = field(default_factory=dict)  # by symbol
    fill_keys: frozenset[tuple[str, str]] = frozenset()  # (symbol, trade_id)
    last_fill_ms: Mapping[str, int] = field(default_factory=dict)  # per symbol, our newest fill
    latest_order_ms: int = 0  # when the newest order the journal holds was made (0: none)
    # external fills reported by an earlier run (the journal's ``external_fills``): not flagged again
    reported_fills: frozenset[tuple[str, str]] = frozenset()  # (symbol, trade_id)


@dataclass(frozen=True, kw_only=True)
class ExchangeSnapshot:
    """The exchange's answers, read through the Broker port."""

    started_ms: int  # local time before the first request: a lower bound on every answer's time
    finished_ms: int
    traded_symbols: frozenset[str] = frozenset()  # the symbols we trade (external orders there block)
    open_orders: tuple[ExchangeOrder, ...] = ()
    # local non-terminal orders missing from the open list, asked one by one (None = not
    # found), and the terminal ones ``orders_to_recheck`` names (only when found)
    queried: Mapping[str, ExchangeOrder | None] = field(default_factory=dict)
    positions: tuple[ExchangePosition, ...] = ()
    fills: tuple[ExchangeFill, ...] = ()
    fills_since_ms: int = 0
    # the order history (``Broker.all_orders``) of the symbols asked, made since
    # ``history_since_ms``: finds our orders that finished at the exchange unseen (a machine
    # crash took their intent records), which the open list can no longer show
    history: tuple[ExchangeOrder, ...] = ()
    history_since_ms: int = 0

    @property
    def duration_ms(self) -> int:
        return self.finished_ms - self.started_ms


def orders_to_recheck(local: LocalSnapshot, fills: Iterable[ExchangeFill]) -> tuple[LocalOrder, ...]:
    """Terminal local orders whose executed quantity the exchange may contradict: a FILLED
    record that counts less than its quantity, or one the exchange's fills of it exceed.

    A terminal order is not asked about otherwise (it left the open list for good), yet its
    record can lag: a brain killed between learning "FILLED" from a query and fetching the
    trades journals FILLED with nothing executed, and its restarted self loads only live
    orders. The missed fills come back through MISSED_FILL; asking the order again (the
    shell does, after the fills) lets ``_compare_order`` repair its executed quantity too.
    Fills before the lookback may be missing from ``fills``: the sum only ever proves the
    record short, never long."""
    ours = local.orders
    by_exchange_id = {o.exchange_order_id: o.client_order_id for o in ours.values() if o.exchange_order_id}
    executed: dict[str, Decimal] = {}
    for f in {(f.symbol, f.trade_id): f for f in fills}.values():  # pages may overlap
        cid = f.client_order_id if f.client_order_id in ours else by_exchange_id.get(f.exchange_order_id, "")
        if cid and _usable(f.qty):
            executed[cid] = executed.get(cid, _ZERO) + f.qty
    return tuple(o for o in ours.values() if is_terminal(o.status) and (
        (o.status == _S.FILLED.value and o.filled_qty != as_stored(o.qty))
        or as_stored(executed.get(o.client_order_id, _ZERO)) > o.filled_qty))


# ---------------------------------------------------------------------------- report
@dataclass(frozen=True, kw_only=True)
class Difference:
    kind: str  # one of ``KINDS``
    symbol: str
    client_order_id: str = ""
    detail: str = ""
    blocking: bool = False  # trading is unsafe while this stands


@dataclass(frozen=True, kw_only=True)
class Report:
    status: str  # OK | REPAIRED | MISMATCH
    at_ms: int
    differences: tuple[Difference, ...] = ()
    # fills first, then order updates, then positions: a consumer applying them in order sees
    # the trades before the status that counts them
    repairs: tuple[Repair, ...] = ()
    adopted: tuple[str, ...] = ()  # symbols whose external position became a local row
    flagged: tuple[Difference, ...] = ()  # external orders, fills, positions: for a human
    deferred: tuple[str, ...] = ()  # "order:<id>" / "position:<symbol>" / ...: judged next run
    # the first report of each external fill, to journal (so no later run reports it again)
    flag_records: tuple[wire.ExternalFill, ...] = ()
    # external fills reported by an earlier run, still in the exchange's window: open, not new
    standing: tuple[Difference, ...] = ()

    @property
    def ok(self) -> bool:
        """Trade-safe once ``repairs`` are persisted."""
        return self.status in TRADE_SAFE

    @property
    def blocking(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.blocking)


def for_brain(report: Report) -> wire.Reconciled | None:
    """What the running brain must hear of a run (``wire.Reconciled``): the symbols of every
    repair and our order ids adopted; None when nothing was repaired (the brain's own record
    then already equals the exchange's, as far as this run could tell)."""
    if not report.repairs:
        return None
    return wire.Reconciled(status=report.status, at_ms=report.at_ms,
                           symbols=tuple(sorted({r.symbol for r in report.repairs})),
                           adopted_orders=tuple(sorted({d.client_order_id for d in report.differences
                                                        if d.kind == ORDER_ADOPTED})))


class _Part(NamedTuple):
    differences: tuple[Difference, ...] = ()
    repairs: tuple[Repair, ...] = ()
    deferred: tuple[str, ...] = ()
    records: tuple[wire.ExternalFill, ...] = ()
    standing: tuple[Difference, ...] = ()


def _join(parts: Iterable[_Part]) -> _Part:
    ps = list(parts)
    return _Part(*(tuple(x for p in ps for x in p[i]) for i in range(len(_Part._fields))))


def _usable(*values: Decimal) -> bool:
    return all(v.is_finite() for v in values)


# ---------------------------------------------------------------------------- diff
def diff(local: LocalSnapshot, exchange: ExchangeSnapshot, *, now_ms: int,
         recv_window_ms: int = DEFAULT_RECV_WINDOW_MS) -> Report:
    """Compare both sides; the exchange is right. Never raises for odd exchange data: reports it."""
    fills = _fills(local, exchange)
    orders = _orders(local, exchange, recv_window_ms)
    # a position our own adopted orders moved is ours: repaired, not flagged as external
    ours_moved = frozenset(x.symbol for x in orders.differences if x.kind == ORDER_ADOPTED
                           and x.symbol in {r.symbol for r in orders.repairs
                                            if isinstance(r, wire.OrderUpdate) and r.filled_qty > 0})
    positions = _positions(local, exchange, ours_moved)
    d = fills.differences + orders.differences + positions.differences
    status = MISMATCH if any(x.blocking for x in d) else REPAIRED if d else OK
    return Report(status=status, at_ms=now_ms, differences=d,
                  repairs=fills.repairs + orders.repairs + positions.repairs,
                  adopted=tuple(x.symbol for x in d if x.kind == EXTERNAL_POSITION),
                  flagged=tuple(x for x in d if x.kind in FLAGGED_KINDS),
                  deferred=fills.deferred + orders.deferred + positions.deferred,
                  flag_records=fills.records, standing=fills.standing)


# -- orders
def _orders(local: LocalSnapshot, ex: ExchangeSnapshot, recv_window_ms: int) -> _Part:
    open_by_id = {o.client_order_id: o for o in ex.open_orders}
    parts = []
    for o in local.orders.values():
        if o.client_order_id in open_by_id:
            answer: ExchangeOrder | None = open_by_id[o.client_order_id]
        elif o.client_order_id in ex.queried:
            answer = ex.queried[o.client_order_id]
        else:
            continue  # not asked: terminal and off the open list, or newer than the questions
        if o.updated_ms >= ex.started_ms:
            parts.append(_Part(deferred=(f"order:{o.client_order_id}",)))
        elif answer is None:
            parts.append(_not_found(o, ex.started_ms, recv_window_ms))
        else:
            parts.append(_compare_order(o, answer))
    for e in _unjournaled(local, ex):
        parts.append(_adopt_order(e, ex) if is_ours(e.client_order_id) else _external_order(e, ex))
    return _join(parts)


def _unjournaled(local: LocalSnapshot, ex: ExchangeSnapshot) -> list[ExchangeOrder]:
    """The exchange's orders (open, or answered to a query) the local record does not hold,
    and ours in the order history (someone else's finished orders are no concern here: their
    fills are flagged, their effect on a position repaired through the position)."""
    seen: dict[str, ExchangeOrder] = {}
    for e in [*ex.open_orders, *(a for a in ex.queried.values() if a is not None),
              *(h for h in ex.history if is_ours(h.client_order_id))]:
        if e.client_order_id not in local.orders and e.client_order_id not in seen:
            seen[e.client_order_id] = e
    return list(seen.values())


def _signal_of(cid: str) -> str:
    """The signal id inside ``<prefix>-<signal>-<n>``; "" for the hashed form."""
    if cid[2:3] != "-" or cid.count("-") < 2:
        return ""
    return cid[3:].rsplit("-", 1)[0]


def _adopt_order(e: ExchangeOrder, ex: ExchangeSnapshot) -> _Part:
    """One of our orders the journal does not know: its row and its state, as the exchange has them.
    Deferred while young (its journal row may still be on the way)."""
    if e.update_ms and e.update_ms >= ex.started_ms - FRESH_MS:
        return _Part(deferred=(f"adopt_order:{e.client_order_id}",))
    state = EXCHANGE_STATUS.get(e.status)
    if state is None or not (_usable(e.qty, e.executed_qty, e.avg_price, e.price) and e.qty > 0):
        return _Part(differences=(Difference(
            kind=BAD_EXCHANGE_DATA, symbol=e.symbol, client_order_id=e.client_order_id, blocking=True,
            detail=f"status {e.status!r} qty {e.qty} executed {e.executed_qty} avg {e.avg_price}"),))
    reduce_only = e.reduce_only or e.client_order_id.startswith("ax")
    return _Part(
        differences=(Difference(kind=ORDER_ADOPTED, symbol=e.symbol, client_order_id=e.client_order_id,
                                detail=(f"{e.status} {e.side} {e.order_type} {e.qty}, executed {e.executed_qty},"
                                        f" exchange id {e.exchange_order_id}")),),
        repairs=(wire.OrderRequest(client_order_id=e.client_order_id, symbol=e.symbol, side=e.side,
                                   order_type=e.order_type or "MARKET", qty=float(e.qty), price=float(e.price),
                                   reduce_only=reduce_only, signal_id=_signal_of(e.client_order_id)),
                 wire.OrderUpdate(client_order_id=e.client_order_id, exchange_order_id=e.exchange_order_id,
                                  symbol=e.symbol, status=state.value, filled_qty=float(e.executed_qty),
                                  avg_price=float(e.avg_price), reason=ADOPTED)))


def _compare_order(o: LocalOrder, e: ExchangeOrder) -> _Part:
    state = EXCHANGE_STATUS.get(e.status)
    if state is None or not _usable(e.executed_qty, e.avg_price):
        return _Part(differences=(Difference(
            kind=BAD_EXCHANGE_DATA, symbol=o.symbol, client_order_id=o.client_order_id, blocking=True,
            detail=f"status {e.status!r} executed {e.executed_qty} avg {e.avg_price}"),))
    executed = as_stored(e.executed_qty)
    exchange_id = e.exchange_order_id or o.exchange_order_id
    same_state = o.status == state.value or (o.status == _S.CANCEL_PENDING.value and state in _LIVE_AT_EXCHANGE)
    if same_state and o.filled_qty == executed and o.exchange_order_id == exchange_id:
        return _Part()
    status = o.status if same_state else state.value
    detail = (f"local {o.status} filled {o.filled_qty} id {o.exchange_order_id or '-'};"
              f" exchange {e.status} executed {e.executed_qty} id {exchange_id or '-'}")
    return _Part(
        differences=(Difference(kind=ORDER_STATUS, symbol=o.symbol, client_order_id=o.client_order_id,
                                detail=detail),),
        repairs=(wire.OrderUpdate(client_order_id=o.client_order_id, exchange_order_id=exchange_id,
                                  symbol=o.symbol, status=status, filled_qty=float(e.executed_qty),
                                  avg_price=float(e.avg_price), reason=RECONCILED),))


def _not_found(o: LocalOrder, asked_ms: int, recv_window_ms: int) -> _Part:
    def unknown(detail: str) -> _Part:
        return _Part(differences=(Difference(kind=ORDER_UNKNOWN_AT_EXCHANGE, symbol=o.symbol,
                                             client_order_id=o.client_order_id, detail=detail, blocking=True),))

    if o.exchange_order_id or o.status in _CONFIRMED_STATES:
        return unknown(f"{o.status} order {o.exchange_order_id or '-'} confirmed, but the exchange has none")
    # ``updated_ms`` is at or after the last send (a send, or the timeout after it, wrote it):
    # taking it as the send time only makes the deadline later, never earlier
    dead_after_ms = attempt_dead_after_ms(o.updated_ms, recv_window_ms)
    if asked_ms <= dead_after_ms:
        return unknown(f"{o.status}, not found; may still arrive until {dead_after_ms}")
    return _Part(
        differences=(Difference(kind=ORDER_DEAD, symbol=o.symbol, client_order_id=o.client_order_id,
                                detail=f"{o.status}, not found after {dead_after_ms}: {NEVER_REACHED}"),),
        repairs=(wire.OrderUpdate(client_order_id=o.client_order_id, exchange_order_id=o.exchange_order_id,
                                  symbol=o.symbol, status=_S.CANCELED.value,
                                  filled_qty=float(o.filled_qty), avg_price=float(o.avg_price),
                                  reason=NEVER_REACHED),))


def _external_order(e: ExchangeOrder, ex: ExchangeSnapshot) -> _Part:
    if e.update_ms and e.update_ms >= ex.started_ms - FRESH_MS:
        return _Part(deferred=(f"external_order:{e.client_order_id}",))
    return _Part(differences=(Difference(
        kind=EXTERNAL_ORDER, symbol=e.symbol, client_order_id=e.client_order_id,
        blocking=e.symbol in ex.traded_symbols,
        detail=(f"{e.status} {e.side} {e.order_type} {e.qty} @ {e.price}, executed {e.executed_qty},"
                f" exchange id {e.exchange_order_id}")),))


# -- fills
def _fills(local: LocalSnapshot, ex: ExchangeSnapshot) -> _Part:
    ours = local.orders
    by_exchange_id = {o.exchange_order_id: o.client_order_id for o in ours.values() if o.exchange_order_id}
    # an order we sent whose ack we missed: only the exchange's answers link the two ids
    answers = [*ex.open_orders, *(a for a in ex.queried.values() if a is not None), *ex.history]
    by_exchange_id.update({a.exchange_order_id: a.client_order_id for a in answers
                           if a.exchange_order_id and (a.client_order_id in ours or _adoptable(a, ex))})
    unique = {(f.symbol, f.trade_id): f for f in ex.fills}  # pages may overlap
    parts = []
    for key in sorted(unique):
        if key in local.fill_keys:
            continue
        f = unique[key]
        cid = f.client_order_id if f.client_order_id in ours else by_exchange_id.get(f.exchange_order_id, "")
        if not cid and is_ours(f.client_order_id) and f.time_ms < ex.started_ms - FRESH_MS:
            cid = f.client_order_id  # a fill naming one of our ids: its order is adopted with it
        if not cid:
            parts.append(_external_fill(f, ex.started_ms, reported=key in local.reported_fills))
        elif not (_usable(f.qty, f.price, f.fee) and f.qty > 0 and f.price > 0):
            parts.append(_Part(differences=(Difference(
                kind=BAD_EXCHANGE_DATA, symbol=f.symbol, client_order_id=cid, blocking=True,
                detail=f"trade {f.trade_id} qty {f.qty} price {f.price} fee {f.fee}"),)))
        else:
            parts.append(_Part(
                differences=(Difference(kind=MISSED_FILL, symbol=f.symbol, client_order_id=cid,
                                        detail=f"trade {f.trade_id} {f.side} {f.qty} @ {f.price}"),),
                repairs=(wire.Fill(client_order_id=cid, exchange_order_id=f.exchange_order_id,
                                   trade_id=f.trade_id, symbol=f.symbol, side=f.side, qty=float(f.qty),
                                   price=float(f.price), fee=float(f.fee), fee_asset=f.fee_asset,
                                   liquidity=f.liquidity),)))
    return _join(parts)


def _adoptable(e: ExchangeOrder, ex: ExchangeSnapshot) -> bool:
    """One of our orders old enough to be adopted (``_adopt_order``): its fills are ours too."""
    return is_ours(e.client_order_id) and not (e.update_ms and e.update_ms >= ex.started_ms - FRESH_MS)


def _external_fill(f: ExchangeFill, started_ms: int, *, reported: bool = False) -> _Part:
    """Flagged at the first run that can judge it, with its record for the journal; once the
    journal holds it (``reported``) it only stands, listed, never flagged or counted again."""
    detail = f"trade {f.trade_id} {f.side} {f.qty} @ {f.price}, exchange order {f.exchange_order_id}"
    d = Difference(kind=EXTERNAL_FILL, symbol=f.symbol, client_order_id=f.client_order_id, detail=detail)
    if reported:
        return _Part(standing=(d,))
    if f.time_ms >= started_ms - FRESH_MS:
        return _Part(deferred=(f"external_fill:{f.symbol}:{f.trade_id}",))
    if not (_usable(f.qty, f.price, f.fee) and f.side in ("BUY", "SELL")):
        return _Part(differences=(d,))  # flagged, but no record the journal could hold: told again next run
    return _Part(differences=(d,), records=(wire.ExternalFill(
        symbol=f.symbol, trade_id=f.trade_id, exchange_order_id=f.exchange_order_id,
        client_order_id=f.client_order_id, side=f.side, qty=float(f.qty), price=float(f.price), fee=float(f.fee),
        fee_asset=f.fee_asset, time_ms=f.time_ms, detail=detail),))


# -- positions
def _positions(local: LocalSnapshot, ex: ExchangeSnapshot, ours_moved: frozenset[str] = frozenset()) -> _Part:
    theirs = {p.symbol: p for p in ex.positions if p.qty != 0}
    since_ms = ex.started_ms - CLOCK_MARGIN_MS  # exchange fill times are on the exchange's clock
    in_flux = ({f.symbol for f in ex.fills if f.time_ms >= since_ms}
               | {s for s, t in local.last_fill_ms.items() if t >= since_ms})
    parts = []
    for symbol in sorted(set(theirs) | set(local.positions)):
        mine, their = local.positions.get(symbol), theirs.get(symbol)
        if their is not None and not _usable(their.qty, their.entry_price, their.unrealized_pnl):
            parts.append(_Part(differences=(Difference(
                kind=BAD_EXCHANGE_DATA, symbol=symbol, blocking=True,
                detail=f"position qty {their.qty} entry {their.entry_price}"),)))
            continue
        if _same_position(mine, their):
            continue
        if symbol in in_flux:
            parts.append(_Part(deferred=(f"position:{symbol}",)))
            continue
        parts.append(_position_repair(symbol, mine, their, ours=symbol in ours_moved))
    return _join(parts)


def _same_position(mine: LocalPosition | None, their: ExchangePosition | None) -> bool:
    qty = mine.qty if mine is not None else _ZERO
    their_qty = as_stored(their.qty) if their is not None else _ZERO
    if qty != their_qty:
        return False
    if qty == 0 or mine is None or their is None:
        return True
    entry, their_entry = mine.entry_price, as_stored(their.entry_price)
    return abs(entry - their_entry) <= ENTRY_PRICE_REL_TOL * max(abs(entry), abs(their_entry))


def _position_repair(symbol: str, mine: LocalPosition | None, their: ExchangePosition | None, *,
                     ours: bool = False) -> _Part:
    realized = float(mine.realized_pnl) if mine is not None else 0.0
    local_txt = f"local {mine.qty} @ {mine.entry_price}" if mine is not None else "no local row"
    if their is None:
        return _Part(
            differences=(Difference(kind=LOCAL_POSITION_GONE, symbol=symbol,
                                    detail=f"{local_txt}; exchange flat"),),
            repairs=(wire.Position(symbol=symbol, qty=0.0, entry_price=0.0, unrealized_pnl=0.0,
                                   realized_pnl=realized),))
    kind = EXTERNAL_POSITION if (mine is None or mine.qty == 0) and not ours else POSITION_MISMATCH
    return _Part(
        differences=(Difference(kind=kind, symbol=symbol,
                                detail=f"{local_txt}; exchange {their.qty} @ {their.entry_price}"),),
        repairs=(wire.Position(symbol=symbol, qty=float(their.qty), entry_price=float(their.entry_price),
                               unrealized_pnl=float(their.unrealized_pnl), realized_pnl=realized),))
