"""The self-learning confidence model: P(R > 0) of a setup, learned online from every
closed trade, from the SMC context at entry.

Pure core, no I/O: ``new_state(config)``, ``predict(state, features) -> Prediction``,
``learn(state, features, outcome_r) -> new state``, ``to_bytes`` / ``from_bytes`` for the
``model_state`` table. A state is a value (frozen dataclass, read-only arrays): ``learn``
returns a new one; copying a few 14x14 matrices costs nothing at trade frequency.

The model. Calibration matters more than accuracy (the confidence is shown and sizes
risk), a trade stream is short (hundreds a year per symbol) and SMC context is at best a
weak predictor. So:

- Each of a few logistic regressions keeps a Gaussian posterior over its weights (mean
  ``w``, covariance ``cov``), updated once per outcome by one Newton step on the
  log-likelihood (the extended Kalman filter / Laplace update of online logistic
  regression): no learning rate; the prior variance is the L2 regularisation; the
  prediction averages the sigmoid over the weights' uncertainty (MacKay's probit
  approximation), so an unsure model leans to 0.5 instead of saying 0.9.
- How strong the prior should be is not known in advance (it depends on how much signal
  the features carry), so the models differ only in it (``prior_vars``), and they are
  mixed with the running base rate itself by Bayesian model averaging: each component is
  weighted by its prior times the likelihood of the outcomes it *predicted* before
  learning them. Scored that way, the mixture's total log loss is never worse than the
  best component's by more than log(number of components) (~1.4 nats over all trades
  with four): where the features carry nothing it says the base rate, where they do the
  logistic models take over. The evidence never decays, so after a regime change the
  mixture follows the new best component only as fast as the evidence turns.

Measured on the BTCUSDT 2024 replay (``model_eval``, 1,668 trades): the base rate scores
Brier 0.2252; one logistic model alone 0.2313 at prior variance 1, 0.2266 at 0.01 and
0.2254 at 0.001 (worse at every prior: the features carry no detectable signal there);
river 0.26's SGD ``LogisticRegression`` behind a ``StandardScaler`` 0.2330 (learning rate
0.01, its default) or 0.2285 (0.001); this mixture 0.2254. On synthetic streams where the
features do carry signal the mixture beats the base rate (``test_model_eval.py``).

Features are standardised with a running mean/variance (Welford) of the outcomes learned so
far and clipped to ``+-clip_z``; before that each raw value is clipped to its declared
range, a NaN or missing value replaced by its neutral default, so NaN never reaches a
weight.

Cold start: until ``min_outcomes`` outcomes were learned, ``predict`` returns the running
base rate under a Beta(``prior_wins``, ``prior_losses``) prior (0.5 at the start with
Beta(2, 2)) and says ``cold=True``. Everything learns from the first outcome on.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
import numpy as np

from common.fastcopy import replace
from common.errors import ConfigError, DecodeError, DefinitiveError

# name -> (low, high, neutral default). The one place a feature is declared: the order is
# the weight order, the range is where raw values are clipped, the default stands in for a
# missing or NaN value (what "no information" means for that feature).
FEATURE_SPECS: dict[str, tuple[float, float, float]] = {
    "trend_agree": (-1.0, 1.0, 0.0),      # +1 higher-timeframe structure agrees, -1 opposes
    "choch": (0.0, 1.0, 0.0),             # 1: the trigger is a change of character, 0: BOS
    "ob_dist_atr": (0.0, 10.0, 10.0),     # to the nearest same-side live order block; 10 = none
    "fvg_dist_atr": (0.0, 10.0, 10.0),    # to the nearest same-side open fair value gap
    "swept_recent": (0.0, 1.0, 0.0),      # opposite-side liquidity swept in the last bars
    "session_asia": (0.0, 1.0, 0.0),
    "session_london": (0.0, 1.0, 0.0),
    "session_ny": (0.0, 1.0, 0.0),
    "rr": (0.0, 10.0, 2.0),               # planned reward : risk
    "risk_atr": (0.0, 20.0, 1.0),         # stop distance in ATR
    "vol_regime": (-3.0, 3.0, 0.0),       # log(fast ATR / slow ATR)
    "break_age_log": (0.0, 6.0, 0.0),     # log(1 + bars since the structure broke)
    "extension_atr": (-10.0, 10.0, 0.0),  # how far price already ran past the broken level
}
FEATURES: tuple[str, ...] = tuple(FEATURE_SPECS)
_LOW = np.array([s[0] for s in FEATURE_SPECS.values()])
_HIGH = np.array([s[1] for s in FEATURE_SPECS.values()])
_DEFAULT = np.array([s[2] for s in FEATURE_SPECS.values()])
_SPECS = tuple((name, low, high, default) for name, (low, high, default) in FEATURE_SPECS.items())
_STD_FLOOR = (_HIGH - _LOW) * 0.01  # spread below 1 % of a feature's range counts as none
_P_EPS = 1e-12  # a component's forecast is kept this far from 0 and 1 when it is scored
_MAX_WEIGHT = 1e6  # no stored log-odds weight is bigger: beyond it, the blob was tampered with

SWEPT_RECENT_BARS = 20  # a sweep older than this (5 h on 15 m) no longer counts as "just swept"
STATE_VERSION = 1       # bump on any change to the persisted layout or to FEATURES' meaning
_MAGIC = b"AEGM"        # AEGIS model
_HEADER = struct.Struct(">4sHII")  # magic, version, body length, crc32 of the body


class ModelInputError(DefinitiveError):
    """A learn call the model cannot take (non-finite outcome, unknown feature name)."""

    reason = "model_input"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """Hyper-parameters: round values, not tuned on the replay.

    - ``min_outcomes``: outcomes before the model's own output is used (cold until then).
    - ``prior_wins`` / ``prior_losses``: Beta prior of the base rate (cold forecast and
      first mixture component).
    - ``prior_vars``: one logistic model per value, the prior variance of each weight on
      standardised features (L2 strength ``1 / prior_var``). 1.0: "one standard deviation
      of a feature may move the log-odds by about 1"; 0.01: "hardly at all".
    - ``prior_var_bias``: prior variance of the bias (log-odds of a win at average
      features); loose, so the base rate (a third with a 2 R target) is learned freely.
    - ``process_noise``: variance added to every weight per outcome, so old trades fade
      (0: a stationary world; 1e-3 forgets on a scale of ~1,000 trades).
    - ``clip_z``: standardised features are clipped to +-``clip_z``.
    - ``r_weighted``: weight each weight update by ``min(|R|, max_r_weight)`` (a 3 R loss
      teaches more than a scratch trade); off by default: it bends P(R > 0) toward
      big outcomes.
    """

    min_outcomes: int = 30
    prior_wins: float = 2.0
    prior_losses: float = 2.0
    prior_vars: tuple[float, ...] = (0.01, 0.1, 1.0)
    prior_var_bias: float = 4.0
    process_noise: float = 0.0
    clip_z: float = 5.0
    r_weighted: bool = False
    max_r_weight: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.min_outcomes, bool) or not isinstance(self.min_outcomes, int) \
                or self.min_outcomes < 0:
            raise ConfigError(f"min_outcomes must be an int >= 0, got {self.min_outcomes!r}")
        for name in ("prior_wins", "prior_losses", "prior_var_bias", "clip_z", "max_r_weight"):
            if not _positive(getattr(self, name)):
                raise ConfigError(f"{name} must be a finite number > 0, "
                                  f"got {getattr(self, name)!r}")
        if not (isinstance(self.prior_vars, tuple) and self.prior_vars
                and all(_positive(v) for v in self.prior_vars)):
            raise ConfigError(f"prior_vars must be a non-empty tuple of numbers > 0, "
                              f"got {self.prior_vars!r}")
        if not (isinstance(self.process_noise, (int, float)) and math.isfinite(self.process_noise)
                and self.process_noise >= 0):
            raise ConfigError(f"process_noise must be >= 0, got {self.process_noise!r}")


def _positive(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


class Prediction(NamedTuple):
    """The model's answer for one setup: P(R > 0), whether it is still the cold prior, and
    how many outcomes it has learned from."""

    confidence: float
    cold: bool
    n_seen: int


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)  # always a private copy
    a.flags.writeable = False
    return a


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelState:
    """Everything the model knows. The arrays are read-only: a state is a value.

    ``mean``/``m2``: Welford running mean and sum of squared deviations of the raw
    (clipped) features; ``w[k]``/``cov[k]``: posterior of logistic model ``k`` (bias
    first); ``loss``: cumulative prequential log loss of the base rate (``[0]``) and of each
    logistic model, the mixture's evidence."""

    config: ModelConfig
    n_seen: int
    wins: int
    mean: np.ndarray
    m2: np.ndarray
    w: np.ndarray
    cov: np.ndarray
    loss: np.ndarray

    @property
    def base_rate(self) -> float:
        """Running win rate under the Beta prior (the cold forecast)."""
        c = self.config
        return (self.wins + c.prior_wins) / (self.n_seen + c.prior_wins + c.prior_losses)

    @property
    def mixture(self) -> dict[str, float]:
        """Posterior weight of each component, by name (for logs and reports)."""
        names = ["base_rate"] + [f"logistic(prior_var={v:g})" for v in self.config.prior_vars]
        return dict(zip(names, _softmax(-self.loss).tolist()))


