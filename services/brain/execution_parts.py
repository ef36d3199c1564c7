"""What every part of the execution shell relies on: its state and its ports, declared once.

``Execution`` (``services/brain/execution.py``) is made of parts, one module per role
(``execution_startup``, ``execution_timers``, ``execution_send``, ``execution_inline``,
``execution_answers``). Each part is a class over ``ExecutionParts``: the attributes below are
set in ``Execution.__init__``, and the methods named at the end are written in one part (or in
``Execution``) and called from another. A reader of one part finds here, typed, everything it
uses that it does not define. Nothing here runs: the declarations are annotations only.

The ports the shell is handed are typed here too: ``Host``, its one port onto what runs it
(the brain: ``services.brain.execution_build.BrainHost``; a backtest: ``research.backtest.Backtest``),
and ``SendOrder``, a WebSocket-API broker's send from the deciding thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Union

from common import wire
from common.log import RateLimiter
from common.ring import Ring
from services.brain import dispatcher as dsp
from services.brain import funding_feed, intent_log, recovery, risk, trader, user_feed
from services.brain.tick_to_trade import TickToTrade
from venue import algo_orders as ao
from venue import orders as om
from venue.paper import BookTop
from venue.port import Bracket, Broker, ExchangeFill, OrderSpec

if TYPE_CHECKING:  # the parts import this module
    from services.brain import jobs
    from services.brain.execution_startup import Phase


class Host(Protocol):
    """What the execution shell needs from what runs it: its clocks, its views of the market,
    and where its messages and lessons go. One object, named methods, typed here once.

    The brain's (``services.brain.execution_build.BrainHost``) reads the wall clock and journals live;
    in replay every clock is the ticks' exchange clock (``ReplayHost``), which makes a replay
    repeatable. A backtest is its own host (``research.backtest.Backtest``): the bars' clock."""

    def journal_sync(self, body: object) -> object:
        """The synchronous journal's write (``bus.SyncJournal.write``): returns when the journal
        acknowledged ``body`` (its sequence number), or raises ``TransientError``."""
        ...

    def publish(self, body: object, journal: bool = True) -> None:
        """``body`` on the bus, and to the journal unless ``journal`` is False (an order request
        the synchronous journal took already)."""
        ...

    def quote(self, symbol: str) -> risk.Quote | None:
        """A symbol's latest mark and its time (None when unknown)."""
        ...

    def learn(self, features: Mapping[str, float], outcome_r: float) -> None:
        """A closed trade's entry features and its outcome in R, for the model."""
        ...

    def symbol_filters(self) -> Mapping[str, risk.SymbolFilters]:
        """Each symbol's order filters (exchange rules), read live."""
        ...

    def symbols(self) -> list[str]:
        """The symbols to trade (the feed's, most liquid first)."""
        ...

    def clock_ms(self) -> int:
        """Order times and the kill switch's day: the wall clock live, the ticks' clock in replay."""
        ...

    def mono_s(self) -> float:
        """The timers' clock, seconds (replay: the ticks' clock, so they fire at the same ticks)."""
        ...

    def block_reason(self) -> str:
        """Why new entries are refused now (the orchestrator's verdict; "" when they are not)."""
        ...


class BrainPort(Protocol):
    """What the execution shell is built from, in the brain (``services.brain.app.Brain``
    is one): its clocks, its views of the market, and where the shell's messages and lessons
    go. ``execution_build`` makes the shell's ``Host`` of it."""

    @property
    def ring(self) -> Ring:
        """The feed's ring: its symbol table names the symbols to set up at the exchange."""
        ...

    @property
    def symbol_info(self) -> Mapping[str, wire.SymbolInfo]:
        """Each symbol's trading rules as the feed published them, read live."""
        ...

    def clock_ms(self) -> int:
        """The exchange clock as the ticks tell it (replay mode's clock for everything)."""
        ...

    def now_ns(self) -> int:
        """When an action happens: the ticks' clock in replay mode, the wall clock live."""
        ...

    def book_top(self, symbol: str) -> BookTop | None:
        """Best bid and ask for the paper broker (None when the book is not two-sided)."""
        ...

    def quote(self, symbol: str) -> risk.Quote | None:
        """A symbol's latest mark and its time (None when unknown)."""
        ...

    def learn(self, features: Mapping[str, float], outcome_r: float) -> None:
        """A closed trade's entry features and outcome in R, for the model."""
        ...

    def publish_exec(self, body: object, journal: bool = True) -> None:
        """``body`` on the bus, and to the journal unless ``journal`` is False."""
        ...

    def trading_block_reason(self) -> str:
        """Why new entries are refused now (the orchestrator's verdict; "" when they are not)."""
        ...


class SendOrder(Protocol):
    """A WebSocket-API broker's ``send_order``: an order's frame written on the calling thread
    (``rate_wait_s=0``: never waiting on the rate limit; ``prepared``: the request signed ahead,
    ``prepare_order``). Returns the broker's handle, which ``finish_order`` turns into the
    answer on a dispatcher worker."""

    def __call__(self, spec: OrderSpec, *, rate_wait_s: float | None = None,
                 prepared: object | None = None) -> object: ...


# an order's frame written by the deciding thread: (the broker's handle, None) when it left,
# (None, the error) when it may have left (``InlineSend._write_now``)
WrittenFrame = tuple[object, Union[Exception, None]]


@dataclass(frozen=True, slots=True)
class FillsGrace:
    """A fill fetch held back while the user data stream is connected: the stream tells an
    order's fills within milliseconds of the trade, so REST reads them only if, after
    ``STREAM_FILLS_GRACE_MS`` (``execution_send``), the order still has fewer than the
    ``executed`` quantity the exchange reported (a lost event, a gap)."""

    fetch: om.FetchTrades
    executed: Decimal


