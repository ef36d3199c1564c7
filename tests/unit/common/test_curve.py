"""CURVE over tcp: keys from ``aegis keys``, encrypted and authenticated round trips for
every socket pair the stack uses, and refusals (unknown client, wrong server key, no keys).

Loopback only, free ports picked per test, every socket and the context closed at teardown.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import time
from pathlib import Path

import pytest
import zmq

from cli import keys as keys_cli
from common import bus, cli, config, curve, service, wire, zmqutil
from common.errors import ConfigError

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")

REFUSED_WAIT_MS = 500  # how long a refused peer is given to (not) get a message through
DELIVERY_DEADLINE_S = 5.0  # generous on a loaded 2-core machine; a pass takes milliseconds


# ---------------------------------------------------------------------------- fixtures
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    assert keys_cli.main(["--dir", str(d)]) == 0
    return d


@pytest.fixture
def keys(keys_dir: Path) -> curve.CurveKeys:
    return curve.load(keys_dir)


@pytest.fixture
def socks():
    """Sockets to close at teardown; then the process's keys and context are reset."""
    made: list = []
    yield made
    for s in made:
        s.close(linger=0) if isinstance(s, zmq.Socket) else s.close()
    zmqutil.use_curve(None)
    zmqutil.term()


@pytest.fixture
def installed(keys: curve.CurveKeys, socks) -> curve.CurveKeys:
    """This process holds the stack's keys, as ``service.endpoints`` leaves it for tcp."""
    zmqutil.use_curve(keys)
    return keys


def stranger(keys: curve.CurveKeys) -> curve.CurveKeys:
    """The same server key, but a client keypair that is not in the allow-list."""
    public, secret = zmq.curve_keypair()
    return dataclasses.replace(keys, client_public=public, client_secret=secret)


def recv_within(sock: zmq.Socket, ms: int) -> list[bytes] | None:
    return sock.recv_multipart() if sock.poll(ms) else None


def publish_until_received(send, sock: zmq.Socket) -> list[bytes] | None:
    """A SUB joins a moment after it connects (slow joiner): send until one arrives."""
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while time.monotonic() < deadline:
        send()
        got = recv_within(sock, 20)
        if got is not None:
            return got
    return None


# ---------------------------------------------------------------------------- round trips
class TestRoundTrips:
    def test_pub_sub_over_tcp_delivers_a_heartbeat_encrypted(self, installed, socks):
        """A bus Publisher/Subscriber pair on tcp gets the message through, over CURVE."""
        ep = tcp()
        pub = bus.Publisher.bind_pub("test", ep)
        sub = bus.Subscriber([ep], (wire.EventType.HEARTBEAT,))
        socks += [pub, sub]
        beat = wire.Heartbeat(service="test", pid=1, uptime_s=0.0)
        got = publish_until_received(lambda: pub.publish(beat), sub.socket)
        assert got is not None
        assert wire.decode(got).body == beat
        assert sub.socket.getsockopt(zmq.MECHANISM) == zmq.CURVE
        assert pub._sock.getsockopt(zmq.CURVE_SERVER) == 1

    def test_push_pull_journal_over_tcp_delivers(self, installed, socks):
        """The journal PUSH -> PULL reaches the writer over CURVE."""
        ep = tcp()
        pull = bus.Subscriber.bind_pull(ep)
        push = bus.Publisher.connect_journal("test", ep)
        socks += [pull, push]
        push.publish(wire.Heartbeat(service="journal", pid=2, uptime_s=1.0))
        env = pull.recv(timeout_ms=int(DELIVERY_DEADLINE_S * 1000))
        assert env is not None and env.body.service == "journal"
        assert pull.socket.getsockopt(zmq.MECHANISM) == zmq.CURVE

    def test_dealer_router_sync_journal_over_tcp_round_trips(self, installed, socks):
        """DEALER -> ROUTER request and the ROUTER's answer back to the same DEALER."""
        ep = tcp()
        router = zmqutil.router(ep)
        dealer = zmqutil.dealer(ep)
        socks += [router, dealer]
        dealer.send(b"order-1")
        req = recv_within(router, int(DELIVERY_DEADLINE_S * 1000))
        assert req is not None and req[1] == b"order-1"
        router.send_multipart([req[0], b"ok", b"1"])
        assert recv_within(dealer, int(DELIVERY_DEADLINE_S * 1000)) == [b"ok", b"1"]


