"""Pre-trade risk checks on real Binance filters: every reason code, exact rounding, the kill switch."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from common.errors import ConfigError, DecodeError
from common.wire import RiskReject, SymbolInfo
from services.brain import risk
from services.brain.risk import (
    Approved, Exposure, Market, Portfolio, Quote, RiskConfig, RiskState, Rejected,
    check_order, filters_from_entry, filters_from_symbol_info,
)
from services.feed import discovery
from tests.conftest import USDM_DATA

# real exchangeInfo symbol entries: seven USDT perpetuals as ccxt recorded them from Binance
INFO = json.loads((USDM_DATA / "exchangeInfo_symbols_ccxt.json").read_text())
RAW = {e["symbol"]: e for e in INFO["symbols"]}

NOW = 1_645_233_611_962  # a fixed clock: 2022-02-19 01:20:11.962 UTC
DAY = risk.DAY_MS
CFG = RiskConfig(max_order_notional_usdt=1_000.0, max_total_notional_usdt=2_500.0, max_leverage=5.0,
                 max_positions=3, daily_loss_limit_usdt=100.0, max_drawdown_pct=10.0,
                 stale_data_ms=2_000, max_orders_per_minute=5)
EQUITY = 1_000.0


def infos() -> dict[str, SymbolInfo]:
    return {s.symbol: s for s in discovery.select_symbols(INFO, None, 10)}


BTC = filters_from_symbol_info(infos()["BTCUSDT"])  # tick 0.1, step 0.001, min notional 5
ETH = filters_from_symbol_info(infos()["ETHUSDT"])
BTC_RAW = filters_from_entry(RAW["BTCUSDT"])  # adds minPrice 556.80, maxPrice, maxQty, PERCENT_PRICE
XRP = filters_from_symbol_info(discovery.parse_symbol(RAW["XRPUSDT"]))  # tick 0.0001, step 0.1


@dataclass
class StubOrder:
    """An order that validates nothing, to push poison past the wire types."""

    client_order_id: Any = "ae-sig1-0"
    symbol: Any = "BTCUSDT"
    side: Any = "BUY"
    order_type: Any = "LIMIT"
    qty: Any = 0.01
    price: Any = 40_000.0
    reduce_only: Any = False
    signal_id: Any = "sig1"


def market(*, mark: float = 40_000.0, age_ms: int = 0, filters=None, quotes=None) -> Market:
    f = filters or {"BTCUSDT": BTC, "ETHUSDT": ETH}
    q = quotes if quotes is not None else {s: Quote(mark_price=mark if s == "BTCUSDT" else 2_500.0,
                                                    updated_ms=NOW - age_ms) for s in f}
    return Market(filters=f, quotes=q)


def fresh() -> RiskState:
    return risk.initial_state(EQUITY, NOW)


def run(order=None, *, state=None, portfolio=None, mkt=None, cfg=CFG, now=NOW, **kw) -> risk.Decision:
    o = order if order is not None else StubOrder(**kw)
    return check_order(cfg, state or fresh(), portfolio or Portfolio(equity_usdt=EQUITY), o, mkt or market(), now)


def reason(d: risk.Decision) -> str:
    assert isinstance(d, Rejected), d
    return d.reason


def approved(d: risk.Decision) -> tuple[str, str, Decimal]:
    """An approval's exact quantity and price text and its notional (what reaches the exchange)."""
    assert isinstance(d, Approved), d
    return d.qty_text, d.price_text, d.notional_usdt


def pos(symbol: str, qty: float, price: float) -> Exposure:
    return Exposure(symbol=symbol, qty=qty, price=price)


