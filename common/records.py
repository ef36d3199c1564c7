"""The tick record: the one fixed-size layout that crosses the shared-memory ring.

Every tick the feed accepts becomes one 64-byte record (one x86 cache line), so a slot
never straddles two lines and a batch copy is a plain memcpy. The layout lives here and
nowhere else; ``services.feed`` writes it, ``services.brain`` reads it.

    offset size field      meaning
    0      8    stamp      ring-owned: sequence number + 1 once the slot is committed
                           (0 = never written, -1 = being written). Never set by callers.
    8      8    recv_ns    local wall-clock receive time at the feed, ns since the epoch
    16     8    event_ms   exchange time, ms since the epoch (trade time ``T`` for trades,
                           else ``E``; Binance stamps in milliseconds)
    24     8    id         trade id (``t``/``a``) or book update id (``u``); 0 if none
    32     8    price      trade price / best bid / mark price
    40     8    qty        trade quantity / best bid quantity / funding rate (mark)
    48     8    aux        best ask (book) / index price (mark) / 0
    56     4    aux_qty    best ask quantity (book), float32: 7 significant digits, enough
                           for sizing a fill against the top of the book; 0 otherwise
    60     2    symbol_id  index into the ring's symbol table (see ``common.ring``)
    62     1    kind       ``Kind`` below
    63     1    flags      ``Flag`` bits below

Why float64 prices: Binance sends decimal strings with up to 8 decimals and magnitudes up
to ~1e6; float64 holds 15-16 significant digits, so every exchange price and quantity
round-trips exactly to its decimal string. Order ids (which can exceed 2**53) never travel
in this record.
"""

from __future__ import annotations

import enum

import numpy as np

RECORD_SIZE = 64  # bytes: one cache line

TICK_DTYPE = np.dtype(
    [
        ("stamp", "<i8"),
        ("recv_ns", "<i8"),
        ("event_ms", "<i8"),
        ("id", "<i8"),
        ("price", "<f8"),
        ("qty", "<f8"),
        ("aux", "<f8"),
        ("aux_qty", "<f4"),
        ("symbol_id", "<u2"),
        ("kind", "u1"),
        ("flags", "u1"),
    ]
)
assert TICK_DTYPE.itemsize == RECORD_SIZE, TICK_DTYPE.itemsize

MAX_SYMBOLS = 4096  # symbol table slots in the ring segment (Binance lists ~500 perpetuals)
SYMBOL_NAME_BYTES = 32  # ASCII, NUL padded; the longest USD-M symbol today is ~20 chars


class Kind(enum.IntEnum):
    """What a record describes."""

    TRADE = 1  # raw trade (``trade`` stream)
    AGG_TRADE = 2  # aggregated trade (``aggTrade`` stream)
    BOOK = 3  # best bid/ask (``bookTicker`` stream)
    MARK = 4  # mark price, index price, funding rate (``markPriceUpdate``)


class Flag(enum.IntFlag):
    """Bit flags carried with every record."""

    NONE = 0
    BUYER_IS_MAKER = 1  # Binance ``m``: the aggressor sold
    SYNTHETIC = 2  # synthesized from real candles (demo), not a real exchange trade
    DERIVED = 4  # a derived demo symbol (price-scaled, time-shifted copy of a real one)
    NON_MARKET = 8  # trade ``X`` other than MARKET (insurance fund, ADL)


TRADE_KINDS = (int(Kind.TRADE), int(Kind.AGG_TRADE))


def empty(n: int) -> np.ndarray:
    """A zeroed array of ``n`` tick records (preallocate once, reuse forever)."""
    return np.zeros(n, dtype=TICK_DTYPE)
