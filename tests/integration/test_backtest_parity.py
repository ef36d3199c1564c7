"""Parity: the backtest of a recorded run's data makes the decisions ``aegis replay`` of that
recording makes. The golden capture (a real 240 s demo, 20 symbols) becomes backtest input with
``research.capture_bars`` (its hydrated history plus the candles the brain closed from the
ticks), the SMC strategy runs over it with the history as warm-up only, and its signals and
order requests are compared with the golden replay decisions (tests/golden), on both backtest
engines (the fast default and ``--engine shell``).

Compared exactly: every signal (id, side, entry, stop, target, confidence, cold flag,
strategy, every feature) and every entry order request (id, side, quantity). Not compared:
fill prices. The replay fills each market order against the book of the tick stream at that
moment; the backtest has bars, not ticks, and fills at a book placed at the bar's close (ask
one tick above it): here one tick apart (0.0083648 against 0.0083647, for instance)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from research.backtest import Backtest, BacktestConfig, new_backtest
from research.capture_bars import read_capture_bars, write_catalog, write_exchange_info

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CAPTURE = GOLDEN / "demo_240s.aegiscap"
DECISIONS = GOLDEN / "demo_240s.decisions.jsonl"
SIGNAL_FIELDS = ("signal_id", "symbol", "side", "entry", "stop", "target", "confidence", "strategy", "features")


@pytest.fixture(scope="module")
def capture_cfg(tmp_path_factory) -> tuple[BacktestConfig, object]:
    tmp = tmp_path_factory.mktemp("parity")
    cb = read_capture_bars(CAPTURE)
    symbols = write_catalog(cb, tmp / "catalog", tmp / "csv")
    cfg = BacktestConfig(catalog=tmp / "catalog", symbols=tuple(symbols), start_ms=cb.first_ms, end_ms=cb.end_ms,
                         strategy="smc", exchange_info=write_exchange_info(cb, tmp / "exchange_info.json"),
                         trade_from_ms=cb.trade_from_ms)
    return cfg, cb


@pytest.fixture(scope="module", params=["shell", "fast"])
def backtest(request, capture_cfg) -> tuple[Backtest, dict]:
    """The capture's backtest on each engine (``--engine shell`` and the default, fast)."""
    cfg, cb = capture_cfg
    bt = new_backtest(replace(cfg, engine=request.param), keep_signals=True)
    summary = bt.run()
    return bt, {"cb": cb, "summary": summary}


def test_both_engines_make_the_same_run_of_the_capture(capture_cfg):
    """20 symbols, one account: the fast engine's trades, summary, signals and order requests
    are the shell engine's."""
    cfg, _ = capture_cfg
    runs = {}
    for engine in ("shell", "fast"):
        bt = new_backtest(replace(cfg, engine=engine), keep_signals=True)
        summary = bt.run()
        summary.pop("elapsed_s")
        runs[engine] = (bt.trades, summary, bt.signals, bt.orders)
    assert runs["fast"] == runs["shell"]
    assert len(runs["fast"][3]) == 3


def golden(kind: str) -> list[dict]:
    return [d for d in map(json.loads, DECISIONS.read_text().splitlines()) if d["type"] == kind]


def test_the_capture_becomes_the_candles_the_replayed_brain_analyses(backtest):
    """20 symbols: the 29,995 hydrated history candles (the replay's warm-up) and the 60 candles the
    brain closed live, as one 1m series per symbol."""
    _, info = backtest
    cb, s = info["cb"], info["summary"]
    assert (len(cb.bars), cb.history, cb.live) == (20, 29_995, 60)
    assert s["candles"] == 30_055 and s["bad_bars"] == 0


def test_backtest_signals_are_the_replays_signals_field_for_field(backtest):
    """The 9 golden signals, every field equal; none other after the warm-up."""
    bt, _ = backtest
    want = golden("signal")
    assert len(want) == 9
    got = sorted(bt.signals, key=lambda s: (bt_open(s.signal_id), s.signal_id))
    want = sorted(want, key=lambda d: (bt_open(d["signal_id"]), d["signal_id"]))
    assert [{f: getattr(s, f) for f in SIGNAL_FIELDS} | {"cold": int(s.cold)} for s in got] == \
        [{f: d[f] for f in SIGNAL_FIELDS} | {"cold": d["cold"]} for d in want]


def test_backtest_orders_are_the_replays_orders(backtest):
    """The same 3 entry orders (client order id, signal, side, quantity) as the replay; the other
    signals were refused by the same rotation and risk rules."""
    bt, _ = backtest
    want = golden("order")
    assert len(want) == 3
    assert sorted((o.client_order_id, o.signal_id, o.side, o.qty) for o in bt.orders) == \
        sorted((d["client_order_id"], d["signal_id"], d["side"], d["qty"]) for d in want)


def bt_open(signal_id: str) -> int:
    return int(signal_id.split("-")[1])
