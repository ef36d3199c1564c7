"""The order state machine against a model exchange, through random, reordered and repeated events.

The model exchange does NOT refuse a duplicate client order id (Binance does, but only while the
first order is open): if two exchange orders ever exist for one client id, the state machine
re-sent when it must not have. It does honour recvWindow: a request that arrives more than
``recv_window_ms`` after its signed timestamp is refused (-1021), as Binance does.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import event as note_event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from venue import order_rules
from venue import orders as om
from venue.order_rules import CancelRejected, CancelRequest, Canceled, Reject, Send, Timeout
from venue.orders import Ack, Expired, OrderState, QueryResult, TradeFill

S = OrderState
STEP = Decimal("0.001")
PRICES = (Decimal("99.9"), Decimal("100.0"), Decimal("100.1"), Decimal("100.25"))
T0 = 1_700_000_000_000
CID = om.make_client_order_id("ae", "sig-1", 0)
LIVE_EX = ("NEW", "PARTIALLY_FILLED")


class OrderLifecycle(RuleBasedStateMachine):
    @initialize(steps=st.integers(1, 20), rw=st.sampled_from([1_000, 5_000]))
    def start(self, steps, rw):
        self.order = om.new_order(client_order_id=CID, symbol="BTCUSDT", side="BUY", order_type="LIMIT",
                                  qty=STEP * steps, price=Decimal("100.0"), recv_window_ms=rw)
        self.now = T0
        self.ex_orders: list[dict] = []  # what the (naive) exchange holds for CID
        self.trades: dict[str, tuple[Decimal, Decimal]] = {}  # every real trade: id -> (qty, price)
        self.inflight: list[tuple[int, int]] = []  # (attempt, signed timestamp) not yet at the exchange
        self.awaiting_submit: int | None = None  # attempt whose REST answer we still wait for
        self.cancels_inflight = 0
        self.awaiting_cancel = False
        self.pending: list = []  # messages on their way to us, delivered in any order
        self.delivered: list = []
        self.final: OrderState | None = None
        self.errors: list[str] = []

    # ------------------------------------------------------------------ driving the order
    def run(self, event):
        before = self.order
        new, effects = om.apply(before, event)
        for eff in effects:
            if isinstance(eff, om.SubmitOrder):
                assert before.state == S.NEW_LOCAL and not before.confirmed
                assert eff.client_order_id == CID and eff.attempt == new.send_count
                # no earlier attempt can still become an exchange order
                assert self.ex_orders == []
                assert all(self.now - ts > before.recv_window_ms for _, ts in self.inflight)
                self.inflight.append((eff.attempt, new.last_sent_ms))
                self.awaiting_submit = eff.attempt
            elif isinstance(eff, om.CancelOrder):
                self.cancels_inflight += 1
                self.awaiting_cancel = True
            elif isinstance(eff, om.FillApplied):
                assert self.trades[eff.trade_id] == (eff.qty, eff.price)
            elif isinstance(eff, om.OrderError):
                self.errors.append(eff.kind)
        if before.is_terminal:
            assert new.state == before.state
        if new.state != before.state:  # coverage: --hypothesis-show-statistics
            note_event(f"{before.state.value} -> {new.state.value}" + (" (resent)" if new.send_count > 1 else ""))
        if isinstance(event, Timeout) and before.state == S.SENT:
            self.awaiting_submit = None  # the HTTP answer to a timed-out request never reaches us
        if isinstance(event, Timeout) and before.state == S.CANCEL_PENDING:
            self.awaiting_cancel = False
        self.order = new
        return new, effects

    @rule(dt=st.integers(0, 4_000))
    def advance_clock(self, dt):
        self.now += dt

    @rule()
    def send(self):
        before = self.order
        new, effects = self.run(Send(at_ms=self.now))
        if before.state != S.NEW_LOCAL:
            assert new == before and [type(e) for e in effects] == [om.OrderError]

    @rule()
    def timeout(self):
        self.run(Timeout(at_ms=self.now))

    @rule(roll=st.integers(0, 9))
    def request_cancel(self, roll):
        if self.order.state == S.NEW_LOCAL and roll:
            return  # rarely: dropping the order before it is sent ends most runs at once
        self.run(CancelRequest())

    @rule()
    def query(self):
        """The exchange's answer as of now, delivered later (it may arrive stale)."""
        if not self.ex_orders:
            self.pending.append(QueryResult(at_ms=self.now, found=False))
            return
        x = self.ex_orders[0]
        self.pending.append(QueryResult(at_ms=self.now, found=True, status=x["status"], exchange_order_id=x["xid"],
                                        executed_qty=x["filled"]))

    @precondition(lambda self: self.pending)
    @rule(i=st.integers(0, 10_000))
    def deliver(self, i):
        ev = self.pending.pop(i % len(self.pending))
        self.delivered.append(ev)
        self.run(ev)

    @precondition(lambda self: self.delivered)
    @rule(i=st.integers(0, 10_000))
    def deliver_again(self, i):
        ev = self.delivered[i % len(self.delivered)]
        before = self.order
        new, effects = self.run(ev)
        if isinstance(ev, TradeFill):
            assert new == before and effects == ()  # fills are idempotent by trade id

    @rule(extra=st.integers(1, 5))
    def inject_overfill(self, extra):
        """A fill with a new trade id for more than remains is reported, never counted."""
        before = self.order
        if before.state not in om.TRANSITIONS or TradeFill not in om.TRANSITIONS[before.state]:
            return
        tid = f"bogus-{len(self.errors)}-{extra}"
        new, effects = self.run(TradeFill(trade_id=tid, qty=before.remaining_qty + STEP * extra, price=PRICES[0]))
        assert [e.kind for e in effects] == [om.OVERFILL]
        assert (new.filled_qty, new.filled_notional, new.state) == (before.filled_qty, before.filled_notional,
                                                                     before.state)
        assert tid in new.overfill_trade_ids

    @rule(bad=st.sampled_from([Decimal("NaN"), Decimal("-0.001"), Decimal("0"), Decimal("Infinity")]))
    def inject_poison_fill(self, bad):
        """A fill with a NaN, negative, zero or infinite quantity changes nothing."""
        before = self.order
        new, effects = self.run(TradeFill(trade_id="poison", qty=bad, price=PRICES[1]))
        assert new == before and len(effects) == 1 and isinstance(effects[0], om.OrderError)

    # ------------------------------------------------------------------ the exchange
    @precondition(lambda self: self.inflight)
    @rule(i=st.integers(0, 10_000), business_reject=st.booleans())
    def exchange_receives_order(self, i, business_reject):
        attempt, ts = self.inflight.pop(i % len(self.inflight))
        answer = self.awaiting_submit == attempt
        if self.now - ts > self.order.recv_window_ms:
            if answer:
                self.pending.append(Reject(attempt=attempt, code=-1021, message="outside recvWindow"))
            return
        if business_reject:
            if answer:
                self.pending.append(Reject(attempt=attempt, code=-2019, message="Margin is insufficient."))
            return
        xid = str(2**60 + len(self.ex_orders))  # ids beyond 2**53, as Binance's are
        self.ex_orders.append({"xid": xid, "status": "NEW", "filled": Decimal(0)})
        self.pending.append(Ack(exchange_order_id=xid))  # user stream
        if answer:
            self.pending.append(Ack(exchange_order_id=xid))  # REST answer

    @precondition(lambda self: any(x["status"] in LIVE_EX for x in self.ex_orders))
    @rule(k=st.integers(1, 8), p=st.sampled_from(PRICES))
    def exchange_fills(self, k, p):
        x = next(x for x in self.ex_orders if x["status"] in LIVE_EX)
        qty = min(STEP * k, self.order.qty - x["filled"])
        tid = str(len(self.trades) + 1)
        self.trades[tid] = (qty, p)
        x["filled"] += qty
        x["status"] = "FILLED" if x["filled"] == self.order.qty else "PARTIALLY_FILLED"
        self.pending.append(TradeFill(trade_id=tid, qty=qty, price=p, exchange_order_id=x["xid"]))

    @precondition(lambda self: any(x["status"] in LIVE_EX for x in self.ex_orders))
    @rule()
    def exchange_expires(self):
        next(x for x in self.ex_orders if x["status"] in LIVE_EX)["status"] = "EXPIRED"
        self.pending.append(Expired())

    @precondition(lambda self: self.cancels_inflight > 0)
    @rule()
    def exchange_receives_cancel(self):
        self.cancels_inflight -= 1
        live = [x for x in self.ex_orders if x["status"] in LIVE_EX]
        if live:
            live[0]["status"] = "CANCELED"
            self.pending.append(Canceled())
        elif self.awaiting_cancel:
            self.pending.append(CancelRejected(code=-2011, message="Unknown order sent."))

    # ------------------------------------------------------------------ invariants
    @invariant()
    def never_two_exchange_orders_for_one_client_id(self):
        assert len(self.ex_orders) <= 1

    @invariant()
    def terminal_state_never_changes(self):
        if self.final is not None:
            assert self.order.state == self.final
        elif self.order.is_terminal:
            self.final = self.order.state

    @invariant()
    def filled_is_exactly_the_counted_real_trades(self):
        o = self.order
        assert o.filled_qty <= o.qty
        assert o.trade_ids <= set(self.trades)
        assert o.filled_qty == sum((self.trades[t][0] for t in o.trade_ids), Decimal(0))
        assert o.filled_notional == sum((self.trades[t][0] * self.trades[t][1] for t in o.trade_ids), Decimal(0))
        assert o.filled_qty <= (self.ex_orders[0]["filled"] if self.ex_orders else 0)
        if o.filled_qty:
            prices = [self.trades[t][1] for t in o.trade_ids]
            assert min(prices) <= o.avg_price <= max(prices)
            assert abs(o.avg_price * o.filled_qty - o.filled_notional) <= Decimal("1e-25")
        else:
            assert o.avg_price == 0

    @invariant()
    def final_states_agree_with_the_exchange(self):
        o = self.order
        ex = self.ex_orders[0]["status"] if self.ex_orders else None
        if o.state == S.REJECTED:
            assert ex is None
        if o.state == S.FILLED:
            assert ex == "FILLED"
        if o.state == S.EXPIRED:
            assert ex == "EXPIRED"
        if o.state == S.CANCELED:
            assert ex in (None, "CANCELED")


