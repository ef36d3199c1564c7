"""Shared values for the trading core's tests: one BTCUSDT-like symbol and a book."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from services.exchange_sim.account import Account, Quote, SymbolRules
from services.exchange_sim.rest import RestError
from services.exchange_sim.trading import OrderRequest, Placed, place

T0 = 1_800_000_000_000
RULES = SymbolRules(symbol="BTCUSDT", price_decimals=2, qty_decimals=3, tick=D("0.10"), min_price=D("0.1"),
                    max_price=D("1236006"), step=D("0.001"), min_qty=D("0.001"), max_qty=D("1000"),
                    market_max_qty=D("120"), min_notional=D("100"), multiplier_up=D("1.0500"),
                    multiplier_down=D("0.9500"))
BOOK = Quote(bid=D("60000.00"), bid_qty=D("1.500"), ask=D("60000.10"), ask_qty=D("0.400"),
             last=D("60000.00"), last_trade_id=500)


def mkt(side: str, qty: str, **kw) -> OrderRequest:
    return OrderRequest(symbol="BTCUSDT", side=side, type="MARKET", qty=D(qty), **kw)


def lim(side: str, qty: str, price: str, tif: str = "GTC", **kw) -> OrderRequest:
    return OrderRequest(symbol="BTCUSDT", side=side, type="LIMIT", qty=D(qty), price=D(price), tif=tif, **kw)


def go(acc: Account, req: OrderRequest, quote: Quote = BOOK, now: int = T0) -> Placed:
    return place(acc, req, RULES, quote, {"BTCUSDT": quote.mark}, now)


def refused(acc: Account, req: OrderRequest, quote: Quote = BOOK) -> tuple[int, str]:
    with pytest.raises(RestError) as e:
        go(acc, req, quote)
    return e.value.code, e.value.msg


def fills_of(acc: Account) -> list[tuple[int, str, str, str, str, str, bool]]:
    return [(f.trade_id, f.side, str(f.price), str(f.qty), str(f.commission), str(f.realized_pnl), f.maker)
            for f in acc.fills]
