"""One set of firewall rules (``services.feed.firewall``), and every gate held to it.

- The codec inlines the firewall's price/size checks on its hot path: for any values, a
  trade, book or mark frame is refused for exactly the reason ``trade_reason`` /
  ``book_reason`` / ``mark_reason`` gives (and accepted exactly when they give None).
- The C lane gets the firewall's bounds from ``sink.make_lane`` and is compared with the
  Python path frame by frame in tests/fuzz/test_feed_lane.py.
- The brain's numba gates (``candles.update_candles``, ``conflate.update_conflated``) only
  guard their arrays against what would corrupt them (NaN, negative sizes, symbol ids out of
  range); the plausibility bounds were the feed's job. Pinned here: every record
  ``firewall.tick_reason`` (the ring-record contract) accepts passes them, except the one
  documented difference: conflate skips a locked book (bid == ask), which the firewall lets
  through. What they refuse beyond that is pinned exactly.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.records import Kind
from common.records import empty as empty_records
from services.brain import candles, conflate
from services.feed import codec
from services.feed import firewall as fw

REF = 1_723_161_256_000
RECV = REF * 1_000_000
SYMBOLS = {"BTCUSDT": 0}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EDGES = [0.0, -0.0, -1.0, 1e-12, 0.1, 61800.3, fw.MAX_PRICE, fw.MAX_PRICE * (1 - 1e-16),
         fw.MAX_QTY, fw.MAX_QTY * 1.0000001, fw.MAX_ABS_RATE, -fw.MAX_ABS_RATE, 1.0000001,
         math.inf, -math.inf, math.nan]
VALUES = st.one_of(st.sampled_from(EDGES), st.floats(allow_nan=True, allow_infinity=True),
                   st.floats(min_value=-2.0, max_value=2.0))


def text(x: float) -> str:
    """How a value travels in a frame: Binance's decimal string (float() reads it back)."""
    return repr(x) if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def trade(p: float, q: float) -> bytes:
    return (f'{{"stream":"btcusdt@trade","data":{{"e":"trade","E":{REF},"T":{REF},"s":"BTCUSDT",'
            f'"t":1,"p":"{text(p)}","q":"{text(q)}","X":"MARKET","m":false}}}}').encode()


def book(b: float, bq: float, a: float, aq: float) -> bytes:
    return (f'{{"stream":"btcusdt@bookTicker","data":{{"e":"bookTicker","u":1,"s":"BTCUSDT",'
            f'"b":"{text(b)}","B":"{text(bq)}","a":"{text(a)}","A":"{text(aq)}","T":{REF},"E":{REF}}}}}').encode()


def mark(m: float, i: float, r: float) -> bytes:
    return (f'{{"stream":"btcusdt@markPrice","data":{{"e":"markPriceUpdate","E":{REF},"s":"BTCUSDT",'
            f'"p":"{text(m)}","P":"{text(m)}","i":"{text(i)}","r":"{text(r)}","T":{REF + 3_600_000}}}}}').encode()


def verdict(frame: bytes) -> str | None:
    res = codec.decode(frame, RECV, SYMBOLS)
    assert res.status in (codec.TICK, codec.REJECTED)
    return res.reason


def floats(frame_values: tuple[float, ...]) -> tuple[float, ...]:
    """The values as the codec reads them back from their text (-0.0 stays -0.0)."""
    return tuple(float(text(x)) for x in frame_values)


# ---------------------------------------------------------------------------- codec == firewall
@FUZZ
@given(VALUES, VALUES)
def test_codec_trade_checks_are_the_firewalls(p, q):
    """A trade frame is refused for exactly ``firewall.trade_reason``'s reason."""
    assert verdict(trade(p, q)) == fw.trade_reason(*floats((p, q)))


@FUZZ
@given(VALUES, VALUES, VALUES, VALUES)
def test_codec_book_checks_are_the_firewalls(b, bq, a, aq):
    """A bookTicker frame is refused for exactly ``firewall.book_reason``'s reason."""
    assert verdict(book(b, bq, a, aq)) == fw.book_reason(*floats((b, bq, a, aq)))


@FUZZ
@given(VALUES, VALUES, VALUES)
def test_codec_mark_checks_are_the_firewalls(m, i, r):
    """A markPriceUpdate frame is refused for exactly ``firewall.mark_reason``'s reason."""
    assert verdict(mark(m, i, r)) == fw.mark_reason(*floats((m, i, r)))


