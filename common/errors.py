"""One small error hierarchy for the whole engine.

Every error we raise on purpose is an ``AegisError``. It is split by what the caller
should do next:

- ``TransientError``: the operation may succeed if retried (network blip, rate limit).
- ``DefinitiveError``: retrying will not help; give up and report (bad input, rejected order).
- ``AmbiguousError``: the outcome is unknown (a timeout after an order was sent): query the
  state first, and only then decide whether to retry.

Exchange answers are mapped in one table, ``EXCHANGE_ERRORS`` (Binance code -> class and
reason), by the pure ``classify``; ``exchange_error`` builds the exception.

Decoders raise ``DecodeError`` (definitive) for anything malformed; fuzz tests assert that
nothing but ``AegisError`` subclasses ever escapes a decoder.

Which class for bad input from outside (every one carries a ``reason``, a counter label):

- ``ConfigError``: a configuration value or a command-line argument (a setting, ``--from``).
- ``DecodeError``: bytes or records that cannot be read: a frame, an exchange answer, a
  saved state file, a CSV row, a checksum line.
- ``DataError``: data that reads fine but may not be used as asked: an archive named as
  another kind, a day overlapping a stored month, records out of time order, a record too
  large to store.
- ``RingError`` and ``StoreError``: the shared-memory ring and the journal database.

None of them is a ``ValueError``. A plain ``ValueError`` is left only for a programmer's misuse
of a function's arguments, or where a caller needs one (msgspec turns a ``__post_init__``
ValueError into its ValidationError), each with a comment saying why;
tests/unit/test_error_vocabulary.py keeps the list of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class AegisError(Exception):
    """Base of every error AEGIS raises on purpose."""

    #: short machine-readable reason, used as a counter label
    reason: str = "error"
    #: set when the error is an exchange's answer (see ``exchange_error``); 0 otherwise
    code: int = 0
    http_status: int = 0
    #: how long to back off before retrying (a rate limit's Retry-After), seconds; 0 = no advice
    retry_after_s: float = 0.0

    def __init__(self, message: str, *, reason: str | None = None, code: int = 0,
                 http_status: int = 0, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.code = code
        self.http_status = http_status
        self.retry_after_s = retry_after_s


class TransientError(AegisError):
    """Retry later: the same call may succeed."""

    reason = "transient"


class DefinitiveError(AegisError):
    """Do not retry: the same call will fail the same way."""

    reason = "definitive"


class AmbiguousError(AegisError):
    """Outcome unknown: query the real state before any retry."""

    reason = "ambiguous"


class ConfigError(DefinitiveError):
    """Configuration is invalid (unknown field, wrong type, impossible value)."""

    reason = "config"


class DecodeError(DefinitiveError):
    """A frame, message or record could not be decoded or failed validation."""

    reason = "decode"


class DataError(DefinitiveError):
    """Data that reads fine but is refused as asked: a file named as another kind or symbol,
    sources that overlap, records out of time order or too large for the format."""

    reason = "data"


class RingError(DefinitiveError):
    """A ring segment is unusable (wrong magic, version, size or layout)."""

    reason = "ring"


class StoreError(TransientError):
    """The journal database could not be read (absent schema, locked, damaged): a reader
    goes on with what it has and may ask again later (``common/journal_store.py``)."""

    reason = "store"


# ---------------------------------------------------------------------------- the exchange
# Binance error code -> (class, reason): the one place that says what a code means for the
# caller. ``AmbiguousError`` here means "the request may have been executed"; ``classify``
# turns it into ``TransientError`` for a request that changes nothing (a read), where the
# only consequence of not knowing is that we ask again.
RATE_LIMIT = "rate_limit"
EXCHANGE_ERRORS: dict[int, tuple[type[AegisError], str]] = {
    # 10xx: server and connectivity. Binance: "execution status unknown" for these.
    -1000: (AmbiguousError, "server_error"),  # UNKNOWN: unknown error while processing
    -1001: (AmbiguousError, "server_error"),  # DISCONNECTED: internal error
    -1006: (AmbiguousError, "server_error"),  # UNEXPECTED_RESP from the message bus
    -1007: (AmbiguousError, "server_timeout"),  # TIMEOUT waiting for the backend
    -1008: (TransientError, "overloaded"),  # SERVER_BUSY: refused before processing
    -1003: (TransientError, RATE_LIMIT),  # TOO_MANY_REQUESTS (and the IP ban of HTTP 418)
    -1015: (TransientError, RATE_LIMIT),  # TOO_MANY_ORDERS
    -1021: (TransientError, "timestamp"),  # INVALID_TIMESTAMP: resync server time, then retry
    -5028: (TransientError, "timestamp"),  # outside the matching engine's recvWindow: not executed
    -1002: (DefinitiveError, "auth"),  # UNAUTHORIZED
    -1022: (DefinitiveError, "auth"),  # INVALID_SIGNATURE
    -2014: (DefinitiveError, "auth"),  # BAD_API_KEY_FMT
    -2015: (DefinitiveError, "auth"),  # REJECTED_MBX_KEY: key, IP or permissions
    # 11xx: the request itself (the -1100..-1130 range below covers the rest)
    -1111: (DefinitiveError, "filter"),  # BAD_PRECISION: more decimals than the symbol allows
    -1121: (DefinitiveError, "bad_symbol"),  # BAD_SYMBOL
    # 20xx: orders
    -2010: (DefinitiveError, "rejected"),  # NEW_ORDER_REJECTED
    -2011: (DefinitiveError, "unknown_order"),  # CANCEL_REJECTED: unknown (or already final) order
    -2013: (DefinitiveError, "unknown_order"),  # NO_SUCH_ORDER
    -2018: (DefinitiveError, "insufficient_margin"),  # BALANCE_NOT_SUFFICIENT
    -2019: (DefinitiveError, "insufficient_margin"),  # MARGIN_NOT_SUFFICIEN(T)
    -2021: (DefinitiveError, "would_trigger"),  # ORDER_WOULD_IMMEDIATELY_TRIGGER
    -2022: (DefinitiveError, "reduce_only"),  # REDUCE_ONLY_REJECT
    -2020: (DefinitiveError, "unfillable"),  # UNABLE_TO_FILL (no liquidity to take)
    -5021: (DefinitiveError, "unfillable"),  # FOK order could not be filled at once
    -5022: (DefinitiveError, "unfillable"),  # post-only (GTX) order would have taken
    -1020: (DefinitiveError, "bad_request"),  # UNSUPPORTED_OPERATION
    # 40xx: filters and account settings
    -1013: (DefinitiveError, "filter"),  # "Filter failure: ..."
    -4001: (DefinitiveError, "filter"),  # PRICE_LESS_THAN_ZERO
    -4002: (DefinitiveError, "filter"),  # PRICE_GREATER_THAN_MAX_PRICE
    -4003: (DefinitiveError, "filter"),  # QTY_LESS_THAN_ZERO
    -4004: (DefinitiveError, "filter"),  # QTY_LESS_THAN_MIN_QTY
    -4005: (DefinitiveError, "filter"),  # QTY_GREATER_THAN_MAX_QTY
    -4013: (DefinitiveError, "filter"),  # PRICE_LESS_THAN_MIN_PRICE
    -4014: (DefinitiveError, "filter"),  # PRICE_NOT_INCREASED_BY_TICK_SIZE
    -4016: (DefinitiveError, "filter"),  # limit price above mark * multiplierUp (PERCENT_PRICE)
    -4023: (DefinitiveError, "filter"),  # QTY_NOT_INCREASED_BY_STEP_SIZE
    -4024: (DefinitiveError, "filter"),  # limit price below mark * multiplierDown (PERCENT_PRICE)
    -4131: (DefinitiveError, "filter"),  # MARKET_ORDER_REJECT: counterparty price beyond PERCENT_PRICE
    -4164: (DefinitiveError, "filter"),  # MIN_NOTIONAL (unless reduce-only)
    -4028: (DefinitiveError, "bad_request"),  # INVALID_LEVERAGE
    -4116: (DefinitiveError, "duplicate_client_id"),  # DUPLICATED_CLIENT_ORDER_ID
    -4046: (DefinitiveError, "no_change"),  # NO_NEED_TO_CHANGE_MARGIN_TYPE: already so, harmless
    -4059: (DefinitiveError, "no_change"),  # NO_NEED_TO_CHANGE_POSITION_SIDE: already so, harmless
    -4047: (DefinitiveError, "position_open"),  # margin type: open orders exist
    -4048: (DefinitiveError, "position_open"),  # margin type: a position exists
    -4067: (DefinitiveError, "position_open"),  # position side: open orders exist
    -4068: (DefinitiveError, "position_open"),  # position side: a position exists
}
BAD_REQUEST_CODES = range(-1130, -1099)  # -1100..-1130: malformed or missing parameters
RATE_LIMIT_STATUSES = frozenset({418, 429})  # 429 over the limit, 418 IP banned for it
DEFAULT_RETRY_AFTER_S = 1.0  # a rate limit without Retry-After: Binance's windows are >= 1 s


@dataclass(frozen=True, kw_only=True)
class ExchangeReply:
    """An error answer as the exchange gave it: HTTP status, Binance code and message.

    ``code`` is None when the body had none (a bare 5xx, a gateway page);
    ``retry_after_s`` is the Retry-After header (None when absent)."""

    http_status: int = 0
    code: int | None = None
    msg: str = ""
    retry_after_s: float | None = None


def classify(code: int | None, http_status: int = 0, *,
             mutating: bool = False) -> tuple[type[AegisError], str]:
    """(error class, reason) for an exchange error. Pure.

    ``mutating``: the request changes state at the exchange (a new order, a cancel). Only then
    can an unknown outcome be ambiguous; for a read it is simply transient.

    Order of precedence: HTTP 429/418 (rate limit, whatever the body), the code table, the
    -1100..-1130 parameter range, a 5xx (Binance: "execution status unknown"), then any other
    answer is a refusal (4xx: the request is at fault; retrying sends the same request)."""
    cls: type[AegisError]
    if http_status in RATE_LIMIT_STATUSES:
        cls, reason = TransientError, RATE_LIMIT
    elif code is not None and code in EXCHANGE_ERRORS:
        cls, reason = EXCHANGE_ERRORS[code]
    elif code is not None and code in BAD_REQUEST_CODES:
        cls, reason = DefinitiveError, "bad_request"
    elif http_status >= 500:
        cls, reason = AmbiguousError, "server_error"
    else:
        cls, reason = DefinitiveError, "rejected"
    if cls is AmbiguousError and not mutating:
        cls = TransientError
    return cls, reason


def exchange_error(reply: ExchangeReply, *, mutating: bool = False, context: str = "") -> AegisError:
    """The exception to raise for ``reply``, carrying its code, status and back-off."""
    cls, reason = classify(reply.code, reply.http_status, mutating=mutating)
    retry_after = reply.retry_after_s
    if retry_after is None and reason == RATE_LIMIT:
        retry_after = DEFAULT_RETRY_AFTER_S
    head = f"{context}: " if context else ""
    return cls(f"{head}binance {reply.code} {reply.msg} (HTTP {reply.http_status})", reason=reason,
               code=reply.code or 0, http_status=reply.http_status, retry_after_s=retry_after or 0.0)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (Binance sends seconds); None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: Binance does not send one; the caller's default applies
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
