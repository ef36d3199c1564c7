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

# Request weights of the endpoints we call, as Binance's USD-M documentation gives them:
# (IP weight counted in X-MBX-USED-WEIGHT-1M, orders counted in X-MBX-ORDER-COUNT-10S/1M).
# Placing an order costs no IP weight but one order; a list without a symbol costs 40.
WEIGHTS: dict[str, tuple[int, int]] = {
    "submit": (0, 1), "cancel": (1, 0), "query": (1, 0), "open_orders": (1, 0), "open_orders_all": (40, 0),
    "fills": (5, 0), "positions": (5, 0), "balance": (5, 0), "server_time": (1, 0), "time_difference": (1, 0),
    "load_markets": (1, 0), "position_mode": (30, 0), "position_mode_set": (1, 0), "margin_type": (1, 0),
    "leverage": (1, 0), "place_algo": (0, 1), "cancel_algo": (1, 0), "query_algo": (1, 0),
    "open_algo_orders": (1, 0), "open_algo_orders_all": (40, 0), "listen_key": (1, 0),
    "leverage_brackets": (1, 0), "income": (30, 0),  # GET /fapi/v1/income: weight 30
    "all_orders": (5, 0),  # GET /fapi/v1/allOrders: weight 5 (one symbol, one window under 7 days)
    "quantity": (0, 0), "price": (0, 0),  # local: ccxt's precision helpers send nothing
}

PRODUCTION_WS = "wss://fstream.binance.com"
PRODUCTION_REST = "https://fapi.binance.com"
TESTNET_WS = "wss://fstream.binancefuture.com"
TESTNET_REST = "https://testnet.binancefuture.com"

# user data (listenKey) streams: ``/private/ws?listenKey=<key>`` (or ``/private/ws/<key>``) on the
# production host since Binance's 2026 WebSocket base URL split; ``/ws/<key>`` is the legacy form.
# The futures testnet serves the same split (``wss://fstream.binancefuture.com/private/ws/<key>``,
# its "General Info" page: public, market and private url paths), and so does the sim.
USER_DATA_PATH = "/private/ws"
LISTEN_KEY_PATH = "/fapi/v1/listenKey"  # POST create (or extend), PUT keepalive, DELETE close

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


def user_data_url(ws_base: str, listen_key: str) -> str:
    """The user data stream of ``listen_key`` on a WebSocket host (``wss://fstream.binance.com``
    -> ``wss://fstream.binance.com/private/ws/<key>``). The result holds a credential: never log it."""
    return f"{ws_base.rstrip('/')}{USER_DATA_PATH}/{listen_key}"
