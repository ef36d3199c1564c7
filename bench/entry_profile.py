"""Where an entry decision's CPU goes: the tick-to-trade bench's candle-close case, in-process,
in a tight loop, timed with the deciding thread's CPU clock (``time.thread_time_ns``).

    python -m bench.entry_profile [--iterations 2000] [--candles bench|real] [--cprofile N]

What runs. The brain's real pieces, as ``bench/tick_to_trade_section.py`` wires them: a real
shared-memory ring the loop writes BTCUSDT trade ticks into, the real ``Brain`` (ring reader,
numba core, candles, ``analyse`` with the real SMC strategy behind the strategy API) and the
real ``Execution`` (trader, risk, rotation, order state machine, the real intent log on disk,
the real dispatcher). One thing is a stand-in: the broker (its ``submit`` returns at once on a
dispatcher worker): this tool times the deciding thread up to the hand-over to the dispatcher,
not the hop and the socket (the bench itself measures those). As in the bench, when the
strategy has no setup on a candle, a wrapper of ``strategy.on_candle`` returns one BUY signal
(stop 2 % below, target 2 % above), so every iteration decides one entry.

One iteration: a tick in the current minute, then the tick of the next minute that closes the
candle (timed: ``Brain.poll`` on that tick, i.e. the ring read, the numba core, the candle,
the analysis, the signal, the trader, the intent record, the dispatcher's submit); the trader's
state is then put back to what it was before the entry (no position: the next candle enters
again), as the bench's exit does, but for the client ids used so far: they stay used, as in
the bench. ``--used-ids N`` starts with N ids known already (a brain restarted inside a running
stack reads a week of them from the journal).

``--candles bench``: the bench's synthetic candles (flat at one price, a low 3 % below: the
bench's exit tick). ``--candles real``: the repository's real BTCUSDT December 2024 1m bars
(open, high, low and close ticks per minute), where the SMC strategy also finds its own setups.

Output: the whole decision's CPU time (p50, mean, p90; no probes inside), then the same loop
with a probe around each step (inclusive CPU per call, the probe's own cost measured and
subtracted), then optionally cProfile's top functions. Numbers depend on the machine's load:
read them next to the load average printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import io
import math
import os
import pstats
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bench.harness import NullBus
from common.fastcopy import replace

SYMBOL = "BTCUSDT"
CANDLE_MS = 60_000
STOP_PCT, TARGET_PCT, TOUCH_PCT = 0.02, 0.02, 0.03
EQUITY = 10_000.0
REAL_BARS = Path(__file__).resolve().parent.parent / "services" / "exchange_sim" / "data" / "BTCUSDT_1m_2024-12.csv"

# probes: (label, owner getter, attribute). Inclusive CPU per call of each; nested ones are
# inside their parents (the table is indented by nesting as listed here)
PROBES: tuple[tuple[str, str, str], ...] = (
    ("poll (whole entry decision)", "brain", "poll"),
    ("  ring read_batch", "reader", "read_batch"),
    ("  numba process_batch", "brain", "process"),
    ("  emit_candles", "brain", "emit_candles"),
    ("    analyse", "brain", "analyse"),
    ("      candle_from", "strategy_api", "candle_from"),
    ("      runner.on_candle", "runner", "on_candle"),
    ("        strategy.on_candle (+bench signal)", "strategy", "on_candle"),
    ("          smc update (base)", "strategy", "smc_update"),
    ("          _step_htf", "strategy", "_step_htf"),
    ("          _retest", "strategy", "_retest"),
    ("          _apply", "strategy", "_apply"),
    ("      runner.on_timer", "runner", "on_timer"),
    ("      runner.signal", "runner", "signal"),
    ("      execution.on_signal", "ex", "on_signal"),
    ("        ctx", "ex", "ctx"),
    ("        trader.on_signal", "trader_entries", "on_signal"),
    ("          rotation.decide", "rotation", "decide"),
    ("          held_positions", "trader_entries", "held_positions"),
    ("          enter_trade", "trader_entries", "enter_trade"),
    ("            _check_entry", "trader_entries", "_check_entry"),
    ("              entry_qty", "trader_entries", "entry_qty"),
    ("              entry_limit", "trader_entries", "entry_limit"),
    ("              portfolio", "trader_entries", "portfolio"),
    ("              risk.check_order", "risk", "check_order"),
    ("              risk.check_liquidation", "risk", "check_liquidation"),
    ("            order_from_request", "om", "order_from_request"),
    ("        apply", "ex", "apply"),
    ("          _log_then_send", "ex", "_log_then_send"),
    ("            intents.append", "intents", "append"),
    ("            _held_send", "ex", "_held_send"),
    ("              _event", "ex", "_event"),
    ("                trader.on_order_event", "trader_fills", "on_order_event"),
    ("                dispatch", "ex", "dispatch"),
    ("                  dispatcher.submit", "dispatcher", "submit"),
    ("              publish (null bus)", "ex", "publish"),
)


class _StubBroker:
    """The broker's ``submit``: returns at once (the hop and the socket are not timed here)."""

    name = "stub"

    def submit(self, spec: Any) -> None:
        return None


