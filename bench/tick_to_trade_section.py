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

The order path is the stack's: the intent is written to the brain's local intent log (a real
file on the repository's disk, its fsync group-committed by the log's flusher thread), the
order is sent, and only then journaled (here: published to a null bus; in the stack, the
buffered ZeroMQ journal). Over the WebSocket API an order's frame is written by the deciding
thread itself: an exit by the exit lane (``services.brain.exit_lane``) before the trader has
decided it, an entry right after its candle's analysis (``Execution._send_order_now``); every
order over REST goes through the dispatcher's worker threads.

Fill known (``fill_known_p50_us``): from the exchange's fill to the fill applied in the brain
(``trader_fills.on_fill`` on the brain's thread, whichever source told it first: the user data
stream's ``ORDER_TRADE_UPDATE`` or the REST fills read after the order's answer). The sim
child stamps each TRADE event with ``time.time_ns()`` as its desk hands it to the user stream
(the fill was matched in the same call; an extra ``bench_ns`` field the brain's decoder
ignores); the bench reads the stamp from the raw frame on the stream's thread. Both clocks
are CLOCK_REALTIME on one machine.

One cycle (two orders):

- entry: a tick in the next minute closes the candle; the brain analyses it with the real
  strategy; when the strategy has no setup on these synthetic candles (the usual case) the
  bench's wrapper of ``strategy.on_candle`` returns one BUY signal (entry at the sim's price,
  stop 2 % below, target 2 % above), so the analysis is inside the figure; the trader sizes
  it, journals it, the dispatcher sends a MARKET order;
- exit: once the entry's fill is known, a tick 3 % below the entry touches the stop: the
  trader sends the reduce-only MARKET exit.

