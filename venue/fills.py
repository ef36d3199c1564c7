"""The one matching core: what fills, at which price, for which fee (pure functions).

The paper broker (``venue/paper.py``, also the backtest's broker) and the local exchange
(``services/exchange_sim/trading.py``, ``algo.py``) keep their own account bookkeeping, but
ask these functions what an order does against a book:

- ``walk``: a taker order's chunks. The first price is the touch, moved away from us by a
  slippage in basis points (rounded onto the tick grid the worse way); each further chunk is
  one price step worse (the step is the slippage, at least one tick) and as large as the
  top-of-book quantity (at least ``min_chunk``). Only the top of the book is known, so the
  book behind it is assumed to repeat it. The walk stops at ``limit`` (when the slippage alone
  would pass the limit but the touch is within it, the first chunk fills at the limit), and
  after ``max_levels`` chunks the last one takes the rest. With no top-of-book quantity known
  (and no ``min_chunk``) everything fills at the first price.
- ``time_in_force``: what a LIMIT order's time in force makes of the marketable part
  (Binance's rules: GTC rests the rest, IOC expires it, FOK is refused unless it fills whole
  (-5021), GTX (post-only) is refused if any of it would take liquidity (-5022)).
- ``resting_crossed``: whether the market traded through a resting LIMIT order.
- ``trigger_met``: whether a price meets a STOP(_MARKET) or TAKE_PROFIT(_MARKET) trigger.
- ``fee``: quantity x price x rate, exact (the caller rounds if its venue does).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, localcontext

from venue.filters import is_on_grid, round_qty_down

_EXACT = Context(prec=100)  # sums of qty * price stay exact
BPS = Decimal(10_000)
ZERO = Decimal(0)
Chunk = tuple[Decimal, Decimal]  # (qty, price)

GTC, IOC, FOK, GTX = "GTC", "IOC", "FOK", "GTX"
TIME_IN_FORCE = (GTC, IOC, FOK, GTX)
STOP_TYPES = ("STOP", "STOP_MARKET")  # a BUY stop triggers at or above, a SELL stop at or below
TAKE_PROFIT_TYPES = ("TAKE_PROFIT", "TAKE_PROFIT_MARKET")  # the mirror

# Binance's refusals of a LIMIT order for its time in force (USD-M error code page)
E_FOK = (-5021, "Due to the order could not be filled immediately, the FOK order has been rejected.")
E_GTX = (-5022, "Due to the order could not be executed as maker, the Post Only order will be rejected.")


@dataclass(frozen=True, kw_only=True)
class TakerRules:
    """How a venue walks the assumed book.

    ``clamp_at_tick``: a SELL walking down to zero keeps filling at one tick (the paper
    broker's "a market order always fills"); False: the walk stops before a price of zero and
    the rest is left unfilled (the local exchange, whose synthesized depth ends there)."""

    tick: Decimal
    slippage_bps: Decimal = ZERO
    max_levels: int = 50
    min_chunk: Decimal = ZERO
    clamp_at_tick: bool = True


@dataclass(frozen=True, kw_only=True)
class TifOutcome:
    """What a LIMIT order's time in force makes of its taker chunks."""

    refused: tuple[int, str] | None  # Binance's (code, msg): the whole order is refused
    expire_rest: bool  # what did not fill at once expires (IOC; MARKET too)


def _floor(x: Decimal, tick: Decimal) -> Decimal:
    return round_qty_down(x, tick)


def _ceil(x: Decimal, tick: Decimal) -> Decimal:
    down = round_qty_down(x, tick)
    return down if is_on_grid(x, tick) else down + tick


def walk(side: str, touch: Decimal, depth: Decimal, qty: Decimal, rules: TakerRules,
         limit: Decimal | None = None) -> list[Chunk]:
    """The (qty, price) taker chunks of ``qty`` against a book whose best opposite price is
    ``touch`` with ``depth`` quantity there. Without a limit they sum to ``qty`` (unless a
    SELL reaches zero and ``clamp_at_tick`` is off); with one, the rest is the caller's."""
    buy = side == "BUY"
    if touch <= 0 or qty <= 0:
        return []
    if limit is not None and (limit < touch if buy else limit > touch):
        return []  # not marketable
    depth = max(depth, rules.min_chunk)
    with localcontext(_EXACT):
        slip = touch * rules.slippage_bps / BPS
        if slip:
            first = _ceil(touch + slip, rules.tick) if buy else _floor(touch - slip, rules.tick)
        else:
            first = touch
        step = max(rules.tick, _ceil(slip, rules.tick))
        out: list[Chunk] = []
        left = qty
        for level in range(rules.max_levels):
            if buy:
                price = first + step * level
            elif rules.clamp_at_tick:
                price = max(first - step * level, rules.tick)
            else:
                price = first - step * level
                if price <= 0:
                    break
            if limit is not None and (price > limit if buy else price < limit):
                if level > 0:
                    break
                price = limit  # the touch is within the limit, the slippage is not: fill at the limit
            last = level == rules.max_levels - 1 or depth <= 0
            chunk = left if last else min(left, depth)
            out.append((chunk, price))
            left -= chunk
            if left <= 0:
                break
        return out


def time_in_force(tif: str, chunks: list[Chunk], qty: Decimal) -> TifOutcome:
    """Binance's time-in-force rules for a LIMIT order whose marketable part is ``chunks``."""
    if tif == GTX and chunks:
        return TifOutcome(refused=E_GTX, expire_rest=False)
    if tif == FOK and sum((q for q, _ in chunks), ZERO) < qty:
        return TifOutcome(refused=E_FOK, expire_rest=False)
    return TifOutcome(refused=None, expire_rest=tif == IOC)


def resting_crossed(side: str, price: Decimal, *, bid: Decimal, ask: Decimal, at_touch: bool,
                    last: Decimal | None = None) -> bool:
    """Whether a resting LIMIT order at ``price`` fills as maker: the opposite touch reached it
    (``at_touch``) or went strictly through it, or a trade printed strictly through it."""
    if side == "BUY":
        book = ask <= price if at_touch else ask < price
        return book or (last is not None and last < price)
    book = bid >= price if at_touch else bid > price
    return book or (last is not None and last > price)


def trigger_met(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    """Whether ``price`` meets a conditional order's trigger (Binance's New Algo Order notes):
    a STOP buys at or above / sells at or below; a TAKE_PROFIT the other way round."""
    if order_type in STOP_TYPES:
        return price >= trigger if side == "BUY" else price <= trigger
    return price <= trigger if side == "BUY" else price >= trigger


def fee(qty: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """The commission of one fill, exact."""
    with localcontext(_EXACT):
        return qty * price * rate
