"""Reconciliation core: every difference kind, its repair and the verdict, with exact values;
the SQLite round trip (repairs persisted the journal's way converge to OK); the exchange read."""

from __future__ import annotations

from decimal import Decimal

import pytest
from reconcile_fakes import FakeBroker, ex_fill, ex_order, ex_position

from common import wire
from common.errors import TransientError
from services.orchestrator import db
from services.orchestrator import reconcile_diff as rc
from services.orchestrator.reconcile_diff import (ExchangeSnapshot, LocalOrder, LocalPosition, LocalSnapshot,
                                             diff)
from services.orchestrator.snapshots import fetch_exchange_snapshot, local_snapshot

D = Decimal
T = 1_700_000_000_000  # when the exchange snapshot started (local ms)
OLD = T - 60_000  # a local record written a minute before
BIG = str(2**63 - 25)  # above 2**53: a float would round it


def lorder(cid: str = "c1", *, status: str = "ACKED", eid: str = "101", symbol: str = "BTCUSDT",
           side: str = "BUY", qty: str = "0.010", filled: str = "0", avg: str = "0",
           updated_ms: int = OLD) -> LocalOrder:
    return LocalOrder(client_order_id=cid, exchange_order_id=eid, symbol=symbol, side=side, status=status,
                      qty=D(qty), filled_qty=D(filled), avg_price=D(avg), updated_ms=updated_ms)


def lpos(symbol: str, qty: str, entry: str = "0", realized: str = "0") -> LocalPosition:
    return LocalPosition(symbol=symbol, qty=D(qty), entry_price=D(entry), realized_pnl=D(realized),
                         updated_ms=OLD)


def local(*orders: LocalOrder, positions=(), fill_keys=(), last_fill_ms=None) -> LocalSnapshot:
    return LocalSnapshot(taken_ms=T + 500, orders={o.client_order_id: o for o in orders},
                         positions={p.symbol: p for p in positions}, fill_keys=frozenset(fill_keys),
                         last_fill_ms=last_fill_ms or {})


def exchange(*, open_orders=(), queried=None, positions=(), fills=(), traded=("BTCUSDT",)) -> ExchangeSnapshot:
    return ExchangeSnapshot(started_ms=T, finished_ms=T + 300, traded_symbols=frozenset(traded),
                            open_orders=tuple(open_orders), queried=queried or {}, positions=tuple(positions),
                            fills=tuple(fills), fills_since_ms=T - 3_600_000)


def run(loc: LocalSnapshot, ex: ExchangeSnapshot) -> rc.Report:
    return diff(loc, ex, now_ms=T + 500, recv_window_ms=5_000)


def kinds(report: rc.Report) -> list[str]:
    return [d.kind for d in report.differences]


class TestAgreement:
    def test_all_equal_is_ok_with_no_repairs(self):
        """Same open order, same finished order and fill, same position: OK, nothing to do."""
        loc = local(lorder("c1", status="PARTIALLY_FILLED", filled="0.004", avg="43000"),
                    lorder("c2", eid="102", status="FILLED", filled="0.010", avg="43001"),
                    positions=[lpos("BTCUSDT", "0.014", "43000.7")],
                    fill_keys=[("BTCUSDT", "9001"), ("BTCUSDT", "9002")])
        ex = exchange(open_orders=[ex_order("c1", status="PARTIALLY_FILLED", executed="0.004", avg="43000")],
                      positions=[ex_position("BTCUSDT", "0.014", "43000.7")],
                      fills=[ex_fill("9001", eid="101", qty="0.004", time_ms=OLD),
                             ex_fill("9002", eid="102", qty="0.010", time_ms=OLD)])
        r = run(loc, ex)
        assert (r.status, r.ok, r.differences, r.repairs, r.deferred) == ("OK", True, (), (), ())

    def test_cancel_pending_matches_a_live_exchange_order(self):
        """A cancel in flight is our refinement of a live order: no difference."""
        r = run(local(lorder("c1", status="CANCEL_PENDING")), exchange(open_orders=[ex_order("c1")]))
        assert r.status == "OK"

    def test_terminal_order_off_the_open_list_is_not_asked_about(self):
        """A FILLED order that is (rightly) not open is not a difference."""
        r = run(local(lorder("c1", status="FILLED", filled="0.010")), exchange())
        assert (r.status, r.differences) == ("OK", ())

    def test_entry_price_rounded_by_the_exchange_is_not_a_mismatch(self):
        """Our exact average vs Binance's rounded entryPrice, within one part per million: equal."""
        r = run(local(positions=[lpos("BTCUSDT", "0.014", "43000.7142857")]),
                exchange(positions=[ex_position("BTCUSDT", "0.014", "43000.71")]))
        assert r.status == "OK"