class TestRounding:
    def test_price_rounds_to_the_nearest_btcusdt_tick(self):
        """43000.06 on BTCUSDT's 0.10 tick becomes exactly 43000.1 (and "43000.10" on the raw filter)."""
        assert risk.round_price(Decimal("43000.06"), BTC.tick_size, "BUY") == Decimal("43000.1")
        assert risk.fmt(risk.round_price(Decimal("43000.06"), BTC.tick_size, "BUY")) == "43000.1"
        assert risk.fmt(risk.round_price(Decimal("43000.06"), BTC_RAW.tick_size, "BUY")) == "43000.10"

    def test_an_exact_half_tick_rounds_the_passive_way(self):
        """A tie goes down for a BUY and up for a SELL: never pay more than asked by rounding."""
        assert risk.round_price(Decimal("43000.05"), BTC.tick_size, "BUY") == Decimal("43000.0")
        assert risk.round_price(Decimal("43000.05"), BTC.tick_size, "SELL") == Decimal("43000.1")

    def test_float_sum_rounds_to_a_clean_price_not_0_30000000000000004(self):
        """0.1 + 0.2 on XRPUSDT's 0.0001 tick gives the exact decimal 0.3000, unlike float tick arithmetic."""
        assert round((0.1 + 0.2) / 0.1) * 0.1 == 0.30000000000000004  # the trap being avoided
        got = risk.round_price(risk.to_decimal(0.1 + 0.2), XRP.tick_size, "BUY")
        assert risk.fmt(got) == "0.3000"
        assert repr(float(got)) == "0.3"

    def test_qty_rounds_down_to_the_step_never_up(self):
        """0.0019999 BTC is 0.001 and 1.23456 is 1.234: the step grid, always toward less."""
        assert risk.round_qty_down(Decimal("0.0019999"), BTC.step_size) == Decimal("0.001")
        assert risk.fmt(risk.round_qty_down(Decimal("1.23456"), BTC.step_size)) == "1.234"
        assert risk.fmt(risk.round_qty_down(Decimal("123.45"), XRP.step_size)) == "123.4"

    def test_grid_arithmetic_is_exact_for_every_real_filter(self):
        """For all 7 real perpetuals (ticks 0.10 down to 0.00001, steps 0.001 to 1), k ticks plus
        0.4 tick rounds to k ticks, text without exponent."""
        infos = discovery.select_symbols(INFO, None, 1000)
        assert len(infos) == 7
        assert sorted({str(filters_from_entry(e).tick_size) for e in INFO["symbols"]}) == [
            "0.00001", "0.000010", "0.0001", "0.00010", "0.01", "0.10"]
        for info in infos:
            f = filters_from_symbol_info(info)
            raw = filters_from_entry(RAW[info.symbol])
            assert (f.tick_size, f.step_size, f.min_qty, f.min_notional) == (
                raw.tick_size, raw.step_size, raw.min_qty, raw.min_notional)
            price = f.tick_size * 12_345 + f.tick_size * Decimal("0.4")
            assert risk.round_price(price, f.tick_size, "SELL") == f.tick_size * 12_345
            qty = f.step_size * 777 + f.step_size * Decimal("0.999")
            assert risk.round_qty_down(qty, f.step_size) == f.step_size * 777
            assert "E" not in risk.fmt(risk.round_price(price, f.tick_size, "SELL"))

    def test_approved_order_carries_exactly_formatted_values(self):
        """qty 0.0123456 @ 40000.04 is approved as 0.012 @ 40000.0, both as text and as floats."""
        d = run(qty=0.0123456, price=40_000.04)
        assert approved(d) == ("0.012", "40000.0", Decimal("480.0000"))
        assert (repr(d.order.qty), repr(d.order.price)) == ("0.012", "40000.0")


class TestFilters:
    def test_raw_btcusdt_entry_gives_every_filter_exactly(self):
        """The real BTCUSDT entry's filters come through as exact decimals, keyed as Binance names them."""
        f = BTC_RAW
        assert (f.tick_size, f.step_size, f.min_qty, f.max_qty) == (
            Decimal("0.10"), Decimal("0.001"), Decimal("0.001"), Decimal("1000"))
        assert (f.min_price, f.max_price, f.min_notional) == (Decimal("556.80"), Decimal("4529764"), Decimal("5"))
        assert (f.percent_up, f.percent_down, f.market_max_qty) == (Decimal("1.0500"), Decimal("0.9500"), Decimal("120"))

    def test_symbol_info_filters_match_the_raw_strings(self):
        """discovery's float SymbolInfo reads back to the same decimals as the raw strings."""
        assert (BTC.tick_size, BTC.step_size, BTC.min_qty, BTC.min_notional) == (
            Decimal("0.1"), Decimal("0.001"), Decimal("0.001"), Decimal("5"))

    def test_a_zero_tick_size_is_refused(self):
        """A symbol without a usable PRICE_FILTER cannot be traded: DecodeError, not a silent pass."""
        entry = {**RAW["BTCUSDT"], "filters": [f for f in RAW["BTCUSDT"]["filters"]
                                                    if f["filterType"] != "PRICE_FILTER"]}
        with pytest.raises(DecodeError):
            filters_from_entry(entry)


