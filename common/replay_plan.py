"""What a replay needs from a capture, read once before the stack starts (pure over the file).

Shared by ``aegis replay`` (``cli/replay.py``) and the backtest's capture input
(``research/capture_bars.py``): both must see the same hydrated history, the same warm-up
point and the same symbol rules, or the parity test between them would compare two readings
of one file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from common import wire
from common.capture_file import KIND_WS_RAW, KIND_ZMQ, Capture
from common.errors import DecodeError

SYMBOL_TOPIC = wire.topic_prefix(wire.EventType.SYMBOL_INFO)


@dataclass(frozen=True)
class Plan:
    """What a replay needs from a capture, read once before the stack starts."""

    hydration: tuple[wire.Envelope, ...]  # the feed's hydrated candles, in capture order
    warm_to_ms: int  # the brain warms from candles closed by then
    history_candles: int  # ... at most this many per symbol
    frames: int  # raw WebSocket frames in range
    first_ns: int | None
    last_ns: int | None
    exchange_info: dict[str, Any] | None
    damage: str = ""  # where the capture is damaged ("" = intact)
    rules: tuple[wire.SymbolInfo, ...] = ()  # the feed's symbol messages in the file (the last of each)
    raw_in_file: int = 0  # raw WebSocket frames in the whole file, in range or not
    # how the recorded run sent entries (the capture header's meta; "" = not recorded: MARKET,
    # the only kind before limit-IOC entries)
    entry_order: str = ""
    entry_slippage_bps: float | None = None


def is_hydration(env: wire.Envelope) -> bool:
    return isinstance(env.body, wire.CandleClosed) and env.publisher.startswith("feed:")


def plan_replay(cap: Capture, from_ns: int | None = None, to_ns: int | None = None) -> Plan:
    """Scan the capture once: hydration candles (whole file: they are history, not ticks),
    raw frames in [from, to), the header's exchangeInfo, the feed's symbol rules. Damage ends
    the scan, not the plan."""
    hyd: list[wire.Envelope] = []
    rules: dict[str, wire.SymbolInfo] = {}
    raw_in_file = 0
    frames = 0
    first = last = None
    damage = ""
    try:
        for rec in cap.iter_records():
            if rec.kind == KIND_ZMQ and rec.frames and rec.frames[0].startswith(b"candle."):
                try:
                    env = wire.decode(rec.frames)
                except DecodeError:
                    continue
                if is_hydration(env):
                    hyd.append(env)
            elif rec.kind == KIND_ZMQ and rec.frames and rec.frames[0].startswith(SYMBOL_TOPIC):
                try:
                    env = wire.decode(rec.frames)
                except DecodeError:
                    continue
                if isinstance(env.body, wire.SymbolInfo) and env.publisher.startswith("feed:"):
                    rules[env.body.symbol] = env.body
            elif rec.kind == KIND_WS_RAW:
                raw_in_file += 1
                if (from_ns is not None and rec.recv_ns < from_ns) or (to_ns is not None and rec.recv_ns >= to_ns):
                    continue
                frames += 1
                first = rec.recv_ns if first is None else first
                last = rec.recv_ns
    except DecodeError as exc:
        damage = str(exc)
    per_symbol = Counter(e.body.symbol for e in hyd)
    warm_to = max((e.body.close_ms for e in hyd), default=0)
    if not hyd and first is not None:
        warm_to = first // 1_000_000
    meta = cap.header.meta if isinstance(cap.header.meta, dict) else {}
    info = meta.get("exchange_info")
    entry_order = meta.get("entry_order")
    bound = meta.get("entry_slippage_bps")
    return Plan(hydration=tuple(hyd), warm_to_ms=warm_to, history_candles=max(per_symbol.values(), default=0),
                frames=frames, first_ns=first, last_ns=last,
                exchange_info=info if isinstance(info, dict) else None, damage=damage,
                rules=tuple(rules[s] for s in sorted(rules)), raw_in_file=raw_in_file,
                entry_order=entry_order if entry_order in ("limit_ioc", "market") else "",
                entry_slippage_bps=float(bound) if isinstance(bound, (int, float)) and not isinstance(bound, bool)
                and 0 <= bound <= 500 else None)
