"""The elite rotation: at most three positions, and a new signal may push out the weakest.

Pure: ``decide(positions, signal, now_ms, cfg, last_action_ms=...) -> Take | Rotate | Skip``.
The caller has already passed the signal through risk; this rule only decides whether it gets
a slot. The decision, in order:

1. A malformed signal (no symbol, confidence not a number in [0, 1]) -> Skip(INVALID_SIGNAL).
2. A signal for a symbol already held -> Skip(ALREADY_HELD): adding to or reversing a position
   is not a rotation.
3. The signal's symbol is cooling down -> Skip(COOLDOWN). Cooldown: no entry within
   ``cooldown_s`` of the symbol's last entry or exit (``last_action_ms``, and the open time of
   a held position), so a stop-out is not bought straight back.
4. Fewer than ``max_positions`` held -> Take.
5. Full: the candidates for exit are the held positions outside their own cooldown (a
   position entered a moment ago is not thrown out by the next signal); none -> Skip(NO_EXIT).
   The weakest candidate has the lowest score (ties: the oldest, then by symbol):

       unrealised_R = (mark - entry) / (entry - stop)      long
                    = (entry - mark) / (stop - entry)      short
       score        = clamp(confidence_at_entry + pnl_weight_per_r * unrealised_R, 0, 1)

   R is the distance from entry to stop: a position one R in profit scores
   ``pnl_weight_per_r`` above its entry confidence, one at its stop the same amount below.
   When R cannot be computed (stop equal to entry, a non-finite price) unrealised_R is 0.
6. ``signal.confidence > weakest score + replace_margin`` -> Rotate(exit_symbol): exit the
   weakest first, then enter the signal; else Skip(NOT_STRONGER).

Why there is no ping-pong: after a rotation both symbols are cooling down, so neither can
rotate again for ``cooldown_s``; after that the newcomer must be beaten by more than the
margin, so two symbols alternating signals of equal confidence never rotate back at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping, Protocol, Sequence

from common.errors import ConfigError

# Skip reasons
INVALID_SIGNAL = "INVALID_SIGNAL"
ALREADY_HELD = "ALREADY_HELD"
COOLDOWN = "COOLDOWN"
NO_EXIT = "NO_EXIT"  # full, and every held position is still cooling down
NOT_STRONGER = "NOT_STRONGER"


@dataclass(frozen=True, kw_only=True)
class RotationConfig:
    max_positions: int = 3
    replace_margin: float = 0.05  # confidence must beat the weakest score by more than this
    pnl_weight_per_r: float = 0.10  # k: score moves 0.1 per R of unrealised PnL
    cooldown_s: float = 900.0  # one 15-minute candle: the SMC setups are read on 15m bars

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"rotation.{f.name} must be a finite number >= 0, got {v!r}")
        if not isinstance(self.max_positions, int) or self.max_positions < 1:
            raise ConfigError("rotation.max_positions must be an integer >= 1")

    @property
    def cooldown_ms(self) -> int:
        return int(round(self.cooldown_s * 1000))


@dataclass(frozen=True, kw_only=True)
class HeldPosition:
    symbol: str
    side: str  # BUY = long, SELL = short
    entry_price: float
    stop_price: float
    mark_price: float
    confidence: float  # the signal's confidence when the position was entered
    opened_ms: int


class SignalLike(Protocol):
    """What decide reads from a signal (``wire.SignalGenerated`` fits)."""

    symbol: Any
    confidence: Any


@dataclass(frozen=True)
class Take:
    pass


@dataclass(frozen=True)
class Rotate:
    exit_symbol: str  # exit this first, then enter the signal
    exit_score: float


@dataclass(frozen=True)
class Skip:
    reason: str
    detail: str = ""


Decision = Take | Rotate | Skip


def unrealised_r(p: HeldPosition) -> float:
    risk = p.entry_price - p.stop_price if p.side == "BUY" else p.stop_price - p.entry_price
    move = p.mark_price - p.entry_price if p.side == "BUY" else p.entry_price - p.mark_price
    r = move / risk if risk != 0 and math.isfinite(risk) else 0.0
    # a stop on the wrong side of entry (risk < 0) is a broken position: no PnL credit either way
    return r if math.isfinite(r) and risk > 0 else 0.0


def score(p: HeldPosition, cfg: RotationConfig) -> float:
    c = p.confidence if isinstance(p.confidence, (int, float)) and math.isfinite(p.confidence) else 0.0
    return min(1.0, max(0.0, c + cfg.pnl_weight_per_r * unrealised_r(p)))


def last_action(symbol: str, positions: Sequence[HeldPosition], last_action_ms: Mapping[str, int]) -> int | None:
    times = [p.opened_ms for p in positions if p.symbol == symbol]
    if symbol in last_action_ms:
        times.append(last_action_ms[symbol])
    return max(times) if times else None


def cooling_down(symbol: str, positions: Sequence[HeldPosition], last_action_ms: Mapping[str, int],
                 now_ms: int, cfg: RotationConfig) -> bool:
    t = last_action(symbol, positions, last_action_ms)
    return t is not None and now_ms - t < cfg.cooldown_ms


def record_action(last_action_ms: Mapping[str, int], symbol: str, now_ms: int) -> dict[str, int]:
    """A new map with ``symbol`` entered or exited at ``now_ms`` (the caller keeps it)."""
    return {**last_action_ms, symbol: now_ms}


def decide(positions: Sequence[HeldPosition], signal: SignalLike, now_ms: int, cfg: RotationConfig,
           last_action_ms: Mapping[str, int] | None = None) -> Decision:
    """Take, Rotate(exit_symbol) or Skip(reason), as the module docstring lays out."""
    actions = last_action_ms or {}
    sym, conf = signal.symbol, signal.confidence
    if (not isinstance(sym, str) or not sym or isinstance(conf, bool) or not isinstance(conf, (int, float))
            or not math.isfinite(conf) or not 0.0 <= conf <= 1.0):
        return Skip(INVALID_SIGNAL, f"symbol {sym!r} confidence {conf!r}")
    if any(p.symbol == sym for p in positions):
        return Skip(ALREADY_HELD, sym)
    if cooling_down(sym, positions, actions, now_ms, cfg):
        return Skip(COOLDOWN, f"{sym} traded at {last_action(sym, positions, actions)}")
    if len(positions) < cfg.max_positions:
        return Take()
    candidates = [p for p in positions if not cooling_down(p.symbol, positions, actions, now_ms, cfg)]
    if not candidates:
        return Skip(NO_EXIT, "every held position is cooling down")
    weakest = min(candidates, key=lambda p: (score(p, cfg), p.opened_ms, p.symbol))
    s = score(weakest, cfg)
    if conf > s + cfg.replace_margin:
        return Rotate(weakest.symbol, s)
    return Skip(NOT_STRONGER, f"{conf} vs {weakest.symbol} score {s:.4f} + margin {cfg.replace_margin}")
