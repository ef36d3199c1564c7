"""A full disk under a running stack (``aegis run``, private run and data directories).

The disk fills through the orchestrator's test-only hook (``orchestrator.fault_disk_full_file``:
while that file exists every database write fails with SQLite's own "database or disk is
full"), and space returns when the test removes it. The test plays a second trader beside the
real brain: a synchronous journal client (orders, journal-then-act) and a journal PUSH
publisher, exactly the two paths the brain's execution uses, so every refusal and every kept
message is known to the test and checked in the database to the row.

An extra test (``AEGIS_TEST_TMPFS=1``) fills a real 1.5 MB tmpfs instead: it is skipped
unless asked for, and then fails loudly if it cannot mount.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from common import bus, service, wire, zmqutil
from common.config import endpoints
from common.errors import TransientError
from services.orchestrator import db
from services.orchestrator import journal as jn
from services.orchestrator.storage import StorageFault
from tests.conftest import REPO, stack_env

pytestmark = pytest.mark.integration
WAIT_S = 120.0  # a loaded two-core machine starts the stack in 10-50 s


def wait_for(what: str, fn, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (OSError, ValueError, KeyError):
            last = None
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def ready(run: Path, name: str) -> bool:
    return service.live_pid(run / f"{name}.ready") is not None


def status(run: Path) -> dict:
    url = (run / "monitor.url").read_text().strip()
    with urllib.request.urlopen(f"{url}/status", timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def metrics(run: Path) -> str:
    url = (run / "monitor.url").read_text().strip()
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:  # noqa: S310 - loopback
        return r.read().decode()


def orch(run: Path) -> dict:
    return status(run)["services"]["orchestrator"]["counters"]


def read_db(path: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def order(i: int, reduce_only: bool = False) -> wire.OrderRequest:
    return wire.OrderRequest(client_order_id=f"{'ax' if reduce_only else 'ae'}-T{i}-0", symbol="TESTUSDT",
                             side="SELL" if reduce_only else "BUY", order_type="MARKET", qty=0.5,
                             reduce_only=reduce_only, signal_id=f"T{i}")


def candle(i: int) -> wire.CandleClosed:
    return wire.CandleClosed(symbol="TESTUSDT", interval_s=60, open_ms=i * 60_000, close_ms=i * 60_000 + 59_999,
                             open=1.0, high=2.0, low=0.5, close=1.5, volume=4.0)


def test_a_full_disk_halts_entries_lets_exits_go_and_loses_nothing(procs, short_tmp):
    """Disk full under a running stack: one clear error, entries halted with JOURNAL_DISK_FULL in
    status, metrics, the brain and the summary; an exit refused by the journal is journaled later
    exactly once; no restart; space returns and every kept message is written once; a run that
    ends while full exits 4 and spills what it kept, which the next start writes once."""
    flag, spill = short_tmp / "disk-full", short_tmp / "spill"
    run, data = short_tmp / "run", short_tmp / "data"
    dbf = data / "aegis.sqlite3"
    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="2", AEGIS_SUPERVISOR__WARM_SPARES="false",
                    AEGIS_ORCHESTRATOR__FAULT_DISK_FULL_FILE=str(flag),
                    AEGIS_ORCHESTRATOR__JOURNAL_SPILL_DIR=str(spill),
                    AEGIS_ORCHESTRATOR__JOURNAL_RETRY_MAX_S="1")
    summary, log_file = short_tmp / "summary.json", short_tmp / "stack.log"
    with open(log_file, "wb") as err:
        p = procs.python("-m", "common.cli", "run", "--duration", "400", "--no-status", "--log-format", "json",
                         "--summary-json", str(summary), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    for name in ("orchestrator", "brain", "feed"):
        wait_for(f"{name} ready", lambda n=name: ready(run, n))
    ep = endpoints(run)
    push = bus.Publisher.connect_journal("tester", ep.journal)
    sync = bus.SyncJournal("tester", ep.journal_sync, timeout_ms=5_000, attempts=1)
    try:
        assert sync.write(order(1)) == 1  # healthy: acknowledged once committed
        assert read_db(dbf, "SELECT status FROM orders WHERE client_order_id='ae-T1-0'") == [("NEW_LOCAL",)]

        # ---- the disk fills
        flag.touch()
        push.publish(candle(1))
        halted = wait_for("entries halted", lambda: (status(run).get("trading") or {}).get("reason")
                          == "JOURNAL_DISK_FULL" and status(run))
        detail = halted["trading"]["detail"]
        assert detail.startswith(f"cannot write {dbf}: database or disk is full (") and detail.endswith(" bytes free)")
        assert halted["trading"]["allowed"] is False
        wait_for("orchestrator heartbeat DEGRADED", lambda: status(run)["services"]["orchestrator"]["state"]
                 == "DEGRADED")
        m = metrics(run)
        assert 'aegis_trading_allowed{reason="JOURNAL_DISK_FULL"} 0.0' in m
        wait_for("journal_ok 0 in metrics", lambda: 'aegis_service_value{name="journal_ok",service="orchestrator"} 0.0'
                 in metrics(run))
        cli = subprocess.run([sys.executable, "-m", "common.cli", "status", "--run-dir", str(run)], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 1  # degraded
        assert f"entries: HALTED JOURNAL_DISK_FULL: cannot write {dbf}: database or disk is full (" in cli.stdout
        # the real brain has the typed permission: its entries are refused with this reason
        block = wait_for("the brain's block reason", lambda: (service.read_stats(run, "brain")[-1]["execution"]
                                                             or {}).get("block_reason", "").startswith(
                                                                 "JOURNAL_DISK_FULL: cannot write")
                         and service.read_stats(run, "brain")[-1]["execution"]["block_reason"], timeout_s=30)
        assert block.startswith(f"JOURNAL_DISK_FULL: cannot write {dbf}: database or disk is full (")

        # an entry is refused, not acknowledged
        with pytest.raises(TransientError, match="^journal refused OrderRequest: JOURNAL_DISK_FULL$"):
            sync.write(order(2))
        # an exit: the journal cannot take it first, so (as the brain does) it is sent anyway and
        # journaled through the buffered path, with what followed from the exchange
        with pytest.raises(TransientError, match="^journal refused OrderRequest: JOURNAL_DISK_FULL$"):
            sync.write(order(3, reduce_only=True))
        push.publish(order(3, reduce_only=True))
        push.publish(wire.OrderUpdate(client_order_id="ax-T3-0", exchange_order_id="7001", symbol="TESTUSDT",
                                      status="FILLED", filled_qty=0.5, avg_price=101.0))
        push.publish(wire.Fill(client_order_id="ax-T3-0", exchange_order_id="7001", trade_id="T3-1",
                               symbol="TESTUSDT", side="SELL", qty=0.5, price=101.0))
        push.publish(candle(2))
        wait_for("5 test messages kept", lambda: orch(run)["journal_pending"] >= 5, timeout_s=30)
        assert read_db(dbf, "SELECT COUNT(*) FROM orders WHERE client_order_id LIKE '%-T%'") == [(1,)]
        assert read_db(dbf, "SELECT COUNT(*) FROM fills WHERE trade_id='T3-1'") == [(0,)]

        # ---- space returns
        flag.unlink()
        wait_for("journal written", lambda: orch(run)["journal_ok"] == 1.0 and orch(run)["journal_pending"] == 0,
                 timeout_s=60)
        wait_for("entries no longer halted by the journal",
                 lambda: (status(run).get("trading") or {}).get("reason", "") != "JOURNAL_DISK_FULL", timeout_s=30)
        rows = read_db(dbf, "SELECT client_order_id, reduce_only, status, filled_qty FROM orders"
                            " WHERE client_order_id LIKE '%-T%' ORDER BY client_order_id")
        assert rows == [("ae-T1-0", 0, "NEW_LOCAL", 0.0), ("ax-T3-0", 1, "FILLED", 0.5)]  # no ae-T2: refused
        assert read_db(dbf, "SELECT trade_id, qty, price FROM fills WHERE symbol='TESTUSDT'") == [("T3-1", 0.5, 101.0)]
        assert read_db(dbf, "SELECT open_ms FROM candles WHERE symbol='TESTUSDT' ORDER BY open_ms") == [
            (60_000,), (120_000,)]
        seqs = dict(read_db(dbf, "SELECT stream, seq FROM journal_seq WHERE stream LIKE 'tester:%'"))
        assert seqs == {f"{push.name}/CANDLE_CLOSED": 2, f"{push.name}/ORDER_REQUEST": 1,
                        f"{push.name}/ORDER_UPDATE": 1, f"{push.name}/FILL": 1, f"{sync.name}/ORDER_REQUEST": 1}
        c = orch(run)
        assert c["journal_kept"] == c["journal_written_late"] >= 5 and c["journal_dropped_candles"] == 0
        assert c["journal_faults"] == 1

        # ---- full again, and the run ends so
        flag.touch()
        push.publish(candle(3))
        wait_for("halted again", lambda: (status(run).get("trading") or {}).get("reason") == "JOURNAL_DISK_FULL")
    finally:
        push.close()
        sync.close()
        zmqutil.term()
    p.send_signal(signal.SIGINT)
    assert p.wait(120) == 4
    s = json.loads(summary.read_text())
    assert (s["exit_code"], s["exit_reason"]) == (4, "the journal could not write to its disk: entries halted")
    j = s["journal"]
    assert (j["state"], j["reason"], j["faults"], j["lost_at_stop"]) == ("DEGRADED", "JOURNAL_DISK_FULL", 2, 0)
    assert j["detail"].startswith(f"cannot write {dbf}: database or disk is full (")
    assert j["spilled_at_stop"] >= 1 and s["trading_halt_reason"] == "JOURNAL_DISK_FULL"
    assert s["restarts"] == {"exchange_sim": 0, "orchestrator": 0, "brain": 0, "feed": 0, "dashboard": 0}
    events = [json.loads(line).get("event") for line in log_file.read_text().splitlines() if line.startswith('{"')]
    assert events.count("orchestrator.journal_write_failed") == 2  # one clear line per fault
    assert "OperationalError" not in log_file.read_text()  # no crash, no traceback of the fault

    # ---- the next start writes the spilled messages once, before anything new
    flag.unlink()
    w = jn.JournalWriter(dbf, jn.WriterConfig(spill_dir=str(spill)))
    try:
        assert w.open()
        assert len(w.pending) == j["spilled_at_stop"]
        assert w.flush() == j["spilled_at_stop"]
    finally:
        w.close()
    assert read_db(dbf, "SELECT open_ms FROM candles WHERE symbol='TESTUSDT' ORDER BY open_ms") == [
        (60_000,), (120_000,), (180_000,)]
    assert read_db(dbf, f"SELECT seq FROM journal_seq WHERE stream='{push.name}/CANDLE_CLOSED'") == [(3,)]
    assert not list(spill.glob("journal-spill-*.bin"))


# ---------------------------------------------------------------------------- a real full disk
def _mount_tmpfs(where: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], check=True,
                   capture_output=True)


def test_a_real_full_tmpfs_is_disk_full_and_nothing_is_lost_when_it_grows(short_tmp):
    """On a real 1.5 MB tmpfs the writer's first failure is JOURNAL_DISK_FULL with the free
    space measured; after the filesystem grows every kept candle is written exactly once.
    Runs only with AEGIS_TEST_TMPFS=1 (it mounts, so it needs root), and then fails if it cannot."""
    if os.environ.get("AEGIS_TEST_TMPFS") != "1":
        pytest.skip("mounts a tmpfs: set AEGIS_TEST_TMPFS=1 (as root) to run it")
    mnt = short_tmp / "mnt"
    mnt.mkdir()
    try:
        _mount_tmpfs(mnt, "1500k")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"AEGIS_TEST_TMPFS=1 but mounting a tmpfs failed: {getattr(exc, 'stderr', b'')!r} {exc}")
    w = jn.JournalWriter(mnt / "aegis.sqlite3", jn.WriterConfig(batch=500, max_pending=1_000_000))
    try:
        assert w.open()
        sent = 0
        while w.ok:
            envs = [wire.Envelope(wire.SCHEMA_VERSION, "brain:1-1", sent + k + 1, 1, 2, candle(sent + k + 1))
                    for k in range(500)]
            w.add(envs)
            sent += len(envs)
            w.flush()
            assert sent < 200_000, "the tmpfs never filled"
        assert w.fault.reason is StorageFault.DISK_FULL
        assert 0 <= w.fault.free_bytes < 64 * 1024
        kept = len(w.pending)
        assert kept >= 1
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True, capture_output=True)
        while w.pending:
            assert w.flush(force=True) > 0
        assert w.ok
        assert w.conn.execute("SELECT COUNT(*), MIN(open_ms), MAX(open_ms) FROM candles").fetchone() == (
            sent, 60_000, sent * 60_000)
        assert db.load_sequences(w.conn) == {"brain:1-1/CANDLE_CLOSED": sent}
        assert db.integrity_ok(w.conn)
    finally:
        w.close()
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
