"""The execution port: what the brain (and the orchestrator's reconciliation) asks of an exchange.

Two adapters implement ``Broker``: ``paper.PaperBroker`` (simulated fills against the latest
book ticker, in-process) and ``ccxt_broker.CcxtBroker`` (ccxt's binanceusdm: the real
exchange, its testnet, or ``exchange_sim`` on loopback in the demo). Tests hand in simple
fakes that satisfy the same Protocol.

Every value here is exact: quantities and prices are ``Decimal`` (read from the exchange's
decimal strings, never through float), ids are strings (Binance order ids exceed 2**53).

Errors (``common.errors``), by what the caller must do next:

- ``TransientError``: nothing happened at the exchange; retry later (rate limit with its
  back-off, 5xx before acceptance, -1021 after a server-time resync).
- ``DefinitiveError``: refused, will be refused again (-2019 insufficient margin, a filter
  violation, unknown symbol). For ``submit`` this means the order does not exist.
- ``AmbiguousError``: the outcome is unknown (a timeout or a dropped connection after the
  request left): query by client order id before anything else. Never re-send blindly.

``query`` returns ``None`` when the exchange says it has no order with that client id
(Binance -2013); any other failure raises as above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, Sequence

# Binance order statuses, as the exchange spells them (``orders.EXCHANGE_STATUS`` maps them)
LIVE_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
FINAL_STATUSES = frozenset({"FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"})


@dataclass(frozen=True, kw_only=True)
class OrderSpec:
    """One order as the brain wants it sent (already rounded onto the exchange grid)."""

    client_order_id: str  # newClientOrderId: made and journaled locally before the send
    symbol: str  # exchange id, e.g. BTCUSDT
    side: str  # BUY | SELL
    order_type: str  # MARKET | LIMIT
    qty: Decimal
    price: Decimal = Decimal(0)  # 0 for MARKET
    reduce_only: bool = False
    # LIMIT only: GTC rests, IOC takes what it can at once and expires the rest, GTX (post-only)
    # is refused (-5022) if any of it would take liquidity; ignored for MARKET
    time_in_force: str = "GTC"


@dataclass(frozen=True, kw_only=True)
class ExchangeOrder:
    """The exchange's view of one order."""

    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: str
    order_type: str
    status: str  # NEW | PARTIALLY_FILLED | FILLED | CANCELED | EXPIRED | REJECTED ...
    qty: Decimal
    executed_qty: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)  # 0 before any fill
    price: Decimal = Decimal(0)
    reduce_only: bool = False
    update_ms: int = 0


@dataclass(frozen=True, kw_only=True)
class ExchangeFill:
    """One execution (Binance userTrades row)."""

    trade_id: str  # unique per symbol
    client_order_id: str  # "" when the exchange row does not carry it (the caller maps by order id)
    exchange_order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)
    fee_asset: str = "USDT"
    liquidity: str = "taker"  # maker | taker
    realized_pnl: Decimal = Decimal(0)
    time_ms: int = 0


@dataclass(frozen=True, kw_only=True)
class ExchangeIncome:
    """One row of the account's income history (Binance ``/fapi/v1/income``)."""

    tran_id: str  # unique within an income type
    symbol: str  # "" for rows of no symbol (transfers)
    income_type: str  # FUNDING_FEE | REALIZED_PNL | COMMISSION | ...
    amount: Decimal  # signed: > 0 received, < 0 paid
    asset: str = "USDT"
    time_ms: int = 0
    trade_id: str = ""


