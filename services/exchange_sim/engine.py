"""The replay engine: which recorded events are due, for which symbol, with which values.

The core of the sim: no sockets, no clock, no files; the caller passes ``now_ms`` in. The
arithmetic is pure functions (``compute_chunk``, ``next_factor``, ``rebase``); ``Player`` only
keeps one cursor per symbol, like a sans-I/O state machine. Given the same capture, symbol
specs, start time and speed it yields the same events with the same values, however the
caller slices time.

The schedule
------------
Each symbol plays the capture as an endless sequence of loops. Event ``i`` of loop ``k`` of
symbol ``j`` sits at capture-relative time::

    rel = (E_i - E_0) + k * period - offset_j        period = span + typical gap

and is due once ``start_ms + floor(rel / speed) <= now_ms``. That same rebased value is the
``E`` the client sees (``T`` is rebased the same way), so at any speed event times track the
wall clock and a feed's timestamp firewall accepts them. At max speed everything is due at
once and events are stamped with the send time instead.

Loop stitching (no jump across a boundary)
------------------------------------------
- time: loop ``k + 1`` starts one typical inter-event gap after loop ``k`` ended;
- ids: trade ids and book update ids of loop ``k`` are offset by ``k * (span of the ids + 1)``,
  so trade ids stay contiguous and update ids strictly increase;
- prices: loop ``k + 1`` is scaled so that its first trade price equals, exactly, the
  rounded last trade price of loop ``k`` (the factor is carried loop to loop).

Values are computed a chunk of events at a time with numpy and handed out as Python lists,
because the consumer (the renderer) walks them one by one anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.errors import ConfigError
from services.exchange_sim.recorded_market import TRADE, Capture
from services.exchange_sim.symbols import SymbolSpec

# events per precomputed chunk: ~2 s of one symbol at recorded pace. Every symbol holds one
# chunk as Python lists (~40 B an event and column): 512 keeps 300 symbols under 90 MiB
# where 2048 took ~340 MiB, for four times as many (cheap, numpy) chunk computations
CHUNK_EVENTS = 512


@dataclass(frozen=True, kw_only=True, eq=False)
class Timeline:
    """Capture-wide constants of the loop arithmetic."""

    rel_e: np.ndarray  # E - E0 per event (int64, sorted)
    rel_t: np.ndarray  # T - E0 per event
    span_ms: int
    period_ms: int  # span + gap: where loop k + 1 starts
    trade_id0: int
    trade_id_period: int  # last - first trade id + 1
    update_id0: int
    update_id_period: int
    first_trade_row: int
    last_trade_row: int

    @classmethod
    def of(cls, cap: Capture) -> "Timeline":
        e0 = int(cap.e_ms[0])
        trades, books = cap.trade_rows(), cap.book_rows()
        t_ids, u_ids = cap.ident[trades], cap.ident[books]
        return cls(
            rel_e=cap.e_ms - e0, rel_t=cap.t_ms - e0,
            span_ms=cap.span_ms, period_ms=cap.span_ms + cap.typical_gap_ms,
            trade_id0=int(t_ids[0]), trade_id_period=int(t_ids[-1] - t_ids[0] + 1),
            update_id0=int(u_ids[0]), update_id_period=int(u_ids[-1] - u_ids[0] + 1),
            first_trade_row=int(trades[0]), last_trade_row=int(trades[-1]),
        )


def base_factor(cap: Capture, spec: SymbolSpec) -> float:
    """Loop 0: capture price units -> symbol price units."""
    return spec.price_scale * 10.0 ** (spec.price_decimals - cap.price_decimals)


def round_prices(raw: np.ndarray, factor: float, tick_units: int, how: str = "nearest") -> np.ndarray:
    """Scale capture price units by ``factor`` and round onto the symbol's tick grid."""
    x = raw * (factor / tick_units)
    if how == "floor":
        r = np.floor(x + 1e-9)  # tolerance: 6180.0000000001 and 6179.9999999999 are 6180
    elif how == "ceil":
        r = np.ceil(x - 1e-9)
    else:
        r = np.rint(x)
    return r.astype(np.int64) * tick_units


def next_factor(cap: Capture, tl: Timeline, spec: SymbolSpec, factor: float) -> float:
    """The factor of the loop after one played with ``factor``: its first trade price is
    exactly the rounded last trade price of the previous loop."""
    last = cap.p1[tl.last_trade_row : tl.last_trade_row + 1]
    last_units = int(round_prices(last, factor, spec.tick_units)[0])
    return last_units / float(cap.p1[tl.first_trade_row])


@dataclass(frozen=True, kw_only=True, eq=False)
class Chunk:
    """Events ``[i0, i1)`` of loop ``loop`` of one symbol, in symbol space, as Python lists.

    ``e_rel``/``t_rel`` are ms after the sim start at speed 1; ``e_ms``/``t_ms`` the same
    rebased onto the sim clock (``start + floor(rel / speed)``); ``agg_end`` marks the last trade of an aggregate (same T, price and side).
    """

    loop: int
    i0: int
    i1: int
    kind: list[int]
    e_rel: list[int]
    t_rel: list[int]
    e_ms: list[int]
    t_ms: list[int]
    ident: list[int]
    p1: list[int]
    q1: list[int]
    p2: list[int]
    q2: list[int]
    maker: list[bool]
    x_code: list[int]
    agg_end: list[bool]


