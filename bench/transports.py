"""Producer and consumer of every transport the ring is compared with, one pair per transport.

Each producer sends ``spec.warm`` unmeasured records, says it is ready, waits for the go,
stamps ``sync.t_start`` and sends ``spec.n`` records: flat out (``mode == "tput"``) or paced
at ``spec.rate`` records/s (``"lat"``). Every record carries its send time
(``perf_counter_ns``, CLOCK_MONOTONIC) in ``recv_ns``; the consumer takes the clock as soon
as a record (or a batch) is in its hands, so ``now - recv_ns`` is the one-way latency.

The loops are written out per transport rather than shared through a callback: at a few
hundred nanoseconds a record, one extra Python call per record would be part of what is
measured. Each consumer uses its transport the way its documentation suggests: the rings
drain everything available per poll, faster-fifo uses ``get_many``, ``multiprocessing.Queue``
and ZeroMQ take one message per call. Records are the 64-byte tick record
(``common.records.TICK_DTYPE``), as bytes for the message-passing transports.
"""

from __future__ import annotations

import mmap
import os
import queue
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.harness import clock
from common.records import TICK_DTYPE, empty
from common.ring import _PUBLISH, Ring, ring_publish, ring_write_batch

REC = struct.Struct("<qqqqdddfHBB")  # TICK_DTYPE as struct: stamp, recv_ns, event_ms, id, ...
assert REC.size == TICK_DTYPE.itemsize == 64
STAMP = struct.Struct("<q")
N_SYM = 300
READ_BATCH = 4096  # records per ring read (the brain's default)
STAGE = 64  # records per staged commit (the proposed feed-side batching)
# A paced producer busy-waits holding the GIL, which a real feed (parked in epoll between
# frames) does not: a helper thread of the producer (multiprocessing.Queue's feeder) would
# then wait up to the default 5 ms switch interval for the GIL, and that wait, an artefact of
# the pacing, would be measured as queue latency. A short interval hands the GIL over within
# ~20 µs. It changes nothing for transports without Python threads.
PACED_SWITCH_S = 20e-6
IDLE_TIMEOUT_S = 10.0  # a consumer that sees nothing for this long gives up (producer died)


@dataclass(frozen=True, kw_only=True)
class Spec:
    mode: str  # "tput" (flat out) or "lat" (paced)
    n: int  # measured records
    warm: int = 1_000  # unmeasured records first (connections, caches, code paths)
    rate: int = 0  # records/s when paced
    batch: int = 1  # records per send for the batch variants


class Sync:
    """What producer and consumer share: readiness, the go, and the start/end stamps."""

    def __init__(self, ctx) -> None:
        self.consumer_ready = ctx.Event()
        self.producer_ready = ctx.Event()
        self.go = ctx.Event()
        self.t_start = ctx.RawValue("q", 0)
        self.t_prod_end = ctx.RawValue("q", 0)


def _result(spec: Spec, got: int, lost: int, t_end: int, lat: np.ndarray | None) -> dict[str, Any]:
    out: dict[str, Any] = {"got": got - spec.warm, "lost": lost, "t_end": t_end}
    if lat is not None:
        out["lat_ns"] = lat[spec.warm:got].copy()
    return out


def _lat(spec: Spec) -> np.ndarray | None:
    return np.zeros(spec.warm + spec.n, np.int64) if spec.mode == "lat" else None


def paced(spec: Spec) -> None:
    if spec.mode == "lat":
        sys.setswitchinterval(PACED_SWITCH_S)


def _go(sync: Sync) -> int:
    sync.producer_ready.set()
    sync.go.wait()
    t0 = clock()
    sync.t_start.value = t0
    return t0


def _on_time(t0: int, spec: Spec):
    """0 .. spec.n - 1, each once it is due (``t0`` + j / ``spec.rate`` s, busy-waited): the
    paced producers' schedule. The generator's resume comes before the send stamps its
    ``clock()``, so it is not part of the measured latency."""
    rate = spec.rate
    for j in range(spec.n):
        target = t0 + (j * 1_000_000_000) // rate
        while clock() < target:
            pass
        yield j


