"""The sim's trading account as values: orders, fills, positions, the wallet (pure).

One USDT-margined account in one-way position mode (``positionSide`` is always ``BOTH``):
its orders, fills and positions, and its conditional orders held by the Algo Service
(``AlgoOrder``, see ``algo``) until they trigger.
Everything here is a frozen value; ``trading`` computes the next ``Account`` from the last
one and never changes either. The dicts inside an ``Account`` are never mutated after it
is built: a transition copies the ones it changes (the sim trades a few orders a minute,
so a copy per change is cheap and buys plain, comparable, serialisable state).

Money and quantities are ``Decimal`` (exact), never float. Rounding happens in three places
only, each documented where it is done: commissions and realised PnL to 1e-8 USDT
(half-up, Binance prints 8 decimals), and the average entry price to ``ENTRY_EXTRA_DECIMALS``
past the tick.

Funding payments are settled by ``funding`` and kept here as income rows (``Income``) and
the per-symbol funding series (``FundingRecord``).

What the account does not model (the sim is for exercising a client, not for risk research):
liquidation, isolated margin (``POST /fapi/v1/marginType`` refuses ISOLATED, see
``trading.set_margin_type``), hedge mode, and queue position or depth behind the touch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping

from common.errors import DecodeError

# ---------------------------------------------------------------------------- constants
TAKER_FEE = Decimal("0.0005")  # 0.05 %: Binance USD-M VIP 0 taker
MAKER_FEE = Decimal("0.0002")  # 0.02 %: Binance USD-M VIP 0 maker
DEFAULT_LEVERAGE = 20  # Binance's default for a symbol nobody changed
MAX_LEVERAGE = 125  # BTCUSDT's first bracket
START_WALLET = Decimal("10000")  # USDT
MONEY = Decimal("0.00000001")  # 1e-8 USDT: Binance's balances, PnL and commissions
ENTRY_EXTRA_DECIMALS = 6  # average entry price keeps 6 decimals past the tick
FIRST_ORDER_ID = 4_100_000_001  # Binance USD-M order ids are ~4e9..8e11 (numbers on the wire)
FIRST_TRADE_ID = 272_600_001  # ... trade ids ~1e8..1e10
MAX_CLOSED_ORDERS = 10_000  # history kept (and persisted); open orders are always kept
MAX_FILLS = 10_000  # Binance keeps finite history too; enough to reconcile after a crash
FIRST_ALGO_ID = 1_000_000_200_000_001  # Binance's algo ids (testnet 2026: ~1.0000002e15)
MAX_CLOSED_ALGOS = 10_000  # algo order history kept (and persisted); open ones are always kept
STATE_SCHEMA = 3  # bump when the JSON layout of ``to_json`` changes (3: funding; 2: algo orders; 1, 2 still read)
FIRST_TRAN_ID = 9_689_322_392  # income tranIds (Binance's documented example is 9689322392)
MAX_INCOMES = 10_000  # funding income rows kept (and persisted)
MAX_FUNDING_RECORDS = 10_000  # funding series rows kept (all symbols together)

# Binance's real USD-M notional brackets for BTCUSDT, as GET /fapi/v1/leverageBracket
# answered them in late 2024 (Binance's published margin tiers; no file of them is bundled):
# (bracket, max leverage, notional floor, cap, maint. ratio, cum). The sim serves these for
# every symbol.
BRACKETS: tuple[tuple[int, int, int, int, Decimal, Decimal], ...] = (
    (1, 125, 0, 50_000, Decimal("0.004"), Decimal("0")),
    (2, 100, 50_000, 600_000, Decimal("0.005"), Decimal("50")),
    (3, 75, 600_000, 3_000_000, Decimal("0.0065"), Decimal("950")),
    (4, 50, 3_000_000, 12_000_000, Decimal("0.01"), Decimal("11450")),
    (5, 25, 12_000_000, 70_000_000, Decimal("0.02"), Decimal("131450")),
    (6, 20, 70_000_000, 100_000_000, Decimal("0.025"), Decimal("481450")),
    (7, 10, 100_000_000, 230_000_000, Decimal("0.05"), Decimal("2981450")),
    (8, 5, 230_000_000, 480_000_000, Decimal("0.1"), Decimal("14481450")),
    (9, 4, 480_000_000, 600_000_000, Decimal("0.125"), Decimal("26481450")),
    (10, 3, 600_000_000, 800_000_000, Decimal("0.15"), Decimal("41481450")),
    (11, 2, 800_000_000, 1_200_000_000, Decimal("0.25"), Decimal("121481450")),
    (12, 1, 1_200_000_000, 1_800_000_000, Decimal("0.5"), Decimal("421481450")),
)

BUY, SELL = "BUY", "SELL"
MARKET, LIMIT = "MARKET", "LIMIT"
NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED = "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"
OPEN_STATUSES = (NEW, PARTIALLY_FILLED)
# Algo Service (conditional orders): algoType and statuses (user data stream, ALGO_UPDATE)
CONDITIONAL = "CONDITIONAL"
STOP, STOP_MARKET, TAKE_PROFIT, TAKE_PROFIT_MARKET, TRAILING_STOP_MARKET = (
    "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
ALGO_TYPES = (STOP_MARKET, TAKE_PROFIT_MARKET, STOP, TAKE_PROFIT, TRAILING_STOP_MARKET)
TRIGGERING, TRIGGERED, FINISHED, REJECTED = "TRIGGERING", "TRIGGERED", "FINISHED", "REJECTED"
ALGO_OPEN_STATUSES = (NEW, TRIGGERED)  # untriggered, or triggered into an order still working
MARK_PRICE, CONTRACT_PRICE = "MARK_PRICE", "CONTRACT_PRICE"
GTE_GTC = "GTE_GTC"  # the time in force Binance gives closePosition orders
CROSSED, ISOLATED = "CROSSED", "ISOLATED"
ZERO = Decimal(0)


def money(x: Decimal) -> Decimal:
    """Round to 1e-8 USDT, half-up (commissions and realised PnL)."""
    return x.quantize(MONEY, rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------------------- values
@dataclass(frozen=True, kw_only=True)
class SymbolRules:
    """A symbol's order filters, read from its exchangeInfo entry (so both always agree)."""

    symbol: str
    price_decimals: int
    qty_decimals: int
    tick: Decimal
    min_price: Decimal
    max_price: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal  # LOT_SIZE (limit orders)
    market_max_qty: Decimal  # MARKET_LOT_SIZE
    min_notional: Decimal
    multiplier_up: Decimal  # PERCENT_PRICE: a limit buy at most mark * up ...
    multiplier_down: Decimal  # ... a limit sell at least mark * down
    trigger_protect: Decimal = Decimal("0.05")  # priceProtect: max |mark - last| / mark at a trigger

    @staticmethod
    def from_info(info: Mapping[str, Any]) -> SymbolRules:
        f = {x["filterType"]: x for x in info["filters"]}
        return SymbolRules(
            symbol=info["symbol"], price_decimals=info["pricePrecision"],
            qty_decimals=info["quantityPrecision"],
            tick=Decimal(f["PRICE_FILTER"]["tickSize"]), min_price=Decimal(f["PRICE_FILTER"]["minPrice"]),
            max_price=Decimal(f["PRICE_FILTER"]["maxPrice"]), step=Decimal(f["LOT_SIZE"]["stepSize"]),
            min_qty=Decimal(f["LOT_SIZE"]["minQty"]), max_qty=Decimal(f["LOT_SIZE"]["maxQty"]),
            market_max_qty=Decimal(f["MARKET_LOT_SIZE"]["maxQty"]),
            min_notional=Decimal(f["MIN_NOTIONAL"]["notional"]),
            multiplier_up=Decimal(f["PERCENT_PRICE"]["multiplierUp"]),
            multiplier_down=Decimal(f["PERCENT_PRICE"]["multiplierDown"]),
            trigger_protect=Decimal(info.get("triggerProtect", "0.05")))

    def entry_quantum(self) -> Decimal:
        return Decimal(1).scaleb(-(self.price_decimals + ENTRY_EXTRA_DECIMALS))


