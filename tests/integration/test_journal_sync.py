"""Journal-then-act: the synchronous journal acknowledges only what the database committed."""

from __future__ import annotations

import threading

import pytest

from common import bus, wire, zmqutil
from common.errors import TransientError
from services.orchestrator import db, storage
from services.orchestrator import journal as jn
from services.orchestrator.app import serve_sync


def order(i: int, reduce_only: bool = False) -> wire.OrderRequest:
    return wire.OrderRequest(client_order_id=f"{'ax' if reduce_only else 'ae'}-S{i}-0", symbol="BTCUSDT",
                             side="BUY", order_type="MARKET", qty=0.01, signal_id=f"S{i}", reduce_only=reduce_only)


def writer_at(path, flag=None) -> jn.JournalWriter:
    connect = db.connect if flag is None else (lambda p: storage.FaultInjection(db.connect(p), flag))
    w = jn.JournalWriter(path, jn.WriterConfig(), connect=connect)
    assert w.open()
    return w


def serve(ep: str, writer: jn.JournalWriter, stop: threading.Event, stats: dict) -> None:
    sock = zmqutil.router(ep)
    tracker = wire.SequenceTracker()
    try:
        while not stop.is_set():
            if sock.poll(20):
                serve_sync(sock, writer, tracker, stats)
    finally:
        sock.close()


def test_every_acknowledged_order_is_in_the_database(short_tmp):
    """100 orders written synchronously: each write returns only after its row is committed."""
    ep = f"ipc://{short_tmp / 'j.sync'}"
    writer = writer_at(short_tmp / "a.sqlite3")
    conn = writer.conn
    stop, stats = threading.Event(), {"sync_acked": 0, "sync_refused": 0}
    t = threading.Thread(target=serve, args=(ep, writer, stop, stats))
    t.start()
    client = bus.SyncJournal("brain", ep, timeout_ms=2_000)
    try:
        for i in range(100):
            seq = client.write(order(i))
            assert seq == i + 1
            # the row is there the moment the write returned (same connection as the writer)
            row = conn.execute("SELECT status FROM orders WHERE client_order_id=?", (f"ae-S{i}-0",)).fetchone()
            assert row == ("NEW_LOCAL",)
        assert client.acked == 100 and stats["sync_acked"] == 100
    finally:
        stop.set(), t.join(5), client.close(), zmqutil.term()
        conn.close()


def test_no_writer_means_no_ack_and_a_transient_error(short_tmp):
    """Nobody listens: the caller gets TransientError after its attempts, and must not act."""
    client = bus.SyncJournal("brain", f"ipc://{short_tmp / 'none.sync'}", timeout_ms=100, attempts=2)
    try:
        with pytest.raises(TransientError, match="did not acknowledge"):
            client.write(order(1))
        assert client.failed == 1 and client.acked == 0
    finally:
        client.close(), zmqutil.term()


def test_a_resent_order_after_a_lost_ack_is_written_once(short_tmp):
    """The writer comes up late: the first attempt queues, the re-send follows; one row."""
    ep = f"ipc://{short_tmp / 'late.sync'}"
    writer = writer_at(short_tmp / "b.sqlite3")
    conn = writer.conn
    client = bus.SyncJournal("brain", ep, timeout_ms=300, attempts=5)
    stop, stats = threading.Event(), {"sync_acked": 0, "sync_refused": 0}
    t = threading.Timer(0.5, lambda: serve(ep, writer, stop, stats))
    t.start()
    try:
        assert client.write(order(7)) == 1
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (1,)
    finally:
        stop.set(), t.join(5), client.close(), zmqutil.term()
        conn.close()


def test_a_full_disk_acknowledges_nothing_and_names_itself(short_tmp):
    """Disk full: an entry and an exit are both refused with JOURNAL_DISK_FULL (the caller must
    not act on the journal's word: the brain then refuses the entry and sends the exit on its
    own); nothing reached the database; once space returns the same exit is acknowledged."""
    ep = f"ipc://{short_tmp / 'full.sync'}"
    flag = short_tmp / "disk-full"
    writer = writer_at(short_tmp / "c.sqlite3", flag)
    conn = writer.conn
    stop, stats = threading.Event(), {"sync_acked": 0, "sync_refused": 0}
    t = threading.Thread(target=serve, args=(ep, writer, stop, stats))
    t.start()
    client = bus.SyncJournal("brain", ep, timeout_ms=2_000, attempts=1)
    try:
        flag.touch()
        with pytest.raises(TransientError, match="^journal refused OrderRequest: JOURNAL_DISK_FULL$"):
            client.write(order(1, reduce_only=True))
        with pytest.raises(TransientError, match="^journal refused OrderRequest: JOURNAL_DISK_FULL$"):
            client.write(order(2))
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)
        flag.unlink()
        assert client.write(order(1, reduce_only=True)) == 3
        assert conn.execute("SELECT client_order_id, reduce_only FROM orders").fetchall() == [("ax-S1-0", 1)]
        assert (client.acked, client.failed, stats["sync_acked"], stats["sync_refused"]) == (1, 2, 1, 2)
    finally:
        stop.set(), t.join(5), client.close(), zmqutil.term()
        conn.close()
