"""The supervisor's rules on real processes: hung children, restart intensity, clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP, signal.SIGQUIT], ids=lambda s: s.name)
def test_stop_signal_stops_the_stack_cleanly_with_a_summary(procs, short_tmp, sig):
    """Ctrl+C (SIGINT), a closed terminal's SIGHUP and Ctrl+\\'s SIGQUIT to the supervisor each
    stop every child in order, print the run summary on stdout, remove the ring from shared
    memory and the run directory, and exit 0."""
    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="2")
    p = procs.python("-m", "common.cli", "run", "--no-status", cwd=REPO, env=env,
                     stderr=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    run = short_tmp / "run"
    pids = [ready_pid(run, n) for n in ("orchestrator", "brain", "feed")]
    assert len(list(short_tmp.glob("aegis-*.ring"))) == 1
    p.send_signal(sig)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    summary = json.loads(out)
    assert summary["mode"] == "demo" and summary["ticks_lost"] == 0
    assert not run.exists()
    assert list(short_tmp.glob("aegis-*.ring")) == []


def test_closing_the_terminal_stops_the_stack_cleanly(procs, short_tmp):
    """The supervisor on a terminal (a pty it controls) whose other end closes: it gets SIGHUP
    and every write to the terminal fails from then on (EIO), yet it stops every child, writes
    the summary file, removes the ring and the run directory, and exits 0."""
    import fcntl
    import termios

    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="2")
    summary = short_tmp / "s.json"
    master, slave = os.openpty()
    try:
        # start_new_session makes it a session leader; the pty on stdin becomes its terminal
        p = procs.python("-m", "common.cli", "run", "--summary-json", str(summary), cwd=REPO, env=env,
                         stdin=slave, stdout=slave, stderr=slave,
                         preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    finally:
        os.close(slave)
    closing = threading.Event()
    reader = threading.Thread(target=_drain, args=(master, closing), daemon=True)  # a terminal reads
    reader.start()
    run = short_tmp / "run"
    pids = [ready_pid(run, n) for n in ("orchestrator", "brain", "feed")]
    time.sleep(1.5)  # a status line or two reach the terminal
    closing.set()
    reader.join(5)
    os.close(master)  # the terminal window closes
    assert p.wait(60) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    s = json.loads(summary.read_text())
    assert s["mode"] == "demo" and s["ticks_lost"] == 0
    assert not run.exists()
    assert list(short_tmp.glob("aegis-*.ring")) == []


def _drain(fd: int, closing: threading.Event) -> None:
    """Read what reaches the terminal (a full pty would block its writers) until ``closing``."""
    import select

    while not closing.is_set():
        if select.select([fd], [], [], 0.1)[0]:
            try:
                os.read(fd, 65536)
            except OSError:
                return


def test_tcp_without_keys_is_refused_before_anything_starts(short_tmp):
    """No CURVE keys for tcp: exit 2 with the fix in the message, no summary printed, no run
    directory left behind."""

    env = stack_env(short_tmp, AEGIS_BUS__TRANSPORT="tcp")
    p = subprocess.run([sys.executable, "-m", "common.cli", "run", "--duration", "3", "--no-status"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "aegis keys --dir" in p.stderr and p.stdout == ""
    assert not (short_tmp / "run").exists()


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def warm_spares(run: Path, names=("exchange_sim", "orchestrator", "brain", "feed"),
                not_pids=(), timeout_s: float = 90) -> dict[str, int]:
    """Wait until every named service has a warm spare (its ``.spare`` marker names a live pid)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = {}
        for n in names:
            try:
                pid = int((run / f"{n}.spare").read_text())
            except (OSError, ValueError):
                continue
            if alive(pid) and pid not in not_pids:
                found[n] = pid
        if len(found) == len(names):
            return found
        time.sleep(0.05)
    raise AssertionError(f"no warm spare for {sorted(set(names) - set(found))}")


