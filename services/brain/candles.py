"""Candle aggregation: trade records in, closed candles out (numba, no per-tick allocation).

Rules (the whole state machine, per symbol, per timeframe):

- Only trade records count (``Kind.TRADE`` / ``Kind.AGG_TRADE``, narrowed by ``trade_kinds``
  in ``new_state``). BOOK and MARK records are ignored here (``conflate`` keeps them).
- Firewall: a trade with a symbol id outside the table, a non-finite or non-positive price, a
  non-finite or negative quantity, or a non-positive event time is counted in ``rejects``
  under its reason and touches nothing. A NaN can therefore never reach a candle, and an
  out-of-range symbol id can never write outside the arrays (numba does not bounds-check).
  Why looser than the feed's firewall (``services/feed/firewall.py``: no price ceiling here,
  a zero size accepted): this gate only protects the arrays; every ring record already
  passed the firewall, and tests/fuzz/test_firewall_agreement.py pins that this gate takes
  every record the firewall's contract (``firewall.tick_reason``) takes.
- Trades that are not MARKET (``Flag.NON_MARKET``: insurance fund, ADL) are skipped and
  counted: they print at bankruptcy prices, far from the book, and would draw false wicks
  that SMC would read as liquidity sweeps. Binance leaves them out of ``aggTrade`` for the
  same reason.
- A trade goes to bucket ``event_ms // interval_ms * interval_ms`` (epoch aligned, like
  Binance klines). A trade for a later bucket than the symbol's current candle closes that
  candle (appends it to ``out``) and opens a new one: candles close on event time, on the
  first trade of a later bucket. A trade at exactly ``open_ms + interval_ms`` is the first
  trade of the next candle.
- A trade for the current bucket is folded in. Inside a bucket the order of arrival does not
  matter for open/close: the open is the earliest trade by event time and the close the
  latest (ties: arrival order), so a trade a few ms out of order inside a minute still lands
  where it belongs.
- A trade for an *earlier* bucket than the current candle (across streams ``E`` can step
  back ~30 ms over a boundary), or for a bucket that ended at or before the watermark, is
  late: counted in ``stats[STAT_LATE]`` and dropped. A closed candle is never changed or
  reopened: what was published stays true (causality).
- ``flush_due(now_ms, grace_ms)`` raises the watermark to ``now_ms - grace_ms`` (never
  lowers it) and closes, at every level, the open candles whose bucket ended at or before
  it. The watermark is global, not per symbol, so that every level agrees on what is final:
  once a 15 m candle was flushed, a straggler inside its quarter is late for the 1 m level
  too, even if its own minute never had a candle (else the 1 m candles would stop adding up
  to the published 15 m one).
- A bucket without trades emits no candle (no zero-volume filler): the consumer knows the
  interval and forward-fills if it wants to. ``flush_due`` runs on a timer so that the last
  candle of a quiet symbol is not held back until its next trade.

Timeframes: level 0 is the base interval (1 m); coarser levels (15 m, ...) are rolled up from
the base candles *as they close*, inside the same kernel, rather than fed trade by trade from
a second state. Why: (1) a 15 m candle is then exactly the aggregate of the 1 m candles it
contains, bit for bit (the float sums are taken in the same order), and it sees the same
late/reject decisions; a second state fed with the same trades would disagree whenever a
trade is late for the 1 m candle but not for the 15 m one, and in the last ulp of every
volume; (2) per-trade work is paid once, coarse levels are touched once per base close;
(3) there is no lag: coarse boundaries are base boundaries, so the trade (or timer) that
closes the last 1 m candle of a quarter closes the 15 m candle in the same call, right after
it in ``out``. The price is that the *open* coarse candle excludes the still-open base
candle; only closed candles are published, so nothing observable depends on it.

State layout (``CandleState``, arrays of shape ``(levels, max_symbols)``, level 0 = base):
``open_ms`` bucket start of the current or last closed candle (-1 = none yet), ``first_ms`` /
``last_ms`` event time of its earliest / latest trade, ``open high low close volume
quote_volume buy_volume`` (float64; volume in base units, ``buy_volume`` = taker buys, Binance
``m`` false), ``trades first_id last_id`` (int64), ``flags`` (uint8: OR of the trades'
SYNTHETIC/DERIVED bits). A candle is open iff ``trades > 0``; closing sets ``trades`` to 0 and
keeps ``open_ms`` so that a late trade for it is recognised. Closed candles go to ``out``
(``CANDLE_DTYPE``), ``out_count[0]`` of them; the shell reads ``closed(state)`` and then
calls ``reset_output(state)``.

Output sizing: when ``out`` is full, further closed candles are dropped and counted in
``stats[STAT_OUT_DROPPED]`` (never a write past the end). A batch of ``n`` records closes at
most ``n * levels`` candles and a flush at most ``max_symbols * levels``, so
``out_capacity >= levels * max(batch, max_symbols)`` with a reset after every call can never
drop.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
from numba import njit

from common import wire
from common.errors import ConfigError
from common.records import TRADE_KINDS, Flag

INTERVAL_1M_MS = 60_000
INTERVAL_15M_MS = 900_000
DEFAULT_INTERVALS_MS = (INTERVAL_1M_MS, INTERVAL_15M_MS)
MAX_INTERVAL_MS = 2**31 - 1  # CANDLE_DTYPE stores interval_ms as int32 (24.8 days)
FLUSH_GRACE_MS = 2_000  # how long after a bucket ends a straggler may still arrive
DEFAULT_OUT_CAPACITY = 65_536  # closed candles between two resets

NO_BUCKET = -1  # open_ms of a symbol that has never traded

CLOSED_BY_TRADE = 1  # closed by the first trade of a later bucket
CLOSED_BY_FLUSH = 2  # closed by flush_due (timer), no later trade seen yet

# flag bits a candle inherits from its trades (demo data must say it is demo data)
CARRIED_FLAGS = int(Flag.SYNTHETIC | Flag.DERIVED)
_BUYER_IS_MAKER = int(Flag.BUYER_IS_MAKER)
_NON_MARKET = int(Flag.NON_MARKET)

# stats[] indices
STAT_TRADES = 0  # trades folded into a candle
STAT_LATE = 1  # trades for a bucket already closed (dropped)
STAT_NON_MARKET = 2  # insurance-fund / ADL trades (skipped)
STAT_IGNORED = 3  # records of other kinds (BOOK, MARK, or a trade kind not selected)
STAT_CLOSED = 4  # candles closed, all levels, cumulative
STAT_OUT_DROPPED = 5  # closed candles lost because out was full
STAT_MAX_EVENT_MS = 6  # latest event time of an accepted trade (a data-driven clock)
STAT_INCONSISTENT = 7  # a coarse level saw a base candle older than its own (a bug if > 0)
STAT_WATERMARK_MS = 8  # buckets ending at or before this are final (set by flush_due)
N_STATS = 9
STAT_NAMES = ("trades", "late", "non_market", "ignored", "closed", "out_dropped",
              "max_event_ms", "inconsistent", "watermark_ms")

# rejects[] indices (the secondary firewall; the feed's firewall is the first)
REJECT_SYMBOL = 0  # symbol_id >= max_symbols
REJECT_PRICE_NONFINITE = 1
REJECT_PRICE_NONPOSITIVE = 2
REJECT_QTY_NONFINITE = 3
REJECT_QTY_NEGATIVE = 4
REJECT_TIME = 5  # event_ms <= 0 (missing)
N_REJECTS = 6
REJECT_NAMES = ("symbol", "price_nonfinite", "price_nonpositive", "qty_nonfinite",
                "qty_negative", "time")

CANDLE_DTYPE = np.dtype(
    [
        ("open_ms", "<i8"),  # bucket start, ms since the epoch
        ("close_ms", "<i8"),  # open_ms + interval_ms - 1 (Binance kline convention)
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),  # base asset
        ("quote_volume", "<f8"),  # sum of price * qty
        ("buy_volume", "<f8"),  # taker buys, base asset
        ("trades", "<i8"),
        ("first_id", "<i8"),
        ("last_id", "<i8"),
        ("interval_ms", "<i4"),
        ("symbol_id", "<u2"),
        ("flags", "u1"),  # CARRIED_FLAGS bits of the trades
        ("closed_by", "u1"),  # CLOSED_BY_TRADE / CLOSED_BY_FLUSH
    ]
)
assert CANDLE_DTYPE.itemsize == 104, CANDLE_DTYPE.itemsize


class CandleState(NamedTuple):
    """Preallocated candle state; the container is frozen, the arrays are the mutable core."""

    intervals_ms: np.ndarray  # int64[levels], ascending, each a multiple of intervals_ms[0]
    open_ms: np.ndarray  # int64[levels, symbols]
    first_ms: np.ndarray  # int64[levels, symbols]
    last_ms: np.ndarray  # int64[levels, symbols]
    open: np.ndarray  # float64[levels, symbols]
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    buy_volume: np.ndarray
    trades: np.ndarray  # int64[levels, symbols]; 0 = no open candle
    first_id: np.ndarray  # int64[levels, symbols]
    last_id: np.ndarray
    flags: np.ndarray  # uint8[levels, symbols]
    out: np.ndarray  # CANDLE_DTYPE[out_capacity]
    out_count: np.ndarray  # int64[1]
    stats: np.ndarray  # int64[N_STATS]
    rejects: np.ndarray  # int64[N_REJECTS]
    kind_mask: int  # bit (1 << kind) set for each record kind that feeds candles
    skip_non_market: bool


def new_state(
    max_symbols: int,
    intervals_ms: int | Sequence[int] = DEFAULT_INTERVALS_MS,
    out_capacity: int = DEFAULT_OUT_CAPACITY,
    *,
    trade_kinds: Sequence[int] = TRADE_KINDS,
    skip_non_market: bool = True,
) -> CandleState:
    """Allocate the state once; every later call reuses these arrays.

    ``intervals_ms`` is the base interval or a tuple (base first, each coarser one a multiple
    of the base). Feed one of TRADE or AGG_TRADE per symbol, not both: ``trade_kinds`` narrows
    which kinds count, or the volume is counted twice.
    """
    ivs = (intervals_ms,) if isinstance(intervals_ms, int) else tuple(intervals_ms)
    if not ivs or ivs[0] <= 0 or any(b <= a for a, b in zip(ivs, ivs[1:])):
        raise ConfigError(f"intervals_ms must be positive and ascending: {ivs}")
    if any(iv % ivs[0] for iv in ivs) or ivs[-1] > MAX_INTERVAL_MS:
        raise ConfigError(f"each interval must be a multiple of the base and fit int32: {ivs}")
    if max_symbols <= 0 or max_symbols > 65_536 or out_capacity <= 0:
        raise ConfigError(f"bad sizes: max_symbols={max_symbols} out_capacity={out_capacity}")
    shape = (len(ivs), max_symbols)
    kind_mask = 0
    for k in trade_kinds:
        kind_mask |= 1 << int(k)

    def i8() -> np.ndarray:
        return np.zeros(shape, np.int64)

    def f8() -> np.ndarray:
        return np.zeros(shape, np.float64)

    return CandleState(
        intervals_ms=np.asarray(ivs, np.int64),
        open_ms=np.full(shape, NO_BUCKET, np.int64),
        first_ms=i8(), last_ms=i8(),
        open=f8(), high=f8(), low=f8(), close=f8(),
        volume=f8(), quote_volume=f8(), buy_volume=f8(),
        trades=i8(), first_id=i8(), last_id=i8(),
        flags=np.zeros(shape, np.uint8),
        out=np.zeros(out_capacity, CANDLE_DTYPE),
        out_count=np.zeros(1, np.int64),
        stats=np.zeros(N_STATS, np.int64),
        rejects=np.zeros(N_REJECTS, np.int64),
        kind_mask=kind_mask,
        skip_non_market=bool(skip_non_market),
    )


def closed(state: CandleState) -> np.ndarray:
    """The candles closed since the last ``reset_output`` (a view: read it, then reset)."""
    return state.out[: state.out_count[0]]


def message(c: np.void, name: Callable[[int], str]) -> tuple[wire.CandleClosed, int]:
    """One row of ``closed`` as a bus message, with its event time (ns: its close); ``name``
    gives a ring symbol id's symbol."""
    return wire.CandleClosed(
        symbol=name(int(c["symbol_id"])), interval_s=int(c["interval_ms"]) // 1000, open_ms=int(c["open_ms"]),
        close_ms=int(c["close_ms"]), open=float(c["open"]), high=float(c["high"]), low=float(c["low"]),
        close=float(c["close"]), volume=float(c["volume"]), quote_volume=float(c["quote_volume"]),
        trades=int(c["trades"]), buy_volume=float(c["buy_volume"])), int(c["close_ms"]) * 1_000_000