# ---------------------------------------------------------------------------- refusals
class TestRefusals:
    def test_unauthorized_client_key_on_sub_receives_nothing(self, installed, socks):
        """A SUB whose client key is not in authorized/ gets nothing, while an authorized
        SUB on the same PUB does (so the publisher was really sending)."""
        ep = tcp()
        pub = zmqutil.pub(ep)
        good = zmqutil.sub([ep])
        bad = zmqutil.sub([ep], curve=stranger(installed))
        socks += [pub, good, bad]
        assert publish_until_received(lambda: pub.send(b"tick"), good) == [b"tick"]
        deadline = time.monotonic() + REFUSED_WAIT_MS / 1000
        while time.monotonic() < deadline:
            pub.send(b"tick")
            assert recv_within(bad, 20) is None

    def test_unauthorized_push_reaches_no_journal(self, installed, socks):
        """The journal writer never sees a message from a PUSH with an unknown key."""
        ep = tcp()
        pull = zmqutil.pull(ep)
        bad = zmqutil.push(ep, linger_ms=0, curve=stranger(installed))
        socks += [pull, bad]
        bad.send(b"forged fill")
        assert recv_within(pull, REFUSED_WAIT_MS) is None

    def test_unauthorized_dealer_reaches_no_router(self, installed, socks):
        """An order journal request with an unknown client key is never read."""
        ep = tcp()
        router = zmqutil.router(ep)
        bad = zmqutil.dealer(ep, curve=stranger(installed))
        socks += [router, bad]
        bad.send(b"forged order")
        assert recv_within(router, REFUSED_WAIT_MS) is None

    def test_client_with_wrong_server_key_receives_nothing(self, installed, socks):
        """A client that expects another server's key never completes the handshake."""
        ep = tcp()
        pub = zmqutil.pub(ep)
        other_server, _ = zmq.curve_keypair()
        wrong = zmqutil.sub([ep], curve=dataclasses.replace(installed, server_public=other_server))
        socks += [pub, wrong]
        deadline = time.monotonic() + REFUSED_WAIT_MS / 1000
        while time.monotonic() < deadline:
            pub.send(b"tick")
            assert recv_within(wrong, 20) is None

    def test_plain_client_without_curve_receives_nothing(self, installed, socks):
        """A raw ZeroMQ SUB without CURVE (the NULL mechanism) cannot read a CURVE PUB."""
        ep = tcp()
        pub = zmqutil.pub(ep)
        plain = zmqutil.context().socket(zmq.SUB)
        socks += [pub, plain]
        plain.setsockopt(zmq.SUBSCRIBE, b"")
        plain.connect(ep)
        deadline = time.monotonic() + REFUSED_WAIT_MS / 1000
        while time.monotonic() < deadline:
            pub.send(b"tick")
            assert recv_within(plain, 20) is None

    @pytest.mark.parametrize("make", [
        lambda ep: zmqutil.pub(ep), lambda ep: zmqutil.sub([ep]), lambda ep: zmqutil.push(ep),
        lambda ep: zmqutil.pull(ep), lambda ep: zmqutil.router(ep), lambda ep: zmqutil.dealer(ep),
    ], ids=["pub", "sub", "push", "pull", "router", "dealer"])
    def test_tcp_socket_without_keys_is_refused(self, make, socks):
        """No keys installed: no tcp socket of any kind can be made (never plain tcp)."""
        with pytest.raises(ConfigError, match="without CURVE keys"):
            make(tcp())

    def test_mixed_tcp_and_ipc_on_one_socket_is_refused(self, installed, socks, tmp_path):
        """One socket has one mechanism: CURVE would break its ipc peers, so refuse."""
        with pytest.raises(ConfigError, match="cannot mix"):
            zmqutil.sub([tcp(), f"ipc://{tmp_path / 'x.pub'}"])


# ---------------------------------------------------------------------------- the shell
class TestServiceEndpoints:
    def test_tcp_config_without_keys_refuses_to_start(self, tmp_path, socks):
        """transport = tcp and an empty key directory: ConfigError naming `aegis keys`."""
        cfg = config.load(None, {"AEGIS_BUS__TRANSPORT": "tcp",
                                 "AEGIS_BUS__CURVE_DIR": str(tmp_path / "nokeys")})
        with pytest.raises(ConfigError, match="aegis keys"):
            service.endpoints(tmp_path, cfg)

    def test_tcp_config_with_keys_installs_them_for_every_socket(self, keys_dir, tmp_path, socks):
        """With keys, the endpoints are tcp and sockets made without an explicit key use them."""
        port = free_port()
        cfg = config.load(None, {"AEGIS_BUS__TRANSPORT": "tcp", "AEGIS_BUS__CURVE_DIR": str(keys_dir),
                                 "AEGIS_BUS__BASE_PORT": str(port)})
        ep = service.endpoints(tmp_path, cfg)
        assert ep.transport == "tcp"
        assert ep.feed_pub == f"tcp://127.0.0.1:{port}"
        pub = zmqutil.pub(ep.feed_pub)
        socks.append(pub)
        assert pub.getsockopt(zmq.CURVE_SERVER) == 1

    def test_ipc_config_is_unchanged_and_loads_no_keys(self, tmp_path, socks):
        """The default (ipc) gives exactly the old endpoints and needs no key directory."""
        cfg = config.load(None, {"AEGIS_BUS__CURVE_DIR": str(tmp_path / "nokeys")})
        assert service.endpoints(tmp_path, cfg) == config.endpoints(tmp_path)
        assert zmqutil._curve is None


