"""Monitoring endpoint of one stack, served by the supervisor on loopback.

    GET /metrics   Prometheus text format (prometheus-client): per service up/restarts/
                   heartbeat age, every counter each service reports in its heartbeat, the
                   ring's counters, and the tick-to-brain latency as a histogram
    GET /health    200 {"status": "ok", ...} when every child is running and heartbeating and
                   the journal can write, else 503 with what is wrong (a load balancer or
                   docker healthcheck can use it)
    GET /status    the same state as JSON (``aegis status`` prints it as a table)

The snapshot comes from the supervisor's loop through a callable, so this module holds no
state of its own; the HTTP server runs in a daemon thread.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from services.orchestrator import storage

Snapshot = dict[str, Any]
_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")
_LE_PREFIX = "latency_le_us:"
_TTT_PREFIX = "ttt_le_us:"  # tick-to-trade buckets: ttt_le_us:<kind>:<transport>:<bound us>


def _metric_name(s: str) -> str:
    return _NAME_OK.sub("_", s)


def health(snap: Snapshot) -> tuple[bool, list[str]]:
    """Healthy when every child runs and (except the sim) heartbeats within the timeout, and
    the journal can write (a storage fault halts entries: docs/journal.md)."""
    problems = []
    for name, c in snap.get("services", {}).items():
        if not c.get("running"):
            problems.append(f"{name} not running" + (f" ({c['gave_up']})" if c.get("gave_up") else ""))
        elif not c.get("ready", True):
            problems.append(f"{name} starting")
        elif c.get("heartbeat_age_s") is not None and c["heartbeat_age_s"] > snap.get("heartbeat_timeout_s", 10):
            problems.append(f"{name} silent for {c['heartbeat_age_s']:.1f}s")
    trading = snap.get("trading") or {}
    if not trading.get("allowed", True) and trading.get("reason") in storage.REASONS:
        problems.append(f"entries halted: {trading['reason']}: {trading.get('detail', '')}")
    return not problems, problems


class StackCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self):
        snap = self._snapshot()
        services = snap.get("services", {})
        up = GaugeMetricFamily("aegis_service_up", "1 when the service process is running", labels=["service"])
        restarts = CounterMetricFamily("aegis_service_restarts", "restarts by the supervisor", labels=["service"])
        age = GaugeMetricFamily("aegis_heartbeat_age_seconds", "seconds since the last heartbeat", labels=["service"])
        values = GaugeMetricFamily("aegis_service_value", "counters and gauges each service reports in its heartbeat",
                                   labels=["service", "name"])
        warm = CounterMetricFamily("aegis_service_warm_restarts", "restarts answered by a warm spare",
                                   labels=["service"])
        spare = GaugeMetricFamily("aegis_service_spare_ready", "1 when a warm spare waits to take over",
                                  labels=["service"])
        for name, c in services.items():
            up.add_metric([name], 1.0 if c.get("running") else 0.0)
            restarts.add_metric([name], float(c.get("restarts", 0)))
            warm.add_metric([name], float(c.get("warm_restarts", 0)))
            spare.add_metric([name], 1.0 if c.get("spare") == "warm" else 0.0)
            if c.get("heartbeat_age_s") is not None:
                age.add_metric([name], float(c["heartbeat_age_s"]))
            for k, v in (c.get("counters") or {}).items():
                if not k.startswith((_LE_PREFIX, _TTT_PREFIX)):
                    values.add_metric([name, _metric_name(k)], float(v))
        yield from (up, restarts, warm, spare, age, values)
        trading = snap.get("trading")
        if trading is not None:  # known once the orchestrator has said it
            allowed = GaugeMetricFamily("aegis_trading_allowed",
                                        "1 when new entries are allowed; 0 with the reason (JOURNAL_DISK_FULL, ...)",
                                        labels=["reason"])
            allowed.add_metric([str(trading.get("reason", ""))], 1.0 if trading.get("allowed") else 0.0)
            yield allowed
        ring = GaugeMetricFamily("aegis_ring", "shared-memory ring counters (written, read, lost, lag)", labels=["name"])
        for k, v in (snap.get("ring") or {}).items():
            ring.add_metric([k], float(v))
        yield ring
        brain = (services.get("brain") or {}).get("counters") or {}
        buckets = sorted(((float(k[len(_LE_PREFIX):]), float(v)) for k, v in brain.items()
                          if k.startswith(_LE_PREFIX)), key=lambda kv: kv[0])
        if buckets:
            h = HistogramMetricFamily("aegis_tick_to_brain_latency_seconds",
                                      "feed receive -> brain read, per tick")
            count = float(brain.get("latency_count", 0))
            h.add_metric([], [(f"{b / 1e6:g}", n) for b, n in buckets] + [("+Inf", count)],
                         sum_value=float(brain.get("latency_sum_us", 0.0)) / 1e6)
            yield h
        ttt = tick_to_trade_histogram(brain)
        if ttt is not None:
            yield ttt


def tick_to_trade_histogram(counters: dict[str, Any]) -> HistogramMetricFamily | None:
    """``aegis_tick_to_trade_seconds{kind, transport}`` from the brain's heartbeat buckets."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for k, v in counters.items():
        if k.startswith(_TTT_PREFIX):
            kind, transport, bound = k[len(_TTT_PREFIX):].split(":", 2)
            series.setdefault((kind, transport), []).append((float(bound), float(v)))
    if not series:
        return None
    h = HistogramMetricFamily("aegis_tick_to_trade_seconds",
                              "feed receipt of the triggering tick -> order bytes on the exchange socket",
                              labels=["kind", "transport"])
    for (kind, transport), buckets in sorted(series.items()):
        count = float(counters.get(f"ttt_count:{kind}:{transport}", 0))
        h.add_metric([kind, transport], [(f"{b / 1e6:g}", n) for b, n in sorted(buckets)] + [("+Inf", count)],
                     sum_value=float(counters.get(f"ttt_sum_us:{kind}:{transport}", 0.0)) / 1e6)
    return h


def serve(host: str, port: int, snapshot: Callable[[], Snapshot]) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; returns the server (``server_address`` has the port)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StackCollector(snapshot))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), "text/plain; version=0.0.4")
            elif path == "/health":
                snap = snapshot()
                ok, problems = health(snap)
                body = {"status": "ok" if ok else "degraded", "problems": problems}
                self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
            elif path == "/status":
                self._send(200, json.dumps(snapshot(), default=float).encode(), "application/json")
            else:
                self._send(404, b'{"error":"not found"}', "application/json")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:  # quiet: scrapes every few seconds
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="monitor", daemon=True).start()
    return server
