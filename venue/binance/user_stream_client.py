"""The user data stream's connection shell: one thread, one asyncio loop, one socket at a time.

``UserStreamClient`` owns everything about the connection (cryptofeed's shape: one class per
venue connection, reconnect and watchdog inside), and nothing about trading:

- **listenKey.** ``POST /fapi/v1/listenKey`` (the API key header only) before every
  connection: it creates a key, or returns the account's active one with its 60 minutes
  renewed. ``PUT`` every ``keepalive_s`` (30 min) while connected; ``DELETE`` on ``stop``. A
  key is gone when a ``listenKeyExpired`` event says so (the socket then stays open and
  silent), when a keepalive or a connect is answered -1125, or when a keepalive answers a
  different key: the connection is replaced and the next ``POST`` makes a new key. Every call
  is admitted by the process's rate-limit governor (weight 1) and its answer observed.
- **Reconnect.** Immediately after a connection that lived ``stable_s`` or ended by a
  rollover or a lost key, else after 1 s, doubling up to ``max_backoff_s``; failed key
  requests and refused connects count as attempts.
- **Watchdog.** A user stream is silent for as long as nothing happens on the account, so
  silence alone proves nothing: after ``silence_s`` without a frame we ping, and a ping not
  answered within ``ping_timeout_s`` means the connection is dead (half-open TCP, a stalled
  server). Pings from the server are answered by the websockets library.
- **Rollover.** Binance cuts a connection after 24 hours; we replace it at ``max_connection_s``
  (23 h 50 min), when we choose.
- **Resync.** Every connection, the first included, puts a ``Resync`` in the queue before any
  of its events, with the reason the previous one ended. Events that happened between two
  connections (or before the first) were never delivered and never will be: the execution
  shell re-reads positions, open orders and protective orders by REST when it sees a
  ``Resync``. The first counts too because the brain's start-up REST read may predate it.
- **Events.** Each frame is decoded (``user_stream.decode``) in this thread. ``TRADE_LITE``,
  ``listenKeyExpired`` and unrecognised events are counted here and go no further; the rest
  go to a thread-safe queue, bounded by ``queue_max``: when it is full the newest are dropped
  and a ``Resync`` follows once there is room (a gap the shell heals by REST). Malformed
  frames are counted by reason and logged at most once a minute per reason, never raised,
  their bytes never logged (a ``listenKeyExpired`` frame carries the key).

The listenKey is a credential: it is logged as its last 4 characters at most, never kept in a
``repr``, and scrubbed from any error text before that is logged. The API key lives only in
the request headers.

The pure parts (``backoff_s``, ``next_attempt``, ``next_timer``, ``keepalive_delay_s``,
``listen_key_answer``, ``key_tail``, ``scrub``) are tested alone; the shell is tested against
the local exchange.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from common.errors import ConfigError, DecodeError
from common.log import RateLimiter
from venue import ratelimit
from venue.binance import LISTEN_KEY_PATH, WEIGHTS, user_data_url
from venue.binance import user_stream as us
from venue.binance.user_updates import Resync

log = structlog.get_logger(__name__)

# why a connection ended (the next connection's Resync carries it)
FIRST = "first"
CLOSED = "closed"  # the server closed it (close frame)
ABORTED = "aborted"  # the TCP connection dropped without a close frame
SILENT = "silent"  # the watchdog: silence, then an unanswered ping
ROLLOVER = "rollover"  # our own replacement before Binance's 24-hour cut
EXPIRED = "listen_key_expired"  # the event said so
KEY_LOST = "key_lost"  # a keepalive answered -1125 (or another key)
STOPPED = "stopped"
QUEUE_FULL = "queue_full"
# what a listenKey answer means
OK, RETRY, AUTH = "ok", "retry", "auth"
NO_SUCH_KEY = -1125  # "This listenKey does not exist."
AUTH_CODES = frozenset({-2014, -2015, -1022})  # API-key format invalid / invalid key, IP or permissions
MAX_EVENT_NAMES = 64  # distinct event names counted; the rest count as "other" (an endless list is an attack)
CLOSE_TIMEOUT_S = 2.0
_EVENT_NAMES = {us.OrderUpdate: "ORDER_TRADE_UPDATE", us.TradeLite: "TRADE_LITE", us.AccountUpdate: "ACCOUNT_UPDATE",
                us.AlgoUpdate: "ALGO_UPDATE", us.ListenKeyExpired: "listenKeyExpired", us.MarginCall: "MARGIN_CALL"}


@dataclass(frozen=True, kw_only=True)
class UserStreamConfig:
    rest_url: str  # https://fapi.binance.com, the testnet's, or the sim's
    ws_url: str  # wss://fstream.binance.com (the /private path is added), the testnet's, or the sim's
    keepalive_s: float = 30 * 60.0  # Binance: a key lives 60 min; keep it alive every 30
    keepalive_retry_s: float = 60.0  # a failed keepalive is tried again this soon (30 min of slack)
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stable_s: float = 5.0  # a connection that lived this long earns an immediate reconnect
    silence_s: float = 60.0  # no frame this long: ping
    ping_timeout_s: float = 10.0  # ... unanswered this long: dead
    max_connection_s: float = 23 * 3600 + 50 * 60.0  # replaced before Binance's 24 h cut
    open_timeout_s: float = 10.0
    rest_timeout_s: float = 10.0
    queue_max: int = 100_000  # events waiting for the brain; beyond: dropped, then a Resync
    max_frame_bytes: int = 1 << 20  # a user event is a few hundred bytes

    def __post_init__(self) -> None:
        for name in ("keepalive_s", "keepalive_retry_s", "initial_backoff_s", "max_backoff_s", "silence_s",
                     "ping_timeout_s", "max_connection_s", "open_timeout_s", "rest_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"user stream: {name} must be > 0")
        if self.queue_max < 1 or self.max_frame_bytes < 1024:
            raise ConfigError("user stream: queue_max >= 1 and max_frame_bytes >= 1024")
        if not self.rest_url.startswith(("http://", "https://")) or not self.ws_url.startswith(("ws://", "wss://")):
            raise ConfigError("user stream: rest_url must be http(s):// and ws_url ws(s)://")


# ---------------------------------------------------------------------------- pure parts
def backoff_s(attempt: int, *, initial_s: float = 1.0, max_s: float = 30.0) -> float:
    """Wait before connection attempt ``attempt`` (0 right after a stable connection: none;
    then ``initial_s`` doubling, capped at ``max_s``)."""
    if attempt <= 0:
        return 0.0
    return min(max_s, initial_s * 2.0 ** min(attempt - 1, 60))


def next_attempt(reason: str, *, lived_s: float, attempt: int, stable_s: float) -> int:
    """The attempt number after a connection ended for ``reason``: 0 (reconnect at once) when it
    ended by our choice or the key's (a rollover, an expired or lost key: the connection itself
    was fine) or after it lived ``stable_s``; else one more than before (a server that accepts
    and drops at once is not hammered)."""
    if reason in (ROLLOVER, EXPIRED, KEY_LOST) or lived_s >= stable_s:
        return 0
    return attempt + 1


def next_timer(*, now_s: float, last_frame_s: float, connected_s: float, silence_s: float,
               max_connection_s: float) -> tuple[str, float]:
    """The session's next timer, ``(SILENT or ROLLOVER, seconds from now >= 0)``: the
    watchdog's ping after ``silence_s`` without a frame, or the planned replacement."""
    silence_at = last_frame_s + silence_s
    rollover_at = connected_s + max_connection_s
    if rollover_at <= silence_at:
        return ROLLOVER, max(0.0, rollover_at - now_s)
    return SILENT, max(0.0, silence_at - now_s)


