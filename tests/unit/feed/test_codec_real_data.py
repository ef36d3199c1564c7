"""The decoder on real Binance USD-M captures: exact counts per event type, nothing rejected."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from common.records import Kind
from services.feed import capture, codec, decode_cli
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA / "binance_usdm"
HFT = DATA / "hftbacktest_btcusdt_20240808.gz"
CRYPTOFEED = DATA / "cryptofeed_fstream_combined_2021-07-22.jsonl"
MSG_PARSER = DATA / "crypto-msg-parser_usdm_messages.jsonl"
REST_DEPTH = DATA / "cryptofeed_rest_depth_snapshots_2021-07-22.txt"
TRADE_LITE = DATA / "ws_futures_trade_lite.json"
BTC = {"BTCUSDT": 0}


@pytest.fixture(scope="module")
def hft_lines() -> list[tuple[int | None, bytes]]:
    return list(capture.iter_capture(HFT))


@pytest.fixture(scope="module")
def hft_summary() -> dict:
    return capture.summarize_capture(HFT)


@pytest.fixture(scope="module")
def cryptofeed_summary() -> dict:
    return capture.summarize_capture(CRYPTOFEED)


@pytest.fixture(scope="module")
def msg_parser_summary() -> dict:
    return capture.summarize_capture(MSG_PARSER)


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


class TestCryptofeedCapture:
    def test_counts_by_event_type_are_exact(self, cryptofeed_summary):
        """bookTicker 613, depthUpdate 764, kline 67, aggTrade 91: 1,535 messages."""
        assert cryptofeed_summary["accepted"] == {"aggTrade": 91, "bookTicker": 613,
                                                  "depthUpdate": 764, "kline": 67}
        assert cryptofeed_summary["lines"] == 1_535

    def test_nothing_is_rejected_with_the_stream_clock(self, cryptofeed_summary):
        """Without receive times each stream is its own clock, and every message passes."""
        assert cryptofeed_summary["rejected"] == {}
        assert cryptofeed_summary["clock"] == "stream"

    def test_four_klines_are_closed(self, cryptofeed_summary):
        """Of 67 kline updates exactly 4 carry x=true."""
        assert cryptofeed_summary["klines_closed"] == 4

    def test_agg_ids_and_pu_chains_are_unbroken(self, cryptofeed_summary):
        """Aggregate trade ids and each symbol's depth pu chain run without a gap."""
        assert (cryptofeed_summary["gaps"], cryptofeed_summary["duplicates"]) == (0, 0)

    def test_counts_by_symbol_are_exact(self, cryptofeed_summary):
        """Four symbols, each with its exact mix of streams."""
        assert cryptofeed_summary["by_symbol"] == {
            "AKROUSDT": {"aggTrade": 8, "bookTicker": 88, "depthUpdate": 189, "kline": 8},
            "CTKUSDT": {"aggTrade": 38, "bookTicker": 145, "depthUpdate": 185, "kline": 32},
            "KEEPUSDT": {"aggTrade": 5, "bookTicker": 75, "depthUpdate": 135, "kline": 5},
            "SUSHIUSDT": {"aggTrade": 40, "bookTicker": 305, "depthUpdate": 255, "kline": 22},
        }

    def test_closed_kline_carries_a_consistent_candle(self):
        """A closed kline's Candle has x=true, open < close time and a valid OHLC."""
        symbols = capture.AutoSymbols()
        closed = [r.detail for _, raw in capture.iter_capture(CRYPTOFEED)
                  if (r := codec.decode(raw, None, symbols)).event == "kline" and r.detail.closed]
        assert len(closed) == 4
        for c in closed:
            assert c.interval == "1m" and c.close_ms - c.open_ms == 59_999
            assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high

    def test_agg_trade_has_no_spot_marker_and_is_a_ring_tick(self):
        """The first aggTrade (CTKUSDT) becomes an AGG_TRADE record with id a and time T."""
        symbols = {"SUSHIUSDT": 0, "AKROUSDT": 1, "KEEPUSDT": 2, "CTKUSDT": 3}
        first = next(r for _, raw in capture.iter_capture(CRYPTOFEED)
                     if (r := codec.decode(raw, None, symbols)).event == "aggTrade")
        assert first.tick == codec.Tick(3, int(Kind.AGG_TRADE), 0, 0, 1626992741421, 16599292,
                                        1.011, 10.0, 0.0, 0.0)


