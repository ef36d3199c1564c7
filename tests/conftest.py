"""Shared test fixtures: private run directories and processes that are always ended."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import structlog

REPO = Path(__file__).resolve().parents[1]
# Everything a test reads is inside the repository (tests/data/SOURCES.md says where each
# file came from and under which licence). The real market data the exchange sim ships
# with lives next to it and is read from there, not copied twice.
TEST_DATA = REPO / "tests" / "data"
USDM_DATA = TEST_DATA / "binance_usdm"
SMC_DATA = TEST_DATA / "smc" / "EURUSD"
SIM_DATA = REPO / "services" / "exchange_sim" / "data"
HFT_CAPTURE = SIM_DATA / "hftbacktest_btcusdt_20240808.gz"
BTC_1M_CSV = SIM_DATA / "BTCUSDT_1m_2024-12.csv"
BTC_15M_CSV = SIM_DATA / "BTCUSDT_15m_2024.csv"


# make test runs on two pytest-xdist workers (--dist loadfile --no-loadscope-reorder: files are
# handed out in collection order). These files take a minute or more each: collected first,
# each worker starts with one of them and none is left alone with one at the end while the
# other idles. Every other test keeps its order.
LONGEST_FIRST = (
    "tests/chaos/test_chaos_kills.py",
    "tests/integration/test_dashboard_browser.py",
    "tests/integration/test_bench_smoke.py",
    "tests/unit/research/test_backtest_skip_idle.py",
    "tests/integration/test_replay.py",
    "tests/integration/test_host_lost.py",
    "tests/integration/test_supervisor.py",
    "tests/integration/test_stack_e2e.py",
    "tests/integration/test_modes.py",
    "tests/property/test_risk_props.py",
    "tests/property/test_order_state_machine.py",
    "tests/unit/brain/smc/test_smc_causal.py",
)


def pytest_collection_modifyitems(session, config, items):
    """The longest files first (LONGEST_FIRST), everything else in its usual order."""
    rank = {f: i for i, f in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


# structlog's configuration as the session began (before any test or import configured it)
_STRUCTLOG_AT_START = {**structlog.get_config(), "processors": list(structlog.get_config()["processors"])}


def _structlog_as_at_start() -> None:
    """Put structlog's global configuration back as the session began. The processor list is
    refilled in place (as structlog.testing.capture_logs does): loggers bound earlier keep a
    reference to that list."""
    processors = structlog.get_config()["processors"]
    processors[:] = _STRUCTLOG_AT_START["processors"]
    structlog.configure(**{**_STRUCTLOG_AT_START, "processors": processors})


@pytest.fixture(autouse=True)
def _logging_isolated():
    """Every test starts with structlog configured as at session start and leaves it so, and
    leaves the stdlib root logger's level and handlers as it found them. Code run in-process
    configures logging globally (the research CLIs and backtest tasks filter below WARNING,
    common.log.configure swaps the renderer and the stream): without this a test that reads log
    lines with structlog.testing.capture_logs passes or fails depending on which test ran
    before it in the same process (pytest-xdist workers, another order)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    _structlog_as_at_start()
    yield
    _structlog_as_at_start()
    # pytest's own capture handlers come and go with each phase: they are left to pytest
    ours = [h for h in handlers if not type(h).__module__.startswith("_pytest")]
    for h in list(root.handlers):
        if h not in ours and not type(h).__module__.startswith("_pytest"):
            root.removeHandler(h)
    for h in ours:
        root.addHandler(h)  # a no-op for a handler still there
    root.setLevel(level)


def aiohttp_forgets_stopped_servers() -> None:
    """Empty aiohttp's module-level cache of middleware chains (``aiohttp.web_app``'s
    ``_cached_build_middleware``, an ``lru_cache`` of 1,024 entries in aiohttp 3.14, keyed
    by the request's handler). A handler that is a bound method of a server object keeps that
    server, and everything it holds, alive after the server stopped: a service runs one server
    for its whole life, so only a test process pays, one stopped server per test that started
    one. The in-process exchange holds its replay's arrays, about 450 MB a test, so one
    pytest-xdist worker grew past 4 GB in a full run. The cache is rebuilt on the next request,
    so emptying it changes nothing for a server still running. A server is made of reference
    cycles (its event loop's callbacks), so it is freed by a full collection, run here only
    when the cache held something (the tests that served HTTP in this process)."""
    cache = getattr(sys.modules.get("aiohttp.web_app"), "_cached_build_middleware", None)
    if callable(getattr(cache, "cache_clear", None)) and cache.cache_info().currsize:
        cache.cache_clear()
        gc.collect()


@pytest.fixture(autouse=True)
def _stopped_servers_freed():
    """After every test, no stopped aiohttp server is kept alive by aiohttp's own cache."""
    yield
    aiohttp_forgets_stopped_servers()


@pytest.fixture
def short_tmp():
    """A short private directory (ipc socket paths must stay under 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="ag-", dir="/tmp"))
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Procs:
    """Starts processes and guarantees each is ended by its pid at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, argv, **kw) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(argv, **kw)
        self.started.append(p)
        return p

    def python(self, *args, **kw) -> subprocess.Popen:
        return self.start([sys.executable, *args], **kw)

    def end_all(self) -> None:
        for p in self.started:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.started:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


@pytest.fixture
def procs():
    pr = Procs()
    yield pr
    pr.end_all()


def stack_env(run_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a private stack: its own run dir, data dir and shm dir.

    The stack replays the real tick capture (``sim.source = "ticks"``, 4,500 ticks/s) and
    hydrates 500 candles: dense real data within seconds, which is what these tests count.
    The program's default is the candles demo; a test of it passes ``AEGIS_SIM__SOURCE``
    (and the rest) in ``extra``."""
    env = dict(os.environ)
    env.update({
        "AEGIS_RUN_DIR": str(run_dir / "run"),
        "AEGIS_DATA_DIR": str(run_dir / "data"),
        "AEGIS_RING__SHM_DIR": str(run_dir),
        "AEGIS_SUPERVISOR__METRICS_PORT": "0",
        "AEGIS_DASHBOARD__PORT": "0",
        "AEGIS_SIM__SOURCE": "ticks",
        "AEGIS_FEED__HYDRATE_CANDLES": "500",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env
