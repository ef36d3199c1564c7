"""The user data stream inside the execution shell: raw Binance events through the real client's
frame handling (no socket), drained in ``Execution.poll``, applied through the trader.

The rig is ``test_execution``'s (a scripted broker, a dispatcher on the test's thread, a frozen
clock); events are written as Binance sends them and fed to ``UserStreamClient.on_frame``."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from common import wire
from common.errors import DefinitiveError
from services.brain import dispatcher as dsp
from services.brain import execution_send, jobs, trader_views, user_feed
from venue import orders as om
from venue.binance import user_updates as uu
from venue.binance.user_stream_client import UserStreamClient, UserStreamConfig
from venue.port import ExchangeIncome, ExchangePosition, SubmitResult
from tests.unit.brain.test_execution import (
    ENTRY, ENTRY_FILLED, EID, EXIT, EXIT_EID, NOW, PROTECTED, STOP_ID, TARGET_ID, Rig, holding, make_rig, signal,
    started, xfill, xorder,
)


# ---------------------------------------------------------------------------- events as Binance writes them
def order_event(cid: str, x: str, status: str, *, tid: int = 0, last: str = "0", price: str = "0", cum: str = "0",
                eid: str = EID, side: str = "BUY", t: int = NOW, fee: str = "0.01") -> bytes:
    return orjson.dumps({"e": "ORDER_TRADE_UPDATE", "E": t, "T": t, "o": {
        "s": "AAAUSDT", "c": cid, "S": side, "o": "MARKET", "q": "19.8", "p": "0", "ap": "0", "x": x, "X": status,
        "i": int(eid), "l": last, "z": cum, "L": price, "N": "USDT", "n": fee if x == "TRADE" else "0", "T": t,
        "t": tid, "m": False, "R": side == "SELL", "rp": "0"}})


def account_event(qty: str, *, symbol: str = "AAAUSDT", t: int = NOW, reason: str = "ORDER") -> bytes:
    return orjson.dumps({"e": "ACCOUNT_UPDATE", "E": t, "T": t, "a": {
        "m": reason, "B": [{"a": "USDT", "wb": "10000", "cw": "10000", "bc": "0"}],
        "P": [{"s": symbol, "pa": qty, "ep": "100", "cr": "0", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH"}]}})


def algo_event(caid: str, status: str, *, aid: str = "7001", ai: str = "") -> bytes:
    return orjson.dumps({"e": "ALGO_UPDATE", "E": NOW, "T": NOW, "o": {
        "caid": caid, "aid": int(aid), "at": "CONDITIONAL", "o": "STOP_MARKET", "s": "AAAUSDT", "S": "SELL",
        "q": "0", "X": status, "ai": ai, "tp": "98", "p": "0", "wt": "MARK_PRICE", "cp": True, "R": False}})


ENTRY_TRADES = [order_event(ENTRY, "NEW", "NEW"),
                order_event(ENTRY, "TRADE", "PARTIALLY_FILLED", tid=1, last="12.0", price="100.0", cum="12.0"),
                order_event(ENTRY, "TRADE", "FILLED", tid=2, last="7.8", price="100.0", cum="19.8")]


def attach(rig: Rig, *, connected: bool = True) -> UserStreamClient:
    """The real client (never started: frames are handed to it) as the execution's stream."""
    client = UserStreamClient(UserStreamConfig(rest_url="http://127.0.0.1:1", ws_url="ws://127.0.0.1:1"),
                              api_key="k")
    client.connected = connected
    rig.ex.user_stream = user_feed.Link(client)
    return client


def push(rig: Rig, *frames: bytes) -> None:
    client = rig.ex.user_stream.client
    for f in frames:
        client.on_frame(f)


def stream_stats(rig: Rig) -> dict[str, Any]:
    return rig.ex.snapshot()["user_stream"]


def ack_only() -> SubmitResult:
    return SubmitResult(order=xorder(ENTRY, "NEW", "0"))


