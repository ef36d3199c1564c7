"""The user data stream inside the execution shell: the exchange's news, applied as it comes.

``Execution.poll`` calls ``pump`` every time round: it drains up to ``MAX_ITEMS_PER_POLL``
items the stream client queued (``venue.binance.user_stream_client``; its thread never touches
the trader), orders them (``venue.binance.user_updates.plan``) and hands each step to the
trader function that already handles the same news from REST:

    Fill          trader_fills.on_fill (idempotent by trade id: REST and stream may both bring it)
    OrderStatus   trader_fills.on_order_event(QueryResult(found, X, i, z)): a status, and a check
                  that z matches the fills we hold (the order machine fetches missing ones)
    AlgoStatus    trader_exchange.on_algo_event(ao.Update(X, aid, ai))
    Position      trader_exchange.on_exchange_position: flat under an open trade frees its slot at once,
                  cancels its protection and fetches the symbol's fills (no exit is sent)
    MarginWarning logged as a warning with the symbols, counted
    Resync        REST re-read: positions, then (once they are applied) a query of every
                  order and protective order that may be live at the exchange

Only our own orders are applied: an event for a client id the trader does not hold (a manual
order, a liquidation's ``autoclose-``) is counted and left alone; the position it moves still
reaches the trader through ``ACCOUNT_UPDATE``.

A position update can be older than the trade it would act on: the REST answer of an entry
often arrives before the stream has delivered the previous trade's exit on the same symbol
(and its flat position). The stream is in order, so the shell remembers the trade ids the
stream delivered (``Link.seen``; at a Resync every fill we hold counts as delivered: the new
connection only carries what happens after it) and ignores, counted, a position while the
stream has not yet delivered every fill of the trade's entry (``user_updates.behind``).

A flat position while our own exit of that trade is in flight is almost always that exit (its
``ACCOUNT_UPDATE`` is sent before its trade, and the two may be drained by different polls):
it is held (``Link.held``) until the exit has ended. Filled, the trade closes by its fill and
the flat is dropped; refused or expired (nothing left to reduce: someone else closed it), the
flat is applied then.

Before the execution is ready (start-up reads the account by REST) the trader holds nothing to
apply news to: items are dropped, counted, and one Resync runs as soon as it is ready.

While the stream is connected the REST position poll is only the backstop
(``STREAM_POSITION_POLL_S``); while it is not, the execution's own period applies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable, Protocol

import structlog

from common.log import RateLimiter
from services.brain import dispatcher as dsp
from services.brain import jobs, trader, trader_exchange, trader_fills
from services.brain import funding_feed
from venue import algo_orders as ao
from venue import orders as om
from venue.binance import user_updates as uu
from venue.port import ExchangePosition

if TYPE_CHECKING:  # the execution imports this module
    from services.brain.execution import Execution

log = structlog.get_logger(__name__)

MAX_ITEMS_PER_POLL = 1_000  # a burst is spread over polls: the ring reader never waits long
SEEN_MAX = 50_000  # trade ids remembered from the stream (a forgotten one delays a flat to the REST poll)
STREAM_POSITION_POLL_S = 30.0  # REST position poll while the stream is connected (the backstop)


class Source(Protocol):
    """What the shell uses of the stream client (tests hand in a plain queue)."""

    connected: bool

    def drain(self, max_items: int) -> list[tuple[int, Any]]: ...

    def stats(self) -> dict[str, Any]: ...

    def stop(self, timeout_s: float = 5.0) -> None: ...


@dataclass
class Link:
    """The execution's end of the stream: the client and what the shell did with its news."""

    client: Source
    applied: dict[str, int] = field(default_factory=dict)  # by step kind
    ignored: dict[str, int] = field(default_factory=dict)  # by reason
    resync_due: bool = False  # a Resync came before the execution was ready
    resyncs_done: int = 0
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(60.0))
    seen: dict[str, None] = field(default_factory=dict)  # trade ids delivered, oldest first
    held: dict[str, uu.Position] = field(default_factory=dict)  # flats waiting for our own exit

    def see(self, trade_ids: Iterable[str]) -> None:
        for tid in trade_ids:
            self.seen[tid] = None
        while len(self.seen) > SEEN_MAX:
            del self.seen[next(iter(self.seen))]


