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

Security: ipc endpoints live in the private run directory (mode 0700), so the file system
guards them. A tcp endpoint can be reached by anyone who can reach the port, so a tcp socket
is only ever made with ZeroMQ CURVE (encryption and authentication, ``common.curve``): the
binding side is the CURVE server, the connecting side a client that must know the server's
public key, and a ZAP handler (one per context) admits only clients whose public key is in
the allow-list directory. There is no way to get a plain tcp socket from this module: with
no keys installed (``use_curve``) it raises ``ConfigError``.
"""

from __future__ import annotations

import os
from typing import Iterable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from common.curve import CurveKeys, require_curve_support
from common.errors import ConfigError

PUB_SNDHWM = 100_000
JOURNAL_SNDHWM = 1_000_000
RCVHWM = 1_000_000
JOURNAL_LINGER_MS = 5_000

_ctx: zmq.Context | None = None
_ctx_pid: int | None = None
_curve: CurveKeys | None = None  # this process's keys for tcp endpoints (``use_curve``)
_auth: ThreadAuthenticator | None = None  # the ZAP handler of ``_ctx`` (made on first tcp bind)


def context() -> zmq.Context:
    global _ctx, _ctx_pid
    if _ctx is None or _ctx_pid != os.getpid():
        _ctx = zmq.Context()
        _ctx_pid = os.getpid()
    return _ctx


def term() -> None:
    """Close every socket (honouring LINGER) and end the context."""
    global _ctx, _ctx_pid, _auth
    if _ctx is not None and _ctx_pid == os.getpid():
        if _auth is not None:
            _auth.stop()  # its sockets would keep term() waiting forever
        _ctx.term()
    _ctx = None
    _ctx_pid = None
    _auth = None


def use_curve(keys: CurveKeys | None) -> None:
    """Install this process's CURVE keys: every later tcp socket uses them (None: no tcp).
    Called once by the shell (``common.service.endpoints``), before any socket is made."""
    global _curve
    _curve = keys


LOCAL_TRANSPORTS = ("ipc://", "inproc://")  # guarded by the file system / the process itself


def needs_curve(endpoint: str) -> bool:
    """Any transport a peer could reach from elsewhere (tcp, and anything not local)."""
    return not endpoint.startswith(LOCAL_TRANSPORTS)


def _authenticator(keys: CurveKeys) -> None:
    """Start this context's ZAP handler once: binders then admit only allow-listed clients.
    Without a ZAP handler libzmq would admit any client that knows the server's public key."""
    global _auth
    ctx = context()
    if _auth is None or _auth.context is not ctx:
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=keys.authorized_dir)
        _auth = auth


def _secure(sock: zmq.Socket, endpoints: tuple[str, ...], *, server: bool,
            curve: CurveKeys | None) -> None:
    """CURVE options for a socket about to bind (server) or connect (client) to ``endpoints``.
    Must run before bind/connect: ZeroMQ reads the mechanism when the connection is made."""
    remote = [e for e in endpoints if needs_curve(e)]
    if not remote:
        return
    if len(remote) != len(endpoints):  # one socket, one mechanism: CURVE would break the ipc peers
        raise ConfigError(f"cannot mix tcp and ipc endpoints on one socket: {list(endpoints)}")
    keys = curve if curve is not None else _curve
    if keys is None:
        raise ConfigError(f"tcp endpoint {remote[0]} without CURVE keys: tcp is only ever used with "
                          "ZeroMQ CURVE (create keys with `aegis keys`)")
    require_curve_support()
    if server:
        _authenticator(keys)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server_public)
    else:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)


def pub(endpoint: str, *, sndhwm: int = PUB_SNDHWM, curve: CurveKeys | None = None,
        xpub: bool = False) -> zmq.Socket:
    """A PUB socket; ``xpub``: an XPUB, which also hands its owner the subscriptions
    (``bus.Publisher.wanted``), so a stream can be sent only while somebody wants it."""
    s = context().socket(zmq.XPUB if xpub else zmq.PUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, sndhwm)
    _bind(s, endpoint, curve)
    return s


def sub(endpoints: Iterable[str], prefixes: Iterable[bytes] = (b"",), *,
        curve: CurveKeys | None = None) -> zmq.Socket:
    eps = tuple(endpoints)
    s = context().socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, RCVHWM)
    for p in prefixes:
        s.setsockopt(zmq.SUBSCRIBE, p)
    _connect(s, eps, curve)
    return s


def push(endpoint: str, *, linger_ms: int = JOURNAL_LINGER_MS,
         curve: CurveKeys | None = None) -> zmq.Socket:
    s = context().socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, linger_ms)
    s.setsockopt(zmq.SNDHWM, JOURNAL_SNDHWM)
    _connect(s, (endpoint,), curve)
    return s


def pull(endpoint: str, *, curve: CurveKeys | None = None) -> zmq.Socket:
    s = context().socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, RCVHWM)
    _bind(s, endpoint, curve)
    return s


def router(endpoint: str, *, curve: CurveKeys | None = None) -> zmq.Socket:
    """The synchronous journal's server side: replies go back to the asking peer."""
    s = context().socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, RCVHWM)
    _bind(s, endpoint, curve)
    return s


def dealer(endpoint: str, *, curve: CurveKeys | None = None, immediate: bool = False) -> zmq.Socket:
    """The synchronous journal's client: LINGER 0, a request without an ack is re-sent anyway.

    ``immediate``: a send fails at once (``zmq.Again``) while the peer is not connected,
    instead of waiting in a queue to be delivered whenever it comes back: right for an
    operator's command, which must not be carried out long after its sender gave up."""
    s = context().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if immediate:
        s.setsockopt(zmq.IMMEDIATE, 1)
    _connect(s, (endpoint,), curve)
    return s


def _bind(s: zmq.Socket, endpoint: str, curve: CurveKeys | None) -> None:
    try:
        _secure(s, (endpoint,), server=True, curve=curve)
        s.bind(endpoint)
    except BaseException:
        s.close()  # a half-made socket would keep term() waiting
        raise


def _connect(s: zmq.Socket, endpoints: tuple[str, ...], curve: CurveKeys | None) -> None:
    try:
        _secure(s, endpoints, server=False, curve=curve)
        for e in endpoints:
            s.connect(e)
    except BaseException:
        s.close()
        raise


def ipc_path(endpoint: str) -> str | None:
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None