class TestCryptoMsgParserSamples:
    def test_twenty_messages_of_eight_kinds(self, msg_parser_summary):
        """Single messages and arrays are counted by their e; REST bodies by their shape."""
        assert msg_parser_summary["accepted"] == {
            "24hrTicker": 4, "aggTrade": 2, "bookTicker": 2, "depthSnapshot": 2,
            "depthUpdate": 4, "kline": 2, "markPriceUpdate": 2, "openInterest": 2}
        assert msg_parser_summary["lines"] == 20

    def test_nothing_is_rejected(self, msg_parser_summary):
        """Quarterly symbols, depth20, !markPrice@arr and !ticker@arr all pass."""
        assert msg_parser_summary["rejected"] == {}
        assert msg_parser_summary["ticks"] == 5

    def test_mark_price_becomes_a_mark_record(self):
        """markPriceUpdate: price = mark p, aux = index i, qty = funding rate r, time E."""
        raw = next(raw for _, raw in capture.iter_capture(MSG_PARSER) if b'"btcusdt@markPrice"' in raw)
        res = codec.decode(raw, None, BTC)
        assert res.tick == codec.Tick(0, int(Kind.MARK), 0, 0, 1617308820003, 0, 58940.14924532,
                                      0.00058455, 58857.26693664, 0.0)

    def test_depth20_is_marked_partial(self):
        """Partial-depth streams (@depth20) are flagged so their pu is not chained."""
        symbols = capture.AutoSymbols()
        infos = [r.detail for _, raw in capture.iter_capture(MSG_PARSER)
                 if (r := codec.decode(raw, None, symbols)).event == "depthUpdate"]
        assert [i.partial for i in infos] == [False, False, True, True]

    def test_mark_price_array_counts_its_elements(self):
        """!markPrice@arr is one accepted event whose detail is the element count (2)."""
        raw = next(raw for _, raw in capture.iter_capture(MSG_PARSER) if b"!markPrice@arr" in raw)
        res = codec.decode(raw, None, {})
        assert (res.status, res.event, res.detail, res.tick) == (codec.EVENT, "markPriceUpdate", 2, None)


class TestOtherRealBodies:
    def test_cryptofeed_rest_depth_snapshots_decode(self):
        """The four REST depth bodies recorded with the cryptofeed session are depth snapshots."""
        lines = REST_DEPTH.read_text().splitlines()
        results = []
        for line in filter(None, lines):
            head, body = line.split(": ", 1)
            recv_ns = int(float(head.rsplit(" ", 1)[1]) * 1e9)
            results.append(codec.decode(body, recv_ns, {}))
        assert [(r.status, r.event) for r in results] == [(codec.EVENT, "depthSnapshot")] * 4
        assert results[0].detail.last_update_id == 600859605926

    def test_user_data_trade_lite_is_unsupported_not_unknown(self):
        """A real TRADE_LITE user-data event is a known Binance event we do not decode."""
        raw = json.dumps(json.loads(TRADE_LITE.read_text()))
        res = codec.decode(raw, None, {"ETHUSDT": 0})
        assert (res.status, res.reason, res.event) == (codec.REJECTED, "unsupported_event", "TRADE_LITE")


class TestCaptureReader:
    def test_prefix_is_split_from_the_raw_message(self):
        """'<ns> <raw>' gives (ns, raw); a line starting with '{' gives (None, line)."""
        assert capture.split_line(b'17 {"a":1}') == (17, b'{"a":1}')
        assert capture.split_line(b'{"a": 1}') == (None, b'{"a": 1}')

    def test_gzip_is_detected_by_magic_and_blank_lines_are_skipped(self, tmp_path):
        """A gzip file without .gz in its name is read, CRLF and blank lines are dropped."""
        p = tmp_path / "capture.txt"
        p.write_bytes(gzip.compress(b'1 {"x":1}\r\n\r\n   \n{"y":2}\n'))
        assert list(capture.iter_capture(p)) == [(1, b'{"x":1}'), (None, b'{"y":2}')]

    def test_auto_symbols_register_plausible_names_only(self):
        """The capture symbol table numbers new names in order and refuses blank or spaced ones."""
        t = capture.AutoSymbols()
        assert [t.get("BTCUSDT"), t.get("ETHUSDT"), t.get("BTCUSDT")] == [0, 1, 0]
        assert t.get("") is None and t.get("BTC USDT") is None and t.get("X" * 40) is None


class TestDecodeCli:
    def test_json_output_is_the_summary(self, capsys, cryptofeed_summary):
        """``aegis decode FILE --json`` prints exactly summarize_capture's dict and exits 0."""
        assert decode_cli.main([str(CRYPTOFEED), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == cryptofeed_summary

    def test_table_output_names_every_count(self, capsys):
        """The human table lists each accepted type with its count."""
        assert decode_cli.main([str(MSG_PARSER)]) == 0
        out = capsys.readouterr().out
        assert "markPriceUpdate" in out and "openInterest" in out and "rejected: none" in out

    def test_missing_file_exits_2(self, capsys, tmp_path):
        """An unreadable capture is an error message on stderr and exit status 2."""
        assert decode_cli.main([str(tmp_path / "nope.gz")]) == 2
        assert "cannot read" in capsys.readouterr().err

    def test_counts_cover_every_line(self, hft_summary):
        """accepted + rejected + duplicates account for every line of the capture."""
        total = (sum(hft_summary["accepted"].values()) + sum(hft_summary["rejected"].values())
                 + hft_summary["duplicates"])
        assert total == hft_summary["lines"] == sum(Counter(hft_summary["accepted"]).values())
