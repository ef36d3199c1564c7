"""The sim's WebSocket API rules (``ws_api``, ``signing.verify_params``): the envelope, the
signature check with REST's answers, the rate-limit counts, and answer bodies with the keys
of Binance's documented examples (``binance_docs_ws_api_examples.json``)."""

from __future__ import annotations

import json
from decimal import Decimal as D
from urllib.parse import urlencode

import orjson
import pytest

from services.exchange_sim import algo, signing, ws_api
from services.exchange_sim import private_rest as pr
from services.exchange_sim.account import new_account
from services.exchange_sim.algo import AlgoRequest
from services.exchange_sim.rest import RestError
from tests.conftest import USDM_DATA
from tests.unit.exchange_sim.trading_helpers import BOOK, RULES, T0, go, lim, mkt

DOCS = json.loads((USDM_DATA / "binance_docs_ws_api_examples.json").read_text())["examples"]
KEY, SECRET = "test-key", "test-secret"
NOW = 1_800_000_000_000


def doc(name: str, part: str = "response") -> dict:
    e = DOCS[name]
    return e["body"] if "body" in e else e[part]


def frame(body: object) -> bytes:
    return orjson.dumps(body)


def refusal(data: bytes | str) -> tuple[int, int, str, object]:
    with pytest.raises(ws_api.WsApiError) as e:
        ws_api.parse(data)
    return e.value.status, e.value.code, e.value.msg, e.value.req_id


def signed(params: dict[str, object], secret: str = SECRET) -> dict[str, str]:
    """Params as the parser hands them on (text), with a signature over Binance's payload."""
    text = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in params.items()}
    return {**text, "signature": signing.sign(signing.ws_payload(text), secret)}


def ws_verdict(params: dict[str, str], now: int = NOW) -> tuple[int, str, int]:
    with pytest.raises(RestError) as e:
        signing.verify_params(params, api_key=KEY, api_secret=SECRET, now_ms=now)
    return e.value.code, e.value.msg, e.value.status


def rest_verdict(params: dict[str, object], api_key: str | None, now: int = NOW, sign_with: str = SECRET) -> tuple:
    q = urlencode(params)
    req = signing.SignedRequest(api_key=api_key, query=q + "&signature=" + signing.sign(q, sign_with), body="")
    with pytest.raises(RestError) as e:
        signing.verify(req, api_key=KEY, api_secret=SECRET, now_ms=now)
    return e.value.code, e.value.msg, e.value.status


