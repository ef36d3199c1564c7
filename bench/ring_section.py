"""Section 1: the ring against what a user would otherwise use, one producer process and one
consumer process on separate cores, every contender in the same run.

Throughput: the producer sends n records flat out; rate = n / (consumer's last receipt -
producer's first send). Latency: the producer paces at 10k and 100k records/s and stamps
each record at send; the consumer computes now - stamp on receipt (p50 / p99 / p99.9).
Repeats are interleaved (every contender once, then again) so drifting load on the
machine hits all of them alike; figures are medians over repeats, with the spread.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any, Callable

from bench import transports as tr
from bench.harness import CTX, Children, consumer_cpu, log, percentiles_us, producer_cpu, \
    summarize, wait_all

TRIAL_TIMEOUT_S = 120.0
BATCH = 100  # records per send for every batch variant (the 100-tick batches)


def _faster_fifo_status() -> str | None:
    """None when faster-fifo works here, else why not."""
    try:
        import faster_fifo  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure (missing, broken build)
        return f"unavailable: {type(exc).__name__}: {exc}"
    return None


# name -> (description, setup kind, producer, consumer, variant, batch)
CONTENDERS: dict[str, tuple[str, str, Callable, Callable, str, int]] = {
    "aegis_per_record": ("AEGIS ring, RingWriter.publish per record from Python (one C call, "
                         "common/_ringc.c)", "aegis", tr.aegis_producer, tr.aegis_consumer, "", 1),
    "aegis_batch": (f"AEGIS ring, RingWriter.write_batch of {BATCH}", "aegis",
                    tr.aegis_producer, tr.aegis_consumer, "batch", BATCH),
    "aegis_entry_point": ("AEGIS ring, publish per record through numba's compiled entry point "
                          "(the fallback where the C publisher is not built)", "aegis",
                          tr.aegis_producer, tr.aegis_consumer, "entry", 1),
    "aegis_staged": (f"AEGIS ring, struct.pack_into a staging block, ring_write_batch every "
                     f"{tr.STAGE} (proposed)", "aegis", tr.aegis_producer, tr.aegis_consumer, "staged", 1),
    "aegis_njit": ("AEGIS ring, ring_publish per record from compiled (numba) code", "aegis",
                   tr.aegis_producer, tr.aegis_consumer, "njit", 1),
    "naive_ring": ("naive shm ring: struct.pack_into + busy poll, no overrun detection", "naive",
                   tr.naive_producer, tr.naive_consumer, "", 1),
    "mp_queue": ("multiprocessing.Queue, put/get per record", "mpq",
                 tr.mpq_producer, tr.mpq_consumer, "", 1),
    "faster_fifo": ("faster-fifo Queue, put per record, get_many", "ffq",
                    tr.ffq_producer, tr.ffq_consumer, "", 1),
    "faster_fifo_batch": (f"faster-fifo Queue, put_many of {BATCH}, get_many", "ffq",
                          tr.ffq_producer, tr.ffq_consumer, "batch", BATCH),
    "zmq_per_tick": ("pyzmq PUSH/PULL over ipc, one record per message", "zmq",
                     tr.zmq_producer, tr.zmq_consumer, "", 1),
    "zmq_batch": (f"pyzmq PUSH/PULL over ipc, {BATCH} records per message", "zmq",
                  tr.zmq_producer, tr.zmq_consumer, "batch", BATCH),
}

# records per throughput trial (full mode): about a second each at the expected rates
TPUT_N = {"aegis_per_record": 3_000_000, "aegis_entry_point": 1_000_000, "aegis_staged": 2_000_000,
          "aegis_batch": 4_000_000, "aegis_njit": 4_000_000,
          "naive_ring": 1_500_000, "mp_queue": 200_000,
          "faster_fifo": 300_000, "faster_fifo_batch": 2_000_000, "zmq_per_tick": 500_000,
          "zmq_batch": 5_000_000}
LAT_CONTENDERS = ("aegis_per_record", "aegis_entry_point", "naive_ring", "mp_queue",
                  "faster_fifo", "zmq_per_tick", "zmq_batch")
LAT_RATES = (10_000, 100_000)
LAT_SECONDS = {10_000: 1.5, 100_000: 1.0}


def _pow2_at_least(n: int) -> int:
    c = 1 << 16
    while c < n:
        c <<= 1
    return c


def _setup(kind: str, tmp: str, total: int) -> dict[str, Any]:
    if kind == "aegis":
        return tr.aegis_setup(f"{tmp}/bench.ring", min(_pow2_at_least(total), 1 << 22))
    if kind == "naive":  # no overrun detection: it must never be lapped, so hold everything
        return tr.naive_setup(f"{tmp}/bench.naive", _pow2_at_least(total))
    if kind == "mpq":
        return {"q": CTX.Queue()}
    if kind == "ffq":
        import faster_fifo

        return {"q": faster_fifo.Queue(max_size_bytes=16 * 2**20)}
    if kind == "zmq":
        return {"endpoint": tr.ipc_endpoint(tmp)}
    raise ValueError(kind)  # no transport of this table: the caller's misuse


def trial(name: str, spec: tr.Spec) -> dict[str, Any]:
    """One producer/consumer pair; returns rate, loss and (paced) latency percentiles."""
    _desc, kind, producer, consumer, variant, _b = CONTENDERS[name]
    shm = "/dev/shm" if kind in ("aegis", "naive") else "/tmp"
    tmp = tempfile.mkdtemp(prefix="agb-", dir=shm)
    try:
        with Children() as ch:
            res = _setup(kind, tmp, spec.warm + spec.n)
            sync = tr.Sync(CTX)
            c = ch.start(f"{name}-consumer", consumer, res, spec, sync, variant, cpu=consumer_cpu())
            wait_all([sync.consumer_ready], 60, [c])
            p = ch.start(f"{name}-producer", producer, res, spec, sync, variant, cpu=producer_cpu())
            wait_all([sync.producer_ready], 60, [c, p])
            time.sleep(0.05)  # the warm-up records drain
            sync.go.set()
            r = c.result(TRIAL_TIMEOUT_S)
            pr = p.result(TRIAL_TIMEOUT_S)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t0, t_end, t_prod = sync.t_start.value, r["t_end"], sync.t_prod_end.value
    out: dict[str, Any] = {"got": r["got"], "lost": r["lost"], "n": spec.n,
                           "preempted": r.get("preempted", 0) + pr.get("preempted", 0),
                           "rate": r["got"] / ((t_end - t0) / 1e9) if t_end > t0 else float("nan"),
                           "offered_rate": spec.n / ((t_prod - t0) / 1e9) if t_prod > t0 else float("nan")}
    if "lat_ns" in r:
        out.update(percentiles_us(r["lat_ns"]))
    return out


def _compile_njit_loop() -> None:
    """Compile the compiled-caller loop once here; forked producers inherit it."""
    tmp = tempfile.mkdtemp(prefix="agb-", dir="/dev/shm")
    try:
        from common.ring import Ring

        ring = Ring.create(f"{tmp}/warm.ring", 1 << 4)
        tr.njit_publish_loop(ring.words, 0, 1)
        ring.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(*, quick: bool, repeats: int) -> dict[str, Any]:
    ff_status = _faster_fifo_status()
    _compile_njit_loop()
    names = [n for n in CONTENDERS if not (ff_status and n.startswith("faster_fifo"))]
    scale = 0.1 if quick else 1.0
    tput_runs: dict[str, list[dict]] = {n: [] for n in names if TPUT_N[n]}
    lat_runs: dict[int, dict[str, list[dict]]] = {
        rate: {n: [] for n in LAT_CONTENDERS if n in names} for rate in LAT_RATES}
    for rep in range(repeats):
        for name in tput_runs:
            b = CONTENDERS[name][5]
            n = max(b, int(TPUT_N[name] * scale) // b * b)
            r = trial(name, tr.Spec(mode="tput", n=n, batch=b))
            tput_runs[name].append(r)
            log(f"  ring tput  {name:18s} rep {rep + 1}: {r['rate'] / 1e6:8.3f} M/s  lost {r['lost']}"
                f"  preempted {r['preempted']}")
        for rate in LAT_RATES:
            secs = LAT_SECONDS[rate] * (0.3 if quick else 1.0)
            for name in lat_runs[rate]:
                b = CONTENDERS[name][5]
                n = max(b, int(rate * secs) // b * b)
                r = trial(name, tr.Spec(mode="lat", n=n, rate=rate, batch=b))
                lat_runs[rate][name].append(r)
                log(f"  ring lat   {name:18s} @{rate // 1000}k rep {rep + 1}: p50 {r['p50']:8.1f}  "
                    f"p99 {r['p99']:9.1f}  p99.9 {r['p999']:9.1f} us  achieved {r['rate'] / 1e3:6.1f}k/s  "
                    f"preempted {r['preempted']}")
    throughput = {n: {"desc": CONTENDERS[n][0], "batch": CONTENDERS[n][5],
                      "rate": summarize([r["rate"] for r in runs]),
                      "lost": [r["lost"] for r in runs], "n": runs[0]["n"],
                      "preempted": [r["preempted"] for r in runs]}
                  for n, runs in tput_runs.items()}
    latency = {str(rate): {n: {"desc": CONTENDERS[n][0],
                               **{k: summarize([r[k] for r in runs])
                                  for k in ("p50", "p99", "p999", "max", "rate")},
                               "lost": [r["lost"] for r in runs], "count": runs[0]["count"],
                               "preempted": [r["preempted"] for r in runs]}
                           for n, runs in per.items()}
               for rate, per in lat_runs.items()}
    unavailable = {"faster_fifo": ff_status, "faster_fifo_batch": ff_status} if ff_status else {}
    return {"throughput": throughput, "latency": latency, "unavailable": unavailable,
            "config": {"batch": BATCH, "read_batch": tr.READ_BATCH, "repeats": repeats,
                       "lat_seconds": {str(k): v * (0.3 if quick else 1.0) for k, v in LAT_SECONDS.items()},
                       "producer_cpu": producer_cpu(), "consumer_cpu": consumer_cpu()}}


def headline(sec: dict[str, Any]) -> dict[str, float | None]:
    t = sec["throughput"]

    def med(name: str) -> float | None:
        return t[name]["rate"]["median"] if name in t else None

    return {"aegis_per_record": med("aegis_per_record"), "aegis_batch": med("aegis_batch"),
            "mp_queue": med("mp_queue"), "faster_fifo": med("faster_fifo"),
            "zmq_per_tick": med("zmq_per_tick"), "zmq_batch": med("zmq_batch"),
            "naive_ring": med("naive_ring")}

