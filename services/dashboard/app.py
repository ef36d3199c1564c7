"""The dashboard's HTTP side (aiohttp) and its loops: events in, database read, page out.

    GET  /                       the page (static/index.html, app.css, app.js: no CDN, no build step)
    GET  /api/state              the page model as JSON (``page.build``)
    GET  /api/events             the same, pushed as server-sent events at each refresh
    GET  /health                 200 {"status": "ok"}
    GET  /metrics                Prometheus text: the same names as the supervisor's (``common.prom``),
                                 from its snapshot, or from the heartbeats where there is no supervisor
    POST /api/pause | /api/resume | /api/close {"symbol": S} | /api/closeall | /api/killswitch/clear
                                 the control API: ``auth`` first, then ``control``

Loops (asyncio tasks): ``pump`` folds the PUB events into ``Live`` every 100 ms; ``refresh``
reads the database (in a worker thread: one read transaction), asks the supervisor for its
``/status`` and rebuilds the page every ``refresh_s`` while a page is open or the API was read
in the last ``IDLE_AFTER_S`` (an unwatched dashboard costs next to nothing), sooner after a
trading event. Only the symbols with an open position have their ticks subscribed.

Never in an answer, a page or a log line: the token (requests are not logged by aiohttp here;
our own lines name the client, the command and the verdict).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import structlog
import zmq
from aiohttp import web

from common import bus, prom, service, wire
from common.config import AegisConfig, Endpoints
from common.log import RateLimiter
from services.dashboard import auth, config as dc, control, page, store
from services.dashboard.live import Live

log = structlog.get_logger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/static/app.css": ("app.css", "text/css; charset=utf-8"),
         "/static/app.js": ("app.js", "text/javascript; charset=utf-8")}
SECURITY_HEADERS = {
    # everything from this origin only: no inline script, no third party, no framing
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                               " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PUMP_S = 0.1
SOON_S = 0.3  # a trading event: the page is rebuilt this soon (the journal is a batch behind)
KEEPALIVE_S = 15.0
TRADING_EVENTS = (wire.Fill, wire.OrderUpdate, wire.OrderRequest, wire.Position, wire.RiskReject,
                  wire.SignalGenerated, wire.TradeClosed, wire.AlgoOrderUpdate, wire.Control)
SUBSCRIBED = (wire.EventType.HEARTBEAT, wire.EventType.FEED_STATUS, wire.EventType.SIGNAL_GENERATED,
              wire.EventType.ORDER_REQUEST, wire.EventType.ORDER_UPDATE, wire.EventType.FILL,
              wire.EventType.POSITION, wire.EventType.RISK_REJECT, wire.EventType.TRADE_CLOSED,
              wire.EventType.ALGO_ORDER_UPDATE, wire.EventType.CONTROL, wire.EventType.TRADING_PERMISSION)
VERDICT_COUNTERS = ("unauthorized", "forbidden", "rate_limited", "bad_request")


class Dashboard:
    def __init__(self, cfg: AegisConfig, params: dc.DashboardParams, rd: Path, ep: Endpoints) -> None:
        self.cfg = cfg
        self.params = params
        self.rd = rd
        self.db_path = service.db_path(cfg)
        self.live = Live()
        self.sub = bus.Subscriber(ep.publishers(), SUBSCRIBED)
        self.channel = control.ControlChannel(ep.brain_control, ep.journal)
        self.window = auth.Window()
        self.site = auth.site(params.host, params.port, params.allowed_origins)
        self.counts: Counter[str] = Counter()
        self.clients: set[asyncio.Queue] = set()
        self.model: dict[str, Any] = {}
        self.model_json = b""
        self.view: store.DbView | None = None
        self.db_error = ""
        self.sup: dict[str, Any] | None = None
        self.conn = None
        self.ticks: set[str] = set()  # symbols whose TICK_UPDATE we subscribe (open positions)
        self.demand_s = 0.0  # the API was last read at (monotonic)
        self.soon = False
        self.stopping = asyncio.Event()
        self.pages = {path: ((STATIC / name).read_bytes(), ctype) for path, (name, ctype) in PAGES.items()}
        self._limiter = RateLimiter(60.0)
        self._http: aiohttp.ClientSession | None = None
        self.always_active = False  # the Telegram bot's alerts need the page model all the time
        self.extra_stats: dict[str, int] = {}  # the Telegram bot's counters

    def bind_port(self, port: int) -> None:
        """The port we really got (0 or a taken one was asked): the Host check follows it."""
        self.site = auth.site(self.params.host, port, self.params.allowed_origins)

    # ------------------------------------------------------------------ loops
    async def pump(self) -> None:
        while not self.stopping.is_set():
            now = time.monotonic()
            for env in self.sub.drain(5_000):
                self.live.apply(env, now)
                if isinstance(env.body, TRADING_EVENTS):
                    self.soon = True
            await asyncio.sleep(PUMP_S)

    def active(self) -> bool:
        return self.always_active or bool(self.clients) or time.monotonic() - self.demand_s < dc.IDLE_AFTER_S

    async def refresh_loop(self) -> None:
        next_at = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            due = now >= next_at or (self.soon and now >= next_at - self.params.refresh_s + SOON_S)
            if self.active() and due:
                self.soon = False
                next_at = now + self.params.refresh_s
                await self.refresh()
            await asyncio.sleep(0.1)

    async def refresh(self) -> None:
        self.view, self.db_error = await asyncio.to_thread(self._read)
        self.sup = await self._supervisor_status()
        self._follow_ticks()
        self.model = page.build(view=self.view, live=self.live, sup=self.sup, control=self.control_state(),
                                 now_ms=time.time_ns() // 1_000_000, now_s=time.monotonic(), mode=self.cfg.mode,
                                 db_error=self.db_error)
        data = to_json(self.model)
        self.model_json = data
        frame = b"data: " + data + b"\n\n"
        for q in list(self.clients):
            if q.full():
                q.get_nowait()  # a slow page skips to the newest state
            q.put_nowait(frame)

    def _read(self) -> tuple[store.DbView | None, str]:
        try:
            if self.conn is None:
                self.conn = store.connect(self.db_path)
                if self.conn is None:
                    return None, "no database yet"
            return store.read(self.conn), ""
        except Exception as exc:  # a locked or damaged database: show the last view, say why
            if self._limiter.allow("db", time.monotonic()):
                log.warning("dashboard.db_read_failed", error=str(exc))
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return self.view, f"database read failed: {exc}"

    async def _supervisor_status(self) -> dict[str, Any] | None:
        url_file = self.rd / "monitor.url"
        try:
            url = url_file.read_text().strip()
        except OSError:
            return None  # no supervisor (docker compose): the heartbeats are all there is
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))
        try:
            async with self._http.get(f"{url}/status") as r:
                return await r.json() if r.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None

    def _follow_ticks(self) -> None:
        held = {p["symbol"] for p in (self.view.positions if self.view else [])}
        prefix = wire.topic_prefix(wire.EventType.TICK_UPDATE)
        sock = self.sub.socket
        for s in held - self.ticks:
            sock.setsockopt(zmq.SUBSCRIBE, prefix + s.encode())
        for s in self.ticks - held:
            sock.setsockopt(zmq.UNSUBSCRIBE, prefix + s.encode())
            self.live.marks.pop(s, None)
        self.ticks = held

    def control_state(self) -> dict[str, Any]:
        return {"enabled": bool(self.params.token), **{k: self.counts[k] for k in (
            *VERDICT_COUNTERS, "done", "refused", "unanswered", "unreachable")}}

    # ------------------------------------------------------------------ HTTP
    async def page(self, request: web.Request) -> web.Response:
        body, ctype = self.pages[request.path]
        return web.Response(body=body, headers={**SECURITY_HEADERS, "Content-Type": ctype})

    async def state(self, request: web.Request) -> web.Response:
        self.demand_s = time.monotonic()
        if not self.model_json:
            await self.refresh()
        return web.Response(body=self.model_json, headers={**SECURITY_HEADERS, "Content-Type": "application/json"})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers=SECURITY_HEADERS)

    async def metrics(self, request: web.Request) -> web.Response:
        sup = await self._supervisor_status()
        snap = page.metrics_snapshot(sup, self.live, time.monotonic())
        return web.Response(body=prom.render(lambda: snap),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue = asyncio.Queue(maxsize=2)
        self.clients.add(q)
        try:
            await resp.write(b"retry: 2000\n\n")
            if not self.model_json:
                await self.refresh()
            else:
                await resp.write(b"data: " + self.model_json + b"\n\n")
            while not self.stopping.is_set():
                try:
                    frame = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    frame = b": keepalive\n\n"
                if frame is None:
                    break
                await resp.write(frame)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            self.clients.discard(q)
        return resp

    def authorize(self, request: web.Request) -> auth.Verdict:
        h = request.headers
        req = auth.Request(client=request.remote or "?", host=h.get("Host", ""), origin=h.get("Origin", ""),
                           authorization=h.get("Authorization", ""), token_header=h.get("X-Aegis-Token", ""),
                           now_s=time.monotonic())
        verdict, self.window = auth.check(self.params.limits, self.window, req, self.params.token, self.site)
        return verdict

    async def command(self, request: web.Request) -> web.Response:
        verdict = self.authorize(request)
        client = request.remote or "?"
        path = request.match_info["cmd"]
        if not verdict.allowed:
            kind = {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}[verdict.status]
            self.counts[kind] += 1
            if self._limiter.allow(f"{kind}:{client}", time.monotonic()):
                log.warning("dashboard.refused", client=client, command=path, status=verdict.status,
                            reason=verdict.reason, total=self.counts[kind])
            headers = {**SECURITY_HEADERS, **({"WWW-Authenticate": "Bearer"} if verdict.status == 401 else {})}
            return web.json_response({"error": verdict.reason, "message": verdict.message}, status=verdict.status,
                                     headers=headers)
        body = await request.read()
        via = "page" if request.headers.get("X-Aegis-Via") == "page" else "api"
        cmd = control.parse(path, body, client=client, via=via, now_ms=time.time_ns() // 1_000_000)
        if isinstance(cmd, control.BadRequest):
            self.counts["bad_request"] += 1
            return web.json_response({"error": "bad_request", "message": cmd.message}, status=400,
                                     headers=SECURITY_HEADERS)
        answer = await self.channel.send(cmd, self.params.control_timeout_s)
        self.soon = True
        out = {"request_id": cmd.request_id, "command": cmd.command.value, "symbol": cmd.symbol}
        if answer == "unreachable":
            self.counts["unreachable"] += 1
            status, out = 503, {**out, "status": "NOT_SENT", "message": "the brain is not connected (restarting?): "
                                                                        "nothing was done"}
        elif answer is None:
            self.counts["unanswered"] += 1
            status, out = 504, {**out, "status": "NO_ANSWER",
                                "message": f"no answer from the brain within {self.params.control_timeout_s:g} s: "
                                           "it may or may not have run; check the positions"}
        else:
            done = answer.status is wire.ControlStatus.DONE
            self.counts["done" if done else "refused"] += 1
            status, out = (200 if done else 409), {**out, "status": answer.status.value, "message": answer.detail}
        log.warning("dashboard.command", client=client, via=via, command=cmd.command.value, symbol=cmd.symbol or None,
                    status=out["status"], request_id=cmd.request_id)
        return web.json_response(out, status=status, headers=SECURITY_HEADERS)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=control.MAX_BODY * 4)
        for path in self.pages:
            app.router.add_get(path, self.page)
        app.router.add_get("/api/state", self.state)
        app.router.add_get("/api/events", self.events)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/api/{cmd:pause|resume|close|closeall|killswitch/clear}", self.command)
        return app

    def stats(self) -> dict[str, Any]:
        return {"service": "dashboard", "clients": len(self.clients), "events": dict(self.live.events),
                **self.control_state(), **self.extra_stats}

    async def close(self) -> None:
        self.stopping.set()
        for q in list(self.clients):
            if q.full():
                q.get_nowait()
            q.put_nowait(None)
        if self._http is not None:
            await self._http.close()
        self.channel.close()
        self.sub.close()
        if self.conn is not None:
            self.conn.close()


def to_json(obj: Any) -> bytes:
    """Compact JSON the browser can parse: a non-finite number (which JSON cannot spell) is null."""
    return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False, default=str).encode()


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if x == x and x not in (float("inf"), float("-inf")) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x
