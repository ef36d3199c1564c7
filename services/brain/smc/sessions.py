"""Trading sessions (London, New York, Tokyo, ..., in UTC), as the reference computes them.

A bar is in the session if its open time's ``HH:MM`` lies between the session's start and
end, both included (so London 07:00-16:00 includes the 16:00 bar); a session whose start is
not before its end wraps midnight. While in the session, ``High``/``Low`` are the running
extremes since the first bar of the current stretch of in-session bars; outside they are
0.0. Stored as float32, as the reference does. Causal, lag 0.

The reference's ``time_zone`` argument is not emulated: our candles are UTC and so are the
session windows (its ``"UTC+2"`` becomes ``Etc/GMT+2``, which is UTC-2: a sign trap).
"""

from __future__ import annotations

from .config import DAY_MS, MINUTE_MS, SessionWindow
from .labels import SessionRange
from .numeric import f32

_INF = float("inf")


class SessionState:
    """The stored (float32) high and low of the previous bar, 0.0 if it was outside."""

    __slots__ = ("window", "high", "low", "name", "start_min", "end_min", "wraps")

    def __init__(self, window: SessionWindow) -> None:
        self.window = window
        self.high = 0.0
        self.low = 0.0
        # the window's fields, read once per candle (``SessionWindow.contains`` inlined)
        self.name, self.start_min, self.end_min = window.name, window.start_min, window.end_min
        self.wraps = not window.start_min < window.end_min


def step_session(st: SessionState, t: int, time_ms: int, high: float, low: float) -> SessionRange:
    """Advance by bar ``t`` (open time ``time_ms``)."""
    minute = (time_ms % DAY_MS) // MINUTE_MS
    if st.wraps:
        inside = minute >= st.start_min or minute <= st.end_min
    else:
        inside = st.start_min <= minute <= st.end_min
    if not inside:
        st.high = st.low = 0.0
        return SessionRange(session=st.name, index=t, active=0, high=0.0, low=0.0, known_at=t)
    # max() and min() spelled out (same operands, same ties: the first one wins)
    prev = st.high
    st.high = f32(prev if prev > high else high)
    prev = st.low if st.low != 0.0 else _INF
    st.low = f32(prev if prev < low else low)
    return SessionRange(session=st.name, index=t, active=1, high=st.high, low=st.low, known_at=t)
