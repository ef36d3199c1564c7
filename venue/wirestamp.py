"""When an order's request bytes were handed to the exchange socket (tick-to-trade, issue 17).

A thread-local stamp, armed by the caller for the one broker call it wants timed (the brain's
dispatcher job that submits an order) and set by the transport at the moment the request has
left our code:

- WebSocket API (``ws_api.WsApiClient.call``): just after ``conn.send(frame)`` returned, i.e.
  the whole frame was written to the socket (websockets' sync client writes it with
  ``sendall`` before ``send`` returns);
- REST (ccxt -> requests -> urllib3): just before urllib3 asks for the answer
  (``HTTPConnection.getresponse``), i.e. after the request line, headers and body were all
  written to the socket (``install_http`` patches that one method, process-wide, once).

The first stamp of an armed call wins: a REST fallback after a WebSocket refusal to send is
the order's wire time; a fills fetch after the submit is not. Clock: ``time.time_ns``
(CLOCK_REALTIME), the clock of the feed's ``recv_ns`` in every ring record. Unarmed threads
pay one thread-local attribute read per call.
"""

from __future__ import annotations

import threading
import time

_tl = threading.local()
_installed = False
_lock = threading.Lock()


def arm() -> None:
    """Start timing the calling thread's next request."""
    _tl.ns = 0
    _tl.transport = ""
    _tl.armed = True


def disarm() -> tuple[int, str]:
    """Stop timing; (wall-clock ns the first request left, "ws" | "rest"), (0, "") if none did."""
    _tl.armed = False
    return getattr(_tl, "ns", 0), getattr(_tl, "transport", "")


def mark(transport: str) -> None:
    """Called by a transport right after a request's bytes were handed to the socket."""
    if getattr(_tl, "armed", False) and not _tl.ns:
        _tl.ns = time.time_ns()
        _tl.transport = transport


def install_http() -> None:
    """Stamp REST requests: urllib3's ``getresponse`` marks "rest" first (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        from urllib3.connection import HTTPConnection

        orig = HTTPConnection.getresponse

        def getresponse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if getattr(_tl, "armed", False):
                mark("rest")
            return orig(self, *args, **kwargs)

        HTTPConnection.getresponse = getresponse  # type: ignore[method-assign]
        _installed = True
