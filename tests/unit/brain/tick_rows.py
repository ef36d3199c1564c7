"""Tick records built from plain tuples, for the brain tests (a helper, not a test module)."""

from __future__ import annotations

import numpy as np

from common.records import empty


def make_records(rows) -> np.ndarray:
    """Tick records from ``(kind, symbol_id, event_ms, price, qty, id, flags, aux, aux_qty)``.

    Trailing fields may be left out (defaults: id 0, flags 0, aux 0, aux_qty 0).
    """
    full = [tuple(r) + (0, 0, 0.0, 0.0)[len(r) - 5:] for r in rows]
    cols = list(zip(*full)) if full else [()] * 9
    out = empty(len(full))
    for name, col in zip(("kind", "symbol_id", "event_ms", "price", "qty", "id", "flags", "aux",
                          "aux_qty"), cols):
        out[name] = [int(v) for v in col] if name in ("kind", "flags") else col
    return out
