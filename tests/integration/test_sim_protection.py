"""The sim as the oracle for exchange-held protection, over real sockets on 127.0.0.1: the
test price control (``POST /_sim/price``), the Algo Service (``/fapi/v1/algoOrder`` and
friends) triggering on it, and the user data stream that reports it.

The sim runs on a frozen clock (``Clock``) the test moves by hand, so every price is the
one the test pushed and every number below is exact. Requests are signed by hand.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest

from services.exchange_sim import capture as capture_mod
from services.exchange_sim import signing
from services.exchange_sim.config import DEMO_API_KEY, DEMO_API_SECRET
from tests.integration.test_exchange_sim_server import Clock, advance, get, post, run, running

pytestmark = pytest.mark.integration

T0_MS = 1_800_000_050_000


@pytest.fixture(scope="module")
def cap():
    return capture_mod.load()


async def signed(port: int, method: str, path: str, params: dict, now_ms: int) -> tuple[int, object]:
    q = urlencode({**params, "timestamp": now_ms})
    url = f"http://127.0.0.1:{port}{path}?{q}&signature={signing.sign(q, DEMO_API_SECRET)}"
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, headers={"X-MBX-APIKEY": DEMO_API_KEY}) as r:
            return r.status, orjson.loads(await r.read())


# ---------------------------------------------------------------------------- price control
def test_price_push_moves_last_mark_and_book_and_a_market_order_fills_at_it(cap):
    """After the push: ticker/price, bookTicker (bid = ask), premiumIndex's mark and index all
    read the price, and a MARKET buy fills there (fee 0.05 % of 58900.00 x 0.010)."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            pushed = await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "58900.00"})
            _, price = await get(port, "/fapi/v1/ticker/price?symbol=BTCUSDT")
            _, book = await get(port, "/fapi/v1/ticker/bookTicker?symbol=BTCUSDT")
            _, prem = await get(port, "/fapi/v1/premiumIndex?symbol=BTCUSDT")
            placed = await signed(port, "POST", "/fapi/v1/order", {
                "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010",
                "newOrderRespType": "RESULT"}, clock.now)
            _, account = await get(port, "/_sim/account")
            return pushed, price, book, prem, placed, account

    pushed, price, book, prem, (st, order), account = run(main())
    assert pushed == (200, {"ok": True, "symbol": "BTCUSDT", "price": "58900.00", "markPrice": "58900.00000000"})
    assert price["price"] == "58900.00"
    assert (book["bidPrice"], book["askPrice"]) == ("58900.00", "58900.00")
    assert (prem["markPrice"], prem["indexPrice"]) == ("58900.00000000", "58900.00000000")
    assert (st, order["status"], order["avgPrice"]) == (200, "FILLED", "58900.00000")
    assert account["wallet"] == "9999.70550000"  # 10000 - 589.00 x 0.0005
    assert account["positions"][0]["entryPrice"] == "58900"


