"""The kill switch's state (pure): the daily loss baseline, the equity peak, the halt and the
order times of the rate window, as one frozen ``RiskState`` that functions take and return.

``update_equity`` trips the switch (DAILY_LOSS, DRAWDOWN) on an equity update; ``halt`` is an
operator's halt (MANUAL); only ``clear_halt`` clears it. ``record_order`` counts an order in
the sliding minute ``services.brain.risk.check_order`` brakes on. ``to_dict``/``from_dict``
let the state survive a restart. The pre-trade checks that read it are in ``risk``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from common.errors import DecodeError
from common.fastcopy import replace

if TYPE_CHECKING:
    from services.brain.risk import RiskConfig

DAILY_LOSS = "DAILY_LOSS"
DRAWDOWN = "DRAWDOWN"
MANUAL = "MANUAL"  # a halt asked for by an operator (halt reason, not an order reject)
RATE_WINDOW_MS = 60_000  # max_orders_per_minute counts a sliding minute
DAY_MS = 86_400_000  # the daily loss limit resets at 00:00 UTC, as Binance's daily stats do
_STATE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class RiskState:
    halted: bool = False
    halt_reason: str = ""  # DAILY_LOSS | DRAWDOWN | MANUAL
    halt_detail: str = ""
    halted_at_ms: int = 0
    day_index: int = -1  # UTC day (ms // DAY_MS) of the daily baseline; -1 = no baseline yet
    day_start_equity_usdt: float = 0.0
    peak_equity_usdt: float = 0.0
    order_times_ms: tuple[int, ...] = ()  # sends inside the last RATE_WINDOW_MS, oldest first

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": _STATE_VERSION, "halted": self.halted, "halt_reason": self.halt_reason,
            "halt_detail": self.halt_detail, "halted_at_ms": self.halted_at_ms,
            "day_index": self.day_index, "day_start_equity_usdt": self.day_start_equity_usdt,
            "peak_equity_usdt": self.peak_equity_usdt, "order_times_ms": list(self.order_times_ms),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiskState:
        """Inverse of ``to_dict``; anything malformed is a ``DecodeError`` (never a silent reset)."""
        try:
            if d["v"] != _STATE_VERSION:
                raise DecodeError(f"risk state version {d['v']!r}", reason="risk_state")
            st = cls(
                halted=d["halted"], halt_reason=d["halt_reason"], halt_detail=d["halt_detail"],
                halted_at_ms=d["halted_at_ms"], day_index=d["day_index"],
                day_start_equity_usdt=float(d["day_start_equity_usdt"]),
                peak_equity_usdt=float(d["peak_equity_usdt"]),
                order_times_ms=tuple(d["order_times_ms"]),
            )
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"bad risk state: {exc!r}", reason="risk_state") from None
        ints = (st.halted_at_ms, st.day_index, *st.order_times_ms)
        if (not isinstance(st.halted, bool) or not isinstance(st.halt_reason, str)
                or not isinstance(st.halt_detail, str)
                or any(isinstance(i, bool) or not isinstance(i, int) for i in ints)
                or not math.isfinite(st.day_start_equity_usdt) or not math.isfinite(st.peak_equity_usdt)):
            raise DecodeError("bad risk state: wrong field types", reason="risk_state")
        return st


def initial_state(equity_usdt: float, now_ms: int) -> RiskState:
    return RiskState(day_index=now_ms // DAY_MS, day_start_equity_usdt=equity_usdt,
                     peak_equity_usdt=equity_usdt)


def update_equity(cfg: RiskConfig, state: RiskState, equity_usdt: float, now_ms: int) -> RiskState:
    """Roll the UTC day, track the peak, and trip the kill switch on the daily loss or drawdown.

    Trips at ``loss >= daily_loss_limit_usdt`` or ``drawdown >= max_drawdown_pct`` (the limit
    itself is already too far). A non-finite equity changes nothing (check_order rejects it).
    A halt never clears itself, not even on a new day."""
    if not math.isfinite(equity_usdt):
        return state
    st = state
    day = now_ms // DAY_MS
    if day != st.day_index:
        st = replace(st, day_index=day, day_start_equity_usdt=equity_usdt)
    if equity_usdt > st.peak_equity_usdt:
        st = replace(st, peak_equity_usdt=equity_usdt)
    if st.halted:
        return st
    loss = st.day_start_equity_usdt - equity_usdt
    if loss >= cfg.daily_loss_limit_usdt:
        return replace(st, halted=True, halt_reason=DAILY_LOSS, halted_at_ms=now_ms,
                       halt_detail=f"lost {loss:.2f} USDT today (limit {cfg.daily_loss_limit_usdt})")
    if st.peak_equity_usdt > 0:
        dd_pct = (st.peak_equity_usdt - equity_usdt) / st.peak_equity_usdt * 100.0
        if dd_pct >= cfg.max_drawdown_pct:
            return replace(st, halted=True, halt_reason=DRAWDOWN, halted_at_ms=now_ms,
                           halt_detail=f"drawdown {dd_pct:.2f}% from peak {st.peak_equity_usdt}"
                                       f" (limit {cfg.max_drawdown_pct}%)")
    return st


def halt(state: RiskState, now_ms: int, detail: str = "") -> RiskState:
    """An operator's halt (reason MANUAL); an existing halt keeps its first reason."""
    if state.halted:
        return state
    return replace(state, halted=True, halt_reason=MANUAL, halt_detail=detail, halted_at_ms=now_ms)


def clear_halt(state: RiskState, equity_usdt: float, now_ms: int) -> RiskState:
    """Clear the kill switch on purpose. The operator accepts the loss so far: the daily
    baseline and the peak restart from the current equity (else the next update would trip
    again at once and clearing would mean nothing until tomorrow)."""
    return replace(state, halted=False, halt_reason="", halt_detail="", halted_at_ms=0,
                   day_index=now_ms // DAY_MS, day_start_equity_usdt=equity_usdt,
                   peak_equity_usdt=equity_usdt)


def orders_in_window(state: RiskState, now_ms: int) -> int:
    return sum(1 for t in state.order_times_ms if t > now_ms - RATE_WINDOW_MS)


def record_order(state: RiskState, now_ms: int) -> RiskState:
    """Count one order sent at ``now_ms`` in the sliding window (older entries dropped)."""
    kept = tuple(t for t in state.order_times_ms if t > now_ms - RATE_WINDOW_MS)
    return replace(state, order_times_ms=(*kept, now_ms))
