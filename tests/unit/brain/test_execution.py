"""The execution shell: the trader's actions carried out through a broker, a dispatcher, the
synchronous journal and PUB, and the answers fed back.

Everything around ``Execution`` is a hand-written fake: a broker that answers from a script
and records every call, a dispatcher that runs each job on the test's thread (at the next
``drain`` unless told to run it at ``submit``), a clock the test moves, and a journal and a
publisher that record what they were given. One test runs the real ``Dispatcher``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest

from common import wire
from common.errors import AmbiguousError, DefinitiveError, TransientError
from services.brain import dispatcher as dsp
from services.brain import (execution, execution_answers, execution_startup, jobs, recovery, risk, rotation, trader,
                            trader_entries, trader_exits)
from venue import order_rules
from venue import orders as om
from venue.port import (AccountSetup, AlgoSpec, Balance, ExchangeAlgoOrder, ExchangeFill, ExchangeOrder, ExchangePosition, OrderSpec,
                                   SubmitResult)
from services.orchestrator import db
from tests.fake_host import FnHost

NOW = 1_733_011_200_000  # 2024-12-01 00:00 UTC
SYMBOLS = ["AAAUSDT", "BBBUSDT"]
FILTERS = {
    s: risk.SymbolFilters(symbol=s, tick_size=Decimal("0.1"), step_size=Decimal("0.001"), min_qty=Decimal("0.001"),
                          min_notional=Decimal("5"))
    for s in SYMBOLS
}
PRICES = {"AAAUSDT": 100.0, "BBBUSDT": 50.0}
# 0.5% of 10,000 USDT over a 2.0 stop distance is 25 AAA, capped at 99% of a 2,000 USDT slot: 19.8
CFG = trader.TraderConfig(risk=risk.RiskConfig(max_order_notional_usdt=2_000.0, max_total_notional_usdt=10_000.0,
                                               max_leverage=5.0),
                          rotation=rotation.RotationConfig(cooldown_s=60.0),
                          entry_order="market")  # these tests pin the MARKET entry; limit-IOC has its own
SIG_ID = f"AAAUSDT-{NOW}-BUY"
ENTRY = f"ae-{SIG_ID}-0"
EXIT = f"ax-{SIG_ID}-1"
EID = "9007199254740993"  # above 2**53: ids stay strings
EXIT_EID = "9007199254740995"


class Unscripted(AssertionError):
    """The broker was asked something the test did not script."""


# ---------------------------------------------------------------------------- fakes
class Clock:
    def __init__(self, now_ms: int = NOW) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class FakeBroker:
    """The Broker port with scripted answers: each list is consumed in order; an exception in
    it is raised. Every call is appended to the shared ``calls`` log."""

    name = "fake"

    def __init__(self, calls: list[tuple], *, positions: tuple[ExchangePosition, ...] = (),
                 equity: str = "10000") -> None:
        self.calls = calls
        self.submits: list[Any] = []
        self.queries: list[Any] = []
        self.fill_rows: list[Any] = []
        self.cancels: list[Any] = []
        self.specs: list[OrderSpec] = []
        self.start_error: Exception | None = None
        self.held = list(positions)
        self.algo_specs: list[AlgoSpec] = []
        self.algo_answers: list[Any] = []
        self.algo_queries: list[Any] = []
        self.algo_cancels: list[Any] = []
        self.income_rows: list[Any] = []
        self.income_reads: list[tuple[str, int]] = []
        self.history: list[ExchangeOrder] = []  # the order history (all_orders) of every symbol
        self.history_reads: list[tuple[str, int, int]] = []
        self.history_error: Exception | None = None
        self.bal = Balance(wallet=Decimal(equity), equity=Decimal(equity), available=Decimal(equity))

    @staticmethod
    def _next(script: list[Any], what: str) -> Any:
        if not script:
            raise Unscripted(f"unscripted {what}")
        answer = script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def start(self, symbols) -> AccountSetup:
        self.calls.append(("start", tuple(symbols)))
        if self.start_error is not None:
            raise self.start_error
        return AccountSetup(leverage={s: 5 for s in symbols})

    def submit(self, spec: OrderSpec) -> SubmitResult:
        self.calls.append(("submit", spec.client_order_id))
        self.specs.append(spec)
        return self._next(self.submits, "submit")

    def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        self.calls.append(("cancel", symbol, client_order_id))
        return self._next(self.cancels, "cancel")

    def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        self.calls.append(("query", symbol, client_order_id))
        return self._next(self.queries, "query")

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        return []

    def fills(self, symbol: str, *, since_ms: int | None = None,
              exchange_order_id: str | None = None) -> list[ExchangeFill]:
        self.calls.append(("fills", symbol, exchange_order_id))
        return self._next(self.fill_rows, "fills")

    def all_orders(self, symbol: str, *, since_ms: int, until_ms: int) -> list[ExchangeOrder]:
        """The order history (not in ``calls``: read at start beside what the tests script)."""
        self.history_reads.append((symbol, since_ms, until_ms))
        if self.history_error is not None:
            raise self.history_error
        return [o for o in self.history if o.symbol == symbol]

    def income(self, *, income_type: str, since_ms: int) -> list[Any]:
        """Funding income rows (not in ``calls``: read on a timer, beside what the tests script)."""
        self.income_reads.append((income_type, since_ms))
        return list(self.income_rows)

    def positions(self) -> list[ExchangePosition]:
        self.calls.append(("positions",))
        return list(self.held)

    def balance(self) -> Balance:
        self.calls.append(("balance",))
        return self.bal

    def server_time_ms(self) -> int:
        return NOW

    # conditional orders: accepted as NEW unless a test scripts ``algo_answers``
    def place_algo(self, spec: AlgoSpec) -> ExchangeAlgoOrder:
        self.calls.append(("place_algo", spec.client_algo_id))
        self.algo_specs.append(spec)
        if self.algo_answers:
            return self._next(self.algo_answers, "place_algo")
        return ExchangeAlgoOrder(client_algo_id=spec.client_algo_id, algo_id=str(7000 + len(self.algo_specs)),
                                 symbol=spec.symbol, side=spec.side, order_type=spec.order_type, status="NEW",
                                 trigger_price=spec.trigger_price, close_position=spec.close_position)

    def cancel_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder:
        self.calls.append(("cancel_algo", symbol, client_algo_id))
        if self.algo_cancels:
            return self._next(self.algo_cancels, "cancel_algo")
        return ExchangeAlgoOrder(client_algo_id=client_algo_id, algo_id="", symbol=symbol, side="", order_type="",
                                 status="CANCELED")

    def query_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder | None:
        self.calls.append(("query_algo", symbol, client_algo_id))
        return self._next(self.algo_queries, "query_algo")

    def open_algo_orders(self, symbol: str | None = None) -> list[ExchangeAlgoOrder]:
        return []

    def close(self) -> None:
        pass


class SyncDispatcher:
    """The Dispatcher's ``submit``/``drain`` on the test's thread: a job runs at the next
    ``drain`` (or at ``submit`` with ``run_at_submit``); its completion is delivered by
    ``drain`` either way, as the real one delivers them. Broker errors become the
    completion's error; a test failure (AssertionError) propagates."""

    def __init__(self, *, run_at_submit: bool = False) -> None:
        self.run_at_submit = run_at_submit
        self.submitted: list[tuple[int, Any, str | None]] = []  # (priority, tag, key)
        self._queued: list[tuple[int, Callable[..., Any], tuple, dict, Any, str | None]] = []
        self._done: list[dsp.Completion] = []

    def submit(self, priority: int, fn: Callable[..., Any], *args: Any, tag: Any = "", key: str | None = None,
               **kwargs: Any) -> None:
        self.submitted.append((priority, tag, key))
        job = (priority, fn, args, kwargs, tag, key)
        if self.run_at_submit:
            self._done.append(self._run(job))
        else:
            self._queued.append(job)

    def drain(self, max_items: int | None = None) -> list[dsp.Completion]:
        jobs, self._queued = self._queued, []
        out = self._done + [self._run(j) for j in jobs]
        self._done = []
        return out

    @staticmethod
    def _run(job) -> dsp.Completion:
        priority, fn, args, kwargs, tag, key = job
        try:
            return dsp.Completion(tag=tag, priority=priority, key=key, result=fn(*args, **kwargs))
        except AssertionError:
            raise
        except Exception as exc:
            return dsp.Completion(tag=tag, priority=priority, key=key, error=exc)


