"""An EMA crossover, long only: the strategy ``make bench`` runs in every backtest engine.

On each closed candle the fast and the slow exponential moving averages of the close are
advanced (``ema += alpha * (close - ema)``, ``alpha = 2 / (bars + 1)``, both seeded with the
first close). After ``slow`` candles:

- flat, the fast EMA crossing above the slow one (it was at or below it the candle before,
  it is above it now) enters long at the close;
- long, the fast EMA crossing below the slow one exits at the close.

The stop and the target the strategy API asks for are set far away (``stop_pct`` below and
``target_pct`` above the entry): the cross alone decides. ``ema_cross_reference`` is the
same rule as a plain Python loop, one call per bar: the reference the backtest is checked
against (``tests/unit/research/test_backtest_reference.py``) and timed next to
(``bench/backtest_section.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from common.errors import ConfigError
from research.strategy_api import Context, Enter, Exit, Strategy


class EmaState:
    """Both averages and the bar count of one symbol (plain floats: the reference loop's too)."""

    __slots__ = ("a_fast", "a_slow", "fast", "slow", "bars", "warmup")

    def __init__(self, fast: int, slow: int) -> None:
        self.a_fast, self.a_slow = 2.0 / (fast + 1), 2.0 / (slow + 1)
        self.fast = self.slow = math.nan
        self.bars = 0
        self.warmup = slow


def ema_step(st: EmaState, close: float) -> int:
    """Advance by one close: +1 the fast EMA crossed above the slow one, -1 below, 0 neither."""
    if st.bars == 0:
        st.fast = st.slow = close
        st.bars = 1
        return 0
    was = st.fast - st.slow
    st.fast += st.a_fast * (close - st.fast)
    st.slow += st.a_slow * (close - st.slow)
    st.bars += 1
    if st.bars <= st.warmup:
        return 0
    now = st.fast - st.slow
    if was <= 0 < now:
        return 1
    if was >= 0 > now:
        return -1
    return 0


class EmaCross(Strategy):
    name = "ema_cross"
    history = 1  # the averages are its state: the candle window is not read
    reads_model = False  # the confidence model plays no part

    def __init__(self, *, fast: int = 10, slow: int = 30, stop_pct: float = 10.0, target_pct: float = 100.0,
                 confidence: float = 0.5) -> None:
        for n, v in (("fast", fast), ("slow", slow)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{n} must be an int >= 1, not {v!r}")
        if not fast < slow:
            raise ConfigError(f"fast ({fast}) must be shorter than slow ({slow})")
        if not 0 < stop_pct < 100 or not target_pct > 0:
            raise ConfigError("need 0 < stop_pct < 100 and target_pct > 0")
        self.fast, self.slow = fast, slow
        self.stop_f, self.target_f = 1 - stop_pct / 100, 1 + target_pct / 100
        self.confidence = float(confidence)

    def on_candle(self, ctx: Context, candle) -> list:
        st = ctx.state.get("ema")
        if st is None:
            st = ctx.state["ema"] = EmaState(self.fast, self.slow)
        cross = ema_step(st, candle.close)
        if cross > 0 and ctx.position is None:
            c = candle.close
            return [Enter(side="BUY", stop=c * self.stop_f, target=c * self.target_f, confidence=self.confidence,
                          cold=False)]
        if cross < 0 and ctx.position is not None:
            return [Exit(reason="CROSS")]
        return []


def ema_cross_reference(times: Sequence[int], closes: Sequence[float], fast: int = 10,
                        slow: int = 30) -> list[tuple[int, float, int, float]]:
    """The rule as a plain loop over closes: ``(entry open ms, entry close, exit open ms, exit
    close)`` per round trip, an open one at the end left out."""
    st = EmaState(fast, slow)
    trades: list[tuple[int, float, int, float]] = []
    entry: tuple[int, float] | None = None
    for t, c in zip(times, closes):
        cross = ema_step(st, c)
        if cross > 0 and entry is None:
            entry = (t, c)
        elif cross < 0 and entry is not None:
            trades.append((entry[0], entry[1], t, c))
            entry = None
    return trades
