"""One logical combined-stream connection that never gives up, and never leaves a gap
when it is replaced on purpose.

``stream_forever`` owns, for one group of streams:

- reconnect with backoff (doubling from ``initial_s`` with jitter, reset after a successful
  connection), counting refused or failed attempts;
- a no-message watchdog: a socket silent for ``silence_timeout_s`` is presumed dead
  (half-open TCP, a stalled server) and replaced;
- the proactive rollover before Binance's 24-hour disconnect: open the replacement, hold
  back what it delivers, hand over once the old socket has caught up with it
  (``streams.handover_ready``), close the old one, then release the held-back frames
  through the sink, where the overlap is dropped as duplicates by id;
- recovery timing: from the fault (the disconnect, or for a silent socket its last frame)
  to the first tick the sink writes afterwards, per cause.

Pings from the server are answered by the websockets library; we also ping the server.
Frames go to the sink synchronously, in arrival order; the receive time is taken right
after the frame is read, before any parsing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import structlog
import websockets
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake, \
    InvalidStatus, InvalidURI, WebSocketException

from services.feed.streams import backoff_s, handover_ready, rollover_delay_s

log = structlog.get_logger(__name__)

WS_MAX_FRAME_BYTES = 1 << 22  # 4 MiB: a depth snapshot is far smaller; bigger is an attack
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
STABLE_S = 5.0  # a socket that lived this long earns an immediate first reconnect (the 24 h
#                 disconnect, a server restart); one that died sooner backs off from the start,
#                 so a server that accepts and drops at once is not hammered
ROLLOVER_RETRY_S = 10.0  # retry a failed replacement this soon: 30 min remain before the 24 h cut
HANDOVER_POLL_S = 0.005  # how often a rollover checks whether the old socket caught up
RECOVERY_HISTORY = 32  # recoveries kept per connection for the stats file
NET_ERRORS = (OSError, WebSocketException, InvalidURI, InvalidHandshake, asyncio.TimeoutError)

# why a socket went away (the recovery statistics are kept per cause)
CAUSE_CLOSED = "closed"  # the server closed it with a close frame (1000/1001: restart, 24 h)
CAUSE_ABORTED = "aborted"  # the TCP connection dropped without a close frame
CAUSE_PROTOCOL = "protocol_error"  # a close frame with an error code
CAUSE_SILENT = "silent"  # our watchdog: nothing arrived for silence_timeout_s
CAUSE_NETWORK = "network"  # any other socket error


class Sink(Protocol):
    """Where frames go (the feed). Frames held back during a rollover are decoded at once
    (``peek``) and released later (``release``), in order."""

    def on_frame(self, raw: bytes, recv_ns: int) -> bool:
        """Decode and act on a frame; True when it wrote a tick."""

    def peek(self, raw: bytes, recv_ns: int) -> Any:
        """Decode a frame without acting on it or touching the sequence state."""

    def delivered(self, peeked: Any) -> bool | None:
        """Has the sequence state already passed this frame's stream position (None: no position)?"""

    def release(self, peeked: Any) -> bool:
        """Act on a frame ``peek`` decoded earlier; True when it wrote a tick."""


@dataclass
class ConnectionStats:
    """Counters of one logical connection (all its sockets, over its whole life)."""

    name: str
    streams: int = 0
    route: str = ""  # Binance's routed path ("public", "market"), "" = the plain one
    connects: int = 0
    disconnects: int = 0
    disconnect_causes: dict[str, int] = field(default_factory=dict)
    connect_failures: int = 0  # attempts refused, timed out or answered with an HTTP error
    silent_resets: int = 0
    rollovers: int = 0
    rollover_failures: int = 0  # replacements that never delivered (the old one kept going)
    last_overlap_ms: float = 0.0  # how long old and new ran side by side at the last rollover
    frames: int = 0
    connected: bool = False
    outage_start_mono: float | None = None  # set while down; cleared by the first tick after
    outage_cause: str = ""
    # (cause, fault -> first tick written, in ms, wall time it completed)
    recoveries: deque = field(default_factory=lambda: deque(maxlen=RECOVERY_HISTORY))


class _Socket:
    """One WebSocket of a logical connection, with the callable its frames go to."""

    __slots__ = ("ws", "route", "opened_mono", "last_frame_mono", "silent", "task")

    def __init__(self, ws: Any, route: Callable[[bytes, int], Any]) -> None:
        self.ws = ws
        self.route = route
        self.opened_mono = self.last_frame_mono = time.monotonic()
        self.silent = False
        self.task: asyncio.Task | None = None


