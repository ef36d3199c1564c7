"""Warm spares (``common.service.serve_as_spare``): the fork-server protocol on real processes.

A spare is a process; its replacements are its grandchildren, adopted by a child subreaper.
The pytest process must not become a subreaper itself (every orphan of every other test
would turn into its zombie), so each case runs a small stand-in supervisor as a process of
its own: it starts the spare, says ``go``, reads the pids, waits for the replacements and
prints what it saw as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import service
from tests.conftest import REPO

pytestmark = pytest.mark.integration

SPARE = r"""
import json, os, sys
from common import config, service
run_dir, out = sys.argv[1], sys.argv[2]
cfg = config.replace(config.load(None, {}), run_dir=run_dir)
service.ensure_run_dir(service.run_dir(cfg))

def warm():
    with open(os.path.join(out, "warm-runs"), "a") as f:
        f.write(f"{os.getpid()} {os.getpriority(os.PRIO_PROCESS, 0)}\n")

if service.serve_as_spare("brain", cfg, warm=warm):
    info = {"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0),
            "nice": os.getpriority(os.PRIO_PROCESS, 0), "stdin": os.readlink("/proc/self/fd/0"),
            "title": open("/proc/self/cmdline", "rb").read().split(b"\0")[0].decode()}
    with open(os.path.join(out, f"replacement-{os.getpid()}.json"), "w") as f:
        json.dump(info, f)
    sys.exit(7)
with open(os.path.join(out, "stood-down"), "w") as f:
    f.write(str(os.getpid()))
"""

SUPERVISOR = r"""
import ctypes, json, os, select, subprocess, sys, time
from common import service
spare_code, run_dir, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
assert ctypes.CDLL("libc.so.6").prctl(36, 1) == 0  # PR_SET_CHILD_SUBREAPER
sp = subprocess.Popen([sys.executable, "-c", spare_code, run_dir, out], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, preexec_fn=service.lower_priority)
marker = os.path.join(run_dir, "brain.spare")
deadline = time.monotonic() + 60
while not os.path.exists(marker) and time.monotonic() < deadline:
    time.sleep(0.01)
seen = {"spare": sp.pid, "me": os.getpid(), "marker": open(marker).read(),
        "spare_nice": os.getpriority(os.PRIO_PROCESS, sp.pid), "replacements": {}}
for _ in range(n):
    sp.stdin.write(service.SPARE_GO)
    sp.stdin.flush()
    pid = int(sp.stdout.readline())
    _, status = os.waitpid(pid, 0)  # only possible because it is our child now
    seen["replacements"][pid] = os.waitstatus_to_exitcode(status)
sp.stdin.close()
seen["spare_exit"] = sp.wait(30)
seen["marker_after"] = os.path.exists(marker)
print(json.dumps(seen))
"""


def run_supervisor(tmp_path: Path, replacements: int) -> dict:
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.run([sys.executable, "-c", SUPERVISOR, SPARE, str(tmp_path / "run"), str(out),
                        str(replacements)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    seen = json.loads(p.stdout)
    seen["out"] = out
    return seen


def test_each_go_forks_a_replacement_the_supervisor_adopts(tmp_path: Path):
    """Two words, two replacements: each a new process with the supervisor as its parent (it
    collects their exit codes), its own session, no stdin, the service's own title and the
    normal priority; the warm-up ran once, in the spare, at the lowest priority."""
    seen = run_supervisor(tmp_path, 2)
    reps = {int(k): v for k, v in seen["replacements"].items()}
    assert len(reps) == 2 and seen["spare"] not in reps
    assert set(reps.values()) == {7}  # each one's own exit code, reaped by the supervisor
    for pid in reps:
        info = json.loads((seen["out"] / f"replacement-{pid}.json").read_text())
        assert info["ppid"] == seen["me"] and info["sid"] == pid
        assert info["stdin"] == os.devnull and info["title"] == "aegis: brain"
        assert info["nice"] == 0
    warm_runs = (seen["out"] / "warm-runs").read_text().split()
    assert warm_runs[0] == str(seen["spare"]) and len(warm_runs) == 2  # once, by the spare
    if os.geteuid() == 0:  # the way back is allowed here: the warm-up ran at the lowest priority
        assert int(warm_runs[1]) == service.SPARE_NICE
    assert seen["marker"] == str(seen["spare"])
    # told to stand down (end of file): it exits 0 and takes its marker away
    assert seen["spare_exit"] == 0 and seen["marker_after"] is False
    assert (seen["out"] / "stood-down").read_text() == str(seen["spare"])


def test_a_replacement_nobody_adopts_exits_rather_than_run_unsupervised(tmp_path: Path):
    """Without a subreaper above it the replacement would run as an orphan: it says so and exits."""
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-c", SPARE, str(tmp_path / "run"), str(out)], cwd=REPO,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(service.SPARE_GO)
        p.stdin.flush()
        pid = int(p.stdout.readline())
        p.stdin.close()
        assert p.wait(60) == 0
        err = p.stderr.read().decode() if p.stderr is not None else ""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "was not adopted by its supervisor" in err
    assert not (out / f"replacement-{pid}.json").exists()


@pytest.mark.parametrize("word", [b"", b"stop\n", b"go\r\n"])
def test_end_of_file_or_any_other_word_stands_down(tmp_path: Path, word: bytes):
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.run([sys.executable, "-c", SPARE, str(tmp_path / "run"), str(out)], cwd=REPO,
                       input=word, capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stdout == b""
    assert (out / "stood-down").exists() and not list(out.glob("replacement-*"))
    assert not (tmp_path / "run" / "brain.spare").exists()


def test_lower_priority_only_when_it_can_be_undone(monkeypatch):
    """A refused way back (an ordinary user without RLIMIT_NICE) leaves the priority alone."""
    calls: list[int] = []
    state = {"nice": 0}

    def fake_set(_which, _who, value):
        if value < state["nice"]:
            raise PermissionError(1, "Operation not permitted")
        calls.append(value)
        state["nice"] = value

    monkeypatch.setattr(os, "getpriority", lambda _w, _who: state["nice"])
    monkeypatch.setattr(os, "setpriority", fake_set)
    assert service.lower_priority() is False
    assert state["nice"] == 1 and calls == [1]  # the probe's one step, nothing more


def test_restore_priority_brings_every_thread_back(monkeypatch):
    """Linux keeps a nice value per thread: each one found under /proc/self/task is set."""
    nice = {101: 19, 102: 19, 103: 0}
    monkeypatch.setattr(os, "listdir", lambda _p: ["101", "102", "103"])
    monkeypatch.setattr(os, "getpriority", lambda _w, who: nice[who])
    monkeypatch.setattr(os, "setpriority", lambda _w, who, v: nice.__setitem__(who, v))
    service.restore_priority(0)
    assert nice == {101: 0, 102: 0, 103: 0}
