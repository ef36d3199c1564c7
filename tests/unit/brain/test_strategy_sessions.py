"""The strategy's session flags (``strategy._in_session``, read when a signal is built) are
the ``active`` flags of the ``SessionRange`` records an SMC state with the default sessions
emits for the same candle: the strategy's base SMC state no longer carries sessions."""

from __future__ import annotations

from services.brain import strategy
from services.brain.smc import SessionRange, SmcConfig, new_state, update

MONDAY_MS = 1_733_097_600_000  # 2024-12-02 00:00 UTC


def test_every_minute_of_two_days_has_the_session_records_flags():
    """2,880 one-minute candles (every minute of a Monday and a Tuesday, so both ends of each
    window and midnight): for Tokyo, London and New York the flag equals the record's."""
    st = new_state(SmcConfig(swing_length=5, timeframes=()))
    seen = 0
    for k in range(2 * 1440):
        t_ms = MONDAY_MS + k * 60_000
        for lab in update(st, t_ms, 100.0, 101.0 + k % 7, 99.0 - k % 5, 100.5, 1.0):
            if type(lab) is SessionRange:
                assert strategy._in_session(lab.session, t_ms) is bool(lab.active)
                seen += 1
    assert seen == 3 * 2 * 1440


def test_a_session_the_smc_defaults_do_not_have_is_never_active():
    """A name outside the default sessions is not active (as ``dict.get(name, False)`` was)."""
    assert not any(strategy._in_session("Sydney", MONDAY_MS + k * 60_000) for k in range(1440))


def test_the_base_smc_state_carries_no_sessions():
    """The base state emits no session records (they are not built per candle)."""
    st = strategy.new_symbol_state()
    labels = update(st.smc, MONDAY_MS, 100.0, 101.0, 99.0, 100.5, 1.0)
    assert not any(type(x) is SessionRange for x in labels)
