"""Swing highs and lows, causal, with the reference's exact semantics.

The reference (``smc.swing_highs_lows``) does three things:

1. Candidate pivots. Bar ``i`` is a high candidate if ``high[i]`` equals the maximum of
   ``high[i-L+1 .. i+L]`` (``L`` = swing length; the window is one bar shorter on the left
   because it is ``rolling(2L)`` over the series shifted by ``-L``), else a low candidate if
   ``low[i]`` is the minimum of ``low`` over the same window. The rolling window needs
   ``2L`` bars, so no bar before ``2L - 1`` can be a candidate. A bar that is both is a high.
   Decided by bar ``i + L``: we emit a ``Pivot`` at ``known_at = i + L`` exactly.
2. Runs. It then deletes, repeatedly, the lesser of two consecutive same-direction
   candidates (ties: the later one), until highs and lows alternate. What survives of each
   run of same-direction candidates is its extreme, the first one on ties. A run ends only
   when a candidate of the other direction appears, so the reference's swing at ``i`` is
   known when the next opposite pivot ``k`` is known: ``known_at = k + L`` (lag > ``L``,
   variable). We emit a ``Swing`` then. Until then the run's best pivot is pending.
3. Artificial swings on the first and last rows (the opposite of the first/last real
   swing). Not causal for the last row, not a swing for the first: we do not emit them
   (documented difference).

The swing horizon: at any time, every swing of the reference with index below
``horizon(t)`` is already emitted (the pending run's extreme is at or after the run's
first pivot). Features that the reference computes from swings (structure, order blocks,
retracements) run behind this horizon so that they agree with it exactly.
"""

from __future__ import annotations

from .history import History
from .labels import Pivot, Swing


class SwingState:
    """Pivot detector plus the pending run (``run_dir`` 0 = no pivot yet)."""

    __slots__ = ("length", "run_dir", "run_first", "best_index", "best_level")

    def __init__(self, length: int) -> None:
        self.length = length
        self.run_dir = 0
        self.run_first = -1  # first pivot of the pending run
        self.best_index = -1  # its extreme so far (the reference's swing if the run ended now)
        self.best_level = 0.0

    def horizon(self, t: int) -> int:
        """Every reference swing with index < horizon is known after bar ``t``."""
        return self.run_first if self.run_dir else t - self.length + 1

    def horizon_for(self, direction: int, t: int) -> int:
        """Same, for the swings of one direction only (a pending high run hides no low)."""
        return self.run_first if self.run_dir == direction else t - self.length + 1

    def oldest_needed(self, t: int) -> int:
        return t - 2 * self.length + 1


def step_swings(st: SwingState, hist: History, t: int) -> tuple[Pivot | None, Swing | None]:
    """Advance by bar ``t`` (already in ``hist``): the pivot decided now, the swing settled now."""
    length = st.length
    i = t - length
    if i < 2 * length - 1:
        return None, None
    b = hist.base
    lo_pos, hi_pos = i - length + 1 - b, t + 1 - b
    hv = hist.high[i - b]
    if hv == max(hist.high[lo_pos:hi_pos]):
        direction, level = 1, hv
    else:
        lv = hist.low[i - b]
        if lv != min(hist.low[lo_pos:hi_pos]):
            return None, None
        direction, level = -1, lv
    pivot = Pivot(direction=direction, index=i, level=level, known_at=t)
    swing = None
    if st.run_dir == direction:
        if (level > st.best_level) if direction == 1 else (level < st.best_level):
            st.best_index, st.best_level = i, level
        return pivot, None
    if st.run_dir:
        swing = Swing(direction=st.run_dir, index=st.best_index, level=st.best_level, known_at=t)
    st.run_dir, st.run_first, st.best_index, st.best_level = direction, i, i, level
    return pivot, swing
