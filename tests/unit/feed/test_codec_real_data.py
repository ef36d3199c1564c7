"""The decoder on a real Binance USD-M capture (exact counts per event type, nothing rejected)
and on Binance's own documented example payloads (exact records, exact refusals)."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from common.records import Kind
from cli import decode as decode_cli
from services.feed import codec, raw_capture
from tests.conftest import HFT_CAPTURE, USDM_DATA

HFT = HFT_CAPTURE
DOCS = USDM_DATA / "binance_docs_examples.jsonl"  # one documented example a line
STREAM_CLOCK_LINES = 20_000
BTC = {"BTCUSDT": 0}


def doc_line(marker: bytes) -> bytes:
    """The one line of the documented examples that contains ``marker``."""
    [raw] = [raw for _, raw in raw_capture.iter_capture(DOCS) if marker in raw]
    return raw


@pytest.fixture(scope="module")
def hft_lines() -> list[tuple[int | None, bytes]]:
    return list(raw_capture.iter_capture(HFT))


@pytest.fixture(scope="module")
def hft_summary() -> dict:
    return raw_capture.summarize_capture(HFT)


@pytest.fixture(scope="module")
def stream_clock_file(tmp_path_factory) -> Path:
    """The capture's first 20,000 frames, one raw message a line, no receive times."""
    path = tmp_path_factory.mktemp("stream_clock") / "hftbacktest_head_raw.jsonl"
    with path.open("wb") as fh:
        for _, raw in itertools.islice(raw_capture.iter_capture(HFT), STREAM_CLOCK_LINES):
            fh.write(raw + b"\n")
    return path


@pytest.fixture(scope="module")
def stream_clock_summary(stream_clock_file) -> dict:
    return raw_capture.summarize_capture(stream_clock_file)


@pytest.fixture(scope="module")
def docs_summary() -> dict:
    return raw_capture.summarize_capture(DOCS)


class TestHftbacktestCapture:
    def test_every_line_is_read_with_its_receive_time(self, hft_lines):
        """All 93,954 lines come out of the gzip, each with a receive-time prefix."""
        assert len(hft_lines) == 93_954
        assert all(type(r) is int for r, _ in hft_lines)

    def test_counts_by_event_type_are_exact(self, hft_summary):
        """trade 21,313, bookTicker 66,089, depthUpdate 6,551 and the one REST snapshot."""
        assert hft_summary["accepted"] == {"bookTicker": 66_089, "depthSnapshot": 1,
                                           "depthUpdate": 6_551, "trade": 21_313}
        assert hft_summary["lines"] == 93_954

    def test_nothing_is_rejected(self, hft_summary):
        """Real data passes the firewall with the receive time as the reference clock."""
        assert hft_summary["rejected"] == {}
        assert hft_summary["clock"] == "recv"

    def test_trade_ids_and_pu_chain_have_no_gaps_or_duplicates(self, hft_summary):
        """Trade ids are contiguous and every depth diff's pu is the previous u."""
        assert hft_summary["gaps"] == 0
        assert hft_summary["duplicates"] == 0

    def test_ring_ticks_are_trades_plus_book_tickers(self, hft_summary):
        """87,402 ring records: every trade and every bookTicker, no depth."""
        assert hft_summary["ticks"] == 21_313 + 66_089
        assert hft_summary["by_symbol"] == {"BTCUSDT": {"bookTicker": 66_089, "depthUpdate": 6_551,
                                                        "trade": 21_313}}

    def test_first_book_ticker_becomes_the_exact_record(self, hft_lines):
        """Line 2: best bid/ask, sizes, update id u and event time E land in the record's fields."""
        recv, raw = hft_lines[1]
        res = codec.decode(raw, recv, BTC)
        assert res.status == codec.TICK and res.event == "bookTicker"
        assert res.tick == codec.Tick(symbol_id=0, kind=int(Kind.BOOK), flags=0,
                                      recv_ns=1723161255088169167, event_ms=1723161256313,
                                      id=5123107839020, price=61800.2, qty=2.507, aux=61800.3,
                                      aux_qty=2.51)

    def test_first_trade_becomes_the_exact_record(self, hft_lines):
        """Line 3: trade id t, price, quantity and trade time T; an aggressive buy has no flag."""
        recv, raw = hft_lines[2]
        res = codec.decode(raw, recv, BTC)
        assert res.tick == codec.Tick(symbol_id=0, kind=int(Kind.TRADE), flags=0,
                                      recv_ns=1723161255088176367, event_ms=1723161256322,
                                      id=5266583935, price=61800.3, qty=0.006, aux=0.0, aux_qty=0.0)
        assert res.event_ms == 1723161256322

    def test_rest_snapshot_line_is_a_depth_snapshot(self, hft_lines):
        """Line 55 (unwrapped REST body) is counted as depthSnapshot with 1000 levels a side."""
        recv, raw = hft_lines[54]
        res = codec.decode(raw, recv, BTC)
        assert (res.status, res.event) == (codec.EVENT, "depthSnapshot")
        assert res.detail == codec.SnapshotInfo(last_update_id=5123107852948, bids=1000, asks=1000)

    def test_recorder_clock_lags_event_time_within_tolerance(self, hft_lines):
        """E runs 1.22-1.27 s ahead of the recorder's clock: inside the 5 s future tolerance."""
        leads = [json.loads(raw)["data"]["E"] - recv // 1_000_000
                 for recv, raw in hft_lines[:2000] if raw.startswith(b'{"stream"')]
        assert 1_200 <= min(leads) and max(leads) <= 1_300

    def test_fast_path_agrees_with_the_generic_path_on_every_line(self, hft_lines):
        """The typed msgspec path and the reference path give identical results on real frames."""
        for recv, raw in hft_lines[::7]:
            assert codec.decode(raw, recv, BTC) == codec.decode_generic(raw, recv, BTC)

    def test_str_and_bytes_frames_decode_alike(self, hft_lines):
        """A frame handed in as text gives the same result as the same frame as bytes."""
        for recv, raw in hft_lines[:500]:
            assert codec.decode(raw.decode(), recv, BTC) == codec.decode(raw, recv, BTC)


