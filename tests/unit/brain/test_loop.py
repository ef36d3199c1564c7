"""services.brain.loop: one turn of the brain's main loop, with a fake brain and clock."""

from __future__ import annotations

from types import SimpleNamespace

from services.brain import loop


class FakeBrain:
    def __init__(self, reads: list[int], replay: bool = False) -> None:
        self.cfg = SimpleNamespace(brain=SimpleNamespace(conflate_interval_ms=100, idle_sleep_us=50,
                                                         spin_before_sleep_us=200))
        self.reads, self.replay = list(reads), replay
        self.calls: list[str] = []
        self.ticks_pending: list[int] = []  # a drain's symbols not yet published (publish_ticks)
        self.leave: list[list[int]] = []

    def poll(self) -> int:
        return self.reads.pop(0) if self.reads else 0

    def publish_ticks(self) -> None:
        self.calls.append("ticks")
        if self.leave:  # what this call leaves pending (scripted)
            self.ticks_pending = self.leave.pop(0)

    def flush_quiet(self) -> None:
        self.calls.append("flush")

    def rules_from_journal(self) -> None:
        self.calls.append("rules")

    def warm_from_history(self) -> None:
        self.calls.append("history")

    def arm_exits(self) -> None:
        self.calls.append("arm")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_idle_policy_spins_then_sleeps_and_history_only_when_idle():
    """Ticks: no sleep, no history. Empty ring: history at once, a sleep only once the ring
    has been empty longer than the spin time; a tick ends the idle spell."""
    clock, slept = Clock(), []
    b = FakeBrain([5, 0, 0, 0, 3])
    turn = loop.Loop(b, clock=clock, sleep=slept.append)
    assert turn.step() == 5 and "history" not in b.calls and slept == []
    clock.t += 0.0001
    turn.step()  # first empty poll: idle from now
    assert b.calls.count("history") == 1 and slept == []
    clock.t += 0.0001  # 100 us empty: still spinning
    turn.step()
    assert slept == []
    clock.t += 0.0002  # 300 us empty: past the 200 us spin
    turn.step()
    assert slept == [50e-6]
    turn.step()  # a tick again
    assert turn.idle_since == 0.0 and b.calls.count("history") == 3


def test_timers_ticks_flush_control_and_heartbeat():
    """Ticks every 100 ms, quiet-candle flush every second (not in replay), operators' commands
    every 50 ms, heartbeat per its interval, execution every turn (an empty ring: every chore
    runs when due)."""
    clock = Clock()
    beats, polls, controls = [], [], []
    b = FakeBrain([])
    ex = SimpleNamespace(poll=lambda: polls.append(1))
    ctl = SimpleNamespace(poll=lambda: controls.append(1))
    turn = loop.Loop(b, execution=ex, control=ctl, heartbeat=beats.append, heartbeat_interval_s=1.0, clock=clock,
                     sleep=lambda s: None)
    for _ in range(17):  # 0 .. 2.0 s in 125 ms steps (exact in binary)
        turn.step()
        clock.t += 0.125
    assert b.calls.count("ticks") == 17 and b.calls.count("flush") == 3 == b.calls.count("rules")
    assert len(polls) == 17 and len(controls) == 17 and beats == [1000.0, 1001.0, 1002.0]
    assert b.calls.count("arm") == 17  # the exit lane re-armed after every execution poll
    r = FakeBrain([1] * 5, replay=True)
    turn = loop.Loop(r, clock=clock)
    for _ in range(5):
        turn.step()
        clock.t += 2.0
    assert "flush" not in r.calls and "rules" not in r.calls


def test_stalls_count_each_piece_of_work_and_the_ones_over_the_threshold():
    """``Stalls``: runs, longest, mean and the count over ``STALL_NS`` per piece; the loop
    times a poll only when it read something, and every heartbeat."""
    s = loop.Stalls()
    s.add("heartbeat", 50_000)
    s.add("heartbeat", loop.STALL_NS + 1)
    snap = s.snapshot()["heartbeat"]
    assert snap == {"runs": 2, "max_us": (loop.STALL_NS + 1) / 1e3, "mean_us": round((50_000 + loop.STALL_NS + 1) / 2e3, 1),
                    f"over_{loop.STALL_NS // 1000}us": 1}
    clock, beats = Clock(), []
    turn = loop.Loop(FakeBrain([3, 0, 2]), heartbeat=beats.append, clock=clock)
    for _ in range(3):
        turn.step()
    got = turn.stalls.snapshot()
    assert (got["poll"]["runs"], got["heartbeat"]["runs"], got["execution"]["runs"]) == (2, 1, 0)


