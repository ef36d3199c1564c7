"""Fuzzing both ends of the WebSocket API: garbage answers into the client's decoder and its
reader give only ``DecodeError`` (counted), garbage requests into the sim's parser and
signature check only its own refusals."""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import DecodeError
from services.exchange_sim import signing, ws_api as sim_ws_api
from services.exchange_sim.rest import RestError
from tests.conftest import USDM_DATA
from venue.binance import ws_api as w
from venue.ratelimit import Governor

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DOCS = json.loads((USDM_DATA / "binance_docs_ws_api_examples.json").read_text())["examples"]
ANSWERS = [orjson.dumps(e.get("response", e.get("body"))) for k, e in DOCS.items()
           if "response" in e or k.startswith("general_info.s") or k.startswith("general_info.f")]
REQUESTS = [orjson.dumps(e["request"]) for e in DOCS.values() if "request" in e]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=5),
    max_leaves=20)


def decoded_or_rejected(raw: bytes) -> w.Answer | None:
    try:
        return w.decode(raw)
    except DecodeError as e:
        assert e.reason.startswith("ws_api_")
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_garbage_bytes_into_the_decoder_give_only_decode_error(raw):
    """Random bytes: an Answer or a DecodeError with a reason, nothing else."""
    out = decoded_or_rejected(raw)
    assert out is None or isinstance(out, w.Answer)


@FUZZ
@given(st.sampled_from(ANSWERS), st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_documented_answers_give_only_decode_error(raw, pos, byte):
    b = bytearray(raw)
    b[pos % len(b)] = byte
    out = decoded_or_rejected(bytes(b))
    assert out is None or isinstance(out, w.Answer)


@FUZZ
@given(st.sampled_from(ANSWERS), st.integers(1, 10_000))
def test_truncated_documented_answers_are_rejected(raw, cut):
    """Every proper prefix of an answer is not JSON: rejected, never matched to a request."""
    assert decoded_or_rejected(raw[: cut % len(raw)]) is None


@FUZZ
@given(st.sampled_from(ANSWERS), st.sampled_from(["id", "status", "result", "error", "rateLimits", "code", "msg"]),
       json_values)
def test_fields_replaced_by_arbitrary_json(raw, key, value):
    """A documented answer with one top-level or error field replaced by any JSON value."""
    body = orjson.loads(raw)
    if key in ("code", "msg") and isinstance(body.get("error"), dict):
        body["error"][key] = value
    else:
        body[key] = value
    out = decoded_or_rejected(json.dumps(body).encode())
    assert out is None or isinstance(out, w.Answer)


@FUZZ
@given(st.lists(st.binary(max_size=120) | json_values.map(lambda v: json.dumps(v).encode()), max_size=8))
def test_the_readers_frame_handler_never_raises_and_counts_each_frame(frames):
    """The reader thread's handler: every frame is an answer (unmatched here) or a counted rejection."""
    client = w.WsApiClient(w.WsApiConfig(url="ws://127.0.0.1:1/ws-fapi/v1"), api_key="k", api_secret="s",
                           governor=Governor(), connect=lambda url, cfg: None)
    for f in frames:
        client._on_frame(f)
    c = client.counters
    assert c["decode_errors"] + c["unmatched_answers"] == len(frames)


@FUZZ
@given(st.binary(max_size=300))
def test_garbage_requests_into_the_sims_parser_give_only_its_refusal(raw):
    try:
        req = sim_ws_api.parse(raw)
    except sim_ws_api.WsApiError as e:
        assert e.status == 400 and e.code in (-1135, -1130)
        return
    assert isinstance(req, sim_ws_api.Request)


@FUZZ
@given(st.sampled_from(REQUESTS), st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_documented_requests_are_parsed_or_refused_and_never_pass_the_signature(raw, pos, byte):
    """A documented request with one byte changed: refused by the parser or by the signature check
    (the examples' keys and secrets are not the sim's), never run."""
    b = bytearray(raw)
    b[pos % len(b)] = byte
    try:
        req = sim_ws_api.parse(bytes(b))
    except sim_ws_api.WsApiError:
        return
    try:
        signing.verify_params(req.params, api_key="aegis-demo-key", api_secret="aegis-demo-secret",
                              now_ms=1_800_000_000_000)
    except RestError as e:
        assert e.code in (-2014, -2015, -1102, -1131, -1022, -1021)
        return
    raise AssertionError("a mutated documented request passed the sim's signature check")


@FUZZ
@given(st.dictionaries(st.sampled_from(["apiKey", "timestamp", "recvWindow", "signature", "symbol", "x"]),
                       st.text(max_size=30), max_size=6))
def test_arbitrary_params_get_only_the_signature_checks_refusals(params):
    try:
        out = signing.verify_params(params, api_key="k", api_secret="s", now_ms=1_800_000_000_000)
    except RestError as e:
        assert e.code in (-2014, -2015, -1102, -1131, -1022, -1021)
        return
    assert "signature" not in out
