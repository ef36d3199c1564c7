"""Retracements, as the reference's ``smc.retracements`` computes them, row by row behind
the swing horizon.

For each bar ``c`` the reference keeps ``direction`` (1 after a swing high, -1 after a
swing low), the last swing high ``top`` and low ``bottom``, and:

- if the *previous* bar's direction is 1: ``current = round(100 - (low - bottom) /
  (top - bottom) * 100, 1)``, ``deepest`` the running max of it while the direction stays 1;
- if *this* bar's direction is -1: the same from ``high`` and ``top`` (this overrides);
- else both are 0.

It then shifts everything down one row (row ``r`` shows bar ``r - 1``) and zeroes the rows
up to the third change of direction (warm-up). A bar's values depend on the swings up to
it, so row ``c + 1`` is settled, and emitted, once the swing horizon has passed bar ``c``.

Warm-up: the reference counts as its first change the comparison of row 0 with the row
``np.roll`` wrapped in from the end of the file, which is a change iff the file holds an
even number of real swings. We count the start of data as that change (warm-up ends at
the second real change of direction): equal to the reference whenever that parity is even
(so on the EURUSD fixture), one direction change shorter otherwise.
"""

from __future__ import annotations

from collections import deque

from .history import History
from .labels import Retracement, Swing

WARMUP_CHANGES = 3  # the reference drops "the first 3 retracements"


class RetracementState:
    """The reference's loop variables at the next bar to compute (``cursor``)."""

    __slots__ = ("swings", "cursor", "direction", "top", "bottom", "deepest", "changes")

    def __init__(self) -> None:
        self.swings: deque[Swing] = deque()  # settled, not yet reached by the cursor
        self.cursor = 0
        self.direction = 0
        self.top = 0.0
        self.bottom = 0.0
        self.deepest = 0.0
        self.changes = 1  # the start of data stands for the reference's wrap-around change


def step_retracements(st: RetracementState, hist: History, t: int, swing: Swing | None,
                      horizon: int) -> list[Retracement]:
    """Compute every bar ``c < horizon`` not yet computed; emits rows ``c + 1``."""
    if swing is not None:
        st.swings.append(swing)
    out: list[Retracement] = []
    if t == 0:
        out.append(Retracement(index=0, direction=0, current_pct=0.0, deepest_pct=0.0,
                               known_at=0))
    b = hist.base
    while st.cursor < horizon:
        c = st.cursor
        st.cursor += 1
        prev = st.direction
        d = prev
        if st.swings and st.swings[0].index == c:
            sw = st.swings.popleft()
            d = sw.direction
            if d == 1:
                st.top = sw.level
            else:
                st.bottom = sw.level
        current = deepest = 0.0
        if prev == 1:
            div = st.top - st.bottom
            current = round(100 - (((hist.low[c - b] - st.bottom) / div) * 100) if div != 0 else 0, 1)
            deepest = max(st.deepest, current)
        if d == -1:
            div = st.bottom - st.top
            current = round(100 - ((hist.high[c - b] - st.top) / div) * 100 if div != 0 else 0, 1)
            deepest = max(st.deepest if prev == -1 else 0, current)
        st.direction, st.deepest = d, float(deepest)
        if st.changes < WARMUP_CHANGES:
            out.append(Retracement(index=c + 1, direction=0, current_pct=0.0, deepest_pct=0.0,
                                   known_at=t))
        else:
            out.append(Retracement(index=c + 1, direction=d, current_pct=float(current),
                                   deepest_pct=float(deepest), known_at=t))
        if c >= 1 and d != prev:
            st.changes += 1
    return out
