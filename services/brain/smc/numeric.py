"""Float32 rounding, because the reference stores several outputs in float32 arrays and
then compares prices with those rounded values."""

from __future__ import annotations

import struct

import numpy as np

_F32 = np.float32
_PACK = struct.Struct("f").pack
_UNPACK = struct.Struct("f").unpack


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32, as a Python float (exact). The C cast through
    ``struct`` (round to nearest, ties to even: numpy's own conversion), ten times cheaper
    than a numpy scalar; a value beyond float32's range (``struct`` refuses it) goes through
    numpy, which makes it an infinity."""
    try:
        return _UNPACK(_PACK(x))[0]
    except OverflowError:
        return float(_F32(x))

#: "needs no past bar": larger than any bar index
NO_NEED = 1 << 62
