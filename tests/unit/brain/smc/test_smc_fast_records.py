"""The label records ``smc/fast.py`` builds through its plain twins (``fast._twin``): once
returned they are ordinary instances of the frozen dataclasses, as immutable, comparable,
hashable and printable as records made by the constructors."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from services.brain.smc import SmcConfig, fast, labels
from tests.conftest import BTC_15M_CSV
from services.brain.smc_cli import read_candles

ALL_KINDS = (labels.Pivot, labels.Swing, labels.Structure, labels.FairValueGap,
             labels.FairValueGapMitigated, labels.OrderBlock, labels.OrderBlockMitigated,
             labels.OrderBlockReset, labels.LiquidityPool, labels.LiquiditySwept,
             labels.PreviousHighLow, labels.SessionRange, labels.Retracement)


def _labels(n: int = 3_000) -> list:
    c = read_candles(BTC_15M_CSV)
    st = fast.new_state(SmcConfig(swing_length=5))
    out = []
    for row in zip(*(c[k][:n] for k in ("time_ms", "open", "high", "low", "close", "volume"))):
        out += fast.update(st, *row)
    return out


@pytest.fixture(scope="module")
def records() -> list:
    return _labels()


def test_every_kind_is_emitted_and_is_exactly_its_frozen_class(records):
    """3,000 real 15m candles emit every kind of record, each of exactly one of the label
    classes (never a twin, never a subclass)."""
    assert {type(x) for x in records} == set(ALL_KINDS)


def test_a_built_record_is_frozen(records):
    """Setting or deleting a field of a returned record raises, as for a constructed one."""
    for x in {type(x): x for x in records}.values():
        name = dataclasses.fields(x)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(x, name, 0)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(x, name)


def test_a_built_record_equals_hashes_and_pickles_as_a_constructed_one(records):
    """The constructor given a record's fields makes an equal record with the same hash and
    repr; a record survives a pickle round trip."""
    for x in records[:2_000]:
        y = type(x)(**{f.name: getattr(x, f.name) for f in dataclasses.fields(x)})
        assert x == y and hash(x) == hash(y) and repr(x) == repr(y)
        assert repr(pickle.loads(pickle.dumps(x))) == repr(x)  # NaN fields: equal by repr


def test_a_twin_has_its_records_slots_in_the_same_order():
    """Each twin lists the frozen class's slots in field order (the layout the class switch
    relies on) and nothing else."""
    for cls in ALL_KINDS:
        twin = fast._twin(cls)
        assert twin.__slots__ == cls.__slots__ == tuple(f.name for f in dataclasses.fields(cls))
        assert twin.__bases__ == (object,)


def test_update_events_are_the_rows_of_updates_event_labels():
    """``update_events`` on one state and ``update`` on another, fed the same 3,000 candles:
    its rows, read back as ``update`` reads them (``fast._rare``), are exactly ``update``'s
    labels other than the per-candle records (periods, sessions, retracements)."""
    per_candle = (labels.PreviousHighLow, labels.SessionRange, labels.Retracement)
    c = read_candles(BTC_15M_CSV)
    a, b = fast.new_state(SmcConfig(swing_length=5)), fast.new_state(SmcConfig(swing_length=5))
    w = fast.K.EV_WIDTH
    n_rows = 0
    for t, row in enumerate(zip(*(c[k][:3_000] for k in
                                  ("time_ms", "open", "high", "low", "close", "volume")))):
        want = [x for x in fast.update(a, *row) if not isinstance(x, per_candle)]
        ev = fast.update_events(b, *row)
        assert len(ev) == w * len(want)
        assert [fast._rare(ev, j, t) for j in range(0, len(ev), w)] == want
        n_rows += len(want)
    assert n_rows > 1_000 and b.n == a.n == 3_000 and b.bars == 3_000
