"""The wire contract between services: event types, topics, messages, the msgpack codec.

Nothing else in the code base hard-codes a topic string or a message layout.

A ZeroMQ message is two frames:

    frame 0: topic, ASCII, dotted: ``<prefix>.<key>`` (``fill.BTCUSDT``, ``heartbeat.brain``)
             so subscribers filter by prefix (``fill.`` = every fill, ``fill.BTCUSDT`` = one)
    frame 1: msgpack of ``Envelope`` (an array, compact):
             [schema version, publisher, sequence, event time ns, send time ns, body]
             where body is a map tagged by ``type`` (one of ``EventType``).

The decoder (``decode``) accepts exactly that and raises ``DecodeError`` (our own type,
with a reason) on anything else: wrong frame count, bad msgpack, a schema version we do not
speak, a body that fails validation (missing field, wrong type, NaN or infinite number,
non-positive price), or a topic that does not match its body. Messages are immutable
(frozen structs) and validated on construction as well as on decode.

Sequence numbers count per publisher incarnation (``publisher`` = ``<service>:<pid>``) and
per event type, so a subscriber to some event types sees a gapless sequence for each;
``SequenceTracker`` turns them into exact gap counts on the consumer side.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Sequence, Union

import msgspec

from common.errors import DecodeError

SCHEMA_VERSION = 1

Price = Annotated[float, msgspec.Meta(gt=0)]
NonNeg = Annotated[float, msgspec.Meta(ge=0)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Z0-9]+$")]
Side = Annotated[str, msgspec.Meta(pattern=r"^(BUY|SELL)$")]


class EventType(str, enum.Enum):
    TICK_UPDATE = "TICK_UPDATE"
    CANDLE_CLOSED = "CANDLE_CLOSED"
    SIGNAL_GENERATED = "SIGNAL_GENERATED"
    ORDER_REQUEST = "ORDER_REQUEST"
    ORDER_UPDATE = "ORDER_UPDATE"
    FILL = "FILL"
    POSITION = "POSITION"
    RISK_REJECT = "RISK_REJECT"
    HEARTBEAT = "HEARTBEAT"
    FEED_STATUS = "FEED_STATUS"
    SHUTDOWN = "SHUTDOWN"
    TRADE_CLOSED = "TRADE_CLOSED"
    MODEL_STATE = "MODEL_STATE"
    SYMBOL_INFO = "SYMBOL_INFO"
    ALGO_ORDER_UPDATE = "ALGO_ORDER_UPDATE"
    CONTROL = "CONTROL"
    TRADING_PERMISSION = "TRADING_PERMISSION"
    RECONCILED = "RECONCILED"
    EXTERNAL_FILL = "EXTERNAL_FILL"


# The feed's raw WebSocket frames (``feed.publish_raw``) go out un-enveloped on this topic,
# as [topic, frame]: what ``aegis capture --raw`` records and ``aegis replay`` plays back.
RAW_TOPIC_PREFIX = b"raw."
RAW_WS_TOPIC = b"raw.ws"

TOPIC_PREFIX: dict[EventType, str] = {
    EventType.TICK_UPDATE: "tick",
    EventType.CANDLE_CLOSED: "candle",
    EventType.SIGNAL_GENERATED: "signal",
    EventType.ORDER_REQUEST: "order_request",
    EventType.ORDER_UPDATE: "order",
    EventType.FILL: "fill",
    EventType.POSITION: "position",
    EventType.RISK_REJECT: "risk_reject",
    EventType.HEARTBEAT: "heartbeat",
    EventType.FEED_STATUS: "feed_status",
    EventType.SHUTDOWN: "shutdown",
    EventType.TRADE_CLOSED: "trade",
    EventType.MODEL_STATE: "model",
    EventType.SYMBOL_INFO: "symbol",
    EventType.ALGO_ORDER_UPDATE: "algo",
    EventType.CONTROL: "control",
    EventType.TRADING_PERMISSION: "permission",
    EventType.RECONCILED: "reconciled",
    EventType.EXTERNAL_FILL: "external_fill",
}


class _Body(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every message body: immutable, every float finite."""

    def __post_init__(self) -> None:
        # every message is checked as it is built, on the order path too: one C call for the
        # values, then a scan; the field's name is looked up only for the error
        for i, v in enumerate(msgspec.structs.astuple(self)):
            if type(v) is float and not math.isfinite(v):
                # ValueError, not DecodeError: msgspec turns a ValueError of __post_init__ into
                # ValidationError while decoding, which ``decode`` maps to DecodeError
                raise ValueError(f"{self.__struct_fields__[i]} must be finite")

    def key(self) -> str:
        """The topic key after the prefix (the symbol, or the service)."""
        return getattr(self, "symbol", None) or getattr(self, "service", None) or "all"


