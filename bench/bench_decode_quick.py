"""Quick decode benchmark: frames/s through the feed's decoder vs plain JSON parsing, same run.

Frames: the real hftbacktest capture (93,954 Binance USD-M messages: trades, book tickers,
depth diffs, one REST snapshot), held in memory as bytes. Two sets: every frame, and the
hot set the live feed subscribes to (``trade`` + ``bookTicker``, 87,402 frames).

Contenders, each the best of a few passes over the set:
- ``json.loads`` / ``orjson.loads`` alone, and each + dict access: the fields a ring record
  needs, prices through float(), no validation at all (the floor for a dict-based decoder);
- ``msgspec typed``: our tagged-union Struct decode alone (types checked, values not);
- ``codec.decode``: the whole thing (typed decode + firewall + Result);
- ``Decoder.decode``: plus sequencing (gaps, duplicates);
- ``decode_generic``: the reference path the fast path is tested against.

Prints numbers and returns them as a dict (``run()``) for the bench harness; asserts nothing.

    .venv/bin/python bench/bench_decode_quick.py
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from services.feed import codec, raw_capture, schema, sequencer  # noqa: E402

CAPTURES = (REPO / "services" / "exchange_sim" / "data" / "hftbacktest_btcusdt_20240808.gz",)
PASSES = 3
SYMBOLS = {"BTCUSDT": 0}


def load_frames() -> list[tuple[int | None, bytes]]:
    path = next(p for p in CAPTURES if p.exists())
    return list(raw_capture.iter_capture(path))


def _dict_access(loads):
    """A decoder that only parses and reads what a ring record needs: the floor."""
    def run(frames):
        f = float
        for _, raw in frames:
            o = loads(raw)
            d = o.get("data", o)
            e = d.get("e")
            if e == "trade":
                (d["s"], d["t"], f(d["p"]), f(d["q"]), d["T"], d["m"])
            elif e == "bookTicker":
                (d["s"], d["u"], f(d["b"]), f(d["B"]), f(d["a"]), f(d["A"]), d["E"])
    return run


def _only(fn):
    def run(frames):
        for _, raw in frames:
            fn(raw)
    return run


def _typed(frames):
    dec = schema.decode_wrapped
    for _, raw in frames:
        try:
            dec(raw)
        except Exception:  # noqa: BLE001 - the one unwrapped REST snapshot
            pass


def _codec_decode(frames):
    dec = codec.decode
    for recv, raw in frames:
        dec(raw, recv, SYMBOLS)


def _decoder(frames):
    dec = sequencer.Decoder(SYMBOLS).decode
    for recv, raw in frames:
        dec(raw, recv)


def _generic(frames):
    dec = codec.decode_generic
    for recv, raw in frames:
        dec(raw, recv, SYMBOLS)


CONTENDERS = {
    "json.loads": _only(json.loads),
    "json.loads + dict access": _dict_access(json.loads),
    "orjson.loads": _only(orjson.loads),
    "orjson.loads + dict access": _dict_access(orjson.loads),
    "msgspec typed (no checks)": _typed,
    "codec.decode": _codec_decode,
    "Decoder.decode (+ sequence)": _decoder,
    "decode_generic (reference)": _generic,
}


def _best_s(fn, frames) -> float:
    best = 1e9
    for _ in range(PASSES):
        gc.collect()
        t = time.perf_counter()
        fn(frames)
        best = min(best, time.perf_counter() - t)
    return best


def run() -> dict[str, float]:
    frames = load_frames()
    hot = [f for f in frames if b'"e":"trade"' in f[1][:60] or b'"e":"bookTicker"' in f[1][:60]]
    results: dict[str, float] = {"frames_all": len(frames), "frames_hot": len(hot)}
    for set_name, subset in (("hot", hot), ("all", frames)):
        for name, fn in CONTENDERS.items():
            s = _best_s(fn, subset)
            results[f"{set_name}: {name} ns/frame"] = 1e9 * s / len(subset)
        base = results[f"{set_name}: orjson.loads ns/frame"]
        results[f"{set_name}: codec.decode / orjson.loads"] = (
            results[f"{set_name}: codec.decode ns/frame"] / base)
    return results


def main() -> None:
    r = run()
    print(f"decode quick bench: hftbacktest BTCUSDT capture, {r['frames_all']:,} frames "
          f"({r['frames_hot']:,} trade + bookTicker), best of {PASSES}")
    for k, v in r.items():
        if k.startswith("frames_"):
            continue
        if k.endswith("ns/frame"):
            print(f"  {k:44s} {v:>9,.0f} ns  {1e9 / v:>12,.0f} frames/s")
        else:
            print(f"  {k:44s} {v:>9.2f}x")


if __name__ == "__main__":
    main()
