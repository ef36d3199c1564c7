"""The exit lane: a held position's stop or target checked on every ring batch before anything
else is done with it, and the exit's frame written at once (issue 17, tick-to-trade).

Why. The ordinary way to an exit is the trader's pure core: the batch's candles, then
``trader_exits.on_prices`` (the levels, the risk checks, the order's state machine) and only then
the send: about 100 to 150 us of Python before the socket is written. Yet the exit an open
trade would get is known long before its stop is touched: a reduce-only MARKET order for the
whole position, with a deterministic id (``trader_exits.planned_exit``). The lane keeps that order
ready ("armed") for every open trade, with the prices at which the trader acts
(``trader_exits.levels``), and reads each batch first:

1. ``scan`` (compiled): per armed symbol, the lowest and highest traded price of the batch and
   its first trade; which symbols' levels are crossed (``EXIT``: the trader will exit, for
   sure; ``WAKE``: the trader must look, it may exit or move a trailing target's best price).
2. ``EXIT``: the exit's intent record and its frame are written now (``Execution.fire_exit``),
   before the batch's candles, analysis and state machines.
3. Then, as before, the trader decides on the same range (``Execution.on_range``, only for
   the symbols the scan woke: for the others it provably does nothing). It decides the very
   exit the lane sent (same id, same order: ``trader_exits.planned_exit`` runs the trader's own
   ``exit_trade``), and its ``SubmitOrder`` claims the frame already written instead of sending
   another (``Execution._claim_presend``, which compares the two orders and counts a
   mismatch). A lane frame no decision claims is counted (``exit_lane_unclaimed``), logged,
   and its answer still awaited: the order is ours and reconciliation knows ``ax-`` ids.

Money first: the lane never sends what the trader would not (a test checks ``levels`` and
``planned_exit`` against ``on_prices`` on random trades and ranges); one id per exit attempt,
and the exchange refuses a second order with an id it has seen, so nothing is sent twice; the
intent is on disk before the frame leaves. The lane only fires on a WebSocket-API broker
with the intent log on (elsewhere every exit goes the ordinary way); ``trading.exit_lane``
turns it off.

The arming (``ExitLane.sync``) runs when a trade changes, from the brain's loop after the
execution's completions, so that the batch path finds it done.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import structlog
from numba import njit

from common import records
from services.brain import intent_log, trader, trader_exits
from venue.port import OrderSpec

log = structlog.get_logger(__name__)

EXIT, WAKE = 1, 2  # scan flags per armed symbol
REPREPARE_MS = 1_000  # a prepared exit is signed again this often (ws_api.PREPARED_MAX_AGE_MS: 1,500)


@dataclass(frozen=True, slots=True)
class Armed:
    """One open trade's exit, ready: its levels and, when the trader would send one, the order."""

    symbol: str
    sid: int  # the ring's symbol id
    trade: Any  # the trader's Trade it was armed from (identity: re-armed when it changes)
    levels: trader_exits.Levels
    order: trader.NewOrder | None  # None: a wake-only watch (an exit in flight, or refused)
    spec: OrderSpec | None


_SIG = "int64(int64[::1], float64[::1], int64, int64[::1], float64[:, ::1], float64[:, ::1], int64[::1])"
_W = 8  # int64 words per 64-byte record (common.records): recv_ns is word 1, price word 4,
# symbol_id (bits 32..47) and kind (bits 48..55) share word 7 (little-endian)
_F = records.TICK_DTYPE.fields
assert (records.RECORD_SIZE, _F["price"][1], _F["symbol_id"][1], _F["kind"][1]) == (64, 32, 60, 62), \
    "the exit lane's scan reads the record layout of common.records"
assert (int(records.Kind.TRADE), int(records.Kind.AGG_TRADE)) == (1, 2) and sys.byteorder == "little"


