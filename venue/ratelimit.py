"""One rate-limit governor per process for every call to Binance (pure core, thin shell).

Binance USD-M counts three budgets (``rateLimits`` in ``exchangeInfo``):

    REQUEST_WEIGHT  2400 a minute, per IP   every REST call and WebSocket-API request
    ORDERS          300 per 10 s, per account  order placements (and amends)
    ORDERS          1200 a minute, per account

The counts run per calendar interval (a request at 00:01:23.456 counts toward the minute
that began at 00:01:00) and every answer says where we stand: ``X-MBX-USED-WEIGHT-1M`` (the
IP's weight this minute) and, on a successful order, ``X-MBX-ORDER-COUNT-10S`` /
``X-MBX-ORDER-COUNT-1M``. Going over answers HTTP 429 with ``Retry-After`` (seconds to wait
to avoid a ban); ignoring 429s earns HTTP 418, an IP ban of 2 minutes up to 3 days, whose
``Retry-After`` says when it ends. Anything sent during a ban prolongs it.

The rules, in one table (``admit``):

    condition                                  exit          entry / query
    banned (418) until T                       wait to T     wait to T
    backing off (429 Retry-After) until T      wait to T     wait to T
    budget used >= limit                       wait window   wait window
    budget used >= limit * (1 - reserve)       go            wait window
    otherwise                                  go            go

Exits (reduce-only orders that close a position, cancels of protective orders being
replaced) may spend the reserve that entries and queries leave alone, so a burst of queries
can never keep an exit waiting for a window; when a ban or back-off lifts, the shell wakes
waiting callers exits first. The local count is an estimate between answers; each answer's
headers replace it (the exchange knows best; another process on the same IP spends too).

``observe`` folds one answer into the state; ``admit`` decides one request. Both are pure:
``(state, input) -> state`` (and a decision). ``Governor`` is the thread-safe shell the
REST and WebSocket-API clients share: ``acquire`` blocks (or times out) until admitted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from common.fastcopy import replace
from common.errors import TransientError, parse_retry_after

MINUTE_MS = 60_000
TEN_S_MS = 10_000
# Binance USD-M's published defaults (exchangeInfo.rateLimits); a live client replaces them
# with what exchangeInfo says at start (``limits_from_exchange_info``).
DEFAULT_WEIGHT_PER_MIN = 2_400
DEFAULT_ORDERS_PER_10S = 300
DEFAULT_ORDERS_PER_MIN = 1_200
DEFAULT_RESERVE_PCT = 10.0  # the part of each budget only exits may spend
# A 429 without Retry-After: back off this long (Binance: "back off and not spam the API").
DEFAULT_BACKOFF_MS = 1_000


class Priority(IntEnum):
    """Who goes first when a ban or back-off lifts (lower is first)."""

    EXIT = 0  # reduce-only closes, protective-order cancels/replaces
    ENTRY = 1  # new positions
    QUERY = 2  # order status, fills, positions, balances, reconciliation


@dataclass(frozen=True, kw_only=True)
class Limits:
    weight_per_min: int = DEFAULT_WEIGHT_PER_MIN
    orders_per_10s: int = DEFAULT_ORDERS_PER_10S
    orders_per_min: int = DEFAULT_ORDERS_PER_MIN
    reserve_pct: float = DEFAULT_RESERVE_PCT
    backoff_ms: int = DEFAULT_BACKOFF_MS


@dataclass(frozen=True, kw_only=True)
class State:
    """What this process knows of its budgets. Counts belong to the window they name."""

    minute: int = -1  # now_ms // MINUTE_MS of ``weight_1m`` and ``orders_1m``
    ten_s: int = -1  # now_ms // TEN_S_MS of ``orders_10s``
    weight_1m: int = 0
    orders_1m: int = 0
    orders_10s: int = 0
    banned_until_ms: int = 0  # 418: nothing may be sent before this
    backoff_until_ms: int = 0  # 429: nothing may be sent before this
    bans: int = 0  # 418s seen (counters for status and metrics)
    throttles: int = 0  # 429s seen


@dataclass(frozen=True, kw_only=True)
class Decision:
    ok: bool
    wait_ms: int = 0  # when not ok: how long until it may be asked again
    reason: str = ""  # banned | backoff | weight | orders_10s | orders_1m


def roll(state: State, now_ms: int) -> State:
    """The state with counts of windows that have ended reset to zero."""
    minute, ten_s = now_ms // MINUTE_MS, now_ms // TEN_S_MS
    if minute == state.minute and ten_s == state.ten_s:
        return state
    s = state
    if minute != s.minute:
        s = replace(s, minute=minute, weight_1m=0, orders_1m=0)
    if ten_s != s.ten_s:
        s = replace(s, ten_s=ten_s, orders_10s=0)
    return s


def _cap(limit: int, priority: Priority, reserve_pct: float) -> int:
    if priority == Priority.EXIT:
        return limit
    return max(1, int(limit * (1.0 - reserve_pct / 100.0)))


_OK = Decision(ok=True)


def admit(limits: Limits, state: State, *, now_ms: int, weight: int, orders: int = 0,
          priority: Priority = Priority.QUERY) -> tuple[State, Decision]:
    """Whether a request of ``weight`` (placing ``orders`` orders) may go now; if it may,
    the state counts it. Pure."""
    s = roll(state, now_ms)
    if now_ms < s.banned_until_ms:
        return s, Decision(ok=False, wait_ms=s.banned_until_ms - now_ms, reason="banned")
    if now_ms < s.backoff_until_ms:
        return s, Decision(ok=False, wait_ms=s.backoff_until_ms - now_ms, reason="backoff")
    to_minute = (s.minute + 1) * MINUTE_MS - now_ms
    if s.weight_1m + weight > _cap(limits.weight_per_min, priority, limits.reserve_pct):
        return s, Decision(ok=False, wait_ms=to_minute, reason="weight")
    if orders:
        if s.orders_10s + orders > _cap(limits.orders_per_10s, priority, limits.reserve_pct):
            return s, Decision(ok=False, wait_ms=(s.ten_s + 1) * TEN_S_MS - now_ms, reason="orders_10s")
        if s.orders_1m + orders > _cap(limits.orders_per_min, priority, limits.reserve_pct):
            return s, Decision(ok=False, wait_ms=to_minute, reason="orders_1m")
    return replace(s, weight_1m=s.weight_1m + weight, orders_1m=s.orders_1m + orders,
                   orders_10s=s.orders_10s + orders), _OK


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    for k, v in headers.items():  # HTTP header names are case-insensitive
        if k.lower() == name:
            try:
                n = int(str(v).strip())
            except ValueError:
                return None
            return n if n >= 0 else None
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return str(v)
    return None


def observe(limits: Limits, state: State, *, now_ms: int, status: int,
            headers: Mapping[str, str]) -> State:
    """The state after an answer with HTTP ``status`` and ``headers``. Pure.

    The exchange's counts replace ours for the current window (they include what other
    processes on this IP spent); a malformed header is ignored (ours stands). A 418 starts a
    ban until ``Retry-After`` (at least ``backoff_ms`` when the header is missing or bad), a
    429 a back-off likewise."""
    s = roll(state, now_ms)
    w = _header_int(headers, "x-mbx-used-weight-1m")
    if w is not None:
        s = replace(s, weight_1m=w)
    o10 = _header_int(headers, "x-mbx-order-count-10s")
    if o10 is not None:
        s = replace(s, orders_10s=o10)
    o1m = _header_int(headers, "x-mbx-order-count-1m")
    if o1m is not None:
        s = replace(s, orders_1m=o1m)
    if status in (418, 429):
        after_s = parse_retry_after(_header(headers, "retry-after"))
        wait_ms = int(after_s * 1000) if after_s else limits.backoff_ms
        until = now_ms + max(wait_ms, 1)
        if status == 418:
            s = replace(s, banned_until_ms=max(s.banned_until_ms, until), bans=s.bans + 1)
        else:
            s = replace(s, backoff_until_ms=max(s.backoff_until_ms, until), throttles=s.throttles + 1)
    return s


def limits_from_exchange_info(body: Mapping[str, object], *, reserve_pct: float = DEFAULT_RESERVE_PCT) -> Limits:
    """The budgets an exchangeInfo body announces (``rateLimits``); defaults for any missing."""
    weight, o10, o1m = DEFAULT_WEIGHT_PER_MIN, DEFAULT_ORDERS_PER_10S, DEFAULT_ORDERS_PER_MIN
    entries = body.get("rateLimits") if isinstance(body, Mapping) else None
    for e in entries if isinstance(entries, list) else ():
        if not isinstance(e, Mapping):
            continue
        kind, interval, num, limit = e.get("rateLimitType"), e.get("interval"), e.get("intervalNum"), e.get("limit")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            continue
        if kind == "REQUEST_WEIGHT" and interval == "MINUTE" and num == 1:
            weight = limit
        elif kind == "ORDERS" and interval == "SECOND" and num == 10:
            o10 = limit
        elif kind == "ORDERS" and interval == "MINUTE" and num == 1:
            o1m = limit
    return Limits(weight_per_min=weight, orders_per_10s=o10, orders_per_min=o1m, reserve_pct=reserve_pct)


# ----------------------------------------------------------------------------- the shell
class Governor:
    """The process's one governor: thread-safe, waiters admitted exits first.

    ``acquire`` blocks until the request may go (or raises ``TransientError`` with
    ``reason="rate_limited"`` after ``timeout_s``); ``observe`` takes every answer's status
    and headers. Clocks are injected so tests run on a fake clock."""

    def __init__(self, limits: Limits | None = None, *,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.limits = limits or Limits()
        self._clock_ms = clock_ms
        self._state = State()
        self._cond = threading.Condition()
        self._waiting: list[int] = [0, 0, 0]  # callers waiting, by priority

    @property
    def state(self) -> State:
        with self._cond:
            return self._state

    def set_limits(self, limits: Limits) -> None:
        with self._cond:
            self.limits = limits
            self._cond.notify_all()

    def try_acquire(self, *, weight: int, orders: int = 0,
                    priority: Priority = Priority.QUERY) -> Decision:
        """Admit now or say how long to wait; never blocks (the asyncio clients use this)."""
        with self._cond:
            return self._try(weight, orders, priority)

    def _try(self, weight: int, orders: int, priority: Priority) -> Decision:
        # someone of higher priority is waiting: let them go first
        if any(self._waiting[p] for p in range(int(priority))):
            return Decision(ok=False, wait_ms=50, reason="queued")  # woken by their notify
        self._state, d = admit(self.limits, self._state, now_ms=self._clock_ms(), weight=weight,
                               orders=orders, priority=priority)
        return d

    def acquire(self, *, weight: int, orders: int = 0, priority: Priority = Priority.QUERY,
                timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            w = self._waiting
            if not (w[0] or w[1] or w[2]):  # nobody queued: one admission check, no bookkeeping
                self._state, d = admit(self.limits, self._state, now_ms=self._clock_ms(), weight=weight,
                                       orders=orders, priority=priority)
                if d.ok:
                    return
            self._waiting[priority] += 1
            try:
                while True:
                    self._waiting[priority] -= 1
                    d = self._try(weight, orders, priority)
                    self._waiting[priority] += 1
                    if d.ok:
                        return
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TransientError(f"rate limit: {d.reason}, {d.wait_ms} ms to wait",
                                             reason="rate_limited", retry_after_s=d.wait_ms / 1000)
                    self._cond.wait(min(left, max(d.wait_ms, 1) / 1000))
            finally:
                self._waiting[priority] -= 1
                self._cond.notify_all()

    def observe(self, *, status: int, headers: Mapping[str, str]) -> None:
        with self._cond:
            self._state = observe(self.limits, self._state, now_ms=self._clock_ms(),
                                  status=status, headers=headers)
            self._cond.notify_all()


_SHARED: Governor | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> Governor:
    """The process's one governor (every broker and client of this process spends from it)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Governor()
        return _SHARED
