"""The sim's network face: one aiohttp app on one port for REST and WebSocket streams.

The data comes from the tick capture (``source = "ticks"``) or from real 1m candles replayed
as synthesized trades (``"candles"``, see ``candle_trades``: real history is then preloaded into
the klines, and the start is put on a minute so a sim minute holds whole candles).

One ``Market`` and one pump task serve every connection (all clients see the same events).
The pump plays what is due every ``step_ms`` (or back to back at max speed), and hands each
connection its frames in one transport write. Frames are written to the request's transport
directly rather than through ``WebSocketResponse.send_str``: at 300 symbols the recorded pace
is ~76,000 messages/s, and an awaited send per message costs more than the rendering.

Routes
------
WebSocket: ``/stream?streams=a/b/c`` (combined frames), ``/ws/<stream>`` and ``/ws`` (raw
payloads), ``/stream`` (combined, subscribe later); each also under Binance production's
routed paths ``/public/...`` (book streams) and ``/market/...`` (the others), where a stream
of the other path is accepted and never delivers, as on Binance (``stats.unrouted_streams``). A stream the sim does not serve in the
URL, or more than 200 of them, is refused before the upgrade with HTTP 400 and a Binance
error body; over a live connection, SUBSCRIBE errors are answered (see ``stream_control``).

User data stream: ``/private/ws?listenKey=<key>[&events=A/B]``, ``/private/ws/<key>`` and the
legacy ``/ws/<key>`` (see ``user_stream``), with ``POST/PUT/DELETE /fapi/v1/listenKey``.

WebSocket API: ``/ws-fapi/v1`` (``ws_api``, ``ws_api_server``): ``order.place``,
``order.status``, ``order.cancel``, ``algoOrder.place``, ``algoOrder.cancel``,
``account.position``, ``v2/account.position``, ``session.status``/``logout``, signed and
answered as Binance does, on the same account as REST; its weight counts with REST's.

REST: ``/fapi/v1/ping``, ``time``, ``exchangeInfo``, ``klines``, ``ticker/24hr``,
``ticker/price`` (and ``/fapi/v2/ticker/price``), ``fundingRate``, ``ticker/bookTicker``, ``premiumIndex``, ``depth``; and the signed
trading endpoints of one simulated account (orders, fills, positions, balance: ``desk``),
whose resting orders are matched against the market after every step.

Test control (not Binance): ``GET /_sim/stats``, ``POST /_sim/fault`` (see ``faults``),
``POST /_sim/price`` (move a symbol's last and mark price, see ``market.Market.set_price``),
``POST /_sim/funding {"symbol"?}`` (settle funding now, see ``funding``),
and the trading records ``GET /_sim/trades``, ``/_sim/orders``, ``/_sim/account``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import structlog
from aiohttp import web

from venue import binance
from services.exchange_sim import candle_trades
from services.exchange_sim import faults, render, rest, stream_control
from services.exchange_sim.recorded_market import Capture
from services.exchange_sim.recorded_market import load as load_capture
from services.exchange_sim.config import SimParams
from services.exchange_sim.desk import Desk
from services.exchange_sim.engine import Player, Timeline
from services.exchange_sim.klines import MINUTE_MS
from services.exchange_sim.hub import MAX_STREAMS, Connection, Hub, StreamError
from services.exchange_sim.render import fmt_units
from services.exchange_sim.market import Market, PriceError
from services.exchange_sim.symbols import SymbolSpec, make_specs
from services.exchange_sim.user_stream import EventsError, UserConn, UserStream, parse_events
from services.exchange_sim.ws_api import PATH as WS_API_PATH
from services.exchange_sim.ws_api_server import WsApiEndpoint

log = structlog.get_logger(__name__)

JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything a sim builds from its params alone: the market data, never the account or
    the clock. The slow part of a sim's start (the candles read and synthesized into trades:
    about a second), so a warm spare (``--spare``) builds it before it is needed."""

    cap: Capture
    specs: tuple[SymbolSpec, ...]
    candles: candle_trades.Candles | None = None
    per_bar: int = 1  # candles source: real candles per sim 1m bar
    history_n: int = 0  # candles source: history bars served per symbol
    start_index: int = 0  # candles source: first replayed candle of the file
    synth: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # every candle's trades
    timeline: Timeline | None = None  # the player's loop arithmetic over ``cap``


