"""The sim's trading desk: Binance's signed endpoints over the pure ``trading`` core (shell).

The desk owns the one current ``Account`` value and replaces it with what ``trading``
returns; it reads the market (book ticker, last trade) to quote and mark, checks every
request's signature (``signing``), keeps the state file current, and applies the trading
faults. The server mounts its routes and calls ``match`` after every market step.

Routes (all SIGNED, in Binance USD-M's shapes: ``rest_params``, ``private_rest``)
---------------------------------------------------------------------------------
``POST/GET/PUT/DELETE /fapi/v1/order`` (PUT: modify a LIMIT order), ``POST /fapi/v1/order/test``
(checked exactly as a new order, nothing placed), ``GET /fapi/v1/openOrder``, ``GET /fapi/v1/openOrders``,
``GET /fapi/v1/allOrders``, ``DELETE /fapi/v1/allOpenOrders``, ``GET /fapi/v1/userTrades``,
``GET /fapi/v2|v3/positionRisk``, ``GET /fapi/v2|v3/balance``, ``GET /fapi/v2|v3/account``,
``POST /fapi/v1/leverage``, ``POST /fapi/v1/marginType``, ``GET/POST /fapi/v1/positionSide/dual``,
``GET /fapi/v1/commissionRate``, ``GET /fapi/v1/leverageBracket``, ``GET /fapi/v1/income``; the Algo Service's
``POST/GET/DELETE /fapi/v1/algoOrder``, ``GET /fapi/v1/openAlgoOrders``,
``GET /fapi/v1/allAlgoOrders`` and ``DELETE /fapi/v1/algoOpenOrders`` (``algo``). The
WebSocket API's signed methods run the same builders (``ws_api_builders``, ``execute``).

After every market step (``match``) and every ``POST /_sim/price`` (``on_price``) the desk
fills the resting orders the market crossed and then fires the algo orders whose trigger
it met, symbol by symbol in name order; after any change it settles the algo orders
(``algo.settle``: FINISHED once their order is done, closePosition ones EXPIRED once there
is no position left to close).

Public but read from the account: ``GET /fapi/v1/fundingRate`` (the funding series).

Funding (``funding``): the pump calls ``check_funding`` every step; at each 8-hourly funding
time it settles every open position at the marks of that moment, books the income rows,
and pushes one ``ACCOUNT_UPDATE`` (``m`` FUNDING_FEE) per payment. ``settle_funding_now``
does the same off the grid for the test control ``POST /_sim/funding``.

Test records (not Binance): ``GET /_sim/trades``, ``/_sim/orders``, ``/_sim/account``. The
server's ``POST /_sim/price`` calls ``on_price`` once it moved a symbol's market.

Time: the desk's clock is the sim clock minus ``skew_ms`` (the ``clock_skew`` fault); it
stamps orders and fills, judges request timestamps and answers ``/fapi/v1/time``.

Persistence: after every change the account is written to the state file (if configured)
before the request is answered; fills made by ``match`` in the pump are written by a
background task. Writes never overlap, and a write that finds a newer state already
saved is skipped. The market-data path never writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping

import orjson
import structlog
from aiohttp import web

from services.exchange_sim import (algo, funding, private_rest as pr, rest_params as rp, render, signing, state_file,
                                   trading, user_events)
from services.exchange_sim.account import Account, Income, Quote, SymbolRules, new_account
from services.exchange_sim.market import Market, SymState
from services.exchange_sim.rest import RestError
from services.exchange_sim.user_stream import UserStream

log = structlog.get_logger(__name__)

JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Build = Callable[[dict[str, str], int], Any]
SUCCESS = {"code": 200, "msg": "success"}


def quote_of(st: SymState) -> Quote | None:
    """The symbol's market as decimals: book ticker and last trade (None before a book)."""
    bk = st.book
    if bk is None:
        return None
    pd, qd = st.spec.price_decimals, st.spec.qty_decimals
    last = Decimal(st.last_price).scaleb(-pd) if st.last_price is not None else None
    return Quote(bid=Decimal(bk.b).scaleb(-pd), bid_qty=Decimal(bk.bq).scaleb(-qd),
                 ask=Decimal(bk.a).scaleb(-pd), ask_qty=Decimal(bk.aq).scaleb(-qd),
                 last=last, last_trade_id=st.last_trade_id)


