"""What each kind of archive file holds: its CSV columns, the catalog's typed columns, its checks.

Binance's public data archive (USD-M futures) has, per symbol, these kinds we read:

| kind | CSV columns (in file order) | time column | one row is |
|---|---|---|---|
| ``klines`` | open_time, open, high, low, close, volume, close_time, quote_volume, count, taker_buy_volume, taker_buy_quote_volume, ignore | open_time | one bar of the trade price |
| ``markPriceKlines`` | the same 12 names; volume and the taker/quote columns are 0 ("ignore" in the API), count is the number of mark prices in the bar | open_time | one bar of the mark price |
| ``aggTrades`` | agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time, is_buyer_maker | transact_time | trades at one price by one taker order |
| ``fundingRate`` | calc_time, funding_interval_hours, last_funding_rate | calc_time | one funding settlement (monthly files only) |

Files published since about 2022 start with a header row of exactly these names; older ones
have no header (Binance did not rewrite them). Futures timestamps are milliseconds; the
spot archive switched to microseconds on 2025-01-01, so a file whose times are microseconds
(spot data brought in with ``aegis data import``) is read too and stored in milliseconds.
Spot aggTrades files carry an eighth column, ``is_best_match``, which is accepted and dropped.

Prices and quantities: float64, not decimal128
-----------------------------------------------
Every decimal cell (prices, quantities, volumes, funding rates) is stored as float64. A
decimal written with at most 15 significant digits maps to exactly one nearest double, and
that double prints back (``repr``) as the same decimal: nothing is lost as long as the
digits fit. Prices and base quantities fit (at most 8 decimals, magnitudes below 1e7:
a BTCUSDT close like ``96440.01`` has 7 digits). Quote volumes (sums of price x quantity)
sometimes do not: 11 of the 41,701 quote volumes of the December 2024 BTCUSDT spot file in
this repository have 16 digits (``80829684.33212996``), and are stored within one unit of
the 16th digit (a relative error below 1.2e-16). The converter counts every such cell and
reports it (``inexact_cells`` in the manifest, a note in ``aegis data list``) instead of
rounding silently. Against decimal128: the backtest this catalog feeds must run at hundreds
of thousands of bars per second per core, which needs numpy/numba arrays of machine
numbers; decimal128 columns become Python ``Decimal`` objects on the way there
(microseconds each) and take twice the space. Code that needs exact money takes
``Decimal(repr(x))`` of a stored price or quantity, which is the archive's decimal exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from common.errors import DataError

# DBL_DIG: any decimal of at most this many significant digits survives decimal -> double -> decimal
EXACT_FLOAT_DIGITS = 15
MINUTE_MS = 60_000
# kline intervals Binance publishes for USD-M futures, with their length; 1mo has no fixed
# length, so it gets no gap check (None)
INTERVAL_MS: dict[str, int | None] = {
    "1m": MINUTE_MS, "3m": 3 * MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS, "1h": 60 * MINUTE_MS, "2h": 120 * MINUTE_MS, "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS, "8h": 480 * MINUTE_MS, "12h": 720 * MINUTE_MS, "1d": 1440 * MINUTE_MS,
    "3d": 3 * 1440 * MINUTE_MS, "1w": 7 * 1440 * MINUTE_MS, "1mo": None,
}


@dataclass(frozen=True, kw_only=True)
class Column:
    """One CSV column: its name in the header, its catalog type, and how its text is read."""

    name: str
    type: pa.DataType
    keep: bool = True  # stored in the catalog
    decimal: bool = False  # decimal text -> float64, significant digits counted
    time: bool = False  # ms (or us, converted) since the epoch -> int64 ms


def _dec(name: str, keep: bool = True) -> Column:
    return Column(name=name, type=pa.float64(), decimal=True, keep=keep)


def _time(name: str) -> Column:
    return Column(name=name, type=pa.int64(), time=True)


def _int(name: str) -> Column:
    return Column(name=name, type=pa.int64())


_KLINE_CSV = (
    _time("open_time"), _dec("open"), _dec("high"), _dec("low"), _dec("close"), _dec("volume"),
    _time("close_time"), _dec("quote_volume"), _int("count"), _dec("taker_buy_volume"),
    _dec("taker_buy_quote_volume"), Column(name="ignore", type=pa.string(), keep=False),
)
# the mark price's 12 columns carry nothing in volume/quote/taker ("ignore" in the API): not kept
_MARK_CSV = tuple(
    c if c.name in ("open_time", "open", "high", "low", "close", "close_time", "count")
    else Column(name=c.name, type=pa.string(), keep=False)
    for c in _KLINE_CSV
)
_AGG_CSV = (
    _int("agg_trade_id"), _dec("price"), _dec("quantity"), _int("first_trade_id"),
    _int("last_trade_id"), _time("transact_time"), Column(name="is_buyer_maker", type=pa.bool_()),
)
_AGG_SPOT_CSV = _AGG_CSV + (Column(name="is_best_match", type=pa.string(), keep=False),)
_FUNDING_CSV = (
    _time("calc_time"), _int("funding_interval_hours"), _dec("last_funding_rate"),
)


@dataclass(frozen=True, kw_only=True)
class KindSpec:
    """One kind of archive file and the rules its rows must follow."""

    name: str  # the archive's folder name
    layouts: tuple[tuple[Column, ...], ...]  # accepted column layouts; the first is the futures one
    time_column: str
    # strictly increasing from row to row: an equal value is a duplicate row, a smaller one is
    # out of order. For aggTrades the id is the key and the time must only not go back.
    key_column: str
    has_interval: bool
    daily: bool  # the archive has daily files of this kind (fundingRate: monthly only)

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.layouts[0]

    @property
    def schema(self) -> pa.Schema:
        """The catalog's columns for this kind (CSV order, kept columns only)."""
        return pa.schema([pa.field(c.name, c.type, nullable=False) for c in self.columns if c.keep])


