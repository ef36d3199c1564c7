"""A backtest split into tasks, run in this process or on Ray, merged deterministically.

**How a job is split.** One task per symbol: each symbol trades its own sub-account (the
configured ``trading.paper_balance_usdt``), with its own rotation slots, risk checks and
confidence model. Symbols do not interact, so the tasks are independent and their results
merge exactly. (The single-process ``aegis backtest`` without ``--workers`` runs all symbols
through *one* account instead: the 3-slot rotation and the account's risk limits couple the
symbols there, which is why its numbers for several symbols differ from a split run.)

**Why not by period.** A backtest's state at a time T is everything before T: the strategy's
candle windows and SMC structure, the open trade, the account balance the next trade is
sized from, the confidence model learned from every closed trade, the rotation's cooldowns.
None of the shipped strategies can start in the middle of a range with the state it would
have had, so a backtest is never cut by period (the result would change with the number of
workers). The walk-forward (``research.walkforward``) *is* cut by period, because each of its
windows is by definition a fresh run: there every (window, parameter set, symbol) is a task.

**Merging.** Results come back in the order the tasks were listed, whatever order they
finished in; trades are sorted by the total key (closed ms, symbol, trade id); sums are taken
in that order. So 1, 2 or N workers give byte-identical ``trades.csv`` and ``summary.json``.

**Running.** ``workers = 1`` without an address: the tasks run one after the other in this
process, no Ray. Otherwise a Ray session: ``ray.init(address=...)`` for an existing cluster
(only disconnected at the end: the cluster keeps running), or a local Ray started for the
command and shut down after it
(``num_cpus = workers``, no dashboard, bound to 127.0.0.1 only, usage statistics off, its
files in a temporary folder removed afterwards). A task that raises ``ConfigError`` (a bad
strategy parameter, ...) fails at once; any other exception, or a worker that dies, is retried
``retries`` times; a task that still fails is reported by its name in ``TasksFailed`` after
all the others finished. Nothing is dropped silently.

**An existing cluster** (``address``). Its workers run in their own folder (where ``ray
start`` ran), not the command's: the catalog, ``--exchange-info`` and a strategy file given by
a relative path are made absolute before the tasks leave (``portable``), and a task whose node
has no such catalog folder fails with that reason instead of counting zero candles. An address
on 127.0.0.1 is used as given when the cluster listens there only (Ray would otherwise replace
it by this machine's outward address and wait for ever). A cluster that cannot be reached, or
refuses the connection (token authentication: ``RAY_AUTH_TOKEN``), is a ``ConfigError`` that
says so, within seconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import structlog

from common import log as log_mod
from common.errors import ConfigError

log = structlog.get_logger(__name__)

DEFAULT_RETRIES = 2
OBJECT_STORE_BYTES = 128 * 1024 * 1024  # results are small (trades, curves): the minimum is plenty


class TasksFailed(ConfigError):
    """One or more tasks failed after their retries; ``failures`` maps task name -> error."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = dict(failures)
        names = ", ".join(sorted(failures))
        super().__init__(f"{len(failures)} task(s) failed: {names}: "
                         + "; ".join(f"{k}: {v}" for k, v in sorted(failures.items())))


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A task's answer when it failed for a reason a retry cannot fix."""

    error: str


@dataclass(frozen=True, kw_only=True)
class Task:
    """One independent backtest: ``cfg`` (one symbol), an optional starting confidence model
    (``services.brain.model.to_bytes``; ``b""`` = a fresh model), and a unique name."""

    name: str
    cfg: Any  # research.backtest.BacktestConfig
    model: bytes = b""


@dataclass(frozen=True, kw_only=True)
class TaskResult:
    name: str
    symbol: str
    summary: dict[str, Any]  # the backtest's summary without elapsed_s
    trades: list[dict[str, Any]]
    model: bytes  # the confidence model at the end of the run
    elapsed_s: float = field(compare=False)


