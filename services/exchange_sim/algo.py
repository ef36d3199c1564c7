"""The Algo Service: conditional orders held until their trigger (pure).

Since 2025-12-09 Binance USD-M keeps ``STOP_MARKET``, ``TAKE_PROFIT_MARKET``, ``STOP``,
``TAKE_PROFIT`` and ``TRAILING_STOP_MARKET`` orders in its Algo Service (derivatives change
log, 2025-11-06): they are placed with ``POST /fapi/v1/algoOrder`` (``algoType=CONDITIONAL``)
and only reach the matching engine when they trigger. Like ``trading``, every function here
takes an ``Account`` and returns the next one, or raises ``RestError`` with Binance's code
and message and changes nothing. The REST parameters are read in ``rest_params``, the bodies
written in ``private_rest``.

What is modelled (sources: the "New Algo Order" page and its notes, "Event: Algo Order
Update", the change log entries of 2025-11-06, 2025-12-29 and 2026-10-23, and what a real
testnet account answered in 2026, recorded by others and cited where used)
-----------------------------------------------------------------------------------------
- Placing (``place``): quantity filters (MARKET_LOT_SIZE for the market types, LOT_SIZE
  for STOP/TAKE_PROFIT), the limit price's filters for STOP/TAKE_PROFIT, the trigger price
  (> 0: -4006, no more decimals than the symbol's price precision: -1111, not above the
  max price: -4007; the tick is not enforced: a real testnet accepted 74960.75 on a 0.10
  tick), at most 200 open algo orders across all symbols (-4045), ``clientAlgoId`` unique
  among open algo orders (-4116, as for orders), and no trigger that is already met at the
  watched price (-2021 ``Order would immediately trigger.``). No margin check before the
  trigger (change log). An order sent without ``clientAlgoId`` gets a made-up one.
- ``closePosition=true`` (STOP_MARKET / TAKE_PROFIT_MARKET only): needs a position the order
  would close (-4509 ``Time in Force (TIF) GTE can only be used with open positions...``),
  at most one open per symbol, side and type (-4130), reports ``timeInForce=GTE_GTC``,
  quantity 0 and ``reduceOnly=true`` (as a testnet ALGO_UPDATE did), and expires (EXPIRED)
  as soon as its symbol has no position left to close ("Algo Status" EXPIRED: the GTE_GTC
  order is cancelled by the system once the positions are closed).
- Triggering (``evaluate``, after every market step and every ``/_sim/price``): on the mark
  price (``workingType=MARK_PRICE``, the sim's mark is the book mid) or the last trade
  (``CONTRACT_PRICE``, the default). STOP/STOP_MARKET: BUY when the price >= trigger, SELL
  when <= trigger; TAKE_PROFIT(_MARKET) the other way round. TRAILING_STOP_MARKET: SELL
  once the highest price since placement is >= ``activatePrice`` (default: the price at
  placement) and the price is <= highest x (1 - callbackRate %); BUY mirrored.
  ``priceProtect=TRUE``: no trigger while |mark - last| / mark exceeds the symbol's
  ``triggerProtect``. On a trigger the order goes NEW -> TRIGGERING -> TRIGGERED and a
  MARKET (LIMIT for STOP/TAKE_PROFIT, with the algo order's price and time in force) order
  is placed through ``trading.place`` with ``clientOrderId`` = ``clientAlgoId``, its
  ``origType``/``stopPrice``/``workingType``/``priceProtect``/``closePosition`` pointing
  back at the algo order (closePosition: the whole position, reduce-only). The algo order
  is FINISHED once that order is no longer working (filled, expired or cancelled); REJECTED
  (with the refusal's text as ``rm``; ``Reduce Only reject`` for -2022) when the matching
  engine refuses it, e.g. a reduce-only stop with nothing left to reduce.
- Cancelling a NEW algo order (``cancel``, ``cancel_all``); anything else is -2011.

What is refused or not modelled: hedge mode (``positionSide`` other than BOTH: -4061),
``priceMatch`` other than NONE, ``timeInForce=GTD`` / ``goodTillDate`` (see
``private_rest``); modifying an untriggered algo order is not supported by Binance either.
Self-trade prevention cannot happen (one account). The algo history is bounded like the
order history (``MAX_CLOSED_ALGOS``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping

from services.exchange_sim import account as acc_mod
from services.exchange_sim import trading
from services.exchange_sim.account import (CANCELED, CONTRACT_PRICE, EXPIRED, FINISHED, GTE_GTC, LIMIT,
                                           MARK_PRICE, MARKET, NEW, REJECTED, SELL, STOP, STOP_MARKET,
                                           TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET, TRIGGERED, ZERO, Account,
                                           AlgoOrder, Quote, SymbolRules)
from services.exchange_sim.rest import RestError
from venue import fills as matching

MAX_OPEN_ALGOS = 200  # change log 2025-12-29: "The condtional order limits is 200 across all symbols."
CALLBACK_MIN = Decimal("0.1")  # New Algo Order: callbackRate min 0.1 ...
CALLBACK_MAX = Decimal("20")  # ... max 10, raised to 20 by the change log of 2026-10-23
MARKET_TYPES = (STOP_MARKET, TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET)  # trigger into a MARKET order
STOP_TYPES = (STOP, STOP_MARKET)  # BUY triggers at or above, SELL at or below

E_MAX_ALGOS = (-4045, "Reach max stop order limit.")
E_IMMEDIATE = (-2021, "Order would immediately trigger.")
E_GTE_NO_POSITION = (-4509, "Time in Force (TIF) GTE can only be used with open positions. "
                            "Please ensure that positions are available.")
E_CLOSE_EXISTS = (-4130, "An open stop or take profit order with GTE and closePosition in the direction "
                         "is existing.")
E_STOP_PRICE_ZERO = (-4006, "Stop price less than zero.")
E_STOP_PRICE_MAX = (-4007, "Stop price greater than max price.")
E_ACTIVATION = (-4135, "Invalid activation price")
REDUCE_ONLY_REJECT = "Reduce Only reject"  # ALGO_UPDATE ``rm`` (the event page's example)


@dataclass(frozen=True, kw_only=True)
class AlgoRequest:
    symbol: str
    side: str
    type: str  # one of account.ALGO_TYPES
    qty: Decimal = ZERO  # ZERO with close_position
    price: Decimal = ZERO  # STOP / TAKE_PROFIT
    trigger_price: Decimal = ZERO  # all but TRAILING_STOP_MARKET
    working_type: str = CONTRACT_PRICE
    price_protect: bool = False
    close_position: bool = False
    reduce_only: bool = False
    tif: str = "GTC"
    activate_price: Decimal | None = None  # TRAILING_STOP_MARKET; None: the price at placement
    callback_rate: Decimal = ZERO  # TRAILING_STOP_MARKET, percent
    client_algo_id: str | None = None
    stp: str = "NONE"


# ---------------------------------------------------------------------------- prices
def watched(working_type: str, quote: Quote) -> Decimal | None:
    """The price an algo order watches: the mark (book mid) or the last trade (None before one)."""
    return quote.mark if working_type == MARK_PRICE else quote.last


def crosses(otype: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    """Whether ``price`` meets a STOP/TAKE_PROFIT(_MARKET) trigger (New Algo Order's notes;
    the shared core's rule, ``venue.fills.trigger_met``)."""
    return matching.trigger_met(otype, side, trigger, price)


def within_protect(quote: Quote, limit: Decimal) -> bool:
    """priceProtect: |mark - last| / mark no larger than the symbol's triggerProtect."""
    if quote.last is None:
        return True
    mark = quote.mark
    return abs(mark - quote.last) <= limit * mark


def trail(a: AlgoOrder, price: Decimal) -> AlgoOrder:
    """A trailing order after seeing ``price``: its extreme and activation (same object if unchanged)."""
    if a.side == SELL:
        ext = max(a.extreme, price)
        act = a.activated or ext >= a.activate_price
    else:
        ext = min(a.extreme, price)
        act = a.activated or ext <= a.activate_price
    if ext == a.extreme and act == a.activated:
        return a
    return dataclasses.replace(a, extreme=ext, activated=act)


def trailing_fires(a: AlgoOrder, price: Decimal) -> bool:
    if not a.activated:
        return False
    rate = a.callback_rate / 100
    return price <= a.extreme * (1 - rate) if a.side == SELL else price >= a.extreme * (1 + rate)


# ---------------------------------------------------------------------------- bookkeeping
def _put(acc: Account, a: AlgoOrder, now_ms: int, **changes: object) -> Account:
    """``acc`` with ``a`` stored, the per-symbol open list and client id index in step."""
    algos = dict(acc.algos)
    algos[a.algo_id] = a
    open_ids = dict(acc.open_algo_ids)
    ids = open_ids.get(a.symbol, ())
    if a.is_open and a.algo_id not in ids:
        open_ids[a.symbol] = ids + (a.algo_id,)
    elif not a.is_open and a.algo_id in ids:
        rest = tuple(i for i in ids if i != a.algo_id)
        if rest:
            open_ids[a.symbol] = rest
        else:
            open_ids.pop(a.symbol, None)
    client_ids = acc.client_algo_ids
    if client_ids.get(a.client_algo_id) != a.algo_id:
        client_ids = {**client_ids, a.client_algo_id: a.algo_id}
    n_open = sum(len(v) for v in open_ids.values())
    drop = len(algos) - acc_mod.MAX_CLOSED_ALGOS - n_open
    if drop > 0:
        old = set([i for i, x in algos.items() if not x.is_open][:drop])
        algos = {i: x for i, x in algos.items() if i not in old}
        client_ids = {c: i for c, i in client_ids.items() if i in algos}
    return dataclasses.replace(acc, algos=algos, open_algo_ids=open_ids, client_algo_ids=client_ids,
                               version=acc.version + 1, update_ms=now_ms, **changes)


def find(acc: Account, algo_id: int | None, client_algo_id: str | None) -> AlgoOrder | None:
    if algo_id is not None:
        return acc.algos.get(algo_id)
    return acc.algo_by_client_id(client_algo_id) if client_algo_id is not None else None


# ---------------------------------------------------------------------------- place and cancel
def _check_trigger(price: Decimal, rules: SymbolRules) -> None:
    if price <= 0:
        raise RestError(*E_STOP_PRICE_ZERO)
    if trading.decimals(price) > rules.price_decimals:
        raise RestError(*trading.E_PRECISION)
    if price > rules.max_price:
        raise RestError(*E_STOP_PRICE_MAX)


def place(acc: Account, req: AlgoRequest, rules: SymbolRules, quote: Quote | None,
          now_ms: int) -> tuple[Account, AlgoOrder]:
    """A new algo order (status NEW), checked like the Algo Service checks it."""
    trailing = req.type == TRAILING_STOP_MARKET
    if not req.close_position:
        trading.check_qty(req.qty, rules, req.type in MARKET_TYPES)
    if req.type not in MARKET_TYPES:
        trading.check_price(req.price, rules, req.side, None)
    if not trailing:
        _check_trigger(req.trigger_price, rules)
    elif req.activate_price is not None:
        if req.activate_price <= 0:
            raise RestError(*E_ACTIVATION)
        _check_trigger(req.activate_price, rules)
    if req.client_algo_id is not None:
        prior = acc.algo_by_client_id(req.client_algo_id)
        if prior is not None and prior.is_open:
            raise RestError(*trading.E_DUPLICATE_CID)
    if sum(len(v) for v in acc.open_algo_ids.values()) >= MAX_OPEN_ALGOS:
        raise RestError(*E_MAX_ALGOS)
    if req.close_position:
        if not trading.reducible(acc.position(req.symbol), req.side):
            raise RestError(*E_GTE_NO_POSITION)
        if any(a.close_position and a.side == req.side and a.type == req.type and a.status == NEW
               for a in acc.open_algos(req.symbol)):
            raise RestError(*E_CLOSE_EXISTS)
    price = watched(req.working_type, quote) if quote is not None else None
    activate, extreme, activated = ZERO, ZERO, False
    if trailing:
        if req.activate_price is not None:
            activate = req.activate_price
            if price is not None and (activate <= price if req.side == SELL else activate >= price):
                raise RestError(*E_IMMEDIATE)  # a SELL activates above the price, a BUY below
        elif price is None:
            raise RestError(*trading.E_UNABLE_TO_FILL)  # no price seen yet to default to
        else:
            activate = price
        extreme = price if price is not None else activate
        activated = extreme >= activate if req.side == SELL else extreme <= activate
    elif price is not None and crosses(req.type, req.side, req.trigger_price, price):
        raise RestError(*E_IMMEDIATE)
    aid = acc.next_algo_id
    a = AlgoOrder(
        algo_id=aid, client_algo_id=req.client_algo_id or trading.generated_client_id(aid),
        symbol=req.symbol, side=req.side, type=req.type,
        tif=GTE_GTC if req.close_position else req.tif, qty=ZERO if req.close_position else req.qty,
        price=ZERO if req.type in MARKET_TYPES else req.price,
        trigger_price=ZERO if trailing else req.trigger_price, working_type=req.working_type,
        price_protect=req.price_protect, close_position=req.close_position,
        reduce_only=req.reduce_only or req.close_position, activate_price=activate,
        callback_rate=req.callback_rate if trailing else ZERO, stp=req.stp, create_ms=now_ms,
        update_ms=now_ms, extreme=extreme, activated=activated)
    return _put(acc, a, now_ms, next_algo_id=aid + 1), a


def cancel(acc: Account, algo_id: int | None, client_algo_id: str | None,
           now_ms: int) -> tuple[Account, AlgoOrder]:
    """An untriggered (NEW) algo order cancelled; anything else is -2011 ``Unknown order sent.``"""
    a = find(acc, algo_id, client_algo_id)
    if a is None or a.status != NEW:
        raise RestError(*trading.E_UNKNOWN_ORDER)
    done = dataclasses.replace(a, status=CANCELED, update_ms=now_ms)
    return _put(acc, done, now_ms), done


def cancel_all(acc: Account, symbol: str, now_ms: int) -> Account:
    """Every untriggered algo order of ``symbol`` cancelled (the same account when none)."""
    out = acc
    for a in acc.open_algos(symbol):
        if a.status == NEW:
            out = _put(out, dataclasses.replace(a, status=CANCELED, update_ms=now_ms), now_ms)
    return out


# ---------------------------------------------------------------------------- triggering
def _fire(acc: Account, a: AlgoOrder, rules: SymbolRules, quote: Quote, marks: Mapping[str, Decimal],
          now_ms: int) -> Account:
    """``a`` triggered: its order goes to the matching engine (``trading.place``)."""
    market = a.type in MARKET_TYPES
    qty = trading.reducible(acc.position(a.symbol), a.side) if a.close_position else a.qty
    req = trading.OrderRequest(
        symbol=a.symbol, side=a.side, type=MARKET if market else LIMIT, qty=qty,
        price=None if market else a.price, tif="GTC" if market else a.tif, reduce_only=a.reduce_only,
        client_id=a.client_algo_id, orig_type=a.type, stop_price=a.trigger_price,
        working_type=a.working_type, price_protect=a.price_protect, close_position=a.close_position)
    try:
        placed = trading.place(acc, req, rules, quote, marks, now_ms)
    except RestError as exc:
        reason = REDUCE_ONLY_REJECT if exc.code == trading.E_REDUCE_ONLY[0] else exc.msg
        return _put(acc, dataclasses.replace(a, status=REJECTED, reason=reason, trigger_ms=now_ms,
                                             update_ms=now_ms), now_ms)
    o = placed.order
    return _put(placed.account, dataclasses.replace(
        a, status=TRIGGERED if o.is_open else FINISHED, actual_order_id=o.order_id, trigger_ms=now_ms,
        update_ms=now_ms), now_ms)


def evaluate(acc: Account, rules: SymbolRules, quote: Quote, marks: Mapping[str, Decimal],
             now_ms: int) -> Account:
    """``rules.symbol``'s untriggered algo orders at ``quote``: trailing extremes move, met
    triggers fire (in algo id order). The same account object when nothing happened."""
    ids = acc.open_algo_ids.get(rules.symbol)
    if not ids:
        return acc
    out = acc
    for aid in ids:
        a = out.algos[aid]
        if a.status != NEW:
            continue  # expired or triggered by an earlier fire of this pass, or TRIGGERED
        price = watched(a.working_type, quote)
        if price is None:
            continue
        if a.type == TRAILING_STOP_MARKET:
            moved = trail(a, price)
            if moved is not a:
                if moved.activated != a.activated:
                    moved = dataclasses.replace(moved, update_ms=now_ms)
                out = _put(out, moved, now_ms)
                a = moved
            fire = trailing_fires(a, price)
        else:
            fire = crosses(a.type, a.side, a.trigger_price, price)
        if fire and a.price_protect and not within_protect(quote, rules.trigger_protect):
            fire = False
        if fire:
            out = settle(_fire(out, a, rules, quote, marks, now_ms), rules.symbol, now_ms)
    return out


def settle(acc: Account, symbol: str, now_ms: int) -> Account:
    """After any change to ``symbol``: a TRIGGERED algo order whose order stopped working is
    FINISHED, a closePosition one with no position left to close is EXPIRED."""
    ids = acc.open_algo_ids.get(symbol)
    if not ids:
        return acc
    out = acc
    pos = acc.position(symbol)
    for aid in ids:
        a = out.algos[aid]
        if a.status == TRIGGERED:
            o = out.orders.get(a.actual_order_id) if a.actual_order_id is not None else None
            if o is None or not o.is_open:
                out = _put(out, dataclasses.replace(a, status=FINISHED, update_ms=now_ms), now_ms)
        elif a.status == NEW and a.close_position and not trading.reducible(pos, a.side):
            out = _put(out, dataclasses.replace(a, status=EXPIRED, update_ms=now_ms), now_ms)
    return out


def settle_all(acc: Account, now_ms: int) -> Account:
    out = acc
    for symbol in list(acc.open_algo_ids):
        out = settle(out, symbol, now_ms)
    return out