class TestPoisonInputs:
    @pytest.mark.parametrize("qty", [float("nan"), float("inf"), -float("inf"), 0.0, -0.01, "abc", None, True, "0"])
    def test_bad_quantity_is_rejected(self, qty):
        """NaN, infinite, zero, negative, non-numeric and boolean quantities are QTY_INVALID."""
        assert reason(run(qty=qty)) == risk.QTY_INVALID

    @pytest.mark.parametrize("price", [float("nan"), float("inf"), -1.0, 0.0, "x", None])
    def test_bad_limit_price_is_rejected(self, price):
        """A LIMIT order with a NaN, infinite, negative, zero or non-numeric price is PRICE_INVALID."""
        assert reason(run(price=price)) == risk.PRICE_INVALID

    def test_market_order_with_a_price_is_rejected(self):
        """MARKET orders carry price 0 by contract; anything else is PRICE_INVALID."""
        assert reason(run(order_type="MARKET", price=40_000.0)) == risk.PRICE_INVALID

    @pytest.mark.parametrize("symbol", ["DOGEUSDT", None, 42, ""])
    def test_unknown_symbol_is_rejected(self, symbol):
        """A symbol without exchange filters (or not a string) is UNKNOWN_SYMBOL."""
        assert reason(run(symbol=symbol)) == risk.UNKNOWN_SYMBOL

    def test_bad_side_and_order_type_are_rejected(self):
        """Only BUY/SELL and MARKET/LIMIT pass."""
        assert reason(run(side="HOLD")) == risk.SIDE_INVALID
        assert reason(run(order_type="STOP")) == risk.ORDER_TYPE_INVALID

    @pytest.mark.parametrize("cid", ["has space", "x" * 37, "", None, "ae+1"])
    def test_client_order_id_outside_binance_pattern_is_rejected(self, cid):
        """A client order id Binance would refuse is CLIENT_ID_INVALID before it leaves."""
        assert reason(run(client_order_id=cid)) == risk.CLIENT_ID_INVALID

    def test_off_tick_price_is_rejected_when_rounding_is_off(self):
        """With round_price_to_tick=False, 40000.05 is PRICE_OFF_TICK and 40000.1 passes."""
        strict = dataclasses.replace(CFG, round_price_to_tick=False)
        assert reason(run(price=40_000.05, cfg=strict)) == risk.PRICE_OFF_TICK
        assert approved(run(price=40_000.1, cfg=strict)) == ("0.010", "40000.1", Decimal("400.0010"))

    def test_qty_below_min_after_rounding_is_outside_filter(self):
        """0.0009 BTC rounds down to 0, below minQty 0.001."""
        assert reason(run(qty=0.0009)) == risk.QTY_OUTSIDE_FILTER

    def test_qty_above_max_qty_is_outside_filter(self):
        """1000.001 BTC is above LOT_SIZE maxQty 1000 on the raw filters."""
        mkt = market(filters={"BTCUSDT": BTC_RAW})
        assert reason(run(qty=1_000.001, mkt=mkt)) == risk.QTY_OUTSIDE_FILTER

    def test_price_outside_price_filter_is_rejected(self):
        """Below minPrice 556.80 or above maxPrice 4529764 is PRICE_OUTSIDE_FILTER; minPrice itself passes."""
        mkt = market(filters={"BTCUSDT": BTC_RAW}, mark=560.0)
        assert reason(run(price=556.7, qty=1.0, mkt=mkt)) == risk.PRICE_OUTSIDE_FILTER
        assert approved(run(price=556.8, qty=1.0, mkt=mkt)) == ("1.000", "556.80", Decimal("556.80000"))
        assert reason(run(price=4_529_764.1, side="SELL", mkt=mkt)) == risk.PRICE_OUTSIDE_FILTER

    def test_percent_price_bounds_around_the_mark(self):
        """BUY above mark x 1.05 or SELL below mark x 0.95 is refused; the bound itself passes."""
        mkt = market(filters={"BTCUSDT": BTC_RAW}, mark=40_000.0)
        assert reason(run(price=42_000.1, qty=0.001, mkt=mkt)) == risk.PRICE_OUTSIDE_FILTER
        assert approved(run(price=42_000.0, qty=0.001, mkt=mkt)) == ("0.001", "42000.00", Decimal("42.00000"))
        held = Portfolio(equity_usdt=EQUITY, positions=(pos("BTCUSDT", 0.01, 40_000.0),))
        exit_ = dict(side="SELL", qty=0.001, reduce_only=True, portfolio=held, mkt=mkt)
        assert reason(run(price=37_999.9, **exit_)) == risk.PRICE_OUTSIDE_FILTER
        assert approved(run(price=38_000.0, **exit_)) == ("0.001", "38000.00", Decimal("38.00000"))

    def test_price_that_rounds_to_zero_is_outside_filter(self):
        """0.04 on a 0.1 tick rounds to 0: PRICE_OUTSIDE_FILTER, never a zero-price order."""
        assert reason(run(price=0.04, qty=1.0)) == risk.PRICE_OUTSIDE_FILTER

    def test_non_finite_equity_blocks_entries(self):
        """An entry with a NaN equity is EQUITY_INVALID: no limit can be judged without it."""
        assert reason(run(portfolio=Portfolio(equity_usdt=float("nan")))) == risk.EQUITY_INVALID


