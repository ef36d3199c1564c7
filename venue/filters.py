"""One symbol's trading rules, exact, and where they come from (pure, but for ``fetch_filters``).

``SymbolFilters`` is the one type of Binance's symbol rules in exact Decimals (tick size, step
size, minimum quantity and notional, price bounds, market lot size, percent price), read from
the raw exchangeInfo entry (``filters_from_entry``: decimal strings, filters in any order) or
from the feed's published ``SymbolInfo`` (``filters_from_symbol_info``), which carries every
one of them: the feed's discovery is the one fetch of exchangeInfo in a running stack, and
``FeedFilters`` is the brain's view of what it published. The grid helpers round onto a step
exactly (integers of one common unit, never through float).
"""

from __future__ import annotations

import decimal
import json
import urllib.request
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from common.errors import DecodeError
from common.wire import SymbolInfo  # the feed's published rules: what filters_from_symbol_info reads


# ---------------------------------------------------------------------------- exact numbers
def to_decimal(x: Any) -> Decimal | None:
    """A finite Decimal from a float (its shortest repr), int, str or Decimal; None otherwise."""
    t = type(x)
    if t is float:  # the usual case first (prices and quantities from the strategy and the feed)
        d = Decimal(repr(x))  # repr is the shortest round-tripping text: 0.1 -> "0.1"
        return d if d.is_finite() else None
    if t is Decimal:
        return x if x.is_finite() else None
    if isinstance(x, bool):
        return None
    try:
        if isinstance(x, Decimal):
            d = x
        elif isinstance(x, int):
            d = Decimal(x)
        elif isinstance(x, float):
            d = Decimal(repr(x))  # repr is the shortest round-tripping text: 0.1 -> "0.1"
        elif isinstance(x, str):
            d = Decimal(x.strip())
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


_UNBOUNDED = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _coef(d: Decimal) -> tuple[int, int]:
    """(integer coefficient, exponent) with d == coefficient * 10**exponent, exactly."""
    exp = d.as_tuple().exponent
    # moving the point by the exponent keeps every digit (the context cannot round them)
    return int(d.scaleb(-exp, _UNBOUNDED)), exp


def _grid_units(x: Decimal, step: Decimal) -> tuple[int, int]:
    """x and step as integers of one common unit 10**e (exact): returns (x_units, step_units)."""
    xn, xe = _coef(x)
    sn, se = _coef(step)
    e = min(xe, se)
    return xn * 10 ** (xe - e), sn * 10 ** (se - e)


def _on_grid(k: int, step: Decimal) -> Decimal:
    """k * step, exactly, written with the step's exponent (0.001 -> 3 decimals)."""
    sn, se = _coef(step)
    return Decimal(f"{k * sn}E{se}")  # the string constructor is exact, whatever the context


# A positive finite step (a symbol's tick or lot size) as (the step itself, numerator and
# denominator of its exact ratio, its coefficient and exponent), cached by identity: the
# filters' Decimals live as long as the filters, and every order rounds onto them. The entry
# holds the step, so no other object can take its id while it is cached.
_STEPS: dict[int, tuple[Decimal, int, int, int, int]] = {}
_STEPS_MAX = 1024


def _step_of(step: Any) -> tuple[Decimal, int, int, int, int] | None:
    c = _STEPS.get(id(step))
    if c is not None and c[0] is step:
        return c
    if type(step) is not Decimal or not step.is_finite() or step <= 0:
        return None  # the general path below (its own errors for a bad step)
    n, d = step.as_integer_ratio()
    sn, se = _coef(step)
    if len(_STEPS) >= _STEPS_MAX:
        _STEPS.clear()
    c = _STEPS[id(step)] = (step, n, d, sn, se)
    return c


def _ratio(x: Any) -> tuple[int, int] | None:
    """A finite Decimal's exact (numerator, denominator > 0); None: take the general path."""
    if type(x) is not Decimal or not x.is_finite():
        return None
    return x.as_integer_ratio()


