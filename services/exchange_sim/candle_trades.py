"""Real 1m candles as a second source for the sim: trades SYNTHESIZED inside each candle.

The tick capture lasts minutes; SMC on 1m and 15m bars needs days. The bundled Binance
spot BTCUSDT 1m candles (a month) are replayed instead as a ``Capture`` of synthesized
events, so the whole replay engine (schedule, speed, loop stitching, derived symbols, ids)
works on them unchanged. Only trades and book tickers are synthesized; their candles are
real.

Per candle, ``k`` trades (``sim.candle_trades``, 12 by default), ``60 s / k`` apart from the
candle's open:

- prices walk the path open -> low -> high -> close for a green candle (close >= open) and
  open -> high -> low -> close for a red one, the pivots at trades 0, k/3, 2k/3 and k - 1
  (0, 4, 8, 11 for 12), straight
  lines (floored onto the price grid) between them: every trade lies within [low, high],
  the first is the open, the last the close, and the extremes are hit exactly;
- the candle's volume is split evenly, the remainder one unit each to the first trades, so
  the quantities sum to the volume exactly;
- a trade that moved the price down was a sell (buyer is maker), otherwise a buy;
- a book ticker one tick wide is published just before each trade, the trade on its
  touched side: bid = price for a sell (ask one tick above), ask = price for a buy.

The grid: prices in units of ``10**-price_decimals`` and volumes of ``10**-qty_decimals``,
the most decimals any value of the file has (BTCUSDT 1m: 0.01 USDT and 0.000001 BTC), so
every value of the file is exact on it and a served 1m bar reproduces its candle exactly.

The file is split at ``start_index``: candles before it are history (served by REST for
hydration, never played), candles from it on are the replay. Time: at a whole speed N a sim
minute holds N candles (speed 1: the real 1m bars; 60: one real minute a second, and each
sim 1m bar is a real hour), so the sim starts on a minute and history bars group N candles.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from common.errors import ConfigError, DataError, DecodeError
from services.exchange_sim.recorded_market import BOOK, TRADE, Capture, string_decimals, string_units
from services.exchange_sim.engine import base_factor, round_prices
from services.exchange_sim.klines import FIELDS, MINUTE_MS
from services.exchange_sim.symbols import SymbolSpec

DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLED_CANDLES = DATA_DIR / "BTCUSDT_1m_2024-12.csv"
SYNTHETIC_TAG = "SYNTHETIC-FROM-CANDLES"  # exchangeInfo underlyingSubType tag in candles mode
SOURCE_LABEL = "candles-synthesized"  # /_sim/stats "source" in candles mode

TRADES_PER_CANDLE = 12  # default: a visible path; events/s = symbols x speed / 60 x 2k
#                        (300 symbols at speed 60: 7,200/s, far below the tick source)


def check_trades_per_candle(k: int) -> None:
    """At least the four pivots, and a whole number of ms apart (loops stay minute-aligned)."""
    if not 4 <= k <= 60 or MINUTE_MS % k:
        raise ConfigError("trades per candle must be within 4..60 and divide 60000")


def pivots(k: int) -> tuple[int, int, int, int]:
    """Trade positions of the open, the first extreme, the second extreme and the close."""
    return (0, k // 3, 2 * k // 3, k - 1)


@dataclass(frozen=True, kw_only=True, eq=False)
class Candles:
    """A candle file on the integer grid, oldest first, one row per minute."""

    symbol: str
    price_decimals: int
    qty_decimals: int
    open_ms: np.ndarray  # int64, bar open time, UTC ms
    o: np.ndarray  # int64 price units
    h: np.ndarray
    l: np.ndarray  # noqa: E741 (the candle's low)
    c: np.ndarray
    v: np.ndarray  # int64 quantity units

    @property
    def n(self) -> int:
        return int(self.o.shape[0])


def _open_ms(close_datetime: str) -> int:
    """``2024-12-01 00:00:59.999000+01:00`` -> the bar's open in UTC ms (close + 1 ms - 1 min)."""
    close = datetime.fromisoformat(close_datetime)
    return round(close.timestamp() * 1000) + 1 - MINUTE_MS


