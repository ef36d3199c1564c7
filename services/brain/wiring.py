"""Which broker, with which keys, for which mode; and the execution shell built around it.

    mode     broker (trading.broker = "auto")       keys
    demo     CcxtBroker -> exchange_sim on loopback  the sim's demo key (not a secret)
    paper    PaperBroker on the live book            none
    replay   PaperBroker on the replayed book        none
    live     CcxtBroker -> Binance (or its testnet)  BINANCE_API_KEY / _SECRET, required

``trading.broker = "none"`` (or ``trading.enabled = false``) runs signals only.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Callable, Mapping

import structlog

from common import binance, bus, service
from common import config as config_mod
from common.config import AegisConfig, Endpoints, market_urls
from common.errors import ConfigError
from services.brain import dispatcher as dsp
from services.brain import execution, risk, rotation, trader
from services.brain.broker import Broker

log = structlog.get_logger(__name__)
DISPATCH_WORKERS = 4


def broker_kind(cfg: AegisConfig) -> str:
    t = cfg.trading
    if not t.enabled or t.broker == "none":
        return "none"
    if t.broker != "auto":
        return t.broker
    return "ccxt" if cfg.mode in ("demo", "live") else "paper"


def trading_enabled(cfg: AegisConfig) -> bool:
    return broker_kind(cfg) != "none"


def trader_config(cfg: AegisConfig) -> trader.TraderConfig:
    t = cfg.trading
    return trader.TraderConfig(
        risk=risk.RiskConfig(max_order_notional_usdt=t.max_order_notional_usdt,
                             max_total_notional_usdt=t.max_total_notional_usdt, max_leverage=t.max_leverage,
                             max_positions=t.max_positions, daily_loss_limit_usdt=t.daily_loss_limit_usdt,
                             max_drawdown_pct=t.max_drawdown_pct, stale_data_ms=t.stale_data_ms,
                             max_orders_per_minute=t.max_orders_per_minute),
        rotation=rotation.RotationConfig(max_positions=t.max_positions, replace_margin=t.replace_margin,
                                         pnl_weight_per_r=t.pnl_weight_per_r, cooldown_s=t.cooldown_s),
        risk_per_trade_pct=t.risk_per_trade_pct, exit_retry_ms=int(t.exit_retry_s * 1000),
        recv_window_ms=t.recv_window_ms)


def credentials(cfg: AegisConfig) -> tuple[str, str]:
    """(key, secret) for the ccxt broker. Demo: the sim's own demo key unless keys are set."""
    sec = config_mod.secrets()
    if sec.present:
        return sec.api_key, sec.api_secret
    if cfg.mode == "demo":
        from services.exchange_sim.config import DEMO_API_KEY, DEMO_API_SECRET

        return DEMO_API_KEY, DEMO_API_SECRET
    raise ConfigError("live trading needs BINANCE_API_KEY and BINANCE_API_SECRET")


def rest_url(cfg: AegisConfig) -> str:
    """The exchange's REST base: feed.rest_url, else the mode's (the sim, Binance or its testnet)."""
    return market_urls(cfg)[1]


def filters_fn(cfg: AegisConfig, fallback: Callable[[], Mapping[str, Any]] | None = None):
    """Where the symbol filters come from: the replayed capture's saved exchangeInfo (replay
    mode: no network), else the exchange's REST endpoint, else (``fallback``: the rules the
    feed published, ``wire.SymbolInfo`` by symbol) those, said in a warning."""
    if cfg.mode == "replay":
        path = cfg.replay.exchange_info
        if not path:
            raise ConfigError("replay mode needs replay.exchange_info (aegis replay writes it from the capture)")
        return lambda: execution.load_filters(path)
    url = rest_url(cfg)

    def fetch() -> dict[str, Any]:
        try:
            return execution.fetch_filters(url)
        except Exception as exc:
            rules = dict(fallback()) if fallback is not None else {}
            if not rules:
                raise
            log.warning("brain.filters_from_feed_rules", error=repr(exc)[:200], symbols=len(rules))
            return {s: risk.filters_from_symbol_info(i) for s, i in rules.items()}

    return fetch


