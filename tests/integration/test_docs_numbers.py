"""Numbers in the docs that a deterministic command reproduces are re-computed here.

docs/model.md quotes the confidence model's scores on the bundled year of BTCUSDT 15-minute
candles, with the command that prints them (``python -m services.brain.model_eval``). That
command is deterministic, so the page's table must hold exactly what it prints today.
"""

from __future__ import annotations

import re

from services.brain import model_eval
from tests.conftest import REPO

CANDLES = "services/exchange_sim/data/BTCUSDT_15m_2024.csv"


def test_model_page_matches_model_eval(capsys):
    """docs/model.md's trade count, win share, Brier and log-loss rows equal model_eval's output."""
    assert model_eval.main(["--candles", str(REPO / CANDLES)]) == 0
    out = capsys.readouterr().out
    trades = int(re.search(r"trades: (\d+) closed", out).group(1))
    base = float(re.search(r"base rate \(R > 0\): ([0-9.]+)", out).group(1))
    brier = re.search(r"brier \(all, n=\d+\)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)", out).groups()
    logloss = re.search(r"log_loss \(all, n=\d+\)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)", out).groups()
    weight = float(re.search(r"base_rate\s+([0-9.]+)", out).group(1))
    page = (REPO / "docs/model.md").read_text()
    assert f"--candles {CANDLES}" in page
    assert f"| {trades:,} closed trades, {base * 100:.1f} % winners |" in page
    assert f"| {brier[0]} | {brier[1]} | {brier[2]} |" in page
    assert f"| {logloss[0]} | {logloss[1]} | {logloss[2]} |" in page
    assert f"its weight is {weight:.3f} at the end" in page
