"""Streaming end to end: every channel (trade, bookTicker, markPrice@1s, kline_1m) over several
connections, the proactive rollover before Binance's 24-hour disconnect with no gap and no
duplicate in the ring, and 300 symbols split over six connections of 200 streams."""

from __future__ import annotations

import numpy as np
import pytest

from common import bus, wire
from common.records import Kind
from tests.integration.test_feed_faults import FeedProc, SimProc, wait_until

pytestmark = pytest.mark.integration

CHANNELS = "trade,bookTicker,markPrice@1s,kline_1m"


def _per_symbol(recs: np.ndarray, kind: Kind, field: str) -> dict[int, np.ndarray]:
    sel = recs[recs["kind"] == int(kind)]
    return {int(s): sel[sel["symbol_id"] == s][field] for s in np.unique(sel["symbol_id"])}


def test_rollover_under_load_leaves_no_gap_and_no_duplicate_in_the_ring(procs, short_tmp):
    """30 symbols x 4 channels on 3 connections, each replaced every ~2 s while the sim plays at
    2x: the ring holds every trade id once, contiguous and increasing per symbol, book update
    ids and mark times strictly increasing, and the overlaps' copies were dropped as duplicates."""
    sim = SimProc(procs, short_tmp / "sim.log", symbols=30, speed=2.0)
    feed = FeedProc(procs, short_tmp, sim.port, AEGIS_FEED__MAX_SYMBOLS="30",
                    AEGIS_FEED__CHANNELS=CHANNELS, AEGIS_FEED__STREAMS_PER_CONNECTION="40",
                    AEGIS_FEED__ROLLOVER_S="2", AEGIS_FEED__HYDRATE_CANDLES="0")
    try:
        feed.wait_ready()
        feed.wait_for(lambda s: min(c["rollovers"] for c in s["connection_detail"]) >= 3,
                      "three rollovers on every connection", timeout_s=60)
        s = feed.stop()
        assert s["connections"] == 3 and [c["streams"] for c in s["connection_detail"]] == [40, 40, 40]
        assert s["reconnects"] == 0 and s["rollover_failures"] == 0
        assert s["gaps"] == 0 and s["sequence_resets"] == 0 and s["rejected"] == {}
        assert s["duplicates"] > 0  # the overlaps happened, and their copies were dropped
        assert set(s["duplicates_by_event"]) <= {"trade", "bookTicker", "markPriceUpdate", "kline"}
        recs = feed.records()
        assert len(recs) == s["ticks_written"] == feed.ring.counters()["written"]
        trades = _per_symbol(recs, Kind.TRADE, "id")
        books = _per_symbol(recs, Kind.BOOK, "id")
        marks = _per_symbol(recs, Kind.MARK, "event_ms")
        assert len(trades) == len(books) == len(marks) == 30
        for sid in range(30):
            assert np.all(np.diff(trades[sid]) == 1), sid  # contiguous: no gap, no duplicate
            assert np.all(np.diff(books[sid]) > 0), sid
            assert np.all(np.diff(marks[sid]) > 0), sid
        assert sum(len(v) for v in trades.values()) == s["accepted"]["trade"]
        assert sum(len(v) for v in marks.values()) == s["accepted"]["markPriceUpdate"]
        assert s["accepted"]["kline"] > 0
    finally:
        feed.ring.close()


def test_300_symbols_with_every_channel_stream_over_six_connections(procs, short_tmp):
    """300 discovered symbols x 4 channels = 1200 streams on 6 connections of 200 (the sim
    sees the same); marks reach the ring for every symbol, klines are counted."""
    sim = SimProc(procs, short_tmp / "sim.log", symbols=300, speed=0.25)
    feed = FeedProc(procs, short_tmp, sim.port, AEGIS_FEED__MAX_SYMBOLS="300",
                    AEGIS_FEED__CHANNELS=CHANNELS, AEGIS_FEED__HYDRATE_CANDLES="0",
                    AEGIS_FEED__ROLLOVER_S="0")
    sub = None
    try:
        feed.wait_ready()
        sub = bus.Subscriber([feed.endpoints.feed_pub], [wire.EventType.FEED_STATUS])
        feed.wait_for(lambda s: s["accepted"].get("markPriceUpdate", 0) >= 600 and s["accepted"].get("kline"),
                      "marks and klines from every connection", timeout_s=60)
        status = wait_until(lambda: next((e.body for e in sub.drain() if e.body.connections == 6), None),
                            "FEED_STATUS with six live connections")
        assert (status.state, status.symbols) == ("STREAMING", 300)
        conns = sim.stats()["connections"]
        assert sorted(c["streams"] for c in conns) == [200] * 6
        s = feed.stop()
        assert (s["symbols"], s["streams"], s["connections"]) == (300, 1200, 6)
        assert [c["streams"] for c in s["connection_detail"]] == [200] * 6
        assert s["rejected"] == {} and s["gaps"] == 0 and s["reconnects"] == 0
        recs = feed.records()
        assert len(feed.names()) == 300
        assert len(np.unique(recs[recs["kind"] == int(Kind.MARK)]["symbol_id"])) == 300
        assert np.count_nonzero(recs["kind"] == int(Kind.BOOK)) == s["accepted"]["bookTicker"]
        assert np.count_nonzero(recs["kind"] == int(Kind.TRADE)) == s["accepted"]["trade"]
        assert len(recs) == s["ticks_written"]
    finally:
        if sub is not None:
            sub.close()
        feed.ring.close()
