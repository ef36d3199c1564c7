"""Decoded user stream events -> the trader's inputs (exact values) and the order of a batch."""

from __future__ import annotations

from decimal import Decimal

import orjson

from venue import algo_orders as ao
from venue import orders as om
from venue.binance import user_stream as us
from venue.binance import user_updates as uu
from venue.port import ExchangeFill
from tests.unit.venue.binance.test_user_stream_decoder import ACCOUNT_UPDATE, ALGO_UPDATE

T = 1_733_011_200_000


def order_event(x: str, status: str, *, cid: str = "ae-1", tid: int = 0, last: str = "0", price: str = "0",
                 cum: str = "0", fee: str = "0", rp: str = "0", maker: bool = False, oid: int = 9007199254740993,
                 symbol: str = "BTCUSDT", side: str = "BUY") -> us.OrderUpdate:
    return us.decode(orjson.dumps({"e": "ORDER_TRADE_UPDATE", "E": T + 1, "T": T, "o": {
        "s": symbol, "c": cid, "S": side, "o": "MARKET", "ot": "MARKET", "q": "0.010", "p": "0", "ap": "0",
        "x": x, "X": status, "i": oid, "l": last, "z": cum, "L": price, "N": "USDT", "n": fee, "T": T, "t": tid,
        "m": maker, "R": False, "rp": rp}}))


