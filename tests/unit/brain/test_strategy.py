"""The SMC strategy: exact signals on hand-made candles, invariants, filters, and a replay
of the real BTCUSDT December 2024 1m month with 15m derived causally."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from common.errors import ConfigError
from services.brain.model import FEATURES, ModelConfig, learn, predict
from services.brain.model import new_state as new_model
from services.brain.smc_cli import read_candles
from services.brain.strategy import (STRATEGY, StrategyConfig, new_symbol_state, on_candle,
                                     signal_id)
from tests.conftest import BTC_1M_CSV

BTC_1M = BTC_1M_CSV  # real Binance spot candles, bundled with the exchange sim
# 2024-12-01 00:00:59.999+01:00 is the first close: open = close + 1 ms - 60 s, in UTC
FIRST_OPEN_MS = 1_733_007_600_000  # 2024-11-30T23:00:00Z
# measured with the default StrategyConfig (README / report quote them)
MONTH_SIGNALS, MONTH_LONGS, MONTH_SHORTS = 2360, 1375, 985
PREFIX_BARS = 20_000

# Tiny settings so a few dozen hand-made bars hold swings, structure and retests; the
# higher timeframe is the base one (factor 1) so its structure is easy to follow by hand.
HAND = StrategyConfig(swing_length=2, htf_swing_length=2, htf_factor=1, warmup_bars=0,
                      atr_bars=3, atr_slow_bars=10, min_risk_atr=0.0, max_risk_atr=100.0,
                      cooldown_bars=0, liquidity_target=False)
MIRROR = 2000.0  # shorts are the longs' candles reflected in this price


def staircase(waves: int = 6) -> list[float]:
    """Closes of a rising zigzag from 1000: each wave 5 bars up by 3, then 4 down by 1."""
    cl = [1000.0]
    for _ in range(waves):
        for _ in range(5):
            cl.append(cl[-1] + 3.0)
        for _ in range(4):
            cl.append(cl[-1] - 1.0)
    return cl


def bars(closes: list[float], *, mirrored: bool = False) -> list[SimpleNamespace]:
    """Candle k opens at close k and closes at close k+1, wicks 0.5 beyond the body: an up
    step of 3 leaves a bullish fair value gap, a down step of 1 none."""
    out = []
    for k in range(1, len(closes)):
        o, c = closes[k - 1], closes[k]
        h, low = max(o, c) + 0.5, min(o, c) - 0.5
        if mirrored:
            o, c, h, low = MIRROR - o, MIRROR - c, MIRROR - low, MIRROR - h
        out.append(SimpleNamespace(symbol="TEST", open_ms=60_000 * k, open=o, high=h, low=low,
                                   close=c, volume=1.0))
    return out


def replay(candles, config=HAND, model=None):
    """Signals of one fresh state fed every candle, and the final state."""
    st, model = new_symbol_state(config), model or new_model()
    out = []
    for c in candles:
        st, sigs = on_candle(st, c, 60, model)
        out += sigs
    return out, st


# Bars 33/34, 42/43, 51/52: the 2nd and 3rd down bars of waves 3-5 reach the top of the
# wave's last and second-to-last bullish gap and close inside it. Stop: the wave's trough
# low (pivot low); target 2 R. E.g. bar 33: close 1046, trough 1033 - 0.5 = 1032.5,
# risk 13.5, target 1073.
EXPECTED_LONGS = [  # (bar, entry, stop, target)
    (33, 1046.0, 1032.5, 1073.0), (34, 1045.0, 1032.5, 1070.0),
    (42, 1057.0, 1043.5, 1084.0), (43, 1056.0, 1043.5, 1081.0),
    (51, 1068.0, 1054.5, 1095.0), (52, 1067.0, 1054.5, 1092.0),
]


def levels(sigs):
    return [(s.side, s.entry, s.stop, s.target) for s in sigs]


class TestHandMadeSequences:
    def test_rising_staircase_gives_exactly_the_expected_longs(self):
        """An uptrend's pullbacks into its own fair value gaps give these six longs, no short."""
        sigs, st = replay(bars(staircase()))
        assert levels(sigs) == [("BUY", e, s, t) for _, e, s, t in EXPECTED_LONGS]
        assert [s.signal_id for s in sigs] == [f"TEST-{60_000 * (b + 1)}-BUY"
                                               for b, *_ in EXPECTED_LONGS]
        assert st.htf.direction == 1 and st.emitted == 6

    def test_mirrored_staircase_gives_exactly_the_mirrored_shorts(self):
        """The same candles reflected in price give the reflected shorts and no long."""
        sigs, _ = replay(bars(staircase(), mirrored=True))
        assert levels(sigs) == [("SELL", MIRROR - e, MIRROR - s, MIRROR - t)
                                for _, e, s, t in EXPECTED_LONGS]

    def test_too_few_bars_for_a_bias_give_nothing(self):
        """Without a higher-timeframe structure label yet, a retest is not a setup."""
        sigs, st = replay(bars(staircase(2)))
        assert sigs == [] and st.htf.direction == 0

    def test_signal_fields_and_features(self):
        """Every signal carries the strategy name, the model's features and a valid side."""
        sigs, _ = replay(bars(staircase()))
        for s in sigs:
            assert s.strategy == STRATEGY and s.symbol == "TEST"
            assert tuple(s.features) == FEATURES
            assert s.features["trend_agree"] == 1.0 and s.features["rr"] == pytest.approx(2.0)


