"""The data firewall: cheap, pure checks every market-data value must pass.

The one home of the market-data rules. Nothing here does I/O, keeps state or allocates
beyond its arguments. Each check is a plain function returning a bool; the ``*_reason``
functions return the rejection reason (one of the constants below) or None.

Who applies them:

- the codec (``codec.py``) on every frame; its hot path inlines the price/size checks, and
  tests/fuzz/test_firewall_agreement.py pins every inlined verdict to these functions;
- the C lane (``services/feed/_feedlane.c``, ``FeedLane``) with the bounds ``sink.make_lane`` passes from
  here; tests/fuzz/test_feed_lane.py compares it with the Python path frame by frame;
- ``tick_reason`` is the ring-record contract: what the feed may write. No process calls it
  (the brain's gates are numba kernels and cannot call Python); the tests hold the codec's
  output (tests/fuzz/test_codec_fuzz.py) and the brain's gates to it. The brain's gates
  (``services/brain/candles.py``, ``conflate.py``) are deliberately looser: they only keep
  NaN, negative sizes and bad symbol ids out of their arrays, since every record already
  passed this firewall; the agreement test pins that they take everything the contract
  takes (but conflation's locked book, see there).

Why comparisons and not ``math.isfinite``: a chained comparison such as
``0.0 < x < MAX_PRICE`` is False for NaN (every comparison with NaN is False), for both
infinities and for anything out of range, in one cheap expression.

Type rules: a price, quantity or rate is a real floating number (``float``, numpy floats),
never an int, a bool or a string; an id or a timestamp is an integer (``int``, numpy ints),
never a bool or a float. The decoder hands in Python floats and ints; the brain hands in
numpy scalars from the ring, and both are accepted.
"""

from __future__ import annotations

import numbers
from collections.abc import Container

from common.records import Flag, Kind

# ---------------------------------------------------------------------------- reasons
# One short label per way a frame or record can fail: the counter names of
# ``aegis decode`` and of the feed's FEED_STATUS, and the ``reason`` of a rejection.
EMPTY_FRAME = "empty_frame"  # zero bytes, or only whitespace
TOO_LARGE = "too_large"  # frame larger than MAX_FRAME_BYTES
NOT_UTF8 = "not_utf8"  # bytes that are not UTF-8 (or a str with lone surrogates)
BAD_JSON = "bad_json"  # not JSON (truncated, NaN/Infinity literals, nesting too deep, ...)
WRONG_TYPE = "wrong_type"  # a field of the wrong JSON type (a number where a string belongs)
MISSING_FIELD = "missing_field"  # a required field is absent
UNKNOWN_EVENT = "unknown_event"  # an object we do not recognise at all
UNSUPPORTED_EVENT = "unsupported_event"  # a real Binance event we deliberately do not handle
SPOT_FORMAT = "spot_format"  # a Binance *spot* payload on a futures feed
UNKNOWN_SYMBOL = "unknown_symbol"  # a symbol not in our symbol table
BAD_PRICE = "bad_price"  # price not a positive finite number below MAX_PRICE
BAD_QTY = "bad_qty"  # quantity/volume negative, non-finite, absurd (or zero for a trade)
BAD_RATE = "bad_rate"  # funding rate not finite or beyond MAX_ABS_RATE
BAD_ID = "bad_id"  # trade/update id negative or beyond int64
BAD_TIMESTAMP = "bad_timestamp"  # implausible, or too far from the reference clock
BAD_CANDLE = "bad_candle"  # OHLC inconsistent (high < low, ...) or open time >= close time
CROSSED_BOOK = "crossed_book"  # best bid above best ask
BAD_KIND = "bad_kind"  # record kind not a Kind (ring records only)
BAD_FLAGS = "bad_flags"  # record flags with unknown bits (ring records only)
DUPLICATE = "duplicate"  # an id already seen on this stream (dropped, counted apart)

REASONS = frozenset({
    EMPTY_FRAME, TOO_LARGE, NOT_UTF8, BAD_JSON, WRONG_TYPE, MISSING_FIELD, UNKNOWN_EVENT,
    UNSUPPORTED_EVENT, SPOT_FORMAT, UNKNOWN_SYMBOL, BAD_PRICE, BAD_QTY, BAD_RATE, BAD_ID,
    BAD_TIMESTAMP, BAD_CANDLE, CROSSED_BOOK, BAD_KIND, BAD_FLAGS, DUPLICATE,
})

