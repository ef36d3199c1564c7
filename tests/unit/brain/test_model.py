"""The confidence model: cold prior, learning, hostile inputs, purity and persistence."""

from __future__ import annotations

import math
import struct
import zlib

import msgspec
import numpy as np
import pytest

from common.errors import ConfigError, DecodeError
from services.brain.model import (FEATURES, STATE_VERSION, ModelConfig, ModelInputError,
                                  Prediction, features_from_context, from_bytes, learn,
                                  new_state, predict, to_bytes, vector)

POS = {"swept_recent": 1.0, "session_ny": 1.0, "extension_atr": 1.5}
NEG = {"swept_recent": 0.0, "session_ny": 0.0, "extension_atr": -1.5}
HOSTILE = [
    {name: math.nan for name in FEATURES},
    {name: math.inf for name in FEATURES},
    {name: -math.inf for name in FEATURES},
    {name: 1e308 for name in FEATURES},
    {name: -1e308 for name in FEATURES},
    {"rr": "two", "risk_atr": None},  # not numbers at all: the defaults stand in
    {},
]


def _alternating(n: int, config: ModelConfig | None = None):
    """A state that saw ``n`` outcomes: POS always won 2 R, NEG always lost 1 R."""
    s = new_state(config)
    for i in range(n):
        s = learn(s, POS, 2.0) if i % 2 == 0 else learn(s, NEG, -1.0)
    return s


def _arrays(s):
    return {k: np.array(getattr(s, k)) for k in ("mean", "m2", "w", "cov", "loss")}


class TestColdStart:
    def test_fresh_model_predicts_the_beta_2_2_prior_mean_flagged_cold(self):
        """Before any outcome the confidence is Beta(2, 2)'s mean, 0.5, and cold."""
        assert predict(new_state(), POS) == Prediction(0.5, True, 0)

    def test_cold_prediction_is_the_running_base_rate_under_the_prior(self):
        """Three wins and a loss give (3 + 2) / (4 + 4) = 0.625, cold, for any features."""
        s = new_state()
        for r in (2.0, 2.0, -1.0, 0.5):
            s = learn(s, NEG, r)
        assert predict(s, POS) == Prediction(0.625, True, 4)
        assert predict(s, NEG) == Prediction(0.625, True, 4)

    def test_model_turns_warm_at_exactly_min_outcomes(self):
        """With min_outcomes=30 the 29th outcome still leaves it cold and the 30th makes it warm."""
        assert predict(_alternating(29), POS).cold is True
        warm = predict(_alternating(30), POS)
        assert (warm.cold, warm.n_seen) == (False, 30)

    def test_scratch_trade_counts_as_a_loss(self):
        """A scratch trade (R = 0) is not a win: the base rate after it is 2 / 5 = 0.4."""
        assert predict(learn(new_state(), POS, 0.0), POS).confidence == 0.4


class TestLearning:
    def test_learns_a_separable_rule(self):
        """After 60 alternating outcomes the winner scores above 0.9, the loser below 0.1."""
        s = _alternating(60)
        assert predict(s, POS).confidence > 0.9
        assert predict(s, NEG).confidence < 0.1

    def test_separable_rule_moves_the_mixture_to_the_loosest_logistic_model(self):
        """With a perfectly informative feature the evidence favours the weakest prior (> 0.99)."""
        assert _alternating(60).mixture["logistic(prior_var=1)"] > 0.99

    def test_r_weighted_update_moves_the_weights_more_for_a_bigger_outcome(self):
        """With r_weighted, a 3 R win moves the weights further than a 1 R win does."""
        s = _alternating(10, ModelConfig(r_weighted=True))
        small, big = learn(s, POS, 1.0), learn(s, POS, 3.0)
        assert np.linalg.norm(big.w - s.w) > np.linalg.norm(small.w - s.w)

    def test_unweighted_update_ignores_the_size_of_the_outcome(self):
        """Without r_weighted, a 1 R and a 3 R win give the identical state."""
        s = _alternating(10)
        assert np.array_equal(learn(s, POS, 1.0).w, learn(s, POS, 3.0).w)


