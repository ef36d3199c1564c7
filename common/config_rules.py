"""The ranges of the configuration's settings: ``validate`` raises ``ConfigError`` naming the
first setting out of its range, one section after the other in a fixed order (so a config
with several bad settings always names the same one). ``common/config.py`` calls it on every
config it builds; its dataclasses hold the defaults, this module the rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.errors import ConfigError

if TYPE_CHECKING:
    from common.config import AegisConfig

MODES = ("demo", "paper", "live", "replay")


def validate(cfg: AegisConfig) -> None:
    """Raise ConfigError naming the first setting out of its range (sections in a fixed order)."""
    _validate_process(cfg)
    _validate_bus(cfg)
    _validate_feed(cfg)
    _validate_orchestrator(cfg)
    _validate_trading(cfg)
    if not 10 <= cfg.feed.rest_weight_budget_1m <= 6000:
        raise ConfigError("feed.rest_weight_budget_1m must be within 10..6000")
    _validate_dashboard(cfg)
    _validate_telegram(cfg)
    _validate_replay(cfg)


def _validate_process(cfg: AegisConfig) -> None:
    """The mode and the ring, sim, brain, log and supervisor sections."""
    if cfg.mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, not {cfg.mode!r}")
    cap = cfg.ring.capacity
    if cap < 2 or cap & (cap - 1):
        raise ConfigError(f"ring.capacity must be a power of two >= 2, not {cap}")
    if cfg.ring.reader_resume not in ("saved", "latest"):
        raise ConfigError("ring.reader_resume must be 'saved' or 'latest'")
    if cfg.sim.speed <= 0:
        raise ConfigError("sim.speed must be > 0")
    if not 1 <= cfg.sim.symbols <= 1024:
        raise ConfigError("sim.symbols must be within 1..1024")
    if cfg.sim.source not in ("ticks", "candles"):
        raise ConfigError("sim.source must be 'ticks' or 'candles'")
    if not 0 <= cfg.sim.history_bars <= 1500:
        raise ConfigError("sim.history_bars must be within 0..1500")
    if not 4 <= cfg.sim.candle_trades <= 60 or 60_000 % cfg.sim.candle_trades:
        raise ConfigError("sim.candle_trades must be within 4..60 and divide 60000")
    if not 10 <= cfg.brain.gil_switch_interval_us <= 100_000:
        raise ConfigError("brain.gil_switch_interval_us must be within 10..100000")
    if not 0 <= cfg.brain.timer_slack_ns <= 1_000_000:
        raise ConfigError("brain.timer_slack_ns must be within 0..1000000 (0 = the system's default)")
    if cfg.log.format not in ("console", "json"):
        raise ConfigError("log.format must be 'console' or 'json'")
    if cfg.supervisor.spare_retry_s < 0:
        raise ConfigError("supervisor.spare_retry_s must be >= 0")
    if cfg.log.level.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError(f"unknown log.level {cfg.log.level!r}")


def _validate_bus(cfg: AegisConfig) -> None:
    """The bus section: transport, ports, host."""
    b = cfg.bus
    if b.transport not in ("ipc", "tcp"):
        raise ConfigError(f"bus.transport must be 'ipc' or 'tcp', not {b.transport!r}")
    if not 1 <= b.base_port <= 65535 - 5:
        raise ConfigError("bus.base_port must be within 1..65530 (it and the next five ports are used)")
    if not b.host or any(c in b.host for c in "/ ") or b.host == "*":
        raise ConfigError(f"bus.host must be one address or host name the services connect to, "
                          f"not {b.host!r}")


def _validate_feed(cfg: AegisConfig) -> None:
    """The feed section (its REST weight budget is checked after the trading section)."""
    if not 1 <= cfg.feed.streams_per_connection <= 200:
        raise ConfigError("feed.streams_per_connection must be within 1..200 (Binance limit)")
    if cfg.feed.ws_routing not in ("auto", "on", "off"):
        raise ConfigError(f"feed.ws_routing must be 'auto', 'on' or 'off', not {cfg.feed.ws_routing!r}")
    if not cfg.feed.channels:
        raise ConfigError("feed.channels must name at least one channel")
    if cfg.feed.rollover_s < 0 or cfg.feed.rollover_overlap_max_s <= 0:
        raise ConfigError("feed.rollover_s must be >= 0 and feed.rollover_overlap_max_s > 0")
    if cfg.feed.discovery_attempts < 1 or cfg.feed.hydrate_concurrency < 1:
        raise ConfigError("feed.discovery_attempts and feed.hydrate_concurrency must be >= 1")
    if not 0 <= cfg.feed.hydrate_candles <= 100_000:
        raise ConfigError("feed.hydrate_candles must be within 0..100000")
    if cfg.feed.rediscover_interval_s < 0:
        raise ConfigError("feed.rediscover_interval_s must be >= 0 (0 = never)")


def _validate_orchestrator(cfg: AegisConfig) -> None:
    """The orchestrator section: the journal's pending queue and retries."""
    o = cfg.orchestrator
    if o.journal_pending_max_messages < 1 or not 0 < o.journal_retry_initial_s <= o.journal_retry_max_s:
        raise ConfigError("orchestrator.journal_pending_max_messages must be >= 1 and "
                          "0 < journal_retry_initial_s <= journal_retry_max_s")


