"""Binance's SIGNED request check (pure): API key, HMAC-SHA256 signature, timestamp window.

Binance signs ``totalParams``: the query string concatenated with the request body, as
sent (still percent-encoded), without the ``signature`` parameter. ccxt puts everything in
the query string for GET and DELETE and in a form-encoded body for POST, with
``signature`` last; both places are read here, and the signature may be in either.

The timing rule is Binance's: a request is accepted when
``timestamp < server_time + 1000`` and ``server_time - timestamp <= recvWindow``
(default 5,000 ms, at most 60,000). Answers, in the order they are checked:

- no ``X-MBX-APIKEY``: -2014 ``API-key format invalid.`` (HTTP 401)
- another key: -2015 ``Invalid API-key, IP, or permissions for action.`` (HTTP 401)
- no ``timestamp``/``signature``: -1102; a bad ``recvWindow``: -1131
- wrong signature: -1022 ``Signature for this request is not valid.``
- too far ahead: -1021 ``Timestamp for this request was 1000ms ahead of the server's time.``
- too old: -1021 ``Timestamp for this request is outside of the recvWindow.``
  (both texts are Binance's documented ones: ``tests/data/binance_usdm/binance_docs_rest_examples.json``)
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qsl

from services.exchange_sim.rest import RestError, mandatory

RECV_WINDOW_DEFAULT_MS = 5_000
RECV_WINDOW_MAX_MS = 60_000
AHEAD_LIMIT_MS = 1_000  # a client clock up to 1 s fast is tolerated


@dataclass(frozen=True, kw_only=True)
class SignedRequest:
    api_key: str | None  # the X-MBX-APIKEY header
    query: str  # the raw query string, as sent
    body: str  # the raw form body, as sent ("" for GET/DELETE)


def sign(payload: str, secret: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _without_signature(raw: str) -> tuple[str, str | None]:
    """(``raw`` minus its ``signature=`` part, that signature if any)."""
    keep, sig = [], None
    for part in raw.split("&") if raw else ():
        if part.startswith("signature="):
            sig = part[len("signature="):]
        else:
            keep.append(part)
    return "&".join(keep), sig


def params_of(req: SignedRequest) -> dict[str, str]:
    """Query and body parameters but the signature, decoded (the body's win a clash)."""
    params = {**dict(parse_qsl(req.query, keep_blank_values=True)),
              **dict(parse_qsl(req.body, keep_blank_values=True))}
    params.pop("signature", None)
    return params


def verify(req: SignedRequest, *, api_key: str, api_secret: str, now_ms: int) -> dict[str, str]:
    """The request's parameters if it is properly signed and timely, else ``RestError``."""
    if not req.api_key:
        raise RestError(-2014, "API-key format invalid.", 401)
    if not hmac.compare_digest(req.api_key.encode(), api_key.encode()):
        raise RestError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    params = params_of(req)
    ts_raw = params.get("timestamp", "")
    if not ts_raw.isdigit():
        raise mandatory("timestamp")
    rw_raw = params.get("recvWindow")
    if rw_raw is None or rw_raw == "":
        recv_window = RECV_WINDOW_DEFAULT_MS
    elif rw_raw.isdigit() and 0 < int(rw_raw) <= RECV_WINDOW_MAX_MS:
        recv_window = int(rw_raw)
    else:
        raise RestError(-1131, f"recvWindow must be less than {RECV_WINDOW_MAX_MS}")
    query, sig_q = _without_signature(req.query)
    body, sig_b = _without_signature(req.body)
    sig = sig_b if sig_b is not None else sig_q
    if not sig:
        raise mandatory("signature")
    if not hmac.compare_digest(sign(query + body, api_secret).encode(), sig.lower().encode()):
        raise RestError(-1022, "Signature for this request is not valid.")
    ts = int(ts_raw)
    if ts >= now_ms + AHEAD_LIMIT_MS:
        raise RestError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if now_ms - ts > recv_window:
        raise RestError(-1021, "Timestamp for this request is outside of the recvWindow.")
    return params
