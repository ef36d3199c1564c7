"""The backtest against a plain Python loop: the EMA(10)/EMA(30) cross example strategy
(``research/strategies/ema_cross.py``) through ``aegis backtest`` (the live execution shell,
risk checks, paper broker) makes exactly the round trips of the same rule written as a plain
loop over the closes (``ema_cross_reference``), on five days of the repository's real BTCUSDT
1m bars, with the same PnL: fees and slippage off, each fill at the bar's close (a buy at the
synthetic book's ask, one tick of 0.00000001 above it)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from common.config import AegisConfig
from common.errors import ConfigError
from research.backtest import Backtest, BacktestConfig
from research.catalog import iter_bars
from research.strategies.ema_cross import EmaCross, ema_cross_reference

DEC1_MS = 1_733_011_200_000  # 2024-12-01 00:00 UTC
DAY_MS = 86_400_000
MINUTE_MS = 60_000
TICK = Decimal("0.00000001")  # venue.filters.generic_filters


def test_backtest_equals_the_plain_loop_trade_for_trade(catalog):
    """Five days: 127 round trips, each with the loop's entry and exit bar and prices (the entry
    one tick above the close), and each trade's PnL = quantity x (exit - entry)."""
    end = DEC1_MS + 5 * DAY_MS
    base = AegisConfig()
    aegis = replace(base, trading=replace(base.trading, paper_slippage_bps=0.0, taker_fee_rate=0.0,
                                          maker_fee_rate=0.0, cooldown_s=0.0))
    bt = Backtest(BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=end,
                                 strategy="ema_cross", aegis=aegis))
    summary = bt.run()
    times, closes = [], []
    for b in iter_bars(catalog, "klines_1m", ["BTCUSDT"], DEC1_MS, end, columns=["open_time", "close"]):
        times += b.column("open_time").to_pylist()
        closes += b.column("close").to_pylist()
    ref = ema_cross_reference(times, closes)
    assert len(ref) == 127 and summary["trades"] == 127 and summary["exit_reasons"] == {"CROSS": 127}
    # the trader stamps a fill at the bar's close time: open + 1 minute
    got = [(t["opened_ms"] - MINUTE_MS, t["entry_price"], t["closed_ms"] - MINUTE_MS, t["exit_price"])
           for t in bt.trades]
    assert got == [(a, float(Decimal(repr(x)) + TICK), c, y) for a, x, c, y in ref]
    for t in bt.trades:
        assert t["pnl"] == pytest.approx(t["qty"] * (t["exit_price"] - t["entry_price"]), rel=1e-12, abs=1e-12)
    assert summary["fees"] == 0.0 and summary["net_pnl"] == summary["pnl"]


def test_ema_cross_refuses_bad_parameters():
    """fast must be shorter than slow; the stop must be within (0, 100) % below the entry."""
    with pytest.raises(ConfigError, match="shorter"):
        EmaCross(fast=30, slow=10)
    with pytest.raises(ConfigError, match="stop_pct"):
        EmaCross(stop_pct=100.0)
