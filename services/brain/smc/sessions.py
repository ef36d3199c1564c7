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


class SessionState:
    """The stored (float32) high and low of the previous bar, 0.0 if it was outside."""

    __slots__ = ("window", "high", "low")

    def __init__(self, window: SessionWindow) -> None:
        self.window = window
        self.high = 0.0
        self.low = 0.0


def step_session(st: SessionState, t: int, time_ms: int, high: float, low: float) -> SessionRange:
    """Advance by bar ``t`` (open time ``time_ms``)."""
    minute = (time_ms % DAY_MS) // MINUTE_MS
    if not st.window.contains(minute):
        st.high = st.low = 0.0
        return SessionRange(session=st.window.name, index=t, active=0, high=0.0, low=0.0,
                            known_at=t)
    st.high = f32(max(high, st.high))
    st.low = f32(min(low, st.low if st.low != 0.0 else float("inf")))
    return SessionRange(session=st.window.name, index=t, active=1, high=st.high, low=st.low,
                        known_at=t)