def classify(exc: BaseException | None, silent: bool) -> str:
    """The cause of a socket's end, from the exception its reader ended with."""
    if silent:
        return CAUSE_SILENT
    if isinstance(exc, ConnectionClosedOK):
        return CAUSE_CLOSED
    if isinstance(exc, ConnectionClosedError):
        return CAUSE_ABORTED if exc.rcvd is None else CAUSE_PROTOCOL
    return CAUSE_NETWORK


async def _open(url: str) -> Any:
    return await websockets.connect(url, max_size=WS_MAX_FRAME_BYTES, compression=None,
                                    ping_interval=PING_INTERVAL_S, ping_timeout=PING_TIMEOUT_S,
                                    open_timeout=OPEN_TIMEOUT_S, close_timeout=CLOSE_TIMEOUT_S)


async def _close(ws: Any) -> None:
    try:
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S + 0.5)
    except (*NET_ERRORS, RuntimeError):
        pass


async def _read(sock: _Socket, stats: ConnectionStats, silence_timeout_s: float) -> None:
    """Read frames until the socket ends (raises) or the task is cancelled."""
    watchdog = asyncio.create_task(_watchdog(sock, stats, silence_timeout_s))
    recv = sock.ws.recv
    try:
        # right after an outage: watch for the first tick written, to time the recovery
        while stats.outage_start_mono is not None:
            raw = await recv(decode=False)
            recv_ns = time.time_ns()
            now = time.monotonic()
            sock.last_frame_mono = now
            stats.frames += 1
            if sock.route(raw, recv_ns) and stats.outage_start_mono is not None:
                _recovered(stats, now)
        while True:
            raw = await recv(decode=False)
            recv_ns = time.time_ns()
            sock.last_frame_mono = time.monotonic()
            stats.frames += 1
            sock.route(raw, recv_ns)
    finally:
        watchdog.cancel()


def _recovered(stats: ConnectionStats, now: float) -> None:
    start = stats.outage_start_mono
    assert start is not None
    ms = round((now - start) * 1000.0, 1)
    stats.recoveries.append((stats.outage_cause, ms, time.time()))
    stats.outage_start_mono = None
    log.info("feed.recovered", connection=stats.name, cause=stats.outage_cause, recovery_ms=ms)


async def _watchdog(sock: _Socket, stats: ConnectionStats, silence_timeout_s: float) -> None:
    period = max(0.05, silence_timeout_s / 4)
    while True:
        await asyncio.sleep(period)
        silent = time.monotonic() - sock.last_frame_mono
        if silent > silence_timeout_s:
            sock.silent = True
            stats.silent_resets += 1
            log.warning("feed.connection_silent", connection=stats.name, silent_s=round(silent, 1))
            await sock.ws.close(code=4000, reason="silent")
            return


def _start(sock: _Socket, stats: ConnectionStats, silence_timeout_s: float) -> _Socket:
    sock.task = asyncio.create_task(_read(sock, stats, silence_timeout_s))
    return sock


async def _stop(sock: _Socket) -> None:
    """Stop reading (what is still in flight is dropped) and close the socket."""
    if sock.task is not None and not sock.task.done():
        sock.task.cancel()
        try:
            await sock.task
        except BaseException:  # noqa: BLE001 - it ended: cancelled or failed, either is fine here
            pass
    await _close(sock.ws)


async def stream_forever(url: str, sink: Sink, stats: ConnectionStats, *,
                         initial_s: float, max_s: float, silence_timeout_s: float,
                         rollover_s: float = 0.0, overlap_max_s: float = 10.0,
                         on_connect: Callable[[ConnectionStats], None] | None = None) -> None:
    """Receive from ``url`` until cancelled: reconnect forever, roll over every ``rollover_s``."""
    attempt = 0
    try:
        while True:
            if attempt:
                delay = backoff_s(attempt, initial_s=initial_s, max_s=max_s)
                await asyncio.sleep(delay)
            try:
                ws = await _open(url)
            except NET_ERRORS as exc:
                attempt += 1
                stats.connect_failures += 1
                log.warning("feed.connect_failed", connection=stats.name, attempt=attempt,
                            error=_describe(exc))
                continue
            attempt = 0
            stats.connects += 1
            stats.connected = True
            log.info("feed.connected", connection=stats.name, url=url.split("?")[0])
            if on_connect is not None:
                on_connect(stats)
            sock = await _serve(url, sink, stats, _start(_Socket(ws, sink.on_frame), stats, silence_timeout_s),
                                silence_timeout_s, rollover_s, overlap_max_s)
            # the socket ended on its own: an outage, timed until the next tick is written
            exc = sock.task.exception() if sock.task is not None and not sock.task.cancelled() else None
            cause = classify(exc, sock.silent)
            now = time.monotonic()
            stats.connected = False
            stats.disconnects += 1
            stats.disconnect_causes[cause] = stats.disconnect_causes.get(cause, 0) + 1
            if stats.outage_start_mono is None:  # a second fault before recovery keeps the first start
                stats.outage_start_mono = sock.last_frame_mono if cause == CAUSE_SILENT else now
                stats.outage_cause = cause
            log.warning("feed.disconnected", connection=stats.name, cause=cause, error=_describe(exc))
            await _close(sock.ws)
            attempt = 0 if now - sock.opened_mono >= STABLE_S else 1
    finally:
        stats.connected = False


