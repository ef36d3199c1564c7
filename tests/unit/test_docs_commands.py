"""The docs check: every command shown in README.md and docs/*.md is checked, so none drifts.

Commands are taken from fenced ``sh`` blocks (and from `code spans` in the prose that start
with ``aegis``, ``.venv/bin/...``, ``make`` or ``python -m``). Each one is checked without
running it:

- ``aegis ...`` / ``.venv/bin/aegis ...``: parsed by the real command-line parser
  (``common.cli.parse_only``), so an unknown command or flag fails here as it would for a user;
- ``make X``: the target exists in the Makefile;
- ``python -m M ...``: M is importable and, where its ``main`` uses argparse, its flags parse;
- ``AEGIS_*=value`` in front of a command: a real config field, with a value it accepts;
- every repository path a command reads exists (outputs of a command, ``./var`` and paths
  outside the repository excepted);
- ``toml`` blocks load as an AEGIS config (a misspelt field fails);
- every fenced block names its language (``sh`` for commands, ``text`` for output), and a
  command-looking line in a block that is not ``sh`` is an error;
- every relative link points at a file of the repository, and at a heading of it if named.

Programs that cannot run here (docker, curl against a running stack, ...) are in
``OTHER_PROGRAMS`` with the reason. A few cheap commands are really run (``aegis --help``,
``aegis <command> --help`` for every documented command, ``aegis capture-info`` on the golden
capture). The checker checks itself on a snippet full of typos.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from common import cli
from common import config as config_mod
from common.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")))
SHELL_LANGS = frozenset({"sh", "bash", "shell", "console"})
AEGIS = frozenset({"aegis", ".venv/bin/aegis"})
PYTHON = frozenset({"python", "python3", ".venv/bin/python", ".venv/bin/python3"})

# flags whose value is a file or directory the command creates
OUTPUT_FLAGS = frozenset({"--out", "--capture", "--summary-json", "--stats-out", "--report",
                          "--decisions", "--workdir", "--data-dir", "--run-dir", "--dir"})
# repository paths that exist only after a run: (prefix, why)
RUNTIME_PATHS = (("var/", "aegis run's default data directory (database, keys, replay work)"),)
# files a page tells the reader to write before the command that reads them: (doc, path, why)
READER_FILES = (("docs/running.md", "aegis.toml", "the page's TOML example, saved by the reader"),)

# programs other than aegis, make and python: name -> why it is not run here
OTHER_PROGRAMS = {
    "docker": "needs a docker daemon; tests/integration/test_compose.py builds and runs the "
              "compose stack wherever one runs (the arguments after the aegis image are parsed)",
    "curl": "needs a running stack; the URL must be on 127.0.0.1 (checked)",
    "git": "the reader's own repository; paths after it are checked",
    "umask": "shell built-in (secret files private)",
    "mkdir": "creates a directory",
    "printf": "writes a file the command after it reads",
    "chown": "needs root; only changes the owner of the reader's own files",
    "sudo": "the command after it is checked instead",
    "apt-get": "installs system packages (needs root and the Debian registry)",
    "debootstrap": "builds a Debian root for a local docker base image (needs root)",
    "tar": "packs that root for docker import",
    ".venv/bin/ray": "starts Ray nodes on the reader's machines; tests/integration/test_research_ray_cluster.py "
                     "runs `ray start --head` with these flags on 127.0.0.1",
}
# docker commands the pages may show (a typo such as `docker compose upp` fails)
DOCKER_SUBCOMMANDS = frozenset({("run",), ("import",), ("build",), ("images",)} | {
    ("compose", sub) for sub in ("up", "down", "logs", "stop", "ps", "build", "version", "config")})
# environment variables that are not AEGIS config fields: name -> (file that reads it, why)
OTHER_ENV = {
    "BINANCE_API_KEY": ("common/config.py", "the live key (environment only)"),
    "BINANCE_API_SECRET": ("common/config.py", "the live secret (environment only)"),
    "BINANCE_API_KEY_PATH": ("docker-compose.yml", "source file of the docker secret"),
    "BINANCE_API_SECRET_PATH": ("docker-compose.yml", "source file of the docker secret"),
    "PYTHON_IMAGE": ("docker-compose.yml", "base image of the Dockerfile"),
    "PROMETHEUS_IMAGE": ("docker-compose.yml", "the monitoring profile's Prometheus image"),
    "CHAOS_SEED": ("tests/chaos/test_chaos_kills.py", "replays one chaos plan"),
    "CHAOS_KEEP": ("tests/chaos/test_chaos_kills.py", "keeps the chaos run's log and database"),
    "AEGIS_SCREENSHOT_DOCS": ("tests/integration/test_dashboard_browser.py", "refreshes docs/img/dashboard.png"),
    "BENCH_SETTLE_MS": ("bench/tick_to_trade_section.py", "tick to trade: the quiet market before each trigger (ms)"),
    "RAY_AUTH_MODE": ("tests/integration/test_research_ray_cluster.py", "Ray's own: token authentication on"),
    "RAY_AUTH_TOKEN": ("tests/integration/test_research_ray_cluster.py", "Ray's own: the cluster's shared token"),
    # AEGIS_-named but a secret, not a config field (never read from a config file)
    "AEGIS_TELEGRAM_TOKEN": ("common/dashboard_token.py", "the Telegram bot's token (environment only)"),
}
# python -m modules whose flags are not argparse-parsed here: name -> why
UNPARSED_MODULES = {"pytest": "pytest's own options (paths after it are checked)",
                    "bench.bench_data_quick": "a script without options: nothing to parse"}
# commands the test really runs (cheap, read-only); each must be shown in some doc
EXECUTED = ("aegis capture-info tests/golden/demo_240s.aegiscap",)


@dataclass(frozen=True, kw_only=True)
class Command:
    where: str                       # "README.md:42"
    env: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]
    writes: tuple[str, ...]          # files after > or >>
    inline: bool                     # a code span in prose: placeholders allowed, paths unchecked


@dataclass(frozen=True, kw_only=True)
class Block:
    lang: str
    line: int                        # line number of the first line inside the fence
    text: str


# ------------------------------------------------------------------------- extracting
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced code block of a Markdown text, with its language and first line."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, body = m.group(1), m.group(2).lower(), []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j])
            j += 1
        indent = len(lines[i]) - len(lines[i].lstrip())
        body = [b[indent:] if b[:indent].strip() == "" else b for b in body]
        blocks.append(Block(lang=lang, line=i + 2, text="\n".join(body)))
        i = j + 1
    return blocks


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced blocks."""
    out, inside = [], ""
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m and not inside:
            inside = m.group(1)
        elif inside and line.strip().startswith(inside):
            inside = ""
        elif not inside:
            out.append((n, line))
    return out


