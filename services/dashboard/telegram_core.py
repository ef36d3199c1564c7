"""Telegram, the pure part: what the bot answers and when it raises an alert.

Everything here reads the dashboard's page model (``model.build``) and returns plain text
(no Markdown: nothing a symbol or a detail contains can change the message's meaning) and new
state; ``telegram_bot`` is the shell (python-telegram-bot, the control channel, the clock).

Commands: ``/status``, ``/positions``, ``/profit``, ``/pause``, ``/resume``, ``/close SYMBOL``,
``/closeall`` (answered with a code; only ``/confirm <code>`` within ``confirm_s`` closes),
``/help``. Alerts, each once per change:

    KILL SWITCH        tripped (with why), and cleared
    RECONCILIATION     the database disagrees with the exchange (entries stop), and agrees again
    FEED STALE         the feed silent, restarting or not streaming for ``feed_stale_s``, and back
    RESTART LIMIT      a service restarted 70 % of ``supervisor.restart_intensity`` times within
                       ``restart_period_s`` (at the limit the whole stack stops)
    ORDER REJECTED     the exchange refused an order (symbol, client id, reason)
    DAILY SUMMARY      once a day at ``summary_hour_utc``
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from common.wire import FeedState

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
RESTART_WARN_SHARE = 0.7
FEED_BAD = ("SILENT", "RESTARTING", "STARTING", "DOWN", "GAVE UP")
SYMBOL = re.compile(r"^[A-Z0-9]{1,32}$")
HELP = "\n".join([
    "AEGIS commands:",
    "/status - trading state, account, services",
    "/positions - open positions with stop and target",
    "/profit - realized, fees, unrealized, today",
    "/pause - no new entries (exits go on)",
    "/resume - entries again",
    "/close SYMBOL - close one position",
    "/closeall - close every position (asks to confirm)",
])


def _n(x: Any, dp: int = 2, sign: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+,.{dp}f}" if sign else f"{x:,.{dp}f}"


def _px(x: Any) -> str:
    if x is None:
        return "-"
    a = abs(x)
    return f"{x:,.{2 if a >= 1000 else 3 if a >= 10 else 4 if a >= 1 else 6}f}"


def _hm(ms: int | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) if ms else "-"


# ---------------------------------------------------------------------------- answers
def status_text(m: Mapping[str, Any]) -> str:
    a, t = m["account"], m["trading"]
    entries = f"PAUSED by {t['paused_by'] or '?'}" if t["paused"] else "on"
    kill = f"TRIPPED ({t['halt_reason']}: {t['halt_detail']})" if t["halted"] else "armed"
    recon = {None: "-", True: "ok", False: "FAILING"}[t["reconcile_ok"]]
    services = ", ".join(f"{s['name']} {s['state']}" + (f" ({s['restarts']} restarts)" if s["restarts"] else "")
                         for s in m["services"])
    return "\n".join([
        f"AEGIS {m['mode']} at {_hm(m['now_ms'])} UTC",
        f"entries: {entries}",
        f"kill switch: {kill}",
        f"reconciliation: {recon}",
        f"equity {_n(a['equity'])} USDT, net PnL {_n(a['net'], sign=True)}",
        f"positions {a['positions']}, orders {a['orders']}, signals {a['signals']}, rejections {a['risk_rejects']}",
        f"services: {services}",
    ])


def positions_text(m: Mapping[str, Any]) -> str:
    if not m["positions"]:
        return "No open position."
    lines = [f"{len(m['positions'])} open:"]
    for p in m["positions"]:
        lines.append(f"{p['symbol']} {p['side']} {abs(p['qty']):g} @ {_px(p['entry'])}, now {_px(p['mark'])}, "
                     f"uPnL {_n(p['upnl'], sign=True)}"
                     + (f" ({p['r']:+.2f}R)" if p["r"] is not None else "")
                     + f"; stop {_px(p['stop'])} [{p['stop_state']}], target {_px(p['target'])} [{p['target_state']}]")
    return "\n".join(lines)


def _since(m: Mapping[str, Any], since_ms: int) -> tuple[int, int, float]:
    closes = [c for c in m["equity"]["closes"] if c[0] >= since_ms]
    return len(closes), sum(1 for c in closes if c[1] > 0), sum(c[1] for c in closes)


def profit_text(m: Mapping[str, Any]) -> str:
    a = m["account"]
    n, wins, net = _since(m, m["now_ms"] - DAY_MS)
    return "\n".join([
        f"realized {_n(a['realized'], sign=True)} USDT (closed trades, before fees)",
        f"fees {_n(a['fees'])} USDT",
        f"unrealized {_n(a['unrealized'], sign=True)} USDT ({a['positions']} open)",
        f"net {_n(a['net'], sign=True)} USDT",
        f"trades {a['trades']}: {a['wins']} won, {a['trades'] - a['wins']} lost",
        f"last 24 h: {n} trades, {wins} won, net {_n(net, sign=True)} USDT after fees",
    ])


def answer_text(what: str, answer: Any) -> str:
    """The brain's answer to a command, for a person (``ControlChannel.send``'s result)."""
    if answer == "unreachable":
        return f"{what}: NOT SENT, the brain is not connected (restarting?). Nothing was done."
    if answer is None:
        return f"{what}: no answer from the brain in time. It may or may not have run: check /positions."
    return f"{what}: {answer.status.value} - {answer.detail}"


def parse_symbol(args: list[str]) -> str | None:
    if len(args) != 1:
        return None
    s = args[0].upper()
    return s if SYMBOL.match(s) else None


# ---------------------------------------------------------------------------- /closeall's confirmation
@dataclass(frozen=True, kw_only=True)
class Pending:
    code: str
    expires_ms: int
    symbols: tuple[str, ...]


def ask_close_all(pending: Mapping[int, Pending], chat: int, m: Mapping[str, Any], now_ms: int, code: str,
                  confirm_ms: int) -> tuple[dict[int, Pending], str]:
    syms = tuple(p["symbol"] for p in m["positions"])
    if not syms:
        return {k: v for k, v in pending.items() if k != chat}, "No open position: nothing to close."
    out = {**pending, chat: Pending(code=code, expires_ms=now_ms + confirm_ms, symbols=syms)}
    return out, (f"Close ALL {len(syms)} positions ({', '.join(syms)})? "
                 f"Send /confirm {code} within {confirm_ms // 1000} s.")


def confirm(pending: Mapping[int, Pending], chat: int, given: list[str], now_ms: int) -> tuple[dict[int, Pending], bool, str]:
    """``(pending, go, text)``: go only with this chat's code, in time, once."""
    p = pending.get(chat)
    rest = {k: v for k, v in pending.items() if k != chat}
    if p is None:
        return rest, False, "Nothing to confirm (send /closeall first)."
    if now_ms > p.expires_ms:
        return rest, False, "Too late: that confirmation expired. Send /closeall again."
    if given != [p.code]:
        return dict(pending), False, "Wrong code: send /confirm followed by the code /closeall gave."
    return rest, True, ""


