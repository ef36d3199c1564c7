"""The shared market: plays due events once, folds them into the state REST reads, and
renders frames for whoever subscribed.

This is the hot loop (one pass per played event), so it mutates preallocated per-symbol
state in place; the decisions (what is due, which values) come from ``engine``. Time still
comes in as an argument: ``step(now_ms)`` plays what is due at ``now_ms``.

Per symbol it keeps: the last trade and book ticker (``/fapi/v1/depth``, ``ticker/*``,
mark price), the aggregate-trade state (``aggTrade``: consecutive trades with the same T,
price and side, closed where the engine marks ``agg_end``), and the 1m bars (``klines``).
Timers derived from the sim clock drive ``markPrice`` (every 3 s, or 1 s for ``@1s``) and
the ``kline_1m`` updates (every 250 ms while trades come in, plus one ``x:true`` at close).

A test moves a symbol's price with ``set_price`` (``POST /_sim/price``). The last price and
the book become that price at once: the book is locked at it (bid = ask = the price, so the
mark, which is the book mid, equals it too, and a MARKET order either way fills at exactly
that price). The move then holds as a persistent offset: every later replayed trade and
book price of the symbol is shifted by (the new price - the replay's own last price), so
the replay carries on from the new level instead of snapping back (a price that would fall
to zero or below is held at one tick). No trade or bookTicker frame is invented (its id
would collide with the replay's): the streams show the new level with the symbol's next
replayed event, the ``markPrice`` stream at its next tick, REST at once. A later push
replaces the offset; the offset lives in memory only (a restarted sim replays unshifted).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from common.errors import DefinitiveError
from services.exchange_sim import funding, render
from services.exchange_sim.recorded_market import TRADE, Capture
from services.exchange_sim.engine import Batch, Player, rebase, round_prices
from services.exchange_sim.hub import (CH_AGG, CH_BOOK, CH_KLINE, CH_MARK, CH_MARK1S, CH_TRADE,
                                       CHANNELS, Hub, NO_TARGETS)
from services.exchange_sim.klines import F_OPEN_TIME, MINUTE_MS, KlineBook
from services.exchange_sim.symbols import SymbolSpec

KLINE_PUSH_MS = 250  # Binance futures kline streams update every 250 ms
KLINE_CLOSE_GRACE_MS = 1000  # close a bar only when trades up to 1 s past its end were played:
#                              a trade's E trails its T (0-2 ms in the capture), never by 1 s
MARK_PERIOD_MS = {CH_MARK: 3000, CH_MARK1S: 1000}
FUNDING_RATE = f"{funding.FUNDING_RATE:.8f}"  # the rate rule of ``funding`` (one rate, every symbol)
FUNDING_PERIOD_MS = funding.FUNDING_PERIOD_MS
MARK_DECIMALS = 8  # Binance prints mark and index prices with 8 decimals
_HEADERS = render.HEADERS  # WebSocket text frame headers by payload length (< 64 KiB)


@dataclass
class Book:
    u: int
    b: int
    bq: int
    a: int
    aq: int
    t_ms: int
    e_ms: int


class SymState:
    """Mutable per-symbol market state (the REST endpoints read it)."""

    __slots__ = ("spec", "name", "px", "qty", "last_price", "last_qty", "last_trade_ms",
                 "last_trade_id", "book", "agg_id", "agg_first", "agg_qty", "last_e_ms",
                 "kline_dirty", "kline_pushed_ms", "mark_next", "x_values", "price_off", "price_seq")

    def __init__(self, spec: SymbolSpec, x_values: tuple[bytes, ...]) -> None:
        self.spec = spec
        self.name = spec.name.encode()
        self.px = render.DecimalCache(spec.price_decimals)
        self.qty = render.DecimalCache(spec.qty_decimals)
        self.last_price: int | None = None
        self.last_qty = 0
        self.last_trade_ms = 0
        self.last_trade_id = 0
        self.book: Book | None = None
        self.agg_id = spec.agg_id_start
        self.agg_first: int | None = None
        self.agg_qty = 0
        self.last_e_ms = 0
        self.kline_dirty = False
        self.kline_pushed_ms = 0
        self.mark_next = {CH_MARK: 0, CH_MARK1S: 0}
        self.x_values = x_values
        self.price_off = 0  # set_price: added to every replayed price (units of the tick grid)
        self.price_seq = 0  # +1 per set_price (the desk's "did the market move" key)


class PriceError(DefinitiveError):
    """A ``set_price`` the sim cannot do (off the symbol's price grid, or no price seen yet)."""


next_funding_ms = funding.next_funding_ms


class Market:
    def __init__(self, cap: Capture, specs: tuple[SymbolSpec, ...], player: Player, hub: Hub) -> None:
        self.cap = cap
        self.specs = specs
        self.player = player
        self.hub = hub
        x_values = tuple(x.encode() for x in cap.x_values)
        self.states = [SymState(s, x_values) for s in specs]
        self.klines = KlineBook(len(specs))
        self.sent = Counter({c: 0 for c in CHANNELS})  # messages per channel (x connections)
        self.played = 0  # events played (whether or not anyone listened)
        self.behind_syms = 0  # symbols left with due events by the last step (fell behind)
        self._next_close_check = 0

    # ------------------------------------------------------------------ stepping
    def step(self, now_ms: int, max_per_symbol: int = 1 << 30) -> int:
        """Play everything due at ``now_ms`` (at most ``max_per_symbol`` per symbol)."""
        n_trade = n_agg = n_book = n_kline = 0
        played = 0
        for b in self.player.due(now_ms, max_per_symbol):
            played += b.hi - b.lo
            t, a, k, kl = self._play(b)
            n_trade += t
            n_agg += a
            n_book += k
            n_kline += kl
        sent = self.sent
        sent[CHANNELS[CH_TRADE]] += n_trade
        sent[CHANNELS[CH_AGG]] += n_agg
        sent[CHANNELS[CH_BOOK]] += n_book
        sent[CHANNELS[CH_KLINE]] += n_kline
        self.played += played
        capped = self.player.capped
        self.behind_syms = len(capped)
        self._timers(now_ms, capped)
        return played

    def _play(self, b: Batch) -> tuple[int, int, int, int]:
        """Play one due batch of one symbol (events ``b.lo`` to ``b.hi`` of its chunk): fold
        each into the symbol's state and send its frames; returns the messages sent per
        channel (trade, aggTrade, bookTicker, kline). The hot loop: the trade and book frames'
        fan-out is written out here: with a call per frame the loop took 12 to 20 % more CPU."""
        sym = b.sym
        st = self.states[sym]
        ch = b.chunk
        tg = self.hub.targets[sym]
        pre = self.hub.prefixes[sym]
        kb = self.klines
        hdr = _HEADERS
        trade_fmt, book_fmt = render.TRADE_FMT, render.BOOK_FMT
        boolb = render.BOOL
        n_trade = n_agg = n_book = n_kline = 0
        tc, tr = tg[CH_TRADE]
        bc, br = tg[CH_BOOK]
        kt = tg[CH_KLINE]
        want_kline = kt is not NO_TARGETS
        trade_pre, book_pre = pre[CH_TRADE], pre[CH_BOOK]
        name, px, qty = st.name, st.px, st.qty
        kind, ident = ch.kind, ch.ident
        p1, q1, p2, q2 = ch.p1, ch.q1, ch.p2, ch.q2
        maker, agg_end, x_code = ch.maker, ch.agg_end, ch.x_code
        stamp = b.stamp_ms
        e_ms, t_ms = ch.e_ms, ch.t_ms
        E = T = stamp
        pxg, qtg = px.cache.get, qty.cache.get
        off = st.price_off
        floor = st.spec.tick_units
        for i in range(b.lo, b.hi):
            if stamp is None:
                E = e_ms[i]
                T = t_ms[i]
            if kind[i] == TRADE:
                p = p1[i]
                if off:
                    p = max(p + off, floor)
                q = q1[i]
                m = maker[i]
                tid = ident[i]
                closed = kb.add_trade(sym, T, p, q, m, tid)
                if closed is not None and want_kline:
                    n_kline += self._emit(kt, pre[CH_KLINE], self._kline(st, closed, E, True))
                st.kline_dirty = True
                if st.agg_first is None:
                    st.agg_first = tid
                    st.agg_qty = q
                else:
                    st.agg_qty += q
                if tc or tr:
                    data = trade_fmt % (E, T, name, tid, pxg(p) or px(p), qtg(q) or qty(q),
                                        st.x_values[x_code[i]], boolb[m])
                    if tc:
                        x = trade_pre + data + b"}"
                        fr = hdr[len(x)] + x
                        for c in tc:
                            c.out.append(fr)
                    if tr:
                        fr = hdr[len(data)] + data
                        for c in tr:
                            c.out.append(fr)
                    n_trade += len(tc) + len(tr)
                if agg_end[i]:
                    n_agg += self._close_agg(st, tg[CH_AGG], pre[CH_AGG], p, tid, E, T, m)
                st.last_price = p
                st.last_qty = q
                st.last_trade_ms = T
                st.last_trade_id = tid
            else:
                u = ident[i]
                bid, bq, ask, aq = p1[i], q1[i], p2[i], q2[i]
                if off:
                    bid, ask = max(bid + off, floor), max(ask + off, floor)
                if bc or br:
                    data = book_fmt % (u, name, pxg(bid) or px(bid), qtg(bq) or qty(bq),
                                       pxg(ask) or px(ask), qtg(aq) or qty(aq), T, E)
                    if bc:
                        x = book_pre + data + b"}"
                        fr = hdr[len(x)] + x
                        for c in bc:
                            c.out.append(fr)
                    if br:
                        fr = hdr[len(data)] + data
                        for c in br:
                            c.out.append(fr)
                    n_book += len(bc) + len(br)
                bk = st.book
                if bk is None:
                    st.book = Book(u, bid, bq, ask, aq, T, E)
                else:
                    bk.u, bk.b, bk.bq, bk.a, bk.aq, bk.t_ms, bk.e_ms = u, bid, bq, ask, aq, T, E
        st.last_e_ms = E
        return n_trade, n_agg, n_book, n_kline

    def _close_agg(self, st: SymState, pair: tuple[tuple, tuple], prefix: bytes, p: int, tid: int,
                   e_ms: int, t_ms: int, maker: int) -> int:
        """The trade ``tid`` ends an aggregate trade: send it (if anyone listens) and start the
        next; returns the messages sent."""
        n = 0
        if pair[0] or pair[1]:
            px = st.px
            n = self._emit(pair, prefix, render.AGG_FMT % (e_ms, st.agg_id, st.name, px.cache.get(p) or px(p),
                                                          st.qty(st.agg_qty), st.agg_first, tid, t_ms,
                                                          render.BOOL[maker]))
        st.agg_id += 1
        st.agg_first = None
        return n

    def fast_forward(self, now_ms: int) -> int:
        """Play what is due at ``now_ms`` silently and in bulk (numpy, no frames).

        For the start of a paced replay that begins on a past minute, before any client
        has connected: at speed 60 up to a minute of it is ~85,000 events a symbol, seconds
        event by event. The trades fold into the open 1m bar (one bar when they share a
        minute, else trade by trade), and the last trade and book ticker become the state.
        """
        pl = self.player
        cap, tl = pl.cap, pl.tl
        kb = self.klines
        played = 0
        for sym, i0, i1 in pl.skip(now_ms):
            spec, st = self.specs[sym], self.states[sym]
            played += i1 - i0
            rows = np.arange(i0, i1)
            factor = pl.factor(sym, 0)
            trade = rows[cap.kind[rows] == TRADE]
            book = rows[cap.kind[rows] != TRADE]
            if trade.size:
                p = round_prices(cap.p1[trade], factor, spec.tick_units)
                q = cap.q1[trade] * spec.qty_mult
                m = cap.maker[trade]
                tid = cap.ident[trade] - tl.trade_id0 + spec.trade_id_base
                t = rebase(tl.rel_t[trade] - spec.offset_ms, pl.start_ms, pl.speed)
                minute = t - t % MINUTE_MS
                if kb.current[sym] is None and minute[0] == minute[-1] > kb.last_closed_open[sym]:
                    taker = np.where(m, 0, q)
                    kb.current[sym] = [int(x) for x in (
                        minute[0], p[0], p.max(), p.min(), p[-1], q.sum(), (p * q).sum(), p.size,
                        taker.sum(), (p * taker).sum(), tid[0], tid[-1])]
                else:
                    for args in zip(t.tolist(), p.tolist(), q.tolist(), m.tolist(), tid.tolist()):
                        kb.add_trade(sym, *args)
                st.last_price, st.last_qty = int(p[-1]), int(q[-1])
                st.last_trade_ms, st.last_trade_id = int(t[-1]), int(tid[-1])
                st.kline_dirty = True
            if book.size:
                j = book[-1:]
                bid = int(round_prices(cap.p1[j], factor, spec.tick_units, "floor")[0])
                ask = max(int(round_prices(cap.p2[j], factor, spec.tick_units, "ceil")[0]),
                          bid + spec.tick_units)
                t_b = int(rebase(tl.rel_t[j] - spec.offset_ms, pl.start_ms, pl.speed)[0])
                st.book = Book(int(cap.ident[j[0]] - tl.update_id0 + spec.update_id_base), bid,
                               int(cap.q1[j[0]] * spec.qty_mult), ask,
                               int(cap.q2[j[0]] * spec.qty_mult), t_b, t_b)
            st.last_e_ms = int(rebase(tl.rel_e[i1 - 1:i1] - spec.offset_ms, pl.start_ms, pl.speed)[0])
        self.played += played
        return played

    # ------------------------------------------------------------------ test control
    def set_price(self, sym: int, units: int, now_ms: int) -> None:
        """Move ``sym``'s last price and book to ``units`` now and shift the replay to follow
        (see the module docstring). ``PriceError`` if ``units`` is off the price grid or the
        symbol has shown no price yet (the offset needs the replay's own level)."""
        st = self.states[sym]
        spec = st.spec
        if units <= 0 or units % spec.tick_units:
            raise PriceError(f"price must be a positive multiple of the tick for {spec.name}")
        if st.last_price is not None:
            raw = st.last_price - st.price_off
        elif st.book is not None:
            raw = (st.book.b + st.book.a) // 2 - st.price_off
        else:
            raise PriceError(f"{spec.name} has shown no price yet")
        st.price_off = units - raw
        st.price_seq += 1
        st.last_price = units
        bk = st.book
        if bk is None:
            st.book = Book(0, units, spec.step_units, units, spec.step_units, now_ms, now_ms)
        else:
            bk.b = bk.a = units
            bk.t_ms = bk.e_ms = now_ms

    # ------------------------------------------------------------------ timers
    def _timers(self, now_ms: int, capped: set[int]) -> None:
        # bars close when everything up to their end has been played (not by the wall clock:
        # a symbol that fell behind still has trades of that minute to send)
        if now_ms >= self._next_close_check:
            pending = False
            for sym, st in enumerate(self.states):
                if sym in capped:
                    pending = True
                    continue
                closed = self.klines.close_due(sym, now_ms - KLINE_CLOSE_GRACE_MS)
                if closed is not None:
                    kt = self.hub.targets[sym][CH_KLINE]
                    if kt is not NO_TARGETS:
                        self.sent["kline_1m"] += self._emit(
                            kt, self.hub.prefixes[sym][CH_KLINE],
                            self._kline(st, closed, closed[F_OPEN_TIME] + MINUTE_MS, True))
            self._next_close_check = (now_ms + 1 if pending else
                                      now_ms - now_ms % MINUTE_MS + MINUTE_MS + KLINE_CLOSE_GRACE_MS)
        for sym in self.hub.timer_syms:
            st = self.states[sym]
            tg = self.hub.targets[sym]
            pre = self.hub.prefixes[sym]
            kt = tg[CH_KLINE]
            if kt is not NO_TARGETS and st.kline_dirty and now_ms - st.kline_pushed_ms >= KLINE_PUSH_MS:
                bar = self.klines.current[sym]
                if bar is not None:
                    self.sent["kline_1m"] += self._emit(kt, pre[CH_KLINE],
                                                        self._kline(st, bar, st.last_e_ms, False))
                st.kline_dirty = False
                st.kline_pushed_ms = now_ms
            for ch in (CH_MARK, CH_MARK1S):
                mt = tg[ch]
                if mt is NO_TARGETS or now_ms < st.mark_next[ch]:
                    continue
                period = MARK_PERIOD_MS[ch]
                due = now_ms - now_ms % period
                st.mark_next[ch] = due + period
                data = self.mark_payload(st, due)
                if data is not None:
                    self.sent[CHANNELS[ch]] += self._emit(mt, pre[ch], data)

    @staticmethod
    def _emit(pair: tuple[tuple, tuple], prefix: bytes, data: bytes) -> int:
        """Send ``data`` to a channel's subscribers: wrapped in the combined stream's envelope
        (``prefix`` ... ``}``) to the combined ones, as it is to the raw ones; returns how many
        got it. Called per frame: the frame header is looked up here (``render.HEADERS``, as
        ``render.text_frame`` does for payloads below 64 KiB, which these are) instead of
        calling ``text_frame``."""
        comb, raw = pair
        if comb:
            x = prefix + data + b"}"
            fr = _HEADERS[len(x)] + x
            for c in comb:
                c.out.append(fr)
        if raw:
            fr = _HEADERS[len(data)] + data
            for c in raw:
                c.out.append(fr)
        return len(comb) + len(raw)

    # ------------------------------------------------------------------ payloads read by REST too
    def mark_values(self, st: SymState) -> tuple[str, str] | None:
        """(mark, index) as Binance strings: mark = book mid, index = last trade price."""
        dec = st.spec.price_decimals
        out_dec = max(MARK_DECIMALS, dec + 1)
        if st.book is not None:
            mark = render.fmt_scaled((st.book.b + st.book.a) * 5, dec + 1, out_dec)  # exact mid
            last = st.last_price if st.last_price is not None else st.book.b
        elif st.last_price is not None:
            mark = render.fmt_scaled(st.last_price, dec, out_dec)
            last = st.last_price
        else:
            return None
        return mark, render.fmt_scaled(last, dec, out_dec)

    def mark_payload(self, st: SymState, e_ms: int) -> bytes | None:
        mv = self.mark_values(st)
        if mv is None:
            return None
        mark, index = mv
        return render.MARK_FMT % (e_ms, st.name, mark.encode(), index.encode(), index.encode(),
                                 FUNDING_RATE.encode(), next_funding_ms(e_ms))

    def _kline(self, st: SymState, bar: list[int], e_ms: int, closed: bool) -> bytes:
        spec = st.spec
        px = st.px
        qd = spec.qty_decimals
        qq = spec.price_decimals + spec.qty_decimals
        return render.KLINE_FMT % (
            e_ms, st.name, bar[0], bar[0] + MINUTE_MS - 1, st.name, bar[10], bar[11],
            px(bar[1]), px(bar[4]), px(bar[2]), px(bar[3]),
            render.fmt_units(bar[5], qd).encode(), bar[7], render.BOOL[closed],
            render.fmt_units(bar[6], qq).encode(), render.fmt_units(bar[8], qd).encode(),
            render.fmt_units(bar[9], qq).encode(),
        )
