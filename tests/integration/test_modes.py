"""Paper and live modes, run whole, against the local sim standing in for Binance.

Paper and live talk to Binance by default (wss://fstream.binance.com, https://fapi.binance.com).
Here every URL points at ``services/exchange_sim`` on 127.0.0.1 (``feed.ws_url``,
``feed.rest_url``) and the feed uses Binance production's routed paths (``feed.ws_routing =
on``: book streams on /public, the others on /market), which the sim serves with Binance's
rule, so a stream on the wrong path would stay silent and the test would see it. Nothing here
reaches the network beyond loopback.

- paper: no keys; the market from the "exchange", orders filled by the paper broker inside
  the brain; nothing signed reaches the exchange, and there is no reconciliation.
- live: a known fake key pair (the sim checks every signature with it) and the explicit
  confirmation; orders would go to the exchange through ccxt, reconciliation runs against it,
  and the key never appears in any log line.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, stack_env
from tests.integration.test_feed_faults import SimProc

pytestmark = pytest.mark.integration

FAKE_KEY = "aegisFAKEmodesKey00000000000000000000000000000000000000000000000"
FAKE_SECRET = "aegisFAKEmodesSecret1111111111111111111111111111111111111111111"
DURATION_S = 15
# exchangeInfo asked once per start, by the feed: the brain's filters, the paper broker's and
# ccxt's markets come from the rules the feed publishes (before: 3 per start in both modes)
EXCHANGE_INFO_FETCHES = 1


def run_mode(procs, tmp: Path, mode: str, sim: SimProc, **env_extra: str) -> tuple[dict, dict, str]:
    """``aegis run --mode MODE`` for DURATION_S: (summary, final stats by service, stderr)."""
    summary, stats_dir = tmp / "s.json", tmp / "stats"
    env = stack_env(tmp, AEGIS_FEED__WS_URL=f"ws://127.0.0.1:{sim.port}",
                    AEGIS_FEED__REST_URL=f"http://127.0.0.1:{sim.port}", AEGIS_FEED__WS_ROUTING="on",
                    AEGIS_FEED__MAX_SYMBOLS="4", AEGIS_LOG__LEVEL="info", **env_extra)
    env.pop("BINANCE_API_KEY", None)
    env.pop("BINANCE_API_SECRET", None)
    env.update({k: v for k, v in env_extra.items() if k.startswith("BINANCE_")})
    p = procs.python("-m", "common.cli", "run", "--mode", mode, "--duration", str(DURATION_S),
                     "--summary-json", str(summary), "--stats-out", str(stats_dir), "--no-status",
                     cwd=REPO, env=env, stderr=open(tmp / "stderr.log", "w"))
    code = p.wait(timeout=DURATION_S + 120)
    log = (tmp / "stderr.log").read_text()
    assert code == 0, log[-4000:]
    stats = {}
    for f in stats_dir.glob("*.json"):
        doc = json.loads(f.read_text())
        stats.setdefault(doc.get("service", f.stem.split(".")[0]), doc)
    return json.loads(summary.read_text()), stats, log


def sim_get(sim: SimProc, path: str) -> dict:
    with urllib.request.urlopen(sim.url(path), timeout=5) as r:
        return json.loads(r.read())


def assert_routed_feed(s: dict, feed: dict, sim: SimProc) -> None:
    """Both routed paths delivered: trades (on /market) and quotes (on /public) reached the
    ring, nothing lost, and no stream was asked for on the wrong path."""
    routes = sorted((c["route"], c["streams"]) for c in feed["connection_detail"])
    assert routes == [("market", 4), ("public", 4)], routes
    assert all(c["frames"] > 0 for c in feed["connection_detail"]), feed["connection_detail"]
    assert set(feed["accepted"]) == {"trade", "bookTicker"} and min(feed["accepted"].values()) > 0, feed["accepted"]
    assert s["ticks_written"] > 100 and s["ticks_lost"] == 0 and s["ticks_read"] == s["ticks_written"], s
    assert sim.stats()["unrouted_streams"] == 0


def test_paper_mode_trades_on_paper_against_the_exchange_market(procs, short_tmp):
    sim = SimProc(procs, short_tmp / "sim.log", symbols=4, speed=4.0)
    s, stats, log = run_mode(procs, short_tmp, "paper", sim)
    assert s["mode"] == "paper"
    assert s["restarts"] == {"orchestrator": 0, "feed": 0, "brain": 0, "dashboard": 0}, s["restarts"]  # no sim child
    assert_routed_feed(s, stats["feed"], sim)
    assert "broker=paper" in log or '"broker": "paper"' in log, log[-3000:]
    assert "reconcile" not in stats["orchestrator"]  # a paper account lives in the brain
    # the exchange saw no signed request: no order, no account call
    assert sim_get(sim, "/_sim/orders") == []
    assert sim.stats()["http_requests"]["/fapi/v1/exchangeInfo"] == EXCHANGE_INFO_FETCHES


def test_live_mode_with_keys_and_confirmation_trades_through_ccxt_and_reconciles(procs, short_tmp):
    keys = {"BINANCE_API_KEY": FAKE_KEY, "BINANCE_API_SECRET": FAKE_SECRET}
    sim = SimProc(procs, short_tmp / "sim.log", symbols=4, speed=4.0, env=stack_env(short_tmp, **keys))
    s, stats, log = run_mode(procs, short_tmp, "live", sim, AEGIS_TRADING__LIVE_CONFIRM="1",
                             AEGIS_TRADING__RECONCILE_INTERVAL_S="5", **keys)
    assert s["mode"] == "live"
    assert_routed_feed(s, stats["feed"], sim)
    assert "broker=ccxt" in log or '"broker": "ccxt"' in log, log[-3000:]
    rec = stats["orchestrator"]["reconcile"]  # signed calls the "exchange" accepted
    assert rec["reconcile_runs"] >= 2 and rec["reconcile_failures"] == 0, rec
    assert rec["reconcile_trading_allowed"] == 1.0, rec
    assert sim.stats()["http_requests"]["/fapi/v1/exchangeInfo"] == EXCHANGE_INFO_FETCHES
    assert FAKE_KEY not in log and FAKE_SECRET not in log
    assert FAKE_KEY not in (short_tmp / "sim.log").read_text()
