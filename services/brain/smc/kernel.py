"""The SMC state machines compiled with numba: one call per closed candle, state in arrays.

Same rules, same order and same arithmetic as the pure-Python feature modules
(``swings.py`` .. ``retracements.py``, which stay as the reference and the documentation):
``tests/unit/brain/smc/test_smc_fast_parity.py`` checks every label of every candle of the
repository's real candle files against them. This module is the arithmetic only; ``fast.py``
turns its event rows into the ``Label`` records.

State. ``ii`` (int64) and ``ff`` (float64) hold the scalars; ``arena`` (float64) holds every
variable-size table as a region of rows (bar indices are stored as floats: exact below
2**53). A region is ``(offset, capacity, count)`` in ``ii``. Before touching anything a step
checks the candle (a refused one returns ``ERR_*``) and that every region and the event
buffer have room for the most this candle can add; if not it returns ``NEED_REGION - region``
(or ``NEED_EVENTS - size``) with the state untouched, and the caller grows that region and
calls again (rare: capacities double).

Heaps order their rows by ``(key, index)``, as ``heapq`` orders the reference's tuples, so
rows leave in the reference's order (its extra tie-breaker, ``id()``, only ever separates
rows that make identical records).

Output, in ``ev`` and in the order the reference emits the labels: one row of ``EV_WIDTH``
values per event (column 0 the kind), then the values of the records every candle gets (per
timeframe, per session), then the retracement rows (see ``step``). Retracement percentages
are rounded by ``py_round1``, an exact copy of Python's ``round(x, 1)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---- event kinds (column 0 of an event row) ----------------------------------------------
EV_PIVOT, EV_SWING, EV_STRUCTURE, EV_FVG, EV_FVG_MIT = 0, 1, 2, 3, 4
EV_OB, EV_OB_MIT, EV_OB_RESET, EV_POOL, EV_SWEPT = 5, 6, 7, 8, 9
EV_PERIOD, EV_SESSION, EV_RETRACE = 10, 11, 12
EV_WIDTH = 9

# ---- regions of the arena: (offset, capacity, count) at ii[REG + 3 * r] ------------------
R_HIST = 0      # o, h, l, c, v of bars base .. count-1
R_PAT = 1       # structure patterns waiting: kind(0 BOS, 1 CHOCH), dir, index, level, known_at, broken
R_SW4 = 2       # the last four swings: dir, index, level
R_FVG_BULL = 3  # heap (-top, index)
R_FVG_BEAR = 4  # heap (bottom, index)
R_QB = 5        # order-block formation queue of swing highs (index), head at ii[Q_HEAD_B]
R_QR = 6        # ... of swing lows
R_OBL_B = 7     # heap bullish live (-bottom, index, top, bottom)
R_OBK_B = 8     # heap bullish breakers (top, index, top, bottom)
R_OBL_R = 9     # heap bearish live (top, index, top, bottom)
R_OBK_R = 10    # heap bearish breakers (-bottom, index, top, bottom)
R_ROOT = 11     # liquidity roots (count: slots ever handed out): dir, index, lo, hi, sum, sum_comp, members, end, swept
R_RL_B = 12     # open roots of swing highs, in index order (root slot)
R_RL_R = 13     # ... of swing lows
R_UNS_B = 14    # heap unswept bullish roots (hi, index, slot)
R_UNS_R = 15    # heap unswept bearish roots (-lo, index, slot)
R_FREE = 16     # free root slots (a stack)
R_RQ = 17       # retracement swings not reached by the cursor: dir, index, level; head at ii[Q_HEAD_RQ]
N_REGIONS = 18
WIDTHS = (5, 6, 3, 2, 2, 1, 1, 4, 4, 4, 4, 9, 1, 1, 3, 3, 1, 3)
INITIAL_CAP = (256, 8, 4, 16, 16, 8, 8, 8, 8, 8, 8, 16, 8, 8, 8, 8, 16, 8)

# ---- scalar ints ---------------------------------------------------------------------------
I_LEN = 0            # swing length L
I_CLOSE_BREAK = 1
I_CLOSE_MIT = 2
I_JOIN = 3
I_HAS_BAND = 4
I_N_TF = 5
I_N_SESS = 6
I_TRIM_EVERY = 7
I_NEUMAIER = 8       # 1: Python >= 3.12 sums floats with Neumaier compensation
I_COUNT = 9          # bars fed (next bar index)
I_BASE = 10          # oldest bar held
I_HAS_LAST = 11
I_LAST_TIME = 12
# swings
I_RUN_DIR = 13
I_RUN_FIRST = 14
I_BEST_INDEX = 15
# fvg pending run (join): dir (0 = none), index
I_PEND_DIR = 16
I_PEND_INDEX = 17
# order blocks: per side cursor, last, crossed, queue head
I_OB_CURSOR_B = 18
I_OB_LAST_B = 19
I_OB_CROSSED_B = 20
Q_HEAD_B = 21
I_OB_CURSOR_R = 22
I_OB_LAST_R = 23
I_OB_CROSSED_R = 24
Q_HEAD_R = 25
# retracements
I_RT_CURSOR = 26
I_RT_DIR = 27
I_RT_CHANGES = 28
Q_HEAD_RQ = 29
REG = 32             # region table: 3 ints per region
TF_BASE = REG + 3 * N_REGIONS   # per timeframe: width_ms, has_label, label, finished, has_group, group
TF_W = 6
MAX_TF = 32
SESS_BASE = TF_BASE + TF_W * MAX_TF  # per session: start_min, end_min, wraps
SESS_W = 3
MAX_SESS = 64
N_INTS = SESS_BASE + SESS_W * MAX_SESS

# ---- scalar floats -------------------------------------------------------------------------
F_RANGE_PCT = 0
F_BAND = 1
F_BEST_LEVEL = 2
F_PEND_TOP = 3
F_PEND_BOTTOM = 4
F_MAX_HIGH = 5
F_MIN_LOW = 6
F_RT_TOP = 7
F_RT_BOTTOM = 8
F_RT_DEEPEST = 9
FTF_BASE = 16        # per timeframe: high, low, p1h, p1l, p2h, p2l, run_high, run_low
FTF_W = 8
FSESS_BASE = FTF_BASE + FTF_W * MAX_TF  # per session: high, low
FSESS_W = 2
N_FLOATS = FSESS_BASE + FSESS_W * MAX_SESS

NEED_EVENTS = -1000  # return code NEED_EVENTS - size: the event buffer is too small
NEED_REGION = -100  # return code NEED_REGION - r: region r is too small
DAY_MS = 86_400_000
MINUTE_MS = 60_000
EPOCH_WEEKDAY = 3
WARMUP_CHANGES = 3
NO_NEED = 1 << 62


# ---- heaps on arena rows, ordered by (key, index) = columns 0 and 1 -------------------------

@njit("boolean(float64[::1], int64, int64, int64, int64)",
      cache=True, nogil=True)
def _less(a, off, w, i, j):
    ki, kj = a[off + i * w], a[off + j * w]
    if ki < kj:
        return True
    if ki > kj:
        return False
    return a[off + i * w + 1] < a[off + j * w + 1]


@njit("void(float64[::1], int64, int64, int64, int64)",
      cache=True, nogil=True)
def _swap(a, off, w, i, j):
    for f in range(w):
        x = a[off + i * w + f]
        a[off + i * w + f] = a[off + j * w + f]
        a[off + j * w + f] = x


@njit("void(int64[::1], float64[::1], int64, float64, float64, float64, float64)",
      cache=True, nogil=True)
def _heap_push(ii, a, r, k0, k1, k2, k3):
    """Append a row (k0 = key, k1 = index, k2, k3 as the width allows) and sift it up."""
    off, w, n = ii[REG + 3 * r], WIDTHS[r], ii[REG + 3 * r + 2]
    p = off + n * w
    a[p] = k0
    a[p + 1] = k1
    if w > 2:
        a[p + 2] = k2
    if w > 3:
        a[p + 3] = k3
    ii[REG + 3 * r + 2] = n + 1
    i = n
    while i > 0:
        parent = (i - 1) >> 1
        if _less(a, off, w, i, parent):
            _swap(a, off, w, i, parent)
            i = parent
        else:
            break


@njit("int64(int64[::1], float64[::1], int64)",
      cache=True, nogil=True)
def _heap_pop(ii, a, r):
    """Remove the smallest row; it is copied to the slot just past the heap's end, whose
    position is returned (read it before the next push)."""
    off, w, n = ii[REG + 3 * r], WIDTHS[r], ii[REG + 3 * r + 2]
    n -= 1
    _swap(a, off, w, 0, n)
    ii[REG + 3 * r + 2] = n
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        m = left
        right = left + 1
        if right < n and _less(a, off, w, right, left):
            m = right
        if _less(a, off, w, m, i):
            _swap(a, off, w, m, i)
            i = m
        else:
            break
    return off + n * w




@njit("float64(int64[::1], float64[::1], int64)",
      cache=True, nogil=True)
def _top(ii, a, r):
    """Key of the heap's smallest row."""
    return a[ii[REG + 3 * r]]


