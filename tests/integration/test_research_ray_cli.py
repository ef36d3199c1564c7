"""`aegis backtest --workers 2` as a user runs it, in its own process: it starts its own local
Ray, writes its files, and when it exits no process of that Ray is left and its temporary
folder is gone. (Its own module: this starts a second, private Ray. That 1 and 2 workers
write the same bytes is pinned in test_research_ray.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from research import distributed as dist
from research.ingest import run_import

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_tmp():
    """A short TMPDIR for the command's Ray (its socket paths must stay under 107 bytes)."""
    d = tempfile.mkdtemp(prefix="aegis-t-", dir="/tmp")
    yield d
    for pid in dist.ray_processes(d):  # only if the test failed half-way: that Ray's own processes
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(d, ignore_errors=True)


def test_the_command_starts_and_ends_its_own_ray(tmp_path, short_tmp, procs):
    """Exit 0, both symbols' candles counted, no Ray process and no Ray folder left."""
    from research.localarchive import build_archive

    root = build_archive(tmp_path / "archive")
    cat = tmp_path / "cat"
    for z in sorted(root.rglob("monthly/klines/BTCUSDT/1m/*.zip")):
        assert run_import(catalog=cat, path=z).ok
        assert run_import(catalog=cat, path=z, symbol="BTCCOPYUSDT").ok
    args = ["--catalog", str(cat), "--strategy", "donchian", "--symbols", "BTCUSDT,BTCCOPYUSDT",
            "--from", "2024-12-01", "--to", "2024-12-01", "--no-progress"]
    env = {**os.environ, "TMPDIR": short_tmp}
    p = procs.python("-m", "research.backtest_cli", *args, "--workers", "2", "--out", str(tmp_path / "w2"),
                     env=env, cwd=str(REPO))
    assert p.wait(timeout=240) == 0
    summary = json.loads((tmp_path / "w2" / "summary.json").read_text())
    assert summary["candles"] == 2 * 1440 and summary["symbols"] == ["BTCUSDT", "BTCCOPYUSDT"]
    assert dist.ray_processes(short_tmp) == []
    assert os.listdir(short_tmp) == []
