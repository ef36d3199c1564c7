"""The data firewall: each check's boundaries, one behaviour per test."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from common.records import Flag, Kind, empty
from services.feed import firewall as fw

REF = 1_723_161_256_000  # a reference clock in ms (2024-08-08)
SYMS = range(4)


class TestReasons:
    def test_every_reason_is_a_short_snake_case_label(self):
        """Reasons are counter labels: lower snake case, at most 20 characters."""
        assert all(re.fullmatch(r"[a-z][a-z0-9_]{1,19}", r) for r in fw.REASONS)

    def test_reasons_listed_in_the_brief_exist(self):
        """The rejection vocabulary the feed and the CLI count by is all present."""
        assert {"bad_price", "bad_qty", "bad_timestamp", "unknown_symbol", "missing_field",
                "wrong_type", "bad_json", "not_utf8", "empty_frame", "unknown_event",
                "unsupported_event", "spot_format", "bad_candle", "crossed_book"} <= fw.REASONS


class TestIsValidPrice:
    def test_positive_finite_float_is_a_price(self):
        """An ordinary price passes."""
        assert fw.is_valid_price(61800.3)

    def test_zero_is_not_a_price(self):
        """Zero is refused: nothing trades for free."""
        assert not fw.is_valid_price(0.0)

    def test_negative_is_not_a_price(self):
        """Negative prices are refused (USD-M contracts cannot go below zero)."""
        assert not fw.is_valid_price(-1.0)

    def test_nan_is_not_a_price(self):
        """NaN fails every comparison, so it is refused."""
        assert not fw.is_valid_price(math.nan)

    def test_infinity_is_not_a_price(self):
        """+inf is refused."""
        assert not fw.is_valid_price(math.inf)

    def test_bound_is_exclusive(self):
        """MAX_PRICE itself is absurd; the float just below it is not."""
        assert not fw.is_valid_price(fw.MAX_PRICE)
        assert fw.is_valid_price(math.nextafter(fw.MAX_PRICE, 0.0))

    def test_tiny_positive_price_passes(self):
        """Sub-cent prices are real (1000SHIB-style contracts quote 1e-5 and below)."""
        assert fw.is_valid_price(1e-8)

    def test_int_is_not_a_price(self):
        """Prices come out of the decoder as floats: an int means a caller mixed up fields."""
        assert not fw.is_valid_price(100)

    def test_bool_is_not_a_price(self):
        """True is an int in Python, and still not a price."""
        assert not fw.is_valid_price(True)

    def test_string_is_not_a_price(self):
        """The wire's decimal string must be parsed before it is checked."""
        assert not fw.is_valid_price("100.0")

    def test_numpy_float_from_the_ring_is_a_price(self):
        """np.float64 and np.float32 values read from ring records are accepted."""
        assert fw.is_valid_price(np.float64(1.5)) and fw.is_valid_price(np.float32(1.5))


class TestIsValidQty:
    def test_positive_size_passes(self):
        """A traded size of 0.001 passes."""
        assert fw.is_valid_qty(0.001)

    def test_zero_size_is_refused(self):
        """A trade or top-of-book size of 0 is not a size."""
        assert not fw.is_valid_qty(0.0)

    def test_bound_is_inclusive(self):
        """MAX_QTY passes, the next float up does not."""
        assert fw.is_valid_qty(fw.MAX_QTY)
        assert not fw.is_valid_qty(math.nextafter(fw.MAX_QTY, math.inf))

    def test_negative_infinity_is_refused(self):
        """-inf is refused."""
        assert not fw.is_valid_qty(-math.inf)


class TestIsValidVolume:
    def test_zero_volume_passes(self):
        """A minute without trades has volume 0, and "0" deletes a book level."""
        assert fw.is_valid_volume(0.0)

    def test_negative_zero_passes(self):
        """-0.0 equals 0.0 and is harmless."""
        assert fw.is_valid_volume(-0.0)

    def test_negative_volume_is_refused(self):
        """The smallest negative volume is refused."""
        assert not fw.is_valid_volume(-1e-12)

    def test_nan_volume_is_refused(self):
        """NaN volume is refused."""
        assert not fw.is_valid_volume(math.nan)

    def test_volume_above_bound_is_refused(self):
        """1e16 is beyond MAX_QTY."""
        assert not fw.is_valid_volume(1e16)

    def test_int_volume_is_refused(self):
        """Volumes are floats; an int is a type error."""
        assert not fw.is_valid_volume(5)