def reset_output(state: CandleState) -> None:
    """Mark the output buffer consumed; the next close overwrites it from slot 0."""
    state.out_count[0] = 0


def stats_dict(state: CandleState) -> dict[str, int]:
    """Counters by name, for the shell's stats file."""
    d = {name: int(state.stats[i]) for i, name in enumerate(STAT_NAMES)}
    d.update({"reject_" + name: int(state.rejects[i]) for i, name in enumerate(REJECT_NAMES)})
    return d


# --------------------------------------------------------------------------- kernels


@njit(cache=True, nogil=True)
def _emit(st, k, s, closed_by):
    """Append candle (level k, symbol s) to out and mark it closed."""
    j = st.out_count[0]
    if j < st.out.shape[0]:
        r = st.out[j]
        iv = st.intervals_ms[k]
        r.open_ms = st.open_ms[k, s]
        r.close_ms = st.open_ms[k, s] + iv - 1
        r.open = st.open[k, s]
        r.high = st.high[k, s]
        r.low = st.low[k, s]
        r.close = st.close[k, s]
        r.volume = st.volume[k, s]
        r.quote_volume = st.quote_volume[k, s]
        r.buy_volume = st.buy_volume[k, s]
        r.trades = st.trades[k, s]
        r.first_id = st.first_id[k, s]
        r.last_id = st.last_id[k, s]
        r.interval_ms = iv
        r.symbol_id = s
        r.flags = st.flags[k, s]
        r.closed_by = closed_by
        st.out_count[0] = j + 1
    else:
        st.stats[STAT_OUT_DROPPED] += 1
    st.stats[STAT_CLOSED] += 1
    st.trades[k, s] = 0


