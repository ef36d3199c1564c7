"""``aegis status``: the live state of a running stack, as a table.

Finds the stack through its run directory (``--run-dir``, else the default one), asks the
supervisor's loopback endpoint for ``/status`` and prints one row per service plus the ring.
Exit code 0 when the stack is healthy, 1 when it answers but is degraded, 2 when no stack
is running there.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import config as config_mod
from common import service, wire
from services.orchestrator import monitor

KEY_COUNTERS = {
    "feed": ("frames_received", "ticks_written", "ticks_rejected"),
    "brain": ("ticks_read", "candles_closed", "latency_p50_us", "latency_p99_us", "lost", "signals", "orders",
              "fills", "positions_open", "realized_pnl", "equity", "halted"),
    "orchestrator": ("journal_messages", "rows_written", "journal_gaps", "journal_ok", "journal_pending",
                     "reconcile_ok", "reconcile_runs", "reconcile_flags_open"),
    "exchange_sim": (),
}


def render(snap: dict[str, Any]) -> str:
    """The table (pure: snapshot in, text out)."""
    ok, problems = monitor.health(snap)
    lines = [f"AEGIS {snap.get('mode', '?')} stack: {'healthy' if ok else 'DEGRADED'}"
             f"   uptime {snap.get('uptime_s', 0):.0f}s   {snap.get('ticks_per_s', 0):,.0f} ticks/s"
             f"   run dir {snap.get('run_dir', '?')}", ""]
    header = f"{'service':<14}{'pid':>8}  {'state':<10}{'restarts':>9}{'heartbeat':>11}  {'spare':<8} key numbers"
    lines += [header, "-" * len(header)]
    for name, c in snap.get("services", {}).items():
        age = c.get("heartbeat_age_s")
        hb = "-" if age is None else f"{age:.1f}s ago"
        counters = c.get("counters") or {}
        keys = [f"{k}={_fmt(counters[k])}" for k in KEY_COUNTERS.get(name, ()) if k in counters]
        spare = c.get("spare") or "-"
        lines.append(f"{name:<14}{c.get('pid') or '-':>8}  {service_state(c):<10}"
                     f"{c.get('restarts', 0):>9}{hb:>11}  {'-' if spare == 'none' else spare:<8} {' '.join(keys)}")
    trading = snap.get("trading")
    if trading is not None:
        lines += ["", "entries: allowed" if trading.get("allowed") else
                  f"entries: HALTED {trading.get('reason', '')}: {trading.get('detail', '')}"]
    ring = snap.get("ring") or {}
    if ring:
        lines += ["", "ring: " + "  ".join(f"{k}={_fmt(v)}" for k, v in ring.items())]
    if problems:
        lines += ["", "problems: " + "; ".join(problems)]
    return "\n".join(lines)


def service_state(c: dict[str, Any]) -> str:
    """The state column: DOWN (not running), DEGRADED (running, and its last heartbeat said
    ``wire.ServiceState.DEGRADED``: the feed with no connection up, the orchestrator with
    entries not allowed), else up."""
    if not c.get("running"):
        return "DOWN"
    return "DEGRADED" if c.get("state") == wire.ServiceState.DEGRADED else "up"


def _fmt(v: Any) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aegis status", description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", help="run directory of the stack (default: the default run dir)")
    p.add_argument("--json", action="store_true", help="print the raw JSON snapshot")
    args = p.parse_args(argv)
    cfg = config_mod.load(None)
    if args.run_dir:
        cfg = config_mod.replace(cfg, run_dir=args.run_dir)
    rd = service.run_dir(cfg)
    try:
        url = (Path(rd) / "monitor.url").read_text().strip()
        with urllib.request.urlopen(f"{url}/status", timeout=2) as r:  # noqa: S310 - loopback
            snap = json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError) as exc:
        print(f"no running AEGIS stack found in {rd} ({exc})", file=sys.stderr)
        return 2
    print(json.dumps(snap, indent=2) if args.json else render(snap))
    return 0 if monitor.health(snap)[0] else 1
