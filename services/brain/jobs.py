"""The jobs the execution shell hands the dispatcher, one class each (pure values).

Each job the shell submits carries one of these as its tag; its completion comes back with
the same value, and ``Execution._completion`` matches on the class to know what the answer
is. A field says what the answer needs that the result does not carry (which order, which
attempt, when it was asked: the state machines judge an answer by the time of its question).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Startup:
    """Filters, symbol set-up, positions, balance, executed quantities: the start-up read."""


@dataclass(frozen=True, slots=True)
class Balance:
    """The account's balance (equity: the kill switch watches it)."""


@dataclass(frozen=True, slots=True)
class Setup:
    """Margin type and leverage set for ``symbols`` (and their leverage brackets read)."""

    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AlgoAudit:
    """The exchange's open protective orders, asked at ``at_ms``."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class Positions:
    """The exchange's positions, asked at ``at_ms``."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class SymbolFills:
    """A closed-while-away trade's protective orders, then the symbol's fills since its open."""

    symbol: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class JournalAudit:
    """Which orders sent before they were journaled the database holds, asked at ``at_ms``."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class Submit:
    """An order sent (attempt ``attempt``) at ``sent_ms``."""

    client_order_id: str
    attempt: int
    sent_ms: int


@dataclass(frozen=True, slots=True)
class Cancel:
    client_order_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Query:
    client_order_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Fills:
    """The fills of one exchange order."""

    client_order_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class PlaceAlgo:
    """A protective order sent (attempt ``attempt``) at ``at_ms``."""

    client_algo_id: str
    attempt: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class CancelAlgo:
    client_algo_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class QueryAlgo:
    client_algo_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class FundingIncome:
    """Funding income rows since the oldest open trade (``funding_feed``), asked at ``at_ms``."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class StreamResync:
    """The positions read of a user-stream resync (``user_feed``), asked at ``sent_ms``."""

    sent_ms: int
    reason: str
    connection: int


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The positions read after reconciliation repaired ``symbols`` (``wire.Reconciled``),
    asked at ``sent_ms``; ``adopted_orders``: our order ids it adopted."""

    sent_ms: int
    symbols: tuple[str, ...]
    adopted_orders: tuple[str, ...]
    found_by: str = "reconciliation"  # or REMAINDER: the read after our exit closed a trade


OrderJob = Submit | Cancel | Query | Fills
AlgoJob = PlaceAlgo | CancelAlgo | QueryAlgo
