"""The real ccxt ``binanceusdm`` client trading against the sim on 127.0.0.1.

ccxt's sync client runs in a worker thread (``asyncio.to_thread``) while the sim's pump
runs on the test's event loop; ``point_ccxt_at`` keeps every ccxt URL on loopback. The
sim runs on the wall clock here (ccxt signs with its own clock, synced at load); the
resting-order test uses a frozen clock and signs by hand instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.request
from decimal import Decimal
from urllib.parse import urlencode

import aiohttp
import ccxt
import orjson
import pytest

from services.exchange_sim import recorded_market
from services.exchange_sim import signing
from venue.binance.ccxt_compat import ccxt_urls_for, point_ccxt_at
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from tests.conftest import REPO
from tests.integration.test_exchange_sim_server import Clock, advance, get, post, run, running

pytestmark = pytest.mark.integration

SYM = "BTC/USDT:USDT"
T0_MS = 1_800_000_050_000


@pytest.fixture(scope="module")
def cap():
    return recorded_market.load()


def client(port: int, timeout_ms: int = 10_000, key: str = DEMO_API_KEY) -> ccxt.binanceusdm:
    ex = ccxt.binanceusdm({"apiKey": key, "secret": DEMO_API_SECRET, "timeout": timeout_ms})
    point_ccxt_at(ex, f"http://127.0.0.1:{port}")
    return ex


def sim_get(port: int, path: str):
    """A sim record from the ccxt thread (plain HTTP, loopback)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
        return orjson.loads(r.read())


def sim_post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=orjson.dumps(body), method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310
        return orjson.loads(r.read())


def test_ccxt_urls_point_every_api_at_the_sim():
    """fapi bases keep their path on the sim; anything else is an unserved sim path."""
    urls = ccxt_urls_for({"fapiPrivateV3": "https://fapi.binance.com/fapi/v3",
                          "fapiData": "https://fapi.binance.com/futures/data",
                          "sapi": "https://api.binance.com/sapi/v1"}, "http://127.0.0.1:9/")
    assert urls == {"fapiPrivateV3": "http://127.0.0.1:9/fapi/v3",
                    "fapiData": "http://127.0.0.1:9/futures/data",
                    "sapi": "http://127.0.0.1:9/_unsupported/sapi"}


def test_round_trip_entry_fills_trades_position_exit_and_balance(cap):
    """Market entry by client id -> FILLED with its trades -> position -> reduce-only exit
    closes it -> the wallet moved by exactly the realised PnL minus the fees /_sim/trades lists."""

    def scenario(port: int) -> dict:
        ex = client(port)
        out: dict = {"markets": ex.load_markets()}
        out["leverage"] = ex.set_leverage(10, SYM)
        out["mode"] = ex.fetch_position_mode(SYM)
        entry = ex.create_order(SYM, "market", "buy", 0.01, None, {"newClientOrderId": "aegis-t1:entry/1"})
        out["entry"] = entry
        out["fetched"] = ex.fetch_order(None, SYM, {"origClientOrderId": "aegis-t1:entry/1"})
        out["trades"] = ex.fetch_my_trades(SYM, params={"orderId": entry["id"]})
        out["positions"] = ex.fetch_positions()
        out["exit"] = ex.create_order(SYM, "market", "sell", 0.01, None,
                                      {"newClientOrderId": "aegis-t1:exit/1", "reduceOnly": True})
        out["positions_after"] = ex.fetch_positions()
        out["balance"] = ex.fetch_balance()
        out["sim_trades"] = sim_get(port, "/_sim/trades")
        out["sim_account"] = sim_get(port, "/_sim/account")
        return out

    async def main():
        async with running(cap, symbols=3) as (_, port):
            return await asyncio.to_thread(scenario, port)

    r = run(main())
    assert SYM in r["markets"] and r["markets"][SYM]["linear"] is True
    assert r["leverage"]["leverage"] == 10 and r["mode"]["hedged"] is False
    entry, fetched = r["entry"], r["fetched"]
    assert (entry["status"], entry["clientOrderId"], entry["filled"]) == ("closed", "aegis-t1:entry/1", 0.01)
    assert (fetched["id"], fetched["status"], fetched["info"]["status"]) == (entry["id"], "closed", "FILLED")
    assert (fetched["info"]["executedQty"], fetched["info"]["origQty"]) == ("0.010", "0.010")
    mine = [t for t in r["sim_trades"] if t["clientOrderId"] == "aegis-t1:entry/1"]
    assert [t["info"]["id"] for t in r["trades"]] == [t["id"] for t in mine]
    assert sum(Decimal(t["info"]["qty"]) for t in r["trades"]) == Decimal("0.010")
    assert {(t["side"], t["fee"]["currency"], t["takerOrMaker"]) for t in r["trades"]} == {("buy", "USDT", "taker")}
    [pos] = r["positions"]
    assert (pos["symbol"], pos["side"], pos["contracts"]) == (SYM, "long", 0.01)
    assert pos["entryPrice"] == float(Decimal(fetched["info"]["avgPrice"]))
    assert (r["exit"]["status"], r["exit"]["reduceOnly"]) == ("closed", True)
    assert r["positions_after"] == []
    moved = sum(Decimal(t["realizedPnl"]) - Decimal(t["commission"]) for t in r["sim_trades"])
    assert len(r["sim_trades"]) >= 2 and {t["symbol"] for t in r["sim_trades"]} == {"BTCUSDT"}
    assert Decimal(r["balance"]["info"]["totalWalletBalance"]) == Decimal("10000") + moved
    assert Decimal(r["sim_account"]["wallet"]) == Decimal("10000") + moved
    assert r["sim_account"]["positions"] == []