# ---------------------------------------------------------------------------- keys
class TestKeyFiles:
    def test_load_refuses_a_secret_readable_by_others(self, keys_dir):
        """Like ssh: a group/world-readable secret key is refused, with the chmod to run."""
        secret = keys_dir / "client.key_secret"
        os.chmod(secret, 0o644)
        with pytest.raises(ConfigError, match="chmod 600"):
            curve.load(keys_dir)

    def test_load_lists_every_missing_file(self, keys_dir):
        """A half-copied key directory names what is missing."""
        (keys_dir / "server.key_secret").unlink()
        (keys_dir / "authorized" / "client.key").unlink()
        with pytest.raises(ConfigError, match=r"server\.key_secret, authorized/client\.key"):
            curve.load(keys_dir)

    def test_repr_never_shows_a_secret(self, keys):
        """A CurveKeys in a log line or a traceback shows public keys only."""
        text = repr(keys)
        assert keys.server_secret.decode() not in text
        assert keys.client_secret.decode() not in text
        assert keys.server_public.decode() in text


class TestKeysCommand:
    def test_writes_both_keypairs_private(self, keys_dir):
        """Five files, each mode 0600, in directories of mode 0700."""
        files = curve.key_files(keys_dir)
        assert [p.relative_to(keys_dir).as_posix() for p in files] == [
            "server.key", "server.key_secret", "client.key", "client.key_secret", "authorized/client.key"]
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        for d in (keys_dir, keys_dir / "authorized"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d

    def test_refuses_to_overwrite_without_force(self, keys_dir, capsys):
        """A second run keeps the existing keys (byte for byte) and exits 2."""
        capsys.readouterr()
        before = {p: p.read_bytes() for p in curve.key_files(keys_dir)}
        assert keys_cli.main(["--dir", str(keys_dir)]) == 2
        err = capsys.readouterr().err
        assert "already exist" in err and "--force" in err
        assert {p: p.read_bytes() for p in curve.key_files(keys_dir)} == before

    def test_force_replaces_the_keys(self, keys_dir, keys):
        """--force writes new keypairs (and a matching allow-list entry)."""
        assert keys_cli.main(["--dir", str(keys_dir), "--force"]) == 0
        new = curve.load(keys_dir)
        assert new.server_public != keys.server_public and new.client_public != keys.client_public
        allowed, _ = zmq.auth.load_certificate(keys_dir / "authorized" / "client.key")
        assert allowed == new.client_public

    def test_output_never_contains_a_secret_key(self, tmp_path, capsys):
        """Neither the first run, nor a refused one, nor --force prints a secret key."""
        d = tmp_path / "k"
        outputs = []
        for argv in (["--dir", str(d)], ["--dir", str(d)], ["--dir", str(d), "--force"]):
            keys_cli.main(argv)
            cap = capsys.readouterr()
            outputs.append(cap.out + cap.err)
        k = curve.load(d)
        assert k.client_public.decode() in outputs[2]  # the output is not just empty
        for text in outputs:
            for secret_file in (d / "server.key_secret", d / "client.key_secret"):
                _, secret = zmq.auth.load_certificate(secret_file)
                assert secret.decode() not in text

    def test_default_directory_is_under_the_data_dir(self, tmp_path, monkeypatch, capsys):
        """Without --dir the keys go where the services look: <data_dir>/keys."""
        for k in [k for k in os.environ if k.startswith("AEGIS_")]:
            monkeypatch.delenv(k)
        monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "var"))
        assert cli.main(["keys"]) == 0
        assert curve.missing(tmp_path / "var" / "keys") == ()
        assert config.curve_dir(config.load(None)) == (tmp_path / "var" / "keys").resolve()

    def test_aegis_keys_dispatches_from_the_main_command(self, tmp_path, capsys):
        """`aegis keys --dir D` is registered in the aegis command table."""
        assert cli.main(["keys", "--dir", str(tmp_path / "k")]) == 0
        assert "CURVE keys written" in capsys.readouterr().out
