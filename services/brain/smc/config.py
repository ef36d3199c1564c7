"""SMC configuration: one frozen, keyword-only object per symbol state.

Defaults are the reference library's defaults (``smartmoneyconcepts`` 0.0.27), except the
liquidity band, whose reference definition needs the whole file (see ``liquidity.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import ConfigError

MINUTE_MS = 60_000
DAY_MS = 86_400_000

# The reference's session table (hours in the candles' own clock, UTC for us), both ends
# inclusive at minute resolution, as ``smc.sessions`` checks them.
SESSIONS_UTC: dict[str, tuple[str, str]] = {
    "Sydney": ("21:00", "06:00"),
    "Tokyo": ("00:00", "09:00"),
    "London": ("07:00", "16:00"),
    "New York": ("13:00", "22:00"),
    "Asian kill zone": ("00:00", "04:00"),
    "London open kill zone": ("06:00", "09:00"),
    "New York kill zone": ("11:00", "14:00"),
    "london close kill zone": ("14:00", "16:00"),
}

_FIXED_TF = re.compile(r"^(\d+)(min|h|D)$")
_UNIT_MS = {"min": MINUTE_MS, "h": 60 * MINUTE_MS, "D": DAY_MS}


def timeframe_ms(timeframe: str) -> int:
    """Bucket width of a fixed timeframe in ms, ``0`` for ``"W"`` (Monday..Sunday weeks).

    Only widths that divide a day are accepted: for those, pandas' default resample origin
    (midnight of the first day) and epoch alignment give the same buckets, so a stream that
    starts on any day agrees with the reference."""
    if timeframe == "W":
        return 0
    m = _FIXED_TF.match(timeframe)
    if m is None:
        raise ConfigError(f"unsupported timeframe {timeframe!r} (use e.g. 15min, 4h, 1D, W)")
    width = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if width <= 0 or DAY_MS % width != 0:
        raise ConfigError(f"timeframe {timeframe!r} must divide one day (or be 'W')")
    return width


def _minute_of_day(hhmm: str) -> int:
    m = re.match(r"^(\d{1,2}):(\d{2})$", hhmm)
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ConfigError(f"session time {hhmm!r} is not HH:MM")
    return int(m.group(1)) * 60 + int(m.group(2))


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionWindow:
    """A named session; ``start_min``/``end_min`` are minutes of the UTC day, inclusive.
    ``start_min >= end_min`` means the session wraps midnight (as in the reference)."""

    name: str
    start_min: int
    end_min: int

    @classmethod
    def named(cls, name: str, start: str | None = None, end: str | None = None) -> SessionWindow:
        """A reference session by name, or a custom one with explicit ``HH:MM`` bounds."""
        if start is None and end is None:
            if name not in SESSIONS_UTC:
                raise ConfigError(f"unknown session {name!r}; known: {sorted(SESSIONS_UTC)}")
            start, end = SESSIONS_UTC[name]
        if start is None or end is None:
            raise ConfigError("a custom session needs both start and end")
        return cls(name=name, start_min=_minute_of_day(start), end_min=_minute_of_day(end))

    def contains(self, minute: int) -> bool:
        if self.start_min < self.end_min:
            return self.start_min <= minute <= self.end_min
        return minute >= self.start_min or minute <= self.end_min


DEFAULT_SESSIONS = tuple(SessionWindow.named(n) for n in ("Tokyo", "London", "New York"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SmcConfig:
    """Parameters of every SMC feature (reference names in brackets).

    - ``swing_length`` [swing_highs_lows.swing_length]: bars on each side of a pivot.
    - ``close_break`` [bos_choch.close_break]: a structure level breaks on the close
      (else on the high/low).
    - ``close_mitigation`` [ob.close_mitigation]: an order block is mitigated by the body
      (else by the wick).
    - ``fvg_join_consecutive`` [fvg.join_consecutive]: merge runs of same-direction gaps.
    - ``liquidity_range_percent`` [liquidity.range_percent]: band half-width as a fraction
      of the price range.
    - ``liquidity_band``: absolute band half-width in price units. ``None`` (default): the
      causal band, ``range_percent`` times the high-low range of the candles seen so far
      when the pool's first swing is known. Pass the whole file's
      ``(max(high) - min(low)) * range_percent`` to reproduce the reference exactly.
    - ``timeframes`` [previous_high_low.time_frame]: each one yields its own records.
    - ``sessions`` [sessions.session]: UTC session windows.
    """

    swing_length: int = 50
    close_break: bool = True
    close_mitigation: bool = False
    fvg_join_consecutive: bool = False
    liquidity_range_percent: float = 0.01
    liquidity_band: float | None = None
    timeframes: tuple[str, ...] = ("4h", "1D", "W")
    sessions: tuple[SessionWindow, ...] = DEFAULT_SESSIONS

    def __post_init__(self) -> None:
        if isinstance(self.swing_length, bool) or not isinstance(self.swing_length, int) \
                or self.swing_length < 1:
            raise ConfigError(f"swing_length must be an int >= 1, got {self.swing_length!r}")
        if not (self.liquidity_range_percent >= 0.0):
            raise ConfigError("liquidity_range_percent must be >= 0")
        if self.liquidity_band is not None and not (self.liquidity_band >= 0.0):
            raise ConfigError("liquidity_band must be >= 0 (or None)")
        for tf in self.timeframes:
            timeframe_ms(tf)
        if len(set(self.timeframes)) != len(self.timeframes):
            raise ConfigError("timeframes must be distinct")
        names = [s.name for s in self.sessions]
        if len(set(names)) != len(names):
            raise ConfigError("session names must be distinct")
