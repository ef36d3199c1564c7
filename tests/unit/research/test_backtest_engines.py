"""The fast engine (``research.fast_backtest``, the default) and the shell engine
(``research.backtest.Backtest``: the live execution shell with every message and answer) write
byte-identical ``trades.csv`` and ``summary.json`` on the repository's real BTCUSDT December
2024 1m bars: the EMA cross, the Donchian example and the SMC strategy, with and without fees,
with funding from the catalog, with kill switches that trip, with limit-IOC and market entries,
on two symbols sharing one account (rotation), with a strategy that asks for entries, stop
moves and exits all the time (most entries refused while a trade is open), and for random
strategy parameters and trading settings (hypothesis)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.config import AegisConfig
from research.backtest import Backtest, BacktestConfig, new_backtest
from research.backtest_files import run_backtest
from research.fast_backtest import FastBacktest
from research.strategy_api import Enter, Exit, MoveStop, Strategy

DEC1_MS = 1_733_011_200_000  # 2024-12-01 00:00 UTC
DAY_MS = 86_400_000
FUNDING_EVERY_MS = 8 * 3_600_000


def _trading(**kw) -> AegisConfig:
    base = AegisConfig()
    return replace(base, trading=replace(base.trading, **kw))


NO_COSTS = _trading(paper_slippage_bps=0.0, taker_fee_rate=0.0, maker_fee_rate=0.0, cooldown_s=0.0)
TIGHT_LOSS = _trading(cooldown_s=0.0, daily_loss_limit_usdt=15.0)
TIGHT_DRAWDOWN = _trading(cooldown_s=0.0, daily_loss_limit_usdt=1e9, max_drawdown_pct=0.2)
MARKET_ENTRIES = _trading(entry_order="market", cooldown_s=0.0, paper_slippage_bps=3.0)
ONE_SLOT = _trading(max_positions=1, cooldown_s=0.0)

BUSY = "tests.unit.research.test_backtest_engines:Busy"


class Busy(Strategy):
    """A strategy that asks for everything often: an entry every ``every`` candles whether
    flat or not (most refused: the symbol held, the cooldown), a stop moved towards the price
    and an exit now and then, confidences that vary."""

    name = "busy"
    history = 1
    reads_model = False

    def __init__(self, *, every: int = 3, exit_every: int = 17, move_every: int = 11) -> None:
        self.every, self.exit_every, self.move_every = every, exit_every, move_every

    def on_candle(self, ctx, candle) -> list:
        n = ctx.state["n"] = ctx.state.get("n", 0) + 1
        c, out = candle.close, []
        if n % self.every == 0:
            d = 1 if (n // self.every) % 2 else -1
            out.append(Enter(side="BUY" if d > 0 else "SELL", stop=c * (1 - d * 0.004), target=c * (1 + d * 0.006),
                             confidence=(n % 10) / 10, cold=False))
        pos = ctx.position
        if pos is not None and n % self.move_every == 0:
            d = 1 if pos.side == "BUY" else -1
            out.append(MoveStop(price=(pos.stop + c) / 2 if d * (c - pos.stop) > 0 else pos.stop))
        if pos is not None and n % self.exit_every == 0:
            out.append(Exit(reason="BUSY"))
        return out


CASES = {
    "ema_cross_month_no_costs": ("ema_cross", 29, NO_COSTS, {}),
    "ema_cross_month": ("ema_cross", 29, AegisConfig(), {}),
    "donchian_month": ("donchian", 29, AegisConfig(), {}),
    "donchian_atr_market_entries": ("donchian", 29, MARKET_ENTRIES, {"stop": "atr", "rr": 1.5}),
    "smc_week": ("smc", 7, AegisConfig(), {}),
    "ema_cross_tight_daily_loss": ("ema_cross", 7, TIGHT_LOSS, {}),
    "donchian_tight_drawdown": ("donchian", 7, TIGHT_DRAWDOWN, {}),
    "smc_week_tight_drawdown": ("smc", 7, TIGHT_DRAWDOWN, {}),
    "smc_two_weeks_market_entries": ("smc", 14, MARKET_ENTRIES, {}),
    "busy_week": (BUSY, 7, AegisConfig(), {}),
    "busy_week_no_cooldown_tight_loss": (BUSY, 7, TIGHT_LOSS, {"every": 2}),
}

STOPPED_EARLY = {"busy_week_no_cooldown_tight_loss", "smc_week_tight_drawdown"}


def _outputs(cfg: BacktestConfig, out: Path) -> dict[str, bytes]:
    """trades.csv and summary.json of one engine's run (report.html is made from them)."""
    run_backtest(cfg, out)
    return {name: (out / name).read_bytes() for name in ("trades.csv", "summary.json")}


