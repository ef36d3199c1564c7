"""The supervisor's rules on real processes: hung children, restart intensity, clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, stack_env

pytestmark = pytest.mark.integration


def ready_pid(run: Path, name: str, not_pid: int | None = None, timeout_s: float = 60) -> int:
    """Wait for ``name``'s readiness file to name a live pid (other than ``not_pid``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pid = int((run / f"{name}.ready").read_text())
            if pid != not_pid:
                return pid
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{name} never became ready")


def test_hung_brain_is_killed_and_restarted(procs, short_tmp):
    """A brain that stops heartbeating (SIGSTOP) is killed and replaced by a new process."""
    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="2", AEGIS_SUPERVISOR__HEARTBEAT_TIMEOUT_S="3")
    summary = short_tmp / "s.json"
    p = procs.python("-m", "common.cli", "run", "--duration", "60", "--no-status",
                     "--summary-json", str(summary), cwd=REPO, env=env,
                     stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    run = short_tmp / "run"
    first = ready_pid(run, "brain")
    ready_pid(run, "feed")
    os.kill(first, signal.SIGSTOP)
    second = ready_pid(run, "brain", not_pid=first, timeout_s=30)
    assert second != first
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # the hung one is gone, not left stopped
    time.sleep(2.0)  # the new brain reads on from the ring for a while, then Ctrl+C ends the run
    p.send_signal(signal.SIGINT)
    assert p.wait(90) == 0
    s = json.loads(summary.read_text())
    assert s["restarts"]["brain"] == 1
    assert s["ticks_lost"] == 0 and s["ticks_read"] == s["ticks_written"]


def test_restart_intensity_exceeded_stops_everything_non_zero(procs, short_tmp):
    """More restarts than the intensity allows: the supervisor gives up with exit code 3 and cleans up."""
    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="2", AEGIS_SUPERVISOR__RESTART_INTENSITY="1",
                    AEGIS_SUPERVISOR__RESTART_BACKOFF_INITIAL_S="0.1")
    p = procs.python("-m", "common.cli", "run", "--duration", "60", "--no-status", cwd=REPO, env=env,
                     stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    run = short_tmp / "run"
    pid = ready_pid(run, "feed")
    os.kill(pid, signal.SIGKILL)
    pid2 = ready_pid(run, "feed", not_pid=pid)
    os.kill(pid2, signal.SIGKILL)
    assert p.wait(60) == 3
    assert not run.exists()
    assert not list(short_tmp.glob("aegis-*.ring"))


def test_sigint_stops_the_stack_cleanly(procs, short_tmp):
    """Ctrl+C (SIGINT) to the supervisor stops every child in order and exits 0."""
    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="2")
    p = procs.python("-m", "common.cli", "run", "--no-status", cwd=REPO, env=env,
                     stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    run = short_tmp / "run"
    pids = [ready_pid(run, n) for n in ("orchestrator", "brain", "feed")]
    p.send_signal(signal.SIGINT)
    assert p.wait(60) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not run.exists()


def test_tcp_without_keys_is_refused_before_anything_starts(short_tmp):
    """No CURVE keys for tcp: exit 2 with the fix in the message, no summary printed, no run
    directory left behind."""

    env = stack_env(short_tmp, AEGIS_BUS__TRANSPORT="tcp")
    p = subprocess.run([sys.executable, "-m", "common.cli", "run", "--duration", "3", "--no-status"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "aegis keys --dir" in p.stderr and p.stdout == ""
    assert not (short_tmp / "run").exists()
