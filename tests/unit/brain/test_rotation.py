"""The three-position rotation rule: take, rotate out the weakest, skip, and never ping-pong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from common.errors import ConfigError
from common.wire import SignalGenerated
from services.brain import rotation as rot
from services.brain.rotation import HeldPosition, Rotate, RotationConfig, Skip, Take, decide

T0 = 1_700_000_000_000
LONG_AGO = T0 - 86_400_000
# binary-exact numbers so that "beats by the margin" is decided without float noise
CFG = RotationConfig(max_positions=3, replace_margin=0.125, pnl_weight_per_r=0.125, cooldown_s=300.0)


def held(symbol: str, confidence: float, *, mark: float = 100.0, side: str = "BUY", entry: float = 100.0,
         stop: float | None = None, opened_ms: int = LONG_AGO) -> HeldPosition:
    if stop is None:
        stop = 90.0 if side == "BUY" else 110.0
    return HeldPosition(symbol=symbol, side=side, entry_price=entry, stop_price=stop, mark_price=mark,
                        confidence=confidence, opened_ms=opened_ms)


def signal(symbol: str, confidence: float) -> SignalGenerated:
    return SignalGenerated(signal_id=f"{symbol}-1", symbol=symbol, side="BUY", entry=100.0, stop=90.0,
                           target=120.0, confidence=confidence)


@dataclass
class StubSignal:
    symbol: Any
    confidence: Any


# A at +2R (0.5 -> 0.75), B at -1R (0.75 -> 0.625), C flat (0.6875): B is the weakest
FULL = (held("AUSDT", 0.5, mark=120.0), held("BUSDT", 0.75, mark=90.0), held("CUSDT", 0.6875))


class TestScore:
    def test_long_and_short_unrealised_r(self):
        """A long 2R up reads +2; a short with its stop 10 above entry reads +1 at 10 below and -0.5 at 5 above."""
        assert rot.unrealised_r(held("X", 0.5, mark=120.0)) == 2.0
        assert rot.unrealised_r(held("X", 0.5, side="SELL", mark=90.0)) == 1.0
        assert rot.unrealised_r(held("X", 0.5, side="SELL", mark=105.0)) == -0.5

    def test_score_is_confidence_plus_k_per_r(self):
        """score = confidence + 0.125 * R: 0.5 at +2R is 0.75, 0.75 at -1R is 0.625."""
        assert [rot.score(p, CFG) for p in FULL] == [0.75, 0.625, 0.6875]

    def test_score_is_clamped_to_zero_and_one(self):
        """Far in profit caps at 1, far in loss floors at 0."""
        assert rot.score(held("X", 0.95, mark=200.0), CFG) == 1.0
        assert rot.score(held("X", 0.1, mark=40.0), CFG) == 0.0

    def test_undefined_r_adds_nothing(self):
        """Stop at entry, a stop on the wrong side, or a NaN mark gives unrealised R 0."""
        assert rot.unrealised_r(held("X", 0.5, stop=100.0, mark=150.0)) == 0.0
        assert rot.unrealised_r(held("X", 0.5, stop=105.0, mark=150.0)) == 0.0
        assert rot.unrealised_r(held("X", 0.5, mark=float("nan"))) == 0.0


class TestDecide:
    def test_signal_with_free_slot_is_taken(self):
        """Fewer than three positions: the signal gets a slot."""
        assert decide(FULL[:2], signal("DUSDT", 0.1), T0, CFG) == Take()
        assert decide((), signal("DUSDT", 0.1), T0, CFG) == Take()

    def test_stronger_signal_replaces_the_weakest_by_score_not_by_entry_confidence(self):
        """0.8125 beats B's 0.625 + 0.125: exit B (the losing one), not A (lowest entry confidence)."""
        assert decide(FULL, signal("DUSDT", 0.8125), T0, CFG) == Rotate("BUSDT", 0.625)

    def test_signal_equal_to_score_plus_margin_is_not_enough(self):
        """0.75 is exactly B's score plus the margin: it must beat it, so Skip(NOT_STRONGER)."""
        d = decide(FULL, signal("DUSDT", 0.75), T0, CFG)
        assert d == Skip(rot.NOT_STRONGER, "0.75 vs BUSDT score 0.6250 + margin 0.125")

    def test_signal_for_a_held_symbol_is_not_a_rotation(self):
        """A confident signal for a symbol already held is Skip(ALREADY_HELD), full or not."""
        assert decide(FULL, signal("BUSDT", 1.0), T0, CFG) == Skip(rot.ALREADY_HELD, "BUSDT")
        assert decide(FULL[:1], signal("AUSDT", 1.0), T0, CFG) == Skip(rot.ALREADY_HELD, "AUSDT")

    def test_recently_exited_symbol_is_cooling_down(self):
        """Exited 299.999 s ago with a 300 s cooldown: Skip(COOLDOWN) even with a free slot; at 300 s: Take."""
        last = {"DUSDT": T0 - 299_999}
        d = decide(FULL[:2], signal("DUSDT", 0.9), T0, CFG, last)
        assert d == Skip(rot.COOLDOWN, f"DUSDT traded at {T0 - 299_999}")
        assert decide(FULL[:2], signal("DUSDT", 0.9), T0 + 1, CFG, last) == Take()

    def test_recently_entered_position_is_not_rotated_out(self):
        """B entered 10 s ago is protected; the weakest eligible (C at 0.6875) goes instead."""
        full = (FULL[0], held("BUSDT", 0.75, mark=90.0, opened_ms=T0 - 10_000), FULL[2])
        assert decide(full, signal("DUSDT", 0.875), T0, CFG) == Rotate("CUSDT", 0.6875)

    def test_every_position_cooling_down_means_no_exit(self):
        """With all three entered within the cooldown, even a perfect signal is Skip(NO_EXIT)."""
        fresh = tuple(held(s, 0.25, opened_ms=T0 - 1_000) for s in ("AUSDT", "BUSDT", "CUSDT"))
        d = decide(fresh, signal("DUSDT", 1.0), T0, CFG)
        assert d == Skip(rot.NO_EXIT, "every held position is cooling down")

    def test_equal_scores_rotate_out_the_oldest(self):
        """A tie on score goes to the position held longest."""
        tie = (held("AUSDT", 0.5, opened_ms=LONG_AGO + 5), held("BUSDT", 0.5, opened_ms=LONG_AGO),
               held("CUSDT", 0.5, opened_ms=LONG_AGO + 9))
        assert decide(tie, signal("DUSDT", 0.75), T0, CFG) == Rotate("BUSDT", 0.5)

    @pytest.mark.parametrize("sym,conf", [("DUSDT", float("nan")), ("DUSDT", 1.5), ("DUSDT", -0.1),
                                          (None, 0.9), ("", 0.9), ("DUSDT", "0.9"), ("DUSDT", True)])
    def test_malformed_signal_is_skipped(self, sym, conf):
        """NaN or out-of-range confidence, or a missing symbol, is Skip(INVALID_SIGNAL)."""
        d = decide(FULL[:1], StubSignal(sym, conf), T0, CFG)
        assert d == Skip(rot.INVALID_SIGNAL, f"symbol {sym!r} confidence {conf!r}")

    def test_more_positions_than_the_limit_still_counts_as_full(self):
        """Four held (after a glitch) is full: a weak signal is not taken."""
        four = (*FULL, held("DUSDT", 0.9))
        d = decide(four, signal("EUSDT", 0.5), T0, CFG)
        assert d == Skip(rot.NOT_STRONGER, "0.5 vs BUSDT score 0.6250 + margin 0.125")

    def test_record_action_returns_a_new_map(self):
        """The caller's map is not mutated."""
        last = {"AUSDT": 1}
        new = rot.record_action(last, "BUSDT", 2)
        assert (last, new) == ({"AUSDT": 1}, {"AUSDT": 1, "BUSDT": 2})

    @pytest.mark.parametrize("kw", [{"cooldown_s": -1.0}, {"replace_margin": float("nan")},
                                    {"max_positions": 0}, {"max_positions": 2.5}])
    def test_impossible_config_is_refused(self, kw):
        """Negative cooldown, NaN margin or a non-integer / zero slot count is a ConfigError."""
        with pytest.raises(ConfigError):
            RotationConfig(**kw)


