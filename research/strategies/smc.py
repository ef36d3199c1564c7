"""The built-in SMC strategy (``services/brain/strategy.py``) behind the strategy API.

Nothing of the rule changes: each closed base candle goes to ``strategy.on_candle`` with the
symbol's ``StrategyState`` (kept in ``ctx.state``) and the confidence model of the context;
each signal it decides becomes an ``Enter`` with the same levels, confidence, ``cold`` flag,
features and strategy name, so the signal the runner builds is the one the brain published
before the API existed (``tests/integration/test_replay.py`` pins that byte for byte).
"""

from __future__ import annotations

from typing import Any, Mapping

from research.strategy_api import Context, Enter, Strategy
from services.brain import strategy as smc_strategy


class SmcRetest(Strategy):
    """Parameters: the fields of ``services.brain.strategy.StrategyConfig``."""

    name = smc_strategy.STRATEGY
    history = 1  # it keeps its own state; the window is not read
    takes_interval = True

    def __init__(self, **params: Any) -> None:
        self.config = smc_strategy.StrategyConfig(**params)
        self.interval_s = self.config.base_interval_s

    def on_candle(self, ctx: Context, candle) -> list:
        st = ctx.state.get("smc")
        if st is None:
            st = ctx.state["smc"] = smc_strategy.new_symbol_state(self.config)
        model = ctx.model
        if model is None:  # a shell without a model: the cold prior, as a fresh brain has
            from services.brain import model as model_mod

            model = ctx.state.setdefault("model", model_mod.new_state(model_mod.ModelConfig()))
        _, signals = smc_strategy.on_candle(st, candle, candle.interval_s, model)
        return [Enter(side=s.side, stop=s.stop, target=s.target, confidence=s.confidence, features=s.features,
                      entry=s.entry, cold=s.cold, strategy=s.strategy) for s in signals]

    def counters(self, state: dict) -> Mapping[str, int]:
        st = state.get("smc")
        return dict(st.skipped) if st is not None else {}