class TestIsValidRate:
    def test_negative_funding_rate_passes(self):
        """Shorts pay longs: negative rates are normal."""
        assert fw.is_valid_rate(-0.0075)

    def test_bounds_are_inclusive(self):
        """+-MAX_ABS_RATE pass, beyond does not."""
        assert fw.is_valid_rate(fw.MAX_ABS_RATE) and fw.is_valid_rate(-fw.MAX_ABS_RATE)
        assert not fw.is_valid_rate(1.5)

    def test_nan_rate_is_refused(self):
        """NaN funding is refused."""
        assert not fw.is_valid_rate(math.nan)


class TestIsValidId:
    def test_zero_and_max_int64_pass(self):
        """Ids span [0, 2**63 - 1], the record's int64 field."""
        assert fw.is_valid_id(0) and fw.is_valid_id(2**63 - 1)

    def test_id_beyond_int64_is_refused(self):
        """2**63 would not fit the record."""
        assert not fw.is_valid_id(2**63)

    def test_negative_id_is_refused(self):
        """-1 is refused."""
        assert not fw.is_valid_id(-1)

    def test_bool_and_float_ids_are_refused(self):
        """True and 5.0 are not ids."""
        assert not fw.is_valid_id(True) and not fw.is_valid_id(5.0)

    def test_numpy_integer_id_passes(self):
        """np.int64 from a ring record is an integer."""
        assert fw.is_valid_id(np.int64(7))


