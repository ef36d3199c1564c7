"""Order blocks, as the reference's ``smc.ob`` defines them, formed behind the swing horizon.

The reference walks the bars ``c = 0..n-1``. Bullish side (bearish mirrored):

1. Every live bullish block is updated first: if it is already a *breaker* and
   ``high[c] > top`` it is reset (the reference deletes its row); otherwise if
   ``low[c] < bottom`` (``close_mitigation``: ``min(open, close)``) it becomes a breaker
   with ``MitigatedIndex = c - 1`` (bearish: ``c``; a quirk we keep).
2. With ``s`` the last swing high *before* ``c`` (by index, however late the swing becomes
   known), if ``close[c] > high[s]`` and ``s`` was not crossed yet, ``s`` is crossed and a
   block forms on the bar with the lowest low in ``s+1 .. c-1`` (the last such bar on
   ties), top its high and bottom its low. Volume is ``v[c] + v[c-1] + v[c-2]``, and
   ``Percentage`` compares ``v[c-2]`` with ``v[c] + v[c-1]``. All stored as float32, and
   later comparisons use the float32 values.

Step 2 needs every swing before ``c``, which we know only once the swing horizon has
passed ``c``, so the formation cursor runs behind the horizon (an ``OrderBlock`` record's
lag is ``known_at - formed_index``). A block found late is brought up to date at once by
replaying step 1 over the bars since it formed; after that, step 1 runs on every bar.

Blocks never share state here. The reference writes both directions into the same arrays,
so when one bar holds a bullish *and* a bearish block, the bearish pass overwrites the
bullish one and inherits its breaker flag and mitigation index (whatever the bullish block
had become by the end of the file): that cross-talk is not causal and is not reproduced
(documented difference).
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from .history import History
from .labels import OrderBlock, OrderBlockMitigated, OrderBlockReset

_F32 = np.float32


class _Block:
    __slots__ = ("direction", "index", "top", "bottom", "breaker")

    def __init__(self, direction: int, index: int, top: float, bottom: float) -> None:
        self.direction, self.index, self.top, self.bottom = direction, index, top, bottom
        self.breaker = False


class _Side:
    """Formation cursor for one direction: the swings of that direction not yet passed,
    the current last swing before the cursor and whether it was crossed."""

    __slots__ = ("direction", "queue", "cursor", "last", "crossed")

    def __init__(self, direction: int) -> None:
        self.direction = direction
        self.queue: deque[int] = deque()
        self.cursor = 0
        self.last = -1
        self.crossed = False


class ObState:
    """Both formation cursors and the live blocks, in four heaps: bullish waiting for
    mitigation (highest bottom first), bullish breakers (lowest top first), bearish
    waiting (lowest top first), bearish breakers (highest bottom first)."""

    __slots__ = ("close_mitigation", "bull", "bear", "bull_live", "bull_breakers",
                 "bear_live", "bear_breakers")

    def __init__(self, close_mitigation: bool) -> None:
        self.close_mitigation = close_mitigation
        self.bull = _Side(1)
        self.bear = _Side(-1)
        self.bull_live: list[tuple[float, int, int, _Block]] = []
        self.bull_breakers: list[tuple[float, int, int, _Block]] = []
        self.bear_live: list[tuple[float, int, int, _Block]] = []
        self.bear_breakers: list[tuple[float, int, int, _Block]] = []

    def oldest_needed(self) -> int:
        out = []
        for side in (self.bull, self.bear):
            out.append(side.cursor - 2)
            if side.last >= 0:
                out.append(side.last)
        return max(0, min(out))


def _advance(blk: _Block, hist: History, c: int, close_mitigation: bool,
             known_at: int) -> OrderBlockMitigated | OrderBlockReset | None:
    """Step 1 of the reference for one block and bar ``c``."""
    b = c - hist.base
    if blk.direction == 1:
        if blk.breaker:
            if hist.high[b] > blk.top:
                return OrderBlockReset(direction=1, index=blk.index, at_index=c, known_at=known_at)
            return None
        price = min(hist.open[b], hist.close[b]) if close_mitigation else hist.low[b]
        if price < blk.bottom:
            blk.breaker = True
            return OrderBlockMitigated(direction=1, index=blk.index, mitigated_index=c - 1,
                                       at_index=c, known_at=known_at)
        return None
    if blk.breaker:
        if hist.low[b] < blk.bottom:
            return OrderBlockReset(direction=-1, index=blk.index, at_index=c, known_at=known_at)
        return None
    price = max(hist.open[b], hist.close[b]) if close_mitigation else hist.high[b]
    if price > blk.top:
        blk.breaker = True
        return OrderBlockMitigated(direction=-1, index=blk.index, mitigated_index=c,
                                   at_index=c, known_at=known_at)
    return None


def _push(st: ObState, blk: _Block) -> None:
    # id() breaks ties so that heapq never compares two blocks
    if blk.direction == 1:
        if blk.breaker:
            heapq.heappush(st.bull_breakers, (blk.top, blk.index, id(blk), blk))
        else:
            heapq.heappush(st.bull_live, (-blk.bottom, blk.index, id(blk), blk))
    elif blk.breaker:
        heapq.heappush(st.bear_breakers, (-blk.bottom, blk.index, id(blk), blk))
    else:
        heapq.heappush(st.bear_live, (blk.top, blk.index, id(blk), blk))


def _update_live(st: ObState, hist: History, t: int) -> list:
    """Step 1 for every live block and bar ``t`` (breakers first: a block that becomes a
    breaker on ``t`` is not also reset on ``t``)."""
    b = t - hist.base
    high, low = hist.high[b], hist.low[b]
    if st.close_mitigation:
        body_lo = min(hist.open[b], hist.close[b])
        body_hi = max(hist.open[b], hist.close[b])
    else:
        body_lo, body_hi = low, high
    out: list = []
    while st.bull_breakers and st.bull_breakers[0][0] < high:
        blk = heapq.heappop(st.bull_breakers)[3]
        out.append(OrderBlockReset(direction=1, index=blk.index, at_index=t, known_at=t))
    while st.bear_breakers and -st.bear_breakers[0][0] > low:
        blk = heapq.heappop(st.bear_breakers)[3]
        out.append(OrderBlockReset(direction=-1, index=blk.index, at_index=t, known_at=t))
    turned = []
    while st.bull_live and -st.bull_live[0][0] > body_lo:
        blk = heapq.heappop(st.bull_live)[3]
        blk.breaker = True
        turned.append(blk)
        out.append(OrderBlockMitigated(direction=1, index=blk.index, mitigated_index=t - 1,
                                       at_index=t, known_at=t))
    while st.bear_live and st.bear_live[0][0] < body_hi:
        blk = heapq.heappop(st.bear_live)[3]
        blk.breaker = True
        turned.append(blk)
        out.append(OrderBlockMitigated(direction=-1, index=blk.index, mitigated_index=t,
                                       at_index=t, known_at=t))
    for blk in turned:
        _push(st, blk)
    return out


def _volumes(hist: History, c: int, direction: int) -> tuple[float, float]:
    """``(OBVolume, Percentage)`` in the reference's float32 arithmetic."""
    b = hist.base
    v0 = hist.volume[c - b]
    v1 = hist.volume[c - 1 - b] if c >= 1 else 0.0
    v2 = hist.volume[c - 2 - b] if c >= 2 else 0.0
    total = _F32(v0 + v1 + v2)
    recent, older = _F32(v0 + v1), _F32(v2)
    high_v, low_v = (recent, older) if direction == 1 else (older, recent)
    max_v = max(high_v, low_v)
    pct = (min(high_v, low_v) / max_v * _F32(100.0)) if max_v != 0 else _F32(100.0)
    return float(total), float(_F32(pct))


