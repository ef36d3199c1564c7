"""The results as files: the JSON (every figure, the headline, the machine) and RESULTS.md
(one table per section with ratios to the alternatives, the targets met or missed).

Pure: takes the results dict, returns text. ``bench.__main__`` writes the files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.harness import fmt_rate, fmt_us

FINDINGS = Path(__file__).with_name("FINDINGS.md")

# headline key -> (section, key) and unit, exactly the keys of issue 8
HEADLINE_KEYS = (
    ("ring", "aegis_per_record"), ("ring", "aegis_batch"), ("ring", "mp_queue"),
    ("ring", "faster_fifo"), ("ring", "zmq_per_tick"), ("ring", "zmq_batch"),
    ("ring", "naive_ring"), ("feed", "aegis_frames_per_s"), ("feed", "json_loads_frames_per_s"),
    ("brain", "ticks_per_s_300_symbols"), ("e2e", "max_rate"), ("e2e", "p50_us_at_100k"),
    ("e2e", "p99_us_at_100k"), ("e2e", "drops_at_100k"),
)


def clean(obj: Any) -> Any:
    """JSON-safe: numpy scalars to Python numbers, NaN and infinities to None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(results: dict[str, Any]) -> str:
    return json.dumps(clean(results), indent=1, allow_nan=False) + "\n"


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return "n/a"
    r = a / b
    return f"{r:.1f}x" if r < 100 else f"{r:,.0f}x"


def _spread(s: dict | None) -> str:
    if not s or s.get("spread_pct") is None or not math.isfinite(s["spread_pct"]):
        return "n/a"
    return f"±{s['spread_pct'] / 2:.0f} % ({s['repeats']})"


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head))] + [_row(r) for r in rows] + [""]


