"""bench/nautilus_contender.py runs in NautilusTrader's own virtualenv and imports nothing
of AEGIS, so it carries a copy of the EMA cross's averages (``EmaState``, ``ema_step``).
This pins the copy to research/strategies/ema_cross.py, read with ``ast``: the two may
differ in docstrings only, so the bench always races the same strategy."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NAMES = ("EmaState", "ema_step")


def definitions(path: Path) -> dict[str, str]:
    """name -> ast dump (docstrings removed) of the top-level definitions in NAMES."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in NAMES:
            for n in ast.walk(node):
                body = getattr(n, "body", None)
                if (isinstance(n, (ast.ClassDef, ast.FunctionDef)) and body and isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                    n.body = body[1:]
            out[node.name] = ast.dump(node, include_attributes=False)
    return out


def test_the_nautilus_contender_computes_the_averages_as_the_strategy_does():
    """EmaState and ema_step of the contender are those of research/strategies/ema_cross.py."""
    ours = definitions(ROOT / "research" / "strategies" / "ema_cross.py")
    theirs = definitions(ROOT / "bench" / "nautilus_contender.py")
    assert sorted(ours) == sorted(NAMES)
    assert theirs == ours


def test_a_changed_copy_is_seen(tmp_path):
    """One operator changed in the copy makes the definitions differ."""
    src = (ROOT / "bench" / "nautilus_contender.py").read_text()
    changed = tmp_path / "contender.py"
    changed.write_text(src.replace("if was <= 0 < now:", "if was < 0 < now:", 1))
    assert definitions(changed) != definitions(ROOT / "research" / "strategies" / "ema_cross.py")
