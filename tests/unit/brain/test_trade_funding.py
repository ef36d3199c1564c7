"""Funding in the trader (``trader_fills.on_income``, ``outcome_r``, ``trade_pnl``) and in the user
stream's plan (``user_updates.plan``: ACCOUNT_UPDATE m=FUNDING_FEE -> ``FundingFee``)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from services.brain import risk, trader_fills
from services.brain.trader_state import Ctx, Trade, TraderConfig, TraderState
from venue.binance import user_stream as us
from venue.binance import user_updates as uu
from venue.port import ExchangeIncome

T0 = 1_800_000_000_000
CFG = TraderConfig()
CTX = Ctx(now_ms=T0 + 60_000, equity=10_000.0, market=risk.Market(filters={}, quotes={}))


def trade(symbol: str = "BTCUSDT", side: str = "BUY", opened_ms: int = T0) -> Trade:
    """Long (or short) 0.010 at 59000.00, stop 1000.00 away."""
    return Trade(trade_id=f"sig-{symbol}", symbol=symbol, side=side, stop=58000.0 if side == "BUY" else 60000.0,
                 target=61000.0, confidence=0.6, features={}, opened_ms=opened_ms, entry_cid=f"ae-{symbol}",
                 entry_qty=D("0.010"), entry_notional=D("590.00000"), first_fill_ms=opened_ms)


def row(tran: str, amount: str, symbol: str = "BTCUSDT", time_ms: int = T0 + 1000,
        kind: str = "FUNDING_FEE") -> ExchangeIncome:
    return ExchangeIncome(tran_id=tran, symbol=symbol, income_type=kind, amount=D(amount), time_ms=time_ms)


class TestOnIncome:
    def test_each_funding_row_goes_to_the_open_trade_of_its_symbol_once(self):
        """Two rows of BTCUSDT summed exactly; the same rows read again change nothing."""
        st = TraderState(trades={"BTCUSDT": trade()})
        rows = [row("1", "-0.05900000"), row("2", "0.01000001", time_ms=T0 + 2000)]
        st1, acts = trader_fills.on_income(CFG, st, rows, CTX)
        st2, _ = trader_fills.on_income(CFG, st1, rows, CTX)
        assert acts == []
        assert st2.trades["BTCUSDT"].funding == D("-0.04899999")
        assert st2.trades["BTCUSDT"].funding_ids == frozenset({"1", "2"})
        assert st2.counters["funding_applied"] == 2

    def test_rows_of_no_open_trade_other_types_and_older_rows_are_ignored(self):
        """Another symbol, a COMMISSION row, a row before the trade opened: none counts."""
        st = TraderState(trades={"BTCUSDT": trade(opened_ms=T0 + 5000)})
        rows = [row("1", "-1", symbol="ETHUSDT"), row("2", "-1", kind="COMMISSION", time_ms=T0 + 6000),
                row("3", "-1", time_ms=T0 + 4999)]
        after, acts = trader_fills.on_income(CFG, st, rows, CTX)
        assert after is st and acts == []

    def test_a_trade_whose_entry_has_not_filled_takes_no_funding(self):
        """No position yet: a row of its symbol is not its funding."""
        st = TraderState(trades={"BTCUSDT": replace(trade(), entry_qty=D(0), entry_notional=D(0))})
        after, _ = trader_fills.on_income(CFG, st, [row("1", "-0.059")], CTX)
        assert after.trades["BTCUSDT"].funding == 0


class TestPnlAndR:
    def test_funding_is_in_the_pnl_and_the_r(self):
        """Long 0.010 59000 -> 59500, funding -0.059: pnl 4.941, R 0.5 - 0.0059."""
        t = replace(trade(), exit_qty=D("0.010"), exit_notional=D("595.00000"), funding=D("-0.059"))
        assert trader_fills.trade_pnl(t) == D("4.941")
        assert trader_fills.outcome_r(t) == 0.5 + (-0.059 / (1000.0 * 0.01))

    def test_a_short_receiving_funding_gains_it(self):
        """Short 0.010 59000 -> 59000 flat price, funding +0.059: pnl 0.059, R 0.0059."""
        t = replace(trade(side="SELL"), exit_qty=D("0.010"), exit_notional=D("590.00000"), funding=D("0.059"))
        assert trader_fills.trade_pnl(t) == D("0.059")
        assert trader_fills.outcome_r(t) == 0.059 / (1000.0 * 0.01)

    def test_without_funding_r_is_the_price_move(self):
        """funding 0: R exactly as before (direction x move / risk)."""
        t = replace(trade(), exit_qty=D("0.010"), exit_notional=D("600.00000"))
        assert trader_fills.outcome_r(t) == 1.0


class TestPlan:
    def test_a_funding_fee_account_update_becomes_a_funding_step(self):
        """m FUNDING_FEE with the balance only: one FundingFee step with the USDT bc, no position."""
        e = us.decode_event({"e": "ACCOUNT_UPDATE", "E": T0, "T": T0 + 1, "a": {
            "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "9999.646", "cw": "9999.646", "bc": "-0.059"}], "P": []}})
        assert uu.plan([e]) == [uu.FundingFee(transaction_ms=T0 + 1, balance_change=D("-0.059"))]

    def test_an_order_account_update_is_no_funding_step(self):
        """m ORDER: positions only, as before."""
        e = us.decode_event({"e": "ACCOUNT_UPDATE", "E": T0, "T": T0, "a": {
            "m": "ORDER", "B": [{"a": "USDT", "wb": "1", "cw": "1", "bc": "0"}], "P": [
                {"s": "BTCUSDT", "pa": "0.010", "ep": "59000", "cr": "0", "up": "0", "mt": "cross", "iw": "0",
                 "ps": "BOTH"}]}})
        assert [type(s).__name__ for s in uu.plan([e])] == ["Position"]
