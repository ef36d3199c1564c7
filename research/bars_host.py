"""A backtest as the execution shell's host (``services.brain.execution_parts.Host``), and
the dispatcher it hands the shell (``InlineJobs``: each exchange call answered at once).

The live shell asks the brain for its clocks, symbols, filters and the journal; a backtest
answers from the bars instead: every clock (order times, timers, the kill switch's day) is
the time of the bar being played, there is no journal to write and nothing blocks entries.
``research.backtest.Backtest`` is this host, and adds the rest of the port: where fills and
closed trades go (``publish``), the quotes (``quote``) and the model's lessons (``learn``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


class BarsHost:
    """The constant half of a backtest's ``Host``: the bars' clock, the run's symbols and filters."""

    now_ms: int  # the time of the bar being played
    filters: Mapping[str, Any]  # symbol -> ``venue.filters.SymbolFilters``
    cfg: Any  # ``research.backtest.BacktestConfig``: its ``symbols``

    def journal_sync(self, body: object) -> object:
        """No journal in a backtest: the run's own lists are its record."""
        return None

    def symbol_filters(self) -> Mapping[str, Any]:
        return self.filters

    def symbols(self) -> list[str]:
        names: Sequence[str] = self.cfg.symbols
        return list(names)

    def clock_ms(self) -> int:
        return self.now_ms

    def mono_s(self) -> float:
        return self.now_ms / 1000.0

    def block_reason(self) -> str:
        return ""


class InlineJobs:
    """``services.brain.dispatcher.InlineDispatcher`` without the ``Future`` it returns (the
    execution shell never reads it): the same completions in the same order, cheaper."""

    inline = True

    def __init__(self) -> None:
        from services.brain.dispatcher import Completion

        self._completion = Completion
        self.completed: list = []
        self.dropped = 0

    def submit(self, priority: int, fn, *args: Any, tag: Any = "", key: str | None = None, **kwargs: Any) -> None:
        try:
            result, error = fn(*args, **kwargs), None
        except Exception as exc:  # delivered, never lost: the shell decides what it means
            result, error = None, exc
        self.completed.append(self._completion(tag=tag or getattr(fn, "__name__", "job"), priority=priority,
                                               key=key, result=result, error=error))

    def drain(self, max_items: int | None = None) -> list:
        n = len(self.completed) if max_items is None else max_items
        out, self.completed = self.completed[:n], self.completed[n:]
        return out
