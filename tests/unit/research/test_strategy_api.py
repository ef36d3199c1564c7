"""The strategy API: loading by config (short names, module:Class, a file outside the
repository) with clear errors, the runner's checks, the Donchian example's exact decisions,
and the SMC strategy behind the API deciding exactly what it decides called directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import config as config_mod
from common.errors import ConfigError
from research import strategy_api as sa
from research.strategies.donchian import DonchianBreakout
from research.strategies.smc import SmcRetest

USER_STRATEGY = '''
from research.strategy_api import Enter, Strategy


class EveryN(Strategy):
    """Enters long on every n-th candle while flat (stop 0.2% under, target 0.4% over)."""

    name = "every_n"

    def __init__(self, n=10):
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n = n

    def on_candle(self, ctx, candle):
        k = ctx.state["k"] = ctx.state.get("k", 0) + 1
        if ctx.position is None and k % self.n == 0:
            return [Enter(side="BUY", stop=candle.close * 0.998, target=candle.close * 1.004, confidence=0.6)]
        return []
'''


def write_user_strategy(folder: Path) -> Path:
    path = folder / "my_strat.py"
    path.write_text(USER_STRATEGY)
    return path


def candle(i: int, o: float, h: float, low: float, c: float, symbol: str = "TESTUSDT") -> sa.Candle:
    return sa.Candle(symbol=symbol, interval_s=60, open_ms=i * 60_000, close_ms=(i + 1) * 60_000, open=o, high=h,
                     low=low, close=c, volume=1.0)


# ---------------------------------------------------------------------------- loading
def test_short_names_and_module_paths_load_the_builtin_strategies():
    """'smc' and 'donchian' name the built-in classes; a module:Class path loads the same class."""
    assert isinstance(sa.load("smc"), SmcRetest)
    assert isinstance(sa.load(""), SmcRetest)  # the default
    d = sa.load("research.strategies.donchian:DonchianBreakout", {"channel_bars": 5})
    assert isinstance(d, DonchianBreakout) and d.channel_bars == 5 and d.history == 16


def test_a_file_outside_the_repository_loads_with_its_params(tmp_path):
    """A strategy in a file anywhere on disk loads by '/path/file.py:Class' with its parameters."""
    path = write_user_strategy(tmp_path)
    s = sa.load(f"{path}:EveryN", {"n": 3})
    assert type(s).__name__ == "EveryN" and s.n == 3 and s.name == "every_n"


@pytest.mark.parametrize("path,params,message", [
    ("nocolon", {}, "strategy.path must be 'package.module:Class'"),
    ("research.strategies.nothere:X", {}, "cannot import 'research.strategies.nothere'"),
    ("research.strategies.donchian:Nope", {}, "has no 'Nope'"),
    ("common.errors:ConfigError", {}, "is not a subclass of research.strategy_api.Strategy"),
    ("/no/such/dir/x.py:X", {}, "no file /no/such/dir/x.py"),
    ("donchian", {"channel_bars": 0}, "channel_bars must be an int >= 1"),
    ("donchian", {"typo": 1}, "bad parameters {'typo': 1}"),
    ("smc", {"rr": -1.0}, "rr must be a finite number > 0"),
])
def test_bad_paths_and_parameters_are_refused_with_a_clear_error(path, params, message):
    """Every way a strategy setting can be wrong ends in a ConfigError naming the problem."""
    with pytest.raises(ConfigError) as exc:
        sa.load(path, params)
    assert message in str(exc.value)


def test_a_file_that_fails_to_import_is_a_config_error(tmp_path):
    """A user file with an error in it is refused with the error, not a traceback."""
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="failed to import: RuntimeError\\('boom'\\)"):
        sa.load(f"{bad}:X")


def test_the_strategy_section_of_a_toml_config(tmp_path):
    """[strategy] path and [strategy.params] come from the TOML; the SMC one gets the brain's interval."""
    path = write_user_strategy(tmp_path)
    toml = tmp_path / "aegis.toml"
    toml.write_text(f'[strategy]\npath = "{path}:EveryN"\n[strategy.params]\nn = 4\n')
    cfg = config_mod.load(toml, env={})
    assert cfg.strategy.path == f"{path}:EveryN" and cfg.strategy.params == {"n": 4}
    assert sa.load_section(cfg.strategy).n == 4
    smc = sa.load_section(config_mod.StrategySection(), base_interval_s=300)
    assert smc.config.base_interval_s == 300
    with pytest.raises(ConfigError, match="strategy.params must be a table"):
        config_mod.from_dict({"strategy": {"params": 3}})


