"""Poison pills: every malformed, implausible or foreign frame is refused with its exact reason."""

from __future__ import annotations

import json

import pytest

from common.errors import DecodeError
from common.records import Flag, Kind
from services.feed import codec
from services.feed import firewall as fw

REF = 1_723_161_256_000  # ms; every base frame's event time
RECV = REF * 1_000_000  # the receive time the frames are decoded at
SYMBOLS = {"BTCUSDT": 0, "ETHUSDT": 1}
DROP = object()  # an override value that removes the field

TRADE = {"e": "trade", "E": REF, "T": REF, "s": "BTCUSDT", "t": 5266583935, "p": "61800.30",
         "q": "0.006", "X": "MARKET", "m": False}
AGG = {"e": "aggTrade", "E": REF, "a": 389551486, "s": "BTCUSDT", "p": "58665.00", "q": "0.043",
       "f": 621622993, "l": 621622993, "T": REF, "m": True}
BOOK = {"e": "bookTicker", "u": 5123107839020, "s": "BTCUSDT", "b": "61800.20", "B": "2.507",
        "a": "61800.30", "A": "2.510", "T": REF, "E": REF}
MARK = {"e": "markPriceUpdate", "E": REF, "s": "BTCUSDT", "p": "58940.14924532",
        "P": "58905.14663658", "i": "58857.26693664", "r": "0.00058455", "T": REF + 3_600_000}
DEPTH = {"e": "depthUpdate", "E": REF, "T": REF, "s": "BTCUSDT", "U": 10, "u": 20, "pu": 9,
         "b": [["61800.20", "0.014"], ["61790.00", "0.000"]], "a": [["61800.30", "1.5"]]}
KLINE_K = {"t": REF - 60_000, "T": REF - 1, "s": "BTCUSDT", "i": "1m", "f": 100, "L": 200,
           "o": "100.0", "c": "101.0", "h": "102.0", "l": "99.0", "v": "12.5", "n": 101,
           "x": True, "q": "1262.5", "V": "6.0", "Q": "606.0", "B": "0"}
TICKER = {"e": "24hrTicker", "E": REF, "s": "BTCUSDT", "p": "-213.70", "P": "-0.740",
          "w": "28973.36", "c": "29093.90", "Q": "0.017", "o": "28880.20", "h": "29265.70",
          "l": "28755.00", "v": "173254.241", "q": "5019757418.36", "O": REF - 86_400_000,
          "C": REF, "F": 2299852977, "L": 2301666553, "n": 1813560}
SNAPSHOT = {"lastUpdateId": 5123107852948, "E": REF, "T": REF,
            "bids": [["61800.20", "2.909"]], "asks": [["61800.30", "1.2"]]}


def _with(base: dict, **over) -> dict:
    d = dict(base)
    for k, v in over.items():
        if v is DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def wrap(data: object, stream: str = "btcusdt@x") -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


def kline(**k_over) -> dict:
    return {"e": "kline", "E": REF, "s": "BTCUSDT", "k": _with(KLINE_K, **k_over)}


def decode(frame: object) -> codec.Result:
    return codec.decode(frame, RECV, SYMBOLS)


def assert_refused(frame: object, reason: str) -> None:
    res = decode(frame)
    assert (res.status, res.reason) == (codec.REJECTED, reason)
    assert res.tick is None
    assert codec.decode_generic(frame, RECV, SYMBOLS) == res  # the reference path agrees


class TestBaseFramesAreValid:
    @pytest.mark.parametrize("data", [TRADE, AGG, BOOK, MARK], ids=lambda d: d["e"])
    def test_base_tick_frame_is_accepted(self, data):
        """The unmutated base frames decode to ring ticks (so each poison below isolates one fault)."""
        assert decode(wrap(data)).status == codec.TICK

    @pytest.mark.parametrize("data", [DEPTH, kline(), TICKER, SNAPSHOT],
                             ids=["depth", "kline", "ticker", "snapshot"])
    def test_base_event_frame_is_accepted(self, data):
        """The unmutated non-tick frames are accepted events."""
        assert decode(wrap(data) if "e" in data else json.dumps(data)).status == codec.EVENT


