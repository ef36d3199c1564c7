"""The research commands quiet the process's logging only while they run, and the functions
they call never touch it: after ``run_task``, ``aegis backtest``, ``aegis sweep`` and
``aegis walkforward`` structlog's global configuration is exactly the caller's."""

from __future__ import annotations

import io

import structlog

from common import log as log_mod
from research import backtest_cli, sweep_cli
from research import distributed as dist
from research.backtest import BacktestConfig

DEC1_MS = 1_733_011_200_000  # 2024-12-01 00:00 UTC
HOUR_MS = 3_600_000
DAY = ("--from", "2024-12-01", "--to", "2024-12-01")


def configured() -> dict:
    """A configuration of the caller's own (info level, its own stream), as a process would set it."""
    log_mod.configure(level="info", fmt="json", service="caller", stream=io.StringIO())
    return structlog.get_config()


def test_run_task_leaves_the_logging_configuration_alone(catalog):
    """A backtest task run in this process changes no part of structlog's configuration."""
    before = configured()
    cfg = BacktestConfig(catalog=catalog, symbols=("BTCUSDT",), start_ms=DEC1_MS, end_ms=DEC1_MS + HOUR_MS,
                         strategy="donchian", params={"channel_bars": 20})
    result = dist.run_task(dist.Task(name="t", cfg=cfg))
    assert isinstance(result, dist.TaskResult) and result.summary["candles"] == 60
    assert structlog.get_config() == before


def test_the_backtest_command_restores_the_logging_configuration(catalog, tmp_path):
    """aegis backtest quiets logging for its run and puts the caller's configuration back."""
    before = configured()
    assert backtest_cli.main(["--catalog", str(catalog), "--symbols", "BTCUSDT", *DAY, "--strategy", "donchian",
                              "--out", str(tmp_path / "out"), "--json"]) == 0
    assert structlog.get_config() == before


def test_the_sweep_commands_restore_the_logging_configuration(catalog, tmp_path):
    """aegis sweep and aegis walkforward, and their error path, put the caller's configuration back."""
    before = configured()
    common = ["--catalog", str(catalog), "--symbols", "BTCUSDT", "--strategy", "donchian",
              "--grid", "channel_bars=20"]
    assert sweep_cli.main([*common, *DAY, "--out", str(tmp_path / "sweep")]) == 0
    assert structlog.get_config() == before
    assert sweep_cli.walkforward_main([*common, "--from", "2024-12-01", "--to", "2024-12-02", "--train", "1",
                                       "--test", "1", "--out", str(tmp_path / "wf")]) == 0
    assert structlog.get_config() == before
    assert sweep_cli.main([*common, *DAY, "--workers", "0", "--out", str(tmp_path / "bad")]) == 2
    assert structlog.get_config() == before


def test_quieted_drops_info_inside_and_restores_after():
    """log.quieted filters events below WARNING inside the block only; the configuration
    after it is the one before it, the renderer and stream included."""
    stream = io.StringIO()
    log_mod.configure(level="info", fmt="json", service="t", stream=stream)
    before = structlog.get_config()
    logger = structlog.get_logger("t")
    with log_mod.quieted():
        logger.info("inside.info")
        logger.warning("inside.warning")
    logger.info("after.info")
    assert structlog.get_config() == before
    events = [line for line in stream.getvalue().splitlines() if line]
    assert ['"event": "inside.info"' in e for e in events] == [False, False]
    assert ['"inside.warning"' in e for e in events] == [True, False]
    assert ['"after.info"' in e for e in events] == [False, True]
