"""The candles source: real 1m candles replayed as trades synthesized inside each candle, the
bars the sim builds from them, and the real history it serves before the replay."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ConfigError
from services.exchange_sim import candle_trades
from services.exchange_sim.recorded_market import BOOK, TRADE
from services.exchange_sim.engine import Player
from services.exchange_sim.hub import Hub
from services.exchange_sim.klines import F_C, F_H, F_L, F_O, F_OPEN_TIME, F_V, MINUTE_MS
from services.exchange_sim.market import Market
from services.exchange_sim.symbols import make_specs

START_MS = 1_800_000_000_000  # a round minute (2027-01-15 08:00 UTC)
K = candle_trades.TRADES_PER_CANDLE


@pytest.fixture(scope="module")
def cd():
    return candle_trades.load_candles()


def ohlcv(bars) -> list[tuple[int, int, int, int, int]]:
    return [(b[F_O], b[F_H], b[F_L], b[F_C], b[F_V]) for b in bars]


def real(cd, lo: int, hi: int, per_bar: int = 1) -> list[tuple[int, int, int, int, int]]:
    """Candles [lo, hi) grouped ``per_bar`` at a time, as (o, h, l, c, v) on the grid."""
    out = []
    for i in range(lo, hi, per_bar):
        s = slice(i, i + per_bar)
        out.append((int(cd.o[i]), int(cd.h[s].max()), int(cd.l[s].min()),
                    int(cd.c[i + per_bar - 1]), int(cd.v[s].sum())))
    return out


def play(cd, *, start_index: int, minutes: int, speed: float, symbols: int = 1,
         history: int = 0):
    """A market replaying the candles from ``start_index`` for ``minutes`` sim minutes."""
    per_bar = candle_trades.minutes_per_bar(speed)
    cap = candle_trades.to_capture(cd, start_index)
    specs = candle_trades.align_specs(make_specs(cap, symbols), per_bar * MINUTE_MS)
    hub = Hub(specs)
    market = Market(cap, specs, Player(cap, specs, start_ms=START_MS, speed=speed), hub)
    for s in specs:
        market.klines.seed(s.index, candle_trades.history_bars(cd, cap, s, start_index=start_index,
                                                    bars=history, per_bar=per_bar, end_ms=START_MS))
    for now in range(START_MS, START_MS + minutes * MINUTE_MS + 2_000, 250):
        market.step(now)
    return market, cap, specs


class TestLoading:
    def test_bundled_file_has_the_documented_rows_and_grid(self, cd):
        """41,761 contiguous minutes, prices on 0.01 and volumes on 0.000001, first open 2024-11-30 23:00 UTC."""
        assert cd.n == 41_761
        assert (cd.price_decimals, cd.qty_decimals) == (2, 6)
        assert int(cd.open_ms[0]) == 1_733_007_600_000
        assert (int(cd.o[0]), int(cd.h[0]), int(cd.l[0]), int(cd.c[0]), int(cd.v[0])) == (
            9_646_611, 9_649_552, 9_644_000, 9_644_000, 6_615_800)

    def test_close_datetime_converts_to_the_utc_open(self):
        """The file's +01:00 close stamp minus one minute plus 1 ms is the UTC open."""
        assert candle_trades._open_ms("2024-12-01 00:00:59.999000+01:00") == 1_733_007_600_000


class TestSynthesis:
    def test_trades_start_at_open_end_at_close_and_stay_within_the_candle(self, cd):
        """For every candle of the file: first trade = open, last = close, all within [low, high], extremes hit."""
        p, _, _ = candle_trades.synthesize(cd.o, cd.h, cd.l, cd.c, cd.v, candle_trades._prev_close(cd, 0, cd.n))
        assert np.array_equal(p[:, 0], cd.o) and np.array_equal(p[:, -1], cd.c)
        assert np.all(p >= cd.l[:, None]) and np.all(p <= cd.h[:, None])
        assert np.array_equal(p.max(1), cd.h) and np.array_equal(p.min(1), cd.l)

    def test_green_candles_visit_low_before_high_and_red_ones_high_before_low(self, cd):
        """Path O->L->H->C when close >= open, O->H->L->C otherwise (pivots at trades 4 and 8)."""
        p, _, _ = candle_trades.synthesize(cd.o, cd.h, cd.l, cd.c, cd.v, candle_trades._prev_close(cd, 0, cd.n))
        green = cd.c >= cd.o
        assert np.array_equal(p[green, 4], cd.l[green]) and np.array_equal(p[green, 8], cd.h[green])
        assert np.array_equal(p[~green, 4], cd.h[~green]) and np.array_equal(p[~green, 8], cd.l[~green])

    def test_trade_quantities_sum_to_the_candle_volume_on_the_step_grid(self, cd):
        """Integer units of 0.000001 BTC: the split loses nothing and no trade is empty."""
        _, q, _ = candle_trades.synthesize(cd.o, cd.h, cd.l, cd.c, cd.v, candle_trades._prev_close(cd, 0, cd.n))
        assert np.array_equal(q.sum(1), cd.v)
        assert q.min() >= 1 and (q.max(1) - q.min(1)).max() <= 1

    def test_down_moves_are_sells_and_other_moves_buys(self):
        """Buyer is maker exactly when the trade price is below the one before."""
        one = lambda x: np.array([x], np.int64)  # noqa: E731
        p, _, m = candle_trades.synthesize(one(100), one(110), one(90), one(95), one(120), one(101))
        before = np.concatenate([[101], p[0, :-1]])
        assert m[0].tolist() == (p[0] < before).tolist()
        assert m[0, 0]  # 100 after a close of 101: a sell