# ---------------------------------------------------------------------------- fills
class TestFills:
    def test_fills_pushed_by_the_stream_reach_the_trader_without_a_rest_fetch(self, tmp_path: Path):
        """The submit answer says NEW, nothing filled; the stream brings both trades: position
        19.8 at 100.0, two FILL publications, no userTrades call."""
        rig = started(tmp_path)
        attach(rig)
        rig.broker.submits.append(ack_only())
        rig.ex.on_signal(signal())
        rig.poll()
        push(rig, *ENTRY_TRADES)
        rig.poll()
        t = rig.ex.st.trades["AAAUSDT"]
        assert (t.position, t.entry_avg) == (Decimal("19.8"), Decimal("100.0"))
        assert [(f.trade_id, f.qty, f.fee) for f in rig.bodies(wire.Fill)] == [("1", 12.0, 0.01), ("2", 7.8, 0.01)]
        assert rig.calls_of("fills") == [] and rig.ex.st.orders[ENTRY].state == om.S.FILLED
        assert stream_stats(rig)["applied"] == {"OrderStatus": 3, "Fill": 2}

    def test_a_fill_from_rest_then_the_stream_counts_once(self, tmp_path: Path):
        """The submit answer carried both fills; the stream brings them again: nothing changes."""
        rig = holding(tmp_path)
        attach(rig)
        before = (rig.ex.st.counters["fills"], rig.ex.st.fees, rig.ex.st.trades["AAAUSDT"].position)
        push(rig, *ENTRY_TRADES)
        rig.poll()
        assert (rig.ex.st.counters["fills"], rig.ex.st.fees, rig.ex.st.trades["AAAUSDT"].position) == before
        assert rig.bodies(wire.Fill) == [] and rig.calls_of("fills") == []

    def test_a_fill_from_the_stream_then_rest_counts_once(self, tmp_path: Path):
        """The stream is faster than the submit's answer (which carries the same fills)."""
        rig = started(tmp_path)
        attach(rig)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())  # SENT; the answer is not back yet
        push(rig, *ENTRY_TRADES)
        user_feed.pump(rig.ex)  # the stream first
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8") and rig.calls_of("submit") == []
        rig.poll()  # then the submit answer, with the same two fills
        assert rig.ex.st.counters["fills"] == 2 and len(rig.bodies(wire.Fill)) == 2
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")

    def test_a_status_beyond_our_fills_fetches_the_missing_trades(self, tmp_path: Path):
        """z = 19.8 with only 12.0 known (a trade event was lost): the order asks userTrades."""
        rig = started(tmp_path)
        attach(rig)
        rig.broker.submits.append(ack_only())
        rig.ex.on_signal(signal())
        rig.poll()
        rig.broker.fill_rows.append([xfill(ENTRY, "1", "12.0", "100.0"), xfill(ENTRY, "2", "7.8", "100.0")])
        push(rig, ENTRY_TRADES[1], order_event(ENTRY, "EXPIRED", "FILLED", cum="19.8"))
        rig.poll(2)
        assert rig.calls_of("fills") == [("fills", "AAAUSDT", EID)]
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8") and rig.ex.st.counters["fills"] == 2


