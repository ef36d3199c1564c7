"""``aegis decode FILE [--json]``: run a capture through the decoder and firewall, print counts.

A table for people by default; with ``--json`` one JSON object (``raw_capture.summarize_capture``)
on stdout, for scripts. Exit status 0 when the file was read (rejections are findings, not
failures), 2 when it could not be (missing, unreadable, corrupt gzip) or is a file of another
kind (an AEGIS capture, a database, a candle CSV: ``common.filekind`` names its reader).
"""

from __future__ import annotations

import argparse
import sys
import zlib

import orjson

from common import filekind
from services.feed.raw_capture import summarize_capture


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aegis decode",
                                description="decode + validate a capture file, print counts")
    p.add_argument("file", help="capture: one raw message a line, optionally '<recv ns> <raw>', "
                                "gzip or plain")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def format_table(summary: dict) -> str:
    """The summary as aligned text."""
    out = [f"{summary['file']}: {summary['lines']} lines, clock {summary['clock']}, "
           f"{summary['ticks']} ring ticks"]

    def section(title: str, counts: dict) -> None:
        out.append(f"{title}:" + ("" if counts else " none"))
        width = max((len(k) for k in counts), default=0)
        out.extend(f"  {k:<{width}}  {v:>10,}" for k, v in counts.items())

    section("accepted", summary["accepted"])
    section("rejected", summary["rejected"])
    out.append(f"closed klines: {summary['klines_closed']:,}")
    out.append(f"gaps: {summary['gaps']:,}   duplicates: {summary['duplicates']:,}")
    out.extend(f"  gap {s} {stream}: expected {e}, got {g}"
               for s, stream, e, g in summary["gap_samples"])
    section("by symbol", {s: sum(c.values()) for s, c in summary["by_symbol"].items()})
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    wrong = filekind.refusal(args.file, ("raw_frames",), "raw WebSocket frames")
    if wrong:
        print(f"aegis decode: {wrong}", file=sys.stderr)
        return 2
    try:
        summary = summarize_capture(args.file)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        print(f"aegis decode: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        print(format_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
