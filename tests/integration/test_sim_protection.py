"""The sim as the oracle for exchange-held protection, over real sockets on 127.0.0.1: the
test price control (``POST /_sim/price``), the Algo Service (``/fapi/v1/algoOrder`` and
friends) triggering on it, and the user data stream that reports it.

The sim runs on a frozen clock (``Clock``) the test moves by hand, so every price is the
one the test pushed and every number below is exact (the ccxt test runs on the wall clock,
as ccxt signs with its own). Requests are signed by hand.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
import websockets

from services.exchange_sim import recorded_market
from services.exchange_sim import signing
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from tests.integration.test_exchange_sim_server import Clock, advance, get, post, run, running

pytestmark = pytest.mark.integration

T0_MS = 1_800_000_050_000


@pytest.fixture(scope="module")
def cap():
    return recorded_market.load()


async def signed(port: int, method: str, path: str, params: dict, now_ms: int) -> tuple[int, object]:
    q = urlencode({**params, "timestamp": now_ms})
    url = f"http://127.0.0.1:{port}{path}?{q}&signature={signing.sign(q, DEMO_API_SECRET)}"
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, headers={"X-MBX-APIKEY": DEMO_API_KEY}) as r:
            return r.status, orjson.loads(await r.read())


async def keyed(port: int, method: str, path: str = "/fapi/v1/listenKey", key: str | None = DEMO_API_KEY,
                params: dict | None = None) -> tuple[int, object]:
    """A USER_STREAM request: the API key header only, no signature."""
    headers = {"X-MBX-APIKEY": key} if key is not None else {}
    q = f"?{urlencode(params)}" if params else ""
    async with aiohttp.ClientSession() as s:
        async with s.request(method, f"http://127.0.0.1:{port}{path}{q}", headers=headers) as r:
            return r.status, orjson.loads(await r.read())


async def drain(ws, quiet_s: float = 0.3) -> list[dict]:
    """Every frame that arrives until the connection is quiet for ``quiet_s``."""
    out: list[dict] = []
    while True:
        try:
            out.append(orjson.loads(await asyncio.wait_for(ws.recv(), quiet_s)))
        except asyncio.TimeoutError:
            return out


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



def test_ccxt_places_lists_and_cancels_a_stop_through_the_algo_service(cap):
    """ccxt (a client nobody here wrote) sends its STOP_MARKET to /fapi/v1/algoOrder and reads
    the sim's answers: created, listed as an open trigger order, cancelled, fetched."""
    from tests.integration.test_sim_trading_ccxt import SYM, client

    def work(port: int) -> tuple:
        ex = client(port)
        ex.load_markets()
        ex.create_order(SYM, "market", "buy", 0.01)
        px = float(ex.fetch_ticker(SYM)["last"])
        created = ex.create_order(SYM, "STOP_MARKET", "sell", None, None, {
            "triggerPrice": round(px * 0.98, 1), "closePosition": True, "workingType": "MARK_PRICE",
            "clientOrderId": "ae-sl-ccxt"})
        listed = ex.fetch_open_orders(SYM, params={"trigger": True})
        cancelled = ex.cancel_order(created["id"], SYM, {"trigger": True})
        fetched = ex.fetch_order(created["id"], SYM, {"trigger": True})
        return created, listed, cancelled, fetched

    async def main():
        async with running(cap, symbols=2) as (_, port):
            await asyncio.sleep(0.5)
            return await asyncio.to_thread(work, port)

    created, listed, cancelled, fetched = run(main())
    assert (created["clientOrderId"], created["status"], created["info"]["algoStatus"]) == ("ae-sl-ccxt", "open", "NEW")
    assert [o["id"] for o in listed] == [created["id"]]
    assert cancelled["info"] == {"algoId": int(created["id"]), "clientAlgoId": "ae-sl-ccxt", "code": "200",
                                 "msg": "success"}
    assert (fetched["status"], fetched["info"]["algoStatus"]) == ("canceled", "CANCELED")