def _form(side: _Side, hist: History, c: int) -> tuple[int, float, float] | None:
    """Step 2 of the reference for bar ``c``: ``(index, top, bottom)`` of a new block."""
    while side.queue and side.queue[0] < c:
        side.last, side.crossed = side.queue.popleft(), False
    s = side.last
    b = hist.base
    if s < 0 or side.crossed:
        return None
    close = hist.close[c - b]
    if side.direction == 1:
        if not close > hist.high[s - b]:
            return None
    elif not close < hist.low[s - b]:
        return None
    side.crossed = True
    if c - s <= 1:  # unreachable with real swings; the reference's default, top/bottom swapped
        lo, hi = hist.low[c - 1 - b], hist.high[c - 1 - b]
        return (c - 1, lo, hi) if side.direction == 1 else (c - 1, hi, lo)
    best = s + 1
    if side.direction == 1:
        lows = hist.low
        best_v = lows[best - b]
        for k in range(s + 2, c):
            if lows[k - b] <= best_v:
                best, best_v = k, lows[k - b]
    else:
        highs = hist.high
        best_v = highs[best - b]
        for k in range(s + 2, c):
            if highs[k - b] >= best_v:
                best, best_v = k, highs[k - b]
    return best, hist.high[best - b], hist.low[best - b]


def step_ob(st: ObState, hist: History, t: int, swing_dir: int, swing_index: int,
            horizon_high: int, horizon_low: int) -> list:
    """Advance by bar ``t``: update live blocks, take in the swing settled now (if any),
    then form blocks on every bar the horizon has passed, each brought up to date."""
    out = _update_live(st, hist, t) if (st.bull_live or st.bull_breakers or st.bear_live
                                        or st.bear_breakers) else []
    if swing_dir == 1:
        st.bull.queue.append(swing_index)
    elif swing_dir == -1:
        st.bear.queue.append(swing_index)
    for side, horizon in ((st.bull, horizon_high), (st.bear, horizon_low)):
        last = min(t, horizon)
        while side.cursor <= last:
            c = side.cursor
            side.cursor += 1
            found = _form(side, hist, c)
            if found is None:
                continue
            index, top, bottom = found
            volume, pct = _volumes(hist, c, side.direction)
            blk = _Block(side.direction, index, float(_F32(top)), float(_F32(bottom)))
            out.append(OrderBlock(direction=side.direction, index=index, top=blk.top,
                                  bottom=blk.bottom, volume=volume, percentage=pct,
                                  formed_index=c, known_at=t))
            alive = True
            for k in range(c + 1, t + 1):  # catch up on the bars since it formed
                ev = _advance(blk, hist, k, st.close_mitigation, t)
                if ev is not None:
                    out.append(ev)
                    if isinstance(ev, OrderBlockReset):
                        alive = False
                        break
            if alive:
                _push(st, blk)
    return out
