"""Cold-start hydration, pure parts: request weights, the page plan, kline rows, the weight budget."""

from __future__ import annotations

import json

import pytest

from common import wire
from common.errors import ConfigError
from services.feed import firewall as fw
from services.feed import hydrate as h
from tests.conftest import USDM_DATA

MIN = 60_000
T0 = 1_712_738_460_000  # a minute boundary (the real klines sample starts here)


def _sample(name: str):
    return json.loads((USDM_DATA / name).read_text())


@pytest.fixture(scope="module")
def real_klines() -> list:
    entries = _sample("rest_responses_subset.json")["entries"]
    return next(e["httpResponse"] for e in entries if e["method"] == "fetchOHLCV")


def _row(t: int, o="10.0", hi="12.0", lo="9.0", c="11.0", v="3.5", n=7) -> list:
    return [t, o, hi, lo, c, v, t + MIN - 1, "38.5", n, "1.5", "16.5", "0"]


class TestWeights:
    @pytest.mark.parametrize("limit,weight", [(1, 1), (99, 1), (100, 2), (499, 2), (500, 5),
                                              (1000, 5), (1001, 10), (1500, 10)])
    def test_klines_weight_follows_binance_bands(self, limit, weight):
        """Weight by limit: [1,100) 1, [100,500) 2, [500,1000] 5, above 10."""
        assert h.klines_weight(limit) == weight


class TestPagePlan:
    def test_default_500_candles_is_one_request_ending_at_the_last_closed_minute(self):
        """At 12:00:30 the newest closed candle opened at 11:59; 500 of them take one request."""
        now = T0 + 30_000
        (page,) = h.page_plan("BTCUSDT", 500, now)
        assert (page.start_ms, page.end_ms, page.limit) == (T0 - 500 * MIN, T0 - MIN, 500)
        assert page.weight == 5
        assert page.params() == {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(T0 - 500 * MIN),
                                 "endTime": str(T0 - MIN), "limit": "500"}

    def test_2500_candles_are_pages_of_1000_oldest_first_without_overlap(self):
        """2500 candles: 1000 + 1000 + 500, contiguous, oldest first."""
        pages = h.page_plan("X", 2500, T0 + 30_000)
        assert [p.limit for p in pages] == [1000, 1000, 500]
        assert pages[0].start_ms == T0 - 2500 * MIN
        for a, b in zip(pages, pages[1:]):
            assert b.start_ms == a.end_ms + MIN
        assert pages[-1].end_ms == T0 - MIN
        assert sum(p.weight for p in pages) == 15

    def test_candle_that_just_ended_waits_for_the_grace(self):
        """One second after a boundary the candle before it is not yet counted as closed."""
        assert h.page_plan("X", 1, T0 + 1_000)[0].start_ms == T0 - 2 * MIN
        assert h.page_plan("X", 1, T0 + 2_000)[0].start_ms == T0 - MIN
        assert h.settle_delay_ms(T0 + 500) == 1_500
        assert h.settle_delay_ms(T0 + 2_000) == 0

    def test_nothing_to_plan_for_zero_candles(self):
        """K = 0 plans no request."""
        assert h.page_plan("X", 0, T0) == ()

    def test_page_limit_above_binance_max_is_refused(self):
        """Binance caps limit at 1500: a ConfigError."""
        with pytest.raises(ConfigError, match="page_limit"):
            h.page_plan("X", 10, T0, page_limit=1501)


