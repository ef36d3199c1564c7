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
from services.brain.__main__ import Brain

CANDLE = wire.CandleClosed(symbol="BTCUSDT", interval_s=60, open_ms=0, close_ms=60_000, open=100.0, high=101.0,
                           low=99.0, close=100.5, volume=3.0)
SIG = wire.SignalGenerated(signal_id="s1", symbol="BTCUSDT", side="BUY", entry=100.5, stop=99.0, target=103.0,
                           confidence=0.6, cold=False, features={})


def fake_brain(replay: bool, seen: list[str]) -> SimpleNamespace:
    runner = SimpleNamespace(on_candle=lambda c, **_: [strategy_api.Enter(side="BUY", stop=99.0, target=103.0)],
                             on_timer=lambda *a, **_: [], signal=lambda c, it: SIG)
    b = SimpleNamespace(
        replay=replay, analysed_to={}, runner=runner, model_state=None, control=None, signals=0,
        history_signals=0, journal_full=0,
        execution=SimpleNamespace(st=SimpleNamespace(trades={}), on_signal=lambda s: seen.append("trader")),
        pub=SimpleNamespace(publish=lambda body, ns=None: seen.append("bus")),
        journal=SimpleNamespace(publish=lambda body, ns=None: seen.append("journal")))
    for name in ("publish_signal", "act_on", "journal_publish"):
        setattr(b, name, types.MethodType(getattr(Brain, name), b))
    return b


@pytest.mark.parametrize(("replay", "want"), [(False, ["trader", "bus", "journal"]),
                                              (True, ["bus", "journal", "trader"])], ids=["live", "replay"])
def test_live_acts_before_publishing_and_replay_keeps_the_captures_order(replay: bool, want: list[str]):
    seen: list[str] = []
    b = fake_brain(replay, seen)
    Brain.analyse(b, CANDLE, 1)
    assert seen == want and b.signals == 1
    Brain.analyse(b, CANDLE, 2)  # the same candle again: analysed once
    assert seen == want and b.signals == 1


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
    import numpy as np

    from services.brain import __main__ as brain_main

    rows = np.zeros(3, dtype=[(n, "i8") for n in ("symbol_id", "interval_ms", "open_ms", "close_ms", "trades")]
                    + [(n, "f8") for n in ("open", "high", "low", "close", "volume", "quote_volume", "buy_volume")])
    rows["symbol_id"] = [0, 1, 1]
    rows["interval_ms"] = [60_000, 60_000, 900_000]
    rows["close_ms"] = 60_000
    rows["open"] = rows["high"] = rows["low"] = rows["close"] = 100.0
    reset: list[int] = []
    monkeypatch.setattr(brain_main.candles, "closed", lambda st: rows)
    monkeypatch.setattr(brain_main.candles, "reset_output", lambda st: reset.append(1))
    seen: list[str] = []
    b = SimpleNamespace(replay=replay, core=SimpleNamespace(candles=None), candles_closed=0, journal_full=0,
                        cfg=SimpleNamespace(brain=SimpleNamespace(candle_interval_s=60)),
                        name=lambda sid: ("BTCUSDT", "ETHUSDT")[sid],
                        analyse=lambda body, ns: seen.append(f"analyse {body.symbol}"),
                        pub=SimpleNamespace(publish=lambda body, ns=None: seen.append(f"bus {body.symbol}")),
                        journal=SimpleNamespace(publish=lambda body, ns=None: seen.append(f"journal {body.symbol}")))
    b.journal_publish = types.MethodType(Brain.journal_publish, b)
    Brain.emit_candles(b)
    assert seen == want and b.candles_closed == 3 and reset == [1]