# ---------------------------------------------------------------------------- one task
def run_task(task: Task) -> TaskResult | Failure:
    """Run one backtest task (in this process or in a Ray worker). Logging is the caller's:
    the command's shell (research/backtest_cli.py, sweep_cli.py) or a Ray worker's
    (``_in_worker``) quiets it."""
    from research.backtest import new_backtest
    from services.brain import model as model_mod

    if not Path(task.cfg.catalog).is_dir():  # on a cluster: this node does not see the catalog
        return Failure(error=f"no catalog folder {task.cfg.catalog} on node {socket.gethostname()}")
    try:
        bt = new_backtest(task.cfg)
        if task.model:
            bt.model_state = model_mod.from_bytes(task.model)
        summary = bt.run()
    except ConfigError as exc:  # deterministic: a retry would fail the same way
        return Failure(error=str(exc))
    elapsed = summary.pop("elapsed_s")
    return TaskResult(name=task.name, symbol=task.cfg.symbols[0], summary=summary, trades=bt.trades,
                      model=model_mod.to_bytes(bt.model_state), elapsed_s=elapsed)


def split_by_symbol(cfg: Any, *, prefix: str = "", model: dict[str, bytes] | None = None) -> list[Task]:
    """One task per symbol of ``cfg``, in the symbols' order, with ``portable`` paths."""
    from dataclasses import replace

    cfg = portable(cfg)
    return [Task(name=f"{prefix}{s}", cfg=replace(cfg, symbols=(s,)), model=(model or {}).get(s, b""))
            for s in cfg.symbols]


def portable(cfg: Any) -> Any:
    """``cfg`` with its catalog, exchange-info file and strategy file (``dir/file.py:Class``)
    as absolute paths: a Ray worker runs in another folder than the command (on a cluster, the
    folder ``ray start`` ran in), where a relative path means something else."""
    from dataclasses import replace

    from research import strategy_api as sa

    strategy = cfg.strategy
    mod_part, sep, cls_name = sa.resolve(strategy).rpartition(":")
    if sep and (mod_part.endswith(".py") or "/" in mod_part) and not Path(mod_part).expanduser().is_absolute():
        strategy = f"{os.path.abspath(Path(mod_part).expanduser())}:{cls_name}"
    return replace(cfg, catalog=Path(os.path.abspath(cfg.catalog)), strategy=strategy,
                   exchange_info=os.path.abspath(cfg.exchange_info) if cfg.exchange_info else "")


