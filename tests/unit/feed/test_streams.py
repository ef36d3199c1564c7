"""Subscription planning and reconnect backoff."""

from __future__ import annotations

import json
import random

import pytest

from common.errors import ConfigError
from services.feed import codec, sequencer, streams


class TestPlanConnections:
    def test_300_symbols_two_channels_fit_in_three_connections(self):
        """600 streams at 200 a connection need exactly 3 connections, none over the limit."""
        names = streams.stream_names([f"S{i}USDT" for i in range(300)], ["trade", "bookTicker"])
        plan = streams.plan_connections(names, 200)
        assert len(plan) == 3
        assert all(len(g) <= 200 for g in plan)
        assert sorted(s for g in plan for s in g) == sorted(names)

    def test_symbol_streams_stay_on_one_connection(self):
        """A symbol's trade and book streams share a connection when they fit."""
        names = streams.stream_names(["AUSDT", "BUSDT", "CUSDT"], ["trade", "bookTicker", "markPrice"])
        plan = streams.plan_connections(names, 4)
        for g in plan:
            syms = {s.split("@")[0] for s in g}
            for sym in syms:
                assert sum(s.startswith(sym + "@") for s in names) == sum(s.startswith(sym + "@") for s in g)

    def test_names_are_lower_case_binance_style(self):
        """Binance stream names use the lower-case symbol."""
        assert streams.stream_names(["BTCUSDT"], ["trade"]) == ["btcusdt@trade"]

    def test_combined_url(self):
        """Streams join with '/' under /stream?streams=."""
        assert streams.combined_url("ws://h:1/", ["a@trade", "b@trade"]) == "ws://h:1/stream?streams=a@trade/b@trade"

    def test_combined_url_on_a_routed_path(self):
        assert streams.combined_url("wss://h", ["a@bookTicker"], "public") == "wss://h/public/stream?streams=a@bookTicker"

    def test_routed_plan_puts_book_and_market_streams_on_their_own_paths(self):
        names = streams.stream_names([f"S{i}USDT" for i in range(150)], ["trade", "bookTicker"])
        plan = streams.plan_routed(names, 200, routed=True)
        assert [(r, len(g)) for r, g in plan] == [("public", 150), ("market", 150)]
        assert all(n.endswith("@bookTicker") for n in plan[0][1])
        assert sorted(n for _, g in plan for n in g) == sorted(names)  # each stream exactly once

    def test_routed_plan_splits_each_path_at_the_limit(self):
        names = streams.stream_names([f"S{i}USDT" for i in range(300)], ["trade", "bookTicker", "markPrice@1s"])
        plan = streams.plan_routed(names, 200, routed=True)
        assert [(r, len(g)) for r, g in plan] == [("public", 200), ("public", 100), ("market", 200),
                                                   ("market", 200), ("market", 200)]

    def test_unrouted_plan_is_the_plain_plan(self):
        names = streams.stream_names(["AUSDT", "BUSDT"], ["trade", "bookTicker"])
        assert streams.plan_routed(names, 200, routed=False) == [("", names)]

    def test_zero_per_connection_is_refused(self):
        """A plan with no room per connection (feed.streams_per_connection 0) is a ConfigError."""
        with pytest.raises(ConfigError, match="per_connection"):
            streams.plan_connections(["a@trade"], 0)


class TestBackoff:
    def test_backoff_doubles_with_jitter_within_bounds(self):
        """Attempt n waits between half and all of min(max, initial * 2^(n-1))."""
        rng = random.Random(7)
        for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (20, 30.0)):
            d = streams.backoff_s(attempt, initial_s=1.0, max_s=30.0, rng=rng)
            assert full / 2 <= d <= full

    def test_no_attempt_no_wait(self):
        """Attempt 0 (first connect) does not wait."""
        assert streams.backoff_s(0) == 0.0


CHANNELS4 = ["trade", "bookTicker", "markPrice@1s", "kline_1m"]


