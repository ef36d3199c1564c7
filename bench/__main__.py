"""``python -m bench``: the benchmark suite of issue 8 (what ``make bench`` runs).

    python -m bench                     # everything, ~5 minutes on 2 cores
    python -m bench --quick             # the same code paths, small sizes, ~1 minute
    python -m bench --only ring,e2e     # some sections
    python -m bench --only orders --out bench/results/orders   # order entry alone (WS API vs REST)
    python -m bench --only tick_to_trade --out bench/results/ttt   # tick-to-trade through the brain
    python -m bench --only live --repeats 1 --out bench/results/live   # aegis run's own latency, two rates
    python -m bench --only backtest --repeats 1 --out /tmp/bench-bt   # backtest engines side by side (issue 18)
    python -m bench --soak              # plus the 10-minute memory soak (opt-in)
    python -m bench --quick --out DIR   # results into DIR (tests), not bench/

Writes ``<out>/<timestamp>.json`` and ``<out>/latest.json`` (every figure, the machine and
the ``headline`` object whose keys are fixed by issue 8), and the markdown tables
(``bench/RESULTS.md`` by default, ``<out>/RESULTS.md`` with ``--out``). A section that
fails is recorded with its traceback and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench import results_text
from bench.harness import loadavg, log, machine, timed

BENCH_DIR = Path(__file__).resolve().parent
SECTION_NAMES = ("ring", "feed", "brain", "e2e", "memory", "replay", "orders", "tick_to_trade", "live", "backtest")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (~1 minute)")
    p.add_argument("--out", type=Path, help="results directory (default bench/results)")
    p.add_argument("--md", type=Path, help="markdown path (default bench/RESULTS.md, or <out>/RESULTS.md)")
    p.add_argument("--only", default=",".join(SECTION_NAMES),
                   help=f"comma-separated sections ({','.join(SECTION_NAMES)})")
    p.add_argument("--repeats", type=int, help="repeats per figure (default 3, quick 1)")
    p.add_argument("--soak", action="store_true", help="also the 10-minute memory soak")
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTION_NAMES)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def run_sections(args: argparse.Namespace) -> dict:
    from bench import (backtest_section, brain_section, e2e_section, feed_section, memory_section, orders_section,
                       live_section, replay_section, ring_section, tick_to_trade_section)

    modules = {"ring": ring_section, "feed": feed_section, "brain": brain_section,
               "e2e": e2e_section, "memory": memory_section, "replay": replay_section, "orders": orders_section,
               "tick_to_trade": tick_to_trade_section, "live": live_section,
               "backtest": backtest_section}
    repeats = args.repeats or (1 if args.quick else 3)
    sections: dict = {}
    headline: dict = {}
    for name in SECTION_NAMES:
        if name not in args.only.split(","):
            continue
        mod = modules[name]
        with timed(f"section {name}"):
            try:
                kw = {"do_soak": args.soak} if name == "memory" else {}
                sections[name] = mod.run(quick=args.quick, repeats=repeats, **kw)
                if name == "tick_to_trade":  # issue 17: its keys sit at the headline's top level
                    headline.update(mod.headline(sections[name]))
                elif hasattr(mod, "headline"):
                    headline[name] = mod.headline(sections[name])
            except Exception:  # noqa: BLE001 - record it, run the other sections
                sections[name] = {"error": traceback.format_exc()}
                log(sections[name]["error"])
    return {"sections": sections, "headline": headline, "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    stamp = datetime.now(timezone.utc)
    cmd = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    results = {"timestamp": stamp.isoformat(timespec="seconds"), "mode": "quick" if args.quick else "full",
               "command": cmd, "machine": machine()}
    log(f"[bench] {results['machine']['cpu']}, {results['machine']['cores']} cores, Python "
        f"{results['machine']['python']}, numpy {results['machine']['numpy']}, numba "
        f"{results['machine']['numba']}, pyzmq {results['machine']['pyzmq']}; load "
        f"{results['machine']['loadavg_at_start']}")
    results.update(run_sections(args))
    results["loadavg_at_end"] = loadavg()
    results["elapsed_s"] = time.monotonic() - started
    results["targets"] = results_text.targets(results)

    out = args.out or BENCH_DIR / "results"
    out.mkdir(parents=True, exist_ok=True)
    text = results_text.to_json(results)
    (out / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}.json").write_text(text)
    (out / "latest.json").write_text(text)
    md = args.md or (args.out / "RESULTS.md" if args.out else BENCH_DIR / "RESULTS.md")
    md.write_text(results_text.markdown(results_text.clean(results)))
    log(f"[bench] wrote {out / 'latest.json'} and {md} in {results['elapsed_s']:.0f} s")
    for t in results["targets"]:
        state = "met" if t["met"] else ("MISSED" if t["met"] is False else "not measured")
        log(f"[bench] target {t['target']}: {t['measured']} -> {state}")
    failed = [n for n, s in results["sections"].items() if "error" in s]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
