"""Candle aggregation kernels: exact candles, boundaries, lateness, firewall, flush, roll-up."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
import pytest
from tick_rows import make_records

from common.errors import ConfigError
from common.records import Flag, Kind
from services.brain import candles as cd

M = cd.INTERVAL_1M_MS
Q = cd.INTERVAL_15M_MS
T0 = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC, a 15 m (and 1 m) boundary
SELL = Flag.BUYER_IS_MAKER


def trade(sid, t, p, q, tid=0, flags=0, kind=Kind.TRADE):
    return (kind, sid, t, p, q, tid, flags)


def feed(state, rows):
    """Run update_candles on rows; return copies of the closed candles and reset the output."""
    recs = make_records(rows)
    n = cd.update_candles(state, recs, len(recs))
    got = state.out[:n].copy()
    cd.reset_output(state)
    return got


def flush(state, now_ms, grace_ms=cd.FLUSH_GRACE_MS):
    n = cd.flush_due(state, now_ms, grace_ms)
    got = state.out[:n].copy()
    cd.reset_output(state)
    return got


def snapshot(state):
    """Copies of every per-symbol array and counter, to prove that nothing changed."""
    return {f: np.copy(getattr(state, f)) for f in cd.CandleState._fields
            if isinstance(getattr(state, f), np.ndarray) and f not in ("rejects", "out")}


def only_1m(candles):
    return candles[candles["interval_ms"] == M]


class TestExactCandles:
    def test_hand_written_trades_give_exact_ohlcv_ids_and_buy_volume(self):
        """Two minutes of trades close into two candles whose every field is exact."""
        st = cd.new_state(4, M)
        got = feed(st, [
            trade(1, T0 + 100, 100.0, 1.0, 10),
            trade(1, T0 + 2_000, 105.0, 0.5, 11, SELL),
            trade(1, T0 + 30_000, 95.0, 2.0, 12),
            trade(1, T0 + 59_999, 101.0, 0.25, 13, SELL),
            trade(1, T0 + 60_500, 102.0, 1.0, 14),
            trade(1, T0 + 120_000, 103.0, 3.0, 15),
        ])
        assert len(got) == 2
        c0, c1 = got
        assert (c0["symbol_id"], c0["open_ms"], c0["close_ms"]) == (1, T0, T0 + 59_999)
        assert (c0["open"], c0["high"], c0["low"], c0["close"]) == (100.0, 105.0, 95.0, 101.0)
        assert c0["volume"] == 3.75
        assert c0["quote_volume"] == 100.0 + 52.5 + 190.0 + 25.25
        assert c0["buy_volume"] == 3.0  # the two trades with m false
        assert (c0["trades"], c0["first_id"], c0["last_id"]) == (4, 10, 13)
        assert (c0["interval_ms"], c0["closed_by"], c0["flags"]) == (M, cd.CLOSED_BY_TRADE, 0)
        assert (c1["open_ms"], c1["open"], c1["high"], c1["low"], c1["close"]) == (
            T0 + M, 102.0, 102.0, 102.0, 102.0)
        assert (c1["volume"], c1["trades"], c1["first_id"], c1["last_id"]) == (1.0, 1, 14, 14)
        assert st.stats[cd.STAT_TRADES] == 6
        assert st.close[0, 1] == 103.0 and st.trades[0, 1] == 1  # minute 2 still open

    def test_trade_at_exactly_open_plus_interval_starts_the_next_candle(self):
        """A trade stamped open_ms + interval belongs to the next bucket and closes the first."""
        st = cd.new_state(1, M)
        assert len(feed(st, [trade(0, T0, 1.0, 1.0), trade(0, T0 + M - 1, 2.0, 1.0)])) == 0
        got = feed(st, [trade(0, T0 + M, 3.0, 1.0)])
        assert len(got) == 1
        assert (got[0]["open_ms"], got[0]["close"], got[0]["trades"]) == (T0, 2.0, 2)
        assert st.open_ms[0, 0] == T0 + M and st.open[0, 0] == 3.0

    def test_empty_minutes_emit_no_candle(self):
        """A gap of several minutes closes the old candle only; no filler candles appear."""
        st = cd.new_state(1, M)
        got = feed(st, [trade(0, T0 + 5, 1.0, 1.0), trade(0, T0 + 5 * M + 7, 2.0, 1.0)])
        assert [int(c["open_ms"]) for c in got] == [T0]
        assert st.open_ms[0, 0] == T0 + 5 * M

    def test_interleaved_symbols_keep_separate_candles(self):
        """Trades of three symbols interleaved build three independent candles."""
        st = cd.new_state(8, M)
        rows = []
        for i in range(30):
            sid = (0, 3, 7)[i % 3]
            rows.append(trade(sid, T0 + 1_000 * i, 100.0 * (sid + 1) + i, 1.0 + sid, i))
        rows += [trade(7, T0 + M, 1.0, 1.0), trade(0, T0 + M, 1.0, 1.0),
                 trade(3, T0 + M, 1.0, 1.0)]
        got = feed(st, rows)
        assert [int(c["symbol_id"]) for c in got] == [7, 0, 3]
        for c in got:
            sid = int(c["symbol_id"])
            mine = [r for r in rows[:30] if r[1] == sid]
            assert c["open"] == mine[0][3] and c["close"] == mine[-1][3]
            assert c["high"] == max(r[3] for r in mine) and c["low"] == min(r[3] for r in mine)
            assert c["volume"] == 10 * (1.0 + sid) and c["trades"] == 10

    def test_out_of_order_trade_inside_bucket_takes_open_by_event_time(self):
        """Inside one bucket the open is the earliest trade and the close the latest, by time."""
        st = cd.new_state(1, M)
        feed(st, [trade(0, T0 + 500, 10.0, 1.0, 2), trade(0, T0 + 400, 9.0, 1.0, 1),
                  trade(0, T0 + 900, 12.0, 1.0, 4), trade(0, T0 + 800, 11.0, 1.0, 3)])
        got = feed(st, [trade(0, T0 + M, 1.0, 1.0, 5)])
        c = got[0]
        assert (c["open"], c["close"], c["first_id"], c["last_id"]) == (9.0, 12.0, 1, 4)
        assert st.stats[cd.STAT_LATE] == 0

    def test_zero_quantity_trade_counts_as_a_trade(self):
        """qty 0 is valid (it passes the firewall) and counts as a trade with no volume."""
        st = cd.new_state(1, M)
        feed(st, [trade(0, T0, 5.0, 0.0)])
        c = feed(st, [trade(0, T0 + M, 1.0, 1.0)])[0]
        assert (c["trades"], c["volume"], c["open"]) == (1, 0.0, 5.0)

    def test_synthetic_flag_is_carried_into_the_candle(self):
        """A candle made of demo (synthetic) trades says so in its flags."""
        st = cd.new_state(1, M)
        feed(st, [trade(0, T0, 5.0, 1.0, 0, Flag.SYNTHETIC | SELL)])
        c = feed(st, [trade(0, T0 + M, 1.0, 1.0)])[0]
        assert c["flags"] == int(Flag.SYNTHETIC)


class TestLateAndIgnored:
    def test_trade_older_than_open_candle_is_counted_late_and_changes_nothing(self):
        """A straggler for a closed minute is dropped: no reopened candle, open candle intact."""
        st = cd.new_state(1, M)
        feed(st, [trade(0, T0 + 59_990, 10.0, 1.0), trade(0, T0 + M + 5, 11.0, 1.0)])
        before = snapshot(st)
        got = feed(st, [trade(0, T0 + 59_995, 99.0, 5.0)])
        assert len(got) == 0
        assert st.stats[cd.STAT_LATE] == 1
        after = snapshot(st)
        assert after.pop("stats")[cd.STAT_LATE] == 1
        before.pop("stats")
        assert all(np.array_equal(before[k], after[k]) for k in before)

    def test_book_and_mark_records_are_ignored(self):
        """BOOK and MARK records never touch a candle; they are counted as ignored."""
        st = cd.new_state(1, M)
        before = snapshot(st)
        feed(st, [(Kind.BOOK, 0, T0, 100.0, 1.0, 1, 0, 101.0, 1.0),
                  (Kind.MARK, 0, T0, 100.5, 0.0001, 0, 0, 100.4)])
        assert st.stats[cd.STAT_IGNORED] == 2
        assert np.array_equal(before["trades"], st.trades)
        assert np.array_equal(before["open_ms"], st.open_ms)

    def test_unknown_record_kind_is_ignored(self):
        """A kind byte no one defined (here 200) is counted as ignored, never shifted into UB."""
        st = cd.new_state(1, M)
        feed(st, [(200, 0, T0, 1.0, 1.0)])
        assert (st.stats[cd.STAT_IGNORED], st.trades[0, 0]) == (1, 0)

    def test_non_market_trade_is_skipped_and_counted(self):
        """An insurance-fund trade draws no wick: skipped, counted as non_market."""
        st = cd.new_state(1, M)
        feed(st, [trade(0, T0, 100.0, 1.0), trade(0, T0 + 1, 50.0, 9.0, 0, Flag.NON_MARKET)])
        assert (st.low[0, 0], st.volume[0, 0], st.stats[cd.STAT_NON_MARKET]) == (100.0, 1.0, 1)

    def test_trade_kinds_can_narrow_to_agg_trades(self):
        """With trade_kinds=(AGG_TRADE,) raw trades are ignored, so volume is never doubled."""
        st = cd.new_state(1, M, trade_kinds=(Kind.AGG_TRADE,))
        feed(st, [trade(0, T0, 100.0, 1.0), trade(0, T0, 100.0, 1.0, kind=Kind.AGG_TRADE)])
        assert (st.volume[0, 0], st.stats[cd.STAT_IGNORED]) == (1.0, 1)


class TestFirewall:
    @pytest.mark.parametrize(
        ("sid", "t", "price", "qty", "reason"),
        [
            (0, T0, math.nan, 1.0, cd.REJECT_PRICE_NONFINITE),
            (0, T0, math.inf, 1.0, cd.REJECT_PRICE_NONFINITE),
            (0, T0, -math.inf, 1.0, cd.REJECT_PRICE_NONFINITE),
            (0, T0, 0.0, 1.0, cd.REJECT_PRICE_NONPOSITIVE),
            (0, T0, -3.0, 1.0, cd.REJECT_PRICE_NONPOSITIVE),
            (0, T0, 10.0, -1.0, cd.REJECT_QTY_NEGATIVE),
            (0, T0, 10.0, math.nan, cd.REJECT_QTY_NONFINITE),
            (0, T0, 10.0, math.inf, cd.REJECT_QTY_NONFINITE),
            (0, 0, 10.0, 1.0, cd.REJECT_TIME),
            (0, -5, 10.0, 1.0, cd.REJECT_TIME),
            (2, T0, 10.0, 1.0, cd.REJECT_SYMBOL),
            (65_535, T0, 10.0, 1.0, cd.REJECT_SYMBOL),
        ],
        ids=["nan_price", "inf_price", "neg_inf_price", "zero_price", "negative_price",
             "negative_qty", "nan_qty", "inf_qty", "zero_time", "negative_time",
             "symbol_just_past_table", "symbol_far_past_table"],
    )
    def test_bad_trade_is_rejected_by_reason_and_candles_are_unchanged(
        self, sid, t, price, qty, reason
    ):
        """A malformed trade is counted under its reason and leaves every array untouched."""
        st = cd.new_state(2, M)
        feed(st, [trade(0, T0 + 10, 100.0, 1.0), trade(1, T0 + 10, 7.0, 1.0)])
        before = snapshot(st)
        got = feed(st, [trade(sid, t, price, qty)])
        assert len(got) == 0
        expected = np.zeros(cd.N_REJECTS, np.int64)
        expected[reason] = 1
        assert np.array_equal(st.rejects, expected)
        after = snapshot(st)
        assert all(np.array_equal(before[k], after[k]) for k in before)
        assert all(math.isfinite(x) for x in st.close.ravel())

    def test_nan_between_good_trades_never_reaches_the_candle(self):
        """A NaN in the middle of a batch is skipped; the candle is that of the good trades."""
        st = cd.new_state(1, M)
        feed(st, [trade(0, T0, 10.0, 1.0), trade(0, T0 + 1, math.nan, 1.0),
                  trade(0, T0 + 2, 12.0, math.nan), trade(0, T0 + 3, 11.0, 1.0)])
        c = feed(st, [trade(0, T0 + M, 1.0, 1.0)])[0]
        assert (c["high"], c["low"], c["close"], c["volume"], c["trades"]) == (
            11.0, 10.0, 11.0, 2.0, 2)
        assert st.rejects.sum() == 2


class TestFlushDue:
    def test_flush_closes_only_after_bucket_end_plus_grace(self):
        """A quiet symbol's candle closes on the timer once its minute ended grace ago."""
        st = cd.new_state(2, M)
        feed(st, [trade(0, T0 + 10, 5.0, 1.0), trade(1, T0 + M + 10, 6.0, 1.0)])
        assert len(flush(st, T0 + M + 999, 1_000)) == 0
        got = flush(st, T0 + M + 1_000, 1_000)
        assert [(int(c["symbol_id"]), int(c["open_ms"]), int(c["closed_by"])) for c in got] == [
            (0, T0, cd.CLOSED_BY_FLUSH)]
        assert len(flush(st, T0 + M + 1_000, 1_000)) == 0  # idempotent: closed once
        assert st.stats[cd.STAT_WATERMARK_MS] == T0 + M
        assert cd.flush_due(st, T0 + 2 * M + cd.FLUSH_GRACE_MS) == 1  # default grace

    def test_trade_for_a_flushed_bucket_is_late(self):
        """After the timer closed a minute, a straggler for it is late; the next minute is not."""
        st = cd.new_state(1, M)
        feed(st, [trade(0, T0 + 10, 5.0, 1.0)])
        flush(st, T0 + M + 2_000, 2_000)
        assert len(feed(st, [trade(0, T0 + 59_000, 9.0, 1.0)])) == 0
        assert st.stats[cd.STAT_LATE] == 1 and st.trades[0, 0] == 0
        feed(st, [trade(0, T0 + M + 2_500, 7.0, 1.0)])
        assert (st.open_ms[0, 0], st.open[0, 0], st.trades[0, 0]) == (T0 + M, 7.0, 1)

    def test_watermark_is_global_across_symbols(self):
        """A symbol with no candle still may not start one in a minute the timer declared final."""
        st = cd.new_state(2, M)
        flush(st, T0 + M + 2_000, 2_000)
        feed(st, [trade(1, T0 + 30_000, 9.0, 1.0)])
        assert (st.stats[cd.STAT_LATE], st.trades[0, 1]) == (1, 0)

    def test_flush_is_deterministic_given_now(self):
        """Two states fed the same trades and flushed at the same times close the same candles:
        one 1 m candle per (symbol, minute) with a trade, 107, and the 4 symbols' two 15 m ones."""
        outs = []
        trades = [trade(i % 4, T0 + 7_919 * i, 1.0 + i, 1.0) for i in range(200)]
        for _ in range(2):
            st = cd.new_state(4)
            got = [feed(st, trades)]
            got += [flush(st, T0 + k * 250_000) for k in range(10)]
            outs.append(np.concatenate(got))
        assert np.array_equal(outs[0], outs[1])
        minutes_with_trades = len({(i % 4, (7_919 * i) // M) for i in range(200)})
        assert minutes_with_trades == 107
        assert (outs[0]["interval_ms"] == M).sum() == minutes_with_trades
        assert (outs[0]["interval_ms"] == 15 * M).sum() == 8

    def test_watermark_never_moves_back(self):
        """A flush with an older now_ms does not lower the watermark."""
        st = cd.new_state(1, M)
        flush(st, T0 + 10 * M, 0)
        flush(st, T0, 0)
        assert st.stats[cd.STAT_WATERMARK_MS] == T0 + 10 * M


class TestOutputBuffer:
    def test_output_buffer_is_reused_from_slot_zero_after_reset(self):
        """After reset_output the next close lands in slot 0 of the same array."""
        st = cd.new_state(1, M, 8)
        out_id = id(st.out)
        recs = make_records([trade(0, T0 + k * M, 1.0 + k, 1.0) for k in range(3)])
        assert cd.update_candles(st, recs, 3) == 2
        assert [float(x) for x in cd.closed(st)["open"]] == [1.0, 2.0]
        cd.reset_output(st)
        assert len(cd.closed(st)) == 0
        recs2 = make_records([trade(0, T0 + 3 * M, 9.0, 1.0)])
        assert cd.update_candles(st, recs2, 1) == 1
        assert id(st.out) == out_id and st.out[0]["open"] == 3.0

    def test_update_respects_n_and_ignores_the_rest_of_the_batch(self):
        """Only batch[:n] is read; records past n are not looked at."""
        st = cd.new_state(1, M)
        recs = make_records([trade(0, T0, 1.0, 1.0), trade(0, T0 + M, 2.0, 1.0)])
        assert cd.update_candles(st, recs, 1) == 0
        assert st.stats[cd.STAT_TRADES] == 1

    def test_full_buffer_drops_and_counts_instead_of_overflowing(self):
        """With a 2-slot buffer and no reset, the third close is counted as dropped."""
        st = cd.new_state(1, M, 2)
        recs = make_records([trade(0, T0 + k * M, 1.0, 1.0) for k in range(5)])
        assert cd.update_candles(st, recs, 5) == 2
        assert (st.stats[cd.STAT_OUT_DROPPED], st.stats[cd.STAT_CLOSED]) == (2, 4)

    def test_new_state_rejects_a_coarse_interval_that_is_not_a_multiple(self):
        """Roll-up needs nested buckets: 90 s over a 60 s base is refused."""
        with pytest.raises(ConfigError):
            cd.new_state(1, (M, 90_000))
        with pytest.raises(ConfigError):
            cd.new_state(1, (Q, M))


def aggregate(ones):
    """Left fold of 1 m candles into one candle, the way a reader would aggregate them."""
    o = ones[0]
    agg = {"open": o["open"], "high": o["high"], "low": o["low"], "volume": o["volume"],
           "quote_volume": o["quote_volume"], "buy_volume": o["buy_volume"],
           "trades": o["trades"], "first_id": o["first_id"]}
    for c in ones[1:]:
        agg["high"] = max(agg["high"], c["high"])
        agg["low"] = min(agg["low"], c["low"])
        for f in ("volume", "quote_volume", "buy_volume", "trades"):
            agg[f] = agg[f] + c[f]
    agg["close"] = ones[-1]["close"]
    agg["last_id"] = ones[-1]["last_id"]
    return agg


def check_15m_equals_1m(out):
    ones = defaultdict(list)
    for c in out[out["interval_ms"] == M]:
        ones[(int(c["symbol_id"]), int(c["open_ms"]) // Q * Q)].append(c)
    quarters = out[out["interval_ms"] == Q]
    assert len(quarters) > 0
    for c in quarters:
        key = (int(c["symbol_id"]), int(c["open_ms"]))
        agg = aggregate(ones.pop(key))
        for f, v in agg.items():
            assert c[f] == v, (key, f)  # exact: same float sums in the same order
        assert c["close_ms"] == c["open_ms"] + Q - 1
    return ones  # 1 m candles of quarters still open


class TestRollUp:
    def test_15m_candles_equal_the_aggregate_of_their_1m_candles(self):
        """Random trades over 2 h on 3 symbols: every 15 m candle is the fold of its 1 m ones."""
        rng = random.Random(7)
        st = cd.new_state(3)
        clocks = [T0 + 17, T0 + 3_000, T0 + 40_000]
        rows = []
        for i in range(6_000):
            sid = rng.randrange(3)
            clocks[sid] += rng.choice((0, 1, 50, 700, 4_000, 95_000))
            rows.append(trade(sid, clocks[sid], round(rng.uniform(90, 110), 1),
                              round(rng.uniform(0, 3), 3), i, SELL if rng.random() < .5 else 0))
        out = np.concatenate([feed(st, rows[j:j + 500]) for j in range(0, len(rows), 500)]
                             + [flush(st, max(clocks) + 10 * Q)])
        assert check_15m_equals_1m(out) == {}
        assert st.stats[cd.STAT_INCONSISTENT] == 0

    def test_15m_candle_closes_right_after_its_last_1m_candle(self):
        """The trade that ends a quarter closes its last minute and the quarter, in that order."""
        st = cd.new_state(1)
        feed(st, [trade(0, T0 + 5, 1.0, 1.0), trade(0, T0 + 14 * M + 5, 2.0, 1.0)])
        got = feed(st, [trade(0, T0 + Q, 3.0, 1.0)])
        assert [(int(c["interval_ms"]), int(c["open_ms"])) for c in got] == [
            (M, T0 + 14 * M), (Q, T0)]
        assert (got[1]["open"], got[1]["close"], got[1]["volume"]) == (1.0, 2.0, 2.0)

    def test_straggler_inside_a_flushed_quarter_is_late_for_both_levels(self):
        """After a quarter was flushed, a trade in its never-traded last minute is late."""
        st = cd.new_state(1)
        feed(st, [trade(0, T0 + 5 * M, 1.0, 1.0)])
        got = flush(st, T0 + Q + 2_000)
        assert [int(c["interval_ms"]) for c in got] == [M, Q]
        feed(st, [trade(0, T0 + 14 * M + 59_000, 9.0, 1.0)])
        assert st.stats[cd.STAT_LATE] == 1
        assert st.stats[cd.STAT_INCONSISTENT] == 0


class TestRealCapture:
    def test_1m_candles_match_an_independent_aggregation_of_the_capture(self, capture):
        """BTCUSDT 2024-08-08: five closed minutes, every field equal to a groupby on T."""
        st = cd.new_state(1)
        recs = capture.records
        out = []
        for j in range(0, len(recs), 1_000):  # batch sizes as the ring reader would hand them
            batch = recs[j:j + 1_000]
            n = cd.update_candles(st, batch, len(batch))
            out.append(st.out[:n].copy())
            cd.reset_output(st)
        got = only_1m(np.concatenate(out))

        minutes: dict[int, list] = defaultdict(list)
        for tr in capture.trades:
            minutes[tr.t // M * M].append(tr)
        closed_minutes = sorted(minutes)[:-1]  # the last minute has no later trade yet
        assert len(capture.trades) == 21_313
        assert len(got) == len(closed_minutes) == 5
        for c, m in zip(got, closed_minutes):
            trs = minutes[m]
            assert c["open_ms"] == m and c["close_ms"] == m + M - 1
            assert c["open"] == trs[0].price and c["close"] == trs[-1].price
            assert c["high"] == max(t.price for t in trs)
            assert c["low"] == min(t.price for t in trs)
            assert c["volume"] == sum(t.qty for t in trs)
            assert c["quote_volume"] == sum(t.price * t.qty for t in trs)
            assert c["buy_volume"] == sum(t.qty for t in trs if not t.buyer_is_maker)
            assert c["trades"] == len(trs)
            assert (c["first_id"], c["last_id"]) == (trs[0].tid, trs[-1].tid)
        assert st.stats[cd.STAT_TRADES] == 21_313
        assert st.stats[cd.STAT_IGNORED] == len(recs) - 21_313  # the book tickers
        assert st.stats[cd.STAT_LATE] == 0 and st.rejects.sum() == 0

    def test_flush_at_the_end_of_the_capture_closes_the_last_minute_and_quarter(self, capture):
        """The timer closes 23:59 and the 23:45 quarter, which then holds every trade."""
        st = cd.new_state(1)
        cd.update_candles(st, capture.records, len(capture.records))
        cd.reset_output(st)
        got = flush(st, capture.trades[-1].t + M + cd.FLUSH_GRACE_MS)
        last_m = capture.trades[-1].t // M * M
        assert [(int(c["interval_ms"]), int(c["open_ms"])) for c in got] == [
            (M, last_m), (Q, last_m // Q * Q)]
        q = got[1]
        assert q["trades"] == 21_313
        assert q["high"] == max(t.price for t in capture.trades)
        assert q["low"] == min(t.price for t in capture.trades)
        assert q["volume"] == pytest.approx(sum(t.qty for t in capture.trades), rel=1e-12)
