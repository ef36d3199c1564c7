"""The fast backtest engine (``aegis backtest``'s default; ``--engine shell`` is the other one).

The same run as ``research.backtest.Backtest`` (the shell engine), decision for decision and
number for number: the same bars in the same order, the same strategy calls, the same trader
(``services.brain.trader``: rotation, risk checks, sizing, the order state machine, the trade's
PnL and R), the same paper broker and its fill core (``venue.paper``, ``venue.fills``: fees,
slippage, the margin and notional refusals), the same funding, and the same timers (the
execution shell's ``poll``, inherited unchanged: balance reads, the kill switch, exit retries,
the order of answers). What it leaves out is what a backtest never reads:

- **wire messages nobody reads.** The shell publishes every order update, position, risk
  rejection and order request to the bus; the backtest reads fills and closed trades only.
  Here only those two reach it (and the order requests with ``keep_signals``).
- **answers that provably change nothing.** The shell reads the paper account's positions, its
  conditional orders and its funding income on timers. In a backtest the paper broker fills at
  once and holds no conditional orders (``exchange_protection`` is off), and paper pays no
  funding income (the catalog's funding is booked by the backtest): a position read that
  agrees with every open trade, an empty audit of conditional orders and an empty income
  read go nowhere instead of through the trader (which would return its state unchanged).
  So does an order's closing status read that its state machine answers with the same
  record and no effect (the entry's ``QueryResult`` after its fills).
- **a lighter dispatcher.** The answers are the same, in the same order; without the
  ``Completion`` dataclass, its timestamps and the order request's journal round trip (a
  no-op in a backtest). A read of the positions answers their quantities only (all that is
  read of it), not marked to the book.
- **learning nobody reads yet.** A strategy that says it never reads the confidence model
  (``Strategy.reads_model = False``: the EMA cross and the Donchian example) gets ``None`` in
  ``ctx.model`` in every shell; here the model's lessons are checked when the trade closes
  (a bad one is counted ``model_rejected`` then, as always) and learnt when someone asks for
  the model (``Backtest.model_state``: the Ray split's tasks hand it on), not at each close.
- **callbacks that cannot answer.** A strategy that keeps the base class's ``on_fill`` (it
  returns nothing) is not called for each fill (the shell engine does the same for ``on_timer``).
- **a context per candle.** Each symbol's strategy gets the same context object on every
  candle (``StrategyRunner.reuse_context``: its clock, position, model and SMC labels set in
  place; the state dict, candle window and SMC state are the same objects as always).
- **making up skipped polls for a refused entry.** While a trade is open the shell's polls are
  skipped where they provably change nothing (``Backtest._can_skip``) and the last two are
  made up for before anything reaches the shell. An entry the rotation refuses outright needs
  none of them (``FastBacktest._act``); the per-bar test of that skipping is an interval of
  closes worked out once per idle stretch (``FastBacktest._can_skip``).
- **a lean bar.** The two commonest bars (flat and quiet; one watched trade open whose stop and
  target the bar does not reach) are written out (``FastBacktest.bar``), and the hourly poll of
  a flat account is left out where it provably changes nothing (``_flat_poll_idle``: the
  waiting balance is the broker's now and the equity already read, the kill switch and the
  trader's timer keep their state; never the first poll of a UTC day). With one symbol, a
  run of such bars is played in the bar loop itself (``FastBacktest._play``), what it leaves
  for the shell (clock, price, skipped polls) written once when it ends.

The parity tests (``tests/unit/research/test_backtest_engines.py``,
``tests/integration/test_backtest_parity.py``) run both engines on the repository's real bars
(the EMA cross, the Donchian example, the SMC strategy, a strategy that asks for everything,
two symbols, 20 symbols of a recorded run, fees, funding, kill switches, random settings) and
compare ``trades.csv`` and ``summary.json`` byte for byte.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Mapping, NamedTuple

from common import wire
from research import strategy_api as sa
from research.backtest import DAY_MS, MINUTE_MS, POLL_FLAT_MS, Backtest, BacktestConfig
from services.brain import execution, jobs, risk, trader, trader_entries
from venue import orders as om

_make_candle = sa.make_candle
_INF = math.inf


class _Done:
    """An answer of the lean dispatcher: the fields of ``dispatcher.Completion`` the shell reads."""

    __slots__ = ("tag", "priority", "key", "result", "error")

    def __init__(self, tag: Any, priority: int, key: str | None, result: Any, error: BaseException | None) -> None:
        self.tag, self.priority, self.key, self.result, self.error = tag, priority, key, result, error


class _Held(NamedTuple):
    """A position as a read of the positions is read here: its symbol and signed quantity (the
    shell's ``user_feed.apply_position_read`` and the backtest's idle test read nothing else)."""

    symbol: str
    qty: Decimal


class _LeanInline:
    """``research.bars_host.InlineJobs`` without the dataclass: each job runs when submitted, its
    answer waits for the next ``drain`` (the shell's ``poll``), in submission order. A read of
    the positions (``jobs.Positions``) is answered with their quantities alone (``quantities``:
    the paper broker's ``position_quantities``), not marked to the book."""

    inline = True

    def __init__(self) -> None:
        self.completed: list[_Done] = []
        self.dropped = 0
        self.quantities: Any = None

    def submit(self, priority: int, fn, *args: Any, tag: Any = "", key: str | None = None, **kwargs: Any) -> None:
        if type(tag) is jobs.Positions and self.quantities is not None:
            self.completed.append(_Done(tag, priority, key, [_Held(s, q) for s, q in self.quantities()], None))
            return
        try:
            result, error = fn(*args, **kwargs), None
        except Exception as exc:  # delivered, never lost: the shell decides what it means
            result, error = None, exc
        self.completed.append(_Done(tag or getattr(fn, "__name__", "job"), priority, key, result, error))

    def drain(self, max_items: int | None = None) -> list:
        if max_items is None or max_items >= len(self.completed):
            out, self.completed = self.completed, []
            return out
        out, self.completed = self.completed[:max_items], self.completed[max_items:]
        return out


_READ = (wire.Fill, wire.TradeClosed)  # what the backtest reads of the shell's publications


class _LeanExecution(execution.Execution):
    """The execution shell with what a backtest never reads left out (see the module's doc).
    ``poll``, the order life cycle and every decision are the inherited ones."""

    keep_requests = False  # ``keep_signals``: the order requests reach the backtest too
    one_symbol: str | None = None  # a backtest of one symbol: ``ctx`` is reused while nothing in it changed
    _ctx_key: tuple = ()
    _ctx_last: Any = None

    def ctx(self, symbols: tuple[str, ...] = ()) -> trader.Ctx:
        # the same Ctx the shell builds (quotes of the symbols concerned and the traded ones),
        # built again only when one of its inputs changed: the quote, the clock, the equity, the
        # phase, the filters (``blocked`` is the backtest's constant "", the brackets one dict)
        one = self.one_symbol
        if one is None:
            return super().ctx(symbols)
        for x in symbols:
            if x != one:
                return super().ctx(symbols)
        q = self.host.quote(one) if symbols or one in self.st.trades else None
        eq = self.equity
        k = self._ctx_key
        now = self.host.clock_ms()
        if (k and k[0] is q and k[1] == now and (k[2] == eq or (eq != eq and k[2] != k[2])) and k[3] is self.phase
                and k[4] == self.start_error and k[5] is self.filters):
            return self._ctx_last
        self._ctx_key, self._ctx_last = (q, now, eq, self.phase, self.start_error, self.filters), super().ctx(symbols)
        return self._ctx_last

    def _carry_out(self, actions: list[trader.Action]) -> None:
        # the shell's branches for its three commonest actions, the others through it
        for a in actions:
            kind = type(a)
            if kind is trader.Publish:
                if isinstance(a.body, _READ):
                    self.publish(a.body)
            elif kind is trader.Dispatch:
                self.dispatch(a.effect, a.symbol)
            elif kind is trader.NewOrder:
                self._new_order(a)
            else:
                super()._carry_out([a])

    def _new_order(self, a: trader.NewOrder) -> None:
        # the shell's replay-mode path (no intent log): the request is published and journaled
        # (a no-op here), then the order's state machine hears it is sent
        if self.intents is not None:
            super()._new_order(a)
            return
        if self.keep_requests:
            self.publish(a.request)
        self._event(a.order.client_order_id, om.Send(at_ms=self.host.clock_ms()))

    def _event(self, cid: str, event: Any, fill: Any = None) -> None:
        # an order's closing status read (``_submitted``: Ack, fills, then the status) that the
        # order's state machine answers with the very same record and no effect: the trader would
        # store that same record again (``trader_fills.on_order_event``: nothing published, no
        # order ended) and the shell do nothing with it
        if fill is None and type(event) is om.QueryResult:
            o = self.st.orders.get(cid)
            if o is not None and o.is_terminal:
                new, effects = om.apply(o, event)
                if new is o and not effects:
                    return
        super()._event(cid, event, fill)

    def _completion(self, c: Any) -> None:
        tag = c.tag
        kind = type(tag)
        if c.error is None and self.ready:
            if kind is jobs.Positions and self._positions_agree(c.result, tag.at_ms):
                return
            if kind is jobs.AlgoAudit and not c.result and not self.st.algos and not self.cfg.exchange_protection:
                return  # ``trader_exchange.on_open_algos`` of nothing, with nothing to arm: no change
            if kind is jobs.FundingIncome and not c.result:
                self.funding.in_flight = False  # ``funding_feed.done`` of no rows: only this changes
                return
        super()._completion(c)

    def _positions_agree(self, positions: Any, sent_ms: int) -> bool:
        """Every trade the read applies to (``user_feed.apply_position_read``) is held at the
        exchange: ``trader_exchange.on_exchange_position`` then changes nothing."""
        trades = self.st.trades
        if not trades:
            return True
        held = {p.symbol: p.qty for p in positions}
        return all(t.first_fill_ms > sent_ms or held.get(sym) for sym, t in trades.items())


class FastBacktest(Backtest):
    """``Backtest`` on the lean shell, with the lean bar loop (see the module's doc)."""

    execution_cls = _LeanExecution
    dispatcher_cls = _LeanInline
    _hears_fills = True  # until the strategy is known

    def __init__(self, cfg: BacktestConfig, *, keep_signals: bool = False) -> None:
        self._model_state: Any = None
        self._unlearnt: list[tuple[Mapping[str, float], float]] = []
        super().__init__(cfg, keep_signals=keep_signals)
        self.ex.keep_requests = keep_signals
        self.ex.dispatcher.quantities = self.broker.position_quantities
        self.ex.one_symbol = cfg.symbols[0] if len(cfg.symbols) == 1 else None
        self.runner.reuse_context = True
        self._hears_fills = type(self.strategy).on_fill is not sa.Strategy.on_fill
        self._band: tuple = (None, None, math.inf, -math.inf)  # (risk state, idle, lowest, highest quiet close)
        self._reads_model = self.runner.reads_model
        self._steps: dict[str, Any] = {}  # symbol -> its ``StrategyRunner.candle_step``

    # ------------------------------------------------------------------ the bar loop
    def _play(self, rows: Any) -> None:
        """``Backtest._play`` with the quiet stretches of one symbol's bars written out.

        A stretch is a run of bars that ``bar`` would play by its lean cases and that nothing in
        the shell reads: flat and quiet (not an hourly bar), or one watched trade whose stop and
        target the bar does not reach and whose poll is skipped (the previous one was skipped
        too, its close was quiet, the same UTC day). What such a bar leaves for the shell (the
        clock, the price and mark, the polls it skipped) is written once, when the stretch ends
        (``_stretch_end``): before any other bar, funding or intent. What holds for all of it
        is worked out once (``_stretch``); a flat stretch is a held one whose stop and target
        are infinitely far and whose every close is quiet. Written out because it runs once
        per bar (issue #18): the same steps as ``bar``, in the same order."""
        if len(self.cfg.symbols) != 1:
            super()._play(rows)
            return
        symbol = self.cfg.symbols[0]
        bar, make = self.bar, _make_candle
        step = self._steps.get(symbol) or self._step(symbol)
        next_f = self._next_settlement()
        quiet, n, now, lc, lt, pc, pt = False, 0, 0, 0.0, 0, 0.0, 0
        position = model = None
        held, bottom, top, day_lo, day_hi, q_lo, q_hi = False, -_INF, _INF, -_INF, _INF, -_INF, _INF
        for sym, t_ms, o, h, low, c, v in rows:
            close_ms = t_ms + MINUTE_MS
            at = close_ms if close_ms > now else now
            if (quiet and t_ms < next_f and 0 < low <= o <= h < _INF and low <= c <= h and -_INF < v < _INF
                    and bottom < low and h < top and (held or t_ms % POLL_FLAT_MS) and day_lo <= at < day_hi):
                now, n, pc, pt, lc, lt = at, n + 1, lc, lt, c, at
                quiet = q_lo < c < q_hi  # this close's balance, drained by the next poll
                candle = make(sym, 60, t_ms, close_ms, o, h, low, c, v)
                intents = step(candle, position, model)
                if not intents or self._in_warmup(close_ms, intents):
                    continue
                self._stretch_end(sym, n, held, lc, lt, pc, pt, quiet)
                n = 0
                self._act(sym, intents, candle)
            else:
                if n:
                    self._stretch_end(sym, n, held, lc, lt, pc, pt, quiet)
                    n = 0
                if t_ms >= next_f:
                    next_f = self._settle(t_ms)
                bar(sym, t_ms, o, h, low, c, v)
            stretch = self._stretch(symbol)
            quiet = stretch is not None
            if quiet:
                position, model, held, bottom, top, day_lo, day_hi, q_lo, q_hi, quiet = stretch
                now = self.now_ms
        if n:
            self._stretch_end(symbol, n, held, lc, lt, pc, pt, quiet)

    def _stretch(self, symbol: str) -> tuple | None:
        """Whether the next bars may be a quiet stretch (``_play``), and what its bars read: (the
        position the strategy gets, the model, whether a trade is held, the levels a bar's low
        must stay above and its high below to reach neither its stop nor its target, the clocks
        of the kill switch's UTC day, the quiet closes (``_quiet_closes``), and whether the last
        skipped poll's close was quiet). None: the next bar goes through ``bar``."""
        ex = self.ex
        st = ex.st
        if st.pending or ex.delayed or self._timer:
            return None
        if st.trades.get(symbol) is not self._pos_of[0]:
            self._view(st.trades.get(symbol))
        trade, pos, watch = self._pos_of
        if not st.trades:
            if self._lagged:
                return None
            return None, self._model_state, False, -_INF, _INF, -_INF, _INF, -_INF, _INF, True
        if trade is None or watch is None or not self._skip or not self._lagged or self._idle is None:
            return None
        d, stop, target = watch
        risk = st.risk
        band = self._band
        if band[0] is not risk or band[1] is not self._idle:
            band = self._band = (risk, self._idle, *self._quiet_closes(risk, self._idle))
        day = risk.day_index * DAY_MS
        return (pos, self._model_state, True, *((stop, target) if d > 0 else (target, stop)), day, day + DAY_MS,
                band[2], band[3], self._next_quiet)

    def _stretch_end(self, symbol: str, n: int, held: bool, close: float, at_ms: int, prev_close: float,
                     prev_ms: int, quiet: bool) -> None:
        """What the ``n`` bars of a quiet stretch leave for the shell, as ``bar`` would have left
        it: the clock and the symbol's price and mark at the last close; with a trade held, the
        polls skipped (the last two, at their clocks and closes) and whether the last was quiet."""
        self.counts["candles"] += n
        self.now_ms = at_ms
        self._px[symbol] = (close, at_ms)
        self.books.pop(symbol, None)
        self.marks[symbol] = close
        if held:
            self.polls_skipped += n
            lagged = self._lagged
            if n > 1:
                lagged.append((symbol, prev_close, prev_ms))
            lagged.append((symbol, close, at_ms))
            del lagged[:-2]
            self._next_quiet = quiet

    def bar(self, symbol: str, open_ms: int, o: float, h: float, low: float, c: float, v: float) -> None:
        """``Backtest.bar`` with its two commonest cases written out, the same steps without
        the shell engine's look-ups that cannot change there; any other bar goes the shell
        engine's way (``Backtest.bar``). Both need a valid bar, no pending entry, no delayed
        query and no ``on_timer``; the view of the symbol's trade is brought up to date first,
        as ``Backtest.bar`` does (so the bars right after an entry or an exit qualify too).

        - flat and quiet (no trade, no skipped poll to make up, not an hourly poll that must
          run: ``_flat_poll_idle``): no stop or target to check, no poll; the price is set and
          the strategy called with no position;
        - one trade open, watched (its stop and target known, no exit on the way), whose stop
          and target the bar does not reach, with idle skipping on: the price is set, the poll
          skipped (``_can_skip``) or run as the shell engine runs it, and the strategy called
          with the trade's position (the same view object while the trade is the same)."""
        ex = self.ex
        st = ex.st
        close_ms = open_ms + MINUTE_MS
        if (st.pending or ex.delayed or self._timer
                or not (0 < low <= o <= h < _INF and low <= c <= h and -_INF < v < _INF)):
            Backtest.bar(self, symbol, open_ms, o, h, low, c, v)
            return
        pos_of = self._pos_of
        trade = pos_of[0]
        held = st.trades.get(symbol)
        if held is not trade:  # ``Backtest.bar``'s first step: the view of this symbol's trade as it is
            self._view(held)
            pos_of, trade = self._pos_of, held
        if st.trades:
            watch = pos_of[2]
            if (trade is None or watch is None or not self._skip
                    or ((low <= watch[1] or h >= watch[2]) if watch[0] > 0 else (h >= watch[1] or low <= watch[2]))):
                Backtest.bar(self, symbol, open_ms, o, h, low, c, v)
                return
        elif (self._lagged  # (flat: the view, brought up to date above, is of no trade)
              or (not open_ms % POLL_FLAT_MS and not self._flat_poll_idle(max(close_ms, self.now_ms)))):
            Backtest.bar(self, symbol, open_ms, o, h, low, c, v)
            return
        self.counts["candles"] += 1
        if close_ms > self.now_ms:
            self.now_ms = close_ms
        self._px[symbol] = (c, self.now_ms)
        self.books.pop(symbol, None)
        self.marks[symbol] = c
        pos = None
        if trade is not None:  # the trade's bar: its poll, skipped or run
            if self._can_skip(symbol, c):
                lagged = self._lagged
                lagged.append((symbol, c, self.now_ms))
                if len(lagged) > 2:
                    del lagged[0]
                self.polls_skipped += 1
                pos = pos_of[1]  # nothing ran: the trade is the one viewed
            else:
                if self._lagged:
                    self._catch_up()
                ex.poll()
                self._fills_to_strategy()
                now = self.ex.st.trades.get(symbol)
                if now is not self._pos_of[0]:
                    self._view(now)
                pos = self._pos_of[1]
        candle = _make_candle(symbol, 60, open_ms, close_ms, o, h, low, c, v)
        intents = (self._steps.get(symbol) or self._step(symbol))(candle, pos, self._model_state)
        if intents and not self._in_warmup(close_ms, intents):
            self._act(symbol, intents, candle)

    def _step(self, symbol: str) -> Any:
        """The strategy's ``on_candle`` for ``symbol`` (``StrategyRunner.candle_step``), made once."""
        step = self._steps[symbol] = self.runner.candle_step(symbol)
        return step

    def _flat_poll_idle(self, at_ms: int) -> bool:
        """Whether the hourly poll of a flat account (``Backtest.bar``) at ``at_ms`` provably
        changes nothing, so that it can be left out (counted in ``polls_skipped``).

        Flat and quiet (no trade, entry, order, protective order, delayed query, unjournaled
        order, symbol still to set up, funding read), that poll drains the one answer waiting,
        the balance the previous poll asked for, and asks for it again. It is left out only
        when that waiting balance is the broker's balance now, field for field (a flat account's
        balance is its wallet: no position to mark, no order holding margin), the kill switch
        keeps the very same state for that equity at this clock (``risk.update_equity``: the
        same UTC day, no new peak, no trip) and the trader's timer changes nothing
        (``trader.on_timer``). Then the next poll drains an equal balance and every timer of
        the shell fires there as it would have (all their periods are at most a bar:
        ``Backtest._skip``). Anything else: the poll runs."""
        ex = self.ex
        st = ex.st
        if (not self._skip or not ex.ready or ex.journal_unseen or ex.user_stream is not None or st.algos or st.orders
                or ex.configuring or any(s not in ex.configured for s in self.cfg.symbols)):
            return False
        link = ex.funding
        if link.in_flight or link.asks or link.next_poll_s:
            return False
        queued = ex.dispatcher.completed
        if len(queued) != 1 or type(queued[0].tag) is not jobs.Balance or queued[0].error is not None:
            return False
        equity = float(queued[0].result.equity)
        if queued[0].result != self.broker.balance() or equity != ex.equity:
            return False  # (the drain sets ``ex.equity``, which the next entry's sizing reads)
        if at_ms // DAY_MS != st.risk.day_index:
            return False
        if risk.update_equity(ex.cfg.risk, st.risk, equity, at_ms) is not st.risk:
            return False
        now = self.now_ms
        self.now_ms = at_ms  # the timer reads the clock of the poll it stands for
        try:
            after, actions = trader.on_timer(ex.cfg, st, ex.ctx())
        finally:
            self.now_ms = now
        if after is not st or actions:
            return False
        self.polls_skipped += 1
        return True

    # ------------------------------------------------------------------ fills
    def publish(self, body: Any, journal: bool = True) -> None:
        # a strategy that keeps the base class's on_fill returns nothing from it: not called
        if type(body) is wire.Fill and not self._hears_fills:
            return
        super().publish(body, journal)

    # ------------------------------------------------------------------ idle skipping, per bar
    def _can_skip(self, symbol: str, close: float) -> bool:
        """``Backtest._can_skip`` with the quiet test as an interval of closes, worked out once
        per idle stretch and kill-switch state: the closes whose balance (``_idle``'s estimate,
        give or take its error) is below the peak and away from both limits, narrowed by a
        margin far above the floating-point error of either test. A close near an edge counts
        as not quiet: the next bar's poll then runs, which changes no decision (the polls skipped
        or run give the same output; ``test_backtest_skip_idle``)."""
        if not self._idle_gate(symbol):
            return False
        risk = self.ex.st.risk
        band = self._band
        if band[0] is not risk or band[1] is not self._idle:
            band = self._band = (risk, self._idle, *self._quiet_closes(risk, self._idle))
        self._next_quiet = band[2] < close < band[3]
        return True

    def _quiet_closes(self, r: Any, idle: tuple[float, float, float, float]) -> tuple[float, float]:
        """(lowest, highest) close, both excluded, whose balance ``_quiet`` surely calls quiet."""
        e_ref, px_ref, q, err = idle
        rc = self.ex.cfg.risk
        peak = r.peak_equity_usdt
        hi = peak - err  # the balance plus its error at most the peak
        lo = -math.inf
        if not r.halted:  # the balance minus its error above the daily-loss and drawdown limits
            lo = r.day_start_equity_usdt - rc.daily_loss_limit_usdt + err
            if peak > 0:
                lo = max(lo, peak - peak * rc.max_drawdown_pct / 100.0 + err)
        margin = 1e-9 * (abs(e_ref) + abs(peak) + abs(r.day_start_equity_usdt) + 1.0)
        lo, hi = lo + margin, hi - margin
        if not lo < hi:
            return math.inf, -math.inf
        if q > 0:
            return px_ref + (lo - e_ref) / q, px_ref + (hi - e_ref) / q
        if q < 0:
            return px_ref + (hi - e_ref) / q, px_ref + (lo - e_ref) / q
        return (-math.inf, math.inf) if lo < e_ref < hi else (math.inf, -math.inf)

    # ------------------------------------------------------------------ refused signals while idle
    def _act(self, symbol: str, intents: list, candle: Any) -> None:
        """Entries the trader refuses outright while the shell's polls are skipped.

        The shell engine makes up the skipped polls (``_catch_up``), hands the signal to the
        trader, then polls once more at the same clock (that poll drains what this bar's poll
        asked and asks nothing: its timers ran at this clock already). A signal the trader
        refuses outright (the rotation's skips: no free slot, the symbol taken, the cooldown; a
        duplicate signal) changes nothing but the trader's counters, whatever the account's
        equity: the rotation reads the positions, their marks and the last actions, never the
        equity (a refusal that depends on it, or anything else, comes with an action). Such a
        refusal is found on the state as it is, and the poll after it joins the skipped ones (the
        last two are made up for at their clock before anything else reaches the shell, the
        earlier ones are asked again by those, as for any skipped poll). Any other outcome: the
        shell engine's way (make up the polls, then the signal)."""
        if not self._lagged or self.deferred_fills or any(type(it) is not sa.Enter for it in intents):
            super()._act(symbol, intents, candle)
            return
        ex = self.ex
        for n, it in enumerate(intents):
            sig = self.runner.signal(candle, it)
            if sig is None:
                continue
            if sig.symbol in ex.configured:
                st, actions = trader_entries.on_signal(ex.cfg, ex.st, sig, ex.ctx((sig.symbol,)))
                if not actions and st.risk is ex.st.risk:
                    self.counts["signals"] += 1
                    if self.keep_signals:
                        self.signals.append(sig)
                    ex.st = st
                    self._lagged.append((symbol, candle.close, self.now_ms))  # the poll after it
                    if len(self._lagged) > 2:
                        del self._lagged[0]
                    continue
            # not refused outright: the shell engine's way for this signal and the rest
            self._catch_up()
            self._fills_to_strategy()
            self._signal(sig)
            self._intents(symbol, intents[n + 1:], candle)
            return

    # ------------------------------------------------------------------ the model, learnt late
    @property
    def model_state(self) -> Any:
        if self._unlearnt:
            pending, self._unlearnt = self._unlearnt, []
            st = self._model_state
            for features, r in pending:
                st = self._model.learn(st, features, r)
            self._model_state = st
        return self._model_state

    @model_state.setter
    def model_state(self, value: Any) -> None:
        self._model_state = value
        self._unlearnt = []

    def learn(self, features: Mapping[str, float], outcome_r: float) -> None:
        if self._reads_model:
            super().learn(features, outcome_r)
            return
        try:
            self._model.learn_input(features, outcome_r)
        except self._model.ModelInputError:
            self.counts["model_rejected"] += 1
            return
        self._unlearnt.append((features, outcome_r))

    def model_outcomes(self) -> int:
        return self._model_state.n_seen + len(self._unlearnt)

    def _strategy_model(self) -> Any:
        # nothing waits to be learnt unless the strategy never reads the model (the runner
        # then hands it None): this is the model as it is now, without learning anything
        return self._model_state
