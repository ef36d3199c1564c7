"""Storage faults: which write errors mean "the disk cannot take it" (not a crash), and the
test-only hook that makes a connection fail like a full disk."""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest

from services.orchestrator import db, storage
from services.orchestrator.storage import StorageFault


def sqlite_error(message: str, code: int | None = None, cls: type = sqlite3.OperationalError) -> sqlite3.Error:
    exc = cls(message)
    if code is not None:
        exc.sqlite_errorcode = code  # what Python 3.11+ sets from SQLite's extended result code
    return exc


class TestClassify:
    @pytest.mark.parametrize("exc, expected", [
        (sqlite_error("database or disk is full"), StorageFault.DISK_FULL),
        (sqlite_error("attempt to write a readonly database"), StorageFault.READ_ONLY),
        (sqlite_error("disk I/O error"), StorageFault.IO_ERROR),
        (sqlite_error("unable to open database file"), StorageFault.IO_ERROR),
        (sqlite_error("anything", code=13), StorageFault.DISK_FULL),  # SQLITE_FULL
        (sqlite_error("anything", code=8), StorageFault.READ_ONLY),  # SQLITE_READONLY
        (sqlite_error("anything", code=1032), StorageFault.READ_ONLY),  # SQLITE_READONLY_DBMOVED
        (sqlite_error("anything", code=778), StorageFault.IO_ERROR),  # SQLITE_IOERR_WRITE
        (sqlite_error("anything", code=1290), StorageFault.IO_ERROR),  # SQLITE_IOERR_DIR_FSYNC
        (sqlite_error("anything", code=14), StorageFault.IO_ERROR),  # SQLITE_CANTOPEN
        (OSError(errno.ENOSPC, "No space left on device"), StorageFault.DISK_FULL),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), StorageFault.DISK_FULL),
        (OSError(errno.EROFS, "Read-only file system"), StorageFault.READ_ONLY),
        (OSError(errno.EACCES, "Permission denied"), StorageFault.READ_ONLY),
        (OSError(errno.EIO, "Input/output error"), StorageFault.IO_ERROR),
    ])
    def test_storage_errors_are_named(self, exc, expected):
        """Full, read-only and failing storage each get their reason, by SQLite code or by text."""
        assert storage.classify(exc) is expected

    @pytest.mark.parametrize("exc", [
        sqlite_error("database is locked"),
        sqlite_error("database is locked", code=5),  # SQLITE_BUSY: another writer, not the disk
        sqlite_error("out of memory", code=3082),  # SQLITE_IOERR_NOMEM: memory, not storage
        sqlite_error("UNIQUE constraint failed: orders.client_order_id", code=1555, cls=sqlite3.IntegrityError),
        sqlite_error("near \"INSRT\": syntax error", code=1),
        OSError(errno.ENOENT, "No such file or directory"),
        ValueError("database or disk is full"),  # the words alone, outside sqlite/OS errors, are not enough
        None,
    ])
    def test_other_errors_are_not_storage_faults(self, exc):
        """A bug, a lock or a missing file stays what it is: None (raised as before)."""
        assert storage.classify(exc) is None

    def test_an_error_raised_while_handling_a_full_disk_is_classified_by_the_full_disk(self):
        """A failed ROLLBACK after a failed write (SQLite had rolled back itself) does not hide the cause."""
        try:
            try:
                raise sqlite_error("database or disk is full", code=13)
            except sqlite3.OperationalError:
                raise sqlite_error("cannot rollback - no transaction is active", code=1)
        except sqlite3.OperationalError as exc:
            assert storage.classify(exc) is StorageFault.DISK_FULL

    def test_a_real_read_only_database_is_read_only(self, tmp_path):
        """SQLite's own error for a write to a database opened read-only classifies as READ_ONLY."""
        db.connect(tmp_path / "a.sqlite3").close()
        ro = sqlite3.connect(f"file:{tmp_path / 'a.sqlite3'}?mode=ro", uri=True, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError) as err:
            ro.execute("INSERT INTO meta VALUES ('k', 'v')")
        ro.close()
        assert storage.classify(err.value) is StorageFault.READ_ONLY

    def test_reasons_are_the_trading_halt_codes(self):
        """The three reasons are the codes the trading permission carries."""
        assert storage.REASONS == {"JOURNAL_DISK_FULL", "JOURNAL_READ_ONLY", "JOURNAL_IO_ERROR"}


class TestFreeBytes:
    def test_free_bytes_is_what_statvfs_says_for_the_nearest_existing_directory(self, tmp_path):
        """A database path that does not exist yet is measured on its nearest existing parent."""
        st = os.statvfs(tmp_path)
        got = storage.free_bytes(tmp_path / "not" / "yet" / "aegis.sqlite3")
        st2 = os.statvfs(tmp_path)
        assert min(st.f_bavail, st2.f_bavail) * st.f_frsize <= got <= max(st.f_bavail, st2.f_bavail) * st.f_frsize


class TestFaultInjection:
    def test_writes_fail_like_a_full_disk_while_the_file_exists_and_reads_still_work(self, tmp_path):
        """The test-only hook: SQLite's own message while the flag file exists, nothing once it is gone."""
        flag = tmp_path / "full"
        conn = storage.FaultInjection(db.connect(tmp_path / "a.sqlite3"), flag)
        flag.touch()
        with pytest.raises(sqlite3.OperationalError, match="^database or disk is full$") as err:
            db.write_batch(conn, [("INSERT INTO meta VALUES (?, ?)", ("k", "v"))])
        assert storage.classify(err.value) is StorageFault.DISK_FULL
        assert not conn.in_transaction  # rolled back
        assert conn.execute("SELECT COUNT(*) FROM meta WHERE key='k'").fetchone() == (0,)
        flag.unlink()
        assert db.write_batch(conn, [("INSERT INTO meta VALUES (?, ?)", ("k", "v"))]) == 1
        assert conn.injected == 1


class TestStartUp:
    def test_a_run_directory_the_disk_refuses_ends_the_orchestrator_with_74(self, tmp_path, capsys):
        """Cannot write its run directory at start: one line naming the path, exit code 74 (never
        restarted by the supervisor); any other OSError is raised as before."""
        from services.orchestrator.app import storage_fault_at_start

        assert storage_fault_at_start(OSError(errno.ENOSPC, "No space left on device"), tmp_path) == 74
        err = capsys.readouterr().err.splitlines()[-1]  # after the log line, when logging goes to stderr
        assert err.startswith(f"aegis orchestrator: JOURNAL_DISK_FULL: cannot write {tmp_path}: [Errno 28] "
                              "No space left on device (")
        with pytest.raises(FileNotFoundError):
            storage_fault_at_start(FileNotFoundError(errno.ENOENT, "No such file or directory"), tmp_path)