def _filters() -> Any:
    from venue.filters import SymbolFilters

    d = Decimal
    return SymbolFilters(symbol=SYMBOL, tick_size=d("0.10"), step_size=d("0.001"), min_qty=d("0.001"),
                         min_notional=d("100"), max_qty=d("1000"), min_price=d("556.80"), max_price=d("4529764"),
                         market_step_size=d("0.001"), market_max_qty=d("120"), percent_up=d("1.0500"),
                         percent_down=d("0.9500"))


def _bars(kind: str, n: int) -> list[tuple[float, float, float, float]]:
    """(open, high, low, close) per minute: the bench's flat candles, or the real month."""
    if kind == "bench":
        out = []
        for i in range(n):
            p = round(97_000.0 + 150.0 * math.sin(i / 37.0), 1)
            out.append((p, p, round(p * (1 - TOUCH_PCT), 1), round(p * (1 - TOUCH_PCT), 1)))
        return out
    with REAL_BARS.open() as fh:
        rows = list(csv.DictReader(fh))
    out = [(float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"])) for r in rows]
    reps = -(-n // len(out))
    return (out * reps)[:n]


class Rig:
    """The brain and its execution, wired as the tick-to-trade bench wires them."""

    def __init__(self, tmp: Path, candles: str, used_ids: int = 0) -> None:
        from common import config, records, wire
        from common.ring import Ring
        from services.brain import app as brain_app, kernels
        from services.brain import dispatcher as dsp
        from services.brain import execution as execution_mod
        from services.brain import execution_startup
        from services.brain import execution_build, intent_log, risk, strategy, trader
        from services.brain.config import trader_config

        cfg = config.from_dict({
            "mode": "demo", "brain": {"candle_interval_s": CANDLE_MS // 1000},
            "trading": {"order_transport": "ws", "exchange_protection": False, "user_stream": False,
                        "max_orders_per_minute": 100_000, "max_order_notional_usdt": 1e9,
                        "max_total_notional_usdt": 1e9, "max_leverage": 100.0, "daily_loss_limit_usdt": 1e9,
                        "max_drawdown_pct": 100.0, "stale_data_ms": 10 * 24 * 3600 * 1000, "cooldown_s": 0.0,
                        "risk_per_trade_pct": 0.1, "balance_poll_s": 3600.0}})
        self.ring_path = str(tmp / "ring")
        Ring.create(self.ring_path, 1 << 16).close()
        self.ring = Ring.attach(self.ring_path)
        self.writer = self.ring.writer()
        self.sid = self.ring.register_symbol(SYMBOL)
        bus = NullBus()
        self.brain = brain_app.Brain(cfg, self.ring, bus, bus, None)  # type: ignore[arg-type]
        kernels.warm_up(self.brain)
        self.intents = intent_log.IntentLog(tmp / "intents.log")
        self.dispatcher = dsp.Dispatcher(execution_build.DISPATCH_WORKERS, name="entry-profile")
        self.ex = execution_mod.Execution(
            cfg=trader_config(cfg), broker=_StubBroker(), dispatcher=self.dispatcher,  # type: ignore[arg-type]
            host=execution_build.BrainHost(self.brain, None, {SYMBOL: _filters()}),  # type: ignore[arg-type]
            db_path=tmp / "none.db", balance_poll_s=3600.0, intents=self.intents)
        ex = self.ex
        ex.filters = {SYMBOL: _filters()}
        ex.configured = {SYMBOL}
        ex.equity = EQUITY
        ex.st = trader.TraderState(risk=risk.initial_state(EQUITY, time.time_ns() // 1_000_000),
                                   used_cids=frozenset(f"ae-OLD{i}-0" for i in range(used_ids)))
        ex.phase = execution_startup.Phase.READY
        self.brain.execution = ex
        self.rec = records.empty(1)
        self.seq = 0
        self.kind = int(records.Kind.AGG_TRADE)
        self.want = False
        self.price = 0.0
        self.made = 0
        self._real_on_candle = strategy.on_candle
        self._strategy = strategy
        self._wire = wire
        self._trader = trader
        self.bars = _bars(candles, 1)  # replaced by run()
        self.minute = 0  # set by run(): the first candle's open

        real = strategy.on_candle

        def on_candle(st, candle, interval_s, model_state):
            st2, sigs = real(st, candle, interval_s, model_state)
            if self.want and not sigs:
                p = self.price
                self.made += 1
                sigs = [wire.SignalGenerated(signal_id=f"ep{self.made}", symbol=SYMBOL, side="BUY", entry=p,
                                             stop=p * (1 - STOP_PCT), target=p * (1 + TARGET_PCT), confidence=0.9,
                                             strategy="bench")]
            self.want = False
            return st2, sigs

        strategy.on_candle = on_candle

    def tick(self, price: float, ms: int) -> None:
        self.seq += 1
        r = self.rec[0]
        r["event_ms"], r["id"], r["price"], r["qty"] = ms, self.seq, price, 0.01
        r["symbol_id"], r["kind"], r["flags"], r["recv_ns"] = self.sid, self.kind, 0, time.time_ns()
        self.writer.write(self.rec[0])

    def cycle(self, bar: tuple[float, float, float, float], timed: Callable[[], None]) -> None:
        """One minute: its ticks, then the closing tick of the next minute (``timed``)."""
        o, h, low, c = bar
        m = self.minute
        for i, px in enumerate((o, h, low, c)):
            self.tick(px, m + 1 + i)
            self.brain.poll()
        self.minute = m + CANDLE_MS
        self.price = c
        self.want = True
        self.tick(c, self.minute + 1)  # closes the candle: analysis, signal, entry
        st0 = self.ex.st
        timed()
        if self.ex.st is st0 or not self.ex.st.trades:
            raise RuntimeError(f"no entry decided at minute {m}: {dict(self.ex.st.counters)}")
        # flat again (the bench's exit does this through the exchange); the ids used so far stay
        # used, as in the bench (every entry and exit id of the run is remembered)
        self.ex.st = replace(st0, used_cids=self.ex.st.used_cids)
        self.ex.journal_unseen.clear()
        self.ex.delayed.clear()
        self.dispatcher.drain()

    def close(self) -> None:
        from common.ring import Ring

        self._strategy.on_candle = self._real_on_candle
        self.dispatcher.close(timeout_s=3.0)
        self.intents.close()
        self.ring.close()
        Ring.unlink(self.ring_path)


@contextlib.contextmanager
def probes(rig: Rig, sums: dict[str, list[int]]) -> Iterator[None]:
    """Wrap each step of ``PROBES`` with a thread-CPU probe; undone on exit."""
    from research import strategy_api
    from services.brain import app as brain_app
    from services.brain import risk, rotation, strategy, trader_entries, trader_fills
    from venue import orders as om

    owners: dict[str, Any] = {"brain": rig.brain, "reader": rig.brain.reader, "runner": rig.brain.runner,
                              "ex": rig.ex, "intents": rig.intents, "dispatcher": rig.dispatcher,
                              "strategy": strategy, "trader_entries": trader_entries,
                              "trader_fills": trader_fills, "rotation": rotation, "risk": risk,
                              "om": om, "strategy_api": strategy_api}
    clock = time.thread_time_ns
    undo: list[Callable[[], None]] = []

    def wrap(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        acc = sums.setdefault(label, [0, 0])

        def probed(*a: Any, **k: Any) -> Any:
            t0 = clock()
            try:
                return fn(*a, **k)
            finally:
                acc[0] += clock() - t0
                acc[1] += 1
        return probed

    for label, owner, attr in PROBES:
        obj = owners[owner]
        had = attr in vars(obj) if not isinstance(obj, type(os)) else True
        old = getattr(obj, attr)
        setattr(obj, attr, wrap(label, old))
        if isinstance(obj, type(os)) or had:
            undo.append(lambda obj=obj, attr=attr, old=old: setattr(obj, attr, old))
        else:
            undo.append(lambda obj=obj, attr=attr: delattr(obj, attr))
    # the brain module reads strategy_api.candle_from through the module: patched above
    assert brain_app.strategy_api is strategy_api
    try:
        yield
    finally:
        for u in reversed(undo):
            u()


def probe_cost_ns(n: int = 20_000) -> float:
    """One probe's own CPU (two thread clock reads and the wrapper call), per call."""
    clock = time.thread_time_ns
    acc = [0, 0]

    def f() -> None:
        return None

    def probed() -> None:
        t0 = clock()
        try:
            return f()
        finally:
            acc[0] += clock() - t0
            acc[1] += 1
    t0 = clock()
    for _ in range(n):
        probed()
    outer = (clock() - t0) / n
    t0 = clock()
    for _ in range(n):
        f()
    bare = (clock() - t0) / n
    return outer - bare


def run(iterations: int, candles: str, profile_n: int, warm: int, used_ids: int = 0) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    from common import log as log_mod

    log_mod.configure(level="warning")  # as the bench: an info line per order would be timed too
    rig = Rig(tmp, candles, used_ids)
    bars = _bars(candles, warm + 2 * iterations + profile_n)
    # minutes before now, one per candle (the quote must not look stale to risk's check)
    rig.minute = (time.time_ns() // 1_000_000) // CANDLE_MS * CANDLE_MS - (len(bars) + 5) * CANDLE_MS
    k = 0
    out: dict[str, Any] = {"iterations": iterations, "candles": candles, "used_ids": used_ids,
                           "load_before": os.getloadavg()}
    try:
        for _ in range(warm):  # the strategy's warm-up (SMC swings, ATRs), caches
            rig.cycle(bars[k], rig.brain.poll)
            k += 1
        # 1) the whole decision, no probes inside
        whole: list[int] = []
        wall: list[int] = []

        def timed() -> None:
            w0, t0 = time.perf_counter_ns(), time.thread_time_ns()
            rig.brain.poll()
            whole.append(time.thread_time_ns() - t0)
            wall.append(time.perf_counter_ns() - w0)
        for _ in range(iterations):
            rig.cycle(bars[k], timed)
            k += 1
        for key, xs in (("whole_us", whole), ("whole_wall_us", wall)):
            w = np.array(xs, np.int64) / 1e3
            out[key] = {"p50": float(np.percentile(w, 50)), "mean": float(w.mean()),
                        "p90": float(np.percentile(w, 90)), "min": float(w.min())}
        # 2) per step
        sums: dict[str, list[int]] = {}
        with probes(rig, sums):
            for _ in range(iterations):
                rig.cycle(bars[k], rig.brain.poll)
                k += 1
        cost = probe_cost_ns()
        steps = []
        depth_of = {label: (len(label) - len(label.lstrip())) // 2 for label, _, _ in PROBES}
        labels = [label for label, _, _ in PROBES]
        for i, label in enumerate(labels):
            total, calls = sums.get(label, [0, 0])
            if not calls:
                steps.append((label, 0, 0.0))
                continue
            # probes nested inside this one (deeper, listed after it until one of its depth or less)
            inner = 0
            for later in labels[i + 1:]:
                if depth_of[later] <= depth_of[label]:
                    break
                inner += sums.get(later, [0, 0])[1]
            us = (total - (calls + inner) * cost) / calls / 1e3  # its own probe and those inside it
            steps.append((label, calls / iterations, us))
        out["probe_cost_ns"] = cost
        out["steps"] = steps
        # 3) cProfile
        if profile_n:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(profile_n):
                rig.cycle(bars[k], rig.brain.poll)
                k += 1
            prof.disable()
            s = io.StringIO()
            ps = pstats.Stats(prof, stream=s).sort_stats("tottime")
            ps.print_stats(30)
            out["cprofile_tottime"] = s.getvalue()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(45)
            out["cprofile_cumulative"] = s.getvalue()
    finally:
        rig.close()
        shutil.rmtree(tmp, ignore_errors=True)
        out["load_after"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.entry_profile", description=__doc__.split("\n")[0])
    p.add_argument("--iterations", type=int, default=2000, help="timed entries per pass (default 2000)")
    p.add_argument("--candles", choices=("bench", "real"), default="bench")
    p.add_argument("--warm", type=int, default=300, help="untimed candles first (default 300)")
    p.add_argument("--cprofile", type=int, default=0, metavar="N", help="then N entries under cProfile")
    p.add_argument("--used-ids", type=int, default=0, metavar="N",
                   help="client ids the trader knows already at the start (a restarted brain reads a week of "
                        "them from the journal; default 0)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    a = p.parse_args(argv)
    res = run(a.iterations, a.candles, a.cprofile, a.warm, a.used_ids)
    if a.json is not None:
        import json

        a.json.write_text(json.dumps(res, indent=1))
    la, lb = res["load_before"], res["load_after"]
    print(f"entry decision, deciding thread's CPU, candles={res['candles']}, {res['iterations']} entries a pass, "
          f"{res['used_ids']} ids known at the start; "
          f"load average {la[0]:.2f} before, {lb[0]:.2f} after")
    w = res["whole_us"]
    print(f"whole decision (Brain.poll on the closing tick, no probes): p50 {w['p50']:.1f} us, "
          f"mean {w['mean']:.1f}, p90 {w['p90']:.1f}, min {w['min']:.1f}")
    w = res["whole_wall_us"]
    print(f"the same, wall clock (CPU plus waits: the GIL when another thread holds it, preemption): "
          f"p50 {w['p50']:.1f} us, mean {w['mean']:.1f}, p90 {w['p90']:.1f}, min {w['min']:.1f}")
    print(f"per step (inclusive CPU per call, probe cost {res['probe_cost_ns']:.0f} ns subtracted):")
    for label, per, us in res["steps"]:
        print(f"  {label:<48s} {us:8.1f} us  x{per:.2f}")
    if "cprofile_tottime" in res:
        print(res["cprofile_tottime"])
        print(res["cprofile_cumulative"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
