"""The page model (services/dashboard/store.py + page.py + live.py): built from journal rows the
orchestrator really writes and from hand-made events, with exact values."""

from __future__ import annotations

import json

import pytest

from common import wire
from services.brain import recovery
from services.dashboard import app, page, store
from services.dashboard.live import Hist, Live
from services.orchestrator import db

NS = 1_000_000
T0 = 1_765_000_000_000  # ms
SIG = "BTCUSDT-1765000000000-BUY"


def env(body, seq=1, event_ms=T0, send_ns=None, publisher="brain:7"):
    return wire.Envelope(wire.SCHEMA_VERSION, publisher, seq, event_ms * NS, send_ns or event_ms * NS, body)


def algo(role, state, trigger, n=1, trade=SIG):
    return wire.AlgoOrderUpdate(client_algo_id=f"p{role[0].lower()}-{trade}-{n}", symbol="BTCUSDT", side="SELL",
                                order_type="STOP_MARKET" if role == "STOP" else "TAKE_PROFIT_MARKET",
                                trigger_price=trigger, state=state, trade_id=trade, role=role)


JOURNAL = [
    wire.SignalGenerated(signal_id=SIG, symbol="BTCUSDT", side="BUY", entry=97_000.0, stop=96_500.0, target=98_000.0,
                         confidence=0.62, cold=True),
    wire.OrderRequest(client_order_id=f"ae-{SIG}-0", symbol="BTCUSDT", side="BUY", order_type="MARKET", qty=0.02,
                      signal_id=SIG),
    wire.OrderUpdate(client_order_id=f"ae-{SIG}-0", exchange_order_id="4100000001", symbol="BTCUSDT", status="FILLED",
                     filled_qty=0.02, avg_price=97_010.5),
    wire.Fill(client_order_id=f"ae-{SIG}-0", exchange_order_id="4100000001", trade_id="1", symbol="BTCUSDT",
              side="BUY", qty=0.02, price=97_010.5, fee=0.970105),
    wire.Position(symbol="BTCUSDT", qty=0.02, entry_price=97_010.5, unrealized_pnl=0.0),
    algo("STOP", "SENT", "96500.0"), algo("STOP", "LIVE", "96500.0"), algo("TARGET", "LIVE", "98000.0"),
    wire.RiskReject(symbol="ETHUSDT", reason="MAX_POSITIONS", detail="3 held", signal_id="e1"),
    wire.RiskReject(symbol="SOLUSDT", reason="PAUSED", detail="entries paused by 127.0.0.1 (page)", signal_id="s1"),
    wire.RiskReject(symbol="XRPUSDT", reason="PAUSED", detail="entries paused by 127.0.0.1 (page)", signal_id="x1"),
    wire.TradeClosed(trade_id="old", symbol="ETHUSDT", side="SELL", qty=1.0, entry_price=3_000.0, exit_price=2_990.0,
                     closed_ms=T0 - 60_000, pnl=10.0, fees=3.0, exit_reason="TARGET"),
    wire.Control(request_id="0123456789abcdef", command=wire.ControlCommand.PAUSE, requested_ms=T0, client="127.0.0.1",
                 via="page", status=wire.ControlStatus.DONE, detail="entries paused"),
    wire.ModelState(name=wire.CONTROL_STATE_NAME, version=1,
                    state=b'{"v": 1, "paused": true, "by": "127.0.0.1 (page)", "at_ms": 1765000000000}'),
]


@pytest.fixture
def view(tmp_path):
    conn = db.connect(tmp_path / "aegis.sqlite3")
    for i, body in enumerate(JOURNAL):
        db.write_batch(conn, db.rows_for(env(body, seq=i + 1, event_ms=T0 + i)))
    ro = store.connect(tmp_path / "aegis.sqlite3")
    yield store.read(ro)
    ro.close()
    conn.close()


def beat(service, counters, pid=11, state="RUNNING", send_ms=T0):
    return env(wire.Heartbeat(service=service, pid=pid, uptime_s=5.0, state=state, counters=counters),
               send_ns=send_ms * NS, publisher=f"{service}:{pid}")


