"""Supervisor rules: backoff doubling and cap, restart intensity window."""

from __future__ import annotations

import pytest

from services.orchestrator import policy

P = policy.RestartPolicy(initial_s=0.5, max_s=10.0, intensity=3, period_s=60.0, healthy_after_s=10.0)


class TestBackoff:
    def test_first_restart_is_immediate_then_doubles(self):
        """A single crash restarts at once; a crash loop waits 0.5, 1, 2, 4 seconds."""
        assert [policy.backoff_s(P, n) for n in (1, 2, 3, 4, 5)] == [0.0, 0.5, 1.0, 2.0, 4.0]

    def test_backoff_is_capped(self):
        """A crash loop never waits longer than max_s."""
        assert policy.backoff_s(P, 50) == 10.0

    def test_no_failure_means_no_delay(self):
        """The first start is immediate."""
        assert policy.backoff_s(P, 0) == 0.0


class TestIntensity:
    def test_restarts_up_to_the_limit_are_allowed(self):
        """Exactly `intensity` restarts within the window is still fine."""
        assert not policy.intensity_exceeded(P, [1.0, 2.0, 3.0], now=4.0)

    def test_one_more_restart_within_window_exceeds(self):
        """intensity + 1 restarts inside the window means give up."""
        assert policy.intensity_exceeded(P, [1.0, 2.0, 3.0, 4.0], now=5.0)

    def test_old_restarts_fall_out_of_the_window(self):
        """Restarts older than period_s no longer count."""
        assert not policy.intensity_exceeded(P, [0.0, 1.0, 70.0, 71.0], now=72.0)

    def test_child_up_long_enough_is_healthy_again(self):
        """After healthy_after_s of uptime the consecutive-failure count resets."""
        assert policy.healthy_reset(10.0, 20.0, 10.0)
        assert not policy.healthy_reset(10.0, 19.9, 10.0)


class TestOnExit:
    def test_a_first_crash_restarts_at_once_and_counts_in_the_window(self):
        """A crash with no history: RESTART now, the window holds this one restart."""
        d = policy.on_exit(P, code=1, restart_times=[], consecutive_failures=0, now=100.0, optional=False)
        assert d == policy.OnExit(verdict=policy.ExitVerdict.RESTART, restart_times=(100.0,), delay_s=0.0)

    def test_a_crash_loop_backs_off_and_old_restarts_leave_the_window(self):
        """The third consecutive failure waits 1 s (0.5 doubled); a restart 61 s old is dropped."""
        d = policy.on_exit(P, code=1, restart_times=[39.0, 90.0], consecutive_failures=2, now=100.0, optional=False)
        assert d == policy.OnExit(verdict=policy.ExitVerdict.RESTART, restart_times=(90.0, 100.0), delay_s=1.0)

    def test_past_the_intensity_the_stack_stops_or_an_optional_service_is_given_up(self):
        """The fourth restart in 60 s (intensity 3): STOP_STACK, or GIVE_UP for an optional one."""
        times = [97.0, 98.0, 99.0]
        stop = policy.on_exit(P, code=None, restart_times=times, consecutive_failures=3, now=100.0, optional=False)
        give = policy.on_exit(P, code=None, restart_times=times, consecutive_failures=3, now=100.0, optional=True)
        assert stop == policy.OnExit(verdict=policy.ExitVerdict.STOP_STACK, restart_times=(97.0, 98.0, 99.0, 100.0))
        assert give.verdict is policy.ExitVerdict.GIVE_UP and give.restart_times == stop.restart_times

    def test_a_storage_exit_is_never_restarted_and_leaves_the_history_alone(self):
        """Exit 74: NOT_RESTARTED, the restart window unchanged."""
        d = policy.on_exit(P, code=policy.CHILD_EXIT_STORAGE_FAULT, restart_times=[99.0], consecutive_failures=1,
                           now=100.0, optional=False)
        assert d == policy.OnExit(verdict=policy.ExitVerdict.NOT_RESTARTED, restart_times=(99.0,))


class TestModeRefusal:
    def test_demo_starts(self):
        assert policy.mode_refusal("demo", keys_present=False, live_confirm=False) == ""

    def test_live_without_keys_is_refused_first_whatever_the_flag(self):
        msg = policy.mode_refusal("live", keys_present=False, live_confirm=True)
        assert msg.startswith("live mode needs exchange keys")

    def test_live_with_keys_but_no_explicit_flag_is_refused(self):
        msg = policy.mode_refusal("live", keys_present=True, live_confirm=False)
        assert "AEGIS_TRADING__LIVE_CONFIRM=1" in msg

    def test_live_with_keys_and_the_flag_starts(self):
        assert policy.mode_refusal("live", keys_present=True, live_confirm=True) == ""

    def test_paper_needs_neither_keys_nor_the_flag(self):
        assert policy.mode_refusal("paper", keys_present=False, live_confirm=False) == ""

    def test_demo_and_replay_may_start(self):
        for mode in ("demo", "replay"):
            assert policy.mode_refusal(mode, keys_present=False, live_confirm=False) == ""


class TestNextWait:
    def test_a_tick_when_nothing_is_due(self):
        assert policy.next_wait_s(0.1, [None, None], 50.0) == 0.1
        assert policy.next_wait_s(0.1, [], 50.0) == 0.1

    def test_the_soonest_due_restart_when_it_comes_before_the_tick(self):
        assert policy.next_wait_s(0.1, [None, 50.03, 50.5], 50.0) == pytest.approx(0.03)

    def test_never_negative_for_a_restart_already_due(self):
        assert policy.next_wait_s(0.1, [49.0], 50.0) == 0.0


