"""CSV rows -> checked, typed Arrow: every refusal reason, gaps with exact ranges, on real rows."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from common.errors import DecodeError
from research.archive import Period, parse_period
from research.convert import Gap, detect_layout, find_gaps
from research.kinds import kind_spec
from research.writer import convert_file
from tests.unit.research.conftest import (AGG_HEADER, DEC_FIRST_OPEN_MS, FIRST_OPEN_MS, LAST_OPEN_MS,
                                          csv_text, write_zip)

MIN = 60_000


def convert(tmp_path: Path, text: str, *, kind: str = "klines", interval: str | None = "1m",
            period: Period | None = None, name: str = "x.csv"):
    src = tmp_path / name
    src.write_text(text)
    return convert_file(src, catalog=tmp_path / "cat", kind=kind, interval=interval, period=period,
                        test_crc=True)


def refusal(tmp_path: Path, text: str, **kw) -> DecodeError:
    with pytest.raises(DecodeError) as exc:
        convert(tmp_path, text, **kw)
    assert not list((tmp_path / "cat" / ".tmp").glob("*")), "a refused file leaves no part behind"
    return exc.value


class TestLayout:
    def test_header_row_is_recognised_and_checked(self):
        """A first line of names is a header; it must be exactly the kind's names."""
        spec = kind_spec("klines")
        from tests.unit.research.conftest import KLINE_HEADER
        assert detect_layout(KLINE_HEADER + "\r\n", spec).header is True
        assert detect_layout("1733007600000,96466.11,1,1,1,1,1733007659999,1,1,0,0,0\n", spec).header is False
        with pytest.raises(DecodeError) as exc:
            detect_layout(KLINE_HEADER.replace("quote_volume", "quote_asset_volume"), spec)
        assert exc.value.reason == "wrong_columns"

    def test_spot_agg_trades_with_best_match_column_are_accepted(self):
        """Spot aggTrades rows have an eighth column (is_best_match): accepted, then dropped."""
        layout = detect_layout("1,0.2,50,0,0,1608872400000,False,True", kind_spec("aggTrades"))
        assert [c.name for c in layout.columns][-1] == "is_best_match" and layout.header is False


class TestRealRows:
    def test_header_and_headerless_files_give_the_same_rows(self, tmp_path, klines):
        """The real file with and without a header row: 41,761 rows, same first/last, no gaps."""
        lines = [line for _, line in klines]
        a_parts, a = convert(tmp_path, csv_text(lines))
        b_parts, b = convert(tmp_path, csv_text(lines, header=None), name="y.csv")
        for state in (a, b):
            assert (state.rows, state.first_ms, state.last_ms, state.gaps) == (41761, FIRST_OPEN_MS, LAST_OPEN_MS, ())
        assert [(p.month.label, p.state.rows) for p in a_parts] == [("2024-11", 60), ("2024-12", 41701)]
        assert pq.read_table(a_parts[1].path).equals(pq.read_table(b_parts[1].path))

    def test_values_are_typed_exactly(self, tmp_path, klines):
        """The first real bar reads back as the decimals of its CSV line; times are int64 ms."""
        parts, _ = convert(tmp_path, csv_text([line for _, line in klines[:3]]))
        row = pq.read_table(parts[0].path).to_pylist()[0]
        assert row == {"open_time": 1733007600000, "open": 96466.11, "high": 96495.52, "low": 96440.0,
                       "close": 96440.0, "volume": 6.6158, "close_time": 1733007659999,
                       "quote_volume": 638250.2950308, "count": 3577, "taker_buy_volume": 0.0,
                       "taker_buy_quote_volume": 0.0}
        assert repr(row["quote_volume"]) == "638250.2950308"

    def test_cells_beyond_float64_digits_are_counted(self, tmp_path, klines):
        """11 real quote volumes have 16 significant digits: counted as inexact, kept."""
        _, state = convert(tmp_path, csv_text([line for _, line in klines]))
        assert state.inexact_cells == 11

    def test_microsecond_times_are_stored_as_milliseconds(self, tmp_path, klines):
        """A file in microseconds (the spot archive since 2025) gives the same ms rows."""
        def to_us(line: str) -> str:
            c = line.split(",")
            c[0], c[6] = c[0] + "000", str(int(c[6]) * 1000 + 999)
            return ",".join(c)
        lines = [line for _, line in klines[60:160]]
        ms_parts, _ = convert(tmp_path, csv_text(lines))
        us_parts, _ = convert(tmp_path, csv_text([to_us(x) for x in lines]), name="us.csv")
        assert pq.read_table(us_parts[0].path).equals(pq.read_table(ms_parts[0].path))

    def test_real_trades_become_agg_trades(self, tmp_path, trades):
        """21,313 real USD-M trades of 2024-08-08 23:54-23:59: ids and times in order, none dropped."""
        text = csv_text([line for _, line in trades], header=AGG_HEADER)
        parts, state = convert(tmp_path, text, kind="aggTrades", interval=None,
                               period=parse_period("2024-08-08"), name="BTCUSDT-aggTrades-2024-08-08.csv")
        assert (state.rows, state.first_ms, state.last_ms) == (21313, trades[0][0], trades[-1][0])
        table = pq.read_table(parts[0].path)
        assert table.schema.names == ["agg_trade_id", "price", "quantity", "first_trade_id",
                                      "last_trade_id", "transact_time", "is_buyer_maker"]
        assert table.column("agg_trade_id")[0].as_py() == 5266583935
        assert table.column("is_buyer_maker").to_pylist().count(True) == sum(
            1 for _, line in trades if line.endswith(",true"))


