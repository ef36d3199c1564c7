"""The brain's app: ``Brain``, what it does with each batch of the ring and each closed candle.

A batch: the exit lane first (``exit_lane``: an armed stop or target touched sends its exit at
once), the numba core (``engine``: candles, conflated prices), the trader's stops and targets,
then the closed candles: published (PUB for anyone, PUSH to the journal for the database) and
analysed by the configured strategy (``research.strategy_api``), whose entries go to the
execution shell (``execution``). Live, the closes wait in a queue worked through between reads
of the ring (``Brain.analyse_closes``). The process around it (sockets, start-up, the loop,
shutdown) is the shell, ``services/brain/__main__.py``.
"""

from __future__ import annotations

import collections
import itertools
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import structlog

from common import bus, records, service, wire
from common.config import AegisConfig
from common.errors import TransientError
from common.ring import Ring
from research import strategy_api
from services.brain import candles, conflate, engine, exit_lane, kernels, model, recovery, risk, trader
from services.brain import control as brain_control

if TYPE_CHECKING:  # the execution shell: the brain's port to trading (set by the shell's run())
    from services.brain.execution import Execution

log = structlog.get_logger(__name__)
NAME = "brain"
RULES_JOURNAL_S = 15.0  # how long a symbol's missing rules are looked for in the journal
# tick-to-brain latency buckets exported in the heartbeat (microseconds)
LATENCY_BUCKETS_US = (10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 100_000, 1_000_000)


