"""The rate-limit governor: Binance's three budgets, 429 back-off, 418 bans, exits first."""

from __future__ import annotations

import threading
import time

import pytest

from common.errors import TransientError
from venue import ratelimit as rl
from venue.ratelimit import Governor, Limits, Priority, State, admit, observe

LIM = Limits(weight_per_min=100, orders_per_10s=10, orders_per_min=30, reserve_pct=10.0)
T0 = 1_700_000_080_000  # 40 s into a minute, 0 s into a 10-second window


class TestAdmit:
    def test_request_within_budget_is_admitted_and_counted(self):
        """An admitted request adds its weight and orders to the current windows."""
        s, d = admit(LIM, State(), now_ms=T0, weight=5, orders=1, priority=Priority.ENTRY)
        assert d.ok
        assert (s.weight_1m, s.orders_10s, s.orders_1m) == (5, 1, 1)

    def test_entries_stop_at_the_reserve_exits_spend_it(self):
        """Entries and queries stop at 90 % of the weight; an exit may use the last 10 %."""
        s = State(minute=T0 // 60_000, ten_s=T0 // 10_000, weight_1m=88)
        _, d = admit(LIM, s, now_ms=T0, weight=3, priority=Priority.ENTRY)
        assert not d.ok and d.reason == "weight"
        assert d.wait_ms == 20_000  # to the next minute
        s2, d2 = admit(LIM, s, now_ms=T0, weight=3, priority=Priority.EXIT)
        assert d2.ok and s2.weight_1m == 91
        _, d3 = admit(LIM, s2, now_ms=T0, weight=10, priority=Priority.EXIT)
        assert not d3.ok and d3.reason == "weight"

    def test_order_count_per_10s_is_a_budget_of_its_own(self):
        """Nine orders in a 10 s window leave no room for a tenth entry, but one for an exit."""
        s = State(minute=T0 // 60_000, ten_s=T0 // 10_000, orders_10s=9, orders_1m=9)
        _, d = admit(LIM, s, now_ms=T0 + 3_000, weight=1, orders=1, priority=Priority.ENTRY)
        assert (d.ok, d.reason, d.wait_ms) == (False, "orders_10s", 7_000)
        _, d = admit(LIM, s, now_ms=T0 + 3_000, weight=1, orders=1, priority=Priority.EXIT)
        assert d.ok

    def test_windows_reset_at_their_calendar_boundary(self):
        """A count belongs to its window: the next minute starts from zero, as Binance counts."""
        s = State(minute=T0 // 60_000, ten_s=T0 // 10_000, weight_1m=100, orders_10s=10, orders_1m=30)
        s2, d = admit(LIM, s, now_ms=T0 + 20_000, weight=2, orders=1, priority=Priority.QUERY)
        assert d.ok
        assert (s2.weight_1m, s2.orders_10s, s2.orders_1m) == (2, 1, 1)

    def test_nothing_goes_during_a_ban_not_even_an_exit(self):
        """During a 418 ban every request waits: anything sent would prolong the ban."""
        s = State(banned_until_ms=T0 + 120_000)
        _, d = admit(LIM, s, now_ms=T0, weight=1, orders=1, priority=Priority.EXIT)
        assert (d.ok, d.reason, d.wait_ms) == (False, "banned", 120_000)
        _, d = admit(LIM, s, now_ms=T0 + 120_000, weight=1, orders=1, priority=Priority.EXIT)
        assert d.ok

    def test_nothing_goes_during_a_429_back_off(self):
        s = State(backoff_until_ms=T0 + 3_000)
        _, d = admit(LIM, s, now_ms=T0 + 1_000, weight=1, priority=Priority.EXIT)
        assert (d.ok, d.reason, d.wait_ms) == (False, "backoff", 2_000)


class TestObserve:
    def test_headers_replace_the_local_estimate(self):
        """The exchange's counts (other processes on this IP included) win over ours."""
        s = State(minute=T0 // 60_000, ten_s=T0 // 10_000, weight_1m=5, orders_10s=1, orders_1m=1)
        s = observe(LIM, s, now_ms=T0, status=200, headers={
            "X-MBX-USED-WEIGHT-1M": "57", "X-MBX-ORDER-COUNT-10S": "4", "x-mbx-order-count-1m": "12"})
        assert (s.weight_1m, s.orders_10s, s.orders_1m) == (57, 4, 12)

    def test_malformed_headers_are_ignored(self):
        s = State(minute=T0 // 60_000, ten_s=T0 // 10_000, weight_1m=5)
        s = observe(LIM, s, now_ms=T0, status=200, headers={"X-MBX-USED-WEIGHT-1M": "lots",
                                                               "X-MBX-ORDER-COUNT-10S": "-3"})
        assert (s.weight_1m, s.orders_10s) == (5, 0)

    def test_429_backs_off_for_retry_after(self):
        s = observe(LIM, State(), now_ms=T0, status=429, headers={"Retry-After": "7"})
        assert (s.backoff_until_ms, s.throttles, s.banned_until_ms) == (T0 + 7_000, 1, 0)

    def test_429_without_retry_after_backs_off_the_default(self):
        s = observe(LIM, State(), now_ms=T0, status=429, headers={})
        assert s.backoff_until_ms == T0 + LIM.backoff_ms

    def test_418_bans_until_retry_after(self):
        s = observe(LIM, State(), now_ms=T0, status=418, headers={"retry-after": "120"})
        assert (s.banned_until_ms, s.bans) == (T0 + 120_000, 1)

    def test_a_shorter_later_ban_does_not_shorten_the_first(self):
        s = observe(LIM, State(), now_ms=T0, status=418, headers={"Retry-After": "120"})
        s = observe(LIM, s, now_ms=T0 + 1_000, status=418, headers={"Retry-After": "2"})
        assert s.banned_until_ms == T0 + 120_000 and s.bans == 2


class TestLimitsFromExchangeInfo:
    def test_reads_the_three_budgets(self):
        body = {"rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}]}
        assert rl.limits_from_exchange_info(body) == Limits(weight_per_min=2400, orders_per_10s=300,
                                                            orders_per_min=1200)

    def test_bad_entries_keep_the_defaults(self):
        body = {"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                "intervalNum": 1, "limit": "many"}, "junk"]}
        assert rl.limits_from_exchange_info(body) == Limits()
        assert rl.limits_from_exchange_info({"rateLimits": 3}) == Limits()


class FakeClock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


class TestGovernor:
    def test_acquire_times_out_with_a_transient_error_during_a_ban(self):
        """A caller never sends during a ban; it gets a TransientError naming the limit."""
        g = Governor(LIM, clock_ms=FakeClock(T0))
        g.observe(status=418, headers={"Retry-After": "300"})
        with pytest.raises(TransientError) as e:
            g.acquire(weight=1, priority=Priority.EXIT, timeout_s=0.05)
        assert e.value.reason == "rate_limited"
        assert e.value.retry_after_s == 300.0

    def test_exits_go_first_when_a_back_off_lifts(self):
        """Queries waiting before an exit still let the exit through first."""
        clock = FakeClock(T0)
        g = Governor(LIM, clock_ms=clock)
        g.observe(status=429, headers={"Retry-After": "1"})
        order: list[str] = []
        lock = threading.Lock()

        def call(name: str, prio: Priority) -> None:
            g.acquire(weight=1, priority=prio, timeout_s=5)
            with lock:
                order.append(name)

        queries = [threading.Thread(target=call, args=(f"q{i}", Priority.QUERY)) for i in range(3)]
        for t in queries:
            t.start()
        time.sleep(0.1)
        exit_t = threading.Thread(target=call, args=("exit", Priority.EXIT))
        exit_t.start()
        time.sleep(0.1)
        assert order == []  # nobody went during the back-off
        clock.t = T0 + 1_000  # Retry-After has passed
        for t in [*queries, exit_t]:
            t.join(5)
        assert order[0] == "exit"
        assert sorted(order[1:]) == ["q0", "q1", "q2"]
        assert g.state.weight_1m == 4