class TestRows:
    def test_real_binance_klines_parse_exactly(self, real_klines):
        """The three real USD-M rows become three candles with their exact values."""
        out = [h.parse_row(r, "BTCUSDT") for r in real_klines]
        assert [type(c) for c in out] == [wire.CandleClosed] * 3
        first = out[0]
        assert (first.open_ms, first.close_ms, first.open, first.high, first.low, first.close) == \
            (1712738460000, 1712738519999, 71481.9, 71481.9, 71481.9, 71481.9)
        assert (first.volume, first.quote_volume, first.trades, first.buy_volume, first.interval_s) == \
            (0.002, 142.9638, 1, 0.002, 60)
        assert [c.trades for c in out] == [1, 9, 8]
        assert out[1].low == 70459.4 and out[2].high == 71470.9

    @pytest.mark.parametrize("row,reason", [
        ("not a row", fw.WRONG_TYPE),
        ([T0, "1", "1", "1"], fw.MISSING_FIELD),
        ([str(T0), "1", "1", "1", "1", "1", T0 + MIN - 1, "1", 1, "1", "1", "0"], fw.WRONG_TYPE),
        (_row(T0 + 1), fw.BAD_TIMESTAMP),  # not on a minute boundary
        ([T0, "1", "1", "1", "1", "1", T0 + MIN, "1", 1, "1", "1", "0"], fw.BAD_TIMESTAMP),
        (_row(T0, hi="8.0"), fw.BAD_CANDLE),  # high below low
        (_row(T0, lo="0"), fw.BAD_CANDLE),
        (_row(T0, c="nan"), fw.BAD_CANDLE),
        (_row(T0, v="-1"), fw.BAD_CANDLE),
        ([T0, 10.0, "12", "9", "11", "1", T0 + MIN - 1, "1", 1, "1", "1", "0"], fw.WRONG_TYPE),
        ([T0, "10", "12", "9", "11", "1", T0 + MIN - 1, "-5", 1, "1", "1", "0"], fw.BAD_QTY),
        (_row(T0, n=-1), fw.BAD_ID),
        ([T0, "10", "12", "9", "11", "1", T0 + MIN - 1, "1", True, "1", "1", "0"], fw.WRONG_TYPE),
    ])
    def test_bad_rows_are_refused_with_their_reason(self, row, reason):
        """Malformed or implausible rows are refused with the firewall's reason."""
        assert h.parse_row(row, "X") == reason

    def test_closed_candles_keep_the_last_k_closed_in_order_once_each(self):
        """Open and bad rows are counted apart; duplicates by open time collapse; the last k remain."""
        now = T0 + 30_000
        rows = [_row(T0 - 3 * MIN), _row(T0 - MIN), _row(T0 - 2 * MIN), _row(T0 - MIN),
                _row(T0), _row(T0 - 4 * MIN, hi="1")]
        candles, rejected = h.closed_candles(rows, "X", now, k=2)
        assert [c.open_ms for c in candles] == [T0 - 2 * MIN, T0 - MIN]
        assert rejected == {"open": 1, fw.BAD_CANDLE: 1}


class TestBudget:
    def test_requests_go_until_the_minute_budget_is_spent(self):
        """Within one minute weight adds up; the request that would exceed waits for the next minute."""
        b = h.Budget(limit=10)
        now = T0 + 5_000
        assert h.wait_ms(b, now, 5) == 0
        b = h.spend(h.spend(b, now, 5), now, 4)
        assert b.used == 9
        assert h.wait_ms(b, now, 1) == 0
        assert h.wait_ms(b, now, 2) == MIN - 5_000
        assert h.wait_ms(b, T0 + MIN, 2) == 0  # a new minute starts from zero

    def test_request_heavier_than_the_budget_goes_alone_in_a_fresh_minute(self):
        """A request above the whole budget is not blocked forever: it goes when nothing else was spent."""
        b = h.Budget(limit=4)
        assert h.wait_ms(b, T0, 10) == 0
        assert h.wait_ms(h.spend(b, T0, 1), T0, 10) == MIN

    def test_server_header_raises_our_count(self):
        """X-MBX-USED-WEIGHT-1M above our own count (other clients on the IP) wins."""
        b = h.observe(h.spend(h.Budget(limit=100), T0, 5), T0 + 10, 200, used_header=98)
        assert b.used == 98
        assert h.wait_ms(b, T0 + 10, 5) == MIN - 10
        assert h.observe(b, T0 + 20, 200, used_header=3).used == 98  # a lower header never lowers it

    def test_429_blocks_for_retry_after(self):
        """A 429 with Retry-After blocks every request for that long."""
        b = h.observe(h.Budget(limit=100), T0, 429, used_header=2400, retry_after_ms=2_000)
        assert h.wait_ms(b, T0, 1) == 2_000
        assert h.wait_ms(b, T0 + 2_000, 1) == MIN - 2_000  # then the minute's count still applies

    def test_418_without_retry_after_waits_for_the_ban_end_in_the_body(self):
        """Binance's documented 418 text names the ban end in ms; that is when requests resume."""
        entry = next(e for e in _sample("binance_docs_rest_examples.json")["errors"]["entries"]
                     if e["code"] == -1003 and e["http_status"] == 418)
        body = json.dumps({"code": -1003, "msg": entry["msg"] % 1615183669840}, separators=(",", ":"))
        until = h.ban_until_ms(body.encode())
        assert until == 1615183669840
        b = h.observe(h.Budget(limit=100), until - 7_000, 418, ban_until=until)
        assert h.wait_ms(b, until - 7_000, 1) == 7_000

    def test_429_without_any_hint_waits_a_minute(self):
        """No Retry-After on a 429: wait out a whole weight window."""
        b = h.observe(h.Budget(limit=100), T0, 429)
        assert h.wait_ms(b, T0, 1) == h.DEFAULT_429_WAIT_MS

    @pytest.mark.parametrize("raw,value", [("17", 17), (" 2 ", 2), ("", None), ("-1", None),
                                           ("1.5", None), (None, None), ("9" * 13, None)])
    def test_integer_headers_parse_strictly(self, raw, value):
        """Only plain non-negative integers are read from headers."""
        assert h.parse_int_header(raw) == value
