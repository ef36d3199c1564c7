"""Fuzzing the user data stream decoder: only DecodeError may escape, and an event we do not
model never comes out as one that changes an order or a position."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import DecodeError
from venue.binance import user_stream as us
from tests.unit.venue.binance.test_user_stream_decoder import ACCOUNT_UPDATE, ALGO_UPDATE, ORDER_TRADE_UPDATE

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REAL = [orjson.dumps(x) for x in (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE, ALGO_UPDATE)]
KNOWN = (us.OrderUpdate, us.TradeLite, us.AccountUpdate, us.AlgoUpdate, us.ListenKeyExpired,
         us.MarginCall, us.Unrecognised)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=5),
    max_leaves=20)


def _decode_or_reject(raw: bytes):
    try:
        return us.decode(raw)
    except DecodeError as e:
        assert e.reason
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_garbage_bytes_only_raise_decode_error(raw):
    """Random bytes: a DecodeError or a known event type, nothing else."""
    out = _decode_or_reject(raw)
    assert out is None or isinstance(out, KNOWN)


@FUZZ
@given(st.sampled_from(REAL), st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_real_events_only_raise_decode_error(raw, pos, byte):
    """A real event with one byte changed."""
    b = bytearray(raw)
    b[pos % len(b)] = byte
    out = _decode_or_reject(bytes(b))
    assert out is None or isinstance(out, KNOWN)


@FUZZ
@given(st.sampled_from(REAL), st.integers(1, 10_000))
def test_truncated_real_events_are_rejected(raw, cut):
    """Every proper prefix of a real event is not JSON: rejected, never half-applied."""
    assert _decode_or_reject(raw[: cut % len(raw)]) is None


@FUZZ
@given(st.sampled_from([ORDER_TRADE_UPDATE, ACCOUNT_UPDATE, ALGO_UPDATE]), st.text(max_size=8), json_values)
def test_fields_replaced_by_arbitrary_json(event, key, value):
    """Any field of the outer or inner object replaced by any JSON value."""
    e = orjson.loads(orjson.dumps(event))
    inner = e.get("o") or e.get("a")
    target = inner if key and key[0] in "abc" else e
    target[key or "e"] = value
    try:
        raw = orjson.dumps(e)
    except TypeError:
        return
    out = _decode_or_reject(raw)
    assert out is None or isinstance(out, KNOWN)


@FUZZ
@given(st.text(min_size=1, max_size=30).filter(lambda s: s not in us.DECODERS), json_values)
def test_unknown_event_types_are_never_applied(kind, body):
    """Whatever its body, an event type we do not model decodes to Unrecognised."""
    raw = orjson.dumps({"e": kind, "E": 5, "o": body, "a": body})
    assert _decode_or_reject(raw) == us.Unrecognised(event_type=kind[:64], event_ms=5)


# ---------------------------------------------------------------------------- through the client and the trader
# The client decodes in its own thread and the execution applies what it queued: garbage must
# end as a counted rejection in the client, and whatever decodes must pass through the trader
# without raising; an event type we do not model never reaches the trader at all.
from pathlib import Path  # noqa: E402

from services.brain import user_feed  # noqa: E402
from venue.binance.user_stream_client import UserStreamClient, UserStreamConfig  # noqa: E402
from tests.unit.brain.test_execution import holding  # noqa: E402

QUEUED = (us.OrderUpdate, us.AccountUpdate, us.AlgoUpdate, us.MarginCall)
ABSENT = Path("/nonexistent-aegis-fuzz")  # the rig's database: absent, a first start


def _client() -> UserStreamClient:
    return UserStreamClient(UserStreamConfig(rest_url="http://127.0.0.1:1", ws_url="ws://127.0.0.1:1"), api_key="k")


def _through_client(frames: list[bytes]) -> tuple[UserStreamClient, list]:
    c = _client()
    for f in frames:
        assert c.on_frame(f) in ("", "listen_key_expired")
    return c, [e for _, e in c.drain(10_000)]


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_garbage_frames_through_the_client_are_only_counted_rejections(frames):
    """Random frames: nothing raises; every frame is either one counted rejection or one counted
    event; only the event types the trader uses are queued."""
    c, queued = _through_client(frames)
    s = c.stats()
    assert sum(s["rejects"].values()) + sum(s["events"].values()) == len(frames)
    assert all(isinstance(e, QUEUED) for e in queued)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(REAL), st.integers(0, 10_000), st.integers(0, 255)), max_size=5))
def test_mutated_events_through_the_client_and_the_trader_never_raise(mutations):
    """Real events with a byte changed, through the client and then the execution of an open
    trade: no exception, and the trade is untouched (the examples name other orders and symbols)."""
    frames = []
    for raw, pos, byte in mutations:
        b = bytearray(raw)
        b[pos % len(b)] = byte
        frames.append(bytes(b))
    rig = holding(ABSENT)
    c = _client()
    rig.ex.user_stream = user_feed.Link(c)
    for f in frames:
        c.on_frame(f)
    trade = rig.ex.st.trades["AAAUSDT"]
    user_feed.pump(rig.ex)
    assert rig.ex.st.trades["AAAUSDT"] == trade and rig.calls == []


@FUZZ
@given(st.text(min_size=1, max_size=30).filter(lambda s: s not in us.DECODERS), json_values)
def test_an_unknown_event_type_never_reaches_the_trader(kind, body):
    """Whatever its body, an event type we do not model is counted by the client and the open
    trade's state is the very same object afterwards."""
    rig = holding(ABSENT)
    c = _client()
    rig.ex.user_stream = user_feed.Link(c)
    raw = orjson.dumps({"e": kind, "E": 5, "o": body, "a": body, "P": body})
    assert c.on_frame(raw) == ""
    st_before = rig.ex.st
    user_feed.pump(rig.ex)
    assert rig.ex.st is st_before and rig.calls == []
    assert c.stats()["events"] == {kind[:64]: 1}


@FUZZ
@given(st.dictionaries(st.sampled_from(["tranId", "incomeType", "income", "time", "symbol", "tradeId", "asset", "x"]),
                       json_values, max_size=8))
def test_income_rows_parse_or_give_our_error(raw):
    """``/fapi/v1/income`` rows of arbitrary JSON through the broker's parser: an ExchangeIncome
    with a finite amount, or ``DefinitiveError`` (bad_response), nothing else."""
    from common.errors import DefinitiveError
    from venue.binance.bodies import income_from_raw
    from venue.binance.ccxt_broker import CcxtBroker
    from venue.port import ExchangeIncome
    try:
        out = CcxtBroker._parse(None, "income", income_from_raw, raw)  # type: ignore[arg-type]
    except DefinitiveError as e:
        assert e.reason == "bad_response"
        return
    assert isinstance(out, ExchangeIncome) and out.amount.is_finite()
