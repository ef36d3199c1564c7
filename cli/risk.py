"""``aegis risk``: show the kill switch, or clear it on purpose.

    aegis risk [--config FILE] [--data-dir DIR]          the saved kill-switch state
    aegis risk --clear-halt [--config FILE] [--data-dir DIR]

The kill switch (daily loss, drawdown) stays tripped across restarts: the brain saves it in
the database (table ``model_state``, name ``risk_state``) and reads it back at start. Clearing
it is a person's decision, made with the stack stopped (the brain reads the state only at
start, and the orchestrator is the database's only writer while it runs): the saved state is
removed, so the next start begins a fresh day baseline and peak from the account's equity.
"""

from __future__ import annotations

import argparse
import json
import sys

from common import config as config_mod
from common import journal_store, service, wire
from common.errors import ConfigError, StoreError

RISK_NAME = wire.RISK_STATE_NAME  # the row the brain saves and reads back


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aegis risk", description="show or clear the saved kill switch")
    p.add_argument("--config", help="TOML or JSON config file")
    p.add_argument("--data-dir", help="where the database lives (default ./var)")
    p.add_argument("--clear-halt", action="store_true", help="clear a tripped kill switch (stack stopped)")
    args = p.parse_args(argv)
    try:
        cfg = config_mod.load(args.config)
        if args.data_dir:
            cfg = config_mod.replace(cfg, data_dir=args.data_dir)
    except ConfigError as exc:
        print(f"aegis risk: {exc}", file=sys.stderr)
        return 2
    path = service.db_path(cfg)
    if not path.exists():
        print(f"aegis risk: no database at {path} (nothing saved: the kill switch is not tripped)")
        return 0
    try:
        with journal_store.read_only(path, timeout_s=5.0) as journal:
            saved = journal.model_state(RISK_NAME)
    except StoreError as exc:
        print(f"aegis risk: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    try:
        state = json.loads(saved) if saved is not None else None
    except ValueError:
        state = {"halted": True, "halt_detail": "saved state unreadable (the brain starts halted)"}
    if not args.clear_halt:
        if state is None:
            print("kill switch: not tripped (no saved state)")
        else:
            print(f"kill switch: {'HALTED' if state.get('halted') else 'armed'}"
                  + (f" ({state.get('halt_reason', '')}: {state.get('halt_detail', '')})" if state.get("halted") else ""))
        return 0
    pid = service.live_pid(service.run_dir(cfg) / "supervisor.pid")
    if pid is not None:
        print(f"aegis risk: a stack runs (supervisor pid {pid}); stop it first", file=sys.stderr)
        return 2
    if state is None:
        print("kill switch: not tripped; nothing to clear")
        return 0
    try:
        journal_store.clear_model_state(path, RISK_NAME)
    except StoreError as exc:
        print(f"aegis risk: cannot clear the kill switch in {path}: {exc}", file=sys.stderr)
        return 2
    print(f"kill switch cleared (was {'HALTED' if state.get('halted') else 'armed'}); "
          "the next start takes a fresh baseline from the account's equity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