def account(positions: list[tuple[str, str]], reason: str = "ORDER", t: int = T) -> us.AccountUpdate:
    return us.decode(orjson.dumps({"e": "ACCOUNT_UPDATE", "E": t + 1, "T": t, "a": {
        "m": reason, "B": [{"a": "USDT", "wb": "10000", "cw": "10000", "bc": "0"}],
        "P": [{"s": s, "pa": q, "ep": "0", "cr": "0", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH"}
              for s, q in positions]}}))


def algo(status: str, caid: str = "ps-1", ai: str = "") -> us.AlgoUpdate:
    e = orjson.loads(orjson.dumps(ALGO_UPDATE))
    e["o"].update({"caid": caid, "X": status, "ai": ai, "s": "BTCUSDT"})
    return us.decode(orjson.dumps(e))


TRADE = order_event("TRADE", "PARTIALLY_FILLED", tid=9007199254740997, last="0.004", price="61800.10", cum="0.004",
                    fee="0.12360020", rp="-1.5", maker=True)


class TestOneEvent:
    def test_a_trade_becomes_an_exact_fill(self):
        """Quantity l, price L, fee n/N, realized pnl rp, maker m, trade id t, time T."""
        assert uu.fill_of(TRADE) == ExchangeFill(
            trade_id="9007199254740997", client_order_id="ae-1", exchange_order_id="9007199254740993",
            symbol="BTCUSDT", side="BUY", qty=Decimal("0.004"), price=Decimal("61800.10"), fee=Decimal("0.12360020"),
            fee_asset="USDT", liquidity="maker", realized_pnl=Decimal("-1.5"), time_ms=T)

    def test_an_event_without_a_trade_has_no_fill(self):
        """NEW and CANCELED report no trade."""
        assert uu.fill_of(order_event("NEW", "NEW")) is None
        assert uu.fill_of(order_event("CANCELED", "CANCELED")) is None

    def test_the_status_reads_as_a_found_query_answer(self):
        """X, i and the cumulative z, as ``_query_result`` maps a REST answer."""
        st = uu.status_of(TRADE)
        assert st.query_result(T + 5) == om.QueryResult(at_ms=T + 5, found=True, status="PARTIALLY_FILLED",
                                                        exchange_order_id="9007199254740993",
                                                        executed_qty=Decimal("0.004"))

    def test_an_algo_update_becomes_the_algo_machines_update(self):
        """X, aid and ai (the triggered order) as ``ao.Update``."""
        s = uu.algo_status_of(algo("TRIGGERED", ai="4100000002"))
        assert (s.client_algo_id, s.symbol, s.update) == (
            "ps-1", "BTCUSDT", ao.Update(status="TRIGGERED", algo_id="2148719", actual_order_id="4100000002"))

    def test_positions_are_net_per_symbol(self):
        """Binance's documented example lists BTCUSDT twice (BOTH 0, LONG 20): net 20, not flat."""
        assert uu.positions_of(us.decode(orjson.dumps(ACCOUNT_UPDATE))) == {"BTCUSDT": Decimal("20")}

    def test_a_funding_fee_update_lists_no_position(self):
        """FUNDING_FEE changes balances only: no position step, one FundingFee step (the USDT bc)."""
        fee = us.decode(orjson.dumps({"e": "ACCOUNT_UPDATE", "E": T, "T": T, "a": {
            "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "9999.5", "cw": "9999.5", "bc": "-0.5"}], "P": []}}))
        assert uu.positions_of(fee) == {}
        assert uu.plan([fee]) == [uu.FundingFee(transaction_ms=T, balance_change=Decimal("-0.5"))]


class TestBatch:
    def test_an_exits_account_update_waits_for_the_trade_behind_it(self):
        """Binance sends the balance change before the trade: the fill and its status come first,
        then the position, so our own exit never looks like a close behind our back."""
        new = order_event("NEW", "NEW", cid="ax-1", side="SELL")
        trade = order_event("TRADE", "FILLED", cid="ax-1", side="SELL", tid=5, last="0.010", price="100", cum="0.010")
        steps = uu.plan([new, account([("BTCUSDT", "0")]), trade])
        assert [type(s) for s in steps] == [uu.OrderStatus, uu.Fill, uu.OrderStatus, uu.Position]
        assert steps[-1] == uu.Position(symbol="BTCUSDT", qty=Decimal(0), transaction_ms=T, reason="ORDER")

    def test_an_algo_update_releases_the_position_held_back(self):
        """A closePosition stop EXPIRES because its position closed: the trader must see flat first."""
        steps = uu.plan([account([("BTCUSDT", "0")]), algo("EXPIRED")])
        assert [type(s) for s in steps] == [uu.Position, uu.AlgoStatus]

    def test_the_last_position_of_a_symbol_wins(self):
        """Two updates in one batch: one step per symbol, the newest quantity."""
        steps = uu.plan([account([("BTCUSDT", "0.010"), ("ETHUSDT", "1")]), account([("BTCUSDT", "0")], t=T + 9)])
        assert [(s.symbol, s.qty, s.transaction_ms) for s in steps] == [
            ("ETHUSDT", Decimal(1), T), ("BTCUSDT", Decimal(0), T + 9)]

    def test_events_that_change_nothing_make_no_step(self):
        """TRADE_LITE, listenKeyExpired, unrecognised events and foreign objects: no step."""
        lite = us.decode(b'{"e":"TRADE_LITE","E":1,"T":1,"s":"BTCUSDT","q":"1","p":"0","m":false,"c":"x","S":"BUY",'
                         b'"L":"100","l":"1","t":3,"i":4}')
        expired = us.decode(b'{"e":"listenKeyExpired","E":1}')
        unknown = us.decode(b'{"e":"STRATEGY_UPDATE","E":1}')
        assert uu.plan([lite, expired, unknown, "garbage", None]) == []

    def test_a_resync_stays_where_it_came_and_releases_positions(self):
        """A Resync keeps its place and the position held back before it goes first."""
        r = uu.Resync(reason="closed", connection=2)
        steps = uu.plan([account([("BTCUSDT", "0")]), r, order_event("NEW", "NEW")])
        assert [type(s) for s in steps] == [uu.Position, uu.Resync, uu.OrderStatus]

    def test_a_margin_call_is_a_warning_with_its_symbols(self):
        """MARGIN_CALL becomes a warning step naming its symbols."""
        mc = us.decode(orjson.dumps({"e": "MARGIN_CALL", "E": T, "cw": "3.16812045", "p": [
            {"s": "ETHUSDT", "ps": "BOTH", "pa": "1.327", "mt": "CROSSED", "iw": "0", "mp": "187.17127",
             "up": "-1.166074", "mm": "1.614445"}]}))
        assert uu.plan([mc]) == [uu.MarginWarning(symbols=("ETHUSDT",), cross_wallet=Decimal("3.16812045"))]


class TestBehind:
    def test_the_stream_is_behind_while_an_entry_fill_has_not_come_through_it(self):
        """The entry's fills 1 and 2 came by REST; the stream delivered only 1: a position it
        reports now is older than the trade."""
        assert uu.behind(frozenset({"1", "2"}), {"1"})
        assert not uu.behind(frozenset({"1", "2"}), {"1", "2", "3"})
        assert not uu.behind(frozenset(), set())  # no entry fills known (an adopted position)