# ---------------------------------------------------------------------------- the executor
class _Progress:
    """A progress bar over tasks on stderr (rich), or nothing."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.bar = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)

    def advance(self, name: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def ray_processes(marker: str) -> list[int]:
    """Pids (other than ours) whose command line mentions ``marker`` (a session's temp dir)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if marker.encode() in (d / "cmdline").read_bytes():
                out.append(int(d.name))
        except OSError:
            continue
    return sorted(out)


def _import_ray(*, local: bool) -> Any:
    """``ray``, set up so that a local Ray sends nothing anywhere and listens on 127.0.0.1 only:
    usage statistics off, and the node address kept at 127.0.0.1 (on Linux Ray replaces a
    loopback address by the outward interface's and binds its servers to it; with clusters
    "disabled" it keeps 127.0.0.1, which is all a one-machine session needs)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is first imported
    import ray
    from ray._private import ray_constants

    if local:  # ray may have been imported before the variable was set
        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def _init_local(ray: Any, workers: int) -> str:
    """Start a local Ray of ``workers`` CPUs; returns its temporary folder."""
    tmp = tempfile.mkdtemp(prefix="aegis-ray-")
    ray.init(num_cpus=workers, include_dashboard=False, _temp_dir=tmp, _node_ip_address="127.0.0.1",
             object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False, configure_logging=False)
    return tmp


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CONNECT_TIMEOUT_S = 5.0


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), or a ConfigError saying what a Ray address looks like."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ConfigError(f"--ray-address must be HOST:PORT of the cluster's head (ray start --head --port), "
                          f"not {address!r}")
    return host, int(port)


def reachable(host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether something accepts a TCP connection at host:port within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _outward_ip() -> str:
    """The address Ray would put in place of 127.0.0.1 (the interface of the default route)."""
    from ray._private import services

    return services.node_ip_address_from_perspective()


def _connect(ray: Any, address: str, outward_ip: Callable[[], str] = _outward_ip) -> None:
    """``ray.init(address=...)`` to an existing cluster, or a ConfigError saying why not.

    Ray replaces a loopback host by this machine's outward address (and then retries for
    minutes if the head listens on 127.0.0.1 only): when the head does not answer on the
    outward address, the node address is kept at 127.0.0.1, as for a local session."""
    from ray._private import ray_constants

    host, port = split_address(address)
    if not reachable(host, port):
        raise ConfigError(f"no Ray cluster answers at {address} (start one with: ray start --head --port {port})")
    if host in LOOPBACK_HOSTS and not reachable(outward_ip(), port, timeout_s=1.0):
        ray_constants.ENABLE_RAY_CLUSTER = False  # keep 127.0.0.1 as this node's address
    try:
        ray.init(address=address.strip(), log_to_driver=False, configure_logging=False)
    except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError, version mismatch ...
        raise ConfigError(f"cannot join the Ray cluster at {address}: {_short(exc)} (a cluster with token "
                          f"authentication needs the same RAY_AUTH_TOKEN here)") from None


@contextmanager
def ray_session(workers: int, address: str = "") -> Iterator[Any]:
    """A connected Ray: an existing cluster (``address``) or a local one made for the job.
    ``workers`` sizes the local one; a cluster runs as many tasks at once as it has CPUs."""
    # before ray is imported: no usage report, and a node address of 127.0.0.1 (Ray binds its
    # servers to the node address; on Linux it would otherwise pick the outward interface)
    try:
        ray = _import_ray(local=not address)
    except ImportError:
        raise ConfigError("--workers > 1 needs Ray: pip install 'ray>=2.40,<3' (make setup installs it)") from None
    if ray.is_initialized():  # a session already open in this process (tests): use it
        yield ray
        return
    tmp = ""
    if address:
        _connect(ray, address)
    else:
        tmp = _init_local(ray, workers)
    log.info("ray.started", address=address or "local", workers=workers)
    try:
        yield ray
    finally:
        ray.shutdown()  # with an address: this driver disconnects, the cluster keeps running
        if tmp:
            _reap(tmp)


def _reap(tmp: str, wait_s: float = 10.0) -> None:
    """After ``ray.shutdown()``: wait for the local session's processes (found by its temp dir
    in their command line) to exit, SIGTERM any still there after ``wait_s``, remove the dir."""
    import signal
    import time

    deadline = time.monotonic() + wait_s
    while (left := ray_processes(tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        log.warning("ray.process_left", pid=pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def local_ray(workers: int) -> Iterator[str]:
    """A local Ray session kept open across several jobs (tests: one per module); yields its
    temp dir, so a test can check that no process of it is left after the block."""
    ray = _import_ray(local=True)
    tmp = _init_local(ray, workers)
    try:
        yield tmp
    finally:
        ray.shutdown()
        _reap(tmp)


def execute(tasks: Sequence[Any], fn: Callable[[Any], Any] = run_task, *, workers: int = 1, address: str = "",
            retries: int = DEFAULT_RETRIES, progress: bool = False, label: str = "tasks") -> list[Any]:
    """``fn(task)`` for every task; the answers in the tasks' order. A task answering
    ``Failure`` or still raising after ``retries`` retries is collected; if any, ``TasksFailed``
    names them all once every task has finished."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, not {workers}")
    names = [getattr(t, "name", str(i)) for i, t in enumerate(tasks)]
    if len(set(names)) != len(names):
        raise ConfigError("task names must be unique")
    bar = _Progress(len(tasks), label, progress)
    results: list[Any] = [None] * len(tasks)
    failures: dict[str, str] = {}
    try:
        if workers == 1 and not address:
            for i, t in enumerate(tasks):
                results[i] = _in_process(fn, t, retries, failures, names[i])
                bar.advance(names[i])
        else:
            with ray_session(workers, address) as ray:
                remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=True)(_in_worker)
                refs = {remote.remote(fn, t): i for i, t in enumerate(tasks)}
                pending = list(refs)
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        i = refs[ref]
                        try:
                            results[i] = ray.get(ref)
                        except Exception as exc:  # retries spent (RayTaskError, WorkerCrashedError, ...)
                            failures[names[i]] = _short(exc)
                        bar.advance(names[i])
    finally:
        bar.close()
    for i, r in enumerate(results):
        if isinstance(r, Failure):
            failures[names[i]] = r.error
    if failures:
        log.error("tasks.failed", failed=sorted(failures))
        raise TasksFailed(failures)
    return results


