"""The execution shell: carries out the trader's actions and feeds the answers back.

It lives in the brain's main thread, beside the ring reader, and never blocks it on the
exchange: every broker call runs on the dispatcher's threads (orders ahead of queries, then
account polling) and comes back as a completion that ``poll`` drains. One exception, for
speed: an exit over the WebSocket API has its frame written by this thread (``send_order``,
never waiting on a rate limit) and only its answer awaited on a worker.

Orders (live and demo): intent log, send, journal (``_log_then_send``; ``intent_log``). The
order's record is appended to the brain's own log file (one ``write``; fsync batched by the
log's flusher thread) before it can leave; the database's row follows through the buffered
journal, and ``_audit_journal`` publishes a row again if it never arrived. Replay mode (no
intent log): "journal, then act", the synchronous journal's round trip before each send.

Mapping of broker answers to order events (``venue.orders``):

    submit ok         Ack, each fill, then QueryResult(status, executed) (a final status or
                      missing fills resolve from there: FetchTrades)
    submit Ambiguous  Timeout -> QueryOrder (after recvWindow, "not found" proves it dead)
    submit refused    Reject(attempt, code); -4116 (client id taken) -> UNKNOWN -> query
    query             QueryResult(found, status, executed) at the time the query was sent
    fills             TradeFill per row of that exchange order (idempotent by trade id)
    a failed query    asked again ``QUERY_RETRY_MS`` later, as often as it takes
    user stream       the same events as they happen, and a REST resync after a gap (``user_feed``)
"""

from __future__ import annotations

import enum
import json
import math
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Container, Iterable, Mapping

import structlog

from common.fastcopy import replace
from common import wire
from common.errors import AegisError, AmbiguousError, TransientError
from common.log import RateLimiter
from services.brain import dispatcher as dsp
from venue import algo_orders as ao
from venue import brokers
from venue import orders as om
from services.brain import exit_lane, funding_feed, intent_log, jobs, protection, recovery, risk, trader, trader_entries, trader_exchange, trader_exits, trader_fills, trader_restart, trader_views, user_feed
from services.brain.tick_to_trade import TickToTrade
from venue.filters import FeedFilters
from venue.port import AlgoSpec, Broker, ExchangeAlgoOrder, ExchangeOrder, OrderSpec, SubmitResult

log = structlog.get_logger(__name__)
# an exit frame written by the deciding thread: (the broker's handle, None) when it left,
# (None, the error) when it may have left (``Execution._write_now``)
_Written = tuple[Any, Exception | None]

QUERY_RETRY_MS = 2_000
STARTUP_RETRY_S = 5.0
TIMER_PERIOD_S = 0.25
START_SYMBOLS = 20
# a symbol's set-up (ccxt's market, margin type, leverage) waits this long for the feed's rules
# (published on the bus, kept by the journal) before the broker asks exchangeInfo for it
RULES_WAIT_S = 10.0
POSITION_POLL_S = 5.0  # while a trade is open: the exchange's positions, to see closes behind our back
ALGO_AUDIT_S = 30.0  # the exchange's open conditional orders against ours: missing stops, strays
JOURNAL_AUDIT_S = 5.0  # how often the rows of orders sent before they were journaled are looked for
STREAM_FILLS_GRACE_MS = 1_000  # fills the user stream should have told by then are read over REST
JOURNAL_LAG_MS = 10_000  # a row still missing this long after the send was lost on the way: sent again
LOG_IDS = 5  # a start-up log line names this many order ids and counts the rest
JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"
INTENT_LOG_UNAVAILABLE = "INTENT_LOG_UNAVAILABLE"  # the local intent log refused a write: no entry
SYMBOL_SETUP_PENDING = "SYMBOL_SETUP_PENDING"  # margin type and leverage not yet set for the symbol


class Phase(enum.Enum):
    """The shell's life cycle (the whole table):

        WAITING   --``poll`` at or after the next start time-->   STARTING  (recovery read, start-up job sent)
        STARTING  --the start-up job answers-->                    READY     (state merged, trading)
        STARTING  --the start-up job fails-->                      WAITING   (``start_error`` says why; retried
                                                                            after STARTUP_RETRY_S)

    READY is final: nothing takes the shell out of it (a broker fault is an order's or a
    query's failure, handled by its state machine)."""

    WAITING = "WAITING"
    STARTING = "STARTING"
    READY = "READY"


