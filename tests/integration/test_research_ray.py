"""Research jobs on a local Ray (one session for this module, ended in teardown with no Ray
process left): the same backtest with 1 and 2 workers writes byte-identical files, a split
run of one symbol equals the one-account run, an Optuna sweep is the same with 1 and 2
workers, a task that raises on Ray is retried and then reported by name, and a walk-forward
writes separate in-sample and out-of-sample sections with a model trained on the past only.

Data: the repository's real BTCUSDT 1m bars of December 2024 (research.localarchive), imported
twice, as BTCUSDT and as BTCCOPYUSDT (the same bars under a second name, so that a job has two
symbols to split)."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import pytest

from research import backtest_cli, sweep_cli
from research import distributed as dist
from research.ingest import run_import

pytestmark = pytest.mark.integration

SYMBOLS = "BTCUSDT,BTCCOPYUSDT"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    from research.localarchive import build_archive

    root = build_archive(tmp_path_factory.mktemp("archive"))
    cat = tmp_path_factory.mktemp("cat")
    for z in sorted(root.rglob("monthly/klines/BTCUSDT/1m/*.zip")):
        assert run_import(catalog=cat, path=z).ok
        assert run_import(catalog=cat, path=z, symbol="BTCCOPYUSDT").ok
    return cat


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray (2 CPUs, loopback) for the module; afterwards none of its processes is left."""
    import ray.cloudpickle  # imported before the session on purpose: the loopback set-up must still hold

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the failing task below
    with dist.local_ray(2) as tmp:
        yield tmp
    deadline = time.monotonic() + 30
    while dist.ray_processes(tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert dist.ray_processes(tmp) == []


def _listening(pids: list[int]) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* shows them) of the TCP sockets these pids listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                out.append(f[1].split(":")[0])
    return out


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def test_the_local_ray_listens_on_loopback_only(ray_session):
    """Every listening socket of the session's processes (and ours) is on 127.0.0.1 / ::1."""
    addrs = _listening([*dist.ray_processes(ray_session), os.getpid()])
    assert addrs and set(addrs) <= LOOPBACK, addrs


def _files(out: Path) -> tuple[bytes, bytes]:
    return (out / "trades.csv").read_bytes(), (out / "summary.json").read_bytes()


def test_one_and_two_workers_write_byte_identical_files(catalog, ray_session, tmp_path):
    """Donchian on two symbols over 2024-12-01..02: --workers 1 (in this process) and --workers 2
    (Ray) give the same bytes; each symbol is its own account, so the two copies of the same
    bars give the same per-symbol numbers, and BTCUSDT's trades are those of a one-account run."""
    common = ["--catalog", str(catalog), "--strategy", "donchian", "--symbols", SYMBOLS, "--from", "2024-12-01",
              "--to", "2024-12-02", "--no-progress"]
    assert backtest_cli.main([*common, "--workers", "1", "--out", str(tmp_path / "w1")]) == 0
    assert backtest_cli.main([*common, "--workers", "2", "--out", str(tmp_path / "w2")]) == 0
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")
    s = json.loads((tmp_path / "w2" / "summary.json").read_text())
    assert s["per_symbol"]["BTCUSDT"] == s["per_symbol"]["BTCCOPYUSDT"]
    assert s["candles"] == 2 * 2880 and s["trades"] == 2 * s["per_symbol"]["BTCUSDT"]["trades"] > 0
    assert backtest_cli.main([*common[:4], "--symbols", "BTCUSDT", *common[6:], "--out", str(tmp_path / "one")]) == 0
    one = list(csv.DictReader((tmp_path / "one" / "trades.csv").open()))
    split = [r for r in csv.DictReader((tmp_path / "w2" / "trades.csv").open()) if r["symbol"] == "BTCUSDT"]
    assert one == split
    html = (tmp_path / "w2" / "report.html").read_text()
    assert "Per symbol" in html and "Calibration" in html and "src='http" not in html and "<script" not in html


def test_an_optuna_sweep_is_the_same_with_one_and_two_workers(catalog, ray_session, tmp_path):
    """Four TPE trials in rounds of two over one day: the same sets, scores and best set."""
    common = ["--catalog", str(catalog), "--strategy", "donchian", "--symbols", "BTCUSDT", "--from", "2024-12-01",
              "--to", "2024-12-01", "--grid", "channel_bars=10..60", "--grid", "rr=1.5,2,3", "--optuna", "4",
              "--batch", "2", "--objective", "net", "--no-progress"]
    assert sweep_cli.main([*common, "--workers", "1", "--out", str(tmp_path / "a")]) == 0
    assert sweep_cli.main([*common, "--workers", "2", "--out", str(tmp_path / "b")]) == 0
    a = (tmp_path / "a" / "sweep.json").read_bytes()
    assert a == (tmp_path / "b" / "sweep.json").read_bytes()
    assert len(json.loads(a)["ranked"]) == 4


def explode_on_boom(task):
    if task.name == "boom":
        raise RuntimeError("no such partition")
    return task.name


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def test_a_task_that_raises_on_ray_is_reported_by_name(ray_session):
    """The raising task is retried, then named in TasksFailed with its error; nothing is dropped."""
    with pytest.raises(dist.TasksFailed) as e:
        dist.execute([_Named("ok-1"), _Named("boom"), _Named("ok-2")], explode_on_boom, workers=2, retries=1)
    assert list(e.value.failures) == ["boom"]
    assert "RuntimeError" in e.value.failures["boom"] and "no such partition" in e.value.failures["boom"]
    assert dist.execute([_Named("ok-1"), _Named("ok-2")], explode_on_boom, workers=2) == ["ok-1", "ok-2"]


def test_walkforward_keeps_in_sample_and_out_of_sample_apart(catalog, ray_session, tmp_path):
    """SMC, 2024-12-01..05, train 2 days, test 1: three windows; every out-of-sample trade opens
    inside a test window; each test run's model starts from its train window's model (its
    outcomes = the train trades + the test trades); the report has both sections, OOS first."""
    out = tmp_path / "wf"
    assert sweep_cli.walkforward_main([
        "--catalog", str(catalog), "--strategy", "smc", "--symbols", "BTCUSDT", "--from", "2024-12-01",
        "--to", "2024-12-05", "--grid", "rr=1.5,2", "--train", "2", "--test", "1", "--workers", "2",
        "--no-progress", "--out", str(out)]) == 0
    wf = json.loads((out / "walkforward.json").read_text())
    assert [(w["train_to_ms"] == w["test_from_ms"]) for w in wf["windows"]] == [True, True, True]
    oos = list(csv.DictReader((out / "oos_trades.csv").open()))
    assert len(oos) == wf["oos"]["trades"] == sum(w["oos"]["trades"] for w in wf["windows"]) > 0
    for t in oos:
        assert any(w["test_from_ms"] <= int(t["opened_ms"]) < w["test_to_ms"] for w in wf["windows"])
    for w in wf["windows"]:
        assert w["oos"]["model_outcomes"] == w["is"]["trades"] + w["oos"]["trades"]
    assert wf["is"]["trades"] == sum(w["is"]["trades"] for w in wf["windows"])
    html = (out / "report.html").read_text()
    assert 0 < html.index("OUT-OF-SAMPLE") < html.index("IN-SAMPLE")
