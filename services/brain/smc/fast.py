"""The SMC update the brain, the strategy and the CLI use: the numba state machines of
``kernel.py`` behind the same API as ``engine.py`` (``new_state``, ``update``, ``run_batch``),
returning the same ``Label`` records, equal field for field and in the same order.

``engine.py`` and the feature modules stay as the pure-Python reference (readable, and the
specification of every rule); ``tests/unit/brain/smc/test_smc_fast_parity.py`` runs both over the
repository's real candle files and compares every label of every candle.

Why: the Python state machines cost 14-17 us per candle (p50, default features, on a busy
2-core machine), most of it interpreter overhead; the compiled step costs about one. What is
left per candle is building the label records (one per timeframe and per session on every
candle, plus the retracement row), done here with the fewest Python operations possible:
each record is filled as an instance of a plain slotted twin of its class and then given its
real class (``_twin``); a frozen dataclass's own ``__init__`` is four to five times slower,
setting the slots through their descriptors about twice. ``bench/bench_smc_quick.py``
measures both paths side by side.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np

from common.errors import ConfigError

from . import kernel as K
from .config import SmcConfig
from .engine import TRIM_EVERY_BARS, SmcInputError, feed_columns
from .labels import (FairValueGap, FairValueGapMitigated, Label, LiquidityPool, LiquiditySwept,
                     OrderBlock, OrderBlockMitigated, OrderBlockReset, Pivot, PreviousHighLow,
                     Retracement, SessionRange, Structure, Swing)

_NAN = math.nan  # the same object as the reference's (periods._NAN)
_INF = float("inf")
_new = object.__new__
_EV_SIZE = 1024
_W = K.EV_WIDTH


def _twin(cls: type) -> type:
    """A plain slotted class with ``cls``'s slots in the same order (so the same layout).

    Why: a frozen dataclass can only be filled through its slot descriptors (one Python-level
    call per field, or its ``__init__``, slower still). A record is built here as an instance
    of the twin (plain attribute stores, which CPython specialises into direct slot writes)
    and then given its real class (``__class__`` assignment, allowed between classes of the
    same layout). The result is an ordinary ``cls`` instance, field for field what the
    descriptors would have made, at about half the cost (issue #18)."""
    twin = type(f"_Mutable{cls.__name__}", (), {"__slots__": cls.__slots__})
    probe = object.__new__(twin)
    probe.__class__ = cls  # fails at import, not on a candle, if the layouts ever differ
    return twin


_PHL_CLS, _SESS_CLS, _RETR_CLS = PreviousHighLow, SessionRange, Retracement
_PHL_M, _SESS_M, _RETR_M = _twin(PreviousHighLow), _twin(SessionRange), _twin(Retracement)
_PIVOT_M, _SWING_M, _FVG_M = _twin(Pivot), _twin(Swing), _twin(FairValueGap)
_KIND = ("BOS", "CHOCH")
# the compiled step: through numba's dispatcher (checks the argument types), or straight
# through its one compiled signature's entry point (``new_state(typed_inputs=True)``; the
# state's own arrays always have the right types, the scalars are the caller's promise)
_STEP = K.step
_STEP_ENTRY = next(iter(K.step.overloads.values())).entry_point


class _SwingView:
    """``state.swings`` as the reference names it (read-only)."""

    __slots__ = ("_s",)

    def __init__(self, s: FastSmcState) -> None:
        self._s = s

    length = property(lambda self: int(self._s.ii[K.I_LEN]))
    run_dir = property(lambda self: int(self._s.ii[K.I_RUN_DIR]))
    run_first = property(lambda self: int(self._s.ii[K.I_RUN_FIRST]))
    best_index = property(lambda self: int(self._s.ii[K.I_BEST_INDEX]))
    best_level = property(lambda self: float(self._s.ff[K.F_BEST_LEVEL]))

    def horizon(self, t: int) -> int:
        return self.run_first if self.run_dir else t - self.length + 1

    def horizon_for(self, direction: int, t: int) -> int:
        return self.run_first if self.run_dir == direction else t - self.length + 1


class _HistoryView:
    """``state.history`` as the reference names it: the bars still held (copies)."""

    __slots__ = ("base", "count", "open", "high", "low", "close", "volume")

    def __init__(self, s: FastSmcState) -> None:
        ii = s.ii
        off, held = int(ii[K.REG + 3 * K.R_HIST]), int(ii[K.REG + 3 * K.R_HIST + 2])
        rows = s.arena[off:off + 5 * held].reshape(held, 5)
        self.base, self.count = int(ii[K.I_BASE]), int(ii[K.I_COUNT])
        self.open, self.high, self.low, self.close, self.volume = (
            rows[:, k].tolist() for k in range(5))


class _ObSideView:
    __slots__ = ("_s", "_last", "_cursor", "_crossed")

    def __init__(self, s: FastSmcState, last: int, cursor: int, crossed: int) -> None:
        self._s, self._last, self._cursor, self._crossed = s, last, cursor, crossed

    last = property(lambda self: int(self._s.ii[self._last]))
    cursor = property(lambda self: int(self._s.ii[self._cursor]))
    crossed = property(lambda self: bool(self._s.ii[self._crossed]))


class _ObView:
    """``state.ob.bull`` / ``state.ob.bear`` as the reference names them (read-only)."""

    __slots__ = ("bull", "bear")

    def __init__(self, s: FastSmcState) -> None:
        self.bull = _ObSideView(s, K.I_OB_LAST_B, K.I_OB_CURSOR_B, K.I_OB_CROSSED_B)
        self.bear = _ObSideView(s, K.I_OB_LAST_R, K.I_OB_CURSOR_R, K.I_OB_CROSSED_R)


class FastSmcState:
    """One symbol's SMC state in arrays (see ``kernel.py``); owned by one caller."""

    __slots__ = ("config", "ii", "ff", "arena", "ev", "evmv", "n", "fixed", "tf_names",
                 "sess_names", "trim_every_bars", "step")

    def __init__(self, config: SmcConfig, trim_every_bars: int = TRIM_EVERY_BARS,
                 typed_inputs: bool = False) -> None:
        if len(config.timeframes) > K.MAX_TF or len(config.sessions) > K.MAX_SESS:
            raise ConfigError(f"at most {K.MAX_TF} timeframes and {K.MAX_SESS} sessions")
        from .config import timeframe_ms
        self.config = config
        self.step = _STEP_ENTRY if typed_inputs else _STEP
        self.trim_every_bars = max(1, trim_every_bars)
        ii = np.zeros(K.N_INTS, np.int64)
        ff = np.zeros(K.N_FLOATS, np.float64)
        ii[K.I_LEN] = config.swing_length
        ii[K.I_CLOSE_BREAK] = int(config.close_break)
        ii[K.I_CLOSE_MIT] = int(config.close_mitigation)
        ii[K.I_JOIN] = int(config.fvg_join_consecutive)
        ii[K.I_HAS_BAND] = int(config.liquidity_band is not None)
        ff[K.F_BAND] = config.liquidity_band if config.liquidity_band is not None else 0.0
        ff[K.F_RANGE_PCT] = config.liquidity_range_percent
        ii[K.I_N_TF] = len(config.timeframes)
        ii[K.I_N_SESS] = len(config.sessions)
        ii[K.I_TRIM_EVERY] = self.trim_every_bars
        ii[K.I_NEUMAIER] = int(sys.version_info >= (3, 12))
        ii[K.I_RUN_FIRST] = -1
        ii[K.I_BEST_INDEX] = -1
        ii[K.I_OB_LAST_B] = ii[K.I_OB_LAST_R] = -1
        ii[K.I_RT_CHANGES] = 1
        ff[K.F_MAX_HIGH] = -_INF
        ff[K.F_MIN_LOW] = _INF
        for k, tf in enumerate(config.timeframes):
            ii[K.TF_BASE + k * K.TF_W] = timeframe_ms(tf)
            base = K.FTF_BASE + k * K.FTF_W
            ff[base + 2:base + 6] = _NAN
        for k, w in enumerate(config.sessions):
            b = K.SESS_BASE + k * K.SESS_W
            ii[b], ii[b + 1], ii[b + 2] = w.start_min, w.end_min, int(not w.start_min < w.end_min)
        self.ii, self.ff = ii, ff
        self.arena = self._layout(list(K.INITIAL_CAP), None)
        self.ev = np.zeros(_EV_SIZE, np.float64)
        self.evmv = memoryview(self.ev)  # slicing a memoryview is cheaper than an array's
        self.n = 0  # candles taken (== ii[I_COUNT], kept as a Python int for speed)
        self.fixed = 4 * len(config.timeframes) + 3 * len(config.sessions)  # values per candle
        self.tf_names = tuple(config.timeframes)
        self.sess_names = tuple(w.name for w in config.sessions)

    def _layout(self, caps: list[int], old: np.ndarray | None) -> np.ndarray:
        """A new arena with these capacities (rows), the old regions' rows copied over."""
        ii = self.ii
        size = sum(c * w for c, w in zip(caps, K.WIDTHS))
        arena = np.zeros(size, np.float64)
        off = 0
        for r, (cap, w) in enumerate(zip(caps, K.WIDTHS)):
            reg = K.REG + 3 * r
            if old is not None:
                o, used = int(ii[reg]), int(ii[reg + 2])
                arena[off:off + used * w] = old[o:o + used * w]
            ii[reg], ii[reg + 1] = off, cap
            off += cap * w
        return arena

    def grow(self, code: int) -> None:
        """Make room after the kernel asked for it (code from ``kernel.step``)."""
        if code <= K.NEED_EVENTS:
            self.ev = np.zeros(max(2 * self.ev.shape[0], K.NEED_EVENTS - code), np.float64)
            self.evmv = memoryview(self.ev)
            return
        r = K.NEED_REGION - code
        caps = [int(self.ii[K.REG + 3 * q + 1]) for q in range(K.N_REGIONS)]
        caps[r] *= 2
        if r == K.R_ROOT:  # the free-slot stack must be able to hold every root
            caps[K.R_FREE] = max(caps[K.R_FREE], caps[r])
        if r == K.R_FREE:
            caps[r] = max(caps[r], caps[K.R_ROOT])
        self.arena = self._layout(caps, self.arena)

    @property
    def bars(self) -> int:
        """Candles fed so far (the next candle's index)."""
        return int(self.ii[K.I_COUNT])

    @property
    def horizon(self) -> int:
        """Every reference swing before this bar index is known (see ``swings.py``)."""
        ii = self.ii
        t = int(ii[K.I_COUNT]) - 1
        return int(ii[K.I_RUN_FIRST]) if ii[K.I_RUN_DIR] else t - int(ii[K.I_LEN]) + 1

    @property
    def last_time_ms(self) -> int | None:
        return int(self.ii[K.I_LAST_TIME]) if self.ii[K.I_HAS_LAST] else None

    @property
    def history_base(self) -> int:
        """Oldest bar still held (bars before it were trimmed)."""
        return int(self.ii[K.I_BASE])

    @property
    def history(self) -> _HistoryView:
        return _HistoryView(self)

    @property
    def swings(self) -> _SwingView:
        return _SwingView(self)

    @property
    def ob(self) -> _ObView:
        return _ObView(self)


SmcState = FastSmcState


def new_state(config: SmcConfig | None = None, *, trim_every_bars: int = TRIM_EVERY_BARS,
              typed_inputs: bool = False) -> FastSmcState:
    """A fresh state for one symbol. ``trim_every_bars``: how many unneeded bars may pile
    up before the history is trimmed (tests use tiny values to exercise trimming).

    ``typed_inputs``: the caller promises to pass the open time as an ``int`` and the prices
    and volume as ``float`` (the strategy converts them before it calls): the compiled step
    is then entered through its entry point, without the dispatcher's type resolution (about
    0.15 us of a 3-4 us update). The labels are the same; what differs is only what happens
    to other types: the entry point converts them as ``int()``/``float()`` would (a numeric
    string is taken) where the dispatcher refuses them with a ``TypeError``."""
    return FastSmcState(config if config is not None else SmcConfig(), trim_every_bars,
                        typed_inputs)


def _refuse(state: FastSmcState, code: int, time_ms, o, h, low, c, v) -> None:
    bars = state.bars
    if code == K.ERR_NON_FINITE:
        raise SmcInputError(f"bar {bars}: non-finite value in {(o, h, low, c, v)}")
    if code == K.ERR_HIGH_LOW:
        raise SmcInputError(f"bar {bars}: high {h} < low {low}")
    raise SmcInputError(f"bar {bars}: open time {time_ms} not after {state.last_time_ms}")


def _advance(state: FastSmcState, time_ms: int, o: float, h: float, low: float, c: float,
             v: float) -> int:
    """One compiled step of ``state`` over the candle: a refused candle raises (its reason),
    a full buffer is grown and the step run again. Returns the step's answer: the event rows
    in the high 32 bits, the retracement rows in the low 32."""
    step = state.step
    r = step(state.ii, state.ff, state.arena, state.ev, time_ms, o, h, low, c, v)
    while r < 0:
        if r >= K.ERR_TIME:
            _refuse(state, r, time_ms, o, h, low, c, v)
        state.grow(r)
        r = step(state.ii, state.ff, state.arena, state.ev, time_ms, o, h, low, c, v)
    return r


def update(state: FastSmcState, time_ms: int, o: float, h: float, low: float, c: float,
           v: float) -> list[Label]:
    """Feed one closed candle (open time in ms since the epoch, UTC); returns new labels."""
    r = _advance(state, time_ms, o, h, low, c, v)
    rows = r >> 32
    retr = r & 0xFFFFFFFF
    j = _W * rows
    vals = state.evmv[:j + state.fixed + 4 * retr].tolist()
    t = state.n
    state.n = t + 1
    out: list[Label] = [_rare(vals, _W * k, t) for k in range(rows)] if rows else []
    app = out.append
    new = _new
    for name in state.tf_names:
        x = new(_PHL_M)
        x.timeframe = name
        x.index = t
        ph = vals[j]
        if ph == ph:
            x.high = ph
            x.low = vals[j + 1]
            x.broken_high = 1 if vals[j + 2] else 0
            x.broken_low = 1 if vals[j + 3] else 0
        else:
            x.high = _NAN
            x.low = _NAN
            x.broken_high = 0
            x.broken_low = 0
        x.known_at = t
        x.__class__ = _PHL_CLS
        app(x)
        j += 4
    for name in state.sess_names:
        x = new(_SESS_M)
        x.session = name
        x.index = t
        if vals[j]:
            x.active = 1
            x.high = vals[j + 1]
            x.low = vals[j + 2]
        else:
            x.active = 0
            x.high = 0.0
            x.low = 0.0
        x.known_at = t
        x.__class__ = _SESS_CLS
        app(x)
        j += 3
    for _ in range(retr):
        x = new(_RETR_M)
        x.index = int(vals[j])
        x.direction = int(vals[j + 1])
        x.current_pct = vals[j + 2]
        x.deepest_pct = vals[j + 3]
        x.known_at = t
        x.__class__ = _RETR_CLS
        app(x)
        j += 4
    return out


def update_events(state: FastSmcState, time_ms: int, o: float, h: float, low: float,
                  c: float, v: float) -> list[float]:
    """``update`` without the records: this candle's event rows, flat, ``EV_WIDTH`` values
    each (column 0 the kind, ``kernel.EV_*``; the columns of each kind as ``_rare`` reads
    them), in the order ``update`` would return their labels. The records every candle
    gets (periods, sessions, retracement rows) are left out: the state advances exactly as
    under ``update`` (the two may be mixed on one state), only the labels a caller would
    skip are never built.

    Why: the SMC strategy reads a few kinds and skips the rest (a retracement row on almost
    every candle); building records it drops cost about as much as the compiled step
    itself (issue #18)."""
    r = _advance(state, time_ms, o, h, low, c, v)
    state.n += 1
    rows = r >> 32
    return state.evmv[:_W * rows].tolist() if rows else []


def _rare(v: list, j: int, t: int) -> Label:
    """The event row at ``v[j]`` (kinds other than the per-candle ones: a few per hundred
    candles)."""
    kind = int(v[j])
    if kind <= K.EV_SWING:  # the commonest: built like the per-candle records
        x = _new(_PIVOT_M if kind == K.EV_PIVOT else _SWING_M)
        x.direction = int(v[j + 1])
        x.index = int(v[j + 2])
        x.level = v[j + 3]
        x.known_at = t
        x.__class__ = Pivot if kind == K.EV_PIVOT else Swing
        return x
    if kind == K.EV_FVG:
        x = _new(_FVG_M)
        x.direction = int(v[j + 1])
        x.index = int(v[j + 2])
        x.top = v[j + 3]
        x.bottom = v[j + 4]
        x.known_at = t
        x.__class__ = FairValueGap
        return x
    if kind == K.EV_STRUCTURE:
        return Structure(kind=_KIND[int(v[j + 1])], direction=int(v[j + 2]),
                         index=int(v[j + 3]), level=v[j + 4], broken_index=int(v[j + 5]),
                         known_at=t)
    if kind == K.EV_FVG_MIT:
        return FairValueGapMitigated(direction=int(v[j + 1]), index=int(v[j + 2]),
                                     mitigated_index=int(v[j + 3]), known_at=t)
    if kind == K.EV_OB:
        return OrderBlock(direction=int(v[j + 1]), index=int(v[j + 2]), top=v[j + 3],
                          bottom=v[j + 4], volume=v[j + 5], percentage=v[j + 6],
                          formed_index=int(v[j + 7]), known_at=t)
    if kind == K.EV_OB_MIT:
        return OrderBlockMitigated(direction=int(v[j + 1]), index=int(v[j + 2]),
                                   mitigated_index=int(v[j + 3]), at_index=int(v[j + 4]),
                                   known_at=t)
    if kind == K.EV_OB_RESET:
        return OrderBlockReset(direction=int(v[j + 1]), index=int(v[j + 2]),
                               at_index=int(v[j + 3]), known_at=t)
    if kind == K.EV_POOL:
        swept = int(v[j + 6])
        return LiquidityPool(direction=int(v[j + 1]), index=int(v[j + 2]), level=v[j + 3],
                             end=int(v[j + 4]), members=int(v[j + 5]),
                             swept=swept if swept >= 0 else None, known_at=t)
    if kind == K.EV_SWEPT:
        return LiquiditySwept(direction=int(v[j + 1]), index=int(v[j + 2]), level=v[j + 3],
                              swept_index=int(v[j + 4]), known_at=t)
    raise AssertionError(f"unknown SMC event kind {kind}")


def run_batch(time_ms: Sequence[int], open_: Sequence[float], high: Sequence[float],
              low: Sequence[float], close: Sequence[float], volume: Sequence[float],
              config: SmcConfig | None = None, *,
              trim_every_bars: int = TRIM_EVERY_BARS) -> tuple[list[Label], FastSmcState]:
    """Feed whole columns in order; returns every label (in emission order) and the state."""
    return feed_columns(lambda: new_state(config, trim_every_bars=trim_every_bars), update,
                        time_ms, open_, high, low, close, volume)
