"""``aegis keys``: create the ZeroMQ CURVE keys a tcp stack needs.

    aegis keys [--dir DIR] [--force] [--config FILE] [--data-dir DIR]

Writes a server keypair (for the binding sockets) and a client keypair (for the connecting
ones) into DIR, default the directory the services read (``bus.curve_dir``, else
``<data_dir>/keys``); see ``common.curve`` for the layout and docs/security.md for the why.
Existing keys are kept unless ``--force``: new keys lock out every process that still has
the old ones. Prints where the files are and the public keys, never a secret key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import config as config_mod
from common import curve
from common.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aegis keys",
                                description="create the ZeroMQ CURVE keys for tcp endpoints")
    p.add_argument("--dir", help="key directory (default: bus.curve_dir, else <data_dir>/keys)")
    p.add_argument("--force", action="store_true", help="replace existing keys")
    p.add_argument("--config", help="TOML or JSON config file (to find the default directory)")
    p.add_argument("--data-dir", help="where the database lives (default ./var)")
    args = p.parse_args(argv)
    key_dir = Path(args.dir).resolve() if args.dir else None
    try:
        if key_dir is None:
            key_dir = default_dir(args.config, args.data_dir)
        files = curve.create(key_dir, force=args.force)
        keys = curve.load(key_dir)  # read back what the services will load (mode check included)
    except ConfigError as exc:
        print(f"aegis keys: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aegis keys: cannot write keys to {key_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(report(key_dir, files, keys))
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