def test_parse_params_reads_toml_values():
    """--params name=value,... gives numbers, booleans and strings as TOML reads them."""
    assert sa.parse_params("n=20, rr=2.5,stop=atr,flag=true") == {"n": 20, "rr": 2.5, "stop": "atr", "flag": True}
    with pytest.raises(ConfigError, match="name=value"):
        sa.parse_params("oops")


# ---------------------------------------------------------------------------- the runner
class Raises(sa.Strategy):
    def on_candle(self, ctx, candle):
        raise RuntimeError("bug")


class Wrong(sa.Strategy):
    def on_candle(self, ctx, candle):
        return [sa.Enter(side="BUY", stop=candle.close + 1, target=candle.close + 2)]


def test_a_failing_callback_and_a_wrong_intent_are_counted_not_fatal():
    """A callback that raises gives no intents and one callback_error; a stop on the wrong
    side gives no signal and one bad_intent."""
    r = sa.StrategyRunner(Raises())
    assert r.on_candle(candle(0, 10, 11, 9, 10)) == []
    assert r.stats()["callback_error"] == 1
    w = sa.StrategyRunner(Wrong())
    c = candle(0, 10, 11, 9, 10)
    (intent,) = w.on_candle(c)
    assert w.signal(c, intent) is None and w.stats()["bad_intent"] == 1


def test_enter_becomes_the_signal_the_trader_takes():
    """Enter -> SignalGenerated with the deterministic id symbol-open_ms-side, entry at the close."""
    r = sa.StrategyRunner(DonchianBreakout())
    c = candle(7, 10, 11, 9, 10.5)
    sig = r.signal(c, sa.Enter(side="SELL", stop=11.0, target=9.0, confidence=0.7, features={"a": 1}))
    assert (sig.signal_id, sig.entry, sig.stop, sig.target, sig.confidence, sig.strategy, sig.features) == (
        "TESTUSDT-420000-SELL", 10.5, 11.0, 9.0, 0.7, "donchian_breakout", {"a": 1.0})