class TestNotAFrame:
    @pytest.mark.parametrize("frame", [None, 0, -1, 1.5, True, [], {}, object()],
                             ids=["None", "zero", "negative", "float", "bool", "list", "dict", "object"])
    def test_non_text_input_is_wrong_type(self, frame):
        """Anything but str/bytes/bytearray/memoryview is wrong_type, never an exception."""
        assert_refused(frame, "wrong_type")

    @pytest.mark.parametrize("frame", ["", b"", "   ", b"\r\n\t "],
                             ids=["str", "bytes", "spaces", "whitespace"])
    def test_empty_or_blank_frame_is_empty_frame(self, frame):
        """Zero bytes or only whitespace is empty_frame."""
        assert_refused(frame, "empty_frame")

    def test_oversized_frame_is_too_large(self):
        """A frame beyond MAX_FRAME_BYTES is refused before parsing."""
        assert_refused(b" " * (fw.MAX_FRAME_BYTES + 1), "too_large")

    @pytest.mark.parametrize("frame", [b"\xff\xfe", b'{"e":"trade","s":"\xc3"}', "{\"s\":\"\ud800\"}"],
                             ids=["garbage", "truncated-sequence", "lone-surrogate"])
    def test_invalid_utf8_is_not_utf8(self, frame):
        """Bytes that are not UTF-8, or text with a lone surrogate, are not_utf8."""
        assert_refused(frame, "not_utf8")

    @pytest.mark.parametrize("frame", [
        b'{"stream":"btcusdt@trade","data":{"e":"trade"',
        b'{"e":"trade","p":NaN}', b'{"e":"trade","p":Infinity}', b'{"e":"trade","p":-Infinity}',
        b'{"a":1}x', b"{'e':'trade'}", b"[" * 5000 + b"]" * 5000, b'{"E":1e999}', "hello", b"trade",
    ], ids=["truncated", "NaN", "Infinity", "-Infinity", "trailing", "single-quotes", "deep", "overflow",
            "plain-text", "bare-word"])
    def test_malformed_json_is_bad_json(self, frame):
        """Truncated JSON, NaN/Infinity literals, trailing bytes, 5000-deep nesting: bad_json."""
        assert_refused(frame, "bad_json")

    @pytest.mark.parametrize("frame", [b"5", b'"trade"', b"null", b"true", b"-0.0"])
    def test_json_scalar_is_wrong_type(self, frame):
        """Valid JSON that is not an object or array is wrong_type."""
        assert_refused(frame, "wrong_type")


class TestShape:
    def test_empty_object_is_unknown_event(self):
        """{} has nothing to recognise."""
        assert_refused(b"{}", "unknown_event")

    def test_empty_array_is_unknown_event(self):
        """[] is no stream's payload."""
        assert_refused(b"[]", "unknown_event")

    def test_wrapper_without_data_is_missing_field(self):
        """A combined-stream wrapper needs both stream and data."""
        assert_refused(b'{"stream":"btcusdt@trade"}', "missing_field")

    def test_wrapper_with_numeric_stream_is_wrong_type(self):
        """stream must be a string."""
        assert_refused(json.dumps({"stream": 5, "data": TRADE}), "wrong_type")

    def test_wrapper_with_scalar_data_is_wrong_type(self):
        """data must be an object or an array."""
        assert_refused(b'{"stream":"btcusdt@trade","data":5}', "wrong_type")

    def test_unknown_event_type_is_unknown_event(self):
        """An e we have never heard of is unknown_event."""
        assert_refused(wrap(_with(TRADE, e="tradez")), "unknown_event")

    def test_known_but_unhandled_event_is_unsupported(self):
        """A real Binance event we do not decode (forceOrder) is unsupported_event."""
        assert_refused(wrap({"e": "forceOrder", "E": REF, "o": {}}), "unsupported_event")

    def test_numeric_event_type_is_wrong_type(self):
        """e must be a string."""
        assert_refused(wrap(_with(TRADE, e=5)), "wrong_type")

    def test_object_without_event_type_is_unknown_event(self):
        """A trade that lost its e is not recognisable."""
        assert_refused(wrap(_with(TRADE, e=DROP)), "unknown_event")