class TestHostileInputs:
    @pytest.mark.parametrize("features", HOSTILE)
    def test_confidence_stays_finite_and_in_unit_interval(self, features):
        """NaN, infinite, huge, non-numeric or missing features never give NaN or leave [0, 1]."""
        s = _alternating(40, ModelConfig(min_outcomes=0))
        for _ in range(3):
            p = predict(s, features).confidence
            assert math.isfinite(p) and 0.0 <= p <= 1.0
            s = learn(s, features, 2.0)
            assert all(np.isfinite(a).all() for a in _arrays(s).values())

    def test_learning_only_from_hostile_features_keeps_the_state_finite(self):
        """A model fed nothing but hostile rows from the start stays finite and in range."""
        s = new_state(ModelConfig(min_outcomes=0))
        for i, f in enumerate(HOSTILE * 5):
            s = learn(s, f, 2.0 if i % 3 else -1.0)
            p = predict(s, f).confidence
            assert math.isfinite(p) and 0.0 <= p <= 1.0
        assert all(np.isfinite(a).all() for a in _arrays(s).values())

    def test_vector_replaces_nan_by_default_and_clips_infinities(self):
        """NaN -> the feature's default, +inf -> its upper bound, -inf -> its lower bound."""
        x = vector({"rr": math.nan, "risk_atr": math.inf, "vol_regime": -math.inf,
                    "extension_atr": 1e308})
        k = {n: i for i, n in enumerate(FEATURES)}
        assert (x[k["rr"]], x[k["risk_atr"]], x[k["vol_regime"]], x[k["extension_atr"]]) \
            == (2.0, 20.0, -3.0, 10.0)

    def test_vector_clips_as_numpy_does_signed_zeros_included(self):
        """The clip is ``np.clip``'s to the bit: -0.0 at a 0.0 lower bound becomes 0.0,
        -0.0 inside a range stays -0.0, a value on a bound is that bound."""
        f = {"choch": -0.0, "extension_atr": -0.0, "rr": 10.0, "vol_regime": -3.0,
             "trend_agree": 0.25}
        want = np.clip(np.array([f.get(n, 0.0) for n in FEATURES]),
                       [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -3.0, 0.0, -10.0],
                       [1.0, 1.0, 10.0, 10.0, 1.0, 1.0, 1.0, 1.0, 10.0, 20.0, 3.0, 6.0, 10.0])
        got = vector({**{n: 0.0 for n in FEATURES}, **f})
        assert got.tobytes() == want.tobytes()
        assert [math.copysign(1.0, v) for v in got[[1, 12]]] == [1.0, -1.0]

    def test_predict_is_the_same_for_a_state_seen_before_or_after_another(self):
        """predict keeps what it derives from the last state it saw: predicting with one
        state, then another, then the first again gives each state's own answers."""
        a, b = _alternating(35), _alternating(36)
        first = [predict(a, POS), predict(b, POS), predict(a, NEG)]
        again = [predict(a, NEG), predict(b, POS), predict(a, POS)]
        assert (first[0], first[1], first[2]) == (again[2], again[1], again[0])
        assert first[0] != first[1]

    def test_unknown_feature_name_is_rejected(self):
        """A misspelt feature raises ModelInputError instead of being silently ignored."""
        with pytest.raises(ModelInputError):
            predict(new_state(), {"swept_recnt": 1.0})

    @pytest.mark.parametrize("r", [math.nan, math.inf, -math.inf, "1R", None])
    def test_non_finite_outcome_is_rejected(self, r):
        """learn refuses an outcome that is not a finite number."""
        with pytest.raises(ModelInputError):
            learn(new_state(), POS, r)


