"""Reconciliation's repairs reach the running brain, on 127.0.0.1 against the local exchange.

The brain's execution shell is running (ccxt broker, dispatcher, intent log, exchange-held
protection) when two positions appear at the exchange behind its back: one from an ``ae-``
order of ours it never heard of (as if its intent record were lost), one from a manual order
under someone else's id. The running shell does not see either by itself (it applies the
exchange's positions to the trades it holds, and holds none). The orchestrator's
reconciliation, run for real against the same exchange and an empty journal, adopts both in
the journal and says so in one ``wire.Reconciled``; given that message the shell reads the
positions again, adopts each once at the exchange's size, protects each with an exchange-held
stop, sends no order, and never reuses the adopted order id. The same message again changes
nothing."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import ROUND_UP, Decimal
from typing import Any

import pytest

from common import wire
from services.brain import dispatcher as dsp
from services.brain import execution, intent_log
from services.orchestrator import db, snapshots
from services.orchestrator.reconcile_diff import diff, for_brain
from tests.integration.intent_crash_brain import CFG, SYMBOL, quote_from, run_until
from tests.integration.sim_thread import exchange_in_thread
from venue import filters as filters_mod
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from venue.port import OrderSpec
from venue.ratelimit import Governor
from tests.fake_host import FnHost

pytestmark = pytest.mark.integration

OURS = "ae-lostr-0"  # an entry of ours the running brain never heard of
OTHER = "D001USDT"  # the second symbol the exchange lists: a manual position there


@pytest.fixture
def exchange():
    with exchange_in_thread(SYMBOL) as base:
        yield base


def broker_for(base: str) -> CcxtBroker:
    return CcxtBroker(CcxtConfig(base_url=base, timeout_ms=5_000), governor=Governor(), api_key=DEMO_API_KEY,
                      api_secret=DEMO_API_SECRET)


def qty_for(f: Any, price: Decimal) -> Decimal:
    """The smallest quantity on the step grid worth at least 110 USDT (above any min notional)."""
    steps = (Decimal(110) / price / f.step_size).to_integral_value(ROUND_UP)
    return max(steps * f.step_size, f.min_qty)


def reconcile_once(broker: CcxtBroker, conn: Any, symbols: list[str]):
    """One reconciliation run the way the orchestrator's worker and loop do it, its repairs
    written to the journal's tables; returns the report."""
    clock_ms = lambda: time.time_ns() // 1_000_000  # noqa: E731
    now = clock_ms()
    loc = snapshots.local_snapshot(conn, now)
    ex = snapshots.fetch_exchange_snapshot(broker, loc, symbols, now, 3_600_000, clock_ms=clock_ms,
                                           history_since_ms=snapshots.history_since(loc, now, 3_600_000))
    report = diff(snapshots.local_snapshot(conn, clock_ms()), ex, now_ms=clock_ms())
    now_ns = time.time_ns()
    db.write_batch(conn, [r for i, b in enumerate(report.repairs) for r in db.rows_for(
        wire.Envelope(wire.SCHEMA_VERSION, "orchestrator:reconcile", i + 1, now_ns, now_ns, b))])
    return report


