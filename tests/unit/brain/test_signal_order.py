"""``Brain.analyse``: the order of a signal's publication and the trader's reaction to it.
Live, the trader acts first (its entry leaves before the signal's two bus sends, each of which
can hand the interpreter to another thread); replay keeps the capture's order (the signal's
rows, then the trader's), which its byte-for-byte golden run depends on."""

from __future__ import annotations

import types
from types import SimpleNamespace

import pytest

from common import wire
from research import strategy_api
from services.brain.app import Brain

CANDLE = wire.CandleClosed(symbol="BTCUSDT", interval_s=60, open_ms=0, close_ms=60_000, open=100.0, high=101.0,
                           low=99.0, close=100.5, volume=3.0)
SIG = wire.SignalGenerated(signal_id="s1", symbol="BTCUSDT", side="BUY", entry=100.5, stop=99.0, target=103.0,
                           confidence=0.6, cold=False, features={})


def fake_brain(replay: bool, seen: list[str], enters: bool = False) -> SimpleNamespace:
    """``enters``: the trader's entry leaves and the shell announces the signal before the
    entry's row (``Execution.on_signal``); otherwise the brain announces it after the answer."""
    runner = SimpleNamespace(on_candle=lambda c, **_: [strategy_api.Enter(side="BUY", stop=99.0, target=103.0)],
                             on_timer=lambda *a, **_: [], signal=lambda c, it: SIG)

    def on_signal(sig, announce=None):
        seen.append("trader")
        if enters and announce is not None:
            announce()
            seen.append("row")

    b = SimpleNamespace(
        replay=replay, analysed_to={}, runner=runner, model_state=None, control=None, signals=0,
        history_signals=0, journal_full=0,
        execution=SimpleNamespace(st=SimpleNamespace(trades={}), on_signal=on_signal),
        pub=SimpleNamespace(publish=lambda body, ns=None: seen.append("bus")),
        journal=SimpleNamespace(publish=lambda body, ns=None: seen.append("journal")))
    for name in ("publish_signal", "act_on", "journal_publish", "announcer"):
        setattr(b, name, types.MethodType(getattr(Brain, name), b))
    return b


@pytest.mark.parametrize(("replay", "enters", "want"), [
    (False, False, ["trader", "bus", "journal"]),
    (False, True, ["trader", "bus", "journal", "row"]),
    (True, False, ["bus", "journal", "trader"]),
    (True, True, ["bus", "journal", "trader"]),
], ids=["live-refused", "live-entry", "replay-refused", "replay-entry"])
def test_live_acts_before_publishing_and_replay_keeps_the_captures_order(replay: bool, enters: bool,
                                                                         want: list[str]):
    """Live, the trader acts first and the signal is published once: by the shell right after
    its entry left (before the entry's journal row), or by the brain after the trader's answer.
    Replay publishes first and hands the trader no announcement."""
    seen: list[str] = []
    b = fake_brain(replay, seen, enters)
    Brain.analyse(b, CANDLE, 1)
    assert seen == want and b.signals == 1
    Brain.analyse(b, CANDLE, 2)  # the same candle again: analysed once
    assert seen == want and b.signals == 1


def _closed_rows():
    import numpy as np

    rows = np.zeros(3, dtype=[(n, "i8") for n in ("symbol_id", "interval_ms", "open_ms", "close_ms", "trades")]
                    + [(n, "f8") for n in ("open", "high", "low", "close", "volume", "quote_volume", "buy_volume")])
    rows["symbol_id"] = [0, 1, 1]
    rows["interval_ms"] = [60_000, 60_000, 900_000]
    rows["close_ms"] = 60_000
    rows["open"] = rows["high"] = rows["low"] = rows["close"] = 100.0
    return rows


def _emitting_brain(monkeypatch, replay: bool, seen: list[str], lag=lambda: 0, execution=None):
    """A brain with just what ``emit_candles`` and ``analyse_closes`` use; its batch closed two
    1m candles (BTCUSDT, ETHUSDT) and one 15m candle (ETHUSDT)."""
    import collections

    from services.brain import app as brain_app

    rows = _closed_rows()
    reset: list[int] = []
    monkeypatch.setattr(brain_app.candles, "closed", lambda st: rows)
    monkeypatch.setattr(brain_app.candles, "reset_output", lambda st: reset.append(1))

    def analyse(body, ns):
        trig = f" @{execution.ttt.trigger_ns}" if execution is not None else ""
        seen.append(f"analyse {body.symbol}{trig}")

    b = SimpleNamespace(replay=replay, core=SimpleNamespace(candles=None), candles_closed=0, journal_full=0,
                        cfg=SimpleNamespace(brain=SimpleNamespace(candle_interval_s=60)),
                        name=lambda sid: ("BTCUSDT", "ETHUSDT")[sid], analyse=analyse,
                        closes=collections.deque(), analysis_yields=0, execution=execution,
                        reader=SimpleNamespace(lag=lag), reset=reset, rows=rows,
                        pub=SimpleNamespace(publish=lambda body, ns=None: seen.append(f"bus {body.symbol}")),
                        journal=SimpleNamespace(publish=lambda body, ns=None: seen.append(f"journal {body.symbol}")))
    for name in ("journal_publish", "publish_candle", "analyse_closes"):
        setattr(b, name, types.MethodType(getattr(Brain, name), b))
    return b