class TickUpdate(_Body, tag="TICK_UPDATE"):
    """Latest known market state of one symbol (conflated: at most one per flush)."""

    symbol: Symbol
    event_ms: int
    last_price: NonNeg = 0.0  # 0 = no trade seen yet
    last_qty: NonNeg = 0.0
    bid: NonNeg = 0.0
    bid_qty: NonNeg = 0.0
    ask: NonNeg = 0.0
    ask_qty: NonNeg = 0.0
    mark: NonNeg = 0.0
    synthetic: bool = False  # built from ticks synthesized from real candles (demo)


class CandleClosed(_Body, tag="CANDLE_CLOSED"):
    symbol: Symbol
    interval_s: Annotated[int, msgspec.Meta(gt=0)]
    open_ms: int
    close_ms: int
    open: Price
    high: Price
    low: Price
    close: Price
    volume: NonNeg
    quote_volume: NonNeg = 0.0
    trades: Annotated[int, msgspec.Meta(ge=0)] = 0
    buy_volume: NonNeg = 0.0


class SignalGenerated(_Body, tag="SIGNAL_GENERATED"):
    signal_id: str
    symbol: Symbol
    side: Side
    entry: Price
    stop: Price
    target: Price
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)]
    cold: bool = True  # the model has not yet seen enough outcomes; confidence is a prior
    strategy: str = ""
    features: dict[str, float] = msgspec.field(default_factory=dict)


class OrderRequest(_Body, tag="ORDER_REQUEST"):
    client_order_id: str
    symbol: Symbol
    side: Side
    order_type: str  # MARKET | LIMIT
    qty: Annotated[float, msgspec.Meta(gt=0)]
    price: NonNeg = 0.0  # 0 for MARKET
    reduce_only: bool = False
    signal_id: str = ""
    time_in_force: str = ""  # LIMIT: GTC | IOC | GTX ("" = GTC); MARKET: ""


class OrderUpdate(_Body, tag="ORDER_UPDATE"):
    client_order_id: str
    exchange_order_id: str  # a string: Binance order ids exceed 2**53
    symbol: Symbol
    status: str
    filled_qty: NonNeg = 0.0
    avg_price: NonNeg = 0.0
    reason: str = ""


class Fill(_Body, tag="FILL"):
    client_order_id: str
    exchange_order_id: str
    trade_id: str
    symbol: Symbol
    side: Side
    qty: Annotated[float, msgspec.Meta(gt=0)]
    price: Price
    fee: float = 0.0
    fee_asset: str = "USDT"
    liquidity: str = "taker"


class Position(_Body, tag="POSITION"):
    symbol: Symbol
    qty: float  # signed: > 0 long, < 0 short
    entry_price: NonNeg = 0.0
    unrealized_pnl: float = 0.0
    realized_pnl: float = 0.0


class RiskReject(_Body, tag="RISK_REJECT"):
    symbol: Symbol
    reason: str
    detail: str = ""
    signal_id: str = ""


class ServiceState(enum.StrEnum):
    """A process's own state, in its every HEARTBEAT (the supervisor keeps the last one, the
    dashboard shows it). A StrEnum: it travels, prints and compares as its name."""

    RUNNING = "RUNNING"  # doing its whole job
    DEGRADED = "DEGRADED"  # alive but part of its job is not being done (the feed: no
    #                        connection up; the orchestrator: trading not allowed)


class FeedState(enum.StrEnum):
    """What the feed's market data is doing, in FEED_STATUS (a second axis beside the
    feed's ServiceState: a feed with one of three connections up is RUNNING but DEGRADED here)."""

    CONNECTING = "CONNECTING"  # no connection up yet (or none any more)
    STREAMING = "STREAMING"  # every connection up
    DEGRADED = "DEGRADED"  # some connections up, not all
    REPLAYING = "REPLAYING"  # a replay source playing a capture
    REPLAY_DONE = "REPLAY_DONE"  # ... that has played all of it


class Heartbeat(_Body, tag="HEARTBEAT"):
    service: str
    pid: int
    uptime_s: NonNeg
    state: ServiceState = ServiceState.RUNNING
    counters: dict[str, float] = msgspec.field(default_factory=dict)


class FeedStatus(_Body, tag="FEED_STATUS"):
    state: FeedState
    service: str = "feed"
    connections: int = 0
    symbols: int = 0
    message: str = ""
    detail: dict[str, float] = msgspec.field(default_factory=dict)