@njit("int64(int64[::1], int64)",
      cache=True, nogil=True)
def _cnt(ii, r):
    return ii[REG + 3 * r + 2]


@njit("boolean(int64[::1], int64, int64)",
      cache=True, nogil=True)
def _room(ii, r, extra):
    return ii[REG + 3 * r + 2] + extra <= ii[REG + 3 * r + 1]


@njit("int64(float64[::1], int64, float64, float64, float64, float64, float64, float64, float64, float64, float64)",
      cache=True, nogil=True)
def _emit(ev, n, kind, a1, a2, a3, a4, a5, a6, a7, a8):
    """Write event row ``n`` (``EV_WIDTH`` values from ``ev[EV_WIDTH * n]``)."""
    p = EV_WIDTH * n
    ev[p] = kind
    ev[p + 1] = a1
    ev[p + 2] = a2
    ev[p + 3] = a3
    ev[p + 4] = a4
    ev[p + 5] = a5
    ev[p + 6] = a6
    ev[p + 7] = a7
    ev[p + 8] = a8
    return n + 1


# ---- history -------------------------------------------------------------------------------

@njit("float64(int64[::1], float64[::1], int64, int64)",
      cache=True, nogil=True)
def _h(ii, a, i, col):
    """Column ``col`` (0 o, 1 h, 2 l, 3 c, 4 v) of bar ``i``."""
    return a[ii[REG + 3 * R_HIST] + (i - ii[I_BASE]) * 5 + col]


# ---- capacity check ------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _compact_queue(ii, a, r, head_slot):
    """Move a queue's live rows to the front of its region (frees the popped ones)."""
    head = ii[head_slot]
    if head == 0:
        return
    off, w, n = ii[REG + 3 * r], WIDTHS[r], ii[REG + 3 * r + 2]
    for k in range((n - head) * w):
        a[off + k] = a[off + head * w + k]
    ii[REG + 3 * r + 2] = n - head
    ii[head_slot] = 0


