"""Binance USD-M market-data frames -> validated results: the feed's pure core.

One raw WebSocket text frame in (``str`` or ``bytes``), one ``Result`` out. No sockets,
clock or files: the shell passes the local receive time and the symbol table in, and owns
the per-stream sequence state (``services.feed.sequencer``). Nothing here raises on bad input:
every malformed, implausible or foreign frame becomes a rejection with a reason from
``services.feed.firewall``; only misuse by the caller (a receive time that is not an int)
raises ``DecodeError``.

What a frame becomes
--------------------
- ``trade``, ``aggTrade``, ``bookTicker``, ``markPriceUpdate``: status TICK, with ``tick``
  holding the fields of one ring record (``common.records``).
- ``kline`` (``detail`` = ``Candle``), ``depthUpdate`` (``DepthInfo``), ``24hrTicker``,
  arrays from ``!markPrice@arr`` / ``!ticker@arr`` (``detail`` = element count), the REST
  depth snapshot (``depthSnapshot``, ``SnapshotInfo``) and the REST ``openInterest`` body:
  status EVENT, counted by type, nothing for the ring.
- ``{"result": ..., "id": N}`` replies: CONTROL ``control``; error replies: CONTROL
  ``controlError``.
- everything else: REJECTED with a reason. The sequencer (``services.feed.sequencer``) may
  turn a TICK/EVENT into DUPLICATE (dropped) or attach a ``Gap`` (kept).

Two paths, one answer
---------------------
Fast path: msgspec decodes an ASCII combined-stream frame straight into typed Structs (a
union tagged by ``e``: ``services.feed.schema``). That decode *is* the type firewall
(prices are strings, ids and times ints, ``m`` a bool, missing fields fail) and costs about
half of ``orjson.loads`` into dicts. Anything it does not take (raw payloads, control replies, REST bodies, any
frame that fails typed decoding) goes the generic path: untyped JSON decode, classify the
shape, ``msgspec.convert`` to the same Structs. Both paths share the Structs and the
finishers, so the generic path is the reference and the fuzz tests check that the fast
path never disagrees with it. Non-ASCII frames always take the generic path: the typed
decoder skips ignored fields without checking their UTF-8. One tolerated difference: a
number too large for a float (``1e999``) inside a field we ignore passes the fast path,
which skips ignored fields unparsed, while the generic path calls the frame ``bad_json``.

Decimal strings are parsed with ``float()``, which also accepts spellings Binance never
sends (``" 1.5"``, ``"1_000"``, ``"1e3"``); the firewall judges the value, and ``"nan"``,
``"inf"`` and ``"1e999"`` fail it. A non-ASCII string (Arabic-Indic digits, which a JSON
``\\u`` escape can smuggle into an ASCII frame and float() would read) is not a number.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import msgspec
from msgspec import UNSET

from common.errors import DecodeError
from common.records import Flag, Kind
from services.feed import firewall as fw
from services.feed.firewall import MAX_EVENT_MS, MAX_ID, MIN_EVENT_MS
# what a frame becomes (results.py); the feed's modules know these as codec.Result, codec.TICK, ...
from services.feed.results import (CONTROL, CONTROL_ERROR, CONTROL_REPLY, DEPTH_SNAPSHOT, DUPLICATE,  # noqa: F401
                                   EVENT, OPEN_INTEREST, REJECTED, STATUS_NAMES, TICK, Candle, DepthInfo, Gap,
                                   Result, SnapshotInfo, Tick)
from services.feed.schema import (ARRAY_TAGS, BY_TAG, UNSUPPORTED_EVENTS, AggTrade, Book, Depth, Kline, Mark,
                                  OpenInterest, Snapshot, Ticker, Trade, decode_any, decode_wrapped)

_TRADE = int(Kind.TRADE)
_AGG = int(Kind.AGG_TRADE)
_BOOK = int(Kind.BOOK)
_MARK = int(Kind.MARK)
_MAKER = int(Flag.BUYER_IS_MAKER)
_NON_MARKET = int(Flag.NON_MARKET)
_MISSING = object()
_MAX_PRICE = fw.MAX_PRICE
_MAX_QTY = fw.MAX_QTY
_MAX_FRAME = fw.MAX_FRAME_BYTES


def _reject(reason: str, event: str | None = None, symbol: object = None) -> Result:
    return Result(REJECTED, event, symbol if type(symbol) is str else None, None, 0, reason)


# ---------------------------------------------------------------------------- numbers
# float() costs ~4x a dict hit, and a market repeats the same few thousand price and size
# strings all day: memoise. float is pure, so the cache changes speed, never an answer.
_FLOATS: dict[str, float] = {}
_FLOATS_MAX = 1 << 16  # entries; cleared when full (a burst of misses, then warm again)
_fget = _FLOATS.get  # bound once: clear() keeps the same dict
_nan = math.nan


def _num(s: str) -> float:
    """float(s), or NaN when s is not an ASCII number (the firewall then names the field).

    Every decimal string goes through here or through a hit in ``_FLOATS``, which only this
    function fills. ASCII only: JSON escapes (``"\\u0661"``) can put Arabic-Indic digits
    into an ASCII frame, and float() would read them as 1.
    """
    v = _FLOATS.get(s)
    if v is None:
        try:
            v = float(s) if s.isascii() else _nan
        except ValueError:
            v = _nan
        if len(_FLOATS) >= _FLOATS_MAX:
            _FLOATS.clear()
        _FLOATS[s] = v
    return v


def _levels_reason(levels: list[tuple[str, str]]) -> str | None:
    """A book side: every price ``firewall.is_valid_price``, every size
    ``firewall.is_valid_volume`` (``"0"`` deletes a level). Inlined: a diff has hundreds."""
    get = _fget
    for p, q in levels:
        fp = get(p)
        if fp is None:
            fp = _num(p)
        if not 0.0 < fp < _MAX_PRICE:
            return fw.BAD_PRICE
        fq = get(q)
        if fq is None:
            fq = _num(q)
        if not 0.0 <= fq <= _MAX_QTY:
            return fw.BAD_QTY
    return None


# ---------------------------------------------------------------------------- finishers
# One per Struct (``trade`` and ``aggTrade`` share one): symbol, ids, times, values, in that
# order; the first failure names the reason. ``lo``/``hi`` is the window event times must fall
# in (see ``time_window``). The memoised float reads (``get(x)``, else ``_num(x)``) are
# ``_num`` inlined: a call per field would cost more than the lookup on the hot path.
def _fin_trade(d: Trade | AggTrade, stream: str | None, recv_ns: int, lo: int, hi: int,
               symbols: Mapping[str, int]) -> Result:
    """``trade`` and ``aggTrade``: one finisher, since both are a trade tick under the same
    firewall rule (``firewall.trade_reason``); they differ only in their ids, kind and flags.
    One function with two type branches costs ~1-2% of a decode; a shared helper would cost
    a call and a tuple per tick."""
    s = d.s
    agg = type(d) is AggTrade
    event = "aggTrade" if agg else "trade"
    if d.M is not UNSET:
        return _reject(fw.SPOT_FORMAT, event, s)
    sid = symbols.get(s)
    if sid is None:
        return _reject(fw.UNKNOWN_SYMBOL, event, s)
    if agg:
        t = d.a
        if not (0 <= t <= MAX_ID and 0 <= d.f <= d.l <= MAX_ID):
            return _reject(fw.BAD_ID, event, s)
    else:
        t = d.t
        if not 0 <= t <= MAX_ID:
            return _reject(fw.BAD_ID, event, s)
    e_ms = d.E
    t_ms = d.T
    if not (lo <= e_ms <= hi and lo <= t_ms <= hi):
        return _reject(fw.BAD_TIMESTAMP, event, s)
    get = _fget
    p = get(d.p)
    if p is None:
        p = _num(d.p)
    q = get(d.q)
    if q is None:
        q = _num(d.q)
    if not 0.0 < p < _MAX_PRICE:  # = firewall.trade_reason, inlined: test_firewall_agreement.py
        return _reject(fw.BAD_PRICE, event, s)
    if not 0.0 < q <= _MAX_QTY:
        return _reject(fw.BAD_QTY, event, s)
    flags = _MAKER if d.m else 0
    if agg:
        return Result(TICK, event, s, Tick(sid, _AGG, flags, recv_ns, t_ms, t, p, q, 0.0, 0.0), e_ms)
    x = d.X
    if x is not UNSET and x != "MARKET":
        flags |= _NON_MARKET
    return Result(TICK, event, s, Tick(sid, _TRADE, flags, recv_ns, t_ms, t, p, q, 0.0, 0.0), e_ms)


def _fin_book(d: Book, stream: str | None, recv_ns: int, lo: int, hi: int,
              symbols: Mapping[str, int]) -> Result:
    s = d.s
    sid = symbols.get(s)
    if sid is None:
        return _reject(fw.UNKNOWN_SYMBOL, "bookTicker", s)
    u = d.u
    if not 0 <= u <= MAX_ID:
        return _reject(fw.BAD_ID, "bookTicker", s)
    e_ms = d.E
    if not (lo <= e_ms <= hi and lo <= d.T <= hi):
        return _reject(fw.BAD_TIMESTAMP, "bookTicker", s)
    get = _fget
    b = get(d.b)
    if b is None:
        b = _num(d.b)
    bq = get(d.B)
    if bq is None:
        bq = _num(d.B)
    a = get(d.a)
    if a is None:
        a = _num(d.a)
    aq = get(d.A)
    if aq is None:
        aq = _num(d.A)
    # = firewall.book_reason, inlined (hot path; tests/fuzz/test_firewall_agreement.py pins it)
    if not (0.0 < b < _MAX_PRICE and 0.0 < a < _MAX_PRICE):
        return _reject(fw.BAD_PRICE, "bookTicker", s)
    if not (0.0 < bq <= _MAX_QTY and 0.0 < aq <= _MAX_QTY):
        return _reject(fw.BAD_QTY, "bookTicker", s)
    if b > a:
        return _reject(fw.CROSSED_BOOK, "bookTicker", s)
    return Result(TICK, "bookTicker", s, Tick(sid, _BOOK, 0, recv_ns, e_ms, u, b, bq, a, aq), e_ms)


def _fin_mark(d: Mark, stream: str | None, recv_ns: int, lo: int, hi: int,
              symbols: Mapping[str, int]) -> Result:
    s = d.s
    sid = symbols.get(s)
    if sid is None:
        return _reject(fw.UNKNOWN_SYMBOL, "markPriceUpdate", s)
    e_ms = d.E
    nxt = d.T  # next funding time: hours ahead, so only its plausibility is checked
    if not (lo <= e_ms <= hi and (nxt == 0 or MIN_EVENT_MS <= nxt <= MAX_EVENT_MS)):
        return _reject(fw.BAD_TIMESTAMP, "markPriceUpdate", s)
    p = _num(d.p)
    i = _num(d.i)
    r = 0.0 if d.r == "" else _num(d.r)
    why = fw.mark_reason(p, i, r)
    if why is not None:
        return _reject(why, "markPriceUpdate", s)
    return Result(TICK, "markPriceUpdate", s, Tick(sid, _MARK, 0, recv_ns, e_ms, 0, p, r, i, 0.0), e_ms)


def _fin_depth(d: Depth, stream: str | None, recv_ns: int, lo: int, hi: int,
               symbols: Mapping[str, int]) -> Result:
    s = d.s
    if symbols.get(s) is None:
        return _reject(fw.UNKNOWN_SYMBOL, "depthUpdate", s)
    if not (0 <= d.pu <= MAX_ID and 0 <= d.U <= d.u <= MAX_ID):
        return _reject(fw.BAD_ID, "depthUpdate", s)
    e_ms = d.E
    if not (lo <= e_ms <= hi and lo <= d.T <= hi):
        return _reject(fw.BAD_TIMESTAMP, "depthUpdate", s)
    why = _levels_reason(d.b) or _levels_reason(d.a)
    if why is not None:
        return _reject(why, "depthUpdate", s)
    partial = stream is not None and ("@depth5" in stream or "@depth10" in stream
                                      or "@depth20" in stream)
    info = DepthInfo(d.U, d.u, d.pu, partial, len(d.b), len(d.a))
    return Result(EVENT, "depthUpdate", s, None, e_ms, None, info)


def _fin_kline(d: Kline, stream: str | None, recv_ns: int, lo: int, hi: int,
               symbols: Mapping[str, int]) -> Result:
    s = d.s
    if symbols.get(s) is None:
        return _reject(fw.UNKNOWN_SYMBOL, "kline", s)
    k = d.k
    if not (-1 <= k.f <= MAX_ID and -1 <= k.L <= MAX_ID and 0 <= k.n <= MAX_ID):
        return _reject(fw.BAD_ID, "kline", s)  # f = L = -1: a candle without trades
    e_ms = d.E
    if not (lo <= e_ms <= hi and MIN_EVENT_MS <= k.t <= MAX_EVENT_MS
            and MIN_EVENT_MS <= k.T <= MAX_EVENT_MS):
        return _reject(fw.BAD_TIMESTAMP, "kline", s)
    o, h, low, c, v = _num(k.o), _num(k.h), _num(k.l), _num(k.c), _num(k.v)
    if k.t >= k.T or not fw.is_valid_candle(o, h, low, c, v):
        return _reject(fw.BAD_CANDLE, "kline", s)
    q, vb = _num(k.q), _num(k.V)
    if not (fw.is_valid_volume(q) and fw.is_valid_volume(vb) and fw.is_valid_volume(_num(k.Q))):
        return _reject(fw.BAD_QTY, "kline", s)
    candle = Candle(k.i, k.t, k.T, o, h, low, c, v, q, vb, k.n, k.x, k.f, k.L)
    return Result(EVENT, "kline", s, None, e_ms, None, candle)


def _fin_ticker(d: Ticker, stream: str | None, recv_ns: int, lo: int, hi: int,
                symbols: Mapping[str, int]) -> Result:
    s = d.s
    if d.b is not UNSET:
        return _reject(fw.SPOT_FORMAT, "24hrTicker", s)
    if symbols.get(s) is None:
        return _reject(fw.UNKNOWN_SYMBOL, "24hrTicker", s)
    if not (lo <= d.E <= hi and MIN_EVENT_MS <= d.O <= d.C <= MAX_EVENT_MS):
        return _reject(fw.BAD_TIMESTAMP, "24hrTicker", s)
    ok = fw.is_valid_price
    if not (ok(_num(d.c)) and ok(_num(d.o)) and ok(_num(d.h)) and ok(_num(d.l))
            and ok(_num(d.w)) and math.isfinite(_num(d.p)) and math.isfinite(_num(d.P))):
        return _reject(fw.BAD_PRICE, "24hrTicker", s)
    vol = fw.is_valid_volume
    if not (vol(_num(d.v)) and vol(_num(d.q)) and vol(_num(d.Q))):
        return _reject(fw.BAD_QTY, "24hrTicker", s)
    return Result(EVENT, "24hrTicker", s, None, d.E)


class _AnySymbol:
    """Array streams carry every listed symbol: their elements need no symbol table."""

    @staticmethod
    def get(key: str, default: object = None) -> int:
        return 0


_ANY_SYMBOL: Any = _AnySymbol()


def _fin_array(items: list, stream: str | None, recv_ns: int, lo: int, hi: int,
               symbols: Mapping[str, int]) -> Result:
    if not items:
        return _reject(fw.UNKNOWN_EVENT)
    cls = type(items[0])
    event = cls.__struct_config__.tag
    fin = _FINISH[cls]
    for item in items:
        if type(item) is not cls:
            return _reject(fw.WRONG_TYPE, event)
        res = fin(item, stream, recv_ns, lo, hi, _ANY_SYMBOL)
        if res.status == REJECTED:
            return _reject(res.reason, event, res.symbol)
    return Result(EVENT, event, None, None, items[0].E, None, len(items))


def _fin_snapshot(d: Snapshot, stream: str | None, recv_ns: int, lo: int, hi: int,
                  symbols: Mapping[str, int]) -> Result:
    if not 0 <= d.lastUpdateId <= MAX_ID:
        return _reject(fw.BAD_ID, DEPTH_SNAPSHOT)
    if not (lo <= d.E <= hi and lo <= d.T <= hi):
        return _reject(fw.BAD_TIMESTAMP, DEPTH_SNAPSHOT)
    why = _levels_reason(d.bids) or _levels_reason(d.asks)
    if why is not None:
        return _reject(why, DEPTH_SNAPSHOT)
    info = SnapshotInfo(d.lastUpdateId, len(d.bids), len(d.asks))
    return Result(EVENT, DEPTH_SNAPSHOT, None, None, d.E, None, info)


def _fin_open_interest(d: OpenInterest, stream: str | None, recv_ns: int, lo: int, hi: int,
                       symbols: Mapping[str, int]) -> Result:
    s = d.symbol
    if symbols.get(s) is None:
        return _reject(fw.UNKNOWN_SYMBOL, OPEN_INTEREST, s)
    if not lo <= d.time <= hi:
        return _reject(fw.BAD_TIMESTAMP, OPEN_INTEREST, s)
    if not fw.is_valid_volume(_num(d.openInterest)):
        return _reject(fw.BAD_QTY, OPEN_INTEREST, s)
    return Result(EVENT, OPEN_INTEREST, s, None, d.time)


_FINISH: dict[type, Any] = {
    Trade: _fin_trade, AggTrade: _fin_trade, Book: _fin_book, Mark: _fin_mark,
    Depth: _fin_depth, Kline: _fin_kline, Ticker: _fin_ticker, list: _fin_array,
    Snapshot: _fin_snapshot, OpenInterest: _fin_open_interest,
}


# ---------------------------------------------------------------------------- generic path
def _convert(obj: dict, cls: type, event: str | None) -> Any:
    """``obj`` as a ``cls`` Struct (the same type rules as the fast path), or a rejection."""
    try:
        st = msgspec.convert(obj, cls)
    except msgspec.ValidationError as exc:
        reason = (fw.MISSING_FIELD if str(exc).startswith("Object missing required field")
                  else fw.WRONG_TYPE)
        return _reject(reason, event, obj.get("s", obj.get("symbol")))
    return st


def _event_struct(d: dict) -> Any:
    """A payload with an ``e``: its Struct, or a rejection."""
    e = d["e"]
    if type(e) is not str:
        return _reject(fw.WRONG_TYPE)
    cls = BY_TAG.get(e)
    if cls is None:
        return _reject(fw.UNSUPPORTED_EVENT, e) if e in UNSUPPORTED_EVENTS else _reject(fw.UNKNOWN_EVENT)
    if ((cls is Trade or cls is AggTrade) and "M" in d) or (cls is Ticker and "b" in d) \
            or (cls is Depth and "pu" not in d and "T" not in d):
        return _reject(fw.SPOT_FORMAT, e, d.get("s"))
    return _convert(d, cls, e)


def _payload(d: object, stream: str | None, recv_ns: int, lo: int, hi: int,
             symbols: Mapping[str, int]) -> Result:
    if type(d) is list:
        items = []
        for el in d:
            if type(el) is not dict:
                return _reject(fw.WRONG_TYPE)
            e = el.get("e")
            if type(e) is not str:
                return _reject(fw.UNKNOWN_EVENT if e is None else fw.WRONG_TYPE)
            if e not in ARRAY_TAGS:
                return _reject(fw.UNKNOWN_EVENT)
            st = _event_struct(el)
            if type(st) is Result:
                return st
            items.append(st)
        return _fin_array(items, stream, recv_ns, lo, hi, symbols)
    if type(d) is not dict:
        return _reject(fw.WRONG_TYPE)
    if "e" in d:
        st = _event_struct(d)
    elif "lastUpdateId" in d:  # REST depth; the futures body has E and T, spot's has not
        if "E" not in d and "T" not in d:
            return _reject(fw.SPOT_FORMAT, DEPTH_SNAPSHOT)
        st = _convert(d, Snapshot, DEPTH_SNAPSHOT)
    elif "openInterest" in d:
        st = _convert(d, OpenInterest, OPEN_INTEREST)
    elif "u" in d and "s" in d and "b" in d and "a" in d:  # spot bookTicker: no e, E or T
        return _reject(fw.SPOT_FORMAT, "bookTicker", d.get("s"))
    else:
        return _reject(fw.UNKNOWN_EVENT)
    if type(st) is Result:
        return st
    return _FINISH[type(st)](st, stream, recv_ns, lo, hi, symbols)


def _unparsable(frame: str | bytes) -> Result:
    """Why a frame that is not JSON failed: empty, not UTF-8, or bad JSON."""
    if not frame.strip():
        return _reject(fw.EMPTY_FRAME)
    try:
        frame.decode("utf-8") if type(frame) is bytes else frame.encode("utf-8")  # type: ignore[union-attr]
    except UnicodeError:
        return _reject(fw.NOT_UTF8)
    return _reject(fw.BAD_JSON)


def _generic(frame: object, recv_ns: int, lo: int, hi: int,
             symbols: Mapping[str, int]) -> Result:
    tp = type(frame)
    if tp is bytearray or tp is memoryview:
        frame = bytes(frame)  # type: ignore[arg-type]
    elif tp is not bytes and tp is not str:
        return _reject(fw.WRONG_TYPE)
    if not frame:
        return _reject(fw.EMPTY_FRAME)
    if len(frame) > _MAX_FRAME:  # type: ignore[arg-type]
        return _reject(fw.TOO_LARGE)
    try:
        obj = decode_any(frame)
    except Exception:  # noqa: BLE001 - msgspec errors, RecursionError, UnicodeEncodeError
        return _unparsable(frame)
    stream = None
    if type(obj) is dict:
        if "stream" in obj or "data" in obj:
            stream = obj.get("stream", _MISSING)
            payload = obj.get("data", _MISSING)
            if stream is _MISSING or payload is _MISSING:
                return _reject(fw.MISSING_FIELD)
            if type(stream) is not str:
                return _reject(fw.WRONG_TYPE)
        elif "result" in obj and "id" in obj:
            return Result(CONTROL, CONTROL_REPLY, None, None, 0, None, obj["id"])
        elif "error" in obj or ("code" in obj and "msg" in obj and "e" not in obj):
            return Result(CONTROL, CONTROL_ERROR, None, None, 0, None, obj)
        else:
            payload = obj
    elif type(obj) is list:
        payload = obj
    else:
        return _reject(fw.WRONG_TYPE)  # JSON, but a bare number, string, bool or null
    return _payload(payload, stream, recv_ns, lo, hi, symbols)


# ---------------------------------------------------------------------------- public API
def time_window(recv_ns: int | None, past_ms: int = fw.PAST_TOLERANCE_MS,
                future_ms: int = fw.FUTURE_TOLERANCE_MS) -> tuple[int, int]:
    """The ``[lo, hi]`` event times (ms) accepted for a frame received at ``recv_ns``:
    exactly the times ``firewall.is_valid_timestamp(t, recv_ns // 10**6, past, future)``
    accepts. Without a receive time only the absolute plausibility bounds apply (the
    sequencer then checks each stream against its own previous event time)."""
    if recv_ns is None:
        return MIN_EVENT_MS, MAX_EVENT_MS
    ref = recv_ns // 1_000_000
    lo = ref - past_ms
    hi = ref + future_ms
    return (lo if lo > MIN_EVENT_MS else MIN_EVENT_MS), (hi if hi < MAX_EVENT_MS else MAX_EVENT_MS)


def decode(frame: object, recv_ns: int | None, symbols: Mapping[str, int],
           past_ms: int = fw.PAST_TOLERANCE_MS, future_ms: int = fw.FUTURE_TOLERANCE_MS) -> Result:
    """Decode and validate one raw frame. Never raises on any ``frame``.

    ``recv_ns``: local receive time (ns since the epoch), the reference clock for event
    times; None when unknown (a capture without receive times: then only plausibility is
    checked here, and ``sequencer.sequence(..., stream_clock=True)`` checks each stream against its
    own previous event time). ``symbols``: upper-case symbol -> symbol id; only ``.get``
    is used.
    """
    if type(recv_ns) is int:
        ref = recv_ns // 1_000_000
        lo = ref - past_ms
        hi = ref + future_ms
        if lo < MIN_EVENT_MS:
            lo = MIN_EVENT_MS
        if hi > MAX_EVENT_MS:
            hi = MAX_EVENT_MS
    elif recv_ns is None:
        lo = MIN_EVENT_MS
        hi = MAX_EVENT_MS
        recv_ns = 0
    else:
        raise DecodeError(f"recv_ns must be an int or None, not {type(recv_ns).__name__}")
    tp = type(frame)
    # ASCII only: the typed decoder skips ignored fields without validating their UTF-8
    if (tp is bytes or tp is str) and 0 < len(frame) <= _MAX_FRAME and frame.isascii():  # type: ignore
        try:
            w = decode_wrapped(frame)
        except Exception:  # noqa: BLE001 - not a well-typed combined frame: the generic path decides
            pass
        else:
            d = w.data
            return _FINISH[type(d)](d, w.stream, recv_ns, lo, hi, symbols)
    return _generic(frame, recv_ns, lo, hi, symbols)


def decode_generic(frame: object, recv_ns: int | None, symbols: Mapping[str, int],
                   past_ms: int = fw.PAST_TOLERANCE_MS,
                   future_ms: int = fw.FUTURE_TOLERANCE_MS) -> Result:
    """``decode`` without the fast path: the reference the fuzz tests compare it with."""
    if recv_ns is not None and type(recv_ns) is not int:
        raise DecodeError(f"recv_ns must be an int or None, not {type(recv_ns).__name__}")
    lo, hi = time_window(recv_ns, past_ms, future_ms)
    return _generic(frame, recv_ns or 0, lo, hi, symbols)
