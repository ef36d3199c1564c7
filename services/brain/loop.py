"""One turn of the brain's main loop, shared by the service (``services.brain.__main__.run``)
and the tick-to-trade bench, so that the bench measures the loop the brain runs.

A turn: read a batch from the ring (``Brain.poll``: candles, stops and targets, analysis);
when the ring is empty, busy-poll for ``brain.spin_before_sleep_us``, then sleep
``brain.idle_sleep_us`` per turn (that sleep is also what lets the dispatcher's threads have
the GIL); publish the conflated ticks every ``brain.conflate_interval_ms``; close quiet
symbols' candles once a second (live); spend idle moments on the warm-up history; hand the
execution its completions and timers; look at the operators' commands every 50 ms; heartbeat
once per ``heartbeat_interval_s`` (the caller's ``heartbeat``: publish, write stats)."""

from __future__ import annotations

import time
from typing import Any, Callable

FLUSH_PERIOD_S = 1.0  # close quiet symbols' candles this often
CONTROL_POLL_S = 0.05  # operators' commands (the dashboard) are looked for this often


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
        now = clock()
        self.next_tick = self.next_beat = self.next_flush = self.next_control = now
        self.idle_since = 0.0  # when the ring was first seen empty (0: it was not)

    def step(self) -> int:
        """One turn; returns the number of records read."""
        brain = self.brain
        got = brain.poll()
        now = self.clock()
        if got:
            self.idle_since = 0.0
        elif not self.idle_since:
            self.idle_since = now
        elif now - self.idle_since > self.spin_s:
            self.sleep(self.idle_s)
        if now >= self.next_tick:
            self.next_tick = now + self.conflate_s
            brain.publish_ticks()
        if now >= self.next_flush and not brain.replay:
            self.next_flush = now + FLUSH_PERIOD_S
            brain.flush_quiet()
        if self.idle_since:  # idle: spend it on history, never ahead of live ticks
            brain.warm_from_history()
        if self.execution is not None:
            self.execution.poll()
            brain.arm_exits()  # the trades the completions changed, armed before the next batch
        if self.control is not None and now >= self.next_control:
            self.next_control = now + CONTROL_POLL_S
            self.control.poll()
        if self.heartbeat is not None and now >= self.next_beat:
            self.next_beat = now + self.heartbeat_interval_s
            self.heartbeat(now)
        return got
