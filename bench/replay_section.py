"""Replay throughput (issue 7): ``aegis replay --max`` through the real stack, ticks/s.

The capture is built here from the real hftbacktest BTCUSDT frames fanned out to 300 symbols
(``bench.frames``; trade + bookTicker, so every frame is one tick), written as raw WebSocket
records with their capture receive times. Each repeat runs the whole ``aegis replay``
(supervisor, orchestrator, brain, feed in replay mode) and reads the replay's own figure:
ticks committed to the ring divided by the time from the first frame to the brain having
read the last batch (start-up and shutdown excluded). The feed commits batches of at most
``replay.chunk`` ticks and waits for the brain to read each one (lock-step, which is what
makes a replay deterministic); the same run's end-to-end section gives the live pipeline's
maximum sustainable rate to compare with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import frames
from bench.harness import REPO, log, summarize
from common.capture_file import KIND_WS_RAW, Header, create_capture

SYMBOLS = 300
# real exchangeInfo symbol entries (BTCUSDT among them), see tests/data/SOURCES.md
EXCHANGE_INFO = REPO / "tests" / "data" / "binance_usdm" / "exchangeInfo_symbols_ccxt.json"


def write_capture(path: Path, count: int) -> int:
    base = frames.hot(frames.load_all())
    raw, recvs = frames.fan_out(base, SYMBOLS, count)
    info = {"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "filters": []}]}
    if EXCHANGE_INFO.exists():
        info = json.loads(EXCHANGE_INFO.read_text())
    last = 0
    with create_capture(path, Header(start_ns=recvs[0], symbols=tuple(frames.symbol_names(SYMBOLS)),
                                     meta={"tool": "bench", "exchange_info": info})) as w:
        for r, ns in zip(raw, recvs):
            last = max(last, ns)
            w.append(last, (r,), KIND_WS_RAW)
    return len(raw)


def replay_once(cap: Path, work: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env["AEGIS_TRADING__ENABLED"] = "false"  # fanned-out frames have no history: nothing to trade
    p = subprocess.run([sys.executable, "-m", "common.cli", "replay", str(cap), "--max", "--json",
                        "--workdir", str(work)], capture_output=True, env=env, cwd=str(REPO), timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"aegis replay exited {p.returncode}: {p.stderr.decode()[-1500:]}")
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def run(*, quick: bool, repeats: int) -> dict[str, Any]:
    count = 30_000 if quick else 300_000
    runs = []
    with tempfile.TemporaryDirectory(prefix="aegis-bench-replay-") as d:
        cap = Path(d) / "fanned.aegiscap"
        n = write_capture(cap, count)
        for i in range(repeats):
            res = replay_once(cap, Path(d) / "work")
            if res["ticks"] != n:
                raise RuntimeError(f"replay lost ticks: {res['ticks']} of {n}")
            runs.append(res)
            log(f"[replay] repeat {i + 1}/{repeats}: {res['ticks']:,} ticks in {res['replay_s']} s "
                f"= {res['ticks_per_s']:,} ticks/s ({res['batches']:,} lock-step batches)")
    return {"config": {"frames": n, "symbols": SYMBOLS, "repeats": repeats},
            "ticks_per_s": summarize([r["ticks_per_s"] for r in runs]),
            "batches": runs[-1]["batches"], "ticks": runs[-1]["ticks"]}


def headline(sec: dict[str, Any]) -> dict[str, float]:
    return {"ticks_per_s": sec["ticks_per_s"]["median"]}
