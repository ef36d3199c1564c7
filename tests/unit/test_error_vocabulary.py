"""One error vocabulary: bad input from outside is raised as a class of ``common/errors.py``
(``ConfigError``, ``DecodeError``, ``DataError``, ...), never as a bare ``ValueError``.

Read from the source with ``ast`` (nothing is imported). A bare ``raise ValueError`` is
allowed only in the functions of ``ALLOWED``, each with the reason it stays one (a
programmer's misuse of a function's arguments, or a caller that needs a ``ValueError``); a
new one elsewhere fails here: raise the matching class of ``common/errors.py`` instead, or
add the function here with its reason.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from common import errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "common", "venue", "research", "services", "bench")

# (file, function) -> (bare ``raise ValueError`` in it, why it stays one)
ALLOWED: dict[tuple[str, str], tuple[int, str]] = {
    ("common/wire.py", "_Body.__post_init__"): (
        1, "msgspec turns a ValueError of __post_init__ into ValidationError while decoding "
           "(wire.decode maps it to DecodeError); another class would escape decoding raw"),
    ("common/wire.py", "Control.__post_init__"): (1, "as _Body.__post_init__: msgspec needs a ValueError"),
    ("common/capture_file.py", "CaptureWriter.append"): (1, "append after close: misuse, as io's own ValueError"),
    ("common/histogram.py", "LatencyHistogram.__init__"): (1, "an array of ours of the wrong shape: misuse"),
    ("common/histogram.py", "LatencyHistogram.percentile"): (1, "callers pass constant percentiles: misuse"),
    ("common/ring.py", "RingWriter.write"): (1, "more than one record to write(): misuse, write_batch is for many"),
    ("services/brain/engine.py", "process_batch"): (1, "n beyond the caller's own buffers: misuse"),
    ("services/brain/engine.py", "bind"): (1, "a read buffer larger than the core's scratch: misuse"),
    ("services/exchange_sim/engine.py", "Player.skip"): (2, "skip at max speed or after the first loop: misuse"),
    ("services/exchange_sim/symbols.py", "derived_spec"): (1, "an index of ours (0 is the real symbol): misuse"),
    ("services/exchange_sim/klines.py", "KlineBook.seed"): (1, "seeding twice or beyond capacity: misuse"),
    ("bench/ring_section.py", "_setup"): (1, "a transport not in the bench's own table: misuse"),
}


def bare_value_errors(path: Path) -> Counter[str]:
    """Qualified name of the enclosing function -> its ``raise ValueError`` statements."""
    found: Counter[str] = Counter()

    def visit(node: ast.AST, scope: tuple[str, ...]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, (*scope, child.name))
                continue
            if isinstance(child, ast.Raise) and child.exc is not None:
                exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(exc, ast.Name) and exc.id == "ValueError":
                    found[".".join(scope) or "<module>"] += 1
            visit(child, scope)

    visit(ast.parse(path.read_text(), str(path)), ())
    return found


def all_bare_value_errors() -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for where, n in bare_value_errors(path).items():
                out[(rel, where)] = n
    return out


def test_no_bare_value_error_outside_the_allow_list():
    """Every bare ``raise ValueError`` in the source is in ALLOWED, as many times as it says."""
    found = all_bare_value_errors()
    unexpected = {k: n for k, n in found.items() if n != ALLOWED.get(k, (0, ""))[0]}
    assert not unexpected, (
        "bare `raise ValueError` outside tests/unit/test_error_vocabulary.py's ALLOWED (or a count "
        f"that differs): {unexpected}; raise a class of common/errors.py instead")


def test_every_allowed_entry_is_still_there_and_says_why():
    """No stale entry (a function renamed or converted keeps no licence), and each reason is
    one short line."""
    found = all_bare_value_errors()
    assert [k for k in ALLOWED if k not in found] == []
    assert all(0 < len(why) <= 200 for _, why in ALLOWED.values())


def test_the_scan_sees_a_bare_value_error(tmp_path):
    """The scanner finds ``raise ValueError`` (called or not) by its enclosing function, and
    ignores other classes and a bare re-raise."""
    src = tmp_path / "m.py"
    src.write_text("class A:\n    def f(self):\n        raise ValueError('x')\n"
                   "def g():\n    try:\n        pass\n    except ValueError:\n        raise\n"
                   "    raise ValueError\n"
                   "def h():\n    raise KeyError('x')\n")
    assert bare_value_errors(src) == Counter({"A.f": 1, "g": 1})


def test_no_class_of_the_hierarchy_is_a_value_error():
    """``except ValueError`` catches Python's own errors only: every class of common/errors.py
    stands apart from it, and DataError is a DefinitiveError labelled "data"."""
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.AegisError)]
    assert len(classes) >= 9 and not [c for c in classes if issubclass(c, ValueError)]
    assert issubclass(errors.DataError, errors.DefinitiveError) and errors.DataError("x").reason == "data"
