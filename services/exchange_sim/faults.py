"""Fault injection for tests: ``POST /_sim/fault`` with one JSON object.

Actions (``conn`` is a connection id from ``GET /_sim/stats`` or ``"all"``):

- ``{"action": "close", "conn": 3, "code": 1001}``: close the WebSocket with a close frame;
  ``"abort": true`` drops the TCP connection instead (no close frame, like a network cut).
- ``{"action": "stall", "conn": "all", "seconds": 12}``: send nothing for that long; frames
  due meanwhile are dropped (the client sees silence, then a gap in the ids).
- ``{"action": "poison", "conn": "all", "kind": "garbage"}``: send one bad frame ahead of
  the next data; ``kind`` is one of ``POISON`` below, or ``"frames": ["raw text", ...]``.
- ``{"action": "http_error", "status": 429, "count": 3, "path": "/fapi/v1/klines"}``: the
  next ``count`` REST requests whose path starts with ``path`` (default ``/fapi/``) get that
  status with Binance's body (429/418: code -1003 plus ``Retry-After``; 5xx: -1001);
  ``code``/``msg`` override the body (400 with ``code: -2019`` injects a margin refusal,
  ``-1021`` a timestamp one); ``"method": "POST"`` limits it to one HTTP method. It covers
  the signed trading endpoints too, and the request is then not executed.
- ``{"action": "order_timeout", "count": 1, "seconds": 15}``: the next ``count``
  ``POST /fapi/v1/order`` requests are executed (the order is created and may fill) but
  answered only ``seconds`` later: a client with a shorter timeout sees a timeout while
  the order is live at the exchange.
- ``{"action": "clock_skew", "ms": 3000}``: the sim's trading clock (``/fapi/v1/time``,
  order and fill times, the signed requests' timestamp check) runs ``ms`` behind its
  market clock, so a client that does not sync its time looks ``ms`` ahead (-1021 beyond
  1000 ms); a negative ``ms`` puts it ahead (the client looks late: -1021 beyond its
  ``recvWindow``); ``0`` ends the skew.
- ``{"action": "user_stream_close", "code": 1001}``: close every user data stream connection
  (``"abort": true``: drop the TCP connection, no close frame); the listenKey stays valid.
- ``{"action": "listen_key_expire"}``: the active listenKey expires now, as if it had not
  been kept alive: its connections get ``listenKeyExpired`` and nothing more.
- ``{"action": "ws_api_drop", "count": 1, "when": "executed"}``: the next ``count`` WebSocket
  API requests (``/ws-fapi/v1``) lose their connection mid-request: ``"executed"`` (default)
  runs the request (an order is created and may fill) and then drops the TCP connection
  without an answer; ``"received"`` drops it before running anything. Either way the client
  cannot tell which happened: the outcome is unknown until it queries.
- ``{"action": "ws_api_refuse", "seconds": 5}``: for that long, WebSocket API connections are
  refused (HTTP 503 at the upgrade) and the open ones are dropped; REST keeps working.
- ``{"action": "clear"}``: forget pending HTTP, order and WebSocket API faults, end stalls and skew.

Parsing and validation are pure (``parse``); the server applies the result.

The same goes for the other test control that is not a fault, ``POST /_sim/price`` with
``{"symbol": "BTCUSDT", "price": "58900.00"}`` (``parse_price``): it moves the symbol's last
and mark price at once (see ``market.Market.set_price``). The price is a decimal string (or
a JSON number, read through its text) on the symbol's tick grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from common.errors import DecodeError

POISON = {
    "garbage": b"not json at all {{",
    # invalid UTF-8 in a text frame: a protocol error, conforming clients close with 1007
    "invalid_utf8": b"\xff\xfe\x00garbage",
    "truncated": b'{"stream":"btcusdt@trade","data":{"e":"trade","E":17231612',
    "wrong_types": b'{"stream":"btcusdt@trade","data":{"e":"trade","E":"x","T":null,"s":"BTCUSDT",'
                   b'"t":-1,"p":61800.3,"q":"abc","X":"MARKET","m":"no"}}',
    "unknown_event": b'{"stream":"btcusdt@trade","data":{"e":"somethingNew","E":0}}',
    "empty": b"",
}
ACTIONS = ("close", "stall", "poison", "http_error", "order_timeout", "clock_skew", "user_stream_close",
           "listen_key_expire", "ws_api_drop", "ws_api_refuse", "clear")
WS_API_DROP_WHEN = ("executed", "received")
HTTP_STATUSES = (400, 401, 403, 418, 429, 500, 502, 503, 504)
MAX_SKEW_MS = 86_400_000  # a day either way


class FaultError(DecodeError):
    """The fault request is malformed."""


@dataclass(frozen=True, kw_only=True)
class Fault:
    action: str
    conn: int | None = None  # None = every connection
    code: int = 1000  # close code (close)
    abort: bool = False
    seconds: float = 0.0  # stall
    frames: tuple[bytes, ...] = ()  # poison
    status: int = 0  # http_error
    count: int = 1
    path: str = "/fapi/"
    err_code: int | None = None
    err_msg: str | None = None
    method: str | None = None  # http_error: only this HTTP method (None = any)
    skew_ms: int = 0  # clock_skew
    when: str = "executed"  # ws_api_drop: after running the request, or before


@dataclass
class HttpFault:
    status: int
    remaining: int
    path: str
    code: int
    msg: str
    method: str | None = None


def parse(body: Any) -> Fault:
    if not isinstance(body, dict):
        raise FaultError("body must be a JSON object")
    action = body.get("action")
    if action not in ACTIONS:
        raise FaultError(f"action must be one of {ACTIONS}")
    conn_raw = body.get("conn", "all")
    if conn_raw == "all":
        conn = None
    elif isinstance(conn_raw, int) and not isinstance(conn_raw, bool):
        conn = conn_raw
    else:
        raise FaultError("conn must be a connection id or 'all'")
    if action in ("close", "user_stream_close"):
        code = body.get("code", 1000)
        if not isinstance(code, int) or not 1000 <= code <= 4999:
            raise FaultError("code must be a WebSocket close code")
        return Fault(action=action, conn=conn, code=code, abort=bool(body.get("abort", False)))
    if action == "stall":
        seconds = body.get("seconds")
        if not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
            raise FaultError("seconds must be within (0, 3600]")
        return Fault(action=action, conn=conn, seconds=float(seconds))
    if action == "poison":
        if "frames" in body:
            frames = body["frames"]
            if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
                raise FaultError("frames must be a list of strings")
            return Fault(action=action, conn=conn, frames=tuple(f.encode() for f in frames))
        kind = body.get("kind", "garbage")
        if kind not in POISON:
            raise FaultError(f"kind must be one of {tuple(POISON)}")
        return Fault(action=action, conn=conn, frames=(POISON[kind],))
    if action == "http_error":
        status = body.get("status")
        if status not in HTTP_STATUSES:
            raise FaultError(f"status must be one of {HTTP_STATUSES}")
        count = body.get("count", 1)
        path = body.get("path", "/fapi/")
        if not isinstance(count, int) or count < 1 or not isinstance(path, str):
            raise FaultError("count must be a positive integer and path a string")
        code, msg = body.get("code"), body.get("msg")
        if (code is not None and not isinstance(code, int)) or (msg is not None and not isinstance(msg, str)):
            raise FaultError("code must be an integer and msg a string")
        method = body.get("method")
        if method is not None and method not in ("GET", "POST", "PUT", "DELETE"):
            raise FaultError("method must be GET, POST, PUT or DELETE")
        return Fault(action=action, status=status, count=count, path=path, err_code=code, err_msg=msg,
                     method=method)
    if action == "order_timeout":
        count, seconds = body.get("count", 1), body.get("seconds")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FaultError("count must be a positive integer")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds <= 3600:
            raise FaultError("seconds must be within (0, 3600]")
        return Fault(action=action, count=count, seconds=float(seconds))
    if action == "clock_skew":
        ms = body.get("ms")
        if not isinstance(ms, int) or isinstance(ms, bool) or not -MAX_SKEW_MS <= ms <= MAX_SKEW_MS:
            raise FaultError(f"ms must be an integer within +-{MAX_SKEW_MS}")
        return Fault(action=action, skew_ms=ms)
    if action == "listen_key_expire":
        return Fault(action=action)
    if action == "ws_api_drop":
        count, when = body.get("count", 1), body.get("when", "executed")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FaultError("count must be a positive integer")
        if when not in WS_API_DROP_WHEN:
            raise FaultError(f"when must be one of {WS_API_DROP_WHEN}")
        return Fault(action=action, count=count, when=when)
    if action == "ws_api_refuse":
        seconds = body.get("seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds <= 3600:
            raise FaultError("seconds must be within (0, 3600]")
        return Fault(action=action, seconds=float(seconds))
    return Fault(action="clear")


def http_fault(f: Fault, now_ms: int) -> HttpFault:
    """The error a REST request gets while this fault is armed (Binance's bodies)."""
    if f.status == 429:
        code, msg = -1003, ("Too many requests; current limit of IP(127.0.0.1) request weight per "
                            "1 MINUTE is 2400. Please use WebSocket Streams for live updates to "
                            "avoid polling the API.")
    elif f.status == 418:
        code, msg = -1003, (f"Way too many requests; IP(127.0.0.1) banned until {now_ms + 120_000}. "
                            "Please use the websocket for live updates to avoid bans.")
    elif f.status == 403:
        code, msg = -1002, "You are not authorized to execute this request."
    elif f.status == 401:
        code, msg = -2015, "Invalid API-key, IP, or permissions for action."
    elif f.status == 400:
        code, msg = -1000, "An unknown error occured while processing the request."
    else:
        code, msg = -1001, "Internal error; unable to process your request. Please try again."
    return HttpFault(status=f.status, remaining=f.count, path=f.path,
                     code=f.err_code if f.err_code is not None else code,
                     msg=f.err_msg if f.err_msg is not None else msg, method=f.method)


def take(pending: list[HttpFault], path: str, method: str = "GET") -> HttpFault | None:
    """The first armed fault matching ``path`` (and ``method``), consuming one of its uses."""
    for f in pending:
        if f.remaining > 0 and path.startswith(f.path) and (f.method is None or f.method == method):
            f.remaining -= 1
            if f.remaining == 0:
                pending.remove(f)
            return f
    return None


PRICE_RE = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")


def parse_price(body: Any) -> tuple[str, Decimal]:
    """``POST /_sim/price``: (symbol, price); ``FaultError`` when malformed."""
    if not isinstance(body, dict):
        raise FaultError("body must be a JSON object")
    symbol, raw = body.get("symbol"), body.get("price")
    if not isinstance(symbol, str) or not symbol:
        raise FaultError("symbol must be a symbol name")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise FaultError("price must be a decimal string")
    text = raw if isinstance(raw, str) else repr(raw)
    if not PRICE_RE.match(text) or Decimal(text) <= 0:
        raise FaultError("price must be a positive decimal")
    return symbol, Decimal(text)
