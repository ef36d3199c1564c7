"""Quick ring benchmark: records/s through the shared-memory ring, in one process and across two.

- one process: ``publish`` per record, ``write_batch`` of 256, and a write-256/read-256
  ping-pong through one ring (what a co-located writer and reader would see);
- two processes: a writer child (``publish`` or ``write_batch`` of 256, flat out) and this
  process reading batches of 4096 into one buffer; the ring is big enough that nothing is
  lost, so the rate is the slower side's.

Prints numbers and returns them as a dict (``run()``) for the bench harness; asserts nothing.

    .venv/bin/python bench/bench_ring_quick.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from common.records import empty  # noqa: E402
from common.ring import Ring  # noqa: E402

CAPACITY = 1 << 20  # slots: 64 MiB, the production default
N_PUBLISH = 300_000  # records for the per-record paths (~1 µs each)
N_BATCH = 4_000_000  # records for the batch paths
WRITE_BATCH = 256
READ_BATCH = 4096
CHILD_TIMEOUT_S = 120.0


def batch_records(n: int) -> np.ndarray:
    recs = empty(n)
    recs["id"] = np.arange(n)
    recs["price"] = 100.0 + np.arange(n) * 0.01
    recs["qty"], recs["kind"], recs["symbol_id"] = 1.0, 1, np.arange(n) % 300
    return recs


def write_publish(w, n: int) -> None:
    publish = w.publish  # bound once: the loop is what a feed's hot path costs
    for i in range(n):
        publish(i % 300, 1, 0, i, i, i, 100.0, 1.0, 0.0, 0.0)


def write_batches(w, n: int) -> None:
    recs = batch_records(WRITE_BATCH)
    for _ in range(n // WRITE_BATCH):
        w.write_batch(recs)


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def one_process(path: str) -> dict[str, float]:
    ring = Ring.create(path, CAPACITY)
    try:
        w = ring.writer()
        write_publish(w, 1_000)  # warm up: load the numba cache (or compile)
        write_batches(w, WRITE_BATCH)
        t = time.perf_counter()
        write_publish(w, N_PUBLISH)
        publish_s = time.perf_counter() - t
        t = time.perf_counter()
        write_batches(w, N_BATCH)
        batch_s = time.perf_counter() - t

        rd = ring.reader("latest")
        recs, out = batch_records(WRITE_BATCH), empty(WRITE_BATCH)
        t = time.perf_counter()
        for _ in range(N_BATCH // WRITE_BATCH):
            w.write_batch(recs)
            rd.read_batch(out)
        pingpong_s = time.perf_counter() - t
        empty_reads = 100_000
        t = time.perf_counter()
        for _ in range(empty_reads):
            rd.read_batch(out)
        empty_s = time.perf_counter() - t
    finally:
        ring.close()
        Ring.unlink(path)
    return {"1p_publish_recs_per_s": _rate(N_PUBLISH, publish_s),
            "1p_publish_ns_per_rec": 1e9 * publish_s / N_PUBLISH,
            "1p_write_batch256_recs_per_s": _rate(N_BATCH, batch_s),
            "1p_write256_read256_recs_per_s": _rate(N_BATCH, pingpong_s),
            "1p_empty_read_ns": 1e9 * empty_s / empty_reads}


def two_processes(path: str, mode: str, n: int) -> dict[str, float]:
    """Child writes n records flat out; we read until we have seen all of them."""
    ring = Ring.create(path, CAPACITY)
    rd = ring.reader()
    out = empty(READ_BATCH)
    rd.read_batch(out)  # warm the reader kernel before the clock starts
    child = subprocess.Popen([sys.executable, __file__, "--writer", path, mode, str(n)])
    try:
        while rd.lag() == 0 and child.poll() is None:
            pass
        t = time.perf_counter()
        while rd.cursor < n and child.poll() in (None, 0):
            rd.read_batch(out)
        seconds = time.perf_counter() - t
        child.wait(CHILD_TIMEOUT_S)
        lost = rd.lost
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        ring.close()
        Ring.unlink(path)
    return {f"2p_{mode}_recs_per_s": _rate(n, seconds), f"2p_{mode}_lost": lost}


def run() -> dict[str, float]:
    d = tempfile.mkdtemp(prefix="ag-bench-ring-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = str(Path(d) / "bench.ring")
    try:
        results = one_process(path)
        results.update(two_processes(path, "publish", N_PUBLISH))
        results.update(two_processes(path, "write_batch256", N_BATCH))
    finally:
        os.rmdir(d)
    return results


def _writer_child(path: str, mode: str, n: int) -> None:
    ring = Ring.attach(path)
    w = ring.writer()
    (write_publish if mode == "publish" else write_batches)(w, n)
    ring.close()


def main() -> None:
    if sys.argv[1:2] == ["--writer"]:
        _writer_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    r = run()
    print(f"ring quick bench: capacity {CAPACITY:,} slots, write batches of {WRITE_BATCH}, "
          f"read batches of {READ_BATCH}")
    for k, v in r.items():
        print(f"  {k:34s} {v:>16,.1f}" if isinstance(v, float) else f"  {k:34s} {v:>16,}")


if __name__ == "__main__":
    main()
