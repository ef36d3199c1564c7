"""One symbol's SMC state, advanced once per closed candle; and the batch loop over arrays.

``new_state(config)`` makes the state, ``update(state, time_ms, o, h, l, c, v)`` feeds one
closed candle and returns the labels that became known with it (``known_at`` = that
candle's index). Labels are immutable and never revised: the list a caller accumulates is
the whole causal history. ``run_batch`` does the same over whole arrays (the CLI path).

The state is mutable on purpose: a per-candle update must cost tens of microseconds, and
copying the history on every candle would not. It is owned by one caller (one symbol) and
shared with nobody; everything that is not the state is a pure function of its inputs.

Order inside one update (each feature sees the swing settled by this candle, if any):
swings -> structure -> fair value gaps -> order blocks -> liquidity -> previous period
high/low -> sessions -> retracements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from common.errors import DefinitiveError

from .config import SmcConfig
from .fvg import FvgState, step_fvg
from .history import History
from .labels import Label
from .liquidity import LiquidityState, step_liquidity
from .order_blocks import ObState, step_ob
from .periods import PeriodState, step_period
from .retracements import RetracementState, step_retracements
from .sessions import SessionState, step_session
from .structure import StructureState, step_structure
from .swings import SwingState, step_swings

S = TypeVar("S")  # a state ``feed_columns`` threads through (this engine's or the compiled one's)
TRIM_EVERY_BARS = 4096  # forget unneeded bars in chunks: deleting from the front is O(n)


class SmcInputError(DefinitiveError):
    """A candle the SMC features cannot take (non-finite, high < low, time not increasing)."""

    reason = "smc_input"


class SmcState:
    """Everything one symbol's SMC features remember; see the feature modules."""

    __slots__ = ("config", "history", "swings", "structure", "fvg", "ob", "liquidity",
                 "periods", "sessions", "retracements", "last_time_ms", "trim_every_bars")

    def __init__(self, config: SmcConfig, trim_every_bars: int = TRIM_EVERY_BARS) -> None:
        self.config = config
        self.trim_every_bars = max(1, trim_every_bars)
        self.history = History()
        self.swings = SwingState(config.swing_length)
        self.structure = StructureState(config.close_break)
        self.fvg = FvgState(config.fvg_join_consecutive)
        self.ob = ObState(config.close_mitigation)
        self.liquidity = LiquidityState(config.liquidity_range_percent, config.liquidity_band)
        self.periods = [PeriodState(tf) for tf in config.timeframes]
        self.sessions = [SessionState(w) for w in config.sessions]
        self.retracements = RetracementState()
        self.last_time_ms: int | None = None

    @property
    def bars(self) -> int:
        """Candles fed so far (the next candle's index)."""
        return self.history.count

    @property
    def horizon(self) -> int:
        """Every reference swing before this bar index is known (see ``swings.py``)."""
        return self.swings.horizon(self.history.count - 1)


def new_state(config: SmcConfig | None = None, *,
              trim_every_bars: int = TRIM_EVERY_BARS) -> SmcState:
    """A fresh state for one symbol. ``trim_every_bars``: how many unneeded bars may pile
    up before the history is trimmed (tests use tiny values to exercise trimming)."""
    return SmcState(config if config is not None else SmcConfig(), trim_every_bars)


def _check(state: SmcState, time_ms: int, o: float, h: float, low: float, c: float,
           v: float) -> None:
    if not (math.isfinite(o) and math.isfinite(h) and math.isfinite(low)
            and math.isfinite(c) and math.isfinite(v)):
        raise SmcInputError(f"bar {state.bars}: non-finite value in {(o, h, low, c, v)}")
    if h < low:
        raise SmcInputError(f"bar {state.bars}: high {h} < low {low}")
    if state.last_time_ms is not None and time_ms <= state.last_time_ms:
        raise SmcInputError(f"bar {state.bars}: open time {time_ms} not after {state.last_time_ms}")


def update(state: SmcState, time_ms: int, o: float, h: float, low: float, c: float,
           v: float) -> list[Label]:
    """Feed one closed candle (open time in ms since the epoch, UTC); returns new labels."""
    _check(state, time_ms, o, h, low, c, v)
    state.last_time_ms = time_ms
    hist = state.history
    t = hist.append(time_ms, o, h, low, c, v)
    sw = state.swings
    pivot, swing = step_swings(sw, hist, t)
    out: list[Label] = []
    if pivot is not None:
        out.append(pivot)
    if swing is not None:
        out.append(swing)
        s_dir, s_index, s_level = swing.direction, swing.index, swing.level
    else:
        s_dir, s_index, s_level = 0, -1, 0.0
    out += step_structure(state.structure, hist, t, swing)
    out += step_fvg(state.fvg, hist, t)
    out += step_ob(state.ob, hist, t, s_dir, s_index, sw.horizon_for(1, t), sw.horizon_for(-1, t))
    out += step_liquidity(state.liquidity, hist, t, s_dir, s_index, s_level)
    for p in state.periods:
        out.append(step_period(p, t, time_ms, h, low))
    for s in state.sessions:
        out.append(step_session(s, t, time_ms, h, low))
    horizon = sw.horizon(t)
    out += step_retracements(state.retracements, hist, t, swing, horizon)
    if t - hist.base >= 2 * state.trim_every_bars:
        _trim(state, t, horizon)
    return out


def _trim(state: SmcState, t: int, horizon: int) -> None:
    keep_from = min(state.swings.oldest_needed(t), t - 1, horizon,
                    state.structure.oldest_needed(), state.ob.oldest_needed(),
                    state.retracements.cursor)
    if keep_from - state.history.base >= state.trim_every_bars:
        state.history.trim(keep_from)


def run_batch(time_ms: Sequence[int], open_: Sequence[float], high: Sequence[float],
              low: Sequence[float], close: Sequence[float], volume: Sequence[float],
              config: SmcConfig | None = None, *,
              trim_every_bars: int = TRIM_EVERY_BARS) -> tuple[list[Label], SmcState]:
    """Feed whole columns in order; returns every label (in emission order) and the state."""
    return feed_columns(lambda: new_state(config, trim_every_bars=trim_every_bars), update,
                        time_ms, open_, high, low, close, volume)


def feed_columns(make_state: Callable[[], S], step: Callable[..., list[Label]], time_ms: Sequence[int], open_: Sequence[float],
                 high: Sequence[float], low: Sequence[float], close: Sequence[float],
                 volume: Sequence[float]) -> tuple[list[Label], S]:
    """``step(state, t, o, h, l, c, v)`` over whole columns, in order, on a state made once the
    columns are checked (this reference engine's ``update`` or the compiled one's): every label
    in emission order, and the state."""
    n = len(time_ms)
    if not (len(open_) == len(high) == len(low) == len(close) == len(volume) == n):
        raise SmcInputError("columns differ in length")
    state = make_state()
    labels: list[Label] = []
    tm = [int(x) for x in time_ms]
    o, hh, ll, cc, vv = (list(map(float, col)) for col in (open_, high, low, close, volume))
    for i in range(n):
        labels += step(state, tm[i], o[i], hh[i], ll[i], cc[i], vv[i])
    return labels, state
