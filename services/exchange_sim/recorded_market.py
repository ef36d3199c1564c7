"""The recorded market the sim replays: one symbol's trades and book tickers, as arrays.

The capture file holds one message a line, ``<local receive time ns> <raw text>``, the raw
text exactly as Binance sent it (combined-stream wrappers, depth diffs, one unwrapped REST
snapshot). ``load`` keeps only what the sim serves, ``trade`` and ``bookTicker``, merged into
one event order and stored column-wise as integers:

- prices in units of ``10**-price_decimals`` and quantities in units of
  ``10**-qty_decimals`` (the decimals of the strings on the wire), so nothing is ever a
  float on the way from the file to the socket and every string round-trips exactly;
- events ordered by exchange time ``E`` (ties keep arrival order): ``E`` only increases
  within one stream, and merging on it gives a schedule whose due times never step back.

Depth diffs and the REST snapshot are skipped (the sim answers ``/fapi/v1/depth`` from the
book ticker). The loader runs once, in the shell, before the event loop starts.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import numpy as np
import orjson

from common.errors import DecodeError

TRADE = 0  # kind codes of the merged event arrays
BOOK = 1

BUNDLED_CAPTURE = Path(__file__).resolve().parent / "data" / "hftbacktest_btcusdt_20240808.gz"


@dataclass(frozen=True, kw_only=True, eq=False)
class Capture:
    """One symbol's recorded trades and book tickers, merged in event-time order.

    Column arrays all have ``n`` rows. For a trade, ``p1``/``q1`` are price and quantity and
    ``p2``/``q2`` are 0; for a book ticker they are bid, bid qty, ask, ask qty.
    """

    symbol: str
    price_decimals: int  # decimals of the price strings ("61800.30" -> 2)
    qty_decimals: int  # decimals of the quantity strings ("0.006" -> 3)
    tick_units: int  # price grid in price units (BTCUSDT: 10 units of 0.01 = tick 0.1)
    step_units: int  # quantity grid in quantity units
    kind: np.ndarray  # uint8, TRADE or BOOK
    e_ms: np.ndarray  # int64, event time E
    t_ms: np.ndarray  # int64, transaction time T
    ident: np.ndarray  # int64, trade id t (trade) or update id u (book)
    p1: np.ndarray  # int64
    q1: np.ndarray  # int64
    p2: np.ndarray  # int64
    q2: np.ndarray  # int64
    maker: np.ndarray  # bool, trade m (buyer is maker)
    x_code: np.ndarray  # uint8, index into x_values (trade X)
    x_values: tuple[str, ...]
    next_trade: np.ndarray  # int64, index of the next trade row after this one, -1 if none
    n_trades: int
    n_books: int

    @property
    def n(self) -> int:
        return int(self.kind.shape[0])

    @property
    def span_ms(self) -> int:
        """Event time from the first to the last event."""
        return int(self.e_ms[-1] - self.e_ms[0])

    @property
    def typical_gap_ms(self) -> int:
        """The median positive step between consecutive event times (at least 1 ms)."""
        d = np.diff(self.e_ms)
        d = d[d > 0]
        return max(1, int(np.median(d))) if d.size else 1

    def trade_rows(self) -> np.ndarray:
        """Row indices of the trades (computed once: the columns never change; read-only)."""
        return self._rows(TRADE)

    def book_rows(self) -> np.ndarray:
        """Row indices of the book tickers (computed once; read-only)."""
        return self._rows(BOOK)

    def _rows(self, kind: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_rows_cache", {})  # frozen: no attribute, a dict entry
        rows = cache.get(kind)
        if rows is None:
            rows = cache[kind] = np.flatnonzero(self.kind == kind)
            rows.flags.writeable = False
        return rows


def string_decimals(s: str) -> int:
    """The decimals a decimal string is written with, trailing zeros counted ("61800.30" -> 2)."""
    dot = s.find(".")
    return 0 if dot < 0 else len(s) - dot - 1


def string_units(s: str, dec: int) -> int:
    """Decimal string -> integer units of ``10**-dec`` (exact; rejects finer strings)."""
    dot = s.find(".")
    if dot < 0:
        return int(s) * 10**dec
    frac = len(s) - dot - 1
    if frac > dec:
        raise DecodeError(f"{s!r} has more than {dec} decimals")
    return int(s[:dot] + s[dot + 1:]) * 10 ** (dec - frac)


def _payloads(path: Path) -> list[tuple[int, dict]]:
    """(arrival index, payload) of every trade and bookTicker message in the file."""
    out: list[tuple[int, dict]] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for n, line in enumerate(fh):
            sep = line.find(b" ")
            if sep < 0:
                continue
            raw = line[sep + 1:]
            head = raw[:48]
            # skip depth diffs (most of the bytes) without parsing them
            if b"@trade" not in head and b"@bookTicker" not in head and b'"e":"' not in head:
                continue
            try:
                msg = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"{path}:{n + 1}: not JSON: {exc}") from exc
            data = msg.get("data", msg) if isinstance(msg, dict) else None
            if isinstance(data, dict) and data.get("e") in ("trade", "bookTicker"):
                out.append((n, data))
    return out


CACHE_FORMAT = 1  # bump when Capture's fields or their meaning change


def cache_dir() -> Path:
    """Where parsed captures are kept: $AEGIS_CACHE_DIR, else $XDG_CACHE_HOME/aegis, else ~/.cache/aegis."""
    env = os.environ.get("AEGIS_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aegis"


def _cache_file(p: Path) -> Path:
    st = p.stat()
    key = f"{CACHE_FORMAT}|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return cache_dir() / f"capture-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def load(path: str | Path | None = None, *, use_cache: bool = True) -> Capture:
    """Read a capture file (the bundled BTCUSDT capture by default) into a ``Capture``.

    Parsing the JSON takes ~2.6 s; the parsed arrays are cached on disk (keyed by path,
    size, mtime and ``CACHE_FORMAT``) so a restarted sim is ready in milliseconds. Any
    problem with the cache (unreadable, stale, disk full) falls back to parsing.
    """
    p = Path(path) if path else BUNDLED_CAPTURE
    if not use_cache:
        return parse(p)
    try:
        cf = _cache_file(p)
        with np.load(cf, allow_pickle=False) as z:
            return _from_arrays(z)
    except (OSError, ValueError, KeyError):
        pass
    cap = parse(p)
    try:
        cf.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cf.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **_to_arrays(cap))
        os.replace(tmp, cf)
    except OSError:
        pass  # read-only home, full disk: the next start parses again, nothing breaks
    return cap


def _to_arrays(cap: Capture) -> dict[str, np.ndarray]:
    out = {}
    for f in dataclasses.fields(cap):
        v = getattr(cap, f.name)
        out[f.name] = np.asarray(list(v) if isinstance(v, tuple) else v)
    return out


def _from_arrays(z) -> Capture:
    kw = {}
    for f in dataclasses.fields(Capture):
        a = z[f.name]
        if f.name == "symbol":
            kw[f.name] = str(a)
        elif f.name == "x_values":
            kw[f.name] = tuple(str(x) for x in a.tolist())
        elif a.ndim == 0:
            kw[f.name] = int(a)
        else:
            kw[f.name] = a
    return Capture(**kw)


def parse(p: Path) -> Capture:
    """Parse a capture file (no cache)."""
    rows = _payloads(p)
    trades = [(n, d) for n, d in rows if d["e"] == "trade"]
    books = [(n, d) for n, d in rows if d["e"] == "bookTicker"]
    if not trades or not books:
        raise DecodeError(f"{p}: needs both trade and bookTicker messages")
    symbol = trades[0][1]["s"]
    trades = [(n, d) for n, d in trades if d["s"] == symbol]
    books = [(n, d) for n, d in books if d["s"] == symbol]
    pdec = max(max(string_decimals(d["p"]) for _, d in trades), max(string_decimals(d["b"]) for _, d in books))
    qdec = max(max(string_decimals(d["q"]) for _, d in trades), max(string_decimals(d["B"]) for _, d in books))

    n_t, n_b = len(trades), len(books)
    n = n_t + n_b
    kind = np.empty(n, np.uint8)
    arrival = np.empty(n, np.int64)
    e_ms = np.empty(n, np.int64)
    t_ms = np.empty(n, np.int64)
    ident = np.empty(n, np.int64)
    p1 = np.zeros(n, np.int64)
    q1 = np.zeros(n, np.int64)
    p2 = np.zeros(n, np.int64)
    q2 = np.zeros(n, np.int64)
    maker = np.zeros(n, bool)
    x_code = np.zeros(n, np.uint8)
    x_values: list[str] = []
    for r, (a, d) in enumerate(trades):
        kind[r] = TRADE
        arrival[r] = a
        e_ms[r] = d["E"]
        t_ms[r] = d["T"]
        ident[r] = d["t"]
        p1[r] = string_units(d["p"], pdec)
        q1[r] = string_units(d["q"], qdec)
        maker[r] = bool(d["m"])
        x = d.get("X", "MARKET")
        if x not in x_values:
            x_values.append(x)
        x_code[r] = x_values.index(x)
    for r, (a, d) in enumerate(books, start=n_t):
        kind[r] = BOOK
        arrival[r] = a
        e_ms[r] = d["E"]
        t_ms[r] = d["T"]
        ident[r] = d["u"]
        p1[r] = string_units(d["b"], pdec)
        q1[r] = string_units(d["B"], qdec)
        p2[r] = string_units(d["a"], pdec)
        q2[r] = string_units(d["A"], qdec)

    order = np.lexsort((arrival, e_ms))
    cols = [a[order] for a in (kind, e_ms, t_ms, ident, p1, q1, p2, q2, maker, x_code)]
    kind, e_ms, t_ms, ident, p1, q1, p2, q2, maker, x_code = cols

    is_trade = kind == TRADE
    trade_idx = np.flatnonzero(is_trade)
    next_trade = np.full(n, -1, np.int64)
    next_trade[trade_idx[:-1]] = trade_idx[1:]

    prices = np.concatenate([p1[is_trade], p1[~is_trade], p2[~is_trade]])
    qtys = np.concatenate([q1[is_trade], q1[~is_trade], q2[~is_trade]])
    tick_units = reduce(math.gcd, np.unique(prices).tolist())
    step_units = reduce(math.gcd, np.unique(qtys[qtys > 0]).tolist())
    return Capture(
        symbol=symbol, price_decimals=pdec, qty_decimals=qdec,
        tick_units=int(tick_units), step_units=int(step_units),
        kind=kind, e_ms=e_ms, t_ms=t_ms, ident=ident, p1=p1, q1=q1, p2=p2, q2=q2,
        maker=maker, x_code=x_code, x_values=tuple(x_values) or ("MARKET",),
        next_trade=next_trade, n_trades=n_t, n_books=n_b,
    )
