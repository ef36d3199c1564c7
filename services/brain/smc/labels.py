"""The label records the SMC state machines emit: immutable, one per fact, never revised.

Every record carries ``index`` (the bar it refers to, 0-based in the order candles were fed)
and ``known_at`` (the bar whose close made it known). ``known_at - index`` is the record's
honest lag. A later fact about the same bar (an FVG being mitigated, an order block being
reset) is a *new* record; the earlier one stays true as of its ``known_at``.

Directions are ``1`` (bullish / swing high) and ``-1`` (bearish / swing low), as in the
reference library. Prices that the reference stores as float32 are stored here already
rounded to float32 (as a Python float), so that equality with the reference is exact.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Pivot:
    """Bar ``index`` is the highest high (1) or lowest low (-1) of bars
    ``index - L + 1 .. index + L``; known at exactly ``index + L`` (``L`` = swing length)."""

    direction: int
    index: int
    level: float
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Swing:
    """A swing of the reference's ``swing_highs_lows``: the extreme pivot of a run of
    same-direction pivots, known once the first opposite pivot is known."""

    direction: int
    index: int
    level: float
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Structure:
    """A break of structure (``kind="BOS"``) or change of character (``kind="CHOCH"``).

    ``index`` is the swing whose level was broken (the reference labels that row),
    ``level`` its level (float32), ``broken_index`` the first bar from ``index + 2`` whose
    close (or high/low) crossed it."""

    kind: str
    direction: int
    index: int
    level: float
    broken_index: int
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FairValueGap:
    """A fair value gap at bar ``index`` (the middle candle), known at ``index + 1`` (or,
    with consecutive gaps joined, when the run of same-direction gaps has ended)."""

    direction: int
    index: int
    top: float
    bottom: float
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FairValueGapMitigated:
    """The gap at ``index`` was mitigated by bar ``mitigated_index`` (== ``known_at``)."""

    direction: int
    index: int
    mitigated_index: int
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderBlock:
    """An order block at bar ``index``, formed when the close of bar ``formed_index``
    crossed the last swing before it; top, bottom, volume and percentage are float32."""

    direction: int
    index: int
    top: float
    bottom: float
    volume: float
    percentage: float
    formed_index: int
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderBlockMitigated:
    """Price traded through the block at bar ``at_index``; ``mitigated_index`` is the
    reference's value (``at_index - 1`` for bullish blocks, ``at_index`` for bearish)."""

    direction: int
    index: int
    mitigated_index: int
    at_index: int
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderBlockReset:
    """After mitigation, price crossed the far side of the block at bar ``at_index``: the
    block is void from then on (the reference deletes its row)."""

    direction: int
    index: int
    at_index: int
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LiquidityPool:
    """Swings of one direction within a band of the swing at ``index``: a new record each
    time one joins. ``level`` is the mean of the members (float32), ``end`` the last
    member, ``swept`` the sweeping bar if already swept (else ``None``)."""

    direction: int
    index: int
    level: float
    end: int
    members: int
    swept: int | None
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LiquiditySwept:
    """Bar ``swept_index`` (== ``known_at``) traded beyond the pool's band."""

    direction: int
    index: int
    level: float
    swept_index: int
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousHighLow:
    """The reference's previous-period high/low for bar ``index`` (float32, NaN while
    fewer than two periods precede it) and whether price broke them since they applied."""

    timeframe: str
    index: int
    high: float
    low: float
    broken_high: int
    broken_low: int
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRange:
    """Whether bar ``index`` lies in the session, and the session's running high/low
    (float32; 0.0 outside the session, as in the reference)."""

    session: str
    index: int
    active: int
    high: float
    low: float
    known_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Retracement:
    """Row ``index`` of the reference's ``retracements`` (which describes bar
    ``index - 1``: the reference shifts its output by one row); percentages rounded to
    0.1 as there."""

    index: int
    direction: int
    current_pct: float
    deepest_pct: float
    known_at: int


Label = (Pivot | Swing | Structure | FairValueGap | FairValueGapMitigated | OrderBlock
         | OrderBlockMitigated | OrderBlockReset | LiquidityPool | LiquiditySwept
         | PreviousHighLow | SessionRange | Retracement)
