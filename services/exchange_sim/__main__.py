"""``python -m services.exchange_sim``: the local Binance USD-M exchange (shell).

Loads the config and the capture, starts the server on uvloop, logs ``sim.ready``, prints
``PORT <n>`` on stdout when the port was chosen by the OS (port 0), and on SIGTERM/SIGINT
closes every connection and exits 0.

The trading account's API key and secret come from ``common.config.secrets()`` (never the
config file), else the published demo pair of ``config``. Its state file comes from
``--state-file``, else ``$AEGIS_SIM_STATE_FILE`` (the supervisor sets it to
``<run_dir>/sim-account.json``); without one the account lives in memory. A state file the
sim cannot read stops it with exit code 2 rather than silently starting a fresh account.
"""

from __future__ import annotations

import asyncio
import os
import sys

import structlog

from common import config as config_mod
from common import filekind, service
from common.errors import AegisError
from services.exchange_sim.config import SimParams, from_config
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from services.exchange_sim.server import Prepared, SimServer, prepare
from services.exchange_sim.state_file import StateFileError

STATE_FILE_ENV = "AEGIS_SIM_STATE_FILE"

log = structlog.get_logger(__name__)


def parse_args(argv: list[str] | None):
    p = service.arg_parser("exchange_sim", "Local Binance-USD-M-compatible exchange replaying real data.")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (0 = pick a free one and print 'PORT <n>')")
    p.add_argument("--speed", type=float, help="replay pace: 1 = recorded, 10 = ten times faster")
    p.add_argument("--max-speed", action="store_true", default=None, help="replay as fast as clients read")
    p.add_argument("--symbols", type=int, help="real symbol plus derived ones, this many in all")
    p.add_argument("--capture", help="capture file (default: the bundled BTCUSDT capture)")
    p.add_argument("--no-loop", dest="loop", action="store_false", default=None,
                   help="stop after one pass instead of looping the capture")
    p.add_argument("--source", choices=("ticks", "candles"),
                   help="ticks = the recorded capture; candles = trades synthesized in real 1m candles")
    p.add_argument("--candles", help="1m candle CSV (default: the bundled BTCUSDT 2024-12 candles)")
    p.add_argument("--history-bars", type=int, help="candles: 1m bars of history served before the replay")
    p.add_argument("--candle-trades", type=int, help="candles: trades synthesized per candle (4..60)")
    p.add_argument("--state-file", help=f"keep the trading account here across restarts (default: ${STATE_FILE_ENV})")
    return p.parse_args(argv)


async def serve(params: SimParams, stop: service.StopFlag, prepared: Prepared | None = None) -> int:
    try:
        server = SimServer(params, prepared=prepared)
    except StateFileError as exc:
        log.error("sim.state_file_unusable", error=str(exc))
        print(f"exchange-sim: {exc}", file=sys.stderr)
        return 2
    port = await server.start()
    log.info("sim.ready", host=params.host, port=port, symbols=len(server.specs),
             speed=params.speed, max_speed=params.max_speed, source=server.source_label)
    if params.port == 0:
        print(f"PORT {port}", flush=True)
    stopped = asyncio.create_task(stop.wait())
    pump = server.pump_task
    assert pump is not None
    await asyncio.wait({stopped, pump}, return_when=asyncio.FIRST_COMPLETED)
    failed = pump.done() and not pump.cancelled() and pump.exception() is not None
    if failed:
        log.error("sim.pump_died", error=repr(pump.exception()))
    else:
        log.info("sim.stopping", signal=stop.signal)
    stopped.cancel()
    await server.stop()
    log.info("sim.stopped")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = service.bootstrap("exchange_sim", args)
        sec = config_mod.secrets()
        key, secret = (sec.api_key, sec.api_secret) if sec.present else (DEMO_API_KEY, DEMO_API_SECRET)
        params = from_config(cfg.sim, host=args.host, port=args.port, speed=args.speed,
                             max_speed=args.max_speed, symbols=args.symbols,
                             capture=args.capture, loop=args.loop, source=args.source,
                             candles=args.candles, history_bars=args.history_bars,
                             candle_trades=args.candle_trades, api_key=key, api_secret=secret,
                             state_file=args.state_file or os.environ.get(STATE_FILE_ENV) or None)
        log.info("sim.credentials", demo=not sec.present, state_file=params.state_file or None)
        if params.speed <= 0 or not 1 <= params.symbols <= 1024 or not 0 <= params.port <= 65535:
            raise AegisError("speed must be > 0, symbols within 1..1024, port within 0..65535")
        if params.source not in ("ticks", "candles") or not 0 <= params.history_bars <= 1500:
            raise AegisError("source must be ticks or candles, history bars within 0..1500")
        if not 4 <= params.candle_trades <= 60 or 60_000 % params.candle_trades:
            raise AegisError("candle trades must be within 4..60 and divide 60000")
        for given, kind, what in ((params.capture, "raw_frames", "a tick capture (raw WebSocket frames)"),
                                  (params.candles, "candle_csv", "a candle CSV")):
            if given and (wrong := filekind.refusal(given, (kind,), what)):
                raise AegisError(wrong)
    except AegisError as exc:
        print(f"exchange-sim: {exc}", file=sys.stderr)
        return 2
    import uvloop

    prepared = None
    if args.spare:  # the market data is built while the running sim still serves

        def warm() -> None:
            nonlocal prepared
            prepared = prepare(params)

        if not service.serve_as_spare("exchange_sim", cfg, warm=warm):
            return 0
    stop = service.StopFlag()
    service.install_stop_handlers(stop)
    return uvloop.run(serve(params, stop, prepared))


if __name__ == "__main__":
    sys.exit(service.run_main(main))
