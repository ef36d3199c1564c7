"""The user data stream decoder on Binance's documented USD-M example events (exact values)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from common.errors import DecodeError
from venue.binance import user_stream as us

# Binance's documented examples ("User Data Streams" of USD-M futures), comments removed.
ORDER_TRADE_UPDATE = {
    "e": "ORDER_TRADE_UPDATE", "E": 1568879465651, "T": 1568879465650,
    "o": {"s": "BTCUSDT", "c": "TEST", "S": "SELL", "o": "TRAILING_STOP_MARKET", "f": "GTC",
          "q": "0.001", "p": "0", "ap": "0", "sp": "7103.04", "x": "NEW", "X": "NEW", "i": 8886774,
          "l": "0", "z": "0", "L": "0", "N": "USDT", "n": "0", "T": 1568879465650, "t": 0,
          "b": "0", "a": "9.91", "m": False, "R": False, "wt": "CONTRACT_PRICE",
          "ot": "TRAILING_STOP_MARKET", "ps": "LONG", "cp": False, "AP": "7476.89", "cr": "5.0",
          "pP": False, "si": 0, "ss": 0, "rp": "0", "V": "EXPIRE_TAKER", "pm": "OPPONENT",
          "gtd": 0}}
ACCOUNT_UPDATE = {
    "e": "ACCOUNT_UPDATE", "E": 1564745798939, "T": 1564745798938,
    "a": {"m": "ORDER",
          "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.12345678"},
                {"a": "BUSD", "wb": "1.00000000", "cw": "0.00000000", "bc": "-49.12345678"}],
          "P": [{"s": "BTCUSDT", "pa": "0", "ep": "0.00000", "bep": "0", "cr": "200", "up": "0",
                 "mt": "isolated", "iw": "0.00000000", "ps": "BOTH"},
                {"s": "BTCUSDT", "pa": "20", "ep": "6563.66500", "bep": "6563.6", "cr": "0",
                 "up": "2850.21200000", "mt": "isolated", "iw": "13200.70726908", "ps": "LONG"}]}}
ALGO_UPDATE = {
    "e": "ALGO_UPDATE", "T": 1750515742297, "E": 1750515742303,
    "o": {"caid": "Q5xaq5EGKgXXa0fD7fs0Ip", "aid": 2148719, "at": "CONDITIONAL", "o": "TAKE_PROFIT",
          "s": "BNBUSDT", "S": "SELL", "ps": "BOTH", "f": "GTC", "q": "0.01", "X": "CANCELED",
          "ai": "", "ap": "0.00000", "aq": "0.00000", "act": "0", "tp": "750", "p": "750",
          "V": "EXPIRE_MAKER", "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": False, "pP": False,
          "R": False, "tt": 0, "gtd": 0, "rm": "Reduce Only reject"}}


def _raw(obj) -> bytes:
    return orjson.dumps(obj)


class TestOrderTradeUpdate:
    def test_documented_example_decodes_exactly(self):
        """Every field we use comes out with Binance's value, as Decimal or str id."""
        ev = us.decode(_raw(ORDER_TRADE_UPDATE))
        assert ev == us.OrderUpdate(
            event_ms=1568879465651, transaction_ms=1568879465650, symbol="BTCUSDT", client_order_id="TEST",
            exchange_order_id="8886774", side="SELL", order_type="TRAILING_STOP_MARKET",
            original_type="TRAILING_STOP_MARKET", execution_type="NEW", status="NEW", qty=Decimal("0.001"),
            price=Decimal(0), avg_price=Decimal(0), last_qty=Decimal(0), last_price=Decimal(0),
            cum_qty=Decimal(0), fee=Decimal(0), fee_asset="USDT", trade_id="0", maker=False,
            reduce_only=False, close_position=False, realized_pnl=Decimal(0))
        assert not ev.is_trade and not ev.is_liquidation

    def test_trade_with_an_id_beyond_2_53_keeps_every_digit(self):
        """Order ids exceed 2**53: they never pass through a float."""
        e = orjson.loads(orjson.dumps(ORDER_TRADE_UPDATE))
        e["o"].update({"x": "TRADE", "X": "FILLED", "i": 9_007_199_254_740_993, "t": 123456789,
                       "l": "0.001", "L": "7100.5", "z": "0.001", "n": "0.00284020", "rp": "1.5"})
        ev = us.decode(_raw(e))
        assert (ev.exchange_order_id, ev.trade_id) == ("9007199254740993", "123456789")
        assert ev.is_trade and (ev.last_qty, ev.last_price, ev.fee) == (Decimal("0.001"), Decimal("7100.5"),
                                                                         Decimal("0.00284020"))

    def test_liquidation_orders_are_recognised_by_client_id(self):
        e = orjson.loads(orjson.dumps(ORDER_TRADE_UPDATE))
        e["o"]["c"] = "autoclose-1600000000000"
        assert us.decode(_raw(e)).is_liquidation
        e["o"]["c"] = "adl_autoclose"
        assert us.decode(_raw(e)).is_liquidation

    def test_combined_stream_wrapper_is_unwrapped(self):
        ev = us.decode(_raw({"stream": "listenkey", "data": ORDER_TRADE_UPDATE}))
        assert isinstance(ev, us.OrderUpdate) and ev.exchange_order_id == "8886774"


