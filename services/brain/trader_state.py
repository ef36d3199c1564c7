"""The trader's values: its configuration, a trade's plan and progress, the whole state, the
context the shell hands in, and the actions the pure functions return (no behaviour here).

``trader`` (entries, exits, fills) and ``protection`` (the exchange-held stop and target)
both read and return these; the shell (``execution``) carries the actions out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any, Mapping, Union

from common.fastcopy import replace
from common import wire
from services.brain import risk, rotation
from venue import order_rules
from venue import algo_orders as ao
from venue import orders as om

_AVG = Context(prec=34)


@dataclass(frozen=True, kw_only=True)
class TraderConfig:
    risk: risk.RiskConfig = field(default_factory=risk.RiskConfig)
    rotation: rotation.RotationConfig = field(default_factory=rotation.RotationConfig)
    risk_per_trade_pct: float = 0.5
    exit_retry_ms: int = 2_000
    recv_window_ms: int = order_rules.DEFAULT_RECV_WINDOW_MS
    adopt_stop_pct: float = 2.0  # a position found at the exchange without a plan gets this stop
    # start-up reads the order history this far back when nothing is on record (recovery.history_since)
    recovery_lookback_ms: int = 86_400_000
    # the exchange holds a STOP_MARKET and a TAKE_PROFIT_MARKET (closePosition, mark price)
    # for every position from its first fill; the brain's own watcher stays the faster layer
    exchange_protection: bool = True
    # > 0: the target is a trailing stop (percent callback from the best price once the target
    # is reached), held by the exchange as a TRAILING_STOP_MARKET and watched locally alike
    trailing_callback_pct: float = 0.0
    # a flat exchange position with our trade still open: wait this long for the closing
    # fills (to learn the true exit price) before closing the trade at the mark
    external_close_wait_ms: int = 10_000
    leverage: int = 5  # the leverage set at the exchange (trading.leverage)
    liquidation_buffer_pct: float = 0.5
    # entries: "limit_ioc" = a LIMIT IOC at the signal's price +/- entry_slippage_bps (what cannot
    # fill within the bound at once expires, never chased); "market" = an unbounded MARKET order
    entry_order: str = "limit_ioc"
    entry_slippage_bps: float = 20.0


@dataclass(frozen=True, kw_only=True)
class Trade:
    """One position's plan and progress. Quantities are exact and unsigned; ``side`` is the
    entry's (BUY = long)."""

    trade_id: str  # the signal id
    symbol: str
    side: str
    stop: float
    target: float
    confidence: float
    features: Mapping[str, float]
    opened_ms: int
    entry_cid: str
    entry_qty: Decimal = Decimal(0)
    entry_notional: Decimal = Decimal(0)
    exit_qty: Decimal = Decimal(0)
    exit_notional: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    exit_cid: str = ""  # the exit in flight ("" = none)
    exit_cids: frozenset[str] = frozenset()  # every exit ever sent (late fills still count)
    exit_reason: str = ""  # set once an exit is wanted; stays until flat
    exits_sent: int = 0
    next_exit_ms: int = 0
    adopted: bool = False
    # protection held by the exchange: the live stop and target algo orders ("" = none)
    stop_cid: str = ""
    target_cid: str = ""
    protect_n: int = 0  # how many times protection was placed (the clientAlgoId's number)
    algo_cids: frozenset[str] = frozenset()  # every protective order ever placed for it
    protected_ms: int = 0  # when the exchange confirmed the current stop (0 = not protected)
    first_fill_ms: int = 0  # the entry's first fill: from here the position exists
    flat_at_exchange_ms: int = 0  # the exchange says flat, our fills do not (yet): closing
    funding: Decimal = Decimal(0)  # funding received (+) or paid (-) while open: the exchange's income rows
    funding_ids: frozenset[str] = frozenset()  # the tranIds of those rows (each counts once)
    signal_price: float = 0.0  # the signal's entry price, the reference of the entry's slippage (0: none)
    # a strategy moved the stop/target: the old protective order's cancel is out, the new one is
    # placed once the exchange confirms it (protection.move); roles STOP / TARGET
    replacing: frozenset[str] = frozenset()
    unprotected_from_ms: int = 0  # the stop's replace began: the gap is measured from here
    # trailing target (trading.trailing_callback_pct): the best price seen since the price reached
    # the target (0.0 = not reached yet); local only, the exchange keeps its own
    trail_extreme: float = 0.0
    # the exchange holds less of the position than this trade (a part closed behind our back):
    # the exchange's size, waiting for the closing fills (``trader_resize``; 0 = none), since when
    smaller_at_exchange: Decimal = Decimal(0)
    smaller_since_ms: int = 0
    # the exchange's signed size last reported as larger than this trade, or on the other side (0 = none)
    differs_reported: Decimal = Decimal(0)
    moved_ms: int = 0  # the last time a fill of ours changed the size (a position read sent before proves nothing)
    priced_at_mark: bool = False  # a part was closed at the mark (its fills never came): not learned from

    @property
    def position(self) -> Decimal:
        return self.entry_qty - self.exit_qty

    @property
    def direction(self) -> int:
        return 1 if self.side == "BUY" else -1

    @property
    def entry_avg(self) -> Decimal:
        return _AVG.divide(self.entry_notional, self.entry_qty) if self.entry_qty else Decimal(0)

    @property
    def exit_avg(self) -> Decimal:
        return _AVG.divide(self.exit_notional, self.exit_qty) if self.exit_qty else Decimal(0)


