"""``aegis keys``: create the ZeroMQ CURVE keys a tcp stack needs, and the dashboard's token.

    aegis keys [--dir DIR] [--force] [--config FILE] [--data-dir DIR]
    aegis keys --dashboard-token [--dir DIR] [--force]      the dashboard's token alone

Writes a server keypair (for the binding sockets) and a client keypair (for the connecting
ones) into DIR, default the directory the services read (``bus.curve_dir``, else
``<data_dir>/keys``); see ``common.curve`` for the layout and docs/security.md for the why.
Beside them, ``dashboard.token``: the token the dashboard's control API asks for
(``common.dashboard_token``, docs/operate.md). Existing keys are kept unless ``--force``:
new keys lock out every process (and every person) that still has the old ones. Prints where
the files are and the public keys, never a secret key or the token.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import config as config_mod
from common import curve, dashboard_token
from common.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aegis keys",
                                description="create the ZeroMQ CURVE keys for tcp endpoints")
    p.add_argument("--dir", help="key directory (default: bus.curve_dir, else <data_dir>/keys)")
    p.add_argument("--force", action="store_true", help="replace existing keys")
    p.add_argument("--config", help="TOML or JSON config file (to find the default directory)")
    p.add_argument("--data-dir", help="where the database lives (default ./var)")
    p.add_argument("--dashboard-token", action="store_true",
                   help="only the dashboard's control token (dashboard.token), not the CURVE keys")
    args = p.parse_args(argv)
    key_dir = Path(args.dir).resolve() if args.dir else None
    try:
        if key_dir is None:
            key_dir = default_dir(args.config, args.data_dir)
        if args.dashboard_token:
            print(token_report(dashboard_token.create(key_dir, force=args.force), kept=False))
            return 0
        files = curve.create(key_dir, force=args.force)
        keys = curve.load(key_dir)  # read back what the services will load (mode check included)
        token = dashboard_token.token_file(key_dir)
        kept = token.exists() and not args.force  # made earlier with --dashboard-token: keep it
        if not kept:
            dashboard_token.create(key_dir, force=args.force)
    except ConfigError as exc:
        print(f"aegis keys: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aegis keys: cannot write keys to {key_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(report(key_dir, files, keys) + "\n\n" + token_report(token, kept=kept))
    return 0


def default_dir(config_file: str | None, data_dir: str | None) -> Path:
    """The directory the services read with the same config and environment."""
    cfg = config_mod.load(config_file)
    if data_dir:
        cfg = config_mod.replace(cfg, data_dir=data_dir)
    return config_mod.curve_dir(cfg)


def report(key_dir: Path, files: tuple[Path, ...], keys: curve.CurveKeys) -> str:
    """What was written, for a person: paths and public keys. Never a secret key."""
    lines = [f"aegis keys: CURVE keys written to {key_dir} (directory 0700, files 0600)"]
    lines += [f"  {f}" for f in files]
    lines += ["",
              f"server public key: {keys.server_public.decode()}",
              f"client public key: {keys.client_public.decode()}",
              "",
              "The *.key_secret files are secrets: keep them as private as a password.",
              f"A binder accepts only clients whose public .key file is in {keys.authorized_dir}/",
              "",
              "Use them:",
              f"  AEGIS_BUS__TRANSPORT=tcp AEGIS_BUS__CURVE_DIR={key_dir} aegis run"]
    return "\n".join(lines)


def token_report(path: Path, *, kept: bool) -> str:
    """Where the dashboard's token is and how to use it; never the token itself."""
    return "\n".join([
        f"dashboard token {'kept' if kept else 'written'}: {path} (mode 0600; a secret like a password)",
        "The dashboard's control API (pause, close, ...) wants it in a request header:",
        f'  curl -X POST -H "Authorization: Bearer $(cat {path})" http://127.0.0.1:8470/api/pause',
        "On the page, paste it into the token field once; it stays in that tab's memory only."])
