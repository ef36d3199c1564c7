"""A filled entry nothing on record knows, found in the exchange's order history at start, on
127.0.0.1 against the local exchange: the entry is placed at the exchange directly under an
``ae-`` client id (as if the brain sent it just before a machine crash that took its intent
record) and fills at once, so the exchange's open list never names it. Then the brain's real
execution shell starts (ccxt broker, dispatcher, an empty intent log, no database): it finds
the order with ``GET /fapi/v1/allOrders``, adopts it with its fill, holds exactly the
exchange's position under the entry's id, arms the exchange-held stop, and sends no order.
The orchestrator's reconciliation, run against the same kind of order and an empty database,
adopts it the same way and converges to OK."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from common import wire
from services.brain import dispatcher as dsp
from services.brain import execution, intent_log
from tests.integration.intent_crash_brain import CFG, SYMBOL, quote_from, run_until
from tests.integration.sim_thread import exchange_in_thread
from venue import filters as filters_mod
from venue import orders as om
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from venue.port import OrderSpec
from venue.ratelimit import Governor
from tests.fake_host import FnHost

pytestmark = pytest.mark.integration

LOST = "ae-lost1-0"  # the entry whose intent record the crash took (no plan anywhere)


@pytest.fixture
def exchange():
    """The exchange on its own event loop thread in this process (it outlives the brain)."""
    with exchange_in_thread(SYMBOL) as base:
        yield base


def broker_for(base: str) -> CcxtBroker:
    return CcxtBroker(CcxtConfig(base_url=base, timeout_ms=5_000), governor=Governor(), api_key=DEMO_API_KEY,
                      api_secret=DEMO_API_SECRET)


@pytest.mark.timeout(90)
def test_a_filled_entry_found_only_in_the_order_history_is_adopted_protected_and_never_resent(exchange, tmp_path):
    """allOrders finds the FILLED ae- entry; the restarted shell journals its row, asks it,
    fetches its fill by its order id once, holds the exchange's position (same size, the
    entry's id), places a STOP_MARKET closePosition at the exchange, and submits nothing."""
    outside = broker_for(exchange)
    price = Decimal(str(quote_from(exchange)(SYMBOL).mark_price))  # type: ignore[union-attr]
    qty = Decimal("0.003") if price * Decimal("0.003") >= 100 else Decimal("0.010")
    placed = outside.submit(OrderSpec(client_order_id=LOST, symbol=SYMBOL, side="BUY", order_type="MARKET", qty=qty))
    assert (placed.order.status, placed.order.executed_qty) == ("FILLED", qty)
    assert LOST not in [o.client_order_id for o in outside.open_orders()]  # the open list cannot name it

    published: list[Any] = []
    broker, disp = broker_for(exchange), dsp.Dispatcher(2, name="history-dispatch")
    sent: list[str] = []
    real_submit = broker.submit
    broker.submit = lambda spec: (sent.append(spec.client_order_id), real_submit(spec))[1]  # type: ignore[method-assign]
    history_reads: list[str] = []
    real_all = broker.all_orders
    broker.all_orders = lambda s, **kw: (history_reads.append(s), real_all(s, **kw))[1]  # type: ignore[method-assign]
    filters = filters_mod.fetch_filters(exchange)
    log_path = tmp_path / "brain-intents.log"  # empty: the crash took the record
    ex = execution.Execution(
        cfg=replace(CFG, exchange_protection=True), broker=broker, dispatcher=disp,
        host=FnHost(journal_sync=_never, publish=lambda body, journal=True: published.append(body),
                    quote=quote_from(exchange), filters_fn=lambda: dict(filters), symbols_fn=lambda: [SYMBOL]),
        db_path=tmp_path / "aegis.db", balance_poll_s=3_600.0, position_poll_s=3_600.0,
        intents=intent_log.IntentLog(log_path))
    try:
        run_until(ex, lambda: ex.ready and LOST in ex.st.orders and ex.st.orders[LOST].is_terminal
                  and SYMBOL in ex.st.trades and ex.st.trades[SYMBOL].position > 0
                  and bool(ex.st.trades[SYMBOL].stop_cid)
                  and ex.st.algos[ex.st.trades[SYMBOL].stop_cid].algo_id != "", timeout_s=60)
        held = [p for p in broker.positions() if p.symbol == SYMBOL]
        o, t = ex.st.orders[LOST], ex.st.trades[SYMBOL]
        assert SYMBOL in history_reads and ex.counters["orders_adopted"] == 1
        assert (o.state, o.filled_qty, o.exchange_order_id) == (om.S.FILLED, qty, placed.order.exchange_order_id)
        assert len(held) == 1 and held[0].qty == qty == t.position == t.entry_qty  # the exchange's, not twice
        assert (t.entry_cid, t.trade_id, t.adopted) == (LOST, LOST, True)
        fills = [b for b in published if isinstance(b, wire.Fill) and b.client_order_id == LOST]
        assert sorted(f.trade_id for f in fills) == sorted(f.trade_id for f in placed.fills)  # each once
        assert [b.client_order_id for b in published if isinstance(b, wire.OrderRequest)] == [LOST]
        stops = [a for a in broker.open_algo_orders(SYMBOL) if a.client_algo_id == t.stop_cid]
        assert [(a.order_type, a.side, a.close_position) for a in stops] == [("STOP_MARKET", "SELL", True)]
        assert sent == []  # nothing sent again
    finally:
        disp.close(timeout_s=3.0)
        broker.close()
        outside.close()
        ex.intents.close()  # type: ignore[union-attr]


