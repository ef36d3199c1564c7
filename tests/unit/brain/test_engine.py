"""The brain's per-batch core: order check, latency, candles and conflation together."""

from __future__ import annotations

import numpy as np

from common import records
from common.records import Kind
from services.brain import candles, engine


def batch_of(rows):
    b = records.empty(len(rows))
    for i, (sid, kind, rid, price, ev_ms, recv_ns) in enumerate(rows):
        b[i]["symbol_id"], b[i]["kind"], b[i]["id"] = sid, kind, rid
        b[i]["price"], b[i]["qty"], b[i]["event_ms"], b[i]["recv_ns"] = price, 1.0, ev_ms, recv_ns
        if kind == Kind.BOOK:
            b[i]["aux"], b[i]["aux_qty"] = price + 1, 1.0
    return b


class TestCheckOrder:
    def test_increasing_ids_per_stream_are_in_order(self):
        """Trade ids 1,2,3 on one symbol and 1,2 on another are all in order."""
        core = engine.new_core(base_interval_ms=60_000, batch=16)
        b = batch_of([(0, Kind.TRADE, 1, 10, 1, 0), (1, Kind.TRADE, 1, 10, 1, 0),
                      (0, Kind.TRADE, 2, 10, 1, 0), (1, Kind.TRADE, 2, 10, 1, 0), (0, Kind.TRADE, 3, 10, 1, 0)])
        assert engine.check_order(core.last_id, core.order_stats, b, len(b)) == 0
        assert core.order_stats.tolist() == [5, 0]

    def test_repeated_or_decreasing_id_is_counted(self):
        """A duplicate id and a step back are two violations."""
        core = engine.new_core(base_interval_ms=60_000, batch=16)
        b = batch_of([(0, Kind.TRADE, 5, 10, 1, 0), (0, Kind.TRADE, 5, 10, 1, 0), (0, Kind.TRADE, 4, 10, 1, 0)])
        assert engine.check_order(core.last_id, core.order_stats, b, len(b)) == 2

    def test_trade_and_book_ids_are_separate_streams(self):
        """A book update id lower than the last trade id is not a violation."""
        core = engine.new_core(base_interval_ms=60_000, batch=16)
        b = batch_of([(0, Kind.TRADE, 100, 10, 1, 0), (0, Kind.BOOK, 7, 10, 1, 0)])
        assert engine.check_order(core.last_id, core.order_stats, b, len(b)) == 0


class TestProcessBatch:
    def test_every_record_gets_a_latency_sample(self):
        """Latency = now - recv_ns for each record (10, 9, 8 and 7 ms), all counted in the histogram."""
        core = engine.new_core(base_interval_ms=60_000, batch=16)
        b = batch_of([(0, Kind.TRADE, i + 1, 10, 1_000, 1_000_000 * i) for i in range(4)])
        engine.process_batch(core, b, 4, now_ns=10_000_000)
        assert (core.latency.count, core.latency.max, core.latency.min) == (4, 10_000_000, 7_000_000)

    def test_minute_rollover_closes_one_candle(self):
        """Trades in minute 0 then one in minute 1 close exactly one 1 m candle."""
        core = engine.new_core(base_interval_ms=60_000, batch=16)
        b = batch_of([(0, Kind.TRADE, 1, 10.0, 60_000, 0), (0, Kind.TRADE, 2, 12.0, 60_500, 0),
                      (0, Kind.TRADE, 3, 11.0, 120_000, 0)])
        assert engine.process_batch(core, b, 3, now_ns=1) == 1
        c = candles.closed(core.candles)[0]
        assert (c["open"], c["high"], c["low"], c["close"], c["trades"]) == (10.0, 12.0, 10.0, 12.0, 2)

    def test_nan_price_is_rejected_by_the_secondary_gate(self):
        """A NaN price that slipped past the feed is refused once by each gate (candles and
        conflation, 2 in all) as a price rejection, and never reaches a candle."""
        core = engine.new_core(base_interval_ms=60_000, batch=16)
        b = batch_of([(0, Kind.TRADE, 1, np.nan, 60_000, 0)])
        engine.process_batch(core, b, 1, now_ns=1)
        assert engine.rejected(core) == 2
        assert core.candles.rejects.tolist() == [0, 1, 0, 0, 0, 0]  # price_nonfinite
        assert core.conflate.rejects.tolist() == [0, 1, 0, 0, 0]  # price
        assert core.candles.trades[0, 0] == 0