def test_chores_wait_for_an_empty_ring_but_not_past_their_bound():
    """Live: while every turn reads ticks, the conflated ticks, the flush, the commands and the
    heartbeat wait (ticks first), each at most its bound past its time; the first turn that
    finds the ring empty runs every chore that is due. Replay keeps them on time."""
    clock, beats, controls = Clock(), [], []
    b = FakeBrain([1] * 1000)
    ctl = SimpleNamespace(poll=lambda: controls.append(clock.t))
    turn = loop.Loop(b, control=ctl, heartbeat=beats.append, heartbeat_interval_s=1.0, clock=clock)
    t0 = clock.t
    turn.step()  # busy from the first turn: nothing is past its bound yet
    assert b.calls.count("ticks") == 0 and beats == [] and controls == []
    clock.t = t0 + loop.LATE_CONTROL_S  # the commands' bound
    turn.step()
    assert controls == [clock.t] and beats == [] and b.calls.count("ticks") == 1  # ticks: one period late
    clock.t = t0 + loop.LATE_BEAT_S
    turn.step()
    assert beats == [clock.t] and b.calls.count("flush") == 1  # heartbeat and flush at their bound
    clock.t += 0.05
    turn.step()
    assert len(beats) == 1 and b.calls.count("flush") == 1
    clock.t = t0 + 1.6  # due again (1 s after the late beat), busy, not past the bound
    turn.step()
    assert len(beats) == 1
    b.reads = []  # the ring empties: what is due runs in that turn
    turn.step()
    assert beats[-1] == clock.t and len(beats) == 2 and b.calls.count("flush") == 2
    assert b.calls.count("ticks") == 3  # 0.2 s, 0.5 s (a period late each), 1.6 s (long overdue)
    r = FakeBrain([1] * 10, replay=True)
    rbeats: list = []
    turn = loop.Loop(r, heartbeat=rbeats.append, heartbeat_interval_s=1.0, clock=clock)
    turn.step()
    assert rbeats == [clock.t] and r.calls.count("ticks") == 1  # replay: on time, busy or not


def test_due_is_pure_and_bounded():
    assert not loop.due(0.9, 1.0, True, 0.5)  # not yet due
    assert loop.due(1.0, 1.0, True, 0.5)  # due and idle
    assert not loop.due(1.4, 1.0, False, 0.5)  # due, busy, within the bound
    assert loop.due(1.5, 1.0, False, 0.5)  # the bound reached
    assert loop.due(1.0, 1.0, False, 0.0)  # no bound: on time


def test_a_drain_of_ticks_cut_short_goes_on_at_the_next_idle_turn_and_the_next_drain_keeps_its_time():
    """Conflated ticks that ``publish_ticks`` left for waiting ticks are published at the next
    idle turn, not one period later; a busy turn leaves them; the next drain is due one
    period after the drain that started them."""
    clock = Clock()
    b = FakeBrain([0, 4, 0, 0, 0])
    turn = loop.Loop(b, clock=clock, sleep=lambda s: None)
    b.leave = [[7, 8], [8], []]  # the drain is cut short twice by waiting ticks
    turn.step()  # due and idle: a new drain, cut short
    assert b.calls.count("ticks") == 1 and b.ticks_pending == [7, 8]
    clock.t += 0.001
    turn.step()  # ticks read: not idle, and the drain's period has not passed: left pending
    assert b.calls.count("ticks") == 1
    clock.t += 0.001
    turn.step()  # idle again: on with the rest, at once (not one period later)
    assert b.calls.count("ticks") == 2 and b.ticks_pending == [8]
    clock.t += 0.001
    turn.step()
    assert b.calls.count("ticks") == 3 and b.ticks_pending == []
    clock.t += 0.001
    turn.step()  # nothing pending; the next drain is due one period after the first one
    assert b.calls.count("ticks") == 3
    clock.t += 0.1
    turn.step()
    assert b.calls.count("ticks") == 4