def new_state(config: ModelConfig | None = None) -> ModelState:
    """A model that has seen nothing: weights at 0 with their prior variances."""
    config = config if config is not None else ModelConfig()
    d, k = len(FEATURES), len(config.prior_vars)
    cov = np.zeros((k, d + 1, d + 1))
    for j, v in enumerate(config.prior_vars):
        cov[j] = np.diag([config.prior_var_bias] + [v] * d)
    return ModelState(config=config, n_seen=0, wins=0, mean=_frozen(np.zeros(d)),
                      m2=_frozen(np.zeros(d)), w=_frozen(np.zeros((k, d + 1))),
                      cov=_frozen(cov), loss=_frozen(np.zeros(k + 1)))


# ---- features -------------------------------------------------------------------------

def _finite(x: object, default: float) -> float:
    try:
        v = float(x) if x is not None else default  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default
    return v if math.isfinite(v) else default


def _ratio(a: float, b: float) -> float:
    """``a / b``, or NaN (-> the feature's default) when ``b`` is not a positive number."""
    return a / b if b > 0 and math.isfinite(b) else math.nan


def features_from_context(*, direction: int, entry: float, stop: float, target: float,
                          atr: float, atr_slow: float, htf_direction: int = 0,
                          is_choch: bool = False, break_level: float | None = None,
                          break_age_bars: float = 0.0, ob_distance: float | None = None,
                          fvg_distance: float | None = None,
                          swept_bars_ago: float | None = None, in_asia: bool = False,
                          in_london: bool = False, in_new_york: bool = False
                          ) -> dict[str, float]:
    """The model's features for one setup, from plain numbers known at decision time.

    ``direction`` +1 long / -1 short; prices in quote units; ``atr``/``atr_slow`` a fast and
    a slow average true range; ``htf_direction`` the last higher-timeframe structure
    direction (0 = none yet); ``break_level``/``break_age_bars`` the broken structure level
    and how many bars ago it broke; ``ob_distance``/``fvg_distance`` price distance from
    ``entry`` to the nearest same-side live order block / open gap (0 inside, ``None`` =
    none); ``swept_bars_ago`` bars since opposite-side liquidity was swept (``None`` =
    never). Anything non-finite becomes the feature's neutral default, and every value is
    clipped to its declared range (``FEATURE_SPECS``)."""
    d = 1.0 if direction >= 0 else -1.0
    entry, stop, target, atr, atr_slow = (_finite(v, math.nan)
                                          for v in (entry, stop, target, atr, atr_slow))
    risk = abs(entry - stop)
    vol = _ratio(atr, atr_slow)
    swept = _finite(swept_bars_ago, math.inf)
    raw = {
        "trend_agree": d * _sign(_finite(htf_direction, 0.0)) + 0.0,  # no -0.0
        "choch": 1.0 if is_choch else 0.0,
        # no block / gap at all counts as far away: inf -> clipped to the top of the range
        "ob_dist_atr": _ratio(_finite(ob_distance, math.inf), atr),
        "fvg_dist_atr": _ratio(_finite(fvg_distance, math.inf), atr),
        "swept_recent": 1.0 if 0 <= swept <= SWEPT_RECENT_BARS else 0.0,
        "session_asia": 1.0 if in_asia else 0.0,
        "session_london": 1.0 if in_london else 0.0,
        "session_ny": 1.0 if in_new_york else 0.0,
        "rr": _ratio(abs(target - entry), risk),
        "risk_atr": _ratio(risk, atr),
        "vol_regime": math.log(vol) if vol > 0 and math.isfinite(vol) else math.nan,
        "break_age_log": math.log1p(max(_number(break_age_bars, 0.0), 0.0)),
        "extension_atr": _ratio(d * (entry - _finite(break_level, entry)), atr),
    }
    return dict(zip(FEATURES, _clipped(raw)))


