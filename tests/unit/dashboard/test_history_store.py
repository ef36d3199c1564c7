"""The dashboard's history file: the equity curve and latency histories outlive a restart."""

from __future__ import annotations

import sqlite3

from services.dashboard import config as dc
from services.dashboard import history_store
from services.dashboard.live import Hist, Live


def filled_live() -> Live:
    live = Live()
    for i in range(5):
        live.equity.append((1_000 + i, 10_000.0 + i))
    live.signal_to_order.add(3.0)
    live.signal_to_order.add(40.0)
    live.order_to_fill.add(7_000.0)
    return live


def test_a_restarted_dashboard_loads_the_same_curve_and_histograms(tmp_path):
    """Saved samples and histograms come back equal in a fresh ``Live`` from the same file."""
    path = history_store.path_for(tmp_path / "aegis.sqlite3")
    assert path == tmp_path / "dashboard.sqlite3"
    live = filled_live()
    h = history_store.History(path)
    assert h.save(live) == 5
    h.close()

    again = Live()
    h2 = history_store.History(path)
    assert h2.load(again) == 5
    assert list(again.equity) == [(1_000, 10_000.0), (1_001, 10_001.0), (1_002, 10_002.0),
                                  (1_003, 10_003.0), (1_004, 10_004.0)]
    assert again.signal_to_order.to_dict() == live.signal_to_order.to_dict()
    assert again.order_to_fill.to_dict() == live.order_to_fill.to_dict()
    assert again.order_to_fill.counts[-1] == 1  # above the last bound
    h2.close()


def test_only_new_samples_are_written_and_nothing_twice(tmp_path):
    """A second save writes the samples newer than the last saved one; an unchanged Live writes nothing."""
    path = tmp_path / "dashboard.sqlite3"
    live = filled_live()
    h = history_store.History(path)
    assert h.save(live) == 5
    assert h.save(live) == 0
    live.equity.append((2_000, 9_990.5))
    assert h.save(live) == 1
    h.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*), MAX(t_ms), MIN(usdt) FROM equity").fetchone() == (6, 2_000, 9_990.5)
    conn.close()


def test_samples_after_a_restart_continue_the_loaded_curve(tmp_path):
    """Loaded, then new heartbeats: the file holds the old run's samples followed by the new ones."""
    path = tmp_path / "dashboard.sqlite3"
    h = history_store.History(path)
    h.save(filled_live())
    h.close()
    live = Live()
    h = history_store.History(path)
    h.load(live)
    live.equity.append((3_000, 10_100.0))
    assert h.save(live) == 1
    again = Live()
    h.load(again)
    assert [t for t, _ in again.equity] == [1_000, 1_001, 1_002, 1_003, 1_004, 3_000]
    h.close()


def test_the_file_stays_bounded(tmp_path, monkeypatch):
    """Past KEEP_ROWS samples the file is pruned back to the newest EQUITY_POINTS."""
    monkeypatch.setattr(dc, "EQUITY_POINTS", 4)
    monkeypatch.setattr(history_store, "KEEP_ROWS", 8)
    live = Live()
    h = history_store.History(tmp_path / "dashboard.sqlite3")
    for i in range(9):
        live.equity.append((100 + i, float(i)))
        h.save(live)
    rows = h.conn.execute("SELECT t_ms FROM equity ORDER BY t_ms").fetchall()
    assert [r[0] for r in rows] == [105, 106, 107, 108]
    h.close()


def test_a_histogram_with_other_bounds_is_not_restored():
    """A stored histogram whose buckets differ from today's (or is malformed) is ignored, not half-read."""
    h = Hist()
    other = Hist(bounds=(1, 2))
    other.add(1.5)
    assert history_store.hist_from(history_store.hist_state(other), h) is False
    assert h.total == 0 and h.counts == [0] * (len(h.bounds) + 1)
    assert history_store.hist_from("{not json", h) is False
    assert history_store.hist_from('{"bounds": [1], "counts": [1], "total": 1, "sum": 1}', h) is False
    good = Hist()
    good.add(4.0)
    assert history_store.hist_from(history_store.hist_state(good), h) is True
    assert h.to_dict() == good.to_dict()
