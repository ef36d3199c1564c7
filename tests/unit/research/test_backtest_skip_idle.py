"""Idle skipping (``BacktestConfig(skip_idle=True)``, the default) changes no decision: on the
repository's real BTCUSDT December 2024 1m bars the SMC, Donchian and EMA-cross strategies
write byte-identical ``trades.csv`` and ``summary.json`` with skipping on and off, also with a
kill switch tight enough to trip while a trade is open."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common.config import AegisConfig
from research.backtest import Backtest, BacktestConfig
from research.backtest_files import run_backtest

DEC1_MS = 1_733_011_200_000  # 2024-12-01 00:00 UTC
DAY_MS = 86_400_000


def _trading(**kw) -> AegisConfig:
    base = AegisConfig()
    return replace(base, trading=replace(base.trading, **kw))


NO_COSTS = _trading(paper_slippage_bps=0.0, taker_fee_rate=0.0, maker_fee_rate=0.0, cooldown_s=0.0)
# the kill switch on the daily loss (tripped at a closed trade), on the drawdown of the
# equity marked to each close (tripped while a trade is open)
TIGHT_LOSS = _trading(cooldown_s=0.0, daily_loss_limit_usdt=15.0)
TIGHT_DRAWDOWN = _trading(cooldown_s=0.0, daily_loss_limit_usdt=1e9, max_drawdown_pct=0.2)

CASES = {
    "smc_week": ("smc", 7, AegisConfig()),
    "donchian_month": ("donchian", 29, AegisConfig()),
    "ema_cross_month": ("ema_cross", 29, AegisConfig()),
    "ema_cross_no_costs": ("ema_cross", 29, NO_COSTS),
    "ema_cross_tight_daily_loss": ("ema_cross", 7, TIGHT_LOSS),
    "donchian_tight_drawdown": ("donchian", 7, TIGHT_DRAWDOWN),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_skipping_idle_bars_gives_byte_identical_output(catalog, tmp_path, case):
    """The same trades.csv and summary.json, byte for byte, with skip_idle on and off."""
    strategy, days, aegis = CASES[case]
    out = {}
    for skip in (True, False):
        cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + days * DAY_MS,
                             strategy=strategy, aegis=aegis, skip_idle=skip)
        run_backtest(cfg, tmp_path / str(skip))
        out[skip] = [(tmp_path / str(skip) / name).read_bytes() for name in ("trades.csv", "summary.json")]
    assert out[True] == out[False]
    assert len(out[True][0].splitlines()) > 1  # trades were made


def test_skipping_skips_and_the_kill_switch_still_trips(catalog):
    """Donchian over a week with a tight drawdown limit: exactly this many polls skipped, and the
    switch trips as in the unskipped run (the same reason, time and trader's counters)."""
    runs = {}
    for skip in (True, False):
        cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + 7 * DAY_MS,
                             strategy="donchian", aegis=TIGHT_DRAWDOWN, skip_idle=skip)
        bt = Backtest(cfg)
        s = bt.run()
        risk = bt.ex.st.risk
        runs[skip] = (bt.polls_skipped, risk.halted, risk.halt_reason, risk.halted_at_ms, s["trader_counters"])
    assert (runs[True][0], runs[False][0]) == (440, 0)
    assert runs[True][1:] == runs[False][1:]


def test_the_cli_flag_turns_skipping_off_with_the_same_output(catalog, tmp_path):
    """``aegis backtest --no-skip-idle`` writes the same trades.csv and summary.json as the default."""
    from research import backtest_cli

    base = ["--catalog", str(catalog), "--symbols", "BTCUSDT", "--from", "2024-12-01", "--to", "2024-12-02",
            "--strategy", "donchian"]
    assert backtest_cli.main([*base, "--out", str(tmp_path / "on")]) == 0
    assert backtest_cli.main([*base, "--out", str(tmp_path / "off"), "--no-skip-idle"]) == 0
    for name in ("trades.csv", "summary.json"):
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes()
