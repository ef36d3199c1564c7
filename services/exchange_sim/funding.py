"""Funding of the sim's perpetuals (pure): the 8-hourly series and its settlement.

Binance USD-M perpetuals settle funding every 8 hours, at 00:00, 08:00 and 16:00 UTC:
every open position pays or receives ``position notional at the mark price x funding rate``.
A positive rate makes longs pay shorts, a negative one shorts pay longs. The payment is an
income row of type ``FUNDING_FEE`` (``GET /fapi/v1/income``), it moves the wallet, and the
user data stream pushes an ``ACCOUNT_UPDATE`` with ``m`` = ``FUNDING_FEE``.

The sim's rate rule (deterministic, the same for every symbol and every funding time):
``FUNDING_RATE`` = 0.0001 (0.01 % per 8 h). That is what Binance's formula gives when the
premium of the mark over the index stays inside its +/-0.05 % clamp: the rate is then the
interest rate, 0.01 % per 8 h. The sim's index is its last trade and its mark the book
mid, so their premium is noise of a tick or two, not a market signal; a fixed rate keeps
every payment a test can predict to the last 1e-8. ``premiumIndex`` and the ``markPrice``
stream report the same rate as ``lastFundingRate`` / ``r`` and the next grid time.

Money: a payment is ``-(signed qty x mark x rate)`` rounded half-up to 1e-8 USDT (Binance
prints 8 decimals); a payment that rounds to zero makes no income row.

Times: the desk settles each grid time once (``Account.funding_ms`` remembers the last one,
kept in the state file) with the marks of that moment. A fresh account starts at the current
grid time without paying; a sim that was down across funding times settles only the latest
of them, once, at the marks it sees when it is back (it never saw the marks of the others). The test control ``POST /_sim/funding {"symbol"?}`` settles now, off the grid,
so a test need not wait 8 hours: the income rows and records then carry the current time.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Mapping, Sequence

from services.exchange_sim.account import (MAX_FUNDING_RECORDS, MAX_INCOMES, ZERO, Account, FundingRecord,
                                           Income, money)

FUNDING_RATE = Decimal("0.0001")  # 0.01 % per 8 h, every symbol (module docstring)
FUNDING_PERIOD_MS = 8 * 3_600_000
FUNDING_FEE = "FUNDING_FEE"


def rate_of(symbol: str) -> Decimal:
    """The funding rate of ``symbol`` at any funding time (the rule of the module docstring)."""
    return FUNDING_RATE


def last_funding_ms(now_ms: int) -> int:
    """The latest funding time at or before ``now_ms`` (00:00, 08:00 or 16:00 UTC)."""
    return now_ms - now_ms % FUNDING_PERIOD_MS


def next_funding_ms(now_ms: int) -> int:
    """The next funding time strictly after ``now_ms`` (``premiumIndex``'s ``nextFundingTime``)."""
    return last_funding_ms(now_ms) + FUNDING_PERIOD_MS


def payment(qty: Decimal, mark: Decimal, rate: Decimal) -> Decimal:
    """What a position of signed ``qty`` receives (> 0) or pays (< 0) at ``mark`` and ``rate``."""
    return money(-(qty * mark * rate))


def settle(acc: Account, symbols: Sequence[str], marks: Mapping[str, Decimal], time_ms: int,
           now_ms: int, *, grid: bool) -> tuple[Account, list[Income]]:
    """Funding of ``symbols`` at ``time_ms``: one series record per symbol with a mark, one
    income row per open position whose payment is not zero, the wallet moved by each.
    ``grid``: a scheduled funding time (``Account.funding_ms`` becomes ``time_ms``)."""
    records: list[FundingRecord] = []
    incomes: list[Income] = []
    wallet = acc.wallet
    tran = acc.next_tran_id
    for s in sorted(symbols):
        mark = marks.get(s)
        if mark is None:
            continue
        rate = rate_of(s)
        records.append(FundingRecord(symbol=s, rate=rate, time_ms=time_ms, mark=mark))
        pos = acc.positions.get(s)
        if pos is None or not pos.qty:
            continue
        pay = payment(pos.qty, mark, rate)
        if pay == ZERO:
            continue
        incomes.append(Income(tran_id=tran, symbol=s, income_type=FUNDING_FEE, income=pay, time_ms=time_ms))
        tran += 1
        wallet += pay
    if not records and not grid:
        return acc, []
    after = dataclasses.replace(
        acc, wallet=wallet, incomes=(acc.incomes + tuple(incomes))[-MAX_INCOMES:],
        funding=(acc.funding + tuple(records))[-MAX_FUNDING_RECORDS:], next_tran_id=tran,
        funding_ms=time_ms if grid else acc.funding_ms, version=acc.version + 1, update_ms=now_ms)
    return after, incomes
