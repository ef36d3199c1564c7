"""Pre-trade risk: pure checks on one order against limits, exchange filters and a kill switch.

No I/O and no clock: the current time (``now_ms``, local epoch milliseconds) is an argument.

``check_order(cfg, state, portfolio, order, market, now_ms) -> Decision`` runs the checks in
this order and returns the first failure, or an approved order rounded to the exchange grid:

    input            UNKNOWN_SYMBOL, SIDE_INVALID, ORDER_TYPE_INVALID, CLIENT_ID_INVALID,
                     QTY_INVALID, PRICE_INVALID, PRICE_OFF_TICK (only when rounding is off)
    exchange filters QTY_OUTSIDE_FILTER (rounded qty below minQty / above maxQty),
                     PRICE_OUTSIDE_FILTER (PRICE_FILTER min/max, PERCENT_PRICE around the mark)
    exits            (reduce_only) REDUCE_ONLY_INVALID, then approved: an exit is never stopped
                     by the kill switch, stale data, the exposure limits or the order brake
                     (it is counted in the rate window, so entries see it), nor by MIN_NOTIONAL
                     (Binance exempts reduce-only orders from it too). A runaway loop of exits
                     is the trader's to prevent (one exit in flight, a retry interval, a
                     position check after a reduce-only refusal), not the brake's
    entries          EQUITY_INVALID, DAILY_LOSS / DRAWDOWN (the kill switch trips now),
                     HALTED (it tripped earlier), STALE_DATA, RATE_LIMIT, POSITION_EXISTS,
                     MAX_POSITIONS, MIN_NOTIONAL, MAX_ORDER_NOTIONAL, MAX_TOTAL_NOTIONAL, LEVERAGE

Every decision carries the risk state to keep (``decision.state``): the kill switch may have
tripped, and an approved order is counted in the rate window. The state is frozen; functions
return a new one; ``to_dict``/``from_dict`` let it survive a restart, so a halt stays a halt
until ``clear_halt`` is called on purpose (the state and its functions: ``services.brain.kill_switch``).

Numbers: the exchange's filters are decimal strings, so the grid arithmetic is done on exact
integers (``Decimal`` coefficients scaled to a common exponent), never ``round(x / tick) * tick``
in binary floating point (which gives 0.30000000000000004). Floats coming in are read through
their shortest ``repr`` (0.1 -> Decimal("0.1")), and the approved values, having at most ~15
significant digits, survive the trip back to float with the same shortest repr.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, fields
from decimal import Context, Decimal
from typing import Any, Mapping, Protocol

from common.fastcopy import build
from common.errors import ConfigError
from common.wire import OrderRequest, RiskReject
from venue.filters import (  # noqa: F401  (risk's callers read these through risk too)
    SymbolFilters, filters_from_entry, filters_from_symbol_info, fmt, is_on_grid, round_price,
    round_qty_down, to_decimal,
)
from services.brain.kill_switch import (  # noqa: F401  (the kill switch's state, read through risk too)
    DAILY_LOSS, DAY_MS, DRAWDOWN, MANUAL, RATE_WINDOW_MS, RiskState, clear_halt, halt, initial_state,
    orders_in_window, record_order, update_equity,
)
from venue.orders import CLIENT_ORDER_ID_RE

# ---------------------------------------------------------------------------- reason codes
UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
SIDE_INVALID = "SIDE_INVALID"
ORDER_TYPE_INVALID = "ORDER_TYPE_INVALID"
CLIENT_ID_INVALID = "CLIENT_ID_INVALID"
QTY_INVALID = "QTY_INVALID"
PRICE_INVALID = "PRICE_INVALID"
PRICE_OFF_TICK = "PRICE_OFF_TICK"
QTY_OUTSIDE_FILTER = "QTY_OUTSIDE_FILTER"
PRICE_OUTSIDE_FILTER = "PRICE_OUTSIDE_FILTER"
REDUCE_ONLY_INVALID = "REDUCE_ONLY_INVALID"
EQUITY_INVALID = "EQUITY_INVALID"
HALTED = "HALTED"
STALE_DATA = "STALE_DATA"
RATE_LIMIT = "RATE_LIMIT"
POSITION_EXISTS = "POSITION_EXISTS"
MAX_POSITIONS = "MAX_POSITIONS"
MIN_NOTIONAL = "MIN_NOTIONAL"
MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
MAX_TOTAL_NOTIONAL = "MAX_TOTAL_NOTIONAL"
LEVERAGE = "LEVERAGE"
LIQUIDATION_BEFORE_STOP = "LIQUIDATION_BEFORE_STOP"  # the position would be liquidated before its stop
REASONS = frozenset({
    UNKNOWN_SYMBOL, SIDE_INVALID, ORDER_TYPE_INVALID, CLIENT_ID_INVALID, QTY_INVALID, PRICE_INVALID,
    PRICE_OFF_TICK, QTY_OUTSIDE_FILTER, PRICE_OUTSIDE_FILTER, REDUCE_ONLY_INVALID, EQUITY_INVALID,
    DAILY_LOSS, DRAWDOWN, HALTED, STALE_DATA, RATE_LIMIT, POSITION_EXISTS, MAX_POSITIONS, MIN_NOTIONAL,
    MAX_ORDER_NOTIONAL, MAX_TOTAL_NOTIONAL, LEVERAGE, LIQUIDATION_BEFORE_STOP,
})  # every reason a Rejected decision can carry

SIDES = ("BUY", "SELL")
ORDER_TYPES = ("MARKET", "LIMIT")
TIMES_IN_FORCE = ("", "GTC", "IOC", "FOK", "GTX")  # "" = GTC
# products and sums of grid values stay exact: 100 digits is far beyond any price x quantity
_EXACT = Context(prec=100)
_WIRE_SYMBOL = re.compile(r"[A-Z0-9]{1,32}")  # what wire.Symbol accepts


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True, kw_only=True)
class RiskConfig:
    max_order_notional_usdt: float = 2_000.0
    max_total_notional_usdt: float = 5_000.0  # open positions + pending entries + this order
    max_leverage: float = 3.0  # total notional / account equity
    max_positions: int = 3  # the elite rotation holds at most three
    daily_loss_limit_usdt: float = 250.0  # equity lost since 00:00 UTC that trips the kill switch
    max_drawdown_pct: float = 10.0  # equity below its peak by this much trips it too
    stale_data_ms: int = 5_000  # no entry on market data older than this (local receive time)
    max_orders_per_minute: int = 20  # our own brake on a runaway loop, far below Binance's 1200
    round_price_to_tick: bool = True  # False: an off-tick limit price is rejected (PRICE_OFF_TICK)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "round_price_to_tick":
                if not isinstance(v, bool):
                    raise ConfigError(f"risk.{f.name} must be a bool")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"risk.{f.name} must be a positive finite number, got {v!r}")
        for name in ("max_positions", "stale_data_ms", "max_orders_per_minute"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"risk.{name} must be an integer")

    @functools.cached_property
    def limits_decimal(self) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        """(max order notional, max total notional, max leverage) as exact Decimals, made once
        per config (every entry's notional checks compare against them)."""
        return (to_decimal(self.max_order_notional_usdt), to_decimal(self.max_total_notional_usdt),
                to_decimal(self.max_leverage))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiskConfig:
        """Build from a mapping; an unknown field is a ``ConfigError``, not a silent default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown risk config field(s): {', '.join(unknown)}")
        return cls(**dict(d))


@dataclass(frozen=True, kw_only=True)
class Quote:
    """The latest market data of one symbol as the shell saw it."""

    mark_price: float  # the mark price, or the last trade when no mark stream is subscribed
    updated_ms: int  # local receive time (not the exchange's E: clocks differ by over a second)


@dataclass(frozen=True, kw_only=True)
class Market:
    filters: Mapping[str, SymbolFilters]
    quotes: Mapping[str, Quote] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Exposure:
    """A held position (signed qty, mark price) or a pending entry order (signed qty, its price)."""

    symbol: str
    qty: float  # > 0 long, < 0 short
    price: float

    def notional(self) -> Decimal:
        q, p = to_decimal(self.qty), to_decimal(self.price)
        if q is None or p is None:
            # an exposure we cannot value must not look like zero exposure
            return Decimal("Infinity")
        return _EXACT.multiply(abs(q), abs(p))


@dataclass(frozen=True, kw_only=True)
class Portfolio:
    equity_usdt: float  # wallet balance + unrealised PnL
    positions: tuple[Exposure, ...] = ()
    open_entries: tuple[Exposure, ...] = ()  # entry orders sent and not yet filled: they count

    def occupied(self) -> frozenset[str]:
        """Symbols that hold a slot: a non-zero position or a pending entry."""
        return frozenset(e.symbol for e in (*self.positions, *self.open_entries) if e.qty != 0)

    def total_notional(self) -> Decimal:
        total = Decimal(0)
        for e in (*self.positions, *self.open_entries):
            total = _EXACT.add(total, e.notional())
        return total


class OrderLike(Protocol):
    """What check_order reads from an order (``wire.OrderRequest`` fits)."""

    client_order_id: Any
    symbol: Any
    side: Any
    order_type: Any
    qty: Any
    price: Any
    reduce_only: Any
    signal_id: Any


# ---------------------------------------------------------------------------- decisions
@dataclass(frozen=True, kw_only=True)
class Rejection:
    reason: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Approved:
    order: OrderRequest  # qty and price rounded onto the grid
    qty: Decimal
    price: Decimal  # 0 for MARKET
    notional_usdt: Decimal  # qty * (limit price, or the mark for MARKET); 0 if unknown (exit)
    is_exit: bool
    state: RiskState  # with this order counted in the rate window
    ok: bool = True

    @property
    def qty_text(self) -> str:
        return fmt(self.qty)

    @property
    def price_text(self) -> str:
        return fmt(self.price)


@dataclass(frozen=True, kw_only=True)
class Rejected:
    reason: str
    detail: str
    state: RiskState  # the kill switch may have tripped during the check
    ok: bool = False

    def to_wire(self, order: OrderLike) -> RiskReject:
        sym = order.symbol if isinstance(order.symbol, str) and _WIRE_SYMBOL.fullmatch(order.symbol) else "UNKNOWN"
        sig = order.signal_id if isinstance(order.signal_id, str) else ""
        return RiskReject(symbol=sym, reason=self.reason, detail=self.detail, signal_id=sig)


Decision = Approved | Rejected


# ---------------------------------------------------------------------------- the checks
def check_side_and_type(order: OrderLike) -> Rejection | None:
    if order.side not in SIDES:
        return Rejection(reason=SIDE_INVALID, detail=f"side {order.side!r}")
    if order.order_type not in ORDER_TYPES:
        return Rejection(reason=ORDER_TYPE_INVALID, detail=f"order type {order.order_type!r}")
    tif = getattr(order, "time_in_force", "")
    if order.order_type == "LIMIT" and tif not in TIMES_IN_FORCE:  # a MARKET order ignores it
        return Rejection(reason=ORDER_TYPE_INVALID, detail=f"time in force {tif!r}")
    return None


def check_client_id(order: OrderLike) -> Rejection | None:
    cid = order.client_order_id
    if not isinstance(cid, str) or not CLIENT_ORDER_ID_RE.fullmatch(cid):
        return Rejection(reason=CLIENT_ID_INVALID, detail=f"client order id {cid!r}")
    return None


def check_qty_input(qty: Decimal | None, raw: Any) -> Rejection | None:
    if qty is None or qty <= 0:
        return Rejection(reason=QTY_INVALID, detail=f"qty {raw!r}")
    return None


def check_price_input(order_type: str, price: Decimal | None, raw: Any) -> Rejection | None:
    if price is None or price < 0:
        return Rejection(reason=PRICE_INVALID, detail=f"price {raw!r}")
    if order_type == "LIMIT" and price == 0:
        return Rejection(reason=PRICE_INVALID, detail="a LIMIT order needs a price")
    if order_type == "MARKET" and price != 0:
        return Rejection(reason=PRICE_INVALID, detail=f"a MARKET order carries price 0, got {raw!r}")
    return None


def check_price_on_tick(f: SymbolFilters, price: Decimal) -> Rejection | None:
    if not is_on_grid(price, f.tick_size):
        return Rejection(reason=PRICE_OFF_TICK, detail=f"{fmt(price)} not a multiple of {fmt(f.tick_size)}")
    return None


def check_qty_filter(f: SymbolFilters, order_type: str, qty: Decimal) -> Rejection | None:
    max_qty = f.market_max_qty if order_type == "MARKET" and f.market_max_qty > 0 else f.max_qty
    if qty <= 0 or qty < f.min_qty:
        return Rejection(reason=QTY_OUTSIDE_FILTER, detail=f"qty {fmt(qty)} below minQty {fmt(f.min_qty)}")
    if max_qty > 0 and qty > max_qty:
        return Rejection(reason=QTY_OUTSIDE_FILTER, detail=f"qty {fmt(qty)} above maxQty {fmt(max_qty)}")
    return None


def check_price_filter(f: SymbolFilters, side: str, price: Decimal, mark: Decimal | None) -> Rejection | None:
    """PRICE_FILTER bounds and PERCENT_PRICE (futures: BUY <= mark*up, SELL >= mark*down)."""
    if price <= 0:
        return Rejection(reason=PRICE_OUTSIDE_FILTER, detail=f"price {fmt(price)} rounds to nothing")
    if f.min_price > 0 and price < f.min_price:
        return Rejection(reason=PRICE_OUTSIDE_FILTER, detail=f"price {fmt(price)} below minPrice {fmt(f.min_price)}")
    if f.max_price > 0 and price > f.max_price:
        return Rejection(reason=PRICE_OUTSIDE_FILTER, detail=f"price {fmt(price)} above maxPrice {fmt(f.max_price)}")
    if mark is not None and mark > 0:
        if side == "BUY" and f.percent_up > 0 and price > _EXACT.multiply(mark, f.percent_up):
            return Rejection(reason=PRICE_OUTSIDE_FILTER,
                             detail=f"BUY {fmt(price)} above mark {fmt(mark)} x {fmt(f.percent_up)}")
        if side == "SELL" and f.percent_down > 0 and price < _EXACT.multiply(mark, f.percent_down):
            return Rejection(reason=PRICE_OUTSIDE_FILTER,
                             detail=f"SELL {fmt(price)} below mark {fmt(mark)} x {fmt(f.percent_down)}")
    return None


def check_exit(portfolio: Portfolio, symbol: str, side: str, qty: Decimal) -> Rejection | None:
    """A reduce-only order must close (part of) a held position, never more than is held."""
    held = Decimal(0)
    for p in portfolio.positions:
        if p.symbol == symbol:
            held = _EXACT.add(held, to_decimal(p.qty) or Decimal(0))
    if held == 0:
        return Rejection(reason=REDUCE_ONLY_INVALID, detail=f"no {symbol} position to reduce")
    if (held > 0) == (side == "BUY"):
        return Rejection(reason=REDUCE_ONLY_INVALID, detail=f"{side} would add to the {symbol} position")
    if qty > abs(held):
        return Rejection(reason=REDUCE_ONLY_INVALID, detail=f"qty {fmt(qty)} exceeds position {fmt(abs(held))}")
    return None


def check_kill_switch(before: RiskState, after: RiskState) -> Rejection | None:
    if not after.halted:
        return None
    if before.halted:
        return Rejection(reason=HALTED, detail=f"{after.halt_reason}: {after.halt_detail}")
    return Rejection(reason=after.halt_reason, detail=after.halt_detail)


def check_stale(cfg: RiskConfig, quote: Quote | None, now_ms: int) -> Rejection | None:
    mark = to_decimal(quote.mark_price) if quote is not None else None
    if mark is None or mark <= 0 or isinstance(quote.updated_ms, bool) or not isinstance(quote.updated_ms, int):
        return Rejection(reason=STALE_DATA, detail="no usable market data")
    age = now_ms - quote.updated_ms
    if age > cfg.stale_data_ms:
        return Rejection(reason=STALE_DATA, detail=f"market data {age} ms old (limit {cfg.stale_data_ms})")
    return None


def check_rate(cfg: RiskConfig, state: RiskState, now_ms: int) -> Rejection | None:
    n = orders_in_window(state, now_ms)
    if n >= cfg.max_orders_per_minute:
        return Rejection(reason=RATE_LIMIT, detail=f"{n} orders in the last minute (limit {cfg.max_orders_per_minute})")
    return None


def check_position_exists(portfolio: Portfolio, symbol: str) -> Rejection | None:
    if symbol in portfolio.occupied():
        return Rejection(reason=POSITION_EXISTS, detail=f"{symbol} already held or being entered")
    return None


def check_max_positions(cfg: RiskConfig, portfolio: Portfolio) -> Rejection | None:
    n = len(portfolio.occupied())
    if n >= cfg.max_positions:
        return Rejection(reason=MAX_POSITIONS, detail=f"{n} positions open (limit {cfg.max_positions})")
    return None


def check_min_notional(f: SymbolFilters, notional: Decimal) -> Rejection | None:
    if notional < f.min_notional:
        return Rejection(reason=MIN_NOTIONAL, detail=f"notional {fmt(notional)} below {fmt(f.min_notional)}")
    return None


def check_order_notional(cfg: RiskConfig, notional: Decimal) -> Rejection | None:
    if notional > cfg.limits_decimal[0]:
        return Rejection(reason=MAX_ORDER_NOTIONAL,
                         detail=f"notional {fmt(notional)} above {cfg.max_order_notional_usdt}")
    return None


def check_total_notional(cfg: RiskConfig, portfolio: Portfolio, notional: Decimal) -> Rejection | None:
    total = _EXACT.add(portfolio.total_notional(), notional)
    if total > cfg.limits_decimal[1]:
        return Rejection(reason=MAX_TOTAL_NOTIONAL,
                         detail=f"total notional {total} above {cfg.max_total_notional_usdt}")
    return None


def check_leverage(cfg: RiskConfig, portfolio: Portfolio, notional: Decimal) -> Rejection | None:
    equity = to_decimal(portfolio.equity_usdt)
    total = _EXACT.add(portfolio.total_notional(), notional)
    if equity is None or equity <= 0 or total > _EXACT.multiply(equity, cfg.limits_decimal[2]):
        return Rejection(reason=LEVERAGE, detail=f"total notional {total} on equity {portfolio.equity_usdt}"
                                                 f" exceeds {cfg.max_leverage}x")
    return None


def _time_in_force(order_type: str, tif: Any) -> str:
    """A LIMIT order's time in force as sent ("" reads as GTC); "" for MARKET."""
    if order_type != "LIMIT":
        return ""
    return tif if isinstance(tif, str) and tif else "GTC"


# ---------------------------------------------------------------------------- all of them
def check_order(cfg: RiskConfig, state: RiskState, portfolio: Portfolio, order: OrderLike,
                market: Market, now_ms: int) -> Decision:
    """Run every check in the documented order; the first failure wins (see module docstring)."""
    st = state
    equity_ok = isinstance(portfolio.equity_usdt, (int, float)) and math.isfinite(portfolio.equity_usdt)
    if equity_ok:  # the kill switch sees every equity update, whichever check fails below
        st = update_equity(cfg, state, float(portfolio.equity_usdt), now_ms)

    def rejected(r: Rejection) -> Rejected:
        return Rejected(reason=r.reason, detail=r.detail, state=st)

    symbol = order.symbol
    f = market.filters.get(symbol) if isinstance(symbol, str) else None
    if f is None:
        return rejected(Rejection(reason=UNKNOWN_SYMBOL, detail=f"symbol {symbol!r}"))
    r = check_side_and_type(order) or check_client_id(order)
    if r:
        return rejected(r)
    side, otype = order.side, order.order_type
    qty_in, price_in = to_decimal(order.qty), to_decimal(order.price)
    r = check_qty_input(qty_in, order.qty) or check_price_input(otype, price_in, order.price)
    if r:
        return rejected(r)
    assert qty_in is not None and price_in is not None
    if otype == "LIMIT" and not cfg.round_price_to_tick:
        r = check_price_on_tick(f, price_in)
        if r:
            return rejected(r)
    step = f.market_step_size if otype == "MARKET" and f.market_step_size > 0 else f.step_size
    qty = round_qty_down(qty_in, step)
    price = round_price(price_in, f.tick_size, side) if otype == "LIMIT" else Decimal(0)
    quote = market.quotes.get(symbol)
    mark = to_decimal(quote.mark_price) if quote is not None else None
    r = check_qty_filter(f, otype, qty) or (check_price_filter(f, side, price, mark) if otype == "LIMIT" else None)
    if r:
        return rejected(r)
    ref = price if otype == "LIMIT" else (mark if mark is not None and mark > 0 else None)
    notional = _EXACT.multiply(qty, ref) if ref is not None else Decimal(0)

    reduce_only = order.reduce_only is True
    if reduce_only:
        r = check_exit(portfolio, symbol, side, qty)
    else:
        if not equity_ok:
            return rejected(Rejection(reason=EQUITY_INVALID, detail=f"equity {portfolio.equity_usdt!r}"))
        r = (check_kill_switch(state, st) or check_stale(cfg, quote, now_ms) or check_rate(cfg, st, now_ms)
             or check_position_exists(portfolio, symbol) or check_max_positions(cfg, portfolio))
        if r is None:
            assert ref is not None  # check_stale guarantees a usable mark
            r = (check_min_notional(f, notional) or check_order_notional(cfg, notional)
                 or check_total_notional(cfg, portfolio, notional) or check_leverage(cfg, portfolio, notional))
    if r:
        return rejected(r)
    st = record_order(st, now_ms)
    approved = OrderRequest(
        client_order_id=order.client_order_id, symbol=symbol, side=side, order_type=otype,
        qty=float(qty), price=float(price), reduce_only=reduce_only,
        signal_id=order.signal_id if isinstance(order.signal_id, str) else "",
        time_in_force=_time_in_force(otype, getattr(order, "time_in_force", "")),
    )
    return build(Approved, order=approved, qty=qty, price=price, notional_usdt=notional, is_exit=reduce_only, state=st)


# ---------------------------------------------------------------------------- liquidation
# A symbol whose brackets are unknown (paper mode: Binance serves them to signed requests only)
# is checked with this maintenance margin ratio, higher than any first tier Binance publishes
FALLBACK_MMR = Decimal("0.01")


def liquidation_price(*, side: str, qty: Decimal, entry: Decimal, leverage: int,
                      brackets: tuple[Any, ...] = ()) -> Decimal:
    """Where a new position would be liquidated with only its own initial margin behind it
    (``qty * entry / leverage``): the nearest liquidation a cross-margin account can meet (more
    balance only moves it further away). Binance's one-way formula, margin M, bracket (mmr, cum):
    long ``(Q*E - M - cum) / (Q*(1 - mmr))``, short ``(M + Q*E + cum) / (Q*(1 + mmr))``. 0 when
    nothing would liquidate it."""
    if qty <= 0 or entry <= 0 or leverage <= 0:
        return Decimal(0)
    notional = _EXACT.multiply(qty, entry)
    mmr, cum = FALLBACK_MMR, Decimal(0)
    for b in brackets:
        if b.notional_floor <= notional < b.notional_cap or (b.notional_floor <= notional and b is brackets[-1]):
            mmr, cum = b.maint_margin_ratio, b.cum
            break
    margin = notional / leverage
    if side == "BUY":
        p = (notional - margin - cum) / (qty * (1 - mmr))
    else:
        p = (margin + notional + cum) / (qty * (1 + mmr))
    return max(Decimal(0), p)


@functools.lru_cache(maxsize=64, typed=True)
def _buffer_decimal(buffer_pct: float) -> Decimal:
    """``Decimal(repr(buffer_pct))``, once per value (the configured buffer: one value)."""
    return Decimal(repr(buffer_pct))


def check_liquidation(*, side: str, qty: Decimal, entry: Decimal, stop: Decimal, leverage: int,
                      buffer_pct: float, brackets: tuple[Any, ...] = ()) -> Rejection | None:
    """An entry whose liquidation price is not beyond its stop by ``buffer_pct`` of the stop is
    refused: the stop must be what ends a losing trade, never the liquidation engine."""
    liq = liquidation_price(side=side, qty=qty, entry=entry, leverage=leverage, brackets=brackets)
    if liq <= 0:
        return None
    room = stop * _buffer_decimal(buffer_pct) / 100
    ok = liq < stop - room if side == "BUY" else liq > stop + room
    if ok:
        return None
    return Rejection(reason=LIQUIDATION_BEFORE_STOP,
                     detail=f"liquidation {fmt(liq.quantize(Decimal('0.00000001')).normalize())} vs stop {fmt(stop)} "
                            f"(buffer {buffer_pct}%, leverage {leverage})")