# ---------------------------------------------------------------------------- user data stream
def test_stop_fired_by_a_price_push_reaches_the_user_stream_in_binances_order(cap):
    """The whole protective-stop story on /private/ws: the entry's ORDER_TRADE_UPDATE NEW,
    TRADE_LITE, ACCOUNT_UPDATE, ORDER_TRADE_UPDATE TRADE; the stop's ALGO_UPDATE NEW; then the
    push: ALGO_UPDATE TRIGGERING and TRIGGERED (ai = the order), the sell's NEW, TRADE_LITE,
    ACCOUNT_UPDATE (flat, realised -11.00), TRADE, ALGO_UPDATE FINISHED, and the target's
    ALGO_UPDATE EXPIRED, with exact numbers."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "60000.00"})
            _, lk = await keyed(port, "POST")
            async with websockets.connect(f"ws://127.0.0.1:{port}/private/ws?listenKey={lk['listenKey']}") as ws:
                await open_long(port, clock)
                for cid, otype, trigger in (("ae-sl-1", "STOP_MARKET", "59000.00"),
                                            ("ae-tp-1", "TAKE_PROFIT_MARKET", "62000.00")):
                    st, body = await signed(port, "POST", "/fapi/v1/algoOrder", {
                        "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": otype,
                        "triggerPrice": trigger, "closePosition": "true", "workingType": "MARK_PRICE",
                        "priceProtect": "TRUE", "clientAlgoId": cid}, clock.now)
                    assert st == 200, body
                placed = await drain(ws)
                clock.now += 1000
                await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "58900.00"})
                fired = await drain(ws)
            _, account = await get(port, "/_sim/account")
            return lk, placed, fired, account

    lk, placed, fired, account = run(main())
    assert len(lk["listenKey"]) == 64 and lk["listenKey"].isalnum()
    t1, t2 = T0_MS + 1000, T0_MS + 2000
    assert [(e["e"], e.get("o", {}).get("x") or e.get("o", {}).get("X")) for e in placed] == [
        ("ORDER_TRADE_UPDATE", "NEW"), ("TRADE_LITE", None), ("ACCOUNT_UPDATE", None),
        ("ORDER_TRADE_UPDATE", "TRADE"), ("ALGO_UPDATE", "NEW"), ("ALGO_UPDATE", "NEW")]
    assert [(e["e"], e.get("o", {}).get("x") or e.get("o", {}).get("X")) for e in fired] == [
        ("ALGO_UPDATE", "TRIGGERING"), ("ALGO_UPDATE", "TRIGGERED"), ("ORDER_TRADE_UPDATE", "NEW"),
        ("TRADE_LITE", None), ("ACCOUNT_UPDATE", None), ("ORDER_TRADE_UPDATE", "TRADE"),
        ("ALGO_UPDATE", "FINISHED"), ("ALGO_UPDATE", "EXPIRED")]
    sl_new = placed[4]
    assert sl_new == {"e": "ALGO_UPDATE", "T": t1, "E": t1, "o": {
        "caid": "ae-sl-1", "aid": 1000000200000001, "at": "CONDITIONAL", "o": "STOP_MARKET", "s": "BTCUSDT",
        "S": "SELL", "ps": "BOTH", "f": "GTE_GTC", "q": "0", "X": "NEW", "ai": "", "tp": "59000", "p": "0",
        "V": "NONE", "wt": "MARK_PRICE", "pm": "NONE", "cp": True, "pP": True, "R": True, "tt": 0, "gtd": 0,
        "ia": False}}
    triggered, new, lite, acct, trade, finished, expired = fired[1:]
    order_id = new["o"]["i"]
    assert (triggered["o"]["ai"], triggered["o"]["ap"], triggered["o"]["aq"], triggered["o"]["act"],
            triggered["o"]["tt"]) == (str(order_id), "0.00000", "0.000", "MARKET", t2)
    assert {k: new["o"][k] for k in ("s", "c", "S", "o", "ot", "sp", "wt", "cp", "R", "pP", "q", "X")} == {
        "s": "BTCUSDT", "c": "ae-sl-1", "S": "SELL", "o": "MARKET", "ot": "STOP_MARKET", "sp": "59000.00",
        "wt": "MARK_PRICE", "cp": True, "R": True, "pP": True, "q": "0.010", "X": "NEW"}
    assert lite == {"e": "TRADE_LITE", "E": t2, "T": t2, "s": "BTCUSDT", "q": "0.010", "p": "0.00", "m": False,
                    "c": "ae-sl-1", "S": "SELL", "L": "58900.00", "l": "0.010", "t": trade["o"]["t"], "i": order_id}
    assert acct == {"e": "ACCOUNT_UPDATE", "E": t2, "T": t2, "a": {
        "m": "ORDER", "B": [{"a": "USDT", "wb": "9988.40550000", "cw": "9988.40550000", "bc": "0"}],
        "P": [{"s": "BTCUSDT", "pa": "0.000", "ep": "0", "bep": "0", "cr": "-11", "up": "0", "mt": "cross",
               "iw": "0", "ps": "BOTH", "ma": "USDT"}]}}
    assert {k: trade["o"][k] for k in ("x", "X", "l", "z", "L", "ap", "n", "N", "rp", "m", "T", "c", "i")} == {
        "x": "TRADE", "X": "FILLED", "l": "0.010", "z": "0.010", "L": "58900", "ap": "58900.00000",
        "n": "0.29450000", "N": "USDT", "rp": "-11.00000000", "m": False, "T": t2, "c": "ae-sl-1", "i": order_id}
    assert (finished["o"]["X"], finished["o"]["ai"], finished["o"]["ap"], finished["o"]["aq"]) == (
        "FINISHED", str(order_id), "58900.00000", "0.010")
    assert (expired["o"]["caid"], expired["o"]["X"], expired["o"]["ai"]) == ("ae-tp-1", "EXPIRED", "")
    entry_acct = placed[2]["a"]
    assert entry_acct["B"][0]["wb"] == "9999.70000000"
    assert entry_acct["P"][0] == {"s": "BTCUSDT", "pa": "0.010", "ep": "60000", "bep": "60030", "cr": "0",
                                  "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH", "ma": "USDT"}
    assert account["wallet"] == "9988.40550000" and account["positions"] == []


def test_events_filter_and_legacy_path_deliver_only_what_was_asked(cap):
    """``events=ALGO_UPDATE`` gets only ALGO_UPDATE; the legacy ``/ws/<key>`` and
    ``/private/ws/<key>`` get everything; a wrong key or event name is refused before the upgrade."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            _, lk = await keyed(port, "POST")
            key = lk["listenKey"]
            base = f"ws://127.0.0.1:{port}"
            refusals = []
            for url in (f"{base}/private/ws?listenKey={'x' * 64}", f"{base}/private/ws?listenKey={key}&events=NOPE",
                        f"{base}/private/ws", f"{base}/ws/{'y' * 64}"):
                try:
                    async with websockets.connect(url):
                        refusals.append("accepted")
                except websockets.InvalidStatus as exc:
                    refusals.append((exc.response.status_code, orjson.loads(exc.response.body)["code"]))
            async with websockets.connect(f"{base}/private/ws?listenKey={key}&events=ALGO_UPDATE") as only, \
                    websockets.connect(f"{base}/ws/{key}") as legacy, \
                    websockets.connect(f"{base}/private/ws/{key}") as path:
                await signed(port, "POST", "/fapi/v1/algoOrder", {
                    "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "BUY", "type": "STOP_MARKET",
                    "triggerPrice": "99000.00", "quantity": "0.010", "clientAlgoId": "b1"}, clock.now)
                await signed(port, "POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": "7"}, clock.now)
                return refusals, await drain(only), await drain(legacy), await drain(path)

    refusals, only, legacy, path = run(main())
    assert refusals == [(400, -1125), (400, -1130), (400, -1102), (400, -1125)]
    assert [e["e"] for e in only] == ["ALGO_UPDATE"]
    assert [e["e"] for e in legacy] == ["ALGO_UPDATE", "ACCOUNT_CONFIG_UPDATE"] == [e["e"] for e in path]
    assert legacy[1]["ac"] == {"s": "BTCUSDT", "l": 7}


