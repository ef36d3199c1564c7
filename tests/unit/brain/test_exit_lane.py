"""The exit lane (``services.brain.exit_lane``) with the execution's fakes: an open trade is
armed, a batch that touches its stop writes the intent and the frame before the trader has
decided anything, the trader's decision claims that frame (one send, one record), and a frame
no decision claims is counted and its answer still awaited. Built on ``test_intent_path``."""

from __future__ import annotations

from pathlib import Path

from common import records
from services.brain import exit_lane
from services.brain.execution_inline import order_spec
from tests.unit.brain.test_intent_path import EXIT_FILLED, holding_ws, on_file
from tests.unit.brain.test_execution import ENTRY, EXIT


def lane_for(rig, *prices: float, kind: int = 2) -> exit_lane.ExitLane:
    """A lane over a batch of ``prices`` (AAAUSDT = ring symbol 0), armed from the rig's state."""
    buf = records.empty(8)
    for i, p in enumerate(prices):
        buf[i]["kind"], buf[i]["symbol_id"], buf[i]["price"], buf[i]["recv_ns"] = kind, 0, p, 5_000 + i
    lane = exit_lane.ExitLane(buf)
    rig.ex.sync_lane(lane, lambda sym: 0 if sym == "AAAUSDT" else -1)
    return lane


def test_a_trade_is_armed_with_the_exit_the_trader_would_send(tmp_path: Path):
    """Armed: the stop and target as levels, the order ``ax-<trade>-1`` for the whole position."""
    rig = holding_ws(tmp_path)
    lane = lane_for(rig)
    a = lane.armed["AAAUSDT"]
    assert (a.levels.exit_lo, a.levels.exit_hi) == (98.0, 104.0)
    assert a.spec is not None and a.spec.client_order_id == EXIT and a.spec.reduce_only
    assert (a.spec.side, a.spec.order_type, str(a.spec.qty)) == ("SELL", "MARKET", "19.8")
    assert lane.arms == 1
    rig.ex.sync_lane(lane, lambda sym: 0)  # nothing changed: not armed again
    assert lane.arms == 1


def test_the_frame_leaves_before_the_trader_decides_and_its_decision_claims_it(tmp_path: Path):
    """A touched stop: intent on file and frame written while the trader has no exit order yet;
    the trader's decision on the same range claims the frame: one send, one finish, one record."""
    rig = holding_ws(tmp_path)
    lane = lane_for(rig, 100.2, 97.9, 99.0)
    hits = lane.check(3)
    assert set(hits) == {"AAAUSDT"}
    h = hits["AAAUSDT"]
    assert (h.low, h.high, h.first_recv_ns, h.exit) == (97.9, 100.2, 5_000, True)
    rig.broker.submits.append(EXIT_FILLED)
    assert rig.ex.fire_exit(h.armed, h.first_recv_ns)
    assert rig.calls == [("send_order", EXIT, 0.0)] and EXIT not in rig.ex.st.orders
    assert on_file(tmp_path / "intents.log") == [ENTRY, EXIT]
    assert not rig.ex.fire_exit(h.armed, h.first_recv_ns)  # never twice
    rig.ex.on_range("AAAUSDT", h.low, h.high)
    rig.ex.lane_settle()
    rig.poll()
    assert rig.calls == [("send_order", EXIT, 0.0), ("finish_order", EXIT, "frame-1")]
    assert on_file(tmp_path / "intents.log") == [ENTRY, EXIT]
    c = rig.ex.counters
    assert (c["exit_lane_fired"], c["exit_lane_unclaimed"], c.get("exit_presend_mismatch", 0)) == (1, 0, 0)
    assert "AAAUSDT" not in rig.ex.st.trades


def test_a_batch_inside_the_levels_wakes_nothing_and_books_and_marks_are_not_trades(tmp_path: Path):
    """Prices between stop and target: no hit; a book record below the stop: no hit either."""
    rig = holding_ws(tmp_path)
    assert lane_for(rig, 99.0, 103.9).check(2) == {}
    assert lane_for(rig, 90.0, kind=int(records.Kind.BOOK)).check(1) == {}


