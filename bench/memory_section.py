"""Section 5: resident memory of every service of the real stack at 300 symbols.

Starts ``aegis run --symbols 300`` in a private run directory (its own run dir, data dir
and shm dir, as the integration tests do), finds each child of the supervisor in /proc
(``python -m services.<name>``), waits until every service is ready, then samples
/proc/<pid>/status (VmRSS and its split: anonymous, file-backed, shared memory) and
/proc/<pid>/smaps_rollup (PSS) once a second. The ring is a 64 MiB shared mapping that the
feed, the brain and the orchestrator each map: it shows up in each one's RssShmem, and
PSS divides it between them, so PSS is the figure that adds up.

``--soak``: the same for ten minutes (opt-in): growth = last sample / first sample after a
one-minute warm-up; target flat, under 5 %.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, log

SERVICES = ("exchange_sim", "orchestrator", "brain", "feed")
READY_TIMEOUT_S = 90.0
SAMPLE_EVERY_S = 1.0
SOAK_S = 600.0
SOAK_WARMUP_S = 60.0
STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")


def read_status(pid: int) -> dict[str, float]:
    """MiB figures from /proc/<pid>/status, plus PSS from smaps_rollup when readable."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in STATUS_FIELDS:
            out[key] = int(rest.split()[0]) / 1024
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def children_of(ppid: int) -> dict[str, int]:
    """{service name: pid} of the supervisor's children: ``python -m services.<name>``, or
    ``aegis: <name>`` once the service has set its process title."""
    found: dict[str, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            if parent != ppid:
                continue
            argv = (d / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except (OSError, ValueError):
            continue
        title = b" ".join(argv)
        for name in SERVICES:
            if title.startswith(f"aegis: {name}".encode()) or f"services.{name}".encode() in argv:
                found[name] = int(d.name)
    return found


def ready_pids(run_dir: Path) -> dict[str, int]:
    """Pids the services wrote into their ``<name>.ready`` files."""
    out: dict[str, int] = {}
    for name in SERVICES:
        try:
            out[name] = int((run_dir / f"{name}.ready").read_text())
        except (OSError, ValueError):
            pass
    return out


def _ready(pids: dict[str, int]) -> bool:
    """Every service has a pid: ready files for ours, the process list for the sim."""
    return all(name in pids for name in SERVICES)


def _end(proc: subprocess.Popen, pids: dict[str, int]) -> None:
    """SIGTERM the supervisor (it stops its children in order), then make sure, by pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in pids.values():
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def measure(*, symbols: int, duration_s: float, warmup_s: float = 3.0, hydrate: int = 500) -> dict[str, Any]:
    """Run the stack for ``duration_s`` of streaming and sample every service's memory."""
    tmp = Path(tempfile.mkdtemp(prefix="agb-mem-", dir="/tmp"))
    os.chmod(tmp, 0o700)
    # the ring in shared memory as in production, but in a private directory of its own
    shm = Path(tempfile.mkdtemp(prefix="agb-mem-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    env = dict(os.environ)
    env.update({"AEGIS_RUN_DIR": str(tmp / "run"), "AEGIS_DATA_DIR": str(tmp / "data"),
                "AEGIS_RING__SHM_DIR": str(shm), "AEGIS_SUPERVISOR__METRICS_PORT": "0",
                # the tick capture (4,500 ticks/s) and 500 hydrated candles a symbol, as
                # measured since the first run (the program's default is the candles demo)
                "AEGIS_SIM__SOURCE": "ticks", "AEGIS_FEED__HYDRATE_CANDLES": str(hydrate),
                "PYTHONUNBUFFERED": "1"})
    summary = tmp / "summary.json"
    argv = [sys.executable, "-m", "common.cli", "run", "--symbols", str(symbols),
            "--duration", str(duration_s + warmup_s), "--summary-json", str(summary), "--no-status"]
    errlog = open(tmp / "stderr.log", "wb")
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=errlog, stderr=errlog,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    pids: dict[str, int] = {}
    samples: dict[str, list[dict[str, float]]] = {}
    sample_t: list[float] = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(pids):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stack did not become ready (exit {proc.poll()}): "
                                   + (tmp / "stderr.log").read_text()[-2000:])
            time.sleep(0.2)
            pids = {**children_of(proc.pid), **ready_pids(tmp / "run")}
        pids["supervisor"] = proc.pid
        t_ready = time.monotonic()
        time.sleep(warmup_s)
        while proc.poll() is None and time.monotonic() - t_ready < duration_s + warmup_s - 0.5:
            sample_t.append(time.monotonic() - t_ready)
            for name, pid in pids.items():
                try:
                    samples.setdefault(name, []).append(read_status(pid))
                except OSError:
                    pass
            time.sleep(SAMPLE_EVERY_S)
        try:
            proc.wait(duration_s + 60)
        except subprocess.TimeoutExpired:
            pass
        run_summary = json.loads(summary.read_text()) if summary.exists() else {}
    finally:
        _end(proc, {k: v for k, v in pids.items() if k != "supervisor"})
        errlog.close()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    per: dict[str, Any] = {}
    for name, ss in samples.items():
        last = ss[-1]
        per[name] = {"rss_mib": last.get("VmRSS"), "pss_mib": last.get("Pss"),
                     "anon_mib": last.get("RssAnon"), "file_mib": last.get("RssFile"),
                     "shmem_mib": last.get("RssShmem"), "hwm_mib": last.get("VmHWM"),
                     "rss_first_mib": ss[0].get("VmRSS"), "samples": len(ss),
                     "rss_series_mib": [round(s.get("VmRSS", 0.0), 2) for s in ss]}
    return {"services": per, "symbols": symbols, "duration_s": duration_s, "hydrate_candles": hydrate,
            "sample_times_s": [round(t, 2) for t in sample_t],
            "stack": {k: run_summary.get(k) for k in ("ticks_written", "ticks_lost", "symbols",
                                                       "startup_s", "latency_us")}}


def soak(*, symbols: int) -> dict[str, Any]:
    r = measure(symbols=symbols, duration_s=SOAK_S, warmup_s=SOAK_WARMUP_S)
    for name, s in r["services"].items():
        series = s["rss_series_mib"]
        s["growth_pct"] = 100.0 * (series[-1] - series[0]) / series[0] if series and series[0] else None
        log(f"  soak {name:12s} RSS {series[0]:7.1f} -> {series[-1]:7.1f} MiB "
            f"({s['growth_pct']:+.1f} %)")
    return r


def run(*, quick: bool, repeats: int, do_soak: bool = False) -> dict[str, Any]:
    # quick (the test suite's smoke run): 100 hydrated candles a symbol instead of 500, so the
    # stack's start-up (300 x the candles, journaled) is not most of the section
    r = measure(symbols=300, duration_s=3.0 if quick else 15.0, warmup_s=2.0 if quick else 5.0,
                hydrate=100 if quick else 500)
    for name, s in r["services"].items():
        log(f"  memory {name:12s} RSS {s['rss_mib']:7.1f} MiB  PSS {s['pss_mib'] or 0:7.1f} MiB  "
            f"(anon {s['anon_mib']:.1f}, shm {s['shmem_mib']:.1f})")
    out: dict[str, Any] = {"at_300_symbols": r}
    total = [s["pss_mib"] for s in r["services"].values() if s.get("pss_mib")]
    out["total_pss_mib"] = sum(total) if total else None
    out["soak"] = soak(symbols=300) if do_soak else {"skipped": "opt-in: python -m bench --soak"}
    return out