@njit(cache=True, nogil=True)
def _check_room(ii, a, ev_size, t):
    """0 if every region can take the most this candle may add, else the code of the first
    one that cannot (nothing else is changed; queues may be compacted, which is neutral)."""
    if ii[REG + 3 * R_HIST + 2] + 1 > ii[REG + 3 * R_HIST + 1]:
        return (NEED_REGION - R_HIST)
    for r in (R_PAT, R_FVG_BULL, R_FVG_BEAR, R_RL_B, R_RL_R, R_UNS_B, R_UNS_R):
        if not _room(ii, r, 1):
            return (NEED_REGION - r)
    for r, hs in ((R_QB, Q_HEAD_B), (R_QR, Q_HEAD_R), (R_RQ, Q_HEAD_RQ)):
        if not _room(ii, r, 1):
            _compact_queue(ii, a, r, hs)
            if not _room(ii, r, 1):
                return (NEED_REGION - r)
    if not _room(ii, R_ROOT, 1) and _cnt(ii, R_FREE) == 0:
        return (NEED_REGION - R_ROOT)
    if ii[REG + 3 * R_FREE + 1] < ii[REG + 3 * R_ROOT + 1]:
        return (NEED_REGION - R_FREE)
    formed_b = _cnt(ii, R_QB) - ii[Q_HEAD_B] + 2
    formed_r = _cnt(ii, R_QR) - ii[Q_HEAD_R] + 2
    if not _room(ii, R_OBL_B, formed_b):
        return (NEED_REGION - R_OBL_B)
    if not _room(ii, R_OBK_B, formed_b + _cnt(ii, R_OBL_B)):
        return (NEED_REGION - R_OBK_B)
    if not _room(ii, R_OBL_R, formed_r):
        return (NEED_REGION - R_OBL_R)
    if not _room(ii, R_OBK_R, formed_r + _cnt(ii, R_OBL_R)):
        return (NEED_REGION - R_OBK_R)
    rt = t - ii[I_LEN] + 2 - ii[I_RT_CURSOR]
    events = (8 + _cnt(ii, R_PAT) + _cnt(ii, R_FVG_BULL) + _cnt(ii, R_FVG_BEAR)
              + _cnt(ii, R_OBL_B) + _cnt(ii, R_OBK_B) + _cnt(ii, R_OBL_R) + _cnt(ii, R_OBK_R)
              + 3 * (formed_b + formed_r) + _cnt(ii, R_UNS_B) + _cnt(ii, R_UNS_R))
    size = EV_WIDTH * events + 4 * ii[I_N_TF] + 3 * ii[I_N_SESS] + 4 * (rt if rt > 0 else 0) + 4
    if size > ev_size:
        return NEED_EVENTS - size
    return 0


# ---- swings --------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _horizon(ii, t):
    return ii[I_RUN_FIRST] if ii[I_RUN_DIR] != 0 else t - ii[I_LEN] + 1


@njit(cache=True, nogil=True)
def _horizon_for(ii, direction, t):
    return ii[I_RUN_FIRST] if ii[I_RUN_DIR] == direction else t - ii[I_LEN] + 1


# ---- structure -----------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _breaks(ii, a, direction, level, j):
    if direction == 1:
        x = _h(ii, a, j, 3) if ii[I_CLOSE_BREAK] else _h(ii, a, j, 1)
        return x > level
    x = _h(ii, a, j, 3) if ii[I_CLOSE_BREAK] else _h(ii, a, j, 2)
    return x < level


@njit(cache=True, nogil=True)
def _structure(ii, a, ev, n, t, s_dir, s_index, s_level):
    off, w = ii[REG + 3 * R_PAT], 6
    npat = ii[REG + 3 * R_PAT + 2]
    any_new = False
    for k in range(npat):
        p = off + k * w
        if a[p + 5] < 0 and _breaks(ii, a, int(a[p + 1]), a[p + 3], t):
            a[p + 5] = t
            any_new = True
    if s_dir != 0:
        so, sn = ii[REG + 3 * R_SW4], ii[REG + 3 * R_SW4 + 2]
        if sn == 4:
            for k in range(9):
                a[so + k] = a[so + 3 + k]
            sn = 3
        a[so + sn * 3] = s_dir
        a[so + sn * 3 + 1] = s_index
        a[so + sn * 3 + 2] = s_level
        sn += 1
        ii[REG + 3 * R_SW4 + 2] = sn
        if sn == 4:
            d4, d3, d2, d1 = a[so], a[so + 3], a[so + 6], a[so + 9]
            l4, l3, l2, l1 = a[so + 2], a[so + 5], a[so + 8], a[so + 11]
            bull = d4 == -1 and d3 == 1 and d2 == -1 and d1 == 1
            bear = d4 == 1 and d3 == -1 and d2 == 1 and d1 == -1
            bos = 1 if bull and l4 < l2 and l2 < l3 and l3 < l1 else 0
            bos = -1 if bear and l4 > l2 and l2 > l3 and l3 > l1 else bos
            choch = 1 if bull and l1 > l3 and l3 > l4 and l4 > l2 else 0
            choch = -1 if bear and l1 < l3 and l3 < l4 and l4 < l2 else choch
            if bos != 0 or choch != 0:
                direction = bos if bos != 0 else choch
                index = int(a[so + 4])
                level = float(np.float32(l3))
                p = off + npat * w
                a[p] = 0.0 if bos != 0 else 1.0
                a[p + 1] = direction
                a[p + 2] = index
                a[p + 3] = level
                a[p + 4] = t
                a[p + 5] = -1.0
                for j in range(index + 2, t + 1):
                    if _breaks(ii, a, direction, level, j):
                        a[p + 5] = j
                        any_new = True
                        break
                npat += 1
                ii[REG + 3 * R_PAT + 2] = npat
    if not any_new:
        return n
    # every pattern now holding a break was broken during this call (the others were all
    # emitted or voided when they broke): that is the reference's ``newly_broken``
    keep = 0
    for k in range(npat):
        p = off + k * w
        idx, brk = a[p + 2], a[p + 5]
        void = False
        for m in range(npat):
            q = off + m * w
            if a[q + 5] >= 0 and idx < a[q + 2] and (brk < 0 or brk >= a[q + 5]):
                void = True
                break
        if void:
            continue
        if brk >= 0:
            n = _emit(ev, n, EV_STRUCTURE, a[p], a[p + 1], idx, a[p + 3], brk, 0.0, 0.0, 0.0)
        else:
            if keep != k:
                for f in range(w):
                    a[off + keep * w + f] = a[p + f]
            keep += 1
    ii[REG + 3 * R_PAT + 2] = keep
    return n


# ---- fair value gaps -----------------------------------------------------------------------

@njit("void(int64[::1], float64[::1], int64, float64, float64, float64)",
      cache=True, nogil=True)