# ----------------------------------------------------------------------------- targets


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 8 with the measured figure; ``met`` None when not measured."""
    h = results.get("headline", {})
    ring, feed, e2e = h.get("ring", {}), h.get("feed", {}), h.get("e2e", {})
    out: list[dict[str, Any]] = []

    def add(name: str, measured: str, target: str, met: bool | None) -> None:
        out.append({"target": name, "measured": measured, "goal": target, "met": met})

    apr, mpq, naive, batch = (ring.get(k) for k in
                              ("aegis_per_record", "mp_queue", "naive_ring", "aegis_batch"))
    if apr and mpq:
        add("ring per record >= 20x multiprocessing.Queue",
            f"{apr / mpq:.1f}x ({fmt_rate(apr)}/s vs {fmt_rate(mpq)}/s)",
            ">= 20x", apr >= 20 * mpq)
    if apr and naive:
        add("ring per record >= naive ring", f"{apr / naive:.2f}x ({fmt_rate(apr)}/s vs {fmt_rate(naive)}/s)",
            ">= 1.0x", apr >= naive)
    if batch:
        add("ring in batches >= 10M ticks/s", f"{fmt_rate(batch)}/s", ">= 10M/s", batch >= 10e6)
    fps = feed.get("aegis_frames_per_s")
    if fps:
        add("feed decode all-in <= 1 µs a frame", f"{1e9 / fps:,.0f} ns a frame ({fmt_rate(fps)} frames/s)",
            "<= 1,000 ns", 1e9 / fps <= 1000)
    pe = _get(results, "sections", "e2e", "pipelines", "ring", "paced", "100000")
    if pe:
        sustained = pe["sustained_repeats"] == pe["repeats"]
        add("e2e 100k ticks/s sustained with 0 drops",
            f"drops {e2e.get('drops_at_100k'):.0f}, "
            f"sustained in {pe['sustained_repeats']}/{pe['repeats']} runs, "
            f"feed reached {fmt_rate(pe['achieved_rate']['median'])}/s",
            "0 drops, keeps pace", sustained and e2e.get("drops_at_100k") == 0)
        add("e2e p50 at 100k <= 20 µs", f"{fmt_us(e2e.get('p50_us_at_100k'))} µs", "<= 20 µs",
            (e2e.get("p50_us_at_100k") or math.inf) <= 20)
        add("e2e p99 at 100k <= 200 µs", f"{fmt_us(e2e.get('p99_us_at_100k'))} µs "
            f"({pe['le_200us_pct']['median']:.2f} % of ticks within 200 µs)", "<= 200 µs",
            (e2e.get("p99_us_at_100k") or math.inf) <= 200)
    for key, path in (("tick_to_trade", "WebSocket API"), ("tick_to_trade_rest", "ccxt REST")):
        ttt = h.get(key)
        if not ttt:
            continue
        for fig, goal, limit in (("exit_p50_us", "<= 50 µs", 50), ("exit_p99_us", "<= 500 µs", 500),
                                 ("entry_p50_us", "<= 300 µs", 300), ("fill_known_p50_us", "<= 2,000 µs", 2000)):
            v = ttt.get(fig)
            ok = v is not None and math.isfinite(v)
            add(f"tick-to-trade {fig[:-3].replace('_', ' ')} ({path})",
                f"{fmt_us(v)} µs over {ttt.get('orders')} orders" if ok else "not measured", goal,
                (v <= limit) if ok else None)
    live = h.get("live") or {}
    for rate in ("ticks", "candles"):
        v = live.get(f"{rate}_p99_us")
        if v is not None and math.isfinite(v):
            add(f"running stack ({rate}) feed->brain p99 <= 200 µs",
                f"{fmt_us(v)} µs at {fmt_rate(live.get(f'{rate}_ticks_per_s'))} ticks/s", "<= 200 µs", v <= 200)
    bt = h.get("backtest")
    if bt:
        nt, plain = bt.get("nautilus_bars_per_s"), bt.get("plain_loop_bars_per_s")
        aegis = bt.get("aegis_ema_bars_per_s")
        if aegis:
            add("backtest, simple strategy >= 200,000 bars/s per core (issue 18)", f"{fmt_rate(aegis)} bars/s "
                f"(EMA cross; plain loop {fmt_rate(plain)})", ">= 200k/s", aegis >= 200_000)
            add("backtest, simple strategy >= 10x NautilusTrader (issue 18)",
                f"{_ratio(aegis, nt)} ({fmt_rate(aegis)} vs {fmt_rate(nt)} bars/s)" if nt else "nautilus unavailable",
                ">= 10x", (aegis >= 10 * nt) if nt else None)
        smc = bt.get("smc_candles_per_s")
        if smc:
            add("backtest, SMC strategy >= 100,000 candles/s per core (issue 18)", f"{fmt_rate(smc)} candles/s",
                ">= 100k/s", smc >= 100_000)
        up = bt.get("smc_update_p50_us")
        if up:
            add("SMC update <= 5 µs per candle per symbol, p50 (issue 18)", f"{up:.1f} µs", "<= 5 µs", up <= 5)
        rss = bt.get("stream_peak_rss_mib")
        if rss:
            add("a year of 1m bars streams in bounded memory (issue 18)",
                f"peak RSS {rss:,.0f} MiB for {bt.get('stream_symbols')} symbols", "well under 24 GiB",
                rss < 4096)
    soak = _get(results, "sections", "memory", "soak", "services")
    if soak:
        # the exchange simulator is the test double, not one of our services
        worst = max((s.get("growth_pct") or 0.0) for n, s in soak.items() if n != "exchange_sim")
        add("memory growth over a 10-minute soak < 5 %", f"{worst:+.1f} % (worst AEGIS process)", "< 5 %",
            worst < 5)
    else:
        add("memory growth over a 10-minute soak < 5 %", "not run (opt-in: --soak)", "< 5 %", None)
    return out


# ----------------------------------------------------------------------------- markdown


def _machine(m: dict[str, Any], results: dict[str, Any]) -> list[str]:
    rows = [["CPU", f"{m.get('cpu')} ({m.get('cores')} cores, {m.get('cpus_usable')} usable)"],
            ["memory", f"{m.get('memory_gib')} GiB"], ["OS", m.get("os")],
            ["Python", f"{m.get('python')} ({m.get('python_impl')})"],
            ["numpy / numba", f"{m.get('numpy')} / {m.get('numba')}"],
            ["pyzmq / libzmq", f"{m.get('pyzmq')} / {m.get('libzmq')}"],
            ["msgspec / orjson / faster-fifo",
             f"{m.get('msgspec')} / {m.get('orjson')} / {m.get('faster_fifo')}"],
            ["load average (1/5/15 min) at start / end",
             f"{m.get('loadavg_at_start')} / {results.get('loadavg_at_end')}"]]
    return _table(["", ""], rows)


def _ring(sec: dict[str, Any]) -> list[str]:
    t = sec["throughput"]
    mpq = _get(t, "mp_queue", "rate", "median")
    naive = _get(t, "naive_ring", "rate", "median")
    apr = _get(t, "aegis_per_record", "rate", "median")
    lines = ["### Throughput (records/s, producer flat out, consumer drains)", ""]
    rows = []
    for name, v in sorted(t.items(), key=lambda kv: -(kv[1]["rate"]["median"] or 0)):
        med = v["rate"]["median"]
        rows.append([f"`{name}`", v["desc"], fmt_rate(med), _spread(v["rate"]), _ratio(med, mpq),
                     _ratio(med, naive), _ratio(med, apr), max(v["lost"])])
    for name, why in sec.get("unavailable", {}).items():
        rows.append([f"`{name}`", why, "n/a", "", "", "", "", ""])
    lines += _table(["contender", "what", "median", "spread", "vs mp.Queue", "vs naive ring",
                     "vs AEGIS per record", "lost"], rows)
    for rate, per in sec["latency"].items():
        base = _get(per, "aegis_per_record", "p50", "median")
        lines += [f"### One-way latency at {int(rate) // 1000}k records/s (µs, producer stamps at send)", ""]
        rows = []
        for name, v in per.items():
            rows.append([f"`{name}`", fmt_us(v["p50"]["median"]), fmt_us(v["p99"]["median"]),
                         fmt_us(v["p999"]["median"]), fmt_us(v["max"]["median"]),
                         _spread(v["p50"]), fmt_rate(v["rate"]["median"]),
                         _ratio(v["p50"]["median"], base)])
        lines += _table(["contender", "p50", "p99", "p99.9", "max", "p50 spread", "delivered/s",
                         "p50 vs AEGIS"], rows)
    return lines


def _feed(sec: dict[str, Any]) -> list[str]:
    c = sec["contenders"]
    js = c["json_loads"]["frames_per_s"]["median"]
    oj = c["orjson_loads"]["frames_per_s"]["median"]
    rows = [[f"`{n}`", v["desc"], fmt_rate(v["frames_per_s"]["median"]), f"{v['ns_per_frame']:,.0f}",
             _spread(v["frames_per_s"]), _ratio(v["frames_per_s"]["median"], js),
             _ratio(v["frames_per_s"]["median"], oj)] for n, v in c.items()]
    return [f"Frames: {c['aegis_all_in']['frames']:,} trade + bookTicker frames of the real capture "
            f"({sec['config']['capture']}); all frames: {c['aegis_all_in_all_frames']['frames']:,}.", ""] + \
        _table(["contender", "what", "frames/s", "ns/frame", "spread", "vs json.loads",
                "vs orjson.loads"], rows)


def _brain(sec: dict[str, Any]) -> list[str]:
    pb = sec["process_batch"]
    base = pb["4096"]["ticks_per_s"]["median"]
    rows = [[b, fmt_rate(v["ticks_per_s"]["median"]), f"{1e9 / v['ticks_per_s']['median']:,.0f}",
             _spread(v["ticks_per_s"]), _ratio(v["ticks_per_s"]["median"], base)] for b, v in pb.items()]
    lines = ["`engine.process_batch` at 300 symbols (latency histogram, order check, conflation, "
             "1 m + 15 m candles):", ""]
    lines += _table(["records per call", "ticks/s", "ns/tick", "spread", "vs batch 4096"], rows)
    pc = sec.get("per_call_ns_batch_8")
    if pc:
        lines += ["Fixed cost per call, batch of 8 records (µs; best of 3):", ""]
        lines += _table(["call", "µs per call"], [[f"`{k}`", f"{v / 1e3:.2f}"] for k, v in pc.items()])
    cc = sec["candle_close_us"]
    lines += [f"Candle close inside the candle kernel: **{cc['median']:.2f} µs** per closed candle "
              f"({_spread(cc)}).", ""]
    smc = sec.get("smc_at_close") or {}
    if "update_us" in smc:
        u = smc["update_us"]
        lines += [f"Analysis at each candle close (SMC `update`, real 1 m candles from {smc['source']}, "
                  f"{smc['history_bars']} bars of history): per symbol p50 **{u['p50']:.1f} µs**, "
                  f"p99 {u['p99']:.1f} µs, mean {u['mean']:.1f} µs; all 300 symbols closing the same "
                  f"minute: **{smc['burst_300_ms']['median']:.1f} ms** ({_spread(smc['burst_300_ms'])}).", ""]
    elif smc:
        lines += [f"SMC analysis: {smc.get('unavailable')}", ""]
    return lines


def _e2e(sec: dict[str, Any]) -> list[str]:
    lines = [f"300 symbols, {sec['config']['seconds']} s per run, {sec['config']['repeats']} repeats, "
             f"sustainable = {sec['config']['sustainable']}. Latency = decode start in the feed to "
             "`process_batch` returned in the brain. CPU: busy = share of wall time doing the work; "
             "OS = CPU time the process got (both sides busy-poll while waiting, as production does).", ""]
    pipes = sec["pipelines"]
    labels = (("ring", "AEGIS ring"), ("mpq", "mp.Queue"), ("proposed", "AEGIS ring + proposed changes"))
    ring, mpq = pipes.get("ring"), pipes.get("mpq")
    rows = []
    for rate in ring["paced"]:
        for key, label in labels:
            p = pipes.get(key)
            if not p:
                continue
            v = p["paced"][rate]
            vs = (_ratio(mpq["paced"][rate]["p99"]["median"], v["p99"]["median"])
                  if key != "mpq" and mpq else "")
            rows.append([f"{int(rate) // 1000}k", label, fmt_us(v["p50"]["median"]),
                         fmt_us(v["p99"]["median"]),
                         fmt_us(v["p999"]["median"]), f"{v['le_200us_pct']['median']:.2f}",
                         _spread(v["p50"]), int(v["drops"]["max"]),
                         fmt_rate(v["achieved_rate"]["median"]), f"{v['sustained_repeats']}/{v['repeats']}",
                         f"{v['feed_busy_pct']['median']:.0f} / {v['feed_cpu_pct']['median']:.0f}",
                         f"{v['brain_busy_pct']['median']:.0f} / {v['brain_cpu_pct']['median']:.0f}",
                         f"{v['brain_mean_batch']['median']:.1f}",
                         f"{v['preempted']['median']:.0f}" if "preempted" in v else "", vs])
    lines += _table(["rate", "pipeline", "p50 µs", "p99 µs", "p99.9 µs", "% within 200 µs",
                     "p50 spread", "drops (max)",
                     "feed reached", "sustained", "feed CPU % busy / OS", "brain CPU % busy / OS",
                     "records per read", "preempted", "p99 of mp.Queue / this"], rows)
    rows = []
    for key, label in labels:
        p = pipes.get(key)
        if p:
            s = p["search"]
            rows.append([label, fmt_rate(s["max_rate"]), fmt_rate(s["first_failing_rate"]),
                         ", ".join(f"{fmt_rate(t['rate'])} {'ok' if t['sustainable'] else 'no'}"
                                   for t in s["trials"]) or "(none)"])
    lines += ["Maximum sustainable rate (ramp x1.5 from the highest rate sustained in most paced repeats, "
              f"then bisect; {ring['search']['trial_seconds']} s per trial, a rate passes if one of two "
              "tries does):", ""]
    lines += _table(["pipeline", "max sustained ticks/s", "first failing", "trials"], rows)
    if ring and mpq:
        lines += [f"Ratio of maximum sustainable rates, AEGIS ring / mp.Queue: "
                  f"**{_ratio(ring['search']['max_rate'], mpq['search']['max_rate'])}**.", ""]
    return lines


def _memory(sec: dict[str, Any]) -> list[str]:
    m = sec["at_300_symbols"]
    rows = [[n, f"{s['rss_mib']:.1f}", f"{s['pss_mib']:.1f}" if s.get("pss_mib") else "n/a",
             f"{s['anon_mib']:.1f}", f"{s['file_mib']:.1f}", f"{s['shmem_mib']:.1f}", f"{s['hwm_mib']:.1f}"]
            for n, s in sorted(m["services"].items())]
    lines = [f"`aegis run --symbols 300`, sampled every second for {m['duration_s']:.0f} s after start-up "
             f"(stack wrote {m['stack'].get('ticks_written')} ticks, "
             f"lost {m['stack'].get('ticks_lost')}):", ""]
    lines += _table(["service", "RSS MiB", "PSS MiB", "anon MiB", "file MiB", "shm MiB (ring)",
                     "peak RSS MiB"], rows)
    if sec.get("total_pss_mib"):
        lines += [f"Total PSS of the stack: **{sec['total_pss_mib']:.0f} MiB** (PSS shares the 64 MiB "
                  "ring between the processes that map it; RSS counts it in each).", ""]
    soak = sec.get("soak", {})
    if "services" in soak:
        rows = [[n, f"{s['rss_series_mib'][0]:.1f}", f"{s['rss_series_mib'][-1]:.1f}",
                 f"{s['growth_pct']:+.1f} %"]
                for n, s in sorted(soak["services"].items())]
        lines += ["Soak (10 minutes after a 1-minute warm-up):", ""]
        lines += _table(["service", "RSS first MiB", "RSS last MiB", "growth"], rows)
    else:
        lines += [f"Soak: {soak.get('skipped', 'not run')}.", ""]
    return lines


def _replay(sec: dict[str, Any]) -> list[str]:
    c = sec["config"]
    t = sec["ticks_per_s"]
    lines = [f"`aegis replay --max` of {c['frames']:,} real frames fanned out to {c['symbols']} symbols, "
             f"through the real stack (supervisor, orchestrator, brain, feed in replay mode), {c['repeats']} "
             "repeats. Rate = ticks committed / time from the first frame to the brain having read the "
             f"last batch. The feed waits for the brain after every batch (lock-step: {sec['batches']:,} "
             "batches), the price of byte-identical decisions.", ""]
    rows = [["replay, real stack, lock-step", fmt_rate(t["median"]), _spread(t)]]
    return lines + _table(["pipeline", "ticks/s", "spread"], rows)


def _replay_vs_live(results: dict[str, Any]) -> list[str]:
    rp = _get(results, "headline", "replay", "ticks_per_s")
    live = _get(results, "headline", "e2e", "max_rate")
    if not rp or not live:
        return []
    return [f"Replay / live pipeline's maximum sustainable rate (section 4, same run): "
            f"{fmt_rate(rp)}/s / {fmt_rate(live)}/s = **{_ratio(rp, live)}**.", ""]


def _orders(sec: dict[str, Any]) -> list[str]:
    c = sec["config"]
    lines = [f"{c['orders_per_path_per_repeat']:,} orders per path and repeat ({c['repeats']} repeats, "
             f"{c['warm_orders']} warm-up orders each not counted): {c['order']}. {c['exchange']}. "
             "Decision to wire = broker call to the request's last byte handed to the socket; round trip = "
             "broker call to its return with the answer parsed. Microseconds, medians over repeats.", ""]
    rows = []
    for fig, label in (("decision_to_wire", "decision to wire"), ("submit_rtt", "submit round trip"),
                       ("cancel_rtt", "cancel round trip")):
        ws, rest = sec["ws"][fig], sec["rest"][fig]
        rows.append([label, fmt_us(ws["p50"]["median"]), fmt_us(ws["p99"]["median"]),
                     fmt_us(rest["p50"]["median"]), fmt_us(rest["p99"]["median"]),
                     _ratio(rest["p50"]["median"], ws["p50"]["median"])])
    return lines + _table(["figure", "WS API p50", "WS API p99", "ccxt REST p50", "ccxt REST p99",
                           "REST / WS (p50)"], rows)


def _live(sec: dict[str, Any]) -> list[str]:
    c = sec["config"]
    lines = [f"`aegis run --duration {c['duration_s']:.0f}` (the whole stack on the local exchange), "
             f"{c['repeats']} repeat(s) per rate; the summary's feed-to-brain latency (feed receipt to the "
             "brain's read of the tick, every tick of the run) next to the synthetic end-to-end section. "
             "Load average at start and end of each run in the JSON.", ""]
    rows = []
    for rate, r in sec["rates"].items():
        ttt = r.get("tick_to_trade_us") or {}
        rows.append([rate, fmt_rate(r["ticks_per_s"]["median"]), f"{r['ticks']:,}", fmt_us(r["p50_us"]["median"]),
                     fmt_us(r["p99_us"]["median"]), fmt_us(r["max_us"]["median"]), str(r["ticks_lost"]),
                     f"{ttt.get('count', 0)} / {fmt_us(ttt.get('p50'))}"])
    return lines + _table(["source", "ticks/s", "ticks", "p50 µs", "p99 µs", "max µs", "lost",
                           "tick-to-trade count / p50 µs"], rows)
def _backtest(sec: dict[str, Any]) -> list[str]:
    c = sec["config"]
    lines = [f"{c['strategy']}, {c['bars']:,} bars of {c['data']}; {c['repeats']} repeats, engines interleaved. "
             "Each engine computes the averages by hand, one call per bar; its round trips (entry bar, exit bar) "
             "are compared with the plain loop's, its fills with the bars' closes (AEGIS buys at the ask, one "
             "tick of 0.00000001 above the close).", ""]
    aegis = _get(sec, "contenders", "aegis", "bars_per_s", "median")
    rows = []
    for name, label in (("plain_loop", "plain Python loop"), ("aegis", "AEGIS backtest (fast engine, the default)"),
                        ("aegis_shell", "AEGIS backtest (--engine shell: the live shell)"),
                        ("nautilus_trader", "NautilusTrader BacktestEngine"), ("backtrader", "backtrader")):
        r = sec["contenders"].get(name)
        if r is None:
            rows.append([label, "unavailable", "", "", "", "", ""])
            continue
        rate = r["bars_per_s"]["median"]
        cpu = r.get("cpu_bars_per_s")
        rows.append([label, fmt_rate(rate), _spread(r["bars_per_s"]), fmt_rate(cpu["median"]) if cpu else "",
                     _ratio(rate, aegis),
                     f"{r['same_as_reference']}/{r['reference_trades']}" + ("" if r["identical"] else " (differs)"),
                     f"{r['fills_at_close']}/{r['fills']} (max gap {r['max_fill_diff']:.2g})"])
    lines += _table(["engine", "bars/s", "spread", "bars/CPU-s", "/ AEGIS", "round trips = plain loop",
                     "fills at the close"], rows)
    for name, why in sec.get("unavailable", {}).items():
        lines += [f"- {name}: {why.splitlines()[-1] if why else why}"]
    if sec.get("unavailable"):
        lines += [""]
    smc, up, st = sec["smc_backtest"], sec["smc_update"], sec["stream"]
    shell = sec.get("smc_backtest_shell")
    vs = (f"; the shell engine {fmt_rate(shell['candles_per_s']['median'])} candles/s, "
          f"{fmt_rate(shell['cpu_candles_per_s']['median'])} per CPU-second" if shell else "")
    cpu = smc.get("cpu_candles_per_s")
    per_cpu = f", {fmt_rate(cpu['median'])} per CPU-second" if cpu else ""
    lines += [f"SMC strategy through the AEGIS backtest (fast engine): {fmt_rate(smc['candles_per_s']['median'])} "
              f"candles/s{per_cpu}{vs} "
              f"({smc['candles']:,} candles, {smc['signals']} signals, {smc['trades']} trades). SMC update alone "
              f"(one closed 1m candle): p50 {up['strategy_p50_us']:.1f} µs, p99 {up['strategy_p99_us']:.1f} µs with "
              f"the strategy's state; p50 {up['default_p50_us']:.1f} µs with the default one (3 timeframes)."
              + (f" The strategy's whole `on_candle` (SMC, higher timeframe, ATRs, zones, model): p50 "
                 f"{up['strategy_on_candle_p50_us']:.1f} µs, {up['strategy_on_candle_cpu_mean_us']:.1f} µs of CPU "
                 f"per candle on average." if "strategy_on_candle_p50_us" in up else ""), "",
              f"Streaming from the catalog (a fresh process, `iter_bars` in {st['batch_rows']:,}-row batches): "
              f"{st['rows']:,} bars of {st['symbols']} symbols (a year of 1m bars each, time-shifted copies of the "
              f"real month) in {st['seconds']:.1f} s ({fmt_rate(st['rows_per_s'])} bars/s); peak RSS "
              f"{st['peak_rss_mib']:,.0f} MiB ({st['rss_before_mib']:,.0f} MiB before the first bar). "
              f"Load average at the end of the section: {', '.join(f'{x:.2f}' for x in sec['loadavg'])}.", ""]
    return lines


SECTIONS = (("ring", "1. Ring: one producer process, one consumer process", _ring),
            ("feed", "2. Feed decode", _feed),
            ("brain", "3. Brain", _brain),
            ("e2e", "4. End to end: frames -> feed decode -> ring -> brain -> decision", _e2e),
            ("memory", "5. Memory", _memory),
            ("replay", "6. Replay (issue 7): a capture through the real stack at maximum speed", _replay),
            ("orders", "7. Order entry (issue 17): the WebSocket API next to ccxt REST, on loopback", _orders),
            ("live", "8. The running stack (issue 17): aegis run at two tick rates", _live),
            ("backtest", "9. Backtest (issue 18): AEGIS, a plain loop, NautilusTrader and backtrader on the same bars",
             _backtest))


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = ["# AEGIS benchmark results", "",
             f"Generated by `{results['command']}` at {results['timestamp']} "
             f"({results['mode']} mode, {results['elapsed_s']:.0f} s). Figures are medians over "
             "repeats; spread is ± half the range (max - min) as a percentage of the median, with "
             "the number of repeats. Every contender of a section ran in the same run, interleaved.", "",
             "## Machine", ""]
    lines += _machine(m, results)
    lines += ["## Headline (`bench/results/latest.json` -> `headline`)", ""]
    rows = []
    for sec, key in HEADLINE_KEYS:
        v = _get(results, "headline", sec, key)
        unit = "µs" if key.endswith("_us_at_100k") else ("" if key.startswith("drops") else "/s")
        shown = fmt_us(v) if unit == "µs" else (f"{v:.0f}" if unit == "" and v is not None else fmt_rate(v))
        rows.append([f"`{sec}.{key}`", f"{shown} {unit}".strip()])
    lines += _table(["key", "value"], rows)
    lines += ["Ring and feed figures are medians of throughput; `brain` is `process_batch` in batches "
              "of 4096; `e2e.*_at_100k` are medians over the paced repeats, except drops, the worst "
              "repeat; `e2e.max_rate` is the search's highest sustained rate.", ""]
    lines += ["## Targets of issue 8", ""]
    rows = [[t["target"], t["goal"], t["measured"],
             "met" if t["met"] else ("**MISSED**" if t["met"] is False else "not measured")]
            for t in targets(results)]
    lines += _table(["target", "goal", "measured", ""], rows)
    for key, title, render in SECTIONS:
        sec = _get(results, "sections", key)
        lines += [f"## {title}", ""]
        if sec is None:
            lines += ["Not run.", ""]
        elif "error" in sec:
            lines += ["Failed:", "", "```", sec["error"][-2000:], "```", ""]
        else:
            lines += render(sec)
            if key == "replay":
                lines += _replay_vs_live(results)
    if FINDINGS.exists():
        lines += [FINDINGS.read_text().rstrip(), ""]
    return "\n".join(lines)
