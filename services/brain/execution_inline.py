"""The execution shell's inline sends: an order's frame written from the deciding (ring
reading) thread itself, never waiting on a rate limit, and only its answer awaited on a
dispatcher worker. An exit of the exit lane (``fire_exit``: its intent record, then its
frame, before the trader has decided it; ``exit_lane``), an exit the trader decided
(``_presend_exit``, claimed by ``dispatch``), an entry right after its candle's analysis
(``_send_order_now``). Nothing written (no socket, the rate-limit governor would wait): the
order goes the ordinary way, through the dispatcher.

A part of the shell ``Execution`` (``services/brain/execution.py``, made of such parts): its
methods read and change the shell's state, set up in ``Execution.__init__``
and declared, with its types, in ``execution_parts.ExecutionParts``."""

from __future__ import annotations

from typing import Any, Callable

import structlog

from common.errors import AegisError, AmbiguousError, DataError
from services.brain import dispatcher as dsp
from venue import orders as om
from services.brain import exit_lane, intent_log, jobs
from venue.port import OrderSpec
from services.brain.execution_parts import ExecutionParts, WrittenFrame

log = structlog.get_logger(__name__)


class InlineSend(ExecutionParts):
    """Frames written from the deciding thread, and the exit lane (module docstring)."""

    # ------------------------------------------------------------------ the exit lane
    @property
    def lane_ready(self) -> bool:
        """The lane may write exits: on, started, a WebSocket-API broker, the intent log on."""
        return self.lane_on and self._send_now is not None and self.intents is not None and self.ready

    def sync_lane(self, lane: exit_lane.ExitLane, sid_of: Callable[[str], int], prepare: bool = False) -> None:
        """``lane`` armed from this state (``ExitLane.sync``); with ``prepare``, its exits'
        requests prepared too (a WebSocket-API broker's ``prepare_order``; off the batch path)."""
        lane.sync(self.cfg, self.st, sid_of, self.ctx, order_spec)
        if prepare and self._prepare is not None and self.lane_ready:
            lane.prepare(self.host.clock_ms(), self._prepare)

    def fire_exit(self, armed: exit_lane.Armed, trigger_ns: int,
                  prepared: tuple[Any, intent_log.Template | None] = (None, None)) -> bool:
        """The armed exit of a trade whose stop or target the batch touched: its intent record,
        then its frame, now, before the trader decides it (``exit_lane``). False when the lane
        cannot (off, nothing armed, already fired); the trader's decision then sends it."""
        spec, order = armed.spec, armed.order
        if spec is None or order is None or not self.lane_ready:
            return False
        cid = spec.client_order_id
        if cid in self._lane_fired or cid in self._presend or cid in self.st.orders:
            return False
        self.ttt.trigger_ns = trigger_ns
        self.ttt.decided(cid, True)
        self.ttt.trigger_ns = 0
        intents = self.intents
        assert intents is not None
        try:
            request, tmpl = prepared
            at_ns = self.host.clock_ms() * 1_000_000
            try:  # the flusher is woken after the frame's write (``IntentLog.append``)
                intents.append(tmpl.stamped(at_ns) if tmpl is not None and at_ns >= 1 << 32
                               else intent_log.Intent(client_id=cid, at_ns=at_ns, body=order.request), wake=False)
            # an exit goes anyway: its ax- id finds it at the exchange (ValueError: a closed file's own)
            except (OSError, ValueError, DataError) as exc:
                self.counters["intent_log_failed"] += 1
                log.error("brain.exit_sent_unlogged", client_order_id=cid, error=str(exc))
            self.ttt.journaled(cid)
            self._presend[cid] = (spec, self._write_now(spec, request))
        finally:
            intents.wake()
        self._lane_fired[cid] = armed.symbol
        self.counters["exit_lane_fired"] += 1
        return True

    def lane_settle(self) -> None:
        """After the trader has seen the batch: a lane frame it did not decide is counted,
        logged, and its answer awaited all the same (the order is ours: an ``ax-`` id)."""
        if not self._lane_fired:
            return
        for cid, symbol in list(self._lane_fired.items()):
            del self._lane_fired[cid]
            pre = self._presend.pop(cid, None)
            self.counters["exit_lane_unclaimed"] += 1
            log.error("brain.exit_lane_unclaimed", client_order_id=cid, symbol=symbol)
            if pre is not None:
                self._claim_presend(pre, symbol, jobs.Submit(cid, 1, self.host.clock_ms()), unclaimed=True)

    def _presend_exit(self, o: om.Order) -> None:
        """An exit's frame written as soon as its intent is logged, before the order's state
        machine, the journal and the dispatcher hear of it (they follow within microseconds,
        in ``_log_then_send``). What happened is kept for ``dispatch``, which the state
        machine's ``SubmitOrder`` reaches next: the answer is then awaited on a worker
        (sent), the outcome is unknown (a failure while writing), or nothing left and the
        exit goes the ordinary way. The order is the one the state machine holds, so the
        frame is the one ``dispatch`` would have written."""
        spec = order_spec(o)
        self._presend[spec.client_order_id] = (spec, self._write_now(spec))

    def _claim_presend(self, pre: tuple[OrderSpec, WrittenFrame | None], symbol: str, tag: jobs.Submit,
                       expected: OrderSpec | None = None, unclaimed: bool = False) -> None:
        """The dispatcher's half of a pre-sent exit (see ``_presend_exit``)."""
        spec, written = pre
        if unclaimed or (expected is not None and expected != spec):
            # never expected: the state machine holds the order it was built from. Its answer is
            # still awaited and handed to the state machine, and reconciliation knows ax- ids
            self.counters["exit_presend_mismatch"] = self.counters.get("exit_presend_mismatch", 0) + 1
            log.error("brain.exit_presend_mismatch", client_order_id=spec.client_order_id, unclaimed=unclaimed,
                      sent=written is not None)
            if written is None:
                return  # nothing left: nothing to await
        if written is not None:
            self._await_written(spec, written, symbol, tag)
        else:  # nothing was sent: the ordinary way, on a worker (no second try from this thread)
            self.dispatcher.submit(dsp.ORDER, self.ttt.wrap(spec.client_order_id, self.broker.submit), spec,
                                   key=symbol, tag=tag)

    def _send_order_now(self, spec: OrderSpec, symbol: str, tag: jobs.Submit) -> bool:
        """An order's frame written from this (the deciding, ring-reading) thread: no dispatcher
        queue, no worker hop (an exit, or an entry right after its candle's analysis). Its
        answer is awaited on a dispatcher worker (``finish_order``) and comes back as the usual
        ``submit`` completion. False when nothing was sent (no socket, or the rate-limit
        governor would make it wait): the order then goes the ordinary way, through the
        dispatcher."""
        written = self._write_now(spec)
        if written is None:
            return False
        self._await_written(spec, written, symbol, tag)
        return True

    def _write_now(self, spec: OrderSpec, prepared: Any = None) -> WrittenFrame | None:
        """Write an order's frame on this thread: (the broker's handle, None) when it left,
        (None, the error) when it may have left, None when nothing was sent (no socket, or the
        rate-limit governor would make it wait)."""
        assert self._send_now is not None
        cid = spec.client_order_id
        kind = "exits" if spec.reduce_only else "entries"
        try:
            with self.ttt.inline(cid):
                sent = (self._send_now(spec, rate_wait_s=0.0) if prepared is None
                        else self._send_now(spec, rate_wait_s=0.0, prepared=prepared))
        except AmbiguousError as exc:  # the frame may have left: its outcome is the state machine's
            self.counters[f"{kind}_sent_inline"] += 1
            self.ttt.forget(cid)
            return None, exc
        except AegisError:  # nothing sent
            self.counters[f"{kind}_inline_fallback"] += 1
            return None
        self.counters[f"{kind}_sent_inline"] += 1
        return sent, None

    def _await_written(self, spec: OrderSpec, written: WrittenFrame, symbol: str, tag: jobs.Submit) -> None:
        """The answer to a written frame, on a dispatcher worker: ``finish_order``, or, when the
        frame may have left, the error itself (the state machine then asks the exchange)."""
        sent, exc = written
        if exc is None:
            self.dispatcher.submit(dsp.ORDER, self.broker.finish_order, spec, sent, key=symbol, tag=tag)
            return
        fail = exc

        def job():
            raise fail

        self.dispatcher.submit(dsp.ORDER, job, key=symbol, tag=tag)


def order_spec(o: om.Order) -> OrderSpec:
    """The broker's order from the state machine's (the fields ``dispatch`` sends)."""
    return OrderSpec(client_order_id=o.client_order_id, symbol=o.symbol, side=o.side, order_type=o.order_type,
                     qty=o.qty, price=o.price, reduce_only=o.reduce_only, time_in_force=o.time_in_force)
