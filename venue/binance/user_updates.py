"""Decoded user data stream events -> what the trader applies, in the order to apply it (pure).

The stream (``user_stream`` decodes it, ``user_stream_client`` carries it) is the exchange's own
account of our orders, protective orders and positions. ``plan(batch)`` turns one drained batch
of events into steps for the execution shell, which hands each to the trader function named:

    event                            step                                 trader function
    ORDER_TRADE_UPDATE x=TRADE       Fill(cid, ExchangeFill)              on_fill (by trade id)
                                     then OrderStatus(cid, X, i, z)       on_order_event(QueryResult)
    ORDER_TRADE_UPDATE, other x      OrderStatus(cid, X, i, z)            on_order_event(QueryResult)
    ALGO_UPDATE                      AlgoStatus(caid, ao.Update(X, aid, ai))  on_algo_event
    ACCOUNT_UPDATE                   Position(symbol, net qty, T) for each   on_exchange_position
                                     symbol it lists, held back past the
                                     ORDER_TRADE_UPDATEs that follow it
                                     (the last per symbol wins)
    MARGIN_CALL                      MarginWarning(symbols)               (logged as a warning)
    Resync (the client's)            Resync, where it came                (REST re-read)
    TRADE_LITE, listenKeyExpired,    nothing (the client counts them)
    anything unrecognised

Why these rules:

- A fill is the fact; the status after it (``z``, the cumulative quantity) is the check: when it
  says more was executed than the fills we hold, the order machine asks for the missing trades
  by REST (``FetchTrades``). Applied in that order, a complete stream never triggers a REST call.
- ``TRADE_LITE`` is faster but carries no commission: applying it first would record the trade
  without its fee, and the full ``ORDER_TRADE_UPDATE`` would then be a duplicate by trade id.
- A position waits for the order updates right behind it because an exit's
  ``ACCOUNT_UPDATE`` comes before its trade (the balance change is sent first): applied in
  arrival order, our own exit would look like a close behind our back until its fill is read
  (a REST fetch of the symbol's fills, for nothing). It waits no further: the ``ALGO_UPDATE``
  that ends a ``closePosition`` stop when its position closes (EXPIRED) must find the trade
  already flat, or the trader would re-arm the stop of a position that no longer exists.
- A position is the net of every side listed for the symbol (one-way mode lists ``BOTH``
  only; the documented hedge-mode example lists ``BOTH`` 0 next to ``LONG`` 20: flat only
  when all are). A ``FUNDING_FEE`` update lists balances and no positions: no step.
- Ids are strings, quantities and money exact ``Decimal``s, as the decoder made them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Container, Iterable, Union

from venue import algo_orders as ao
from venue import orders as om
from venue.binance import user_stream as us
from venue.port import ExchangeFill

@dataclass(frozen=True, kw_only=True)
class Resync:
    """The stream may have missed something (a new connection, an expired key, a full queue):
    re-read positions, open orders and protective orders by REST."""

    reason: str  # first | closed | aborted | silent | rollover | listen_key_expired | key_lost | queue_full
    connection: int = 0  # the connection number it opens (0: not a connection)


@dataclass(frozen=True, kw_only=True)
class Fill:
    client_order_id: str
    fill: ExchangeFill


@dataclass(frozen=True, kw_only=True)
class OrderStatus:
    client_order_id: str
    symbol: str
    status: str  # Binance order status (X)
    exchange_order_id: str
    executed_qty: Decimal  # z: cumulative

    def query_result(self, at_ms: int) -> om.QueryResult:
        """As the order machine reads a query answer (found, by its client id)."""
        return om.QueryResult(at_ms=at_ms, found=True, status=self.status, exchange_order_id=self.exchange_order_id,
                              executed_qty=self.executed_qty)


@dataclass(frozen=True, kw_only=True)
class AlgoStatus:
    client_algo_id: str
    symbol: str
    update: ao.Update


@dataclass(frozen=True, kw_only=True)
class Position:
    symbol: str
    qty: Decimal  # signed net quantity
    transaction_ms: int  # the exchange's T of the update (0: unknown)
    reason: str  # ACCOUNT_UPDATE m: ORDER, ADJUSTMENT, INSURANCE_CLEAR, ...


@dataclass(frozen=True, kw_only=True)
class MarginWarning:
    symbols: tuple[str, ...]
    cross_wallet: Decimal


Step = Union[Resync, Fill, OrderStatus, AlgoStatus, Position, MarginWarning]


# ---------------------------------------------------------------------------- one event
def fill_of(u: us.OrderUpdate) -> ExchangeFill | None:
    """The trade an ``ORDER_TRADE_UPDATE`` reports (None when it reports none)."""
    if not u.is_trade or u.trade_id == "0" or u.last_price <= 0:
        return None
    return ExchangeFill(trade_id=u.trade_id, client_order_id=u.client_order_id,
                        exchange_order_id=u.exchange_order_id, symbol=u.symbol, side=u.side, qty=u.last_qty,
                        price=u.last_price, fee=u.fee, fee_asset=u.fee_asset,
                        liquidity="maker" if u.maker else "taker", realized_pnl=u.realized_pnl,
                        time_ms=u.transaction_ms)


def status_of(u: us.OrderUpdate) -> OrderStatus:
    return OrderStatus(client_order_id=u.client_order_id, symbol=u.symbol, status=u.status,
                       exchange_order_id=u.exchange_order_id, executed_qty=u.cum_qty)


def algo_status_of(a: us.AlgoUpdate) -> AlgoStatus:
    return AlgoStatus(client_algo_id=a.client_algo_id, symbol=a.symbol,
                      update=ao.Update(status=a.status, algo_id=a.algo_id, actual_order_id=a.actual_order_id))


def positions_of(a: us.AccountUpdate) -> dict[str, Decimal]:
    """Net signed quantity per symbol the update lists (none for a funding fee)."""
    out: dict[str, Decimal] = {}
    for p in a.positions:
        out[p.symbol] = out.get(p.symbol, Decimal(0)) + p.qty
    return out


# ---------------------------------------------------------------------------- a batch
def plan(events: Iterable[object]) -> list[Step]:
    """The steps of one drained batch, in the order to apply them (module docstring).
    Trade reports, unrecognised events and anything else neither release nor move a held-back
    position."""
    steps: list[Step] = []
    positions: dict[str, Position] = {}
    for e in events:
        if positions and isinstance(e, (us.AlgoUpdate, us.MarginCall, Resync)):
            steps += positions.values()  # held back past order updates only
            positions = {}
        if isinstance(e, us.OrderUpdate):
            f = fill_of(e)
            if f is not None:
                steps.append(Fill(client_order_id=e.client_order_id, fill=f))
            steps.append(status_of(e))
        elif isinstance(e, us.AlgoUpdate):
            steps.append(algo_status_of(e))
        elif isinstance(e, us.AccountUpdate):
            for sym, qty in positions_of(e).items():
                positions.pop(sym, None)  # re-inserted: the symbols keep the order of their last news
                positions[sym] = Position(symbol=sym, qty=qty, transaction_ms=e.transaction_ms, reason=e.reason)
        elif isinstance(e, us.MarginCall):
            steps.append(MarginWarning(symbols=tuple(p.symbol for p in e.positions), cross_wallet=e.cross_wallet))
        elif isinstance(e, Resync):
            steps.append(e)
        # TradeLite, ListenKeyExpired, Unrecognised and anything else: no step
    return [*steps, *positions.values()]


def behind(entry_trade_ids: Iterable[str], seen: Container[str]) -> bool:
    """Whether the stream is behind the trade a position update would act on: some fill of its
    entry (applied from a REST answer) has not come through the stream yet. The stream is in
    order, so a position it reports before those fills is older than the trade (the symbol's
    previous trade closing) and must not close this one."""
    return any(tid not in seen for tid in entry_trade_ids)