def _fvg_open(ii, a, direction, index, top, bottom):
    if direction == 1:
        _heap_push(ii, a, R_FVG_BULL, -top, index, 0.0, 0.0)
    else:
        _heap_push(ii, a, R_FVG_BEAR, bottom, index, 0.0, 0.0)


@njit(cache=True, nogil=True)
def _fvg(ii, ff, a, ev, n, t):
    low, high = _h(ii, a, t, 2), _h(ii, a, t, 1)
    n0 = n
    while _cnt(ii, R_FVG_BULL) > 0 and -_top(ii, a, R_FVG_BULL) >= low:
        p = _heap_pop(ii, a, R_FVG_BULL)
        n = _emit(ev, n, EV_FVG_MIT, 1.0, a[p + 1], t, 0.0, 0.0, 0.0, 0.0, 0.0)
    while _cnt(ii, R_FVG_BEAR) > 0 and _top(ii, a, R_FVG_BEAR) <= high:
        p = _heap_pop(ii, a, R_FVG_BEAR)
        n = _emit(ev, n, EV_FVG_MIT, -1.0, a[p + 1], t, 0.0, 0.0, 0.0, 0.0, 0.0)
    # stable sort of this bar's mitigations by index (the reference's ``sort(key=index)``)
    for k in range(n0 + 1, n):
        j = k
        while j > n0 and ev[EV_WIDTH * (j - 1) + 2] > ev[EV_WIDTH * j + 2]:
            for f in range(EV_WIDTH):
                x = ev[EV_WIDTH * (j - 1) + f]
                ev[EV_WIDTH * (j - 1) + f] = ev[EV_WIDTH * j + f]
                ev[EV_WIDTH * j + f] = x
            j -= 1
    if t < 2:
        return n
    i = t - 1
    d, top, bottom = 0, 0.0, 0.0
    oi, ci = _h(ii, a, i, 0), _h(ii, a, i, 3)
    if ci > oi and _h(ii, a, i - 1, 1) < _h(ii, a, i + 1, 2):
        d, top, bottom = 1, _h(ii, a, i + 1, 2), _h(ii, a, i - 1, 1)
    elif ci < oi and _h(ii, a, i - 1, 2) > _h(ii, a, i + 1, 1):
        d, top, bottom = -1, _h(ii, a, i - 1, 2), _h(ii, a, i + 1, 1)
    if ii[I_JOIN] == 0:
        if d != 0:
            n = _emit(ev, n, EV_FVG, d, i, top, bottom, 0.0, 0.0, 0.0, 0.0)
            _fvg_open(ii, a, d, i, top, bottom)
        return n
    rd = ii[I_PEND_DIR]
    if rd != 0 and d == rd:
        ii[I_PEND_INDEX] = i
        rt, rb = ff[F_PEND_TOP], ff[F_PEND_BOTTOM]
        ff[F_PEND_TOP] = top if top > rt else rt
        ff[F_PEND_BOTTOM] = bottom if bottom < rb else rb
        return n
    if rd != 0:
        ri, rt, rb = ii[I_PEND_INDEX], ff[F_PEND_TOP], ff[F_PEND_BOTTOM]
        n = _emit(ev, n, EV_FVG, rd, ri, rt, rb, 0.0, 0.0, 0.0, 0.0)
        if (low <= rt) if rd == 1 else (high >= rb):
            n = _emit(ev, n, EV_FVG_MIT, rd, ri, t, 0.0, 0.0, 0.0, 0.0, 0.0)
        else:
            _fvg_open(ii, a, rd, ri, rt, rb)
    if d != 0:
        ii[I_PEND_DIR], ii[I_PEND_INDEX] = d, i
        ff[F_PEND_TOP], ff[F_PEND_BOTTOM] = top, bottom
    else:
        ii[I_PEND_DIR] = 0
    return n


# ---- order blocks --------------------------------------------------------------------------

@njit("void(int64[::1], float64[::1], int64, float64, float64, float64, boolean)",
      cache=True, nogil=True)
def _ob_push(ii, a, direction, index, top, bottom, breaker):
    if direction == 1:
        if breaker:
            _heap_push(ii, a, R_OBK_B, top, index, top, bottom)
        else:
            _heap_push(ii, a, R_OBL_B, -bottom, index, top, bottom)
    elif breaker:
        _heap_push(ii, a, R_OBK_R, -bottom, index, top, bottom)
    else:
        _heap_push(ii, a, R_OBL_R, top, index, top, bottom)


@njit(cache=True, nogil=True)
def _ob_update_live(ii, a, ev, n, t):
    high, low = _h(ii, a, t, 1), _h(ii, a, t, 2)
    if ii[I_CLOSE_MIT]:
        o, c = _h(ii, a, t, 0), _h(ii, a, t, 3)
        body_lo = c if c < o else o
        body_hi = c if c > o else o
    else:
        body_lo, body_hi = low, high
    while _cnt(ii, R_OBK_B) > 0 and _top(ii, a, R_OBK_B) < high:
        p = _heap_pop(ii, a, R_OBK_B)
        n = _emit(ev, n, EV_OB_RESET, 1.0, a[p + 1], t, 0.0, 0.0, 0.0, 0.0, 0.0)
    while _cnt(ii, R_OBK_R) > 0 and -_top(ii, a, R_OBK_R) > low:
        p = _heap_pop(ii, a, R_OBK_R)
        n = _emit(ev, n, EV_OB_RESET, -1.0, a[p + 1], t, 0.0, 0.0, 0.0, 0.0, 0.0)
    while _cnt(ii, R_OBL_B) > 0 and -_top(ii, a, R_OBL_B) > body_lo:
        p = _heap_pop(ii, a, R_OBL_B)
        idx, top, bottom = a[p + 1], a[p + 2], a[p + 3]
        n = _emit(ev, n, EV_OB_MIT, 1.0, idx, t - 1, t, 0.0, 0.0, 0.0, 0.0)
        _ob_push(ii, a, 1, idx, top, bottom, True)
    while _cnt(ii, R_OBL_R) > 0 and _top(ii, a, R_OBL_R) < body_hi:
        p = _heap_pop(ii, a, R_OBL_R)
        idx, top, bottom = a[p + 1], a[p + 2], a[p + 3]
        n = _emit(ev, n, EV_OB_MIT, -1.0, idx, t, t, 0.0, 0.0, 0.0, 0.0)
        _ob_push(ii, a, -1, idx, top, bottom, True)
    return n


