"""The page: everything the dashboard shows, built from database rows and live events, pure.

``build`` takes what the shell gathered (a ``store.DbView``, the ``live.Live`` accumulator,
the supervisor's ``/status`` snapshot when there is a supervisor, the control API's counters)
and returns one JSON-able dict, the page model, which the browser renders as it is. Numbers
stay numbers (the page formats them); nothing here reads a clock (``now_ms``/``now_s`` come in).

PnL, as the page and docs/operate.md define it:
    realized    sum of the closed trades' PnL (table ``trades``, before fees)
    fees        sum of every fill's commission in USDT (table ``fills``: open positions' entries too)
    unrealized  each open position's quantity x (latest price - entry price)
    net         realized - fees + unrealized
"""

from __future__ import annotations

import math
from typing import Any

from services.dashboard import config as dc
from services.dashboard.live import Live
from services.dashboard.store import DbView
from venue.algo_orders import AlgoState as A

SERVICE_ORDER = ("exchange_sim", "orchestrator", "brain", "feed", "dashboard")
BEAT_SILENT_S = 3.0  # no heartbeat this long (without a supervisor to ask): SILENT
LATENCY_PREFIX = "latency_le_us:"
TTT_PREFIX = "ttt_le_us:"  # the brain's tick-to-trade buckets: ttt_le_us:<kind>:<transport>:<bound us>

# what each state of an exchange-held protective order means for the position it protects
PROTECTION = {
    A.LIVE.value: "HELD",  # the exchange holds it: it fires even if AEGIS is down
    A.NEW_LOCAL.value: "PLACING", A.SENT.value: "PLACING", A.UNKNOWN.value: "PLACING",
    A.CANCEL_PENDING.value: "CANCELLING",
    A.TRIGGERED.value: "TRIGGERED", A.FINISHED.value: "TRIGGERED",
    A.CANCELED.value: "GONE", A.EXPIRED.value: "GONE", A.REJECTED.value: "REFUSED",
}


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------- positions
def protection(algos: list[dict[str, Any]], trade_id: str | None, role: str) -> tuple[str, float | None]:
    """(label, trigger price) of the newest protective order of ``role`` for the trade (newest
    first in ``algos``); ("LOCAL", None) when the exchange holds none: only the brain watches."""
    for a in algos:
        if a["role"] == role and (trade_id is None or a["trade_id"] == trade_id):
            return PROTECTION.get(a["state"], a["state"]), _f(a["trigger_price"])
    return "LOCAL", None