def test_limit_order_rests_is_listed_and_is_cancelled_by_client_id(cap):
    def scenario(port: int) -> dict:
        ex = client(port)
        ex.load_markets()
        bid = Decimal(str(ex.fetch_order_book(SYM, 5)["bids"][0][0]))
        price = float((bid * Decimal("0.98")).quantize(Decimal("0.1")))  # within PERCENT_PRICE
        placed = ex.create_order(SYM, "limit", "buy", 0.01, price, {"newClientOrderId": "rest-1"})
        listed = ex.fetch_open_orders(SYM)
        canceled = ex.cancel_order(None, SYM, {"origClientOrderId": "rest-1"})
        return {"placed": placed, "listed": listed, "canceled": canceled, "after": ex.fetch_open_orders(SYM),
                "price": price, "sim_orders": sim_get(port, "/_sim/orders")}

    async def main():
        async with running(cap, symbols=3) as (_, port):
            return await asyncio.to_thread(scenario, port)

    r = run(main())
    assert (r["placed"]["status"], r["placed"]["price"], r["placed"]["filled"]) == ("open", r["price"], 0.0)
    assert [o["clientOrderId"] for o in r["listed"]] == ["rest-1"]
    assert (r["canceled"]["status"], r["canceled"]["id"]) == ("canceled", r["placed"]["id"])
    assert r["after"] == []
    assert [(o["clientOrderId"], o["status"]) for o in r["sim_orders"]] == [("rest-1", "CANCELED")]


def test_order_timeout_fault_times_the_client_out_with_the_order_live(cap):
    """The answer comes 2 s late: ccxt (1 s timeout) raises RequestTimeout, yet the order
    was executed and a lookup by client id finds it FILLED."""

    def scenario(port: int) -> dict:
        ex = client(port, timeout_ms=1000)
        ex.load_markets()
        assert sim_post(port, "/_sim/fault", {"action": "order_timeout", "count": 1, "seconds": 2})["ok"]
        try:
            ex.create_order(SYM, "market", "buy", 0.01, None, {"newClientOrderId": "slow-1"})
            raised = None
        except ccxt.NetworkError as exc:
            raised = exc
        return {"raised": raised, "found": ex.fetch_order(None, SYM, {"origClientOrderId": "slow-1"}),
                "stats": sim_get(port, "/_sim/stats")["trading"]}

    async def main():
        async with running(cap, symbols=3) as (_, port):
            return await asyncio.to_thread(scenario, port)

    r = run(main())
    assert isinstance(r["raised"], ccxt.RequestTimeout)
    assert (r["found"]["status"], r["found"]["filled"], r["found"]["clientOrderId"]) == ("closed", 0.01, "slow-1")
    assert (r["stats"]["orders"], r["stats"]["pending_order_timeouts"]) == (1, 0)


