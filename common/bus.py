"""EventBus and Journal: publish and receive typed messages without knowing who is where.

- ``Publisher``: stamps an ``Envelope`` (version, publisher, sequence, times) around a body
  (sequence numbers count per event type, so a subscriber to some types can still tell a
  real gap from messages it did not subscribe to)
  and sends it on this process's PUB socket (or a journal PUSH socket). Sending never
  blocks the caller: a full PUB queue drops (counted), a full journal queue raises
  ``TransientError`` so the caller can decide.
- ``Subscriber``: connects to every publisher of the stack, subscribes by event type
  (and optionally by key, e.g. one symbol), decodes, tracks sequence gaps per publisher,
  and counts every malformed frame by reason (logged at most once a minute per reason).

Which process publishes what is a deployment fact (``common.config.Endpoints``), not
something a module needs to know: it names event types, the bus does the rest.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any, Iterable

import structlog
import zmq

from common import wire, zmqutil
from common.errors import DecodeError, TransientError
from common.log import RateLimiter

log = structlog.get_logger(__name__)


def apply_subscription(subs: frozenset[bytes], message: bytes) -> frozenset[bytes]:
    """The subscribed prefixes after one XPUB subscription message (``\\x01prefix`` = subscribe,
    ``\\x00prefix`` = the last subscriber of that prefix left; anything else changes nothing)."""
    if message[:1] == b"\x01":
        return subs | {message[1:]}
    if message[:1] == b"\x00":
        return subs - {message[1:]}
    return subs


def covers(subs: Iterable[bytes], topic: bytes) -> bool:
    """Whether a subscriber with one of these prefixes receives ``topic`` (b"" = everything)."""
    return any(topic.startswith(p) for p in subs)


class Publisher:
    def __init__(self, service: str, socket: zmq.Socket) -> None:
        # pid + start time: a restarted process (same pid in a container) is a new publisher
        self.name = f"{service}:{os.getpid()}-{time.time_ns()}"
        self._sock = socket
        self._seq: dict[type, int] = {}  # per event type: a subscriber filters by type
        self.dropped = 0
        self.subscriptions: frozenset[bytes] = frozenset()  # XPUB: the prefixes subscribers want

    @classmethod
    def bind_pub(cls, service: str, endpoint: str, *, xpub: bool = False) -> "Publisher":
        """``xpub``: the socket reports subscriptions too, for ``wanted``."""
        return cls(service, zmqutil.pub(endpoint, xpub=xpub))

    def wanted(self, topic: bytes) -> bool:
        """Whether any subscriber now wants ``topic``: reads the subscription messages an XPUB
        socket queued since the last call (a PUB socket: always False). Call it now and then,
        from the thread that publishes: XPUB keeps at most its receive limit of them queued."""
        if self._sock.type != zmq.XPUB:
            return False
        # poll first: a subscriber that went away is processed (and its prefixes dropped) there
        while self._sock.poll(0, zmq.POLLIN):
            try:
                msg = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.subscriptions = apply_subscription(self.subscriptions, msg)
        return covers(self.subscriptions, topic)

    @classmethod
    def connect_journal(cls, service: str, endpoint: str) -> "Publisher":
        return cls(service, zmqutil.push(endpoint))

    def envelope(self, body: Any, event_ns: int | None = None) -> wire.Envelope:
        seq = self._seq.get(type(body), 0) + 1
        self._seq[type(body)] = seq
        now = time.time_ns()
        return wire.Envelope(wire.SCHEMA_VERSION, self.name, seq,
                             event_ns if event_ns is not None else now, now, body)

    def publish(self, body: Any, event_ns: int | None = None) -> int:
        """Send one message; returns its sequence number. PUB never blocks (drop = counted)."""
        env = self.envelope(body, event_ns)
        try:
            self._sock.send_multipart(wire.encode(env), flags=zmq.NOBLOCK)
        except zmq.Again:
            if self._sock.type == zmq.PUSH:
                raise TransientError("journal queue full") from None
            self.dropped += 1
        return env.seq

    def send_raw(self, topic: bytes, payload: bytes) -> bool:
        """Send one un-enveloped message (the feed's raw WebSocket frames); False = dropped."""
        try:
            self._sock.send_multipart((topic, payload), flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.dropped += 1
            return False

    def close(self, linger_ms: int = 0) -> None:
        """``linger_ms`` > 0: what is still queued gets that long to reach the subscribers."""
        if linger_ms:
            self._sock.setsockopt(zmq.LINGER, linger_ms)
        self._sock.close()


class SyncJournal:
    """Journal-then-act: send one message to the database writer and wait until it is
    committed (fsync'd) there. Used for what must be on disk *before* an action, such as an
    order before it is sent to the exchange.

    The writer (the orchestrator's ROUTER) answers ``[b"ok", seq]`` after its commit. No
    answer within ``timeout_ms``: the same envelope is sent again (the writer's inserts are
    idempotent) up to ``attempts`` times, then ``TransientError``: the caller must not act.
    One socket, one thread: call it from the thread that made it.
    """

    def __init__(self, service: str, endpoint: str, *, timeout_ms: int = 2_000, attempts: int = 2) -> None:
        self._pub = Publisher(service, zmqutil.dealer(endpoint))
        self.name = self._pub.name + "/sync"
        self._pub.name = self.name  # its own sequence stream, apart from the PUSH journal's
        self.timeout_ms = timeout_ms
        self.attempts = attempts
        self.acked = 0
        self.failed = 0

    def write(self, body: Any, event_ns: int | None = None) -> int:
        """Returns the acknowledged sequence number, or raises ``TransientError``."""
        env = self._pub.envelope(body, event_ns)
        frames = wire.encode(env)
        sock = self._pub._sock
        while sock.poll(0):  # late answers to earlier, already given-up requests
            sock.recv_multipart()
        want = str(env.seq).encode()
        for _ in range(self.attempts):
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.Again:  # its queue is full: the writer has been gone for a while
                break
            deadline = time.monotonic() + self.timeout_ms / 1000.0
            while (left := deadline - time.monotonic()) > 0:
                if not sock.poll(int(left * 1000) + 1):
                    break
                reply = sock.recv_multipart()
                if len(reply) == 2 and reply[1] == want:
                    if reply[0] == b"ok":
                        self.acked += 1
                        return env.seq
                    self.failed += 1
                    raise TransientError(f"journal refused {type(body).__name__}: {reply[0].decode(errors='replace')}")
        self.failed += 1
        raise TransientError(f"journal did not acknowledge {type(body).__name__} within "
                             f"{self.attempts} x {self.timeout_ms} ms")

    def close(self) -> None:
        self._pub.close()


class Subscriber:
    def __init__(self, endpoints: Iterable[str], event_types: Iterable[wire.EventType] = (),
                 *, keys: Iterable[str] = (), socket: zmq.Socket | None = None) -> None:
        prefixes = _prefixes(tuple(event_types), tuple(keys))
        self._sock = socket if socket is not None else zmqutil.sub(endpoints, prefixes)
        # a SUB that joins late misses the first messages by design; a PULL does not
        self.tracker = wire.SequenceTracker(count_initial=self._sock.type == zmq.PULL)
        self.rejected: Counter[str] = Counter()
        self.received = 0
        self._limiter = RateLimiter(60.0)

    @classmethod
    def bind_pull(cls, endpoint: str) -> "Subscriber":
        return cls((), socket=zmqutil.pull(endpoint))

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def recv(self, timeout_ms: int = 0) -> wire.Envelope | None:
        """Next valid message, or None if nothing arrived within ``timeout_ms``."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(remaining):
                return None
            env = self.recv_ready()
            if env is not None:
                return env
            if time.monotonic() >= deadline:
                return None

    def recv_ready(self) -> wire.Envelope | None:
        """Decode one pending message (call after poll). None if it was malformed."""
        frames = self._sock.recv_multipart(flags=zmq.NOBLOCK, copy=True)
        try:
            env = wire.decode(frames)
        except DecodeError as exc:
            self.rejected[exc.reason] += 1
            if self._limiter.allow(exc.reason, time.monotonic()):
                log.warning("bus.message_rejected", reason=exc.reason, error=str(exc),
                            total=self.rejected[exc.reason])
            return None
        self.received += 1
        missed = self.tracker.observe(f"{env.publisher}/{env.type.value}", env.seq)
        if missed and self._limiter.allow(f"gap:{env.publisher}", time.monotonic()):
            log.warning("bus.sequence_gap", publisher=env.publisher, missed=missed,
                        total_missed=self.tracker.gaps)
        return env

    def drain(self, limit: int = 10_000) -> list[wire.Envelope]:
        out: list[wire.Envelope] = []
        while len(out) < limit and self._sock.poll(0):
            env = self.recv_ready()
            if env is not None:
                out.append(env)
        return out

    def close(self) -> None:
        self._sock.close()


def _prefixes(types: tuple[wire.EventType, ...], keys: tuple[str, ...]) -> list[bytes]:
    if not types:
        return [b""]
    out = []
    for t in types:
        p = wire.topic_prefix(t)
        out.extend([p + k.encode() for k in keys] if keys else [p])
    return out
