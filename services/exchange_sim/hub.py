"""Who listens to what: stream names, connections, subscriptions, and the batched writes.

There is one hub per sim: every connection sees the same market. The market appends ready
frames to ``Connection.out`` while it plays a step; ``Hub.flush`` then hands each
connection's frames to its transport in a single write. Stream names follow Binance:
``<lower-case symbol>@<channel>``, at most ``MAX_STREAMS`` per connection.

The transport is anything with ``write``, ``is_closing`` and ``get_write_buffer_size``
(an asyncio transport in the server, a list-backed fake in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

from common.errors import DefinitiveError
from venue import binance
from services.exchange_sim import render
from services.exchange_sim.symbols import SymbolSpec

MAX_STREAMS = 200  # Binance USD-M: a connection listens to at most 200 streams

CHANNELS = ("trade", "aggTrade", "bookTicker", "markPrice", "markPrice@1s", "kline_1m")
CH_TRADE, CH_AGG, CH_BOOK, CH_MARK, CH_MARK1S, CH_KLINE = range(len(CHANNELS))
_CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}
NO_TARGETS: tuple[tuple, tuple] = ((), ())


class StreamError(DefinitiveError):
    """A stream name the sim does not serve (unknown symbol or channel, or too many)."""


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...


class Connection:
    """One client connection's subscription state and pending frames."""

    __slots__ = ("cid", "combined", "transport", "streams", "out", "frames_sent", "bytes_sent",
                 "frames_dropped", "stalled_until_ms", "inject", "peer", "handle", "route")

    def __init__(self, cid: int, combined: bool, transport: Transport | None, peer: str = "",
                 route: str = "") -> None:
        self.cid = cid
        self.combined = combined  # /stream (wrapped) vs /ws (raw payloads)
        # Binance's routed path ("public", "market"; "" = the plain one, which serves all
        # here): a stream of the other path is accepted and never delivers (venue.binance)
        self.route = route
        self.transport = transport
        self.streams: list[str] = []  # in subscription order, as LIST_SUBSCRIPTIONS shows them
        self.out: list[bytes] = []
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_dropped = 0
        self.stalled_until_ms = 0
        self.inject: list[bytes] = []  # fault injection: raw frames to send next flush
        self.peer = peer
        self.handle: object = None  # the server's WebSocketResponse (for close)


@dataclass(frozen=True)
class StreamKey:
    sym: int
    channel: int