def test_price_push_refuses_bad_requests_with_400_and_changes_nothing(cap):
    """Unknown symbol, off-grid price, too many decimals and malformed bodies: 400, no move."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            _, before = await get(port, "/fapi/v1/ticker/price?symbol=BTCUSDT")
            answers = [await post(port, "/_sim/price", body) for body in (
                {"symbol": "ETHUSDT", "price": "100"}, {"symbol": "BTCUSDT", "price": "58900.05"},
                {"symbol": "BTCUSDT", "price": "58900.001"}, {"symbol": "BTCUSDT"}, ["BTCUSDT", 1])]
            _, after = await get(port, "/fapi/v1/ticker/price?symbol=BTCUSDT")
            return before, answers, after

    before, answers, after = run(main())
    assert [a[0] for a in answers] == [400] * 5
    assert all(a[1]["ok"] is False for a in answers)
    assert answers[0][1]["error"] == "unknown symbol 'ETHUSDT'"
    assert answers[1][1]["error"] == "price must be a positive multiple of the tick for BTCUSDT"
    assert answers[2][1]["error"] == "price has more than 2 decimals for BTCUSDT"
    assert after == before


# ---------------------------------------------------------------------------- algo orders
async def open_long(port: int, clock: Clock, qty: str = "0.010") -> dict:
    st, body = await signed(port, "POST", "/fapi/v1/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": qty,
        "newClientOrderId": "entry-1", "newOrderRespType": "RESULT"}, clock.now)
    assert st == 200, body
    return body


def test_close_position_stop_fires_on_the_pushed_mark_and_closes_the_long(cap):
    """Long 0.010 bought at 60000.00; a STOP_MARKET closePosition (MARK_PRICE, priceProtect)
    at 59000.00 through the Algo Service; the push to 58900.00 fires it: the position is
    flat, the algo order FINISHED, the triggered MARKET sell is in allOrders and userTrades
    pointing back at it, and the wallet is exact."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "60000.00"})
            entry = await open_long(port, clock)
            placed = await signed(port, "POST", "/fapi/v1/algoOrder", {
                "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
                "triggerPrice": "59000.00", "closePosition": "true", "workingType": "MARK_PRICE",
                "priceProtect": "TRUE", "clientAlgoId": "ae-sl-1"}, clock.now)
            target = await signed(port, "POST", "/fapi/v1/algoOrder", {
                "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "TAKE_PROFIT_MARKET",
                "triggerPrice": "62000.00", "closePosition": "true", "workingType": "MARK_PRICE",
                "clientAlgoId": "ae-tp-1"}, clock.now)
            open_before = await signed(port, "GET", "/fapi/v1/openAlgoOrders", {"symbol": "BTCUSDT"}, clock.now)
            clock.now += 1000
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "58900.00"})
            q = lambda p: signed(port, "GET", p[0], p[1], clock.now)  # noqa: E731
            out = {
                "algo": await q(("/fapi/v1/algoOrder", {"clientAlgoId": "ae-sl-1"})),
                "tp": await q(("/fapi/v1/algoOrder", {"clientAlgoId": "ae-tp-1"})),
                "open_algos": await q(("/fapi/v1/openAlgoOrders", {})),
                "all_algos": await q(("/fapi/v1/allAlgoOrders", {"symbol": "BTCUSDT"})),
                "orders": await q(("/fapi/v1/allOrders", {"symbol": "BTCUSDT"})),
                "open_orders": await q(("/fapi/v1/openOrders", {"symbol": "BTCUSDT"})),
                "trades": await q(("/fapi/v1/userTrades", {"symbol": "BTCUSDT"})),
                "by_cid": await q(("/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "ae-sl-1"})),
                "risk": await q(("/fapi/v3/positionRisk", {})),
                "balance": await q(("/fapi/v2/balance", {})),
            }
            return entry, placed, target, open_before, out

    entry, (st, placed), (st2, target), (_, open_before), out = run(main())
    assert entry["avgPrice"] == "60000.00000"
    assert (st, placed["algoStatus"], placed["timeInForce"], placed["quantity"], placed["reduceOnly"]) == (
        200, "NEW", "GTE_GTC", "0.000", True)
    assert (st2, target["algoId"]) == (200, placed["algoId"] + 1)
    assert [a["clientAlgoId"] for a in open_before] == ["ae-sl-1", "ae-tp-1"]
    _, a = out["algo"]
    assert (a["algoStatus"], a["actualType"], a["actualQty"], a["actualPrice"], a["triggerTime"]) == (
        "FINISHED", "MARKET", "0.010", "58900.00000", T0_MS + 2000)
    assert out["tp"][1]["algoStatus"] == "EXPIRED"  # its position is gone (GTE_GTC)
    assert out["open_algos"] == (200, [])
    assert [x["algoStatus"] for x in out["all_algos"][1]] == ["FINISHED", "EXPIRED"]
    _, orders = out["orders"]
    assert [(o["clientOrderId"], o["type"], o["origType"], o["side"], o["status"]) for o in orders] == [
        ("entry-1", "MARKET", "MARKET", "BUY", "FILLED"),
        ("ae-sl-1", "MARKET", "STOP_MARKET", "SELL", "FILLED")]
    sl = orders[1]
    assert str(sl["orderId"]) == a["actualOrderId"]
    assert (sl["stopPrice"], sl["closePosition"], sl["reduceOnly"], sl["workingType"], sl["priceProtect"]) == (
        "59000.00", True, True, "MARK_PRICE", True)
    assert out["by_cid"][1]["orderId"] == sl["orderId"]
    assert out["open_orders"] == (200, [])
    _, trades = out["trades"]
    assert [(t["orderId"], t["price"], t["qty"], t["realizedPnl"], t["commission"]) for t in trades] == [
        (orders[0]["orderId"], "60000.00", "0.010", "0", "0.30000000"),
        (sl["orderId"], "58900.00", "0.010", "-11.00000000", "0.29450000")]
    assert out["risk"] == (200, [])
    assert out["balance"][1][0]["balance"] == "9988.40550000"  # 10000 - 0.30 - 11.00 - 0.2945


def test_algo_endpoints_answer_bad_requests_with_binances_codes(cap):
    """Every new endpoint refuses bad input with Binance's code and HTTP 400, never a crash;
    the old order endpoint sends conditional types to the Algo Service (-4120)."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "60000.00"})
            base = {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
                    "triggerPrice": "59000.00", "closePosition": "true"}
            calls = [
                ("POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
                                            "stopPrice": "59000", "closePosition": "true"}),
                ("POST", "/fapi/v1/algoOrder", {k: v for k, v in base.items() if k != "algoType"}),
                ("POST", "/fapi/v1/algoOrder", {**base, "type": "LIMIT"}),
                ("POST", "/fapi/v1/algoOrder", base),  # no position to close
                ("POST", "/fapi/v1/algoOrder", {**base, "closePosition": "false", "quantity": "0.010",
                                                "triggerPrice": "60100.00"}),  # would trigger now
                ("GET", "/fapi/v1/algoOrder", {}),
                ("GET", "/fapi/v1/algoOrder", {"algoId": "12345"}),
                ("DELETE", "/fapi/v1/algoOrder", {"clientAlgoId": "nope"}),
                ("DELETE", "/fapi/v1/algoOpenOrders", {}),
                ("GET", "/fapi/v1/allAlgoOrders", {"symbol": "NOPEUSDT"}),
                ("GET", "/fapi/v1/openAlgoOrders", {"algoType": "VP"}),
            ]
            return [await signed(port, m, p, params, clock.now) for m, p, params in calls]

    answers = run(main())
    assert [(st, body["code"]) for st, body in answers] == [
        (400, -4120), (400, -1102), (400, -1116), (400, -4509), (400, -2021), (400, -1102), (400, -2013),
        (400, -2011), (400, -1102), (400, -1121), (400, -1130)]
    assert answers[0][1]["msg"] == "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
    assert answers[6][1]["msg"] == "Order does not exist."