class TestLimits:
    def test_notional_below_min_notional_is_rejected(self):
        """0.001 BTC at 4999.9 is 4.9999 USDT, under the 5 USDT MIN_NOTIONAL; at 5000 it is exactly 5 and passes."""
        assert reason(run(qty=0.001, price=4_999.9)) == risk.MIN_NOTIONAL
        d = run(qty=0.001, price=5_000.0)
        assert approved(d) == ("0.001", "5000.0", Decimal("5.0000"))

    def test_market_order_notional_uses_the_mark(self):
        """A MARKET order is valued at the mark: 0.026 BTC at 40000 is 1040 > 1000."""
        assert reason(run(order_type="MARKET", price=0.0, qty=0.026)) == risk.MAX_ORDER_NOTIONAL

    def test_order_notional_cap_is_inclusive(self):
        """0.025 BTC at 40000 is exactly 1000 (allowed), 0.026 is 1040 (MAX_ORDER_NOTIONAL)."""
        assert approved(run(qty=0.025)) == ("0.025", "40000.0", Decimal("1000.0000"))
        assert reason(run(qty=0.026)) == risk.MAX_ORDER_NOTIONAL

    def test_total_notional_counts_positions_and_pending_entries(self):
        """800 held + 800 pending + 1000 new = 2600 > 2500 is MAX_TOTAL_NOTIONAL; 0.0175 BTC (0.017, 680) fits."""
        pf = Portfolio(equity_usdt=EQUITY, positions=(pos("ETHUSDT", 0.32, 2_500.0),),
                       open_entries=(pos("SOLUSDT", 8.0, 100.0),))
        assert reason(run(qty=0.025, portfolio=pf)) == risk.MAX_TOTAL_NOTIONAL
        assert approved(run(qty=0.0175, portfolio=pf)) == ("0.017", "40000.0", Decimal("680.0000"))

    def test_leverage_cap_on_equity(self):
        """Equity 300 at 5x allows 1500: 600 held + 1000 new is LEVERAGE, 600 + 880 passes."""
        st = risk.initial_state(300.0, NOW)
        pf = Portfolio(equity_usdt=300.0, positions=(pos("ETHUSDT", 0.24, 2_500.0),))
        assert reason(run(qty=0.025, portfolio=pf, state=st)) == risk.LEVERAGE
        assert approved(run(qty=0.0225, portfolio=pf, state=st)) == ("0.022", "40000.0", Decimal("880.0000"))

    def test_zero_equity_fails_leverage(self):
        """No equity, no leverage headroom: check_leverage refuses even a tiny order."""
        r = risk.check_leverage(CFG, Portfolio(equity_usdt=0.0), Decimal("10"))
        assert r == risk.Rejection(reason=risk.LEVERAGE, detail="total notional 10 on equity 0.0 exceeds 5.0x")

    def test_second_entry_in_a_held_symbol_is_rejected(self):
        """One position per symbol: a held or pending BTCUSDT blocks a new BTCUSDT entry."""
        held = Portfolio(equity_usdt=EQUITY, positions=(pos("BTCUSDT", -0.01, 40_000.0),))
        pending = Portfolio(equity_usdt=EQUITY, open_entries=(pos("BTCUSDT", 0.01, 39_000.0),))
        assert reason(run(portfolio=held)) == risk.POSITION_EXISTS
        assert reason(run(portfolio=pending)) == risk.POSITION_EXISTS

    def test_fourth_position_is_rejected(self):
        """Three symbols held (one of them a pending entry) leave no slot for a fourth."""
        pf = Portfolio(equity_usdt=EQUITY, positions=(pos("ETHUSDT", 0.01, 2_500.0), pos("SOLUSDT", 1.0, 100.0)),
                       open_entries=(pos("XRPUSDT", 10.0, 0.5),))
        assert reason(run(portfolio=pf)) == risk.MAX_POSITIONS

    def test_position_that_cannot_be_valued_blocks_entries(self):
        """A held position with a NaN price counts as unlimited exposure, never as zero."""
        pf = Portfolio(equity_usdt=EQUITY, positions=(pos("ETHUSDT", 0.01, float("nan")),))
        assert reason(run(qty=0.001, portfolio=pf)) == risk.MAX_TOTAL_NOTIONAL

    def test_zero_quantity_positions_do_not_hold_a_slot(self):
        """A closed position reported with qty 0 neither blocks the symbol nor counts toward three."""
        pf = Portfolio(equity_usdt=EQUITY, positions=(pos("BTCUSDT", 0.0, 40_000.0), pos("ETHUSDT", 0.01, 2_500.0),
                                                      pos("SOLUSDT", 1.0, 100.0)))
        assert approved(run(portfolio=pf)) == ("0.010", "40000.0", Decimal("400.0000"))

    def test_stale_market_data_blocks_entries(self):
        """Data 2001 ms old is STALE_DATA with a 2000 ms limit; 2000 ms old still passes."""
        assert reason(run(mkt=market(age_ms=2_001))) == risk.STALE_DATA
        assert approved(run(mkt=market(age_ms=2_000))) == ("0.010", "40000.0", Decimal("400.0000"))

    def test_missing_or_broken_quote_is_stale(self):
        """No quote at all, a NaN mark or a quote without a receive time counts as no usable market data."""
        assert reason(run(mkt=market(quotes={}))) == risk.STALE_DATA
        for bad in (Quote(mark_price=float("nan"), updated_ms=NOW), Quote(mark_price="40000", updated_ms=None)):
            assert reason(run(mkt=market(quotes={"BTCUSDT": bad}))) == risk.STALE_DATA

    def test_sixth_order_in_a_minute_is_rate_limited_until_the_window_slides(self):
        """Five orders at 1 s intervals pass, the sixth is RATE_LIMIT, and one minute after the first it passes."""
        st = fresh()
        for i in range(5):
            d = run(state=st, now=NOW + i * 1_000, mkt=market(age_ms=-i * 1_000))
            assert approved(d) == ("0.010", "40000.0", Decimal("400.0000"))
            st = d.state
        assert reason(run(state=st, now=NOW + 5_000, mkt=market(age_ms=-5_000))) == risk.RATE_LIMIT
        assert risk.orders_in_window(st, NOW + 59_999) == 5
        d = run(state=st, now=NOW + 60_000, mkt=market(age_ms=-60_000))
        assert approved(d) == ("0.010", "40000.0", Decimal("400.0000"))
        assert d.state.order_times_ms == tuple(NOW + i * 1_000 for i in range(1, 5)) + (NOW + 60_000,)

    def test_rejected_order_is_not_counted_in_the_rate_window(self):
        """Only approved orders enter the window; a rejection leaves it as it was."""
        d = run(qty=0.026)
        assert (reason(d), d.detail, d.state.order_times_ms) == (
            risk.MAX_ORDER_NOTIONAL, "notional 1040.0000 above 1000.0", ())

    def test_first_failure_in_documented_order_wins(self):
        """Tripping the kill switch, stale data and a held symbol at once reports DAILY_LOSS."""
        pf = Portfolio(equity_usdt=850.0, positions=(pos("BTCUSDT", 0.01, 40_000.0),))
        assert reason(run(portfolio=pf, mkt=market(age_ms=10_000))) == risk.DAILY_LOSS