def status_of(run: Path) -> dict:
    import urllib.request

    url = (run / "monitor.url").read_text().strip()
    with urllib.request.urlopen(url + "/status", timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def ppid_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_warm_spares_fork_every_replacement_and_none_outlives_the_stack(procs, short_tmp):
    """Each service gets a warm spare (its own process title, lowest CPU priority). Killed twice
    in a row, the brain is replaced twice by processes the same spare forked: each a child of the
    supervisor at normal priority, and the spare stays. A spare that dies is replaced. Ctrl+C
    ends everything, spares included."""
    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="2", AEGIS_SUPERVISOR__SPARE_RETRY_S="0.5",
                    AEGIS_SUPERVISOR__RESTART_BACKOFF_INITIAL_S="0.05",
                    AEGIS_LOG__FORMAT="json", AEGIS_LOG__LEVEL="info")
    log_path = short_tmp / "stack.log"
    with open(log_path, "w") as log_f:
        p = procs.python("-m", "common.cli", "run", "--no-status", cwd=REPO, env=env, stderr=log_f,
                         stdout=subprocess.DEVNULL)
    run = short_tmp / "run"
    brain = ready_pid(run, "brain")
    ready_pid(run, "feed")
    spares = warm_spares(run)
    for name, pid in spares.items():
        assert f"aegis: {name} (spare)" in cmdline(pid)
        if os.geteuid() == 0:  # the way back is allowed: the warm-up ran at the lowest priority
            assert nice_of(pid) == 19
    assert status_of(run)["services"]["brain"]["spare"] == "warm"

    replaced = []
    for _ in range(2):
        os.kill(brain, signal.SIGKILL)
        brain = ready_pid(run, "brain", not_pid=brain, timeout_s=30)
        replaced.append(brain)
        assert brain not in spares.values() and ppid_of(brain) == p.pid
        assert cmdline(brain).startswith("aegis: brain") and "spare" not in cmdline(brain)
        assert nice_of(brain) == 0
    assert alive(spares["brain"]) and "(spare)" in cmdline(spares["brain"])  # it stays for the next one
    os.kill(spares["feed"], signal.SIGKILL)  # a spare dies: another one takes its place
    again = warm_spares(run, ("feed",), not_pids=(spares["feed"],))
    st = status_of(run)["services"]
    assert (st["brain"]["restarts"], st["brain"]["warm_restarts"], st["feed"]["restarts"]) == (2, 2, 0)
    assert st["brain"]["spare_pid"] == spares["brain"]

    p.send_signal(signal.SIGINT)
    assert p.wait(90) == 0
    for pid in [*spares.values(), *again.values(), *replaced]:
        assert not alive(pid), cmdline(pid)
    assert not run.exists()
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    died = [e for e in events if e.get("event") == "supervisor.spare_died"]
    assert [(e["child"], e["pid"]) for e in died] == [("feed", spares["feed"])]
    took = [e for e in events if e.get("event") == "supervisor.child_started" and e["child"] == "brain"]
    assert [(e["spare"], e["pid"]) for e in took[1:]] == [("warm", pid) for pid in replaced]
    assert took[0]["spare"] == "none"


def test_a_killed_supervisor_takes_its_children_and_spares_with_it(procs, short_tmp):
    """SIGKILL to the supervisor (nothing can be cleaned up in order): every child and every
    spare still ends, through the parent-death signal, instead of running on as an orphan."""
    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="2")
    p = procs.python("-m", "common.cli", "run", "--no-status", cwd=REPO, env=env,
                     stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    run = short_tmp / "run"
    pids = [ready_pid(run, n) for n in ("orchestrator", "feed")]
    brain = ready_pid(run, "brain")
    pids += list(warm_spares(run).values())
    os.kill(brain, signal.SIGKILL)  # its replacement comes from the spare: it must go too
    pids.append(ready_pid(run, "brain", not_pid=brain))
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    assert [cmdline(pid) for pid in pids if alive(pid)] == []
