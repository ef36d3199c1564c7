"""A deterministic strategy for the host-lost test: a long entry on each listed symbol's next
closed candle while it is flat, with a wide stop and target.

The host-lost test is about what happens to open positions when every process of the stack
dies, not about when the SMC strategy finds a setup (minutes of replay at best). Its entries
still go the whole way every entry goes: signal, risk check, journal, the order path, the
exchange-held stop and target (``research/strategy_api.py``; the strategy is chosen with
``AEGIS_STRATEGY__PATH`` as any user's strategy is). The stop and target are ``BAND`` away,
far outside what the replay moves in the test's few minutes: only the test's own price
pushes reach them.
"""

from __future__ import annotations

from research.strategy_api import Enter, Strategy

SYMBOLS = ("BTCUSDT", "D001USDT", "D002USDT")  # the sim's real symbol and its first two derived
BAND = 0.04  # stop 4 % under the entry, target 4 % over it


class EnterListed(Strategy):
    """Long at the close of every candle of a listed symbol while it has no position."""

    name = "host_lost_entries"
    history = 2

    def on_candle(self, ctx, candle):
        if ctx.symbol not in SYMBOLS or ctx.position is not None:
            return []
        return [Enter(side="BUY", stop=candle.close * (1 - BAND), target=candle.close * (1 + BAND),
                      confidence=0.6)]
