"""Latency histogram: bucket precision, percentiles vs numpy, clamping, merge, JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common import histogram as hg
from common.errors import DecodeError
from common.histogram import LatencyHistogram

QS = (0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)


def filled(values) -> LatencyHistogram:
    h = LatencyHistogram()
    h.record_many(np.asarray(values, np.int64))
    return h


class TestBuckets:
    def test_buckets_tile_the_range_without_gaps_or_overlaps(self):
        """Bucket i+1 starts where bucket i ends, from 0 up past HIGHEST_NS."""
        end = 0
        for i in range(hg.N_BUCKETS):
            lo, width = hg.bucket_bounds(i)
            assert lo == end
            end = lo + width
        assert end > hg.HIGHEST_NS

    def test_every_bucket_is_at_most_1_percent_of_its_lower_bound_wide(self):
        """Relative bucket width <= 1/128 beyond the exact range: the 1 % precision bound."""
        for i in range(1, hg.N_BUCKETS):
            lo, width = hg.bucket_bounds(i)
            assert width == 1 or width / lo <= 1 / 128

    def test_values_below_256_ns_are_exact(self):
        """Small values have one bucket each, so their percentiles are exact."""
        h = filled([3, 3, 7, 255])
        assert [h.percentile(q) for q in (25, 50, 75, 99)] == [3.0, 3.0, 7.0, 255.0]


class TestPercentiles:
    @pytest.mark.parametrize("dist", ["lognormal", "uniform", "bimodal"])
    def test_percentiles_are_within_1_percent_of_numpy(self, dist):
        """On 200k random latencies every percentile is within 1 % of numpy's."""
        rng = np.random.default_rng(42)
        n = 200_000
        if dist == "lognormal":
            v = rng.lognormal(np.log(50_000), 1.5, n)
        elif dist == "uniform":
            v = rng.uniform(1_000, 10_000_000, n)
        else:
            v = np.concatenate([rng.normal(20_000, 2_000, n // 2),
                                rng.normal(3_000_000, 100_000, n // 2)])
        v = np.maximum(v, 1).astype(np.int64)
        h = filled(v)
        assert h.count == n
        for q in QS:
            exact = np.percentile(v, q, method="inverted_cdf")  # nearest rank, as we define it
            assert abs(h.percentile(q) - exact) <= 0.01 * exact, q
            # numpy's default interpolates between neighbours: it agrees with nearest rank only
            # where samples are dense (not in far tails, nor in the gap between two modes)
            if q <= 99 and dist != "bimodal":
                interp = np.percentile(v, q)
                assert abs(h.percentile(q) - interp) <= 0.01 * interp, q

    def test_min_max_mean_are_exact(self):
        """min, max and mean come from exact side counters, not from buckets."""
        v = [1_234_567, 89, 5_000_001, 42_424]
        h = filled(v)
        assert (h.min, h.max, h.mean) == (89, 5_000_001, sum(v) / 4)
        assert (h.percentile(0), h.percentile(100)) == (89.0, 5_000_001.0)

    def test_empty_histogram_reads_as_zero(self):
        """No samples: zero everywhere, never NaN (the stats file must stay valid JSON)."""
        h = LatencyHistogram()
        assert (h.count, h.min, h.max, h.mean, h.percentile(50)) == (0, 0, 0, 0.0, 0.0)

    def test_percentile_outside_0_100_is_refused(self):
        """q is a percentage; 101 or NaN is a caller bug."""
        with pytest.raises(ValueError):
            LatencyHistogram().percentile(101)
        with pytest.raises(ValueError):
            LatencyHistogram().percentile(float("nan"))


class TestClamping:
    def test_negative_values_are_clamped_to_zero_and_counted(self):
        """Clock skew gives negative latencies: recorded as 0, counted as negative."""
        h = LatencyHistogram()
        h.record(-5)
        h.record_many(np.array([-1, 10], np.int64))
        assert (h.count, h.negative, h.min, h.percentile(50)) == (3, 2, 0, 0.0)

    def test_values_above_100_s_saturate_and_are_counted(self):
        """A 1000 s 'latency' is an outage: clamped to HIGHEST_NS, counted as saturated."""
        h = filled([10, 1_000 * 10**9])
        assert (h.saturated, h.max, h.percentile(100)) == (1, hg.HIGHEST_NS, float(hg.HIGHEST_NS))

    def test_record_many_reads_only_the_first_n_values(self):
        """A preallocated buffer is recorded up to n, the stale tail is ignored."""
        h = LatencyHistogram()
        h.record_many(np.array([5, 6, 7, 999_999], np.int64), 3)
        assert (h.count, h.max) == (3, 7)

    def test_kernel_records_into_a_bare_array(self):
        """The njit kernel works on the counts array alone (for other numba kernels)."""
        counts = hg.new_counts()
        hg.record_many(counts, np.array([100, 200], np.int64), 2)
        assert LatencyHistogram(counts).count == 2


class TestMergeAndShip:
    def test_merge_equals_recording_everything_into_one(self):
        """Merging two incarnations gives the histogram of all their samples; inputs unchanged."""
        rng = np.random.default_rng(1)
        a_vals = rng.integers(-10, 10**9, 5_000)
        b_vals = rng.integers(0, 10**6, 3_000)
        a, b = filled(a_vals), filled(b_vals)
        a_before = a.counts.copy()
        m = a.merge(b)
        assert np.array_equal(m.counts, filled(np.concatenate([a_vals, b_vals])).counts)
        assert np.array_equal(a.counts, a_before) and b.count == 3_000

    def test_merge_with_empty_keeps_min_and_max(self):
        """An empty histogram is the identity of merge."""
        a = filled([7, 70_000])
        assert np.array_equal(a.merge(LatencyHistogram()).counts, a.counts)
        assert np.array_equal(LatencyHistogram().merge(a).counts, a.counts)

    def test_json_round_trip_is_exact_and_compact(self):
        """to_dict lists only non-zero buckets and from_dict restores the same array."""
        h = filled([1, 1, 300, 300, 5_000_000, -4])
        d = json.loads(json.dumps(h.to_dict()))
        assert len(d["buckets"]) == 4  # 0 (the clamped negative), 1, 300, 5 ms
        assert np.array_equal(LatencyHistogram.from_dict(d).counts, h.counts)
        e = LatencyHistogram().to_dict()
        assert np.array_equal(LatencyHistogram.from_dict(e).counts, LatencyHistogram().counts)
        # without the JSON trip too: plain Python ints (from_dict refuses numpy scalars)
        direct = h.to_dict()["buckets"]
        assert direct == d["buckets"] and all(type(x) is int for pair in direct for x in pair)
        assert np.array_equal(LatencyHistogram.from_dict(h.to_dict()).counts, h.counts)

    @pytest.mark.parametrize(
        "patch",
        [{"sub_bucket_bits": 6}, {"v": 99}, {"buckets": [[hg.N_BUCKETS, 1]]},
         {"buckets": [[3, -1]]}, {"buckets": [["3", 1]]}, {"count": 7}, {"buckets": 5}],
        ids=["other_precision", "other_version", "bucket_out_of_range", "negative_count",
             "string_index", "count_mismatch", "buckets_not_a_list"],
    )
    def test_inconsistent_dict_is_a_decode_error(self, patch):
        """A stats file from another build or a corrupted one raises DecodeError, never loads."""
        d = filled([3, 400]).to_dict()
        d.update(patch)
        with pytest.raises(DecodeError):
            LatencyHistogram.from_dict(d)

    def test_missing_field_is_a_decode_error(self):
        """A truncated dict is reported as DecodeError, not KeyError."""
        d = filled([3]).to_dict()
        del d["sum"]
        with pytest.raises(DecodeError):
            LatencyHistogram.from_dict(d)


class TestCountLe:
    def test_count_le_is_cumulative_and_exact_on_exact_buckets(self):
        """Small values have exact buckets, so count_le is exact there and monotone above."""
        from common.histogram import LatencyHistogram

        h = LatencyHistogram()
        for v in (1, 5, 5, 100, 10_000, 2_000_000):
            h.record(v)
        assert [h.count_le(b) for b in (0, 1, 5, 99, 100)] == [0, 1, 3, 3, 4]
        assert h.count_le(10**11) == 6
        assert h.count_le(-1) == 0


def test_count_le_many_equals_count_le_bound_by_bound():
    """One cumulative sum gives what one ``count_le`` per bound gives (negative bounds: 0)."""
    import numpy as np

    from common.histogram import LatencyHistogram

    h = LatencyHistogram()
    h.record_many(np.array([5, 900, 12_000, 250_000, 3_000_000, 10**12], np.int64))
    bounds = [-1, 0, 10_000, 25_000, 1_000_000, 5_000_000, 10**13]
    assert h.count_le_many(bounds) == [h.count_le(b) for b in bounds] == [0, 0, 2, 3, 4, 5, 6]