def test_a_frame_no_decision_claims_is_counted_and_its_answer_awaited(tmp_path: Path):
    """The lane fired but the trader (here: never asked) decided nothing: counted, logged, the
    answer awaited on a worker, and nothing sent a second time."""
    rig = holding_ws(tmp_path)
    lane = lane_for(rig, 97.0)
    rig.broker.submits.append(EXIT_FILLED)
    assert rig.ex.fire_exit(lane.check(1)["AAAUSDT"].armed, 5_000)
    rig.ex.lane_settle()
    rig.poll()
    assert rig.calls == [("send_order", EXIT, 0.0), ("finish_order", EXIT, "frame-1")]
    assert rig.ex.counters["exit_lane_unclaimed"] == 1 and rig.ex._presend == {}


def test_with_the_lane_off_the_trader_sends_the_exit_itself(tmp_path: Path):
    """``trading.exit_lane = false``: the lane fires nothing; the trader's decision sends."""
    rig = holding_ws(tmp_path)
    rig.ex.lane_on = False
    lane = lane_for(rig, 97.0)
    rig.broker.submits.append(EXIT_FILLED)
    assert not rig.ex.fire_exit(lane.check(1)["AAAUSDT"].armed, 5_000)
    assert rig.calls == []
    rig.ex.on_range("AAAUSDT", 97.0, 97.0)
    rig.poll()
    assert rig.calls == [("send_order", EXIT, 0.0), ("finish_order", EXIT, "frame-1")]
    assert rig.ex.counters["exit_lane_fired"] == 0


def test_a_closed_trade_is_disarmed_and_a_new_one_armed_with_its_own_id(tmp_path: Path):
    """After the exit fills the trade is gone from the lane; the spec function is the one the
    dispatcher uses (``order_spec``), so the claim compares like with like."""
    rig = holding_ws(tmp_path)
    lane = lane_for(rig, 97.0)
    armed = lane.armed["AAAUSDT"]
    assert armed.order is not None and armed.spec == order_spec(armed.order.order)
    rig.broker.submits.append(EXIT_FILLED)
    rig.ex.on_range("AAAUSDT", 97.0, 97.0)
    rig.poll()
    rig.ex.sync_lane(lane, lambda sym: 0)
    assert lane.armed == {} and lane.check(1) == {}


def test_a_prepared_exit_goes_as_prepared_and_its_record_is_the_one_encode_gives(tmp_path: Path):
    """``prepare``: the broker's prepared request and the intent record's template, made off
    the batch path; the fire hands the request to the broker and writes the template stamped
    with the fire's time: the record reads back as the intent the ordinary path writes."""
    from services.brain import intent_log as il
    from tests.unit.brain.test_execution import NOW

    rig = holding_ws(tmp_path)
    lane = lane_for(rig, 97.0)
    made = []
    lane.prepare(NOW, lambda spec: made.append(spec.client_order_id) or "prepared-1")
    lane.prepare(NOW + 500, lambda spec: made.append("again"))  # fresh: not prepared again
    assert made == [EXIT]
    armed = lane.armed["AAAUSDT"]
    rig.broker.submits.append(EXIT_FILLED)
    assert rig.ex.fire_exit(armed, 5_000, lane.prepared_for(armed))
    assert rig.calls == [("send_order", EXIT, 0.0, "prepared-1")]
    *_, rec = il.IntentLog.read(tmp_path / "intents.log").intents
    assert rec == il.Intent(client_id=EXIT, at_ns=rig.ex.host.clock_ms() * 1_000_000, body=armed.order.request)
    lane.prepare(NOW + 1_000, lambda spec: "prepared-2")  # a second old: signed again
    assert lane.prepared_for(armed)[0] == "prepared-2"
