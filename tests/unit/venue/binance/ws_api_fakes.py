"""Hand-written fakes for the WebSocket API client's tests: a connection that answers from a
script (``FakeConn``) and a connect function that hands out such connections in turn."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from venue.binance.ws_api import WsApiConfig

_CLOSED = object()


@dataclass(frozen=True)
class _State:
    name: str


OPEN, CLOSED = _State("OPEN"), _State("CLOSED")
Script = Callable[["FakeConn", dict], list[bytes] | None]


def answer_for(req: dict, result: Any = None, *, status: int = 200, code: int | None = None, msg: str = "",
               limits: list | None = None) -> bytes:
    body: dict[str, Any] = {"id": req["id"], "status": status}
    if status == 200:
        body["result"] = result if result is not None else {}
    else:
        body["error"] = {"code": code, "msg": msg}
    if limits is not None:
        body["rateLimits"] = limits
    return orjson.dumps(body)


class FakeConn:
    """The slice of websockets' sync connection the client uses: send, recv(timeout), close, state."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.sent: list[dict] = []
        self.state = OPEN
        self._lock = threading.Lock()

    def send(self, data: bytes, text: bool | None = None) -> None:
        with self._lock:
            if self.state is not OPEN:
                raise ConnectionError("closed")
            req = orjson.loads(data)
            self.sent.append(req)
        for frame in self.script(self, req) or ():
            self.push(frame)

    def push(self, frame: Any) -> None:
        self.inbox.put(frame)

    def recv(self, timeout: float | None = None) -> Any:
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if item is _CLOSED:
            self.inbox.put(_CLOSED)
            raise ConnectionError("connection closed")
        return item

    def drop(self) -> None:
        """The network cut: nothing more is sent or received."""
        with self._lock:
            self.state = CLOSED
        self.inbox.put(_CLOSED)

    def close(self) -> None:
        self.drop()


class Connector:
    """``connect(url, cfg)``: each call takes the next item of ``plan`` (a FakeConn or an exception)."""

    def __init__(self, plan: list[Any]) -> None:
        self.plan = list(plan)
        self.calls = 0
        self.opened: list[FakeConn] = []
        self.cond = threading.Condition()

    def __call__(self, url: str, cfg: WsApiConfig) -> FakeConn:
        with self.cond:
            self.calls += 1
            item = self.plan.pop(0) if self.plan else ConnectionRefusedError("no more connections")
            if isinstance(item, BaseException):
                self.cond.notify_all()
                raise item
            self.opened.append(item)
            self.cond.notify_all()
            return item

    def wait_calls(self, n: int, timeout_s: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.calls >= n, timeout_s)
