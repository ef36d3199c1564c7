"""The feed's sequencer: one home for stream order, used by every path that decodes frames.

The live feed (``sink.Feed``, and the C lane that shares its state), the replay source (the
same ``Feed`` over a capture) and ``aegis decode`` (``Decoder`` below) all put decoded frames
through ``Sequencer.step``, so the same bytes give the same answer on every path
(tests/unit/feed/test_sequencer_paths.py feeds one byte stream to all three and compares).

Three rules, all pure (the state is a value the caller owns; no clock, no I/O):

- **id order** (``sequence``): trade and aggTrade ids must rise by one (a larger step keeps
  the tick and attaches a ``Gap``); depth diffs chain ``pu`` to the previous ``u``; an id at
  or below the last one seen (for marks: the event time) is a DUPLICATE.
- **counter resets** (``id_counter_reset``): a "duplicate" (id at or below the last) whose
  event time is newer than its stream's last is an exchange that restarted its id counters:
  the stream starts again.
- **kline dedupe** (``kline_key``): within one candle a kline update must outrank the last
  one seen (close, then more trades, then later); otherwise it is a duplicate (two
  connections deliver the same updates during a rollover).

``streams`` reads the same state to decide a rollover's handover (``delivered``).
"""

from __future__ import annotations

from typing import Mapping

import msgspec

from common.records import Kind
from services.feed import codec
from services.feed import firewall as fw

KLINE_CANDLES_KEPT = 4  # per symbol: candles whose kline updates are still de-duplicated

_TICK, _EVENT, _DUP, _REJ = codec.TICK, codec.EVENT, codec.DUPLICATE, codec.REJECTED
_TRADE = int(Kind.TRADE)
_AGG = int(Kind.AGG_TRADE)
_MARK = int(Kind.MARK)
_Result = codec.Result
_Gap = codec.Gap
_replace = msgspec.structs.replace

SeqState = dict  # event type -> {symbol: [last id, last event ms]}; owned by the caller


def new_state() -> SeqState:
    """An empty sequence state (one per feed, or per capture being decoded)."""
    return {}


# ---------------------------------------------------------------------------- id order
def sequence(state: SeqState, res: codec.Result, stream_clock: bool = False,
             past_ms: int = fw.PAST_TOLERANCE_MS) -> codec.Result:
    """Check ``res`` against its stream's history in ``state`` (updated in place).

    - ``trade``/``aggTrade``: the id must be the previous + 1; a larger one is a ``Gap``
      (the tick is kept and the chain restarts from it).
    - ``depthUpdate``: ``pu`` must equal the previous ``u`` (not for @depth5/10/20).
    - an id at or below the last one seen (``u`` for books and depth, ``E`` for marks) is a
      DUPLICATE: what lets two overlapping connections be merged by id.
    - ``stream_clock``: no receive time, so an event more than ``past_ms`` older than its
      stream's previous event is refused (``bad_timestamp``); newer is always fine, a
      quiet stream has no upper bound.
    Rejections and control replies pass through untouched. The C lane
    (``services/feed/_feedlane.c``, ``FeedLane``) applies this rule to in-order trade and bookTicker
    frames on the same state; tests/fuzz/test_feed_lane.py checks the two agree.
    """
    status = res.status
    if status > _EVENT:
        return res
    event = res.event
    if status == _EVENT and not stream_clock and event != "depthUpdate":
        return res
    per = state.get(event)
    if per is None:
        per = state[event] = {}
    sym = res.symbol
    e_ms = res.event_ms
    slot = per.get(sym)
    tick = res.tick
    if slot is None:
        if tick is not None:
            per[sym] = [e_ms if tick.kind == _MARK else tick.id, e_ms]
        elif event == "depthUpdate":
            per[sym] = [res.detail.last_id, e_ms]
        else:
            per[sym] = [0, e_ms]
        return res
    if stream_clock and e_ms < slot[1] - past_ms:
        return _Result(_REJ, event, sym, None, e_ms, fw.BAD_TIMESTAMP)
    last = slot[0]
    if tick is not None:
        kind = tick.kind
        ident = e_ms if kind == _MARK else tick.id
        if ident <= last:
            return _Result(_DUP, event, sym, None, e_ms, fw.DUPLICATE)
        slot[0] = ident
        slot[1] = e_ms
        if ident != last + 1 and (kind == _TRADE or kind == _AGG):
            return _replace(res, gap=_Gap(sym, event, last + 1, ident))
        return res
    if event == "depthUpdate":
        info = res.detail
        if info.last_id <= last:
            return _Result(_DUP, event, sym, None, e_ms, fw.DUPLICATE)
        slot[0] = info.last_id
        slot[1] = e_ms
        if info.prev_id != last and not info.partial:
            return _replace(res, gap=_Gap(sym, event, last, info.prev_id))
        return res
    slot[1] = e_ms
    return res


# ---------------------------------------------------------------------------- positions
def delivered(state: SeqState, res: codec.Result) -> bool | None:
    """Has ``state`` already reached this decoded, not yet sequenced frame's position in its
    stream (its id, or for marks its event time)? None when the frame has no position."""
    tick = res.tick
    if tick is None:
        return None
    slot = state.get(res.event, {}).get(res.symbol)
    if slot is None:
        return False
    return slot[0] >= (res.event_ms if tick.kind == _MARK else tick.id)


