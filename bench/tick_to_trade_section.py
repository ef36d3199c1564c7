"""Tick-to-trade on loopback (issue 17, "Performance"): the brain's real path, WebSocket API
next to ccxt REST.

What runs where. The exchange is the real ``exchange_sim`` in its own process (forked,
pinned to the first CPU, replaying the bundled capture) on 127.0.0.1. This process is the
brain without the rest of the stack: a real shared-memory ring the bench writes synthetic
BTCUSDT trade ticks into (``recv_ns`` = ``time.time_ns()`` at the write, as the feed stamps
them), the real ``Brain`` (ring reader, numba core, candles, ``analyse`` with the real SMC
strategy, ``watch_prices``) and the real ``Execution`` (trader, synchronous journal, the
dispatcher's threads) with the mode's real broker: ``WsBroker`` (``order.place`` over
``/ws-fapi/v1``) or ``CcxtBroker`` (``POST /fapi/v1/order`` through ccxt). Tick-to-trade is
the brain's own instrumentation (``services.brain.tick_to_trade``, ``venue.wirestamp``).

One cycle (two orders):

- entry: a tick in the next minute closes the candle; the brain analyses it with the real
  strategy; when the strategy has no setup on these synthetic candles (the usual case) the
  bench's wrapper of ``strategy.on_candle`` returns one BUY signal (entry at the sim's price,
  stop 2 % below, target 2 % above), so the analysis is inside the figure; the trader sizes
  it, journals it, the dispatcher sends a MARKET order;
- exit: once the entry's fill is known, a tick 3 % below the entry touches the stop: the
  trader sends the reduce-only MARKET exit.

Stand-ins, said plainly: the journal is a SQLite INSERT + COMMIT (WAL, synchronous=FULL, so
one fsync) in the brain's thread, not the orchestrator behind a ZeroMQ round trip (the stack's
journal adds that hop); the exchange-held stops (``exchange_protection``) and the user data
stream are off, so every order in the figure is an entry or an exit decided on a tick; risk
limits are opened wide (the order brake, notional caps, the cooldown) and so is the rate-limit
governor (as in the orders section: 1,000 orders in a minute would wait for Binance's budgets,
and that wait is not the path's latency).

``python -m bench --only tick_to_trade --out bench/results/ttt`` runs this section alone.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import CTX, Children, consumer_cpu, cpus, log, pin, producer_cpu, summarize
from bench.orders_section import SYMBOL, _bid, _serve_sim

CANDLE_MS = 60_000
WAIT_S = 10.0  # longest wait for a fill (a lost order would show up as a failed section)
STOP_PCT, TARGET_PCT, TOUCH_PCT = 0.02, 0.02, 0.03


class _NullBus:
    def publish(self, *_args: Any, **_kw: Any) -> None:
        return None

    def drain(self, *_args: Any) -> list:
        return []

    def close(self) -> None:
        return None


class _Journal:
    """The synchronous journal's stand-in: one row, one fsync, per call (see the module doc)."""

    def __init__(self, path: Path) -> None:
        import msgspec

        self.enc = msgspec.msgpack.Encoder()
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS journal (body BLOB)")
        self.ns = np.zeros(0, np.int64)
        self._samples: list[int] = []

    def write(self, body: Any) -> None:
        t0 = time.perf_counter_ns()
        self.conn.execute("BEGIN")
        self.conn.execute("INSERT INTO journal VALUES (?)", (self.enc.encode(body),))
        self.conn.execute("COMMIT")
        self._samples.append(time.perf_counter_ns() - t0)


