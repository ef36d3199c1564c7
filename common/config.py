"""Configuration: frozen, keyword-only dataclasses, loaded once in each ``__main__``.

Sources, later wins:
  1. the defaults below,
  2. an optional TOML (or JSON) file: ``[section] field = value``,
  3. environment variables ``AEGIS_<SECTION>__<FIELD>`` (for example
     ``AEGIS_SIM__SPEED=10``) and ``AEGIS_<FIELD>`` for top-level fields.

Unknown sections or fields are an error (a typo must not silently fall back to a default).
Secrets (API keys) are never read from the config file: only from the environment or from
secret files (``BINANCE_API_KEY_FILE`` / ``/run/secrets/binance_api_key``), see ``secrets``.

Units are in the field names (``_s``, ``_ms``, ``_ns``). Nothing deep in the code reads the
environment: ``load()`` is called once by the shell and the result is passed down.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from common import filekind
from common.config_rules import MODES, validate  # noqa: F401  (MODES: config.MODES for the CLIs)
from common.errors import ConfigError

ENV_PREFIX = "AEGIS_"


@dataclass(frozen=True, kw_only=True)
class RingConfig:
    # path of the shared-memory file; "" = <shm_dir>/aegis-<run id>.ring (chosen at start-up)
    path: str = ""
    shm_dir: str = "/dev/shm"
    capacity: int = 1 << 20  # slots (power of two): 64 MiB, ~10 s of 100k ticks/s of slack
    reader_resume: str = "saved"  # "saved": continue from the saved cursor; "latest": skip


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port at start-up (the supervisor resolves it)
    speed: float = 1.0  # replay pace: 1 = recorded pace, 10 = ten times faster
    max_speed: bool = False  # as fast as possible (ignores speed)
    symbols: int = 20  # real BTCUSDT plus derived symbols up to this count
    capture: str = ""  # "" = the bundled hftbacktest BTCUSDT capture
    loop: bool = True  # loop the capture seamlessly
    # "candles" (the demo) = a month of real 1m candles replayed as trades synthesized inside
    # each candle (labelled so in exchangeInfo and /_sim/stats), with real history before it,
    # so the strategy is warm at once and signals come within minutes; "ticks" = the
    # recorded tick capture (4,500 ticks/s of real trades, but too short for SMC signals)
    source: str = "candles"
    candles: str = ""  # "" = the bundled BTCUSDT 1m candles of 2024-12 (candles source only)
    history_bars: int = 1500  # candles source: 1m bars of real history served before the replay
    candle_trades: int = 60  # candles source: trades synthesized per candle (4..60, divides 60000)


@dataclass(frozen=True, kw_only=True)
class FeedConfig:
    # "" = the mode's: the sim's (demo); Binance's production host (paper, live), or its
    # testnet with trading.testnet. Set both to point any mode at another exchange endpoint.
    ws_url: str = ""
    rest_url: str = ""
    # Binance production delivers book streams on /public and the rest on /market (a stream on
    # the wrong path never delivers): "auto" = routed for wss://fstream.binance.com only
    ws_routing: str = "auto"  # auto | on | off
    symbols: tuple[str, ...] = ()  # empty = discover from exchangeInfo
    max_symbols: int = 20
    streams_per_connection: int = 200
    channels: tuple[str, ...] = ("trade", "bookTicker")
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    silence_timeout_s: float = 10.0  # no message for this long = dead connection
    status_interval_s: float = 1.0
    # discovery again every this many seconds (0 = only at start): new entrants to the top N
    # are added (up to max_symbols + 25 %), rules refreshed, symbols that stopped trading reported
    rediscover_interval_s: float = 900.0
    # Binance closes every connection after 24 h: replace each one before that, overlapping
    # old and new until the new one has caught up (0 = never roll over)
    rollover_s: float = 84_600.0  # 23.5 h
    rollover_overlap_max_s: float = 10.0  # longest old and new run side by side
    discovery_attempts: int = 4  # REST tries (429/418/5xx are retried) before the fallback list
    # closed 1m candles per symbol fetched at start-up (0 = none): 1,500 (two klines pages,
    # request weight 10 per symbol) warm the strategy with a day of history
    hydrate_candles: int = 1500
    hydrate_concurrency: int = 4  # REST requests in flight while hydrating
    rest_weight_budget_1m: int = 1800  # our share of Binance's 2400/min IP request weight
    # publish every raw WebSocket frame on PUB (topic "raw.ws") for ``aegis capture --raw``:
    # about a microsecond a frame, so off unless a capture wants them (aegis run --capture)
    publish_raw: bool = False
    # in-order trade / bookTicker frames through the C fast lane (services/feed/_feedlane.c); off = the
    # Python codec for every frame (the same records, counts and state; slower a frame)
    fast_lane: bool = True
    # the start-up heap frozen (gc.freeze) when the feed is ready (common/heap.py)
    gc_freeze: bool = True


@dataclass(frozen=True, kw_only=True)
class BrainConfig:
    candle_interval_s: int = 60
    conflate_interval_ms: int = 100  # TICK_UPDATE flush period (latest tick per symbol)
    read_batch: int = 4096  # records per ring read
    idle_sleep_us: int = 50  # back-off when the ring is empty (busy-poll first)
    spin_before_sleep_us: int = 200  # busy-poll an empty ring this long before sleeping
    # how long another thread of the brain may keep the GIL while the ring reader waits for it
    # (Python's default is 5,000 us: a dispatcher thread decoding an answer could hold an exit
    # back that long; much shorter makes the reader itself hand over more often); see
    # services.brain.latency
    gil_switch_interval_us: int = 1_000
    # Linux adds a "timer slack" to every sleep (50 us by default): the idle sleep above would
    # really last ~100 us. The brain asks for this much instead (0 = leave the default)
    timer_slack_ns: int = 1_000
    # the start-up heap frozen (gc.freeze) just before the brain says it is ready: the garbage
    # collector's full passes then walk only what was made since (common/heap.py)
    gc_freeze: bool = True


@dataclass(frozen=True, kw_only=True)
class TradingConfig:
    """Risk, the 3-position rotation and execution (the brain), reconciliation (orchestrator).

    ``broker``: "auto" = the mode's broker (demo and live: ccxt; paper and replay: paper),
    or "ccxt" / "paper" / "none" (signals only, no orders).
    """

    enabled: bool = True
    broker: str = "auto"
    testnet: bool = False  # live mode: Binance's futures testnet instead of production
    live_confirm: bool = False  # live mode starts only with keys AND this flag set on purpose
    # sizing: a stop-out loses this share of equity (before fees and slippage)
    risk_per_trade_pct: float = 0.5
    leverage: int = 5
    margin_type: str = "CROSSED"  # CROSSED | ISOLATED
    order_timeout_ms: int = 5_000  # REST timeout of an order request: past it, outcome unknown
    # orders, cancels and order queries over Binance's WebSocket API (one open connection, REST
    # as fallback while it is down: venue.binance.ws_broker) or over REST only (ccxt)
    order_transport: str = "ws"  # ws | rest
    recv_window_ms: int = 5_000
    balance_poll_s: float = 5.0  # equity for the kill switch and sizing
    exit_retry_s: float = 2.0  # a refused exit is tried again after this long
    flatten_on_halt: bool = False  # the kill switch also closes every position (else: no new entries)
    # the exit lane (services/brain/exit_lane.py): an open trade's exit order kept ready and
    # written the moment a batch touches its stop or target, before the trader's bookkeeping
    # (WebSocket API with the intent log only). Off: every exit waits for the trader's decision
    exit_lane: bool = True
    # the exchange holds a STOP_MARKET and a TAKE_PROFIT_MARKET (closePosition) for each position
    exchange_protection: bool = True
    # > 0: the target is held as a TRAILING_STOP_MARKET (reduce-only, the position's quantity)
    # activated at the plan's target that closes once the price falls back this many percent
    # from its best since then (0.1..10, steps of 0.1); 0 = off: a TAKE_PROFIT_MARKET at the target
    trailing_callback_pct: float = 0.0
    # an entry whose liquidation price is not beyond its stop by this much (% of the stop) is refused
    liquidation_buffer_pct: float = 0.5
    # entries: "limit_ioc" = LIMIT IOC at the signal price +/- entry_slippage_bps (what the market
    # cannot fill within the bound at once expires, never chased); "market" = unbounded MARKET.
    # Exits are always reduce-only MARKET orders (never blocked by a price bound)
    entry_order: str = "limit_ioc"
    entry_slippage_bps: float = 20.0
    # pre-trade risk (services.brain.risk.RiskConfig)
    max_order_notional_usdt: float = 2_000.0
    max_total_notional_usdt: float = 5_000.0
    max_leverage: float = 3.0
    max_positions: int = 3
    daily_loss_limit_usdt: float = 250.0
    max_drawdown_pct: float = 10.0
    stale_data_ms: int = 5_000
    max_orders_per_minute: int = 20
    # the elite rotation (services.brain.rotation.RotationConfig)
    replace_margin: float = 0.05
    pnl_weight_per_r: float = 0.10
    cooldown_s: float = 900.0
    # paper broker (paper and replay modes)
    paper_balance_usdt: float = 10_000.0
    paper_slippage_bps: float = 1.0
    paper_latency_ms: float = 0.0
    taker_fee_rate: float = 0.0005
    maker_fee_rate: float = 0.0002
    # reconciliation with the exchange (orchestrator), at start and then this often
    reconcile_interval_s: float = 60.0
    reconcile_failures_to_halt: int = 3  # consecutive unreachable runs before trading stops
    journal_ack_timeout_ms: int = 2_000  # replay (and intent_log off): an order is sent only once the database has it
    # the brain's local intent log (docs/journal.md): an order is written there, sent, then
    # journaled; its fsync is batched at most every intent_log_flush_ms. Off: journal, then send
    intent_log: bool = True
    intent_log_flush_ms: float = 2.0
    # at start the brain reads the exchange's order history (allOrders) from a minute before
    # the newest order it has on record; with nothing on record, this far back (at most 7 days)
    recovery_lookback_s: float = 86_400.0
    # the exchange's user data stream (demo and live): fills, order states and positions as they
    # happen; REST resyncs after a gap (docs/user-stream.md). Off: REST polling only
    user_stream: bool = True


@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """Replay mode (``aegis replay``): the feed plays a capture's raw frames into the ring in
    place of WebSockets, and the brain runs deterministically (``docs/replay.md``)."""

    file: str = ""  # the capture file
    speed: float = 0.0  # 0 = as fast as the brain takes it; 1 = recorded pace; 10 = ten times faster
    from_ms: int = 0  # replay frames received at or after this time (0 = from the start)
    to_ms: int = 0  # ... and before this one (0 = to the end)
    chunk: int = 256  # ticks per lock-step batch at most: the brain reads exactly these batches
    chunk_ms: int = 100  # ... and a batch never spans two such buckets of capture time
    exchange_info: str = ""  # JSON file with exchangeInfo entries (symbol filters for the paper broker)
    warm_to_ms: int = 0  # the brain warms from the database's candles that closed by this time
    history_candles: int = 0  # ... at most this many per symbol


@dataclass(frozen=True, kw_only=True)
class OrchestratorConfig:
    db_file: str = "aegis.sqlite3"  # under data_dir
    wal_checkpoint_interval_s: float = 60.0
    # when the disk refuses a write (full, read-only, failing): docs/journal.md
    journal_pending_max_messages: int = 50_000  # kept in memory; past it the oldest candles go
    journal_retry_initial_s: float = 0.5  # first retry of the kept messages; doubles ...
    journal_retry_max_s: float = 10.0  # ... up to this
    journal_spill_dir: str = ""  # kept messages go here at stop (another filesystem); "" = lost at stop
    # TEST ONLY: while this file exists every database write fails as on a full disk
    fault_disk_full_file: str = ""


@dataclass(frozen=True, kw_only=True)
class SupervisorConfig:
    restart_backoff_initial_s: float = 0.5
    restart_backoff_max_s: float = 10.0
    restart_intensity: int = 10  # more than this many restarts ...
    restart_period_s: float = 60.0  # ... within this window: give up, exit non-zero
    healthy_after_s: float = 10.0  # up this long: the next crash restarts immediately again
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0  # per child, then SIGKILL
    heartbeat_timeout_s: float = 10.0  # no heartbeat this long = hung: kill and restart
    status_line: bool = True
    metrics_host: str = "127.0.0.1"  # loopback only: the endpoint has no authentication
    metrics_port: int = 9465  # /metrics, /health, /status; 0 = any free port (taken -> any)
    heartbeat_log_interval_s: float = 900.0  # one summary line every 15 minutes
    # keep one warm spare process per service (imports and caches loaded, waiting on its
    # stdin): a restart then takes the spare, well under a second instead of a full boot
    # (demo, paper, live; never in replay). Costs ~100 MB of memory per service.
    warm_spares: bool = True
    spare_retry_s: float = 10.0  # a spare that died unused: the next one not before this


@dataclass(frozen=True, kw_only=True)
class DashboardConfig:
    """The live dashboard and its control API (``services/dashboard``, docs/operate.md).

    Loopback only by default. Any other ``host`` is an explicit choice that the dashboard
    announces loudly at start: the page then shows positions to whoever reaches the port, and
    only the token guards the control API (no TLS here: put a TLS proxy in front)."""

    enabled: bool = True  # aegis run starts it (never in replay mode)
    host: str = "127.0.0.1"
    port: int = 8470  # 0 = any free port; taken -> any free port (the URL is printed)
    # Origins allowed to POST besides the dashboard's own (a reverse proxy's public URL)
    allowed_origins: tuple[str, ...] = ()
    refresh_ms: int = 1_000  # the page's update period (server-sent events)
    control_timeout_ms: int = 3_000  # the brain's answer to a command, at most this long
    auth_failures_per_min: int = 10  # refused requests per client a minute, then 429 until it passes
    commands_per_min: int = 30  # accepted commands per client a minute, then 429


@dataclass(frozen=True, kw_only=True)
class TelegramConfig:
    """Alerts and remote control over Telegram (run by the dashboard service, docs/operate.md).

    Off unless ``enabled`` and at least one chat id: only those chats are obeyed and alerted.
    The bot's token is a secret: ``AEGIS_TELEGRAM_TOKEN`` (or ``_FILE``, or the docker secret
    ``aegis_telegram_token``), never this file."""

    enabled: bool = False
    chat_ids: tuple[int, ...] = ()
    api_url: str = "https://api.telegram.org/bot"  # the Bot API (a local fake in tests)
    summary_hour_utc: int = 0  # the daily summary goes out at this hour (-1 = never)
    feed_stale_s: float = 30.0  # the feed silent or not streaming this long: an alert
    confirm_s: float = 60.0  # /closeall waits this long for its /confirm


@dataclass(frozen=True, kw_only=True)
class BusConfig:
    """How the services reach each other over ZeroMQ (``endpoints``, docs/security.md).

    ``transport``: "ipc" (default) = Unix sockets in the private run directory; "tcp" =
    ``host``:``base_port``+0..5, always with ZeroMQ CURVE (keys made by ``aegis keys``):
    a tcp stack refuses to start without them.
    """

    transport: str = "ipc"  # ipc | tcp
    host: str = "127.0.0.1"  # tcp: the one address every endpoint binds and connects to
    # tcp: six ports from here (feed_pub, brain_pub, orchestrator_pub, journal, journal_sync,
    # brain_control);
    # below Linux's ephemeral range (32768+), so an outgoing connection never holds one
    base_port: int = 27460
    curve_dir: str = ""  # CURVE key directory; "" = <data_dir>/keys (kept with the database)


@dataclass(frozen=True, kw_only=True)
class StrategySection:
    """Which strategy the brain (and ``aegis backtest``) runs: ``path`` is a short name
    (``smc``, ``donchian``), ``package.module:Class`` or ``/dir/file.py:Class``; ``params``
    (``[strategy.params]``) go to its constructor. See research/strategy_api.py, docs/strategies.md."""

    path: str = "smc"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    level: str = "warning"
    format: str = "console"  # console | json


@dataclass(frozen=True, kw_only=True)
class AegisConfig:
    mode: str = "demo"  # demo | paper | live | replay
    run_dir: str = ""  # ipc sockets, stats, pid files; "" = a fresh private temp dir
    data_dir: str = "var"  # persistent state (the SQLite database)
    heartbeat_interval_s: float = 1.0  # three missed beats = suspect, as in the Paranoid Pirate
    ring: RingConfig = field(default_factory=RingConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    brain: BrainConfig = field(default_factory=BrainConfig)
    orchestrator: OrchestratorConfig = field(default_factory=OrchestratorConfig)
    trading: TradingConfig = field(default_factory=TradingConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    log: LogConfig = field(default_factory=LogConfig)
    strategy: StrategySection = field(default_factory=StrategySection)


# ---------------------------------------------------------------------------- endpoints
@dataclass(frozen=True, kw_only=True)
class Endpoints:
    """ZeroMQ endpoints of one stack, derived from the run directory (ipc) or ``bus`` (tcp)."""

    feed_pub: str
    brain_pub: str
    orchestrator_pub: str
    journal: str  # orchestrator PULL <- PUSH from brain (and feed)
    journal_sync: str  # orchestrator ROUTER <- DEALER: written and fsync'd before the ack
    brain_control: str = ""  # brain ROUTER <- DEALER: operators' commands (wire.Control), answered
    transport: str = "ipc"  # "tcp": every socket on these endpoints needs CURVE keys

    def publishers(self) -> tuple[str, ...]:
        return (self.feed_pub, self.brain_pub, self.orchestrator_pub)


def endpoints(run_dir: str | Path, bus: BusConfig | None = None) -> Endpoints:
    """The stack's endpoints: ipc under ``run_dir`` (Linux limits a socket path to 107
    bytes), or with ``bus.transport == "tcp"`` ``bus.host`` at ``bus.base_port`` + 0..5.

    Pure: it names endpoints only. Loading the CURVE keys a tcp stack needs (and refusing
    to start without them) is the shell's job: ``common.service.endpoints``.
    """
    if bus is not None and bus.transport == "tcp":
        # an IPv6 literal needs brackets in a ZeroMQ tcp endpoint
        host = f"[{bus.host}]" if ":" in bus.host else bus.host
        port = bus.base_port
        return Endpoints(feed_pub=f"tcp://{host}:{port}", brain_pub=f"tcp://{host}:{port + 1}",
                         orchestrator_pub=f"tcp://{host}:{port + 2}", journal=f"tcp://{host}:{port + 3}",
                         journal_sync=f"tcp://{host}:{port + 4}", brain_control=f"tcp://{host}:{port + 5}",
                         transport="tcp")
    base = Path(run_dir)
    ep = Endpoints(
        feed_pub=f"ipc://{base / 'feed.pub'}",
        brain_pub=f"ipc://{base / 'brain.pub'}",
        orchestrator_pub=f"ipc://{base / 'orchestrator.pub'}",
        journal=f"ipc://{base / 'journal.pull'}",
        journal_sync=f"ipc://{base / 'journal.sync'}",
        brain_control=f"ipc://{base / 'brain.control'}",
    )
    if any(len(e) - len("ipc://") > 107 for e in ep.publishers()):
        raise ConfigError(f"run_dir too long for ipc socket paths: {base}")
    return ep


def curve_dir(cfg: AegisConfig) -> Path:
    """Where the CURVE keys live: ``bus.curve_dir``, else ``<data_dir>/keys`` (persistent,
    beside the database: the run directory is a temporary directory by default)."""
    return Path(cfg.bus.curve_dir or Path(cfg.data_dir) / "keys").resolve()


# ---------------------------------------------------------------------------- loading
def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> AegisConfig:
    """Defaults <- file <- environment. Raises ``ConfigError`` on anything unknown or ill-typed."""
    data: dict[str, Any] = {}
    if path:
        data = read_file(Path(path))
    overrides = env_overrides(os.environ if env is None else env)
    merged = _merge(data, overrides)
    return from_dict(merged)


def read_file(path: Path) -> dict[str, Any]:
    if wrong := filekind.refusal(path, (), "a config file (TOML or JSON)"):
        raise ConfigError(wrong)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        if path.suffix == ".json":
            obj = json.loads(raw)
        else:
            obj = tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid: {exc}") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"config file {path} must hold a table")
    return obj


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``AEGIS_SECTION__FIELD=value`` -> {"section": {"field": "value"}} (strings; typed later)."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(AegisConfig)
    sections = {name for name, tp in hints.items() if _is_section(tp)}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if "__" in name:
            section, fld = name.split("__", 1)
            if section not in sections:
                raise ConfigError(f"unknown config section in {key}")
            out.setdefault(section, {})[fld] = value
        elif name in hints and name not in sections:
            out[name] = value
        # other AEGIS_* variables (e.g. AEGIS_SERVICE set by the supervisor) are not config
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def from_dict(data: Mapping[str, Any]) -> AegisConfig:
    cfg = _build(AegisConfig, data, "")
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict (tuples become lists), suitable for JSON; ``from_dict`` reverses it."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def replace(cfg: AegisConfig, **sections: Any) -> AegisConfig:
    """A copy with top-level fields or whole sections replaced; sections given as dicts merge."""
    d = to_dict(cfg)
    return from_dict(_merge(d, sections))


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"config {where or 'root'} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)} in {where or 'root'}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp = hints[name]
        label = f"{where}.{name}" if where else name
        if _is_section(tp):
            kwargs[name] = _build(tp, value, label)
        else:
            kwargs[name] = _coerce(tp, value, label)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, label: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{label} must be a list")
        return tuple(_coerce(item_tp, v, label) for v in value)
    if tp is Mapping[str, Any]:  # a free table (strategy.params): checked by its consumer
        if not isinstance(value, Mapping):
            raise ConfigError(f"{label} must be a table, not {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{label}: union types are not supported in config")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{label} must be a boolean, not {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{label} must be an integer, not {value!r}")
        try:
            return int(value) if isinstance(value, (int, str)) else _fail(label, "integer", value)
        except ValueError:
            raise ConfigError(f"{label} must be an integer, not {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{label} must be a number, not {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{label} must be a number, not {value!r}") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise ConfigError(f"{label} must be finite")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{label} must be a string, not {value!r}")
        return value
    raise ConfigError(f"{label}: unsupported config type {tp}")


def _fail(label: str, what: str, value: Any) -> Any:
    raise ConfigError(f"{label} must be an {what}, not {value!r}")


# ---------------------------------------------------------------------------- secrets
@dataclass(frozen=True, kw_only=True)
class Secrets:
    """Exchange credentials. ``repr`` never shows them."""

    api_key: str = field(default="", repr=False)
    api_secret: str = field(default="", repr=False)

    @property
    def present(self) -> bool:
        return bool(self.api_key and self.api_secret)

    def values(self) -> tuple[str, ...]:
        """The secret strings, for the log redaction processor."""
        return tuple(v for v in (self.api_key, self.api_secret) if v)


SECRET_DIR = Path("/run/secrets")


def secrets(env: Mapping[str, str] | None = None, secret_dir: Path = SECRET_DIR) -> Secrets:
    """``BINANCE_API_KEY``/``BINANCE_API_SECRET`` from the environment, else ``*_FILE``, else
    docker secrets (``/run/secrets/binance_api_key``). Never from a config file."""
    env = os.environ if env is None else env

    def one(name: str) -> str:
        if env.get(name):
            return env[name].strip()
        explicit = env.get(f"{name}_FILE")
        path = Path(explicit) if explicit else secret_dir / name.lower()
        if not explicit and not path.exists():
            return ""  # no docker secret: demo and paper modes need no keys
        try:
            return path.read_text().strip()
        except OSError as exc:  # named or present but unreadable: a deployment error, not "no key"
            raise ConfigError(f"cannot read secret file {path} for {name}: {exc.strerror or exc}") from None

    return Secrets(api_key=one("BINANCE_API_KEY"), api_secret=one("BINANCE_API_SECRET"))