def _ready(spec: Spec, sync: Sync) -> tuple[np.ndarray | None, int]:
    """A consumer's start: its latency array (None for throughput), the records to expect
    (warm-up and measured), then the signal that it is ready."""
    lat = _lat(spec)
    sync.consumer_ready.set()
    return lat, spec.warm + spec.n


# ============================================================================ AEGIS ring


def aegis_setup(path: str, capacity: int) -> dict[str, Any]:
    Ring.create(path, capacity).close()
    return {"path": path}


def aegis_producer(res: dict, spec: Spec, sync: Sync, variant: str) -> dict:
    paced(spec)
    ring = Ring.attach(res["path"])
    w = ring.writer()
    pub = w.publish
    for i in range(spec.warm):
        pub(i % N_SYM, 1, 0, 0, i, i, 100.0, 1.0, 0.0, 0.0)
    n, base = spec.n, spec.warm
    if variant == "batch":
        recs = empty(spec.batch)
        recs["kind"], recs["price"], recs["qty"] = 1, 100.0, 1.0
        recs["symbol_id"] = np.arange(spec.batch) % N_SYM
        wb = w.write_batch
        _go(sync)
        for _ in range(n // spec.batch):  # throughput only: the driver makes n a multiple
            wb(recs)
    elif variant == "entry":  # the numba entry point RingWriter falls back on without the C publisher
        words = ring.words
        ep = _PUBLISH
        t0 = _go(sync)
        if spec.mode == "tput":
            for i in range(base, base + n):
                ep(words, i % N_SYM, 1, 0, i, i, i, 100.0, 1.0, 0.0, 0.0)
        else:
            for i in _on_time(t0, spec):
                ep(words, i % N_SYM, 1, 0, clock(), i, i, 100.0, 1.0, 0.0, 0.0)
    elif variant == "staged":  # proposed: struct-pack into a staging block, commit in batches
        words = ring.words
        stage = empty(STAGE)
        sbuf, swords = stage.view(np.uint8), stage.view(np.int64)
        pk = REC.pack_into
        ring_write_batch(words, swords, 0)
        _go(sync)
        k = 0
        for i in range(base, base + n):
            pk(sbuf, k << 6, 0, i, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0)
            k += 1
            if k == STAGE:
                ring_write_batch(words, swords, k)
                k = 0
        if k:
            ring_write_batch(words, swords, k)
    elif variant == "njit":  # the kernel called from compiled code: the ring without Python
        words = ring.words
        njit_publish_loop(words, base, 0)  # compile before the clock starts
        _go(sync)
        njit_publish_loop(words, base, n)
    else:
        t0 = _go(sync)
        if spec.mode == "tput":
            for i in range(base, base + n):
                pub(i % N_SYM, 1, 0, i, i, i, 100.0, 1.0, 0.0, 0.0)
        else:
            for i in _on_time(t0, spec):
                pub(i % N_SYM, 1, 0, clock(), i, i, 100.0, 1.0, 0.0, 0.0)
    sync.t_prod_end.value = clock()
    ring.close()
    return {}


def _njit_publish_loop_impl(words, base, n):
    for i in range(base, base + n):
        ring_publish(words, i % 300, 1, 0, i, i, i, 100.0, 1.0, 0.0, 0.0)
    return n


try:
    from numba import njit

    njit_publish_loop = njit(cache=False, nogil=True)(_njit_publish_loop_impl)
except ImportError:  # pragma: no cover - numba is a dependency
    njit_publish_loop = _njit_publish_loop_impl


def aegis_consumer(res: dict, spec: Spec, sync: Sync, variant: str = "") -> dict:
    ring = Ring.attach(res["path"])
    rd = ring.reader()
    out = empty(READ_BATCH)
    rv = out["recv_ns"]
    read = rd.read_batch
    read(out)  # warm: load the kernel before the clock matters
    got = lost = 0
    lat, total = _ready(spec, sync)
    idle_since = 0
    while got + lost < total:
        k = read(out)
        if k:
            if lat is not None:
                np.subtract(clock(), rv[:k], out=lat[got:got + k])
            got += k
            idle_since = 0
        else:
            now = clock()
            if not idle_since:
                idle_since = now
                lost = rd.lost
            elif now - idle_since > IDLE_TIMEOUT_S * 1e9:
                break
    t_end = clock()
    lost = rd.lost
    ring.close()
    return _result(spec, got, lost, t_end, lat)


# ============================================================================ naive ring
# The ring a user would write in an afternoon: struct.pack_into a slot, bump a cursor,
# busy-poll the cursor. No overrun detection (a lapped reader silently reads overwritten
# slots) and no torn-read check; it relies on x86 store order for the cursor.
NAIVE_HEADER = 64  # bytes before slot 0; the cursor is the first 8

def naive_setup(path: str, capacity: int) -> dict[str, Any]:
    size = NAIVE_HEADER + capacity * 64
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return {"path": path, "capacity": capacity}


def _naive_map(res: dict) -> mmap.mmap:
    fd = os.open(res["path"], os.O_RDWR)
    try:
        return mmap.mmap(fd, NAIVE_HEADER + res["capacity"] * 64,
                         flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
    finally:
        os.close(fd)


def naive_producer(res: dict, spec: Spec, sync: Sync, variant: str = "") -> dict:
    paced(spec)
    mm = _naive_map(res)
    mask = res["capacity"] - 1
    pk = REC.pack_into
    cur = STAMP.pack_into
    for i in range(spec.warm):
        pk(mm, NAIVE_HEADER + ((i & mask) << 6), 0, 0, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0)
        cur(mm, 0, i + 1)
    base, n = spec.warm, spec.n
    t0 = _go(sync)
    if spec.mode == "tput":
        for i in range(base, base + n):
            pk(mm, NAIVE_HEADER + ((i & mask) << 6), 0, i, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0)
            cur(mm, 0, i + 1)
    else:
        for j in _on_time(t0, spec):
            i = base + j
            pk(mm, NAIVE_HEADER + ((i & mask) << 6), 0, clock(), i, i, 100.0, 1.0, 0.0, 0.0,
               i % N_SYM, 1, 0)
            cur(mm, 0, i + 1)
    sync.t_prod_end.value = clock()
    mm.close()
    return {}


def naive_consumer(res: dict, spec: Spec, sync: Sync, variant: str = "") -> dict:
    mm = _naive_map(res)
    mask = res["capacity"] - 1
    unpack = REC.unpack_from
    cursor = STAMP.unpack_from
    r = 0
    lat, total = _ready(spec, sync)
    idle_since = 0
    while r < total:
        c = cursor(mm, 0)[0]
        if c == r:
            now = clock()
            if not idle_since:
                idle_since = now
            elif now - idle_since > IDLE_TIMEOUT_S * 1e9:
                break
            continue
        idle_since = 0
        if lat is None:
            while r < c:
                unpack(mm, NAIVE_HEADER + ((r & mask) << 6))
                r += 1
        else:
            now = clock()
            while r < c:
                rec = unpack(mm, NAIVE_HEADER + ((r & mask) << 6))
                lat[r] = now - rec[1]
                r += 1
    t_end = clock()
    mm.close()
    return _result(spec, r, 0, t_end, lat)


# ============================================================================ multiprocessing.Queue


def mpq_producer(res: dict, spec: Spec, sync: Sync, variant: str = "") -> dict:
    paced(spec)
    q = res["q"]
    put = q.put
    pack = REC.pack
    for i in range(spec.warm):
        put(pack(0, 0, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0))
    base, n = spec.warm, spec.n
    t0 = _go(sync)
    if spec.mode == "tput":
        for i in range(base, base + n):
            put(pack(0, i, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0))
    else:
        for j in _on_time(t0, spec):
            i = base + j
            put(pack(0, clock(), i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0))
    sync.t_prod_end.value = clock()
    q.close()
    q.join_thread()  # the feeder thread has handed every record to the pipe
    return {}


def mpq_consumer(res: dict, spec: Spec, sync: Sync, variant: str = "") -> dict:
    # plain get(): with a timeout every get() adds a poll() syscall and halves the rate;
    # if the producer dies, the parent's trial timeout ends this process
    q = res["q"]
    get = q.get
    stamp = STAMP.unpack_from
    got = 0
    lat, total = _ready(spec, sync)
    if lat is None:
        while got < total:
            get()
            got += 1
    else:
        while got < total:
            b = get()
            lat[got] = clock() - stamp(b, 8)[0]
            got += 1
    return _result(spec, got, 0, clock(), lat)


# ============================================================================ faster-fifo


def ffq_producer(res: dict, spec: Spec, sync: Sync, variant: str = "") -> dict:
    paced(spec)
    q = res["q"]
    put, put_many = q.put, q.put_many
    pack = REC.pack
    for i in range(spec.warm):
        put(pack(0, 0, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0), True, IDLE_TIMEOUT_S)
    base, n, b = spec.warm, spec.n, spec.batch
    t0 = _go(sync)
    if variant == "batch":
        for j in range(0, n, b):
            put_many([pack(0, 0, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0)
                      for i in range(base + j, base + j + b)], True, IDLE_TIMEOUT_S)
    elif spec.mode == "tput":
        for i in range(base, base + n):
            put(pack(0, i, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0), True, IDLE_TIMEOUT_S)
    else:
        for j in _on_time(t0, spec):
            i = base + j
            put(pack(0, clock(), i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0), True, IDLE_TIMEOUT_S)
    sync.t_prod_end.value = clock()
    return {}


def ffq_consumer(res: dict, spec: Spec, sync: Sync, variant: str = "") -> dict:
    q = res["q"]
    get_many = q.get_many
    stamp = STAMP.unpack_from
    got = 0
    lat, total = _ready(spec, sync)
    try:
        while got < total:
            msgs = get_many(True, IDLE_TIMEOUT_S, READ_BATCH)
            if lat is not None:
                now = clock()
                for b in msgs:
                    lat[got] = now - stamp(b, 8)[0]
                    got += 1
            else:
                got += len(msgs)
    except queue.Empty:
        pass
    return _result(spec, got, 0, clock(), lat)


# ============================================================================ ZeroMQ PUSH/PULL (ipc)


def zmq_producer(res: dict, spec: Spec, sync: Sync, variant: str = "") -> dict:
    paced(spec)
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, int(IDLE_TIMEOUT_S * 1000))
    s.connect(res["endpoint"])
    send = s.send
    pack, pk = REC.pack, REC.pack_into
    try:
        for i in range(spec.warm):
            send(pack(0, 0, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0))
        base, n, b = spec.warm, spec.n, spec.batch
        t0 = _go(sync)
        if variant == "batch":
            buf = bytearray(64 * b)
            for j in range(0, n, b):
                if spec.mode == "lat":  # the batch leaves when its last tick is due
                    last = t0 + ((j + b - 1) * 1_000_000_000) // spec.rate
                    while clock() < last:
                        pass
                for k in range(b):
                    i = base + j + k
                    due = i if spec.mode == "tput" else t0 + ((j + k) * 1_000_000_000) // spec.rate
                    pk(buf, k << 6, 0, due, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0)
                send(bytes(buf))
        elif spec.mode == "tput":
            for i in range(base, base + n):
                send(pack(0, i, i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0))
        else:
            for j in _on_time(t0, spec):
                i = base + j
                send(pack(0, clock(), i, i, 100.0, 1.0, 0.0, 0.0, i % N_SYM, 1, 0))
        sync.t_prod_end.value = clock()
    finally:
        s.close()
        ctx.term()
    return {}


def zmq_consumer(res: dict, spec: Spec, sync: Sync, variant: str = "") -> dict:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, int(IDLE_TIMEOUT_S * 1000))
    s.bind(res["endpoint"])
    recv = s.recv
    stamp = STAMP.unpack_from
    got = 0
    lat, total = _ready(spec, sync)
    try:
        while got < spec.warm:  # warm-up records come one per message
            recv()
            got += 1
        if variant == "batch":
            while got < total:
                m = recv()
                k = len(m) >> 6
                if lat is not None:
                    np.subtract(clock(), np.frombuffer(m, TICK_DTYPE)["recv_ns"], out=lat[got:got + k])
                got += k
        elif lat is None:
            while got < total:
                recv()
                got += 1
        else:
            while got < total:
                m = recv()
                lat[got] = clock() - stamp(m, 8)[0]
                got += 1
    except zmq.Again:
        pass
    finally:
        t_end = clock()
        s.close()
        ctx.term()
    return _result(spec, got, 0, t_end, lat)


def ipc_endpoint(directory: str) -> str:
    return f"ipc://{directory}/bench-push.ipc"


def sleep_s(s: float) -> None:
    time.sleep(s)
