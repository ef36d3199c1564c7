"""Conflation buffer: the latest market state per symbol, published at a fixed rate.

The hot path sees every tick; the non-hot subscribers (dashboard, capture) only need the
latest state of each symbol a few times a second. ``update_conflated`` folds a batch of
records into per-symbol arrays and marks the symbol dirty; the shell calls ``drain_dirty`` on
its timer (e.g. 10 Hz) and publishes one ``TICK_UPDATE`` per returned symbol. Whatever
changed a symbol more than once between two drains was conflated away, which is the point.

Rules:

- TRADE / AGG_TRADE set last price/qty/time (non-MARKET trades are skipped, as in
  ``candles``: an insurance-fund print is not the market's last price). BOOK sets best
  bid/ask and sizes, MARK sets the mark price. Each group keeps its own event time.
- Firewall (the feed's is the first): an out-of-range symbol id, a non-finite or
  non-positive price, a non-finite or negative size, a crossed book (bid >= ask) or a
  non-positive event time is counted under its reason and changes nothing. ``TickUpdate``
  refuses non-finite floats, so a NaN that got in here would crash the publisher.
  Looser than the feed's firewall (``services/feed/firewall.py``: no price ceiling, a zero
  size accepted; every ring record already passed it) but for one rule: a locked book
  (bid == ask), which the firewall lets through to the strategy, is counted as crossed here
  and not shown. tests/fuzz/test_firewall_agreement.py pins both.
- An update older (by event time) than what its group already holds is stale: counted and
  dropped, so a straggler from another stream cannot roll the state back. Equal times are
  applied (arrival order breaks the tie: Binance stamps in ms, many updates share one).
- Dirty symbols are listed in the order they first changed since the last drain.

State layout (``ConflateState``, arrays of length ``max_symbols``): ``last_price
last_qty`` float64 and ``trade_ms`` int64; ``bid bid_qty ask ask_qty`` float64 and
``book_ms``; ``mark`` float64 and ``mark_ms``; ``event_ms`` latest event time of any group;
``flags`` uint8 (record flags of the latest update; SYNTHETIC means demo data);
``dirty`` uint8, ``dirty_ids`` int64 (the first ``n_dirty[0]`` are pending), ``stats``,
``rejects``. A price of 0 means "not seen yet", as in ``TickUpdate``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from common.errors import ConfigError
from common.records import Flag, Kind

CONFLATE_INTERVAL_S = 0.1  # suggested drain period: 10 Hz is smooth for a human, cheap on PUB

_TRADE = int(Kind.TRADE)
_AGG_TRADE = int(Kind.AGG_TRADE)
_BOOK = int(Kind.BOOK)
_MARK = int(Kind.MARK)
_NON_MARKET = int(Flag.NON_MARKET)
_SYNTHETIC = int(Flag.SYNTHETIC)

# stats[] indices
STAT_UPDATES = 0  # updates applied
STAT_FLUSHED = 1  # symbols handed out by drain_dirty (= TICK_UPDATEs published)
STAT_STALE = 2  # older than the state of their group (dropped)
STAT_NON_MARKET = 3  # insurance-fund / ADL trades (skipped)
STAT_IGNORED = 4  # unknown record kind
N_STATS = 5
STAT_NAMES = ("updates", "flushed", "stale", "non_market", "ignored")

# rejects[] indices
REJECT_SYMBOL = 0
REJECT_PRICE = 1  # non-finite or <= 0 (trade price, bid, ask, mark)
REJECT_QTY = 2  # non-finite or < 0 (trade qty, bid/ask size)
REJECT_CROSSED = 3  # bid >= ask
REJECT_TIME = 4  # event_ms <= 0
N_REJECTS = 5
REJECT_NAMES = ("symbol", "price", "qty", "crossed", "time")


class ConflateState(NamedTuple):
    """Preallocated latest-tick state; the container is frozen, the arrays are mutable."""

    last_price: np.ndarray  # float64[symbols]
    last_qty: np.ndarray
    trade_ms: np.ndarray  # int64[symbols]
    bid: np.ndarray
    bid_qty: np.ndarray
    ask: np.ndarray
    ask_qty: np.ndarray
    book_ms: np.ndarray
    mark: np.ndarray
    mark_ms: np.ndarray
    event_ms: np.ndarray
    flags: np.ndarray  # uint8[symbols]
    dirty: np.ndarray  # uint8[symbols]
    dirty_ids: np.ndarray  # int64[symbols]
    n_dirty: np.ndarray  # int64[1]
    stats: np.ndarray  # int64[N_STATS]
    rejects: np.ndarray  # int64[N_REJECTS]


def new_state(max_symbols: int) -> ConflateState:
    """Allocate once; every later call reuses these arrays."""
    if max_symbols <= 0 or max_symbols > 65_536:
        raise ConfigError(f"bad max_symbols: {max_symbols}")

    def f8() -> np.ndarray:
        return np.zeros(max_symbols, np.float64)

    def i8() -> np.ndarray:
        return np.zeros(max_symbols, np.int64)

    return ConflateState(
        last_price=f8(), last_qty=f8(), trade_ms=i8(),
        bid=f8(), bid_qty=f8(), ask=f8(), ask_qty=f8(), book_ms=i8(),
        mark=f8(), mark_ms=i8(), event_ms=i8(),
        flags=np.zeros(max_symbols, np.uint8),
        dirty=np.zeros(max_symbols, np.uint8),
        dirty_ids=i8(),
        n_dirty=np.zeros(1, np.int64),
        stats=np.zeros(N_STATS, np.int64),
        rejects=np.zeros(N_REJECTS, np.int64),
    )


def drain_dirty(state: ConflateState) -> np.ndarray:
    """Symbol ids changed since the last drain (first-change order); clears their flags.

    The result is a view of ``dirty_ids``: read it (and the state of those symbols) before
    the next ``update_conflated`` call, which reuses the slots.
    """
    n = _drain(state)
    return state.dirty_ids[:n]


def conflated(state: ConflateState) -> int:
    """Updates that were overwritten before being published (pending ones excluded)."""
    s = state.stats
    return int(s[STAT_UPDATES] - s[STAT_FLUSHED] - state.n_dirty[0])


def tick_fields(state: ConflateState, sid: int) -> dict[str, Any]:
    """The ``TickUpdate`` fields of one symbol (all but ``symbol``), as Python values."""
    return {
        "event_ms": int(state.event_ms[sid]),
        "last_price": float(state.last_price[sid]),
        "last_qty": float(state.last_qty[sid]),
        "bid": float(state.bid[sid]),
        "bid_qty": float(state.bid_qty[sid]),
        "ask": float(state.ask[sid]),
        "ask_qty": float(state.ask_qty[sid]),
        "mark": float(state.mark[sid]),
        "synthetic": bool(state.flags[sid] & _SYNTHETIC),
    }


def stats_dict(state: ConflateState) -> dict[str, int]:
    """Counters by name, for the shell's stats file."""
    d = {name: int(state.stats[i]) for i, name in enumerate(STAT_NAMES)}
    d["conflated"] = conflated(state)
    d.update({"reject_" + name: int(state.rejects[i]) for i, name in enumerate(REJECT_NAMES)})
    return d


