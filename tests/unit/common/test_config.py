"""Config loading: defaults, file, environment precedence, and strict rejection."""

from __future__ import annotations

import json

import pytest

from common import config
from common.errors import ConfigError


class TestLoad:
    def test_defaults_load_without_file_or_env(self):
        """With no file and no environment the defaults form a valid demo config."""
        cfg = config.load(None, {})
        assert cfg.mode == "demo"
        assert cfg.ring.capacity == 1 << 20
        assert cfg.feed.symbols == ()

    def test_defaults_are_the_candles_demo_make_run_shows(self):
        """``aegis run`` with no file and no environment is the demo ``make run`` is: the sim
        replays real 1m candles as synthesized trades (60 a candle) after 1,500 bars of
        history, and the feed hydrates 1,500 candles a symbol; the sim's own parameters
        default to the same values (one default each)."""
        from services.exchange_sim.config import SimParams, from_config

        cfg = config.load(None, {})
        assert (cfg.sim.source, cfg.sim.history_bars, cfg.sim.candle_trades, cfg.feed.hydrate_candles) == (
            "candles", 1500, 60, 1500)
        p, q = SimParams(), from_config(cfg.sim)
        assert (p.source, p.history_bars, p.candle_trades) == (q.source, q.history_bars, q.candle_trades) == (
            "candles", 1500, 60)

    def test_make_run_is_aegis_run_with_no_settings(self):
        """The Makefile's ``run`` target runs ``aegis run`` and sets no AEGIS_* variable, so
        the two cannot drift apart again."""
        from tests.conftest import REPO

        lines = (REPO / "Makefile").read_text().split("\nrun: setup\n", 1)[1].splitlines()
        recipe = [ln.strip() for ln in lines[:next(i for i, ln in enumerate(lines) if not ln.startswith("\t"))]]
        assert recipe == ["$(BIN)/aegis run"]

    def test_environment_overrides_file(self, tmp_path):
        """AEGIS_SECTION__FIELD wins over the same field in the TOML file."""
        f = tmp_path / "c.toml"
        f.write_text('[sim]\nspeed = 2.0\nsymbols = 5\n')
        cfg = config.load(f, {"AEGIS_SIM__SPEED": "7.5"})
        assert cfg.sim.speed == 7.5
        assert cfg.sim.symbols == 5

    def test_comma_separated_env_becomes_tuple(self):
        """A list field given in the environment is split on commas."""
        cfg = config.load(None, {"AEGIS_FEED__SYMBOLS": "BTCUSDT, ETHUSDT"})
        assert cfg.feed.symbols == ("BTCUSDT", "ETHUSDT")

    def test_json_file_round_trips(self, tmp_path):
        """to_dict -> JSON file -> load gives back an equal config (the supervisor relies on it)."""
        cfg = config.replace(config.load(None, {}), sim={"port": 1234}, run_dir="/tmp/x")
        f = tmp_path / "c.json"
        f.write_text(json.dumps(config.to_dict(cfg)))
        assert config.load(f, {}) == cfg

    def test_unrelated_aegis_variables_are_ignored(self):
        """AEGIS_* names that are not config fields (e.g. set by tooling) do not break loading."""
        assert config.load(None, {"AEGIS_SOMETHING_ELSE": "1"}).mode == "demo"


class TestRejects:
    @pytest.mark.parametrize("env", [
        {"AEGIS_SIM__SPED": "1"},
        {"AEGIS_NOSECTION__X": "1"},
    ])
    def test_unknown_field_or_section_is_an_error(self, env):
        """A typo never silently falls back to a default."""
        with pytest.raises(ConfigError):
            config.load(None, env)

    @pytest.mark.parametrize("env", [
        {"AEGIS_SIM__SPEED": "fast"},
        {"AEGIS_SIM__SPEED": "nan"},
        {"AEGIS_SIM__SPEED": "-1"},
        {"AEGIS_RING__CAPACITY": "1000"},
        {"AEGIS_MODE": "yolo"},
        {"AEGIS_SIM__MAX_SPEED": "maybe"},
        {"AEGIS_FEED__STREAMS_PER_CONNECTION": "201"},
        {"AEGIS_SUPERVISOR__SPARE_RETRY_S": "-1"},
        {"AEGIS_SUPERVISOR__WARM_SPARES": "sometimes"},
        {"AEGIS_TRADING__ORDER_TRANSPORT": "fix"},
        {"AEGIS_TRADING__ENTRY_ORDER": "limit_gtc"},
        {"AEGIS_TRADING__ENTRY_SLIPPAGE_BPS": "-1"},
        {"AEGIS_TRADING__ENTRY_SLIPPAGE_BPS": "501"},
        {"AEGIS_TRADING__ENTRY_SLIPPAGE_BPS": "nan"},
    ])
    def test_ill_typed_or_impossible_value_is_an_error(self, env):
        """Wrong types, non-finite numbers and impossible values are rejected with ConfigError."""
        with pytest.raises(ConfigError):
            config.load(None, env)

    def test_broken_toml_file_is_a_config_error(self, tmp_path):
        """A syntactically broken file gives ConfigError, not a parser exception."""
        f = tmp_path / "c.toml"
        f.write_text("[sim\nspeed=")
        with pytest.raises(ConfigError):
            config.load(f, {})


class TestSecrets:
    def test_secrets_come_from_environment(self, tmp_path):
        """BINANCE_API_KEY/SECRET are read from the environment and hidden from repr."""
        s = config.secrets({"BINANCE_API_KEY": "k" * 10, "BINANCE_API_SECRET": "s" * 10}, tmp_path)
        assert s.present
        assert "kkkk" not in repr(s) and "ssss" not in repr(s)

    def test_secrets_fall_back_to_secret_files(self, tmp_path):
        """Docker secrets (/run/secrets/binance_api_key) are read when the env is empty."""
        (tmp_path / "binance_api_key").write_text("filekey\n")
        (tmp_path / "binance_api_secret").write_text("filesecret\n")
        s = config.secrets({}, tmp_path)
        assert (s.api_key, s.api_secret) == ("filekey", "filesecret")

    def test_no_secrets_means_not_present(self, tmp_path):
        """Demo mode needs no keys: absent secrets are empty, not an error."""
        assert not config.secrets({}, tmp_path).present


class TestSecretFiles:
    def test_named_secret_file_that_cannot_be_read_is_an_error(self, tmp_path):
        """BINANCE_API_KEY_FILE pointing at a missing file is a ConfigError, not silently 'no key'."""
        with pytest.raises(ConfigError):
            config.secrets({"BINANCE_API_KEY_FILE": str(tmp_path / "nope")}, tmp_path)

    def test_docker_secret_present_but_unreadable_is_an_error(self, tmp_path):
        """A /run/secrets entry that exists but cannot be read (a directory here) is a ConfigError."""
        (tmp_path / "binance_api_key").mkdir()
        with pytest.raises(ConfigError):
            config.secrets({}, tmp_path)