class TestFills:
    def test_missed_fill_is_repaired_under_our_client_id(self):
        """A userTrades row without a client id maps through the exchange order id to our order;
        the repair carries the exchange's exact values as the wire's floats."""
        loc = local(lorder("c1", status="FILLED", filled="0.003", avg="43210.1"))
        ex = exchange(fills=[ex_fill("9001", cid="", eid="101", qty="0.003", price="43210.1",
                                     fee="0.05185212", time_ms=OLD)])
        r = run(loc, ex)
        assert r.status == "REPAIRED" and r.ok
        assert r.differences == (rc.Difference(kind="MISSED_FILL", symbol="BTCUSDT", client_order_id="c1",
                                               detail="trade 9001 BUY 0.003 @ 43210.1"),)
        assert r.repairs == (wire.Fill(client_order_id="c1", exchange_order_id="101", trade_id="9001",
                                       symbol="BTCUSDT", side="BUY", qty=0.003, price=43210.1,
                                       fee=0.05185212, fee_asset="USDT", liquidity="taker"),)

    def test_fill_of_an_order_we_never_made_is_flagged_not_repaired(self):
        """A trade of someone else's order: EXTERNAL_FILL, flagged, no fill row invented."""
        r = run(local(), exchange(fills=[ex_fill("9001", cid="web_1", eid="555", time_ms=OLD)]))
        assert (r.status, kinds(r), r.repairs) == ("REPAIRED", ["EXTERNAL_FILL"], ())
        assert r.flagged == r.differences

    def test_an_external_fill_already_reported_stands_but_is_no_difference(self):
        """A fill the journal holds as reported (``reported_fills``): no difference, no record,
        status OK, listed once in ``standing``; a new one beside it is flagged with its record."""
        loc = LocalSnapshot(taken_ms=T + 500, reported_fills=frozenset({("BTCUSDT", "9001")}))
        r = run(loc, exchange(fills=[ex_fill("9001", eid="555", time_ms=OLD)]))
        assert (r.status, r.differences, r.flagged, r.flag_records) == ("OK", (), (), ())
        assert r.standing == (rc.Difference(kind="EXTERNAL_FILL", symbol="BTCUSDT",
                                            detail="trade 9001 BUY 0.003 @ 43210.1, exchange order 555"),)
        r = run(loc, exchange(fills=[ex_fill("9001", eid="555", time_ms=OLD),
                                     ex_fill("9002", eid="556", side="SELL", qty="0.001", time_ms=OLD)]))
        assert (r.status, kinds(r), [x.trade_id for x in r.flag_records]) == ("REPAIRED", ["EXTERNAL_FILL"], ["9002"])
        assert r.flag_records[0] == wire.ExternalFill(
            symbol="BTCUSDT", trade_id="9002", exchange_order_id="556", side="SELL", qty=0.001, price=43210.1,
            fee=0.05185212, time_ms=OLD, detail="trade 9002 SELL 0.001 @ 43210.1, exchange order 556")

    def test_a_reported_fill_that_turns_out_ours_is_still_repaired(self):
        """The memory only silences the EXTERNAL flag: once an order of ours explains the fill
        (its id is in the journal now), it is a MISSED_FILL repaired as ours."""
        loc = LocalSnapshot(taken_ms=T + 500, orders={"c1": lorder("c1", eid="555")},
                            reported_fills=frozenset({("BTCUSDT", "9001")}))
        r = run(loc, exchange(fills=[ex_fill("9001", eid="555", time_ms=OLD)], open_orders=[
            ex_order("c1", eid="555", status="NEW")]))
        assert (kinds(r), r.standing) == (["MISSED_FILL"], ())

    def test_an_unusable_external_fill_is_flagged_without_a_record(self):
        """A non-finite value cannot be journaled: flagged (told again next run), no record."""
        r = run(local(), exchange(fills=[ex_fill("9001", eid="555", price="NaN", time_ms=OLD)]))
        assert (kinds(r), r.flag_records) == (["EXTERNAL_FILL"], ())

    def test_fresh_unattributed_fill_is_deferred(self):
        """A trade younger than FRESH_MS may be ours with its order still in the journal queue."""
        r = run(local(), exchange(fills=[ex_fill("9001", eid="777", time_ms=T - 500)]))
        assert (r.status, r.deferred) == ("OK", ("external_fill:BTCUSDT:9001",))

    def test_ids_above_2_pow_53_stay_exact(self):
        """Exchange order and trade ids beyond float precision map and travel as exact strings."""
        loc = local(lorder("c1", eid=BIG, status="FILLED", filled="0.003", avg="43210.1"))
        big_trade = str(2**60 + 1)
        r = run(loc, exchange(fills=[ex_fill(big_trade, eid=BIG, time_ms=OLD)]))
        (fill,) = r.repairs
        assert (fill.client_order_id, fill.exchange_order_id, fill.trade_id) == ("c1", BIG, big_trade)
        assert BIG != str(int(float(BIG)))  # the guard: a float round trip would have changed it


