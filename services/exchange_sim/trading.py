"""Matching and account transitions (pure): the next ``Account`` from the last one.

Every function takes an ``Account`` and returns a new one (or raises ``RestError`` with
Binance's code and message, the account untouched). Time and the market come in as
arguments: ``now_ms``, the symbol's ``Quote`` and the marks of the symbols held.

How orders fill
---------------
The matching rules below (the walk, time in force, resting crossings) are the shared core
``venue/fills.py``, which the paper broker and the backtest use too; the account bookkeeping
(positions at an average entry, fees rounded to 1e-8, margin) is the sim's own.

- MARKET takes liquidity at once: up to the top-of-book quantity at the touch, then one
  tick further away per further top-of-book-sized chunk (the sim has one level of depth
  and assumes the book behind the touch repeats it, one tick apart). Each chunk is one
  trade with its own id. A huge order stops walking after ``MAX_WALK_CHUNKS`` chunks and
  takes the rest in the last one. The replayed book does not react to our fills: two
  orders in a row both find the same touch.
- LIMIT: the marketable part fills like MARKET but only at prices no worse than the
  limit; the rest rests (GTC), expires (IOC), or the whole order is refused if it cannot
  fill at once (FOK: -5021) or would take liquidity (GTX, post-only: -5022).
- A resting order fills, as maker at its own price and in full, once the market crosses
  it: the opposite touch at or through its price, or a trade printed after it was placed
  strictly through its price (``match_resting``, called after each market step).
- Fees: taker 0.05 %, maker 0.02 % of the fill's notional, in USDT, rounded half-up to
  1e-8. The wallet moves by realised PnL minus commission on every fill.
- Reduce-only orders only ever reduce: refused (-2022) when there is nothing on the other
  side, cut to the position when larger (the rest expires), and a resting one expires
  when the position it was reducing is gone.
- New exposure needs margin: the initial margin of the position after the order (at the
  order's price, plus the taker fee) must fit in the available balance plus the margin
  the position holds now, else -2019. Changing the leverage is not margin-checked.
- Modify (``PUT /fapi/v1/order``, ``modify``): a resting LIMIT order gets a new price and
  quantity (both sent) and goes to the back of the queue (its fills wait for a later
  trade); checked like a new order, refused with the order unchanged when a filter fails.
  As Binance documents, it is cancelled instead when it is partially filled and the new
  quantity is not above what executed, or when it is post-only (GTX) and the new price
  would take liquidity; a GTC order whose new price crosses the book fills as taker there.
  Only LIMIT orders (-5025), nothing to change (-5027), an order no longer open (-2013).
- Margin type: only CROSSED is modelled; ``ISOLATED`` is refused with -1020 ("This operation
  is not supported."), never accepted and then margined as cross.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Mapping

from services.exchange_sim.account import (BRACKETS, BUY, CANCELED, CONTRACT_PRICE, CROSSED, EXPIRED, FILLED,
                                           ISOLATED,
                                           MAKER_FEE, MARKET, MAX_CLOSED_ORDERS, MAX_FILLS, MAX_LEVERAGE,
                                           PARTIALLY_FILLED, SELL, TAKER_FEE, ZERO, Account, Fill, Order,
                                           Position, Quote, SymbolRules, money, totals)
from services.exchange_sim.rest import RestError
from venue import fills as matching

CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")  # Binance's newClientOrderId pattern
TIME_IN_FORCE = matching.TIME_IN_FORCE
MAX_WALK_CHUNKS = 100  # a market order walks at most this many ticks from the touch
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def err(code: int, msg: str) -> RestError:
    return RestError(code, msg)


# Binance's own codes and texts (USD-M error code page; ccxt maps them by code)
E_DUPLICATE_CID = (-4116, "ClientOrderId is duplicated.")
E_REDUCE_ONLY = (-2022, "ReduceOnly Order is rejected.")
E_MARGIN = (-2019, "Margin is insufficient.")
E_PRECISION = (-1111, "Precision is over the maximum defined for this asset.")
E_NO_ORDER = (-2013, "Order does not exist.")
E_UNKNOWN_ORDER = (-2011, "Unknown order sent.")
E_UNABLE_TO_FILL = (-2020, "Unable to fill.")
E_FOK = matching.E_FOK
E_GTX = matching.E_GTX
E_LIMIT_ONLY = (-5025, "Only limit order is supported.")
E_SAME_ORDER = (-5027, "No need to modify the order.")
E_UNSUPPORTED = (-1020, "This operation is not supported.")


@dataclass(frozen=True, kw_only=True)
class OrderRequest:
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT
    qty: Decimal
    price: Decimal | None = None  # LIMIT only
    tif: str = "GTC"
    reduce_only: bool = False
    client_id: str | None = None  # None: the sim makes one up, like Binance
    # set when a triggered algo order places it (the order then points back at the algo order)
    orig_type: str = ""
    stop_price: Decimal = ZERO
    working_type: str = CONTRACT_PRICE
    price_protect: bool = False
    close_position: bool = False


@dataclass(frozen=True, kw_only=True)
class Placed:
    account: Account
    ack: Order  # the order as accepted, before it matched (``newOrderRespType=ACK``)
    order: Order  # after the immediate matching (``RESULT``)


# ---------------------------------------------------------------------------- filters
def decimals(x: Decimal) -> int:
    return max(0, -x.normalize().as_tuple().exponent)  # type: ignore[operator]


def check_qty(qty: Decimal, rules: SymbolRules, market: bool) -> None:
    if qty <= 0:
        raise err(-4003, "Quantity less than or equal to zero.")
    if decimals(qty) > rules.qty_decimals:
        raise err(*E_PRECISION)
    if qty % rules.step:
        raise err(-4023, "Quantity not increased by step size.")
    if qty < rules.min_qty:
        raise err(-4004, "Quantity less than min quantity.")
    if qty > (rules.market_max_qty if market else rules.max_qty):
        raise err(-4005, "Quantity greater than max quantity.")


def check_price(price: Decimal, rules: SymbolRules, side: str, mark: Decimal | None) -> None:
    if price <= 0:
        raise err(-4001, "Price less than 0.")
    if decimals(price) > rules.price_decimals:
        raise err(*E_PRECISION)
    if price < rules.min_price:
        raise err(-4013, "Price less than min price.")
    if price > rules.max_price:
        raise err(-4002, "Price greater than max price.")
    if price % rules.tick:
        raise err(-4014, "Price not increased by tick size.")
    if mark is None:
        return
    fmt = f"{{:.{rules.price_decimals}f}}"
    if side == BUY and price > mark * rules.multiplier_up:
        bound = (mark * rules.multiplier_up / rules.tick).to_integral_value(ROUND_FLOOR) * rules.tick
        raise err(-4016, f"Limit price can't be higher than {fmt.format(bound)}.")
    if side == SELL and price < mark * rules.multiplier_down:
        bound = (mark * rules.multiplier_down / rules.tick).to_integral_value(ROUND_CEILING) * rules.tick
        raise err(-4024, f"Limit price can't be lower than {fmt.format(bound)}.")


def generated_client_id(order_id: int) -> str:
    """22 base62 characters, like the ids Binance gives orders sent without one."""
    n = int.from_bytes(hashlib.sha256(b"sim-order-%d" % order_id).digest()[:17], "big")
    out = []
    for _ in range(22):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(out)


# ---------------------------------------------------------------------------- fills
def walk(side: str, quote: Quote, rules: SymbolRules, qty: Decimal,
         limit: Decimal | None) -> list[tuple[Decimal, Decimal]]:
    """(price, qty) taker chunks for ``qty``: the touch, then one tick further per
    top-of-book-sized chunk, never past ``limit`` (the shared core ``venue.fills.walk`` with
    no slippage). May total less than ``qty``."""
    touch, size = (quote.ask, quote.ask_qty) if side == BUY else (quote.bid, quote.bid_qty)
    taker = matching.TakerRules(tick=rules.tick, max_levels=MAX_WALK_CHUNKS,
                             min_chunk=rules.step,  # an empty touch still trades a step (never loops forever)
                             clamp_at_tick=False)
    return [(price, q) for q, price in matching.walk(side, touch, size, qty, taker, limit)]


def apply_fill(pos: Position, side: str, price: Decimal, qty: Decimal, now_ms: int,
               rules: SymbolRules) -> tuple[Position, Decimal]:
    """The position after a fill and the PnL it realised (1e-8 USDT)."""
    signed = qty if side == BUY else -qty
    q0, e0 = pos.qty, pos.entry_price
    new_q = q0 + signed
    if q0 == 0 or (q0 > 0) == (signed > 0):  # opens or adds: weighted average entry
        entry = ((abs(q0) * e0 + qty * price) / abs(new_q)).quantize(rules.entry_quantum(), ROUND_HALF_UP)
        return Position(symbol=pos.symbol, qty=new_q, entry_price=entry, update_ms=now_ms,
                        cum_realized=pos.cum_realized), ZERO
    closed = min(qty, abs(q0))
    pnl = money(closed * (price - e0) * (1 if q0 > 0 else -1))
    if new_q == 0:
        entry = ZERO
    elif (new_q > 0) == (q0 > 0):
        entry = e0
    else:  # flipped: the rest opens at this price
        entry = price
    return Position(symbol=pos.symbol, qty=new_q, entry_price=entry, update_ms=now_ms,
                    cum_realized=pos.cum_realized + pnl), pnl


def reducible(pos: Position, side: str) -> Decimal:
    """How much a ``side`` order may reduce ``pos`` by (0: it would add or there is none)."""
    if pos.qty > 0 and side == SELL:
        return pos.qty
    if pos.qty < 0 and side == BUY:
        return -pos.qty
    return ZERO


class _Tx:
    """One transition being built: private copies of what may change, a new ``Account``
    at ``commit``. Local to the functions below, which stay pure from the outside."""

    def __init__(self, acc: Account, now_ms: int) -> None:
        self.acc = acc
        self.now = now_ms
        self.wallet = acc.wallet
        self.positions = dict(acc.positions)
        self.orders = dict(acc.orders)
        self.open_ids = dict(acc.open_ids)
        self.client_ids = dict(acc.client_ids)
        self.fills: list[Fill] = []
        self.next_order_id = acc.next_order_id
        self.next_trade_id = acc.next_trade_id

    def position(self, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(symbol=symbol, qty=ZERO, entry_price=ZERO, update_ms=0)

    def put(self, order: Order) -> Order:
        """Store ``order`` and keep the per-symbol resting list in step with its status."""
        self.orders[order.order_id] = order
        ids = self.open_ids.get(order.symbol, ())
        if order.is_open and order.order_id not in ids:
            self.open_ids[order.symbol] = ids + (order.order_id,)
        elif not order.is_open and order.order_id in ids:
            rest = tuple(i for i in ids if i != order.order_id)
            if rest:
                self.open_ids[order.symbol] = rest
            else:
                self.open_ids.pop(order.symbol, None)
        return order

    def fill(self, order: Order, price: Decimal, qty: Decimal, maker: bool, rules: SymbolRules) -> Order:
        pos, pnl = apply_fill(self.position(order.symbol), order.side, price, qty, self.now, rules)
        fee = money(price * qty * (MAKER_FEE if maker else TAKER_FEE))
        self.positions[order.symbol] = pos
        self.wallet += pnl - fee
        self.fills.append(Fill(trade_id=self.next_trade_id, order_id=order.order_id,
                               client_id=order.client_id, symbol=order.symbol, side=order.side,
                               price=price, qty=qty, realized_pnl=pnl, commission=fee, maker=maker,
                               time_ms=self.now))
        self.next_trade_id += 1
        executed = order.executed_qty + qty
        return self.put(dataclasses.replace(
            order, executed_qty=executed, cum_quote=order.cum_quote + price * qty,
            status=FILLED if executed == order.orig_qty else PARTIALLY_FILLED, update_ms=self.now))

    def expire(self, order: Order) -> Order:
        return self.put(dataclasses.replace(order, status=EXPIRED, update_ms=self.now))

    def expire_stale_reduce_only(self, symbol: str) -> None:
        """Binance drops resting reduce-only orders once there is nothing left to reduce."""
        pos = self.position(symbol)
        for oid in self.open_ids.get(symbol, ()):
            o = self.orders[oid]
            if o.reduce_only and not reducible(pos, o.side):
                self.expire(o)

    def commit(self, **changes: object) -> Account:
        orders = self.orders
        if len(orders) > MAX_CLOSED_ORDERS:
            n_open = sum(len(v) for v in self.open_ids.values())
            drop = len(orders) - MAX_CLOSED_ORDERS - n_open
            if drop > 0:
                old = set([i for i, o in orders.items() if not o.is_open][:drop])
                orders = {i: o for i, o in orders.items() if i not in old}
                self.client_ids = {c: i for c, i in self.client_ids.items() if i in orders}
        fills = self.acc.fills + tuple(self.fills)
        return dataclasses.replace(
            self.acc, wallet=self.wallet, positions=self.positions, orders=orders,
            open_ids=self.open_ids, client_ids=self.client_ids, fills=fills[-MAX_FILLS:],
            next_order_id=self.next_order_id, next_trade_id=self.next_trade_id,
            fills_total=self.acc.fills_total + len(self.fills), version=self.acc.version + 1,
            update_ms=self.now, **changes)


# ---------------------------------------------------------------------------- orders
def check_margin(acc: Account, req: OrderRequest, ref_price: Decimal, marks: Mapping[str, Decimal]) -> None:
    """-2019 when the position after ``req`` would need more initial margin than is free."""
    pos = acc.position(req.symbol)
    after = pos.qty + (req.qty if req.side == BUY else -req.qty)
    if abs(after) <= abs(pos.qty):
        return  # only reduces: always allowed
    t = totals(acc, marks)
    lev = acc.leverage_of(req.symbol)
    mark = marks.get(req.symbol, ref_price)
    held = abs(pos.qty) * mark / lev
    need = abs(after) * ref_price / lev + req.qty * ref_price * TAKER_FEE
    if need > t.available + held:
        raise err(*E_MARGIN)


def place(acc: Account, req: OrderRequest, rules: SymbolRules, quote: Quote | None,
          marks: Mapping[str, Decimal], now_ms: int) -> Placed:
    """A new order: checked like Binance, matched at once as far as it can be."""
    market = req.type == MARKET
    check_qty(req.qty, rules, market)
    mark = quote.mark if quote is not None else None
    if not market:
        assert req.price is not None
        check_price(req.price, rules, req.side, mark)
    if req.client_id is not None:
        prior = acc.order_by_client_id(req.client_id)
        if prior is not None and prior.is_open:
            raise err(*E_DUPLICATE_CID)
    if market and quote is None:
        raise err(*E_UNABLE_TO_FILL)  # no book seen yet for this symbol
    pos = acc.position(req.symbol)
    fill_qty = req.qty
    if req.reduce_only:
        fill_qty = min(req.qty, reducible(pos, req.side))
        if not fill_qty:
            raise err(*E_REDUCE_ONLY)
    if market:
        assert quote is not None
        ref = quote.ask if req.side == BUY else quote.bid
    else:
        assert req.price is not None
        ref = req.price
    if not req.reduce_only:
        notional_price = mark if market and mark is not None else ref
        if req.qty * notional_price < rules.min_notional:
            raise err(-4164, f"Order's notional must be no smaller than {rules.min_notional} "
                             "(unless you choose reduce only).")
        check_margin(acc, req, ref, marks if mark is None else {**marks, req.symbol: mark})
    limit = None if market else req.price
    chunks = walk(req.side, quote, rules, fill_qty, limit) if quote is not None else []
    tif = None if market else matching.time_in_force(req.tif, [(q, p) for p, q in chunks], req.qty)
    if tif is not None and tif.refused is not None:
        raise err(*tif.refused)

    tx = _Tx(acc, now_ms)
    oid = tx.next_order_id
    tx.next_order_id += 1
    ack = Order(order_id=oid, client_id=req.client_id or generated_client_id(oid), symbol=req.symbol,
                side=req.side, type=req.type, tif="GTC" if market else req.tif,
                price=ZERO if market else ref, orig_qty=req.qty, reduce_only=req.reduce_only,
                time_ms=now_ms, update_ms=now_ms, after_trade_id=quote.last_trade_id if quote else 0,
                orig_type=req.orig_type, stop_price=req.stop_price, working_type=req.working_type,
                price_protect=req.price_protect, close_position=req.close_position)
    tx.client_ids[ack.client_id] = oid
    order = tx.put(ack)
    for price, qty in chunks:
        order = tx.fill(order, price, qty, maker=False, rules=rules)
    if order.remaining and (market or (tif is not None and tif.expire_rest)):
        order = tx.expire(order)  # what a taker-only order could not fill
    if chunks:
        tx.expire_stale_reduce_only(req.symbol)  # this one too, if it closed the position
        order = tx.orders[oid]
    return Placed(account=tx.commit(), ack=ack, order=order)


def modify(acc: Account, symbol: str, order_id: int | None, client_id: str | None, side: str, qty: Decimal,
           price: Decimal, rules: SymbolRules, quote: Quote | None, marks: Mapping[str, Decimal],
           now_ms: int) -> tuple[Account, Order]:
    """``PUT /fapi/v1/order``: a resting LIMIT order's new price and quantity (module docstring)."""
    o = find_order(acc, symbol, order_id, client_id)
    if o is None or not o.is_open:
        raise err(*E_NO_ORDER)
    if o.type != "LIMIT":
        raise err(*E_LIMIT_ONLY)
    if side != o.side:
        raise err(-1130, "Data sent for parameter 'side' is not valid.")
    if qty == o.orig_qty and price == o.price:
        raise err(*E_SAME_ORDER)
    check_qty(qty, rules, market=False)
    check_price(price, rules, side, quote.mark if quote is not None else None)
    tx = _Tx(acc, now_ms)
    if o.executed_qty and qty <= o.executed_qty:  # Binance: cancelled by the amendment
        done = tx.put(dataclasses.replace(o, status=CANCELED, update_ms=now_ms))
        return tx.commit(), done
    chunks = walk(side, quote, rules, qty - o.executed_qty, price) if quote is not None else []
    if o.tif == "GTX" and chunks:  # post-only would take liquidity: cancelled
        done = tx.put(dataclasses.replace(o, status=CANCELED, update_ms=now_ms))
        return tx.commit(), done
    if not o.reduce_only:
        if (qty - o.executed_qty) * price < rules.min_notional:
            raise err(-4164, f"Order's notional must be no smaller than {rules.min_notional} "
                             "(unless you choose reduce only).")
        rest = dataclasses.replace(acc, open_ids={**acc.open_ids, symbol: tuple(
            i for i in acc.open_ids.get(symbol, ()) if i != o.order_id)})
        req = OrderRequest(symbol=symbol, side=side, type="LIMIT", qty=qty - o.executed_qty, price=price)
        check_margin(rest, req, price, marks if quote is None else {**marks, symbol: quote.mark})
    order = tx.put(dataclasses.replace(o, price=price, orig_qty=qty, update_ms=now_ms,
                                       after_trade_id=quote.last_trade_id if quote is not None else o.after_trade_id))
    for p, q in chunks:
        if o.reduce_only:  # a reduce-only fill never grows the position
            q = min(q, reducible(tx.position(symbol), side))
            if not q:
                break
        order = tx.fill(order, p, q, maker=False, rules=rules)
    if chunks:
        tx.expire_stale_reduce_only(symbol)
        order = tx.orders[o.order_id]
    return tx.commit(), order


