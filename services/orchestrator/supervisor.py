"""The supervisor (``aegis run``): starts the stack, keeps it alive, stops it cleanly.

Start order: exchange_sim (demo mode only), orchestrator, brain, feed, dashboard (not in
replay mode; ``dashboard.enabled``); each must report ready before the next starts. The
dashboard's URL is printed (``dashboard: http://HOST:PORT/``) once it is up. The consumer (brain) starts before the producer (feed) on
purpose: the other way round, the first second of ticks waits in the ring while the brain
boots, which showed up as a 1.1 s p99 tick-to-brain latency in a 15 s run. A child that
dies is restarted with exponential backoff; more than ``restart_intensity`` restarts within
``restart_period_s`` stops everything and exits non-zero, so an outer supervisor (Docker's
restart policy, systemd) takes over. A child that exits with ``policy.CHILD_EXIT_STORAGE_FAULT``
(its disk refuses writes) is not restarted at all: a restart cannot fix that. The exit codes
of ``aegis run`` are ``policy.EXIT_CODES`` (4: the run ended with the journal refused by its
disk, docs/journal.md).

Stop order is the reverse, which is also the data's order, upstream first: feed (no new
ticks), brain (drains the ring to the writer's cursor, flushes its journal), orchestrator
(drains the journal, checkpoints the database), exchange_sim. Each child gets SIGTERM and
a deadline, then SIGKILL. Then the supervisor removes the ring segment, the ipc socket files
and the run directory it created: nothing is left behind. Every catchable stop signal
starts this (``service.STOP_SIGNALS``: SIGTERM, Ctrl+C's SIGINT, SIGHUP when the terminal
closes, Ctrl+\\'s SIGQUIT), and writes that fail because the terminal is gone are dropped.

Children run in their own process group (a terminal's Ctrl+C reaches only the supervisor,
which then stops them in order) and die with the supervisor (PR_SET_PDEATHSIG), so even a
SIGKILLed supervisor leaves no orphan.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from common import bus, config as config_mod, service, wire, zmqutil
from common.config import AegisConfig, endpoints
from common.errors import ConfigError, RingError
from common.ring import Ring
from services.orchestrator import monitor, policy, storage

log = structlog.get_logger(__name__)
TICK_S = 0.1  # supervision loop period
SPARE_POLL_S = 0.002  # while a spare forks a replacement: how often its answer is looked for
SPARE_STOP_S = 2.0  # a spare (no handlers yet: SIGTERM ends it at once) gets this long, then SIGKILL
SPARE_MODES = ("demo", "paper", "live")  # not replay: a replay must not share its CPU with spares
CAPTURE_SETTLE_S = 0.5  # aegis run --capture: the recorder connects before the services publish
PR_SET_CHILD_SUBREAPER = 36
# services that publish no heartbeat: alive = the process runs (and, for the sim, answers ping)
NO_HEARTBEAT = ("exchange_sim", "dashboard")
# services the stack trades without: one that will not start, or crashes past the restart
# intensity, is given up (logged) instead of stopping the stack (a page must not stop trading)
OPTIONAL = ("dashboard",)


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | Adopted | None = None
    started_at: float = 0.0
    restarts: int = 0
    consecutive_failures: int = 0
    restart_times: list[float] = field(default_factory=list)
    restart_at: float | None = None
    last_heartbeat: float = 0.0
    counters: dict[str, float] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    spare: subprocess.Popen | None = None  # the warm spare that forks replacements (``keep_spare``)
    spare_out: bytes = b""  # what the spare wrote on its stdout so far (replacement pids, one a line)
    spare_asked_at: float | None = None  # a replacement was asked for and its pid not yet read
    spare_asked_state: str = "none"  # the spare was warm or still warming when asked
    spare_retry_at: float = 0.0  # the spare died: the next one not before this
    warm_restarts: int = 0  # restarts answered by a spare
    state: wire.ServiceState | None = None  # the state its last heartbeat gave
    gave_up: str = ""  # why it is not restarted any more ("" = it is)


def _spare_preexec() -> None:  # a spare: dies with its parent, warms up at the lowest priority
    service.die_with_parent()
    service.lower_priority()


def become_subreaper() -> bool:
    """Make this process the parent of every orphan among its descendants (Linux 3.4+): the
    replacements a spare forks become our children, which we can wait for. False elsewhere."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    except (OSError, AttributeError):
        return False


