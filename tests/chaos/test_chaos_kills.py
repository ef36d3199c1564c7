"""Chaos: SIGKILL every service at random moments of a trading demo; the stack heals.

Issue 6, part 5. One stack trades the candles demo (10 symbols at 5x, orders through the
real ccxt broker against exchange_sim with known fake keys) with the shipped ``donchian``
breakout on a 5-candle channel: it enters from the first candles on, so orders are in flight
when the kills begin (the SMC strategy needed 1,500 hydrated
candles and one to two minutes before its first order, and traded rarely after); a seeded plan kills exchange_sim, orchestrator, brain and feed ten times
each, in random order and at random moments, one at a time, timing each replacement from
the kill to its readiness. After the last kill the stack completes two reconciliation runs
(begun after it), then it is stopped with SIGTERM and each test below checks one promise on
that run:
every kill answered by a replacement its warm spare forked, no tick lost in the ring, SQLite
intact, every candle once, and the
trading promises: every order the exchange holds is in the database exactly once with its
final status and quantities, the fills table is exactly the exchange's fills, positions equal
the exchange's and never more than three were open, and neither fake credential appears in
any log line or in the database.

The first brain kill is not at a random moment: the sim holds back its answer to the run's
first order (the ``order_timeout`` fault: accepted and filled, the answer 30 s late) and the
brain is killed while it waits for it. The order was journaled before it left; the restarted
brain queries it, finds it, and takes its fills: that order must exist once at the exchange
and once in the database, with the exchange's status and fills.

The seed is printed; ``CHAOS_SEED=<n>`` replays the same plan; ``CHAOS_KEEP=<dir>`` keeps
the run's log, database and exchange account there. ``pytest -s`` shows the
restart-to-ready table (median and max per service, split into the supervisor's share,
kill -> spawn, and the new process's boot, spawn -> ready, how many replacements a warm
spare forked, and how many took longer than the 2 s target: a time, so measured and
reported, not asserted).

What a kill loses, by design: a killed feed misses the frames the sim sent while it was down
(a WebSocket gap, reported by the feed, not a loss in the ring); a killed brain loses the
candles it was building (they are rebuilt from the ring only from its saved cursor on);
a killed orchestrator loses journal messages it had received but not committed, which
reconciliation with the exchange repairs for orders and fills. So candles are checked for
integrity and uniqueness, not completeness; the ring, the brain's resume point, exactly; and
orders, fills and positions exactly against the exchange's own record.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.chaos_tools import (SERVICES, Kill, Restart, StackProbe, candle_counts, child_started_spare,
                                     child_started_wall_ns, kill_and_wait, kill_plan, pid_alive, spare_pids,
                                     timing_table, timings, wait_until)
from tests.conftest import REPO, Procs, stack_env

pytestmark = pytest.mark.integration

KILLS_PER_SERVICE = 10  # the "at least 10 kills per service"
SYMBOLS = 10  # breakouts on several of them every minute
SPEED = 5.0
RECONCILE_S = 5
FAKE_KEY = "aegisFAKEchaosKey0000000000000000000000000000000000000000000000"
FAKE_SECRET = "aegisFAKEchaosSecret111111111111111111111111111111111111111111"
READY_TIMEOUT_S = 20.0  # past this a replacement counts as never ready (and the chaos stops)
# before the kills, every service's spare is warm (it normally is long before the first order);
# shorter than the 30 s the sim holds the first order's answer, so the in-flight kill still
# happens while the brain waits for it
WARM_SPARES_TIMEOUT_S = 20.0
MIN_DELAY_S, MAX_DELAY_S = 0.2, 1.0  # pause before each kill: random moments of the run
STACK_READY_TIMEOUT_S = 120.0  # a bound for loaded machines (about 10 s on a quiet one)
SETTLE_TIMEOUT_S = 30.0  # after the last kill, every service running and heartbeating again
FIRST_ORDER_TIMEOUT_S = 150.0
# then two reconciliation runs that began after the last kill repair what a kill left undone
# (the one under way when the stack settled may have begun before it: three completions);
# a run over 40 symbols took ~10 s (ccxt paces the fills requests by Binance's request weights),
# over 10 a few seconds
RECONCILED_RUNS = 3
RECONCILED_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 90.0  # four children x the supervisor's per-child deadline, and some
CHAOS_ENV = {
    # the trading demo: real 1m candles replayed as trades, the channel filled from the start
    "AEGIS_SIM__SOURCE": "candles", "AEGIS_SIM__HISTORY_BARS": "1500", "AEGIS_FEED__HYDRATE_CANDLES": "100",
    "AEGIS_SIM__CANDLE_TRADES": "60", "AEGIS_FEED__MAX_SYMBOLS": str(SYMBOLS),
    "AEGIS_TRADING__RECONCILE_INTERVAL_S": str(RECONCILE_S),
    "BINANCE_API_KEY": FAKE_KEY, "BINANCE_API_SECRET": FAKE_SECRET,
    # 40 kills in about two minutes would trip production's limit (10 in 60 s) by design
    "AEGIS_SUPERVISOR__RESTART_INTENSITY": "1000",
    # the doubling backoff of a crash loop is not under test here; the service's restart is
    "AEGIS_SUPERVISOR__RESTART_BACKOFF_INITIAL_S": "0.05",
    "AEGIS_SUPERVISOR__RESTART_BACKOFF_MAX_S": "0.05",
    # JSON lines: the supervisor's child_started stamps split each restart time in two
    "AEGIS_LOG__FORMAT": "json",
    "AEGIS_LOG__LEVEL": "info",
}
# a fast breakout with a near stop and target (one ATR of five candles each way): entries from
# the first candles on, and exchange-held stops and targets that fire during the kills (this
# found the triggered stop's market order missing from the orders table, since journaled).
# One bar of channel: the sim's candle replay starts on the wall minute before it started and
# closes one bar a wall minute (SPEED real candles each), the same bars every run; with three
# bars the first breakout was the third bar, closed 112 to 172 s after the stack was ready,
# past FIRST_ORDER_TIMEOUT_S in about a third of the runs (no order before the kills: the
# in-flight test failed). With one bar it is the second bar: 52 to 112 s.
STRATEGY_TOML = ('[strategy]\npath = "donchian"\n\n[strategy.params]\n'
                 'channel_bars = 1\nstop = "atr"\natr_bars = 5\natr_mult = 1.0\nrr = 1.0\n')


@dataclass(frozen=True, kw_only=True)
class ChaosRun:
    seed: int
    restarts: list[Restart]
    planned: int
    exit_code: int | None
    summary: dict[str, Any]
    db_path: Path
    tmp: Path
    log_tail: str
    load_avg: tuple[float, ...]  # 1-minute load average at start and at end of the kills
    pids_seen: set[int] = field(default_factory=set)
    # the exchange's account after the stop: its orders, fills and positions
    exchange_state: dict[str, Any] = field(default_factory=dict)
    in_flight_cid: str = ""  # the order whose answer the sim held when the brain was killed
    secret_seen: list[str] = field(default_factory=list)  # fake credentials found in the log
    log_line_count: int = 0
    spare_of: dict[int, str] = field(default_factory=dict)  # replacement pid -> warm / warming / none

    def ctx(self) -> str:
        """What every failure message carries: the seed to replay the run, and the log's end."""
        return f"seed={self.seed} (CHAOS_SEED={self.seed} replays it)\n{self.log_tail}"

    def of(self, service: str) -> list[Restart]:
        return [r for r in self.restarts if r.service == service]


