"""``aegis replay``: play a capture back through a real stack, deterministically.

    aegis replay FILE [--speed X | --max] [--from T] [--to T] [--report DIR]
                      [--decisions FILE] [--exchange-info FILE] [--workdir DIR] [--json]
    aegis replay FILE --pub ENDPOINT [--topics PREFIX ...] [--speed X | --max] [--from T] [--to T]

With ``--pub`` it only publishes the capture's messages, as they were recorded (ZeroMQ
messages frame for frame, raw WebSocket frames on topic ``raw.ws``), on a PUB socket bound
at ENDPOINT, paced like the recording (or ``--speed``/``--max``): a captured stream played
into any subscriber, a test's or a dashboard's. Without it:

What it does, step by step:

1. Reads the capture (``aegis capture --raw`` or ``aegis run --capture``): its raw WebSocket
   frames are the market data; the candles the feed hydrated over REST at the start of the
   recorded run (``candle.*`` messages from a ``feed:`` publisher) are the history the brain
   warmed with; the exchangeInfo in its header gives the symbol filters.
2. Makes a fresh working directory: a database holding those hydration candles, the
   exchangeInfo as a file, and a config with ``mode = "replay"``.
3. Runs the stack (``aegis run --mode replay``: orchestrator, brain, feed; no exchange):
   the feed plays the frames into the ring in lock-step batches (``services.feed.
   replay_source``), the brain decides on the ticks' own clock and trades through the paper
   broker answering inline. A progress bar follows the feed's stats.
4. When the feed has played everything and the brain has read it, stops the stack (the
   orchestrator drains the journal) and writes the decision stream (``decisions.jsonl``:
   signals, orders, fills, closed trades, risk rejections; one JSON object a line, sorted
   keys, a fixed order) and, with ``--report``, the report directory.

The same capture gives byte-identical decision files, run after run, at any speed.
A damaged capture: everything before the damage is replayed and its decisions written;
the error says where (file offset); exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from cli.capture import exchange_info_from_rules, no_raw_frames
from common import config as config_mod
from common import filekind, journal_store, service, wire
from common.capture_file import KIND_ZMQ, Capture, Record, open_capture
from common.errors import DecodeError
from common.replay_plan import Plan, is_hydration, plan_replay  # noqa: F401 - the plan is shared with research
from services.feed.replay_source import pace_delay_s
from services.orchestrator import db

STOP_TIMEOUT_S = 60.0
POLL_S = 0.1
DECISION_TABLES = ("signal", "order", "fill", "trade", "risk_reject")


# ---------------------------------------------------------------------------- pure core
def decisions(source: Any) -> list[dict[str, Any]]:
    """Every decision the run left in its database, in a fixed order: signals, orders, fills,
    closed trades, risk rejections (each table by time, then by id; ``journal_store.DECISION_SQL``).
    ``source``: a ``JournalReader``, or an open connection to the database."""
    reader = source if isinstance(source, journal_store.JournalReader) else journal_store.JournalReader(source)
    return reader.decisions()


def model_scores(trades: list[dict[str, Any]]) -> dict[str, Any]:
    """How good the confidence model was on this replay: Brier score and log loss of each
    closed trade's confidence (predicted at entry, before its outcome was known) against its
    outcome (win = R > 0), next to the running base rate (the model's own Beta prior over
    the trades that had closed when this one opened) and a constant 0.5."""
    from services.brain import model, model_eval

    if not trades:
        return {"n": 0}
    prior = model.ModelConfig()
    rows = sorted(trades, key=lambda t: (t["opened_ms"], t["trade_id"]))
    closed = sorted((t["closed_ms"], 1.0 if t["outcome_r"] > 0 else 0.0) for t in rows)
    pm, pb, ys = [], [], []
    for t in rows:
        before = [y for c, y in closed if c <= t["opened_ms"]]
        pb.append((sum(before) + prior.prior_wins) / (len(before) + prior.prior_wins + prior.prior_losses))
        pm.append(float(t["confidence"]))
        ys.append(1.0 if t["outcome_r"] > 0 else 0.0)
    out = model_eval.scores(pm, pb, ys)
    out["wins"] = int(sum(ys))
    return out


def decision_lines(items: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(d, sort_keys=True, separators=(",", ":")) + "\n" for d in items)


def progress_of(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The replay section of the feed's newest stats file ({} before it wrote one)."""
    return dict(stats[-1].get("replay") or {}) if stats else {}


