"""The execution shell's counters as the heartbeat carries them (``Execution.heartbeat_counters``):
every name present at zero from the start (a metric never appears out of nowhere), and the
broker's refused order-history pages (``all_orders_rejected``) among them."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from structlog.testing import capture_logs

from common.errors import DecodeError
from services.brain import intent_log as il
from services.brain import trader_exchange, trader_resize
from tests.unit.brain.test_execution import make_rig, xorder

SHELL = {"journal_sync_failed", "broker_errors", "queries_retried", "problems", "ambiguous", "sent_unjournaled",
         "entries_sent_inline", "entries_inline_fallback", "exit_lane_fired", "exit_lane_unclaimed", "fills_by_stream", "fills_fetched_after_grace",
         "intent_log_failed", "intents_replayed", "exits_sent_inline", "exits_inline_fallback",
         "exit_presend_mismatch", "setup_pending_rejects", "intent_log_corrupt", "intent_log_torn",
         "order_history_unreadable", "orders_adopted", "orders_recorded_from_history", "journal_rows_resent",
         "unknown_completions", "reconciled_heard", "reconciled_read_failed", "unknown_effects", "remainder_checks",
         "remainder_checks_given_up"}
INTENT_LOG = {"intents_written", "intent_syncs", "intent_sync_errors"}


def test_every_counter_is_there_at_zero_before_anything_happened(tmp_path: Path):
    """A new shell: its counters, the intent log's and the broker's, all zero, in the heartbeat,
    in the stats snapshot (the broker's under ``broker``)."""
    rig = make_rig(tmp_path)
    rig.ex.intents = il.IntentLog(tmp_path / "intents.log", fsync=False)
    hb = rig.ex.heartbeat_counters()
    assert hb == dict.fromkeys(SHELL | INTENT_LOG | {"all_orders_rejected"} | set(trader_resize.COUNTERS)
                               | set(trader_exchange.ADOPTION_COUNTERS), 0.0)
    snap = rig.ex.snapshot()
    assert {k: snap[k] for k in SHELL} == dict.fromkeys(SHELL, 0)
    assert snap["broker"] == {"all_orders_rejected": 0}


def test_refused_history_pages_reach_the_heartbeat(tmp_path: Path):
    """At start the order history of both symbols is refused as malformed (the ccxt broker
    counts each page, tests/unit/venue/test_broker_counters.py): the heartbeat says 2 pages
    refused and 2 symbols unreadable, and the shell starts."""
    rig = make_rig(tmp_path)
    rig.ex.intents = il.IntentLog(tmp_path / "intents.log", fsync=False)
    rig.broker.counters = {"all_orders_rejected": 0}

    def all_orders(symbol: str, *, since_ms: int, until_ms: int):
        rig.broker.counters["all_orders_rejected"] += 1  # as CcxtBroker.all_orders does
        raise DecodeError("allOrders: the answer is not a list", reason="all_orders_shape")

    rig.broker.all_orders = all_orders
    rig.poll(3)
    assert rig.ex.ready
    hb = rig.ex.heartbeat_counters()
    assert (hb["all_orders_rejected"], hb["order_history_unreadable"]) == (2.0, 2.0)
    assert rig.ex.snapshot()["broker"] == {"all_orders_rejected": 2}


def test_orders_found_in_the_history_are_logged_as_counts_and_the_first_few_ids(tmp_path: Path):
    """Twelve finished orders of ours in the order history at start (a bench's restart finds
    hundreds): one line with the count and the first five ids, not every id."""
    rig = make_rig(tmp_path)
    rig.ex.intents = il.IntentLog(tmp_path / "intents.log", fsync=False)
    cids = [f"ae-old{i:02d}-0" for i in range(12)]
    rig.broker.history = [replace(xorder(c, "CANCELED", "0", eid=str(900 + i)), order_type="LIMIT",
                                  price=Decimal("99.5")) for i, c in enumerate(cids)]
    with capture_logs() as logs:
        rig.poll(3)
    assert rig.ex.ready and rig.ex.counters["orders_recorded_from_history"] == 12
    (line,) = [e for e in logs if e["event"] == "brain.orders_found_in_history"]
    assert (line["adopted"], line["recorded"], line["first_adopted"], line["first_recorded"]) == (
        0, 12, [], cids[:5])
