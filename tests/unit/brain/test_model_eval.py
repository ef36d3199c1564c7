"""Model evaluation: score formulas, prequential order, the exit rule, and the replay on
the real BTCUSDT 15 m year."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.errors import DataError
from services.brain.model import FEATURES, ModelConfig
from services.brain.model_eval import (Outcome, brier, evaluate, log_loss, main, reliability,
                                       replay_trades, settle)
from services.brain.smc_cli import read_candles
from tests.conftest import BTC_15M_CSV

CANDLES = BTC_15M_CSV  # real Binance spot candles, bundled with the exchange sim
PREFIX_BARS = 8000

# Measured on the file above (README quotes them): 1,668 closed setups, 566 wins.
TRADES_2024 = 1668
WINS_2024 = 566


@pytest.fixture(scope="module")
def candles() -> dict[str, list]:
    """The real 2024 BTCUSDT 15 m candles."""
    return read_candles(CANDLES)


@pytest.fixture(scope="module")
def replay(candles):
    """Trades and evaluation of one full replay of the year."""
    trades, still_open = replay_trades(candles)
    return trades, still_open, evaluate(trades)


class TestScores:
    def test_brier_by_hand(self):
        """Brier of (0.75, 0.25, 0.5) against (1, 1, 0) is (0.0625 + 0.5625 + 0.25) / 3."""
        assert brier([0.75, 0.25, 0.5], [1, 1, 0]) == 0.875 / 3

    def test_log_loss_by_hand(self):
        """Log loss of 0.75 on a win and 0.25 on a loss is -ln 0.75 each."""
        assert log_loss([0.75, 0.25], [1, 0]) == float(-np.log(0.75))

    def test_log_loss_clips_certain_wrong_forecasts(self):
        """A forecast of 0 for a win costs -ln(1e-15), not infinity."""
        assert log_loss([0.0], [1]) == float(-np.log(1e-15))

    def test_constant_half_scores(self):
        """A constant 0.5 has Brier 0.25 and log loss ln 2 whatever happens."""
        assert (brier([0.5] * 3, [1, 0, 0]), log_loss([0.5] * 3, [1, 0, 0])) \
            == (0.25, float(-np.log(0.5)))

    def test_reliability_table_by_hand(self):
        """Four forecasts fall in bins 0, 1, 1 and 9 (1.0 belongs to the last bin)."""
        assert reliability([0.05, 0.15, 0.15, 1.0], [0, 1, 0, 1]) == [
            {"lo": 0.0, "hi": 0.1, "n": 1, "mean_p": 0.05, "freq": 0.0},
            {"lo": 0.1, "hi": 0.2, "n": 2, "mean_p": 0.15, "freq": 0.5},
            {"lo": 0.9, "hi": 1.0, "n": 1, "mean_p": 1.0, "freq": 1.0},
        ]


class TestPrequential:
    def test_single_win_is_scored_with_the_prior_not_with_itself(self):
        """One win is forecast at 0.5 (Brier 0.25); learning it first would say 0.6 (0.16)."""
        out = evaluate([({}, 2.0)], ModelConfig(min_outcomes=0))
        assert out["brier"] == {"model": 0.25, "base_rate": 0.25, "constant": 0.25}
        assert out["forecasts"]["model"] == [0.5]

    def test_each_outcome_is_learned_right_after_its_own_forecast(self):
        """Win, win, loss: base-rate forecasts 2/4, 3/5, 4/6 use only the earlier outcomes."""
        out = evaluate([({}, 1.0), ({}, 1.0), ({}, -1.0)])
        assert out["forecasts"]["base_rate"] == [0.5, 0.6, 4 / 6]
        assert out["forecasts"]["outcome"] == [1.0, 1.0, 0.0]

    def test_open_trade_teaches_nothing_until_its_outcome_is_known(self):
        """A win known at bar 10 is not used at bar 5, and is used at bar 10."""
        stream = [Outcome({}, 2.0, 0, 10), Outcome({}, -1.0, 5, 20), Outcome({}, -1.0, 10, 30)]
        assert evaluate(stream)["forecasts"]["base_rate"] == [0.5, 0.5, 0.6]

    def test_decisions_out_of_order_are_refused(self):
        """A stream whose decision times go backwards would leak the future: DataError."""
        with pytest.raises(DataError, match="decided_at 4 < 5"):
            evaluate([Outcome({}, 1.0, 5, 6), Outcome({}, 1.0, 4, 7)])

    def test_model_beats_the_base_rate_when_a_feature_carries_signal(self):
        """On a seeded synthetic stream where two features shift the log-odds, the model's
        Brier and log loss beat the base rate's."""
        rng = np.random.default_rng(7)
        stream = []
        for _ in range(1500):
            ext, swept = rng.normal(0.0, 2.0), float(rng.random() < 0.3)
            logit = -0.7 + 0.25 * ext + (swept - 0.3)
            win = rng.random() < 1.0 / (1.0 + math.exp(-logit))
            stream.append(({"extension_atr": ext, "swept_recent": swept}, 2.0 if win else -1.0))
        out = evaluate(stream)
        assert out["brier"]["model"] < out["brier"]["base_rate"] - 0.01
        assert out["log_loss"]["model"] < out["log_loss"]["base_rate"] - 0.02