@dataclass(frozen=True, kw_only=True)
class Quote:
    """What the market shows now: the book ticker and the last trade."""

    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    last: Decimal | None = None
    last_trade_id: int = 0

    @property
    def mark(self) -> Decimal:
        """The sim's mark price: the book mid (as the mark price stream reports it)."""
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, kw_only=True)
class Order:
    order_id: int
    client_id: str
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT
    tif: str  # GTC | IOC | FOK | GTX (a MARKET order reports GTC, as Binance does)
    price: Decimal  # 0 for MARKET
    orig_qty: Decimal
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = NEW
    reduce_only: bool = False
    time_ms: int
    update_ms: int
    after_trade_id: int = 0  # the last market trade when it was placed (fills only on later ones)
    # an order placed by a triggered algo order points back at it (as Binance's does)
    orig_type: str = ""  # the algo order's type (STOP_MARKET, ...); "" = ``type``
    stop_price: Decimal = ZERO  # the algo order's trigger price
    working_type: str = CONTRACT_PRICE
    price_protect: bool = False
    close_position: bool = False

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO


@dataclass(frozen=True, kw_only=True)
class Fill:
    """One trade of ours (``/fapi/v1/userTrades``)."""

    trade_id: int
    order_id: int
    client_id: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    realized_pnl: Decimal
    commission: Decimal
    maker: bool
    time_ms: int

    @property
    def quote_qty(self) -> Decimal:
        return self.price * self.qty