def _config(base: str, transport: str):
    from common import config

    return config.from_dict({
        "mode": "demo",
        "feed": {"rest_url": base},
        "brain": {"candle_interval_s": CANDLE_MS // 1000},
        "trading": {"order_transport": transport, "exchange_protection": False, "user_stream": False,
                    "max_orders_per_minute": 100_000, "max_order_notional_usdt": 1e9,
                    "max_total_notional_usdt": 1e9, "max_leverage": 100.0, "daily_loss_limit_usdt": 1e9,
                    "max_drawdown_pct": 100.0, "stale_data_ms": 10 * 24 * 3600 * 1000, "cooldown_s": 0.0,
                    "risk_per_trade_pct": 0.1, "balance_poll_s": 3600.0},
    })


def _path(base: str, transport: str, cycles: int, tag: str, tmp: Path, disk: Path) -> dict[str, Any]:
    """``cycles`` entries and exits through one brain on ``transport``; the brain's figures."""
    from common import records, wire
    from common.ring import Ring
    from services.brain import __main__ as brain_main
    from services.brain import dispatcher as dsp
    from services.brain import execution as execution_mod
    from services.brain import strategy, wiring
    from venue import wirestamp
    from venue.brokers import filters_fn, make_broker

    cfg = _config(base, transport)
    ring_path = str(tmp / f"ring-{transport}-{tag}")
    Ring.create(ring_path, 1 << 16).close()
    ring = Ring.attach(ring_path)
    writer = ring.writer()
    sid = ring.register_symbol(SYMBOL)
    bus = _NullBus()
    brain = brain_main.Brain(cfg, ring, bus, bus, None)  # type: ignore[arg-type]
    brain_main.warm_up(brain)
    journal = _Journal(disk / f"journal-{transport}-{tag}.db")  # on disk: its fsync is real
    wirestamp.install_http()
    from venue import ratelimit

    big = 10**9  # the path is measured, not Binance's budgets (1,000 orders in a minute would hit them)
    ratelimit._SHARED = ratelimit.Governor(ratelimit.Limits(weight_per_min=big, orders_per_10s=big,
                                                            orders_per_min=big))
    broker = make_broker(cfg, brain.book_top)
    disp = dsp.Dispatcher(wiring.DISPATCH_WORKERS, name="bench-dispatch")
    ex = execution_mod.Execution(
        cfg=wiring.trader_config(cfg), broker=broker, dispatcher=disp, journal_sync=journal.write,
        publish=brain.publish_exec, quote=brain.quote, learn=brain.learn,
        filters_fn=filters_fn(cfg), db_path=tmp / f"none-{transport}-{tag}.db",
        symbols_fn=lambda: list(ring.symbol_names()), balance_poll_s=cfg.trading.balance_poll_s)
    brain.execution = ex

    rec = records.empty(1)
    state = {"price": 0.0, "want": False, "n": 0}
    event_ms = [(time.time_ns() // 1_000_000) // CANDLE_MS * CANDLE_MS]
    seq = [0]

    def tick(price: float, ms: int) -> None:
        seq[0] += 1
        r = rec[0]
        r["recv_ns"] = time.time_ns()
        r["event_ms"] = ms
        r["id"] = seq[0]
        r["price"] = price
        r["qty"] = 0.01
        r["symbol_id"] = sid
        r["kind"] = int(records.Kind.AGG_TRADE)
        r["flags"] = 0
        writer.write(r)

    real = strategy.on_candle

    def on_candle(st, candle, interval_s, model_state):
        st2, sigs = real(st, candle, interval_s, model_state)
        if state["want"] and not sigs:
            p = state["price"]
            state["n"] += 1
            sigs = [wire.SignalGenerated(signal_id=f"ttt{tag}{transport[0]}{state['n']}", symbol=SYMBOL, side="BUY",
                                         entry=p, stop=p * (1 - STOP_PCT), target=p * (1 + TARGET_PCT),
                                         confidence=0.9, strategy="bench")]
        state["want"] = False
        return st2, sigs

    idle_s = cfg.brain.idle_sleep_us / 1e6
    spin_s = cfg.brain.spin_before_sleep_us / 1e6

    def pump(done, what: str) -> None:
        """The brain's own loop (``services.brain.__main__.run``): read, execution, and the
        same idle policy (spin ``spin_before_sleep_us``, then sleep ``idle_sleep_us``), which
        is what lets the dispatcher's threads have the GIL."""
        deadline = time.monotonic() + WAIT_S
        idle_since = 0.0
        while not done():
            got = brain.poll()
            now = time.monotonic()
            if got:
                idle_since = 0.0
            elif not idle_since:
                idle_since = now
            elif now - idle_since > spin_s:
                time.sleep(idle_s)
            ex.poll()
            if now > deadline:
                raise RuntimeError(f"{transport}: no {what} within {WAIT_S} s; {ex.snapshot()}")

    strategy.on_candle = on_candle
    try:
        tick(float(_bid(base)), event_ms[0] + 1)  # the first candle opens; the execution starts
        pump(lambda: ex.ready, "start-up")
        for i in range(cycles):
            p = float(_bid(base))
            state["price"] = p
            tick(p, event_ms[0] + 2)
            pump(lambda: brain.ticks_read == seq[0], "read")
            state["want"] = True
            event_ms[0] += CANDLE_MS
            tick(p, event_ms[0] + 1)  # closes the candle: analysis, signal, entry
            pump(lambda: SYMBOL in ex.st.trades and ex.st.trades[SYMBOL].position > 0, "entry fill")
            tick(p * (1 - TOUCH_PCT), event_ms[0] + 2)  # touches the stop: exit
            pump(lambda: SYMBOL not in ex.st.trades, "exit fill")
            if i % 100 == 99:
                log(f"[tick_to_trade] {transport}: {i + 1}/{cycles} cycles")
        snap = ex.ttt.snapshot()
        counters = dict(ex.counters)
        trader_counts = dict(ex.st.counters)
        jn = np.array(journal._samples, np.int64)
    finally:
        strategy.on_candle = real
        disp.close(timeout_s=3.0)
        broker.close()
        ring.close()
        Ring.unlink(ring_path)
    return {"ttt": snap, "journal_standin_us": {"p50": float(np.percentile(jn, 50)) / 1e3 if jn.size else None,
                                                "p99": float(np.percentile(jn, 99)) / 1e3 if jn.size else None},
            "execution_counters": counters, "trader_counters": trader_counts}


def run(*, quick: bool, repeats: int) -> dict[str, Any]:
    from common import log as log_mod

    log_mod.configure(level="warning")  # an info line per order would be measured too
    cycles = 100 if quick else 500  # two orders a cycle: >= 1,000 orders per path in a full run
    runs: dict[str, list[dict[str, Any]]] = {"ws": [], "rest": []}
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # the ring; the journal goes to the repo's disk
    with Children() as ch, tempfile.TemporaryDirectory(dir=shm) as td, \
            tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as dd:
        port, ready, stop = CTX.Value("i", 0), CTX.Event(), CTX.Event()
        sim = ch.start("sim", _serve_sim, port, ready, stop, cpu=producer_cpu())
        if not ready.wait(60):
            sim.result(1)
            raise RuntimeError("the sim did not start")
        base = f"http://127.0.0.1:{port.value}"
        deadline = time.monotonic() + 30
        while _bid(base) <= 0:
            if time.monotonic() > deadline:
                raise RuntimeError("no BTCUSDT book")
            time.sleep(0.05)
        before = cpus()
        pin(consumer_cpu())
        try:
            for rep in range(repeats):
                for path in (("ws", "rest") if rep % 2 == 0 else ("rest", "ws")):
                    got = _path(base, path, cycles, str(rep), Path(td), Path(dd))
                    runs[path].append(got)
                    t = got["ttt"]
                    ex_, en_ = (t.get("exit") or {}).get(path) or {}, (t.get("entry") or {}).get(path) or {}
                    log(f"[tick_to_trade] repeat {rep + 1}/{repeats} {path:4s}: exit p50 {ex_.get('p50_us', 0):.0f} us "
                        f"p99 {ex_.get('p99_us', 0):.0f} us ({ex_.get('count', 0)}); entry p50 "
                        f"{en_.get('p50_us', 0):.0f} us p99 {en_.get('p99_us', 0):.0f} us ({en_.get('count', 0)}); "
                        f"stages {t.get('stages_us')}")
        finally:
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, before)
            stop.set()
        sim_stats = sim.result(60)
    out: dict[str, Any] = {
        "config": {"cycles_per_path_per_repeat": cycles, "repeats": repeats,
                   "orders_per_path_per_repeat": 2 * cycles,
                   "exchange": "exchange_sim in its own process on 127.0.0.1 (pinned to CPU %s); the brain "
                               "in this process (CPU %s)" % (producer_cpu(), consumer_cpu()),
                   "journal": "stand-in: SQLite INSERT + COMMIT, WAL, synchronous=FULL, in the brain's thread",
                   "fill_known": "not measured here (user data stream off)"},
        "sim": sim_stats}
    for path, rs in runs.items():
        fig: dict[str, Any] = {}
        for kind in ("exit", "entry"):
            vals = [((r["ttt"].get(kind) or {}).get(path) or {}) for r in rs]
            fig[kind] = {"count": sum(v.get("count", 0) for v in vals),
                         "p50_us": summarize([v["p50_us"] for v in vals if v]),
                         "p99_us": summarize([v["p99_us"] for v in vals if v])}
        stages = {}
        for s in ("decide", "journal", "hop", "send"):
            vals = [r["ttt"].get("stages_us", {}).get(s) for r in rs]
            vals = [v for v in vals if v]
            if vals:
                stages[s] = {"p50_us": summarize([v["p50"] for v in vals]), "p99_us": summarize([v["p99"] for v in vals])}
        fig["stages"] = stages
        fig["journal_standin_us"] = [r["journal_standin_us"] for r in rs]
        fig["unstamped"] = sum(r["ttt"].get("unstamped", 0) for r in rs)
        fig["execution_counters"] = [r["execution_counters"] for r in rs]
        out[path] = fig
    return out


def headline(sec: dict[str, Any]) -> dict[str, Any]:
    def one(path: str) -> dict[str, Any]:
        f = sec[path]
        return {"exit_p50_us": f["exit"]["p50_us"]["median"], "exit_p99_us": f["exit"]["p99_us"]["median"],
                "entry_p50_us": f["entry"]["p50_us"]["median"], "fill_known_p50_us": None,
                "orders": f["exit"]["count"] + f["entry"]["count"]}

    return {"tick_to_trade": one("ws"), "tick_to_trade_rest": one("rest")}