def test_listen_key_lifecycle_keepalive_expiry_and_close(cap):
    """POST twice gives the same key; PUT extends it; without PUT it expires on time
    (validity 5 s here): listenKeyExpired, then silence on the open connection, PUT -1125, a
    new POST a new key; DELETE closes the stream's connection; no API key: -2014."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2, listen_key_validity_ms=5_000) as (server, port):
            await advance(server, clock, 1000)
            out: dict = {}
            _, a = await keyed(port, "POST")
            _, b = await keyed(port, "POST")
            out["same"] = a == b
            await advance(server, clock, 4000)
            out["put"] = await keyed(port, "PUT")  # extended to now + 5 s
            async with websockets.connect(f"ws://127.0.0.1:{port}/private/ws?listenKey={a['listenKey']}") as ws:
                await advance(server, clock, 4000)  # 4 s after the PUT: still valid
                out["alive"] = (await keyed(port, "PUT"))[0]
                await advance(server, clock, 5500)  # 5.5 s without keepalive: expired
                out["expired_msgs"] = await drain(ws)
                await signed(port, "POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": "9"}, clock.now)
                out["after"] = await drain(ws)
                out["put_after"] = await keyed(port, "PUT")
                _, c = await keyed(port, "POST")
                out["new_key"] = c["listenKey"] != a["listenKey"]
            async with websockets.connect(f"ws://127.0.0.1:{port}/private/ws?listenKey={c['listenKey']}") as ws2:
                out["delete"] = await keyed(port, "DELETE")
                try:
                    await asyncio.wait_for(ws2.recv(), 2.0)
                    out["closed"] = None
                except websockets.ConnectionClosed as exc:
                    out["closed"] = exc.rcvd.code if exc.rcvd else None
            out["no_key"] = await keyed(port, "POST", key=None)
            out["bad_key"] = await keyed(port, "POST", key="nope")
            _, stats = await get(port, "/_sim/stats")
            out["stats"] = stats["user_stream"]
            return a, out

    a, out = run(main())
    assert out["same"] is True
    assert out["put"] == (200, a)
    assert out["alive"] == 200
    # the last PUT at T0 + 9 s made it valid until T0 + 14 s: the pump's step at 14 s expires it
    assert out["expired_msgs"] == [{"e": "listenKeyExpired", "E": str(T0_MS + 14_000), "listenKey": a["listenKey"]}]
    assert out["after"] == []
    assert out["put_after"] == (400, {"code": -1125, "msg": "This listenKey does not exist."})
    assert out["new_key"] is True
    assert out["delete"] == (200, {})
    assert out["closed"] == 1000
    assert out["no_key"] == (401, {"code": -2014, "msg": "API-key format invalid."})
    assert out["bad_key"] == (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
    assert out["stats"] == {"listen_key_active": False, "connections": 0, "events_sent": 1, "keys_expired": 1}


def test_faults_drop_the_user_stream_and_expire_the_key(cap):
    """``user_stream_close`` with ``abort`` cuts the connection (no close frame) but leaves the
    key valid for a reconnect; ``listen_key_expire`` expires it at once."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            _, lk = await keyed(port, "POST")
            url = f"ws://127.0.0.1:{port}/private/ws?listenKey={lk['listenKey']}"
            async with websockets.connect(url) as ws:
                dropped = await post(port, "/_sim/fault", {"action": "user_stream_close", "abort": True})
                try:
                    await asyncio.wait_for(ws.recv(), 2.0)
                    how = "message"
                except websockets.ConnectionClosed as exc:
                    how = "no close frame" if exc.rcvd is None else exc.rcvd.code
            async with websockets.connect(url) as ws:
                expired = await post(port, "/_sim/fault", {"action": "listen_key_expire"})
                msgs = await drain(ws)
            put_after = await keyed(port, "PUT")
            return dropped, how, expired, msgs, put_after

    dropped, how, expired, msgs, put_after = run(main())
    assert dropped == (200, {"ok": True, "affected": 1})
    assert how == "no close frame"
    assert expired == (200, {"ok": True, "affected": 1})
    assert [m["e"] for m in msgs] == ["listenKeyExpired"]
    assert put_after[1]["code"] == -1125