class TestSettle:
    def test_stop_first_when_one_candle_hits_both(self):
        """A long whose candle reaches both stop and target is stopped out."""
        assert settle(1, 99.0, 102.0, 100.0, 103.0, 98.0) == 99.0

    def test_target_when_only_it_is_reached(self):
        """A short whose candle reaches only the target exits there."""
        assert settle(-1, 101.0, 98.0, 100.0, 100.5, 97.0) == 98.0

    def test_gap_beyond_the_stop_exits_at_the_open(self):
        """A long whose candle opens under the stop exits at that open (worse than -1 R)."""
        assert settle(1, 99.0, 102.0, 98.5, 103.0, 98.0) == 98.5

    def test_trade_survives_a_candle_inside_its_range(self):
        """Neither level touched: the trade stays open."""
        assert settle(1, 99.0, 102.0, 100.0, 101.9, 99.1) is None


class TestRealReplay:
    def test_year_of_btcusdt_gives_the_measured_trade_count_and_base_rate(self, replay):
        """The replay closes 1,668 setups with 566 wins (2 still open at the end)."""
        trades, still_open, out = replay
        assert (out["n"], out["wins"], still_open) == (TRADES_2024, WINS_2024, 2)
        assert out["base_rate"] == WINS_2024 / TRADES_2024
        assert {t.outcome_r for t in trades} >= {2.0, -1.0}

    def test_replay_is_deterministic(self, candles, replay):
        """A second replay of the same file gives identical trades and identical scores."""
        trades, _, out = replay
        trades2, _ = replay_trades(candles)
        out2 = evaluate(trades2)
        assert trades2 == trades
        assert out2 == out

    def test_model_is_better_than_a_coin_flip(self, replay):
        """The model's Brier score and log loss beat a constant 0.5 on the real year."""
        out = replay[2]
        assert out["brier"]["model"] < out["brier"]["constant"] == 0.25
        assert out["log_loss"]["model"] < out["log_loss"]["constant"]

    def test_features_are_clean_and_causal_in_order(self, replay):
        """Every trade's features are finite, complete, and decided before the outcome is known."""
        for t in replay[0]:
            assert set(t.features) == set(FEATURES)
            assert all(math.isfinite(v) for v in t.features.values())
            assert t.decided_at < t.known_at

    def test_prefix_replay_reproduces_the_trades_it_could_know(self, candles, replay):
        """Replaying only the first 8,000 candles yields exactly the full run's trades closed
        within them: no feature or outcome depends on a later candle."""
        prefix = {k: v[:PREFIX_BARS] for k, v in candles.items()}
        short, _ = replay_trades(prefix)
        assert short == [t for t in replay[0] if t.known_at < PREFIX_BARS]
        assert len(short) > 300

    def test_command_prints_the_numbers_of_evaluate(self, tmp_path, capsys):
        """``--candles FILE`` on the first 3,000 candles exits 0 and prints evaluate's numbers."""
        small = tmp_path / "btc_3000.csv"
        with CANDLES.open() as fh:
            small.write_text("".join(line for _, line in zip(range(3001), fh)))
        assert main(["--candles", str(small)]) == 0
        printed = capsys.readouterr().out
        out = evaluate(replay_trades(read_candles(small))[0])
        assert f"trades: {out['n']} closed" in printed
        assert (f"brier (all, n={out['n']})".ljust(30) + f"{out['brier']['model']:.4f}".rjust(10)
                + f"{out['brier']['base_rate']:.4f}".rjust(11) + "0.2500".rjust(9)) in printed

    def test_command_reports_a_bad_file_and_exits_2(self, tmp_path, capsys):
        """A file without candle columns is one line on stderr and exit status 2."""
        bad = tmp_path / "bad.csv"
        bad.write_text("a,b\n1,2\n")
        assert main(["--candles", str(bad)]) == 2
        assert capsys.readouterr().err.startswith("model_eval: ")