@dataclass(frozen=True, kw_only=True)
class Position:
    symbol: str
    qty: Decimal  # signed: > 0 long, < 0 short
    entry_price: Decimal  # 0 when flat
    update_ms: int
    cum_realized: Decimal = ZERO  # pre-fee PnL realised in this symbol so far (ACCOUNT_UPDATE ``cr``)


@dataclass(frozen=True, kw_only=True)
class AlgoOrder:
    """A conditional order held by the Algo Service until its trigger (``algo``)."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str  # BUY | SELL
    type: str  # one of ALGO_TYPES
    tif: str  # GTC | IOC | FOK | GTX, GTE_GTC with closePosition
    qty: Decimal  # 0 with closePosition (the position's size is taken at the trigger)
    price: Decimal  # the limit of STOP / TAKE_PROFIT; 0 for the market types
    trigger_price: Decimal  # 0 for TRAILING_STOP_MARKET
    working_type: str  # MARK_PRICE | CONTRACT_PRICE: the price the trigger watches
    price_protect: bool
    close_position: bool
    reduce_only: bool  # true with closePosition, as Binance reports it
    activate_price: Decimal = ZERO  # TRAILING_STOP_MARKET only
    callback_rate: Decimal = ZERO  # TRAILING_STOP_MARKET only, percent (1 = 1 %)
    stp: str = "NONE"  # selfTradePreventionMode as sent (the sim has one account: no self-trade)
    status: str = NEW
    create_ms: int
    update_ms: int
    trigger_ms: int = 0
    actual_order_id: int | None = None  # the order placed when it triggered
    reason: str = ""  # why REJECTED / EXPIRED (ALGO_UPDATE ``rm``)
    extreme: Decimal = ZERO  # TRAILING: highest (SELL) / lowest (BUY) price seen since placed
    activated: bool = False  # TRAILING: the extreme has reached the activation price (``ia``)

    @property
    def is_open(self) -> bool:
        return self.status in ALGO_OPEN_STATUSES


@dataclass(frozen=True, kw_only=True)
class Income:
    """One stored income row (``/fapi/v1/income``): the sim stores FUNDING_FEE rows; the
    REALIZED_PNL and COMMISSION rows are derived from the fills when asked (``private_rest``)."""

    tran_id: int
    symbol: str
    income_type: str  # FUNDING_FEE
    income: Decimal  # signed USDT, 1e-8: > 0 received, < 0 paid
    time_ms: int


@dataclass(frozen=True, kw_only=True)
class FundingRecord:
    """One funding settlement of one symbol (``/fapi/v1/fundingRate``)."""

    symbol: str
    rate: Decimal
    time_ms: int
    mark: Decimal


@dataclass(frozen=True, kw_only=True)
class Account:
    wallet: Decimal
    positions: Mapping[str, Position] = field(default_factory=dict)
    leverage: Mapping[str, int] = field(default_factory=dict)  # absent = DEFAULT_LEVERAGE
    margin_type: Mapping[str, str] = field(default_factory=dict)  # absent = CROSSED
    orders: Mapping[int, Order] = field(default_factory=dict)  # open and (bounded) history, by id
    open_ids: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # resting orders per symbol
    client_ids: Mapping[str, int] = field(default_factory=dict)  # clientOrderId -> latest order id
    fills: tuple[Fill, ...] = ()
    next_order_id: int = FIRST_ORDER_ID
    next_trade_id: int = FIRST_TRADE_ID
    fills_total: int = 0  # fills ever executed (``fills`` keeps the last MAX_FILLS)
    version: int = 0  # +1 per change: the state writer saves each version once
    update_ms: int = 0
    algos: Mapping[int, AlgoOrder] = field(default_factory=dict)  # open and (bounded) history
    open_algo_ids: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # NEW/TRIGGERED per symbol
    client_algo_ids: Mapping[str, int] = field(default_factory=dict)  # clientAlgoId -> latest algo id
    next_algo_id: int = FIRST_ALGO_ID
    incomes: tuple[Income, ...] = ()  # FUNDING_FEE rows, oldest first (the last MAX_INCOMES)
    funding: tuple[FundingRecord, ...] = ()  # the funding series, oldest first (last MAX_FUNDING_RECORDS)
    funding_ms: int = 0  # the last 8-hourly funding time settled (0: none looked at yet)
    next_tran_id: int = FIRST_TRAN_ID

    def position(self, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(symbol=symbol, qty=ZERO, entry_price=ZERO, update_ms=0)

    def leverage_of(self, symbol: str) -> int:
        return self.leverage.get(symbol, DEFAULT_LEVERAGE)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        syms = [symbol] if symbol is not None else list(self.open_ids)
        return [self.orders[i] for s in syms for i in self.open_ids.get(s, ())]

    def order_by_client_id(self, client_id: str) -> Order | None:
        oid = self.client_ids.get(client_id)
        return self.orders.get(oid) if oid is not None else None

    def open_algos(self, symbol: str | None = None) -> list[AlgoOrder]:
        syms = [symbol] if symbol is not None else list(self.open_algo_ids)
        return [self.algos[i] for s in syms for i in self.open_algo_ids.get(s, ())]

    def algo_by_client_id(self, client_algo_id: str) -> AlgoOrder | None:
        aid = self.client_algo_ids.get(client_algo_id)
        return self.algos.get(aid) if aid is not None else None


def new_account(wallet: Decimal = START_WALLET) -> Account:
    return Account(wallet=wallet)


# ---------------------------------------------------------------------------- margin views
def bracket_for(notional: Decimal) -> tuple[int, int, int, int, Decimal, Decimal]:
    for b in BRACKETS:
        if notional < b[3]:
            return b
    return BRACKETS[-1]


def maint_margin(notional: Decimal) -> Decimal:
    b = bracket_for(notional)
    return max(ZERO, notional * b[4] - b[5])


def unrealized(pos: Position, mark: Decimal) -> Decimal:
    return pos.qty * (mark - pos.entry_price) if pos.qty else ZERO


def position_im(acc: Account, pos: Position, mark: Decimal) -> Decimal:
    return abs(pos.qty) * mark / acc.leverage_of(pos.symbol)


def order_im(acc: Account, order: Order) -> Decimal:
    """Initial margin held by a resting order (reduce-only orders hold none)."""
    if order.reduce_only:
        return ZERO
    return order.remaining * order.price / acc.leverage_of(order.symbol)


@dataclass(frozen=True, kw_only=True)
class Totals:
    """The account's cross-margin summary at the given marks (``/fapi/v3/account``)."""

    wallet: Decimal
    unrealized: Decimal
    position_im: Decimal
    order_im: Decimal
    maint: Decimal

    @property
    def margin_balance(self) -> Decimal:
        return self.wallet + self.unrealized

    @property
    def initial_margin(self) -> Decimal:
        return self.position_im + self.order_im

    @property
    def available(self) -> Decimal:
        return self.margin_balance - self.initial_margin


