"""The feed's C fast lane (``services.feed.sink.FeedLane``, built into ``common._ringc``) against the Python codec.

Two feeds take the same frames, one with the lane and one without; after every frame they
must agree on the answer, and at the end on every ring word written, every counter and the
whole sequence state. The frames are what the lane is for (trade and bookTicker in Binance's
layout, in order) and everything near it that it must decline: gaps, duplicates, unknown
symbols, times just outside the window, odd decimals, layout changes of one byte. A lane that
accepted one frame the Python path would refuse, or wrote one value differently (a float
converted with another rounding, a flag lost), fails here.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import config
from common.config import AegisConfig
from common.errors import RingError
from common.records import Flag
from common.ring import SLOTS_W, WRITER_CURSOR_W, Ring
from services.feed import raw_capture
from services.feed.sink import Feed, FeedLane
from tests.conftest import HFT_CAPTURE

pytestmark = pytest.mark.skipif(FeedLane is None, reason="the C extension was not built here")

REF_MS = 1_723_161_256_000
RECV = REF_MS * 1_000_000
KNOWN = ["BTCUSDT", "ETHUSDT"]
FLAGS = {"ETHUSDT": int(Flag.SYNTHETIC)}  # ETHUSDT's records carry an extra bit
CAPACITY = 1 << 12


class Pair:
    """A feed with the lane and one without, each on its own ring."""

    def __init__(self, root: Path, symbols: list[str] = KNOWN, flags: dict[str, int] = FLAGS) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.rings = [Ring.create(str(root / f"{n}.ring"), CAPACITY) for n in ("lane", "python")]
        self.lane = Feed(AegisConfig(), self.rings[0], symbols, flags)
        self.python = Feed(AegisConfig(), self.rings[1], symbols, flags, lane=False)
        assert self.lane.lane is not None and self.python.lane is None

    def feed(self, raw: bytes, recv_ns: int) -> None:
        got = self.lane.on_frame(raw, recv_ns)
        want = self.python.on_frame(raw, recv_ns)
        assert got == want, raw

    def taken(self) -> int:
        return sum(self.lane.lane.counts())

    def check(self) -> None:
        a, b = self.lane, self.python
        for name in ("received", "written", "gaps", "gap_ids_missed", "sequence_resets"):
            assert getattr(a, name) == getattr(b, name), name
        assert a.accepted == b.accepted
        assert a.rejected == b.rejected
        assert a.duplicates == b.duplicates
        assert a.seq == b.seq
        wa, wb = self.rings[0].words, self.rings[1].words
        assert wa[WRITER_CURSOR_W] == wb[WRITER_CURSOR_W]
        np.testing.assert_array_equal(wa[SLOTS_W:], wb[SLOTS_W:])

    def close(self) -> None:
        for r in self.rings:
            r.close()


@pytest.fixture
def pair(tmp_path):
    made: list[Pair] = []

    def make(**kw) -> Pair:
        p = Pair(tmp_path / f"p{len(made)}", **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def trade(sym: str, t: int, e_ms: int, p: str = "61800.30", q: str = "0.006", x: str = "MARKET",
          m: bool = False, t_ms: int | None = None) -> bytes:
    return (f'{{"stream":"{sym.lower()}@trade","data":{{"e":"trade","E":{e_ms},"T":{e_ms if t_ms is None else t_ms},'
            f'"s":"{sym}","t":{t},"p":"{p}","q":"{q}","X":"{x}","m":{"true" if m else "false"}}}}}').encode()


def book(sym: str, u: int, e_ms: int, b: str = "61800.20", bq: str = "2.507", a: str = "61800.30",
         aq: str = "2.510", t_ms: int | None = None) -> bytes:
    return (f'{{"stream":"{sym.lower()}@bookTicker","data":{{"e":"bookTicker","u":{u},"s":"{sym}",'
            f'"b":"{b}","B":"{bq}","a":"{a}","A":"{aq}","T":{e_ms if t_ms is None else t_ms},"E":{e_ms}}}}}').encode()


# ------------------------------------------------------------------------ real data
def test_the_real_capture_goes_through_the_lane_and_matches(pair):
    """30,000 real frames (the live feed's two channels): the lane takes every one but the
    first of each stream, and writes what the Python path writes."""
    hot = [(recv, raw) for recv, raw in itertools.islice(
        raw_capture.iter_capture(HFT_CAPTURE), 60_000)
        if b'"e":"trade"' in raw[:64] or b'"e":"bookTicker"' in raw[:64]][:30_000]
    p = pair(symbols=["BTCUSDT"], flags={})
    for recv, raw in hot:
        p.feed(raw, recv)
    p.check()
    assert p.python.written == len(hot)
    assert p.taken() == len(hot) - 2  # the first trade and the first book start their streams


# ------------------------------------------------------------------------ unit cases
def test_each_shape_is_taken_once_its_stream_has_started(pair):
    p = pair()
    frames = [trade("BTCUSDT", 100, REF_MS), trade("BTCUSDT", 101, REF_MS, m=True),
              trade("ETHUSDT", 7, REF_MS), trade("ETHUSDT", 8, REF_MS, x="LIQUIDATION"),
              book("BTCUSDT", 5, REF_MS), book("BTCUSDT", 9, REF_MS, b="61800.30")]
    for raw in frames:
        p.feed(raw, RECV)
    p.check()
    assert p.lane.lane.counts() == (2, 1)
    assert p.lane.accepted == Counter({"trade": 4, "bookTicker": 2})


@pytest.mark.parametrize("second, why", [
    (trade("BTCUSDT", 102, REF_MS), "a gap"),
    (trade("BTCUSDT", 100, REF_MS), "a duplicate"),
    (trade("BTCUSDT", 1, REF_MS), "an id reset"),
    (trade("XRPUSDT", 101, REF_MS), "an unknown symbol"),
    (trade("BTCUSDT", 101, REF_MS - 60_001), "60.001 s old"),
    (trade("BTCUSDT", 101, REF_MS, t_ms=REF_MS + 5_001), "T 5.001 s ahead"),
    (trade("BTCUSDT", 101, REF_MS, p="0.0"), "a zero price"),
    (trade("BTCUSDT", 101, REF_MS, q="1e3"), "an exponent"),
    (trade("BTCUSDT", 101, REF_MS, p="1000000000"), "a price at the firewall's bound"),
    (trade("BTCUSDT", 101, REF_MS).replace(b'"m":false', b'"m":false,"M":true'), "spot's M"),
    (trade("BTCUSDT", 101, REF_MS).replace(b'"E":', b'"E": '), "whitespace"),
    (trade("BTCUSDT", 101, REF_MS) + b"\n", "a trailing newline"),
    (trade("BTCUSDT", 101, REF_MS).replace(b"btcusdt@", b"btc\\u0075sdt@"), "an escape"),
    (trade("BTCUSDT", 101, REF_MS).replace(b'"t":101', b'"t":0101'), "a leading zero"),
    (trade("BTCUSDT", 101, REF_MS)[:-1], "a truncated frame"),
    (trade("BTCUSDT", 101, REF_MS, m=True).replace(b"true", b"TRUE"), "TRUE is not JSON"),
    (trade("BTCUSDT", 101, REF_MS, m=True).replace(b"true", b"1"), "1 is not a bool"),
    (trade("BTCUSDT", 101, REF_MS).replace(b"@", b"\xff@"), "not UTF-8"),
])
def test_what_the_lane_must_leave_to_the_python_path(pair, second, why):
    p = pair()
    p.feed(trade("BTCUSDT", 100, REF_MS), RECV)
    p.feed(second, RECV)
    p.check()
    assert p.taken() == 0, why


def test_crossed_books_and_book_duplicates_are_left_to_python(pair):
    p = pair()
    for raw in (book("BTCUSDT", 10, REF_MS), book("BTCUSDT", 10, REF_MS), book("BTCUSDT", 9, REF_MS),
                book("BTCUSDT", 11, REF_MS, b="2", a="1"), book("BTCUSDT", 12, REF_MS, aq="0")):
        p.feed(raw, RECV)
    p.check()
    assert p.taken() == 0
    assert p.lane.duplicates["bookTicker"] == 2 and sum(p.lane.rejected.values()) == 2


def test_a_replaced_writer_turns_the_lane_off(pair):
    p = pair()
    p.lane.writer = p.lane.writer  # a replay puts its staging writer here
    assert p.lane.lane is None
    for raw in (trade("BTCUSDT", 1, REF_MS), trade("BTCUSDT", 2, REF_MS)):
        p.feed(raw, RECV)
    p.check()


def test_after_its_ring_closed_the_lane_raises_the_rings_error(tmp_path):
    ring = Ring.create(str(tmp_path / "r.ring"), CAPACITY)
    feed = Feed(AegisConfig(), ring, KNOWN)
    feed.on_frame(trade("BTCUSDT", 1, REF_MS), RECV)
    ring.close()
    with pytest.raises(RingError):
        feed.on_frame(trade("BTCUSDT", 2, REF_MS), RECV)


def test_the_lane_is_off_when_configured_so(tmp_path):
    """AEGIS_FEED__FAST_LANE=0 gives a feed without the C lane; the default gives it one."""
    ring = Ring.create(str(tmp_path / "r.ring"), CAPACITY)
    try:
        cfg = config.load(env={"AEGIS_FEED__FAST_LANE": "0"})
        assert cfg.feed.fast_lane is False
        assert Feed(cfg, ring, KNOWN).lane is None
        assert type(Feed(config.load(env={}), ring, KNOWN).lane) is FeedLane
    finally:
        ring.close()


# ------------------------------------------------------------------------ fuzz
ODD_DECIMALS = st.one_of(
    st.sampled_from(["0", "0.0", "0.000", "1e3", "1.", ".5", "-1.5", "00012.50", "999999999.99999999",
                     "1000000000", "0.00000001", "1_000", "inf", "nan", "123456789012345.6",
                     "1234567890123456.7", "0.1234567890123456789012345", "1000000000000000",
                     "1000000000000001", " 1", "1 ", "+1", "\u0661"]),
    st.from_regex(r"\A[0-9]{1,20}(\.[0-9]{1,25})?\Z"),
    st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False).map(str),
)


def _cents(c: int) -> str:
    return f"{c // 100}.{c % 100:02d}"


def _milli(q: int) -> str:
    return f"{q // 1000}.{q % 1000:03d}"


@st.composite
def decimals4(draw) -> tuple[str, str, str, str]:
    """Price, size, ask, ask size as Binance writes them (ask >= price); now and then one
    of them replaced by an odd string."""
    price = draw(st.integers(1, 10**10))
    out = [_cents(price), _milli(draw(st.integers(1, 10**9))),
           _cents(price + draw(st.integers(0, 500))), _milli(draw(st.integers(1, 10**9)))]
    if draw(st.integers(0, 4)) == 0:
        out[draw(st.integers(0, 3))] = draw(ODD_DECIMALS)
    return out[0], out[1], out[2], out[3]


MUTATIONS = [
    *[lambda r: r] * 40,  # most frames clean
    lambda r: r.replace(b'":', b'": ', 1),
    lambda r: r + b" ",
    lambda r: r[: len(r) // 2],
    lambda r: r.replace(b'"data":{', b'"data":{"M":1,', 1),
    lambda r: r.replace(b"false", b"FALSE").replace(b"true", b"TRUE"),
    lambda r: r.replace(b'"s":"', b'"s":"\xc3\xa9', 1),
    lambda r: r.replace(b'"X":"MARKET",', b"", 1),
    lambda r: r.replace(b'{"stream"', b' {"stream"', 1),
    lambda r: r.replace(b'"T":', b'"T":-', 1),
    lambda r: r.replace(b'"E":', b'"E":1', 1),  # a 14-digit time: far in the future
    lambda r: r.replace(b'"E":', b'"E":99999999', 1),  # 21 digits: beyond the lane's 18
    lambda r: r.replace(b'@', b'\xff@', 1),  # not UTF-8, in a field nobody reads
    lambda r: r.replace(b'@', b'\x7f@', 1),  # DEL: ASCII, valid JSON, not printable
    lambda r: r.replace(b'@', b'\x1f@', 1),  # a control character: not JSON
]

STEP = st.tuples(
    st.sampled_from(["trade", "book"]),
    st.sampled_from(["BTCUSDT"] * 3 + ["ETHUSDT"] * 2 + ["XRPUSDT"]),
    st.sampled_from([1] * 30 + [0, -1, 2, 1000, -10**6]),  # id step
    st.sampled_from([0] * 25 + [-60_000, -60_001, 5_000, 5_001, -1]),  # event time offset, ms
    decimals4(),
    st.sampled_from(["MARKET", "MARKET", "LIQUIDATION", "INSURANCE_FUND", ""]),
    st.booleans(),
    st.integers(0, len(MUTATIONS) - 1),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=40))
def test_lane_and_python_path_agree_on_every_frame(pair, steps):
    p = pair()
    ids = {("trade", s): 1_000 for s in ("BTCUSDT", "ETHUSDT", "XRPUSDT")}
    ids |= {("book", s): 5_000_000 for s in ("BTCUSDT", "ETHUSDT", "XRPUSDT")}
    for i, (shape, sym, step, dt, (d1, d2, d3, d4), x, m, mut) in enumerate(steps):
        ids[shape, sym] = max(ids[shape, sym] + step, 0)
        recv = RECV + i * 1_000_000
        e_ms = REF_MS + i + dt
        raw = (trade(sym, ids[shape, sym], e_ms, d1, d2, x, m) if shape == "trade"
               else book(sym, ids[shape, sym], e_ms, d1, d2, d3, d4))
        p.feed(MUTATIONS[mut](raw), recv)
    p.check()


# prices below the firewall's 1e9 with 14 to 19 significant digits: around 2^53, where a
# conversion that rounds twice (to double, then in the division) goes wrong
LONG_PRICES = st.tuples(st.integers(1, 999_999_999), st.integers(5, 12)).flatmap(
    lambda t: st.from_regex(rf"\A[0-9]{{{t[1]}}}\Z").map(lambda f, i=t[0]: f"{i}.{f}"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(price=st.one_of(LONG_PRICES, st.from_regex(r"\A[0-9]{1,17}(\.[0-9]{1,24})?\Z")),
       qty=st.from_regex(r"\A[0-9]{1,6}\.[0-9]{1,9}\Z"))
def test_the_lane_converts_decimals_exactly_as_float_does(pair, price, qty):
    """The lane's own conversion (Clinger's fast path, else Python's parser) against float()."""
    p = pair()
    p.feed(trade("BTCUSDT", 1, REF_MS), RECV)
    p.feed(trade("BTCUSDT", 2, REF_MS, price, qty), RECV)
    p.check()
    if 0.0 < float(price) < 1e9 and 0.0 < float(qty):
        assert p.taken() == 1
        words = p.rings[0].words
        slot = words[SLOTS_W + 8: SLOTS_W + 16]
        assert slot[4:6].view(np.float64).tolist() == [float(price), float(qty)]
