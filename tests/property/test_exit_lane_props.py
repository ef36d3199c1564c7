"""The exit lane sends only what the trader would: ``trader_exits.levels`` and ``trader_exits.planned_exit``
against ``trader_exits.on_prices`` (the judge) on random trades, trailing on and off, and random
traded ranges; and the compiled scan against plain min/max over random batches."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st_

from common import records
from services.brain import exit_lane, trader, trader_exits, trader_fills
from services.brain import protection as pr
from tests.unit.brain.test_trader import CFG, ctx, enter, fill, signal

TRAIL = replace(CFG, trailing_callback_pct=1.0)


def _filled(side: str):
    sig = signal(side=side, stop=98.0 if side == "BUY" else 102.0, target=104.0 if side == "BUY" else 96.0)
    st, order, _ = enter(sig=sig)
    st, _ = trader_fills.on_fill(CFG, st, fill(order.client_order_id, "t1", "19.8", "100", side=side), ctx())
    return st


BASE = {"BUY": _filled("BUY"), "SELL": _filled("SELL")}
prices = st_.floats(min_value=80.0, max_value=120.0, allow_nan=False).map(lambda x: round(x, 2))
levels_ = st_.one_of(prices, st_.just(0.0), st_.just(math.nan))


@st_.composite
def cases(draw):
    side = draw(st_.sampled_from(["BUY", "SELL"]))
    cfg = draw(st_.sampled_from([CFG, TRAIL]))
    st = BASE[side]
    t = st.trades["AAAUSDT"]
    t = replace(t, stop=draw(levels_), target=draw(levels_),
                trail_extreme=draw(st_.one_of(st_.just(0.0), prices)),
                exit_cid=draw(st_.sampled_from(["", "ax-x-1"])),
                exit_reason=draw(st_.sampled_from(["", "", "", "STOP"])))
    st = replace(st, trades={**st.trades, "AAAUSDT": t})
    a, b = draw(prices), draw(prices)
    if t.trail_extreme and draw(st_.booleans()):  # a price a hair from the trail's exact level
        level = float(pr.trail_level(t.trail_extreme, t.direction, TRAIL.trailing_callback_pct))
        a = level * (1 + draw(st_.sampled_from([-2e-9, -5e-10, -1e-15, 0.0, 1e-15, 5e-10, 2e-9])))
    return cfg, st, min(a, b), max(a, b)


@settings(max_examples=600, deadline=None)
@given(cases())
def test_outside_the_wake_levels_the_trader_does_nothing_and_on_an_exit_level_it_sends_the_planned_exit(case):
    """Not woken: ``on_prices`` returns the very state and no action (skipping it is exact).
    An exit level touched (and an order planned): ``on_prices`` sends exactly that order."""
    cfg, st, low, high = case
    c = ctx()
    lv = trader_exits.levels(cfg, st.trades["AAAUSDT"])
    st2, actions = trader_exits.on_prices(cfg, st, "AAAUSDT", low, high, c)
    if lv is None or not (low <= lv.wake_lo or high >= lv.wake_hi):
        assert st2 is st and actions == []
        return
    if low <= lv.exit_lo or high >= lv.exit_hi:
        planned = trader_exits.planned_exit(cfg, st, "AAAUSDT", c)
        sent = [a for a in actions if isinstance(a, trader.NewOrder)]
        if planned is not None:
            assert sent == [planned]
        else:  # nothing planned (an exit in flight): the lane sends nothing, the trader neither
            assert sent == []


def _batch(draw_rows):
    buf = records.empty(len(draw_rows) or 1)
    for i, (kind, sid, price) in enumerate(draw_rows):
        buf[i]["kind"], buf[i]["symbol_id"], buf[i]["price"], buf[i]["recv_ns"] = kind, sid, price, 1000 + i
    return buf


rows = st_.lists(st_.tuples(st_.sampled_from([1, 2, 3, 4]), st_.integers(0, 3), prices), max_size=40)


@settings(max_examples=300, deadline=None)
@given(rows, st_.lists(st_.tuples(prices, prices), min_size=1, max_size=3))
def test_the_scan_finds_each_symbols_trade_range_and_its_crossings(batch, lv_pairs):
    """Per armed symbol: the trades' (kinds 1, 2) low, high and first index, and the EXIT/WAKE
    bits, as plain Python computes them; book and mark records are ignored."""
    buf = _batch(batch)
    k = len(lv_pairs)
    sids = np.arange(k, dtype=np.int64)
    lv = np.array([(lo, hi, lo + 1.0, hi - 1.0) for lo, hi in lv_pairs], np.float64)
    out, flags = np.zeros((k, 3)), np.zeros(k, np.int64)
    got = exit_lane.scan(buf, len(batch), sids, lv, out, flags)
    want_any = 0
    for j in range(k):
        mine = [(i, p) for i, (kind, sid, p) in enumerate(batch) if kind in (1, 2) and sid == j]
        if not mine:
            assert flags[j] == 0 and out[j, 2] == -1
            continue
        lo, hi = min(p for _, p in mine), max(p for _, p in mine)
        assert (out[j, 0], out[j, 1], int(out[j, 2])) == (lo, hi, mine[0][0])
        f = (exit_lane.EXIT if lo <= lv[j, 0] or hi >= lv[j, 1] else 0) | \
            (exit_lane.WAKE if lo <= lv[j, 2] or hi >= lv[j, 3] else 0)
        assert flags[j] == f
        want_any |= f
    assert got == want_any