class IdSet(Set):
    """An immutable set of client order ids (``TraderState.used_cids``) whose ``ids | {new}`` does
    not copy every id.

    ``frozenset | {cid}`` copies the whole set: with the week of ids a restarted brain reads
    from the journal (thousands), that copy was the costliest step of an entry's decision
    (~120 us at 10,000 ids). Here the ids are a large frozen ``base`` and a small frozen
    ``recent`` part; a union copies ``recent`` only, and folds it into ``base`` once it holds
    more than about the square root of the whole (so an added id costs O(sqrt n), amortised).
    It is a ``collections.abc.Set``: ``in``, ``len``, iteration, ``|`` and comparisons with
    any set (``IdSet({"a"}) == frozenset({"a"})``) mean what they mean for a frozenset; every
    instance is immutable, an older state keeps its own ids."""

    __slots__ = ("_base", "_recent")
    _MIN_RECENT = 32

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._base: frozenset[str] = ids if type(ids) is frozenset else frozenset(ids)
        self._recent: frozenset[str] = frozenset()

    @classmethod
    def _of(cls, base: frozenset[str], recent: frozenset[str]) -> IdSet:
        new = object.__new__(cls)
        new._base, new._recent = base, recent
        return new

    def __contains__(self, x: object) -> bool:
        return x in self._recent or x in self._base

    def __iter__(self) -> Iterator[str]:
        yield from self._base
        yield from self._recent  # never in base (see __or__)

    def __len__(self) -> int:
        return len(self._base) + len(self._recent)

    def __or__(self, other: Any) -> IdSet:  # type: ignore[override]
        if not isinstance(other, (Set, tuple, list)):
            return NotImplemented  # as a frozenset: a union with a set, not with any iterable
        more = (other if isinstance(other, (set, frozenset)) else frozenset(other)) - self._base
        if not more or more <= self._recent:
            return self
        recent = self._recent | more
        if len(recent) > max(self._MIN_RECENT, math.isqrt(len(self._base))):
            return IdSet._of(self._base | recent, frozenset())
        return IdSet._of(self._base, recent)

    __ror__ = __or__

    def __hash__(self) -> int:
        return self._hash()

    def __repr__(self) -> str:
        return f"IdSet({set(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return IdSet, (frozenset(self),)


def with_id(ids: frozenset[str] | IdSet, cid: str) -> IdSet:
    """``ids`` and ``cid`` as an ``IdSet`` (a frozenset is taken as it is, once)."""
    return (ids if type(ids) is IdSet else IdSet(ids)) | (cid,)


@dataclass(frozen=True, kw_only=True)
class PendingEntry:
    signal: wire.SignalGenerated
    after_symbol: str  # the rotation's exit that must be flat first
    expires_ms: int