COMMAND_START = re.compile(
    r"^(?:[A-Z][A-Z0-9_]*=\S*\s+)*(?:(?:\.venv/bin/)?aegis [a-z-]+|\.venv/bin/python3?|make|python3? -m)\s")
# in a code span, placeholders (FILE, N) and a flag named without its value are fine; these are not
UNKNOWN_WORDS = ("unrecognized arguments", "unknown command", "invalid choice", "ambiguous option")


def inline_commands(text: str) -> list[tuple[int, str]]:
    """Code spans in prose that are commands: `aegis ...`, `make ...`, `python -m ...`."""
    spans = []
    for n, line in prose_lines(text):
        for span in re.findall(r"`([^`]+)`", line):
            if COMMAND_START.match(span + " "):
                spans.append((n, span))
    return spans


def logical_lines(source: str, first_line: int) -> list[tuple[int, str]]:
    """(line number, line) with backslash continuations joined onto their first line."""
    out: list[tuple[int, str]] = []
    pending, start = "", first_line
    for n, line in enumerate(source.split("\n"), first_line):
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def split_commands(source: str, *, doc: str, first_line: int, inline: bool) -> list[Command]:
    """Shell text -> simple commands (continuations joined, comments dropped, split at ; && || | &)."""
    commands = []
    for n, line in logical_lines(source, first_line):
        where = f"{doc}:{n}"
        line = re.sub(r"\$\([^)]*\)", "0", line)           # $(id -u) -> 0
        if inline:
            line = line.replace("[", " ").replace("]", " ")  # usage syntax: [--json]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as exc:
            raise ValueError(f"{where}: cannot split {line!r}: {exc}") from exc
        current: list[str] = []
        for tok in [*tokens, ";"]:
            if tok in (";", "&&", "||", "|", "&", "(", ")"):
                if current:
                    commands.append(_command(current, where=where, inline=inline))
                current = []
            else:
                current.append(tok)
    return commands