def build(view, live=None, sup=None, now_s=100.0):
    return page.build(view=view, live=live or Live(), sup=sup, control={"enabled": True}, now_ms=T0 + 5_000,
                       now_s=now_s, mode="demo")


class TestFromTheDatabase:
    def test_open_position_has_its_plan_and_which_orders_the_exchange_holds(self, view):
        """Entry and qty from positions; stop/target from the live algo orders; HELD = LIVE at the exchange."""
        live = Live()
        live.apply(env(wire.TickUpdate(symbol="BTCUSDT", event_ms=T0, last_price=97_110.5)), 1.0)
        (p,) = build(view, live)["positions"]
        assert p == {"symbol": "BTCUSDT", "side": "LONG", "qty": 0.02, "entry": 97_010.5, "mark": 97_110.5,
                     "mark_ms": T0, "stop": 96_500.0, "target": 98_000.0, "stop_state": "HELD", "target_state": "HELD",
                     "upnl": pytest.approx(2.0), "r": pytest.approx(100.0 / 510.5), "confidence": 0.62,
                     "trade_id": SIG, "opened_ms": T0 + 1}

    def test_without_exchange_orders_the_plan_is_the_signals_and_protection_is_local(self):
        """No algo order for the trade: the signal's stop/target, watched by the brain only."""
        p = page.position_row({"symbol": "BTCUSDT", "qty": -0.5, "entry_price": 100.0, "unrealized_pnl": -1.5,
                                "plan": {"signal_id": "s", "created_ns": 0, "stop": 101.0, "target": 98.0,
                                         "confidence": 0.5}, "algos": []}, None)
        assert (p["side"], p["stop"], p["target"], p["stop_state"], p["target_state"], p["upnl"], p["r"]) == (
            "SHORT", 101.0, 98.0, "LOCAL", "LOCAL", -1.5, None)

    def test_pnl_is_realized_minus_fees_plus_unrealized(self, view):
        """Realized from trades, fees from every fill, unrealized at the latest price."""
        live = Live()
        live.apply(env(wire.TickUpdate(symbol="BTCUSDT", event_ms=T0, mark=97_060.5)), 1.0)
        a = build(view, live)["account"]
        assert (a["realized"], a["fees"], a["unrealized"]) == (10.0, 0.970105, pytest.approx(1.0))
        assert a["net"] == pytest.approx(10.0 - 0.970105 + 1.0)
        assert (a["positions"], a["orders"], a["open_orders"], a["fills"], a["signals"], a["risk_rejects"],
                a["trades"], a["wins"]) == (1, 1, 0, 1, 1, 3, 1, 1)

    def test_orders_fills_signals_and_rejections_as_the_journal_has_them(self, view):
        m = build(view)
        assert m["orders"] == [{"time_ms": T0 + 1, "cid": f"ae-{SIG}-0", "symbol": "BTCUSDT", "side": "BUY",
                                "type": "MARKET", "qty": 0.02, "price": 0.0, "status": "FILLED", "filled": 0.02,
                                "avg": 97_010.5, "reduce_only": False}]
        assert m["fills"] == [{"time_ms": T0 + 3, "symbol": "BTCUSDT", "side": "BUY", "qty": 0.02, "price": 97_010.5,
                               "fee": 0.970105, "liquidity": "taker", "cid": f"ae-{SIG}-0", "trade_id": "1"}]
        (s,) = m["signals"]
        assert (s["id"], s["confidence"], s["cold"], s["outcome"]) == (SIG, 0.62, True, "ORDER FILLED")
        assert m["rejects"]["by_reason"] == [["PAUSED", 2], ["MAX_POSITIONS", 1]]
        assert [r["symbol"] for r in m["rejects"]["recent"]] == ["XRPUSDT", "SOLUSDT", "ETHUSDT"]

    def test_pause_and_commands_come_from_the_journal_when_the_brain_is_silent(self, view):
        """No fresh brain heartbeat: the saved pause row says paused, by whom and when."""
        m = build(view)
        assert (m["trading"]["paused"], m["trading"]["paused_by"], m["trading"]["paused_at_ms"]) == (
            True, "127.0.0.1 (page)", T0)
        assert m["controls"] == [{"time_ms": T0, "command": "PAUSE", "symbol": "", "client": "127.0.0.1", "via": "page",
                                  "status": "DONE", "detail": "entries paused"}]
        assert m["equity"]["realized_curve"] == [[T0 - 60_000, 7.0]]

    def test_the_brains_fresh_heartbeat_wins_over_the_saved_state(self, view):
        """A live brain says not paused and halted: the page shows what the brain holds now."""
        live = Live()
        live.apply(beat("brain", {"paused": 0.0, "halted": 1.0, "equity": 10_012.5}), 99.0)
        t = build(view, live, now_s=100.0)["trading"]
        assert (t["paused"], t["halted"], t["brain_seen"]) == (False, True, True)

    def test_the_page_model_is_plain_json(self, view):
        """What the SSE stream sends parses back to the same numbers (NaN would not)."""
        m = build(view)
        assert json.loads(app.to_json(m)) == json.loads(json.dumps(m))
        assert json.loads(app.to_json({"x": float("nan"), "y": [float("inf"), 1.5]})) == {"x": None, "y": [None, 1.5]}

    def test_the_kill_switch_row_name_is_the_brains(self):
        """store reads the row the brain saves: the two names must stay one."""
        assert store.RISK_STATE_NAME == recovery.RISK_NAME