class FakeJournal:
    """The synchronous journal: records each request in ``calls``; raises ``fail`` if set."""

    def __init__(self, calls: list[tuple]) -> None:
        self.calls = calls
        self.requests: list[wire.OrderRequest] = []
        self.fail: Exception | None = None

    def __call__(self, body: wire.OrderRequest | wire.AlgoOrderUpdate) -> None:
        self.calls.append(("journal", getattr(body, "client_order_id", None) or body.client_algo_id))
        if self.fail is not None:
            raise self.fail
        self.requests.append(body)


@dataclass
class Rig:
    ex: execution.Execution
    broker: FakeBroker
    disp: Any
    clock: Clock
    journal: FakeJournal
    calls: list[tuple]
    published: list[tuple[Any, bool]]
    learned: list[tuple[dict, float]]
    block: list[str] = field(default_factory=lambda: [""])

    def poll(self, times: int = 1) -> None:
        for _ in range(times):
            # poll runs its timers at most every TIMER_PERIOD_S of time.monotonic(): let each one in
            self.ex._next_timer = 0.0
            self.ex.poll()

    def bodies(self, cls: type) -> list[Any]:
        return [b for b, _ in self.published if isinstance(b, cls)]

    def kinds(self) -> list[tuple[str, bool]]:
        return [(type(b).__name__, j) for b, j in self.published]

    def statuses(self) -> list[str]:
        return [u.status for u in self.bodies(wire.OrderUpdate)]

    def updates(self) -> list[tuple[str, float]]:
        return [(u.status, u.filled_qty) for u in self.bodies(wire.OrderUpdate)]

    def calls_of(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]

    def clear(self) -> None:
        self.calls.clear()
        self.published.clear()
        self.disp.submitted.clear()


def make_rig(tmp_path: Path, *, db_path: Path | None = None, positions: tuple[ExchangePosition, ...] = (),
             cfg: trader.TraderConfig | None = None,
             dispatcher: Any = None) -> Rig:
    calls: list[tuple] = []
    published: list[tuple[Any, bool]] = []
    learned: list[tuple[dict, float]] = []
    clock = Clock()
    broker = FakeBroker(calls, positions=positions)
    disp = dispatcher if dispatcher is not None else SyncDispatcher()
    journal = FakeJournal(calls)
    block = [""]

    def publish(body: Any, journal: bool = True) -> None:
        published.append((body, journal))

    def quote(symbol: str) -> risk.Quote | None:
        return risk.Quote(mark_price=PRICES[symbol], updated_ms=clock()) if symbol in PRICES else None

    def filters_fn() -> dict[str, risk.SymbolFilters]:
        calls.append(("filters",))
        return dict(FILTERS)

    # the order-flow tests pin exact call sequences without the exchange-held protection;
    # TestProtection runs with it (the default in production)
    cfg = cfg or replace(CFG, exchange_protection=False)
    ex = execution.Execution(
        cfg=cfg, broker=broker, dispatcher=disp,
        host=FnHost(journal_sync=journal, publish=publish, quote=quote,
                    learn=lambda f, r: learned.append((dict(f), r)), filters_fn=filters_fn,
                    symbols_fn=lambda: list(SYMBOLS), clock_ms=clock, blocked=lambda: block[0]),
        db_path=db_path or tmp_path / "absent.db", balance_poll_s=3_600.0, position_poll_s=3_600.0,
        algo_audit_s=3_600.0)
    return Rig(ex=ex, broker=broker, disp=disp, clock=clock, journal=journal, calls=calls, published=published,
               learned=learned, block=block)


def started(tmp_path: Path, **kw) -> Rig:
    """A rig past start-up and its first balance poll, with the logs cleared."""
    rig = make_rig(tmp_path, **kw)
    rig.poll(3)  # submit the start-up job; run it (ready, balance poll submitted); run the balance poll
    assert rig.ex.ready
    rig.clear()
    return rig


def signal(symbol: str = "AAAUSDT", side: str = "BUY", entry: float = 100.0, stop: float = 98.0,
           target: float = 104.0, t: int = NOW) -> wire.SignalGenerated:
    return wire.SignalGenerated(signal_id=f"{symbol}-{t}-{side}", symbol=symbol, side=side, entry=entry, stop=stop,
                                target=target, confidence=0.6, cold=False, features={"rr": 2.0})


def xorder(cid: str, status: str, executed: str, eid: str = EID, side: str = "BUY", qty: str = "19.8") -> ExchangeOrder:
    return ExchangeOrder(client_order_id=cid, exchange_order_id=eid, symbol="AAAUSDT", side=side, order_type="MARKET",
                         status=status, qty=Decimal(qty), executed_qty=Decimal(executed))


def xfill(cid: str, tid: str, qty: str, price: str, eid: str = EID, side: str = "BUY") -> ExchangeFill:
    return ExchangeFill(trade_id=tid, client_order_id=cid, exchange_order_id=eid, symbol="AAAUSDT", side=side,
                        qty=Decimal(qty), price=Decimal(price), fee=Decimal("0.01"))


ENTRY_FILLS = (xfill(ENTRY, "1", "12.0", "100.0"), xfill(ENTRY, "2", "7.8", "100.0"))
ENTRY_FILLED = SubmitResult(order=xorder(ENTRY, "FILLED", "19.8"), fills=ENTRY_FILLS)
ENTRY_REQUEST = wire.OrderRequest(client_order_id=ENTRY, symbol="AAAUSDT", side="BUY", order_type="MARKET", qty=19.8,
                                  price=0.0, reduce_only=False, signal_id=SIG_ID)


