"""Fuzzing the frame decoder: garbage, JSON-ish structures and mutated real frames (the real
capture the sim ships with) and Binance's documented example payloads.

Invariants checked on every input: nothing escapes (not even our own DecodeError: the
decoder returns rejections), every rejection carries a known reason, every accepted tick
passes the ring-record contract (``firewall.tick_reason``: finite positive prices and
so on), and the fast path gives exactly the answer of the reference (generic) path.
"""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.feed import codec, raw_capture, sequencer
from services.feed import firewall as fw
from tests.conftest import HFT_CAPTURE, USDM_DATA

REF = 1_723_161_256_000
RECV = REF * 1_000_000
SYMBOLS = {"BTCUSDT": 0, "ETHUSDT": 1, "SUSHIUSDT": 2}
SYMBOL_IDS = range(len(SYMBOLS))
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _real_frames() -> list[bytes]:
    """One frame of each kind: Binance's documented examples, then the capture's first frames."""
    wanted = [b'"e":"trade"', b'"e":"bookTicker"', b'"e":"aggTrade"', b'"e":"kline"',
              b'"e":"markPriceUpdate"', b"!markPrice@arr", b"!ticker@arr", b"@depth10",
              b'"lastUpdateId"', b'"openInterest"', b'"e":"depthUpdate"']
    found: dict[bytes, bytes] = {}
    for _, raw in raw_capture.iter_capture(USDM_DATA / "binance_docs_examples.jsonl"):
        for w in wanted:
            if w in raw and w not in found and len(raw) < 2000:
                found[w] = raw
    for i, (_, raw) in enumerate(raw_capture.iter_capture(HFT_CAPTURE)):
        if i < 12:
            found.setdefault(raw[:30], raw)
    return [*found.values(), b'{"result":null,"id":1}']


REAL = _real_frames()


def _out_of_range_number(frame: object) -> bool:
    """The one tolerated fast/generic difference: a number beyond float range somewhere."""
    try:
        msgspec.json.decode(frame)  # type: ignore[arg-type]
    except msgspec.ValidationError as exc:
        return "out of range" in str(exc)
    except Exception:  # noqa: BLE001
        return False
    return False


def check(frame: object, recv_ns: int | None = RECV) -> codec.Result:
    """Decode ``frame`` both ways and assert every invariant; return the fast result."""
    res = codec.decode(frame, recv_ns, SYMBOLS)
    assert isinstance(res, codec.Result)
    assert res.status in (codec.TICK, codec.EVENT, codec.CONTROL, codec.REJECTED)
    if res.status == codec.REJECTED:
        assert res.reason in fw.REASONS and res.tick is None
    else:
        assert res.reason is None
    if res.status == codec.TICK:
        t = res.tick
        assert math.isfinite(t.price) and 0.0 < t.price < fw.MAX_PRICE
        assert all(math.isfinite(v) for v in (t.qty, t.aux, t.aux_qty))
        ref = None if recv_ns is None else recv_ns // 1_000_000
        assert fw.tick_reason(t.symbol_id, t.kind, t.flags, t.recv_ns, t.event_ms, t.id, t.price,
                              t.qty, t.aux, t.aux_qty, SYMBOL_IDS, ref) is None
    ref_res = codec.decode_generic(frame, recv_ns, SYMBOLS)
    if ref_res != res:
        assert ref_res.reason == fw.BAD_JSON and _out_of_range_number(frame), (frame, res, ref_res)
    return res


# ---------------------------------------------------------------------------- raw garbage
class TestGarbage:
    @FUZZ
    @given(st.binary(max_size=300))
    @example(b"\x00")
    @example(b'{"stream":"btcusdt@trade","data":{"e":"trade","p":"\xff"}}')
    def test_arbitrary_bytes_never_escape(self, frame):
        """Random bytes are rejected or, improbably, decoded; never raised on."""
        check(frame)

    @FUZZ
    @given(st.text(max_size=200))
    def test_arbitrary_text_never_escapes(self, frame):
        """Random text (surrogates included) is handled like bytes."""
        check(frame)

    @FUZZ
    @given(st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)))
    def test_non_frame_objects_are_wrong_type(self, obj):
        """Python objects that are not text are wrong_type."""
        assert check(obj).reason == fw.WRONG_TYPE


