"""Section 2: the feed's decode path, all in (decode + firewall + sequence + ring write),
against plain JSON parsers on the same real frames, in one process pinned to one core.

Contenders, each timed over the whole hot set (trade + bookTicker frames of the real
capture, every one a tick) once per pass, passes interleaved:

- ``json.loads``, ``orjson.loads``, ``msgspec.json.decode``: parse only, nothing checked,
  nothing written: the floor any Python feed starts from;
- ``msgspec typed``: our tagged-union Struct decode alone (types checked, values not);
- ``orjson + fields + ring``: what a hand-written feed without a firewall would do: parse,
  pick the fields, float() the prices, publish to the ring;
- ``aegis decode``: ``Decoder.decode`` (typed decode, firewall, sequencing), no ring;
- ``aegis python path``: the feed's sink (``services.feed.sink.Feed.on_frame``: decode,
  firewall, sequencing, ring write, counters) with the C fast lane off: what every frame costs
  where the C extension is not built, and what a frame the lane declines costs;
- ``aegis all-in``: the same sink as the feed runs it, the C fast lane on (in-order trade and
  bookTicker frames parsed, checked, sequenced and written in one C call).

A fresh sink (or ``Decoder``) per pass: its sequence state would call every frame of a second
pass a duplicate (and skip the ring write).
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from typing import Any, Callable

import msgspec
import orjson

from bench import frames as fr
from bench.harness import Children, log, producer_cpu, summarize
from common.config import AegisConfig
from common.ring import Ring
from services.feed import schema, sequencer
from services.feed.sink import Feed

SYMBOLS = {"BTCUSDT": 0}
RING_CAPACITY = 1 << 17  # no reader: the writer laps freely, exactly as it never blocks live


def _parse_only(loads: Callable) -> Callable:
    def run(frames, w) -> int:
        for _, raw in frames:
            loads(raw)
        return len(frames)
    return run


def _typed(frames, w) -> int:
    dec = schema.decode_wrapped  # the codec's own schema: the decode its fast path does
    for _, raw in frames:
        try:
            dec(raw)
        except msgspec.DecodeError:
            pass
    return len(frames)


def _orjson_fields_ring(frames, w) -> int:
    loads, pub, f = orjson.loads, w.publish, float
    for recv, raw in frames:
        d = loads(raw)["data"]
        e = d["e"]
        if e == "trade":
            pub(0, 1, 1 if d["m"] else 0, recv, d["T"], d["t"], f(d["p"]), f(d["q"]), 0.0, 0.0)
        elif e == "bookTicker":
            pub(0, 3, 0, recv, d["E"], d["u"], f(d["b"]), f(d["B"]), f(d["a"]), f(d["A"]))
    return len(frames)


def _aegis_decode(frames, w) -> int:
    dec = sequencer.Decoder(SYMBOLS).decode
    for recv, raw in frames:
        dec(raw, recv)
    return len(frames)


_RING: list[Ring] = []  # the ring of this run (set by _measure): each sink registers its symbol


def _sink(lane: bool) -> Callable:
    def run(frames, w) -> int:
        feed = Feed(AegisConfig(), _RING[0], list(SYMBOLS), lane=lane)
        on_frame = feed.on_frame
        for recv, raw in frames:
            on_frame(raw, recv)
        return feed.written
    return run


CONTENDERS: dict[str, tuple[str, Callable, str]] = {
    "json_loads": ("json.loads (parse only)", _parse_only(json.loads), "hot"),
    "orjson_loads": ("orjson.loads (parse only)", _parse_only(orjson.loads), "hot"),
    "msgspec_loads": ("msgspec.json.decode, untyped (parse only)", _parse_only(msgspec.json.decode), "hot"),
    "msgspec_typed": ("msgspec typed Structs (types checked, no firewall)", _typed, "hot"),
    "orjson_fields_ring": ("orjson + fields + float() + ring publish, no firewall",
                           _orjson_fields_ring, "hot"),
    "aegis_decode": ("AEGIS Decoder.decode (typed + firewall + sequence), no ring", _aegis_decode, "hot"),
    "aegis_python_path": ("AEGIS feed sink, C fast lane off (decode + firewall + sequence + ring + counters)",
                          _sink(False), "hot"),
    "aegis_all_in": ("AEGIS feed sink as it runs: C fast lane + ring write (+ Python path for the rest)",
                     _sink(True), "hot"),
    "aegis_all_in_all_frames": ("AEGIS feed sink over every frame (incl. depth diffs)", _sink(True), "all"),
}


def _measure(passes: int, frac: float) -> dict[str, Any]:
    """Runs in a pinned child: every contender once per pass."""
    every = fr.load_all()
    sets = {"all": every, "hot": fr.hot(every)}
    if frac < 1.0:
        sets = {k: v[: int(len(v) * frac)] for k, v in sets.items()}
    tmp = tempfile.mkdtemp(prefix="agb-feed-", dir="/dev/shm")
    ring = Ring.create(f"{tmp}/feed.ring", RING_CAPACITY)
    _RING[:] = [ring]
    try:
        w = ring.writer()
        for _, fn, which in CONTENDERS.values():  # warm: caches, numba kernels, float memo
            fn(sets[which][:2000], w)
        runs: dict[str, list[float]] = {k: [] for k in CONTENDERS}
        ticks: dict[str, int] = {}
        names = list(CONTENDERS)
        for p in range(passes):
            order = names[p % len(names):] + names[: p % len(names)]
            for name in order:
                _, fn, which = CONTENDERS[name]
                data = sets[which]
                gc.collect()
                t = time.perf_counter()
                ticks[name] = fn(data, w)
                s = time.perf_counter() - t
                runs[name].append(len(data) / s)
        return {"runs": runs, "ticks": ticks, "frames": {k: len(v) for k, v in sets.items()}}
    finally:
        ring.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run(*, quick: bool, repeats: int) -> dict[str, Any]:
    passes = max(2, repeats) if quick else max(5, repeats)
    with Children() as ch:
        r = ch.start("feed-decode", _measure, passes, 0.3 if quick else 1.0,
                     cpu=producer_cpu()).result(600)
    out: dict[str, Any] = {}
    for name, (desc, _, which) in CONTENDERS.items():
        s = summarize(r["runs"][name])
        out[name] = {"desc": desc, "frames": r["frames"][which], "frames_per_s": s,
                     "ns_per_frame": 1e9 / s["median"], "ring_writes": r["ticks"].get(name)}
        log(f"  feed {name:26s} {s['median'] / 1e3:8.0f}k frames/s  {1e9 / s['median']:7.0f} ns/frame"
            f"  (spread {s['spread_pct']:.0f} %)")
    return {"contenders": out, "config": {"passes": passes, "set": "hot = trade + bookTicker frames",
                                          "capture": fr.capture_path().name}}


def headline(sec: dict[str, Any]) -> dict[str, float]:
    c = sec["contenders"]
    return {"aegis_frames_per_s": c["aegis_all_in"]["frames_per_s"]["median"],
            "json_loads_frames_per_s": c["json_loads"]["frames_per_s"]["median"]}
