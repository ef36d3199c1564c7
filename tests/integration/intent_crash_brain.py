"""A brain's execution shell, alone, for ``test_intent_log_crash``: the real ccxt broker against
the local exchange, the real dispatcher and the real intent log. It opens one BTCUSDT entry,
and once the entry's fill is known it writes ``<marker>`` (the entry's client id) and waits to
be killed. Its journal is an in-memory list: like the stack's buffered ZeroMQ journal, it dies
with the process, so the database never hears of the order.

    python -m tests.integration.intent_crash_brain <exchange base url> <intent log> <marker>
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from common import wire
from services.brain import dispatcher as dsp
from services.brain import execution, intent_log, risk, rotation, trader
from venue import filters as filters_mod
from venue.binance.ccxt_broker import CcxtBroker, CcxtConfig
from venue.demo import DEMO_API_KEY, DEMO_API_SECRET
from venue.ratelimit import Governor
from tests.fake_host import FnHost

SYMBOL = "BTCUSDT"
SIGNAL_ID = "crash-1"
CFG = trader.TraderConfig(
    risk=risk.RiskConfig(max_order_notional_usdt=500.0, max_total_notional_usdt=5_000.0, max_leverage=5.0,
                         max_orders_per_minute=10_000, stale_data_ms=60_000, daily_loss_limit_usdt=5_000.0),
    rotation=rotation.RotationConfig(cooldown_s=0.0), exchange_protection=False)


def build(base: str, log_path: Path, db_path: Path, published: list[Any],
          quote_fn: Any) -> tuple[execution.Execution, CcxtBroker, dsp.Dispatcher]:
    """The shell both lives of the brain use (the crashed one and the restarted one)."""
    broker = CcxtBroker(CcxtConfig(base_url=base, timeout_ms=5_000), governor=Governor(), api_key=DEMO_API_KEY,
                        api_secret=DEMO_API_SECRET)
    disp = dsp.Dispatcher(2, name="crash-dispatch")
    filters = filters_mod.fetch_filters(base)

    def publish(body: Any, journal: bool = True) -> None:
        published.append(body)

    ex = execution.Execution(
        cfg=CFG, broker=broker, dispatcher=disp,
        host=FnHost(journal_sync=_never, publish=publish, quote=quote_fn, filters_fn=lambda: dict(filters),
                    symbols_fn=lambda: [SYMBOL]),
        db_path=db_path, balance_poll_s=3_600.0, position_poll_s=3_600.0, intents=intent_log.IntentLog(log_path))
    return ex, broker, disp


def _never(body: Any) -> None:
    raise AssertionError("the intent-log path never journals synchronously")


def quote_from(broker_base: str) -> Any:
    import requests

    def quote(symbol: str) -> risk.Quote | None:
        b = requests.get(f"{broker_base}/fapi/v1/ticker/bookTicker", params={"symbol": symbol}, timeout=5).json()
        mid = (Decimal(b["bidPrice"]) + Decimal(b["askPrice"])) / 2
        return risk.Quote(mark_price=float(mid), updated_ms=time.time_ns() // 1_000_000)

    return quote


def run_until(ex: execution.Execution, predicate: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {ex.snapshot()}")
        ex.poll()
        time.sleep(0.0005)


def main(argv: list[str]) -> int:
    base, log_path, marker = argv[0], Path(argv[1]), Path(argv[2])
    quote = quote_from(base)
    ex, _, _ = build(base, log_path, log_path.parent / "absent.db", [], quote)
    run_until(ex, lambda: ex.ready)
    price = quote(SYMBOL).mark_price  # type: ignore[union-attr]
    ex.on_signal(wire.SignalGenerated(signal_id=SIGNAL_ID, symbol=SYMBOL, side="BUY", entry=price,
                                      stop=price * 0.99, target=price * 1.02, confidence=0.6, features={"rr": 2.0}))
    run_until(ex, lambda: SYMBOL in ex.st.trades and ex.st.trades[SYMBOL].position > 0)
    marker.write_text(ex.st.trades[SYMBOL].entry_cid)
    while True:  # killed here (SIGKILL): nothing more is journaled
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