def make_broker(cfg: AegisConfig, book: Any, clock_ms: Any = None) -> Broker:
    """``clock_ms``: the paper broker's clock (replay: the exchange clock of the ticks)."""
    kind = broker_kind(cfg)
    t = cfg.trading
    if kind == "ccxt":
        from services.brain.ccxt_broker import CcxtBroker, CcxtConfig

        key, secret = credentials(cfg)
        # Binance itself (paper/live, no explicit url): ccxt's own urls, which follow testnet;
        # anything else (an explicit url, the demo's sim) overrides them
        real = binance.default_urls(cfg.mode, testnet=t.testnet) is not None
        base_url = "" if real and not cfg.feed.rest_url else rest_url(cfg)
        ccfg = CcxtConfig(testnet=t.testnet and not base_url, base_url=base_url, timeout_ms=t.order_timeout_ms,
                          recv_window_ms=t.recv_window_ms, leverage=t.leverage, margin_type=t.margin_type)
        return CcxtBroker(ccfg, api_key=key, api_secret=secret)
    from services.brain.paper import PaperBroker, PaperConfig

    pcfg = PaperConfig(taker_fee_rate=Decimal(repr(t.taker_fee_rate)), maker_fee_rate=Decimal(repr(t.maker_fee_rate)),
                       slippage_bps=Decimal(repr(t.paper_slippage_bps)), latency_ms=t.paper_latency_ms,
                       starting_balance=Decimal(repr(t.paper_balance_usdt)), leverage=t.leverage)
    if cfg.mode == "replay":  # no simulated wait: a replay's time is the ticks' time
        pcfg = replace(pcfg, latency_ms=0.0)
    # the paper broker checks orders against the real filters: fetched once, at start
    return PaperBroker(pcfg, book=book, clock_ms=clock_ms or (lambda: time.time_ns() // 1_000_000),
                       sleep=time.sleep, filters=filters_fn(cfg)())


@dataclass
class Trading:
    execution: execution.Execution
    dispatcher: dsp.Dispatcher
    sync: bus.SyncJournal

    def close(self) -> None:
        self.dispatcher.close(timeout_s=3.0)
        self.execution.broker.close()
        self.sync.close()


class LazyBroker:
    """A broker built on its first use, not at start-up: the ccxt broker's import alone takes
    about half a second, which a restarted brain should spend reading the ring instead. The
    first use is the execution's start-up job, on a dispatcher thread (the lock makes one
    broker however many threads ask at once)."""

    def __init__(self, factory: Callable[[], Broker], *, name: str) -> None:
        self._factory = factory
        self._broker: Broker | None = None
        self._lock = threading.Lock()
        self.name = name

    @property
    def built(self) -> bool:
        return self._broker is not None

    def _get(self) -> Broker:
        b = self._broker
        if b is None:
            with self._lock:
                if self._broker is None:
                    self._broker = self._factory()
                b = self._broker
        return b

    def __getattr__(self, attr: str) -> Any:  # only for what the instance itself lacks
        return getattr(self._get(), attr)

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()


def make_execution(cfg: AegisConfig, brain: Any, ep: Endpoints) -> Trading:
    """Replay mode is deterministic: the paper broker answers inline (no threads) and every
    clock (order times, timers, the kill switch's day) is the exchange clock of the ticks."""
    replay = cfg.mode == "replay"
    clock_ms = brain.clock_ms if replay else (lambda: time.time_ns() // 1_000_000)
    if broker_kind(cfg) == "ccxt":  # importing ccxt costs ~0.5 s: not on the way to ready
        broker: Any = LazyBroker(lambda: make_broker(cfg, brain.book_top), name="ccxt")
    else:
        broker = make_broker(cfg, brain.book_top, clock_ms if replay else None)
    disp: Any = dsp.InlineDispatcher() if replay else dsp.Dispatcher(DISPATCH_WORKERS, name="brain-dispatch")
    sync = bus.SyncJournal("brain", ep.journal_sync, timeout_ms=cfg.trading.journal_ack_timeout_ms)
    ex = execution.Execution(
        cfg=trader_config(cfg), broker=broker, dispatcher=disp,
        # replay: an order is stamped with the ticks' clock like every other decision
        journal_sync=(lambda body: sync.write(body, brain.now_ns())) if replay else sync.write,
        publish=brain.publish_exec, quote=brain.quote, learn=brain.learn,
        filters_fn=filters_fn(cfg, fallback=lambda: brain.symbol_info), db_path=service.db_path(cfg),
        symbols_fn=lambda: list(brain.ring.symbol_names()), balance_poll_s=cfg.trading.balance_poll_s,
        clock_ms=clock_ms, mono_s=(lambda: brain.clock_ms() / 1000.0) if replay else time.monotonic,
        blocked=brain.trading_block_reason, flatten_on_halt=cfg.trading.flatten_on_halt)
    log.info("brain.trading", broker=broker.name, mode=cfg.mode)
    return Trading(execution=ex, dispatcher=disp, sync=sync)