# ---------------------------------------------------------------------------- bounds
MAX_PRICE = 1e9  # BTC trades near 1e5; no USD-M contract has ever been near 1e7
MAX_QTY = 1e15  # per-trade sizes stay far below; 1e15 still leaves monthly kline volumes
#                 of meme coins and 24 h quote volumes (~1e11) valid, and is < 2**53
MAX_ABS_RATE = 1.0  # funding rate per interval; Binance caps it at a few percent
MAX_ID = 2**63 - 1  # ids travel in an int64 record field
MIN_EVENT_MS = 1_546_300_800_000  # 2019-01-01 UTC: before USD-M futures opened (2019-09)
MAX_EVENT_MS = 4_102_444_800_000  # 2100-01-01 UTC: anything later is corrupt
PAST_TOLERANCE_MS = 60_000  # an event may be this much older than the reference clock
FUTURE_TOLERANCE_MS = 5_000  # ... or this much newer: the 2024 capture's recorder runs
#                             ~1.27 s behind Binance's clock, so 0 would reject real data
MAX_FRAME_BYTES = 8 * 1024 * 1024  # !ticker@arr is ~100 KB, a 1000-level snapshot ~60 KB

_KINDS = frozenset(int(k) for k in Kind)
_TRADE_KINDS = frozenset((int(Kind.TRADE), int(Kind.AGG_TRADE)))
_BOOK = int(Kind.BOOK)
_ALL_FLAGS = int(Flag.BUYER_IS_MAKER | Flag.SYNTHETIC | Flag.DERIVED | Flag.NON_MARKET)


def _is_real(x: object) -> bool:
    """A float or a numpy float (not an int, not a bool)."""
    return type(x) is float or (isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral))


def _is_int(x: object) -> bool:
    """An int or a numpy integer (not a bool, not a float)."""
    return (type(x) is int or isinstance(x, numbers.Integral)) and not isinstance(x, bool)


# ---------------------------------------------------------------------------- single values
def is_valid_price(x: object) -> bool:
    """A price: a float, positive, finite and below MAX_PRICE (NaN fails every comparison)."""
    return _is_real(x) and 0.0 < x < MAX_PRICE  # type: ignore[operator]


def is_valid_qty(x: object) -> bool:
    """A traded or quoted size: a float, positive, finite, at most MAX_QTY."""
    return _is_real(x) and 0.0 < x <= MAX_QTY  # type: ignore[operator]


def is_valid_volume(x: object) -> bool:
    """A volume or a book level size: a float, non-negative (0 deletes a level), finite, bounded."""
    return _is_real(x) and 0.0 <= x <= MAX_QTY  # type: ignore[operator]


def is_valid_rate(x: object) -> bool:
    """A funding rate: a float, finite, |rate| <= MAX_ABS_RATE (it may be negative)."""
    return _is_real(x) and -MAX_ABS_RATE <= x <= MAX_ABS_RATE  # type: ignore[operator]


def is_valid_id(x: object) -> bool:
    """A trade or update id: an int in [0, 2**63 - 1] (it must fit the record's int64)."""
    return _is_int(x) and 0 <= x <= MAX_ID  # type: ignore[operator]


def is_valid_timestamp(event_ms: object, ref_ms: int | None = None,
                       tolerance_past_ms: int = PAST_TOLERANCE_MS,
                       tolerance_future_ms: int = FUTURE_TOLERANCE_MS) -> bool:
    """An exchange time in ms: an int between 2019 and 2100 and, when a reference clock is
    given, within ``[ref - past, ref + future]``.

    The reference is the local receive time in live use. Binance's clock and ours differ
    by latency plus clock skew in either direction, hence a tolerance on both sides.
    """
    if not (_is_int(event_ms) and MIN_EVENT_MS <= event_ms <= MAX_EVENT_MS):  # type: ignore[operator]
        return False
    if ref_ms is None:
        return True
    return ref_ms - tolerance_past_ms <= event_ms <= ref_ms + tolerance_future_ms  # type: ignore[operator]


# ---------------------------------------------------------------------------- composites
def trade_reason(price: object, qty: object) -> str | None:
    """Why a trade's price/quantity is refused (a trade of size 0 is not a trade), or None."""
    if not is_valid_price(price):
        return BAD_PRICE
    if not is_valid_qty(qty):
        return BAD_QTY
    return None


