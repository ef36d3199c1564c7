"""The wire codec: round trips, topics, and rejection of every malformed frame."""

from __future__ import annotations

import msgspec
import pytest

from common import wire
from common.errors import DecodeError


def candle(**kw):
    base = dict(symbol="BTCUSDT", interval_s=60, open_ms=0, close_ms=59_999, open=100.0,
                high=101.0, low=99.0, close=100.5, volume=3.0)
    base.update(kw)
    return wire.CandleClosed(**base)


def env(body, seq=1, v=wire.SCHEMA_VERSION):
    return wire.Envelope(v, "brain:1", seq, 10, 11, body)


class TestRoundTrip:
    @pytest.mark.parametrize("body", [
        candle(),
        wire.TickUpdate(symbol="ETHUSDT", event_ms=5, last_price=1.0, bid=0.9, ask=1.1),
        wire.Heartbeat(service="feed", pid=3, uptime_s=1.5, counters={"x": 1.0}),
        wire.Fill(client_order_id="c1", exchange_order_id=str(2**60), trade_id="9",
                  symbol="BTCUSDT", side="BUY", qty=0.1, price=1.0),
        wire.SignalGenerated(signal_id="s", symbol="BTCUSDT", side="SELL", entry=2.0, stop=2.1,
                             target=1.8, confidence=0.5, features={"bos": 1.0}),
        wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0,
                        price_precision=2, quantity_precision=3),
        wire.TradingPermission(allowed=False, reason="JOURNAL_DISK_FULL",
                               detail="cannot write /d/aegis.sqlite3: database or disk is full (0 bytes free)"),
        wire.Reconciled(status="REPAIRED", at_ms=1_700_000_000_000, symbols=("BTCUSDT", "D001USDT"),
                        adopted_orders=("ae-lost-0",)),
        wire.ExternalFill(symbol="BTCUSDT", trade_id="9001", exchange_order_id=str(2**60), side="SELL", qty=0.002,
                          price=43000.5, fee=0.01, time_ms=1_700_000_000_000, detail="trade 9001"),
    ])
    def test_every_message_round_trips_exactly(self, body):
        """encode then decode gives an equal envelope, with the topic naming type and key."""
        e = env(body)
        frames = wire.encode(e)
        assert wire.decode(frames) == e
        assert frames[0] == f"{wire.TOPIC_PREFIX[e.type]}.{body.key()}".encode()

    def test_exchange_order_id_above_2_pow_53_survives(self):
        """Order ids travel as strings, so ids beyond float64's integer range are exact."""
        big = str(2**63 - 25)
        b = wire.OrderUpdate(client_order_id="c", exchange_order_id=big, symbol="BTCUSDT", status="NEW")
        assert wire.decode(wire.encode(env(b))).body.exchange_order_id == big


class TestRejects:
    def reason(self, frames):
        with pytest.raises(DecodeError) as ei:
            wire.decode(frames)
        return ei.value.reason

    def test_wrong_frame_count_is_rejected(self):
        """One frame or three frames are not a message."""
        assert self.reason([b"candle.BTCUSDT"]) == "frame_count"
        assert self.reason([b"a", b"b", b"c"]) == "frame_count"

    def test_truncated_payload_is_malformed(self):
        """A payload cut short is reported as malformed msgpack."""
        t, p = wire.encode(env(candle()))
        assert self.reason([t, p[:-4]]) == "malformed"

    def test_other_schema_version_is_named(self):
        """A message of another schema version says so, rather than failing obscurely."""
        assert self.reason(wire.encode(env(candle(), v=2))) == "schema_version"

    def test_topic_that_lies_about_the_body_is_rejected(self):
        """A candle published under a fill topic never reaches a fill subscriber."""
        _, p = wire.encode(env(candle()))
        assert self.reason([b"fill.BTCUSDT", p]) == "topic_mismatch"

    @pytest.mark.parametrize("field,value", [("open", float("nan")), ("high", float("inf")),
                                             ("low", -1.0), ("volume", -0.5), ("symbol", "btc usdt")])
    def test_invalid_field_values_are_rejected_on_decode(self, field, value):
        """NaN, infinity, non-positive prices and malformed symbols fail validation."""
        raw = msgspec.to_builtins(env(candle()))
        raw[5][field] = value
        payload = msgspec.msgpack.encode(raw)
        assert self.reason([b"candle.BTCUSDT", payload]) == "invalid"

    def test_non_finite_value_is_refused_at_construction(self):
        """A publisher cannot even build a message with an infinite price."""
        with pytest.raises(ValueError):
            candle(close=float("inf"))

    @pytest.mark.parametrize("junk", [b"", b"\xc1", b"\xff" * 9, b"\x96\x01", b"hello"])
    def test_garbage_payload_is_a_decode_error(self, junk):
        """Random bytes give DecodeError, never another exception."""
        with pytest.raises(DecodeError):
            wire.decode([b"candle.BTCUSDT", junk])

    def test_non_bytes_frames_are_a_decode_error(self):
        """Frames that are not buffers (a bug upstream) still give our own error type."""
        with pytest.raises(DecodeError):
            wire.decode([None, 3])


class TestSequenceTracker:
    def test_in_order_sequence_has_no_gaps(self):
        """1, 2, 3 from one publisher is clean."""
        t = wire.SequenceTracker()
        assert [t.observe("a", s) for s in (1, 2, 3)] == [0, 0, 0]
        assert t.gaps == 0

    def test_gap_counts_exact_missing_messages(self):
        """Jumping from 2 to 6 means exactly 3 messages were missed."""
        t = wire.SequenceTracker()
        t.observe("a", 1), t.observe("a", 2)
        assert t.observe("a", 6) == 3
        assert (t.gaps, t.gap_events) == (3, 1)

    def test_publishers_are_tracked_independently(self):
        """A restarted process is a new publisher and starts clean at 1."""
        t = wire.SequenceTracker()
        t.observe("brain:1", 1), t.observe("brain:1", 2), t.observe("brain:2", 1)
        assert t.gaps == 0

    def test_late_subscriber_does_not_count_what_it_never_subscribed_for(self):
        """Without count_initial (PUB/SUB) a first message with seq 50 is no gap; later gaps still count."""
        t = wire.SequenceTracker(count_initial=False)
        assert t.observe("a", 50) == 0
        assert t.observe("a", 53) == 2

    def test_journal_counts_messages_missed_before_the_first(self):
        """With count_initial (journal) a first message with seq 3 means 2 were lost."""
        t = wire.SequenceTracker(count_initial=True)
        assert t.observe("a", 3) == 2

    def test_replayed_sequence_counts_as_duplicate(self):
        """A message seen twice is counted as a duplicate, not as a gap."""
        t = wire.SequenceTracker()
        t.observe("a", 1), t.observe("a", 2), t.observe("a", 2)
        assert (t.duplicates, t.gaps) == (1, 0)


def test_symbol_info_with_a_zero_tick_size_is_rejected_by_the_subscriber():
    frames = wire.encode(env(wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.0, step_size=0.001)))
    with pytest.raises(DecodeError):
        wire.decode(frames)
