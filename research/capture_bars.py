"""A capture (``aegis run --capture``) as backtest input: the 1-minute candles the recorded
brain analysed, written as a catalog that ``aegis backtest`` reads.

What the brain's strategy saw in the recorded run, and what ``aegis replay`` feeds it again:

1. **History.** The candles the feed hydrated over REST at the start of the run (``candle.*``
   messages from a ``feed:`` publisher). A replay warms the strategy with the last
   ``history_candles`` of each symbol closed by ``warm_to_ms`` (``common.replay_plan.plan_replay``
   and ``brain.recovery.recent_candles``); the same window is taken here.
2. **Live candles.** The candles the brain closed from the ticks during the run (``candle.*``
   from a ``brain:`` publisher), each analysed once its close is after the symbol's last
   analysed candle (``Brain.analyse``).

Both become one 1m kline series per symbol; the backtest runs over it with
``BacktestConfig(trade_from_ms=CaptureBars.trade_from_ms)``, so the history only warms the strategy, as in
the replay. What a backtest cannot reproduce from bars: the brain's exits and fills happen on
ticks inside a candle, the backtest's on the bar's low/high (worst case first) and close.
The signals (decided at candle closes) are comparable field for field; orders and fills are
not (``tests/integration/test_backtest_parity.py`` says which).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from common import wire
from common.capture_file import KIND_ZMQ, open_capture
from common.errors import ConfigError

MINUTE_MS = 60_000
ARCHIVE_COLUMNS = 12  # Binance's kline CSV: open_time .. ignore


@dataclass(frozen=True, kw_only=True)
class CaptureBars:
    """Per symbol, the 1m candles in time order: ``(open_ms, open, high, low, close, volume)``."""

    bars: dict[str, list[tuple[int, float, float, float, float, float]]]
    warm_to_ms: int  # history candles close by then; later ones are the live run's
    history: int  # history candles taken (all symbols)
    live: int  # live candles taken (all symbols)
    exchange_info: dict | None  # the header's exchangeInfo body (symbol filters), if any

    @property
    def trade_from_ms(self) -> int:
        """``BacktestConfig.trade_from_ms``: the history bars warm only. The brain's candle
        closes at ``open + 59,999`` ms, the backtest's bar at ``open + 60,000``: the last
        history bar closes, in the backtest's clock, one millisecond after ``warm_to_ms``."""
        return self.warm_to_ms + 1

    @property
    def first_ms(self) -> int:
        return min(b[0][0] for b in self.bars.values() if b)

    @property
    def end_ms(self) -> int:
        return max(b[-1][0] for b in self.bars.values() if b) + MINUTE_MS


def read_capture_bars(path: Path, interval_s: int = 60) -> CaptureBars:
    """The candles of a capture as the replayed brain analyses them (see the module doc)."""
    from common.replay_plan import plan_replay

    if interval_s != 60:
        raise ConfigError("capture bars: only 1-minute candles (brain.candle_interval_s = 60)")
    with open_capture(path) as cap:
        plan = plan_replay(cap)
        live: list[wire.CandleClosed] = []
        for rec in cap.iter_records():
            if rec.kind == KIND_ZMQ and rec.frames and rec.frames[0].startswith(b"candle."):
                env = wire.decode(rec.frames)
                if env.publisher.startswith("brain:") and isinstance(env.body, wire.CandleClosed):
                    live.append(env.body)
    # the replay's warm-up window: the last ``history_candles`` per symbol closed by warm_to_ms
    per_symbol = plan.history_candles
    since = plan.warm_to_ms - per_symbol * interval_s * 1000
    hist: dict[str, dict[int, wire.CandleClosed]] = defaultdict(dict)
    for env in plan.hydration:
        c = env.body
        if c.interval_s == interval_s and c.open_ms >= since and c.close_ms <= plan.warm_to_ms:
            hist[c.symbol][c.open_ms] = c  # the database keeps one row per (symbol, open): the last
    out: dict[str, list] = {}
    n_hist = n_live = 0
    for sym, by_open in hist.items():
        rows = [by_open[k] for k in sorted(by_open)][-per_symbol:]
        out[sym] = [_bar(c) for c in rows]
        n_hist += len(rows)
    last_close: dict[str, int] = {s: rows[-1][0] + interval_s * 1000 - 1 for s, rows in out.items() if rows}
    for c in sorted(live, key=lambda c: (c.open_ms, c.symbol)):
        if c.interval_s != interval_s or c.close_ms <= last_close.get(c.symbol, 0):
            continue  # analysed already (Brain.analyse)
        last_close[c.symbol] = c.close_ms
        out.setdefault(c.symbol, []).append(_bar(c))
        n_live += 1
    return CaptureBars(bars=out, warm_to_ms=plan.warm_to_ms, history=n_hist, live=n_live,
                       exchange_info=plan.exchange_info)


def _bar(c: wire.CandleClosed) -> tuple[int, float, float, float, float, float]:
    return (int(c.open_ms), float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume))


def write_catalog(cb: CaptureBars, catalog: Path, work: Path) -> list[str]:
    """The bars as Binance archive kline CSVs (one per symbol and month, in ``work``),
    imported into ``catalog`` with ``aegis data import``'s code; returns the symbols."""
    from research.ingest import run_import

    work.mkdir(parents=True, exist_ok=True)
    for sym in sorted(cb.bars):
        by_month: dict[str, list[str]] = defaultdict(list)
        for t, o, h, low, c, v in cb.bars[sym]:
            d = datetime.fromtimestamp(t / 1000, tz=timezone.utc)
            # open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,
            # taker_buy_quote_volume,ignore (the last five are not read by the backtest)
            by_month[f"{d.year:04d}-{d.month:02d}"].append(
                f"{t},{o!r},{h!r},{low!r},{c!r},{v!r},{t + MINUTE_MS - 1},0,0,0,0,0")
        for month, lines in by_month.items():
            f = work / f"{sym}-1m-{month}.csv"
            f.write_text("\n".join(lines) + "\n")
            report = run_import(catalog=catalog, path=f)
            if not report.ok:
                raise ConfigError(f"capture bars: {f.name} was refused: {report}")
    return sorted(cb.bars)


def write_exchange_info(cb: CaptureBars, path: Path) -> str:
    """The header's exchangeInfo as a file for ``BacktestConfig.exchange_info`` ("" if none)."""
    if not cb.exchange_info:
        return ""
    path.write_text(json.dumps(cb.exchange_info))
    return str(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m research.capture_bars CAPTURE --catalog DIR``: the capture's candles as a
    catalog, and the ``aegis backtest`` command that replays its decisions from bars."""
    import argparse
    import sys
    import tempfile

    p = argparse.ArgumentParser(prog="python -m research.capture_bars",
                                description="A capture's 1m candles (history + live) as a backtest catalog.")
    p.add_argument("capture", type=Path)
    p.add_argument("--catalog", type=Path, required=True, help="catalog directory to write (created)")
    args = p.parse_args(argv)
    if not args.capture.is_file():
        print(f"capture-bars: no file {args.capture}", file=sys.stderr)
        return 2
    cb = read_capture_bars(args.capture)
    with tempfile.TemporaryDirectory(prefix="aegis-capture-bars-") as d:
        symbols = write_catalog(cb, args.catalog, Path(d))
    print(f"{args.capture.name}: {len(symbols)} symbols, {cb.history:,} history + {cb.live:,} live candles "
          f"-> {args.catalog}; trade from {cb.trade_from_ms} (the history only warms the strategy: "
          f"research.backtest.BacktestConfig(trade_from_ms=...))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
