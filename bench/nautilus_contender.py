"""NautilusTrader running the backtest section's EMA(10)/EMA(30) cross (bench/backtest_section.py),
in its own virtualenv (``.venv-nautilus``: NautilusTrader needs pandas < 3, AEGIS pandas 3), so
this file imports nothing of AEGIS. The averages are computed by hand exactly as
``research.strategies.ema_cross.ema_step`` does (the section checks the trades against the
plain loop's). Reads the bars from a JSON file, prints one JSON line: seconds, round trips
(entry and exit bar open ms) and fill prices.

    .venv-nautilus/bin/python bench/nautilus_contender.py BARS.json
"""

from __future__ import annotations

import json
import math
import sys
import time

MINUTE_MS = 60_000


class EmaState:
    __slots__ = ("a_fast", "a_slow", "fast", "slow", "bars", "warmup")

    def __init__(self, fast: int, slow: int) -> None:
        self.a_fast, self.a_slow = 2.0 / (fast + 1), 2.0 / (slow + 1)
        self.fast = self.slow = math.nan
        self.bars = 0
        self.warmup = slow


def ema_step(st: EmaState, close: float) -> int:
    if st.bars == 0:
        st.fast = st.slow = close
        st.bars = 1
        return 0
    was = st.fast - st.slow
    st.fast += st.a_fast * (close - st.fast)
    st.slow += st.a_slow * (close - st.slow)
    st.bars += 1
    if st.bars <= st.warmup:
        return 0
    now = st.fast - st.slow
    if was <= 0 < now:
        return 1
    if was >= 0 > now:
        return -1
    return 0


def run(bars: dict, fast: int, slow: int) -> dict:
    import pandas as pd
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.model.currencies import USDT
    from nautilus_trader.model.data import BarType
    from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
    from nautilus_trader.model.identifiers import TraderId, Venue
    from nautilus_trader.model.objects import Money
    from nautilus_trader.persistence.wranglers import BarDataWrangler
    from nautilus_trader.test_kit.providers import TestInstrumentProvider
    from nautilus_trader.trading.strategy import Strategy

    inst = TestInstrumentProvider.btcusdt_binance()  # price precision 2, as the real bars
    bar_type = BarType.from_str(f"{inst.id}-1-MINUTE-LAST-EXTERNAL")
    trades: list[tuple[int, int]] = []

    class Cross(Strategy):
        def __init__(self) -> None:
            super().__init__()
            self.st = EmaState(fast, slow)
            self.entry_ms = 0
            self.long = False

        def on_start(self) -> None:
            self.subscribe_bars(bar_type)

        def on_bar(self, bar) -> None:  # one call per bar
            cross = ema_step(self.st, float(bar.close))
            t_ms = bar.ts_event // 1_000_000 - MINUTE_MS  # the bar's open (ts_event = its close)
            if cross > 0 and not self.long:
                self.submit_order(self.order_factory.market(inst.id, OrderSide.BUY, inst.make_qty(1)))
                self.long, self.entry_ms = True, t_ms
            elif cross < 0 and self.long:
                self.submit_order(self.order_factory.market(inst.id, OrderSide.SELL, inst.make_qty(1)))
                self.long = False
                trades.append((self.entry_ms, t_ms))

    engine = BacktestEngine(BacktestEngineConfig(trader_id=TraderId("BENCH-001"),
                                                 logging=LoggingConfig(log_level="ERROR")))
    engine.add_venue(venue=Venue("BINANCE"), oms_type=OmsType.NETTING, account_type=AccountType.CASH,
                     base_currency=None, starting_balances=[Money(10_000_000, USDT)])
    engine.add_instrument(inst)
    # bars stamped at their close (open + 1 minute)
    idx = pd.to_datetime([t + MINUTE_MS for t in bars["open_time"]], unit="ms", utc=True)
    df = pd.DataFrame({k: bars[k] for k in ("open", "high", "low", "close", "volume")}, index=idx)
    engine.add_data(BarDataWrangler(bar_type, inst).process(df))
    engine.add_strategy(Cross())
    t0 = time.perf_counter()
    engine.run()
    seconds = time.perf_counter() - t0
    fills = engine.trader.generate_order_fills_report().sort_values("ts_last")
    engine.dispose()
    # the report holds the average price as a float of the fixed-point price: back to its 2 decimals
    prices = [round(float(x), inst.price_precision) for x in fills["avg_px"]]
    import nautilus_trader

    return {"seconds": seconds, "trades": trades, "prices": prices, "version": nautilus_trader.__version__}


def main() -> int:
    with open(sys.argv[1]) as fh:
        doc = json.load(fh)
    print(json.dumps(run(doc["bars"], doc["fast"], doc["slow"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
