"""The brain's side of the trading permission: the orchestrator's typed verdict becomes the
reason its entries are refused with (exits never ask)."""

from __future__ import annotations

from types import SimpleNamespace

from common import wire
from services.brain.app import Brain


class Sub:
    """The orchestrator subscriber: hands out what the test queued."""

    def __init__(self) -> None:
        self.queued: list[wire.Envelope] = []

    def drain(self, limit: int = 100) -> list[wire.Envelope]:
        out, self.queued = self.queued[:limit], self.queued[limit:]
        return out


def env(body, seq: int) -> wire.Envelope:
    return wire.Envelope(wire.SCHEMA_VERSION, "orchestrator:1-1", seq, 1, 2, body)


def test_the_last_permission_heard_is_the_block_reason():
    """Halted: "<reason>: <detail>"; allowed again: ""; heartbeats do not change it."""
    brain = SimpleNamespace(orch=Sub(), permission_block="")
    brain.orch.queued = [env(wire.TradingPermission(allowed=False, reason="JOURNAL_DISK_FULL",
                                                    detail="cannot write /d/aegis.sqlite3: database or disk is full"
                                                           " (0 bytes free)"), 1),
                         env(wire.Heartbeat(service="orchestrator", pid=1, uptime_s=1.0, state="RUNNING",
                                            counters={"reconcile_ok": 1.0}), 1)]
    Brain.watch_orchestrator(brain)
    assert Brain.trading_block_reason(brain) == ("JOURNAL_DISK_FULL: cannot write /d/aegis.sqlite3: database or disk"
                                                 " is full (0 bytes free)")
    brain.orch.queued = [env(wire.TradingPermission(allowed=True), 2)]
    Brain.watch_orchestrator(brain)
    assert Brain.trading_block_reason(brain) == ""


def test_reconciliations_repairs_go_to_the_execution_shell():
    """A ``wire.Reconciled`` from the orchestrator reaches ``Execution.on_reconciled``; the
    permission is unchanged by it."""
    told = []
    brain = SimpleNamespace(orch=Sub(), permission_block="", execution=SimpleNamespace(on_reconciled=told.append))
    msg = wire.Reconciled(status="REPAIRED", at_ms=5, symbols=("BTCUSDT",), adopted_orders=("ae-x-0",))
    brain.orch.queued = [env(msg, 1)]
    Brain.watch_orchestrator(brain)
    assert told == [msg] and Brain.trading_block_reason(brain) == ""
