"""Logging: structlog, configured once per process after it starts.

- Root level WARNING by default (``--log-level`` / ``log.level`` changes it).
- Console (human) or JSON (one object a line) rendering, to stderr.
- The first processor redacts secrets: any value equal to or containing a known secret,
  and any field whose name looks secret (``api_key``, ``secret``, ``signature``, ...),
  becomes ``"***"`` before anything else can see it.
- ``RateLimiter`` keeps a noisy warning (a bad frame every millisecond) to one line per
  reason per period, while the counters still count every occurrence.
"""

from __future__ import annotations

import logging
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import structlog

REDACTED = "***"
_SECRET_KEY = re.compile(r"(secret|api[_-]?key|apikey|signature|password|passphrase|token|private)", re.I)
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}


def make_redactor(secrets: Iterable[str]):
    """A structlog processor that scrubs ``secrets`` (and secret-named fields) from an event."""
    known = tuple(s for s in secrets if s and len(s) >= 4)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            for s in known:
                if s in value:
                    value = value.replace(s, REDACTED)
            return value
        if isinstance(value, bytes):
            return scrub(value.decode("utf-8", "replace"))
        if isinstance(value, dict):
            return {k: (REDACTED if _SECRET_KEY.search(str(k)) else scrub(v)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(scrub(v) for v in value)
        if isinstance(value, BaseException):
            return scrub(repr(value))
        return value

    def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {k: (REDACTED if _SECRET_KEY.search(k) else scrub(v)) for k, v in event_dict.items()}

    return redact


def configure(*, level: str = "warning", fmt: str = "console", service: str = "aegis",
              secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger for this process."""
    lvl = LEVELS.get(level.lower(), logging.WARNING)
    out = stream if stream is not None else _CurrentStderr()
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    redact = make_redactor(secrets)
    processors: list[Any] = [
        redact,  # first: nothing downstream ever sees a secret
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
        structlog.processors.format_exc_info,
        redact,  # again: a formatted traceback may quote a secret
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        # one write a line (the line and its newline together): with PYTHONUNBUFFERED each
        # write reaches the file at once, and print's two writes let another process's line
        # land between a line and its newline in a shared log file
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # libraries that use the stdlib (websockets, aiohttp, ccxt) go through the same gate
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(out)
    handler.addFilter(_StdlibRedactFilter(tuple(secrets)))
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(lvl)


@contextmanager
def quieted(level: str = "warning") -> Iterator[None]:
    """structlog drops events below ``level`` inside the block; afterwards its configuration
    is what it was before (renderer, stream and level alike).

    For a command's shell (``aegis backtest``, ``sweep``, a Ray worker running tasks): the
    library functions it calls never change the process's logging themselves, so a caller
    that runs them in its own process (a test, the bench) keeps its own configuration.
    """
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level.lower()]))
    try:
        yield
    finally:
        structlog.configure(**before)


class _CurrentStderr:
    """``sys.stderr`` as it is at each write, not as it was when logging was configured: a
    test runner (or anything else) may swap the stream later, and a handler that kept the old
    one would write into a closed file.

    A stream that cannot be written any more (the terminal closed: EIO; a closed pipe:
    EPIPE) loses the line instead of raising into the caller: a log line must never stop a
    process from stopping in order.
    """

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (OSError, ValueError):  # ValueError: the stream was closed
            return 0

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _add_service(service: str):
    def add(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return add


class _StdlibRedactFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            msg = record.getMessage()
            for s in self._secrets:
                msg = msg.replace(s, REDACTED)
            record.msg, record.args = msg, None
        return True


@dataclass
class RateLimiter:
    """At most one ``allow`` per key per ``period_s``; counts what it suppressed.

    Time comes in as an argument (no clock inside), so tests drive it deterministically.
    """

    period_s: float = 60.0
    _last: dict[str, float] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)

    def allow(self, key: str, now_s: float) -> bool:
        last = self._last.get(key)
        if last is None or now_s - last >= self.period_s:
            self._last[key] = now_s
            return True
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        return False
