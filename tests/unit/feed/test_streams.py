"""Subscription planning and reconnect backoff."""

from __future__ import annotations

import random

import pytest

from services.feed import streams


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

    def test_zero_per_connection_is_refused(self):
        """A plan with no room per connection is a programming error."""
        with pytest.raises(ValueError):
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