def rebase(rel: np.ndarray, start_ms: int, speed: float) -> np.ndarray:
    """Relative ms (speed 1) -> sim-clock ms: ``start + floor(rel / speed)``."""
    if speed == 1.0:
        return rel + start_ms
    return np.floor_divide(rel, speed).astype(np.int64) + start_ms


def compute_chunk(cap: Capture, tl: Timeline, spec: SymbolSpec, loop: int, factor: float,
                  i0: int, i1: int, *, start_ms: int = 0, speed: float = 1.0) -> Chunk:
    """Symbol-space values of capture rows ``[i0, i1)`` in loop ``loop`` (pure)."""
    sl = slice(i0, i1)
    kind = cap.kind[sl]
    is_trade = kind == TRADE
    shift = loop * tl.period_ms - spec.offset_ms
    tick = spec.tick_units
    trade_ids = cap.ident[sl] - tl.trade_id0 + spec.trade_id_base + loop * tl.trade_id_period
    update_ids = cap.ident[sl] - tl.update_id0 + spec.update_id_base + loop * tl.update_id_period
    ident = np.where(is_trade, trade_ids, update_ids)
    near = round_prices(cap.p1[sl], factor, tick)
    bid = round_prices(cap.p1[sl], factor, tick, "floor")
    ask = np.maximum(round_prices(cap.p2[sl], factor, tick, "ceil"), bid + tick)
    p1 = np.where(is_trade, near, bid)
    p2 = np.where(is_trade, 0, ask)
    # an aggregate ends where the next trade of this loop has another T, side or price
    nxt = cap.next_trade[sl]
    has_next = nxt >= 0
    nxt_safe = np.where(has_next, nxt, 0)
    nxt_price = round_prices(cap.p1[nxt_safe], factor, tick)
    same = (has_next & (cap.t_ms[nxt_safe] == cap.t_ms[sl])
            & (cap.maker[nxt_safe] == cap.maker[sl]) & (nxt_price == near))
    agg_end = is_trade & ~same
    e_rel = tl.rel_e[sl] + shift
    t_rel = tl.rel_t[sl] + shift
    return Chunk(
        loop=loop, i0=i0, i1=i1,
        kind=kind.tolist(),
        e_rel=e_rel.tolist(), t_rel=t_rel.tolist(),
        e_ms=rebase(e_rel, start_ms, speed).tolist(), t_ms=rebase(t_rel, start_ms, speed).tolist(),
        ident=ident.tolist(),
        p1=p1.tolist(), q1=(cap.q1[sl] * spec.qty_mult).tolist(),
        p2=p2.tolist(), q2=(cap.q2[sl] * spec.qty_mult).tolist(),
        maker=cap.maker[sl].tolist(), x_code=cap.x_code[sl].tolist(),
        agg_end=agg_end.tolist(),
    )


@dataclass(frozen=True, kw_only=True)
class Batch:
    """Events ``[lo, hi)`` (chunk positions) of symbol ``sym`` to play now.

    ``stamp_ms`` is the send-time stamp at max speed, None when paced (use the schedule).
    """

    sym: int
    chunk: Chunk
    lo: int
    hi: int
    stamp_ms: int | None


@dataclass
class _Cursor:
    loop: int
    row: int  # next capture row to play
    chunk: Chunk | None = None
    factors: list[float] = field(default_factory=list)
    finished: bool = False


