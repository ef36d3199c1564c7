"""What every benchmark section shares: child processes that always end, CPU pinning, the
clock, repeat statistics and the machine description.

Processes. Children are forked (Linux), so they inherit the parent's imported modules and
its already loaded numba kernels: a child is ready in milliseconds instead of the second a
fresh interpreter needs. Every child is registered in ``Children`` and ended by its pid
(join, then SIGTERM, then SIGKILL) when the ``with`` block exits, error or not. The parent
never creates a ZeroMQ context or starts a queue feeder thread before forking.

Clock. ``time.perf_counter_ns`` is CLOCK_MONOTONIC on Linux: one system-wide clock, so a
stamp taken in one process and compared in another is a true one-way latency.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import platform
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
clock = time.perf_counter_ns  # CLOCK_MONOTONIC: the same clock in every process
CTX = mp.get_context("fork")
JOIN_S = 5.0  # a finished child gets this long to exit before SIGTERM, then SIGKILL
# Children raise their priority when allowed (root): on a shared machine other work would
# otherwise preempt a pinned, busy-polling process for whole scheduler slices (ms), which
# measures the neighbours, not the transport. Every contender gets the same treatment. With
# autogroup scheduling (the default on desktop-style kernels) a nice value only weighs
# against the same session, so each child also starts its own session and sets that
# session's autogroup nice.
NICE = -10 if hasattr(os, "geteuid") and os.geteuid() == 0 else 0
PR_SET_PDEATHSIG = 1


# ----------------------------------------------------------------------------- CPUs


def cpus() -> list[int]:
    """CPUs this process may run on (all of them on an unrestricted machine)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def producer_cpu() -> int | None:
    c = cpus()
    return c[0] if len(c) >= 2 else None


def consumer_cpu() -> int | None:
    c = cpus()
    return c[1] if len(c) >= 2 else None


def pin(cpu: int | None) -> None:
    """Pin the calling process to one CPU (producer and consumer never share a core)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


# ----------------------------------------------------------------------------- children


def _entry(fn: Callable[..., Any], cpu: int | None, conn, args: tuple) -> None:
    """Child main: pin, run ``fn(*args)``, send its result (or the traceback) back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle
    _die_with_parent()
    pin(cpu)
    if NICE:
        _raise_priority(NICE)
    before = _preemptions()
    try:
        result = fn(*args)
        if isinstance(result, dict):
            # involuntary context switches while the child ran: each one means another
            # process took this core, which shows up as a latency outlier, not as our cost
            result["preempted"] = _preemptions() - before
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        conn.send({"error": traceback.format_exc()})
    else:
        conn.send(result)
    finally:
        conn.close()


def _die_with_parent() -> None:
    """SIGKILL this child if the bench process dies (a busy-polling orphan would spin forever)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _raise_priority(nice: int) -> None:
    try:
        os.setsid()  # its own session, so its own autogroup
        Path("/proc/self/autogroup").write_text(f"{nice}\n")
    except OSError:
        pass
    try:
        os.nice(nice)
    except OSError:
        pass


def _preemptions() -> int:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    except (ImportError, OSError):
        return 0


class ChildError(RuntimeError):
    pass


class Child:
    """One forked process whose return value comes back over a pipe."""

    def __init__(self, name: str, fn: Callable[..., Any], args: tuple, cpu: int | None) -> None:
        self.name = name
        self._recv, send = CTX.Pipe(duplex=False)
        self.proc = CTX.Process(target=_entry, args=(fn, cpu, send, args), name=name, daemon=True)
        self.proc.start()
        send.close()
        self._result: Any = None
        self._have = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def result(self, timeout_s: float) -> Any:
        """The child's return value; ChildError if it failed, died or took too long."""
        if not self._have:
            if not self._recv.poll(timeout_s):
                raise ChildError(f"{self.name}: no result within {timeout_s:.0f} s "
                                 f"(alive={self.proc.is_alive()}, exit={self.proc.exitcode})")
            try:
                self._result = self._recv.recv()
            except EOFError as exc:
                raise ChildError(f"{self.name}: died (exit code {self.proc.exitcode})") from exc
            self._have = True
        if isinstance(self._result, dict) and "error" in self._result and len(self._result) == 1:
            raise ChildError(f"{self.name} failed:\n{self._result['error']}")
        return self._result

    def end(self) -> None:
        """Join; if still alive, SIGTERM then SIGKILL, each by this child's pid."""
        p = self.proc
        p.join(JOIN_S if self._have else 0.5)
        if p.is_alive():
            p.terminate()
            p.join(2.0)
        if p.is_alive():
            p.kill()
            p.join(2.0)
        self._recv.close()


