"""SMC context -> long and short setups, per symbol, causal, one call per closed base candle.

The rule (``STRATEGY`` = ``"smc_htf_retest"``):

1. **Bias.** Base candles (1m) are aggregated into higher-timeframe candles
   (``htf_factor`` base bars, 15m by default) and fed, as each one closes, to a second SMC
   state. The direction ``d`` of the last BOS or CHoCH ``Structure`` label it emitted is
   the bias (none until the first one).
2. **Trigger.** On the base timeframe, the first retest of a live zone of direction ``d``
   known before this candle: a bullish order block or fair value gap that this candle's
   low reached (``low <= top``) while it closed above the zone's bottom; mirrored for
   shorts. A fair value gap is spent by its first touch (that is its mitigation); an order
   block triggers at most once. At most one signal per candle.
3. **Levels** (as ``model_eval.replay_trades``, so the model learns the same kind of
   trade it is measured on): entry at the close; stop at the last opposite pivot known at
   this close (a long's stop under the last pivot low; none, or one this candle already
   traded through, means no trade); target at the nearest unswept liquidity pool on the
   far side whose distance is ``liquidity_min_rr .. liquidity_max_rr`` R, else ``rr`` R.
4. **Filters**, each counted by reason in ``state.skipped``: warm-up, cooldown since the
   last signal, risk outside ``[min_risk_atr, max_risk_atr]`` fast ATR, and (never
   expected) a non-finite or non-positive price or a level on the wrong side.
5. **Confidence** from ``model.predict`` on ``model.features_from_context``; ``cold`` from
   the prediction; the features go into the message.

Why the retest rule and not model_eval's "every structure label" rule on the base
timeframe: on the real BTCUSDT December 2024 1m month it is not sparse (2,360 signals,
1,375 long and 985 short, about three per hour of market time: a demo replaying at N times
speed shows some within minutes), and it is the setup the product describes. Measured cost
on that replay: about 6 us of CPU per 1-minute candle (bench.bench_smc_quick:
BTCUSDT_1m_strategy_on_candle; 2026-12-07), the base SMC update (its event rows) under a third.
What it shares with model_eval: stop, target, features, ATRs.

State. ``StrategyState`` is mutable on purpose and owned by one caller (one symbol): the
SMC states inside it must be (see ``smc/engine.py``), and copying zone tables per candle
would cost more than the analysis. ``on_candle`` still returns ``(state, signals)`` so the
shell reads like a fold; it is the same object. Everything else here is pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from common.errors import ConfigError
from common.wire import SignalGenerated
from services.brain.model import ModelState, features_from_context, predict
# shared with model_eval on purpose: the features must mean the same live and in the replay
from services.brain.features import Atr, nearest_zone_distance
from services.brain.smc import SmcConfig, SmcState
from services.brain.smc import kernel as K
from services.brain.smc import new_state as smc_new_state
# the SMC update as event rows, not records (see ``_apply``); under the name
# ``bench.entry_profile`` probes (the base and the HTF update)
from services.brain.smc import update_events as smc_update

STRATEGY = "smc_htf_retest"
SIDES = {1: "BUY", -1: "SELL"}

# skip reasons (keys of ``StrategyState.skipped``)
SKIP_REASONS = ("bad_candle", "other_interval", "warmup", "cooldown", "no_stop",
                "stop_traded", "risk_below_min", "risk_above_max", "invalid_levels")


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyConfig:
    """Parameters of the rule in the module docstring; unknown fields are a TypeError
    (dataclass), impossible values a ``ConfigError``.

    - ``base_interval_s``: the base candles' interval; others are ignored.
    - ``swing_length`` / ``htf_swing_length``: SMC swing length on the base / higher TF.
    - ``htf_factor``: base candles per higher-timeframe candle (15: 1m -> 15m).
    - ``rr``: default target in R; ``liquidity_min_rr`` .. ``liquidity_max_rr``: a
      liquidity pool at that distance (in R) is the target instead (``liquidity_target``).
    - ``min_risk_atr`` / ``max_risk_atr``: accepted stop distance in fast-ATR units (a
      stop inside the noise is hit by it; a far stop makes a tiny position).
    - ``cooldown_bars``: base bars after a signal during which no other one is emitted.
    - ``atr_bars`` / ``atr_slow_bars``: fast / slow Wilder ATR on base bars.
    - ``warmup_bars``: base bars before the first signal (ATRs and swings settle).
    - ``max_zones``: live zones kept per kind and direction, oldest dropped first (bounds
      the per-candle cost; a zone that old is far from price anyway).
    """

    base_interval_s: int = 60
    swing_length: int = 5
    htf_swing_length: int = 5
    htf_factor: int = 15
    rr: float = 2.0
    liquidity_target: bool = True
    liquidity_min_rr: float = 1.5
    liquidity_max_rr: float = 4.0
    min_risk_atr: float = 0.5
    max_risk_atr: float = 6.0
    cooldown_bars: int = 5
    atr_bars: int = 14
    atr_slow_bars: int = 96
    warmup_bars: int = 100
    max_zones: int = 64

    def __post_init__(self) -> None:
        for name in ("base_interval_s", "swing_length", "htf_swing_length", "htf_factor",
                     "atr_bars",
                     "atr_slow_bars", "max_zones"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        for name in ("cooldown_bars", "warmup_bars"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be an int >= 0, got {v!r}")
        for name in ("rr", "liquidity_min_rr", "liquidity_max_rr", "max_risk_atr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
        if not (math.isfinite(self.min_risk_atr) and 0 <= self.min_risk_atr < self.max_risk_atr):
            raise ConfigError("need 0 <= min_risk_atr < max_risk_atr")
        if self.liquidity_min_rr > self.liquidity_max_rr:
            raise ConfigError("need liquidity_min_rr <= liquidity_max_rr")


class CandleLike(Protocol):
    """The fields of ``common.wire.CandleClosed`` the strategy reads."""

    symbol: str
    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class _Htf:
    """Higher-timeframe candles built from base candles, each fed to the HTF SMC state when
    its last base bar closes (or, after a gap, when a later bucket starts: one bar late)."""

    __slots__ = ("smc", "bucket", "ohlcv", "direction", "kind", "level", "broken_index")

    def __init__(self, config: SmcConfig) -> None:
        # typed: ``_flush_htf`` passes an int open time and float prices
        self.smc: SmcState = smc_new_state(config, typed_inputs=True)
        self.bucket: int | None = None
        self.ohlcv = [0.0] * 5
        self.direction = 0  # bias: direction of the last structure label, 0 = none yet
        self.kind = ""
        self.level = math.nan
        self.broken_index = -1


@dataclass(slots=True, eq=False)
class StrategyState:
    """One symbol's strategy state (mutable, owned by one caller; see the module doc).
    ``skipped`` counts setups and candles not acted on, by reason (``SKIP_REASONS``);
    ``emitted`` counts signals."""

    config: StrategyConfig
    smc: SmcState
    htf: _Htf
    atr: Atr
    atr_slow: Atr
    bars: int = 0
    last_open_ms: int | None = None
    last_signal_bar: int | None = None
    last_pivot: dict | None = None          # direction -> level
    last_sweep: dict | None = None          # direction -> base bar index
    # live zones per direction (1, -1), each in insertion order (oldest first): one dict
    # per direction, so a candle's retest and the cap read only the zones they concern
    obs: dict | None = None                 # direction -> {(direction, index): (top, bottom)}
    fvgs: dict | None = None                # direction -> {(direction, index): (top, bottom)}
    touched_obs: set | None = None
    pools: dict | None = None               # direction -> {(direction, index): level}
    skipped: dict | None = None
    emitted: int = 0


def new_symbol_state(config: StrategyConfig | None = None) -> StrategyState:
    """A fresh state for one symbol."""
    cfg = config if config is not None else StrategyConfig()
    return StrategyState(
        config=cfg,
        # no sessions in the SMC state: a candle's sessions are a function of its open time
        # alone (``_in_session``), read only when a signal is built; the state's other
        # labels do not depend on them (issue #18: three records per candle not built)
        # typed: ``on_candle`` converts the candle to an int open time and float prices
        smc=smc_new_state(SmcConfig(swing_length=cfg.swing_length, timeframes=(), sessions=()),
                          typed_inputs=True),
        htf=_Htf(SmcConfig(swing_length=cfg.htf_swing_length, timeframes=(), sessions=())),
        atr=Atr(cfg.atr_bars), atr_slow=Atr(cfg.atr_slow_bars),
        last_pivot={1: math.nan, -1: math.nan}, last_sweep={1: -1, -1: -1},
        obs={1: {}, -1: {}}, fvgs={1: {}, -1: {}}, touched_obs=set(), pools={1: {}, -1: {}},
        skipped=dict.fromkeys(SKIP_REASONS, 0))


def signal_id(symbol: str, open_ms: int, side: str) -> str:
    """Deterministic id: the same candle and side always give the same id (idempotent
    downstream: a replayed candle cannot open a second position)."""
    return f"{symbol}-{open_ms}-{side}"


# ---- one candle ---------------------------------------------------------------------------

_NUMBER = (int, float)
_isfinite = math.isfinite


def _valid_candle(st: StrategyState, c: CandleLike) -> bool:
    # written out (no generator, each field read once): this runs on every candle
    o, h, low, close, v = c.open, c.high, c.low, c.close, c.volume
    for x in (o, h, low, close, v):
        if not (isinstance(x, _NUMBER) and _isfinite(x)):
            return False
    if h < low or min(o, h, low, close) <= 0 or v < 0:
        return False
    return st.last_open_ms is None or c.open_ms > st.last_open_ms


def _candle_values(st: StrategyState, c: CandleLike) -> tuple | None:
    """The candle's open time as an ``int`` and prices and volume as ``float``s, or ``None``
    for a bad candle (``_valid_candle``)."""
    t, o, h, low, close, v = c.open_ms, c.open, c.high, c.low, c.close, c.volume
    if (type(o) is float and type(h) is float and type(low) is float and type(close) is float
            and type(v) is float and type(t) is int and _isfinite(o + h + low + close + v)):
        # the common case (the shells hand in exact floats and an int time), with
        # ``_valid_candle``'s checks, cheaper: a finite sum means five finite values (an
        # inf or NaN would carry through; an overflow of finite ones takes the long way),
        # ``high >= low > 0`` makes ``high`` positive, and ``int()``/``float()`` would
        # return these very objects
        if h < low or low <= 0 or o <= 0 or close <= 0 or v < 0:
            return None
        last = st.last_open_ms
        return (t, o, h, low, close, v) if last is None or t > last else None
    if not _valid_candle(st, c):
        return None
    return int(t), float(o), float(h), float(low), float(close), float(v)


def _step_htf(htf: _Htf, htf_ms: int, bar_ms: int, t_ms: int, o: float, h: float,
              low: float, c: float, v: float) -> None:
    b = t_ms // htf_ms
    if htf.bucket is not None and b != htf.bucket:
        _flush_htf(htf, htf_ms)  # a gap ended the bucket early
    if htf.bucket is None:
        htf.bucket, htf.ohlcv = b, [o, h, low, c, v]
    else:
        x = htf.ohlcv
        if h > x[1]:  # max() and min() spelled out: the same result, ties keep the first
            x[1] = h
        if low < x[2]:
            x[2] = low
        x[3], x[4] = c, x[4] + v
    if t_ms + bar_ms >= (b + 1) * htf_ms:
        _flush_htf(htf, htf_ms)  # this bar's close is the bucket's close


def _flush_htf(htf: _Htf, htf_ms: int) -> None:
    o, h, low, c, v = htf.ohlcv
    ev = smc_update(htf.smc, htf.bucket * htf_ms, o, h, low, c, v)
    for j in range(0, len(ev), _W):
        if ev[j] == _EV_STRUCTURE:  # the columns of ``smc.fast._rare``'s Structure
            htf.direction, htf.kind = int(ev[j + 2]), _STRUCTURE_KIND[int(ev[j + 1])]
            htf.level, htf.broken_index = ev[j + 4], int(ev[j + 5])
    htf.bucket = None


def _cap(zones: dict, limit: int) -> None:
    """Drop the oldest zones of one direction's dict beyond ``limit`` (insertion order)."""
    while len(zones) > limit:
        del zones[next(iter(zones))]


