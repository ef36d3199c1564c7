"""The control API's way to the brain: what a request asks (pure), and the channel (shell).

``parse`` turns an authorized HTTP request (its path and JSON body) into a ``wire.Control``
or a 400 with the reason. ``ControlChannel.send`` journals the request (the orchestrator's
``controls`` table: when, what, from where), hands it to the brain's control socket and
waits for the brain's answer, which the brain journals too:

    the brain's socket is not connected (restarting)  -> journaled REFUSED here, 503: not sent
    sent, answered DONE                                -> 200
    sent, answered REFUSED                             -> 409 with the brain's reason
    sent, no answer within the timeout                 -> 504: it may or may not have run
                                                          (the row stays REQUESTED unless the
                                                          brain's answer reaches the journal)

The DEALER socket is ``immediate``: a command is never queued for a brain that is not there,
so it cannot be carried out long after its sender was told it failed (and the brain refuses
one older than ``services.brain.control.COMMAND_TTL_MS`` anyway).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass

import structlog
import zmq

from common import bus, wire, zmqutil
from common.errors import DecodeError, TransientError

log = structlog.get_logger(__name__)

C = wire.ControlCommand
PATHS = {"pause": C.PAUSE, "resume": C.RESUME, "close": C.CLOSE, "closeall": C.CLOSE_ALL,
         "killswitch/clear": C.CLEAR_KILL_SWITCH}
SYMBOL = re.compile(r"^[A-Z0-9]{1,32}$")
MAX_BODY = 1_024
POLL_S = 0.01


@dataclass(frozen=True, kw_only=True)
class BadRequest:
    message: str


def parse(path: str, body: bytes, *, client: str, via: str, now_ms: int,
          request_id: str | None = None) -> wire.Control | BadRequest:
    """The command a POST to ``/api/<path>`` asks for. CLOSE needs ``{"symbol": "BTCUSDT"}``;
    the others take no body (an empty one, or ``{}``)."""
    cmd = PATHS.get(path)
    if cmd is None:
        return BadRequest(message=f"unknown command {path!r}: one of {', '.join(sorted(PATHS))}")
    if len(body) > MAX_BODY:
        return BadRequest(message="body too large")
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        return BadRequest(message="the body must be JSON")
    if not isinstance(data, dict):
        return BadRequest(message="the body must be a JSON object")
    symbol = data.get("symbol", "")
    if cmd is not C.CLOSE:
        if data:
            return BadRequest(message=f"{path} takes no parameters")
    elif set(data) - {"symbol"}:
        return BadRequest(message=f"unknown field(s): {', '.join(sorted(map(str, set(data) - {'symbol'})))}")
    elif not isinstance(symbol, str) or not SYMBOL.match(symbol):
        return BadRequest(message='close needs {"symbol": "<SYMBOL>"} (upper-case letters and digits)')
    return wire.Control(request_id=request_id or secrets.token_hex(8), command=cmd, requested_ms=now_ms,
                        symbol=symbol, client=client[:64], via=via[:32])


class ControlChannel:
    def __init__(self, brain_control: str, journal: str) -> None:
        self._sock = zmqutil.dealer(brain_control, immediate=True)
        self._pub = bus.Publisher("dashboard", self._sock)  # envelopes (sequence, times) for the brain
        self._journal = bus.Publisher.connect_journal("dashboard", journal)
        self._lock = asyncio.Lock()  # one command at a time: each answer is read by its asker

    def journal(self, body: wire.Control) -> None:
        try:
            self._journal.publish(body)
        except TransientError:  # the journal's queue is full: say so; the brain journals its answer
            log.error("dashboard.control_unjournaled", request_id=body.request_id, command=body.command.value)

    async def send(self, cmd: wire.Control, timeout_s: float) -> wire.Control | None | str:
        """The brain's answer, None without one in time, "unreachable" when it was not sent."""
        async with self._lock:
            self.journal(cmd)
            while self._sock.poll(0):  # answers to requests that timed out before
                self._sock.recv_multipart()
            try:
                self._sock.send_multipart(wire.encode(self._pub.envelope(cmd)), flags=zmq.NOBLOCK)
            except zmq.Again:
                self.journal(wire.Control(**{**_fields(cmd), "status": wire.ControlStatus.REFUSED,
                                             "detail": "not sent: the brain is not connected (restarting?)"}))
                return "unreachable"
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self._sock.poll(0):
                    try:
                        body = wire.decode(self._sock.recv_multipart()).body
                    except DecodeError as exc:
                        log.warning("dashboard.control_bad_answer", reason=exc.reason)
                        continue
                    if isinstance(body, wire.Control) and body.request_id == cmd.request_id:
                        return body
                    continue
                await asyncio.sleep(POLL_S)
            return None

    def close(self) -> None:
        self._sock.close()
        self._journal.close(linger_ms=1_000)


def _fields(c: wire.Control) -> dict:
    return {f: getattr(c, f) for f in c.__struct_fields__}