class TestPlanAtScale:
    def test_300_symbols_four_channels_fill_six_connections_of_200(self):
        """1200 streams (300 symbols x 4 channels) make 6 connections of exactly 200 streams."""
        names = streams.stream_names([f"S{i:03d}USDT" for i in range(300)], CHANNELS4)
        plan = streams.plan_connections(names, 200)
        assert [len(g) for g in plan] == [200] * 6
        assert sorted(s for g in plan for s in g) == sorted(names)

    def test_300_symbols_three_channels_never_split_a_symbol(self):
        """900 streams in groups of whole symbols: 66 symbols (198 streams) a connection, 5 in all."""
        names = streams.stream_names([f"S{i:03d}USDT" for i in range(300)], CHANNELS4[:3])
        plan = streams.plan_connections(names, 200)
        assert [len(g) for g in plan] == [198, 198, 198, 198, 108]
        for g in plan:
            syms = {s.split("@")[0] for s in g}
            assert len(g) == 3 * len(syms)

    def test_mark_price_at_1s_keeps_its_suffix_in_the_stream_name(self):
        """markPrice@1s is one channel: 'btcusdt@markPrice@1s', grouped with the symbol's other streams."""
        names = streams.stream_names(["BTCUSDT"], ["trade", "markPrice@1s"])
        assert names == ["btcusdt@trade", "btcusdt@markPrice@1s"]
        assert streams.plan_connections(names, 2) == [names]


class TestRollover:
    def test_rollover_comes_up_to_two_percent_early(self):
        """The replacement is scheduled between 98 % and 100 % of rollover_s."""
        rng = random.Random(3)
        for _ in range(100):
            d = streams.rollover_delay_s(1000.0, rng)
            assert 980.0 <= d <= 1000.0

    def test_rollover_zero_means_never(self):
        """rollover_s = 0 turns rollover off."""
        assert streams.rollover_delay_s(0.0) == float("inf")

    def test_handover_waits_for_a_shared_frame(self):
        """Not ready while the old connection has delivered none of the held-back frames."""
        assert streams.handover_ready([1, 2, 3], lambda f: False) is False

    def test_handover_ready_once_any_early_frame_was_delivered(self):
        """One held-back frame already seen on the old connection is enough."""
        assert streams.handover_ready([None, 7, 8], lambda f: None if f is None else f == 8) is True

    def test_frames_without_position_prove_nothing(self):
        """Rejections and klines (no position) never make a handover ready."""
        assert streams.handover_ready(["x", "y"], lambda f: None) is False

    def test_handover_scans_only_the_first_frames(self):
        """Only the first ``scan`` held-back frames are looked at."""
        backlog = [0] * 5 + [1]
        assert streams.handover_ready(backlog, lambda f: f == 1, scan=5) is False
        assert streams.handover_ready(backlog, lambda f: f == 1, scan=6) is True


E0 = 1_723_161_256_000
SYMS = {"BTCUSDT": 0}


def _trade(t: int, e_ms: int) -> bytes:
    return json.dumps({"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": e_ms, "T": e_ms, "s": "BTCUSDT", "t": t, "p": "100.0", "q": "1.0",
        "X": "MARKET", "m": False}}).encode()


def _mark(e_ms: int) -> bytes:
    return json.dumps({"stream": "btcusdt@markPrice@1s", "data": {
        "e": "markPriceUpdate", "E": e_ms, "s": "BTCUSDT", "p": "100.0", "P": "100.0",
        "i": "100.0", "r": "0.0001", "T": e_ms + 3_600_000}}).encode()


def _kline(e_ms: int, open_ms: int, n: int, closed: bool) -> bytes:
    return json.dumps({"stream": "btcusdt@kline_1m", "data": {"e": "kline", "E": e_ms, "s": "BTCUSDT", "k": {
        "t": open_ms, "T": open_ms + 59_999, "s": "BTCUSDT", "i": "1m", "f": 1, "L": n,
        "o": "1", "c": "1", "h": "1", "l": "1", "v": "1", "n": n, "x": closed, "q": "1",
        "V": "1", "Q": "1", "B": "0"}}}).encode()


def _decoded(raw: bytes) -> codec.Result:
    return codec.decode(raw, None, SYMS)


