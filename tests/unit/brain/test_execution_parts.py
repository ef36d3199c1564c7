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
    """``Brain`` is an ``execution_parts.BrainPort``: each method of the port is a method of the brain
    with the same parameter names (and defaults), and ``ring`` and ``symbol_info`` are set in
    its ``__init__``."""
    import inspect

    from services.brain.app import Brain

    methods = {n for n, v in vars(execution_parts.BrainPort).items() if inspect.isfunction(v) and not n.startswith("__")}
    assert methods == {"clock_ms", "now_ns", "book_top", "quote", "learn", "publish_exec", "trading_block_reason"}
    for name in sorted(methods):
        want = inspect.signature(getattr(execution_parts.BrainPort, name)).parameters
        got = inspect.signature(getattr(Brain, name)).parameters
        assert [(p.name, p.default) for p in got.values()] == [(p.name, p.default) for p in want.values()], name
    init = inspect.getsource(Brain.__init__)
    assert "self.ring = " in init and "self.symbol_info: " in init


def test_every_host_offers_each_method_of_the_shells_port_with_the_same_parameters():
    """The shell's one port onto what runs it (``execution_parts.Host``) is offered whole, with
    the same parameter names and defaults, by the brain's host, replay's host, the backtest and
    the tests' stand-in: a host missing a method, or taking other arguments, fails here rather
    than in the middle of a trade."""
    import inspect

    from research.backtest import Backtest
    from research.fast_backtest import FastBacktest
    from services.brain import execution_build
    from tests.fake_host import FnHost

    methods = {n for n, v in vars(execution_parts.Host).items() if inspect.isfunction(v) and not n.startswith("__")}
    assert methods == {"journal_sync", "publish", "quote", "learn", "symbol_filters", "symbols", "clock_ms",
                       "mono_s", "block_reason"}
    for host in (execution_build.BrainHost, execution_build.ReplayHost, Backtest, FastBacktest, FnHost):
        for name in sorted(methods):
            want = inspect.signature(getattr(execution_parts.Host, name)).parameters
            got = inspect.signature(getattr(host, name)).parameters
            assert [(p.name, p.default) for p in got.values()] == [(p.name, p.default) for p in want.values()], \
                (host.__name__, name)


def test_the_shell_publishes_through_its_host_and_holds_back_what_a_send_publishes(tmp_path: Path):
    """``Execution.publish`` reaches the host at once, except while an order's send runs: what
    the send published then follows the order's row, in order (``_held_send``); a send inside
    a send keeps the outer one's hold."""
    rig = make_rig(tmp_path)
    ex = rig.ex
    rig.published.clear()
    ex.publish("a")
    sends: list[str] = []

    def inner() -> None:
        ex.publish("inner-sent")
        sends.append("inner")

    def outer() -> None:
        ex.publish("outer-sent")
        ex._held_send("c2", inner, "inner-row")
        sends.append("outer")

    ex._held_send("c1", outer, "outer-row", first=lambda: rig.published.append(("announced", True)))
    ex.publish("b", journal=False)
    assert sends == ["inner", "outer"]
    assert rig.published == [("a", True), ("announced", True), ("outer-row", True), ("outer-sent", True),
                             ("inner-row", True), ("inner-sent", True), ("b", False)]
