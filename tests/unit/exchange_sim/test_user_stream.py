"""The user data stream without sockets: listenKey rules (``listen_keys``), the events of an
account transition (``user_events.diff``) with hand-computed values, and the connection
bookkeeping and filtering of ``user_stream.UserStream`` over a fake transport."""

from __future__ import annotations

from decimal import Decimal as D

import orjson
import pytest

from services.exchange_sim import algo, faults, listen_keys, trading, user_events
from services.exchange_sim.account import FIRST_ALGO_ID, new_account
from services.exchange_sim.algo import AlgoRequest
from services.exchange_sim.listen_keys import ListenKey
from services.exchange_sim.rest import RestError
from services.exchange_sim.user_stream import EventsError, UserStream, parse_events
from tests.unit.exchange_sim.test_algo import at
from tests.unit.exchange_sim.test_replay_engine import FakeTransport, frames
from tests.unit.exchange_sim.trading_helpers import BOOK, RULES, T0, go, lim, mkt

RULES_BY = {"BTCUSDT": RULES}
MARKS = {"BTCUSDT": BOOK.mark}
HOUR = 3_600_000


def events(before, after, now=T0, marks=MARKS):
    return user_events.diff(before, after, RULES_BY, marks, now)


def kinds(evs) -> list[tuple[str, str | None]]:
    return [(e["e"], (e.get("o") or {}).get("x") or (e.get("o") or {}).get("X")) for e in evs]


# ---------------------------------------------------------------------------- listenKey
class TestListenKeys:
    def test_post_makes_a_key_then_returns_the_same_one_extended(self):
        k = listen_keys.start(None, "A" * 64, T0, HOUR)
        assert k == ListenKey(key="A" * 64, expires_ms=T0 + HOUR)
        again = listen_keys.start(k, "B" * 64, T0 + 1000, HOUR)
        assert again == ListenKey(key="A" * 64, expires_ms=T0 + 1000 + HOUR)

    def test_post_after_expiry_makes_a_new_key(self):
        k = listen_keys.start(None, "A" * 64, T0, HOUR)
        assert listen_keys.start(k, "B" * 64, T0 + HOUR, HOUR).key == "B" * 64

    def test_keepalive_extends_or_answers_1125(self):
        k = listen_keys.start(None, "A" * 64, T0, HOUR)
        assert listen_keys.keepalive(k, T0 + HOUR - 1, HOUR).expires_ms == T0 + 2 * HOUR - 1
        for active, now in ((None, T0), (k, T0 + HOUR)):
            with pytest.raises(RestError) as e:
                listen_keys.keepalive(active, now, HOUR)
            assert (e.value.code, e.value.msg) == (-1125, "This listenKey does not exist.")

    def test_only_the_active_unexpired_key_is_valid(self):
        k = listen_keys.start(None, "A" * 64, T0, HOUR)
        assert listen_keys.valid(k, "A" * 64, T0 + HOUR - 1)
        assert not listen_keys.valid(k, "A" * 64, T0 + HOUR)
        assert not listen_keys.valid(k, "B" * 64, T0)
        assert listen_keys.expired(k, T0 + HOUR) and not listen_keys.expired(None, T0)


