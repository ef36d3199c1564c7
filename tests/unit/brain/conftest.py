"""Brain test fixtures: tick records built by hand and from the real hftbacktest capture."""

from __future__ import annotations

import gzip
from typing import NamedTuple

import numpy as np
import orjson
import pytest
from tick_rows import make_records

from common.records import Flag, Kind
from tests.conftest import HFT_CAPTURE

CAPTURE = HFT_CAPTURE  # the capture the exchange sim ships with (services/exchange_sim/data)


class Trade(NamedTuple):
    t: int  # trade time T, ms
    tid: int
    price: float
    qty: float
    buyer_is_maker: bool


class Capture(NamedTuple):
    records: np.ndarray  # trades and book tickers in arrival order, symbol_id 0
    trades: list[Trade]  # the trades alone, arrival order
    last_book: tuple[int, float, float, float, float]  # E, bid, bid_qty, ask, ask_qty


@pytest.fixture(scope="session")
def capture() -> Capture:
    """The BTCUSDT capture as tick records, parsed independently of the feed's decoder."""
    rows = []
    trades = []
    last_book = None
    with gzip.open(CAPTURE, "rb") as fh:
        for line in fh:
            _, raw = line.split(b" ", 1)
            msg = orjson.loads(raw)
            stream = msg.get("stream", "")
            if stream.endswith("@trade"):
                d = msg["data"]
                flags = Flag.BUYER_IS_MAKER if d["m"] else Flag.NONE
                if d["X"] != "MARKET":
                    flags |= Flag.NON_MARKET
                trades.append(Trade(d["T"], d["t"], float(d["p"]), float(d["q"]), d["m"]))
                rows.append((Kind.TRADE, 0, d["T"], float(d["p"]), float(d["q"]), d["t"], flags))
            elif stream.endswith("@bookTicker"):
                d = msg["data"]
                b = (d["E"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
                last_book = b
                rows.append((Kind.BOOK, 0, b[0], b[1], b[2], d["u"], 0, b[3], b[4]))
    return Capture(make_records(rows), trades, last_book)