Stand-ins, said plainly: the journal is a null bus (it is written after the send, off the
path); the exchange-held stops (``exchange_protection``) are off, so every order in the figure
is an entry or an exit decided on a tick; the user data stream is on (it is the fill-known
figure's source); risk
limits are opened wide (the order brake, notional caps, the cooldown) and so is the rate-limit
governor (as in the orders section: 1,000 orders in a minute would wait for Binance's budgets,
and that wait is not the path's latency).

``python -m bench --only tick_to_trade --out bench/results/ttt`` runs this section alone.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Children, NullBus, consumer_cpu, cpus, log, pin, producer_cpu, summarize
from bench.orders_section import SYMBOL, bid, serve_sim, start_sim


def serve_sim_stamped(port, ready, stop) -> dict[str, Any]:
    """The orders section's sim child, its user stream's TRADE events stamped (``bench_ns``:
    ``time.time_ns()`` as the desk hands the event over, the fill matched in the same call)."""
    from services.exchange_sim import user_stream

    real = user_stream.UserStream.publish

    def publish(self, events):
        now = time.time_ns()
        out = []
        for e in events:
            if e.get("e") == "ORDER_TRADE_UPDATE" and e.get("o", {}).get("x") == "TRADE":
                e = {**e, "bench_ns": now}
            out.append(e)
        return real(self, out)

    user_stream.UserStream.publish = publish
    return serve_sim(port, ready, stop)

CANDLE_MS = 60_000
WAIT_S = 10.0  # longest wait for a fill (a lost order would show up as a failed section)
# a quiet market before each trigger tick (see settle() in _path); BENCH_SETTLE_MS=0 gives
# the back-to-back figure (each trigger right after the previous fill, as before 2026-12-07) ...
SETTLE_S = float(os.environ.get("BENCH_SETTLE_MS", "50")) / 1000
SETTLE_TICK_MS = 2.0  # ... one trade of the symbol every 2 ms (500 a second: a busy BTCUSDT)
STOP_PCT, TARGET_PCT, TOUCH_PCT = 0.02, 0.02, 0.03


def _bench_host(brain: Any, cfg: Any) -> Any:
    """The brain's own host (``execution_build.BrainHost``, as in the brain), with no synchronous journal
    (the intent-log path never uses it) and the sim's symbol filters, read from its REST
    exchangeInfo."""
    from services.brain import execution_build
    from venue.brokers import rest_url
    from venue.filters import fetch_filters

    class BenchHost(execution_build.BrainHost):
        def journal_sync(self, body: object) -> object:
            raise AssertionError(f"the intent-log path never journals synchronously ({type(body).__name__})")

        def symbol_filters(self) -> Any:
            return fetch_filters(rest_url(cfg))

    return BenchHost(brain, None, {})  # type: ignore[arg-type]


class _FillKnown:
    """Exchange fill -> fill applied in the brain, per (client id, trade id): the sim's stamp
    (read from the stream's raw frame on its thread) and the first ``trader_fills.on_fill`` of that
    trade on the brain's thread (whichever source brought it)."""

    def __init__(self, ex: Any, fills: Any) -> None:
        import orjson

        self.fills = fills
        self.stamp: dict[tuple[str, str], int] = {}  # exchange fill, sim clock
        self.recv: dict[tuple[str, str], int] = {}  # the stream frame's receipt
        self.known: dict[tuple[str, str], int] = {}  # applied on the brain's thread
        client = ex.user_stream.client
        self._client, self._on_frame, self._on_fill = client, client.on_frame, fills.on_fill
        real_frame, real_fill = client.on_frame, fills.on_fill

        def on_frame(raw: Any, recv_ns: int = 0) -> str:
            now = time.time_ns()
            try:
                e = orjson.loads(raw)
                if e.get("e") == "ORDER_TRADE_UPDATE" and "bench_ns" in e:
                    key = (str(e["o"]["c"]), str(e["o"]["t"]))
                    self.stamp[key] = int(e["bench_ns"])
                    self.recv[key] = now
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                pass
            return real_frame(raw, recv_ns)

        def on_fill(cfg, st, fill, ctx, client_order_id: str = "", **kw):
            key = (client_order_id, str(fill.trade_id))
            if key not in self.known and client_order_id in st.orders:
                self.known[key] = time.time_ns()
            return real_fill(cfg, st, fill, ctx, client_order_id=client_order_id, **kw)

        client.on_frame = on_frame
        fills.on_fill = on_fill

    def undo(self) -> None:
        self._client.on_frame = self._on_frame
        self.fills.on_fill = self._on_fill

    def result(self) -> dict[str, Any]:
        both = [k for k in self.known if k in self.stamp]
        known = np.array([self.known[k] - self.stamp[k] for k in both], np.int64)
        stream = np.array([self.recv[k] - self.stamp[k] for k in both], np.int64)
        stream_first = sum(1 for k in both if self.recv[k] <= self.known[k])

        def pct(a: np.ndarray, q: float) -> float | None:
            return float(np.percentile(a, q)) / 1e3 if a.size else None

        return {"count": len(both), "unstamped": len(self.known) - len(both),
                "p50_us": pct(known, 50), "p99_us": pct(known, 99),
                "stream_recv_p50_us": pct(stream, 50), "stream_frame_first": stream_first}


def _config(base: str, transport: str):
    from common import config

    return config.from_dict({
        "mode": "demo",
        "feed": {"rest_url": base, "ws_url": "ws://" + base.split("://", 1)[1]},  # the user stream's host
        "brain": {"candle_interval_s": CANDLE_MS // 1000},
        "trading": {"order_transport": transport, "exchange_protection": False, "user_stream": True,
                    "max_orders_per_minute": 100_000, "max_order_notional_usdt": 1e9,
                    "max_total_notional_usdt": 1e9, "max_leverage": 100.0, "daily_loss_limit_usdt": 1e9,
                    "max_drawdown_pct": 100.0, "stale_data_ms": 10 * 24 * 3600 * 1000, "cooldown_s": 0.0,
                    "risk_per_trade_pct": 0.1, "balance_poll_s": 3600.0},
    })


class _Rig:
    """One brain on ``transport`` against the sim at ``base``, wired as its ``run()`` wires it:
    its ring, bus, broker, dispatcher, intent log (on ``disk``) and execution, the fills
    timed (``_FillKnown``); ``tick`` writes one trade of the symbol into its ring (``seq``:
    how many it wrote)."""

    def __init__(self, base: str, transport: str, tag: str, tmp: Path, disk: Path) -> None:
        from common import records
        from common.ring import Ring
        from services.brain import app as brain_app, kernels
        from services.brain import dispatcher as dsp
        from services.brain import execution as execution_mod
        from services.brain import execution_build
        from services.brain.config import trader_config
        from venue import wirestamp
        from venue.brokers import make_broker

        cfg = _config(base, transport)
        from services.brain import latency

        latency.apply(cfg.brain.gil_switch_interval_us, cfg.brain.timer_slack_ns)  # as the brain's run() does
        ring_path = str(tmp / f"ring-{transport}-{tag}")
        Ring.create(ring_path, 1 << 16).close()
        ring = Ring.attach(ring_path)
        writer = ring.writer()
        sid = ring.register_symbol(SYMBOL)
        bus = NullBus()
        brain = brain_app.Brain(cfg, ring, bus, bus, None)  # type: ignore[arg-type]
        kernels.warm_up(brain)
        from services.brain import intent_log, trader_fills
        from venue.brokers import make_user_stream

        intents = intent_log.IntentLog(disk / f"intents-{transport}-{tag}.log")  # on disk: its fsync is real
        wirestamp.install_http()
        from venue import ratelimit

        big = 10**9  # the path is measured, not Binance's budgets (1,000 orders in a minute would hit them)
        ratelimit._SHARED = ratelimit.Governor(ratelimit.Limits(weight_per_min=big, orders_per_10s=big,
                                                                orders_per_min=big))
        broker = make_broker(cfg, brain.book_top)
        disp = dsp.Dispatcher(execution_build.DISPATCH_WORKERS, name="bench-dispatch")
        ex = execution_mod.Execution(
            cfg=trader_config(cfg), broker=broker, dispatcher=disp, host=_bench_host(brain, cfg),
            db_path=tmp / f"none-{transport}-{tag}.db", balance_poll_s=cfg.trading.balance_poll_s,
            user_stream=make_user_stream(cfg), intents=intents)
        brain.execution = ex
        fk = _FillKnown(ex, trader_fills)
        assert ex.user_stream is not None
        ex.user_stream.client.start()

        rec = records.empty(1)
        seq = [0]

        def tick(price: float, ms: int) -> None:
            seq[0] += 1
            r = rec[0]
            r["event_ms"] = ms
            r["id"] = seq[0]
            r["price"] = price
            r["qty"] = 0.01
            r["symbol_id"] = sid
            r["kind"] = int(records.Kind.AGG_TRADE)
            r["flags"] = 0
            r["recv_ns"] = time.time_ns()  # the feed stamps at receipt; its parse and ring write follow (~0.3 us)
            writer.write(r)

        self.ring, self.ring_path, self.brain, self.intents, self.broker, self.disp, self.ex, self.fk = (
            ring, ring_path, brain, intents, broker, disp, ex, fk)
        self.tick, self.seq = tick, seq

    def close(self) -> None:
        """Everything the rig started, stopped (the fill timing undone first)."""
        from common.ring import Ring

        self.fk.undo()
        self.ex.user_stream.client.stop(timeout_s=3.0)
        self.disp.close(timeout_s=3.0)
        self.broker.close()
        self.intents.close()
        self.ring.close()
        Ring.unlink(self.ring_path)


def _path(base: str, transport: str, cycles: int, tag: str, tmp: Path, disk: Path, start_ms: int) -> dict[str, Any]:
    """``cycles`` entries and exits through one brain on ``transport``; the brain's figures.
    Its candles start at ``start_ms``: every path of a run trades its own minutes, because a
    signal's client id is made of its symbol, candle and side, and the exchange (one sim for
    the whole run) remembers every id: a second path on the same minutes would find its
    entries there already (the brain's start-up reads the order history) and, rightly, send
    none."""
    from common import wire
    from services.brain import strategy

    rig = _Rig(base, transport, tag, tmp, disk)
    brain, ex, intents, fk, tick, seq = rig.brain, rig.ex, rig.intents, rig.fk, rig.tick, rig.seq
    state = {"price": 0.0, "want": False, "n": 0}
    event_ms = [start_ms]

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

    from services.brain import loop

    turn = loop.Loop(brain, execution=ex)  # the brain's own loop, heartbeat aside

    def pump(done, what: str) -> None:
        """Turns of the brain's own loop (``services.brain.loop``: read, conflation, execution,
        and its idle policy: spin ``spin_before_sleep_us``, then sleep ``idle_sleep_us``,
        which is what lets the dispatcher's threads have the GIL) until ``done()``."""
        deadline = time.monotonic() + WAIT_S
        while not done():
            turn.step()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{transport}: no {what} within {WAIT_S} s; {ex.snapshot()}")

    def settle(price: float, from_ms: int) -> int:
        """``SETTLE_S`` of a quiet market before the next trigger tick: a trade of the symbol at
        ``price`` (between the stop and the target) every ``SETTLE_TICK_MS``, read by the
        brain's own loop. The previous order's aftermath (its answer, its fills over REST, the
        user stream's events on two other threads) is handled meanwhile, as for a stop touched
        long after its entry, and the tick path is exercised as a live market keeps it.
        Returns the next free event time (ms)."""
        end = time.monotonic() + SETTLE_S
        at, nxt = from_ms, 0.0
        while (now := time.monotonic()) < end:
            if now >= nxt:
                tick(price, at)
                at, nxt = at + 1, now + SETTLE_TICK_MS / 1000
            turn.step()
        return at

    strategy.on_candle = on_candle
    try:
        tick(float(bid(base)), event_ms[0] + 1)  # the first candle opens; the execution starts
        pump(lambda: ex.ready, "start-up")
        for i in range(cycles):
            p = float(bid(base))
            state["price"] = p
            tick(p, event_ms[0] + 2)
            pump(lambda: brain.ticks_read == seq[0], "read")
            settle(p, event_ms[0] + 3)  # the rest of this minute (its trades: +3 ms on, a few dozen)
            state["want"] = True
            event_ms[0] += CANDLE_MS
            tick(p, event_ms[0] + 1)  # closes the candle: analysis, signal, entry
            pump(lambda: SYMBOL in ex.st.trades and ex.st.trades[SYMBOL].position > 0, "entry fill")
            at = settle(p, event_ms[0] + 2)  # the position open, the price between stop and target
            tick(p * (1 - TOUCH_PCT), at)  # touches the stop: exit
            pump(lambda: SYMBOL not in ex.st.trades, "exit fill")
            if i % 100 == 99:
                log(f"[tick_to_trade] {transport}: {i + 1}/{cycles} cycles")
        time.sleep(0.2)  # the last fill's stream frame (its stamp) if REST told the brain first
        snap = ex.ttt.snapshot()
        counters = dict(ex.counters)
        trader_counts = dict(ex.st.counters)
        fill_known = fk.result()
        log_counters = dict(intents.counters)
    finally:
        strategy.on_candle = real
        rig.close()
    return {"ttt": snap, "fill_known": fill_known, "intent_log": log_counters,
            "execution_counters": counters, "trader_counters": trader_counts}


def run(*, quick: bool, repeats: int) -> dict[str, Any]:
    from common import log as log_mod

    log_mod.configure(level="warning")  # an info line per order would be measured too
    cycles = 100 if quick else 500  # two orders a cycle: >= 1,000 orders per path in a full run
    runs: dict[str, list[dict[str, Any]]] = {"ws": [], "rest": []}
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # the ring; the journal goes to the repo's disk
    with Children() as ch, tempfile.TemporaryDirectory(dir=shm) as td, \
            tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as dd:
        base, sim, stop = start_sim(ch, serve_sim_stamped)
        before = cpus()
        pin(consumer_cpu())
        try:
            k = 0
            for rep in range(repeats):
                for path in (("ws", "rest") if rep % 2 == 0 else ("rest", "ws")):
                    k += 1  # each path its own minutes, before now (see ``_path``)
                    start_ms = (time.time_ns() // 1_000_000) // CANDLE_MS * CANDLE_MS - k * (cycles + 5) * CANDLE_MS
                    got = _path(base, path, cycles, str(rep), Path(td), Path(dd), start_ms)
                    runs[path].append(got)
                    t = got["ttt"]
                    ex_, en_ = (t.get("exit") or {}).get(path) or {}, (t.get("entry") or {}).get(path) or {}
                    log(f"[tick_to_trade] repeat {rep + 1}/{repeats} {path:4s}: exit p50 {ex_.get('p50_us', 0):.0f} us "
                        f"p99 {ex_.get('p99_us', 0):.0f} us ({ex_.get('count', 0)}); entry p50 "
                        f"{en_.get('p50_us', 0):.0f} us p99 {en_.get('p99_us', 0):.0f} us ({en_.get('count', 0)}); "
                        f"fill known p50 {got['fill_known']['p50_us']} us ({got['fill_known']['count']}); "
                        f"stages {t.get('stages_us')}")
        finally:
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, before)
            stop.set()
        sim_stats = sim.result(60)
    out: dict[str, Any] = {
        "config": {"cycles_per_path_per_repeat": cycles, "repeats": repeats, "settle_ms": SETTLE_S * 1000,
                   "settle_tick_ms": SETTLE_TICK_MS,
                   "orders_per_path_per_repeat": 2 * cycles,
                   "exchange": "exchange_sim in its own process on 127.0.0.1 (pinned to CPU %s); the brain "
                               "in this process (CPU %s)" % (producer_cpu(), consumer_cpu()),
                   "journal": "intent log (write before the send, fdatasync group-committed by its flusher "
                              "thread); the journal itself after the send (a null bus here)",
                   "fill_known": "sim's TRADE event stamp -> trader_fills.on_fill on the brain's thread (user "
                                 "stream or REST fills, whichever first)"},
        "sim": sim_stats}
    for path, rs in runs.items():
        fig: dict[str, Any] = {}
        for kind in ("exit", "entry"):
            vals = [((r["ttt"].get(kind) or {}).get(path) or {}) for r in rs]
            fig[kind] = {"count": sum(v.get("count", 0) for v in vals),
                         "p50_us": summarize([v["p50_us"] for v in vals if v]),
                         "p99_us": summarize([v["p99_us"] for v in vals if v])}
        stages: dict[str, dict[str, Any]] = {}
        for kind in ("exit", "entry"):
            for s in ("decide", "journal", "hop", "send"):
                vals = [r["ttt"].get("stages_us", {}).get(kind, {}).get(s) for r in rs]
                vals = [v for v in vals if v]
                if vals:
                    stages.setdefault(kind, {})[s] = {"p50_us": summarize([v["p50"] for v in vals]),
                                                      "p99_us": summarize([v["p99"] for v in vals])}
        fig["stages"] = stages  # per kind: an entry's decision holds the candle's analysis
        fks = [r["fill_known"] for r in rs]
        fig["fill_known"] = {"count": sum(f["count"] for f in fks),
                             "p50_us": summarize([f["p50_us"] for f in fks if f["p50_us"] is not None]),
                             "p99_us": summarize([f["p99_us"] for f in fks if f["p99_us"] is not None]),
                             "stream_recv_p50_us": summarize([f["stream_recv_p50_us"] for f in fks
                                                              if f["stream_recv_p50_us"] is not None]),
                             "runs": fks}
        fig["intent_log"] = [r["intent_log"] for r in rs]
        fig["unstamped"] = sum(r["ttt"].get("unstamped", 0) for r in rs)
        fig["execution_counters"] = [r["execution_counters"] for r in rs]
        # exits the exit lane wrote before the trader decided them (services.brain.exit_lane)
        fig["exits_by_lane"] = sum(r["execution_counters"].get("exit_lane_fired", 0) for r in rs)
        fig["entries_sent_inline"] = sum(r["execution_counters"].get("entries_sent_inline", 0) for r in rs)
        out[path] = fig
    return out


def headline(sec: dict[str, Any]) -> dict[str, Any]:
    def one(path: str) -> dict[str, Any]:
        f = sec[path]
        return {"exit_p50_us": f["exit"]["p50_us"]["median"], "exit_p99_us": f["exit"]["p99_us"]["median"],
                "entry_p50_us": f["entry"]["p50_us"]["median"],
                "fill_known_p50_us": (f["fill_known"]["p50_us"] or {}).get("median"),
                "orders": f["exit"]["count"] + f["entry"]["count"]}

    return {"tick_to_trade": one("ws"), "tick_to_trade_rest": one("rest")}
