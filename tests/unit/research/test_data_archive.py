"""The archive's layout and the download plan: pure functions, exact names and paths."""

from __future__ import annotations

from datetime import date
from pathlib import PurePath

import pytest

from common.errors import ConfigError, DataError, DecodeError
from research.archive import (ArchiveFile, Period, checksum_url, file_url, import_target, month_of,
                              parse_archive_name, parse_checksum, parse_period, plan)
from research.kinds import dataset_name, kind_spec, parse_dataset

BASE = "https://data.binance.vision"


class TestLayout:
    def test_monthly_kline_url_is_the_archive_path(self):
        """A month of 1m klines lives at monthly/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM>.zip."""
        f = ArchiveFile(kind="klines", symbol="BTCUSDT", interval="1m", period=Period(year=2024, month=1))
        assert file_url(BASE, f) == (
            "https://data.binance.vision/data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip")
        assert checksum_url(BASE + "/", f) == file_url(BASE, f) + ".CHECKSUM"

    def test_daily_mark_price_file_shares_the_kline_name(self):
        """markPriceKlines files are named like klines (<SYMBOL>-<interval>-<date>.zip) in their own folder."""
        f = ArchiveFile(kind="markPriceKlines", symbol="ETHUSDT", interval="1h",
                        period=Period(year=2024, month=2, day=29))
        assert f.path == "data/futures/um/daily/markPriceKlines/ETHUSDT/1h/ETHUSDT-1h-2024-02-29.zip"
        assert f.dataset == "markPriceKlines_1h"

    def test_agg_trades_and_funding_names_carry_the_kind(self):
        """aggTrades and fundingRate have no interval folder; the kind is in the file name."""
        agg = ArchiveFile(kind="aggTrades", symbol="BTCUSDT", interval=None,
                          period=Period(year=2024, month=3, day=5))
        fund = ArchiveFile(kind="fundingRate", symbol="BTCUSDT", interval=None, period=Period(year=2024, month=3))
        assert agg.path == "data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-03-05.zip"
        assert fund.path == "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-03.zip"

    def test_period_bounds_are_utc_milliseconds(self):
        """A month spans [its first ms, the next month's first ms); leap days count."""
        feb = Period(year=2024, month=2)
        assert (feb.start_ms, feb.end_ms) == (1706745600000, 1709251200000)
        assert len(feb.days()) == 29
        dec31 = Period(year=2024, month=12, day=31)
        assert (dec31.start_ms, dec31.end_ms) == (1735603200000, 1735689600000)
        assert month_of(1735689600000 - 1) == Period(year=2024, month=12)
        assert month_of(1735689600000) == Period(year=2025, month=1)

    def test_dataset_names_round_trip(self):
        """Catalog folders are kind_interval for kline kinds and the bare kind otherwise."""
        assert dataset_name("klines", "1m") == "klines_1m"
        assert dataset_name("aggTrades", None) == "aggTrades"
        assert parse_dataset("markPriceKlines_15m") == ("markPriceKlines", "15m")
        assert parse_dataset("fundingRate") == ("fundingRate", None)
        with pytest.raises(DataError):
            dataset_name("klines", None)
        with pytest.raises(DataError):
            parse_dataset("klines_7m")


class TestChecksum:
    def test_sha256sum_line_is_read(self):
        """A CHECKSUM file is sha256sum's line: the hash, two spaces, the zip's name."""
        h = "b8296c8a076abb354989d59ca63c461c7198209b7537428156145ea4b874f629"
        assert parse_checksum(f"{h.upper()}  BTCUSDT-1m-2024-12.zip\n") == h

    @pytest.mark.parametrize("text", ["", "not-a-hash  x.zip", "abc123"])
    def test_anything_else_is_refused(self, text):
        """A CHECKSUM without a 64-hex-digit hash is a DecodeError labelled checksum_mismatch."""
        with pytest.raises(DecodeError) as err:
            parse_checksum(text)
        assert err.value.reason == "checksum_mismatch"



class TestPeriod:
    @pytest.mark.parametrize("label", ["2024", "2024-1x", "2024-13", "2024-02-30"])
    def test_a_label_that_is_no_month_or_day_is_a_data_error(self, label):
        """Malformed labels and impossible dates (month 13, 30 February) are both DataError,
        and an archive name carrying one is simply not an archive name."""
        with pytest.raises(DataError, match="not a month or a day"):
            parse_period(label)
        assert parse_archive_name(f"BTCUSDT-1m-{label}.zip") is None


