"""The C publisher (common/_ringc.c) writes exactly the words the numba kernel writes.

``ring_publish`` in common/ring.py is the reference: for any fields, publishing through the
C method into one ring and through the kernel into another leaves identical segments (slot
payload, stamp, writer cursor), across the wrap of the slots. Then the C method's edges:
argument types, use after close, a buffer that is not a ring.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import ring as rg
from common.errors import RingError
from common.records import Kind, empty
from common.ring import Ring

_ringc = pytest.importorskip("common._ringc", reason="C publisher not built (no compiler at install)")

i64 = st.integers(-(2**63), 2**63 - 1)
f64 = st.floats(allow_nan=True, allow_infinity=True)
record = st.tuples(st.integers(0, 2**20), st.integers(0, 300), st.integers(0, 300), i64, i64, i64,
                   f64, f64, f64, st.floats(width=64, allow_nan=True, allow_infinity=True))


@pytest.fixture
def pair(short_tmp):
    a = Ring.create(str(short_tmp / "c.ring"), 8)
    b = Ring.create(str(short_tmp / "numba.ring"), 8)
    yield a, b
    a.close()
    b.close()
    Ring.unlink(str(short_tmp / "c.ring"))
    Ring.unlink(str(short_tmp / "numba.ring"))


def test_the_writer_uses_the_c_publisher():
    assert rg._ringc is _ringc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=st.lists(record, min_size=1, max_size=20))
def test_c_and_numba_write_the_same_words(short_tmp, recs):
    """Fresh rings per example (the fixture's directory is shared by the examples)."""
    a = Ring.create(str(short_tmp / "c.ring"), 8)
    b = Ring.create(str(short_tmp / "n.ring"), 8)
    try:
        w = a.writer()
        seqs = [w.publish(*r) for r in recs]  # 1 to 20 records into 8 slots: wraps
        nseqs = [int(rg.ring_publish(b.words, *r)) for r in recs]
        assert seqs == nseqs == list(range(len(recs)))
        assert np.array_equal(a.words[rg.SLOTS_W:], b.words[rg.SLOTS_W:])
        assert a.words[rg.WRITER_CURSOR_W] == b.words[rg.WRITER_CURSOR_W] == len(recs)
    finally:
        a.close()
        b.close()
        Ring.unlink(str(short_tmp / "c.ring"))
        Ring.unlink(str(short_tmp / "n.ring"))


def test_a_reader_gets_what_the_c_publisher_wrote(pair):
    a, _ = pair
    w = a.writer()
    w.publish(7, Kind.BOOK, 3, 123, 456, 789, 100.5, 2.0, 100.75, 1.5)
    w.publish(np.int64(8), np.int32(1), 0, 1, 2, 3, np.float32(4.0), 5)  # numpy scalars, int price
    out = empty(4)
    assert a.reader().read_batch(out) == 2
    r0, r1 = out[0], out[1]
    assert (r0["symbol_id"], r0["kind"], r0["flags"], r0["recv_ns"], r0["event_ms"], r0["id"]) == \
        (7, int(Kind.BOOK), 3, 123, 456, 789)
    assert (r0["price"], r0["qty"], r0["aux"], r0["aux_qty"]) == (100.5, 2.0, 100.75, 1.5)
    assert (r1["symbol_id"], r1["id"], r1["price"], r1["qty"], r1["aux"], r1["aux_qty"]) == (8, 3, 4.0, 5.0, 0.0, 0.0)


@pytest.mark.parametrize("args,error", [
    ((1, 1, 0, 1, 1, 1.5, 1.0, 1.0), TypeError),       # a float id is refused, not truncated
    ((1, 1, 0, 1, 1, None, 1.0, 1.0), TypeError),
    ((1, 1, 0, 1, 1, 1, "1.0", 1.0), TypeError),
    ((1, 1, 0, 1, 1, 2**63, 1.0, 1.0), OverflowError),
    ((1, 1, 0, 1, 1, 1, 1.0), TypeError),              # too few
    ((1, 1, 0, 1, 1, 1, 1.0, 1.0, 0.0, 0.0, 0.0), TypeError),  # too many
])
def test_bad_arguments_raise_and_write_nothing(pair, args, error):
    a, _ = pair
    w = a.writer()
    before = a.words.copy()
    with pytest.raises(error):
        w.publish(*args)
    assert np.array_equal(a.words, before)


def test_publish_after_close_is_a_ring_error(short_tmp):
    r = Ring.create(str(short_tmp / "x.ring"), 8)
    w = r.writer()
    w.publish(1, 1, 0, 1, 1, 1, 1.0, 1.0)
    r.close()
    with pytest.raises(RingError):
        w.publish(1, 1, 0, 1, 1, 2, 1.0, 1.0)
    Ring.unlink(str(short_tmp / "x.ring"))


def test_a_buffer_that_is_not_a_ring_is_refused():
    with pytest.raises(TypeError):
        _ringc.Publisher(np.zeros(4096, np.float32), rg.SLOTS_W, rg.WRITER_CURSOR_W, rg.BUSY)
    with pytest.raises(ValueError):  # slots not a power of two
        _ringc.Publisher(np.zeros(rg.SLOTS_W + 3 * 8, np.int64), rg.SLOTS_W, rg.WRITER_CURSOR_W, rg.BUSY)
    with pytest.raises((TypeError, ValueError)):  # read-only (numpy says ValueError)
        ro = np.zeros(rg.SLOTS_W + 16 * 8, np.int64)
        ro.flags.writeable = False
        _ringc.Publisher(ro, rg.SLOTS_W, rg.WRITER_CURSOR_W, rg.BUSY)
