"""The execution shell: carries out the trader's actions and feeds the answers back.

It lives in the brain's main thread, beside the ring reader, and never blocks it on the
exchange: every broker call runs on the dispatcher's threads (orders ahead of queries, then
account polling) and comes back as a completion that ``poll`` drains. One exception, for
speed: an exit over the WebSocket API has its frame written by this thread (``send_order``,
never waiting on a rate limit) and only its answer awaited on a worker.

This module holds the shell's state (``Execution.__init__``), its inputs from the brain
(signals, price ranges, reconciliation's news), the trader's results carried out (``apply``)
and its views; the rest of the class is made of one module per role:

    execution_parts     the state and ports every part relies on, declared and typed once
    execution_startup   ``Phase``; start-up and recovery, the symbols' set-up at the exchange
    execution_timers    ``poll``: answers drained, timers, the polls, the journal audit
    execution_send      the order send path: intent log / journal, send; ``dispatch``
    execution_inline    frames written from the deciding thread; the exit lane's exits
    execution_answers   the dispatcher's answers as the state machines' events
    user_feed           the user data stream;  funding_feed: funding's income reads
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import structlog

from common import wire
from common.log import RateLimiter
from services.brain import dispatcher as dsp
from venue import brokers
from services.brain import (funding_feed, intent_log, jobs, recovery, risk, trader, trader_entries, trader_exits,
                            trader_exchange, trader_resize, trader_views, user_feed)
from services.brain.tick_to_trade import TickToTrade
from venue.port import Broker
from services.brain.execution_answers import Answers
from services.brain.execution_inline import InlineSend
from services.brain.execution_parts import Host
from services.brain.execution_send import OrderSend
from services.brain.execution_startup import Phase, Startup
from services.brain.execution_timers import Timers

log = structlog.get_logger(__name__)

POSITION_POLL_S = 5.0  # while a trade is open: the exchange's positions, to see closes behind our back
ALGO_AUDIT_S = 30.0  # the exchange's open conditional orders against ours: missing stops, strays
SYMBOL_SETUP_PENDING = "SYMBOL_SETUP_PENDING"  # margin type and leverage not yet set for the symbol


class Execution(Startup, Timers, OrderSend, InlineSend, Answers):
    """The shell (module docstring): its state, inputs and views here; its other methods come
    from the parts it is made of (``execution_startup`` ... ``execution_answers``). What each
    attribute is, and its type, is declared once for every part: ``execution_parts``."""

    def __init__(self, *, cfg: trader.TraderConfig, broker: Broker,
                 dispatcher: dsp.Dispatcher | dsp.InlineDispatcher, host: Host, db_path: Path,
                 balance_poll_s: float = 5.0, position_poll_s: float = POSITION_POLL_S,
                 algo_audit_s: float = ALGO_AUDIT_S, flatten_on_halt: bool = False,
                 user_stream: user_feed.Source | None = None,
                 intents: intent_log.IntentLog | None = None, exit_lane_on: bool = True) -> None:
        self.cfg = cfg
        self.broker = broker
        self.dispatcher = dispatcher
        self.host = host  # clocks, quotes, symbols, where messages go (``execution_parts.Host``)
        self._held = None  # publications held back while an order's send runs (``_held_send``)
        # the local intent log (``intent_log``): with it an order is written there, sent, then
        # journaled through the buffered path; without it (replay, tests of the old path) the
        # order is journaled synchronously first ("journal, then act")
        self.intents = intents
        self._send_now = None  # the broker's send_order: exits from this thread
        self._prepare = None  # its prepare_order (the exit lane)
        # exits written before their state machine's SubmitOrder: cid -> (spec, what _write_now returned)
        self._presend = {}
        # the exit lane (``exit_lane``): exits whose intent and frame the lane wrote before the
        # trader decided them: cid -> symbol (claimed by ``_log_then_send``)
        self.lane_on = exit_lane_on
        self._lane_fired = {}
        # sent, journaled on the buffered path, row not yet seen in the database: cid -> (sent ms,
        # the request; None for a protective order). A journal message can die in a killed
        # orchestrator's queue; the row is then published again (``_audit_journal``), and
        # reconciliation repairs the rest
        self.journal_unseen = {}
        self.signal_in_hand = None
        self.remainders = {}
        self._next_journal_audit = 0.0
        self.inline = bool(getattr(dispatcher, "inline", False))
        self.db_path = db_path
        self.balance_poll_s = balance_poll_s
        self.flatten_on_halt = flatten_on_halt
        self.st = trader.TraderState()
        self.filters = {}
        self.equity = math.nan
        self.phase = Phase.WAITING  # READY: start-up and recovery done
        self.start_error = ""
        self.saved = None
        self.delayed = []  # (not before ms, effect, symbol)
        # every counter of the shell, zero from the start: the heartbeat (``heartbeat_counters``)
        # and the stats file always carry every name, a metric never appears out of nowhere
        self.counters = {"journal_sync_failed": 0, "broker_errors": 0, "queries_retried": 0,
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
                         "reconciled_read_failed": 0, "unknown_effects": 0, "remainder_checks": 0,
                         "remainder_checks_given_up": 0}
        self.position_poll_s = position_poll_s
        self._next_positions = 0.0
        self.algo_audit_s = algo_audit_s
        self._next_audit = 0.0
        # symbols whose margin type and leverage are set at the exchange (at start, and for every
        # symbol the feed adds later: an entry waits for its symbol's set-up)
        self.configured = set()
        self.brackets = {}  # leverage brackets: the liquidation check
        self.configuring = set()
        self._rules_wait = {}  # symbol -> when its set-up began to wait for its rules
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
            broker.fills_after_submit = False  # fills come by the stream (``FillsGrace`` otherwise)
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
            q = self.host.quote(s)
            if q is not None:
                quotes[s] = q
        block = self.host.block_reason() or ("" if self.ready else (self.start_error or "starting"))
        return trader.Ctx(now_ms=self.host.clock_ms(), equity=self.equity,
                          market=risk.Market(filters=self.filters, quotes=quotes), block_reason=block,
                          brackets=self.brackets)

    # ------------------------------------------------------------------ inputs from the brain
    def on_signal(self, sig: wire.SignalGenerated, announce: Callable[[], None] | None = None) -> None:
        """A signal to act on. ``announce`` (live) publishes it to the bus and the journal, and is
        called at most once here: right after its entry leaves and before the entry's journal
        row (one socket, so a journal that has the row has the signal), with the signal kept in
        the entry's intent record. The caller announces it afterwards if no entry went out."""
        if announce is None:
            self._on_signal(sig)
            return
        self.signal_in_hand = (sig, announce)
        try:
            self._on_signal(sig)
        finally:
            self.signal_in_hand = None

    def _on_signal(self, sig: wire.SignalGenerated) -> None:
        if self.ready and sig.symbol not in self.configured:
            # the exchange has not been told this symbol's margin type and leverage yet: an entry
            # now would trade at whatever the account holds. Refused with the reason, set up now
            self.counters["setup_pending_rejects"] = self.counters.get("setup_pending_rejects", 0) + 1
            self.publish(wire.RiskReject(symbol=sig.symbol, reason=SYMBOL_SETUP_PENDING,
                                         detail="margin type and leverage are being set", signal_id=sig.signal_id))
            self._setup_symbols([sig.symbol])
            return
        self.apply(trader_entries.on_signal(self.cfg, self.st, sig, self.ctx((sig.symbol,))))

    def on_reconciled(self, msg: wire.Reconciled) -> None:
        """Reconciliation repaired or adopted something (``wire.Reconciled``, from the
        orchestrator): the positions are read again here (REST, on a worker, ``jobs.Reconciled``)
        and the trader decides on that fresh read (``trader_exchange.on_reconciled``). Before the shell
        is ready nothing is asked: its start-up reads the whole exchange anyway."""
        self.counters["reconciled_heard"] += 1
        if not self.ready or not (msg.symbols or msg.adopted_orders):
            return
        tag = jobs.Reconciled(sent_ms=self.host.clock_ms(), symbols=tuple(msg.symbols),
                              adopted_orders=tuple(msg.adopted_orders))
        self.dispatcher.submit(dsp.QUERY, self.broker.positions, tag=tag)

    def on_range(self, symbol: str, low: float, high: float) -> None:
        if symbol in self.st.trades:
            self.apply(trader_exits.on_prices(self.cfg, self.st, symbol, low, high, self.ctx((symbol,))))

    # ------------------------------------------------------------------ actions
    def apply(self, result: trader.Result) -> None:
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
            self.publish(wire.ModelState(name=recovery.RISK_NAME, version=self.host.clock_ms(),
                                         state=json.dumps(self.st.risk.to_dict()).encode()))

    def _carry_out(self, actions: list[trader.Action]) -> None:
        for a in actions:
            if isinstance(a, trader.NewOrder):
                self._new_order(a)
            elif isinstance(a, trader.NewAlgo):
                self._new_algo(a)
            elif isinstance(a, trader.Dispatch):
                self.dispatch(a.effect, a.symbol)
            elif isinstance(a, trader.Publish):
                self.publish(a.body)
            elif isinstance(a, trader.Learn):
                self.host.learn(a.features, a.outcome_r)
            elif isinstance(a, trader.Problem):
                self.counters["problems"] += 1
                if a.kind in trader_resize.LOG_EVENTS:  # each is one event already: never throttled
                    log.warning(trader_resize.LOG_EVENTS[a.kind], detail=a.detail)
                elif self._limiter.allow(a.kind, time.monotonic()):
                    log.warning("brain.order_problem", kind=a.kind, detail=a.detail, client_order_id=a.client_order_id)

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
        out.update({k: float(self.st.counters.get(k, 0)) for k in (*trader_resize.COUNTERS,
                                                                     *trader_exchange.ADOPTION_COUNTERS)})
        return out
