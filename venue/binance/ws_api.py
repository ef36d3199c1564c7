"""Binance USD-M WebSocket API client (``ws-fapi``): signed requests, answers matched by id.

Binance: ``wss://ws-fapi.binance.com/ws-fapi/v1`` (testnet ``wss://testnet.binancefuture.com/ws-fapi/v1``),
the USD-M page "WebSocket API General Info" and the method pages (``order.place``,
``order.status``, ``order.cancel``, ``algoOrder.place``, ``algoOrder.cancel``,
``account.position``/``v2/account.position``). One request per text frame,
``{"id", "method", "params"}``; one answer per frame, ``{"id", "status", "result" | "error",
"rateLimits"}``. Signed requests carry ``apiKey``, ``timestamp`` and ``signature`` =
HMAC-SHA256 of every parameter but ``signature``, sorted by name, ``name=value`` joined by ``&``.
A connection lives at most 24 hours; the server pings every 3 minutes and drops a connection
that has not answered for 10.

The core (pure, no sockets, clocks or threads)
----------------------------------------------
``signed_request`` builds a request's bytes; the answers' core is ``venue.binance.ws_answers``
(``decode`` turns an answer's bytes into an ``Answer`` or raises ``DecodeError``, the only
error a decoder lets out; ``rate_limit_headers`` turns its ``rateLimits`` into the header
names the process governor reads, the same budgets as REST; ``answer_error`` maps a refusal
through ``common.errors``' one table), named here too.

The shell (``WsApiClient``)
---------------------------
One connection, kept open by its own reader thread (connect, read, reconnect with backoff
doubling from 1 s to 30 s; a connection older than ``max_age_s`` is replaced when idle,
before Binance's 24-hour cut). ``call`` is blocking, for the dispatcher's threads: it signs,
writes the frame from the caller's thread (websockets' sync connection serialises writers),
then waits for the answer with that id. What can happen to a call:

    nothing was sent (no connection, not open)   WsUnavailable (Transient): safe to send elsewhere
    answer 200                                   the ``result``
    answer 4xx/5xx                               ``answer_error``: Transient / Definitive / Ambiguous
    connection lost after the frame left         AmbiguousError (mutating) / TransientError (read)
    no answer within ``timeout_ms``              the same; a late answer is counted and dropped

A request whose outcome is unknown is never sent again here: the caller queries by client
order id (``ws_broker`` does, then lets the order state machine decide), as on the REST path.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import orjson
import structlog

from common.errors import (
    AegisError, AmbiguousError, ConfigError, DecodeError, TransientError,
)
from venue import ratelimit, wirestamp
from venue.binance.ws_answers import (  # noqa: F401  (the answers' core, named here for callers)
    Answer, RateLimit, answer_error, decode, governor_headers, rate_limit_headers, retry_after_s,
)

log = structlog.get_logger(__name__)

PATH = "/ws-fapi/v1"
PRODUCTION_URL = "wss://ws-fapi.binance.com" + PATH
TESTNET_URL = "wss://testnet.binancefuture.com" + PATH
HANDSHAKE_WEIGHT = 5  # "WebSocket handshake attempt costs 5 weight"
CONNECTION_LIFETIME_S = 24 * 3600.0  # Binance disconnects a connection after 24 hours


def url_for(mode: str, *, testnet: bool, rest_url: str) -> str:
    """The WebSocket API of the exchange the REST broker talks to: Binance's (or its testnet's)
    when ``rest_url`` is empty, else the same host as ``rest_url`` (the sim, or another
    Binance-compatible host) with ws(s):// and ``/ws-fapi/v1``."""
    if not rest_url:
        return TESTNET_URL if testnet else PRODUCTION_URL
    parts = urlsplit(rest_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{PATH}"


# ---------------------------------------------------------------------------- the core
def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def payload(params: Mapping[str, Any]) -> str:
    """The signed text: every parameter but ``signature``, sorted by name, ``k=v`` joined by ``&``."""
    out = []
    for k in sorted(params):
        if k == "signature":
            continue
        v = params[k]
        out.append(k + "=" + (v if v.__class__ is str else _text(v)))  # str first: the common case, fast
    return "&".join(out)


def keyed(secret: str) -> Any:
    """The HMAC-SHA256 state after the key: copying it saves the key set-up on every request."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def sign(params: Mapping[str, Any], secret: str | Any) -> str:
    """Hex HMAC-SHA256 of ``payload(params)``; ``secret`` is the text or a ``keyed`` state."""
    h = keyed(secret) if isinstance(secret, str) else secret.copy()
    h.update(payload(params).encode())
    return h.hexdigest()


def signed_request(req_id: int | str, method: str, params: Mapping[str, Any], *, api_key: str, secret: str | Any,
                   timestamp_ms: int, recv_window_ms: int) -> bytes:
    """One request frame. Decimals go as strings, integers as JSON integers (as Binance asks)."""
    p: dict[str, Any] = {**params, "apiKey": api_key, "timestamp": timestamp_ms, "recvWindow": recv_window_ms}
    p["signature"] = sign(p, secret)
    return orjson.dumps({"id": req_id, "method": method, "params": p})


def request(req_id: int | str, method: str, params: Mapping[str, Any] | None = None) -> bytes:
    """An unsigned request (``session.status``)."""
    body: dict[str, Any] = {"id": req_id, "method": method}
    if params:
        body["params"] = dict(params)
    return orjson.dumps(body)


# ---------------------------------------------------------------------------- the shell
class WsUnavailable(TransientError):
    """Nothing was sent: there is no open connection. The same request may go by REST."""

    reason = "ws_unavailable"


@dataclass(frozen=True, kw_only=True)
class WsApiConfig:
    url: str  # ws(s)://host[:port]/ws-fapi/v1
    timeout_ms: int = 5_000  # an answer later than this: the outcome is unknown
    recv_window_ms: int = 5_000
    connect_timeout_s: float = 5.0
    backoff_initial_s: float = 1.0  # reconnect after 1 s, doubling ...
    backoff_max_s: float = 30.0  # ... up to 30 s
    max_age_s: float = CONNECTION_LIFETIME_S - 600.0  # replaced, when idle, 10 minutes before Binance's cut
    ping_interval_s: float = 20.0  # our own keepalive (we also answer the server's pings)
    rate_limit_wait_s: float = 10.0  # longest a call waits for the governor, then TransientError

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ConfigError(f"ws-api url must be ws:// or wss://host...: {self.url!r}")
        if self.timeout_ms <= 0 or not 0 < self.recv_window_ms <= 60_000:
            raise ConfigError("ws-api: timeout_ms > 0, recv_window_ms 1..60000")


@dataclass
class _Slot:
    method: str
    mutating: bool
    gen: int
    event: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None
    lost: bool = False


@dataclass(frozen=True, slots=True)
class Prepared:
    """A signed request made ready before it is needed (``WsApiClient.prepare``): its id, its
    signed JSON and the masked WebSocket frame that carries it, as they go on the socket.
    Sending it (``send_prepared``) is a socket write: no signing, no JSON, no framing. Its
    ``timestamp`` is the time it was prepared, so it is sent only while younger than
    ``PREPARED_MAX_AGE_MS`` (far inside Binance's ``recvWindow``); an older one is signed
    afresh at the send. Holds no secret: a signature covers only its own request."""

    rid: int
    method: str
    params: Mapping[str, Any]  # unsigned, for the fresh signature of a stale one
    prepared_ms: int  # local clock when signed
    text: bytes  # the signed JSON request
    wire: bytes  # the masked text frame around it


PREPARED_MAX_AGE_MS = 1_500  # the lane re-prepares every second (services.brain.exit_lane)


def masked_text_frame(data: bytes) -> bytes:
    """One final, masked, uncompressed text frame (RFC 6455 5.2) around ``data``, by websockets'
    own serializer (a fresh random mask per frame, as a client must)."""
    from websockets.frames import Frame, Opcode

    return Frame(Opcode.TEXT, data).serialize(mask=True)


def write_raw(conn: Any, prep: Prepared) -> None:
    """Write a prepared frame on websockets' sync connection, under the lock its own writers
    hold (so no frame of theirs, a pong, a close, is ever interleaved with it), only while the
    connection is open. Raises ``WsUnavailable`` (not open: nothing written) or what the
    socket raises (the frame may be partly written). A connection of another kind (a test's
    fake) gets the request through its own ``send``."""
    from websockets.protocol import State

    mutex = getattr(conn, "protocol_mutex", None)
    if mutex is None:
        if _state_name(conn) != "OPEN":
            raise WsUnavailable("the WebSocket API connection is not open")
        conn.send(prep.text, text=True)
        return
    with mutex:
        if conn.protocol.state is not State.OPEN:
            raise WsUnavailable("the WebSocket API connection is not open")
        conn.socket.sendall(prep.wire)


@dataclass(frozen=True)
class Sent:
    """A request ``WsApiClient.send`` wrote; ``WsApiClient.wait`` takes its answer."""

    rid: int
    slot: _Slot


def _default_connect(url: str, cfg: WsApiConfig) -> Any:
    """A websockets sync connection with Nagle off (small frames leave at once)."""
    import inspect

    from websockets.sync.client import connect

    # websockets 17 warns unless the direct (non-reconnecting) form is asked for by name
    extra = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    sock = socket.create_connection((parts.hostname, port), timeout=cfg.connect_timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return connect(url, sock=sock, compression=None, proxy=None, open_timeout=cfg.connect_timeout_s,
                       ping_interval=cfg.ping_interval_s, ping_timeout=cfg.ping_interval_s,
                       close_timeout=2.0, max_size=1 << 22, **extra)
    except BaseException:
        sock.close()
        raise


class WsApiClient:
    """One WebSocket API connection for the whole process, blocking ``call`` for any thread."""

    def __init__(self, config: WsApiConfig, *, api_key: str, api_secret: str,
                 governor: ratelimit.Governor | None = None, clock_ms: Callable[[], int] | None = None,
                 connect: Callable[[str, WsApiConfig], Any] | None = None) -> None:
        self.config = config
        self.governor = governor if governor is not None else ratelimit.shared()
        self._api_key = api_key
        self._secret = keyed(api_secret)  # only the keyed HMAC state is kept, never the text
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._connect = connect or _default_connect
        self.time_offset_ms = 0  # server - local (the REST broker measures it at start)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._gen = 0
        self._opened_mono = 0.0
        self._pending: dict[int, _Slot] = {}
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters: dict[str, int] = {"connects": 0, "connect_failures": 0, "disconnects": 0, "requests": 0,
                                         "answers": 0, "late_answers": 0, "unmatched_answers": 0,
                                         "decode_errors": 0, "lost_in_flight": 0, "timeouts": 0,
                                         "prepared_sent": 0, "prepared_stale": 0}
        self.wire_hook: Callable[[int, int], None] | None = None  # (request id, ns when written)

    def __repr__(self) -> str:  # never the keys
        return f"WsApiClient(url={self.config.url!r})"

    def clock_ms(self) -> int:
        """The local clock the timestamps are taken from (before ``time_offset_ms``)."""
        return self._clock_ms()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ws-api", daemon=True)
                self._thread.start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            conn = self._conn
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection: nothing left to do
                pass
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        backoff = self.config.backoff_initial_s
        while not self._closed.is_set():
            try:
                self.governor.acquire(weight=HANDSHAKE_WEIGHT, priority=ratelimit.Priority.QUERY,
                                      timeout_s=self.config.backoff_max_s)
                conn = self._connect(self.config.url, self.config)
            except Exception as exc:  # refused, timed out, HTTP 503 at the upgrade, rate limited
                self.counters["connect_failures"] += 1
                log.warning("ws_api.connect_failed", url=self.config.url, error=type(exc).__name__,
                            retry_in_s=backoff)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
                continue
            with self._lock:
                self._gen += 1
                self._conn = conn
                self._opened_mono = time.monotonic()
                gen = self._gen
            self.counters["connects"] += 1
            self._connected.set()
            log.info("ws_api.connected", url=self.config.url, generation=gen)
            renewed = self._read(conn, gen)
            lived = time.monotonic() - self._opened_mono
            self._lost(gen)
            if self._closed.is_set():
                break  # close(): not a disconnection to report
            if renewed:
                continue  # replaced before Binance's cut: reconnect at once
            if lived > 60.0:  # it worked for a while: the next attempt starts from the short wait
                backoff = self.config.backoff_initial_s
            log.warning("ws_api.disconnected", generation=gen, lived_s=round(lived, 1), retry_in_s=backoff)
            self._closed.wait(backoff)
            backoff = min(backoff * 2, self.config.backoff_max_s)

    def _read(self, conn: Any, gen: int) -> bool:
        """Read answers until the connection ends; True when it ended because it grew old."""
        renewed = False
        while not self._closed.is_set():
            try:
                frame = conn.recv(timeout=1.0)
            except TimeoutError:
                if self._too_old(gen):
                    log.info("ws_api.connection_renewed", generation=gen)
                    renewed = True
                    break
                continue
            except Exception:  # ConnectionClosed, OSError: the connection is gone
                break
            self._on_frame(frame)
        with self._lock:
            if self._gen == gen:
                self._conn = None
                self._connected.clear()
        try:
            conn.close()
        except Exception:  # already dead: nothing to close
            pass
        return renewed

    def _too_old(self, gen: int) -> bool:
        with self._lock:
            old = time.monotonic() - self._opened_mono > self.config.max_age_s
            idle = not any(s.gen == gen for s in self._pending.values())
            if old and idle:  # stop new calls on it at once: they go elsewhere until the next one opens
                self._conn = None
                self._connected.clear()
            return old and idle

    def _lost(self, gen: int) -> None:
        """The connection ``gen`` is gone: every call still waiting on it learns so now."""
        self.counters["disconnects"] += 1
        with self._lock:
            lost = [(rid, s) for rid, s in self._pending.items() if s.gen == gen]
            for rid, _ in lost:
                del self._pending[rid]
        for _, s in lost:
            s.lost = True
            s.event.set()
        if lost:
            self.counters["lost_in_flight"] += len(lost)
            log.warning("ws_api.disconnected_with_requests_in_flight", generation=gen, requests=len(lost))

    def _on_frame(self, frame: Any) -> None:
        try:
            answer = decode(frame)
        except DecodeError as exc:
            self.counters["decode_errors"] += 1
            log.warning("ws_api.answer_rejected", reason=exc.reason, error=str(exc)[:120])
            return
        now = self._clock_ms()
        self.governor.observe(status=answer.status, headers=governor_headers(answer, now))
        slot = None
        if isinstance(answer.id, int):
            with self._lock:
                slot = self._pending.pop(answer.id, None)
        if slot is None:
            self.counters["unmatched_answers"] += 1
            log.warning("ws_api.answer_unmatched", request_id=answer.id, status=answer.status, code=answer.code)
            return
        self.counters["answers"] += 1
        slot.answer = answer
        slot.event.set()

    # ------------------------------------------------------------------ calls
    def call(self, method: str, params: Mapping[str, Any], *, weight: int = 1, orders: int = 0,
             mutating: bool = False, priority: ratelimit.Priority = ratelimit.Priority.QUERY,
             timeout_ms: int | None = None) -> Any:
        """Send one signed request and wait for its answer (see the module's table)."""
        return self.wait(self.send(method, params, weight=weight, orders=orders, mutating=mutating,
                                   priority=priority), timeout_ms=timeout_ms)

    def send(self, method: str, params: Mapping[str, Any], *, weight: int = 1, orders: int = 0,
             mutating: bool = False, priority: ratelimit.Priority = ratelimit.Priority.QUERY,
             rate_wait_s: float | None = None) -> Sent:
        """The first half of ``call``: sign and write the request, do not wait for the answer.

        Raises ``WsUnavailable`` (nothing sent), the governor's ``TransientError`` (nothing sent;
        ``rate_wait_s`` bounds its wait, 0 = do not wait) or ``AmbiguousError`` (the frame may
        have left). The answer is ``wait``'s, from any thread (the brain sends an exit from its
        ring-reading thread and waits for the answer on a dispatcher thread)."""
        if not self._connected.is_set():
            raise WsUnavailable(f"{method}: no WebSocket API connection")
        if weight or orders:
            self.governor.acquire(weight=weight, orders=orders, priority=priority,
                                  timeout_s=self.config.rate_limit_wait_s if rate_wait_s is None else rate_wait_s)
        with self._lock:
            conn, gen = self._conn, self._gen
            if conn is None:
                raise WsUnavailable(f"{method}: no WebSocket API connection")
            rid = next(self._ids)
            slot = _Slot(method=method, mutating=mutating, gen=gen)
            self._pending[rid] = slot
        frame = signed_request(rid, method, params, api_key=self._api_key, secret=self._secret,
                               timestamp_ms=self._clock_ms() + self.time_offset_ms,
                               recv_window_ms=self.config.recv_window_ms)
        self.counters["requests"] += 1
        try:
            if _state_name(conn) != "OPEN":
                raise WsUnavailable(f"{method}: the WebSocket API connection is closing")
            conn.send(frame, text=True)
        except WsUnavailable:
            with self._lock:
                self._pending.pop(rid, None)
            raise
        except Exception as exc:  # the frame may have left, whole or in part
            with self._lock:
                self._pending.pop(rid, None)
            raise self._unknown(method, mutating, f"connection failed while sending ({type(exc).__name__})")
        wirestamp.mark("ws")  # tick-to-trade: the frame is on the socket (a no-op unless armed)
        hook = self.wire_hook
        if hook is not None:
            hook(rid, time.perf_counter_ns())
        return Sent(rid=rid, slot=slot)

    def prepare(self, method: str, params: Mapping[str, Any]) -> Prepared:
        """A signed request ready to go (``Prepared``); its id is reserved now."""
        with self._lock:
            rid = next(self._ids)
        now = self._clock_ms()
        frame = signed_request(rid, method, params, api_key=self._api_key, secret=self._secret,
                               timestamp_ms=now + self.time_offset_ms, recv_window_ms=self.config.recv_window_ms)
        return Prepared(rid=rid, method=method, params=dict(params), prepared_ms=now, text=frame,
                        wire=masked_text_frame(frame))

    def send_prepared(self, prep: Prepared, *, weight: int = 1, orders: int = 0, mutating: bool = False,
                      priority: ratelimit.Priority = ratelimit.Priority.QUERY,
                      rate_wait_s: float | None = None) -> Sent:
        """``send`` for a ``Prepared`` request: the same rules and errors, the frame written as
        it was prepared; one older than ``PREPARED_MAX_AGE_MS`` is signed afresh (``send``)."""
        if self._clock_ms() - prep.prepared_ms > PREPARED_MAX_AGE_MS:
            self.counters["prepared_stale"] += 1
            return self.send(prep.method, prep.params, weight=weight, orders=orders, mutating=mutating,
                             priority=priority, rate_wait_s=rate_wait_s)
        if not self._connected.is_set():
            raise WsUnavailable(f"{prep.method}: no WebSocket API connection")
        if weight or orders:
            self.governor.acquire(weight=weight, orders=orders, priority=priority,
                                  timeout_s=self.config.rate_limit_wait_s if rate_wait_s is None else rate_wait_s)
        rid = prep.rid
        with self._lock:
            conn, gen = self._conn, self._gen
            if conn is None:
                raise WsUnavailable(f"{prep.method}: no WebSocket API connection")
            slot = _Slot(method=prep.method, mutating=mutating, gen=gen)
            self._pending[rid] = slot
        self.counters["requests"] += 1
        try:
            write_raw(conn, prep)
        except WsUnavailable:
            with self._lock:
                self._pending.pop(rid, None)
            raise
        except Exception as exc:  # the frame may have left, whole or in part
            with self._lock:
                self._pending.pop(rid, None)
            raise self._unknown(prep.method, mutating, f"connection failed while sending ({type(exc).__name__})")
        wirestamp.mark("ws")
        self.counters["prepared_sent"] += 1
        hook = self.wire_hook
        if hook is not None:
            hook(rid, time.perf_counter_ns())
        return Sent(rid=rid, slot=slot)

    def wait(self, sent: Sent, *, timeout_ms: int | None = None) -> Any:
        """The second half of ``call``: the answer to a request ``send`` wrote."""
        rid, slot, method, mutating = sent.rid, sent.slot, sent.slot.method, sent.slot.mutating
        timeout_s = (timeout_ms if timeout_ms is not None else self.config.timeout_ms) / 1000.0
        if not slot.event.wait(timeout_s):
            with self._lock:
                mine = self._pending.pop(rid, None) is not None
            if mine:  # a late answer will find no one (counted as unmatched)
                self.counters["timeouts"] += 1
                raise self._unknown(method, mutating, f"no answer within {timeout_s:.1f} s")
            slot.event.wait(1.0)  # the reader (or the loss) took it a moment ago: its verdict is due
        if slot.lost or slot.answer is None:
            raise self._unknown(method, mutating, "connection lost before the answer")
        answer = slot.answer
        if answer.ok:
            return answer.result
        err = answer_error(answer, mutating=mutating, context=f"ws-api {method}", now_ms=self._clock_ms())
        emit = log.info if err.reason in ("unknown_order", "no_change") else log.warning
        emit("ws_api.call_failed", method=method, error=type(err).__name__, reason=err.reason, code=err.code,
             status=answer.status)
        raise err

    def _unknown(self, method: str, mutating: bool, why: str) -> AegisError:
        cls = AmbiguousError if mutating else TransientError
        log.warning("ws_api.outcome_unknown" if mutating else "ws_api.read_failed", method=method, why=why)
        return cls(f"ws-api {method}: {why}", reason="ws_lost" if "lost" in why or "failed" in why else "timeout")

    def session_status(self, timeout_ms: int = 2_000) -> Any:
        """``session.status`` (unsigned): the connection's session; a cheap liveness check."""
        with self._lock:
            conn, gen = self._conn, self._gen
            if conn is None:
                raise WsUnavailable("session.status: no WebSocket API connection")
            rid = next(self._ids)
            slot = _Slot(method="session.status", mutating=False, gen=gen)
            self._pending[rid] = slot
        try:
            conn.send(request(rid, "session.status"), text=True)
        except Exception as exc:
            with self._lock:
                self._pending.pop(rid, None)
            raise TransientError(f"session.status: {type(exc).__name__}", reason="ws_lost") from None
        if not slot.event.wait(timeout_ms / 1000.0) or slot.answer is None:
            with self._lock:
                self._pending.pop(rid, None)
            raise TransientError("session.status: no answer", reason="timeout")
        if not slot.answer.ok:
            raise answer_error(slot.answer, mutating=False, context="ws-api session.status", now_ms=self._clock_ms())
        return slot.answer.result

    def stats(self) -> dict[str, Any]:
        with self._lock:
            pending = len(self._pending)
        return {"connected": self.connected, "pending": pending, **self.counters}


def _state_name(conn: Any) -> str:
    state = getattr(conn, "state", None)
    return getattr(state, "name", "OPEN" if state is None else str(state))

