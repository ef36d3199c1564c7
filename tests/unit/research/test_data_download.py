"""``aegis data download`` against the archive layout served on 127.0.0.1 from the repository's
real data: exact rows and times, resume, and every refusal the brief lists. No internet."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from common.cli import main as aegis
from research.archive import ArchiveFile, Period
from research.catalog import load_manifest, partition_path
from research.convert import Gap
from research.fetch import HttpConfig
from research.ingest import DownloadConfig, FileOutcome, run_download
from research.localarchive import write_checksum
from tests.unit.research.conftest import (AGG_HEADER, DEC_FIRST_OPEN_MS, FIRST_OPEN_MS, LAST_OPEN_MS,
                                          csv_text, write_zip)

MIN = 60_000
DAY = 86_400_000
FAST = HttpConfig(timeout_s=5.0, attempts=2, backoff_s=0.01)


def day_file(day: int, kind: str = "klines") -> ArchiveFile:
    return ArchiveFile(kind=kind, symbol="BTCUSDT", interval="1m", period=Period(year=2024, month=12, day=day))


def download(catalog: Path, server, *, first: date, last: date, symbols=("BTCUSDT",), kinds=("klines",),
             workers: int = 2, progress=None):
    cfg = DownloadConfig(catalog=catalog, base_url=server.base_url, workers=workers, http=FAST)
    return run_download(cfg=cfg, symbols=list(symbols), kinds=list(kinds), interval="1m",
                        first=first, last=last, progress=progress)


def statuses(report) -> dict[str, str]:
    return {f.name: f.status + (f":{f.reason}" if f.reason else "") for f in report.files}


class TestFullDownload:
    def test_a_month_and_a_day_exact_rows_and_times(self, tmp_path, server):
        """Nov 30 (a partial month: its day file) and all of December (its month file)."""
        report = download(tmp_path, server, first=date(2024, 11, 30), last=date(2024, 12, 31))
        assert statuses(report) == {"BTCUSDT-1m-2024-11-30.zip": "downloaded", "BTCUSDT-1m-2024-12.zip": "downloaded"}
        assert sorted(server.zip_requests()) == [
            "/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-11-30.zip",
            "/data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12.zip"]
        recs = load_manifest(tmp_path, "klines_1m", "BTCUSDT")
        nov, dec = recs["2024-11"], recs["2024-12"]
        assert (nov.rows, nov.first_ms, nov.last_ms, nov.gaps) == (60, FIRST_OPEN_MS, FIRST_OPEN_MS + 59 * MIN, ())
        assert (dec.rows, dec.first_ms, dec.last_ms, dec.gaps) == (41701, DEC_FIRST_OPEN_MS, LAST_OPEN_MS, ())
        assert report.rows_written == 41761 and report.ok
        table = pq.read_table(partition_path(tmp_path, "klines_1m", "BTCUSDT", "2024-12"))
        assert table.num_rows == 41701 and table.column("open_time")[0].as_py() == DEC_FIRST_OPEN_MS
        checksum = (server.root / "data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12.zip.CHECKSUM")
        assert dec.sources[0].sha256 == checksum.read_text().split()[0]
        assert not list((tmp_path / ".tmp").iterdir()) and not list((tmp_path / ".staging").iterdir())

    def test_days_of_a_month(self, tmp_path, server):
        """2024-12-05..07 are three day files: 4,320 bars, 05 00:00 .. 07 23:59."""
        report = download(tmp_path, server, first=date(2024, 12, 5), last=date(2024, 12, 7))
        assert report.file_counts() == {"downloaded": 3}
        rec = load_manifest(tmp_path, "klines_1m", "BTCUSDT")["2024-12"]
        assert (rec.rows, rec.first_ms, rec.last_ms) == (4320, DEC_FIRST_OPEN_MS + 4 * DAY,
                                                          DEC_FIRST_OPEN_MS + 7 * DAY - MIN)
        assert [s.name for s in rec.sources] == [f"BTCUSDT-1m-2024-12-0{d}.zip" for d in (5, 6, 7)]

    def test_agg_trades_day(self, tmp_path, server):
        """The real trades of 2024-08-08 as an aggTrades day file: 21,313 rows."""
        report = download(tmp_path, server, first=date(2024, 8, 8), last=date(2024, 8, 8), kinds=("aggTrades",))
        assert report.file_counts() == {"downloaded": 1}
        assert load_manifest(tmp_path, "aggTrades", "BTCUSDT")["2024-08"].rows == 21313


class TestResume:
    def test_second_run_downloads_nothing(self, tmp_path, server):
        """A rerun checks each CHECKSUM, finds it recorded, and fetches no zip."""
        download(tmp_path, server, first=date(2024, 11, 30), last=date(2024, 12, 31))
        before = len(server.zip_requests())
        again = download(tmp_path, server, first=date(2024, 11, 30), last=date(2024, 12, 31))
        assert len(server.zip_requests()) == before == 2 and len(server.zips_served()) == 2
        assert statuses(again) == {"BTCUSDT-1m-2024-11-30.zip": "kept", "BTCUSDT-1m-2024-12.zip": "kept"}
        assert again.partition_counts() == {"unchanged": 2} and again.rows_written == 0

    def test_dropped_transfer_then_resume_fetches_only_what_failed(self, tmp_path, own_server):
        """Dec 6 cut off mid-body every time: Dec 5 and 7 stored with a one-day gap; the next
        run fetches only Dec 6 and fills it; a stale partial temp file is never used."""
        dec6 = "/" + day_file(6).path
        own_server.faults[dec6] = "drop"
        first = download(tmp_path, own_server, first=date(2024, 12, 5), last=date(2024, 12, 7))
        assert statuses(first) == {"BTCUSDT-1m-2024-12-05.zip": "downloaded",
                                   "BTCUSDT-1m-2024-12-06.zip": "failed:network",
                                   "BTCUSDT-1m-2024-12-07.zip": "downloaded"}
        assert not first.ok
        rec = load_manifest(tmp_path, "klines_1m", "BTCUSDT")["2024-12"]
        assert rec.rows == 2880
        assert rec.gaps == (Gap(from_ms=DEC_FIRST_OPEN_MS + 5 * DAY, to_ms=DEC_FIRST_OPEN_MS + 6 * DAY - MIN,
                                bars=1440),)
        (tmp_path / ".tmp" / "BTCUSDT-1m-2024-12-06.zip.part").write_bytes(b"PK\x03\x04 half a zip")
        own_server.faults.clear()
        n = len(own_server.zip_requests())
        second = download(tmp_path, own_server, first=date(2024, 12, 5), last=date(2024, 12, 7))
        assert own_server.zip_requests()[n:] == [dec6]
        assert statuses(second) == {"BTCUSDT-1m-2024-12-05.zip": "kept", "BTCUSDT-1m-2024-12-06.zip": "downloaded",
                                    "BTCUSDT-1m-2024-12-07.zip": "kept"}
        rec = load_manifest(tmp_path, "klines_1m", "BTCUSDT")["2024-12"]
        assert (rec.rows, rec.gaps, rec.first_ms) == (4320, (), DEC_FIRST_OPEN_MS + 4 * DAY)
        assert not (tmp_path / ".tmp" / "BTCUSDT-1m-2024-12-06.zip.part").exists()

    def test_interrupted_run_downloads_nothing_twice(self, tmp_path, server):
        """Ctrl+C after the second file was fetched: no month file half-written, and no zip
        sent whole in the first run is sent again (the checked file waited in the staging
        folder); the month is complete after the second run."""
        class Interrupt:
            def __init__(self):
                self.done = 0

            def add_files(self, n):
                pass

            def file_done(self, outcome: FileOutcome):
                self.done += 1
                if self.done == 2:
                    # Dec 7 is queued behind: it must not slip through before the stop lands
                    server.faults["/" + day_file(7).path] = "503"
                    raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            download(tmp_path, server, first=date(2024, 12, 5), last=date(2024, 12, 7), workers=1,
                     progress=Interrupt())
        assert load_manifest(tmp_path, "klines_1m", "BTCUSDT") == {}
        assert not partition_path(tmp_path, "klines_1m", "BTCUSDT", "2024-12").exists()
        assert not list((tmp_path / ".tmp").iterdir())
        assert server.zips_served() == ["/" + day_file(5).path, "/" + day_file(6).path]
        server.faults.clear()
        report = download(tmp_path, server, first=date(2024, 12, 5), last=date(2024, 12, 7))
        assert server.zips_served()[2:] == ["/" + day_file(7).path]  # nothing sent twice
        assert statuses(report) == {"BTCUSDT-1m-2024-12-05.zip": "resumed", "BTCUSDT-1m-2024-12-06.zip": "resumed",
                                    "BTCUSDT-1m-2024-12-07.zip": "downloaded"}
        assert load_manifest(tmp_path, "klines_1m", "BTCUSDT")["2024-12"].rows == 4320

    def test_changed_archive_file_is_downloaded_again(self, tmp_path, own_server, klines):
        """Binance replaces files now and then: a new sha256 in the CHECKSUM means a new download."""
        download(tmp_path, own_server, first=date(2024, 12, 5), last=date(2024, 12, 5))
        day5 = own_server.root / day_file(5).path
        rows = [line for t, line in klines if DEC_FIRST_OPEN_MS + 4 * DAY <= t < DEC_FIRST_OPEN_MS + 5 * DAY]
        write_zip(day5, csv_text(rows[:100]))
        write_checksum(day5)
        report = download(tmp_path, own_server, first=date(2024, 12, 5), last=date(2024, 12, 5))
        assert statuses(report) == {"BTCUSDT-1m-2024-12-05.zip": "downloaded"}
        assert load_manifest(tmp_path, "klines_1m", "BTCUSDT")["2024-12"].rows == 100

    def test_month_file_lost_from_the_catalog_is_rebuilt(self, tmp_path, server):
        """A month file deleted behind the manifest's back is fetched again, not trusted."""
        download(tmp_path, server, first=date(2024, 12, 5), last=date(2024, 12, 5))
        partition_path(tmp_path, "klines_1m", "BTCUSDT", "2024-12").unlink()
        report = download(tmp_path, server, first=date(2024, 12, 5), last=date(2024, 12, 5))
        assert statuses(report) == {"BTCUSDT-1m-2024-12-05.zip": "downloaded"}


