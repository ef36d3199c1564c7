"""``aegis capture`` against real publishers on ipc endpoints in a private run directory.

The publishers are ``bus.Publisher`` on XPUB sockets: an XPUB is a PUB that also hands us the
subscriptions it receives, so a test knows exactly when the capture has joined (PUB/SUB drops
everything sent before that) and can assert exact counts instead of "at least".
``aegis capture`` is not wired into ``common.cli`` yet, so it runs as
``python -c "from cli.capture import main; ..."``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import zmq

from common import bus, config, wire, zmqutil
from common import capture_file as cap
from cli.capture import info_main
from common.errors import DecodeError
from tests.conftest import REPO

pytestmark = pytest.mark.integration

CAPTURE = "import sys; from cli.capture import main; sys.exit(main(sys.argv[1:]))"
INFO = "import sys; from cli.capture import info_main; sys.exit(info_main(sys.argv[1:]))"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Pub:
    """A real Publisher on an XPUB socket bound at one of the stack's endpoints."""

    def __init__(self, service: str, endpoint: str) -> None:
        self.sock = zmqutil.context().socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, even a repeated one
        self.sock.bind(endpoint)
        self.publisher = bus.Publisher(service, self.sock)
        self.sent: list[tuple[list[bytes], wire.Envelope]] = []

    def wait_subscribed(self, prefixes: set[bytes], timeout_s: float = 20.0) -> None:
        """Block until a subscriber has subscribed to every prefix in ``prefixes``."""
        seen: set[bytes] = set()
        deadline = time.monotonic() + timeout_s
        while not prefixes <= seen:
            assert time.monotonic() < deadline, f"capture never subscribed: {seen} of {prefixes}"
            if self.sock.poll(100):
                msg = self.sock.recv()
                if msg[:1] == b"\x01":
                    seen.add(msg[1:])

    def send(self, body, event_ns: int) -> None:
        env = self.publisher.envelope(body, event_ns)
        frames = wire.encode(env)
        self.sock.send_multipart(frames)
        self.sent.append((frames, env))

    def send_raw(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def close(self) -> None:
        self.sock.close()


def candle(symbol: str, i: int) -> wire.CandleClosed:
    return wire.CandleClosed(symbol=symbol, interval_s=60, open_ms=i * 60_000,
                             close_ms=i * 60_000 + 59_999, open=100.0 + i, high=101.0 + i,
                             low=99.0 + i, close=100.5 + i, volume=3.0)


def tick(symbol: str, i: int) -> wire.TickUpdate:
    return wire.TickUpdate(symbol=symbol, event_ms=1_000 + i, last_price=50.0 + i, bid=49.0, ask=51.0)


@pytest.fixture
def stack(short_tmp):
    """Two publishers (feed and brain endpoints) of a private run directory."""
    rd = short_tmp / "run"
    rd.mkdir()
    eps = config.endpoints(rd)
    feed, brain = Pub("feed", eps.feed_pub), Pub("brain", eps.brain_pub)
    yield rd, feed, brain
    feed.close(), brain.close()
    zmqutil.term()


def start_capture(procs, rd: Path, out: Path, *args: str) -> subprocess.Popen:
    return procs.python("-c", CAPTURE, "--run-dir", str(rd), "--out", str(out), *args,
                        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)


def records_so_far(path: Path) -> int:
    """Records readable from a file still being written (an unfinished block is not counted)."""
    try:
        with cap.open_capture(path) as c:
            n = 0
            try:
                for _ in c.iter_records():
                    n += 1
            except DecodeError:
                pass
            return n
    except (OSError, DecodeError):
        return 0


def wait_records(path: Path, n: int, proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while records_so_far(path) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"only {records_so_far(path)} of {n} records"
        time.sleep(0.05)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


def printed_counts(stdout: str) -> dict[str, int]:
    """The '  topic   count' lines of the capture's final report."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if line.startswith("  ") and len(parts) == 2 and parts[1].replace(",", "").isdigit():
            out[parts[0]] = int(parts[1].replace(",", ""))
    return out


def test_capture_records_every_published_frame_exactly_until_sigterm(stack, procs):
    """Candles, ticks and heartbeats from two publishers: exact per-topic counts, frames
    byte-identical to what was sent, envelopes decoding to what was published, a closed file."""
    rd, feed, brain = stack
    out = rd.parent / "all.cap"
    proc = start_capture(procs, rd, out, "--flush-ms", "50", "--symbols", "BTCUSDT", "ETHUSDT")
    feed.wait_subscribed({b""})
    brain.wait_subscribed({b""})
    for i in range(300):
        brain.send(tick("BTCUSDT", i), 1_000 + i)
        if i % 10 == 0:
            brain.send(candle("ETHUSDT", i), 2_000 + i)
        if i % 100 == 0:
            feed.send(wire.Heartbeat(service="feed", pid=1, uptime_s=float(i)), 3_000 + i)
    total = len(feed.sent) + len(brain.sent)
    wait_records(out, total, proc)
    rc, stdout, stderr = stop(proc)
    assert rc == 0, stderr
    want = {"tick.BTCUSDT": 300, "candle.ETHUSDT": 30, "heartbeat.feed": 3}
    assert printed_counts(stdout) == want
    assert f"{total:,} records" in stdout

    with cap.open_capture(out) as c:
        assert c.index_missing is False and c.problem is None
        assert c.header.symbols == ("BTCUSDT", "ETHUSDT")
        assert c.header.wire_schema == wire.SCHEMA_VERSION
        assert c.header.meta["endpoints"] == list(config.endpoints(rd).publishers())
        recs = list(c.iter_records())
    assert all(r.kind == cap.KIND_ZMQ for r in recs)
    assert [r.recv_ns for r in recs] == sorted(r.recv_ns for r in recs)
    # per publisher the order is kept; between two publishers it is whatever arrived first
    for pub in (feed, brain):
        mine = [r for r in recs if wire.decode(r.frames).publisher == pub.publisher.name]
        assert [list(r.frames) for r in mine] == [frames for frames, _ in pub.sent]
        assert [wire.decode(r.frames) for r in mine] == [env for _, env in pub.sent]


def test_topic_prefixes_and_duration(stack, procs):
    """--topics candle. heartbeat. records only those; --duration ends the capture by itself."""
    rd, feed, brain = stack
    out = rd.parent / "some.cap"
    proc = start_capture(procs, rd, out, "--topics", "candle.", "heartbeat.", "--duration", "4",
                         "--flush-ms", "50")
    brain.wait_subscribed({b"candle.", b"heartbeat."})
    feed.wait_subscribed({b"candle.", b"heartbeat."})
    for i in range(50):
        brain.send(tick("BTCUSDT", i), 1_000 + i)
        brain.send(candle("BTCUSDT", i), 1_000 + i)
        feed.send(wire.FeedStatus(state="STREAMING"), 1_000 + i)
    brain.send(wire.Heartbeat(service="brain", pid=2, uptime_s=1.0), 5_000)
    wait_records(out, 51, proc)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert printed_counts(stdout) == {"candle.BTCUSDT": 50, "heartbeat.brain": 1}
    with cap.open_capture(out) as c:
        labels = Counter(cap.record_label(r) for r in c.iter_records())
        assert c.header.meta["topics"] == ["candle.", "heartbeat."]
    assert labels == {"candle.BTCUSDT": 50, "heartbeat.brain": 1}


def test_raw_frames_are_recorded_unless_no_raw(stack, procs):
    """raw.* messages (what the feed publishes) become raw WebSocket records by default and are
    skipped (and said so) with --no-raw; undecodable frames on other topics are kept as is."""
    rd, feed, _ = stack
    text = b'{"stream":"btcusdt@trade","data":{"e":"trade","p":"1"}}'
    outs = {}
    for flag in (None, "--no-raw"):
        out = rd.parent / f"raw{bool(flag)}.cap"
        proc = start_capture(procs, rd, out, "--flush-ms", "50", *([flag] if flag else []))
        feed.wait_subscribed({b""})
        feed.send_raw([b"raw.conn0", text])
        feed.send_raw([b"tick.BTCUSDT", b"\xc1 not msgpack"])
        wait_records(out, 1 if flag else 2, proc)
        rc, stdout, stderr = stop(proc, signal.SIGINT)
        assert rc == 0, stderr
        outs[flag] = (out, stdout)
    with cap.open_capture(outs[None][0]) as c:
        assert [(r.kind, r.frames) for r in c.iter_records()] == [
            (cap.KIND_WS_RAW, (text,)), (cap.KIND_ZMQ, (b"tick.BTCUSDT", b"\xc1 not msgpack"))]
        assert c.header.meta["raw"] is True
    assert printed_counts(outs[None][1]) == {"raw": 1, "tick.BTCUSDT": 1}
    assert printed_counts(outs["--no-raw"][1]) == {"tick.BTCUSDT": 1}
    assert "1 raw.* frames skipped" in outs["--no-raw"][1]
    # the file without raw frames says what it is for (no stack here: no symbol rules either)
    assert f"replay: no. {outs['--no-raw'][0]} holds no raw WebSocket frames" in outs["--no-raw"][1]
    assert "replay: yes if the symbol rules are found (1 raw WebSocket frames" in outs[None][1]


def test_capture_info_reports_counts_and_the_verdict(stack, procs, tmp_path):
    """capture-info on the capture: ok with exact counts; on a truncated copy: damaged, exit 1,
    with the records before the damage still counted; on a non-capture: exit 2."""
    rd, _, brain = stack
    out = rd.parent / "info.cap"
    proc = start_capture(procs, rd, out, "--flush-ms", "0", "--block-records", "10")
    brain.wait_subscribed({b""})
    for i in range(25):
        brain.send(candle("BTCUSDT", i), 1_000 + i)
    wait_records(out, 25, proc)
    rc, _, stderr = stop(proc)
    assert rc == 0, stderr
    info = subprocess.run([sys.executable, "-c", INFO, str(out), "--json"], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    s = json.loads(info.stdout)
    assert (s["verdict"], s["indexed"], s["records"], s["counts"]) == (
        "ok", True, 25, {"candle.BTCUSDT": 25})
    assert s["wire_rejected"] == {} and s["blocks"] >= 3

    with cap.open_capture(out) as c:
        third = c.blocks[2]
        before = sum(b.count for b in c.blocks[:2])
    cut = tmp_path / "cut.cap"
    cut.write_bytes(out.read_bytes()[:third.offset + 50])
    text = subprocess.run([sys.executable, "-c", INFO, str(cut)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 1
    assert f"records: {before}" in text.stdout
    assert f"verdict: DAMAGED: capture damaged at offset {third.offset}, block 2: truncated" in text.stdout

    (tmp_path / "not.cap").write_bytes(b"hello")
    assert info_main([str(tmp_path / "not.cap")]) == 2
    assert info_main([str(tmp_path / "missing.cap")]) == 2


def test_an_existing_file_is_not_replaced(stack, procs):
    """Capturing onto an existing file fails with exit 2 and leaves the file alone."""
    rd, _, _ = stack
    out = rd.parent / "exists.cap"
    out.write_bytes(b"precious")
    proc = start_capture(procs, rd, out, "--duration", "1")
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "exists" in stderr
    assert out.read_bytes() == b"precious"
