"""``CcxtBroker``: the ``Broker`` port on ccxt's synchronous ``binanceusdm``.

The real exchange, its futures testnet, or ``exchange_sim`` on loopback (``base_url``). Calls
block; the brain runs them on the dispatcher's threads.

Exactness: quantities and prices go out as the Decimal's own text (checked against ccxt's
precision first, so ccxt never truncates what we asked for), and everything we return is read
from the raw Binance bodies (ccxt's ``info``, or the raw endpoint) with ``Decimal(str)``; ids
stay strings (Binance order ids exceed 2**53). The parsing is pure, in ``binance_bodies``.

Errors: each failure becomes one of ours (``common.errors``) by the Binance code, via the one
table there. The code comes from the HTTP answer itself: a hook on ccxt's ``handle_errors``
records (status, code, msg, Retry-After) per thread, because ccxt's own exception text drops
the code when it matches the message instead, and never carries Retry-After. Without a recorded
answer we read the JSON in ccxt's text, then fall back on ccxt's exception class. A timeout or
a dropped connection during a submit or cancel is ``AmbiguousError``: the request may have
arrived. -1021 resyncs the server-time offset before raising ``TransientError``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping, Protocol, Sequence

import ccxt
import requests
import structlog

from common.errors import (
    AegisError, AmbiguousError, ConfigError, DecodeError, DefinitiveError, ExchangeReply, TransientError,
    exchange_error, parse_retry_after,
)
from venue import filters, ratelimit
from venue.binance import WEIGHTS
from venue.binance.bodies import (
    ALL_ORDERS_PAGE, history_from_raw, history_windows,
    algo_from_raw, algo_params, as_bool, balance_from_raw, brackets_from_raw, fill_from_raw, income_from_raw,
    order_from_raw, position_from_raw,
    reply_from_text,
)
from venue.port import (
    AccountSetup, AlgoSpec, Balance, Bracket, ExchangeAlgoOrder, ExchangeFill, ExchangeIncome, ExchangeOrder,
    ExchangePosition, OrderSpec, SubmitResult,
)

log = structlog.get_logger(__name__)

TRADES_PAGE = 1_000  # userTrades' maximum page
INCOME_PAGE = 1_000  # income's maximum page
MAX_TRADE_PAGES = 50  # 50,000 fills in one call is far beyond one order or one poll
_BANNED_UNTIL = re.compile(r"banned until (\d{13})")
_EXPECTED_REASONS = frozenset({"no_change", "unknown_order"})


@dataclass(frozen=True, kw_only=True)
class CcxtConfig:
    testnet: bool = False  # Binance's futures testnet (testnet.binancefuture.com)
    base_url: str = ""  # non-empty: every fapi URL goes to this host instead (exchange_sim)
    timeout_ms: int = 5_000  # REST timeout; past it, a submit's outcome is unknown
    recv_window_ms: int = 5_000
    leverage: int = 5
    margin_type: str = "CROSSED"  # CROSSED | ISOLATED
    rate_limit_wait_s: float = 10.0  # longest a call waits for the rate-limit governor, then TransientError

    def __post_init__(self) -> None:
        if self.margin_type not in ("CROSSED", "ISOLATED"):
            raise ConfigError("ccxt.margin_type must be CROSSED or ISOLATED")
        if not 1 <= self.leverage <= 125 or not 0 < self.recv_window_ms <= 60_000 or self.timeout_ms <= 0:
            raise ConfigError("ccxt: leverage 1..125, recv_window_ms 1..60000, timeout_ms > 0")
        if self.testnet and self.base_url:
            raise ConfigError("ccxt: testnet and base_url exclude each other")


class ExchangeApi(Protocol):
    """What the broker uses of ``ccxt.binanceusdm`` (tests hand in a fake)."""

    options: dict[str, Any]
    markets: dict[str, Any]

    def load_markets(self, reload: bool = False) -> dict[str, Any]: ...
    def parse_market(self, market: dict[str, Any]) -> dict[str, Any]: ...
    def set_markets(self, markets: Any, currencies: Any = None) -> Any: ...
    def load_time_difference(self) -> int: ...
    def amount_to_precision(self, symbol: str, amount: Any) -> str: ...
    def price_to_precision(self, symbol: str, price: Any) -> str: ...
    def create_order(self, symbol: str, type: str, side: str, amount: Any, price: Any = None,
                     params: dict[str, Any] = ...) -> dict[str, Any]: ...
    def handle_errors(self, *args: Any) -> Any: ...
    # raw endpoints (ccxt's implicit API): Binance's own bodies, nothing float-ified
    def fapiPrivateGetPositionSideDual(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivatePostPositionSideDual(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivatePostMarginType(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivatePostLeverage(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateGetOrder(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateDeleteOrder(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateGetOpenOrders(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateGetUserTrades(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateV2GetPositionRisk(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateV2GetAccount(self, params: dict[str, Any]) -> Any: ...
    def fapiPublicGetTime(self, params: dict[str, Any]) -> Any: ...
    # the Algo Service (conditional orders since 2025-12-09)
    def fapiPrivatePostAlgoOrder(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateDeleteAlgoOrder(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateGetAlgoOrder(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateGetOpenAlgoOrders(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateGetLeverageBracket(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateGetIncome(self, params: dict[str, Any]) -> Any: ...
    def fapiPrivateGetAllOrders(self, params: dict[str, Any]) -> Any: ...


def make_exchange(config: CcxtConfig, api_key: str, api_secret: str) -> Any:
    """A configured ``ccxt.binanceusdm``: rate limiter on, linear markets only, no spot calls."""
    ex = ccxt.binanceusdm({
        # ccxt's own throttle (a per-thread sleep of ~250 ms between calls) is off: the process's
        # one governor (venue.ratelimit) spends Binance's real budgets, exits first
        "apiKey": api_key, "secret": api_secret, "enableRateLimit": False, "timeout": config.timeout_ms,
        "options": {"recvWindow": config.recv_window_ms, "adjustForTimeDifference": True,
                    "fetchCurrencies": False,  # a spot (sapi) call: not ours, and not on the sim
                    "fetchMarkets": {"types": ["linear"]},
                    "maxRetriesOnFailure": 0},  # ccxt must never re-send on its own: an order could double
    })
    if config.testnet:
        ex.set_sandbox_mode(True)
        ex.options["disableFuturesSandboxWarning"] = True  # ccxt prefers "demo trading"; the testnet still runs
    if config.base_url:
        # the sim's own helper: fapi URLs to the sim, every other API to a 404, its error table
        from venue.binance.ccxt_compat import point_ccxt_at
        point_ccxt_at(ex, config.base_url)
    return ex


# ccxt's class, when no answer can be read: (ccxt class, our class, reason), most specific first
_CCXT_FALLBACK: tuple[tuple[type, type[AegisError], str], ...] = (
    (ccxt.DDoSProtection, TransientError, "rate_limit"),
    (ccxt.RateLimitExceeded, TransientError, "rate_limit"),
    (ccxt.InvalidNonce, TransientError, "timestamp"),
    (ccxt.RequestTimeout, AmbiguousError, "timeout"),
    (ccxt.NetworkError, AmbiguousError, "network"),
    (ccxt.OperationFailed, AmbiguousError, "server_error"),
    (ccxt.AuthenticationError, DefinitiveError, "auth"),
    (ccxt.InsufficientFunds, DefinitiveError, "insufficient_margin"),
    (ccxt.OrderNotFound, DefinitiveError, "unknown_order"),
    (ccxt.BadSymbol, DefinitiveError, "bad_symbol"),
    (ccxt.NoChange, DefinitiveError, "no_change"),
    (ccxt.DuplicateOrderId, DefinitiveError, "duplicate_client_id"),
    (ccxt.BaseError, DefinitiveError, "rejected"),
)


def _never_sent(exc: BaseException) -> bool:
    """The connection was never made (refused, connect timeout): the request did not leave."""
    cause = exc.__cause__
    return isinstance(cause, requests.exceptions.ConnectTimeout) or (
        isinstance(cause, requests.exceptions.ConnectionError)
        and "Failed to establish a new connection" in str(cause))


# ---------------------------------------------------------------------------- the broker
class CcxtBroker:
    name = "ccxt"

    def __init__(self, config: CcxtConfig, *, api_key: str = "", api_secret: str = "",
                 exchange: ExchangeApi | None = None, clock_ms: Callable[[], int] | None = None,
                 governor: ratelimit.Governor | None = None,
                 rules: Callable[[], Mapping[str, filters.SymbolInfo]] | None = None) -> None:
        self.config = config
        self.governor = governor if governor is not None else ratelimit.shared()
        # the keys live only inside the ccxt object, never on the broker (nor in its repr)
        self._ex: ExchangeApi = exchange if exchange is not None else make_exchange(config, api_key, api_secret)
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._tls = threading.local()
        self._unified: dict[str, str] = {}  # exchange id (BTCUSDT) -> ccxt symbol (BTC/USDT:USDT)
        # the feed's published rules (symbol -> wire.SymbolInfo): ccxt's markets are made of
        # them (``_seed_markets``), exchangeInfo is asked only for a symbol they lack
        self._rules = rules
        self._seeded: dict[str, Any] = {}  # symbol -> the rule its market was made of
        self._markets_fetched = False
        self._markets_lock = threading.RLock()  # one thread at a time changes ccxt's markets
        self.counters: dict[str, int] = {"all_orders_rejected": 0,  # answers refused as malformed
                                         "markets_unseeded": 0}  # rules ccxt could not make a market of
        self._capture_replies()

    def __repr__(self) -> str:
        return f"CcxtBroker(config={self.config!r})"

    # ------------------------------------------------------------------ the port
    def start(self, symbols: Sequence[str]) -> AccountSetup:
        self._seed_markets()
        if self._rules is None or any(s not in self._unified for s in symbols):
            self._load_markets()
        missing = [s for s in symbols if s not in self._unified]
        if missing:
            raise DefinitiveError(f"not on the exchange (linear): {missing}", reason="bad_symbol")
        offset_ms = -int(self._call("time_difference", self._ex.load_time_difference))
        one_way = self._ensure_one_way()
        leverage: dict[str, int] = {}
        for s in symbols:
            self._quiet_no_change("margin_type", self._ex.fapiPrivatePostMarginType,
                                  {"symbol": s, "marginType": self.config.margin_type})
            raw = self._call("leverage", self._ex.fapiPrivatePostLeverage,
                             {"symbol": s, "leverage": self.config.leverage})
            leverage[s] = int(raw.get("leverage", self.config.leverage))
        log.info("ccxt.started", symbols=len(symbols), offset_ms=offset_ms, one_way=one_way,
                 margin_type=self.config.margin_type)
        return AccountSetup(one_way=one_way, margin_type=self.config.margin_type, leverage=leverage,
                            server_time_offset_ms=offset_ms)

    def submit(self, spec: OrderSpec) -> SubmitResult:
        prio = ratelimit.Priority.EXIT if spec.reduce_only else ratelimit.Priority.ENTRY
        symbol = self._symbol(spec.symbol, priority=prio)
        amount = self._exact(symbol, spec.qty, self._ex.amount_to_precision, "quantity")
        price = self._exact(symbol, spec.price, self._ex.price_to_precision, "price") \
            if spec.order_type == "LIMIT" else None
        params: dict[str, Any] = {"newClientOrderId": spec.client_order_id, "newOrderRespType": "RESULT"}
        if spec.reduce_only:
            params["reduceOnly"] = True
        if spec.order_type == "LIMIT":
            params["timeInForce"] = spec.time_in_force
        created = self._call("submit", self._ex.create_order, symbol, spec.order_type.lower(),
                             spec.side.lower(), amount, price, params, mutating=True, priority=prio)
        order = self._parse("submit", order_from_raw, created.get("info", created), mutating=True)
        fills: tuple[ExchangeFill, ...] = ()
        if order.executed_qty > 0:
            try:
                fills = tuple(self.fills(spec.symbol, exchange_order_id=order.exchange_order_id))
            except AegisError as exc:  # the order stands; the caller fetches its fills later
                log.warning("ccxt.fills_after_submit_failed", cid=spec.client_order_id, reason=exc.reason)
        return SubmitResult(order=order, fills=fills)

    def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        raw = self._call("cancel", self._ex.fapiPrivateDeleteOrder,
                         {"symbol": symbol, "origClientOrderId": client_order_id}, mutating=True,
                         priority=ratelimit.Priority.EXIT)
        return self._parse("cancel", order_from_raw, raw, mutating=True)

    def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        try:
            raw = self._call("query", self._ex.fapiPrivateGetOrder,
                             {"symbol": symbol, "origClientOrderId": client_order_id})
        except DefinitiveError as exc:
            if exc.reason == "unknown_order":
                return None  # -2013: the exchange has no order with this client id
            raise
        return self._parse("query", order_from_raw, raw)

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        raw = self._call("open_orders" if symbol else "open_orders_all", self._ex.fapiPrivateGetOpenOrders,
                         {"symbol": symbol} if symbol else {})
        return [self._parse("open_orders", order_from_raw, r) for r in raw]

    def fills(self, symbol: str, *, since_ms: int | None = None,
              exchange_order_id: str | None = None) -> list[ExchangeFill]:
        params: dict[str, Any] = {"symbol": symbol, "limit": TRADES_PAGE}
        if exchange_order_id is not None:
            params["orderId"] = exchange_order_id
        if since_ms is not None:
            params["startTime"] = since_ms
        out: list[ExchangeFill] = []
        for _ in range(MAX_TRADE_PAGES):
            page = [self._parse("fills", fill_from_raw, r)
                    for r in self._call("fills", self._ex.fapiPrivateGetUserTrades, dict(params))]
            out += page
            if len(page) < TRADES_PAGE:
                break
            # the next page by trade id (Binance refuses fromId together with a time window)
            params = {k: v for k, v in params.items() if k != "startTime"}
            params["fromId"] = int(page[-1].trade_id) + 1
        return out

    def all_orders(self, symbol: str, *, since_ms: int, until_ms: int) -> list[ExchangeOrder]:
        """``GET /fapi/v1/allOrders`` of ``symbol`` between ``since_ms`` and ``until_ms``: one
        request per window shorter than 7 days (``bodies.history_windows``), a full page (1000)
        followed by the next from its newest creation time, each order once, oldest first. An
        answer with one malformed row is refused whole (``DecodeError``), counted and logged."""
        seen: dict[str, tuple[int, ExchangeOrder]] = {}
        for start, end in history_windows(since_ms, until_ms):
            for _ in range(MAX_TRADE_PAGES):
                raw = self._call("all_orders", self._ex.fapiPrivateGetAllOrders,
                                 {"symbol": symbol, "startTime": start, "endTime": end, "limit": ALL_ORDERS_PAGE})
                try:
                    rows = history_from_raw(raw, symbol)
                except DecodeError as exc:
                    self.counters["all_orders_rejected"] += 1
                    log.warning("ccxt.all_orders_rejected", symbol=symbol, reason=exc.reason, error=str(exc)[:200])
                    raise
                for order, created in rows:
                    seen.setdefault(order.exchange_order_id, (created, order))
                newest = max((c for _, c in rows), default=start)
                if len(rows) < ALL_ORDERS_PAGE or newest <= start:
                    break
                start = newest  # the next page from the newest one's time on (that one again: kept once)
        return [o for _, o in sorted(seen.values(), key=lambda x: (x[0], int(x[1].exchange_order_id)))]

    def income(self, *, income_type: str, since_ms: int) -> list[ExchangeIncome]:
        """``GET /fapi/v1/income`` from ``since_ms`` on, page by page (1000 rows a page)."""
        out: list[ExchangeIncome] = []
        params: dict[str, Any] = {"incomeType": income_type, "startTime": since_ms, "limit": INCOME_PAGE}
        for page_no in range(1, MAX_TRADE_PAGES + 1):
            rows = self._call("income", self._ex.fapiPrivateGetIncome, {**params, "page": page_no})
            if not isinstance(rows, list):
                raise DefinitiveError(f"income: unreadable answer (not a list: {type(rows).__name__})",
                                      reason="bad_response")
            out += [self._parse("income", income_from_raw, r) for r in rows]
            if len(rows) < INCOME_PAGE:
                break
        return out

    def positions(self) -> list[ExchangePosition]:
        rows = self._call("positions", self._ex.fapiPrivateV2GetPositionRisk, {})
        return [p for p in (self._parse("positions", position_from_raw, r) for r in rows) if p.qty != 0]

    def balance(self) -> Balance:
        return self._parse("balance", balance_from_raw, self._call("balance", self._ex.fapiPrivateV2GetAccount, {}))

    def server_time_ms(self) -> int:
        return int(self._call("server_time", self._ex.fapiPublicGetTime, {})["serverTime"])

    # ------------------------------------------------------------------ the Algo Service
    def place_algo(self, spec: AlgoSpec) -> ExchangeAlgoOrder:
        self._symbol(spec.symbol, priority=ratelimit.Priority.EXIT)  # an unknown symbol is refused here, not sent
        raw = self._call("place_algo", self._ex.fapiPrivatePostAlgoOrder, algo_params(spec), mutating=True,
                         priority=ratelimit.Priority.EXIT)  # protection is an exit in waiting
        return self._parse("place_algo", algo_from_raw, raw, mutating=True)

    def cancel_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder:
        raw = self._call("cancel_algo", self._ex.fapiPrivateDeleteAlgoOrder,
                         {"symbol": symbol, "clientAlgoId": client_algo_id}, mutating=True,
                         priority=ratelimit.Priority.EXIT)
        if isinstance(raw, dict) and "algoStatus" not in raw:
            # Binance answers a cancel with the ids and a code only: the order is CANCELED
            raw = {"symbol": symbol, "side": "", "orderType": "", "algoStatus": "CANCELED",
                   "clientAlgoId": raw.get("clientAlgoId", client_algo_id), "algoId": raw.get("algoId", "")}
        return self._parse("cancel_algo", algo_from_raw, raw, mutating=True)

    def query_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder | None:
        try:
            raw = self._call("query_algo", self._ex.fapiPrivateGetAlgoOrder, {"clientAlgoId": client_algo_id})
        except DefinitiveError as exc:
            if exc.reason == "unknown_order":
                return None
            raise
        return self._parse("query_algo", algo_from_raw, raw)

    def open_algo_orders(self, symbol: str | None = None) -> list[ExchangeAlgoOrder]:
        raw = self._call("open_algo_orders" if symbol else "open_algo_orders_all", self._ex.fapiPrivateGetOpenAlgoOrders,
                         {"symbol": symbol} if symbol else {})
        rows = raw.get("orders", raw) if isinstance(raw, dict) else raw
        return [self._parse("open_algo_orders", algo_from_raw, r) for r in rows]

    def leverage_brackets(self, symbols: Sequence[str]) -> dict[str, tuple[Bracket, ...]]:
        raw = self._call("leverage_brackets", self._ex.fapiPrivateGetLeverageBracket, {})
        wanted = set(symbols)
        return {s: b for s, b in self._parse("leverage_brackets", brackets_from_raw, raw).items() if s in wanted}

    def close(self) -> None:
        session = getattr(self._ex, "session", None)
        if session is not None:
            session.close()

    # ------------------------------------------------------------------ start-up helpers
    def _load_markets(self, priority: ratelimit.Priority = ratelimit.Priority.QUERY) -> None:
        """Every market from the exchange (exchangeInfo): without the feed's rules, or for a
        symbol they lack."""
        with self._markets_lock:
            markets = self._call("load_markets", self._ex.load_markets, True, priority=priority)
            self._markets_fetched = True
            self._unified = {m["id"]: m["symbol"] for m in markets.values() if m.get("linear")}
            self._seeded.clear()  # the exchange's own entries now; a rule published later is seeded again

    def _seed_markets(self) -> None:
        """ccxt's markets of the symbols the feed published rules for, made by ccxt's own
        ``parse_market`` from the exchangeInfo entry the rules describe (no request); added to
        the markets ccxt has. A rule without its assets (an older feed's) is left to exchangeInfo."""
        if self._rules is None:
            return
        with self._markets_lock:
            made = []
            for symbol, info in dict(self._rules()).items():
                if self._seeded.get(symbol) is info or not info.base_asset or info.contract_type != "PERPETUAL":
                    continue
                try:
                    market = self._ex.parse_market(filters.entry_from_symbol_info(info))
                except Exception as exc:  # noqa: BLE001 - ccxt refusing one entry: exchangeInfo covers it
                    self.counters["markets_unseeded"] += 1
                    log.warning("ccxt.market_unseeded", symbol=symbol, error=repr(exc)[:200])
                    continue
                self._seeded[symbol] = info
                if market and market.get("linear"):
                    made.append(market)
            if made:
                self._ex.set_markets({**(self._ex.markets or {}), **{m["symbol"]: m for m in made}})
                self._unified.update({m["id"]: m["symbol"] for m in made})

    def _symbol(self, exchange_id: str, priority: ratelimit.Priority = ratelimit.Priority.QUERY) -> str:
        unified = self._unified.get(exchange_id)
        if unified is None:
            self._seed_markets()
            unified = self._unified.get(exchange_id)
        # without the feed's rules: the exchange's markets once (as ever); with them: exchangeInfo
        # only for a symbol they lack, at most once
        if unified is None and (not self._markets_fetched if self._rules is not None else not self._unified):
            self._load_markets(priority)  # an exit's own look-up spends the exit's budget
            unified = self._unified.get(exchange_id)
        if unified is None:
            raise DefinitiveError(f"unknown symbol {exchange_id}", reason="bad_symbol", code=-1121)
        return unified

    def _ensure_one_way(self) -> bool:
        """One-way position mode; switch from hedge mode only while nothing is open."""
        raw = self._call("position_mode", self._ex.fapiPrivateGetPositionSideDual, {})
        if not as_bool(raw.get("dualSidePosition", False)):
            return True
        open_positions = self.positions()
        if open_positions:
            raise DefinitiveError(f"account is in hedge mode with {len(open_positions)} open positions",
                                  reason="hedge_mode")
        self._quiet_no_change("position_mode_set", self._ex.fapiPrivatePostPositionSideDual,
                              {"dualSidePosition": "false"})
        log.warning("ccxt.switched_to_one_way")
        return True

    def _quiet_no_change(self, op: str, fn: Callable[..., Any], params: dict[str, Any]) -> None:
        try:
            self._call(op, fn, params)
        except DefinitiveError as exc:
            if exc.reason != "no_change":  # -4046 / -4059: it already is so
                raise

    def _exact(self, symbol: str, value: Decimal, to_precision: Callable[[str, Any], str], what: str) -> str:
        """``value`` as text, refused (not sent) if ccxt's precision would change it."""
        text = format(value, "f")
        try:
            shown = self._call(what, to_precision, symbol, text)
        except DefinitiveError as exc:
            raise DefinitiveError(f"{what} {text} of {symbol}: {exc}", reason="filter", code=-1111) from None
        if Decimal(shown) != value:
            raise DefinitiveError(f"{what} {text} of {symbol} is off the grid ({shown})", reason="filter",
                                  code=-1111)
        return text

    # ------------------------------------------------------------------ calls and errors
    def _capture_replies(self) -> None:
        """Record each thread's last HTTP error answer from inside ccxt's own error handling."""
        original = getattr(self._ex, "handle_errors", None)
        if original is None:
            return
        tls = self._tls

        governor = self.governor

        def handle_errors(code, reason, url, method, headers, body, response, *rest):  # noqa: ANN001
            if isinstance(code, int):  # every answer: its weight headers, 429 and 418 back-offs
                governor.observe(status=code, headers=headers or {})
            if isinstance(code, int) and code >= 400 or (isinstance(response, dict)
                                                         and isinstance(response.get("code"), int)
                                                         and response["code"] < 0):
                err = response if isinstance(response, dict) else {}
                tls.reply = ExchangeReply(
                    http_status=code if isinstance(code, int) else 0,
                    code=err.get("code") if isinstance(err.get("code"), int) else None,
                    msg=str(err.get("msg", "")),
                    retry_after_s=parse_retry_after((headers or {}).get("Retry-After")))
            return original(code, reason, url, method, headers, body, response, *rest)

        self._ex.handle_errors = handle_errors

    def _call(self, op: str, fn: Callable[..., Any], *args: Any, mutating: bool = False,
              priority: ratelimit.Priority = ratelimit.Priority.QUERY) -> Any:
        weight, orders = WEIGHTS.get(op, (1, 0))
        if weight or orders:  # nothing leaves before the governor says so (never during a ban)
            self.governor.acquire(weight=weight, orders=orders, priority=priority,
                                  timeout_s=self.config.rate_limit_wait_s)
        self._tls.reply = None
        try:
            return fn(*args)
        except ccxt.BaseError as exc:
            err = self._translate(op, exc, mutating)
        except AegisError:
            raise
        except Exception as exc:  # ccxt choked on the answer: a submit may still have been accepted
            cls = AmbiguousError if mutating else DefinitiveError
            err = cls(f"{op}: unreadable answer ({type(exc).__name__})", reason="bad_response")
        raise err

    def _translate(self, op: str, exc: ccxt.BaseError, mutating: bool) -> AegisError:
        reply = getattr(self._tls, "reply", None) or reply_from_text(str(exc))
        if reply is not None:
            if reply.retry_after_s is None and (m := _BANNED_UNTIL.search(reply.msg)):
                ban_s = max((int(m.group(1)) - self._clock_ms()) / 1000.0, 0.0)
                reply = ExchangeReply(http_status=reply.http_status, code=reply.code, msg=reply.msg,
                                      retry_after_s=ban_s)
            err = exchange_error(reply, mutating=mutating, context=op)
        else:
            cls, reason = next((c, r) for k, c, r in _CCXT_FALLBACK if isinstance(exc, k))
            if cls is AmbiguousError and (not mutating or _never_sent(exc)):
                cls = TransientError
            err = cls(f"{op}: {type(exc).__name__}", reason=reason)
        if err.reason == "timestamp":
            self._resync()
        # "already so" and "no such order" are answers the callers expect, not trouble
        emit = log.info if err.reason in _EXPECTED_REASONS else log.warning
        emit("ccxt.call_failed", op=op, error=type(err).__name__, reason=err.reason, code=err.code,
             http_status=err.http_status, retry_after_s=err.retry_after_s)
        return err

    def _resync(self) -> None:
        """-1021: our clock drifted from the server's; measure the offset again."""
        try:
            diff = self._ex.load_time_difference()
        except Exception as exc:  # the caller retries anyway; the next -1021 tries again
            log.warning("ccxt.time_resync_failed", error=type(exc).__name__)
            return
        log.info("ccxt.time_resynced", offset_ms=-int(diff))

    def _parse(self, op: str, parse: Callable[[Any], Any], raw: Any, *, mutating: bool = False) -> Any:
        try:
            return parse(raw)
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation, DecodeError) as exc:
            cls = AmbiguousError if mutating else DefinitiveError
            raise cls(f"{op}: unreadable answer ({type(exc).__name__}: {exc})", reason="bad_response") from None
