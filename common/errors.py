"""One small error hierarchy for the whole engine.

Every error we raise on purpose is an ``AegisError``. It is split by what the caller
should do next:

- ``TransientError``: the operation may succeed if retried (network blip, rate limit).
- ``DefinitiveError``: retrying will not help; give up and report (bad input, rejected order).
- ``AmbiguousError``: the outcome is unknown (a timeout after an order was sent): query the
  state first, and only then decide whether to retry.

Decoders raise ``DecodeError`` (definitive) for anything malformed; fuzz tests assert that
nothing but ``AegisError`` subclasses ever escapes a decoder.
"""

from __future__ import annotations


class AegisError(Exception):
    """Base of every error AEGIS raises on purpose."""

    #: short machine-readable reason, used as a counter label
    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TransientError(AegisError):
    """Retry later: the same call may succeed."""

    reason = "transient"


class DefinitiveError(AegisError):
    """Do not retry: the same call will fail the same way."""

    reason = "definitive"


class AmbiguousError(AegisError):
    """Outcome unknown: query the real state before any retry."""

    reason = "ambiguous"


class ConfigError(DefinitiveError):
    """Configuration is invalid (unknown field, wrong type, impossible value)."""

    reason = "config"


class DecodeError(DefinitiveError):
    """A frame, message or record could not be decoded or failed validation."""

    reason = "decode"


class RingError(DefinitiveError):
    """A ring segment is unusable (wrong magic, version, size or layout)."""

    reason = "ring"
