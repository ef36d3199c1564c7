"""Capture files: read recorded raw frames and summarise what the decoder makes of them.

A capture holds one raw WebSocket message a line, exactly as received, optionally
prefixed by the local receive time in ns and one space (hftbacktest's format:
``1723161255088169167 {"stream":...}``). Gzip is detected by its magic bytes, not by the
file name. Blank lines are skipped.

``summarize_capture`` is the whole of ``aegis decode FILE``: it runs every line through
``sequencer.Decoder`` (receive time as the reference clock where a line has one, else each
stream's own previous event time) and counts the outcome.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from common.records import SYMBOL_NAME_BYTES
from services.feed import codec, sequencer

GZIP_MAGIC = b"\x1f\x8b"
MAX_RECV_DIGITS = 20  # ns since the epoch has 19 digits until the year 2286
GAP_SAMPLES = 10  # gaps listed in a summary (all are counted)


def _open(path: str | Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def split_line(line: bytes) -> tuple[int | None, bytes]:
    """``b"<recv ns> <raw>"`` -> (recv ns, raw); a line without the prefix -> (None, line)."""
    head, sep, rest = line.partition(b" ")
    if sep and 0 < len(head) <= MAX_RECV_DIGITS and head.isdigit():
        return int(head), rest
    return None, line


def iter_capture(path: str | Path) -> Iterator[tuple[int | None, bytes]]:
    """Yield ``(recv_ns or None, raw frame)`` for every non-blank line of a capture file."""
    with _open(path) as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield split_line(line)


class AutoSymbols(dict):
    """A symbol table that gives every plausible symbol name the next id on first sight.

    A capture brings its own symbols; anything that could not be a symbol name (empty,
    too long for the ring's table, whitespace or control characters) stays unknown.
    """

    def get(self, key: object, default: object = None) -> object:  # type: ignore[override]
        sid = dict.get(self, key)
        if sid is None:
            if not (type(key) is str and 0 < len(key) <= SYMBOL_NAME_BYTES
                    and key.isprintable() and not any(c.isspace() for c in key)):
                return default
            sid = self[key] = len(self)
        return sid


def summarize_capture(path: str | Path, symbols: Mapping[str, int] | None = None) -> dict:
    """Decode every line of a capture; return the counts ``aegis decode --json`` prints.

    ``accepted`` counts by event type (Binance's ``e``, plus ``depthSnapshot``,
    ``openInterest``, ``control``, ``controlError``), ``rejected`` by reason, ``by_symbol``
    accepted events per symbol and type; ``gaps`` and ``duplicates`` come from the
    sequencer (``gap_samples`` lists the first few gaps as [symbol, stream, expected, got]).
    """
    decoder = sequencer.Decoder(AutoSymbols() if symbols is None else symbols)
    accepted: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    by_symbol: dict[str, Counter[str]] = {}
    gap_samples: list[list] = []
    lines = ticks = gaps = duplicates = closed = with_recv = 0
    for recv_ns, raw in iter_capture(path):
        lines += 1
        if recv_ns is not None:
            with_recv += 1
        res = decoder.decode(raw, recv_ns)
        status = res.status
        if status == codec.REJECTED:
            rejected[res.reason or "?"] += 1
            continue
        if status == codec.DUPLICATE:
            duplicates += 1
            continue
        event = res.event or "?"
        accepted[event] += 1
        if res.symbol is not None:
            by_symbol.setdefault(res.symbol, Counter())[event] += 1
        if status == codec.TICK:
            ticks += 1
        elif event == "kline" and res.detail.closed:
            closed += 1
        if res.gap is not None:
            gaps += 1
            if len(gap_samples) < GAP_SAMPLES:
                g = res.gap
                gap_samples.append([g.symbol, g.stream, g.expected, g.got])
    return {
        "file": str(path),
        "lines": lines,
        "clock": "recv" if with_recv == lines else ("stream" if with_recv == 0 else "mixed"),
        "accepted": dict(sorted(accepted.items())),
        "rejected": dict(sorted(rejected.items())),
        "ticks": ticks,
        "klines_closed": closed,
        "gaps": gaps,
        "duplicates": duplicates,
        "gap_samples": gap_samples,
        "by_symbol": {s: dict(sorted(c.items())) for s, c in sorted(by_symbol.items())},
    }
