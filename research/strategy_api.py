"""The strategy API: a strategy is a small object with pure callbacks; the shells around it
(the live brain, ``aegis replay``, ``aegis backtest``) own the clock, the data, the risk
checks, the rotation and the broker.

A strategy subclasses ``Strategy`` and overrides what it needs:

- ``on_candle(ctx, candle)``: a closed base candle (1m) of ``ctx.symbol``;
- ``on_tick(ctx, tick)``: optional; only shells that have ticks call it (not the backtest);
- ``on_fill(ctx, fill)``: one of the symbol's fills (entry or exit);
- ``on_timer(ctx, now_ms)``: called once per base candle period, after ``on_candle``.

Each returns a list of intents (``Enter``, ``Exit``, ``MoveStop``, ``MoveTarget``,
``Cancel``), or an empty list. What a callback gets is its ``Context``: the clock
(``now_ms``, the close time of the candle, never the wall clock), the symbol's recent
closed candles (oldest first, the current one last, at most ``Strategy.history`` of them),
the SMC labels of this candle and the symbol's SMC state if the strategy asks for them
(``wants_smc = True``), the confidence model's state (``None`` for a strategy that says
``reads_model = False``), the symbol's position (``None`` when
flat), and ``state``: a dict that belongs to the strategy for this symbol and survives
between calls. Python cannot forbid a strategy to open a file or a socket; the API gives it
no reason to: everything it may use is in the context, and a strategy that reads anything
else is not deterministic and will not backtest the way it trades.

Loaded by config (``[strategy] path = "package.module:Class"`` or
``path = "/some/dir/file.py:Class"``, parameters in ``[strategy.params]``): ``load``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import structlog

from common.errors import ConfigError
from common.wire import SignalGenerated

log = structlog.get_logger(__name__)

SIDES = ("BUY", "SELL")
DEFAULT_STRATEGY = "smc"
# short names for the strategies that ship with AEGIS
BUILTIN = {
    "smc": "research.strategies.smc:SmcRetest",
    "donchian": "research.strategies.donchian:DonchianBreakout",
    "ema_cross": "research.strategies.ema_cross:EmaCross",
}
# why an intent was not carried out (keys of ``StrategyRunner.counters``)
ERROR = "callback_error"
BAD_INTENT = "bad_intent"


# ---------------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True, kw_only=True)
class Candle:
    """One closed candle (the fields of ``common.wire.CandleClosed`` a strategy reads)."""

    symbol: str
    interval_s: int
    open_ms: int
    close_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionView:
    """The symbol's open trade as the trader holds it (quantities unsigned; ``side`` of the entry)."""

    side: str
    qty: float
    entry_price: float
    stop: float
    target: float
    opened_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FillView:
    """One execution of the symbol: ``entry`` True for the entry's fills, False for exits."""

    side: str
    qty: float
    price: float
    fee: float
    time_ms: int
    entry: bool


@dataclass(frozen=True, slots=True)
class Context:
    """What a callback may read. ``state`` is the strategy's own (mutable) dict for this symbol;
    ``smc_state`` must not be changed (it is the shell's)."""

    now_ms: int
    symbol: str
    candles: tuple[Candle, ...] | Any  # a read-only sequence, oldest first
    position: PositionView | None
    state: dict
    model: Any = None  # services.brain.model.ModelState: the confidence model as it is now
    smc_labels: tuple = ()  # SMC labels this candle produced (wants_smc)
    smc_state: Any = None  # the symbol's SmcState (wants_smc)


