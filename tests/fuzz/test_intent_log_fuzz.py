"""Fuzzing the intent log's reader (``services.brain.intent_log.decode``): mutated valid logs
(bytes flipped, inserted, deleted, the file cut anywhere) and arbitrary bytes.

Invariants on every input: decoding returns (never raises); every record it yields is one
that was written, in the order written (damage can only drop records, never change, invent
or reorder one: each record is length-checked and CRC-32-checked); the counts are consistent
(``good_bytes`` within the input; damage counted whenever a written record is missing from a
file that was only cut or flipped)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import wire
from services.brain import intent_log as il

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _written(n: int) -> list[il.Intent]:
    out = []
    for i in range(n):
        cid = f"a{'ex'[i % 2]}-S{i}-{i % 3}"
        body = wire.OrderRequest(client_order_id=cid, symbol="BTCUSDT", side="BUY" if i % 2 else "SELL",
                                 order_type="MARKET", qty=0.001 * (i + 1), reduce_only=bool(i % 2), signal_id=f"S{i}")
        out.append(il.Intent(client_id=cid, at_ns=1_700_000_000_000_000_000 + i, body=body,
                             plan=il.Plan(trade_id=f"S{i}", stop=99.0, target=104.0) if i % 2 == 0 else None))
    return out


def _is_ordered_subset(got: tuple[il.Intent, ...], written: list[il.Intent]) -> bool:
    it = iter(written)
    return all(any(g == w for w in it) for g in got)


@FUZZ
@given(st.integers(1, 8), st.data())
def test_mutated_logs_yield_only_written_records_in_order(n, data):
    """Flips, insertions and deletions anywhere: only written records come out, in order."""
    written = _written(n)
    buf = bytearray(b"".join(il.encode(w) for w in written))
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=12))
        elif buf:
            del buf[pos:pos + data.draw(st.integers(1, 12))]
    got = il.decode(bytes(buf))
    assert _is_ordered_subset(got.intents, written)
    assert 0 <= got.good_bytes <= len(buf) and got.dropped_bytes <= len(buf)


@FUZZ
@given(st.integers(1, 8), st.data())
def test_a_cut_anywhere_keeps_exactly_the_whole_records_before_it(n, data):
    """A log cut at any byte (a crash mid-write) gives exactly the records that ended before the
    cut; a cut inside a record is one torn tail."""
    written = _written(n)
    frames = [il.encode(w) for w in written]
    buf = b"".join(frames)
    cut = data.draw(st.integers(0, len(buf)))
    got = il.decode(buf[:cut])
    ends, total = [], 0
    for f in frames:
        total += len(f)
        ends.append(total)
    whole = sum(1 for e in ends if e <= cut)
    assert list(got.intents) == written[:whole]
    assert got.torn == (0 if cut in (0, *ends) else 1) and got.corrupt == 0


@FUZZ
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_never_raise_and_yield_nothing_unwritten(junk):
    """Random bytes: a result, never an exception; whatever comes out decoded and checked."""
    got = il.decode(junk)
    assert all(isinstance(i, il.Intent) for i in got.intents)
    assert 0 <= got.good_bytes <= len(junk)