def _in_worker(fn: Callable[[Any], Any], task: Any) -> Any:
    """``fn(task)`` in a Ray worker, the worker process's shell: its logging quieted below
    WARNING for the task (an info line per order of every backtest would fill its log file)."""
    with log_mod.quieted():
        return fn(task)


def _in_process(fn: Callable[[Any], Any], task: Any, retries: int, failures: dict[str, str], name: str) -> Any:
    for attempt in range(retries + 1):
        try:
            return fn(task)
        except Exception as exc:
            if attempt == retries:
                failures[name] = _short(exc)
            log.warning("task.retry" if attempt < retries else "task.failed", task=name, attempt=attempt + 1,
                        error=_short(exc))
    return None


def _short(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # RayTaskError carries the task's own exception
    e = cause if isinstance(cause, BaseException) else exc
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def progress_default() -> bool:
    return sys.stderr.isatty()


# ---------------------------------------------------------------------------- merging
_SUMMED = ("candles", "bad_bars", "signals", "funding_events", "intents_unsupported", "model_outcomes",
           "model_rejected")


def _sum_maps(maps: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in maps:
        for k, v in m.items():
            out[k] = out.get(k, 0) + int(v)
    return dict(sorted(out.items()))


def combine(results: Sequence[TaskResult], cfg: Any, *, seed: int = 20241201) -> tuple[list[dict], dict[str, Any]]:
    """The per-symbol results of one job -> (trades in the total order, the job's summary).
    Each symbol is its own account of ``trading.paper_balance_usdt``: the combined equity
    starts at their sum."""
    from research import metrics

    by_symbol = sorted(results, key=lambda r: r.symbol)
    balance = float(cfg.aegis.trading.paper_balance_usdt)
    trades = metrics.sort_trades([t for r in by_symbol for t in r.trades])
    first = by_symbol[0].summary if by_symbol else {}
    summary: dict[str, Any] = {
        "strategy": first.get("strategy", cfg.strategy), "strategy_path": first.get("strategy_path", cfg.strategy),
        "params": dict(cfg.params), "symbols": list(cfg.symbols), "accounts": "one per symbol",
        "from_ms": cfg.start_ms, "to_ms": cfg.end_ms,
    }
    for k in _SUMMED:
        summary[k] = sum(int(r.summary.get(k, 0)) for r in by_symbol)
    summary.update(metrics.trade_stats(trades, start_equity=balance * len(by_symbol), start_ms=cfg.start_ms,
                                       end_ms=cfg.end_ms, seed=seed))
    summary["open_at_end"] = sorted(s for r in by_symbol for s in r.summary.get("open_at_end", []))
    summary["trader_counters"] = _sum_maps([r.summary.get("trader_counters", {}) for r in by_symbol])
    summary["strategy_counters"] = _sum_maps([r.summary.get("strategy_counters", {}) for r in by_symbol])
    per: dict[str, Any] = {}
    for r in by_symbol:
        st = metrics.trade_stats(metrics.sort_trades(r.trades), start_equity=balance, start_ms=cfg.start_ms,
                                 end_ms=cfg.end_ms, seed=seed)
        per[r.symbol] = {"candles": r.summary.get("candles", 0), "signals": r.summary.get("signals", 0),
                         **{k: st[k] for k in ("trades", "win_rate", "net_pnl", "fees", "max_drawdown_pct", "sharpe",
                                               "expectancy_net_r", "expectancy_net_r_ci95", "expectancy_r")}}
    summary["per_symbol"] = per
    return trades, summary


def run_split(cfg: Any, *, workers: int, address: str = "", retries: int = DEFAULT_RETRIES,
              progress: bool = False) -> tuple[list[dict], dict[str, Any], list[TaskResult]]:
    """A backtest split by symbol, run on ``workers``: (trades, summary, per-task results)."""
    results = execute(split_by_symbol(cfg), workers=workers, address=address, retries=retries, progress=progress,
                      label="backtest")
    trades, summary = combine(results, cfg)
    return trades, summary, results