def _maker(cls: type):
    """A positional constructor for a frozen, slotted dataclass with nothing to validate (no
    ``__post_init__``): ``make(*field values in field order)`` gives the instance ``cls(...)``
    gives (equal, same hash, still frozen, of class ``cls``), in about a third of the time.
    The record is filled as an instance of a plain slotted twin (the same slots in the same
    order: the same layout; plain attribute stores, which CPython turns into direct slot
    writes) and then given its real class (``__class__`` assignment between classes of the
    same layout), as ``services/brain/smc/fast.py`` builds the SMC labels. The generated
    ``__init__`` sets each field through ``object.__setattr__``, the slot descriptors one
    Python-level call each; the backtest builds a ``Candle`` for every bar."""
    import dataclasses

    fs = dataclasses.fields(cls)
    if not ("__slots__" in cls.__dict__ and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
            and not hasattr(cls, "__post_init__") and all(f.init for f in fs)):
        raise TypeError(f"{cls.__name__}: not a frozen slotted dataclass without __post_init__")
    names = [f.name for f in fs]
    if tuple(cls.__dict__["__slots__"]) != tuple(names):
        raise TypeError(f"{cls.__name__}: its slots are not its fields in order")
    twin = type(f"_Mutable{cls.__name__}", (), {"__slots__": tuple(names)})
    probe = object.__new__(twin)
    probe.__class__ = cls  # fails here, at import, if the layouts ever differ
    ns: dict[str, Any] = {"new": object.__new__, "cls": cls, "twin": twin}
    body = "".join(f"    o.{n} = {n}\n" for n in names)
    exec(f"def make({', '.join(names)}):\n    o = new(twin)\n{body}    o.__class__ = cls\n    return o\n", ns)  # noqa: S102
    return ns["make"]


make_candle = _maker(Candle)  # make_candle(symbol, interval_s, open_ms, close_ms, open, high, low, close, volume)
_make_context = _maker(Context)


# ---------------------------------------------------------------------------- intents
@dataclass(frozen=True, slots=True, kw_only=True)
class Enter:
    """Open a position at the market. ``entry`` is the reference price the risk is measured
    from (default: the candle's close); the size comes from the trader (risk per trade)."""

    side: str
    stop: float
    target: float
    confidence: float = 0.5
    features: Mapping[str, float] = field(default_factory=dict)
    entry: float | None = None
    cold: bool = True
    strategy: str = ""  # the name published in the signal ("" = the strategy's ``name``)


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit:
    """Close the symbol's position at the market."""

    reason: str = "STRATEGY"


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveStop:
    """Move the symbol's stop: the brain's watcher uses it at once, and the exchange-held
    STOP_MARKET is cancelled and replaced (live, demo and paper). The backtest moves the plan's
    stop the same way (its bars are checked against it from the next bar on). A stop the price
    has already passed is refused (counted ``move_refused:STOP``): ask for ``Exit`` instead."""

    price: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveTarget:
    """Move the symbol's target, like ``MoveStop`` (the TAKE_PROFIT_MARKET is replaced)."""

    price: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """Withdraw the symbol's entry while it rests unfilled. Entries are limit-IOC (or market)
    orders that never rest, so today this finds nothing to cancel unless the entry was not
    sent yet; kept so that strategies written for resting limit entries read the same."""


Intent = Enter | Exit | MoveStop | MoveTarget | Cancel


# ---------------------------------------------------------------------------- the base class
class Strategy:
    """Subclass and override. ``__init__`` receives ``[strategy.params]`` as keywords: validate
    them there and raise ``ConfigError`` (or ``TypeError``/``ValueError``) with a clear message."""

    name: str = "strategy"
    history: int = 200  # closed candles kept in ``ctx.candles``
    wants_smc: bool = False
    interval_s: int = 60  # the base candles this strategy reads
    # False: the strategy never reads ``ctx.model`` (it gets None there, in every shell), so a
    # shell may learn the confidence model's lessons later, in one go (the fast backtest does)
    reads_model: bool = True

    def on_candle(self, ctx: Context, candle: Candle) -> list:
        return []

    def on_tick(self, ctx: Context, tick: Any) -> list:
        return []

    def on_fill(self, ctx: Context, fill: FillView) -> list:
        return []

    def on_timer(self, ctx: Context, now_ms: int) -> list:
        return []

    def counters(self, state: dict) -> Mapping[str, int]:
        """Optional per-symbol counters (skipped setups by reason, ...) for the shell's stats."""
        return {}


