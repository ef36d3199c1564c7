"""The local exchange in a process of its own that stamps every trade it pushes on the user data
stream with ``time.perf_counter_ns()`` (CLOCK_MONOTONIC: the same clock in every process of the
machine), so a test can measure how long a fill takes to reach the brain's trader.

    python -m tests.integration.stamped_sim PORT_FILE STAMP_FILE

Writes the port to PORT_FILE once listening; appends ``<trade id> <ns>`` per pushed trade to
STAMP_FILE (flushed at once). Runs until SIGTERM (the test's ``Procs`` ends it by its pid).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from services.exchange_sim import recorded_market
from services.exchange_sim.config import SimParams
from services.exchange_sim.server import SimServer


async def main(port_file: Path, stamp_file: Path) -> None:
    server = SimServer(SimParams(symbols=3), capture=recorded_market.load())
    port = await server.start()
    out = stamp_file.open("a", buffering=1)
    original = server.user.publish

    def publish(events):
        t = time.perf_counter_ns()
        events = list(events)
        for e in events:
            if e.get("e") == "ORDER_TRADE_UPDATE" and e["o"].get("x") == "TRADE":
                out.write(f"{e['o']['t']} {t}\n")
        return original(events)

    server.user.publish = publish  # the desk reads it at every account change
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    port_file.write_text(str(port))
    await stop.wait()
    await server.stop()
    out.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