def _sign(x: float) -> float:
    """``np.sign`` of a number that is not NaN (a zero keeps its sign)."""
    return 1.0 if x > 0 else -1.0 if x < 0 else x


def _number(x: object, default: float) -> float:
    """``x`` as a float; NaN, ``None`` or a non-number -> ``default`` (inf is kept: clipped)."""
    try:
        v = float(x) if x is not None else default  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default
    return default if math.isnan(v) else v


def vector(features: Mapping[str, float]) -> np.ndarray:
    """The raw feature vector in ``FEATURES`` order: a missing, NaN or non-numeric value is
    replaced by its default, everything (infinities included) clipped to its range.
    Unknown names are an error (a misspelt feature would otherwise be silently ignored)."""
    return np.array(_clipped(features))


def _clipped(features: Mapping[str, float]) -> list[float]:
    """``vector`` as a list of floats. In plain floats, not numpy: 13 values, a few times
    per signal, where numpy's per-call overhead is most of the cost (issue #18). The clip is
    numpy's, spelled out (``np.clip`` is ``min(max(x, low), high)`` with a strict ``>`` and
    ``<`` that keep the bound on a tie: -0.0 clipped at 0.0 is 0.0), so the values are the
    very same; no NaN reaches it (``_number``)."""
    unknown = set(features) - FEATURE_SPECS.keys()
    if unknown:
        raise ModelInputError(f"unknown feature(s): {sorted(unknown)}")
    out = []
    get = features.get
    for name, low, high, default in _SPECS:
        x = _number(get(name), default)
        x = x if x > low else low
        out.append(x if x < high else high)
    return out