class TestOrders:
    def test_order_filled_at_exchange_but_acked_locally_is_updated(self):
        """The query says FILLED: ORDER_STATUS with an OrderUpdate carrying the exchange's values."""
        loc = local(lorder("c1", status="ACKED"))
        ex = exchange(queried={"c1": ex_order("c1", status="FILLED", executed="0.010", avg="43000.5")})
        r = run(loc, ex)
        assert (r.status, kinds(r)) == ("REPAIRED", ["ORDER_STATUS"])
        assert r.repairs == (wire.OrderUpdate(client_order_id="c1", exchange_order_id="101", symbol="BTCUSDT",
                                              status="FILLED", filled_qty=0.01, avg_price=43000.5,
                                              reason=rc.RECONCILED),)

    def test_missed_ack_sets_the_exchange_order_id(self):
        """SENT locally, listed open at the exchange: ACKED with the exchange's (big) order id."""
        r = run(local(lorder("c1", status="SENT", eid="")), exchange(open_orders=[ex_order("c1", eid=BIG)]))
        (upd,) = r.repairs
        assert (upd.status, upd.exchange_order_id, upd.filled_qty) == ("ACKED", BIG, 0.0)

    @pytest.mark.parametrize("status", ["SENT", "UNKNOWN"])
    def test_unconfirmed_order_not_found_within_recv_window_is_not_yet_dead(self, status):
        """Asked exactly at last send + recvWindow + 1 s: it may still arrive. No repair, MISMATCH."""
        loc = local(lorder("c1", status=status, eid="", updated_ms=T - 6_000))
        r = run(loc, exchange(queried={"c1": None}))
        assert (r.status, r.ok, kinds(r), r.repairs) == ("MISMATCH", False, ["ORDER_UNKNOWN_AT_EXCHANGE"], ())
        assert r.blocking == r.differences
        assert r.differences[0].detail == f"{status}, not found; may still arrive until {T}"

    @pytest.mark.parametrize("status", ["SENT", "UNKNOWN"])
    def test_unconfirmed_order_not_found_after_recv_window_is_canceled(self, status):
        """One ms past the deadline, "not found" proves it never arrived: CANCELED, nothing re-sent."""
        loc = local(lorder("c1", status=status, eid="", updated_ms=T - 6_001))
        r = run(loc, exchange(queried={"c1": None}))
        assert (r.status, kinds(r)) == ("REPAIRED", ["ORDER_DEAD"])
        assert r.repairs == (wire.OrderUpdate(client_order_id="c1", exchange_order_id="", symbol="BTCUSDT",
                                              status="CANCELED", filled_qty=0.0, avg_price=0.0,
                                              reason="never reached the exchange"),)

    def test_new_local_never_sent_is_canceled(self):
        """Journaled NEW_LOCAL an hour ago, unknown to the exchange: dead, CANCELED."""
        loc = local(lorder("c1", status="NEW_LOCAL", eid="", updated_ms=T - 3_600_000))
        r = run(loc, exchange(queried={"c1": None}))
        assert [(type(x).__name__, x.status, x.reason) for x in r.repairs] == [
            ("OrderUpdate", "CANCELED", "never reached the exchange")]

    def test_confirmed_order_not_found_blocks(self):
        """An order the exchange acknowledged and now denies cannot be repaired: MISMATCH."""
        r = run(local(lorder("c1", status="ACKED")), exchange(queried={"c1": None}))
        assert (r.status, kinds(r), r.repairs) == ("MISMATCH", ["ORDER_UNKNOWN_AT_EXCHANGE"], ())

    def test_order_written_after_the_snapshot_started_is_deferred(self):
        """A local record newer than the exchange's answer is judged next run, not reverted."""
        loc = local(lorder("c1", status="FILLED", filled="0.010", updated_ms=T + 100))
        r = run(loc, exchange(open_orders=[ex_order("c1", status="NEW")]))
        assert (r.status, r.repairs, r.deferred) == ("OK", (), ("order:c1",))

    def test_unknown_exchange_status_blocks(self):
        """A status we cannot map is reported, never guessed."""
        r = run(local(lorder("c1")), exchange(open_orders=[ex_order("c1", status="PENDING_NEW")]))
        assert (r.status, kinds(r), r.repairs) == ("MISMATCH", ["BAD_EXCHANGE_DATA"], ())


class TestExternalOrders:
    def test_external_open_order_on_a_traded_symbol_is_flagged_and_blocks(self):
        """A client id we never made, open on BTCUSDT: reported, not cancelled, MISMATCH."""
        r = run(local(), exchange(open_orders=[ex_order("web_abc", eid="900", order_type="LIMIT", price="40000",
                                                        update_ms=T - 600_000)]))
        assert (r.status, kinds(r), r.repairs) == ("MISMATCH", ["EXTERNAL_ORDER"], ())
        assert r.flagged == r.differences
        assert r.differences[0] == rc.Difference(
            kind="EXTERNAL_ORDER", symbol="BTCUSDT", client_order_id="web_abc", blocking=True,
            detail="NEW BUY LIMIT 0.010 @ 40000, executed 0, exchange id 900")

    def test_external_open_order_on_another_symbol_is_flagged_only(self):
        """On a symbol we do not trade it cannot fill into our position: flagged, still trade-safe."""
        r = run(local(), exchange(open_orders=[ex_order("web_abc", symbol="DOGEUSDT", update_ms=T - 600_000)]))
        assert (r.status, r.ok, kinds(r)) == ("REPAIRED", True, ["EXTERNAL_ORDER"])

    def test_fresh_unknown_open_order_is_deferred(self):
        """Placed a second ago: may be ours, its request still in the journal queue."""
        r = run(local(), exchange(open_orders=[ex_order("c9", update_ms=T - 1_000)]))
        assert (r.status, r.deferred) == ("OK", ("external_order:c9",))


