"""The ``aegis`` command itself: internal flags stay out of --help, a closed pipe is no crash."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common import cli
from tests.conftest import REPO


@pytest.mark.parametrize("command", ["run", "feed", "brain", "orchestrator", "exchange-sim", "capture", "replay"])
def test_help_does_not_show_the_internal_spare_flag(command, capsys):
    """--spare (how the supervisor starts a warm spare) is accepted but not shown by --help."""
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--run-dir" in out and "--spare" not in out


def test_output_into_a_closed_pipe_ends_quietly_with_141():
    """``aegis capture-info FILE | head -0``: the reader is gone before the first line; the
    command ends with 141 (128 + SIGPIPE, as a shell says) and no traceback."""
    r, w = os.pipe()
    os.close(r)  # nobody will read: every write fails with EPIPE
    try:
        p = subprocess.run([sys.executable, "-m", "common.cli", "capture-info",
                            str(REPO / "tests" / "golden" / "demo_240s.aegiscap")],
                           stdout=w, stderr=subprocess.PIPE, cwd=REPO, timeout=60)
    finally:
        os.close(w)
    assert p.returncode == 141
    assert p.stderr == b""