OrderLifecycle.TestCase.settings = settings(max_examples=600, stateful_step_count=80, deadline=None)
TestOrderLifecycle = OrderLifecycle.TestCase


# ---------------------------------------------------------------------------- pinned scenarios
def order(qty: str = "0.010", rw: int = 5_000) -> om.Order:
    return om.new_order(client_order_id=CID, symbol="BTCUSDT", side="BUY", order_type="LIMIT",
                        qty=Decimal(qty), price=Decimal("100.0"), recv_window_ms=rw)


def chain(o: om.Order, *events) -> tuple[om.Order, list]:
    effects: list = []
    for e in events:
        o, eff = om.apply(o, e)
        effects.extend(eff)
    return o, effects


class TestPinnedScenarios:
    def test_not_found_inside_the_recv_window_does_not_allow_a_resend(self):
        """A timed-out send queried 6000 ms later (window 5000 + margin 1000) stays UNKNOWN and asks again later."""
        o, eff = chain(order(), Send(at_ms=T0), Timeout(at_ms=T0 + 3_000),
                       QueryResult(at_ms=T0 + 6_000, found=False))
        assert o.state == S.UNKNOWN
        assert eff[-1] == om.QueryOrder(client_order_id=CID, not_before_ms=T0 + 6_001)

    def test_not_found_after_the_recv_window_allows_a_resend_with_the_same_client_id(self):
        """Queried 6001 ms after the send: back to NEW_LOCAL, and the re-send is attempt 2 of the same id."""
        o, _ = chain(order(), Send(at_ms=T0), Timeout(at_ms=T0 + 3_000), QueryResult(at_ms=T0 + 6_001, found=False))
        assert o.state == S.NEW_LOCAL
        o, eff = om.apply(o, Send(at_ms=T0 + 7_000))
        assert eff == (om.SubmitOrder(client_order_id=CID, attempt=2),) and o.state == S.SENT

    def test_confirmed_order_is_never_resent(self):
        """An order acked once and then reported missing is an error, not a resend."""
        o, eff = chain(order(), Send(at_ms=T0), Ack(exchange_order_id="7"), CancelRequest(),
                       Timeout(at_ms=T0 + 10), QueryResult(at_ms=T0 + 60_000, found=False))
        assert o.state == S.UNKNOWN and eff[-1].kind == order_rules.NOT_FOUND_AFTER_ACK

    def test_duplicate_client_id_reject_means_query_not_rejected(self):
        """-4116 says an earlier attempt is at the exchange: go UNKNOWN and query, never REJECTED."""
        o, eff = chain(order(), Send(at_ms=T0), Reject(attempt=1, code=order_rules.DUPLICATE_CLIENT_ID_CODE))
        assert o.state == S.UNKNOWN
        assert eff == [om.SubmitOrder(client_order_id="ae-sig-1-0", attempt=1),
                       om.QueryOrder(client_order_id="ae-sig-1-0", not_before_ms=T0)]

    def test_reject_for_an_older_attempt_is_ignored(self):
        """The answer to attempt 1 arriving while attempt 2 is in flight changes nothing."""
        o, _ = chain(order(), Send(at_ms=T0), Timeout(at_ms=T0 + 1), QueryResult(at_ms=T0 + 7_000, found=False),
                     Send(at_ms=T0 + 7_001))
        o2, eff = om.apply(o, Reject(attempt=1, code=-1021))
        assert o2 == o and eff == ()

    def test_fills_in_any_order_sum_exactly(self):
        """0.003 @ 100.1 then 0.007 @ 99.9 (delivered reversed, one twice): FILLED, notional 999.6, avg 99.96."""
        f1 = TradeFill(trade_id="1", qty=Decimal("0.003"), price=Decimal("100.1"))
        f2 = TradeFill(trade_id="2", qty=Decimal("0.007"), price=Decimal("99.9"))
        o, eff = chain(order(), Send(at_ms=T0), f2, f2, f1)
        assert o.state == S.FILLED and o.filled_qty == Decimal("0.010")
        assert o.filled_notional == Decimal("0.9996") and o.avg_price == Decimal("99.96")
        assert [type(e) for e in eff] == [om.SubmitOrder, om.FillApplied, om.FillApplied]

    def test_late_fill_on_a_canceled_order_is_counted_but_the_state_stays(self):
        """A fill that raced the cancel still counts (the exchange executed it); CANCELED stays CANCELED."""
        o, _ = chain(order(), Send(at_ms=T0), Ack(exchange_order_id="7"), CancelRequest(), Canceled(),
                     TradeFill(trade_id="9", qty=Decimal("0.004"), price=Decimal("100")))
        assert o.state == S.CANCELED and o.filled_qty == Decimal("0.004")

    def test_query_reporting_more_executed_asks_for_the_trades(self):
        """Found FILLED with 0.010 executed while we hold 0.004: FILLED, and FetchTrades for the missing 0.006."""
        o, _ = chain(order(), Send(at_ms=T0), TradeFill(trade_id="1", qty=Decimal("0.004"), price=Decimal("100")))
        o, eff = om.apply(o, QueryResult(at_ms=T0 + 9, found=True, status="FILLED", executed_qty=Decimal("0.010")))
        assert o.state == S.FILLED
        assert eff == (om.FetchTrades(client_order_id=CID, missing_qty=Decimal("0.006")),)

    def test_a_second_exchange_order_id_is_a_conflict(self):
        """An ack naming another exchange order for our client id is reported and not applied."""
        o, _ = chain(order(), Send(at_ms=T0), Ack(exchange_order_id="7"))
        o2, eff = om.apply(o, Ack(exchange_order_id="8"))
        assert o2 == o and eff[0].kind == om.EXCHANGE_ID_CONFLICT

    def test_invalid_transition_is_reported_not_raised(self):
        """Cancelling a FILLED order returns it unchanged with one INVALID_TRANSITION error."""
        o, _ = chain(order("0.001"), Send(at_ms=T0), TradeFill(trade_id="1", qty=Decimal("0.001"), price=Decimal("1")))
        o2, eff = om.apply(o, CancelRequest())
        assert o2 == o and eff == (om.OrderError(client_order_id=CID, kind=order_rules.INVALID_TRANSITION,
                                                 detail="CancelRequest in FILLED"),)

    def test_order_record_round_trips(self):
        """to_dict/from_dict keeps every field, Decimals and trade ids included."""
        o, _ = chain(order(), Send(at_ms=T0), Ack(exchange_order_id=str(2**63 - 1)),
                     TradeFill(trade_id="1", qty=Decimal("0.004"), price=Decimal("100.1")))
        assert om.Order.from_dict(o.to_dict()) == o

    def test_docstring_table_is_the_transition_table(self):
        """The table printed in the module docstring says exactly what TRANSITIONS does."""
        columns = [Send, Ack, Reject, TradeFill, CancelRequest, CancelRejected, Canceled, Expired, Timeout,
                   QueryResult]
        names = {"CXL_PEND": S.CANCEL_PENDING, **{s.value: s for s in OrderState},
                 **{m: m for m in (om.LIVE, om.FILLS, om.REJECT, om.QUERY, om.KEEP)}}
        rows = {}
        for line in om.__doc__.splitlines():
            tokens = line.split()
            if len(tokens) == 11 and tokens[0] in OrderState.__members__:
                rows[S(tokens[0])] = {ev: names[t] for ev, t in zip(columns, tokens[1:]) if t != "."}
        assert rows == om.TRANSITIONS

    def test_every_state_has_a_row_in_the_table(self):
        """The transition table covers every state, and terminal rows never lead anywhere else."""
        assert set(om.TRANSITIONS) == set(OrderState)
        for s in om.TERMINAL:
            assert all(t in (om.KEEP, om.FILLS) for t in om.TRANSITIONS[s].values())