class Shutdown(_Body, tag="SHUTDOWN"):
    service: str
    reason: str = ""


class TradeClosed(_Body, tag="TRADE_CLOSED"):
    """One round trip, entry to flat: what the model learns from and the report lists."""

    trade_id: str  # the entry's signal id (or "adopted:<symbol>:<ms>" for an external position)
    symbol: Symbol
    side: Side  # of the entry: BUY = long
    qty: Annotated[float, msgspec.Meta(gt=0)]
    entry_price: Price  # average of the entry fills
    exit_price: Price  # average of the exit fills
    stop: NonNeg = 0.0
    target: NonNeg = 0.0
    opened_ms: int = 0
    closed_ms: int = 0
    pnl: float = 0.0  # realised, before fees, funding included (USDT)
    fees: NonNeg = 0.0  # entry and exit commissions (USDT)
    outcome_r: float = 0.0  # pnl in units of the planned risk (entry to stop)
    exit_reason: str = ""  # STOP | TARGET | ROTATION | ADOPTED_STOP | ...
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    learned: bool = False  # the model learned from it (adopted positions are not learned)
    funding: float = 0.0  # funding received (+) or paid (-) while open, USDT (included in pnl)
    signal_price: NonNeg = 0.0  # the signal's entry price (0: none, an adopted position)
    # the entry's average fill against the signal price, in bps, positive = worse for us
    # (paid more on a long, got less on a short); None without a signal price
    slippage_bps: float | None = None


# model_state rows other than a model's: the brain's risk state (the kill switch), read back at
# its start, shown by ``aegis risk`` and the dashboard
RISK_STATE_NAME = "risk_state"


class ModelState(_Body, tag="MODEL_STATE"):
    """The confidence model's serialised state (``model.to_bytes``), after each update."""

    name: str
    version: Annotated[int, msgspec.Meta(ge=0)]  # outcomes learned so far
    state: bytes

    def key(self) -> str:
        return self.name


class SymbolInfo(_Body, tag="SYMBOL_INFO"):
    """One streamed symbol's trading rules from exchangeInfo, as the feed discovered them (the
    only fetch of exchangeInfo in a stack): every filter ``venue.filters.SymbolFilters`` holds
    (tick size, step size, minimum quantity and notional, price bounds, maximum quantity,
    MARKET_LOT_SIZE, PERCENT_PRICE) and what ccxt needs to know the market (assets, contract
    type). Decimal values travel as floats whose shortest repr is the exchange's string (0.1
    stays 0.1; the feed refuses a rule that would not come back exact). 0 in an optional bound,
    "" in a label: not given (a message of an older feed lacks them and decodes so)."""

    symbol: Symbol
    tick_size: Price
    step_size: Price
    min_qty: NonNeg = 0.0
    min_notional: NonNeg = 0.0
    price_precision: Annotated[int, msgspec.Meta(ge=0, le=18)] = 8
    quantity_precision: Annotated[int, msgspec.Meta(ge=0, le=18)] = 8
    max_qty: NonNeg = 0.0
    min_price: NonNeg = 0.0
    max_price: NonNeg = 0.0
    market_step_size: NonNeg = 0.0  # MARKET_LOT_SIZE; 0 = same as LOT_SIZE
    market_max_qty: NonNeg = 0.0
    percent_up: NonNeg = 0.0  # PERCENT_PRICE multiplierUp
    percent_down: NonNeg = 0.0  # PERCENT_PRICE multiplierDown
    base_asset: str = ""
    quote_asset: str = ""
    margin_asset: str = ""
    contract_type: str = ""  # PERPETUAL, ...


class AlgoOrderUpdate(_Body, tag="ALGO_ORDER_UPDATE"):
    """A protective order held by the exchange (Binance's Algo Service): created NEW_LOCAL and
    journaled before it is sent, then every change of state. Prices travel as exact decimal
    text (a stop is a price the exchange must see digit for digit)."""

    client_algo_id: str
    symbol: Symbol
    side: Side  # the closing side: SELL protects a long
    order_type: str  # STOP_MARKET | TAKE_PROFIT_MARKET | TRAILING_STOP_MARKET
    trigger_price: str  # exact decimal text; "0" for a trailing stop
    state: str  # venue.algo_orders.AlgoState
    trade_id: str = ""  # the signal whose position it protects
    role: str = ""  # STOP | TARGET
    working_type: str = "MARK_PRICE"
    close_position: bool = True
    algo_id: str = ""  # the exchange's id (a string: Binance ids exceed 2**53)
    actual_order_id: str = ""  # the market order it became when triggered
    sent_ms: int = 0  # the timestamp signed into the last send (0 = never sent)
    reason: str = ""


