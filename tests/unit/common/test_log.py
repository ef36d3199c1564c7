"""Logging: secrets never reach a log line; the rate limiter is exact."""

from __future__ import annotations

import io
import logging

import structlog

from common import log as logmod

SECRET = "FAKEKEY-0123456789abcdef"


def capture(fmt="json"):
    buf = io.StringIO()
    logmod.configure(level="info", fmt=fmt, service="test", secrets=(SECRET,), stream=buf)
    return buf


class TestRedaction:
    def test_secret_value_is_redacted_in_any_field(self):
        """A secret inside any string field is replaced by *** before rendering."""
        buf = capture()
        structlog.get_logger("t").warning("x.y", url=f"https://h/?k={SECRET}", nested={"a": [SECRET]})
        assert SECRET not in buf.getvalue()
        assert "***" in buf.getvalue()

    def test_secret_named_fields_are_redacted(self):
        """Fields named like api_key/signature are hidden whatever their value."""
        buf = capture()
        structlog.get_logger("t").warning("x.y", api_key="whatever", signature="abc123")
        out = buf.getvalue()
        assert "whatever" not in out and "abc123" not in out

    def test_secret_in_exception_traceback_is_redacted(self):
        """A formatted traceback that quotes a secret is scrubbed too."""
        buf = capture(fmt="console")
        try:
            raise RuntimeError(f"auth failed for {SECRET}")
        except RuntimeError:
            structlog.get_logger("t").exception("x.failed")
        assert SECRET not in buf.getvalue()

    def test_stdlib_library_logs_are_redacted(self):
        """Logs of libraries using the stdlib logging module pass through the same gate."""
        buf = capture()
        logging.getLogger("ccxt").warning("request with key %s", SECRET)
        assert SECRET not in buf.getvalue() and "***" in buf.getvalue()


class TestDefaultStream:
    def test_logs_follow_sys_stderr_when_it_is_replaced_after_configure(self, monkeypatch):
        """Configured without a stream, structlog and stdlib logs go to sys.stderr as it is at
        each write: a stream swapped in later gets them, and the one it replaced, closed
        meanwhile, is never written to (it was: 'I/O operation on closed file')."""
        first, second = io.StringIO(), io.StringIO()
        monkeypatch.setattr("sys.stderr", first)
        logmod.configure(level="info", fmt="json", service="test")
        structlog.get_logger("t").warning("before.swap")
        first.close()
        monkeypatch.setattr("sys.stderr", second)
        structlog.get_logger("t").warning("after.swap")
        logging.getLogger("ccxt").warning("stdlib after swap")
        out = second.getvalue()
        assert "after.swap" in out and "stdlib after swap" in out and "before.swap" not in out


class TestOneWriteALine:
    def test_each_line_reaches_the_stream_in_one_write_with_its_newline(self):
        """Processes of a stack share one log file, unbuffered (PYTHONUNBUFFERED): a line
        written in two parts (print: the text, then the newline) let another process's line
        land in between, and a JSON line no longer parsed. One write per line, newline
        included, whatever the line's length."""
        writes: list[str] = []

        class Recorder(io.StringIO):
            def write(self, text: str) -> int:
                writes.append(text)
                return len(text)

        logmod.configure(level="info", fmt="json", service="test", stream=Recorder())
        structlog.get_logger("t").warning("a.line", detail="x" * 20_000)
        structlog.get_logger("t").info("b.line")
        assert len(writes) == 2 and all(w.endswith("\n") and w.count("\n") == 1 for w in writes)


class TestRateLimiter:
    def test_one_allow_per_key_per_period(self):
        """Within the period only the first event of a key passes; the rest are counted."""
        r = logmod.RateLimiter(60.0)
        assert [r.allow("bad_price", t) for t in (0, 1, 59.9, 60, 61)] == [True, False, False, True, False]
        assert r.suppressed["bad_price"] == 3

    def test_keys_are_independent(self):
        """A noisy reason does not silence another reason."""
        r = logmod.RateLimiter(60.0)
        assert r.allow("a", 0) and r.allow("b", 0)


class _GoneTerminal:
    """stderr after the terminal closed: every write and flush fails with EIO."""

    def __init__(self) -> None:
        self.tried: list[str] = []

    def write(self, text: str) -> int:
        self.tried.append(text)
        raise OSError(5, "Input/output error")

    def flush(self) -> None:
        raise OSError(5, "Input/output error")


class TestGoneStream:
    def test_a_log_line_to_a_closed_terminal_is_dropped_not_raised(self, monkeypatch):
        """With stderr gone (EIO), structlog and stdlib log calls return normally: the line is
        lost, the process goes on stopping in order."""
        gone = _GoneTerminal()
        monkeypatch.setattr("sys.stderr", gone)
        saved, root = structlog.get_config(), logging.getLogger()
        handlers, level = list(root.handlers), root.level
        logmod.configure(level="info", fmt="json", service="test")
        try:
            structlog.get_logger("t").warning("x.stopping", step=1)
            logging.getLogger("lib").warning("a library line")
        finally:  # as it was: later tests capture log lines through the same global config
            structlog.configure(**saved)
            root.handlers[:] = handlers
            root.setLevel(level)
        lines = [t for t in gone.tried if t.strip()]  # print() writes the newline on its own
        assert len(lines) == 2 and "x.stopping" in lines[0] and "a library line" in lines[1]
