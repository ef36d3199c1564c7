"""What the dashboard learns from the PUB events: heartbeats, marks, equity, timings.

The database says what happened (orders, fills, positions: ``store``); the events say what is
happening now: each service's heartbeat (its state and counters), the latest price of each
held symbol (for the unrealized PnL), the account's equity once a second (the equity curve),
and how long the brain took from a signal to its order and the exchange from an order to its
first fill (measured on the envelopes' send times, one clock: this host's).

``Live`` is the dashboard's one accumulator of events: ``apply(env, now_s)`` folds one
envelope in; no clock, socket or file inside (the caller passes the time), so tests drive it
with hand-made envelopes.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from common import wire
from services.dashboard import config as dc

TIMING_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000)
REMEMBERED = 2_000  # signals and orders remembered for their timings


@dataclass
class Hist:
    """Counts per bucket: ``counts[i]`` holds values <= ``bounds[i]`` (and > the one before);
    the last count is everything above the last bound."""

    bounds: tuple[float, ...] = TIMING_BOUNDS_MS
    counts: list[int] = field(default_factory=list)
    total: int = 0
    sum: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += 1
        self.sum += value

    def to_dict(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "count": self.total,
                "mean": self.sum / self.total if self.total else None}


@dataclass
class Beat:
    service: str
    pid: int
    state: str
    uptime_s: float
    counters: dict[str, float]
    seen_s: float  # monotonic time it arrived


class _Bounded(OrderedDict):
    def remember(self, key: str, value: int) -> None:
        self[key] = value
        while len(self) > REMEMBERED:
            self.popitem(last=False)


@dataclass
class Live:
    beats: dict[str, Beat] = field(default_factory=dict)
    marks: dict[str, tuple[float, int]] = field(default_factory=dict)  # symbol -> (price, event ms)
    equity: deque = field(default_factory=lambda: deque(maxlen=dc.EQUITY_POINTS))  # (wall ms, USDT)
    feed_status: dict[str, Any] = field(default_factory=dict)
    signal_to_order: Hist = field(default_factory=Hist)
    order_to_fill: Hist = field(default_factory=Hist)
    ring_written: deque = field(default_factory=lambda: deque(maxlen=8))  # (monotonic s, written)
    events: dict[str, int] = field(default_factory=dict)  # by type, since the dashboard started
    permission: dict[str, Any] | None = None  # the orchestrator's last TradingPermission
    # orders the exchange refused, (symbol, client order id, reason), until an alerter takes them
    rejected_orders: deque = field(default_factory=lambda: deque(maxlen=100))
    _signals: _Bounded = field(default_factory=_Bounded)  # signal id -> send ns
    _orders: _Bounded = field(default_factory=_Bounded)  # client order id -> send ns (until its first fill)

    def apply(self, env: wire.Envelope, now_s: float) -> None:
        b = env.body
        t = env.type.value
        self.events[t] = self.events.get(t, 0) + 1
        if isinstance(b, wire.Heartbeat):
            self.beats[b.service] = Beat(service=b.service, pid=b.pid, state=b.state, uptime_s=b.uptime_s,
                                         counters=dict(b.counters), seen_s=now_s)
            eq = b.counters.get("equity", 0.0)
            if b.service == "brain" and eq > 0:
                self.equity.append((env.send_ns // 1_000_000, eq))
            if b.service == "orchestrator" and "ring_written" in b.counters:
                self.ring_written.append((now_s, b.counters["ring_written"]))
        elif isinstance(b, wire.TickUpdate):
            price = b.mark or b.last_price or ((b.bid + b.ask) / 2 if b.bid > 0 and b.ask > 0 else 0.0)
            if price > 0:
                self.marks[b.symbol] = (price, b.event_ms)
        elif isinstance(b, wire.SignalGenerated):
            self._signals.remember(b.signal_id, env.send_ns)
        elif isinstance(b, wire.OrderRequest):
            sent = self._signals.pop(b.signal_id, None) if not b.reduce_only else None
            if sent is not None and env.send_ns >= sent:
                self.signal_to_order.add((env.send_ns - sent) / 1e6)
            self._orders.remember(b.client_order_id, env.send_ns)
        elif isinstance(b, wire.Fill):
            sent = self._orders.pop(b.client_order_id, None)
            if sent is not None and env.send_ns >= sent:
                self.order_to_fill.add((env.send_ns - sent) / 1e6)
        elif isinstance(b, wire.OrderUpdate):
            if b.status == "REJECTED":
                self.rejected_orders.append((b.symbol, b.client_order_id, b.reason))
        elif isinstance(b, wire.TradingPermission):
            self.permission = {"allowed": b.allowed, "reason": b.reason, "detail": b.detail}
        elif isinstance(b, wire.FeedStatus):
            self.feed_status = {"state": b.state, "connections": b.connections, "symbols": b.symbols,
                                "message": b.message}

    def ticks_per_s(self) -> float | None:
        """The ring's write rate over the orchestrator's last heartbeats (None: not known)."""
        if len(self.ring_written) < 2:
            return None
        (t0, w0), (t1, w1) = self.ring_written[0], self.ring_written[-1]
        return (w1 - w0) / (t1 - t0) if t1 > t0 else None
