"""Host lost: positions stay protected by the exchange while every process of the stack is dead.

The local exchange runs on its own (``aegis exchange-sim``), the stack points at it
(``aegis run --exchange URL``), as a real deployment points at Binance. Once positions are
open with their exchange-held stops, every process of the stack is SIGKILLed (supervisor,
children, warm spares); the exchange keeps running. One symbol's price is pushed through its
stop, another's through its target: the exchange closes both by itself. The stack is started
again on the same database: the two trades are closed with the exchange's fills and learned,
their slots are free, the third position is still protected, and nothing was sent twice.

The three positions come from a deterministic strategy (``host_lost_strategy``: a long entry
on three listed symbols at their next candle) instead of waiting minutes of replay for SMC
setups: the entries still go through the stack's own path (signal, risk, journal, order,
exchange-held stop and target), only sooner and always on the same symbols.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import REPO, stack_env
from tests.integration import host_lost_strategy

pytestmark = pytest.mark.integration

OPEN_WAIT_S = 120  # three positions: start-up plus one candle (2 s at 30x)
SETTLE_WAIT_S = 180
STRATEGY = f"{Path(__file__).with_name('host_lost_strategy.py')}:EnterListed"


def http(port: int, method: str, path: str, body: dict | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def rows(db: Path, sql: str, *args) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (services, warm spares and the replacements they
    forked: the supervisor adopts those as child subreaper). By parent pid, from /proc: the
    services rename themselves (setproctitle), so their command lines say nothing."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def wait_for(what: str, fn, timeout_s: float, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)


@pytest.fixture
def sim(tmp_path, procs):
    """The local exchange alone, on a free port, with its account in a state file."""
    p = procs.python("-m", "services.exchange_sim", "--port", "0", "--speed", "30", "--symbols", "5",
                     "--state-file", str(tmp_path / "sim-account.json"), cwd=REPO,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = None
    for line in p.stdout:  # type: ignore[union-attr]
        if line.startswith("PORT "):
            port = int(line.split()[1])
            break
    assert port, "the exchange did not say its port"
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()  # keep the pipe drained
    yield port


def start_stack(procs, tmp_path: Path, port: int, tag: str, strategy: str = STRATEGY):
    """``aegis run`` against the exchange on ``port`` with ``strategy``, its log in
    ``stack-<tag>.log``: the candles demo's market, little history (the tests' strategies need none)."""
    env = stack_env(tmp_path, AEGIS_SIM__SOURCE="candles", AEGIS_FEED__HYDRATE_CANDLES="30",
                    AEGIS_STRATEGY__PATH=strategy)
    log = open(tmp_path / f"stack-{tag}.log", "w")  # noqa: SIM115 - closed with the process
    p = procs.python("-m", "common.cli", "run", "--exchange", f"http://127.0.0.1:{port}", "--no-status",
                     "--log-format", "json", cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return p, log


def test_positions_closed_by_the_exchange_while_the_host_was_down_are_learned_after_restart(tmp_path, procs, sim):
    """Stop and target hit at the exchange while no process of the stack lives: after the
    restart both trades are closed as STOP and TARGET and learned, the third keeps its stop,
    no order id or fill is recorded twice and every exchange fill is in the database."""
    db = tmp_path / "data" / "aegis.sqlite3"
    stack, log = start_stack(procs, tmp_path, sim, "first")

    def protected() -> list[tuple]:
        live = rows(db, "SELECT symbol, role, client_algo_id, trigger_price FROM algo_orders WHERE state='LIVE'")
        by_symbol: dict[str, dict[str, tuple]] = {}
        for symbol, role, cid, trig in live:
            by_symbol.setdefault(symbol, {})[role] = (cid, trig)
        full = [(s, r["STOP"], r["TARGET"]) for s, r in sorted(by_symbol.items()) if "STOP" in r and "TARGET" in r]
        return full if len(full) >= 3 else []

    three = wait_for("three positions with exchange-held stop and target", protected, OPEN_WAIT_S)
    assert [s for s, _, _ in three] == sorted(host_lost_strategy.SYMBOLS)
    orders_before = rows(db, "SELECT client_order_id FROM orders")

    # ---- the host is lost: every process of the stack dies at once (spares included)
    doomed = descendants(stack.pid)
    assert len(doomed) >= 4  # the supervisor and its three services at least
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    stack.wait(10)
    log.close()
    wait_for("no process of the stack left", lambda: not alive(doomed) or None, 15, 0.2)

    # ---- the market moves through one stop and one target; only the exchange is there
    (s_stop, stop, _), (s_target, _, target), (s_held, held_stop, _) = three
    positions = {p["symbol"]: Decimal(p["positionAmt"]) for p in http(sim, "GET", "/_sim/account")["positions"]}
    long_stop = positions[s_stop] > 0
    push_stop = Decimal(stop[1]) * (Decimal("0.99") if long_stop else Decimal("1.01"))
    long_target = positions[s_target] > 0
    push_target = Decimal(target[1]) * (Decimal("1.01") if long_target else Decimal("0.99"))
    ticks = {e["symbol"]: Decimal(next(f["tickSize"] for f in e["filters"] if f["filterType"] == "PRICE_FILTER"))
             for e in http(sim, "GET", "/fapi/v1/exchangeInfo")["symbols"]}

    def on_grid(sym: str, price: Decimal) -> str:
        return format((price / ticks[sym]).to_integral_value() * ticks[sym], "f")

    http(sim, "POST", "/_sim/price", {"symbol": s_stop, "price": on_grid(s_stop, push_stop)})
    http(sim, "POST", "/_sim/price", {"symbol": s_target, "price": on_grid(s_target, push_target)})

    def closed_at_exchange():
        pos = {p["symbol"]: Decimal(p["positionAmt"]) for p in http(sim, "GET", "/_sim/account")["positions"]}
        return pos.get(s_stop, Decimal(0)) == 0 and pos.get(s_target, Decimal(0)) == 0 and pos.get(s_held)
    wait_for("the exchange to close two positions by itself", closed_at_exchange, 30, 0.5)

    # ---- the stack comes back on the same database
    stack2, log2 = start_stack(procs, tmp_path, sim, "second")
    try:
        def learned():
            got = rows(db, "SELECT symbol, exit_reason, learned FROM trades WHERE symbol IN (?, ?) ORDER BY symbol",
                       s_stop, s_target)
            return got if len(got) == 2 else []
        closed = wait_for("both trades closed and learned", learned, SETTLE_WAIT_S)
        assert {(s, reason, learned) for s, reason, learned in closed} == {(s_stop, "STOP", 1), (s_target, "TARGET", 1)}
        # the third position: still protected, by the same stop the exchange held all along
        live = rows(db, "SELECT client_algo_id FROM algo_orders WHERE symbol=? AND role='STOP' AND state='LIVE'", s_held)
        assert live == [(held_stop[0],)]
        # nothing sent twice: no second order under any client id, one fill row per trade id
        orders_after = rows(db, "SELECT client_order_id FROM orders")
        assert len(orders_after) == len(set(orders_after))
        assert set(orders_before) <= set(orders_after)
        fills = rows(db, "SELECT symbol, trade_id FROM fills")
        assert len(fills) == len(set(fills))
        # every fill the exchange made for the two closed symbols is in the database, once
        sim_fills = {(t["symbol"], str(t["id"])) for t in http(sim, "GET", "/_sim/trades")
                     if t["symbol"] in (s_stop, s_target)}
        assert sim_fills <= set(fills)
    finally:
        stack2.send_signal(signal.SIGINT)
        try:
            stack2.wait(30)
        except subprocess.TimeoutExpired:
            pass
        log2.close()