class TestBadFiles:
    def test_checksum_mismatch_is_refused_and_deleted(self, tmp_path, own_server):
        """A CHECKSUM that does not match the zip: refused, nothing of it kept, the other days stored."""
        write_checksum(own_server.root / day_file(6).path, sha256="0" * 64)
        report = download(tmp_path, own_server, first=date(2024, 12, 5), last=date(2024, 12, 7))
        assert statuses(report)["BTCUSDT-1m-2024-12-06.zip"] == "refused:checksum_mismatch"
        assert report.reasons() == {"checksum_mismatch": 1} and not report.ok
        assert not list((tmp_path / ".tmp").iterdir()) and not list((tmp_path / ".staging").iterdir())
        rec = load_manifest(tmp_path, "klines_1m", "BTCUSDT")["2024-12"]
        assert [s.name for s in rec.sources] == ["BTCUSDT-1m-2024-12-05.zip", "BTCUSDT-1m-2024-12-07.zip"]

    def test_truncated_zip_is_refused(self, tmp_path, own_server):
        """A zip cut in half (its CHECKSUM matching the cut bytes, as a broken upload would): bad_zip."""
        z = own_server.root / day_file(6).path
        z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
        write_checksum(z)
        report = download(tmp_path, own_server, first=date(2024, 12, 6), last=date(2024, 12, 6))
        assert statuses(report) == {"BTCUSDT-1m-2024-12-06.zip": "refused:bad_zip"}
        assert report.partition_counts() == {"not_written": 1}

    def test_wrong_columns_are_refused(self, tmp_path, own_server, trades):
        """Trades in a klines file: the header is not the klines header: wrong_columns."""
        z = write_zip(own_server.root / day_file(6).path, csv_text([x for _, x in trades[:10]], header=AGG_HEADER))
        write_checksum(z)
        report = download(tmp_path, own_server, first=date(2024, 12, 6), last=date(2024, 12, 6))
        assert statuses(report) == {"BTCUSDT-1m-2024-12-06.zip": "refused:wrong_columns"}

    def test_gap_is_reported_with_its_exact_range_and_the_data_kept(self, tmp_path, own_server, klines):
        """Dec 5 without 10:00..10:29: stored with 1,410 bars and one gap of 30 bars."""
        start = DEC_FIRST_OPEN_MS + 4 * DAY
        rows = [line for t, line in klines if start <= t < start + DAY
                and not start + 600 * MIN <= t < start + 630 * MIN]
        z = write_zip(own_server.root / day_file(5).path, csv_text(rows))
        write_checksum(z)
        report = download(tmp_path, own_server, first=date(2024, 12, 5), last=date(2024, 12, 5))
        assert report.ok
        rec = load_manifest(tmp_path, "klines_1m", "BTCUSDT")["2024-12"]
        assert rec.rows == 1410
        assert rec.gaps == (Gap(from_ms=start + 600 * MIN, to_ms=start + 629 * MIN, bars=30),)