class TestClientOrderId:
    def test_readable_id_when_it_fits(self):
        """prefix-signal-attempt when the signal id fits Binance's pattern and 36 characters."""
        assert om.make_client_order_id("ae", "sig-1", 0) == "ae-sig-1-0"

    def test_long_or_exotic_signal_ids_are_hashed_deterministically(self):
        """A long or non-ASCII signal id becomes prefix.<20 hex>-attempt, the same every time."""
        a = om.make_client_order_id("ae", "BTCUSDT:15m:bos:" + "x" * 40, 3)
        assert a == om.make_client_order_id("ae", "BTCUSDT:15m:bos:" + "x" * 40, 3)
        assert a.startswith("ae.") and a.endswith("-3") and len(a) == 2 + 1 + 20 + 2
        assert om.CLIENT_ORDER_ID_RE.fullmatch(om.make_client_order_id("ae", "sïg ñ", 99_999))

    def test_attempts_give_distinct_ids(self):
        """Attempt 0 and attempt 1 of one signal are different orders."""
        assert om.make_client_order_id("ae", "s1", 0) != om.make_client_order_id("ae", "s1", 1)

    @pytest.mark.parametrize("prefix,attempt", [("a-b", 0), ("", 0), ("toolongpfx", 0), ("ae", -1), ("ae", 100_000)])
    def test_bad_prefix_or_attempt_is_refused(self, prefix, attempt):
        """A prefix that could blur the id's structure, or an attempt out of range, raises InvalidOrder."""
        with pytest.raises(om.InvalidOrder):
            om.make_client_order_id(prefix, "s1", attempt)