class TestAdoptedOrders:
    """Our own ids (ae-/ax-) at the exchange that the journal does not hold: the brain sends
    first and journals after, so a crash in between leaves one. Adopted, not flagged."""

    def test_our_open_entry_unknown_to_the_journal_is_adopted_with_its_row_and_state(self):
        """ORDER_ADOPTED: the request row (signal id from the id) and the exchange's state; trade-safe."""
        e = ex_order("ae-S1-0", eid="501", status="PARTIALLY_FILLED", executed="0.004", avg="43000", qty="0.010",
                     order_type="LIMIT", price="43000", update_ms=T - 600_000)
        r = run(local(), exchange(open_orders=[e]))
        assert (r.status, r.ok, kinds(r), r.flagged) == ("REPAIRED", True, ["ORDER_ADOPTED"], ())
        assert r.repairs == (
            wire.OrderRequest(client_order_id="ae-S1-0", symbol="BTCUSDT", side="BUY", order_type="LIMIT", qty=0.01,
                              price=43000.0, reduce_only=False, signal_id="S1"),
            wire.OrderUpdate(client_order_id="ae-S1-0", exchange_order_id="501", symbol="BTCUSDT",
                             status="PARTIALLY_FILLED", filled_qty=0.004, avg_price=43000.0, reason=rc.ADOPTED))

    def test_our_exit_answered_to_a_query_is_adopted_reduce_only_with_its_fill(self):
        """A filled ax- order (not open any more) the shell's answers name: row, FILLED, and its
        fill attributed to it through the exchange order id rather than flagged external."""
        e = ex_order("ax.0123456789abcdef0123-2", eid="777", side="SELL", status="FILLED", executed="0.010",
                     avg="43100", update_ms=T - 600_000)
        f = ex_fill("9101", eid="777", side="SELL", qty="0.010", price="43100", time_ms=T - 600_000)
        r = run(local(), exchange(queried={"ax.0123456789abcdef0123-2": e}, fills=[f]))
        assert (r.status, sorted(kinds(r))) == ("REPAIRED", ["MISSED_FILL", "ORDER_ADOPTED"])
        req = [b for b in r.repairs if isinstance(b, wire.OrderRequest)]
        assert [(b.reduce_only, b.signal_id, b.side) for b in req] == [(True, "", "SELL")]
        fills = [b for b in r.repairs if isinstance(b, wire.Fill)]
        assert [(b.client_order_id, b.trade_id, b.qty) for b in fills] == [("ax.0123456789abcdef0123-2", "9101", 0.01)]

    def test_a_young_one_is_deferred_its_journal_row_may_be_on_the_way(self):
        """Sent a second ago: the brain's buffered journal message may still be in flight."""
        r = run(local(), exchange(open_orders=[ex_order("ae-S1-0", update_ms=T - 1_000)]))
        assert (r.status, r.repairs, r.deferred) == ("OK", (), ("adopt_order:ae-S1-0",))

    def test_someone_elses_id_is_still_external(self):
        """Only our prefixes are adopted: "web_ae-1" stays EXTERNAL_ORDER and blocks."""
        r = run(local(), exchange(open_orders=[ex_order("web_ae-1", update_ms=T - 600_000)]))
        assert (r.status, kinds(r)) == ("MISMATCH", ["EXTERNAL_ORDER"])

    def test_adopted_rows_persisted_converge_to_ok(self, tmp_path):
        """The adoption's repairs written the journal's way: the next run against the same exchange is OK."""
        conn = db.connect(tmp_path / "aegis.sqlite3")
        e = ex_order("ae-S1-0", eid="501", status="NEW", update_ms=T - 600_000, order_type="LIMIT", price="43000")
        first = run(local_snapshot(conn, T), exchange(open_orders=[e]))
        persist(conn, first.repairs, T - 300_000)
        assert conn.execute("SELECT client_order_id, exchange_order_id, status, reduce_only, signal_id FROM orders"
                            ).fetchall() == [("ae-S1-0", "501", "ACKED", 0, "S1")]
        second = run(local_snapshot(conn, T), exchange(open_orders=[e]))
        assert (second.status, second.repairs) == ("OK", ())


