"""Monitoring: health rules, Prometheus output, the status table."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from cli import status as status_cli
from services.orchestrator import monitor


def snap(**over):
    s = {"mode": "demo", "uptime_s": 12.0, "ticks_per_s": 4500.0, "run_dir": "/tmp/x",
         "heartbeat_timeout_s": 10.0,
         "ring": {"written": 100, "read": 100, "lost": 0, "resyncs": 0, "lag": 0, "symbols": 3},
         "services": {
             "exchange_sim": {"pid": 1, "running": True, "restarts": 0, "heartbeat_age_s": None, "counters": {}},
             "brain": {"pid": 2, "running": True, "restarts": 1, "warm_restarts": 1, "spare": "warm",
                       "spare_pid": 7, "heartbeat_age_s": 0.4,
                       "counters": {"ticks_read": 100.0, "latency_count": 100.0, "latency_sum_us": 5000.0,
                                    "latency_le_us:10": 10.0, "latency_le_us:100": 90.0,
                                    "latency_le_us:1000": 100.0}}}}
    s.update(over)
    return s


class TestHealth:
    def test_all_running_and_heartbeating_is_healthy(self):
        """Every child up and recently heard from means healthy."""
        assert monitor.health(snap()) == (True, [])

    def test_silent_child_is_unhealthy(self):
        """A child silent beyond the heartbeat timeout is reported by name."""
        s = snap()
        s["services"]["brain"]["heartbeat_age_s"] = 11.0
        ok, problems = monitor.health(s)
        assert not ok and problems == ["brain silent for 11.0s"]

    def test_dead_child_is_unhealthy(self):
        """A child that is not running is reported."""
        s = snap()
        s["services"]["exchange_sim"]["running"] = False
        assert monitor.health(s) == (False, ["exchange_sim not running"])


class TestPrometheus:
    def render(self, s):
        reg = CollectorRegistry(auto_describe=False)
        reg.register(monitor.StackCollector(lambda: s))
        return generate_latest(reg).decode()

    def test_latency_histogram_buckets_are_cumulative_seconds(self):
        """Heartbeat buckets in microseconds become a Prometheus histogram in seconds."""
        out = self.render(snap())
        assert 'aegis_tick_to_brain_latency_seconds_bucket{le="1e-05"} 10.0' in out
        assert 'aegis_tick_to_brain_latency_seconds_bucket{le="0.0001"} 90.0' in out
        assert 'aegis_tick_to_brain_latency_seconds_bucket{le="+Inf"} 100.0' in out
        assert "aegis_tick_to_brain_latency_seconds_sum 0.005" in out

    def test_services_and_ring_are_exported(self):
        """Up, restarts and ring counters appear with their labels."""
        out = self.render(snap())
        assert 'aegis_service_up{service="brain"} 1.0' in out
        assert 'aegis_service_restarts_total{service="brain"} 1.0' in out
        assert 'aegis_service_warm_restarts_total{service="brain"} 1.0' in out
        assert 'aegis_service_spare_ready{service="brain"} 1.0' in out
        assert 'aegis_service_spare_ready{service="exchange_sim"} 0.0' in out
        assert 'aegis_ring{name="written"} 100.0' in out
        assert 'aegis_service_value{name="ticks_read",service="brain"} 100.0' in out


class TestStatusTable:
    def test_table_names_every_service_and_the_ring(self):
        """The status table has a row per service, the ring line and the health verdict."""
        text = status_cli.render(snap())
        assert text.startswith("AEGIS demo stack: healthy")
        assert "brain" in text and "exchange_sim" in text
        assert "ring: written=100" in text

    def test_the_spare_column_says_which_services_have_a_warm_spare(self):
        lines = status_cli.render(snap()).splitlines()
        at = lines[2].index("spare")
        col = {ln.split()[0]: ln[at:].split()[0] for ln in lines[4:6]}
        assert col == {"exchange_sim": "-", "brain": "warm"}

    def test_the_state_column_shows_a_degraded_service(self):
        """A running service whose last heartbeat said DEGRADED is shown DEGRADED; RUNNING (or
        no state yet) is up; a dead one DOWN, whatever its last state."""
        s = snap()
        s["services"]["brain"]["state"] = "DEGRADED"
        s["services"]["exchange_sim"]["state"] = "RUNNING"
        s["services"]["feed"] = {"pid": 3, "running": False, "state": "DEGRADED", "restarts": 0,
                                 "heartbeat_age_s": None, "counters": {}}
        lines = status_cli.render(s).splitlines()
        at = lines[2].index("state")
        col = {ln.split()[0]: ln[at:].split()[0] for ln in lines[4:7]}
        assert col == {"exchange_sim": "up", "brain": "DEGRADED", "feed": "DOWN"}


FULL = {"allowed": False, "reason": "JOURNAL_DISK_FULL",
        "detail": "cannot write /d/aegis.sqlite3: database or disk is full (12,288 bytes free)"}


class TestJournalFault:
    def test_a_journal_fault_makes_the_stack_unhealthy_with_its_reason(self):
        """Entries halted by a journal fault is a problem named with its reason and detail."""
        assert monitor.health(snap(trading=FULL)) == (False, [
            "entries halted: JOURNAL_DISK_FULL: cannot write /d/aegis.sqlite3: database or disk is full "
            "(12,288 bytes free)"])

    def test_waiting_for_reconciliation_is_not_a_health_problem(self):
        """Entries halted until the first reconciliation passes is the normal start, not a fault."""
        halted = {"allowed": False, "reason": "RECONCILE_NONE", "detail": "reconciliation NONE: not trading"}
        assert monitor.health(snap(trading=halted)) == (True, [])

    def test_a_service_given_up_says_why(self):
        """A child the supervisor does not restart (its storage) is reported with the reason."""
        s = snap()
        s["services"]["brain"].update(running=False, gave_up="exited with 74: its storage refuses writes")
        assert monitor.health(s) == (False, ["brain not running (exited with 74: its storage refuses writes)"])

    def test_metrics_export_the_trading_permission_with_its_reason(self):
        """/metrics: aegis_trading_allowed is 0 labelled with the reason, 1 with none; absent until known."""
        assert 'aegis_trading_allowed{reason="JOURNAL_DISK_FULL"} 0.0' in TestPrometheus().render(snap(trading=FULL))
        ok = TestPrometheus().render(snap(trading={"allowed": True, "reason": "", "detail": ""}))
        assert 'aegis_trading_allowed{reason=""} 1.0' in ok
        assert "aegis_trading_allowed" not in TestPrometheus().render(snap())

    def test_status_table_says_entries_are_halted_and_why(self):
        """aegis status prints the halt with its reason and detail, and the stack as DEGRADED."""
        text = status_cli.render(snap(trading=FULL))
        assert text.startswith("AEGIS demo stack: DEGRADED")
        assert ("entries: HALTED JOURNAL_DISK_FULL: cannot write /d/aegis.sqlite3: database or disk is full "
                "(12,288 bytes free)") in text.splitlines()
        assert "entries: allowed" in status_cli.render(snap(trading={"allowed": True})).splitlines()
