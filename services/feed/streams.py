"""Pure planning of the feed's WebSocket subscriptions, reconnects and rollovers.

Binance USD-M allows at most 200 streams per connection and 10 incoming control messages
a second; we subscribe by URL (``/stream?streams=a/b/c``), so one connection costs no
control messages, and we split the streams over as many connections as needed.

Binance also ends every connection after 24 hours. The feed replaces each connection
before that (``rollover_delay_s``): it opens the new one, holds back what the new one
delivers, and hands over once the old one has delivered a frame the new one also
delivered (``handover_ready``). A server writes one connection's frames in order, so by
then the old connection has delivered everything sent before the new one subscribed, and
everything sent after is in the new one's backlog: nothing is missed, and what both
delivered is dropped as a duplicate by id.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable, Sequence, TypeVar

from common.errors import ConfigError
from venue import binance

MAX_STREAMS_PER_CONNECTION = 200  # Binance's limit
ROLLOVER_JITTER = 0.02  # roll over up to 2 % early (28 min of 23.5 h): connections opened
#                         together do not all roll over in the same second
HANDOVER_SCAN = 64  # frames of the new connection's backlog checked for a shared frame

T = TypeVar("T")


def stream_names(symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
    """``btcusdt@trade``-style names: lower-case symbol, one per (symbol, channel)."""
    return [f"{s.lower()}@{c}" for s in symbols for c in channels]


def plan_connections(streams: Sequence[str], per_connection: int = MAX_STREAMS_PER_CONNECTION) -> list[list[str]]:
    """Split streams into groups of at most ``per_connection``, keeping a symbol's streams together
    when they fit (so one symbol's trade and book streams share a connection and its ordering)."""
    if per_connection < 1:
        raise ConfigError("per_connection must be >= 1")
    groups: list[list[str]] = []
    by_symbol: dict[str, list[str]] = {}
    for s in streams:
        by_symbol.setdefault(s.split("@", 1)[0], []).append(s)
    current: list[str] = []
    for names in by_symbol.values():
        if len(names) > per_connection:  # a single symbol with too many channels: split it
            for i in range(0, len(names), per_connection):
                groups.append(list(names[i:i + per_connection]))
            continue
        if len(current) + len(names) > per_connection:
            groups.append(current)
            current = []
        current.extend(names)
    if current:
        groups.append(current)
    return groups


def plan_routed(streams: Sequence[str], per_connection: int = MAX_STREAMS_PER_CONNECTION, *,
                routed: bool) -> list[tuple[binance.Route, list[str]]]:
    """(path, streams) per connection. Routed (Binance production): the book streams and the
    others on separate connections of their own path (``venue.binance``), each split as
    ``plan_connections`` does; not routed: one plain path for all."""
    if not routed:
        return [("", g) for g in plan_connections(streams, per_connection)]
    out: list[tuple[binance.Route, list[str]]] = []
    for route in binance.ROUTES:
        mine = [s for s in streams if binance.stream_route(s) == route]
        out.extend((route, g) for g in plan_connections(mine, per_connection))
    return out


def combined_url(base: str, streams: Sequence[str], route: binance.Route = "") -> str:
    path = f"/{route}/stream" if route else "/stream"
    return f"{base.rstrip('/')}{path}?streams={'/'.join(streams)}"


def backoff_s(attempt: int, *, initial_s: float = 1.0, max_s: float = 30.0,
              rng: random.Random | None = None) -> float:
    """Reconnect delay for attempt 1, 2, ...: doubling from ``initial_s`` (cryptofeed's 1 s),
    capped at ``max_s``, with "full jitter" in [d/2, d] so that many connections dropped at
    once (an exchange restart) do not reconnect in lock step."""
    if attempt <= 0:
        return 0.0
    d = min(max_s, initial_s * (2 ** (attempt - 1)))
    r = (rng or random).random()
    return d / 2 + r * d / 2


def rollover_delay_s(rollover_s: float, rng: random.Random | None = None) -> float:
    """Seconds from a connection's start to its replacement: ``rollover_s`` less up to
    ``ROLLOVER_JITTER`` of it; ``inf`` when rollover is off (``rollover_s`` == 0)."""
    if rollover_s <= 0:
        return float("inf")
    return rollover_s * (1.0 - ROLLOVER_JITTER * (rng or random).random())


def handover_ready(backlog: Iterable[T], delivered: Callable[[T], bool | None],
                   scan: int = HANDOVER_SCAN) -> bool:
    """True once the old connection has delivered one of the first frames held back from the
    new one. ``delivered(frame)``: True/False for a frame with a stream position (an id or
    event time), None for one without (a rejection, a kline), which proves nothing."""
    for i, frame in enumerate(backlog):
        if i >= scan:
            return False
        if delivered(frame):
            return True
    return False
