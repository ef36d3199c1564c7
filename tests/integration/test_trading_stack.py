"""The whole path on the demo, as real processes: signal, risk, order, fill, position, and the
database agreeing with the exchange's own record, through two order faults.

One stack (module fixture) trades the candles demo for ``DURATION_S`` seconds through the real
``CcxtBroker`` against exchange_sim on loopback. A driver thread arms ``order_timeout`` (30 s)
for the first order and SIGKILLs the brain the moment the sim holds that order (accepted and
filled, its answer held back): the order was journaled before it left; the restarted brain
queries it, finds it, and takes its fills. Then it SIGKILLs the orchestrator, the sim and the
feed once each, with positions open (reconciliation every 20 s repairs what a dying
orchestrator had not yet written). The whole run uses known fake API credentials, which the
sim verifies on every signed request and which no log line may contain. (A timeout with the brain alive is tested at the
broker level, tests/integration/test_ccxt_broker_sim.py, and in the shell,
tests/unit/brain/test_execution.py.)

Then the sim's account (its state file, which outlives the sim) is compared with the database:
every sim order once, with the same final status and quantities; every sim fill in the fills
table exactly once and nothing else; the same positions; never more than three open at once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from tests.chaos.chaos_tools import StackProbe, kill_and_wait, wait_until
from tests.conftest import REPO, Procs, stack_env

pytestmark = pytest.mark.integration

DURATION_S = 150
SYMBOLS = 40
FAKE_KEY = "aegisFAKEkey7Zq9TestOnly0000000000000000000000000000000000000000"
FAKE_SECRET = "aegisFAKEsecretW3xTestOnly11111111111111111111111111111111111111"


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


class Driver(threading.Thread):
    """Injects the two faults at the right moments and records what it did."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(daemon=True)
        self.probe = StackProbe(run_dir)
        self.stop = threading.Event()
        self.killed_cid = ""
        self.killed_pid = 0
        self.kills: list[tuple[str, bool]] = []  # (service, came back)
        self.error = ""

    def orders(self) -> list[dict]:
        try:
            return _get(self.probe.sim_url() + "/_sim/orders")
        except OSError:  # the sim is down (stopping at the end of the run)
            return []

    def run(self) -> None:
        try:
            if not wait_until(lambda: self.probe.sim_answers(), 60):
                self.error = "sim never answered"
                return
            sim = self.probe.sim_url()
            _post(sim + "/_sim/fault", {"action": "order_timeout", "count": 1, "seconds": 30})
            if not wait_until(lambda: self.stop.is_set() or len(self.orders()) >= 1, DURATION_S, 0.02):
                return
            first = self.orders()
            pid = self.probe.ready_pid("brain")
            if first and pid:
                # the brain waits for the answer the sim holds back: kill it mid-submit
                os.kill(pid, signal.SIGKILL)
                self.killed_pid, self.killed_cid = pid, first[0]["clientOrderId"]
            # then every other service once, with positions open: nothing may be lost or doubled
            if not wait_until(lambda: self.stop.is_set() or self.probe.ready_pid("brain") not in (None, pid), 60):
                return
            for service in ("orchestrator", "exchange_sim", "feed"):
                if self.stop.is_set():
                    return
                time.sleep(5)
                r = kill_and_wait(self.probe, service, timeout_s=30)
                self.kills.append((service, r.new_pid is not None))
        except Exception as exc:  # reported by the tests, never a hang
            self.error = repr(exc)


@pytest.fixture(scope="module")
def trading_run(tmp_path_factory):
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="ag-", dir="/tmp"))
    os.chmod(tmp, 0o700)
    procs = Procs()
    state = tmp / "sim-account.json"
    env = stack_env(tmp, AEGIS_SIM__SOURCE="candles", AEGIS_SIM__HISTORY_BARS="1500",
                    AEGIS_FEED__HYDRATE_CANDLES="1500", AEGIS_SIM__CANDLE_TRADES="60",
                    AEGIS_SIM__SYMBOLS=str(SYMBOLS), AEGIS_FEED__MAX_SYMBOLS=str(SYMBOLS), AEGIS_SIM__SPEED="5", AEGIS_SIM_STATE_FILE=str(state),
                    AEGIS_LOG__LEVEL="info", AEGIS_LOG__FORMAT="json",
                    # repairs converge before the end of the run
                    AEGIS_TRADING__RECONCILE_INTERVAL_S="20",
                    # known fake credentials: the sim verifies every signature with them, and
                    # not one log line may show them
                    BINANCE_API_KEY=FAKE_KEY, BINANCE_API_SECRET=FAKE_SECRET)
    driver = Driver(tmp / "run")
    driver.start()
    summary = tmp / "s.json"
    try:
        p = procs.python("-m", "common.cli", "run", "--duration", str(DURATION_S), "--summary-json", str(summary),
                         "--no-status", cwd=REPO, env=env, stderr=open(tmp / "stderr.log", "w"))
        code = p.wait(timeout=DURATION_S + 180)
        driver.stop.set()
        driver.join(10)
        log = (tmp / "stderr.log").read_text()
        assert code == 0, log[-4000:]
        yield {"summary": json.loads(summary.read_text()), "sim": json.loads(state.read_text()),
               "db": tmp / "data" / "aegis.sqlite3", "driver": driver, "log": log}
    finally:
        procs.end_all()
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_demo_trades_signals_orders_fills_and_positions(trading_run):
    """The whole path reached the database, and the brain was killed once and came back.

    (The database, not the summary, counts here: the summary adds up each brain incarnation's
    last stats file, and a SIGKILLed one never wrote its last second.)"""
    s, d = trading_run["summary"], trading_run["driver"]
    assert d.error == "", d.error
    assert s["symbols"] == SYMBOLS
    db = sqlite3.connect(trading_run["db"])
    n = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("signals", "orders", "fills")}  # noqa: S608
    assert n["signals"] >= 1 and n["orders"] >= 1 and n["fills"] >= 1, n
    assert 0 <= s["positions_open"] <= 3
    assert s["restarts"] == {"brain": 1, "orchestrator": 1, "exchange_sim": 1, "feed": 1}, s["restarts"]
    assert d.kills == [("orchestrator", True), ("exchange_sim", True), ("feed", True)]
    assert s["ticks_lost"] == 0


