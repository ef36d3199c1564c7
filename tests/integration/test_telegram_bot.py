"""The Telegram bot (services/dashboard/telegram_bot.py) against a local fake of the Bot API.

python-telegram-bot talks to an aiohttp server on 127.0.0.1 that answers getMe, deleteWebhook,
getUpdates and sendMessage the way the Bot API documents them (``{"ok": true, "result": ...}``),
never to Telegram. The dashboard around the bot is a stand-in holding a page model built by
``page.build`` and a control channel that records each command and answers DONE. Checked:
the commands' answers, /closeall's confirmation, that a stranger's chat is ignored (counted,
no answer, no command), that updates waiting at start are dropped, that alerts go to every
configured chat, and that the bot's token appears in no log line.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import msgspec
import pytest
from aiohttp import web

from common import config, wire
from common import log as log_mod
from services.dashboard import page
from services.dashboard.live import Live
from services.dashboard.store import DbView
from services.dashboard.telegram_bot import TelegramBot

pytestmark = pytest.mark.integration

TOKEN = "123456789:AAFakeTokenForTheLocalBotApi_x1y2z3"
OURS, OTHER, STRANGER = 1001, -1002, 666
NOW_MS = 1_765_000_000_000


class FakeBotApi:
    """The Bot API methods python-telegram-bot calls, on 127.0.0.1."""

    def __init__(self) -> None:
        self.updates: list[dict] = []
        self.sent: list[dict] = []
        self.calls: list[str] = []
        self.paths: list[str] = []
        self._next = 1

    def push(self, chat: int, text: str) -> None:
        cmd = text.split()[0]
        self.updates.append({"update_id": self._next, "message": {
            "message_id": self._next, "date": int(time.time()), "chat": {"id": chat, "type": "private"},
            "from": {"id": chat, "is_bot": False, "first_name": "op"}, "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(cmd)}] if cmd.startswith("/") else []}})
        self._next += 1

    async def handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        self.paths.append(request.path)
        if token != TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        form = dict(await request.post()) if request.can_read_body else {}
        params = {k: _value(v) for k, v in form.items()}
        self.calls.append(method)
        if method == "getMe":
            result: Any = {"id": 42, "is_bot": True, "first_name": "AEGIS", "username": "aegis_test_bot",
                           "can_join_groups": False, "can_read_all_group_messages": False,
                           "supports_inline_queries": False}
        elif method == "deleteWebhook":
            if params.get("drop_pending_updates"):
                self.updates.clear()
            result = True
        elif method == "getUpdates":
            offset = int(params.get("offset", 0) or 0)
            deadline = time.monotonic() + min(float(params.get("timeout", 0) or 0), 0.5)
            while True:
                result = [u for u in self.updates if u["update_id"] >= offset]
                if result or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.05)
        elif method == "sendMessage":
            self.sent.append({"chat_id": int(params["chat_id"]), "text": params["text"]})
            result = {"message_id": 9000 + len(self.sent), "date": int(time.time()),
                      "chat": {"id": int(params["chat_id"]), "type": "private"}, "text": params["text"]}
        else:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.json_response({"ok": True, "result": result})


def _value(v: Any) -> Any:
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return v


def page_model(*, halted=False, reconcile_ok=True) -> dict:
    view = DbView(positions=[{"symbol": "BTCUSDT", "qty": 0.02, "entry_price": 97_000.0, "unrealized_pnl": 0.0,
                              "realized_pnl": 0.0, "updated_ns": 0,
                              "plan": {"signal_id": "s1", "created_ns": NOW_MS * 1_000_000, "stop": 96_500.0,
                                       "target": 98_000.0, "confidence": 0.6},
                              "algos": [{"role": "STOP", "trade_id": "s1", "state": "LIVE", "trigger_price": "96500"}]}],
                  totals={"realized_pnl": 12.5, "fees": 2.0, "trades": 3, "wins": 2, "orders": 7, "signals": 9},
                  risk_state={"halted": halted, "halt_reason": "DAILY_LOSS", "halt_detail": "lost 260.00 USDT today"})
    live = Live()
    live.apply(wire.Envelope(wire.SCHEMA_VERSION, "orchestrator:1", 1, 1, 1, wire.Heartbeat(
        service="orchestrator", pid=1, uptime_s=1.0, counters={"reconcile_ok": 1.0 if reconcile_ok else 0.0})),
        99.0)
    return page.build(view=view, live=live, sup=None, control={"enabled": True}, now_ms=NOW_MS, now_s=100.0,
                       mode="demo")


class FakeChannel:
    def __init__(self) -> None:
        self.commands: list[wire.Control] = []

    async def send(self, cmd: wire.Control, timeout_s: float):
        self.commands.append(cmd)
        return msgspec.structs.replace(cmd, status=wire.ControlStatus.DONE, detail="done by the fake brain")


class FakeDashboard:
    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.params = type("P", (), {"refresh_s": 0.1, "control_timeout_s": 1.0})()
        self.model = page_model()
        self.live = Live()
        self.channel = FakeChannel()
        self.soon = False

    async def refresh(self) -> None:
        return None


async def until(what: str, fn, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if fn():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_bot_answers_obeys_only_its_chats_confirms_closeall_and_alerts(capsys):
    """Commands answered from the page model, control commands journaled as telegram:<chat>,
    /closeall only after /confirm <code>, a stranger ignored, alerts to every chat, token unlogged."""
    # as the dashboard's main does: the bot's token among the secrets every log line is scrubbed of
    log_mod.configure(level="debug", fmt="json", service="dashboard", secrets=(TOKEN,))
    asyncio.run(_scenario())
    err = capsys.readouterr().err
    assert TOKEN not in err and "dashboard.telegram_stranger" in err


async def _scenario() -> None:
    api = FakeBotApi()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    cfg = config.load(None, {"AEGIS_TELEGRAM__ENABLED": "1", "AEGIS_TELEGRAM__CHAT_IDS": f"{OURS},{OTHER}",
                             "AEGIS_TELEGRAM__API_URL": f"http://127.0.0.1:{port}/bot",
                             "AEGIS_TELEGRAM__SUMMARY_HOUR_UTC": "-1"})
    dash = FakeDashboard()
    bot = TelegramBot(cfg, TOKEN, dash)
    api.push(OURS, "/closeall")  # waiting before the bot starts: must be dropped, never run
    bot.start()
    try:
        await until("the bot polling", lambda: "getUpdates" in api.calls)
        assert api.calls[:2] == ["getMe", "deleteWebhook"] and api.sent == []

        def replies(chat):
            return [m["text"] for m in api.sent if m["chat_id"] == chat]

        api.push(OURS, "/status")
        await until("/status", lambda: len(replies(OURS)) == 1)
        status = replies(OURS)[0]
        assert status.splitlines()[1:4] == ["entries: on", "kill switch: armed", "reconciliation: ok"]
        api.push(OURS, "/positions")
        await until("/positions", lambda: len(replies(OURS)) == 2)
        assert replies(OURS)[1] == ("1 open:\nBTCUSDT LONG 0.02 @ 97,000.00, now -, uPnL +0.00; "
                                    "stop 96,500.00 [HELD], target 98,000.00 [LOCAL]")
        api.push(OURS, "/pause")
        await until("/pause", lambda: len(replies(OURS)) == 3)
        assert replies(OURS)[2] == "PAUSE: DONE - done by the fake brain"
        (pause,) = dash.channel.commands
        assert (pause.command, pause.client, pause.via, pause.status) == (
            wire.ControlCommand.PAUSE, f"telegram:{OURS}", "telegram", wire.ControlStatus.REQUESTED)
        api.push(OURS, "/close btcusdt")
        await until("/close", lambda: len(replies(OURS)) == 4)
        assert (dash.channel.commands[-1].command, dash.channel.commands[-1].symbol) == (
            wire.ControlCommand.CLOSE, "BTCUSDT")

        # /closeall: nothing happens until the right code comes back
        api.push(OURS, "/closeall")
        await until("/closeall's question", lambda: len(replies(OURS)) == 5)
        question = replies(OURS)[4]
        assert question.startswith("Close ALL 1 positions (BTCUSDT)? Send /confirm ")
        code = question.split("/confirm ")[1].split()[0]
        api.push(OURS, "/confirm 99999")
        await until("a wrong code", lambda: len(replies(OURS)) == 6)
        assert replies(OURS)[5].startswith("Wrong code") and len(dash.channel.commands) == 2
        api.push(OTHER, f"/confirm {code}")  # another allowed chat: not its question
        await until("the other chat's answer", lambda: len(replies(OTHER)) == 1)
        assert replies(OTHER)[0] == "Nothing to confirm (send /closeall first)." and len(dash.channel.commands) == 2
        api.push(OURS, f"/confirm {code}")
        await until("the confirmed close all", lambda: len(replies(OURS)) == 7)
        assert dash.channel.commands[-1].command is wire.ControlCommand.CLOSE_ALL
        assert replies(OURS)[6] == "CLOSE_ALL: DONE - done by the fake brain"

        # a stranger: no answer, no command, counted
        before = len(api.sent)
        api.push(STRANGER, "/closeall")
        api.push(STRANGER, "/status")
        await until("the stranger counted", lambda: bot.counts["telegram_ignored"] == 2)
        await asyncio.sleep(0.3)
        assert len(api.sent) == before and len(dash.channel.commands) == 3

        # alerts: the kill switch trips and reconciliation fails -> both chats hear it once
        dash.model = page_model(halted=True, reconcile_ok=False)
        dash.live.rejected_orders.append(("ETHUSDT", "ae-e1-0", "Margin is insufficient."))
        await until("the alerts", lambda: sum(1 for m in api.sent if m["text"].startswith("KILL SWITCH")) == 2)
        await asyncio.sleep(0.4)  # a few more looks: nothing new to say
        alerts = [m["text"].split(":")[0] for m in api.sent if m["chat_id"] == OTHER][1:]
        assert alerts == ["KILL SWITCH TRIPPED", "RECONCILIATION FAILING", "ORDER REJECTED by the exchange"]
        assert bot.counts["telegram_alerts"] == 3
        assert all(p.startswith(f"/bot{TOKEN}/") for p in api.paths)
    finally:
        await bot.close()
        await runner.cleanup()