def _command(tokens: list[str], *, where: str, inline: bool) -> Command:
    env, i = [], 0
    while i < len(tokens) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[i]):
        name, value = tokens[i].split("=", 1)
        env.append((name, value))
        i += 1
    argv, writes, rest = [], [], tokens[i:]
    k = 0
    while k < len(rest):
        if rest[k] in (">", ">>", "<"):
            if rest[k] != "<" and k + 1 < len(rest):
                writes.append(rest[k + 1])
            k += 2
            continue
        argv.append(rest[k])
        k += 1
    return Command(where=where, env=tuple(env), argv=tuple(argv), writes=tuple(writes), inline=inline)


def commands_in(doc: str, text: str) -> tuple[list[Command], list[str]]:
    """The commands of one page, in order, and the problems found while extracting them."""
    found: list[tuple[int, list[Command]]] = []
    problems = []
    for block in fenced_blocks(text):
        where = f"{doc}:{block.line}"
        if block.lang in SHELL_LANGS:
            found.append((block.line, split_commands(block.text, doc=doc, first_line=block.line,
                                                     inline=False)))
        elif block.lang == "toml":
            problems += toml_problems(block.text, where)
        if not block.lang:
            problems.append(f"{doc}:{block.line - 1}: a fenced block without a language "
                            f"(sh for commands, text for output)")
        if block.lang in ("", "text"):
            for n, line in enumerate(block.text.splitlines()):
                if re.match(r"^(\$ |\.venv/bin/|make |python3? -m |aegis [a-z-]+ --)", line):
                    problems.append(f"{doc}:{block.line + n}: a command in a block not marked "
                                    f"```sh: {line.strip()!r}")
    for n, span in inline_commands(text):
        found.append((n, split_commands(span, doc=doc, first_line=n, inline=True)))
    found.sort(key=lambda item: item[0])
    return [c for _, cmds in found for c in cmds], problems