def crossed(order: Order, quote: Quote) -> bool:
    """Whether the market now trades through a resting order's price: the opposite touch at
    or through it, or a trade printed since it was placed strictly through it."""
    traded = quote.last is not None and quote.last_trade_id != order.after_trade_id
    return matching.resting_crossed(order.side, order.price, bid=quote.bid, ask=quote.ask, at_touch=True,
                                 last=quote.last if traded else None)


def match_resting(acc: Account, rules: SymbolRules, quote: Quote, now_ms: int) -> Account:
    """Fill the resting orders of ``rules.symbol`` the market crossed; the same account
    object when none was (the caller's cheap "nothing happened" test)."""
    ids = acc.open_ids.get(rules.symbol)
    if not ids:
        return acc
    hits = [acc.orders[i] for i in ids if crossed(acc.orders[i], quote)]
    if not hits:
        return acc
    tx = _Tx(acc, now_ms)
    for hit in hits:
        order = tx.orders[hit.order_id]
        if not order.is_open:  # expired by an earlier fill of this pass
            continue
        qty = order.remaining
        if order.reduce_only:
            qty = min(qty, reducible(tx.position(order.symbol), order.side))
            if not qty:
                tx.expire(order)
                continue
        order = tx.fill(order, order.price, qty, maker=True, rules=rules)
        if order.remaining:  # a reduce-only order cut to the position
            tx.expire(order)
    tx.expire_stale_reduce_only(rules.symbol)
    return tx.commit()