def holding(tmp_path: Path) -> Rig:
    """Started, with the AAA entry filled: 19.8 long at 100.0, stop 98, target 104."""
    rig = started(tmp_path)
    rig.broker.submits.append(ENTRY_FILLED)
    rig.ex.on_signal(signal())
    rig.poll()
    assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")
    rig.clear()
    return rig


def ambiguous() -> AmbiguousError:
    return AmbiguousError("POST /fapi/v1/order: read timeout after 10 s", reason="timeout")


# ---------------------------------------------------------------------------- start-up
class TestStartUp:
    def test_a_signal_before_start_up_is_rejected_as_trading_disabled(self, tmp_path: Path):
        rig = make_rig(tmp_path)
        rig.ex.on_signal(signal())
        assert rig.published == [(wire.RiskReject(symbol="AAAUSDT", reason=trader_entries.TRADING_DISABLED, detail="starting",
                                                  signal_id=SIG_ID), True)]
        assert rig.calls == [] and rig.ex.snapshot()["block_reason"] == "starting"

    def test_start_up_loads_filters_sets_up_the_account_and_takes_equity_from_the_balance(self, tmp_path: Path):
        rig = make_rig(tmp_path)
        rig.poll()
        assert rig.disp.submitted == [(dsp.ACCOUNT, jobs.Startup(), None)] and rig.ex.ready is False
        rig.poll()
        assert rig.ex.ready is True
        # filters twice: which symbols have their rules (before the job), the job's own look-up
        assert rig.calls == [("filters",), ("filters",), ("start", ("AAAUSDT", "BBBUSDT")), ("positions",),
                             ("balance",)]
        assert rig.ex.equity == 10_000.0 and rig.ex.filters == FILTERS
        assert rig.ex.st.risk == risk.initial_state(10_000.0, NOW)
        assert rig.ex.saved == recovery.Saved()
        snap = rig.ex.snapshot()
        assert (snap["ready"], snap["block_reason"], snap["equity"], snap["halted"]) == (True, "", 10_000.0, False)

    def test_the_first_timer_after_start_up_polls_the_balance(self, tmp_path: Path):
        rig = make_rig(tmp_path)
        rig.poll(2)
        assert rig.disp.submitted[-1] == (dsp.ACCOUNT, jobs.Balance(), None)
        rig.broker.bal = Balance(wallet=Decimal("10000"), equity=Decimal("10123.5"))
        rig.poll()
        assert rig.ex.equity == 10_123.5

    def test_a_failed_start_up_blocks_entries_with_its_error_and_is_retried(self, tmp_path: Path):
        rig = make_rig(tmp_path)
        rig.broker.start_error = DefinitiveError("hedge mode with positions open", reason="position_open")
        rig.poll(2)
        assert rig.ex.ready is False
        assert rig.ex.start_error == "broker start failed: hedge mode with positions open"
        rig.ex.on_signal(signal())
        (rej,) = rig.bodies(wire.RiskReject)
        assert (rej.reason, rej.detail) == (trader_entries.TRADING_DISABLED,
                                            "broker start failed: hedge mode with positions open")
        rig.broker.start_error = None
        rig.ex._next_start = 0.0  # the STARTUP_RETRY_S back-off has passed
        rig.poll(2)
        assert rig.ex.ready is True and rig.ex.start_error == ""
        assert len(rig.calls_of("start")) == 2

    def test_held_positions_are_published_at_start_up(self, tmp_path: Path):
        held = (ExchangePosition(symbol="BBBUSDT", qty=Decimal("-4"), entry_price=Decimal("50")),)
        rig = make_rig(tmp_path, positions=held)
        rig.poll(2)
        assert rig.bodies(wire.Position) == [wire.Position(symbol="BBBUSDT", qty=-4.0, entry_price=50.0,
                                                           unrealized_pnl=0.0, realized_pnl=0.0)]
        t = rig.ex.st.trades["BBBUSDT"]
        assert (t.adopted, t.side, t.stop, t.target) == (True, "SELL", 51.0, 48.0)


class TestFiltersFromTheFeed:
    @staticmethod
    def rule(symbol: str) -> wire.SymbolInfo:
        return wire.SymbolInfo(symbol=symbol, tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=5.0)

    def rig(self, tmp_path: Path, rules: dict, fetched: list, **kw) -> Rig:
        from venue.filters import FeedFilters

        def fetch() -> dict[str, risk.SymbolFilters]:
            fetched.append(1)
            return dict(FILTERS)

        rig = make_rig(tmp_path, **kw)
        view = FeedFilters(lambda: rules, fetch=fetch)
        rig.ex.host.filters_fn = lambda: view
        return rig

    def test_every_symbol_with_a_rule_no_exchange_info(self, tmp_path: Path):
        """With the feed's rules for every symbol and position, start-up asks no exchangeInfo;
        a rule published later is an execution filter at once."""
        fetched: list = []
        held = (ExchangePosition(symbol="BBBUSDT", qty=Decimal("-4"), entry_price=Decimal("50")),)
        rules = {s: self.rule(s) for s in SYMBOLS}
        rig = self.rig(tmp_path, rules, fetched, positions=held)
        rig.poll(2)
        assert rig.ex.ready and fetched == []
        assert rig.ex.filters["BBBUSDT"] == FILTERS["BBBUSDT"]
        rules["CCCUSDT"] = self.rule("CCCUSDT")
        assert rig.ex.filters["CCCUSDT"].tick_size == Decimal("0.1")

    def test_a_position_without_a_rule_gets_its_filters_from_one_fetch(self, tmp_path: Path):
        """A held position in a symbol the feed has no rule for: start-up asks exchangeInfo once,
        and the position's filters are there when the execution is ready."""
        fetched: list = []
        held = (ExchangePosition(symbol="BBBUSDT", qty=Decimal("-4"), entry_price=Decimal("50")),)
        rig = self.rig(tmp_path, {"AAAUSDT": self.rule("AAAUSDT")}, fetched, positions=held)
        rig.poll(2)
        assert rig.ex.ready and fetched == [1]
        assert rig.ex.filters["BBBUSDT"] == FILTERS["BBBUSDT"]

    def test_set_up_waits_for_the_feeds_rules_then_goes_without_them(self, tmp_path: Path):
        """A symbol on the ring whose rules have not arrived is not set up (ccxt would ask
        exchangeInfo for its market): it goes as soon as its rule is there, or after
        RULES_WAIT_S without it (counted, said in the log)."""
        fetched: list = []
        rules = {"AAAUSDT": self.rule("AAAUSDT")}
        rig = self.rig(tmp_path, rules, fetched, cfg=replace(CFG, exchange_protection=False))
        syms = ["AAAUSDT", "BBBUSDT", "CCCUSDT"]
        rig.ex.host.symbols_fn = lambda: list(syms)
        mono = [100.0]
        rig.ex.host.mono_fn = lambda: mono[0]
        rig.poll(3)
        starts = lambda: [c[1] for c in rig.calls if c[0] == "start"]
        assert rig.ex.ready and starts() == [("AAAUSDT",)] and rig.ex.configured == {"AAAUSDT"}
        mono[0] += 2.0
        rig.poll(2)
        assert starts() == [("AAAUSDT",)]  # still waiting: no rule, not yet RULES_WAIT_S
        rules["BBBUSDT"] = self.rule("BBBUSDT")
        mono[0] += 1.0
        rig.poll(2)
        assert starts()[1:] == [("BBBUSDT",)]
        mono[0] = 100.0 + execution_startup.RULES_WAIT_S
        rig.poll(2)
        assert starts()[1:] == [("BBBUSDT",), ("CCCUSDT",)]
        assert rig.ex.configured == set(syms) and rig.ex.counters["setup_without_rules"] == 1
        assert fetched == []  # the filters' own exchangeInfo was never asked for

    def test_a_failed_fetch_does_not_fail_the_start(self, tmp_path: Path):
        """exchangeInfo down while a position lacks its rule: the start goes on (logged), the
        symbol stays without filters."""
        from venue.filters import FeedFilters

        def down() -> dict:
            raise OSError("connection refused")

        held = (ExchangePosition(symbol="BBBUSDT", qty=Decimal("-4"), entry_price=Decimal("50")),)
        rig = make_rig(tmp_path, positions=held)
        view = FeedFilters(lambda: {s: self.rule(s) for s in ("AAAUSDT",)}, fetch=down)
        rig.ex.host.filters_fn = lambda: view
        rig.poll(2)
        assert rig.ex.ready and rig.ex.start_error == ""
        assert rig.ex.filters.get("BBBUSDT") is None and "AAAUSDT" in rig.ex.filters


