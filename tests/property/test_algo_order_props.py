"""Properties of the algo order state machine over arbitrary event sequences."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from venue import algo_orders as ao

T0 = 1_700_000_000_000
statuses = st.sampled_from([*ao.EXCHANGE_STATUS, "PAUSED", ""])
ids = st.sampled_from(["", "7", "8"])
times = st.integers(T0, T0 + 20_000)
events = st.one_of(
    st.builds(ao.Send, at_ms=times), st.builds(ao.Ack, algo_id=ids),
    st.builds(ao.Reject, attempt=st.integers(0, 3), code=st.sampled_from([-4116, -2021, -1102])),
    st.builds(ao.Update, status=statuses, algo_id=ids, actual_order_id=st.sampled_from(["", "99"])),
    st.just(ao.CancelRequest()), st.builds(ao.CancelRejected, code=st.just(-2011)), st.just(ao.Canceled()),
    st.builds(ao.Timeout, at_ms=times),
    st.builds(ao.QueryResult, at_ms=times, found=st.booleans(), status=statuses, algo_id=ids),
)


def fresh() -> ao.AlgoOrder:
    return ao.new_algo_order(client_algo_id="ps-s-1", symbol="BTCUSDT", side="SELL", order_type="STOP_MARKET",
                             trigger_price=Decimal(100))


@settings(max_examples=500, deadline=None)
@given(st.lists(events, max_size=25))
def test_invariants_hold_for_any_event_sequence(seq):
    """Terminal never changes; a confirmed order is never re-sent; the id never changes once
    known; every submit carries the one clientAlgoId with a growing attempt number."""
    o = fresh()
    attempts = []
    for e in seq:
        before = o
        o, effects = ao.apply(o, e)
        if before.is_terminal:
            assert o.state == before.state
        if before.algo_id:
            assert o.algo_id == before.algo_id
        for eff in effects:
            if isinstance(eff, ao.SubmitAlgo):
                assert not before.confirmed
                assert eff.client_algo_id == "ps-s-1"
                attempts.append(eff.attempt)
        assert o.client_algo_id == "ps-s-1"
    assert attempts == list(range(1, len(attempts) + 1))
