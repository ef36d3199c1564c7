"""The local exchange on its own event-loop thread inside the test process, for tests whose
exchange must outlive the brain they start and kill (``test_intent_log_crash``,
``test_history_adoption``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from decimal import Decimal
from typing import Iterator

import requests

from services.exchange_sim import capture as capture_mod
from services.exchange_sim.config import SimParams
from services.exchange_sim.server import SimServer


@contextlib.contextmanager
def exchange_in_thread(symbol: str, symbols: int = 2) -> Iterator[str]:
    """Start the sim (replaying the bundled capture), wait until ``symbol`` has a book, yield
    its base URL; stop it and join its thread on the way out."""
    ready, box = threading.Event(), {}

    def run() -> None:
        async def main() -> None:
            server = SimServer(SimParams(symbols=symbols), capture=capture_mod.load())
            box["port"] = await server.start()
            box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await box["stop"].wait()
            await server.stop()

        asyncio.run(main())

    thread = threading.Thread(target=run, name="sim", daemon=True)
    thread.start()
    assert ready.wait(60), "the exchange did not start"
    base = f"http://127.0.0.1:{box['port']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            r = requests.get(f"{base}/fapi/v1/ticker/bookTicker", params={"symbol": symbol}, timeout=5)
            if r.status_code == 200 and Decimal(r.json().get("bidPrice", "0")) > 0:
                break
            assert time.monotonic() < deadline, "no book"
            time.sleep(0.05)
        yield base
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
