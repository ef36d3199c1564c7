"""Endpoints other clients rely on (Binance's own connector and python-binance call them by
default), over real sockets on 127.0.0.1: ``/fapi/v2/ticker/price``, ``PUT /fapi/v1/order``
(modify a LIMIT order), ``POST /fapi/v1/order/test``, ``fundingRate``, ``premiumIndex``'s
funding fields, depth with the asked number of levels, ISOLATED margin refused, and streams
the sim does not serve refused before the handshake.

The sim runs on a frozen clock (``Clock``): every price is the one the test pushed.
"""

from __future__ import annotations


import orjson
import pytest
import websockets

from services.exchange_sim import funding
from tests.integration.test_exchange_sim_server import Clock, advance, get, post, run, running
from tests.integration.test_sim_protection import drain, keyed, signed

pytestmark = pytest.mark.integration

T0_MS = 1_800_000_050_000


@pytest.fixture(scope="module")
def cap():
    from services.exchange_sim import recorded_market
    return recorded_market.load()


def test_ticker_price_v2_answers_as_v1(cap):
    """/fapi/v2/ticker/price: the same body as v1 (symbol, price, time), one or all symbols."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "59000.00"})
            return [await get(port, p) for p in ("/fapi/v1/ticker/price?symbol=BTCUSDT",
                                                 "/fapi/v2/ticker/price?symbol=BTCUSDT", "/fapi/v2/ticker/price")]

    v1, v2, every = run(main())
    assert v1 == v2 and v2[0] == 200 and v2[1]["price"] == "59000.00"
    assert [x["symbol"] for x in every[1]] == ["BTCUSDT", "D001USDT"]


def test_depth_has_the_asked_levels_one_tick_apart_behind_the_touch(cap):
    """limit=5: five levels a side; the touch is the book ticker, then one tick further each,
    each as large as the touch (what a market order walks); no limit: 500 levels."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "59000.00"})
            _, d5 = await get(port, "/fapi/v1/depth?symbol=BTCUSDT&limit=5")
            _, d = await get(port, "/fapi/v1/depth?symbol=BTCUSDT")
            _, book = await get(port, "/fapi/v1/ticker/bookTicker?symbol=BTCUSDT")
            return d5, d, book

    d5, d, book = run(main())
    assert [p for p, _ in d5["bids"]] == ["59000.00", "58999.90", "58999.80", "58999.70", "58999.60"]
    assert [p for p, _ in d5["asks"]] == ["59000.00", "59000.10", "59000.20", "59000.30", "59000.40"]
    assert d5["bids"][0][1] == book["bidQty"] and d5["asks"][0][1] == book["askQty"]
    assert len({q for _, q in d5["bids"][1:]}) == 1
    assert (len(d["bids"]), len(d["asks"])) == (500, 500)


