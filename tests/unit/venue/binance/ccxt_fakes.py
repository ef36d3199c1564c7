"""Hand-written fakes for the ccxt broker's tests.

``FakeExchange`` stands in for ``ccxt.binanceusdm`` at the level the broker calls it (unified
and raw endpoint methods), answering from scripted queues. ``HttpFailure`` plays an HTTP error
the way ccxt meets one: ``handle_errors`` (which the broker hooks) sees the status, headers and
body, then a ccxt exception is raised whose text may or may not carry the code.

``FakeSession`` sits one level lower, under a *real* ccxt object: it answers the HTTP requests
ccxt makes, so ccxt's own request building and error handling run for real.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from tests.conftest import USDM_DATA
from venue.filters import round_qty_down

# real exchangeInfo symbol entries (7 USDT perpetuals) as ccxt recorded them from Binance
EXCHANGE_INFO = json.loads((USDM_DATA / "exchangeInfo_symbols_ccxt.json").read_text())
_RECORDED = {e["method"]: e["httpResponse"]
             for e in json.loads((USDM_DATA / "rest_responses_subset.json").read_text())["entries"]}
_DOCS = json.loads((USDM_DATA / "binance_docs_rest_examples.json").read_text())
# /fapi/v1/userTrades rows: a real one ccxt recorded (ids and time stringified by ccxt) and
# Binance's documented example (a SHORT close with a negative realised PnL and a fee rebate)
USER_TRADES = [*_RECORDED["fetchMyTrades"], *_DOCS["userTrades"]["body"]]
# Binance's documented error texts; %s is filled by each test
ERROR_BODIES = _DOCS["errors"]["entries"]

# a USD-M order id above 2**53, from Binance's documented Query Sub Orders example (ETHUSDT)
BIG_ORDER_ID = _DOCS["subOrders"]["body"]["subOrders"][0]["orderId"]
assert BIG_ORDER_ID == 8389765519993908929 > 2**53

SERVER_TIME_MS = 1_645_233_611_962  # what the fake /fapi/v1/time answers (a 2022 time)

MARKETS = {
    "BTC/USDT:USDT": {"id": "BTCUSDT", "symbol": "BTC/USDT:USDT", "linear": True},
    "ETH/USDT:USDT": {"id": "ETHUSDT", "symbol": "ETH/USDT:USDT", "linear": True},
    "BTC/USD:BTC": {"id": "BTCUSD_PERP", "symbol": "BTC/USD:BTC", "linear": False},
}
STEPS = {"BTC/USDT:USDT": (Decimal("0.1"), Decimal("0.001")), "ETH/USDT:USDT": (Decimal("0.01"), Decimal("0.001"))}


def raw_order(**over: Any) -> dict[str, Any]:
    """A ``POST /fapi/v1/order`` RESULT body for a filled MARKET buy, as Binance sends it."""
    body = {"orderId": BIG_ORDER_ID, "symbol": "BTCUSDT", "status": "FILLED", "clientOrderId": "ae-sig1-0",
            "price": "0", "avgPrice": "40000.10", "origQty": "0.002", "executedQty": "0.002",
            "cumQuote": "80.00020", "timeInForce": "GTC", "type": "MARKET", "reduceOnly": False,
            "closePosition": False, "side": "BUY", "positionSide": "BOTH", "stopPrice": "0",
            "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET",
            "updateTime": 1_700_000_000_123}
    body.update(over)
    return body


def raw_trade(trade_id: int, qty: str = "0.001", price: str = "40000.10", **over: Any) -> dict[str, Any]:
    row = {"symbol": "BTCUSDT", "id": trade_id, "orderId": BIG_ORDER_ID, "side": "BUY", "price": price,
           "qty": qty, "realizedPnl": "0", "marginAsset": "USDT", "quoteQty": "40.00010",
           "commission": "0.02000005", "commissionAsset": "USDT", "time": 1_700_000_000_123,
           "positionSide": "BOTH", "buyer": True, "maker": False}
    row.update(over)
    return row


@dataclass
class HttpFailure:
    """An HTTP error answer: ``handle_errors`` sees it, then ``exc`` is raised."""

    status: int
    body: dict[str, Any] | None
    exc: Exception
    headers: dict[str, str] = field(default_factory=dict)


class FakeExchange:
    """Scripted ``binanceusdm``: ``answers[name]`` is a queue; the last answer repeats."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {"timeDifference": 0}
        self.markets: dict[str, Any] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.answers: dict[str, list[Any]] = {
            "load_markets": [MARKETS], "load_time_difference": [-250],
            "fapiPrivateGetPositionSideDual": [{"dualSidePosition": False}],
            "fapiPrivatePostMarginType": [{"code": 200, "msg": "success"}],
            "fapiPrivatePostLeverage": [lambda p: {"leverage": p["leverage"], "symbol": p["symbol"]}],
            "fapiPrivateV2GetPositionRisk": [[]],
            "fapiPrivateGetUserTrades": [[]],
            "fapiPublicGetTime": [{"serverTime": 1_700_000_000_000}],
        }

    def script(self, name: str, *answers: Any) -> None:
        self.answers[name] = list(answers)

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]

    def _answer(self, name: str, *args: Any) -> Any:
        self.calls.append((name, args))
        queue = self.answers.get(name)
        if not queue:
            raise AssertionError(f"unscripted call {name}{args}")
        a = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(a, HttpFailure):
            self.handle_errors(a.status, "Error", "https://fapi.binance.com/fapi/v1/x", "POST", a.headers,
                               json.dumps(a.body) if a.body is not None else "", a.body, {}, None)
            raise a.exc
        if isinstance(a, BaseException):
            raise a
        return a(*args) if callable(a) else a

    def handle_errors(self, *args: Any) -> None:  # ccxt's hook; the broker wraps it
        return None

    # unified
    def load_markets(self, reload: bool = False) -> dict[str, Any]:
        self.markets = self._answer("load_markets", reload)
        return self.markets

    def load_time_difference(self) -> int:
        return self._answer("load_time_difference")

    def amount_to_precision(self, symbol: str, amount: Any) -> str:
        self.calls.append(("amount_to_precision", (symbol, amount)))
        return format(round_qty_down(Decimal(str(amount)), STEPS[symbol][1]), "f")  # ccxt truncates

    def price_to_precision(self, symbol: str, price: Any) -> str:
        self.calls.append(("price_to_precision", (symbol, price)))
        tick = STEPS[symbol][0]
        return format((Decimal(str(price)) / tick).quantize(Decimal(1), ROUND_HALF_UP) * tick, "f")

    def create_order(self, symbol: str, type: str, side: str, amount: Any, price: Any = None,
                     params: dict[str, Any] | None = None) -> dict[str, Any]:
        info = self._answer("create_order", symbol, type, side, amount, price, dict(params or {}))
        return {"id": str(info.get("orderId")), "amount": 0.002, "info": info}  # ccxt's floats: ignored

    # raw endpoints
    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith(("fapiPrivate", "fapiPublic")):
            return lambda params=None: self._answer(name, dict(params or {}))
        raise AttributeError(name)