def _state_after(*frames: bytes) -> sequencer.SeqState:
    st = sequencer.new_state()
    for f in frames:
        sequencer.sequence(st, _decoded(f))
    return st


class TestPositions:
    def test_trade_delivered_when_the_state_reached_its_id(self):
        """A trade id at or below the stream's last id was delivered; above it was not."""
        st = _state_after(_trade(10, E0), _trade(11, E0 + 1))
        assert sequencer.delivered(st, _decoded(_trade(11, E0 + 1))) is True
        assert sequencer.delivered(st, _decoded(_trade(12, E0 + 2))) is False

    def test_mark_position_is_its_event_time(self):
        """Marks carry no id: their event time is their position."""
        st = _state_after(_mark(E0))
        assert sequencer.delivered(st, _decoded(_mark(E0))) is True
        assert sequencer.delivered(st, _decoded(_mark(E0 + 1000))) is False

    def test_unseen_stream_is_not_delivered_and_events_have_no_position(self):
        """A stream the state never saw is not delivered; a kline (EVENT) has no position."""
        st = sequencer.new_state()
        assert sequencer.delivered(st, _decoded(_trade(1, E0))) is False
        assert sequencer.delivered(st, _decoded(_kline(E0, E0 - E0 % 60_000, 1, False))) is None


class TestIdCounterReset:
    def test_older_id_with_newer_event_time_is_a_reset(self):
        """Ids back at the start but time moving on: the exchange restarted its counters."""
        st = _state_after(_trade(5000, E0))
        assert sequencer.id_counter_reset(st, _decoded(_trade(1, E0 + 5))) is True

    def test_the_last_id_again_with_a_newer_event_time_is_a_reset(self):
        """A feed that reconnects late to a restarted exchange can first see the id it saw
        last; with time moved on that is a new tick (a reset), not a copy to drop."""
        st = _state_after(_trade(5000, E0), _trade(5001, E0 + 1))
        assert sequencer.id_counter_reset(st, _decoded(_trade(5001, E0 + 9000))) is True
        seq = sequencer.Sequencer()
        for f in (_trade(5000, E0), _trade(5001, E0 + 1)):
            seq.step(_decoded(f))
        out = seq.step(_decoded(_trade(5001, E0 + 9000)))
        assert (out.status, out.tick.id, seq.resets) == (codec.TICK, 5001, 1)
        assert seq.step(_decoded(_trade(5002, E0 + 9001))).status == codec.TICK
        assert seq.state["trade"]["BTCUSDT"] == [5002, E0 + 9001]

    def test_same_frame_again_is_a_duplicate_not_a_reset(self):
        """The overlap's copy of a frame (same id, same time) is a plain duplicate."""
        st = _state_after(_trade(5000, E0), _trade(5001, E0 + 1))
        assert sequencer.id_counter_reset(st, _decoded(_trade(5000, E0))) is False
        assert sequencer.id_counter_reset(st, _decoded(_trade(5001, E0 + 1))) is False

    def test_marks_are_never_a_reset(self):
        """Marks are sequenced by event time, which cannot be older and newer at once."""
        st = _state_after(_mark(E0))
        assert sequencer.id_counter_reset(st, _decoded(_mark(E0 - 1000))) is False


class TestKlineKey:
    def test_close_outranks_every_update_of_its_candle(self):
        """A candle's close ranks above its updates even when an update carries a later E."""
        t = E0 - E0 % 60_000
        update = sequencer.kline_key(_decoded(_kline(t + 60_002, t, 40, False)))
        close = sequencer.kline_key(_decoded(_kline(t + 60_000, t, 40, True)))
        assert update[0] == close[0] == t
        assert close[1] > update[1]

    def test_updates_rank_by_trades_then_time(self):
        """More trades outrank fewer; with equal trades the later update wins."""
        t = E0 - E0 % 60_000
        a = sequencer.kline_key(_decoded(_kline(t + 1000, t, 5, False)))[1]
        b = sequencer.kline_key(_decoded(_kline(t + 1250, t, 5, False)))[1]
        c = sequencer.kline_key(_decoded(_kline(t + 1100, t, 6, False)))[1]
        assert a < b < c