class TestFeaturesFromContext:
    def test_long_setup_in_atr_units(self):
        """A long with risk 1, target 2 R, ATR 0.5: every feature as computed by hand."""
        f = features_from_context(direction=1, entry=100.0, stop=99.0, target=102.0, atr=0.5,
                                  atr_slow=0.25, htf_direction=-1, is_choch=True,
                                  break_level=99.5, break_age_bars=3,
                                  ob_distance=None, fvg_distance=0.25, swept_bars_ago=20,
                                  in_london=True)
        assert f == {"trend_agree": -1.0, "choch": 1.0, "ob_dist_atr": 10.0,
                     "fvg_dist_atr": 0.5, "swept_recent": 1.0, "session_asia": 0.0,
                     "session_london": 1.0, "session_ny": 0.0, "rr": 2.0, "risk_atr": 2.0,
                     "vol_regime": math.log(2.0), "break_age_log": math.log(4.0),
                     "extension_atr": 1.0}

    def test_short_setup_signs_follow_the_direction(self):
        """For a short, agreement and extension point down; a 21-bar-old sweep is not recent."""
        f = features_from_context(direction=-1, entry=100.0, stop=101.0, target=98.0, atr=1.0,
                                  atr_slow=1.0, htf_direction=-1, break_level=101.0,
                                  swept_bars_ago=21)
        assert (f["trend_agree"], f["extension_atr"], f["swept_recent"], f["vol_regime"]) \
            == (1.0, 1.0, 0.0, 0.0)

    def test_non_finite_and_degenerate_inputs_become_defaults_or_bounds(self):
        """NaN prices, a zero ATR and NaN levels give defaults; an infinite age gives its bound."""
        f = features_from_context(direction=1, entry=math.nan, stop=math.inf, target=math.nan,
                                  atr=0.0, atr_slow=math.nan, htf_direction=math.nan,
                                  break_level=math.nan, break_age_bars=math.inf,
                                  ob_distance=math.nan, fvg_distance=-5.0,
                                  swept_bars_ago=math.nan)
        assert f == {"trend_agree": 0.0, "choch": 0.0, "ob_dist_atr": 10.0, "fvg_dist_atr": 10.0,
                     "swept_recent": 0.0, "session_asia": 0.0, "session_london": 0.0,
                     "session_ny": 0.0, "rr": 2.0, "risk_atr": 1.0, "vol_regime": 0.0,
                     "break_age_log": 6.0, "extension_atr": 0.0}


class TestPurity:
    def test_learn_leaves_the_input_state_unchanged(self):
        """learn returns a new state; every array and count of the old one is as before."""
        s = _alternating(35)
        before = _arrays(s)
        n, wins = s.n_seen, s.wins
        s2 = learn(s, POS, 2.0)
        assert (s.n_seen, s.wins) == (n, wins)
        assert all(np.array_equal(before[k], v) for k, v in _arrays(s).items())
        assert s2.n_seen == n + 1

    def test_state_arrays_are_read_only(self):
        """Writing into a state's weights raises: a state cannot be mutated by accident."""
        with pytest.raises(ValueError):
            new_state().w[0, 0] = 1.0