async def _serve(url: str, sink: Sink, stats: ConnectionStats, sock: _Socket,
                 silence_timeout_s: float, rollover_s: float, overlap_max_s: float) -> _Socket:
    """Run ``sock``, replacing it at each rollover; returns the socket that finally ended
    (and on cancellation closes the one in use)."""
    failures = stats.rollover_failures
    retry = False
    try:
        while True:
            assert sock.task is not None
            delay = rollover_delay_s(rollover_s)
            if retry:  # the last replacement failed: try again soon, the 24 h limit still looms
                delay = min(delay, ROLLOVER_RETRY_S)
            done, _ = await asyncio.wait([sock.task], timeout=None if delay == float("inf") else delay)
            if done:
                return sock
            sock = await _rollover(url, sink, stats, sock, silence_timeout_s, overlap_max_s)
            retry = stats.rollover_failures > failures
            failures = stats.rollover_failures
    except asyncio.CancelledError:
        await _stop(sock)
        raise


async def _rollover(url: str, sink: Sink, stats: ConnectionStats, old: _Socket,
                    silence_timeout_s: float, overlap_max_s: float) -> _Socket:
    """Replace ``old`` by a new socket without a gap; returns whichever socket carries on."""
    started = time.monotonic()
    try:
        ws = await _open(url)
    except NET_ERRORS as exc:
        stats.rollover_failures += 1
        log.warning("feed.rollover_failed", connection=stats.name, stage="connect", error=_describe(exc))
        return old
    backlog: list[Any] = []
    peek = sink.peek
    new = _start(_Socket(ws, lambda raw, recv_ns: backlog.append(peek(raw, recv_ns))), stats,
                 silence_timeout_s)
    assert old.task is not None and new.task is not None
    deadline = started + overlap_max_s
    try:
        while True:
            if new.task.done():  # the replacement died first: keep the old one, try again later
                stats.rollover_failures += 1
                log.warning("feed.rollover_failed", connection=stats.name, stage="overlap",
                            error=_describe(None if new.task.cancelled() else new.task.exception()))
                await _close(new.ws)
                return old
            if old.task.done() or handover_ready(backlog, sink.delivered):
                break
            if time.monotonic() >= deadline:
                if not backlog:  # nothing from the replacement yet: give it up, keep the old one
                    stats.rollover_failures += 1
                    log.warning("feed.rollover_failed", connection=stats.name, stage="silent_replacement")
                    await _stop(new)
                    return old
                log.warning("feed.rollover_forced", connection=stats.name, held_back=len(backlog))
                break
            await asyncio.sleep(HANDOVER_POLL_S)
    except asyncio.CancelledError:
        await _stop(new)
        raise
    # hand over: from here to the route switch nothing awaits, so no frame can slip between
    old_task = old.task
    if old_task.done():  # the old socket ended during the overlap: the new one already runs
        exc = None if old_task.cancelled() else old_task.exception()
        cause = classify(exc, old.silent)
        stats.disconnects += 1
        stats.disconnect_causes[cause] = stats.disconnect_causes.get(cause, 0) + 1
        log.warning("feed.disconnected", connection=stats.name, cause=cause, error=_describe(exc),
                    during="rollover")
    old_task.cancel()
    release = sink.release
    for peeked in backlog:
        release(peeked)
    held = len(backlog)
    new.route = sink.on_frame
    backlog.clear()
    stats.rollovers += 1
    stats.last_overlap_ms = round((time.monotonic() - started) * 1000.0, 1)
    log.info("feed.rolled_over", connection=stats.name, overlap_ms=stats.last_overlap_ms, held_back=held)
    closer = asyncio.create_task(_stop(old))  # the close handshake must not hold up the new socket
    _background.add(closer)
    closer.add_done_callback(_background.discard)
    return new


_background: set[asyncio.Task] = set()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    return repr(exc)[:200]
