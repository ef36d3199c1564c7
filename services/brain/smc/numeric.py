"""Float32 rounding, because the reference stores several outputs in float32 arrays and
then compares prices with those rounded values."""

from __future__ import annotations

import numpy as np

_F32 = np.float32


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32, as a Python float (exact)."""
    return float(_F32(x))

#: "needs no past bar": larger than any bar index
NO_NEED = 1 << 62
