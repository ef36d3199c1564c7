"""Functional updates of frozen dataclasses, fast enough for the order path.

The pure cores (trader, risk, the order and algo-order state machines) never mutate a state:
they return a new one made with ``replace(state, field=value)``. ``dataclasses.replace`` does
that by calling the class's ``__init__`` with every field read back by ``getattr``: about
15-20 us for the trader's state classes (20-40 fields), and an exit makes eight of them, so
most of the time between a touched stop and the order on the socket was spent copying
dataclasses (bench/FINDINGS.md).

``replace`` here gives the same object for the classes where copying the instance dictionary
is provably the same thing, in about a microsecond:

- a dataclass whose instances have a ``__dict__`` (no ``__slots__``),
- no ``__post_init__`` (nothing to validate or derive again),
- every field is an ``__init__`` field and there is no ``InitVar`` (``dataclasses.replace``
  would reset an ``init=False`` field to its default; a copy would keep it),
- no ``functools.cached_property`` (its value lives in the instance dictionary and would be
  copied stale) and no ``__new__`` of its own.

Every other class (a wire message that validates itself, for instance) goes through
``dataclasses.replace`` unchanged. A property test compares the two on generated classes and
on the real state classes.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, TypeVar

T = TypeVar("T")

# class -> frozenset of field names (fast path) or None (dataclasses.replace)
_PLANS: dict[type, frozenset[str] | None] = {}


def _plan(cls: type) -> frozenset[str] | None:
    plan: frozenset[str] | None = None
    mro = cls.__mro__[:-1]  # without object
    if (dataclasses.is_dataclass(cls) and not hasattr(cls, "__post_init__") and cls.__new__ is object.__new__
            and not any("__slots__" in c.__dict__ for c in mro)
            and not any(isinstance(v, functools.cached_property) for c in mro for v in c.__dict__.values())):
        fs = dataclasses.fields(cls)
        all_fields = getattr(cls, dataclasses._FIELDS)  # type: ignore[attr-defined]  # InitVars too
        if all(f.init for f in fs) and len(all_fields) == len(fs):
            plan = frozenset(f.name for f in fs)
    _PLANS[cls] = plan
    return plan


def replace(obj: T, /, **changes: Any) -> T:
    """``dataclasses.replace(obj, **changes)``, without re-running ``__init__`` when that is
    the same thing (see the module's docstring). Unknown field names raise ``TypeError``,
    as ``dataclasses.replace`` does."""
    cls = obj.__class__
    try:
        plan = _PLANS[cls]
    except KeyError:
        plan = _plan(cls)
    if plan is None:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    for k in changes:
        if k not in plan:
            raise TypeError(f"{cls.__name__}.__init__() got an unexpected keyword argument '{k}'")
    new = object.__new__(cls)
    d = new.__dict__
    d.update(obj.__dict__)
    d.update(changes)
    return new
