"""ZeroMQ CURVE keys of one stack: where they live, how they are made and loaded.

One stack is one trust domain: a *server* keypair shared by every binding socket (the PUB
sockets, the journal PULL, the journal ROUTER) and a *client* keypair shared by every
connecting socket (SUB, PUSH, DEALER). A binder accepts a client only when the client's
public key is in ``authorized/`` (ZAP, see ``common.zmqutil``), so a stranger who can reach
the tcp port but does not hold an authorized client secret gets nothing.

Layout of the key directory (``aegis keys`` writes it; zmq.auth certificate format)::

    <dir>/                    mode 0700
      server.key              public key of the binders (mode 0600, like every file here)
      server.key_secret       secret key of the binders
      client.key              public key of the connecting sockets
      client.key_secret       secret key of the connecting sockets
      authorized/             public keys a binder accepts (one ``*.key`` file each)
        client.key            a copy of ../client.key

Another client (say ``aegis capture`` on another machine with its own keypair) is allowed
by dropping its public ``.key`` file into ``authorized/``; processes read that directory at
start-up.

Only ``create`` and ``load`` touch the disk; nothing here logs or prints a secret key, and
``CurveKeys`` never shows one in its ``repr``.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

from common.errors import ConfigError

SERVER = "server"
CLIENT = "client"
AUTHORIZED_DIR = "authorized"
PUBLIC_SUFFIX = ".key"  # zmq.auth's names: public ".key", secret ".key_secret"
SECRET_SUFFIX = ".key_secret"
Z85_KEY_LEN = 40  # a 32-byte curve25519 key in Z85 text
DIR_MODE = 0o700
FILE_MODE = 0o600


@dataclass(frozen=True, kw_only=True)
class CurveKeys:
    """The keys one process needs (Z85 bytes). The secrets never appear in ``repr``."""

    server_public: bytes
    server_secret: bytes = field(repr=False)
    client_public: bytes
    client_secret: bytes = field(repr=False)
    authorized_dir: str  # public keys of the clients a binder accepts (ZAP allow-list)


def key_files(key_dir: str | Path) -> tuple[Path, ...]:
    """Every file ``create`` writes, in a fixed order (``load`` needs all of them)."""
    d = Path(key_dir)
    return (d / f"{SERVER}{PUBLIC_SUFFIX}", d / f"{SERVER}{SECRET_SUFFIX}",
            d / f"{CLIENT}{PUBLIC_SUFFIX}", d / f"{CLIENT}{SECRET_SUFFIX}",
            d / AUTHORIZED_DIR / f"{CLIENT}{PUBLIC_SUFFIX}")


def missing(key_dir: str | Path) -> tuple[Path, ...]:
    return tuple(p for p in key_files(key_dir) if not p.is_file())


def require_curve_support() -> None:
    if not zmq.has("curve"):
        raise ConfigError(f"this libzmq ({zmq.zmq_version()}) was built without CURVE: "
                          "tcp endpoints cannot be secured, use bus.transport = 'ipc'")


# ---------------------------------------------------------------------------- creating
def create(key_dir: str | Path, *, force: bool = False) -> tuple[Path, ...]:
    """Write a fresh server and client keypair into ``key_dir`` (made mode 0700).

    Refuses (``ConfigError``) when any key file exists and ``force`` is False: replacing
    keys locks out every process still holding the old ones. Other public keys an operator
    put in ``authorized/`` are kept. Returns the files written.
    """
    require_curve_support()
    d = Path(key_dir)
    present = [p for p in key_files(d) if p.exists()]
    if present and not force:
        raise ConfigError(f"CURVE keys already exist in {d} ({', '.join(p.name for p in present)}); "
                          "pass --force to replace them (running stacks must then be restarted)")
    auth = d / AUTHORIZED_DIR
    # the directories first, private, so no other user can open a file in the moment
    # between zmq.auth writing it (with the process umask) and our chmod to 0600
    for p in (d, auth):
        p.mkdir(parents=True, exist_ok=True)
        os.chmod(p, DIR_MODE)
    for name in (SERVER, CLIENT):
        for p in (d / f"{name}{PUBLIC_SUFFIX}", d / f"{name}{SECRET_SUFFIX}"):
            p.unlink(missing_ok=True)  # zmq.auth opens with "w": never write through an old file or a symlink
        zmq.auth.create_certificates(d, name)
    shutil.copyfile(d / f"{CLIENT}{PUBLIC_SUFFIX}", auth / f"{CLIENT}{PUBLIC_SUFFIX}")
    files = key_files(d)
    for p in files:
        os.chmod(p, FILE_MODE)
    return files


# ---------------------------------------------------------------------------- loading
def load(key_dir: str | Path) -> CurveKeys:
    """The stack's keys from ``key_dir``; ``ConfigError`` (with the fix) when any file is
    missing, unreadable, malformed, or a secret is readable by other users."""
    require_curve_support()
    d = Path(key_dir)
    gone = missing(d)
    if gone:
        raise ConfigError(f"tcp transport needs ZeroMQ CURVE keys, and {d} lacks "
                          f"{', '.join(str(p.relative_to(d)) for p in gone)}: create them with "
                          f"`aegis keys --dir {d}` (tcp without CURVE is never allowed)")
    server_public, server_secret = _load_pair(d, SERVER)
    client_public, client_secret = _load_pair(d, CLIENT)
    return CurveKeys(server_public=server_public, server_secret=server_secret,
                     client_public=client_public, client_secret=client_secret,
                     authorized_dir=str(d / AUTHORIZED_DIR))


def _load_pair(d: Path, name: str) -> tuple[bytes, bytes]:
    secret_file = d / f"{name}{SECRET_SUFFIX}"
    try:
        mode = stat.S_IMODE(secret_file.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"cannot read CURVE key file {secret_file}: {exc.strerror or exc}") from None
    if mode & 0o077:  # like ssh: a secret other users can read is no secret any more
        raise ConfigError(f"CURVE secret key {secret_file} is readable by other users "
                          f"(mode {mode:04o}); run: chmod 600 {secret_file}")
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as exc:
        # the message names the file only: it must not quote the file's content
        raise ConfigError(f"CURVE key file {secret_file} is not a valid certificate "
                          f"({type(exc).__name__})") from None
    if secret is None or len(secret) != Z85_KEY_LEN or len(public) != Z85_KEY_LEN:
        raise ConfigError(f"CURVE key file {secret_file} holds no valid secret key")
    return public, secret
