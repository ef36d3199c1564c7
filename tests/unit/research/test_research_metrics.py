"""research.metrics: every report number on small hand-made inputs, with the values worked
out by hand in the comments (no value here was copied from the function's own output)."""

from __future__ import annotations

import math

import pytest

from research import metrics as m

DAY = 86_400_000


def test_equity_drawdown_and_max_drawdown_by_hand():
    """Start 100, net PnL +10, -22, +5, -3: equity 110, 88, 93, 90; the peak 110 falls to 88,
    a drawdown of 22 = 20 % of the peak."""
    curve = m.equity_curve(100.0, [(1, 10.0), (2, -22.0), (3, 5.0), (4, -3.0)])
    assert curve == [(1, 110.0), (2, 88.0), (3, 93.0), (4, 90.0)]
    assert m.drawdowns(100.0, curve) == [(1, 0.0, 0.0), (2, 22.0, 20.0), (3, 17.0, 17 / 110 * 100),
                                         (4, 20.0, 20 / 110 * 100)]
    assert m.max_drawdown(100.0, curve) == (22.0, 20.0)
    assert m.max_drawdown(100.0, []) == (0.0, 0.0)


def test_daily_returns_carry_equity_over_days_without_trades():
    """Day 0 ends at 88 (-12 %), day 1 has no trade (0), day 2 ends at 99 (+12.5 % of 88)."""
    curve = [(1 * 3_600_000, 110.0), (5 * 3_600_000, 88.0), (2 * DAY + 3_600_000, 99.0)]
    assert m.daily_returns(100.0, curve, 0, 3 * DAY) == pytest.approx([-0.12, 0.0, 0.125], rel=1e-12)


def test_sharpe_and_sortino_by_hand():
    """Returns 1 %, -1 %, 2 %: mean 1/150, sample variance 7/30000, downside variance
    (0.01^2)/3; both annualised with sqrt(365)."""
    r = [0.01, -0.01, 0.02]
    assert m.sharpe(r) == pytest.approx((1 / 150) / math.sqrt(7 / 30_000) * math.sqrt(365), rel=1e-12)
    assert m.sortino(r) == pytest.approx((1 / 150) / math.sqrt(1 / 30_000) * math.sqrt(365), rel=1e-12)
    assert m.sharpe([0.01]) is None and m.sharpe([0.01, 0.01]) is None  # one point; no spread
    assert m.sortino([0.01, 0.02]) is None  # no losing day: undefined, not infinite


def test_calmar_by_hand():
    """100 -> 121 over 730 days is 10 % a year; with a 10 % drawdown Calmar is 1."""
    assert m.calmar(100.0, 121.0, 730, 10.0) == pytest.approx(1.0, rel=1e-12)
    assert m.calmar(100.0, 121.0, 730, 0.0) is None


def test_bootstrap_interval_is_a_pure_function_of_its_seed():
    """Two outcomes -1 R and +2 R: resample means are -1, 0.5 or 2 with chances 1/4, 1/2, 1/4,
    so among 2,000 resamples the 2.5 % and 97.5 % order statistics are -1 and 2; a constant
    sample has a zero-width interval; one sample has none; the same seed gives the same draw."""
    ci = m.bootstrap_mean([-1.0, 2.0], seed=7)
    assert (ci.mean, ci.low, ci.high, ci.n, ci.resamples) == (0.5, -1.0, 2.0, 2, 2000)
    flat = m.bootstrap_mean([0.5] * 5)
    assert (flat.mean, flat.low, flat.high) == (0.5, 0.5, 0.5)
    one = m.bootstrap_mean([1.5])
    assert (one.mean, one.low, one.high) == (1.5, None, None)
    assert m.bootstrap_mean([]).mean is None
    xs = [0.3, -1.0, 2.1, -1.0, 1.7, -0.4]
    assert m.bootstrap_mean(xs, seed=3) == m.bootstrap_mean(xs, seed=3)
    a = m.bootstrap_mean(xs, seed=3)
    assert a.low < a.mean < a.high


