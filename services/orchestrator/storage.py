"""Storage faults: which write errors mean "the disk cannot take it", told apart from bugs.

A write that fails because the filesystem is full, read-only or failing is not a crash: a
restart cannot fix it, and restarting would throw away what the writer still holds in
memory. ``classify`` names such an error (pure: an exception in, a reason out); every other
error is ``None`` and stays what it was (a bug, raised as before).

    sqlite3 error code (base)   message (when no code)          reason
    SQLITE_FULL (13)            "database or disk is full"      JOURNAL_DISK_FULL
    SQLITE_READONLY (8)         "attempt to write a readonly"   JOURNAL_READ_ONLY
    SQLITE_IOERR (10)*          "disk I/O error"                JOURNAL_IO_ERROR
    SQLITE_CANTOPEN (14)        "unable to open database file"  JOURNAL_IO_ERROR
    OSError ENOSPC, EDQUOT                                      JOURNAL_DISK_FULL
    OSError EROFS, EACCES, EPERM                                JOURNAL_READ_ONLY
    OSError EIO                                                 JOURNAL_IO_ERROR

    * except SQLITE_IOERR_NOMEM (3082): out of memory, not storage.

SQLite turns a write that failed with ENOSPC into SQLITE_FULL (os_unix.c, unixWrite), so a
full disk is nearly always the first row. An error raised while another was being handled
(a failed ROLLBACK after a failed write) is classified by the error underneath it.

``FaultInjection`` is a test-only hook (``orchestrator.fault_disk_full_file``): while that
file exists, every write through the connection fails exactly as a full disk makes SQLite
fail. Never set it outside tests.
"""

from __future__ import annotations

import enum
import errno
import os
import sqlite3
from pathlib import Path
from typing import Any


class StorageFault(str, enum.Enum):
    DISK_FULL = "JOURNAL_DISK_FULL"
    READ_ONLY = "JOURNAL_READ_ONLY"
    IO_ERROR = "JOURNAL_IO_ERROR"


REASONS = frozenset(f.value for f in StorageFault)  # the trading-halt reasons a storage fault gives

_SQLITE_CODES = {13: StorageFault.DISK_FULL, 8: StorageFault.READ_ONLY, 10: StorageFault.IO_ERROR,
                 14: StorageFault.IO_ERROR}
_SQLITE_IOERR_NOMEM = 3082
_SQLITE_TEXT = (("database or disk is full", StorageFault.DISK_FULL),
                ("readonly database", StorageFault.READ_ONLY),
                ("read-only", StorageFault.READ_ONLY),
                ("disk i/o error", StorageFault.IO_ERROR),
                ("unable to open database file", StorageFault.IO_ERROR))
_OS_ERRNOS = {errno.ENOSPC: StorageFault.DISK_FULL, errno.EDQUOT: StorageFault.DISK_FULL,
              errno.EROFS: StorageFault.READ_ONLY, errno.EACCES: StorageFault.READ_ONLY,
              errno.EPERM: StorageFault.READ_ONLY, errno.EIO: StorageFault.IO_ERROR}


def classify(exc: BaseException | None) -> StorageFault | None:
    """The storage fault ``exc`` means, or None when it is not one (pure)."""
    seen = 0
    while exc is not None and seen < 4:  # the error itself, then what it interrupted
        fault = _classify_one(exc)
        if fault is not None:
            return fault
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _classify_one(exc: BaseException) -> StorageFault | None:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            if code == _SQLITE_IOERR_NOMEM:
                return None
            if (code & 0xFF) in _SQLITE_CODES:
                return _SQLITE_CODES[code & 0xFF]
        text = str(exc).lower()
        for needle, fault in _SQLITE_TEXT:
            if needle in text:
                return fault
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return _OS_ERRNOS.get(exc.errno)
    return None


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on the filesystem holding ``path`` (its
    nearest existing parent); -1 when that cannot be asked."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


# ---------------------------------------------------------------------------- test-only hook
DISK_FULL_MESSAGE = "database or disk is full"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "COMMIT", "PRAGMA WAL_CHECKPOINT", "CREATE")


class FaultInjection:
    """A connection that behaves like ``sqlite3.Connection`` except that, while ``flag_file``
    exists, each write statement raises ``sqlite3.OperationalError("database or disk is
    full")``, as SQLite does on a full disk (reads still work). TEST ONLY: wired by
    ``orchestrator.fault_disk_full_file``."""

    def __init__(self, conn: sqlite3.Connection, flag_file: Path) -> None:
        self._conn = conn
        self._flag = Path(flag_file)
        self.injected = 0

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if self._flag.exists() and sql.lstrip().upper().startswith(_WRITES):
            self.injected += 1
            raise sqlite3.OperationalError(DISK_FULL_MESSAGE)
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:  # in_transaction, close, executescript, ...
        return getattr(self._conn, name)
