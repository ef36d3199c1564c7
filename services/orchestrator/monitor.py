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
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest

from common.prom import Snapshot, StackCollector  # noqa: F401  (StackCollector: monitor's name for it too)
from services.orchestrator import storage


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