def _inc(d: dict[str, int], key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


def pump(ex: Execution, max_items: int = MAX_ITEMS_PER_POLL) -> int:
    """Apply what the stream queued since the last poll; the number of items drained."""
    link = ex.user_stream
    assert link is not None
    items = link.client.drain(max_items)
    if not ex.ready:
        if items:
            _inc(link.ignored, "before_ready", len(items))
            link.resync_due = True
        return len(items)
    if link.resync_due:
        link.resync_due = False
        resync(ex, uu.Resync(reason="after_start"))
    if items:
        for step in uu.plan(it for _, it in items):
            apply(ex, step)
    if link.held:
        _release_held(ex, link)
    return len(items)


def _exit_in_flight(ex: Execution, t: trader.Trade) -> bool:
    o = ex.st.orders.get(t.exit_cid) if t.exit_cid else None
    return o is not None and not o.is_terminal


def _release_held(ex: Execution, link: Link) -> None:
    """Flats held for our own exit: dropped once the trade is closed, applied once the exit
    ended without closing it."""
    for sym, step in list(link.held.items()):
        t = ex.st.trades.get(sym)
        if t is None or t.position <= 0:
            del link.held[sym]
        elif not _exit_in_flight(ex, t):
            del link.held[sym]
            ex.apply(trader_exchange.on_exchange_position(ex.cfg, ex.st, sym, step.qty, ex.ctx((sym,))))


def apply(ex: Execution, step: uu.Step) -> None:
    """One step through the trader (module docstring's table)."""
    link = ex.user_stream
    assert link is not None
    st = ex.st
    kind = type(step).__name__
    if isinstance(step, uu.Fill):
        link.see((step.fill.trade_id,))
        cid = step.client_order_id
        if cid not in st.orders and cid not in st.algos:  # a triggered algo order carries its caid
            _inc(link.ignored, "foreign_fill")
            return
        _apply_fill(ex, cid, step)
    elif isinstance(step, uu.OrderStatus):
        if step.client_order_id not in st.orders:
            _inc(link.ignored, "foreign_order")
            return
        ex.apply(trader_fills.on_order_event(ex.cfg, st, step.client_order_id, step.query_result(ex.host.clock_ms()),
                                            ex.ctx((step.symbol,))))
    elif isinstance(step, uu.AlgoStatus):
        if step.client_algo_id not in st.algos:
            _inc(link.ignored, "foreign_algo")
            return
        ex.apply(trader_exchange.on_algo_event(ex.cfg, st, step.client_algo_id, step.update, ex.ctx((step.symbol,))))
    elif isinstance(step, uu.Position):
        t = st.trades.get(step.symbol)
        if t is None:
            _inc(link.ignored, "untraded_position")
            return
        entry = st.orders.get(t.entry_cid)
        if entry is not None and uu.behind(entry.trade_ids, link.seen):
            _inc(link.ignored, "stale_position")
            return
        link.held.pop(step.symbol, None)  # newer news of the symbol
        if step.qty == 0 and t.position > 0 and _exit_in_flight(ex, t):
            link.held[step.symbol] = step
            _inc(link.ignored, "flat_held_for_own_exit")
            return
        ex.apply(trader_exchange.on_exchange_position(ex.cfg, st, step.symbol, step.qty, ex.ctx((step.symbol,))))
    elif isinstance(step, uu.FundingFee):
        funding_feed.on_event(ex, step.transaction_ms, step.balance_change)
    elif isinstance(step, uu.MarginWarning):
        log.warning("brain.margin_call", symbols=list(step.symbols), cross_wallet=str(step.cross_wallet))
    elif isinstance(step, uu.Resync):
        resync(ex, step)
    _inc(link.applied, kind)


def _apply_fill(ex: Execution, cid: str, step: uu.Fill) -> None:
    ex.apply(trader_fills.on_fill(ex.cfg, ex.st, step.fill, ex.ctx((step.fill.symbol,)), client_order_id=cid))


def resync(ex: Execution, r: uu.Resync) -> None:
    """Re-read by REST what the stream may have missed: the positions first, then (``resynced``)
    every order and protective order that may be live at the exchange (their queries fetch
    missing fills). Positions first: a ``closePosition`` stop that ended because its position
    closed must find the trade already flat, or the trader would re-arm it for nothing."""
    link = ex.user_stream
    assert link is not None
    if not ex.ready:
        link.resync_due = True
        return
    link.resyncs_done += 1
    link.see(tid for o in ex.st.orders.values() for tid in o.trade_ids)  # the new connection is past them
    ex.dispatcher.submit(dsp.QUERY, ex.broker.positions, tag=jobs.StreamResync(ex.host.clock_ms(), r.reason, r.connection))


def resynced(ex: Execution, c: dsp.Completion) -> None:
    """The resync's positions came back (or failed): apply them, then query the live orders."""
    link = ex.user_stream
    assert link is not None
    tag = c.tag
    assert isinstance(tag, jobs.StreamResync)
    sent_ms, reason, connection = tag.sent_ms, tag.reason, tag.connection
    if c.error is None and ex.ready:
        apply_position_read(ex, c.result, sent_ms)
    elif c.error is not None:  # the REST position poll is the backstop; the queries go anyway
        _inc(link.ignored, "resync_positions_failed")
        log.warning("brain.user_stream_resync_positions_failed", error=str(c.error)[:200])
    orders = [(cid, o.symbol) for cid, o in ex.st.orders.items()
              if not o.is_terminal and o.state != om.S.NEW_LOCAL]
    algos = [(cid, a.symbol) for cid, a in ex.st.algos.items()
             if not a.is_terminal and a.state != ao.A.NEW_LOCAL]
    for cid, sym in orders:
        ex.dispatch(om.QueryOrder(client_order_id=cid, not_before_ms=0), sym)
    for cid, sym in algos:
        ex.dispatch(ao.QueryAlgo(client_algo_id=cid, not_before_ms=0), sym)
    routine = reason in ("first", "after_start", "rollover")
    if routine or link.limiter.allow(reason, time.monotonic()):
        (log.info if routine else log.warning)(
            "brain.user_stream_resync", reason=reason, connection=connection, orders=len(orders),
            protective_orders=len(algos), trades=len(ex.st.trades))


def apply_position_read(ex: Execution, positions: Iterable[ExchangePosition], sent_ms: int) -> None:
    """A REST read of the positions (non-zero ones), sent at ``sent_ms``, applied to every open
    trade, except a trade whose first fill we applied after the read was sent: the read may
    predate its position, and would call it closed (the stream or the next read tells). A
    size the read shows is compared only if no fill of ours moved the trade since it was sent."""
    held = {p.symbol: p.qty for p in positions}
    for sym in list(ex.st.trades):
        t = ex.st.trades.get(sym)
        if t is None or t.first_fill_ms > sent_ms:
            continue
        ex.apply(trader_exchange.on_exchange_position(ex.cfg, ex.st, sym, held.get(sym, Decimal(0)), ex.ctx((sym,)),
                                                     read_ms=sent_ms))


def position_poll_s(ex: Execution) -> float:
    """The REST position poll's period: a backstop while the stream is connected."""
    link = ex.user_stream
    if link is not None and link.client.connected:
        return max(ex.position_poll_s, STREAM_POSITION_POLL_S)
    return ex.position_poll_s


def snapshot(ex: Execution) -> dict[str, Any] | None:
    """The stream's counters for ``Execution.snapshot`` (None without a stream)."""
    link = ex.user_stream
    if link is None:
        return None
    return {**link.client.stats(), "applied": dict(link.applied), "ignored": dict(link.ignored),
            "resyncs_done": link.resyncs_done}
