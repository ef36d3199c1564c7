"""Dashboard shell: the live page and the control API of a running stack (docs/operate.md).

Start-up: config, the control token (``common.dashboard_token``; its value is added to the
log redaction at once), the HTTP server on ``dashboard.host:dashboard.port`` (a taken port:
any free one), ``<run_dir>/dashboard.url`` for the supervisor to print, ready. Bound anywhere
but loopback, it says so loudly on stderr and in the log. SIGTERM/SIGINT: open pages are let
go, sockets closed, exit 0.

Why its own service and not a thread of the orchestrator or the supervisor: the
orchestrator is the journal's writer and the supervisor the stack's keeper; a page that a
browser keeps open, or a burst of requests, must never slow either down, and a crash of the
dashboard must cost nothing but the dashboard (the supervisor restarts it like any other).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import structlog
from aiohttp import web

from common import config as config_mod
from common import dashboard_token, service
from common import log as log_mod
from common.errors import ConfigError
from services.dashboard import auth, config as dc, history_store
from services.dashboard.app import Dashboard

log = structlog.get_logger(__name__)
NAME = "dashboard"
STATS_S = 1.0


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if auth.is_wildcard(host) else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/"


def exposure_warning(host: str, port: int, has_token: bool) -> str:
    """The loud words for a dashboard reachable from other machines."""
    return "\n".join([
        "!" * 78,
        f"aegis dashboard: LISTENING ON {host}:{port}, NOT LOOPBACK: other machines can reach it.",
        "  Anyone who reaches this port sees positions, orders and PnL (the page needs no token).",
        "  Only the token guards the control API" + ("." if has_token else ", AND NO TOKEN IS SET: control is off."),
        "  There is no TLS here: the token crosses the network in clear unless a TLS proxy is in front.",
        "  (dashboard.host = \"127.0.0.1\" keeps it on this machine.)",
        "!" * 78])


def open_history(dash: Dashboard) -> history_store.History | None:
    """The equity curve and latency histories of the last run, back into ``dash.live``
    (``history_store``); None, logged, when the file cannot be used (the page starts empty)."""
    path = history_store.path_for(dash.db_path)
    try:
        h = history_store.History(path)
        loaded = h.load(dash.live)
    except (history_store.Error, OSError) as exc:
        log.warning("dashboard.history_unusable", path=str(path), error=str(exc))
        return None
    log.info("dashboard.history_loaded", path=str(path), equity_points=loaded)
    return h


def save_history(h: history_store.History | None, dash: Dashboard) -> history_store.History | None:
    """Append the new samples; a failing file is logged and dropped (the page goes on)."""
    if h is None:
        return None
    try:
        h.save(dash.live)
    except (history_store.Error, OSError) as exc:
        log.warning("dashboard.history_save_failed", path=str(h.path), error=str(exc))
        h.close()
        return None
    return h


def start_telegram(cfg: config_mod.AegisConfig, token: str, dash: Dashboard):
    """The Telegram bot when it is configured (enabled, chat ids, a token); else None, said once."""
    tg = cfg.telegram
    if not tg.enabled:
        return None
    missing = [what for what, ok in (("a token (AEGIS_TELEGRAM_TOKEN)", bool(token)),
                                     ("chat ids (telegram.chat_ids)", bool(tg.chat_ids))) if not ok]
    if missing:
        log.error("dashboard.telegram_off", reason="enabled without " + " and ".join(missing))
        return None
    from services.dashboard.telegram_bot import TelegramBot  # python-telegram-bot only when used

    bot = TelegramBot(cfg, token, dash)
    dash.always_active = True  # alerts need a fresh page model every second
    bot.start()
    return bot


async def serve(cfg: config_mod.AegisConfig, params: dc.DashboardParams, stop: service.StopFlag,
                telegram_token: str = "") -> int:
    rd = service.ensure_run_dir(service.run_dir(cfg))
    service.mark_starting(rd, NAME)
    ep = service.endpoints(rd, cfg)
    dash = Dashboard(cfg, params, rd, ep)
    hist = open_history(dash)
    runner = web.AppRunner(dash.app(), access_log=None, shutdown_timeout=2.0)  # access lines would name paths only, but none at all
    await runner.setup()
    try:
        site = web.TCPSite(runner, params.host, params.port)
        await site.start()
    except OSError as exc:  # taken (another stack): any free port will do, the URL says which
        log.warning("dashboard.port_taken", port=params.port, error=str(exc))
        site = web.TCPSite(runner, params.host, 0)
        await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    dash.bind_port(port)
    url = url_for(params.host, port)
    (rd / "dashboard.url").write_text(url)
    if not auth.is_loopback(params.host):
        print(exposure_warning(params.host, port, bool(params.token)), file=sys.stderr, flush=True)
        log.error("dashboard.not_loopback", host=params.host, port=port, token=bool(params.token))
    log.info("dashboard.ready", url=url, control="on" if params.token else "off (no token)",
             credential_from=params.token_source or None)
    tasks = [asyncio.create_task(dash.pump()), asyncio.create_task(dash.refresh_loop())]
    bot = start_telegram(cfg, telegram_token, dash)
    dash.extra_stats = bot.counts if bot is not None else {}
    service.mark_ready(rd, NAME)
    try:
        while not stop.is_set():
            service.write_json_atomic(service.stats_path(rd, NAME), dash.stats())
            hist = save_history(hist, dash)  # one small WAL commit a second, no fsync
            try:
                await asyncio.wait_for(stop.wait(), STATS_S)
            except asyncio.TimeoutError:
                pass
    finally:
        if bot is not None:
            await bot.close()
        await dash.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        hist = save_history(hist, dash)
        if hist is not None:
            hist.close()
        service.write_json_atomic(service.stats_path(rd, NAME), dash.stats())
        url_file = rd / "dashboard.url"
        if url_file.exists() and url_file.read_text() == url:
            url_file.unlink(missing_ok=True)
        log.info("dashboard.stopped", **dash.control_state())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = service.arg_parser(NAME, "live dashboard and control API (loopback by default)")
    p.add_argument("--port", type=int, help="listen port (default dashboard.port; 0 = any free one)")
    args = p.parse_args(argv)
    cfg = service.bootstrap(NAME, args)
    if args.spare and not service.serve_as_spare(NAME, cfg):
        return 0
    try:
        token, source = dashboard_token.load(os.environ, config_mod.curve_dir(cfg))
        tg_token = dashboard_token.load_telegram(os.environ)[0] if cfg.telegram.enabled else ""
    except ConfigError as exc:
        print(f"aegis dashboard: {exc}", file=sys.stderr)
        return 2
    # the tokens join the secrets every log line is scrubbed of, before anything can log them
    log_mod.configure(level=cfg.log.level, fmt=cfg.log.format, service=NAME,
                      secrets=(*config_mod.secrets().values(), *(t for t in (token, tg_token) if t)))
    params = dc.from_config(cfg, token=token, token_source=source, port=args.port)
    stop = service.StopFlag()
    service.install_stop_handlers(stop)
    started = time.monotonic()
    code = asyncio.run(serve(cfg, params, stop, tg_token))
    log.info("dashboard.exit", ran_s=round(time.monotonic() - started, 1))
    return code


if __name__ == "__main__":
    sys.exit(service.run_main(main))