class TestCapture:
    def test_each_trade_follows_a_one_tick_book_touching_its_price(self, cd):
        """Book before trade, same time; a sell trades at the bid, a buy at the ask, one tick apart."""
        cap = candle_trades.to_capture(cd, 0, 100)
        assert cap.kind[0::2].tolist() == [BOOK] * cap.n_books
        assert cap.kind[1::2].tolist() == [TRADE] * cap.n_trades
        bid, ask, p, m = cap.p1[0::2], cap.p2[0::2], cap.p1[1::2], cap.maker[1::2]
        assert np.all(ask - bid == 1)
        assert np.array_equal(np.where(m, bid, ask), p)
        assert np.array_equal(cap.e_ms[0::2], cap.e_ms[1::2])

    def test_times_are_spread_over_each_candle_and_ids_increase(self, cd):
        """12 trades 5 s apart from the candle's open; trade ids count on from the file start."""
        cap = candle_trades.to_capture(cd, 10, 12)
        t = cap.e_ms[1::2]
        assert t.tolist() == [int(cd.open_ms[10]) + 5_000 * i for i in range(24)]
        assert cap.ident[1::2].tolist() == list(range(10 * K + 1, 10 * K + 25))
        assert cap.span_ms + cap.typical_gap_ms == 2 * MINUTE_MS  # loops stitch a minute apart


class TestReplayedBars:
    def test_played_1m_bars_equal_the_real_candles_at_speed_1(self, cd):
        """Ten sim minutes at speed 1: the ten closed 1m bars are the ten candles, exactly."""
        market, _, _ = play(cd, start_index=600, minutes=10, speed=1.0)
        bars = market.klines.bars(0)[:10]
        assert [b[F_OPEN_TIME] for b in bars] == [START_MS + i * MINUTE_MS for i in range(10)]
        assert ohlcv(bars) == real(cd, 600, 610)
        assert market.klines.n_closed[0] == 10  # the eleventh minute has begun: all ten closed

    def test_speed_60_plays_one_real_minute_per_second(self, cd):
        """Candle j's trade k is stamped (and due) at start + j s + floor(k * 5 s / 60)."""
        cap = candle_trades.to_capture(cd, 600)
        pl = Player(cap, make_specs(cap, 1), start_ms=START_MS, speed=60.0)
        trades = [(b.chunk.e_ms[i], b.chunk.p1[i]) for b in pl.due(START_MS + 4_999)
                  for i in range(b.lo, b.hi) if b.chunk.kind[i] == TRADE]
        assert len(trades) == 5 * K  # five real minutes in five seconds
        assert [e for e, _ in trades] == [START_MS + 1_000 * j + 5_000 * k // 60
                                          for j in range(5) for k in range(K)]
        assert [p for _, p in trades[::K]] == cd.o[600:605].tolist()

    def test_at_speed_60_a_sim_minute_bar_is_sixty_real_candles(self, cd):
        """Whole speed: the sim's 1m bar equals the real candles of that hour, exactly."""
        market, _, _ = play(cd, start_index=600, minutes=3, speed=60.0)
        assert ohlcv(market.klines.bars(0)[:3]) == real(cd, 600, 780, per_bar=60)