class TestRefusals:
    def lines(self, klines, n=100):
        return [line for _, line in klines[60:60 + n]]  # 2024-12-01 00:00 ..

    def test_wrong_header_is_refused(self, tmp_path, klines):
        """A header that is not the klines header: wrong_columns."""
        err = refusal(tmp_path, csv_text(self.lines(klines), header=AGG_HEADER))
        assert err.reason == "wrong_columns"

    def test_row_with_a_missing_cell_is_refused(self, tmp_path, klines):
        """Line 6 with 11 cells instead of 12: wrong_columns, the row quoted."""
        lines = self.lines(klines)
        lines[4] = lines[4].rsplit(",", 1)[0]
        err = refusal(tmp_path, csv_text(lines))
        assert err.reason == "wrong_columns" and "Expected 12 columns, got 11" in str(err)

    def test_headerless_file_with_wrong_column_count_is_refused(self, tmp_path, klines):
        """A file whose first row has 13 cells is not a klines file."""
        err = refusal(tmp_path, csv_text([x + ",1" for x in self.lines(klines)], header=None))
        assert err.reason == "wrong_columns" and "13 cells" in str(err)

    @pytest.mark.parametrize("cell", ["abc", "", "NaN", "inf"])
    def test_non_numeric_price_is_refused(self, tmp_path, klines, cell):
        """A close that is text, empty, NaN or infinite: non_numeric."""
        lines = self.lines(klines)
        c = lines[7].split(",")
        c[4] = cell
        lines[7] = ",".join(c)
        err = refusal(tmp_path, csv_text(lines))
        assert err.reason == "non_numeric"

    def test_rows_out_of_order_are_refused(self, tmp_path, klines):
        """Two swapped bars: unsorted, naming the file line where time goes back (line 12)."""
        lines = self.lines(klines)
        lines[9], lines[10] = lines[10], lines[9]
        err = refusal(tmp_path, csv_text(lines))
        assert err.reason == "unsorted" and str(err).startswith("line 12:")

    def test_duplicated_row_is_refused(self, tmp_path, klines):
        """The same bar twice: duplicate, at the repeated line (line 22 with the header)."""
        lines = self.lines(klines)
        lines.insert(20, lines[19])
        err = refusal(tmp_path, csv_text(lines))
        assert err.reason == "duplicate" and str(err).startswith("line 22:")

    def test_bar_off_the_minute_grid_is_refused(self, tmp_path, klines):
        """A 1m bar 30 s after the previous one: off_grid."""
        lines = self.lines(klines)
        c = lines[5].split(",")
        c[0] = str(int(c[0]) - 30_000)
        lines[5] = ",".join(c)
        assert refusal(tmp_path, csv_text(lines)).reason == "off_grid"

    def test_row_outside_the_named_day_is_refused(self, tmp_path, klines):
        """A file named for 2024-12-01 holding a bar of 2024-11-30: out_of_period."""
        lines = [line for _, line in klines[59:70]]  # 23:59 on Nov 30, then Dec 1
        err = refusal(tmp_path, csv_text(lines), period=parse_period("2024-12-01"))
        assert err.reason == "out_of_period" and str(err).startswith("line 2:")

    def test_time_outside_2017_2099_is_refused(self, tmp_path, klines):
        """Seconds instead of milliseconds: bad_time."""
        lines = self.lines(klines, 3)
        lines = [",".join([str(int(x.split(",")[0]) // 1000)] + x.split(",")[1:]) for x in lines]
        assert refusal(tmp_path, csv_text(lines)).reason == "bad_time"

    def test_empty_files_are_refused(self, tmp_path):
        """No bytes, or a header and nothing else: empty."""
        assert refusal(tmp_path, "").reason == "empty"
        assert refusal(tmp_path, csv_text([]).rstrip("\n") + "\n", name="h.csv").reason == "empty"


class TestZips:
    def test_truncated_zip_is_refused(self, tmp_path, klines):
        """The first half of a real zip: bad_zip."""
        z = write_zip(tmp_path / "BTCUSDT-1m-2024-12-01.zip", csv_text([x for _, x in klines[60:1500]]))
        z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
        with pytest.raises(DecodeError) as exc:
            convert_file(z, catalog=tmp_path / "cat", kind="klines", interval="1m", period=None, test_crc=True)
        assert exc.value.reason == "bad_zip"

    def test_damaged_zip_data_is_refused_by_its_crc(self, tmp_path, klines):
        """Bytes flipped inside the compressed data (the directory intact): bad_zip, not a parse error."""
        z = write_zip(tmp_path / "d.zip", csv_text([x for _, x in klines[:5000]]))
        data = bytearray(z.read_bytes())
        for i in range(2000, 2064):
            data[i] ^= 0x5A
        z.write_bytes(bytes(data))
        with pytest.raises(DecodeError) as exc:
            convert_file(z, catalog=tmp_path / "cat", kind="klines", interval="1m", period=None, test_crc=True)
        assert exc.value.reason == "bad_zip"

    def test_zip_with_two_files_is_refused(self, tmp_path, klines):
        """An archive zip holds exactly one CSV."""
        z = tmp_path / "two.zip"
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("a.csv", csv_text([klines[0][1]]))
            zf.writestr("b.csv", csv_text([klines[1][1]]))
        with pytest.raises(DecodeError) as exc:
            convert_file(z, catalog=tmp_path / "cat", kind="klines", interval="1m", period=None, test_crc=True)
        assert exc.value.reason == "bad_zip"


class TestGaps:
    def test_missing_bars_are_reported_with_their_exact_range(self, tmp_path, klines):
        """Ten bars removed (00:50..00:59 on Dec 1): one gap of 10 bars, the rest kept."""
        lines = [line for _, line in klines[60:160]]
        del lines[50:60]
        _, state = convert(tmp_path, csv_text(lines))
        assert state.rows == 90
        assert state.gaps == (Gap(from_ms=DEC_FIRST_OPEN_MS + 50 * MIN, to_ms=DEC_FIRST_OPEN_MS + 59 * MIN, bars=10),)

    def test_find_gaps_carries_the_previous_bar(self):
        """A gap between the last bar of one batch and the first of the next is found."""
        t = np.array([300_000, 360_000, 540_000], dtype=np.int64)
        gaps, off = find_gaps(t, MIN, prev_ms=120_000)
        assert off is None
        assert gaps == [Gap(from_ms=180_000, to_ms=240_000, bars=2), Gap(from_ms=420_000, to_ms=480_000, bars=2)]
        assert find_gaps(t, MIN, prev_ms=None) == ([Gap(from_ms=420_000, to_ms=480_000, bars=2)], None)
        assert find_gaps(np.array([0, 90_000], dtype=np.int64), MIN, None) == ([], 1)
