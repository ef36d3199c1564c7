"""Who may change anything: the control API's checks, pure (no clock, no sockets).

A mutation (``POST /api/...``) passes, in this order:

    1. the client's refusal budget: ``failures_per_min`` refused requests within the last
       minute -> 429 until the oldest leaves the window (a token cannot be guessed by trying)
    2. the Host header: a loopback-bound dashboard answers only to its loopback names
       (127.0.0.1, localhost, [::1] at its port): a web page that re-points its own domain
       at 127.0.0.1 (DNS rebinding) is refused -> 403
    3. the Origin header, when a browser sends one: the dashboard's own origin or one in
       ``dashboard.allowed_origins``; a page elsewhere is refused -> 403
    4. the token, in ``Authorization: Bearer <token>`` (or ``X-Aegis-Token``): never a
       cookie, never a query string, so a browser never attaches it by itself (no CSRF),
       compared in constant time; missing or wrong -> 401; no token configured -> 401 too
    5. the client's command budget: ``commands_per_min`` accepted commands a minute -> 429

Refusals 2-4 count against the client's refusal budget. ``check`` returns the verdict and
the new window; the caller keeps the window and counts verdicts by reason.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field, replace
from typing import Mapping

WINDOW_S = 60.0
OK = "ok"


@dataclass(frozen=True, kw_only=True)
class Limits:
    failures_per_min: int = 10
    commands_per_min: int = 30


@dataclass(frozen=True, kw_only=True)
class Window:
    """Recent refusals and accepted commands per client (monotonic seconds, oldest first)."""

    failures: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    commands: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Request:
    client: str  # the peer's address
    host: str  # the Host header ("" when absent)
    origin: str  # the Origin header ("" when absent: not a browser, or a same-origin GET)
    authorization: str  # the Authorization header
    token_header: str  # the X-Aegis-Token header
    now_s: float  # monotonic


@dataclass(frozen=True, kw_only=True)
class Verdict:
    status: int  # 0 = allowed, else the HTTP status to answer
    reason: str  # ok | rate_limited | bad_host | bad_origin | no_token_configured | missing_token | wrong_token | too_many_commands
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 0


@dataclass(frozen=True, kw_only=True)
class Site:
    """What the dashboard answers to: the Host values and Origins it accepts."""

    hosts: frozenset[str]  # empty = any Host (bound to a wildcard address: the name is unknown)
    origins: frozenset[str]  # allowed Origin values besides http://<Host> when hosts is empty


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "[::]", "")


def site(bind_host: str, port: int, extra_origins: tuple[str, ...] = ()) -> Site:
    """The names a dashboard bound at ``bind_host:port`` answers to."""
    if is_wildcard(bind_host):
        return Site(hosts=frozenset(), origins=frozenset(extra_origins))
    names = {bind_host if ":" not in bind_host or bind_host.startswith("[") else f"[{bind_host}]"}
    if is_loopback(bind_host):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    hosts = frozenset(f"{n}:{port}" for n in names) | (frozenset(names) if port == 80 else frozenset())
    return Site(hosts=hosts, origins=frozenset(f"http://{h}" for h in hosts) | frozenset(extra_origins))


def _recent(times: tuple[float, ...], now_s: float) -> tuple[float, ...]:
    return tuple(t for t in times if now_s - t < WINDOW_S)


def presented_token(req: Request) -> str:
    """The token the request carries (Bearer first), "" when none."""
    auth = req.authorization.strip()
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return req.token_header.strip()


def check(limits: Limits, window: Window, req: Request, token: str, where: Site) -> tuple[Verdict, Window]:
    c, now = req.client, req.now_s
    fails = _recent(window.failures.get(c, ()), now)
    cmds = _recent(window.commands.get(c, ()), now)
    window = replace(window, failures={**window.failures, c: fails}, commands={**window.commands, c: cmds})
    if len(fails) >= limits.failures_per_min:
        wait = WINDOW_S - (now - fails[0])
        return Verdict(status=429, reason="rate_limited",
                       message=f"too many refused requests from {c}: wait {wait:.0f} s"), window
    verdict = _refusal(req, token, where)
    if verdict is not None:
        return verdict, replace(window, failures={**window.failures, c: (*fails, now)})
    if len(cmds) >= limits.commands_per_min:
        return Verdict(status=429, reason="too_many_commands",
                       message=f"more than {limits.commands_per_min} commands a minute from {c}"), window
    return Verdict(status=0, reason=OK), replace(window, commands={**window.commands, c: (*cmds, now)})


def _refusal(req: Request, token: str, where: Site) -> Verdict | None:
    host = req.host.lower()
    if where.hosts and host not in where.hosts:
        return Verdict(status=403, reason="bad_host", message="this dashboard does not answer to that host name")
    if req.origin:
        own = where.origins if where.hosts else where.origins | {f"http://{host}", f"https://{host}"}
        if req.origin.lower() not in own:
            return Verdict(status=403, reason="bad_origin", message="cross-origin requests are refused")
    given = presented_token(req)
    if not token:
        return Verdict(status=401, reason="no_token_configured",
                       message="control is off: no token is configured (aegis keys, or AEGIS_DASHBOARD_TOKEN)")
    if not given:
        return Verdict(status=401, reason="missing_token",
                       message="a token is required: header 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return Verdict(status=401, reason="wrong_token", message="wrong token")
    return None