class StateWriter:
    """Saves account versions to the state file one at a time, newest first."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.saved_version = -1
        self.saves = 0
        self._latest: Account | None = None
        self._lock = asyncio.Lock()

    async def save(self, acc: Account) -> None:
        if self.path is None:
            return
        if self._latest is None or acc.version > self._latest.version:
            self._latest = acc
        async with self._lock:
            snap = self._latest
            if snap is None or self.saved_version >= acc.version:
                return  # a newer state was written meanwhile
            await asyncio.to_thread(state_file.save, self.path, snap)
            self.saved_version = snap.version
            self.saves += 1


class Desk:
    def __init__(self, *, infos: list[dict[str, Any]], by_name: Mapping[str, int], api_key: str,
                 api_secret: str, wallet: Decimal, state_path: Path | None,
                 clock_ms: Callable[[], int], headers: Callable[[int], dict[str, str]]) -> None:
        self.rules = {i["symbol"]: SymbolRules.from_info(i) for i in infos}
        self.by_name = by_name
        self.api_key = api_key
        self.api_secret = api_secret
        self.clock_ms = clock_ms
        self.headers = headers
        self.writer = StateWriter(state_path)
        loaded = state_file.load(state_path) if state_path is not None else None
        if loaded is not None:
            unknown = ({p for p, v in loaded.positions.items() if v.qty} | set(loaded.open_ids)
                       | set(loaded.open_algo_ids)) - set(self.rules)
            if unknown:
                raise state_file.StateFileError(
                    f"{state_path}: positions or open orders in symbols this sim does not serve: {sorted(unknown)}")
            self.writer.saved_version = loaded.version
            log.info("sim.account_loaded", path=str(state_path), version=loaded.version,
                     open_orders=sum(len(v) for v in loaded.open_ids.values()),
                     open_algo_orders=sum(len(v) for v in loaded.open_algo_ids.values()), wallet=str(loaded.wallet))
        self.account: Account = loaded if loaded is not None else new_account(wallet)
        self.market: Market | None = None
        self.user: UserStream | None = None  # the server's user data stream, if any
        self.skew_ms = 0  # clock_skew fault: the desk's clock runs this far behind the sim's
        self.order_delays: list[float] = []  # order_timeout fault: answer delays still armed
        self.rejected = 0  # signed requests refused (signature, key, timestamp)
        self._seen: dict[str, tuple[int, int, int]] = {}  # symbol -> (book id, trade id, push) matched
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ market views
    def now_ms(self) -> int:
        return self.clock_ms() - self.skew_ms

    def _state(self, symbol: str) -> SymState:
        assert self.market is not None, "server not started"
        return self.market.states[self.by_name[symbol]]

    def quote(self, symbol: str) -> Quote | None:
        return quote_of(self._state(symbol))

    def marks(self, acc: Account | None = None) -> dict[str, Decimal]:
        """Marks of the symbols the account (default: the current one) holds or has orders in."""
        acc = self.account if acc is None else acc
        return self._marks_of({s for s, p in acc.positions.items() if p.qty} | set(acc.open_ids))

    def all_marks(self) -> dict[str, Decimal]:
        """The mark of every symbol the sim serves that has a price yet."""
        return self._marks_of(self.rules)

    def _marks_of(self, symbols: Iterable[str]) -> dict[str, Decimal]:
        """symbol -> its mark: the book's mid, else the last trade; a symbol without either is left out."""
        out: dict[str, Decimal] = {}
        for s in symbols:
            st = self._state(s)
            if st.book is not None:
                out[s] = Decimal(st.book.b + st.book.a).scaleb(-st.spec.price_decimals) / 2
            elif st.last_price is not None:
                out[s] = Decimal(st.last_price).scaleb(-st.spec.price_decimals)
        return out

    # ------------------------------------------------------------------ funding
    def check_funding(self) -> None:
        """Settle the latest 8-hourly funding time once it has come (cheap when it has not).
        A fresh account (``funding_ms`` 0) starts at the current grid time without paying."""
        now = self.now_ms()
        due = funding.last_funding_ms(now)
        acc = self.account
        if due <= acc.funding_ms:
            return
        if acc.funding_ms == 0:
            # bookkeeping, not a change of the account: no new version and no save of its own
            # (a fresh account reads version 0 until it trades; the next saved change carries it)
            self.account = dataclasses.replace(acc, funding_ms=due)
            return
        self._settle(list(self.rules), due, now, grid=True)

    def settle_funding_now(self, symbol: str | None) -> list[Income]:
        """The test control: funding of ``symbol`` (default: every symbol) settled now."""
        now = self.now_ms()
        return self._settle([symbol] if symbol is not None else list(self.rules), now, now, grid=False)

    def _settle(self, symbols: list[str], time_ms: int, now: int, *, grid: bool) -> list[Income]:
        before = self.account
        after, paid = funding.settle(before, symbols, self.all_marks(), time_ms, now, grid=grid)
        if after is before:
            return []
        self.account = after
        for i in paid:
            log.info("sim.funding_settled", symbol=i.symbol, income=str(i.income), tran_id=i.tran_id,
                     time_ms=i.time_ms)
        user = self.user
        if paid and user is not None and user.listening():
            wallet = before.wallet
            events = []
            for i in paid:
                wallet += i.income
                events.append(user_events.funding_update(wallet, i.income, now))
            user.publish(events)
        self._spawn(self.writer.save(self.account))
        return paid

    # ------------------------------------------------------------------ the pump's hook
    def match(self) -> None:
        """Fill resting orders the market crossed, then fire the algo orders it triggered:
        O(resting + algo orders), and only symbols whose book, last trade or pushed price
        changed since the last look are looked at."""
        acc = self.account
        if not acc.open_ids and not acc.open_algo_ids:
            return
        for symbol in sorted(set(acc.open_ids) | set(acc.open_algo_ids)):
            st = self._state(symbol)
            if st.book is None:
                continue
            key = (st.book.u, st.last_trade_id, st.price_seq)
            if self._seen.get(symbol) == key:
                continue
            self._seen[symbol] = key
            quote = quote_of(st)
            assert quote is not None
            now = self.now_ms()
            rules = self.rules[symbol]
            before = self.account
            after = trading.match_resting(before, rules, quote, now)
            if after is not before:
                after = algo.settle(after, symbol, now)
                log.info("sim.resting_filled", symbol=symbol, fills=after.fills_total - before.fills_total)
            fired = algo.evaluate(after, rules, quote, self.marks(after), now)
            for aid in after.open_algo_ids.get(symbol, ()) if fired is not after else ():
                a = fired.algos.get(aid)
                if a is not None and a.status != after.algos[aid].status:
                    log.info("sim.algo_updated", symbol=symbol, algo_id=aid, client_algo_id=a.client_algo_id,
                             type=a.type, status=a.status, order_id=a.actual_order_id, reason=a.reason)
            if fired is not before:
                self._changed(before, fired, now)
        if self.account is not acc:
            self._spawn(self.writer.save(self.account))

    def _changed(self, before: Account, after: Account, now: int) -> None:
        """Adopt ``after`` as the account and push the transition's events to the user data
        stream (computed only while a connection listens: Binance replays nothing either)."""
        self.account = after
        user = self.user
        if user is not None and user.listening():
            events = user_events.diff(before, after, self.rules, self.marks(after), now)
            if events:
                user.publish(events)

    def on_price(self, symbol: str) -> None:
        """After ``POST /_sim/price`` moved ``symbol``: what the new price crosses happens now."""
        self.match()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for background saves (the server's stop)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.writer.save(self.account)

    # ------------------------------------------------------------------ endpoints
    def _place(self, p: dict[str, str], now: int) -> Any:
        req, resp_type = rp.order_request(p, self.rules)
        placed = trading.place(self.account, req, self.rules[req.symbol], self.quote(req.symbol),
                               self.marks(), now)
        self.account = placed.account
        o = placed.order
        log.info("sim.order_placed", symbol=o.symbol, order_id=o.order_id, client_id=o.client_id,
                 side=o.side, type=o.type, qty=str(o.orig_qty), status=o.status, executed=str(o.executed_qty))
        return pr.order_body(placed.order if resp_type == "RESULT" else placed.ack, self.rules[req.symbol])

    def _test_order(self, p: dict[str, str], now: int) -> Any:
        """Every check of a new order (the trading core's included), the account untouched."""
        req, _ = rp.order_request(p, self.rules)
        trading.place(self.account, req, self.rules[req.symbol], self.quote(req.symbol), self.marks(), now)
        return pr.test_order_body(req, self.rules[req.symbol])

    def _modify(self, p: dict[str, str], now: int) -> Any:
        symbol, oid, cid, side, qty, price = rp.modify_request(p, self.rules)
        self.account, o = trading.modify(self.account, symbol, oid, cid, side, qty, price, self.rules[symbol],
                                         self.quote(symbol), self.marks(), now)
        log.info("sim.order_modified", symbol=symbol, order_id=o.order_id, client_id=o.client_id,
                 price=str(o.price), qty=str(o.orig_qty), status=o.status)
        return pr.order_body(o, self.rules[symbol])

    def _get_order(self, p: dict[str, str], now: int, open_only: bool = False) -> Any:
        symbol = rp.symbol_of(p, self.rules)
        assert symbol is not None
        oid, cid = rp.order_ref(p)
        o = trading.find_order(self.account, symbol, oid, cid)
        if o is None or (open_only and not o.is_open):
            raise RestError(*trading.E_NO_ORDER)
        return pr.order_body(o, self.rules[symbol], query=True)

    def _cancel(self, p: dict[str, str], now: int) -> Any:
        symbol = rp.symbol_of(p, self.rules)
        assert symbol is not None
        oid, cid = rp.order_ref(p)
        self.account, o = trading.cancel(self.account, symbol, oid, cid, now)
        log.info("sim.order_canceled", symbol=symbol, order_id=o.order_id, client_id=o.client_id)
        return pr.order_body(o, self.rules[symbol])

    def _cancel_all(self, p: dict[str, str], now: int) -> Any:
        symbol = rp.symbol_of(p, self.rules)
        assert symbol is not None
        self.account = trading.cancel_all(self.account, symbol, now)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _leverage(self, p: dict[str, str], now: int) -> Any:
        symbol = rp.symbol_of(p, self.rules)
        assert symbol is not None
        raw = p.get("leverage", "")
        if not raw.isdigit():
            raise RestError(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
        self.account = trading.set_leverage(self.account, symbol, int(raw), now)
        lev = self.account.leverage_of(symbol)
        return {"leverage": lev, "maxNotionalValue": str(trading.max_notional(lev)), "symbol": symbol}

    def _margin_type(self, p: dict[str, str], now: int) -> Any:
        symbol = rp.symbol_of(p, self.rules)
        assert symbol is not None
        raw = p.get("marginType", "")
        if not raw:
            raise RestError(-1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
        self.account = trading.set_margin_type(self.account, symbol, raw.upper(), now)
        return SUCCESS

    def _dual(self, p: dict[str, str], now: int) -> Any:
        raw = p.get("dualSidePosition", "").lower()
        if raw not in ("true", "false"):
            raise RestError(-1102, "Mandatory parameter 'dualSidePosition' was not sent, was empty/null, or malformed.")
        if raw == "false":
            raise RestError(-4059, "No need to change position side.")
        raise RestError(-1020, "This operation is not supported.")  # the sim is one-way only

    def _place_algo(self, p: dict[str, str], now: int) -> Any:
        req = rp.algo_request(p, self.rules)
        self.account, a = algo.place(self.account, req, self.rules[req.symbol], self.quote(req.symbol), now)
        log.info("sim.algo_placed", symbol=a.symbol, algo_id=a.algo_id, client_algo_id=a.client_algo_id,
                 side=a.side, type=a.type, trigger=str(a.trigger_price), close_position=a.close_position,
                 working_type=a.working_type)
        return pr.algo_body(a, self.rules[a.symbol], None, "new")

    def _get_algo(self, p: dict[str, str], now: int) -> Any:
        aid, cid = rp.algo_ref(p)
        a = algo.find(self.account, aid, cid)
        if a is None or a.symbol not in self.rules:
            raise RestError(*trading.E_NO_ORDER)
        return pr.algo_body(a, self.rules[a.symbol], pr.algo_order_of(self.account, a), "query")

    def _cancel_algo(self, p: dict[str, str], now: int) -> Any:
        aid, cid = rp.algo_ref(p)
        self.account, a = algo.cancel(self.account, aid, cid, now)
        log.info("sim.algo_canceled", symbol=a.symbol, algo_id=a.algo_id, client_algo_id=a.client_algo_id)
        return {"algoId": a.algo_id, "clientAlgoId": a.client_algo_id, "code": "200", "msg": "success"}

    def _cancel_all_algos(self, p: dict[str, str], now: int) -> Any:
        symbol = rp.symbol_of(p, self.rules)
        assert symbol is not None
        self.account = algo.cancel_all(self.account, symbol, now)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _public(self, build: Build) -> Handler:
        """A public endpoint that reads the account's records (no key, no signature)."""
        async def handler(request: web.Request) -> web.Response:
            now = self.now_ms()
            headers = self.headers(now)
            try:
                return self._json(build(dict(request.rel_url.query), now), headers=headers)
            except RestError as exc:
                return self._error(exc, headers)

        return handler

    def _keyed(self, build: Callable[[dict[str, str], int], Any]) -> Handler:
        """A USER_STREAM endpoint: the API key is checked, no signature or timestamp needed."""
        async def handler(request: web.Request) -> web.Response:
            now = self.now_ms()
            headers = self.headers(now)
            key = request.headers.get("X-MBX-APIKEY")
            try:
                if not key:
                    raise RestError(-2014, "API-key format invalid.", 401)
                if key != self.api_key:
                    raise RestError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
                body = await request.text() if request.can_read_body else ""
                params = signing.params_of(signing.SignedRequest(
                    api_key=key, query=request.rel_url.raw_query_string, body=body))
                return self._json(build(params, now), headers=headers)
            except RestError as exc:
                if exc.status == 401:
                    self.rejected += 1
                return self._error(exc, headers)

        return handler

    def _user(self) -> UserStream:
        if self.user is None:
            raise RestError(-1020, "This operation is not supported.")
        return self.user

    def _listen_key_post(self, p: dict[str, str], now: int) -> Any:
        key = self._user().start(now)
        log.info("sim.listen_key_started", expires_ms=self._user().active.expires_ms)  # type: ignore[union-attr]
        return {"listenKey": key}

    def _listen_key_put(self, p: dict[str, str], now: int) -> Any:
        user = self._user()
        user.tick(now)
        sent = p.get("listenKey")
        if sent and (user.active is None or sent != user.active.key):
            raise RestError(-1125, "This listenKey does not exist.")
        return {"listenKey": user.keepalive(now)}

    def _listen_key_delete(self, p: dict[str, str], now: int) -> Any:
        conns = self._user().close()
        log.info("sim.listen_key_closed", connections=len(conns))
        if conns and self.user is not None and self.user.closer is not None:
            self.user.closer(conns)
        return {}

    def add_routes(self, r: web.UrlDispatcher) -> None:
        s = self._signed
        acc = lambda: self.account  # noqa: E731 - read at request time
        r.add_post("/fapi/v1/order", s(self._place, order_post=True))
        r.add_get("/fapi/v1/order", s(self._get_order))
        r.add_put("/fapi/v1/order", s(self._modify, order_post=True))
        r.add_post("/fapi/v1/order/test", s(self._test_order))
        r.add_delete("/fapi/v1/order", s(self._cancel))
        r.add_get("/fapi/v1/openOrder", s(lambda p, now: self._get_order(p, now, open_only=True)))
        r.add_get("/fapi/v1/openOrders", s(lambda p, now: pr.open_orders(acc(), p, self.rules)))
        r.add_get("/fapi/v1/allOrders", s(lambda p, now: pr.all_orders(acc(), p, self.rules, now)))
        r.add_delete("/fapi/v1/allOpenOrders", s(self._cancel_all))
        r.add_get("/fapi/v1/userTrades", s(lambda p, now: pr.user_trades(acc(), p, self.rules)))
        for v in ("v2", "v3"):
            risk = pr.position_risk_v2 if v == "v2" else pr.position_risk_v3
            r.add_get(f"/fapi/{v}/positionRisk", s(lambda p, now, f=risk: f(acc(), p, self.rules, self.marks())))
            r.add_get(f"/fapi/{v}/balance", s(lambda p, now: pr.balance(acc(), self.marks(), now)))
            account = pr.account_v2 if v == "v2" else pr.account_v3
            r.add_get(f"/fapi/{v}/account", s(lambda p, now, f=account: f(acc(), self.rules, self.marks(), now)))
        r.add_post("/fapi/v1/leverage", s(self._leverage))
        r.add_post("/fapi/v1/marginType", s(self._margin_type))
        r.add_get("/fapi/v1/positionSide/dual", s(lambda p, now: {"dualSidePosition": False}))
        r.add_post("/fapi/v1/positionSide/dual", s(self._dual))
        r.add_get("/fapi/v1/commissionRate", s(lambda p, now: pr.commission_rate(p, self.rules)))
        r.add_get("/fapi/v1/leverageBracket", s(
            lambda p, now: pr.leverage_bracket(list(self.rules), p, self.rules)))
        r.add_post("/fapi/v1/algoOrder", s(self._place_algo))
        r.add_get("/fapi/v1/algoOrder", s(self._get_algo))
        r.add_delete("/fapi/v1/algoOrder", s(self._cancel_algo))
        r.add_get("/fapi/v1/openAlgoOrders", s(lambda p, now: pr.open_algo_orders(acc(), p, self.rules)))
        r.add_get("/fapi/v1/allAlgoOrders", s(lambda p, now: pr.all_algo_orders(acc(), p, self.rules)))
        r.add_delete("/fapi/v1/algoOpenOrders", s(self._cancel_all_algos))
        r.add_get("/fapi/v1/income", s(lambda p, now: pr.income(acc(), p, self.rules, now)))
        r.add_get("/fapi/v1/fundingRate", self._public(lambda p, now: pr.funding_rate(acc(), p, self.rules)))
        r.add_post("/fapi/v1/listenKey", self._keyed(self._listen_key_post))
        r.add_put("/fapi/v1/listenKey", self._keyed(self._listen_key_put))
        r.add_delete("/fapi/v1/listenKey", self._keyed(self._listen_key_delete))
        # records of symbols this sim no longer serves (a restart with fewer) are left out
        r.add_get("/_sim/trades", self._records(lambda: [
            pr.sim_trade(f, self.rules[f.symbol]) for f in self.account.fills if f.symbol in self.rules]))
        r.add_get("/_sim/orders", self._records(lambda: [
            pr.order_body(o, self.rules[o.symbol], query=True) for o in self.account.orders.values()
            if o.symbol in self.rules]))
        r.add_get("/_sim/account", self._records(lambda: pr.sim_account(self.account, self.rules, self.marks())))

    # ------------------------------------------------------------------ the WebSocket API (ws_api_server)
    def ws_api_builders(self) -> dict[str, Build]:
        """The signed WebSocket API methods, each on its REST twin's builder (``ws_api``)."""
        acc = lambda: self.account  # noqa: E731 - read at request time
        return {"order.place": self._place, "order.status": self._get_order, "order.cancel": self._cancel,
                "algoOrder.place": self._place_algo, "algoOrder.cancel": self._cancel_algo,
                "account.position": lambda p, now: pr.position_risk_v2(acc(), p, self.rules, self.marks()),
                "v2/account.position": lambda p, now: pr.position_risk_v3(acc(), p, self.rules, self.marks())}

    def verify_ws(self, params: dict[str, str], now: int) -> dict[str, str]:
        """A WebSocket API request's parameters, checked as a REST request is (``RestError``)."""
        try:
            return signing.verify_params(params, api_key=self.api_key, api_secret=self.api_secret, now_ms=now)
        except RestError as exc:
            self.rejected += 1
            log.warning("sim.signed_request_rejected", path="ws-api", code=exc.code, msg=exc.msg)
            raise

    async def execute(self, build: Build, params: dict[str, str], now: int) -> Any:
        """Run a verified request: a change is settled, pushed and saved before the answer, as REST does."""
        before = self.account
        try:
            return build(params, now)
        finally:
            if self.account is not before:
                self._changed(before, algo.settle_all(self.account, now), now)
                await self.writer.save(self.account)

    def _json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(body=orjson.dumps(body), status=status, content_type=JSON, headers=headers)

    def _records(self, build: Callable[[], Any]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return self._json(build())

        return handler

    def _signed(self, build: Build, order_post: bool = False) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            now = self.now_ms()
            headers = self.headers(now)
            body = await request.text() if request.can_read_body else ""
            signed = signing.SignedRequest(api_key=request.headers.get("X-MBX-APIKEY"),
                                           query=request.rel_url.raw_query_string, body=body)
            before = self.account
            try:
                params = signing.verify(signed, api_key=self.api_key, api_secret=self.api_secret, now_ms=now)
            except RestError as exc:
                self.rejected += 1
                log.warning("sim.signed_request_rejected", path=request.path, code=exc.code, msg=exc.msg)
                return self._error(exc, headers)
            delay = self.order_delays.pop(0) if order_post and self.order_delays else 0.0
            try:
                out: Any = build(params, now)
                response = self._json(out, headers=headers)
            except RestError as exc:
                response = self._error(exc, headers)
            if self.account is not before:
                self._changed(before, algo.settle_all(self.account, now), now)
                await self.writer.save(self.account)
            if delay:
                log.info("sim.order_answer_delayed", seconds=delay)
                await asyncio.sleep(delay)
            return response

        return handler

    def _error(self, exc: RestError, headers: dict[str, str]) -> web.Response:
        return web.Response(body=render.rest_error(exc.code, exc.msg), status=exc.status,
                            content_type=JSON, headers=headers)

    def stats(self) -> dict[str, Any]:
        acc = self.account
        return {"orders": len(acc.orders), "open_orders": sum(len(v) for v in acc.open_ids.values()),
                "algo_orders": len(acc.algos), "open_algo_orders": sum(len(v) for v in acc.open_algo_ids.values()),
                "fills": acc.fills_total, "positions": sum(1 for p in acc.positions.values() if p.qty),
                "wallet": pr.usdt(acc.wallet), "account_version": acc.version,
                "state_saves": self.writer.saves, "signed_rejected": self.rejected,
                "clock_skew_ms": self.skew_ms, "pending_order_timeouts": len(self.order_delays)}
