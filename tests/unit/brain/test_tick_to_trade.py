"""Tick-to-trade plumbing: a decision's triggering tick travels with its order to the wire stamp,
lands in the right (kind, transport) histogram, and reaches the summary and Prometheus."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from services.brain.tick_to_trade import TickToTrade
from services.orchestrator import monitor, policy
from venue import wirestamp


class _Clock:
    def __init__(self) -> None:
        self.t = 1_000_000

    def __call__(self) -> int:
        self.t += 1_000
        return self.t


def _timed_submit(ttt: TickToTrade, cid: str, transport: str, *, reduce_only: bool, trigger_ns: int) -> None:
    ttt.trigger_ns = trigger_ns
    ttt.decided(cid, reduce_only)
    ttt.trigger_ns = 0
    ttt.journaled(cid)

    def submit(spec):
        wirestamp.mark(transport)  # what ws_api / the urllib3 hook do once the bytes are written
        wirestamp.mark("rest")  # a later request of the same call (a fills fetch) is not the order's
        return spec

    assert ttt.wrap(cid, submit)("spec") == "spec"


def test_an_exit_sent_over_the_websocket_is_recorded_as_exit_ws():
    """An exit decided with a triggering tick gives one sample in (exit, ws), none elsewhere,
    and one sample in each stage."""
    ttt = TickToTrade(clock_ns=_Clock())
    _timed_submit(ttt, "ax-1", "ws", reduce_only=True, trigger_ns=1)
    counts = {k: h.count for k, h in ttt.hist.items()}
    assert counts == {("exit", "ws"): 1, ("exit", "rest"): 0, ("entry", "ws"): 0, ("entry", "rest"): 0}
    assert {s: h.count for s, h in ttt.stages.items() if h.count} == {
        ("exit", "decide"): 1, ("exit", "journal"): 1, ("exit", "hop"): 1, ("exit", "send"): 1}
    snap = ttt.snapshot()
    assert snap["exit"]["ws"]["count"] == 1 and "entry" not in snap and snap["unstamped"] == 0
    assert list(snap["stages_us"]) == ["exit"] and sorted(snap["stages_us"]["exit"]) == [
        "decide", "hop", "journal", "send"]


def test_an_entry_over_rest_is_recorded_as_entry_rest():
    """The first transport that stamped is the order's transport; reduce_only=False is an entry."""
    ttt = TickToTrade(clock_ns=_Clock())
    _timed_submit(ttt, "ae-1", "rest", reduce_only=False, trigger_ns=1)
    assert ttt.hist[("entry", "rest")].count == 1 and ttt.hist[("entry", "ws")].count == 0


def test_without_a_triggering_tick_nothing_is_timed():
    """A decision with no triggering tick (a retry, a timer) returns the broker call unwrapped."""
    ttt = TickToTrade(clock_ns=_Clock())
    ttt.decided("ae-2", False)

    def submit(spec):
        return spec

    assert ttt.wrap("ae-2", submit) is submit
    assert sum(h.count for h in ttt.hist.values()) == 0


def test_a_call_that_never_reached_a_socket_is_counted_unstamped():
    """No wire stamp (refused before sending): no sample, one ``unstamped``."""
    ttt = TickToTrade(clock_ns=_Clock())
    ttt.trigger_ns = 5
    ttt.decided("ax-3", True)
    ttt.wrap("ax-3", lambda: None)()
    assert ttt.unstamped == 1 and sum(h.count for h in ttt.hist.values()) == 0


def test_an_unarmed_thread_is_never_stamped():
    """``mark`` outside an armed call leaves nothing behind for the next armed call."""
    wirestamp.disarm()
    wirestamp.mark("ws")
    wirestamp.arm()
    assert wirestamp.disarm() == (0, "")


def test_the_summary_field_has_count_p50_p99_overall_and_per_kind():
    """``tick_to_trade_us`` merges incarnations: count over both, per kind and per transport."""
    a, b = TickToTrade(clock_ns=_Clock()), TickToTrade(clock_ns=_Clock())
    _timed_submit(a, "ax-1", "ws", reduce_only=True, trigger_ns=1)
    _timed_submit(b, "ae-1", "rest", reduce_only=False, trigger_ns=1)
    _timed_submit(b, "ax-2", "ws", reduce_only=True, trigger_ns=1)
    s = policy.trading_summary([{"execution": {"tick_to_trade": a.snapshot()}},
                                {"execution": {"tick_to_trade": b.snapshot()}}])["tick_to_trade_us"]
    assert s["count"] == 3 and set(s) == {"count", "p50", "p99", "exit", "entry"}
    assert s["exit"]["count"] == 2 and s["exit"]["ws"]["count"] == 2
    assert s["entry"]["count"] == 1 and s["entry"]["rest"]["count"] == 1 and "ws" not in s["entry"]
    assert policy.trading_summary([])["tick_to_trade_us"] == {"count": 0}


def test_prometheus_exposes_tick_to_trade_buckets_per_kind_and_transport():
    """The brain's heartbeat buckets become ``aegis_tick_to_trade_seconds{kind,transport}``."""
    ttt = TickToTrade(clock_ns=_Clock())
    _timed_submit(ttt, "ax-1", "ws", reduce_only=True, trigger_ns=1)
    snap = {"services": {"brain": {"running": True, "counters": ttt.counters()}}}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(monitor.StackCollector(lambda: snap))
    text = generate_latest(registry).decode()
    assert 'aegis_tick_to_trade_seconds_bucket{kind="exit",le="+Inf",transport="ws"} 1.0' in text
    assert 'aegis_tick_to_trade_seconds_count{kind="exit",transport="ws"} 1.0' in text
    assert "ttt_le_us" not in text  # the buckets are not also exported as gauges
