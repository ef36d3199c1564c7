"""REST bodies in Binance USD-M's shapes, built from the market state (pure functions).

Shapes follow the real samples in ``tests/data/binance_usdm`` (the exchangeInfo symbol
entries and the klines and depth bodies ccxt recorded from Binance, see its SOURCES.md):
prices and quantities are strings, times and ids numbers, and errors are compact
``{"code":-1121,"msg":"Invalid symbol."}`` bodies with HTTP 400.

``/fapi/v1/depth`` answers with ``limit`` levels a side (default 500, as Binance): the first
is the current book ticker; the levels behind it are synthesized, one tick apart, each with
the touch's quantity (at least one step), which is exactly the book the sim's market orders
walk (``trading.walk``); a side stops before a price of zero. The sim does not rebuild the
real book from the capture's depth diffs.
"""

from __future__ import annotations

from typing import Any, Mapping

from services.exchange_sim.candle_trades import SYNTHETIC_TAG
from services.exchange_sim.recorded_market import Capture
from services.exchange_sim.render import fmt_units
from services.exchange_sim.engine import base_factor, round_prices
from services.exchange_sim.klines import (F_C, F_H, F_L, F_N, F_O, F_OPEN_TIME, F_Q, F_TQ, F_TV,
                                          F_V, INTERVALS_MS, resample, select)
from services.exchange_sim.market import FUNDING_RATE, Market, SymState, next_funding_ms
from services.exchange_sim.symbols import DERIVED_TAG, SymbolSpec

KLINES_DEFAULT_LIMIT = 500
KLINES_MAX_LIMIT = 1500
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
DEPTH_DEFAULT_LIMIT = 500
ONBOARD_MS = 1569398400000  # BTCUSDT's real listing date; derived symbols reuse it
DELIVERY_MS = 4133404800000  # what Binance reports for perpetuals (year 2100)

RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]


class RestError(Exception):
    """A Binance error answer: HTTP status, code and message."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


INVALID_SYMBOL = (-1121, "Invalid symbol.")


def mandatory(name: str) -> RestError:
    return RestError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise RestError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def symbol_param(params: Mapping[str, str], by_name: Mapping[str, int], required: bool) -> int | None:
    raw = params.get("symbol")
    if raw is None or raw == "":
        if required:
            raise mandatory("symbol")
        return None
    sym = by_name.get(raw)
    if sym is None:
        raise RestError(*INVALID_SYMBOL)
    return sym


def plain(units: int, decimals: int) -> str:
    """Decimal string without trailing zeros (``1000.000`` -> ``1000``), as filters print."""
    s = fmt_units(units, decimals)
    return s.rstrip("0").rstrip(".") if "." in s else s


# ---------------------------------------------------------------------------- exchangeInfo
def _qty_units_for(spec: SymbolSpec, cap: Capture, capture_qty: int) -> int:
    """A capture quantity (whole units, e.g. 1000 BTC) in this symbol's quantity units."""
    return capture_qty * 10**cap.qty_decimals * spec.qty_mult