class TestMissing:
    def test_symbol_not_in_the_archive_is_missing_not_an_error(self, tmp_path, server):
        """ETHUSDT answers 404 everywhere: its files are missing, BTCUSDT is stored, exit is ok."""
        report = download(tmp_path, server, first=date(2024, 12, 5), last=date(2024, 12, 6),
                          symbols=("BTCUSDT", "ETHUSDT"), kinds=("klines", "fundingRate"))
        assert statuses(report) == {
            "BTCUSDT-1m-2024-12-05.zip": "downloaded", "BTCUSDT-1m-2024-12-06.zip": "downloaded",
            "ETHUSDT-1m-2024-12-05.zip": "missing", "ETHUSDT-1m-2024-12-06.zip": "missing",
            "BTCUSDT-fundingRate-2024-12.zip": "missing", "ETHUSDT-fundingRate-2024-12.zip": "missing"}
        assert report.ok and report.partition_counts() == {"written": 1, "absent": 3}

    def test_missing_month_file_falls_back_to_its_days(self, tmp_path, own_server):
        """No December month file yet: its 31 day files are tried; 29 exist (Dec 1-29)."""
        z = own_server.root / "data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12.zip"
        z.unlink()
        z.with_name(z.name + ".CHECKSUM").unlink()
        report = download(tmp_path, own_server, first=date(2024, 12, 1), last=date(2024, 12, 31))
        assert report.file_counts() == {"missing": 3, "downloaded": 29}
        rec = load_manifest(tmp_path, "klines_1m", "BTCUSDT")["2024-12"]
        assert (rec.rows, rec.first_ms, rec.last_ms, rec.gaps) == (41701, DEC_FIRST_OPEN_MS, LAST_OPEN_MS, ())

    def test_month_in_the_catalog_is_not_cut_back_to_days(self, tmp_path, server):
        """After December's month file is stored, asking for Dec 5 only checks the month file."""
        download(tmp_path, server, first=date(2024, 12, 1), last=date(2024, 12, 31))
        report = download(tmp_path, server, first=date(2024, 12, 5), last=date(2024, 12, 5))
        assert statuses(report) == {"BTCUSDT-1m-2024-12.zip": "kept"}
        assert load_manifest(tmp_path, "klines_1m", "BTCUSDT")["2024-12"].rows == 41701


