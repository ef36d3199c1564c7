"""The parts every service shell shares: arguments, config, logging, process title,
stop signals, run-directory layout and stats files.

A service's ``__main__.py`` is the imperative shell; it calls ``bootstrap`` first thing,
so each process configures itself *after* it starts (never at import time).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import select
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from common import config as config_mod
from common import curve
from common import log as log_mod
from common import zmqutil
from common.config import AegisConfig, Endpoints

SERVICES = ("exchange_sim", "orchestrator", "feed", "brain")


def arg_parser(name: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"aegis {name.replace('_', '-')}", description=description)
    p.add_argument("--config", help="TOML or JSON config file (environment AEGIS_* overrides it)")
    p.add_argument("--log-level", help="debug|info|warning|error (default: warning)")
    p.add_argument("--log-format", choices=("console", "json"), help="log rendering")
    p.add_argument("--run-dir", help="run directory of the stack (ipc sockets, stats)")
    # internal (hidden from --help): the supervisor starts a warm spare with it: load the code
    # and caches, then wait for 'go' on stdin before touching the stack (its fast restart)
    p.add_argument("--spare", action="store_true", help=argparse.SUPPRESS)
    return p


def bootstrap(name: str, args: argparse.Namespace) -> AegisConfig:
    """Load config, apply command-line overrides, configure logging and the process title."""
    cfg = config_mod.load(getattr(args, "config", None))
    overrides: dict[str, Any] = {}
    log_over: dict[str, Any] = {}
    if getattr(args, "log_level", None):
        log_over["level"] = args.log_level
    if getattr(args, "log_format", None):
        log_over["format"] = args.log_format
    if log_over:
        overrides["log"] = log_over
    if getattr(args, "run_dir", None):
        overrides["run_dir"] = args.run_dir
    if overrides:
        cfg = config_mod.replace(cfg, **overrides)
    log_mod.configure(level=cfg.log.level, fmt=cfg.log.format, service=name,
                      secrets=config_mod.secrets().values())
    set_title(name)
    return cfg


def set_title(name: str) -> None:
    """Show ``aegis: <name>`` in ps/top so an operator can tell the processes apart."""
    try:
        import setproctitle

        setproctitle.setproctitle(f"aegis: {name}")
    except Exception:  # pragma: no cover - cosmetic only
        pass


# ---------------------------------------------------------------------------- warm spares
SPARE_GO = b"go\n"  # the one line that turns a spare into the running service


def spare_marker(rd: Path, service: str) -> Path:
    """``<service>.spare`` holds the pid of a spare that has finished warming up."""
    return rd / f"{service}.spare"


SPARE_NICE = 19  # a spare warms up on idle CPU only: the running stack always comes first


def lower_priority(nice: int = SPARE_NICE) -> bool:
    """Run this thread (and the threads it starts) at ``nice`` if this process may come back
    to its priority afterwards; True if it did. The supervisor calls it in a spare between
    fork and exec, so the spare's imports already run at the lowest priority.

    Raising a nice value is always allowed; lowering it again needs CAP_SYS_NICE or a high
    enough RLIMIT_NICE, which an ordinary user (or root in a container) may lack. So first
    a probe: one step up and back. If the way back is refused, the spare stays at its normal
    priority (after the probe's single step, which it cannot undo either: nice + 1)."""
    tid = threading.get_native_id()
    try:
        base = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, base + 1)
        os.setpriority(os.PRIO_PROCESS, tid, base)
        os.setpriority(os.PRIO_PROCESS, tid, max(base, nice))
        return True
    except OSError:
        return False