def mark_of(pos: Position, marks: Mapping[str, Decimal]) -> Decimal:
    """A position's mark: the market's, else its own entry (no price seen yet)."""
    return marks.get(pos.symbol, pos.entry_price)


def totals(acc: Account, marks: Mapping[str, Decimal]) -> Totals:
    upnl = pim = mm = ZERO
    for pos in acc.positions.values():
        if pos.qty:
            m = mark_of(pos, marks)
            upnl += unrealized(pos, m)
            pim += position_im(acc, pos, m)
            mm += maint_margin(abs(pos.qty) * m)
    oim = sum((order_im(acc, o) for o in acc.open_orders()), ZERO)
    return Totals(wallet=acc.wallet, unrealized=upnl, position_im=pim, order_im=oim, maint=mm)


def liquidation_price(acc: Account, pos: Position, marks: Mapping[str, Decimal]) -> Decimal:
    """Where this position's loss would eat the margin balance down to maintenance margin,
    all other positions held at their marks (cross margin; an estimate, the sim never
    liquidates). 0 when flat or when no price would do it."""
    if not pos.qty:
        return ZERO
    t = totals(acc, marks)
    m = mark_of(pos, marks)
    rest = t.margin_balance - unrealized(pos, m)  # balance not counting this position's PnL
    q = abs(pos.qty)
    b = bracket_for(q * m)
    if pos.qty > 0:  # rest + q (P - E) = q P mmr - cum
        p = (q * pos.entry_price - rest - b[5]) / (q * (1 - b[4]))
    else:  # rest + q (E - P) = q P mmr - cum
        p = (rest + q * pos.entry_price + b[5]) / (q * (1 + b[4]))
    return max(ZERO, p)


