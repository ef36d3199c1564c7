"""Which broker, with which keys, for which mode (the brain's execution and the
orchestrator's reconciliation build theirs here).

    mode     broker (trading.broker = "auto")       keys
    demo     CcxtBroker -> exchange_sim on loopback  the sim's demo key (venue.demo, not a secret)
    paper    PaperBroker on the live book            none
    replay   PaperBroker on the replayed book        none
    live     CcxtBroker -> Binance (or its testnet)  BINANCE_API_KEY / _SECRET, required

With ``trading.order_transport = "ws"`` (the default) the ccxt broker sits behind a
``WsBroker``: orders, cancels and order queries over the WebSocket API, REST while it is down.

``trading.broker = "none"`` (or ``trading.enabled = false``) runs signals only.

The user data stream (``user_stream``) goes with the ccxt broker: demo and live have one (the
exchange pushes fills, order states and positions as they happen), paper and replay do not
(the paper broker answers inside the brain). ``trading.user_stream = false`` turns it off:
REST alone then, with the 5-second position poll.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any, Callable, Mapping

import structlog

from common import config as config_mod
from common.config import AegisConfig
from common.errors import ConfigError
from venue import binance, filters
from venue.port import Broker

log = structlog.get_logger(__name__)


def broker_kind(cfg: AegisConfig) -> str:
    t = cfg.trading
    if not t.enabled or t.broker == "none":
        return "none"
    if t.broker != "auto":
        return t.broker
    return "ccxt" if cfg.mode in ("demo", "live") else "paper"


def trading_enabled(cfg: AegisConfig) -> bool:
    return broker_kind(cfg) != "none"


def credentials(cfg: AegisConfig) -> tuple[str, str]:
    """(key, secret) for the ccxt broker. Demo: the sim's own demo key unless keys are set."""
    sec = config_mod.secrets()
    if sec.present:
        return sec.api_key, sec.api_secret
    if cfg.mode == "demo":
        from venue.demo import DEMO_API_KEY, DEMO_API_SECRET

        return DEMO_API_KEY, DEMO_API_SECRET
    raise ConfigError("live trading needs BINANCE_API_KEY and BINANCE_API_SECRET")


def rest_url(cfg: AegisConfig) -> str:
    """The exchange's REST base: feed.rest_url, else the mode's (the sim, Binance or its testnet)."""
    return binance.market_urls(cfg)[1]


def symbol_filters(cfg: AegisConfig, rules: Callable[[], Mapping[str, Any]] | None = None
                   ) -> Mapping[str, filters.SymbolFilters]:
    """The symbol filters orders are checked against. Replay mode: the replayed capture's
    saved exchangeInfo (no network). Otherwise the rules the feed published (``rules``: the
    live mapping symbol -> ``wire.SymbolInfo``; the feed's discovery is the one exchangeInfo
    fetch of a stack), and for a symbol the feed has no rules for, exchangeInfo asked when
    ``FeedFilters.complete`` needs it (said in a warning)."""
    if cfg.mode == "replay":
        path = cfg.replay.exchange_info
        if not path:
            raise ConfigError("replay mode needs replay.exchange_info (aegis replay writes it from the capture)")
        return filters.load_filters(path)
    url = rest_url(cfg)

    def fetch() -> dict[str, filters.SymbolFilters]:
        got = filters.fetch_filters(url)
        log.warning("venue.filters_fetched", reason="symbols without the feed's rules", symbols=len(got))
        return got

    return filters.FeedFilters(rules if rules is not None else dict, fetch=fetch)


# counters every broker reports, zero where it keeps none (a paper broker reads no answers)
BROKER_COUNTERS = ("all_orders_rejected",)


def counters_of(broker: Any) -> dict[str, int]:
    """A broker's counters, flat: its own and, under a ``WsBroker``, those of the REST broker
    beneath it (which reads the order history: ``all_orders_rejected``, order-history pages
    refused as malformed). Every name in ``BROKER_COUNTERS`` is there, zero until it counts.
    Reads ints another thread may be adding to: a heartbeat's value, not a transaction."""
    out = dict.fromkeys(BROKER_COUNTERS, 0)
    for b in (getattr(broker, "rest", None), broker):
        c = getattr(b, "counters", None)
        if isinstance(c, Mapping):
            out.update({k: int(v) for k, v in dict(c).items() if isinstance(v, int)})  # a copy first
    return out