def _validate_trading(cfg: AegisConfig) -> None:
    """The trading section: broker, orders, risk, timeouts."""
    t = cfg.trading
    if t.broker not in ("auto", "ccxt", "paper", "none"):
        raise ConfigError("trading.broker must be auto, ccxt, paper or none")
    if t.order_transport not in ("ws", "rest"):
        raise ConfigError("trading.order_transport must be ws or rest")
    if t.margin_type not in ("CROSSED", "ISOLATED"):
        raise ConfigError("trading.margin_type must be CROSSED or ISOLATED")
    if t.entry_order not in ("limit_ioc", "market"):
        raise ConfigError(f"trading.entry_order must be limit_ioc or market, not {t.entry_order!r}")
    if t.trailing_callback_pct != 0 and not (0.1 <= t.trailing_callback_pct <= 10
                                             and round(t.trailing_callback_pct * 10, 9).is_integer()):
        raise ConfigError(f"trading.trailing_callback_pct must be 0 (off) or within 0.1..10 in steps of 0.1 "
                          f"(Binance's callbackRate), not {t.trailing_callback_pct!r}")
    if not 0 <= t.entry_slippage_bps <= 500:  # 5 %: beyond that a bound is no bound
        raise ConfigError(f"trading.entry_slippage_bps must be within 0..500, not {t.entry_slippage_bps!r}")
    if not 0 < t.risk_per_trade_pct <= 5:
        raise ConfigError("trading.risk_per_trade_pct must be within (0, 5]")
    if not 1 <= t.leverage <= 125:
        raise ConfigError("trading.leverage must be within 1..125")
    if not 0 < t.recv_window_ms <= 60_000 or t.order_timeout_ms <= 0:
        raise ConfigError("trading.recv_window_ms must be within 1..60000, order_timeout_ms > 0")
    if t.reconcile_interval_s <= 0 or t.balance_poll_s <= 0 or t.journal_ack_timeout_ms <= 0:
        raise ConfigError("trading intervals and timeouts must be > 0")
    if not 60 <= t.recovery_lookback_s <= 7 * 86_400:
        raise ConfigError(f"trading.recovery_lookback_s must be within 60..604800, not {t.recovery_lookback_s!r}")


def _validate_dashboard(cfg: AegisConfig) -> None:
    """The dashboard section: address, refresh, limits, allowed origins."""
    d = cfg.dashboard
    if not 0 <= d.port <= 65535 or not d.host or any(c in d.host for c in "/ "):
        raise ConfigError(f"dashboard.host must be one address and dashboard.port within 0..65535, "
                          f"not {d.host!r}:{d.port}")
    if d.refresh_ms < 100 or d.control_timeout_ms < 100:
        raise ConfigError("dashboard.refresh_ms and dashboard.control_timeout_ms must be >= 100")
    if d.auth_failures_per_min < 1 or d.commands_per_min < 1:
        raise ConfigError("dashboard.auth_failures_per_min and dashboard.commands_per_min must be >= 1")
    for o in d.allowed_origins:
        if not o.startswith(("http://", "https://")) or o.endswith("/"):
            raise ConfigError(f"dashboard.allowed_origins holds scheme://host[:port] without a "
                              f"trailing slash, not {o!r}")


def _validate_telegram(cfg: AegisConfig) -> None:
    """The telegram section."""
    tg = cfg.telegram
    if not -1 <= tg.summary_hour_utc <= 23 or tg.feed_stale_s <= 0 or tg.confirm_s <= 0:
        raise ConfigError("telegram.summary_hour_utc must be within -1..23, feed_stale_s and confirm_s > 0")
    if not tg.api_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ConfigError("telegram.api_url must be https:// (or a local http:// test server)")


def _validate_replay(cfg: AegisConfig) -> None:
    """The replay section, and the replay mode's need of a file."""
    r = cfg.replay
    if r.speed < 0 or not 1 <= r.chunk <= cfg.brain.read_batch or r.chunk_ms < 1:
        raise ConfigError(f"replay.speed must be >= 0 and replay.chunk within 1..brain.read_batch "
                          f"({cfg.brain.read_batch}), replay.chunk_ms >= 1")
    if r.to_ms and r.to_ms <= r.from_ms:
        raise ConfigError("replay.to_ms must be after replay.from_ms")
    if cfg.mode == "replay" and not r.file:
        raise ConfigError("replay mode needs replay.file (use: aegis replay FILE)")
