"""The control API's requests (services/dashboard/control.py) and the token's sources
(common/dashboard_token.py, aegis keys)."""

from __future__ import annotations

import os
import stat

import pytest

from cli import keys as keys_cli
from common import dashboard_token, wire
from common.errors import ConfigError
from services.dashboard import control

C = wire.ControlCommand


def parse(path, body=b"", **kw):
    return control.parse(path, body, client="127.0.0.1", via="page", now_ms=5, request_id="0123456789abcdef", **kw)


class TestParse:
    @pytest.mark.parametrize("path,command", [
        ("pause", C.PAUSE), ("resume", C.RESUME), ("closeall", C.CLOSE_ALL), ("killswitch/clear", C.CLEAR_KILL_SWITCH),
    ])
    def test_commands_without_parameters(self, path, command):
        """Each path is one command; an empty body or {} is the same."""
        for body in (b"", b"{}", b"  "):
            assert parse(path, body) == wire.Control(request_id="0123456789abcdef", command=command, requested_ms=5,
                                                     client="127.0.0.1", via="page")

    def test_close_takes_its_symbol(self):
        got = parse("close", b'{"symbol": "BTCUSDT"}')
        assert (got.command, got.symbol) == (C.CLOSE, "BTCUSDT")

    @pytest.mark.parametrize("path,body,message", [
        ("close", b"", 'close needs {"symbol": "<SYMBOL>"} (upper-case letters and digits)'),
        ("close", b'{"symbol": "btc/usdt"}', 'close needs {"symbol": "<SYMBOL>"} (upper-case letters and digits)'),
        ("close", b'{"symbol": 7}', 'close needs {"symbol": "<SYMBOL>"} (upper-case letters and digits)'),
        ("close", b'{"symbol": "BTCUSDT", "qty": 1}', "unknown field(s): qty"),
        ("pause", b'{"symbol": "BTCUSDT"}', "pause takes no parameters"),
        ("pause", b"not json", "the body must be JSON"),
        ("pause", b"[1]", "the body must be a JSON object"),
        ("pause", b" " * 2000, "body too large"),
        ("flatten", b"", "unknown command 'flatten': one of close, closeall, killswitch/clear, pause, resume"),
    ])
    def test_bad_requests_say_what_is_wrong(self, path, body, message):
        """Bad input is a 400 with the reason, never a command."""
        got = parse(path, body)
        assert isinstance(got, control.BadRequest) and got.message == message


class TestToken:
    def test_environment_wins_then_the_file_aegis_keys_writes(self, tmp_path):
        """AEGIS_DASHBOARD_TOKEN first; else <key dir>/dashboard.token; none: ("", "")."""
        assert dashboard_token.load({}, tmp_path, secret_dir=tmp_path / "none") == ("", "")
        path = dashboard_token.create(tmp_path)
        token = path.read_text().strip()
        assert dashboard_token.load({}, tmp_path, secret_dir=tmp_path / "none") == (token, str(path))
        env = {"AEGIS_DASHBOARD_TOKEN": "from-the-environment-123"}
        assert dashboard_token.load(env, tmp_path, secret_dir=tmp_path / "none") == (
            "from-the-environment-123", "AEGIS_DASHBOARD_TOKEN")

    def test_created_token_is_private_and_long(self, tmp_path):
        path = dashboard_token.create(tmp_path / "k")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
        assert len(path.read_text().strip()) == 43
        with pytest.raises(ConfigError, match="already exists"):
            dashboard_token.create(tmp_path / "k")

    def test_a_token_file_others_can_read_is_refused(self, tmp_path):
        path = dashboard_token.create(tmp_path)
        os.chmod(path, 0o644)
        with pytest.raises(ConfigError, match="readable by other users"):
            dashboard_token.load({}, tmp_path, secret_dir=tmp_path / "none")

    def test_an_empty_docker_secret_means_none_and_a_short_token_is_refused(self, tmp_path):
        """compose mounts /dev/null by default: no token. A guessable one stops the start, unquoted."""
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / dashboard_token.SECRET_NAME).write_text("")
        assert dashboard_token.load({}, tmp_path / "nokeys", secret_dir=secrets) == ("", "")
        with pytest.raises(ConfigError) as e:
            dashboard_token.load({"AEGIS_DASHBOARD_TOKEN": "short12"}, tmp_path, secret_dir=secrets)
        assert "short12" not in str(e.value)

    def test_aegis_keys_writes_the_token_and_never_prints_it(self, tmp_path, capsys):
        """`aegis keys` makes CURVE keys and the dashboard token; --dashboard-token the token alone."""
        assert keys_cli.main(["--dir", str(tmp_path / "k")]) == 0
        out = capsys.readouterr().out
        token = (tmp_path / "k" / "dashboard.token").read_text().strip()
        assert "dashboard token written" in out and token not in out
        assert keys_cli.main(["--dir", str(tmp_path / "j"), "--dashboard-token"]) == 0
        assert (tmp_path / "j" / "dashboard.token").exists() and not (tmp_path / "j" / "server.key").exists()
        assert keys_cli.main(["--dir", str(tmp_path / "j"), "--dashboard-token"]) == 2
