"""A strategy that never enters, for tests about positions the stack did not open itself
(``test_adopted_restarts``): the stack runs its whole path, only the strategy adds nothing."""

from __future__ import annotations

from research.strategy_api import Strategy


class Quiet(Strategy):
    """Reads every candle, asks for nothing."""

    name = "quiet"
    history = 2

    def on_candle(self, ctx, candle):
        return []
