"""Binance USD-M futures endpoints, and which WebSocket path carries which stream.

Pure names and rules, shared by the feed (where to connect), the brain and orchestrator
(where to trade and reconcile) and the exchange sim (which serves the same paths).

Routed WebSocket paths. Binance's production host ``fstream.binance.com`` splits market
streams over two paths: ``/public`` carries the high-frequency book streams (``@bookTicker``,
``@depth``) and ``/market`` everything else (``@trade``, ``@aggTrade``, ``@markPrice``,
``@kline_*``). A stream asked for on the wrong path is accepted and then never delivers:
it fails silently, so the feed must open its connections per path. The testnet and the
sim serve every stream on the plain path as well; the sim serves the routed paths too, with
Binance's rule, so the routing is tested here.
"""

from __future__ import annotations

from typing import Literal

from common import config

PRODUCTION_WS = "wss://fstream.binance.com"
PRODUCTION_REST = "https://fapi.binance.com"
TESTNET_WS = "wss://fstream.binancefuture.com"
TESTNET_REST = "https://testnet.binancefuture.com"

Route = Literal["", "public", "market"]
ROUTES: tuple[Route, ...] = ("public", "market")
# channels delivered on /public, by the start of a channel's name (``depth20@100ms``: depth)
PUBLIC_CHANNELS = ("bookTicker", "depth")


def stream_route(stream: str) -> Route:
    """``public`` or ``market``: the routed path that delivers ``stream`` (``btcusdt@trade``)."""
    channel = stream.split("@", 1)[1] if "@" in stream else stream
    return "public" if channel.startswith(PUBLIC_CHANNELS) else "market"


def routed_by_default(ws_base: str) -> bool:
    """Whether a WebSocket host needs the routed paths: Binance production does."""
    return ws_base.rstrip("/").lower() == PRODUCTION_WS


def default_urls(mode: str, *, testnet: bool) -> tuple[str, str] | None:
    """(ws, rest) of the real exchange for a mode that uses it (paper and live), else None:
    demo talks to the sim, replay to nothing."""
    if mode not in ("paper", "live"):
        return None
    return (TESTNET_WS, TESTNET_REST) if testnet else (PRODUCTION_WS, PRODUCTION_REST)


def market_urls(cfg: config.AegisConfig) -> tuple[str, str]:
    """(ws base url, rest base url) of the exchange: explicit ones, else the mode's (paper and
    live: Binance production or, with trading.testnet, its testnet; demo: the sim)."""
    real = default_urls(cfg.mode, testnet=cfg.trading.testnet)
    ws_default, rest_default = real or (f"ws://{cfg.sim.host}:{cfg.sim.port}", f"http://{cfg.sim.host}:{cfg.sim.port}")
    return cfg.feed.ws_url or ws_default, cfg.feed.rest_url or rest_default


def ws_routed(cfg: config.AegisConfig) -> bool:
    """Whether the feed opens its connections per routed path (/public, /market)."""
    if cfg.feed.ws_routing == "auto":
        return routed_by_default(market_urls(cfg)[0])
    return cfg.feed.ws_routing == "on"