# what ``dispatch`` carries out: the order and protective-order state machines' effects, the
# trader's own exchange reads, and a fill fetch held back for the user stream
Effect = Union[om.Effect, ao.Effect, trader.CheckPosition, trader.CheckRemainder, trader.FetchSymbolFills, FillsGrace]


class ExecutionParts:
    """The shell's state and ports, as each part sees them (set in ``Execution.__init__``)."""

    # ---- configuration, fixed at construction
    cfg: trader.TraderConfig
    db_path: Path  # the journal's database: recovery's reads and the journal audit's
    balance_poll_s: float
    position_poll_s: float
    algo_audit_s: float
    flatten_on_halt: bool  # the kill switch closes every position too
    lane_on: bool  # the exit lane may write exits (``exit_lane``)
    inline: bool  # the dispatcher answers on this thread (replay): ``poll`` drains until empty

    # ---- ports: the exchange, the dispatcher's threads, the intent log, the user stream
    broker: Broker
    dispatcher: dsp.Dispatcher | dsp.InlineDispatcher
    intents: intent_log.IntentLog | None  # None: "journal, then act" (replay)
    user_stream: user_feed.Link | None  # None: fills and positions by REST only
    _send_now: SendOrder | None  # the broker's send_order once READY: frames from this thread
    _prepare: Callable[[OrderSpec], object] | None  # its prepare_order (the exit lane)

    host: Host  # the brain (or a backtest): clocks, quotes, symbols, where messages go

    # ---- the trader's state and the account as last read
    st: trader.TraderState
    filters: Mapping[str, risk.SymbolFilters]
    equity: float  # NaN until the first balance read
    brackets: dict[str, tuple[Bracket, ...]]  # leverage brackets: the liquidation check

    # ---- life cycle and start-up (``execution_startup``)
    phase: Phase
    start_error: str  # why the last start failed ("" once READY)
    saved: recovery.Saved | None  # what the journal and the intent log held at start
    configured: set[str]  # symbols whose margin type and leverage are set at the exchange
    configuring: set[str]  # their set-up job is out
    _rules_wait: dict[str, float]  # symbol -> when its set-up began to wait for its rules

    # ---- the send path and the exit lane (``execution_send``, ``execution_inline``)
    _presend: dict[str, tuple[OrderSpec, WrittenFrame | None]]  # exits written before their SubmitOrder
    _lane_fired: dict[str, str]  # cid -> symbol: exits the lane wrote before the trader decided them
    # sent, journal row not yet seen: cid -> (sent ms, the rows to publish again if it never
    # comes: an entry's signal and request, an exit's request; none for a protective order)
    journal_unseen: dict[str, tuple[int, tuple[wire.SignalGenerated | wire.OrderRequest, ...]]]
    # the signal being acted on and its one-shot announcement (bus and journal), made right after
    # its entry leaves and before the entry's row (``Execution.on_signal``)
    signal_in_hand: tuple[wire.SignalGenerated, Callable[[], None]] | None
    delayed: list[tuple[int, Effect, str]]  # (not before ms, effect, symbol)
    # symbol -> give-up ms: trades our exits closed; the position is read once the symbol is
    # quiet (``Timers._check_remainders``)
    remainders: dict[str, int]
    _answer_fills: bool  # set while an order's answer is applied (``FillsGrace``)
    # what the shell published while an order's send ran, sent after it (``_held_send``)
    _held: list[tuple[object, bool]] | None

    # ---- timers: the next time each one is due (``mono_s`` seconds)
    _next_start: float
    _next_timer: float
    _next_setup: float
    _next_balance: float
    _next_positions: float
    _next_audit: float
    _next_journal_audit: float

    # ---- what the shell counts and measures
    counters: dict[str, int]  # every name there from the start (``heartbeat_counters``)
    _limiter: RateLimiter  # log lines said once a minute
    ttt: TickToTrade  # tick-to-trade: the brain sets ttt.trigger_ns around a decision
    funding: funding_feed.FundingLink  # funding's income reads (``funding_feed``)

    if TYPE_CHECKING:  # written in one part (or in ``Execution``), called from another
        @property
        def ready(self) -> bool: ...

        def ctx(self, symbols: tuple[str, ...] = ()) -> trader.Ctx: ...

        def apply(self, result: trader.Result) -> None: ...

        def _carry_out(self, actions: list[trader.Action]) -> None: ...

        def _start(self) -> None: ...

        def _setup_symbols(self, symbols: list[str]) -> None: ...

        def _startup_done(self, result: object, err: Exception | None) -> None: ...

        def _setup_done(self, symbols: tuple[str, ...], result: object, err: Exception | None) -> None: ...

        def _completion(self, c: dsp.Completion) -> None: ...

        def _journal_seen(self, asked_ms: int, c: dsp.Completion) -> None: ...

        def dispatch(self, effect: Effect, symbol: str) -> None: ...

        def _event(self, cid: str, event: om.Event | None, fill: ExchangeFill | None = None) -> None: ...

        def _algo_event(self, cid: str, event: ao.Event) -> None: ...

        def _presend_exit(self, o: om.Order) -> None: ...

        def _claim_presend(self, pre: tuple[OrderSpec, WrittenFrame | None], symbol: str, tag: jobs.Submit,
                           expected: OrderSpec | None = None, unclaimed: bool = False) -> None: ...

        def _send_order_now(self, spec: OrderSpec, symbol: str, tag: jobs.Submit) -> bool: ...

        def publish(self, body: object, journal: bool = True) -> None: ...