class TestPlan:
    def test_whole_months_use_monthly_files(self):
        """2024-01-01..2024-03-31 is three whole months: three monthly files per symbol and kind."""
        reqs = plan(symbols=["BTCUSDT", "ETHUSDT"], kinds=["klines"], interval="1m",
                    first=date(2024, 1, 1), last=date(2024, 3, 31))
        assert [(r.symbol, r.month.label, [f.name for f in r.files]) for r in reqs] == [
            ("BTCUSDT", "2024-01", ["BTCUSDT-1m-2024-01.zip"]),
            ("BTCUSDT", "2024-02", ["BTCUSDT-1m-2024-02.zip"]),
            ("BTCUSDT", "2024-03", ["BTCUSDT-1m-2024-03.zip"]),
            ("ETHUSDT", "2024-01", ["ETHUSDT-1m-2024-01.zip"]),
            ("ETHUSDT", "2024-02", ["ETHUSDT-1m-2024-02.zip"]),
            ("ETHUSDT", "2024-03", ["ETHUSDT-1m-2024-03.zip"]),
        ]

    def test_partial_months_use_daily_files(self):
        """2024-01-30..2024-03-02: Jan 30-31 and Mar 1-2 by day, February by its month file."""
        reqs = plan(symbols=["BTCUSDT"], kinds=["aggTrades"], interval="1m",
                    first=date(2024, 1, 30), last=date(2024, 3, 2))
        assert [[f.name for f in r.files] for r in reqs] == [
            ["BTCUSDT-aggTrades-2024-01-30.zip", "BTCUSDT-aggTrades-2024-01-31.zip"],
            ["BTCUSDT-aggTrades-2024-02.zip"],
            ["BTCUSDT-aggTrades-2024-03-01.zip", "BTCUSDT-aggTrades-2024-03-02.zip"],
        ]
        assert all(r.interval is None and r.dataset == "aggTrades" for r in reqs)

    def test_funding_is_monthly_even_for_a_few_days(self):
        """fundingRate has no daily files: a partial month still takes the month file."""
        reqs = plan(symbols=["BTCUSDT"], kinds=["fundingRate"], interval="1m",
                    first=date(2024, 1, 30), last=date(2024, 2, 2))
        assert [[f.name for f in r.files] for r in reqs] == [
            ["BTCUSDT-fundingRate-2024-01.zip"], ["BTCUSDT-fundingRate-2024-02.zip"]]

    def test_reversed_range_is_refused(self):
        """--to before --from is a ConfigError, not an empty plan."""
        with pytest.raises(ConfigError, match="before --from"):
            plan(symbols=["BTCUSDT"], kinds=["klines"], interval="1m",
                 first=date(2024, 2, 1), last=date(2024, 1, 31))


class TestNames:
    def test_archive_names_are_parsed(self):
        """Symbol, interval or kind, and period come out of an archive file name."""
        kl = parse_archive_name("BTCUSDT-1m-2024-12.zip")
        assert (kl.symbol, kl.kind, kl.interval, kl.period.label) == ("BTCUSDT", None, "1m", "2024-12")
        agg = parse_archive_name("ETHUSDT-aggTrades-2024-08-08.csv")
        assert (agg.symbol, agg.kind, agg.interval, agg.period.label) == ("ETHUSDT", "aggTrades", None, "2024-08-08")
        assert parse_archive_name("prices.csv") is None
        assert parse_archive_name("BTCUSDT-trades-2024-13.zip") is None

    def test_import_kind_comes_from_the_folder_when_the_name_cannot_tell(self):
        """A kline-like name in a markPriceKlines folder is mark prices; alone it is assumed klines."""
        in_folder = import_target(PurePath("x/markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-12-05.zip"))
        assert (in_folder.kind, in_folder.symbol, in_folder.interval, in_folder.guessed_kind) == (
            "markPriceKlines", "BTCUSDT", "1m", False)
        alone = import_target(PurePath("BTCUSDT-1m-2024-12.zip"))
        assert (alone.kind, alone.guessed_kind, alone.period) == ("klines", True, parse_period("2024-12"))

    def test_import_of_an_unnamed_csv_needs_flags(self):
        """A CSV with no archive name needs --kind and --symbol; with them its rows go by their times."""
        with pytest.raises(DataError, match="--kind"):
            import_target(PurePath("candles.csv"))
        t = import_target(PurePath("candles.csv"), kind="klines", symbol="D001USDT", interval="1m")
        assert (t.kind, t.symbol, t.interval, t.period) == ("klines", "D001USDT", "1m", None)

    def test_kind_spec_schema_has_typed_columns(self):
        """The catalog keeps int64 ms times and float64 prices; the ignore column is dropped."""
        schema = kind_spec("klines").schema
        assert schema.names == ["open_time", "open", "high", "low", "close", "volume", "close_time",
                                "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume"]
        assert str(schema.field("open_time").type) == "int64" and str(schema.field("close").type) == "double"
        assert kind_spec("markPriceKlines").schema.names == [
            "open_time", "open", "high", "low", "close", "close_time", "count"]
