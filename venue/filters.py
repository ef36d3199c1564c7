"""One symbol's trading rules, exact, and where they come from (pure, but for ``fetch_filters``).

``SymbolFilters`` is the one type of Binance's symbol rules in exact Decimals (tick size, step
size, minimum quantity and notional, price bounds, market lot size, percent price), read from
the raw exchangeInfo entry (``filters_from_entry``: decimal strings, filters in any order) or
from the feed's published ``SymbolInfo`` (``filters_from_symbol_info``). The grid helpers
round onto a step exactly (integers of one common unit, never through float).
"""

from __future__ import annotations

import decimal
import json
import urllib.request
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping, Protocol

from common.errors import DecodeError


class SymbolInfo(Protocol):
    """What ``filters_from_symbol_info`` reads (the feed's ``common.wire.SymbolInfo``)."""

    symbol: str
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float


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
    """From the feed's ``wire.SymbolInfo`` (floats read through their shortest repr: 0.1 stays 0.1).

    SymbolInfo carries no price bounds, max quantity or PERCENT_PRICE; use
    ``filters_from_entry`` on the raw exchangeInfo entry to get those too."""
    return SymbolFilters(
        symbol=info.symbol,
        tick_size=_dec(info.tick_size, "tickSize"),
        step_size=_dec(info.step_size, "stepSize"),
        min_qty=_dec(info.min_qty, "minQty"),
        min_notional=_dec(info.min_notional, "notional"),
    )


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