def book_reason(bid: object, bid_qty: object, ask: object, ask_qty: object) -> str | None:
    """Why a best bid/ask is refused, or None. A locked book (bid == ask) is let through;
    a crossed one (bid > ask) cannot exist on one matching engine and is refused."""
    if not (is_valid_price(bid) and is_valid_price(ask)):
        return BAD_PRICE
    if not (is_valid_qty(bid_qty) and is_valid_qty(ask_qty)):
        return BAD_QTY
    if bid > ask:  # type: ignore[operator]
        return CROSSED_BOOK
    return None


def mark_reason(mark: object, index: object, rate: object) -> str | None:
    """Why a mark price update (mark price, index price, funding rate) is refused, or None."""
    if not (is_valid_price(mark) and is_valid_price(index)):
        return BAD_PRICE
    if not is_valid_rate(rate):
        return BAD_RATE
    return None


def is_valid_candle(o: object, h: object, l: object, c: object, v: object) -> bool:  # noqa: E741
    """OHLCV: all finite floats, ``high >= max(open, close)``, ``min(open, close) >= low > 0``,
    prices below MAX_PRICE, volume a valid volume (0 for a minute without trades)."""
    if not (is_valid_price(o) and is_valid_price(h) and is_valid_price(l) and is_valid_price(c)):
        return False
    return h >= o and h >= c and l <= o and l <= c and is_valid_volume(v)  # type: ignore[operator]


def candle_reason(o: object, h: object, l: object, c: object, v: object) -> str | None:  # noqa: E741
    """BAD_CANDLE when ``is_valid_candle`` fails, else None."""
    return None if is_valid_candle(o, h, l, c, v) else BAD_CANDLE


def tick_reason(symbol_id: object, kind: object, flags: object, recv_ns: object, event_ms: object,
                id: object, price: object, qty: object, aux: object, aux_qty: object,  # noqa: A002
                symbols: Container[int], ref_ms: int | None = None,
                tolerance_past_ms: int = PAST_TOLERANCE_MS,
                tolerance_future_ms: int = FUTURE_TOLERANCE_MS) -> str | None:
    """Why one tick record (the ring layout of ``common.records``) is refused, or None: the
    ring-record contract the tests hold the codec and the brain's gates to (module docstring).

    Every field and its type: a known symbol id (``symbols`` holds the valid ids, e.g. a
    ``range``), a known kind, only known flag bits, a non-negative receive time, a
    plausible event time, an id that fits int64, and the values the kind gives meaning to:
    price/qty for trades (aux fields 0), bid/bid qty/ask/ask qty for books, mark/rate/index
    for marks.
    """
    if not (_is_int(symbol_id) and symbol_id in symbols):
        return UNKNOWN_SYMBOL
    if not (_is_int(kind) and kind in _KINDS):
        return BAD_KIND
    if not (_is_int(flags) and flags >= 0 and flags | _ALL_FLAGS == _ALL_FLAGS):  # type: ignore[operator]
        return BAD_FLAGS
    if not (_is_int(recv_ns) and recv_ns >= 0):  # type: ignore[operator]
        return BAD_TIMESTAMP
    if not is_valid_timestamp(event_ms, ref_ms, tolerance_past_ms, tolerance_future_ms):
        return BAD_TIMESTAMP
    if not is_valid_id(id):
        return BAD_ID
    if not (_is_real(aux) and _is_real(aux_qty)):
        return BAD_PRICE if not _is_real(aux) else BAD_QTY
    if kind in _TRADE_KINDS:
        why = trade_reason(price, qty)
        if why is None and not (aux == 0.0 and aux_qty == 0.0):  # type: ignore[operator]
            return BAD_PRICE if aux != 0.0 else BAD_QTY
        return why
    if kind == _BOOK:
        return book_reason(price, qty, aux, aux_qty)
    return mark_reason(price, aux, qty)  # Kind.MARK: price = mark, aux = index, qty = rate


def is_valid_tick(symbol_id: object, kind: object, flags: object, recv_ns: object, event_ms: object,
                  id: object, price: object, qty: object, aux: object, aux_qty: object,  # noqa: A002
                  symbols: Container[int], ref_ms: int | None = None,
                  tolerance_past_ms: int = PAST_TOLERANCE_MS,
                  tolerance_future_ms: int = FUTURE_TOLERANCE_MS) -> bool:
    """True when ``tick_reason`` finds nothing wrong with the record."""
    return tick_reason(symbol_id, kind, flags, recv_ns, event_ms, id, price, qty, aux, aux_qty,
                       symbols, ref_ms, tolerance_past_ms, tolerance_future_ms) is None
