"""Stream names, live control messages and fault requests of the sim, without sockets."""

from __future__ import annotations

import orjson
import pytest

from services.exchange_sim import recorded_market
from services.exchange_sim import faults, stream_control
from services.exchange_sim.hub import (CH_AGG, CH_BOOK, CH_KLINE, CH_MARK, CH_MARK1S, CH_TRADE, MAX_STREAMS,
                                       Hub, StreamError, StreamKey)
from services.exchange_sim.symbols import make_specs


@pytest.fixture(scope="module")
def specs():
    return make_specs(recorded_market.load(), 300)


@pytest.fixture
def hub(specs):
    return Hub(specs)


def ask(hub, conn, msg) -> dict:
    return orjson.loads(stream_control.handle(hub, conn, orjson.dumps(msg)))


class TestStreamNames:
    @pytest.mark.parametrize("name,key", [("btcusdt@trade", (0, CH_TRADE)), ("btcusdt@aggTrade", (0, CH_AGG)),
                                          ("d001usdt@bookTicker", (1, CH_BOOK)), ("d299usdt@markPrice", (299, CH_MARK)),
                                          ("btcusdt@markPrice@1s", (0, CH_MARK1S)),
                                          ("btcusdt@kline_1m", (0, CH_KLINE))])
    def test_served_streams_parse(self, hub, name, key):
        """Every supported channel parses, for the real and the derived symbols, to exactly its
        (symbol index, channel): BTCUSDT is symbol 0, D001USDT 1, D299USDT 299."""
        assert hub.parse(name) == StreamKey(*key)
        assert hub.specs[key[0]].name == name.split("@")[0].upper()

    @pytest.mark.parametrize("name", ["ethusdt@trade", "BTCUSDT@trade", "btcusdt@depth",
                                      "btcusdt@kline_5m", "btcusdt", "d300usdt@trade"])
    def test_unserved_streams_are_rejected(self, hub, name):
        """Unknown symbols (names are lower case, as on Binance) and channels raise StreamError."""
        with pytest.raises(StreamError):
            hub.parse(name)