def test_injected_margin_error_is_insufficient_funds_and_creates_nothing(cap):
    def scenario(port: int) -> dict:
        ex = client(port)
        ex.load_markets()
        sim_post(port, "/_sim/fault", {"action": "http_error", "status": 400, "code": -2019,
                                       "msg": "Margin is insufficient.", "path": "/fapi/v1/order",
                                       "method": "POST"})
        with pytest.raises(ccxt.InsufficientFunds) as e:
            ex.create_order(SYM, "market", "buy", 0.01, None, {"newClientOrderId": "m-1"})
        return {"error": str(e.value), "orders": sim_get(port, "/_sim/orders")}

    async def main():
        async with running(cap, symbols=3) as (_, port):
            return await asyncio.to_thread(scenario, port)

    r = run(main())
    assert r["error"] == 'binanceusdm {"code":-2019,"msg":"Margin is insufficient."}'
    assert r["orders"] == []


def test_real_margin_refusal_and_unknown_orders_map_to_ccxt_errors(cap):
    def scenario(port: int) -> None:
        ex = client(port)
        ex.load_markets()
        with pytest.raises(ccxt.InsufficientFunds):
            ex.create_order(SYM, "market", "buy", 10, None)  # ~600k notional on 10k at 20x
        with pytest.raises(ccxt.OrderNotFound):
            ex.fetch_order(None, SYM, {"origClientOrderId": "never"})
        with pytest.raises(ccxt.OrderNotFound):
            ex.cancel_order(None, SYM, {"origClientOrderId": "never"})
        with pytest.raises(ccxt.InvalidOrder):
            ex.create_order(SYM, "market", "sell", 0.01, None, {"reduceOnly": True})  # -2022
        with pytest.raises(ccxt.AuthenticationError):
            client(port, key="wrong-key").fetch_balance()

    async def main():
        async with running(cap, symbols=3) as (_, port):
            await asyncio.to_thread(scenario, port)

    run(main())


def test_clock_skew_makes_an_unsynced_client_ahead_until_it_resyncs(cap):
    def scenario(port: int) -> dict:
        ex = client(port)
        ex.load_markets()  # syncs ccxt to the sim's clock
        sim_post(port, "/_sim/fault", {"action": "clock_skew", "ms": 3000})
        with pytest.raises(ccxt.InvalidNonce) as e:
            ex.fetch_balance()
        ex.load_time_difference()
        return {"error": str(e.value), "balance": ex.fetch_balance()["info"]["totalWalletBalance"]}

    async def main():
        async with running(cap, symbols=3) as (_, port):
            return await asyncio.to_thread(scenario, port)

    r = run(main())
    assert r["error"] == ('binanceusdm {"code":-1021,"msg":"Timestamp for this request was 1000ms ahead '
                          'of the server\'s time."}')
    assert r["balance"] == "10000.00000000"


# ---------------------------------------------------------------------------- signed by hand
async def signed(port: int, method: str, path: str, params: dict, now_ms: int) -> tuple[int, object]:
    q = urlencode({**params, "timestamp": now_ms})
    url = f"http://127.0.0.1:{port}{path}?{q}&signature={signing.sign(q, DEMO_API_SECRET)}"
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, headers={"X-MBX-APIKEY": DEMO_API_KEY}) as r:
            return r.status, orjson.loads(await r.read())


def test_resting_post_only_bid_fills_as_maker_when_the_replayed_market_comes_down(cap):
    """Frozen clock: a GTX buy at the bid rests; the pump's matching fills it at its price
    as maker (fee 0.02 %) once the replay's ask reaches it, and the wallet shows the fee."""

    async def main():
        clock = Clock(T0_MS)
        async with running(cap, clock=clock, symbols=2) as (server, port):
            await advance(server, clock, 1000)
            _, book = await get(port, "/fapi/v1/ticker/bookTicker?symbol=BTCUSDT")
            st, placed = await signed(port, "POST", "/fapi/v1/order", {
                "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTX",
                "quantity": "0.010", "price": book["bidPrice"], "newClientOrderId": "maker-1",
                "newOrderRespType": "RESULT"}, clock.now)
            for _ in range(600):  # it comes 86 s into this replay: deterministic, with slack
                _, orders = await get(port, "/_sim/orders")
                if orders[0]["status"] == "FILLED":
                    break
                await advance(server, clock, 500)
            _, trades = await get(port, "/_sim/trades")
            _, account = await get(port, "/_sim/account")
            return book, st, placed, orders, trades, account

    book, st, placed, orders, trades, account = run(main())
    assert (st, placed["status"], placed["price"]) == (200, "NEW", book["bidPrice"])
    assert orders[0]["status"] == "FILLED"
    [t] = trades
    price = Decimal(book["bidPrice"])
    fee = (price * Decimal("0.010") * Decimal("0.0002")).quantize(Decimal("0.00000001"))
    assert (t["clientOrderId"], t["price"], t["qty"], t["maker"], Decimal(t["commission"])) == (
        "maker-1", book["bidPrice"], "0.010", True, fee)
    assert Decimal(account["wallet"]) == Decimal("10000") - fee
    assert account["positions"][0]["positionAmt"] == "0.010"


