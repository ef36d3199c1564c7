"""The execution shell built: around the mode's broker (``venue.brokers`` says which broker),
from what the brain offers (``execution_parts.BrainPort``), through the shell's one port onto
the brain (``BrainHost``; ``ReplayHost`` in replay: the ticks' clock for everything), with
its dispatcher, synchronous journal and intent log (``build``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import structlog

from common import bus, service
from common.config import AegisConfig, Endpoints
from services.brain import dispatcher as dsp
from services.brain import execution, intent_log, recovery, risk
from services.brain.config import trader_config
from services.brain.execution_parts import BrainPort
from venue import wirestamp
from venue.filters import SymbolFilters
from venue.port import Broker
from venue.brokers import LazyBroker, broker_kind, make_broker, make_user_stream, symbol_filters

log = structlog.get_logger(__name__)
DISPATCH_WORKERS = 4


@dataclass
class Trading:
    execution: execution.Execution
    dispatcher: dsp.Dispatcher | dsp.InlineDispatcher
    sync: bus.SyncJournal
    intents: intent_log.IntentLog | None = None

    def close(self) -> None:
        link = self.execution.user_stream
        if link is not None:
            link.client.stop(timeout_s=3.0)  # closes the listenKey too
        self.dispatcher.close(timeout_s=3.0)
        self.execution.broker.close()
        self.sync.close()
        if self.intents is not None:
            self.intents.close()


class BrainHost:
    """The execution shell's port onto the running brain (``execution_parts.Host``): the wall
    clock and the monotonic clock, the synchronous journal, the live symbol rules."""

    def __init__(self, brain: BrainPort, sync: bus.SyncJournal, filters: Mapping[str, SymbolFilters]) -> None:
        self.brain, self.sync, self.filters = brain, sync, filters

    def journal_sync(self, body: object) -> object:
        return self.sync.write(body)

    def publish(self, body: object, journal: bool = True) -> None:
        self.brain.publish_exec(body, journal)

    def quote(self, symbol: str) -> risk.Quote | None:
        return self.brain.quote(symbol)

    def learn(self, features: Mapping[str, float], outcome_r: float) -> None:
        self.brain.learn(features, outcome_r)

    def symbol_filters(self) -> Mapping[str, SymbolFilters]:
        return self.filters

    def symbols(self) -> list[str]:
        return list(self.brain.ring.symbol_names())

    def clock_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_s(self) -> float:
        return time.monotonic()

    def block_reason(self) -> str:
        return self.brain.trading_block_reason()


class ReplayHost(BrainHost):
    """Replay is deterministic: every clock (order times, timers, the kill switch's day) is the
    exchange clock of the ticks, and a journal write is stamped with it like every other
    decision."""

    def journal_sync(self, body: object) -> object:
        return self.sync.write(body, self.brain.now_ns())

    def clock_ms(self) -> int:
        return self.brain.clock_ms()

    def mono_s(self) -> float:
        return self.brain.clock_ms() / 1000.0


def build(cfg: AegisConfig, brain: BrainPort, ep: Endpoints) -> Trading:
    """Replay mode is deterministic: the paper broker answers inline (no threads) and every
    clock is the ticks' (``ReplayHost``)."""
    replay = cfg.mode == "replay"
    # the symbol rules the feed published (and the database kept), read live: the filters of
    # the risk checks and the paper broker, and ccxt's markets, are made of them
    rules = lambda: brain.symbol_info  # noqa: E731
    filters = symbol_filters(cfg, rules)
    broker: Broker  # the LazyBroker below is a stand-in for one (every call goes to the broker it builds)
    if broker_kind(cfg) == "ccxt":  # importing ccxt costs ~0.5 s: not on the way to ready
        broker = LazyBroker(lambda: make_broker(cfg, brain.book_top, rules=rules), name="ccxt")
    else:
        broker = make_broker(cfg, brain.book_top, brain.clock_ms if replay else None, rules=rules,
                             order_filters=filters)
    wirestamp.install_http()  # tick-to-trade: REST requests stamp when their bytes are on the socket
    disp: dsp.Dispatcher | dsp.InlineDispatcher = (
        dsp.InlineDispatcher() if replay else dsp.Dispatcher(DISPATCH_WORKERS, name="brain-dispatch"))
    sync = bus.SyncJournal("brain", ep.journal_sync, timeout_ms=cfg.trading.journal_ack_timeout_ms)
    # replay keeps "journal, then act" (its lock-step journal is part of what makes it repeatable)
    intents = None if replay or not cfg.trading.intent_log else open_intent_log(cfg)
    host = (ReplayHost if replay else BrainHost)(brain, sync, filters)
    ex = execution.Execution(
        cfg=trader_config(cfg), broker=broker, dispatcher=disp, host=host, db_path=service.db_path(cfg),
        balance_poll_s=cfg.trading.balance_poll_s, flatten_on_halt=cfg.trading.flatten_on_halt,
        user_stream=None if replay else make_user_stream(cfg), intents=intents,
        exit_lane_on=cfg.trading.exit_lane)
    if ex.user_stream is not None:
        ex.user_stream.client.start()  # its own thread: connects (and reconnects) on its own
    log.info("brain.trading", broker=broker.name, mode=cfg.mode, user_stream=ex.user_stream is not None)
    return Trading(execution=ex, dispatcher=disp, sync=sync, intents=intents)


def intent_log_path(cfg: AegisConfig) -> Path:
    """Beside the database (the data directory survives restarts; the run directory may not)."""
    return service.db_path(cfg).parent / intent_log.FILE_NAME


def open_intent_log(cfg: AegisConfig, now_ns: int | None = None) -> intent_log.IntentLog:
    """The intent log, its records older than ``recovery.USED_IDS_DAYS`` dropped first (they were
    journaled at an earlier start, or are past any recovery's window): the file stays small."""
    path = intent_log_path(cfg)
    got = intent_log.IntentLog.read(path)
    since_ns = (now_ns if now_ns is not None else time.time_ns()) - recovery.USED_IDS_DAYS * 86_400 * 10**9
    keep = [it for it in got.intents if it.at_ns >= since_ns]
    if len(keep) != len(got.intents) or got.corrupt or got.torn:
        intent_log.compact(path, keep)
        log.info("brain.intent_log_compacted", path=str(path), kept=len(keep), dropped=len(got.intents) - len(keep),
                 damaged_bytes=got.dropped_bytes)
    return intent_log.IntentLog(path, flush_interval_ms=cfg.trading.intent_log_flush_ms)
