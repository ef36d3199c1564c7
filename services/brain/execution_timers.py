"""The execution shell's ``poll``: the dispatcher's answers drained, the user data stream
pumped, and every ``TIMER_PERIOD_S`` the delayed queries, the symbols the feed added, the
trader's timer, funding reads, the journal audit, and the balance, conditional-order and
position polls.

The journal audit (``_audit_journal``, ``_journal_seen``): an order sent before its journal
row is written is looked for in the database (read-only, on a worker); a row still missing
``JOURNAL_LAG_MS`` after the send is published again (a journal message can die in a killed
orchestrator's queue), and reconciliation repairs the rest.

A part of the shell ``Execution`` (``services/brain/execution.py``, made of such parts): its
methods read and change the shell's state, set up in ``Execution.__init__``
and declared, with its types, in ``execution_parts.ExecutionParts``."""

from __future__ import annotations

import structlog

from services.brain import dispatcher as dsp
from venue import orders as om
from services.brain import funding_feed, jobs, protection, recovery, trader, trader_exchange, trader_views, user_feed
from services.brain.execution_send import REMAINDER_WAIT_MS
from services.brain.execution_parts import ExecutionParts
from services.brain.execution_startup import Phase

log = structlog.get_logger(__name__)

TIMER_PERIOD_S = 0.25
JOURNAL_AUDIT_S = 5.0  # how often the rows of orders sent before they were journaled are looked for
JOURNAL_LAG_MS = 10_000  # a row still missing this long after the send was lost on the way: sent again


class Timers(ExecutionParts):
    """poll and the journal audit (module docstring)."""

    def poll(self) -> None:
        """Completions, due delayed queries, timers. Cheap when nothing happened."""
        # an inline dispatcher (replay) answers while a completion is handled: take those
        # answers now too, so they land at the same point of the tick stream every time
        while True:
            done = self.dispatcher.drain()
            for c in done:
                self._completion(c)
            if not done or not self.inline:
                break
        if self.user_stream is not None:
            user_feed.pump(self)
        if self.remainders and self.ready:
            self._check_remainders()
        now_s = self.host.mono_s()
        if self.phase is Phase.WAITING and now_s >= self._next_start:
            self._start()
        if now_s < self._next_timer:
            return
        self._next_timer = now_s + TIMER_PERIOD_S
        now = self.host.clock_ms()
        due = [d for d in self.delayed if d[0] <= now]
        if due:
            self.delayed = [d for d in self.delayed if d[0] > now]
            for _, effect, symbol in due:
                self.dispatch(effect, symbol)
        if self.ready:
            if now_s >= self._next_setup:  # symbols the feed added since: margin type and leverage
                self._next_setup = now_s + 1.0
                self._setup_symbols(self.host.symbols())
            self.apply(trader.on_timer(self.cfg, self.st, self.ctx()))
            funding_feed.tick(self, now_s)  # funding of the open trades (income history reads)
            if self.journal_unseen and now_s >= self._next_journal_audit:
                self._next_journal_audit = now_s + JOURNAL_AUDIT_S
                self._audit_journal(now)
            if now_s >= self._next_balance:
                self._next_balance = now_s + self.balance_poll_s
                self.dispatcher.submit(dsp.ACCOUNT, self.broker.balance, tag=jobs.Balance())
            if (self.st.trades or self.st.algos) and now_s >= self._next_audit:
                self._next_audit = now_s + self.algo_audit_s
                self.dispatcher.submit(dsp.QUERY, self.broker.open_algo_orders, tag=jobs.AlgoAudit(now))
            if self.st.trades and now_s >= self._next_positions:
                self._next_positions = now_s + user_feed.position_poll_s(self)  # slower while streamed
                self.dispatcher.submit(dsp.QUERY, self.broker.positions, tag=jobs.Positions(now))

    def _check_remainders(self) -> None:
        """Symbols whose trade our own exit closed (``trader.CheckRemainder``): once nothing of
        ours works on the symbol (the protective orders' cancels confirmed: a new stop before
        that would be refused, -4130), the exchange's position is read; a part left (added by
        hand) is adopted and protected (``trader_exchange.on_reconciled``, ``REMAINDER``). The
        read is sent after the trade's last action (a read from the same millisecond could
        predate it); a symbol still busy after ``REMAINDER_WAIT_MS`` is left to reconciliation."""
        now = self.host.clock_ms()
        for sym, give_up_ms in list(self.remainders.items()):
            if trader_views.quiet(self.st, sym) and now > self.st.last_action_ms.get(sym, 0):
                del self.remainders[sym]
                self.counters["remainder_checks"] += 1
                self.dispatcher.submit(dsp.QUERY, self.broker.positions, tag=jobs.Reconciled(
                    sent_ms=now, symbols=(sym,), adopted_orders=(), found_by=trader_exchange.REMAINDER))
            elif now >= give_up_ms or sym in self.st.trades:  # busy, or traded again: nothing to ask
                del self.remainders[sym]
                if sym not in self.st.trades:
                    self.counters["remainder_checks_given_up"] += 1
                    log.warning("brain.remainder_check_given_up", symbol=sym, waited_ms=REMAINDER_WAIT_MS,
                                note="our orders on the symbol still working; reconciliation reads it")

    def _audit_journal(self, now_ms: int) -> None:
        """Look in the database (read-only, on a worker) for the rows of orders sent since the
        last look; ``_journal_seen`` publishes again those still missing after JOURNAL_LAG_MS."""
        ids = sorted(self.journal_unseen)[:500]  # (SQLite's bound on a statement's parameters)
        db_path = self.db_path

        def job():
            return recovery.journaled_ids(db_path, ids)

        self.dispatcher.submit(dsp.PERSIST, job, tag=jobs.JournalAudit(now_ms))

    def _journal_seen(self, asked_ms: int, c: dsp.Completion) -> None:
        if c.error is not None or c.result is None:
            return  # unreadable now: asked again at the next audit
        for cid in c.result:
            self.journal_unseen.pop(cid, None)
        for cid, (sent_ms, rows) in list(self.journal_unseen.items()):
            if asked_ms - sent_ms < JOURNAL_LAG_MS:
                continue
            if not rows and cid not in self.st.algos:
                self.journal_unseen.pop(cid, None)  # forgotten here: the exchange and reconciliation have it
                continue
            self.counters["journal_rows_resent"] = self.counters.get("journal_rows_resent", 0) + 1
            log.warning("brain.journal_row_missing", client_id=cid, sent_ms=sent_ms,
                        note="published to the journal again; reconciliation repairs its state and fills")
            if rows:
                for row in rows:  # an entry's signal, then the request: INSERT OR IGNORE, harmless
                    self.publish(row)  # if they came meanwhile
                if cid in self.st.orders:
                    self.publish(om.to_order_update(self.st.orders[cid]))
            else:
                self.publish(protection.to_wire(self.st.algos[cid]))  # its state now: a row never goes back
            self.journal_unseen[cid] = (asked_ms, rows)  # looked for again after another JOURNAL_LAG_MS
