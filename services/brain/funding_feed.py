"""Funding into the open trades (shell): when to read the income history, and what comes back.

The user data stream says that funding was paid (``ACCOUNT_UPDATE`` with ``m`` FUNDING_FEE), not
for which symbol: the event lists the USDT balance and its change only (Binance documents it so
for cross margin). The symbol and the amount of each payment are in the income history
(``GET /fapi/v1/income?incomeType=FUNDING_FEE``, the broker's ``income``), read:

- right after such an event, and once more ``RECHECK_S`` later (the history may lag the event);
- every ``POLL_S`` while a trade is open (the first ``POLL_S`` after one opens or is restored),
  as a backstop (a missed event, a restart: the read
  starts at the oldest open trade's opening, so a restarted brain re-attributes every payment
  its open trades had).

The rows go to ``trader_fills.on_income``, which gives each to the open trade of its symbol once (by
``tranId``). One read at a time; a failed read is retried by the next due time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog

from services.brain import dispatcher as dsp
from services.brain import jobs, trader_fills

if TYPE_CHECKING:
    from services.brain.execution import Execution

log = structlog.get_logger(__name__)

POLL_S = 60.0  # backstop while a trade is open (weight 30 a read: 0.02 % of the minute's budget)
RECHECK_S = 5.0  # after a FUNDING_FEE event: read now and once more this much later


@dataclass
class FundingLink:
    next_poll_s: float = 0.0
    asks: list[float] = field(default_factory=list)  # monotonic times a read is wanted
    in_flight: bool = False
    reads: int = 0
    events: int = 0
    errors: int = 0


def link_of(ex: Execution) -> FundingLink:
    link = getattr(ex, "funding", None)
    if link is None:
        link = ex.funding = FundingLink()  # type: ignore[attr-defined]
    return link


def on_event(ex: Execution, transaction_ms: int, balance_change: Any) -> None:
    """A FUNDING_FEE account update: read the income history now and again shortly."""
    link = link_of(ex)
    link.events += 1
    now = ex.host.mono_s()
    link.asks += [now, now + RECHECK_S]
    log.info("brain.funding_event", transaction_ms=transaction_ms, balance_change=str(balance_change))


def tick(ex: Execution, now_s: float) -> None:
    """Called from the execution's timer: start a read when one is due and none is running."""
    link = link_of(ex)
    if not ex.st.trades:
        link.asks.clear()
        link.next_poll_s = 0.0
        return
    if not link.next_poll_s:  # a trade opened (or was restored): the first backstop read in POLL_S
        link.next_poll_s = now_s + POLL_S
    if link.in_flight or (now_s < link.next_poll_s and not any(a <= now_s for a in link.asks)):
        return
    link.asks = [a for a in link.asks if a > now_s]
    link.next_poll_s = now_s + POLL_S
    since = min(t.opened_ms for t in ex.st.trades.values())
    link.in_flight = True
    link.reads += 1
    ex.dispatcher.submit(dsp.QUERY, ex.broker.income, income_type=trader_fills.FUNDING_FEE, since_ms=since,
                         tag=jobs.FundingIncome(ex.host.clock_ms()))


def done(ex: Execution, c: dsp.Completion) -> None:
    """A read came back: its rows through the trader (nothing when it failed: read again later)."""
    link = link_of(ex)
    link.in_flight = False
    if c.error is not None:
        link.errors += 1
        log.warning("brain.funding_read_failed", error=str(c.error)[:200])
        return
    rows = list(c.result)
    before = {s: t.funding for s, t in ex.st.trades.items()}
    ex.apply(trader_fills.on_income(ex.cfg, ex.st, rows, ex.ctx()))
    for s, t in ex.st.trades.items():
        if t.funding != before.get(s, t.funding):
            log.info("brain.funding_applied", symbol=s, trade_id=t.trade_id, funding=str(t.funding),
                     rows=len(t.funding_ids))


def snapshot(ex: Execution) -> dict[str, Any]:
    link = link_of(ex)
    return {"reads": link.reads, "events": link.events, "errors": link.errors,
            "open_funding": float(sum((t.funding for t in ex.st.trades.values()), Decimal(0))),
            "closed_funding": float(ex.st.funding)}