class TestControl:
    def test_subscribe_replies_result_null_with_the_id(self, hub):
        """SUBSCRIBE answers {"result":null,"id":N} and routes the stream to the connection."""
        conn = hub.connect(True, None)
        assert ask(hub, conn, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}) == \
            {"result": None, "id": 1}
        assert hub.targets[0][CH_TRADE] == ((conn,), ())

    def test_list_subscriptions_returns_names_in_order(self, hub):
        """LIST_SUBSCRIPTIONS returns the streams in subscription order."""
        conn = hub.connect(False, None)
        hub.subscribe(conn, ["btcusdt@bookTicker", "d001usdt@trade"])
        assert ask(hub, conn, {"method": "LIST_SUBSCRIPTIONS", "id": 3}) == \
            {"result": ["btcusdt@bookTicker", "d001usdt@trade"], "id": 3}
        assert hub.targets[0][CH_BOOK] == ((), (conn,))

    def test_a_routed_path_lists_but_never_delivers_the_other_paths_streams(self, hub):
        """As on Binance production: /market accepts btcusdt@bookTicker and stays silent on it."""
        conn = hub.connect(True, None, route="market")
        hub.subscribe(conn, ["btcusdt@trade", "btcusdt@bookTicker"])
        assert conn.streams == ["btcusdt@trade", "btcusdt@bookTicker"]
        assert hub.targets[0][CH_TRADE] == ((conn,), ())
        assert conn not in hub.targets[0][CH_BOOK][0]
        assert hub.unrouted == 1
        hub.disconnect(conn)  # unsubscribing a silent stream is fine
        assert conn not in hub.targets[0][CH_TRADE][0]

    def test_unsubscribe_stops_routing(self, hub):
        """UNSUBSCRIBE answers result null and leaves no target behind."""
        conn = hub.connect(True, None)
        hub.subscribe(conn, ["btcusdt@trade"])
        assert ask(hub, conn, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 312}) == \
            {"result": None, "id": 312}
        assert hub.targets[0][CH_TRADE] == ((), ()) and conn.streams == []

    def test_subscribe_to_an_unknown_stream_is_an_error_and_changes_nothing(self, hub):
        """A bad name in SUBSCRIBE gives error code 2 and subscribes none of the batch."""
        conn = hub.connect(True, None)
        r = ask(hub, conn, {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "xyzusdt@trade"], "id": 4})
        assert r["id"] == 4 and r["error"]["code"] == 2 and "xyzusdt@trade" in r["error"]["msg"]
        assert conn.streams == []

    def test_more_than_200_streams_on_one_connection_are_refused(self, hub, specs):
        """The 201st stream is refused with code 2; the first 200 stay."""
        conn = hub.connect(True, None)
        names = [f"{s.stream}@trade" for s in specs[:201]]
        assert ask(hub, conn, {"method": "SUBSCRIBE", "params": names[:200], "id": 5}) == {"result": None, "id": 5}
        r = ask(hub, conn, {"method": "SUBSCRIBE", "params": names[200:], "id": 6})
        assert r["error"]["code"] == 2 and len(conn.streams) == MAX_STREAMS

    def test_set_property_combined_switches_wrapping(self, hub):
        """SET_PROPERTY combined false moves the connection to the raw targets."""
        conn = hub.connect(True, None)
        hub.subscribe(conn, ["btcusdt@trade"])
        assert ask(hub, conn, {"method": "SET_PROPERTY", "params": ["combined", False], "id": 7}) == \
            {"result": None, "id": 7}
        assert ask(hub, conn, {"method": "GET_PROPERTY", "params": ["combined"], "id": 8}) == \
            {"result": False, "id": 8}
        assert hub.targets[0][CH_TRADE] == ((), (conn,))

    @pytest.mark.parametrize("raw, code", [
        (b"{not json", 3),
        (b'{"method":"SUBSCRIBE","params":[],"id":-1}', 2),
        (b'{"method":"SUBSCRIBE","params":[],"id":"a"}', 2),
        (b'{"method":"FOO","id":1}', 2),
        (b'{"method":"GET_PROPERTY","params":["colour"],"id":1}', 0),
        (b'{"method":"SET_PROPERTY","params":["combined","yes"],"id":1}', 1),
    ])
    def test_malformed_control_messages_get_binance_error_codes(self, hub, raw, code):
        """Bad JSON is code 3, a bad request 2, an unknown property 0, a non-boolean 1."""
        conn = hub.connect(True, None)
        assert orjson.loads(stream_control.handle(hub, conn, raw))["error"]["code"] == code


class TestFaults:
    def test_http_error_fault_is_consumed_per_matching_request(self):
        """A 429 fault for klines answers the next two klines requests only, with -1003."""
        f = faults.parse({"action": "http_error", "status": 429, "count": 2, "path": "/fapi/v1/klines"})
        pending = [faults.http_fault(f, 0)]
        assert faults.take(pending, "/fapi/v1/time") is None
        first = faults.take(pending, "/fapi/v1/klines")
        assert (first.status, first.code, first.path, first.remaining) == (429, -1003, "/fapi/v1/klines", 1)
        assert faults.take(pending, "/fapi/v1/klines") is first and first.remaining == 0
        assert faults.take(pending, "/fapi/v1/klines") is None and pending == []

    @pytest.mark.parametrize("body", [
        [], {"action": "explode"}, {"action": "stall", "seconds": 0},
        {"action": "close", "code": 99}, {"action": "poison", "kind": "nope"},
        {"action": "http_error", "status": 200}, {"action": "stall", "conn": "x", "seconds": 1},
    ])
    def test_malformed_fault_requests_are_rejected(self, body):
        """Unknown actions and out-of-range values raise FaultError."""
        with pytest.raises(faults.FaultError):
            faults.parse(body)

    def test_poison_kind_selects_a_canned_bad_frame(self):
        """kind=truncated injects the truncated trade frame."""
        f = faults.parse({"action": "poison", "conn": 3, "kind": "truncated"})
        assert f.conn == 3 and f.frames == (faults.POISON["truncated"],)
