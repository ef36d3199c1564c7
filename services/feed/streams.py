"""Pure planning of the feed's WebSocket subscriptions and reconnect schedule.

Binance USD-M allows at most 200 streams per connection and 10 incoming control messages
a second; we subscribe by URL (``/stream?streams=a/b/c``), so one connection costs no
control messages, and we split the streams over as many connections as needed.
"""

from __future__ import annotations

import random
from typing import Sequence

MAX_STREAMS_PER_CONNECTION = 200  # Binance's limit


def stream_names(symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
    """``btcusdt@trade``-style names: lower-case symbol, one per (symbol, channel)."""
    return [f"{s.lower()}@{c}" for s in symbols for c in channels]


def plan_connections(streams: Sequence[str], per_connection: int = MAX_STREAMS_PER_CONNECTION) -> list[list[str]]:
    """Split streams into groups of at most ``per_connection``, keeping a symbol's streams together
    when they fit (so one symbol's trade and book streams share a connection and its ordering)."""
    if per_connection < 1:
        raise ValueError("per_connection must be >= 1")
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


def combined_url(base: str, streams: Sequence[str]) -> str:
    return f"{base.rstrip('/')}/stream?streams={'/'.join(streams)}"


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
