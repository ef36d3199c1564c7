"""A user's strategy in a file outside the repository, chosen by a TOML config alone
(``[strategy] path = "/dir/file.py:Class"`` and ``[strategy.params]``), runs in ``aegis replay``
and in paper mode (``aegis run --mode paper``): its signals, with the levels its parameter
sets, are the ones the journal and the decision stream hold. (The backtest of such a file:
tests/unit/research/test_backtest.py; demo mode: tests/integration/test_host_lost.py.)

The strategy goes long at the close of every candle while its symbol is flat, its stop and
target ``band`` away; the config sets ``band = 0.03`` (the class's default is 0.05), so a signal
with a 3 % stop can only come from this file with this config. Replay: the golden capture
(tests/golden, 20 symbols, 240 s). Paper: the local exchange stands in for Binance on
127.0.0.1, as in tests/integration/test_modes.py. Every process is ended by its pid
(``procs``)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, stack_env
from tests.integration.test_feed_faults import SimProc, wait_until

pytestmark = pytest.mark.integration

CAPTURE = REPO / "tests" / "golden" / "demo_240s.aegiscap"
NAME = "my_every_candle"
BAND = 0.03
# the capture's live part closes 3 candles on each of its 20 symbols (60); the three symbols
# whose first live signal became a position stay long for their other two candles: 60 - 3 x 2
REPLAY_SIGNALS = 54
USER_STRATEGY = '''
from research.strategy_api import Enter, Strategy


class EveryCandle(Strategy):
    """Long at the close of every candle while flat; stop and target ``band`` away."""

    name = "my_every_candle"
    history = 2

    def __init__(self, band=0.05):
        if not 0 < band < 1:
            raise ValueError("band must be within (0, 1)")
        self.band = band

    def on_candle(self, ctx, candle):
        if ctx.position is not None:
            return []
        c = candle.close
        return [Enter(side="BUY", stop=c * (1 - self.band), target=c * (1 + self.band), confidence=0.6)]
'''


class CandleSim(SimProc):
    """The local exchange with the candles demo's market (trades synthesized inside real 1m
    candles), which closes candles at its pace; SimProc replays the tick capture."""

    def start(self) -> None:
        self.proc = self.procs.python(
            "-m", "services.exchange_sim", "--port", "0", "--symbols", str(self.symbols), "--speed",
            str(self.speed), "--source", "candles", cwd=REPO, stdout=subprocess.PIPE, stderr=open(self.log, "a"),
            text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("PORT "), self.log.read_text()[-2000:]
        self.port = int(line.split()[1])
        wait_until(self._pings, "the sim to answer")


def user_config(folder: Path) -> Path:
    """The user's folder, outside the repository: the strategy file and the config naming it."""
    folder.mkdir(parents=True, exist_ok=True)
    strat = folder / "my_strategy.py"
    strat.write_text(USER_STRATEGY)
    cfg = folder / "aegis.toml"
    cfg.write_text(f'[strategy]\npath = "{strat}:EveryCandle"\n\n[strategy.params]\nband = {BAND}\n')
    assert REPO not in strat.resolve().parents
    return cfg


def assert_the_user_strategys_levels(signals: list[dict]) -> None:
    """Each signal is the file's decision with the config's band: long, stop and target 3 % away."""
    assert signals
    for s in signals:
        assert (s["strategy"], s["side"]) == (NAME, "BUY"), s
        assert s["stop"] == s["entry"] * (1 - BAND) and s["target"] == s["entry"] * (1 + BAND), s


def test_replay_runs_a_user_strategy_file_chosen_by_config(procs, tmp_path):
    """`aegis replay` of the golden capture with the user's config: every signal in the decision
    stream is the user strategy's (none of the SMC strategy's), and the trader takes them into
    orders (at most three positions: the rotation's limit)."""
    cfg = user_config(tmp_path / "home" / "strategies")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env["AEGIS_DATA_DIR"] = str(tmp_path / "var")
    p = procs.start([sys.executable, "-m", "common.cli", "replay", str(CAPTURE), "--config", str(cfg),
                     "--workdir", str(tmp_path / "work"), "--json", "--no-progress"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO))
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["error"] == "" and result["frames"] == result["frames_in_capture"]
    decisions = [json.loads(line) for line in (tmp_path / "work" / "decisions.jsonl").read_text().splitlines()]
    signals = [d for d in decisions if d["type"] == "signal"]
    orders = [d for d in decisions if d["type"] == "order"]
    assert_the_user_strategys_levels(signals)
    assert {d["strategy"] for d in signals} == {NAME}
    assert result["decisions"]["signal"] == len(signals) == REPLAY_SIGNALS
    assert len(orders) == result["decisions"]["order"] == 3
    assert {o["signal_id"] for o in orders} <= {s["signal_id"] for s in signals}


def test_paper_mode_runs_a_user_strategy_file_chosen_by_config(procs, short_tmp):
    """`aegis run --mode paper --config` against the local exchange: the journal's signals are
    the user strategy's, with the config's levels, and their entries were filled by the paper
    broker inside the brain (the exchange saw no order)."""
    cfg = user_config(short_tmp / "home")
    # the candles demo's market at 30x: a 1-minute candle closes every 2 s
    sim = CandleSim(procs, short_tmp / "sim.log", symbols=2, speed=30.0)
    env = stack_env(short_tmp, AEGIS_FEED__WS_URL=f"ws://127.0.0.1:{sim.port}",
                    AEGIS_FEED__REST_URL=f"http://127.0.0.1:{sim.port}", AEGIS_FEED__WS_ROUTING="on",
                    AEGIS_FEED__MAX_SYMBOLS="2", AEGIS_FEED__HYDRATE_CANDLES="30")
    env.pop("BINANCE_API_KEY", None)
    env.pop("BINANCE_API_SECRET", None)
    log = short_tmp / "stack.log"
    db = short_tmp / "data" / "aegis.sqlite3"
    # runs until a filled entry is journaled (a few candles after start; longer on a busy
    # machine), then is stopped the way Ctrl+C stops it; --duration only bounds a failure
    p = procs.python("-m", "common.cli", "run", "--mode", "paper", "--config", str(cfg), "--duration", "150",
                     "--no-status", cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))

    def journaled() -> tuple[list[dict], list[dict]]:
        if not db.exists():
            return [], []
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        con.row_factory = sqlite3.Row
        try:
            return ([dict(r) for r in con.execute("SELECT * FROM signals ORDER BY ts_ns")],
                    [dict(r) for r in con.execute("SELECT * FROM orders WHERE reduce_only = 0")])
        except sqlite3.OperationalError:  # the schema is not there yet
            return [], []
        finally:
            con.close()

    try:
        wait_until(lambda: any(o["status"] == "FILLED" for o in journaled()[1]) or p.poll() is not None,
                   "a filled entry in the journal", timeout_s=140)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the stack's log: {log.read_text()[-4000:]}") from None
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 0, log.read_text()[-4000:]
    signals, orders = journaled()
    assert_the_user_strategys_levels(signals)
    assert orders and {o["signal_id"] for o in orders} <= {s["signal_id"] for s in signals}
    assert all(o["status"] == "FILLED" and o["filled_qty"] == o["qty"] for o in orders), orders
    with urllib_get(sim, "/_sim/orders") as r:
        assert json.loads(r.read()) == []  # paper: nothing reached the exchange


def urllib_get(sim: SimProc, path: str):
    import urllib.request

    return urllib.request.urlopen(sim.url(path), timeout=5)