@njit(cache=True, nogil=True)
def _roll_up(st, s, closed_by):
    """Fold the just-closed base candle of symbol s into every coarser level."""
    b = st.open_ms[0, s]
    for k in range(1, st.intervals_ms.shape[0]):
        iv = st.intervals_ms[k]
        bk = b // iv * iv
        live = st.trades[k, s] > 0
        if live and bk == st.open_ms[k, s]:
            if st.high[0, s] > st.high[k, s]:
                st.high[k, s] = st.high[0, s]
            if st.low[0, s] < st.low[k, s]:
                st.low[k, s] = st.low[0, s]
            st.close[k, s] = st.close[0, s]
            st.last_ms[k, s] = st.last_ms[0, s]
            st.volume[k, s] += st.volume[0, s]
            st.quote_volume[k, s] += st.quote_volume[0, s]
            st.buy_volume[k, s] += st.buy_volume[0, s]
            st.trades[k, s] += st.trades[0, s]
            st.first_id[k, s] = min(st.first_id[k, s], st.first_id[0, s])
            st.last_id[k, s] = max(st.last_id[k, s], st.last_id[0, s])
            st.flags[k, s] |= st.flags[0, s]
        elif bk > st.open_ms[k, s]:
            if live:
                # unreachable: update/flush close the coarse candle before its successor's
                # first base candle closes; kept so a bug cannot merge two buckets
                _emit(st, k, s, closed_by)
            st.open_ms[k, s] = bk
            st.first_ms[k, s] = st.first_ms[0, s]
            st.last_ms[k, s] = st.last_ms[0, s]
            st.open[k, s] = st.open[0, s]
            st.high[k, s] = st.high[0, s]
            st.low[k, s] = st.low[0, s]
            st.close[k, s] = st.close[0, s]
            st.volume[k, s] = st.volume[0, s]
            st.quote_volume[k, s] = st.quote_volume[0, s]
            st.buy_volume[k, s] = st.buy_volume[0, s]
            st.trades[k, s] = st.trades[0, s]
            st.first_id[k, s] = st.first_id[0, s]
            st.last_id[k, s] = st.last_id[0, s]
            st.flags[k, s] = st.flags[0, s]
        else:
            # the coarse candle for this bucket is already closed: the watermark makes this
            # unreachable; counting it beats silently publishing a 15 m candle twice
            st.stats[STAT_INCONSISTENT] += 1