# ---------------------------------------------------------------------------- events
class TestOrderEvents:
    def test_a_walking_market_buy_is_new_then_three_trades_around_one_account_update(self):
        """1.000 vs 0.400 at the touch: 0.4 @ .10, 0.4 @ .20, 0.2 @ .30 (trading's walk)."""
        acc0 = new_account()
        acc1 = go(acc0, mkt("BUY", "1.000", client_id="m1")).account
        evs = events(acc0, acc1)
        assert kinds(evs) == [("ORDER_TRADE_UPDATE", "NEW"), ("TRADE_LITE", None), ("TRADE_LITE", None),
                              ("TRADE_LITE", None), ("ACCOUNT_UPDATE", None), ("ORDER_TRADE_UPDATE", "TRADE"),
                              ("ORDER_TRADE_UPDATE", "TRADE"), ("ORDER_TRADE_UPDATE", "TRADE")]
        assert evs[0] == {"e": "ORDER_TRADE_UPDATE", "E": T0, "T": T0, "o": {
            "s": "BTCUSDT", "c": "m1", "S": "BUY", "o": "MARKET", "f": "GTC", "q": "1.000", "p": "0", "ap": "0",
            "sp": "0", "x": "NEW", "X": "NEW", "i": 4100000001, "l": "0", "z": "0.000", "L": "0", "N": "USDT",
            "n": "0", "T": T0, "t": 0, "b": "0", "a": "0", "m": False, "R": False, "wt": "CONTRACT_PRICE",
            "ot": "MARKET", "ps": "BOTH", "cp": False, "pP": False, "si": 0, "ss": 0, "rp": "0", "V": "NONE",
            "pm": "NONE", "gtd": 0, "er": "0"}}
        trades = [(e["o"]["X"], e["o"]["l"], e["o"]["z"], e["o"]["L"], e["o"]["ap"], e["o"]["n"], e["o"]["t"])
                  for e in evs[5:]]
        assert trades == [
            ("PARTIALLY_FILLED", "0.400", "0.400", "60000.1", "60000.10000", "12.00002000", 272600001),
            ("PARTIALLY_FILLED", "0.400", "0.800", "60000.2", "60000.15000", "12.00004000", 272600002),
            ("FILLED", "0.200", "1.000", "60000.3", "60000.18000", "6.00003000", 272600003)]
        assert evs[4]["a"] == {"m": "ORDER", "B": [{"a": "USDT", "wb": "9969.99991000", "cw": "9969.99991000",
                                                      "bc": "0"}],
                               "P": [{"s": "BTCUSDT", "pa": "1.000", "ep": "60000.18", "bep": "60030.18009",
                                      "cr": "0", "up": "-0.13", "mt": "cross", "iw": "0", "ps": "BOTH",
                                      "ma": "USDT"}]}  # up: 1.000 x (60000.05 - 60000.18)

    def test_resting_limit_then_cancel_moves_no_balance(self):
        acc0 = new_account()
        acc1 = go(acc0, lim("BUY", "0.010", "59000.00", client_id="bid")).account
        assert kinds(events(acc0, acc1)) == [("ORDER_TRADE_UPDATE", "NEW")]
        assert events(acc0, acc1)[0]["o"]["b"] == "590"  # bids notional 0.010 x 59000
        acc2, _ = trading.cancel(acc1, "BTCUSDT", None, "bid", T0 + 5)
        [ev] = events(acc1, acc2, T0 + 5)
        assert (ev["o"]["x"], ev["o"]["X"], ev["o"]["b"], ev["E"]) == ("CANCELED", "CANCELED", "0", T0 + 5)

    def test_reduce_only_market_cut_to_the_position_expires_its_rest_with_reason_9(self):
        acc1 = go(new_account(), mkt("BUY", "0.010")).account
        acc2 = go(acc1, mkt("SELL", "0.050", reduce_only=True, client_id="out")).account
        evs = events(acc1, acc2)
        assert kinds(evs)[-2:] == [("ORDER_TRADE_UPDATE", "TRADE"), ("ORDER_TRADE_UPDATE", "EXPIRED")]
        trade, end = evs[-2]["o"], evs[-1]["o"]
        assert (trade["X"], trade["z"], trade["rp"]) == ("PARTIALLY_FILLED", "0.010", "-0.00100000")
        assert (end["X"], end["z"], end["er"]) == ("EXPIRED", "0.010", "9")

    def test_leverage_change_is_an_account_config_update(self):
        acc1 = trading.set_leverage(new_account(), "BTCUSDT", 25, T0)
        assert events(new_account(), acc1) == [
            {"e": "ACCOUNT_CONFIG_UPDATE", "E": T0, "T": T0, "ac": {"s": "BTCUSDT", "l": 25}}]

    def test_no_change_no_event(self):
        acc = new_account()
        assert events(acc, acc) == []


