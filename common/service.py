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
import signal
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
class StopFlag:
    """Set by SIGTERM/SIGINT. Sync loops poll ``is_set``; asyncio code awaits ``wait``."""

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


def install_stop_handlers(flag: StopFlag, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Route SIGTERM/SIGINT to ``flag`` (a second signal while stopping is ignored: the
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
