"""The backtest's look-ahead check: run on a prefix of the data, it makes exactly the
decisions the run on the whole data made up to the prefix's end (the same signals, field for
field, and the same trades closed before it). A decision that used a later bar would differ.
On the repository's real BTCUSDT December 2024 1m bars, for the SMC strategy and the Donchian
example, at cuts that fall on a day, mid-day and on an odd minute."""

from __future__ import annotations

from pathlib import Path

import pytest

from research.backtest import Backtest, BacktestConfig

DEC1_MS = 1_733_011_200_000  # 2024-12-01 00:00 UTC
DAY_MS = 86_400_000
MINUTE_MS = 60_000


def run(catalog: Path, strategy: str, end_ms: int) -> Backtest:
    bt = Backtest(BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=end_ms,
                                 strategy=strategy), keep_signals=True)
    bt.run()
    return bt


def bar_open_ms(signal_id: str) -> int:
    return int(signal_id.split("-")[1])  # "<symbol>-<candle open ms>-<side>"


@pytest.mark.parametrize(("strategy", "days", "signals_at_least"), [("smc", 3, 100), ("donchian", 5, 15)])
def test_a_prefix_makes_the_full_runs_decisions_up_to_its_end(catalog, strategy, days, signals_at_least):
    """For each cut, the prefix run's signals are the full run's signals of the bars before the
    cut (every field), and its trades closed before the cut are the full run's."""
    full = run(catalog, strategy, DEC1_MS + days * DAY_MS)
    assert len(full.signals) >= signals_at_least and len(full.trades) >= 5
    cuts = (DEC1_MS + DAY_MS, DEC1_MS + days * DAY_MS // 2 + 37 * MINUTE_MS, DEC1_MS + (days - 1) * DAY_MS + 613 * MINUTE_MS)
    for cut in cuts:
        part = run(catalog, strategy, cut)
        want = [s for s in full.signals if bar_open_ms(s.signal_id) < cut]
        assert part.signals == want, f"cut {cut}: signals differ"
        assert 0 < len(want) < len(full.signals)
        closed_before = [t for t in full.trades if t["closed_ms"] < cut]
        assert [t for t in part.trades if t["closed_ms"] < cut] == closed_before, f"cut {cut}: trades differ"
