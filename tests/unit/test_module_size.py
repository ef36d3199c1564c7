"""Every module is one reader's sitting (issue #20), read from the source with ``ast``
(nothing is imported): no function longer than ``MAX_FUNCTION_LINES`` and no module longer
than ``MAX_MODULE_LINES`` in the packages of the project.

- A function's length runs from its ``def`` to its last line, nested functions included.
- numba kernels (functions decorated with ``njit`` or ``jit``, bare or called, of ``numba``
  or imported by name) are left out of both counts: a kernel is kept in one piece on purpose
  (numba compiles it as a unit; splitting it costs calls in the hot path), and C is not
  Python. A module's length is its lines outside such kernels.
- ``ALLOWED`` names the files that may exceed the limits for now, each with its reason.
  Anything else over a limit fails, with the name and length of each offender.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "venue", "services", "research", "cli", "bench")
MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 600

# Files that may exceed the limits for now, each with its reason in a comment; nothing else may
# be listed. Empty: every module of the project is one reader's sitting.
ALLOWED: frozenset[str] = frozenset()


def is_kernel(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Is ``fn`` decorated with numba's ``njit`` / ``jit`` (``@njit``, ``@numba.njit(...)``)?"""
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("njit", "jit"):
            return True
    return False


def measure(source: str) -> tuple[int, list[tuple[str, int]]]:
    """(the module's lines outside numba kernels, [(function, lines) of every function that
    is not a kernel]). A decorated function's lines start at its ``def``."""
    tree = ast.parse(source)
    total = source.count("\n") + (0 if source.endswith("\n") or not source else 1)
    functions: list[tuple[str, int]] = []
    kernel_lines = 0
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if is_kernel(node):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            kernel_lines += node.end_lineno - first + 1
        else:
            functions.append((node.name, node.end_lineno - node.lineno + 1))
    return total - kernel_lines, functions


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if ".venv" not in p.parts)


@cache
def offenders() -> tuple[list[str], list[str]]:
    """(long functions, long modules) outside ``ALLOWED``, as ``path: name lines`` strings."""
    long_functions, long_modules = [], []
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        lines, functions = measure(path.read_text(encoding="utf-8"))
        if lines > MAX_MODULE_LINES:
            long_modules.append(f"{rel}: {lines} lines")
        long_functions += [f"{rel}: {name} {n} lines" for name, n in functions if n > MAX_FUNCTION_LINES]
    return long_functions, long_modules


def test_no_function_over_the_limit():
    """No function outside the allowed files is longer than MAX_FUNCTION_LINES lines."""
    long_functions, _ = offenders()
    assert long_functions == []


def test_no_module_over_the_limit():
    """No module outside the allowed files is longer than MAX_MODULE_LINES lines (kernels aside)."""
    _, long_modules = offenders()
    assert long_modules == []


def test_allowed_files_exist():
    """Every allowed file is still there (a moved or deleted file leaves the list)."""
    assert [f for f in sorted(ALLOWED) if not (ROOT / f).is_file()] == []


def test_measure_counts_functions_and_leaves_kernels_out():
    """measure counts a function from its def to its last line and leaves numba kernels
    (bare, called, qualified) out of the module's lines and of the functions."""
    src = (
        "import numba\n"            # 1
        "def f():\n"                # 2
        "    x = 1\n"               # 3
        "    return x\n"            # 4
        "@numba.njit(cache=True)\n"  # 5
        "def k(a):\n"               # 6
        "    return a\n"            # 7
        "@njit\n"                   # 8
        "def j(a):\n"               # 9
        "    return a\n"            # 10
        "@staticmethod\n"           # 11
        "def g():\n"                # 12
        "    pass\n"                # 13
    )
    assert measure(src) == (13 - 3 - 3, [("f", 3), ("g", 2)])


@pytest.mark.parametrize("decorator, kernel", [("@njit", True), ("@jit(nopython=True)", True),
                                                ("@numba.jit", True), ("@functools.cache", False)])
def test_is_kernel(decorator: str, kernel: bool):
    """is_kernel recognises numba's njit / jit in every spelling and nothing else."""
    fn = ast.parse(f"{decorator}\ndef f():\n    pass\n").body[0]
    assert is_kernel(fn) is kernel
