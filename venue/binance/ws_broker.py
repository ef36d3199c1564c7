"""``WsBroker``: the ``Broker`` port with orders over Binance's WebSocket API, REST behind it.

Order placement (``order.place``), cancel (``order.cancel``), status (``order.status``) and
the Algo Service's place and cancel (``algoOrder.place``, ``algoOrder.cancel``) go over the one
WebSocket API connection (``ws_api.WsApiClient``); everything else (start-up, fills, positions,
balance, lists, the algo query) is the REST broker's (``ccxt_broker.CcxtBroker``), which is
also the fallback while the socket is down.

No order twice (the rules, for submit; cancel and the algo calls follow them):

    WebSocket attempt                    then
    sent nothing (no open connection)    the same request by REST, same client id
    answered (accepted or refused)       that answer (a refusal is not retried elsewhere)
    outcome unknown (lost, timed out)    query by client id (WebSocket if up, else REST):
                                           found -> the order as the exchange has it
                                           not found -> AmbiguousError, nothing re-sent here

A "not found" right after a lost request proves nothing (the request may still arrive), so
the broker never re-sends after an ambiguous attempt: the caller's order state machine
(``venue.orders``) re-sends, with the same client id, only once the attempt can no longer
arrive (its ``recvWindow`` has passed). Reads that fail on the socket are simply asked again
by REST.
"""

from __future__ import annotations

from decimal import InvalidOperation
from typing import Any, Callable, Sequence

import structlog

from common.errors import AegisError, AmbiguousError, DecodeError, DefinitiveError, TransientError
from venue import ratelimit
from venue.binance import WEIGHTS
from venue.binance.bodies import algo_from_raw, algo_params, order_from_raw, order_params
from venue.binance.ccxt_broker import CcxtBroker
from venue.binance.ws_api import Prepared, Sent, WsApiClient, WsUnavailable
from venue.port import (
    AccountSetup, AlgoSpec, Balance, Bracket, ExchangeAlgoOrder, ExchangeFill, ExchangeOrder, ExchangePosition, OrderSpec,
    SubmitResult, FINAL_STATUSES,
)

log = structlog.get_logger(__name__)

CONNECT_WAIT_S = 3.0  # at start, wait this long for the socket; orders go by REST until it is up