class ControlCommand(str, enum.Enum):
    """What an operator can ask of the trader (the dashboard's control API)."""

    PAUSE = "PAUSE"  # no new entries (each signal is refused as RISK_REJECT reason PAUSED)
    RESUME = "RESUME"  # entries again
    CLOSE = "CLOSE"  # the trader's normal exit for one symbol
    CLOSE_ALL = "CLOSE_ALL"  # the trader's flatten: exit every position
    CLEAR_KILL_SWITCH = "CLEAR_KILL_SWITCH"  # a person accepts the loss so far: entries may resume


class ControlStatus(str, enum.Enum):
    REQUESTED = "REQUESTED"  # journaled by the dashboard, on its way to the brain
    DONE = "DONE"  # the brain carried it out (an exit is then on the normal order path)
    REFUSED = "REFUSED"  # the brain would not (detail says why), or never answered


CONTROL_STATE_NAME = "control_state"  # model_state row: the brain's pause, kept across restarts


class Control(_Body, tag="CONTROL"):
    """An operator's command, with who asked, from where and what became of it.

    The dashboard journals it REQUESTED and sends it to the brain's control socket; the brain
    answers (and journals, and publishes) the same request DONE or REFUSED. The request id
    ties the three together (table ``controls``, one row per request). No credential ever
    travels in it: the dashboard checked the token before it was made."""

    request_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    command: ControlCommand
    requested_ms: Annotated[int, msgspec.Meta(ge=0)]
    symbol: Annotated[str, msgspec.Meta(max_length=32, pattern=r"^[A-Z0-9]*$")] = ""  # CLOSE only
    client: Annotated[str, msgspec.Meta(max_length=64)] = ""  # the address the request came from
    via: Annotated[str, msgspec.Meta(max_length=32)] = ""  # "page" (the dashboard's buttons) or "api"
    status: ControlStatus = ControlStatus.REQUESTED
    detail: Annotated[str, msgspec.Meta(max_length=300)] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.command is ControlCommand.CLOSE) != bool(self.symbol):  # ValueError: see _Body
            raise ValueError("symbol is required by CLOSE and only by CLOSE")
class TradingPermission(_Body, tag="TRADING_PERMISSION"):
    """May new positions be opened? The orchestrator's verdict (its journal can write, and
    reconciliation passed), published when it changes and with every heartbeat. Only entries
    obey it: exits and protective orders go whatever it says."""

    allowed: bool
    reason: str = ""  # when not allowed: JOURNAL_DISK_FULL | JOURNAL_READ_ONLY | JOURNAL_IO_ERROR | RECONCILE_<status>
    detail: str = ""  # for people: the file, the free space, the error
    service: str = "orchestrator"


class Reconciled(_Body, tag="RECONCILED"):
    """What a reconciliation run repaired, for the running brain (published after the repairs
    are written, only when there are some): the symbols whose orders, fills or positions were
    repaired or adopted, and our own order ids it adopted (sent, never journaled). The brain
    takes no value from here (a snapshot seconds old): it re-reads those symbols' positions
    itself, adopts a position it holds no trade for, frees a slot the exchange shows flat,
    and never reuses an adopted order id."""

    status: str  # reconciliation's verdict: REPAIRED | MISMATCH
    at_ms: int  # when the run decided (the orchestrator's wall clock)
    symbols: tuple[str, ...] = ()
    adopted_orders: tuple[str, ...] = ()  # our client order ids it adopted (ae-/ax-)
    service: str = "orchestrator"


class ExternalFill(_Body, tag="EXTERNAL_FILL"):
    """A fill of an order that is not ours, reported by reconciliation once: journaled (the
    ``external_fills`` table) so that no later run, nor a restarted orchestrator, reports it
    again while it stays in the exchange's fill window. Its effect on the position is repaired
    through the position, never as a fill of ours."""

    symbol: Symbol
    trade_id: str
    exchange_order_id: str
    side: Side
    qty: float
    price: float
    client_order_id: str = ""  # as the exchange row gives it ("" from userTrades)
    fee: float = 0.0
    fee_asset: str = "USDT"
    time_ms: int = 0  # the exchange's time of the fill
    detail: str = ""


Body = Union[TickUpdate, CandleClosed, SignalGenerated, OrderRequest, OrderUpdate, Fill,
             Position, RiskReject, Heartbeat, FeedStatus, Shutdown, TradeClosed, ModelState, SymbolInfo,
             AlgoOrderUpdate, Control, TradingPermission, Reconciled, ExternalFill]