def id_counter_reset(state: SeqState, res: codec.Result) -> bool:
    """A frame ``sequence`` called a duplicate (``res`` as decoded, before sequencing) that is
    really a restarted id counter: its id is not newer than its stream's last, but its event
    time is. One stream's ids and event times rise together, so a true duplicate (the same
    frame from a second connection, or an older one from a lagging server) is never newer;
    an exchange that restarted its counters is. The stream's last id itself counts ("not
    newer"): a feed that reconnects late to a restarted exchange may first see the id it saw
    last, and that is a new tick, not a copy. Marks are sequenced by time: never a reset."""
    tick = res.tick
    if tick is None or tick.kind == _MARK:
        return False
    slot = state.get(res.event, {}).get(res.symbol)
    return slot is not None and tick.id <= slot[0] and res.event_ms > slot[1]


def kline_key(res: codec.Result) -> tuple[int, tuple[bool, int, int]]:
    """(candle open, rank) of a kline update: within one candle an update outranks another
    when it is the close, else has more trades, else is later. ``sequence`` does not order
    klines; two connections deliver the same updates during a rollover, and an update that
    does not outrank the last one seen for its candle is a duplicate. Ranked per candle, not
    by event time alone: a close can be sent after the next candle's first update (Binance's
    ``E`` of the close is the candle end; the next candle's updates may carry later ones)."""
    c = res.detail
    return c.open_ms, (c.closed, c.trades, res.event_ms)


# ---------------------------------------------------------------------------- the machine
class Reset(msgspec.Struct, frozen=True, gc=False):
    """A restarted id counter: ``stream`` of ``symbol`` was at ``last_id``, ``got`` came."""

    symbol: str | None
    stream: str | None
    last_id: int
    got: int | None


class Sequencer:
    """All three rules over one state: ``step`` a decoded frame, get it sequenced.

    ``state`` is the id-order state (shared with the C lane and read by ``streams``);
    ``klines`` the last rank per symbol and candle; ``resets`` counts restarted counters and
    ``last_reset`` names the latest, for the shell to log.
    """

    __slots__ = ("state", "klines", "past_ms", "resets", "last_reset")

    def __init__(self, past_ms: int = fw.PAST_TOLERANCE_MS) -> None:
        self.state: SeqState = new_state()
        self.klines: dict[str | None, dict[int, tuple]] = {}
        self.past_ms = past_ms
        self.resets = 0
        self.last_reset: Reset | None = None

    def step(self, res: codec.Result, stream_clock: bool = False) -> codec.Result:
        """``res`` (as decoded) sequenced; rejections and control replies pass through."""
        if res.status > _EVENT:
            return res
        return self.settle(res, sequence(self.state, res, stream_clock, self.past_ms), stream_clock)

    def settle(self, res: codec.Result, out: codec.Result, stream_clock: bool = False) -> codec.Result:
        """The two rules after id order: ``res`` as decoded, ``out`` as ``sequence`` left it.
        (Split from ``step`` so the feed's hot path can call ``sequence`` inline.)"""
        status = out.status
        if status == _DUP:
            if id_counter_reset(self.state, res):
                slot = self.state[res.event].pop(res.symbol)
                self.resets += 1
                self.last_reset = Reset(symbol=res.symbol, stream=res.event, last_id=slot[0],
                                        got=res.tick.id if res.tick else None)
                out = sequence(self.state, res, stream_clock, self.past_ms)
        elif status == _EVENT and res.event == "kline":
            open_ms, rank = kline_key(res)
            per = self.klines.get(res.symbol)
            if per is None:
                per = self.klines[res.symbol] = {}
            last = per.get(open_ms)
            if last is not None and rank <= last:
                return _Result(_DUP, "kline", res.symbol, None, res.event_ms, fw.DUPLICATE)
            per[open_ms] = rank
            if len(per) > KLINE_CANDLES_KEPT:
                del per[min(per)]
        return out


class Decoder:
    """``aegis decode``'s handle: ``codec.decode`` then ``Sequencer.step``, with the state it owns.

    The receive time decides the reference clock frame by frame: given, event times are
    checked against it; None (a capture without receive times), each stream is checked
    against its own previous event time.
    """

    __slots__ = ("symbols", "sequencer", "past_ms", "future_ms")

    def __init__(self, symbols: Mapping[str, int], *, past_ms: int = fw.PAST_TOLERANCE_MS,
                 future_ms: int = fw.FUTURE_TOLERANCE_MS) -> None:
        self.symbols = symbols
        self.sequencer = Sequencer(past_ms)
        self.past_ms = past_ms
        self.future_ms = future_ms

    @property
    def state(self) -> SeqState:
        return self.sequencer.state

    def decode(self, frame: object, recv_ns: int | None) -> codec.Result:
        res = codec.decode(frame, recv_ns, self.symbols, self.past_ms, self.future_ms)
        if res.status <= _EVENT:
            return self.sequencer.step(res, recv_ns is None)
        return res
