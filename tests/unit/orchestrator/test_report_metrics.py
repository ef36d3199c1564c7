"""Report metrics: hand-computed values for a three-trade run, and every edge that gives None.

The three-trade run (start equity 10,000 USDT, T0 = 2023-11-14 22:13:20 UTC, H = one hour):

    trade  opened   closed  pnl    fees   net      R    equity before -> after   return
    A      T0       T0+1H   210    10     +200     +2   10,000 -> 10,200         +0.02
    B      T0+0.5H  T0+2H   -97    5      -102     -1   10,200 -> 10,098         -0.01
    C      T0+3H    T0+4H   105    4.02   +100.98  +1   10,098 -> 10,198.98      +0.01

Span 4 H; positions open during [0, 2H] and [3H, 4H] = 3 H, so exposure 0.75. Returns in
units of 1/300: 6, -3, 3; mean 2; deviations 4, -5, 1; sample variance 42/2 = 21, so
mean/stdev = 2/sqrt(21). Downside deviation sqrt(3**2 / 3) = sqrt(3), so mean/downside =
2/sqrt(3). Trades per year = 3 trades / 4 h * 8760 h = 6570.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, replace

import pytest

from common.errors import ConfigError
from services.orchestrator import report_metrics

T0 = 1_700_000_000_000
H = 3_600_000
CFG = report_metrics.ReportConfig(start_equity_usdt=10_000.0)


def trade(tid, opened, closed, pnl, fees=0.0, r=0.0, symbol="BTCUSDT"):
    return report_metrics.Trade(trade_id=tid, symbol=symbol, side="BUY", qty=1.0, entry_price=100.0,
                        exit_price=101.0, stop=99.0, target=102.0, opened_ms=opened,
                        closed_ms=closed, pnl=pnl, fees=fees, outcome_r=r, exit_reason="TARGET",
                        confidence=0.5, learned=True)


A = trade("a", T0, T0 + H, 210.0, 10.0, 2.0)
B = trade("b", T0 + H // 2, T0 + 2 * H, -97.0, 5.0, -1.0, symbol="ETHUSDT")
C = trade("c", T0 + 3 * H, T0 + 4 * H, 105.0, 4.02, 1.0, symbol="SOLUSDT")
RUN = [A, B, C]


class TestThreeTradeRun:
    def test_counts_and_pnl(self):
        """Two winners, one loser; gross 218, fees 19.02, net 198.98 = +1.9898 %."""
        m = report_metrics.metrics(RUN, CFG)
        assert (m.trades, m.wins, m.losses) == (3, 2, 1)
        assert m.win_rate == 2 / 3
        assert m.gross_pnl_usdt == 218.0
        assert m.trade_fees_usdt == 19.02
        assert m.net_pnl_usdt == pytest.approx(198.98, abs=1e-12)
        assert m.return_pct == pytest.approx(1.9898, abs=1e-12)
        assert m.final_equity_usdt == pytest.approx(10_198.98, abs=1e-9)

    def test_profit_factor_r_expectancy_and_holding(self):
        """PF = 300.98 / 102; R mean 2/3, median 1; 66.3267 USDT a trade; held 4200 s."""
        m = report_metrics.metrics(RUN, CFG)
        assert m.profit_factor == pytest.approx(300.98 / 102, rel=1e-15)
        assert m.avg_r == 2 / 3
        assert m.median_r == 1.0
        assert m.expectancy_usdt == pytest.approx(198.98 / 3, rel=1e-15)
        assert m.avg_holding_s == 4200.0  # (3600 + 5400 + 3600) / 3

    def test_span_exposure_and_drawdown(self):
        """4 h covered, 3 h of it with a position; the worst fall is 102 from the 10,200 peak."""
        m = report_metrics.metrics(RUN, CFG)
        assert (m.first_open_ms, m.last_close_ms, m.span_s) == (T0, T0 + 4 * H, 14_400.0)
        assert m.exposure == 0.75
        assert m.max_drawdown_usdt == 102.0
        assert m.max_drawdown_pct == 1.0

    def test_sharpe_and_sortino_are_per_trade_and_annualised_by_the_run_pace(self):
        """Sharpe = 2/sqrt(21) * sqrt(6570); Sortino = 2/sqrt(3) * sqrt(6570)."""
        m = report_metrics.metrics(RUN, CFG)
        assert m.trades_per_year == 6570.0
        assert m.sharpe_annualised == pytest.approx(2 * math.sqrt(6570 / 21), rel=1e-12)
        assert m.sortino_annualised == pytest.approx(2 * math.sqrt(6570 / 3), rel=1e-12)

    def test_input_order_does_not_matter(self):
        """The trades are put in closing order first: shuffled input, same metrics."""
        assert report_metrics.metrics([C, A, B], CFG) == report_metrics.metrics(RUN, CFG)

    def test_start_equity_scales_return_and_returns(self):
        """With 20,000 USDT the same trades are a +0.9949 % return."""
        m = report_metrics.metrics(RUN, report_metrics.ReportConfig(start_equity_usdt=20_000.0))
        assert m.return_pct == pytest.approx(0.9949, abs=1e-12)
        assert m.max_drawdown_usdt == 102.0
        assert m.max_drawdown_pct == pytest.approx(102 / 20_200 * 100, rel=1e-15)


class TestCurves:
    def test_equity_curve_starts_at_the_first_opening_and_steps_at_each_close(self):
        """One point for the start, one per closed trade."""
        curve = report_metrics.equity_curve(RUN, 10_000.0)
        assert [ms for ms, _ in curve] == [T0, T0 + H, T0 + 2 * H, T0 + 4 * H]
        assert [e for _, e in curve] == pytest.approx([10_000.0, 10_200.0, 10_098.0, 10_198.98],
                                                      abs=1e-9)

    def test_drawdown_curve_measures_from_the_running_peak(self):
        """0 at the start and at the new high, 102 USDT = 1 % after B, 1.02 USDT after C."""
        dd = report_metrics.drawdown_curve(RUN, 10_000.0)
        assert [ms for ms, _, _ in dd] == [T0, T0 + H, T0 + 2 * H, T0 + 4 * H]
        assert [usdt for _, usdt, _ in dd] == pytest.approx([0.0, 0.0, 102.0, 1.02], abs=1e-9)
        assert [pct for _, _, pct in dd] == pytest.approx([0.0, 0.0, 1.0, 0.01], abs=1e-12)

    def test_a_loss_from_the_start_is_a_drawdown_from_the_starting_equity(self):
        """The starting equity is the first peak: losing 500 of 10,000 is a 5 % drawdown."""
        m = report_metrics.metrics([trade("x", T0, T0 + H, -500.0)], CFG)
        assert (m.max_drawdown_usdt, m.max_drawdown_pct) == (500.0, 5.0)

    def test_no_trades_gives_empty_curves(self):
        """Nothing closed: no point to draw (the plot draws a flat line itself)."""
        assert report_metrics.equity_curve([], 10_000.0) == []
        assert report_metrics.drawdown_curve([], 10_000.0) == []


class TestExposure:
    def test_overlapping_positions_count_once(self):
        """[0, 10] and [5, 20] overlap: 20 ms with a position, not 25."""
        assert report_metrics.exposure_ms([trade("a", 0, 10, 1.0), trade("b", 5, 20, 1.0)]) == 20

    def test_nested_and_touching_intervals(self):
        """[0, 100] holds [10, 20]; [100, 150] touches it; [200, 210] is apart: 160 ms."""
        ts = [trade("a", 0, 100, 1.0), trade("b", 10, 20, 1.0), trade("c", 100, 150, 1.0),
              trade("d", 200, 210, 1.0)]
        assert report_metrics.exposure_ms(ts) == 160

    def test_exposure_is_a_fraction_of_the_span(self):
        """160 ms of 210 ms."""
        ts = [trade("a", 0, 100, 1.0), trade("c", 100, 150, 1.0), trade("d", 200, 210, 1.0)]
        assert report_metrics.metrics(ts, CFG).exposure == 160 / 210


class TestNotComputable:
    def test_no_trades(self):
        """Zero trades: counts and sums are 0, every ratio is None, equity unchanged."""
        m = report_metrics.metrics([], CFG)
        assert asdict(m) == {
            "start_equity_usdt": 10_000.0, "final_equity_usdt": 10_000.0, "trades": 0,
            "wins": 0, "losses": 0, "win_rate": None, "gross_pnl_usdt": 0.0, "trade_fees_usdt": 0.0,
            "funding_usdt": 0.0, "net_pnl_usdt": 0.0, "return_pct": 0.0, "profit_factor": None, "avg_r": None,
            "median_r": None, "expectancy_usdt": None, "avg_holding_s": None,
            "first_open_ms": None, "last_close_ms": None, "span_s": None, "exposure": None,
            "max_drawdown_usdt": 0.0, "max_drawdown_pct": 0.0, "trades_per_year": None,
            "sharpe_annualised": None, "sortino_annualised": None,
            "avg_slippage_bps": None, "worst_slippage_bps": None,
        }

    def test_one_trade_has_no_ratios(self):
        """A single return has no deviation: Sharpe and Sortino are None."""
        m = report_metrics.metrics([A], CFG)
        assert (m.trades_per_year, m.sharpe_annualised, m.sortino_annualised) == (
            365 * 24.0, None, None)

    def test_no_loser_means_no_profit_factor_and_no_sortino(self):
        """All winners: profit factor None (not inf), Sortino None, JSON stays strict; Sharpe is
        the mean over the sample deviation of the returns 100/10000 and 50/10100, annualised."""
        ts = [trade("a", T0, T0 + H, 100.0), trade("b", T0 + H, T0 + 2 * H, 50.0)]
        m = report_metrics.metrics(ts, CFG)
        assert (m.profit_factor, m.sortino_annualised) == (None, None)
        returns = [100 / 10_000, 50 / 10_100]
        assert m.sharpe_annualised == pytest.approx(
            statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365 * 24.0), rel=1e-12)
        json.dumps(asdict(m), allow_nan=False)

    def test_identical_returns_have_zero_deviation(self):
        """+1 % then +1 % (100 on 10,000, 101 on 10,100): stdev exactly 0, Sharpe None."""
        ts = [trade("a", T0, T0 + H, 100.0), trade("b", T0 + H, T0 + 2 * H, 101.0)]
        assert report_metrics.trade_returns(ts, 10_000.0) == [0.01, 0.01]
        assert report_metrics.metrics(ts, CFG).sharpe_annualised is None

    def test_trades_closing_at_one_instant_have_no_span(self):
        """Opened and closed in the same millisecond: no span, no exposure, no pace."""
        ts = [trade("a", T0, T0, 10.0), trade("b", T0, T0, -5.0)]
        m = report_metrics.metrics(ts, CFG)
        assert (m.span_s, m.exposure, m.trades_per_year, m.sharpe_annualised) == (
            0.0, None, None, None)

    def test_breakeven_trade_is_neither_win_nor_loss(self):
        """Net exactly 0 (pnl equals fees) counts in trades only."""
        m = report_metrics.metrics([trade("a", T0, T0 + H, 4.0, 4.0)], CFG)
        assert (m.trades, m.wins, m.losses, m.win_rate) == (1, 0, 0, 0.0)

    def test_returns_stop_meaning_anything_once_equity_is_gone(self):
        """Equity at or below 0 before a trade: no returns, so no Sharpe."""
        ts = [trade("a", T0, T0 + H, -10_000.0), trade("b", T0 + H, T0 + 2 * H, 5.0),
              trade("c", T0 + 2 * H, T0 + 3 * H, 1.0)]
        assert report_metrics.trade_returns(ts, 10_000.0) is None
        assert report_metrics.metrics(ts, CFG).sharpe_annualised is None


class TestConfig:
    @pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
    def test_start_equity_must_be_positive_and_finite(self, bad):
        """A report against no money (or infinite money) is refused."""
        with pytest.raises(ConfigError, match="start_equity_usdt"):
            report_metrics.ReportConfig(start_equity_usdt=bad)

    def test_default_start_equity_is_ten_thousand(self):
        assert report_metrics.ReportConfig().start_equity_usdt == 10_000.0


class TestTrade:
    def test_net_pnl_and_holding_time(self):
        """Net = pnl - fees; holding time in seconds from the millisecond stamps."""
        t = replace(A, opened_ms=1_000, closed_ms=91_500)
        assert (t.net_pnl, t.holding_s) == (200.0, 90.5)

    def test_utc_text_keeps_milliseconds_exact(self):
        """No float rounding of the milliseconds."""
        assert report_metrics.utc_text(1_700_000_000_123) == "2023-11-14 22:13:20.123"
