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

The parts: ``children`` (a service process: start, ready, stop; children run in their own
process group and die with the supervisor), ``spares`` (warm spares that fork
replacements), ``policy`` (pure rules: restart or not, backoff, intensity, the summary),
``stack_status`` (the snapshot and the status lines). This module is the shell that runs
them: the loop, start-up, shutdown and clean-up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from common import bus, config as config_mod, service, wire, zmqutil
from common.config import AegisConfig, endpoints
from common.errors import ConfigError, RingError
from common.ring import Ring
from services.orchestrator import children, monitor, policy, spares, stack_status, storage
from services.orchestrator.children import OPTIONAL, Child

log = structlog.get_logger(__name__)
TICK_S = 0.1  # supervision loop period
CAPTURE_SETTLE_S = 0.5  # aegis run --capture: the recorder connects before the services publish


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
            cfg = config_mod.replace(cfg, sim={"port": children.free_port(cfg.sim.host)})
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
    def spawn(self, child: Child, now: float | None = None) -> None:
        """Start the service: ask its spare for a replacement when one runs, else a new process."""
        (self.rd / f"{child.name}.ready").unlink(missing_ok=True)
        if spares.ask(child, self.rd, time.monotonic() if now is None else now):
            return  # ``spares.collect`` adopts it
        children.record_start(child, children.start_process(child, self.rd), "none")

    def is_ready(self, child: Child) -> bool:
        return children.is_ready(child, self.rd, self.cfg)

    def stop_child(self, child: Child) -> None:
        children.stop(child, self.cfg.supervisor.stop_timeout_s)

    @property
    def spares_enabled(self) -> bool:
        return spares.enabled(self.cfg, subreaper=self.subreaper)

    # ------------------------------------------------------------------ running
    def run(self) -> int:
        self.prepare()
        service.install_stop_handlers(self.stop)
        # wake the loop the moment a child dies, instead of at its next 0.1 s tick
        signal.signal(signal.SIGCHLD, lambda *_: self._wake.set())
        self.subreaper = children.become_subreaper()
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
            if not children.wait_ready(child, self.rd, self.cfg, self.stop):
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
        spares.end_child_spare(child)
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
        services = {}
        for c in self.children:
            running = c.running
            services[c.name] = stack_status.service_view(c, now=now, running=running,
                                                         ready=running and self.is_ready(c),
                                                         spare=spares.state(c, self.rd))
        return stack_status.snapshot(
            mode=self.cfg.mode, uptime_s=now - self.started, run_dir=str(self.rd), ticks_per_s=self._rate,
            heartbeat_timeout_s=self.cfg.supervisor.heartbeat_timeout_s,
            ring=self.ring.counters() if self.ring is not None else {}, services=services,
            permission=self.permission)

    def heartbeat_line(self) -> str:
        return stack_status.heartbeat_line(self.snapshot())

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
                    spares.keep(child, self.rd, self.cfg, now)
            if now >= next_status:
                next_status = now + 1.0
                self.print_status(now - started)
            if now >= next_heartbeat_line:
                next_heartbeat_line = now + self.cfg.supervisor.heartbeat_log_interval_s
                _emit(sys.stderr, self.heartbeat_line() + "\n")
            if not self.stop.is_set():
                pending = any(c.spare_asked_at is not None for c in self.children)
                self._wake.wait(policy.next_wait_s(spares.POLL_S if pending else TICK_S,
                                                   [c.restart_at for c in self.children], time.monotonic()))
                self._wake.clear()

    def supervise(self, child: Child, now: float) -> bool:
        """Restart a dead (or hung) child; False when the restart intensity is exceeded. A child
        that exited because its storage refuses writes is not restarted (``policy.on_exit``)."""
        if child.gave_up:
            return True
        if child.spare_asked_at is not None:  # its spare is forking the replacement
            spares.collect(child, now, self.cfg, respawn=None if self.stopping else self.spawn)
            return True
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restart_at = None
                self.spawn(child, now)
            return True
        p = child.proc
        if p is not None and p.poll() is None:
            if policy.healthy_reset(child.started_at, now, self.policy.healthy_after_s):
                child.consecutive_failures = 0
            if not self.hung(child, now):
                return True
            log.error("supervisor.child_hung", child=child.name, pid=p.pid,
                      silent_s=round(now - child.last_heartbeat, 1))
            p.kill()
            p.wait()
        return self.on_exit(child, p.returncode if p is not None else None, now)

    def hung(self, child: Child, now: float) -> bool:
        """Ready, publishing heartbeats, and silent past ``supervisor.heartbeat_timeout_s``."""
        return (child.name not in children.NO_HEARTBEAT and self.is_ready(child)
                and now - child.last_heartbeat > self.cfg.supervisor.heartbeat_timeout_s)

    def on_exit(self, child: Child, code: int | None, now: float) -> bool:
        """Carry out ``policy.on_exit``'s verdict; False: the stack stops."""
        d = policy.on_exit(self.policy, code=code, restart_times=child.restart_times,
                           consecutive_failures=child.consecutive_failures, now=now, optional=child.name in OPTIONAL)
        child.restart_times = list(d.restart_times)
        if d.verdict is policy.ExitVerdict.NOT_RESTARTED:
            child.gave_up = f"exited with {code}: its storage refuses writes; not restarted (a restart cannot fix it)"
            self.storage_gave_up = True
            log.error("supervisor.child_not_restarted", child=child.name, code=code, reason=child.gave_up,
                      exit_code_at_end=policy.EXIT_JOURNAL_FAULT)
            return True
        if d.verdict is not policy.ExitVerdict.RESTART:
            log.error("supervisor.restart_intensity_exceeded", child=child.name,
                      restarts=len(child.restart_times), period_s=self.policy.period_s,
                      optional=child.name in OPTIONAL)
            if d.verdict is policy.ExitVerdict.GIVE_UP:
                self.give_up(child, f"more than {self.policy.intensity} restarts in {self.policy.period_s:g} s")
                return True
            return False
        child.restarts += 1
        child.consecutive_failures += 1
        child.restart_at = now + d.delay_s
        log.warning("supervisor.child_exited", child=child.name, code=code, restart_in_s=d.delay_s,
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
        line = stack_status.status_line(mode=self.cfg.mode, elapsed_s=elapsed, rate=rate, ring=c, brain=brain,
                                        restarts=sum(ch.restarts for ch in self.children),
                                        permission=self.permission)
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
        spares.stop_all(self.children, self.cfg)  # spares first: nothing may take over any more
        for child in reversed(self.children):
            self.stop_child(child)
        summary = self.summary(time.monotonic() - (self.ready_at or started))
        if self.summary_path:
            Path(self.summary_path).write_text(json.dumps(summary, indent=2) + "\n")
        _emit(sys.stderr if self.summary_path else sys.stdout, json.dumps(summary, indent=2) + "\n")
        if self.sub is not None:
            self.sub.close()
        zmqutil.term()

    def summary(self, duration: float) -> dict[str, Any]:
        """The run summary (the services' final stats and the ring's counters); sets the exit code."""
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
        return summary

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
