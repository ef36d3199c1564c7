"""Operators' commands in the brain: pause and resume entries, close one position, close all,
clear the kill switch (``wire.Control``, sent by the dashboard, docs/operate.md).

No side door: every command becomes the trader's own move, carried out by the execution
shell like any other (``Execution.apply``: journal, then the order path, the kill-switch
bookkeeping, the publications):

    PAUSE               the pause is set (and saved); every later signal is refused before
                        the trader sees it, published as RISK_REJECT reason ``PAUSED``. Entries
                        a rotation left waiting are dropped. Exits, stops and targets go on.
    RESUME              the pause is lifted (and saved).
    CLOSE symbol        the trader's normal exit for that symbol (``trader.request_exit``:
                        reduce-only MARKET, the same risk check, the deterministic ax- id,
                        journal then send), reason MANUAL.
    CLOSE_ALL           ``trader.flatten``: the same exit for every position, reason FLATTEN.
    CLEAR_KILL_SWITCH   ``risk.clear_halt`` at the account's equity: a person accepts the loss
                        so far; the shell saves the cleared state as it saves a trip.

A command older than ``COMMAND_TTL_MS`` is refused: the dashboard told its user long ago that
nobody answered, so acting now would surprise them. The pause survives a restart of the
brain (model_state row ``wire.CONTROL_STATE_NAME``): a crash must not resume trading.

``decide`` and ``gate_signal`` are pure; ``Control`` is the shell around the ROUTER socket.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import msgspec
import structlog
import zmq

from common import journal_store, wire, zmqutil
from common.errors import DecodeError, StoreError
from common.log import RateLimiter
from services.brain import risk, trader
from services.brain.trader_state import count

log = structlog.get_logger(__name__)

PAUSED = "PAUSED"  # the RISK_REJECT reason of a signal that arrived while entries were paused
MANUAL = "MANUAL"  # the exit reason of an operator's close of one position
COMMAND_TTL_MS = 30_000
POLL_LIMIT = 16  # commands handled per poll at most (the ring comes first)
C, S = wire.ControlCommand, wire.ControlStatus


@dataclass(frozen=True, kw_only=True)
class PauseState:
    paused: bool = False
    by: str = ""  # who paused: "<client> (<via>)"
    at_ms: int = 0

    def to_json(self) -> bytes:
        return json.dumps({"v": 1, "paused": self.paused, "by": self.by, "at_ms": self.at_ms}).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> PauseState:
        """Inverse of ``to_json``. Unreadable: paused (a damaged record must not resume trading)."""
        try:
            d = json.loads(blob)
            if not isinstance(d, dict) or d.get("v") != 1 or not isinstance(d["paused"], bool):
                raise DecodeError("bad pause record")
            return cls(paused=d["paused"], by=str(d.get("by", "")), at_ms=int(d.get("at_ms", 0)))
        except (DecodeError, ValueError, TypeError, KeyError):  # ValueError: json's and int()'s own
            return cls(paused=True, by="unreadable saved pause state")


@dataclass(frozen=True)
class Outcome:
    pause: PauseState
    result: trader.Result | None  # the trader's new state and actions; None: the trader is untouched
    reply: wire.Control  # the request, DONE or REFUSED, with the detail
    save: bool = False  # the pause changed: save it


def _who(cmd: wire.Control) -> str:
    return f"{cmd.client or '?'} ({cmd.via or '?'})"


def _answer(cmd: wire.Control, status: wire.ControlStatus, detail: str) -> wire.Control:
    return msgspec.structs.replace(cmd, status=status, detail=detail[:300])


def _refused(pause: PauseState, cmd: wire.Control, detail: str) -> Outcome:
    return Outcome(pause, None, _answer(cmd, S.REFUSED, detail))


def decide(cfg: trader.TraderConfig, pause: PauseState, st: trader.TraderState | None, cmd: wire.Control,
           ctx: trader.Ctx, *, ready: bool) -> Outcome:
    """What one command does. ``st`` None: trading is off (signals only); ``ready`` False: the
    execution shell is still starting (its state is not the account's yet)."""
    age_ms = ctx.now_ms - cmd.requested_ms
    if age_ms > COMMAND_TTL_MS:
        return _refused(pause, cmd, f"stale: asked {age_ms / 1000:.1f} s ago (limit {COMMAND_TTL_MS // 1000} s)")
    if cmd.command is C.PAUSE:
        if pause.paused:
            return Outcome(pause, None, _answer(cmd, S.DONE, f"already paused by {pause.by}"))
        new = PauseState(paused=True, by=_who(cmd), at_ms=ctx.now_ms)
        if st is None:
            return Outcome(new, None, _answer(cmd, S.DONE, "entries paused (trading is off)"), save=True)
        dropped = len(st.pending)
        st2 = count(replace(st, pending=()), *[f"skipped:{PAUSED}"] * dropped)
        detail = "entries paused" + (f"; {dropped} entry waiting for a rotation dropped" if dropped else "")
        return Outcome(new, (st2, []), _answer(cmd, S.DONE, detail), save=True)
    if cmd.command is C.RESUME:
        if not pause.paused:
            return Outcome(pause, None, _answer(cmd, S.DONE, "entries were not paused"))
        return Outcome(PauseState(), None, _answer(cmd, S.DONE, f"entries resumed (paused by {pause.by})"), save=True)
    if st is None:
        return _refused(pause, cmd, "trading is off (trading.enabled or trading.broker)")
    if not ready:
        return _refused(pause, cmd, "the trader is still starting (recovering the account); try again")
    if cmd.command is C.CLOSE:
        t = st.trades.get(cmd.symbol)
        if t is None:
            return _refused(pause, cmd, f"no open position in {cmd.symbol}")
        # the trader's own exit (the one a strategy's Exit intent asks for, and stops, targets
        # and rotations use)
        st2, actions = trader.request_exit(cfg, st, cmd.symbol, MANUAL, ctx)
        return Outcome(pause, (st2, actions), _answer(cmd, S.DONE, _exit_detail(st, st2, cmd.symbol, actions)))
    if cmd.command is C.CLOSE_ALL:
        if not st.trades:
            return Outcome(pause, None, _answer(cmd, S.DONE, "no positions to close"))
        st2, actions = trader.flatten(cfg, st, ctx)
        parts = [f"{s}: {_exit_detail(st, st2, s, actions)}" for s in sorted(st.trades)]
        return Outcome(pause, (st2, actions), _answer(cmd, S.DONE, "; ".join(parts)))
    if cmd.command is C.CLEAR_KILL_SWITCH:
        if not st.risk.halted:
            return _refused(pause, cmd, "the kill switch is not tripped")
        if not (math.isfinite(ctx.equity) and ctx.equity > 0):
            return _refused(pause, cmd, "the account's equity is not known yet: the new baseline needs it")
        was = f"{st.risk.halt_reason}: {st.risk.halt_detail}"
        st2 = replace(st, risk=risk.clear_halt(st.risk, ctx.equity, ctx.now_ms))
        return Outcome(pause, (st2, []), _answer(cmd, S.DONE, f"kill switch cleared (was {was}); "
                                                               f"new baseline {ctx.equity:.2f} USDT"))
    return _refused(pause, cmd, f"unknown command {cmd.command}")  # pragma: no cover - enum is closed


def _exit_detail(before: trader.TraderState, after: trader.TraderState, symbol: str,
                 actions: list[trader.Action]) -> str:
    sent = [a.order.client_order_id for a in actions
            if isinstance(a, trader.NewOrder) and a.order.symbol == symbol]
    if sent:
        return f"exit sent ({sent[0]})"
    t0, t1 = before.trades.get(symbol), after.trades.get(symbol)
    if t0 is not None and t0.exit_cid:
        return f"an exit is already in flight ({t0.exit_cid})"
    if t0 is not None and t0.flat_at_exchange_ms:
        return "the exchange has already closed it: its closing fills are being fetched"
    if t0 is not None and t0.exit_reason:
        return f"already leaving ({t0.exit_reason}): the exit is retried by the trader"
    if t1 is not None and t1.position <= 0:
        return "the entry has not filled yet: the exit goes out when it does"
    refused = [a.body for a in actions if isinstance(a, trader.Publish) and isinstance(a.body, wire.RiskReject)]
    if refused:
        return f"exit refused by risk: {refused[0].reason} {refused[0].detail}"
    return "nothing to send"


def gate_signal(pause: PauseState, st: trader.TraderState, sig: wire.SignalGenerated) -> trader.Result | None:
    """A signal while entries are paused: refused before the trader sees it (counted as the
    trader counts its own refusals, published as RISK_REJECT reason PAUSED). None: not paused."""
    if not pause.paused:
        return None
    st = count(st, "signals", "risk_rejects", f"rejected:{PAUSED}")
    detail = f"entries paused by {pause.by} at {_iso(pause.at_ms)}"
    return st, [trader.Publish(wire.RiskReject(symbol=sig.symbol, reason=PAUSED, detail=detail,
                                               signal_id=sig.signal_id))]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "?"


def load_pause(db_path: Path) -> PauseState:
    """The saved pause (read-only; no database or no row: not paused)."""
    if not db_path.exists():
        return PauseState()
    try:
        with journal_store.read_only(db_path, timeout_s=5.0) as journal:
            state = journal.model_state(wire.CONTROL_STATE_NAME)
    except StoreError as exc:  # a database we cannot read: paused, and say why
        log.error("brain.control_state_unreadable", error=str(exc))
        return PauseState(paused=True, by=f"saved pause state unreadable ({exc})")
    return PauseState.from_json(state) if state is not None else PauseState()


# ---------------------------------------------------------------------------- the shell
class Control:
    """The brain's control socket (ROUTER, ``Endpoints.brain_control``) and the pause.

    ``execution`` is the execution shell (None when trading is off); ``publish(body)`` is the
    brain's PUB-and-journal publication; ``clock_ms`` the brain's clock."""

    def __init__(self, *, sock: zmq.Socket | None, execution: Any, publish: Callable[[Any], None],
                 pause: PauseState, clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.sock = sock
        self.execution = execution
        self.publish = publish
        self.pause = pause
        self.clock_ms = clock_ms
        self.counts = {"control_done": 0, "control_refused": 0, "control_rejected": 0}
        self._seq = 0
        self._name = f"brain:{os.getpid()}-{time.time_ns()}/control"
        self._limiter = RateLimiter(60.0)

    @classmethod
    def bind(cls, endpoint: str, **kw: Any) -> Control:
        return cls(sock=zmqutil.router(endpoint), **kw)

    def on_signal(self, sig: wire.SignalGenerated, announce: Callable[[], None] | None = None) -> None:
        ex = self.execution
        if ex is None:
            return
        gated = gate_signal(self.pause, ex.st, sig)
        if gated is None:
            ex.on_signal(sig, announce)
        else:
            ex.apply(gated)  # the execution shell's own path: publish (and journal) the refusal

    def poll(self) -> None:
        """Answer the commands that arrived (non-blocking)."""
        if self.sock is None:
            return
        for _ in range(POLL_LIMIT):
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self.handle(frames)

    def handle(self, frames: list[bytes]) -> None:
        if len(frames) != 3:
            self._reject("frame_count", f"{len(frames)} frames")
            return
        peer = frames[0]
        try:
            cmd = wire.decode(frames[1:]).body
        except DecodeError as exc:
            self._reject(exc.reason, str(exc))
            return
        if not isinstance(cmd, wire.Control) or cmd.status is not S.REQUESTED:
            self._reject("not_a_request", type(cmd).__name__)
            return
        out = self.apply(cmd)
        self._reply(peer, out.reply)

    def apply(self, cmd: wire.Control) -> Outcome:
        ex = self.execution
        if ex is not None:
            syms = (cmd.symbol,) if cmd.symbol else ()
            ctx, st, cfg, ready = ex.ctx(syms), ex.st, ex.cfg, ex.ready
        else:
            ctx = trader.Ctx(now_ms=self.clock_ms(), equity=math.nan, market=risk.Market(filters={}))
            st, cfg, ready = None, trader.TraderConfig(), False
        out = decide(cfg, self.pause, st, cmd, ctx, ready=ready)
        self.pause = out.pause
        if out.save:
            self.publish(wire.ModelState(name=wire.CONTROL_STATE_NAME, version=ctx.now_ms,
                                         state=self.pause.to_json()))
        if out.result is not None and ex is not None:
            ex.apply(out.result)
        self.publish(out.reply)
        self.counts["control_done" if out.reply.status is S.DONE else "control_refused"] += 1
        log.warning("brain.control", command=cmd.command.value, symbol=cmd.symbol or None, client=cmd.client,
                    via=cmd.via, status=out.reply.status.value, detail=out.reply.detail,
                    request_id=cmd.request_id)
        return out

    def _reply(self, peer: bytes, body: wire.Control) -> None:
        self._seq += 1
        now = time.time_ns()
        env = wire.Envelope(wire.SCHEMA_VERSION, self._name, self._seq, now, now, body)
        try:
            self.sock.send_multipart([peer, *wire.encode(env)], flags=zmq.NOBLOCK)
        except zmq.ZMQError:  # the asker is gone: its answer is journaled all the same
            pass

    def _reject(self, reason: str, detail: str) -> None:
        self.counts["control_rejected"] += 1
        if self._limiter.allow(reason, time.monotonic()):
            log.warning("brain.control_rejected", reason=reason, detail=detail[:200],
                        total=self.counts["control_rejected"])

    def counters(self) -> dict[str, float]:
        return {"paused": float(self.pause.paused), **{k: float(v) for k, v in self.counts.items()}}

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
