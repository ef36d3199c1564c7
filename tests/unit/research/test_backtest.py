"""aegis backtest: a user's strategy file outside the repository run by config alone, the
worst-case order of stop and target inside a bar, byte-identical output for the same input,
and exact counts on the repository's real BTCUSDT December 2024 1m data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from research import backtest_cli
from research.backtest import BacktestConfig
from research.backtest_files import run_backtest
from research.ingest import run_import
from tests.unit.research.conftest import KLINE_HEADER, csv_text, write_zip
from tests.unit.research.test_strategy_api import write_user_strategy

DEC1_MS = 1_733_011_200_000  # 2024-12-01 00:00 UTC
DAY_MS = 86_400_000
# measured with the commands in docs/strategies.md; a change of any of these is a change of behaviour
EVERY_N_DAY1 = (23, 17, {"STOP": 10, "TARGET": 7})
SMC_WEEK1 = (10_080, 533, 100)


def cli(*args: str) -> int:
    return backtest_cli.main(list(args))


def test_a_strategy_file_outside_the_repository_backtests_by_config_alone(catalog, tmp_path):
    """The strategy lives in tmp_path, named only by the TOML's [strategy] section; the run
    writes the three files with its exact trades."""
    path = write_user_strategy(tmp_path)
    toml = tmp_path / "aegis.toml"
    toml.write_text(f'[strategy]\npath = "{path}:EveryN"\n[strategy.params]\nn = 30\n')
    out = tmp_path / "out"
    assert cli("--catalog", str(catalog), "--symbols", "BTCUSDT", "--from", "2024-12-01", "--to", "2024-12-01",
               "--out", str(out), "--config", str(toml)) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = list(csv.DictReader((out / "trades.csv").open()))
    assert summary["strategy"] == "every_n" and summary["params"] == {"n": 30}
    assert summary["candles"] == 1440 and summary["trades"] == len(rows)
    assert (summary["signals"], summary["trades"], summary["exit_reasons"]) == EVERY_N_DAY1
    assert (out / "report.html").read_text().startswith("<!doctype html>")


def test_the_same_input_gives_byte_identical_output(catalog, tmp_path):
    """Two runs of the same backtest write the same trades.csv and summary.json, byte for byte."""
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + 3 * DAY_MS,
                         strategy="donchian", params={"channel_bars": 30})
    run_backtest(cfg, tmp_path / "a")
    run_backtest(cfg, tmp_path / "b")
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "trades.csv").read_bytes() == (b / "trades.csv").read_bytes()
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    assert len((a / "trades.csv").read_text().splitlines()) > 1


def test_donchian_on_the_real_december_month_exact_counts(catalog, tmp_path):
    """The Donchian example (defaults) over 2024-12-01 .. 2024-12-29 of real BTCUSDT 1m bars:
    exact candles, signals, trades, exits and the trader's own counters."""
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + 29 * DAY_MS,
                         strategy="donchian")
    s = run_backtest(cfg, tmp_path)
    assert (s["candles"], s["signals"], s["trades"], s["wins"]) == (41_701, 105, 23, 7)
    assert s["exit_reasons"] == {"STOP": 16, "TARGET": 7}
    assert s["trader_counters"]["skipped:COOLDOWN"] == 81 and s["open_at_end"] == ["BTCUSDT"]


def test_smc_on_the_first_december_week_exact_counts(catalog, tmp_path):
    """The live SMC strategy through the API and the live trader, 2024-12-01 .. 2024-12-07."""
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + 7 * DAY_MS,
                         strategy="smc")
    s = run_backtest(cfg, tmp_path)
    assert (s["candles"], s["signals"], s["trades"]) == SMC_WEEK1
    assert s["model_outcomes"] == 100 and s["open_at_end"] == ["BTCUSDT"]  # the model learned every closed trade


# ---------------------------------------------------------------------------- inside one bar
ENTER_ONCE = '''
from research.strategy_api import Enter, Strategy


class EnterOnce(Strategy):
    name = "enter_once"

    def __init__(self, side="BUY", stop=99.0, target=102.0):
        self.side, self.stop, self.target = side, stop, target

    def on_candle(self, ctx, candle):
        if ctx.state.get("done"):
            return []
        ctx.state["done"] = True
        return [Enter(side=self.side, stop=self.stop, target=self.target, confidence=0.5)]
'''


def synthetic_catalog(tmp_path: Path, bars: list[tuple[float, float, float, float]]) -> Path:
    start = DEC1_MS
    lines = [f"{start + i * 60_000},{o},{h},{low},{c},10,{start + i * 60_000 + 59_999},1000,5,0,0,0"
             for i, (o, h, low, c) in enumerate(bars)]
    z = write_zip(tmp_path / "TESTUSDT-1m-2024-12.zip", csv_text(lines, KLINE_HEADER))
    cat = tmp_path / "cat"
    assert run_import(catalog=cat, path=z, kind="klines", symbol="TESTUSDT", interval="1m").ok
    return cat