@pytest.mark.timeout(90)
def test_reconciliation_adopts_a_filled_entry_from_the_order_history_and_converges(exchange, tmp_path):
    """The orchestrator's side, against the same exchange and an empty database: the first
    run's history read finds the FILLED ae- entry; the repairs (its fills, its row as FILLED,
    the position as ours, not flagged) written the journal's way make the tables equal the
    exchange's, and the next run is OK."""
    from services.orchestrator import db, snapshots
    from services.orchestrator.reconcile_diff import diff

    broker = broker_for(exchange)
    placed = broker.submit(OrderSpec(client_order_id="ae-lost2-0", symbol=SYMBOL, side="BUY", order_type="MARKET",
                                     qty=Decimal("0.003")))
    time.sleep(2.2)  # older than reconciliation's 2 s "its journal row may be on the way"
    conn = db.connect(tmp_path / "aegis.sqlite3")
    clock_ms = lambda: time.time_ns() // 1_000_000  # noqa: E731

    def run_once():
        now = clock_ms()
        loc = snapshots.local_snapshot(conn, now)
        ex = snapshots.fetch_exchange_snapshot(broker, loc, [SYMBOL], now, 3_600_000, clock_ms=clock_ms,
                                               history_since_ms=snapshots.history_since(loc, now, 3_600_000))
        return diff(snapshots.local_snapshot(conn, clock_ms()), ex, now_ms=clock_ms())

    try:
        first = run_once()
        assert (first.status, first.flagged) == ("REPAIRED", ())
        assert sorted(d.kind for d in first.differences) == sorted(
            ["MISSED_FILL"] * len(placed.fills) + ["ORDER_ADOPTED", "POSITION_MISMATCH"])
        now_ns = time.time_ns()
        db.write_batch(conn, [r for i, b in enumerate(first.repairs) for r in db.rows_for(
            wire.Envelope(wire.SCHEMA_VERSION, "orchestrator:reconcile", i + 1, now_ns, now_ns, b))])
        assert conn.execute("SELECT client_order_id, exchange_order_id, status, filled_qty FROM orders").fetchall() == [
            ("ae-lost2-0", placed.order.exchange_order_id, "FILLED", 0.003)]
        assert sorted(conn.execute("SELECT trade_id, client_order_id FROM fills").fetchall()) == sorted(
            (f.trade_id, "ae-lost2-0") for f in placed.fills)
        assert conn.execute("SELECT symbol, qty FROM positions").fetchall() == [(SYMBOL, 0.003)]
        second = run_once()
        assert (second.status, second.repairs) == ("OK", ())
    finally:
        conn.close()
        broker.close()


def _never(body: Any) -> None:
    raise AssertionError("the intent-log path never journals synchronously")
