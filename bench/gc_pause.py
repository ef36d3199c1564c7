"""How long one full garbage collection holds a started brain, with its start-up heap frozen
(``common.heap.freeze``, the brain's default: ``brain.gc_freeze``) and without.

The brain is the tick-to-trade section's (``bench.tick_to_trade_section._Rig``): the real
``Brain`` (ring reader, numba kernels, the SMC strategy) and its ``Execution`` with the
WebSocket-API broker, connected to the local exchange in a child process. In this process:
``gc.collect()`` (generation 2, what CPython runs on its own when enough objects have aged)
``--repeats`` times before the freeze, then as many times after it; the median and the
longest pause of each, the objects the collector walks, and the ratio.

    .venv/bin/python -m bench.gc_pause --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path


def _pauses_ms(n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        gc.collect()
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gc_pause", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    from bench import tick_to_trade_section as ttt
    from bench.harness import Children, loadavg
    from bench.orders_section import start_sim
    from common import heap
    from common import log as log_mod

    log_mod.configure(level="warning")
    with Children() as ch, tempfile.TemporaryDirectory() as td, tempfile.TemporaryDirectory() as dd:
        base, sim, stop = start_sim(ch, ttt.serve_sim_stamped)
        rig = ttt._Rig(base, "ws", "gc", Path(td), Path(dd))
        try:
            gc.unfreeze()
            walked_before = len(gc.get_objects())
            before = _pauses_ms(args.repeats)
            frozen = heap.freeze()
            walked_after = len(gc.get_objects())
            after = _pauses_ms(args.repeats)
            gc.unfreeze()
        finally:
            rig.close()
            stop.set()
            sim.result(60)
    med_b, med_a = statistics.median(before), statistics.median(after)
    print(f"full collection of a started brain, {args.repeats} each (load average {loadavg()}):")
    print(f"  not frozen: {walked_before:>8,} objects walked, median {med_b:8.2f} ms, longest {max(before):8.2f} ms")
    print(f"  frozen:     {walked_after:>8,} objects walked, median {med_a:8.2f} ms, longest {max(after):8.2f} ms"
          f"  ({frozen['gc_frozen']:,} frozen)")
    print(f"  ratio (median): {med_b / max(med_a, 1e-6):,.0f}x shorter")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
