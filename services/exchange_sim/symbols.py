"""The sim's symbol set: the real captured symbol plus derived demo symbols.

A derived symbol replays the same recorded stream, price-scaled and time-shifted:

- price level spread log-uniformly over 1e-4 .. 1e4 USDT (a golden-ratio sequence, so any
  count of symbols covers the range evenly), with a tick of about 1e-4 of the price (five
  significant digits, like most Binance alts) and every price rounded onto that grid;
- a quantity step scaled by the inverse power of ten, so notional per trade stays near the
  real one;
- its own starting point inside the capture, so the symbols do not move in lockstep;
- its own id counters.

Names are ``D001USDT`` .. ``D999USDT`` (``D1000USDT`` beyond): valid Binance-style names that
no real market uses; exchangeInfo marks them with ``underlyingSubType: ["DERIVED-DEMO"]``.
Everything here is a pure function of the capture and the count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.errors import ConfigError
from services.exchange_sim.recorded_market import Capture

DERIVED_TAG = "DERIVED-DEMO"
LOG10_PRICE_MIN = -4.0  # derived price levels span 1e-4 ..
LOG10_PRICE_MAX = 4.0  # .. 1e4 USDT
SIG_DIGITS = 5  # tick = 10**(floor(log10 price) - 4): prices carry 4-5 significant digits
GOLDEN = 0.6180339887498949  # spreads price levels: any prefix of j*GOLDEN mod 1 is even
PLASTIC = 0.7548776662466927  # spreads start offsets independently of the price levels
TRADE_ID_STRIDE = 100_000_000  # derived symbol j counts trade ids from j * stride
UPDATE_ID_STRIDE = 1_000_000_000_000  # book update ids (Binance's are ~5e12 for BTCUSDT)
AGG_ID_STRIDE = 10_000_000


@dataclass(frozen=True, kw_only=True)
class SymbolSpec:
    """How one sim symbol maps the capture onto its own prices, quantities, ids and clock."""

    index: int  # 0 = the real symbol
    name: str  # upper case, as in ``s``
    derived: bool
    price_scale: float  # symbol price / capture price (before the loop ratio)
    price_decimals: int  # decimals of the price strings
    tick_units: int  # tick in units of 10**-price_decimals
    qty_decimals: int
    qty_mult: int  # symbol quantity units per capture quantity unit
    step_units: int  # step in units of 10**-qty_decimals
    offset_ms: int  # where in the capture (ms after its first event) this symbol starts
    trade_id_base: int  # trade id of the capture's first trade, loop 0
    update_id_base: int  # update id of the capture's first book ticker, loop 0
    agg_id_start: int  # first aggTrade id this symbol sends

    @property
    def stream(self) -> str:
        """The lower-case name used in stream names (``btcusdt@trade``)."""
        return self.name.lower()

    @property
    def base_asset(self) -> str:
        return self.name[:-4] if self.name.endswith("USDT") else self.name


def derived_name(j: int) -> str:
    return f"D{j:03d}USDT"


def _first_trade_price(cap: Capture) -> int:
    return int(cap.p1[cap.trade_rows()[0]])


def real_spec(cap: Capture) -> SymbolSpec:
    trades, books = cap.trade_rows(), cap.book_rows()
    return SymbolSpec(
        index=0, name=cap.symbol, derived=False, price_scale=1.0,
        price_decimals=cap.price_decimals, tick_units=cap.tick_units,
        qty_decimals=cap.qty_decimals, qty_mult=1, step_units=cap.step_units, offset_ms=0,
        trade_id_base=int(cap.ident[trades[0]]), update_id_base=int(cap.ident[books[0]]),
        agg_id_start=AGG_ID_STRIDE,
    )


def derived_spec(cap: Capture, j: int) -> SymbolSpec:
    """The ``j``-th derived symbol (``j >= 1``)."""
    if j < 1:
        raise ValueError("derived symbols count from 1")  # an index of ours: j = 0 is the real symbol
    log_price = LOG10_PRICE_MIN + (LOG10_PRICE_MAX - LOG10_PRICE_MIN) * ((j * GOLDEN) % 1.0)
    first = _first_trade_price(cap) / 10**cap.price_decimals
    scale = 10**log_price / first
    price_decimals = (SIG_DIGITS - 1) - math.floor(log_price)  # 1 .. 8
    qty_ideal = cap.qty_decimals + round(math.log10(scale))
    qty_decimals = max(0, qty_ideal)
    offset = int(((j * PLASTIC) % 1.0) * cap.span_ms)
    return SymbolSpec(
        index=j, name=derived_name(j), derived=True, price_scale=scale,
        price_decimals=price_decimals, tick_units=1,
        qty_decimals=qty_decimals, qty_mult=10 ** (qty_decimals - qty_ideal),
        step_units=cap.step_units,  # a coarse multiplier keeps quantities on this grid too
        offset_ms=offset,
        trade_id_base=j * TRADE_ID_STRIDE + 1,
        update_id_base=j * UPDATE_ID_STRIDE + 1,
        agg_id_start=(j + 1) * AGG_ID_STRIDE,
    )


def make_specs(cap: Capture, count: int) -> tuple[SymbolSpec, ...]:
    """The real symbol followed by ``count - 1`` derived ones."""
    if count < 1:
        raise ConfigError("at least one symbol")
    return (real_spec(cap),) + tuple(derived_spec(cap, j) for j in range(1, count))