class TestControlReplies:
    def test_subscribe_reply_is_control(self):
        """{"result":null,"id":1} is a control reply: not a tick, not an error."""
        res = decode(b'{"result":null,"id":1}')
        assert (res.status, res.event, res.reason, res.detail) == (codec.CONTROL, "control", None, 1)

    def test_list_subscriptions_reply_is_control(self):
        """A result holding a list is a control reply too."""
        assert decode(b'{"result":["btcusdt@trade"],"id":3}').event == "control"

    def test_error_reply_is_control_error(self):
        """{"error":{...},"id":N} is a control error, reported, not a rejection."""
        res = decode(b'{"error":{"code":2,"msg":"Invalid request"},"id":1}')
        assert (res.status, res.event, res.reason) == (codec.CONTROL, "controlError", None)


class TestTradePoison:
    @pytest.mark.parametrize("price", ["0", "0.00", "-1", "-0", "NaN", "nan", "inf", "-inf",
                                       "Infinity", "1e999", "1e10", "1000000000", "abc", "", "0x10"])
    def test_bad_price_string_is_bad_price(self, price):
        """Zero, negative, NaN, infinite, overflowing, absurd or non-numeric prices: bad_price."""
        assert_refused(wrap(_with(TRADE, p=price)), "bad_price")

    @pytest.mark.parametrize("qty", ["0", "-0.5", "NaN", "inf", "1e20", "x"])
    def test_bad_quantity_string_is_bad_qty(self, qty):
        """Zero, negative, NaN, infinite, absurd or non-numeric quantities: bad_qty."""
        assert_refused(wrap(_with(TRADE, q=qty)), "bad_qty")

    @pytest.mark.parametrize("field,value", [
        ("p", 61800.3), ("q", 1), ("p", None), ("t", "5266583935"), ("t", 5266583935.0),
        ("t", True), ("E", "1723161256000"), ("m", "false"), ("m", 0), ("s", 5), ("X", 1),
        ("p", ["1"]), ("p", {"v": "1"}),
    ])
    def test_field_of_wrong_json_type_is_wrong_type(self, field, value):
        """A number where a string belongs (and every other type swap) is wrong_type."""
        assert_refused(wrap(_with(TRADE, **{field: value})), "wrong_type")

    @pytest.mark.parametrize("field", ["E", "T", "s", "t", "p", "q", "m"])
    def test_missing_required_field_is_missing_field(self, field):
        """Each required trade field, when absent, gives missing_field."""
        assert_refused(wrap(_with(TRADE, **{field: DROP})), "missing_field")

    @pytest.mark.parametrize("t", [-1, 2**63, 10**30])
    def test_id_outside_int64_is_bad_id(self, t):
        """Negative ids and ids beyond int64 (however large) are bad_id."""
        assert_refused(wrap(_with(TRADE, t=t)), "bad_id")

    @pytest.mark.parametrize("field,value", [
        ("E", REF + 86_400_000), ("E", REF - 3_600_000), ("T", REF + 5_001), ("T", REF - 60_001),
        ("E", REF // 1000), ("E", REF * 1000), ("E", 0), ("E", -REF), ("E", 10**30),
    ], ids=["day-ahead", "hour-old", "just-future", "just-past", "seconds", "micros", "zero",
            "negative", "huge"])
    def test_implausible_time_is_bad_timestamp(self, field, value):
        """Times far ahead or behind the receive clock, or in the wrong unit, are bad_timestamp."""
        assert_refused(wrap(_with(TRADE, **{field: value})), "bad_timestamp")

    @pytest.mark.parametrize("symbol", ["DOGEUSDT", "btcusdt", "", "BTCUSDT "])
    def test_symbol_not_in_table_is_unknown_symbol(self, symbol):
        """Unlisted, lower-case, empty or padded symbols are unknown_symbol."""
        assert_refused(wrap(_with(TRADE, s=symbol)), "unknown_symbol")

    def test_spot_trade_with_m_field_is_spot_format(self):
        """Spot trades carry the ignored 'M' field: spot_format."""
        assert_refused(wrap(_with(TRADE, M=True, X=DROP)), "spot_format")

    def test_escaped_non_ascii_digits_in_price_are_bad_price(self):
        """float() would read Arabic-Indic digits (here JSON-escaped in an ASCII frame): not a price."""
        assert_refused(wrap(_with(TRADE, p="\u0661\u0660\u0660")), "bad_price")

    def test_raw_non_ascii_digits_in_quantity_are_bad_qty(self):
        """The same digits as raw UTF-8 (a non-ASCII frame, the generic path) are not a quantity."""
        frame = json.dumps({"stream": "btcusdt@trade", "data": _with(TRADE, q="\u0661")},
                           ensure_ascii=False).encode()
        assert_refused(frame, "bad_qty")


class TestAggTradePoison:
    def test_spot_agg_trade_with_m_field_is_spot_format(self):
        """Spot aggTrade has 'M'; futures aggTrade never does."""
        assert_refused(wrap(_with(AGG, M=True)), "spot_format")

    def test_first_id_above_last_id_is_bad_id(self):
        """f > l cannot be: the aggregate's first trade id follows its last."""
        assert_refused(wrap(_with(AGG, f=10, l=9)), "bad_id")

    def test_price_as_number_is_wrong_type(self):
        """aggTrade p must be a string."""
        assert_refused(wrap(_with(AGG, p=58665.0)), "wrong_type")


class TestBookPoison:
    def test_crossed_book_is_refused(self):
        """bid above ask is crossed_book."""
        assert_refused(wrap(_with(BOOK, b="61800.40")), "crossed_book")

    def test_zero_bid_is_bad_price(self):
        """A zero best bid is bad_price."""
        assert_refused(wrap(_with(BOOK, b="0")), "bad_price")

    def test_negative_ask_size_is_bad_qty(self):
        """A negative best-ask size is bad_qty."""
        assert_refused(wrap(_with(BOOK, A="-1")), "bad_qty")

    def test_numeric_bid_size_is_wrong_type(self):
        """B must be a string."""
        assert_refused(wrap(_with(BOOK, B=2.5)), "wrong_type")

    def test_missing_transaction_time_is_missing_field(self):
        """Futures bookTicker has T; without it the frame is incomplete."""
        assert_refused(wrap(_with(BOOK, T=DROP)), "missing_field")

    def test_raw_spot_book_ticker_is_spot_format(self):
        """Spot bookTicker: no e, no E, no T (u, s, b, B, a, A only)."""
        spot = {"u": 400900217, "s": "BTCUSDT", "b": "25.35190000", "B": "31.21000000",
                "a": "25.36520000", "A": "40.66000000"}
        assert_refused(json.dumps(spot), "spot_format")

    def test_wrapped_spot_book_ticker_is_spot_format(self):
        """The same spot payload inside a combined-stream wrapper is spot_format too."""
        spot = {"u": 400900217, "s": "BTCUSDT", "b": "25.3519", "B": "31.21", "a": "25.3652", "A": "40.66"}
        assert_refused(wrap(spot, "btcusdt@bookTicker"), "spot_format")


class TestMarkPoison:
    def test_zero_mark_price_is_bad_price(self):
        """Mark price p must be a price."""
        assert_refused(wrap(_with(MARK, p="0")), "bad_price")

    def test_nan_index_price_is_bad_price(self):
        """Index price i must be a price."""
        assert_refused(wrap(_with(MARK, i="NaN")), "bad_price")

    @pytest.mark.parametrize("rate", ["2", "-1.5", "nan", "abc"])
    def test_absurd_or_non_numeric_rate_is_bad_rate(self, rate):
        """Funding beyond +-100 % or not a number is bad_rate."""
        assert_refused(wrap(_with(MARK, r=rate)), "bad_rate")

    def test_implausible_next_funding_time_is_bad_timestamp(self):
        """T (next funding time) may be 0 but not seconds-since-epoch."""
        assert_refused(wrap(_with(MARK, T=1_700_000_000)), "bad_timestamp")


class TestKlinePoison:
    def test_high_below_low_is_bad_candle(self):
        """h < l is bad_candle."""
        assert_refused(wrap(kline(h="98.0")), "bad_candle")

    def test_close_above_high_is_bad_candle(self):
        """c > h is bad_candle."""
        assert_refused(wrap(kline(c="103.0")), "bad_candle")

    def test_negative_volume_is_bad_candle(self):
        """v < 0 is bad_candle."""
        assert_refused(wrap(kline(v="-1")), "bad_candle")

    def test_open_time_after_close_time_is_bad_candle(self):
        """k.t >= k.T is bad_candle."""
        assert_refused(wrap(kline(t=REF)), "bad_candle")

    def test_negative_quote_volume_is_bad_qty(self):
        """q (quote volume) below zero is bad_qty."""
        assert_refused(wrap(kline(q="-5")), "bad_qty")

    def test_string_closed_flag_is_wrong_type(self):
        """x must be a JSON bool."""
        assert_refused(wrap(kline(x="true")), "wrong_type")

    def test_missing_closed_flag_is_missing_field(self):
        """A kline without x is incomplete."""
        assert_refused(wrap(kline(x=DROP)), "missing_field")

    def test_kline_body_as_array_is_wrong_type(self):
        """k must be an object."""
        assert_refused(wrap({"e": "kline", "E": REF, "s": "BTCUSDT", "k": [1, 2]}), "wrong_type")


class TestDepthPoison:
    def test_zero_level_price_is_bad_price(self):
        """A level priced 0 is bad_price."""
        assert_refused(wrap(_with(DEPTH, b=[["0", "1"]])), "bad_price")

    def test_negative_level_size_is_bad_qty(self):
        """A level size below 0 is bad_qty ("0" itself deletes the level and is fine)."""
        assert_refused(wrap(_with(DEPTH, a=[["61800.30", "-1"]])), "bad_qty")

    def test_level_with_three_entries_is_wrong_type(self):
        """A level is exactly [price, size]."""
        assert_refused(wrap(_with(DEPTH, b=[["1", "1", "1"]])), "wrong_type")

    def test_level_of_numbers_is_wrong_type(self):
        """Level prices and sizes are strings."""
        assert_refused(wrap(_with(DEPTH, b=[[61800.2, 1.0]])), "wrong_type")

    def test_first_id_above_last_id_is_bad_id(self):
        """U > u is bad_id."""
        assert_refused(wrap(_with(DEPTH, U=30)), "bad_id")

    def test_spot_depth_update_is_spot_format(self):
        """Spot depthUpdate has neither pu nor T."""
        assert_refused(wrap(_with(DEPTH, pu=DROP, T=DROP)), "spot_format")

    def test_spot_rest_snapshot_is_spot_format(self):
        """A REST depth body without E and T is spot's."""
        assert_refused(json.dumps(_with(SNAPSHOT, E=DROP, T=DROP)), "spot_format")

    def test_snapshot_with_bad_level_is_bad_price(self):
        """A REST snapshot's levels pass the same checks as a diff's."""
        assert_refused(json.dumps(_with(SNAPSHOT, bids=[["-1", "1"]])), "bad_price")


class TestTickerAndArrays:
    def test_spot_ticker_is_spot_format(self):
        """Spot 24hrTicker carries best bid b; futures' does not."""
        assert_refused(wrap(_with(TICKER, b="1.0")), "spot_format")

    def test_ticker_with_zero_last_price_is_bad_price(self):
        """Last price c must be a price."""
        assert_refused(wrap(_with(TICKER, c="0")), "bad_price")

    def test_array_with_one_bad_element_is_refused_with_its_reason(self):
        """One bad mark in !markPrice@arr refuses the frame with that element's reason."""
        assert_refused(wrap([MARK, _with(MARK, p="-1")], "!markPrice@arr"), "bad_price")

    def test_array_mixing_marks_and_tickers_is_wrong_type(self):
        """An array holds one event type."""
        assert_refused(wrap([MARK, TICKER], "!markPrice@arr"), "wrong_type")

    def test_array_of_trades_is_unknown_event(self):
        """Only mark and ticker events come as arrays."""
        assert_refused(wrap([TRADE]), "unknown_event")

    def test_array_with_a_number_is_wrong_type(self):
        """Array elements must be objects."""
        assert_refused(wrap([MARK, 5], "!markPrice@arr"), "wrong_type")


class TestTickMapping:
    def test_trade_maker_flag_and_fields(self):
        """m=true sets BUYER_IS_MAKER; id=t, price=p, qty=q, event_ms=T, aux fields 0."""
        res = decode(wrap(_with(TRADE, m=True, T=REF - 5)))
        assert res.tick == codec.Tick(0, int(Kind.TRADE), int(Flag.BUYER_IS_MAKER), RECV, REF - 5,
                                      5266583935, 61800.3, 0.006, 0.0, 0.0)
        assert res.event_ms == REF

    def test_non_market_trade_is_flagged(self):
        """X other than MARKET (insurance fund, ADL) sets NON_MARKET."""
        assert decode(wrap(_with(TRADE, X="INSURANCE_FUND"))).tick.flags == int(Flag.NON_MARKET)

    def test_trade_without_x_is_a_market_trade(self):
        """X is optional; absent means an ordinary trade."""
        assert decode(wrap(_with(TRADE, X=DROP))).tick.flags == 0

    def test_agg_trade_uses_a_as_id_and_t_as_time(self):
        """aggTrade: id=a, event_ms=T."""
        tick = decode(wrap(_with(AGG, T=REF - 7))).tick
        assert (tick.kind, tick.id, tick.event_ms, tick.flags) == (int(Kind.AGG_TRADE), 389551486, REF - 7, 1)

    def test_book_uses_u_as_id_and_e_as_time(self):
        """bookTicker: price=b, qty=B, aux=a, aux_qty=A, id=u, event_ms=E."""
        tick = decode(wrap(_with(BOOK, T=REF - 3))).tick
        assert tick == codec.Tick(0, int(Kind.BOOK), 0, RECV, REF, 5123107839020, 61800.2, 2.507,
                                  61800.3, 2.51)

    def test_locked_book_is_accepted(self):
        """bid == ask is not crossed."""
        assert decode(wrap(_with(BOOK, b="61800.30"))).status == codec.TICK

    def test_delivery_mark_with_empty_rate_has_zero_funding(self):
        """Delivery contracts send r "" and T 0: funding 0, accepted."""
        tick = decode(wrap(_with(MARK, r="", T=0))).tick
        assert (tick.kind, tick.qty, tick.aux) == (int(Kind.MARK), 0.0, 58857.26693664)

    def test_unknown_extra_fields_are_ignored(self):
        """Newer payloads add keys (ap, st, lr on marks): ignored."""
        assert decode(wrap(_with(MARK, ap="1", st=5, lr=[1]))).status == codec.TICK

    def test_raw_unwrapped_payload_decodes_like_a_wrapped_one(self):
        """A raw-stream payload gives the same tick as the combined-stream frame."""
        assert decode(json.dumps(TRADE)).tick == decode(wrap(TRADE)).tick

    def test_bytearray_and_memoryview_frames_are_accepted(self):
        """Buffers other than bytes are decoded like bytes."""
        raw = wrap(BOOK)
        assert decode(bytearray(raw)) == decode(memoryview(raw)) == decode(raw)

    def test_without_receive_time_only_plausibility_is_checked(self):
        """recv_ns None: an event an hour old is fine for the stateless decoder."""
        res = codec.decode(wrap(_with(TRADE, E=REF - 3_600_000, T=REF - 3_600_000)), None, SYMBOLS)
        assert res.status == codec.TICK and res.tick.recv_ns == 0


class TestMisuse:
    def test_non_integer_receive_time_raises_decode_error(self):
        """A receive time that is not an int is the caller's bug: DecodeError, our own type."""
        with pytest.raises(DecodeError):
            codec.decode(wrap(TRADE), "now", SYMBOLS)
        with pytest.raises(DecodeError):
            codec.decode(wrap(TRADE), 1.5e18, SYMBOLS)
