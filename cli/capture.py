"""``aegis capture`` and ``aegis capture-info``: record a running stack's events, inspect a file.

    aegis capture --out FILE [--topics PREFIX ...] [--duration S] [--raw] [--run-dir DIR]
    aegis capture-info FILE [--json]

``capture`` subscribes to every PUB endpoint of the stack (``service.endpoints(run_dir, cfg)``),
by topic prefix (default: everything), and appends each message's frames, exactly as
received, with its receive time, to a capture file (``common.capture_file``) until Ctrl+C,
SIGTERM or ``--duration``; then it closes the file (index and footer) and prints the count
per topic. It records frames it cannot decode too: a capture is evidence, not a filter.

``capture-info`` prints the header, blocks, records, time span, counts per topic, how many
frames ``wire.decode`` rejects, and the integrity verdict: ``ok`` (indexed, every block
checked), ``incomplete`` (no index: the writer did not close the file; every complete block
is intact), ``damaged`` (where and what). Exit status 0 for ok/incomplete, 1 for damaged,
2 when the file cannot be read as a capture at all.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import zmq

from common import filekind, service, wire, zmqutil
from common.capture_file import (KIND_NAMES, KIND_WS_RAW, KIND_ZMQ, RAW_TOPIC_PREFIX, Capture,
                            CaptureWriter, Header, create_capture, label, open_capture,
                            record_label)
from common.errors import ConfigError, DataError, DecodeError

POLL_MS = 100  # longest wait for a message: bounds how late a stop or a due flush is noticed
DRAIN_BATCH = 1000  # messages taken per wake-up before checking the clock again

RAW_HELP = ("record the feed's raw WebSocket frames too (topic 'raw.ws'; the default without --topics): "
            "the market data aegis replay plays. The feed sends them while a capture subscribes (from its next status "
            "tick, within a second), or from its first frame with feed.publish_raw (aegis run --capture)")
NO_RAW_HELP = ("leave the raw frames out: a smaller file of the stack's events only, which aegis replay "
               "cannot play (capture-info and aegis replay --pub read it)")


# ---------------------------------------------------------------------------- the core
def subscriptions(topics: Iterable[str], raw: bool) -> list[bytes]:
    """SUB prefixes: the given ones (default: everything), plus ``raw.`` with ``--raw``."""
    out = [t.encode() for t in topics] or [b""]
    if raw and b"" not in out and RAW_TOPIC_PREFIX not in out:
        out.append(RAW_TOPIC_PREFIX)
    return out


def classify(frames: list[bytes], raw: bool) -> tuple[int, tuple[bytes, ...]] | None:
    """(kind, frames to store) for one received message, or None to skip it: ``raw.*``
    messages are raw WebSocket frames, kept (as the text frame alone) only with ``--raw``."""
    if frames and frames[0].startswith(RAW_TOPIC_PREFIX):
        if not raw or len(frames) != 2:
            return None
        return KIND_WS_RAW, (frames[1],)
    return KIND_ZMQ, tuple(frames)


def record_stream(sock: zmq.Socket, writer: CaptureWriter, *, raw: bool,
                  should_stop: Callable[[], bool], duration_s: float = 0.0) -> tuple[Counter[str], int]:
    """Receive and record until ``should_stop()`` or ``duration_s`` (0 = no limit), then take
    what has already arrived. Returns (count per label, messages skipped)."""
    counts: Counter[str] = Counter()
    skipped = 0
    last_ns = 0
    deadline = time.monotonic() + duration_s if duration_s > 0 else None

    def drain(limit: int) -> int:
        nonlocal last_ns, skipped
        n = 0
        while n < limit:
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            # wall-clock receive time (comparable with event times), never decreasing, as
            # the format requires, even when the clock steps back
            last_ns = max(last_ns, time.time_ns())
            kept = classify(frames, raw)
            if kept is None:
                skipped += 1
                continue
            kind, stored = kept
            writer.append(last_ns, stored, kind)
            counts[label(kind, stored)] += 1
        return n

    while not should_stop():
        timeout = POLL_MS
        if deadline is not None:
            left_ms = (deadline - time.monotonic()) * 1000.0
            if left_ms <= 0:
                break
            timeout = int(min(timeout, left_ms)) + 1
        if sock.poll(timeout):
            drain(DRAIN_BATCH)
        writer.flush_if_due()
    while drain(DRAIN_BATCH):  # what arrived before the stop is part of the capture
        pass
    return counts, skipped


def what_it_is_for(name: str, raw_frames: int, meta: Any) -> list[str]:
    """Plain words on what a capture can be used for: ``aegis replay`` needs raw WebSocket
    frames (the market data it plays) and the symbol rules (its header's exchangeInfo, or the
    feed's symbol messages in the file); without raw frames it is a record of the stack's events."""
    meta = meta if isinstance(meta, dict) else {}
    if raw_frames:
        if isinstance(meta.get("exchange_info"), dict):
            return [f"replay: yes ({raw_frames:,} raw WebSocket frames, symbol rules from the "
                    f"{meta.get('exchange_info_source', 'exchange')}): aegis replay {name}"]
        return [f"replay: yes if the symbol rules are found ({raw_frames:,} raw WebSocket frames; the header "
                f"has no exchangeInfo ({meta.get('exchange_info_error', 'not recorded')}): aegis replay {name} "
                "takes them from the feed's symbol messages in the file, else needs --exchange-info FILE)"]
    return [f"replay: no. {no_raw_frames(name)}"]


def no_raw_frames(name: str) -> str:
    """What a capture without raw frames is, and is not, good for."""
    return (f"{name} holds no raw WebSocket frames, the market data aegis replay plays, so it cannot be "
            "replayed through the stack. It is a record of the stack's events (ticks, candles, signals, "
            f"orders): aegis capture-info {name} counts and checks them, and aegis replay {name} --pub "
            "ENDPOINT publishes them as recorded.")


def format_counts(counts: Counter[str]) -> list[str]:
    width = max((len(k) for k in counts), default=0)
    return [f"  {k:<{width}}  {v:>10,}" for k, v in sorted(counts.items())]


# ---------------------------------------------------------------------------- aegis capture
def capture_parser() -> argparse.ArgumentParser:
    p = service.arg_parser("capture", "record the stack's PUB events into a capture file")
    p.add_argument("--out", required=True, help="capture file to create")
    p.add_argument("--topics", nargs="+", default=[], metavar="PREFIX",
                   help="topic prefixes to record, e.g. candle. tick.BTCUSDT (default: all)")
    p.add_argument("--duration", type=float, default=0.0, metavar="S",
                   help="stop after S seconds (default: until Ctrl+C or SIGTERM)")
    raw = p.add_mutually_exclusive_group()
    raw.add_argument("--raw", dest="raw", action="store_true", default=None, help=RAW_HELP)
    raw.add_argument("--no-raw", dest="raw", action="store_false", help=NO_RAW_HELP)
    p.add_argument("--symbols", nargs="+", default=None,
                   help="symbols for the header and its exchangeInfo (default: the stack's configured "
                        "feed symbols, else the symbols it holds rules for)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument("--fsync", action="store_true", help="fsync after every block")
    p.add_argument("--flush-ms", type=int, default=1000,
                   help="write a block at least this often (what a crash can lose)")
    p.add_argument("--block-records", type=int, default=4096, help="records per block at most")
    return p


def _stack_symbols(rd: Path) -> tuple[str, ...]:
    """The feed symbols of the stack's config (written by the supervisor), if any."""
    try:
        return tuple(json.loads((rd / "config.json").read_text())["feed"]["symbols"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()


EXCHANGE_INFO_KEYS = ("symbol", "status", "contractType", "quoteAsset", "marginAsset", "pricePrecision",
                      "quantityPrecision", "filters", "underlyingSubType")
EXCHANGE_INFO_MAX_BYTES = 512 * 1024  # the header's share for it (its limit is 1 MiB)


def compact_exchange_info(body: Any, symbols: Iterable[str] = ()) -> dict[str, Any]:
    """The part of an exchangeInfo body a replay needs (each symbol's filters and labels), for
    ``symbols`` (empty: every TRADING symbol); raises DecodeError when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
        raise DecodeError("not an exchangeInfo body (no 'symbols' list)", reason="bad_exchange_info")
    wanted = set(symbols)
    out = [{k: e[k] for k in EXCHANGE_INFO_KEYS if k in e} for e in body["symbols"]
           if isinstance(e, dict) and (e.get("symbol") in wanted if wanted else e.get("status") == "TRADING")]
    return {"symbols": out}


def exchange_info_from_rules(rules: Iterable[wire.SymbolInfo]) -> dict[str, Any]:
    """An exchangeInfo body (the part a replay reads) from the feed's symbol rules: every
    filter they carry (``venue.filters.entry_from_symbol_info``; the rules of an older feed
    have no price bounds, maximum quantity or PERCENT_PRICE: 0 = no such bound)."""
    from venue.filters import entry_from_symbol_info

    return {"symbols": [entry_from_symbol_info(r) for r in sorted(rules, key=lambda r: r.symbol)]}


def _stack_config(rd: Path) -> Any:
    """The running stack's config (the supervisor writes it into its run directory), or None."""
    from common import config as config_mod

    try:
        return config_mod.load(rd / "config.json", env={})
    except Exception:  # noqa: BLE001 - no stack there, or not one of ours: nothing to read
        return None


def stack_rules(rd: Path) -> dict[str, wire.SymbolInfo]:
    """The symbol rules the stack's feed published and its database keeps (the symbols it
    streams, and any it streamed before), {} when there is no such database."""
    from services.brain import recovery

    stack = _stack_config(rd)
    return recovery.symbol_rules(service.db_path(stack)) if stack is not None else {}


def header_exchange_info(rd: Path, symbols: tuple[str, ...], timeout_s: float = 3.0) -> dict[str, Any]:
    """The symbol rules a replay of this capture needs, for its header: the exchange's
    exchangeInfo for the stack's symbols (configured, else those it has rules for), else the
    rules the stack's feed published (``exchange_info_source`` says which, and
    ``exchange_info_error`` why the exchange gave none). Never raises."""
    rules = stack_rules(rd)
    got = stack_exchange_info(rd, symbols or tuple(sorted(rules)), timeout_s)
    if "exchange_info" in got:
        return {**got, "exchange_info_source": "exchange"}
    wanted = set(symbols)
    kept = [r for s, r in rules.items() if not wanted or s in wanted]
    if kept:
        return {**got, "exchange_info": exchange_info_from_rules(kept), "exchange_info_source": "feed symbol rules"}
    return got


def stack_exchange_info(rd: Path, symbols: Iterable[str], timeout_s: float = 3.0) -> dict[str, Any]:
    """The symbol filters of the exchange the stack in ``rd`` trades on, for the capture
    header (a replay's paper broker checks orders against them): {"exchange_info": ...}, or
    {"exchange_info_error": why} (never raises: the capture itself matters more)."""
    import urllib.request

    from venue import brokers

    try:
        stack = _stack_config(rd)
        if stack is None:
            raise ConfigError(f"no stack config in {rd}")
        url = brokers.rest_url(stack).rstrip("/") + "/fapi/v1/exchangeInfo"
        with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310 - the stack's own exchange
            info = compact_exchange_info(json.loads(r.read()), symbols)
        if len(json.dumps(info)) > EXCHANGE_INFO_MAX_BYTES:
            raise DataError(f"{len(info['symbols'])} symbols: too large for the header (pass --symbols)")
        return {"exchange_info": info}
    except Exception as exc:  # noqa: BLE001 - best effort, reported in the header
        return {"exchange_info_error": repr(exc)[:300]}


def main(argv: list[str] | None = None) -> int:
    args = capture_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.flush_ms < 0 or args.block_records < 1 or args.duration < 0:
        print("aegis capture: --flush-ms, --duration must be >= 0, --block-records >= 1",
              file=sys.stderr)
        return 2
    if args.raw is None:  # everything by default: the events and the raw frames a replay plays
        args.raw = not args.topics
    cfg = service.bootstrap("capture", args)
    rd = service.run_dir(cfg)
    eps = service.endpoints(rd, cfg).publishers()  # tcp: with the stack's CURVE keys
    prefixes = subscriptions(args.topics, args.raw)
    symbols = tuple(args.symbols) if args.symbols else _stack_symbols(rd)
    header = Header(start_ns=time.time_ns(), wire_schema=wire.SCHEMA_VERSION, symbols=symbols,
                    meta={**header_exchange_info(rd, symbols), "tool": "aegis capture",
                          "host": socket.gethostname(), "pid": os.getpid(),
                          "run_dir": str(rd), "mode": cfg.mode, "endpoints": list(eps),
                          "topics": [p.decode() for p in prefixes], "raw": args.raw,
                          # how the stack sends entries: a replay sends them the same way
                          "entry_order": cfg.trading.entry_order,
                          "entry_slippage_bps": cfg.trading.entry_slippage_bps})
    try:
        writer = create_capture(args.out, header, overwrite=args.overwrite, fsync=args.fsync,
                                block_records=args.block_records, block_interval_ms=args.flush_ms)
    except FileExistsError:
        print(f"aegis capture: {args.out} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aegis capture: cannot create {args.out}: {exc}", file=sys.stderr)
        return 2
    stop = service.StopFlag()
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:  # signal handlers can only be set there (tests may call main in a thread)
        service.install_stop_handlers(stop)
    sock = zmqutil.sub(eps, prefixes)
    started = time.monotonic()
    print(f"aegis capture: recording {', '.join(eps)} -> {args.out} (Ctrl+C to stop)",
          file=sys.stderr, flush=True)
    if not args.raw:
        print(f"aegis capture: --no-raw: {args.out} will hold the stack's events without the raw WebSocket "
              "frames; aegis replay cannot play it", file=sys.stderr, flush=True)
    try:
        counts, skipped = record_stream(sock, writer, raw=args.raw, should_stop=stop.is_set,
                                        duration_s=args.duration)
    finally:
        writer.close()
        sock.close()
        if in_main:
            zmqutil.term()
    size = Path(args.out).stat().st_size
    print(f"aegis capture: {writer.records:,} records in {writer.blocks:,} blocks, {size:,} bytes "
          f"-> {args.out} in {time.monotonic() - started:.1f} s")
    print("\n".join(format_counts(counts)))
    if skipped:
        print(f"  ({skipped:,} raw.* frames skipped: --no-raw leaves them out)")
    if args.raw and not counts.get("raw"):
        print("  (no raw WebSocket frames arrived: no feed published any while this capture ran; the "
              "feed sends them from its next status tick, about a second, after a capture subscribes)")
    print("\n".join(what_it_is_for(args.out, counts.get("raw", 0), header.meta)))
    return 0


# ---------------------------------------------------------------------------- capture-info
def summarize(cap: Capture, name: str = "") -> dict[str, Any]:
    """Everything ``capture-info`` shows, read from the whole file (pure over ``cap``)."""
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    first = last = None
    records = 0
    problem: DecodeError | None = None
    try:
        for rec in cap.iter_records():
            records += 1
            first = rec.recv_ns if first is None else first
            last = rec.recv_ns
            counts[record_label(rec)] += 1
            kinds[KIND_NAMES[rec.kind]] += 1
            if rec.kind == KIND_ZMQ:
                try:
                    wire.decode(rec.frames)
                except DecodeError as exc:
                    rejected[exc.reason] += 1
    except DecodeError as exc:
        problem = exc
    verdict = "damaged" if problem else ("incomplete" if cap.index_missing else "ok")
    h = cap.header
    return {
        "file": name, "size_bytes": cap.size, "wire_schema": h.wire_schema,
        "symbols": list(h.symbols), "start_ns": h.start_ns, "meta": h.meta,
        "indexed": not cap.index_missing, "blocks": len(cap.blocks), "records": records,
        "first_ns": first, "last_ns": last,
        "span_s": 0.0 if first is None else (last - first) / 1e9,
        "counts": dict(sorted(counts.items())), "kinds": dict(kinds),
        "wire_rejected": dict(rejected), "verdict": verdict,
        "problem": None if problem is None else str(problem),
    }


def _iso(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")


def _short_meta(meta: Any) -> Any:
    """The header's meta for a human: the saved exchangeInfo as a count (--json has it all)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("exchange_info"), dict):
        return meta
    n = len(meta["exchange_info"].get("symbols") or ())
    return {**meta, "exchange_info": f"<{n} symbols' filters>"}


def format_info(s: dict[str, Any]) -> str:
    verdicts = {"ok": "ok (index present, every block checked)",
                "incomplete": "incomplete (no index: the writer did not close the file); "
                              "every complete block is intact",
                "damaged": f"DAMAGED: {s['problem']}"}
    out = [f"{s['file']}: {s['size_bytes']:,} bytes, wire schema {s['wire_schema']}, "
           f"started {_iso(s['start_ns'])}",
           f"symbols: {' '.join(s['symbols']) or '-'}",
           f"meta: {json.dumps(_short_meta(s['meta']), sort_keys=True, default=repr)}",
           f"index: {'present' if s['indexed'] else 'MISSING'}   blocks: {s['blocks']:,}"
           f"   records: {s['records']:,}",
           f"time span: {_iso(s['first_ns'])} .. {_iso(s['last_ns'])} ({s['span_s']:.3f} s)",
           "per topic:" + ("" if s["counts"] else " none")]
    out += format_counts(Counter(s["counts"]))
    if s["wire_rejected"]:
        out.append("frames wire.decode rejects: "
                   + ", ".join(f"{k} {v:,}" for k, v in sorted(s["wire_rejected"].items())))
    out.append(f"verdict: {verdicts[s['verdict']]}")
    out += what_it_is_for(s["file"], s["counts"].get("raw", 0), s["meta"])
    return "\n".join(out)


def info_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aegis capture-info",
                                description="header, blocks, counts and integrity of a capture")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    return p


def info_main(argv: list[str] | None = None) -> int:
    args = info_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if wrong := filekind.refusal(args.file, ("aegis_capture",), "an AEGIS capture"):
        print(f"aegis capture-info: {wrong}", file=sys.stderr)
        return 2
    try:
        with open_capture(args.file) as cap:
            summary = summarize(cap, args.file)
    except (OSError, DecodeError) as exc:
        print(f"aegis capture-info: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, default=repr))
    else:
        print(format_info(summary))
    return 1 if summary["verdict"] == "damaged" else 0