def keepalive_delay_s(*, failed: bool, keepalive_s: float, retry_s: float) -> float:
    """Wait before the next keepalive: the period, or the retry delay after a failed one."""
    return min(retry_s, keepalive_s) if failed else keepalive_s


def listen_key_answer(status: int, body: bytes) -> tuple[str, str]:
    """``(verdict, key)`` of a listenKey answer: OK with the key ("" when the body names none, as
    an old-style keepalive's ``{}``), KEY_LOST (-1125), AUTH (the API key is refused), or RETRY
    (anything else: 5xx, 429/418, a body we cannot read)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if status == 200 and isinstance(obj, dict):
        key = obj.get("listenKey")
        if key is None and not obj:
            return OK, ""
        # the key goes into a URL path: Binance's are 64 letters and digits
        if isinstance(key, str) and 0 < len(key) <= 128 and key.isascii() and key.isalnum():
            return OK, key
        return RETRY, ""
    code = obj.get("code") if isinstance(obj, dict) else None
    if code == NO_SUCH_KEY:
        return KEY_LOST, ""
    if status in (401, 403) or code in AUTH_CODES:
        return AUTH, ""
    return RETRY, ""


def key_tail(key: str) -> str:
    """What may be logged of a listenKey: its last 4 characters."""
    return f"...{key[-4:]}" if key else ""


def scrub(text: str, key: str) -> str:
    """``text`` with ``key`` replaced by its tail (an error message may quote a URL)."""
    return text.replace(key, key_tail(key)) if key else text


# ---------------------------------------------------------------------------- the shell
class UserStreamClient:
    """Connects, keeps the key alive, reconnects; decoded events wait in ``drain``'s queue."""

    def __init__(self, config: UserStreamConfig, *, api_key: str, governor: ratelimit.Governor | None = None,
                 name: str = "user-stream") -> None:
        self.config = config
        self.name = name
        self.governor = governor if governor is not None else ratelimit.shared()
        self.connected = False
        self._api_key = api_key
        self._key = ""  # the current listenKey: a credential
        self._queue: deque[tuple[int, Any]] = deque()
        self._gap = False
        self._lock = threading.Lock()  # the counters and the gap flag
        self._counters: dict[str, int] = {}
        self._events: dict[str, int] = {}
        self._rejects: dict[str, int] = {}
        self._connections = 0
        self._limiter = RateLimiter(60.0)  # used in the client's thread only
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._http: Any = None

    def __repr__(self) -> str:
        return (f"UserStreamClient(rest_url={self.config.rest_url!r}, ws_url={self.config.ws_url!r}, "
                f"connected={self.connected})")

    # ------------------------------------------------------------------ the other threads' side
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._thread_main, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the connection, close the listenKey (``DELETE``), join the thread."""
        self._stopping.set()
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # the loop is already closed
                pass
        if self._thread is not None:
            self._thread.join(timeout_s)

    def drain(self, max_items: int) -> list[tuple[int, Any]]:
        """Up to ``max_items`` queued ``(perf_counter_ns at receipt, event or Resync)``, oldest first."""
        q = self._queue
        out = []
        while q and len(out) < max_items:
            out.append(q.popleft())
        if self._gap and not q:
            with self._lock:
                if self._gap:
                    self._gap = False
                    out.append((time.perf_counter_ns(), Resync(reason=QUEUE_FULL)))
                    self._count("resyncs")
        return out

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"connected": self.connected, "connections": self._connections,
                    "reconnects": max(0, self._connections - 1), "resyncs": self._counters.get("resyncs", 0),
                    "events": dict(self._events), "rejects": dict(self._rejects), "queued": len(self._queue),
                    "counters": dict(self._counters)}

    # ------------------------------------------------------------------ frames (sans-I/O)
    def on_frame(self, raw: bytes | str, recv_ns: int = 0) -> str:
        """Decode one frame and queue what the shell needs; "" or the reason the connection
        must end (``EXPIRED``). Never raises for bad input."""
        try:
            ev = us.decode(raw)
        except DecodeError as exc:
            reason = exc.reason or "malformed"
            with self._lock:
                self._rejects[reason] = self._rejects.get(reason, 0) + 1
                n = self._rejects[reason]
            if self._limiter.allow(reason, time.monotonic()):
                log.warning("user_stream.event_rejected", reason=reason, size=len(raw), count=n)
            return ""
        name = _EVENT_NAMES.get(type(ev)) or (ev.event_type if isinstance(ev, us.Unrecognised) else "other")
        with self._lock:
            if name not in self._events and len(self._events) >= MAX_EVENT_NAMES:
                name = "other"
            self._events[name] = self._events.get(name, 0) + 1
        if isinstance(ev, us.ListenKeyExpired):
            log.warning("user_stream.listen_key_expired", key=key_tail(self._key), event_ms=ev.event_ms)
            return EXPIRED
        if isinstance(ev, (us.TradeLite, us.Unrecognised)):
            return ""  # counted; never applied (TRADE_LITE carries no fee: user_updates)
        self._put(ev, recv_ns or time.perf_counter_ns())
        return ""

    def _put(self, item: Any, recv_ns: int) -> None:
        with self._lock:
            if len(self._queue) >= self.config.queue_max:
                if not self._gap:
                    log.error("user_stream.queue_full", queued=len(self._queue))
                self._gap = True
                self._counters["queue_dropped"] = self._counters.get("queue_dropped", 0) + 1
                return
            if self._gap:  # room again: the shell re-reads what was dropped
                self._gap = False
                self._queue.append((recv_ns, Resync(reason=QUEUE_FULL)))
                self._counters["resyncs"] = self._counters.get("resyncs", 0) + 1
            self._queue.append((recv_ns, item))

    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n

    def _bump(self, name: str) -> None:
        with self._lock:
            self._count(name)

    # ------------------------------------------------------------------ the client's thread
    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # the REST backstop keeps trading safe; say it loudly
            log.error("user_stream.crashed", error=type(exc).__name__, detail=scrub(str(exc), self._key)[:200])
        finally:
            self.connected = False

    async def _main(self) -> None:
        import aiohttp

        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stopping.is_set():
            self._stop.set()
        cfg = self.config
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.rest_timeout_s)) as http:
            self._http = http
            attempt, reason = 0, FIRST
            while not self._stop.is_set():
                if await self._sleep(backoff_s(attempt, initial_s=cfg.initial_backoff_s, max_s=cfg.max_backoff_s)):
                    break
                try:
                    ws = await self._unless_stopped(self._connect())
                except Exception as exc:  # noqa: BLE001 - a bug here must not end the stream for good
                    log.error("user_stream.connect_crashed", error=type(exc).__name__,
                              detail=scrub(str(exc), self._key)[:200])
                    ws = None
                if ws is None:
                    attempt += 1
                    continue
                began = time.monotonic()
                reason = await self._connected(ws, reason, began)
                if reason == STOPPED:
                    break
                attempt = next_attempt(reason, lived_s=time.monotonic() - began, attempt=attempt,
                                       stable_s=cfg.stable_s)
            await self._close_key()

    async def _connected(self, ws: Any, previous: str, began: float) -> str:
        """One connection's life: Resync first, then events until it ends; why it ended."""
        with self._lock:
            self._connections += 1
            n = self._connections
        self._put(Resync(reason=previous, connection=n), time.perf_counter_ns())
        self._bump("resyncs")
        self.connected = True
        log.info("user_stream.connected", connection=n, after=previous, key=key_tail(self._key))
        try:
            reason = await self._session(ws, began)
        except Exception as exc:  # noqa: BLE001
            log.error("user_stream.session_crashed", error=type(exc).__name__, detail=scrub(str(exc), self._key)[:200])
            reason = ABORTED
        finally:
            self.connected = False
            await _close(ws)
        if reason in (EXPIRED, KEY_LOST):
            self._key = ""
        self._bump(f"ended:{reason}")
        emit = log.info if reason in (STOPPED, ROLLOVER) else log.warning
        emit("user_stream.disconnected", connection=n, reason=reason, lived_s=round(time.monotonic() - began, 3))
        return reason

    async def _session(self, ws: Any, began: float) -> str:
        assert self._stop is not None
        stop = asyncio.ensure_future(self._stop.wait())
        receive = asyncio.ensure_future(self._receive(ws, began))
        keepalive = asyncio.ensure_future(self._keepalive())
        done, pending = await asyncio.wait({stop, receive, keepalive}, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if stop in done:
            return STOPPED
        return (receive if receive in done else keepalive).result()

    async def _receive(self, ws: Any, began: float) -> str:
        from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

        cfg = self.config
        last = time.monotonic()
        while True:
            what, wait = next_timer(now_s=time.monotonic(), last_frame_s=last, connected_s=began,
                                    silence_s=cfg.silence_s, max_connection_s=cfg.max_connection_s)
            if wait <= 0:
                if what == ROLLOVER:
                    return ROLLOVER
                if not await self._ping(ws):
                    return SILENT
                last = time.monotonic()
                continue
            try:
                raw = await asyncio.wait_for(ws.recv(decode=False), wait)
            except asyncio.TimeoutError:
                continue
            except ConnectionClosedOK:
                return CLOSED
            except ConnectionClosedError as exc:
                return ABORTED if exc.rcvd is None else CLOSED
            recv_ns = time.perf_counter_ns()
            last = time.monotonic()
            end = self.on_frame(raw, recv_ns)
            if end:
                return end

    async def _ping(self, ws: Any) -> bool:
        self._bump("watchdog_pings")
        try:
            pong = await ws.ping()
            await asyncio.wait_for(pong, self.config.ping_timeout_s)
            return True
        except Exception:  # noqa: BLE001 - timeout or a closed socket: dead either way
            self._bump("watchdog_dead")
            return False

    async def _keepalive(self) -> str:
        cfg = self.config
        failed = False
        while True:
            await asyncio.sleep(keepalive_delay_s(failed=failed, keepalive_s=cfg.keepalive_s,
                                                  retry_s=cfg.keepalive_retry_s))
            verdict, key = await self._listen_key("PUT")
            if verdict == OK:
                failed = False
                self._bump("keepalives")
                if key and key != self._key:
                    log.warning("user_stream.listen_key_replaced", key=key_tail(key))
                    return KEY_LOST
            elif verdict == KEY_LOST:
                return KEY_LOST
            else:
                failed = True
                self._bump("keepalives_failed")

    # ------------------------------------------------------------------ REST and connect
    async def _connect(self) -> Any:
        """POST a key, open its socket; None (counted, logged) when either fails."""
        import websockets
        from websockets.exceptions import InvalidStatus

        verdict, key = await self._listen_key("POST")
        if verdict != OK or not key:
            return None
        if self._key and key != self._key:
            log.info("user_stream.new_listen_key", key=key_tail(key))
        self._key = key
        try:
            return await websockets.connect(
                user_data_url(self.config.ws_url, key), open_timeout=self.config.open_timeout_s, ping_interval=None,
                ping_timeout=None, close_timeout=CLOSE_TIMEOUT_S, max_size=self.config.max_frame_bytes,
                compression=None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            verdict, _ = listen_key_answer(status, exc.response.body or b"")
            if verdict == KEY_LOST:
                self._key = ""  # the next POST makes a new one
            self._failed("connect_refused", status=status, verdict=verdict)
        except Exception as exc:  # noqa: BLE001 - OSError, timeouts, handshake errors
            self._failed("connect_failed", error=type(exc).__name__, detail=scrub(str(exc), key)[:160])
        return None

    def _failed(self, what: str, **fields: Any) -> None:
        self._bump(what)
        if self._limiter.allow(what, time.monotonic()):
            log.warning(f"user_stream.{what}", **fields)

    async def _listen_key(self, method: str) -> tuple[str, str]:
        """One listenKey request, admitted by the governor: ``(verdict, key)``."""
        import aiohttp

        if not await self._admit():
            return RETRY, ""
        url = f"{self.config.rest_url.rstrip('/')}{LISTEN_KEY_PATH}"
        try:
            async with self._http.request(method, url, headers={"X-MBX-APIKEY": self._api_key}) as r:
                body = await r.read()
                status = r.status
                self.governor.observe(status=status, headers=dict(r.headers))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._failed(f"listen_key_{method.lower()}_failed", error=type(exc).__name__)
            return RETRY, ""
        verdict, key = listen_key_answer(status, body)
        if verdict != OK:
            self._failed(f"listen_key_{method.lower()}_failed", status=status, verdict=verdict)
            if verdict == AUTH:
                log.error("user_stream.api_key_refused", status=status)
        return verdict, key

    async def _admit(self) -> bool:
        """Wait for the governor (never during a ban); False when stopped meanwhile."""
        weight = WEIGHTS["listen_key"][0]
        while True:
            d = self.governor.try_acquire(weight=weight, priority=ratelimit.Priority.QUERY)
            if d.ok:
                return True
            if await self._sleep(max(d.wait_ms, 10) / 1000.0):
                return False

    async def _close_key(self) -> None:
        """``DELETE`` the key on stop (best effort: it lapses within 60 minutes anyway)."""
        if not self._key:
            return
        import aiohttp

        url = f"{self.config.rest_url.rstrip('/')}{LISTEN_KEY_PATH}"
        try:
            async with self._http.request("DELETE", url, headers={"X-MBX-APIKEY": self._api_key},
                                          timeout=aiohttp.ClientTimeout(total=2.0)) as r:
                self.governor.observe(status=r.status, headers=dict(r.headers))
                log.info("user_stream.listen_key_closed", key=key_tail(self._key), status=r.status)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("user_stream.listen_key_close_failed", error=type(exc).__name__)
        self._key = ""

    async def _unless_stopped(self, coro: Any) -> Any:
        """``coro``'s result, or None (``coro`` cancelled) as soon as ``stop`` is asked."""
        assert self._stop is not None
        task = asyncio.ensure_future(coro)
        stop = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, or return True at once when stopped."""
        assert self._stop is not None
        if self._stop.is_set():
            return True
        if seconds <= 0:
            return False
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False


async def _close(ws: Any) -> None:
    try:
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S + 0.5)
    except Exception:  # noqa: BLE001 - it is going away either way
        pass
