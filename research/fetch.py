"""HTTP for the archive: a CHECKSUM's text, a zip to a temporary file. The only network code.

A 404 is an answer (the archive does not have that file), returned as None. Network
trouble (a refused or dropped connection, a timeout, a body cut short, HTTP 5xx, 429) is
retried ``attempts`` times with a doubling back-off, then raised as ``TransientError``;
any other HTTP error is a ``DefinitiveError`` (``http_<status>``). A zip is streamed to a
temporary name with its sha256 computed on the way and is only renamed to its final name
when it is complete and matches the sha256 it must have; anything else deletes it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

from common.errors import DefinitiveError, TransientError, parse_retry_after
from research.convert import refuse

log = structlog.get_logger(__name__)
T = TypeVar("T")
USER_AGENT = "aegis-data/1"


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    timeout_s: float = 30.0
    attempts: int = 3  # tries per request before giving up on a transient error
    backoff_s: float = 1.0  # first wait between tries, doubled each time
    chunk_bytes: int = 1 << 20


class Stopped(Exception):
    """The caller's stop event was set while a transfer was running."""


def _open(url: str, cfg: HttpConfig):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(req, timeout=cfg.timeout_s)  # noqa: S310 - http(s) URLs we build


def _classify(url: str, exc: BaseException) -> BaseException:
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code >= 500 or exc.code == 429:
            retry = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            return TransientError(f"{url}: HTTP {exc.code}", reason=f"http_{exc.code}",
                                  http_status=exc.code, retry_after_s=retry or 0.0)
        return DefinitiveError(f"{url}: HTTP {exc.code}", reason=f"http_{exc.code}", http_status=exc.code)
    # network trouble only: a local OSError (a full disk) is not retried and stays an OSError
    if isinstance(exc, (urllib.error.URLError, http.client.HTTPException, socket.timeout,
                        ConnectionError, TimeoutError)):
        return TransientError(f"{url}: {exc}", reason="network")
    return exc


def _with_retries(url: str, cfg: HttpConfig, stop: threading.Event | None,
                  call: Callable[[], T]) -> T:
    wait = cfg.backoff_s
    for attempt in range(1, cfg.attempts + 1):
        if stop is not None and stop.is_set():
            raise Stopped(url)
        try:
            return call()
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - classified right below
            err = _classify(url, exc)
            if not isinstance(err, TransientError) or attempt == cfg.attempts:
                raise err from exc
            log.info("data.http_retry", url=url, attempt=attempt, error=str(err))
            if stop is not None:
                if stop.wait(max(wait, err.retry_after_s)):
                    raise Stopped(url) from None
            else:
                time.sleep(max(wait, err.retry_after_s))
            wait *= 2
    raise AssertionError("unreachable")


def get_text(url: str, cfg: HttpConfig, stop: threading.Event | None = None) -> str | None:
    """The body of ``url`` as text; None when the server answers 404."""
    def call() -> str | None:
        try:
            with _open(url, cfg) as r:
                return r.read(1 << 16).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
    return _with_retries(url, cfg, stop, call)


def download(url: str, dest: Path, *, sha256: str, cfg: HttpConfig,
             stop: threading.Event | None = None) -> int | None:
    """Fetch ``url`` into ``dest`` if its sha256 is ``sha256``; its size, or None on 404.

    The body goes to ``dest`` + ``.part`` first; a sha256 mismatch deletes it and raises
    DecodeError("checksum_mismatch")."""
    part = dest.with_name(dest.name + ".part")

    def call() -> tuple[str, int] | None:
        digest, size = hashlib.sha256(), 0
        try:
            with _open(url, cfg) as r, open(part, "wb") as out:
                while True:
                    if stop is not None and stop.is_set():
                        raise Stopped(url)
                    chunk = r.read(cfg.chunk_bytes)
                    if not chunk:
                        # http.client ends a body cut short by the server silently: check
                        # what the Content-Length still owed (a dropped connection, retried)
                        if getattr(r, "length", None):
                            raise http.client.IncompleteRead(b"", r.length)
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except urllib.error.HTTPError as exc:
            part.unlink(missing_ok=True)
            if exc.code == 404:
                return None
            raise
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return digest.hexdigest(), size

    got = _with_retries(url, cfg, stop, call)
    if got is None:
        return None
    digest, size = got
    if digest != sha256:
        part.unlink(missing_ok=True)
        raise refuse("checksum_mismatch", f"{dest.name}: sha256 {digest} but its CHECKSUM says {sha256}; "
                                          "the file was deleted")
    os.replace(part, dest)
    return size


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