class TestFillsOfAnAnswerComeByTheStream:
    """An order's answer says FILLED but carries no fills (``WsBroker.fills_after_submit`` is
    off while the stream is on): no REST read at once; the stream tells them; REST reads them
    only if, ``STREAM_FILLS_GRACE_MS`` later, the order still lacks some."""

    @staticmethod
    def answered(tmp_path: Path):
        rig = started(tmp_path)
        attach(rig)
        rig.broker.submits.append(SubmitResult(order=xorder(ENTRY, "FILLED", "19.8"), fills=()))
        rig.ex.on_signal(signal())
        rig.poll()  # the answer: FILLED 19.8, no fills in hand
        assert rig.calls_of("fills") == [] and len(rig.ex.delayed) == 1
        return rig, execution_send.STREAM_FILLS_GRACE_MS

    def test_the_stream_tells_them_and_rest_is_never_asked(self, tmp_path: Path):
        """The two trade events arrive: position 19.8; the grace ends with nothing to fetch."""
        rig, grace = self.answered(tmp_path)
        push(rig, *ENTRY_TRADES)
        rig.poll()
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8")
        rig.clock.now_ms += grace
        rig.poll()
        assert rig.calls_of("fills") == [] and rig.ex.delayed == []
        assert (rig.ex.counters["fills_by_stream"], rig.ex.counters["fills_fetched_after_grace"]) == (1, 0)

    def test_fills_the_stream_never_told_are_read_over_rest_after_the_grace(self, tmp_path: Path):
        """No trade event came (lost): one REST read once the grace is over, not before."""
        rig, grace = self.answered(tmp_path)
        rig.broker.fill_rows.append([xfill(ENTRY, "1", "12.0", "100.0"), xfill(ENTRY, "2", "7.8", "100.0")])
        rig.clock.now_ms += grace - 1
        rig.poll()
        assert rig.calls_of("fills") == []
        rig.clock.now_ms += 1
        rig.poll(2)
        assert rig.calls_of("fills") == [("fills", "AAAUSDT", EID)]
        assert rig.ex.st.trades["AAAUSDT"].position == Decimal("19.8") and rig.ex.st.counters["fills"] == 2
        assert (rig.ex.counters["fills_by_stream"], rig.ex.counters["fills_fetched_after_grace"]) == (0, 1)

    def test_with_the_stream_down_the_fills_are_read_at_once(self, tmp_path: Path):
        """Not connected: the answer's missing fills are read over REST right away, as before."""
        rig = started(tmp_path)
        attach(rig, connected=False)
        rig.broker.submits.append(SubmitResult(order=xorder(ENTRY, "FILLED", "19.8"), fills=()))
        rig.broker.fill_rows.append([xfill(ENTRY, "1", "12.0", "100.0"), xfill(ENTRY, "2", "7.8", "100.0")])
        rig.ex.on_signal(signal())
        rig.poll(2)
        assert rig.calls_of("fills") == [("fills", "AAAUSDT", EID)] and rig.ex.delayed == []