# ---------------------------------------------------------------------------- JSON state
def _d(x: Decimal) -> str:
    return format(x, "f")


def _order_json(o: Order) -> dict[str, Any]:
    out = {"orderId": o.order_id, "clientOrderId": o.client_id, "symbol": o.symbol, "side": o.side,
           "type": o.type, "timeInForce": o.tif, "price": _d(o.price), "origQty": _d(o.orig_qty),
           "executedQty": _d(o.executed_qty), "cumQuote": _d(o.cum_quote), "status": o.status,
           "reduceOnly": o.reduce_only, "time": o.time_ms, "updateTime": o.update_ms,
           "afterTradeId": o.after_trade_id}
    if o.orig_type:  # placed by an algo order
        out.update(origType=o.orig_type, stopPrice=_d(o.stop_price), workingType=o.working_type,
                   priceProtect=o.price_protect, closePosition=o.close_position)
    return out


def _algo_json(a: AlgoOrder) -> dict[str, Any]:
    return {"algoId": a.algo_id, "clientAlgoId": a.client_algo_id, "symbol": a.symbol, "side": a.side,
            "type": a.type, "timeInForce": a.tif, "quantity": _d(a.qty), "price": _d(a.price),
            "triggerPrice": _d(a.trigger_price), "workingType": a.working_type,
            "priceProtect": a.price_protect, "closePosition": a.close_position, "reduceOnly": a.reduce_only,
            "activatePrice": _d(a.activate_price), "callbackRate": _d(a.callback_rate), "stp": a.stp,
            "status": a.status, "createTime": a.create_ms, "updateTime": a.update_ms,
            "triggerTime": a.trigger_ms, "actualOrderId": a.actual_order_id, "reason": a.reason,
            "extreme": _d(a.extreme), "activated": a.activated}