class TestIsValidTimestamp:
    def test_plausible_time_without_reference_passes(self):
        """Without a reference only the 2019-2100 plausibility bounds apply."""
        assert fw.is_valid_timestamp(REF)

    def test_time_before_2019_is_refused(self):
        """One ms before MIN_EVENT_MS is refused (seconds instead of ms look like 1970)."""
        assert not fw.is_valid_timestamp(fw.MIN_EVENT_MS - 1)
        assert not fw.is_valid_timestamp(REF // 1000)

    def test_time_after_2100_is_refused(self):
        """One ms after MAX_EVENT_MS is refused (microseconds instead of ms look far future)."""
        assert not fw.is_valid_timestamp(fw.MAX_EVENT_MS + 1)
        assert not fw.is_valid_timestamp(REF * 1000)

    def test_past_tolerance_boundary_is_inclusive(self):
        """Exactly 60 s old passes, 60.001 s old does not."""
        assert fw.is_valid_timestamp(REF - 60_000, REF)
        assert not fw.is_valid_timestamp(REF - 60_001, REF)

    def test_future_tolerance_boundary_is_inclusive(self):
        """Exactly 5 s ahead passes, 5.001 s ahead does not."""
        assert fw.is_valid_timestamp(REF + 5_000, REF)
        assert not fw.is_valid_timestamp(REF + 5_001, REF)

    def test_recorder_lag_of_the_2024_capture_passes(self):
        """Event time 1.27 s ahead of the local clock (the real capture's skew) passes."""
        assert fw.is_valid_timestamp(REF + 1_273, REF)

    def test_custom_tolerances_apply(self):
        """Tolerances are parameters: 1 s past / 0 s future."""
        assert not fw.is_valid_timestamp(REF + 1, REF, 1_000, 0)
        assert fw.is_valid_timestamp(REF - 1_000, REF, 1_000, 0)

    def test_float_and_bool_times_are_refused(self):
        """Times are integer ms: a float or a bool is a type error."""
        assert not fw.is_valid_timestamp(float(REF), REF)
        assert not fw.is_valid_timestamp(True)


class TestIsValidCandle:
    def test_ordinary_candle_passes(self):
        """low <= open, close <= high and positive volume pass."""
        assert fw.is_valid_candle(100.0, 105.0, 99.0, 104.0, 12.5)

    def test_flat_candle_without_volume_passes(self):
        """A minute without trades: o = h = l = c, volume 0."""
        assert fw.is_valid_candle(100.0, 100.0, 100.0, 100.0, 0.0)

    def test_high_below_low_is_refused(self):
        """high < low is impossible."""
        assert not fw.is_valid_candle(100.0, 98.0, 99.0, 100.0, 1.0)

    def test_high_below_close_is_refused(self):
        """high must cover the close."""
        assert not fw.is_valid_candle(100.0, 101.0, 99.0, 102.0, 1.0)

    def test_low_above_open_is_refused(self):
        """low must cover the open."""
        assert not fw.is_valid_candle(98.0, 101.0, 99.0, 100.0, 1.0)

    def test_zero_low_is_refused(self):
        """low must be a positive price."""
        assert not fw.is_valid_candle(1.0, 1.0, 0.0, 1.0, 1.0)

    def test_negative_volume_is_refused(self):
        """Volume below zero is refused."""
        assert not fw.is_valid_candle(1.0, 1.0, 1.0, 1.0, -1.0)

    def test_nan_anywhere_is_refused(self):
        """A NaN in any of the five fields fails the candle."""
        good = [100.0, 105.0, 99.0, 104.0, 1.0]
        for i in range(5):
            bad = list(good)
            bad[i] = math.nan
            assert not fw.is_valid_candle(*bad)

    def test_candle_reason_names_bad_candle(self):
        """candle_reason gives 'bad_candle' for a broken candle and None for a good one."""
        assert fw.candle_reason(1.0, 0.5, 0.9, 1.0, 1.0) == "bad_candle"
        assert fw.candle_reason(1.0, 1.0, 1.0, 1.0, 1.0) is None


class TestTradeBookMarkReasons:
    def test_trade_with_zero_quantity_is_bad_qty(self):
        """A trade of size 0 is refused as bad_qty."""
        assert fw.trade_reason(100.0, 0.0) == "bad_qty"

    def test_trade_with_nan_price_is_bad_price(self):
        """A NaN price is bad_price, checked before the quantity."""
        assert fw.trade_reason(math.nan, 0.0) == "bad_price"

    def test_good_book_passes(self):
        """bid < ask with positive sizes passes."""
        assert fw.book_reason(100.0, 1.0, 100.1, 2.0) is None

    def test_crossed_book_is_refused(self):
        """bid > ask is crossed_book."""
        assert fw.book_reason(100.2, 1.0, 100.1, 2.0) == "crossed_book"

    def test_locked_book_passes(self):
        """bid == ask (locked) is let through; only a crossed book is impossible."""
        assert fw.book_reason(100.0, 1.0, 100.0, 2.0) is None

    def test_book_with_zero_ask_size_is_bad_qty(self):
        """A best ask with no size is bad_qty."""
        assert fw.book_reason(100.0, 1.0, 100.1, 0.0) == "bad_qty"

    def test_book_with_string_price_is_bad_price_not_an_exception(self):
        """Wrong types are refused, never raised on."""
        assert fw.book_reason("100", 1.0, 100.1, 1.0) == "bad_price"

    def test_mark_with_negative_rate_passes(self):
        """A negative funding rate is normal."""
        assert fw.mark_reason(100.0, 99.9, -0.0001) is None

    def test_mark_with_absurd_rate_is_bad_rate(self):
        """A rate of 2 (200 % per interval) is bad_rate."""
        assert fw.mark_reason(100.0, 99.9, 2.0) == "bad_rate"

    def test_mark_with_zero_index_is_bad_price(self):
        """The index price must be a price too."""
        assert fw.mark_reason(100.0, 0.0, 0.0) == "bad_price"


def _trade_fields(**kw):
    f = dict(symbol_id=1, kind=int(Kind.TRADE), flags=int(Flag.BUYER_IS_MAKER), recv_ns=REF * 10**6,
             event_ms=REF, id=5266583935, price=61800.3, qty=0.006, aux=0.0, aux_qty=0.0)
    f.update(kw)
    return f


class TestTickReason:
    def test_valid_trade_record_passes(self):
        """A trade record with every field right passes, is_valid_tick agrees."""
        assert fw.tick_reason(**_trade_fields(), symbols=SYMS) is None
        assert fw.is_valid_tick(**_trade_fields(), symbols=SYMS)

    def test_unknown_symbol_id_is_refused(self):
        """A symbol id outside the table is unknown_symbol."""
        assert fw.tick_reason(**_trade_fields(symbol_id=9), symbols=SYMS) == "unknown_symbol"

    def test_unknown_kind_is_refused(self):
        """Kind 0 (an unwritten slot) is bad_kind."""
        assert fw.tick_reason(**_trade_fields(kind=0), symbols=SYMS) == "bad_kind"

    def test_unknown_flag_bit_is_refused(self):
        """Bit 0x80 is not a Flag: bad_flags."""
        assert fw.tick_reason(**_trade_fields(flags=0x80), symbols=SYMS) == "bad_flags"

    def test_synthetic_and_derived_flags_are_known(self):
        """Demo records carry SYNTHETIC | DERIVED and pass."""
        flags = int(Flag.SYNTHETIC | Flag.DERIVED)
        assert fw.tick_reason(**_trade_fields(flags=flags), symbols=SYMS) is None

    def test_trade_with_ask_fields_set_is_refused(self):
        """Trades leave aux and aux_qty at 0; anything else is a mixed-up record."""
        assert fw.tick_reason(**_trade_fields(aux=1.0), symbols=SYMS) == "bad_price"

    def test_event_time_outside_reference_window_is_refused(self):
        """With a reference clock, an event 2 minutes old is bad_timestamp."""
        assert fw.tick_reason(**_trade_fields(event_ms=REF - 120_000), symbols=SYMS,
                              ref_ms=REF) == "bad_timestamp"

    def test_negative_receive_time_is_refused(self):
        """recv_ns below zero is bad_timestamp (0 means unknown and passes)."""
        assert fw.tick_reason(**_trade_fields(recv_ns=-1), symbols=SYMS) == "bad_timestamp"
        assert fw.tick_reason(**_trade_fields(recv_ns=0), symbols=SYMS) is None

    def test_crossed_book_record_is_refused(self):
        """A BOOK record with bid above ask is crossed_book."""
        f = _trade_fields(kind=int(Kind.BOOK), flags=0, price=101.0, qty=1.0, aux=100.0, aux_qty=1.0)
        assert fw.tick_reason(**f, symbols=SYMS) == "crossed_book"

    def test_mark_record_reads_rate_from_qty_and_index_from_aux(self):
        """MARK: price = mark, qty = funding rate (may be negative), aux = index."""
        f = _trade_fields(kind=int(Kind.MARK), flags=0, id=0, price=100.0, qty=-0.0003, aux=99.9)
        assert fw.tick_reason(**f, symbols=SYMS) is None

    def test_numpy_record_row_from_the_ring_layout_passes(self):
        """Fields read from a TICK_DTYPE row (numpy scalars) are checked like Python values."""
        rec = empty(1)[0]
        rec["symbol_id"], rec["kind"], rec["recv_ns"], rec["event_ms"] = 2, int(Kind.BOOK), 1, REF
        rec["id"], rec["price"], rec["qty"], rec["aux"], rec["aux_qty"] = 9, 100.0, 1.0, 100.5, 2.0
        fields = [rec[n] for n in ("symbol_id", "kind", "flags", "recv_ns", "event_ms", "id",
                                   "price", "qty", "aux", "aux_qty")]
        assert fw.tick_reason(*fields, symbols=SYMS) is None

    def test_bool_symbol_id_is_refused(self):
        """True is not a symbol id even though True == 1."""
        assert fw.tick_reason(**_trade_fields(symbol_id=True), symbols=SYMS) == "unknown_symbol"

    @pytest.mark.parametrize("field", ["price", "qty"])
    def test_nan_trade_value_is_refused(self, field):
        """NaN in price or qty is refused with that field's reason."""
        want = "bad_price" if field == "price" else "bad_qty"
        assert fw.tick_reason(**_trade_fields(**{field: math.nan}), symbols=SYMS) == want