def test_database_orders_and_fills_agree_exactly_with_the_sims_record(trading_run):
    """Every order the sim holds is in the database once, with its final status and quantity;
    the fills table holds exactly the sim's fills, each once."""
    sim = trading_run["sim"]
    db = sqlite3.connect(trading_run["db"])
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    local = {r[0]: r[1:] for r in db.execute(
        "SELECT client_order_id, status, qty, filled_qty FROM orders WHERE status NOT IN ('CANCELED','REJECTED')"
        " OR filled_qty > 0")}
    cids = [o["clientOrderId"] for o in sim["orders"]]
    assert len(cids) == len(set(cids)), "an order was sent twice"
    assert cids, "no order reached the sim"
    for o in sim["orders"]:
        status, qty, filled = local[o["clientOrderId"]]
        assert status == o["status"], o
        assert Decimal(repr(qty)) == Decimal(o["origQty"]) and Decimal(repr(filled)) == Decimal(o["executedQty"]), o
    # orders the sim never saw are the ones that never left (journal or risk said no)
    assert set(local) == set(cids)
    sim_fills = {(f["symbol"], str(f["id"])): (f["clientOrderId"], Decimal(f["qty"]), Decimal(f["price"]))
                 for f in sim["fills"]}
    db_fills = {(r[0], r[1]): (r[2], Decimal(repr(r[3])), Decimal(repr(r[4]))) for r in db.execute(
        "SELECT symbol, trade_id, client_order_id, qty, price FROM fills")}
    assert db_fills == sim_fills


def test_positions_in_the_database_equal_the_sims_and_never_exceed_three(trading_run):
    sim = trading_run["sim"]
    db = sqlite3.connect(trading_run["db"])
    local = {r[0]: Decimal(repr(r[1])) for r in db.execute("SELECT symbol, qty FROM positions") if r[1] != 0}
    exchange = {p["symbol"]: Decimal(p["qty"]) for p in sim["positions"] if Decimal(p["qty"]) != 0}
    assert local == exchange
    # replay the sim's fills in time order: the number of open symbols never passes three
    held: dict[str, Decimal] = {}
    most = 0
    for f in sorted(sim["fills"], key=lambda f: (f["time"], f["id"])):
        q = Decimal(f["qty"]) * (1 if f["side"] == "BUY" else -1)
        held[f["symbol"]] = held.get(f["symbol"], Decimal(0)) + q
        most = max(most, sum(1 for v in held.values() if v != 0))
    assert most <= 3


def test_an_order_in_flight_when_the_brain_died_exists_once_and_matches_local_state(trading_run):
    """Fault 2: SIGKILL while the order's answer was pending; after the restart, one such order
    at the exchange, and the database holds it with the exchange's status and fills."""
    d, sim = trading_run["driver"], trading_run["sim"]
    assert d.killed_cid, f"the kill scenario did not happen (no order in time): {trading_run['summary']}"
    mine = [o for o in sim["orders"] if o["clientOrderId"] == d.killed_cid]
    assert len(mine) == 1
    db = sqlite3.connect(trading_run["db"])
    (status, filled), = db.execute("SELECT status, filled_qty FROM orders WHERE client_order_id=?", (d.killed_cid,))
    assert status == mine[0]["status"] and Decimal(repr(filled)) == Decimal(mine[0]["executedQty"])
    fills = db.execute("SELECT COUNT(*) FROM fills WHERE client_order_id=?", (d.killed_cid,)).fetchone()[0]
    assert fills == sum(1 for f in sim["fills"] if f["clientOrderId"] == d.killed_cid) >= 1


def test_the_api_key_and_secret_never_reach_a_log_line(trading_run):
    """Every process logged at info level, JSON, for the whole run: neither credential appears."""
    log = trading_run["log"]
    assert log.count("\n") > 100  # there is a log to search
    assert FAKE_KEY not in log and FAKE_SECRET not in log
    # nor in anything the run left in its data directory (the database, the sim's account)
    assert FAKE_KEY.encode() not in trading_run["db"].read_bytes()
