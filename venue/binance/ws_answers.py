"""Binance USD-M WebSocket API answers (pure): one answer frame decoded (``decode``: an
``Answer`` or ``DecodeError``, the only error it lets out), its ``rateLimits`` turned into the
header names the process governor reads (``rate_limit_headers``, ``governor_headers``: the
WebSocket API's weight and order counts are shared with REST), a refusal mapped through
``common.errors``' one table (``answer_error``). ``venue.binance.ws_api`` is the client that
uses them (and names them too, for its callers)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from common.errors import AegisError, DecodeError, ExchangeReply, exchange_error

_BANNED_UNTIL = re.compile(r"banned until (\d{13})")
_LIMIT_HEADERS = {("REQUEST_WEIGHT", "MINUTE", 1): "x-mbx-used-weight-1m",
                  ("ORDERS", "SECOND", 10): "x-mbx-order-count-10s",
                  ("ORDERS", "MINUTE", 1): "x-mbx-order-count-1m"}


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    kind: str  # REQUEST_WEIGHT | ORDERS
    interval: str  # SECOND | MINUTE | DAY
    num: int
    limit: int
    count: int


@dataclass(frozen=True, kw_only=True)
class Answer:
    id: int | str | None
    status: int
    result: Any = None  # status 200
    code: int | None = None  # otherwise
    msg: str = ""
    retry_after_ms: int | None = None  # error.data.retryAfter (an epoch time in ms), when sent
    rate_limits: tuple[RateLimit, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == 200


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise DecodeError(f"ws-api answer: {what} is not an integer", reason="ws_api_field")
    return v


def _rate_limits(raw: Any) -> tuple[RateLimit, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise DecodeError("ws-api answer: rateLimits is not a list", reason="ws_api_field")
    out = []
    for e in raw:
        if not isinstance(e, dict) or not isinstance(e.get("rateLimitType"), str) \
                or not isinstance(e.get("interval"), str):
            raise DecodeError("ws-api answer: malformed rateLimits entry", reason="ws_api_field")
        out.append(RateLimit(kind=e["rateLimitType"], interval=e["interval"],
                             num=_int(e.get("intervalNum"), "intervalNum"), limit=_int(e.get("limit"), "limit"),
                             count=_int(e.get("count"), "count")))
    return tuple(out)


def decode(frame: bytes | str) -> Answer:
    """An answer frame -> ``Answer``; anything malformed -> ``DecodeError`` (nothing else escapes)."""
    try:
        body = orjson.loads(frame)
    except (orjson.JSONDecodeError, TypeError):
        raise DecodeError("ws-api answer: not JSON", reason="ws_api_json") from None
    if not isinstance(body, dict):
        raise DecodeError("ws-api answer: not an object", reason="ws_api_shape")
    if "id" not in body:
        raise DecodeError("ws-api answer: no id", reason="ws_api_shape")
    rid = body["id"]
    if isinstance(rid, bool) or not (rid is None or isinstance(rid, (int, str))):
        raise DecodeError("ws-api answer: id is neither integer, string nor null", reason="ws_api_field")
    status = _int(body.get("status"), "status")
    limits = _rate_limits(body.get("rateLimits"))
    if status == 200:
        if "result" not in body:
            raise DecodeError("ws-api answer: status 200 without result", reason="ws_api_shape")
        return Answer(id=rid, status=status, result=body["result"], rate_limits=limits)
    err = body.get("error")
    if not isinstance(err, dict) or not isinstance(err.get("msg", ""), str):
        raise DecodeError("ws-api answer: error status without an error object", reason="ws_api_shape")
    code = err.get("code")
    if code is not None:
        code = _int(code, "error.code")
    data = err.get("data")
    retry = data.get("retryAfter") if isinstance(data, dict) else None
    return Answer(id=rid, status=status, code=code, msg=err.get("msg", ""), rate_limits=limits,
                  retry_after_ms=retry if isinstance(retry, int) and not isinstance(retry, bool) else None)


def rate_limit_headers(limits: tuple[RateLimit, ...]) -> dict[str, str]:
    """``rateLimits`` as the REST headers the governor observes (same budgets, same meaning)."""
    out: dict[str, str] = {}
    for r in limits:
        name = _LIMIT_HEADERS.get((r.kind, r.interval, r.num))
        if name is not None and r.count >= 0:
            out[name] = str(r.count)
    return out


def retry_after_s(answer: Answer, now_ms: int) -> float | None:
    """How long a 429/418 says to wait: ``retryAfter`` (epoch ms), else "banned until" in the text."""
    until = answer.retry_after_ms
    if until is None and (m := _BANNED_UNTIL.search(answer.msg)):
        until = int(m.group(1))
    return None if until is None else max(until - now_ms, 0) / 1000.0


def answer_error(answer: Answer, *, mutating: bool, context: str, now_ms: int) -> AegisError:
    """The exception for a refusal, by the one table in ``common.errors``."""
    reply = ExchangeReply(http_status=answer.status, code=answer.code, msg=answer.msg,
                          retry_after_s=retry_after_s(answer, now_ms))
    return exchange_error(reply, mutating=mutating, context=context)


def governor_headers(answer: Answer, now_ms: int) -> dict[str, str]:
    """Everything the governor reads from an answer: the counts, and a back-off for 429/418."""
    headers = rate_limit_headers(answer.rate_limits)
    if answer.status in (418, 429):
        wait = retry_after_s(answer, now_ms)
        if wait is not None:
            headers["retry-after"] = f"{wait:.3f}"
    return headers
