"""The supervisor's restart decision on a child's exit code, without processes: a child that
exits because its storage refuses writes is not restarted, ever; any other exit is."""

from __future__ import annotations

from common import config as config_mod
from common import wire
from services.orchestrator import policy
from services.orchestrator.supervisor import Child, Supervisor


class Exited:
    """The part of ``subprocess.Popen`` the supervisor reads, for a process that has exited."""

    def __init__(self, code: int, pid: int = 4242) -> None:
        self.returncode = code
        self.pid = pid

    def poll(self) -> int:
        return self.returncode


def supervisor(tmp_path) -> Supervisor:
    cfg = config_mod.replace(config_mod.load(None, env={}), run_dir=str(tmp_path / "run"))
    return Supervisor(cfg, duration_s=None, summary_path=None, status_line=False)


def test_a_child_that_exits_for_its_storage_is_never_restarted(tmp_path):
    """Exit code 74: no restart is scheduled, now or later, the reason is kept, the run will end with 4."""
    sup = supervisor(tmp_path)
    child = Child("orchestrator", ["x"], proc=Exited(policy.CHILD_EXIT_STORAGE_FAULT))
    sup.children = [child]
    for now in (100.0, 101.0, 500.0):
        assert sup.supervise(child, now)
        assert (child.restart_at, child.restarts, child.restart_times) == (None, 0, [])
    assert child.gave_up.startswith("exited with 74: its storage refuses writes")
    assert sup.storage_gave_up
    assert policy.run_exit_code(0, {}, storage_gave_up=sup.storage_gave_up) == 4
    assert sup.snapshot()["services"]["orchestrator"]["gave_up"] == child.gave_up


def test_a_crash_is_restarted_as_before(tmp_path):
    """Any other exit code schedules a restart (the first one at once)."""
    sup = supervisor(tmp_path)
    child = Child("orchestrator", ["x"], proc=Exited(1))
    assert sup.supervise(child, 100.0)
    assert (child.restart_at, child.restarts, child.gave_up, sup.storage_gave_up) == (100.0, 1, "", False)


def test_the_orchestrators_permission_is_in_the_snapshot(tmp_path):
    """The last TradingPermission heard is what /status, /metrics and aegis status show."""
    sup = supervisor(tmp_path)
    assert sup.snapshot()["trading"] is None
    sup.permission = wire.TradingPermission(allowed=False, reason="JOURNAL_DISK_FULL", detail="cannot write /d/a")
    assert sup.snapshot()["trading"] == {"allowed": False, "reason": "JOURNAL_DISK_FULL", "detail": "cannot write /d/a"}
