"""Reconciliation on a schedule: the thin shell around ``reconcile_diff.diff``.

The orchestrator's loop calls ``poll(conn)`` every iteration and must never wait on REST, so
the exchange is read on one background thread:

    poll (due)        local snapshot on the loop's thread (it owns the connection) -> worker
    worker            broker_factory() once, then fetch_exchange_snapshot (REST, blocking)
    poll (worker done) a fresh local snapshot, ``diff``, counters, logs -> ReconcileOutcome

The diff uses the snapshot taken when the worker is done, not the first one: the caller
persists ``outcome.repairs`` in the same loop iteration, so no journal write can fall
between the comparison and its repairs (see the timing rules in ``reconcile_diff.py``). The first
snapshot only tells the worker which orders to ask about.

Runs: at once (first poll), then every ``interval_s`` from the start of the previous run;
after a run that is not trade-safe, every ``retry_interval_s`` (an order still on the wire
at one run is usually settled seconds later). Verdict of a run (``ReconcileOutcome.status``):
``reconcile_diff``'s OK / REPAIRED / MISMATCH, UNREACHABLE when the broker raised (any exception:
transient, ambiguous or not), ERROR when our own side failed (reading the database, a bug).
Only OK and REPAIRED are ``ok``.

Trading is allowed (``trading_allowed``) after a trade-safe run, until a MISMATCH, or until
``max_failures`` consecutive runs fail; never before the first trade-safe run. A single
failed run after a good one keeps the last verdict: one REST blip should not stop trading.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import structlog

from common import wire
from common.errors import ConfigError
from venue import brokers
from venue.port import Broker
from venue.order_rules import DEFAULT_RECV_WINDOW_MS
from services.orchestrator import snapshots
from services.orchestrator.reconcile_diff import TRADE_SAFE, Difference, ExchangeSnapshot, Repair, Report, diff

log = structlog.get_logger(__name__)

UNREACHABLE = "UNREACHABLE"
ERROR = "ERROR"
DEFAULT_FILLS_LOOKBACK_MS = 3_600_000  # an hour of userTrades per symbol: one page at our trade rate
DEFAULT_MAX_FAILURES = 3  # consecutive failed runs before trading is refused
DEFAULT_RETRY_INTERVAL_S = 10.0  # > recvWindow + clock margin: a pending order is settled by then
JOIN_TIMEOUT_S = 2.0  # close() waits this long for the worker; a REST call stuck longer is abandoned


@dataclass(frozen=True, kw_only=True)
class ReconcileOutcome:
    status: str  # OK | REPAIRED | MISMATCH | UNREACHABLE | ERROR
    at_ms: int  # when the outcome was decided (local wall clock)
    duration_s: float  # the exchange reads (0 when the run failed before any answer)
    report: Report | None = None  # None for UNREACHABLE / ERROR
    error: str = ""
    consecutive_failures: int = 0
    trading_allowed: bool = False

    @property
    def ok(self) -> bool:
        return self.status in TRADE_SAFE

    @property
    def repairs(self) -> tuple[Repair, ...]:
        """Wire bodies to persist (``db.rows_for``) and publish, in this order."""
        return self.report.repairs if self.report is not None else ()

    @property
    def flag_records(self) -> tuple[wire.ExternalFill, ...]:
        """External fills reported for the first time: journaled with the repairs, so that no
        later run (nor a restarted orchestrator) reports them again."""
        return self.report.flag_records if self.report is not None else ()


@dataclass(frozen=True, kw_only=True)
class _Job:
    local: snapshots.LocalSnapshot
    symbols: tuple[str, ...]
    history_since_ms: int | None = None  # the first run: the whole order history from then on


@dataclass(frozen=True, kw_only=True)
class _Done:
    exchange: ExchangeSnapshot | None
    error: str
    duration_s: float


class Reconciler:
    """Not thread-safe: ``poll`` and ``close`` belong to the orchestrator's loop thread."""

    def __init__(self, broker_factory: Callable[[], Broker], *, interval_s: float,
                 symbols_fn: Callable[[], Sequence[str]], clock: Callable[[], float] = time.time,
                 retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S, max_failures: int = DEFAULT_MAX_FAILURES,
                 recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
                 fills_lookback_ms: int = DEFAULT_FILLS_LOOKBACK_MS,
                 join_timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """``clock`` is wall-clock seconds: run times are compared with the journal's event times."""
        if interval_s <= 0 or retry_interval_s <= 0 or max_failures < 1:
            raise ConfigError("interval_s and retry_interval_s must be > 0, max_failures >= 1")
        # every fill must be inside at least one run's lookback, and inside the local window
        if not 2_000 * interval_s <= fills_lookback_ms <= snapshots.LOCAL_WINDOW_MS:
            raise ConfigError(f"fills_lookback_ms {fills_lookback_ms} must cover two intervals"
                             f" and fit in {snapshots.LOCAL_WINDOW_MS}")
        self._broker_factory = broker_factory
        self._broker: Broker | None = None  # the worker's, once made: its counters go in the heartbeat
        self._interval_s = interval_s
        self._retry_interval_s = retry_interval_s
        self._symbols_fn = symbols_fn
        self._clock = clock
        self._max_failures = max_failures
        self._recv_window_ms = recv_window_ms
        self._fills_lookback_ms = fills_lookback_ms
        self._join_timeout_s = join_timeout_s
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._done: queue.Queue[_Done] = queue.Queue()
        self._ready = threading.Event()  # set while a finished run waits for poll
        self._thread: threading.Thread | None = None
        self._busy = False
        self._closed = False
        self._next_due_s: float | None = None  # None: due at the first poll
        self._started_s = 0.0
        self._good_once = False  # a trade-safe run has happened
        # the first run that answers also reads the order history of every symbol concerned,
        # back to the journal's newest order: orders a machine crash hid from the journal
        # (later runs read it only where a fill is unexplained)
        self._history_pending = True
        self._last_good = False  # the last run that answered was trade-safe
        # counters
        self.runs = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_status = "NONE"
        self.last_duration_s = 0.0
        self.differences_by_kind: Counter[str] = Counter()
        self.repairs_by_kind: Counter[str] = Counter()  # by wire type: FILL, ORDER_UPDATE, POSITION
        # what a human should look at, as the last run that answered saw it: flagged now, or
        # reported by an earlier run and still there (an external fill in the exchange's window)
        self.open_flags: tuple[Difference, ...] = ()

    # -- the loop's side
    @property
    def trading_allowed(self) -> bool:
        return self._good_once and self._last_good and self.consecutive_failures < self._max_failures

    def poll(self, conn: Any) -> ReconcileOutcome | None:
        """Start a run when due; return its outcome when the worker has finished, else None."""
        if self._closed:
            return None
        now = self._clock()
        if self._busy:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return None
            self._ready.clear()
            self._busy = False
            return self._finish(conn, done, now)
        if self._next_due_s is not None and now < self._next_due_s:
            return None
        self._started_s = now
        self._next_due_s = now + self._interval_s  # until the outcome says otherwise
        try:
            local = snapshots.local_snapshot(conn, _ms(now))
            since = (snapshots.history_since(local, _ms(now), self._fills_lookback_ms)
                     if self._history_pending else None)
            job = _Job(local=local, symbols=tuple(self._symbols_fn()), history_since_ms=since)
        except Exception as exc:  # our side: the run fails, the loop goes on
            return self._failed(ERROR, exc, now, 0.0)
        self._start_thread()
        self._busy = True
        self._jobs.put(job)
        return None

    def ready(self, timeout_s: float = 0.0) -> bool:
        """True when a finished run waits for ``poll`` (waits up to ``timeout_s`` for it)."""
        return self._ready.wait(timeout_s)

    def counters(self) -> dict[str, float]:
        """Flat numbers for the heartbeat."""
        out = {"reconcile_runs": float(self.runs), "reconcile_failures": float(self.failures),
               "reconcile_consecutive_failures": float(self.consecutive_failures),
               "reconcile_trading_allowed": float(self.trading_allowed),
               "reconcile_last_duration_s": self.last_duration_s,
               "reconcile_flags_open": float(len(self.open_flags))}
        out.update({f"reconcile_diff_{k}": float(v) for k, v in sorted(self.differences_by_kind.items())})
        out.update({f"reconcile_repair_{k}": float(v) for k, v in sorted(self.repairs_by_kind.items())})
        # the broker's (order-history pages refused as malformed: ``reconcile_all_orders_rejected``)
        got = brokers.counters_of(self._broker)
        out.update({f"reconcile_{k}": float(got[k]) for k in brokers.BROKER_COUNTERS})
        return out

    def close(self) -> None:
        """Stop the worker; returns within ``join_timeout_s`` even if a REST call hangs."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join(self._join_timeout_s)
        if self._thread.is_alive():  # a daemon thread: it dies with the process
            log.warning("reconcile.close_timeout", timeout_s=self._join_timeout_s)

    def _finish(self, conn: Any, done: _Done, now: float) -> ReconcileOutcome:
        if done.exchange is None:
            return self._failed(UNREACHABLE, done.error, now, done.duration_s)
        try:
            ids = [o.client_order_id for o in (*done.exchange.open_orders, *done.exchange.history)]
            local = snapshots.local_snapshot(conn, _ms(now), also_ids=ids)
            report = diff(local, done.exchange, now_ms=_ms(now), recv_window_ms=self._recv_window_ms)
        except Exception as exc:
            return self._failed(ERROR, exc, now, done.duration_s)
        was_allowed = self.trading_allowed
        self._history_pending = False
        self.runs += 1
        self.consecutive_failures = 0
        self.last_status = report.status
        self.last_duration_s = done.duration_s
        self._last_good = report.ok
        self._good_once = self._good_once or report.ok
        if not report.ok:
            self._next_due_s = self._started_s + self._retry_interval_s
        for d in report.differences:
            self.differences_by_kind[d.kind] += 1
            log.warning("reconcile.difference", kind=d.kind, symbol=d.symbol, client_order_id=d.client_order_id,
                        detail=d.detail, blocking=d.blocking)
        for r in report.repairs:
            self.repairs_by_kind[type(r).__struct_config__.tag] += 1
        self.open_flags = report.flagged + report.standing
        log.info("reconcile.done", status=report.status, differences=len(report.differences),
                 repairs=len(report.repairs), adopted=len(report.adopted), flagged=len(report.flagged),
                 flags_open=len(self.open_flags), deferred=len(report.deferred),
                 duration_s=round(done.duration_s, 3))
        self._log_transition(was_allowed)
        return ReconcileOutcome(status=report.status, at_ms=_ms(now), duration_s=done.duration_s, report=report,
                                trading_allowed=self.trading_allowed)

    def _failed(self, status: str, error: object, now: float, duration_s: float) -> ReconcileOutcome:
        was_allowed = self.trading_allowed
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.runs += 1
        self.failures += 1
        self.consecutive_failures += 1
        self.last_status = status
        self.last_duration_s = duration_s
        self._next_due_s = self._started_s + self._retry_interval_s
        log.warning("reconcile.failed", status=status, error=text, consecutive_failures=self.consecutive_failures)
        self._log_transition(was_allowed)
        return ReconcileOutcome(status=status, at_ms=_ms(now), duration_s=duration_s, error=text,
                                consecutive_failures=self.consecutive_failures, trading_allowed=self.trading_allowed)

    def _log_transition(self, was_allowed: bool) -> None:
        if was_allowed and not self.trading_allowed:
            log.error("reconcile.trading_refused", last_status=self.last_status,
                      consecutive_failures=self.consecutive_failures)
        elif self.trading_allowed and not was_allowed:
            log.info("reconcile.trading_allowed", last_status=self.last_status)

    # -- the worker's side
    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="reconciler", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        broker: Broker | None = None
        while (job := self._jobs.get()) is not None:
            t0 = self._clock()
            try:
                if broker is None:
                    broker = self._broker = self._broker_factory()
                exchange = snapshots.fetch_exchange_snapshot(
                    broker, job.local, job.symbols, _ms(t0), self._fills_lookback_ms,
                    clock_ms=lambda: _ms(self._clock()), history_since_ms=job.history_since_ms)
                done = _Done(exchange=exchange, error="", duration_s=self._clock() - t0)
            except Exception as exc:  # any broker failure is "unreachable": the diff cannot run
                done = _Done(exchange=None, error=f"{type(exc).__name__}: {exc}", duration_s=self._clock() - t0)
            self._done.put(done)
            self._ready.set()
        if broker is not None:
            try:
                broker.close()
            except Exception as exc:
                log.warning("reconcile.broker_close_failed", error=f"{type(exc).__name__}: {exc}")


def _ms(t_s: float) -> int:
    return int(t_s * 1000)
