"""research.strategy_api.Resampler: the 15-minute candles it builds from the repository's real
BTCUSDT 1m bars are Binance's own 15-minute candles of the same month (the two files come from
the same spot kline dumps), and a gap closes a bucket early instead of merging two."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest

from common.errors import ConfigError
from research.strategy_api import Candle, Resampler

DATA = Path(__file__).resolve().parents[3] / "services" / "exchange_sim" / "data"


def read(name: str, width_ms: int) -> list[Candle]:
    """The file's candles; the open time is the close (``close_datetime``, +01:00) minus the width."""
    out = []
    with (DATA / name).open() as fh:
        for r in csv.DictReader(fh):
            close_ms = int(datetime.fromisoformat(r["close_datetime"]).timestamp() * 1000) + 1
            out.append(Candle(symbol="BTCUSDT", interval_s=width_ms // 1000, open_ms=close_ms - width_ms,
                              close_ms=close_ms, open=float(r["open"]), high=float(r["high"]), low=float(r["low"]),
                              close=float(r["close"]), volume=float(r["volume"])))
    return out


def test_fifteen_minute_candles_from_real_1m_bars_are_binances_own():
    """All 2,784 complete 15-minute candles of 2024-11-30 23:00 .. 2024-12-29 23:00: open, high,
    low, close exactly as Binance's 15m file, volume to the float sum's rounding."""
    ones = read("BTCUSDT_1m_2024-12.csv", 60_000)
    fifteens = {c.open_ms: c for c in read("BTCUSDT_15m_2024.csv", 900_000)}
    r = Resampler(900)
    built = [h for c in ones for h in r.add(c)]
    assert len(built) == 2_784 and r.bucket is not None  # the last 1m bar opens a bucket it cannot close
    for h in built:
        want = fifteens[h.open_ms]
        assert (h.open, h.high, h.low, h.close, h.close_ms) == (want.open, want.high, want.low, want.close,
                                                                 want.close_ms)
        assert h.volume == pytest.approx(want.volume, rel=1e-12)


def test_a_gap_closes_the_bucket_early():
    """Minutes :00 and :01 of one 15-minute bucket, then a bar of the next bucket: the first bucket
    is emitted (two bars) when the later bar arrives; then :29 closes the second one."""
    def bar(minute: int, price: float) -> Candle:
        return Candle(symbol="X", interval_s=60, open_ms=minute * 60_000, close_ms=(minute + 1) * 60_000,
                      open=price, high=price + 1, low=price - 1, close=price, volume=1.0)

    r = Resampler(900)
    assert r.add(bar(0, 10.0)) == [] and r.add(bar(1, 12.0)) == []
    out = r.add(bar(16, 20.0))
    assert [(c.open_ms, c.open, c.high, c.low, c.close, c.volume) for c in out] == [(0, 10.0, 13.0, 9.0, 12.0, 2.0)]
    out = r.add(bar(29, 30.0))
    assert [(c.open_ms, c.open, c.high, c.low, c.close, c.volume) for c in out] == \
        [(900_000, 20.0, 31.0, 19.0, 30.0, 2.0)]


def test_resampler_refuses_a_bad_interval():
    """Zero, negative or non-integer widths are a ConfigError."""
    for bad in (0, -60, 1.5, True):
        with pytest.raises(ConfigError):
            Resampler(bad)
