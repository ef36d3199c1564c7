"""The ``bus`` config section and the endpoints it gives (ipc default, tcp on request)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common import config
from common.errors import ConfigError


class TestBusSection:
    def test_default_transport_is_ipc_and_endpoints_are_unchanged(self, tmp_path):
        """Without a bus section every caller of endpoints(run_dir) gets the same ipc paths."""
        cfg = config.load(None, {})
        assert cfg.bus == config.BusConfig(transport="ipc", host="127.0.0.1", base_port=27460, curve_dir="")
        ep = config.endpoints(tmp_path, cfg.bus)
        assert ep == config.endpoints(tmp_path)
        assert ep.transport == "ipc"
        assert ep.feed_pub == f"ipc://{tmp_path / 'feed.pub'}"
        assert ep.journal_sync == f"ipc://{tmp_path / 'journal.sync'}"
        assert ep.brain_control == f"ipc://{tmp_path / 'brain.control'}"

    def test_tcp_from_environment_gives_six_consecutive_ports(self, tmp_path):
        """AEGIS_BUS__* selects tcp: feed, brain, orchestrator, journal, journal_sync, brain_control in order."""
        cfg = config.load(None, {"AEGIS_BUS__TRANSPORT": "tcp", "AEGIS_BUS__HOST": "10.0.0.5",
                                 "AEGIS_BUS__BASE_PORT": "30000"})
        ep = config.endpoints(tmp_path, cfg.bus)
        assert ep == config.Endpoints(
            feed_pub="tcp://10.0.0.5:30000", brain_pub="tcp://10.0.0.5:30001",
            orchestrator_pub="tcp://10.0.0.5:30002", journal="tcp://10.0.0.5:30003",
            journal_sync="tcp://10.0.0.5:30004", brain_control="tcp://10.0.0.5:30005", transport="tcp")

    def test_ipv6_host_is_bracketed(self, tmp_path):
        """A ZeroMQ tcp endpoint needs [::1], not ::1."""
        cfg = config.load(None, {"AEGIS_BUS__TRANSPORT": "tcp", "AEGIS_BUS__HOST": "::1"})
        assert config.endpoints(tmp_path, cfg.bus).feed_pub == "tcp://[::1]:27460"

    def test_toml_file_section(self, tmp_path):
        """[bus] in the config file works like any other section."""
        f = tmp_path / "c.toml"
        f.write_text('[bus]\ntransport = "tcp"\nbase_port = 31000\ncurve_dir = "/etc/aegis/keys"\n')
        cfg = config.load(f, {})
        assert (cfg.bus.transport, cfg.bus.base_port, cfg.bus.curve_dir) == ("tcp", 31000, "/etc/aegis/keys")

    def test_round_trips_through_the_supervisors_json(self, tmp_path):
        """The supervisor hands the config to its children as JSON: bus must survive it."""
        cfg = config.load(None, {"AEGIS_BUS__TRANSPORT": "tcp", "AEGIS_BUS__CURVE_DIR": "/k"})
        f = tmp_path / "c.json"
        f.write_text(json.dumps(config.to_dict(cfg)))
        assert config.load(f, {}).bus == cfg.bus

    @pytest.mark.parametrize("env", [
        {"AEGIS_BUS__TRANSPORT": "udp"},
        {"AEGIS_BUS__TRANSPORT": "TCP"},
        {"AEGIS_BUS__BASE_PORT": "0"},
        {"AEGIS_BUS__BASE_PORT": "65531"},
        {"AEGIS_BUS__HOST": ""},
        {"AEGIS_BUS__HOST": "*"},
        {"AEGIS_BUS__PORT": "1"},
    ], ids=["udp", "uppercase", "port0", "port-overflow", "empty-host", "wildcard-host", "unknown-field"])
    def test_bad_bus_values_are_errors(self, env):
        """A wrong transport, a port range past 65535 or a typo stops the load."""
        with pytest.raises(ConfigError):
            config.load(None, env)


class TestCurveDir:
    def test_default_is_keys_under_the_data_dir(self, tmp_path):
        """"" = <data_dir>/keys, absolute (the services and `aegis keys` must agree)."""
        cfg = config.load(None, {"AEGIS_DATA_DIR": str(tmp_path / "var")})
        assert config.curve_dir(cfg) == (tmp_path / "var" / "keys").resolve()

    def test_explicit_directory_wins(self, tmp_path):
        cfg = config.load(None, {"AEGIS_BUS__CURVE_DIR": str(tmp_path / "secrets")})
        assert config.curve_dir(cfg) == Path(tmp_path / "secrets").resolve()