# ---------------------------------------------------------------------------- JSON-ish
KEYS = ["e", "E", "T", "s", "t", "p", "q", "m", "X", "M", "a", "f", "l", "u", "U", "pu", "b", "B",
        "A", "P", "i", "r", "k", "o", "c", "h", "v", "n", "x", "V", "Q", "w", "O", "C", "F", "L",
        "stream", "data", "result", "id", "error", "code", "msg", "lastUpdateId", "bids", "asks",
        "symbol", "openInterest", "time"]
WORDS = ["trade", "aggTrade", "bookTicker", "markPriceUpdate", "depthUpdate", "kline", "24hrTicker",
         "forceOrder", "BTCUSDT", "ETHUSDT", "btcusdt@trade", "btcusdt@depth20", "MARKET", "1m",
         "0", "-0", "-1", "1e999", "NaN", "nan", "inf", "-inf", "61800.30", "0.001", "", " 1",
         "1_0", "\u0661", "9" * 400]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.integers(REF - 120_000, REF + 120_000),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8), st.sampled_from(WORDS),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=2), inner, max_size=8),
    max_leaves=24,
)


def _bases() -> list[dict]:
    out = []
    for raw in REAL:
        obj = json.loads(raw)
        if isinstance(obj, dict) and isinstance(obj.get("data"), dict):
            out.append(obj["data"])
    return out


BASES = _bases()


class TestJsonStructures:
    @FUZZ
    @given(json_values, st.booleans())
    @example([{"e": []}], False)  # once raised: an unhashable e inside an array
    def test_arbitrary_json_never_escapes(self, value, wrapped):
        """Any JSON value, bare or inside a combined-stream wrapper, is handled."""
        body = {"stream": "btcusdt@trade", "data": value} if wrapped else value
        check(json.dumps(body).encode())

    @FUZZ
    @given(st.sampled_from(BASES), st.dictionaries(st.sampled_from(KEYS), json_values, max_size=3),
           st.lists(st.sampled_from(KEYS), max_size=2), st.booleans())
    def test_real_payload_with_fields_replaced_or_dropped(self, base, over, drop, wrapped):
        """A real payload with a few fields replaced by arbitrary JSON or removed."""
        data = {k: v for k, v in {**base, **over}.items() if k not in drop}
        body = {"stream": "btcusdt@x", "data": data} if wrapped else data
        check(json.dumps(body).encode())

    @FUZZ
    @given(st.sampled_from(BASES), st.one_of(st.none(), st.integers(REF - 10**7, REF + 10**7)))
    def test_real_payload_at_any_reference_clock(self, base, ref_ms):
        """Real payloads decoded at arbitrary receive times (or none) keep every invariant."""
        check(json.dumps({"stream": "x@y", "data": base}).encode(),
              None if ref_ms is None else ref_ms * 1_000_000)


