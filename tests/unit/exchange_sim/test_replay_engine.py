"""The sim's pure core: capture loading, the replay schedule, loop stitching, derived
symbols, time rebasing, and the candles built from played trades."""

from __future__ import annotations

import re
from decimal import Decimal

import numpy as np
import orjson
import pytest

from services.exchange_sim import recorded_market
from services.exchange_sim import render, rest
from services.exchange_sim.recorded_market import BOOK, TRADE
from services.exchange_sim.engine import Player, Timeline
from services.exchange_sim.hub import Hub
from services.exchange_sim.market import Market
from services.exchange_sim.symbols import DERIVED_TAG, make_specs

START_MS = 1_800_000_000_000  # a round sim start (2027-01-15 08:00 UTC), far from the capture


@pytest.fixture(scope="module")
def cap():
    return recorded_market.load()


def play(player: Player, until_ms: int, step_ms: int, per_symbol: int = 1 << 30):
    """Every event the player hands out from its start to ``until_ms``, as tuples."""
    out = []
    now = player.start_ms
    while now <= until_ms:
        for b in player.due(now, per_symbol):
            ch = b.chunk
            for i in range(b.lo, b.hi):
                e = b.stamp_ms if b.stamp_ms is not None else ch.e_ms[i]
                t = b.stamp_ms if b.stamp_ms is not None else ch.t_ms[i]
                out.append((b.sym, ch.loop, ch.kind[i], e, t, ch.ident[i], ch.p1[i], ch.q1[i],
                            ch.p2[i], ch.q2[i], ch.maker[i], ch.agg_end[i]))
        now += step_ms
    return out


def of_symbol(events, sym):
    return [e for e in events if e[0] == sym]


