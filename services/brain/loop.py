"""One turn of the brain's main loop, shared by the service (``services.brain.__main__.run``)
and the tick-to-trade bench, so that the bench measures the loop the brain runs.

A turn: read a batch from the ring (``Brain.poll``: candles, stops and targets, analysis);
when the ring is empty, busy-poll for ``brain.spin_before_sleep_us``, then sleep
``brain.idle_sleep_us`` per turn (that sleep is also what lets the dispatcher's threads have
the GIL); publish the conflated ticks every ``brain.conflate_interval_ms``; close quiet
symbols' candles once a second (live); spend idle moments on the warm-up history; hand the
execution its completions and timers; look at the operators' commands every 50 ms; heartbeat
once per ``heartbeat_interval_s`` (the caller's ``heartbeat``: publish, write stats).

Live, those chores (conflated ticks, flush, commands, heartbeat) run in a turn that found the
ring empty, so a burst of ticks is read before them; each waits at most a bounded moment past
its time (``due``). Replay keeps them on time."""

from __future__ import annotations

import time
from typing import Any, Callable

FLUSH_PERIOD_S = 1.0  # close quiet symbols' candles this often
CONTROL_POLL_S = 0.05  # operators' commands (the dashboard) are looked for this often
# live, the loop's own chores wait for a turn that found the ring empty (ticks first), but
# never longer than this past their time: the conflated ticks one more period, the
# operators' commands, the quiet candles' flush and the heartbeat a bounded moment
LATE_CONTROL_S = 0.2
LATE_FLUSH_S = 0.5
LATE_BEAT_S = 0.5


STALL_NS = 200_000  # a turn's piece of work longer than this is counted as a stall


class Stalls:
    """How long each piece of the loop's work kept the ring waiting: per piece, the number of
    runs, the longest, the total, and how many took longer than ``STALL_NS``. The brain's
    stats show it (``loop``): where a tick's read latency tail comes from."""

    NAMES = ("poll", "ticks", "flush", "history", "execution", "control", "heartbeat")

    def __init__(self) -> None:
        self.runs = dict.fromkeys(self.NAMES, 0)
        self.max_ns = dict.fromkeys(self.NAMES, 0)
        self.total_ns = dict.fromkeys(self.NAMES, 0)
        self.over = dict.fromkeys(self.NAMES, 0)

    def add(self, name: str, ns: int) -> None:
        self.runs[name] += 1
        self.total_ns[name] += ns
        if ns > self.max_ns[name]:
            self.max_ns[name] = ns
        if ns > STALL_NS:
            self.over[name] += 1

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {n: {"runs": self.runs[n], "max_us": self.max_ns[n] / 1e3,
                    "mean_us": round(self.total_ns[n] / self.runs[n] / 1e3, 1) if self.runs[n] else 0.0,
                    f"over_{STALL_NS // 1000}us": self.over[n]} for n in self.NAMES}


def due(now: float, at: float, idle: bool, late_s: float) -> bool:
    """Pure: does a chore due ``at`` run in this turn? Once due, at the first turn that found
    the ring empty (``idle``), or in any turn once ``late_s`` past its time (a busy ring never
    starves it). ``late_s = 0``: as soon as due, as replay keeps it."""
    return now >= at and (idle or now >= at + late_s)


class Loop:
    def __init__(self, brain: Any, *, execution: Any = None, control: Any = None,
                 heartbeat: Callable[[float], None] | None = None, heartbeat_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        cfg = brain.cfg
        self.brain, self.execution, self.control = brain, execution, control
        self.heartbeat, self.heartbeat_interval_s = heartbeat, heartbeat_interval_s
        self.clock, self.sleep = clock, sleep
        self.conflate_s = cfg.brain.conflate_interval_ms / 1000
        self.idle_s = cfg.brain.idle_sleep_us / 1e6
        self.spin_s = cfg.brain.spin_before_sleep_us / 1e6  # a time, not a count: an empty poll is ~0.1 us
        self.stalls = Stalls()
        now = clock()
        self.next_tick = self.next_beat = self.next_flush = self.next_control = now
        self.idle_since = 0.0  # when the ring was first seen empty (0: it was not)
        live = not brain.replay  # replay keeps its chores on time (its ring is never idle)
        self.late_tick_s = self.conflate_s if live else 0.0
        self.late_control_s, self.late_flush_s, self.late_beat_s = (
            (LATE_CONTROL_S, LATE_FLUSH_S, LATE_BEAT_S) if live else (0.0, 0.0, 0.0))

    def step(self) -> int:
        """One turn; returns the number of records read."""
        brain, ns, add = self.brain, time.perf_counter_ns, self.stalls.add
        t0 = ns()
        got = brain.poll()
        now = self.clock()
        if got:
            self.idle_since = 0.0
            add("poll", ns() - t0)
        elif not self.idle_since:
            self.idle_since = now
        elif now - self.idle_since > self.spin_s:
            self.sleep(self.idle_s)
        idle = not got
        if due(now, self.next_tick, idle, self.late_tick_s) or (idle and brain.ticks_pending):
            if not brain.ticks_pending:  # a new drain (else: the rest of the last one, ticks first)
                self.next_tick = now + self.conflate_s
            t0 = ns()
            brain.publish_ticks()
            add("ticks", ns() - t0)
        if not brain.replay and due(now, self.next_flush, idle, self.late_flush_s):
            self.next_flush = now + FLUSH_PERIOD_S
            t0 = ns()
            brain.flush_quiet()
            brain.rules_from_journal()  # a symbol's rules the bus did not bring (yet)
            add("flush", ns() - t0)
        if self.idle_since:  # idle: spend it on history, never ahead of live ticks
            t0 = ns()
            brain.warm_from_history()
            add("history", ns() - t0)
        if self.execution is not None:
            t0 = ns()
            self.execution.poll()
            brain.arm_exits()  # the trades the completions changed, armed before the next batch
            add("execution", ns() - t0)
        if self.control is not None and due(now, self.next_control, idle, self.late_control_s):
            self.next_control = now + CONTROL_POLL_S
            t0 = ns()
            self.control.poll()
            add("control", ns() - t0)
        if self.heartbeat is not None and due(now, self.next_beat, idle, self.late_beat_s):
            self.next_beat = now + self.heartbeat_interval_s
            t0 = ns()
            self.heartbeat(now)
            add("heartbeat", ns() - t0)
        return got
