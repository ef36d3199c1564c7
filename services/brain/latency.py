"""The brain process's two latency knobs, set once at start, before any thread exists.

- **GIL switch interval** (``brain.gil_switch_interval_us``). The brain's ring reader decides
  exits; dispatcher, user-stream and WebSocket-API threads decode answers in Python. When the
  reader wants the GIL while one of them runs, CPython lets that thread go on for the switch
  interval before it must hand over: 5 ms by default, i.e. a stop seen on a tick could wait
  5 ms for a thread that is parsing a fills answer. 1 ms bounds that wait. Shorter is not
  better: the reader then has to hand the GIL over as often while it decides. On a quiet
  machine, 100, 1,000 and 5,000 us gave exit p50s within the run-to-run noise of each other
  (350-800 us, ``python -m bench --only tick_to_trade``, docs/performance.md).
- **Timer slack** (``brain.timer_slack_ns``). Linux rounds every sleep up by the thread's
  timer slack (50 us by default) so that wake-ups can be grouped. The reader sleeps
  ``brain.idle_sleep_us`` (50 us) when the ring is empty; with the default slack that sleep
  lasts ~100 us and a tick arriving then waits for it. ``prctl(PR_SET_TIMERSLACK)`` asks for
  a near-exact wake-up; threads started later inherit it.

Both are process-wide settings of the interpreter and the kernel, so they live in this small
shell module, called by ``services.brain.__main__.run`` and by the tick-to-trade bench (which
drives the same brain)."""

from __future__ import annotations

import ctypes
import sys

import structlog

log = structlog.get_logger(__name__)
PR_SET_TIMERSLACK = 29  # linux/prctl.h


def apply(gil_switch_interval_us: int, timer_slack_ns: int) -> dict[str, object]:
    """Set both knobs for this process (the slack: for this thread and the threads it starts
    afterwards). Returns what was set; a refused ``prctl`` is logged, never fatal."""
    sys.setswitchinterval(gil_switch_interval_us / 1e6)
    slack_set = False
    if timer_slack_ns > 0 and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            slack_set = libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(timer_slack_ns), 0, 0, 0) == 0
        except (OSError, AttributeError) as exc:
            log.warning("brain.timer_slack_unavailable", error=str(exc))
        if not slack_set:
            log.warning("brain.timer_slack_refused", errno=ctypes.get_errno())
    return {"switch_interval_s": sys.getswitchinterval(), "timer_slack_ns": timer_slack_ns if slack_set else None}