class TestExits:
    LONG = Portfolio(equity_usdt=EQUITY, positions=(pos("BTCUSDT", 0.01, 40_000.0),))

    def test_reduce_only_without_a_position_is_rejected(self):
        """There is nothing to reduce: REDUCE_ONLY_INVALID."""
        assert reason(run(side="SELL", reduce_only=True)) == risk.REDUCE_ONLY_INVALID

    def test_reduce_only_in_the_position_direction_is_rejected(self):
        """A BUY reduce-only against a long would add to it: REDUCE_ONLY_INVALID."""
        assert reason(run(side="BUY", reduce_only=True, portfolio=self.LONG)) == risk.REDUCE_ONLY_INVALID

    def test_reduce_only_larger_than_the_position_is_rejected(self):
        """Selling 0.011 of a 0.01 long is REDUCE_ONLY_INVALID."""
        assert reason(run(side="SELL", qty=0.011, reduce_only=True, portfolio=self.LONG)) == risk.REDUCE_ONLY_INVALID

    def test_exit_ignores_min_notional_and_stale_data(self):
        """A reduce-only MARKET sell of 0.001 BTC (9 USDT) on stale data is approved: exits must get out."""
        d = run(side="SELL", order_type="MARKET", price=0.0, qty=0.001, reduce_only=True,
                portfolio=self.LONG, mkt=market(mark=9_000.0, age_ms=600_000))
        assert approved(d) == ("0.001", "0", Decimal("9.0000"))
        assert (d.is_exit, d.order.side, d.order.order_type, d.order.reduce_only) == (True, "SELL", "MARKET", True)

    def test_exits_are_counted_but_never_refused_by_the_order_brake(self):
        """Five orders in the last minute: an exit still goes (a position must be able to get
        out), it is counted, and the next entry meets RATE_LIMIT."""
        st = dataclasses.replace(fresh(), order_times_ms=tuple(NOW - i for i in range(5)))
        d = run(side="SELL", reduce_only=True, portfolio=self.LONG, state=st)
        assert isinstance(d, Approved) and d.is_exit
        assert len(d.state.order_times_ms) == 6
        assert reason(run(state=d.state)) == risk.RATE_LIMIT


