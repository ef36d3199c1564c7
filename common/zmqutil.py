"""ZeroMQ helpers: one context per process, sockets with deliberate options.

The context is created lazily in the process that uses it (never at import, never
inherited across fork: a forked child gets a fresh one, keyed by pid).

Socket options and why:
- PUB: SNDHWM 100k messages; beyond that ZeroMQ drops for slow subscribers, which is right
  for conflated market events (a dashboard must never slow the engine). LINGER 0: pending
  events are worthless after shutdown.
- PUSH (journal): SNDHWM 1M and LINGER 5 s: journal messages must reach the writer, so on
  shutdown we give them time to flush; IMMEDIATE off so messages queue while the
  orchestrator restarts.
- SUB/PULL: RCVHWM 1M.
- ROUTER/DEALER (the synchronous journal): LINGER 0 on both sides: the client waits for an
  acknowledgement and re-sends on timeout, and the writer's inserts are idempotent.
"""

from __future__ import annotations

import os
from typing import Iterable

import zmq

PUB_SNDHWM = 100_000
JOURNAL_SNDHWM = 1_000_000
RCVHWM = 1_000_000
JOURNAL_LINGER_MS = 5_000

_ctx: zmq.Context | None = None
_ctx_pid: int | None = None


def context() -> zmq.Context:
    global _ctx, _ctx_pid
    if _ctx is None or _ctx_pid != os.getpid():
        _ctx = zmq.Context()
        _ctx_pid = os.getpid()
    return _ctx


def term() -> None:
    """Close every socket (honouring LINGER) and end the context."""
    global _ctx, _ctx_pid
    if _ctx is not None and _ctx_pid == os.getpid():
        _ctx.term()
    _ctx = None
    _ctx_pid = None


def pub(endpoint: str, *, sndhwm: int = PUB_SNDHWM) -> zmq.Socket:
    s = context().socket(zmq.PUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, sndhwm)
    s.bind(endpoint)
    return s


def sub(endpoints: Iterable[str], prefixes: Iterable[bytes] = (b"",)) -> zmq.Socket:
    s = context().socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, RCVHWM)
    for p in prefixes:
        s.setsockopt(zmq.SUBSCRIBE, p)
    for e in endpoints:
        s.connect(e)
    return s


def push(endpoint: str, *, linger_ms: int = JOURNAL_LINGER_MS) -> zmq.Socket:
    s = context().socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, linger_ms)
    s.setsockopt(zmq.SNDHWM, JOURNAL_SNDHWM)
    s.connect(endpoint)
    return s


def pull(endpoint: str) -> zmq.Socket:
    s = context().socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, RCVHWM)
    s.bind(endpoint)
    return s


def router(endpoint: str) -> zmq.Socket:
    """The synchronous journal's server side: replies go back to the asking peer."""
    s = context().socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, RCVHWM)
    s.bind(endpoint)
    return s


def dealer(endpoint: str) -> zmq.Socket:
    """The synchronous journal's client: LINGER 0, a request without an ack is re-sent anyway."""
    s = context().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def ipc_path(endpoint: str) -> str | None:
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None
