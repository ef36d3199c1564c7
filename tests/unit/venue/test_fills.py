"""The one matching core (venue/fills.py) the paper broker, the backtest and the local exchange
share: the taker walk, the time-in-force rules, resting crossings, triggers and fees."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from venue import fills

TICK = D("0.1")
PAPER = fills.TakerRules(tick=TICK, slippage_bps=D(1), max_levels=50)
SIM = fills.TakerRules(tick=TICK, max_levels=100, min_chunk=D("0.001"), clamp_at_tick=False)


class TestWalk:
    def test_slippage_moves_the_first_price_and_sets_the_step(self):
        """1 bp on 100.1 rounds up to 100.2; chunks of the top size, one tick apart."""
        assert fills.walk("BUY", D("100.1"), D("1.5"), D("4"), PAPER) == [
            (D("1.5"), D("100.2")), (D("1.5"), D("100.3")), (D("1.0"), D("100.4"))]

    def test_without_slippage_the_touch_is_the_first_price(self):
        """The local exchange's walk: the touch itself, then one tick per chunk."""
        assert fills.walk("SELL", D("100.0"), D("2"), D("3"), SIM) == [(D("2"), D("100.0")), (D("1"), D("99.9"))]

    def test_an_empty_touch_still_trades_the_minimum_chunk(self):
        """With no quantity at the touch the sim trades a step per level (never loops)."""
        rules = fills.TakerRules(tick=TICK, max_levels=3, min_chunk=D("1"), clamp_at_tick=False)
        assert fills.walk("BUY", D("10"), D(0), D("5"), rules) == [
            (D("1"), D("10")), (D("1"), D("10.1")), (D("3"), D("10.2"))]

    def test_a_sell_stops_before_zero_unless_clamped(self):
        """The sim stops before a price of zero (the rest unfilled); paper keeps one tick."""
        stop = fills.TakerRules(tick=TICK, max_levels=10, clamp_at_tick=False)
        clamp = fills.TakerRules(tick=TICK, max_levels=10, clamp_at_tick=True)
        assert fills.walk("SELL", D("0.2"), D("1"), D("4"), stop) == [(D("1"), D("0.2")), (D("1"), D("0.1"))]
        assert fills.walk("SELL", D("0.2"), D("1"), D("4"), clamp) == [
            (D("1"), D("0.2")), (D("1"), D("0.1")), (D("1"), D("0.1")), (D("1"), D("0.1"))]

    def test_a_limit_within_the_touch_but_not_the_slippage_fills_at_the_limit(self):
        """Touch 100.1, limit 100.1, 1 bp slippage: one chunk at 100.1, no further level."""
        assert fills.walk("BUY", D("100.1"), D("1.5"), D("4"), PAPER, limit=D("100.1")) == [(D("1.5"), D("100.1"))]

    def test_a_limit_beyond_the_touch_is_not_marketable(self):
        """A BUY below the ask or a SELL above the bid takes nothing."""
        assert fills.walk("BUY", D("100.1"), D("1"), D("1"), PAPER, limit=D("100.0")) == []
        assert fills.walk("SELL", D("100.0"), D("1"), D("1"), PAPER, limit=D("100.1")) == []


class TestTimeInForce:
    CHUNKS = [(D("1.5"), D("100.2"))]

    @pytest.mark.parametrize("tif, chunks, qty, refused, expire", [
        ("GTC", CHUNKS, D("2"), None, False),
        ("IOC", CHUNKS, D("2"), None, True),
        ("IOC", [], D("2"), None, True),
        ("FOK", CHUNKS, D("2"), fills.E_FOK, False),
        ("FOK", CHUNKS, D("1.5"), None, False),
        ("GTX", CHUNKS, D("2"), fills.E_GTX, False),
        ("GTX", [], D("2"), None, False),
    ])
    def test_binances_rules(self, tif, chunks, qty, refused, expire):
        """GTC rests, IOC expires the rest, FOK whole or -5021, GTX never takes (-5022)."""
        assert fills.time_in_force(tif, chunks, qty) == fills.TifOutcome(refused=refused, expire_rest=expire)

    def test_the_codes_are_binances(self):
        """-5021 for FOK, -5022 for post-only, with Binance's texts' openings."""
        assert (fills.E_FOK[0], fills.E_GTX[0]) == (-5021, -5022)
        assert fills.E_GTX[1].startswith("Due to the order could not be executed as maker")


class TestCrossingsAndTriggers:
    @pytest.mark.parametrize("side, price, at_touch, last, expected", [
        ("BUY", D("100.1"), False, None, False),  # paper: touching is not enough
        ("BUY", D("100.1"), True, None, True),  # sim: the touch at its price fills it
        ("BUY", D("100.2"), False, None, True),
        ("BUY", D("99.0"), True, D("98.9"), True),  # a trade printed through it
        ("SELL", D("100.0"), False, None, False),
        ("SELL", D("100.0"), True, None, True),
        ("SELL", D("101.0"), True, D("101.0"), False),  # a print at the price is not through it
    ])
    def test_resting_crossed(self, side, price, at_touch, last, expected):
        """Book 100.0 / 100.1: which resting orders the market traded through."""
        assert fills.resting_crossed(side, price, bid=D("100.0"), ask=D("100.1"), at_touch=at_touch,
                                     last=last) is expected

    @pytest.mark.parametrize("otype, side, price, expected", [
        ("STOP_MARKET", "SELL", D("95"), True), ("STOP_MARKET", "SELL", D("95.1"), False),
        ("STOP_MARKET", "BUY", D("95"), True), ("STOP_MARKET", "BUY", D("94.9"), False),
        ("TAKE_PROFIT_MARKET", "SELL", D("95"), True), ("TAKE_PROFIT_MARKET", "SELL", D("94.9"), False),
        ("TAKE_PROFIT_MARKET", "BUY", D("95"), True), ("TAKE_PROFIT_MARKET", "BUY", D("95.1"), False),
        ("STOP", "SELL", D("94"), True), ("TAKE_PROFIT", "BUY", D("94"), True),
    ])
    def test_trigger_met_at_95(self, otype, side, price, expected):
        """A stop sells at or below / buys at or above its trigger; a take-profit the mirror."""
        assert fills.trigger_met(otype, side, D("95"), price) is expected

    def test_fee_is_exact(self):
        """No rounding in the core: 0.003 x 60000.1 x 0.0005."""
        assert fills.fee(D("0.003"), D("60000.1"), D("0.0005")) == D("0.09000015")
