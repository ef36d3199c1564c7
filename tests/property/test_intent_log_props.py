"""The intent log's codec (``services.brain.intent_log``): every record written is read back
exactly; a torn tail or damaged bytes anywhere lose only the damaged records, are counted, and
never raise."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import wire
from services.brain import intent_log as il

_ids = st.from_regex(r"\A(ae|ax)-[A-Za-z0-9]{1,12}-[0-9]{1,3}\Z")
_floats = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def intents(draw) -> il.Intent:
    cid = draw(_ids)
    reduce_only = cid.startswith("ax")
    if draw(st.booleans()):
        body: il.Body = wire.OrderRequest(client_order_id=cid, symbol=draw(st.sampled_from(["BTCUSDT", "ETHUSDT"])),
                                          side=draw(st.sampled_from(["BUY", "SELL"])), order_type="MARKET",
                                          qty=draw(_floats), reduce_only=reduce_only, signal_id=cid[3:])
    else:
        body = wire.AlgoOrderUpdate(client_algo_id="ps" + cid[2:], symbol="BTCUSDT", side="SELL",
                                    order_type="STOP_MARKET", trigger_price=str(draw(_floats)), state="NEW_LOCAL",
                                    trade_id=cid[3:], role="STOP")
    plan = None
    if draw(st.booleans()):
        plan = il.Plan(trade_id=cid[3:], stop=draw(_floats), target=draw(_floats),
                       features=draw(st.dictionaries(st.sampled_from(["rr", "atr", "vol"]), _floats, max_size=3)))
    return il.Intent(client_id=cid, at_ns=draw(st.integers(0, 2**62)), body=body, plan=plan)


def _log(items: list[il.Intent]) -> tuple[bytes, list[int]]:
    buf, ends = b"", []
    for it in items:
        buf += il.encode(it)
        ends.append(len(buf))
    return buf, ends


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(intents(), max_size=8))
def test_every_record_written_is_read_back_exactly(items):
    """Round trip: the records come back equal and in order, with no damage counted."""
    buf, _ = _log(items)
    got = il.decode(buf)
    assert list(got.intents) == items
    assert (got.good_bytes, got.corrupt, got.torn, got.dropped_bytes) == (len(buf), 0, 0, 0)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(intents(), min_size=1, max_size=6), st.data())
def test_a_torn_tail_drops_only_the_last_record_and_is_counted(items, data):
    """A crash in the middle of the last write: every earlier record is kept, the torn one is
    dropped and counted as one torn tail, nothing raises."""
    buf, ends = _log(items)
    start = ends[-2] if len(ends) > 1 else 0
    cut = data.draw(st.integers(start + 1, ends[-1] - 1))
    got = il.decode(buf[:cut])
    assert list(got.intents) == items[:-1]
    assert (got.good_bytes, got.corrupt, got.torn, got.dropped_bytes) == (start, 0, 1, cut - start)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(intents(), min_size=2, max_size=6), st.data())
def test_a_damaged_record_in_the_middle_loses_that_record_only(items, data):
    """A flipped byte inside one record (not the last): the checksum rejects it, the reader
    finds the next record, the damage is counted once, every other record is read back."""
    buf, ends = _log(items)
    k = data.draw(st.integers(0, len(items) - 2))
    start = ends[k - 1] if k else 0
    pos = data.draw(st.integers(start + il.HEADER_BYTES, ends[k] - 1))  # inside the payload
    bad = bytearray(buf)
    bad[pos] ^= data.draw(st.integers(1, 255))
    got = il.decode(bytes(bad))
    assert list(got.intents) == items[:k] + items[k + 1:]
    assert (got.corrupt, got.torn, got.dropped_bytes) == (1, 0, ends[k] - start)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(junk):
    """Whatever the file holds, decoding returns (possibly nothing) and never raises."""
    got = il.decode(junk)
    assert got.good_bytes <= len(junk)
    assert got.dropped_bytes == len(junk) - got.good_bytes or got.corrupt


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(intents(), max_size=6), st.binary(max_size=40))
def test_garbage_appended_after_good_records_is_a_torn_tail(items, junk):
    """Bytes after the last good record that form no record are one torn tail, whatever they are."""
    buf, _ = _log(items)
    got = il.decode(buf + junk)
    assert list(got.intents) == items
    assert (got.good_bytes, got.torn, got.dropped_bytes) == (len(buf), 1 if junk else 0, len(junk))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(intents(), st.integers(1 << 32, (1 << 64) - 1))
def test_a_template_stamped_with_a_time_is_byte_for_byte_the_encoded_intent(it, at_ns):
    """``template(...).stamped(t)`` (the exit lane's record, encoded ahead) equals
    ``encode`` of the same intent at time ``t``; a time of another msgpack width is refused."""
    import pytest

    t = il.template(it.client_id, it.body, it.plan)
    assert t.stamped(at_ns) == il.encode(il.Intent(client_id=it.client_id, at_ns=at_ns, body=it.body, plan=it.plan))
    from common.errors import DataError

    with pytest.raises(DataError):
        t.stamped((1 << 32) - 1)