class FakeTransport:
    """Collects written bytes; never backs up."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


def frames(buf: bytes) -> list[bytes]:
    """Split unmasked server frames into payloads."""
    out, i = [], 0
    while i < len(buf):
        assert buf[i] == 0x81
        n = buf[i + 1]
        i += 2
        if n == 126:
            n = int.from_bytes(buf[i:i + 2], "big")
            i += 2
        elif n == 127:
            n = int.from_bytes(buf[i:i + 8], "big")
            i += 8
        out.append(bytes(buf[i:i + n]))
        i += n
    return out


def units(s: str, dec: int) -> int:
    return int(Decimal(s) * 10**dec)


class TestCapture:
    def test_bundled_capture_has_the_documented_counts(self, cap):
        """The loader keeps exactly the 21,313 trades and 66,089 book tickers of BTCUSDT."""
        assert cap.symbol == "BTCUSDT"
        assert (cap.n_trades, cap.n_books) == (21_313, 66_089)
        assert int((cap.kind == TRADE).sum()) == 21_313
        assert (cap.price_decimals, cap.qty_decimals, cap.tick_units, cap.step_units) == (2, 3, 10, 1)
        assert cap.x_values == ("MARKET",)

    def test_capture_is_ordered_by_event_time(self, cap):
        """Merged rows never step back in E, so due times never step back either."""
        assert bool(np.all(np.diff(cap.e_ms) >= 0))

    def test_capture_trade_ids_are_contiguous(self, cap):
        """Trade ids of the capture run 5266583935 .. 5266605247 without a gap."""
        ids = cap.ident[cap.kind == TRADE]
        assert ids[0] == 5_266_583_935 and ids[-1] == 5_266_605_247
        assert bool(np.all(np.diff(ids) == 1))


class TestSchedule:
    def test_same_inputs_give_the_same_schedule(self, cap):
        """Two players with the same inputs hand out identical events."""
        specs = make_specs(cap, 5)
        a = play(Player(cap, specs, start_ms=START_MS, speed=3.0), START_MS + 20_000, 7)
        b = play(Player(cap, specs, start_ms=START_MS, speed=3.0), START_MS + 20_000, 7)
        assert len(a) > 10_000
        assert a == b

    def test_schedule_does_not_depend_on_how_time_is_sliced(self, cap):
        """Stepping 1 ms or 997 ms at a time yields the same events with the same times."""
        specs = make_specs(cap, 3)
        fine = play(Player(cap, specs, start_ms=START_MS, speed=2.5), START_MS + 8_000, 1)
        coarse = play(Player(cap, specs, start_ms=START_MS, speed=2.5), START_MS + 8_000, 997)
        # coarse stops at the last step <= until; compare the common prefix per symbol
        for sym in range(3):
            f, c = of_symbol(fine, sym), of_symbol(coarse, sym)
            assert c == f[: len(c)] and len(c) > 100

    def test_events_are_handed_out_only_once_due(self, cap):
        """At any now, played events carry E <= now, and the next unplayed one is due later."""
        specs = make_specs(cap, 4)
        p = Player(cap, specs, start_ms=START_MS, speed=1.0)
        for now in range(START_MS, START_MS + 5_000, 13):
            for b in p.due(now):
                assert max(b.chunk.e_ms[b.lo:b.hi]) <= now
            for sym in range(4):
                assert p.next_due_ms(sym) > now

    def test_falling_behind_sends_late_with_scheduled_times_in_order(self, cap):
        """With a per-step cap, a late symbol keeps its order and its scheduled event times."""
        specs = make_specs(cap, 2)
        capped = play(Player(cap, specs, start_ms=START_MS), START_MS + 30_000, 1000, per_symbol=50)
        free = play(Player(cap, specs, start_ms=START_MS), START_MS + 30_000, 1000)
        for sym in range(2):
            c, f = of_symbol(capped, sym), of_symbol(free, sym)
            assert 30 * 50 <= len(c) <= 31 * 50  # <= 50 a step: behind almost all the time
            assert len(f) > 2 * len(c)
            assert c == f[: len(c)]

    def test_lag_reports_how_far_behind_the_oldest_due_event_is(self, cap):
        """After a capped step the lag is now minus the due time of the next unplayed event."""
        specs = make_specs(cap, 1)
        p = Player(cap, specs, start_ms=START_MS)
        p.due(START_MS + 10_000, 10)
        assert p.lag_ms(START_MS + 10_000) == START_MS + 10_000 - p.next_due_ms(0)
        assert p.lag_ms(START_MS + 10_000) > 9_000
        p.due(START_MS + 10_000)
        assert p.lag_ms(START_MS + 10_000) == 0


class TestRebasing:
    def test_speed_one_shifts_capture_times_onto_the_sim_clock(self, cap):
        """At speed 1, E' = start + (E - E0) and T' = start + (T - E0), for the real symbol."""
        events = of_symbol(play(Player(cap, make_specs(cap, 1), start_ms=START_MS), START_MS + 3_000, 50), 0)
        e0 = int(cap.e_ms[0])
        assert events[0][3] == START_MS
        for k, ev in enumerate(events):
            assert ev[3] == START_MS + int(cap.e_ms[k]) - e0
            assert ev[4] == START_MS + int(cap.t_ms[k]) - e0

    def test_speed_n_compresses_capture_times(self, cap):
        """At speed 8, E' = start + floor((E - E0) / 8): event times stay near the wall clock."""
        events = of_symbol(play(Player(cap, make_specs(cap, 1), start_ms=START_MS, speed=8.0),
                                START_MS + 3_000, 50), 0)
        e0 = int(cap.e_ms[0])
        assert len(events) > 5_000
        for k, ev in enumerate(events):
            assert ev[3] == START_MS + (int(cap.e_ms[k]) - e0) // 8

    def test_derived_symbol_starts_at_its_offset_at_sim_start(self, cap):
        """A derived symbol's first event is its offset into the capture, stamped near start."""
        spec = make_specs(cap, 4)[3]
        events = of_symbol(play(Player(cap, (spec,), start_ms=START_MS), START_MS + 1_000, 10), 0)
        first_row = int(np.searchsorted(cap.e_ms - cap.e_ms[0], spec.offset_ms))
        assert events[0][3] == START_MS + int(cap.e_ms[first_row] - cap.e_ms[0]) - spec.offset_ms
        assert START_MS <= events[0][3] < START_MS + 100

    def test_max_speed_stamps_events_with_the_send_time(self, cap):
        """At max speed everything is due at once and E = T = the send time."""
        p = Player(cap, make_specs(cap, 2), start_ms=START_MS, max_speed=True)
        batches = p.due(START_MS + 123, 500)
        assert sum(b.hi - b.lo for b in batches) == 1000
        assert all(b.stamp_ms == START_MS + 123 for b in batches)