def position_row(p: dict[str, Any], mark: tuple[float, int] | None) -> dict[str, Any]:
    qty = float(p["qty"])
    entry = float(p["entry_price"])
    plan = p.get("plan") or {}
    trade_id = plan.get("signal_id") or None
    stop_state, stop_px = protection(p.get("algos", []), trade_id, "STOP")
    target_state, target_px = protection(p.get("algos", []), trade_id, "TARGET")
    stop = stop_px if stop_px is not None else _f(plan.get("stop"))
    target = target_px if target_px is not None else _f(plan.get("target"))
    price = mark[0] if mark is not None else None
    upnl = qty * (price - entry) if price is not None else float(p["unrealized_pnl"])
    r = None
    if price is not None and stop is not None and stop != entry:
        r = (price - entry) * (1 if qty > 0 else -1) / abs(entry - stop)
    return {"symbol": p["symbol"], "side": "LONG" if qty > 0 else "SHORT", "qty": qty, "entry": entry,
            "mark": price, "mark_ms": mark[1] if mark is not None else None, "stop": stop, "target": target,
            "stop_state": stop_state, "target_state": target_state, "upnl": upnl, "r": r,
            "confidence": _f(plan.get("confidence")), "trade_id": trade_id,
            "opened_ms": plan["created_ns"] // 1_000_000 if plan.get("created_ns") else None}


# ---------------------------------------------------------------------------- services
def services(sup: dict[str, Any] | None, live: Live, now_s: float) -> list[dict[str, Any]]:
    """One row per service: the supervisor's view (restarts, spares) when there is one, the
    heartbeats' otherwise (docker compose: each container restarted by Docker)."""
    out = []
    sup_services = (sup or {}).get("services") or {}
    timeout = (sup or {}).get("heartbeat_timeout_s", 10.0)
    names = [n for n in SERVICE_ORDER if n in sup_services or n in live.beats or n == "dashboard"]
    names += sorted(n for n in sup_services if n not in names)
    for name in names:
        beat = live.beats.get(name)
        s = sup_services.get(name)
        row: dict[str, Any] = {"name": name, "pid": None, "restarts": None, "warm_restarts": None,
                               "spare": None, "heartbeat_age_s": None, "uptime_s": None, "state": "UP"}
        if beat is not None:
            row.update(pid=beat.pid, heartbeat_age_s=round(now_s - beat.seen_s, 1), uptime_s=beat.uptime_s)
        if s is not None:
            row.update(pid=s.get("pid"), restarts=s.get("restarts"), warm_restarts=s.get("warm_restarts"),
                       spare=s.get("spare"))
            if s.get("heartbeat_age_s") is not None:
                row["heartbeat_age_s"] = s["heartbeat_age_s"]
            if beat is not None and beat.pid != s.get("pid"):
                row["uptime_s"] = None  # that heartbeat was the previous incarnation's
            if s.get("gave_up"):
                row["state"] = "GAVE UP"
            elif not s.get("running"):
                row["state"] = "RESTARTING"
            elif not s.get("ready", True):
                row["state"] = "STARTING"
            elif s.get("heartbeat_age_s") is not None and s["heartbeat_age_s"] > timeout:
                row["state"] = "SILENT"
            elif beat is not None and beat.pid == s.get("pid"):
                row["state"] = beat.state
        elif name != "dashboard":
            if beat is None or now_s - beat.seen_s > BEAT_SILENT_S:
                row["state"] = "SILENT"
            else:
                row["state"] = beat.state
        out.append(row)
    return out


def latency_hist(counters: dict[str, float]) -> dict[str, Any] | None:
    """The brain's feed-to-brain latency buckets (cumulative ``latency_le_us:<bound>``
    counters in its heartbeat) as counts per bucket, in microseconds."""
    cum = sorted((float(k[len(LATENCY_PREFIX):]), int(v)) for k, v in counters.items()
                 if k.startswith(LATENCY_PREFIX))
    if not cum:
        return None
    bounds = [b for b, _ in cum]
    counts, prev = [], 0
    for _, c in cum:
        counts.append(max(0, c - prev))
        prev = c
    total = int(counters.get("latency_count", prev))
    counts.append(max(0, total - prev))
    return {"bounds": bounds, "counts": counts, "count": total,
            "p50": counters.get("latency_p50_us"), "p99": counters.get("latency_p99_us")}


def tick_to_trade(counters: dict[str, float]) -> dict[str, Any] | None:
    """The brain's tick-to-trade histogram (feed receipt of the tick behind a decision -> the
    order's bytes on the exchange socket), entries and exits over every transport summed, in
    microseconds; ``kinds`` says how many of each (``exit/ws``: 3, ...)."""
    series: dict[str, dict[float, float]] = {}
    for k, v in counters.items():
        if k.startswith(TTT_PREFIX):
            kind, transport, bound = k[len(TTT_PREFIX):].split(":", 2)
            series.setdefault(f"{kind}/{transport}", {})[float(bound)] = v
    if not series:
        return None
    bounds = sorted({b for s in series.values() for b in s})
    cum = [sum(s.get(b, 0.0) for s in series.values()) for b in bounds]
    kinds = {name: int(counters.get(f"ttt_count:{name.replace('/', ':')}", 0)) for name in sorted(series)}
    total = sum(kinds.values())
    counts = [int(c - p) for c, p in zip(cum, [0.0, *cum[:-1]])] + [max(0, int(total - (cum[-1] if cum else 0)))]
    sum_us = sum(counters.get(f"ttt_sum_us:{name.replace('/', ':')}", 0.0) for name in series)
    return {"bounds": bounds, "counts": counts, "count": total, "mean": sum_us / total if total else None,
            "kinds": kinds}


def _downsample(points: list[tuple[int, float]], n: int) -> list[list[float]]:
    if len(points) <= n:
        return [[t, v] for t, v in points]
    step = len(points) / n
    picked = [points[int(i * step)] for i in range(n - 1)] + [points[-1]]
    return [[t, v] for t, v in picked]


def metrics_snapshot(sup: dict[str, Any] | None, live: Live, now_s: float) -> dict[str, Any]:
    """What ``/metrics`` exports (``common.prom``): the supervisor's own snapshot when there is
    one (restarts, spares), else one made of the heartbeats (docker compose)."""
    if sup:
        return sup
    services = {name: {"running": now_s - b.seen_s <= BEAT_SILENT_S, "heartbeat_age_s": round(now_s - b.seen_s, 3),
                       "counters": dict(b.counters)} for name, b in live.beats.items()}
    orch = live.beats.get("orchestrator")
    ring = {k[len("ring_"):]: v for k, v in orch.counters.items() if k.startswith("ring_")} if orch else {}
    return {"services": services, "ring": ring}


# ---------------------------------------------------------------------------- the page
def build(*, view: DbView | None, live: Live, sup: dict[str, Any] | None, control: dict[str, Any],
          now_ms: int, now_s: float, mode: str, db_error: str = "") -> dict[str, Any]:
    v = view or DbView()
    brain = live.beats.get("brain")
    bc = brain.counters if brain is not None else {}
    brain_fresh = brain is not None and now_s - brain.seen_s <= BEAT_SILENT_S
    positions = [position_row(p, live.marks.get(p["symbol"])) for p in v.positions]
    unrealized = sum(p["upnl"] for p in positions)
    tot = v.totals
    realized, fees = tot.get("realized_pnl", 0.0), tot.get("fees", 0.0)
    rs = v.risk_state or {}
    cs = v.control_state or {}
    paused = bool(bc["paused"]) if brain_fresh and "paused" in bc else bool(cs.get("paused", False))
    halted = bool(bc["halted"]) if brain_fresh and "halted" in bc else bool(rs.get("halted", False))
    orch = (live.beats.get("orchestrator").counters if "orchestrator" in live.beats else {})
    feed = (live.beats.get("feed").counters if "feed" in live.beats else {})
    ring = (sup or {}).get("ring") or {k[5:]: v_ for k, v_ in orch.items() if k.startswith("ring_")}
    tps = (sup or {}).get("ticks_per_s") if sup else live.ticks_per_s()
    cum, curve = 0.0, []
    for t in v.trades:
        cum += t["pnl"] - t["fees"]
        curve.append([t["closed_ms"], cum])
    return {
        "v": 1, "now_ms": now_ms, "mode": mode, "db_error": db_error,
        "account": {"equity": bc.get("equity") or None, "realized": realized, "fees": fees,
                    "unrealized": unrealized, "net": realized - fees + unrealized,
                    "positions": len(positions), "orders": tot.get("orders", 0),
                    "open_orders": tot.get("open_orders", 0), "fills": tot.get("fills", 0),
                    "signals": tot.get("signals", 0), "risk_rejects": tot.get("risk_rejects", 0),
                    "trades": tot.get("trades", 0), "wins": tot.get("wins", 0)},
        "trading": {"paused": paused, "paused_by": cs.get("by", "") if paused else "",
                    "paused_at_ms": cs.get("at_ms") if paused else None,
                    "halted": halted, "halt_reason": rs.get("halt_reason", "") if halted else "",
                    "halt_detail": rs.get("halt_detail", "") if halted else "",
                    "reconcile_ok": None if "reconcile_ok" not in orch else bool(orch["reconcile_ok"]),
                    # the orchestrator's verdict on entries (journal writable, reconciliation passed)
                    "permission": (sup or {}).get("trading") or live.permission,
                    "brain_seen": brain_fresh},
        "positions": positions,
        "orders": [{"time_ms": o["created_ns"] // 1_000_000, "cid": o["client_order_id"], "symbol": o["symbol"],
                    "side": o["side"], "type": o["order_type"], "qty": o["qty"], "price": o["price"],
                    "status": o["status"], "filled": o["filled_qty"], "avg": o["avg_price"],
                    "reduce_only": bool(o["reduce_only"])} for o in v.orders],
        "fills": [{"time_ms": f["ts_ns"] // 1_000_000, "symbol": f["symbol"], "side": f["side"], "qty": f["qty"],
                   "price": f["price"], "fee": f["fee"], "liquidity": f["liquidity"], "cid": f["client_order_id"],
                   "trade_id": f["trade_id"]} for f in v.fills],
        "signals": [{"seq": s["seq"], "time_ms": s["ts_ns"] // 1_000_000, "id": s["signal_id"],
                     "symbol": s["symbol"], "side": s["side"], "entry": s["entry"], "stop": s["stop"],
                     "target": s["target"], "confidence": s["confidence"], "cold": bool(s["cold"]),
                     "outcome": ("REFUSED " + s["reject_reason"]) if s["reject_reason"] else
                                ("ORDER " + s["order_status"]) if s["order_status"] else "-"}
                    for s in v.signals],
        "rejects": {"by_reason": [[r, n] for r, n in v.rejects_by_reason],
                    "recent": [{"time_ms": r["ts_ns"] // 1_000_000, "symbol": r["symbol"], "reason": r["reason"],
                                "detail": r["detail"], "signal_id": r["signal_id"]} for r in v.rejects]},
        "equity": {"points": _downsample(list(live.equity), dc.EQUITY_DRAWN), "realized_curve": curve,
                   "closes": [[t["closed_ms"], t["pnl"] - t["fees"], t["symbol"], t["exit_reason"]]
                              for t in v.trades]},
        "services": services(sup, live, now_s),
        "pipeline": {"ticks_per_s": tps, "ring_written": ring.get("written"), "ring_lag": ring.get("lag"),
                     "ring_lost": ring.get("lost"), "candles": bc.get("candles_closed"),
                     "ticks_read": bc.get("ticks_read"), "rejected_ticks": feed.get("ticks_rejected"),
                     "journal_gaps": orch.get("journal_gaps"), "journal_messages": orch.get("journal_messages"),
                     "feed": live.feed_status or None, "uptime_s": (sup or {}).get("uptime_s")},
        "latency": {"feed_to_brain_us": latency_hist(bc), "tick_to_trade_us": tick_to_trade(bc),
                    "signal_to_order_ms": live.signal_to_order.to_dict(),
                    "order_to_fill_ms": live.order_to_fill.to_dict()},
        "control": control,
        "controls": [{"time_ms": c["requested_ms"], "command": c["command"], "symbol": c["symbol"],
                      "client": c["client"], "via": c["via"], "status": c["status"], "detail": c["detail"]}
                     for c in v.controls],
    }