def _design(x: np.ndarray, n: int, mean: np.ndarray, m2: np.ndarray,
            clip: float) -> np.ndarray:
    """Bias plus standardised, clipped features (running stats over ``n`` outcomes)."""
    return _design_floats(x.tolist(), n, mean.tolist(), _spreads(n, m2), clip)


def _spreads(n: int, m2: np.ndarray) -> list[float] | None:
    """The features' spreads the design divides by, from the running sums of squared
    deviations over ``n`` outcomes; None below two outcomes (no spread yet: the design only
    centres). The floor keeps a (nearly) constant feature at ~0 instead of blowing rounding
    noise up to +-clip_z (a fixed 2 R target gives rr = 2 +- 1e-15)."""
    return np.maximum(np.sqrt(m2 / (n - 1)), _STD_FLOOR).tolist() if n >= 2 else None


def _sigmoid(m: float) -> float:
    if m >= 0:
        return 1.0 / (1.0 + math.exp(-m))
    e = math.exp(m)
    return e / (1.0 + e)


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max())
    return e / e.sum()


def _components(state: ModelState, z: np.ndarray) -> np.ndarray:
    """Each component's P(win): the base rate, then every logistic model (moderated)."""
    p = [state.base_rate]
    for w, cov in zip(state.w, state.cov):
        var = max(float(z @ cov @ z), 0.0)
        # MacKay: average the sigmoid over the weight posterior; uncertainty pulls to 0.5
        p.append(_sigmoid(float(z @ w) / math.sqrt(1.0 + math.pi * var / 8.0)))
    return np.array(p)


# ---- predict / learn --------------------------------------------------------------------

# The last state ``predict`` saw and what it derives from the state alone (the mixture's
# weights, the features' means and spreads). A state predicts several setups between two
# outcomes (a backtest: about five), so this is computed once per state instead of once
# per call. A cache, not state: the values are the ones predict would compute anyway, and
# a state is an immutable value, held here so its ``id`` cannot be reused while it is the
# key (one tuple, rebound at once: a reader sees an old entry or a new one, never a mix).
_LAST: tuple = (None, None, None, None)


def _per_state(state: ModelState) -> tuple:
    """``(weights, mean, std)`` of ``state``: the mixture's weights (an array), the running
    means and ``_design``'s spreads as plain floats (``std`` None below two outcomes)."""
    global _LAST
    last = _LAST
    if last[0] is not state:
        last = _LAST = (state, _softmax(-state.loss), state.mean.tolist(), _spreads(state.n_seen, state.m2))
    return last[1], last[2], last[3]