class TestAdoptedFromHistory:
    """Our ids that finished at the exchange while no local record knew them (a machine crash
    took their intent records): the open list cannot show them, the order history does."""

    def ex(self, history, fills=(), positions=()) -> ExchangeSnapshot:
        return ExchangeSnapshot(started_ms=T, finished_ms=T + 300, traded_symbols=frozenset({"BTCUSDT"}),
                                positions=tuple(positions), fills=tuple(fills), fills_since_ms=T - 3_600_000,
                                history=tuple(history), history_since_ms=T - 7_200_000)

    def test_a_filled_entry_is_adopted_with_its_fills_and_the_position_it_opened_is_ours(self):
        """FILLED ae- order: its row, FILLED with the exact executed quantity, each fill under its
        id (mapped through the exchange order id), the position repaired as a mismatch, not
        flagged as someone else's; trade-safe."""
        e = ex_order("ae-S7-0", eid=BIG, status="FILLED", qty="0.010", executed="0.010", avg="43205.05",
                     order_type="LIMIT", price="43300", update_ms=T - 600_000)
        fills = [ex_fill("9201", eid=BIG, qty="0.004", price="43200", fee="0.0864", time_ms=T - 600_000),
                 ex_fill("9202", eid=BIG, qty="0.006", price="43208.4", fee="0.1296252", time_ms=T - 600_000)]
        r = run(local(), self.ex([e], fills, [ex_position("BTCUSDT", "0.010", "43205.04")]))
        assert (r.status, kinds(r), r.flagged, r.adopted) == (
            "REPAIRED", ["MISSED_FILL", "MISSED_FILL", "ORDER_ADOPTED", "POSITION_MISMATCH"], (), ())
        assert r.repairs == (
            wire.Fill(client_order_id="ae-S7-0", exchange_order_id=BIG, trade_id="9201", symbol="BTCUSDT",
                      side="BUY", qty=0.004, price=43200.0, fee=0.0864, fee_asset="USDT", liquidity="taker"),
            wire.Fill(client_order_id="ae-S7-0", exchange_order_id=BIG, trade_id="9202", symbol="BTCUSDT",
                      side="BUY", qty=0.006, price=43208.4, fee=0.1296252, fee_asset="USDT", liquidity="taker"),
            wire.OrderRequest(client_order_id="ae-S7-0", symbol="BTCUSDT", side="BUY", order_type="LIMIT", qty=0.01,
                              price=43300.0, reduce_only=False, signal_id="S7"),
            wire.OrderUpdate(client_order_id="ae-S7-0", exchange_order_id=BIG, symbol="BTCUSDT", status="FILLED",
                             filled_qty=0.01, avg_price=43205.05, reason=rc.ADOPTED),
            wire.Position(symbol="BTCUSDT", qty=0.01, entry_price=43205.04, unrealized_pnl=0.0, realized_pnl=0.0))

    def test_a_partly_filled_then_expired_entry_is_adopted_expired_with_its_one_fill(self):
        """PARTIALLY_FILLED then EXPIRED (a limit IOC): EXPIRED with the part executed and its fill."""
        e = ex_order("ae-S8-0", eid="610", status="EXPIRED", qty="0.010", executed="0.003", avg="43200",
                     order_type="LIMIT", price="43200", update_ms=T - 600_000)
        f = ex_fill("9301", eid="610", qty="0.003", price="43200", time_ms=T - 600_000)
        r = run(local(), self.ex([e], [f], [ex_position("BTCUSDT", "0.003", "43200")]))
        assert (r.status, kinds(r), r.flagged) == (
            "REPAIRED", ["MISSED_FILL", "ORDER_ADOPTED", "POSITION_MISMATCH"], ())
        upd = [b for b in r.repairs if isinstance(b, wire.OrderUpdate)]
        assert [(b.status, b.filled_qty, b.avg_price) for b in upd] == [("EXPIRED", 0.003, 43200.0)]
        assert [(b.client_order_id, b.trade_id) for b in r.repairs if isinstance(b, wire.Fill)] == [("ae-S8-0", "9301")]

    def test_a_cancelled_order_with_no_fill_is_recorded_cancelled_and_nothing_else(self):
        """CANCELED with nothing executed: the row and CANCELED, no fill, no position repair."""
        e = ex_order("ax-S1-3", eid="611", side="SELL", status="CANCELED", update_ms=T - 600_000)
        r = run(local(), self.ex([e]))
        assert (r.status, kinds(r)) == ("REPAIRED", ["ORDER_ADOPTED"])
        assert [type(b).__name__ for b in r.repairs] == ["OrderRequest", "OrderUpdate"]
        assert (r.repairs[0].reduce_only, r.repairs[1].status, r.repairs[1].filled_qty) == (True, "CANCELED", 0.0)

    def test_a_fill_already_on_record_is_not_counted_again(self):
        """The fill also came by the user stream and is journaled: only the order row is adopted."""
        e = ex_order("ae-S7-0", eid="612", status="FILLED", executed="0.010", avg="43200", update_ms=T - 600_000)
        f = ex_fill("9401", eid="612", qty="0.010", price="43200", time_ms=T - 600_000)
        r = run(local(fill_keys=[("BTCUSDT", "9401")]), self.ex([e], [f]))
        assert kinds(r) == ["ORDER_ADOPTED"] and not [b for b in r.repairs if isinstance(b, wire.Fill)]

    def test_a_young_finished_order_is_deferred(self):
        """Finished a second ago: its journal row may still be on the way."""
        e = ex_order("ae-S7-0", eid="613", status="FILLED", executed="0.010", avg="43200", update_ms=T - 1_000)
        r = run(local(), self.ex([e]))
        assert (r.status, r.repairs, r.deferred) == ("OK", (), ("adopt_order:ae-S7-0",))

    def test_the_adoption_persisted_converges_to_ok(self, tmp_path):
        """Repairs written the journal's way: the orders, fills and positions tables hold the
        exchange's values and the next run against the same exchange is OK."""
        conn = db.connect(tmp_path / "aegis.sqlite3")
        e = ex_order("ae-S7-0", eid="614", status="FILLED", qty="0.010", executed="0.010", avg="43200",
                     update_ms=T - 600_000)
        f = ex_fill("9601", eid="614", qty="0.010", price="43200", time_ms=T - 600_000)
        ex = self.ex([e], [f], [ex_position("BTCUSDT", "0.010", "43200")])
        persist(conn, run(local_snapshot(conn, T), ex).repairs, T - 300_000)
        assert conn.execute("SELECT client_order_id, exchange_order_id, status, filled_qty FROM orders").fetchall() == [
            ("ae-S7-0", "614", "FILLED", 0.01)]
        assert conn.execute("SELECT client_order_id, trade_id, qty FROM fills").fetchall() == [
            ("ae-S7-0", "9601", 0.01)]
        assert conn.execute("SELECT symbol, qty FROM positions").fetchall() == [("BTCUSDT", 0.01)]
        second = run(local_snapshot(conn, T), ex)
        assert (second.status, second.repairs) == ("OK", ())

    def test_an_order_the_journal_holds_and_someone_elses_are_left_to_other_rules(self):
        """History rows of a journaled order and of a foreign id add no difference of their own."""
        known = ex_order("ae-S1-0", eid="101", status="FILLED", executed="0.010", avg="43000", update_ms=OLD)
        foreign = ex_order("web_1", eid="700", status="CANCELED", update_ms=OLD)
        loc = local(lorder("ae-S1-0", status="FILLED", filled="0.010", avg="43000"))
        assert run(loc, self.ex([known, foreign])).status == "OK"


