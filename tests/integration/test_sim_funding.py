"""Funding across a funding time, end to end on 127.0.0.1: the sim settles it on an open
position (``POST /_sim/funding``, so the test need not wait 8 hours), books the income row,
pushes ``ACCOUNT_UPDATE`` m=FUNDING_FEE on ``/private/ws``; the brain's pure code decodes the
event, reads the income history, gives the row to the open trade, closes the trade from the
exchange's fills; the journal's ``trades`` row and ``aegis report`` carry the same funding.

The sim runs on a frozen clock (``Clock``): every price is the one the test pushed, so every
number below is exact.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import websockets

from common import wire
from services.brain import trader_exchange, trader_fills
from services.brain.trader_state import Ctx, Publish, Trade, TraderConfig, TraderState
from services.brain import risk
from cli import report as report_cli
from services.orchestrator import db, report_metrics
from venue.binance import user_stream as us
from venue.binance import user_updates as uu
from venue.binance.bodies import fill_from_raw, income_from_raw
from tests.integration.test_exchange_sim_server import Clock, advance, get, post, run, running
from tests.integration.test_sim_protection import drain, keyed, signed

pytestmark = pytest.mark.integration

T0_MS = 1_800_000_050_000  # 50 s after a funding time (1_800_000_000_000 is 00:00 UTC + 8 h x 62500)


@pytest.fixture(scope="module")
def cap():
    from services.exchange_sim import recorded_market
    return recorded_market.load()


def test_funding_across_a_funding_time_reaches_the_trade_the_journal_and_the_report(cap, tmp_path):
    """Long 0.010 BTCUSDT at 59000.00, funding settled at mark 59000.00 and rate 0.0001: the
    sim books -0.05900000 (income row, wallet, FUNDING_FEE event with bc -0.05900000); the
    trader attributes exactly that row to the trade (once, a second read changes nothing);
    closed at 59500.00 the trade's pnl is 5.00 - 0.059 = 4.941, its R (4.941 / (1000 x
    0.010)) 0.4941, and the trades row and the report say funding -0.059."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "59000.00"})
            _, lk = await keyed(port, "POST")
            async with websockets.connect(f"ws://127.0.0.1:{port}/private/ws?listenKey={lk['listenKey']}") as ws:
                st, entry = await signed(port, "POST", "/fapi/v1/order", {
                    "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010",
                    "newClientOrderId": "ae-sig-f-0", "newOrderRespType": "RESULT"}, clock.now)
                assert st == 200, entry
                await drain(ws)
                await advance(server, clock, 1000)  # played up to the new time: nothing moves the mark now
                await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "59000.00"})
                settled = await post(port, "/_sim/funding", {"symbol": "BTCUSDT"})
                events = await drain(ws)
            _, income = await signed(port, "GET", "/fapi/v1/income", {"incomeType": "FUNDING_FEE",
                                                                      "startTime": T0_MS}, clock.now)
            _, rates = await get(port, "/fapi/v1/fundingRate?symbol=BTCUSDT")
            _, account = await get(port, "/_sim/account")
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "59500.00"})
            st, close = await signed(port, "POST", "/fapi/v1/order", {
                "symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.010",
                "reduceOnly": "true", "newOrderRespType": "RESULT"}, clock.now)
            assert st == 200, close
            _, fills = await signed(port, "GET", "/fapi/v1/userTrades", {"symbol": "BTCUSDT"}, clock.now)
            return entry, settled, events, income, rates, account, fills

    entry, settled, events, income, rates, account, fills = run(main())
    fund_ms = T0_MS + 2000  # advance(1000) before the entry, advance(1000) before the control
    # the exchange's side
    assert settled == (200, {"ok": True, "incomes": [
        {"symbol": "BTCUSDT", "income": "-0.05900000", "tranId": 9689322392, "time": fund_ms}]})
    assert income == [{"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "-0.05900000", "asset": "USDT",
                       "info": "FUNDING_FEE", "time": fund_ms, "tranId": 9689322392, "tradeId": ""}]
    assert rates == [{"symbol": "BTCUSDT", "fundingRate": "0.00010000", "fundingTime": fund_ms,
                      "markPrice": "59000.00000000"}]
    assert account["wallet"] == "9999.64600000"  # 10000 - 0.295 (fee) - 0.059 (funding)
    assert [e["a"] for e in events if e.get("e") == "ACCOUNT_UPDATE"] == [
        {"m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "9999.64600000", "cw": "9999.64600000", "bc": "-0.05900000"}],
         "P": []}]

    # the brain's side: the event says "funding", not which symbol
    steps = uu.plan([us.decode_event(e) for e in events])
    assert steps == [uu.FundingFee(transaction_ms=fund_ms, balance_change=Decimal("-0.05900000"))]
    entry_fill = fill_from_raw(fills[0])
    cfg = TraderConfig()
    t = Trade(trade_id="sig-f", symbol="BTCUSDT", side="BUY", stop=58000.0, target=61000.0, confidence=0.6,
              features={}, opened_ms=T0_MS + 1000, entry_cid="ae-sig-f-0", entry_qty=entry_fill.qty,
              entry_notional=entry_fill.qty * entry_fill.price, fees=entry_fill.fee, first_fill_ms=T0_MS + 1000)
    st0 = TraderState(trades={"BTCUSDT": t})
    ctx = Ctx(now_ms=fund_ms + 500, equity=10_000.0, market=risk.Market(filters={}, quotes={}))
    rows = [income_from_raw(r) for r in income]
    st1, acts = trader_fills.on_income(cfg, st0, rows, ctx)
    st2, _ = trader_fills.on_income(cfg, st1, rows, ctx)  # the same rows read again: counted once
    assert acts == []
    assert st2.trades["BTCUSDT"].funding == Decimal("-0.05900000") == Decimal(income[0]["income"])
    assert st2.trades["BTCUSDT"].funding_ids == frozenset({"9689322392"})
    # the position closed at the exchange (a manual close): the trade closes from its fills
    close_ctx = Ctx(now_ms=T0_MS + 4000, equity=10_000.0, market=risk.Market(filters={}, quotes={}))
    st3, _ = trader_exchange.on_exchange_position(cfg, st2, "BTCUSDT", Decimal(0), close_ctx)
    st4, acts = trader_exchange.on_symbol_fills(cfg, st3, "BTCUSDT", [fill_from_raw(f) for f in fills], close_ctx)
    closed = [a.body for a in acts if isinstance(a, Publish) and isinstance(a.body, wire.TradeClosed)]
    assert len(closed) == 1 and "BTCUSDT" not in st4.trades
    tc = closed[0]
    assert tc.funding == -0.059
    assert tc.pnl == float(Decimal("5.00") + Decimal("-0.059")) == 4.941  # (59500 - 59000) x 0.010 - 0.059
    assert tc.outcome_r == 0.5 + (-0.059 / (1000.0 * 0.01))  # price 0.5 R, funding -0.0059 R
    assert st4.funding == Decimal("-0.05900000")

    # the journal and the report
    path = tmp_path / "aegis.sqlite3"
    conn = db.connect(path)
    db.write_batch(conn, db.rows_for(wire.Envelope(wire.SCHEMA_VERSION, "brain:1", 1, 1, 2, tc)))
    assert conn.execute("SELECT funding, pnl FROM trades").fetchall() == [(-0.059, 4.941)]
    conn.close()
    ro = report_cli.open_readonly(path)
    trades = report_cli.load_trades(ro)
    ro.close()
    assert [x.funding for x in trades] == [-0.059]
    m = report_metrics.metrics(trades, report_metrics.ReportConfig())
    assert m.funding_usdt == -0.059 and m.gross_pnl_usdt == 4.941