class Brain:
    def __init__(self, cfg: AegisConfig, ring: Ring, pub: bus.Publisher, journal: bus.Publisher,
                 history: bus.Subscriber | None = None, saved_model: bytes | None = None) -> None:
        self.cfg = cfg
        self.ring = ring
        self.reader = ring.reader(resume=cfg.ring.reader_resume)
        self.pub = pub
        self.journal = journal
        self.core = kernels.new_core(cfg)
        self.buf = records.empty(cfg.brain.read_batch)
        self.lane = exit_lane.ExitLane(self.buf)  # the armed stops and targets, checked first
        self.process = lambda n, now_ns: engine.process_batch(self.core, self.buf, n, now_ns)  # bound in kernels.warm_up
        self.names: list[str] = ring.symbol_names()
        # the configured strategy (research.strategy_api; default: the SMC one)
        self.runner = strategy_api.StrategyRunner(
            strategy_api.load_section(cfg.strategy, base_interval_s=cfg.brain.candle_interval_s))
        self.intents_unsupported = 0
        # closed candles the feed hydrated over REST at start-up: they warm the strategy's
        # SMC state; signals on that history are not published (they are in the past)
        self.history = history
        self.history_candles = 0
        self.history_signals = 0
        # a restarted brain's warm-up, read from the database as it is consumed (see recovery)
        self.db_history: Iterator[wire.CandleClosed] | None = None
        # each symbol's trading rules as the feed published them (and the database kept them):
        # the source of the risk checks' filters and of ccxt's markets (venue.filters.FeedFilters)
        self.symbol_info: dict[str, wire.SymbolInfo] = {}
        self.rules_missed: dict[str, float] = {}  # ring symbol without rules -> when first seen so
        self.rules_read_from_journal = 0
        self.analysed_to: dict[str, int] = {}  # symbol -> close time of the last analysed candle
        # live: closed candles waiting for their analysis (the rows, one's index, trigger_ns): analyse_closes
        self.closes: collections.deque[tuple[np.ndarray, int, int]] = collections.deque()
        self.analysis_yields = 0  # times the closes' analysis stopped for waiting ticks
        self.ticks_pending: collections.deque[int] = collections.deque()  # drained, not yet published
        # the model learns from every closed trade; until it has seen enough, every confidence
        # is the cold prior, and the signal says so (cold=True). Its state survives restarts.
        self.model_state = _model_from(saved_model)
        self.execution: Execution | None = None  # set by run() when trading is enabled
        self.control: brain_control.Control | None = None  # operators' commands (not in replay)
        self.orch: bus.Subscriber | None = None  # the orchestrator's TradingPermission
        self.permission_block = ""  # why entries are halted ("" = they are not)
        self._traded_ids = np.zeros(0, np.uint16)
        self.signals = 0
        self.ticks_read = 0
        self.candles_closed = 0
        self.tick_updates = 0
        self.journal_full = 0
        self.max_event_ms = 0
        self.max_event_seen_mono = time.monotonic()
        # replay mode is deterministic: its only clock is the exchange clock of the ticks read
        self.replay = cfg.mode == "replay"
        if self.reader.skipped_on_attach:
            log.warning("brain.resume_skipped", skipped=self.reader.skipped_on_attach)

    def name(self, sid: int) -> str:
        if sid >= len(self.names):
            self.names = self.ring.symbol_names()
        return self.names[sid] if sid < len(self.names) else f"ID{sid}"

    def poll(self) -> int:
        n = self.reader.read_batch(self.buf)
        if n:
            self.ticks_read += n
            # exits first: the armed stops and targets, before the batch's candles (exit_lane)
            hits = self.exits_first(n) if self.execution is not None and self.execution.st.trades else None
            n_closed = self.process(n, time.time_ns())
            mx = int(self.core.candles.stats[candles.STAT_MAX_EVENT_MS])
            if mx > self.max_event_ms:
                self.max_event_ms, self.max_event_seen_mono = mx, time.monotonic()
            if hits:
                self.watch_prices(hits)
            if n_closed:
                ex = self.execution
                if ex is not None and not self.replay:  # tick-to-trade: the batch that closed the candle
                    ex.ttt.trigger_ns = int(self.buf[0]["recv_ns"])
                self.emit_candles()
                if ex is not None:
                    ex.ttt.trigger_ns = 0
            if self.replay:  # quiet symbols' candles close on the ticks' clock, batch by batch
                self.flush_quiet()
        if self.closes:  # live: closed candles' analyses, until ticks wait (at least one a poll)
            self.analyse_closes()
        return n

    def clock_ms(self) -> int:
        """The exchange clock as the ticks tell it: replay mode's clock for everything."""
        return self.max_event_ms or self.cfg.replay.warm_to_ms

    def arm_exits(self) -> None:
        """The exit lane re-armed for the trades that changed (the loop calls it after the
        execution's completions, so that a batch finds its trades armed)."""
        ex = self.execution
        if ex is not None and (ex.st.trades or self.lane.armed):
            ex.sync_lane(self.lane, self.sid, prepare=not self.replay)

    def exits_first(self, n: int) -> dict[str, exit_lane.Hit]:
        """The batch against the armed trades (``exit_lane``): an exit the trader will send is
        written now, before anything else is done with the batch. Returns the symbols whose
        range the trader must see (``watch_prices``)."""
        ex = self.execution
        ex.sync_lane(self.lane, self.sid)
        hits = self.lane.check(n)
        if hits and not self.replay:
            for h in hits.values():
                if h.exit:
                    ex.fire_exit(h.armed, h.first_recv_ns, self.lane.prepared_for(h.armed))
        return hits

    def watch_prices(self, hits: dict[str, exit_lane.Hit]) -> None:
        """The traded range of each held symbol the lane woke, to the trader (in the order of
        its trades): its stops and targets. A symbol the lane did not wake is one for which the
        trader provably does nothing (``trader_exits.levels``)."""
        ex = self.execution
        ttt = ex.ttt
        for sym in list(ex.st.trades):
            h = hits.get(sym)
            if h is None:
                continue
            if not self.replay:  # tick-to-trade: the symbol's first trade tick in this batch
                ttt.trigger_ns = h.first_recv_ns
            ex.on_range(sym, h.low, h.high)
            ttt.trigger_ns = 0
        ex.lane_settle()

    def sid(self, symbol: str) -> int:
        try:
            return self.names.index(symbol)
        except ValueError:
            self.names = self.ring.symbol_names()
            return self.names.index(symbol) if symbol in self.names else -1

    def quote(self, symbol: str) -> risk.Quote | None:
        """Latest mark (else last trade, else mid) and its time, from the conflation state."""
        sid = self.sid(symbol)
        if sid < 0:
            return None
        f = conflate.tick_fields(self.core.conflate, sid)
        mid = (f["bid"] + f["ask"]) / 2 if f["bid"] > 0 and f["ask"] > 0 else 0.0
        price = f["mark"] or f["last_price"] or mid
        if price <= 0 or f["event_ms"] <= 0:
            return None
        return risk.Quote(mark_price=price, updated_ms=f["event_ms"])

    def book_top(self, symbol: str):
        """Best bid/ask and sizes for the paper broker (read on a dispatcher thread: a torn
        read of two updates is possible and harmless for a simulation)."""
        from venue.paper import BookTop

        sid = self.sid(symbol)
        if sid < 0:
            return None
        st = self.core.conflate
        bid, ask = float(st.bid[sid]), float(st.ask[sid])
        if not (bid > 0 and ask > bid):
            return None
        return BookTop(bid=Decimal(repr(bid)), bid_qty=Decimal(repr(float(st.bid_qty[sid]))),
                       ask=Decimal(repr(ask)), ask_qty=Decimal(repr(float(st.ask_qty[sid]))),
                       time_ms=int(st.book_ms[sid]))

    def watch_orchestrator(self) -> None:
        """The orchestrator's verdict on new entries (its journal can write, reconciliation
        passed): a typed ``TradingPermission``. Exits never ask it."""
        if self.orch is None:
            return
        for env in self.orch.drain(100):
            b = env.body
            if isinstance(b, wire.TradingPermission):
                self.permission_block = "" if b.allowed else f"{b.reason}: {b.detail}"
            elif isinstance(b, wire.Reconciled) and self.execution is not None:
                self.execution.on_reconciled(b)  # reconciliation's repairs: the shell re-reads those positions

    def trading_block_reason(self) -> str:
        return self.permission_block

    def learn(self, features, outcome_r: float) -> None:
        try:
            self.model_state = model.learn(self.model_state, features, outcome_r)
        except model.ModelInputError as exc:
            log.warning("brain.model_input_rejected", error=str(exc))
            return
        self.journal_publish(wire.ModelState(name=recovery.MODEL_NAME, version=self.model_state.n_seen,
                                             state=model.to_bytes(self.model_state)),
                             self.now_ns())

    def now_ns(self) -> int:
        """When an action happens: the ticks' clock in replay mode, the wall clock live."""
        return self.clock_ms() * 1_000_000 if self.replay else time.time_ns()

    def publish_exec(self, body: object, journal: bool = True) -> None:
        now = self.now_ns()
        self.pub.publish(body, now)
        if journal:
            self.journal_publish(body, now)

    def flush_quiet(self) -> None:
        """Close candles whose bucket ended on the exchange clock, even without a new trade."""
        if not self.max_event_ms:
            return
        now_ms = self.max_event_ms
        if not self.replay:  # live: the exchange clock moves on between ticks too
            now_ms += int((time.monotonic() - self.max_event_seen_mono) * 1000)
        if candles.flush_due(self.core.candles, now_ms, candles.FLUSH_GRACE_MS):
            self.emit_candles()

    def rules_from_journal(self) -> None:
        """Ring symbols without rules (their message went out before this brain subscribed, or
        is still on its way): the journal's copy, read at most once a call (the loop's
        once-a-second step) while one of them has been missing for less than
        ``RULES_JOURNAL_S``; the execution's set-up waits for them (``execution_startup.RULES_WAIT_S``)
        before it asks exchangeInfo."""
        now = time.monotonic()
        missed = {s: self.rules_missed.get(s, now) for s in self.ring.symbol_names() if s not in self.symbol_info}
        self.rules_missed = missed
        if not any(now - t <= RULES_JOURNAL_S for t in missed.values()):
            return
        for s, info in recovery.symbol_rules(service.db_path(self.cfg)).items():
            if s not in self.symbol_info:  # the bus's message is as new or newer: it wins
                self.symbol_info[s] = info
                self.rules_read_from_journal += 1

    def emit_candles(self) -> None:
        """The candles the batch closed: analysed (base interval) and published. Replay keeps
        the capture's order (each candle published, then analysed). Live, they join the queue
        of ``analyse_closes``, which ``poll`` works through: as rows (one array copy), each
        made a message only when its turn comes, so the closing batch's own read stays short."""
        rows = candles.closed(self.core.candles)
        if not self.replay:
            trigger_ns = self.execution.ttt.trigger_ns if self.execution is not None else 0
            rows = rows.copy()  # the core's output buffer is reused by the next close
            self.closes.extend((rows, i, trigger_ns) for i in range(len(rows)))
            candles.reset_output(self.core.candles)
            return
        bodies = [candles.message(c, self.name) for c in rows]
        candles.reset_output(self.core.candles)
        base = self.cfg.brain.candle_interval_s
        for body, event_ns in bodies:
            self.publish_candle(body, event_ns)
            if body.interval_s == base:
                self.analyse(body, event_ns)

    def analyse_closes(self) -> None:
        """Live: the queued closed candles in order, each base candle analysed, then the ones
        analysed published (an entry decided on a close leaves before the bus sends). It stops
        when ticks wait in the ring, after at least one candle, and goes on at the next poll
        (each poll calls it while candles wait, whether or not it read ticks):
        a minute's close on 300 symbols (milliseconds of analyses) never holds a stop's tick
        back longer than one analysis. Tick-to-trade: each candle's entry counts from the batch
        that closed it."""
        q, ex, base = self.closes, self.execution, self.cfg.brain.candle_interval_s
        done = []
        while q:
            rows, i, trigger_ns = q.popleft()
            body, event_ns = candles.message(rows[i], self.name)
            if body.interval_s == base:
                if ex is not None:
                    ex.ttt.trigger_ns = trigger_ns
                self.analyse(body, event_ns)
            done.append((body, event_ns))
            if q and self.reader.lag() > 0:
                self.analysis_yields += 1  # ticks first; the rest at the next poll
                break
        if ex is not None:
            ex.ttt.trigger_ns = 0
        for body, event_ns in done:
            self.publish_candle(body, event_ns)

    def publish_candle(self, body: wire.CandleClosed, event_ns: int) -> None:
        self.pub.publish(body, event_ns)
        self.journal_publish(body, event_ns)
        self.candles_closed += 1

    def warm_from_history(self, limit: int = 200) -> None:
        """Feed hydrated candles (a bounded number per call: the ring comes first): those read
        back from the database after a restart first, then the feed's."""
        if self.db_history is not None:
            taken = 0
            for c in itertools.islice(self.db_history, limit):
                taken += 1
                self.history_candles += 1
                self.analyse(c, c.close_ms * 1_000_000, live=False)
                if self._ticks_waiting():
                    return  # the rest at the next idle moment (the generator keeps its place)
            if taken < limit:  # exhausted (its connection is closed)
                self.db_history = None
                log.info("brain.warmed_from_database", candles=self.history_candles)
            return
        if self.history is None:
            return
        for _ in range(limit):
            got = self.history.drain(1)
            if not got:
                return
            c = got[0].body
            if isinstance(c, wire.SymbolInfo):
                self.symbol_info[c.symbol] = c
            elif isinstance(c, wire.CandleClosed) and c.interval_s == self.cfg.brain.candle_interval_s:
                self.history_candles += 1
                self.analyse(c, got[0].event_ns, live=False)
                if self._ticks_waiting():
                    return

    def _ticks_waiting(self) -> bool:
        """Live: ticks are waiting in the ring, so history yields after the candle in hand (a
        stop or target on them must not wait behind a warm-up burst of 200 analyses). Replay
        keeps its fixed batches: its interleaving of history and ticks is part of its decisions."""
        return not self.replay and self.reader.lag() > 0

    def analyse(self, candle: wire.CandleClosed, event_ns: int, live: bool = True) -> None:
        """The configured strategy on each closed base candle: publish the signals it decides
        (its ``Enter`` intents), carry out its other intents (``strategy_intent``)."""
        if candle.close_ms <= self.analysed_to.get(candle.symbol, 0):
            return  # seen already (history from two sources, or a candle rebuilt after a restart)
        self.analysed_to[candle.symbol] = candle.close_ms
        # ---- strategy API (research/strategy_api.py) ----
        c = strategy_api.candle_from(candle)
        pos = strategy_api.position_of(self.execution.st.trades.get(c.symbol)) if self.execution else None
        intents = self.runner.on_candle(c, position=pos, model=self.model_state)
        intents += self.runner.on_timer(c.symbol, c.close_ms, position=pos, model=self.model_state)
        signals = []
        for it in intents:
            if isinstance(it, strategy_api.Enter):
                sig = self.runner.signal(c, it)
                if sig is not None:
                    signals.append(sig)
            elif live:
                self.strategy_intent(c.symbol, it)
        # ---- end strategy API ----
        if not live:
            self.history_signals += len(signals)
            return
        for sig in signals:
            self.signals += 1
            if self.replay:  # the capture's order: the signal's rows, then the trader's
                self.publish_signal(sig, event_ns)
                self.act_on(sig)
            else:  # live: the entry leaves first (each bus send can hand the interpreter to
                # another thread); the signal is published right after it, before the entry's
                # journal row (``Execution.on_signal``), or after the trader's answer
                announce = self.announcer(sig, event_ns)
                self.act_on(sig, announce)
                announce()

    def announcer(self, sig: wire.SignalGenerated, event_ns: int) -> Callable[[], None]:
        """``publish_signal(sig, event_ns)``, done on the first call only."""
        done = False

        def announce() -> None:
            nonlocal done
            if not done:
                done = True
                self.publish_signal(sig, event_ns)
        return announce

    def publish_signal(self, sig: wire.SignalGenerated, event_ns: int) -> None:
        self.pub.publish(sig, event_ns)
        self.journal_publish(sig, event_ns)

    def act_on(self, sig: wire.SignalGenerated, announce: Callable[[], None] | None = None) -> None:
        if self.control is not None:  # a pause refuses it before the trader sees it
            self.control.on_signal(sig, announce)
        elif self.execution is not None:
            self.execution.on_signal(sig, announce)

    def strategy_intent(self, symbol: str, intent: object) -> None:
        """A strategy's intent other than an entry. Exit: the trader's exit of the symbol's
        trade (a reduce-only market order). MoveStop / MoveTarget: the trade's level and its
        exchange-held order (cancel and replace). Cancel: a resting entry, if any."""
        ex = self.execution
        if isinstance(intent, strategy_api.Exit) and ex is not None:
            ex.apply(trader.request_exit(ex.cfg, ex.st, symbol, intent.reason, ex.ctx((symbol,))))
            return
        if isinstance(intent, (strategy_api.MoveStop, strategy_api.MoveTarget)) and ex is not None:
            role = "STOP" if isinstance(intent, strategy_api.MoveStop) else "TARGET"
            ex.apply(trader.move_level(ex.cfg, ex.st, symbol, role, intent.price, ex.ctx((symbol,))))
            return
        if isinstance(intent, strategy_api.Cancel) and ex is not None:
            ex.apply(trader.cancel_entry(ex.cfg, ex.st, symbol, ex.ctx((symbol,))))
            return
        self.intents_unsupported += 1
        log.warning("brain.strategy_intent_unsupported", symbol=symbol, intent=type(intent).__name__,
                    detail="not supported yet" if ex is not None else "trading is off")

    def journal_publish(self, body: object, event_ns: int) -> None:
        try:
            self.journal.publish(body, event_ns)
        except TransientError:
            self.journal_full += 1

    def publish_ticks(self, *, whole: bool = False) -> None:
        """The latest tick of each symbol that changed since the last drain, one message each.
        Live, it stops when ticks wait in the ring (after at least one message) and the loop
        goes on with ``ticks_pending`` at its next idle turn: at 5,000 ticks/s a drain is about
        50 messages, 6 us each, which a waiting tick would otherwise sit behind. Replay (and
        ``whole``, at the stop) publishes them all at once."""
        st, pending = self.core.conflate, self.ticks_pending
        if not pending or whole:  # a new drain (at the stop: after the rest of the last one)
            pending.extend(conflate.drain_dirty(st).tolist())
        yields = not (self.replay or whole)
        while pending:
            sid = pending.popleft()  # its latest values, read now
            self.pub.publish(wire.TickUpdate(symbol=self.name(sid), **conflate.tick_fields(st, sid)))
            self.tick_updates += 1
            if yields and pending and self.reader.lag() > 0:
                return

    def snapshot(self) -> dict:
        lat = self.core.latency
        return {"service": NAME, "ticks_read": self.ticks_read, "candles_closed": self.candles_closed,
                "signals": self.signals, "history_candles": self.history_candles,
                "history_signals": self.history_signals, "closes_waiting": len(self.closes),
                "analysis_yields": self.analysis_yields, "rules_read_from_journal": self.rules_read_from_journal,
                "strategy_skipped": self.runner.stats(), "intents_unsupported": self.intents_unsupported,
                "tick_updates": self.tick_updates, "out_of_order": int(self.core.order_stats[1]),
                "rejected": engine.rejected(self.core), "lost": self.reader.lost,
                "resyncs": self.reader.resyncs, "skipped_on_attach": self.reader.skipped_on_attach,
                "journal_full": self.journal_full, "candles": candles.stats_dict(self.core.candles),
                "conflate": conflate.stats_dict(self.core.conflate), "latency_hist": lat.to_dict(),
                "model_outcomes": self.model_state.n_seen,
                "execution": self.execution.snapshot() if self.execution is not None else None,
                "control": self.control.counters() if self.control is not None else None}

    def counters(self, ex: dict | None = None) -> dict[str, float]:
        """What the heartbeat carries: totals, plus the latency histogram as cumulative
        buckets (``latency_le_us:<bound>``), the shape Prometheus histograms use. ``ex``: the
        execution's snapshot when the caller has just taken it."""
        lat = self.core.latency
        out = {"ticks_read": self.ticks_read, "candles_closed": self.candles_closed, "signals": self.signals,
               "history_candles": self.history_candles, "history_signals": self.history_signals,
               "tick_updates": self.tick_updates, "lag": self.reader.lag(), "lost": self.reader.lost,
               "out_of_order": int(self.core.order_stats[1]), "rejected": engine.rejected(self.core),
               "latency_count": lat.count, "latency_sum_us": lat.total / 1e3,
               "latency_p50_us": lat.percentile(50) / 1e3 if lat.count else 0.0,
               "latency_p99_us": lat.percentile(99) / 1e3 if lat.count else 0.0}
        if self.execution is not None:
            ex = ex if ex is not None else self.execution.snapshot()
            out.update({k: float(ex[k]) for k in ("orders", "fills", "risk_rejects", "positions_open",
                                                  "trades_closed", "realized_pnl", "fees", "halted")})
            out["equity"] = float(ex["equity"] or 0.0)
            out.update(self.execution.ttt.counters())  # tick-to-trade buckets (ttt_le_us:...)
            out.update(self.execution.heartbeat_counters())  # every shell, intent-log and broker counter
            # funding received (+) or paid (-): closed trades' and the open trades' so far
            out["funding"] = float(ex["funding"]) + float(ex["funding_reads"]["open_funding"])
        if self.control is not None:
            out.update(self.control.counters())
        for b, n in zip(LATENCY_BUCKETS_US, lat.count_le_many([int(b * 1000) for b in LATENCY_BUCKETS_US])):
            out[f"latency_le_us:{b:g}"] = n
        return out


def _model_from(blob: bytes | None) -> model.ModelState:
    if blob:
        try:
            return model.from_bytes(blob, model.ModelConfig())
        except Exception as exc:  # a damaged state must not stop the brain: learn afresh, say so
            log.error("brain.model_state_unreadable", error=str(exc))
    return model.new_state(model.ModelConfig())
