"""Ring under real concurrency: a writer and a reader in two processes, every record checked.

The test file doubles as the child program (``python test_ring_stress.py writer|reader ...``)
so the parent can start both sides with ``subprocess`` and end them by pid at teardown.
Every field of a record is derived from its sequence number, so the reader can check each
delivered record byte for byte: a torn or overwritten record cannot go unnoticed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if __name__ == "__main__":
    sys.path.insert(0, str(REPO))

from common.records import empty  # noqa: E402
from common.ring import Ring  # noqa: E402

N_RECORDS = 2_000_000
SMALL_CAPACITY = 4096  # laps every ~4k records: overruns are certain with a slow reader
BIG_CAPACITY = 1 << 16
READ_BATCH = 1024
WRITE_SIZES = (1, 7, 64, 256, 511, 256, 100)  # cycled; size 1 goes through publish()
PRECOMPUTE = 1 << 16  # records of payload built at a time, so writing is not paced by numpy
CHILD_DEADLINE_S = 45.0  # a child gives up (and reports) rather than hang the suite


def payload(seqs: np.ndarray) -> np.ndarray:
    """Records whose every field is a function of the sequence number (stamp left at 0)."""
    recs = empty(len(seqs))
    recs["recv_ns"] = seqs * 3
    recs["event_ms"] = seqs + 1_700_000_000_000
    recs["id"] = seqs
    recs["price"] = seqs * 0.5
    recs["qty"] = ((seqs * 2654435761) & 0xFFFF) * 0.001  # a cheap hash
    recs["aux"] = -(seqs * 0.25)
    recs["aux_qty"] = (seqs & 0x3FF) * 0.5
    recs["symbol_id"] = seqs & 0xFFF
    recs["kind"] = (seqs & 3) + 1
    recs["flags"] = seqs & 0xFF
    return recs


def run_writer(path: str, n: int, pace: bool) -> dict:
    """Write n records as fast as possible (pace: keep the reader within half a ring)."""
    ring = Ring.attach(path)
    w = ring.writer()
    half = ring.capacity // 2
    seq, i = 0, 0
    block, block_start = empty(0), 0
    while seq < n:
        size = min(WRITE_SIZES[i % len(WRITE_SIZES)], n - seq)
        i += 1
        while pace and ring.counters()["lag"] + size > half:
            time.sleep(0)
        if seq + size > block_start + len(block):
            block, block_start = payload(np.arange(seq, seq + PRECOMPUTE, dtype=np.int64)), seq
        recs = block[seq - block_start:seq - block_start + size]
        if size == 1:
            r = recs[0]
            w.publish(r["symbol_id"], r["kind"], r["flags"], r["recv_ns"], r["event_ms"], r["id"],
                      r["price"], r["qty"], r["aux"], r["aux_qty"])
        else:
            w.write_batch(recs)
        seq += size
    ring.close()
    return {"written": seq}


def run_reader(path: str, n: int, slow: bool, margin: int) -> dict:
    """Read until the cursor reaches n, checking every record; slow: nap so the writer laps us.

    margin >= 0 overrides the resync margin: 0 resumes at the very slot the writer overwrites
    next, the best place to catch a torn copy (without the stamp re-check, bad records show).
    """
    ring = Ring.attach(path)
    rd = ring.reader("saved")
    if margin >= 0:
        rd.margin = margin
    out = empty(READ_BATCH)
    print("ready", flush=True)
    delivered = bad = non_increasing = batches = 0
    last = 0
    deadline = time.monotonic() + CHILD_DEADLINE_S
    while rd.cursor < n and time.monotonic() < deadline:
        k = rd.read_batch(out)
        if not k:
            continue
        got = out[:k]
        stamps = got["stamp"]
        non_increasing += int(stamps[0] <= last) + int(np.count_nonzero(np.diff(stamps) <= 0))
        want = payload(stamps - 1)
        want["stamp"] = stamps
        bad += int(np.count_nonzero(got.view(np.int64).reshape(k, 8) != want.view(np.int64).reshape(k, 8)))
        last = int(stamps[-1])
        delivered += k
        batches += 1
        if slow and batches % 4 == 0:
            time.sleep(0.0005)
    result = {"delivered": delivered, "lost": rd.lost, "resyncs": rd.resyncs, "bad_words": bad,
              "non_increasing": non_increasing, "cursor": rd.cursor, "last_stamp": last}
    ring.close()
    return result


def warm_kernels(path: str) -> None:
    """Compile (or load) the numba kernels once here, so the children only read the cache."""
    r = Ring.create(path, 8)
    r.writer().write_batch(payload(np.arange(3, dtype=np.int64)))
    r.writer().publish(0, 1, 0, 0, 0, 0, 0.0, 0.0)
    r.reader().read_batch(empty(4))
    r.close()
    Ring.unlink(path)


def run_pair(procs, tmp: Path, capacity: int, *, slow_reader: bool = False, pace_writer: bool = False,
             margin: int = -1) -> tuple[dict, dict]:
    path = str(tmp / "stress.ring")
    warm_kernels(path)
    ring = Ring.create(path, capacity)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    me = str(Path(__file__).resolve())
    reader = procs.python(me, "reader", path, str(N_RECORDS), str(int(slow_reader)), str(margin),
                          cwd=str(REPO), env=env, stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "ready"
    writer = procs.python(me, "writer", path, str(N_RECORDS), str(int(pace_writer)),
                          cwd=str(REPO), env=env, stdout=subprocess.PIPE, text=True)
    w_out, _ = writer.communicate(timeout=CHILD_DEADLINE_S + 10)
    r_out, _ = reader.communicate(timeout=CHILD_DEADLINE_S + 10)
    assert (writer.returncode, reader.returncode) == (0, 0)
    counters = ring.counters()
    ring.close()
    assert counters["written"] == N_RECORDS
    return json.loads(w_out.strip().splitlines()[-1]), json.loads(r_out.strip().splitlines()[-1])


def test_slow_reader_on_small_ring_is_lapped_but_never_sees_a_bad_record(procs, short_tmp):
    """2M records through 4096 slots to a napping reader: overruns happen, each is counted exactly,
    and no delivered record is torn, stale or out of order."""
    w, r = run_pair(procs, short_tmp, SMALL_CAPACITY, slow_reader=True)
    assert w["written"] == N_RECORDS
    assert (r["bad_words"], r["non_increasing"]) == (0, 0)
    assert r["cursor"] == N_RECORDS
    assert r["delivered"] + r["lost"] == N_RECORDS
    assert r["lost"] > 0 and r["resyncs"] > 0
    assert r["last_stamp"] == N_RECORDS  # the newest record is always delivered


def test_reader_resyncing_onto_the_slot_being_overwritten_never_delivers_a_torn_record(procs, short_tmp):
    """A busy reader with resync margin 0 keeps landing on the slot the writer rewrites next:
    every copy that raced a rewrite is discarded and counted, none is delivered."""
    w, r = run_pair(procs, short_tmp, SMALL_CAPACITY, margin=0)
    assert w["written"] == N_RECORDS
    assert (r["bad_words"], r["non_increasing"]) == (0, 0)
    assert r["delivered"] + r["lost"] == N_RECORDS
    assert r["last_stamp"] == N_RECORDS


def test_reader_that_keeps_up_on_big_ring_gets_every_record_in_order(procs, short_tmp):
    """With the writer held within half a 65536-slot ring of the reader (so it wraps ~30 times
    but never laps), all 2M records arrive, in order, byte-exact, none lost."""
    w, r = run_pair(procs, short_tmp, BIG_CAPACITY, pace_writer=True)
    assert w["written"] == N_RECORDS
    assert (r["bad_words"], r["non_increasing"]) == (0, 0)
    assert (r["delivered"], r["lost"], r["resyncs"]) == (N_RECORDS, 0, 0)


if __name__ == "__main__":
    role, path_arg, n_arg, flag = sys.argv[1:5]
    if role == "writer":
        res = run_writer(path_arg, int(n_arg), pace=flag == "1")
    else:
        res = run_reader(path_arg, int(n_arg), slow=flag == "1", margin=int(sys.argv[5]))
    print(json.dumps(res), flush=True)
