"""The journal database, read-only: what the page shows of orders, fills, positions and the rest.

The orchestrator is the database's only writer; the dashboard opens it ``mode=ro`` (SQLite in
WAL mode: readers never block the writer, and see the last committed transaction). Every
read of one refresh runs in one read transaction, so the page never mixes two moments (a
fill without its order, a total without its rows).

``read`` returns plain rows (``DbView``, asked of ``common.journal_store``: the page's SQL
lives with the journal's schema); ``page`` turns them into the page.
"""

from __future__ import annotations

from pathlib import Path

from common import journal_store, wire
from services.dashboard import config as dc
from venue.orders import TERMINAL

RISK_STATE_NAME = wire.RISK_STATE_NAME  # the brain's kill-switch row in model_state
TERMINAL_ORDER_STATUSES = tuple(sorted(s.value for s in TERMINAL))  # as the orders table spells them
LIMITS = journal_store.PageLimits(orders=dc.ORDERS_SHOWN, fills=dc.FILLS_SHOWN, signals=dc.SIGNALS_SHOWN,
                                  rejects=dc.REJECTS_SHOWN, trades=dc.TRADES_SHOWN, controls=dc.CONTROLS_SHOWN)

DbView = journal_store.PageRows  # the page's rows (the journal's store says how they are read)


def connect(path: Path) -> journal_store.JournalReader | None:
    """A read-only reader, None while the database does not exist yet."""
    if not path.exists():
        return None
    return journal_store.open_reader(path, timeout_s=2.0, shared=True)


def read(reader: journal_store.JournalReader) -> DbView:
    """One consistent read of everything the page shows."""
    with reader.snapshot():
        return reader.page(LIMITS, terminal_statuses=TERMINAL_ORDER_STATUSES, risk_state_name=RISK_STATE_NAME,
                           control_state_name=wire.CONTROL_STATE_NAME)
