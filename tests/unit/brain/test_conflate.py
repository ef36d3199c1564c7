"""Conflation buffer: latest tick per symbol, dirty tracking, firewall, conflated counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tick_rows import make_records

from common.records import Flag, Kind
from common.wire import TickUpdate
from services.brain import conflate as cf

T0 = 1_723_161_600_000


def tr(sid, t, p, q, flags=0):
    return (Kind.TRADE, sid, t, p, q, 0, flags)


def book(sid, t, bid, bq, ask, aq):
    return (Kind.BOOK, sid, t, bid, bq, 0, 0, ask, aq)


def mark(sid, t, m, funding=0.0001, index=0.0):
    return (Kind.MARK, sid, t, m, funding, 0, 0, index)


def feed(state, rows):
    recs = make_records(rows)
    return cf.update_conflated(state, recs, len(recs))


def arrays(state):
    return {f: np.copy(getattr(state, f)) for f in cf.ConflateState._fields
            if f not in ("stats", "rejects")}


class TestLatestState:
    def test_latest_trade_book_and_mark_are_kept_per_symbol(self):
        """Each group keeps its latest values; other symbols are untouched."""
        st = cf.new_state(4)
        feed(st, [tr(2, T0, 100.0, 1.0), tr(2, T0 + 5, 101.0, 0.5),
                  book(2, T0 + 6, 100.9, 3.0, 101.1, 4.0), mark(2, T0 + 7, 100.95),
                  book(1, T0, 5.0, 1.0, 5.1, 1.0)])
        f = cf.tick_fields(st, 2)
        assert f == {"event_ms": T0 + 7, "last_price": 101.0, "last_qty": 0.5, "bid": 100.9,
                     "bid_qty": 3.0, "ask": 101.1, "ask_qty": 4.0, "mark": 100.95,
                     "synthetic": False}
        assert cf.tick_fields(st, 1)["last_price"] == 0.0
        assert st.last_price[0] == 0.0 and st.dirty[0] == 0

    def test_tick_fields_build_a_valid_tick_update(self):
        """The fields are exactly what the wire's TickUpdate takes."""
        st = cf.new_state(1)
        feed(st, [tr(0, T0, 100.0, 1.0, Flag.SYNTHETIC)])
        msg = TickUpdate(symbol="BTCUSDT", **cf.tick_fields(st, 0))
        assert msg.last_price == 100.0 and msg.synthetic is True

    def test_stale_update_is_dropped_and_counted(self):
        """A book update older than the one held cannot roll the state back."""
        st = cf.new_state(1)
        feed(st, [book(0, T0 + 10, 10.0, 1.0, 10.1, 1.0), book(0, T0 + 9, 9.0, 1.0, 9.1, 1.0),
                  book(0, T0 + 10, 10.05, 2.0, 10.1, 1.0)])
        assert (st.bid[0], st.bid_qty[0], st.stats[cf.STAT_STALE]) == (10.05, 2.0, 1)

    def test_non_market_trade_does_not_set_last_price(self):
        """An insurance-fund print is skipped and counted, the last price stays the market's."""
        st = cf.new_state(1)
        feed(st, [tr(0, T0, 100.0, 1.0), tr(0, T0 + 1, 60.0, 5.0, Flag.NON_MARKET)])
        assert (st.last_price[0], st.stats[cf.STAT_NON_MARKET]) == (100.0, 1)


class TestDirtyAndDrain:
    def test_symbol_updated_many_times_is_drained_once_and_the_rest_counted_conflated(self):
        """100 updates on one symbol and 1 on another: 2 published, 99 conflated away."""
        st = cf.new_state(8)
        assert feed(st, [tr(5, T0 + i, 100.0 + i, 1.0) for i in range(100)]
                    + [tr(3, T0, 1.0, 1.0)]) == 2
        ids = cf.drain_dirty(st)
        assert ids.tolist() == [5, 3]  # first-change order
        assert (st.stats[cf.STAT_UPDATES], st.stats[cf.STAT_FLUSHED]) == (101, 2)
        assert cf.conflated(st) == 99
        assert st.last_price[5] == 199.0

    def test_drain_clears_flags_so_a_second_drain_is_empty(self):
        """Nothing changed since the last drain means nothing to publish."""
        st = cf.new_state(4)
        feed(st, [tr(1, T0, 1.0, 1.0)])
        assert cf.drain_dirty(st).tolist() == [1]
        assert cf.drain_dirty(st).tolist() == []
        assert not st.dirty.any()
        feed(st, [tr(1, T0 + 1, 2.0, 1.0)])
        assert cf.drain_dirty(st).tolist() == [1]

    def test_pending_updates_are_not_counted_as_conflated(self):
        """Before the drain, updates waiting to be published are not yet 'conflated away'."""
        st = cf.new_state(2)
        feed(st, [tr(0, T0, 1.0, 1.0), tr(0, T0 + 1, 2.0, 1.0)])
        assert cf.conflated(st) == 1
        cf.drain_dirty(st)
        assert cf.conflated(st) == 1
        assert cf.stats_dict(st)["conflated"] == 1


