"""Previous period high and low (``4h``, ``1D``, ``W``, ...), as the reference computes them.

The reference resamples the candles to the timeframe (empty periods dropped), then for a
bar at time ``ts`` counts the periods whose *label* is before ``ts`` and takes the one two
back from that count. With pandas' default labels that gives:

- fixed timeframes (``4h``, ``1D``; label = period start): the previous period, except on
  a bar that opens exactly at a period start, which gets the period before the previous;
- ``W`` (Monday..Sunday weeks labelled by their closing Sunday 00:00, pandas'
  ``W-SUN``, ``closed="right"``): the week before the previous one, except on Sunday bars
  after 00:00, which get the previous week.

Either way the period used has always ended: the feature is causal, lag 0. ``BrokenHigh``
is 1 once the highest high since the referenced period last changed exceeds its high
(compared with the float32 value the reference stores), likewise ``BrokenLow``.
"""

from __future__ import annotations

import math

from .config import DAY_MS, timeframe_ms
from .labels import PreviousHighLow
from .numeric import f32

_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
_NAN = math.nan


def period_label_ms(time_ms: int, width_ms: int) -> int:
    """The pandas resample label of the period holding ``time_ms`` (``width_ms`` 0 = W)."""
    if width_ms:
        return time_ms - time_ms % width_ms
    day = time_ms // DAY_MS
    return (day + 6 - (day + _EPOCH_WEEKDAY) % 7) * DAY_MS  # the Sunday closing the week


class PeriodState:
    """The current period and the last two finished ones (high, low)."""

    __slots__ = ("timeframe", "width_ms", "label", "high", "low", "finished", "prev1",
                 "prev2", "group", "run_high", "run_low")

    def __init__(self, timeframe: str) -> None:
        self.timeframe = timeframe
        self.width_ms = timeframe_ms(timeframe)
        self.label = None  # label of the current period
        self.high = self.low = 0.0
        self.finished = 0  # non-empty periods finished so far
        self.prev1 = (_NAN, _NAN)  # last finished period's (high, low), float32
        self.prev2 = (_NAN, _NAN)  # the one before
        self.group = None  # referenced period of the previous bar
        self.run_high = self.run_low = 0.0


def step_period(st: PeriodState, t: int, time_ms: int, high: float, low: float) -> PreviousHighLow:
    """Advance by bar ``t`` (open time ``time_ms``)."""
    label = period_label_ms(time_ms, st.width_ms)
    if label != st.label:
        if st.label is not None:
            st.prev2, st.prev1 = st.prev1, (f32(st.high), f32(st.low))
            st.finished += 1
        st.label, st.high, st.low = label, high, low
    else:
        if high > st.high:
            st.high = high
        if low < st.low:
            st.low = low
    count = st.finished + (1 if label < time_ms else 0)
    ref = count - 2
    if ref != st.group:
        st.group, st.run_high, st.run_low = ref, high, low
    else:
        if high > st.run_high:
            st.run_high = high
        if low < st.run_low:
            st.run_low = low
    if ref < 0:
        return PreviousHighLow(timeframe=st.timeframe, index=t, high=_NAN, low=_NAN,
                               broken_high=0, broken_low=0, known_at=t)
    ph, pl = st.prev1 if ref == st.finished - 1 else st.prev2
    return PreviousHighLow(timeframe=st.timeframe, index=t, high=ph, low=pl,
                           broken_high=1 if st.run_high > ph else 0,
                           broken_low=1 if st.run_low < pl else 0, known_at=t)
