"""Properties of the ring under arbitrary interleavings of writes, reads and restarts (Hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from common.records import empty
from common.ring import Ring


def payload(seqs: np.ndarray) -> np.ndarray:
    """Records whose fields are all derived from the sequence number."""
    recs = empty(len(seqs))
    recs["recv_ns"] = seqs * 3
    recs["event_ms"] = seqs + 1_700_000_000_000
    recs["id"] = seqs
    recs["price"] = seqs * 0.5
    recs["qty"] = (seqs * 2654435761 % 65521) * 0.001
    recs["aux"] = seqs * -0.25
    recs["aux_qty"] = (seqs % 1000) * 0.5
    recs["symbol_id"] = seqs % 65535
    recs["kind"] = seqs % 4 + 1
    recs["flags"] = seqs % 251
    return recs


def expected(stamps: np.ndarray) -> np.ndarray:
    want = payload(stamps - 1)
    want["stamp"] = stamps
    return want


def ops_for(capacity_log2: int):
    cap = 1 << capacity_log2
    return st.lists(st.one_of(
        st.tuples(st.just("write_batch"), st.integers(0, 3 * cap)),
        st.tuples(st.just("publish"), st.integers(1, cap)),
        st.tuples(st.just("read"), st.integers(1, 2 * cap)),
        st.tuples(st.just("restart_reader"), st.sampled_from(["saved", "latest"])),
        st.tuples(st.just("restart_writer"), st.none()),
    ), max_size=60)


scenario = st.integers(3, 6).flatmap(lambda k: st.tuples(st.just(1 << k), ops_for(k)))


class Harness:
    """A writer and a reader on one small ring; restarts re-attach like a new process would."""

    def __init__(self, path: str, capacity: int) -> None:
        self.path = path
        self.rings = [Ring.create(path, capacity)]
        self.writer = self.rings[0].writer()
        self.reader = self.rings[0].reader()
        self.written = 0
        self.delivered: list[np.ndarray] = []

    def attach(self) -> Ring:
        self.rings.append(Ring.attach(self.path))
        return self.rings[-1]

    def apply(self, op: str, arg) -> None:
        if op == "write_batch":
            assert self.writer.write_batch(payload(np.arange(self.written, self.written + arg))) == arg
            self.written += arg
        elif op == "publish":
            for s in range(self.written, self.written + arg):
                r = payload(np.array([s]))[0]
                seq = self.writer.publish(r["symbol_id"], r["kind"], r["flags"], r["recv_ns"], r["event_ms"],
                                          r["id"], r["price"], r["qty"], r["aux"], r["aux_qty"])
                assert seq == s
            self.written += arg
        elif op == "read":
            self.read(arg)
        elif op == "restart_reader":
            self.reader = self.attach().reader(arg)
        else:
            self.writer = self.attach().writer()

    def read(self, batch: int) -> int:
        """One read_batch; a reader at most one ring behind must lose nothing."""
        behind = self.reader.lag()
        lost_before = self.reader.lost
        out = empty(batch)
        n = self.reader.read_batch(out)
        self.delivered.append(out[:n].copy())
        if behind <= self.rings[0].capacity:
            assert self.reader.lost == lost_before
            assert n == min(batch, behind)
        return n

    def close(self) -> None:
        for r in self.rings:
            r.close()


@settings(max_examples=300, deadline=None)
@given(scenario)
def test_any_interleaving_delivers_exact_records_and_accounts_every_sequence(case):
    """delivered + lost == written, sequences strictly increase, payloads are byte-exact."""
    capacity, ops = case
    with tempfile.TemporaryDirectory(prefix="ag-ring-") as d:
        h = Harness(str(Path(d) / "p.ring"), capacity)
        try:
            for op, arg in ops:
                h.apply(op, arg)
            while h.read(capacity):
                pass
            got = np.concatenate(h.delivered)
            stamps = got["stamp"]
            assert len(got) + h.reader.lost == h.written
            assert np.all(np.diff(stamps) > 0)
            assert got.tobytes() == expected(stamps).tobytes()
            c = h.rings[0].counters()
            assert (c["written"], c["read"], c["lag"]) == (h.written, len(got), 0)
        finally:
            h.close()