@dataclass(frozen=True, kw_only=True)
class TraderState:
    risk: risk.RiskState = field(default_factory=risk.RiskState)
    orders: Mapping[str, om.Order] = field(default_factory=dict)
    trades: Mapping[str, Trade] = field(default_factory=dict)  # by symbol
    pending: tuple[PendingEntry, ...] = ()
    last_action_ms: Mapping[str, int] = field(default_factory=dict)
    used_cids: frozenset[str] | IdSet = frozenset()  # an IdSet once an entry was added (its union is cheap)
    realized_pnl: Decimal = Decimal(0)  # closed trades, before fees (funding included)
    funding: Decimal = Decimal(0)  # closed trades' funding (received > 0, paid < 0)
    # closed trades' entry slippage against their signal, bps (count, sum, worst); see trader_views.slippage_stats
    slippage_closed: tuple[int, float, float] = (0, 0.0, 0.0)
    fees: Decimal = Decimal(0)
    counters: Mapping[str, int] = field(default_factory=dict)
    algos: Mapping[str, ao.AlgoOrder] = field(default_factory=dict)  # by clientAlgoId
    longest_unprotected_ms: int = 0  # the longest a position waited for its exchange-held stop


@dataclass(frozen=True, kw_only=True)
class Ctx:
    """What the shell knows now."""

    now_ms: int
    equity: float  # account equity from the exchange (NaN until known)
    market: risk.Market  # filters and latest quotes
    block_reason: str = ""  # non-empty: no new entries (recovering, reconciliation failed, ...)
    brackets: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # leverage brackets by symbol


# ---------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class NewOrder:
    """Journal ``request`` durably, then apply ``orders.Send`` (or ``CancelRequest`` if the
    journal refused) through ``on_order_event``."""

    order: om.Order
    request: wire.OrderRequest


@dataclass(frozen=True)
class NewAlgo:
    """Journal the NEW_LOCAL protective order durably, then apply ``algo_orders.Send``."""

    order: ao.AlgoOrder


@dataclass(frozen=True)
class CheckPosition:
    """Ask the exchange for this symbol's position (the answer goes to ``on_exchange_position``)."""

    symbol: str


@dataclass(frozen=True)
class CheckRemainder:
    """Our own exit closed this symbol's trade: once nothing of ours works on the symbol any
    more (its protective orders' cancels confirmed), read the exchange's position; what is left
    (a part added by hand) is adopted and protected (``trader_exchange.on_reconciled``)."""

    symbol: str


@dataclass(frozen=True)
class FetchSymbolFills:
    """Fetch the symbol's fills since ``since_ms`` (a position closed by someone else)."""

    symbol: str
    since_ms: int


@dataclass(frozen=True)
class Dispatch:
    """An exchange call for the broker: SubmitOrder, CancelOrder, QueryOrder, FetchTrades,
    SubmitAlgo, CancelAlgo, QueryAlgo, CheckPosition, CheckRemainder or FetchSymbolFills."""

    effect: Any
    symbol: str


@dataclass(frozen=True)
class Publish:
    body: Any  # a wire body; every one of them is journaled too


@dataclass(frozen=True)
class Learn:
    features: Mapping[str, float]
    outcome_r: float


@dataclass(frozen=True)
class Problem:
    kind: str
    detail: str
    client_order_id: str = ""


Action = Union[NewOrder, NewAlgo, Dispatch, Publish, Learn, Problem]
Result = tuple[TraderState, list[Action]]


def count(st: TraderState, *keys: str) -> TraderState:
    c = dict(st.counters)
    for k in keys:
        c[k] = c.get(k, 0) + 1
    return replace(st, counters=c)


def with_trade(st: TraderState, t: Trade) -> TraderState:
    return replace(st, trades={**st.trades, t.symbol: t})


def without_trade(st: TraderState, symbol: str) -> TraderState:
    return replace(st, trades={k: v for k, v in st.trades.items() if k != symbol})


def with_order(st: TraderState, o: om.Order) -> TraderState:
    return replace(st, orders={**st.orders, o.client_order_id: o})


def with_algo(st: TraderState, o: ao.AlgoOrder) -> TraderState:
    return replace(st, algos={**st.algos, o.client_algo_id: o})