class TestParse:
    def test_the_documented_request_parses_with_every_value_as_its_text(self):
        """The general-info example: integers in decimal, strings as sent, the id echoed."""
        req = ws_api.parse(frame(doc("general_info.request", "body")))
        assert (req.id, req.method) == ("9ca10e58-7452-467e-9454-f669bb9c764e", "order.place")
        assert (req.params["recvWindow"], req.params["timestamp"], req.params["price"]) == (
            "5000", "1705311512994", "42088.0")
        assert req.return_rate_limits is None

    def test_numbers_with_a_fraction_keep_their_literal_text(self):
        """New Order's documented request sends price 43187.00 and quantity 0.1 as JSON numbers:
        their own text is what was signed, so it is what the sim reads."""
        req = ws_api.parse(json.dumps(doc("order.place", "request")).replace("43187.0", "43187.00"))
        assert (req.params["price"], req.params["quantity"]) == ("43187.00", "0.1")

    def test_booleans_become_true_false_and_nulls_are_not_sent(self):
        """``true`` enters the signed text as "true"; a null parameter counts as not sent."""
        req = ws_api.parse(frame({"id": 5, "method": "session.status",
                                  "params": {"reduceOnly": True, "priceProtect": False, "symbol": None,
                                             "returnRateLimits": False}}))
        assert req.params == {"reduceOnly": "true", "priceProtect": "false", "returnRateLimits": "false"}
        assert (req.id, req.return_rate_limits) == (5, False)

    def test_params_may_be_left_out(self):
        """``params`` is optional (``session.status``)."""
        assert ws_api.parse(b'{"id":null,"method":"session.status"}').params == {}

    @pytest.mark.parametrize("data", [b"not json {", b"[1,2]", b'"order.place"', b"", b"\xff\xfe",
                                      b'{"id":1,"method":"x","params":{"p":NaN}}'])
    def test_a_frame_that_is_not_a_json_object_gets_1135_with_a_null_id(self, data):
        """Unreadable: status 400, -1135, and no id to echo."""
        assert refusal(data) == (400, -1135, "Invalid JSON request", None)

    @pytest.mark.parametrize("rid", [True, -1, 1.5, "", "x" * 37, "has space", "ü", [1], {"a": 1}, 2**63])
    def test_an_id_that_is_not_an_integer_a_short_string_or_null_gets_1135(self, rid):
        """Binance's id rule: an integer, a string matching ^[a-zA-Z0-9-_]{1,36}$, or null."""
        status, code, msg, req_id = refusal(frame({"id": rid, "method": "session.status"}))
        assert (status, code, req_id) == (400, -1135, None)
        assert msg.startswith("Invalid 'id' in JSON request; expected an integer")

    def test_params_that_are_not_an_object_and_a_missing_method_keep_the_id(self):
        """Once the id is readable it is echoed in the refusal."""
        assert refusal(frame({"id": "r1", "method": "order.place", "params": [1]})) == (
            400, -1135, "Invalid 'params' in JSON request; expected an object.", "r1")
        assert refusal(frame({"id": "r2", "params": {}})) == (
            400, -1135, "Invalid 'method' in JSON request; expected a string.", "r2")

    def test_a_parameter_that_is_an_object_or_a_list_gets_1130_naming_it(self):
        """Parameters are scalars; a nested value is invalid data for that parameter."""
        assert refusal(frame({"id": 3, "method": "order.place", "params": {"symbol": {"x": 1}}})) == (
            400, -1130, "Data sent for parameter 'symbol' is not valid.", 3)


class TestSigning:
    def test_binances_documented_hmac_example_verifies(self):
        """The documented payload is built from the example request, and its signature passes
        (now = the example's timestamp + 50 ms, inside its recvWindow of 100)."""
        ex = DOCS["hmac_signing_example"]
        req = ws_api.parse(frame(ex["request"]))
        assert signing.ws_payload(req.params) == ex["payload"]
        params = signing.verify_params(req.params, api_key=req.params["apiKey"], api_secret=ex["secret"],
                                       now_ms=1645423376532 + 50)
        assert "signature" not in params and params["price"] == "52000.00"

    def test_parameter_order_does_not_matter(self):
        """The payload is sorted by name: any order in the JSON object verifies."""
        p = signed({"symbol": "BTCUSDT", "apiKey": KEY, "timestamp": NOW, "side": "BUY"})
        shuffled = dict(reversed(list(p.items())))
        assert signing.verify_params(shuffled, api_key=KEY, api_secret=SECRET, now_ms=NOW) == {
            "symbol": "BTCUSDT", "apiKey": KEY, "timestamp": str(NOW), "side": "BUY"}

    @pytest.mark.parametrize("case", ["no key", "other key", "bad signature", "no signature", "no timestamp",
                                      "too old", "ahead", "bad recvWindow"])
    def test_refusals_are_the_rest_endpoints_answers(self, case):
        """Each failure gets exactly the code, text and status REST gives for the same request."""
        base: dict[str, object] = {"symbol": "BTCUSDT", "timestamp": NOW}
        ts = {"too old": NOW - 5_001, "ahead": NOW + 1_000}.get(case, NOW)
        if case == "bad recvWindow":
            base["recvWindow"] = 70_000
        base["timestamp"] = ts
        api_key = {"no key": None, "other key": "someone-else"}.get(case, KEY)
        ws_params = {**base, **({"apiKey": api_key} if api_key else {})}
        p = signed(ws_params, secret="wrong" if case == "bad signature" else SECRET)
        if case == "no signature":
            del p["signature"]
        if case == "no timestamp":
            del p["timestamp"]
            base.pop("timestamp")
        rest_base = {k: v for k, v in base.items()}
        expected = rest_verdict(rest_base, api_key, sign_with="wrong" if case == "bad signature" else SECRET) \
            if case != "no signature" else (-1102, "Mandatory parameter 'signature' was not sent, was empty/null, "
                                                   "or malformed.", 400)
        assert ws_verdict(p) == expected
        assert {"no key": -2014, "other key": -2015, "bad signature": -1022, "no signature": -1102,
                "no timestamp": -1102, "too old": -1021, "ahead": -1021, "bad recvWindow": -1131}[case] == expected[0]

    def test_a_tampered_parameter_fails_the_signature(self):
        """Changing a value after signing: -1022."""
        p = signed({"apiKey": KEY, "symbol": "BTCUSDT", "quantity": "0.010", "timestamp": NOW})
        p["quantity"] = "1.000"
        assert ws_verdict(p) == (-1022, "Signature for this request is not valid.", 400)


