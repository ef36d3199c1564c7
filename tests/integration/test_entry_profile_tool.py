"""``python -m bench.entry_profile``: the in-process replay of the tick-to-trade bench's entry
decides exactly one entry per timed candle, through every probed step of the real path."""

from __future__ import annotations

from bench import entry_profile


def test_every_timed_candle_makes_one_entry_through_the_real_path():
    """Each timed candle close runs the analysis, the trader, the intent record and the
    dispatcher's submit once (the probe counts per entry), and the used ids carry over."""
    res = entry_profile.run(iterations=4, candles="bench", profile_n=0, warm=3, used_ids=5)
    per = {label.strip(): calls for label, calls, _ in res["steps"]}
    for step in ("analyse", "runner.on_candle", "runner.signal", "execution.on_signal", "trader.on_signal",
                 "enter_trade", "_check_entry", "risk.check_order", "order_from_request", "intents.append",
                 "trader.on_order_event", "dispatcher.submit"):
        assert per[step] == 1.0, step
    assert per["poll (whole entry decision)"] == 5.0  # four ticks inside the minute, then the closing one
    assert res["used_ids"] == 5 and res["iterations"] == 4
    assert {"p50", "mean", "p90", "min"} <= set(res["whole_us"]) <= set(res["whole_wall_us"])
