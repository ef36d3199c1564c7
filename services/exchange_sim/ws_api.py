"""Binance USD-M's WebSocket API (``ws-fapi``) for the sim: requests in, answers out (pure).

Binance serves it at ``wss://ws-fapi.binance.com/ws-fapi/v1`` (testnet
``wss://testnet.binancefuture.com/ws-fapi/v1``); the sim at ``ws://<host>:<port>/ws-fapi/v1``.
Sources: the USD-M pages "WebSocket API General Info" (envelope, signing, rate limits,
session requests), "New Order" (``order.place``), "Query Order" (``order.status``), "Cancel
Order" (``order.cancel``), "New Algo Order" (``algoOrder.place``), "Cancel Algo Order"
(``algoOrder.cancel``), "Position Information" (``account.position``) and "Position
Information V2" (``v2/account.position``) under
``developers.binance.com/docs/derivatives/usds-margined-futures/``; their example answers are
in ``tests/data/binance_usdm/binance_docs_ws_api_examples.json``.

The envelope
------------
A request is one JSON object in one text frame: ``{"id": ..., "method": "...", "params": {...}}``
(``id``: an integer, a string or null, echoed back; ``params`` may be left out). An answer is
``{"id", "status", "result", "rateLimits"}`` or ``{"id", "status", "error": {"code", "msg"},
"rateLimits"}``; ``status`` is the HTTP status the REST endpoint would give (200, 400, 401...).

Signed methods carry ``apiKey``, ``timestamp`` and ``signature`` in ``params``: HMAC-SHA256 of
every parameter but ``signature``, sorted by name, ``name=value`` joined by ``&``. A JSON value
enters that text as written: strings as they are, integers in decimal, ``true``/``false``,
numbers with a fraction by their literal text (Binance asks for DECIMALs as strings; its own
examples send some as numbers). ``null`` is a parameter not sent. The checks and their answers
are the REST endpoints' (``signing.check``): -2014, -2015, -1102, -1131, -1022, -1021, with
status 401 for the key errors and 400 for the others. Then the method runs on the same
account, through the same parsers and pure core as its REST twin (``desk``), and answers with
the REST body as ``result``.

Methods (weight, orders counted; each answer's ``rateLimits`` as the method's page shows it)

    order.place          0, 1   ORDERS 10s, ORDERS 1m, REQUEST_WEIGHT 1m   POST   /fapi/v1/order
    order.status         1      REQUEST_WEIGHT 1m                          GET    /fapi/v1/order
    order.cancel         1      REQUEST_WEIGHT 1m                          DELETE /fapi/v1/order
    algoOrder.place      0      REQUEST_WEIGHT 1m                          POST   /fapi/v1/algoOrder
    algoOrder.cancel     1      REQUEST_WEIGHT 1m                          DELETE /fapi/v1/algoOrder
    account.position     5      REQUEST_WEIGHT 1m                          GET    /fapi/v2/positionRisk
    v2/account.position  5      REQUEST_WEIGHT 1m                          GET    /fapi/v3/positionRisk
    session.status       2      unsigned: the connection's session (never logged on here)
    session.logout       2      unsigned: as session.status (nothing to forget)

The weight is the IP's and shared with REST (the server keeps one count); the handshake
costs 5. ``returnRateLimits=false`` in the connection URL hides ``rateLimits``; the same
boolean in a request's ``params`` overrides it for that request.

What is refused, and how (Binance's USD-M pages do not document these answers; the sim
follows Binance's WebSocket API family, whose spot error list has -1135 INVALID_JSON with
these texts, and answers a method it does not serve like an unsupported operation):

    frame not JSON, not an object          400, id null, -1135 "Invalid JSON request"
    id neither integer, string nor null    400, id null, -1135 "Invalid 'id' in JSON request; ..."
    params not an object                   400, -1135 "Invalid 'params' in JSON request; expected an object."
    method missing or not a string         400, -1135 "Invalid 'method' in JSON request; expected a string."
    a parameter that is an object or list  400, -1130 "Data sent for parameter '<name>' is not valid."
    a method the sim does not serve        400, -1020 "This operation is not supported."
      (``order.modify``, ``session.logon``: Binance logs on Ed25519 keys only, the sim's key
      is HMAC; the account and user-data-stream methods)

Not modelled: a request-rate limit per connection (429/418 come only from the REST faults),
the 24-hour connection limit and the server's 3-minute pings (aiohttp answers client pings).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

import orjson

from common.errors import DecodeError

PATH = "/ws-fapi/v1"
HANDSHAKE_WEIGHT = 5  # "WebSocket handshake attempt costs 5 weight."
WEIGHT_PER_MIN = 2_400
ORDERS_PER_10S = 300
ORDERS_PER_MIN = 1_200
MINUTE_MS = 60_000
TEN_S_MS = 10_000
ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")  # the WebSocket API's request id rule
MAX_ID = 2**63 - 1

E_JSON = (-1135, "Invalid JSON request")
E_ID = (-1135, "Invalid 'id' in JSON request; expected an integer, a string matching '^[a-zA-Z0-9-_]{1,36}$', "
               "or null.")
E_PARAMS = (-1135, "Invalid 'params' in JSON request; expected an object.")
E_METHOD = (-1135, "Invalid 'method' in JSON request; expected a string.")
E_UNSUPPORTED = (-1020, "This operation is not supported.")


@dataclass(frozen=True)
class Method:
    weight: int
    orders: int = 0  # counted in ORDERS 10s / 1m and shown in the answer's rateLimits
    signed: bool = True


METHODS: dict[str, Method] = {
    "order.place": Method(weight=0, orders=1),
    "order.status": Method(weight=1),
    "order.cancel": Method(weight=1),
    "algoOrder.place": Method(weight=0),
    "algoOrder.cancel": Method(weight=1),
    "account.position": Method(weight=5),
    "v2/account.position": Method(weight=5),
    "session.status": Method(weight=2, signed=False),
    "session.logout": Method(weight=2, signed=False),
}


class WsApiError(Exception):
    """A request refused before (or instead of) running: the answer's status, code and text."""

    def __init__(self, code: int, msg: str, status: int = 400, req_id: Any = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status, self.req_id = code, msg, status, req_id


@dataclass(frozen=True, kw_only=True)
class Request:
    id: int | str | None
    method: str
    params: dict[str, str]  # every value as its text (see ``_text``); nulls left out
    return_rate_limits: bool | None = None  # the request's own ``returnRateLimits``, if sent


@dataclass(frozen=True, kw_only=True)
class Usage:
    """The IP's weight and the account's order counts, per calendar window (shared with REST)."""

    minute: int = -1
    ten_s: int = -1
    weight_1m: int = 0
    orders_1m: int = 0
    orders_10s: int = 0


# ---------------------------------------------------------------------------- requests
def _literal_float(text: str) -> str:
    return text  # keep a JSON number's own text: it is what the client signed


def _no_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not JSON")  # NaN / Infinity


def _text(name: str, value: Any) -> str:
    """A parameter's value as it enters the signed text and the REST parsers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):  # numbers with a fraction arrive as their literal text
        return str(value)
    raise WsApiError(-1130, f"Data sent for parameter '{name}' is not valid.")


def parse(frame: str | bytes) -> Request:
    """One text frame -> ``Request``; ``WsApiError`` (with the id when readable) otherwise."""
    try:
        body = json.loads(frame, parse_float=_literal_float, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError, DecodeError):  # DecodeError: _no_constant
        raise WsApiError(*E_JSON) from None
    if not isinstance(body, dict):
        raise WsApiError(*E_JSON)
    rid = body.get("id")
    if isinstance(rid, bool) or not (rid is None or (isinstance(rid, int) and 0 <= rid <= MAX_ID)
                                     or (isinstance(rid, str) and ID_RE.match(rid))):
        raise WsApiError(*E_ID)
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise WsApiError(*E_METHOD, req_id=rid)
    raw = body.get("params", {})
    if not isinstance(raw, dict):
        raise WsApiError(*E_PARAMS, req_id=rid)
    try:
        params = {k: _text(k, v) for k, v in raw.items() if v is not None}
    except WsApiError as exc:
        raise WsApiError(exc.code, exc.msg, req_id=rid) from None
    rrl = params.get("returnRateLimits")
    return Request(id=rid, method=method, params=params,
                   return_rate_limits=None if rrl is None else rrl.lower() == "true")


def method_of(req: Request) -> Method:
    m = METHODS.get(req.method)
    if m is None:
        raise WsApiError(*E_UNSUPPORTED, req_id=req.id)
    return m


def shows_rate_limits(req: Request, connection_default: bool) -> bool:
    return connection_default if req.return_rate_limits is None else req.return_rate_limits


# ---------------------------------------------------------------------------- rate limits
def roll(u: Usage, now_ms: int) -> Usage:
    minute, ten_s = now_ms // MINUTE_MS, now_ms // TEN_S_MS
    if minute != u.minute:
        u = replace(u, minute=minute, weight_1m=0, orders_1m=0)
    if ten_s != u.ten_s:
        u = replace(u, ten_s=ten_s, orders_10s=0)
    return u


def spend(u: Usage, now_ms: int, *, weight: int = 0, orders: int = 0) -> Usage:
    """The usage after a request of ``weight`` placing ``orders`` orders at ``now_ms``."""
    u = roll(u, now_ms)
    return replace(u, weight_1m=u.weight_1m + weight, orders_1m=u.orders_1m + orders,
                   orders_10s=u.orders_10s + orders)


def rate_limits(u: Usage, method: Method | None) -> list[dict[str, Any]]:
    """The ``rateLimits`` array of an answer, as the method's page lists it."""
    weight = {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
              "limit": WEIGHT_PER_MIN, "count": u.weight_1m}
    if method is None or not method.orders:
        return [weight]
    return [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": ORDERS_PER_10S,
             "count": u.orders_10s},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": ORDERS_PER_MIN,
             "count": u.orders_1m}, weight]


# ---------------------------------------------------------------------------- answers
def ok(req_id: Any, result: Any, limits: list[dict[str, Any]] | None) -> bytes:
    body: dict[str, Any] = {"id": req_id, "status": 200, "result": result}
    if limits is not None:
        body["rateLimits"] = limits
    return orjson.dumps(body)


def error(req_id: Any, status: int, code: int, msg: str, limits: list[dict[str, Any]] | None) -> bytes:
    body: dict[str, Any] = {"id": req_id, "status": status, "error": {"code": code, "msg": msg}}
    if limits is not None:
        body["rateLimits"] = limits
    return orjson.dumps(body)


def session(*, connected_ms: int, now_ms: int, return_rate_limits: bool) -> dict[str, Any]:
    """``session.status`` / ``session.logout``: a connection that never logged on."""
    return {"apiKey": None, "authorizedSince": None, "connectedSince": connected_ms,
            "returnRateLimits": return_rate_limits, "serverTime": now_ms}


def connection_rate_limits(query: Mapping[str, str]) -> bool:
    """The connection's default from its URL (``?returnRateLimits=false``); True otherwise."""
    return query.get("returnRateLimits", "true").lower() != "false"
