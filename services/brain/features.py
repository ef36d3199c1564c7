"""Strategy features shared by the live strategy (``strategy.py``) and the offline replay of
``model_eval``: small causal state machines and pure helpers, one step per closed candle.
Both must compute the same numbers from the same candles, so they live here, once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


class Atr:
    """Wilder's average true range over ``n`` bars (a simple mean for the first ``n``)."""

    __slots__ = ("n", "value", "count", "prev_close")

    def __init__(self, n: int) -> None:
        self.n, self.value, self.count, self.prev_close = n, 0.0, 0, math.nan

    def step(self, h: float, low: float, c: float) -> None:
        # ``max`` and ``min`` spelled out (the same operands and ties: the first maximal
        # one wins; no NaN reaches here but the first bar's ``prev_close``): this runs
        # twice per candle in the strategy
        pc = self.prev_close
        tr = h - low
        if pc == pc:
            x = abs(h - pc)
            if x > tr:
                tr = x
            x = abs(low - pc)
            if x > tr:
                tr = x
        count = self.count = self.count + 1
        n = self.n
        self.value += (tr - self.value) / (count if count < n else n)
        self.prev_close = c


def nearest_zone_distance(zones: Mapping[tuple[int, int], tuple[float, float]], d: int,
             price: float) -> float | None:
    """Distance from ``price`` to the nearest live zone of direction ``d`` on its own side
    (bullish zones at or below price, bearish at or above); 0 inside; ``None``: none."""
    best = None
    for (zd, _), (top, bottom) in zones.items():
        if zd != d:
            continue
        if d > 0 and price >= bottom:
            dist = max(0.0, price - top)
        elif d < 0 and price <= top:
            dist = max(0.0, bottom - price)
        else:
            continue
        best = dist if best is None or dist < best else best
    return best