def prepare(params: SimParams, capture: Capture | None = None,
            candles: candle_trades.Candles | None = None) -> Prepared:
    """The market data of ``params`` (pure but for reading the data files)."""
    if params.source != "candles":
        cap = capture if capture is not None else load_capture(params.capture or None)
        return Prepared(cap=cap, specs=make_specs(cap, params.symbols), timeline=Timeline.of(cap))
    cd = candles if candles is not None else candle_trades.load_candles(params.candles or None)
    per_bar = candle_trades.minutes_per_bar(params.speed)
    history_n = candle_trades.history_capacity(cd, params.history_bars, per_bar)
    start_index = history_n * per_bar
    # replay whole candle groups only, so every loop keeps sim minutes on group edges
    stop = start_index + (cd.n - start_index) // per_bar * per_bar
    cap = candle_trades.to_capture(cd, start_index, stop, params.candle_trades)
    specs = candle_trades.align_specs(make_specs(cap, params.symbols), per_bar * MINUTE_MS)
    return Prepared(cap=cap, specs=specs, candles=cd, per_bar=per_bar, history_n=history_n,
                    start_index=start_index, synth=candle_trades.synthesize_all(cd, params.candle_trades),
                    timeline=Timeline.of(cap))


class SimServer:
    """Build with params (and optionally a preloaded capture), ``await start()``, ``await stop()``."""

    def __init__(self, params: SimParams, capture: Capture | None = None,
                 clock_ms: Callable[[], int] = wall_ms,
                 candles: candle_trades.Candles | None = None, prepared: Prepared | None = None) -> None:
        self.params = params
        pre = prepared if prepared is not None else prepare(params, capture, candles)
        self.candles = pre.candles
        self.per_bar = pre.per_bar
        self.history_n = pre.history_n
        self.start_index = pre.start_index
        self.cap = pre.cap
        self.specs = pre.specs
        self._synth = pre.synth
        self._timeline = pre.timeline
        self.by_name = {s.name: s.index for s in self.specs}
        self.clock_ms = clock_ms
        self.hub = Hub(self.specs)
        self.market: Market | None = None
        self.port = 0
        self.http_faults: list[faults.HttpFault] = []
        self.http_requests: Counter[str] = Counter()  # requests per path (not /_sim/): /_sim/stats shows them
        self.dropped_slow = 0
        self.steps = 0
        self.step_busy_s = 0.0
        self._started_ms = 0
        self._pump_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        infos = [rest.symbol_info(s, self.cap, synthetic=self.candles is not None) for s in self.specs]
        self.desk = Desk(infos=infos, by_name=self.by_name, api_key=params.api_key,
                         api_secret=params.api_secret, wallet=params.start_wallet_usdt,
                         state_path=Path(params.state_file) if params.state_file else None,
                         clock_ms=clock_ms, headers=self._weight_headers)
        self.user = UserStream(params.listen_key_validity_ms)
        self.user.closer = self._close_users
        self.desk.user = self.user
        self.ws_api = WsApiEndpoint(self.desk, clock_ms, close_timeout_s=params.close_timeout_s)
        self.app = self._make_app()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.params.host, self.params.port)
        await site.start()
        addrs = self._runner.addresses
        self.port = int(addrs[0][1]) if addrs else self.params.port
        now = self.clock_ms()
        # candles: start on the minute, so a sim minute holds whole candles; what fell due
        # between that minute and now is played below, before any client can connect
        self._started_ms = now if self.candles is None else now - now % MINUTE_MS
        player = Player(self.cap, self.specs, start_ms=self._started_ms, speed=self.params.speed,
                        max_speed=self.params.max_speed, loop=self.params.loop, timeline=self._timeline)
        self.market = Market(self.cap, self.specs, player, self.hub)
        self.desk.market = self.market
        if self.candles is not None:
            synth = (self._synth if self._synth is not None
                     else candle_trades.synthesize_all(self.candles, self.params.candle_trades))
            for spec in self.specs:
                self.market.klines.seed(spec.index, candle_trades.history_bars(
                    self.candles, self.cap, spec, start_index=self.start_index,
                    bars=self.history_n, per_bar=self.per_bar, end_ms=self._started_ms,
                    k=self.params.candle_trades, synth=synth))
            # nobody listens yet: fold the elapsed part of the minute into the open bars in
            # bulk (so they still equal their candles) and set the first book and price
            if not self.params.max_speed:
                self.market.fast_forward(now)
                self.market.step(now)  # what was due past the end of the first loop, if any
        self._pump_task = asyncio.create_task(self._pump(), name="sim.pump")
        return self.port

    @property
    def source_label(self) -> str:
        """``ticks`` or ``candles-synthesized`` (the ticks are synthesized, the candles real)."""
        return "ticks" if self.candles is None else candle_trades.SOURCE_LABEL

    @property
    def pump_task(self) -> asyncio.Task[None] | None:
        """The market pump: the shell watches it (if it ever fails, the sim must exit)."""
        return self._pump_task

    async def stop(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            try:
                await self._pump_task
            except asyncio.CancelledError:
                pass
            except Exception:  # already logged by the pump
                pass
            self._pump_task = None
        await self.desk.flush()
        await self.ws_api.close_all()
        conns = list(self.hub.conns.values())
        closes = [self._close_conn(c, 1001, abort=False) for c in conns]
        closes += [self._close_user(c, 1001, abort=False) for c in list(self.user.conns.values())]
        if closes:
            await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True),
                                   self.params.close_timeout_s + 0.5)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _close_conn(self, conn: Connection, code: int, abort: bool) -> None:
        self.hub.disconnect(conn)
        await self._close_ws(conn.handle, conn.transport, code, abort)

    async def _close_user(self, conn: UserConn, code: int, abort: bool) -> None:
        self.user.disconnect(conn)
        await self._close_ws(conn.handle, conn.transport, code, abort)

    async def _close_ws(self, ws: Any, transport: Any, code: int, abort: bool) -> None:
        """A market or user-data connection's end, once it left its hub: a close frame with
        ``code`` (``close_timeout_s`` at the most), or the transport aborted at once when
        ``abort`` (or when the close does not complete in time)."""
        if abort or not isinstance(ws, web.WebSocketResponse):
            if transport is not None:
                transport.abort()
            return
        try:
            await asyncio.wait_for(ws.close(code=code, drain=False), self.params.close_timeout_s)
        except (asyncio.TimeoutError, ConnectionError):
            if transport is not None:
                transport.abort()

    def _close_users(self, conns: list[UserConn], code: int = 1000, abort: bool = False) -> None:
        for c in conns:
            task = asyncio.ensure_future(self._close_user(c, code, abort))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ pump
    async def _pump(self) -> None:
        p = self.params
        assert self.market is not None
        market, hub, desk = self.market, self.hub, self.desk
        n = len(self.specs)
        per_symbol = max(8, p.max_speed_events_per_step // n) if p.max_speed else p.max_events_per_symbol_step
        step_s = p.step_ms / 1000.0
        while True:
            if p.max_speed:
                await self._wait_for_clients()
            t0 = time.perf_counter()
            now = self.clock_ms()
            try:
                market.step(now, per_symbol)
                desk.match()  # resting and algo orders the market crossed (nothing to do without any)
                desk.check_funding()  # an 8-hourly funding time that has come is settled once
                hub.flush(now)
                self.user.tick(desk.now_ms())  # a listenKey not kept alive expires (desk clock)
            except Exception:  # a bug must not kill the market silently for every client
                log.exception("sim.pump_failed")
                raise
            self._drop_slow()
            busy = time.perf_counter() - t0
            self.steps += 1
            self.step_busy_s += busy
            await asyncio.sleep(0 if p.max_speed else max(0.0, step_s - busy))

    async def _wait_for_clients(self) -> None:
        """Max speed goes as fast as the slowest reader: wait while one is backed up."""
        waited = 0.0
        while True:
            backed = [c for c, size in self.hub.buffered() if size > self.params.high_water_bytes]
            if not backed:
                return
            if waited >= self.params.slow_consumer_timeout_s:
                for c in backed:
                    self._drop(c, "blocked")
                return
            await asyncio.sleep(0.002)
            waited += 0.002

    def _drop_slow(self) -> None:
        for c, size in self.hub.buffered():
            if size > self.params.slow_consumer_bytes:
                self._drop(c, "slow")

    def _drop(self, conn: Connection, reason: str) -> None:
        log.warning("sim.client_dropped", conn=conn.cid, reason=reason, peer=conn.peer)
        self.dropped_slow += 1
        self.hub.disconnect(conn)
        if conn.transport is not None:
            conn.transport.abort()  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ app
    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware])
        r = app.router
        for prefix in ("", "/public", "/market"):  # Binance production's routed paths too
            r.add_get(f"{prefix}/stream", self._ws)
            r.add_get(f"{prefix}/ws", self._ws)
            r.add_get(prefix + "/ws/{streams:.+}", self._ws)
        r.add_get(binance.USER_DATA_PATH, self._private_ws)
        r.add_get(binance.USER_DATA_PATH + "/{key}", self._private_ws)
        r.add_get(WS_API_PATH, self.ws_api.handle)
        r.add_get("/fapi/v1/ping", self._rest(lambda q, now: {}))
        r.add_get("/fapi/v1/time", self._rest(lambda q, now: {"serverTime": self.desk.now_ms()}))
        r.add_get("/fapi/v1/exchangeInfo", self._rest(
            lambda q, now: rest.exchange_info(self.specs, self.cap, now,
                                             synthetic=self.candles is not None)))
        r.add_get("/fapi/v1/klines", self._rest(lambda q, now: rest.klines(self._m, q, self.by_name)))
        r.add_get("/fapi/v1/ticker/24hr", self._rest(
            lambda q, now: rest.ticker_24h_body(self._m, q, self.by_name, now)))
        for v in ("v1", "v2"):  # v2: the same body (python-binance's and Binance's connector's default)
            r.add_get(f"/fapi/{v}/ticker/price", self._rest(
                lambda q, now: rest.ticker_price_body(self._m, q, self.by_name, now)))
        r.add_get("/fapi/v1/ticker/bookTicker", self._rest(
            lambda q, now: rest.book_ticker_body(self._m, q, self.by_name, now)))
        r.add_get("/fapi/v1/premiumIndex", self._rest(
            lambda q, now: rest.premium_index_body(self._m, q, self.by_name, now)))
        r.add_get("/fapi/v1/depth", self._rest(lambda q, now: rest.depth_body(self._m, q, self.by_name, now)))
        self.desk.add_routes(r)
        r.add_get("/_sim/stats", self._stats)
        r.add_post("/_sim/fault", self._fault)
        r.add_post("/_sim/price", self._price)
        r.add_post("/_sim/funding", self._funding)
        return app

    @property
    def _m(self) -> Market:
        assert self.market is not None, "server not started"
        return self.market

    def _json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(body=orjson.dumps(body), status=status, content_type=JSON, headers=headers)

    def _weight_headers(self, now: int) -> dict[str, str]:
        """Count one request of weight 1 in this minute (with the WebSocket API's); Binance's
        header reports the sum."""
        return {"X-MBX-USED-WEIGHT-1M": str(self.ws_api.spend(now, weight=1).weight_1m)}

    def _rest(self, build: Callable[[Any, int], Any]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            now = self.clock_ms()
            headers = self._weight_headers(now)
            try:
                return self._json(build(request.query, now), headers=headers)
            except rest.RestError as exc:
                return web.Response(body=render.rest_error(exc.code, exc.msg), status=exc.status,
                                    content_type=JSON, headers=headers)

        return handler

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/_sim/"):
            self.http_requests[request.path] += 1
        if self.http_faults and not request.path.startswith("/_sim/"):
            f = faults.take(self.http_faults, request.path, request.method)
            if f is not None:
                headers = {"Retry-After": "2"} if f.status in (418, 429) else None
                return web.Response(body=render.rest_error(f.code, f.msg), status=f.status,
                                    content_type=JSON, headers=headers)
        return await handler(request)

    # ------------------------------------------------------------------ websocket
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        route, _, rest_path = request.path.lstrip("/").partition("/")
        if route not in binance.ROUTES:
            route, rest_path = "", request.path.lstrip("/")
        combined = rest_path.startswith("stream")
        if combined:
            raw = request.query.get("streams", "")
        else:
            raw = request.match_info.get("streams", "")
        names = [n for n in raw.split("/") if n]
        if route == "" and not combined and len(names) == 1 and "@" not in names[0]:
            return await self._private_ws(request, key=names[0])  # legacy /ws/<listenKey>
        if len(names) > MAX_STREAMS:
            return web.Response(body=render.rest_error(
                -1101, f"Too many parameters; expected '{MAX_STREAMS}' and received '{len(names)}'."),
                status=400, content_type=JSON)
        for name in names:
            try:
                self.hub.parse(name)
            except StreamError as exc:
                code, msg = ((-1121, "Invalid symbol.") if "symbol" in str(exc)
                             else (-1100, f"Illegal characters found in parameter 'streams'; {exc}."))
                return web.Response(body=render.rest_error(code, msg), status=400, content_type=JSON)
        ws = web.WebSocketResponse(compress=False, autoping=True, timeout=self.params.close_timeout_s,
                                   max_msg_size=1 << 16)
        await ws.prepare(request)
        conn = self.hub.connect(combined, request.transport, peer=str(request.remote), route=route)
        conn.handle = ws
        self.hub.subscribe(conn, names)
        log.info("sim.client_connected", conn=conn.cid, combined=combined, streams=len(names), route=route)
        try:
            async for msg in ws:
                if msg.type == web.WSMsgType.TEXT or msg.type == web.WSMsgType.BINARY:
                    reply = stream_control.handle(self.hub, conn, msg.data)
                    self.hub.send_now(conn, reply)
        finally:
            self.hub.disconnect(conn)
            log.info("sim.client_disconnected", conn=conn.cid, frames=conn.frames_sent)
        return ws

    async def _private_ws(self, request: web.Request, key: str | None = None) -> web.StreamResponse:
        """A user data stream connection for the active listenKey (``user_stream``)."""
        key = key or request.match_info.get("key") or request.query.get("listenKey", "")
        if not key:
            return web.Response(body=render.rest_error(
                -1102, "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed."),
                status=400, content_type=JSON)
        try:
            events = parse_events(request.query.get("events"))
        except EventsError:
            return web.Response(body=render.rest_error(-1130, "Data sent for parameter 'events' is not valid."),
                                status=400, content_type=JSON)
        if not self.user.valid(key, self.desk.now_ms()):
            return web.Response(body=render.rest_error(-1125, "This listenKey does not exist."),
                                status=400, content_type=JSON)
        ws = web.WebSocketResponse(compress=False, autoping=True, timeout=self.params.close_timeout_s,
                                   max_msg_size=1 << 16)
        await ws.prepare(request)
        conn = self.user.connect(request.transport, key, events, peer=str(request.remote))
        conn.handle = ws
        log.info("sim.user_stream_connected", conn=conn.cid, events=sorted(events) if events else "all")
        try:
            async for msg in ws:
                if msg.type == web.WSMsgType.TEXT or msg.type == web.WSMsgType.BINARY:
                    if conn.transport is not None and not conn.transport.is_closing():
                        conn.transport.write(render.text_frame(render.ws_error(
                            2, "Invalid request: the user data stream takes no control messages")))
        finally:
            self.user.disconnect(conn)
            log.info("sim.user_stream_disconnected", conn=conn.cid, frames=conn.frames_sent)
        return ws

    # ------------------------------------------------------------------ test control
    def stats(self) -> dict[str, Any]:
        m = self._m
        now = self.clock_ms()
        loops = m.player.loops
        return {
            "now_ms": now,
            "start_ms": self._started_ms,
            "uptime_s": (now - self._started_ms) / 1000.0,
            "speed": self.params.speed,
            "source": self.source_label,
            "synthetic": self.candles is not None,
            "history_bars": self.history_n,
            "candles_per_bar": self.per_bar,
            "max_speed": self.params.max_speed,
            "symbols": len(self.specs),
            "symbol_names": [s.name for s in self.specs],
            "loop": {"min": int(loops.min()), "max": int(loops.max()), "real": int(loops[0])},
            "events_played": m.played,
            "messages_sent": dict(m.sent),
            "lag_ms": 0 if self.params.max_speed else m.player.lag_ms(now),
            "behind_symbols": m.behind_syms,
            "steps": self.steps,
            "step_busy_ms_avg": 1000.0 * self.step_busy_s / self.steps if self.steps else 0.0,
            "dropped_slow_consumers": self.dropped_slow,
            "unrouted_streams": self.hub.unrouted,
            "pending_http_faults": len(self.http_faults),
            "http_requests": dict(self.http_requests),  # per path, whoever asked (REST and WebSocket upgrades)
            "trading": self.desk.stats(),
            "user_stream": self.user.stats(),
            "ws_api": self.ws_api.snapshot(),
            "connections": [
                {"id": c.cid, "combined": c.combined, "streams": len(c.streams), "peer": c.peer,
                 "frames_sent": c.frames_sent, "bytes_sent": c.bytes_sent,
                 "frames_dropped": c.frames_dropped, "stalled": c.stalled_until_ms > now,
                 "buffered_bytes": c.transport.get_write_buffer_size() if c.transport else 0}
                for c in self.hub.conns.values()
            ],
        }

    async def _stats(self, request: web.Request) -> web.Response:
        return self._json(self.stats())

    async def _price(self, request: web.Request) -> web.Response:
        """``POST /_sim/price {"symbol", "price"}``: the symbol's last, book and mark move to
        the price now; resting orders and algo orders it crosses act at once."""
        try:
            symbol, price = faults.parse_price(orjson.loads(await request.read()))
        except (orjson.JSONDecodeError, faults.FaultError) as exc:
            return self._json({"ok": False, "error": str(exc)}, status=400)
        sym = self.by_name.get(symbol)
        if sym is None:
            return self._json({"ok": False, "error": f"unknown symbol {symbol!r}"}, status=400)
        spec = self.specs[sym]
        units = price.scaleb(spec.price_decimals)
        try:
            if units != units.to_integral_value():
                raise PriceError(f"price has more than {spec.price_decimals} decimals for {symbol}")
            self._m.set_price(sym, int(units), self.clock_ms())
        except PriceError as exc:
            return self._json({"ok": False, "error": str(exc)}, status=400)
        log.info("sim.price_set", symbol=symbol, price=str(price), offset=self._m.states[sym].price_off)
        self.desk.on_price(symbol)
        st = self._m.states[sym]
        mark = self._m.mark_values(st)
        return self._json({"ok": True, "symbol": symbol, "price": fmt_units(int(units), spec.price_decimals),
                           "markPrice": mark[0] if mark else None})

    async def _funding(self, request: web.Request) -> web.Response:
        """``POST /_sim/funding {"symbol"?}``: funding of one symbol (default: all) settled now,
        off the 8-hourly grid; answers the income rows it booked."""
        raw = await request.read()
        try:
            doc = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            return self._json({"ok": False, "error": str(exc)}, status=400)
        symbol = doc.get("symbol") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or (symbol is not None and symbol not in self.by_name):
            return self._json({"ok": False, "error": f"unknown symbol {symbol!r}"}, status=400)
        paid = self.desk.settle_funding_now(symbol)
        return self._json({"ok": True, "incomes": [
            {"symbol": i.symbol, "income": format(i.income, "f"), "tranId": i.tran_id, "time": i.time_ms}
            for i in paid]})

    async def _fault(self, request: web.Request) -> web.Response:
        try:
            f = faults.parse(orjson.loads(await request.read()))
        except (orjson.JSONDecodeError, faults.FaultError) as exc:
            return self._json({"ok": False, "error": str(exc)}, status=400)
        now = self.clock_ms()
        targets = [c for c in self.hub.conns.values() if f.conn is None or c.cid == f.conn]
        log.info("sim.fault", action=f.action, conn=f.conn, affected=len(targets))
        if f.action == "http_error":
            self.http_faults.append(faults.http_fault(f, now))
            return self._json({"ok": True, "affected": f.count})
        if f.action == "order_timeout":
            self.desk.order_delays.extend([f.seconds] * f.count)
            return self._json({"ok": True, "affected": f.count})
        if f.action == "clock_skew":
            self.desk.skew_ms = f.skew_ms
            return self._json({"ok": True, "affected": 0})
        if f.action == "user_stream_close":
            users = list(self.user.conns.values())
            self._close_users(users, f.code, f.abort)
            return self._json({"ok": True, "affected": len(users)})
        if f.action == "listen_key_expire":
            had = self.user.active is not None
            self.user.expire(self.desk.now_ms())
            return self._json({"ok": True, "affected": int(had)})
        if f.action == "ws_api_drop":
            self.ws_api.arm_drop(f.count, f.when)
            return self._json({"ok": True, "affected": f.count})
        if f.action == "ws_api_refuse":
            return self._json({"ok": True, "affected": self.ws_api.refuse(f.seconds)})
        if f.action == "clear":
            self.ws_api.clear()
            self.http_faults.clear()
            self.desk.order_delays.clear()
            self.desk.skew_ms = 0
            for c in self.hub.conns.values():
                c.stalled_until_ms = 0
            return self._json({"ok": True, "affected": 0})
        for c in targets:
            if f.action == "stall":
                c.stalled_until_ms = now + int(f.seconds * 1000)
            elif f.action == "poison":
                c.inject.extend(render.text_frame(fr) for fr in f.frames)
            elif f.action == "close":
                task = asyncio.create_task(self._close_conn(c, f.code, f.abort))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return self._json({"ok": True, "affected": len(targets)})