@pytest.mark.parametrize(("replay", "want"), [
    (False, ["analyse BTCUSDT", "analyse ETHUSDT", "bus BTCUSDT", "journal BTCUSDT", "bus ETHUSDT", "journal ETHUSDT",
             "bus ETHUSDT", "journal ETHUSDT"]),
    (True, ["bus BTCUSDT", "journal BTCUSDT", "analyse BTCUSDT", "bus ETHUSDT", "journal ETHUSDT", "analyse ETHUSDT",
            "bus ETHUSDT", "journal ETHUSDT"]),
], ids=["live", "replay"])
def test_closed_candles_live_analysed_before_their_bus_sends(monkeypatch, replay: bool, want: list[str]):
    """Live, every base candle the batch closed is analysed before any candle is published
    (an entry decided on a close leaves first); replay publishes each, then analyses it. A
    higher-timeframe candle (the last one) is published, not analysed."""
    seen: list[str] = []
    b = _emitting_brain(monkeypatch, replay, seen)
    Brain.emit_candles(b)
    if not replay:  # queued: Brain.poll analyses them next
        assert seen == [] and len(b.closes) == 3
        Brain.analyse_closes(b)
    assert seen == want and b.candles_closed == 3 and b.reset == [1]
    assert not b.closes and b.analysis_yields == 0


def test_live_analysis_of_a_close_stops_for_waiting_ticks_and_goes_on_at_the_next_call(monkeypatch):
    """Live, with ticks waiting in the ring, one candle is analysed and published per call (at
    least one, so a busy ring never starves the analysis), in order, each with the tick-to-trade
    trigger of the batch that closed it; the rest waits in ``closes``."""
    seen: list[str] = []
    ex = SimpleNamespace(ttt=SimpleNamespace(trigger_ns=777))
    b = _emitting_brain(monkeypatch, False, seen, lag=lambda: 5, execution=ex)
    Brain.emit_candles(b)
    b.rows["symbol_id"] = 0  # the core reuses its output buffer at the next close: the queue kept a copy
    ex.ttt.trigger_ns = 0  # as Brain.poll resets it after emit_candles
    Brain.analyse_closes(b)
    assert seen == ["analyse BTCUSDT @777", "bus BTCUSDT", "journal BTCUSDT"]
    assert [(b.name(int(rows[i]["symbol_id"])), int(rows[i]["interval_ms"])) for rows, i, _ in b.closes] == [
        ("ETHUSDT", 60_000), ("ETHUSDT", 900_000)] and b.analysis_yields == 1
    assert ex.ttt.trigger_ns == 0  # set for each analysis only
    seen.clear()
    Brain.analyse_closes(b)
    assert seen == ["analyse ETHUSDT @777", "bus ETHUSDT", "journal ETHUSDT"] and b.analysis_yields == 2
    seen.clear()
    Brain.analyse_closes(b)  # the 15m candle: published, not analysed; nothing left
    assert seen == ["bus ETHUSDT", "journal ETHUSDT"] and not b.closes
    assert b.candles_closed == 3 and b.analysis_yields == 2


def test_live_conflated_ticks_stop_for_waiting_ticks_and_the_rest_goes_out_next_time(monkeypatch):
    """Live, ``publish_ticks`` publishes a drain's symbols until ticks wait in the ring (at
    least one), keeping the rest in ``ticks_pending`` for the next call, which publishes them
    with their values read then; replay, and ``whole`` at the stop, publish everything."""
    import collections

    import numpy as np

    from services.brain import app as brain_app

    drains = [np.array([3, 1, 2]), np.array([5])]
    values = {1: 10.0, 2: 20.0, 3: 30.0, 5: 50.0}
    monkeypatch.setattr(brain_app.conflate, "drain_dirty", lambda st: drains.pop(0) if drains else np.array([], int))
    monkeypatch.setattr(brain_app.conflate, "tick_fields", lambda st, sid: {"price": values[sid]})
    sent: list[tuple[str, float]] = []

    class Tick:
        def __init__(self, symbol, price):
            sent.append((symbol, price))

    monkeypatch.setattr(brain_app.wire, "TickUpdate", Tick)
    lag = [1]
    b = SimpleNamespace(replay=False, core=SimpleNamespace(conflate=None), ticks_pending=collections.deque(),
                        tick_updates=0, name=lambda sid: f"S{sid}", reader=SimpleNamespace(lag=lambda: lag[0]),
                        pub=SimpleNamespace(publish=lambda body, ns=None: None))
    Brain.publish_ticks(b)
    assert sent == [("S3", 30.0)] and list(b.ticks_pending) == [1, 2]
    values[1] = 11.0  # a newer tick of S1 before the rest goes out: its latest value is sent
    lag[0] = 0
    Brain.publish_ticks(b)
    assert sent == [("S3", 30.0), ("S1", 11.0), ("S2", 20.0)] and not b.ticks_pending
    Brain.publish_ticks(b, whole=True)  # at the stop: a new drain, all of it, and what is dirty after
    assert sent[3:] == [("S5", 50.0)] and b.tick_updates == 4
    sent.clear()
    drains[:] = [np.array([1, 2, 3])]
    b.replay, lag[0] = True, 1
    Brain.publish_ticks(b)  # replay: never cut short
    assert [s for s, _ in sent] == ["S1", "S2", "S3"] and not b.ticks_pending