class TestAccountUpdate:
    def test_documented_example_decodes_exactly(self):
        ev = us.decode(_raw(ACCOUNT_UPDATE))
        assert isinstance(ev, us.AccountUpdate)
        assert ev.reason == "ORDER"
        assert ev.balances[0] == us.BalanceChange(asset="USDT", wallet=Decimal("122624.12345678"),
                                                  cross_wallet=Decimal("100.12345678"), change=Decimal("50.12345678"))
        assert ev.balances[1].change == Decimal("-49.12345678")
        assert [p.qty for p in ev.positions] == [Decimal(0), Decimal(20)]
        assert ev.positions[1].entry_price == Decimal("6563.66500")
        assert ev.positions[1].position_side == "LONG"

    def test_funding_fee_update_has_balances_and_no_positions(self):
        """A FUNDING_FEE update on a cross position lists the balance only, as Binance sends it."""
        ev = us.decode(_raw({"e": "ACCOUNT_UPDATE", "E": 1, "T": 1, "a": {
            "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "1000.5", "cw": "1000.5", "bc": "-0.25"}]}}))
        assert (ev.reason, ev.positions, ev.balances[0].change) == ("FUNDING_FEE", (), Decimal("-0.25"))


class TestAlgoUpdate:
    def test_documented_example_decodes_exactly(self):
        ev = us.decode(_raw(ALGO_UPDATE))
        assert ev == us.AlgoUpdate(
            event_ms=1750515742303, transaction_ms=1750515742297, client_algo_id="Q5xaq5EGKgXXa0fD7fs0Ip",
            algo_id="2148719", algo_type="CONDITIONAL", order_type="TAKE_PROFIT", symbol="BNBUSDT",
            side="SELL", status="CANCELED", qty=Decimal("0.01"), trigger_price=Decimal(750),
            price=Decimal(750), working_type="CONTRACT_PRICE", close_position=False, reduce_only=False,
            actual_order_id="", executed_qty=Decimal(0), avg_price=Decimal(0),
            reject_reason="Reduce Only reject")
        assert ev.final

    def test_triggered_algo_order_names_its_matching_engine_order(self):
        e = orjson.loads(orjson.dumps(ALGO_UPDATE))
        e["o"].update({"X": "TRIGGERED", "ai": "283194212"})
        ev = us.decode(_raw(e))
        assert (ev.status, ev.actual_order_id, ev.final) == ("TRIGGERED", "283194212", False)


class TestOtherEvents:
    def test_listen_key_expired_keeps_only_the_key_tail(self):
        """A listenKey is a credential: the decoded event never carries it whole."""
        ev = us.decode(b'{"e":"listenKeyExpired","E":1576653824250,"listenKey":"WsCMN0a4KHUPTQuX6IUnqEZfB1inxmv1qR4kbf1LuEjur5VdbzqvyxqG9TSjVVxv"}')
        assert ev == us.ListenKeyExpired(event_ms=1576653824250, listen_key_tail="VVxv")

    def test_listen_key_expired_with_the_time_as_a_string_as_the_current_page_shows_it(self):
        """The event page's current example: ``"E": "1736996475556"`` (a string); the sim sends it so."""
        ev = us.decode(b'{"e":"listenKeyExpired","E":"1736996475556",'
                       b'"listenKey":"WsCMN0a4KHUPTQuX6IUnqEZfB1inxmv1qR4kbf1LuEjur5VdbzqvyxqG9TSjVVxv"}')
        assert ev == us.ListenKeyExpired(event_ms=1736996475556, listen_key_tail="VVxv")

    @pytest.mark.parametrize("e", ['"-5"', '"1.5"', '"\u00b2"', '"12345678901234567890"', "null", "-1"])
    def test_listen_key_expired_with_a_bad_time_is_refused(self, e):
        """Negative, fractional, non-ASCII digits, too long, null: DecodeError."""
        with pytest.raises(DecodeError):
            us.decode(('{"e":"listenKeyExpired","E":%s}' % e).encode())

    def test_margin_call(self):
        ev = us.decode(_raw({"e": "MARGIN_CALL", "E": 1587727187525, "cw": "3.16812045", "p": [
            {"s": "ETHUSDT", "ps": "LONG", "pa": "1.327", "mt": "CROSSED", "iw": "0", "mp": "187.17127",
             "up": "-1.166074", "mm": "1.614445"}]}))
        assert ev.cross_wallet == Decimal("3.16812045")
        assert ev.positions[0] == us.MarginCallPosition(symbol="ETHUSDT", qty=Decimal("1.327"),
                                                        mark_price=Decimal("187.17127"),
                                                        unrealized_pnl=Decimal("-1.166074"),
                                                        maintenance_margin=Decimal("1.614445"))

    def test_unknown_event_type_is_unrecognised_not_applied(self):
        ev = us.decode(b'{"e":"ACCOUNT_CONFIG_UPDATE","E":1611646737479,"T":1611646737476,"ac":{"s":"BTCUSDT","l":25}}')
        assert ev == us.Unrecognised(event_type="ACCOUNT_CONFIG_UPDATE", event_ms=1611646737479)


class TestMalformed:
    @pytest.mark.parametrize("raw,reason", [
        (b"not json", "not_json"),
        (b"[1,2]", "not_object"),
        (b'{"E":1}', "no_event_type"),
        (b'{"e":"ORDER_TRADE_UPDATE","E":1}', "missing_field"),
        (b'{"e":"ALGO_UPDATE","E":1,"o":[]}', "bad_shape"),
    ])
    def test_rejections_carry_a_reason(self, raw, reason):
        with pytest.raises(DecodeError) as e:
            us.decode(raw)
        assert e.value.reason == reason

    def test_a_float_price_is_refused(self):
        """Binance sends decimal strings; a JSON float would lose exactness, so it is refused."""
        e = orjson.loads(orjson.dumps(ORDER_TRADE_UPDATE))
        e["o"]["q"] = 0.001
        with pytest.raises(DecodeError) as err:
            us.decode(_raw(e))
        assert err.value.reason == "bad_number"

    def test_an_unknown_status_is_refused(self):
        e = orjson.loads(orjson.dumps(ALGO_UPDATE))
        e["o"]["X"] = "PAUSED"
        with pytest.raises(DecodeError) as err:
            us.decode(_raw(e))
        assert err.value.reason == "bad_enum"

    def test_nan_quantity_is_refused(self):
        e = orjson.loads(orjson.dumps(ACCOUNT_UPDATE))
        e["a"]["P"][0]["pa"] = "NaN"
        with pytest.raises(DecodeError):
            us.decode(_raw(e))
