"""Entries as limit-IOC orders bounded by a slippage in bps: the limit price on the tick grid
(the bound kept), a partial fill protected as a position of the filled size, an unfilled one
freeing its slot with the reason, and the entry's slippage against the signal in TRADE_CLOSED."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from common import wire
from services.brain import risk, rotation, trader, trader_entries, trader_exits, trader_fills, trader_views
from venue import orders as om
from venue.port import ExchangeFill

NOW = 1_733_011_200_000
FILTERS = {s: risk.SymbolFilters(symbol=s, tick_size=Decimal("0.1"), step_size=Decimal("0.001"),
                                 min_qty=Decimal("0.001"), min_notional=Decimal("5")) for s in ("AAAUSDT",)}
CFG = trader.TraderConfig(risk=risk.RiskConfig(max_order_notional_usdt=2_000.0, max_total_notional_usdt=10_000.0,
                                               max_leverage=5.0),
                          rotation=rotation.RotationConfig(cooldown_s=60.0), entry_slippage_bps=20.0)


def ctx(price: float = 100.0) -> trader.Ctx:
    quotes = {s: risk.Quote(mark_price=price, updated_ms=NOW) for s in FILTERS}
    return trader.Ctx(now_ms=NOW, equity=10_000.0, market=risk.Market(filters=FILTERS, quotes=quotes))


def signal(side: str = "BUY", entry: float = 100.0) -> wire.SignalGenerated:
    stop, target = (98.0, 104.0) if side == "BUY" else (102.0, 96.0)
    return wire.SignalGenerated(signal_id=f"AAAUSDT-{NOW}-{side}", symbol="AAAUSDT", side=side, entry=entry,
                                stop=stop, target=target, confidence=0.6, cold=False, features={"rr": 2.0})


def fill(cid: str, tid: str, qty: str, price: str, side: str = "BUY") -> ExchangeFill:
    return ExchangeFill(trade_id=tid, client_order_id=cid, exchange_order_id="7", symbol="AAAUSDT", side=side,
                        qty=Decimal(qty), price=Decimal(price), fee=Decimal("0.01"))


def of_type(actions, cls):
    return [a for a in actions if isinstance(a, cls)]


def bodies(actions, cls):
    return [a.body for a in actions if isinstance(a, trader.Publish) and isinstance(a.body, cls)]


def entered(cfg=CFG, sig=None):
    st, acts = trader_entries.on_signal(cfg, trader.TraderState(), sig or signal(), ctx())
    (new,) = of_type(acts, trader.NewOrder)
    st, _ = trader_fills.on_order_event(cfg, st, new.order.client_order_id, om.Send(at_ms=NOW), ctx())
    return st, new


class TestEntryLimit:
    @pytest.mark.parametrize("side, entry, bps, expected", [
        ("BUY", 100.0, 20.0, "100.2"),  # exactly on the grid
        ("BUY", 100.05, 20.0, "100.2"),  # 100.250..: down, inside the bound
        ("SELL", 100.05, 20.0, "99.9"),  # 99.849..: up, inside the bound
        ("SELL", 100.0, 0.0, "100.0"),  # no slippage allowed: the signal price itself
    ])
    def test_the_limit_is_the_signal_price_moved_by_the_bound_and_rounded_inside_it(self, side, entry, bps, expected):
        """BUY: floor(entry x (1 + bps)) to the tick; SELL: ceil(entry x (1 - bps))."""
        cfg = replace(CFG, entry_slippage_bps=bps)
        assert trader_views.entry_limit(cfg, signal(side, entry), Decimal("0.1"), 100.0) == Decimal(expected)

    def test_a_signal_without_a_price_uses_the_mark(self):
        """entry 0 (none): the mark, 100.0, is the reference."""
        sig = wire.SignalGenerated(signal_id="x", symbol="AAAUSDT", side="BUY", entry=0.0, stop=98.0, target=104.0,
                                   confidence=0.5, cold=False, features={})
        assert trader_views.entry_limit(CFG, sig, Decimal("0.1"), 100.0) == Decimal("100.2")

    def test_the_default_entry_is_a_limit_ioc_at_the_bound(self):
        """The approved request and the order: LIMIT, IOC, 100.2 for a BUY signal at 100."""
        st, new = entered()
        assert (new.request.order_type, new.request.price, new.request.time_in_force) == ("LIMIT", 100.2, "IOC")
        assert (new.order.order_type, new.order.price, new.order.time_in_force) == ("LIMIT", Decimal("100.2"), "IOC")
        assert st.trades["AAAUSDT"].signal_price == 100.0

    def test_market_entries_stay_available(self):
        """entry_order = "market": an unbounded MARKET entry, as before."""
        _, new = entered(replace(CFG, entry_order="market"))
        assert (new.request.order_type, new.request.price, new.request.time_in_force) == ("MARKET", 0.0, "")


class TestIocOutcomes:
    def test_an_ioc_that_found_nothing_frees_the_slot_and_says_why(self):
        """Expired with no fill: no trade, ENTRY_NOT_FILLED published and counted, nothing chased."""
        st, new = entered()
        cid = new.order.client_order_id
        st, acts = trader_fills.on_order_event(CFG, st, cid, om.QueryResult(at_ms=NOW, found=True, status="EXPIRED",
                                                                       exchange_order_id="7"), ctx())
        assert "AAAUSDT" not in st.trades
        (rej,) = bodies(acts, wire.RiskReject)
        assert (rej.reason, rej.signal_id) == ("ENTRY_NOT_FILLED", f"AAAUSDT-{NOW}-BUY")
        assert rej.detail == "limit IOC BUY at 100.2 found nothing within the bound (signal 100.0)"
        assert (st.counters["entries_failed"], st.counters["rejected:ENTRY_NOT_FILLED"]) == (1, 1)
        assert of_type(acts, trader.NewOrder) == []

    def test_a_partial_fill_is_a_position_of_the_filled_size_with_its_stop_and_target(self):
        """6 of 19.8 filled, then expired: a 6-unit trade protected by closePosition orders."""
        st, new = entered()
        cid = new.order.client_order_id
        st, acts = trader_fills.on_fill(CFG, st, fill(cid, "1", "6", "100.1"), ctx())
        algos = of_type(acts, trader.NewAlgo)
        assert [(a.order.order_type, a.order.trigger_price, a.order.close_position) for a in algos] == [
            ("STOP_MARKET", Decimal("98.0"), True), ("TAKE_PROFIT_MARKET", Decimal("104.0"), True)]
        st, acts = trader_fills.on_order_event(CFG, st, cid, om.QueryResult(
            at_ms=NOW, found=True, status="EXPIRED", exchange_order_id="7", executed_qty=Decimal("6")), ctx())
        t = st.trades["AAAUSDT"]
        assert (t.position, st.orders[cid].state) == (Decimal("6"), om.S.EXPIRED)
        assert bodies(acts, wire.RiskReject) == [] and of_type(acts, trader.NewOrder) == []


class TestSlippage:
    @pytest.mark.parametrize("side, signal_price, fill_price, expected", [
        ("BUY", 100.0, "100.1", 10.0), ("BUY", 100.0, "99.9", -10.0),
        ("SELL", 100.0, "99.9", 10.0), ("SELL", 100.0, "100.2", -20.0),
    ])
    def test_positive_is_worse_for_us(self, side, signal_price, fill_price, expected):
        """A long that paid more, or a short that got less, slipped by a positive number of bps."""
        assert trader_views.slippage_bps(side, signal_price, Decimal(fill_price)) == pytest.approx(expected, abs=1e-9)

    def test_no_signal_price_no_slippage(self):
        """An adopted position has no signal: None, not 0."""
        assert trader_views.slippage_bps("BUY", 0.0, Decimal("100")) is None

    def test_trade_closed_carries_the_signal_price_and_the_entry_slippage(self):
        """Entry 19.8 at 100.1 against a signal at 100, stopped out: +10 bps in TRADE_CLOSED."""
        st, new = entered()
        st, _ = trader_fills.on_fill(CFG, st, fill(new.order.client_order_id, "1", "19.8", "100.1"), ctx())
        st, acts = trader_exits.on_prices(CFG, st, "AAAUSDT", 97.0, 99.0, ctx())
        (ex,) = of_type(acts, trader.NewOrder)
        st, _ = trader_fills.on_order_event(CFG, st, ex.order.client_order_id, om.Send(at_ms=NOW), ctx())
        st, acts = trader_fills.on_fill(CFG, st, fill(ex.order.client_order_id, "2", "19.8", "98.0", side="SELL"), ctx())
        (closed,) = bodies(acts, wire.TradeClosed)
        assert closed.signal_price == 100.0 and closed.slippage_bps == pytest.approx(10.0, abs=1e-9)
        assert (ex.request.order_type, ex.request.reduce_only) == ("MARKET", True)  # exits stay MARKET


class TestIocFillsStillToCome:
    def test_an_expired_ioc_whose_fills_are_still_being_fetched_keeps_its_slot(self):
        """EXPIRED with 6 executed but no fill counted yet: the trade stays (its fills are
        fetched), no ENTRY_NOT_FILLED; the fill then makes the protected position."""
        st, new = entered()
        cid = new.order.client_order_id
        st, acts = trader_fills.on_order_event(CFG, st, cid, om.QueryResult(
            at_ms=NOW, found=True, status="EXPIRED", exchange_order_id="7", executed_qty=Decimal("6")), ctx())
        assert "AAAUSDT" in st.trades and bodies(acts, wire.RiskReject) == []
        assert [type(a.effect).__name__ for a in of_type(acts, trader.Dispatch)] == ["FetchTrades"]
        st, acts = trader_fills.on_fill(CFG, st, fill(cid, "1", "6", "100.1"), ctx())
        assert st.trades["AAAUSDT"].position == Decimal("6") and len(of_type(acts, trader.NewAlgo)) == 2
