"""Recovery: what the orchestrator's database says about the time before a restart (read
back read-only), merged with the exchange's positions, which are the truth.

Every database here is a real SQLite file written the way the orchestrator writes it
(``db.connect`` + ``db.write_batch(db.rows_for(envelope))``)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from common import wire
from venue import orders as om
from services.brain import recovery, risk, trader, trader_fills, trader_restart, trader_views
from venue.port import ExchangePosition
from services.orchestrator import db

NOW = 1_733_011_200_000  # 2024-12-01 00:00 UTC: the restart
T = NOW - 3_600_000  # an hour before it
DAY_MS = 86_400_000
CFG = trader.TraderConfig()
EID_A = "9007199254740993"

HALTED = risk.RiskState(halted=True, halt_reason=risk.DAILY_LOSS, halt_detail="lost 260.00 USDT today (limit 250.0)",
                        halted_at_ms=T + 500_000, day_index=T // DAY_MS, day_start_equity_usdt=10_000.0,
                        peak_equity_usdt=10_100.0, order_times_ms=(T + 400_000,))


def env(body, at_ms: int, seq: int) -> wire.Envelope:
    return wire.Envelope(wire.SCHEMA_VERSION, "brain:7", seq, at_ms * 1_000_000, at_ms * 1_000_000, body)


def write(path: Path, *items: tuple[int, object]) -> Path:
    """Journal ``(at_ms, body)`` items in order, one batch, as the orchestrator would."""
    conn = db.connect(path)
    try:
        db.write_batch(conn, [row for i, (at, body) in enumerate(items) for row in db.rows_for(env(body, at, i + 1))])
    finally:
        conn.close()
    return path


def sig(sid: str, symbol: str, side: str, entry: float, stop: float, target: float, conf: float,
        features: dict[str, float]) -> wire.SignalGenerated:
    return wire.SignalGenerated(signal_id=sid, symbol=symbol, side=side, entry=entry, stop=stop, target=target,
                                confidence=conf, cold=False, strategy="smc", features=features)


def request(cid: str, symbol: str, side: str, qty: float, signal_id: str,
            reduce_only: bool = False) -> wire.OrderRequest:
    return wire.OrderRequest(client_order_id=cid, symbol=symbol, side=side, order_type="MARKET", qty=qty,
                             price=0.0, reduce_only=reduce_only, signal_id=signal_id)


def update(cid: str, symbol: str, status: str, eid: str = "", filled: float = 0.0,
           avg: float = 0.0) -> wire.OrderUpdate:
    return wire.OrderUpdate(client_order_id=cid, exchange_order_id=eid, symbol=symbol, status=status,
                            filled_qty=filled, avg_price=avg)


def fill(cid: str, eid: str, tid: str, symbol: str, side: str, qty: float, price: float) -> wire.Fill:
    return wire.Fill(client_order_id=cid, exchange_order_id=eid, trade_id=tid, symbol=symbol, side=side, qty=qty,
                     price=price, fee=0.01)


def risk_blob(state: risk.RiskState) -> bytes:
    return json.dumps(state.to_dict()).encode()


# The hour before the restart:
#   AAAUSDT  long entry filled (two fills), its STOP exit sent, then the crash
#   BBBUSDT  short entry half filled (exchange order 77)
#   CCCUSDT  long entry filled; closed while we were down (the exchange holds nothing)
#   EEEUSDT  long entry journaled (NEW_LOCAL), never heard of again
#   FFFUSDT  an entry eight days old: outside the used-ids window
FEATURES_A = {"rr": 2.0, "atr": 1.5}
HISTORY = (
    (T, sig("sA", "AAAUSDT", "BUY", 100.0, 98.0, 104.0, 0.6, FEATURES_A)),
    (T, request("ae-sA-0", "AAAUSDT", "BUY", 19.8, "sA")),
    (T + 1, update("ae-sA-0", "AAAUSDT", "FILLED", EID_A, 19.8, 100.0)),
    (T + 1, fill("ae-sA-0", EID_A, "tA1", "AAAUSDT", "BUY", 12.0, 100.0)),
    (T + 1, fill("ae-sA-0", EID_A, "tA2", "AAAUSDT", "BUY", 7.8, 100.0)),
    (T + 100_000, request("ax-sA-1", "AAAUSDT", "SELL", 19.8, "sA", reduce_only=True)),
    (T + 100_000, update("ax-sA-1", "AAAUSDT", "SENT")),
    (T + 200_000, sig("sB", "BBBUSDT", "SELL", 50.0, 51.0, 48.0, 0.7, {"rr": 2.0})),
    (T + 200_000, request("ae-sB-0", "BBBUSDT", "SELL", 10.0, "sB")),
    (T + 200_001, update("ae-sB-0", "BBBUSDT", "PARTIALLY_FILLED", "77", 5.0, 50.0)),
    (T + 200_001, fill("ae-sB-0", "77", "tB1", "BBBUSDT", "SELL", 5.0, 50.0)),
    (T + 300_000, sig("sC", "CCCUSDT", "BUY", 10.0, 9.8, 10.4, 0.5, {"rr": 2.0})),
    (T + 300_000, request("ae-sC-0", "CCCUSDT", "BUY", 100.0, "sC")),
    (T + 300_001, update("ae-sC-0", "CCCUSDT", "FILLED", "88", 100.0, 10.0)),
    (T + 400_000, sig("sE", "EEEUSDT", "BUY", 5.0, 4.9, 5.2, 0.55, {"rr": 2.0})),
    (T + 400_000, request("ae-sE-0", "EEEUSDT", "BUY", 40.0, "sE")),
    (NOW - 8 * DAY_MS, sig("sF", "FFFUSDT", "BUY", 1.0, 0.9, 1.2, 0.5, {})),
    (NOW - 8 * DAY_MS, request("ae-sF-0", "FFFUSDT", "BUY", 1000.0, "sF")),
    (NOW - 8 * DAY_MS + 1, update("ae-sF-0", "FFFUSDT", "FILLED", "99", 1000.0, 1.0)),
    (T + 10, wire.ModelState(name="confidence", version=12, state=b"\x01model")),
    (T + 500_000, wire.ModelState(name="risk_state", version=T + 500_000, state=risk_blob(HALTED))),
)

# the exchange at the restart: AAA and BBB as we left them, CCC gone, DDD opened by someone else
POSITIONS = (
    ExchangePosition(symbol="AAAUSDT", qty=Decimal("19.8"), entry_price=Decimal("100.0")),
    ExchangePosition(symbol="BBBUSDT", qty=Decimal("-5"), entry_price=Decimal("50")),
    ExchangePosition(symbol="DDDUSDT", qty=Decimal("-3"), entry_price=Decimal("20")),
)


@pytest.fixture
def saved(tmp_path: Path) -> recovery.Saved:
    return recovery.load(write(tmp_path / "aegis.db", *HISTORY), NOW)


class TestLoad:
    def test_a_missing_database_is_a_first_start(self, tmp_path: Path):
        assert recovery.load(tmp_path / "nowhere.db", NOW) == recovery.Saved()

    def test_a_database_without_the_schema_reads_as_a_first_start(self, tmp_path: Path):
        path = tmp_path / "empty.db"
        path.write_bytes(b"")
        assert recovery.load(path, NOW) == recovery.Saved()

    def test_orders_whose_last_state_is_not_final_are_rebuilt_exactly(self, saved: recovery.Saved):
        assert sorted(saved.open_orders) == ["ae-sB-0", "ae-sE-0", "ax-sA-1"]
        assert saved.open_orders["ae-sB-0"] == om.Order(
            client_order_id="ae-sB-0", symbol="BBBUSDT", side="SELL", order_type="MARKET", qty=Decimal("10"),
            price=Decimal("0"), reduce_only=False, signal_id="sB", state=om.S.PARTIALLY_FILLED,
            exchange_order_id="77", confirmed=True, send_count=1, last_sent_ms=T + 200_000,
            filled_qty=Decimal("5"), filled_notional=Decimal("250"), trade_ids=frozenset({"tB1"}))

    def test_a_journaled_but_unsent_entry_comes_back_new_local_and_unconfirmed(self, saved: recovery.Saved):
        o = saved.open_orders["ae-sE-0"]
        assert (o.state, o.send_count, o.confirmed, o.exchange_order_id) == (om.S.NEW_LOCAL, 0, False, "")
        assert (o.qty, o.filled_qty, o.trade_ids, o.last_sent_ms) == (Decimal("40"), Decimal(0), frozenset(),
                                                                      T + 400_000)

    def test_a_sent_exit_comes_back_sent_reduce_only_and_unconfirmed(self, saved: recovery.Saved):
        o = saved.open_orders["ax-sA-1"]
        assert (o.state, o.side, o.reduce_only, o.confirmed, o.send_count) == (om.S.SENT, "SELL", True, False, 1)
        assert (o.qty, o.signal_id) == (Decimal("19.8"), "sA")

    def test_used_client_ids_cover_the_last_seven_days_final_or_not(self, saved: recovery.Saved):
        assert saved.used_cids == frozenset({"ae-sA-0", "ax-sA-1", "ae-sB-0", "ae-sC-0", "ae-sE-0"})

    def test_plans_come_from_the_newest_entry_per_symbol_and_its_signal(self, saved: recovery.Saved):
        assert sorted(saved.plans) == ["AAAUSDT", "BBBUSDT", "CCCUSDT", "EEEUSDT"]
        assert saved.plans["AAAUSDT"] == trader.Trade(
            trade_id="sA", symbol="AAAUSDT", side="BUY", stop=98.0, target=104.0, confidence=0.6,
            features=FEATURES_A, opened_ms=T, entry_cid="ae-sA-0")
        b = saved.plans["BBBUSDT"]
        assert (b.side, b.stop, b.target, b.confidence, b.entry_cid) == ("SELL", 51.0, 48.0, 0.7, "ae-sB-0")

    def test_last_action_per_symbol_is_its_newest_order_update(self, saved: recovery.Saved):
        assert saved.last_action_ms == {"AAAUSDT": T + 100_000, "BBBUSDT": T + 200_001, "CCCUSDT": T + 300_001,
                                        "EEEUSDT": T + 400_000}

    def test_the_model_and_the_kill_switch_state_are_read_back(self, saved: recovery.Saved):
        assert saved.model_blob == b"\x01model"
        assert saved.risk_state == HALTED

    @pytest.mark.parametrize("blob", [
        b"{not json",
        json.dumps({**HALTED.to_dict(), "v": 2}).encode(),  # a newer record layout
        json.dumps({**HALTED.to_dict(), "halted": "false"}).encode(),  # a string is not a bool
    ], ids=["not-json", "unknown-version", "wrong-type"])
    def test_an_unreadable_risk_state_starts_halted_never_unhalted(self, tmp_path: Path, blob: bytes):
        path = write(tmp_path / "aegis.db", (T, wire.ModelState(name="risk_state", version=1, state=blob)))
        rs = recovery.load(path, NOW).risk_state
        assert rs == risk.RiskState(halted=True, halt_reason=risk.MANUAL, halt_detail="saved risk state unreadable",
                                    halted_at_ms=NOW)

    def test_without_a_saved_risk_state_there_is_none_to_restore(self, tmp_path: Path):
        path = write(tmp_path / "aegis.db", (T, wire.ModelState(name="confidence", version=1, state=b"m")))
        saved = recovery.load(path, NOW)
        assert (saved.risk_state, saved.model_blob) == (None, b"m")


class TestMerge:
    def test_a_position_whose_entry_is_final_gets_its_plan_and_the_exchange_quantity(self, saved: recovery.Saved):
        more = (ExchangePosition(symbol="AAAUSDT", qty=Decimal("20.5"), entry_price=Decimal("100.2")),)
        a = recovery.merge(CFG, saved, more, NOW, HALTED).trades["AAAUSDT"]
        assert (a.trade_id, a.stop, a.target, a.confidence) == ("sA", 98.0, 104.0, 0.6)
        assert (a.entry_qty, a.entry_notional) == (Decimal("20.5"), Decimal("2054.10"))

    def test_a_position_whose_entry_is_still_open_starts_from_the_fills_on_record(self, saved: recovery.Saved):
        # the exchange holds 8: 3 more filled while we were down. The entry's query fetches
        # those 3 and adds them to the trade; starting from 8 would count them twice.
        more = (ExchangePosition(symbol="BBBUSDT", qty=Decimal("-8"), entry_price=Decimal("50")),)
        b = recovery.merge(CFG, saved, more, NOW, HALTED, executed={"ae-sB-0": Decimal("8")}).trades["BBBUSDT"]
        assert b == trader.Trade(trade_id="sB", symbol="BBBUSDT", side="SELL", stop=51.0, target=48.0, confidence=0.7,
                                 features={"rr": 2.0}, opened_ms=T + 200_000, entry_cid="ae-sB-0",
                                 entry_qty=Decimal("5"), entry_notional=Decimal("250"))

    def test_an_open_exit_is_attached_to_its_position(self, saved: recovery.Saved):
        st = recovery.merge(CFG, saved, POSITIONS, NOW, HALTED)
        a = st.trades["AAAUSDT"]
        assert (a.trade_id, a.stop, a.target, a.features, a.entry_qty, a.entry_notional) == (
            "sA", 98.0, 104.0, FEATURES_A, Decimal("19.8"), Decimal("1980.0"))
        assert (a.exit_cid, a.exit_cids, a.exit_reason) == ("ax-sA-1", frozenset({"ax-sA-1"}), "RECOVERED")

    def test_an_exit_that_executed_while_we_were_down_is_not_subtracted_twice(self, saved: recovery.Saved):
        # AAA's exit executed 10 of 19.8 and expired while we were down: the exchange holds 9.8.
        # The trade starts at 19.8 so that the exit's fetched 10 leave exactly the 9.8 held.
        held = (ExchangePosition(symbol="AAAUSDT", qty=Decimal("9.8"), entry_price=Decimal("100.0")),)
        st = recovery.merge(CFG, saved, held, NOW, HALTED, executed={"ax-sA-1": Decimal("10")})
        st, _ = trader_fills.on_order_event(CFG, st, "ax-sA-1", om.Ack(exchange_order_id="5"),
                                            trader.Ctx(now_ms=NOW, equity=1e4, market=risk.Market(filters={})))
        st, _ = trader_fills.on_order_event(CFG, st, "ax-sA-1", om.TradeFill(trade_id="tx", qty=Decimal("10"),
                                                                             price=Decimal("98"), exchange_order_id="5"),
                                      trader.Ctx(now_ms=NOW, equity=1e4, market=risk.Market(filters={})))
        assert st.trades["AAAUSDT"].position == Decimal("9.8")

    def test_a_position_without_a_plan_is_adopted_with_a_stop_two_percent_away(self, saved: recovery.Saved):
        st = recovery.merge(CFG, saved, POSITIONS, NOW, HALTED)
        assert st.trades["DDDUSDT"] == trader.Trade(
            trade_id=f"adopted-DDDUSDT-{NOW}", symbol="DDDUSDT", side="SELL", stop=20.4, target=19.2,
            confidence=0.0, features={}, opened_ms=NOW, entry_cid="", entry_qty=Decimal("3"),
            entry_notional=Decimal("60"), adopted=True)

    def test_a_position_adopted_before_keeps_its_trade_and_its_live_stop(self, saved: recovery.Saved):
        """DDDUSDT (short, no plan) was adopted at an earlier start and its stop and target are
        still open at the exchange: adopted again under the same trade id, the restored trade
        owns them (no second closePosition stop, which Binance would refuse with -4130). A
        finished one, or one on the other side, is not taken."""
        from dataclasses import replace as dc_replace

        from venue import algo_orders as ao

        old = "adopted-DDDUSDT-1733000000000"
        live = {f"ps-{old}-1": ao.AlgoOrder(client_algo_id=f"ps-{old}-1", symbol="DDDUSDT", side="BUY",
                                            order_type="STOP_MARKET", trigger_price=Decimal("20.4"),
                                            close_position=True, trade_id=old, role="STOP", state=ao.A.LIVE,
                                            algo_id="7", confirmed=True, send_count=1),
                f"pt-{old}-1": ao.AlgoOrder(client_algo_id=f"pt-{old}-1", symbol="DDDUSDT", side="BUY",
                                            order_type="TAKE_PROFIT_MARKET", trigger_price=Decimal("19.2"),
                                            close_position=True, trade_id=old, role="TARGET", state=ao.A.LIVE,
                                            algo_id="8", confirmed=True, send_count=1)}
        again = dc_replace(saved, algos={**saved.algos, **live})
        st = recovery.merge(CFG, again, POSITIONS, NOW, HALTED)
        assert st.trades["DDDUSDT"].trade_id == old
        t = trader_restart.restore(risk_state=st.risk, orders=st.orders, trades=st.trades, used_cids=st.used_cids,
                                   last_action_ms=st.last_action_ms, algos=again.algos).trades["DDDUSDT"]
        assert (t.stop_cid, t.target_cid) == (f"ps-{old}-1", f"pt-{old}-1")
        done = {k: dc_replace(a, state=ao.A.CANCELED) for k, a in live.items()}
        assert recovery.merge(CFG, dc_replace(saved, algos=done), POSITIONS, NOW, HALTED).trades[
            "DDDUSDT"].trade_id == f"adopted-DDDUSDT-{NOW}"
        other_side = {k: dc_replace(a, side="SELL") for k, a in live.items()}
        assert recovery.merge(CFG, dc_replace(saved, algos=other_side), POSITIONS, NOW, HALTED).trades[
            "DDDUSDT"].trade_id == f"adopted-DDDUSDT-{NOW}"

    def test_the_newest_earlier_adoption_wins(self):
        from venue import algo_orders as ao

        def stop(tid: str, state=ao.A.LIVE) -> ao.AlgoOrder:
            return ao.AlgoOrder(client_algo_id=f"ps-{tid}-1", symbol="XUSDT", side="SELL", order_type="STOP_MARKET",
                                trigger_price=Decimal(1), trade_id=tid, role="STOP", state=state)

        algos = {a.client_algo_id: a for a in (stop("adopted-XUSDT-900"), stop("adopted-XUSDT-1000"),
                                                stop("adopted-XUSDT-2000", ao.A.CANCELED), stop("sX"))}
        assert recovery.adopted_before(algos, "XUSDT", "BUY") == "adopted-XUSDT-1000"
        assert recovery.adopted_before(algos, "XUSDT", "SELL") == ""
        assert recovery.adopted_before(algos, "YUSDT", "BUY") == ""

    def test_a_plan_on_the_other_side_of_the_exchange_position_is_not_used(self, saved: recovery.Saved):
        flipped = (ExchangePosition(symbol="AAAUSDT", qty=Decimal("-2"), entry_price=Decimal("100")),)
        t = recovery.merge(CFG, saved, flipped, NOW, HALTED).trades["AAAUSDT"]
        assert (t.adopted, t.side, t.stop, t.target) == (True, "SELL", 102.0, 96.0)
        assert t.trade_id == f"adopted-AAAUSDT-{NOW}"

    def test_a_filled_plan_the_exchange_no_longer_holds_was_closed_while_away(self, saved: recovery.Saved):
        """CCCUSDT's entry filled, the exchange holds no position: the trade comes back flat at
        the exchange (its slot free, no exit to send) with its journaled entry, so the closing
        fills fetched after start close it with its real outcome."""
        st = recovery.merge(CFG, saved, POSITIONS, NOW, HALTED)
        assert sorted(st.trades) == ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT"]
        t = st.trades["CCCUSDT"]
        qty, avg = saved.entry_fills["CCCUSDT"]
        assert (t.flat_at_exchange_ms, t.entry_qty, t.entry_notional) == (NOW, qty, qty * avg)
        assert qty > 0
        ctx = trader.Ctx(now_ms=NOW, equity=1e4, market=risk.Market(filters={}))
        assert "CCCUSDT" not in [h.symbol for h in trader_views.held_positions(st, ctx)]

    def test_an_open_entry_without_a_position_keeps_its_slot_with_its_plan(self, saved: recovery.Saved):
        st = recovery.merge(CFG, saved, POSITIONS, NOW, HALTED)
        assert st.trades["EEEUSDT"] == saved.plans["EEEUSDT"]
        assert st.trades["EEEUSDT"].entry_qty == Decimal(0)

    def test_an_open_entry_without_any_plan_is_held_for_adoption_at_its_fill(self):
        o = om.new_order(client_order_id="ae-x-0", symbol="EEEUSDT", side="BUY", order_type="MARKET",
                         qty=Decimal("4"), signal_id="x")
        st = recovery.merge(CFG, recovery.Saved(open_orders={"ae-x-0": o}), (), NOW, risk.RiskState())
        assert st.trades["EEEUSDT"] == trader.Trade(trade_id="x", symbol="EEEUSDT", side="BUY", stop=0.0, target=0.0,
                                                    confidence=0.0, features={}, opened_ms=NOW, entry_cid="ae-x-0",
                                                    adopted=True)

    def test_orders_used_ids_and_last_actions_pass_through(self, saved: recovery.Saved):
        st = recovery.merge(CFG, saved, POSITIONS, NOW, HALTED)
        assert st.orders == saved.open_orders
        assert st.used_cids == saved.used_cids
        assert st.last_action_ms == saved.last_action_ms

    def test_a_halted_risk_state_stays_halted(self, saved: recovery.Saved):
        st = recovery.merge(CFG, saved, POSITIONS, NOW, saved.risk_state)
        assert st.risk == HALTED and st.risk.halted is True

    def test_nothing_saved_and_nothing_held_is_an_empty_book(self):
        st = recovery.merge(CFG, recovery.Saved(), (), NOW, risk.initial_state(10_000.0, NOW))
        assert (st.trades, st.orders, st.used_cids) == ({}, {}, frozenset())


def candle(symbol: str, open_ms: int, close: float = 100.0, interval_s: int = 60) -> wire.CandleClosed:
    return wire.CandleClosed(symbol=symbol, interval_s=interval_s, open_ms=open_ms, close_ms=open_ms + interval_s * 1000 - 1,
                             open=close, high=close + 1, low=close - 1, close=close, volume=2.0)


class TestRecentCandles:
    def test_the_last_k_per_symbol_in_the_window_oldest_first(self, tmp_path: Path):
        m = 60_000
        items = [(NOW, candle("AAAUSDT", NOW - k * m)) for k in range(1, 6)]
        items += [(NOW, candle("BBBUSDT", NOW - k * m)) for k in range(1, 3)]
        items += [(NOW, candle("AAAUSDT", NOW - 10 * DAY_MS))]  # another run's: outside the window
        items += [(NOW, candle("AAAUSDT", NOW - 2 * m, interval_s=900))]  # another interval
        path = write(tmp_path / "aegis.db", *items)
        got = recovery.recent_candles(path, 60, 3, NOW)
        assert [(c.symbol, c.open_ms) for c in got] == [
            ("AAAUSDT", NOW - 3 * m), ("AAAUSDT", NOW - 2 * m), ("BBBUSDT", NOW - 2 * m),
            ("AAAUSDT", NOW - m), ("BBBUSDT", NOW - m)]

    def test_no_database_or_no_table_gives_nothing(self, tmp_path: Path):
        assert recovery.recent_candles(tmp_path / "absent.db", 60, 100, NOW) == []
        (tmp_path / "junk.db").write_bytes(b"not sqlite" * 50)
        assert recovery.recent_candles(tmp_path / "junk.db", 60, 100, NOW) == []

    def test_read_as_consumed_gives_the_same_candles_symbol_by_symbol(self, tmp_path: Path):
        m = 60_000
        items = [(NOW, candle("BBBUSDT", NOW - k * m)) for k in range(1, 3)]
        items += [(NOW, candle("AAAUSDT", NOW - k * m)) for k in range(1, 6)]
        items += [(NOW, candle("AAAUSDT", NOW - 10 * DAY_MS))]  # another run's: outside the window
        items += [(NOW, candle("AAAUSDT", NOW - 2 * m, interval_s=900))]  # another interval
        items += [(NOW, candle("CCCUSDT", NOW - 2 * m, interval_s=900))]  # only another interval
        path = write(tmp_path / "aegis.db", *items)
        got = list(recovery.iter_recent_candles(path, 60, 3, NOW))
        assert [(c.symbol, c.open_ms) for c in got] == [
            ("AAAUSDT", NOW - 3 * m), ("AAAUSDT", NOW - 2 * m), ("AAAUSDT", NOW - m),
            ("BBBUSDT", NOW - 2 * m), ("BBBUSDT", NOW - m)]
        assert sorted(got, key=lambda c: (c.open_ms, c.symbol)) == recovery.recent_candles(path, 60, 3, NOW)

    def test_read_as_consumed_holds_its_connection_until_closed(self, tmp_path: Path):
        m = 60_000
        path = write(tmp_path / "aegis.db", *[(NOW, candle("AAAUSDT", NOW - k * m)) for k in range(1, 4)])
        it = recovery.iter_recent_candles(path, 60, 3, NOW)
        assert next(it).open_ms == NOW - 3 * m
        it.close()  # a brain stopped mid warm-up: the connection closes, nothing more comes
        assert list(it) == []

    def test_read_as_consumed_with_no_database_or_no_table_gives_nothing(self, tmp_path: Path):
        assert list(recovery.iter_recent_candles(tmp_path / "absent.db", 60, 100, NOW)) == []
        (tmp_path / "junk.db").write_bytes(b"not sqlite" * 50)
        assert list(recovery.iter_recent_candles(tmp_path / "junk.db", 60, 100, NOW)) == []
        assert list(recovery.iter_recent_candles(tmp_path / "absent.db", 60, 0, NOW)) == []

    def test_a_feed_is_running_only_with_a_live_ready_pid(self, tmp_path: Path):
        import os

        from common import service
        assert service.live_pid(tmp_path / "feed.ready") is None
        (tmp_path / "feed.ready").write_text(str(os.getpid()))
        assert service.live_pid(tmp_path / "feed.ready") == os.getpid()
        (tmp_path / "feed.ready").write_text("999999999")
        assert service.live_pid(tmp_path / "feed.ready") is None
        (tmp_path / "feed.ready").write_text("garbage")
        assert service.live_pid(tmp_path / "feed.ready") is None


# ---------------------------------------------------------------------------- the order history at start
def hist(cid: str, status: str, executed: str, *, symbol: str = "EEEUSDT", side: str = "BUY", qty: str = "4",
         eid: str = EID_A, reduce_only: bool = False):
    from venue.port import ExchangeOrder

    return ExchangeOrder(client_order_id=cid, exchange_order_id=eid, symbol=symbol, side=side, order_type="LIMIT",
                         status=status, qty=Decimal(qty), executed_qty=Decimal(executed), avg_price=Decimal("50.5"),
                         price=Decimal("50.6"), reduce_only=reduce_only, update_ms=NOW - 5_000)


class TestHistoryAtStart:
    """Orders of ours that finished at the exchange while no record here knew them (a machine
    crash took their intent records): found in the exchange's order history at start."""

    def test_the_history_is_read_from_a_minute_before_the_newest_record(self):
        """The newest intent or journaled order change, less a minute; nothing on record: the
        configured look-back; never more than 7 days back."""
        from services.brain import intent_log

        it = intent_log.Intent(client_id="ae-a-0", at_ns=(NOW - 10_000) * 1_000_000, body=wire.OrderRequest(
            client_order_id="ae-a-0", symbol="EEEUSDT", side="BUY", order_type="MARKET", qty=1.0))
        saved = recovery.Saved(last_action_ms={"EEEUSDT": NOW - 20_000, "FFFUSDT": NOW - 90_000})
        assert recovery.history_since(saved, [it], NOW, DAY_MS) == NOW - 10_000 - 60_000
        assert recovery.history_since(saved, [], NOW, DAY_MS) == NOW - 20_000 - 60_000
        assert recovery.history_since(recovery.Saved(), [], NOW, DAY_MS) == NOW - DAY_MS
        old = recovery.Saved(last_action_ms={"EEEUSDT": NOW - 30 * DAY_MS})
        assert recovery.history_since(old, [], NOW, DAY_MS) == NOW - 7 * DAY_MS

    def test_orders_are_adopted_into_a_trade_only_where_a_position_or_trade_is_theirs(self):
        """A filled entry whose side the exchange holds, an exit on a traded symbol: adopted.
        No fill, or the entry's position gone: recorded only. Known ids, open ones and other
        people's ids: left alone."""
        positions = [ExchangePosition(symbol="EEEUSDT", qty=Decimal("4"), entry_price=Decimal("50.5"))]
        plan = trader.Trade(trade_id="p", symbol="GGGUSDT", side="BUY", stop=1.0, target=2.0, confidence=0.5,
                            features={}, opened_ms=T, entry_cid="ae-p-0")
        saved = recovery.Saved(plans={"GGGUSDT": plan}, journal_ids=frozenset({"ae-known-0"}))
        history = [hist("ae-e-0", "FILLED", "4"),  # its position is held: adopted
                   hist("ae-e-0", "FILLED", "4"),  # the same row twice (pages overlap): once
                   hist("ae-f-0", "FILLED", "4", symbol="FFFUSDT"),  # position gone: recorded
                   hist("ae-s-0", "FILLED", "4", side="SELL"),  # a short entry beside a long: recorded
                   hist("ax-p-1", "FILLED", "2", symbol="GGGUSDT", side="SELL", reduce_only=True),  # adopted
                   hist("ae-c-0", "CANCELED", "0"),  # nothing executed: recorded
                   hist("ae-x-0", "EXPIRED", "1.5", symbol="FFFUSDT"),  # part-filled, position gone: recorded
                   hist("ae-known-0", "FILLED", "4"), hist("ae-n-0", "NEW", "0"), hist("web_1", "FILLED", "4")]
        adopt, record = recovery.from_history(history, positions, saved)
        assert [e.client_order_id for e in adopt] == ["ae-e-0", "ax-p-1"]
        assert [e.client_order_id for e in record] == ["ae-f-0", "ae-s-0", "ae-c-0", "ae-x-0"]

    def test_a_recorded_order_is_its_request_its_final_state_and_its_own_fills(self):
        """The journal rows of a part-filled then expired entry: request, EXPIRED with the exact
        executed quantity, and only the fills of its exchange order id."""
        from venue.port import ExchangeFill

        e = hist("ae-x-0", "EXPIRED", "1.5", symbol="FFFUSDT")
        mine = ExchangeFill(trade_id="77", client_order_id="", exchange_order_id=EID_A, symbol="FFFUSDT", side="BUY",
                            qty=Decimal("1.5"), price=Decimal("50.5"), fee=Decimal("0.03"))
        other = ExchangeFill(trade_id="78", client_order_id="", exchange_order_id="1", symbol="FFFUSDT", side="BUY",
                             qty=Decimal("1"), price=Decimal("50"))
        assert recovery.record_bodies(e, [mine, other], NOW) == [
            wire.OrderRequest(client_order_id="ae-x-0", symbol="FFFUSDT", side="BUY", order_type="LIMIT", qty=4.0,
                              price=50.6, reduce_only=False),
            wire.OrderUpdate(client_order_id="ae-x-0", exchange_order_id=EID_A, symbol="FFFUSDT", status="EXPIRED",
                             filled_qty=1.5, avg_price=50.5,
                             reason="adopted from the exchange's order history: sent, not on record"),
            wire.Fill(client_order_id="ae-x-0", exchange_order_id=EID_A, trade_id="77", symbol="FFFUSDT", side="BUY",
                      qty=1.5, price=50.5, fee=0.03, fee_asset="USDT", liquidity="taker")]

    def test_an_adopted_filled_entry_is_the_positions_trade_and_its_fills_bring_it_to_the_exchanges_size(self):
        """No plan: the position's adopted trade is the entry's (its id, its order), starting at
        the position less what the entry executed; once its fill is applied the trade holds
        exactly the exchange's 4, counted once, and its stop is armed."""
        from services.brain import intent_log  # noqa: F401 - the intents come from exchange_intents

        e = hist("ae-e-0", "FILLED", "4")
        saved, _ = recovery.with_intents(recovery.Saved(), recovery.exchange_intents([e], NOW), NOW)
        positions = [ExchangePosition(symbol="EEEUSDT", qty=Decimal("4"), entry_price=Decimal("50.5"))]
        st = recovery.merge(CFG, saved, positions, NOW, risk.RiskState(), executed={"ae-e-0": Decimal("4")})
        t = st.trades["EEEUSDT"]
        assert (t.trade_id, t.entry_cid, t.entry_qty, t.adopted, t.side) == ("ae-e-0", "ae-e-0", Decimal(0), True,
                                                                             "BUY")
        assert (t.stop, t.target) == (50.5 * 0.98, 50.5 * 1.04)  # adopt_stop_pct 2 below, twice that above
        from venue.port import ExchangeFill

        st, _ = trader_restart.recovery_actions(st, NOW)
        ctx = trader.Ctx(now_ms=NOW, equity=10_000.0, market=risk.Market(filters={}, quotes={}))
        st, _ = trader_fills.on_order_event(CFG, st, "ae-e-0", om.QueryResult(at_ms=NOW, found=True, status="FILLED",
                                                                              executed_qty=Decimal("4"),
                                                                              exchange_order_id=EID_A), ctx)
        fill = ExchangeFill(trade_id="77", client_order_id="", exchange_order_id=EID_A, symbol="EEEUSDT", side="BUY",
                            qty=Decimal("4"), price=Decimal("50.5"))
        for _ in range(2):  # the same trade twice (REST and the user stream): counted once
            st, _ = trader_fills.on_fill(CFG, st, fill, ctx, client_order_id="ae-e-0")
        t = st.trades["EEEUSDT"]
        assert (t.entry_qty, t.position, st.orders["ae-e-0"].state) == (Decimal("4"), Decimal("4"), om.S.FILLED)

    def test_an_entry_that_executed_more_than_the_position_holds_is_not_linked(self):
        """The position is smaller than what the entry executed (partly closed since): a plain
        adopted position of the exchange's size, never a negative start."""
        e = hist("ae-e-0", "FILLED", "4")
        saved, _ = recovery.with_intents(recovery.Saved(), recovery.exchange_intents([e], NOW), NOW)
        positions = [ExchangePosition(symbol="EEEUSDT", qty=Decimal("3"), entry_price=Decimal("50.5"))]
        t = recovery.merge(CFG, saved, positions, NOW, risk.RiskState(), executed={"ae-e-0": Decimal("4")}
                           ).trades["EEEUSDT"]
        assert (t.entry_cid, t.entry_qty) == ("", Decimal("3"))
