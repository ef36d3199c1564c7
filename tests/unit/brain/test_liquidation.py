"""The liquidation check before an entry: Binance's one-way formula on the position's own margin."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from services.brain import risk, trader, trader_entries
from tests.unit.brain.test_trader import CFG, ctx, of_type, signal
from venue.port import Bracket

TIERS = (Bracket(notional_floor=D(0), notional_cap=D(50_000), maint_margin_ratio=D("0.004"), cum=D(0),
                 initial_leverage=125),
         Bracket(notional_floor=D(50_000), notional_cap=D(600_000), maint_margin_ratio=D("0.005"), cum=D(50),
                 initial_leverage=100))


class TestLiquidationPrice:
    def test_long_at_10x_in_the_first_tier(self):
        """Q=1 at 100 with margin 10: (100 - 10 - 0) / (1 * (1 - 0.004)) = 90.3614..."""
        p = risk.liquidation_price(side="BUY", qty=D(1), entry=D(100), leverage=10, brackets=TIERS)
        assert p.quantize(D("0.0001")) == D("90.3614")

    def test_short_at_10x(self):
        """(10 + 100 + 0) / (1 * 1.004) = 109.5617..."""
        p = risk.liquidation_price(side="SELL", qty=D(1), entry=D(100), leverage=10, brackets=TIERS)
        assert p.quantize(D("0.0001")) == D("109.5618")

    def test_the_tier_of_the_notional_is_used(self):
        """Notional 60,000 is in the second tier: mmr 0.5 %, cum 50."""
        p = risk.liquidation_price(side="BUY", qty=D(600), entry=D(100), leverage=20, brackets=TIERS)
        assert p == (D(60_000) - D(3_000) - D(50)) / (D(600) * (1 - D("0.005")))

    def test_unknown_brackets_use_the_conservative_fallback(self):
        p = risk.liquidation_price(side="BUY", qty=D(1), entry=D(100), leverage=10)
        assert p == D(90) / D("0.99")


class TestEntryCheck:
    def test_a_stop_beyond_the_liquidation_price_is_refused(self):
        """At 50x a long's liquidation is ~1.6 % away: a 2 % stop would never be reached."""
        cfg = replace(CFG, leverage=50)
        st, acts = trader_entries.on_signal(cfg, trader.TraderState(), signal(), replace(ctx(), brackets={"AAAUSDT": TIERS}))
        assert of_type(acts, trader.NewOrder) == []
        (rej,) = [a.body for a in of_type(acts, trader.Publish)]
        assert rej.reason == risk.LIQUIDATION_BEFORE_STOP
        assert rej.detail.startswith("liquidation 98.") and "vs stop 98" in rej.detail
        assert st.risk.order_times_ms == ()  # a refused entry is not counted by the order brake

    def test_at_5x_the_same_entry_passes(self):
        st, acts = trader_entries.on_signal(CFG, trader.TraderState(), signal(), replace(ctx(), brackets={"AAAUSDT": TIERS}))
        assert len(of_type(acts, trader.NewOrder)) == 1