class TestCommand:
    def test_download_then_list(self, tmp_path, server, capsys):
        """The aegis command end to end: exit 0, a summary JSON with counts, then the catalog listed."""
        cat, summary = tmp_path / "cat", tmp_path / "summary.json"
        rc = aegis(["data", "download", "--symbols", "BTCUSDT,ETHUSDT", "--kinds", "klines,fundingRate",
                    "--interval", "1m", "--from", "2024-11-30", "--to", "2024-12-31", "--catalog", str(cat),
                    "--base-url", server.base_url, "--workers", "3", "--no-progress",
                    "--summary-json", str(summary)])
        assert rc == 0
        doc = json.loads(summary.read_text())
        assert doc["files"] == {"downloaded": 2, "missing": 37}
        assert doc["rows_written"] == 41761 and doc["reasons"] == {}
        out = capsys.readouterr().out
        assert "klines_1m/ETHUSDT/2024-12: ETHUSDT-1m-2024-12.zip and 31 day files" in out
        assert aegis(["data", "list", "--catalog", str(cat), "--json"]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        assert (row["dataset"], row["symbol"], row["months"], row["rows"], row["first_ms"], row["last_ms"],
                row["gaps"], row["inexact_cells"], row["damaged"]) == (
            "klines_1m", "BTCUSDT", ["2024-11", "2024-12"], 41761, FIRST_OPEN_MS, LAST_OPEN_MS, 0, 11, [])
        assert aegis(["data", "list", "--catalog", str(cat)]) == 0
        table = capsys.readouterr().out
        assert "klines_1m" in table and "41,761" in table and "2024-12-29 23:00" in table

    def test_refused_file_makes_the_exit_status_1(self, tmp_path, own_server, capsys):
        """A checksum mismatch is printed with its reason and the command exits 1."""
        write_checksum(own_server.root / day_file(6).path, sha256="f" * 64)
        rc = aegis(["data", "download", "--symbols", "BTCUSDT", "--from", "2024-12-06", "--to", "2024-12-06",
                    "--catalog", str(tmp_path), "--base-url", own_server.base_url, "--no-progress",
                    "--attempts", "1"])
        assert rc == 1
        assert "REFUSED BTCUSDT-1m-2024-12-06.zip (checksum_mismatch)" in capsys.readouterr().out

    def test_bad_arguments_exit_2(self, tmp_path, capsys):
        """An unknown kind is a usage error (exit 2) before any request."""
        rc = aegis(["data", "download", "--symbols", "BTCUSDT", "--kinds", "candles", "--from", "2024-12-06",
                    "--to", "2024-12-06", "--catalog", str(tmp_path), "--base-url", "http://127.0.0.1:9"])
        assert rc == 2 and "unknown kind 'candles'" in capsys.readouterr().err
