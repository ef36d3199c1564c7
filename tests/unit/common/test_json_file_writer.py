"""common.service.JsonFileWriter: a service's stats file written off its loop's thread."""

from __future__ import annotations

import json
from pathlib import Path

from common import service


def test_the_latest_document_is_on_file_after_close_and_no_temp_file_is_left(tmp_path: Path):
    """Several submits: the file holds a complete document (the last after close); the
    write-then-rename leaves no temporary file behind."""
    path = tmp_path / "brain.1.json"
    w = service.JsonFileWriter(path)
    for i in range(50):
        w.submit({"beat": i, "nested": {"b": 2, "a": 1}})
    w.close()
    assert json.loads(path.read_text()) == {"beat": 49, "nested": {"a": 1, "b": 2}}
    assert [p.name for p in tmp_path.iterdir()] == ["brain.1.json"]
    assert w.errors == 0


def test_a_directory_that_is_gone_is_counted_not_raised(tmp_path: Path):
    """The run directory removed under the writer: the write fails on its thread, counted."""
    w = service.JsonFileWriter(tmp_path / "gone" / "brain.1.json")
    w.submit({"beat": 1})
    w.close()
    assert w.errors == 1
