"""The execution shell's parts and what they rely on (``execution_parts.ExecutionParts``): every
attribute ``Execution.__init__`` sets is declared there with its type, nothing is declared that
the shell does not set, every part builds on the declarations, and each type names a real type
(it resolves, and is never ``Any``)."""

from __future__ import annotations

import typing
from pathlib import Path

from services.brain import (execution, execution_answers, execution_inline, execution_parts, execution_send,
                            execution_startup, execution_timers, jobs)
from tests.unit.brain.test_execution import make_rig

PARTS = (execution_startup.Startup, execution_timers.Timers, execution_send.OrderSend, execution_inline.InlineSend,
         execution_answers.Answers)


def declared() -> dict[str, object]:
    """The declarations resolved, with the names the parts module imports for type checking."""
    return typing.get_type_hints(execution_parts.ExecutionParts, localns={"Phase": execution_startup.Phase,
                                                                          "jobs": jobs})


def test_every_attribute_the_shell_sets_is_declared_and_nothing_more(tmp_path: Path):
    """A new shell's instance attributes are exactly the declared ones: a part never relies on
    an attribute the declarations do not name, and no declaration is left over."""
    ex = make_rig(tmp_path).ex
    assert set(vars(ex)) == set(declared())


def test_every_part_builds_on_the_declarations():
    """Each part of ``Execution`` is an ``ExecutionParts`` (its reader finds what it relies on there)."""
    assert [issubclass(p, execution_parts.ExecutionParts) for p in PARTS] == [True] * len(PARTS)
    assert set(execution.Execution.__bases__) == set(PARTS)


def test_no_declaration_is_any():
    """Every declared type resolves, and none of them is ``typing.Any``."""
    hints = declared()
    assert [name for name, t in hints.items() if t is typing.Any] == []


def test_the_brain_offers_every_member_of_its_port_with_the_same_parameters():
    """``Brain`` is a ``wiring.BrainPort``: each method of the port is a method of the brain
    with the same parameter names (and defaults), and ``ring`` and ``symbol_info`` are set in
    its ``__init__``."""
    import inspect

    from services.brain import wiring
    from services.brain.app import Brain

    methods = {n for n, v in vars(wiring.BrainPort).items() if inspect.isfunction(v) and not n.startswith("__")}
    assert methods == {"clock_ms", "now_ns", "book_top", "quote", "learn", "publish_exec", "trading_block_reason"}
    for name in sorted(methods):
        want = inspect.signature(getattr(wiring.BrainPort, name)).parameters
        got = inspect.signature(getattr(Brain, name)).parameters
        assert [(p.name, p.default) for p in got.values()] == [(p.name, p.default) for p in want.values()], name
    init = inspect.getsource(Brain.__init__)
    assert "self.ring = " in init and "self.symbol_info: " in init
