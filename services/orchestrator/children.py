"""The supervisor's children: one service process each, how it is started, found ready and
stopped. No decisions here (when to restart is ``policy``, warm spares are ``spares``).

Children run in their own process group (a terminal's Ctrl+C reaches only the supervisor,
which then stops them in order) and die with the supervisor (PR_SET_PDEATHSIG), so even a
SIGKILLed supervisor leaves no orphan.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from common import service, wire
from common.config import AegisConfig

log = structlog.get_logger(__name__)
PR_SET_CHILD_SUBREAPER = 36
READY_POLL_S = 0.05  # how often a starting child's ready file is looked at
# services that publish no heartbeat: alive = the process runs (and, for the sim, answers ping)
NO_HEARTBEAT = ("exchange_sim", "dashboard")
# services the stack trades without: one that will not start, or crashes past the restart
# intensity, is given up (logged) instead of stopping the stack (a page must not stop trading)
OPTIONAL = ("dashboard",)


class Adopted:
    """A service process forked by a spare and re-parented to us: ``subprocess.Popen``'s
    interface (the part the supervisor uses) on ``os.waitpid``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()  # the monitor thread polls too: one waitpid at a time

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere or never ours: gone either way
                    self.returncode = -1
                    return self.returncode
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | Adopted | None = None
    started_at: float = 0.0
    restarts: int = 0
    consecutive_failures: int = 0
    restart_times: list[float] = field(default_factory=list)
    restart_at: float | None = None
    last_heartbeat: float = 0.0
    counters: dict[str, float] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    spare: subprocess.Popen | None = None  # the warm spare that forks replacements (``spares.keep``)
    spare_out: bytes = b""  # what the spare wrote on its stdout so far (replacement pids, one a line)
    spare_asked_at: float | None = None  # a replacement was asked for and its pid not yet read
    spare_asked_state: str = "none"  # the spare was warm or still warming when asked
    spare_retry_at: float = 0.0  # the spare died: the next one not before this
    warm_restarts: int = 0  # restarts answered by a spare
    state: wire.ServiceState | None = None  # the state its last heartbeat gave
    gave_up: str = ""  # why it is not restarted any more ("" = it is)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def become_subreaper() -> bool:
    """Make this process the parent of every orphan among its descendants (Linux 3.4+): the
    replacements a spare forks become our children, which we can wait for. False elsewhere."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    except (OSError, AttributeError):
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def child_env(child: Child, rd: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AEGIS_RUN_DIR", None)
    if child.name == "exchange_sim":  # the sim's account (orders, positions) outlives a sim crash
        env.setdefault("AEGIS_SIM_STATE_FILE", str(rd / "sim-account.json"))
    return env


def start_process(child: Child, rd: Path) -> subprocess.Popen:
    """A new process of the service (its own session; it dies with us)."""
    return subprocess.Popen(child.argv, env=child_env(child, rd), start_new_session=True,
                            preexec_fn=service.die_with_parent, stdin=subprocess.DEVNULL)


def record_start(child: Child, proc: subprocess.Popen | Adopted, spare: str) -> None:
    child.proc = proc
    child.pids.append(proc.pid)
    child.started_at = time.monotonic()
    child.last_heartbeat = child.started_at
    log.info("supervisor.child_started", child=child.name, pid=proc.pid, spare=spare)


def is_ready(child: Child, rd: Path, cfg: AegisConfig) -> bool:
    """The sim answers ping; every other service has written its pid into ``<name>.ready``."""
    if child.name == "exchange_sim":
        url = f"http://{cfg.sim.host}:{cfg.sim.port}/fapi/v1/ping"
        try:
            with urllib.request.urlopen(url, timeout=0.5) as r:  # noqa: S310 - loopback only
                return r.status == 200
        except OSError:
            return False
    f = rd / f"{child.name}.ready"
    try:
        return child.proc is not None and int(f.read_text()) == child.proc.pid
    except (OSError, ValueError):
        return False


def wait_ready(child: Child, rd: Path, cfg: AegisConfig, stop: service.StopFlag) -> bool:
    """Wait until the child is ready; False if it dies, the stop flag rises or time runs out."""
    assert child.proc is not None
    deadline = time.monotonic() + cfg.supervisor.ready_timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        if is_ready(child, rd, cfg):
            log.info("supervisor.child_ready", child=child.name, pid=child.proc.pid)
            return True
        if child.proc.poll() is not None:
            log.error("supervisor.child_died_starting", child=child.name, code=child.proc.returncode)
            return False
        time.sleep(READY_POLL_S)
    log.error("supervisor.child_not_ready", child=child.name)
    return False


def stop(child: Child, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``."""
    p = child.proc
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("supervisor.child_killed", child=child.name, pid=p.pid)
        p.kill()
        p.wait()
