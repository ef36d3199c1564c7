"""What kind of file a command was given, and which command reads it.

Every command that takes a file reads a single kind. Given another kind, it must not read
it as its own (``aegis decode`` once counted an AEGIS capture as 9,178 ``not_utf8`` frames
and exited 0): ``refusal`` recognises the kinds AEGIS writes or reads by their first bytes
and returns the one line to print, naming the command that reads that file. A file of no
kind known here is left to the command itself (its own checks say what is wrong with it).

The caller prints the line with its own name and exits 2, as for any other bad input.
``sniff`` is pure over the first bytes (``HEAD_BYTES`` of them, decompressed when gzip);
``kind_of`` reads them from a path.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

HEAD_BYTES = 64 * 1024  # enough for a long first line (a depth frame is a few kB)
GZIP_MAGIC = b"\x1f\x8b"
SQLITE_MAGIC = b"SQLite format 3\x00"
CAPTURE_MAGIC = b"AEGISCAP"  # common.capture_file.MAGIC (not imported: this module stays a leaf)
DECISION_TYPES = frozenset({"signal", "order", "fill", "trade", "risk_reject"})
CANDLE_COLUMNS = ("open", "high", "low", "close")

# kind -> (what it is, which command reads it; FILE stands for the file's name)
KINDS: dict[str, tuple[str, str]] = {
    "aegis_capture": ("an AEGIS capture (written by aegis capture or aegis run --capture)",
                      "aegis replay FILE or aegis capture-info FILE"),
    "sqlite": ("an SQLite database (a run's database: <data dir>/aegis.sqlite3)",
               "aegis report --db FILE --out DIR"),
    "raw_frames": ("a file of raw WebSocket frames, one a line",
                   "aegis decode FILE (or python -m services.exchange_sim --capture FILE)"),
    "candle_csv": ("a candle CSV (open, high, low, close columns)",
                   "aegis smc FILE --out OUT.csv or python -m services.brain.model_eval --candles FILE"),
    "exchange_info": ("a saved exchangeInfo body (symbol rules)", "aegis replay CAPTURE --exchange-info FILE"),
    "decisions": ("a decision stream of aegis replay (JSON lines of signals, orders, fills)",
                  "a JSON-lines reader such as jq"),
}


def sniff(head: bytes) -> str | None:
    """The kind of a file that starts with ``head`` (already decompressed), None if unknown."""
    if head.startswith(CAPTURE_MAGIC):
        return "aegis_capture"
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    text = head.lstrip(b"\xef\xbb\xbf")  # a UTF-8 byte order mark (spreadsheets write one)
    first = next((ln.strip() for ln in text.split(b"\n") if ln.strip()), b"")
    if not first:
        return None
    cells = [c.strip().strip(b'"').lower() for c in first.split(b",")]
    if all(c.encode() in cells for c in CANDLE_COLUMNS):
        return "candle_csv"
    return _json_kind(first, text)


def _json_kind(first: bytes, text: bytes) -> str | None:
    line = first
    head, sep, rest = first.partition(b" ")
    if sep and head.isdigit() and len(head) <= 20:  # "<recv ns> <frame>" (hftbacktest's lines)
        line = rest
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
        if text.lstrip()[:1] == b"{" and b'"symbols"' in text and b'"filters"' in text:
            return "exchange_info"  # pretty-printed: the first line alone is not JSON
    if not isinstance(obj, dict):
        return None
    if "stream" in obj or "e" in obj or ("result" in obj and "id" in obj):
        return "raw_frames"
    if isinstance(obj.get("symbols"), list):
        return "exchange_info"
    if obj.get("type") in DECISION_TYPES:
        return "decisions"
    return None


def kind_of(path: str | Path) -> str | None:
    """The kind of the file at ``path``; None when unknown or unreadable (the command's own
    reading then reports the error as it always did)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
        if head.startswith(GZIP_MAGIC):
            with gzip.open(path, "rb") as g:
                head = g.read(HEAD_BYTES)
    except (OSError, EOFError, zlib.error):
        return None
    return sniff(head)


def refusal(path: str | Path, accepts: tuple[str, ...], wanted: str) -> str | None:
    """Why a command that reads ``wanted`` (e.g. "raw WebSocket frames") refuses ``path``:
    it is a known kind other than ``accepts``, said with the command that reads it. None when
    the file is of an accepted kind, of no known kind, or unreadable."""
    kind = kind_of(path)
    if kind is None or kind in accepts:
        return None
    what, reader = KINDS[kind]
    return f"{path} is {what}, not {wanted}: read it with {reader.replace('FILE', str(path))}"