@njit(cache=True, nogil=True)
def _ob_side(ii, a, ev, n, t, direction, horizon):
    if direction == 1:
        r, hs, ic, il, ix = R_QB, Q_HEAD_B, I_OB_CURSOR_B, I_OB_LAST_B, I_OB_CROSSED_B
    else:
        r, hs, ic, il, ix = R_QR, Q_HEAD_R, I_OB_CURSOR_R, I_OB_LAST_R, I_OB_CROSSED_R
    qoff = ii[REG + 3 * r]
    last = t if t < horizon else horizon
    while ii[ic] <= last:
        c = ii[ic]
        ii[ic] = c + 1
        # _form: the last swing of this direction before c, crossed by c's close?
        while ii[hs] < ii[REG + 3 * r + 2] and a[qoff + ii[hs]] < c:
            ii[il] = int(a[qoff + ii[hs]])
            ii[hs] += 1
            ii[ix] = 0
        s = ii[il]
        if s < 0 or ii[ix] != 0:
            continue
        close = _h(ii, a, c, 3)
        if direction == 1:
            if not close > _h(ii, a, s, 1):
                continue
        elif not close < _h(ii, a, s, 2):
            continue
        ii[ix] = 1
        if c - s <= 1:
            lo, hi = _h(ii, a, c - 1, 2), _h(ii, a, c - 1, 1)
            index = c - 1
            if direction == 1:
                top, bottom = lo, hi
            else:
                top, bottom = hi, lo
        else:
            best = s + 1
            if direction == 1:
                best_v = _h(ii, a, best, 2)
                for k in range(s + 2, c):
                    x = _h(ii, a, k, 2)
                    if x <= best_v:
                        best, best_v = k, x
            else:
                best_v = _h(ii, a, best, 1)
                for k in range(s + 2, c):
                    x = _h(ii, a, k, 1)
                    if x >= best_v:
                        best, best_v = k, x
            index, top, bottom = best, _h(ii, a, best, 1), _h(ii, a, best, 2)
        # _volumes, in the reference's float32 arithmetic (each operation rounded once)
        v0 = _h(ii, a, c, 4)
        v1 = _h(ii, a, c - 1, 4) if c >= 1 else 0.0
        v2 = _h(ii, a, c - 2, 4) if c >= 2 else 0.0
        total = np.float32(v0 + v1 + v2)
        recent, older = np.float32(v0 + v1), np.float32(v2)
        if direction == 1:
            high_v, low_v = recent, older
        else:
            high_v, low_v = older, recent
        max_v = low_v if low_v > high_v else high_v
        min_v = low_v if low_v < high_v else high_v
        if max_v != 0:
            q = np.float32(np.float64(min_v) / np.float64(max_v))
            pct = np.float32(np.float64(q) * 100.0)
        else:
            pct = np.float32(100.0)
        top32 = float(np.float32(top))
        bottom32 = float(np.float32(bottom))
        n = _emit(ev, n, EV_OB, direction, index, top32, bottom32, float(total), float(pct),
                  c, 0.0)
        breaker = False
        alive = True
        for k in range(c + 1, t + 1):  # catch up on the bars since it formed
            if direction == 1:
                if breaker:
                    if _h(ii, a, k, 1) > top32:
                        n = _emit(ev, n, EV_OB_RESET, 1.0, index, k, 0.0, 0.0, 0.0, 0.0, 0.0)
                        alive = False
                        break
                    continue
                if ii[I_CLOSE_MIT]:
                    ok, ck = _h(ii, a, k, 0), _h(ii, a, k, 3)
                    price = ck if ck < ok else ok
                else:
                    price = _h(ii, a, k, 2)
                if price < bottom32:
                    breaker = True
                    n = _emit(ev, n, EV_OB_MIT, 1.0, index, k - 1, k, 0.0, 0.0, 0.0, 0.0)
            else:
                if breaker:
                    if _h(ii, a, k, 2) < bottom32:
                        n = _emit(ev, n, EV_OB_RESET, -1.0, index, k, 0.0, 0.0, 0.0, 0.0, 0.0)
                        alive = False
                        break
                    continue
                if ii[I_CLOSE_MIT]:
                    ok, ck = _h(ii, a, k, 0), _h(ii, a, k, 3)
                    price = ck if ck > ok else ok
                else:
                    price = _h(ii, a, k, 1)
                if price > top32:
                    breaker = True
                    n = _emit(ev, n, EV_OB_MIT, -1.0, index, k, k, 0.0, 0.0, 0.0, 0.0)
        if alive:
            _ob_push(ii, a, direction, index, top32, bottom32, breaker)
    return n


# ---- liquidity -----------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _root_mean(ii, a, p):
    f, comp, m = a[p + 4], a[p + 5], a[p + 6]
    if comp != 0.0 and np.isfinite(comp):
        f += comp
    return f / m


@njit(cache=True, nogil=True)
def _root_add(ii, a, p, x):
    """Add a member level the way Python's ``sum`` over the levels would."""
    f = a[p + 4]
    s = f + x
    if ii[I_NEUMAIER]:
        if abs(f) >= abs(x):
            a[p + 5] += (f - s) + x
        else:
            a[p + 5] += (x - s) + f
    a[p + 4] = s
    a[p + 6] += 1.0


