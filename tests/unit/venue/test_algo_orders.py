"""The protective (algo) order state machine: the transition table, rule by rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from venue import order_rules
from venue import algo_orders as ao
from venue.algo_orders import A

T0 = 1_700_000_000_000


def stop(**kw) -> ao.AlgoOrder:
    args = dict(client_algo_id="ps-sig1-1", symbol="BTCUSDT", side="SELL", order_type="STOP_MARKET",
                trigger_price=Decimal("95000.0"), trade_id="sig1", role="STOP")
    args.update(kw)
    return ao.new_algo_order(**args)


def run(o: ao.AlgoOrder, *events) -> tuple[ao.AlgoOrder, list]:
    effects: list = []
    for e in events:
        o, eff = ao.apply(o, e)
        effects += eff
    return o, effects


class TestNewAlgoOrder:
    def test_a_close_position_stop_on_mark_price_is_the_default(self):
        o = stop()
        assert (o.state, o.working_type, o.close_position, o.price_protect, o.qty) == (
            A.NEW_LOCAL, "MARK_PRICE", True, True, Decimal(0))

    @pytest.mark.parametrize("kw", [
        {"client_algo_id": "has space"}, {"client_algo_id": "x" * 37}, {"side": "HOLD"},
        {"order_type": "MARKET"}, {"working_type": "LAST"}, {"trigger_price": Decimal(0)},
        {"trigger_price": Decimal("NaN")}, {"qty": Decimal(1)},  # both closePosition and a quantity
        {"close_position": False},  # neither
        {"recv_window_ms": 60_001},
    ])
    def test_inputs_the_algo_service_would_refuse_are_refused_here(self, kw):
        with pytest.raises(ao.InvalidAlgoOrder):
            stop(**kw)

    def test_a_trailing_stop_needs_a_quantity_and_a_callback_rate_in_binances_range(self):
        o = stop(order_type="TRAILING_STOP_MARKET", trigger_price=Decimal(0), close_position=False,
                 qty=Decimal("0.01"), callback_rate=Decimal("1.5"))
        assert o.callback_rate == Decimal("1.5")
        with pytest.raises(ao.InvalidAlgoOrder):
            stop(order_type="TRAILING_STOP_MARKET", trigger_price=Decimal(0), close_position=False,
                 qty=Decimal("0.01"), callback_rate=Decimal("10.1"))

    def test_journal_record_round_trips(self):
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Ack(algo_id="2148719"))
        assert ao.AlgoOrder.from_dict(o.to_dict()) == o
        with pytest.raises(ao.InvalidAlgoOrder):
            ao.AlgoOrder.from_dict({**o.to_dict(), "state": "SLEEPING"})


class TestLifeCycle:
    def test_send_ack_trigger_finish(self):
        """The happy path: held by the exchange, triggered on the mark, its market order done."""
        o, eff = run(stop(), ao.Send(at_ms=T0))
        assert o.state == A.SENT and eff == [ao.SubmitAlgo(client_algo_id="ps-sig1-1", attempt=1)]
        o, eff = run(o, ao.Ack(algo_id="2148719"))
        assert (o.state, o.algo_id, o.confirmed, eff) == (A.LIVE, "2148719", True, [])
        o, _ = run(o, ao.Update(status="TRIGGERING", algo_id="2148719"),
                   ao.Update(status="TRIGGERED", algo_id="2148719", actual_order_id="283194212"))
        assert (o.state, o.actual_order_id) == (A.TRIGGERED, "283194212")
        o, _ = run(o, ao.Update(status="FINISHED", algo_id="2148719"))
        assert o.state == A.FINISHED and o.is_terminal

    def test_statuses_never_move_backwards(self):
        """A NEW that arrives after TRIGGERED is an old message: the order stays TRIGGERED."""
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Update(status="TRIGGERED", algo_id="7"),
                   ao.Update(status="NEW", algo_id="7"))
        assert o.state == A.TRIGGERED

    def test_terminal_states_never_change_and_a_contradiction_is_reported(self):
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Ack(algo_id="7"), ao.Update(status="CANCELED", algo_id="7"))
        same, eff = ao.apply(o, ao.Update(status="NEW", algo_id="7"))
        assert same == o and eff == ()
        same, eff = ao.apply(o, ao.Update(status="FINISHED", algo_id="7"))
        assert same == o and [e.kind for e in eff] == [order_rules.STATUS_CONFLICT]

    def test_cancel_of_a_live_order_waits_for_the_exchange(self):
        o, eff = run(stop(), ao.Send(at_ms=T0), ao.Ack(algo_id="7"), ao.CancelRequest())
        assert o.state == A.CANCEL_PENDING and eff[-1] == ao.CancelAlgo(client_algo_id="ps-sig1-1")
        o, _ = run(o, ao.Update(status="NEW", algo_id="7"))  # an older NEW: the cancel is in flight
        assert o.state == A.CANCEL_PENDING
        o, _ = run(o, ao.Canceled())
        assert o.state == A.CANCELED

    def test_cancel_before_send_sends_nothing(self):
        o, eff = run(stop(), ao.CancelRequest())
        assert (o.state, eff) == (A.CANCELED, [])

    def test_cancel_of_a_triggered_order_is_a_no_op(self):
        """A triggered stop is already a market order in the matching engine: nothing to cancel."""
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Update(status="TRIGGERED", algo_id="7"))
        same, eff = ao.apply(o, ao.CancelRequest())
        assert (same, eff) == (o, ())

    def test_cancel_rejected_asks_the_exchange(self):
        """-2011 on a cancel: it may have triggered or finished meanwhile; the query tells."""
        o, eff = run(stop(), ao.Send(at_ms=T0), ao.Ack(algo_id="7"), ao.CancelRequest(),
                     ao.CancelRejected(code=-2011))
        assert o.state == A.LIVE and eff[-1] == ao.QueryAlgo(client_algo_id="ps-sig1-1", not_before_ms=T0)

    def test_a_cancel_refused_after_the_stream_said_expired_changes_nothing(self):
        """With the user stream, EXPIRED (the position closed) often arrives before the refusal
        of our cancel (-2011): the refusal is a late answer, not an error."""
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Ack(algo_id="7"), ao.CancelRequest(),
                   ao.Update(status="EXPIRED", algo_id="7"))
        same, eff = ao.apply(o, ao.CancelRejected(code=-2011))
        assert (o.state, same, eff) == (A.EXPIRED, o, ())


class TestAmbiguity:
    def test_timeout_goes_unknown_and_queries(self):
        o, eff = run(stop(), ao.Send(at_ms=T0), ao.Timeout(at_ms=T0 + 5_000))
        assert o.state == A.UNKNOWN and eff[-1] == ao.QueryAlgo(client_algo_id="ps-sig1-1", not_before_ms=T0 + 5_000)

    def test_not_found_too_early_proves_nothing(self):
        """The request may still be on the wire: stay UNKNOWN, ask again after recvWindow."""
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Timeout(at_ms=T0 + 100))
        o, eff = ao.apply(o, ao.QueryResult(at_ms=T0 + 200, found=False))
        assert o.state == A.UNKNOWN
        assert eff == (ao.QueryAlgo(client_algo_id="ps-sig1-1", not_before_ms=T0 + 5_000 + 1_000 + 1),)

    def test_not_found_after_recv_window_allows_a_resend_with_the_same_id(self):
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Timeout(at_ms=T0 + 100))
        o, eff = ao.apply(o, ao.QueryResult(at_ms=T0 + 6_001, found=False))
        assert (o.state, eff) == (A.NEW_LOCAL, ())
        o, eff = ao.apply(o, ao.Send(at_ms=T0 + 7_000))
        assert eff == (ao.SubmitAlgo(client_algo_id="ps-sig1-1", attempt=2),)

    def test_a_confirmed_order_is_never_resent(self):
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Ack(algo_id="7"))
        same, eff = ao.apply(o, ao.QueryResult(at_ms=T0 + 60_000, found=False))
        assert same.state == A.LIVE and [e.kind for e in eff] == [order_rules.NOT_FOUND_AFTER_ACK]

    def test_duplicate_client_id_means_an_earlier_attempt_arrived(self):
        o, eff = run(stop(), ao.Send(at_ms=T0), ao.Reject(attempt=1, code=-4116))
        assert o.state == A.UNKNOWN and isinstance(eff[-1], ao.QueryAlgo)

    def test_found_by_query_takes_the_exchanges_status(self):
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Timeout(at_ms=T0 + 100),
                   ao.QueryResult(at_ms=T0 + 200, found=True, status="NEW", algo_id="7"))
        assert (o.state, o.algo_id, o.confirmed) == (A.LIVE, "7", True)

    def test_a_reject_for_an_older_attempt_is_ignored(self):
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Timeout(at_ms=T0 + 1),
                   ao.QueryResult(at_ms=T0 + 7_000, found=False), ao.Send(at_ms=T0 + 8_000))
        same, eff = ao.apply(o, ao.Reject(attempt=1, code=-2021))
        assert (same, eff) == (o, ())


class TestBadInput:
    def test_events_the_table_does_not_allow_are_reported_not_applied(self):
        o = stop()
        same, eff = ao.apply(o, ao.Ack(algo_id="7"))
        assert same == o and [e.kind for e in eff] == [order_rules.INVALID_TRANSITION]

    def test_unknown_status_and_conflicting_ids_are_reported(self):
        o, _ = run(stop(), ao.Send(at_ms=T0), ao.Ack(algo_id="7"))
        same, eff = ao.apply(o, ao.Update(status="PAUSED", algo_id="7"))
        assert same == o and [e.kind for e in eff] == [order_rules.INVALID_EVENT]
        same, eff = ao.apply(o, ao.Update(status="TRIGGERED", algo_id="8"))
        assert same == o and [e.kind for e in eff] == [ao.ALGO_ID_CONFLICT]

    def test_a_bool_is_not_a_time(self):
        same, eff = ao.apply(stop(), ao.Send(at_ms=True))
        assert same.state == A.NEW_LOCAL and [e.kind for e in eff] == [order_rules.INVALID_EVENT]