@dataclass(frozen=True, kw_only=True)
class SubmitResult:
    """What ``submit`` learned: the order as acknowledged, and any fills already known.

    A MARKET order usually comes back FILLED; its fills (with trade ids) are in ``fills``
    when the adapter could fetch them at once, else the caller fetches them with ``fills``.
    """

    order: ExchangeOrder
    fills: tuple[ExchangeFill, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AlgoSpec:
    """One conditional order for the exchange's Algo Service (already on the price grid).

    ``close_position`` closes whatever position the symbol has when it triggers (Binance's
    Close-All: no quantity); a trailing stop takes ``qty`` with ``callback_rate`` (percent)
    and an optional ``activation_price`` instead of a trigger price."""

    client_algo_id: str  # made and journaled locally before the send
    symbol: str
    side: str  # the closing side: SELL protects a long
    order_type: str  # STOP_MARKET | TAKE_PROFIT_MARKET | TRAILING_STOP_MARKET
    trigger_price: Decimal = Decimal(0)
    working_type: str = "MARK_PRICE"  # MARK_PRICE | CONTRACT_PRICE
    close_position: bool = True
    qty: Decimal = Decimal(0)
    price_protect: bool = True
    callback_rate: Decimal = Decimal(0)
    activation_price: Decimal = Decimal(0)


@dataclass(frozen=True, kw_only=True)
class ExchangeAlgoOrder:
    """The exchange's view of one conditional order."""

    client_algo_id: str
    algo_id: str
    symbol: str
    side: str
    order_type: str
    status: str  # Binance algo status: NEW | TRIGGERING | TRIGGERED | FINISHED | CANCELED | REJECTED | EXPIRED
    trigger_price: Decimal = Decimal(0)
    close_position: bool = False
    qty: Decimal = Decimal(0)
    actual_order_id: str = ""  # the matching-engine order it became, once triggered
    update_ms: int = 0


@dataclass(frozen=True, kw_only=True)
class ExchangePosition:
    symbol: str
    qty: Decimal  # signed: > 0 long, < 0 short (one-way mode)
    entry_price: Decimal = Decimal(0)
    mark_price: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    leverage: int = 0


@dataclass(frozen=True, kw_only=True)
class Bracket:
    """One notional tier of a symbol's leverage brackets (``/fapi/v1/leverageBracket``): the
    maintenance margin of a position of notional N in it is ``N * maint_margin_ratio - cum``."""

    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal
    initial_leverage: int


@dataclass(frozen=True, kw_only=True)
class Balance:
    asset: str = "USDT"
    wallet: Decimal = Decimal(0)  # realised: deposits + realised PnL - fees
    equity: Decimal = Decimal(0)  # wallet + unrealised PnL (Binance marginBalance)
    available: Decimal = Decimal(0)


@dataclass(frozen=True, kw_only=True)
class AccountSetup:
    """What ``start`` checked and set: one-way mode, margin type, leverage per symbol."""

    one_way: bool = True
    margin_type: str = "CROSSED"  # CROSSED | ISOLATED
    leverage: dict[str, int] = field(default_factory=dict)
    server_time_offset_ms: int = 0  # server - local, as measured at start


class Broker(Protocol):
    """The port. Calls block (adapters run them on the dispatcher's threads)."""

    name: str

    def start(self, symbols: Sequence[str]) -> AccountSetup:
        """Load markets, check (and where allowed set) one-way position mode, the margin type
        and the leverage of ``symbols``; raise ``DefinitiveError`` if the account cannot be
        made to fit (e.g. hedge mode with positions open)."""
        ...

    def submit(self, spec: OrderSpec) -> SubmitResult: ...

    def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder: ...

    def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None: ...

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]: ...

    def fills(self, symbol: str, *, since_ms: int | None = None,
              exchange_order_id: str | None = None) -> list[ExchangeFill]: ...

    def all_orders(self, symbol: str, *, since_ms: int, until_ms: int) -> list[ExchangeOrder]:
        """Every order of ``symbol`` made between ``since_ms`` and ``until_ms`` (inclusive,
        exchange time), whatever its status (open, filled, cancelled, expired), oldest first
        (Binance's ``GET /fapi/v1/allOrders``). Binance no longer lists a cancelled or expired
        order without a fill 3 days after it was made, nor any order after 90 days."""
        ...

    def positions(self) -> list[ExchangePosition]:
        """Non-zero positions only."""
        ...

    def balance(self) -> Balance: ...

    def server_time_ms(self) -> int: ...

    # conditional orders held by the exchange (Binance's Algo Service)
    def place_algo(self, spec: AlgoSpec) -> ExchangeAlgoOrder: ...

    def cancel_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder: ...

    def query_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder | None:
        """``None`` when the exchange has no algo order with that client id."""
        ...

    def open_algo_orders(self, symbol: str | None = None) -> list[ExchangeAlgoOrder]: ...

    def leverage_brackets(self, symbols: Sequence[str]) -> dict[str, tuple[Bracket, ...]]:
        """Each symbol's maintenance-margin tiers; a symbol the broker cannot say is left out."""
        ...

    def income(self, *, income_type: str, since_ms: int) -> list[ExchangeIncome]:
        """The account's income rows of ``income_type`` (FUNDING_FEE, ...) from ``since_ms`` on,
        oldest first (a broker with no such history answers none)."""
        ...

    def close(self) -> None: ...