@pytest.mark.timeout(120)
def test_positions_reconciliation_adopted_behind_the_brains_back_are_adopted_once_and_protected(
        exchange, tmp_path):
    """Both positions are found by reconciliation, told to the running shell in one message,
    adopted there at the exchange's sizes with a STOP_MARKET closePosition each, no order
    submitted, the adopted id used; the same message again adds nothing."""
    outside = broker_for(exchange)
    broker, disp = broker_for(exchange), dsp.Dispatcher(2, name="reconciled-dispatch")
    submitted: list[str] = []
    real_submit = broker.submit
    broker.submit = lambda spec: (submitted.append(spec.client_order_id), real_submit(spec))[1]  # type: ignore[method-assign]
    filters = filters_mod.fetch_filters(exchange)
    quote = quote_from(exchange)
    ex = execution.Execution(
        cfg=replace(CFG, exchange_protection=True), broker=broker, dispatcher=disp,
        host=FnHost(journal_sync=_never, quote=quote, filters_fn=lambda: dict(filters),
                    symbols_fn=lambda: [SYMBOL, OTHER]),
        db_path=tmp_path / "absent.db", balance_poll_s=3_600.0, position_poll_s=3_600.0,
        intents=intent_log.IntentLog(tmp_path / "intents.log"))
    handled: list[int] = []  # the shell's handling of the reads a Reconciled asked for
    real_handle = ex._reconciled_read
    ex._reconciled_read = lambda tag, c: (handled.append(1), real_handle(tag, c))[1]  # type: ignore[method-assign]
    conn = db.connect(tmp_path / "aegis.sqlite3")
    try:
        run_until(ex, lambda: ex.ready, timeout_s=60)
        sizes = {}
        for sym, cid in ((SYMBOL, OURS), (OTHER, "web-manual-1")):
            price = Decimal(str(quote(sym).mark_price))  # type: ignore[union-attr]
            sizes[sym] = qty_for(filters[sym], price)
            placed = outside.submit(OrderSpec(client_order_id=cid, symbol=sym, side="BUY", order_type="MARKET",
                                              qty=sizes[sym]))
            assert (placed.order.status, placed.order.executed_qty) == ("FILLED", sizes[sym])
        # the running shell on its own: a few seconds of polls, and it holds neither position
        # (it applies the exchange's positions to the trades it holds: with none, it asks nothing)
        t_end = time.monotonic() + 2.5  # also ages the fills past reconciliation's 2 s "may be in the journal queue"
        run_until(ex, lambda: time.monotonic() > t_end, timeout_s=10)
        assert ex.st.trades == {}

        report = reconcile_once(outside, conn, [SYMBOL, OTHER])
        assert report.status == "REPAIRED", report
        assert sorted(d.kind for d in report.differences if d.kind != "MISSED_FILL") == sorted(
            ["ORDER_ADOPTED", "POSITION_MISMATCH", "EXTERNAL_FILL", "EXTERNAL_POSITION"])
        told = for_brain(report)
        assert told is not None and (told.symbols, told.adopted_orders) == (tuple(sorted([SYMBOL, OTHER])), (OURS,))

        ex.on_reconciled(told)

        def protected(sym: str) -> bool:
            t = ex.st.trades.get(sym)
            return t is not None and bool(t.stop_cid) and ex.st.algos[t.stop_cid].algo_id != ""

        run_until(ex, lambda: protected(SYMBOL) and protected(OTHER), timeout_s=30)
        assert len(handled) == 1
        held = {p.symbol: p.qty for p in broker.positions()}
        for sym in (SYMBOL, OTHER):
            t = ex.st.trades[sym]
            assert (t.adopted, t.side) == (True, "BUY") and t.position == held[sym] == sizes[sym]  # once
            stops = [a for a in broker.open_algo_orders(sym) if a.client_algo_id == t.stop_cid]
            assert [(a.order_type, a.side, a.close_position) for a in stops] == [("STOP_MARKET", "SELL", True)]
        assert OURS in ex.st.used_cids
        assert submitted == []  # no order went out, only the protection

        algos_before = sorted(a.client_algo_id for s in (SYMBOL, OTHER) for a in broker.open_algo_orders(s))
        trades_before = dict(ex.st.trades)
        ex.on_reconciled(told)  # the same message again (a second run said the same)
        run_until(ex, lambda: len(handled) == 2, timeout_s=30)
        assert {s: t.trade_id for s, t in ex.st.trades.items()} == {s: t.trade_id for s, t in trades_before.items()}
        assert sorted(a.client_algo_id for s in (SYMBOL, OTHER) for a in broker.open_algo_orders(s)) == algos_before
        assert submitted == []
        assert ex.st.counters["reconciled_adopted"] == 2
    finally:
        conn.close()
        disp.close(timeout_s=3.0)
        broker.close()
        outside.close()
        ex.intents.close()  # type: ignore[union-attr]


def _never(body: Any) -> None:
    raise AssertionError("the intent-log path never journals synchronously")
