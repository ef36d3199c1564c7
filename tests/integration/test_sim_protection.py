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