class TestPositions:
    def test_exchange_position_without_local_record_is_adopted(self):
        """EXTERNAL_POSITION: a Position row at the exchange's qty and entry, adopted and flagged."""
        r = run(local(), exchange(positions=[ex_position("ETHUSDT", "-0.5", "2300.25", "-1.5")]))
        assert (r.status, kinds(r), r.adopted) == ("REPAIRED", ["EXTERNAL_POSITION"], ("ETHUSDT",))
        assert r.flagged == r.differences
        assert r.repairs == (wire.Position(symbol="ETHUSDT", qty=-0.5, entry_price=2300.25, unrealized_pnl=-1.5,
                                           realized_pnl=0.0),)

    def test_local_position_gone_at_exchange_is_set_to_zero(self):
        """LOCAL_POSITION_GONE: qty 0, entry 0; our realised PnL is kept."""
        r = run(local(positions=[lpos("BTCUSDT", "0.014", "43000", realized="12.5")]), exchange())
        assert (r.status, kinds(r)) == ("REPAIRED", ["LOCAL_POSITION_GONE"])
        assert r.repairs == (wire.Position(symbol="BTCUSDT", qty=0.0, entry_price=0.0, unrealized_pnl=0.0,
                                           realized_pnl=12.5),)

    def test_position_qty_mismatch_takes_the_exchange_values(self):
        """Both hold a position, different qty: POSITION_MISMATCH, set to the exchange's."""
        r = run(local(positions=[lpos("BTCUSDT", "0.010", "43000")]),
                exchange(positions=[ex_position("BTCUSDT", "0.013", "43100.2", "3.9")]))
        assert kinds(r) == ["POSITION_MISMATCH"]
        assert r.repairs == (wire.Position(symbol="BTCUSDT", qty=0.013, entry_price=43100.2, unrealized_pnl=3.9),)

    def test_position_on_a_symbol_with_a_fresh_fill_is_deferred(self):
        """A fill during the snapshot may have moved one side only: judged next run."""
        r = run(local(positions=[lpos("BTCUSDT", "0.010", "43000")], last_fill_ms={"BTCUSDT": T + 50}),
                exchange(positions=[ex_position("BTCUSDT", "0.013", "43100.2")]))
        assert (r.status, r.deferred) == ("OK", ("position:BTCUSDT",))

    def test_flat_local_row_and_no_exchange_position_agree(self):
        """A closed position (qty 0 row) and nothing at the exchange: equal."""
        assert run(local(positions=[lpos("BTCUSDT", "0")]), exchange()).status == "OK"


# ---------------------------------------------------------------------------- SQLite round trip
def env(body, ns: int, seq: int = 1) -> wire.Envelope:
    return wire.Envelope(wire.SCHEMA_VERSION, "brain:7", seq, ns, ns, body)


def persist(conn, bodies, at_ms: int) -> None:
    db.write_batch(conn, [r for i, b in enumerate(bodies) for r in db.rows_for(env(b, at_ms * 1_000_000, i + 1))])