class TestMethodsAndLimits:
    @pytest.mark.parametrize("method", ["order.modify", "session.logon", "account.status", "nonsense", "ORDER.PLACE"])
    def test_a_method_the_sim_does_not_serve_is_an_unsupported_operation(self, method):
        """Refused with -1020 (the request is not run), the id echoed."""
        req = ws_api.parse(frame({"id": "m", "method": method}))
        with pytest.raises(ws_api.WsApiError) as e:
            ws_api.method_of(req)
        assert (e.value.status, e.value.code, e.value.msg, e.value.req_id) == (
            400, -1020, "This operation is not supported.", "m")

    def test_weights_and_order_counts_are_the_documented_ones(self):
        """Request weights of the method pages: place 0 (one order), status/cancel 1, positions 5."""
        m = ws_api.METHODS
        assert [(n, m[n].weight, m[n].orders) for n in ("order.place", "order.status", "order.cancel",
                                                        "algoOrder.place", "algoOrder.cancel", "account.position",
                                                        "v2/account.position", "session.status")] == [
            ("order.place", 0, 1), ("order.status", 1, 0), ("order.cancel", 1, 0), ("algoOrder.place", 0, 0),
            ("algoOrder.cancel", 1, 0), ("account.position", 5, 0), ("v2/account.position", 5, 0),
            ("session.status", 2, 0)]

    def test_counts_run_per_calendar_window(self):
        """Weight and the 1-minute order count reset on the minute, the 10-second count every 10 s."""
        minute = NOW - NOW % 60_000
        u = ws_api.spend(ws_api.Usage(), minute + 1_000, weight=5)
        u = ws_api.spend(u, minute + 2_000, weight=1, orders=1)
        u = ws_api.spend(u, minute + 9_999, orders=1)
        assert (u.weight_1m, u.orders_10s, u.orders_1m) == (6, 2, 2)
        u = ws_api.spend(u, minute + 10_000, orders=1)
        assert (u.weight_1m, u.orders_10s, u.orders_1m) == (6, 1, 3)
        u = ws_api.spend(u, minute + 60_000, weight=1)
        assert (u.weight_1m, u.orders_10s, u.orders_1m) == (1, 0, 0)

    def test_rate_limits_are_listed_as_each_methods_page_shows_them(self):
        """order.place: ORDERS 10s, ORDERS 1m, REQUEST_WEIGHT (New Order); the others: the weight only."""
        u = ws_api.Usage(minute=0, ten_s=0, weight_1m=1, orders_1m=1, orders_10s=1)
        assert ws_api.rate_limits(u, ws_api.METHODS["order.place"]) == doc("order.place")["rateLimits"]
        u6 = ws_api.Usage(weight_1m=6)
        assert ws_api.rate_limits(u6, ws_api.METHODS["order.status"]) == doc("order.status")["rateLimits"]
        assert ws_api.rate_limits(u6, ws_api.METHODS["algoOrder.cancel"]) == doc("algoOrder.cancel")["rateLimits"]

    def test_connection_and_request_choose_whether_rate_limits_show(self):
        """``?returnRateLimits=false`` hides them by default; a request's own flag wins."""
        assert ws_api.connection_rate_limits({"returnRateLimits": "false"}) is False
        assert ws_api.connection_rate_limits({}) is True
        req = ws_api.parse(frame({"id": 1, "method": "session.status", "params": {"returnRateLimits": True}}))
        assert ws_api.shows_rate_limits(req, False) is True
        assert ws_api.shows_rate_limits(ws_api.parse(b'{"id":1,"method":"session.status"}'), False) is False


