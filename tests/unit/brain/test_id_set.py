"""``trader_state.IdSet``: the trader's used client ids, a set whose union with one new id does
not copy every id, and that means what a frozenset means."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.brain.trader_state import IdSet, TraderState, with_id


def test_reads_as_a_frozenset():
    """in, len, iteration, equality both ways (frozenset, set), hash and pickling as a frozenset."""
    ids = with_id(frozenset({"ae-a-0", "ax-a-1"}), "ae-b-0")
    want = frozenset({"ae-a-0", "ax-a-1", "ae-b-0"})
    assert type(ids) is IdSet and len(ids) == 3 and "ae-b-0" in ids and "ae-c-0" not in ids
    assert ids == want and want == ids and ids == set(want) and sorted(ids) == sorted(want)
    assert hash(ids) == hash(want)
    assert pickle.loads(pickle.dumps(ids)) == want
    assert TraderState(used_cids=ids) == TraderState(used_cids=want)


def test_older_sets_keep_their_ids():
    """Each union is a new set; the one it came from is unchanged (an older trader state keeps its ids)."""
    a = IdSet({"x"})
    b = a | {"y"}
    c = b | ("z",)
    assert (set(a), set(b), set(c)) == ({"x"}, {"x", "y"}, {"x", "y", "z"})
    assert b | {"y"} is b  # nothing new: the same (immutable) set
    with pytest.raises(TypeError):
        a | "xy"  # type: ignore[operator]  # as frozenset: a union with a set, not a string


def test_recent_part_is_folded_in():
    """After many single-id unions the ids live mostly in the large part, the small one stays small."""
    ids = IdSet(f"old-{i}" for i in range(10_000))
    for i in range(1_000):
        ids = ids | {f"new-{i}"}
    assert len(ids) == 11_000 and all(f"new-{i}" in ids for i in range(1_000))
    assert len(ids._recent) <= 105 and len(ids._base) + len(ids._recent) == 11_000


@given(start=st.frozensets(st.text(max_size=3), max_size=40),
       adds=st.lists(st.frozensets(st.text(max_size=3), max_size=3), max_size=80))
@settings(max_examples=300, deadline=None)
def test_same_members_as_frozenset_unions(start, adds):
    """Any sequence of unions gives the members the same frozenset unions give, at every step."""
    ids, ref = IdSet(start), start
    for more in adds:
        ids, ref = ids | more, ref | more
        assert ids == ref and len(ids) == len(ref) and set(iter(ids)) == ref
