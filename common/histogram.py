"""Latency histogram: HDR-style log-linear buckets over int64 nanoseconds, one int64 array.

Bucketing (as in HdrHistogram): values below ``2 ** (SUB_BUCKET_BITS + 1)`` ns get one bucket
each (exact); above, every power of two ``[2**e, 2**(e+1))`` is cut into ``2**SUB_BUCKET_BITS``
equal buckets. A bucket is therefore at most ``1 / 2**SUB_BUCKET_BITS`` (0.78 %) of its lower
bound wide, and reporting its midpoint puts every percentile within 0.39 % of a recorded
value (the stated bound is 1 %). Range 0 .. ``HIGHEST_NS`` (100 s); larger values are
clamped to it and counted as saturated, negative ones (clock skew between hosts) are
recorded as 0 and counted as negative.

Everything lives in one preallocated int64 array (``N_BUCKETS`` bucket counts, then the
``META_*`` slots: count, negative, saturated, min, max, sum), so a histogram is trivially
shared, copied, merged and filled from numba with no allocation: ``record_many(counts,
values, n)``. ``LatencyHistogram`` wraps the array with the readers (percentile, mean, ...),
``merge`` and a compact JSON form (only the non-zero buckets) for stats files, so the
supervisor can merge the incarnations of a restarted process.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from numba import njit

from common.errors import DecodeError

SUB_BUCKET_BITS = 7  # 128 sub-buckets per power of two: <= 0.78 % wide, <= 0.39 % error
HIGHEST_NS = 100_000_000_000  # 100 s: anything slower is an outage, not a latency
_EXACT_LIMIT = 1 << (SUB_BUCKET_BITS + 1)  # below this every ns value has its own bucket
FORMAT_VERSION = 1


@njit(cache=True, nogil=True, inline="always")
def _index(v):
    """Bucket of a value in [0, HIGHEST_NS]."""
    shift = 0
    x = v >> (SUB_BUCKET_BITS + 1)
    while x:
        x >>= 1
        shift += 1
    return (shift << SUB_BUCKET_BITS) + (v >> shift)


N_BUCKETS = int(_index(HIGHEST_NS)) + 1
META_COUNT = N_BUCKETS  # values recorded (including the negative and saturated ones)
META_NEGATIVE = N_BUCKETS + 1  # values < 0, recorded as 0
META_SATURATED = N_BUCKETS + 2  # values > HIGHEST_NS, recorded as HIGHEST_NS
META_MIN = N_BUCKETS + 3  # smallest recorded (clamped) value; INT64_MAX while empty
META_MAX = N_BUCKETS + 4  # largest recorded (clamped) value; -1 while empty
META_SUM = N_BUCKETS + 5  # sum of clamped values (overflows after ~292 years of latency)
ARRAY_LEN = N_BUCKETS + 6
_EMPTY_MIN = np.iinfo(np.int64).max


def new_counts() -> np.ndarray:
    """A fresh, empty histogram array."""
    counts = np.zeros(ARRAY_LEN, np.int64)
    counts[META_MIN] = _EMPTY_MIN
    counts[META_MAX] = -1
    return counts


def bucket_bounds(idx: int) -> tuple[int, int]:
    """Lowest value and width (ns) of bucket ``idx``."""
    if idx < _EXACT_LIMIT:
        return idx, 1
    shift = (idx >> SUB_BUCKET_BITS) - 1
    return (idx - (shift << SUB_BUCKET_BITS)) << shift, 1 << shift


@njit(cache=True, nogil=True)
def _record_one(counts, v):
    if v < 0:
        counts[META_NEGATIVE] += 1
        v = 0
    elif v > HIGHEST_NS:
        counts[META_SATURATED] += 1
        v = HIGHEST_NS
    counts[_index(v)] += 1
    counts[META_COUNT] += 1
    counts[META_SUM] += v
    if v < counts[META_MIN]:
        counts[META_MIN] = v
    if v > counts[META_MAX]:
        counts[META_MAX] = v


@njit(cache=True, nogil=True)
def record_many(counts, values, n):
    """Record ``values[:n]`` (int64 ns) into a histogram array; no allocation."""
    for i in range(n):
        _record_one(counts, np.int64(values[i]))


@njit(cache=True, nogil=True)
def record_value(counts, v):
    """Record one value (ns) into a histogram array (for njit callers)."""
    _record_one(counts, np.int64(v))


@njit(cache=True, nogil=True)
def merge_into(dst, src):
    """Add histogram array ``src`` into ``dst`` (counts summed, min/max combined)."""
    for i in range(N_BUCKETS):
        dst[i] += src[i]
    for i in (META_COUNT, META_NEGATIVE, META_SATURATED, META_SUM):
        dst[i] += src[i]
    if src[META_MIN] < dst[META_MIN]:
        dst[META_MIN] = src[META_MIN]
    if src[META_MAX] > dst[META_MAX]:
        dst[META_MAX] = src[META_MAX]


class LatencyHistogram:
    """A latency histogram over one ``counts`` array (see the module docstring)."""

    __slots__ = ("counts",)

    def __init__(self, counts: np.ndarray | None = None) -> None:
        if counts is None:
            counts = new_counts()
        elif counts.shape != (ARRAY_LEN,) or counts.dtype != np.int64:
            raise ValueError(f"counts must be int64[{ARRAY_LEN}]")  # an array of ours: misuse, as numpy's
        self.counts = counts

    # ---------------------------------------------------------------- recording

    def record(self, value_ns: int) -> None:
        """Record one latency in ns."""
        record_value(self.counts, int(value_ns))

    def record_many(self, values: np.ndarray, n: int | None = None) -> None:
        """Record ``values[:n]`` (all of them if ``n`` is None)."""
        record_many(self.counts, values, len(values) if n is None else n)

    def reset(self) -> None:
        """Forget everything (reuses the array)."""
        self.counts[:] = new_counts()

    # ---------------------------------------------------------------- reading

    @property
    def count(self) -> int:
        return int(self.counts[META_COUNT])

    @property
    def negative(self) -> int:
        return int(self.counts[META_NEGATIVE])

    @property
    def saturated(self) -> int:
        return int(self.counts[META_SATURATED])

    @property
    def min(self) -> int:
        """Smallest recorded value (after clamping), 0 when empty."""
        return int(self.counts[META_MIN]) if self.count else 0

    @property
    def max(self) -> int:
        """Largest recorded value (after clamping), 0 when empty."""
        return int(self.counts[META_MAX]) if self.count else 0

    @property
    def total(self) -> int:
        """Sum of recorded values (after clamping), ns."""
        return int(self.counts[META_SUM])

    @property
    def mean(self) -> float:
        """Exact mean of the clamped values, 0.0 when empty."""
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        """Value (ns) at percentile ``q`` in [0, 100], nearest rank; 0.0 when empty.

        Within 0.39 % of the recorded value of that rank; ``q`` 0 and 100 give the exact
        min and max.
        """
        if not 0.0 <= q <= 100.0 or math.isnan(q):
            raise ValueError(f"percentile out of [0, 100]: {q}")  # callers pass constants: misuse
        n = self.count
        if n == 0:
            return 0.0
        if q == 0.0:
            return float(self.min)
        if q == 100.0:
            return float(self.max)
        rank = max(1, math.ceil(q / 100.0 * n))
        idx = int(np.searchsorted(np.cumsum(self.counts[:N_BUCKETS]), rank))
        lo, width = bucket_bounds(idx)
        mid = lo + (width - 1) / 2.0
        return float(min(max(mid, self.min), self.max))

    def count_le(self, bound_ns: int) -> int:
        """How many values were at most ``bound_ns`` (bucket resolution: the bucket holding
        ``bound_ns`` counts as below it, so this over-counts by at most that bucket).
        Used for Prometheus' cumulative ``le`` buckets."""
        if bound_ns < 0:
            return 0
        idx = int(_index(min(int(bound_ns), HIGHEST_NS)))
        return int(self.counts[: idx + 1].sum())

    def count_le_many(self, bounds_ns: Sequence[int]) -> list[int]:
        """``count_le`` for each bound, from one cumulative sum (a heartbeat's Prometheus
        buckets: one pass over the buckets instead of one per bound)."""
        cs = np.cumsum(self.counts[:N_BUCKETS])
        return [int(cs[_index(min(int(b), HIGHEST_NS))]) if b >= 0 else 0 for b in bounds_ns]

    def summary(self) -> dict[str, float]:
        """The usual figures, in microseconds, for logs and dashboards."""
        us = 1e-3
        return {
            "count": self.count,
            "mean_us": self.mean * us,
            "p50_us": self.percentile(50) * us,
            "p90_us": self.percentile(90) * us,
            "p99_us": self.percentile(99) * us,
            "p999_us": self.percentile(99.9) * us,
            "max_us": self.max * us,
        }

    # ---------------------------------------------------------------- combining, shipping

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """A new histogram holding both (neither input changes)."""
        out = LatencyHistogram(self.counts.copy())
        merge_into(out.counts, other.counts)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-ready form: only the non-zero buckets, as ``[index, count]`` pairs."""
        nz = np.flatnonzero(self.counts[:N_BUCKETS])
        # one vectorised step to Python ints (a list comprehension over numpy scalars cost
        # the brain's heartbeat ~1.7 ms a beat with a few thousand buckets filled)
        pairs = np.stack((nz, self.counts[nz]), axis=1).astype(np.int64).tolist()
        return {
            "v": FORMAT_VERSION,
            "sub_bucket_bits": SUB_BUCKET_BITS,
            "highest_ns": HIGHEST_NS,
            "count": self.count,
            "negative": self.negative,
            "saturated": self.saturated,
            "min": self.min,
            "max": self.max,
            "sum": self.total,
            "buckets": pairs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyHistogram:
        """Inverse of ``to_dict``; raises ``DecodeError`` on anything inconsistent."""
        try:
            if (d["v"], d["sub_bucket_bits"], d["highest_ns"]) != (
                FORMAT_VERSION, SUB_BUCKET_BITS, HIGHEST_NS
            ):
                raise DecodeError("histogram layout differs from this build")
            h = cls()
            c = h.counts
            for idx, n in d["buckets"]:
                if type(idx) is not int or type(n) is not int or not 0 <= idx < N_BUCKETS \
                        or n <= 0:
                    raise DecodeError(f"bad histogram bucket {idx!r}: {n!r}")
                c[idx] += n
            count = int(d["count"])
            if count != int(c[:N_BUCKETS].sum()):
                raise DecodeError("histogram count differs from its buckets")
            c[META_COUNT] = count
            c[META_NEGATIVE] = int(d["negative"])
            c[META_SATURATED] = int(d["saturated"])
            c[META_SUM] = int(d["sum"])
            if count:
                c[META_MIN] = int(d["min"])
                c[META_MAX] = int(d["max"])
            return h
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise DecodeError(f"malformed histogram: {e!r}") from e

    def __repr__(self) -> str:
        return (f"LatencyHistogram(count={self.count}, p50={self.percentile(50):.0f}ns, "
                f"p99={self.percentile(99):.0f}ns, max={self.max}ns)")
