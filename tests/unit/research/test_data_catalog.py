"""The catalog: source bookkeeping, manifests, and the streaming reader a backtest uses."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.errors import DataError
from research.catalog import (PartitionRecord, SourceRecord, iter_bars, load_manifest, merge_sources,
                              partition_path, read_funding, save_manifest)
from research.convert import Gap
from research.ingest import run_import
from tests.unit.research.conftest import (AGG_HEADER, DEC_FIRST_OPEN_MS, FIRST_OPEN_MS, LAST_OPEN_MS,
                                          csv_text)

MIN = 60_000
DAY = 86_400_000
DEC = (1733011200000, 1735689600000)


def src(name: str, start: int, end: int) -> SourceRecord:
    return SourceRecord(name=name, sha256="a" * 64, span=(start, end), rows=1, origin="test")


class TestSources:
    def test_month_file_replaces_the_days_of_its_month(self):
        """A month file added to a month built from days replaces them all."""
        days = (src("d5", DEC[0] + 4 * DAY, DEC[0] + 5 * DAY), src("d6", DEC[0] + 5 * DAY, DEC[0] + 6 * DAY))
        assert merge_sources(days, (src("m", *DEC),)) == (src("m", *DEC),)

    def test_days_are_kept_in_time_order(self):
        """A new day joins the stored days in time order; the same day is replaced."""
        d5, d7 = src("d5", DEC[0] + 4 * DAY, DEC[0] + 5 * DAY), src("d7", DEC[0] + 6 * DAY, DEC[0] + 7 * DAY)
        d6 = src("d6", DEC[0] + 5 * DAY, DEC[0] + 6 * DAY)
        assert [s.name for s in merge_sources((d5, d7), (d6,))] == ["d5", "d6", "d7"]
        new_d5 = src("d5-new", DEC[0] + 4 * DAY, DEC[0] + 5 * DAY)
        assert [s.name for s in merge_sources((d5, d7), (new_d5,))] == ["d5-new", "d7"]

    def test_a_day_cannot_replace_part_of_a_month_file(self):
        """A day into a month built from its month file is refused (DataError)."""
        with pytest.raises(DataError, match="part of m"):
            merge_sources((src("m", *DEC),), (src("d5", DEC[0] + 4 * DAY, DEC[0] + 5 * DAY),))

    def test_manifest_round_trips(self, tmp_path):
        """A manifest entry reads back equal to what was written."""
        rec = PartitionRecord(dataset="klines_1m", symbol="BTCUSDT", month="2024-12", rows=3, first_ms=DEC[0],
                              last_ms=DEC[0] + 3 * MIN, gaps=(Gap(from_ms=DEC[0] + MIN, to_ms=DEC[0] + MIN, bars=1),),
                              sources=(src("m", *DEC),), bytes=10)
        save_manifest(tmp_path, "klines_1m", "BTCUSDT", {"2024-12": rec})
        assert load_manifest(tmp_path, "klines_1m", "BTCUSDT") == {"2024-12": rec}


@pytest.fixture(scope="module")
def two_symbols(tmp_path_factory, klines):
    """A catalog with BTCUSDT (all 41,761 real bars, over November and December) and D001USDT,
    a derived demo symbol: the same real bars from 2024-11-30 23:30 to 2024-12-01 00:29."""
    root = tmp_path_factory.mktemp("two")
    cat = root / "cat"
    btc = root / "btc.csv"
    btc.write_text(csv_text([line for _, line in klines]))
    d001 = root / "d001.csv"
    d001.write_text(csv_text([line for t, line in klines if FIRST_OPEN_MS + 30 * MIN <= t < DEC_FIRST_OPEN_MS + 30 * MIN]))
    for path, symbol in ((btc, "BTCUSDT"), (d001, "D001USDT")):
        report = run_import(catalog=cat, path=path, kind="klines", symbol=symbol, interval="1m")
        assert report.ok
    return cat


def rows_of(batches, columns=("symbol", "open_time")) -> list[tuple]:
    out = []
    for b in batches:
        cols = [b.column(c).to_pylist() for c in columns]
        out.extend(zip(*cols))
    return out


class TestIterBars:
    def test_two_symbols_across_the_month_boundary_in_time_order(self, two_symbols, klines):
        """Nov 30 23:00 .. Dec 1 01:00: BTCUSDT 120 bars, D001USDT 60, merged by time, BTCUSDT first on ties."""
        start, end = FIRST_OPEN_MS, DEC_FIRST_OPEN_MS + 60 * MIN
        batches = list(iter_bars(two_symbols, "klines_1m", ["BTCUSDT", "D001USDT"], start, end, batch_rows=7))
        got = rows_of(batches)
        btc = [("BTCUSDT", t) for t, _ in klines if start <= t < end]
        d001 = [("D001USDT", t) for t, _ in klines if FIRST_OPEN_MS + 30 * MIN <= t < DEC_FIRST_OPEN_MS + 30 * MIN]
        assert (len(btc), len(d001), len(got)) == (120, 60, 180)
        assert got == sorted(btc + d001, key=lambda r: (r[1], r[0] != "BTCUSDT"))
        assert [b.num_rows for b in batches] == [7] * 25 + [5]
        assert batches[0].schema.names[:3] == ["symbol", "open_time", "open"]
        assert batches[0].column("symbol").type == pa.dictionary(pa.int32(), pa.string())

    def test_symbol_order_decides_ties(self, two_symbols):
        """Listing D001USDT first puts its bar first at every shared minute."""
        got = rows_of(iter_bars(two_symbols, "klines_1m", ["D001USDT", "BTCUSDT"], DEC_FIRST_OPEN_MS,
                                DEC_FIRST_OPEN_MS + 2 * MIN, batch_rows=3))
        assert got == [("D001USDT", DEC_FIRST_OPEN_MS), ("BTCUSDT", DEC_FIRST_OPEN_MS),
                       ("D001USDT", DEC_FIRST_OPEN_MS + MIN), ("BTCUSDT", DEC_FIRST_OPEN_MS + MIN)]

    def test_whole_catalog_counts_and_ends(self, two_symbols):
        """Everything: 41,761 + 60 rows; the first and last rows are the data's first and last bars."""
        batches = list(iter_bars(two_symbols, "klines_1m", ["BTCUSDT", "D001USDT"], 0, 2**62, batch_rows=5000))
        got = rows_of(batches)
        assert len(got) == 41821
        assert got[0] == ("BTCUSDT", FIRST_OPEN_MS) and got[-1] == ("BTCUSDT", LAST_OPEN_MS)
        assert [t for _, t in got] == sorted(t for _, t in got)

    def test_range_is_half_open_and_columns_can_be_chosen(self, two_symbols):
        """[start, end) with end on a bar excludes it; chosen columns come after symbol, time first."""
        batches = list(iter_bars(two_symbols, "klines_1m", ["BTCUSDT"], DEC_FIRST_OPEN_MS + 1,
                                 DEC_FIRST_OPEN_MS + 3 * MIN, columns=["close"]))
        assert [b.schema.names for b in batches] == [["symbol", "open_time", "close"]]
        assert batches[0].column("open_time").to_pylist() == [DEC_FIRST_OPEN_MS + MIN, DEC_FIRST_OPEN_MS + 2 * MIN]

    def test_streaming_reads_only_a_few_batches_ahead(self, two_symbols, monkeypatch):
        """At every batch it yields, the reader has read at most three batches more from the
        files than it has handed out (reading the range whole would be 40,000 rows ahead)."""
        import research.catalog as catalog

        read = [0]

        class Counting:
            def __init__(self, path):
                self.pf = catalog.pq.ParquetFile(path, pre_buffer=False)
                self.schema_arrow, self.metadata = self.pf.schema_arrow, self.pf.metadata

            def iter_batches(self, **kw):
                for b in self.pf.iter_batches(**kw):
                    read[0] += b.num_rows
                    yield b

            def close(self):
                self.pf.close()

        monkeypatch.setattr(catalog, "open_parquet", Counting)
        handed, ahead = 0, []
        for batch in iter_bars(two_symbols, "klines_1m", ["BTCUSDT", "D001USDT"], 0, 2**62, batch_rows=500):
            handed += batch.num_rows
            ahead.append(read[0] - handed)
        assert handed == read[0] == 41821 and len(ahead) == 84
        assert max(ahead) <= 3 * 500, max(ahead)

    def test_streaming_memory_stays_below_the_data(self, two_symbols):
        """Two months of two symbols streamed 1,000 rows at a time: pyarrow's allocator never
        holds half of what the same rows take when read whole."""
        whole = sum(pq.read_table(partition_path(two_symbols, "klines_1m", s, m)).nbytes
                    for s, m in (("BTCUSDT", "2024-11"), ("BTCUSDT", "2024-12"), ("D001USDT", "2024-11"),
                                 ("D001USDT", "2024-12")))
        base = pa.total_allocated_bytes()
        peak, sizes = 0, []
        for batch in iter_bars(two_symbols, "klines_1m", ["BTCUSDT", "D001USDT"], 0, 2**62, batch_rows=1000):
            peak = max(peak, pa.total_allocated_bytes() - base)
            sizes.append(batch.num_rows)
        assert sizes == [1000] * 41 + [821]
        assert whole > 3_600_000
        # each open month file holds ~1.1-1.5 MB of reader buffers, whatever the range
        assert peak < whole / 2, (peak, whole)


