"""A Donchian channel breakout: the simple example strategy (copy it to start your own).

On each closed candle, with ``channel_bars`` candles before it:

- the channel is the highest high and the lowest low of those ``channel_bars`` candles
  (the current candle is not part of it: a breakout is a close outside the channel);
- flat, a close above the channel's high enters long, a close below its low enters short;
- the stop is the opposite side of the channel (``stop = "channel"``) or ``atr_mult``
  average true ranges from the close (``stop = "atr"``; ATR = the mean true range of the
  last ``atr_bars`` candles);
- the target is ``rr`` times the risk (entry to stop) beyond the entry;
- ``cooldown_bars`` candles after an entry, no other one.

It holds no state but the bar of its last entry: everything else is read from the candle
window of the context (``ctx.candles``), which is why ``history`` is set from the parameters.
"""

from __future__ import annotations

import math
from typing import Any

from common.errors import ConfigError
from research.strategy_api import Context, Enter, Strategy


class DonchianBreakout(Strategy):
    name = "donchian_breakout"
    reads_model = False  # the confidence model plays no part

    def __init__(self, *, channel_bars: int = 20, stop: str = "channel", atr_bars: int = 14,
                 atr_mult: float = 2.0, rr: float = 2.0, confidence: float = 0.5,
                 cooldown_bars: int = 0) -> None:
        for n, v in (("channel_bars", channel_bars), ("atr_bars", atr_bars)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{n} must be an int >= 1, not {v!r}")
        if isinstance(cooldown_bars, bool) or not isinstance(cooldown_bars, int) or cooldown_bars < 0:
            raise ConfigError(f"cooldown_bars must be an int >= 0, not {cooldown_bars!r}")
        if stop not in ("channel", "atr"):
            raise ConfigError(f"stop must be 'channel' or 'atr', not {stop!r}")
        for n, v in (("atr_mult", atr_mult), ("rr", rr)):
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{n} must be a finite number > 0, not {v!r}")
        if not (isinstance(confidence, (int, float)) and 0 <= confidence <= 1):
            raise ConfigError(f"confidence must be within 0..1, not {confidence!r}")
        self.channel_bars, self.stop, self.atr_bars = channel_bars, stop, atr_bars
        self.atr_mult, self.rr, self.confidence = float(atr_mult), float(rr), float(confidence)
        self.cooldown_bars = cooldown_bars
        # the channel's bars plus the current one; the ATR needs one more (a previous close)
        self.history = max(channel_bars, atr_bars + 1) + 1

    def on_candle(self, ctx: Context, candle) -> list:
        bars = ctx.state["bars"] = ctx.state.get("bars", 0) + 1
        window = ctx.candles
        if ctx.position is not None or len(window) < self.channel_bars + 1:
            return []
        last = ctx.state.get("last_entry_bar")
        if last is not None and bars - last <= self.cooldown_bars:
            return []
        before = list(window)[-self.channel_bars - 1:-1]
        hi = max(c.high for c in before)
        lo = min(c.low for c in before)
        close = candle.close
        if close > hi:
            d = 1
        elif close < lo:
            d = -1
        else:
            return []
        if self.stop == "channel":
            stop = lo if d > 0 else hi
        else:
            atr = self._atr(window)
            if atr is None:
                return []
            stop = close - d * self.atr_mult * atr
        risk = d * (close - stop)
        if not risk > 0:
            return []
        ctx.state["last_entry_bar"] = bars
        return [Enter(side="BUY" if d > 0 else "SELL", stop=stop, target=close + d * self.rr * risk,
                      confidence=self.confidence, cold=False,
                      features={"channel_high": hi, "channel_low": lo, "risk": risk})]

    def _atr(self, window) -> float | None:
        w = list(window)[-self.atr_bars - 1:]
        if len(w) < self.atr_bars + 1:
            return None
        tr = [max(c.high, p.close) - min(c.low, p.close) for p, c in zip(w, w[1:])]
        return sum(tr) / len(tr)

    def counters(self, state: dict) -> dict[str, Any]:
        return {}
