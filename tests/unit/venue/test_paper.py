"""The paper broker: exact fills against the book (slippage, depth beyond the top, limits), the
account kept as an exchange keeps it (one-way, fees, realised PnL), refusals with Binance codes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from common.errors import ConfigError, DefinitiveError, TransientError
from venue.port import AlgoSpec, OrderSpec
from venue.paper import (
    BookTop, PaperBroker, PaperConfig, Position, apply_fill, crosses, fee, fill_market,
)
from venue.filters import SymbolFilters

BOOK = BookTop(bid=D("100.0"), bid_qty=D("2.0"), ask=D("100.1"), ask_qty=D("1.5"), time_ms=1_000)
TICK = D("0.1")
BTC = SymbolFilters(symbol="BTCUSDT", tick_size=D("0.1"), step_size=D("0.001"), min_qty=D("0.001"),
                    min_notional=D("5"))
T0 = 1_700_000_000_000


class TestFillMarket:
    def test_buy_within_top_size_pays_touch_plus_slippage_rounded_up_to_the_tick(self):
        # 100.1 * 1 bp = 0.01001 -> 100.11001 -> next tick up: 100.2
        assert fill_market(BOOK, "BUY", D("1.0"), slippage_bps=D(1), tick=TICK) == [(D("1.0"), D("100.2"))]

    def test_buy_beyond_top_size_fills_in_chunks_one_step_worse_each(self):
        assert fill_market(BOOK, "BUY", D("4.0"), slippage_bps=D(1), tick=TICK) == [
            (D("1.5"), D("100.2")), (D("1.5"), D("100.3")), (D("1.0"), D("100.4"))]

    def test_sell_without_slippage_takes_the_bid_then_one_tick_lower(self):
        assert fill_market(BOOK, "SELL", D("2.5"), slippage_bps=D(0), tick=TICK) == [
            (D("2.0"), D("100.0")), (D("0.5"), D("99.9"))]

    def test_large_slippage_sets_the_step_between_chunks(self):
        # 50 bp of 100.1 = 0.5005: first 100.6005 -> 100.7, then steps of 0.6 (0.5005 up to the tick)
        assert fill_market(BOOK, "BUY", D("3.5"), slippage_bps=D(50), tick=TICK) == [
            (D("1.5"), D("100.7")), (D("1.5"), D("101.3")), (D("0.5"), D("101.9"))]

    def test_last_level_takes_the_rest(self):
        assert fill_market(BOOK, "BUY", D("10"), slippage_bps=D(0), tick=TICK, max_levels=3) == [
            (D("1.5"), D("100.1")), (D("1.5"), D("100.2")), (D("7.0"), D("100.3"))]

    def test_unknown_depth_fills_everything_at_the_first_price(self):
        book = BookTop(bid=D("100.0"), bid_qty=D(0), ask=D("100.1"), ask_qty=D(0))
        assert fill_market(book, "SELL", D("3"), slippage_bps=D(0), tick=TICK) == [(D("3"), D("100.0"))]

    def test_sell_prices_never_go_below_one_tick(self):
        book = BookTop(bid=D("0.2"), bid_qty=D("1"), ask=D("0.3"), ask_qty=D("1"))
        assert fill_market(book, "SELL", D("4"), slippage_bps=D(0), tick=TICK) == [
            (D("1"), D("0.2")), (D("1"), D("0.1")), (D("1"), D("0.1")), (D("1"), D("0.1"))]

    def test_marketable_limit_stops_at_its_price(self):
        assert fill_market(BOOK, "BUY", D("4.0"), slippage_bps=D(1), tick=TICK, limit=D("100.3")) == [
            (D("1.5"), D("100.2")), (D("1.5"), D("100.3"))]

    def test_limit_at_the_touch_fills_at_the_limit_not_beyond(self):
        """The slippage would cross the limit: the top fills at the limit, nothing deeper."""
        assert fill_market(BOOK, "BUY", D("4.0"), slippage_bps=D(1), tick=TICK, limit=D("100.1")) == [
            (D("1.5"), D("100.1"))]

    def test_non_marketable_limit_fills_nothing(self):
        assert fill_market(BOOK, "BUY", D("1"), slippage_bps=D(1), tick=TICK, limit=D("100.0")) == []
        assert fill_market(BOOK, "SELL", D("1"), slippage_bps=D(1), tick=TICK, limit=D("100.1")) == []


class TestCrosses:
    @pytest.mark.parametrize("side,price,expected", [
        ("BUY", D("100.2"), True), ("BUY", D("100.1"), False), ("SELL", D("99.9"), True),
        ("SELL", D("100.0"), False),
    ])
    def test_resting_order_fills_only_when_traded_through(self, side, price, expected):
        assert crosses(BOOK, side, price) is expected


class TestApplyFill:
    def test_open_add_reduce_flip(self):
        p, r = apply_fill(Position(), "BUY", D("1"), D("100"))
        assert (p, r) == (Position(qty=D("1"), cost=D("100")), D(0))
        p, r = apply_fill(p, "BUY", D("1"), D("110"))
        assert (p.qty, p.cost, p.entry_price, r) == (D("2"), D("210"), D("105"), D(0))
        p, r = apply_fill(p, "SELL", D("0.5"), D("120"))
        assert (p.qty, p.cost, r) == (D("1.5"), D("157.5"), D("7.5"))
        p, r = apply_fill(p, "SELL", D("2"), D("90"))  # closes 1.5 at a loss, opens 0.5 short at 90
        assert (p.qty, p.cost, r) == (D("-0.5"), D("45.0"), D("-22.5"))
        assert p.unrealized(D("80")) == D("5.0")

    def test_round_trip_realises_exactly_proceeds_minus_cost(self):
        """Entry 4/3 per unit does not terminate; the partial closes still sum exactly."""
        p, _ = apply_fill(Position(), "BUY", D("1"), D("1"))
        p, _ = apply_fill(p, "BUY", D("2"), D("1.5"))
        p, r1 = apply_fill(p, "SELL", D("1"), D("2"))
        p, r2 = apply_fill(p, "SELL", D("2"), D("2"))
        assert p == Position(qty=D(0), cost=D(0))
        assert r1 + r2 == D("2")

    def test_fee_is_exact(self):
        assert fee(D("0.003"), D("60000.1"), D("0.0005")) == D("0.09000015")


class TestConfig:
    def test_floats_are_read_through_their_shortest_repr(self):
        cfg = PaperConfig(taker_fee_rate=0.0004, slippage_bps=0.5, starting_balance=2500)
        assert (cfg.taker_fee_rate, cfg.slippage_bps, cfg.starting_balance) == (D("0.0004"), D("0.5"), D(2500))

    @pytest.mark.parametrize("kw", [dict(taker_fee_rate=-0.1), dict(starting_balance=0), dict(leverage=0),
                                    dict(latency_ms=-1.0), dict(slippage_bps="1"), dict(max_levels=0)])
    def test_bad_values_are_refused(self, kw):
        with pytest.raises(ConfigError):
            PaperConfig(**kw)

    def test_unknown_fields_are_refused(self):
        with pytest.raises(TypeError):
            PaperConfig(fee=1)  # type: ignore[call-arg]


class Env:
    """A paper broker with a book and a clock the test moves by hand."""

    def __init__(self, **cfg) -> None:
        self.books: dict[str, BookTop] = {"BTCUSDT": BOOK}
        self.now = T0
        self.sleeps: list[float] = []
        self.on_sleep = None
        self.broker = PaperBroker(PaperConfig(**cfg), book=self.books.get, clock_ms=lambda: self.now,
                                  sleep=self._sleep, filters={"BTCUSDT": BTC})

    def _sleep(self, s: float) -> None:
        self.sleeps.append(s)
        if self.on_sleep:
            self.on_sleep()


def market(cid: str, side: str, qty: str, reduce_only: bool = False) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol="BTCUSDT", side=side, order_type="MARKET", qty=D(qty),
                     reduce_only=reduce_only)


def limit(cid: str, side: str, qty: str, price: str, reduce_only: bool = False) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol="BTCUSDT", side=side, order_type="LIMIT", qty=D(qty),
                     price=D(price), reduce_only=reduce_only)


class TestPaperBrokerMarket:
    def test_market_buy_fills_with_trade_ids_fees_and_a_position(self):
        env = Env()
        res = env.broker.submit(market("ae-1", "BUY", "2.000"))
        o = res.order
        assert (o.status, o.exchange_order_id, o.executed_qty, o.update_ms) == ("FILLED", "1", D("2.000"), T0)
        assert [(f.trade_id, f.qty, f.price, f.liquidity) for f in res.fills] == [
            ("1", D("1.5"), D("100.2"), "taker"), ("2", D("0.500"), D("100.3"), "taker")]
        assert [f.fee for f in res.fills] == [D("0.0751500"), D("0.025075000")]
        assert o.avg_price == D("100.225")
        [pos] = env.broker.positions()
        assert (pos.qty, pos.entry_price, pos.mark_price, pos.leverage) == (D("2.000"), D("100.225"), D("100.05"), 5)
        assert pos.unrealized_pnl == D("-0.350")
        bal = env.broker.balance()
        assert bal.wallet == D("10000") - D("0.1002250")
        assert bal.equity == bal.wallet - D("0.350")
        assert bal.available == bal.equity - D("2.000") * D("100.05") / 5

    def test_round_trip_with_reduce_only_exit_closes_and_books_pnl(self):
        env = Env(slippage_bps=D(0))
        env.broker.submit(market("ae-1", "BUY", "1.000"))  # at 100.1
        env.books["BTCUSDT"] = BookTop(bid=D("110.0"), bid_qty=D("5"), ask=D("110.1"), ask_qty=D("5"))
        res = env.broker.submit(market("ae-2", "SELL", "1.000", reduce_only=True))
        [exit_fill] = res.fills
        assert (exit_fill.price, exit_fill.realized_pnl) == (D("110.0"), D("9.9"))
        assert env.broker.positions() == []
        fees = D("100.1") * D("0.0005") + D("110.0") * D("0.0005")
        assert env.broker.balance().wallet == D("10000") + D("9.9") - fees

    def test_position_quantities_are_the_positions_quantities_unmarked(self):
        """``position_quantities`` lists (symbol, signed quantity) as ``positions`` does: a
        short after a sell, nothing once it is closed."""
        env = Env(slippage_bps=D(0))
        env.broker.submit(market("ae-1", "SELL", "0.750"))
        assert env.broker.position_quantities() == [("BTCUSDT", D("-0.750"))]
        assert [(p.symbol, p.qty) for p in env.broker.positions()] == env.broker.position_quantities()
        env.broker.submit(market("ae-2", "BUY", "0.750", reduce_only=True))
        assert env.broker.position_quantities() == [] == env.broker.positions()

    def test_reduce_only_is_capped_at_the_position_and_never_flips(self):
        env = Env(slippage_bps=D(0))
        env.broker.submit(market("ae-1", "BUY", "0.500"))
        res = env.broker.submit(market("ae-2", "SELL", "2.000", reduce_only=True))
        assert (res.order.status, res.order.executed_qty) == ("EXPIRED", D("0.500"))
        assert env.broker.positions() == []

    def test_reduce_only_without_a_position_is_refused(self):
        env = Env()
        with pytest.raises(DefinitiveError) as exc:
            env.broker.submit(market("ae-1", "SELL", "1.000", reduce_only=True))
        assert (exc.value.reason, exc.value.code) == ("reduce_only", -2022)

    def test_no_book_is_transient(self):
        env = Env()
        env.books.clear()
        with pytest.raises(TransientError) as exc:
            env.broker.submit(market("ae-1", "BUY", "1.000"))
        assert exc.value.reason == "no_market_data"
        assert env.broker.query("BTCUSDT", "ae-1") is None  # nothing happened

    def test_fill_uses_the_book_seen_after_the_latency(self):
        env = Env(latency_ms=25.0, slippage_bps=D(0))
        moved = BookTop(bid=D("101.0"), bid_qty=D("5"), ask=D("101.1"), ask_qty=D("5"))
        env.on_sleep = lambda: env.books.__setitem__("BTCUSDT", moved)
        res = env.broker.submit(market("ae-1", "BUY", "1.000"))
        assert env.sleeps == [0.025]
        assert [f.price for f in res.fills] == [D("101.1")]

    @pytest.mark.parametrize("spec,code,reason", [
        (market("ae-1", "BUY", "1.0005"), -1111, "filter"),
        (limit("ae-1", "BUY", "1.000", "100.05"), -1111, "filter"),
        (market("ae-1", "BUY", "0.010"), -4164, "filter"),  # ~1 USDT < 5 min notional
        (market("ae-1", "BUY", "1000.000"), -2019, "insufficient_margin"),  # 100k notional / 5 > 10k
        (OrderSpec(client_order_id="x", symbol="ETHUSDT", side="BUY", order_type="MARKET", qty=D(1)),
         -1121, "bad_symbol"),
        (OrderSpec(client_order_id="x", symbol="BTCUSDT", side="BUY", order_type="MARKET", qty=D(1),
                   price=D(100)), -1102, "bad_request"),
    ])
    def test_refusals_carry_binance_codes(self, spec, code, reason):
        env = Env()
        with pytest.raises(DefinitiveError) as exc:
            env.broker.submit(spec)
        assert (exc.value.code, exc.value.reason) == (code, reason)

    def test_duplicate_client_order_id_is_refused(self):
        env = Env()
        env.broker.submit(market("ae-1", "BUY", "1.000"))
        with pytest.raises(DefinitiveError) as exc:
            env.broker.submit(market("ae-1", "BUY", "1.000"))
        assert (exc.value.code, exc.value.reason) == (-4116, "duplicate_client_id")


class TestPaperBrokerLimit:
    def test_resting_limit_is_listed_then_filled_as_maker_when_traded_through(self):
        env = Env()
        res = env.broker.submit(limit("ae-1", "BUY", "1.000", "99.5"))
        assert (res.order.status, res.fills) == ("NEW", ())
        assert [o.client_order_id for o in env.broker.open_orders("BTCUSDT")] == ["ae-1"]
        assert env.broker.on_book("BTCUSDT") == []  # ask 100.1: not crossed
        env.books["BTCUSDT"] = BookTop(bid=D("99.3"), bid_qty=D("1"), ask=D("99.4"), ask_qty=D("1"))
        env.now += 500
        [upd] = env.broker.on_book("BTCUSDT")
        [f] = upd.fills
        assert (upd.order.status, upd.order.update_ms) == ("FILLED", T0 + 500)
        assert (f.qty, f.price, f.liquidity, f.fee) == (D("1.000"), D("99.5"), "maker", D("0.0199000"))
        assert env.broker.open_orders() == []

    def test_partly_marketable_limit_fills_then_rests(self):
        env = Env()
        res = env.broker.submit(limit("ae-1", "BUY", "2.000", "100.2"))
        assert [(f.qty, f.price) for f in res.fills] == [(D("1.5"), D("100.2"))]
        assert (res.order.status, res.order.executed_qty) == ("PARTIALLY_FILLED", D("1.5"))
        assert env.broker.open_orders()[0].client_order_id == "ae-1"

    def test_cancel_ends_a_resting_order_and_a_second_cancel_is_unknown(self):
        env = Env()
        env.broker.submit(limit("ae-1", "SELL", "1.000", "105.0"))
        assert env.broker.cancel("BTCUSDT", "ae-1").status == "CANCELED"
        with pytest.raises(DefinitiveError) as exc:
            env.broker.cancel("BTCUSDT", "ae-1")
        assert (exc.value.code, exc.value.reason) == (-2011, "unknown_order")
        assert env.broker.query("BTCUSDT", "ae-1").status == "CANCELED"
        assert env.broker.query("BTCUSDT", "nope") is None

    def test_resting_reduce_only_expires_when_the_position_is_gone(self):
        env = Env(slippage_bps=D(0))
        env.broker.submit(market("ae-1", "BUY", "1.000"))
        env.broker.submit(limit("ae-2", "SELL", "1.000", "120.0", reduce_only=True))
        env.broker.submit(market("ae-3", "SELL", "1.000"))  # closes the position by other means
        env.books["BTCUSDT"] = BookTop(bid=D("121.0"), bid_qty=D("1"), ask=D("121.1"), ask_qty=D("1"))
        [upd] = env.broker.on_book("BTCUSDT")
        assert (upd.order.status, upd.fills) == ("EXPIRED", ())
        assert env.broker.positions() == []

    def test_resting_orders_reserve_margin(self):
        env = Env()
        env.broker.submit(limit("ae-1", "BUY", "10.000", "90.0"))
        assert env.broker.balance().available == D("10000") - D("900.0") / 5


class TestPaperBrokerAccount:
    def test_fills_filter_by_time_and_order(self):
        env = Env()
        env.broker.submit(market("ae-1", "BUY", "1.000"))
        env.now += 1_000
        second = env.broker.submit(market("ae-2", "BUY", "1.000"))
        assert [f.trade_id for f in env.broker.fills("BTCUSDT")] == ["1", "2"]
        assert [f.trade_id for f in env.broker.fills("BTCUSDT", since_ms=T0 + 1)] == ["2"]
        assert [f.trade_id for f in env.broker.fills(
            "BTCUSDT", exchange_order_id=second.order.exchange_order_id)] == ["2"]
        assert env.broker.fills("ETHUSDT") == []

    def test_all_orders_lists_every_order_made_in_the_window_whatever_its_status(self):
        """The paper account's allOrders: filled and resting orders of the symbol made within
        [since, until], oldest first."""
        env = Env()
        env.broker.submit(market("ae-1", "BUY", "1.000"))
        env.now += 1_000
        env.broker.submit(limit("ae-2", "BUY", "1.000", "90.0"))
        got = env.broker.all_orders("BTCUSDT", since_ms=T0, until_ms=T0 + 1_000)
        assert [(o.client_order_id, o.status) for o in got] == [("ae-1", "FILLED"), ("ae-2", "NEW")]
        assert [o.client_order_id for o in env.broker.all_orders("BTCUSDT", since_ms=T0 + 1, until_ms=T0 + 999)] == []
        assert env.broker.all_orders("ETHUSDT", since_ms=T0, until_ms=T0 + 1_000) == []

    def test_start_checks_the_symbols_and_reports_the_setup(self):
        env = Env(leverage=3)
        setup = env.broker.start(["BTCUSDT"])
        assert (setup.one_way, setup.margin_type, setup.leverage) == (True, "CROSSED", {"BTCUSDT": 3})
        with pytest.raises(DefinitiveError):
            env.broker.start(["BTCUSDT", "DOGEUSDT"])
        assert env.broker.server_time_ms() == T0

    def test_same_calls_give_identical_results(self):
        """Replay needs byte-identical decisions: ids come from counters, nothing else varies."""
        def run() -> list:
            env = Env()
            out = [env.broker.submit(market("ae-1", "BUY", "2.000")),
                   env.broker.submit(limit("ae-2", "SELL", "1.000", "100.5"))]
            env.books["BTCUSDT"] = BookTop(bid=D("100.6"), bid_qty=D("1"), ask=D("100.7"), ask_qty=D("1"))
            out += env.broker.on_book("BTCUSDT")
            return [out, env.broker.positions(), env.broker.balance()]

        assert repr(run()) == repr(run())


def stop(cid: str = "ps-s1-1", side: str = "SELL", trigger: str = "95.0", kind: str = "STOP_MARKET") -> AlgoSpec:
    return AlgoSpec(client_algo_id=cid, symbol="BTCUSDT", side=side, order_type=kind, trigger_price=D(trigger))


class TestPaperAlgoOrders:
    def test_a_stop_triggers_on_the_mark_and_closes_the_position_under_our_id(self):
        """The mid falls to the stop: a reduce-only MARKET with the clientAlgoId as its client
        order id closes the whole position; the algo order is FINISHED and names it."""
        env = Env(slippage_bps=D(0))
        env.broker.submit(market("ae-1", "BUY", "1.000"))
        placed = env.broker.place_algo(stop())
        assert (placed.status, placed.algo_id) == ("NEW", "1")
        assert env.broker.positions()[0].qty == D("1.000")  # mid 100.05: not yet
        env.books["BTCUSDT"] = BookTop(bid=D("94.9"), bid_qty=D("5"), ask=D("95.0"), ask_qty=D("5"))
        assert env.broker.positions() == []
        done = env.broker.query_algo("BTCUSDT", "ps-s1-1")
        closing = env.broker.query("BTCUSDT", "ps-s1-1")
        assert (done.status, done.actual_order_id) == ("FINISHED", closing.exchange_order_id)
        assert (closing.status, closing.reduce_only, closing.executed_qty) == ("FILLED", True, D("1.000"))
        [f] = env.broker.fills("BTCUSDT", exchange_order_id=closing.exchange_order_id)
        assert (f.client_order_id, f.price, f.side) == ("ps-s1-1", D("94.9"), "SELL")

    def test_a_stop_the_mark_has_passed_is_refused_like_binance(self):
        env = Env()
        with pytest.raises(DefinitiveError) as e:
            env.broker.place_algo(stop(trigger="101.0"))
        assert (e.value.code, e.value.reason) == (-2021, "would_trigger")

    def test_a_take_profit_above_the_mark_waits(self):
        env = Env(slippage_bps=D(0))
        env.broker.submit(market("ae-1", "BUY", "1.000"))
        env.broker.place_algo(stop(cid="pt-s1-1", trigger="110.0", kind="TAKE_PROFIT_MARKET"))
        assert [o.client_algo_id for o in env.broker.open_algo_orders()] == ["pt-s1-1"]
        env.books["BTCUSDT"] = BookTop(bid=D("110.0"), bid_qty=D("5"), ask=D("110.1"), ask_qty=D("5"))
        assert env.broker.positions() == [] and env.broker.open_algo_orders() == []

    def test_a_triggered_stop_with_no_position_expires(self):
        env = Env()
        env.broker.place_algo(stop())
        env.books["BTCUSDT"] = BookTop(bid=D("90.0"), bid_qty=D("5"), ask=D("90.1"), ask_qty=D("5"))
        assert env.broker.query_algo("BTCUSDT", "ps-s1-1").status == "EXPIRED"
        assert env.broker.query("BTCUSDT", "ps-s1-1") is None

    def test_cancel_and_duplicate_and_unknown(self):
        env = Env()
        env.broker.place_algo(stop())
        with pytest.raises(DefinitiveError) as e:
            env.broker.place_algo(stop())
        assert e.value.code == -4116
        assert env.broker.cancel_algo("BTCUSDT", "ps-s1-1").status == "CANCELED"
        with pytest.raises(DefinitiveError) as e:
            env.broker.cancel_algo("BTCUSDT", "ps-s1-1")
        assert e.value.code == -2011
        assert env.broker.query_algo("BTCUSDT", "nope") is None


def tif(cid: str, side: str, qty: str, price: str, time_in_force: str) -> OrderSpec:
    return OrderSpec(client_order_id=cid, symbol="BTCUSDT", side=side, order_type="LIMIT", qty=D(qty),
                     price=D(price), time_in_force=time_in_force)


class TestPaperTimeInForce:
    def test_ioc_fills_its_marketable_part_and_expires_the_rest(self):
        """An IOC takes what the limit allows at once (1.5 at 100.2) and keeps nothing resting."""
        env = Env()
        res = env.broker.submit(tif("ae-1", "BUY", "2.000", "100.2", "IOC"))
        assert [(f.qty, f.price, f.liquidity) for f in res.fills] == [(D("1.5"), D("100.2"), "taker")]
        assert (res.order.status, res.order.executed_qty) == ("EXPIRED", D("1.5"))
        assert env.broker.open_orders() == []
        assert env.broker.positions()[0].qty == D("1.5")

    def test_ioc_that_cannot_fill_expires_with_nothing(self):
        """An IOC below the ask fills nothing and expires; no position, no resting order."""
        env = Env()
        res = env.broker.submit(tif("ae-1", "BUY", "1.000", "100.0", "IOC"))
        assert (res.order.status, res.order.executed_qty, res.fills) == ("EXPIRED", D(0), ())
        assert (env.broker.open_orders(), env.broker.positions()) == ([], [])

    def test_ioc_filled_whole_is_filled(self):
        """An IOC that fills completely ends FILLED, not EXPIRED."""
        env = Env()
        res = env.broker.submit(tif("ae-1", "SELL", "1.000", "99.9", "IOC"))
        assert (res.order.status, [(f.qty, f.price) for f in res.fills]) == ("FILLED", [(D("1.000"), D("99.9"))])

    def test_post_only_that_would_take_is_refused_with_5022_and_nothing_is_created(self):
        """GTX at or through the ask is refused as Binance does (-5022); the id stays free."""
        env = Env()
        with pytest.raises(DefinitiveError) as e:
            env.broker.submit(tif("ae-1", "BUY", "1.000", "100.1", "GTX"))
        assert (e.value.code, e.value.reason) == (-5022, "unfillable")
        assert env.broker.query("BTCUSDT", "ae-1") is None

    def test_post_only_behind_the_touch_rests_and_fills_as_maker(self):
        """GTX below the ask rests, then fills at its price as maker once traded through."""
        env = Env()
        res = env.broker.submit(tif("ae-1", "BUY", "1.000", "100.0", "GTX"))
        assert (res.order.status, res.fills) == ("NEW", ())
        env.books["BTCUSDT"] = BookTop(bid=D("99.8"), bid_qty=D("1"), ask=D("99.9"), ask_qty=D("1"))
        [upd] = env.broker.on_book("BTCUSDT")
        assert (upd.order.status, upd.fills[0].price, upd.fills[0].liquidity) == ("FILLED", D("100.0"), "maker")

    def test_fok_that_cannot_fill_whole_is_refused_with_5021(self):
        """FOK for more than the limit allows at once is refused (-5021)."""
        env = Env()
        with pytest.raises(DefinitiveError) as e:
            env.broker.submit(tif("ae-1", "BUY", "2.000", "100.2", "FOK"))
        assert e.value.code == -5021

    def test_unknown_time_in_force_is_refused(self):
        """A time in force Binance does not know is refused with -1115."""
        env = Env()
        with pytest.raises(DefinitiveError) as e:
            env.broker.submit(tif("ae-1", "BUY", "1.000", "100.2", "GTD?"))
        assert e.value.code == -1115


def test_the_feeds_rules_are_read_live_and_a_plain_mapping_is_copied():
    """Given the feed's rules (FeedFilters), the paper broker knows a symbol whose rule is
    published after it was made (a paper stack's broker is made before the feed starts); a
    plain mapping is copied as before (a change to it afterwards does not count)."""
    from common import wire
    from venue.filters import FeedFilters

    rules: dict = {}
    live = PaperBroker(PaperConfig(), book={"BTCUSDT": BOOK}.get, clock_ms=lambda: T0, sleep=lambda s: None,
                       filters=FeedFilters(lambda: rules))
    with pytest.raises(DefinitiveError):
        live.start(["BTCUSDT"])
    rules["BTCUSDT"] = wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001,
                                       min_notional=5.0)
    assert live.start(["BTCUSDT"]).leverage == {"BTCUSDT": 5}
    assert live.submit(market("ae-1", "BUY", "0.500")).order.status == "FILLED"
    plain: dict = {}
    copied = PaperBroker(PaperConfig(), book={"BTCUSDT": BOOK}.get, clock_ms=lambda: T0, sleep=lambda s: None,
                         filters=plain)
    plain["BTCUSDT"] = BTC
    with pytest.raises(DefinitiveError):
        copied.start(["BTCUSDT"])


def test_the_balance_is_the_wallet_plus_the_marked_positions_minus_the_margin_held():
    """``balance`` (one pass over the positions) against its definition through ``positions``:
    a short marked to the mid, with a resting limit holding margin, then the same short with
    no usable book (marked at its entry price): equity, available and wallet to the last digit."""
    env = Env()
    env.broker.submit(market("ae-1", "SELL", "1.234"))
    env.broker.submit(limit("ae-2", "BUY", "0.500", "95.3"))
    for book in (BookTop(bid=D("97.3"), bid_qty=D("2.0"), ask=D("97.4"), ask_qty=D("1.5")),
                 BookTop(bid=D("0"), bid_qty=D("0"), ask=D("0"), ask_qty=D("0"))):
        env.books["BTCUSDT"] = book
        [pos] = env.broker.positions()
        bal = env.broker.balance()
        mark = (book.bid + book.ask) / 2 if book.usable else pos.entry_price
        assert pos.mark_price == mark and pos.qty == D("-1.234")
        assert bal.equity == bal.wallet + pos.unrealized_pnl == bal.wallet + D("-1.234") * mark + pos.entry_price * D(
            "1.234")
        assert bal.available == bal.equity - D("1.234") * mark / 5 - D("0.500") * D("95.3") / 5


def test_the_taker_rules_made_once_are_those_of_the_very_tick_and_slippage_given():
    """``fill_market`` keeps the walk's rules for the tick and slippage objects it was given:
    an equal tick written another way (0.1 and 1E-1) gets its own rules, so the prices come
    out exactly as with rules made afresh (the same digits, not only the same value)."""
    from venue import fills as matching

    for tick in (D("0.1"), D("1E-1"), D("0.10")):
        for slip in (D("0"), D("2.5")):
            got = fill_market(BOOK, "BUY", D("3.000"), slippage_bps=slip, tick=tick, max_levels=3)
            rules = matching.TakerRules(tick=tick, slippage_bps=slip, max_levels=3, clamp_at_tick=True)
            want = matching.walk("BUY", BOOK.ask, BOOK.ask_qty, D("3.000"), rules, None)
            assert [(str(q), str(p)) for q, p in got] == [(str(q), str(p)) for q, p in want]