class Execution:
    def __init__(self, *, cfg: trader.TraderConfig, broker: Broker, dispatcher: dsp.Dispatcher,
                 journal_sync: Callable[[Any], None], publish: Callable[[Any], None],
                 quote: Callable[[str], risk.Quote | None], learn: Callable[[Mapping[str, float], float], None],
                 filters_fn: Callable[[], Mapping[str, risk.SymbolFilters]], db_path: Path,
                 symbols_fn: Callable[[], list[str]], balance_poll_s: float = 5.0,
                 position_poll_s: float = POSITION_POLL_S, algo_audit_s: float = ALGO_AUDIT_S,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 mono_s: Callable[[], float] = time.monotonic,
                 blocked: Callable[[], str] = lambda: "", flatten_on_halt: bool = False,
                 user_stream: user_feed.Source | None = None,
                 intents: intent_log.IntentLog | None = None, exit_lane_on: bool = True) -> None:
        self.cfg = cfg
        self.broker = broker
        self.dispatcher = dispatcher
        self.journal_sync = journal_sync
        # the local intent log (``intent_log``): with it an order is written there, sent, then
        # journaled through the buffered path; without it (replay, tests of the old path) the
        # order is journaled synchronously first ("journal, then act")
        self.intents = intents
        self._send_now: Callable[..., Any] | None = None  # the broker's send_order: exits from this thread
        self._prepare: Callable[[OrderSpec], Any] | None = None  # its prepare_order (the exit lane)
        # exits written before their state machine's SubmitOrder: cid -> (spec, what _write_now returned)
        self._presend: dict[str, tuple[OrderSpec, _Written | None]] = {}
        # the exit lane (``exit_lane``): exits whose intent and frame the lane wrote before the
        # trader decided them: cid -> symbol (claimed by ``_log_then_send``)
        self.lane_on = exit_lane_on
        self._lane_fired: dict[str, str] = {}
        # sent, journaled on the buffered path, row not yet seen in the database: cid -> (sent ms,
        # the request; None for a protective order). A journal message can die in a killed
        # orchestrator's queue; the row is then published again (``_audit_journal``), and
        # reconciliation repairs the rest
        self._unseen: dict[str, tuple[int, wire.OrderRequest | None]] = {}
        self._next_journal_audit = 0.0
        self.inline = bool(getattr(dispatcher, "inline", False))
        self.publish = publish
        self.quote = quote
        self.learn = learn
        self.filters_fn = filters_fn
        self.db_path = db_path
        self.symbols_fn = symbols_fn
        self.balance_poll_s = balance_poll_s
        self.clock_ms = clock_ms
        self.mono_s = mono_s  # timers (replay: the exchange clock, so they fire at the same ticks)
        self.blocked = blocked
        self.flatten_on_halt = flatten_on_halt
        self.st = trader.TraderState()
        self.filters: Mapping[str, risk.SymbolFilters] = {}
        self.equity = math.nan
        self.phase = Phase.WAITING  # READY: start-up and recovery done
        self.start_error = ""
        self.saved: recovery.Saved | None = None
        self.delayed: list[tuple[int, Any, str]] = []  # (not before ms, effect, symbol)
        # every counter of the shell, zero from the start: the heartbeat (``heartbeat_counters``)
        # and the stats file always carry every name, a metric never appears out of nowhere
        self.counters: dict[str, int] = {"journal_sync_failed": 0, "broker_errors": 0, "queries_retried": 0,
                                         "problems": 0, "ambiguous": 0, "sent_unjournaled": 0,
                                         "intent_log_failed": 0, "intents_replayed": 0, "exits_sent_inline": 0,
                                         "exits_inline_fallback": 0, "entries_sent_inline": 0,
                                         "entries_inline_fallback": 0, "exit_lane_fired": 0,
                                         "exit_lane_unclaimed": 0, "fills_by_stream": 0,
                                         "fills_fetched_after_grace": 0, "exit_presend_mismatch": 0,
                                         "setup_pending_rejects": 0, "intent_log_corrupt": 0, "intent_log_torn": 0,
                                         "order_history_unreadable": 0, "orders_adopted": 0,
                                         "orders_recorded_from_history": 0, "journal_rows_resent": 0,
                                         "unknown_completions": 0, "reconciled_heard": 0,
                                         "reconciled_read_failed": 0}
        self.position_poll_s = position_poll_s
        self._next_positions = 0.0
        self.algo_audit_s = algo_audit_s
        self._next_audit = 0.0
        # symbols whose margin type and leverage are set at the exchange (at start, and for every
        # symbol the feed adds later: an entry waits for its symbol's set-up)
        self.configured: set[str] = set()
        self.brackets: dict[str, tuple[Any, ...]] = {}  # leverage brackets: the liquidation check
        self._configuring: set[str] = set()
        self._rules_wait: dict[str, float] = {}  # symbol -> when its set-up began to wait for its rules
        self._next_setup = 0.0
        self._next_timer = 0.0
        self._next_balance = 0.0
        self._next_start = 0.0
        self._limiter = RateLimiter(60.0)
        # the exchange's user data stream (demo and live): fills, statuses and positions as they
        # happen; REST resyncs after a gap (``user_feed``)
        self.user_stream = user_feed.Link(user_stream) if user_stream is not None else None
        self._answer_fills = False  # set while an order's answer is applied (``_submitted``)
        if user_stream is not None and hasattr(broker, "fills_after_submit"):
            broker.fills_after_submit = False  # fills come by the stream (``_FillsGrace`` otherwise)
        self.ttt = TickToTrade()  # tick-to-trade: the brain sets ttt.trigger_ns around a decision
        self.funding = funding_feed.FundingLink()  # funding's income reads (``funding_feed``)

    @property
    def ready(self) -> bool:
        """Start-up and recovery done (``Phase.READY``): orders may go."""
        return self.phase is Phase.READY

    # ------------------------------------------------------------------ context
    def ctx(self, symbols: tuple[str, ...] = ()) -> trader.Ctx:
        """Quotes for the symbols concerned and every traded one (the portfolio values them)."""
        quotes = {}
        for s in {*symbols, *self.st.trades}:
            q = self.quote(s)
            if q is not None:
                quotes[s] = q
        block = self.blocked() or ("" if self.ready else (self.start_error or "starting"))
        return trader.Ctx(now_ms=self.clock_ms(), equity=self.equity,
                          market=risk.Market(filters=self.filters, quotes=quotes), block_reason=block,
                          brackets=self.brackets)

    # ------------------------------------------------------------------ inputs from the brain
    def on_signal(self, sig: wire.SignalGenerated) -> None:
        if self.ready and sig.symbol not in self.configured:
            # the exchange has not been told this symbol's margin type and leverage yet: an entry
            # now would trade at whatever the account holds. Refused with the reason, set up now
            self.counters["setup_pending_rejects"] = self.counters.get("setup_pending_rejects", 0) + 1
            self.publish(wire.RiskReject(symbol=sig.symbol, reason=SYMBOL_SETUP_PENDING,
                                         detail="margin type and leverage are being set", signal_id=sig.signal_id))
            self._setup_symbols([sig.symbol])
            return
        self._run(trader_entries.on_signal(self.cfg, self.st, sig, self.ctx((sig.symbol,))))

    def on_reconciled(self, msg: wire.Reconciled) -> None:
        """Reconciliation repaired or adopted something (``wire.Reconciled``, from the
        orchestrator): the positions are read again here (REST, on a worker, ``jobs.Reconciled``)
        and the trader decides on that fresh read (``trader_exchange.on_reconciled``). Before the shell
        is ready nothing is asked: its start-up reads the whole exchange anyway."""
        self.counters["reconciled_heard"] += 1
        if not self.ready or not (msg.symbols or msg.adopted_orders):
            return
        tag = jobs.Reconciled(sent_ms=self.clock_ms(), symbols=tuple(msg.symbols),
                              adopted_orders=tuple(msg.adopted_orders))
        self.dispatcher.submit(dsp.QUERY, self.broker.positions, tag=tag)

    def _reconciled_read(self, tag: jobs.Reconciled, c: dsp.Completion) -> None:
        if c.error is not None:  # unreadable now: the next run says it again
            self.counters["reconciled_read_failed"] += 1
            log.warning("brain.reconciled_read_failed", symbols=list(tag.symbols)[:LOG_IDS], error=str(c.error)[:200])
            return
        if self.ready:
            self._run(trader_exchange.on_reconciled(self.cfg, self.st, tag.symbols, tag.adopted_orders, list(c.result),
                                           tag.sent_ms, self.ctx(tag.symbols)))

    def _with_rules(self, symbols: list[str]) -> list[str]:
        """Those of ``symbols`` whose set-up may go now: their rules are known (ccxt's market is
        made of them, no exchangeInfo), or they waited ``RULES_WAIT_S`` for them (counted in
        ``setup_without_rules``: the broker asks exchangeInfo)."""
        if not symbols:
            return symbols
        filters = self.filters_fn()
        if not isinstance(filters, FeedFilters):
            return symbols  # replay's saved exchangeInfo, a backtest's filters: complete already
        go, self._rules_wait, late = rules_ready(symbols, filters, self._rules_wait, self.mono_s(), RULES_WAIT_S)
        if late:
            self.counters["setup_without_rules"] = self.counters.get("setup_without_rules", 0) + len(late)
            log.warning("brain.setup_without_rules", symbols=late[:LOG_IDS], waited_s=RULES_WAIT_S)
        return go

    def _setup_symbols(self, symbols: list[str]) -> None:
        todo = [s for s in symbols if s not in self.configured and s not in self._configuring]
        todo = self._with_rules(todo)[:START_SYMBOLS]
        if not todo:
            return
        self._configuring.update(todo)

        def job():
            return self.broker.start(todo), _brackets_or_none(self.broker, todo)

        self.dispatcher.submit(dsp.ACCOUNT, job, tag=jobs.Setup(tuple(todo)))

    def on_range(self, symbol: str, low: float, high: float) -> None:
        if symbol in self.st.trades:
            self._run(trader_exits.on_prices(self.cfg, self.st, symbol, low, high, self.ctx((symbol,))))

    def poll(self) -> None:
        """Completions, due delayed queries, timers. Cheap when nothing happened."""
        # an inline dispatcher (replay) answers while a completion is handled: take those
        # answers now too, so they land at the same point of the tick stream every time
        while True:
            done = self.dispatcher.drain()
            for c in done:
                self._completion(c)
            if not done or not self.inline:
                break
        if self.user_stream is not None:
            user_feed.pump(self)
        now_s = self.mono_s()
        if self.phase is Phase.WAITING and now_s >= self._next_start:
            self._start()
        if now_s < self._next_timer:
            return
        self._next_timer = now_s + TIMER_PERIOD_S
        now = self.clock_ms()
        due = [d for d in self.delayed if d[0] <= now]
        if due:
            self.delayed = [d for d in self.delayed if d[0] > now]
            for _, effect, symbol in due:
                self._dispatch(effect, symbol)
        if self.ready:
            if now_s >= self._next_setup:  # symbols the feed added since: margin type and leverage
                self._next_setup = now_s + 1.0
                self._setup_symbols(self.symbols_fn())
            self._run(trader.on_timer(self.cfg, self.st, self.ctx()))
            funding_feed.tick(self, now_s)  # funding of the open trades (income history reads)
            if self._unseen and now_s >= self._next_journal_audit:
                self._next_journal_audit = now_s + JOURNAL_AUDIT_S
                self._audit_journal(now)
            if now_s >= self._next_balance:
                self._next_balance = now_s + self.balance_poll_s
                self.dispatcher.submit(dsp.ACCOUNT, self.broker.balance, tag=jobs.Balance())
            if (self.st.trades or self.st.algos) and now_s >= self._next_audit:
                self._next_audit = now_s + self.algo_audit_s
                self.dispatcher.submit(dsp.QUERY, self.broker.open_algo_orders, tag=jobs.AlgoAudit(now))
            if self.st.trades and now_s >= self._next_positions:
                self._next_positions = now_s + user_feed.position_poll_s(self)  # slower while streamed
                self.dispatcher.submit(dsp.QUERY, self.broker.positions, tag=jobs.Positions(now))

    # ------------------------------------------------------------------ start-up and recovery
    def _start(self) -> None:
        self.phase = Phase.STARTING
        self.saved = recovery.load(self.db_path, self.clock_ms())
        logged: tuple[intent_log.Intent, ...] = ()
        if self.intents is not None:
            # what was sent before a crash and never reached the journal: known again now,
            # asked at the exchange with the other open orders, journaled now (after the read)
            got = intent_log.IntentLog.read(self.intents.path)
            logged = got.intents
            self.saved, replay = recovery.with_intents(self.saved, got.intents, self.clock_ms(),
                                                       self.cfg.recv_window_ms)
            self.counters["intents_replayed"] += len(replay)
            self.counters["intent_log_corrupt"] = got.corrupt
            self.counters["intent_log_torn"] = got.torn
            for it in replay:
                self.publish(it.body)
        # margin type and leverage are set for the most liquid symbols at start (each costs
        # a rate-limited REST call), those whose rules are known; the others when they are
        # (the timer's ``_setup_symbols``)
        symbols = self._with_rules(self.symbols_fn()[:START_SYMBOLS])

        open_orders = list(self.saved.open_orders.values())
        adopt_open = self.intents is not None  # orders go out before the journal hears of them
        known_ids: dict[str, str] = {}  # client id -> exchange order id of the finished ones adopted
        unreadable: list[str] = []  # symbols whose order history could not be read
        # the order history is read from just before the newest record (log or journal)
        since = recovery.history_since(self.saved, logged, self.clock_ms(), self.cfg.recovery_lookback_ms)

        def job():
            filters = self.filters_fn()
            _complete_filters(filters, symbols)
            setup = self.broker.start(symbols)
            positions = self.broker.positions()
            # ours, at the exchange, unknown here (a machine crash took their log records): open
            # ones, and finished ones from its order history (adopted into a trade, or recorded)
            adopt, record = [], []
            if adopt_open:
                assert self.saved is not None
                adopt = _ours_unknown(self.broker, self.saved, self.clock_ms())
                asked = sorted({*symbols, *(p.symbol for p in positions), *self.saved.plans,
                                *(o.symbol for o in open_orders)})
                found, record = _ours_in_history(self.broker, self.saved, positions, asked, since, self.clock_ms(),
                                                 unreadable)
                adopt += recovery.exchange_intents(found, self.clock_ms())
                known_ids.update({e.client_order_id: e.exchange_order_id for e in found})
            open_orders.extend(om.order_from_request(it.body) for it in adopt)  # type: ignore[arg-type]
            # what each order left open before the restart has executed: the positions already
            # hold it, so recovery must not count its fetched fills twice (recovery.merge)
            executed = {}
            for o in open_orders:
                try:
                    found = self.broker.query(o.symbol, o.client_order_id)
                except AegisError:
                    continue  # unknown now: the recovery query asks again
                if found is not None:
                    executed[o.client_order_id] = found.executed_qty
            assert self.saved is not None
            _complete_filters(filters, {*(p.symbol for p in positions), *self.saved.plans,
                                        *(o.symbol for o in open_orders)})
            return (filters, setup, positions, self.broker.balance(), executed, _brackets_or_none(self.broker, symbols),
                    adopt, record, known_ids, len(unreadable))

        self.dispatcher.submit(dsp.ACCOUNT, job, tag=jobs.Startup())

    def _started(self, result) -> None:
        filters, setup, positions, balance, executed, brackets, adopt, record, known_ids, unreadable = result
        self.counters["order_history_unreadable"] = unreadable  # symbols; reconciliation reads them again
        if adopt:
            assert self.saved is not None
            self.saved, adopted = recovery.with_intents(self.saved, adopt, self.clock_ms(), self.cfg.recv_window_ms)
            # a finished one's exchange order id is known already: its fills map to it at once
            self.saved = replace(self.saved, open_orders={
                c: replace(o, exchange_order_id=known_ids[c]) if c in known_ids and not o.exchange_order_id else o
                for c, o in self.saved.open_orders.items()})
            self.counters["orders_adopted"] = self.counters.get("orders_adopted", 0) + len(adopted)
            for it in adopted:
                self.publish(it.body)
        if record:  # finished, no trade of ours to touch: their rows, states and fills for the journal
            assert self.saved is not None
            ids = frozenset(e.client_order_id for e, _ in record)
            self.saved = replace(self.saved, used_cids=self.saved.used_cids | ids,
                                 journal_ids=self.saved.journal_ids | ids)
            self.counters["orders_recorded_from_history"] = len(record)
            for e, fills in record:
                for body in recovery.record_bodies(e, fills, self.clock_ms()):
                    self.publish(body)
        self.filters = filters
        self.configured = set(setup.leverage)
        self.brackets.update(brackets)
        self.equity = float(balance.equity)
        assert self.saved is not None
        now = self.clock_ms()
        rs = self.saved.risk_state or risk.initial_state(self.equity, now)
        self.st = recovery.merge(self.cfg, self.saved, positions, now, rs, executed)
        self.st, actions = trader_restart.recovery_actions(self.st, now)
        self.st, arm = trader_restart.protect_unprotected(self.cfg, self.st, self.ctx())
        actions = [*actions, *arm]
        for sym, tr in self.st.trades.items():  # closed at the exchange while we were away
            if tr.flat_at_exchange_ms:
                actions.append(trader.Dispatch(trader.FetchSymbolFills(symbol=sym, since_ms=tr.opened_ms), sym))
        self._next_positions = self.mono_s() + self.position_poll_s  # start-up just read them
        # the first audit soon after start (strays a crash left, stops that went missing)
        self._next_audit = self.mono_s() + self.algo_audit_s / 30
        self.phase = Phase.READY
        self.start_error = ""
        if self.intents is not None and not self.inline:
            try:  # WsBroker: an order's frame is written by the deciding thread (``_send_order_now``)
                self._send_now = getattr(self.broker, "send_order", None)
                self._prepare = getattr(self.broker, "prepare_order", None)
            except AegisError:
                self._send_now = None
        log.info("brain.execution_ready", broker=self.broker.name, symbols=len(filters), equity=self.equity,
                 positions=len(positions), open_orders=len(self.saved.open_orders), one_way=setup.one_way)
        for t in self.st.trades.values():
            self.publish(trader_views.position_body(t, self.ctx((t.symbol,))))
        self._carry_out(actions)

    # ------------------------------------------------------------------ actions
    def _run(self, result: trader.Result) -> None:
        before = self.st.risk
        self.st, actions = result
        self._carry_out(actions)
        if self.st.risk.halted != before.halted:
            log.error("brain.kill_switch", halted=self.st.risk.halted, reason=self.st.risk.halt_reason,
                      detail=self.st.risk.halt_detail, flatten=self.flatten_on_halt)
            if self.st.risk.halted and self.flatten_on_halt:
                self.st, acts = trader.flatten(self.cfg, self.st, self.ctx())
                self._carry_out(acts)
        if self.st.risk is not before and (self.st.risk.halted != before.halted
                                           or self.st.risk.day_index != before.day_index):
            self.publish(wire.ModelState(name=recovery.RISK_NAME, version=self.clock_ms(),
                                         state=json.dumps(self.st.risk.to_dict()).encode()))

    def _carry_out(self, actions: list[trader.Action]) -> None:
        for a in actions:
            if isinstance(a, trader.NewOrder):
                self._new_order(a)
            elif isinstance(a, trader.NewAlgo):
                self._new_algo(a)
            elif isinstance(a, trader.Dispatch):
                self._dispatch(a.effect, a.symbol)
            elif isinstance(a, trader.Publish):
                self.publish(a.body)
            elif isinstance(a, trader.Learn):
                self.learn(a.features, a.outcome_r)
            elif isinstance(a, trader.Problem):
                self.counters["problems"] += 1
                if self._limiter.allow(a.kind, time.monotonic()):
                    log.warning("brain.order_problem", kind=a.kind, detail=a.detail, client_order_id=a.client_order_id)

    def _new_order(self, a: trader.NewOrder) -> None:
        """Journal, then act: the order is on disk before the exchange hears of it. With the
        intent log: written there (one ``write``), sent, then journaled (``_log_then_send``)."""
        if self.intents is not None:
            self._log_then_send(a)
            return
        cid = a.order.client_order_id
        self.ttt.decided(cid, a.order.reduce_only)  # tick-to-trade (a no-op without a triggering tick)
        self.publish_only(a.request)
        try:
            self.journal_sync(a.request)
        except TransientError as exc:
            self.counters["journal_sync_failed"] += 1
            if a.order.reduce_only:
                # an exit is never blocked by our journal: its id is deterministic (ax-...), so
                # reconciliation finds it at the exchange; the journal gets it when it is back
                self.counters["sent_unjournaled"] += 1
                log.error("brain.exit_sent_unjournaled", client_order_id=cid, error=str(exc))
                self.publish(a.request)
                self._event(cid, om.Send(at_ms=self.clock_ms()))
                return
            log.error("brain.journal_unavailable", client_order_id=cid, error=str(exc))
            self.ttt.forget(cid)
            self._event(cid, om.CancelRequest())
            self.publish(wire.RiskReject(symbol=a.order.symbol, reason=JOURNAL_UNAVAILABLE, detail=str(exc),
                                         signal_id=a.order.signal_id))
            return
        self.ttt.journaled(cid)
        self._event(cid, om.Send(at_ms=self.clock_ms()))

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
            plan = intent_log.Plan(trade_id=t.trade_id, stop=t.stop, target=t.target, confidence=t.confidence,
                                   features=dict(t.features))
        try:
            self.intents.append(intent_log.Intent(client_id=cid, at_ns=self.clock_ms() * 1_000_000, body=a.request,
                                                  plan=plan))
        except (OSError, ValueError) as exc:
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
        if a.order.reduce_only and self._send_now is not None:
            self._presend_exit(a.order)  # the exit's frame first; the state machine hears of it next
        self._sent_then_journaled(cid, a)

    def _sent_then_journaled(self, cid: str, a: trader.NewOrder) -> None:
        """``_log_then_send``'s second half: the state machine's send (which claims a frame
        already written), then the journal's row and what the send published."""
        self._held_send(cid, lambda: self._event(cid, om.Send(at_ms=self.clock_ms())), a.request)
        self._unseen[cid] = (self.clock_ms(), a.request)
        left = self._presend.pop(cid, None)
        if left is not None:  # the state machine did not ask for the submit it was sent for
            self._claim_presend(left, a.order.symbol, jobs.Submit(cid, 1, self.clock_ms()), unclaimed=True)

    def _held_send(self, cid: str, send: Callable[[], None], row: Any) -> None:
        """Run ``send`` with this shell's publishing held back, then publish ``row`` (to the
        journal too) and what ``send`` published, in that order: nothing but the send itself
        stands between the decision and the socket."""
        held: list[tuple[Any, bool]] = []
        real = self.publish
        self.publish = lambda body, journal=True: held.append((body, journal))  # type: ignore[method-assign]
        try:
            send()
        finally:
            self.publish = real  # type: ignore[method-assign]
        real(row)
        for body, journal in held:
            if journal:
                real(body)
            else:
                real(body, journal=False)  # type: ignore[call-arg]

    def _new_algo(self, a: trader.NewAlgo) -> None:
        """Journal, then send a protective order. A protective order is an exit in waiting: if
        the journal cannot take it now it goes anyway (its ps-/pt- id finds it at the exchange)
        and is journaled through the buffered path. With the intent log: logged, sent, journaled."""
        body = protection.to_wire(a.order)
        cid = a.order.client_algo_id
        if self.intents is not None:
            try:
                self.intents.append(intent_log.Intent(client_id=cid, at_ns=self.clock_ms() * 1_000_000, body=body))
            except (OSError, ValueError) as exc:
                self.counters["intent_log_failed"] += 1
                log.error("brain.protection_sent_unlogged", client_algo_id=cid, error=str(exc))
            self._held_send(cid, lambda: self._algo_event(cid, ao.Send(at_ms=self.clock_ms())), body)
            self._unseen[cid] = (self.clock_ms(), None)
            return
        try:
            self.journal_sync(body)
        except TransientError as exc:
            self.counters["journal_sync_failed"] += 1
            self.counters["sent_unjournaled"] += 1
            log.error("brain.protection_sent_unjournaled", client_algo_id=cid, error=str(exc))
            self.publish(body)
        else:
            self.publish_only(body)
        self._algo_event(cid, ao.Send(at_ms=self.clock_ms()))

    def _algo_event(self, cid: str, event: ao.Event) -> None:
        o = self.st.algos.get(cid)
        self._run(trader_exchange.on_algo_event(self.cfg, self.st, cid, event, self.ctx((o.symbol,) if o else ())))

    def publish_only(self, body: Any) -> None:
        """PUB only (the journal gets ORDER_REQUEST through the synchronous path)."""
        self.publish(body, journal=False)  # type: ignore[call-arg]

    def _event(self, cid: str, event: om.Event, fill=None) -> None:
        ctx = self.ctx((self.st.orders[cid].symbol,)) if cid in self.st.orders else self.ctx()
        if fill is not None:
            self._run(trader_fills.on_fill(self.cfg, self.st, fill, ctx, client_order_id=cid))
        else:
            self._run(trader_fills.on_order_event(self.cfg, self.st, cid, event, ctx))

    def _dispatch(self, effect: Any, symbol: str) -> None:
        now = self.clock_ms()
        b = self.broker
        if isinstance(effect, om.SubmitOrder):
            o = self.st.orders[effect.client_order_id]
            spec = _spec_of(o)
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
            if effect.not_before_ms > now:
                self.delayed.append((effect.not_before_ms, effect, symbol))
            else:
                self.dispatcher.submit(dsp.QUERY, b.query, symbol, effect.client_order_id, key=symbol,
                                       tag=jobs.Query(effect.client_order_id, now))
        elif isinstance(effect, om.FetchTrades):
            o = self.st.orders.get(effect.client_order_id)
            if o is not None and o.exchange_order_id:
                link = self.user_stream
                if self._answer_fills and link is not None and link.client.connected:
                    # an order's answer says it filled: the stream tells its fills in milliseconds
                    self.delayed.append((now + STREAM_FILLS_GRACE_MS,
                                         _FillsGrace(effect, o.filled_qty + effect.missing_qty), symbol))
                else:
                    self._fetch_fills(o, symbol, now)
        elif isinstance(effect, _FillsGrace):
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
            if effect.not_before_ms > now:
                self.delayed.append((effect.not_before_ms, effect, symbol))
            else:
                self.dispatcher.submit(dsp.QUERY, b.query_algo, symbol, effect.client_algo_id, key=symbol,
                                       tag=jobs.QueryAlgo(effect.client_algo_id, now))
        elif isinstance(effect, trader.CheckPosition):
            self.dispatcher.submit(dsp.QUERY, b.positions, tag=jobs.Positions(now))
        elif isinstance(effect, trader.FetchSymbolFills):
            # the trade's protective orders first, then the fills: a stop that triggered while
            # nobody listened names its market order, so its fills are known as the stop's
            t = self.st.trades.get(symbol)
            algo_cids = sorted(c for c in (t.algo_cids if t else ()) if c in self.st.algos
                               and not self.st.algos[c].is_terminal)

            def job(cids=tuple(algo_cids), since=effect.since_ms):
                return [(cid, b.query_algo(symbol, cid)) for cid in cids], b.fills(symbol, since_ms=since)

            self.dispatcher.submit(dsp.QUERY, job, key=symbol, tag=jobs.SymbolFills(symbol, now))

    def _fetch_fills(self, o: om.Order, symbol: str, now: int) -> None:
        self.dispatcher.submit(dsp.QUERY, self.broker.fills, symbol, exchange_order_id=o.exchange_order_id,
                               key=symbol, tag=jobs.Fills(o.client_order_id, now))

    def _audit_journal(self, now_ms: int) -> None:
        """Look in the database (read-only, on a worker) for the rows of orders sent since the
        last look; ``_journal_seen`` publishes again those still missing after JOURNAL_LAG_MS."""
        ids = sorted(self._unseen)[:500]  # (SQLite's bound on a statement's parameters)
        db_path = self.db_path

        def job():
            return recovery.journaled_ids(db_path, ids)

        self.dispatcher.submit(dsp.PERSIST, job, tag=jobs.JournalAudit(now_ms))

    def _journal_seen(self, asked_ms: int, c: dsp.Completion) -> None:
        if c.error is not None or c.result is None:
            return  # unreadable now: asked again at the next audit
        for cid in c.result:
            self._unseen.pop(cid, None)
        for cid, (sent_ms, request) in list(self._unseen.items()):
            if asked_ms - sent_ms < JOURNAL_LAG_MS:
                continue
            if request is None and cid not in self.st.algos:
                self._unseen.pop(cid, None)  # forgotten here: the exchange and reconciliation have it
                continue
            self.counters["journal_rows_resent"] = self.counters.get("journal_rows_resent", 0) + 1
            log.warning("brain.journal_row_missing", client_id=cid, sent_ms=sent_ms,
                        note="published to the journal again; reconciliation repairs its state and fills")
            if request is not None:
                self.publish(request)  # INSERT OR IGNORE: harmless if the row came meanwhile
                if cid in self.st.orders:
                    self.publish(om.to_order_update(self.st.orders[cid]))
            else:
                self.publish(protection.to_wire(self.st.algos[cid]))  # its state now: a row never goes back
            self._unseen[cid] = (asked_ms, request)  # looked for again after another JOURNAL_LAG_MS

    # ------------------------------------------------------------------ the exit lane
    @property
    def lane_ready(self) -> bool:
        """The lane may write exits: on, started, a WebSocket-API broker, the intent log on."""
        return self.lane_on and self._send_now is not None and self.intents is not None and self.ready

    def sync_lane(self, lane: exit_lane.ExitLane, sid_of: Callable[[str], int], prepare: bool = False) -> None:
        """``lane`` armed from this state (``ExitLane.sync``); with ``prepare``, its exits'
        requests prepared too (a WebSocket-API broker's ``prepare_order``; off the batch path)."""
        lane.sync(self.cfg, self.st, sid_of, self.ctx, _spec_of)
        if prepare and self._prepare is not None and self.lane_ready:
            lane.prepare(self.clock_ms(), self._prepare)

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
            at_ns = self.clock_ms() * 1_000_000
            try:  # the flusher is woken after the frame's write (``IntentLog.append``)
                intents.append(tmpl.stamped(at_ns) if tmpl is not None and at_ns >= 1 << 32
                               else intent_log.Intent(client_id=cid, at_ns=at_ns, body=order.request), wake=False)
            except (OSError, ValueError) as exc:  # an exit goes anyway: its ax- id finds it at the exchange
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
                self._claim_presend(pre, symbol, jobs.Submit(cid, 1, self.clock_ms()), unclaimed=True)

    def _presend_exit(self, o: om.Order) -> None:
        """An exit's frame written as soon as its intent is logged, before the order's state
        machine, the journal and the dispatcher hear of it (they follow within microseconds,
        in ``_log_then_send``). What happened is kept for ``_dispatch``, which the state
        machine's ``SubmitOrder`` reaches next: the answer is then awaited on a worker
        (sent), the outcome is unknown (a failure while writing), or nothing left and the
        exit goes the ordinary way. The order is the one the state machine holds, so the
        frame is the one ``_dispatch`` would have written."""
        spec = _spec_of(o)
        self._presend[spec.client_order_id] = (spec, self._write_now(spec))

    def _claim_presend(self, pre: tuple[OrderSpec, _Written | None], symbol: str, tag: jobs.Submit,
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

    def _write_now(self, spec: OrderSpec, prepared: Any = None) -> _Written | None:
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

    def _await_written(self, spec: OrderSpec, written: _Written, symbol: str, tag: jobs.Submit) -> None:
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
                        st = replace(self.st, risk=risk.update_equity(self.cfg.risk, self.st.risk, self.equity,
                                                                      self.clock_ms()))
                        self._run((st, []))
            case jobs.Setup(symbols=symbols):
                self._setup_done(symbols, c.result, err)
            case jobs.AlgoAudit():
                if err is None and self.ready:
                    self._run(trader_exchange.on_open_algos(self.cfg, self.st, list(c.result), self.ctx()))
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

    def _startup_done(self, result: Any, err: Exception | None) -> None:
        if err is None:
            self._started(result)
            return
        self.phase = Phase.WAITING
        self.start_error = f"broker start failed: {err}"
        self._next_start = self.mono_s() + STARTUP_RETRY_S
        log.error("brain.execution_start_failed", error=str(err), retry_s=STARTUP_RETRY_S)

    def _setup_done(self, symbols: tuple[str, ...], result: Any, err: Exception | None) -> None:
        self._configuring.difference_update(symbols)
        if err is None:
            setup, brackets = result
            self.configured.update(setup.leverage)
            self.brackets.update(brackets)
            log.info("brain.symbols_set_up", symbols=len(setup.leverage), leverage=sorted(
                set(setup.leverage.values())), margin_type=setup.margin_type, brackets=len(brackets))
        else:
            self._next_setup = self.mono_s() + STARTUP_RETRY_S
            log.error("brain.symbol_setup_failed", symbols=list(symbols), error=str(err)[:200])

    def _symbol_fills_done(self, sym: str, at_ms: int, result: Any, err: Exception | None) -> None:
        if err is None:
            algos, fills = result
            for cid, found in algos:
                if cid in self.st.algos:
                    self._algo_event(cid, _algo_query_result(at_ms, found))
            self._run(trader_exchange.on_symbol_fills(self.cfg, self.st, sym, list(fills), self.ctx((sym,))))
        elif sym in self.st.trades:  # ask again; the trade closes at the mark if it never comes
            self.delayed.append((self.clock_ms() + QUERY_RETRY_MS, trader.FetchSymbolFills(
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
                self._answer_fills = True  # fills the answer did not carry: the stream's (``_FillsGrace``)
                try:
                    self._event(cid, _query_result(sent_ms, res.order))
                finally:
                    self._answer_fills = False
            return
        if isinstance(err, AmbiguousError):
            self.counters["ambiguous"] += 1
            log.warning("brain.order_outcome_unknown", client_order_id=cid, error=str(err))
            self._event(cid, om.Timeout(at_ms=self.clock_ms()))
            return
        code = getattr(err, "code", 0) or 0
        if getattr(err, "reason", "") == "duplicate_client_id":
            code = om.DUPLICATE_CLIENT_ID_CODE
        log.warning("brain.order_refused", client_order_id=cid, code=code, error=str(err))
        self._event(cid, om.Reject(attempt=attempt, code=int(code), message=str(err)[:200]))

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
                self._algo_event(cid, ao.Timeout(at_ms=self.clock_ms()))
            else:
                code = getattr(err, "code", 0) or 0
                if getattr(err, "reason", "") == "duplicate_client_id":
                    code = ao.DUPLICATE_CLIENT_ID_CODE
                log.warning("brain.protection_refused", client_algo_id=cid, code=code, error=str(err))
                self._algo_event(cid, ao.Reject(attempt=tag.attempt, code=int(code), message=str(err)[:200]))
        elif isinstance(tag, jobs.CancelAlgo):
            if err is None:
                self._algo_event(cid, _algo_update(c.result) if c.result.status != "CANCELED" else ao.Canceled())
            else:
                self._algo_event(cid, ao.CancelRejected(code=getattr(err, "code", 0) or 0, message=str(err)[:200]))
        elif err is None:  # jobs.QueryAlgo
            self._algo_event(cid, _algo_query_result(tag.at_ms, c.result))
        else:
            self.counters["queries_retried"] += 1
            a = self.st.algos[cid]
            self.delayed.append((self.clock_ms() + QUERY_RETRY_MS, ao.QueryAlgo(client_algo_id=cid, not_before_ms=0),
                                 a.symbol))

    def _retry_query(self, cid: str) -> None:
        self.counters["queries_retried"] += 1
        o = self.st.orders[cid]
        self.delayed.append((self.clock_ms() + QUERY_RETRY_MS,
                             om.QueryOrder(client_order_id=cid, not_before_ms=0), o.symbol))

    # ------------------------------------------------------------------ views
    def snapshot(self) -> dict[str, Any]:
        c = self.st.counters
        return {"ready": self.ready, "block_reason": self.ctx().block_reason,
                "equity": self.equity if math.isfinite(self.equity) else None,
                "orders": c.get("orders", 0), "fills": c.get("fills", 0),
                "risk_rejects": c.get("risk_rejects", 0), "positions_open": sum(
                    1 for t in self.st.trades.values() if t.position > 0),
                "trades_closed": c.get("trades_closed", 0), "wins": c.get("wins", 0),
                "realized_pnl": float(self.st.realized_pnl), "fees": float(self.st.fees),
                "funding": float(self.st.funding), "funding_reads": funding_feed.snapshot(self),
                "entry_slippage_bps": trader_views.slippage_stats(self.st),
                "halted": self.st.risk.halted, "halt_reason": self.st.risk.halt_reason,
                "open_orders": sum(1 for o in self.st.orders.values() if not o.is_terminal),
                "protective_orders": sum(1 for o in self.st.algos.values() if o.is_protecting),
                "positions_protected": sum(1 for t in self.st.trades.values() if t.position > 0 and t.protected_ms),
                "longest_unprotected_ms": self.st.longest_unprotected_ms,
                "trader": dict(c), "user_stream": user_feed.snapshot(self), "tick_to_trade": self.ttt.snapshot(),
                "broker": brokers.counters_of(self.broker), **self.counters}

    def heartbeat_counters(self) -> dict[str, float]:
        """The shell's counters, the intent log's and the broker's (``venue.brokers.counters_of``:
        ``all_orders_rejected``, the WebSocket broker's REST fallbacks, ...), flat, for the
        brain's heartbeat and so Prometheus (``aegis_service_value{service="brain",name=...}``).
        Every name is there from the start, zero until it counts."""
        out = {k: float(v) for k, v in self.counters.items()}
        if self.intents is not None:
            out.update({k: float(v) for k, v in self.intents.counters.items()})
        out.update({k: float(v) for k, v in brokers.counters_of(self.broker).items()})
        return out


@dataclass(frozen=True, slots=True)
class _FillsGrace:
    """A fill fetch held back while the user data stream is connected: the stream tells an
    order's fills within milliseconds of the trade, so REST reads them only if, after
    ``STREAM_FILLS_GRACE_MS``, the order still has fewer than the ``executed`` quantity the
    exchange reported (a lost event, a gap)."""

    fetch: om.FetchTrades
    executed: Decimal


def _spec_of(o: om.Order) -> OrderSpec:
    """The broker's order from the state machine's (the fields ``_dispatch`` sends)."""
    return OrderSpec(client_order_id=o.client_order_id, symbol=o.symbol, side=o.side, order_type=o.order_type,
                     qty=o.qty, price=o.price, reduce_only=o.reduce_only, time_in_force=o.time_in_force)


def _ours_unknown(broker: Broker, saved: recovery.Saved | None, now_ms: int) -> list[intent_log.Intent]:
    """Our orders the exchange holds open and neither the journal nor the intent log knows, as
    the orders the recovery asks about (``recovery.exchange_intents``); none if the read fails."""
    try:
        listed = broker.open_orders()
    except AegisError as exc:
        log.warning("brain.open_orders_unreadable", error=str(exc)[:200])
        return []
    known = (saved.journal_ids | saved.used_cids | set(saved.open_orders)) if saved is not None else frozenset()
    out = recovery.exchange_intents([e for e in listed if e.client_order_id not in known], now_ms)
    if out:
        log.warning("brain.orders_adopted", count=len(out), first_ids=[it.client_id for it in out][:LOG_IDS],
                    note="open at the exchange under our ids, in neither the journal nor the intent log")
    return out


def _ours_in_history(broker: Broker, saved: recovery.Saved, positions: list[Any], symbols: list[str], since_ms: int,
                     now_ms: int, unreadable: list[str]) -> tuple[list[ExchangeOrder],
                                                                list[tuple[ExchangeOrder, list[Any]]]]:
    """Our finished orders in the exchange's order history (``all_orders`` of each symbol, from
    ``since_ms``) that nothing here knows: (to adopt into a trade, [(to record, its fills)]),
    by ``recovery.from_history``. A symbol whose history cannot be read is skipped, added to
    ``unreadable`` and said in the log (reconciliation reads the history again at its first run)."""
    history: list[ExchangeOrder] = []
    for s in symbols:
        try:
            history += broker.all_orders(s, since_ms=since_ms, until_ms=now_ms + om.CLOCK_MARGIN_MS)
        except AegisError as exc:
            unreadable.append(s)
            log.warning("brain.order_history_unreadable", symbol=s, reason=exc.reason, error=str(exc)[:200])
    adopt, record = recovery.from_history(history, positions, saved)
    out = []
    for e in record:
        fills: list[Any] = []
        if e.executed_qty > 0:
            try:
                fills = broker.fills(e.symbol, exchange_order_id=e.exchange_order_id)
            except AegisError as exc:  # the row and state still go; reconciliation adds the fills
                log.warning("brain.history_fills_unreadable", cid=e.client_order_id, reason=exc.reason)
        out.append((e, fills))
    if adopt or out:  # counts and the first few ids: a bench's restart finds hundreds
        log.warning("brain.orders_found_in_history", adopted=len(adopt), recorded=len(record),
                    first_adopted=[e.client_order_id for e in adopt][:LOG_IDS],
                    first_recorded=[e.client_order_id for e in record][:LOG_IDS], since_ms=since_ms,
                    note="finished at the exchange under our ids, in neither the journal nor the intent log")
    return adopt, out


def rules_ready(symbols: Iterable[str], known: Container[str], waiting: Mapping[str, float], now_s: float,
                wait_s: float) -> tuple[list[str], dict[str, float], list[str]]:
    """Pure: which of ``symbols`` may be set up now. (ready: the known ones and those that
    waited ``wait_s`` since first seen here; every symbol still waiting (those not asked this
    time keep their place) with when it began; the ready ones that did not get their rules)."""
    asked = list(symbols)
    ready: list[str] = []
    late: list[str] = []
    still = {s: t for s, t in waiting.items() if s not in asked}
    for s in asked:
        if s in known:
            ready.append(s)
            continue
        since = waiting.get(s, now_s)
        if now_s - since >= wait_s:
            ready.append(s)
            late.append(s)
        else:
            still[s] = since
    return ready, still, late


def _complete_filters(filters: Mapping[str, risk.SymbolFilters], symbols: Iterable[str]) -> None:
    """The feed's rules cover the symbols it streams; one it does not (a position or an order
    from before a restart, or a start before the feed has published) gets its filters from
    exchangeInfo, once. A failed fetch is logged, never a failed start: the symbol stays
    without filters (its orders refused, its protection reported) until its rules arrive."""
    if not isinstance(filters, FeedFilters):
        return  # replay's saved exchangeInfo, a backtest's filters: complete already
    try:
        still = filters.complete(symbols)
    except Exception as exc:  # noqa: BLE001 - network, HTTP, a bad body: the start goes on
        log.warning("brain.filters_fetch_failed", error=repr(exc)[:200])
        return
    if still:
        log.warning("brain.no_filters", symbols=still)


def _brackets_or_none(broker: Broker, symbols: list[str]) -> dict[str, tuple[Any, ...]]:
    """The symbols' leverage brackets; none when the broker cannot say (the trader's liquidation
    check then uses its conservative fallback ratio), said in the log."""
    try:
        return broker.leverage_brackets(symbols)
    except (AegisError, AttributeError) as exc:
        log.warning("brain.brackets_unavailable", symbols=len(symbols), error=str(exc)[:200])
        return {}


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
