"""Telegram's pure part (services/dashboard/telegram_core.py): when an alert is raised (once per
change), the daily summary's schedule, and /closeall's confirmation."""

from __future__ import annotations

import msgspec

from common import wire
from services.dashboard import telegram_core as core

DAY = 86_400_000
T0 = 20_000 * DAY + 10 * 3_600_000  # a day at 10:00 UTC
CFG = core.AlertConfig(feed_stale_ms=30_000, restart_intensity=10, restart_period_ms=60_000, summary_hour_utc=0)


def page(*, halted=False, reconcile_ok=True, feed="RUNNING", stream="STREAMING", restarts=0, closes=()):
    return {"now_ms": T0, "mode": "demo",
            "trading": {"halted": halted, "halt_reason": "DRAWDOWN", "halt_detail": "drawdown 10.20% from peak",
                        "reconcile_ok": reconcile_ok, "paused": False, "paused_by": ""},
            "services": [{"name": "brain", "state": "RUNNING", "restarts": restarts},
                         {"name": "feed", "state": feed, "restarts": 0}],
            "pipeline": {"feed": {"state": stream} if stream else None},
            "account": {"equity": 9_000.0, "net": -12.5, "positions": 0, "signals": 4, "realized": -10.0,
                        "fees": 2.5, "unrealized": 0.0, "trades": 2, "wins": 1, "orders": 2, "risk_rejects": 1},
            "equity": {"closes": [list(c) for c in closes]}, "rejects": {"by_reason": [["PAUSED", 3]]},
            "positions": []}


def run(pages, start=core.AlertState(), step_ms=1_000, rejected=()):
    st, out = start, []
    for i, m in enumerate(pages):
        st, texts = core.alerts(CFG, st, m, list(rejected) if i == 0 else [], T0 + i * step_ms)
        out.append(texts)
    return st, out


class TestAlerts:
    def test_the_kill_switch_is_told_once_when_it_trips_and_once_when_cleared(self):
        _, out = run([page(), page(halted=True), page(halted=True), page()])
        assert out == [[], ["KILL SWITCH TRIPPED: DRAWDOWN - drawdown 10.20% from peak. No new entries; "
                            "exits, stops and targets go on."], [], ["Kill switch cleared: entries allowed again."]]

    def test_reconciliation_failing_and_back(self):
        _, out = run([page(reconcile_ok=False), page(reconcile_ok=False), page(reconcile_ok=True)])
        assert [len(o) for o in out] == [1, 0, 1]
        assert out[0][0].startswith("RECONCILIATION FAILING") and out[2] == ["Reconciliation OK again."]

    def test_the_feed_is_stale_only_after_feed_stale_s(self):
        """Silent for 29 s: nothing; at 30 s: one alert; streaming again: one all-clear."""
        pages = [page(feed="SILENT")] * 31 + [page()]
        _, out = run(pages)
        assert [i for i, o in enumerate(out) if o] == [30, 31]
        assert out[30] == ["FEED STALE for 30 s (feed SILENT, stream STREAMING): no fresh market data, no new entries."]
        assert out[31] == ["Feed streaming again."]

    def test_a_restart_storm_is_told_before_the_limit(self):
        """7 restarts (70 % of 10) within 60 s: one warning, not one per further restart."""
        _, out = run([page(restarts=n) for n in (0, 2, 4, 6, 7, 8, 9)])
        assert [i for i, o in enumerate(out) if o] == [4]
        assert out[4] == ["RESTART LIMIT NEAR: brain restarted 7 times in the last 60 s; at 11 the whole stack stops."]

    def test_slow_restarts_are_not_a_storm(self):
        _, out = run([page(restarts=n) for n in range(12)], step_ms=30_000)
        assert out == [[]] * 12

    def test_rejected_orders_are_told(self):
        _, out = run([page()], rejected=[("ETHUSDT", "ae-e1-0", "Margin is insufficient.")])
        assert out == [["ORDER REJECTED by the exchange: ETHUSDT ae-e1-0: Margin is insufficient."]]

    def test_the_daily_summary_goes_once_a_day_at_its_hour(self):
        """Started after today's hour: the first summary is tomorrow's, then one a day."""
        st, out = run([page()])
        assert out == [[]]
        m = page(closes=[(T0 + 12 * 3_600_000, 7.5, "BTCUSDT", "TARGET"), (T0 - DAY, -3.0, "ETHUSDT", "STOP")])
        st, texts = core.alerts(CFG, st, m, [], T0 + DAY - 10 * 3_600_000)  # the next day, 00:00 UTC
        assert [t.splitlines()[0] for t in texts] == ["AEGIS daily summary, 2024-10-05 00:00 UTC"]
        assert texts[0].splitlines()[2] == "last 24 h: 1 trades closed, 1 won, net +7.50 USDT after fees"
        _, again = core.alerts(CFG, st, m, [], T0 + DAY - 9 * 3_600_000)
        assert again == []


class TestConfirm:
    M = {"positions": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT"}]}

    def test_closeall_needs_this_chats_code_in_time_once(self):
        pending, text = core.ask_close_all({}, 7, self.M, 1_000, "0421", 60_000)
        assert text == "Close ALL 2 positions (BTCUSDT, ETHUSDT)? Send /confirm 0421 within 60 s."
        assert core.confirm(pending, 8, ["0421"], 2_000)[1] is False  # another chat
        pending, go, text = core.confirm(pending, 7, ["0420"], 2_000)
        assert (go, text) == (False, "Wrong code: send /confirm followed by the code /closeall gave.")
        pending, go, _ = core.confirm(pending, 7, ["0421"], 2_000)
        assert go is True and pending == {}
        assert core.confirm(pending, 7, ["0421"], 2_000)[1] is False  # once

    def test_an_expired_confirmation_does_nothing(self):
        pending, _ = core.ask_close_all({}, 7, self.M, 1_000, "0421", 60_000)
        pending, go, text = core.confirm(pending, 7, ["0421"], 61_001)
        assert (go, pending) == (False, {}) and text.startswith("Too late")

    def test_answers_and_symbols(self):
        cmd = wire.Control(request_id="0123456789abcdef", command=wire.ControlCommand.PAUSE, requested_ms=1)
        done = msgspec.structs.replace(cmd, status=wire.ControlStatus.DONE, detail="entries paused")
        assert core.answer_text("PAUSE", done) == "PAUSE: DONE - entries paused"
        assert core.answer_text("PAUSE", None).startswith("PAUSE: no answer from the brain in time")
        assert core.answer_text("PAUSE", "unreachable").startswith("PAUSE: NOT SENT")
        assert [core.parse_symbol(a) for a in (["btcusdt"], ["BTC/USDT"], [], ["A", "B"])] == ["BTCUSDT", None, None, None]