class TestServices:
    SUP = {"heartbeat_timeout_s": 10.0, "ticks_per_s": 4512.0, "uptime_s": 42.0,
           "ring": {"written": 189_400, "lag": 3, "lost": 0},
           "services": {
               "orchestrator": {"pid": 20, "running": True, "ready": True, "restarts": 0, "warm_restarts": 0,
                                "spare": "warm", "heartbeat_age_s": 0.4},
               "brain": {"pid": 31, "running": True, "ready": False, "restarts": 2, "warm_restarts": 2,
                         "spare": "warm", "heartbeat_age_s": 0.1},
               "feed": {"pid": 40, "running": False, "ready": False, "restarts": 1, "warm_restarts": 0,
                        "spare": "none", "heartbeat_age_s": None},
               "dashboard": {"pid": 50, "running": True, "ready": True, "restarts": 0, "warm_restarts": 0,
                             "spare": "warming", "heartbeat_age_s": None}}}

    def test_states_show_restarts_as_they_happen(self):
        """Supervisor's view: a dead service RESTARTING, a new one STARTING, a live one its heartbeat's state."""
        live = Live()
        live.apply(beat("orchestrator", {"reconcile_ok": 1.0}, pid=20, state="DEGRADED"), 99.0)
        live.apply(beat("brain", {}, pid=30), 99.0)  # the previous brain's last beat
        rows = {r["name"]: r for r in page.services(self.SUP, live, 100.0)}
        assert [r["name"] for r in page.services(self.SUP, live, 100.0)] == [
            "orchestrator", "brain", "feed", "dashboard"]
        assert (rows["orchestrator"]["state"], rows["brain"]["state"], rows["feed"]["state"],
                rows["dashboard"]["state"]) == ("DEGRADED", "STARTING", "RESTARTING", "UP")
        assert (rows["brain"]["restarts"], rows["brain"]["warm_restarts"], rows["brain"]["pid"],
                rows["brain"]["uptime_s"]) == (2, 2, 31, None)

    def test_without_a_supervisor_heartbeats_decide(self):
        """docker compose: no /status; a service silent for 3 s is SILENT, restarts unknown."""
        live = Live()
        live.apply(beat("feed", {}, pid=40), 96.0)
        live.apply(beat("brain", {}, pid=31), 99.5)
        rows = {r["name"]: r for r in page.services(None, live, 100.0)}
        assert (rows["feed"]["state"], rows["brain"]["state"], rows["brain"]["restarts"]) == ("SILENT", "RUNNING", None)

    def test_pipeline_numbers_come_from_the_supervisor_snapshot(self, view):
        p = build(view, sup=self.SUP)["pipeline"]
        assert (p["ticks_per_s"], p["ring_written"], p["ring_lag"], p["ring_lost"], p["uptime_s"]) == (
            4512.0, 189_400, 3, 0, 42.0)


