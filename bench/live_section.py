"""The running stack's own latency (issue 17, "Performance"): ``aegis run`` at two tick rates,
its summary's figures next to the synthetic end-to-end section's.

The synthetic e2e section (section 4) drives the feed's decoder, the ring and the brain's
reader with pre-built frames in one tight loop; it says what the pipeline can do. This section
runs the real program, ``aegis run`` (supervisor, local exchange, feed, brain, orchestrator,
dashboard; the demo's paper account on the local exchange), for a fixed time and reads the
summary it writes at the end:

- ``ticks``: the exchange replays the bundled real BTCUSDT tick capture (about 4,500 ticks/s
  on the wire; ``sim.source = "ticks"``), the busy case;
- ``candles``: the default demo (real 1-minute candles turned into trades, about 40 ticks/s),
  the quiet case where a candle close's analysis and the orders it makes sit on the path.

``latency_us`` is the stack's feed-to-brain latency: from the feed's receipt of the frame
(``recv_ns``, stamped when the bytes left the socket) to the brain's read of that tick from
the ring, over every tick of the run (an HDR histogram in the brain, merged by the
supervisor). ``tick_to_trade_us`` is present when the run sent orders. Each rate runs
``repeats`` times; figures are medians over repeats. Target (issue 17): p99 <= 200 us at both
rates on a quiet machine; the section records the load average beside every run, because on
a shared 2-core machine the stack's six processes compete with whatever else runs.

``python -m bench --only live --repeats 1 --out DIR`` runs this section alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import REPO, loadavg, log, summarize

RATES = {"ticks": {"AEGIS_SIM__SOURCE": "ticks", "AEGIS_FEED__HYDRATE_CANDLES": "500"},
         "candles": {}}
QUICK_ENV = {"AEGIS_FEED__HYDRATE_CANDLES": "100"}


def _env(work: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env.update({
        "AEGIS_RUN_DIR": str(work / "run"),
        "AEGIS_DATA_DIR": str(work / "data"),
        "AEGIS_RING__SHM_DIR": str(work),
        "AEGIS_SUPERVISOR__METRICS_PORT": "0",
        "AEGIS_DASHBOARD__PORT": "0",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def run_once(rate: str, duration_s: float, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``aegis run --duration`` in a private directory; its summary (raises when it failed)."""
    with tempfile.TemporaryDirectory(prefix="aegis-bench-live-", dir="/tmp") as d:
        work = Path(d)
        summary = work / "summary.json"
        load0 = loadavg()
        p = subprocess.run([sys.executable, "-m", "common.cli", "run", "--duration", str(duration_s),
                            "--no-status", "--summary-json", str(summary)],
                           capture_output=True, env=_env(work, {**RATES[rate], **(extra or {})}), cwd=str(REPO),
                           timeout=duration_s + 180)
        if p.returncode != 0 or not summary.exists():
            raise RuntimeError(f"aegis run ({rate}) exited {p.returncode}: {p.stderr.decode()[-1500:]}")
        s = json.loads(summary.read_text())
        stalls = s.get("brain_loop") or {}  # where the brain's loop kept the ring waiting
    lat = s.get("latency_us") or {}
    if not lat.get("count"):
        raise RuntimeError(f"aegis run ({rate}) measured no latency: {json.dumps(s)[:800]}")
    return {"ticks_read": s["brain_ticks_read"], "ticks_lost": s["ticks_lost"],
            "ticks_per_s": s["ticks_received"] / max(s["duration_s"], 1e-9),
            "latency_us": lat, "tick_to_trade_us": s.get("tick_to_trade_us") or {},
            "orders": s.get("orders", 0), "load": [load0, loadavg()], "loop_stalls": stalls,
            "gc": s.get("gc") or {}}


def run(*, quick: bool, repeats: int) -> dict[str, Any]:
    duration = 4.0 if quick else 60.0
    # quick (the test suite's smoke run): 100 hydrated candles a symbol, so most of the run is
    # not the start-up's hydration (its candles are journaled before the first tick flows);
    # the measured path after it is the same
    extra = QUICK_ENV if quick else {}
    out: dict[str, Any] = {"config": {"duration_s": duration, "repeats": repeats, "env": extra}, "rates": {}}
    for rate in RATES:
        runs = []
        for i in range(repeats):
            r = run_once(rate, duration, extra)
            runs.append(r)
            lat = r["latency_us"]
            log(f"[live] {rate} {i + 1}/{repeats}: {r['ticks_per_s']:,.0f} ticks/s, {lat['count']:,} ticks, "
                f"feed->brain p50 {lat['p50']:.1f} us p99 {lat['p99']:.1f} us max {lat['max']:.0f} us, "
                f"lost {r['ticks_lost']}, load {r['load'][0]} -> {r['load'][1]}")
        out["rates"][rate] = {
            "ticks_per_s": summarize([r["ticks_per_s"] for r in runs]),
            "p50_us": summarize([r["latency_us"]["p50"] for r in runs]),
            "p99_us": summarize([r["latency_us"]["p99"] for r in runs]),
            "max_us": summarize([r["latency_us"]["max"] for r in runs]),
            "ticks": runs[-1]["latency_us"]["count"],
            "ticks_lost": max(r["ticks_lost"] for r in runs),
            "tick_to_trade_us": runs[-1]["tick_to_trade_us"],
            "orders": runs[-1]["orders"],
            "load": [r["load"] for r in runs],
            "loop_stalls": runs[-1]["loop_stalls"],
        }
    return out


def headline(sec: dict[str, Any]) -> dict[str, float]:
    return {f"{rate}_{k}": sec["rates"][rate][k]["median"] for rate in sec["rates"]
            for k in ("ticks_per_s", "p50_us", "p99_us")}
