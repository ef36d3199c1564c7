"""Telegram, the shell: python-telegram-bot polling the Bot API, run inside the dashboard.

Why inside the dashboard: it already holds everything the bot needs, the live page model
(``Dashboard.model``, fresh each second) and the control channel to the brain (journaled, the
same path as the page's buttons), so a second process would only duplicate both.

Off unless ``telegram.enabled``, at least one ``telegram.chat_ids`` and a token
(``AEGIS_TELEGRAM_TOKEN``): then it says so once and stays off. Only the configured chats are
obeyed and alerted; a message from any other chat is counted and ignored (no answer: a
stranger learns nothing, not even that a bot listens). Updates that waited while the stack
was down are dropped at start: a stale ``/closeall`` must never run. Commands reach the brain
as ``wire.Control`` from ``telegram:<chat id>``, journaled like the page's. The bot token is in
the log redaction from the start (the HTTP library logs request URLs, which contain it).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import structlog

from common import wire
from common.config import AegisConfig
from services.dashboard import telegram_core as core

log = structlog.get_logger(__name__)
RETRY_S = 30.0  # the Bot API unreachable at start: try again this often
C = wire.ControlCommand


class TelegramBot:
    def __init__(self, cfg: AegisConfig, token: str, dash: Any) -> None:
        self.cfg = cfg.telegram
        self.token = token
        self.dash = dash
        self.chats = tuple(cfg.telegram.chat_ids)
        sc = cfg.supervisor
        self.alert_cfg = core.AlertConfig(feed_stale_ms=int(cfg.telegram.feed_stale_s * 1000),
                                          restart_intensity=sc.restart_intensity,
                                          restart_period_ms=int(sc.restart_period_s * 1000),
                                          summary_hour_utc=cfg.telegram.summary_hour_utc)
        self.alert_state = core.AlertState()
        self.pending: dict[int, core.Pending] = {}
        self.app: Any = None
        self.counts = {"telegram_commands": 0, "telegram_ignored": 0, "telegram_alerts": 0, "telegram_errors": 0}
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
        while not self.dash.stopping.is_set():
            try:
                await self._start_app()
                break
            except Exception as exc:  # the Bot API unreachable, a refused token: say so, try later
                self.counts["telegram_errors"] += 1
                log.error("dashboard.telegram_start_failed", error=str(exc), retry_s=RETRY_S)
                await self._shutdown_app()
                try:
                    await asyncio.wait_for(self.dash.stopping.wait(), RETRY_S)
                except asyncio.TimeoutError:
                    pass
        if self.app is None:
            return
        log.info("dashboard.telegram_ready", chats=len(self.chats))
        while not self.dash.stopping.is_set():
            await self.look()
            try:
                await asyncio.wait_for(self.dash.stopping.wait(), self.dash.params.refresh_s)
            except asyncio.TimeoutError:
                pass

    async def _start_app(self) -> None:
        from telegram.ext import Application, CommandHandler, MessageHandler, filters

        app = (Application.builder().token(self.token).base_url(self.cfg.api_url)
               .base_file_url(self.cfg.api_url.replace("/bot", "/file/bot"))
               .get_updates_read_timeout(20.0).build())
        allowed = filters.Chat(chat_id=list(self.chats))
        for name, fn in (("status", self.cmd_status), ("positions", self.cmd_positions), ("profit", self.cmd_profit),
                         ("pause", self.cmd_pause), ("resume", self.cmd_resume), ("close", self.cmd_close),
                         ("closeall", self.cmd_closeall), ("confirm", self.cmd_confirm), ("help", self.cmd_help),
                         ("start", self.cmd_help)):
            app.add_handler(CommandHandler(name, fn, filters=allowed))
        app.add_handler(MessageHandler(~allowed, self.stranger))
        self.app = app
        await app.initialize()
        await app.start()
        await app.updater.start_polling(poll_interval=0.2, timeout=10, drop_pending_updates=True)

    async def _shutdown_app(self) -> None:
        app, self.app = self.app, None
        if app is None:
            return
        for step in (lambda: app.updater.stop() if app.updater.running else None,
                     lambda: app.stop() if app.running else None, app.shutdown):
            try:
                coro = step()
                if coro is not None:
                    await coro
            except Exception as exc:  # stopping: log and go on with the next step
                log.warning("dashboard.telegram_stop_failed", error=str(exc))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._shutdown_app()

    # ------------------------------------------------------------------ alerts
    async def look(self) -> None:
        """One look at the page model: the alerts it raises go to every configured chat."""
        if not self.dash.model:
            return
        rejected = []
        while self.dash.live.rejected_orders:
            rejected.append(self.dash.live.rejected_orders.popleft())
        self.alert_state, texts = core.alerts(self.alert_cfg, self.alert_state, self.dash.model, rejected,
                                              time.time_ns() // 1_000_000)
        for text in texts:
            self.counts["telegram_alerts"] += 1
            log.warning("dashboard.alert", text=text.splitlines()[0])
            await self.send_all(text)

    async def send_all(self, text: str) -> None:
        if self.app is None:
            return
        for chat in self.chats:
            try:
                await self.app.bot.send_message(chat_id=chat, text=text)
            except Exception as exc:  # one chat unreachable must not stop the others
                self.counts["telegram_errors"] += 1
                log.warning("dashboard.telegram_send_failed", chat=chat, error=str(exc))

    # ------------------------------------------------------------------ commands
    async def _fresh(self) -> dict:
        await self.dash.refresh()
        return self.dash.model

    async def _reply(self, update: Any, text: str) -> None:
        self.counts["telegram_commands"] += 1
        await update.effective_message.reply_text(text)

    async def stranger(self, update: Any, context: Any) -> None:
        self.counts["telegram_ignored"] += 1
        chat = update.effective_chat.id if update.effective_chat else None
        log.warning("dashboard.telegram_stranger", chat=chat, total=self.counts["telegram_ignored"])

    async def cmd_help(self, update: Any, context: Any) -> None:
        await self._reply(update, core.HELP)

    async def cmd_status(self, update: Any, context: Any) -> None:
        await self._reply(update, core.status_text(await self._fresh()))

    async def cmd_positions(self, update: Any, context: Any) -> None:
        await self._reply(update, core.positions_text(await self._fresh()))

    async def cmd_profit(self, update: Any, context: Any) -> None:
        await self._reply(update, core.profit_text(await self._fresh()))

    async def _command(self, update: Any, command: wire.ControlCommand, symbol: str = "") -> None:
        chat = update.effective_chat.id
        cmd = wire.Control(request_id=secrets.token_hex(8), command=command, requested_ms=time.time_ns() // 1_000_000,
                           symbol=symbol, client=f"telegram:{chat}", via="telegram")
        answer = await self.dash.channel.send(cmd, self.dash.params.control_timeout_s)
        log.warning("dashboard.command", client=cmd.client, via="telegram", command=command.value,
                    symbol=symbol or None, request_id=cmd.request_id,
                    status=answer if isinstance(answer, str) or answer is None else answer.status.value)
        self.dash.soon = True
        await self._reply(update, core.answer_text(command.value + (f" {symbol}" if symbol else ""), answer))

    async def cmd_pause(self, update: Any, context: Any) -> None:
        await self._command(update, C.PAUSE)

    async def cmd_resume(self, update: Any, context: Any) -> None:
        await self._command(update, C.RESUME)

    async def cmd_close(self, update: Any, context: Any) -> None:
        symbol = core.parse_symbol(list(context.args or []))
        if symbol is None:
            await self._reply(update, "Usage: /close SYMBOL (for example /close BTCUSDT)")
            return
        await self._command(update, C.CLOSE, symbol)

    async def cmd_closeall(self, update: Any, context: Any) -> None:
        code = f"{secrets.randbelow(10_000):04d}"
        self.pending, text = core.ask_close_all(self.pending, update.effective_chat.id, await self._fresh(),
                                                time.time_ns() // 1_000_000, code, int(self.cfg.confirm_s * 1000))
        await self._reply(update, text)

    async def cmd_confirm(self, update: Any, context: Any) -> None:
        self.pending, go, text = core.confirm(self.pending, update.effective_chat.id, list(context.args or []),
                                              time.time_ns() // 1_000_000)
        if go:
            await self._command(update, C.CLOSE_ALL)
        else:
            await self._reply(update, text)
