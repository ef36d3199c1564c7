"""Symbol discovery: which perpetuals to stream, and their trading filters.

``select_symbols`` is pure: exchangeInfo + 24h tickers in, ranked symbols out. USDT-margined
``PERPETUAL`` contracts with status ``TRADING`` only, ranked by 24h quote volume (most liquid
first), top N. The feed's shell fetches the two REST documents (``hydrate.RestClient``, with
retries and the request-weight budget); when that fails (network, HTTP error, bad or partial
body) it falls back to ``FALLBACK_SYMBOLS`` and says so in FEED_STATUS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping, Sequence

from common import wire
from common.errors import DecodeError
from common.records import Flag

# 20 long-listed, liquid USD-M perpetuals: used only when discovery fails
FALLBACK_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "AVAXUSDT",
    "LINKUSDT", "DOTUSDT", "LTCUSDT", "BCHUSDT", "TRXUSDT", "ATOMUSDT", "ETCUSDT", "FILUSDT",
    "NEARUSDT", "UNIUSDT", "AAVEUSDT", "XLMUSDT",
)


# A symbol's trading rules are a ``wire.SymbolInfo`` from the moment they are parsed: one
# type from exchangeInfo to the brain (``venue.filters.filters_from_symbol_info`` turns it
# into the exact ``SymbolFilters`` the risk checks and the paper broker use; ccxt's markets
# are made of it too, ``venue.filters.entry_from_symbol_info``). This is the stack's one
# fetch of exchangeInfo (and the feed's re-discovery).
MAX_PRECISION = 18  # wire.SymbolInfo's bound on price/quantity precision


def _f(v: Any) -> float:
    """A rule's number as the float the wire carries; DecodeError if negative, not finite, or
    (given as text, the way exchangeInfo writes them) not exact as a float's shortest repr."""
    x = float(v)
    if not math.isfinite(x) or x < 0:
        raise DecodeError(f"bad number {v!r}", reason="bad_exchange_info")
    if isinstance(v, str) and Decimal(repr(x)) != Decimal(v.strip()):
        raise DecodeError(f"{v!r} does not travel exactly as a float", reason="bad_exchange_info")
    return x


def parse_symbol(entry: Mapping[str, Any]) -> wire.SymbolInfo:
    """One exchangeInfo symbol entry -> its rules (filters come in any order; precisions
    clamped to the wire's 0..18). Raises KeyError/TypeError/ValueError/DecodeError on a bad entry."""
    filters = {f.get("filterType"): f for f in entry.get("filters", ()) if isinstance(f, Mapping)}
    pf, ls = filters.get("PRICE_FILTER", {}), filters.get("LOT_SIZE", {})
    mn, ml, pp = filters.get("MIN_NOTIONAL", {}), filters.get("MARKET_LOT_SIZE", {}), filters.get("PERCENT_PRICE", {})
    return wire.SymbolInfo(
        symbol=str(entry["symbol"]),
        tick_size=_f(pf.get("tickSize", 0)),
        step_size=_f(ls.get("stepSize", 0)),
        min_qty=_f(ls.get("minQty", 0)),
        min_notional=_f(mn.get("notional", mn.get("minNotional", 0))),
        price_precision=min(max(int(entry.get("pricePrecision", 8)), 0), MAX_PRECISION),
        quantity_precision=min(max(int(entry.get("quantityPrecision", 8)), 0), MAX_PRECISION),
        max_qty=_f(ls.get("maxQty", 0)),
        min_price=_f(pf.get("minPrice", 0)),
        max_price=_f(pf.get("maxPrice", 0)),
        market_step_size=_f(ml.get("stepSize", 0)),
        market_max_qty=_f(ml.get("maxQty", 0)),
        percent_up=_f(pp.get("multiplierUp", 0)),
        percent_down=_f(pp.get("multiplierDown", 0)),
        base_asset=str(entry.get("baseAsset", "")),
        quote_asset=str(entry.get("quoteAsset", "")),
        margin_asset=str(entry.get("marginAsset", "")),
        contract_type=str(entry.get("contractType", "")),
    )


def tradable(entry: Mapping[str, Any]) -> bool:
    return (entry.get("contractType") == "PERPETUAL" and entry.get("status") == "TRADING"
            and entry.get("quoteAsset") == "USDT" and entry.get("marginAsset", "USDT") == "USDT")


def select_symbols(exchange_info: Mapping[str, Any], tickers: Sequence[Mapping[str, Any]] | None,
                   n: int) -> list[wire.SymbolInfo]:
    """Top ``n`` tradable USDT perpetuals by 24h quote volume (exchangeInfo order breaks ties;
    without tickers, exchangeInfo order). Raises DecodeError on a body of the wrong shape."""
    syms = exchange_info.get("symbols") if isinstance(exchange_info, Mapping) else None
    if not isinstance(syms, list):
        raise DecodeError("exchangeInfo has no symbols list", reason="bad_exchange_info")
    infos: list[wire.SymbolInfo] = []
    for e in syms:
        if not isinstance(e, Mapping) or not tradable(e):
            continue
        try:
            infos.append(parse_symbol(e))
        except (KeyError, TypeError, ValueError, DecodeError):  # ValueError: float('x')
            continue  # one broken entry must not cost us the others
    volume: dict[str, float] = {}
    for t in tickers or ():
        try:
            volume[str(t["symbol"])] = _f(t["quoteVolume"])
        except (KeyError, TypeError, ValueError, DecodeError):  # ValueError: float('x')
            continue
    order = {info.symbol: i for i, info in enumerate(infos)}
    infos.sort(key=lambda i: (-volume.get(i.symbol, 0.0), order[i.symbol]))
    return infos[:n]