# ---------------------------------------------------------------------------- brain gates
def one_record(kind: int, price: float, qty: float, aux: float = 0.0, aux_qty: float = 0.0,
               symbol_id: int = 0, event_ms: int = REF) -> np.ndarray:
    recs = empty_records(1)
    with np.errstate(over="ignore"):  # a huge size becomes inf in the float32 aux_qty, as in the ring
        _fill(recs, symbol_id, kind, event_ms, price, qty, aux, aux_qty)
    return recs


def _fill(recs: np.ndarray, symbol_id: int, kind: int, event_ms: int, price: float, qty: float,
          aux: float, aux_qty: float) -> None:
    for name, v in (("symbol_id", symbol_id), ("kind", kind), ("flags", 0), ("event_ms", event_ms),
                    ("id", 1), ("price", price), ("qty", qty), ("aux", aux), ("aux_qty", aux_qty)):
        recs[name][0] = v


def candles_take(price: float, qty: float) -> bool:
    st_ = candles.new_state(1)
    candles.update_candles(st_, one_record(int(Kind.TRADE), price, qty), 1)
    return int(st_.rejects.sum()) == 0


def conflate_take(rec: np.ndarray) -> bool:
    st_ = conflate.new_state(1)
    conflate.update_conflated(st_, rec, 1)
    return int(st_.rejects.sum()) == 0


def ring_view(rec: np.ndarray) -> tuple:
    r = rec[0]
    return tuple(r[n].item() for n in ("price", "qty", "aux", "aux_qty"))


def contract(kind: int, rec: np.ndarray) -> str | None:
    r = rec[0]
    return fw.tick_reason(int(r["symbol_id"]), kind, 0, 0, int(r["event_ms"]), 1, *ring_view(rec),
                          symbols=range(1), ref_ms=REF)


@FUZZ
@given(VALUES, VALUES)
def test_candles_gate_takes_every_trade_the_contract_takes(p, q):
    """The candle gate refuses exactly non-finite or non-positive prices and non-finite or
    negative sizes; so every trade record the firewall's contract accepts is taken."""
    rec = one_record(int(Kind.TRADE), p, q)
    p32, q32 = ring_view(rec)[:2]
    took = candles_take(p, q)
    assert took == (math.isfinite(p32) and p32 > 0.0 and math.isfinite(q32) and q32 >= 0.0)
    if contract(int(Kind.TRADE), rec) is None:
        assert took


@FUZZ
@given(VALUES, VALUES, VALUES, VALUES)
def test_conflate_gate_takes_every_book_the_contract_takes_but_a_locked_one(b, bq, a, aq):
    """The conflation gate refuses non-finite or non-positive prices, non-finite or negative
    sizes and bid >= ask; a book the contract accepts is taken unless it is locked."""
    rec = one_record(int(Kind.BOOK), b, bq, a, aq)
    b_, bq_, a_, aq_ = ring_view(rec)
    took = conflate_take(rec)
    ok = lambda x: math.isfinite(x) and x > 0.0  # noqa: E731
    size = lambda x: math.isfinite(x) and x >= 0.0  # noqa: E731
    assert took == (ok(b_) and ok(a_) and size(bq_) and size(aq_) and b_ < a_)
    if contract(int(Kind.BOOK), rec) is None:
        assert took == (b_ != a_)


def test_locked_book_is_the_one_documented_difference():
    """bid == ask: the firewall lets it through to the strategy, conflation skips it."""
    rec = one_record(int(Kind.BOOK), 100.0, 1.0, 100.0, 1.0)
    assert contract(int(Kind.BOOK), rec) is None
    assert not conflate_take(rec)


def test_brain_gates_take_a_zero_size_trade_and_a_price_above_the_ceiling():
    """The brain gates have no plausibility bounds (the feed's firewall refused those): a
    zero-size trade and a price at MAX_PRICE are refused by the contract, taken by the gates."""
    for p, q in ((100.0, 0.0), (fw.MAX_PRICE, 1.0)):
        rec = one_record(int(Kind.TRADE), p, q)
        assert contract(int(Kind.TRADE), rec) is not None
        assert candles_take(p, q)
        assert conflate_take(rec)
