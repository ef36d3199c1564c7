"""Binance's SIGNED request check (``signing.verify``): key, HMAC, timestamp window."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from services.exchange_sim import signing
from services.exchange_sim.rest import RestError
from services.exchange_sim.signing import SignedRequest

KEY, SECRET = "test-key", "test-secret"
NOW = 1_800_000_000_000


def signed_query(params: dict[str, object], secret: str = SECRET) -> str:
    q = urlencode(params)
    return q + "&signature=" + signing.sign(q, secret)


def check(req: SignedRequest, now: int = NOW) -> dict[str, str]:
    return signing.verify(req, api_key=KEY, api_secret=SECRET, now_ms=now)


def refusal(req: SignedRequest, now: int = NOW) -> tuple[int, str, int]:
    with pytest.raises(RestError) as e:
        check(req, now)
    return e.value.code, e.value.msg, e.value.status


class TestSignature:
    def test_hmac_sha256_is_binances_documented_example(self):
        """The example of Binance's API docs (secret, totalParams -> signature)."""
        secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
        total = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
                 "&recvWindow=5000&timestamp=1499827319559")
        assert signing.sign(total, secret) == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"

    def test_good_query_string_signature_passes_and_yields_the_params(self):
        q = signed_query({"symbol": "BTCUSDT", "origClientOrderId": "a:b/c", "timestamp": NOW})
        assert check(SignedRequest(api_key=KEY, query=q, body="")) == {
            "symbol": "BTCUSDT", "origClientOrderId": "a:b/c", "timestamp": str(NOW)}

    def test_good_form_body_signature_passes(self):
        """ccxt's POST: everything, signature last, in a form-encoded body."""
        body = signed_query({"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.010", "timestamp": NOW})
        assert check(SignedRequest(api_key=KEY, query="", body=body))["quantity"] == "0.010"

    def test_query_and_body_are_signed_concatenated(self):
        """Binance's totalParams: query string then body, no separator."""
        q, b = "symbol=BTCUSDT", f"timestamp={NOW}"
        sig = signing.sign(q + b, SECRET)
        assert check(SignedRequest(api_key=KEY, query=q, body=b + "&signature=" + sig))["symbol"] == "BTCUSDT"

    def test_wrong_secret_is_an_invalid_signature(self):
        q = signed_query({"timestamp": NOW}, secret="other")
        assert refusal(SignedRequest(api_key=KEY, query=q, body="")) == (
            -1022, "Signature for this request is not valid.", 400)

    def test_tampered_parameter_is_an_invalid_signature(self):
        q = signed_query({"quantity": "1", "timestamp": NOW}).replace("quantity=1", "quantity=9")
        assert refusal(SignedRequest(api_key=KEY, query=q, body=""))[0] == -1022

    def test_missing_signature_is_a_missing_mandatory_parameter(self):
        assert refusal(SignedRequest(api_key=KEY, query=f"timestamp={NOW}", body="")) == (
            -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.", 400)


class TestApiKey:
    def test_other_key_is_refused_with_401(self):
        q = signed_query({"timestamp": NOW})
        assert refusal(SignedRequest(api_key="nope", query=q, body="")) == (
            -2015, "Invalid API-key, IP, or permissions for action.", 401)

    def test_no_key_header_is_an_invalid_key_format(self):
        q = signed_query({"timestamp": NOW})
        assert refusal(SignedRequest(api_key=None, query=q, body="")) == (-2014, "API-key format invalid.", 401)


class TestTimestamp:
    def test_missing_timestamp_is_a_missing_mandatory_parameter(self):
        q = signed_query({"symbol": "BTCUSDT"})
        assert refusal(SignedRequest(api_key=KEY, query=q, body=""))[:2] == (
            -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")

    def test_client_999_ms_ahead_passes_and_1000_ms_ahead_is_refused(self):
        ok = signed_query({"timestamp": NOW + 999})
        assert check(SignedRequest(api_key=KEY, query=ok, body=""))["timestamp"] == str(NOW + 999)
        ahead = signed_query({"timestamp": NOW + 1000})
        assert refusal(SignedRequest(api_key=KEY, query=ahead, body="")) == (
            -1021, "Timestamp for this request was 1000ms ahead of the server's time.", 400)

    def test_request_older_than_the_default_5000_ms_window_is_refused(self):
        ok = signed_query({"timestamp": NOW - 5000})
        assert check(SignedRequest(api_key=KEY, query=ok, body=""))
        late = signed_query({"timestamp": NOW - 5001})
        assert refusal(SignedRequest(api_key=KEY, query=late, body="")) == (
            -1021, "Timestamp for this request is outside of the recvWindow.", 400)

    def test_recv_window_widens_the_window_up_to_60000_ms(self):
        ok = signed_query({"timestamp": NOW - 9000, "recvWindow": 10000})
        assert check(SignedRequest(api_key=KEY, query=ok, body=""))["recvWindow"] == "10000"
        too_big = signed_query({"timestamp": NOW, "recvWindow": 60001})
        assert refusal(SignedRequest(api_key=KEY, query=too_big, body=""))[0] == -1131