def test_modify_moves_a_resting_limit_order_and_the_stream_says_amendment(cap):
    """A resting BUY 0.010 at 58000.00 modified to 0.020 at 58500.00: same orderId, new price and
    quantity (PUT answer, GET order), ORDER_TRADE_UPDATE x=AMENDMENT; modified to 59000.00 it
    crosses the ask and fills there as taker; a MARKET order or an unchanged one is refused."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "59000.00"})
            _, lk = await keyed(port, "POST")
            async with websockets.connect(f"ws://127.0.0.1:{port}/private/ws?listenKey={lk['listenKey']}") as ws:
                st, placed = await signed(port, "POST", "/fapi/v1/order", {
                    "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.010", "price": "58000.00",
                    "timeInForce": "GTC", "newClientOrderId": "lim-1"}, clock.now)
                assert st == 200, placed
                await drain(ws)
                moved = await signed(port, "PUT", "/fapi/v1/order", {
                    "symbol": "BTCUSDT", "origClientOrderId": "lim-1", "side": "BUY", "quantity": "0.020",
                    "price": "58500.00"}, clock.now)
                events = await drain(ws)
            _, queried = await signed(port, "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]},
                                      clock.now)
            same = await signed(port, "PUT", "/fapi/v1/order", {
                "symbol": "BTCUSDT", "orderId": placed["orderId"], "side": "BUY", "quantity": "0.020",
                "price": "58500.00"}, clock.now)
            crossed = await signed(port, "PUT", "/fapi/v1/order", {
                "symbol": "BTCUSDT", "orderId": placed["orderId"], "side": "BUY", "quantity": "0.020",
                "price": "59000.00"}, clock.now)
            _, mkt = await signed(port, "POST", "/fapi/v1/order", {
                "symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.010"}, clock.now)
            not_limit = await signed(port, "PUT", "/fapi/v1/order", {
                "symbol": "BTCUSDT", "orderId": mkt["orderId"], "side": "SELL", "quantity": "0.010",
                "price": "59000.00"}, clock.now)
            gone = await signed(port, "PUT", "/fapi/v1/order", {
                "symbol": "BTCUSDT", "orderId": 1, "side": "BUY", "quantity": "0.010", "price": "59000.00"}, clock.now)
            return placed, moved, events, queried, same, crossed, not_limit, gone

    placed, (st, moved), events, queried, same, (cst, crossed), not_limit, gone = run(main())
    assert st == 200 and moved["orderId"] == placed["orderId"] and moved["clientOrderId"] == "lim-1"
    assert (moved["price"], moved["origQty"], moved["status"]) == ("58500.00", "0.020", "NEW")
    assert (queried["price"], queried["origQty"], queried["status"]) == ("58500.00", "0.020", "NEW")
    amend = [e["o"] for e in events if e.get("e") == "ORDER_TRADE_UPDATE"]
    assert [(o["x"], o["X"], o["p"], o["q"], o["i"]) for o in amend] == [
        ("AMENDMENT", "NEW", "58500.00", "0.020", placed["orderId"])]
    assert same == (400, {"code": -5027, "msg": "No need to modify the order."})
    assert cst == 200 and (crossed["status"], crossed["executedQty"], crossed["avgPrice"]) == (
        "FILLED", "0.020", "59000.00000")
    assert not_limit == (400, {"code": -2013, "msg": "Order does not exist."})  # a filled MARKET is not open
    assert gone == (400, {"code": -2013, "msg": "Order does not exist."})


def test_test_order_checks_like_a_new_order_and_places_nothing(cap):
    """order/test: a valid order answers the order's shape with orderId 0; an invalid one the
    same error a real order gets; no order, no fill, the wallet unchanged."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "59000.00"})
            ok = await signed(port, "POST", "/fapi/v1/order/test", {
                "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.010", "price": "58000.00",
                "timeInForce": "GTC", "newClientOrderId": "t-1"}, clock.now)
            small = await signed(port, "POST", "/fapi/v1/order/test", {
                "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}, clock.now)
            stop = await signed(port, "POST", "/fapi/v1/order/test", {
                "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "quantity": "0.010",
                "stopPrice": "58000.00"}, clock.now)
            _, orders = await get(port, "/_sim/orders")
            _, account = await get(port, "/_sim/account")
            return ok, small, stop, orders, account

    (st, ok), small, stop, orders, account = run(main())
    assert st == 200 and (ok["orderId"], ok["clientOrderId"], ok["status"], ok["price"]) == (0, "t-1", "NEW", "58000.00")
    assert small == (400, {"code": -4164, "msg": "Order's notional must be no smaller than 100 (unless you choose "
                                                 "reduce only)."})
    assert stop[0] == 400 and stop[1]["code"] == -4120
    assert orders == [] and account["wallet"] == "10000.00000000"


def test_isolated_margin_is_refused_and_cross_is_no_need_to_change(cap):
    """marginType ISOLATED: -1020, not accepted and silently margined as cross; CROSSED: -4046."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            iso = await signed(port, "POST", "/fapi/v1/marginType", {"symbol": "BTCUSDT", "marginType": "ISOLATED"},
                               clock.now)
            cross = await signed(port, "POST", "/fapi/v1/marginType", {"symbol": "BTCUSDT", "marginType": "CROSSED"},
                                 clock.now)
            return iso, cross

    iso, cross = run(main())
    assert iso == (400, {"code": -1020, "msg": "This operation is not supported."})
    assert cross == (400, {"code": -4046, "msg": "No need to change margin type."})


def test_premium_index_and_funding_rate_agree_with_the_settled_series(cap):
    """premiumIndex: lastFundingRate 0.00010000 and the next 8-hourly time; fundingRate lists the
    settlement the control made (rate, time, mark) and nothing else."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "59000.00"})
            _, before = await get(port, "/fapi/v1/fundingRate?symbol=BTCUSDT")
            await post(port, "/_sim/funding", {})
            _, prem = await get(port, "/fapi/v1/premiumIndex?symbol=BTCUSDT")
            _, rates = await get(port, "/fapi/v1/fundingRate?symbol=BTCUSDT")
            bad = await post(port, "/_sim/funding", {"symbol": "NOPEUSDT"})
            return before, prem, rates, bad

    before, prem, rates, bad = run(main())
    assert before == []
    assert (prem["lastFundingRate"], prem["nextFundingTime"]) == ("0.00010000", funding.next_funding_ms(T0_MS))
    assert rates == [{"symbol": "BTCUSDT", "fundingRate": "0.00010000", "fundingTime": T0_MS + 1000,
                      "markPrice": "59000.00000000"}]
    assert bad == (400, {"ok": False, "error": "unknown symbol 'NOPEUSDT'"})


def test_streams_the_sim_does_not_serve_are_refused_before_the_handshake(cap):
    """continuousKline, all-market (!ticker@arr, !markPrice@arr) and depth streams: HTTP 400
    with Binance's error body, never a silent connection that never speaks."""

    async def main():
        async with running(cap, symbols=2) as (server, port):
            out = []
            for path in ("/stream?streams=btcusdt_perp@continuousKline_1m", "/ws/!ticker@arr",
                         "/stream?streams=!markPrice@arr", "/ws/btcusdt@depth"):
                try:
                    async with websockets.connect(f"ws://127.0.0.1:{port}{path}"):
                        out.append(None)
                except websockets.InvalidStatus as exc:
                    out.append((exc.response.status_code, orjson.loads(exc.response.body)["code"]))
            return out

    got = run(main())
    # the pair of a continuousKline and the "!" of an all-market stream are no symbol it serves
    # (-1121 Invalid symbol.); a depth channel is a malformed stream name to it (-1100)
    assert got == [(400, -1121), (400, -1121), (400, -1121), (400, -1100)]
