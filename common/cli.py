"""``aegis``: one command, a subcommand per job.

    aegis run [--duration S] [--summary-json PATH] ...   the whole stack (supervisor)
    aegis orchestrator | feed | brain | exchange-sim      one service alone (debugging)
    aegis status [--run-dir DIR]                          live state of a running stack
    aegis dashboard [--port N]                            the live page and control API alone
    aegis report --db PATH --out DIR                      metrics, charts, trades of a run
    aegis risk [--clear-halt]                             the kill switch: show it, clear it
    aegis decode FILE [--json]                            decoder + firewall over a capture
    aegis smc CANDLES.csv --out OUT.csv                   SMC features of a candle file
    aegis capture --out FILE | capture-info FILE          record / check ZeroMQ captures
    aegis keys [--dir DIR] [--force]                      CURVE keys for tcp endpoints
    aegis data download | list | import                   Binance's data archive -> Parquet catalog
    aegis backtest --catalog DIR --strategy S --symbols .. backtest -> trades.csv, summary.json, report.html
    aegis sweep | walkforward --catalog DIR --grid P=1,2 .. parameter search, rolling train/test (Ray)

Each subcommand is imported only when chosen, so ``aegis feed`` never loads the brain.
``parse_only`` parses a command line with the command's own parser and stops there (the docs
check, tests/unit/test_docs_commands.py, runs every documented command through it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from common.errors import ConfigError

COMMANDS: dict[str, tuple[str, str] | tuple[str, str, str]] = {
    "run": ("services.orchestrator.supervisor", "run the whole stack (demo by default)"),
    "orchestrator": ("services.orchestrator.__main__", "database, ring owner, journal writer"),
    "feed": ("services.feed.__main__", "market data in: WebSocket -> firewall -> ring"),
    "brain": ("services.brain.__main__", "ring -> candles -> events"),
    "exchange-sim": ("services.exchange_sim.__main__", "local Binance USD-M exchange (demo, tests)"),
    "dashboard": ("services.dashboard.__main__", "live web dashboard and control API (loopback)"),
    "status": ("cli.status", "live state of a running stack, as a table"),
    "report": ("cli.report", "report directory (HTML, PNG, CSV) from a database"),
    "risk": ("cli.risk", "show the saved kill switch; --clear-halt clears it"),
    "decode": ("cli.decode", "decode + validate a capture file, print counts"),
    "smc": ("services.brain.smc_cli", "Smart Money Concepts features of a candle CSV"),
    "capture": ("cli.capture", "record a running stack's ZeroMQ streams to a capture file"),
    "replay": ("cli.replay", "play a capture through a real stack, deterministically"),
    "capture-info": ("cli.capture", "describe and check a capture file", "info_main"),
    "keys": ("cli.keys", "create the ZeroMQ CURVE keys tcp endpoints need"),
    "data": ("research.data_cli", "Binance's public data archive -> a local Parquet catalog"),
    "backtest": ("research.backtest_cli", "a strategy over the catalog through the live trader"),
    "sweep": ("research.sweep_cli", "parameter sweep (grid or Optuna) of backtests, on Ray"),
    "walkforward": ("research.sweep_cli", "rolling train/test windows: in-sample vs out-of-sample", "walkforward_main"),
}
HELP_WORDS = ("-h", "--help", "help")


def usage() -> str:
    lines = ["usage: aegis <command> [options]", "", "commands:"]
    lines += [f"  {name:<14} {spec[1]}" for name, spec in COMMANDS.items()]
    lines += ["", "aegis <command> --help shows the options of one command."]
    return "\n".join(lines)


def entry_point(cmd: str) -> Callable[[list[str]], int | None]:
    """The function that runs ``aegis <cmd>`` (its module is imported now)."""
    spec = COMMANDS[cmd]
    return getattr(importlib.import_module(spec[0]), spec[2] if len(spec) > 2 else "main")


class _Parsed(BaseException):  # not an Exception: a command's own ``except Exception`` lets it by
    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.namespace = namespace


def parse_with(entry: Callable[[list[str]], int | None], args: list[str]) -> argparse.Namespace:
    """What ``entry(args)`` parses from ``args``, without running the rest of it.

    The entry runs up to its first ``ArgumentParser.parse_args`` and stops right after it.
    A usage error or ``--help`` raises ``SystemExit`` with argparse's code (2 or 0), as it
    would for a user, even where the entry catches it; an entry that parses nothing is an error.
    """
    original = argparse.ArgumentParser.parse_args
    exits: list[SystemExit] = []

    def parse_and_stop(self: argparse.ArgumentParser, *a: object, **kw: object) -> argparse.Namespace:
        try:
            namespace = original(self, *a, **kw)  # type: ignore[arg-type]
        except SystemExit as exc:
            exits.append(exc)
            raise
        raise _Parsed(namespace)

    argparse.ArgumentParser.parse_args = parse_and_stop  # type: ignore[method-assign]
    try:
        entry(args)
    except _Parsed as done:
        return done.namespace
    except SystemExit:
        if not exits:
            raise
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    if exits:
        raise exits[0]
    raise ConfigError(f"{getattr(entry, '__module__', entry)} returned without parsing its arguments")


def parse_only(argv: list[str]) -> argparse.Namespace:
    """Parse an ``aegis`` command line as ``main`` would, without running the command.

    An unknown command or flag raises ``SystemExit(2)`` (argparse's message on stderr);
    ``--help`` raises ``SystemExit(0)`` after printing the help, as for a user.
    """
    if not argv or argv[0] in HELP_WORDS:
        return argparse.Namespace()
    if argv[0] not in COMMANDS:
        print(f"aegis: unknown command {argv[0]!r}", file=sys.stderr)
        raise SystemExit(2)
    return parse_with(entry_point(argv[0]), argv[1:])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in HELP_WORDS:
        print(usage())
        return 0
    cmd, rest = args[0], args[1:]
    if cmd not in COMMANDS:
        print(f"aegis: unknown command {cmd!r}\n\n{usage()}", file=sys.stderr)
        return 2
    entry = entry_point(cmd)
    try:
        return int(entry(rest) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `aegis ... | head`: the reader has what it wanted
        # stdout to /dev/null, so that the interpreter's own flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a process a closed pipe ended
    except ConfigError as exc:  # a refusal to start (bad config, no CURVE keys): the message is the fix
        print(f"aegis {cmd}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
