"""A module's file name says what it is (issue #20, "names that explain themselves"): no two
modules of the source share a basename unless they play the same role, read from the file tree
(nothing is imported).

- ``ROLE_NAMES`` are the names every service uses for the same role: ``__init__``,
  ``__main__`` (the process's shell), ``app`` (the app object), ``config`` (its settings) and
  ``engine`` (the pure core).
- ``SHARED`` lists every other basename that more than one module may carry, with the exact
  files and the reason. A new twin (a second ``capture.py`` that is not a capture file, a
  ``report.py`` beside ``report.py``) fails with the paths that share the name.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "venue", "services", "research", "cli", "bench")
ROLE_NAMES = frozenset({"__init__", "__main__", "app", "config", "engine"})

SHARED: dict[str, tuple[str, ...]] = {
    # the two ends of the operator's control channel (wire.Control): the dashboard's control
    # API sends a command, the brain carries it out
    "control": ("services/brain/control.py", "services/dashboard/control.py"),
    # cli/ modules are named after their command: ``aegis risk`` shows and clears the kill
    # switch that the brain's pre-trade risk keeps
    "risk": ("cli/risk.py", "services/brain/risk.py"),
    # Binance's user data stream: the sim serves it, the venue decodes it
    "user_stream": ("services/exchange_sim/user_stream.py", "venue/binance/user_stream.py"),
    # Binance's WebSocket API (ws-fapi): the sim answers it, the venue's client asks it
    "ws_api": ("services/exchange_sim/ws_api.py", "venue/binance/ws_api.py"),
}


def shared_basenames(root: Path = ROOT) -> dict[str, tuple[str, ...]]:
    """basename -> the source files under ``root`` that carry it, for every basename outside
    ``ROLE_NAMES`` that more than one module of ``PACKAGES`` has."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            if ".venv" not in path.parts and path.stem not in ROLE_NAMES:
                by_name[path.stem].append(path.relative_to(root).as_posix())
    return {name: tuple(sorted(paths)) for name, paths in sorted(by_name.items()) if len(paths) > 1}


def test_no_two_modules_share_a_name_for_different_roles():
    """The only basenames that two modules share, outside the role names, are those in
    SHARED, carried by exactly the files listed there."""
    assert shared_basenames() == SHARED


def test_a_twin_is_found(tmp_path):
    """In a made-up tree, two ``capture.py`` in different packages are reported with their
    paths; two ``app.py`` (a role name) and a name used once are not."""
    for rel in ("common/capture.py", "services/feed/capture.py", "services/feed/app.py",
                "services/brain/app.py", "services/brain/candles.py", "docs/capture.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert shared_basenames(tmp_path) == {"capture": ("common/capture.py", "services/feed/capture.py")}
