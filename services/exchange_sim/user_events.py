"""User data stream events from account transitions (pure): what Binance pushes on ``/private``.

``diff(before, after, ...)`` turns one account transition (an order placed, a resting order
filled, an algo order fired, a cancel, a leverage change) into the events Binance would
push for it, in order. The trading core does not log what it does; the transition is read
back from the two account values: orders that were open before or are new since, the fills
added, algo orders that were open or are new, positions and the wallet.

Events and their shapes (the "Event: ..." pages of Binance's USD-M user data streams, and
what a real testnet account pushed in 2026 as recorded by others, where the pages leave a
format open):

- ``ORDER_TRADE_UPDATE`` for every order state change and every trade: ``x`` NEW, TRADE,
  CANCELED or EXPIRED, ``X`` the status after it, ``l``/``L``/``t``/``n``/``rp`` of the trade,
  ``z`` and ``ap`` cumulative, ``ot``/``sp``/``wt``/``cp``/``pP`` pointing back at the algo
  order that placed it, ``er`` the expiry reason (9 a MARKET remainder, 2 an IOC one, 4 a
  reduce-only order with nothing left to reduce).
- ``TRADE_LITE`` for every trade (the fast trade event a real account receives first).
- ``ACCOUNT_UPDATE`` (``m`` ORDER) once per transition that moved the wallet or a position:
  the USDT balance and the positions that changed, with their accumulated realised PnL.
- ``ALGO_UPDATE`` for every algo order state change: NEW on placement (and again when a
  trailing order activates, ``ia``), TRIGGERING and TRIGGERED (``ai`` the order placed) when
  it fires, FINISHED once that order is done, CANCELED, EXPIRED or REJECTED (``rm`` why).
- ``ACCOUNT_CONFIG_UPDATE`` when a symbol's leverage changes.
- ``listenKeyExpired`` (``listen_key_expired``), pushed by the stream itself.

Order within one transition: leverage changes; algo orders NEW/TRIGGERING/TRIGGERED; orders
NEW; TRADE_LITE per trade; ACCOUNT_UPDATE; ORDER_TRADE_UPDATE TRADE per trade, then
CANCELED/EXPIRED; algo orders FINISHED/CANCELED/EXPIRED/REJECTED. Event (``E``) and
transaction (``T``) times are the transition's time. Not modelled: FUNDING_FEE and the other
ACCOUNT_UPDATE reasons, MARGIN_CALL (the sim never liquidates), GRID_UPDATE, STRATEGY_UPDATE.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from services.exchange_sim.account import (BUY, CANCELED, CONDITIONAL, EXPIRED, FILLED, FINISHED, MARKET,
                                           NEW, PARTIALLY_FILLED, REJECTED, TRAILING_STOP_MARKET, TRIGGERED,
                                           TRIGGERING, ZERO, Account, AlgoOrder, Fill, Order, Position,
                                           SymbolRules, mark_of, money, unrealized)
from services.exchange_sim.algo import MARKET_TYPES
from services.exchange_sim.private_rest import break_even

Event = dict[str, Any]


def num(x: Decimal) -> str:
    """A decimal as Binance prints it in stream events: no trailing zeros, ``0`` for zero."""
    return "0" if not x else f"{x.normalize():f}"


def fixed(x: Decimal, places: int) -> str:
    q = x.quantize(Decimal(1).scaleb(-places))
    return f"{abs(q) if not q else q:f}"


def _notionals(acc: Account, symbol: str) -> tuple[Decimal, Decimal]:
    bid = sum((o.remaining * o.price for o in acc.open_orders(symbol) if o.side == BUY), ZERO)
    ask = sum((o.remaining * o.price for o in acc.open_orders(symbol) if o.side != BUY), ZERO)
    return bid, ask


def _expiry_reason(o: Order) -> str:
    if o.status != EXPIRED:
        return "0"
    if o.type == MARKET:
        return "9"  # Market order could not be filled completely
    if o.tif == "IOC":
        return "2"  # IOC order could not be filled completely
    if o.reduce_only:
        return "4"  # knocked out: reduce-only with nothing left to reduce
    return "0"


def order_update(o: Order, rules: SymbolRules, now_ms: int, *, x: str, status: str, executed: Decimal,
                 cum_quote: Decimal, fill: Fill | None, notionals: tuple[Decimal, Decimal]) -> Event:
    """``ORDER_TRADE_UPDATE`` for ``o`` as of this event (``executed``/``cum_quote`` so far)."""
    pd, qd = rules.price_decimals, rules.qty_decimals
    return {"e": "ORDER_TRADE_UPDATE", "E": now_ms, "T": now_ms, "o": {
        "s": o.symbol, "c": o.client_id, "S": o.side, "o": o.type, "f": o.tif, "q": fixed(o.orig_qty, qd),
        "p": "0" if o.type == MARKET else fixed(o.price, pd),
        "ap": fixed(cum_quote / executed, pd + 3) if executed else "0",
        "sp": fixed(o.stop_price, pd) if o.stop_price else "0", "x": x, "X": status, "i": o.order_id,
        "l": fixed(fill.qty, qd) if fill else "0", "z": fixed(executed, qd),
        "L": num(fill.price) if fill else "0", "N": "USDT", "n": fixed(fill.commission, 8) if fill else "0",
        "T": fill.time_ms if fill else now_ms, "t": fill.trade_id if fill else 0,
        "b": num(notionals[0]), "a": num(notionals[1]), "m": fill.maker if fill else False,
        "R": o.reduce_only, "wt": o.working_type, "ot": o.orig_type or o.type, "ps": "BOTH",
        "cp": o.close_position, "pP": o.price_protect, "si": 0, "ss": 0,
        "rp": fixed(fill.realized_pnl, 8) if fill and fill.realized_pnl else "0", "V": "NONE", "pm": "NONE",
        "gtd": 0, "er": _expiry_reason(o) if x == EXPIRED else "0"}}


def trade_lite(o: Order, f: Fill, rules: SymbolRules, now_ms: int) -> Event:
    pd, qd = rules.price_decimals, rules.qty_decimals
    return {"e": "TRADE_LITE", "E": now_ms, "T": now_ms, "s": o.symbol, "q": fixed(o.orig_qty, qd),
            "p": fixed(o.price, pd), "m": f.maker, "c": o.client_id, "S": o.side, "L": fixed(f.price, pd),
            "l": fixed(f.qty, qd), "t": f.trade_id, "i": o.order_id}


def _position(p: Position, rules: SymbolRules, marks: Mapping[str, Decimal]) -> dict[str, Any]:
    up = money(unrealized(p, mark_of(p, marks)))
    return {"s": p.symbol, "pa": fixed(p.qty, rules.qty_decimals), "ep": num(p.entry_price),
            "bep": num(money(break_even(p))) if p.qty else "0", "cr": num(p.cum_realized), "up": num(up),
            "mt": "cross", "iw": "0", "ps": "BOTH", "ma": "USDT"}


def account_update(acc: Account, symbols: list[str], rules: Mapping[str, SymbolRules],
                   marks: Mapping[str, Decimal], now_ms: int, reason: str = "ORDER") -> Event:
    wallet = fixed(acc.wallet, 8)
    return {"e": "ACCOUNT_UPDATE", "E": now_ms, "T": now_ms, "a": {
        "m": reason, "B": [{"a": "USDT", "wb": wallet, "cw": wallet, "bc": "0"}],
        "P": [_position(acc.position(s), rules[s], marks) for s in symbols if s in rules]}}


def algo_update(a: AlgoOrder, rules: SymbolRules, now_ms: int, *, status: str | None = None,
                order: Order | None = None, show_order: bool = False) -> Event:
    """``ALGO_UPDATE`` for ``a`` with ``status`` (default its own); ``show_order``: it is in the
    matching engine (``ai``, and ``ap``/``aq``/``act`` from ``order``, 0 if None)."""
    pd, qd = rules.price_decimals, rules.qty_decimals
    o: dict[str, Any] = {
        "caid": a.client_algo_id, "aid": a.algo_id, "at": CONDITIONAL, "o": a.type, "s": a.symbol, "S": a.side,
        "ps": "BOTH", "f": a.tif, "q": num(a.qty), "X": status or a.status,
        "ai": str(a.actual_order_id) if show_order and a.actual_order_id is not None else ""}
    if show_order:
        executed = order.executed_qty if order is not None else ZERO
        o["ap"] = fixed(order.avg_price if order is not None else ZERO, pd + 3)
        o["aq"] = fixed(executed, qd)
        o["act"] = MARKET if a.type in MARKET_TYPES else "LIMIT"
    o.update({"tp": num(a.trigger_price), "p": num(a.price), "V": a.stp, "wt": a.working_type, "pm": "NONE",
              "cp": a.close_position, "pP": a.price_protect, "R": a.reduce_only, "tt": a.trigger_ms, "gtd": 0})
    if a.reason and (status or a.status) in (REJECTED, EXPIRED):
        o["rm"] = a.reason
    o["ia"] = a.activated if a.type == TRAILING_STOP_MARKET else False
    return {"e": "ALGO_UPDATE", "T": now_ms, "E": now_ms, "o": o}


def config_update(symbol: str, leverage: int, now_ms: int) -> Event:
    return {"e": "ACCOUNT_CONFIG_UPDATE", "E": now_ms, "T": now_ms, "ac": {"s": symbol, "l": leverage}}


def listen_key_expired(key: str, now_ms: int) -> Event:
    """As the event page shows it: ``E`` a string, and the key."""
    return {"e": "listenKeyExpired", "E": str(now_ms), "listenKey": key}


def diff(before: Account, after: Account, rules: Mapping[str, SymbolRules], marks: Mapping[str, Decimal],
         now_ms: int) -> list[Event]:
    """The events of the transition ``before`` -> ``after``, in Binance's order (module docstring)."""
    if after is before:
        return []
    out: list[Event] = []
    for s, lev in after.leverage.items():
        if before.leverage.get(s) != lev:
            out.append(config_update(s, lev, now_ms))

    # algo orders: open before, or new since
    cand = {i for ids in before.open_algo_ids.values() for i in ids}
    cand.update(i for i in after.algos if i >= before.next_algo_id)
    pre: list[Event] = []
    post: list[Event] = []
    for aid in sorted(cand):
        a = after.algos.get(aid)
        if a is None or a.symbol not in rules:
            continue
        r = rules[a.symbol]
        b = before.algos.get(aid)
        if b is None:
            pre.append(algo_update(a, r, now_ms))
            continue
        if a is b:
            continue
        if a.status == b.status:
            if a.activated != b.activated:
                pre.append(algo_update(a, r, now_ms))
            continue
        fired = b.status == NEW and a.status in (TRIGGERED, FINISHED, REJECTED)
        if fired:
            pre.append(algo_update(a, r, now_ms, status=TRIGGERING))
            if a.status != REJECTED:
                pre.append(algo_update(a, r, now_ms, status=TRIGGERED, show_order=True))
        if a.status != TRIGGERED:
            order = after.orders.get(a.actual_order_id) if a.actual_order_id is not None else None
            post.append(algo_update(a, r, now_ms, order=order, show_order=a.status == FINISHED))

    # orders: open before, or new since; and the trades added
    n_new = after.fills_total - before.fills_total
    new_fills = after.fills[len(after.fills) - min(n_new, len(after.fills)):] if n_new > 0 else ()
    fills_of: dict[int, list[Fill]] = {}
    for f in new_fills:
        fills_of.setdefault(f.order_id, []).append(f)
    cand_orders = {i for ids in before.open_ids.values() for i in ids}
    cand_orders.update(range(before.next_order_id, after.next_order_id))
    news: list[Event] = []
    lites: list[Event] = []
    trades: list[Event] = []
    ends: list[Event] = []
    for oid in sorted(cand_orders):
        o = after.orders.get(oid)
        if o is None or o.symbol not in rules:
            continue
        b = before.orders.get(oid)
        if b is o:
            continue
        r = rules[o.symbol]
        notionals = _notionals(after, o.symbol)
        if b is None:
            news.append(order_update(o, r, now_ms, x=NEW, status=NEW, executed=ZERO, cum_quote=ZERO, fill=None,
                                     notionals=notionals))
        executed = b.executed_qty if b is not None else ZERO
        quote = b.cum_quote if b is not None else ZERO
        for f in fills_of.get(oid, ()):
            executed += f.qty
            quote += f.price * f.qty
            status = FILLED if executed == o.orig_qty else PARTIALLY_FILLED
            lites.append(trade_lite(o, f, r, now_ms))
            trades.append(order_update(o, r, now_ms, x="TRADE", status=status, executed=executed,
                                       cum_quote=quote, fill=f, notionals=notionals))
        if o.status in (CANCELED, EXPIRED) and (b is None or b.status != o.status):
            ends.append(order_update(o, r, now_ms, x=o.status, status=o.status, executed=o.executed_qty,
                                     cum_quote=o.cum_quote, fill=None, notionals=notionals))

    moved = sorted(s for s, p in after.positions.items() if before.positions.get(s) is not p)
    account = ([account_update(after, moved, rules, marks, now_ms)]
               if moved or after.wallet != before.wallet else [])
    return out + pre + news + lites + account + trades + ends + post