# ---------------------------------------------------------------------------- entries
class TestEntry:
    @pytest.mark.parametrize("run_at_submit", [False, True], ids=["job-at-drain", "job-at-submit"])
    def test_the_order_request_is_journaled_before_the_broker_hears_of_it(self, tmp_path: Path, run_at_submit: bool):
        rig = started(tmp_path, dispatcher=SyncDispatcher(run_at_submit=run_at_submit))
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll()
        assert rig.calls == [("journal", ENTRY), ("submit", ENTRY)]
        assert rig.journal.requests == [ENTRY_REQUEST]
        assert rig.published[0] == (ENTRY_REQUEST, False)  # PUB only: the journal had it synchronously
        assert rig.disp.submitted[0] == (dsp.ORDER, jobs.Submit(ENTRY, 1, NOW), "AAAUSDT")
        assert rig.broker.specs == [OrderSpec(client_order_id=ENTRY, symbol="AAAUSDT", side="BUY", order_type="MARKET",
                                              qty=Decimal("19.8"), price=Decimal(0), reduce_only=False)]

    def test_a_filled_entry_publishes_its_order_updates_fills_and_position(self, tmp_path: Path):
        rig = started(tmp_path)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll()
        assert rig.kinds() == [("OrderRequest", False), ("OrderUpdate", True),
                               ("OrderUpdate", True),
                               ("OrderUpdate", True), ("Fill", True), ("Position", True),
                               ("OrderUpdate", True), ("Fill", True), ("Position", True)]
        assert rig.statuses() == ["SENT", "ACKED", "PARTIALLY_FILLED", "FILLED"]
        assert rig.bodies(wire.Fill) == [
            wire.Fill(client_order_id=ENTRY, exchange_order_id=EID, trade_id="1", symbol="AAAUSDT", side="BUY",
                      qty=12.0, price=100.0, fee=0.01, fee_asset="USDT", liquidity="taker"),
            wire.Fill(client_order_id=ENTRY, exchange_order_id=EID, trade_id="2", symbol="AAAUSDT", side="BUY",
                      qty=7.8, price=100.0, fee=0.01, fee_asset="USDT", liquidity="taker")]
        assert rig.bodies(wire.Position) == [
            wire.Position(symbol="AAAUSDT", qty=12.0, entry_price=100.0, unrealized_pnl=0.0, realized_pnl=0.0),
            wire.Position(symbol="AAAUSDT", qty=19.8, entry_price=100.0, unrealized_pnl=0.0, realized_pnl=0.0)]
        snap = rig.ex.snapshot()
        assert (snap["orders"], snap["fills"], snap["positions_open"], snap["open_orders"]) == (1, 2, 1, 0)
        assert (snap["fees"], snap["broker_errors"], snap["ambiguous"]) == (0.02, 0, 0)

    def test_a_submit_answer_without_fills_fetches_them_by_exchange_order_id(self, tmp_path: Path):
        rig = started(tmp_path)
        rig.broker.submits.append(SubmitResult(order=xorder(ENTRY, "FILLED", "19.8")))
        rig.broker.fill_rows.append([*ENTRY_FILLS, xfill("other", "3", "1.0", "100.0", eid="123")])
        rig.ex.on_signal(signal())
        rig.poll(2)
        assert rig.calls == [("journal", ENTRY), ("submit", ENTRY), ("fills", "AAAUSDT", EID)]
        assert [f.trade_id for f in rig.bodies(wire.Fill)] == ["1", "2"]  # the other order's row is not ours
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")

    def test_a_journal_that_cannot_confirm_stops_the_order_before_the_exchange(self, tmp_path: Path):
        rig = started(tmp_path)
        rig.journal.fail = TransientError("journal ack timed out after 50 ms")
        rig.ex.on_signal(signal())
        rig.poll(3)
        assert rig.calls == [("journal", ENTRY)]
        assert rig.disp.submitted == []  # nothing for the broker, then or later
        assert rig.ex.st.orders[ENTRY].state == om.S.CANCELED
        assert rig.statuses() == ["CANCELED"]
        assert rig.bodies(wire.RiskReject) == [wire.RiskReject(symbol="AAAUSDT", reason="JOURNAL_UNAVAILABLE",
                                                               detail="journal ack timed out after 50 ms",
                                                               signal_id=SIG_ID)]
        snap = rig.ex.snapshot()
        assert (snap["journal_sync_failed"], snap["positions_open"], snap["open_orders"]) == (1, 0, 0)
        assert "AAAUSDT" not in rig.ex.st.trades and snap["trader"]["entries_failed"] == 1

    def test_insufficient_margin_rejects_the_entry_and_frees_its_slot(self, tmp_path: Path):
        rig = started(tmp_path)
        rig.broker.submits.append(DefinitiveError("binance -2019 Margin is insufficient. (HTTP 400)", code=-2019,
                                                  reason="insufficient_margin"))
        rig.ex.on_signal(signal())
        rig.poll(3)
        assert rig.calls == [("journal", ENTRY), ("submit", ENTRY)]
        o = rig.ex.st.orders[ENTRY]
        assert (o.state, o.reject_code, o.reject_reason) == (
            om.S.REJECTED, -2019, "binance -2019 Margin is insufficient. (HTTP 400)")
        (update,) = [u for u in rig.bodies(wire.OrderUpdate) if u.status == "REJECTED"]
        assert update.reason == "binance -2019 Margin is insufficient. (HTTP 400)"
        snap = rig.ex.snapshot()
        assert (snap["broker_errors"], snap["positions_open"], snap["open_orders"]) == (1, 0, 0)
        assert "AAAUSDT" not in rig.ex.st.trades

    def test_a_blocked_shell_rejects_entries_with_the_reason(self, tmp_path: Path):
        rig = started(tmp_path)
        rig.block[0] = "reconciliation MISMATCH"
        rig.ex.on_signal(signal())
        assert rig.published == [(wire.RiskReject(symbol="AAAUSDT", reason=trader_entries.TRADING_DISABLED,
                                                  detail="reconciliation MISMATCH", signal_id=SIG_ID), True)]
        assert rig.calls == [] and rig.ex.snapshot()["block_reason"] == "reconciliation MISMATCH"
        rig.block[0] = ""
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())  # the same signal once unblocked: its id was never used
        rig.poll()
        assert rig.calls == [("journal", ENTRY), ("submit", ENTRY)]