BODY_TYPES: dict[EventType, type] = {
    EventType.TICK_UPDATE: TickUpdate,
    EventType.CANDLE_CLOSED: CandleClosed,
    EventType.SIGNAL_GENERATED: SignalGenerated,
    EventType.ORDER_REQUEST: OrderRequest,
    EventType.ORDER_UPDATE: OrderUpdate,
    EventType.FILL: Fill,
    EventType.POSITION: Position,
    EventType.RISK_REJECT: RiskReject,
    EventType.HEARTBEAT: Heartbeat,
    EventType.FEED_STATUS: FeedStatus,
    EventType.SHUTDOWN: Shutdown,
    EventType.TRADE_CLOSED: TradeClosed,
    EventType.MODEL_STATE: ModelState,
    EventType.SYMBOL_INFO: SymbolInfo,
    EventType.ALGO_ORDER_UPDATE: AlgoOrderUpdate,
    EventType.CONTROL: Control,
    EventType.TRADING_PERMISSION: TradingPermission,
    EventType.RECONCILED: Reconciled,
    EventType.EXTERNAL_FILL: ExternalFill,
}
_TYPE_OF: dict[type, EventType] = {v: k for k, v in BODY_TYPES.items()}


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    v: int  # schema version
    publisher: str  # "<service>:<pid>"
    seq: int  # per publisher, from 1
    event_ns: int  # when the thing happened (ns since the epoch)
    send_ns: int  # when it was sent
    body: Body

    @property
    def type(self) -> EventType:
        return _TYPE_OF[type(self.body)]


def topic_prefix(et: EventType) -> bytes:
    """Subscription prefix for every message of one type (``b"fill."``)."""
    return (TOPIC_PREFIX[et] + ".").encode()


def topic(body: Any) -> bytes:
    return f"{TOPIC_PREFIX[_TYPE_OF[type(body)]]}.{body.key()}".encode()


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(Envelope)


def encode(env: Envelope) -> list[bytes]:
    """[topic, payload] frames for one envelope."""
    return [topic(env.body), _ENC.encode(env)]


def decode(frames: Sequence[bytes]) -> Envelope:
    """Frames -> Envelope, or ``DecodeError`` with a reason. Never anything else."""
    try:
        if len(frames) != 2:
            raise DecodeError(f"expected 2 frames, got {len(frames)}", reason="frame_count")
        t, payload = bytes(frames[0]), bytes(frames[1])
    except DecodeError:
        raise
    except Exception as exc:  # frames not a sequence of buffers
        raise DecodeError(f"bad frames: {exc!r}", reason="frame_type") from None
    # peek at the version before typed decoding, so a newer schema says so plainly
    if payload[:1] == b"\x96":  # fixarray of 6
        ver = payload[1]
        if ver != SCHEMA_VERSION:
            raise DecodeError(f"schema version {ver} (we speak {SCHEMA_VERSION})", reason="schema_version")
    try:
        env = _DEC.decode(payload)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"invalid message: {exc}", reason="invalid") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed msgpack: {exc}", reason="malformed") from None
    except Exception as exc:  # any other decoder surprise is still a bad frame
        raise DecodeError(f"undecodable: {exc!r}", reason="malformed") from None
    if env.v != SCHEMA_VERSION:
        raise DecodeError(f"schema version {env.v} (we speak {SCHEMA_VERSION})", reason="schema_version")
    if t != topic(env.body):
        raise DecodeError(f"topic {t!r} does not match body", reason="topic_mismatch")
    return env


@dataclass
class SequenceTracker:
    """Per-publisher sequence continuity, on the consumer side.

    ``observe`` returns how many messages were skipped before this one (0 when in order).
    A new publisher (first message, or a restarted process with a new pid) starts fresh.
    With ``count_initial`` (the journal: PUSH queues from the first message on) a first
    sequence above 1 means messages were missed and counts; without it (PUB/SUB, where a
    subscriber that joins late never sees the earlier messages, by design) it does not.
    """

    count_initial: bool = True
    last: dict[str, int] = field(default_factory=dict)
    gaps: int = 0  # messages missed in total
    gap_events: int = 0
    duplicates: int = 0

    def observe(self, publisher: str, seq: int) -> int:
        prev = self.last.get(publisher)
        if prev is None:
            prev = 0 if self.count_initial else seq - 1
        if seq <= prev:
            self.duplicates += 1
            return 0
        missed = seq - prev - 1
        self.last[publisher] = seq
        if missed:
            self.gaps += missed
            self.gap_events += 1
        return missed