class TestInvariantsAndConfidence:
    @pytest.mark.parametrize("mirrored", [False, True])
    def test_stop_and_target_on_the_right_sides(self, mirrored):
        """A BUY has stop < entry < target, a SELL target < entry < stop, all finite (6 signals)."""
        sigs, _ = replay(bars(staircase(), mirrored=mirrored))
        assert len(sigs) == len(EXPECTED_LONGS) == 6
        for s in sigs:
            assert all(math.isfinite(x) and x > 0 for x in (s.entry, s.stop, s.target))
            d = 1 if s.side == "BUY" else -1
            assert d * (s.entry - s.stop) > 0 and d * (s.target - s.entry) > 0

    def test_fresh_model_gives_cold_prior_confidence(self):
        """A model that has learned nothing says 0.5 (Beta(2, 2)) and cold."""
        sigs, _ = replay(bars(staircase()))
        assert {(s.confidence, s.cold) for s in sigs} == {(0.5, True)}

    def test_warm_model_is_not_cold(self):
        """Past ``min_outcomes`` each of the 6 signals carries the model's own prediction for
        its features (not the 0.5 prior) and is flagged warm."""
        model = new_model(ModelConfig(min_outcomes=2))
        feats = replay(bars(staircase()))[0][0].features
        model = learn(learn(model, feats, 2.0), feats, -1.0)
        sigs, _ = replay(bars(staircase()), model=model)
        assert [s.cold for s in sigs] == [False] * 6
        assert [s.confidence for s in sigs] == [predict(model, s.features).confidence for s in sigs]
        assert 0.5 not in {s.confidence for s in sigs}

    def test_ids_are_deterministic(self):
        """Two runs give identical messages; the id is symbol, open time and side."""
        a, _ = replay(bars(staircase()))
        b, _ = replay(bars(staircase()))
        assert a == b
        assert signal_id("BTCUSDT", 1_733_007_600_000, "SELL") == "BTCUSDT-1733007600000-SELL"