class TestFirewall:
    @pytest.mark.parametrize(
        ("row", "reason"),
        [
            (tr(0, T0, math.nan, 1.0), cf.REJECT_PRICE),
            (tr(0, T0, 0.0, 1.0), cf.REJECT_PRICE),
            (tr(0, T0, 1.0, -1.0), cf.REJECT_QTY),
            (tr(0, T0, 1.0, math.inf), cf.REJECT_QTY),
            (book(0, T0, math.nan, 1.0, 10.0, 1.0), cf.REJECT_PRICE),
            (book(0, T0, 9.0, 1.0, -math.inf, 1.0), cf.REJECT_PRICE),
            (book(0, T0, 9.0, -2.0, 10.0, 1.0), cf.REJECT_QTY),
            (book(0, T0, 9.0, 1.0, 10.0, math.nan), cf.REJECT_QTY),
            (book(0, T0, 10.0, 1.0, 10.0, 1.0), cf.REJECT_CROSSED),
            (book(0, T0, 10.5, 1.0, 10.0, 1.0), cf.REJECT_CROSSED),
            (mark(0, T0, math.nan), cf.REJECT_PRICE),
            (mark(0, T0, -1.0), cf.REJECT_PRICE),
            (tr(3, T0, 1.0, 1.0), cf.REJECT_SYMBOL),
            (tr(0, 0, 1.0, 1.0), cf.REJECT_TIME),
        ],
        ids=["trade_nan_price", "trade_zero_price", "trade_negative_qty", "trade_inf_qty",
             "book_nan_bid", "book_neg_inf_ask", "book_negative_bid_qty", "book_nan_ask_qty",
             "book_locked", "book_crossed", "mark_nan", "mark_negative", "symbol_past_table",
             "zero_time"],
    )
    def test_bad_update_is_rejected_by_reason_and_changes_nothing(self, row, reason):
        """A malformed update is counted under its reason; no array changes, nothing dirty."""
        st = cf.new_state(3)
        before = arrays(st)
        assert feed(st, [row]) == 0
        expected = np.zeros(cf.N_REJECTS, np.int64)
        expected[reason] = 1
        assert np.array_equal(st.rejects, expected)
        after = arrays(st)
        assert all(np.array_equal(before[k], after[k]) for k in before)

    def test_negative_funding_rate_in_a_mark_record_is_fine(self):
        """Funding can be negative; only the mark price is checked."""
        st = cf.new_state(1)
        feed(st, [mark(0, T0, 100.0, funding=-0.0003)])
        assert (st.mark[0], st.rejects.sum()) == (100.0, 0)


class TestRealCapture:
    def test_capture_leaves_the_last_trade_and_book_of_the_day(self, capture):
        """Replaying BTCUSDT: one dirty symbol, state equal to the last trade and book ticker."""
        st = cf.new_state(1)
        recs = capture.records
        for j in range(0, len(recs), 4_096):
            b = recs[j:j + 4_096]
            cf.update_conflated(st, b, len(b))
        last = capture.trades[-1]
        t, bid, bq, ask, aq = capture.last_book
        assert (st.last_price[0], st.last_qty[0], st.trade_ms[0]) == (last.price, last.qty, last.t)
        assert (st.bid[0], st.bid_qty[0], st.ask[0], st.book_ms[0]) == (bid, bq, ask, t)
        assert st.ask_qty[0] == np.float32(aq)  # aux_qty is float32 in the record
        assert st.rejects.sum() == 0 and st.stats[cf.STAT_STALE] == 0
        assert cf.drain_dirty(st).tolist() == [0]
        assert cf.conflated(st) == len(recs) - 1