@njit(cache=True, nogil=True)
def _liquidity(ii, ff, a, ev, n, t, s_dir, s_index, s_level):
    high, low = _h(ii, a, t, 1), _h(ii, a, t, 2)
    if high > ff[F_MAX_HIGH]:
        ff[F_MAX_HIGH] = high
    if low < ff[F_MIN_LOW]:
        ff[F_MIN_LOW] = low
    roff = ii[REG + 3 * R_ROOT]
    while _cnt(ii, R_UNS_B) > 0 and _top(ii, a, R_UNS_B) <= high:
        q = _heap_pop(ii, a, R_UNS_B)
        p = roff + int(a[q + 2]) * 9
        a[p + 8] = t
        if a[p + 6] > 1:
            n = _emit(ev, n, EV_SWEPT, 1.0, a[p + 1], float(np.float32(_root_mean(ii, a, p))),
                      t, 0.0, 0.0, 0.0, 0.0)
    while _cnt(ii, R_UNS_R) > 0 and -_top(ii, a, R_UNS_R) >= low:
        q = _heap_pop(ii, a, R_UNS_R)
        p = roff + int(a[q + 2]) * 9
        a[p + 8] = t
        if a[p + 6] > 1:
            n = _emit(ev, n, EV_SWEPT, -1.0, a[p + 1], float(np.float32(_root_mean(ii, a, p))),
                      t, 0.0, 0.0, 0.0, 0.0)
    if s_dir == 0:
        return n
    rl = R_RL_B if s_dir == 1 else R_RL_R
    loff = ii[REG + 3 * rl]
    k = 0
    while k < _cnt(ii, rl):
        slot = int(a[loff + k])
        p = roff + slot * 9
        swept = a[p + 8]
        if 0 <= swept and swept <= s_index:  # swept before this swing: closed for good
            m = _cnt(ii, rl)
            for j in range(k, m - 1):
                a[loff + j] = a[loff + j + 1]
            ii[REG + 3 * rl + 2] = m - 1
            fo, fn = ii[REG + 3 * R_FREE], ii[REG + 3 * R_FREE + 2]
            a[fo + fn] = slot
            ii[REG + 3 * R_FREE + 2] = fn + 1
            continue
        if a[p + 2] <= s_level and s_level <= a[p + 3]:
            _root_add(ii, a, p, s_level)
            a[p + 7] = s_index
            n = _emit(ev, n, EV_POOL, s_dir, a[p + 1], float(np.float32(_root_mean(ii, a, p))),
                      s_index, a[p + 6], swept, 0.0, 0.0)
            return n
        k += 1
    if ii[I_HAS_BAND]:
        band = ff[F_BAND]
    else:
        band = (ff[F_MAX_HIGH] - ff[F_MIN_LOW]) * ff[F_RANGE_PCT]
    fn = ii[REG + 3 * R_FREE + 2]
    if fn > 0:
        slot = int(a[ii[REG + 3 * R_FREE] + fn - 1])
        ii[REG + 3 * R_FREE + 2] = fn - 1
    else:
        slot = ii[REG + 3 * R_ROOT + 2]
        ii[REG + 3 * R_ROOT + 2] = slot + 1
    p = roff + slot * 9
    a[p] = s_dir
    a[p + 1] = s_index
    a[p + 2] = s_level - band
    a[p + 3] = s_level + band
    a[p + 4] = 0.0
    a[p + 5] = 0.0
    a[p + 6] = 0.0
    _root_add(ii, a, p, s_level)
    a[p + 7] = s_index
    a[p + 8] = -1.0
    col = 1 if s_dir == 1 else 2
    for c in range(s_index + 1, t + 1):  # has a bar since the swing swept it already?
        x = _h(ii, a, c, col)
        if (x >= a[p + 3]) if s_dir == 1 else (x <= a[p + 2]):
            a[p + 8] = c
            break
    m = _cnt(ii, rl)
    a[loff + m] = slot
    ii[REG + 3 * rl + 2] = m + 1
    if a[p + 8] < 0:
        if s_dir == 1:
            _heap_push(ii, a, R_UNS_B, a[p + 3], s_index, slot, 0.0)
        else:
            _heap_push(ii, a, R_UNS_R, -a[p + 2], s_index, slot, 0.0)
    return n


# ---- previous period high/low, sessions ----------------------------------------------------

@njit(cache=True, nogil=True)
def _periods(ii, ff, ev, at, t, time_ms, h, low):
    """Writes ``high, low, broken_high, broken_low`` per timeframe from ``ev[at]`` on."""
    for k in range(ii[I_N_TF]):
        ib, fb = TF_BASE + k * TF_W, FTF_BASE + k * FTF_W
        width = ii[ib]
        if width != 0:
            label = time_ms - time_ms % width
        else:
            day = time_ms // DAY_MS
            label = (day + 6 - (day + EPOCH_WEEKDAY) % 7) * DAY_MS
        if ii[ib + 1] == 0 or label != ii[ib + 2]:
            if ii[ib + 1] != 0:
                ff[fb + 4], ff[fb + 5] = ff[fb + 2], ff[fb + 3]
                ff[fb + 2] = float(np.float32(ff[fb]))
                ff[fb + 3] = float(np.float32(ff[fb + 1]))
                ii[ib + 3] += 1
            ii[ib + 1], ii[ib + 2] = 1, label
            ff[fb], ff[fb + 1] = h, low
        else:
            if h > ff[fb]:
                ff[fb] = h
            if low < ff[fb + 1]:
                ff[fb + 1] = low
        finished = ii[ib + 3]
        count = finished + (1 if label < time_ms else 0)
        ref = count - 2
        if ii[ib + 4] == 0 or ref != ii[ib + 5]:
            ii[ib + 4], ii[ib + 5] = 1, ref
            ff[fb + 6], ff[fb + 7] = h, low
        else:
            if h > ff[fb + 6]:
                ff[fb + 6] = h
            if low < ff[fb + 7]:
                ff[fb + 7] = low
        if ref < 0:
            ev[at + 4 * k], ev[at + 4 * k + 1], ev[at + 4 * k + 2], ev[at + 4 * k + 3] = np.nan, np.nan, 0.0, 0.0
            continue
        if ref == finished - 1:
            ph, pl = ff[fb + 2], ff[fb + 3]
        else:
            ph, pl = ff[fb + 4], ff[fb + 5]
        ev[at + 4 * k], ev[at + 4 * k + 1] = ph, pl
        ev[at + 4 * k + 2] = 1.0 if ff[fb + 6] > ph else 0.0
        ev[at + 4 * k + 3] = 1.0 if ff[fb + 7] < pl else 0.0


