"""Pure rules of the supervisor: restart backoff, restart intensity, the run summary.

No processes, clocks or files here: times come in as arguments, so every rule is tested
directly (tests/unit/orchestrator/test_policy.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from common.histogram import LatencyHistogram


# Exit codes of ``aegis run`` (the supervisor). An outer supervisor (Docker, systemd) reads them.
EXIT_OK = 0
EXIT_START_FAILED = 2  # a service never became ready (or the command line / config was refused)
EXIT_RESTART_INTENSITY = 3  # a service crashed more than ``intensity`` times in ``period_s``
EXIT_JOURNAL_FAULT = 4  # the run ended with the journal refused by its disk (full, read-only,
#                         failing): entries were halted; the summary's ``journal`` says why
EXIT_CODES = {EXIT_OK: "ok", EXIT_START_FAILED: "a service did not start",
              EXIT_RESTART_INTENSITY: "restart intensity exceeded",
              EXIT_JOURNAL_FAULT: "the journal could not write to its disk: entries halted"}

# A child's own exit code meaning "my storage refuses writes" (sysexits' EX_IOERR): a restart
# cannot fix it, so the supervisor does not restart on it (``should_restart``).
CHILD_EXIT_STORAGE_FAULT = 74


def should_restart(code: int | None) -> bool:
    """Whether a child that exited with ``code`` is restarted (None: killed or hung: yes)."""
    return code != CHILD_EXIT_STORAGE_FAULT


def run_exit_code(loop_code: int, summary: Mapping[str, Any], *, storage_gave_up: bool = False) -> int:
    """The supervisor's exit code: what the loop decided, else a journal that ended refused
    (or a child that exited with ``CHILD_EXIT_STORAGE_FAULT``) makes the run non-zero."""
    if loop_code:
        return loop_code
    if storage_gave_up or (summary.get("journal") or {}).get("state") == "DEGRADED":
        return EXIT_JOURNAL_FAULT
    return EXIT_OK


@dataclass(frozen=True, kw_only=True)
class RestartPolicy:
    initial_s: float = 0.5  # delay before the second consecutive restart; doubles after
    max_s: float = 10.0
    intensity: int = 10  # more than this many restarts ...
    period_s: float = 60.0  # ... within this window = give up
    healthy_after_s: float = 10.0  # up this long = healthy again: the next crash restarts at once


def backoff_s(policy: RestartPolicy, consecutive_failures: int) -> float:
    """Delay before restart number ``consecutive_failures`` (1-based).

    The first restart after a healthy run is immediate (a single crash should cost only the
    start-up time: the chaos suite's 2-second promise); a crash loop then waits
    ``initial_s``, doubling up to ``max_s``.
    """
    if consecutive_failures <= 1:
        return 0.0
    return min(policy.max_s, policy.initial_s * (2 ** (consecutive_failures - 2)))


def recent(restart_times: Sequence[float], now: float, period_s: float) -> tuple[float, ...]:
    """The restarts still inside the intensity window."""
    return tuple(t for t in restart_times if now - t <= period_s)


def intensity_exceeded(policy: RestartPolicy, restart_times: Sequence[float], now: float) -> bool:
    """True when more than ``intensity`` restarts happened within ``period_s`` (Erlang/OTP's rule)."""
    return len(recent(restart_times, now, policy.period_s)) > policy.intensity


def healthy_reset(started_at: float, now: float, healthy_after_s: float) -> bool:
    """A child that stayed up ``healthy_after_s`` has its consecutive-failure count reset."""
    return now - started_at >= healthy_after_s


class ExitVerdict(enum.Enum):
    """What the supervisor does about a child that exited (or was killed as hung)."""

    RESTART = "RESTART"  # after ``OnExit.delay_s``
    NOT_RESTARTED = "NOT_RESTARTED"  # its storage refuses writes: a restart cannot fix that
    GIVE_UP = "GIVE_UP"  # past the restart intensity, an OPTIONAL service: the stack runs on
    STOP_STACK = "STOP_STACK"  # past the restart intensity: everything stops, exit non-zero


@dataclass(frozen=True, kw_only=True)
class OnExit:
    verdict: ExitVerdict
    restart_times: tuple[float, ...]  # the child's restarts inside the window, this one included
    delay_s: float = 0.0  # RESTART: how long to wait first


def on_exit(policy: RestartPolicy, *, code: int | None, restart_times: Sequence[float],
            consecutive_failures: int, now: float, optional: bool) -> OnExit:
    """The whole decision on a child's exit (``code``; None: killed or hung), from its restart
    history: not restarted for its storage, given up or the stack stopped past the intensity,
    else restarted after the backoff of its next consecutive failure."""
    if not should_restart(code):
        return OnExit(verdict=ExitVerdict.NOT_RESTARTED, restart_times=tuple(restart_times))
    times = (*recent(restart_times, now, policy.period_s), now)
    if intensity_exceeded(policy, times, now):
        return OnExit(verdict=ExitVerdict.GIVE_UP if optional else ExitVerdict.STOP_STACK, restart_times=times)
    return OnExit(verdict=ExitVerdict.RESTART, restart_times=times,
                  delay_s=backoff_s(policy, consecutive_failures + 1))


# ---------------------------------------------------------------------------- summary
def next_wait_s(tick_s: float, restart_at: Iterable[float | None], now: float) -> float:
    """How long the supervision loop may sleep: one tick, or less when a restart falls due
    sooner (a death wakes it anyway; a due restart must not wait for the next tick)."""
    due = [t - now for t in restart_at if t is not None]
    return max(0.0, min([tick_s, *due]))


def _sum(stats: Iterable[Mapping[str, Any]], key: str) -> int:
    return int(sum(s.get(key, 0) for s in stats))


def mode_refusal(mode: str, *, keys_present: bool, live_confirm: bool) -> str:
    """Why the stack must not start in ``mode`` ("" = it may). Live trading moves real money:
    it needs exchange keys AND an explicit confirmation, checked before anything else."""
    if mode == "live":
        if not keys_present:
            return ("live mode needs exchange keys: BINANCE_API_KEY and BINANCE_API_SECRET (or *_FILE, "
                    "or docker secrets); none were found")
        if not live_confirm:
            return ("live mode trades real money: confirm it on purpose with trading.live_confirm = true "
                    "(AEGIS_TRADING__LIVE_CONFIRM=1)")
    return ""


def summarize(*, duration_s: float, ring: Mapping[str, int], feed: Sequence[Mapping[str, Any]],
              brain: Sequence[Mapping[str, Any]], orchestrator: Sequence[Mapping[str, Any]],
              restarts: Mapping[str, int], symbols: int, mode: str) -> dict[str, Any]:
    """The JSON summary of one run, from every incarnation's final stats and the ring."""
    hist = LatencyHistogram()
    for b in brain:
        if b.get("latency_hist"):
            hist = hist.merge(LatencyHistogram.from_dict(b["latency_hist"]))
    rejected: dict[str, int] = {}
    for f in feed:
        for reason, n in (f.get("rejected") or {}).items():
            rejected[reason] = rejected.get(reason, 0) + int(n)
    latency = {"count": hist.count}
    if hist.count:
        latency.update(p50=hist.percentile(50) / 1e3, p90=hist.percentile(90) / 1e3,
                       p99=hist.percentile(99) / 1e3, p999=hist.percentile(99.9) / 1e3,
                       max=hist.max / 1e3)
    return {
        "mode": mode,
        "duration_s": round(duration_s, 3),  # streaming time, from "stack ready" to stop
        "symbols": symbols,
        "ticks_received": _sum(feed, "ticks_received"),
        "ticks_rejected": _sum(feed, "ticks_rejected"),
        "ticks_fast_lane": _sum(feed, "fast_lane_ticks"),  # of ticks_received: through the C lane
        "ticks_written": int(ring.get("written", 0)),
        "ticks_read": int(ring.get("read", 0)),
        "ticks_lost": int(ring.get("lost", 0)),
        "ring_lag_at_stop": int(ring.get("lag", 0)),
        "brain_ticks_read": _sum(brain, "ticks_read"),
        "brain_out_of_order": _sum(brain, "out_of_order"),
        "brain_rejected": _sum(brain, "rejected"),
        "candles_closed": _sum(brain, "candles_closed"),
        "signals": _sum(brain, "signals"),
        "candles_hydrated": _sum(feed, "candles_hydrated"),  # history fetched over REST at start
        "tick_updates_published": _sum(brain, "tick_updates"),
        "journal_messages": _sum(orchestrator, "journal_messages"),
        "journal_gaps": _sum(orchestrator, "journal_gaps"),
        "rejected_by_reason": dict(sorted(rejected.items())),
        "restarts": dict(restarts),
        "latency_us": latency,
        # where the (last) brain's loop kept the ring waiting: per piece of work, runs, longest,
        # mean and how many took over 200 us (services.brain.loop.Stalls)
        "brain_loop": next((b["loop"] for b in reversed(brain) if b.get("loop")), {}),
        # how long the garbage collector held the (last) brain and feed: per generation, runs,
        # longest and total pause, and the objects frozen at start-up (common/heap.py)
        "gc": {"brain": next((b["gc"] for b in reversed(brain) if b.get("gc")), {}),
               "feed": next((f["gc"] for f in reversed(feed) if f.get("gc")), {})},
        **trading_summary(brain),
        **journal_summary(orchestrator),
    }


def journal_summary(orchestrator: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The journal at the end (the last orchestrator incarnation) and its faults over the run;
    ``trading_halt_reason``: why entries were halted at the end ("" = they were not)."""
    last = orchestrator[-1] if orchestrator else {}
    j = last.get("journal") or {}
    perm = last.get("permission") or {}
    every = [o.get("journal") or {} for o in orchestrator]
    return {
        "journal": {"state": j.get("state", "OK"), "reason": j.get("reason", ""), "detail": j.get("detail", ""),
                    "faults": _sum(every, "faults"), "kept": _sum(every, "kept"),
                    "written_late": _sum(every, "written_late"), "dropped_candles": _sum(every, "dropped_candles"),
                    "spilled_at_stop": _sum(every, "spilled_at_stop"), "lost_at_stop": _sum(every, "lost_at_stop"),
                    "spill_loaded": _sum(every, "spill_loaded")},
        "trading_halt_reason": "" if perm.get("allowed", True) else str(perm.get("reason", "")),
    }


def trading_summary(brain: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Orders, fills and positions over every brain incarnation (positions: the last one's)."""
    ex = [b["execution"] for b in brain if b.get("execution")]
    last = ex[-1] if ex else {}
    return {
        "orders": _sum(ex, "orders"),
        "fills": _sum(ex, "fills"),
        "risk_rejects": _sum(ex, "risk_rejects"),
        "trades_closed": _sum(ex, "trades_closed"),
        "positions_open": int(last.get("positions_open", 0)),
        # the exchange holds a stop for each of these; the longest any position waited for one
        "positions_protected": int(last.get("positions_protected", 0)),
        "protective_orders": int(last.get("protective_orders", 0)),
        "longest_unprotected_ms": max((int(e.get("longest_unprotected_ms", 0)) for e in ex), default=0),
        "realized_pnl_usdt": round(sum(float(e.get("realized_pnl", 0.0)) for e in ex), 6),
        "fees_usdt": round(sum(float(e.get("fees", 0.0)) for e in ex), 6),
        # funding of the closed trades (received > 0, paid < 0), part of realized_pnl_usdt
        "funding_usdt": round(sum(float(e.get("funding", 0.0)) for e in ex), 6),
        "equity_usdt": last.get("equity"),
        "halted": bool(last.get("halted", False)),
        "model_outcomes": int(brain[-1].get("model_outcomes", 0)) if brain else 0,
        "tick_to_trade_us": tick_to_trade_summary(ex),
        "entry_slippage_bps": entry_slippage_summary(ex),
    }


def entry_slippage_summary(executions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The entries' average fill against their signal price, bps, positive = worse for us:
    ``count``, ``mean`` and ``worst`` over every incarnation's closed trades and the last
    incarnation's open ones (an open trade a restart restored is counted once, by the last)."""
    parts = [e.get("entry_slippage_bps", {}).get("closed") for e in executions]
    if executions:
        parts.append(executions[-1].get("entry_slippage_bps", {}).get("open"))
    n, total, worst = 0, 0.0, None
    for p in parts:
        if not (isinstance(p, list) and len(p) == 3 and isinstance(p[0], int) and p[0] > 0):
            continue
        n, total = n + p[0], total + float(p[1])
        worst = float(p[2]) if worst is None else max(worst, float(p[2]))
    return {"count": n, "mean": round(total / n, 3) if n else None,
            "worst": round(worst, 3) if worst is not None else None}


TTT_KINDS = ("exit", "entry")  # services.brain.tick_to_trade's kinds and transports (the stats' keys)
TTT_TRANSPORTS = ("ws", "rest")


def tick_to_trade_summary(executions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Tick receipt at the feed -> order bytes on the exchange socket, every brain incarnation's
    histograms merged: ``count``, ``p50``, ``p99`` (us) over all timed orders, then per kind
    (``exit``, ``entry``) and within a kind per transport (``ws``, ``rest``)."""
    merged: dict[tuple[str, str], LatencyHistogram] = {}
    for ex in executions:
        ttt = ex.get("tick_to_trade") or {}
        for k in TTT_KINDS:
            for t, v in (ttt.get(k) or {}).items():
                if t in TTT_TRANSPORTS and isinstance(v, Mapping) and v.get("hist"):
                    h = LatencyHistogram.from_dict(v["hist"])
                    merged[(k, t)] = merged[(k, t)].merge(h) if (k, t) in merged else h

    def fig(hs: list[LatencyHistogram]) -> dict[str, Any]:
        total = LatencyHistogram()
        for h in hs:
            total = total.merge(h)
        d: dict[str, Any] = {"count": total.count}
        if total.count:
            d.update(p50=total.percentile(50) / 1e3, p99=total.percentile(99) / 1e3)
        return d

    out = fig(list(merged.values()))
    for k in TTT_KINDS:
        hs = [h for (kk, _), h in merged.items() if kk == k]
        if hs:
            out[k] = {**fig(hs), **{t: fig([h]) for (kk, t), h in sorted(merged.items()) if kk == k}}
    return out