@pytest.fixture(scope="module")
def three_loops(cap):
    """Two symbols played through loops 0..3 in 5 s steps."""
    tl = Timeline.of(cap)
    p = Player(cap, make_specs(cap, 2), start_ms=START_MS, speed=1.0)
    return play(p, START_MS + 3 * tl.period_ms + 10_000, 5_000), tl


class TestLoopStitching:
    def test_loops_follow_each_other(self, three_loops):
        """The real symbol plays loops 0, 1, 2 and 3 in order."""
        events, _ = three_loops
        loops = [e[1] for e in of_symbol(events, 0)]
        assert loops == sorted(loops) and set(loops) == {0, 1, 2, 3}

    def test_trade_ids_stay_contiguous_across_loops(self, three_loops):
        """Trade ids increase by exactly 1 everywhere, loop boundaries included."""
        events, _ = three_loops
        for sym in (0, 1):
            ids = [e[5] for e in of_symbol(events, sym) if e[2] == TRADE]
            assert np.all(np.diff(ids) == 1), sym

    def test_book_update_ids_strictly_increase_across_loops(self, three_loops):
        """Book ticker update ids never repeat or step back."""
        events, _ = three_loops
        for sym in (0, 1):
            ids = [e[5] for e in of_symbol(events, sym) if e[2] == BOOK]
            assert np.all(np.diff(ids) > 0), sym

    def test_event_times_continue_across_loops_with_one_typical_gap(self, three_loops, cap):
        """E never steps back, and each boundary advances by exactly the typical gap (2 ms)."""
        events, tl = three_loops
        ev = of_symbol(events, 0)
        e = np.array([x[3] for x in ev])
        assert np.all(np.diff(e) >= 0)
        boundaries = [k for k in range(1, len(ev)) if ev[k][1] != ev[k - 1][1]]
        assert len(boundaries) == 3
        assert cap.typical_gap_ms == 2
        for k in boundaries:
            assert ev[k][3] - ev[k - 1][3] == 2

    def test_first_trade_price_of_a_loop_equals_the_last_of_the_previous(self, three_loops):
        """Prices continue exactly across a boundary; book moves stay within in-loop moves."""
        events, _ = three_loops
        for sym in (0, 1):
            ev = of_symbol(events, sym)
            trades = [x for x in ev if x[2] == TRADE]
            books = [x for x in ev if x[2] == BOOK]
            for k in range(1, len(trades)):
                if trades[k][1] != trades[k - 1][1]:
                    assert trades[k][6] == trades[k - 1][6]
            bids = np.array([x[6] for x in books])
            loop = np.array([x[1] for x in books])
            moves = np.abs(np.diff(bids))
            at_boundary = np.diff(loop) != 0
            assert moves[at_boundary].max() <= moves[~at_boundary].max()

    def test_loop_prices_stay_on_the_tick_grid(self, three_loops):
        """Scaled prices of later loops are still multiples of BTCUSDT's 0.1 tick."""
        events, _ = three_loops
        prices = [x[6] for x in of_symbol(events, 0) if x[1] >= 1] + \
                 [x[8] for x in of_symbol(events, 0) if x[1] >= 1 and x[2] == BOOK]
        assert prices and all(p % 10 == 0 for p in prices)


