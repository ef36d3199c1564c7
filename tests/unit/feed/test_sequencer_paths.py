"""One byte stream, three paths, one answer: the live feed (with and without the C lane), the
replay source and ``aegis decode`` all sequence through ``services.feed.sequencer``.

The stream holds every case the sequencer decides: trades in order, a duplicate, a gap, an
exchange that restarted its id counter, book updates with a duplicate, kline updates repeated
by a second connection, depth diffs with a duplicate and a broken chain, and one frame the
firewall refuses. Before the sequencer had one home, ``aegis decode`` skipped the counter
reset and the kline dedupe and disagreed with the feed on these bytes.
"""

from __future__ import annotations

import json
from collections import Counter

from common import config as config_mod
from common import records
from common.capture_file import KIND_WS_RAW, Record
from common.ring import Ring
from services.feed import codec, raw_capture, sequencer
from services.feed import replay_source as rs
from services.feed.sink import Feed, FeedLane

E0 = 1_723_161_256_000  # ms
SYMBOLS = {"BTCUSDT": 0}
CANDLE = E0 - E0 % 60_000


def wrap(stream: str, data: dict) -> bytes:
    return json.dumps({"stream": stream, "data": data}, separators=(",", ":")).encode()


def trade(t: int, e_ms: int, p: str = "61800.30") -> bytes:
    return wrap("btcusdt@trade", {"e": "trade", "E": e_ms, "T": e_ms, "s": "BTCUSDT", "t": t,
                                  "p": p, "q": "0.006", "X": "MARKET", "m": False})


def book(u: int, e_ms: int) -> bytes:
    return wrap("btcusdt@bookTicker", {"e": "bookTicker", "u": u, "s": "BTCUSDT", "b": "61800.20",
                                       "B": "2.507", "a": "61800.30", "A": "2.510", "T": e_ms, "E": e_ms})


def kline(e_ms: int, trades: int, closed: bool) -> bytes:
    k = {"t": CANDLE, "T": CANDLE + 59_999, "s": "BTCUSDT", "i": "1m", "f": 100, "L": 100 + trades,
         "o": "61800.0", "c": "61801.0", "h": "61802.0", "l": "61799.0", "v": "1.5", "n": trades,
         "x": closed, "q": "92700.0", "V": "0.7", "Q": "43260.0"}
    return wrap("btcusdt@kline_1m", {"e": "kline", "E": e_ms, "s": "BTCUSDT", "k": k})


def depth(first: int, last: int, prev: int, e_ms: int) -> bytes:
    return wrap("btcusdt@depth", {"e": "depthUpdate", "E": e_ms, "T": e_ms, "s": "BTCUSDT", "U": first,
                                  "u": last, "pu": prev, "b": [["61800.20", "1.0"]], "a": [["61800.30", "0"]]})


FRAMES = [
    trade(100, E0), trade(101, E0 + 1), trade(101, E0 + 1),  # in order, then a duplicate
    trade(105, E0 + 3),  # a gap: 102 was due
    trade(1, E0 + 10), trade(2, E0 + 11),  # the exchange restarted its counter
    book(5, E0), book(9, E0 + 1), book(9, E0 + 1),  # a duplicate book
    kline(E0 + 2, 5, False), kline(E0 + 2, 5, False),  # the second connection's copy
    kline(E0 + 4, 6, False), kline(E0 + 5, 6, True), kline(E0 + 5, 6, True),
    depth(1, 10, 0, E0), depth(11, 20, 10, E0 + 1), depth(11, 20, 10, E0 + 1),
    depth(26, 30, 25, E0 + 2),  # pu 25 does not chain from u 20: a gap
    trade(106, E0 + 12, p="0.0"),  # the firewall refuses a zero price
]
RECV = [(E0 + 20) * 1_000_000 + i for i in range(len(FRAMES))]
WANT_ACCEPTED = {"trade": 5, "bookTicker": 2, "kline": 3, "depthUpdate": 3}
WANT_DUPLICATES = 5  # trade 101, book 9, two klines, depth u 20
WANT_GAPS = 2  # trade 102 -> 105, depth 20 -> 25
WANT_TICKS = [("trade", 100), ("trade", 101), ("trade", 105), ("trade", 1), ("trade", 2),
              ("book", 5), ("book", 9)]