def restore_priority(nice: int) -> None:
    """Every thread of this process back to ``nice`` (Linux keeps a nice value per thread; a
    thread started during the warm-up, such as a BLAS worker, inherited the lowered one)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the calling thread is all we can name
        tids = [threading.get_native_id()]
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) != nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:  # a thread that just ended, or the way back refused: nothing to do
            pass


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel for ``sig`` when this process's parent ends (Linux; elsewhere nothing)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        pass


def _fork_detached() -> tuple[int, int]:
    """Fork twice: ``(0, middle)`` in the new process, ``(its pid, middle)`` in the caller.
    The middle process exits at once, so the new one is re-parented to the nearest child
    subreaper: the supervisor, which can then wait for it like for a child it started itself."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(r)
        middle = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os._exit(1)
        if pid == 0:
            os.close(w)
            return 0, middle
        os.write(w, str(pid).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(middle, 0)
    if not data:
        raise OSError("the spare could not fork a replacement")
    return int(data), middle


def _become_replacement(name: str, base_nice: int, report: Any, middle_pid: int, supervisor_pid: int) -> None:
    """In a freshly forked replacement: the supervisor as its parent (or exit), the parent-death
    signal, its own session, no stdin, no report pipe, the normal priority, its own name."""
    while os.getppid() == middle_pid:  # the middle process is exiting: a few microseconds
        time.sleep(0.0005)
    die_with_parent()  # only now: set before the re-parenting, it would be delivered by it
    if os.getppid() != supervisor_pid:  # no subreaper adopted us, or the supervisor is gone:
        print(f"aegis {name}: the spare's replacement was not adopted by its supervisor "
              f"(pid {supervisor_pid}); exiting rather than running unsupervised", file=sys.stderr)
        os._exit(2)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    report.close()
    restore_priority(base_nice)
    set_title(name)


def serve_as_spare(name: str, cfg: AegisConfig, warm: Callable[[], None] | None = None) -> bool:
    """Be the warm spare of ``name``: True in a replacement it forked (the caller carries on
    into the service's normal start-up), False in the spare itself when it is told to stand down.

    Why. A restart costs mostly start-up: the interpreter, the imports (numpy, numba, zmq,
    structlog: about a second of CPU) and the caches ``warm`` loads. A spare pays all of that
    once, while the service is healthy, and then waits for a line on its stdin. It has touched
    nothing shared (no ring role, no socket, no ready file), so it can wait any length of time.

    How. Each ``go`` line makes it fork a replacement (twice, so that the replacement becomes
    the supervisor's own child, see ``_fork_detached``; the supervisor must be a child
    subreaper, else the replacement exits) and write the replacement's pid on its stdout.
    The replacement starts with everything loaded: a restart costs what is left (attach the
    ring, open the database and sockets), tens of milliseconds. The spare stays warm for the
    next one, so back-to-back crashes are as quick as the first. End of file (the
    supervisor closed the pipe, or died) or any other line: stand down, return False.

    The supervisor starts spares at the lowest CPU priority where that can be undone
    (``lower_priority``), so a warming spare never slows the running stack down. A ``go`` that
    arrives during the warm-up restores the normal priority (the parent's: what a new process
    would get) at once, and the warm-up finishes at full speed.
    Signals keep their default action in the spare: SIGTERM simply ends it.
    """
    set_title(f"{name} (spare)")
    stream = sys.stdin.buffer
    report = os.fdopen(os.dup(1), "wb", buffering=0)  # pids go here; fd 1 itself now is stderr
    os.dup2(2, 1)
    try:
        base_nice = os.getpriority(os.PRIO_PROCESS, os.getppid())
    except OSError:
        base_nice = os.getpriority(os.PRIO_PROCESS, 0)

    def hurry() -> None:  # the word (or the end) arrived while warming up: full speed now
        select.select([stream], [], [])
        restore_priority(base_nice)

    watcher = threading.Thread(target=hurry, name="spare-hurry", daemon=True)
    watcher.start()
    if warm is not None:
        warm()
    marker = spare_marker(run_dir(cfg), name)
    try:  # tells the supervisor (and ``aegis status``) this spare is warm
        marker.write_text(str(os.getpid()))
    except OSError:
        pass
    while True:
        try:
            line = stream.readline()
        except (OSError, ValueError):  # stdin closed under us: nobody will ever say go
            line = b""
        if line != SPARE_GO:
            if live_pid(marker) == os.getpid():
                marker.unlink(missing_ok=True)
            return False
        watcher.join(1.0)  # gone once stdin was readable: no thread but this one is forked
        supervisor = os.getppid()
        pid, middle = _fork_detached()
        if pid == 0:
            _become_replacement(name, base_nice, report, middle, supervisor)
            return True
        report.write(f"{pid}\n".encode())


# ---------------------------------------------------------------------------- run directory
def run_dir(cfg: AegisConfig) -> Path:
    """The stack's run directory: configured, else ``$TMPDIR/aegis-<uid>`` (fixed, so a
    service started alone for debugging finds a running stack's sockets)."""
    if cfg.run_dir:
        return Path(cfg.run_dir).resolve()
    return Path(tempfile.gettempdir()) / f"aegis-{os.getuid()}"


def ensure_run_dir(path: Path) -> Path:
    """Create the run directory private to this user (mode 0700: the ipc sockets live here)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    (path / "stats").mkdir(exist_ok=True)
    os.chmod(path / "stats", 0o700)
    return path


def ring_path(cfg: AegisConfig) -> str:
    """The ring file: configured, else derived from the run directory (same for every service)."""
    if cfg.ring.path:
        return cfg.ring.path
    tag = hashlib.sha1(str(run_dir(cfg)).encode()).hexdigest()[:12]
    return str(Path(cfg.ring.shm_dir) / f"aegis-{tag}.ring")


def endpoints(rd: Path, cfg: AegisConfig) -> Endpoints:
    """This stack's ZeroMQ endpoints, ready to use in this process.

    ipc: as ``config.endpoints``. tcp: also loads the CURVE keys (``config.curve_dir``) and
    installs them for every socket this process makes (``zmqutil.use_curve``); without them
    it raises ``ConfigError`` before any socket exists: a tcp stack never runs unencrypted.
    """
    ep = config_mod.endpoints(rd, cfg.bus)
    if ep.transport == "tcp":
        zmqutil.use_curve(curve.load(config_mod.curve_dir(cfg)))
    return ep


def db_path(cfg: AegisConfig) -> Path:
    return Path(cfg.data_dir).resolve() / cfg.orchestrator.db_file


_INCARNATION: tuple[int, str] | None = None


def incarnation() -> str:
    """This process's unique name: pid plus start time. In a container the pid is nearly
    always the same small number after a restart, so the pid alone would overwrite the
    previous incarnation's stats."""
    global _INCARNATION
    if _INCARNATION is None or _INCARNATION[0] != os.getpid():
        _INCARNATION = (os.getpid(), f"{os.getpid()}-{time.time_ns()}")
    return _INCARNATION[1]


def stats_path(rd: Path, service: str) -> Path:
    return rd / "stats" / f"{service}.{incarnation()}.json"


def mark_starting(rd: Path, service: str) -> None:
    """Remove a readiness file left by a previous incarnation (same pid in a container)."""
    (rd / f"{service}.ready").unlink(missing_ok=True)


def mark_ready(rd: Path, service: str) -> None:
    (rd / f"{service}.ready").write_text(str(os.getpid()))


def live_pid(pid_file: Path) -> int | None:
    """The pid written in ``pid_file`` (a ``.ready`` or ``.pid`` file) when that process is
    alive, else None (no file, garbage in it, or the process is gone)."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write-then-rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":"), sort_keys=True))
    os.replace(tmp, path)


class JsonFileWriter:
    """``write_json_atomic`` on a thread of its own, latest document wins: the caller (a
    service's loop) encodes and hands over, the thread writes and renames. ``close`` writes
    what is still waiting and stops the thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._text: str | None = None
        self._closed = False
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name=f"stats-{path.stem}", daemon=True)
        self._thread.start()

    def submit(self, obj: Any) -> None:
        text = json.dumps(obj, separators=(",", ":"), sort_keys=True)
        with self._cond:
            self._text = text
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._text is None and not self._closed:
                    self._cond.wait()
                text, self._text = self._text, None
                if text is None:
                    return
            try:
                tmp = self.path.with_name(f".{self.path.name}.tmp")
                tmp.write_text(text)
                os.replace(tmp, self.path)
            except OSError:  # a full or gone run directory: the next beat tries again
                self.errors += 1

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)