class TestWithoutReceiveTimes:
    """The first 20,000 real frames again, written without their receive-time prefix (as a
    recorder that keeps only the raw text would): each stream is then its own clock."""

    def test_counts_by_event_type_are_exact(self, stream_clock_summary):
        """bookTicker 15,377, trade 3,024, depthUpdate 1,598 and the REST snapshot: 20,000 lines."""
        assert stream_clock_summary["accepted"] == {"bookTicker": 15_377, "depthSnapshot": 1,
                                                    "depthUpdate": 1_598, "trade": 3_024}
        assert stream_clock_summary["lines"] == 20_000

    def test_nothing_is_rejected_with_the_stream_clock(self, stream_clock_summary):
        """Without receive times each stream is its own clock, and every message passes."""
        assert stream_clock_summary["rejected"] == {}
        assert stream_clock_summary["clock"] == "stream"

    def test_trade_ids_and_pu_chain_are_unbroken(self, stream_clock_summary):
        """Trade ids and the depth pu chain run without a gap or a duplicate on the stream clock too."""
        assert (stream_clock_summary["gaps"], stream_clock_summary["duplicates"]) == (0, 0)

    def test_ring_ticks_are_trades_plus_book_tickers(self, stream_clock_summary):
        """18,401 ring records, all BTCUSDT."""
        assert stream_clock_summary["ticks"] == 15_377 + 3_024
        assert stream_clock_summary["by_symbol"] == {"BTCUSDT": {"bookTicker": 15_377, "depthUpdate": 1_598,
                                                                 "trade": 3_024}}