class TestLive:
    def test_latency_buckets_from_the_brains_cumulative_counters(self):
        """latency_le_us:<b> are cumulative: the page gets counts per bucket and the overflow."""
        h = page.latency_hist({"latency_le_us:10": 5.0, "latency_le_us:100": 12.0, "latency_le_us:1000": 12.0,
                                "latency_count": 15.0, "latency_p50_us": 9.0, "latency_p99_us": 1800.0})
        assert h == {"bounds": [10.0, 100.0, 1000.0], "counts": [5, 7, 0, 3], "count": 15, "p50": 9.0, "p99": 1800.0}
        assert page.latency_hist({"ticks_read": 3.0}) is None

    def test_signal_to_order_and_order_to_fill_from_envelope_times(self):
        """Measured on send times: signal 0 ms, its entry order 7 ms later, the first fill 30 ms after."""
        live = Live()
        live.apply(env(wire.SignalGenerated(signal_id="s", symbol="BTCUSDT", side="BUY", entry=1.0, stop=0.9,
                                            target=1.2, confidence=0.5), send_ns=1_000 * NS), 1.0)
        live.apply(env(wire.OrderRequest(client_order_id="ae-s-0", symbol="BTCUSDT", side="BUY", order_type="MARKET",
                                         qty=1.0, signal_id="s"), send_ns=1_007 * NS), 1.0)
        for tid in ("1", "2"):  # only the first fill counts
            live.apply(env(wire.Fill(client_order_id="ae-s-0", exchange_order_id="9", trade_id=tid, symbol="BTCUSDT",
                                     side="BUY", qty=0.5, price=1.0), send_ns=1_037 * NS), 1.0)
        assert live.signal_to_order.to_dict() == {"bounds": list(Hist().bounds), "counts": [0, 0, 0, 1] + [0] * 9,
                                                  "count": 1, "mean": 7.0}
        assert live.order_to_fill.counts[5] == 1 and live.order_to_fill.total == 1

    def test_equity_samples_and_ticks_per_second(self):
        """Each brain beat with an equity adds a point; the ring's rate from the orchestrator's beats."""
        live = Live()
        live.apply(beat("brain", {"equity": 10_000.0}, send_ms=T0), 1.0)
        live.apply(beat("brain", {"equity": 0.0}, send_ms=T0 + 1_000), 2.0)  # not known yet: no point
        live.apply(beat("brain", {"equity": 10_001.5}, send_ms=T0 + 2_000), 3.0)
        live.apply(beat("orchestrator", {"ring_written": 1_000.0}), 10.0)
        live.apply(beat("orchestrator", {"ring_written": 5_500.0}), 11.0)
        assert list(live.equity) == [(T0, 10_000.0), (T0 + 2_000, 10_001.5)]
        assert live.ticks_per_s() == 4_500.0
        assert live.events == {"HEARTBEAT": 5}


class TestTickToTrade:
    def test_entries_and_exits_are_summed_per_bucket(self):
        """The brain's ttt_le_us:<kind>:<transport>:<bound> buckets (cumulative) as one histogram."""
        c = {"ttt_le_us:exit:ws:100": 2.0, "ttt_le_us:exit:ws:1000": 3.0, "ttt_count:exit:ws": 4.0,
             "ttt_sum_us:exit:ws": 2_600.0, "ttt_le_us:entry:rest:100": 0.0, "ttt_le_us:entry:rest:1000": 1.0,
             "ttt_count:entry:rest": 1.0, "ttt_sum_us:entry:rest": 400.0, "latency_le_us:10": 5.0}
        assert page.tick_to_trade(c) == {"bounds": [100.0, 1000.0], "counts": [2, 2, 1], "count": 5, "mean": 600.0,
                                          "kinds": {"entry/rest": 1, "exit/ws": 4}}
        assert page.tick_to_trade({"latency_le_us:10": 5.0}) is None
