"""The account's state file: written atomically, read once at start.

A chaos test may SIGKILL the sim at any instant; the file must then hold either the last
state or the one before, never a torn mix. So every save writes a temporary file next to
it, fsyncs it, renames it over the old one (atomic on POSIX) and fsyncs the directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from common.errors import DataError, DecodeError
from services.exchange_sim.account import Account, from_json, to_json


class StateFileError(DataError):
    """The state file exists but cannot be used (the sim refuses to start on it)."""


def save(path: Path, acc: Account) -> None:
    data = orjson.dumps(to_json(acc))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: Path) -> Account | None:
    """The saved account, or None when there is no file yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return from_json(orjson.loads(raw))
    except (orjson.JSONDecodeError, DecodeError) as exc:
        raise StateFileError(f"{path}: {exc}") from exc
