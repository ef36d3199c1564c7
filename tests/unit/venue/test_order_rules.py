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


def test_both_machines_keep_a_refusal_reason_of_the_same_bounded_length():
    """A refusal with a 5,000-character message: the order and the protective order both keep
    its first ``REASON_CHARS`` characters (one bound, whatever carried the message in)."""
    from decimal import Decimal

    long = "Margin is insufficient. " + "x" * 5_000
    order = om.new_order(client_order_id="ps-1", symbol="BTCUSDT", side="BUY", order_type="MARKET",
                         qty=Decimal("0.001"))
    order, _ = om.apply(order, rules.Send(at_ms=1_000))
    order, _ = om.apply(order, rules.Reject(attempt=1, code=-2019, message=long))
    algo = ao.new_algo_order(client_algo_id="ps-sig1-1", symbol="BTCUSDT", side="SELL", order_type="STOP_MARKET",
                             trigger_price=Decimal("95000.0"), trade_id="sig1", role="STOP")
    algo, _ = ao.apply(algo, rules.Send(at_ms=1_000))
    algo, _ = ao.apply(algo, rules.Reject(attempt=1, code=-2019, message=long))
    assert (order.state, algo.state) == (om.S.REJECTED, ao.A.REJECTED)
    assert order.reject_reason == algo.reject_reason == long[:rules.REASON_CHARS]
    assert len(order.reject_reason) == rules.REASON_CHARS == 200


class _Refused(Exception):
    def __init__(self, code=None, reason=""):
        super().__init__("refused")
        self.code, self.reason = code, reason


def test_a_refusals_code_is_binances_and_a_taken_client_id_is_4116():
    """The code an error carries; 0 when it has none; -4116 for a taken client id however the
    broker worded it (the one code both machines act on: find the earlier attempt, never re-send)."""
    assert [rules.refusal_code(e) for e in (_Refused(-2019), _Refused(None), ValueError("x"),
                                            _Refused(0, reason="duplicate_client_id"))] == [
        -2019, 0, 0, rules.DUPLICATE_CLIENT_ID_CODE]