# ---------------------------------------------------------------------------- mutations
class TestRealFrameMutations:
    @pytest.mark.parametrize("frame", REAL, ids=lambda f: f[:40].decode(errors="replace"))
    def test_truncation_at_every_position(self, frame):
        """Every prefix of a real frame is rejected or (for the whole frame) accepted."""
        for n in range(len(frame)):
            res = check(frame[:n])
            assert res.status == codec.REJECTED or frame[:n].strip() == frame.strip()

    @pytest.mark.parametrize("frame", REAL[:2], ids=["first", "second"])
    def test_every_single_byte_substitution(self, frame):
        """Each position of a real frame replaced by each of 256 byte values keeps the invariants."""
        for pos in range(len(frame)):
            for byte in range(256):
                check(frame[:pos] + bytes((byte,)) + frame[pos + 1:])

    @FUZZ
    @given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                           min_size=1, max_size=6))
    def test_random_byte_flips(self, frame, flips):
        """Several random byte substitutions in one real frame keep the invariants."""
        buf = bytearray(frame)
        for pos, byte in flips:
            buf[pos % len(buf)] = byte
        check(bytes(buf))

    @FUZZ
    @given(st.sampled_from(REAL), st.integers(0, 10**6), st.binary(min_size=1, max_size=8))
    def test_random_insertions(self, frame, pos, junk):
        """Junk bytes inserted anywhere in a real frame keep the invariants."""
        p = pos % (len(frame) + 1)
        check(frame[:p] + junk + frame[p:])

    @FUZZ
    @given(st.lists(st.sampled_from(REAL) | st.binary(max_size=40), max_size=30))
    def test_decoder_with_sequence_state_never_escapes(self, frames):
        """The stateful Decoder (gaps, duplicates, stream clock) survives any frame sequence."""
        dec = sequencer.Decoder(SYMBOLS)
        for i, f in enumerate(frames):
            res = dec.decode(f, None if i % 2 else RECV)
            assert res.status != codec.REJECTED or res.reason in fw.REASONS


# ---------------------------------------------------------------------------- inlined checks
# The hot finishers inline the firewall's comparisons; these pin them to the firewall.
values = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, fw.MAX_PRICE, fw.MAX_QTY, 1e-300,
                                                 math.nextafter(fw.MAX_PRICE, 0.0)]))
BOOK = {"e": "bookTicker", "u": 1, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2", "A": "1",
        "T": REF, "E": REF}
TRADE = {"e": "trade", "E": REF, "T": REF, "s": "BTCUSDT", "t": 1, "p": "1", "q": "1", "m": False}


def _wrap(data: dict) -> bytes:
    return json.dumps({"stream": "btcusdt@x", "data": data}).encode()


class TestInlinedChecksMatchTheFirewall:
    @FUZZ
    @given(values, values, values, values)
    def test_book_verdict_equals_book_reason(self, b, bq, a, aq):
        """bookTicker acceptance is exactly firewall.book_reason on the parsed values."""
        s = [repr(v) for v in (b, bq, a, aq)]
        res = check(_wrap({**BOOK, "b": s[0], "B": s[1], "a": s[2], "A": s[3]}))
        assert res.reason == fw.book_reason(*(float(x) for x in s))

    @FUZZ
    @given(values, values)
    def test_trade_verdict_equals_trade_reason(self, p, q):
        """trade acceptance is exactly firewall.trade_reason on the parsed values."""
        res = check(_wrap({**TRADE, "p": repr(p), "q": repr(q)}))
        assert res.reason == fw.trade_reason(float(repr(p)), float(repr(q)))

    @FUZZ
    @given(values, values)
    def test_depth_level_verdict_equals_price_and_volume_checks(self, p, q):
        """A depth level passes iff is_valid_price and is_valid_volume pass."""
        data = {"e": "depthUpdate", "E": REF, "T": REF, "s": "BTCUSDT", "U": 1, "u": 2, "pu": 0,
                "b": [[repr(p), repr(q)]], "a": []}
        res = check(_wrap(data))
        fp, fq = float(repr(p)), float(repr(q))
        want = None if fw.is_valid_price(fp) and fw.is_valid_volume(fq) else (
            fw.BAD_PRICE if not fw.is_valid_price(fp) else fw.BAD_QTY)
        assert res.reason == want

    @FUZZ
    @given(st.integers(REF - 200_000, REF + 200_000), st.integers(REF - 200_000, REF + 200_000))
    def test_time_window_equals_is_valid_timestamp(self, e_ms, t_ms):
        """A trade's E and T pass iff firewall.is_valid_timestamp accepts both against recv."""
        res = check(_wrap({**TRADE, "E": e_ms, "T": t_ms}))
        ok = fw.is_valid_timestamp(e_ms, REF) and fw.is_valid_timestamp(t_ms, REF)
        assert (res.status == codec.TICK) == ok
        assert ok or res.reason == fw.BAD_TIMESTAMP
