"""The sim's funding (``funding``) and the bodies that report it (``private_rest.income`` and
``funding_rate``, ``user_events.funding_update``): exact Decimals, Binance's documented shapes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from services.exchange_sim import funding, private_rest as pr, user_events
from services.exchange_sim.account import FIRST_TRAN_ID, Position, from_json, new_account, to_json
from services.exchange_sim.rest import RestError
from tests.unit.exchange_sim.trading_helpers import RULES, T0, go, mkt

RULES_BY = {"BTCUSDT": RULES}
GRID = T0  # 1_800_000_000_000 is a funding time (a multiple of 8 h)


def holding(qty: str, entry: str = "60000.00"):
    acc = new_account()
    return acc.__class__(**{**acc.__dict__, "positions": {
        "BTCUSDT": Position(symbol="BTCUSDT", qty=D(qty), entry_price=D(entry), update_ms=T0)}})


class TestSchedule:
    def test_funding_times_are_00_08_16_utc(self):
        """The grid: 8 h steps from the epoch; the next time is strictly after now."""
        assert funding.last_funding_ms(GRID) == GRID
        assert funding.last_funding_ms(GRID + 1) == GRID
        assert funding.next_funding_ms(GRID) == GRID + 28_800_000
        assert funding.next_funding_ms(GRID - 1) == GRID
        assert GRID % 86_400_000 == 28_800_000  # 08:00 UTC


class TestPayment:
    @pytest.mark.parametrize("qty,mark,rate,paid", [
        ("0.010", "59000.00", "0.0001", "-0.05900000"),  # a long pays a positive rate
        ("-0.010", "59000.00", "0.0001", "0.05900000"),  # a short receives it
        ("0.010", "59000.00", "-0.0003", "0.17700000"),  # a long receives a negative rate
        ("0.001", "12345.67", "0.0001", "-0.00123457"),  # 0.001234567 rounds half-up to 1e-8
        ("0.001", "0.05", "0.0001", "-0.00000001"),  # 5e-9: half-up away from zero
        ("0.001", "0.04", "0.0001", "0"),  # 4e-9 rounds to nothing
    ])
    def test_payment_is_minus_qty_times_mark_times_rate_to_1e_8(self, qty, mark, rate, paid):
        """payment = -(signed qty x mark x rate), rounded half-up to 1e-8 USDT."""
        assert funding.payment(D(qty), D(mark), D(rate)) == D(paid)

    def test_a_payment_that_rounds_to_zero_books_no_row(self):
        """0.001 at mark 0.04: the record is kept, no income row, the wallet unchanged."""
        acc = holding("0.001", "0.04")
        after, paid = funding.settle(acc, ["BTCUSDT"], {"BTCUSDT": D("0.04")}, GRID, GRID, grid=True)
        assert paid == [] and after.wallet == acc.wallet and len(after.funding) == 1


class TestSettle:
    def test_a_long_pays_and_the_wallet_the_income_row_and_the_record_say_so(self):
        """Long 0.010 at mark 59000.00: -0.059 off the wallet, one FUNDING_FEE row, one record."""
        acc = holding("0.010")
        after, paid = funding.settle(acc, ["BTCUSDT"], {"BTCUSDT": D("59000.00")}, GRID, GRID + 5, grid=True)
        assert [(i.tran_id, i.symbol, i.income_type, i.income, i.time_ms) for i in paid] == [
            (FIRST_TRAN_ID, "BTCUSDT", "FUNDING_FEE", D("-0.05900000"), GRID)]
        assert after.wallet == D("10000") - D("0.059")
        assert after.incomes == tuple(paid)
        assert [(r.symbol, r.rate, r.time_ms, r.mark) for r in after.funding] == [
            ("BTCUSDT", D("0.0001"), GRID, D("59000.00"))]
        assert after.funding_ms == GRID and after.next_tran_id == FIRST_TRAN_ID + 1
        assert after.version == acc.version + 1

    def test_flat_symbols_get_a_record_but_no_income_and_no_wallet_change(self):
        """No position: the series still has the funding time, nobody pays."""
        acc = new_account()
        after, paid = funding.settle(acc, ["BTCUSDT"], {"BTCUSDT": D("59000.00")}, GRID, GRID, grid=True)
        assert paid == [] and after.wallet == acc.wallet and len(after.funding) == 1

    def test_off_grid_settlement_keeps_the_grid_time(self):
        """The test control (grid=False) settles now without moving ``funding_ms``."""
        acc = holding("-0.020")
        after, paid = funding.settle(acc, ["BTCUSDT"], {"BTCUSDT": D("60000.00")}, GRID + 7, GRID + 7, grid=False)
        assert [i.income for i in paid] == [D("0.12000000")]
        assert after.funding_ms == 0

    def test_a_symbol_without_a_mark_is_skipped(self):
        """No price seen yet: no record, no payment (the control then changes nothing)."""
        acc = holding("0.010")
        after, paid = funding.settle(acc, ["BTCUSDT"], {}, GRID, GRID, grid=False)
        assert after is acc and paid == []

    def test_incomes_and_series_survive_the_state_file(self):
        """to_json / from_json keep the rows, the series, the grid time and the next tranId."""
        acc = holding("0.010")
        after, _ = funding.settle(acc, ["BTCUSDT"], {"BTCUSDT": D("59000.00")}, GRID, GRID, grid=True)
        back = from_json(to_json(after))
        assert (back.incomes, back.funding, back.funding_ms, back.next_tran_id) == (
            after.incomes, after.funding, after.funding_ms, after.next_tran_id)

    def test_a_schema_2_state_reads_without_funding(self):
        """A state file from before funding loads with none and starts the grid afresh."""
        doc = to_json(new_account())
        doc["schema"] = 2
        for k in ("incomes", "funding", "fundingTime", "nextTranId"):
            del doc[k]
        back = from_json(doc)
        assert (back.incomes, back.funding, back.funding_ms, back.next_tran_id) == ((), (), 0, FIRST_TRAN_ID)


class TestIncomeBody:
    def account(self):
        """Bought 0.010 (taker fee), sold 0.004 (realised PnL and fee), then funding paid."""
        acc = go(new_account(), mkt("BUY", "0.010")).account
        acc = go(acc, mkt("SELL", "0.004"), now=T0 + 1000).account
        acc, _ = funding.settle(acc, ["BTCUSDT"], {"BTCUSDT": D("60000.05")}, T0 + 2000, T0 + 2000, grid=False)
        return acc

    def test_rows_have_binance_documented_keys_and_types(self):
        """Keys and types as the "Get Income History" example: tranId a number, tradeId a string."""
        rows = pr.income(self.account(), {"startTime": str(T0)}, RULES_BY, T0 + 3000)
        assert [(r["incomeType"], r["income"], r["time"], r["tradeId"]) for r in rows] == [
            ("COMMISSION", "-0.30000050", T0, "272600001"),  # 60000.10 x 0.010 x 0.0005
            ("REALIZED_PNL", "-0.00040000", T0 + 1000, "272600002"),  # (60000.00 - 60000.10) x 0.004
            ("COMMISSION", "-0.12000000", T0 + 1000, "272600002"),
            ("FUNDING_FEE", "-0.03600003", T0 + 2000, ""),  # 0.006 x 60000.05 x 0.0001
        ]
        assert all(set(r) == {"asset", "income", "incomeType", "info", "symbol", "time", "tranId", "tradeId"}
                   and isinstance(r["tranId"], int) and r["asset"] == "USDT" and r["symbol"] == "BTCUSDT"
                   for r in rows)
        assert rows[1]["tranId"] == rows[2]["tranId"] == 272600002 + pr.TRADE_TRAN_OFFSET
        assert rows[3]["tranId"] == FIRST_TRAN_ID and rows[3]["info"] == "FUNDING_FEE"

    def test_filters_type_window_page_and_limit(self):
        """incomeType, startTime/endTime inclusive, page and limit; no window: the last 7 days."""
        acc = self.account()
        only = pr.income(acc, {"incomeType": "FUNDING_FEE"}, RULES_BY, T0 + 3000)
        assert [r["incomeType"] for r in only] == ["FUNDING_FEE"]
        assert pr.income(acc, {"incomeType": "TRANSFER"}, RULES_BY, T0 + 3000) == []
        window = pr.income(acc, {"startTime": str(T0 + 1000), "endTime": str(T0 + 1000)}, RULES_BY, T0)
        assert [r["time"] for r in window] == [T0 + 1000, T0 + 1000]
        page2 = pr.income(acc, {"startTime": str(T0), "limit": "2", "page": "2"}, RULES_BY, T0)
        assert [r["incomeType"] for r in page2] == ["COMMISSION", "FUNDING_FEE"]
        assert pr.income(acc, {}, RULES_BY, T0 + 8 * 86_400_000) == []  # older than 7 days

    @pytest.mark.parametrize("params,code", [({"limit": "1001"}, -1130), ({"incomeType": "fee!"}, -1130),
                                             ({"startTime": "5", "endTime": "4"}, -1023),
                                             ({"symbol": "NOPEUSDT"}, -1121)])
    def test_bad_parameters_are_refused_with_binance_codes(self, params, code):
        """Out-of-range limit, malformed type, reversed window, unknown symbol."""
        with pytest.raises(RestError) as e:
            pr.income(new_account(), params, RULES_BY, T0)
        assert e.value.code == code


class TestFundingRateBody:
    def test_rows_match_the_documented_example_shape(self):
        """{"symbol", "fundingRate" (8 decimals), "fundingTime", "markPrice"} ascending."""
        acc = new_account()
        for k in range(3):
            acc, _ = funding.settle(acc, ["BTCUSDT"], {"BTCUSDT": D("60000.05")}, GRID + k * 28_800_000,
                                    GRID + k * 28_800_000, grid=True)
        rows = pr.funding_rate(acc, {"symbol": "BTCUSDT"}, RULES_BY)
        assert rows[0] == {"symbol": "BTCUSDT", "fundingRate": "0.00010000", "fundingTime": GRID,
                           "markPrice": "60000.05000000"}
        assert [r["fundingTime"] for r in rows] == [GRID, GRID + 28_800_000, GRID + 57_600_000]
        assert [r["fundingTime"] for r in pr.funding_rate(acc, {"limit": "1"}, RULES_BY)] == [GRID + 57_600_000]
        assert [r["fundingTime"] for r in pr.funding_rate(acc, {"startTime": str(GRID), "limit": "1"},
                                                          RULES_BY)] == [GRID]


class TestFundingEvent:
    def test_account_update_lists_the_balance_only(self):
        """m FUNDING_FEE, B with wb/cw after the payment and bc the payment, P empty (cross)."""
        e = user_events.funding_update(D("9999.646"), D("-0.059"), T0)
        assert e == {"e": "ACCOUNT_UPDATE", "E": T0, "T": T0, "a": {"m": "FUNDING_FEE", "B": [
            {"a": "USDT", "wb": "9999.64600000", "cw": "9999.64600000", "bc": "-0.05900000"}], "P": []}}