@njit(cache=True, nogil=True)
def _sessions(ii, ff, ev, at, t, time_ms, h, low):
    """Writes ``active, high, low`` per session from ``ev[at]`` on."""
    minute = (time_ms % DAY_MS) // MINUTE_MS
    base = at
    for k in range(ii[I_N_SESS]):
        ib, fb = SESS_BASE + k * SESS_W, FSESS_BASE + k * FSESS_W
        start, end = ii[ib], ii[ib + 1]
        if ii[ib + 2]:
            inside = minute >= start or minute <= end
        else:
            inside = start <= minute and minute <= end
        if not inside:
            ff[fb] = 0.0
            ff[fb + 1] = 0.0
            ev[base + 3 * k], ev[base + 3 * k + 1], ev[base + 3 * k + 2] = 0.0, 0.0, 0.0
            continue
        prev = ff[fb]
        ff[fb] = float(np.float32(prev if prev > h else h))
        prev = ff[fb + 1] if ff[fb + 1] != 0.0 else np.inf
        ff[fb + 1] = float(np.float32(prev if prev < low else low))
        ev[base + 3 * k], ev[base + 3 * k + 1], ev[base + 3 * k + 2] = 1.0, ff[fb], ff[fb + 1]


@njit(cache=True, nogil=True)
def py_round1(x):
    """Python's ``round(x, 1)`` exactly: the binary value times ten rounded half to even
    (integer arithmetic on the mantissa, no decimal string), then one correctly rounded
    division by ten, which is what converting the rounded decimal back gives."""
    if not np.isfinite(x):
        return x
    m, e = math.frexp(abs(x))
    mant = np.int64(math.ldexp(m, 53))  # |x| = mant * 2**(e - 53), exactly
    shift = 53 - e
    if shift <= 0:  # |x| >= 2**53: already an integer
        return x
    if shift >= 59:  # 10 * mant < 2**57 <= half of 2**shift: rounds to 0
        q = np.int64(0)
    else:
        ten = mant * 10
        q = ten >> shift
        rem = ten - (q << shift)
        half = np.int64(1) << (shift - 1)
        if rem > half or (rem == half and (q & 1) == 1):
            q += 1
    r = q / 10.0
    return -r if x < 0 or (x == 0 and np.signbit(x)) else r


# ---- retracements --------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _retracements(ii, ff, a, ev, at, t, s_dir, s_index, s_level, horizon):
    """Writes ``index, direction, current, deepest`` per row from ``ev[at]``; returns rows."""
    n = 0
    qoff = ii[REG + 3 * R_RQ]
    if s_dir != 0:
        m = _cnt(ii, R_RQ)
        a[qoff + 3 * m] = s_dir
        a[qoff + 3 * m + 1] = s_index
        a[qoff + 3 * m + 2] = s_level
        ii[REG + 3 * R_RQ + 2] = m + 1
    if t == 0:
        ev[at], ev[at + 1], ev[at + 2], ev[at + 3] = 0.0, 0.0, 0.0, 0.0
        n = 1
    while ii[I_RT_CURSOR] < horizon:
        c = ii[I_RT_CURSOR]
        ii[I_RT_CURSOR] = c + 1
        prev = ii[I_RT_DIR]
        d = prev
        head = ii[Q_HEAD_RQ]
        if head < _cnt(ii, R_RQ) and a[qoff + 3 * head + 1] == c:
            d = int(a[qoff + 3 * head])
            if d == 1:
                ff[F_RT_TOP] = a[qoff + 3 * head + 2]
            else:
                ff[F_RT_BOTTOM] = a[qoff + 3 * head + 2]
            ii[Q_HEAD_RQ] = head + 1
        top, bottom = ff[F_RT_TOP], ff[F_RT_BOTTOM]
        current = deepest = 0.0
        if prev == 1:
            div = top - bottom
            current = py_round1(100 - (((_h(ii, a, c, 2) - bottom) / div) * 100)) if div != 0 else 0.0
            old = ff[F_RT_DEEPEST]
            deepest = current if current > old else old
        if d == -1:
            div = bottom - top
            current = py_round1(100 - ((_h(ii, a, c, 1) - top) / div) * 100) if div != 0 else 0.0
            old = ff[F_RT_DEEPEST] if prev == -1 else 0.0
            deepest = current if current > old else old
        ii[I_RT_DIR] = d
        ff[F_RT_DEEPEST] = deepest
        p = at + 4 * n
        ev[p] = c + 1
        if ii[I_RT_CHANGES] < WARMUP_CHANGES:
            ev[p + 1], ev[p + 2], ev[p + 3] = 0.0, 0.0, 0.0
        else:
            ev[p + 1], ev[p + 2], ev[p + 3] = d, current, deepest
        n += 1
        if c >= 1 and d != prev:
            ii[I_RT_CHANGES] += 1
    return n


