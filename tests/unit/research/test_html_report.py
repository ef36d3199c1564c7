"""research.html_report: the HTML is self-contained (no script, no outside URL, plots inline) and a
run without a trade still renders, saying so instead of plotting nothing."""

from __future__ import annotations

from research import html_report, metrics

DAY = 86_400_000


def _trade(tid: str, closed: int, net: float, r: float, conf: float) -> dict:
    return {"trade_id": tid, "symbol": "BTCUSDT", "closed_ms": closed, "pnl": net, "fees": 0.0, "funding": 0.0,
            "net_pnl": net, "outcome_r": r, "confidence": conf, "exit_reason": "STOP" if r < 0 else "TARGET",
            "entry_price": 100.0, "stop": 99.0, "qty": 1.0}


def _summary(trades: list[dict]) -> dict:
    return {"strategy": "x", "params": {}, "symbols": ["BTCUSDT"], "from_ms": 0, "to_ms": 2 * DAY, "candles": 2880,
            "signals": len(trades), **metrics.trade_stats(trades, start_equity=100.0, start_ms=0, end_ms=2 * DAY)}


def test_a_report_with_trades_is_self_contained():
    """Two trades: the equity and reliability plots are inline PNGs; nothing is fetched."""
    trades = [_trade("a", 5, 2.0, 2.0, 0.6), _trade("b", DAY + 5, -1.0, -1.0, 0.3)]
    html = html_report.backtest_page(_summary(trades), trades)
    assert html.startswith("<!doctype html>") and html.count("src='data:image/png;base64,") == 2
    assert "http" not in html and "<script" not in html and "<link" not in html
    assert "expectancy_net_r_ci95" in html and "Calibration of the confidence model" in html


def test_a_report_without_trades_renders_and_says_so():
    """No trade: no plot, every ratio shown as '-', and the calibration says there is nothing."""
    html = html_report.backtest_page(_summary([]), [])
    assert "data:image/png" not in html
    assert "No closed trades: nothing to calibrate." in html
    assert "<td>-</td>" in html
