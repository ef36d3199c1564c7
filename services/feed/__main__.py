"""Feed shell: WebSocket frames in, validated tick records into the ring.

``FeedApp`` (``services/feed/app.py``) holds the live feed and says what it does; this shell
starts it, runs it until SIGTERM/SIGINT and closes it (final stats written, exit 0). In
replay mode the frames come from a capture instead (``services/feed/replay_source.py``).
"""

from __future__ import annotations

import asyncio
import sys

from common import service
from common.config import AegisConfig
from services.feed.app import NAME, FeedApp


async def run(cfg: AegisConfig, stop: service.StopFlag) -> int:
    app = await FeedApp.start(cfg, stop)
    if app is None:  # asked to stop before the ring was there
        return 0
    try:
        await app.run()
    finally:
        await app.close()
    return 0


def warm_imports() -> None:
    """A spare's warm-up: the event loop ``main`` imports late (no spares in replay mode)."""
    import uvloop  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    args = service.arg_parser(NAME, "market data in: WebSocket -> firewall -> ring").parse_args(argv)
    cfg = service.bootstrap(NAME, args)
    if args.spare and not service.serve_as_spare(NAME, cfg, warm=warm_imports):
        return 0
    stop = service.StopFlag()
    service.install_stop_handlers(stop)
    if cfg.mode == "replay":  # a capture's raw frames instead of WebSockets
        from services.feed import replay_source

        return replay_source.run(cfg, stop)
    try:
        import uvloop

        return uvloop.run(run(cfg, stop))
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        return asyncio.run(run(cfg, stop))


if __name__ == "__main__":
    sys.exit(service.run_main(main))