@njit(cache=True, nogil=True)
def _close_base(st, s, closed_by):
    _roll_up(st, s, closed_by)  # first: _emit zeroes the base trade count
    _emit(st, 0, s, closed_by)


@njit(cache=True, nogil=True)
def update_candles(st, batch, n):
    """Fold ``batch[:n]`` into the candles; return how many closed candles ``out`` holds."""
    n_sym = st.open_ms.shape[1]
    n_lev = st.intervals_ms.shape[0]
    base_iv = st.intervals_ms[0]
    for i in range(n):
        rec = batch[i]
        kind = rec.kind
        if kind > 63 or (st.kind_mask >> kind) & 1 == 0:  # a shift past 63 bits is undefined
            st.stats[STAT_IGNORED] += 1
            continue
        s = np.int64(rec.symbol_id)
        p = rec.price
        q = rec.qty
        t = rec.event_ms
        if s >= n_sym:
            st.rejects[REJECT_SYMBOL] += 1
            continue
        if not math.isfinite(p):
            st.rejects[REJECT_PRICE_NONFINITE] += 1
            continue
        if p <= 0.0:
            st.rejects[REJECT_PRICE_NONPOSITIVE] += 1
            continue
        if not math.isfinite(q):
            st.rejects[REJECT_QTY_NONFINITE] += 1
            continue
        if q < 0.0:
            st.rejects[REJECT_QTY_NEGATIVE] += 1
            continue
        if t <= 0:
            st.rejects[REJECT_TIME] += 1
            continue
        f = rec.flags
        if st.skip_non_market and f & _NON_MARKET:
            st.stats[STAT_NON_MARKET] += 1
            continue

        b = t // base_iv * base_iv
        cur = st.open_ms[0, s]
        live = st.trades[0, s] > 0
        if b < cur or (b == cur and not live) or b + base_iv <= st.stats[STAT_WATERMARK_MS]:
            st.stats[STAT_LATE] += 1
            continue
        st.stats[STAT_TRADES] += 1
        if t > st.stats[STAT_MAX_EVENT_MS]:
            st.stats[STAT_MAX_EVENT_MS] = t
        buy = q if f & _BUYER_IS_MAKER == 0 else 0.0

        if b == cur:  # same bucket: fold in
            if p > st.high[0, s]:
                st.high[0, s] = p
            if p < st.low[0, s]:
                st.low[0, s] = p
            if t < st.first_ms[0, s]:
                st.first_ms[0, s] = t
                st.open[0, s] = p
            if t >= st.last_ms[0, s]:
                st.last_ms[0, s] = t
                st.close[0, s] = p
            st.volume[0, s] += q
            st.quote_volume[0, s] += p * q
            st.buy_volume[0, s] += buy
            st.trades[0, s] += 1
            tid = rec.id
            if tid < st.first_id[0, s]:
                st.first_id[0, s] = tid
            if tid > st.last_id[0, s]:
                st.last_id[0, s] = tid
            st.flags[0, s] |= f & CARRIED_FLAGS
            continue

        # a later bucket: close what this trade proves complete, then open the new candle
        if live:
            _close_base(st, s, CLOSED_BY_TRADE)
        for k in range(1, n_lev):
            iv = st.intervals_ms[k]
            if st.trades[k, s] > 0 and t // iv * iv > st.open_ms[k, s]:
                _emit(st, k, s, CLOSED_BY_TRADE)
        st.open_ms[0, s] = b
        st.first_ms[0, s] = t
        st.last_ms[0, s] = t
        st.open[0, s] = p
        st.high[0, s] = p
        st.low[0, s] = p
        st.close[0, s] = p
        st.volume[0, s] = q
        st.quote_volume[0, s] = p * q
        st.buy_volume[0, s] = buy
        st.trades[0, s] = 1
        st.first_id[0, s] = rec.id
        st.last_id[0, s] = rec.id
        st.flags[0, s] = f & CARRIED_FLAGS
    return st.out_count[0]


