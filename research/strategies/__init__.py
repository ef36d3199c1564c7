"""Strategies that ship with AEGIS, each one implementation of ``research.strategy_api``:
``smc`` (the live SMC retest strategy, ``services/brain/strategy.py``) and ``donchian``
(a channel breakout, the simple example to copy)."""