class TestSqliteRoundTrip:
    def test_repairs_persisted_like_the_journal_converge_to_ok(self, tmp_path):
        """Local rows from wire messages -> snapshot -> diff -> repairs written with rows_for ->
        a later run against the same exchange reports OK with nothing to repair."""
        conn = db.connect(tmp_path / "aegis.sqlite3")
        t_old = T - 600_000
        req = dict(symbol="BTCUSDT", side="BUY", order_type="MARKET", qty=0.01)
        persist(conn, [
            wire.OrderRequest(client_order_id="c1", **req),  # filled; its fill message was lost
            wire.OrderUpdate(client_order_id="c1", exchange_order_id=BIG, symbol="BTCUSDT", status="FILLED",
                             filled_qty=0.01, avg_price=43210.1),
            wire.OrderRequest(client_order_id="c2", **req),  # acked; its fill went unnoticed
            wire.OrderUpdate(client_order_id="c2", exchange_order_id="102", symbol="BTCUSDT", status="ACKED"),
            wire.OrderRequest(client_order_id="c3", **req),  # journaled, never sent (crash)
            wire.Position(symbol="BTCUSDT", qty=0.01, entry_price=43210.1, realized_pnl=4.25),
            wire.Position(symbol="ETHUSDT", qty=1.0, entry_price=2300.0),  # closed behind our back
        ], t_old)
        broker = FakeBroker(
            orders={"c2": ex_order("c2", eid="102", status="FILLED", executed="0.010", avg="43300")},
            positions=[ex_position("BTCUSDT", "0.020", "43255.05", "1.1"), ex_position("SOLUSDT", "3", "150.5")],
            fills=[ex_fill("9001", eid=BIG, qty="0.010", price="43210.1", time_ms=t_old),
                   ex_fill("9002", cid="c2", eid="102", qty="0.010", price="43300", time_ms=t_old + 1)])

        loc = local_snapshot(conn, T)
        ex = fetch_exchange_snapshot(broker, loc, ["BTCUSDT"], T, 3_600_000)
        first = diff(local_snapshot(conn, T + 300), ex, now_ms=T + 300)
        assert first.status == "REPAIRED"
        assert sorted(kinds(first)) == ["EXTERNAL_POSITION", "LOCAL_POSITION_GONE", "MISSED_FILL", "MISSED_FILL",
                                        "ORDER_DEAD", "ORDER_STATUS", "POSITION_MISMATCH"]
        assert first.adopted == ("SOLUSDT",)
        persist(conn, first.repairs, T + 300)
        assert conn.execute("SELECT client_order_id, exchange_order_id, status, filled_qty FROM orders"
                            " ORDER BY client_order_id").fetchall() == [
            ("c1", BIG, "FILLED", 0.01), ("c2", "102", "FILLED", 0.01), ("c3", "", "CANCELED", 0.0)]
        assert conn.execute("SELECT trade_id, client_order_id, exchange_order_id, qty, price FROM fills"
                            " ORDER BY trade_id").fetchall() == [
            ("9001", "c1", BIG, 0.01, 43210.1), ("9002", "c2", "102", 0.01, 43300.0)]
        assert conn.execute("SELECT symbol, qty, entry_price, realized_pnl FROM positions ORDER BY symbol"
                            ).fetchall() == [("BTCUSDT", 0.02, 43255.05, 4.25), ("ETHUSDT", 0.0, 0.0, 0.0),
                                             ("SOLUSDT", 3.0, 150.5, 0.0)]

        t2 = T + 60_000
        ex2 = fetch_exchange_snapshot(broker, local_snapshot(conn, t2), ["BTCUSDT"], t2, 3_600_000)
        second = diff(local_snapshot(conn, t2 + 300), ex2, now_ms=t2 + 300)
        assert (second.status, second.differences, second.repairs, second.deferred) == ("OK", (), (), ())


    def test_a_filled_record_that_lost_its_quantity_is_repaired_with_its_fill(self, tmp_path):
        """The chaos run's case: a brain learns FILLED from a query, journals it (nothing executed
        yet: the trades come next) and is killed before it fetches them; its restarted self loads
        only live orders. One run repairs the fill and the order's executed quantity; the next is OK."""
        conn = db.connect(tmp_path / "aegis.sqlite3")
        t_old = T - 600_000
        persist(conn, [
            wire.OrderRequest(client_order_id="c1", symbol="BTCUSDT", side="SELL", order_type="MARKET", qty=0.01),
            wire.OrderUpdate(client_order_id="c1", exchange_order_id="101", symbol="BTCUSDT", status="FILLED",
                             filled_qty=0.0, avg_price=0.0),
            wire.Position(symbol="BTCUSDT", qty=-0.01, entry_price=43210.1),
        ], t_old)
        broker = FakeBroker(
            orders={"c1": ex_order("c1", side="SELL", status="FILLED", executed="0.010", avg="43210.1")},
            positions=[ex_position("BTCUSDT", "-0.010", "43210.1")],
            fills=[ex_fill("9001", cid="c1", side="SELL", qty="0.010", price="43210.1", time_ms=t_old)])
        ex = fetch_exchange_snapshot(broker, local_snapshot(conn, T), ["BTCUSDT"], T, 3_600_000)
        assert ("query", "BTCUSDT", "c1") in broker.calls
        first = diff(local_snapshot(conn, T + 300), ex, now_ms=T + 300)
        assert (first.status, sorted(kinds(first))) == ("REPAIRED", ["MISSED_FILL", "ORDER_STATUS"])
        persist(conn, first.repairs, T + 300)
        assert conn.execute("SELECT status, filled_qty, avg_price FROM orders").fetchall() == [
            ("FILLED", 0.01, 43210.1)]
        assert conn.execute("SELECT trade_id, client_order_id, qty FROM fills").fetchall() == [("9001", "c1", 0.01)]
        t2 = T + 60_000
        ex2 = fetch_exchange_snapshot(broker, local_snapshot(conn, t2), ["BTCUSDT"], t2, 3_600_000)
        second = diff(local_snapshot(conn, t2 + 300), ex2, now_ms=t2 + 300)
        assert (second.status, second.differences, second.repairs) == ("OK", (), ())


class TestOrdersToRecheck:
    def ids(self, loc: LocalSnapshot, *fills) -> list[str]:
        return sorted(o.client_order_id for o in rc.orders_to_recheck(loc, fills))

    def test_a_filled_record_short_of_its_quantity(self):
        loc = local(lorder("short", status="FILLED", filled="0"), lorder("full", status="FILLED", filled="0.010"),
                    lorder("part", status="FILLED", filled="0.004"))
        assert self.ids(loc) == ["part", "short"]

    def test_a_terminal_record_the_exchange_fills_exceed(self):
        """By client id or through the exchange order id; overlapping pages count once."""
        loc = local(lorder("c1", status="CANCELED", filled="0.003", eid="101"),
                    lorder("c2", status="CANCELED", filled="0.003", eid="102"),
                    lorder("c3", status="EXPIRED", filled="0.003", eid="103"))
        fills = (ex_fill("1", cid="c1", eid="101", qty="0.003"), ex_fill("2", cid="c1", eid="101", qty="0.002"),
                 ex_fill("3", eid="102", qty="0.003"), ex_fill("3", eid="102", qty="0.003"),
                 ex_fill("4", eid="103", qty="0.001"))
        # c1: 0.005 > 0.003; c2: 0.003 once = 0.003; c3: 0.001 < 0.003 (older fills before the lookback)
        assert self.ids(loc, *fills) == ["c1"]

    def test_live_orders_are_asked_anyway_and_never_named(self):
        loc = local(lorder("c1", status="ACKED", filled="0"), lorder("c2", status="PARTIALLY_FILLED", filled="0.001"))
        assert self.ids(loc, ex_fill("1", cid="c1", qty="0.005")) == []