class TestAnswers:
    def test_success_and_failure_envelopes_are_binances(self):
        """Key order id, status, result|error, rateLimits; the documented failure rebuilt byte for byte."""
        f = doc("general_info.failure", "body")
        assert orjson.loads(ws_api.error(f["id"], 400, f["error"]["code"], f["error"]["msg"], f["rateLimits"])) == f
        assert ws_api.ok("a", {"x": 1}, None) == b'{"id":"a","status":200,"result":{"x":1}}'
        assert ws_api.error(None, 400, -1135, "Invalid JSON request", None) == (
            b'{"id":null,"status":400,"error":{"code":-1135,"msg":"Invalid JSON request"}}')
        assert list(orjson.loads(ws_api.ok(1, {}, []))) == ["id", "status", "result", "rateLimits"]

    def test_session_answer_has_the_documented_keys_of_a_connection_never_logged_on(self):
        """As ``session.logout``'s example: apiKey and authorizedSince null."""
        body = ws_api.session(connected_ms=1, now_ms=2, return_rate_limits=False)
        assert list(body) == list(doc("session.logout")["result"])
        assert body == {"apiKey": None, "authorizedSince": None, "connectedSince": 1, "returnRateLimits": False,
                        "serverTime": 2}


def _types(d: dict) -> dict:
    return {k: type(v).__name__ for k, v in d.items()}


class TestBodiesMatchTheDocumentedExamples:
    """The results are the REST twins' bodies; here their keys meet the WebSocket pages' examples."""

    def test_order_place_result_has_the_documented_keys_in_order_and_types(self):
        placed = go(new_account(D("10000")), lim("BUY", "0.100", "59000.00", client_id="c1"))
        body = pr.order_body(placed.ack, RULES)
        example = doc("order.place")["result"]
        assert list(body) == list(example)
        assert _types(body) == _types(example)

    def test_order_status_result_has_the_documented_keys_in_order_and_types(self):
        placed = go(new_account(D("10000")), lim("BUY", "0.010", "59000.00"))
        body = pr.order_body(placed.order, RULES, query=True)
        example = doc("order.status")["result"]
        assert list(body) == list(example)
        assert _types(body) == _types(example)

    def test_order_cancel_result_is_the_documented_one_plus_avg_price(self):
        """The example is a trailing stop (activatePrice, priceRate); a plain order's cancel has
        neither, and the sim's REST body adds avgPrice."""
        placed = go(new_account(D("10000")), lim("BUY", "0.010", "59000.00"))
        body = pr.order_body(placed.order, RULES)
        example = doc("order.cancel")["result"]
        assert set(example) - set(body) == {"activatePrice", "priceRate"}
        assert set(body) - set(example) == {"avgPrice"}

    def test_algo_order_place_result_has_the_documented_keys_plus_the_trailing_fields(self):
        """Every documented key with its type; activatePrice and callbackRate come from the REST page."""
        acc = go(new_account(D("10000")), mkt("BUY", "0.010")).account
        _, a = algo.place(acc, AlgoRequest(symbol="BTCUSDT", side="SELL", type="TAKE_PROFIT", qty=D("0.010"),
                                           price=D("61000.00"), trigger_price=D("61000.00"), reduce_only=True),
                          RULES, BOOK, T0)
        body = pr.algo_body(a, RULES, None, "new")
        example = doc("algoOrder.place")["result"]
        assert [k for k in body if k in example] == list(example)
        assert set(body) - set(example) == {"activatePrice", "callbackRate"}
        assert {k: t for k, t in _types(body).items() if k in example} == _types(example)

    def test_v2_account_position_result_has_the_documented_keys_in_order_and_types(self):
        acc = go(new_account(D("10000")), mkt("BUY", "0.010")).account
        [row] = pr.position_risk_v3(acc, {}, {"BTCUSDT": RULES}, {"BTCUSDT": BOOK.mark})
        [example] = doc("v2/account.position")["result"]
        assert list(row) == list(example)
        assert _types(row) == _types(example)
