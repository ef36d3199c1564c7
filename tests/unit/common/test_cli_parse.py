"""``common.cli.parse_only`` / ``parse_with``: a command line parsed by the command's own
parser, and the command never run."""

from __future__ import annotations

import argparse

import pytest

from common import cli
from common.errors import ConfigError


def _entry_that_records(ran: list[str]):
    def main(argv: list[str]) -> int:
        p = argparse.ArgumentParser(prog="t")
        p.add_argument("--n", type=int, required=True)
        args = p.parse_args(argv)
        ran.append(f"ran with {args.n}")
        return 0
    return main


def test_parse_with_returns_the_namespace_and_stops():
    """The entry's parsed arguments come back, and nothing after its parse_args runs."""
    ran: list[str] = []
    original = argparse.ArgumentParser.parse_args
    ns = cli.parse_with(_entry_that_records(ran), ["--n", "7"])
    assert vars(ns) == {"n": 7}
    assert ran == []
    assert argparse.ArgumentParser.parse_args is original  # put back


def test_parse_with_raises_the_usage_error_even_where_the_entry_catches_it():
    """A bad flag gives SystemExit(2), also from an entry that turns SystemExit into a return code."""
    def catching(argv: list[str]) -> int:
        try:
            argparse.ArgumentParser(prog="t").parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    with pytest.raises(SystemExit) as e:
        cli.parse_with(catching, ["--nope"])
    assert e.value.code == 2


def test_parse_with_refuses_an_entry_that_parses_nothing():
    """An entry that returns without calling parse_args is an error, not a silent pass."""
    with pytest.raises(ConfigError):
        cli.parse_with(lambda argv: 0, [])


def test_parse_only_uses_the_real_commands():
    """`aegis run` options parse to their values; an unknown command or flag exits 2; --help 0."""
    ns = cli.parse_only(["run", "--duration", "5", "--mode", "paper"])
    assert (ns.duration, ns.mode, ns.capture) == (5.0, "paper", None)
    assert vars(cli.parse_only(["--help"])) == {}
    for bad in (["rnu"], ["run", "--durration", "5"], ["run", "--mode", "papper"]):
        with pytest.raises(SystemExit) as e:
            cli.parse_only(bad)
        assert e.value.code == 2, bad
    with pytest.raises(SystemExit) as e:
        cli.parse_only(["replay", "--help"])
    assert e.value.code == 0