# ---------------------------------------------------------------------------- positions
class TestPositions:
    def test_a_flat_account_update_frees_the_slot_with_no_exit(self, tmp_path: Path):
        """Closed behind our back: the slot is free on this one event, no order is sent, the
        symbol's fills are fetched to learn the exit."""
        rig = holding(tmp_path)
        attach(rig)
        rig.broker.fill_rows.append([])
        push(rig, *ENTRY_TRADES, account_event("19.8"))  # the stream's own account of the entry
        push(rig, account_event("0", t=NOW + 5))
        rig.poll()  # the event; its fetch runs at the next poll (the test's dispatcher)
        assert rig.ex.st.trades["AAAUSDT"].flat_at_exchange_ms == NOW and rig.calls_of("fills") == []
        assert trader_views.held_positions(rig.ex.st, rig.ex.ctx()) == []  # the slot is free now
        rig.poll()
        assert rig.calls_of("submit") == [] and rig.calls_of("fills") == [("fills", "AAAUSDT", None)]
        assert rig.ex.st.counters.get("exits", 0) == 0

    def test_our_own_exit_closes_by_its_fill_not_as_a_close_behind_our_back(self, tmp_path: Path):
        """The exit's ACCOUNT_UPDATE comes before its trade: the trade closes as STOP by the fill,
        no REST fetch of the symbol's fills."""
        rig = holding(tmp_path)
        attach(rig)
        rig.broker.submits.append(SubmitResult(order=xorder(EXIT, "NEW", "0", eid=EXIT_EID, side="SELL")))
        rig.ex.on_range("AAAUSDT", 97.0, 100.0)
        rig.poll()
        push(rig, order_event(EXIT, "NEW", "NEW", eid=EXIT_EID, side="SELL"), account_event("0", t=NOW + 5),
             order_event(EXIT, "TRADE", "FILLED", tid=9, last="19.8", price="97.0", cum="19.8", eid=EXIT_EID,
                         side="SELL"))
        rig.poll()
        [closed] = rig.bodies(wire.TradeClosed)
        assert (closed.exit_reason, closed.exit_price) == ("STOP", 97.0)
        assert rig.calls_of("fills") == [] and rig.ex.st.counters.get("closed_at_exchange", 0) == 0

    def test_a_flat_drained_before_our_exits_trade_waits_for_that_exit(self, tmp_path: Path):
        """The exit's ACCOUNT_UPDATE and its trade fall into two polls: the flat is held while
        the exit is in flight, the trade then closes by the exit's fill as STOP; no REST fetch."""
        rig = holding(tmp_path)
        attach(rig)
        push(rig, *ENTRY_TRADES)
        rig.broker.submits.append(SubmitResult(order=xorder(EXIT, "NEW", "0", eid=EXIT_EID, side="SELL")))
        rig.ex.on_range("AAAUSDT", 97.0, 100.0)
        rig.poll()
        push(rig, order_event(EXIT, "NEW", "NEW", eid=EXIT_EID, side="SELL"), account_event("0", t=NOW + 5))
        rig.poll()
        assert rig.ex.st.trades["AAAUSDT"].flat_at_exchange_ms == 0
        assert stream_stats(rig)["ignored"]["flat_held_for_own_exit"] == 1
        push(rig, order_event(EXIT, "TRADE", "FILLED", tid=9, last="19.8", price="97.0", cum="19.8", eid=EXIT_EID,
                              side="SELL"))
        rig.poll()
        [closed] = rig.bodies(wire.TradeClosed)
        assert closed.exit_reason == "STOP" and rig.calls_of("fills") == []
        assert rig.ex.user_stream.held == {} and rig.ex.st.counters.get("closed_at_exchange", 0) == 0

    def test_a_flat_held_for_an_exit_that_is_refused_is_applied_then(self, tmp_path: Path):
        """Our exit is refused (-2022: nothing to reduce): the position was closed by someone
        else; the held flat frees the slot as soon as the refusal is in."""
        rig = holding(tmp_path)
        attach(rig)
        push(rig, *ENTRY_TRADES)
        rig.ex.on_range("AAAUSDT", 97.0, 100.0)  # the exit is sent; the exchange is flat already
        push(rig, account_event("0", t=NOW + 5))
        rig.broker.submits.append(DefinitiveError("ReduceOnly Order is rejected.", reason="reduce_only", code=-2022))
        user_feed.pump(rig.ex)  # the flat, while the exit is in flight
        assert rig.ex.user_stream.held and rig.ex.st.trades["AAAUSDT"].flat_at_exchange_ms == 0
        rig.broker.fill_rows.append([])
        rig.poll()  # the refusal, then the held flat
        assert rig.ex.st.trades["AAAUSDT"].flat_at_exchange_ms == NOW and rig.ex.user_stream.held == {}

    def test_a_position_that_is_still_held_changes_nothing(self, tmp_path: Path):
        """The exchange still holds the trade's quantity: no call, no change."""
        rig = holding(tmp_path)
        attach(rig)
        st = rig.ex.st
        push(rig, account_event("19.8"))
        rig.poll()
        assert rig.ex.st.trades == st.trades and rig.calls == []

    def test_a_funding_fee_update_reads_the_income_history_and_the_trade_takes_its_row(self, tmp_path: Path):
        """A FUNDING_FEE update names no symbol and moves no position: the income history is read
        from the trade's opening, its AAAUSDT row becomes the trade's funding (once), nothing is sent."""
        rig = holding(tmp_path)
        attach(rig)
        t = rig.ex.st.trades["AAAUSDT"]
        rig.broker.income_rows = [ExchangeIncome(tran_id="77", symbol="AAAUSDT", income_type="FUNDING_FEE",
                                                 amount=Decimal("-0.50000000"), time_ms=NOW)]
        push(rig, orjson.dumps({"e": "ACCOUNT_UPDATE", "E": NOW, "T": NOW, "a": {
            "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "9999.5", "cw": "9999.5", "bc": "-0.5"}], "P": []}}))
        rig.poll(times=3)
        assert rig.broker.income_reads == [("FUNDING_FEE", t.opened_ms)]
        assert rig.ex.st.trades["AAAUSDT"].funding == Decimal("-0.5")
        assert rig.ex.st.trades["AAAUSDT"].position == t.position and rig.calls == []
        assert rig.ex.snapshot()["funding_reads"]["events"] == 1

    def test_a_flat_the_stream_sent_before_the_entrys_fills_is_the_previous_trades(self, tmp_path: Path):
        """The entry filled by its REST answer; the stream, still behind, reports the symbol's
        previous trade closing (flat): ignored, counted. Once the stream has delivered the
        entry's fills, a flat is news again."""
        rig = holding(tmp_path)
        attach(rig)
        push(rig, account_event("0", t=NOW - 5))
        rig.poll()
        assert rig.ex.st.trades["AAAUSDT"].flat_at_exchange_ms == 0
        assert stream_stats(rig)["ignored"] == {"stale_position": 1}
        rig.broker.fill_rows.append([])
        push(rig, *ENTRY_TRADES, account_event("0", t=NOW + 5))
        rig.poll()
        assert rig.ex.st.trades["AAAUSDT"].flat_at_exchange_ms == NOW

    def test_after_a_resync_every_fill_held_counts_as_delivered(self, tmp_path: Path):
        """A new connection only carries what happens after it: the fills we hold will never
        come through it, so a flat it reports is news."""
        rig = holding(tmp_path)
        client = attach(rig)
        client._put(uu.Resync(reason="closed", connection=2), 0)
        rig.broker.fill_rows.append([])
        push(rig, account_event("0", t=NOW + 5))
        rig.poll()
        assert rig.ex.st.trades["AAAUSDT"].flat_at_exchange_ms == NOW

    def test_a_position_read_sent_before_the_first_fill_does_not_close_the_trade(self, tmp_path: Path):
        """A REST read sent before the entry filled says flat: it predates the position."""
        rig = holding(tmp_path)
        user_feed.apply_position_read(rig.ex, [], sent_ms=NOW - 1)
        assert rig.ex.st.trades["AAAUSDT"].flat_at_exchange_ms == 0
        user_feed.apply_position_read(rig.ex, [], sent_ms=NOW)
        assert rig.ex.st.trades["AAAUSDT"].flat_at_exchange_ms == NOW


# ---------------------------------------------------------------------------- protection
class TestProtectiveOrders:
    def test_a_stop_triggered_at_the_exchange_becomes_the_trades_exit(self, tmp_path: Path):
        """ALGO_UPDATE TRIGGERED then FINISHED, the market order's trade under the stop's id: the
        trade closes as STOP, the target is cancelled, nothing fetched by REST."""
        rig = started(tmp_path, cfg=PROTECTED)
        attach(rig)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll(2)
        push(rig, algo_event(STOP_ID, "TRIGGERING", aid="7001"),
             algo_event(STOP_ID, "TRIGGERED", aid="7001", ai="555"), account_event("0", t=NOW + 5),
             order_event(STOP_ID, "TRADE", "FILLED", tid=11, last="19.8", price="97.9", cum="19.8", eid="555",
                         side="SELL"),
             algo_event(STOP_ID, "FINISHED", aid="7001", ai="555"))
        rig.poll(2)
        [closed] = rig.bodies(wire.TradeClosed)
        assert (closed.exit_reason, closed.exit_price, closed.learned) == ("STOP", 97.9, True)
        assert ("cancel_algo", "AAAUSDT", TARGET_ID) in rig.calls and rig.calls_of("fills") == []

    def test_a_protective_order_of_someone_else_is_left_alone(self, tmp_path: Path):
        """An ALGO_UPDATE for a clientAlgoId we never placed is counted, not applied."""
        rig = holding(tmp_path)
        attach(rig)
        st = rig.ex.st
        push(rig, algo_event("manual-stop", "NEW"))
        rig.poll()
        assert rig.ex.st is st and stream_stats(rig)["ignored"] == {"foreign_algo": 1}


# ---------------------------------------------------------------------------- what changes nothing
class TestNothingChanges:
    def test_foreign_orders_unknown_events_and_garbage_leave_the_trader_alone(self, tmp_path: Path):
        """A manual order's events, an event type we do not model, malformed frames: the trader's
        state is the same object, nothing is sent; each is counted where it was seen."""
        rig = holding(tmp_path)
        client = attach(rig)
        st = rig.ex.st
        push(rig, order_event("manual-1", "NEW", "NEW", eid="77"),
             order_event("manual-1", "TRADE", "FILLED", tid=50, last="1", price="100", cum="1", eid="77"),
             b'{"e":"STRATEGY_UPDATE","E":1,"su":{}}', b"{not json", b'{"e":"ALGO_UPDATE","E":1,"o":{}}')
        rig.poll()
        assert rig.ex.st is st and rig.calls == [] and rig.published == []
        s = stream_stats(rig)
        assert s["ignored"] == {"foreign_fill": 1, "foreign_order": 2}
        assert s["rejects"] == {"not_json": 1, "missing_field": 1} and s["events"]["STRATEGY_UPDATE"] == 1
        assert client.drain(10) == []

    def test_a_margin_call_is_logged_and_counted(self, tmp_path: Path):
        """MARGIN_CALL is a warning (with its symbols) and a count; it sends nothing."""
        rig = holding(tmp_path)
        attach(rig)
        push(rig, orjson.dumps({"e": "MARGIN_CALL", "E": NOW, "cw": "3.1", "p": [
            {"s": "AAAUSDT", "ps": "BOTH", "pa": "19.8", "mt": "CROSSED", "iw": "0", "mp": "60", "up": "-790",
             "mm": "12"}]}))
        rig.poll()
        assert stream_stats(rig)["applied"] == {"MarginWarning": 1} and rig.calls == []


# ---------------------------------------------------------------------------- resync
class TestResync:
    def test_a_resync_reads_positions_first_then_queries_every_live_order(self, tmp_path: Path):
        """After a gap: the positions, and once they are applied, the protective orders (and any
        live order) by their client ids."""
        rig = started(tmp_path, cfg=PROTECTED)
        rig.broker.submits.append(ENTRY_FILLED)
        rig.ex.on_signal(signal())
        rig.poll(2)
        rig.clear()
        rig.broker.held = [ExchangePosition(symbol="AAAUSDT", qty=Decimal("19.8"))]
        client = attach(rig)
        client._put(uu.Resync(reason="aborted", connection=2), 0)
        rig.ex.poll()
        assert rig.disp.submitted == [(dsp.QUERY, jobs.StreamResync(NOW, "aborted", 2), None)]
        rig.broker.algo_queries += [None, None]
        rig.ex.poll()  # the positions answer: applied, the queries submitted
        rig.ex.poll()  # the queries run
        assert rig.calls[:3] == [("positions",), ("query_algo", "AAAUSDT", STOP_ID),
                                 ("query_algo", "AAAUSDT", TARGET_ID)]
        # the exchange no longer knows the confirmed stop: the position is protected again
        assert rig.calls[3] == ("journal", STOP_ID[:-2] + "-2")
        assert stream_stats(rig)["resyncs_done"] == 1

    def test_events_before_start_up_are_dropped_and_one_resync_follows_it(self, tmp_path: Path):
        """The trader holds nothing before start-up: events are dropped, counted, and one REST
        resync runs once it is ready."""
        rig = make_rig(tmp_path)
        attach(rig)
        push(rig, *ENTRY_TRADES)
        rig.poll(3)  # start-up: the queued events are dropped, a resync is due once ready
        assert rig.ex.ready
        assert stream_stats(rig)["ignored"] == {"before_ready": 3}
        rig.poll()
        assert stream_stats(rig)["resyncs_done"] == 1

    def test_the_position_poll_slows_while_the_stream_is_connected(self, tmp_path: Path):
        """30 s while the stream is connected (the backstop), the execution's own period otherwise."""
        rig = started(tmp_path)
        rig.ex.position_poll_s = 5.0
        assert user_feed.position_poll_s(rig.ex) == 5.0
        client = attach(rig, connected=True)
        assert user_feed.position_poll_s(rig.ex) == user_feed.STREAM_POSITION_POLL_S
        client.connected = False
        assert user_feed.position_poll_s(rig.ex) == 5.0

    def test_the_snapshot_shows_the_streams_counters(self, tmp_path: Path):
        """Connected flag, connections, reconnects, resyncs, events by type, rejects by reason, ignored by reason."""
        rig = started(tmp_path)
        assert rig.ex.snapshot()["user_stream"] is None
        attach(rig)
        push(rig, b"garbage", account_event("0", symbol="BBBUSDT"))
        rig.poll()
        s = stream_stats(rig)
        assert (s["connected"], s["connections"], s["reconnects"], s["resyncs"], s["resyncs_done"]) == (
            True, 0, 0, 0, 0)
        assert (s["events"], s["rejects"], s["ignored"], s["queued"]) == (
            {"ACCOUNT_UPDATE": 1}, {"not_json": 1}, {"untraded_position": 1}, 0)