def test_the_8_hourly_funding_time_settles_open_positions_once_on_the_sim_clock(cap):
    """The sim clock crosses 16:00 UTC with a long open: one FUNDING_FEE row dated exactly at the
    funding time, equal to -(qty x the recorded mark x 0.0001) to the last 1e-8; one series record
    per served symbol at that time; nothing more after further steps."""
    from services.exchange_sim.account import money
    grid = 1_800_028_800_000  # a funding time (a multiple of 8 h)

    async def main():
        clock = Clock(grid - 3000)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "59000.00"})
            st, entry = await signed(port, "POST", "/fapi/v1/order", {
                "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}, clock.now)
            assert st == 200, entry
            await advance(server, clock, 4000)  # across the funding time, then 2 s more
            _, income = await signed(port, "GET", "/fapi/v1/income", {"incomeType": "FUNDING_FEE",
                                                                      "startTime": grid - 3000}, clock.now)
            _, rates = await get(port, "/fapi/v1/fundingRate")
            return income, rates

    income, rates = run(main())
    [btc] = [r for r in rates if r["symbol"] == "BTCUSDT"]
    assert sorted(r["symbol"] for r in rates) == ["BTCUSDT", "D001USDT"]
    assert all(r["fundingTime"] == grid and r["fundingRate"] == "0.00010000" for r in rates)
    expected = money(-(Decimal("0.010") * Decimal(btc["markPrice"]) * Decimal("0.0001")))
    assert [(r["time"], Decimal(r["income"])) for r in income] == [(grid, expected)]
