"""The candles a symbol's SMC state still needs, as compact arrays.

Several features look back: a structure label is checked for a break from two bars after
its swing, an order block searches the bars since the last swing, a pool looks for its
sweep from the bar after its first swing. Those swings become known with a lag, so the
bars in between must still be at hand. ``History`` keeps them in ``array('d')`` columns
(8 bytes a value, O(1) append); bar ``i`` sits at position ``i - base``. ``trim`` drops
the bars before a given index once no feature can need them any more (the engine asks
each feature for its oldest needed bar), so memory stays bounded on an endless stream.
"""

from __future__ import annotations

from array import array


class History:
    """Columns of the candles from bar ``base`` to bar ``base + len - 1``."""

    __slots__ = ("open", "high", "low", "close", "volume", "time_ms", "base", "count")

    def __init__(self) -> None:
        self.open = array("d")
        self.high = array("d")
        self.low = array("d")
        self.close = array("d")
        self.volume = array("d")
        self.time_ms = array("q")
        self.base = 0  # index of the oldest bar still held
        self.count = 0  # bars ever appended == index of the next bar

    def append(self, time_ms: int, o: float, h: float, low: float, c: float, v: float) -> int:
        """Store one closed candle; returns its bar index."""
        self.open.append(o)
        self.high.append(h)
        self.low.append(low)
        self.close.append(c)
        self.volume.append(v)
        self.time_ms.append(time_ms)
        self.count += 1
        return self.count - 1

    def trim(self, keep_from: int) -> None:
        """Forget bars before ``keep_from`` (never a bar at or after it)."""
        cut = min(keep_from, self.count) - self.base
        if cut <= 0:
            return
        for col in (self.open, self.high, self.low, self.close, self.volume, self.time_ms):
            del col[:cut]
        self.base += cut