# ---------------------------------------------------------------------------- unknown outcomes
class TestUnknownOutcome:
    def test_an_ambiguous_submit_is_queried_then_requeried_after_recv_window_never_resent(self, tmp_path: Path):
        rig = started(tmp_path)
        rig.broker.submits.append(ambiguous())
        rig.broker.queries += [None, xorder(ENTRY, "FILLED", "19.8")]
        rig.broker.fill_rows.append(list(ENTRY_FILLS))
        rig.ex.on_signal(signal())
        rig.poll()  # submit -> timeout: UNKNOWN, queried at once
        assert rig.ex.st.orders[ENTRY].state == om.S.UNKNOWN
        assert rig.disp.submitted[-1] == (dsp.QUERY, jobs.Query(ENTRY, NOW), "AAAUSDT")
        rig.poll()  # "not found" at NOW proves nothing: ask again once the attempt is surely dead
        dead_after = NOW + order_rules.DEFAULT_RECV_WINDOW_MS + order_rules.CLOCK_MARGIN_MS
        assert rig.ex.delayed == [(dead_after + 1, om.QueryOrder(client_order_id=ENTRY, not_before_ms=dead_after + 1),
                                   "AAAUSDT")]
        rig.clock.now_ms = dead_after
        rig.poll(2)
        assert len(rig.calls_of("query")) == 1 and len(rig.ex.delayed) == 1
        rig.clock.now_ms = dead_after + 1
        rig.poll()  # due: the query goes out
        assert rig.ex.delayed == [] and rig.disp.submitted[-1][1] == jobs.Query(ENTRY, dead_after + 1)
        rig.poll()  # FILLED, 19.8 executed, no fills held: fetch them
        rig.poll()  # the fills
        assert rig.calls == [("journal", ENTRY), ("submit", ENTRY), ("query", "AAAUSDT", ENTRY),
                             ("query", "AAAUSDT", ENTRY), ("fills", "AAAUSDT", EID)]
        # found FILLED before its trades arrived: the fetched fills still count (the state stays)
        assert rig.updates() == [("SENT", 0.0), ("UNKNOWN", 0.0), ("FILLED", 0.0), ("FILLED", 12.0), ("FILLED", 19.8)]
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")
        snap = rig.ex.snapshot()
        assert (snap["ambiguous"], snap["broker_errors"], snap["fills"], snap["positions_open"]) == (1, 1, 2, 1)

    def test_not_found_after_recv_window_proves_the_entry_dead_and_it_is_dropped(self, tmp_path: Path):
        rig = started(tmp_path)
        rig.broker.submits.append(ambiguous())
        rig.broker.queries += [None, None]
        rig.ex.on_signal(signal())
        rig.poll(2)
        rig.clock.now_ms = NOW + order_rules.DEFAULT_RECV_WINDOW_MS + order_rules.CLOCK_MARGIN_MS + 1
        rig.poll(3)
        assert rig.calls == [("journal", ENTRY), ("submit", ENTRY), ("query", "AAAUSDT", ENTRY),
                             ("query", "AAAUSDT", ENTRY)]
        assert rig.ex.st.orders[ENTRY].state == om.S.CANCELED
        assert rig.statuses() == ["SENT", "UNKNOWN", "CANCELED"]
        assert "AAAUSDT" not in rig.ex.st.trades and rig.ex.snapshot()["trader"]["entries_failed"] == 1

    def test_a_duplicate_client_id_refusal_goes_unknown_and_queries_instead_of_resending(self, tmp_path: Path):
        rig = started(tmp_path)
        rig.broker.submits.append(DefinitiveError("binance -4116 ClientOrderId is duplicated. (HTTP 400)",
                                                  reason="duplicate_client_id"))
        rig.broker.queries.append(xorder(ENTRY, "FILLED", "19.8"))
        rig.broker.fill_rows.append(list(ENTRY_FILLS))
        rig.ex.on_signal(signal())
        rig.poll()  # refused: the id is taken, so an earlier attempt arrived
        assert rig.ex.st.orders[ENTRY].state == om.S.UNKNOWN
        assert rig.disp.submitted[-1] == (dsp.QUERY, jobs.Query(ENTRY, NOW), "AAAUSDT")
        rig.poll(2)
        assert rig.calls == [("journal", ENTRY), ("submit", ENTRY), ("query", "AAAUSDT", ENTRY),
                             ("fills", "AAAUSDT", EID)]
        # found FILLED before its trades arrived: the fetched fills still count (the state stays)
        assert rig.updates() == [("SENT", 0.0), ("UNKNOWN", 0.0), ("FILLED", 0.0), ("FILLED", 12.0), ("FILLED", 19.8)]
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")

    def test_a_failed_query_is_asked_again_after_the_retry_delay(self, tmp_path: Path):
        rig = started(tmp_path)
        rig.broker.submits.append(ambiguous())
        rig.broker.queries += [TransientError("GET /fapi/v1/order: HTTP 503"), xorder(ENTRY, "FILLED", "19.8")]
        rig.broker.fill_rows.append(list(ENTRY_FILLS))
        rig.ex.on_signal(signal())
        rig.poll(2)  # submit times out; the query fails
        assert rig.ex.counters["queries_retried"] == 1
        assert rig.ex.delayed == [(NOW + execution_answers.QUERY_RETRY_MS,
                                   om.QueryOrder(client_order_id=ENTRY, not_before_ms=0), "AAAUSDT")]
        rig.clock.now_ms = NOW + execution_answers.QUERY_RETRY_MS - 1
        rig.poll(2)
        assert len(rig.calls_of("query")) == 1
        rig.clock.now_ms = NOW + execution_answers.QUERY_RETRY_MS
        rig.poll(3)  # the query again, then the fills
        assert rig.calls == [("journal", ENTRY), ("submit", ENTRY), ("query", "AAAUSDT", ENTRY),
                             ("query", "AAAUSDT", ENTRY), ("fills", "AAAUSDT", EID)]
        assert rig.ex.st.orders[ENTRY].state == om.S.FILLED
        snap = rig.ex.snapshot()
        assert (snap["queries_retried"], snap["broker_errors"], snap["positions_open"]) == (1, 2, 1)


