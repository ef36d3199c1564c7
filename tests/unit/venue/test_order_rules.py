"""What both order state machines share (``venue.order_rules``): one set of request events
that each machine's table takes, and Binance's rule on when an attempt can no longer arrive."""

from __future__ import annotations

from venue import algo_orders as ao
from venue import order_rules as rules
from venue import orders as om

SHARED = (rules.Send, rules.Reject, rules.CancelRequest, rules.CancelRejected, rules.Canceled, rules.Timeout)


def test_both_machines_take_the_shared_events_in_their_tables():
    """Each shared event is a key of some row of both transition tables (the same class)."""
    in_orders = {t for row in om.TRANSITIONS.values() for t in row}
    in_algos = {t for row in ao.TRANSITIONS.values() for t in row}
    assert [e in in_orders and e in in_algos for e in SHARED] == [True] * len(SHARED)


def test_an_attempt_is_dead_after_the_recv_window_and_the_clock_margin():
    """Sent at 10 000 with a 5 000 ms recvWindow: it may still arrive until 16 000 (1 000 ms margin)."""
    assert rules.attempt_dead_after_ms(10_000, 5_000) == 16_000
    assert rules.attempt_dead_after_ms(10_000, rules.DEFAULT_RECV_WINDOW_MS) == 10_000 + 5_000 + 1_000


def test_an_event_time_is_an_integer_of_milliseconds():
    """An int is a time; a bool, a float, a string or None is not."""
    assert [rules.bad_time(t) for t in (0, 1_700_000_000_000, True, 1.0, "1", None)] == [
        False, False, True, True, True, True]
