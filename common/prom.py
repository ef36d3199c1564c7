"""The stack's Prometheus metrics, from a snapshot dict (pure: no server, no clock).

The supervisor's monitoring endpoint (``services/orchestrator/monitor.py``) and the
dashboard's ``/metrics`` (``services/dashboard``: in docker compose there is no supervisor)
export the same names from the same snapshot shape, so one Grafana dashboard
(``deploy/grafana``) reads either:

    {"services": {name: {"running", "restarts", "warm_restarts", "spare", "heartbeat_age_s",
                         "counters": {...}}},
     "ring": {"written", "read", "lost", "lag", ...},
     "trading": {"allowed", "reason", "detail"} or None}
"""

from __future__ import annotations

import re
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

Snapshot = dict[str, Any]
_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")
_LE_PREFIX = "latency_le_us:"
_TTT_PREFIX = "ttt_le_us:"  # tick-to-trade buckets: ttt_le_us:<kind>:<transport>:<bound us>


def _metric_name(s: str) -> str:
    return _NAME_OK.sub("_", s)


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


def render(snapshot: Callable[[], Snapshot]) -> bytes:
    """The Prometheus text exposition of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StackCollector(snapshot))
    return generate_latest(registry)
