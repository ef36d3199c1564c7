"""The labels laid out point in time: row ``t`` shows only what became known at the close of
bar ``t`` (the labels with ``known_at == t``), so a row never changes when more candles
arrive, and a run on any prefix of a file writes exactly the first rows of the full run.

Contrast with ``frame.reference_columns``, the reference library's view: it writes each
label back on the row it describes (a swing on the swing's bar, ``swing_length`` or more
bars before anyone could know it) and edits rows later (a gap's ``MitigatedIndex`` fills
in, a reset order block's row is cleared). Backtesting on that view is look-ahead.

Groups of columns, each about one kind of event; an ``...Index`` column names the bar the
event is about (0-based row of the file), always at or before the row it is written on:

- ``pivots`` (``PivotHighLow, PivotLevel, PivotIndex``): the pivot decided at this close,
  on bar ``t - swing_length``.
- ``swing_highs_lows`` (``HighLow, Level, SwingIndex``): the reference's swing confirmed at
  this close (a run of same-direction pivots ended: the next opposite pivot is known).
- ``fvg`` (``FVG, Top, Bottom, FVGIndex``): the gap found at this close (on bar ``t - 1``;
  joined gaps ``t - 2``). ``fvg_mitigated`` (``MitigatedFVG, MitigatedFVGIndex``): gaps
  this bar mitigated.
- ``bos_choch`` (``BOS, CHOCH, Level, BrokenIndex, StructureIndex``): the break of structure
  or change of character confirmed at this close; ``StructureIndex`` the broken swing (the
  row the reference labels), ``BrokenIndex`` the bar whose close broke it.
- ``ob`` (``OB, Top, Bottom, OBVolume, Percentage, OBIndex, OBFormedIndex, OBMitigatedAt,
  OBResetAt``): the order block that became known at this close and its state as of this
  close (``OBMitigatedAt`` / ``OBResetAt``: the bar that mitigated / reset it, 0 = not yet;
  a block known late may already be both). ``ob_mitigated`` (``MitigatedOB,
  MitigatedOBIndex``) and ``ob_reset`` (``ResetOB, ResetOBIndex``): blocks this bar's
  price mitigated / reset.
- ``liquidity`` (``Liquidity, Level, End, Swept, LiquidityIndex, Members``): the pool a
  swing joined at this close, as it stands now (mean level, last member, sweeping bar or
  0, root, number of swings). ``liquidity_swept`` (``SweptLiquidity,
  SweptLiquidityIndex``): pools this bar swept.
- ``previous_high_low_<tf>`` and ``sessions_<name>``: as in the reference (they have no
  lag).
- ``retracements`` (``Direction, CurrentRetracement%, DeepestRetracement%,
  RetracementIndex``): the newest of the reference's retracement rows settled at this close
  (row ``RetracementIndex`` describes bar ``RetracementIndex - 1``); the older rows of the
  same burst are in the reference view.

Several events of one kind at one close (e.g. one bar mitigating four gaps) are listed in
every column of the group in the same order (by the row they are about), separated by a
space; a value that does not apply to one of them (the ``CHOCH`` of a BOS) is then written
0. A cell with one event is a plain number (a value that does not apply: empty).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np

from .config import SmcConfig
from .frame import function_key
from .labels import (FairValueGap, FairValueGapMitigated, Label, LiquidityPool, LiquiditySwept,
                     OrderBlock, OrderBlockMitigated, OrderBlockReset, Pivot, PreviousHighLow,
                     Retracement, SessionRange, Structure, Swing)

#: group -> columns, in output order; ``previous_high_low`` and ``sessions`` repeat per
#: timeframe / session (function keys as ``frame.function_key``)
POINT_IN_TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "pivots": ("PivotHighLow", "PivotLevel", "PivotIndex"),
    "swing_highs_lows": ("HighLow", "Level", "SwingIndex"),
    "fvg": ("FVG", "Top", "Bottom", "FVGIndex"),
    "fvg_mitigated": ("MitigatedFVG", "MitigatedFVGIndex"),
    "bos_choch": ("BOS", "CHOCH", "Level", "BrokenIndex", "StructureIndex"),
    "ob": ("OB", "Top", "Bottom", "OBVolume", "Percentage", "OBIndex", "OBFormedIndex",
           "OBMitigatedAt", "OBResetAt"),
    "ob_mitigated": ("MitigatedOB", "MitigatedOBIndex"),
    "ob_reset": ("ResetOB", "ResetOBIndex"),
    "liquidity": ("Liquidity", "Level", "End", "Swept", "LiquidityIndex", "Members"),
    "liquidity_swept": ("SweptLiquidity", "SweptLiquidityIndex"),
    "previous_high_low": ("PreviousHigh", "PreviousLow", "BrokenHigh", "BrokenLow"),
    "sessions": ("Active", "High", "Low"),
    "retracements": ("Direction", "CurrentRetracement%", "DeepestRetracement%",
                     "RetracementIndex"),
}

#: how each value is printed: "f" full float, "f32" float32 (stored so, as the reference
#: does), anything else an integer
_FLOAT = frozenset({("pivots", "PivotLevel"), ("swing_highs_lows", "Level"), ("fvg", "Top"),
                    ("fvg", "Bottom"), ("retracements", "CurrentRetracement%"),
                    ("retracements", "DeepestRetracement%")})
_FLOAT32 = frozenset({("bos_choch", "Level"), ("ob", "Top"), ("ob", "Bottom"),
                      ("ob", "OBVolume"), ("ob", "Percentage"), ("liquidity", "Level"),
                      ("previous_high_low", "PreviousHigh"), ("previous_high_low", "PreviousLow"),
                      ("sessions", "High"), ("sessions", "Low")})

Event = tuple  # one value per column of its group, None = does not apply
_F32 = np.float32


class PointInTimeView:
    """Events per group and row (sparse: most rows hold none), and how to print them."""

    __slots__ = ("n", "groups", "events", "_spec")

    def __init__(self, n: int, groups: list[tuple[str, str]],
                 events: dict[str, dict[int, list[Event]]]) -> None:
        self.n = n
        self.groups = groups  # (function key, base group name) in output order
        self.events = events
        self._spec = [(events[fk], [_kind(g, c) for c in POINT_IN_TIME_COLUMNS[g]],
                       [""] * len(POINT_IN_TIME_COLUMNS[g])) for fk, g in groups]

    def header(self) -> list[str]:
        """Column names: a name that several groups use is written ``<group>.<Column>``
        (``previous_high_low_4h.PreviousHigh``), a unique one as is, as in the reference
        view."""
        uses = Counter(c for _, g in self.groups for c in POINT_IN_TIME_COLUMNS[g])
        return [c if uses[c] == 1 else f"{fk}.{c}"
                for fk, g in self.groups for c in POINT_IN_TIME_COLUMNS[g]]

    def row(self, t: int) -> list[str]:
        """The cells of row ``t`` (empty string: nothing of that kind known at this close)."""
        out: list[str] = []
        for by_row, kinds, empty in self._spec:
            evs = by_row.get(t)
            if not evs:
                out += empty
            elif len(evs) == 1:
                out += ["" if v is None else _one(v, k) for v, k in zip(evs[0], kinds)]
            else:
                out += [_cell([e[k] for e in evs], kind) for k, kind in enumerate(kinds)]
        return out

    def rows(self) -> Iterator[list[str]]:
        return (self.row(t) for t in range(self.n))


def _kind(group: str, col: str) -> str:
    if (group, col) in _FLOAT:
        return "f"
    return "f32" if (group, col) in _FLOAT32 else "i"


def _one(v, kind: str) -> str:
    if v is None:
        return "0"
    if kind == "i":
        return str(int(v))
    if v != v:  # NaN: no value (previous period not there yet)
        return ""
    return str(_F32(v)) if kind == "f32" else repr(float(v))


def _cell(values: list, kind: str) -> str:
    if all(v is None for v in values):
        return ""
    return " ".join(_one(v, kind) for v in values)


def point_in_time(labels: Iterable[Label], n: int, config: SmcConfig) -> PointInTimeView:
    """The view of rows ``0..n-1``; ``labels`` in emission order (as ``run_batch`` gives)."""
    groups = [(g, g) for g in ("pivots", "swing_highs_lows", "fvg", "fvg_mitigated",
                               "bos_choch", "ob", "ob_mitigated", "ob_reset", "liquidity",
                               "liquidity_swept")]
    groups += [(function_key("previous_high_low", tf), "previous_high_low")
               for tf in config.timeframes]
    groups += [(function_key("sessions", w.name), "sessions") for w in config.sessions]
    groups.append(("retracements", "retracements"))
    events: dict[str, dict[int, list[Event]]] = {fk: {} for fk, _ in groups}
    fresh: dict[tuple[int, int], list] = {}  # blocks known at row ``fresh_at``, by (dir, index)
    fresh_at = -1

    def add(fk: str, t: int, event: Event) -> None:
        events[fk].setdefault(t, []).append(event)

    for lab in labels:
        t = lab.known_at
        if t >= n:
            continue
        if isinstance(lab, PreviousHighLow):
            add(function_key("previous_high_low", lab.timeframe), t,
                (lab.high, lab.low, lab.broken_high, lab.broken_low))
        elif isinstance(lab, SessionRange):
            add(function_key("sessions", lab.session), t, (lab.active, lab.high, lab.low))
        elif isinstance(lab, Pivot):
            add("pivots", t, (lab.direction, lab.level, lab.index))
        elif isinstance(lab, Swing):
            add("swing_highs_lows", t, (lab.direction, lab.level, lab.index))
        elif isinstance(lab, FairValueGap):
            add("fvg", t, (lab.direction, lab.top, lab.bottom, lab.index))
        elif isinstance(lab, FairValueGapMitigated):
            add("fvg_mitigated", t, (lab.direction, lab.index))
        elif isinstance(lab, Structure):
            bos = lab.direction if lab.kind == "BOS" else None
            choch = None if lab.kind == "BOS" else lab.direction
            add("bos_choch", t, (bos, choch, lab.level, lab.broken_index, lab.index))
        elif isinstance(lab, OrderBlock):
            if t != fresh_at:
                fresh, fresh_at = {}, t
            event = [lab.direction, lab.top, lab.bottom, lab.volume, lab.percentage, lab.index,
                     lab.formed_index, 0, 0]
            fresh[(lab.direction, lab.index)] = event
            add("ob", t, event)  # a list: its state is filled in by this close's events
        elif isinstance(lab, (OrderBlockMitigated, OrderBlockReset)):
            mitigated = isinstance(lab, OrderBlockMitigated)
            block = fresh.get((lab.direction, lab.index)) if fresh_at == t else None
            if block is not None:  # known at this close: its state as of this close
                block[7 if mitigated else 8] = lab.at_index
            if lab.at_index == t or block is None:  # this bar's price did it
                add("ob_mitigated" if mitigated else "ob_reset", t, (lab.direction, lab.index))
        elif isinstance(lab, LiquidityPool):
            add("liquidity", t, (lab.direction, lab.level, lab.end,
                                 lab.swept if lab.swept is not None else 0, lab.index,
                                 lab.members))
        elif isinstance(lab, LiquiditySwept):
            add("liquidity_swept", t, (lab.direction, lab.index))
        elif isinstance(lab, Retracement):
            # a burst settles many rows at once: keep the newest (labels come in row order)
            events["retracements"][t] = [(lab.direction, lab.current_pct, lab.deepest_pct,
                                          lab.index)]
    for fk in ("fvg_mitigated", "ob_mitigated", "ob_reset", "liquidity_swept"):
        for evs in events[fk].values():  # heap order -> row order (then bullish first)
            evs.sort(key=lambda e: (e[1], -e[0]))
    return PointInTimeView(n, groups, events)
