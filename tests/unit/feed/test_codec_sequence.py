"""Sequencing: trade-id and pu-chain gaps, duplicates from overlapping connections, stream clock."""

from __future__ import annotations

import json

import pytest

from services.feed import codec, raw_capture, sequencer
from tests.conftest import HFT_CAPTURE

HFT = HFT_CAPTURE
BTC = {"BTCUSDT": 0}
E0 = 1_723_161_256_000  # an event time in the 2024 capture's range


@pytest.fixture(scope="module")
def hft_head() -> list[tuple[int, bytes]]:
    out = []
    for recv, raw in raw_capture.iter_capture(HFT):
        out.append((recv, raw))
        if len(out) == 3000:
            return out
    return out


def _run(lines) -> list[codec.Result]:
    dec = sequencer.Decoder(BTC)
    return [dec.decode(raw, recv) for recv, raw in lines]


def _trade(t: int, e_ms: int = E0, symbol: str = "BTCUSDT") -> bytes:
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": {
        "e": "trade", "E": e_ms, "T": e_ms, "s": symbol, "t": t, "p": "100.0", "q": "1.0",
        "X": "MARKET", "m": False}}).encode()


def _depth(first: int, last: int, prev: int, stream: str = "btcusdt@depth@100ms") -> bytes:
    return json.dumps({"stream": stream, "data": {
        "e": "depthUpdate", "E": E0, "T": E0, "s": "BTCUSDT", "U": first, "u": last, "pu": prev,
        "b": [["100.0", "1"]], "a": [["101.0", "0"]]}}).encode()


def _mark(e_ms: int) -> bytes:
    return json.dumps({"stream": "btcusdt@markPrice", "data": {
        "e": "markPriceUpdate", "E": e_ms, "s": "BTCUSDT", "p": "100.0", "P": "100.0",
        "i": "100.0", "r": "0.0001", "T": e_ms + 3_600_000}}).encode()


def _kline(e_ms: int) -> bytes:
    return json.dumps({"stream": "btcusdt@kline_1m", "data": {"e": "kline", "E": e_ms, "s": "BTCUSDT", "k": {
        "t": e_ms - 30_000, "T": e_ms + 29_999, "s": "BTCUSDT", "i": "1m", "f": 1, "L": 2,
        "o": "1", "c": "1", "h": "1", "l": "1", "v": "1", "n": 2, "x": False, "q": "1",
        "V": "1", "Q": "1", "B": "0"}}}).encode()


class TestTradeIds:
    def test_dropped_real_trade_is_one_gap_naming_the_missing_id(self, hft_head):
        """Removing one real trade line yields exactly one gap: expected its id, got the next."""
        idx = [i for i, (_, raw) in enumerate(hft_head) if b"@trade" in raw[:40]]
        victim = idx[10]
        missing = json.loads(hft_head[victim][1])["data"]["t"]
        results = _run(hft_head[:victim] + hft_head[victim + 1:])
        gaps = [r.gap for r in results if r.gap is not None]
        assert gaps == [codec.Gap("BTCUSDT", "trade", missing, missing + 1)]

    def test_gapped_tick_is_still_accepted(self):
        """A gap is reported on the tick that reveals it, and that tick still goes to the ring."""
        dec = sequencer.Decoder(BTC)
        dec.decode(_trade(1), None)
        res = dec.decode(_trade(5), None)
        assert res.status == codec.TICK and res.tick.id == 5
        assert res.gap == codec.Gap("BTCUSDT", "trade", 2, 5)

    def test_chain_restarts_after_a_gap(self):
        """After a gap the next consecutive id is clean again."""
        dec = sequencer.Decoder(BTC)
        results = [dec.decode(_trade(t), None) for t in (1, 5, 6)]
        assert [r.gap is None for r in results] == [True, False, True]

    def test_first_trade_of_a_symbol_is_never_a_gap(self):
        """Each symbol's chain starts at whatever id arrives first."""
        dec = sequencer.Decoder({"BTCUSDT": 0, "ETHUSDT": 1})
        assert dec.decode(_trade(100), None).gap is None
        assert dec.decode(_trade(7, symbol="ETHUSDT"), None).gap is None

    def test_agg_trade_ids_chain_on_a(self):
        """aggTrade continuity is on the aggregate id ``a``."""
        def agg(a: int) -> bytes:
            return json.dumps({"e": "aggTrade", "E": E0, "a": a, "s": "BTCUSDT", "p": "1", "q": "1",
                               "f": 1, "l": 1, "T": E0, "m": True}).encode()
        dec = sequencer.Decoder(BTC)
        dec.decode(agg(10), None)
        assert dec.decode(agg(12), None).gap == codec.Gap("BTCUSDT", "aggTrade", 11, 12)


