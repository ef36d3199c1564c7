"""The WebSocket API client (``venue.binance.ws_api``): signing, answers matched by id, errors
through the one table, rate limits into the governor, and a lost request reported as unknown,
never sent twice. The connection is a hand-written fake (``ws_api_fakes``)."""

from __future__ import annotations

import json
import threading

import orjson
import pytest

from common.errors import AmbiguousError, DecodeError, DefinitiveError, TransientError
from services.exchange_sim import signing as sim_signing
from services.exchange_sim import ws_api as sim_ws_api
from tests.conftest import USDM_DATA
from tests.unit.venue.binance.ws_api_fakes import Connector, FakeConn, answer_for
from venue.binance import ws_api as w
from venue.ratelimit import Governor, Priority

DOCS = json.loads((USDM_DATA / "binance_docs_ws_api_examples.json").read_text())["examples"]
KEY, SECRET = "k-test", "s-test"
NOW = 1_800_000_000_000
URL = "ws://127.0.0.1:1/ws-fapi/v1"


def doc_answer(name: str) -> dict:
    e = DOCS[name]
    return e["body"] if "body" in e else e["response"]


class TestSigning:
    def test_binances_documented_hmac_example_signs_to_its_signature(self):
        """The documented request's parameters sign to the documented signature."""
        ex = DOCS["hmac_signing_example"]
        params = {k: v for k, v in ex["request"]["params"].items() if k != "signature"}
        assert w.payload(params) == ex["payload"]
        assert w.sign(params, ex["secret"]) == ex["request"]["params"]["signature"]

    def test_a_built_request_is_accepted_by_the_sims_check(self):
        """Our frame, read by the sim's parser, passes the sim's (Binance's) signature rules."""
        frame = w.signed_request(7, "order.place", {"symbol": "BTCUSDT", "quantity": "0.010", "reduceOnly": "true"},
                                 api_key=KEY, secret=SECRET, timestamp_ms=NOW, recv_window_ms=5_000)
        body = orjson.loads(frame)
        assert (body["id"], body["method"], body["params"]["timestamp"], body["params"]["recvWindow"]) == (
            7, "order.place", NOW, 5_000)
        req = sim_ws_api.parse(frame)
        params = sim_signing.verify_params(req.params, api_key=KEY, api_secret=SECRET, now_ms=NOW + 10)
        assert params == {"symbol": "BTCUSDT", "quantity": "0.010", "reduceOnly": "true", "apiKey": KEY,
                          "timestamp": str(NOW), "recvWindow": "5000"}

    def test_booleans_sign_as_true_and_false(self):
        """A JSON boolean enters the payload as true/false, as the server writes it."""
        assert w.payload({"b": True, "a": False, "c": 5}) == "a=false&b=true&c=5"