def _design_floats(x: list[float], n: int, mean: list[float], std: list[float] | None,
                   clip: float) -> np.ndarray:
    """The design (bias first, then each feature centred, divided by its spread ``std``
    from ``_spreads`` when there is one, and clipped to +-``clip``) from plain floats: one
    subtraction and one division per feature, rounded as numpy would, and the clip spelled
    out as in ``_clipped``, without numpy's per-call cost on 13 numbers. ``predict`` passes
    the spreads ``_per_state`` kept; ``learn`` goes through ``_design``."""
    low = -clip
    out = [1.0]
    for k, xk in enumerate(x):
        z = (xk - mean[k]) / std[k] if n >= 2 else xk - mean[k]
        z = z if z > low else low
        out.append(z if z < clip else clip)
    return np.array(out)


def predict(state: ModelState, features: Mapping[str, float]) -> Prediction:
    """P(R > 0) for a setup. Cold (the Beta base rate) until ``min_outcomes`` outcomes."""
    x = _clipped(features)  # checked even when cold: a misspelt name fails from day one
    if state.n_seen < state.config.min_outcomes:
        return Prediction(state.base_rate, True, state.n_seen)
    weights, mean, std = _per_state(state)
    z = _design_floats(x, state.n_seen, mean, std, state.config.clip_z)
    p = float(weights @ _components(state, z))
    if not math.isfinite(p):  # cannot happen from learn(); a last line against NaN anyway
        return Prediction(state.base_rate, True, state.n_seen)
    return Prediction(min(max(p, 0.0), 1.0), False, state.n_seen)


def learn_input(features: Mapping[str, float], outcome_r: float) -> float:
    """``learn``'s inputs checked (the outcome as a float), or the ModelInputError ``learn``
    raises. A shell that learns later (``research.fast_backtest``) checks now with it."""
    try:
        r = float(outcome_r)
    except (TypeError, ValueError):
        raise ModelInputError(f"outcome_r is not a number: {outcome_r!r}") from None
    if not math.isfinite(r):
        raise ModelInputError(f"outcome_r is not finite: {outcome_r!r}")
    unknown = set(features) - FEATURE_SPECS.keys()  # ``vector``'s one refusal
    if unknown:
        raise ModelInputError(f"unknown feature(s): {sorted(unknown)}")
    return r


def learn(state: ModelState, features: Mapping[str, float], outcome_r: float) -> ModelState:
    """The state after one closed trade with these entry features and outcome in R."""
    r = learn_input(features, outcome_r)
    c = state.config
    y = 1.0 if r > 0 else 0.0
    x = vector(features)

    # score every component on this outcome *before* it learns it: the mixture's evidence
    p_before = np.clip(_components(state, _design(x, state.n_seen, state.mean, state.m2,
                                                  c.clip_z)), _P_EPS, 1.0 - _P_EPS)
    loss = state.loss - np.log(p_before if y else 1.0 - p_before)

    n = state.n_seen + 1
    delta = x - state.mean
    mean = state.mean + delta / n
    m2 = state.m2 + delta * (x - mean)
    z = _design(x, n, mean, m2, c.clip_z)
    weight = min(abs(r), c.max_r_weight) if c.r_weighted else 1.0
    ws, covs = [], []
    for w, cov in zip(state.w, state.cov):
        if c.process_noise:
            cov = cov + c.process_noise * np.eye(len(z))
        p = _sigmoid(float(z @ w))
        h = weight * p * (1.0 - p)
        cz = cov @ z
        cov = cov - np.outer(cz, cz) * (h / (1.0 + h * float(z @ cz)))
        cov = (cov + cov.T) * 0.5  # keep it symmetric against rounding drift
        ws.append(w + (weight * (y - p)) * (cov @ z))
        covs.append(cov)
    return replace(state, n_seen=n, wins=state.wins + int(y), mean=_frozen(mean),
                   m2=_frozen(m2), w=_frozen(np.array(ws)), cov=_frozen(np.array(covs)),
                   loss=_frozen(loss))


# ---- persistence ------------------------------------------------------------------------

class _Blob(msgspec.Struct, forbid_unknown_fields=True):
    features: list[str]
    config: dict[str, int | float | bool | list[float]]
    n_seen: int
    wins: int
    mean: bytes  # float64 little-endian: exact, and 8 bytes a number
    m2: bytes
    w: bytes
    cov: bytes
    loss: bytes


def _le(a: np.ndarray) -> bytes:
    return a.astype("<f8").tobytes()