def _both(cfg: BacktestConfig, tmp: Path) -> dict[str, dict[str, bytes]]:
    return {e: _outputs(replace(cfg, engine=e), tmp / e) for e in ("shell", "fast")}


@pytest.fixture(scope="module")
def funded_catalog(catalog, tmp_path_factory) -> Path:
    """The real bars plus a funding rate at every 8-hour settlement of December (alternating
    +0.01 % and -0.005 %: longs and shorts both pay and receive)."""
    from research.ingest import run_import

    from tests.unit.research.conftest import csv_text, write_zip

    root = tmp_path_factory.mktemp("funded")
    cat = Path(shutil.copytree(catalog, root / "cat"))
    lines = [f"{DEC1_MS + i * FUNDING_EVERY_MS},8,{'0.0001' if i % 2 == 0 else '-0.00005'}" for i in range(29 * 3)]
    z = write_zip(root / "BTCUSDT-fundingRate-2024-12.zip",
                  csv_text(lines, "calc_time,funding_interval_hours,last_funding_rate"))
    assert run_import(catalog=cat, path=z, kind="fundingRate", symbol="BTCUSDT").ok
    return cat


@pytest.fixture(scope="module")
def two_symbols(catalog, tmp_path_factory) -> Path:
    """The real bars under two symbols, BTCUSDT and a copy (XBTUSDT): one account trades both."""
    root = tmp_path_factory.mktemp("two")
    cat = Path(shutil.copytree(catalog, root / "cat"))
    src, dst = cat / "klines_1m" / "BTCUSDT", cat / "klines_1m" / "XBTUSDT"
    shutil.copytree(src, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    doc["symbol"] = "XBTUSDT"
    for part in doc["partitions"].values():
        part["symbol"] = "XBTUSDT"
    (dst / "manifest.json").write_text(json.dumps(doc))
    return cat


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_engines_write_byte_identical_files(funded_catalog, tmp_path, case):
    """trades.csv and summary.json, byte for byte, fast engine against shell engine (funding
    from the catalog charged to the open trades in both)."""
    strategy, days, aegis, params = CASES[case]
    cfg = BacktestConfig(catalog=funded_catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS,
                         end_ms=DEC1_MS + days * DAY_MS, strategy=strategy, params=params, aegis=aegis)
    out = _both(cfg, tmp_path)
    assert out["fast"] == out["shell"]
    summary = json.loads(out["fast"]["summary.json"])
    # (in two cases the kill switch stops trading early, before a settlement finds a trade open)
    assert summary["trades"] > 0 and (summary["funding_events"] > 0) == (case not in STOPPED_EARLY)
    if strategy == BUSY:  # the refused entries while a trade is open, the moves and the exits
        c = summary["trader_counters"]
        assert c["skipped:ALREADY_HELD"] > 100 and summary["exit_reasons"].get("BUSY", 0) > 0


def test_the_ema_cross_month_trade_for_trade(catalog, tmp_path):
    """The EMA(10)/EMA(30) cross of ``make bench`` (no fees, no slippage, no cooldown) over the
    month: 795 round trips in both engines, the same entry and exit times, prices, quantities,
    fees, PnL and exit reasons (and the same as the plain loop's 795 round trips)."""
    from research.strategies.ema_cross import ema_cross_reference
    from bench.backtest_section import load_bars

    bars = load_bars(catalog)
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=bars["open_time"][0],
                         end_ms=bars["open_time"][-1] + 60_000, strategy="ema_cross", aegis=NO_COSTS)
    runs = {}
    for engine in ("shell", "fast"):
        bt = new_backtest(replace(cfg, engine=engine))
        bt.run()
        runs[engine] = bt.trades
    assert type(new_backtest(cfg)) is FastBacktest and type(new_backtest(replace(cfg, engine="shell"))) is Backtest
    assert len(runs["fast"]) == 795 and runs["fast"] == runs["shell"]
    ref = ema_cross_reference(bars["open_time"], bars["close"])
    assert [(t["opened_ms"] - 60_000, t["closed_ms"] - 60_000) for t in runs["fast"]] == [(a, c) for a, _, c, _ in ref]