@pytest.mark.parametrize("bars,side,stop,target,reason,exit_price", [
    # the second bar reaches both the stop (99) and the target (102): worst case, the stop
    ([(100, 100.5, 99.5, 100), (100, 103, 98, 101)], "BUY", 99.0, 102.0, "STOP", 99.0),
    # only the target: filled at the target
    ([(100, 100.5, 99.5, 100), (100, 103, 99.5, 101)], "BUY", 99.0, 102.0, "TARGET", 102.0),
    # the bar opens below the stop (a gap): filled at the open
    ([(100, 100.5, 99.5, 100), (97, 98, 96, 97.5)], "BUY", 99.0, 102.0, "STOP", 97.0),
    # a short: both reached, the stop
    ([(100, 100.5, 99.5, 100), (100, 102, 97, 99)], "SELL", 101.0, 98.0, "STOP", 101.0),
])
def test_stop_and_target_inside_a_bar_worst_case_first(tmp_path, bars, side, stop, target, reason, exit_price):
    """The entry fills at the first bar's close; the next bar's range closes it at the level
    (or at the open past it), the stop first when both are inside the bar."""
    cat = synthetic_catalog(tmp_path, bars)
    strat = tmp_path / "enter_once.py"
    strat.write_text(ENTER_ONCE)
    cfg = BacktestConfig(catalog=cat, symbols=("TESTUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + DAY_MS,
                         strategy=f"{strat}:EnterOnce", params={"side": side, "stop": stop, "target": target},
                         aegis=_no_slippage())
    s = run_backtest(cfg, tmp_path / "out")
    (row,) = list(csv.DictReader((tmp_path / "out" / "trades.csv").open()))
    assert (s["trades"], row["exit_reason"]) == (1, reason)
    assert float(row["entry_price"]) == 100.0 if side == "SELL" else float(row["entry_price"]) == 100.00000001
    assert float(row["exit_price"]) == (exit_price if side == "BUY" else exit_price + 0.00000001)


def _no_slippage():
    from common import config as config_mod

    return config_mod.from_dict({"trading": {"paper_slippage_bps": 0.0}})


ENTER_THEN_EXIT = '''
from research.strategy_api import Enter, Exit, MoveStop, Strategy


class EnterThenExit(Strategy):
    name = "enter_then_exit"

    def on_candle(self, ctx, candle):
        k = ctx.state["k"] = ctx.state.get("k", 0) + 1
        if k == 1:
            return [Enter(side="BUY", stop=90.0, target=110.0)]
        if k == 2 and ctx.position is not None:
            return [MoveStop(price=95.0)]
        if k == 3 and ctx.position is not None:
            return [Exit(reason="TIME")]
        return []
'''


def test_exit_intent_closes_through_the_trader_after_a_move_stop(tmp_path):
    """Exit -> the trader's reduce-only exit at the third bar's close, named by the strategy's
    reason; the MoveStop before it moved the trade's stop (no intent left unsupported)."""
    cat = synthetic_catalog(tmp_path, [(100, 101, 99, 100), (100, 101, 99, 100.5), (100.5, 102, 100, 101),
                                       (101, 101, 100, 100.5)])
    strat = tmp_path / "ete.py"
    strat.write_text(ENTER_THEN_EXIT)
    cfg = BacktestConfig(catalog=cat, symbols=("TESTUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + DAY_MS,
                         strategy=f"{strat}:EnterThenExit", aegis=_no_slippage())
    s = run_backtest(cfg, tmp_path / "out")
    (row,) = list(csv.DictReader((tmp_path / "out" / "trades.csv").open()))
    assert (row["exit_reason"], float(row["exit_price"]), s["intents_unsupported"]) == ("TIME", 101.0, 0)
    assert int(row["closed_ms"]) == DEC1_MS + 3 * 60_000
    assert (float(row["stop"]), s["trader_counters"]["moves:STOP"]) == (95.0, 1)


BREAK_EVEN = '''
from research.strategy_api import Enter, MoveStop, MoveTarget, Strategy


class BreakEven(Strategy):
    """Long once; when the close is 2% above the entry, the stop goes to the entry price."""
    name = "break_even"

    def on_candle(self, ctx, candle):
        p = ctx.position
        ctx.state.setdefault("seen", []).append(None if p is None else (p.stop, p.target))
        if not ctx.state.get("entered"):
            ctx.state["entered"] = True
            return [Enter(side="BUY", stop=90.0, target=110.0)]
        if p is not None and p.stop < p.entry_price and candle.close >= p.entry_price * 1.02:
            # a stop above the close and a target below it are passed already: refused
            return [MoveStop(price=candle.close + 0.5), MoveTarget(price=candle.close - 1.0),
                    MoveStop(price=p.entry_price)]
        return []
'''


def test_move_stop_to_break_even_is_carried_out_and_a_passed_level_refused(tmp_path):
    """MoveStop to the entry price moves the trade's stop (the next bar's low reaches it: a STOP
    exit at the entry price, PnL exactly 0); a stop above the close and a target below it are
    refused and counted, as the paper broker's protection.move refuses them."""
    cat = synthetic_catalog(tmp_path, [(100, 101, 99, 100), (100, 103, 100, 102.5), (102.5, 103, 101.5, 102),
                                       (102, 102.5, 99, 99.5), (99.5, 100, 98, 99)])
    strat = tmp_path / "be.py"
    strat.write_text(BREAK_EVEN)
    cfg = BacktestConfig(catalog=cat, symbols=("TESTUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + DAY_MS,
                         strategy=f"{strat}:BreakEven", aegis=_no_slippage())
    from research.backtest import Backtest

    bt = Backtest(cfg)
    s = bt.run()
    entry = 100.00000001  # the ask, one tick above the first close
    (t,) = bt.trades
    assert (t["exit_reason"], t["entry_price"], t["exit_price"], t["stop"], t["target"], t["pnl"]) == (
        "STOP", entry, entry, entry, 110.0, 0.0)
    assert t["closed_ms"] == DEC1_MS + 3 * 60_000  # inside the fourth bar (low 99), at its open time
    c = s["trader_counters"]
    assert (c["moves:STOP"], c["move_refused:STOP"], c["move_refused:TARGET"], s["intents_unsupported"]) == (
        1, 1, 1, 0)
    # what the strategy saw: flat, then the plan's levels, then the moved stop, then flat again
    assert bt.runner.symbols["TESTUSDT"].state["seen"] == [None, (90.0, 110.0), (entry, 110.0), None, None]
    from dataclasses import replace

    off = Backtest(replace(cfg, skip_idle=False))  # idle skipping changes nothing here either
    s_off = off.run()
    assert off.trades == bt.trades and {k: v for k, v in s_off.items() if k != "elapsed_s"} == \
        {k: v for k, v in s.items() if k != "elapsed_s"}


def test_funding_from_the_catalog_is_charged_to_the_open_trade(tmp_path):
    """A settlement of +0.01% while long charges qty x last close x rate to the trade (a long
    pays), in its funding column and its net PnL."""
    cat = synthetic_catalog(tmp_path, [(100, 101, 99, 100), (100, 101, 99, 100.5), (100.5, 102, 100, 101),
                                       (101, 101, 100, 100.5)])
    lines = [f"{DEC1_MS + 2 * 60_000},8,0.0001", f"{DEC1_MS + 10 * 60_000},8,0.0005"]
    z = write_zip(tmp_path / "TESTUSDT-fundingRate-2024-12.zip",
                  csv_text(lines, "calc_time,funding_interval_hours,last_funding_rate"))
    assert run_import(catalog=cat, path=z, kind="fundingRate", symbol="TESTUSDT").ok
    strat = tmp_path / "ete.py"
    strat.write_text(ENTER_THEN_EXIT)
    cfg = BacktestConfig(catalog=cat, symbols=("TESTUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + DAY_MS,
                         strategy=f"{strat}:EnterThenExit", aegis=_no_slippage())
    s = run_backtest(cfg, tmp_path / "out")
    (row,) = list(csv.DictReader((tmp_path / "out" / "trades.csv").open()))
    qty = float(row["qty"])
    assert float(row["funding"]) == qty * 100.5 * 0.0001 and s["funding_events"] == 1  # the second: flat
    assert float(row["net_pnl"]) == float(row["pnl"]) - float(row["fees"]) - float(row["funding"])


EXIT_ON_FILL = '''
from research.strategy_api import Enter, Exit, Strategy


class ExitOnFill(Strategy):
    name = "exit_on_fill"

    def on_candle(self, ctx, candle):
        if not ctx.state.get("entered"):
            ctx.state["entered"] = True
            return [Enter(side="BUY", stop=90.0, target=110.0)]
        return []

    def on_fill(self, ctx, fill):
        ctx.state.setdefault("fills", []).append((fill.entry, fill.side, fill.price, ctx.position is not None))
        return [Exit(reason="ON_FILL")] if fill.entry else []
'''


def test_on_fill_hears_each_fill_and_its_exit_is_carried_out(tmp_path):
    """on_fill gets the entry fill (with the position open) and the exit fill; an Exit it
    returns closes the trade at once, at the same price (same bar)."""
    cat = synthetic_catalog(tmp_path, [(100, 101, 99, 100), (100, 101, 99, 100.5)])
    strat = tmp_path / "eof.py"
    strat.write_text(EXIT_ON_FILL)
    cfg = BacktestConfig(catalog=cat, symbols=("TESTUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + DAY_MS,
                         strategy=f"{strat}:ExitOnFill", aegis=_no_slippage())
    from research.backtest import Backtest

    bt = Backtest(cfg)
    s = bt.run()
    assert (s["trades"], s["exit_reasons"]) == (1, {"ON_FILL": 1})
    assert bt.runner.symbols["TESTUSDT"].state["fills"] == [(True, "BUY", 100.00000001, True),
                                                            (False, "SELL", 100.0, False)]
