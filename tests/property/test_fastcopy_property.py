"""``common.fastcopy.replace`` is ``dataclasses.replace``: same result on generated and real classes."""

from __future__ import annotations

import dataclasses
import functools
from decimal import Decimal
from dataclasses import InitVar, dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import fastcopy as fp


@dataclass(frozen=True, kw_only=True)
class Plain:
    a: int = 0
    b: str = ""
    c: tuple[int, ...] = ()
    d: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Validated:
    a: int = 0

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("a < 0")


@dataclass(frozen=True)
class WithInitFalse:
    a: int = 0
    b: int = field(default=7, init=False)


@dataclass
class WithInitVar:
    a: int = 0
    scale: InitVar[int] = 1


@dataclass(frozen=True, slots=True)
class Slotted:
    a: int = 0
    b: int = 0


@dataclass(frozen=True)
class Cached:
    a: int = 0

    @functools.cached_property
    def double(self) -> int:
        return 2 * self.a


@given(a=st.integers(), b=st.text(max_size=5), c=st.lists(st.integers(), max_size=3),
       new_a=st.integers() | st.none(), new_b=st.text(max_size=5) | st.none())
@settings(max_examples=200, deadline=None)
def test_same_as_dataclasses_replace(a, b, c, new_a, new_b):
    """For a plain frozen dataclass the fast copy equals dataclasses.replace, and the original
    is untouched."""
    obj = Plain(a=a, b=b, c=tuple(c), d={"k": a})
    changes = {k: v for k, v in (("a", new_a), ("b", new_b)) if v is not None}
    got, want = fp.replace(obj, **changes), dataclasses.replace(obj, **changes)
    assert got == want and type(got) is Plain
    assert got is not obj and obj == Plain(a=a, b=b, c=tuple(c), d={"k": a})
    assert hash(got.c) == hash(want.c)


def test_unknown_field_is_a_type_error():
    """A misspelt field raises TypeError, as dataclasses.replace does, on both paths."""
    with pytest.raises(TypeError):
        fp.replace(Plain(), nope=1)
    with pytest.raises(TypeError):
        fp.replace(Validated(), nope=1)


def test_classes_that_need_init_take_the_slow_path():
    """Validation, init=False fields, InitVars, slots and cached properties go through
    dataclasses.replace, so they behave exactly as before."""
    with pytest.raises(ValueError):
        fp.replace(Validated(a=1), a=-1)
    w = WithInitFalse(a=1)
    object.__setattr__(w, "b", 99)
    assert fp.replace(w, a=2).b == dataclasses.replace(w, a=2).b == 7
    assert fp.replace(WithInitVar(a=1), scale=3) == dataclasses.replace(WithInitVar(a=1), scale=3)
    assert fp.replace(Slotted(a=1, b=2), b=3) == Slotted(a=1, b=3)
    c = Cached(a=2)
    assert c.double == 4
    assert fp.replace(c, a=5).double == 10
    assert {cls: fp._fields_of[cls] is None for cls in (Validated, WithInitFalse, WithInitVar, Slotted, Cached)} == \
        dict.fromkeys((Validated, WithInitFalse, WithInitVar, Slotted, Cached), True)


def test_real_state_classes_copy_every_field():
    """The trader's and the risk layer's state classes give, field for field, what
    dataclasses.replace gives (the trader state takes the fast path)."""
    from services.brain import risk, trading_state

    st0 = trading_state.TraderState()
    assert fp._fast_fields(trading_state.TraderState) is not None
    assert fp.replace(st0, fees=Decimal(5), used_cids=frozenset({"x"})) == \
        dataclasses.replace(st0, fees=Decimal(5), used_cids=frozenset({"x"}))
    r0 = risk.initial_state(1000.0, 0)
    assert fp.replace(r0, halted=True) == dataclasses.replace(r0, halted=True)
