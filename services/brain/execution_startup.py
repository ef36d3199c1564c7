"""The execution shell's start-up and recovery, and each symbol's set-up at the exchange.

``Phase`` is the shell's life cycle. ``_start`` reads what the journal and the intent log
hold (``recovery``) and sends the start-up job: the symbols' rules, margin type and leverage,
the exchange's positions, our orders it holds that nothing here knows (open ones, finished
ones from its order history), what the orders left open have executed, the balance and the
leverage brackets. ``_started`` merges the answer into the trader's state
(``recovery.merge``, ``trader_restart.recovery_actions``) and the shell is READY. A symbol the
feed adds later is set up by the timer (``_setup_symbols``), once its rules are known
(``rules_ready``, at most ``RULES_WAIT_S``).

A part of the shell ``Execution`` (``services/brain/execution.py``, made of such parts): its
methods read and change the shell's state, set up in ``Execution.__init__``
and declared, with its types, in ``execution_parts.ExecutionParts``."""

from __future__ import annotations

import enum
from typing import Any, Container, Iterable, Mapping

import structlog

from common.fastcopy import replace
from common.errors import AegisError
from services.brain import dispatcher as dsp
from venue import order_rules
from venue import orders as om
from services.brain import intent_log, jobs, recovery, risk, trader, trader_restart, trader_views
from venue.filters import FeedFilters
from venue.port import Broker, ExchangeOrder
from services.brain.execution_parts import ExecutionParts

log = structlog.get_logger(__name__)

STARTUP_RETRY_S = 5.0
START_SYMBOLS = 20
# a symbol's set-up (ccxt's market, margin type, leverage) waits this long for the feed's rules
# (published on the bus, kept by the journal) before the broker asks exchangeInfo for it
RULES_WAIT_S = 10.0
LOG_IDS = 5  # a start-up log line names this many order ids and counts the rest


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