KINDS: dict[str, KindSpec] = {
    "klines": KindSpec(name="klines", layouts=(_KLINE_CSV,), time_column="open_time",
                       key_column="open_time", has_interval=True, daily=True),
    "markPriceKlines": KindSpec(name="markPriceKlines", layouts=(_MARK_CSV,), time_column="open_time",
                                key_column="open_time", has_interval=True, daily=True),
    "aggTrades": KindSpec(name="aggTrades", layouts=(_AGG_CSV, _AGG_SPOT_CSV),
                          time_column="transact_time", key_column="agg_trade_id",
                          has_interval=False, daily=True),
    "fundingRate": KindSpec(name="fundingRate", layouts=(_FUNDING_CSV,), time_column="calc_time",
                            key_column="calc_time", has_interval=False, daily=False),
}


def kind_spec(kind: str) -> KindSpec:
    """The spec of ``kind``; a ``DataError`` naming the known kinds otherwise."""
    try:
        return KINDS[kind]
    except KeyError:
        raise DataError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}") from None


def dataset_name(kind: str, interval: str | None) -> str:
    """The catalog folder of a kind: ``klines_1m``, ``markPriceKlines_1h``, ``aggTrades``."""
    spec = kind_spec(kind)
    if spec.has_interval:
        if interval not in INTERVAL_MS:
            raise DataError(f"{kind} needs an interval, one of {', '.join(INTERVAL_MS)}; got {interval!r}")
        return f"{kind}_{interval}"
    return kind


def parse_dataset(name: str) -> tuple[str, str | None]:
    """(kind, interval) of a catalog folder name; the inverse of ``dataset_name``."""
    kind, _, interval = name.partition("_")
    spec = kind_spec(kind)
    if spec.has_interval != bool(interval) or (interval and interval not in INTERVAL_MS):
        raise DataError(f"not a dataset name: {name!r}")
    return kind, (interval or None)


def bar_step_ms(kind: str, interval: str | None) -> int | None:
    """The fixed distance between consecutive rows, for the gap check; None: no fixed step."""
    return INTERVAL_MS.get(interval or "") if kind_spec(kind).has_interval else None
