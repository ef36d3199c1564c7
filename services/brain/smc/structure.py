"""Break of structure (BOS) and change of character (CHoCH), causal.

The reference (``smc.bos_choch``) looks at each new swing with the three before it
(``s4, s3, s2, s1``, oldest first; levels ``L4..L1``) and labels the row of ``s3`` with
level ``L3``:

- bullish BOS   lows/highs ``-1, 1, -1, 1`` and ``L4 < L2 < L3 < L1``
- bearish BOS   ``1, -1, 1, -1`` and ``L4 > L2 > L3 > L1``
- bullish CHoCH ``-1, 1, -1, 1`` and ``L1 > L3 > L4 > L2``
- bearish CHoCH ``1, -1, 1, -1`` and ``L1 < L3 < L4 < L2``

The level is stored as float32 and the break is the first bar from ``index + 2`` whose
close (``close_break``; else high/low) is beyond that float32 value. Then, with hindsight,
it deletes every label ``k`` for which a later label ``i`` broke no later than ``k``
(``broken[i] <= broken[k]``), and every label never broken.

Causal version: a pattern is known when ``s1`` is (a ``Swing`` record); it is checked for
a break from ``index + 2`` on, through the bars already seen and then bar by bar. It is
emitted (``Structure``) when it is both known and broken, unless a later pattern already
known by then broke no later (the reference's deletion, applied as soon as it is knowable:
a break of a newer pattern voids every older pattern still waiting for its break). A
deletion that needs a pattern known only *after* the older one was emitted cannot be
applied without repainting: those labels are the documented "deleted with hindsight"
difference.
"""

from __future__ import annotations

from .history import History
from .labels import Structure, Swing
from .numeric import NO_NEED, f32

_BULL = (-1, 1, -1, 1)
_BEAR = (1, -1, 1, -1)


class _Pattern:
    __slots__ = ("kind", "direction", "index", "level", "known_at", "broken")

    def __init__(self, kind: str, direction: int, index: int, level: float, known_at: int):
        self.kind, self.direction, self.index = kind, direction, index
        self.level, self.known_at, self.broken = level, known_at, -1


class StructureState:
    """The last four swings and the patterns known but not yet emitted or voided."""

    __slots__ = ("close_break", "swings", "waiting")

    def __init__(self, close_break: bool) -> None:
        self.close_break = close_break
        self.swings: list[Swing] = []
        self.waiting: list[_Pattern] = []  # index order

    def oldest_needed(self) -> int:
        """The next pattern's ``s3`` is the second-to-last swing or a later one."""
        if len(self.swings) >= 2:
            return self.swings[-2].index
        return self.swings[0].index if self.swings else NO_NEED


def classify(dirs: tuple[int, ...], l4: float, l3: float, l2: float, l1: float) -> tuple[int, int]:
    """``(bos, choch)`` for four consecutive swings, exactly as the reference decides."""
    bos = 1 if dirs == _BULL and l4 < l2 < l3 < l1 else 0
    bos = -1 if dirs == _BEAR and l4 > l2 > l3 > l1 else bos
    choch = 1 if dirs == _BULL and l1 > l3 > l4 > l2 else 0
    choch = -1 if dirs == _BEAR and l1 < l3 < l4 < l2 else choch
    return bos, choch


def _breaks(p: _Pattern, hist: History, j: int, close_break: bool) -> bool:
    b = j - hist.base
    if p.direction == 1:
        return (hist.close[b] if close_break else hist.high[b]) > p.level
    return (hist.close[b] if close_break else hist.low[b]) < p.level


def step_structure(st: StructureState, hist: History, t: int,
                   swing: Swing | None) -> list[Structure]:
    """Advance by bar ``t``, given the swing settled at ``t`` (if any)."""
    newly_broken: list[_Pattern] = []
    for p in st.waiting:  # old patterns: does bar t break them?
        if p.broken < 0 and _breaks(p, hist, t, st.close_break):
            p.broken = t
            newly_broken.append(p)
    if swing is not None:
        sw = st.swings
        sw.append(swing)
        if len(sw) > 4:
            del sw[0]
        if len(sw) == 4:
            s4, s3, s2, s1 = sw
            bos, choch = classify((s4.direction, s3.direction, s2.direction, s1.direction),
                                  s4.level, s3.level, s2.level, s1.level)
            if bos or choch:
                p = _Pattern("BOS" if bos else "CHOCH", bos or choch, s3.index,
                             f32(s3.level), t)
                for j in range(p.index + 2, t + 1):  # catch up on the bars already seen
                    if _breaks(p, hist, j, st.close_break):
                        p.broken = j
                        newly_broken.append(p)
                        break
                st.waiting.append(p)
    if not newly_broken:
        return []
    voided: set[int] = set()
    for newer in newly_broken:
        for p in st.waiting:
            if p.index < newer.index and (p.broken < 0 or p.broken >= newer.broken):
                voided.add(id(p))
    out: list[Structure] = []
    keep: list[_Pattern] = []
    for p in st.waiting:
        if id(p) in voided:
            continue
        if p.broken >= 0:
            out.append(Structure(kind=p.kind, direction=p.direction, index=p.index,
                                 level=p.level, broken_index=p.broken, known_at=t))
        else:
            keep.append(p)
    st.waiting = keep
    return out
