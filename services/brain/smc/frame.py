"""The labels, laid out row by row under the reference library's column names.

``reference_columns(labels, n, config)`` returns, per reference function, the columns it
would return (``{"fvg": {"FVG": ..., "Top": ..., ...}, ...}``), built from our labels as
they stand after the last candle: an FVG row gets its ``MitigatedIndex`` once a mitigation
record exists (0 before, as in the reference), an order block row is cleared by its reset
record (the reference deletes reset blocks), a liquidity row shows the pool's latest record.
Rows we have no label for are NaN, as in the reference, except where the reference writes
zeros for "nothing" (sessions, previous high/low flags, retracements). Retracement rows not
yet settled are NaN: the reference's values there depend on swings not known yet.

This is the reference's *view*, for comparison: it writes a label back on the row it
describes and edits rows as later facts arrive, so a row's content depends on candles after
it (hindsight). ``point_in_time.py`` is the view without hindsight; the labels are the
causal record behind both.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .config import SmcConfig
from .labels import (FairValueGap, FairValueGapMitigated, Label, LiquidityPool, LiquiditySwept,
                     OrderBlock, OrderBlockMitigated, OrderBlockReset, PreviousHighLow,
                     Retracement, SessionRange, Structure, Swing)

#: the reference functions in output order, with their columns
REFERENCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "swing_highs_lows": ("HighLow", "Level"),
    "fvg": ("FVG", "Top", "Bottom", "MitigatedIndex"),
    "bos_choch": ("BOS", "CHOCH", "Level", "BrokenIndex"),
    "ob": ("OB", "Top", "Bottom", "OBVolume", "MitigatedIndex", "Percentage"),
    "liquidity": ("Liquidity", "Level", "End", "Swept"),
    "previous_high_low": ("PreviousHigh", "PreviousLow", "BrokenHigh", "BrokenLow"),
    "sessions": ("Active", "High", "Low"),
    "retracements": ("Direction", "CurrentRetracement%", "DeepestRetracement%"),
}

#: float32 columns (the reference stores them so; we print them as float32)
FLOAT32_COLUMNS = frozenset({
    ("bos_choch", "Level"), ("ob", "Top"), ("ob", "Bottom"), ("ob", "OBVolume"),
    ("ob", "Percentage"), ("liquidity", "Level"), ("previous_high_low", "PreviousHigh"),
    ("previous_high_low", "PreviousLow"), ("sessions", "High"), ("sessions", "Low"),
})


def function_key(function: str, param: str | None) -> str:
    """``previous_high_low`` and ``sessions`` run once per timeframe / session."""
    return function if param is None else f"{function}_{param.replace(' ', '_')}"


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def reference_columns(labels: Iterable[Label], n: int,
                      config: SmcConfig) -> dict[str, dict[str, np.ndarray]]:
    """Columns per reference function (keys as ``function_key``) for rows ``0..n-1``."""
    sw = {"HighLow": _nan(n), "Level": _nan(n)}
    fvg = {k: _nan(n) for k in REFERENCE_COLUMNS["fvg"]}
    bc = {k: _nan(n) for k in REFERENCE_COLUMNS["bos_choch"]}
    ob = {k: _nan(n) for k in REFERENCE_COLUMNS["ob"]}
    liq = {k: _nan(n) for k in REFERENCE_COLUMNS["liquidity"]}
    per = {tf: {"PreviousHigh": _nan(n), "PreviousLow": _nan(n),
                "BrokenHigh": np.zeros(n), "BrokenLow": np.zeros(n)} for tf in config.timeframes}
    ses = {w.name: {"Active": np.zeros(n), "High": np.zeros(n), "Low": np.zeros(n)}
           for w in config.sessions}
    ret = {k: _nan(n) for k in REFERENCE_COLUMNS["retracements"]}
    bear_blocks: list[Label] = []
    for lab in labels:
        if isinstance(lab, (OrderBlock, OrderBlockMitigated, OrderBlockReset)) \
                and lab.direction == -1:
            bear_blocks.append(lab)  # the reference's bearish pass runs after the bullish one
            continue
        _put(lab, sw, fvg, bc, ob, liq, per, ses, ret)
    for lab in bear_blocks:
        _put(lab, sw, fvg, bc, ob, liq, per, ses, ret)
    out = {"swing_highs_lows": sw, "fvg": fvg, "bos_choch": bc, "ob": ob, "liquidity": liq}
    for tf, cols in per.items():
        out[function_key("previous_high_low", tf)] = cols
    for name, cols in ses.items():
        out[function_key("sessions", name)] = cols
    out["retracements"] = ret
    return out


def _put(lab, sw, fvg, bc, ob, liq, per, ses, ret) -> None:  # noqa: PLR0912 - one dispatch
    i = lab.index
    if isinstance(lab, PreviousHighLow):
        cols = per[lab.timeframe]
        cols["PreviousHigh"][i], cols["PreviousLow"][i] = lab.high, lab.low
        cols["BrokenHigh"][i], cols["BrokenLow"][i] = lab.broken_high, lab.broken_low
    elif isinstance(lab, SessionRange):
        cols = ses[lab.session]
        cols["Active"][i], cols["High"][i], cols["Low"][i] = lab.active, lab.high, lab.low
    elif isinstance(lab, Retracement):
        if i < len(ret["Direction"]):
            ret["Direction"][i] = lab.direction
            ret["CurrentRetracement%"][i] = lab.current_pct
            ret["DeepestRetracement%"][i] = lab.deepest_pct
    elif isinstance(lab, Swing):
        sw["HighLow"][i], sw["Level"][i] = lab.direction, lab.level
    elif isinstance(lab, FairValueGap):
        fvg["FVG"][i], fvg["Top"][i], fvg["Bottom"][i] = lab.direction, lab.top, lab.bottom
        fvg["MitigatedIndex"][i] = 0
    elif isinstance(lab, FairValueGapMitigated):
        fvg["MitigatedIndex"][i] = lab.mitigated_index
    elif isinstance(lab, Structure):
        bc["BOS" if lab.kind == "BOS" else "CHOCH"][i] = lab.direction
        bc["Level"][i], bc["BrokenIndex"][i] = lab.level, lab.broken_index
    elif isinstance(lab, OrderBlock):
        ob["OB"][i], ob["Top"][i], ob["Bottom"][i] = lab.direction, lab.top, lab.bottom
        ob["OBVolume"][i], ob["Percentage"][i] = lab.volume, lab.percentage
        ob["MitigatedIndex"][i] = 0
    elif isinstance(lab, OrderBlockMitigated):
        if ob["OB"][i] == lab.direction:
            ob["MitigatedIndex"][i] = lab.mitigated_index
    elif isinstance(lab, OrderBlockReset):
        if ob["OB"][i] == lab.direction:
            for col in ob.values():
                col[i] = np.nan
    elif isinstance(lab, LiquidityPool):
        liq["Liquidity"][i], liq["Level"][i] = lab.direction, lab.level
        liq["End"][i] = lab.end
        liq["Swept"][i] = lab.swept if lab.swept is not None else 0
    elif isinstance(lab, LiquiditySwept):
        liq["Swept"][i] = lab.swept_index
