"""The start-up heap frozen and the collector's pauses timed (common/heap.py)."""

from __future__ import annotations

import gc

import pytest

from common import heap


@pytest.fixture
def unfrozen():
    """Every test leaves the process's collector as it found it (nothing frozen)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_freeze_moves_the_objects_made_so_far_out_of_the_collectors_sight(unfrozen):
    """An object made before ``freeze`` is no longer walked by a collection; one made after is."""
    before = _Cycle()
    assert any(o is before for o in gc.get_objects())
    out = heap.freeze()
    after = _Cycle()
    tracked = gc.get_objects()
    assert not any(o is before for o in tracked)
    assert any(o is after for o in tracked)
    assert out == {"gc_frozen": gc.get_freeze_count()} and out["gc_frozen"] > 0


def test_freeze_collects_the_young_garbage_first(unfrozen):
    """A garbage cycle made just before ``freeze`` is collected, not frozen for ever."""
    import weakref

    c = _Cycle()
    ref = weakref.ref(c)
    del c
    heap.freeze()
    assert ref() is None


def test_pauses_are_timed_per_generation_while_installed():
    """Each collection: one run in its generation, its pause from the clock; none once closed."""
    ticks = iter([1_000, 3_500, 10_000, 10_400, 20_000, 21_000])
    p = heap.GcPauses(clock_ns=lambda: next(ticks)).install()
    try:
        p._on_gc("start", {"generation": 0})
        p._on_gc("stop", {"generation": 0})
        p._on_gc("start", {"generation": 2})
        p._on_gc("stop", {"generation": 2})
        p._on_gc("start", {"generation": 0})
        p._on_gc("stop", {"generation": 0})
        assert (p.runs, p.max_ns, p.total_ns) == ([2, 0, 1], [2_500, 0, 400], [3_500, 0, 400])
        p.frozen = 12
        snap = p.snapshot()
        assert snap["frozen"] == 12  # as set by the caller: never counted in a snapshot
        assert snap["gen0"] == {"runs": 2, "max_ms": 0.003, "total_ms": 0.004}
        assert snap["gen2"] == {"runs": 1, "max_ms": 0.0, "total_ms": 0.0}
    finally:
        p.close()
    assert p._on_gc not in gc.callbacks


def test_a_real_collection_is_counted_and_a_stop_without_its_start_is_not():
    """``gc.collect(0)`` under the hook: one generation-0 run; a stop seen without its start
    (installed mid-collection) is ignored."""
    p = heap.GcPauses()
    p._on_gc("stop", {"generation": 1})
    assert p.runs == [0, 0, 0]
    p.install()
    try:
        gc.collect(0)
    finally:
        p.close()
    assert p.runs[0] >= 1 and p.runs[2] == 0
    p.install()
    p.install()  # installing twice hooks once
    try:
        assert gc.callbacks.count(p._on_gc) == 1
    finally:
        p.close()


def test_the_pauses_freeze_keeps_the_count_for_its_snapshots(unfrozen):
    """``GcPauses.freeze``: the start-up heap frozen, and its count (taken once, there) is the
    snapshot's ``frozen``."""
    p = heap.GcPauses()
    out = p.freeze()
    assert out == {"gc_frozen": gc.get_freeze_count()} and out["gc_frozen"] > 0
    assert p.snapshot()["frozen"] == p.frozen == out["gc_frozen"]