# ------------------------------------------------------------------------- checking
def toml_problems(text: str, where: str) -> list[str]:
    """A TOML example must load as an AEGIS config."""
    try:
        config_mod.from_dict(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        return [f"{where}: TOML example does not load: {exc}"]
    return []


def _placeholder(value: str) -> bool:
    return value in ("", "...") or value.startswith(("$", "<"))


def env_problems(cmd: Command) -> list[str]:
    problems = []
    defaults = config_mod.to_dict(config_mod.from_dict({}))
    for name, value in cmd.env:
        if not name.startswith(config_mod.ENV_PREFIX) or name in OTHER_ENV:
            if name not in OTHER_ENV:
                problems.append(f"{cmd.where}: environment variable {name} is neither an AEGIS "
                                f"config field nor in OTHER_ENV")
            continue
        key = name[len(config_mod.ENV_PREFIX):].lower()
        section, _, fld = key.partition("__")
        known = (fld in defaults.get(section, {})) if fld else (section in defaults
                                                                 and not isinstance(defaults[section], dict))
        if not known:
            problems.append(f"{cmd.where}: {name} is not a config field (see common/config.py)")
        elif not _placeholder(value):
            try:
                config_mod.load(None, env={name: value})
            except ConfigError as exc:
                problems.append(f"{cmd.where}: {name}={value}: {exc}")
    return problems


def _quietly(fn, *args):
    """fn(*args) with stdout/stderr captured: (result or SystemExit, captured text)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            return fn(*args), out.getvalue()
        except SystemExit as exc:
            return exc, out.getvalue()


def _parse_problem(cmd: Command, shown: str, fn, *args) -> list[str]:
    where = cmd.where
    result, text = _quietly(fn, *args)
    if cmd.inline and not any(w in text for w in UNKNOWN_WORDS):
        return []
    if isinstance(result, SystemExit) and result.code not in (0, None):
        last = text.strip().splitlines()[-1] if text.strip() else f"exit {result.code}"
        return [f"{where}: `{shown}` does not parse: {last}"]
    return []


def _looks_like_path(tok: str) -> bool:
    if tok.startswith("-") or "://" in tok or "=" in tok or "$" in tok:
        return False
    return "/" in tok or re.search(r"\.[A-Za-z][A-Za-z0-9]*$", tok) is not None


def path_problems(cmd: Command, args: tuple[str, ...], made: set[str], doc: str) -> list[str]:
    """Every repository path a command reads must exist (or be made earlier on the page)."""
    problems = []
    prev = ""
    for tok in args:
        value = tok.split("=", 1)[1] if tok.startswith("--") and "=" in tok else tok
        flag = tok.split("=", 1)[0] if tok.startswith("--") and "=" in tok else prev
        prev = tok
        if not _looks_like_path(value):
            continue
        norm = value.removeprefix("./").rstrip("/")
        if flag in OUTPUT_FLAGS:
            made.add(norm)
            continue
        if cmd.inline or value.startswith(("/", "~")):
            continue
        if (norm in made or any(norm.startswith(m + "/") for m in made)
                or any(norm == p.rstrip("/") or norm.startswith(p) for p, _ in RUNTIME_PATHS)
                or any(d == doc and f == norm for d, f, _ in READER_FILES)
                or (REPO / norm).exists()):
            continue
        problems.append(f"{cmd.where}: `{' '.join(cmd.argv)}` reads {value}, which is not in the "
                        f"repository (nor made by an earlier command on the page)")
    return problems


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M)}


def command_problems(cmd: Command, made: set[str], doc: str) -> list[str]:
    """Everything wrong with one command (empty when it is fine)."""
    if not cmd.argv:
        return []  # a shell variable (root=$(mktemp -d)), not an environment for a command
    problems = env_problems(cmd)
    argv = cmd.argv
    while argv and argv[0] == "sudo":
        argv = argv[1:]
    if not argv:
        return problems
    shown = " ".join(argv)
    prog, args = argv[0], tuple(a for a in argv[1:] if not (cmd.inline and a in ("...", "|")))
    made.update(w.removeprefix("./") for w in cmd.writes)
    if prog in AEGIS:
        problems += _parse_problem(cmd, shown, cli.parse_only, list(args))
        problems += path_problems(cmd, args, made, doc)
    elif prog in PYTHON:
        if len(args) < 2 or args[0] != "-m":
            if cmd.inline:
                return problems  # prose naming `python -m` itself
            return [*problems, f"{cmd.where}: `{shown}`: only `python -m MODULE` is checked"]
        module = args[1]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return [*problems, f"{cmd.where}: `{shown}`: no module named {module}"]
        if module not in UNPARSED_MODULES:
            name = module if spec.submodule_search_locations is None else module + ".__main__"
            mod = importlib.import_module(name)
            main = getattr(mod, "main", None)
            if main is None or "parse_args(" not in inspect.getsource(mod):  # never run it to find out
                problems.append(f"{cmd.where}: `{shown}`: {name} has no argparse main(argv) to parse "
                                f"with (add it to UNPARSED_MODULES with the reason)")
            else:
                problems += _parse_problem(cmd, shown, cli.parse_with, main, list(args[2:]))
        problems += path_problems(cmd, args[2:], made, doc)
    elif prog == "make":
        targets = makefile_targets()
        for t in args:
            if not t.startswith("-") and "=" not in t and t not in targets:
                problems.append(f"{cmd.where}: `{shown}`: the Makefile has no target {t!r}")
    elif prog in OTHER_PROGRAMS:
        if prog == "curl":
            urls = [a for a in args if "://" in a]
            problems += [f"{cmd.where}: `{shown}`: {u} is not on 127.0.0.1"
                         for u in urls if not re.match(r"^https?://(127\.0\.0\.1|localhost)[:/]", u)]
        elif prog == "docker":
            rest = list(args[1:]) if args[:1] == ("compose",) else []
            while rest[:1] == ["--profile"]:  # compose's global option (optional services)
                rest = rest[2:]
            sub = ("compose", *rest[:1]) if args[:1] == ("compose",) else args[:1]
            if sub not in DOCKER_SUBCOMMANDS:
                problems.append(f"{cmd.where}: `{shown}`: `docker {' '.join(sub)}` is not in "
                                f"DOCKER_SUBCOMMANDS")
            if any(a.startswith("aegis:") for a in args):
                image_at = next(i for i, a in enumerate(args) if a.startswith("aegis:"))
                problems += _parse_problem(cmd, shown, cli.parse_only, list(args[image_at + 1:]))
        elif prog == "git":
            problems += path_problems(cmd, args[1:], made, doc)
    else:
        problems.append(f"{cmd.where}: `{shown}`: unknown program {prog!r} (check it here, or add it "
                        f"to OTHER_PROGRAMS with the reason it cannot be checked)")
    return problems


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {_slug(line.lstrip("#")) for _, line in prose_lines(text) if re.match(r"^#{1,6} ", line)}


def link_problems(doc: str, text: str) -> list[str]:
    """Every relative link points at a file of the repository (and a heading of it, if named)."""
    problems = []
    for n, line in prose_lines(text):
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = ((REPO / doc).parent / path).resolve()
            if path and (not file.is_relative_to(REPO) or not file.exists()):
                problems.append(f"{doc}:{n}: link to {target}: no such file in the repository")
            elif anchor and (not path or file.suffix == ".md") and anchor not in anchors(
                    file.read_text() if path else text):
                problems.append(f"{doc}:{n}: link to {target}: no heading #{anchor} there")
    return problems


def doc_problems(doc: str, text: str) -> list[str]:
    """Every problem of one page: its commands in order (a file made above may be read below),
    its TOML examples, its code blocks' languages and its links."""
    commands, problems = commands_in(doc, text)
    problems += link_problems(doc, text)
    made: set[str] = set()
    for cmd in commands:
        problems += command_problems(cmd, made, doc)
    return problems


def all_commands() -> list[Command]:
    return [c for doc in DOCS for c in commands_in(doc, (REPO / doc).read_text())[0]]


# ------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("doc", DOCS)
def test_every_command_of_the_page_checks(doc):
    """Every command, config variable, TOML example and path on the page is valid today."""
    assert doc_problems(doc, (REPO / doc).read_text()) == []


def test_pages_have_commands():
    """The extractor finds the commands (a broken extractor would pass every page silently)."""
    commands = all_commands()
    progs = {c.argv[0] for c in commands if c.argv}
    assert {"make", ".venv/bin/aegis"} <= progs
    assert len([c for c in commands if c.argv and c.argv[0] in AEGIS]) >= 30


BAD_PAGE = """\
```sh
.venv/bin/aegis rnu --duration 5
.venv/bin/aegis run --durration 5
make rnu
.venv/bin/python -m services.brain.model_evl --candles x.csv
.venv/bin/python -m services.brain.model_eval --candels services/exchange_sim/data/BTCUSDT_15m_2024.csv
.venv/bin/aegis replay no/such/file.aegiscap
AEGIS_SIM__SORCE=candles .venv/bin/aegis run
AEGIS_SIM__SYMBOLS=many .venv/bin/aegis run
frobnicate --now
curl https://fapi.binance.com/fapi/v1/ping
docker run --rm aegis:local rnu
docker compose upp -d
```

```toml
[sim]
symbol = 5
```

```
.venv/bin/aegis run --duration 5
```

Prose with `aegis replay FILE --maxx` in it.
Links: [gone](docs/nowhere.md), [no heading](README.md#no-such-heading), [web](https://example.org).
"""


def test_checker_catches_every_typo():
    """Each bad line of a page full of typos gives exactly one problem naming that line."""
    problems = doc_problems("BAD.md", BAD_PAGE)
    lines = sorted(int(p.split(":")[1]) for p in problems)
    assert lines == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 21, 22, 25, 26, 26], problems