def make_broker(cfg: AegisConfig, book: Any, clock_ms: Any = None, *,
                rules: Callable[[], Mapping[str, Any]] | None = None,
                order_filters: Mapping[str, filters.SymbolFilters] | None = None) -> Broker:
    """``clock_ms``: the paper broker's clock (replay: the exchange clock of the ticks).
    ``rules``: the feed's published rules (symbol -> ``wire.SymbolInfo``), which ccxt's markets
    are made of (no exchangeInfo of its own unless a symbol lacks them) and the paper broker's
    filters come from (``order_filters``, when the caller holds them already)."""
    kind = broker_kind(cfg)
    t = cfg.trading
    if kind == "ccxt":
        from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig

        key, secret = credentials(cfg)
        # Binance itself (paper/live, no explicit url): ccxt's own urls, which follow testnet;
        # anything else (an explicit url, the demo's sim) overrides them
        real = binance.default_urls(cfg.mode, testnet=t.testnet) is not None
        base_url = "" if real and not cfg.feed.rest_url else rest_url(cfg)
        ccfg = CcxtConfig(testnet=t.testnet and not base_url, base_url=base_url, timeout_ms=t.order_timeout_ms,
                          recv_window_ms=t.recv_window_ms, leverage=t.leverage, margin_type=t.margin_type)
        rest = CcxtBroker(ccfg, api_key=key, api_secret=secret, rules=rules)
        if t.order_transport != "ws":
            return rest
        from venue.binance.ws_api import WsApiClient, WsApiConfig, url_for
        from venue.binance.ws_broker import WsBroker

        wcfg = WsApiConfig(url=url_for(cfg.mode, testnet=t.testnet, rest_url=base_url),
                           timeout_ms=t.order_timeout_ms, recv_window_ms=t.recv_window_ms)
        return WsBroker(rest, WsApiClient(wcfg, api_key=key, api_secret=secret))
    from venue.paper import PaperBroker, PaperConfig

    pcfg = PaperConfig(taker_fee_rate=Decimal(repr(t.taker_fee_rate)), maker_fee_rate=Decimal(repr(t.maker_fee_rate)),
                       slippage_bps=Decimal(repr(t.paper_slippage_bps)), latency_ms=t.paper_latency_ms,
                       starting_balance=Decimal(repr(t.paper_balance_usdt)), leverage=t.leverage)
    if cfg.mode == "replay":  # no simulated wait: a replay's time is the ticks' time
        pcfg = replace(pcfg, latency_ms=0.0)
    # the paper broker checks orders against the real filters (the feed's rules, read live)
    return PaperBroker(pcfg, book=book, clock_ms=clock_ms or (lambda: time.time_ns() // 1_000_000),
                       sleep=time.sleep,
                       filters=order_filters if order_filters is not None else symbol_filters(cfg, rules))


def has_user_stream(cfg: AegisConfig) -> bool:
    return broker_kind(cfg) == "ccxt" and cfg.trading.user_stream


def make_user_stream(cfg: AegisConfig) -> Any:
    """The user data stream client of the mode's exchange (not started), or None: the REST
    base the ccxt broker uses, the WebSocket host the feed uses (``/private`` is added), the
    broker's API key. The spelled-out host list is ``binance.market_urls``."""
    if not has_user_stream(cfg):
        return None
    from venue.binance.user_stream_client import UserStreamClient, UserStreamConfig

    key, _ = credentials(cfg)
    ws, rest = binance.market_urls(cfg)
    ucfg = UserStreamConfig(rest_url=rest, ws_url=ws, rest_timeout_s=cfg.trading.order_timeout_ms / 1000)
    return UserStreamClient(ucfg, api_key=key)


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
