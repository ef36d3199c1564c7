"""The user data stream's listenKey lifecycle (pure), as Binance USD-M documents it.

Sources: "User Data Streams" (Connect), "Start/Keepalive/Close User Data Stream" and
"Event: User Data Stream Expired" (``listenKeyExpired``):

- ``POST /fapi/v1/listenKey`` starts a stream: a new key valid for 60 minutes, or, while the
  account has an active key, that same key with its validity extended to 60 minutes.
- ``PUT`` extends the active key's validity by 60 minutes and answers ``{"listenKey": key}``;
  without an active key: -1125 ``This listenKey does not exist.``
- ``DELETE`` closes the stream: the key is no longer valid and its connections are closed.
- A key not kept alive expires: its connections get ``listenKeyExpired`` and, from then on,
  no more events ("This event is not related to the websocket disconnection": the sim
  leaves the connection open and silent); the next ``POST`` makes a new key.

One account, hence at most one active key. The validity is a parameter
(``SimParams.listen_key_validity_ms``) so tests can let a key expire in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.exchange_sim.rest import RestError

VALIDITY_MS = 60 * 60_000  # 60 minutes
KEY_LENGTH = 64  # Binance's listenKeys are 64 letters and digits
E_NO_KEY = (-1125, "This listenKey does not exist.")


@dataclass(frozen=True, kw_only=True)
class ListenKey:
    key: str
    expires_ms: int


def start(active: ListenKey | None, new_key: str, now_ms: int, validity_ms: int) -> ListenKey:
    """``POST``: the active key extended (``new_key`` unused), else ``new_key``."""
    if active is not None and now_ms < active.expires_ms:
        return ListenKey(key=active.key, expires_ms=now_ms + validity_ms)
    return ListenKey(key=new_key, expires_ms=now_ms + validity_ms)


def keepalive(active: ListenKey | None, now_ms: int, validity_ms: int) -> ListenKey:
    """``PUT``: the active key extended, or -1125 when there is none (expired or closed)."""
    if active is None or now_ms >= active.expires_ms:
        raise RestError(*E_NO_KEY)
    return ListenKey(key=active.key, expires_ms=now_ms + validity_ms)


def expired(active: ListenKey | None, now_ms: int) -> bool:
    return active is not None and now_ms >= active.expires_ms


def valid(active: ListenKey | None, key: str, now_ms: int) -> bool:
    """Whether ``key`` may open a user data stream now."""
    return active is not None and active.key == key and now_ms < active.expires_ms