def test_two_symbols_one_account_one_slot(two_symbols, tmp_path):
    """Donchian on two symbols sharing one account with one position slot (the rotation
    decides which signal trades): byte-identical files."""
    cfg = BacktestConfig(catalog=two_symbols, symbols=("BTCUSDT", "XBTUSDT"), start_ms=DEC1_MS,
                         end_ms=DEC1_MS + 10 * DAY_MS, strategy="donchian", aegis=ONE_SLOT)
    out = _both(cfg, tmp_path)
    assert out["fast"] == out["shell"]
    summary = json.loads(out["fast"]["summary.json"])
    assert summary["trades"] > 0 and any(k.startswith("skipped:") for k in summary["trader_counters"])


def test_the_model_learnt_late_is_the_model_learnt_at_each_close(catalog):
    """A strategy that never reads the model (the EMA cross) has its lessons learnt when the
    model is asked for: the same bytes as the shell engine's model, learnt at each close."""
    from services.brain import model

    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + 3 * DAY_MS,
                         strategy="ema_cross", aegis=NO_COSTS)
    shell, fast = Backtest(replace(cfg, engine="shell")), FastBacktest(cfg)
    shell.run()
    fast.run()
    assert fast._unlearnt  # waiting: nobody asked yet
    assert shell.model_outcomes() == fast.model_outcomes() == len(fast.trades) > 10
    assert model.to_bytes(fast.model_state) == model.to_bytes(shell.model_state)
    assert not fast._unlearnt


def test_engine_must_be_fast_or_shell(catalog):
    """Any other engine name is a ConfigError naming the two."""
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="'fast' or 'shell'"):
        BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + DAY_MS,
                       engine="turbo")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                        HealthCheck.nested_given])
@given(strategy=st.sampled_from(["ema_cross", "donchian", BUSY]), fast=st.integers(2, 20), channel=st.integers(5, 60),
       start_day=st.integers(0, 25), days=st.integers(1, 3), entry=st.sampled_from(["limit_ioc", "market"]),
       fee=st.sampled_from([0.0, 0.0005]), slip=st.sampled_from([0.0, 1.0, 25.0]),
       cooldown=st.sampled_from([0.0, 120.0, 900.0]), risk_pct=st.sampled_from([0.1, 0.5, 5.0]),
       loss_limit=st.sampled_from([5.0, 250.0]), drawdown=st.sampled_from([0.1, 10.0]),
       entry_slip=st.sampled_from([0.0, 2.0, 20.0]))
def test_any_settings_give_the_same_files(funded_catalog, tmp_path_factory, strategy, fast, channel, start_day, days,
                                          entry, fee, slip, cooldown, risk_pct, loss_limit, drawdown, entry_slip):
    """Random strategy parameters, windows and trading settings (entry order type and its
    slippage bound, fees, slippage, cooldown, risk per trade, kill-switch limits): both engines
    write the same bytes."""
    aegis = _trading(entry_order=entry, taker_fee_rate=fee, paper_slippage_bps=slip, cooldown_s=cooldown,
                     risk_per_trade_pct=risk_pct, daily_loss_limit_usdt=loss_limit, max_drawdown_pct=drawdown,
                     entry_slippage_bps=entry_slip)
    params = ({"fast": fast, "slow": fast + 5} if strategy == "ema_cross" else {"channel_bars": channel}
              if strategy == "donchian" else {"every": fast % 5 + 1, "exit_every": channel, "move_every": fast})
    start = DEC1_MS + start_day * DAY_MS
    cfg = BacktestConfig(catalog=funded_catalog, symbols=("BTCUSDT",), start_ms=start, end_ms=start + days * DAY_MS,
                         strategy=strategy, params=params, aegis=aegis)
    out = _both(cfg, tmp_path_factory.mktemp("prop"))
    assert out["fast"] == out["shell"]


def test_the_command_runs_the_fast_engine_unless_told_shell(catalog, tmp_path, capsys):
    """``aegis backtest`` without ``--engine`` and with ``--engine shell`` writes the same
    trades.csv and summary.json; an unknown engine is a usage error (exit code 2)."""
    from research import backtest_cli

    base = ["--catalog", str(catalog), "--strategy", "donchian", "--symbols", "BTCUSDT", "--from", "2024-12-01",
            "--to", "2024-12-07", "--json"]
    assert backtest_cli.main([*base, "--out", str(tmp_path / "fast")]) == 0
    assert backtest_cli.main([*base, "--engine", "shell", "--out", str(tmp_path / "shell")]) == 0
    for name in ("trades.csv", "summary.json"):
        assert (tmp_path / "fast" / name).read_bytes() == (tmp_path / "shell" / name).read_bytes()
    with pytest.raises(SystemExit) as exc:
        backtest_cli.main([*base, "--engine", "turbo", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2
    assert "invalid choice: 'turbo'" in capsys.readouterr().err
