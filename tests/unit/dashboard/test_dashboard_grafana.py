"""Grafana for those who run Prometheus: every query of deploy/grafana/dashboards/aegis.json reads a
series the dashboard's /metrics really exports (common/prom.py), and the scrape config points at it."""

from __future__ import annotations

import json
import re

from common import config, prom, wire
from services.dashboard import page
from services.dashboard.live import Live
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
BRAIN = {"equity": 10_000.0, "realized_pnl": 1.5, "fees": 0.8, "positions_open": 2.0, "halted": 0.0, "paused": 1.0,
         "signals": 9.0, "orders": 4.0, "fills": 4.0, "risk_rejects": 5.0, "latency_count": 10.0,
         "latency_sum_us": 900.0, "latency_le_us:10": 2.0, "latency_le_us:100": 9.0,
         "ttt_le_us:exit:ws:100": 1.0, "ttt_le_us:exit:ws:1000": 2.0, "ttt_count:exit:ws": 2.0,
         "ttt_sum_us:exit:ws": 700.0}
ORCH = {"reconcile_ok": 1.0, "journal_gaps": 0.0, "journal_rejected": 0.0, "ring_written": 1_000.0,
        "ring_lag": 2.0, "ring_lost": 0.0}
FEED = {"ticks_rejected": 3.0, "frames_received": 1_003.0}


def exposition() -> str:
    live = Live()
    for service, counters in (("brain", BRAIN), ("orchestrator", ORCH), ("feed", FEED)):
        live.apply(wire.Envelope(wire.SCHEMA_VERSION, f"{service}:1", 1, 1, 1,
                                 wire.Heartbeat(service=service, pid=1, uptime_s=1.0, counters=counters)), 99.0)
    snap = page.metrics_snapshot(None, live, 100.0)
    return prom.render(lambda: snap).decode()


def queries() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "aegis.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


class TestGrafana:
    def test_every_query_reads_an_exported_series(self):
        """Each metric name and each name="..." label a panel asks for is in /metrics' answer."""
        text = exposition()
        exported = set(re.findall(r"^(aegis_[a-z_]+)", text, re.M))
        asked = {m for q in queries() for m in re.findall(r"\b(aegis_[a-z_]+)", q)}
        assert sorted(asked - exported) == []
        labels = {lab for q in queries() for lab in re.findall(r'name="([a-z_]+)"', q)}
        assert sorted(lab for lab in labels if f'name="{lab}"' not in text) == []
        assert len(queries()) == 27  # 19 panels

    def test_heartbeats_without_a_supervisor_make_the_same_names(self):
        """docker compose: up from a fresh heartbeat, the ring from the orchestrator's counters."""
        text = exposition()
        assert 'aegis_service_up{service="brain"} 1.0' in text
        assert 'aegis_ring{name="written"} 1000.0' in text
        assert 'aegis_tick_to_brain_latency_seconds_bucket{le="0.0001"} 9.0' in text

    def test_the_supervisors_snapshot_is_used_as_it_is_when_there_is_one(self):
        sup = {"services": {"brain": {"running": True, "restarts": 3, "counters": {}}}, "ring": {"written": 7}}
        assert page.metrics_snapshot(sup, Live(), 0.0) is sup

    def test_prometheus_scrapes_the_dashboards_default_port_and_grafana_reads_that_prometheus(self):
        scrape = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
        port = config.DashboardConfig().port
        assert re.findall(r'targets: \["([^"]+)"\]', scrape) == [f"127.0.0.1:{port}"]
        assert "metrics_path: /metrics" in scrape
        ds = (DEPLOY / "grafana" / "provisioning" / "datasources" / "aegis.yml").read_text()
        uids = {t["datasource"]["uid"] for p in json.loads(
            (DEPLOY / "grafana" / "dashboards" / "aegis.json").read_text())["panels"] for t in p["targets"]}
        assert uids == {"aegis-prometheus"} and "uid: aegis-prometheus" in ds and "url: http://127.0.0.1:9090" in ds
