"""Liquidity pools and their sweeps, causal, with the reference's grouping rule.

The reference (``smc.liquidity``) takes the swings of one direction in index order; each
swing not yet used starts a group and takes every later unused swing of its direction
whose level is within ``band`` of its own, stopping at the first swing at or after the
group's sweep (the first bar after the root whose high reaches ``level + band``; for lows,
whose low reaches ``level - band``). A group of two or more is a pool on the root's row:
``Level`` the mean of the members (float32), ``End`` the last member, ``Swept`` the sweep
bar or 0.

Swings arrive here in index order as they settle, so the same rule runs causally: a new
swing joins the earliest open root that takes it (not swept before the swing's bar, level
within the band) or becomes a root itself. Each time a pool grows, a new
``LiquidityPool`` record carries the new mean and end; a ``LiquiditySwept`` record marks
the sweep of a pool.

The band. The reference sizes it from the whole file, ``(max(high) - min(low)) *
range_percent``: the future decides today's band. Ours is ``range_percent`` times the
high-low range of the bars seen when the root's swing settles (frozen per root), unless an
absolute ``band`` is configured; with ``band`` set to the reference's whole-file value the
results are the reference's (documented difference otherwise).
"""

from __future__ import annotations

import heapq

from .history import History
from .labels import LiquidityPool, LiquiditySwept
from .numeric import f32


class _Root:
    __slots__ = ("direction", "index", "lo", "hi", "levels", "end", "swept")

    def __init__(self, direction: int, index: int, level: float, band: float) -> None:
        self.direction, self.index = direction, index
        self.lo, self.hi = level - band, level + band
        self.levels = [level]
        self.end = index
        self.swept = -1

    def mean(self) -> float:
        return sum(self.levels) / len(self.levels)


class LiquidityState:
    """Open roots per direction (index order) and the unswept ones in sweep-price heaps."""

    __slots__ = ("range_percent", "band", "max_high", "min_low", "roots", "bull_unswept",
                 "bear_unswept")

    def __init__(self, range_percent: float, band: float | None) -> None:
        self.range_percent = range_percent
        self.band = band
        self.max_high = float("-inf")
        self.min_low = float("inf")
        self.roots: dict[int, list[_Root]] = {1: [], -1: []}
        self.bull_unswept: list[tuple[float, int, _Root]] = []  # (hi, index, root)
        self.bear_unswept: list[tuple[float, int, _Root]] = []  # (-lo, index, root)


def _swept_record(root: _Root) -> LiquiditySwept:
    return LiquiditySwept(direction=root.direction, index=root.index, level=f32(root.mean()),
                          swept_index=root.swept, known_at=root.swept)


def step_liquidity(st: LiquidityState, hist: History, t: int, swing_dir: int,
                   swing_index: int, swing_level: float) -> list:
    """Advance by bar ``t``: sweeps by bar ``t``, then the swing settled now (if any)."""
    b = hist.base
    high, low = hist.high[t - b], hist.low[t - b]
    if high > st.max_high:
        st.max_high = high
    if low < st.min_low:
        st.min_low = low
    out: list = []
    while st.bull_unswept and st.bull_unswept[0][0] <= high:
        root = heapq.heappop(st.bull_unswept)[2]
        root.swept = t
        if len(root.levels) > 1:
            out.append(_swept_record(root))
    while st.bear_unswept and -st.bear_unswept[0][0] >= low:
        root = heapq.heappop(st.bear_unswept)[2]
        root.swept = t
        if len(root.levels) > 1:
            out.append(_swept_record(root))
    if not swing_dir:
        return out
    roots = st.roots[swing_dir]
    k = 0
    while k < len(roots):
        root = roots[k]
        if 0 <= root.swept <= swing_index:  # swept before this swing: closed for good
            del roots[k]
            continue
        if root.lo <= swing_level <= root.hi:
            root.levels.append(swing_level)
            root.end = swing_index
            out.append(LiquidityPool(direction=swing_dir, index=root.index,
                                     level=f32(root.mean()), end=swing_index,
                                     members=len(root.levels),
                                     swept=root.swept if root.swept >= 0 else None,
                                     known_at=t))
            return out
        k += 1
    band = st.band if st.band is not None else (st.max_high - st.min_low) * st.range_percent
    root = _Root(swing_dir, swing_index, swing_level, band)
    col = hist.high if swing_dir == 1 else hist.low
    for c in range(swing_index + 1, t + 1):  # has a bar since the swing swept it already?
        v = col[c - b]
        if (v >= root.hi) if swing_dir == 1 else (v <= root.lo):
            root.swept = c
            break
    roots.append(root)
    if root.swept < 0:
        if swing_dir == 1:
            heapq.heappush(st.bull_unswept, (root.hi, root.index, root))
        else:
            heapq.heappush(st.bear_unswept, (-root.lo, root.index, root))
    return out