def _retest(st: StrategyState, d: int, h: float, low: float, c: float, ev: list) -> bool:
    """Did this candle retest a live zone of direction ``d`` known before it? A bullish zone
    is retested when ``low <= top and c > bottom``, a bearish one when ``h >= bottom and
    c < top``. ``ev``: this candle's SMC event rows (the gaps are read from them, see
    ``_gap_retested``); the blocks are scanned (this runs on every candle, over up to
    ``max_zones`` blocks of that direction)."""
    hit = _gap_retested(st.fvgs[d], d, c, ev)
    touched = st.touched_obs
    if d > 0:
        for key, (top, bottom) in st.obs[d].items():
            if low <= top and c > bottom and key not in touched:
                touched.add(key)  # every touched block is spent, even if not used
                hit = True
    elif d < 0:
        for key, (top, bottom) in st.obs[d].items():
            if h >= bottom and c < top and key not in touched:
                touched.add(key)
                hit = True
    return hit


def _gap_retested(fvgs: dict, d: int, c: float, ev: list) -> bool:
    """Did this candle retest one of the live gaps ``fvgs`` (direction ``d``, known before
    it), without scanning them: a gap is touched exactly when the SMC update mitigates it
    (its rule is the retest's: a bullish gap goes when ``low <= top``, a bearish one when
    ``high >= bottom``; the strategy never joins gaps), and the update mitigates every live
    gap it touches on this candle, each in an ``EV_FVG_MIT`` row. So the touched gaps are
    the ones of those rows still in the table (a gap made on this candle is not in it yet);
    the retest is then the close's side of the gap. ``tests/unit/brain/test_strategy.py``
    holds this to the scan on every candle of the real month."""
    if fvgs:
        for j in range(0, len(ev), _W):
            if ev[j] == _EV_FVG_MIT and ev[j + 1] == d:
                zone = fvgs.get((d, int(ev[j + 2])))
                if zone is not None and (c > zone[1] if d > 0 else c < zone[0]):
                    return True
    return False


