"""``python -m bench --quick`` end to end: every headline figure of issue 8 is produced.

Correctness only: the numbers depend on the machine, so nothing here asserts a speed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

HEADLINE = {
    "ring": ("aegis_per_record", "aegis_batch", "mp_queue", "faster_fifo", "zmq_per_tick",
             "zmq_batch", "naive_ring"),
    "feed": ("aegis_frames_per_s", "json_loads_frames_per_s"),
    "brain": ("ticks_per_s_300_symbols",),
    "e2e": ("max_rate", "p50_us_at_100k", "p99_us_at_100k", "drops_at_100k"),
    "replay": ("ticks_per_s",),  # issue 7's figure, beside issue 8's
    "orders": ("orders", *(f"{path}_{fig}_{q}_us" for path in ("ws", "rest")  # issue 17's order entry
                           for fig in ("wire", "submit", "cancel") for q in ("p50", "p99"))),
    # issue 17's tick to trade, the WebSocket-API path and the REST path side by side
    "tick_to_trade": ("exit_p50_us", "exit_p99_us", "entry_p50_us", "fill_known_p50_us", "orders"),
    "tick_to_trade_rest": ("exit_p50_us", "exit_p99_us", "entry_p50_us", "fill_known_p50_us", "orders"),
    # issue 17's running stack: aegis run's own feed->brain latency at two tick rates
    "live": tuple(f"{rate}_{k}" for rate in ("ticks", "candles") for k in ("ticks_per_s", "p50_us", "p99_us")),
    # issue 18: backtest engines side by side, the SMC figures, streaming memory
    "backtest": ("aegis_ema_bars_per_s", "aegis_shell_ema_bars_per_s", "plain_loop_bars_per_s",
                 "nautilus_bars_per_s", "backtrader_bars_per_s", "smc_candles_per_s", "smc_shell_candles_per_s",
                 "smc_update_p50_us", "stream_peak_rss_mib", "stream_symbols"),
}
# backtest contenders a machine may lack (the section then says why in its "unavailable")
OPTIONAL_ENGINES = {"nautilus_bars_per_s": "nautilus_trader", "backtrader_bars_per_s": "backtrader"}
# headline keys the section writes as null because it does not measure them yet (said in RESULTS.md)
NOT_MEASURED_YET: set[tuple[str, str]] = set()


@pytest.mark.timeout(420)
def test_quick_bench_writes_every_headline_key_as_a_finite_number(short_tmp):
    """The quick suite runs every section and its latest.json carries the headline object
    with exactly the nested keys issue 8 names, each a finite number (faster-fifo may be
    missing on a machine where it cannot be installed: then the results say why), and the
    end-to-end headline is exactly what its section measured (drops: a whole count)."""
    out = short_tmp / "bench"
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-4000:]
    latest = json.loads((out / "latest.json").read_text())
    stamped = [f for f in out.glob("*.json") if f.name != "latest.json"]
    assert len(stamped) == 1 and json.loads(stamped[0].read_text()) == latest
    head = latest["headline"]
    assert set(head) == set(HEADLINE)
    unavailable = latest["sections"]["ring"].get("unavailable", {})
    for section, key in NOT_MEASURED_YET:
        assert head[section][key] is None, (section, key)
    for section, keys in HEADLINE.items():
        for key in keys:
            v = head[section][key]
            if v is None and section == "ring" and key in unavailable:
                assert unavailable[key].startswith("unavailable: ")
                continue
            if v is None and section == "backtest" and key in OPTIONAL_ENGINES:
                assert latest["sections"]["backtest"]["unavailable"][OPTIONAL_ENGINES[key]]
                continue
            assert isinstance(v, (int, float)) and math.isfinite(v), (section, key, v)
    ring = latest["sections"]["e2e"]["pipelines"]["ring"]
    at_100k = ring["paced"]["100000"]
    assert head["e2e"] == {"max_rate": float(ring["search"]["max_rate"]),
                           "p50_us_at_100k": at_100k["p50"]["median"],
                           "p99_us_at_100k": at_100k["p99"]["median"],
                           "drops_at_100k": max(at_100k["drops"]["values"])}
    assert float(head["e2e"]["drops_at_100k"]).is_integer()
    for field in ("cpu", "cores", "python", "numpy", "numba", "pyzmq"):
        assert latest["machine"][field], field
    assert latest["mode"] == "quick"
    md = (out / "RESULTS.md").read_text()
    for title in ("## 1. Ring", "## 2. Feed decode", "## 3. Brain", "## 4. End to end",
                  "## 5. Memory", "## 6. Replay", "## 7. Order entry", "## 8. The running stack",
                  "## 9. Backtest", "## Targets of issue 8", "## Machine"):
        assert title in md, title
    assert "Failed:" not in md
