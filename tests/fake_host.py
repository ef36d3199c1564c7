"""A stand-in for the execution shell's host (``services.brain.execution_parts.Host``) in
tests that build an ``Execution`` without a brain: each method calls the function the test
gave for it, or a harmless default (no journal, nothing published, no quote, the wall clock)."""

from __future__ import annotations

import time
from typing import Callable, Mapping

from services.brain import risk


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class FnHost:
    """``Host`` made of the functions a test passes; a test may swap one later
    (``rig.ex.host.filters_fn = ...``)."""

    def __init__(self, *, journal_sync: Callable[[object], object] = lambda body: None,
                 publish: Callable[..., None] = lambda body, journal=True: None,
                 quote: Callable[[str], risk.Quote | None] = lambda symbol: None,
                 learn: Callable[[Mapping[str, float], float], None] = lambda features, outcome_r: None,
                 filters_fn: Callable[[], Mapping[str, risk.SymbolFilters]] = dict,
                 symbols_fn: Callable[[], list[str]] = list, clock_ms: Callable[[], int] = _wall_ms,
                 mono_s: Callable[[], float] = time.monotonic, blocked: Callable[[], str] = lambda: "") -> None:
        self.journal_fn, self.publish_fn, self.quote_fn, self.learn_fn = journal_sync, publish, quote, learn
        self.filters_fn, self.symbols_fn, self.clock_fn, self.mono_fn = filters_fn, symbols_fn, clock_ms, mono_s
        self.blocked_fn = blocked

    def journal_sync(self, body: object) -> object:
        return self.journal_fn(body)

    def publish(self, body: object, journal: bool = True) -> None:
        self.publish_fn(body, journal)

    def quote(self, symbol: str) -> risk.Quote | None:
        return self.quote_fn(symbol)

    def learn(self, features: Mapping[str, float], outcome_r: float) -> None:
        self.learn_fn(features, outcome_r)

    def symbol_filters(self) -> Mapping[str, risk.SymbolFilters]:
        return self.filters_fn()

    def symbols(self) -> list[str]:
        return self.symbols_fn()

    def clock_ms(self) -> int:
        return self.clock_fn()

    def mono_s(self) -> float:
        return self.mono_fn()

    def block_reason(self) -> str:
        return self.blocked_fn()
