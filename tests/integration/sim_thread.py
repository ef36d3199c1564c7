"""The local exchange on its own event-loop thread inside the test process, for tests that
reach into the server object (``test_ccxt_broker_sim``, ``test_user_stream_sim``) or whose
exchange must outlive the brain they start and kill (``test_intent_log_crash``,
``test_history_adoption``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from decimal import Decimal
from typing import Any, Iterator

import requests

from services.exchange_sim import recorded_market
from services.exchange_sim.config import SimParams
from services.exchange_sim.server import SimServer


@contextlib.contextmanager
def server_in_thread(params: SimParams, capture: Any) -> Iterator[tuple[str, SimServer]]:
    """Start a SimServer of ``params`` replaying ``capture`` on its own thread; yield (its base
    URL, the server); stop it and join its thread on the way out."""
    ready, box = threading.Event(), {}

    def run() -> None:
        async def main() -> None:
            server = SimServer(params, capture=capture)
            box["port"], box["server"] = await server.start(), server
            box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await box["stop"].wait()
            await server.stop()

        asyncio.run(main())

    thread = threading.Thread(target=run, name="sim", daemon=True)
    thread.start()
    assert ready.wait(60), "the exchange did not start"
    try:
        yield f"http://127.0.0.1:{box['port']}", box["server"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)


def wait_for_book(base: str, symbol: str, timeout_s: float = 60.0) -> None:
    """Until the replay has given ``symbol`` a book (a bid above zero)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = requests.get(f"{base}/fapi/v1/ticker/bookTicker", params={"symbol": symbol}, timeout=5)
        if r.status_code == 200 and Decimal(r.json().get("bidPrice", "0")) > 0:
            return
        assert time.monotonic() < deadline, f"no {symbol} book"
        time.sleep(0.05)


@contextlib.contextmanager
def exchange_in_thread(symbol: str, symbols: int = 2) -> Iterator[str]:
    """The sim replaying the bundled capture, once ``symbol`` has a book: yields its base URL."""
    with server_in_thread(SimParams(symbols=symbols), recorded_market.load()) as (base, _):
        wait_for_book(base, symbol)
        yield base
