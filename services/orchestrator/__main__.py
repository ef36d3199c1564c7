"""Orchestrator shell: owns the database and the ring segment, writes the journal.

Start-up: create the run directory (0700), the ring segment (or re-attach to a valid one a
previous incarnation left: feed and brain may still be using it), the database (WAL,
schema). Then loop: drain the journal PULL socket in batches, one transaction per batch
(``journal.JournalWriter``); publish the trading permission and the heartbeat; periodic WAL
checkpoint. SIGTERM/SIGINT: drain what is queued, checkpoint, exit 0.

A disk that refuses a write (full, read-only, failing) is not a crash: the writer keeps what
it could not write, retries, and entries are halted meanwhile (docs/journal.md). The exit
code is ``policy.CHILD_EXIT_STORAGE_FAULT`` when the run directory cannot be written at
start, or when it stops with the journal still refused; the supervisor never restarts on it.

The orchestrator never deletes the ring: a restart of the orchestrator must not pull the
segment from under a running feed and brain. The supervisor removes it at final shutdown.
"""

from __future__ import annotations

import sys

import structlog

from common import service
from common.errors import RingError
from services.orchestrator import policy
from services.orchestrator.app import NAME, OrchestratorApp, open_ring, storage_fault_at_start

log = structlog.get_logger(__name__)


def main(argv: list[str] | None = None) -> int:
    args = service.arg_parser(NAME, "database, ring owner, journal writer").parse_args(argv)
    cfg = service.bootstrap(NAME, args)
    if args.spare and not service.serve_as_spare(NAME, cfg):
        return 0
    stop = service.StopFlag()
    service.install_stop_handlers(stop)
    try:
        rd = service.ensure_run_dir(service.run_dir(cfg))
        service.mark_starting(rd, NAME)
    except OSError as exc:  # the run directory's disk is full or read-only
        return storage_fault_at_start(exc, service.run_dir(cfg))
    ep = service.endpoints(rd, cfg)  # tcp: loads the CURVE keys, or refuses to start
    try:
        ring = open_ring(cfg)
    except RingError as exc:  # e.g. the shm filesystem is too small: say so, do not crash
        log.error("orchestrator.ring_unavailable", error=str(exc))
        print(f"aegis orchestrator: {exc}", file=sys.stderr)
        return 2
    app = OrchestratorApp(cfg, rd, ep, ring)
    try:
        service.mark_ready(rd, NAME)
    except OSError as exc:  # nobody may think we are up: close all and say why
        app.writer.close()
        app.close_sockets()
        return storage_fault_at_start(exc, rd)
    log.info("orchestrator.ready", run_dir=str(rd), db=str(service.db_path(cfg)), journal=app.writer.status()["state"])
    degraded = False
    try:
        while True:
            stopping = stop.is_set()
            if not app.step(stopping) and stopping:
                break
    finally:
        degraded = app.close()
    return policy.CHILD_EXIT_STORAGE_FAULT if degraded else 0


if __name__ == "__main__":
    sys.exit(service.run_main(main))