def test_the_window_holds_the_last_history_candles():
    """ctx.candles is the symbol's last ``history`` candles, oldest first, the current one last."""
    seen = []

    class Spy(sa.Strategy):
        history = 3

        def on_candle(self, ctx, candle):
            seen.append([c.open_ms // 60_000 for c in ctx.candles])
            return []

    r = sa.StrategyRunner(Spy())
    for i in range(5):
        r.on_candle(candle(i, 10, 11, 9, 10))
    assert seen == [[0], [0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]]


# ---------------------------------------------------------------------------- Donchian
def run(strategy, bars, position=None):
    r = sa.StrategyRunner(strategy)
    out = []
    for i, (o, h, low, c) in enumerate(bars):
        for it in r.on_candle(candle(i, o, h, low, c), position=position):
            out.append((i, r.signal(candle(i, o, h, low, c), it)))
    return out


FLAT = [(100, 102, 98, 100)] * 3


def test_donchian_breaks_out_long_with_the_channel_stop():
    """A close above the last 3 highs enters long; stop at the channel low, target 2 R."""
    out = run(DonchianBreakout(channel_bars=3), FLAT + [(100, 104, 99, 103)])
    ((i, sig),) = out
    assert (i, sig.side, sig.entry, sig.stop, sig.target) == (3, "BUY", 103.0, 98.0, 113.0)


def test_donchian_breaks_out_short_with_an_atr_stop():
    """A close below the channel enters short; stop 2 ATR above (ATR = mean true range of 3 bars)."""
    bars = FLAT + [(100, 100, 95, 96)]  # true ranges 4, 4, 5 -> ATR 13/3
    ((i, sig),) = run(DonchianBreakout(channel_bars=3, stop="atr", atr_bars=3, rr=1.5), bars)
    atr = 13 / 3
    assert (i, sig.side, sig.stop) == (3, "SELL", 96 + 2 * atr)
    assert sig.target == 96 - 1.5 * (2 * atr)


def test_donchian_waits_for_the_channel_and_stays_out_while_in_a_position():
    """No entry before channel_bars candles, none inside the channel, none while a position is held."""
    assert run(DonchianBreakout(channel_bars=3), [(100, 104, 99, 103)] * 3) == []
    assert run(DonchianBreakout(channel_bars=3), FLAT + [(100, 101, 99, 101)]) == []
    held = sa.PositionView(side="BUY", qty=1.0, entry_price=100.0, stop=98.0, target=104.0, opened_ms=0)
    assert run(DonchianBreakout(channel_bars=3), FLAT + [(100, 104, 99, 103)], position=held) == []


def test_donchian_cooldown():
    """cooldown_bars after an entry, no other one: the breakout 2 bars later is skipped, 4 later taken."""
    up = [(100, 102, 98, 100)] * 3 + [(100, 104, 99, 103), (103, 103, 102, 102.5), (102, 106, 102, 105),
                                      (105, 105, 104, 104.5), (104, 109, 104, 108)]
    assert [i for i, _ in run(DonchianBreakout(channel_bars=3, cooldown_bars=3), up)] == [3, 7]
    assert [i for i, _ in run(DonchianBreakout(channel_bars=3), up)] == [3, 5, 7]


# ---------------------------------------------------------------------------- SMC behind the API
def test_smc_behind_the_api_decides_exactly_what_it_decides_directly():
    """The first 20,000 real BTCUSDT 1m candles: the runner's signals equal the strategy's own,
    field by field (what keeps the golden replay byte-identical)."""
    from services.brain import strategy
    from services.brain.model import ModelConfig, new_state
    from services.brain.smc_cli import read_candles
    from tests.conftest import BTC_1M_CSV

    cols = read_candles(BTC_1M_CSV)
    model = new_state(ModelConfig())
    st = strategy.new_symbol_state(strategy.StrategyConfig())
    r = sa.StrategyRunner(sa.load("smc"))
    direct, api = [], []
    for k in range(20_000):
        t = cols["time_ms"][k]
        c = sa.Candle(symbol="BTCUSDT", interval_s=60, open_ms=t, close_ms=t + 60_000, open=cols["open"][k],
                      high=cols["high"][k], low=cols["low"][k], close=cols["close"][k], volume=cols["volume"][k])
        direct += strategy.on_candle(st, c, 60, model)[1]
        api += [r.signal(c, it) for it in r.on_candle(c, model=model)]
    assert len(direct) == 1_087 and api == direct


def test_the_strategy_section_survives_the_stack_config_file(tmp_path):
    """aegis run and aegis replay hand every service the config as JSON: the strategy path and
    its params come back unchanged (what lets a user's strategy run in paper and replay)."""
    import json

    cfg = config_mod.from_dict({"strategy": {"path": "/x/y.py:Z", "params": {"n": 3, "stop": "atr"}}})
    back = config_mod.from_dict(json.loads(json.dumps(config_mod.to_dict(cfg))))
    assert back.strategy == cfg.strategy
    assert config_mod.replace(cfg, mode="replay", replay={"file": "f"}).strategy == cfg.strategy


def test_the_fast_candle_and_context_makers_build_the_same_frozen_records():
    """make_candle / the runner's context maker: equal (and equally hashed, still frozen) to the
    dataclass built the ordinary way; a class they cannot build exactly is refused."""
    import dataclasses

    a = sa.make_candle("TESTUSDT", 60, 0, 60_000, 1.0, 2.0, 0.5, 1.5, 3.0)
    b = candle(0, 1.0, 2.0, 0.5, 1.5)
    b = dataclasses.replace(b, volume=3.0)
    assert a == b and hash(a) == hash(b) and repr(a) == repr(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.close = 2.0  # type: ignore[misc]
    ctx = sa._make_context(5, "X", (), None, {}, None, (), None)
    assert ctx == sa.Context(now_ms=5, symbol="X", candles=(), position=None, state={})

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="without __post_init__"):
        sa._maker(Checked)


def test_the_makers_records_are_of_the_real_class_and_copy_like_it():
    """The maker fills a slotted twin and then sets the real class: the record is a ``Candle``
    (not the twin), ``dataclasses.replace`` and pickling give equal ``Candle`` records."""
    import dataclasses
    import pickle

    a = sa.make_candle("TESTUSDT", 60, 0, 60_000, 1.0, 2.0, 0.5, 1.5, 3.0)
    assert type(a) is sa.Candle and isinstance(a, sa.Candle)
    b = dataclasses.replace(a, close=1.75)
    assert type(b) is sa.Candle and b.close == 1.75 and b.open == 1.0
    assert pickle.loads(pickle.dumps(a)) == a
    ctx = sa._make_context(5, "X", (), None, {}, None, (), None)
    assert type(ctx) is sa.Context and dataclasses.astuple(ctx) == (5, "X", (), None, {}, None, (), None)


def test_a_reused_context_carries_each_candles_clock_position_and_model():
    """With ``reuse_context`` the strategy gets one Context object whose clock, position and
    model are those of the current call, also when they go back to None (the slots are written
    only when they change)."""
    seen = []

    class Looks(sa.Strategy):
        name = "looks"
        reads_model = True

        def on_candle(self, ctx, candle) -> list:
            seen.append((id(ctx), ctx.now_ms, ctx.position, ctx.model))
            return []

    pos = sa.PositionView(side="BUY", qty=1.0, entry_price=100.0, stop=90.0, target=120.0, opened_ms=0)
    runner = sa.StrategyRunner(Looks(), reuse_context=True)
    calls = [(None, None), (pos, "m1"), (pos, "m1"), (None, "m2"), (None, None)]
    for i, (p, m) in enumerate(calls):
        runner.on_candle(candle(i, 1.0, 2.0, 0.5, 1.5), position=p, model=m)
    assert len({s[0] for s in seen}) == 1
    assert [s[1:] for s in seen] == [((i + 1) * 60_000, p, m) for i, (p, m) in enumerate(calls)]


def test_the_candle_step_is_on_candle_on_the_same_reused_context():
    """``candle_step`` (the fast backtest's per-bar call) and ``on_candle`` share one symbol's
    window and context: each call's clock, position and model (None for a strategy that never
    reads it), the same intents as a new list, ``()`` for none; a callback that raises or
    returns something not a list is counted as ``on_candle`` counts it."""
    seen = []

    class Looks(sa.Strategy):
        name = "looks"
        reads_model = False
        history = 3

        def on_candle(self, ctx, candle) -> list:
            seen.append((id(ctx), ctx.now_ms, ctx.position, ctx.model, len(ctx.candles)))
            if candle.close == 7.0:
                raise RuntimeError("boom")
            if candle.close == 8.0:
                return "not a list"
            return [sa.Exit()] if candle.close == 2.0 else []

    pos = sa.PositionView(side="BUY", qty=1.0, entry_price=100.0, stop=90.0, target=120.0, opened_ms=0)
    runner = sa.StrategyRunner(Looks(), reuse_context=True)
    step = runner.candle_step("TESTUSDT")
    assert step(candle(0, 1.0, 2.0, 0.5, 1.5), None, "m") == ()
    assert runner.on_candle(candle(1, 1.0, 2.0, 0.5, 1.5), position=pos, model="m") == []
    out = step(candle(2, 1.0, 2.0, 0.5, 2.0), pos, "m")
    assert out == [sa.Exit()] and type(out) is list
    assert step(candle(3, 1.0, 2.0, 0.5, 1.5), None, None) == ()
    assert len({s[0] for s in seen}) == 1
    assert [s[1:] for s in seen] == [(60_000, None, None, 1), (120_000, pos, None, 2), (180_000, pos, None, 3),
                                     (240_000, None, None, 3)]
    assert step(candle(4, 7.0, 7.0, 7.0, 7.0), None, None) == ()
    assert step(candle(5, 8.0, 8.0, 8.0, 8.0), None, None) == ()
    assert (runner.stats()["callback_error"], runner.stats()["bad_intent"]) == (1, 1)


def test_on_timer_runs_only_when_the_strategy_overrides_it():
    """A strategy without its own on_timer gets [] (the base's answer) and its symbol state;
    one that overrides it is called with the context's clock and symbol."""

    class Quiet(sa.Strategy):
        pass

    class Ticking(sa.Strategy):
        def on_timer(self, ctx, now_ms):
            return [sa.Exit(reason=f"{ctx.symbol}@{now_ms}")]

    quiet = sa.StrategyRunner(Quiet())
    assert quiet.on_timer("BTCUSDT", 60_000) == [] and list(quiet.symbols) == ["BTCUSDT"]
    got = sa.StrategyRunner(Ticking()).on_timer("ETHUSDT", 120_000)
    assert got == [sa.Exit(reason="ETHUSDT@120000")]


def test_candle_from_is_the_keyword_candle():
    """candle_from (positional maker) builds the Candle the keyword constructor builds."""
    from common import wire

    c = wire.CandleClosed(symbol="BTCUSDT", interval_s=60, open_ms=0, close_ms=59_999, open=1.5, high=2.0,
                          low=1.0, close=1.75, volume=3.0)
    want = sa.Candle(symbol="BTCUSDT", interval_s=60, open_ms=0, close_ms=59_999, open=1.5, high=2.0, low=1.0,
                     close=1.75, volume=3.0)
    got = sa.candle_from(c)
    assert got == want and hash(got) == hash(want) and type(got) is sa.Candle
