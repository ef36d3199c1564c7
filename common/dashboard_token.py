"""The dashboard's control token (and the Telegram bot's): where it comes from, how
``aegis keys`` makes the dashboard's.

Every mutation of the dashboard's control API (pause, close, ...) must carry this token in a
request header. Where the dashboard finds it, first match wins:

    1. ``AEGIS_DASHBOARD_TOKEN``            the token itself, from the environment
    2. ``AEGIS_DASHBOARD_TOKEN_FILE``       a file holding it
    3. ``/run/secrets/aegis_dashboard_token`` a docker secret (empty = none)
    4. ``<key dir>/dashboard.token``        written by ``aegis keys`` (mode 0600)

None of them: the dashboard still shows everything, and refuses every command (401). A token
file readable by other users is refused like a CURVE secret. Nothing here prints, logs or
returns a token anywhere but to its caller.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Mapping

from common.errors import ConfigError

TOKEN_ENV = "AEGIS_DASHBOARD_TOKEN"
TOKEN_FILE_ENV = "AEGIS_DASHBOARD_TOKEN_FILE"
FILE_NAME = "dashboard.token"
SECRET_NAME = "aegis_dashboard_token"
SECRET_DIR = Path("/run/secrets")
MIN_LEN = 16  # shorter is guessable; the generated one has 43 characters (32 random bytes)
FILE_MODE = 0o600


def token_file(key_dir: str | Path) -> Path:
    return Path(key_dir) / FILE_NAME


def create(key_dir: str | Path, *, force: bool = False) -> Path:
    """Write a fresh random token into ``<key_dir>/dashboard.token`` (mode 0600, the directory
    0700); ``ConfigError`` when one exists and not ``force`` (a new token locks out whoever
    uses the old one). Returns the file's path."""
    d = Path(key_dir)
    path = token_file(d)
    if path.exists() and not force:
        raise ConfigError(f"a dashboard token already exists in {path}; pass --force to replace it")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    path.unlink(missing_ok=True)  # never write through an old file or a symlink
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path


def load(env: Mapping[str, str], key_dir: str | Path, secret_dir: Path = SECRET_DIR) -> tuple[str, str]:
    """``(token, where it came from)``; ``("", "")`` when none is configured."""
    return _load(env, TOKEN_ENV, TOKEN_FILE_ENV, [(secret_dir / SECRET_NAME, False), (token_file(key_dir), True)])


TELEGRAM_ENV = "AEGIS_TELEGRAM_TOKEN"
TELEGRAM_FILE_ENV = "AEGIS_TELEGRAM_TOKEN_FILE"
TELEGRAM_SECRET_NAME = "aegis_telegram_token"


def load_telegram(env: Mapping[str, str], secret_dir: Path = SECRET_DIR) -> tuple[str, str]:
    """The Telegram bot's token (from @BotFather), the same way: ``AEGIS_TELEGRAM_TOKEN``, its
    ``_FILE``, or the docker secret ``aegis_telegram_token``; ``("", "")`` when none."""
    return _load(env, TELEGRAM_ENV, TELEGRAM_FILE_ENV, [(secret_dir / TELEGRAM_SECRET_NAME, False)])


def _load(env: Mapping[str, str], var: str, file_var: str, more: list[tuple[Path, bool]]) -> tuple[str, str]:
    if env.get(var):
        return _checked(env[var].strip(), var), var
    candidates = []
    if env.get(file_var):
        path = Path(env[file_var])
        if not path.is_file():
            raise ConfigError(f"{file_var} names {path}, which is not a file")
        candidates.append((path, True))
    for path, private in candidates + more:
        if not path.is_file():
            continue
        if private:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise ConfigError(f"token file {path} is readable by other users (mode {mode:04o}); "
                                  f"run: chmod 600 {path}")
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {path}: {exc.strerror or exc}") from None
        if text:  # an empty docker secret (/dev/null, the compose default) means none
            return _checked(text, str(path)), str(path)
    return "", ""


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_LEN or any(c.isspace() for c in token) or not token.isprintable():
        # the message names the source, never the value
        raise ConfigError(f"the token from {where} must be at least {MIN_LEN} printable characters "
                          "without spaces (aegis keys --dashboard-token makes one for the dashboard)")
    return token
