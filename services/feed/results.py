"""What one market-data frame becomes: a ``Result`` with its status (TICK, EVENT, CONTROL,
DUPLICATE, REJECTED) and, for a tick, the fields of one ring record (``Tick``); for a kline,
depth diff or depth snapshot, what the feed keeps of it. Made by the codec
(``services.feed.codec``, which also names them: ``codec.Result``), completed by the
sequencer (``services.feed.sequencer``: DUPLICATE, ``Gap``).
"""

from __future__ import annotations

from typing import Any

import msgspec

TICK = 0  # accepted, one ring record in ``tick``
EVENT = 1  # accepted, not a ring record (kline, depth, ticker, arrays, REST bodies)
CONTROL = 2  # a reply to a control message (SUBSCRIBE, ...)
DUPLICATE = 3  # already seen on this stream: drop it (reason ``duplicate``)
REJECTED = 4  # refused: ``reason`` says why
STATUS_NAMES = ("tick", "event", "control", "duplicate", "rejected")

DEPTH_SNAPSHOT = "depthSnapshot"  # event names for messages that carry no ``e``
OPEN_INTEREST = "openInterest"
CONTROL_REPLY = "control"
CONTROL_ERROR = "controlError"


class _Frozen(msgspec.Struct, frozen=True, gc=False):
    """Results are immutable values. msgspec Structs: built in C, about half the cost of a
    NamedTuple here, and untracked by the cyclic GC (they never hold a cycle)."""


class Tick(_Frozen):
    """The fields of one ring record (``common.records.TICK_DTYPE`` minus ``stamp``)."""

    symbol_id: int
    kind: int  # common.records.Kind
    flags: int  # common.records.Flag bits
    recv_ns: int  # local receive time, 0 when unknown
    event_ms: int  # trade time T for trades, else E
    id: int  # trade id t / aggregate id a / book update id u / 0 for marks
    price: float  # trade price / best bid / mark price
    qty: float  # trade qty / best bid qty / funding rate
    aux: float  # best ask / index price / 0
    aux_qty: float  # best ask qty / 0


class Candle(_Frozen):
    """A kline update, for the brain to cross-check its own candles."""

    interval: str
    open_ms: int
    close_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    taker_buy_volume: float
    trades: int
    closed: bool  # ``x``: the final update of this candle
    first_trade_id: int  # -1 when the candle has no trade
    last_trade_id: int


class DepthInfo(_Frozen):
    """What the sequencer needs from a depth diff (levels are validated, not kept)."""

    first_id: int  # U
    last_id: int  # u
    prev_id: int  # pu: must equal the previous diff's u
    partial: bool  # a @depth5/10/20 stream: pu does not chain from message to message
    bids: int  # number of levels
    asks: int


class SnapshotInfo(_Frozen):
    """A REST ``/fapi/v1/depth`` body."""

    last_update_id: int
    bids: int
    asks: int


class Gap(_Frozen):
    """A break in a stream's id chain: ``expected`` was due, ``got`` arrived."""

    symbol: str | None
    stream: str  # Binance event type: "trade", "aggTrade", "depthUpdate"
    expected: int
    got: int


class Result(_Frozen):
    """What one frame turned out to be."""

    status: int  # TICK / EVENT / CONTROL / DUPLICATE / REJECTED
    event: str | None  # Binance's ``e`` ("trade", ...) or one of the names above
    symbol: str | None
    tick: Tick | None  # TICK only
    event_ms: int = 0  # the message's event time E (0 when it has none)
    reason: str | None = None  # a firewall reason when REJECTED or DUPLICATE
    detail: Any = None  # Candle / DepthInfo / SnapshotInfo / element count / control id
    gap: Gap | None = None  # set by the sequencer; the frame is still accepted