# this candle's SMC events are read as the kernel's rows (``smc.update_events``), not as
# label records: the strategy uses a few kinds and skips the rest (a retracement row on
# almost every candle, swings, structure), and building records it drops cost about as much
# as the compiled step (issue #18). Kinds as floats: a row's column 0 is one.
_W = K.EV_WIDTH
_EV_PIVOT, _EV_STRUCTURE, _EV_FVG, _EV_FVG_MIT = (float(K.EV_PIVOT), float(K.EV_STRUCTURE),
                                                  float(K.EV_FVG), float(K.EV_FVG_MIT))
_EV_OB, _EV_OB_MIT, _EV_OB_RESET = float(K.EV_OB), float(K.EV_OB_MIT), float(K.EV_OB_RESET)
_EV_POOL, _EV_SWEPT = float(K.EV_POOL), float(K.EV_SWEPT)
_STRUCTURE_KIND = ("BOS", "CHOCH")  # column 1 of a structure row (``smc.fast._KIND``)


def _apply(st: StrategyState, ev: list) -> None:
    """This candle's event rows (``EV_WIDTH`` values each, as ``smc.fast._rare`` reads them:
    kind, direction, index, then the kind's fields) into the zone tables, in emission order.
    The commonest kinds are tested first; pivots' swings and structure rows are not read."""
    limit = st.config.max_zones
    for j in range(0, len(ev), _W):
        kind = ev[j]
        if kind == _EV_FVG:  # direction, index, top, bottom
            d = 1 if ev[j + 1] > 0 else -1
            zones = st.fvgs[d]
            zones[(d, int(ev[j + 2]))] = (ev[j + 3], ev[j + 4])
            if len(zones) > limit:
                _cap(zones, limit)
        elif kind == _EV_FVG_MIT:  # direction, index, mitigated index
            d = 1 if ev[j + 1] > 0 else -1
            st.fvgs[d].pop((d, int(ev[j + 2])), None)
        elif kind == _EV_PIVOT:  # direction, index, level
            st.last_pivot[1 if ev[j + 1] > 0 else -1] = ev[j + 3]
        elif kind == _EV_POOL:  # direction, index, level, end, members, swept (-1: not yet)
            if ev[j + 6] < 0:
                d = 1 if ev[j + 1] > 0 else -1
                zones = st.pools[d]
                zones[(d, int(ev[j + 2]))] = ev[j + 3]
                if len(zones) > limit:
                    _cap(zones, limit)
        elif kind == _EV_OB:  # direction, index, top, bottom, ...
            d = 1 if ev[j + 1] > 0 else -1
            zones = st.obs[d]
            zones[(d, int(ev[j + 2]))] = (ev[j + 3], ev[j + 4])
            if len(zones) > limit:
                _cap(zones, limit)
        elif kind == _EV_OB_MIT or kind == _EV_OB_RESET:  # direction, index, ...
            key = (1 if ev[j + 1] > 0 else -1, int(ev[j + 2]))
            st.obs[key[0]].pop(key, None)
            st.touched_obs.discard(key)
        elif kind == _EV_SWEPT:  # direction, index, level, swept index
            d = 1 if ev[j + 1] > 0 else -1
            st.last_sweep[d] = int(ev[j + 4])
            st.pools[d].pop((d, int(ev[j + 2])), None)
    # touched blocks that were dropped by the cap are forgotten with them
    if len(st.touched_obs) > 2 * limit:
        st.touched_obs &= st.obs[1].keys() | st.obs[-1].keys()