class TestBinanceDocExamples:
    """Binance's documented example payloads (one per stream or body, tests/data/SOURCES.md):
    the well-formed ones decode to exact records, and the firewall refuses the ones whose
    placeholder values no real market sends (event time 123456789 is 1970-01-02; the kline
    example has its low above its open)."""

    def test_fifteen_examples_give_this_exact_summary(self, docs_summary):
        """Accepted and rejected counts per kind and reason, for all 15 lines."""
        assert docs_summary["accepted"] == {"bookTicker": 1, "depthSnapshot": 1, "depthUpdate": 1,
                                            "markPriceUpdate": 2, "openInterest": 1}
        assert docs_summary["rejected"] == {"bad_candle": 1, "bad_timestamp": 4, "unsupported_event": 4}
        assert (docs_summary["lines"], docs_summary["ticks"], docs_summary["clock"]) == (15, 2, "stream")
        assert docs_summary["by_symbol"] == {"BNBUSDT": {"bookTicker": 1},
                                             "BTCUSDT": {"depthUpdate": 1, "markPriceUpdate": 1,
                                                         "openInterest": 1}}

    def test_mark_price_becomes_a_mark_record(self):
        """markPriceUpdate: price = mark p, aux = index i, qty = funding rate r, time E."""
        res = codec.decode(doc_line(b'"btcusdt@markPrice"'), None, BTC)
        assert res.tick == codec.Tick(0, int(Kind.MARK), 0, 0, 1562305380000, 0, 11794.15,
                                      0.00038167, 11784.62659091, 0.0)

    def test_book_ticker_becomes_the_exact_record(self):
        """bookTicker: bid, bid size, ask, ask size, update id u and event time E."""
        res = codec.decode(doc_line(b'"bnbusdt@bookTicker"'), None, {"BNBUSDT": 3})
        assert res.tick == codec.Tick(3, int(Kind.BOOK), 0, 0, 1568014460893, 400900217, 25.3519,
                                      31.21, 25.3652, 40.66)

    def test_partial_depth_is_marked_partial(self):
        """@depth10 is a snapshot of the top levels: flagged so its pu is not chained."""
        res = codec.decode(doc_line(b'"btcusdt@depth10"'), None, BTC)
        assert (res.status, res.event) == (codec.EVENT, "depthUpdate")
        assert res.detail == codec.DepthInfo(390497796, 390497878, 390497794, True, 5, 5)

    def test_mark_price_array_counts_its_elements(self):
        """!markPrice@arr is one accepted event whose detail is the element count (1)."""
        res = codec.decode(doc_line(b"!markPrice@arr"), None, {})
        assert (res.status, res.event, res.detail, res.tick) == (codec.EVENT, "markPriceUpdate", 1, None)

    @pytest.mark.parametrize("marker,event,reason", [
        (b'"btcusdt@aggTrade"', "aggTrade", "bad_timestamp"),
        (b'"btcusdt@depth"', "depthUpdate", "bad_timestamp"),
        (b'"btcusdt@ticker"', "24hrTicker", "bad_timestamp"),
        (b'"!ticker@arr"', "24hrTicker", "bad_timestamp"),
        (b'"btcusdt@kline_1m"', "kline", "bad_candle"),
    ])
    def test_placeholder_examples_are_refused_with_their_reason(self, marker, event, reason):
        """Event time 123456789 (1970) is a bad timestamp; a low above the open is a bad candle."""
        res = codec.decode(doc_line(marker), None, BTC)
        assert (res.status, res.event, res.reason) == (codec.REJECTED, event, reason)

    def test_rest_depth_and_open_interest_bodies(self):
        """The documented /fapi/v1/depth and /fapi/v1/openInterest bodies are recognised by shape."""
        depth = codec.decode(doc_line(b'"lastUpdateId"'), None, {})
        assert (depth.status, depth.event, depth.detail) == (
            codec.EVENT, "depthSnapshot", codec.SnapshotInfo(last_update_id=1027024, bids=1, asks=1))
        oi = codec.decode(doc_line(b'"openInterest"'), None, BTC)
        assert (oi.status, oi.event, oi.symbol) == (codec.EVENT, "openInterest", "BTCUSDT")

    @pytest.mark.parametrize("marker,event", [(b'"TRADE_LITE"', "TRADE_LITE"), (b'"forceOrder"', "forceOrder"),
                                              (b'"continuous_kline"', "continuous_kline"),
                                              (b'"24hrMiniTicker"', "24hrMiniTicker")])
    def test_known_events_we_do_not_decode_are_unsupported_not_unknown(self, marker, event):
        """TRADE_LITE (user data), liquidations, continuous klines and mini tickers are named, not unknown."""
        res = codec.decode(doc_line(marker), None, {"BTCUSDT": 0})
        assert (res.status, res.reason, res.event) == (codec.REJECTED, "unsupported_event", event)


class TestDecodeCli:
    def test_json_output_is_the_summary(self, capsys, stream_clock_file, stream_clock_summary):
        """``aegis decode FILE --json`` prints exactly summarize_capture's dict and exits 0."""
        assert decode_cli.main([str(stream_clock_file), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == stream_clock_summary

    def test_table_output_names_every_count(self, capsys):
        """The human table lists each accepted type and each rejection reason with its count."""
        assert decode_cli.main([str(DOCS)]) == 0
        lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
        assert lines[1:11] == ["accepted:", "bookTicker 1", "depthSnapshot 1", "depthUpdate 1",
                               "markPriceUpdate 2", "openInterest 1", "rejected:", "bad_candle 1",
                               "bad_timestamp 4", "unsupported_event 4"]

    def test_missing_file_exits_2(self, capsys, tmp_path):
        """An unreadable capture is an error message on stderr and exit status 2."""
        assert decode_cli.main([str(tmp_path / "nope.gz")]) == 2
        assert "cannot read" in capsys.readouterr().err

    def test_counts_cover_every_line(self, hft_summary):
        """accepted + rejected + duplicates account for every line of the capture."""
        total = (sum(hft_summary["accepted"].values()) + sum(hft_summary["rejected"].values())
                 + hft_summary["duplicates"])
        assert total == hft_summary["lines"] == sum(Counter(hft_summary["accepted"]).values())