def test_account_survives_a_server_restart_through_the_state_file(cap, tmp_path):
    state = str(tmp_path / "sim-account.json")

    def trade(port: int) -> dict:
        ex = client(port)
        ex.load_markets()
        ex.set_leverage(7, SYM)
        ex.create_order(SYM, "market", "buy", 0.01, None, {"newClientOrderId": "keep-1"})
        ex.create_order(SYM, "limit", "sell", 0.01, 90000.0, {"newClientOrderId": "keep-2", "reduceOnly": True})
        return sim_get(port, "/_sim/account")

    def look(port: int) -> dict:
        ex = client(port)
        ex.load_markets()
        return {"filled": ex.fetch_order(None, SYM, {"origClientOrderId": "keep-1"}),
                "open": ex.fetch_open_orders(SYM), "positions": ex.fetch_positions(),
                "account": sim_get(port, "/_sim/account"),
                "next": ex.create_order(SYM, "market", "buy", 0.01, None, {"newClientOrderId": "keep-3"})}

    async def main():
        async with running(cap, symbols=3, state_file=state) as (_, port):
            before = await asyncio.to_thread(trade, port)
        async with running(cap, symbols=3, state_file=state) as (_, port):
            after = await asyncio.to_thread(look, port)
        return before, after

    before, after = run(main())
    assert after["filled"]["status"] == "closed" and after["filled"]["clientOrderId"] == "keep-1"
    assert [o["clientOrderId"] for o in after["open"]] == ["keep-2"]
    assert after["positions"][0]["contracts"] == 0.01  # v3 positionRisk carries no leverage
    assert after["account"]["wallet"] == before["wallet"]
    assert after["account"]["positions"][0]["leverage"] == before["positions"][0]["leverage"] == 7
    assert int(after["next"]["id"]) == int(after["filled"]["id"]) + 2  # ids continue


def test_sigkilled_sim_process_restarts_with_its_account(procs, tmp_path):
    """python -m services.exchange_sim --state-file: SIGKILL after an order, start again,
    the order and the position are still there."""
    state = tmp_path / "sim-account.json"

    def start() -> tuple[subprocess.Popen, int]:
        p = procs.python("-m", "services.exchange_sim", "--port", "0", "--symbols", "2",
                         "--source", "ticks", "--state-file", str(state), cwd=REPO, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if line.startswith("PORT ") or not line:
                return p, int(line.split()[1])
        raise AssertionError("the sim printed no port")

    p, port = start()
    ex = client(port)
    ex.load_markets()
    ex.create_order(SYM, "market", "buy", 0.01, None, {"newClientOrderId": "kill-1"})
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    p2, port2 = start()
    ex2 = client(port2)
    ex2.load_markets()
    found = ex2.fetch_order(None, SYM, {"origClientOrderId": "kill-1"})
    positions = ex2.fetch_positions()
    os.kill(p2.pid, signal.SIGTERM)
    assert p2.wait(10) == 0
    assert (found["status"], found["filled"]) == ("closed", 0.01)
    assert positions[0]["contracts"] == 0.01


def test_stats_count_the_trading(cap):
    async def main():
        async with running(cap, symbols=2) as (_, port):
            await post(port, "/_sim/fault", {"action": "clock_skew", "ms": -200})
            _, stats = await get(port, "/_sim/stats")
            _, t = await get(port, "/fapi/v1/time")
            return stats["trading"], stats["now_ms"], t["serverTime"]

    trading_stats, now_ms, server_time = run(main())
    assert trading_stats == {"orders": 0, "open_orders": 0, "algo_orders": 0, "open_algo_orders": 0,
                             "fills": 0, "positions": 0,
                             "wallet": "10000.00000000", "account_version": 0, "state_saves": 0,
                             "signed_rejected": 0, "clock_skew_ms": -200, "pending_order_timeouts": 0}
    assert server_time - now_ms >= 200