# ---------------------------------------------------------------------------- the shell
def parser() -> argparse.ArgumentParser:
    p = service.arg_parser("replay", "play a capture through a real stack, deterministically")
    p.add_argument("file", help="capture file (aegis capture --raw, or aegis run --capture)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None, help="N times the recorded pace (1 = as recorded)")
    pace.add_argument("--max", action="store_true", help="as fast as the brain takes it (the default)")
    p.add_argument("--from", dest="from_ms", type=int, default=0, metavar="MS",
                   help="replay frames received at or after this time (epoch ms)")
    p.add_argument("--to", dest="to_ms", type=int, default=0, metavar="MS",
                   help="... and before this time (epoch ms)")
    p.add_argument("--report", type=Path, help="write the report directory here (HTML, PNG, CSV)")
    p.add_argument("--decisions", type=Path, help="decision stream file (default: decisions.jsonl in the work dir)")
    p.add_argument("--exchange-info", type=Path,
                   help="exchangeInfo JSON for the symbol filters (default: the capture header's)")
    p.add_argument("--workdir", type=Path,
                   help="database, stats, stack log and decisions of the replay (default: "
                        "<data_dir>/replay/<capture name>; its previous replay files are replaced)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--pub", metavar="ENDPOINT",
                   help="instead: publish the capture's messages as recorded (ZeroMQ frames, and raw "
                        "frames on 'raw.ws') on a PUB socket bound here, for any subscriber")
    p.add_argument("--topics", nargs="+", default=[], metavar="PREFIX", help="--pub: only these topic prefixes")
    p.add_argument("--wait", type=float, default=1.0, metavar="S",
                   help="--pub: seconds to wait after binding, for subscribers to connect (default 1)")
    return p


def published_frames(rec: Record) -> tuple[bytes, ...]:
    """What ``--pub`` sends for one record: a ZeroMQ message as received, a raw frame on its topic."""
    return tuple(rec.frames) if rec.kind == KIND_ZMQ else (wire.RAW_WS_TOPIC, rec.frames[0])


def publish_capture(cap: Capture, send, *, speed: float, from_ns: int | None, to_ns: int | None,
                    prefixes: tuple[bytes, ...], sleep=time.sleep, clock=time.monotonic) -> tuple[Counter, str]:
    """Send every record's frames in file order, paced by the receive times (``speed`` 0 = no
    waiting). Returns (messages per topic, damage message or "")."""
    counts: Counter = Counter()
    first: int | None = None
    started = clock()
    try:
        for rec in cap.iter_records(from_ns, to_ns):
            frames = published_frames(rec)
            if prefixes and not frames[0].startswith(prefixes):
                continue
            if first is None:
                first, started = rec.recv_ns, clock()
            delay = pace_delay_s(first, rec.recv_ns, started, clock(), speed)
            if delay > 0:
                sleep(delay)
            send(frames)
            counts[frames[0].decode("ascii", "backslashreplace")] += 1
    except DecodeError as exc:
        return counts, str(exc)
    return counts, ""


def pub_main(args: argparse.Namespace) -> int:
    import zmq

    from common import zmqutil

    speed = args.speed if args.speed is not None else 0.0
    if wrong := filekind.refusal(args.file, ("aegis_capture",), "an AEGIS capture"):
        return _fail(wrong)
    try:
        cap = open_capture(args.file)
    except (OSError, DecodeError) as exc:
        return _fail(f"cannot read {args.file}: {exc}")
    try:
        sock = zmqutil.pub(args.pub)
    except (zmq.ZMQError, ValueError) as exc:
        cap.close()
        return _fail(f"cannot bind {args.pub}: {exc}")
    try:
        time.sleep(max(0.0, args.wait))
        counts, damage = publish_capture(cap, sock.send_multipart, speed=speed,
                                         from_ns=args.from_ms * 1_000_000 or None,
                                         to_ns=args.to_ms * 1_000_000 or None,
                                         prefixes=tuple(t.encode() for t in args.topics))
        time.sleep(0.2)  # PUB has no acknowledgement: let the last messages leave
    finally:
        sock.close(linger=1000)
        cap.close()
        zmqutil.term()
    result = {"file": args.file, "pub": args.pub, "messages": sum(counts.values()), "topics": dict(counts),
              "error": damage}
    print(json.dumps(result) if args.json else
          f"aegis replay: published {result['messages']:,} messages on {args.pub}"
          + (f"\n  STOPPED AT DAMAGE: {damage}" if damage else ""))
    return 1 if damage else 0


def _fail(msg: str) -> int:
    print(f"aegis replay: {msg}", file=sys.stderr)
    return 2


class _Bar:
    """rich's progress bar on a terminal, a line every few seconds elsewhere."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.rich: Any = None
        self.last_line = 0.0
        if enabled and sys.stderr.isatty():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.rich = Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("frames  {task.fields[ticks]:,} ticks"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), transient=False)
            self.task = self.rich.add_task("replay", total=self.total, ticks=0)
            self.rich.start()

    def update(self, p: dict[str, Any]) -> None:
        if not self.enabled or not p:
            return
        if self.rich is not None:
            self.rich.update(self.task, completed=p.get("frames", 0), ticks=p.get("ticks", 0))
        elif time.monotonic() - self.last_line >= 5.0:
            self.last_line = time.monotonic()
            print(f"aegis replay: {p.get('frames', 0):,}/{self.total:,} frames, {p.get('ticks', 0):,} ticks",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()


def prepare(args: argparse.Namespace, cfg: config_mod.AegisConfig, plan: Plan, work: Path,
            info: dict[str, Any]) -> tuple[config_mod.AegisConfig, Path]:
    """The fresh database (hydration candles), the exchangeInfo file and the stack's config."""
    data_dir = work / "data"
    info_path = work / "exchange_info.json"
    info_path.write_text(json.dumps(info))
    run_dir = Path(tempfile.mkdtemp(prefix="aegis-replay-"))  # short: ipc paths have a length limit
    speed = args.speed if args.speed is not None else 0.0
    cfg = config_mod.replace(
        cfg, mode="replay", run_dir=str(run_dir), data_dir=str(data_dir.resolve()),
        feed={"publish_raw": False}, bus={"transport": "ipc"},
        replay={"file": str(Path(args.file).resolve()), "speed": speed, "from_ms": args.from_ms,
                "to_ms": args.to_ms, "exchange_info": str(info_path.resolve()),
                "warm_to_ms": plan.warm_to_ms, "history_candles": plan.history_candles},
        supervisor={"status_line": False},
        # entries as the recorded run sent them (a capture older than limit-IOC entries: MARKET)
        trading={"entry_order": plan.entry_order or "market",
                 **({"entry_slippage_bps": plan.entry_slippage_bps} if plan.entry_slippage_bps is not None else {})})
    conn = db.connect(service.db_path(cfg))
    try:
        db.write_batch(conn, [row for env in plan.hydration for row in db.rows_for(env)])
    finally:
        conn.close()
    cfg_file = work / "config.json"
    cfg_file.write_text(json.dumps(config_mod.to_dict(cfg), indent=1))
    return cfg, cfg_file


def run_stack(cfg_file: Path, rd: Path, work: Path, bar: _Bar) -> tuple[int, dict[str, Any]]:
    """Start ``aegis run --mode replay``, follow the feed's progress, stop it when the replay
    is done (or the stack gave up). Returns (supervisor exit code, last progress)."""
    # the config file already holds every AEGIS_* setting this command saw, with the replay's
    # own on top: an environment override in the children would undo those (the data dir!)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    log_file = open(work / "stack.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "common.cli", "run", "--config", str(cfg_file),
                             "--no-status", "--summary-json", str(work / "summary.json"),
                             "--stats-out", str(work / "stats")],
                            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    last: dict[str, Any] = {}
    try:
        while proc.poll() is None:
            p = progress_of(service.read_stats(rd, "feed"))
            if p:
                last = p
                bar.update(p)
                if p.get("done"):
                    break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log_file.close()
    return proc.returncode, last


