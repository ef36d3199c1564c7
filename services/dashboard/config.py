"""The dashboard's settings: ``common.config.DashboardConfig`` plus the token and its tuning.

The token is not config (never in a config file): the shell reads it with
``common.dashboard_token.load`` from the environment, a secret file or ``aegis keys``' file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.config import AegisConfig
from services.dashboard import auth

ORDERS_SHOWN = 40  # newest orders on the page
FILLS_SHOWN = 40
SIGNALS_SHOWN = 30
REJECTS_SHOWN = 12  # newest refusals listed under the counts by reason
TRADES_SHOWN = 500  # closed trades drawn on the equity curve
CONTROLS_SHOWN = 8  # newest operator commands
EQUITY_POINTS = 7_200  # account equity samples kept (one a heartbeat: two hours)
EQUITY_DRAWN = 600  # ... of which at most this many are sent to the page
IDLE_AFTER_S = 10.0  # no page open and no API read this long: stop reading the database


@dataclass(frozen=True, kw_only=True)
class DashboardParams:
    host: str = "127.0.0.1"
    port: int = 8470
    allowed_origins: tuple[str, ...] = ()
    refresh_s: float = 1.0
    control_timeout_s: float = 3.0
    limits: auth.Limits = field(default_factory=auth.Limits)
    token: str = field(default="", repr=False)
    token_source: str = ""  # where the token came from (a variable's name or a path), for the start-up line


def from_config(cfg: AegisConfig, *, token: str = "", token_source: str = "", port: int | None = None) -> DashboardParams:
    d = cfg.dashboard
    return DashboardParams(host=d.host, port=d.port if port is None else port, allowed_origins=d.allowed_origins,
                           refresh_s=d.refresh_ms / 1000, control_timeout_s=d.control_timeout_ms / 1000,
                           limits=auth.Limits(failures_per_min=d.auth_failures_per_min,
                                              commands_per_min=d.commands_per_min),
                           token=token, token_source=token_source)