def read_stats(rd: Path, service: str) -> list[dict[str, Any]]:
    """Every incarnation's stats file for ``service`` (one per pid), oldest first."""
    out = []
    for p in sorted((rd / "stats").glob(f"{service}.*.json"), key=lambda q: q.stat().st_mtime):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return out


# ---------------------------------------------------------------------------- stopping
# every catchable signal that asks a process to end: SIGTERM (kill, docker stop, systemd),
# SIGINT (Ctrl+C), SIGHUP (the terminal closed), SIGQUIT (Ctrl+\). Each one stops in order,
# as Ctrl+C does: the default action would end the process on the spot, leaving the ring,
# the run directory and an unwritten summary behind.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


class StopFlag:
    """Set by a stop signal (``STOP_SIGNALS``). Sync loops poll ``is_set``; asyncio code awaits ``wait``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._aio: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.signal: int | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self, signum: int | None = None) -> None:
        self.signal = signum
        self._event.set()
        if self._aio is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._aio.set)

    async def wait(self) -> None:
        if self._aio is None:
            self._aio = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            if self._event.is_set():
                self._aio.set()
        await self._aio.wait()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if stopped meanwhile."""
        return self._event.wait(seconds)


def install_stop_handlers(flag: StopFlag, signals: Sequence[int] = STOP_SIGNALS) -> None:
    """Route the stop signals to ``flag`` (a second signal while stopping is ignored: the
    shutdown already runs, and the supervisor escalates to SIGKILL after its deadline)."""

    def handler(signum: int, _frame: Any) -> None:
        flag.set(signum)

    for s in signals:
        signal.signal(s, handler)


def run_main(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except KeyboardInterrupt:
        return 0