COLS = ("symbol_id", "kind", "flags", "event_ms", "id", "price", "qty", "aux", "aux_qty")


def rows(recs, n: int) -> list[tuple]:
    """Ring records as tuples, without the receive time (a replay restamps it)."""
    return [tuple(recs[c][i].item() for c in COLS) for i in range(n)]


def ring_ticks(ring: Ring) -> list[tuple]:
    """Every record in the ring."""
    out = records.empty(64)
    return rows(out, ring.reader().read_batch(out))


def decoder_ticks() -> tuple[list[tuple], sequencer.Decoder]:
    """The decoder's ticks as ring records would hold them (the ring stores aux_qty as float32)."""
    dec = sequencer.Decoder(SYMBOLS)
    out = records.empty(64)
    n = 0
    for raw, recv in zip(FRAMES, RECV):
        res = dec.decode(raw, recv)
        if res.status == codec.TICK:
            t = res.tick
            for c in COLS:
                out[c][n] = getattr(t, c)
            n += 1
    return rows(out, n), dec


def live(short_tmp, name: str, lane: bool) -> tuple[Feed, list[tuple]]:
    ring = Ring.create(str(short_tmp / f"{name}.ring"), 1024)
    try:
        feed = Feed(config_mod.load(None, env={}), ring, list(SYMBOLS), lane=lane)
        assert (feed.lane is not None) == (lane and FeedLane is not None)
        for raw, recv in zip(FRAMES, RECV):
            feed.on_frame(raw, recv)
        return feed, ring_ticks(ring)
    finally:
        ring.close()


def replay(short_tmp) -> tuple[Feed, list[tuple]]:
    ring = Ring.create(str(short_tmp / "replay.ring"), 1024)
    try:
        cfg = config_mod.replace(config_mod.load(None, env={}), replay={"chunk": 4, "chunk_ms": 1, "speed": 0.0})
        feed = Feed(cfg, ring, list(SYMBOLS), lane=False)
        player = rs.Replayer(cfg, ring, feed, rs.Progress(file="mem"), lambda: False, lambda: None)
        player.wait_brain = lambda: True  # no brain here: nothing to wait for
        player.play(iter(Record(recv_ns=r, kind=KIND_WS_RAW, frames=(f,)) for f, r in zip(FRAMES, RECV)))
        return feed, ring_ticks(ring)
    finally:
        ring.close()


def test_decode_replay_and_live_feed_sequence_the_same_bytes_alike(short_tmp):
    """``aegis decode``, the replay source and the live feed (C lane on and off) accept, drop
    and flag exactly the same frames of one byte stream, and write the same ticks."""
    path = short_tmp / "cap.txt"
    path.write_bytes(b"".join(b"%d %s\n" % (r, f) for f, r in zip(FRAMES, RECV)))
    summary = raw_capture.summarize_capture(path, dict(SYMBOLS))
    assert summary["accepted"] == WANT_ACCEPTED
    assert summary["duplicates"] == WANT_DUPLICATES
    assert summary["gaps"] == WANT_GAPS
    assert summary["rejected"] == {"bad_price": 1}
    assert summary["ticks"] == len(WANT_TICKS)

    ticks, dec = decoder_ticks()
    assert dec.sequencer.resets == 1
    kinds = {int(records.Kind.TRADE): "trade", int(records.Kind.BOOK): "book"}
    assert [(kinds[t[1]], t[4]) for t in ticks] == WANT_TICKS

    paths = [live(short_tmp, "lane", True), live(short_tmp, "python", False), replay(short_tmp)]
    for feed, written in paths:
        assert dict(feed.accepted) == WANT_ACCEPTED
        assert sum(feed.duplicates.values()) == WANT_DUPLICATES
        assert feed.duplicates == Counter({"trade": 1, "bookTicker": 1, "kline": 2, "depthUpdate": 1})
        assert feed.gaps == WANT_GAPS
        assert feed.sequence_resets == 1
        assert dict(feed.rejected) == {"bad_price": 1}
        assert written == ticks
        assert feed.seq == dec.state