# ---------------------------------------------------------------------------- alerts
@dataclass(frozen=True, kw_only=True)
class AlertConfig:
    feed_stale_ms: int = 30_000
    restart_intensity: int = 10
    restart_period_ms: int = 60_000
    summary_hour_utc: int = 0  # -1 = never


@dataclass(frozen=True, kw_only=True)
class AlertState:
    seen: bool = False  # the first model was looked at
    halted: bool = False
    reconcile_ok: bool | None = None
    feed_bad_since_ms: int = 0
    feed_alerted: bool = False
    restart_counts: Mapping[str, int] = field(default_factory=dict)
    restart_times: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    restart_alerted_ms: Mapping[str, int] = field(default_factory=dict)
    summary_day: int = -1


def alerts(cfg: AlertConfig, st: AlertState, m: Mapping[str, Any], rejected: list[tuple[str, str, str]],
           now_ms: int) -> tuple[AlertState, list[str]]:
    """New alert texts for this look at the page model. ``rejected``: orders the exchange
    refused since the last look, as (symbol, client order id, reason)."""
    out: list[str] = []
    t = m["trading"]
    halted = bool(t["halted"])
    if halted and not st.halted:
        out.append(f"KILL SWITCH TRIPPED: {t['halt_reason']} - {t['halt_detail']}. No new entries; "
                   "exits, stops and targets go on.")
    elif st.halted and not halted:
        out.append("Kill switch cleared: entries allowed again.")
    rok = t["reconcile_ok"]
    if rok is False and st.reconcile_ok is not False:
        out.append("RECONCILIATION FAILING: the database and the exchange disagree; no new entries until they match.")
    elif rok is True and st.reconcile_ok is False:
        out.append("Reconciliation OK again.")
    st = replace(st, halted=halted, reconcile_ok=rok)
    st, feed_msgs = _feed(cfg, st, m, now_ms)
    st, restart_msgs = _restarts(cfg, st, m, now_ms)
    out += feed_msgs + restart_msgs
    out += [f"ORDER REJECTED by the exchange: {sym} {cid}: {reason or 'no reason given'}"
            for sym, cid, reason in rejected]
    st, summary = _summary(cfg, st, m, now_ms)
    out += summary
    return replace(st, seen=True), out