class TestDecode:
    @pytest.mark.parametrize("name", ["order.place", "order.status", "order.cancel", "algoOrder.place",
                                      "algoOrder.cancel", "v2/account.position", "session.status",
                                      "general_info.success"])
    def test_documented_answers_decode(self, name):
        """Every documented success answer decodes with its id, status 200, result and limits."""
        body = doc_answer(name)
        a = w.decode(orjson.dumps(body))
        assert (a.id, a.status, a.ok, a.result) == (body["id"], 200, True, body["result"])
        assert len(a.rate_limits) == len(body.get("rateLimits", []))

    def test_the_documented_failure_decodes_to_its_code_and_text(self):
        a = w.decode(orjson.dumps(doc_answer("general_info.failure")))
        assert (a.status, a.code, a.msg, a.ok) == (
            400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.", False)
        assert a.rate_limits[1] == w.RateLimit(kind="ORDERS", interval="SECOND", num=10, limit=300, count=1)

    def test_a_revoked_key_answer_with_a_null_id_decodes(self):
        """The general-info page's revoked-key answer: id null, 401, -2015."""
        a = w.decode(orjson.dumps(doc_answer("general_info.revoked_key")))
        assert (a.id, a.status, a.code) == (None, 401, -2015)

    @pytest.mark.parametrize("raw,reason", [
        (b"nope", "ws_api_json"), (b"[1]", "ws_api_shape"), (b'{"status":200,"result":1}', "ws_api_shape"),
        (b'{"id":true,"status":200,"result":1}', "ws_api_field"), (b'{"id":1,"status":"200","result":1}', "ws_api_field"),
        (b'{"id":1,"status":200}', "ws_api_shape"), (b'{"id":1,"status":400}', "ws_api_shape"),
        (b'{"id":1,"status":400,"error":{"code":"x","msg":""}}', "ws_api_field"),
        (b'{"id":1,"status":200,"result":1,"rateLimits":{}}', "ws_api_field"),
        (b'{"id":1,"status":200,"result":1,"rateLimits":[{"rateLimitType":"ORDERS"}]}', "ws_api_field"),
        (b'{"id":[1],"status":200,"result":1}', "ws_api_field")])
    def test_malformed_answers_are_refused_with_a_reason(self, raw, reason):
        """Only DecodeError, with a named reason."""
        with pytest.raises(DecodeError) as e:
            w.decode(raw)
        assert e.value.reason == reason


class TestErrorsAndLimits:
    def test_rate_limits_become_the_governors_headers(self):
        """New Order's example: both order counts and the weight, by Binance's header names."""
        a = w.decode(orjson.dumps(doc_answer("order.place")))
        assert w.rate_limit_headers(a.rate_limits) == {
            "x-mbx-order-count-10s": "1", "x-mbx-order-count-1m": "1", "x-mbx-used-weight-1m": "1"}
        g = Governor(clock_ms=lambda: NOW)
        g.observe(status=200, headers=w.governor_headers(a, NOW))
        assert (g.state.weight_1m, g.state.orders_10s, g.state.orders_1m) == (1, 1, 1)

    def test_a_ban_answer_backs_the_governor_off_until_the_ban_ends(self):
        """418 'banned until T': nothing may go before T (the same rule as REST's)."""
        a = w.decode(orjson.dumps({"id": 1, "status": 418, "error": {
            "code": -1003, "msg": f"Way too many requests; IP(127.0.0.1) banned until {NOW + 120_000}."}}))
        assert w.retry_after_s(a, NOW) == 120.0
        g = Governor(clock_ms=lambda: NOW)
        g.observe(status=418, headers=w.governor_headers(a, NOW))
        assert g.state.banned_until_ms == NOW + 120_000
        err = w.answer_error(a, mutating=True, context="x", now_ms=NOW)
        assert (type(err), err.reason, err.retry_after_s) == (TransientError, "rate_limit", 120.0)

    def test_retry_after_from_the_error_data(self):
        a = w.decode(orjson.dumps({"id": 1, "status": 429, "error": {
            "code": -1003, "msg": "Too many requests.", "data": {"retryAfter": NOW + 2_500}}}))
        assert w.retry_after_s(a, NOW) == 2.5

    @pytest.mark.parametrize("status,code,mutating,cls,reason", [
        (400, -2019, True, DefinitiveError, "insufficient_margin"), (400, -1021, True, TransientError, "timestamp"),
        (400, -2013, False, DefinitiveError, "unknown_order"), (500, -1000, True, AmbiguousError, "server_error"),
        (500, -1000, False, TransientError, "server_error"), (401, -2015, True, DefinitiveError, "auth"),
        (400, -1102, True, DefinitiveError, "bad_request"), (400, -4116, True, DefinitiveError, "duplicate_client_id")])
    def test_refusals_map_through_the_one_table(self, status, code, mutating, cls, reason):
        a = w.Answer(id=1, status=status, code=code, msg="m")
        err = w.answer_error(a, mutating=mutating, context="ws-api x", now_ms=NOW)
        assert (type(err), err.reason, err.code, err.http_status) == (cls, reason, code, status)


def echo_script(result_of=None):
    """Answer every request at once, with ``result_of(req)`` (default: the params echoed)."""
    def script(conn, req):
        return [answer_for(req, (result_of or (lambda r: r["params"]))(req),
                           limits=[{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                    "limit": 2400, "count": 9}])]
    return script


@pytest.fixture
def make_client():
    made = []

    def make(plan, **cfg):
        conf = w.WsApiConfig(url=URL, timeout_ms=cfg.pop("timeout_ms", 3_000), backoff_initial_s=0.01,
                             backoff_max_s=0.02, **cfg)
        connector = Connector(plan)
        c = w.WsApiClient(conf, api_key=KEY, api_secret=SECRET, governor=Governor(), clock_ms=lambda: NOW,
                          connect=connector)
        made.append(c)
        return c, connector

    yield make
    for c in made:
        c.close()


class TestClient:
    def test_a_call_returns_the_result_of_the_answer_with_its_id(self, make_client):
        """The answer's result, the frame signed, and its rate limits seen by the governor."""
        conn = FakeConn(echo_script())
        c, _ = make_client([conn])
        c.start()
        assert c.wait_connected(5)
        out = c.call("order.status", {"symbol": "BTCUSDT"}, weight=1)
        assert out["symbol"] == "BTCUSDT" and out["apiKey"] == KEY and out["timestamp"] == NOW
        assert [r["method"] for r in conn.sent] == ["order.status"]
        assert c.governor.state.weight_1m == 9

    def test_answers_out_of_order_reach_their_own_callers(self, make_client):
        """Two calls from two threads; the second is answered first: each gets its own result."""
        held: list[dict] = []
        both = threading.Event()

        def script(conn, req):
            held.append(req)
            if len(held) == 2:
                both.set()
                return [answer_for(held[1], {"n": held[1]["params"]["n"]}),
                        answer_for(held[0], {"n": held[0]["params"]["n"]})]
            return None

        conn = FakeConn(script)
        c, _ = make_client([conn])
        c.start()
        assert c.wait_connected(5)
        results: dict[str, dict] = {}
        t = threading.Thread(target=lambda: results.__setitem__("a", c.call("order.status", {"n": "a"})))
        t.start()
        while not held:
            threading.Event().wait(0.01)
        results["b"] = c.call("order.status", {"n": "b"})
        t.join(5)
        assert results == {"a": {"n": "a"}, "b": {"n": "b"}}

    def test_a_refusal_raises_the_mapped_error(self, make_client):
        """-2019 over the socket: DefinitiveError insufficient_margin, code and status kept."""
        conn = FakeConn(lambda cn, req: [answer_for(req, status=400, code=-2019, msg="Margin is insufficient.")])
        c, _ = make_client([conn])
        c.start()
        assert c.wait_connected(5)
        with pytest.raises(DefinitiveError) as e:
            c.call("order.place", {"symbol": "BTCUSDT"}, weight=0, orders=1, mutating=True)
        assert (e.value.reason, e.value.code, e.value.http_status) == ("insufficient_margin", -2019, 400)

    def test_a_connection_lost_mid_request_is_ambiguous_and_nothing_is_sent_again(self, make_client):
        """The frame left, then the connection died: AmbiguousError; exactly one send, and the
        next connection carries nothing from before."""
        first = FakeConn(lambda cn, req: cn.drop())
        second = FakeConn(echo_script())
        c, connector = make_client([first, second])
        c.start()
        assert c.wait_connected(5)
        with pytest.raises(AmbiguousError) as e:
            c.call("order.place", {"newClientOrderId": "ae-1"}, weight=0, orders=1, mutating=True)
        assert e.value.reason == "ws_lost"
        assert connector.wait_calls(2) and c.wait_connected(5)
        assert [r["params"]["newClientOrderId"] for r in first.sent] == ["ae-1"]
        assert second.sent == []
        assert c.counters["lost_in_flight"] == 1

    def test_a_read_lost_mid_request_is_transient(self, make_client):
        """A query whose connection died may simply be asked again: TransientError."""
        c, _ = make_client([FakeConn(lambda cn, req: cn.drop())])
        c.start()
        assert c.wait_connected(5)
        with pytest.raises(TransientError) as e:
            c.call("order.status", {"symbol": "BTCUSDT"})
        assert e.value.reason == "ws_lost"

    def test_no_answer_in_time_is_ambiguous_and_a_late_answer_is_only_counted(self, make_client):
        """Past timeout_ms the outcome is unknown; the answer that comes after finds no caller."""
        late: list[bytes] = []
        conn = FakeConn(lambda cn, req: late.append(answer_for(req, {"late": True})))
        c, _ = make_client([conn], timeout_ms=200)
        c.start()
        assert c.wait_connected(5)
        with pytest.raises(AmbiguousError) as e:
            c.call("order.place", {"x": "1"}, weight=0, orders=1, mutating=True)
        assert e.value.reason == "timeout"
        conn.push(late[0])
        conn.push(answer_for({"id": 999}, {}))
        for _ in range(200):
            if c.counters["unmatched_answers"] == 2:
                break
            threading.Event().wait(0.01)
        assert (c.counters["timeouts"], c.counters["unmatched_answers"], c.counters["answers"]) == (1, 2, 0)

    def test_without_a_connection_nothing_is_sent(self, make_client):
        """No connection: WsUnavailable (a TransientError saying nothing left)."""
        c, connector = make_client([ConnectionRefusedError("refused")] * 50)
        c.start()
        assert connector.wait_calls(1)
        with pytest.raises(w.WsUnavailable) as e:
            c.call("order.place", {}, mutating=True)
        assert isinstance(e.value, TransientError) and e.value.reason == "ws_unavailable"
        assert c.counters["requests"] == 0

    def test_it_reconnects_after_refusals_and_after_a_drop(self, make_client):
        """Refused twice, then up; dropped while idle, then up again on a new connection."""
        a, b = FakeConn(echo_script()), FakeConn(echo_script())
        c, connector = make_client([ConnectionRefusedError("x"), ConnectionRefusedError("y"), a, b])
        c.start()
        assert c.wait_connected(5)
        assert c.call("order.status", {"n": "1"})["n"] == "1"
        a.drop()
        assert connector.wait_calls(4)
        assert c.wait_connected(5)
        assert c.call("order.status", {"n": "2"})["n"] == "2"
        assert ([r["params"]["n"] for r in a.sent], [r["params"]["n"] for r in b.sent]) == (["1"], ["2"])
        assert (c.counters["connect_failures"], c.counters["connects"]) == (2, 2)

    def test_garbage_and_unmatched_frames_are_counted_and_the_connection_goes_on(self, make_client):
        """Bad frames are rejected with a count; later answers still reach their callers."""
        conn = FakeConn(echo_script())
        c, _ = make_client([conn])
        c.start()
        assert c.wait_connected(5)
        for junk in (b"junk", b'{"id":"zz","status":200,"result":1}', b"[]", "{\"id\":1"):
            conn.push(junk)
        assert c.call("order.status", {"n": "ok"})["n"] == "ok"
        assert (c.counters["decode_errors"], c.counters["unmatched_answers"]) == (3, 1)

    def test_the_governor_is_asked_first_with_the_calls_priority(self, make_client):
        """During a ban the call waits for the governor and then gives up with nothing sent."""
        conn = FakeConn(echo_script())
        c, _ = make_client([conn], rate_limit_wait_s=0.05)
        c.start()
        assert c.wait_connected(5)
        c.governor.observe(status=418, headers={"Retry-After": "60"})
        with pytest.raises(TransientError) as e:
            c.call("order.place", {}, weight=0, orders=1, mutating=True, priority=Priority.EXIT)
        assert e.value.reason == "rate_limited"
        assert conn.sent == []

    def test_the_keys_never_show(self, make_client):
        c, _ = make_client([])
        assert KEY not in repr(c) and SECRET not in repr(c)

    def test_config_refuses_a_non_websocket_url(self):
        with pytest.raises(Exception) as e:
            w.WsApiConfig(url="http://127.0.0.1/ws-fapi/v1")
        assert "ws:// or wss://" in str(e.value)

    @pytest.mark.parametrize("mode,testnet,rest,url", [
        ("live", False, "", "wss://ws-fapi.binance.com/ws-fapi/v1"),
        ("live", True, "", "wss://testnet.binancefuture.com/ws-fapi/v1"),
        ("demo", False, "http://127.0.0.1:8080", "ws://127.0.0.1:8080/ws-fapi/v1"),
        ("live", False, "https://example.test", "wss://example.test/ws-fapi/v1")])
    def test_the_url_follows_the_rest_host(self, mode, testnet, rest, url):
        """Binance (or its testnet) by default; otherwise the REST host's own /ws-fapi/v1."""
        assert w.url_for(mode, testnet=testnet, rest_url=rest) == url


def test_a_prepared_frame_is_one_masked_final_text_frame_around_the_signed_request():
    """``masked_text_frame``: FIN + text opcode, the mask bit, the 16-bit length form for a
    request of a few hundred bytes; unmasked, exactly the signed JSON; a fresh mask each time."""
    import struct

    from venue.binance import ws_api

    text = ws_api.signed_request(7, "order.place", {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.012"},
                                 api_key="k" * 64, secret="s" * 64, timestamp_ms=1_765_000_000_000,
                                 recv_window_ms=5_000)
    frames = [ws_api.masked_text_frame(text) for _ in range(2)]
    for f in frames:
        assert f[0] == 0x81 and f[1] == 0x80 | 126 and struct.unpack("!H", f[2:4])[0] == len(text)
        mask, body = f[4:8], f[8:]
        assert bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == text
    assert frames[0][4:8] != frames[1][4:8]
