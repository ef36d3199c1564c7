"""Crash between the send and the journal, on 127.0.0.1 against the local exchange: a brain
(``intent_crash_brain``: the real execution shell, ccxt broker, dispatcher and intent log)
opens an entry, learns its fill and is SIGKILLed before its journal heard of the order (its
buffered journal dies with it). The restarted shell, with an empty database and the same
intent log, knows the order again, journals it first, asks the exchange, applies its fill
exactly once and never sends it again."""

from __future__ import annotations

import signal as signal_mod
import time
from typing import Any

import pytest

from common import wire
from services.brain import intent_log
from tests.conftest import REPO
from tests.integration.intent_crash_brain import SIGNAL_ID, SYMBOL, build, quote_from, run_until
from tests.integration.sim_thread import exchange_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture
def exchange():
    """The exchange on its own event loop thread in this process (it outlives the brain)."""
    with exchange_in_thread(SYMBOL) as base:
        yield base


@pytest.mark.timeout(60)
def test_an_order_sent_but_never_journaled_is_found_its_fill_applied_once_never_resent(exchange, procs, tmp_path):
    """SIGKILL after the fill is known and before the journal: the restart journals the logged
    request first, queries the order at the exchange (FILLED), fetches its fill once, holds
    exactly the exchange's position with the plan from the log, sends no order, and the
    signal replayed opens nothing."""
    log_path, marker = tmp_path / "brain-intents.log", tmp_path / "filled"
    brain = procs.python("-m", "tests.integration.intent_crash_brain", exchange, str(log_path), str(marker),
                         cwd=REPO)
    deadline = time.monotonic() + 40
    while not (marker.exists() and marker.read_text()):
        assert brain.poll() is None, "the first brain died on its own"
        assert time.monotonic() < deadline, "the first brain never filled its entry"
        time.sleep(0.05)
    cid = marker.read_text()
    brain.send_signal(signal_mod.SIGKILL)
    assert brain.wait(10) == -signal_mod.SIGKILL
    assert [it.client_id for it in intent_log.IntentLog.read(log_path).intents] == [cid]

    published: list[Any] = []
    ex, broker, disp = build(exchange, log_path, tmp_path / "aegis.db", published, quote_from(exchange))
    sent: list[str] = []
    real_submit = broker.submit
    broker.submit = lambda spec: (sent.append(spec.client_order_id), real_submit(spec))[1]  # type: ignore[method-assign]
    try:
        held = [p for p in broker.positions() if p.symbol == SYMBOL]
        run_until(ex, lambda: ex.ready and cid in ex.st.orders and ex.st.orders[cid].is_terminal
                  and ex.st.trades.get(SYMBOL) is not None and ex.st.trades[SYMBOL].position > 0)
        assert published[0] == intent_log.IntentLog.read(log_path).intents[0].body  # journaled first
        assert isinstance(published[0], wire.OrderRequest) and published[0].client_order_id == cid
        o, t = ex.st.orders[cid], ex.st.trades[SYMBOL]
        fills = [b for b in published if isinstance(b, wire.Fill) and b.client_order_id == cid]
        exchange_fills = broker.fills(SYMBOL, exchange_order_id=o.exchange_order_id)
        assert sorted(f.trade_id for f in fills) == sorted(f.trade_id for f in exchange_fills)  # each once
        assert len({f.trade_id for f in fills}) == len(fills) >= 1
        assert (o.state.value, o.filled_qty) == ("FILLED", o.qty)
        assert len(held) == 1 and t.position == abs(held[0].qty) == o.qty  # the exchange's, not twice
        assert (t.trade_id, t.entry_cid, t.adopted) == (SIGNAL_ID, cid, False)
        assert ex.counters["intents_replayed"] == 1
        price = float(held[0].entry_price)
        ex.on_signal(wire.SignalGenerated(signal_id=SIGNAL_ID, symbol=SYMBOL, side="BUY", entry=price,
                                          stop=price * 0.99, target=price * 1.02, confidence=0.6))
        ex.poll()
        assert sent == [] and ex.st.counters["skipped:DUPLICATE_SIGNAL"] == 1
    finally:
        disp.close(timeout_s=3.0)
        broker.close()
        ex.intents.close()  # type: ignore[union-attr]
