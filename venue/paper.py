"""``PaperBroker``: the ``Broker`` port simulated in-process, for the paper and replay modes.

Fills come from the best bid/ask the shell hands in (``book``), after a simulated latency, by the
matching rules shared with the local exchange and the backtest (``venue/fills.py``):

- MARKET takes the touch plus ``slippage_bps`` (rounded onto the tick grid, the worse way) for
  up to the top-of-book quantity; what is left fills in further chunks of that same size, each
  one price step worse (the step is the slippage, at least one tick): separate fills, each with
  its own trade id. The book beyond the top is unknown, so we assume it as deep as the top.
- LIMIT fills its marketable part at once the same way, never beyond the limit price; the rest
  rests (GTC), expires (IOC), or the whole order is refused if it cannot fill whole at once
  (FOK: -5021) or would take liquidity at all (GTX, post-only: -5022), as on Binance.
  ``on_book(symbol)`` fills a resting order as maker, at its price, once the other side
  trades through it (a BUY at P when the ask drops below P): touching P is not enough, since
  the queue ahead of us at P is unknown.

The account is one-way mode, USDT margined, kept exactly in Decimal: a position is its signed
quantity and its cost (the entry notional still open), so a round trip realises exactly
proceeds - cost; fees are qty * price * rate, unrounded. A reduce-only order never flips the
position (it is capped at the position and the rest expires, as on Binance).

Conditional orders (the Algo Service's STOP_MARKET / TAKE_PROFIT_MARKET, closePosition or a
reduce-only quantity) are held here too. They trigger on the mid (the paper mark) whenever the
account is read (``positions``, ``fills``, ``balance``, the algo queries): in paper mode the
brain's own watcher acts on every tick, and this in-process "exchange" dies with the brain, so
the paper stop is checked as often as the brain asks, not on every tick. A placement the mark
has already passed is refused with Binance's -2021, as Binance does.

Deterministic: order and trade ids come from counters, and nothing reads a clock or a random
source but the ``clock_ms`` handed in, so the same calls give the same answers (replay needs
byte-identical decisions). Calls may come from several dispatcher threads: one lock guards
the account (different symbols may then interleave in thread order; replay uses one worker).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from typing import Callable, Mapping, Sequence

import structlog

from common.fastcopy import replace
from common.errors import ConfigError, DefinitiveError, TransientError
from venue.port import (
    LIVE_STATUSES, AccountSetup, AlgoSpec, Balance, ExchangeAlgoOrder, ExchangeFill, ExchangeIncome, ExchangeOrder,
    ExchangePosition, OrderSpec, SubmitResult,
)
from venue import fills as matching
from venue.filters import FeedFilters, SymbolFilters, is_on_grid

log = structlog.get_logger(__name__)

_EXACT = Context(prec=100)  # sums of qty * price stay exact
_AVG = Context(prec=34)  # reported averages (entry, fill): quotients, decimal128 is plenty
Fill = tuple[Decimal, Decimal]  # (qty, price)


@dataclass(frozen=True, kw_only=True)
class PaperConfig:
    taker_fee_rate: Decimal = Decimal("0.0005")
    maker_fee_rate: Decimal = Decimal("0.0002")
    slippage_bps: Decimal = Decimal("1.0")
    latency_ms: float = 0.0  # order request -> match, simulated with the ``sleep`` handed in
    starting_balance: Decimal = Decimal(10_000)
    leverage: int = 5
    margin_type: str = "CROSSED"
    asset: str = "USDT"
    max_levels: int = 50  # a MARKET order walks at most this many assumed levels; the last takes the rest
    log_orders: bool = True  # an info line per order (``paper.submitted``); the backtest turns it off

    def __post_init__(self) -> None:
        for name in ("taker_fee_rate", "maker_fee_rate", "slippage_bps", "starting_balance"):
            v = getattr(self, name)
            if isinstance(v, float):
                v = Decimal(repr(v))  # a float from the config file, through its shortest repr: 0.1 -> 0.1
            elif isinstance(v, int) and not isinstance(v, bool):
                v = Decimal(v)
            if not isinstance(v, Decimal) or not v.is_finite() or v < 0:
                raise ConfigError(f"paper.{name} must be a finite number >= 0, not {getattr(self, name)!r}")
            object.__setattr__(self, name, v)
        if self.starting_balance <= 0 or self.latency_ms < 0:
            raise ConfigError("paper.starting_balance must be > 0 and paper.latency_ms >= 0")
        if not 1 <= self.leverage <= 125 or self.max_levels < 1:
            raise ConfigError("paper.leverage must be within 1..125 and paper.max_levels >= 1")


@dataclass(frozen=True, kw_only=True)
class BookTop:
    """Best bid and ask of one symbol, and when the exchange quoted them."""

    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    time_ms: int = 0

    @property
    def usable(self) -> bool:
        return self.bid > 0 and self.ask > 0

    @property
    def mid(self) -> Decimal:
        with localcontext(_EXACT):
            return (self.bid + self.ask) / 2


@dataclass(frozen=True, kw_only=True)
class Position:
    qty: Decimal = Decimal(0)  # signed: > 0 long
    cost: Decimal = Decimal(0)  # entry notional of the open quantity, >= 0

    @property
    def entry_price(self) -> Decimal:
        return _AVG.divide(self.cost, abs(self.qty)) if self.qty else Decimal(0)

    def unrealized(self, mark: Decimal) -> Decimal:
        with localcontext(_EXACT):
            return self.qty * mark - (self.cost if self.qty > 0 else -self.cost)


# ---------------------------------------------------------------------------- pure matching math
# The matching rules live in ``venue/fills.py`` (shared with the local exchange); these keep
# the paper broker's names and its reading of a ``BookTop``.
def fill_market(book: BookTop, side: str, qty: Decimal, *, slippage_bps: Decimal, tick: Decimal,
                limit: Decimal | None = None, max_levels: int = 50) -> list[Fill]:
    """The (qty, price) fills of taking ``qty`` from ``book``; never beyond ``limit`` when given.

    Without a limit the fills always sum to ``qty``. With one, what is left unfilled rests."""
    touch, depth = (book.ask, book.ask_qty) if side == "BUY" else (book.bid, book.bid_qty)
    # the rules made once for these very objects (a venue passes the same tick and slippage
    # every time; a record holds them, so their ids stay theirs while it is kept)
    key = (id(tick), id(slippage_bps), max_levels)
    rules = _RULES.get(key)
    if rules is None or rules.tick is not tick or rules.slippage_bps is not slippage_bps:
        if len(_RULES) > 1024:
            _RULES.clear()
        rules = _RULES[key] = matching.TakerRules(tick=tick, slippage_bps=slippage_bps, max_levels=max_levels,
                                                  clamp_at_tick=True)
    return matching.walk(side, touch, depth, qty, rules, limit)


_RULES: dict[tuple[int, int, int], matching.TakerRules] = {}


def crosses(book: BookTop, side: str, price: Decimal) -> bool:
    """A resting order at ``price`` is traded through: the other side moved beyond it
    (touching is not enough: the queue ahead of us at that price is unknown)."""
    if not book.usable:
        return False
    return matching.resting_crossed(side, price, bid=book.bid, ask=book.ask, at_touch=False)


def apply_fill(pos: Position, side: str, qty: Decimal, price: Decimal) -> tuple[Position, Decimal]:
    """The position after one fill, and the PnL the fill realised. One-way mode."""
    with localcontext(_EXACT):
        signed = qty if side == "BUY" else -qty
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
            return Position(qty=pos.qty + signed, cost=pos.cost + qty * price), Decimal(0)
        held = abs(pos.qty)
        closing = min(qty, held)
        closed_cost = pos.cost if closing == held else pos.cost * closing / held
        proceeds = closing * price
        realized = proceeds - closed_cost if pos.qty > 0 else closed_cost - proceeds
        opening = qty - closing
        return Position(qty=pos.qty + signed, cost=pos.cost - closed_cost + opening * price), realized


fee = matching.fee


# ---------------------------------------------------------------------------- the broker
def _triggers(spec: AlgoSpec, mark: Decimal) -> bool:
    """Whether ``mark`` reaches the order's trigger: a SELL stop (protecting a long) below it,
    a SELL take-profit above it, and the mirror for BUY."""
    return matching.trigger_met(spec.order_type, spec.side, spec.trigger_price, mark)


def _refuse(code: int, reason: str, msg: str) -> DefinitiveError:
    return DefinitiveError(f"paper {code} {msg}", reason=reason, code=code)


class PaperBroker:
    name = "paper"

    def __init__(self, config: PaperConfig, *, book: Callable[[str], BookTop | None],
                 clock_ms: Callable[[], int], sleep: Callable[[float], None],
                 filters: Mapping[str, SymbolFilters]) -> None:
        self.config = config
        self._book = book
        self._clock_ms = clock_ms
        self._sleep = sleep
        # the feed's rules are read live (a rule published after the start counts); a plain
        # mapping is copied
        self._filters = filters if isinstance(filters, FeedFilters) else dict(filters)
        self._lock = threading.Lock()
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._orders: dict[str, ExchangeOrder] = {}  # by client order id, in creation order
        # the client ids of the orders still live (NEW, PARTIALLY_FILLED), in creation order: the
        # margin, the resting-order crossing and open_orders read these, not every order ever placed
        # (a year's backtest places tens of thousands)
        self._live: dict[str, None] = {}
        self._notional: dict[str, Decimal] = {}  # executed qty * price per order, exact
        self._created: dict[str, int] = {}  # when each order was made (ms), by client order id
        self._fills: list[ExchangeFill] = []
        self._fills_of: dict[str, list[ExchangeFill]] = {}  # by exchange order id (the usual question)
        self._positions: dict[str, Position] = {}
        self._wallet = config.starting_balance
        self._algos: dict[str, tuple[AlgoSpec, ExchangeAlgoOrder]] = {}  # by clientAlgoId
        self._algo_ids = itertools.count(1)

    # ------------------------------------------------------------------ the port
    def start(self, symbols: Sequence[str]) -> AccountSetup:
        unknown = [s for s in symbols if s not in self._filters]
        if unknown:
            raise _refuse(-1121, "bad_symbol", f"no filters for {unknown}")
        return AccountSetup(one_way=True, margin_type=self.config.margin_type,
                            leverage={s: self.config.leverage for s in symbols})

    def submit(self, spec: OrderSpec) -> SubmitResult:
        f = self._check(spec)
        if self.config.latency_ms > 0:
            self._sleep(self.config.latency_ms / 1000.0)
        book = self._book(spec.symbol)
        if book is None or not book.usable:
            raise TransientError(f"paper: no market data for {spec.symbol}", reason="no_market_data")
        with self._lock:
            if spec.client_order_id in self._orders:
                raise _refuse(-4116, "duplicate_client_id", f"client order id {spec.client_order_id} is taken")
            qty = self._allowed_qty(spec)
            ref = book.ask if spec.side == "BUY" else book.bid
            ref = spec.price if spec.order_type == "LIMIT" else ref
            if not spec.reduce_only:
                if f.min_notional and spec.qty * ref < f.min_notional:
                    raise _refuse(-4164, "filter", f"notional {spec.qty * ref} < {f.min_notional}")
                self._check_margin(spec, ref)
            limit = spec.price if spec.order_type == "LIMIT" else None
            chunks = fill_market(book, spec.side, qty, slippage_bps=self.config.slippage_bps,
                                 tick=f.tick_size, limit=limit, max_levels=self.config.max_levels)
            expire_rest = spec.order_type == "MARKET"
            if limit is not None:
                tif = matching.time_in_force(spec.time_in_force, chunks, qty)
                if tif.refused is not None:  # nothing is created, as on Binance
                    raise _refuse(tif.refused[0], "unfillable", tif.refused[1])
                expire_rest = tif.expire_rest
            now = self._clock_ms()
            order = ExchangeOrder(
                client_order_id=spec.client_order_id, exchange_order_id=str(next(self._order_ids)),
                symbol=spec.symbol, side=spec.side, order_type=spec.order_type, status="NEW",
                qty=spec.qty, price=spec.price, reduce_only=spec.reduce_only, update_ms=now)
            self._store(order)
            self._created[spec.client_order_id] = now
            self._notional[spec.client_order_id] = Decimal(0)
            done = tuple(self._execute(spec.client_order_id, q, p, maker=False, now=now) for q, p in chunks)
            order = self._orders[spec.client_order_id]
            if expire_rest or (spec.reduce_only and order.executed_qty >= qty):
                # a taker-only order (MARKET, IOC) keeps nothing resting; nor does the rest of a
                # reduce-only order beyond the position
                order = self._set_status(order, "FILLED" if order.executed_qty == order.qty else "EXPIRED", now)
            if self.config.log_orders:
                log.info("paper.submitted", cid=spec.client_order_id, symbol=spec.symbol, side=spec.side,
                         type=spec.order_type, status=order.status, fills=len(done))
            return SubmitResult(order=order, fills=done)

    def on_book(self, symbol: str) -> list[SubmitResult]:
        """Fill the resting orders of ``symbol`` that the current book trades through (as maker)."""
        book = self._book(symbol)
        if book is None or not book.usable:
            return []
        out: list[SubmitResult] = []
        with self._lock:
            now = self._clock_ms()
            for cid in list(self._live):
                o = self._orders[cid]
                if o.symbol != symbol or o.status not in LIVE_STATUSES or not crosses(book, o.side, o.price):
                    continue
                left = o.qty - o.executed_qty
                if o.reduce_only:
                    left = min(left, self._closable(o.symbol, o.side))
                made = (self._execute(cid, left, o.price, maker=True, now=now),) if left > 0 else ()
                done = self._orders[cid]
                status = "FILLED" if done.executed_qty == done.qty else "EXPIRED"
                out.append(SubmitResult(order=self._set_status(done, status, now), fills=made))
        return out

    def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        with self._lock:
            o = self._orders.get(client_order_id)
            if o is None or o.symbol != symbol or o.status not in LIVE_STATUSES:
                raise _refuse(-2011, "unknown_order", f"no open order {client_order_id}")
            return self._set_status(o, "CANCELED", self._clock_ms())

    def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        with self._lock:
            o = self._orders.get(client_order_id)
            return o if o is not None and o.symbol == symbol else None

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        with self._lock:
            return [o for o in map(self._orders.__getitem__, self._live)
                    if o.status in LIVE_STATUSES and (symbol is None or o.symbol == symbol)]

    def fills(self, symbol: str, *, since_ms: int | None = None,
              exchange_order_id: str | None = None) -> list[ExchangeFill]:
        with self._lock:
            self._trigger_algos()
            pool = self._fills if exchange_order_id is None else self._fills_of.get(exchange_order_id, ())
            return [x for x in pool if x.symbol == symbol and (since_ms is None or x.time_ms >= since_ms)]

    def all_orders(self, symbol: str, *, since_ms: int, until_ms: int) -> list[ExchangeOrder]:
        """Every order of ``symbol`` made within ``[since_ms, until_ms]``, oldest first (this
        account lives in the brain's process: it holds only the orders of this run)."""
        with self._lock:
            return [o for cid, o in self._orders.items()
                    if o.symbol == symbol and since_ms <= self._created.get(cid, 0) <= until_ms]

    def positions(self) -> list[ExchangePosition]:
        with self._lock:
            self._trigger_algos()
            return [ExchangePosition(symbol=s, qty=p.qty, entry_price=p.entry_price, mark_price=m,
                                     unrealized_pnl=p.unrealized(m), leverage=self.config.leverage)
                    for s, p, m in self._marked()]

    def position_quantities(self) -> list[tuple[str, Decimal]]:
        """(symbol, signed quantity) of each open position, in ``positions``' order, without
        marking them to the book: for a reader that needs only the quantities (the backtest)."""
        with self._lock:
            self._trigger_algos()
            return [(s, p.qty) for s, p in self._positions.items() if p.qty]

    def balance(self) -> Balance:
        with self._lock:
            self._trigger_algos()
            return self._balance()

    def server_time_ms(self) -> int:
        return self._clock_ms()

    def close(self) -> None:
        return None

    # ------------------------------------------------------------------ conditional orders
    def place_algo(self, spec: AlgoSpec) -> ExchangeAlgoOrder:
        f = self._filters.get(spec.symbol)
        if f is None:
            raise _refuse(-1121, "bad_symbol", f"invalid symbol {spec.symbol}")
        if spec.order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET") or spec.side not in ("BUY", "SELL"):
            raise _refuse(-1116, "bad_request", f"paper holds STOP_MARKET and TAKE_PROFIT_MARKET, not {spec.order_type}")
        if spec.trigger_price <= 0 or not is_on_grid(spec.trigger_price, f.tick_size):
            raise _refuse(-1111, "filter", f"triggerPrice {spec.trigger_price} off the grid")
        book = self._book(spec.symbol)
        with self._lock:
            if spec.client_algo_id in self._algos:
                raise _refuse(-4116, "duplicate_client_id", f"clientAlgoId {spec.client_algo_id} is taken")
            if book is not None and book.usable and _triggers(spec, book.mid):
                raise _refuse(-2021, "would_trigger", "Order would immediately trigger.")
            now = self._clock_ms()
            o = ExchangeAlgoOrder(client_algo_id=spec.client_algo_id, algo_id=str(next(self._algo_ids)),
                                  symbol=spec.symbol, side=spec.side, order_type=spec.order_type, status="NEW",
                                  trigger_price=spec.trigger_price, close_position=spec.close_position, qty=spec.qty,
                                  update_ms=now)
            self._algos[spec.client_algo_id] = (spec, o)
            return o

    def cancel_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder:
        with self._lock:
            self._trigger_algos()
            held = self._algos.get(client_algo_id)
            if held is None or held[1].symbol != symbol or held[1].status != "NEW":
                raise _refuse(-2011, "unknown_order", f"no open algo order {client_algo_id}")
            o = replace(held[1], status="CANCELED", update_ms=self._clock_ms())
            self._algos[client_algo_id] = (held[0], o)
            return o

    def query_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder | None:
        with self._lock:
            self._trigger_algos()
            held = self._algos.get(client_algo_id)
            return held[1] if held is not None and held[1].symbol == symbol else None

    def open_algo_orders(self, symbol: str | None = None) -> list[ExchangeAlgoOrder]:
        with self._lock:
            self._trigger_algos()
            return [o for _, o in self._algos.values()
                    if o.status == "NEW" and (symbol is None or o.symbol == symbol)]

    def income(self, *, income_type: str, since_ms: int) -> list[ExchangeIncome]:
        """Paper trading pays no funding and keeps no income history: none."""
        return []

    def leverage_brackets(self, symbols: Sequence[str]) -> dict[str, tuple]:
        """Unknown in paper mode (Binance serves them to signed requests only): the trader
        then uses its conservative fallback."""
        return {}

    def _trigger_algos(self) -> None:
        """Trigger the held conditional orders the mark has reached: a MARKET order (our
        clientAlgoId as its client order id) for the position, or nothing if it is gone."""
        for cid, (spec, o) in list(self._algos.items()):
            if o.status != "NEW":
                continue
            book = self._book(o.symbol)
            if book is None or not book.usable or not _triggers(spec, book.mid):
                continue
            now = self._clock_ms()
            closable = self._closable(o.symbol, o.side)
            qty = closable if spec.close_position else min(spec.qty, closable)
            if qty <= 0:  # nothing to close: Binance expires it
                self._algos[cid] = (spec, replace(o, status="EXPIRED", update_ms=now))
                continue
            f = self._filters[o.symbol]
            order = ExchangeOrder(client_order_id=cid, exchange_order_id=str(next(self._order_ids)),
                                  symbol=o.symbol, side=o.side, order_type="MARKET", status="NEW", qty=qty,
                                  reduce_only=True, update_ms=now)
            self._store(order)
            self._notional[cid] = Decimal(0)
            for q, px in fill_market(book, o.side, qty, slippage_bps=self.config.slippage_bps, tick=f.tick_size,
                                     limit=None, max_levels=self.config.max_levels):
                self._execute(cid, q, px, maker=False, now=now)
            self._set_status(self._orders[cid], "FILLED", now)
            self._algos[cid] = (spec, replace(o, status="FINISHED", actual_order_id=order.exchange_order_id,
                                              update_ms=now))
            log.info("paper.algo_triggered", client_algo_id=cid, symbol=o.symbol, type=o.order_type, qty=str(qty))

    # ------------------------------------------------------------------ inside the lock
    def _check(self, spec: OrderSpec) -> SymbolFilters:
        f = self._filters.get(spec.symbol)
        if f is None:
            raise _refuse(-1121, "bad_symbol", f"invalid symbol {spec.symbol}")
        limit = spec.order_type == "LIMIT"
        if spec.side not in ("BUY", "SELL") or spec.order_type not in ("MARKET", "LIMIT") \
                or spec.qty <= 0 or (spec.price > 0) != limit:
            raise _refuse(-1102, "bad_request", f"bad order {spec.side} {spec.order_type} {spec.qty} @ {spec.price}")
        if limit and spec.time_in_force not in matching.TIME_IN_FORCE:
            raise _refuse(-1115, "bad_request", f"invalid timeInForce {spec.time_in_force!r}")
        if not is_on_grid(spec.qty, f.step_size) or (limit and not is_on_grid(spec.price, f.tick_size)):
            raise _refuse(-1111, "filter", f"qty {spec.qty} / price {spec.price} off the grid")
        if spec.qty < f.min_qty:
            raise _refuse(-4004, "filter", f"qty {spec.qty} < min {f.min_qty}")
        return f

    def _closable(self, symbol: str, side: str) -> Decimal:
        """How much an order on ``side`` can reduce the position (0: it would open or add)."""
        held = self._positions.get(symbol, Position()).qty
        return abs(held) if (held < 0 if side == "BUY" else held > 0) else Decimal(0)

    def _allowed_qty(self, spec: OrderSpec) -> Decimal:
        if not spec.reduce_only:
            return spec.qty
        closable = self._closable(spec.symbol, spec.side)
        if closable == 0:
            raise _refuse(-2022, "reduce_only", f"reduce-only {spec.side} with nothing to reduce")
        return min(spec.qty, closable)

    def _check_margin(self, spec: OrderSpec, ref: Decimal) -> None:
        with localcontext(_EXACT):
            opening = max(spec.qty - self._closable(spec.symbol, spec.side), Decimal(0))
            need = opening * ref / self.config.leverage
            available = self._balance().available
        if need > available:
            raise _refuse(-2019, "insufficient_margin", f"margin {need} > available {available}")

    def _execute(self, cid: str, qty: Decimal, price: Decimal, *, maker: bool, now: int) -> ExchangeFill:
        o = self._orders[cid]
        pos, realized = apply_fill(self._positions.get(o.symbol, Position()), o.side, qty, price)
        self._positions[o.symbol] = pos
        paid = fee(qty, price, self.config.maker_fee_rate if maker else self.config.taker_fee_rate)
        with localcontext(_EXACT):
            self._wallet = self._wallet + realized - paid
            notional = self._notional[cid] = self._notional[cid] + qty * price
            executed = o.executed_qty + qty
        self._store(replace(o, executed_qty=executed, avg_price=_AVG.divide(notional, executed),
                            status="FILLED" if executed == o.qty else "PARTIALLY_FILLED", update_ms=now))
        fill = ExchangeFill(trade_id=str(next(self._trade_ids)), client_order_id=cid,
                            exchange_order_id=o.exchange_order_id, symbol=o.symbol, side=o.side, qty=qty,
                            price=price, fee=paid, fee_asset=self.config.asset,
                            liquidity="maker" if maker else "taker", realized_pnl=realized, time_ms=now)
        self._fills.append(fill)
        self._fills_of.setdefault(fill.exchange_order_id, []).append(fill)
        return fill

    def _set_status(self, o: ExchangeOrder, status: str, now: int) -> ExchangeOrder:
        o = replace(o, status=status, update_ms=now)
        self._store(o)
        return o

    def _store(self, o: ExchangeOrder) -> None:
        """The one place an order's record changes: keeps ``_live`` equal to the live orders."""
        self._orders[o.client_order_id] = o
        if o.status in LIVE_STATUSES:
            self._live.setdefault(o.client_order_id, None)
        else:
            self._live.pop(o.client_order_id, None)

    def _marked(self) -> list[tuple[str, Position, Decimal]]:
        """(symbol, position, mark) of the open positions; mark = mid, else the entry price."""
        out = []
        for s, p in self._positions.items():
            if p.qty:
                b = self._book(s)
                out.append((s, p, b.mid if b is not None and b.usable else p.entry_price))
        return out

    def _balance(self) -> Balance:
        # ``_marked``, ``BookTop.mid`` and ``Position.unrealized`` written out in one pass (the
        # same operations in the same order, in the same exact context): the backtest reads the
        # balance at every poll with a trade open
        lev = self.config.leverage
        zero = Decimal(0)
        with localcontext(_EXACT):
            unrealized = used = zero
            for s, p in self._positions.items():
                q = p.qty
                if q:
                    b = self._book(s)
                    m = (b.bid + b.ask) / 2 if b is not None and b.bid > 0 and b.ask > 0 else p.entry_price
                    unrealized = unrealized + (q * m - (p.cost if q > 0 else -p.cost))
                    used = used + abs(q) * m / lev
            equity = self._wallet + unrealized
            used += sum(((o.qty - o.executed_qty) * o.price / lev for o in map(self._orders.__getitem__, self._live)
                         if not o.reduce_only), zero)
        return Balance(asset=self.config.asset, wallet=self._wallet, equity=equity, available=equity - used)
