"""Helpers of the chaos suite: a seeded kill plan, a probe of a running stack, kill-and-wait
with timings, and the small pure functions that summarise them.

The probe only looks at what an operator sees: the run directory (``<service>.ready``
holding the pid of a ready incarnation, ``monitor.url``, ``config.json``), the supervisor's
``/status`` and ``/health``, and the sim's ``/fapi/v1/ping``. Nothing here imports the
services, so the suite tests the stack as a black box.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import statistics
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

SERVICES = ("exchange_sim", "orchestrator", "brain", "feed")  # the supervisor's start order
POLL_S = 0.01  # readiness poll period: the error it adds to a restart-to-ready time
HTTP_TIMEOUT_S = 1.0  # loopback: a slower answer means the endpoint is not there
READY_TARGET_S = 2.0  # the "each comes back within 2 seconds": printed, not asserted


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True, kw_only=True)
class Kill:
    service: str
    delay_s: float  # pause after the previous victim's replacement became ready


def kill_plan(seed: int, *, services: Sequence[str] = SERVICES, kills_per_service: int,
              min_delay_s: float, max_delay_s: float) -> tuple[Kill, ...]:
    """Every service ``kills_per_service`` times, in a seeded random order, each kill after a
    seeded random pause: kills land at random moments of the replay (mid-batch, mid-candle,
    mid-commit), yet one at a time, so each restart is timed on its own."""
    rng = random.Random(seed)
    order = [s for s in services for _ in range(kills_per_service)]
    rng.shuffle(order)
    return tuple(Kill(service=s, delay_s=round(rng.uniform(min_delay_s, max_delay_s), 3)) for s in order)


# ---------------------------------------------------------------------------- the probe
class StackProbe:
    """Read-only view of a running stack through its run directory and loopback endpoints."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._monitor: str | None = None
        self._sim: str | None = None

    def monitor_url(self) -> str | None:
        if self._monitor is None:
            try:
                self._monitor = (self.run_dir / "monitor.url").read_text().strip() or None
            except OSError:
                return None
        return self._monitor

    def sim_url(self) -> str:
        if self._sim is None:  # the supervisor resolves port 0 once; restarts reuse the port
            sim = json.loads((self.run_dir / "config.json").read_text())["sim"]
            self._sim = f"http://{sim['host']}:{sim['port']}"
        return self._sim

    def status(self) -> dict[str, Any] | None:
        url = self.monitor_url()
        if url is None:
            return None
        try:
            with urllib.request.urlopen(url + "/status", timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def healthy(self) -> bool:
        url = self.monitor_url()
        if url is None:
            return False
        try:
            with urllib.request.urlopen(url + "/health", timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310
                return r.status == 200
        except (OSError, ValueError):  # 503 (HTTPError is an OSError) while degraded
            return False

    def sim_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.sim_url() + "/fapi/v1/ping", timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310
                return r.status == 200
        except (OSError, ValueError):
            return False

    def ready_pid(self, service: str) -> int | None:
        """The pid of the service's ready incarnation, None while none is ready.

        orchestrator, brain, feed: the pid in ``<service>.ready`` (each writes it once ready;
        the supervisor deletes it before starting a replacement). exchange_sim has no ready
        file: the pid the supervisor runs, once the sim answers its ping on the stack's port.
        """
        if service != "exchange_sim":
            try:
                return int((self.run_dir / f"{service}.ready").read_text())
            except (OSError, ValueError):
                return None
        return self.supervised_pid(service) if self.sim_answers() else None

    def supervised_pid(self, service: str) -> int | None:
        """The pid the supervisor runs for the service (None while it runs none)."""
        st = self.status()
        if st is None:
            return None
        svc = st["services"][service]
        return int(svc["pid"]) if svc["running"] and svc["pid"] is not None else None

    def stack_ready(self, services: Sequence[str] = SERVICES) -> bool:
        """Every service has a ready incarnation (``/health`` alone is 200 as soon as every
        child is spawned, before the later ones are ready)."""
        return all(self.ready_pid(s) is not None for s in services) and self.healthy()

    def ring(self) -> dict[str, int]:
        st = self.status()
        return dict(st["ring"]) if st is not None else {}


def wait_until(predicate, timeout_s: float, period_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period_s)
    return False


# ---------------------------------------------------------------------------- kill and wait
@dataclass(frozen=True, kw_only=True)
class Restart:
    """One SIGKILL and what answered it."""

    service: str
    old_pid: int
    new_pid: int | None  # None: no replacement became ready within the timeout
    killed_wall_ns: int  # wall clock of the kill, to line it up with the stack's log
    ready_s: float  # kill -> replacement ready (monotonic clock); the timeout when None
    cpu_s: float | None  # CPU time the replacement used to get ready (user + system)
    ring_at_kill: dict[str, int]
    ring_at_ready: dict[str, int]


def kill_and_wait(probe: StackProbe, service: str, *, timeout_s: float) -> Restart:
    """SIGKILL the service's ready incarnation and time its replacement becoming ready.

    The clock starts just before ``kill(2)`` and stops when the replacement is first seen
    ready: its pid in ``<service>.ready``, or, for the sim, the first answered ping once the
    old process is dead (so the answer cannot come from it).
    """
    old = probe.ready_pid(service)
    if old is None:
        raise AssertionError(f"{service} is not ready before its kill")
    ring_at_kill = probe.ring() if service == "brain" else {}
    killed_wall_ns = time.time_ns()
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    deadline = t0 + timeout_s
    new: int | None = None
    if service == "exchange_sim":
        while pid_alive(old) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        while time.monotonic() < deadline and not probe.sim_answers():
            time.sleep(POLL_S)
        ready_s = time.monotonic() - t0
        pid = probe.supervised_pid(service) if ready_s < timeout_s else None
        new = pid if pid is not None and pid != old else None
    else:
        while time.monotonic() < deadline:
            pid = probe.ready_pid(service)
            if pid is not None and pid != old:
                new = pid
                break
            time.sleep(POLL_S)
        ready_s = time.monotonic() - t0
    cpu_s = cpu_seconds(new) if new is not None else None  # a forked replacement starts at 0
    ring_at_ready = probe.ring() if service == "brain" else {}
    return Restart(service=service, old_pid=old, new_pid=new, killed_wall_ns=killed_wall_ns,
                   ready_s=ready_s, cpu_s=cpu_s, ring_at_kill=ring_at_kill, ring_at_ready=ring_at_ready)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``): with the wall time it
    tells a slow start-up (much CPU) from a starved one (little CPU, long wait)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- the log
def log_events(log_lines: Iterable[str], event: str) -> list[dict[str, Any]]:
    """The JSON log records (``--log-format json``) of one event, in order."""
    out = []
    for line in log_lines:
        if f'"{event}"' not in line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def child_started_wall_ns(log_lines: Iterable[str]) -> dict[int, int]:
    """pid -> wall clock (ns) of the supervisor's ``supervisor.child_started`` line: splits a
    restart-to-ready time into the supervisor's share (detect the death, back off, spawn) and
    the new process's boot."""
    return {int(r["pid"]): iso_to_ns(r["timestamp"]) for r in log_events(log_lines, "supervisor.child_started")}


def child_started_spare(log_lines: Iterable[str]) -> dict[int, str]:
    """pid -> what the supervisor's ``supervisor.child_started`` line says of its spare:
    ``warm`` (forked by a spare that had finished warming up), ``warming`` (by a spare still
    loading), ``none`` (a new process)."""
    return {int(r["pid"]): str(r.get("spare", "none")) for r in log_events(log_lines, "supervisor.child_started")}


def spare_pids(log_lines: Iterable[str]) -> set[int]:
    """Every spare the supervisor started (``supervisor.spare_started``)."""
    return {int(r["pid"]) for r in log_events(log_lines, "supervisor.spare_started")}


def iso_to_ns(stamp: str) -> int:
    """``2026-11-24T08:29:31.458365Z`` (structlog's UTC iso stamp) -> ns since the epoch."""
    dt = datetime.strptime(stamp.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1_000


# ---------------------------------------------------------------------------- summaries
@dataclass(frozen=True, kw_only=True)
class Timing:
    service: str
    kills: int
    median_s: float
    max_s: float
    spawn_median_s: float | None  # kill -> supervisor spawned the replacement
    boot_median_s: float | None  # spawn -> replacement ready
    cpu_median_s: float | None  # CPU the replacement used from the kill to ready
    spares: dict[str, int] = field(default_factory=dict)  # warm / warming / none -> restarts
    over_bound: int = 0  # restarts slower than the target (kill -> ready over ``bound_s``)


def timings(restarts: Sequence[Restart], spawned_ns: dict[int, int],
            services: Sequence[str] = SERVICES, spare_of: dict[int, str] | None = None,
            bound_s: float = READY_TARGET_S) -> list[Timing]:
    out = []
    for s in services:
        mine = [r for r in restarts if r.service == s]
        if not mine:
            continue
        ready = [r.ready_s for r in mine]
        split = [((spawned_ns[r.new_pid] - r.killed_wall_ns) / 1e9, r.ready_s) for r in mine
                 if r.new_pid in spawned_ns]
        spawn = [sp for sp, _ in split]
        boot = [rd - sp for sp, rd in split]
        cpu = [r.cpu_s for r in mine if r.cpu_s is not None]
        out.append(Timing(service=s, kills=len(mine), median_s=statistics.median(ready),
                          max_s=max(ready),
                          spawn_median_s=statistics.median(spawn) if spawn else None,
                          boot_median_s=statistics.median(boot) if boot else None,
                          cpu_median_s=statistics.median(cpu) if cpu else None,
                          spares=dict(Counter((spare_of or {}).get(r.new_pid or -1, "none") for r in mine)),
                          over_bound=sum(1 for x in ready if x > bound_s)))
    return out


def timing_table(rows: Sequence[Timing], bound_s: float = READY_TARGET_S) -> str:
    """The restart-to-ready table printed at the end of a chaos run."""
    def f(x: float | None) -> str:
        return "    -" if x is None else f"{x:5.2f}"

    lines = ["service       kills | kill->ready median   max | = spawn + boot (medians) | CPU median"
             f" | forked by (warm/warming spare) or new | over {bound_s:g} s",
             "--------------------+-------------------------+-------------------------+-----------"
             "-+---------------------------------------+---------"]
    for t in rows:
        sp = "/".join(str(t.spares.get(k, 0)) for k in ("warm", "warming", "none"))
        lines.append(f"{t.service:<13} {t.kills:5d} | {t.median_s:12.2f} s {t.max_s:6.2f} s |"
                     f" {f(t.spawn_median_s)} s + {f(t.boot_median_s)} s      | {f(t.cpu_median_s)} s    |"
                     f" {sp:<37} | {t.over_bound:d}")
    over = sum(t.over_bound for t in rows)
    lines.append(f"target: every service ready again within {bound_s:g} s of its kill; {over} of "
                 f"{sum(t.kills for t in rows)} restarts took longer (reported, not asserted: a "
                 "timing depends on the machine's load)")
    return "\n".join(lines)


def candle_counts(db_path: Path) -> tuple[str, int, int]:
    """(integrity_check result, candle rows, distinct (symbol, interval_s, open_ms))."""
    db = sqlite3.connect(db_path)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = db.execute("SELECT COUNT(*) FROM candles").fetchone()[0]
        distinct = db.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT symbol, interval_s, open_ms FROM candles)").fetchone()[0]
    finally:
        db.close()
    return integrity, rows, distinct


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a SIGKILLed child awaiting its
    reaper has already closed its sockets and files)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