def test_brier_against_the_base_rate_by_hand():
    """Forecasts 0.8, 0.3, 0.5 for outcomes win, loss, win: (0.04 + 0.09 + 0.25) / 3; the base
    rate 2/3 scores 2/3 * 1/3 = 2/9."""
    assert m.brier([0.8, 0.3, 0.5], [1, 0, 1]) == pytest.approx(0.38 / 3, rel=1e-12)
    assert m.brier_base_rate([1, 0, 1]) == pytest.approx(2 / 9, rel=1e-12)
    assert m.brier([], []) is None and m.brier_base_rate([]) is None


def test_reliability_bins_by_hand():
    """Five bins of 0.2: 0.1 and 0.15 in the first (mean 0.125, one win of two), 0.5 and 0.55
    in the third, 1.0 in the last (closed on the right)."""
    bins = m.reliability([0.1, 0.15, 0.5, 0.55, 1.0], [0, 1, 1, 0, 1], bins=5)
    got = [(b.n, b.mean_forecast, b.win_rate) for b in bins]
    assert got[0] == (2, pytest.approx(0.125), 0.5)
    assert got[1] == (0, None, None) and got[3] == (0, None, None)
    assert got[2] == (2, pytest.approx(0.525), 0.5)
    assert got[4] == (1, 1.0, 1.0)
    assert [(b.low, b.high) for b in bins][4] == (0.8, 1.0)


def test_profit_factor_by_hand():
    """Gross +15 against gross -15 is 1; without a loss it is undefined."""
    assert m.profit_factor([10.0, -5.0, 5.0, -10.0]) == 1.0
    assert m.profit_factor([1.0, 2.0]) is None


def _trade(tid: str, sym: str, closed: int, net: float, r: float, conf: float, reason: str) -> dict:
    # entry 100, stop 95, qty 2: the planned risk is 10 USDT
    return {"trade_id": tid, "symbol": sym, "closed_ms": closed, "pnl": net + 1.0, "fees": 1.0, "funding": 0.0,
            "net_pnl": net, "outcome_r": r, "confidence": conf, "exit_reason": reason, "entry_price": 100.0,
            "stop": 95.0, "qty": 2.0}


def test_trade_stats_and_the_total_order_of_trades():
    """Two trades (+20 at 2 R, -10 at -1 R, risk 10 USDT each) on a 1,000 account over two days: sums, win rate,
    exits, Brier of forecasts 0.6 / 0.4; ties on close time are ordered by symbol then id."""
    trades = [_trade("B-1", "BBB", DAY + 5, -10.0, -1.0, 0.4, "STOP"), _trade("A-1", "AAA", 5, 20.0, 2.0, 0.6, "TARGET")]
    s = m.trade_stats(m.sort_trades(trades), start_equity=1000.0, start_ms=0, end_ms=2 * DAY)
    assert (s["trades"], s["wins"], s["win_rate"]) == (2, 1, 0.5)
    assert (s["pnl"], s["fees"], s["net_pnl"], s["end_equity"]) == (12.0, 2.0, 10.0, 1010.0)
    assert s["max_drawdown"] == 10.0 and s["max_drawdown_pct"] == pytest.approx(10 / 1020 * 100)
    assert s["expectancy_r"] == 0.5 and s["exit_reasons"] == {"STOP": 1, "TARGET": 1}
    # net R: +20 / 10 = 2 and -10 / 10 = -1 on a planned risk of |100 - 95| * 2 = 10 USDT
    assert s["expectancy_net_r"] == 0.5 and m.net_r(trades[0]) == -1.0 and m.net_r(trades[1]) == 2.0
    assert s["brier"] == pytest.approx((0.4 ** 2 + 0.4 ** 2) / 2) and s["brier_base_rate"] == 0.25
    tie = [_trade("Z", "BBB", 9, 1.0, 1.0, 0.5, "X"), _trade("Y", "AAA", 9, 1.0, 1.0, 0.5, "X"),
           _trade("X", "AAA", 9, 1.0, 1.0, 0.5, "X")]
    assert [t["trade_id"] for t in m.sort_trades(tie)] == ["X", "Y", "Z"]
