"""Smart Money Concepts features, causal and streaming, agreeing with ``smartmoneyconcepts``
0.0.27 (the reference) on every settled row.

Per symbol: ``state = new_state(SmcConfig(swing_length=...))``, then once per closed candle
``labels = update(state, open_time_ms, o, h, l, c, v)``. Each label is an immutable record
carrying the bar it refers to (``index``) and the bar whose close made it known
(``known_at``); nothing emitted is ever revised, later facts about a bar are new records.
``run_batch`` runs the same loop over whole columns. These run the numba-compiled state
machines of ``kernel.py`` (``fast.py``); ``engine.py`` and the feature modules are the same
rules in plain Python, kept as the readable reference that a parity test holds them to. ``point_in_time`` lays labels out row by
row as they were known at each close (what ``aegis smc`` writes; no row ever changes);
``reference_columns`` lays them out on the rows they describe, under the reference's column
names (the reference's view: hindsight, for comparison). Each feature module states the
reference's exact rule it follows, quirks included.

Intentional differences from the reference (counts on the EURUSD fixture, L = 5, in
docs/smc.md with the tests that pin them):

1. its artificial swings on the first and last rows are not emitted (2 rows);
2. its last real swing is not emitted while a higher one could still replace it (1 row);
3. knock-on effects of 1-2: liquidity rows reached by its forced first swing (4 rows);
4. retracement rows after the swing horizon are not emitted (5 rows);
5. BOS/CHoCH labels it deletes with hindsight (a later label, known only after ours was
   emitted, broke no later) stay emitted (62 rows);
6. it leaves a stray ``BrokenIndex`` on rows it deleted; we write NaN (105 more rows);
7. its liquidity band comes from the whole file; ours from the bars seen so far, or an
   absolute ``liquidity_band`` (448 rows with the default; none with the file's band);
8. a bar with both a bullish and a bearish order block: its bearish block inherits the
   bullish one's final state; ours are independent (0 rows);
9. order blocks formed on bars after the final horizon are not emitted (0 rows);
10. retracement warm-up: its length flips with the parity of the number of swings in the
    file (``np.roll`` wrap-around); we count the start of data as a change (0 rows);
11. its last retracement row is not zeroed when the file has < 3 direction changes (0 rows);
12. ``sessions(time_zone=...)`` is not emulated: candles and sessions are UTC;
13. timeframes must divide a day, or be ``W``.
"""

from __future__ import annotations

from .config import SESSIONS_UTC, SessionWindow, SmcConfig
from .engine import SmcInputError
from .fast import SmcState, new_state, run_batch, update, update_events
from .frame import FLOAT32_COLUMNS, REFERENCE_COLUMNS, function_key, reference_columns
from .labels import (FairValueGap, FairValueGapMitigated, Label, LiquidityPool, LiquiditySwept,
                     OrderBlock, OrderBlockMitigated, OrderBlockReset, Pivot, PreviousHighLow,
                     Retracement, SessionRange, Structure, Swing)
from .point_in_time import POINT_IN_TIME_COLUMNS, PointInTimeView, point_in_time

__all__ = [
    "FLOAT32_COLUMNS", "POINT_IN_TIME_COLUMNS", "REFERENCE_COLUMNS", "SESSIONS_UTC",
    "FairValueGap", "FairValueGapMitigated", "Label", "LiquidityPool", "LiquiditySwept",
    "OrderBlock", "OrderBlockMitigated", "OrderBlockReset", "Pivot", "PointInTimeView",
    "PreviousHighLow", "Retracement", "SessionRange", "SessionWindow", "SmcConfig",
    "SmcInputError", "SmcState", "Structure", "Swing", "function_key", "new_state",
    "point_in_time", "reference_columns", "run_batch", "update", "update_events",
]