def test_an_algo_order_survives_a_sim_restart_and_still_fires(cap, tmp_path):
    """The stop lives in the state file: after a restart it is still open (same id and client
    id), and a push through it closes the position the first sim opened."""
    state = str(tmp_path / "sim-account.json")

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2, state_file=state) as (server, port):
            await advance(server, clock, 1000)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "60000.00"})
            await open_long(port, clock)
            _, placed = await signed(port, "POST", "/fapi/v1/algoOrder", {
                "algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
                "triggerPrice": "59000.00", "closePosition": "true", "workingType": "MARK_PRICE",
                "clientAlgoId": "ae-sl-keep"}, clock.now)
        async with running(cap, clock=clock, symbols=2, state_file=state) as (server, port):
            await advance(server, clock, 1000)
            _, still = await signed(port, "GET", "/fapi/v1/openAlgoOrders", {}, clock.now)
            await post(port, "/_sim/price", {"symbol": "BTCUSDT", "price": "58900.00"})
            _, after = await signed(port, "GET", "/fapi/v1/algoOrder", {"clientAlgoId": "ae-sl-keep"}, clock.now)
            _, risk = await signed(port, "GET", "/fapi/v3/positionRisk", {}, clock.now)
            _, account = await get(port, "/_sim/account")
        return placed, still, after, risk, account

    placed, still, after, risk, account = run(main())
    assert [(a["algoId"], a["clientAlgoId"], a["algoStatus"]) for a in still] == [
        (placed["algoId"], "ae-sl-keep", "NEW")]
    assert (after["algoStatus"], after["actualType"], after["actualPrice"]) == ("FINISHED", "MARKET", "58900.00000")
    assert risk == []
    assert account["wallet"] == "9988.40550000"