class Player:
    """Per-symbol cursors over the schedule. The only mutable part of the engine.

    ``due(now_ms)`` returns the batches that became due since the last call, in per-symbol
    order, at most ``max_per_symbol`` events per symbol (the rest stay due: when the caller
    falls behind it sends late, with event times as scheduled, never out of order).
    """

    def __init__(self, cap: Capture, specs: tuple[SymbolSpec, ...], *, start_ms: int,
                 speed: float = 1.0, max_speed: bool = False, loop: bool = True,
                 chunk_events: int = CHUNK_EVENTS, timeline: Timeline | None = None) -> None:
        if speed <= 0:
            raise ConfigError("speed must be > 0")
        self.cap = cap
        self.tl = timeline if timeline is not None else Timeline.of(cap)  # given: built ahead (a spare's)
        self.specs = specs
        self.start_ms = int(start_ms)
        self.speed = float(speed)
        self.max_speed = bool(max_speed)
        self.loop_enabled = bool(loop)
        self.chunk_events = int(chunk_events)
        self.offsets = np.array([s.offset_ms for s in specs], np.int64)
        self.cursors = [
            _Cursor(loop=0, row=int(np.searchsorted(self.tl.rel_e, s.offset_ms, "left")),
                    factors=[base_factor(cap, s)])
            for s in specs
        ]
        self.loops = np.zeros(len(specs), np.int64)
        self.capped: set[int] = set()  # symbols the last ``due`` left with due events
        self._last_stamp = [0] * len(specs)

    # ------------------------------------------------------------------ schedule arithmetic
    def due_ms(self, e_rel: int) -> int:
        """Wall/sim time (ms) at which an event with ``e_rel`` is due and what E it carries."""
        return int(rebase(np.asarray([e_rel], np.int64), self.start_ms, self.speed)[0])

    def factor(self, sym: int, loop: int) -> float:
        """Price factor of ``loop`` for ``sym`` (one float per loop is cached)."""
        cur = self.cursors[sym]
        while len(cur.factors) <= loop:
            cur.factors.append(next_factor(self.cap, self.tl, self.specs[sym], cur.factors[-1]))
        return cur.factors[loop]

    def _chunk(self, sym: int, cur: _Cursor) -> Chunk:
        ch = cur.chunk
        if ch is None or ch.loop != cur.loop or not ch.i0 <= cur.row < ch.i1:
            i1 = min(cur.row + self.chunk_events, self.cap.n)
            ch = compute_chunk(self.cap, self.tl, self.specs[sym], cur.loop,
                               self.factor(sym, cur.loop), cur.row, i1,
                               start_ms=self.start_ms, speed=self.speed)
            cur.chunk = ch
        return ch

    # ------------------------------------------------------------------ stepping
    def due(self, now_ms: int, max_per_symbol: int = 1 << 30) -> list[Batch]:
        """Batches due at ``now_ms`` (paced) or the next ``max_per_symbol`` (max speed)."""
        out: list[Batch] = []
        self.capped = set()
        n = self.cap.n
        rel_e = self.tl.rel_e
        period = self.tl.period_ms
        if self.max_speed:
            ends = np.full(len(self.specs), n, np.int64)
            horizon = float("inf")
        else:
            # event due iff start + floor(rel / speed) <= now  <=>  rel < (now - start + 1) * speed
            horizon = (now_ms - self.start_ms + 1) * self.speed
            limits = horizon + self.offsets - self.loops * period
            ends = np.searchsorted(rel_e, limits, "left")
        for sym, end in enumerate(ends.tolist()):
            cur = self.cursors[sym]
            if cur.finished or end <= cur.row and end < n:
                continue
            budget = max_per_symbol
            stamp = None
            if self.max_speed:
                stamp = max(now_ms, self._last_stamp[sym])
                self._last_stamp[sym] = stamp
            while budget > 0:
                if cur.row >= n:
                    if not self.loop_enabled:
                        cur.finished = True
                        break
                    cur.loop += 1
                    cur.row = 0
                    self.loops[sym] = cur.loop
                    if not self.max_speed:
                        lim = horizon + self.specs[sym].offset_ms - cur.loop * period
                        end = int(np.searchsorted(rel_e, lim, "left"))
                    else:
                        end = n
                if end <= cur.row:
                    break
                ch = self._chunk(sym, cur)
                hi_row = min(end, ch.i1, cur.row + budget)
                out.append(Batch(sym=sym, chunk=ch, lo=cur.row - ch.i0, hi=hi_row - ch.i0,
                                 stamp_ms=stamp))
                budget -= hi_row - cur.row
                cur.row = hi_row
                if cur.row < n and cur.row >= end:
                    break
            if budget <= 0 and not self.max_speed:
                self.capped.add(sym)
        return out

    def skip(self, now_ms: int) -> list[tuple[int, int, int]]:
        """Move every cursor past the events due at ``now_ms`` without handing them out:
        ``(sym, first row, end row)`` per symbol that moved. Paced, first loop only (a
        start-up catch-up nobody sees, folded into state in bulk by the caller); what is due
        beyond the end of the first loop stays due."""
        if self.max_speed:
            raise ValueError("nothing to skip at max speed")  # the caller's misuse: skip is for paced play
        horizon = (now_ms - self.start_ms + 1) * self.speed
        out: list[tuple[int, int, int]] = []
        for sym, cur in enumerate(self.cursors):
            if cur.loop:
                raise ValueError("skip stays within the first loop")  # the caller's misuse: a start-up call
            end = int(np.searchsorted(self.tl.rel_e, horizon + self.offsets[sym], "left"))
            if end > cur.row:
                out.append((sym, cur.row, end))
                cur.row = end
        return out

    def next_due_ms(self, sym: int) -> int | None:
        """When the next unplayed event of ``sym`` is due (None at max speed or finished)."""
        cur = self.cursors[sym]
        if cur.finished or self.max_speed:
            return None
        row, loop = cur.row, cur.loop
        if row >= self.cap.n:
            if not self.loop_enabled:
                return None
            row, loop = 0, loop + 1
        rel = int(self.tl.rel_e[row]) + loop * self.tl.period_ms - self.specs[sym].offset_ms
        return self.due_ms(rel)

    def lag_ms(self, now_ms: int) -> int:
        """How far behind schedule the oldest unplayed due event is (0 when caught up)."""
        worst = 0
        for sym in range(len(self.specs)):
            d = self.next_due_ms(sym)
            if d is not None and now_ms - d > worst:
                worst = now_ms - d
        return worst
