"""research.distributed with ``--ray-address``: the address is checked, an unreachable or
refusing cluster is a ConfigError, a loopback address is kept when the head listens on
127.0.0.1 only, the session only disconnects from a cluster it did not start, the paths the
workers read are absolute, and a node without the catalog fails its task by name."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from common.errors import ConfigError
from research import distributed as dist
from research.backtest import BacktestConfig


class FakeRay:
    """Records ``init``/``shutdown``; ``init`` raises ``fail`` if given."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple] = []

    def init(self, **kw) -> None:
        self.calls.append(("init", kw))
        if self.fail is not None:
            raise self.fail

    def is_initialized(self) -> bool:
        return False

    def shutdown(self) -> None:
        self.calls.append(("shutdown",))


@pytest.fixture
def listener():
    """A TCP socket listening on 127.0.0.1 (a stand-in for a head's GCS port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def cluster_flag():
    """Ray's ENABLE_RAY_CLUSTER, restored after the test."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = True
    yield ray_constants
    ray_constants.ENABLE_RAY_CLUSTER = before


@pytest.mark.parametrize("text", ["127.0.0.1", "host:", ":6379", "host:0", "host:70000", "ray://h:10001", "auto"])
def test_an_address_that_is_not_host_port_is_refused(text):
    """Only HOST:PORT with a port 1..65535 is a Ray address here."""
    with pytest.raises(ConfigError, match="--ray-address must be HOST:PORT"):
        dist.split_address(text)


def test_host_and_port_are_split():
    """'10.0.0.5:6379' -> ('10.0.0.5', 6379); an IPv6 host in brackets loses them."""
    assert dist.split_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert dist.split_address(" [::1]:6379 ") == ("::1", 6379)


def test_no_cluster_at_the_address_is_a_config_error_without_init(cluster_flag):
    """A closed port: ConfigError naming the address, ray.init never called."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = FakeRay()
    with pytest.raises(ConfigError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        dist._connect(ray, f"127.0.0.1:{port}", outward_ip=lambda: "127.0.0.1")
    assert ray.calls == []


def test_a_loopback_head_keeps_the_node_address_at_127(listener, cluster_flag):
    """The head answers on 127.0.0.1 but not on the outward address: Ray's cluster mode is
    turned off (127.0.0.1 stays this node's address) and init gets the address as given."""
    ray = FakeRay()
    dist._connect(ray, f"127.0.0.1:{listener}", outward_ip=lambda: "192.0.2.254")  # TEST-NET: nobody answers
    assert cluster_flag.ENABLE_RAY_CLUSTER is False
    assert ray.calls == [("init", {"address": f"127.0.0.1:{listener}", "log_to_driver": False,
                                   "configure_logging": False})]


def test_a_head_on_every_interface_keeps_rays_own_choice(listener, cluster_flag):
    """When the head also answers on the outward address (here: that address is 127.0.0.1
    itself), Ray's cluster mode is left on."""
    ray = FakeRay()
    dist._connect(ray, f"localhost:{listener}", outward_ip=lambda: "127.0.0.1")
    assert cluster_flag.ENABLE_RAY_CLUSTER is True
    assert ray.calls[0][1]["address"] == f"localhost:{listener}"


def test_a_refused_connection_is_a_config_error(listener, cluster_flag):
    """ray.init raising (wrong token, version mismatch, ...): ConfigError with Ray's reason."""
    ray = FakeRay(fail=ConnectionError("Failed to connect to Ray cluster"))
    with pytest.raises(ConfigError, match="cannot join the Ray cluster at .*ConnectionError: Failed to connect.*"
                                          "RAY_AUTH_TOKEN"):
        dist._connect(ray, f"127.0.0.1:{listener}", outward_ip=lambda: "127.0.0.1")


def test_the_session_only_disconnects_from_a_cluster_it_did_not_start(listener, cluster_flag, monkeypatch):
    """ray_session(address=...): init with the address, then shutdown (this driver's
    disconnect) and nothing else: no local Ray started, no temp dir reaped."""
    ray = FakeRay()
    monkeypatch.setattr(dist, "_import_ray", lambda local: ray)
    monkeypatch.setattr(dist, "_init_local", lambda *a: pytest.fail("a local Ray was started"))
    monkeypatch.setattr(dist, "_reap", lambda *a: pytest.fail("a temp dir was reaped"))
    monkeypatch.setattr(dist, "_outward_ip", lambda: "127.0.0.1")
    with dist.ray_session(2, f"127.0.0.1:{listener}") as got:
        assert got is ray
    assert [c[0] for c in ray.calls] == ["init", "shutdown"]


def _cfg(**kw) -> BacktestConfig:
    base = dict(catalog=Path("cat"), symbols=("BTCUSDT", "ETHUSDT"), start_ms=0, end_ms=60_000, strategy="donchian")
    return BacktestConfig(**{**base, **kw})


def test_the_paths_the_workers_read_are_made_absolute(tmp_path, monkeypatch):
    """Relative catalog, exchange-info and strategy file -> absolute (against the command's
    folder); a module path, a built-in name and absolute paths are unchanged."""
    monkeypatch.chdir(tmp_path)
    tasks = dist.split_by_symbol(_cfg(exchange_info="info.json", strategy="strats/mine.py:Mine"), prefix="p/")
    assert [t.name for t in tasks] == ["p/BTCUSDT", "p/ETHUSDT"]
    for t in tasks:
        assert t.cfg.catalog == tmp_path / "cat"
        assert t.cfg.exchange_info == str(tmp_path / "info.json")
        assert t.cfg.strategy == f"{tmp_path / 'strats' / 'mine.py'}:Mine"
    same = dist.portable(_cfg(catalog=Path("/data/cat"), strategy="research.strategies.donchian:Donchian"))
    assert (same.catalog, same.strategy, same.exchange_info) == (
        Path("/data/cat"), "research.strategies.donchian:Donchian", "")
    assert dist.portable(_cfg(strategy="/abs/mine.py:Mine")).strategy == "/abs/mine.py:Mine"
    assert dist.portable(_cfg()).strategy == "donchian"


def test_a_node_without_the_catalog_fails_the_task_by_name(tmp_path):
    """The catalog folder missing on the node: a Failure naming it (not zero candles), and
    ``execute`` reports the task in TasksFailed."""
    task = dist.split_by_symbol(_cfg(catalog=tmp_path / "absent", symbols=("BTCUSDT",)))[0]
    res = dist.run_task(task)
    assert isinstance(res, dist.Failure)
    assert res.error == f"no catalog folder {tmp_path / 'absent'} on node {socket.gethostname()}"
    with pytest.raises(dist.TasksFailed) as err:
        dist.execute([task], workers=1)
    assert err.value.failures == {"BTCUSDT": res.error}
