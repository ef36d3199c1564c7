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
    from services.brain import risk, trader_state

    st0 = trader_state.TraderState()
    assert fp._fast_fields(trader_state.TraderState) is not None
    assert fp.replace(st0, fees=Decimal(5), used_cids=frozenset({"x"})) == \
        dataclasses.replace(st0, fees=Decimal(5), used_cids=frozenset({"x"}))
    r0 = risk.initial_state(1000.0, 0)
    assert fp.replace(r0, halted=True) == dataclasses.replace(r0, halted=True)


@given(a=st.integers(), b=st.text(max_size=5) | st.none(), c=st.lists(st.integers(), max_size=3) | st.none())
@settings(max_examples=200, deadline=None)
def test_build_same_as_the_constructor(a, b, c):
    """fp.build(cls, **fields) equals cls(**fields), with the same dict in the same order, for
    any subset of the optional fields."""
    kw = {"a": a, **({"b": b} if b is not None else {}), **({"c": tuple(c)} if c is not None else {})}
    got, want = fp.build(Plain, **kw), Plain(**kw)
    assert got == want and type(got) is Plain
    assert list(vars(got).items()) == list(vars(want).items())
    assert got.d is not fp.build(Plain, **kw).d  # default_factory: a new dict each time


def _slow_grid(x: Decimal, step: Decimal) -> tuple[int, int]:
    """The general path of venue.filters (common unit of the two exponents), as a reference."""
    from venue.filters import _grid_units

    return _grid_units(x, step)


@given(x=st.decimals(min_value="-1e9", max_value="1e9", allow_nan=False, allow_infinity=False, places=None),
       step=st.sampled_from(["0.1", "0.10", "0.001", "1", "5", "0.5", "1E+1", "0.00001000", "25.0", "0.0000001"]),
       side=st.sampled_from(["BUY", "SELL"]))
@settings(max_examples=1000, deadline=None)
def test_grid_fast_path_equals_the_general_one(x, step, side):
    """round_qty_down, round_price and is_on_grid through the exact-ratio path (a cached
    positive step) give the same Decimal, digit for digit and exponent for exponent, as the
    general common-unit path."""
    from venue import filters as vf

    s = Decimal(step)
    q, u = _slow_grid(x, s)
    want_down = vf._on_grid(q // u, s)
    k, r = divmod(q, u)
    if 2 * r > u or (2 * r == u and side == "SELL"):
        k += 1
    want_round = vf._on_grid(k, s)
    for _ in range(2):  # the first call caches the step, the second reads the cache
        got_down, got_round = vf.round_qty_down(x, s), vf.round_price(x, s, side)
        assert str(got_down) == str(want_down) and got_down.as_tuple() == want_down.as_tuple()
        assert str(got_round) == str(want_round) and got_round.as_tuple() == want_round.as_tuple()
        assert vf.is_on_grid(x, s) == (q % u == 0)


@given(x=st.floats(allow_nan=True, allow_infinity=True) | st.decimals(allow_nan=True, allow_infinity=True)
       | st.integers() | st.booleans() | st.text(max_size=6))
@settings(max_examples=500, deadline=None)
def test_to_decimal_fast_path_is_the_general_one(x):
    """to_decimal's float and Decimal first cases give what the general isinstance chain gives
    (shortest repr of a float, a finite Decimal as is, None for the rest)."""
    from decimal import InvalidOperation

    from venue.filters import to_decimal

    def general(v):
        if isinstance(v, bool):
            return None
        try:
            if isinstance(v, Decimal):
                d = v
            elif isinstance(v, int):
                d = Decimal(v)
            elif isinstance(v, float):
                d = Decimal(repr(v))
            elif isinstance(v, str):
                d = Decimal(v.strip())
            else:
                return None
        except (InvalidOperation, ValueError):
            return None
        return d if d.is_finite() else None

    got, want = to_decimal(x), general(x)
    assert (got is None and want is None) or (got is not None and want is not None
                                              and got.as_tuple() == want.as_tuple())
