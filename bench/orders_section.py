"""Order entry on loopback (issue 17, item 4): the WebSocket API next to ccxt's REST path.

The exchange is the real ``exchange_sim`` in its own process (forked, pinned to the first CPU,
replaying the bundled capture), on 127.0.0.1. This process places orders through the real
brokers: ``WsBroker`` (``order.place`` / ``order.cancel`` over one open ``/ws-fapi/v1``
connection) and ``CcxtBroker`` (``POST`` / ``DELETE /fapi/v1/order`` through ccxt and requests,
today's path). Each order is a LIMIT GTC buy of 0.005 BTCUSDT at 97 % of the bid, so it rests
(no fills to fetch: the figure is the order's own round trip), and is cancelled at once.

Per order, on the same clock (``perf_counter_ns``):

- decision to wire: from the broker call to the moment the last byte of the request was handed
  to the socket (WebSocket: after the frame's ``send``, the client's ``wire_hook``; REST: after
  the last ``http.client`` ``send`` of the request, hooked here);
- submit round trip: from the broker call to its return with the exchange's answer parsed;
- cancel round trip: the same for the cancel.

The rate-limit governor is given limits far above Binance's (1,000 orders in a few seconds
would be refused by Binance's 300 per 10 s): what is measured is the transport and our code,
not the exchange's budget. ``python -m bench --only orders`` runs this section alone.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import time
from decimal import Decimal
from typing import Any, Callable

import numpy as np

from bench.harness import CTX, Children, consumer_cpu, cpus, log, percentiles_us, pin, producer_cpu, summarize

SYMBOL = "BTCUSDT"
QTY = Decimal("0.005")
WARM_ORDERS = 30  # per path and repeat, not measured (connections, caches, ccxt's first calls)
FIGURES = ("decision_to_wire", "submit_rtt", "cancel_rtt")


def serve_sim(port, ready, stop) -> dict[str, Any]:
    """The child: one sim on 127.0.0.1 until told to stop; its WebSocket API counts at the end."""
    from services.exchange_sim import recorded_market
    from services.exchange_sim.config import SimParams
    from services.exchange_sim.server import SimServer

    async def main() -> dict[str, Any]:
        server = SimServer(SimParams(symbols=2), capture=recorded_market.load())
        port.value = await server.start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        stats = server.stats()
        await server.stop()
        return {"ws_api": stats["ws_api"], "orders": stats["trading"]["orders"]}

    return asyncio.run(main())


class _Wire:
    """When the last byte of a request was handed to the socket, for both paths."""

    def __init__(self) -> None:
        self.ns = 0
        self._orig = http.client.HTTPConnection.send

    def hook(self, _rid: int, ns: int) -> None:
        self.ns = ns

    def __enter__(self) -> _Wire:
        orig, box = self._orig, self

        def send(conn: http.client.HTTPConnection, data: Any) -> None:
            orig(conn, data)
            box.ns = time.perf_counter_ns()

        http.client.HTTPConnection.send = send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        http.client.HTTPConnection.send = self._orig  # type: ignore[method-assign]


def bid(base: str) -> Decimal:
    import requests

    body = requests.get(f"{base}/fapi/v1/ticker/bookTicker", params={"symbol": SYMBOL}, timeout=5).json()
    return Decimal(body["bidPrice"])


def _brokers(base: str) -> tuple[Any, Any]:
    from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
    from venue.binance.ws_api import WsApiClient, WsApiConfig, url_for
    from venue.binance.ws_broker import WsBroker
    from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
    from venue.ratelimit import Governor, Limits

    big = 10**9  # the transport is measured, not Binance's budgets (see the module's doc)
    governor = Governor(Limits(weight_per_min=big, orders_per_10s=big, orders_per_min=big))
    rest = CcxtBroker(CcxtConfig(base_url=base), governor=governor, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET)
    client = WsApiClient(WsApiConfig(url=url_for("demo", testnet=False, rest_url=base)), api_key=DEMO_API_KEY,
                         api_secret=DEMO_API_SECRET, governor=governor)
    ws = WsBroker(CcxtBroker(CcxtConfig(base_url=base), governor=governor, api_key=DEMO_API_KEY,
                             api_secret=DEMO_API_SECRET), client, connect_wait_s=10.0)
    rest.start([SYMBOL])
    ws.start([SYMBOL])
    if not client.connected:
        raise RuntimeError("the WebSocket API did not connect")
    return ws, rest


def _block(broker: Any, wire: _Wire, path: str, tag: str, n: int, base: str, warm: int) -> dict[str, np.ndarray]:
    """``warm + n`` orders placed and cancelled; the last ``n`` measured (ns arrays)."""
    from venue.port import OrderSpec

    out = {k: np.zeros(n, dtype=np.int64) for k in FIGURES}
    price = Decimal(0)
    for i in range(warm + n):
        if i % 100 == 0:
            price = (bid(base) * Decimal("0.97")).quantize(Decimal("0.1"))
        cid = f"b-{path}-{tag}-{i}"
        spec = OrderSpec(client_order_id=cid, symbol=SYMBOL, side="BUY", order_type="LIMIT", qty=QTY, price=price)
        wire.ns = 0
        t0 = time.perf_counter_ns()
        res = broker.submit(spec)
        t1 = time.perf_counter_ns()
        wired = wire.ns
        broker.cancel(SYMBOL, cid)
        t2 = time.perf_counter_ns()
        if res.order.status != "NEW" or not wired:
            raise RuntimeError(f"{path} order {cid}: status {res.order.status}, wire stamp {wired}")
        j = i - warm
        if j >= 0:
            out["decision_to_wire"][j] = wired - t0
            out["submit_rtt"][j] = t1 - t0
            out["cancel_rtt"][j] = t2 - t1
    return out


def start_sim(ch: Children, serve: Callable[..., dict[str, Any]] = serve_sim) -> tuple[str, Any, Any]:
    """The local exchange (``serve``: ``serve_sim`` or a variant of it) in a child of ``ch``,
    pinned to the producer's CPU, once it serves a BTCUSDT book (its replay needs a moment):
    its base URL, the child, and the event that stops it."""
    port, ready, stop = CTX.Value("i", 0), CTX.Event(), CTX.Event()
    sim = ch.start("sim", serve, port, ready, stop, cpu=producer_cpu())
    if not ready.wait(60):
        sim.result(1)
        raise RuntimeError("the sim did not start")
    base = f"http://127.0.0.1:{port.value}"
    deadline = time.monotonic() + 30
    while bid(base) <= 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no BTCUSDT book")
        time.sleep(0.05)
    return base, sim, stop


def run(*, quick: bool, repeats: int) -> dict[str, Any]:
    from common import log as log_mod

    log_mod.configure(level="warning")  # an info line per order (sim and brokers) would be measured too
    n = 200 if quick else 1_000
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"ws": [], "rest": []}
    with Children() as ch:
        base, sim, stop = start_sim(ch)
        before = cpus()
        pin(consumer_cpu())  # the brokers' threads, started below, inherit this CPU
        ws, rest = _brokers(base)
        wire = _Wire()
        ws.client.wire_hook = wire.hook
        try:
            with wire:
                for rep in range(repeats):
                    # alternate which path goes first, so neither always runs on a warmer machine
                    for path in (("ws", "rest") if rep % 2 == 0 else ("rest", "ws")):
                        broker = ws if path == "ws" else rest
                        got = _block(broker, wire, path, str(rep), n, base, WARM_ORDERS)
                        pct = {k: percentiles_us(v) for k, v in got.items()}
                        runs[path].append(pct)
                        log(f"[orders] repeat {rep + 1}/{repeats} {path:4s}: decision->wire p50 "
                            f"{pct['decision_to_wire']['p50']:.1f} us p99 {pct['decision_to_wire']['p99']:.1f} us; "
                            f"submit round trip p50 {pct['submit_rtt']['p50']:.0f} us p99 "
                            f"{pct['submit_rtt']['p99']:.0f} us; cancel p50 {pct['cancel_rtt']['p50']:.0f} us")
            fallbacks = dict(ws.counters)
        finally:
            ws.close()
            rest.close()
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, before)
            stop.set()
        sim_stats = sim.result(60)
    out: dict[str, Any] = {
        "config": {"orders_per_path_per_repeat": n, "repeats": repeats, "warm_orders": WARM_ORDERS,
                   "order": f"LIMIT GTC BUY {QTY} {SYMBOL} at 97 % of the bid, cancelled at once",
                   "exchange": "exchange_sim in its own process on 127.0.0.1 (pinned to CPU %s); the brokers "
                               "in this process (CPU %s)" % (producer_cpu(), consumer_cpu())},
        "ws_broker_counters": fallbacks, "sim": sim_stats}
    for path, rs in runs.items():
        out[path] = {k: {q: summarize([r[k][q] for r in rs]) for q in ("p50", "p99", "max")} for k in FIGURES}
    return out


def headline(sec: dict[str, Any]) -> dict[str, float]:
    h: dict[str, float] = {"orders": sec["config"]["orders_per_path_per_repeat"] * sec["config"]["repeats"]}
    for path in ("ws", "rest"):
        for fig, short in (("decision_to_wire", "wire"), ("submit_rtt", "submit"), ("cancel_rtt", "cancel")):
            for q in ("p50", "p99"):
                h[f"{path}_{short}_{q}_us"] = sec[path][fig][q]["median"]
    return h
