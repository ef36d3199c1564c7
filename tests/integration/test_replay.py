"""aegis replay end to end, against the golden capture (a real 240 s `make run` demo recorded
with `aegis run --capture`): the decisions are byte-identical to the golden file, they are
the decisions the recorded live run made, and a cut capture stops at the cut.

Regenerate the golden decisions on purpose (after a change that should change decisions):

    make golden

Re-record the capture itself (a new live run; its decisions then become the new golden):
see docs/replay.md, "The golden fixture".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common import wire
from common.capture_file import KIND_WS_RAW, KIND_ZMQ, CaptureDecodeError, open_capture

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
CAPTURE = GOLDEN / "demo_240s.aegiscap"
DECISIONS = GOLDEN / "demo_240s.decisions.jsonl"
TIMEOUT_S = 180


def replay(procs, tmp: Path, capture: Path, *extra: str) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env["AEGIS_DATA_DIR"] = str(tmp / "var")
    p = procs.start([sys.executable, "-m", "common.cli", "replay", str(capture), "--workdir", str(tmp / "work"),
                     "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO))
    out, err = p.communicate(timeout=TIMEOUT_S)
    result = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    return p.returncode, result, err.decode()


def live_decisions(capture: Path) -> tuple[dict[str, wire.SignalGenerated], dict[str, wire.OrderRequest]]:
    """What the recorded live brain published: its signals and order requests, from the capture."""
    sigs, orders = {}, {}
    with open_capture(capture) as cap:
        for rec in cap.iter_records():
            if rec.kind == KIND_ZMQ and rec.frames[0].startswith((b"signal.", b"order_request.")):
                b = wire.decode(rec.frames).body
                if isinstance(b, wire.SignalGenerated):
                    sigs[b.signal_id] = b
                else:
                    orders[b.client_order_id] = b
    return sigs, orders


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    """One replay of the golden capture, shared by the tests below (each replay takes ~10 s)."""
    from tests.conftest import Procs

    procs = Procs()
    tmp = tmp_path_factory.mktemp("replay")
    try:
        code, result, err = replay(procs, tmp, CAPTURE, "--report", str(tmp / "report"))
    finally:
        procs.end_all()
    return tmp, code, result, err


def test_replay_matches_the_golden_decisions_byte_for_byte(golden_run):
    tmp, code, result, err = golden_run
    assert code == 0, err
    assert result["frames"] == result["frames_in_capture"] == 9_600 and result["error"] == ""
    assert result["decisions"] == {"signal": 9, "order": 3, "fill": 3, "trade": 0, "risk_reject": 0}
    assert (tmp / "work" / "decisions.jsonl").read_bytes() == DECISIONS.read_bytes()
    assert result["restarts"] == {"orchestrator": 0, "brain": 0, "feed": 0}


def test_replay_reproduces_the_recorded_live_runs_decisions(golden_run):
    """The live brain's signals (every field) and orders (id, side, quantity) == the replay's."""
    tmp, code, _, err = golden_run
    assert code == 0, err
    live_sigs, live_orders = live_decisions(CAPTURE)
    got = [json.loads(line) for line in (tmp / "work" / "decisions.jsonl").read_text().splitlines()]
    sigs = {d["signal_id"]: d for d in got if d["type"] == "signal"}
    orders = {d["client_order_id"]: d for d in got if d["type"] == "order"}
    assert set(sigs) == set(live_sigs) and len(sigs) == 9
    for sid, s in live_sigs.items():
        r = sigs[sid]
        assert (r["symbol"], r["side"], r["entry"], r["stop"], r["target"], r["confidence"], bool(r["cold"]),
                r["strategy"], r["features"]) == (s.symbol, s.side, s.entry, s.stop, s.target, s.confidence,
                                                  s.cold, s.strategy, s.features)
    assert {k: (o.symbol, o.side, o.qty, o.signal_id) for k, o in live_orders.items()} == \
        {k: (o["symbol"], o["side"], o["qty"], o["signal_id"]) for k, o in orders.items()}


def test_replay_writes_the_report(golden_run):
    """--report writes the page, the summary with the golden counts, a trades.csv with its
    header and no row (the three positions are still open), and both pictures at their sizes."""
    tmp, code, _, err = golden_run
    assert code == 0, err
    rep = tmp / "report"
    assert (rep / "index.html").read_text().startswith('<!doctype html>\n<html lang="en">')
    summary = json.loads((rep / "summary.json").read_text())
    assert summary["counts"] == {"signals": 9, "orders": 3, "fills": 3, "risk_rejects": 0, "positions_open": 3}
    assert (rep / "trades.csv").read_text().splitlines() == [
        "trade_id,symbol,side,qty,entry_price,exit_price,stop,target,opened_ms,closed_ms,opened_utc,closed_utc,"
        "holding_s,pnl,fees,outcome_r,exit_reason,confidence,learned,funding,slippage_bps,net_pnl"]
    for name, (width, height) in (("equity.png", (1000, 600)), ("latency.png", (1000, 320))):
        png = (rep / name).read_bytes()
        assert (png[:8], png[12:16], png[16:20], png[20:24]) == (
            b"\x89PNG\r\n\x1a\n", b"IHDR", width.to_bytes(4, "big"), height.to_bytes(4, "big")), name


def test_a_cut_capture_stops_at_the_cut_with_everything_before_it(procs, short_tmp):
    """Cut inside a block at 90% of the file: exit 1, the error names the damaged block's
    offset, every raw frame of the complete blocks before it (6,680, counted here with the
    capture reader) became a tick, and each kind of decision made before the cut is the
    golden one (a prefix of the golden file's lines of that kind: 6 of the 9 signals)."""
    data = CAPTURE.read_bytes()
    cut = short_tmp / "cut.aegiscap"
    cut.write_bytes(data[: int(len(data) * 0.9)])
    frames_before, damaged_at = 0, None
    with open_capture(cut) as cap:
        try:
            for rec in cap.iter_records():
                frames_before += rec.kind == KIND_WS_RAW
        except CaptureDecodeError as exc:
            damaged_at = exc.offset
    assert (frames_before, damaged_at) == (6_680, 2_631_506)
    code, result, err = replay(procs, short_tmp, cut)
    assert code == 1, err
    assert result["error"] == ("capture damaged at offset 2631506, block 173: truncated block: "
                               "3865 payload bytes announced, 2597 present")
    assert result["error_offset"] == damaged_at
    assert result["ticks"] == result["frames"] == result["frames_in_capture"] == frames_before
    got = (short_tmp / "work" / "decisions.jsonl").read_text().splitlines()
    golden = DECISIONS.read_text().splitlines()
    assert result["decisions"] == {"signal": 6, "order": 3, "fill": 3, "trade": 0, "risk_reject": 0}
    for kind in ("signal", "order", "fill"):
        mine = [line for line in got if f'"type":"{kind}"' in line]
        assert mine == [line for line in golden if f'"type":"{kind}"' in line][: len(mine)], kind


def feed_stats(d: Path) -> dict:
    (f,) = d.glob("feed.*.json")
    return json.loads(f.read_text())


def test_run_with_capture_then_replay_gives_the_same_ticks(procs, short_tmp):
    """`aegis run --capture` records every raw frame the feed received (none lost at the
    start, none at the stop), and the replay's feed accepts exactly what the live one did."""
    cap = short_tmp / "live.aegiscap"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env.update(AEGIS_RUN_DIR=str(short_tmp / "run"), AEGIS_DATA_DIR=str(short_tmp / "var"),
               AEGIS_SIM__SYMBOLS="3", AEGIS_SIM__SOURCE="ticks")  # dense real ticks (default: candles)
    p = procs.start([sys.executable, "-m", "common.cli", "run", "--duration", "12", "--no-status",
                     "--summary-json", str(short_tmp / "live.json"), "--capture", str(cap),
                     "--stats-out", str(short_tmp / "live_stats")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=str(REPO))
    _, err = p.communicate(timeout=TIMEOUT_S)
    assert p.returncode == 0, err.decode()[-2000:]
    live = feed_stats(short_tmp / "live_stats")
    assert live["ticks_written"] > 1_000 and live["pub_dropped"] == 0
    with open_capture(cap) as c:
        assert c.header.meta["exchange_info"]["symbols"] and not c.index_missing
    code, result, err = replay(procs, short_tmp, cap)
    assert code == 0, err
    rep = feed_stats(short_tmp / "work" / "stats")
    assert result["frames"] == live["frames_received"]
    assert result["ticks"] == rep["ticks_written"] == live["ticks_written"]
    for key in ("accepted", "rejected", "duplicates", "gaps"):
        assert rep[key] == live[key], key


def test_a_capture_of_a_running_stack_replays_with_no_flag(procs, short_tmp):
    """`aegis capture --out F` of a plain `aegis run` stack (feed.publish_raw off): the feed
    sends its raw frames while the capture subscribes, the header carries the exchange's symbol
    rules, and `aegis replay F` with no other flag plays every frame; once the capture has
    left, the feed sends raw frames no more."""
    from tests.conftest import stack_env
    from tests.integration.test_supervisor import ready_pid

    env = stack_env(short_tmp, AEGIS_SIM__SYMBOLS="3")
    sup = procs.python("-m", "common.cli", "run", "--duration", "120", "--no-status", cwd=str(REPO), env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = short_tmp / "run"
    feed = ready_pid(run, "feed")
    cap = short_tmp / "stack.aegiscap"
    c = procs.python("-m", "common.cli", "capture", "--out", str(cap), "--duration", "6", cwd=str(REPO),
                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = c.communicate(timeout=60)
    assert c.returncode == 0, err.decode()
    with open_capture(cap) as f:
        meta = f.header.meta
        raw = sum(1 for r in f.iter_records() if r.kind != KIND_ZMQ)
    assert meta["raw"] is True and meta["exchange_info_source"] == "exchange"
    assert sorted(e["symbol"] for e in meta["exchange_info"]["symbols"]) == ["BTCUSDT", "D001USDT", "D002USDT"]
    assert raw > 1_000  # the tick capture: about 4,500 frames a second, from the feed's next status tick
    assert f"replay: yes ({raw:,} raw WebSocket frames, symbol rules from the exchange): aegis replay {cap}" \
        in out.decode()
    deadline = time.monotonic() + 10  # the capture left: the next status tick turns raw frames off
    while feed_stats(run / "stats")["publish_raw"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert feed_stats(run / "stats")["publish_raw"] is False and feed_stats(run / "stats")["pid"] == feed
    sup.send_signal(signal.SIGINT)
    assert sup.wait(60) == 0
    code, result, err = replay(procs, short_tmp, cap)
    assert code == 0, err
    assert result["frames"] == result["frames_in_capture"] == raw
    assert result["ticks"] == raw and result["error"] == ""  # each trade or bookTicker frame is one tick


def test_pub_plays_the_captured_zeromq_stream_into_any_subscriber(procs, short_tmp):
    """`aegis replay --pub`: a test subscribes and receives the recorded live brain's signals
    and order requests, frame for frame, in order."""
    import zmq

    endpoint = f"ipc://{short_tmp}/replay.pub"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVTIMEO, 20_000)
        sub.connect(endpoint)
        p = procs.start([sys.executable, "-m", "common.cli", "replay", str(CAPTURE), "--pub", endpoint,
                         "--topics", "signal.", "order_request.", "--wait", "1.5", "--json"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO))
        want = []
        with open_capture(CAPTURE) as cap:
            for rec in cap.iter_records():
                if rec.kind == KIND_ZMQ and rec.frames[0].startswith((b"signal.", b"order_request.")):
                    want.append(list(rec.frames))
        got = [sub.recv_multipart() for _ in want]
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
        assert got == want and len(want) == 12
        assert json.loads(out)["messages"] == 12
    finally:
        sub.close(0)
        ctx.term()