class TestFilters:
    def test_risk_too_small_is_skipped_and_counted(self):
        """With a 100-ATR minimum risk every setup is skipped as risk_below_min."""
        sigs, st = replay(bars(staircase()), StrategyConfig(**{**_hand(), "min_risk_atr": 99.0}))
        assert sigs == [] and st.skipped["risk_below_min"] == 6

    def test_risk_too_large_is_skipped_and_counted(self):
        """With a tiny maximum risk every setup is skipped as risk_above_max."""
        sigs, st = replay(bars(staircase()), StrategyConfig(**{**_hand(), "max_risk_atr": 0.01}))
        assert sigs == [] and st.skipped["risk_above_max"] == 6

    def test_cooldown_drops_the_next_bar(self):
        """A one-bar cooldown keeps the first of each pair of consecutive setups."""
        sigs, st = replay(bars(staircase()), StrategyConfig(**{**_hand(), "cooldown_bars": 1}))
        assert [s.entry for s in sigs] == [1046.0, 1057.0, 1068.0]
        assert st.skipped["cooldown"] == 3

    def test_bad_and_foreign_candles_are_counted_and_ignored(self):
        """A NaN candle, a repeated open time and a 15m candle leave the state untouched."""
        cs = bars(staircase())
        st, model = new_symbol_state(HAND), new_model()
        st, _ = on_candle(st, cs[0], 60, model)
        nan = SimpleNamespace(**{**vars(cs[1]), "close": math.nan})
        for c, interval in ((nan, 60), (cs[0], 60), (cs[1], 900)):
            st, sigs = on_candle(st, c, interval, model)
            assert sigs == []
        assert st.bars == 1 and st.skipped["bad_candle"] == 2
        assert st.skipped["other_interval"] == 1

    def test_the_float_shortcut_judges_candles_as_the_full_check(self):
        """``_candle_values`` (a shortcut for exact floats and an int time) accepts exactly
        the candles ``_valid_candle`` accepts, and hands on ``int``/``float`` of the fields:
        every field set in turn to NaN, +-inf, 0, -0.0, a negative, an int, a bool, a
        numpy float, a string, or huge finite values whose sum overflows."""
        import numpy as np

        from services.brain.strategy import _candle_values, _valid_candle

        base = {"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 3.0}
        odd = (math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 7, True, np.float64(100.25),
               "100", 1.7e308)
        variants = [dict(base)] + [{**base, k: x} for k in base for x in odd]
        variants.append({k: 1.7e308 for k in base})  # finite, but their sum is not
        for fields in variants:
            for open_ms in (60_000, 60_000.0, 0):
                st = new_symbol_state(HAND)
                st.last_open_ms = 0
                c = SimpleNamespace(symbol="TEST", open_ms=open_ms, **fields)
                got = _candle_values(st, c)
                assert (got is not None) == _valid_candle(st, c), (fields, open_ms)
                if got is not None:
                    want = (int(open_ms),) + tuple(float(fields[k]) for k in base)
                    assert got == want and [type(x) for x in got] == [int] + [float] * 5

    def test_config_rejects_impossible_values(self):
        """A zero HTF factor or min risk above max risk is a ConfigError; unknown fields fail."""
        with pytest.raises(ConfigError):
            StrategyConfig(htf_factor=0)
        with pytest.raises(ConfigError):
            StrategyConfig(min_risk_atr=3.0, max_risk_atr=2.0)
        with pytest.raises(TypeError):
            StrategyConfig(bogus=1)  # type: ignore[call-arg]


def _hand() -> dict:
    return {f: getattr(HAND, f) for f in HAND.__dataclass_fields__}


# ---- the real month ------------------------------------------------------------------

@pytest.fixture(scope="module")
def month() -> list[SimpleNamespace]:
    """The real BTCUSDT 1m candles of December 2024 (open time from close_datetime)."""
    cols = read_candles(BTC_1M)
    return [SimpleNamespace(symbol="BTCUSDT", open_ms=int(t), open=o, high=h, low=lo,
                            close=c, volume=v)
            for t, o, h, lo, c, v in zip(cols["time_ms"], cols["open"], cols["high"],
                                         cols["low"], cols["close"], cols["volume"])]


@pytest.fixture(scope="module")
def month_signals(month):
    """One full replay with the default config (1m base, 15m bias built from it)."""
    return replay(month, StrategyConfig())[0]


class TestRealMonth:
    def test_open_times_start_at_utc_midnight_minus_one_hour(self, month):
        """The first bar closing 00:00:59.999+01:00 opened at 23:00:00 UTC, one bar a minute."""
        assert month[0].open_ms == FIRST_OPEN_MS and len(month) == 41_761
        assert month[1].open_ms - month[0].open_ms == 60_000

    def test_month_gives_the_recorded_number_of_signals(self, month_signals):
        """The month yields exactly 2,360 signals: 1,375 longs and 985 shorts."""
        longs = sum(s.side == "BUY" for s in month_signals)
        assert (len(month_signals), longs, len(month_signals) - longs) \
            == (MONTH_SIGNALS, MONTH_LONGS, MONTH_SHORTS)

    def test_every_month_signal_is_valid(self, month_signals):
        """All levels finite and on the right sides, risk within the ATR bounds, ids unique."""
        cfg = StrategyConfig()
        for s in month_signals:
            d = 1 if s.side == "BUY" else -1
            assert all(math.isfinite(x) and x > 0 for x in (s.entry, s.stop, s.target))
            assert d * (s.entry - s.stop) > 0 and d * (s.target - s.entry) > 0
            assert cfg.min_risk_atr <= s.features["risk_atr"] <= cfg.max_risk_atr
            assert 0.0 <= s.confidence <= 1.0 and s.cold
        assert len({s.signal_id for s in month_signals}) == len(month_signals)

    def test_gaps_read_from_the_mitigations_are_the_gaps_a_scan_finds(self, month,
                                                                      monkeypatch):
        """On every candle of the month with a bias, ``_gap_retested`` (from the candle's
        mitigation rows) answers what a scan of the live gaps answers (``low <= top and
        close > bottom`` for a bullish gap, ``high >= bottom and close < top`` for a
        bearish one), and both answers occur often."""
        from services.brain import strategy as strategy_mod

        real, seen = strategy_mod._retest, {True: 0, False: 0}

        def checked(st, d, h, low, c, ev):
            gaps = st.fvgs[d]
            scan = (any(low <= top and c > bottom for top, bottom in gaps.values()) if d > 0
                    else any(h >= bottom and c < top for top, bottom in gaps.values()))
            assert strategy_mod._gap_retested(gaps, d, c, ev) == scan
            seen[scan] += 1
            return real(st, d, h, low, c, ev)

        monkeypatch.setattr(strategy_mod, "_retest", checked)
        replay(month, StrategyConfig())
        assert seen[True] > 1_000 and seen[False] > 10_000

    def test_month_replay_is_deterministic(self, month, month_signals):
        """A second replay of the month gives the identical list of messages."""
        assert replay(month, StrategyConfig())[0] == month_signals

    def test_prefix_replay_matches_the_full_replay(self, month, month_signals):
        """Signals from a replay of the first 20,000 bars are the full replay's up to then."""
        prefix, _ = replay(month[:PREFIX_BARS], StrategyConfig())
        cut = month[PREFIX_BARS].open_ms
        assert prefix and prefix == [s for s in month_signals
                                     if int(s.signal_id.split("-")[1]) < cut]