# ---------------------------------------------------------------------------- under real ccxt
def response(status: int, body: Any, headers: dict[str, str] | None = None, url: str = "") -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.reason = {200: "OK", 400: "Bad Request", 418: "I'm a teapot", 429: "Too Many Requests",
                500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    r._content = (body if isinstance(body, bytes) else json.dumps(body).encode()) if body is not None else b""
    r.headers = CaseInsensitiveDict({"Content-Type": "application/json", **(headers or {})})
    r.url = url
    r.encoding = "utf-8"
    return r


@dataclass
class Sent:
    method: str
    path: str
    params: dict[str, str]


class FakeSession:
    """Answers ccxt's HTTP requests: ``routes[(METHOD, path)]`` is a queue of responses or
    exceptions (the last repeats); exchangeInfo and time are always there."""

    def __init__(self) -> None:
        self.cookies = requests.cookies.RequestsCookieJar()
        self.headers: dict[str, str] = {}
        self.sent: list[Sent] = []
        self.routes: dict[tuple[str, str], list[Any]] = {
            ("GET", "/fapi/v1/exchangeInfo"): [response(200, EXCHANGE_INFO)],
            ("GET", "/fapi/v1/time"): [response(200, {"serverTime": SERVER_TIME_MS})],
        }

    def route(self, method: str, path: str, *answers: Any) -> None:
        self.routes[(method, path)] = list(answers)

    def paths(self) -> list[str]:
        return [f"{s.method} {s.path}" for s in self.sent]

    def request(self, method: str, url: str, data: Any = None, **_: Any) -> requests.Response:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        if data:
            query.update(parse_qsl(data.decode() if isinstance(data, bytes) else data))
        self.sent.append(Sent(method=method, path=parts.path, params=query))
        queue = self.routes.get((method, parts.path))
        if not queue:
            raise AssertionError(f"unrouted request {method} {parts.path}")
        a = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(a, BaseException):
            raise a
        a.url = url
        return a

    def close(self) -> None:
        pass
