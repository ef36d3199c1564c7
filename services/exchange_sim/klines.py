"""One-minute candles built from the trades the sim has played, and what derives from them.

The WebSocket ``kline_1m`` stream, REST ``/fapi/v1/klines`` and ``/fapi/v1/ticker/24hr`` all
read the same bars, folded from the same played trades, so their OHLCV always agree with the
``trade`` stream a client saw. Everything is integer: prices in the symbol's price units,
volumes in its quantity units, quote volumes in price units x quantity units (so a bar's
``q`` is exact, with ``price_decimals + qty_decimals`` decimals, as Binance prints it).

A bar is a list of twelve ints, in the order of the ``F_*`` indices below. Closed bars go to a
fixed ring per symbol (numpy, ``CAPACITY`` deep: 25 h of 1m bars, more than REST's limit of
1500 bars and the 24 h ticker window need).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MINUTE_MS = 60_000
CAPACITY = 1500  # closed 1m bars kept per symbol (= Binance's max klines limit)
DAY_MS = 86_400_000

F_OPEN_TIME, F_O, F_H, F_L, F_C, F_V, F_Q, F_N, F_TV, F_TQ, F_FIRST, F_LAST = range(12)
FIELDS = 12

INTERVALS_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000,
    "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000,
}


def new_bar(open_time: int, p: int, q: int, maker: bool, tid: int) -> list[int]:
    tv = 0 if maker else q  # taker buy: the buyer was the aggressor (m is false)
    return [open_time, p, p, p, p, q, p * q, 1, tv, tv * p, tid, tid]


def fold(bar: list[int], p: int, q: int, maker: bool, tid: int) -> None:
    """Add one trade to an open bar (in place: this runs once per played trade)."""
    if p > bar[F_H]:
        bar[F_H] = p
    elif p < bar[F_L]:
        bar[F_L] = p
    bar[F_C] = p
    bar[F_V] += q
    bar[F_Q] += p * q
    bar[F_N] += 1
    if not maker:
        bar[F_TV] += q
        bar[F_TQ] += p * q
    bar[F_LAST] = tid


def merge(bars: list[list[int]], open_time: int) -> list[int]:
    """Several consecutive bars as one (for intervals above 1m)."""
    first, last = bars[0], bars[-1]
    return [open_time, first[F_O], max(b[F_H] for b in bars), min(b[F_L] for b in bars),
            last[F_C], sum(b[F_V] for b in bars), sum(b[F_Q] for b in bars),
            sum(b[F_N] for b in bars), sum(b[F_TV] for b in bars), sum(b[F_TQ] for b in bars),
            first[F_FIRST], last[F_LAST]]


def resample(bars: list[list[int]], interval_ms: int) -> list[list[int]]:
    """1m bars (ascending) -> bars of ``interval_ms`` (aligned to the epoch, like Binance)."""
    if interval_ms == MINUTE_MS:
        return bars
    out: list[list[int]] = []
    group: list[list[int]] = []
    key = None
    for b in bars:
        k = b[F_OPEN_TIME] - b[F_OPEN_TIME] % interval_ms
        if key is not None and k != key:
            out.append(merge(group, key))
            group = []
        key = k
        group.append(b)
    if group:
        out.append(merge(group, key))  # type: ignore[arg-type]
    return out


def select(bars: list[list[int]], *, start_ms: int | None, end_ms: int | None, limit: int) -> list[list[int]]:
    """Binance's window rule: from ``start`` forward, else the last ``limit`` up to ``end``."""
    if start_ms is not None:
        bars = [b for b in bars if b[F_OPEN_TIME] >= start_ms]
    if end_ms is not None:
        bars = [b for b in bars if b[F_OPEN_TIME] <= end_ms]
    return bars[:limit] if start_ms is not None else bars[-limit:]


@dataclass
class Ticker24h:
    """What ``/fapi/v1/ticker/24hr`` reports, in integer units (None fields: no trade yet)."""

    open: int
    high: int
    low: int
    last: int
    volume: int
    quote: int
    count: int
    first_id: int
    last_id: int
    open_time: int