# ---------------------------------------------------------------------------- exits
class TestExit:
    def test_a_range_inside_stop_and_target_changes_nothing(self, tmp_path: Path):
        rig = holding(tmp_path)
        rig.ex.on_range("AAAUSDT", 98.1, 103.9)
        rig.ex.on_range("BBBUSDT", 1.0, 1000.0)  # not traded
        rig.poll()
        assert rig.calls == [] and rig.published == []

    def test_a_range_touching_the_stop_sends_a_reduce_only_exit_after_journaling_it(self, tmp_path: Path):
        rig = holding(tmp_path)
        rig.clock.now_ms = NOW + 30_000
        rig.broker.submits.append(ambiguous())  # its fate does not matter here
        rig.ex.on_range("AAAUSDT", 97.9, 100.5)
        rig.poll()
        assert rig.calls[:2] == [("journal", EXIT), ("submit", EXIT)]
        assert rig.journal.requests[-1] == wire.OrderRequest(client_order_id=EXIT, symbol="AAAUSDT", side="SELL",
                                                             order_type="MARKET", qty=19.8, price=0.0,
                                                             reduce_only=True, signal_id=SIG_ID)
        assert rig.broker.specs[-1] == OrderSpec(client_order_id=EXIT, symbol="AAAUSDT", side="SELL",
                                                 order_type="MARKET", qty=Decimal("19.8"), reduce_only=True)
        t = rig.ex.st.trades["AAAUSDT"]
        assert (t.exit_reason, t.exit_cid) == (trader_exits.STOP, EXIT)

    def test_the_exit_fill_closes_the_trade_in_r_and_teaches_the_model(self, tmp_path: Path):
        rig = holding(tmp_path)
        rig.clock.now_ms = NOW + 30_000
        rig.broker.submits.append(SubmitResult(order=xorder(EXIT, "FILLED", "19.8", eid=EXIT_EID, side="SELL"),
                                               fills=(xfill(EXIT, "7", "19.8", "98.0", eid=EXIT_EID, side="SELL"),)))
        rig.ex.on_range("AAAUSDT", 97.9, 100.5)
        rig.poll()
        assert rig.bodies(wire.TradeClosed) == [wire.TradeClosed(
            trade_id=SIG_ID, symbol="AAAUSDT", side="BUY", qty=19.8, entry_price=100.0, exit_price=98.0, stop=98.0,
            target=104.0, opened_ms=NOW, closed_ms=NOW + 30_000, pnl=-39.6, fees=0.03, outcome_r=-1.0,
            exit_reason="STOP", confidence=0.6, learned=True, signal_price=100.0, slippage_bps=0.0)]
        assert rig.bodies(wire.Position)[-1] == wire.Position(symbol="AAAUSDT", qty=0.0, entry_price=0.0,
                                                              unrealized_pnl=0.0, realized_pnl=-39.6)
        assert rig.learned == [({"rr": 2.0}, -1.0)]
        assert "AAAUSDT" not in rig.ex.st.trades
        snap = rig.ex.snapshot()
        assert (snap["trades_closed"], snap["wins"], snap["positions_open"], snap["open_orders"]) == (1, 0, 0, 0)
        assert (snap["orders"], snap["fills"], snap["realized_pnl"], snap["fees"]) == (2, 3, -39.6, 0.03)

    def test_a_blocked_shell_still_exits_at_the_stop(self, tmp_path: Path):
        rig = holding(tmp_path)
        rig.block[0] = "reconciliation MISMATCH"
        rig.broker.submits.append(SubmitResult(order=xorder(EXIT, "FILLED", "19.8", eid=EXIT_EID, side="SELL"),
                                               fills=(xfill(EXIT, "7", "19.8", "104.0", eid=EXIT_EID, side="SELL"),)))
        rig.ex.on_range("AAAUSDT", 101.0, 104.0)  # the target
        rig.poll()
        (closed,) = rig.bodies(wire.TradeClosed)
        assert (closed.exit_reason, closed.pnl, closed.outcome_r) == ("TARGET", 79.2, 2.0)
        assert rig.learned == [({"rr": 2.0}, 2.0)]


# ---------------------------------------------------------------------------- restart
def journal_db(path: Path, *items: tuple[int, Any]) -> Path:
    conn = db.connect(path)
    try:
        db.write_batch(conn, [row for i, (ms, body) in enumerate(items)
                              for row in db.rows_for(wire.Envelope(wire.SCHEMA_VERSION, "brain:7", i + 1,
                                                                   ms * 1_000_000, ms * 1_000_000, body))])
    finally:
        conn.close()
    return path


