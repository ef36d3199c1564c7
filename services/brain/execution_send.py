"""The execution shell's order send path: the trader's new orders and protective orders
carried out, and every effect of the state machines sent to the broker.

Orders (live and demo): intent log, send, journal (``_log_then_send``; ``intent_log``). The
order's record is appended to the brain's own log file (one ``write``; fsync batched by the
log's flusher thread) before it can leave; the database's row follows through the buffered
journal (``execution_timers``' audit publishes a row again if it never arrived). Replay mode
(no intent log): "journal, then act", the synchronous journal's round trip before each send
(``_new_order``). ``dispatch`` hands each effect (submit, cancel, query, fetch fills, the
protective orders' own) to the dispatcher's threads; an exit's frame may already be written
from the deciding thread (``execution_inline``).

A part of the shell ``Execution`` (``services/brain/execution.py``, made of such parts): its
methods read and change the shell's state, set up in ``Execution.__init__``
and declared, with its types, in ``execution_parts.ExecutionParts``."""

from __future__ import annotations

import time
from typing import Any, Callable

import structlog

from common import wire
from common.errors import DataError, TransientError
from services.brain import dispatcher as dsp
from venue import algo_orders as ao
from venue import orders as om
from services.brain import intent_log, jobs, protection, trader, trader_exchange, trader_fills
from venue.port import AlgoSpec
from services.brain.execution_inline import order_spec
from services.brain.execution_parts import Effect, ExecutionParts, FillsGrace

log = structlog.get_logger(__name__)

REMAINDER_WAIT_MS = 10_000  # a symbol not quiet by then after our exit: left to reconciliation
STREAM_FILLS_GRACE_MS = 1_000  # fills the user stream should have told by then are read over REST
JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"
INTENT_LOG_UNAVAILABLE = "INTENT_LOG_UNAVAILABLE"  # the local intent log refused a write: no entry