class KlineBook:
    """Open bar and ring of closed 1m bars for every symbol."""

    def __init__(self, n_symbols: int, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.current: list[list[int] | None] = [None] * n_symbols
        self.closed = np.zeros((n_symbols, capacity, FIELDS), np.int64)
        self.n_closed = [0] * n_symbols
        self.last_closed_open = [-1] * n_symbols

    def seed(self, sym: int, rows: np.ndarray) -> None:
        """Closed bars from before the replay, oldest first (history served for hydration)."""
        k = int(rows.shape[0])
        if self.n_closed[sym] or self.current[sym] is not None or k > self.capacity:
            raise ValueError("seed an empty symbol with at most capacity bars")  # the caller's misuse: once, at start
        if k:
            self.closed[sym, :k] = rows
            self.n_closed[sym] = k
            self.last_closed_open[sym] = int(rows[-1, F_OPEN_TIME])

    def add_trade(self, sym: int, t_ms: int, p: int, q: int, maker: bool, tid: int) -> list[int] | None:
        """Fold one played trade; returns the bar it closed, if its minute is over."""
        bar = self.current[sym]
        open_time = t_ms - t_ms % MINUTE_MS
        if bar is not None and bar[F_OPEN_TIME] == open_time:
            fold(bar, p, q, maker, tid)
            return None
        closed = None
        if bar is None and open_time <= self.last_closed_open[sym]:
            # a trade for a minute already closed (cannot happen while E - T < the close
            # grace): keep REST consistent by folding it into the last stored bar
            row = self.closed[sym, (self.n_closed[sym] - 1) % self.capacity]
            late = row.tolist()
            fold(late, p, q, maker, tid)
            row[:] = late
            return None
        if bar is not None:
            if open_time < bar[F_OPEN_TIME]:  # a trade time never steps back within a symbol;
                fold(bar, p, q, maker, tid)  # if it ever did, keep it in the open bar
                return None
            closed = self._close(sym)
        self.current[sym] = new_bar(open_time, p, q, maker, tid)
        return closed

    def close_due(self, sym: int, played_until_ms: int) -> list[int] | None:
        """Close the open bar once everything up to its end has been played."""
        bar = self.current[sym]
        if bar is not None and played_until_ms >= bar[F_OPEN_TIME] + MINUTE_MS:
            return self._close(sym)
        return None

    def _close(self, sym: int) -> list[int]:
        bar = self.current[sym]
        assert bar is not None
        self.closed[sym, self.n_closed[sym] % self.capacity] = bar
        self.n_closed[sym] += 1
        self.last_closed_open[sym] = bar[F_OPEN_TIME]
        self.current[sym] = None
        return bar

    def bars(self, sym: int) -> list[list[int]]:
        """Closed bars (oldest first, up to ``capacity``) plus the open one."""
        n = self.n_closed[sym]
        k = min(n, self.capacity)
        idx = [(n - k + i) % self.capacity for i in range(k)]
        out = self.closed[sym, idx].tolist() if k else []
        if self.current[sym] is not None:
            out.append(list(self.current[sym]))  # type: ignore[arg-type]
        return out

    def ticker(self, sym: int, now_ms: int) -> Ticker24h | None:
        """Rolling 24 h statistics at 1m granularity (numpy over the ring: cheap for 300+)."""
        n = self.n_closed[sym]
        k = min(n, self.capacity)
        arr = self.closed[sym, np.arange(n - k, n) % self.capacity] if k else self.closed[sym, :0]
        cur = self.current[sym]
        if cur is not None:
            arr = np.vstack([arr, np.asarray([cur], np.int64)])
        arr = arr[arr[:, F_OPEN_TIME] > now_ms - DAY_MS]
        if not arr.shape[0]:
            return None
        return Ticker24h(
            open=int(arr[0, F_O]), high=int(arr[:, F_H].max()), low=int(arr[:, F_L].min()),
            last=int(arr[-1, F_C]), volume=int(arr[:, F_V].sum()), quote=int(arr[:, F_Q].sum()),
            count=int(arr[:, F_N].sum()), first_id=int(arr[0, F_FIRST]),
            last_id=int(arr[-1, F_LAST]), open_time=int(arr[0, F_OPEN_TIME]),
        )
