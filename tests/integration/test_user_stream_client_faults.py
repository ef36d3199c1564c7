"""The user stream client's own fault handling, on 127.0.0.1 against a scripted exchange: a
socket that goes silent and does not answer our ping (the watchdog), a connect refused with
-1125 and a keepalive answered -1125 (a new key), a refused API key. What the local exchange
cannot be made to do; the rest is in ``test_user_stream_sim``."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from venue.binance import user_updates as uu
from venue.binance.user_stream_client import UserStreamClient, UserStreamConfig
from venue.ratelimit import Governor

pytestmark = pytest.mark.integration

KEYS = ["A" * 63 + str(i) for i in range(10)]
ORDER_NEW = orjson.dumps({"e": "ORDER_TRADE_UPDATE", "E": 1, "T": 1, "o": {
    "s": "BTCUSDT", "c": "ae-1", "S": "BUY", "o": "MARKET", "q": "0.010", "x": "NEW", "X": "NEW", "i": 7}})


@dataclass
class Script:
    """What the scripted exchange does; what it saw."""

    refuse_connects: int = 0  # the first N connects: 400 -1125
    refuse_keepalives: bool = False  # PUT: 400 -1125
    refuse_api_key: bool = False  # POST: 401 -2015
    answer_pings: bool = True
    posts: int = 0
    puts: int = 0
    deletes: int = 0
    connects: list[str] = field(default_factory=list)
    api_keys: set[str] = field(default_factory=set)


def _error(status: int, code: int, msg: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"code": code, "msg": msg}), content_type="application/json")


def make_app(script: Script) -> web.Application:
    async def post(request: web.Request) -> web.Response:
        script.api_keys.add(request.headers.get("X-MBX-APIKEY", ""))
        if script.refuse_api_key:
            return _error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        script.posts += 1
        return web.json_response({"listenKey": KEYS[script.posts % len(KEYS)]})

    async def put(request: web.Request) -> web.Response:
        script.puts += 1
        if script.refuse_keepalives:
            return _error(400, -1125, "This listenKey does not exist.")
        return web.json_response({"listenKey": KEYS[script.posts % len(KEYS)]})

    async def delete(request: web.Request) -> web.Response:
        script.deletes += 1
        return web.json_response({})

    async def ws(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        script.connects.append(key)
        if len(script.connects) <= script.refuse_connects:
            return _error(400, -1125, "This listenKey does not exist.")
        sock = web.WebSocketResponse(autoping=script.answer_pings)
        await sock.prepare(request)
        await sock.send_str(ORDER_NEW.decode())  # one event, then silence
        async for _ in sock:  # pings (when autoping is off) arrive here and are never answered
            pass
        return sock

    app = web.Application()
    app.router.add_post("/fapi/v1/listenKey", post)
    app.router.add_put("/fapi/v1/listenKey", put)
    app.router.add_delete("/fapi/v1/listenKey", delete)
    app.router.add_get("/private/ws/{key}", ws)
    return app


@pytest.fixture
def exchange():
    """(script, base url): the scripted exchange on its own loop thread."""
    script, ready, box = Script(), threading.Event(), {}

    def run() -> None:
        async def main() -> None:
            runner = web.AppRunner(make_app(script))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            box["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await box["stop"].wait()
            await runner.cleanup()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield script, f"127.0.0.1:{box['port']}"
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(10)


def client_for(host: str, **cfg: Any) -> UserStreamClient:
    return UserStreamClient(UserStreamConfig(rest_url=f"http://{host}", ws_url=f"ws://{host}", initial_backoff_s=0.05,
                                             max_backoff_s=0.2, **cfg), api_key="test-api-key", governor=Governor())


def wait_for(predicate, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def resyncs(items: list[tuple[int, Any]]) -> list[str]:
    return [it.reason for _, it in items if isinstance(it, uu.Resync)]


def test_a_silent_socket_that_does_not_answer_a_ping_is_replaced(exchange):
    """Silence for 0.2 s, then a ping nobody answers within 0.2 s: the connection is dead, a
    new one is opened and announced with a Resync saying why."""
    script, host = exchange
    script.answer_pings = False
    client = client_for(host, silence_s=0.2, ping_timeout_s=0.2)
    client.start()
    try:
        wait_for(lambda: client.stats()["connections"] >= 2, "a second connection")
        items = client.drain(100)
        stats = client.stats()
    finally:
        client.stop()
    assert resyncs(items)[:2] == ["first", "silent"]
    assert stats["counters"]["ended:silent"] >= 1 and stats["counters"]["watchdog_dead"] >= 1
    assert script.api_keys == {"test-api-key"}


def test_a_socket_that_answers_pings_is_kept_however_quiet(exchange):
    """Silence with answered pings is a quiet account, not a dead connection; on stop the key
    is closed (DELETE)."""
    script, host = exchange
    client = client_for(host, silence_s=0.1, ping_timeout_s=1.0)
    client.start()
    try:
        wait_for(lambda: client.stats()["counters"].get("watchdog_pings", 0) >= 3, "three pings")
        stats = client.stats()
    finally:
        client.stop()
    assert stats["connections"] == 1 and "watchdog_dead" not in stats["counters"]
    assert (script.posts, script.deletes, client.connected) == (1, 1, False)


def test_a_connect_refused_with_1125_takes_a_new_key(exchange):
    """The socket is refused (-1125: no such key): the key is dropped, a new POST, a new key."""
    script, host = exchange
    script.refuse_connects = 1
    client = client_for(host)
    client.start()
    try:
        wait_for(lambda: client.connected, "a connection")
        stats = client.stats()
    finally:
        client.stop()
    assert script.connects[:2] == [KEYS[1], KEYS[2]] and script.posts == 2
    assert stats["counters"]["connect_refused"] == 1 and stats["connections"] == 1


def test_a_keepalive_answered_1125_replaces_the_connection_and_resyncs(exchange):
    """PUT says the key does not exist: the connection ends (key_lost), a new key, a Resync."""
    script, host = exchange
    script.refuse_keepalives = True
    client = client_for(host, keepalive_s=0.2)
    client.start()
    try:
        wait_for(lambda: client.stats()["connections"] >= 2, "a second connection")
        items = client.drain(100)
    finally:
        client.stop()
    assert resyncs(items)[:2] == ["first", "key_lost"]
    assert script.connects[:2] == [KEYS[1], KEYS[2]]


def test_a_refused_api_key_is_retried_with_backoff_and_never_connects(exchange):
    """401 -2015 on POST: no socket, attempts spaced by the capped backoff, nothing queued."""
    script, host = exchange
    script.refuse_api_key = True
    client = client_for(host)
    client.start()
    try:
        wait_for(lambda: client.stats()["counters"].get("listen_key_post_failed", 0) >= 3, "three attempts")
        stats = client.stats()
        items = client.drain(100)
    finally:
        client.stop()
    assert stats["connections"] == 0 and script.connects == [] and items == []
    assert not client.connected
