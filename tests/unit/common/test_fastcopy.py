"""``common.fastcopy.replace`` against ``dataclasses.replace``, and the exact decimal grid
helpers of ``venue.filters`` that the backtest's fill path leans on."""

from __future__ import annotations

import dataclasses
import functools
from decimal import Decimal

import pytest

from common.fastcopy import replace
from services.brain.trader_state import Trade
from venue.filters import _coef, is_on_grid, round_price, round_qty_down


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plain:
    a: int
    b: tuple = ()
    c: str = "x"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Checked:
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("a must be >= 0")


@dataclasses.dataclass(frozen=True)
class Derived:
    a: int
    twice: int = dataclasses.field(init=False, default=0)


@dataclasses.dataclass(frozen=True, slots=True)
class Slotted:
    a: int
    b: int = 2


@dataclasses.dataclass(frozen=True)
class Cached:
    a: int

    @functools.cached_property
    def square(self) -> int:
        return self.a * self.a


def test_plain_record_equals_dataclasses_replace():
    """A plain frozen record: the same fields and values as dataclasses.replace, the old one untouched."""
    old = Plain(a=1, b=(1, 2))
    new = replace(old, a=5, c="y")
    assert new == dataclasses.replace(old, a=5, c="y") == Plain(a=5, b=(1, 2), c="y")
    assert type(new) is Plain and old == Plain(a=1, b=(1, 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.a = 3  # type: ignore[misc]


def test_trade_record_equals_dataclasses_replace():
    """The trader's Trade (the record copied most) comes out field for field as dataclasses.replace makes it."""
    t = Trade(trade_id="t1", symbol="BTCUSDT", side="BUY", stop=90.0, target=120.0, confidence=0.5,
              features={"rr": 2.0}, entry_cid="ae-x-0", opened_ms=1)
    new = replace(t, stop=95.0, exit_reason="STOP")
    assert new == dataclasses.replace(t, stop=95.0, exit_reason="STOP")
    assert vars(new) == vars(dataclasses.replace(t, stop=95.0, exit_reason="STOP"))


def test_other_classes_go_through_dataclasses_replace():
    """__post_init__ still validates, an init=False field is reset, slots and cached properties
    are handled, an unknown field is the same TypeError."""
    with pytest.raises(ValueError, match="a must be >= 0"):
        replace(Checked(a=1), a=-1)
    d = Derived(1)
    object.__setattr__(d, "twice", 7)
    assert replace(d, a=2).twice == 0  # as dataclasses.replace: __init__ sets the default again
    assert replace(Slotted(1), b=5) == Slotted(1, 5)
    c = Cached(3)
    assert c.square == 9
    assert replace(c, a=4).square == 16
    with pytest.raises(TypeError):
        replace(Plain(a=1), nope=2)


@pytest.mark.parametrize("text,expected", [
    ("0", (0, 0)), ("-0", (0, 0)), ("1E+5", (1, 5)), ("-0.00000001", (-1, -8)), ("123.4500", (1234500, -4)),
    ("1e-30", (1, -30)), ("-987654321987654321.123456789", (-987654321987654321123456789, -9)),
])
def test_coef_is_exact(text, expected):
    """(coefficient, exponent) of a Decimal, every digit kept, trailing zeros included."""
    assert _coef(Decimal(text)) == expected


def test_grid_rounding_keeps_the_step_exponent():
    """Rounding onto the grid: exact values written with the step's exponent."""
    assert str(round_price(Decimal("97234.126"), Decimal("0.10"), "BUY")) == "97234.10"
    assert str(round_price(Decimal("97234.15"), Decimal("0.1"), "SELL")) == "97234.2"
    assert str(round_qty_down(Decimal("0.0019999"), Decimal("0.001"))) == "0.001"
    assert is_on_grid(Decimal("1.230"), Decimal("0.01")) and not is_on_grid(Decimal("1.235"), Decimal("0.01"))


# ---------------------------------------------------------------------------- build
@dataclasses.dataclass(frozen=True, kw_only=True)
class WithFactory:
    a: int
    d: dict = dataclasses.field(default_factory=dict)
    e: str = "e"


def test_build_equals_the_constructor_field_for_field():
    """build(cls, **fields) gives what cls(**fields) gives: equal, same dict in field order, the
    defaults themselves, and a fresh default_factory value per record."""
    from common.fastcopy import build

    kw = dict(trade_id="t1", symbol="BTCUSDT", side="BUY", stop=90.0, target=120.0, confidence=0.5,
              features={"rr": 2.0}, entry_cid="ae-x-0", opened_ms=1, signal_price=100.0)
    got, want = build(Trade, **kw), Trade(**kw)
    assert got == want and list(vars(got).items()) == list(vars(want).items()) and type(got) is Trade
    assert got.entry_qty is want.entry_qty  # the default object itself, as __init__ stores it
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.stop = 1.0  # type: ignore[misc]
    one, two = build(WithFactory, a=1), build(WithFactory, a=1)
    assert one == WithFactory(a=1) and list(vars(one)) == ["a", "d", "e"] and one.d is not two.d


def test_build_keeps_the_constructor_errors_and_checks():
    """A missing or unknown field is the constructor's TypeError; a class with __post_init__,
    slots or init=False fields goes through its constructor (its checks run)."""
    from common.fastcopy import build

    with pytest.raises(TypeError):
        build(Plain)  # a missing required field
    with pytest.raises(TypeError):
        build(Plain, a=1, nope=2)
    with pytest.raises(ValueError, match="a must be >= 0"):
        build(Checked, a=-1)
    assert build(Derived, a=3) == Derived(3) and build(Derived, a=3).twice == 0
    assert build(Slotted, a=1) == Slotted(1)
    assert build(Cached, a=3).square == 9