def load_candles(path: str | Path | None = None, symbol: str = "BTCUSDT") -> Candles:
    """Read a 1m candle CSV (columns ``open,high,low,close,volume,...,close_datetime``)."""
    p = Path(path) if path else BUNDLED_CANDLES
    with open(p, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DecodeError(f"{p}: no candles")
    try:
        pdec = max(string_decimals(r[k]) for r in rows for k in ("open", "high", "low", "close"))
        qdec = max(string_decimals(r["volume"]) for r in rows)
        cols = {k: np.array([string_units(r[k], pdec if k != "volume" else qdec) for r in rows], np.int64)
                for k in ("open", "high", "low", "close", "volume")}
        open_ms = np.array([_open_ms(r["close_datetime"]) for r in rows], np.int64)
    except (KeyError, ValueError) as exc:
        raise DecodeError(f"{p}: not a candle file: {exc}") from exc
    if np.any(np.diff(open_ms) != MINUTE_MS):
        raise DecodeError(f"{p}: candles must be 1m and contiguous")
    return Candles(symbol=symbol, price_decimals=pdec, qty_decimals=qdec, open_ms=open_ms,
                   o=cols["open"], h=cols["high"], l=cols["low"], c=cols["close"], v=cols["volume"])


def synthesize(o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray,  # noqa: E741
               v: np.ndarray, prev_close: np.ndarray,
               k: int = TRADES_PER_CANDLE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trades inside candles (pure, vectorized): (price, qty, buyer_is_maker), each (n, k)."""
    check_trades_per_candle(k)
    if v.size and int(v.min()) < k:  # every synthesized trade needs at least one unit
        raise DecodeError(f"a candle's volume is below {k} quantity units")
    n = o.shape[0]
    piv = pivots(k)
    green = c >= o
    path = np.stack([o, np.where(green, l, h), np.where(green, h, l), c], axis=1)
    price = np.empty((n, k), np.int64)
    for seg in range(3):
        a, b = piv[seg], piv[seg + 1]
        pa, pb = path[:, seg:seg + 1], path[:, seg + 1:seg + 2]
        steps = np.arange(a, b + 1, dtype=np.int64)[None, :] - a
        price[:, a:b + 1] = pa + (pb - pa) * steps // (b - a)
    qty = np.repeat((v // k)[:, None], k, axis=1)
    qty += np.arange(k)[None, :] < (v % k)[:, None]
    before = np.concatenate([prev_close[:, None], price[:, :-1]], axis=1)
    maker = price < before
    return price, qty, maker


def synthesize_all(cd: Candles, k: int = TRADES_PER_CANDLE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trades of every candle of the file, once (history slices them per symbol)."""
    return synthesize(cd.o, cd.h, cd.l, cd.c, cd.v, _prev_close(cd, 0, cd.n), k)


def _prev_close(cd: Candles, lo: int, hi: int) -> np.ndarray:
    """Closes before candles ``[lo, hi)`` (the first candle of the file: its own open)."""
    prev = cd.c[max(lo - 1, 0):hi - 1]
    return prev if lo > 0 else np.concatenate([cd.o[:1], prev])


def to_capture(cd: Candles, start_index: int, stop_index: int | None = None,
               k: int = TRADES_PER_CANDLE) -> Capture:
    """Candles ``[start_index, stop_index)`` as a ``Capture``: per trade, its book ticker then
    the trade itself."""
    lo, hi = start_index, cd.n if stop_index is None else stop_index
    if not 0 <= lo < hi:
        raise DataError("start_index must leave at least one candle to replay")
    price, qty, maker = synthesize(cd.o[lo:hi], cd.h[lo:hi], cd.l[lo:hi], cd.c[lo:hi],
                                   cd.v[lo:hi], _prev_close(cd, lo, hi), k)
    n_t = price.size
    p = price.ravel()
    q = qty.ravel()
    m = maker.ravel()
    t = (cd.open_ms[lo:hi, None] + np.arange(k)[None, :] * (MINUTE_MS // k)).ravel()
    kind = np.empty(2 * n_t, np.uint8)
    kind[0::2], kind[1::2] = BOOK, TRADE
    e_ms = np.repeat(t, 2)
    ident = np.empty(2 * n_t, np.int64)
    ident[1::2] = lo * k + 1 + np.arange(n_t)  # trade ids count from the file start
    ident[0::2] = ident[1::2]  # update ids: one per book ticker, increasing too
    p1 = np.empty(2 * n_t, np.int64)
    p2 = np.zeros(2 * n_t, np.int64)
    p1[1::2] = p
    p1[0::2] = np.where(m, p, p - 1)  # bid: the trade price for a sell, one tick below for a buy
    p2[0::2] = p1[0::2] + 1
    q1 = np.repeat(q, 2)
    q2 = np.zeros(2 * n_t, np.int64)
    q2[0::2] = q
    next_trade = np.full(2 * n_t, -1, np.int64)
    next_trade[1:-2:2] = np.arange(3, 2 * n_t, 2)
    maker_rows = np.zeros(2 * n_t, bool)
    maker_rows[1::2] = m
    return Capture(
        symbol=cd.symbol, price_decimals=cd.price_decimals, qty_decimals=cd.qty_decimals,
        tick_units=1, step_units=1,  # the grid is the file's own decimals
        kind=kind, e_ms=e_ms, t_ms=e_ms.copy(), ident=ident,
        p1=p1, q1=q1, p2=p2, q2=q2, maker=maker_rows, x_code=np.zeros(2 * n_t, np.uint8),
        x_values=("MARKET",), next_trade=next_trade, n_trades=n_t, n_books=n_t,
    )


MIN_REPLAY_BARS = 60  # history never eats the last sim hour of the file: keep that to replay


def history_capacity(cd: Candles, bars: int, minutes_per_bar: int) -> int:
    """How many of ``bars`` history bars fit, leaving ``MIN_REPLAY_BARS`` sim minutes to replay
    (BTCUSDT 1m: all 500 up to speed 74; 636 at speed 60)."""
    return max(0, min(bars, cd.n // minutes_per_bar - MIN_REPLAY_BARS))


def minutes_per_bar(speed: float) -> int:
    """Real candles per sim 1m bar: the speed, when it is a whole number (else bars are cut)."""
    return max(1, int(speed)) if float(speed).is_integer() else max(1, round(speed))


def align_specs(specs: tuple[SymbolSpec, ...], bar_span_ms: int) -> tuple[SymbolSpec, ...]:
    """Start every symbol on a candle-group boundary, so its sim minutes hold whole candles."""
    return tuple(replace(s, offset_ms=s.offset_ms - s.offset_ms % bar_span_ms) for s in specs)


def history_bars(cd: Candles, cap: Capture, spec: SymbolSpec, *, start_index: int,
                 bars: int, per_bar: int, end_ms: int, k: int = TRADES_PER_CANDLE,
                 synth: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The ``bars`` sim 1m bars before ``spec``'s first played one (pure), as KlineBook rows.

    Built from the same synthesized trades the replay would have played (same prices on the
    symbol's grid, same quantities), ``per_bar`` real candles to a bar, opening one minute
    apart and ending at ``end_ms`` (the sim start): OHLCV equal the real candles'.
    ``synth``: ``synthesize_all(cd, k)``, when called for many symbols.
    """
    out = np.zeros((bars, FIELDS), np.int64)
    if bars == 0:
        return out
    first = start_index + spec.offset_ms // MINUTE_MS  # first candle this symbol plays
    lo = first - bars * per_bar
    if lo < 0:
        raise DataError("not enough candles before the replay for this history")
    if synth is not None:
        price, qty, maker = (a[lo:first] for a in synth)
    else:
        price, qty, maker = synthesize(cd.o[lo:first], cd.h[lo:first], cd.l[lo:first],
                                       cd.c[lo:first], cd.v[lo:first], _prev_close(cd, lo, first), k)
    price = round_prices(price, base_factor(cap, spec), spec.tick_units)
    qty = qty * spec.qty_mult
    w = per_bar * k  # trades per bar
    p, q, m = price.reshape(bars, w), qty.reshape(bars, w), maker.reshape(bars, w)
    taker = np.where(m, 0, q)
    ids = spec.trade_id_base - (first - lo) * k + np.arange(bars * w).reshape(bars, w)
    out[:, 0] = end_ms - (bars - np.arange(bars)) * MINUTE_MS
    out[:, 1], out[:, 2], out[:, 3], out[:, 4] = p[:, 0], p.max(1), p.min(1), p[:, -1]
    out[:, 5], out[:, 6], out[:, 7] = q.sum(1), (p * q).sum(1), w
    out[:, 8], out[:, 9] = taker.sum(1), (p * taker).sum(1)
    out[:, 10], out[:, 11] = ids[:, 0], ids[:, -1]
    return out
