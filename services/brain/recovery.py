"""What the brain knew before a restart: read back from the database (read-only) and merged
with the exchange's positions, which are the truth.

The orchestrator is the only writer of the database; the brain reads it once, at start,
through the journal's store port (``common/journal_store.py``: read-only, typed rows; no SQL
here).

- Open orders: every order whose last journaled state is not final. Rebuilt as
  ``orders.Order`` values; ``trader_restart.recovery_actions`` then queries each one at the exchange
  before anything else touches its trade.
- Used client order ids (the last ``USED_IDS_DAYS``): a signal replayed after the restart
  cannot open a second trade.
- Open trades: one per position the exchange reports. Its plan (stop, target, confidence,
  the model's features) comes from the newest entry order of that symbol and its signal;
  a position without one is adopted (``trader_restart.adopt``). Its quantity is the exchange's,
  less what the open orders of that symbol executed beyond the fills on record (those are
  fetched after the restart and applied: see ``merge``). A local trade the exchange no
  longer holds is gone (it closed while we were down; reconciliation repairs the rows).
- The confidence model's and the kill switch's state (table ``model_state``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import msgspec
import structlog

from common import journal_store, wire
from common.errors import StoreError
from common.journal_store import AlgoRow, CandleRow, JournalReader, OrderRow
from venue import order_rules
from venue import algo_orders as ao
from venue import orders as om
from services.brain import intent_log, risk, trader, trader_entries, trader_exits, trader_restart
from venue.port import LIVE_STATUSES, ExchangeFill, ExchangeOrder, ExchangePosition

log = structlog.get_logger(__name__)

USED_IDS_DAYS = 7
MODEL_NAME = "confidence"
RISK_NAME = wire.RISK_STATE_NAME
_OPEN_STATES = tuple(s.value for s in om.OrderState if s not in om.TERMINAL)


@dataclass(frozen=True, kw_only=True)
class Saved:
    open_orders: Mapping[str, om.Order] = field(default_factory=dict)
    used_cids: frozenset[str] = frozenset()
    plans: Mapping[str, trader.Trade] = field(default_factory=dict)  # symbol -> newest filled entry's plan
    last_action_ms: Mapping[str, int] = field(default_factory=dict)
    model_blob: bytes | None = None
    risk_state: risk.RiskState | None = None
    algos: Mapping[str, ao.AlgoOrder] = field(default_factory=dict)  # protective orders not known over
    entry_fills: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)  # symbol -> (qty, avg)
    # every client id the journal holds (orders of the last USED_IDS_DAYS, every protective
    # order): an intent of the local log whose id is here is already on record
    journal_ids: frozenset[str] = frozenset()


def _dec(x: object) -> Decimal:
    try:
        return Decimal(repr(x)) if isinstance(x, float) else Decimal(str(x))
    except InvalidOperation:
        return Decimal(0)


def _order(row: OrderRow) -> om.Order:
    state = om.OrderState(row.status)
    filled = _dec(row.filled_qty)
    return om.Order(client_order_id=row.client_order_id, symbol=row.symbol, side=row.side,
                    order_type=row.order_type, qty=_dec(row.qty), price=_dec(row.price),
                    reduce_only=row.reduce_only, signal_id=row.signal_id, state=state,
                    exchange_order_id=row.exchange_order_id,
                    confirmed=state not in (om.S.NEW_LOCAL, om.S.SENT, om.S.UNKNOWN),
                    send_count=0 if state == om.S.NEW_LOCAL else 1,
                    last_sent_ms=int(row.created_ns) // 1_000_000, filled_qty=filled,
                    filled_notional=filled * _dec(row.avg_price), trade_ids=row.fill_trade_ids)


_ALGO_OPEN = tuple(s.value for s in ao.AlgoState if s not in ao.TERMINAL)


def _algo(row: AlgoRow) -> ao.AlgoOrder | None:
    """A protective order from its journal row (its exact trigger text); None if unreadable.
    A trailing stop's quantity and callback are not journaled: after a restart it is only
    queried and cancelled, never re-sent (a successor is built from the config)."""
    try:
        state = ao.AlgoState(row.state)
        sent = int(row.sent_ms)
        level = Decimal(row.trigger_price)  # a trailing stop's journaled level is its activation price
        trailing = row.order_type == "TRAILING_STOP_MARKET"
        return ao.AlgoOrder(client_algo_id=row.client_algo_id, symbol=row.symbol, side=row.side,
                            order_type=row.order_type, trigger_price=Decimal(0) if trailing else level,
                            activation_price=level if trailing else Decimal(0),
                            working_type=row.working_type, close_position=bool(row.close_position),
                            trade_id=row.trade_id, role=row.role, state=state, algo_id=row.algo_id,
                            actual_order_id=row.actual_order_id, confirmed=bool(row.algo_id),
                            send_count=1 if sent else 0, last_sent_ms=sent)
    except (ValueError, TypeError, InvalidOperation) as exc:
        log.error("brain.algo_row_unreadable", client_algo_id=str(row.client_algo_id), error=str(exc))
        return None


def _algo_row(b: wire.AlgoOrderUpdate, sent_ms: int) -> AlgoRow:
    """The journal row an algo update becomes (what ``_algo`` reads back after a restart)."""
    return AlgoRow(client_algo_id=b.client_algo_id, algo_id=b.algo_id, symbol=b.symbol, side=b.side,
                   order_type=b.order_type, trigger_price=b.trigger_price, working_type=b.working_type,
                   close_position=b.close_position, trade_id=b.trade_id, role=b.role, state=b.state,
                   actual_order_id=b.actual_order_id, sent_ms=sent_ms)


def load(db_path: Path, now_ms: int) -> Saved:
    """Everything the database holds for a restart; an absent database is a first start."""
    if not db_path.exists():
        return Saved()
    try:
        with journal_store.read_only(db_path, timeout_s=5.0) as journal:
            return _load(journal, now_ms)
    except StoreError as exc:  # e.g. no schema yet: the orchestrator has not run
        log.warning("brain.recovery_db_unreadable", path=str(db_path), error=str(exc))
        return Saved()


def _load(journal: JournalReader, now_ms: int) -> Saved:
    since_ns = (now_ms - USED_IDS_DAYS * 86_400_000) * 1_000_000
    used = journal.order_ids_since(since_ns)
    open_orders = {row.client_order_id: _order(row) for row in journal.orders_in_states(_OPEN_STATES)}
    plans: dict[str, trader.Trade] = {}
    filled: dict[str, tuple[Decimal, Decimal]] = {}
    # the newest entry per symbol that filled, or is still open (its fate is being queried)
    for row in journal.entry_plans(_OPEN_STATES, since_ns):
        try:
            features = {k: float(v) for k, v in json.loads(row.features).items()}
        except (ValueError, AttributeError, TypeError):
            features = {}
        plans[row.symbol] = trader.Trade(
            trade_id=row.signal_id, symbol=row.symbol, side=row.side, stop=float(row.stop),
            target=float(row.target), confidence=float(row.confidence), features=features,
            opened_ms=int(row.created_ns) // 1_000_000, entry_cid=row.client_order_id)
        # what the entry filled, as journaled: a trade closed while we were away starts from it
        filled[row.symbol] = (_dec(row.filled_qty), _dec(row.avg_price))
    closed = journal.closed_trade_ids()
    last_action = {sym: ns // 1_000_000 for sym, ns in journal.last_order_update_ns(since_ns).items()}
    blobs = journal.model_states()
    risk_state = None
    if RISK_NAME in blobs:
        try:
            risk_state = risk.RiskState.from_dict(json.loads(blobs[RISK_NAME]))
        except Exception as exc:  # a damaged record must not unhalt anything: say so, start halted
            log.error("brain.risk_state_unreadable", error=str(exc))
            risk_state = risk.halt(risk.RiskState(), now_ms, "saved risk state unreadable")
    algos: dict[str, ao.AlgoOrder] = {}
    for algo_row in journal.algo_orders_in_states(_ALGO_OPEN):  # none on a database from before them
        a = _algo(algo_row)
        if a is not None:
            algos[a.client_algo_id] = a
    # a plan whose trade is over (closed in the trades table) is no plan any more; one whose
    # entry filled is carried with its fills (below: closed at the exchange while we were away)
    open_plans = {s: p for s, p in plans.items() if p.trade_id not in closed}
    entries = {s: filled[s] for s in open_plans if s in filled}
    ids = set(used) | journal.algo_ids()
    return Saved(open_orders=open_orders, used_cids=used, plans=open_plans, last_action_ms=last_action,
                 model_blob=blobs.get(MODEL_NAME), risk_state=risk_state, algos=algos, entry_fills=entries,
                 journal_ids=frozenset(ids))


def journaled_ids(db_path: Path, ids: Sequence[str]) -> frozenset[str] | None:
    """Which of ``ids`` (order or protective-order client ids) the database holds; None when it
    cannot be read (absent, locked, no schema yet)."""
    if not ids or not db_path.exists():
        return None if not db_path.exists() else frozenset()
    try:
        with journal_store.read_only(db_path, timeout_s=1.0) as journal:
            return journal.known_ids(ids)
    except StoreError:
        return None


def our_order_id(cid: str) -> bool:
    """An id the brain makes for an entry or an exit (``<ae|ax>-...`` or ``<ae|ax>.<hash>-n``)."""
    return cid[:2] in (trader_entries.ENTRY_PREFIX, trader_exits.EXIT_PREFIX) and cid[2:3] in ("-", ".")


def exchange_intents(orders: Sequence[ExchangeOrder], now_ms: int) -> list[intent_log.Intent]:
    """Our orders open at the exchange, as intents (pure): after a crash of the machine the
    intent log may lack the last few milliseconds of records (its fsync is batched), but such
    an order still carries our deterministic id, so the exchange's open orders name it and
    ``with_intents`` adopts it like a logged one (no plan: its trade is adopted if it fills)."""
    out = []
    for e in orders:
        if not our_order_id(e.client_order_id) or not (e.qty > 0 and e.qty.is_finite()):
            continue
        body = wire.OrderRequest(client_order_id=e.client_order_id, symbol=e.symbol, side=e.side,
                                 order_type=e.order_type or "MARKET", qty=float(e.qty), price=float(e.price),
                                 reduce_only=e.reduce_only or e.client_order_id.startswith(trader_exits.EXIT_PREFIX))
        out.append(intent_log.Intent(client_id=e.client_order_id, at_ns=(e.update_ms or now_ms) * 1_000_000,
                                     body=body))
    return out


HISTORY_MARGIN_MS = 60_000  # the order history is read from this long before the newest record
HISTORY_MAX_MS = 7 * 86_400_000


def history_since(saved: Saved, intents: Sequence[intent_log.Intent], now_ms: int, lookback_ms: int) -> int:
    """Where start-up reads the exchange's order history from (pure).

    A crash of the machine loses at most the intent records of its last milliseconds, so an
    order nobody has on record was made after the newest record there is: the newest intent
    of the log or the newest order change the journal holds. The read starts
    ``HISTORY_MARGIN_MS`` before that (clock skew, a journal row still on its way); with
    nothing on record, ``lookback_ms`` back; never more than 7 days back (one request)."""
    points = [it.at_ns // 1_000_000 for it in intents] + list(saved.last_action_ms.values())
    since = max(points) - HISTORY_MARGIN_MS if points else now_ms - lookback_ms
    return max(since, now_ms - HISTORY_MAX_MS)


def from_history(history: Sequence[ExchangeOrder], positions: Sequence[ExchangePosition], saved: Saved
                 ) -> tuple[list[ExchangeOrder], list[ExchangeOrder]]:
    """Our orders in the exchange's order history that nothing here knows, split (pure) into
    those to adopt as orders of a trade and those only to record.

    Adopted (asked at the exchange, their fills applied to a trade, as ``exchange_intents``):
    an entry that executed while the exchange holds a position of its side on that symbol (the
    position is that entry's), an exit that executed on a symbol we trade. Recorded only (the
    journal gets its row, final state and fills, no trade is touched): one that executed
    nothing (CANCELED, EXPIRED), or an entry whose position is gone (closed by someone else
    since: no trade to protect). Open ones are left to the open list."""
    known = saved.journal_ids | saved.used_cids | set(saved.open_orders) | set(saved.algos)
    held = {p.symbol: ("BUY" if p.qty > 0 else "SELL") for p in positions if p.qty != 0}
    adopt: list[ExchangeOrder] = []
    record: list[ExchangeOrder] = []
    seen: set[str] = set()
    for e in history:
        cid = e.client_order_id
        if not our_order_id(cid) or cid in known or cid in seen or e.status in LIVE_STATUSES:
            continue
        if not (e.qty > 0 and e.qty.is_finite() and e.executed_qty.is_finite()):
            continue
        seen.add(cid)
        exit_ = e.reduce_only or cid.startswith(trader_exits.EXIT_PREFIX)
        ours = (e.symbol in saved.plans or e.symbol in held) if exit_ else held.get(e.symbol) == e.side
        (adopt if e.executed_qty > 0 and ours else record).append(e)
    return adopt, record


def record_bodies(e: ExchangeOrder, fills: Sequence[ExchangeFill], at_ms: int) -> list[Any]:
    """The journal rows of an order found only in the exchange's history (pure): its request,
    its final state as the exchange has it, each of its fills (by trade id: the journal keeps
    one row per trade, so a fill that also comes another way is not counted twice)."""
    body = exchange_intents([e], at_ms)[0].body
    state = om.EXCHANGE_STATUS.get(e.status, om.S.CANCELED)
    out: list[Any] = [body, wire.OrderUpdate(
        client_order_id=e.client_order_id, exchange_order_id=e.exchange_order_id, symbol=e.symbol,
        status=state.value, filled_qty=float(e.executed_qty), avg_price=float(e.avg_price),
        reason="adopted from the exchange's order history: sent, not on record")]
    out += [wire.Fill(client_order_id=e.client_order_id, exchange_order_id=f.exchange_order_id, trade_id=f.trade_id,
                      symbol=f.symbol, side=f.side, qty=float(f.qty), price=float(f.price), fee=float(f.fee),
                      fee_asset=f.fee_asset, liquidity=f.liquidity)
            for f in fills if f.exchange_order_id == e.exchange_order_id]
    return out


def with_intents(saved: Saved, intents: Sequence[intent_log.Intent], now_ms: int,
                 recv_window_ms: int = order_rules.DEFAULT_RECV_WINDOW_MS) -> tuple[Saved, list[intent_log.Intent]]:
    """``saved`` with what the local intent log holds and the journal does not (pure).

    An intent is written before its order is sent and journaled after, so a crash in between
    leaves an order the exchange may hold and the journal does not know. Each such intent
    (the newest record per client id, younger than ``USED_IDS_DAYS``) becomes an open order
    in state NEW_LOCAL sent at the intent's time: ``trader_restart.recovery_actions`` then treats it
    like every order whose fate a restart left unknown (asked at the exchange by its client
    id before anything else touches its trade; never sent again while it may be there). Its
    id is used (a replayed signal opens nothing twice); an entry's plan (stop, target) comes
    with it when the journal has no newer plan for the symbol. Returns the new ``Saved`` and
    the intents to journal now (their request bodies, through the buffered path)."""
    since_ns = (now_ms - USED_IDS_DAYS * 86_400_000) * 1_000_000
    known = saved.journal_ids | saved.used_cids | set(saved.open_orders) | set(saved.algos)
    todo = [it for it in intent_log.unknown_to_journal(intents, known) if it.at_ns >= since_ns]
    if not todo:
        return saved, []
    orders, algos, plans = dict(saved.open_orders), dict(saved.algos), dict(saved.plans)
    used, last_action = set(saved.used_cids), dict(saved.last_action_ms)
    for it in todo:
        at_ms = it.at_ns // 1_000_000
        b = it.body
        if isinstance(b, wire.OrderRequest):
            o = replace(om.order_from_request(b, recv_window_ms=recv_window_ms), last_sent_ms=at_ms)
            orders[o.client_order_id] = o
            used.add(o.client_order_id)
            last_action[o.symbol] = max(last_action.get(o.symbol, 0), at_ms)
            p = it.plan
            old = plans.get(o.symbol)
            if not o.reduce_only and p is not None and (old is None or old.opened_ms <= at_ms):
                plans[o.symbol] = trader.Trade(trade_id=p.trade_id, symbol=o.symbol, side=o.side, stop=p.stop,
                                               target=p.target, confidence=p.confidence, features=dict(p.features),
                                               opened_ms=at_ms, entry_cid=o.client_order_id)
        else:
            a = _algo(_algo_row(b, at_ms))
            if a is not None:
                algos[a.client_algo_id] = a
    log.warning("brain.intents_not_journaled", count=len(todo), first_ids=[it.client_id for it in todo][:5],
                note="sent (or about to be) before a crash; asked at the exchange, journaled now")
    return replace(saved, open_orders=orders, algos=algos, plans=plans, used_cids=frozenset(used),
                   last_action_ms=last_action, journal_ids=saved.journal_ids | {it.client_id for it in todo}), todo


def merge(cfg: trader.TraderConfig, saved: Saved, positions: Sequence[ExchangePosition], now_ms: int,
          risk_state: risk.RiskState, executed: Mapping[str, Decimal] | None = None) -> trader.TraderState:
    """The trader's state after a restart: the exchange's positions with our plans for them.

    ``executed``: what the exchange says each open order has executed (asked at start). The
    fills an open order lacks on record are fetched and applied after the restart; the
    exchange's position already holds them, so the trade starts that much back (an entry's
    missing fills below, an exit's above) and ends, once they are applied, at the exchange's
    quantity: nothing counted twice, on either side."""
    executed = executed or {}

    def missing(o: om.Order) -> Decimal:
        ex = executed.get(o.client_order_id)
        return max(Decimal(0), ex - o.filled_qty) if ex is not None else Decimal(0)

    trades: dict[str, trader.Trade] = {}
    for p in positions:
        if p.qty == 0:
            continue
        plan = saved.plans.get(p.symbol)
        side = "BUY" if p.qty > 0 else "SELL"
        q = abs(p.qty)
        open_here = [o for o in saved.open_orders.values() if o.symbol == p.symbol]
        exits_missing = sum((missing(o) for o in open_here if o.reduce_only), Decimal(0))
        if plan is not None and plan.side == side:
            entry = saved.open_orders.get(plan.entry_cid)
            base = q - (missing(entry) if entry is not None else Decimal(0)) + exits_missing
            trades[p.symbol] = replace(plan, entry_qty=base, entry_notional=base * p.entry_price)
        else:
            log.warning("brain.position_adopted", symbol=p.symbol, qty=str(p.qty), entry=str(p.entry_price))
            # an entry of ours on record for no plan (found at the exchange after a machine
            # crash): the position is its trade, less what its fills still to come will add
            entry = next((o for o in open_here if not o.reduce_only and o.side == side
                          and (plan is None or plan.entry_cid != o.client_order_id)
                          and missing(o) <= q + exits_missing), None)
            base = q + exits_missing - (missing(entry) if entry is not None else Decimal(0))
            # the side and the levels from the position itself (``base`` may be 0: all to come)
            t = trader_restart.adopt(cfg, symbol=p.symbol, qty=p.qty, entry_price=p.entry_price, now_ms=now_ms)
            t = replace(t, entry_qty=base, entry_notional=base * p.entry_price)
            if entry is not None:
                t = replace(t, trade_id=entry.signal_id or entry.client_order_id, entry_cid=entry.client_order_id)
            else:  # adopted before: the same trade again, so its protective orders are its own
                earlier = adopted_before(saved.algos, p.symbol, side)
                if earlier:
                    t = replace(t, trade_id=earlier)
            trades[p.symbol] = t
    # a filled entry whose position the exchange no longer holds was closed while we were away
    # (its stop or target fired, or someone closed it): the trade is rebuilt from its journaled
    # fills, flat at the exchange, and its closing fills are fetched to learn the real outcome
    for sym, plan in saved.plans.items():
        qty, avg = saved.entry_fills.get(sym, (Decimal(0), Decimal(0)))
        entry = saved.open_orders.get(plan.entry_cid)
        if sym in trades or qty <= 0 or (entry is not None and not entry.is_terminal):
            continue
        log.warning("brain.closed_while_away", symbol=sym, trade_id=plan.trade_id, qty=str(qty))
        trades[sym] = replace(plan, entry_qty=qty, entry_notional=qty * avg, first_fill_ms=plan.opened_ms,
                              flat_at_exchange_ms=now_ms)
    # an open entry order whose trade has no position yet still holds its slot
    for o in saved.open_orders.values():
        plan = saved.plans.get(o.symbol)
        if not o.reduce_only and o.symbol not in trades:
            if plan is not None and plan.entry_cid == o.client_order_id:
                trades[o.symbol] = plan
            else:  # no plan on record: stop and target are set around the fill (adopted)
                trades[o.symbol] = trader.Trade(trade_id=o.signal_id or o.client_order_id, symbol=o.symbol,
                                                side=o.side, stop=0.0, target=0.0, confidence=0.0, features={},
                                                opened_ms=now_ms, entry_cid=o.client_order_id, adopted=True)
        elif o.reduce_only and o.symbol in trades:
            t = trades[o.symbol]
            trades[o.symbol] = replace(t, exit_cid=o.client_order_id, exit_cids=t.exit_cids | {o.client_order_id},
                                       exit_reason=t.exit_reason or "RECOVERED")
    return trader_restart.restore(risk_state=risk_state, orders=saved.open_orders, trades=trades,
                                  used_cids=saved.used_cids, last_action_ms=saved.last_action_ms, algos=saved.algos)


def adopted_before(algos: Mapping[str, ao.AlgoOrder], symbol: str, side: str) -> str:
    """Pure: the trade id of an earlier adoption of ``symbol``'s ``side`` position whose
    protective orders may still be open at the exchange ("" if none). A position adopted at
    one start is adopted again at the next (it has no plan in the journal); under a new id
    its open stop would belong to no trade, the new stop would meet Binance's -4130 (one
    ``closePosition`` order per symbol, side and type) and be armed again at every audit.
    The newest such adoption wins (its id carries its time)."""
    closing = "SELL" if side == "BUY" else "BUY"
    ids = {a.trade_id for a in algos.values() if a.symbol == symbol and a.side == closing and not a.is_terminal
           and a.trade_id.startswith(f"adopted-{symbol}-")}
    return max(ids, key=lambda i: (trader_restart.trailing_number(i), i), default="")


def recent_candles(db_path: Path, interval_s: int, per_symbol: int, now_ms: int) -> list[wire.CandleClosed]:
    """The last ``per_symbol`` closed candles of each symbol, oldest first, from the window that
    ends now (older rows are another run's: a replaying exchange repeats its prices), all
    symbols interleaved in time order (``open_ms``, then symbol). Replay mode warms its
    strategy with all of them before the first tick; ``iter_recent_candles`` reads the same
    candles one symbol at a time."""
    return sorted(iter_recent_candles(db_path, interval_s, per_symbol, now_ms), key=lambda c: (c.open_ms, c.symbol))


def _candle(r: CandleRow, interval_s: int) -> wire.CandleClosed | None:
    try:
        return wire.CandleClosed(symbol=r.symbol, interval_s=interval_s, open_ms=r.open_ms, close_ms=r.close_ms,
                                 open=r.open, high=r.high, low=r.low, close=r.close, volume=r.volume,
                                 quote_volume=r.quote_volume, trades=r.trades, buy_volume=r.buy_volume)
    except (ValueError, TypeError, msgspec.ValidationError):  # a bad row is skipped, not fatal
        return None


def iter_recent_candles(db_path: Path, interval_s: int, per_symbol: int, now_ms: int
                        ) -> Iterator[wire.CandleClosed]:
    """``recent_candles`` one symbol at a time, read as it is consumed (each symbol oldest
    first; the symbols in name order). A brain restarted inside a running stack warms its
    strategy from this in its idle moments, after it is ready and reading the ring: one
    primary-key range per symbol instead of one sort of every row before the first one
    (~0.35 s for 40 symbols x 1,500 candles, which used to delay readiness).

    The connection stays open while the generator lives; exhausting or closing it closes it."""
    if per_symbol <= 0 or not db_path.exists():
        return
    since = now_ms - per_symbol * interval_s * 1000
    try:
        with journal_store.read_only(db_path, timeout_s=5.0) as journal:
            for sym in journal.candle_symbols():
                for r in journal.candles(sym, interval_s, since, now_ms, per_symbol):
                    c = _candle(r, interval_s)
                    if c is not None:
                        yield c
    except StoreError as exc:
        log.warning("brain.recovery_candles_unreadable", error=str(exc))


def symbol_rules(db_path: Path) -> dict[str, wire.SymbolInfo]:
    """The trading rules the feed published and the orchestrator stored (``symbols`` table):
    empty on a first start, or when the table is missing or unreadable."""
    if not db_path.exists():
        return {}
    try:
        with journal_store.read_only(db_path, timeout_s=5.0) as journal:
            rows = journal.symbol_rules()
    except StoreError as exc:
        log.warning("brain.symbol_rules_unreadable", error=str(exc))
        return {}
    out = {}
    for r in rows:
        try:
            out[r.symbol] = wire.SymbolInfo(**{c: getattr(r, c) for c in journal_store.SYMBOL_ROW_COLUMNS})
        except (TypeError, ValueError, msgspec.ValidationError) as exc:
            log.warning("brain.symbol_rule_rejected", symbol=r.symbol, error=str(exc))
    return out