def _feed(cfg: AlertConfig, st: AlertState, m: Mapping[str, Any], now_ms: int) -> tuple[AlertState, list[str]]:
    row = next((s for s in m["services"] if s["name"] == "feed"), None)
    status = (m["pipeline"].get("feed") or {}).get("state")
    bad = (row is not None and row["state"] in FEED_BAD) or (status is not None and status != FeedState.STREAMING)
    if not bad:
        if st.feed_alerted:
            return replace(st, feed_bad_since_ms=0, feed_alerted=False), ["Feed streaming again."]
        return replace(st, feed_bad_since_ms=0), []
    since = st.feed_bad_since_ms or now_ms
    st = replace(st, feed_bad_since_ms=since)
    if not st.feed_alerted and now_ms - since >= cfg.feed_stale_ms:
        why = f"feed {row['state'] if row else '?'}" + (f", stream {status}" if status else "")
        return replace(st, feed_alerted=True), [
            f"FEED STALE for {(now_ms - since) // 1000} s ({why}): no fresh market data, no new entries."]
    return st, []


def _restarts(cfg: AlertConfig, st: AlertState, m: Mapping[str, Any], now_ms: int) -> tuple[AlertState, list[str]]:
    counts, times, alerted = dict(st.restart_counts), dict(st.restart_times), dict(st.restart_alerted_ms)
    out = []
    warn_at = max(1, int(cfg.restart_intensity * RESTART_WARN_SHARE))
    for s in m["services"]:
        n = s.get("restarts")
        if n is None:
            continue
        name = s["name"]
        prev = counts.get(name, n)  # the first look: a baseline, not restarts
        recent = tuple(x for x in times.get(name, ()) if now_ms - x < cfg.restart_period_ms)
        recent += (now_ms,) * max(0, n - prev)
        counts[name], times[name] = n, recent
        if len(recent) >= warn_at and now_ms - alerted.get(name, -cfg.restart_period_ms) >= cfg.restart_period_ms:
            alerted[name] = now_ms
            out.append(f"RESTART LIMIT NEAR: {name} restarted {len(recent)} times in the last "
                       f"{cfg.restart_period_ms // 1000} s; at {cfg.restart_intensity + 1} the whole stack stops.")
    return replace(st, restart_counts=counts, restart_times=times, restart_alerted_ms=alerted), out


def _summary(cfg: AlertConfig, st: AlertState, m: Mapping[str, Any], now_ms: int) -> tuple[AlertState, list[str]]:
    if cfg.summary_hour_utc < 0:
        return st, []
    day, hour = now_ms // DAY_MS, (now_ms % DAY_MS) // HOUR_MS
    if st.summary_day == day or hour < cfg.summary_hour_utc:
        return st, []
    if not st.seen:  # started after today's hour: the first summary is tomorrow's
        return replace(st, summary_day=day), []
    return replace(st, summary_day=day), [daily_summary(m, now_ms)]


def daily_summary(m: Mapping[str, Any], now_ms: int) -> str:
    a, t = m["account"], m["trading"]
    n, wins, net = _since(m, now_ms - DAY_MS)
    reasons = ", ".join(f"{r} {c}" for r, c in m["rejects"]["by_reason"][:3]) or "none"
    return "\n".join([
        f"AEGIS daily summary, {time.strftime('%Y-%m-%d', time.gmtime(now_ms / 1000))} "
        f"{time.strftime('%H:%M', time.gmtime(now_ms / 1000))} UTC",
        f"equity {_n(a['equity'])} USDT; net PnL {_n(a['net'], sign=True)} USDT (all time, open positions included)",
        f"last 24 h: {n} trades closed, {wins} won, net {_n(net, sign=True)} USDT after fees",
        f"open positions {a['positions']}; signals {a['signals']}; rejections: {reasons}",
        f"entries {'PAUSED' if t['paused'] else 'on'}; kill switch {'TRIPPED' if t['halted'] else 'armed'}",
    ])