# ---- trimming ------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _trim(ii, a, t, horizon):
    keep = t - 2 * ii[I_LEN] + 1
    if t - 1 < keep:
        keep = t - 1
    if horizon < keep:
        keep = horizon
    so, sn = ii[REG + 3 * R_SW4], ii[REG + 3 * R_SW4 + 2]
    need = NO_NEED
    if sn >= 2:
        need = int(a[so + (sn - 2) * 3 + 1])
    elif sn == 1:
        need = int(a[so + 1])
    if need < keep:
        keep = need
    ob = ii[I_OB_CURSOR_B] - 2
    if ii[I_OB_CURSOR_R] - 2 < ob:
        ob = ii[I_OB_CURSOR_R] - 2
    for x in (ii[I_OB_LAST_B], ii[I_OB_LAST_R]):
        if x >= 0 and x < ob:
            ob = x
    if ob < 0:
        ob = 0
    if ob < keep:
        keep = ob
    if ii[I_RT_CURSOR] < keep:
        keep = ii[I_RT_CURSOR]
    base = ii[I_BASE]
    if keep - base < ii[I_TRIM_EVERY]:
        return
    count = ii[I_COUNT]
    cut = (keep if keep < count else count) - base
    if cut <= 0:
        return
    off, held = ii[REG + 3 * R_HIST], ii[REG + 3 * R_HIST + 2]
    for k in range((held - cut) * 5):
        a[off + k] = a[off + cut * 5 + k]
    ii[REG + 3 * R_HIST + 2] = held - cut
    ii[I_BASE] = base + cut


# ---- one candle ----------------------------------------------------------------------------

ERR_NON_FINITE = -1
ERR_HIGH_LOW = -2
ERR_TIME = -3


@njit("int64(int64[::1], float64[::1], float64[::1], float64[::1], int64, "
      "float64, float64, float64, float64, float64)", cache=True, nogil=True)
def step(ii, ff, a, ev, time_ms, o, h, low, c, v):
    """Feed one closed candle. Writes to ``ev``, in the order of the labels: ``rows`` event
    rows (``EV_WIDTH`` values each), then 4 values per timeframe and 3 per session, then 4
    per retracement row (``retr`` of them); returns ``(rows << 32) | retr``. Or a negative
    code: input refused, or a region / the event buffer must grow first."""
    if not (np.isfinite(o) and np.isfinite(h) and np.isfinite(low) and np.isfinite(c)
            and np.isfinite(v)):
        return ERR_NON_FINITE
    if h < low:
        return ERR_HIGH_LOW
    if ii[I_HAS_LAST] != 0 and time_ms <= ii[I_LAST_TIME]:
        return ERR_TIME
    t = ii[I_COUNT]
    code = _check_room(ii, a, ev.shape[0], t)
    if code != 0:
        return code
    ii[I_HAS_LAST], ii[I_LAST_TIME] = 1, time_ms
    # history.append
    hoff, held = ii[REG + 3 * R_HIST], ii[REG + 3 * R_HIST + 2]
    p = hoff + held * 5
    a[p], a[p + 1], a[p + 2], a[p + 3], a[p + 4] = o, h, low, c, v
    ii[REG + 3 * R_HIST + 2] = held + 1
    ii[I_COUNT] = t + 1
    n = 0
    # swings
    s_dir, s_index, s_level = 0, -1, 0.0
    length = ii[I_LEN]
    i = t - length
    if i >= 2 * length - 1:
        hv = _h(ii, a, i, 1)
        mx = _h(ii, a, i - length + 1, 1)
        for k in range(i - length + 2, t + 1):
            x = _h(ii, a, k, 1)
            if x > mx:
                mx = x
        direction, level = 0, 0.0
        if hv == mx:
            direction, level = 1, hv
        else:
            lv = _h(ii, a, i, 2)
            mn = _h(ii, a, i - length + 1, 2)
            for k in range(i - length + 2, t + 1):
                x = _h(ii, a, k, 2)
                if x < mn:
                    mn = x
            if lv == mn:
                direction, level = -1, lv
        if direction != 0:
            n = _emit(ev, n, EV_PIVOT, direction, i, level, 0.0, 0.0, 0.0, 0.0, 0.0)
            run_dir = ii[I_RUN_DIR]
            if run_dir == direction:
                best = ff[F_BEST_LEVEL]
                if (level > best) if direction == 1 else (level < best):
                    ii[I_BEST_INDEX], ff[F_BEST_LEVEL] = i, level
            else:
                if run_dir != 0:
                    s_dir, s_index, s_level = run_dir, ii[I_BEST_INDEX], ff[F_BEST_LEVEL]
                    n = _emit(ev, n, EV_SWING, s_dir, s_index, s_level, 0.0, 0.0, 0.0, 0.0, 0.0)
                ii[I_RUN_DIR], ii[I_RUN_FIRST], ii[I_BEST_INDEX] = direction, i, i
                ff[F_BEST_LEVEL] = level
    n = _structure(ii, a, ev, n, t, s_dir, s_index, s_level)
    n = _fvg(ii, ff, a, ev, n, t)
    if (_cnt(ii, R_OBL_B) + _cnt(ii, R_OBK_B) + _cnt(ii, R_OBL_R) + _cnt(ii, R_OBK_R)) > 0:
        n = _ob_update_live(ii, a, ev, n, t)
    if s_dir == 1:
        qo, qn = ii[REG + 3 * R_QB], ii[REG + 3 * R_QB + 2]
        a[qo + qn] = s_index
        ii[REG + 3 * R_QB + 2] = qn + 1
    elif s_dir == -1:
        qo, qn = ii[REG + 3 * R_QR], ii[REG + 3 * R_QR + 2]
        a[qo + qn] = s_index
        ii[REG + 3 * R_QR + 2] = qn + 1
    n = _ob_side(ii, a, ev, n, t, 1, _horizon_for(ii, 1, t))
    n = _ob_side(ii, a, ev, n, t, -1, _horizon_for(ii, -1, t))
    n = _liquidity(ii, ff, a, ev, n, t, s_dir, s_index, s_level)
    at = EV_WIDTH * n
    _periods(ii, ff, ev, at, t, time_ms, h, low)
    at += 4 * ii[I_N_TF]
    _sessions(ii, ff, ev, at, t, time_ms, h, low)
    at += 3 * ii[I_N_SESS]
    horizon = _horizon(ii, t)
    retr = _retracements(ii, ff, a, ev, at, t, s_dir, s_index, s_level, horizon)
    if t - ii[I_BASE] >= 2 * ii[I_TRIM_EVERY]:
        _trim(ii, a, t, horizon)
    return (n << 32) | retr