def _target(st: StrategyState, d: int, entry: float, risk: float) -> float:
    cfg = st.config
    if cfg.liquidity_target:
        best = math.inf
        for level in st.pools[d].values():
            # a long aims at buy-side liquidity above (pools of swing highs, direction 1)
            dist = d * (level - entry)
            if cfg.liquidity_min_rr * risk <= dist <= cfg.liquidity_max_rr * risk:
                best = min(best, dist)
        if best < math.inf:
            return entry + d * best
    return entry + d * cfg.rr * risk


def _skip(st: StrategyState, reason: str) -> tuple[StrategyState, list[SignalGenerated]]:
    st.skipped[reason] += 1
    return st, []


def on_candle(state: StrategyState, candle: CandleLike, interval_s: int,
              model_state: ModelState) -> tuple[StrategyState, list[SignalGenerated]]:
    """Feed one closed base candle; returns the state (the same object, advanced) and the
    signals decided at its close (zero or one). Candles of another interval than
    ``config.base_interval_s`` are counted and ignored (the higher timeframe is built here,
    from base candles, so its timing cannot disagree with theirs); a bad candle
    (non-finite, high < low, non-positive price, time not after the last) is counted
    and ignored without touching the state."""
    st, cfg = state, state.config
    if interval_s != cfg.base_interval_s:
        return _skip(st, "other_interval")
    values = _candle_values(st, candle)
    if values is None:
        return _skip(st, "bad_candle")
    t_ms, o, h, low, c, v = values
    bar_ms = interval_s * 1000
    t = st.bars
    st.bars += 1
    st.last_open_ms = t_ms
    events = smc_update(st.smc, t_ms, o, h, low, c, v)
    _step_htf(st.htf, bar_ms * cfg.htf_factor, bar_ms, t_ms, o, h, low, c, v)
    st.atr.step(h, low, c)
    st.atr_slow.step(h, low, c)
    d = st.htf.direction
    # zones are checked before this candle's labels: only zones known before it count
    hit = d != 0 and _retest(st, d, h, low, c, events)
    _apply(st, events)
    if not hit:
        return st, []
    if t < cfg.warmup_bars:
        return _skip(st, "warmup")
    if st.last_signal_bar is not None and t - st.last_signal_bar <= cfg.cooldown_bars:
        return _skip(st, "cooldown")
    stop = st.last_pivot[-d]
    if not d * (c - stop) > 0:  # NaN (no pivot yet) fails too
        return _skip(st, "no_stop")
    if not d * ((low if d > 0 else h) - stop) > 0:
        return _skip(st, "stop_traded")
    risk = abs(c - stop)
    atr = st.atr.value
    if risk < cfg.min_risk_atr * atr:
        return _skip(st, "risk_below_min")
    if risk > cfg.max_risk_atr * atr:
        return _skip(st, "risk_above_max")
    target = _target(st, d, c, risk)
    if not _levels_ok(d, c, stop, target):
        return _skip(st, "invalid_levels")
    swept = st.last_sweep[-d]  # a long wants sell-side liquidity taken first
    feats = features_from_context(
        direction=d, entry=c, stop=stop, target=target, atr=atr, atr_slow=st.atr_slow.value,
        htf_direction=d, is_choch=st.htf.kind == "CHOCH", break_level=st.htf.level,
        break_age_bars=st.htf.smc.bars - 1 - st.htf.broken_index,  # in HTF bars
        ob_distance=nearest_zone_distance(st.obs[d], d, c), fvg_distance=nearest_zone_distance(st.fvgs[d], d, c),
        swept_bars_ago=t - swept if swept >= 0 else None,
        in_asia=_in_session("Tokyo", t_ms), in_london=_in_session("London", t_ms),
        in_new_york=_in_session("New York", t_ms))
    pred = predict(model_state, feats)
    side = SIDES[d]
    sig = SignalGenerated(signal_id=signal_id(candle.symbol, t_ms, side), symbol=candle.symbol,
                          side=side, entry=c, stop=stop, target=target,
                          confidence=min(max(float(pred.confidence), 0.0), 1.0),
                          cold=bool(pred.cold), strategy=STRATEGY, features=feats)
    st.last_signal_bar = t
    st.emitted += 1
    return st, [sig]


# the SMC library's default sessions, the ones whose ``SessionRange`` records the strategy
# once read for these flags (a name that is not among them is never active)
_SESSIONS = {w.name: w for w in SmcConfig().sessions}
_DAY_MS, _MINUTE_MS = 86_400_000, 60_000


def _in_session(name: str, t_ms: int) -> bool:
    """Does the candle opening at ``t_ms`` lie in session ``name``: the ``active`` flag of
    its ``SessionRange`` record (the same rule: ``SessionWindow.contains`` of its UTC
    minute of the day, both ends included)."""
    w = _SESSIONS.get(name)
    return w is not None and w.contains((t_ms % _DAY_MS) // _MINUTE_MS)


def _levels_ok(d: int, entry: float, stop: float, target: float) -> bool:
    """Finite, positive, stop on the losing side of entry and target on the winning side."""
    return (all(math.isfinite(x) and x > 0 for x in (entry, stop, target))
            and d * (entry - stop) > 0 and d * (target - entry) > 0)