class Children:
    """``with Children() as ch: ch.start(...)``: every child started is ended on exit."""

    def __init__(self) -> None:
        self.started: list[Child] = []

    def start(self, name: str, fn: Callable[..., Any], *args: Any, cpu: int | None = None) -> Child:
        c = Child(name, fn, args, cpu)
        self.started.append(c)
        return c

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self.started):
            c.end()


def wait_all(events, timeout_s: float, children: list[Child]) -> None:
    """Wait until every ``events[i]`` is set; ChildError early if a child died meanwhile."""
    deadline = time.monotonic() + timeout_s
    for ev in events:
        while not ev.wait(0.05):
            for c in children:
                if not c.proc.is_alive():
                    c.result(0.1)  # raises with the child's traceback
                    raise ChildError(f"{c.name} exited before it was ready")
            if time.monotonic() > deadline:
                raise ChildError(f"children not ready within {timeout_s:.0f} s")


def spin_until(t_ns: int) -> None:
    """Busy-wait on the clock, sleeping first when the wait is long (sleep overshoots ~60 µs)."""
    now = clock()
    if t_ns - now > 300_000:
        time.sleep((t_ns - now - 200_000) / 1e9)
    while clock() < t_ns:
        pass


# ----------------------------------------------------------------------------- statistics


def percentiles_us(lat_ns: np.ndarray) -> dict[str, float]:
    """Exact p50 / p99 / p99.9 / max of one run's latencies, in microseconds."""
    if lat_ns.size == 0:
        return {"p50": math.nan, "p99": math.nan, "p999": math.nan, "max": math.nan, "count": 0}
    p50, p99, p999 = np.percentile(lat_ns, (50, 99, 99.9))
    return {"p50": p50 / 1e3, "p99": p99 / 1e3, "p999": p999 / 1e3,
            "max": float(lat_ns.max()) / 1e3, "count": int(lat_ns.size)}


def summarize(values: list[float]) -> dict[str, Any]:
    """Median and spread of one figure over repeats: spread = (max - min) / median."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "spread_pct": math.nan,
                "repeats": 0, "values": []}
    med = float(np.median(vals))
    spread = 100.0 * (max(vals) - min(vals)) / med if med else 0.0
    return {"median": med, "min": min(vals), "max": max(vals), "spread_pct": spread,
            "repeats": len(vals), "values": vals}


def summarize_runs(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Per key, the summary over repeats of ``run[key]``."""
    return {k: summarize([r.get(k) for r in runs]) for k in keys}


def fmt_rate(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def fmt_us(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import zmq

    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cpus_usable": len(cpus()),
        "memory_gib": round(mem_kb / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "pyzmq": _version("pyzmq"),
        "libzmq": zmq.zmq_version(),
        "msgspec": _version("msgspec"),
        "orjson": _version("orjson"),
        "faster_fifo": _version("faster-fifo"),
        "loadavg_at_start": loadavg(),
        "children_nice": NICE,
        "pinning": "producer on CPU %s, consumer on CPU %s" % (producer_cpu(), consumer_cpu()),
    }


@contextmanager
def timed(label: str) -> Iterator[None]:
    t = time.monotonic()
    log(f"[bench] {label} ...")
    try:
        yield
    finally:
        log(f"[bench] {label}: {time.monotonic() - t:.1f} s")


class NullBus:
    """A bus publisher (and subscriber) that sends nothing: a brain built in a bench, whose
    candles, signals and journal rows are not what is measured."""

    def publish(self, *_a: Any, **_k: Any) -> None:
        return None

    def drain(self, *_a: Any) -> list:
        return []

    def close(self) -> None:
        return None
