"""The execution shell's completion handlers: each answer of the dispatcher, by the class of
the job it answers (``jobs``), turned into the trader's events.

Mapping of broker answers to order events (``venue.orders``):

    submit ok         Ack, each fill, then QueryResult(status, executed) (a final status or
                      missing fills resolve from there: FetchTrades)
    submit Ambiguous  Timeout -> QueryOrder (after recvWindow, "not found" proves it dead)
    submit refused    Reject(attempt, code); -4116 (client id taken) -> UNKNOWN -> query
    query             QueryResult(found, status, executed) at the time the query was sent
    fills             TradeFill per row of that exchange order (idempotent by trade id)
    a failed query    asked again ``QUERY_RETRY_MS`` later, as often as it takes
    user stream       the same events as they happen, and a REST resync after a gap (``user_feed``)

Protective orders' answers go the same way through ``venue.algo_orders``.

A part of the shell ``Execution`` (``services/brain/execution.py``, made of such parts): its
methods read and change the shell's state, set up in ``Execution.__init__``
and declared, with its types, in ``execution_parts.ExecutionParts``."""

from __future__ import annotations

import time
from typing import Any

import structlog

from common.fastcopy import replace
from common.errors import AmbiguousError
from services.brain import dispatcher as dsp
from venue import order_rules
from venue import algo_orders as ao
from venue import orders as om
from services.brain import funding_feed, jobs, risk, trader, trader_exchange, user_feed
from venue.port import ExchangeAlgoOrder, ExchangeOrder, SubmitResult
from services.brain.execution_parts import ExecutionParts
from services.brain.execution_startup import LOG_IDS

log = structlog.get_logger(__name__)

QUERY_RETRY_MS = 2_000


