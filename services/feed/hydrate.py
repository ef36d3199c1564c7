"""Cold-start hydration: the last K closed 1m candles of every symbol, from REST klines.

The brain needs warm indicators before it trades, on first start and after a restart, so
the feed fetches ``/fapi/v1/klines`` for each symbol at start-up and publishes each closed
candle as a ``CANDLE_CLOSED`` message (PUB for whoever listens, the journal so the
orchestrator stores it and a restarted brain can load it).

Pure parts (no sockets, no clock: time comes in as an argument):

- ``page_plan``: which requests cover the last K closed candles (``limit`` <= 1500 each);
- ``parse_row`` / ``closed_candles``: kline rows -> validated ``CandleClosed`` values (the
  firewall's ``is_valid_candle``; rows still open, malformed or implausible are counted by
  reason and dropped);
- ``Budget`` with ``wait_ms`` / ``spend`` / ``observe``: Binance's request-weight
  accounting. Binance counts weight per calendar minute (``X-MBX-USED-WEIGHT-1M`` resets at
  the minute boundary) and answers 429 with ``Retry-After`` when the limit is hit, 418 (an
  IP ban, "banned until <ms>") when a client keeps going. A fixed window that mirrors the
  server's own counter, raised to what the header reports, is exact where a leaky token
  bucket would only approximate it; we also stop at our own budget, below the IP limit, to
  leave room for the order path.

The shell: ``RestClient`` (aiohttp, honouring the budget, retrying 429/418/5xx) and
``hydrate`` (a few workers over the symbols, candles handed to an ``emit`` coroutine).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Mapping, Sequence

import aiohttp
import orjson
import structlog

from common import wire
from common.errors import AegisError, ConfigError, DecodeError, DefinitiveError, TransientError
from services.feed import firewall as fw
from services.feed.streams import backoff_s

log = structlog.get_logger(__name__)

MINUTE_MS = 60_000
INTERVAL_MS = MINUTE_MS  # we hydrate 1m candles; the brain rolls them up
MAX_LIMIT = 1500  # Binance's largest klines ``limit``
PAGE_LIMIT = 1000  # the largest limit of the weight-5 band: 1000 candles cost 5, 1500 cost 10
CLOSE_GRACE_MS = 2_000  # a candle counts as closed this long after its end (late trades,
#                         clock skew between us and the exchange)
IP_WEIGHT_LIMIT_1M = 2400  # Binance USD-M REQUEST_WEIGHT per minute and IP
DEFAULT_429_WAIT_MS = 60_000  # no Retry-After on a 429: the window ends within a minute
DEFAULT_418_WAIT_MS = 120_000  # no Retry-After and no "banned until": Binance's shortest ban
HTTP_TIMEOUT_S = 10.0
MAX_WAIT_S = 30.0  # a client told to wait longer gives up (the caller falls back or skips)
WEIGHT_EXCHANGE_INFO = 1
WEIGHT_TICKER_24H_ALL = 40
_BANNED_UNTIL = re.compile(r"banned until (\d{13})")


# ---------------------------------------------------------------------------- weights, pages
def klines_weight(limit: int) -> int:
    """Request weight of ``/fapi/v1/klines`` by ``limit`` (Binance's published bands)."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


@dataclass(frozen=True, kw_only=True)
class Page:
    """One klines request: candles opening in ``[start_ms, end_ms]``, ``limit`` of them."""

    symbol: str
    start_ms: int
    end_ms: int
    limit: int

    def params(self, interval: str = "1m") -> dict[str, str]:
        return {"symbol": self.symbol, "interval": interval, "startTime": str(self.start_ms),
                "endTime": str(self.end_ms), "limit": str(self.limit)}

    @property
    def weight(self) -> int:
        return klines_weight(self.limit)


def cutoff_ms(now_ms: int) -> int:
    """Candles that end before this are closed."""
    return now_ms - CLOSE_GRACE_MS


def last_closed_open_ms(now_ms: int, interval_ms: int = INTERVAL_MS) -> int:
    """Open time of the newest candle closed at ``now_ms``: it ends by the cutoff."""
    return cutoff_ms(now_ms) // interval_ms * interval_ms - interval_ms


def settle_delay_ms(now_ms: int, interval_ms: int = INTERVAL_MS) -> int:
    """How long to wait so that the candle that just ended counts as closed: hydrating
    right after a boundary would otherwise leave out the candle before the live one."""
    r = now_ms % interval_ms
    return CLOSE_GRACE_MS - r if r < CLOSE_GRACE_MS else 0


def page_plan(symbol: str, k: int, now_ms: int, *, interval_ms: int = INTERVAL_MS,
              page_limit: int = PAGE_LIMIT) -> tuple[Page, ...]:
    """Requests for the last ``k`` closed candles, oldest page first, ``page_limit`` each."""
    if not 1 <= page_limit <= MAX_LIMIT:
        raise ConfigError(f"page_limit must be within 1..{MAX_LIMIT}")
    if k <= 0:
        return ()
    last = last_closed_open_ms(now_ms, interval_ms)
    first = last - (k - 1) * interval_ms
    pages = []
    start = first
    while start <= last:
        n = min(page_limit, (last - start) // interval_ms + 1)
        end = start + (n - 1) * interval_ms
        pages.append(Page(symbol=symbol, start_ms=start, end_ms=end, limit=n))
        start = end + interval_ms
    return tuple(pages)


# ---------------------------------------------------------------------------- rows
def _decimal(x: object) -> float:
    """A Binance decimal string as a float; NaN for anything else (the checks then fail)."""
    if type(x) is not str or not x.isascii():
        return float("nan")
    try:
        return float(x)
    except ValueError:
        return float("nan")


def _is_int(x: object) -> bool:
    return type(x) is int


def parse_row(row: object, symbol: str, interval_ms: int = INTERVAL_MS) -> wire.CandleClosed | str:
    """One klines row ``[open time, o, h, l, c, volume, close time, quote volume, trades,
    taker buy volume, taker buy quote volume, ignore]`` -> a CandleClosed, or the firewall
    reason it is refused for."""
    if not isinstance(row, (list, tuple)):
        return fw.WRONG_TYPE
    if len(row) < 11:
        return fw.MISSING_FIELD
    t, o, h, low, c, v, t_close, q, n, vb = row[:10]
    if not (_is_int(t) and _is_int(t_close) and _is_int(n)):
        return fw.WRONG_TYPE
    if not (fw.MIN_EVENT_MS <= t <= fw.MAX_EVENT_MS and t % interval_ms == 0
            and t_close == t + interval_ms - 1):
        return fw.BAD_TIMESTAMP
    if not all(type(x) is str for x in (o, h, low, c, v, q, vb, row[10])):
        return fw.WRONG_TYPE
    fo, fh, fl, fc, fv = _decimal(o), _decimal(h), _decimal(low), _decimal(c), _decimal(v)
    if not fw.is_valid_candle(fo, fh, fl, fc, fv):
        return fw.BAD_CANDLE
    fq, fvb = _decimal(q), _decimal(vb)
    if not (fw.is_valid_volume(fq) and fw.is_valid_volume(fvb) and fw.is_valid_volume(_decimal(row[10]))):
        return fw.BAD_QTY
    if not 0 <= n <= fw.MAX_ID:
        return fw.BAD_ID
    return wire.CandleClosed(symbol=symbol, interval_s=interval_ms // 1000, open_ms=t, close_ms=t_close,
                             open=fo, high=fh, low=fl, close=fc, volume=fv, quote_volume=fq,
                             trades=n, buy_volume=fvb)


def closed_candles(rows: Sequence[object], symbol: str, now_ms: int, k: int, *,
                   interval_ms: int = INTERVAL_MS) -> tuple[tuple[wire.CandleClosed, ...], dict[str, int]]:
    """The last ``k`` valid closed candles among ``rows`` (ascending, one per open time) and
    the count of refused rows by reason (``open`` for a candle not closed at ``now_ms``)."""
    rejected: Counter[str] = Counter()
    by_open: dict[int, wire.CandleClosed] = {}
    limit = cutoff_ms(now_ms)
    for row in rows:
        out = parse_row(row, symbol, interval_ms)
        if type(out) is str:
            rejected[out] += 1
        elif out.close_ms >= limit:  # type: ignore[union-attr]
            rejected["open"] += 1
        else:
            by_open[out.open_ms] = out  # type: ignore[union-attr]
    ordered = tuple(by_open[t] for t in sorted(by_open))
    return ordered[-k:] if k > 0 else (), dict(rejected)


# ---------------------------------------------------------------------------- request weight
@dataclass(frozen=True, kw_only=True)
class Budget:
    """Request weight spent in the current minute, and any wait the server imposed."""

    limit: int  # weight we allow ourselves per minute (below the IP limit)
    window: int = -1  # the minute (ms // 60000) ``used`` belongs to
    used: int = 0
    blocked_until_ms: int = 0  # after a 429/418: no request before this


def _used(b: Budget, now_ms: int) -> int:
    return b.used if now_ms // MINUTE_MS == b.window else 0


def wait_ms(b: Budget, now_ms: int, weight: int) -> int:
    """How long to wait before a request of ``weight`` may go (0: now)."""
    if now_ms < b.blocked_until_ms:
        return b.blocked_until_ms - now_ms
    used = _used(b, now_ms)
    if used + weight <= b.limit or used == 0:  # a request above the whole budget goes alone
        return 0
    return (now_ms // MINUTE_MS + 1) * MINUTE_MS - now_ms


def spend(b: Budget, now_ms: int, weight: int) -> Budget:
    """The budget after sending a request of ``weight``."""
    return replace(b, window=now_ms // MINUTE_MS, used=_used(b, now_ms) + weight)


def observe(b: Budget, now_ms: int, status: int, used_header: int | None = None,
            retry_after_ms: int | None = None, ban_until: int | None = None) -> Budget:
    """The budget after a response: the server's weight count wins when higher; a 429 or
    418 blocks until ``Retry-After`` (else the ban end, else a default)."""
    if used_header is not None and used_header >= 0:
        mine = _used(b, now_ms)
        if used_header > mine:
            b = replace(b, window=now_ms // MINUTE_MS, used=used_header)
    if status in (418, 429):
        if retry_after_ms is not None:
            until = now_ms + retry_after_ms
        elif ban_until is not None and ban_until > now_ms:
            until = ban_until
        else:
            until = now_ms + (DEFAULT_418_WAIT_MS if status == 418 else DEFAULT_429_WAIT_MS)
        b = replace(b, blocked_until_ms=max(b.blocked_until_ms, until))
    return b


def parse_int_header(value: str | None) -> int | None:
    """A non-negative integer header (``X-MBX-USED-WEIGHT-1M``, ``Retry-After`` seconds)."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 12 else None


def ban_until_ms(body: bytes) -> int | None:
    """The end of an IP ban from a 418 body (``"... banned until 1615183669840. ..."``)."""
    m = _BANNED_UNTIL.search(body[:1000].decode("utf-8", "replace"))
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------- shell: REST
def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class RestStats:
    requests: int = 0
    throttled: int = 0  # 429 and 418 answers
    server_errors: int = 0  # 5xx answers
    waited_s: float = 0.0  # time spent waiting for the budget or a Retry-After


class RestClient:
    """GET JSON from the exchange's REST API within the request-weight budget.

    429/418 wait as the server says (up to ``max_wait_s``, else give up with
    ``TransientError``) and retry; 5xx and network errors retry with backoff; any other
    HTTP error is ``DefinitiveError``; a body that is not JSON is ``DecodeError``.
    """

    def __init__(self, base_url: str, *, weight_budget_1m: int = IP_WEIGHT_LIMIT_1M,
                 max_wait_s: float = MAX_WAIT_S, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.base_url = base_url.rstrip("/")
        self.budget = Budget(limit=weight_budget_1m)
        self.max_wait_s = max_wait_s
        self.clock_ms = clock_ms
        self.stats = RestStats()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        return self._session

    async def _wait_for_budget(self, weight: int) -> None:
        while True:
            ms = wait_ms(self.budget, self.clock_ms(), weight)
            if ms <= 0:
                return
            if ms > self.max_wait_s * 1000:
                raise TransientError(f"REST weight budget: asked to wait {ms / 1000:.0f} s", reason="rate_limited")
            self.stats.waited_s += ms / 1000
            await asyncio.sleep(ms / 1000)

    async def get_json(self, path: str, params: Mapping[str, str] | None = None, *,
                       weight: int = 1, attempts: int = 4) -> Any:
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(1, attempts + 1):
            await self._wait_for_budget(weight)
            self.budget = spend(self.budget, self.clock_ms(), weight)
            self.stats.requests += 1
            try:
                async with self._http().get(url, params=params) as r:
                    body = await r.read()
                    status = r.status
                    self.budget = observe(
                        self.budget, self.clock_ms(), status,
                        parse_int_header(r.headers.get("X-MBX-USED-WEIGHT-1M")),
                        _seconds_ms(parse_int_header(r.headers.get("Retry-After"))),
                        ban_until_ms(body) if status == 418 else None)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                last = repr(exc)[:200]
                await asyncio.sleep(backoff_s(attempt, initial_s=0.5, max_s=5.0))
                continue
            if status == 200:
                try:
                    return orjson.loads(body)
                except orjson.JSONDecodeError:
                    raise DecodeError(f"GET {path}: not JSON", reason="bad_json") from None
            last = f"HTTP {status}: {body[:200]!r}"
            if status in (418, 429):
                self.stats.throttled += 1
                log.warning("feed.rest_throttled", path=path, status=status,
                            blocked_ms=max(0, self.budget.blocked_until_ms - self.clock_ms()))
                continue  # the budget now holds the wait
            if status >= 500:
                self.stats.server_errors += 1
                await asyncio.sleep(backoff_s(attempt, initial_s=0.5, max_s=5.0))
                continue
            raise DefinitiveError(f"GET {path} -> {last}", reason="http_error")
        raise TransientError(f"GET {path} failed {attempts} times; last: {last}", reason="rest_failed")


def _seconds_ms(s: int | None) -> int | None:
    return None if s is None else s * 1000


# ---------------------------------------------------------------------------- shell: hydrate
@dataclass
class HydrationReport:
    """What one hydration run did (filled in as it goes; read it when ``done``)."""

    symbols: int = 0
    symbols_done: int = 0
    candles: int = 0
    requests: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> why
    done: bool = False
    elapsed_s: float = 0.0


async def hydrate(client: RestClient, symbols: Sequence[str], *, k: int, now_ms: int,
                  emit: Callable[[wire.CandleClosed], Awaitable[None]], concurrency: int = 4,
                  page_limit: int = PAGE_LIMIT, report: HydrationReport | None = None) -> HydrationReport:
    """Fetch the last ``k`` candles closed at ``now_ms`` for every symbol; ``emit`` each one
    (per symbol in ascending order). A symbol that fails is recorded and skipped."""
    rep = report if report is not None else HydrationReport()
    rep.symbols = len(symbols)
    started = time.monotonic()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for s in symbols:
        queue.put_nowait(s)

    async def worker() -> None:
        while True:
            try:
                sym = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                rows: list[object] = []
                for page in page_plan(sym, k, now_ms, page_limit=page_limit):
                    body = await client.get_json("/fapi/v1/klines", page.params(), weight=page.weight)
                    rep.requests += 1
                    if not isinstance(body, list):
                        raise DecodeError(f"klines for {sym}: not a list", reason="bad_body")
                    rows.extend(body)
                candles, rejected = closed_candles(rows, sym, now_ms, k)
            except (AegisError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                rep.failed[sym] = repr(exc)[:200]
                log.warning("feed.hydrate_failed", symbol=sym, error=rep.failed[sym])
                continue
            for reason, n in rejected.items():
                rep.rejected[reason] = rep.rejected.get(reason, 0) + n
            for c in candles:
                await emit(c)
            rep.candles += len(candles)
            rep.symbols_done += 1

    if k > 0 and symbols:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(symbols))))))
    rep.elapsed_s = round(time.monotonic() - started, 3)
    rep.done = True
    return rep
