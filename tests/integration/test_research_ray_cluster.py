"""`aegis backtest` and `aegis sweep --ray-address` on a Ray cluster that exists outside the
command, as a user with a cluster runs them: a head started by `ray start --head` on 127.0.0.1
(2 CPUs, no dashboard, usage statistics off, token authentication with a test token, its files
in a private temporary folder), the commands run as subprocesses from another folder with a
relative catalog path. They write the same bytes as the embedded local Ray and as `--workers 1`,
and they leave the cluster running (a second command after them runs on it). Teardown ends the
cluster's processes by their pids (found by the private folder in their command line; never
`ray stop`, which would end every Ray of this user on the machine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from research import distributed as dist
from research.ingest import run_import

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
TOKEN = "aegis0test0token0" + "0" * 15
BACKTEST = ["--strategy", "donchian", "--symbols", "BTCUSDT,BTCCOPYUSDT", "--from", "2024-12-01", "--to",
            "2024-12-02", "--no-progress"]
SWEEP = ["--strategy", "donchian", "--symbols", "BTCUSDT,BTCCOPYUSDT", "--from", "2024-12-01", "--to", "2024-12-01",
         "--grid", "channel_bars=20,40", "--grid", "rr=2", "--objective", "net", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree(marker: str) -> None:
    for _ in range(3):
        for pid in dist.ray_processes(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.5)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with the catalog ``cat`` (the repository's real BTCUSDT bars of December 2024,
    also imported as BTCCOPYUSDT): the commands run in it and name the catalog relatively."""
    from research.localarchive import build_archive

    root = build_archive(tmp_path_factory.mktemp("archive"))
    work = tmp_path_factory.mktemp("work")
    for z in sorted(root.rglob("monthly/klines/BTCUSDT/1m/*.zip")):
        assert run_import(catalog=work / "cat", path=z).ok
        assert run_import(catalog=work / "cat", path=z, symbol="BTCCOPYUSDT").ok
    return work


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on 127.0.0.1 outside the commands: yields (address, env, temp dir); its
    processes are ended by pid at teardown and its folder removed."""
    if not RAY.is_file():
        pytest.skip(f"no ray CLI next to {sys.executable}")
    tmp = tempfile.mkdtemp(prefix="aegis-rc-", dir="/tmp")  # short: Ray's socket paths stay < 107 bytes
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "TMPDIR": tmp}
    try:
        started = subprocess.run(
            [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tmp}",
             f"--object-store-memory={dist.OBJECT_STORE_BYTES}"],
            env=env, cwd=tmp, capture_output=True, text=True, timeout=180)
        if started.returncode != 0:
            pytest.skip(f"ray start cannot run on this machine: {started.stderr.strip()[-400:]}")
        yield f"127.0.0.1:{port}", env, tmp
    finally:
        _kill_tree(tmp)
        left = dist.ray_processes(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        assert left == []


def _run(procs, cli: str, args: list[str], env: dict, cwd: Path, timeout_s: float = 300) -> None:
    env = {k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}  # as a user's shell
    p = procs.python("-m", f"research.{cli}", *args, env={**env, "PYTHONPATH": str(REPO)}, cwd=str(cwd),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=timeout_s)
    assert p.returncode == 0, (out, err[-2000:])


def _files(out: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in names}


def _cluster_cpus(address: str, env: dict) -> str:
    """`ray status` of the cluster: its CPU line (the cluster is up and has its 2 CPUs)."""
    st = subprocess.run([str(RAY), "status", "--address", address], env=env, capture_output=True, text=True,
                        timeout=120)
    assert st.returncode == 0, st.stderr[-1000:]
    return next(line.strip() for line in st.stdout.splitlines() if line.strip().endswith(" CPU"))


def test_a_backtest_on_the_cluster_writes_the_embedded_bytes_and_leaves_it_running(work, cluster, procs):
    """--ray-address 127.0.0.1:PORT (a relative catalog, run from another folder than the
    cluster's): trades.csv and summary.json equal --workers 2 on the embedded Ray and --workers 1;
    the cluster is still up afterwards with its 2 CPUs."""
    address, env, tmp = cluster
    short = tempfile.mkdtemp(prefix="aegis-t-", dir="/tmp")  # the embedded Ray's TMPDIR
    try:
        _run(procs, "backtest_cli", ["--catalog", "cat", *BACKTEST, "--workers", "2", "--ray-address", address,
                                     "--out", "ext"], env, work)
        _run(procs, "backtest_cli", ["--catalog", "cat", *BACKTEST, "--workers", "2", "--out", "local"],
             {**env, "TMPDIR": short}, work)
        _run(procs, "backtest_cli", ["--catalog", "cat", *BACKTEST, "--workers", "1", "--out", "one"], env, work)
    finally:
        _kill_tree(short)
        shutil.rmtree(short, ignore_errors=True)
    names = ("trades.csv", "summary.json")
    ext = _files(work / "ext", names)
    assert ext == _files(work / "local", names) == _files(work / "one", names)
    s = json.loads(ext["summary.json"])
    assert s["candles"] == 2 * 2880 and s["trades"] == 2 * s["per_symbol"]["BTCUSDT"]["trades"] > 0
    assert _cluster_cpus(address, env).startswith("0.0/2.0 CPU")  # still up, nothing left running on it
    assert dist.ray_processes(tmp)  # its processes are there


def test_a_sweep_on_the_cluster_writes_the_embedded_bytes(work, cluster, procs):
    """aegis sweep --ray-address (a grid of 2 sets x 2 symbols, run after the backtest on the
    same cluster): sweep.json and trades.csv equal the same sweep with --workers 1."""
    address, env, _ = cluster
    _run(procs, "sweep_cli", ["--catalog", "cat", *SWEEP, "--workers", "2", "--ray-address", address,
                              "--out", "sweep_ext"], env, work)
    _run(procs, "sweep_cli", ["--catalog", "cat", *SWEEP, "--workers", "1", "--out", "sweep_one"], env, work)
    names = ("sweep.json", "trades.csv")
    ext = _files(work / "sweep_ext", names)
    assert ext == _files(work / "sweep_one", names)
    assert sorted(r["params"]["channel_bars"] for r in json.loads(ext["sweep.json"])["ranked"]) == [20, 40]


def test_an_address_where_no_cluster_answers_is_a_clear_error(work, procs):
    """--ray-address of a closed loopback port: exit 2 and a message naming the address, at once
    (no minutes of retries)."""
    port = _free_port()
    p = procs.python("-m", "research.backtest_cli", "--catalog", "cat", *BACKTEST, "--workers", "2",
                     "--ray-address", f"127.0.0.1:{port}", "--out", "nothing", cwd=str(work),
                     env={**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"},
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2
    assert f"aegis backtest: no Ray cluster answers at 127.0.0.1:{port}" in err
    assert not (work / "nothing").exists()
