"""Live control messages on a stream connection, answered like Binance.

``{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}`` -> ``{"result":null,"id":1}``;
``UNSUBSCRIBE`` likewise; ``LIST_SUBSCRIPTIONS`` -> ``{"result":["btcusdt@trade"],"id":3}``;
``SET_PROPERTY ["combined", true]`` / ``GET_PROPERTY ["combined"]``.

Errors use Binance's ``{"error":{"code":N,"msg":"..."},"id":N}`` with its codes: 0 unknown
property, 1 wrong value type, 2 invalid request, 3 invalid JSON. Where real Binance would
accept a stream it does not serve and stay silent, the sim answers code 2 naming the stream
(unknown symbol or channel, or more than 200 streams) and changes nothing: a typo in a test
should fail loudly, not look like a quiet market.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.exchange_sim import render
from services.exchange_sim.hub import Connection, Hub, StreamError

METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


def handle(hub: Hub, conn: Connection, text: str | bytes) -> bytes:
    """Apply one control message to ``conn``'s subscriptions; returns the reply payload."""
    try:
        msg: Any = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return render.ws_error(3, f"Invalid JSON: {exc}")
    if not isinstance(msg, dict):
        return render.ws_error(2, "Invalid request: expected an object")
    req_id = msg.get("id")
    if isinstance(req_id, bool) or not isinstance(req_id, int) or req_id < 0:
        return render.ws_error(2, "Invalid request: request ID must be an unsigned integer")
    method = msg.get("method")
    params = msg.get("params", [])
    if method not in METHODS:
        return render.ws_error(
            2, f"Invalid request: unknown variant `{method}`, expected one of "
               "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
            req_id)
    if not isinstance(params, list):
        return render.ws_error(2, "Invalid request: params must be an array", req_id)
    if method == "LIST_SUBSCRIPTIONS":
        return render.reply(list(conn.streams), req_id)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not all(isinstance(p, str) for p in params):
            return render.ws_error(2, "Invalid request: stream names must be strings", req_id)
        try:
            if method == "SUBSCRIBE":
                hub.subscribe(conn, params)
            else:
                hub.unsubscribe(conn, [p for p in params if p in conn.streams])
        except StreamError as exc:
            return render.ws_error(2, f"Invalid request: {exc}", req_id)
        return render.reply(None, req_id)
    if not params or not isinstance(params[0], str):
        return render.ws_error(2, "Invalid request: property name must be a string", req_id)
    if params[0] != "combined":
        return render.ws_error(0, "Unknown property", req_id)
    if method == "GET_PROPERTY":
        return render.reply(conn.combined, req_id)
    if len(params) < 2 or not isinstance(params[1], bool):
        return render.ws_error(1, "Invalid value type: expected Boolean", req_id)
    hub.set_combined(conn, params[1])
    return render.reply(None, req_id)