class TestTrades:
    def test_ties_within_a_millisecond_keep_symbol_then_file_order(self, tmp_path, trades):
        """Real trades share milliseconds: two symbols with the same trades interleave per
        millisecond, BTCUSDT's rows of each millisecond first, each in file order."""
        path = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv"
        path.write_text(csv_text([line for _, line in trades[:500]], header=AGG_HEADER))
        cat = tmp_path / "cat"
        assert run_import(catalog=cat, path=path).ok
        assert run_import(catalog=cat, path=path, symbol="D001USDT").ok
        got = rows_of(iter_bars(cat, "aggTrades", ["BTCUSDT", "D001USDT"], 0, 2**62, batch_rows=4),
                      columns=("symbol", "transact_time", "agg_trade_id"))
        ids = [(int(line.split(",")[5]), int(line.split(",")[0])) for _, line in trades[:500]]
        want = sorted([(t, 0, i) for t, i in ids] + [(t, 1, i) for t, i in ids])
        assert got == [("BTCUSDT" if s == 0 else "D001USDT", t, i) for t, s, i in want]
        assert len({t for t, _ in ids}) < 500  # the data really has ties


class TestFunding:
    def test_funding_of_two_symbols_by_time(self, tmp_path):
        """Settlements every 8 h (values filled in for the test) come back ordered by time, then symbol."""
        header = "calc_time,funding_interval_hours,last_funding_rate"
        t0 = DEC_FIRST_OPEN_MS
        for symbol, rate in (("BTCUSDT", "0.00010000"), ("ETHUSDT", "-0.00002500")):
            path = tmp_path / f"{symbol}-fundingRate-2024-12.csv"
            path.write_text(csv_text([f"{t0 + i * 8 * 3600_000 + 1},8,{rate}" for i in range(6)], header=header))
            assert run_import(catalog=tmp_path / "cat", path=path).ok
        table = read_funding(tmp_path / "cat", ["BTCUSDT", "ETHUSDT"], t0, t0 + DAY)
        assert table.column_names == ["symbol", "calc_time", "funding_interval_hours", "last_funding_rate"]
        assert table.num_rows == 6
        assert table.column("symbol").to_pylist() == ["BTCUSDT", "ETHUSDT"] * 3
        assert table.column("last_funding_rate").to_pylist() == [0.0001, -0.000025] * 3
        assert read_funding(tmp_path / "cat", ["BTCUSDT"], 0, 1).num_rows == 0