class TestRestart:
    T0 = NOW - 60_000  # the signal and its entry, a minute before the crash
    SIG = f"AAAUSDT-{NOW - 60_000}-BUY"
    CID = f"ae-AAAUSDT-{NOW - 60_000}-BUY-0"

    def crashed_after_send(self, tmp_path: Path) -> Path:
        """The entry was journaled and sent (SENT), then the brain died."""
        return journal_db(
            tmp_path / "aegis.db",
            (self.T0, signal(t=self.T0)),
            (self.T0, wire.OrderRequest(client_order_id=self.CID, symbol="AAAUSDT", side="BUY", order_type="MARKET",
                                        qty=19.8, price=0.0, signal_id=self.SIG)),
            (self.T0 + 1, wire.OrderUpdate(client_order_id=self.CID, exchange_order_id="", symbol="AAAUSDT",
                                           status="SENT")))

    def test_an_open_order_in_the_database_is_queried_before_anything_else(self, tmp_path: Path):
        rig = make_rig(tmp_path, db_path=self.crashed_after_send(tmp_path))
        rig.broker.queries.append(None)  # start-up asks what it executed: not found yet
        rig.poll()
        assert sorted(rig.ex.saved.open_orders) == [self.CID]
        rig.poll()  # start-up done: recovery's query first, then the balance poll
        assert rig.ex.ready
        assert rig.disp.submitted[1:] == [(dsp.QUERY, jobs.Query(self.CID, NOW), "AAAUSDT"),
                                          (dsp.ACCOUNT, jobs.Balance(), None)]
        assert rig.ex.st.orders[self.CID].state == om.S.UNKNOWN
        t = rig.ex.st.trades["AAAUSDT"]  # the slot is held with the signal's plan
        assert (t.trade_id, t.stop, t.target, t.features, t.entry_qty) == (self.SIG, 98.0, 104.0, {"rr": 2.0}, 0)

    def test_a_replayed_signal_after_the_restart_opens_nothing(self, tmp_path: Path):
        rig = make_rig(tmp_path, db_path=self.crashed_after_send(tmp_path))
        rig.broker.queries.append(None)
        rig.poll(2)
        rig.ex.on_signal(signal(t=self.T0))
        assert rig.calls_of("journal") == [] and rig.ex.st.counters["skipped:DUPLICATE_SIGNAL"] == 1

    def test_the_recovered_order_found_filled_becomes_the_position_with_its_plan(self, tmp_path: Path):
        rig = make_rig(tmp_path, db_path=self.crashed_after_send(tmp_path))
        # asked twice: at start-up (what did it execute?) and by the recovery query
        rig.broker.queries += [xorder(self.CID, "FILLED", "19.8")] * 2
        rig.broker.fill_rows.append([xfill(self.CID, "1", "19.8", "100.0")])
        rig.poll(5)
        assert [c for c in rig.calls if c[0] in ("submit", "query", "fills")] == [
            ("query", "AAAUSDT", self.CID), ("query", "AAAUSDT", self.CID), ("fills", "AAAUSDT", EID)]
        t = rig.ex.st.trades["AAAUSDT"]
        assert (t.entry_qty, t.entry_avg, t.stop, t.target, t.adopted) == (Decimal("19.8"), Decimal(100), 98.0, 104.0,
                                                                          False)

    def test_a_position_the_exchange_already_reports_is_not_counted_twice_by_the_fetched_fills(self, tmp_path: Path):
        # the entry filled before the crash but its fill never reached the journal: the exchange
        # reports the position and the query's fetched fill is the same 19.8 (was 39.6)
        held = (ExchangePosition(symbol="AAAUSDT", qty=Decimal("19.8"), entry_price=Decimal("100.0")),)
        rig = make_rig(tmp_path, db_path=self.crashed_after_send(tmp_path), positions=held)
        rig.broker.queries += [xorder(self.CID, "FILLED", "19.8")] * 2
        rig.broker.fill_rows.append([xfill(self.CID, "1", "19.8", "100.0")])
        rig.poll(5)
        t = rig.ex.st.trades["AAAUSDT"]
        assert (t.entry_qty, t.entry_avg, t.position) == (Decimal("19.8"), Decimal(100), Decimal("19.8"))

    def test_a_saved_halt_survives_the_restart_and_blocks_entries(self, tmp_path: Path):
        halted = risk.RiskState(halted=True, halt_reason=risk.DRAWDOWN, halt_detail="drawdown 10.00%",
                                halted_at_ms=NOW - 1_000, day_index=NOW // risk.DAY_MS,
                                day_start_equity_usdt=10_000.0, peak_equity_usdt=11_200.0)
        path = journal_db(tmp_path / "aegis.db", (NOW - 1_000, wire.ModelState(
            name="risk_state", version=NOW - 1_000, state=json.dumps(halted.to_dict()).encode())))
        rig = make_rig(tmp_path, db_path=path)
        rig.poll(3)
        assert rig.ex.st.risk == halted and rig.ex.snapshot()["halted"] is True
        rig.ex.on_signal(signal())
        (rej,) = rig.bodies(wire.RiskReject)
        assert (rej.reason, rej.detail) == (risk.HALTED, "DRAWDOWN: drawdown 10.00%")
        assert rig.calls_of("journal") == []


# ---------------------------------------------------------------------------- the real dispatcher
def test_with_the_real_dispatcher_a_signal_ends_as_a_published_position(tmp_path: Path):
    disp = dsp.Dispatcher(workers=2, name="test-execution")
    try:
        rig = make_rig(tmp_path, dispatcher=disp)

        def poll_until(done: Callable[[], bool], timeout_s: float = 5.0) -> None:
            deadline = time.monotonic() + timeout_s
            while not done():
                assert time.monotonic() < deadline, "timed out"
                rig.ex._next_timer = 0.0
                rig.ex.poll()
                time.sleep(0.002)

        poll_until(lambda: rig.ex.ready)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        poll_until(lambda: len(rig.bodies(wire.Position)) == 2)
        assert rig.calls_of("journal") == [("journal", ENTRY)] and rig.calls_of("submit") == [("submit", ENTRY)]
        assert rig.calls.index(("journal", ENTRY)) < rig.calls.index(("submit", ENTRY))
        assert rig.bodies(wire.Position)[-1] == wire.Position(symbol="AAAUSDT", qty=19.8, entry_price=100.0,
                                                              unrealized_pnl=0.0, realized_pnl=0.0)
        snap = rig.ex.snapshot()
        assert (snap["orders"], snap["fills"], snap["positions_open"], snap["equity"]) == (1, 2, 1, 10_000.0)
    finally:
        assert disp.close(timeout_s=2.0).clean


class TestKillSwitchFromEquity:
    def test_a_balance_below_the_daily_loss_limit_trips_the_switch_and_saves_it(self, tmp_path: Path):
        rig = holding(tmp_path)
        rig.broker.bal = Balance(wallet=Decimal("9700"), equity=Decimal("9700"))  # -300 today, limit 250
        rig.ex._next_balance = 0.0
        rig.poll(2)
        assert rig.ex.st.risk.halted and rig.ex.st.risk.halt_reason == risk.DAILY_LOSS
        saved = [b for b, _ in rig.published if isinstance(b, wire.ModelState) and b.name == "risk_state"]
        assert json.loads(saved[-1].state)["halted"] is True
        # the position is kept (flatten_on_halt is off): no exit was sent
        assert ("submit", EXIT) not in rig.calls

    def test_with_flatten_on_halt_the_switch_also_exits_every_position(self, tmp_path: Path):
        rig = holding(tmp_path)
        rig.ex.flatten_on_halt = True
        rig.broker.submits.append(ambiguous())
        rig.broker.bal = Balance(wallet=Decimal("9700"), equity=Decimal("9700"))
        rig.ex._next_balance = 0.0
        rig.poll(3)  # balance -> halt -> journaled exit; then the dispatcher runs its submit
        assert rig.ex.st.risk.halted
        assert rig.calls[-2:] == [("journal", EXIT), ("submit", EXIT)]
        assert rig.ex.st.trades["AAAUSDT"].exit_reason == trader_exits.FLATTEN


# ---------------------------------------------------------------------------- exchange-held protection
PROTECTED = CFG  # exchange_protection on, as in production
STOP_ID, TARGET_ID = f"ps-{SIG_ID}-1", f"pt-{SIG_ID}-1"