@njit(_SIG, cache=True)  # keeps the GIL: a release here would let another thread in for up to a switch interval
def _scan_words(words, floats, n, sids, lv, out, flags):  # pragma: no cover - compiled
    """``scan`` over the batch's two views (int64 and float64 words of the same records)."""
    k = sids.shape[0]
    for j in range(k):
        out[j, 0] = np.inf
        out[j, 1] = -np.inf
        out[j, 2] = -1.0
        flags[j] = 0
    for i in range(n):
        w7 = words[i * _W + 7]
        kind = (w7 >> 48) & 0xFF
        if kind != 1 and kind != 2:
            continue
        s = (w7 >> 32) & 0xFFFF
        for j in range(k):
            if sids[j] == s:
                p = floats[i * _W + 4]
                if p < out[j, 0]:
                    out[j, 0] = p
                if p > out[j, 1]:
                    out[j, 1] = p
                if out[j, 2] < 0:
                    out[j, 2] = i
                break
    any_flag = 0
    for j in range(k):
        if out[j, 2] < 0:
            continue
        lo, hi = out[j, 0], out[j, 1]
        f = 0
        if lo <= lv[j, 0] or hi >= lv[j, 1]:
            f |= EXIT
        if lo <= lv[j, 2] or hi >= lv[j, 3]:
            f |= WAKE
        flags[j] = f
        any_flag |= f
    return any_flag


# the compiled entry point (one signature): no per-call type resolution on the batch path
_SCAN = _scan_words.overloads[_scan_words.signatures[0]].entry_point


def scan(buf: np.ndarray, n: int, sids: np.ndarray, lv: np.ndarray, out: np.ndarray, flags: np.ndarray) -> int:
    """Over ``buf[:n]`` (tick records): for each armed slot ``j`` (symbol ``sids[j]``, levels
    ``lv[j]`` = exit_lo, exit_hi, wake_lo, wake_hi), its trades' low, high and first index
    into ``out[j]`` and its ``EXIT``/``WAKE`` bits into ``flags[j]``; returns the OR of all
    flags. Book and mark records are not trades."""
    return _SCAN(buf.view(np.int64), buf.view(np.float64), n, sids, lv, out, flags)


def warm(buf: np.ndarray) -> None:
    """``scan`` run once with no symbol armed and nothing read (compiled at import, from
    numba's cache: this only touches it): the brain's start-up and a spare's warm-up call it."""
    scan(buf, 0, np.zeros(1, np.int64), np.zeros((1, 4), np.float64), np.zeros((1, 3), np.float64),
         np.zeros(1, np.int64))


def arm(cfg: trader.TraderConfig, st: trader.TraderState, symbol: str, sid: int, ctx: trader.Ctx,
        spec_of: Callable[[Any], OrderSpec]) -> Armed | None:
    """``symbol``'s trade armed (None: ``on_prices`` would act on no price)."""
    t = st.trades.get(symbol)
    lv = trader_exits.levels(cfg, t)
    if lv is None or sid < 0:
        return None
    order = trader_exits.planned_exit(cfg, st, symbol, ctx)
    return Armed(symbol=symbol, sid=sid, trade=t, levels=lv, order=order,
                 spec=spec_of(order.order) if order is not None else None)


@dataclass(frozen=True, slots=True)
class Hit:
    """One armed symbol the batch woke: its traded range, its first trade's receipt time, and
    whether the trader will exit (``exit``) with the armed order."""

    armed: Armed
    low: float
    high: float
    first_recv_ns: int
    exit: bool