class TestDuplicates:
    def test_overlapping_second_connection_is_deduplicated(self, hft_head):
        """Replaying lines 1000-1999 a second time (a reconnect overlap) adds no tick and no gap."""
        straight = _run(hft_head[:2000])
        overlapped = _run(hft_head[:2000] + hft_head[1000:2000])
        assert overlapped[:2000] == straight
        tail = overlapped[2000:]
        assert all(r.status in (codec.DUPLICATE, codec.EVENT) for r in tail)
        snapshots = sum(r.event == "depthSnapshot" for r in tail)
        assert sum(r.status == codec.DUPLICATE for r in tail) == 1000 - snapshots
        assert all(r.gap is None for r in overlapped)

    def test_duplicate_is_dropped_with_reason_duplicate(self):
        """A trade id already seen comes back as DUPLICATE, no tick, reason 'duplicate'."""
        dec = sequencer.Decoder(BTC)
        dec.decode(_trade(1), None)
        res = dec.decode(_trade(1), None)
        assert (res.status, res.reason, res.tick) == (codec.DUPLICATE, "duplicate", None)

    def test_duplicate_does_not_move_the_chain(self):
        """After a duplicate the chain still expects the id after the highest one seen."""
        dec = sequencer.Decoder(BTC)
        results = [dec.decode(_trade(t), None) for t in (1, 2, 1, 3)]
        assert [r.status for r in results] == [codec.TICK, codec.TICK, codec.DUPLICATE, codec.TICK]
        assert results[3].gap is None

    def test_mark_updates_deduplicate_on_event_time(self):
        """Marks have no id: an event time not after the last one is a duplicate."""
        dec = sequencer.Decoder(BTC)
        assert dec.decode(_mark(E0), None).status == codec.TICK
        assert dec.decode(_mark(E0), None).status == codec.DUPLICATE
        assert dec.decode(_mark(E0 + 1000), None).status == codec.TICK


class TestDepthChain:
    def test_dropped_real_depth_diff_breaks_the_pu_chain_once(self, hft_head):
        """Dropping one real depth diff gives one gap: expected the u before the hole, got the pu after."""
        idx = [i for i, (_, raw) in enumerate(hft_head) if b"@depth" in raw[:40]]
        victim = idx[5]
        before = json.loads(hft_head[idx[4]][1])["data"]["u"]
        after_pu = json.loads(hft_head[idx[6]][1])["data"]["pu"]
        results = _run(hft_head[:victim] + hft_head[victim + 1:])
        gaps = [r.gap for r in results if r.gap is not None]
        assert gaps == [codec.Gap("BTCUSDT", "depthUpdate", before, after_pu)]

    def test_pu_equal_to_previous_u_is_clean(self):
        """A diff whose pu is the previous u passes without a gap."""
        dec = sequencer.Decoder(BTC)
        dec.decode(_depth(1, 10, 0), None)
        assert dec.decode(_depth(11, 20, 10), None).gap is None

    def test_partial_depth_stream_is_not_chained(self):
        """@depth20 messages skip pu checking: each is a snapshot of the top of the book."""
        dec = sequencer.Decoder(BTC)
        dec.decode(_depth(1, 10, 0, "btcusdt@depth20"), None)
        assert dec.decode(_depth(50, 60, 40, "btcusdt@depth20"), None).gap is None

    def test_old_depth_diff_is_a_duplicate(self):
        """A diff whose u is not beyond the last u is a duplicate."""
        dec = sequencer.Decoder(BTC)
        dec.decode(_depth(11, 20, 10), None)
        assert dec.decode(_depth(11, 20, 10), None).status == codec.DUPLICATE


class TestStreamClock:
    def test_event_far_behind_its_stream_is_rejected(self):
        """Without a receive time, an event over 60 s older than its stream's last is bad_timestamp."""
        dec = sequencer.Decoder(BTC)
        dec.decode(_kline(E0), None)
        res = dec.decode(_kline(E0 - 61_000), None)
        assert (res.status, res.reason) == (codec.REJECTED, "bad_timestamp")

    def test_small_step_back_within_tolerance_is_accepted(self):
        """A step back of a few ms (cross-stream jitter) is fine."""
        dec = sequencer.Decoder(BTC)
        dec.decode(_kline(E0), None)
        assert dec.decode(_kline(E0 - 30), None).status == codec.EVENT

    def test_quiet_stream_may_jump_forward_any_amount(self):
        """An hour of silence on a stream is not a timestamp error."""
        dec = sequencer.Decoder(BTC)
        dec.decode(_kline(E0), None)
        assert dec.decode(_kline(E0 + 3_600_000), None).status == codec.EVENT

    def test_receive_time_replaces_the_stream_clock_when_given(self):
        """With a receive time, an event 10 s ahead of it is bad_timestamp (future tolerance 5 s)."""
        dec = sequencer.Decoder(BTC)
        res = dec.decode(_trade(1, e_ms=E0), (E0 - 10_000) * 1_000_000)
        assert (res.status, res.reason) == (codec.REJECTED, "bad_timestamp")


class TestSequencePassThrough:
    def test_rejections_and_controls_pass_untouched(self):
        """sequence() returns rejections and control replies as they are, without state."""
        state = sequencer.new_state()
        for frame in (b"", b'{"result":null,"id":1}'):
            res = codec.decode(frame, None, BTC)
            assert sequencer.sequence(state, res) is res
        assert state == {}

    def test_state_is_explicit_and_per_event_and_symbol(self):
        """The state maps event type -> symbol -> [last id, last event time]."""
        state = sequencer.new_state()
        sequencer.sequence(state, codec.decode(_trade(41), None, BTC))
        assert state == {"trade": {"BTCUSDT": [41, E0]}}
