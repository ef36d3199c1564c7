"""What both order state machines share (``venue.orders`` for plain orders,
``venue.algo_orders`` for the protective orders the exchange holds): the events that tell a
request's fate, whatever it asked for, Binance's rules for a request, and the kinds of error
both report.

Each machine adds its own events (an order's ``Ack`` carries its exchange order id, its fills
come as ``TradeFill``; a protective order's ``Ack`` carries its algo id, its statuses come as
``Update``) and its own ``QueryResult`` (other fields), and keeps its own table and handlers:
the two life cycles differ (an order fills, partly or wholly; a protective order triggers, then
finishes, and never fills itself), so each table stays whole in its module, readable alone.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RECV_WINDOW_MS = 5_000  # Binance's default recvWindow
CLOCK_MARGIN_MS = 1_000  # Binance refuses timestamps >1 s ahead of it: our clock is kept that close
DUPLICATE_CLIENT_ID_CODE = -4116  # "ClientOrderId is duplicated" (clientAlgoId too)

# error kinds both machines report
INVALID_TRANSITION = "INVALID_TRANSITION"  # the table does not allow this event here
INVALID_EVENT = "INVALID_EVENT"  # malformed: NaN, non-positive, unknown status, ...
NOT_FOUND_AFTER_ACK = "NOT_FOUND_AFTER_ACK"  # the exchange forgot an order it confirmed
STATUS_CONFLICT = "STATUS_CONFLICT"  # the exchange contradicts a final state

REASON_CHARS = 200  # a refusal's message kept with an order: Binance's "msg" fits, a long error cannot grow a record


def attempt_dead_after_ms(last_sent_ms: int, recv_window_ms: int) -> int:
    """When an attempt sent at ``last_sent_ms`` can no longer arrive: Binance refuses a request
    whose signed timestamp is more than ``recvWindow`` old, and our clock is within
    ``CLOCK_MARGIN_MS`` of the exchange's. Only a "not found" asked after this time proves the
    attempt dead."""
    return last_sent_ms + recv_window_ms + CLOCK_MARGIN_MS


def bad_time(t: object) -> bool:
    """An event's time that is not an integer of milliseconds (a bool is not one)."""
    return isinstance(t, bool) or not isinstance(t, int)


def refusal_code(err: BaseException) -> int:
    """Binance's error code of a refused request (0 when the error carries none); a broker's
    "client id taken", however it is worded, is -4116, the one code both machines act on."""
    if getattr(err, "reason", "") == "duplicate_client_id":
        return DUPLICATE_CLIENT_ID_CODE
    return int(getattr(err, "code", 0) or 0)


# ---------------------------------------------------------------------------- events
@dataclass(frozen=True, kw_only=True)
class Send:
    """The request is going out: the timestamp signed into it."""

    at_ms: int  # the timestamp signed into the request


@dataclass(frozen=True, kw_only=True)
class Reject:
    """The exchange refused the request (``code``: Binance's error code)."""

    attempt: int  # which send this answers (the order's send_count when it was sent)
    code: int = 0
    message: str = ""  # kept with the order up to ``REASON_CHARS`` characters


@dataclass(frozen=True, kw_only=True)
class CancelRequest:
    """We want it cancelled (a cancel is sent if the exchange holds it)."""


@dataclass(frozen=True, kw_only=True)
class CancelRejected:
    """The exchange refused the cancel."""

    code: int = 0  # e.g. -2011 unknown: it may have filled, triggered or finished meanwhile
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class Canceled:
    """The exchange cancelled it."""


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """No answer in time: the outcome is unknown, the exchange is asked before anything else."""

    at_ms: int
