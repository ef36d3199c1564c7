"""The sim's WebSocket API endpoint (``/ws-fapi/v1``): connections, faults, delivery (shell).

The rules are in ``ws_api`` (pure): the envelope, the parsing, the rate-limit counts and the
answers; the trading is the desk's (``Desk.verify_ws``, ``Desk.execute`` on the REST
builders). This class owns what is mutable: the open connections, the IP's usage (shared
with REST: the server's weight header reads ``spend``), the armed faults and counters.

Requests on one connection are run one after the other in arrival order, each to its
answer, which is written to the transport directly as one text frame (like the market hub's
frames). An ``order_timeout`` fault delays an ``order.place`` answer (the order is placed at
once, the answer comes ``seconds`` later) without holding up the requests behind it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from services.exchange_sim import render, ws_api
from services.exchange_sim.desk import Desk
from services.exchange_sim.rest import RestError

log = structlog.get_logger(__name__)

REFUSED = (-1001, "Internal error; unable to process your request. Please try again.")


@dataclass(eq=False)
class WsApiConn:
    cid: int
    ws: web.WebSocketResponse
    transport: Any
    connected_ms: int
    rate_limits: bool  # the connection's returnRateLimits default
    requests: int = 0


@dataclass
class Drop:
    remaining: int
    when: str  # "executed" | "received"


@dataclass
class WsApiStats:
    connections_total: int = 0
    refused: int = 0
    requests: int = 0
    errors: int = 0
    dropped: int = 0
    by_method: dict[str, int] = field(default_factory=dict)


class WsApiEndpoint:
    def __init__(self, desk: Desk, clock_ms: Callable[[], int], close_timeout_s: float = 1.0) -> None:
        self.desk = desk
        self.clock_ms = clock_ms
        self.close_timeout_s = close_timeout_s
        self.usage = ws_api.Usage()
        self.conns: dict[int, WsApiConn] = {}
        self.drops: list[Drop] = []
        self.refuse_until_ms = 0
        self.stats = WsApiStats()
        self._builders = desk.ws_api_builders()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ usage (REST shares it)
    def spend(self, now_ms: int, *, weight: int = 0, orders: int = 0) -> ws_api.Usage:
        self.usage = ws_api.spend(self.usage, now_ms, weight=weight, orders=orders)
        return self.usage

    # ------------------------------------------------------------------ faults
    def arm_drop(self, count: int, when: str) -> None:
        self.drops.append(Drop(remaining=count, when=when))

    def refuse(self, seconds: float) -> int:
        """Refuse new connections for ``seconds`` and drop the open ones (how many)."""
        self.refuse_until_ms = self.clock_ms() + int(seconds * 1000)
        conns = list(self.conns.values())
        for c in conns:
            self._abort(c)
        return len(conns)

    def clear(self) -> None:
        self.drops.clear()
        self.refuse_until_ms = 0

    def _take_drop(self, when: str) -> bool:
        for d in self.drops:
            if d.when == when and d.remaining > 0:
                d.remaining -= 1
                if not d.remaining:
                    self.drops.remove(d)
                return True
        return False

    def _abort(self, conn: WsApiConn) -> None:
        self.conns.pop(conn.cid, None)
        if conn.transport is not None:
            conn.transport.abort()

    # ------------------------------------------------------------------ connections
    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = self.clock_ms()
        if now < self.refuse_until_ms:
            self.stats.refused += 1
            return web.Response(body=render.rest_error(*REFUSED), status=503, content_type="application/json")
        self.spend(self.desk.now_ms(), weight=ws_api.HANDSHAKE_WEIGHT)
        ws = web.WebSocketResponse(compress=False, autoping=True, timeout=self.close_timeout_s,
                                   max_msg_size=1 << 16)
        await ws.prepare(request)
        conn = WsApiConn(cid=next(self._ids), ws=ws, transport=request.transport, connected_ms=self.desk.now_ms(),
                         rate_limits=ws_api.connection_rate_limits(request.query))
        self.conns[conn.cid] = conn
        self.stats.connections_total += 1
        log.info("sim.ws_api_connected", conn=conn.cid, peer=str(request.remote))
        try:
            async for msg in ws:
                if msg.type in (web.WSMsgType.TEXT, web.WSMsgType.BINARY):
                    if conn.cid not in self.conns:
                        break  # dropped by a fault meanwhile
                    await self._on_frame(conn, msg.data)
        finally:
            self.conns.pop(conn.cid, None)
            log.info("sim.ws_api_disconnected", conn=conn.cid, requests=conn.requests)
        return ws

    async def close_all(self) -> None:
        for c in list(self.conns.values()):
            self.conns.pop(c.cid, None)
            try:
                await asyncio.wait_for(c.ws.close(code=1001, drain=False), self.close_timeout_s)
            except (asyncio.TimeoutError, ConnectionError):
                if c.transport is not None:
                    c.transport.abort()

    def _send(self, conn: WsApiConn, answer: bytes) -> None:
        t = conn.transport
        if t is not None and not t.is_closing():
            t.write(render.text_frame(answer))

    # ------------------------------------------------------------------ one request
    async def _on_frame(self, conn: WsApiConn, data: str | bytes) -> None:
        conn.requests += 1
        self.stats.requests += 1
        try:
            req = ws_api.parse(data)
        except ws_api.WsApiError as exc:
            self.stats.errors += 1
            self._send(conn, ws_api.error(exc.req_id, exc.status, exc.code, exc.msg, None))
            return
        show = ws_api.shows_rate_limits(req, conn.rate_limits)
        now = self.desk.now_ms()
        try:
            method = ws_api.method_of(req)
        except ws_api.WsApiError as exc:
            self.stats.errors += 1
            limits = ws_api.rate_limits(self.spend(now), None) if show else None
            self._send(conn, ws_api.error(req.id, exc.status, exc.code, exc.msg, limits))
            return
        self.stats.by_method[req.method] = self.stats.by_method.get(req.method, 0) + 1
        self.spend(now, weight=method.weight)
        if self._take_drop("received"):
            self._dropped(conn, req, "received")
            return
        try:
            if method.signed:
                params = self.desk.verify_ws(req.params, now)
                if method.orders:
                    self.spend(now, orders=method.orders)
                result = await self.desk.execute(self._builders[req.method], params, now)
            else:  # session.status / session.logout: this connection never logged on
                result = ws_api.session(connected_ms=conn.connected_ms, now_ms=now, return_rate_limits=conn.rate_limits)
        except RestError as exc:
            self.stats.errors += 1
            answer = ws_api.error(req.id, exc.status, exc.code, exc.msg,
                                  ws_api.rate_limits(self.usage, method) if show else None)
        else:
            answer = ws_api.ok(req.id, result, ws_api.rate_limits(self.usage, method) if show else None)
        if self._take_drop("executed"):
            self._dropped(conn, req, "executed")
            return
        delay = self.desk.order_delays.pop(0) if req.method == "order.place" and self.desk.order_delays else 0.0
        if delay:
            log.info("sim.order_answer_delayed", seconds=delay, via="ws-api")
            task = asyncio.ensure_future(self._send_later(conn, answer, delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._send(conn, answer)

    async def _send_later(self, conn: WsApiConn, answer: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._send(conn, answer)

    def _dropped(self, conn: WsApiConn, req: ws_api.Request, when: str) -> None:
        self.stats.dropped += 1
        log.info("sim.ws_api_dropped", conn=conn.cid, method=req.method, request_id=req.id, when=when)
        self._abort(conn)

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {"connections": len(self.conns), "connections_total": s.connections_total, "refused": s.refused,
                "requests": s.requests, "errors": s.errors, "dropped": s.dropped, "by_method": dict(s.by_method),
                "pending_drops": sum(d.remaining for d in self.drops),
                "refusing": self.refuse_until_ms > self.clock_ms(), "weight_1m": self.usage.weight_1m}