def symbol_info(spec: SymbolSpec, cap: Capture, synthetic: bool = False) -> dict[str, Any]:
    pdec, qdec = spec.price_decimals, spec.qty_decimals
    first = cap.p1[cap.trade_rows()[0] : cap.trade_rows()[0] + 1]
    ref_price = int(round_prices(first, base_factor(cap, spec), spec.tick_units)[0])
    tick = fmt_units(spec.tick_units, pdec)
    step = plain(spec.step_units, qdec)
    return {
        "symbol": spec.name,
        "pair": spec.name,
        "contractType": "PERPETUAL",
        "deliveryDate": DELIVERY_MS,
        "onboardDate": ONBOARD_MS,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base_asset,
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": pdec,
        "quantityPrecision": qdec,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": ([DERIVED_TAG] if spec.derived else [])
                             + ([SYNTHETIC_TAG] if synthetic else []),
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"minPrice": plain(spec.tick_units, pdec), "maxPrice": plain(ref_price * 20, pdec),
             "filterType": "PRICE_FILTER", "tickSize": tick},
            {"stepSize": step, "filterType": "LOT_SIZE",
             "maxQty": plain(_qty_units_for(spec, cap, 1000), qdec), "minQty": step},
            {"stepSize": step, "filterType": "MARKET_LOT_SIZE",
             "maxQty": plain(_qty_units_for(spec, cap, 120), qdec), "minQty": step},
            {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
            # no MAX_NUM_ALGO_ORDERS: removed from exchangeInfo by the change log of 2025-12-29
            # ("The condtional order limits is 200 across all symbols", algo.MAX_OPEN_ALGOS)
            {"notional": "5" if spec.derived else "100", "filterType": "MIN_NOTIONAL"},
            {"multiplierDown": "0.9500", "multiplierUp": "1.0500", "multiplierDecimal": "4",
             "filterType": "PERCENT_PRICE"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def exchange_info(specs: tuple[SymbolSpec, ...], cap: Capture, now_ms: int,
                  synthetic: bool = False) -> dict[str, Any]:
    """``synthetic``: the candles source; every symbol then carries ``SYNTHETIC_TAG``."""
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": RATE_LIMITS,
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [symbol_info(s, cap, synthetic) for s in specs],
    }


# ---------------------------------------------------------------------------- market data
def kline_row(bar: list[int], spec: SymbolSpec, interval_ms: int) -> list[Any]:
    pdec, qdec = spec.price_decimals, spec.qty_decimals
    qq = pdec + qdec
    return [bar[F_OPEN_TIME], fmt_units(bar[F_O], pdec), fmt_units(bar[F_H], pdec),
            fmt_units(bar[F_L], pdec), fmt_units(bar[F_C], pdec), fmt_units(bar[F_V], qdec),
            bar[F_OPEN_TIME] + interval_ms - 1, fmt_units(bar[F_Q], qq), bar[F_N],
            fmt_units(bar[F_TV], qdec), fmt_units(bar[F_TQ], qq), "0"]


def klines(market: Market, params: Mapping[str, str], by_name: Mapping[str, int]) -> list[list[Any]]:
    sym = symbol_param(params, by_name, required=True)
    assert sym is not None
    interval = params.get("interval")
    if not interval:
        raise mandatory("interval")
    interval_ms = INTERVALS_MS.get(interval)
    if interval_ms is None:
        raise RestError(-1120, "Invalid interval.")
    limit = int_param(params, "limit")
    limit = KLINES_DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= KLINES_MAX_LIMIT:
        raise RestError(-1130, "Data sent for parameter 'limit' is not valid.")
    start, end = int_param(params, "startTime"), int_param(params, "endTime")
    if start is not None and end is not None and start > end:
        raise RestError(-1023, "Start time is greater than end time.")
    bars = resample(market.klines.bars(sym), interval_ms)
    spec = market.specs[sym]
    return [kline_row(b, spec, interval_ms) for b in select(bars, start_ms=start, end_ms=end, limit=limit)]


def ticker_24h(market: Market, sym: int, now_ms: int) -> dict[str, Any]:
    st = market.states[sym]
    spec = st.spec
    pdec, qdec = spec.price_decimals, spec.qty_decimals
    t = market.klines.ticker(sym, now_ms)
    if t is None:
        zero = fmt_units(0, pdec)
        return {"symbol": spec.name, "priceChange": zero, "priceChangePercent": "0.000",
                "weightedAvgPrice": zero, "lastPrice": zero, "lastQty": fmt_units(0, qdec),
                "openPrice": zero, "highPrice": zero, "lowPrice": zero,
                "volume": fmt_units(0, qdec), "quoteVolume": fmt_units(0, pdec + qdec),
                "openTime": now_ms, "closeTime": now_ms, "firstId": -1, "lastId": -1, "count": 0}
    change = t.last - t.open
    pct = abs(change) * 100_000 // t.open if t.open else 0  # thousandths of a percent
    pct_str = fmt_units(-pct if change < 0 else pct, 3)
    wavg = t.quote // t.volume if t.volume else 0
    return {
        "symbol": spec.name,
        "priceChange": fmt_units(change, pdec),
        "priceChangePercent": pct_str,
        "weightedAvgPrice": fmt_units(wavg, pdec),
        "lastPrice": fmt_units(t.last, pdec),
        "lastQty": fmt_units(st.last_qty, qdec),
        "openPrice": fmt_units(t.open, pdec),
        "highPrice": fmt_units(t.high, pdec),
        "lowPrice": fmt_units(t.low, pdec),
        "volume": fmt_units(t.volume, qdec),
        "quoteVolume": fmt_units(t.quote, pdec + qdec),
        "openTime": t.open_time,
        "closeTime": st.last_trade_ms,
        "firstId": t.first_id,
        "lastId": t.last_id,
        "count": t.count,
    }


def _one_or_all(market: Market, params: Mapping[str, str], by_name: Mapping[str, int], fn) -> Any:
    sym = symbol_param(params, by_name, required=False)
    if sym is not None:
        return fn(sym)
    return [fn(s) for s in range(len(market.specs))]


def ticker_24h_body(market: Market, params: Mapping[str, str], by_name: Mapping[str, int], now_ms: int) -> Any:
    return _one_or_all(market, params, by_name, lambda s: ticker_24h(market, s, now_ms))


def ticker_price_body(market: Market, params: Mapping[str, str], by_name: Mapping[str, int], now_ms: int) -> Any:
    def one(sym: int) -> dict[str, Any]:
        st = market.states[sym]
        price = st.last_price if st.last_price is not None else 0
        return {"symbol": st.spec.name, "price": fmt_units(price, st.spec.price_decimals),
                "time": st.last_trade_ms or now_ms}

    return _one_or_all(market, params, by_name, one)


def _book_fields(st: SymState) -> tuple[str, str, str, str, int, int]:
    pdec, qdec = st.spec.price_decimals, st.spec.qty_decimals
    bk = st.book
    if bk is None:
        z, zq = fmt_units(0, pdec), fmt_units(0, qdec)
        return z, zq, z, zq, 0, 0
    return (fmt_units(bk.b, pdec), fmt_units(bk.bq, qdec), fmt_units(bk.a, pdec),
            fmt_units(bk.aq, qdec), bk.u, bk.t_ms)


def book_ticker_body(market: Market, params: Mapping[str, str], by_name: Mapping[str, int], now_ms: int) -> Any:
    def one(sym: int) -> dict[str, Any]:
        st = market.states[sym]
        b, bq, a, aq, u, t = _book_fields(st)
        return {"symbol": st.spec.name, "bidPrice": b, "bidQty": bq, "askPrice": a, "askQty": aq,
                "time": t or now_ms, "lastUpdateId": u}

    return _one_or_all(market, params, by_name, one)


def premium_index_body(market: Market, params: Mapping[str, str], by_name: Mapping[str, int], now_ms: int) -> Any:
    def one(sym: int) -> dict[str, Any]:
        st = market.states[sym]
        mv = market.mark_values(st) or ("0.00000000", "0.00000000")
        return {"symbol": st.spec.name, "markPrice": mv[0], "indexPrice": mv[1],
                "estimatedSettlePrice": mv[1], "lastFundingRate": FUNDING_RATE,
                "interestRate": "0.00010000", "nextFundingTime": next_funding_ms(now_ms),
                "time": now_ms}

    return _one_or_all(market, params, by_name, one)


def depth_body(market: Market, params: Mapping[str, str], by_name: Mapping[str, int], now_ms: int) -> dict[str, Any]:
    sym = symbol_param(params, by_name, required=True)
    assert sym is not None
    limit = int_param(params, "limit")
    if limit is not None and limit not in DEPTH_LIMITS:
        raise RestError(-1130, "Data sent for parameter 'limit' is not valid.")
    st = market.states[sym]
    _, _, _, _, u, t = _book_fields(st)
    bk = st.book
    n = limit or DEPTH_DEFAULT_LIMIT
    bids: list[list[str]] = []
    asks: list[list[str]] = []
    if bk is not None:
        spec = st.spec
        pd, qd, tick = spec.price_decimals, spec.qty_decimals, spec.tick_units
        bq, aq = fmt_units(max(bk.bq, spec.step_units), qd), fmt_units(max(bk.aq, spec.step_units), qd)
        bids = [[fmt_units(bk.b - k * tick, pd), bq] for k in range(n) if bk.b - k * tick > 0]
        asks = [[fmt_units(bk.a + k * tick, pd), aq] for k in range(n)]
        if bids:
            bids[0][1] = fmt_units(bk.bq, qd)  # the touch as the book ticker shows it
        asks[0][1] = fmt_units(bk.aq, qd)
    return {"lastUpdateId": u, "E": now_ms, "T": t or now_ms, "bids": bids, "asks": asks}
