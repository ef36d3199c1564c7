"""A stopped in-process exchange is freed (tests/conftest.py ``aiohttp_forgets_stopped_servers``):
nothing of ours or of aiohttp keeps the server and its replay's arrays alive after the test."""

from __future__ import annotations

import gc
import weakref

import pytest

from services.exchange_sim import recorded_market
from services.exchange_sim.config import SimParams
from tests.conftest import aiohttp_forgets_stopped_servers
from tests.integration.sim_thread import server_in_thread, wait_for_book

pytestmark = pytest.mark.integration


def test_a_stopped_exchange_that_served_requests_is_freed():
    """The exchange serves requests (aiohttp caches each handler's middleware chain), stops,
    and once aiohttp's cache is emptied the server object is gone: before this, every such
    test kept about 450 MB alive until its worker ended."""
    with server_in_thread(SimParams(symbols=1), recorded_market.load()) as (base, server):
        wait_for_book(base, "BTCUSDT")
        ref = weakref.ref(server)
        del server
    gc.collect()
    aiohttp_forgets_stopped_servers()
    gc.collect()
    assert ref() is None