class Adopted:
    """A service process forked by a spare and re-parented to us: ``subprocess.Popen``'s
    interface (the part the supervisor uses) on ``os.waitpid``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()  # the monitor thread polls too: one waitpid at a time

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere or never ours: gone either way
                    self.returncode = -1
                    return self.returncode
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _emit(stream: Any, text: str, *, tty_only: bool = False) -> None:
    """Write to a terminal or pipe that may be gone (closed terminal: EIO; closed pipe: EPIPE):
    what cannot be shown is dropped, the shutdown goes on."""
    try:
        if tty_only and not stream.isatty():
            return
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Supervisor:
    def __init__(self, cfg: AegisConfig, *, duration_s: float | None, summary_path: str | None,
                 status_line: bool, without: tuple[str, ...] = (), stats_out: str | None = None,
                 capture: str | None = None) -> None:
        self.cfg = cfg
        self.stats_out = stats_out  # copy every final stats file here before cleaning up
        self.capture = capture  # aegis run --capture FILE: record the run (raw frames too)
        self.capture_proc: subprocess.Popen | None = None
        self.without = without  # services the user runs by hand (debugging)
        self.duration_s = duration_s
        self.summary_path = summary_path
        self.status_line = status_line and cfg.supervisor.status_line
        self.policy = policy.RestartPolicy(
            initial_s=cfg.supervisor.restart_backoff_initial_s, max_s=cfg.supervisor.restart_backoff_max_s,
            intensity=cfg.supervisor.restart_intensity, period_s=cfg.supervisor.restart_period_s,
            healthy_after_s=cfg.supervisor.healthy_after_s)
        self.stop = service.StopFlag()
        self.rd = service.run_dir(cfg)
        self.children: list[Child] = []
        self.ring: Ring | None = None
        self.sub: bus.Subscriber | None = None
        self._created_run_dir = False
        self._last_status = (0.0, 0)
        self._rate = 0.0
        self.exit_code = 0
        self.started = time.monotonic()
        self.ready_at: float | None = None
        self.startup_s = 0.0
        self.server: Any = None
        self._wake = threading.Event()
        self.subreaper = False  # set in run(): spares need it (their replacements become ours)
        self.stopping = False  # shutdown began: nothing is started any more
        self.permission: wire.TradingPermission | None = None  # the orchestrator's last verdict on entries
        self.storage_gave_up = False  # a child exited for its storage: the run ends non-zero

    # ------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        pidfile = self.rd / "supervisor.pid"
        if pidfile.exists():
            try:
                other = int(pidfile.read_text())
                os.kill(other, 0)
                raise SystemExit(f"another AEGIS stack (pid {other}) runs in {self.rd}; "
                                 "stop it or pass --run-dir")
            except (ValueError, ProcessLookupError, PermissionError):
                pass
        self._created_run_dir = not self.rd.exists()
        service.ensure_run_dir(self.rd)
        for stale in list((self.rd / "stats").glob("*.json")) + list(self.rd.glob("*.ready")):
            stale.unlink(missing_ok=True)
        pidfile.write_text(str(os.getpid()))
        cfg = self.cfg
        if cfg.mode == "demo" and cfg.sim.port == 0:
            cfg = config_mod.replace(cfg, sim={"port": free_port(cfg.sim.host)})
        cfg = config_mod.replace(cfg, run_dir=str(self.rd),
                                 data_dir=str(Path(cfg.data_dir).resolve()))
        self.cfg = cfg
        cfg_file = self.rd / "config.json"
        cfg_file.write_text(json.dumps(config_mod.to_dict(cfg), indent=1))
        base = [sys.executable, "-m"]
        tail = ["--config", str(cfg_file)]
        # demo with an explicit exchange URL (aegis run --exchange URL): that exchange runs on its
        # own, outside the stack, as Binance would (it survives the stack's death)
        own_sim = cfg.mode == "demo" and not cfg.feed.rest_url
        names = ((["exchange_sim"] if own_sim else []) + ["orchestrator", "brain", "feed"]
                 + (["dashboard"] if cfg.dashboard.enabled and cfg.mode != "replay" else []))
        self.children = [Child(n, base + [f"services.{n}"] + tail) for n in names if n not in self.without]
        if self.without:
            print(f"aegis: not starting {', '.join(self.without)}; run it yourself with:\n"
                  + "\n".join(f"  aegis {n.replace('_', '-')} --config {cfg_file} --log-level debug"
                              for n in self.without), file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ children
    def child_env(self, child: Child) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("AEGIS_RUN_DIR", None)
        if child.name == "exchange_sim":  # the sim's account (orders, positions) outlives a sim crash
            env.setdefault("AEGIS_SIM_STATE_FILE", str(self.rd / "sim-account.json"))
        return env

    def spawn(self, child: Child, now: float | None = None) -> None:
        """Start the service: ask its spare for a replacement when one runs, else a new process."""
        (self.rd / f"{child.name}.ready").unlink(missing_ok=True)
        if self.ask_spare(child, time.monotonic() if now is None else now):
            return  # ``collect_replacement`` adopts it
        proc = subprocess.Popen(child.argv, env=self.child_env(child), start_new_session=True,
                                preexec_fn=service.die_with_parent, stdin=subprocess.DEVNULL)
        self.record_start(child, proc, "none")

    def record_start(self, child: Child, proc: subprocess.Popen | Adopted, spare: str) -> None:
        child.proc = proc
        child.pids.append(proc.pid)
        child.started_at = time.monotonic()
        child.last_heartbeat = child.started_at
        log.info("supervisor.child_started", child=child.name, pid=proc.pid, spare=spare)

    # ------------------------------------------------------------------ warm spares
    @property
    def spares_enabled(self) -> bool:
        return self.subreaper and self.cfg.supervisor.warm_spares and self.cfg.mode in SPARE_MODES

    def spare_state(self, child: Child) -> str:
        """``warm`` (loaded, waiting), ``warming`` (still loading), or ``none``."""
        sp = child.spare
        if sp is None or sp.poll() is not None:
            return "none"
        return "warm" if service.live_pid(service.spare_marker(self.rd, child.name)) == sp.pid else "warming"

    def ask_spare(self, child: Child, now: float) -> bool:
        """Tell the child's spare to fork a replacement; False when there is no spare to ask.

        A spare still warming up takes the word too: it forks as soon as it is loaded, which
        is never later than a new process would be ready to start."""
        sp = child.spare
        if sp is None or sp.poll() is not None or sp.stdin is None:
            return False
        try:
            sp.stdin.write(service.SPARE_GO)
            sp.stdin.flush()
        except OSError:  # it died just now (broken pipe): ``keep_spare`` replaces it
            return False
        child.spare_asked_at = now
        child.spare_asked_state = self.spare_state(child)
        return True

    def collect_replacement(self, child: Child, now: float) -> None:
        """Adopt the replacement whose pid the spare wrote; a new process if the spare failed."""
        sp = child.spare
        line = self.spare_line(child) if sp is not None else None
        if line is not None:
            child.spare_asked_at = None
            try:
                pid = int(line)
            except ValueError:
                pid = 0
            if pid > 0:
                child.warm_restarts += 1
                self.record_start(child, Adopted(pid), child.spare_asked_state)
                return
        elif sp is not None and sp.poll() is None and now - (child.spare_asked_at or now) < \
                self.cfg.supervisor.ready_timeout_s:
            return  # still loading (or forking): keep waiting
        log.warning("supervisor.spare_failed", child=child.name, pid=sp.pid if sp is not None else None,
                    answer=line)
        child.spare_asked_at = None
        if sp is not None:
            self.end_spare(sp)
            child.spare = None
            child.spare_retry_at = now + self.cfg.supervisor.spare_retry_s
        if not self.stopping:
            self.spawn(child, now)

    def spare_line(self, child: Child) -> str | None:
        """The next full line the spare wrote on its stdout, None while there is none."""
        sp = child.spare
        if sp is not None and sp.stdout is not None and b"\n" not in child.spare_out:
            try:
                child.spare_out += os.read(sp.stdout.fileno(), 4096)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return None
        if b"\n" not in child.spare_out:
            return None
        line, child.spare_out = child.spare_out.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def keep_spare(self, child: Child, now: float) -> None:
        """One warm spare per service, started once the service has a ready incarnation.

        A spare costs memory (a copy of the service's imports and caches, ~100-150 MB; its
        replacements share those pages copy-on-write) and nothing else once warm: it waits on
        its stdin. It starts at the lowest CPU priority (``service.lower_priority``), so it
        never slows the running stack down, and stays for every later restart. A spare that
        dies is logged and replaced after ``supervisor.spare_retry_s``."""
        sp = child.spare
        if sp is not None:
            if sp.poll() is not None and child.spare_asked_at is None:
                retry_s = self.cfg.supervisor.spare_retry_s
                log.warning("supervisor.spare_died", child=child.name, pid=sp.pid, code=sp.returncode,
                            retry_in_s=retry_s)
                self.end_spare(sp)
                child.spare = None
                child.spare_retry_at = now + retry_s
            return
        if now < child.spare_retry_at or child.restart_at is not None or child.spare_asked_at is not None:
            return
        if child.proc is None or child.proc.poll() is not None or not self.is_ready(child):
            return
        sp = subprocess.Popen(child.argv + ["--spare"], env=self.child_env(child), start_new_session=True,
                              preexec_fn=_spare_preexec, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert sp.stdout is not None
        os.set_blocking(sp.stdout.fileno(), False)
        child.spare, child.spare_out = sp, b""
        child.pids.append(sp.pid)
        log.info("supervisor.spare_started", child=child.name, pid=sp.pid)

    def end_spare(self, sp: subprocess.Popen) -> None:
        """Stop a spare: end of file on its stdin (it stands down), else SIGTERM, then SIGKILL."""
        if sp.stdin is not None:
            try:
                sp.stdin.close()
            except OSError:
                pass
        try:
            sp.wait(SPARE_STOP_S)
        except subprocess.TimeoutExpired:
            sp.terminate()
            try:
                sp.wait(SPARE_STOP_S)
            except subprocess.TimeoutExpired:
                sp.kill()
                sp.wait()
        if sp.stdout is not None:
            sp.stdout.close()

    def is_ready(self, child: Child) -> bool:
        if child.name == "exchange_sim":
            url = f"http://{self.cfg.sim.host}:{self.cfg.sim.port}/fapi/v1/ping"
            try:
                with urllib.request.urlopen(url, timeout=0.5) as r:  # noqa: S310 - loopback only
                    return r.status == 200
            except OSError:
                return False
        f = self.rd / f"{child.name}.ready"
        try:
            return child.proc is not None and int(f.read_text()) == child.proc.pid
        except (OSError, ValueError):
            return False

    def wait_ready(self, child: Child) -> bool:
        deadline = time.monotonic() + self.cfg.supervisor.ready_timeout_s
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.is_ready(child):
                log.info("supervisor.child_ready", child=child.name, pid=child.proc.pid)
                return True
            if child.proc.poll() is not None:
                log.error("supervisor.child_died_starting", child=child.name, code=child.proc.returncode)
                return False
            time.sleep(0.05)
        log.error("supervisor.child_not_ready", child=child.name)
        return False

    def stop_child(self, child: Child) -> None:
        p = child.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(self.cfg.supervisor.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("supervisor.child_killed", child=child.name, pid=p.pid)
            p.kill()
            p.wait()

    # ------------------------------------------------------------------ running
    def run(self) -> int:
        self.prepare()
        service.install_stop_handlers(self.stop)
        # wake the loop the moment a child dies, instead of at its next 0.1 s tick
        signal.signal(signal.SIGCHLD, lambda *_: self._wake.set())
        self.subreaper = become_subreaper()
        started = self.started = time.monotonic()
        try:
            self.start_monitor()
            ep = service.endpoints(self.rd, self.cfg)  # tcp: CURVE keys, or refuse before any child starts
            self.sub = bus.Subscriber(ep.publishers(), (wire.EventType.HEARTBEAT, wire.EventType.TRADING_PERMISSION))
            if self.start_children():
                self.startup_s = time.monotonic() - started
                log.info("supervisor.stack_ready", startup_s=round(self.startup_s, 2))
                started = self.ready_at = time.monotonic()  # --duration counts streaming time
                self.loop(started)
        finally:
            self.shutdown(started)  # decides the final exit code (the summary's journal counts)
        return self.exit_code

    def start_children(self) -> bool:
        """Start every child in order, each ready before the next; False (exit code set) if one is not."""
        for child in self.children:
            self.spawn(child)
            if not self.wait_ready(child):
                if child.name in OPTIONAL and not self.stop.is_set():
                    self.give_up(child, "did not become ready")
                    continue
                code = child.proc.poll() if child.proc is not None else None
                self.exit_code = policy.EXIT_OK if self.stop.is_set() else policy.EXIT_START_FAILED
                if not policy.should_restart(code):  # its storage refuses writes: that is the reason
                    child.gave_up = f"exited with {code}: its storage refuses writes"
                    self.exit_code = policy.EXIT_JOURNAL_FAULT
                return False
            if child.name == "orchestrator":
                self.ring = Ring.attach(service.ring_path(self.cfg), readonly=True)
                self.start_capture()  # before the feed: its hydration and first frames count
            if child.name == "dashboard":
                self.announce_dashboard()
        return True

    def give_up(self, child: Child, reason: str) -> None:
        """Stop starting an OPTIONAL service (it would not start, or kept crashing); the stack
        goes on without it and says so."""
        child.gave_up = reason
        child.restart_at = None
        self.stop_child(child)
        sp, child.spare = child.spare, None
        if sp is not None:
            self.end_spare(sp)
        print(f"aegis: {child.name} gave up (see the log above); the stack runs on without it",
              file=sys.stderr, flush=True)

    def announce_dashboard(self) -> None:
        """``dashboard: http://HOST:PORT/`` on stderr (and in the log): where to look."""
        try:
            url = (self.rd / "dashboard.url").read_text().strip()
        except OSError:
            return
        print(f"dashboard: {url}", file=sys.stderr, flush=True)
        log.info("supervisor.dashboard", url=url)

    def start_capture(self) -> None:
        """``aegis run --capture FILE``: ``aegis capture --raw`` as a helper process (not a
        supervised service: no heartbeat, no restart), stopped after the services so that
        it records everything they published."""
        if not self.capture:
            return
        argv = [sys.executable, "-m", "common.cli", "capture", "--out", self.capture, "--raw",
                "--config", str(self.rd / "config.json")]
        self.capture_proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=service.die_with_parent,
                                             stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno())
        time.sleep(CAPTURE_SETTLE_S)  # its SUB sockets connect before anything is published
        log.info("supervisor.capture_started", file=self.capture, pid=self.capture_proc.pid)

    def stop_capture(self) -> None:
        p = self.capture_proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(self.cfg.supervisor.stop_timeout_s + 10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def start_monitor(self) -> None:
        sc = self.cfg.supervisor
        try:
            self.server = monitor.serve(sc.metrics_host, sc.metrics_port, self.snapshot)
        except OSError as exc:  # port taken (another stack): any free port will do
            log.warning("supervisor.metrics_port_taken", port=sc.metrics_port, error=str(exc))
            self.server = monitor.serve(sc.metrics_host, 0, self.snapshot)
        host, port = self.server.server_address[:2]
        (self.rd / "monitor.url").write_text(f"http://{host}:{port}")
        log.info("supervisor.monitor", url=f"http://{host}:{port}/metrics")

    def snapshot(self) -> dict[str, Any]:
        """The live state of the stack (for /status, /health, /metrics and the heartbeat line)."""
        now = time.monotonic()
        ring = self.ring.counters() if self.ring is not None else {}
        services = {}
        for c in self.children:
            running = c.proc is not None and c.proc.poll() is None
            services[c.name] = {
                "pid": c.proc.pid if c.proc is not None else None, "running": running,
                "ready": running and self.is_ready(c), "state": c.state or "", "gave_up": c.gave_up,
                "restarts": c.restarts, "warm_restarts": c.warm_restarts,
                "spare": self.spare_state(c), "spare_pid": spare.pid if (spare := c.spare) is not None else None,
                "heartbeat_age_s": (None if c.name in NO_HEARTBEAT or c.proc is None
                                    else round(now - c.last_heartbeat, 3)),
                "counters": dict(c.counters)}
        perm = self.permission
        trading = (None if perm is None else
                   {"allowed": perm.allowed, "reason": perm.reason, "detail": perm.detail})
        return {"mode": self.cfg.mode, "uptime_s": round(now - self.started, 3), "run_dir": str(self.rd),
                "ticks_per_s": round(self._rate, 1), "heartbeat_timeout_s": self.cfg.supervisor.heartbeat_timeout_s,
                "ring": ring, "services": services, "trading": trading}

    def heartbeat_line(self) -> str:
        s = self.snapshot()
        brain = s["services"].get("brain", {}).get("counters", {})
        feed = s["services"].get("feed", {}).get("counters", {})
        ring = s["ring"]
        return (f"aegis heartbeat uptime_s={s['uptime_s']:.0f} ticks_per_s={s['ticks_per_s']:.0f} "
                f"written={ring.get('written', 0)} lag={ring.get('lag', 0)} lost={ring.get('lost', 0)} "
                f"rejected={int(feed.get('ticks_rejected', 0))} candles={int(brain.get('candles_closed', 0))} "
                f"p99_us={brain.get('latency_p99_us', 0):.0f} "
                f"restarts={sum(v['restarts'] for v in s['services'].values())} "
                f"signals={int(brain.get('signals', 0))} orders={int(brain.get('orders', 0))} "
                f"fills={int(brain.get('fills', 0))} rejects={int(brain.get('risk_rejects', 0))} "
                f"positions={int(brain.get('positions_open', 0))} pnl={brain.get('realized_pnl', 0.0):.2f} "
                f"fees={brain.get('fees', 0.0):.2f} funding={brain.get('funding', 0.0):.4f} "
                f"equity={brain.get('equity', 0.0):.2f} "
                f"halted={int(brain.get('halted', 0))} entries={_entries(s.get('trading'))}")

    def loop(self, started: float) -> None:
        next_status = time.monotonic()
        next_heartbeat_line = next_status + self.cfg.supervisor.heartbeat_log_interval_s
        while not self.stop.is_set():
            now = time.monotonic()
            if self.duration_s is not None and now - started >= self.duration_s:
                break
            self.collect_heartbeats(now)
            for child in self.children:
                if not self.supervise(child, now):
                    self.exit_code = policy.EXIT_RESTART_INTENSITY
                    return
            if self.spares_enabled:
                for child in self.children:
                    self.keep_spare(child, now)
            if now >= next_status:
                next_status = now + 1.0
                self.print_status(now - started)
            if now >= next_heartbeat_line:
                next_heartbeat_line = now + self.cfg.supervisor.heartbeat_log_interval_s
                _emit(sys.stderr, self.heartbeat_line() + "\n")
            if not self.stop.is_set():
                pending = any(c.spare_asked_at is not None for c in self.children)
                self._wake.wait(policy.next_wait_s(SPARE_POLL_S if pending else TICK_S,
                                                   [c.restart_at for c in self.children], time.monotonic()))
                self._wake.clear()

    def supervise(self, child: Child, now: float) -> bool:
        """Restart a dead (or hung) child; False when the restart intensity is exceeded. A child
        that exited because its storage refuses writes is not restarted (``policy.should_restart``)."""
        if child.gave_up:
            return True
        if child.spare_asked_at is not None:  # its spare is forking the replacement
            self.collect_replacement(child, now)
            return True
        p = child.proc
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restart_at = None
                self.spawn(child, now)
            return True
        if p is not None and p.poll() is None:
            if policy.healthy_reset(child.started_at, now, self.policy.healthy_after_s):
                child.consecutive_failures = 0
            hb_timeout = self.cfg.supervisor.heartbeat_timeout_s
            if (child.name not in NO_HEARTBEAT and self.is_ready(child)
                    and now - child.last_heartbeat > hb_timeout):
                log.error("supervisor.child_hung", child=child.name, pid=p.pid,
                          silent_s=round(now - child.last_heartbeat, 1))
                p.kill()
                p.wait()
            else:
                return True
        code = p.returncode if p is not None else None
        if not policy.should_restart(code):
            child.gave_up = f"exited with {code}: its storage refuses writes; not restarted (a restart cannot fix it)"
            self.storage_gave_up = True
            log.error("supervisor.child_not_restarted", child=child.name, code=code, reason=child.gave_up,
                      exit_code_at_end=policy.EXIT_JOURNAL_FAULT)
            return True
        child.restart_times = list(policy.recent(child.restart_times, now, self.policy.period_s))
        child.restart_times.append(now)
        if policy.intensity_exceeded(self.policy, child.restart_times, now):
            log.error("supervisor.restart_intensity_exceeded", child=child.name,
                      restarts=len(child.restart_times), period_s=self.policy.period_s,
                      optional=child.name in OPTIONAL)
            if child.name in OPTIONAL:
                self.give_up(child, f"more than {self.policy.intensity} restarts in {self.policy.period_s:g} s")
                return True
            return False
        child.restarts += 1
        child.consecutive_failures += 1
        delay = policy.backoff_s(self.policy, child.consecutive_failures)
        child.restart_at = now + delay
        log.warning("supervisor.child_exited", child=child.name, code=code, restart_in_s=delay,
                    restarts=child.restarts)
        return True

    def collect_heartbeats(self, now: float) -> None:
        if self.sub is None:
            return
        for env in self.sub.drain():
            hb = env.body
            if isinstance(hb, wire.TradingPermission):
                before = self.permission
                if before is None or (hb.allowed, hb.reason) != (before.allowed, before.reason):
                    fault = hb.reason in storage.REASONS  # waiting for reconciliation is the normal start
                    (log.warning if fault else log.info)("supervisor.trading_permission", allowed=hb.allowed,
                                                         reason=hb.reason, detail=hb.detail)
                self.permission = hb
            elif isinstance(hb, wire.Heartbeat):
                for c in self.children:
                    if c.name == hb.service and c.proc is not None and c.proc.pid == hb.pid:
                        c.last_heartbeat = now
                        c.counters = dict(hb.counters)
                        c.state = hb.state

    def print_status(self, elapsed: float) -> None:
        if self.ring is None:
            return
        c = self.ring.counters()
        t0, w0 = self._last_status
        rate = (c["written"] - w0) / max(1e-9, elapsed - t0) if t0 else 0.0
        self._last_status = (elapsed, c["written"])
        self._rate = rate
        if not self.status_line:
            return
        brain = next((ch.counters for ch in self.children if ch.name == "brain"), {})
        restarts = sum(ch.restarts for ch in self.children)
        line = (f"aegis {self.cfg.mode} | {elapsed:6.0f}s | {rate:9,.0f} ticks/s | written "
                f"{c['written']:,} | lag {c['lag']:,} | lost {c['lost']:,} | candles "
                f"{int(brain.get('candles_closed', 0)):,} | p99 "
                f"{brain.get('latency_p99_us', 0):,.0f}us | restarts {restarts} | signals "
                f"{int(brain.get('signals', 0))} | orders {int(brain.get('orders', 0))} | pos "
                f"{int(brain.get('positions_open', 0))} | pnl {brain.get('realized_pnl', 0.0):+,.2f}"
                + (f" | funding {f:+,.4f}" if (f := brain.get("funding", 0.0)) else "")
                + (" | HALTED" if brain.get("halted") else "")
                + (f" | ENTRIES HALTED {p.reason}" if (p := self.permission) is not None
                   and p.reason in storage.REASONS else ""))
        # without a terminal the 15-minute heartbeat line says it
        _emit(sys.stderr, "\r\x1b[2K" + line, tty_only=True)

    # ------------------------------------------------------------------ stopping
    def shutdown(self, started: float) -> None:
        """Stop everything in order, write and print the summary, then remove the ring and
        the run directory, whatever went wrong before (a terminal gone with SIGHUP fails
        every write to it: the summary then reaches only ``--summary-json``)."""
        self.stopping = True
        try:
            self._stop_and_summarize(started)
        finally:
            try:
                self.stop_capture()
                if self.stats_out:
                    shutil.copytree(self.rd / "stats", self.stats_out, dirs_exist_ok=True)
            finally:
                self.cleanup()

    def _stop_and_summarize(self, started: float) -> None:
        if self.status_line:
            _emit(sys.stderr, "\n", tty_only=True)
        if self.server is not None:  # before the ring is unmapped: /status reads it
            self.server.shutdown()
            self.server.server_close()
        for child in self.children:  # spares first: nothing may take over any more
            deadline = time.monotonic() + SPARE_STOP_S
            while child.spare_asked_at is not None and time.monotonic() < deadline:
                self.collect_replacement(child, time.monotonic())  # adopt it, to stop it below
                time.sleep(SPARE_POLL_S)
            child.spare_asked_at = None
            sp, child.spare = child.spare, None
            if sp is not None:
                self.end_spare(sp)
        for child in reversed(self.children):
            self.stop_child(child)
        duration = time.monotonic() - (self.ready_at or started)
        ring_counters: dict[str, int] = {}
        if self.ring is None:
            try:
                self.ring = Ring.attach(service.ring_path(self.cfg), readonly=True)
            except (RingError, OSError):
                self.ring = None
        if self.ring is not None:
            ring_counters = self.ring.counters()
            self.ring.close()
        summary = policy.summarize(
            duration_s=duration, ring=ring_counters,
            feed=service.read_stats(self.rd, "feed"), brain=service.read_stats(self.rd, "brain"),
            orchestrator=service.read_stats(self.rd, "orchestrator"),
            restarts={c.name: c.restarts for c in self.children},
            symbols=int(ring_counters.get("symbols", 0)), mode=self.cfg.mode)
        summary["startup_s"] = round(self.startup_s, 3)
        self.exit_code = policy.run_exit_code(self.exit_code, summary, storage_gave_up=self.storage_gave_up)
        if self.exit_code == policy.EXIT_JOURNAL_FAULT:
            j = summary["journal"]
            log.error("supervisor.ended_with_journal_fault", reason=j["reason"] or "child storage fault",
                      detail=j["detail"], exit_code=self.exit_code,
                      gave_up={c.name: c.gave_up for c in self.children if c.gave_up})
        summary["exit_code"] = self.exit_code
        summary["exit_reason"] = policy.EXIT_CODES.get(self.exit_code, "")
        if self.summary_path:
            Path(self.summary_path).write_text(json.dumps(summary, indent=2) + "\n")
        _emit(sys.stderr if self.summary_path else sys.stdout, json.dumps(summary, indent=2) + "\n")
        if self.sub is not None:
            self.sub.close()
        zmqutil.term()

    def cleanup(self) -> None:
        Ring.unlink(service.ring_path(self.cfg))
        ep = endpoints(self.rd)
        for e in (*ep.publishers(), ep.journal, ep.journal_sync, ep.brain_control):
            path = zmqutil.ipc_path(e)
            if path:
                Path(path).unlink(missing_ok=True)
        if self._created_run_dir:
            shutil.rmtree(self.rd, ignore_errors=True)
        else:
            names = ("supervisor.pid", "config.json", "monitor.url", "sim-account.json", "dashboard.url")
            for f in [*self.rd.glob("*.ready"), *self.rd.glob("*.spare"), *(self.rd / n for n in names)]:
                f.unlink(missing_ok=True)
            shutil.rmtree(self.rd / "stats", ignore_errors=True)


def _entries(trading: dict[str, Any] | None) -> str:
    if not trading:
        return "unknown"
    return "allowed" if trading.get("allowed") else f"HALTED:{trading.get('reason', '')}"


def main(argv: list[str] | None = None) -> int:
    p = service.arg_parser("run", "run the whole stack (demo mode by default) until Ctrl+C")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--summary-json", help="write the run summary (JSON) here")
    p.add_argument("--mode", choices=config_mod.MODES, help="demo (default), paper, live, replay")
    p.add_argument("--symbols", type=int, help="number of symbols (demo: sim symbols)")
    p.add_argument("--speed", type=float, help="demo replay speed (1 = recorded pace)")
    p.add_argument("--max-speed", action="store_true", help="demo replay as fast as possible")
    p.add_argument("--data-dir", help="where the database lives (default ./var)")
    p.add_argument("--no-status", action="store_true", help="no live status line")
    p.add_argument("--capture", metavar="FILE",
                   help="record the run into a capture file (ZeroMQ events and the feed's raw frames) "
                        "that aegis replay plays back")
    p.add_argument("--stats-out", metavar="DIR", help="copy the services' final stats files here")
    p.add_argument("--exchange", metavar="URL",
                   help="trade with the exchange at URL (e.g. http://127.0.0.1:8900, a local exchange started "
                        "with 'aegis exchange-sim --port 8900') instead of starting one: it lives outside the "
                        "stack, as Binance does")
    p.add_argument("--without", action="append", default=[], metavar="SERVICE",
                   choices=("exchange_sim", "orchestrator", "brain", "feed", "dashboard"),
                   help="do not start SERVICE (run it yourself in the foreground to debug it)")
    args = p.parse_args(argv)
    cfg = service.bootstrap("supervisor", args)
    over: dict[str, Any] = {}
    if args.mode:
        over["mode"] = args.mode
    if args.data_dir:
        over["data_dir"] = args.data_dir
    sim: dict[str, Any] = {}
    if args.symbols:
        sim["symbols"] = args.symbols
        over["feed"] = {"max_symbols": args.symbols}
    if args.speed:
        sim["speed"] = args.speed
    if args.max_speed:
        sim["max_speed"] = True
    if sim:
        over["sim"] = sim
    if args.exchange:
        url = args.exchange.rstrip("/")
        if not url.startswith(("http://", "https://")):
            print(f"aegis run: --exchange wants an http(s) URL, not {args.exchange!r}", file=sys.stderr)
            return 2
        ws = "ws" + url[len("http"):]
        over["feed"] = {**over.get("feed", {}), "rest_url": url, "ws_url": ws}
    if args.capture:
        if Path(args.capture).exists():
            print(f"aegis run: {args.capture} exists: choose a new capture file", file=sys.stderr)
            return 2
        over["feed"] = {**over.get("feed", {}), "publish_raw": True}
    if over:
        cfg = config_mod.replace(cfg, **over)
    refusal = policy.mode_refusal(cfg.mode, keys_present=config_mod.secrets().present,
                                  live_confirm=cfg.trading.live_confirm)
    if refusal:
        print(f"aegis run: {refusal}", file=sys.stderr)
        return 2
    try:  # tcp without CURVE keys: refuse here, before a run directory or a summary exists
        service.endpoints(service.run_dir(cfg), cfg)
    except ConfigError as exc:
        print(f"aegis run: {exc}", file=sys.stderr)
        return 2
    sup = Supervisor(cfg, duration_s=args.duration, summary_path=args.summary_json,
                     status_line=not args.no_status, without=tuple(args.without),
                     stats_out=args.stats_out, capture=args.capture)
    return sup.run()
