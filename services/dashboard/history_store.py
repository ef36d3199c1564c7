"""What the dashboard remembers across its own restarts: the account equity curve and the two
latency histories (signal -> order, order -> first fill).

They come from events (the brain's heartbeats, the order and fill envelopes), not from the
journal, so without this a restarted dashboard would draw an empty curve. They are kept in a
small SQLite file of the dashboard's own, ``<data_dir>/dashboard.sqlite3`` next to the
journal database: the orchestrator stays the only writer of the journal, and a lost or
damaged history file costs a curve, never a trade (it is logged and the dashboard starts
empty).

``History.load(live)`` puts the last ``EQUITY_POINTS`` samples and the histograms into a
fresh ``Live``; ``History.save(live)`` appends the samples newer than the last saved one and
stores the histograms when they changed (once a second, from the shell's stats loop), and
keeps the file bounded (``KEEP_ROWS`` samples).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from services.dashboard import config as dc
from services.dashboard.live import Hist, Live

FILE_NAME = "dashboard.sqlite3"
Error = sqlite3.Error  # what a failing history file raises (the shell catches it)
KEEP_ROWS = 2 * dc.EQUITY_POINTS  # pruned back to EQUITY_POINTS past this
HISTS = ("signal_to_order", "order_to_fill")

SCHEMA = """
CREATE TABLE IF NOT EXISTS equity (t_ms INTEGER PRIMARY KEY, usdt REAL NOT NULL);
CREATE TABLE IF NOT EXISTS hist (name TEXT PRIMARY KEY, state TEXT NOT NULL);
"""


def path_for(db_path: Path) -> Path:
    """The history file beside the journal database."""
    return db_path.with_name(FILE_NAME)


def hist_state(h: Hist) -> str:
    return json.dumps({"bounds": list(h.bounds), "counts": h.counts, "total": h.total, "sum": h.sum})


def hist_from(state: str, into: Hist) -> bool:
    """Restore ``into`` from a stored state; False (``into`` untouched) if the state does not fit
    (other bucket bounds, wrong shape)."""
    try:
        d: dict[str, Any] = json.loads(state)
        bounds = tuple(float(b) for b in d["bounds"])
        counts = [int(c) for c in d["counts"]]
        total, total_sum = int(d["total"]), float(d["sum"])
    except (ValueError, TypeError, KeyError):
        return False
    if bounds != tuple(float(b) for b in into.bounds) or len(counts) != len(into.bounds) + 1 or sum(counts) != total:
        return False
    into.counts, into.total, into.sum = counts, total, total_sum
    return True


class History:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=2.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        self.saved_ms = 0  # the newest equity sample in the file
        self.saved_hists: dict[str, str] = {}
        self.rows = 0

    def load(self, live: Live) -> int:
        """The file's last ``EQUITY_POINTS`` samples and its histograms into ``live``; returns
        the number of samples loaded."""
        rows = self.conn.execute("SELECT t_ms, usdt FROM equity ORDER BY t_ms DESC LIMIT ?",
                                 (dc.EQUITY_POINTS,)).fetchall()
        rows.reverse()
        live.equity.clear()
        live.equity.extend((int(t), float(u)) for t, u in rows)
        self.saved_ms = int(rows[-1][0]) if rows else 0
        self.rows = self.conn.execute("SELECT COUNT(*) FROM equity").fetchone()[0]
        for name, state in self.conn.execute("SELECT name, state FROM hist").fetchall():
            if name in HISTS and hist_from(state, getattr(live, name)):
                self.saved_hists[name] = state
        return len(rows)

    def save(self, live: Live) -> int:
        """Append the samples newer than the last saved one, store changed histograms; returns
        the number of samples written."""
        new = [(t, u) for t, u in live.equity if t > self.saved_ms]
        hists = {name: hist_state(getattr(live, name)) for name in HISTS}
        changed = {n: s for n, s in hists.items() if self.saved_hists.get(n) != s}
        if not new and not changed:
            return 0
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT OR REPLACE INTO equity (t_ms, usdt) VALUES (?, ?)", new)
            self.conn.executemany("INSERT OR REPLACE INTO hist (name, state) VALUES (?, ?)", changed.items())
            self.rows += len(new)
            if self.rows > KEEP_ROWS:
                self.conn.execute("DELETE FROM equity WHERE t_ms NOT IN "
                                  "(SELECT t_ms FROM equity ORDER BY t_ms DESC LIMIT ?)", (dc.EQUITY_POINTS,))
                self.rows = self.conn.execute("SELECT COUNT(*) FROM equity").fetchone()[0]
        if new:
            self.saved_ms = new[-1][0]
        self.saved_hists.update(changed)
        return len(new)

    def close(self) -> None:
        self.conn.close()
