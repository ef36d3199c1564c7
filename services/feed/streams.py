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

from venue import binance
from common.records import Kind
from services.feed import codec

MAX_STREAMS_PER_CONNECTION = 200  # Binance's limit
ROLLOVER_JITTER = 0.02  # roll over up to 2 % early (28 min of 23.5 h): connections opened
#                         together do not all roll over in the same second
HANDOVER_SCAN = 64  # frames of the new connection's backlog checked for a shared frame

T = TypeVar("T")
_MARK = int(Kind.MARK)


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


# ---------------------------------------------------------------------------- positions
# The codec's sequence state (``codec.SeqState``: event -> symbol -> [last id, last event
# ms]) knows how far each stream got. These read it; they never change it.
def delivered(state: codec.SeqState, res: codec.Result) -> bool | None:
    """Has ``state`` already reached this decoded, not yet sequenced frame's position in its
    stream (its id, or for marks its event time)? None when the frame has no position."""
    tick = res.tick
    if tick is None:
        return None
    slot = state.get(res.event, {}).get(res.symbol)
    if slot is None:
        return False
    return slot[0] >= (res.event_ms if tick.kind == _MARK else tick.id)


def id_counter_reset(state: codec.SeqState, res: codec.Result) -> bool:
    """A frame ``sequence`` called a duplicate (``res`` as decoded, before sequencing) that is
    really a restarted id counter: its id is not newer than its stream's last, but its event
    time is. One stream's ids and event times rise together, so a true duplicate (the same
    frame from a second connection, or an older one from a lagging server) is never newer;
    an exchange that restarted its counters is. Marks are sequenced by time: never a reset."""
    tick = res.tick
    if tick is None or tick.kind == _MARK:
        return False
    slot = state.get(res.event, {}).get(res.symbol)
    return slot is not None and tick.id < slot[0] and res.event_ms > slot[1]


def kline_key(res: codec.Result) -> tuple[int, tuple[bool, int, int]]:
    """(candle open, rank) of a kline update: within one candle an update outranks another
    when it is the close, else has more trades, else is later. The codec does not sequence
    klines; two connections deliver the same updates during a rollover, and an update that
    does not outrank the last one seen for its candle is a duplicate. Ranked per candle, not
    by event time alone: a close can be sent after the next candle's first update (Binance's
    ``E`` of the close is the candle end; the next candle's updates may carry later ones)."""
    c = res.detail
    return c.open_ms, (c.closed, c.trades, res.event_ms)