def to_bytes(state: ModelState) -> bytes:
    """``AEGM``, version, body length, crc32, then the msgpack body: an exact round trip."""
    c = state.config
    conf = {k: getattr(c, k) for k in ModelConfig.__dataclass_fields__}
    conf["prior_vars"] = list(c.prior_vars)
    body = msgspec.msgpack.encode(_Blob(
        features=list(FEATURES), config=conf, n_seen=state.n_seen, wins=state.wins,
        mean=_le(state.mean), m2=_le(state.m2), w=_le(state.w), cov=_le(state.cov),
        loss=_le(state.loss)))
    return _HEADER.pack(_MAGIC, STATE_VERSION, len(body), zlib.crc32(body)) + body


def _array(raw: bytes, shape: tuple[int, ...], name: str) -> np.ndarray:
    if len(raw) != 8 * math.prod(shape):
        raise DecodeError(f"model state: {name} has {len(raw)} bytes, want {8 * math.prod(shape)}")
    a = np.frombuffer(raw, dtype="<f8").reshape(shape)
    if not np.all(np.isfinite(a)):
        raise DecodeError(f"model state: {name} holds a non-finite value")
    return _frozen(a)


def from_bytes(blob: bytes, config: ModelConfig | None = None) -> ModelState:
    """The state ``to_bytes`` wrote. ``config``, if given, replaces the stored
    hyper-parameters (an operator changed ``min_outcomes``, say) but must keep the same
    ``prior_vars`` (the model family). Anything else (truncated, corrupt, another version
    or feature set) raises ``DecodeError``: the caller then starts cold and says so."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise DecodeError(f"model state: expected bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < _HEADER.size:
        raise DecodeError(f"model state: {len(blob)} bytes, shorter than the header")
    magic, version, length, crc = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise DecodeError(f"model state: bad magic {magic!r}")
    if version != STATE_VERSION:
        raise DecodeError(f"model state: version {version}, this build reads {STATE_VERSION}",
                          reason="version")
    body = blob[_HEADER.size:]
    if len(body) != length:
        raise DecodeError(f"model state: body has {len(body)} bytes, header says {length}")
    if zlib.crc32(body) != crc:
        raise DecodeError("model state: checksum mismatch")
    try:
        b = msgspec.msgpack.decode(body, type=_Blob)
        stored = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in b.config.items()})
    except (msgspec.MsgspecError, TypeError, ValueError, ConfigError) as exc:
        # ValueError: msgspec lets UnicodeDecodeError out for a bad string (found by fuzzing)
        raise DecodeError(f"model state: {exc}") from None
    if tuple(b.features) != FEATURES:
        raise DecodeError(f"model state: features {b.features} differ from this build's",
                          reason="version")
    if config is not None and config.prior_vars != stored.prior_vars:
        raise DecodeError(f"model state: prior_vars {stored.prior_vars} stored, "
                          f"{config.prior_vars} configured", reason="version")
    if not (0 <= b.wins <= b.n_seen):
        raise DecodeError(f"model state: wins {b.wins} outside 0..{b.n_seen}")
    d, k = len(FEATURES), len(stored.prior_vars)
    cov = _array(b.cov, (k, d + 1, d + 1), "cov")
    m2 = _array(b.m2, (d,), "m2")
    # a covariance that is not symmetric positive definite would let an update divide by
    # ~0; the checksum stops accidents, this stops a blob edited and re-checksummed
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise DecodeError("model state: a covariance is not positive definite") from None
    if not np.array_equal(cov, np.transpose(cov, (0, 2, 1))):
        raise DecodeError("model state: a covariance is not symmetric")
    mean, w, loss = (_array(b.mean, (d,), "mean"), _array(b.w, (k, d + 1), "w"),
                     _array(b.loss, (k + 1,), "loss"))
    # what learning can produce: means of clipped values, bounded spreads, sane weights
    span = _HIGH - _LOW
    if ((mean < _LOW - 1e-9 * span) | (mean > _HIGH + 1e-9 * span)).any() \
            or ((m2 < 0) | (m2 > (b.n_seen + 1) * span * span)).any() \
            or (np.abs(w) > _MAX_WEIGHT).any() or (loss < 0).any():
        raise DecodeError("model state: values outside what learning can produce")
    return ModelState(config=config or stored, n_seen=b.n_seen, wins=b.wins, mean=mean,
                      m2=m2, w=w, cov=cov, loss=loss)
