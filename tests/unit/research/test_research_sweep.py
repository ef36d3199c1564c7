"""research.sweep / walkforward / distributed without Ray: the search space syntax, the grid
order, the ranking, seeded Optuna rounds, the walk-forward windows, and an in-process task
that raises being retried and then reported by its name."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from research import distributed as dist
from research import sweep as sw
from research.walkforward import windows

DAY = 86_400_000


def test_space_syntax_values_and_ranges():
    """Values are read as TOML (ints, floats, booleans); a range is integer only when both ends are."""
    space = sw.parse_space(["n=1,2,3", "rr=1.5..3", "k=10..60", "flag=true,false"])
    assert space["n"] == sw.Choices(values=(1, 2, 3))
    assert space["rr"] == sw.Range(low=1.5, high=3, integer=False)
    assert space["k"] == sw.Range(low=10, high=60, integer=True)
    assert space["flag"] == sw.Choices(values=(True, False))


@pytest.mark.parametrize("spec", ["n", "n=", "1n=2", "n=3..1", "n=1,1", "n=a..b"])
def test_bad_space_specs_are_refused(spec):
    """A malformed --grid is a ConfigError, never a silently empty sweep."""
    with pytest.raises(ConfigError):
        sw.parse_space([spec])


def test_grid_is_the_product_in_sorted_name_order_and_refuses_ranges():
    """Names sorted, values in the order given; a range needs --optuna."""
    assert sw.grid(sw.parse_space(["rr=2,1", "n=5,6"])) == [
        {"n": 5, "rr": 2}, {"n": 5, "rr": 1}, {"n": 6, "rr": 2}, {"n": 6, "rr": 1}]
    with pytest.raises(ConfigError, match="needs --optuna"):
        sw.grid(sw.parse_space(["rr=1..2"]))


def test_ranking_puts_unscored_sets_last_and_keeps_the_tried_order_on_ties():
    """Scores 1, None, 3, 1 rank as 3, 1 (first tried), 1, None."""
    ev = [sw.Evaluated(index=i, params={"i": i}, value=v, trades=[], summary={}, results=[])
          for i, v in enumerate([1.0, None, 3.0, 1.0])]
    assert [e.index for e in sw.ranked(ev)] == [2, 0, 3, 1]


def test_objectives_read_the_summary():
    """net reads net_pnl, expectancy_r the expectancy after fees; a missing or non-finite number is no score."""
    assert sw.score({"net_pnl": 5.0}, "net") == 5.0
    assert sw.score({"expectancy_r": 9.0, "expectancy_net_r": -0.25}, "expectancy_r") == -0.25
    assert sw.score({"sharpe": None}, "sharpe") is None
    assert sw.score({"expectancy_net_r": float("nan")}, "expectancy_r") is None


def _rounds(seed: int) -> list[list[dict]]:
    s = sw.OptunaSearch(sw.parse_space(["a=1..50", "b=0.5..2.0", "c=x,y"]), 7, seed=seed, batch=3)
    out = []
    while True:
        sets = s.ask()
        if not sets:
            return out
        out.append(sets)
        s.tell([float(p["a"]) if p["c"] == "x" else None for p in sets])


def test_optuna_rounds_are_reproducible_from_the_seed():
    """7 trials in rounds of 3, 3, 1; the same seed asks the same parameters, another seed not."""
    a = _rounds(11)
    assert [len(r) for r in a] == [3, 3, 1]
    assert a == _rounds(11)
    assert a != _rounds(12)


def test_walkforward_windows_roll_by_the_test_length():
    """10 days, train 4, test 2: windows start on days 0, 2, 4 (day 6 + 6 > 10 is not run)."""
    w = windows(0, 10 * DAY, 4, 2)
    assert [(x.train_from_ms // DAY, x.train_to_ms // DAY, x.test_from_ms // DAY, x.test_to_ms // DAY) for x in w] == [
        (0, 4, 4, 6), (2, 6, 6, 8), (4, 8, 8, 10)]
    assert len(windows(0, 10 * DAY, 4, 2, step_days=3)) == 2
    with pytest.raises(ConfigError, match="do not fit"):
        windows(0, 5 * DAY, 4, 2)


class _T:
    def __init__(self, name: str) -> None:
        self.name = name


def test_in_process_failure_is_retried_then_reported_by_name():
    """A task that always raises is tried 1 + retries times, the others still run, and the
    error names it; a Failure answer (a config error) is reported without retry."""
    calls: dict[str, int] = {}

    def fn(t):
        calls[t.name] = calls.get(t.name, 0) + 1
        if t.name == "boom":
            raise RuntimeError("disk on fire")
        if t.name == "bad-config":
            return dist.Failure(error="swing_length must be >= 1")
        return t.name.upper()

    with pytest.raises(dist.TasksFailed) as e:
        dist.execute([_T("a"), _T("boom"), _T("bad-config"), _T("b")], fn, workers=1, retries=2)
    assert e.value.failures == {"boom": "RuntimeError: disk on fire", "bad-config": "swing_length must be >= 1"}
    assert calls == {"a": 1, "boom": 3, "bad-config": 1, "b": 1}
    assert dist.execute([_T("a"), _T("b")], fn, workers=1) == ["A", "B"]