def simulate(signals, positions, cfg):
    """Feed (time, symbol, confidence) signals through decide, acting on each decision like the shell."""
    book, last, rotations = list(positions), {}, []
    for t, sym, conf in signals:
        d = decide(tuple(book), signal(sym, conf), t, cfg, last)
        if isinstance(d, Rotate):  # exit first ...
            book = [p for p in book if p.symbol != d.exit_symbol]
            last = rot.record_action(last, d.exit_symbol, t)
            rotations.append((t, d.exit_symbol, sym))
        if isinstance(d, (Take, Rotate)):  # ... then enter
            book.append(held(sym, conf, opened_ms=t))
            last = rot.record_action(last, sym, t)
    return rotations, book


class TestNoPingPong:
    BASE = (held("XUSDT", 0.99), held("YUSDT", 0.99), held("WUSDT", 0.1))

    def test_alternating_similar_signals_rotate_once(self):
        """A at 0.80 and B at 0.82 alternating every 10 s for ~2.8 h: W goes once, then A and B never swap."""
        cfg = RotationConfig(replace_margin=0.05, pnl_weight_per_r=0.1, cooldown_s=60.0)
        sigs = [(T0 + 10_000 * i, "AUSDT" if i % 2 == 0 else "BUSDT", 0.80 if i % 2 == 0 else 0.82)
                for i in range(1_000)]
        rotations, book = simulate(sigs, self.BASE, cfg)
        assert rotations == [(T0, "WUSDT", "AUSDT")]
        assert sorted(p.symbol for p in book) == ["AUSDT", "XUSDT", "YUSDT"]

    def test_rising_signals_rotate_at_most_once_per_cooldown_period(self):
        """Margin 0, confidence rising each signal, 10 s apart, 60 s cooldown: a swap every 70 s exactly.

        After a swap both symbols cool down for 60 s; the first signal of the other symbol after that
        comes 70 s after the swap (at 60 s the signal is for the symbol already held)."""
        cfg = RotationConfig(replace_margin=0.0, pnl_weight_per_r=0.1, cooldown_s=60.0)
        sigs = [(T0 + 10_000 * i, "AUSDT" if i % 2 == 0 else "BUSDT", 0.5 + i * 1e-4) for i in range(1_000)]
        rotations, _ = simulate(sigs, self.BASE, cfg)
        assert [t - T0 for t, _, _ in rotations] == [70_000 * k for k in range(143)]
        assert rotations[0] == (T0, "WUSDT", "AUSDT")
        assert rotations[1:4] == [(T0 + 70_000, "AUSDT", "BUSDT"), (T0 + 140_000, "BUSDT", "AUSDT"),
                                  (T0 + 210_000, "AUSDT", "BUSDT")]

    def test_without_cooldown_the_margin_alone_bounds_rotations(self):
        """Cooldown 0, margin 0.05, confidence rising 0.0001 a signal: a swap needs more than 500 signals of gain."""
        cfg = RotationConfig(replace_margin=0.05, pnl_weight_per_r=0.1, cooldown_s=0.0)
        sigs = [(T0 + 10_000 * i, "AUSDT" if i % 2 == 0 else "BUSDT", 0.5 + i * 1e-4) for i in range(1_200)]
        rotations, _ = simulate(sigs, self.BASE, cfg)
        # index 0 replaces W (A enters at 0.5); the next swap needs 0.5 + i*1e-4 > 0.5 + 0.05, i > 500:
        # i = 501 (B, odd); B entered at 0.5501, so the next needs i > 1001: i = 1002 (A, even)
        assert [(t - T0) // 10_000 for t, _, _ in rotations] == [0, 501, 1_002]
