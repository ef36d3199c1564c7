"""The journal's typed rows: what ``common.journal_store``'s reader answers (frozen
dataclasses and named tuples of plain values, as SQLite holds them). No SQL here: the store
builds them; readers import them from the store, which names them too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderRow:
    """One row of ``orders``, with the exchange trade ids of its journaled fills."""

    client_order_id: str
    exchange_order_id: str  # "" until the exchange has named it
    symbol: str
    side: str
    order_type: str
    qty: float
    price: float
    reduce_only: bool
    status: str  # venue.orders.OrderState
    filled_qty: float
    avg_price: float
    signal_id: str
    created_ns: int
    updated_ns: int
    fill_trade_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True, slots=True)
class EntryPlanRow:
    """An entry order with the plan of its signal (``orders`` joined with ``signals``)."""

    client_order_id: str
    symbol: str
    side: str
    created_ns: int
    filled_qty: float
    avg_price: float
    signal_id: str
    stop: float
    target: float
    confidence: float
    features: str  # the model's features as journaled: a JSON object


@dataclass(frozen=True, kw_only=True, slots=True)
class AlgoRow:
    """One row of ``algo_orders`` (a protective order held by the exchange)."""

    client_algo_id: str
    algo_id: str
    symbol: str
    side: str
    order_type: str
    trigger_price: str  # exact decimal text
    working_type: str
    close_position: bool
    trade_id: str
    role: str
    state: str  # venue.algo_orders.AlgoState
    actual_order_id: str
    sent_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SymbolRow:
    """One row of ``symbols``: the trading rules the feed published."""

    symbol: str
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float
    price_precision: int
    quantity_precision: int
    max_qty: float = 0.0
    min_price: float = 0.0
    max_price: float = 0.0
    market_step_size: float = 0.0
    market_max_qty: float = 0.0
    percent_up: float = 0.0
    percent_down: float = 0.0
    base_asset: str = ""
    quote_asset: str = ""
    margin_asset: str = ""
    contract_type: str = ""




class CandleRow(NamedTuple):
    """One row of ``candles`` (its interval is the one asked for). A named tuple, not a
    dataclass: a restarted brain reads tens of thousands of them."""

    symbol: str
    open_ms: int
    close_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    buy_volume: float


# what the dashboard's page is made of: plain rows ({column: value}), one moment
@dataclass(frozen=True, kw_only=True)
class PageLimits:
    orders: int
    fills: int
    signals: int
    rejects: int
    trades: int
    controls: int


@dataclass(frozen=True, kw_only=True)
class PageRows:
    positions: list[dict[str, Any]] = field(default_factory=list)  # open ones, with their plan and protection
    orders: list[dict[str, Any]] = field(default_factory=list)  # newest first
    fills: list[dict[str, Any]] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    rejects_by_reason: list[tuple[str, int]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)  # oldest first (the curve's order)
    controls: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    risk_state: dict[str, Any] | None = None
    control_state: dict[str, Any] | None = None


class LocalOrderRow(NamedTuple):
    """An order as reconciliation compares it (exchange id '' when none yet)."""

    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: str
    status: str
    qty: float
    filled_qty: float
    avg_price: float
    updated_ns: int


class PositionRow(NamedTuple):
    symbol: str
    qty: float
    entry_price: float
    realized_pnl: float
    updated_ns: int