@njit(cache=True, nogil=True)
def flush_due(st, now_ms, grace_ms=FLUSH_GRACE_MS):
    """Raise the watermark to ``now_ms - grace_ms``; close every candle that ended by it.

    ``now_ms`` should be on the exchange's clock (for example ``stats[STAT_MAX_EVENT_MS]``
    plus the time since it was seen): a local clock running ahead would close candles while
    their trades are still in flight, and those trades would then be late. Deterministic in
    ``now_ms``. Returns how many closed candles ``out`` holds, like ``update_candles``.
    """
    wm = now_ms - grace_ms
    if wm > st.stats[STAT_WATERMARK_MS]:
        st.stats[STAT_WATERMARK_MS] = wm
    wm = st.stats[STAT_WATERMARK_MS]
    n_sym = st.open_ms.shape[1]
    base_iv = st.intervals_ms[0]
    for s in range(n_sym):
        if st.trades[0, s] > 0 and st.open_ms[0, s] + base_iv <= wm:
            _close_base(st, s, CLOSED_BY_FLUSH)
    # after the base pass: a coarse bucket ends on a base boundary, so its last base candle
    # was due at the same watermark and has just been rolled in
    for k in range(1, st.intervals_ms.shape[0]):
        iv = st.intervals_ms[k]
        for s in range(n_sym):
            if st.trades[k, s] > 0 and st.open_ms[k, s] + iv <= wm:
                _emit(st, k, s, CLOSED_BY_FLUSH)
    return st.out_count[0]
