"""The fast engine's bar loop (``research.fast_backtest.FastBacktest.bar``, issue #18's fifth
round) changes no decision: the flat, quiet bar written out, and the hourly poll of a flat
account left out where it provably changes nothing (``FastBacktest._flat_poll_idle``), on the
repository's real BTCUSDT December 2024 1m bars, against the shell engine; and each guard of
that poll's test on its own."""

from __future__ import annotations

import collections
import json
from dataclasses import replace

import pytest

from common.config import AegisConfig
from research.backtest import BacktestConfig, new_backtest
from research.backtest_files import trades_csv
from research.fast_backtest import FastBacktest
from research.strategies.ema_cross import EmaCross
from services.brain import jobs

DEC1_MS = 1_733_011_200_000  # 2024-12-01 00:00 UTC
DAY_MS = 86_400_000


def _run(cfg: BacktestConfig):
    bt = new_backtest(cfg)
    s = bt.run()
    s.pop("elapsed_s")
    return bt, (trades_csv(bt.trades), json.dumps(s, sort_keys=True))


def test_a_flat_account_leaves_out_every_hourly_poll_but_a_new_days(catalog):
    """Three days of warm-up only (flat throughout): of the 72 hourly polls, the first (nothing
    waits yet) and the first of each new UTC day (two) run; the other 69 are left out, and the
    kill switch and the equity read end as the shell engine's."""
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + 3 * DAY_MS,
                         strategy="ema_cross", trade_from_ms=DEC1_MS + 3 * DAY_MS)
    shell, shell_files = _run(replace(cfg, engine="shell"))
    fast, fast_files = _run(cfg)
    assert fast_files == shell_files
    assert (shell.polls_skipped, fast.polls_skipped) == (0, 69)
    assert fast.ex.st.risk == shell.ex.st.risk and fast.ex.equity == shell.ex.equity


@pytest.mark.parametrize("strategy", ["ema_cross", "donchian"])
def test_flat_days_then_trading_give_the_shell_engines_files(catalog, strategy):
    """Three days of warm-up, then four days of trading: the same trades.csv and summary.json
    as the shell engine, the same kill-switch state and equity at the end; left out on top of
    the idle polls both engines skip: the warm-up's 69 hourly polls and those of the trading
    days' flat hours whose waiting balance is the equity already read (10 and 5 here)."""
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + 7 * DAY_MS,
                         strategy=strategy, trade_from_ms=DEC1_MS + 3 * DAY_MS)
    shell, shell_files = _run(replace(cfg, engine="shell"))
    fast, fast_files = _run(cfg)
    assert fast_files == shell_files
    assert json.loads(fast_files[1])["trades"] == {"ema_cross": 71, "donchian": 15}[strategy]
    assert fast.ex.st.risk == shell.ex.st.risk and fast.ex.equity == shell.ex.equity
    assert fast.polls_skipped - shell.polls_skipped == 69 + {"ema_cross": 10, "donchian": 5}[strategy]


@pytest.mark.parametrize("strategy", ["ema_cross", "donchian"])
def test_quiet_stretches_cut_by_batches_give_the_shell_engines_files(catalog, strategy):
    """The quiet stretches of ``FastBacktest._play`` end at every batch of bars (here 997 rows,
    an odd size) as at any other bar: the same files, kill switch and equity as the shell
    engine, and the same polls left out as with the default batches."""
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + 4 * DAY_MS,
                         strategy=strategy, trade_from_ms=DEC1_MS + DAY_MS, batch_rows=997)
    shell, shell_files = _run(replace(cfg, engine="shell"))
    fast, fast_files = _run(cfg)
    whole, whole_files = _run(replace(cfg, batch_rows=65_536))
    assert fast_files == shell_files == whole_files
    assert fast.ex.st.risk == shell.ex.st.risk and fast.ex.equity == shell.ex.equity
    assert fast.polls_skipped == whole.polls_skipped > shell.polls_skipped


@pytest.fixture()
def idle(catalog) -> FastBacktest:
    """A fast backtest started and polled twice, flat: one balance waits, the equity read."""
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + DAY_MS,
                         strategy="ema_cross", aegis=AegisConfig())
    bt = FastBacktest(cfg)
    bt.start()
    bt.ex.poll()
    bt.now_ms += 60_000
    bt.ex.poll()
    assert [type(c.tag) for c in bt.ex.dispatcher.completed] == [jobs.Balance]
    return bt


def test_the_flat_poll_is_left_out_only_when_nothing_it_reads_changed(idle):
    """Each guard of ``_flat_poll_idle`` on its own: quiet, it is left out (and counted); an
    equity read that differs from the waiting balance's, a new UTC day, a second answer
    waiting, skipping turned off, a funding read in flight: the poll runs."""
    bt, ex = idle, idle.ex
    at = bt.now_ms + 60_000
    assert bt._flat_poll_idle(at) is True and bt.polls_skipped == 1
    eq = ex.equity
    ex.equity = eq + 0.01  # the drain would set another equity (the next entry's sizing reads it)
    assert bt._flat_poll_idle(at) is False
    ex.equity = eq
    assert bt._flat_poll_idle((at // DAY_MS + 1) * DAY_MS) is False  # the first poll of a new day
    ex.dispatcher.completed.append(ex.dispatcher.completed[0])
    assert bt._flat_poll_idle(at) is False
    del ex.dispatcher.completed[-1]
    bt._skip = False
    assert bt._flat_poll_idle(at) is False
    bt._skip = True
    ex.funding.in_flight = True
    assert bt._flat_poll_idle(at) is False
    ex.funding.in_flight = False
    assert bt._flat_poll_idle(at) is True and bt.polls_skipped == 2
    assert bt.now_ms == at - 60_000  # the clock it set for the trader's timer is put back


def test_the_flat_poll_runs_when_the_kill_switch_would_move(idle):
    """A waiting balance above the peak (the kill switch would record a new peak): the poll runs."""
    bt, ex = idle, idle.ex
    ex.st = replace(ex.st, risk=replace(ex.st.risk, peak_equity_usdt=ex.equity - 1.0))
    assert bt._flat_poll_idle(bt.now_ms + 60_000) is False


class Recorder(EmaCross):
    """The EMA cross (fast 5, slow 20: a trade every few dozen bars) that notes the position and
    the clock it is handed on every candle."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__(fast=5, slow=20, stop_pct=0.3, target_pct=0.4)
        self.seen: list = []

    def on_candle(self, ctx, candle) -> list:
        self.seen.append((ctx.now_ms, ctx.position))
        return super().on_candle(ctx, candle)


def test_each_candle_sees_the_position_the_shell_engine_hands_over(catalog):
    """Five days of a busy cross with close stops and targets (bars that reach them go the shell
    engine's way, the others the fast engine's own): on every candle the strategy is handed
    the same clock and position view as by the shell engine, and the files are the same."""
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + 5 * DAY_MS,
                         strategy="tests.unit.research.test_backtest_fast_paths:Recorder")
    shell, shell_files = _run(replace(cfg, engine="shell"))
    fast, fast_files = _run(cfg)
    assert fast_files == shell_files
    assert len(fast.strategy.seen) == 5 * 1440 and fast.strategy.seen == shell.strategy.seen
    assert sum(1 for _, p in fast.strategy.seen if p is not None) == 1649  # candles with a trade open
    assert sorted(collections.Counter(t["exit_reason"] for t in fast.trades).items()) == [
        ("CROSS", 107), ("STOP", 7), ("TARGET", 25)]
