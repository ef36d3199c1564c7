"""``aegis backtest``: a strategy over the catalog's 1-minute bars, through the live code.

Event-driven and deterministic. The bars of every symbol are streamed in time order from
the catalog (``research.catalog.iter_bars``: bounded memory, however long the range); each
one is, in this order:

1. **Inside the bar** (only for a symbol with an open trade): the stop and the target are
   checked against the bar's low and high with the worst case first: when the bar reaches
   both, the stop is taken (the order of prices inside a 1m bar is unknown). The exit is the
   trader's own (``trader_exits.on_prices``: a reduce-only market order), filled by the paper
   broker at a book placed at the level, or at the bar's open when the bar opened beyond it
   (a gap: the price the market gave).
2. **At the close**: the book and the mark move to the close; the bar becomes a closed base
   candle for the strategy (``research.strategy_api``); its ``Enter`` intents become the
   ``SignalGenerated`` the brain would publish, and go to the live execution shell
   (``services.brain.execution.Execution`` in the same inline, clock-driven set-up as replay
   mode) with its rotation, risk checks, sizing and order life cycle; ``Exit`` goes to the
   trader's exit; ``MoveStop``/``MoveTarget`` move the trade's stop or target through the
   trader as in paper and live (``trader.move_level``: a level the close has passed is
   refused and counted ``move_refused:STOP``/``:TARGET`` in ``trader_counters``; moves are
   counted ``moves:STOP``/``:TARGET``); the moved level is what step 1 checks from the next
   bar on. ``Cancel`` is the trader's ``cancel_entry`` (entries never rest here: counted
   ``cancel_nothing_resting``).
3. **Funding**: at each settlement of the catalog's ``fundingRate`` (if the catalog has it),
   every open position pays ``qty * mark * rate`` (a long pays a positive rate), the mark
   being the last close; it is booked on the trade (``funding`` column) and in the summary's
   net PnL. The paper broker's wallet does not see it (sizing uses equity before funding).

Fills: the paper broker (``venue.paper``, its matching rules the shared core ``venue.fills``
that the local exchange uses too), the same code paper and replay modes trade with, against a synthetic book: bid at the price (on the
tick grid), ask one tick above, depth large enough for one level, plus the configured
slippage (``trading.paper_slippage_bps``) and taker fee (``trading.taker_fee_rate``).
The exchange-held protective orders are off (``exchange_protection = false``): the brain's own
price watch (step 1) closes trades, as it does first in live trading.

Base candles: the catalog's 1m klines are the brain's 1m candles (the brain builds the same
OHLCV from trades; ``services/brain/candles.py``). A strategy's higher timeframes are built
by the strategy from them (the SMC strategy does so). Only ``brain.candle_interval_s = 60``.

Idle skipping (``BacktestConfig.skip_idle``, on by default; ``--no-skip-idle``): on a bar with
a trade open and nothing in play (no order, exit, retry or rotation entry; the stop and the
target not reached; no intent from the strategy) the shell's poll is skipped when the balance
it would read, marked to the previous close, provably leaves the kill switch as it is (same UTC
day, no new peak, no daily-loss or drawdown trip; bounded from one exact read and the
position's size). The skipped polls are made up for, at their own clock and prices, before
anything else reaches the shell, so the decisions and the output are those of a run without
skipping (``tests/unit/research/test_backtest_skip_idle.py``). Only for one symbol, and only
while every timer of the shell fires at every bar (periods of at most a minute).

Output in ``--out``: ``trades.csv``, ``summary.json``, ``report.html`` (``research.backtest_files``).

Two engines (``BacktestConfig.engine``, ``aegis backtest --engine``): ``Backtest`` here, the
shell engine (the execution shell with every message and answer, as replay mode runs it), and
``research.fast_backtest.FastBacktest``, the default: the same run without what a backtest never
reads, byte-identical output (``tests/unit/research/test_backtest_engines.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from itertools import repeat
from pathlib import Path
from typing import Any, Mapping

import structlog

from common import config as config_mod
from common import wire
from common.config import AegisConfig
from common.errors import ConfigError
from common.fastcopy import build
from research import strategy_api as sa
from research.bars_host import BarsHost, InlineJobs
from research.catalog import iter_bars, read_funding
from research.metrics import run_figures
from venue.filters import generic_filters, round_price

log = structlog.get_logger(__name__)
_make_candle = sa.make_candle

DAY_MS = 86_400_000
MINUTE_MS = 60_000
POLL_FLAT_MS = 3_600_000
BOOK_QTY = Decimal(10) ** 12  # one level deep enough for any order
KLINE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume"]


@dataclass(frozen=True, kw_only=True)
class BacktestConfig:
    catalog: Path
    symbols: tuple[str, ...]
    start_ms: int
    end_ms: int
    strategy: str = "smc"
    params: Mapping[str, Any] = field(default_factory=dict)
    aegis: AegisConfig = field(default_factory=AegisConfig)  # trading.* (risk, rotation, fees, balance)
    exchange_info: str = ""  # exchangeInfo JSON with the symbols' filters ("" = generic filters)
    batch_rows: int = 65_536
    # bars that close at or before this time only warm the strategy (its Enter intents are
    # counted as ``warmup_signals``, never traded), as the live brain warms from its history
    trade_from_ms: int = 0
    # skip the execution shell's timers on the bars where they provably change nothing
    # (``Backtest._can_skip``); off: every bar goes through them (the same trades, slower)
    skip_idle: bool = True
    # "fast" (``research.fast_backtest.FastBacktest``) or "shell" (``Backtest``: the execution
    # shell with every message and answer, as replay mode runs it); the same trades and summary
    engine: str = "fast"

    def __post_init__(self) -> None:
        if self.engine not in ("fast", "shell"):
            raise ConfigError(f"backtest: engine must be 'fast' or 'shell', not {self.engine!r}")
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ConfigError(f"backtest needs distinct symbols, got {self.symbols}")
        if not self.end_ms > self.start_ms:
            raise ConfigError("backtest: --to must be after --from")
        if self.aegis.brain.candle_interval_s != 60:
            raise ConfigError("backtest: only brain.candle_interval_s = 60 (the catalog's 1m bars) is supported")


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


class Backtest(BarsHost):
    """One run: the live execution shell with the paper broker, driven by the bars' clock.
    ``keep_signals``: keep every signal sent to the trader in ``self.signals`` and every order
    request in ``self.orders`` (the decisions the look-ahead and parity tests compare)."""

    # the shell the bars drive and its dispatcher (``research.fast_backtest`` swaps in leaner ones)
    execution_cls: Any = None  # None: ``services.brain.execution.Execution``
    dispatcher_cls: Any = InlineJobs

    def __init__(self, cfg: BacktestConfig, *, keep_signals: bool = False) -> None:
        from services.brain import execution, model, trader, trader_entries

        if self.execution_cls is None:
            self.execution_cls = execution.Execution
        from services.brain.config import trader_config
        from venue.filters import load_filters
        from venue.paper import BookTop, PaperBroker, PaperConfig

        self.cfg = cfg
        self._trader, self._model, self._book = trader, model, BookTop
        self._entry_prefix = trader_entries.ENTRY_PREFIX
        self.strategy = sa.load_section(config_mod.StrategySection(path=cfg.strategy, params=dict(cfg.params)))
        self.runner = sa.StrategyRunner(self.strategy)
        self.model_state = model.new_state(model.ModelConfig())
        t = cfg.aegis.trading
        if cfg.exchange_info:
            loaded = load_filters(cfg.exchange_info)
            missing = [s for s in cfg.symbols if s not in loaded]
            if missing:
                raise ConfigError(f"backtest: {cfg.exchange_info} has no filters for {missing}")
            self.filters = {s: loaded[s] for s in cfg.symbols}
        else:
            self.filters = {s: generic_filters(s) for s in cfg.symbols}  # --exchange-info: the real ones
        self.now_ms = cfg.start_ms
        self.books: dict[str, Any] = {}  # built from ``_px`` when the broker asks (``_book_of``)
        self._px: dict[str, tuple[float, int]] = {}  # symbol -> (last price, time it was set)
        self.marks: dict[str, float] = {}
        from services.brain.risk import Quote

        self._Quote, self._quotes = Quote, {}
        pcfg = PaperConfig(taker_fee_rate=_dec(t.taker_fee_rate), maker_fee_rate=_dec(t.maker_fee_rate),
                           slippage_bps=_dec(t.paper_slippage_bps), latency_ms=0.0,
                           starting_balance=_dec(t.paper_balance_usdt), leverage=t.leverage,
                           log_orders=False)  # a line per order costs more than the order here
        self.broker = PaperBroker(pcfg, book=self._book_of, clock_ms=lambda: self.now_ms, sleep=lambda s: None,
                                  filters=self.filters)
        tcfg = replace(trader_config(cfg.aegis), exchange_protection=False)
        self.ex = self.execution_cls(  # this run is the shell's host (``BarsHost``)
            cfg=tcfg, broker=self.broker, dispatcher=self.dispatcher_cls(), host=self,
            db_path=Path("/nonexistent/aegis-backtest.db"), balance_poll_s=t.balance_poll_s, user_stream=None)
        self.trades: list[dict[str, Any]] = []
        self.deferred_fills: list[tuple[str, sa.FillView]] = []
        self.funding_open: dict[str, float] = {}  # trade id -> funding paid so far
        self.counts = {"candles": 0, "signals": 0, "intents_unsupported": 0, "funding_events": 0,
                       "bad_bars": 0, "model_rejected": 0, "warmup_signals": 0}
        self.keep_signals = keep_signals
        self.signals: list[wire.SignalGenerated] = []
        self.orders: list[wire.OrderRequest] = []  # with keep_signals: every order request sent
        # a strategy that keeps the base class's on_timer returns nothing from it: not called
        self._timer = type(self.strategy).on_timer is not sa.Strategy.on_timer
        self.equity_curve: list[tuple[int, float]] = []  # (closed ms, balance + funding) per closed trade
        self.daily: dict[int, float] = {}  # UTC day -> equity at its last closed trade
        # idle skipping (``_can_skip``): only where every timer of the shell fires at every bar
        # (periods <= one bar) and one symbol moves the clock (its bars are >= 1 minute apart)
        from services.brain import execution_timers, funding_feed

        self._skip = cfg.skip_idle and len(cfg.symbols) == 1 and max(
            t.balance_poll_s, self.ex.position_poll_s, self.ex.algo_audit_s, funding_feed.POLL_S,
            execution_timers.TIMER_PERIOD_S) <= MINUTE_MS / 1000
        self._lagged: list[tuple[str, float, int]] = []  # (symbol, close, close ms) of the last 2 skipped polls
        self._idle: tuple[float, float, float, float] | None = None  # (equity, its price, signed qty, error)
        self._next_quiet = False  # the balance the last skipped poll would have read changes nothing
        self.polls_skipped = 0
        # (trade, its PositionView, (direction, stop, target) while its stop and target are
        # watched): built once per state of the trade (the trader replaces a changed trade)
        self._pos_of: tuple[Any, Any, Any] = (None, None, None)
        self._funding_rows: tuple[list, list, list] = ([], [], [])  # (symbol, time, rate) per settlement
        self._funding_at = 0  # the next settlement's index

    # ------------------------------------------------------------------ the shell's host
    # (``BarsHost`` has the rest): fills and closed trades come back here, quotes and lessons
    def publish(self, body: Any, journal: bool = True) -> None:
        if isinstance(body, wire.TradeClosed):
            self._closed(body)
        elif isinstance(body, wire.Fill):
            entry = body.client_order_id.startswith(self._entry_prefix + "-")
            fill = sa.FillView(side=body.side, qty=body.qty, price=body.price, fee=body.fee, time_ms=self.now_ms,
                               entry=entry)
            # the strategy hears of it once the trader's current step is done (never re-entrant)
            self.deferred_fills.append((body.symbol, fill))
        elif isinstance(body, wire.OrderRequest) and self.keep_signals:
            self.orders.append(body)

    def quote(self, symbol: str):
        # the shell asks several times per step: one Quote per (mark, clock), the same values
        m = self.marks.get(symbol)
        if not m:
            return None
        q = self._quotes.get(symbol)
        if q is None or q.mark_price != m or q.updated_ms != self.now_ms:
            q = self._quotes[symbol] = self._Quote(mark_price=m, updated_ms=self.now_ms)
        return q

    def learn(self, features: Mapping[str, float], outcome_r: float) -> None:
        try:
            self.model_state = self._model.learn(self.model_state, features, outcome_r)
        except self._model.ModelInputError:  # a strategy whose features are not the model's
            self.counts["model_rejected"] += 1

    def _strategy_model(self) -> Any:
        """The confidence model as the strategy's callbacks get it."""
        return self.model_state

    def model_outcomes(self) -> int:
        """How many closed trades the confidence model has learnt from."""
        return self.model_state.n_seen

    def _set_price(self, symbol: str, price: float) -> None:
        # the book itself (Decimals on the tick grid) is built only if the broker reads it
        self._px[symbol] = (price, self.now_ms)
        self.books.pop(symbol, None)
        self.marks[symbol] = price

    def _book_of(self, symbol: str):
        book = self.books.get(symbol)
        if book is None and symbol in self._px:
            price, time_ms = self._px[symbol]
            tick = self.filters[symbol].tick_size
            bid = round_price(_dec(price), tick, "SELL")
            if bid <= 0:
                bid = tick
            # ``BookTop(...)``, the same record made without its generated __init__ (``fastcopy.build``)
            book = self.books[symbol] = build(self._book, bid=bid, bid_qty=BOOK_QTY, ask=bid + tick,
                                              ask_qty=BOOK_QTY, time_ms=time_ms)
        return book

    # ------------------------------------------------------------------ events
    def start(self) -> None:
        for _ in range(5):
            self.ex.poll()
            if self.ex.ready:
                return
        raise ConfigError(f"backtest: the execution shell did not start: {self.ex.start_error}")

    def _closed(self, b: wire.TradeClosed) -> None:
        funding = self.funding_open.pop(b.trade_id, 0.0)
        net = b.pnl - b.fees - funding
        self.trades.append({"trade_id": b.trade_id, "symbol": b.symbol, "side": b.side, "qty": b.qty,
                            "entry_price": b.entry_price, "exit_price": b.exit_price, "stop": b.stop,
                            "target": b.target, "opened_ms": b.opened_ms, "closed_ms": b.closed_ms,
                            "exit_reason": b.exit_reason, "pnl": b.pnl, "fees": b.fees, "funding": funding,
                            "net_pnl": net, "outcome_r": b.outcome_r, "confidence": b.confidence})
        start = self.equity_curve[-1][1] if self.equity_curve else float(self.cfg.aegis.trading.paper_balance_usdt)
        eq = start + net
        self.equity_curve.append((b.closed_ms, eq))
        self.daily[b.closed_ms // DAY_MS] = eq

    def bar(self, symbol: str, open_ms: int, o: float, h: float, low: float, c: float, v: float) -> None:
        # NaN fails every comparison; an infinite price fails ``h < inf``; volume: finite
        if not (0 < low <= o <= h < math.inf and low <= c <= h and -math.inf < v < math.inf):
            self.counts["bad_bars"] += 1
            return
        self.counts["candles"] += 1
        st = self.ex.st
        trade = st.trades.get(symbol)
        if trade is not self._pos_of[0]:
            self._view(trade)
        watch = self._pos_of[2]
        if watch is not None:  # the stop and target of the open trade inside the bar (``_inside``)
            d, stop, target = watch
            if (low <= stop or h >= target) if d > 0 else (h >= stop or low <= target):
                if open_ms > self.now_ms:
                    self.now_ms = open_ms
                self._inside(trade, o, h, low)
                st = self.ex.st
        close_ms = open_ms + MINUTE_MS
        if close_ms > self.now_ms:
            self.now_ms = close_ms
        self._px[symbol] = (c, self.now_ms)  # ``_set_price``, written out (once per bar)
        self.books.pop(symbol, None)
        self.marks[symbol] = c
        # the shell's timers (balance, positions, retries) while anything is in play; when
        # flat, once an hour of bars (the balance for sizing does not change while flat)
        if st.trades or st.pending or self.ex.delayed or open_ms % POLL_FLAT_MS == 0:
            if self._skip and st.trades and self._can_skip(symbol, c):
                lagged = self._lagged
                lagged.append((symbol, c, self.now_ms))
                if len(lagged) > 2:
                    del lagged[0]
                self.polls_skipped += 1
            else:
                if self._lagged:
                    self._catch_up()
                self.ex.poll()
                self._fills_to_strategy()
        candle = _make_candle(symbol, 60, open_ms, close_ms, o, h, low, c, v)
        trade = self.ex.st.trades.get(symbol)
        if trade is not self._pos_of[0]:
            self._view(trade)
        pos = self._pos_of[1]
        model = self._strategy_model()
        intents = self.runner.on_candle(candle, position=pos, model=model)
        if self._timer:
            intents += self.runner.on_timer(symbol, close_ms, position=pos, model=model)
        if intents and not self._in_warmup(close_ms, intents):
            self._act(symbol, intents, candle)

    def _in_warmup(self, close_ms: int, intents: list) -> bool:
        """A bar closing at or before ``trade_from_ms`` is warm-up: the strategy learns, nothing
        trades, and its entries are counted (``warmup_signals``)."""
        warm = close_ms <= self.cfg.trade_from_ms
        if warm:
            self.counts["warmup_signals"] += sum(1 for it in intents if isinstance(it, sa.Enter))
        return warm

    def _act(self, symbol: str, intents: list, candle: sa.Candle) -> None:
        """A bar's intents to the shell (after the warm-up)."""
        if self._lagged:  # this bar's skipped poll first, as if it had run before the strategy
            self._catch_up()
            self._fills_to_strategy()
        self._intents(symbol, intents, candle)

    def _view(self, trade: Any) -> None:
        watch = None
        if trade is not None and trade.position > 0 and not trade.exit_cid:
            watch = (trade.direction, trade.stop, trade.target)
        self._pos_of = (trade, sa.position_of(trade), watch)

    # ------------------------------------------------------------------ idle skipping
    # On a bar with a trade open the shell's poll drains what the previous poll asked the paper
    # broker (balance, positions, conditional orders, funding income), then asks again. With no
    # order, exit, retry or rotation entry in play, the only answer that can change anything is
    # the balance: equity marked to the close, fed to the kill switch (``risk.update_equity``:
    # the day's baseline, the peak, the daily-loss and drawdown trips). A bar's poll is skipped
    # when the equity the broker read at the previous close (bounded, from the equity read
    # once and the position's size) provably changes none of them and the UTC day is the
    # same. Before anything else reaches the shell the skipped polls are made up for
    # (``_catch_up``): the same calls at the same clock and prices, so the state is the one
    # of an unskipped run.
    def _quiet(self, lo: float, hi: float) -> bool:
        """Every equity in [lo, hi] leaves the kill switch's state as it is (``risk.update_equity``
        with the same day; its float operations are monotonic in the equity)."""
        r, rc = self.ex.st.risk, self.ex.cfg.risk
        if not hi <= r.peak_equity_usdt:
            return False
        if r.halted:
            return True
        if not r.day_start_equity_usdt - lo < rc.daily_loss_limit_usdt:
            return False
        peak = r.peak_equity_usdt
        return not peak > 0 or (peak - lo) / peak * 100.0 < rc.max_drawdown_pct

    def _can_skip(self, symbol: str, close: float) -> bool:
        """Whether this bar's poll (clock and price already at the close) can be skipped."""
        if not self._idle_gate(symbol):
            return False
        e_ref, px_ref, q, err = self._idle
        est = e_ref + q * (close - px_ref)
        self._next_quiet = self._quiet(est - err, est + err)  # this close's balance, drained by the next poll
        return True

    def _idle_gate(self, symbol: str) -> bool:
        """The half of ``_can_skip`` both engines share: the kill switch's day has not turned,
        and either the previous poll ran and the shell is idle (``_idle`` set now), or the
        previous skipped bar's close was quiet. The quiet test of this close is the engine's."""
        if self.now_ms // DAY_MS != self.ex.st.risk.day_index:
            return False
        if not self._lagged:  # the previous poll ran: look at the shell and at what it asked
            self._idle = self._enter_idle(symbol)
            return self._idle is not None
        return self._next_quiet

    def _enter_idle(self, symbol: str) -> tuple[float, float, float, float] | None:
        from services.brain import jobs

        ex, st = self.ex, self.ex.st
        if (not ex.ready or st.pending or ex.delayed or ex.journal_unseen or st.algos or self.deferred_fills
                or ex.user_stream is not None or any(s not in ex.configured for s in self.cfg.symbols)):
            return None
        for t in st.trades.values():
            if t.position <= 0 or t.exit_cid or t.exit_reason or t.flat_at_exchange_ms:
                return None
        if any(not o.is_terminal for o in st.orders.values()):
            return None
        queued = getattr(ex.dispatcher, "completed", None)  # ``InlineJobs``': what this bar's poll would drain
        if queued is None:
            return None
        held: dict[str, Any] = {}
        for c in queued:
            if c.error is not None:
                return None
            if isinstance(c.tag, jobs.Balance):
                e = float(c.result.equity)
                if not self._quiet(e, e):
                    return None
            elif isinstance(c.tag, jobs.Positions):
                held = {p.symbol: p.qty for p in c.result}
                if any(not held.get(s) for s in st.trades):
                    return None
            elif not isinstance(c.tag, (jobs.AlgoAudit, jobs.FundingIncome)) or list(c.result):
                return None
        # the equity the broker reads at this close; it moves with the mark by the position's size
        held_now = self.broker.position_quantities()  # ``positions()``'s (symbol, qty) without the marking
        if len(held_now) != 1 or held_now[0][0] != symbol or set(st.trades) != {symbol}:
            return None
        q = float(held_now[0][1])
        e_ref = float(self.broker.balance().equity)
        px = self._px[symbol][0]
        tick = float(self.filters[symbol].tick_size)
        # the broker's mark is the book's mid: within a tick of the price, here and at the reference
        err = 2 * abs(q) * tick + 1e-9 * (1 + abs(e_ref) + abs(q) * abs(px))
        return e_ref, px, q, err

    def _catch_up(self) -> None:
        """The skipped polls that matter: the last two, each at its own clock and price (the
        earlier ones changed nothing and are asked again by these); then back to now."""
        lagged, self._lagged = self._lagged, []
        symbol = lagged[-1][0]
        now, px, mark, book = self.now_ms, self._px.get(symbol), self.marks.get(symbol), self.books.get(symbol)
        for sym, close, at_ms in lagged:
            self.now_ms = at_ms
            self._set_price(sym, close)
            self.ex.poll()
        self.now_ms = now
        if px is not None:
            self._px[symbol] = px
            self.marks[symbol] = mark
        self.books.pop(symbol, None)
        if book is not None:
            self.books[symbol] = book

    def _inside(self, t: Any, o: float, h: float, low: float) -> None:
        """Stop and target inside the bar, the stop first (worst case)."""
        d = t.direction
        stop_hit = low <= t.stop if d > 0 else h >= t.stop
        target_hit = h >= t.target if d > 0 else low <= t.target
        if stop_hit:
            price = min(o, t.stop) if d > 0 else max(o, t.stop)
        elif target_hit:
            price = max(o, t.target) if d > 0 else min(o, t.target)
        else:
            return
        if self._lagged:
            self._catch_up()
        self._set_price(t.symbol, price)
        # the range handed to the trader is the level itself: it decides STOP or TARGET the same way
        self.ex.on_range(t.symbol, price, price)
        self.ex.poll()
        self._fills_to_strategy()

    def _fills_to_strategy(self) -> None:
        while self.deferred_fills:
            symbol, fill = self.deferred_fills.pop(0)
            pos = sa.position_of(self.ex.st.trades.get(symbol))
            self._intents(symbol, self.runner.on_fill(symbol, fill, position=pos, model=self._strategy_model()), None)

    def _intents(self, symbol: str, intents: list, candle: sa.Candle | None) -> None:
        for it in intents:
            if isinstance(it, sa.Enter) and candle is not None:
                sig = self.runner.signal(candle, it)
                if sig is not None:
                    self._signal(sig)
            elif isinstance(it, sa.Exit):
                ex = self.ex
                ex.apply(self._trader.request_exit(ex.cfg, ex.st, symbol, it.reason, ex.ctx((symbol,))))
                ex.poll()
                self._fills_to_strategy()
            elif isinstance(it, (sa.MoveStop, sa.MoveTarget)):
                # the brain's own call (``trader.move_level``, ``protection.move``): the plan's
                # level moves at once, a level the close has already passed is refused (counted
                # ``move_refused:<role>``); no exchange-held order to replace here
                # (``exchange_protection`` off), the next bars' stop/target check reads the new level
                ex = self.ex
                role = "STOP" if isinstance(it, sa.MoveStop) else "TARGET"
                ex.apply(self._trader.move_level(ex.cfg, ex.st, symbol, role, it.price, ex.ctx((symbol,))))
            elif isinstance(it, sa.Cancel):
                ex = self.ex
                ex.apply(self._trader.cancel_entry(ex.cfg, ex.st, symbol, ex.ctx((symbol,))))
            else:
                self.counts["intents_unsupported"] += 1

    def _signal(self, sig: wire.SignalGenerated) -> None:
        """An entry signal to the shell, then its poll and the fills it brought."""
        self.counts["signals"] += 1
        if self.keep_signals:
            self.signals.append(sig)
        self.ex.on_signal(sig)
        self.ex.poll()
        self._fills_to_strategy()

    def funding(self, symbol: str, rate: float) -> None:
        t = self.ex.st.trades.get(symbol)
        mark = self.marks.get(symbol)
        if t is None or t.position <= 0 or not mark or not math.isfinite(rate):
            return
        self.counts["funding_events"] += 1
        self.funding_open[t.trade_id] = self.funding_open.get(t.trade_id, 0.0) + \
            float(t.position) * t.direction * mark * rate

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.start()
        symbols = list(cfg.symbols)
        fund = read_funding(cfg.catalog, symbols, cfg.start_ms, cfg.end_ms)
        f_sym = [symbols[i] for i in fund.column("symbol").combine_chunks().indices.to_pylist()] if fund.num_rows else []
        f_time = fund.column("calc_time").to_pylist() if fund.num_rows else []
        f_rate = fund.column("last_funding_rate").to_pylist() if fund.num_rows else []
        self._funding_rows, self._funding_at = (f_sym, f_time, f_rate), 0
        started = time.perf_counter()
        for batch in iter_bars(cfg.catalog, "klines_1m", symbols, cfg.start_ms, cfg.end_ms,
                               batch_rows=cfg.batch_rows, columns=KLINE_COLUMNS):
            cols = [batch.column(n).to_pylist() for n in KLINE_COLUMNS]  # open_time: int64, Python ints
            # one symbol: its name on every row, the symbol column is not read
            names = repeat(symbols[0]) if len(symbols) == 1 else map(symbols.__getitem__,
                                                                      batch.column(0).indices.to_pylist())
            self._play(zip(names, *cols))
        if self._lagged:  # the polls the last bars skipped: the shell ends as an unskipped run's
            self._catch_up()
        return self.summary(time.perf_counter() - started)

    def _play(self, rows: Any) -> None:
        """Rows ``(symbol, open ms, open, high, low, close, volume)`` in time order, each after
        the funding settlements up to its open."""
        bar = self.bar
        next_f = self._next_settlement()
        for sym, t_ms, o, h, low, c, v in rows:
            if t_ms >= next_f:
                next_f = self._settle(t_ms)
            bar(sym, t_ms, o, h, low, c, v)

    def _next_settlement(self) -> float:
        """The time of the next funding settlement (inf: none left)."""
        f_time, at = self._funding_rows[1], self._funding_at
        return f_time[at] if at < len(f_time) else math.inf

    def _settle(self, t_ms: int) -> float:
        """The funding settlements up to ``t_ms`` (a bar's open); the next one's time."""
        f_sym, f_time, f_rate = self._funding_rows
        fi = self._funding_at
        while fi < len(f_time) and f_time[fi] <= t_ms:
            self.funding(f_sym[fi], f_rate[fi])
            fi += 1
        self._funding_at = fi
        return self._next_settlement()

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        tr = self.trades
        start_eq = float(self.cfg.aegis.trading.paper_balance_usdt)
        st = self.ex.st
        return {
            "strategy": self.strategy.name, "strategy_path": sa.resolve(self.cfg.strategy),
            "params": dict(self.cfg.params), "symbols": list(self.cfg.symbols),
            "from_ms": self.cfg.start_ms, "to_ms": self.cfg.end_ms,
            "candles": self.counts["candles"], "bad_bars": self.counts["bad_bars"],
            "signals": self.counts["signals"], "warmup_signals": self.counts["warmup_signals"],
            **run_figures(tr, self.equity_curve, self.daily, start_eq=start_eq, start_ms=self.cfg.start_ms,
                          end_ms=self.cfg.end_ms),
            "open_at_end": sorted(st.trades), "funding_events": self.counts["funding_events"],
            "intents_unsupported": self.counts["intents_unsupported"],
            "trader_counters": dict(sorted(st.counters.items())) if hasattr(st, "counters") else {},
            "strategy_counters": dict(sorted(self.runner.stats().items())),
            "model_outcomes": self.model_outcomes(), "model_rejected": self.counts["model_rejected"],
            "elapsed_s": round(elapsed_s, 3),
        }


def new_backtest(cfg: BacktestConfig, *, keep_signals: bool = False) -> Backtest:
    """The run of ``cfg`` on its engine (``BacktestConfig.engine``)."""
    if cfg.engine == "shell":
        return Backtest(cfg, keep_signals=keep_signals)
    from research.fast_backtest import FastBacktest

    return FastBacktest(cfg, keep_signals=keep_signals)
