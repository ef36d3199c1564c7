"""A local copy of the archive's layout, built from the real data in the repository, and a
small HTTP server for it on 127.0.0.1: ``aegis data download`` without the internet (tests,
benchmarks, trying the command).

What it serves, under ``data/futures/um/``, each zip with its ``.CHECKSUM``:

- ``klines/BTCUSDT/1m/``: monthly and daily files built from
  ``services/exchange_sim/data/BTCUSDT_1m_2024-12.csv`` (41,761 real Binance **spot**
  BTCUSDT 1m candles, 2024-11-30 23:00 .. 2024-12-29 23:00 UTC; see that folder's README
  and licence). The file has no taker-buy columns: they are written as 0.
- ``aggTrades/BTCUSDT/``: 2024-08-08 (daily and monthly), one row per real USD-M trade of
  ``hftbacktest_btcusdt_20240808.gz`` (the ``btcusdt@trade`` messages of 23:54-23:59 UTC;
  an aggTrade of one trade: first = last trade id).

Files are laid out exactly as Binance names them, with the header row newer archive files
have. The archive has no file for days or months outside that data: those answer 404.

    python -m research.localarchive --root DIR [--port 8765]   # build DIR and serve it
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.server
import json
import threading
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from research.archive import ArchiveFile, Period, day_of, month_of
from research.kinds import kind_spec

SIM_DATA = Path(__file__).resolve().parents[1] / "services" / "exchange_sim" / "data"
BTC_1M_CSV = SIM_DATA / "BTCUSDT_1m_2024-12.csv"
HFT_CAPTURE = SIM_DATA / "hftbacktest_btcusdt_20240808.gz"
MINUTE_MS = 60_000


def header(kind: str) -> str:
    return ",".join(c.name for c in kind_spec(kind).columns)


def kline_rows(path: Path = BTC_1M_CSV) -> list[tuple[int, str]]:
    """(open time ms, archive kline CSV line) for each candle of the sim's 1m file.

    Its ``close_datetime`` is the close with a +01:00 offset; open = close + 1 ms - 1 min."""
    out = []
    with open(path) as f:
        head = f.readline().strip().split(",")
        col = {name: i for i, name in enumerate(head)}
        for line in f:
            c = line.strip().split(",")
            close_ms = round(datetime.fromisoformat(c[col["close_datetime"]]).timestamp() * 1000)
            open_ms = close_ms + 1 - MINUTE_MS
            out.append((open_ms, ",".join([
                str(open_ms), c[col["open"]], c[col["high"]], c[col["low"]], c[col["close"]],
                c[col["volume"]], str(open_ms + MINUTE_MS - 1), c[col["quote_volume"]], c[col["trades"]],
                "0", "0", "0"])))
    return out


def agg_trade_rows(path: Path = HFT_CAPTURE) -> list[tuple[int, str]]:
    """(trade time ms, archive aggTrades CSV line) for each trade message of the capture."""
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            _, _, raw = line.partition(" ")
            if '"e":"trade"' not in raw:
                continue
            msg = json.loads(raw)
            d = msg.get("data", msg)
            if d.get("e") != "trade":
                continue
            out.append((int(d["T"]), f"{d['t']},{d['p']},{d['q']},{d['t']},{d['t']},{d['T']},"
                                     f"{'true' if d['m'] else 'false'}"))
    return out


def write_zip(root: Path, f: ArchiveFile, text: str) -> Path:
    """Write ``f`` (a zip holding one CSV of ``text``) and its CHECKSUM under ``root``."""
    path = root / f.path
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f.name[:-4] + ".csv", text)
    write_checksum(path)
    return path


def write_checksum(path: Path, sha256: str | None = None) -> None:
    digest = sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}\n")


def write_periods(root: Path, *, kind: str, symbol: str, interval: str | None,
                  rows: list[tuple[int, str]], monthly: bool = True, daily: bool = True) -> list[Path]:
    """The monthly and daily files of ``rows`` (sorted by time), with a header row."""
    by_month: dict[Period, list[str]] = defaultdict(list)
    by_day: dict[Period, list[str]] = defaultdict(list)
    for t, line in rows:
        by_month[month_of(t)].append(line)
        by_day[day_of(t)].append(line)
    written = []
    groups = ([by_month] if monthly else []) + ([by_day] if daily else [])
    for group in groups:
        for period, lines in sorted(group.items()):
            f = ArchiveFile(kind=kind, symbol=symbol, interval=interval, period=period)
            written.append(write_zip(root, f, header(kind) + "\n" + "\n".join(lines) + "\n"))
    return written


def build_archive(root: Path) -> Path:
    """The local archive of the repository's real data (see the module docstring)."""
    write_periods(root, kind="klines", symbol="BTCUSDT", interval="1m", rows=kline_rows())
    write_periods(root, kind="aggTrades", symbol="BTCUSDT", interval=None, rows=agg_trade_rows())
    return root


class ArchiveHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the archive folder; records each path asked for; can be told to misbehave.

    ``server.faults[path]``: "drop" sends half the body then closes the connection (a
    transfer cut short), "503" answers HTTP 503. Each fault fires ``server.fault_times``
    times per path (default: every time)."""

    server: ArchiveServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        with self.server.lock:
            self.server.requests.append(path)
            fault = self.server.faults.get(path)
            if fault is not None:
                left = self.server.fault_left.get(path, self.server.fault_times)
                if left == 0:
                    fault = None
                else:
                    self.server.fault_left[path] = left - 1
        if fault == "503":
            self.send_error(503, "unavailable")
            return
        if fault == "drop":
            body = (Path(self.directory) / path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()
        if (Path(self.directory) / path.lstrip("/")).is_file():
            with self.server.lock:
                self.server.served.append(path)  # the whole body was written

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


class ArchiveServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root
        self.requests: list[str] = []
        self.served: list[str] = []  # paths whose whole file was sent
        self.faults: dict[str, str] = {}
        self.fault_times = -1  # -1: every time
        self.fault_left: dict[str, int] = {}
        self.lock = threading.Lock()
        super().__init__((host, port), lambda *a: ArchiveHandler(*a, directory=str(root)))

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def zip_requests(self) -> list[str]:
        """The zip files asked for (not their CHECKSUMs), in order."""
        with self.lock:
            return [p for p in self.requests if p.endswith(".zip")]

    def zips_served(self) -> list[str]:
        """The zip files sent whole, in order."""
        with self.lock:
            return [p for p in self.served if p.endswith(".zip")]


@contextmanager
def serving(root: Path, port: int = 0) -> Iterator[ArchiveServer]:
    """Serve ``root`` on 127.0.0.1 in a thread; stopped and closed on exit."""
    server = ArchiveServer(root, port=port)
    thread = threading.Thread(target=server.serve_forever, name="archive-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.localarchive", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="folder to build the archive in")
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args(argv)
    root = build_archive(Path(args.root))
    with serving(root, port=args.port) as server:
        print(f"serving {root} at {server.base_url} (Ctrl+C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
