"""The import rules of docs/architecture.md, read from the source with ``ast`` (nothing is
imported): which package may import which.

- a service (``services/<name>/``) imports its own modules, ``common`` and ``venue``; never
  another service's. The brain also imports ``research.strategy_api``, the strategy plug-in
  contract its strategies are written against.
- ``common`` and ``venue`` import no service, and no ``research`` or ``cli``; ``common``
  imports no ``venue`` (``venue`` builds on ``common``, not the other way round).
- ``research`` imports ``common``, ``venue`` and the brain's pure cores it backtests
  (``services.brain``); no other service, and no ``cli``.
- ``cli`` (the ``aegis`` commands) is the one shell that may import anything: nothing
  imports it.
- the brain reads the orchestrator's journal only through the store port
  (``common/journal_store.py``): no module of ``services/brain`` imports ``sqlite3``; nor does
  any other module but the store, the orchestrator's writer and the dashboard's own history
  file (``SQL_HOMES``).

Imports inside functions count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "common", "venue", "research", "services")


def home(module: str) -> str:
    """The package a module belongs to for the rules: ``services.<name>`` or the top level."""
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return "services." + parts[1]
    return parts[0]


def allowed(src: str, dst: str, module: str) -> bool:
    """May a module of package ``src`` import ``module`` (of package ``dst``)?"""
    if src == dst:
        return True
    if src.startswith("services."):
        return dst in ("common", "venue") or (
            src == "services.brain" and (module + ".").startswith("research.strategy_api."))
    if src == "venue":
        return dst == "common"
    if src == "common":
        return False
    if src == "research":
        return dst in ("common", "venue", "services.brain")
    return src == "cli"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of a project package in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from services import feed``, ``from research import strategy_api``: the imported
            # name may be the module (for ``from m import f`` the name is just longer)
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out += [(node.lineno, n) for n in names if n.split(".")[0] in PACKAGES]
    return out


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))


def violations() -> list[str]:
    bad = []
    for path in sources():
        rel = path.relative_to(ROOT)
        src = home(".".join(rel.with_suffix("").parts))
        for line, module in imports(path):
            dst = home(module)
            if not allowed(src, dst, module):
                bad.append(f"{rel}:{line}: {src} imports {module}")
    return bad


def test_no_package_imports_across_the_rules():
    """No service imports another service; common, venue and research import only what
    docs/architecture.md allows; nothing imports cli."""
    assert violations() == []


@pytest.mark.parametrize("src, module, ok", [
    ("services.feed", "services.brain.model", False),
    ("services.feed", "services.feed.codec", True),
    ("services.brain", "research.strategy_api", True),
    ("services.brain", "research.strategy_api.load", True),
    ("services.brain", "research.backtest", False),
    ("services.orchestrator", "venue.filters", True),
    ("common", "services.brain.recovery", False),
    ("common", "venue.filters", False),
    ("venue", "common.wire", True),
    ("venue", "services.feed.codec", False),
    ("research", "services.brain.smc", True),
    ("research", "services.feed.codec", False),
    ("research", "cli.replay", False),
    ("cli", "services.brain.model", True),
    ("services.feed", "cli.decode", False),
    ("services.brain", "common.journal_store", True),
    ("services.brain", "services.orchestrator.db", False),
])
def test_the_rule_itself(src, module, ok):
    """The rule says what the architecture page says, case by case (a rule that allowed
    everything would pass the scan above)."""
    assert allowed(src, home(module), module) is ok


def test_the_scan_sees_imports_inside_functions(tmp_path):
    """A lazy import in a function body is found as well as one at the top."""
    f = tmp_path / "m.py"
    f.write_text("import os\nfrom services.brain import recovery\n"
                 "def f():\n    from services.feed.codec import decode\n    import venue.filters\n")
    assert imports(f) == [(2, "services.brain.recovery"), (4, "services.feed.codec.decode"), (5, "venue.filters")]


def sqlite_imports(paths) -> list[str]:
    """path:line of every import of sqlite3 (top level or in a function) in ``paths``."""
    bad = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "sqlite3"]
    return bad


# the modules that may hold SQL: the journal's store (its schema and every read query), the
# orchestrator's writer (the rows of each message, and telling a full disk from other
# failures), and the dashboard's own small file (its equity history: not the journal)
SQL_HOMES = ("common/journal_store.py", "services/orchestrator/db.py", "services/orchestrator/storage.py",
             "services/dashboard/history_store.py")


def test_the_brain_holds_no_sql():
    """The brain asks the journal through common/journal_store.py: none of its modules imports
    sqlite3 (the schema and its queries have one home)."""
    assert sqlite_imports(sorted((ROOT / "services" / "brain").rglob("*.py"))) == []


def test_only_the_journals_store_and_its_writer_hold_sql():
    """Outside the store, the orchestrator's writer and the dashboard's own history file, no
    module of the source imports sqlite3: the dashboard, aegis report, aegis risk, aegis
    replay and reconciliation read the journal through common/journal_store.py."""
    found = sqlite_imports(sources())
    assert [f for f in found if f.split(":")[0] not in SQL_HOMES] == []
    assert sorted({f.split(":")[0] for f in found}) == sorted(SQL_HOMES)  # each home is real