class TestKillSwitch:
    def test_daily_loss_trips_the_kill_switch(self):
        """Equity 900 after starting the day at 1000 (limit 100) rejects with DAILY_LOSS and halts."""
        d = run(portfolio=Portfolio(equity_usdt=900.0))
        assert reason(d) == risk.DAILY_LOSS
        assert d.state.halted and d.state.halt_reason == risk.DAILY_LOSS and d.state.halted_at_ms == NOW

    def test_submit_order_when_trading_halted_is_denied(self):
        """Once halted, an entry is HALTED even after equity recovers."""
        st = run(portfolio=Portfolio(equity_usdt=900.0)).state
        d = run(state=st, portfolio=Portfolio(equity_usdt=1_050.0), now=NOW + 1_000)
        assert reason(d) == risk.HALTED and d.detail.startswith("DAILY_LOSS")

    def test_exit_when_trading_halted_is_approved(self):
        """The kill switch stops entries, never exits."""
        st = run(portfolio=Portfolio(equity_usdt=900.0)).state
        pf = Portfolio(equity_usdt=900.0, positions=(pos("BTCUSDT", 0.01, 40_000.0),))
        d = run(state=st, portfolio=pf, side="SELL", reduce_only=True)
        assert approved(d) == ("0.010", "40000.0", Decimal("400.0000"))
        assert (d.is_exit, d.state.halted, d.state.halt_reason) == (True, True, risk.DAILY_LOSS)

    def test_drawdown_from_peak_trips_the_kill_switch(self):
        """Peak 1000, then 950 at the next UTC day's start, then 899: 10.1% down trips DRAWDOWN, not DAILY_LOSS."""
        st = risk.update_equity(CFG, fresh(), 950.0, NOW)
        st = risk.update_equity(CFG, st, 950.0, NOW + DAY)
        assert not st.halted and st.day_start_equity_usdt == 950.0 and st.peak_equity_usdt == 1_000.0
        d = run(state=st, portfolio=Portfolio(equity_usdt=899.0), now=NOW + DAY + 1)
        assert reason(d) == risk.DRAWDOWN and d.state.halt_reason == risk.DRAWDOWN

    def test_halt_survives_a_restart_through_to_dict_and_from_dict(self):
        """The halted state goes through JSON and comes back equal, and still denies entries."""
        st = run(portfolio=Portfolio(equity_usdt=900.0)).state
        back = RiskState.from_dict(json.loads(json.dumps(st.to_dict())))
        assert back == st
        assert reason(run(state=back, portfolio=Portfolio(equity_usdt=1_000.0), now=NOW + 5)) == risk.HALTED

    def test_halt_does_not_clear_on_a_new_day(self):
        """A new UTC day resets the daily baseline but not the halt."""
        st = run(portfolio=Portfolio(equity_usdt=900.0)).state
        st = risk.update_equity(CFG, st, 900.0, NOW + DAY)
        assert st.halted and st.day_start_equity_usdt == 900.0

    def test_explicit_clear_resumes_trading_from_current_equity(self):
        """clear_halt lifts the halt and restarts the baseline and peak at the current equity."""
        st = risk.clear_halt(run(portfolio=Portfolio(equity_usdt=900.0)).state, 900.0, NOW + 10)
        assert (st.halted, st.day_start_equity_usdt, st.peak_equity_usdt) == (False, 900.0, 900.0)
        d = run(state=st, portfolio=Portfolio(equity_usdt=900.0), now=NOW + 20)
        assert approved(d) == ("0.010", "40000.0", Decimal("400.0000"))

    def test_manual_halt_denies_entries(self):
        """An operator's halt reads HALTED with reason MANUAL."""
        d = run(state=risk.halt(fresh(), NOW, "operator"))
        assert reason(d) == risk.HALTED and d.detail == "MANUAL: operator"

    @pytest.mark.parametrize("bad", [{}, {"v": 2}, {**RiskState().to_dict(), "halted": "yes"},
                                     {**RiskState().to_dict(), "order_times_ms": [1.5]},
                                     {**RiskState().to_dict(), "peak_equity_usdt": "nan"}])
    def test_malformed_saved_state_is_a_decode_error(self, bad):
        """A damaged saved state is refused loudly, never read as a fresh (unhalted) one."""
        with pytest.raises(DecodeError):
            RiskState.from_dict(bad)