class TestAlgoEvents:
    def test_a_rejected_trigger_is_triggering_then_rejected_with_the_reason(self):
        acc1, _ = algo.place(new_account(), AlgoRequest(
            symbol="BTCUSDT", side="SELL", type="STOP_MARKET", qty=D("0.010"), reduce_only=True,
            trigger_price=D("59000.00"), working_type="MARK_PRICE", client_algo_id="ro"), RULES, BOOK, T0)
        q = at("58900.00")
        acc2 = algo.evaluate(acc1, RULES, q, {"BTCUSDT": q.mark}, T0 + 1000)
        evs = events(acc1, acc2, T0 + 1000)
        assert [(e["e"], e["o"]["X"]) for e in evs] == [("ALGO_UPDATE", "TRIGGERING"), ("ALGO_UPDATE", "REJECTED")]
        assert (evs[1]["o"]["rm"], evs[1]["o"]["ai"], evs[1]["o"]["tt"]) == ("Reduce Only reject", "", T0 + 1000)
        assert "ap" not in evs[1]["o"]

    def test_trailing_activation_is_pushed_as_new_with_ia_true(self):
        long10 = go(new_account(), mkt("BUY", "0.010")).account
        acc1, _ = algo.place(long10, AlgoRequest(
            symbol="BTCUSDT", side="SELL", type="TRAILING_STOP_MARKET", qty=D("0.010"), reduce_only=True,
            callback_rate=D("0.5"), activate_price=D("60500.00"), working_type="MARK_PRICE"), RULES, BOOK, T0)
        [placed] = events(long10, acc1)
        assert (placed["o"]["X"], placed["o"]["ia"], placed["o"]["q"], placed["o"]["tp"]) == ("NEW", False, "0.01", "0")
        q = at("60500.00")
        acc2 = algo.evaluate(acc1, RULES, q, {"BTCUSDT": q.mark}, T0 + 1000)
        [activated] = events(acc1, acc2, T0 + 1000)
        assert (activated["o"]["aid"], activated["o"]["X"], activated["o"]["ia"]) == (FIRST_ALGO_ID, "NEW", True)

    def test_cancelled_algo_order(self):
        long10 = go(new_account(), mkt("BUY", "0.010")).account
        acc1, _ = algo.place(long10, AlgoRequest(symbol="BTCUSDT", side="SELL", type="STOP_MARKET",
                                                 trigger_price=D("59000.00"), close_position=True), RULES, BOOK, T0)
        acc2, _ = algo.cancel(acc1, FIRST_ALGO_ID, None, T0 + 3)
        [ev] = events(acc1, acc2, T0 + 3)
        assert (ev["o"]["X"], ev["o"]["f"], ev["o"]["q"], ev["o"]["cp"], ev["o"]["R"]) == (
            "CANCELED", "GTE_GTC", "0", True, True)


# ---------------------------------------------------------------------------- the stream's shell
def decoded(tr: FakeTransport) -> list[dict]:
    return [orjson.loads(f) for f in frames(bytes(tr.data))]


class TestUserStream:
    def test_each_connection_gets_its_filtered_events_and_silence_after_expiry(self):
        us = UserStream(validity_ms=5000)
        key = us.start(T0)
        all_tr, algo_tr = FakeTransport(), FakeTransport()
        us.connect(all_tr, key, None)
        us.connect(algo_tr, key, frozenset({"ALGO_UPDATE"}))
        assert us.listening()
        evs = [{"e": "ORDER_TRADE_UPDATE", "E": T0}, {"e": "ALGO_UPDATE", "E": T0}]
        assert us.publish(evs) == 3
        assert [e["e"] for e in decoded(all_tr)] == ["ORDER_TRADE_UPDATE", "ALGO_UPDATE"]
        assert [e["e"] for e in decoded(algo_tr)] == ["ALGO_UPDATE"]
        us.tick(T0 + 4999)
        assert us.active is not None
        us.tick(T0 + 5000)
        assert us.active is None and not us.listening()
        assert decoded(algo_tr)[-1] == {"e": "listenKeyExpired", "E": str(T0 + 5000), "listenKey": key}
        assert us.publish(evs) == 0
        assert len(decoded(all_tr)) == 3 and us.stats() == {"listen_key_active": False, "connections": 2,
                                                             "events_sent": 5, "keys_expired": 1}

    def test_close_hands_back_the_keys_connections(self):
        us = UserStream()
        key = us.start(T0)
        c = us.connect(FakeTransport(), key, None)
        assert us.close() == [c] and us.active is None
        with pytest.raises(RestError):
            us.keepalive(T0)

    @pytest.mark.parametrize("raw, want", [(None, None), ("", None),
                                           ("ORDER_TRADE_UPDATE/ACCOUNT_UPDATE",
                                            frozenset({"ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"}))])
    def test_events_filter_parses(self, raw, want):
        assert parse_events(raw) == want

    def test_unknown_event_names_are_refused(self):
        with pytest.raises(EventsError):
            parse_events("ORDER_TRADE_UPDATE/executionReport")


class TestUserStreamFaults:
    def test_user_stream_faults_parse(self):
        f = faults.parse({"action": "user_stream_close", "abort": True, "code": 1001})
        assert (f.action, f.abort, f.code) == ("user_stream_close", True, 1001)
        assert faults.parse({"action": "listen_key_expire"}).action == "listen_key_expire"
        with pytest.raises(faults.FaultError):
            faults.parse({"action": "user_stream_close", "code": 5})