class OrderSend(ExecutionParts):
    """The order send path (module docstring)."""

    def _new_order(self, a: trader.NewOrder) -> None:
        """Journal, then act: the order is on disk before the exchange hears of it. With the
        intent log: written there (one ``write``), sent, then journaled (``_log_then_send``)."""
        if self.intents is not None:
            self._log_then_send(a)
            return
        cid = a.order.client_order_id
        self.ttt.decided(cid, a.order.reduce_only)  # tick-to-trade (a no-op without a triggering tick)
        held = self._take_signal(a.order)
        if held is not None:  # the signal's row before its order's (the journal's order: one socket)
            held[1]()
        self.publish_only(a.request)
        try:
            self.host.journal_sync(a.request)
        except TransientError as exc:
            self.counters["journal_sync_failed"] += 1
            if a.order.reduce_only:
                # an exit is never blocked by our journal: its id is deterministic (ax-...), so
                # reconciliation finds it at the exchange; the journal gets it when it is back
                self.counters["sent_unjournaled"] += 1
                log.error("brain.exit_sent_unjournaled", client_order_id=cid, error=str(exc))
                self.publish(a.request)
                self._event(cid, om.Send(at_ms=self.host.clock_ms()))
                return
            log.error("brain.journal_unavailable", client_order_id=cid, error=str(exc))
            self.ttt.forget(cid)
            self._event(cid, om.CancelRequest())
            self.publish(wire.RiskReject(symbol=a.order.symbol, reason=JOURNAL_UNAVAILABLE, detail=str(exc),
                                         signal_id=a.order.signal_id))
            return
        self.ttt.journaled(cid)
        self._event(cid, om.Send(at_ms=self.host.clock_ms()))

    def _log_then_send(self, a: trader.NewOrder) -> None:
        """Intent log, send, journal. The record is written (not yet fsync'd: the log's flusher
        group-commits) before the order can leave; the journal's row and everything the send
        published follow it through the buffered path, the row first (an update never arrives
        before the row it updates). An exit goes even if the log refuses the write (its ax- id
        finds it at the exchange); an entry does not."""
        cid = a.order.client_order_id
        if self._lane_fired.pop(cid, None) is not None:  # the lane logged and wrote it already
            self._sent_then_journaled(cid, a)
            return
        self.ttt.decided(cid, a.order.reduce_only)
        t = self.st.trades.get(a.order.symbol)
        plan = None
        if not a.order.reduce_only and t is not None and t.entry_cid == cid:
            sig = self._signal_of(a.order)
            plan = intent_log.Plan(trade_id=t.trade_id, stop=t.stop, target=t.target, confidence=t.confidence,
                                   features=dict(t.features), signal=None if sig is None else sig[0])
        try:  # the flusher is woken after the send: woken now, it would take the interpreter
            # at the frame's write (as the exit lane does; the record is written either way)
            self.intents.append(intent_log.Intent(client_id=cid, at_ns=self.host.clock_ms() * 1_000_000, body=a.request,
                                                  plan=plan), wake=False)
        except (OSError, ValueError, DataError) as exc:  # ValueError: a closed file's own
            self.counters["intent_log_failed"] += 1
            if not a.order.reduce_only:
                log.error("brain.intent_log_unavailable", client_order_id=cid, error=str(exc))
                self.ttt.forget(cid)
                self._event(cid, om.CancelRequest())
                self.publish(wire.RiskReject(symbol=a.order.symbol, reason=INTENT_LOG_UNAVAILABLE,
                                             detail=str(exc)[:200], signal_id=a.order.signal_id))
                return
            log.error("brain.exit_sent_unlogged", client_order_id=cid, error=str(exc))
        self.ttt.journaled(cid)
        try:
            if a.order.reduce_only and self._send_now is not None:
                self._presend_exit(a.order)  # the exit's frame first; the state machine hears of it next
            self._sent_then_journaled(cid, a)
        finally:
            self.intents.wake()  # the record's fsync (group commit), now that the order is out

    def _signal_of(self, order: om.Order) -> tuple[wire.SignalGenerated, Callable[[], None]] | None:
        """The signal in hand, with its announcement, if ``order`` is its entry."""
        held = self.signal_in_hand
        if held is None or order.reduce_only or held[0].signal_id != order.signal_id or not order.signal_id:
            return None
        return held

    def _take_signal(self, order: om.Order) -> tuple[wire.SignalGenerated, Callable[[], None]] | None:
        """``_signal_of``, let go of: its announcement is made by the caller, once."""
        held = self._signal_of(order)
        if held is not None:
            self.signal_in_hand = None
        return held

    def _sent_then_journaled(self, cid: str, a: trader.NewOrder) -> None:
        """``_log_then_send``'s second half: the state machine's send (which claims a frame
        already written), then the signal it came from (an entry's, announced once), the
        journal's row and what the send published."""
        held = self._take_signal(a.order)  # announced here, once
        self._held_send(cid, lambda: self._event(cid, om.Send(at_ms=self.host.clock_ms())), a.request,
                        first=None if held is None else held[1])
        self.journal_unseen[cid] = (self.host.clock_ms(), (a.request,) if held is None else (held[0], a.request))
        left = self._presend.pop(cid, None)
        if left is not None:  # the state machine did not ask for the submit it was sent for
            self._claim_presend(left, a.order.symbol, jobs.Submit(cid, 1, self.host.clock_ms()), unclaimed=True)

    def _held_send(self, cid: str, send: Callable[[], None], row: Any, first: Callable[[], None] | None = None) -> None:
        """Run ``send`` with this shell's publishing held back, then ``first`` (an entry's signal
        announced), publish ``row`` (to the journal too) and what ``send`` published, in that
        order: nothing but the send itself stands between the decision and the socket."""
        held: list[tuple[object, bool]] = []
        outer, self._held = self._held, held
        try:
            send()
        finally:
            self._held = outer
        if first is not None:
            first()
        self.publish(row)
        for body, journal in held:
            self.publish(body, journal)

    def _new_algo(self, a: trader.NewAlgo) -> None:
        """Journal, then send a protective order. A protective order is an exit in waiting: if
        the journal cannot take it now it goes anyway (its ps-/pt- id finds it at the exchange)
        and is journaled through the buffered path. With the intent log: logged, sent, journaled."""
        body = protection.to_wire(a.order)
        cid = a.order.client_algo_id
        if self.intents is not None:
            try:
                self.intents.append(intent_log.Intent(client_id=cid, at_ns=self.host.clock_ms() * 1_000_000, body=body))
            except (OSError, ValueError, DataError) as exc:  # ValueError: a closed file's own
                self.counters["intent_log_failed"] += 1
                log.error("brain.protection_sent_unlogged", client_algo_id=cid, error=str(exc))
            self._held_send(cid, lambda: self._algo_event(cid, ao.Send(at_ms=self.host.clock_ms())), body)
            self.journal_unseen[cid] = (self.host.clock_ms(), ())
            return
        try:
            self.host.journal_sync(body)
        except TransientError as exc:
            self.counters["journal_sync_failed"] += 1
            self.counters["sent_unjournaled"] += 1
            log.error("brain.protection_sent_unjournaled", client_algo_id=cid, error=str(exc))
            self.publish(body)
        else:
            self.publish_only(body)
        self._algo_event(cid, ao.Send(at_ms=self.host.clock_ms()))

    def _algo_event(self, cid: str, event: ao.Event) -> None:
        o = self.st.algos.get(cid)
        self.apply(trader_exchange.on_algo_event(self.cfg, self.st, cid, event, self.ctx((o.symbol,) if o else ())))

    def publish(self, body: object, journal: bool = True) -> None:
        """``body`` to the bus, and to the journal unless ``journal`` is False, through the
        brain (``Host.publish``); held back while an order's send runs (``_held_send``)."""
        held = self._held
        if held is None:
            self.host.publish(body, journal)
        else:
            held.append((body, journal))

    def publish_only(self, body: Any) -> None:
        """PUB only (the journal gets ORDER_REQUEST through the synchronous path)."""
        self.publish(body, journal=False)

    def _event(self, cid: str, event: om.Event, fill=None) -> None:
        ctx = self.ctx((self.st.orders[cid].symbol,)) if cid in self.st.orders else self.ctx()
        if fill is not None:
            self.apply(trader_fills.on_fill(self.cfg, self.st, fill, ctx, client_order_id=cid))
        else:
            self.apply(trader_fills.on_order_event(self.cfg, self.st, cid, event, ctx))

    def dispatch(self, effect: Effect, symbol: str) -> None:
        now = self.host.clock_ms()
        b = self.broker
        if isinstance(effect, om.SubmitOrder):
            o = self.st.orders[effect.client_order_id]
            spec = order_spec(o)
            tag = jobs.Submit(o.client_order_id, effect.attempt, now)
            pre = self._presend.pop(o.client_order_id, None)
            if pre is not None:  # written already (``_presend_exit``): its answer is awaited here
                self._claim_presend(pre, symbol, tag, expected=spec)
                return
            if self._send_now is not None and self._send_order_now(spec, symbol, tag):
                return
            self.dispatcher.submit(dsp.ORDER, self.ttt.wrap(o.client_order_id, b.submit), spec, key=symbol, tag=tag)
        elif isinstance(effect, om.CancelOrder):
            self.dispatcher.submit(dsp.ORDER, b.cancel, symbol, effect.client_order_id, key=symbol,
                                   tag=jobs.Cancel(effect.client_order_id, now))
        elif isinstance(effect, om.QueryOrder):
            self._query_or_delay(effect, symbol, b.query, effect.client_order_id, jobs.Query(effect.client_order_id, now))
        elif isinstance(effect, om.FetchTrades):
            o = self.st.orders.get(effect.client_order_id)
            if o is not None and o.exchange_order_id:
                link = self.user_stream
                if self._answer_fills and link is not None and link.client.connected:
                    # an order's answer says it filled: the stream tells its fills in milliseconds
                    self.delayed.append((now + STREAM_FILLS_GRACE_MS,
                                         FillsGrace(effect, o.filled_qty + effect.missing_qty), symbol))
                else:
                    self._fetch_fills(o, symbol, now)
        elif isinstance(effect, FillsGrace):
            o = self.st.orders.get(effect.fetch.client_order_id)
            if o is None or o.filled_qty >= effect.executed:
                self.counters["fills_by_stream"] += 1
            elif o.exchange_order_id:  # the stream did not tell them all: REST, as after a gap
                self.counters["fills_fetched_after_grace"] += 1
                self._fetch_fills(o, symbol, now)
        elif isinstance(effect, ao.SubmitAlgo):
            a = self.st.algos[effect.client_algo_id]
            spec = AlgoSpec(client_algo_id=a.client_algo_id, symbol=a.symbol, side=a.side, order_type=a.order_type,
                            trigger_price=a.trigger_price, working_type=a.working_type,
                            close_position=a.close_position, qty=a.qty, price_protect=a.price_protect,
                            callback_rate=a.callback_rate, activation_price=a.activation_price)
            self.dispatcher.submit(dsp.ORDER, b.place_algo, spec, key=symbol,
                                   tag=jobs.PlaceAlgo(a.client_algo_id, effect.attempt, now))
        elif isinstance(effect, ao.CancelAlgo):
            self.dispatcher.submit(dsp.ORDER, b.cancel_algo, symbol, effect.client_algo_id, key=symbol,
                                   tag=jobs.CancelAlgo(effect.client_algo_id, now))
        elif isinstance(effect, ao.QueryAlgo):
            self._query_or_delay(effect, symbol, b.query_algo, effect.client_algo_id,
                                 jobs.QueryAlgo(effect.client_algo_id, now))
        elif isinstance(effect, trader.CheckPosition):
            self.dispatcher.submit(dsp.QUERY, b.positions, tag=jobs.Positions(now))
        elif isinstance(effect, trader.CheckRemainder):  # read once the symbol is quiet (``poll``)
            self.remainders[symbol] = now + REMAINDER_WAIT_MS
        elif isinstance(effect, trader.FetchSymbolFills):
            # the trade's protective orders first, then the fills: a stop that triggered while
            # nobody listened names its market order, so its fills are known as the stop's
            t = self.st.trades.get(symbol)
            algo_cids = sorted(c for c in (t.algo_cids if t else ()) if c in self.st.algos
                               and not self.st.algos[c].is_terminal)

            def job(cids=tuple(algo_cids), since=effect.since_ms):
                return [(cid, b.query_algo(symbol, cid)) for cid in cids], b.fills(symbol, since_ms=since)

            self.dispatcher.submit(dsp.QUERY, job, key=symbol, tag=jobs.SymbolFills(symbol, now))
        else:  # an effect no branch carries out: a bug, counted and said, never silently dropped
            self.counters["unknown_effects"] += 1
            if self._limiter.allow("unknown_effect", time.monotonic()):
                log.error("brain.unknown_effect", effect=repr(effect)[:200], symbol=symbol)

    def _query_or_delay(self, effect: om.QueryOrder | ao.QueryAlgo, symbol: str,
                        query: Callable[[str, str], object], cid: str, tag: jobs.Query | jobs.QueryAlgo) -> None:
        """An order's or a protective order's query: asked now, or held in ``delayed`` until
        its ``not_before_ms`` (a "not found" proves nothing before then: ``venue.order_rules``),
        when ``poll`` hands it back to ``dispatch``."""
        if effect.not_before_ms > tag.at_ms:  # (the tag is stamped now)
            self.delayed.append((effect.not_before_ms, effect, symbol))
        else:
            self.dispatcher.submit(dsp.QUERY, query, symbol, cid, key=symbol, tag=tag)

    def _fetch_fills(self, o: om.Order, symbol: str, now: int) -> None:
        self.dispatcher.submit(dsp.QUERY, self.broker.fills, symbol, exchange_order_id=o.exchange_order_id,
                               key=symbol, tag=jobs.Fills(o.client_order_id, now))