class TestConfigAndWire:
    def test_unknown_config_field_is_refused(self):
        """A typo in a limit name is a ConfigError, not a silent default."""
        with pytest.raises(ConfigError):
            RiskConfig.from_dict({"max_leverge": 2})

    @pytest.mark.parametrize("field,value", [("max_leverage", 0), ("max_drawdown_pct", float("nan")),
                                             ("max_positions", 2.5), ("stale_data_ms", True)])
    def test_impossible_config_values_are_refused(self, field, value):
        """Zero, NaN, fractional counts and booleans are not limits."""
        with pytest.raises(ConfigError):
            RiskConfig.from_dict({field: value})

    def test_config_is_frozen(self):
        """Limits cannot be changed behind the checks' back."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            CFG.max_leverage = 100.0  # type: ignore[misc]

    def test_rejection_of_a_garbage_symbol_still_makes_a_valid_message(self):
        """A symbol the wire would refuse is reported as UNKNOWN, so the reject itself can be published."""
        d = run(symbol="btc usdt")
        assert d.to_wire(StubOrder(symbol="btc usdt")).symbol == "UNKNOWN"

    def test_rejection_becomes_a_risk_reject_message(self):
        """A Rejected decision turns into the wire RiskReject with symbol, reason and signal id."""
        d = run(qty=0.026)
        assert d.to_wire(StubOrder()) == RiskReject(symbol="BTCUSDT", reason=risk.MAX_ORDER_NOTIONAL,
                                                    detail=d.detail, signal_id="sig1")


def test_config_limits_as_decimals_made_once():
    """The notional and leverage limits as exact Decimals (shortest repr of the floats), the
    same object on every read of one config."""
    cfg = risk.RiskConfig(max_order_notional_usdt=2000.5, max_total_notional_usdt=5000, max_leverage=0.1)
    assert cfg.limits_decimal == (Decimal("2000.5"), Decimal(5000), Decimal("0.1"))
    assert cfg.limits_decimal is cfg.limits_decimal
    assert dataclasses.replace(cfg, max_leverage=3.0).limits_decimal[2] == Decimal("3.0")
