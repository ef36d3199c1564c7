"""Real Binance USD-M frames for the benchmarks, and the same frames fanned out to N symbols.

Source: the hftbacktest BTCUSDT capture (2024-08-08; one ``<recv ns> <raw json>`` a line).
The hot set is what the live feed subscribes to (``trade`` + ``bookTicker``: every frame a
tick). For many symbols, frame ``k`` of the fanned-out stream is base frame ``k // N`` with
its symbol renamed to the ``k % N``-th name (``BTCUSDT``, ``D001USDT``, ...): every symbol
sees the real stream in order, so ids still increase per symbol and the decoder's sequence
checks see what they would see live. Receive times stay the capture's (the firewall judges
event times against them).
"""

from __future__ import annotations

from pathlib import Path

from bench.harness import REPO
from services.feed import raw_capture

CAPTURES = (REPO / "services" / "exchange_sim" / "data" / "hftbacktest_btcusdt_20240808.gz",)
HOT_MARKERS = (b'"e":"trade"', b'"e":"bookTicker"')


def capture_path() -> Path:
    for p in CAPTURES:
        if p.exists():
            return p
    raise FileNotFoundError(f"no capture at any of {[str(p) for p in CAPTURES]}")


def load_all() -> list[tuple[int | None, bytes]]:
    """Every frame of the capture, as (capture recv ns, raw bytes)."""
    return list(raw_capture.iter_capture(capture_path()))


def hot(frames: list[tuple[int | None, bytes]]) -> list[tuple[int | None, bytes]]:
    """Only trade and bookTicker frames (each becomes one ring record)."""
    return [f for f in frames if any(m in f[1][:64] for m in HOT_MARKERS)]


def symbol_names(n: int) -> list[str]:
    """The real symbol first, then derived names as the demo uses them."""
    return ["BTCUSDT"] + [f"D{i:03d}USDT" for i in range(1, n)]


def fan_out(base: list[tuple[int | None, bytes]], n_symbols: int,
            count: int) -> tuple[list[bytes], list[int]]:
    """``count`` frames over ``n_symbols`` symbols; returns (frames, capture recv ns)."""
    upper = [s.encode() for s in symbol_names(n_symbols)]
    lower = [s.lower().encode() for s in symbol_names(n_symbols)]
    frames: list[bytes] = []
    recvs: list[int] = []
    append_f, append_r = frames.append, recvs.append
    nb = len(base)
    for k in range(count):
        b, j = divmod(k, n_symbols)
        recv, raw = base[b % nb]
        if j:
            raw = raw.replace(b"btcusdt", lower[j], 1).replace(b"BTCUSDT", upper[j], 1)
        append_f(raw)
        append_r(recv or 0)
    return frames, recvs