_BASE_ON_TIMER = Strategy.on_timer


# ---------------------------------------------------------------------------- loading
def resolve(path: str) -> str:
    """A short name (``smc``, ``donchian``) -> its ``module:Class``; anything else unchanged."""
    return BUILTIN.get(path or DEFAULT_STRATEGY, path or DEFAULT_STRATEGY)


def load_class(path: str) -> type:
    """``package.module:Class`` or ``/dir/file.py:Class`` -> the class, or a ConfigError
    saying what is wrong."""
    spec = resolve(path)
    mod_part, sep, cls_name = spec.rpartition(":")
    if not sep or not mod_part or not cls_name.isidentifier():
        raise ConfigError(f"strategy.path must be 'package.module:Class' or '/path/file.py:Class' "
                          f"(or one of {sorted(BUILTIN)}), not {path!r}")
    if mod_part.endswith(".py") or "/" in mod_part:
        file = Path(mod_part).expanduser()
        if not file.is_file():
            raise ConfigError(f"strategy.path: no file {file}")
        mod_name = "aegis_user_strategy_" + hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:16]
        module = sys.modules.get(mod_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(mod_name, file)
            if loader_spec is None or loader_spec.loader is None:
                raise ConfigError(f"strategy.path: cannot load {file} as Python")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[mod_name]
                raise ConfigError(f"strategy.path: {file} failed to import: {exc!r}") from None
    else:
        try:
            module = importlib.import_module(mod_part)
        except Exception as exc:
            raise ConfigError(f"strategy.path: cannot import {mod_part!r}: {exc!r}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ConfigError(f"strategy.path: {mod_part} has no {cls_name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
        raise ConfigError(f"strategy.path: {spec} is not a subclass of research.strategy_api.Strategy")
    return cls


def load(path: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """An instance of the configured strategy with its parameters, or a ConfigError."""
    cls = load_class(path)
    try:
        strat = cls(**dict(params or {}))
    except ConfigError as exc:
        raise ConfigError(f"strategy {resolve(path)}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategy {resolve(path)}: bad parameters {dict(params or {})}: {exc}") from None
    hist = getattr(strat, "history", 0)
    if isinstance(hist, bool) or not isinstance(hist, int) or hist < 1:
        raise ConfigError(f"strategy {resolve(path)}: history must be an int >= 1, not {hist!r}")
    return strat


def parse_params(text: str) -> dict[str, Any]:
    """``k=v,k2=v2`` (command line) -> a dict; values read as TOML values (numbers, booleans,
    quoted strings), else kept as strings."""
    import tomllib

    out: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        k, sep, v = part.partition("=")
        if not sep or not k.strip().isidentifier():
            raise ConfigError(f"strategy parameter must be name=value, not {part!r}")
        try:
            out[k.strip()] = tomllib.loads(f"x = {v.strip()}")["x"]
        except tomllib.TOMLDecodeError:
            out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------------------- the runner
@dataclass(slots=True)
class _Symbol:
    candles: deque
    state: dict
    smc: Any = None
    ctx: Any = None  # the reused Context (``StrategyRunner.reuse_context``)


# ``Context``'s slots that change from one candle to the next, set in place on a reused one
_SET_NOW, _SET_POSITION, _SET_MODEL, _SET_LABELS = (Context.__dict__[n].__set__
                                                    for n in ("now_ms", "position", "model", "smc_labels"))


def _smc_update():
    """``services.brain.smc.update``, imported at its first use (not at every candle)."""
    global _SMC_UPDATE
    if _SMC_UPDATE is None:
        from services.brain.smc import update

        _SMC_UPDATE = update
    return _SMC_UPDATE


_SMC_UPDATE: Any = None


class StrategyRunner:
    """Shell-side helper shared by the brain and the backtest: keeps each symbol's candle
    window, strategy state and (if wanted) SMC state, calls the callbacks, checks the
    intents, and turns ``Enter`` into the ``SignalGenerated`` the trader takes. A callback
    that raises, or an intent that makes no sense, is counted and logged, never a crash."""

    def __init__(self, strategy: Strategy, *, reuse_context: bool = False) -> None:
        self.strategy = strategy
        self.reads_model = bool(getattr(strategy, "reads_model", True))
        # True: ``on_candle`` hands each symbol's strategy the same Context object, its clock,
        # position, model and SMC labels set in place (a context is read during its callback;
        # the fast backtest saves building one per candle)
        self.reuse_context = reuse_context
        self.symbols: dict[str, _Symbol] = {}
        self.counters: dict[str, int] = {ERROR: 0, BAD_INTENT: 0}

    def _sym(self, symbol: str) -> _Symbol:
        s = self.symbols.get(symbol)
        if s is None:
            s = self.symbols[symbol] = _Symbol(candles=deque(maxlen=self.strategy.history), state={})
            if self.strategy.wants_smc:
                from services.brain.smc import SmcConfig, new_state

                s.smc = new_state(SmcConfig(timeframes=()))
        return s

    def _ctx(self, symbol: str, s: _Symbol, now_ms: int, position: PositionView | None, model: Any,
             labels: tuple = ()) -> Context:
        return Context(now_ms=now_ms, symbol=symbol, candles=s.candles, position=position, state=s.state,
                       model=model, smc_labels=labels, smc_state=s.smc)

    def _call(self, fn, *args) -> list:
        try:
            out = fn(*args)
        except Exception as exc:  # a strategy's bug must not stop the shell
            self._failed(fn.__name__, exc)
            return []
        return self._checked(out, fn.__name__)

    def _failed(self, callback: str, exc: Exception) -> None:
        """A callback raised: counted and said (a strategy's bug must not stop the shell)."""
        self.counters[ERROR] += 1
        log.error("strategy.callback_failed", strategy=self.strategy.name, callback=callback,
                  error=repr(exc)[:300])

    def _checked(self, out: Any, callback: str) -> list:
        if out is None:
            return []
        if not isinstance(out, (list, tuple)):
            self.counters[BAD_INTENT] += 1
            log.error("strategy.bad_return", strategy=self.strategy.name, callback=callback,
                      got=type(out).__name__)
            return []
        return list(out)

    def on_candle(self, candle: Candle, *, position: PositionView | None = None, model: Any = None) -> list:
        """The intents for one closed candle (the candle joins the window first)."""
        symbol = candle.symbol
        s = self.symbols.get(symbol) or self._sym(symbol)
        s.candles.append(candle)
        labels: tuple = ()
        if not self.reads_model:
            model = None
        if s.smc is not None:
            update = _smc_update()
            labels = tuple(update(s.smc, candle.open_ms, candle.open, candle.high, candle.low, candle.close,
                                  candle.volume))
        # ``_ctx`` and ``_call`` written out: this runs once per candle per symbol
        ctx = s.ctx
        if ctx is None or not self.reuse_context:
            ctx = _make_context(candle.close_ms, symbol, s.candles, position, s.state, model, labels, s.smc)
            if self.reuse_context:
                s.ctx = ctx
        else:  # a slot is written (a descriptor call) only when it changes: reading it is cheap
            _SET_NOW(ctx, candle.close_ms)
            if ctx.position is not position:
                _SET_POSITION(ctx, position)
            if ctx.model is not model:
                _SET_MODEL(ctx, model)
            if ctx.smc_labels is not labels:
                _SET_LABELS(ctx, labels)
        try:
            out = self.strategy.on_candle(ctx, candle)
        except Exception as exc:  # a strategy's bug must not stop the shell
            self._failed("on_candle", exc)
            return []
        if type(out) is list:
            return out[:]  # the caller may extend it: never the strategy's own list
        return self._checked(out, "on_candle")

    def candle_step(self, symbol: str):
        """``on_candle`` of one symbol on its reused context (``reuse_context``), as a function
        ``step(candle, position, model)`` with what it reads looked up once: the same window,
        context, call, checks and counters, for a shell that calls it at every bar (the fast
        backtest). It returns the intents as a new list, or ``()`` for none. A strategy that
        wants SMC labels goes through ``on_candle`` itself."""
        s = self.symbols.get(symbol) or self._sym(symbol)
        if s.smc is not None or not self.reuse_context:
            on_candle = self.on_candle
            return lambda candle, position, model: on_candle(candle, position=position, model=model) or ()
        if s.ctx is None:
            s.ctx = _make_context(0, symbol, s.candles, None, s.state, None, (), None)
        # ``on_candle``'s reuse path written out as a closure over its look-ups (once per bar)
        ctx, append, strategy = s.ctx, s.candles.append, self.strategy
        reads_model, checked, failed = self.reads_model, self._checked, self._failed
        set_now, set_position, set_model = _SET_NOW, _SET_POSITION, _SET_MODEL

        def step(candle: Candle, position: PositionView | None, model: Any) -> list | tuple:
            append(candle)
            set_now(ctx, candle.close_ms)
            if ctx.position is not position:
                set_position(ctx, position)
            if not reads_model:
                model = None
            if ctx.model is not model:
                set_model(ctx, model)
            try:
                out = strategy.on_candle(ctx, candle)
            except Exception as exc:  # a strategy's bug must not stop the shell
                failed("on_candle", exc)
                return ()
            if type(out) is list:
                return out[:] if out else ()  # the caller may extend it: never the strategy's own list
            return checked(out, "on_candle") or ()

        return step

    def on_timer(self, symbol: str, now_ms: int, *, position: PositionView | None = None, model: Any = None) -> list:
        s = self._sym(symbol)
        fn = self.strategy.on_timer
        if getattr(fn, "__func__", None) is _BASE_ON_TIMER:  # not overridden: the base's [] without its context
            return []
        model = model if self.reads_model else None
        return self._call(fn, self._ctx(symbol, s, now_ms, position, model), now_ms)

    def on_fill(self, symbol: str, fill: FillView, *, position: PositionView | None = None,
                model: Any = None) -> list:
        s = self._sym(symbol)
        model = model if self.reads_model else None
        return self._call(self.strategy.on_fill, self._ctx(symbol, s, fill.time_ms, position, model), fill)

    def signal(self, candle: Candle, intent: Enter) -> SignalGenerated | None:
        """``Enter`` -> the signal the trader takes (deterministic id: symbol, candle, side),
        or None (counted, logged) if its levels make no sense."""
        entry = candle.close if intent.entry is None else intent.entry
        why = check_enter(intent, entry)
        if why:
            self.counters[BAD_INTENT] += 1
            log.warning("strategy.bad_intent", strategy=self.strategy.name, symbol=candle.symbol, reason=why)
            return None
        return SignalGenerated(
            signal_id=f"{candle.symbol}-{candle.open_ms}-{intent.side}", symbol=candle.symbol, side=intent.side,
            entry=entry, stop=intent.stop, target=intent.target, confidence=float(intent.confidence),
            cold=bool(intent.cold), strategy=intent.strategy or self.strategy.name,
            features={k: float(v) for k, v in dict(intent.features).items()})

    def stats(self) -> dict[str, int]:
        """The runner's counters plus the strategy's own, summed over symbols."""
        out = dict(self.counters)
        for s in self.symbols.values():
            try:
                extra = self.strategy.counters(s.state)
            except Exception:  # counters are a courtesy: never a crash
                continue
            for k, v in dict(extra).items():
                out[k] = out.get(k, 0) + int(v)
        return out


def check_enter(e: Enter, entry: float) -> str:
    """Why ``e`` cannot be traded ("" = it can)."""
    if e.side not in SIDES:
        return f"side must be BUY or SELL, not {e.side!r}"
    d = 1 if e.side == "BUY" else -1
    vals = (entry, e.stop, e.target, e.confidence)
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vals):
        return f"non-finite levels: entry {entry!r} stop {e.stop!r} target {e.target!r} confidence {e.confidence!r}"
    if min(entry, e.stop, e.target) <= 0:
        return "levels must be > 0"
    if not d * (entry - e.stop) > 0 or not d * (e.target - entry) > 0:
        return f"{e.side}: need the stop on the losing side and the target on the winning side of {entry}"
    if not 0 <= e.confidence <= 1:
        return f"confidence must be within 0..1, not {e.confidence}"
    return ""


class Resampler:
    """Higher-timeframe candles built from a symbol's base candles, for a strategy that decides
    on, say, 15-minute candles while the shell (live, replay, backtest) still checks its stop
    and target on every 1-minute bar: keep one in ``ctx.state`` and feed it each base candle.

    ``add(candle)`` returns the higher-timeframe candles that are complete now: the one this
    base candle closed (its bucket's last minute), and, after a gap, the unfinished one the gap
    ended (buckets are aligned to the epoch: a 15-minute candle opens at :00, :15, :30, :45).
    The rule of the SMC strategy's own higher timeframe (``services/brain/strategy.py``)."""

    __slots__ = ("interval_s", "width_ms", "bucket", "symbol", "ohlcv")

    def __init__(self, interval_s: int) -> None:
        if isinstance(interval_s, bool) or not isinstance(interval_s, int) or interval_s < 1:
            raise ConfigError(f"resampler interval must be an int of seconds >= 1, not {interval_s!r}")
        self.interval_s = interval_s
        self.width_ms = interval_s * 1000
        self.bucket: int | None = None
        self.symbol = ""
        self.ohlcv = [0.0] * 5

    def add(self, c: Candle) -> list[Candle]:
        out: list[Candle] = []
        b = c.open_ms // self.width_ms
        if self.bucket is not None and b != self.bucket:
            out.append(self._flush())  # a gap ended the bucket early
        if self.bucket is None:
            self.bucket, self.symbol, self.ohlcv = b, c.symbol, [c.open, c.high, c.low, c.close, c.volume]
        else:
            x = self.ohlcv
            x[1], x[2], x[3], x[4] = max(x[1], c.high), min(x[2], c.low), c.close, x[4] + c.volume
        if c.close_ms >= (b + 1) * self.width_ms - 1:  # this base candle closes the bucket
            out.append(self._flush())
        return out

    def _flush(self) -> Candle:
        o, h, low, c, v = self.ohlcv
        start = self.bucket * self.width_ms
        self.bucket = None
        return Candle(symbol=self.symbol, interval_s=self.interval_s, open_ms=start, close_ms=start + self.width_ms,
                      open=o, high=h, low=low, close=c, volume=v)


def candle_from(c: Any) -> Candle:
    """A ``wire.CandleClosed`` (or anything with its fields) -> ``Candle``."""
    return make_candle(c.symbol, int(c.interval_s), int(c.open_ms), int(c.close_ms), float(c.open), float(c.high),
                       float(c.low), float(c.close), float(c.volume))


def position_of(trade: Any) -> PositionView | None:
    """The trader's ``Trade`` -> ``PositionView`` (None when there is no trade or nothing filled)."""
    if trade is None or trade.position <= 0:
        return None
    return PositionView(side=trade.side, qty=float(trade.position), entry_price=float(trade.entry_avg),
                        stop=float(trade.stop), target=float(trade.target), opened_ms=int(trade.opened_ms))


def load_section(section: Any, *, base_interval_s: int = 60) -> Strategy:
    """The strategy of a ``[strategy]`` config section (``common.config.StrategySection``).
    A strategy class with ``takes_interval = True`` gets the brain's base interval as
    ``base_interval_s`` unless its parameters name one."""
    params = dict(section.params)
    cls = load_class(section.path)
    if getattr(cls, "takes_interval", False):
        params.setdefault("base_interval_s", base_interval_s)
    return load(section.path, params)
