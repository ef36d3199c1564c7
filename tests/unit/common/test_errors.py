"""The exchange error table: every Binance code we name maps to what the caller must do next."""

from __future__ import annotations

import pytest

from common.errors import (
    BAD_REQUEST_CODES, DEFAULT_RETRY_AFTER_S, EXCHANGE_ERRORS, AegisError, AmbiguousError,
    DefinitiveError, ExchangeReply, TransientError, classify, exchange_error, parse_retry_after,
)


class TestClassifyCodes:
    @pytest.mark.parametrize("code,cls,reason", [
        (-1003, TransientError, "rate_limit"),
        (-1015, TransientError, "rate_limit"),
        (-1021, TransientError, "timestamp"),
        (-1022, DefinitiveError, "auth"),
        (-2015, DefinitiveError, "auth"),
        (-1121, DefinitiveError, "bad_symbol"),
        (-2010, DefinitiveError, "rejected"),
        (-2019, DefinitiveError, "insufficient_margin"),
        (-2011, DefinitiveError, "unknown_order"),
        (-2013, DefinitiveError, "unknown_order"),
        (-2021, DefinitiveError, "would_trigger"),
        (-2022, DefinitiveError, "reduce_only"),
        (-4003, DefinitiveError, "filter"),
        (-4164, DefinitiveError, "filter"),
        (-1111, DefinitiveError, "filter"),
        (-4014, DefinitiveError, "filter"),
        (-4116, DefinitiveError, "duplicate_client_id"),
        (-4046, DefinitiveError, "no_change"),
        (-4059, DefinitiveError, "no_change"),
    ])
    def test_code_maps_to_class_and_reason_for_an_order(self, code, cls, reason):
        """A 400 answer to a new order: the table decides, exactly."""
        assert classify(code, 400, mutating=True) == (cls, reason)

    @pytest.mark.parametrize("code", [-1000, -1001, -1006, -1007])
    def test_execution_status_unknown_codes_are_ambiguous_for_an_order(self, code):
        """Binance says these may have executed: an order must be queried, not re-sent."""
        assert classify(code, 500, mutating=True)[0] is AmbiguousError
        assert classify(code, 0, mutating=True)[0] is AmbiguousError

    @pytest.mark.parametrize("code", [-1000, -1001, -1006, -1007])
    def test_execution_status_unknown_codes_are_transient_for_a_read(self, code):
        """A read changes nothing: not knowing its outcome just means asking again."""
        assert classify(code, 500, mutating=False)[0] is TransientError

    def test_minus_1007_reason_is_server_timeout(self):
        assert classify(-1007, 408, mutating=True) == (AmbiguousError, "server_timeout")

    @pytest.mark.parametrize("code", [-1100, -1102, -1116, -1130])
    def test_parameter_error_range_is_definitive_bad_request(self, code):
        assert classify(code, 400, mutating=True) == (DefinitiveError, "bad_request")

    def test_every_table_entry_is_one_of_the_three_kinds(self):
        kinds = (TransientError, DefinitiveError, AmbiguousError)
        assert all(cls in kinds and reason for cls, reason in EXCHANGE_ERRORS.values())
        assert -1100 in BAD_REQUEST_CODES and -1130 in BAD_REQUEST_CODES and -1099 not in BAD_REQUEST_CODES


class TestClassifyHttpStatus:
    @pytest.mark.parametrize("status", [418, 429])
    def test_rate_limit_status_wins_over_any_body_code(self, status):
        """429/418 are rate limits whatever code the body carries (-1003, or none at all)."""
        assert classify(-1003, status, mutating=True) == (TransientError, "rate_limit")
        assert classify(None, status, mutating=True) == (TransientError, "rate_limit")
        assert classify(-2019, status, mutating=True) == (TransientError, "rate_limit")

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_bare_5xx_is_ambiguous_for_an_order_and_transient_for_a_read(self, status):
        assert classify(None, status, mutating=True) == (AmbiguousError, "server_error")
        assert classify(None, status, mutating=False) == (TransientError, "server_error")

    def test_unknown_code_on_a_4xx_is_a_definitive_rejection(self):
        assert classify(-9999, 400, mutating=True) == (DefinitiveError, "rejected")
        assert classify(None, 404, mutating=False) == (DefinitiveError, "rejected")

    def test_known_definitive_code_on_a_5xx_keeps_its_meaning(self):
        """The code is more specific than the status."""
        assert classify(-2019, 503, mutating=True) == (DefinitiveError, "insufficient_margin")


class TestExchangeError:
    def test_exception_carries_code_status_and_reason(self):
        err = exchange_error(ExchangeReply(http_status=400, code=-2019, msg="Margin is insufficient."),
                             mutating=True, context="submit BTCUSDT")
        assert type(err) is DefinitiveError
        assert (err.reason, err.code, err.http_status, err.retry_after_s) == ("insufficient_margin", -2019, 400, 0.0)
        assert str(err) == "submit BTCUSDT: binance -2019 Margin is insufficient. (HTTP 400)"

    def test_rate_limit_honours_retry_after(self):
        err = exchange_error(ExchangeReply(http_status=429, code=-1003, msg="Too many requests", retry_after_s=7.0))
        assert type(err) is TransientError
        assert (err.reason, err.retry_after_s) == ("rate_limit", 7.0)

    def test_rate_limit_without_retry_after_gets_the_default_back_off(self):
        err = exchange_error(ExchangeReply(http_status=400, code=-1015, msg="Too many new orders"), mutating=True)
        assert (type(err), err.retry_after_s) == (TransientError, DEFAULT_RETRY_AFTER_S)

    def test_other_errors_keep_the_base_class_defaults(self):
        err = AegisError("plain")
        assert (err.code, err.http_status, err.retry_after_s, err.reason) == (0, 0, 0.0, "error")


class TestParseRetryAfter:
    @pytest.mark.parametrize("raw,expected", [
        ("2", 2.0), (" 120 ", 120.0), ("0.5", 0.5), (None, None), ("soon", None), ("-1", None),
        ("nan", None), ("inf", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ])
    def test_header_values(self, raw, expected):
        assert parse_retry_after(raw) == expected
