"""A hand-written Broker for the reconciliation tests: canned answers, a call log, optional
failure and an optional gate that holds the first read until the test releases it."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Sequence

from venue.port import ExchangeFill, ExchangeOrder, ExchangePosition

D = Decimal


def ex_order(cid: str, *, eid: str = "101", symbol: str = "BTCUSDT", side: str = "BUY", status: str = "NEW",
             qty: str = "0.010", executed: str = "0", avg: str = "0", price: str = "0",
             order_type: str = "MARKET", update_ms: int = 0) -> ExchangeOrder:
    return ExchangeOrder(client_order_id=cid, exchange_order_id=eid, symbol=symbol, side=side,
                         order_type=order_type, status=status, qty=D(qty), executed_qty=D(executed),
                         avg_price=D(avg), price=D(price), update_ms=update_ms)


def ex_fill(trade_id: str, *, cid: str = "", eid: str = "101", symbol: str = "BTCUSDT", side: str = "BUY",
            qty: str = "0.003", price: str = "43210.1", fee: str = "0.05185212", time_ms: int = 0) -> ExchangeFill:
    return ExchangeFill(trade_id=trade_id, client_order_id=cid, exchange_order_id=eid, symbol=symbol, side=side,
                        qty=D(qty), price=D(price), fee=D(fee), time_ms=time_ms)


def ex_position(symbol: str, qty: str, entry: str = "0", upnl: str = "0") -> ExchangePosition:
    return ExchangePosition(symbol=symbol, qty=D(qty), entry_price=D(entry), unrealized_pnl=D(upnl))


class FakeBroker:
    """Answers the read methods from its fields; any write method fails the test."""

    name = "fake"

    def __init__(self, *, open_orders: Sequence[ExchangeOrder] = (), orders: dict | None = None,
                 positions: Sequence[ExchangePosition] = (), fills: Sequence[ExchangeFill] = (),
                 error: Exception | None = None, gate: threading.Event | None = None,
                 history: Sequence[tuple[ExchangeOrder, int]] = ()) -> None:
        self.open = list(open_orders)
        self.history = list(history)  # (order, creation ms): the order history, for all_orders
        self.orders = dict(orders or {})  # client id -> ExchangeOrder, for query
        self.pos = list(positions)
        self.trades = list(fills)
        self.error = error
        self.gate = gate
        self.entered = threading.Event()  # set when the first read starts
        self.calls: list[tuple] = []
        self.closed = False

    def _read(self, *call: object) -> None:
        self.calls.append(call)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10.0), "test never released the gate"
        if self.error is not None:
            raise self.error

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        self._read("open_orders", symbol)
        return [o for o in self.open if symbol is None or o.symbol == symbol]

    def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        self._read("query", symbol, client_order_id)
        return self.orders.get(client_order_id)

    def positions(self) -> list[ExchangePosition]:
        self._read("positions")
        return [p for p in self.pos if p.qty != 0]

    def fills(self, symbol: str, *, since_ms: int | None = None,
              exchange_order_id: str | None = None) -> list[ExchangeFill]:
        if exchange_order_id is not None:
            self._read("fills", symbol, since_ms, exchange_order_id)
        else:
            self._read("fills", symbol, since_ms)
        return [f for f in self.trades if f.symbol == symbol and (since_ms is None or f.time_ms >= since_ms)
                and (exchange_order_id is None or f.exchange_order_id == exchange_order_id)]

    def all_orders(self, symbol: str, *, since_ms: int, until_ms: int) -> list[ExchangeOrder]:
        self._read("all_orders", symbol, since_ms)
        return [o for o, t in self.history if o.symbol == symbol and since_ms <= t <= until_ms]

    def close(self) -> None:
        self.closed = True

    def _write(self, *_: object, **__: object) -> None:
        raise AssertionError("reconciliation must only read from the exchange")

    start = submit = cancel = balance = server_time_ms = _write
