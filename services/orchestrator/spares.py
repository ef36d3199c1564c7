"""Warm spares: one loaded copy of each service, waiting to fork its replacement.

A spare costs memory (a copy of the service's imports and caches, ~100-150 MB; its
replacements share those pages copy-on-write) and nothing else once warm: it waits on its
stdin. It starts at the lowest CPU priority (``service.lower_priority``), so it never slows
the running stack down, and stays for every later restart. Asked (``ask``), it forks a
replacement and writes its pid on its stdout; the supervisor adopts that process
(``collect``: it was re-parented to us, the subreaper). A spare that dies is logged and
replaced after ``supervisor.spare_retry_s``; one that fails to answer is ended and the
service started the ordinary way.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

import structlog

from common import service
from common.config import AegisConfig
from services.orchestrator import children
from services.orchestrator.children import Adopted, Child

log = structlog.get_logger(__name__)
POLL_S = 0.002  # while a spare forks a replacement: how often its answer is looked for
STOP_S = 2.0  # a spare (no handlers yet: SIGTERM ends it at once) gets this long, then SIGKILL
MODES = ("demo", "paper", "live")  # not replay: a replay must not share its CPU with spares


def _preexec() -> None:  # a spare: dies with its parent, warms up at the lowest priority
    service.die_with_parent()
    service.lower_priority()


def enabled(cfg: AegisConfig, *, subreaper: bool) -> bool:
    return subreaper and cfg.supervisor.warm_spares and cfg.mode in MODES


def state(child: Child, rd: Path) -> str:
    """``warm`` (loaded, waiting), ``warming`` (still loading), or ``none``."""
    sp = child.spare
    if sp is None or sp.poll() is not None:
        return "none"
    return "warm" if service.live_pid(service.spare_marker(rd, child.name)) == sp.pid else "warming"


def ask(child: Child, rd: Path, now: float) -> bool:
    """Tell the child's spare to fork a replacement; False when there is no spare to ask.

    A spare still warming up takes the word too: it forks as soon as it is loaded, which
    is never later than a new process would be ready to start."""
    sp = child.spare
    if sp is None or sp.poll() is not None or sp.stdin is None:
        return False
    try:
        sp.stdin.write(service.SPARE_GO)
        sp.stdin.flush()
    except OSError:  # it died just now (broken pipe): ``keep`` replaces it
        return False
    child.spare_asked_at = now
    child.spare_asked_state = state(child, rd)
    return True


def read_line(child: Child) -> str | None:
    """The next full line the spare wrote on its stdout, None while there is none."""
    sp = child.spare
    if sp is not None and sp.stdout is not None and b"\n" not in child.spare_out:
        try:
            child.spare_out += os.read(sp.stdout.fileno(), 4096)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return None
    if b"\n" not in child.spare_out:
        return None
    line, child.spare_out = child.spare_out.split(b"\n", 1)
    return line.decode(errors="replace").strip()


def collect(child: Child, now: float, cfg: AegisConfig, *, respawn: Callable[[Child, float], None] | None) -> None:
    """Adopt the replacement whose pid the spare wrote; if the spare failed, end it and call
    ``respawn`` (a new process; None while the stack stops)."""
    sp = child.spare
    line = read_line(child) if sp is not None else None
    if line is not None:
        child.spare_asked_at = None
        try:
            pid = int(line)
        except ValueError:
            pid = 0
        if pid > 0:
            child.warm_restarts += 1
            children.record_start(child, Adopted(pid), child.spare_asked_state)
            return
    elif sp is not None and sp.poll() is None and now - (child.spare_asked_at or now) < \
            cfg.supervisor.ready_timeout_s:
        return  # still loading (or forking): keep waiting
    log.warning("supervisor.spare_failed", child=child.name, pid=sp.pid if sp is not None else None,
                answer=line)
    child.spare_asked_at = None
    if sp is not None:
        end(sp)
        child.spare = None
        child.spare_retry_at = now + cfg.supervisor.spare_retry_s
    if respawn is not None:
        respawn(child, now)


def keep(child: Child, rd: Path, cfg: AegisConfig, now: float) -> None:
    """One warm spare per service, started once the service has a ready incarnation; a dead
    one is replaced after ``supervisor.spare_retry_s``."""
    sp = child.spare
    if sp is not None:
        if sp.poll() is not None and child.spare_asked_at is None:
            retry_s = cfg.supervisor.spare_retry_s
            log.warning("supervisor.spare_died", child=child.name, pid=sp.pid, code=sp.returncode,
                        retry_in_s=retry_s)
            end(sp)
            child.spare = None
            child.spare_retry_at = now + retry_s
        return
    if now < child.spare_retry_at or child.restart_at is not None or child.spare_asked_at is not None:
        return
    if not child.running or not children.is_ready(child, rd, cfg):
        return
    sp = subprocess.Popen(child.argv + ["--spare"], env=children.child_env(child, rd), start_new_session=True,
                          preexec_fn=_preexec, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert sp.stdout is not None
    os.set_blocking(sp.stdout.fileno(), False)
    child.spare, child.spare_out = sp, b""
    child.pids.append(sp.pid)
    log.info("supervisor.spare_started", child=child.name, pid=sp.pid)


def end(sp: subprocess.Popen) -> None:
    """Stop a spare: end of file on its stdin (it stands down), else SIGTERM, then SIGKILL."""
    if sp.stdin is not None:
        try:
            sp.stdin.close()
        except OSError:
            pass
    try:
        sp.wait(STOP_S)
    except subprocess.TimeoutExpired:
        sp.terminate()
        try:
            sp.wait(STOP_S)
        except subprocess.TimeoutExpired:
            sp.kill()
            sp.wait()
    if sp.stdout is not None:
        sp.stdout.close()


def end_child_spare(child: Child) -> None:
    """End the child's spare, if it has one (nothing may take over any more)."""
    sp, child.spare = child.spare, None
    if sp is not None:
        end(sp)


def stop_all(kids: Iterable[Child], cfg: AegisConfig) -> None:
    """At stop, before the services: a replacement being forked is adopted (so that it is
    stopped with the others), then every spare is ended."""
    for child in kids:
        deadline = time.monotonic() + STOP_S
        while child.spare_asked_at is not None and time.monotonic() < deadline:
            collect(child, time.monotonic(), cfg, respawn=None)  # adopt it, to stop it below
            time.sleep(POLL_S)
        child.spare_asked_at = None
        end_child_spare(child)