class _Refused(Exception):
    """A replay that cannot start: the message says why (``aegis replay: ...``, exit 2)."""


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.speed is not None and args.speed <= 0:
        return _fail("--speed must be > 0 (use --max for as fast as possible)")
    if args.to_ms and args.to_ms <= args.from_ms:
        return _fail("--to must be after --from")
    if args.pub:
        return pub_main(args)
    cfg = service.bootstrap("replay", args)
    try:
        plan = _plan(args)
        info = _exchange_info(args, plan)
    except _Refused as exc:
        return _fail(str(exc))
    work = args.workdir or Path(cfg.data_dir) / "replay" / Path(args.file).name.split(".")[0]
    clear_workdir(work)
    rd: Path | None = None
    try:
        rcfg, cfg_file = prepare(args, cfg, plan, work, info)
        rd = Path(rcfg.run_dir)
        bar = _Bar(plan.frames, enabled=not args.no_progress and not args.json)
        # every stop signal ends the replay as Ctrl+C does: the stack is stopped, what it
        # decided so far is written, its run directory removed (service.STOP_SIGNALS)
        for sig in service.STOP_SIGNALS:
            if sig != signal.SIGINT:
                signal.signal(sig, signal.default_int_handler)
        started = time.monotonic()
        try:
            code, progress = run_stack(cfg_file, rd, work, bar)
        finally:
            bar.close()
        result = _result(args, rcfg, plan, work, code, progress, time.monotonic() - started)
        ok = bool(progress.get("done")) and not result["error"] and code == 0
        if args.json:
            print(json.dumps(result))
        else:
            print(format_result(result))
        if not progress.get("done"):
            print(f"aegis replay: the stack stopped before the replay finished (exit {code}); "
                  f"see {work / 'stack.log'}", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if rd is not None:
            shutil.rmtree(rd, ignore_errors=True)


def _plan(args: argparse.Namespace) -> Plan:
    """The replay's plan of the capture between --from and --to; refused when the file is not
    a capture, cannot be read, or has no raw frame in that range."""
    if wrong := filekind.refusal(args.file, ("aegis_capture",), "an AEGIS capture"):
        raise _Refused(wrong)
    try:
        with open_capture(args.file) as cap:
            plan = plan_replay(cap, args.from_ms * 1_000_000 or None, args.to_ms * 1_000_000 or None)
    except (OSError, DecodeError) as exc:
        raise _Refused(f"cannot read {args.file}: {exc}") from None
    if plan.frames == 0:
        if plan.raw_in_file:
            why = f"{args.file} holds {plan.raw_in_file:,} raw WebSocket frames, none between --from and --to"
        else:
            why = no_raw_frames(args.file)
        raise _Refused(why + (f" ({plan.damage})" if plan.damage else ""))
    return plan


def _exchange_info(args: argparse.Namespace, plan: Plan) -> dict:
    """The symbols' rules the replayed brain trades with: --exchange-info, else the capture's
    exchangeInfo, else one built from the feed's symbol messages in it."""
    info = plan.exchange_info
    if args.exchange_info is not None:
        if wrong := filekind.refusal(args.exchange_info, ("exchange_info",), "an exchangeInfo body"):
            raise _Refused(f"--exchange-info: {wrong}")
        try:
            info = json.loads(args.exchange_info.read_text())
        except (OSError, ValueError) as exc:
            raise _Refused(f"cannot read --exchange-info {args.exchange_info}: {exc}") from None
    elif not isinstance(info, dict) and plan.rules:  # the feed's own rules, as the live brain's fallback
        info = exchange_info_from_rules(plan.rules)
    if not isinstance(info, dict) or not info.get("symbols"):
        raise _Refused(f"{args.file} carries no symbol rules (no exchangeInfo in its header, no symbol messages "
                       "of the feed in it): pass --exchange-info FILE (a saved /fapi/v1/exchangeInfo body)")
    return info


def _result(args: argparse.Namespace, rcfg: Any, plan: Plan, work: Path, code: int, progress: dict,
            elapsed: float) -> dict[str, Any]:
    """After the stack stopped: write the decisions file (and the report when asked) and
    return the run's result, as --json prints it."""
    try:
        summary = json.loads((work / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    with journal_store.read_only(service.db_path(rcfg)) as reader:
        items = decisions(reader)
    out = args.decisions or work / "decisions.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(decision_lines(items))
    report_summary = None
    if args.report is not None:
        from services.orchestrator import report_metrics
        from cli import report as report_cli

        report_summary = report_cli.write_report(args.report, db_path=service.db_path(rcfg),
                                                 cfg=report_metrics.ReportConfig(), stats_dir=work / "stats")
    counts = Counter(d["type"] for d in items)
    scores = model_scores([d for d in items if d["type"] == "trade"])
    return {"file": args.file, "frames": progress.get("frames", 0), "frames_in_capture": plan.frames,
            "ticks": progress.get("ticks", 0), "batches": progress.get("batches", 0),
            "replay_s": progress.get("elapsed_s"), "elapsed_s": round(elapsed, 3),
            "ticks_per_s": (round(progress.get("ticks", 0) / progress["elapsed_s"])
                            if progress.get("elapsed_s") else None),
            "hydration_candles": len(plan.hydration), "decisions": {k: counts.get(k, 0) for k in DECISION_TABLES},
            "decisions_file": str(out), "report": str(args.report) if args.report else None,
            "error": progress.get("error") or "", "error_offset": progress.get("error_offset"),
            "stack_exit": code, "restarts": summary.get("restarts", {}),
            "net_pnl_usdt": (report_summary or {}).get("metrics", {}).get("net_pnl_usdt"),
            "model": scores}


WORK_FILES = ("exchange_info.json", "config.json", "summary.json", "stack.log", "decisions.jsonl")
WORK_DIRS = ("data", "stats")


def clear_workdir(work: Path) -> None:
    """Remove what an earlier replay left in ``work`` (only its own files: the directory may
    be one the user chose)."""
    work.mkdir(parents=True, exist_ok=True)
    for name in WORK_FILES:
        (work / name).unlink(missing_ok=True)
    for name in WORK_DIRS:
        shutil.rmtree(work / name, ignore_errors=True)


def format_result(r: dict[str, Any]) -> str:
    d = r["decisions"]
    lines = [f"aegis replay: {r['frames']:,} of {r['frames_in_capture']:,} frames -> {r['ticks']:,} ticks "
             f"in {r['batches']:,} batches, {r['replay_s']} s of replay ({r['ticks_per_s'] or 0:,} ticks/s)",
             f"  warmed with {r['hydration_candles']:,} hydration candles",
             f"  decisions: {d['signal']} signals, {d['order']} orders, {d['fill']} fills, "
             f"{d['trade']} closed trades, {d['risk_reject']} risk rejections -> {r['decisions_file']}"]
    m = r.get("model") or {}
    if m.get("n"):
        b, ll = m["brier"], m["log_loss"]
        lines.append(f"  confidence model on {m['n']} closed trades ({m['wins']} wins): Brier {b['model']:.4f} "
                     f"(base rate {b['base_rate']:.4f}, 0.5: {b['constant']:.4f}), log loss {ll['model']:.4f} "
                     f"(base rate {ll['base_rate']:.4f}, 0.5: {ll['constant']:.4f})")
    if r["report"]:
        lines.append(f"  report: {r['report']}/index.html (net PnL {r['net_pnl_usdt']} USDT)")
    if r["error"]:
        lines.append(f"  STOPPED AT DAMAGE: {r['error']} (everything before it was replayed)")
    return "\n".join(lines)