GOOD_PAGE = """\
```sh
make run
make test   # a comment
.venv/bin/aegis run --duration 240 --capture my.aegiscap --run-dir /tmp/x \\
  --data-dir /tmp/y
.venv/bin/aegis replay my.aegiscap --report my-report/ && make golden
AEGIS_SIM__SYMBOLS=50 .venv/bin/aegis run --mode paper &
.venv/bin/aegis smc services/exchange_sim/data/BTCUSDT_15m_2024.csv --out out.csv
.venv/bin/python -m services.brain.model_eval --candles services/exchange_sim/data/BTCUSDT_15m_2024.csv
.venv/bin/aegis report --db var/aegis.sqlite3 --out report/
.venv/bin/python -m pytest -q tests/unit
curl http://127.0.0.1:9465/metrics
docker compose up --build -d --wait
docker run --rm --network host aegis:local run --duration 20
```

```toml
[sim]
symbols = 50
```

Prose: `aegis decode FILE [--json]`, `make test-fast`, `AEGIS_SIM__SOURCE=ticks make run`.
Links: [running](docs/running.md#stopping), [top](#good), [licence](LICENSE), [web](https://example.org).

# Good
"""


def test_checker_passes_good_commands():
    """Valid commands, files made earlier on the page, ./var and /tmp paths give no problem."""
    assert doc_problems("GOOD.md", GOOD_PAGE) == []