def sim_orders(probe: StackProbe) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(probe.sim_url() + "/_sim/orders", timeout=2) as r:  # noqa: S310 - loopback
            return json.loads(r.read())
    except (OSError, ValueError):
        return []


def hold_first_answer(probe: StackProbe) -> None:
    """Arm the sim's ``order_timeout`` fault: the next order is accepted and filled, and its
    answer is held back 30 s."""
    if not wait_until(probe.sim_answers, 30):
        return
    req = urllib.request.Request(probe.sim_url() + "/_sim/fault", method="POST",
                                 data=json.dumps({"action": "order_timeout", "count": 1, "seconds": 30}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback
        r.read()


def spares_warm(probe: StackProbe) -> bool:
    """Every service has a warm spare (loaded and waiting to fork its replacement)."""
    st = (probe.status() or {}).get("services", {})
    return all(st.get(s, {}).get("spare") == "warm" for s in SERVICES)


def spare_warm(probe: StackProbe, service: str) -> bool:
    """The service has a warm spare now."""
    return (probe.status() or {}).get("services", {}).get(service, {}).get("spare") == "warm"


def reconciled_runs(probe: StackProbe) -> int | None:
    """Completed reconciliation runs of the running orchestrator (its heartbeat counters)."""
    st = probe.status()
    c = (st or {}).get("services", {}).get("orchestrator", {}).get("counters") or {}
    if "reconcile_runs" not in c:
        return None
    return int(c["reconcile_runs"] - c.get("reconcile_failures", 0))


def read_exchange_state(tmp: Path) -> dict[str, Any]:
    """The exchange's own record (its account file, which outlives every sim incarnation):
    orders, fills, positions, read after the stop."""
    try:
        return json.loads((tmp / "sim-account.json").read_text())
    except (OSError, ValueError):
        return {}


def run_chaos(procs: Procs, tmp: Path, seed: int) -> ChaosRun:
    plan = kill_plan(seed, kills_per_service=KILLS_PER_SERVICE, min_delay_s=MIN_DELAY_S,
                     max_delay_s=MAX_DELAY_S)
    summary_path = tmp / "summary.json"
    log_path = tmp / "stack.log"
    probe = StackProbe(tmp / "run")
    (tmp / "aegis.toml").write_text(STRATEGY_TOML)
    with open(log_path, "w") as log_f:
        sup = procs.python("-m", "common.cli", "run", "--config", str(tmp / "aegis.toml"),
                           "--symbols", str(SYMBOLS), "--speed", str(SPEED),
                           "--summary-json", str(summary_path), "--no-status",
                           cwd=REPO, env=stack_env(tmp, AEGIS_SIM_STATE_FILE=str(tmp / "sim-account.json"),
                                                   **CHAOS_ENV), stdout=log_f, stderr=log_f)
    restarts: list[Restart] = []
    pids: set[int] = set()
    ready = wait_until(lambda: sup.poll() is not None or probe.stack_ready(), STACK_READY_TIMEOUT_S)
    if ready:  # the first order's answer comes 30 s late: the brain will be killed waiting for it
        hold_first_answer(probe)
    # the kills start once the brain has traded (a position to carry through them): a brain
    # killed every few seconds from the start spends its life warming up and never trades
    started = time.monotonic()
    traded = ready and wait_until(lambda: sup.poll() is not None or bool(sim_orders(probe)), FIRST_ORDER_TIMEOUT_S,
                                  period_s=0.05)
    print(f"\nfirst order at the exchange after {time.monotonic() - started:.1f} s" if traded else
          f"\nno order within {FIRST_ORDER_TIMEOUT_S} s: the kills start anyway")
    t_warm = time.monotonic()
    warm = ready and wait_until(lambda: sup.poll() is not None or spares_warm(probe), WARM_SPARES_TIMEOUT_S)
    print(f"every spare warm {time.monotonic() - t_warm:.1f} s later" if warm else
          f"not every spare warm within {WARM_SPARES_TIMEOUT_S} s: the kills start anyway")
    load_start = os.getloadavg()[0]
    in_flight = ""
    if ready and sup.poll() is None:
        first = sim_orders(probe) if traded else []
        if first:  # the brain waits for the held answer: its first kill is now, mid-submit
            in_flight = first[0]["clientOrderId"]
            at = next(i for i, k in enumerate(plan) if k.service == "brain")
            plan = (Kill(service="brain", delay_s=0.0), *plan[:at], *plan[at + 1:])
        for k in plan:
            if sup.poll() is not None:
                break
            wait_until(lambda: sup.poll() is not None, k.delay_s, period_s=0.05)
            # after each replacement the supervisor warms a new spare (its imports: about half a
            # second on a quiet machine, seconds when another test shares the cores): the kill
            # waits for the victim's spare to be warm, so what the warm-spare test pins is that
            # the supervisor forks it, not how fast a spare warms under load (never warm within
            # WARM_SPARES_TIMEOUT_S: the kill goes ahead and that test fails)
            wait_until(lambda: sup.poll() is not None or spare_warm(probe, k.service), WARM_SPARES_TIMEOUT_S,
                       period_s=0.05)
            r = kill_and_wait(probe, k.service, timeout_s=READY_TIMEOUT_S)
            restarts.append(r)
            pids.update(p for p in (r.old_pid, r.new_pid) if p is not None)
            if r.new_pid is None:
                break  # the stack did not heal: stop here, the tests report it
        wait_until(lambda: sup.poll() is not None or probe.stack_ready(), SETTLE_TIMEOUT_S)
        base = reconciled_runs(probe)
        t_rec = time.monotonic()
        done = base is not None and wait_until(
            lambda: sup.poll() is not None or (reconciled_runs(probe) or 0) >= base + RECONCILED_RUNS,
            RECONCILED_TIMEOUT_S, period_s=0.5)
        print(f"\n{RECONCILED_RUNS} reconciliation runs completed after the last kill: "
              f"{f'done in {time.monotonic() - t_rec:.1f} s' if done else 'NOT done'}")
        status = probe.status() or {"services": {}}
        pids.update(int(s["pid"]) for s in status["services"].values() if s.get("pid"))
        pids.update(int(s["spare_pid"]) for s in status["services"].values() if s.get("spare_pid"))
    load_end = os.getloadavg()[0]
    if sup.poll() is None:
        sup.send_signal(signal.SIGTERM)
    try:
        code: int | None = sup.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # a hung stop is a finding; procs ends it by pid
        code = None
    log_text = log_path.read_text(errors="replace")
    log_lines = log_text.splitlines()
    pids.update(spare_pids(log_lines))  # every spare, used or not, must be gone after the stop
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    exchange_state = read_exchange_state(tmp)
    run = ChaosRun(seed=seed, restarts=restarts, planned=len(plan), exit_code=code, summary=summary,
                   db_path=tmp / "data" / "aegis.sqlite3", tmp=tmp,
                   log_tail="\n".join(ln[:300] for ln in log_lines[-30:]),
                   load_avg=(round(load_start, 2), round(load_end, 2)), pids_seen=pids,
                   exchange_state=exchange_state, in_flight_cid=in_flight,
                   secret_seen=[n for n, v in (("key", FAKE_KEY), ("secret", FAKE_SECRET)) if v in log_text],
                   log_line_count=len(log_lines), spare_of=child_started_spare(log_lines))
    print(f"\nchaos seed {seed}: {len(restarts)}/{len(plan)} kills, exit code {code}, "
          f"ticks written {summary.get('ticks_written')}, read {summary.get('ticks_read')}, "
          f"lost {summary.get('ticks_lost')}, candles closed {summary.get('candles_closed')}, "
          f"load average {run.load_avg[0]} -> {run.load_avg[1]} on {os.cpu_count()} CPUs; the exchange "
          f"holds {len(exchange_state.get('orders', []))} orders, {len(exchange_state.get('fills', []))} fills, "
          f"{sum(1 for p in exchange_state.get('positions', []) if Decimal(p['qty']) != 0)} open positions")
    rows = candle_counts(run.db_path)[1] if run.db_path.exists() else None
    print(f"not asserted (expected after kills): brain_out_of_order {summary.get('brain_out_of_order')}, "
          f"journal_messages {summary.get('journal_messages')}, journal_gaps {summary.get('journal_gaps')}, "
          f"candle rows in the database {rows}")
    print(timing_table(timings(restarts, child_started_wall_ns(log_lines), spare_of=run.spare_of)))
    return run


@pytest.fixture(scope="module")
def chaos_run():
    """One chaos run shared by every test of this module (it is the expensive part)."""
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos seed {seed}")
    tmp = Path(tempfile.mkdtemp(prefix="ag-", dir="/tmp"))  # short: ipc paths < 107 bytes
    os.chmod(tmp, 0o700)
    procs = Procs()
    try:
        yield run_chaos(procs, tmp, seed)
    finally:
        procs.end_all()
        keep = os.environ.get("CHAOS_KEEP")  # a directory: the run's log, database and sim account
        if keep:
            shutil.copytree(tmp, Path(keep) / f"chaos-{seed}", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("run", "*.ring"))
        shutil.rmtree(tmp, ignore_errors=True)


def test_every_kill_is_answered_by_exactly_one_restart(chaos_run):
    """Each of the 40 SIGKILLs brings a new ready incarnation, and the supervisor counts exactly the kills."""
    assert len(chaos_run.restarts) == chaos_run.planned == KILLS_PER_SERVICE * len(SERVICES), chaos_run.ctx()
    never = [(r.service, r.old_pid) for r in chaos_run.restarts if r.new_pid is None]
    assert never == [], chaos_run.ctx()
    # the dashboard runs beside them and is not killed: it is never restarted
    assert chaos_run.summary["restarts"] == {**{s: KILLS_PER_SERVICE for s in SERVICES}, "dashboard": 0}, chaos_run.ctx()


def test_brain_resumes_from_the_ring_and_loses_no_tick(chaos_run):
    """Across ten brain kills the restarted brain reads on from its saved cursor: read == written, lost == 0."""
    s = chaos_run.summary
    assert s["ticks_written"] > 0, chaos_run.ctx()
    assert s["ticks_lost"] == 0, chaos_run.ctx()
    assert s["ticks_read"] == s["ticks_written"], chaos_run.ctx()
    # the outages had something to resume through: ticks the feed wrote while no brain ran
    backlog = sum(r.ring_at_ready["written"] - r.ring_at_kill["written"] for r in chaos_run.of("brain"))
    assert backlog > 0, chaos_run.ctx()


def test_database_passes_integrity_check_after_the_kills(chaos_run):
    """Forty SIGKILLs, ten of them of the database's only writer mid-transaction, leave SQLite intact."""
    integrity, _rows, _distinct = candle_counts(chaos_run.db_path)
    assert integrity == "ok", chaos_run.ctx()


def test_every_candle_is_stored_exactly_once(chaos_run):
    """Candles re-sent after a restart (brain or orchestrator) never duplicate a row."""
    _integrity, rows, distinct = candle_counts(chaos_run.db_path)
    assert rows > 0, chaos_run.ctx()
    assert rows == distinct, chaos_run.ctx()


def test_stack_stops_cleanly_and_leaves_nothing_behind(chaos_run):
    """After the chaos, SIGTERM stops the stack with exit 0: no process, ring file or run dir remains."""
    assert chaos_run.exit_code == 0, chaos_run.ctx()
    assert list(chaos_run.tmp.glob("aegis-*.ring")) == [], chaos_run.ctx()
    assert not (chaos_run.tmp / "run").exists(), chaos_run.ctx()
    assert sorted(p for p in chaos_run.pids_seen if pid_alive(p)) == [], chaos_run.ctx()


@pytest.mark.parametrize("service", SERVICES)
def test_every_replacement_is_forked_by_a_warm_spare(chaos_run, service):
    """Each of the service's ten replacements was forked by its warm spare (the supervisor's
    own log says so), none booted from nothing. How long each took, kill to ready, is measured
    and printed (the table's "over 2 s" column: the issue's target), not asserted: a time
    depends on the machine's load (2.01 s once, with a warm spare, at load 2.9-4.1)."""
    mine = chaos_run.of(service)
    assert len(mine) == KILLS_PER_SERVICE, chaos_run.ctx()
    forked = [(chaos_run.spare_of.get(r.new_pid or -1, "none"), round(r.ready_s, 2)) for r in mine]
    assert [f for f, _ in forked] == ["warm"] * KILLS_PER_SERVICE, (
        f"{service}: (forked by, kill->ready s) {forked}; load average {chaos_run.load_avg}\n" + chaos_run.ctx())


def test_the_run_traded_through_the_kills(chaos_run):
    """Something to check: orders reached the exchange and filled while services were being killed."""
    sim = chaos_run.exchange_state
    assert sim.get("orders"), chaos_run.ctx()
    assert sim.get("fills"), chaos_run.ctx()


def test_no_order_duplicated_and_every_order_matches_the_exchange(chaos_run):
    """Every order the exchange holds was sent once, and the database has it once, with the
    exchange's final status and quantities; orders the exchange never saw never left."""
    sim = chaos_run.exchange_state
    db = sqlite3.connect(chaos_run.db_path)
    try:
        local = {r[0]: r[1:] for r in db.execute(
            "SELECT client_order_id, status, qty, filled_qty FROM orders WHERE status NOT IN ('CANCELED','REJECTED')"
            " OR filled_qty > 0")}
    finally:
        db.close()
    cids = [o["clientOrderId"] for o in sim.get("orders", [])]
    assert len(cids) == len(set(cids)), "an order was sent twice\n" + chaos_run.ctx()
    for o in sim.get("orders", []):
        assert o["clientOrderId"] in local, (o, chaos_run.ctx())
        status, qty, filled = local[o["clientOrderId"]]
        assert status == o["status"], (o, chaos_run.ctx())
        assert Decimal(repr(qty)) == Decimal(o["origQty"]), (o, chaos_run.ctx())
        assert Decimal(repr(filled)) == Decimal(o["executedQty"]), (o, chaos_run.ctx())
    assert set(local) == set(cids), chaos_run.ctx()


def test_no_fill_lost_or_duplicated(chaos_run):
    """The fills table is exactly the exchange's fills: each once, none missing, none extra."""
    sim = chaos_run.exchange_state
    db = sqlite3.connect(chaos_run.db_path)
    try:
        mine = {(r[0], r[1]): (r[2], Decimal(repr(r[3])), Decimal(repr(r[4]))) for r in db.execute(
            "SELECT symbol, trade_id, client_order_id, qty, price FROM fills")}
    finally:
        db.close()
    theirs = {(f["symbol"], str(f["id"])): (f["clientOrderId"], Decimal(f["qty"]), Decimal(f["price"]))
              for f in sim.get("fills", [])}
    assert mine == theirs, chaos_run.ctx()


def test_positions_equal_the_exchanges(chaos_run):
    sim = chaos_run.exchange_state
    db = sqlite3.connect(chaos_run.db_path)
    try:
        mine = {r[0]: Decimal(repr(r[1])) for r in db.execute("SELECT symbol, qty FROM positions") if r[1] != 0}
    finally:
        db.close()
    theirs = {p["symbol"]: Decimal(p["qty"]) for p in sim.get("positions", []) if Decimal(p["qty"]) != 0}
    assert mine == theirs, chaos_run.ctx()


def test_positions_never_exceeded_three_at_once(chaos_run):
    """The exchange's fills replayed in time order: never more than three symbols open."""
    held: dict[str, Decimal] = {}
    most = 0
    for f in sorted(chaos_run.exchange_state.get("fills", []), key=lambda f: (f["time"], f["id"])):
        q = Decimal(f["qty"]) * (1 if f["side"] == "BUY" else -1)
        held[f["symbol"]] = held.get(f["symbol"], Decimal(0)) + q
        most = max(most, sum(1 for v in held.values() if v != 0))
    assert most <= 3, chaos_run.ctx()


def test_the_order_in_flight_when_the_brain_died_exists_once_and_matches_the_exchange(chaos_run):
    """Killed while the sim held its answer: after the restarts, one such order at the exchange,
    and the database holds it with the exchange's status and fills."""
    cid = chaos_run.in_flight_cid
    assert cid, f"no order in time for the in-flight kill\n{chaos_run.ctx()}"
    sim = chaos_run.exchange_state
    mine = [o for o in sim.get("orders", []) if o["clientOrderId"] == cid]
    assert len(mine) == 1, chaos_run.ctx()
    db = sqlite3.connect(chaos_run.db_path)
    try:
        (status, filled), = db.execute("SELECT status, filled_qty FROM orders WHERE client_order_id=?", (cid,))
        fills = db.execute("SELECT COUNT(*) FROM fills WHERE client_order_id=?", (cid,)).fetchone()[0]
        signals = db.execute("SELECT COUNT(*) FROM signals").fetchone()[0]
    finally:
        db.close()
    assert status == mine[0]["status"], chaos_run.ctx()
    assert Decimal(repr(filled)) == Decimal(mine[0]["executedQty"]), chaos_run.ctx()
    assert fills == sum(1 for f in sim.get("fills", []) if f["clientOrderId"] == cid) >= 1, chaos_run.ctx()
    assert signals >= 1  # the order came from a signal the brain journaled


def test_every_entry_in_the_database_has_its_signal(chaos_run):
    """No entry order without the signal it came from, through 40 kills (a brain killed while
    the exchange held its entry's answer once left one: the signal is now published before the
    entry's journal row and kept in its intent record)."""
    db = sqlite3.connect(chaos_run.db_path)
    try:
        entries = db.execute("SELECT COUNT(*) FROM orders WHERE reduce_only = 0").fetchone()[0]
        orphans = [r[0] for r in db.execute(
            "SELECT client_order_id FROM orders o WHERE reduce_only = 0 AND NOT EXISTS "
            "(SELECT 1 FROM signals s WHERE s.signal_id = o.signal_id)")]
    finally:
        db.close()
    assert entries >= 1 and orphans == [], (orphans, chaos_run.ctx())


def test_the_api_key_and_secret_never_reach_a_log_line(chaos_run):
    """Every process logged at info level, JSON, for the whole run, through 40 kills: neither
    fake credential appears, nor in the database the run left."""
    assert chaos_run.log_line_count > 100  # there is a log to search
    assert chaos_run.secret_seen == []
    blob = chaos_run.db_path.read_bytes()
    assert FAKE_KEY.encode() not in blob and FAKE_SECRET.encode() not in blob
