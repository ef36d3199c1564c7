"""Binance USD-M wire format: payload bytes, WebSocket frames, decimal strings.

Hot-path payloads are rendered with ``bytes %`` templates whose per-symbol constant parts
(event type, symbol, stream wrapper) are baked in once; only times, ids and the price and
quantity strings (cached per symbol) are spliced per event. The field order is Binance's
own (as in the recorded frames of ``data/hftbacktest_btcusdt_20240808.gz``), prices and
quantities are strings, ids and times numbers.

Frames are built here too (RFC 6455 server frames are unmasked: a header and the payload),
so the server can hand a whole batch of frames to the transport in one write instead of
awaiting aiohttp's writer once per message.
"""

from __future__ import annotations

import orjson

# ---------------------------------------------------------------------------- decimals


def fmt_units(units: int, decimals: int) -> str:
    """Integer units of ``10**-decimals`` -> Binance decimal string (``6180030, 2`` -> ``61800.30``)."""
    if decimals <= 0:
        return str(units * 10**-decimals)
    neg = units < 0
    s = str(-units if neg else units).rjust(decimals + 1, "0")
    out = s[:-decimals] + "." + s[-decimals:]
    return "-" + out if neg else out


def fmt_scaled(units: int, decimals: int, out_decimals: int) -> str:
    """Re-express ``units`` (``10**-decimals``) with ``out_decimals`` (more, or truncated)."""
    if out_decimals >= decimals:
        return fmt_units(units * 10 ** (out_decimals - decimals), out_decimals)
    q = abs(units) // 10 ** (decimals - out_decimals)  # truncate toward zero, exactly
    return fmt_units(-q if units < 0 else q, out_decimals)


class DecimalCache:
    """Units -> encoded decimal string, memoised (a symbol trades near a few hundred prices at
    a time).

    Hot loops read ``cache.get(units) or cache_obj(units)``: a dict lookup on the common path.
    Bounded per symbol and kind (price, quantity): a long run's slowly drifting prices and its
    thousands of distinct quantities would otherwise grow every symbol's cache for ever (at
    300 symbols, 200,000 entries each would be ~12 GiB, and every loop of the capture brings a
    new price level); when full it starts again empty (a miss costs one format call).
    """

    __slots__ = ("decimals", "cache")

    MAX_ENTRIES = 1_024

    def __init__(self, decimals: int) -> None:
        self.decimals = decimals
        self.cache: dict[int, bytes] = {}

    def __call__(self, units: int) -> bytes:
        b = self.cache.get(units)
        if b is None:
            if len(self.cache) >= self.MAX_ENTRIES:
                self.cache.clear()
            b = fmt_units(units, self.decimals).encode()
            self.cache[units] = b
        return b


# ---------------------------------------------------------------------------- frames
# Header of a final text frame by payload length, for every length below 64 KiB (2.4 MB,
# built once): a list index is ~6x cheaper than composing the header per frame.
HEADERS = [b"\x81" + bytes((n,)) if n < 126 else b"\x81\x7e" + n.to_bytes(2, "big")
           for n in range(65536)]


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented WebSocket text frame."""
    n = len(payload)
    if n < 65536:
        return HEADERS[n] + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


# ---------------------------------------------------------------------------- payloads
TRADE_FMT = b'{"e":"trade","E":%d,"T":%d,"s":"%s","t":%d,"p":"%s","q":"%s","X":"%s","m":%s}'
AGG_FMT = b'{"e":"aggTrade","E":%d,"a":%d,"s":"%s","p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s}'
BOOK_FMT = b'{"e":"bookTicker","u":%d,"s":"%s","b":"%s","B":"%s","a":"%s","A":"%s","T":%d,"E":%d}'
MARK_FMT = b'{"e":"markPriceUpdate","E":%d,"s":"%s","p":"%s","P":"%s","i":"%s","r":"%s","T":%d}'
KLINE_FMT = (b'{"e":"kline","E":%d,"s":"%s","k":{"t":%d,"T":%d,"s":"%s","i":"1m","f":%d,"L":%d,'
             b'"o":"%s","c":"%s","h":"%s","l":"%s","v":"%s","n":%d,"x":%s,"q":"%s","V":"%s",'
             b'"Q":"%s","B":"0"}}')
BOOL = (b"false", b"true")


def combined_prefix(stream: str) -> bytes:
    """The combined-stream wrapper up to the payload; close it with ``b"}"``."""
    return b'{"stream":"' + stream.encode() + b'","data":'


def combined(stream: str, data: bytes) -> bytes:
    return combined_prefix(stream) + data + b"}"


# ---------------------------------------------------------------------------- control replies
def reply(result: object, req_id: object) -> bytes:
    """``{"result":...,"id":N}``: Binance's answer to SUBSCRIBE and friends."""
    return orjson.dumps({"result": result, "id": req_id})


def ws_error(code: int, msg: str, req_id: object = None) -> bytes:
    """``{"error":{"code":N,"msg":"..."},"id":N}``: Binance's answer to a bad control message."""
    body: dict[str, object] = {"error": {"code": code, "msg": msg}}
    if req_id is not None:
        body["id"] = req_id
    return orjson.dumps(body)


def rest_error(code: int, msg: str) -> bytes:
    """Compact REST error body, e.g. ``{"code":-1121,"msg":"Invalid symbol."}``."""
    return orjson.dumps({"code": code, "msg": msg})