def _algo_from(a: Mapping[str, Any]) -> AlgoOrder:
    aid = a["actualOrderId"]
    return AlgoOrder(
        algo_id=int(a["algoId"]), client_algo_id=a["clientAlgoId"], symbol=a["symbol"], side=a["side"],
        type=a["type"], tif=a["timeInForce"], qty=Decimal(a["quantity"]), price=Decimal(a["price"]),
        trigger_price=Decimal(a["triggerPrice"]), working_type=a["workingType"],
        price_protect=bool(a["priceProtect"]), close_position=bool(a["closePosition"]),
        reduce_only=bool(a["reduceOnly"]), activate_price=Decimal(a["activatePrice"]),
        callback_rate=Decimal(a["callbackRate"]), stp=a["stp"], status=a["status"],
        create_ms=int(a["createTime"]), update_ms=int(a["updateTime"]), trigger_ms=int(a["triggerTime"]),
        actual_order_id=int(aid) if aid is not None else None, reason=a["reason"],
        extreme=Decimal(a["extreme"]), activated=bool(a["activated"]))


def _fill_json(f: Fill) -> dict[str, Any]:
    return {"id": f.trade_id, "orderId": f.order_id, "clientOrderId": f.client_id, "symbol": f.symbol,
            "side": f.side, "price": _d(f.price), "qty": _d(f.qty), "realizedPnl": _d(f.realized_pnl),
            "commission": _d(f.commission), "maker": f.maker, "time": f.time_ms}


def to_json(acc: Account) -> dict[str, Any]:
    """The whole account as JSON-ready values (decimals as strings): the state file."""
    return {
        "schema": STATE_SCHEMA,
        "wallet": _d(acc.wallet),
        "positions": [{"symbol": p.symbol, "qty": _d(p.qty), "entryPrice": _d(p.entry_price),
                       "updateTime": p.update_ms, "cumRealized": _d(p.cum_realized)}
                      for p in acc.positions.values()],
        "leverage": dict(acc.leverage),
        "marginType": dict(acc.margin_type),
        "orders": [_order_json(o) for o in acc.orders.values()],
        "fills": [_fill_json(f) for f in acc.fills],
        "nextOrderId": acc.next_order_id,
        "nextTradeId": acc.next_trade_id,
        "fillsTotal": acc.fills_total,
        "version": acc.version,
        "updateTime": acc.update_ms,
        "algos": [_algo_json(a) for a in acc.algos.values()],
        "nextAlgoId": acc.next_algo_id,
        "incomes": [{"tranId": i.tran_id, "symbol": i.symbol, "incomeType": i.income_type,
                     "income": _d(i.income), "time": i.time_ms} for i in acc.incomes],
        "funding": [{"symbol": f.symbol, "rate": _d(f.rate), "time": f.time_ms, "mark": _d(f.mark)}
                    for f in acc.funding],
        "fundingTime": acc.funding_ms,
        "nextTranId": acc.next_tran_id,
    }