class TestPersistence:
    def test_round_trip_is_exact(self):
        """from_bytes(to_bytes(s)) is bit-identical in arrays, counts, config and bytes."""
        s = _alternating(45, ModelConfig(min_outcomes=12, r_weighted=True))
        blob = to_bytes(s)
        s2 = from_bytes(blob)
        assert (s2.n_seen, s2.wins, s2.config) == (s.n_seen, s.wins, s.config)
        assert all(np.array_equal(_arrays(s)[k], v) for k, v in _arrays(s2).items())
        assert to_bytes(s2) == blob
        assert predict(s2, POS) == predict(s, POS)

    def test_restored_model_keeps_learning_like_the_original(self):
        """Learning one more outcome after a restore gives the same bytes as without the restore."""
        s = _alternating(40)
        assert to_bytes(learn(from_bytes(to_bytes(s)), NEG, -1.0)) == to_bytes(learn(s, NEG, -1.0))

    def test_config_override_keeps_the_learned_numbers(self):
        """A new min_outcomes replaces the stored one; the weights are kept."""
        s = _alternating(40)
        s2 = from_bytes(to_bytes(s), ModelConfig(min_outcomes=100))
        assert s2.config.min_outcomes == 100 and np.array_equal(s2.w, s.w)
        assert predict(s2, POS).cold is True

    def test_config_override_with_other_prior_vars_is_refused(self):
        """A different model family (prior_vars) cannot adopt the stored weights."""
        with pytest.raises(DecodeError):
            from_bytes(to_bytes(new_state()), ModelConfig(prior_vars=(1.0,)))

    @pytest.mark.parametrize("cut", [0, 1, 13, 14, 15, 100, -1])
    def test_truncated_blob_raises_decode_error(self, cut):
        """Any prefix of a valid blob is rejected with DecodeError."""
        blob = to_bytes(_alternating(5))
        with pytest.raises(DecodeError):
            from_bytes(blob[:cut])

    def test_every_flipped_body_byte_is_caught_by_the_checksum(self):
        """Flipping any single byte anywhere in the blob raises DecodeError."""
        blob = bytearray(to_bytes(_alternating(5)))
        for i in range(len(blob)):
            bad = bytearray(blob)
            bad[i] ^= 0x40
            with pytest.raises(DecodeError):
                from_bytes(bytes(bad))

    def test_other_version_raises_decode_error_with_reason_version(self):
        """A blob written by another schema version is refused, and says why."""
        blob = bytearray(to_bytes(new_state()))
        struct.pack_into(">H", blob, 4, STATE_VERSION + 1)
        with pytest.raises(DecodeError) as exc:
            from_bytes(bytes(blob))
        assert exc.value.reason == "version"

    def test_other_feature_set_raises_decode_error(self):
        """A well-formed blob (valid checksum) from a build with other features is refused."""
        body = msgspec.msgpack.decode(to_bytes(new_state())[14:])
        body["features"] = list(FEATURES[:-1]) + ["order_flow"]
        raw = msgspec.msgpack.encode(body)
        blob = struct.pack(">4sHII", b"AEGM", STATE_VERSION, len(raw), zlib.crc32(raw)) + raw
        with pytest.raises(DecodeError) as exc:
            from_bytes(blob)
        assert exc.value.reason == "version"

    def test_well_formed_blob_with_wrong_array_size_raises_decode_error(self):
        """A checksummed blob whose weight array has the wrong length is refused."""
        body = msgspec.msgpack.decode(to_bytes(new_state())[14:])
        body["w"] = body["w"][:-8]
        raw = msgspec.msgpack.encode(body)
        blob = struct.pack(">4sHII", b"AEGM", STATE_VERSION, len(raw), zlib.crc32(raw)) + raw
        with pytest.raises(DecodeError):
            from_bytes(blob)

    def test_mutated_blobs_with_valid_checksums_decode_or_raise_decode_error(self):
        """2,000 seeded byte mutations, re-checksummed: each raises DecodeError or gives a
        state whose confidence is finite and in [0, 1] and which can keep learning (with this
        seed: 1,930 refused, 70 decoded)."""
        body = to_bytes(_alternating(40, ModelConfig(min_outcomes=0)))[14:]
        rng = np.random.default_rng(3)
        refused = decoded = 0
        for _ in range(2000):
            raw = bytearray(body)
            for i in rng.integers(0, len(raw), size=int(rng.integers(1, 5))):
                raw[i] = int(rng.integers(0, 256))
            raw = bytes(raw[:int(rng.integers(1, len(raw) + 1))] if rng.random() < 0.3 else raw)
            blob = struct.pack(">4sHII", b"AEGM", STATE_VERSION, len(raw), zlib.crc32(raw)) + raw
            try:
                s = from_bytes(blob)
            except DecodeError:
                refused += 1
                continue
            decoded += 1
            s = learn(s, POS, 2.0)
            p = predict(s, POS).confidence
            assert math.isfinite(p) and 0.0 <= p <= 1.0
        assert (refused, decoded) == (1_930, 70)

    @pytest.mark.parametrize("junk", [b"", b"AEGM", b"\x00" * 64, "text", None])
    def test_garbage_raises_decode_error(self, junk):
        """Empty, short, zeroed or non-bytes input raises DecodeError, nothing else."""
        with pytest.raises(DecodeError):
            from_bytes(junk)


class TestConfig:
    @pytest.mark.parametrize("kwargs", [
        {"min_outcomes": -1}, {"min_outcomes": True}, {"prior_wins": 0.0},
        {"prior_vars": ()}, {"prior_vars": (1.0, -1.0)}, {"prior_vars": [1.0]},
        {"process_noise": -1e-3}, {"process_noise": math.nan}, {"clip_z": math.inf},
    ])
    def test_impossible_values_are_rejected(self, kwargs):
        """Each impossible hyper-parameter raises ConfigError."""
        with pytest.raises(ConfigError):
            ModelConfig(**kwargs)

    def test_unknown_field_is_rejected(self):
        """A misspelt hyper-parameter is a TypeError, not silently ignored."""
        with pytest.raises(TypeError):
            ModelConfig(min_outcome=30)  # type: ignore[call-arg]