class ExitLane:
    """The armed trades and the compiled scan's arrays (the brain's thread only)."""

    def __init__(self, buf: np.ndarray) -> None:
        if buf.dtype != records.TICK_DTYPE or not buf.flags.c_contiguous:
            raise TypeError("the exit lane reads a contiguous TICK_DTYPE buffer")
        self.buf = buf
        self._words, self._floats = buf.view(np.int64), buf.view(np.float64)
        self.armed: dict[str, Armed] = {}
        self._seen: dict[str, Any] = {}  # symbol -> the Trade last looked at (armed or not)
        self._slots: list[Armed] = []
        self._sids = np.zeros(0, np.int64)
        self._lv = np.zeros((0, 4), np.float64)
        self._out = np.zeros((0, 3), np.float64)
        self._flags = np.zeros(0, np.int64)
        self.arms = 0  # trades armed (or re-armed) so far
        # symbol -> (spec, when, the broker's prepared request, the intent record's template)
        self.prepared: dict[str, tuple[OrderSpec, int, Any, intent_log.Template]] = {}
        self.prepare_errors = 0

    def prepare(self, now_ms: int, prepare: Callable[[OrderSpec], Any]) -> None:
        """Each armed exit's request signed and framed (``WsBroker.prepare_order``), again once
        it is ``REPREPARE_MS`` old: the lane's send is then a socket write. Off the batch path
        (the loop calls it with ``Brain.arm_exits``)."""
        for sym in [s for s in self.prepared if s not in self.armed]:
            del self.prepared[sym]
        for sym, a in self.armed.items():
            if a.spec is None:
                self.prepared.pop(sym, None)
                continue
            old = self.prepared.get(sym)
            if old is not None and old[0] == a.spec and now_ms - old[1] < REPREPARE_MS:
                continue
            try:
                tmpl = old[3] if old is not None and old[0] == a.spec else intent_log.template(
                    a.spec.client_order_id, a.order.request)  # type: ignore[union-attr]
                self.prepared[sym] = (a.spec, now_ms, prepare(a.spec), tmpl)
            except Exception as exc:  # never on the way of an exit: it goes unprepared
                self.prepared.pop(sym, None)
                self.prepare_errors += 1
                log.warning("brain.exit_prepare_failed", symbol=sym, error=type(exc).__name__)

    def prepared_for(self, a: Armed) -> tuple[Any, intent_log.Template | None]:
        """``a``'s prepared request and intent record, if prepared for this very order."""
        p = self.prepared.get(a.symbol)
        return (p[2], p[3]) if p is not None and p[0] == a.spec else (None, None)

    def sync(self, cfg: trader.TraderConfig, st: trader.TraderState, sid_of: Callable[[str], int],
             ctx: Callable[[tuple[str, ...]], trader.Ctx], spec_of: Callable[[Any], OrderSpec]) -> None:
        """Re-arm the trades that changed since they were last looked at; drop the closed ones
        (a few dictionary look-ups when nothing changed)."""
        trades = st.trades
        changed = False
        if len(self._seen) != len(trades) or any(sym not in trades for sym in self._seen):
            for sym in [s for s in self._seen if s not in trades]:
                del self._seen[sym]
                self.armed.pop(sym, None)
            changed = True
        for sym, t in trades.items():
            if self._seen.get(sym) is t:
                continue
            self._seen[sym] = t
            changed = True
            new = arm(cfg, st, sym, sid_of(sym), ctx((sym,)), spec_of)
            if new is None:
                self.armed.pop(sym, None)
            else:
                self.armed[sym] = new
                self.arms += 1
        if changed:
            self._slots = list(self.armed.values())
            k = len(self._slots)
            self._sids = np.array([a.sid for a in self._slots], np.int64)
            self._lv = np.array([(a.levels.exit_lo, a.levels.exit_hi, a.levels.wake_lo, a.levels.wake_hi)
                                 for a in self._slots], np.float64).reshape(k, 4)
            self._out = np.zeros((k, 3), np.float64)
            self._flags = np.zeros(k, np.int64)

    def check(self, n: int) -> dict[str, Hit]:
        """The armed symbols batch ``buf[:n]`` woke, by symbol (usually none: one compiled call)."""
        if not self._slots or not _SCAN(self._words, self._floats, n, self._sids, self._lv, self._out, self._flags):
            return {}
        hits = {}
        for j, a in enumerate(self._slots):
            f = int(self._flags[j])
            if f:
                first = int(self._out[j, 2])
                hits[a.symbol] = Hit(armed=a, low=float(self._out[j, 0]), high=float(self._out[j, 1]),
                                     first_recv_ns=int(self.buf[first]["recv_ns"]), exit=bool(f & EXIT))
        return hits