class WsBroker:
    name = "ws"

    def __init__(self, rest: CcxtBroker, client: WsApiClient, *, connect_wait_s: float = CONNECT_WAIT_S) -> None:
        self.rest = rest
        self.client = client
        self.connect_wait_s = connect_wait_s
        # an order's answer that says it (partly) filled: its fills read over REST at once (the
        # answer has no trade ids or fees). False while the caller hears fills from the user
        # data stream, Binance's own push (the brain's execution sets it): no REST read per order
        self.fills_after_submit = True
        self.counters: dict[str, int] = {"ws_calls": 0, "rest_fallbacks": 0, "ambiguous_resolved": 0,
                                         "ambiguous_unresolved": 0}

    def __repr__(self) -> str:
        return f"WsBroker(rest={self.rest!r}, client={self.client!r})"

    # ------------------------------------------------------------------ start-up and the rest
    def start(self, symbols: Sequence[str]) -> AccountSetup:
        setup = self.rest.start(symbols)
        self.client.time_offset_ms = setup.server_time_offset_ms
        self.client.start()
        if not self.client.wait_connected(self.connect_wait_s):
            log.warning("ws_broker.socket_not_up", url=self.client.config.url, waited_s=self.connect_wait_s,
                        note="orders go by REST until it connects")
        return setup

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        return self.rest.open_orders(symbol)

    def fills(self, symbol: str, *, since_ms: int | None = None,
              exchange_order_id: str | None = None) -> list[ExchangeFill]:
        return self.rest.fills(symbol, since_ms=since_ms, exchange_order_id=exchange_order_id)

    def all_orders(self, symbol: str, *, since_ms: int, until_ms: int) -> list[ExchangeOrder]:
        return self.rest.all_orders(symbol, since_ms=since_ms, until_ms=until_ms)

    def positions(self) -> list[ExchangePosition]:
        return self.rest.positions()

    def balance(self) -> Balance:
        return self.rest.balance()

    def server_time_ms(self) -> int:
        return self.rest.server_time_ms()

    def query_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder | None:
        return self.rest.query_algo(symbol, client_algo_id)

    def open_algo_orders(self, symbol: str | None = None) -> list[ExchangeAlgoOrder]:
        return self.rest.open_algo_orders(symbol)

    def leverage_brackets(self, symbols: Sequence[str]) -> dict[str, tuple[Bracket, ...]]:
        return self.rest.leverage_brackets(symbols)

    def income(self, *, income_type: str, since_ms: int) -> list[Any]:
        return self.rest.income(income_type=income_type, since_ms=since_ms)

    def close(self) -> None:
        self.client.close()
        self.rest.close()

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "ws": self.client.stats()}

    # ------------------------------------------------------------------ orders
    def submit(self, spec: OrderSpec) -> SubmitResult:
        prio = ratelimit.Priority.EXIT if spec.reduce_only else ratelimit.Priority.ENTRY
        weight, orders = WEIGHTS["submit"]
        try:
            raw = self._ws("order.place", order_params(spec), weight=weight, orders=orders, mutating=True,
                           priority=prio)
            order = _parse("submit", order_from_raw, raw, mutating=True)  # unreadable: unknown too
        except WsUnavailable:
            self.counters["rest_fallbacks"] += 1
            return self.rest.submit(spec)
        except AmbiguousError as exc:
            order = self._resolve(exc, lambda: self.query(spec.symbol, spec.client_order_id),
                                  what="order", cid=spec.client_order_id)
        return self._submitted(spec, order)

    def send_order(self, spec: OrderSpec, *, rate_wait_s: float | None = None, prepared: Prepared | None = None) -> Sent:
        """``submit``'s first half: the ``order.place`` frame written, its answer not awaited.

        The brain calls it on its deciding thread for an exit (``rate_wait_s=0``: a rate limit
        is not waited out there; the exit then goes the ordinary way) and hands ``finish_order``
        to a worker; with ``prepared`` (``prepare_order`` of the same spec, made in advance by
        the exit lane) the frame is written as it was prepared. ``WsUnavailable`` and the
        governor's refusal mean nothing was sent."""
        prio = ratelimit.Priority.EXIT if spec.reduce_only else ratelimit.Priority.ENTRY
        weight, orders = WEIGHTS["submit"]
        self.counters["ws_calls"] += 1
        if prepared is not None:
            return self.client.send_prepared(prepared, weight=weight, orders=orders, mutating=True, priority=prio,
                                             rate_wait_s=rate_wait_s)
        return self.client.send("order.place", order_params(spec), weight=weight, orders=orders, mutating=True,
                                priority=prio, rate_wait_s=rate_wait_s)

    def prepare_order(self, spec: OrderSpec) -> Prepared:
        """``spec``'s ``order.place`` request signed and framed now, for ``send_order`` later."""
        return self.client.prepare("order.place", order_params(spec))

    def finish_order(self, spec: OrderSpec, sent: Sent) -> SubmitResult:
        """``submit``'s second half: the answer to ``send_order``'s frame (same rules as ``submit``)."""
        try:
            try:
                raw = self.client.wait(sent)
            except TransientError as exc:
                if exc.reason == "timestamp":  # -1021: our clock drifted from the server's: measure again
                    self._resync()
                raise
            order = _parse("submit", order_from_raw, raw, mutating=True)  # unreadable: unknown too
        except AmbiguousError as exc:
            order = self._resolve(exc, lambda: self.query(spec.symbol, spec.client_order_id),
                                  what="order", cid=spec.client_order_id)
        return self._submitted(spec, order)

    def _submitted(self, spec: OrderSpec, order: ExchangeOrder) -> SubmitResult:
        fills: tuple[ExchangeFill, ...] = ()
        if order.executed_qty > 0 and self.fills_after_submit:
            try:
                fills = tuple(self.rest.fills(spec.symbol, exchange_order_id=order.exchange_order_id))
            except AegisError as err:  # the order stands; the caller fetches its fills later
                log.warning("ws_broker.fills_after_submit_failed", cid=spec.client_order_id, reason=err.reason)
        return SubmitResult(order=order, fills=fills)

    def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        weight, orders = WEIGHTS["cancel"]
        try:
            raw = self._ws("order.cancel", {"symbol": symbol, "origClientOrderId": client_order_id},
                           weight=weight, orders=orders, mutating=True, priority=ratelimit.Priority.EXIT)
            return _parse("cancel", order_from_raw, raw, mutating=True)
        except WsUnavailable:
            self.counters["rest_fallbacks"] += 1
            return self.rest.cancel(symbol, client_order_id)
        except AmbiguousError as exc:
            found = self._resolve(exc, lambda: self.query(symbol, client_order_id), what="cancel",
                                  cid=client_order_id)
            if found.status not in FINAL_STATUSES:
                raise exc  # still live: whether the cancel arrives is unknown; the caller asks again
            return found

    def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        weight, _ = WEIGHTS["query"]
        try:
            raw = self._ws("order.status", {"symbol": symbol, "origClientOrderId": client_order_id},
                           weight=weight, orders=0, mutating=False, priority=ratelimit.Priority.QUERY)
        except DefinitiveError as exc:
            if exc.reason == "unknown_order":
                return None  # -2013: no order with this client id
            raise
        except TransientError as exc:  # not up, lost, timed out, rate limited: a read may be asked again
            if exc.reason not in ("ws_unavailable", "ws_lost", "timeout"):
                raise
            self.counters["rest_fallbacks"] += 1
            return self.rest.query(symbol, client_order_id)
        return _parse("query", order_from_raw, raw)

    # ------------------------------------------------------------------ the Algo Service
    def place_algo(self, spec: AlgoSpec) -> ExchangeAlgoOrder:
        weight, orders = WEIGHTS["place_algo"]
        try:
            raw = self._ws("algoOrder.place", algo_params(spec), weight=weight, orders=orders, mutating=True,
                           priority=ratelimit.Priority.EXIT)  # protection is an exit in waiting
            return _parse("place_algo", algo_from_raw, raw, mutating=True)
        except WsUnavailable:
            self.counters["rest_fallbacks"] += 1
            return self.rest.place_algo(spec)
        except AmbiguousError as exc:
            return self._resolve(exc, lambda: self.rest.query_algo(spec.symbol, spec.client_algo_id),
                                 what="algo order", cid=spec.client_algo_id)

    def cancel_algo(self, symbol: str, client_algo_id: str) -> ExchangeAlgoOrder:
        weight, orders = WEIGHTS["cancel_algo"]
        try:
            raw = self._ws("algoOrder.cancel", {"clientAlgoId": client_algo_id}, weight=weight, orders=orders,
                           mutating=True, priority=ratelimit.Priority.EXIT)
        except WsUnavailable:
            self.counters["rest_fallbacks"] += 1
            return self.rest.cancel_algo(symbol, client_algo_id)
        except AmbiguousError as exc:
            found = self._resolve(exc, lambda: self.rest.query_algo(symbol, client_algo_id), what="algo cancel",
                                  cid=client_algo_id)
            if found.status in ("NEW", "TRIGGERING"):
                raise exc
            return found
        if isinstance(raw, dict) and "algoStatus" not in raw:
            # Binance answers a cancel with the ids and a code only: the order is CANCELED
            raw = {"symbol": symbol, "side": "", "orderType": "", "algoStatus": "CANCELED",
                   "clientAlgoId": raw.get("clientAlgoId", client_algo_id), "algoId": raw.get("algoId", "")}
        return _parse("cancel_algo", algo_from_raw, raw, mutating=True)

    # ------------------------------------------------------------------ helpers
    def _ws(self, method: str, params: dict[str, str], *, weight: int, orders: int, mutating: bool,
            priority: ratelimit.Priority) -> Any:
        self.counters["ws_calls"] += 1
        try:
            return self.client.call(method, params, weight=weight, orders=orders, mutating=mutating,
                                    priority=priority)
        except TransientError as exc:
            if exc.reason == "timestamp":  # -1021: our clock drifted from the server's: measure again
                self._resync()
            raise

    def _resync(self) -> None:
        try:
            before = self.client.time_offset_ms
            local = self.client.clock_ms()
            self.client.time_offset_ms = self.rest.server_time_ms() - local
        except AegisError as err:  # the caller retries anyway; the next -1021 tries again
            log.warning("ws_broker.time_resync_failed", reason=err.reason)
            return
        log.info("ws_broker.time_resynced", offset_ms=self.client.time_offset_ms, before_ms=before)

    def _resolve(self, exc: AmbiguousError, find: Callable[[], Any], *, what: str, cid: str) -> Any:
        """After an unknown outcome: the exchange's record, or the AmbiguousError again."""
        try:
            found = find()
        except AegisError as err:
            log.warning("ws_broker.query_after_unknown_failed", what=what, cid=cid, reason=err.reason)
            self.counters["ambiguous_unresolved"] += 1
            raise exc from err
        if found is None:
            log.warning("ws_broker.not_found_after_unknown", what=what, cid=cid,
                        note="not re-sent: the order state machine decides once the attempt has expired")
            self.counters["ambiguous_unresolved"] += 1
            raise exc
        self.counters["ambiguous_resolved"] += 1
        log.info("ws_broker.found_after_unknown", what=what, cid=cid, status=found.status)
        return found


def _parse(op: str, parse: Callable[[Any], Any], raw: Any, *, mutating: bool = False) -> Any:
    try:
        return parse(raw)
    except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation, DecodeError) as exc:
        cls = AmbiguousError if mutating else DefinitiveError
        raise cls(f"{op}: unreadable answer ({type(exc).__name__}: {exc})", reason="bad_response") from None