class TestProtection:
    def test_a_filled_entry_gets_its_stop_and_target_each_journaled_before_it_is_placed(self, tmp_path: Path):
        rig = started(tmp_path, cfg=PROTECTED)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll(2)
        algo_calls = [c for c in rig.calls if c[1] in (STOP_ID, TARGET_ID)]
        assert algo_calls == [("journal", STOP_ID), ("journal", TARGET_ID), ("place_algo", STOP_ID),
                              ("place_algo", TARGET_ID)]
        [stop, target] = rig.broker.algo_specs
        assert (stop.order_type, stop.trigger_price, stop.side, stop.close_position, stop.working_type) == (
            "STOP_MARKET", Decimal("98.0"), "SELL", True, "MARK_PRICE")
        assert (target.order_type, target.trigger_price) == ("TAKE_PROFIT_MARKET", Decimal("104.0"))
        states = [(b.client_algo_id, b.state) for b in rig.bodies(wire.AlgoOrderUpdate)]
        assert states == [(STOP_ID, "NEW_LOCAL"), (STOP_ID, "SENT"), (TARGET_ID, "NEW_LOCAL"), (TARGET_ID, "SENT"),
                          (STOP_ID, "LIVE"), (TARGET_ID, "LIVE")]
        snap = rig.ex.snapshot()
        assert (snap["protective_orders"], snap["positions_protected"], snap["longest_unprotected_ms"]) == (2, 1, 0)

    def test_with_the_journal_down_protection_and_exits_still_go_out(self, tmp_path: Path):
        """The journal refuses: the stop, the target and a later exit are sent anyway (their
        ids are deterministic) and handed to the buffered journal; an entry would be refused."""
        rig = started(tmp_path, cfg=PROTECTED)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())  # the entry is journaled now
        rig.journal.fail = TransientError("journal: no ack in 50 ms")
        rig.poll(2)  # the entry fills: stop and target, journal refused, sent anyway
        placed = [c[1] for c in rig.calls if c[0] == "place_algo"]
        assert placed == [STOP_ID, TARGET_ID]
        assert rig.ex.counters["sent_unjournaled"] == 2
        algo_pubs = [(b.state, j) for b, j in rig.published if isinstance(b, wire.AlgoOrderUpdate)]
        assert algo_pubs[0] == ("NEW_LOCAL", True)  # handed to the buffered journal instead
        rig.broker.submits.append(SubmitResult(order=xorder(EXIT, "FILLED", "19.8", eid=EXIT_EID, side="SELL")))
        rig.broker.fill_rows.append([xfill(EXIT, "9", "19.8", "97.0", eid=EXIT_EID, side="SELL")])
        rig.ex.on_range("AAAUSDT", 97.0, 100.0)
        rig.poll(2)
        assert ("submit", EXIT) in rig.calls and rig.ex.counters["sent_unjournaled"] == 3
        assert "AAAUSDT" not in rig.ex.st.trades

    def test_a_position_closed_at_the_exchange_is_seen_by_the_position_poll(self, tmp_path: Path):
        """The stop triggered at the exchange while nobody listened: the poll sees flat, the
        symbol's fills carry the stop's id, the trade closes as STOP and is learned."""
        rig = started(tmp_path, cfg=PROTECTED)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll(2)
        rig.broker.held = []  # flat at the exchange
        # userTrades rows carry no client id: the stop's query names its market order (555)
        rig.broker.algo_queries += [
            ExchangeAlgoOrder(client_algo_id=STOP_ID, algo_id="7001", symbol="AAAUSDT", side="SELL",
                              order_type="STOP_MARKET", status="FINISHED", actual_order_id="555"),
            ExchangeAlgoOrder(client_algo_id=TARGET_ID, algo_id="7002", symbol="AAAUSDT", side="SELL",
                              order_type="TAKE_PROFIT_MARKET", status="CANCELED")]
        rig.broker.fill_rows.append([xfill("", "11", "19.8", "97.9", eid="555", side="SELL")])
        # the stop already fired: Binance refuses its cancel (-2011); the target is cancelled
        rig.broker.algo_cancels += [DefinitiveError("binance -2011 Unknown order sent.", reason="unknown_order",
                                                    code=-2011),
                                    ExchangeAlgoOrder(client_algo_id=TARGET_ID, algo_id="7002", symbol="AAAUSDT",
                                                      side="SELL", order_type="TAKE_PROFIT_MARKET", status="CANCELED")]
        rig.ex._next_positions = 0.0
        rig.poll(3)
        [closed] = rig.bodies(wire.TradeClosed)
        assert (closed.exit_reason, closed.exit_price, closed.learned) == ("STOP", 97.9, True)
        assert ("cancel_algo", "AAAUSDT", TARGET_ID) in rig.calls
        assert rig.ex.st.trades == {}
        assert rig.ex.st.counters["protection_triggered:STOP"] == 1
        # the market order the exchange made of the stop is journaled like our orders: its
        # request once (the orders table holds every order the exchange holds), then its states
        [req] = [b for b in rig.bodies(wire.OrderRequest) if b.client_order_id == STOP_ID]
        assert (req.symbol, req.side, req.order_type, req.reduce_only) == ("AAAUSDT", "SELL", "MARKET", True)
        states = [u.status for u in rig.bodies(wire.OrderUpdate) if u.client_order_id == STOP_ID]
        assert states[0] == "ACKED" and states[-1] == "FILLED"
        assert {u.exchange_order_id for u in rig.bodies(wire.OrderUpdate) if u.client_order_id == STOP_ID} == {"555"}


class TestSymbolSetUp:
    def test_a_symbol_the_feed_adds_later_is_set_up_and_entries_wait_for_it(self, tmp_path: Path):
        """Start-up set AAA and BBB; CCC appears later: a signal on it is refused with
        SYMBOL_SETUP_PENDING and its margin type and leverage are set; the next one trades."""
        rig = started(tmp_path)
        FILTERS["CCCUSDT"] = FILTERS["AAAUSDT"].__class__(**{**FILTERS["AAAUSDT"].__dict__, "symbol": "CCCUSDT"})
        PRICES["CCCUSDT"] = 100.0
        try:
            rig.ex.filters = dict(FILTERS)
            rig.ex.on_signal(signal(symbol="CCCUSDT"))
            [rej] = rig.bodies(wire.RiskReject)
            assert (rej.symbol, rej.reason) == ("CCCUSDT", execution.SYMBOL_SETUP_PENDING)
            rig.poll()
            assert ("start", ("CCCUSDT",)) in rig.calls and "CCCUSDT" in rig.ex.configured
            rig.broker.submits.append(SubmitResult(order=xorder(f"ae-CCCUSDT-{NOW}-BUY-0", "NEW", "0")))
            rig.ex.on_signal(signal(symbol="CCCUSDT"))
            rig.poll()
            assert rig.calls[-2:] == [("journal", f"ae-CCCUSDT-{NOW}-BUY-0"), ("submit", f"ae-CCCUSDT-{NOW}-BUY-0")]
        finally:
            FILTERS.pop("CCCUSDT")
            PRICES.pop("CCCUSDT")


# ---------------------------------------------------------------------------- rules wait (pure)
class TestRulesReady:
    def test_known_go_unknown_wait_then_go_late(self):
        go, waiting, late = execution_startup.rules_ready(["A", "B"], {"A"}, {}, 10.0, 5.0)
        assert (go, waiting, late) == (["A"], {"B": 10.0}, [])
        go, waiting, late = execution_startup.rules_ready(["A", "B"], {"A"}, waiting, 14.9, 5.0)
        assert (go, waiting, late) == (["A"], {"B": 10.0}, [])  # first seen at 10.0, kept
        go, waiting, late = execution_startup.rules_ready(["B"], set(), waiting, 15.0, 5.0)
        assert (go, waiting, late) == (["B"], {}, ["B"])

    def test_a_symbol_not_asked_keeps_its_place_and_a_known_one_leaves(self):
        waiting = {"B": 1.0, "C": 2.0}
        go, still, late = execution_startup.rules_ready(["C"], {"C"}, waiting, 3.0, 5.0)
        assert (go, still, late) == (["C"], {"B": 1.0}, [])
        assert waiting == {"B": 1.0, "C": 2.0}  # the caller's mapping is not changed
