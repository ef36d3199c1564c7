"""Fair value gaps, causal, as the reference's ``smc.fvg`` defines them.

Bar ``i`` (the middle candle) holds a bullish gap if ``high[i-1] < low[i+1]`` and it
closed up (top ``low[i+1]``, bottom ``high[i-1]``), a bearish gap if
``low[i-1] > high[i+1]`` and it closed down (top ``low[i-1]``, bottom ``high[i+1]``).
Known at ``i + 1``. It is mitigated by the first bar from ``i + 2`` whose low reaches the
top (bullish) or whose high reaches the bottom (bearish); the reference writes
``MitigatedIndex`` 0 while it is not.

``join_consecutive``: a run of same-direction gaps on consecutive bars becomes one gap on
the run's last bar, with the highest top and lowest bottom. The run is over when the next
bar's gap is known not to continue it, so a joined gap is known at ``index + 2``; its
mitigation is still looked for from ``index + 2``, that same bar included.
"""

from __future__ import annotations

import heapq

from .history import History
from .labels import FairValueGap, FairValueGapMitigated


class FvgState:
    """Unmitigated gaps in two heaps (bullish by highest top, bearish by lowest bottom),
    so a bar costs O(log n) whatever the number of open gaps; plus the run being joined."""

    __slots__ = ("join", "bull", "bear", "pending")

    def __init__(self, join_consecutive: bool) -> None:
        self.join = join_consecutive
        self.bull: list[tuple[float, int]] = []  # (-top, index)
        self.bear: list[tuple[float, int]] = []  # (bottom, index)
        self.pending: list | None = None  # [direction, index, top, bottom] of the open run


def gap_at(hist: History, i: int) -> tuple[int, float, float]:
    """``(direction, top, bottom)`` of the gap on bar ``i`` (direction 0: none); needs i+1."""
    b = hist.base
    o, c = hist.open[i - b], hist.close[i - b]
    if c > o and hist.high[i - 1 - b] < hist.low[i + 1 - b]:
        return 1, hist.low[i + 1 - b], hist.high[i - 1 - b]
    if c < o and hist.low[i - 1 - b] > hist.high[i + 1 - b]:
        return -1, hist.low[i - 1 - b], hist.high[i + 1 - b]
    return 0, 0.0, 0.0


def _mitigate(st: FvgState, t: int, low: float, high: float) -> list[FairValueGapMitigated]:
    out = []
    bull, bear = st.bull, st.bear
    while bull and -bull[0][0] >= low:
        out.append(FairValueGapMitigated(direction=1, index=heapq.heappop(bull)[1],
                                         mitigated_index=t, known_at=t))
    while bear and bear[0][0] <= high:
        out.append(FairValueGapMitigated(direction=-1, index=heapq.heappop(bear)[1],
                                         mitigated_index=t, known_at=t))
    if len(out) > 1:
        out.sort(key=lambda r: r.index)
    return out


def _open(st: FvgState, direction: int, index: int, top: float, bottom: float) -> None:
    if direction == 1:
        heapq.heappush(st.bull, (-top, index))
    else:
        heapq.heappush(st.bear, (bottom, index))


def step_fvg(st: FvgState, hist: History, t: int) -> list:
    """Advance by bar ``t``: mitigations by bar ``t``, then the gap decided at ``t``."""
    b = hist.base
    low, high = hist.low[t - b], hist.high[t - b]
    out: list = _mitigate(st, t, low, high) if (st.bull or st.bear) else []
    if t < 2:
        return out
    d, top, bottom = gap_at(hist, t - 1)
    if not st.join:
        if d:
            out.append(FairValueGap(direction=d, index=t - 1, top=top, bottom=bottom, known_at=t))
            _open(st, d, t - 1, top, bottom)
        return out
    run = st.pending
    if run is not None and d == run[0]:
        run[1], run[2], run[3] = t - 1, max(run[2], top), min(run[3], bottom)
        return out
    if run is not None:  # the run ended on bar t-2; its mitigation search starts at t
        rd, ri, rt, rb = run
        out.append(FairValueGap(direction=rd, index=ri, top=rt, bottom=rb, known_at=t))
        if (low <= rt) if rd == 1 else (high >= rb):
            out.append(FairValueGapMitigated(direction=rd, index=ri, mitigated_index=t,
                                             known_at=t))
        else:
            _open(st, rd, ri, rt, rb)
    st.pending = [d, t - 1, top, bottom] if d else None
    return out