class Startup(ExecutionParts):
    """Start-up, recovery and the symbols' set-up (module docstring)."""

    def _with_rules(self, symbols: list[str]) -> list[str]:
        """Those of ``symbols`` whose set-up may go now: their rules are known (ccxt's market is
        made of them, no exchangeInfo), or they waited ``RULES_WAIT_S`` for them (counted in
        ``setup_without_rules``: the broker asks exchangeInfo)."""
        if not symbols:
            return symbols
        filters = self.host.symbol_filters()
        if not isinstance(filters, FeedFilters):
            return symbols  # replay's saved exchangeInfo, a backtest's filters: complete already
        go, self._rules_wait, late = rules_ready(symbols, filters, self._rules_wait, self.host.mono_s(), RULES_WAIT_S)
        if late:
            self.counters["setup_without_rules"] = self.counters.get("setup_without_rules", 0) + len(late)
            log.warning("brain.setup_without_rules", symbols=late[:LOG_IDS], waited_s=RULES_WAIT_S)
        return go

    def _setup_symbols(self, symbols: list[str]) -> None:
        todo = [s for s in symbols if s not in self.configured and s not in self.configuring]
        todo = self._with_rules(todo)[:START_SYMBOLS]
        if not todo:
            return
        self.configuring.update(todo)

        def job():
            return self.broker.start(todo), _brackets_or_none(self.broker, todo)

        self.dispatcher.submit(dsp.ACCOUNT, job, tag=jobs.Setup(tuple(todo)))

    # ------------------------------------------------------------------ start-up and recovery
    def _start(self) -> None:
        self.phase = Phase.STARTING
        self.saved = recovery.load(self.db_path, self.host.clock_ms())
        logged: tuple[intent_log.Intent, ...] = ()
        if self.intents is not None:
            # what was sent before a crash and never reached the journal: known again now,
            # asked at the exchange with the other open orders, journaled now (after the read)
            got = intent_log.IntentLog.read(self.intents.path)
            logged = got.intents
            self.saved, replay = recovery.with_intents(self.saved, got.intents, self.host.clock_ms(),
                                                       self.cfg.recv_window_ms)
            self.counters["intents_replayed"] += len(replay)
            self.counters["intent_log_corrupt"] = got.corrupt
            self.counters["intent_log_torn"] = got.torn
            for it in replay:
                if it.plan is not None and it.plan.signal is not None:  # the entry's signal first
                    self.publish(it.plan.signal)
                self.publish(it.body)
        # margin type and leverage are set for the most liquid symbols at start (each costs
        # a rate-limited REST call), those whose rules are known; the others when they are
        # (the timer's ``_setup_symbols``)
        symbols = self._with_rules(self.host.symbols()[:START_SYMBOLS])

        open_orders = list(self.saved.open_orders.values())
        adopt_open = self.intents is not None  # orders go out before the journal hears of them
        known_ids: dict[str, str] = {}  # client id -> exchange order id of the finished ones adopted
        unreadable: list[str] = []  # symbols whose order history could not be read
        # the order history is read from just before the newest record (log or journal)
        since = recovery.history_since(self.saved, logged, self.host.clock_ms(), self.cfg.recovery_lookback_ms)

        def job():
            filters = self.host.symbol_filters()
            _complete_filters(filters, symbols)
            setup = self.broker.start(symbols)
            positions = self.broker.positions()
            # ours, at the exchange, unknown here (a machine crash took their log records): open
            # ones, and finished ones from its order history (adopted into a trade, or recorded)
            adopt, record = [], []
            if adopt_open:
                assert self.saved is not None
                adopt = _ours_unknown(self.broker, self.saved, self.host.clock_ms())
                asked = sorted({*symbols, *(p.symbol for p in positions), *self.saved.plans,
                                *(o.symbol for o in open_orders)})
                found, record = _ours_in_history(self.broker, self.saved, positions, asked, since, self.host.clock_ms(),
                                                 unreadable)
                adopt += recovery.exchange_intents(found, self.host.clock_ms())
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
            self.saved, adopted = recovery.with_intents(self.saved, adopt, self.host.clock_ms(), self.cfg.recv_window_ms)
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
                for body in recovery.record_bodies(e, fills, self.host.clock_ms()):
                    self.publish(body)
        self.filters = filters
        self.configured = set(setup.leverage)
        self.brackets.update(brackets)
        self.equity = float(balance.equity)
        assert self.saved is not None
        now = self.host.clock_ms()
        rs = self.saved.risk_state or risk.initial_state(self.equity, now)
        self.st = recovery.merge(self.cfg, self.saved, positions, now, rs, executed)
        self.st, actions = trader_restart.recovery_actions(self.st, now)
        self.st, arm = trader_restart.protect_unprotected(self.cfg, self.st, self.ctx())
        actions = [*actions, *arm]
        for sym, tr in self.st.trades.items():  # closed at the exchange while we were away
            if tr.flat_at_exchange_ms:
                actions.append(trader.Dispatch(trader.FetchSymbolFills(symbol=sym, since_ms=tr.opened_ms), sym))
        self._next_positions = self.host.mono_s() + self.position_poll_s  # start-up just read them
        # the first audit soon after start (strays a crash left, stops that went missing)
        self._next_audit = self.host.mono_s() + self.algo_audit_s / 30
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

    def _startup_done(self, result: Any, err: Exception | None) -> None:
        if err is None:
            self._started(result)
            return
        self.phase = Phase.WAITING
        self.start_error = f"broker start failed: {err}"
        self._next_start = self.host.mono_s() + STARTUP_RETRY_S
        log.error("brain.execution_start_failed", error=str(err), retry_s=STARTUP_RETRY_S)

    def _setup_done(self, symbols: tuple[str, ...], result: Any, err: Exception | None) -> None:
        self.configuring.difference_update(symbols)
        if err is None:
            setup, brackets = result
            self.configured.update(setup.leverage)
            self.brackets.update(brackets)
            log.info("brain.symbols_set_up", symbols=len(setup.leverage), leverage=sorted(
                set(setup.leverage.values())), margin_type=setup.margin_type, brackets=len(brackets))
        else:
            self._next_setup = self.host.mono_s() + STARTUP_RETRY_S
            log.error("brain.symbol_setup_failed", symbols=list(symbols), error=str(err)[:200])


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
            history += broker.all_orders(s, since_ms=since_ms, until_ms=now_ms + order_rules.CLOCK_MARGIN_MS)
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