# --------------------------------------------------------------------------- kernels


@njit(cache=True, nogil=True)
def _ok_price(x):
    return math.isfinite(x) and x > 0.0


@njit(cache=True, nogil=True)
def _ok_qty(x):
    return math.isfinite(x) and x >= 0.0


@njit(cache=True, nogil=True)
def update_conflated(st, batch, n):
    """Fold ``batch[:n]`` into the latest-tick state; return the number of dirty symbols."""
    n_sym = st.last_price.shape[0]
    for i in range(n):
        rec = batch[i]
        kind = rec.kind
        s = np.int64(rec.symbol_id)
        t = rec.event_ms
        f = rec.flags
        if kind != _TRADE and kind != _AGG_TRADE and kind != _BOOK and kind != _MARK:
            st.stats[STAT_IGNORED] += 1
            continue
        if s >= n_sym:
            st.rejects[REJECT_SYMBOL] += 1
            continue
        if t <= 0:
            st.rejects[REJECT_TIME] += 1
            continue
        if kind == _BOOK:
            bid = rec.price
            ask = rec.aux
            bq = rec.qty
            aq = np.float64(rec.aux_qty)
            if not (_ok_price(bid) and _ok_price(ask)):
                st.rejects[REJECT_PRICE] += 1
                continue
            if not (_ok_qty(bq) and _ok_qty(aq)):
                st.rejects[REJECT_QTY] += 1
                continue
            if bid >= ask:
                st.rejects[REJECT_CROSSED] += 1
                continue
            if t < st.book_ms[s]:
                st.stats[STAT_STALE] += 1
                continue
            st.bid[s] = bid
            st.bid_qty[s] = bq
            st.ask[s] = ask
            st.ask_qty[s] = aq
            st.book_ms[s] = t
        elif kind == _MARK:
            # qty carries the funding rate and aux the index price: not part of TICK_UPDATE
            m = rec.price
            if not _ok_price(m):
                st.rejects[REJECT_PRICE] += 1
                continue
            if t < st.mark_ms[s]:
                st.stats[STAT_STALE] += 1
                continue
            st.mark[s] = m
            st.mark_ms[s] = t
        else:
            p = rec.price
            q = rec.qty
            if not _ok_price(p):
                st.rejects[REJECT_PRICE] += 1
                continue
            if not _ok_qty(q):
                st.rejects[REJECT_QTY] += 1
                continue
            if f & _NON_MARKET:
                st.stats[STAT_NON_MARKET] += 1
                continue
            if t < st.trade_ms[s]:
                st.stats[STAT_STALE] += 1
                continue
            st.last_price[s] = p
            st.last_qty[s] = q
            st.trade_ms[s] = t
        if t > st.event_ms[s]:
            st.event_ms[s] = t
        st.flags[s] = f
        st.stats[STAT_UPDATES] += 1
        if st.dirty[s] == 0:
            st.dirty[s] = 1
            st.dirty_ids[st.n_dirty[0]] = s
            st.n_dirty[0] += 1
    return st.n_dirty[0]


@njit(cache=True, nogil=True)
def _drain(st):
    n = st.n_dirty[0]
    for j in range(n):
        st.dirty[st.dirty_ids[j]] = 0
    st.n_dirty[0] = 0
    st.stats[STAT_FLUSHED] += n
    return n
