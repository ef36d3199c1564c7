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

PRODUCTION_WS = "wss://fstream.binance.com"
PRODUCTION_REST = "https://fapi.binance.com"
TESTNET_WS = "wss://fstream.binancefuture.com"
TESTNET_REST = "https://testnet.binancefuture.com"

# user data (listenKey) streams: ``/private/ws?listenKey=<key>`` (or ``/private/ws/<key>``) on the
# production host since Binance's 2026 WebSocket base URL split; ``/ws/<key>`` is the legacy form
USER_DATA_PATH = "/private/ws"

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