def infos_for(exchange_info: Mapping[str, Any], symbols: Sequence[str]) -> list[wire.SymbolInfo]:
    """The rules of each of ``symbols`` that exchangeInfo describes (configured symbols)."""
    wanted = set(symbols)
    out: list[wire.SymbolInfo] = []
    for e in exchange_info.get("symbols", ()) if isinstance(exchange_info, Mapping) else ():
        if isinstance(e, Mapping) and e.get("symbol") in wanted:
            try:
                out.append(parse_symbol(e))
            except (KeyError, TypeError, ValueError, DecodeError):  # ValueError: float('x')
                continue
    return out


def info_bodies(infos: Sequence[wire.SymbolInfo]) -> tuple[list[wire.SymbolInfo], int]:
    """The SYMBOL_INFO messages the feed publishes for the brain, and how many infos were
    unusable (a zero tick or step size, or a symbol the wire refuses: counted, never published)."""
    out: list[wire.SymbolInfo] = []
    bad = 0
    for i in infos:
        if i.tick_size <= 0 or i.step_size <= 0 or not wire_symbol_ok(i.symbol):
            bad += 1
            continue
        out.append(i)
    return out, bad


@dataclass(frozen=True, kw_only=True)
class Rediscovery:
    """What a later discovery changes for a running feed."""

    add: tuple[str, ...]  # entered the top N: start streaming (and hydrate) them
    gone: tuple[str, ...]  # streamed, but no longer TRADING on the exchange: reported
    rules: tuple[wire.SymbolInfo, ...]  # new or changed trading rules of streamed (or added) symbols


def headroom(max_symbols: int) -> int:
    """How many symbols a feed streams at most after re-discoveries: symbols that leave the
    top N keep streaming (a position may be open in one), so the set may grow by 25 %."""
    return max_symbols + max(1, max_symbols // 4)


def plan_rediscovery(current: Sequence[str], exchange_info: Mapping[str, Any],
                     tickers: Sequence[Mapping[str, Any]] | None, max_symbols: int,
                     known_rules: Mapping[str, wire.SymbolInfo], *, rank: bool = True) -> Rediscovery:
    """Pure: compare a fresh exchangeInfo (and 24h tickers) with what the feed streams.
    ``rank`` False (configured symbols): nothing is added, only rules and status are checked.
    Raises DecodeError on a body of the wrong shape (the caller keeps streaming as it was)."""
    top = select_symbols(exchange_info, tickers, max_symbols) if rank else []
    streamed = set(current)
    room = max(0, headroom(max_symbols) - len(current))
    add = tuple(i.symbol for i in top if i.symbol not in streamed)[:room]
    entries = {e.get("symbol"): e for e in exchange_info.get("symbols", ()) if isinstance(e, Mapping)}
    gone = tuple(s for s in current if not (s in entries and entries[s].get("status") == "TRADING"))
    rules: list[wire.SymbolInfo] = []
    for s in (*current, *add):
        e = entries.get(s)
        if e is None:
            continue
        try:
            info = parse_symbol(e)
        except (KeyError, TypeError, ValueError, DecodeError):  # ValueError: float('x')
            continue
        if known_rules.get(s) != info:
            rules.append(info)
    return Rediscovery(add=add, gone=gone, rules=tuple(rules))


def wire_symbol_ok(symbol: str) -> bool:
    return 0 < len(symbol) <= 32 and symbol.isascii() and symbol.isalnum() and symbol.upper() == symbol


SYNTHETIC_LABEL = "SYNTHETIC-FROM-CANDLES"  # exchange_sim: ticks synthesized from real candles
DERIVED_LABEL = "DERIVED-DEMO"  # exchange_sim: a price-scaled, time-shifted copy of a real symbol


def demo_flags(exchange_info: Mapping[str, Any]) -> dict[str, int]:
    """Ring flag bits per symbol from the exchange's own labels (``underlyingSubType``): the
    local sim marks synthesized and derived demo data so that everything downstream can say
    so. Real Binance symbols carry neither label and get 0."""
    out: dict[str, int] = {}
    for e in exchange_info.get("symbols", ()) if isinstance(exchange_info, Mapping) else ():
        if not isinstance(e, Mapping):
            continue
        sub = e.get("underlyingSubType") or ()
        bits = (Flag.SYNTHETIC if SYNTHETIC_LABEL in sub else 0) | (Flag.DERIVED if DERIVED_LABEL in sub else 0)
        if bits:
            out[str(e.get("symbol"))] = int(bits)
    return out