class Answers(ExecutionParts):
    """The dispatcher's answers (module docstring)."""

    # ------------------------------------------------------------------ completions
    def _completion(self, c: dsp.Completion) -> None:
        """One answer of the dispatcher, by the class of the job it answers (``jobs``)."""
        err = c.error
        match c.tag:
            case jobs.Startup():
                self._startup_done(c.result, err)
            case jobs.Balance():
                if err is None:
                    self.equity = float(c.result.equity)
                    if self.ready:  # the kill switch watches equity, not only at the next entry
                        r = risk.update_equity(self.cfg.risk, self.st.risk, self.equity, self.host.clock_ms())
                        if r is not self.st.risk:  # the same state back: nothing to apply
                            self.apply((replace(self.st, risk=r), []))
            case jobs.Setup(symbols=symbols):
                self._setup_done(symbols, c.result, err)
            case jobs.AlgoAudit():
                if err is None and self.ready:
                    self.apply(trader_exchange.on_open_algos(self.cfg, self.st, list(c.result), self.ctx()))
            case jobs.Positions(at_ms=at_ms):
                if err is None and self.ready:  # (a read older than a trade's first fill skips that trade)
                    user_feed.apply_position_read(self, c.result, at_ms)
            case jobs.SymbolFills(symbol=sym, at_ms=at_ms):
                self._symbol_fills_done(sym, at_ms, c.result, err)
            case jobs.JournalAudit(at_ms=at_ms):
                self._journal_seen(at_ms, c)
            case jobs.FundingIncome():
                funding_feed.done(self, c)
            case jobs.StreamResync():
                user_feed.resynced(self, c)
            case jobs.Reconciled():
                self._reconciled_read(c.tag, c)
            case jobs.PlaceAlgo() | jobs.CancelAlgo() | jobs.QueryAlgo():
                self._algo_completion(c.tag, c)
            case jobs.Submit() | jobs.Cancel() | jobs.Query() | jobs.Fills():
                self._order_completion(c.tag, c)
            case _:  # a job this shell never sends: a bug, said once a minute, never a crash
                self.counters["unknown_completions"] = self.counters.get("unknown_completions", 0) + 1
                if self._limiter.allow("unknown_completion", time.monotonic()):
                    log.error("brain.unknown_completion", tag=repr(c.tag)[:200])

    def _reconciled_read(self, tag: jobs.Reconciled, c: dsp.Completion) -> None:
        if c.error is not None:  # unreadable now: the next run says it again
            self.counters["reconciled_read_failed"] += 1
            log.warning("brain.reconciled_read_failed", symbols=list(tag.symbols)[:LOG_IDS], error=str(c.error)[:200])
            return
        if self.ready:
            self.apply(trader_exchange.on_reconciled(self.cfg, self.st, tag.symbols, tag.adopted_orders, list(c.result),
                                                    tag.sent_ms, self.ctx(tag.symbols), found_by=tag.found_by))

    def _symbol_fills_done(self, sym: str, at_ms: int, result: Any, err: Exception | None) -> None:
        if err is None:
            algos, fills = result
            for cid, found in algos:
                if cid in self.st.algos:
                    self._algo_event(cid, _algo_query_result(at_ms, found))
            self.apply(trader_exchange.on_symbol_fills(self.cfg, self.st, sym, list(fills), self.ctx((sym,))))
        elif sym in self.st.trades:  # ask again; the trade closes at the mark if it never comes
            self.delayed.append((self.host.clock_ms() + QUERY_RETRY_MS, trader.FetchSymbolFills(
                symbol=sym, since_ms=self.st.trades[sym].first_fill_ms or self.st.trades[sym].opened_ms), sym))

    def _order_completion(self, tag: jobs.OrderJob, c: dsp.Completion) -> None:
        cid = tag.client_order_id
        if cid not in self.st.orders:
            return  # the trade closed meanwhile (a late answer): nothing left to update
        err = c.error
        if err is not None:
            self.counters["broker_errors"] += 1
        match tag:
            case jobs.Submit(attempt=attempt, sent_ms=sent_ms):
                self._submitted(cid, attempt, sent_ms, c.result, err)
            case jobs.Query(at_ms=at_ms):
                if err is None:
                    self._event(cid, _query_result(at_ms, c.result))
                else:
                    self._retry_query(cid)
            case jobs.Fills():
                if err is None:
                    eid = self.st.orders[cid].exchange_order_id
                    for f in c.result:
                        if f.exchange_order_id == eid and cid in self.st.orders:
                            self._event(cid, None, fill=f)
                else:
                    self._retry_query(cid)
            case jobs.Cancel(at_ms=at_ms):
                if err is None:
                    self._event(cid, _query_result(at_ms, c.result))
                else:
                    self._event(cid, om.CancelRejected(code=getattr(err, "code", 0) or 0, message=str(err)))

    def _submitted(self, cid: str, attempt: int, sent_ms: int, res: SubmitResult | None, err: Exception | None) -> None:
        if err is None and res is not None:
            self._event(cid, om.Ack(exchange_order_id=res.order.exchange_order_id))
            for f in res.fills:
                if cid in self.st.orders:
                    self._event(cid, None, fill=f)
            if cid in self.st.orders:
                self._answer_fills = True  # fills the answer did not carry: the stream's (``FillsGrace``)
                try:
                    self._event(cid, _query_result(sent_ms, res.order))
                finally:
                    self._answer_fills = False
            return
        if isinstance(err, AmbiguousError):
            self.counters["ambiguous"] += 1
            log.warning("brain.order_outcome_unknown", client_order_id=cid, error=str(err))
            self._event(cid, om.Timeout(at_ms=self.host.clock_ms()))
            return
        code = order_rules.refusal_code(err)
        log.warning("brain.order_refused", client_order_id=cid, code=code, error=str(err))
        self._event(cid, om.Reject(attempt=attempt, code=code, message=str(err)))

    def _algo_completion(self, tag: jobs.AlgoJob, c: dsp.Completion) -> None:
        cid = tag.client_algo_id
        if cid not in self.st.algos:
            return  # forgotten meanwhile (terminal, its trade closed)
        err = c.error
        if err is not None:
            self.counters["broker_errors"] += 1
        if isinstance(tag, jobs.PlaceAlgo):
            if err is None:
                res: ExchangeAlgoOrder = c.result
                self._algo_event(cid, ao.Ack(algo_id=res.algo_id))
                self._algo_event(cid, _algo_update(res))
            elif isinstance(err, AmbiguousError):
                self.counters["ambiguous"] += 1
                log.warning("brain.protection_outcome_unknown", client_algo_id=cid, error=str(err))
                self._algo_event(cid, ao.Timeout(at_ms=self.host.clock_ms()))
            else:
                code = order_rules.refusal_code(err)
                log.warning("brain.protection_refused", client_algo_id=cid, code=code, error=str(err))
                self._algo_event(cid, ao.Reject(attempt=tag.attempt, code=code, message=str(err)))
        elif isinstance(tag, jobs.CancelAlgo):
            if err is None:
                self._algo_event(cid, _algo_update(c.result) if c.result.status != "CANCELED" else ao.Canceled())
            else:
                self._algo_event(cid, ao.CancelRejected(code=getattr(err, "code", 0) or 0, message=str(err)))
        elif err is None:  # jobs.QueryAlgo
            self._algo_event(cid, _algo_query_result(tag.at_ms, c.result))
        else:
            self.counters["queries_retried"] += 1
            a = self.st.algos[cid]
            self.delayed.append((self.host.clock_ms() + QUERY_RETRY_MS, ao.QueryAlgo(client_algo_id=cid, not_before_ms=0),
                                 a.symbol))

    def _retry_query(self, cid: str) -> None:
        self.counters["queries_retried"] += 1
        o = self.st.orders[cid]
        self.delayed.append((self.host.clock_ms() + QUERY_RETRY_MS,
                             om.QueryOrder(client_order_id=cid, not_before_ms=0), o.symbol))


def _algo_update(o: ExchangeAlgoOrder) -> ao.Update:
    return ao.Update(status=o.status, algo_id=o.algo_id, actual_order_id=o.actual_order_id)


def _algo_query_result(at_ms: int, o: ExchangeAlgoOrder | None) -> ao.QueryResult:
    """A ``query_algo`` answer as the algo state machine's event (``None``: not found)."""
    if o is None:
        return ao.QueryResult(at_ms=at_ms, found=False)
    return ao.QueryResult(at_ms=at_ms, found=True, status=o.status, algo_id=o.algo_id,
                          actual_order_id=o.actual_order_id)


def _query_result(at_ms: int, o: ExchangeOrder | None) -> om.QueryResult:
    if o is None:
        return om.QueryResult(at_ms=at_ms, found=False)
    return om.QueryResult(at_ms=at_ms, found=True, status=o.status, exchange_order_id=o.exchange_order_id,
                          executed_qty=o.executed_qty)