class TestJournalFaultExit:
    def test_a_child_exiting_for_its_storage_is_not_restarted(self):
        """Exit code 74 (storage refuses writes) is never restarted; crashes, kills and clean exits are."""
        assert not policy.should_restart(policy.CHILD_EXIT_STORAGE_FAULT)
        assert [policy.should_restart(c) for c in (None, 0, 1, 2, -9)] == [True] * 5

    def test_a_run_that_ends_with_the_journal_refused_exits_4(self):
        """The journal DEGRADED at the end, or a child given up for its storage: exit code 4; the
        loop's own verdict (3) wins; a fault that healed before the end leaves 0."""
        degraded = {"journal": {"state": "DEGRADED", "reason": "JOURNAL_DISK_FULL"}}
        healed = {"journal": {"state": "OK", "faults": 1}}
        assert policy.run_exit_code(0, degraded) == policy.EXIT_JOURNAL_FAULT == 4
        assert policy.run_exit_code(0, healed) == 0
        assert policy.run_exit_code(0, healed, storage_gave_up=True) == 4
        assert policy.run_exit_code(3, degraded) == 3
        assert policy.EXIT_CODES[4] == "the journal could not write to its disk: entries halted"

    def test_the_summary_names_the_journal_fault_and_the_halt(self):
        """The summary's journal block comes from the last orchestrator, counts from every one."""
        first = {"journal": {"state": "OK", "faults": 1, "kept": 5, "written_late": 5}}
        last = {"journal": {"state": "DEGRADED", "reason": "JOURNAL_DISK_FULL", "detail": "cannot write /d/a",
                            "faults": 1, "kept": 2, "spilled_at_stop": 2},
                "permission": {"allowed": False, "reason": "JOURNAL_DISK_FULL", "detail": "cannot write /d/a"}}
        s = policy.summarize(duration_s=1.0, ring={}, feed=[], brain=[], orchestrator=[first, last], restarts={},
                             symbols=1, mode="demo")
        assert s["journal"] == {"state": "DEGRADED", "reason": "JOURNAL_DISK_FULL", "detail": "cannot write /d/a",
                                "faults": 2, "kept": 7, "written_late": 5, "dropped_candles": 0,
                                "spilled_at_stop": 2, "lost_at_stop": 0, "spill_loaded": 0}
        assert s["trading_halt_reason"] == "JOURNAL_DISK_FULL"
        quiet = policy.summarize(duration_s=1.0, ring={}, feed=[], brain=[], orchestrator=[], restarts={},
                                 symbols=1, mode="demo")
        assert (quiet["journal"]["state"], quiet["trading_halt_reason"]) == ("OK", "")

    def test_the_summary_carries_the_last_brains_loop_stalls(self):
        """``brain_loop``: the last brain incarnation's loop stalls (the one that ran to the end)."""
        old, new = {"loop": {"heartbeat": {"runs": 1}}}, {"loop": {"heartbeat": {"runs": 9}}}
        s = policy.summarize(duration_s=1.0, ring={}, feed=[], brain=[old, new, {}], orchestrator=[], restarts={},
                             symbols=1, mode="demo")
        assert s["brain_loop"] == {"heartbeat": {"runs": 9}}

    def test_the_summary_carries_the_last_brains_and_feeds_gc_pauses(self):
        """``gc``: the last brain's and the last feed's garbage-collector pauses; {} without any."""
        s = policy.summarize(duration_s=1.0, ring={}, feed=[{"gc": {"frozen": 5}}, {}],
                             brain=[{"gc": {"frozen": 1}}, {"gc": {"frozen": 2}}], orchestrator=[], restarts={},
                             symbols=1, mode="demo")
        assert s["gc"] == {"brain": {"frozen": 2}, "feed": {"frozen": 5}}
        quiet = policy.summarize(duration_s=1.0, ring={}, feed=[], brain=[], orchestrator=[], restarts={},
                                 symbols=1, mode="demo")
        assert quiet["gc"] == {"brain": {}, "feed": {}}


class TestTradingSummaryFunding:
    def test_funding_is_summed_over_brain_incarnations(self):
        """funding_usdt: the closed trades' funding of every incarnation (6 decimals); 0 without any."""
        s = policy.trading_summary([{"execution": {"funding": -0.059}}, {"execution": {"funding": 0.0123456789}}])
        assert s["funding_usdt"] == round(-0.059 + 0.0123456789, 6) == -0.046654
        assert policy.trading_summary([{"execution": {}}])["funding_usdt"] == 0.0


class TestTradingSummarySlippage:
    def test_entry_slippage_merges_closed_trades_of_every_incarnation_and_the_last_ones_open(self):
        """count/mean/worst over closed [2, 15, 10] + [1, -3, -3] and the last incarnation's open
        [1, 4, 4]; the first incarnation's open trade (restored by the second) is not counted twice."""
        first = {"execution": {"entry_slippage_bps": {"closed": [2, 15.0, 10.0], "open": [1, 4.0, 4.0]}}}
        second = {"execution": {"entry_slippage_bps": {"closed": [1, -3.0, -3.0], "open": [1, 4.0, 4.0]}}}
        s = policy.trading_summary([first, second])
        assert s["entry_slippage_bps"] == {"count": 4, "mean": 4.0, "worst": 10.0}

    def test_no_entries_no_numbers(self):
        """Nothing measured: count 0, mean and worst None (a malformed part is ignored)."""
        s = policy.trading_summary([{"execution": {"entry_slippage_bps": {"closed": "x", "open": [0, 0.0, 0.0]}}}])
        assert s["entry_slippage_bps"] == {"count": 0, "mean": None, "worst": None}
