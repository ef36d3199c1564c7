"""How long a minute's close holds the brain's ring reader, with 300 symbols (issue 17).

At the start of a minute every symbol's candle closes, and each base candle goes to the
strategy (the SMC one by default). Live, the closes wait in ``Brain.closes`` and each poll
analyses them until ticks wait in the ring (``Brain.analyse_closes``). This measures the
poll that closed the candles, the real ``Brain`` (ring, numba core, SMC strategy; trading off)
on a real shared-memory ring:

- ``ring quiet``: nothing else waits in the ring, so the whole minute is analysed in that
  poll (what every close cost the reader before the queue: the next tick waited this long);
- ``ticks waiting``: one more tick is in the ring behind the closing batch, so the poll
  analyses one candle and returns; the next polls read the tick, then go on with the queue.

Per minute, the closing poll's wall time; the median and the longest over ``--minutes``
minutes after ``--warm`` minutes of warm-up. The candles are synthetic (a random walk per
symbol, one trade per symbol per 10 s).

    .venv/bin/python -m bench.close_burst --symbols 300 --minutes 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.close_burst", description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--warm", type=int, default=3)
    args = ap.parse_args(argv)
    import numpy as np

    from bench.harness import NullBus, loadavg
    from common import config, records
    from common import log as log_mod
    from common.ring import Ring
    from services.brain import app as brain_app, kernels

    log_mod.configure(level="warning")
    # one read takes exactly one round of trades (a trade per symbol): the closing batch alone
    # (replay's chunk, unused here, may not exceed a read)
    cfg = config.from_dict({"mode": "paper", "trading": {"enabled": False}, "brain": {"read_batch": args.symbols},
                            "replay": {"chunk": args.symbols}})
    rng = np.random.default_rng(7)
    out: dict[str, list[float]] = {"ring quiet": [], "ticks waiting": []}
    analyses: dict[str, list[int]] = {"ring quiet": [], "ticks waiting": []}
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as td:
        path = str(Path(td) / "ring")
        Ring.create(path, 1 << 20).close()
        ring = Ring.attach(path)
        writer = ring.writer()
        sids = [ring.register_symbol(f"S{i:03d}USDT") for i in range(args.symbols)]
        bus = NullBus()
        brain = brain_app.Brain(cfg, ring, bus, bus, None)  # type: ignore[arg-type]
        kernels.warm_up(brain)
        price = 100.0 + rng.random(args.symbols) * 50
        rec = records.empty(1)
        seq = [0]

        def trade(sid: int, ms: int) -> None:
            seq[0] += 1
            r = rec[0]
            r["event_ms"], r["id"], r["price"], r["qty"] = ms, seq[0], float(price[sid]), 1.0
            r["symbol_id"], r["kind"], r["flags"], r["recv_ns"] = sid, int(records.Kind.AGG_TRADE), 0, time.time_ns()
            writer.write(r)

        def drain() -> None:
            while brain.poll() or brain.closes:
                pass

        t0 = (int(time.time() * 1000) // 60_000 - args.warm - 2 * args.minutes - 2) * 60_000
        for m in range(args.warm + 2 * args.minutes):
            base = t0 + m * 60_000
            for k in range(6):  # a trade per symbol every 10 s of the minute (the first one closes the last minute)
                price[:] *= np.exp(rng.normal(0, 0.001, args.symbols))
                for sid in sids:
                    trade(sid, base + k * 10_000 + 1)
                if k == 0:  # the closing batch, read in one poll
                    mode = "ticks waiting" if m % 2 else "ring quiet"
                    if mode == "ticks waiting":
                        trade(sids[0], base + 2)  # a tick behind the closing batch
                    t = time.perf_counter_ns()
                    got = brain.poll()
                    took = (time.perf_counter_ns() - t) / 1e3
                    if m >= args.warm and got == args.symbols:
                        out[mode].append(took)
                        analyses[mode].append(args.symbols - len(brain.closes))
                drain()
    print(f"the poll that closes a minute's candles, {args.symbols} symbols, SMC strategy "
          f"({args.minutes} minutes each, load average {loadavg()}):")
    for mode, v in out.items():
        print(f"  {mode:14s} median {statistics.median(v):10,.0f} us, longest {max(v):10,.0f} us, "
              f"candles analysed in it: {statistics.median(analyses[mode]):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
