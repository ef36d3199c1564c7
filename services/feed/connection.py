"""One combined-stream WebSocket connection that never gives up.

The connection handler owns reconnect and backoff (doubling from 1 s with jitter, reset
after a successful connection) and a no-message watchdog: a connection that stays silent
for ``silence_timeout_s`` is presumed dead (half-open TCP, a stalled server) and replaced.
Pings from the server are answered by the websockets library; we also ping the server.

Frames go to ``on_frame(raw_bytes, recv_ns)`` synchronously, in arrival order; the
receive time is taken right after the frame is read, before any parsing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

import structlog
import websockets
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from services.feed.streams import backoff_s

log = structlog.get_logger(__name__)

WS_MAX_FRAME_BYTES = 1 << 22  # 4 MiB: a depth snapshot is far smaller; bigger is an attack
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0
OPEN_TIMEOUT_S = 10.0


@dataclass
class ConnectionStats:
    name: str
    connects: int = 0
    disconnects: int = 0
    silent_resets: int = 0
    frames: int = 0
    last_frame_mono: float = 0.0
    connected: bool = False


async def stream_forever(url: str, on_frame: Callable[[bytes, int], None], stats: ConnectionStats, *,
                         initial_s: float, max_s: float, silence_timeout_s: float,
                         on_connect: Callable[[ConnectionStats], None] | None = None) -> None:
    """Receive from ``url`` until cancelled, reconnecting forever with backoff."""
    attempt = 0
    while True:
        try:
            async with websockets.connect(url, max_size=WS_MAX_FRAME_BYTES, compression=None,
                                          ping_interval=PING_INTERVAL_S, ping_timeout=PING_TIMEOUT_S,
                                          open_timeout=OPEN_TIMEOUT_S, close_timeout=2) as ws:
                attempt = 0
                stats.connects += 1
                stats.connected = True
                stats.last_frame_mono = time.monotonic()
                log.info("feed.connected", connection=stats.name, url=url.split("?")[0])
                if on_connect is not None:
                    on_connect(stats)
                watchdog = asyncio.create_task(_watchdog(ws, stats, silence_timeout_s))
                try:
                    while True:
                        raw = await ws.recv(decode=False)
                        recv_ns = time.time_ns()
                        stats.frames += 1
                        stats.last_frame_mono = time.monotonic()
                        on_frame(raw, recv_ns)
                finally:
                    watchdog.cancel()
        except asyncio.CancelledError:
            stats.connected = False
            raise
        except (OSError, WebSocketException, InvalidURI, InvalidHandshake, asyncio.TimeoutError) as exc:
            was_connected = stats.connected
            stats.connected = False
            if was_connected:
                stats.disconnects += 1
            attempt += 1
            delay = backoff_s(attempt, initial_s=initial_s, max_s=max_s)
            log.warning("feed.disconnected", connection=stats.name, error=repr(exc)[:200],
                        attempt=attempt, retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)


async def _watchdog(ws, stats: ConnectionStats, silence_timeout_s: float) -> None:
    period = max(0.1, silence_timeout_s / 4)
    while True:
        await asyncio.sleep(period)
        silent = time.monotonic() - stats.last_frame_mono
        if silent > silence_timeout_s:
            stats.silent_resets += 1
            log.warning("feed.connection_silent", connection=stats.name, silent_s=round(silent, 1))
            await ws.close(code=4000, reason="silent")
            return
