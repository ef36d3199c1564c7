"""``aegis risk``: the saved kill switch is shown, and cleared only on purpose with the stack down."""

from __future__ import annotations

import json
import os

from common import wire
from services.brain import risk
from cli import risk as risk_cli
from services.orchestrator import db

HALTED = risk.RiskState(halted=True, halt_reason=risk.DRAWDOWN, halt_detail="drawdown 10.10% from peak 11000.0",
                        halted_at_ms=1, day_index=1, day_start_equity_usdt=11_000.0, peak_equity_usdt=11_000.0)


def saved_db(tmp_path, state: risk.RiskState | None):
    conn = db.connect(tmp_path / "aegis.sqlite3")
    if state is not None:
        body = wire.ModelState(name="risk_state", version=5, state=json.dumps(state.to_dict()).encode())
        db.write_batch(conn, db.rows_for(wire.Envelope(wire.SCHEMA_VERSION, "brain:1", 1, 5, 5, body)))
    conn.close()


def run(tmp_path, *args, monkeypatch=None):
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    if monkeypatch is not None:
        monkeypatch.setenv("AEGIS_RUN_DIR", str(run_dir))
    return risk_cli.main(["--data-dir", str(tmp_path), *args])


def test_a_saved_halt_is_shown_with_its_reason(tmp_path, capsys, monkeypatch):
    saved_db(tmp_path, HALTED)
    assert run(tmp_path, monkeypatch=monkeypatch) == 0
    assert capsys.readouterr().out.strip() == "kill switch: HALTED (DRAWDOWN: drawdown 10.10% from peak 11000.0)"


def test_clear_halt_removes_the_saved_state(tmp_path, capsys, monkeypatch):
    saved_db(tmp_path, HALTED)
    assert run(tmp_path, "--clear-halt", monkeypatch=monkeypatch) == 0
    assert "kill switch cleared (was HALTED)" in capsys.readouterr().out
    assert run(tmp_path, monkeypatch=monkeypatch) == 0
    assert capsys.readouterr().out.strip() == "kill switch: not tripped (no saved state)"


def test_clear_halt_is_refused_while_a_stack_runs(tmp_path, capsys, monkeypatch):
    saved_db(tmp_path, HALTED)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "supervisor.pid").write_text(str(os.getpid()))  # a live pid: "running"
    assert run(tmp_path, "--clear-halt", monkeypatch=monkeypatch) == 2
    assert "a stack runs" in capsys.readouterr().err
    assert run(tmp_path, monkeypatch=monkeypatch) == 0
    assert "HALTED" in capsys.readouterr().out


def test_no_database_means_nothing_is_tripped(tmp_path, capsys, monkeypatch):
    assert run(tmp_path, monkeypatch=monkeypatch) == 0
    assert "nothing saved" in capsys.readouterr().out


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path, capsys, monkeypatch):
    (tmp_path / "aegis.sqlite3").write_bytes(b"not a database at all" * 100)
    assert run(tmp_path, monkeypatch=monkeypatch) == 2
    assert "cannot read" in capsys.readouterr().err
