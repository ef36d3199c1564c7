"""The whole stack as real processes against the local exchange: nothing lost, in order."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys

import pytest

from tests.conftest import REPO, stack_env

pytestmark = pytest.mark.integration


def run_stack(procs, short_tmp, duration_s: float, **env_extra: str) -> tuple[dict, str]:
    summary = short_tmp / "s.json"
    env = stack_env(short_tmp, **env_extra)
    p = procs.python("-m", "common.cli", "run", "--duration", str(duration_s),
                     "--summary-json", str(summary), "--no-status",
                     cwd=REPO, env=env, stderr=open(short_tmp / "stderr.log", "w"))
    code = p.wait(timeout=duration_s + 120)
    log = (short_tmp / "stderr.log").read_text()
    assert code == 0, log[-4000:]
    return json.loads(summary.read_text()), log


def test_stack_runs_end_to_end_and_loses_nothing(procs, short_tmp):
    """Feed -> ring -> brain over real processes: every tick written is read, in order, none lost."""
    s, log = run_stack(procs, short_tmp, 20, AEGIS_SIM__SYMBOLS="5", AEGIS_SIM__SPEED="4",
                       AEGIS_BRAIN__CANDLE_INTERVAL_S="2")
    assert s["ticks_written"] > 1000, s
    assert s["ticks_lost"] == 0
    assert s["ticks_read"] == s["ticks_written"]
    assert s["brain_ticks_read"] == s["ticks_written"]
    assert s["ticks_received"] == s["ticks_written"]
    # the live feed takes nearly every tick through its C fast lane (where it was built)
    from common.ring import _ringc
    if _ringc is not None:
        assert s["ticks_written"] * 0.9 < s["ticks_fast_lane"] < s["ticks_written"], s
    assert s["brain_out_of_order"] == 0
    assert s["restarts"] == {"exchange_sim": 0, "orchestrator": 0, "feed": 0, "brain": 0, "dashboard": 0}
    assert s["symbols"] == 5
    assert s["candles_closed"] > 0
    assert s["latency_us"]["count"] == s["ticks_read"]
    assert 0 < s["latency_us"]["p50"] <= s["latency_us"]["p99"]
    # the journal reached the database: every closed candle is there exactly once (the
    # brain's own, plus the 1 m history the feed hydrated over REST at start-up)
    db = sqlite3.connect(short_tmp / "data" / "aegis.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM candles").fetchone()[0] == s["candles_closed"] + s["candles_hydrated"]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # the feed published each streamed symbol's trading rules, and the database has them
    rules = dict(db.execute("SELECT symbol, tick_size FROM symbols").fetchall())
    assert len(rules) == 5 and all(t > 0 for t in rules.values()), rules
    # nothing left behind: no ring file, no run dir with sockets
    assert not list(short_tmp.glob("aegis-*.ring"))
    assert not (short_tmp / "run").exists()


def test_stack_restarts_a_killed_brain_and_resumes_from_the_ring(procs, short_tmp):
    """SIGKILL of the brain: the supervisor restarts it and it resumes from its saved cursor."""
    import threading
    import time

    def killer():
        run = short_tmp / "run"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                pid = int((run / "brain.ready").read_text())
                time.sleep(2.0)
                os.kill(pid, signal.SIGKILL)
                return
            except (OSError, ValueError):
                time.sleep(0.1)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    s, log = run_stack(procs, short_tmp, 15, AEGIS_SIM__SYMBOLS="3", AEGIS_SIM__SPEED="4")
    t.join(1)
    assert s["restarts"]["brain"] == 1, s
    assert s["ticks_lost"] == 0
    assert s["ticks_read"] == s["ticks_written"]


def test_live_stack_answers_status_health_and_metrics(procs, short_tmp):
    """While the stack runs: /health is 200, /metrics has ring and latency figures, aegis status exits 0."""
    import subprocess
    import time
    import urllib.request

    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="3")
    p = procs.python("-m", "common.cli", "run", "--duration", "30", "--no-status",
                     cwd=REPO, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    url_file = short_tmp / "run" / "monitor.url"
    deadline = time.monotonic() + 60
    healthy = False
    while time.monotonic() < deadline and not healthy:
        time.sleep(0.5)
        try:
            with urllib.request.urlopen(url_file.read_text() + "/health", timeout=2) as r:
                healthy = r.status == 200
        except (OSError, ValueError):
            continue
    assert healthy, "stack never became healthy"
    time.sleep(2.5)  # a couple of heartbeats with ticks in them
    with urllib.request.urlopen(url_file.read_text() + "/metrics", timeout=2) as r:
        metrics = r.read().decode()
    assert 'aegis_service_up{service="feed"} 1.0' in metrics
    assert "aegis_tick_to_brain_latency_seconds_bucket" in metrics
    written = [ln for ln in metrics.splitlines() if ln.startswith('aegis_ring{name="written"}')]
    assert written and float(written[0].split()[-1]) > 0
    st = subprocess.run([sys.executable, "-m", "common.cli", "status", "--run-dir", str(short_tmp / "run")],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert st.returncode == 0, st.stdout + st.stderr
    assert "healthy" in st.stdout and "feed" in st.stdout
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 0