def round_qty_down(qty: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` not above ``qty`` (never more than was asked for)."""
    c, r = _step_of(step), _ratio(qty)
    if c is not None and r is not None:  # floor(qty / step) from the exact ratios (qd, n, d > 0)
        _, n, d, sn, se = c
        return Decimal(f"{(r[0] * d) // (r[1] * n) * sn}E{se}")
    q, s = _grid_units(qty, step)
    return _on_grid(q // s, step)


def round_price(price: Decimal, tick: Decimal, side: str) -> Decimal:
    """The nearest multiple of ``tick``; an exact tie goes the passive way (BUY down, SELL up)."""
    c, r = _step_of(tick), _ratio(price)
    if c is not None and r is not None:  # price / tick = num / den exactly (den > 0)
        _, n, d, sn, se = c
        den = r[1] * n
        k, rem = divmod(r[0] * d, den)
        if 2 * rem > den or (2 * rem == den and side == "SELL"):
            k += 1
        return Decimal(f"{k * sn}E{se}")
    p, t = _grid_units(price, tick)
    k, rem = divmod(p, t)
    if 2 * rem > t or (2 * rem == t and side == "SELL"):
        k += 1
    return _on_grid(k, tick)


def is_on_grid(x: Decimal, step: Decimal) -> bool:
    c, r = _step_of(step), _ratio(x)
    if c is not None and r is not None:
        return (r[0] * c[2]) % (r[1] * c[1]) == 0
    a, s = _grid_units(x, step)
    return a % s == 0


def fmt(d: Decimal) -> str:
    """Plain decimal text for the exchange (no exponent): Decimal("1E-3") -> "0.001"."""
    return format(d, "f")


# ---------------------------------------------------------------------------- exchange filters
@dataclass(frozen=True, kw_only=True)
class SymbolFilters:
    """One symbol's trading rules, exact. 0 in an optional bound means "no such bound"."""

    symbol: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    max_qty: Decimal = Decimal(0)
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)
    market_step_size: Decimal = Decimal(0)  # MARKET_LOT_SIZE; 0 = same as LOT_SIZE
    market_max_qty: Decimal = Decimal(0)
    percent_up: Decimal = Decimal(0)  # PERCENT_PRICE: BUY limit <= mark * up
    percent_down: Decimal = Decimal(0)  # SELL limit >= mark * down

    def __post_init__(self) -> None:
        if self.tick_size <= 0 or self.step_size <= 0:
            raise DecodeError(f"{self.symbol}: tick and step size must be positive", reason="bad_filters")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Decimal) and (not v.is_finite() or v < 0):
                raise DecodeError(f"{self.symbol}: {f.name} must be finite and >= 0", reason="bad_filters")


def _dec(v: Any, what: str) -> Decimal:
    d = to_decimal(v if v is not None else 0)
    if d is None or d < 0:
        raise DecodeError(f"bad {what}: {v!r}", reason="bad_filters")
    return d


def filters_from_symbol_info(info: SymbolInfo) -> SymbolFilters:
    """From the feed's ``wire.SymbolInfo`` (floats read through their shortest repr: 0.1 stays
    0.1). A message of an older feed has no price bounds, maximum quantity or PERCENT_PRICE:
    0 there, "no such bound", as before."""
    return SymbolFilters(
        symbol=info.symbol,
        tick_size=_dec(info.tick_size, "tickSize"),
        step_size=_dec(info.step_size, "stepSize"),
        min_qty=_dec(info.min_qty, "minQty"),
        min_notional=_dec(info.min_notional, "notional"),
        max_qty=_dec(info.max_qty, "maxQty"),
        min_price=_dec(info.min_price, "minPrice"),
        max_price=_dec(info.max_price, "maxPrice"),
        market_step_size=_dec(info.market_step_size, "market stepSize"),
        market_max_qty=_dec(info.market_max_qty, "market maxQty"),
        percent_up=_dec(info.percent_up, "multiplierUp"),
        percent_down=_dec(info.percent_down, "multiplierDown"),
    )


def _text(x: float) -> str:
    """A rule's float as the exchange writes it: shortest repr, no exponent (1e-05 -> 0.00001)."""
    return fmt(Decimal(repr(float(x))))


# the order types and times in force Binance lists for every USD-M perpetual (the rules do not
# carry them: ccxt checks an order's type against them before it sends, the exchange after)
USDM_ORDER_TYPES = ("LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                    "TRAILING_STOP_MARKET")
USDM_TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "GTD")


def entry_from_symbol_info(info: SymbolInfo) -> dict[str, Any]:
    """The exchangeInfo symbol entry (Binance's layout) the rules came from, as far as they
    tell: ``filters_from_entry`` of it gives ``filters_from_symbol_info(info)`` back, and
    ccxt's ``parse_market`` of it the market ccxt trades with. A bound that is 0 (not given)
    is left out; labels an older feed did not send are USDT and PERPETUAL (all it streams)."""
    def given(**kv: float) -> dict[str, str]:
        return {k: _text(v) for k, v in kv.items() if v}

    filters: list[dict[str, Any]] = [
        {"filterType": "PRICE_FILTER", "tickSize": _text(info.tick_size),
         **given(minPrice=info.min_price, maxPrice=info.max_price)},
        {"filterType": "LOT_SIZE", "stepSize": _text(info.step_size), "minQty": _text(info.min_qty),
         **given(maxQty=info.max_qty)},
        {"filterType": "MIN_NOTIONAL", "notional": _text(info.min_notional)},
    ]
    if info.market_step_size or info.market_max_qty:
        filters.append({"filterType": "MARKET_LOT_SIZE",
                        **given(stepSize=info.market_step_size, maxQty=info.market_max_qty)})
    if info.percent_up or info.percent_down:
        filters.append({"filterType": "PERCENT_PRICE",
                        **given(multiplierUp=info.percent_up, multiplierDown=info.percent_down)})
    quote = info.quote_asset or "USDT"
    entry: dict[str, Any] = {
        "symbol": info.symbol, "status": "TRADING", "contractType": info.contract_type or "PERPETUAL",
        "quoteAsset": quote, "marginAsset": info.margin_asset or quote,
        "pricePrecision": info.price_precision, "quantityPrecision": info.quantity_precision,
        "filters": filters, "orderTypes": list(USDM_ORDER_TYPES), "timeInForce": list(USDM_TIME_IN_FORCE)}
    if info.base_asset:
        entry["baseAsset"] = info.base_asset
    return entry


def filters_from_entry(entry: Mapping[str, Any]) -> SymbolFilters:
    """From one raw exchangeInfo symbol entry (exact decimal strings; filters in any order)."""
    try:
        fs = {f.get("filterType"): f for f in entry.get("filters", ()) if isinstance(f, Mapping)}
        pf, ls = fs.get("PRICE_FILTER", {}), fs.get("LOT_SIZE", {})
        ml, mn, pp = fs.get("MARKET_LOT_SIZE", {}), fs.get("MIN_NOTIONAL", {}), fs.get("PERCENT_PRICE", {})
        symbol = str(entry["symbol"])
    except (AttributeError, KeyError, TypeError) as exc:
        raise DecodeError(f"bad exchangeInfo entry: {exc!r}", reason="bad_filters") from None
    return SymbolFilters(
        symbol=symbol,
        tick_size=_dec(pf.get("tickSize"), "tickSize"),
        step_size=_dec(ls.get("stepSize"), "stepSize"),
        min_qty=_dec(ls.get("minQty"), "minQty"),
        max_qty=_dec(ls.get("maxQty"), "maxQty"),
        min_price=_dec(pf.get("minPrice"), "minPrice"),
        max_price=_dec(pf.get("maxPrice"), "maxPrice"),
        min_notional=_dec(mn.get("notional", mn.get("minNotional")), "notional"),
        market_step_size=_dec(ml.get("stepSize"), "market stepSize"),
        market_max_qty=_dec(ml.get("maxQty"), "market maxQty"),
        percent_up=_dec(pp.get("multiplierUp"), "multiplierUp"),
        percent_down=_dec(pp.get("multiplierDown"), "multiplierDown"),
    )


# ---------------------------------------------------------------------------- the feed's rules
class FeedFilters(Mapping[str, SymbolFilters]):
    """The filters of the rules the feed published, as they are at each look-up: ``rules()``
    is the live mapping symbol -> ``SymbolInfo`` (the brain's, filled from the feed's messages
    and the database), so a rule published later, or changed, counts from its next look-up;
    each rule is converted once. A rule that converts to no valid filters counts as absent.

    ``complete(symbols)`` covers what the feed has no rules for (a position in a symbol it
    does not stream): one call of ``fetch`` (exchangeInfo), whose filters of those symbols are
    kept; the feed's rules win over them when they arrive."""

    def __init__(self, rules: Callable[[], Mapping[str, SymbolInfo]],
                 fetch: Callable[[], Mapping[str, SymbolFilters]] | None = None) -> None:
        self._rules = rules
        self._fetch = fetch
        self._converted: dict[str, tuple[SymbolInfo, SymbolFilters | None]] = {}
        self._fetched: dict[str, SymbolFilters] = {}
        self.unusable = 0  # rules that gave no valid filters (counted once per rule)

    def _from_rule(self, symbol: str, info: SymbolInfo) -> SymbolFilters | None:
        hit = self._converted.get(symbol)
        if hit is None or hit[0] is not info:
            try:
                hit = (info, filters_from_symbol_info(info))
            except DecodeError:
                self.unusable += 1
                hit = (info, None)
            self._converted[symbol] = hit
        return hit[1]

    def __getitem__(self, symbol: str) -> SymbolFilters:
        info = self._rules().get(symbol)
        f = self._from_rule(symbol, info) if info is not None else None
        if f is None:
            return self._fetched[symbol]  # KeyError: no filters for it
        return f

    def _symbols(self) -> set[str]:
        rules = dict(self._rules())  # one copy: the brain's thread may add rules meanwhile
        return {s for s, i in rules.items() if self._from_rule(s, i) is not None} | set(self._fetched)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._symbols()))

    def __len__(self) -> int:
        return len(self._symbols())

    def complete(self, symbols: Iterable[str]) -> list[str]:
        """Fetch the filters of ``symbols`` the feed has no rules for (one fetch, none when it
        has them all); returns those still without filters. A failed fetch raises."""
        missing = sorted({s for s in symbols if s not in self})
        if not missing or self._fetch is None:
            return missing
        got = self._fetch()
        self._fetched.update({s: got[s] for s in missing if s in got})
        return [s for s in missing if s not in self]


# ---------------------------------------------------------------------------- inputs


def fetch_filters(rest_url: str, timeout_s: float = 10.0) -> dict[str, SymbolFilters]:
    """Every trading symbol's filters from ``/fapi/v1/exchangeInfo`` (exact decimal strings)."""
    with urllib.request.urlopen(f"{rest_url.rstrip('/')}/fapi/v1/exchangeInfo", timeout=timeout_s) as r:  # noqa: S310
        body = json.loads(r.read())
    return filters_from_exchange_info(body)


def load_filters(path: str | Path) -> dict[str, SymbolFilters]:
    """Filters from a saved exchangeInfo body (a replay's: the capture carries it)."""
    return filters_from_exchange_info(json.loads(Path(path).read_text()))


def filters_from_exchange_info(body: Mapping[str, Any]) -> dict[str, SymbolFilters]:
    out = {}
    for entry in body.get("symbols", ()):
        if entry.get("status") == "TRADING":
            f = filters_from_entry(entry)
            out[f.symbol] = f
    return out


def generic_filters(symbol: str) -> SymbolFilters:
    """Filters for a symbol without exchangeInfo (a backtest on a catalog alone): a fine grid and
    Binance's 5 USDT minimum notional for most USD-M symbols."""
    tiny = Decimal("0.00000001")
    return SymbolFilters(symbol=symbol, tick_size=tiny, step_size=tiny, min_qty=tiny, min_notional=Decimal(5))