class Hub:
    def __init__(self, specs: tuple[SymbolSpec, ...]) -> None:
        self.specs = specs
        self.by_stream_name = {s.stream: s.index for s in specs}
        self.prefixes = [[render.combined_prefix(f"{s.stream}@{c}") for c in CHANNELS] for s in specs]
        self.targets: list[list[tuple[tuple, tuple]]] = [[NO_TARGETS] * len(CHANNELS) for _ in specs]
        self.conns: dict[int, Connection] = {}
        self._subs: dict[tuple[int, int], list[Connection]] = {}
        self.timer_syms: set[int] = set()  # symbols with a mark price or kline subscriber
        self.unrouted = 0  # streams subscribed on a routed path that does not carry them
        self._next_cid = 1

    # ------------------------------------------------------------------ names
    def parse(self, name: str) -> StreamKey:
        """``btcusdt@trade`` -> (symbol index, channel); ``StreamError`` if not served."""
        if not isinstance(name, str) or "@" not in name:
            raise StreamError(f"invalid stream name {name!r}")
        sym_name, channel = name.split("@", 1)
        sym = self.by_stream_name.get(sym_name)
        if sym is None:
            raise StreamError(f"unknown symbol in stream {name!r}")
        ch = _CHANNEL_INDEX.get(channel)
        if ch is None:
            raise StreamError(f"unsupported channel in stream {name!r}")
        return StreamKey(sym, ch)

    # ------------------------------------------------------------------ connections
    def connect(self, combined: bool, transport: Transport | None, peer: str = "", route: str = "") -> Connection:
        conn = Connection(self._next_cid, combined, transport, peer, route)
        self._next_cid += 1
        self.conns[conn.cid] = conn
        return conn

    def disconnect(self, conn: Connection) -> None:
        self.unsubscribe(conn, list(conn.streams))
        self.conns.pop(conn.cid, None)
        conn.out.clear()

    def subscribe(self, conn: Connection, names: Iterable[str]) -> None:
        """All or nothing: raises ``StreamError`` and changes nothing if any name is bad."""
        names = list(dict.fromkeys(names))
        keys = [self.parse(n) for n in names]
        new = [(n, k) for n, k in zip(names, keys) if n not in conn.streams]
        if len(conn.streams) + len(new) > MAX_STREAMS:
            raise StreamError(f"too many streams: at most {MAX_STREAMS} per connection")
        for name, key in new:
            conn.streams.append(name)
            if conn.route and binance.stream_route(name) != conn.route:
                self.unrouted += 1  # as on Binance: listed, silent
                continue
            self._subs.setdefault((key.sym, key.channel), []).append(conn)
            self._rebuild(key)

    def set_combined(self, conn: Connection, combined: bool) -> None:
        """``SET_PROPERTY combined``: wrap (or stop wrapping) this connection's payloads."""
        conn.combined = combined
        for name in conn.streams:
            self._rebuild(self.parse(name))

    def unsubscribe(self, conn: Connection, names: Iterable[str]) -> None:
        for name in names:
            if name not in conn.streams:
                continue
            key = self.parse(name)
            conn.streams.remove(name)
            subs = self._subs.get((key.sym, key.channel), [])
            if conn in subs:
                subs.remove(conn)
            self._rebuild(key)

    def _rebuild(self, key: StreamKey) -> None:
        subs = self._subs.get((key.sym, key.channel), [])
        comb = tuple(c for c in subs if c.combined)
        raw = tuple(c for c in subs if not c.combined)
        self.targets[key.sym][key.channel] = (comb, raw) if subs else NO_TARGETS
        t = self.targets[key.sym]
        if any(t[c] is not NO_TARGETS for c in (CH_MARK, CH_MARK1S, CH_KLINE)):
            self.timer_syms.add(key.sym)
        else:
            self.timer_syms.discard(key.sym)

    # ------------------------------------------------------------------ output
    def send_now(self, conn: Connection, payload: bytes) -> None:
        """A control reply: queued ahead of the data of the next flush, then flushed."""
        conn.inject.append(render.text_frame(payload))
        self._flush_one(conn, 0)

    def flush(self, now_ms: int) -> int:
        """Write every connection's pending frames, one write each; returns frames written."""
        total = 0
        for conn in self.conns.values():
            if conn.out or conn.inject:
                total += self._flush_one(conn, now_ms)
        return total

    def _flush_one(self, conn: Connection, now_ms: int) -> int:
        out = conn.out
        tr = conn.transport
        h = conn.handle
        # never write after a close frame went out (aiohttp marks ``closed`` before sending it)
        if tr is None or tr.is_closing() or (h is not None and getattr(h, "closed", False)):
            conn.frames_dropped += len(out)
            out.clear()
            conn.inject.clear()
            return 0
        if conn.stalled_until_ms > now_ms:
            conn.frames_dropped += len(out)
            out.clear()
            return 0
        if conn.inject:
            out[:0] = conn.inject
            conn.inject = []
        if not out:
            return 0
        data = b"".join(out)
        tr.write(data)
        n = len(out)
        conn.frames_sent += n
        conn.bytes_sent += len(data)
        out.clear()
        return n

    def buffered(self) -> list[tuple[Connection, int]]:
        """(connection, bytes waiting in its transport) for every open connection."""
        out = []
        for c in self.conns.values():
            if c.transport is not None and not c.transport.is_closing():
                out.append((c, c.transport.get_write_buffer_size()))
        return out