def find_order(acc: Account, symbol: str, order_id: int | None, client_id: str | None) -> Order | None:
    o = acc.orders.get(order_id) if order_id is not None else (
        acc.order_by_client_id(client_id) if client_id is not None else None)
    return o if o is not None and o.symbol == symbol else None


def cancel(acc: Account, symbol: str, order_id: int | None, client_id: str | None,
           now_ms: int) -> tuple[Account, Order]:
    o = find_order(acc, symbol, order_id, client_id)
    if o is None or not o.is_open:
        raise err(*E_UNKNOWN_ORDER)
    tx = _Tx(acc, now_ms)
    done = tx.put(dataclasses.replace(o, status=CANCELED, update_ms=now_ms))
    return tx.commit(), done


def cancel_all(acc: Account, symbol: str, now_ms: int) -> Account:
    """Every resting order of ``symbol`` cancelled (the same account when there is none)."""
    if not acc.open_ids.get(symbol):
        return acc
    tx = _Tx(acc, now_ms)
    for oid in acc.open_ids[symbol]:
        tx.put(dataclasses.replace(acc.orders[oid], status=CANCELED, update_ms=now_ms))
    return tx.commit()


# ---------------------------------------------------------------------------- settings
def max_notional(leverage: int) -> int:
    """The largest position notional Binance allows at ``leverage`` (the brackets' cap)."""
    return max(b[3] for b in BRACKETS if b[1] >= leverage)


def set_leverage(acc: Account, symbol: str, leverage: int, now_ms: int) -> Account:
    if not 1 <= leverage <= MAX_LEVERAGE:
        raise err(-4028, f"Leverage {leverage} is not valid")
    return dataclasses.replace(acc, leverage={**acc.leverage, symbol: leverage},
                               version=acc.version + 1, update_ms=now_ms)


def set_margin_type(acc: Account, symbol: str, margin_type: str, now_ms: int) -> Account:
    if margin_type not in (CROSSED, ISOLATED):
        raise err(-1130, "Data sent for parameter 'marginType' is not valid.")
    if margin_type == ISOLATED:
        raise err(*E_UNSUPPORTED)  # not modelled: refused, never accepted and margined as cross
    if acc.margin_type.get(symbol, CROSSED) == margin_type:
        raise err(-4046, "No need to change margin type.")
    if acc.open_ids.get(symbol):
        raise err(-4047, "Margin type cannot be changed if there exists open orders.")
    if acc.position(symbol).qty:
        raise err(-4048, "Margin type cannot be changed if there exists position.")
    return dataclasses.replace(acc, margin_type={**acc.margin_type, symbol: margin_type},
                               version=acc.version + 1, update_ms=now_ms)