class TestHistory:
    def test_history_is_the_real_candles_before_the_replay_ending_before_the_first_minute(self, cd):
        """500 bars opening one minute apart, the last one minute before the start; OHLCV = candles [100, 600)."""
        market, _, _ = play(cd, start_index=600, minutes=2, speed=1.0, history=500)
        bars = market.klines.bars(0)[:502]
        opens = [b[F_OPEN_TIME] for b in bars]
        assert opens[:500] == [START_MS - (500 - i) * MINUTE_MS for i in range(500)]
        assert opens[499] + MINUTE_MS - 1 < START_MS  # history ends before the first replayed minute
        assert opens[500:] == [START_MS, START_MS + MINUTE_MS]
        assert ohlcv(bars) == real(cd, 100, 602)

    def test_history_at_speed_60_groups_sixty_candles_per_bar(self, cd):
        """At speed 60 history bars are hours, matching what the replay serves as 1m bars."""
        market, _, _ = play(cd, start_index=3_000, minutes=1, speed=60.0, history=50)
        assert ohlcv(market.klines.bars(0)[:51]) == real(cd, 0, 3_060, per_bar=60)

    def test_history_trade_ids_run_up_to_the_first_replayed_trade(self, cd):
        """The last history bar's last trade id is one below the first replayed trade id."""
        market, cap, specs = play(cd, start_index=600, minutes=0, speed=1.0, symbols=3, history=20)
        for s in specs:
            bars = market.klines.bars(s.index)
            assert bars[0][10] == s.trade_id_base - 20 * K
            assert bars[19][11] == s.trade_id_base - 1

    def test_derived_symbols_start_on_a_candle_and_their_history_joins_their_replay(self, cd):
        """A derived symbol's last history close is its first played open's previous candle close, scaled."""
        market, cap, specs = play(cd, start_index=600, minutes=1, speed=1.0, symbols=4, history=30)
        for s in specs[1:]:
            assert s.offset_ms % MINUTE_MS == 0 and s.offset_ms > 0
            bars = market.klines.bars(s.index)
            first = 600 + s.offset_ms // MINUTE_MS
            ratio = bars[30][F_O] / int(cd.o[first])
            assert bars[29][F_C] == pytest.approx(int(cd.c[first - 1]) * ratio, rel=2e-4)
            assert all(b[F_L] <= min(b[F_O], b[F_C]) <= max(b[F_O], b[F_C]) <= b[F_H] for b in bars)

    def test_history_leaves_an_hour_of_sim_minutes_to_replay(self, cd):
        """500 bars fit up to speed 74 (41,761 candles); beyond, history shrinks, replay keeps 60 bars."""
        assert candle_trades.history_capacity(cd, 500, 1) == 500
        assert candle_trades.history_capacity(cd, 500, 74) == 500
        assert candle_trades.history_capacity(cd, 500, 75) == 41_761 // 75 - 60 == 496
        assert candle_trades.history_capacity(cd, 500, 1_000) == 0


class TestStartUp:
    def test_fast_forward_leaves_the_same_state_as_playing_event_by_event(self, cd):
        """40 s into the first minute at speed 60: bulk folding equals stepping, bar, book and ids."""
        cap = candle_trades.to_capture(cd, 600)
        specs = candle_trades.align_specs(make_specs(cap, 3), 60 * MINUTE_MS)

        def market():
            return Market(cap, specs, Player(cap, specs, start_ms=START_MS, speed=60.0), Hub(specs))

        bulk, stepped = market(), market()
        now = START_MS + 40_000
        # 40 whole candles and the book and trade opening the 41st, per symbol
        assert bulk.fast_forward(now) == stepped.step(now) == 3 * (40 * 2 * K + 2)
        for sym in range(3):
            a, b = bulk.states[sym], stepped.states[sym]
            assert bulk.klines.current[sym] == stepped.klines.current[sym]
            assert (a.last_price, a.last_qty, a.last_trade_ms, a.last_trade_id, a.last_e_ms) == (
                b.last_price, b.last_qty, b.last_trade_ms, b.last_trade_id, b.last_e_ms)
            assert vars(a.book) == vars(b.book)
        later = START_MS + 70_000
        bulk.step(later)
        stepped.step(later)
        assert bulk.klines.bars(0) == stepped.klines.bars(0)

    def test_skip_stops_at_the_end_of_the_first_loop_and_leaves_the_rest_due(self, cd):
        """A 3-candle replay, 5 s in at speed 60: skip takes loop 0, the next step plays loop 1's due part."""
        cap = candle_trades.to_capture(cd, 600, 603)
        specs = make_specs(cap, 1)
        pl = Player(cap, specs, start_ms=START_MS, speed=60.0)
        assert pl.skip(START_MS + 4_999) == [(0, 0, cap.n)]
        batches = pl.due(START_MS + 4_999)
        # five minutes of candles are due: three in loop 0, two more in loop 1
        assert {b.chunk.loop for b in batches} == {1} and sum(b.hi - b.lo for b in batches) == 2 * 2 * K


class TestTradesPerCandle:
    def test_four_trades_are_exactly_the_path_open_extremes_close(self, cd):
        """k = 4: the trades are O, L, H, C (green) or O, H, L, C (red), volume still exact."""
        p, q, _ = candle_trades.synthesize(cd.o, cd.h, cd.l, cd.c, cd.v, candle_trades._prev_close(cd, 0, cd.n), 4)
        green = cd.c >= cd.o
        want = np.stack([cd.o, np.where(green, cd.l, cd.h), np.where(green, cd.h, cd.l), cd.c], 1)
        assert np.array_equal(p, want) and np.array_equal(q.sum(1), cd.v)

    @pytest.mark.parametrize("k", [3, 7, 61])
    def test_counts_that_miss_a_pivot_or_a_whole_ms_gap_are_refused(self, k):
        """Fewer than 4 trades, a gap that is not a whole ms, or more than 60 trades: ConfigError."""
        with pytest.raises(ConfigError, match="trades per candle"):
            candle_trades.check_trades_per_candle(k)

    def test_config_validation_rejects_bad_source_and_counts(self):
        """sim.source, sim.history_bars and sim.candle_trades are checked when the config loads."""
        from common.config import AegisConfig, ConfigError, SimConfig, validate

        validate(AegisConfig(sim=SimConfig(source="candles", history_bars=1500, candle_trades=60)))
        for bad in (dict(source="bars"), dict(history_bars=1501), dict(candle_trades=7)):
            with pytest.raises(ConfigError):
                validate(AegisConfig(sim=SimConfig(**bad)))