class TestDerivedSymbols:
    def test_names_are_valid_and_marked_derived(self, cap):
        """D001USDT.. are upper-case alphanumerics, and exchangeInfo tags them DERIVED-DEMO."""
        specs = make_specs(cap, 320)
        assert specs[0].name == "BTCUSDT" and not specs[0].derived
        assert [s.name for s in specs[1:4]] == ["D001USDT", "D002USDT", "D003USDT"]
        assert specs[319].name == "D319USDT"
        assert all(re.fullmatch(r"[A-Z0-9]{5,20}", s.name) for s in specs)
        assert len({s.name for s in specs}) == 320
        info = rest.exchange_info(specs, cap, START_MS)
        tags = {e["symbol"]: e["underlyingSubType"] for e in info["symbols"]}
        assert tags["BTCUSDT"] == [] and all(tags[s.name] == [DERIVED_TAG] for s in specs[1:])

    def test_price_levels_spread_from_1e_minus_4_to_1e4(self, cap):
        """Reference prices of 300 derived symbols cover 1e-4 .. 1e4 USDT."""
        specs = make_specs(cap, 300)[1:]
        first = int(cap.p1[cap.trade_rows()[0]]) / 100
        levels = [first * s.price_scale for s in specs]
        assert min(levels) < 2e-4 and max(levels) > 5e3
        assert all(1e-4 <= x < 1e4 for x in levels)

    def test_derived_prices_lie_on_their_tick_grid_and_books_never_cross(self, cap):
        """Every derived price string has the symbol's precision and bid < ask always."""
        specs = make_specs(cap, 40)
        info = {e["symbol"]: e for e in rest.exchange_info(specs, cap, START_MS)["symbols"]}
        events = play(Player(cap, specs, start_ms=START_MS), START_MS + 4_000, 100)
        for spec in specs:
            f = {x["filterType"]: x for x in info[spec.name]["filters"]}
            tick = Decimal(f["PRICE_FILTER"]["tickSize"])
            step = Decimal(f["LOT_SIZE"]["stepSize"])
            ev = of_symbol(events, spec.index)
            assert ev
            for x in ev:
                price = Decimal(render.fmt_units(x[6], spec.price_decimals))
                assert price > 0 and price % tick == 0
                assert Decimal(render.fmt_units(x[7], spec.qty_decimals)) % step == 0
                if x[2] == BOOK:
                    assert x[6] < x[8]

    def test_derived_symbols_start_at_different_points_with_own_ids(self, cap):
        """Offsets differ, and each symbol's trade ids are its own increasing sequence."""
        specs = make_specs(cap, 30)
        assert len({s.offset_ms for s in specs}) == 30
        events = play(Player(cap, specs, start_ms=START_MS), START_MS + 5_000, 100)
        seen = []
        for spec in specs:
            ids = [x[5] for x in of_symbol(events, spec.index) if x[2] == TRADE]
            assert ids and np.all(np.diff(ids) == 1)
            seen.append((ids[0], ids[-1]))
        seen.sort()
        assert all(a[1] < b[0] for a, b in zip(seen, seen[1:]))  # disjoint ranges

    def test_derived_symbols_do_not_move_in_lockstep(self, cap):
        """Two derived symbols' relative price moves over the same 20 s differ."""
        specs = make_specs(cap, 3)
        events = play(Player(cap, specs, start_ms=START_MS), START_MS + 20_000, 500)
        rel = []
        for sym in (1, 2):
            tr = [x[6] for x in of_symbol(events, sym) if x[2] == TRADE]
            rel.append(np.array(tr[:200], float) / tr[0])
        assert not np.allclose(rel[0], rel[1])


@pytest.fixture(scope="module")
def played(cap):
    """Five sim minutes of 4 symbols, with a raw trade and aggTrade listener on two."""
    specs = make_specs(cap, 4)
    start = START_MS + 30_000  # mid-minute: the first and last bars are partial
    hub = Hub(specs)
    tr = FakeTransport()
    conn = hub.connect(False, tr)
    hub.subscribe(conn, ["btcusdt@trade", "d003usdt@trade", "btcusdt@aggTrade", "d003usdt@aggTrade"])
    player = Player(cap, specs, start_ms=start, speed=1.0)
    market = Market(cap, specs, player, hub)
    for now in range(start, start + 300_000, 20):
        market.step(now)
        hub.flush(now)
    msgs = [orjson.loads(f) for f in frames(bytes(tr.data))]
    return market, msgs, specs


