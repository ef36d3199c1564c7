"""Binance USD-M market-data payloads as msgspec Structs: the typed schema the feed's codec
(``services.feed.codec``) decodes frames into. Decoding into these *is* the type firewall:
prices are strings, ids and times ints, ``m`` a bool, and a missing field fails.

The decoders are here too: ``decode_wrapped`` (a combined-stream frame, the codec's fast
path), ``decode_any`` (untyped JSON, its generic path), ``BY_TAG`` (event name -> Struct).
"""

from __future__ import annotations

from typing import Any, Union

import msgspec
from msgspec import UNSET, UnsetType

# One Struct per payload, fields in Binance's order (msgspec is fastest when keys arrive
# in declaration order). Only the fields we check or use are declared: newer payloads add
# keys (``ap``, ``st``, ``lr`` on marks) and those are ignored. ``M`` and the ticker's ``b``
# exist only in *spot* payloads: declared as Any so their mere presence is seen.
# kw_only (not inherited, so repeated) lets optional fields sit in wire order.
class _Tagged(msgspec.Struct, gc=False, tag_field="e"):
    pass


class Trade(_Tagged, tag="trade", kw_only=True):
    E: int
    T: int
    s: str
    t: int
    p: str
    q: str
    X: Union[str, UnsetType] = UNSET
    m: bool
    M: Any = UNSET


class AggTrade(_Tagged, tag="aggTrade", kw_only=True):
    E: int
    a: int
    s: str
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's name
    T: int
    m: bool
    M: Any = UNSET


class Book(_Tagged, tag="bookTicker", kw_only=True):
    u: int
    s: str
    b: str
    B: str
    a: str
    A: str
    T: int
    E: int


class Mark(_Tagged, tag="markPriceUpdate", kw_only=True):
    E: int
    s: str
    p: str
    P: str
    i: str
    r: str  # "" for delivery contracts (no funding)
    T: int  # next funding time, 0 for delivery contracts


_Levels = list[tuple[str, str]]


class Depth(_Tagged, tag="depthUpdate", kw_only=True):
    E: int
    T: int
    s: str
    U: int
    u: int
    pu: int
    b: _Levels
    a: _Levels


class KlineBar(msgspec.Struct, kw_only=True, gc=False):
    t: int
    T: int
    s: str
    i: str
    f: int
    L: int
    o: str
    c: str
    h: str
    l: str  # noqa: E741
    v: str
    n: int
    x: bool
    q: str
    V: str
    Q: str


class Kline(_Tagged, tag="kline", kw_only=True):
    E: int
    s: str
    k: KlineBar


class Ticker(_Tagged, tag="24hrTicker", kw_only=True):
    E: int
    s: str
    p: str
    P: str
    w: str
    c: str
    Q: str
    o: str
    h: str
    l: str  # noqa: E741
    v: str
    q: str
    O: int  # noqa: E741
    C: int
    F: int
    L: int
    n: int
    b: Any = UNSET


class Snapshot(msgspec.Struct, kw_only=True, gc=False):
    lastUpdateId: int  # noqa: N815
    E: int
    T: int
    bids: _Levels
    asks: _Levels


class OpenInterest(msgspec.Struct, kw_only=True, gc=False):
    symbol: str
    openInterest: str  # noqa: N815
    time: int


ArrayItem = Union[Mark, Ticker]
Payload = Union[Trade, AggTrade, Book, Mark, Depth, Kline, Ticker, list[ArrayItem]]


class Wrapped(msgspec.Struct, gc=False):
    stream: str
    data: Payload


decode_wrapped = msgspec.json.Decoder(Wrapped).decode
decode_any = msgspec.json.Decoder().decode
BY_TAG: dict[str, type] = {c.__struct_config__.tag: c for c in  # type: ignore[attr-defined]
                            (Trade, AggTrade, Book, Mark, Depth, Kline, Ticker)}
ARRAY_TAGS = frozenset(("markPriceUpdate", "24hrTicker"))
# real Binance events we deliberately do not decode (user data, other market streams)
UNSUPPORTED_EVENTS = frozenset((
    "24hrMiniTicker", "forceOrder", "compositeIndex", "contractInfo", "assetIndexUpdate",
    "continuous_kline", "indexPriceKline", "markPriceKline", "ACCOUNT_UPDATE",
    "ORDER_TRADE_UPDATE", "TRADE_LITE", "MARGIN_CALL", "ACCOUNT_CONFIG_UPDATE",
    "STRATEGY_UPDATE", "GRID_UPDATE", "CONDITIONAL_ORDER_TRIGGER_REJECT", "listenKeyExpired",
    "executionReport", "outboundAccountPosition", "balanceUpdate",
))
