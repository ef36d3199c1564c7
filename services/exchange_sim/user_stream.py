"""The user data stream's shell: the active listenKey, its WebSocket connections, delivery.

The listenKey rules are in ``listen_keys`` (pure) and the events in ``user_events`` (pure);
this class holds the mutable part: the active key and the connections listening on it. The
desk hands it the events of every account change (``publish``), the pump calls ``tick``
so a key that was not kept alive expires on time (frozen-clock tests move the clock).

Paths (the server's routes; "User Data Streams" Connect and Binance's "Important WebSocket
Change Notice" of 2026, base URL split): ``/private/ws?listenKey=<key>`` with an optional
``events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE`` filter, ``/private/ws/<key>`` (the form clients
such as nautilus and go-binance build), and the legacy ``/ws/<key>``. Payloads are the bare
events (``ws`` mode). Refused before the upgrade, with HTTP 400 and a Binance body: a key
that is not the active one (-1125 ``This listenKey does not exist.``: a typo fails loudly,
where Binance might accept the socket and stay silent), an unknown event name in
``events`` (-1130). Not modelled: ``/private/stream`` (several keys on one connection; 404)
and the legacy combined ``/stream?streams=<key>`` (400, as an unknown stream), JSON
``SUBSCRIBE`` of listenKey items (a control message is answered with an error), the
24-hour connection limit.

A connection only ever carries its own key's events. ``listenKeyExpired`` is sent whatever
the ``events`` filter says; after it the connection stays open and silent (as documented).
Frames are written to the transport directly, like the market hub's, one write per publish.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable, Iterable

import orjson

from common.errors import DecodeError
from services.exchange_sim import listen_keys, render
from services.exchange_sim.hub import Transport
from services.exchange_sim.listen_keys import ListenKey
from services.exchange_sim.user_events import listen_key_expired

EVENT_NAMES = ("ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE", "ALGO_UPDATE", "TRADE_LITE", "ACCOUNT_CONFIG_UPDATE",
               "MARGIN_CALL", "CONDITIONAL_ORDER_TRIGGER_REJECT", "GRID_UPDATE", "STRATEGY_UPDATE",
               "listenKeyExpired")  # the USD-M user data stream's event pages
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class EventsError(DecodeError):
    """An ``events=`` filter naming an event the user data stream does not have."""


def parse_events(raw: str | None) -> frozenset[str] | None:
    """``ORDER_TRADE_UPDATE/ACCOUNT_UPDATE`` -> that set; None (absent or empty) = every event."""
    if not raw:
        return None
    names = frozenset(n for n in raw.split("/") if n)
    unknown = sorted(names - set(EVENT_NAMES))
    if unknown or not names:
        raise EventsError(f"unknown user data event(s): {unknown}")
    return names


def new_key() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(listen_keys.KEY_LENGTH))


class UserConn:
    __slots__ = ("cid", "key", "events", "transport", "handle", "peer", "frames_sent", "silent")

    def __init__(self, cid: int, key: str, events: frozenset[str] | None, transport: Transport | None,
                 peer: str) -> None:
        self.cid = cid
        self.key = key
        self.events = events  # None = all
        self.transport = transport
        self.handle: object = None  # the server's WebSocketResponse
        self.peer = peer
        self.frames_sent = 0
        self.silent = False  # its key expired: nothing more is sent


class UserStream:
    def __init__(self, validity_ms: int = listen_keys.VALIDITY_MS) -> None:
        self.validity_ms = validity_ms
        self.active: ListenKey | None = None
        self.conns: dict[int, UserConn] = {}
        self._next_cid = 1
        self.events_sent = 0
        self.keys_expired = 0
        self.closer: Callable[[list[UserConn]], None] | None = None  # the server's: close these sockets

    # ------------------------------------------------------------------ listenKey (REST)
    def start(self, now_ms: int) -> str:
        self.tick(now_ms)
        self.active = listen_keys.start(self.active, new_key(), now_ms, self.validity_ms)
        return self.active.key

    def keepalive(self, now_ms: int) -> str:
        self.tick(now_ms)
        self.active = listen_keys.keepalive(self.active, now_ms, self.validity_ms)
        return self.active.key

    def close(self) -> list[UserConn]:
        """``DELETE``: the key is gone; returns its connections, for the server to close."""
        key = self.active.key if self.active is not None else None
        self.active = None
        return [c for c in self.conns.values() if c.key == key]

    def tick(self, now_ms: int) -> None:
        if listen_keys.expired(self.active, now_ms):
            self.expire(now_ms)

    def expire(self, now_ms: int) -> None:
        """The active key expires now: ``listenKeyExpired`` to its connections, then silence."""
        if self.active is None:
            return
        key = self.active.key
        self.active = None
        self.keys_expired += 1
        frame = render.text_frame(orjson.dumps(listen_key_expired(key, now_ms)))
        for c in self.conns.values():
            if c.key == key and not c.silent:
                self.events_sent += self._write(c, [frame])
                c.silent = True

    def valid(self, key: str, now_ms: int) -> bool:
        self.tick(now_ms)
        return listen_keys.valid(self.active, key, now_ms)

    # ------------------------------------------------------------------ connections
    def connect(self, transport: Transport | None, key: str, events: frozenset[str] | None,
                peer: str = "") -> UserConn:
        conn = UserConn(self._next_cid, key, events, transport, peer)
        self._next_cid += 1
        self.conns[conn.cid] = conn
        return conn

    def disconnect(self, conn: UserConn) -> None:
        self.conns.pop(conn.cid, None)

    def listening(self) -> bool:
        """Whether any connection would receive an event now (else the desk skips the work)."""
        active = self.active
        return active is not None and any(c.key == active.key and not c.silent for c in self.conns.values())

    def publish(self, events: Iterable[dict[str, Any]]) -> int:
        """Send ``events`` to the active key's connections (each through its filter)."""
        if self.active is None:
            return 0
        encoded = [(e["e"], render.text_frame(orjson.dumps(e))) for e in events]
        if not encoded:
            return 0
        sent = 0
        for c in list(self.conns.values()):
            if c.key != self.active.key or c.silent:
                continue
            frames = [f for name, f in encoded if c.events is None or name in c.events]
            if frames:
                sent += self._write(c, frames)
        self.events_sent += sent
        return sent

    def _write(self, c: UserConn, frames: list[bytes]) -> int:
        tr = c.transport
        h = c.handle
        if tr is None or tr.is_closing() or (h is not None and getattr(h, "closed", False)):
            return 0
        tr.write(b"".join(frames))
        c.frames_sent += len(frames)
        return len(frames)

    def stats(self) -> dict[str, Any]:
        return {"listen_key_active": self.active is not None, "connections": len(self.conns),
                "events_sent": self.events_sent, "keys_expired": self.keys_expired}