def test_aegis_help_runs():
    """`aegis --help` (the installed script) exits 0 and lists every command."""
    script = Path(sys.executable).parent / "aegis"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "common.cli"]
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    for name in cli.COMMANDS:
        assert f"  {name} " in done.stdout


def test_documented_commands_print_their_help():
    """`aegis <command> --help` exits 0 with its usage for every command the docs use."""
    used = sorted({c.argv[1] for c in all_commands()
                   if len(c.argv) > 1 and c.argv[0] in AEGIS and c.argv[1] in cli.COMMANDS})
    assert {"run", "replay", "smc", "capture", "report", "keys", "risk"} <= set(used)
    for name in used:
        result, text = _quietly(cli.main, [name, "--help"])
        code = result.code if isinstance(result, SystemExit) else result  # smc returns argparse's code
        assert code in (0, None), (name, text)
        assert text.startswith(f"usage: aegis {name}"), (name, text[:200])


@pytest.mark.parametrize("line", EXECUTED)
def test_executed_commands_succeed(line):
    """The cheap documented commands run and exit 0 (and are still shown in some doc)."""
    shown = [" ".join(c.argv) for c in all_commands()]
    assert any(s.removeprefix(".venv/bin/") == line for s in shown), f"{line} is in no doc"
    result, text = _quietly(cli.main, shlex.split(line)[1:])
    assert result == 0, text


def test_allow_lists_name_real_readers():
    """Each non-config environment variable in OTHER_ENV is read by the file it names."""
    for name, (path, _why) in OTHER_ENV.items():
        assert name in (REPO / path).read_text(), (name, path)


def test_allow_lists_are_all_used():
    """Every allow-list entry is needed by some page (an unused exception is removed, not kept)."""
    commands = all_commands()
    progs = {a[0] for c in commands if (a := [x for x in c.argv if x != "sudo"])}
    envs = {name for c in commands if c.argv for name, _ in c.env}
    modules = {c.argv[2] for c in commands if len(c.argv) > 2 and c.argv[0] in PYTHON and c.argv[1] == "-m"}
    assert set(OTHER_PROGRAMS) - {"sudo"} <= progs
    assert set(OTHER_ENV) <= envs
    assert set(UNPARSED_MODULES) <= modules
    for doc, path, _why in READER_FILES:
        assert any(path in c.argv for c in commands if c.where.startswith(doc + ":")), (doc, path)