# ---------------------------------------------------------------------------- the exchange read
class TestFetchExchangeSnapshot:
    def test_asks_open_orders_then_missing_live_orders_then_positions_then_fills(self):
        """Only read methods; only non-terminal local orders off the open list are queried; fills
        for every symbol concerned, since now minus the lookback."""
        loc = local(lorder("c1", status="ACKED"), lorder("c2", status="SENT", eid="", symbol="ETHUSDT"),
                    lorder("c3", status="FILLED", filled="0.010", updated_ms=T - 7_200_000, symbol="XRPUSDT"))
        broker = FakeBroker(open_orders=[ex_order("c1")], positions=[ex_position("SOLUSDT", "1")])
        ex = fetch_exchange_snapshot(broker, loc, ["BTCUSDT"], T, 3_600_000, clock_ms=lambda: T + 42)
        since = T - 3_600_000
        assert broker.calls == [("open_orders", None), ("query", "ETHUSDT", "c2"), ("positions",),
                                ("fills", "BTCUSDT", since), ("fills", "ETHUSDT", since),
                                ("fills", "SOLUSDT", since)]
        assert (ex.started_ms, ex.duration_ms, ex.queried, ex.traded_symbols) == (
            T, 42, {"c2": None}, frozenset({"BTCUSDT"}))

    def test_a_contradicted_terminal_order_is_asked_after_the_fills_and_kept_only_when_found(self):
        loc = local(lorder("c1", status="FILLED", filled="0"), lorder("c2", status="FILLED", filled="0",
                                                                       eid="102"))
        broker = FakeBroker(orders={"c1": ex_order("c1", status="FILLED", executed="0.010")})
        ex = fetch_exchange_snapshot(broker, loc, ["BTCUSDT"], T, 3_600_000)
        since = T - 3_600_000
        assert broker.calls == [("open_orders", None), ("positions",), ("fills", "BTCUSDT", since),
                                ("query", "BTCUSDT", "c1"), ("query", "BTCUSDT", "c2")]
        assert set(ex.queried) == {"c1"}  # c2 not found (archived): no ORDER_UNKNOWN for a finished order
        assert kinds(run(loc, ex)) == ["ORDER_STATUS"]

    def test_the_first_run_reads_the_history_of_every_symbol_concerned_and_the_fills_of_ours(self):
        """With ``history_since_ms``: allOrders of each symbol concerned from then on; an
        unknown ae- order there that executed has its fills asked by its order id, however old."""
        e = ex_order("ae-S7-0", eid="801", status="FILLED", executed="0.010", avg="43200", update_ms=T - 9_000_000)
        f = ex_fill("9501", eid="801", qty="0.010", price="43200", time_ms=T - 9_000_000)
        broker = FakeBroker(history=[(e, T - 9_000_000)], fills=[f])
        since = T - 10_000_000
        ex = fetch_exchange_snapshot(broker, local(), ["BTCUSDT"], T, 3_600_000, history_since_ms=since)
        assert broker.calls == [("open_orders", None), ("positions",), ("fills", "BTCUSDT", T - 3_600_000),
                                ("all_orders", "BTCUSDT", since), ("fills", "BTCUSDT", None, "801")]
        assert (ex.history, ex.fills, ex.history_since_ms) == ((e,), (f,), since)
        assert kinds(run(local(), ex)) == ["MISSED_FILL", "ORDER_ADOPTED"]

    def test_later_runs_read_the_history_only_where_a_fill_is_unexplained(self):
        """No history window: allOrders only for a symbol with a fill no known order explains."""
        loc = local(lorder("c1", status="FILLED", filled="0.003", eid="101"))
        broker = FakeBroker(fills=[ex_fill("1", eid="101", time_ms=T - 10), ex_fill("2", eid="999", symbol="ETHUSDT",
                                                                                   time_ms=T - 10)],
                            positions=[ex_position("ETHUSDT", "0.003")])
        ex = fetch_exchange_snapshot(broker, loc, ["BTCUSDT"], T, 3_600_000)
        assert [c for c in broker.calls if c[0] == "all_orders"] == [("all_orders", "ETHUSDT", T - 3_600_000)]
        assert ex.history_since_ms == T - 3_600_000

    def test_an_external_fill_already_reported_reads_no_history_again(self):
        """The run that reported the fill read its symbol's history; later runs do not pay
        allOrders (weight 5) for it again while it stays in the window."""
        loc = LocalSnapshot(taken_ms=T, reported_fills=frozenset({("ETHUSDT", "2")}))
        broker = FakeBroker(fills=[ex_fill("2", eid="999", symbol="ETHUSDT", time_ms=T - 10)],
                            positions=[ex_position("ETHUSDT", "0.003")])
        fetch_exchange_snapshot(broker, loc, ["BTCUSDT"], T, 3_600_000)
        assert [c for c in broker.calls if c[0] == "all_orders"] == []

    def test_the_history_window_starts_at_the_journals_newest_order(self, tmp_path):
        """history_since: the journal's newest order less the clock margin when older than the
        look-back, the look-back otherwise, never beyond 7 days."""
        from services.orchestrator import snapshots

        conn = db.connect(tmp_path / "aegis.sqlite3")
        assert snapshots.history_since(local_snapshot(conn, T), T, 3_600_000) == T - 3_600_000
        persist(conn, [wire.OrderRequest(client_order_id="ae-S1-0", symbol="BTCUSDT", side="BUY",
                                         order_type="MARKET", qty=0.01)], T - 5 * 3_600_000)
        loc = local_snapshot(conn, T)
        assert loc.latest_order_ms == T - 5 * 3_600_000
        assert snapshots.history_since(loc, T, 3_600_000) == T - 5 * 3_600_000 - rc.CLOCK_MARGIN_MS
        assert snapshots.history_since(loc, T + 30 * 86_400_000, 3_600_000) == T + 23 * 86_400_000

    def test_broker_errors_pass_through_unchanged(self):
        """The shell decides what a failure means: the very exception object reaches it."""
        err = TransientError("429", reason="rate_limited")
        with pytest.raises(TransientError) as caught:
            fetch_exchange_snapshot(FakeBroker(error=err), local(), ["BTCUSDT"], T, 3_600_000)
        assert caught.value is err
