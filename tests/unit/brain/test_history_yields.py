"""The brain's warm-up from history yields to live ticks (``Brain.warm_from_history``).

A warm-up call analyses up to 200 history candles (~150 us each with SMC): 30 ms or more in
which a live tick, and a stop or target on it, would wait. Live, the call stops after the
candle in hand as soon as the ring holds ticks; replay keeps its fixed batches (its
interleaving of history and ticks is part of its decisions)."""

from __future__ import annotations

from types import SimpleNamespace

from common import wire
from services.brain.app import Brain


def _candle(i: int) -> wire.CandleClosed:
    return wire.CandleClosed(symbol="BTCUSDT", interval_s=60, open_ms=i * 60_000, close_ms=(i + 1) * 60_000,
                             open=1.0, high=1.0, low=1.0, close=1.0, volume=1.0, trades=1)


class _History:
    def __init__(self, n: int) -> None:
        self.items = [SimpleNamespace(body=_candle(i), event_ns=i) for i in range(n)]

    def drain(self, limit: int) -> list:
        out, self.items = self.items[:limit], self.items[limit:]
        return out


def _brain(*, replay: bool, lag_after: int, history: int = 10) -> SimpleNamespace:
    analysed: list[int] = []
    b = SimpleNamespace(db_history=None, history=_History(history), history_candles=0, replay=replay,
                        symbol_info={}, cfg=SimpleNamespace(brain=SimpleNamespace(candle_interval_s=60)),
                        analysed=analysed)
    # the ring fills up once ``lag_after`` candles were analysed
    b.reader = SimpleNamespace(lag=lambda: 1 if len(analysed) >= lag_after else 0)
    b.analyse = lambda c, ns, live=True: analysed.append(c.open_ms // 60_000)
    b._ticks_waiting = lambda: Brain._ticks_waiting(b)
    return b


def test_live_warm_up_stops_after_the_candle_in_hand_when_ticks_wait():
    """Live: ticks arrive after the 3rd candle: exactly 3 analysed, the other 7 kept for the
    next idle moment, which takes them in order when the ring is empty again."""
    b = _brain(replay=False, lag_after=3)
    Brain.warm_from_history(b)
    assert b.analysed == [0, 1, 2] and len(b.history.items) == 7
    b.reader = SimpleNamespace(lag=lambda: 0)
    Brain.warm_from_history(b)
    assert b.analysed == list(range(10)) and b.history_candles == 10


def test_replay_warm_up_keeps_its_fixed_batches():
    """Replay: the same waiting ticks do not cut the batch (all 10 analysed in one call)."""
    b = _brain(replay=True, lag_after=3)
    Brain.warm_from_history(b, 200)
    assert b.analysed == list(range(10))
