"""Fuzzing the ``GET /fapi/v1/allOrders`` decoder (``venue.binance.bodies.history_from_raw``):
whatever the answer, a list of exact orders or ``DecodeError`` with an ``all_orders_`` reason,
nothing else; a valid row decodes to exactly its own text; any damaged row refuses the page."""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import DecodeError
from venue.binance.bodies import history_from_raw
from venue.port import ExchangeOrder

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# the response example of Binance's "All Orders (USER_DATA)" page, keys and value types as documented
DOC_ROW = {"avgPrice": "0.00000", "clientOrderId": "abc", "cumQuote": "0", "executedQty": "0", "orderId": 1917641,
           "origQty": "0.40", "origType": "TRAILING_STOP_MARKET", "price": "0", "reduceOnly": False, "side": "BUY",
           "positionSide": "SHORT", "status": "NEW", "stopPrice": "9300", "closePosition": False,
           "symbol": "BTCUSDT", "time": 1579276756075, "timeInForce": "GTC", "type": "TRAILING_STOP_MARKET",
           "activatePrice": "9020", "priceRate": "0.3", "updateTime": 1579276756075, "workingType": "CONTRACT_PRICE",
           "priceProtect": False, "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0}
DOC_BYTES = orjson.dumps([DOC_ROW])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.floats() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=6),
    max_leaves=25)


def decoded_or_rejected(body: object) -> list[tuple[ExchangeOrder, int]] | None:
    try:
        out = history_from_raw(body, "BTCUSDT")
    except DecodeError as e:
        assert e.reason.startswith("all_orders_")
        return None
    for order, created in out:  # what is accepted is exact and sane
        assert order.symbol == "BTCUSDT" and order.side in ("BUY", "SELL") and created >= 0
        assert order.qty.is_finite() and order.executed_qty.is_finite() and order.executed_qty >= 0
        assert order.qty == 0 or order.executed_qty <= order.qty
    return out


@FUZZ
@given(json_values)
def test_any_json_value_gives_orders_or_decode_error(body):
    """Random JSON: exact orders or a DecodeError with a reason, nothing else escapes."""
    decoded_or_rejected(body)


@FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(sorted(DOC_ROW)), json_values, max_size=12), max_size=3))
def test_rows_with_documented_keys_and_random_values_give_orders_or_decode_error(rows):
    """Documented keys, random values (wrong types, NaN, negatives, huge ints): only DecodeError."""
    decoded_or_rejected(rows)


@FUZZ
@given(st.sampled_from(sorted(DOC_ROW)), json_values)
def test_one_changed_field_of_the_documented_row_is_exact_or_refused(key, value):
    """The documented row with one field replaced: decoded (and then still exact) or refused."""
    decoded_or_rejected([{**DOC_ROW, key: value}])


@FUZZ
@given(st.sampled_from(sorted(DOC_ROW)))
def test_a_missing_key_the_decoder_needs_refuses_the_row(key):
    """Without an id, the status, the side, the quantity or the creation time the row is refused."""
    out = decoded_or_rejected([{k: v for k, v in DOC_ROW.items() if k != key}])
    needed = {"clientOrderId", "orderId", "status", "side", "origQty", "time", "symbol"}
    assert (out is None) == (key in needed)


@FUZZ
@given(st.integers(1, len(DOC_BYTES) - 1), st.integers(0, 10_000), st.integers(0, 255))
def test_truncated_or_mutated_bytes_never_decode_to_something_else(cut, pos, byte):
    """Bytes cut short are not JSON; one byte changed is JSON that decodes exactly or is refused."""
    try:
        orjson.loads(DOC_BYTES[:cut])
        raise AssertionError("a proper prefix of a JSON list parsed")
    except orjson.JSONDecodeError:
        pass
    b = bytearray(DOC_BYTES)
    b[pos % len(b)] = byte
    try:
        body = orjson.loads(bytes(b))
    except orjson.JSONDecodeError:
        return
    decoded_or_rejected(body)


@FUZZ
@given(st.lists(st.tuples(st.integers(1, 2**62), st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10**6),
                                                             places=3),
                          st.sampled_from(["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"]),
                          st.sampled_from(["BUY", "SELL"]), st.integers(0, 2**41)), max_size=5),
       st.permutations(range(5)))
def test_valid_rows_decode_to_exactly_their_text_in_the_answers_order(rows, order):
    """Ids beyond 2**53 stay exact text, quantities exact Decimals; the answer's order is kept
    whatever it is (the broker sorts)."""
    body = [{**DOC_ROW, "orderId": oid, "origQty": f"{q}", "executedQty": f"{q if s == 'FILLED' else 0}",
             "status": s, "side": side, "time": t, "clientOrderId": f"ae-{oid}-0"}
            for oid, q, s, side, t in rows]
    body = [body[i] for i in order if i < len(body)]
    out = decoded_or_rejected(body)
    assert out is not None
    assert [(o.exchange_order_id, o.qty, o.status, o.side, c) for o, c in out] == [
        (str(r["orderId"]), Decimal(r["origQty"]), r["status"], r["side"], r["time"]) for r in body]