def from_json(doc: Mapping[str, Any]) -> Account:
    """Inverse of ``to_json``; raises ``DecodeError`` on a document it cannot read. A schema 1
    document (before algo orders) reads as one without any, a schema 2 one (before funding)
    as one without funding rows."""
    if not isinstance(doc, Mapping) or doc.get("schema") not in (1, 2, STATE_SCHEMA):
        raise DecodeError(f"not a sim account state (schema 1, 2 or {STATE_SCHEMA})")
    try:
        orders = {o["orderId"]: Order(
            order_id=int(o["orderId"]), client_id=o["clientOrderId"], symbol=o["symbol"], side=o["side"],
            type=o["type"], tif=o["timeInForce"], price=Decimal(o["price"]), orig_qty=Decimal(o["origQty"]),
            executed_qty=Decimal(o["executedQty"]), cum_quote=Decimal(o["cumQuote"]), status=o["status"],
            reduce_only=bool(o["reduceOnly"]), time_ms=int(o["time"]), update_ms=int(o["updateTime"]),
            after_trade_id=int(o.get("afterTradeId", 0)), orig_type=o.get("origType", ""),
            stop_price=Decimal(o.get("stopPrice", "0")), working_type=o.get("workingType", CONTRACT_PRICE),
            price_protect=bool(o.get("priceProtect", False)),
            close_position=bool(o.get("closePosition", False))) for o in doc["orders"]}
        open_ids: dict[str, tuple[int, ...]] = {}
        client_ids: dict[str, int] = {}
        for o in orders.values():  # ids ascend: the latest order wins a reused client id
            client_ids[o.client_id] = o.order_id
            if o.is_open:
                open_ids[o.symbol] = open_ids.get(o.symbol, ()) + (o.order_id,)
        fills = tuple(Fill(
            trade_id=int(f["id"]), order_id=int(f["orderId"]), client_id=f["clientOrderId"],
            symbol=f["symbol"], side=f["side"], price=Decimal(f["price"]), qty=Decimal(f["qty"]),
            realized_pnl=Decimal(f["realizedPnl"]), commission=Decimal(f["commission"]),
            maker=bool(f["maker"]), time_ms=int(f["time"])) for f in doc["fills"])
        positions = {p["symbol"]: Position(symbol=p["symbol"], qty=Decimal(p["qty"]),
                                           entry_price=Decimal(p["entryPrice"]), update_ms=int(p["updateTime"]),
                                           cum_realized=Decimal(p.get("cumRealized", "0")))
                     for p in doc["positions"]}
        algos = {int(a["algoId"]): _algo_from(a) for a in doc.get("algos", ())}
        open_algo_ids: dict[str, tuple[int, ...]] = {}
        client_algo_ids: dict[str, int] = {}
        for aid in sorted(algos):  # ids ascend: the latest algo order wins a reused client id
            a = algos[aid]
            client_algo_ids[a.client_algo_id] = aid
            if a.is_open:
                open_algo_ids[a.symbol] = open_algo_ids.get(a.symbol, ()) + (aid,)
        return Account(
            wallet=Decimal(doc["wallet"]), positions=positions,
            leverage={k: int(v) for k, v in doc["leverage"].items()},
            margin_type=dict(doc["marginType"]), orders=dict(sorted(orders.items())),
            open_ids=open_ids, client_ids=client_ids, fills=fills,
            next_order_id=int(doc["nextOrderId"]), next_trade_id=int(doc["nextTradeId"]),
            fills_total=int(doc["fillsTotal"]), version=int(doc["version"]),
            update_ms=int(doc["updateTime"]), algos=dict(sorted(algos.items())), open_algo_ids=open_algo_ids,
            client_algo_ids=client_algo_ids, next_algo_id=int(doc.get("nextAlgoId", FIRST_ALGO_ID)),
            incomes=tuple(Income(tran_id=int(i["tranId"]), symbol=i["symbol"], income_type=i["incomeType"],
                                 income=Decimal(i["income"]), time_ms=int(i["time"]))
                          for i in doc.get("incomes", ())),
            funding=tuple(FundingRecord(symbol=f["symbol"], rate=Decimal(f["rate"]), time_ms=int(f["time"]),
                                        mark=Decimal(f["mark"])) for f in doc.get("funding", ())),
            funding_ms=int(doc.get("fundingTime", 0)), next_tran_id=int(doc.get("nextTranId", FIRST_TRAN_ID)))
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # ValueError: int("x")
        raise DecodeError(f"malformed sim account state: {exc!r}") from exc
