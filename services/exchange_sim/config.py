"""The sim's settings: ``common.config.SimConfig`` plus the engine's tuning constants.

The API key and secret are not config: the shell takes them from ``common.config.secrets()``
(the same ``BINANCE_API_KEY``/``BINANCE_API_SECRET`` the broker signs with) and falls back
to ``venue.demo``'s ``DEMO_API_KEY``/``DEMO_API_SECRET``. Those two are NOT secrets: they are published
so the demo's broker and the sim agree without any setup, and they open nothing but a
local simulated account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from common.config import SimConfig
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET


@dataclass(frozen=True, kw_only=True)
class SimParams:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    speed: float = 1.0
    max_speed: bool = False
    symbols: int = 20
    capture: str = ""  # "" = the bundled capture
    loop: bool = True
    # the defaults of the config (one value each): the candles demo
    source: str = SimConfig.source  # "candles" (trades synthesized in real candles) or "ticks" (the capture)
    candles: str = ""  # "" = the bundled BTCUSDT 1m candles
    history_bars: int = SimConfig.history_bars  # candles source: real 1m bars served before the first played one
    candle_trades: int = SimConfig.candle_trades  # candles source: trades synthesized per candle
    step_ms: int = 5  # paced: play what is due every 5 ms (adds <= 5 ms of latency)
    max_events_per_symbol_step: int = 4096  # paced: bounded work per step when behind
    max_speed_events_per_step: int = 8192  # max speed: split evenly across symbols (~25 ms steps)
    high_water_bytes: int = 4 << 20  # max speed: wait while a client has this much unsent
    slow_consumer_bytes: int = 64 << 20  # drop a client with this much unsent (it stopped reading)
    slow_consumer_timeout_s: float = 10.0  # max speed: drop a client that blocks us this long
    close_timeout_s: float = 1.0  # wait this long for a client's close reply on shutdown
    api_key: str = field(default=DEMO_API_KEY, repr=False)  # signed requests must carry this key
    api_secret: str = field(default=DEMO_API_SECRET, repr=False)  # ... and be signed with this
    state_file: str = ""  # "" = the account lives in memory only; else saved here on every change
    start_wallet_usdt: Decimal = Decimal("10000")  # a new account's wallet
    listen_key_validity_ms: int = 3_600_000  # a user data stream key lives 60 min unless kept alive


def from_config(sim: SimConfig, **overrides: object) -> SimParams:
    """``SimParams`` from the loaded config section, with command-line overrides."""
    base = dict(host=sim.host, port=sim.port, speed=sim.speed, max_speed=sim.max_speed,
                symbols=sim.symbols, capture=sim.capture, loop=sim.loop, source=sim.source,
                candles=sim.candles, history_bars=sim.history_bars, candle_trades=sim.candle_trades)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return SimParams(**base)  # type: ignore[arg-type]
