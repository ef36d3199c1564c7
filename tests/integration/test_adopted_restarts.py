"""A position adopted at one start keeps its trade and its one stop across two restarts.

The local exchange runs on its own (``aegis exchange-sim``); a position is opened there by
hand (a client id AEGIS never makes, so the journal has no plan for it). The stack
(``aegis run --exchange URL``, a strategy that never enters) adopts it at start under
``adopted-<symbol>-<ms>`` and the exchange holds one protective stop for it (closePosition).
The stack is stopped and started again, twice: after each start the trade has the same
adopted id, the exchange holds exactly one open stop for the symbol (the same order), no
protective order was refused (Binance's -4130 for a second closePosition stop: no REJECTED
row, no -4130 in any log line), and the brain counts the position protected.
"""

from __future__ import annotations

import glob
import json
import signal
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.test_host_lost import http, rows, sim, start_stack, wait_for  # noqa: F401  (sim: the fixture)
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from venue.port import OrderSpec
from venue.ratelimit import Governor

pytestmark = pytest.mark.integration

SYMBOL = "D003USDT"  # a derived symbol of the sim (``--symbols 5``)
STRATEGY = f"{Path(__file__).with_name('quiet_strategy.py')}:Quiet"
START_WAIT_S = 120
STOP_WAIT_S = 40


def stop(p: subprocess.Popen, log) -> None:
    """Ctrl+C, as a user stops it; ended by its pid (the fixture kills it if this times out)."""
    p.send_signal(signal.SIGINT)
    p.wait(STOP_WAIT_S)
    log.close()


def brain_stats(run_dir: Path) -> dict:
    """The newest brain's stats file (one per incarnation), or {}."""
    files = sorted(glob.glob(str(run_dir / "stats" / "brain.*.json")), key=lambda f: Path(f).stat().st_mtime)
    if not files:
        return {}
    try:
        return json.loads(Path(files[-1]).read_text())
    except ValueError:  # written while read
        return {}


@pytest.mark.timeout(600)
def test_an_adopted_position_keeps_its_id_and_its_one_stop_across_two_restarts(tmp_path, procs, sim):  # noqa: F811
    """Adopted once, then two restarts: the same adopted id, one open closePosition stop at the
    exchange (the first one, never replaced, its target beside it), no refused protective
    order, counted protected."""
    db, run_dir = tmp_path / "data" / "aegis.sqlite3", tmp_path / "run"
    hand = CcxtBroker(CcxtConfig(base_url=f"http://127.0.0.1:{sim}", timeout_ms=5_000), governor=Governor(),
                      api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET)
    logs: list[Path] = []
    try:
        step = Decimal(next(f["stepSize"] for e in http(sim, "GET", "/fapi/v1/exchangeInfo")["symbols"]
                            if e["symbol"] == SYMBOL for f in e["filters"] if f["filterType"] == "LOT_SIZE"))
        mark = Decimal(http(sim, "GET", f"/fapi/v1/premiumIndex?symbol={SYMBOL}")["markPrice"])
        qty = (Decimal(50) / mark / step).to_integral_value() * step  # about 50 USDT
        hand.submit(OrderSpec(client_order_id="by-hand-1", symbol=SYMBOL, side="BUY", order_type="MARKET", qty=qty))
        held = next(p.qty for p in hand.positions() if p.symbol == SYMBOL)
        assert held == qty

        seen: list[tuple[str, list[str], int]] = []  # per start: adopted id, open stops, positions protected
        for n in range(3):
            tag = f"start-{n}"
            p, log = start_stack(procs, tmp_path, sim, tag, strategy=STRATEGY)
            logs.append(tmp_path / f"stack-{tag}.log")

            def adopted_and_protected():
                refused = rows(db, "SELECT client_algo_id, reason FROM algo_orders WHERE symbol=?"
                                   " AND state='REJECTED'", SYMBOL)
                assert refused == [], f"{tag}: a protective order was refused: {refused}"
                live = rows(db, "SELECT trade_id, client_algo_id FROM algo_orders WHERE symbol=? AND role='STOP'"
                                " AND state='LIVE'", SYMBOL)
                stats = brain_stats(run_dir).get("execution") or {}
                return live if live and stats.get("ready") and stats.get("positions_protected") == 1 else None

            live = wait_for(f"{tag}: the position adopted and protected", adopted_and_protected, START_WAIT_S, 0.5)
            at_exchange = hand.open_algo_orders(SYMBOL)
            stops = [a.client_algo_id for a in at_exchange if a.order_type == "STOP_MARKET" and a.close_position]
            stats = brain_stats(run_dir)["execution"]
            seen.append((live[0][0], stops, sorted(a.client_algo_id for a in at_exchange),
                         stats["positions_protected"]))
            assert [cid for _, cid in live] == stops, f"{tag}: the journal's live stop is the exchange's"
            assert stats["trader"].get("protection_rejected", 0) == 0
            stop(p, log)
        refused = rows(db, "SELECT client_algo_id, reason FROM algo_orders WHERE symbol=? AND state='REJECTED'", SYMBOL)
        position = next(p.qty for p in hand.positions() if p.symbol == SYMBOL)
    finally:
        hand.close()
    first_id, first_stops, first_open, _ = seen[0]
    assert first_id.startswith(f"adopted-{SYMBOL}-") and len(first_stops) == 1
    assert first_open == sorted([f"ps-{first_id}-1", f"pt-{first_id}-1"])  # its stop and its target
    assert seen == [(first_id, first_stops, first_open, 1)] * 3
    assert refused == [] and position == qty
    assert not [f.name for f in logs if "-4130" in f.read_text()]
