"""What the supervisor says about the stack: the snapshot behind ``/status``, ``/health``,
``/metrics`` and ``aegis status``, the heartbeat log line and the terminal's status line.
Pure: every input comes in as an argument (the processes' liveness already read)."""

from __future__ import annotations

from typing import Any, Mapping

from common import wire
from services.orchestrator import storage
from services.orchestrator.children import NO_HEARTBEAT, Child


def service_view(c: Child, *, now: float, running: bool, ready: bool, spare: str) -> dict[str, Any]:
    """One service's row of the snapshot."""
    return {
        "pid": c.proc.pid if c.proc is not None else None, "running": running,
        "ready": ready, "state": c.state or "", "gave_up": c.gave_up,
        "restarts": c.restarts, "warm_restarts": c.warm_restarts,
        "spare": spare, "spare_pid": spare_proc.pid if (spare_proc := c.spare) is not None else None,
        "heartbeat_age_s": (None if c.name in NO_HEARTBEAT or c.proc is None
                            else round(now - c.last_heartbeat, 3)),
        "counters": dict(c.counters)}


def snapshot(*, mode: str, uptime_s: float, run_dir: str, ticks_per_s: float, heartbeat_timeout_s: float,
             ring: Mapping[str, int], services: Mapping[str, dict[str, Any]],
             permission: wire.TradingPermission | None) -> dict[str, Any]:
    trading = (None if permission is None else
               {"allowed": permission.allowed, "reason": permission.reason, "detail": permission.detail})
    return {"mode": mode, "uptime_s": round(uptime_s, 3), "run_dir": run_dir,
            "ticks_per_s": round(ticks_per_s, 1), "heartbeat_timeout_s": heartbeat_timeout_s,
            "ring": dict(ring), "services": dict(services), "trading": trading}


def entries(trading: Mapping[str, Any] | None) -> str:
    if not trading:
        return "unknown"
    return "allowed" if trading.get("allowed") else f"HALTED:{trading.get('reason', '')}"


def heartbeat_line(s: Mapping[str, Any]) -> str:
    """The line logged every ``supervisor.heartbeat_log_interval_s`` (a run without a terminal)."""
    brain = s["services"].get("brain", {}).get("counters", {})
    feed = s["services"].get("feed", {}).get("counters", {})
    ring = s["ring"]
    return (f"aegis heartbeat uptime_s={s['uptime_s']:.0f} ticks_per_s={s['ticks_per_s']:.0f} "
            f"written={ring.get('written', 0)} lag={ring.get('lag', 0)} lost={ring.get('lost', 0)} "
            f"rejected={int(feed.get('ticks_rejected', 0))} candles={int(brain.get('candles_closed', 0))} "
            f"p99_us={brain.get('latency_p99_us', 0):.0f} "
            f"restarts={sum(v['restarts'] for v in s['services'].values())} "
            f"signals={int(brain.get('signals', 0))} orders={int(brain.get('orders', 0))} "
            f"fills={int(brain.get('fills', 0))} rejects={int(brain.get('risk_rejects', 0))} "
            f"positions={int(brain.get('positions_open', 0))} pnl={brain.get('realized_pnl', 0.0):.2f} "
            f"fees={brain.get('fees', 0.0):.2f} funding={brain.get('funding', 0.0):.4f} "
            f"equity={brain.get('equity', 0.0):.2f} "
            f"halted={int(brain.get('halted', 0))} entries={entries(s.get('trading'))}")


def status_line(*, mode: str, elapsed_s: float, rate: float, ring: Mapping[str, int],
                brain: Mapping[str, float], restarts: int, permission: wire.TradingPermission | None) -> str:
    """The terminal's one-line status, redrawn every second."""
    return (f"aegis {mode} | {elapsed_s:6.0f}s | {rate:9,.0f} ticks/s | written "
            f"{ring['written']:,} | lag {ring['lag']:,} | lost {ring['lost']:,} | candles "
            f"{int(brain.get('candles_closed', 0)):,} | p99 "
            f"{brain.get('latency_p99_us', 0):,.0f}us | restarts {restarts} | signals "
            f"{int(brain.get('signals', 0))} | orders {int(brain.get('orders', 0))} | pos "
            f"{int(brain.get('positions_open', 0))} | pnl {brain.get('realized_pnl', 0.0):+,.2f}"
            + (f" | funding {f:+,.4f}" if (f := brain.get("funding", 0.0)) else "")
            + (" | HALTED" if brain.get("halted") else "")
            + (f" | ENTRIES HALTED {permission.reason}" if permission is not None
               and permission.reason in storage.REASONS else ""))
