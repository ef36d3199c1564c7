"""``aegis data import``: local archive zips and CSVs into the catalog, checked the same way."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq

from common.cli import main as aegis
from research.catalog import load_manifest, partition_path
from research.ingest import run_import
from research.localarchive import write_checksum
from tests.unit.research.conftest import DEC_FIRST_OPEN_MS, FIRST_OPEN_MS, LAST_OPEN_MS, csv_text

MONTH_ZIP = "data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12.zip"
DAY_ZIP = "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12-05.zip"
DAY = 86_400_000


def copy(archive_root, rel, dest_dir, with_checksum=True):
    dest_dir.mkdir(parents=True, exist_ok=True)
    src = archive_root / rel
    shutil.copy(src, dest_dir / src.name)
    if with_checksum:
        shutil.copy(src.with_name(src.name + ".CHECKSUM"), dest_dir / (src.name + ".CHECKSUM"))
    return dest_dir / src.name


class TestImport:
    def test_month_zip_is_imported_with_its_name_telling_what_it_is(self, tmp_path, archive_root):
        """BTCUSDT-1m-2024-12.zip with its CHECKSUM: klines_1m/BTCUSDT/2024-12, 41,701 rows."""
        z = copy(archive_root, MONTH_ZIP, tmp_path / "in")
        report = run_import(catalog=tmp_path / "cat", path=z)
        assert report.ok and report.file_counts() == {"imported": 1}
        rec = load_manifest(tmp_path / "cat", "klines_1m", "BTCUSDT")["2024-12"]
        assert (rec.rows, rec.first_ms, rec.last_ms) == (41701, DEC_FIRST_OPEN_MS, LAST_OPEN_MS)
        assert rec.sources[0].origin == f"import:{z.resolve()}"
        assert rec.sources[0].sha256 == (z.parent / (z.name + ".CHECKSUM")).read_text().split()[0]

    def test_importing_the_same_file_again_changes_nothing(self, tmp_path, archive_root):
        """A second import of the same bytes is recognised by its sha256 and kept."""
        z = copy(archive_root, DAY_ZIP, tmp_path / "in")
        run_import(catalog=tmp_path / "cat", path=z)
        again = run_import(catalog=tmp_path / "cat", path=z)
        assert again.file_counts() == {"kept": 1} and again.partition_counts() == {"unchanged": 1}

    def test_checksum_beside_the_file_must_match(self, tmp_path, archive_root):
        """A .CHECKSUM next to the zip that disagrees with it: refused, nothing written."""
        z = copy(archive_root, DAY_ZIP, tmp_path / "in")
        write_checksum(z, sha256="1" * 64)
        report = run_import(catalog=tmp_path / "cat", path=z)
        assert report.reasons() == {"checksum_mismatch": 1} and not report.ok
        assert load_manifest(tmp_path / "cat", "klines_1m", "BTCUSDT") == {}

    def test_csv_without_an_archive_name_goes_to_the_months_of_its_rows(self, tmp_path, klines):
        """A CSV of all 41,761 bars with --kind/--symbol/--interval: 60 rows in November, 41,701 in December."""
        path = tmp_path / "bars.csv"
        path.write_text(csv_text([line for _, line in klines]))
        report = run_import(catalog=tmp_path / "cat", path=path, kind="klines", symbol="BTCUSDT", interval="1m")
        assert report.ok and report.partition_counts() == {"written": 2}
        recs = load_manifest(tmp_path / "cat", "klines_1m", "BTCUSDT")
        assert (recs["2024-11"].rows, recs["2024-11"].first_ms) == (60, FIRST_OPEN_MS)
        assert (recs["2024-12"].rows, recs["2024-12"].last_ms) == (41701, LAST_OPEN_MS)

    def test_day_into_a_month_from_its_month_file_is_refused(self, tmp_path, archive_root):
        """The month file is in the catalog: a day file cannot replace part of it."""
        run_import(catalog=tmp_path / "cat", path=copy(archive_root, MONTH_ZIP, tmp_path / "in"))
        report = run_import(catalog=tmp_path / "cat", path=copy(archive_root, DAY_ZIP, tmp_path / "in"))
        assert report.reasons() == {"conflict": 1} and report.partition_counts() == {"not_written": 1}
        assert load_manifest(tmp_path / "cat", "klines_1m", "BTCUSDT")["2024-12"].rows == 41701

    def test_days_add_up_in_one_month_file(self, tmp_path, archive_root):
        """Dec 5 then Dec 7 imported: one month file of 2,880 rows, with the day between as a gap."""
        cat = tmp_path / "cat"
        run_import(catalog=cat, path=copy(archive_root, DAY_ZIP, tmp_path / "in"))
        run_import(catalog=cat, path=copy(archive_root, DAY_ZIP.replace("12-05", "12-07"), tmp_path / "in"))
        rec = load_manifest(cat, "klines_1m", "BTCUSDT")["2024-12"]
        assert rec.rows == 2880 and [g.bars for g in rec.gaps] == [1440]
        assert rec.gaps[0].from_ms == DEC_FIRST_OPEN_MS + 5 * DAY
        t = pq.read_table(partition_path(cat, "klines_1m", "BTCUSDT", "2024-12")).column("open_time").to_pylist()
        assert t == sorted(t) and len(t) == 2880

    def test_a_day_between_stored_days_reads_only_their_row_groups(self, tmp_path, archive_root, monkeypatch):
        """With 100-row row groups, Dec 5 and 7 stored then Dec 6 added: 4,320 bars in order,
        no gap, each stored day copied from the old month file by its row groups."""
        import research.writer as writer
        monkeypatch.setattr(writer, "ROW_GROUP_ROWS", 100)
        cat = tmp_path / "cat"
        for day in ("05", "07", "06"):
            assert run_import(catalog=cat, path=copy(archive_root, DAY_ZIP.replace("12-05", f"12-{day}"),
                                                     tmp_path / "in")).ok
        rec = load_manifest(cat, "klines_1m", "BTCUSDT")["2024-12"]
        assert (rec.rows, rec.gaps, [s.rows for s in rec.sources]) == (4320, (), [1440, 1440, 1440])
        path = partition_path(cat, "klines_1m", "BTCUSDT", "2024-12")
        assert pq.read_metadata(path).num_row_groups == 44
        t = pq.read_table(path).column("open_time").to_pylist()
        assert t == [DEC_FIRST_OPEN_MS + 4 * DAY + i * 60_000 for i in range(4320)]

    def test_folder_layout_tells_mark_price_klines(self, tmp_path, archive_root):
        """A kline-named zip under a markPriceKlines folder goes to markPriceKlines_1m (7 columns kept)."""
        z = copy(archive_root, DAY_ZIP, tmp_path / "markPriceKlines" / "BTCUSDT" / "1m", with_checksum=False)
        assert run_import(catalog=tmp_path / "cat", path=z).ok
        table = pq.read_table(partition_path(tmp_path / "cat", "markPriceKlines_1m", "BTCUSDT", "2024-12"))
        assert table.num_rows == 1440
        assert table.column_names == ["open_time", "open", "high", "low", "close", "close_time", "count"]


class TestImportCommand:
    def test_command_prints_what_it_stored(self, tmp_path, archive_root, capsys):
        """aegis data import FILE: exit 0 and one line per month file written."""
        z = copy(archive_root, DAY_ZIP, tmp_path / "in")
        assert aegis(["data", "import", str(z), "--catalog", str(tmp_path / "cat")]) == 0
        assert "written klines_1m/BTCUSDT/2024-12: 1,440 rows, 2024-12-05 00:00 .. 2024-12-05 23:59 UTC" in (
            capsys.readouterr().out)

    def test_refused_import_exits_1_and_unnamed_file_exits_2(self, tmp_path, archive_root, capsys):
        """A damaged zip exits 1 with its reason; a file nothing can be inferred from exits 2."""
        z = copy(archive_root, DAY_ZIP, tmp_path / "in", with_checksum=False)
        z.write_bytes(z.read_bytes()[:100])
        assert aegis(["data", "import", str(z), "--catalog", str(tmp_path / "cat")]) == 1
        assert "(bad_zip)" in capsys.readouterr().out
        odd = tmp_path / "prices.csv"
        odd.write_text("x\n")
        assert aegis(["data", "import", str(odd), "--catalog", str(tmp_path / "cat")]) == 2
        assert "pass --kind" in capsys.readouterr().err