class TestPlayedMarket:

    def test_klines_equal_an_independent_aggregation_of_streamed_trades(self, played):
        """REST klines = per-minute OHLCV, counts and taker volumes of the trades that were sent."""
        market, msgs, specs = played
        for name in ("BTCUSDT", "D003USDT"):
            spec = next(s for s in specs if s.name == name)
            pd, qd = spec.price_decimals, spec.qty_decimals
            tr = [m for m in msgs if m["e"] == "trade" and m["s"] == name]
            t = np.array([m["T"] for m in tr], np.int64)
            p = np.array([units(m["p"], pd) for m in tr], np.int64)
            q = np.array([units(m["q"], qd) for m in tr], np.int64)
            buy = np.array([not m["m"] for m in tr])
            ids = np.array([m["t"] for m in tr], np.int64)
            minute = t - t % 60_000
            expected = []
            for mt in np.unique(minute):
                s = minute == mt
                expected.append([
                    int(mt), render.fmt_units(int(p[s][0]), pd), render.fmt_units(int(p[s].max()), pd),
                    render.fmt_units(int(p[s].min()), pd), render.fmt_units(int(p[s][-1]), pd),
                    render.fmt_units(int(q[s].sum()), qd), int(mt) + 59_999,
                    render.fmt_units(int((p[s] * q[s]).sum()), pd + qd), int(s.sum()),
                    render.fmt_units(int(q[s & buy].sum()), qd),
                    render.fmt_units(int((p[s & buy] * q[s & buy]).sum()), pd + qd), "0"])
                assert market.klines.bars(spec.index)  # sanity
            got = rest.klines(market, {"symbol": name, "interval": "1m", "limit": "1500"},
                              {s.name: s.index for s in specs})
            assert len(expected) == 6  # a partial, four full and a partial minute
            assert got == expected
            first_ids = [int(ids[minute == mt][0]) for mt in np.unique(minute)]
            assert [b[0] for b in market.klines.bars(spec.index)] == [r[0] for r in got]
            assert [b[10] for b in market.klines.bars(spec.index)] == first_ids

    def test_agg_trades_cover_the_trades_exactly(self, played):
        """aggTrade f..l ranges tile the trade ids, with the summed quantity and ascending a."""
        market, msgs, specs = played
        for name in ("BTCUSDT", "D003USDT"):
            spec = next(s for s in specs if s.name == name)
            trades = {m["t"]: m for m in msgs if m["e"] == "trade" and m["s"] == name}
            aggs = [m for m in msgs if m["e"] == "aggTrade" and m["s"] == name]
            assert aggs and len(aggs) < len(trades)
            assert np.all(np.diff([a["a"] for a in aggs]) == 1)
            for a, b in zip(aggs, aggs[1:]):
                assert b["f"] == a["l"] + 1
            for a in aggs:
                group = [trades[i] for i in range(a["f"], a["l"] + 1)]
                assert {(g["T"], g["p"], g["m"]) for g in group} == {(a["T"], a["p"], a["m"])}
                total = sum(units(g["q"], spec.qty_decimals) for g in group)
                assert units(a["q"], spec.qty_decimals) == total

    def test_24h_ticker_sums_the_played_bars(self, played):
        """ticker/24hr volume and count equal the sums over the klines."""
        market, _, specs = played
        by = {s.name: s.index for s in specs}
        rows = rest.klines(market, {"symbol": "BTCUSDT", "interval": "1m"}, by)
        t = rest.ticker_24h(market, 0, rows[-1][0] + 1)
        assert t["count"] == sum(r[8] for r in rows)
        assert Decimal(t["volume"]) == sum(Decimal(r[5]) for r in rows)
        assert Decimal(t["quoteVolume"]) == sum(Decimal(r[7]) for r in rows)
        assert t["openPrice"] == rows[0][1] and t["lastPrice"] == rows[-1][4]


class TestCodec:
    @pytest.mark.parametrize("units_, dec, text", [
        (6180030, 2, "61800.30"), (6, 3, "0.006"), (0, 2, "0.00"), (-417, 2, "-4.17"),
        (12345, 8, "0.00012345"), (100000, 0, "100000"), (7, -2, "700"),
    ])
    def test_fmt_units_prints_binance_decimals(self, units_, dec, text):
        """Integer units render as Binance's fixed-decimal strings."""
        assert render.fmt_units(units_, dec) == text

    @pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
    def test_text_frame_headers_follow_rfc6455(self, size):
        """Payload lengths pick the 7-bit, 16-bit or 64-bit length form."""
        payload = b"x" * size
        assert frames(render.text_frame(payload)) == [payload]
