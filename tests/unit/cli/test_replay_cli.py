"""aegis replay's pure parts: what it takes from a capture, the decision stream's fixed order
and content, its refusals; and the capture's compact exchangeInfo."""

from __future__ import annotations

import json

import pytest

from common import wire
from common.errors import DecodeError
from common.capture_file import KIND_WS_RAW, Header, create_capture, open_capture
from cli.capture import compact_exchange_info, exchange_info_from_rules
from services.orchestrator import db
from cli import replay as rc

T0 = 1_733_011_200_000
INFO = {"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "filters": []}]}


def env(body, publisher: str = "feed:1-2", seq: int = 1, event_ns: int = T0 * 1_000_000) -> wire.Envelope:
    return wire.Envelope(wire.SCHEMA_VERSION, publisher, seq, event_ns, event_ns, body)


def candle(symbol: str, close_ms: int) -> wire.CandleClosed:
    return wire.CandleClosed(symbol=symbol, interval_s=60, open_ms=close_ms - 59_999, close_ms=close_ms,
                             open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0)


def write_capture(path, *, meta=None, raw_ms=(), zmq=()):
    with create_capture(path, Header(start_ns=T0 * 1_000_000, meta=meta or {})) as w:
        events = [(ms * 1_000_000, KIND_WS_RAW, (b'{"s":"BTCUSDT"}',)) for ms in raw_ms]
        events += [(e.event_ns, 1, tuple(wire.encode(e))) for e in zmq]
        for ns, kind, frames in sorted(events, key=lambda x: x[0]):
            w.append(ns, frames, kind)


class TestPlan:
    def test_hydration_is_the_feeds_candles_only_and_sets_the_warm_window(self, short_tmp):
        p = short_tmp / "c.cap"
        feed_candles = [env(candle(s, T0 - k * 60_000), seq=i, event_ns=(T0 - 100_000) * 1_000_000)
                        for i, (s, k) in enumerate([("BTCUSDT", 2), ("BTCUSDT", 1), ("ETHUSDT", 1)], 1)]
        brain_candle = env(candle("BTCUSDT", T0 + 60_000), publisher="brain:3-4", event_ns=(T0 + 60_000) * 1_000_000)
        write_capture(p, meta={"exchange_info": INFO}, raw_ms=[T0 + 10, T0 + 20, T0 + 30_000],
                      zmq=feed_candles + [brain_candle])
        with open_capture(p) as cap:
            plan = rc.plan_replay(cap)
            ranged = rc.plan_replay(cap, (T0 + 15) * 1_000_000, (T0 + 30_000) * 1_000_000)
        assert [e.body for e in plan.hydration] == [e.body for e in feed_candles]
        assert plan.warm_to_ms == T0 - 60_000 and plan.history_candles == 2
        assert plan.frames == 3 and plan.first_ns == (T0 + 10) * 1_000_000 and plan.exchange_info == INFO
        assert ranged.frames == 1 and ranged.first_ns == (T0 + 20) * 1_000_000
        assert plan.damage == ""

    def test_the_feeds_symbol_rules_are_kept_the_last_of_each_symbol(self, short_tmp):
        """SYMBOL_INFO messages of the feed (published at its start and every minute) are the
        rules a capture without an exchangeInfo header replays with: the last one per symbol,
        sorted by symbol; another publisher's are not the feed's rules."""
        p = short_tmp / "c.cap"
        old = wire.SymbolInfo(symbol="ETHUSDT", tick_size=0.1, step_size=0.01)
        new = wire.SymbolInfo(symbol="ETHUSDT", tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=5.0)
        btc = wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001)
        other = wire.SymbolInfo(symbol="XRPUSDT", tick_size=0.0001, step_size=0.1)
        write_capture(p, raw_ms=[T0 + 10, T0 + 20], zmq=[
            env(old, seq=1, event_ns=(T0 + 1) * 1_000_000), env(btc, seq=2, event_ns=(T0 + 2) * 1_000_000),
            env(new, seq=3, event_ns=(T0 + 3) * 1_000_000),
            env(other, publisher="brain:3-4", event_ns=(T0 + 4) * 1_000_000)])
        with open_capture(p) as cap:
            plan = rc.plan_replay(cap, (T0 + 15) * 1_000_000)
        assert plan.rules == (btc, new)
        assert plan.exchange_info is None and (plan.frames, plan.raw_in_file) == (1, 2)

    def test_a_damaged_tail_is_reported_not_raised(self, short_tmp):
        p = short_tmp / "c.cap"
        write_capture(p, raw_ms=range(T0, T0 + 50))
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - 40])  # the footer and part of the index gone
        with open_capture(p) as cap:
            plan = rc.plan_replay(cap)
        assert "capture damaged" in plan.damage and plan.frames == 50


def _db(tmp):
    conn = db.connect(tmp / "a.sqlite3")
    rows = []
    sig = lambda sid, t: env(wire.SignalGenerated(signal_id=sid, symbol="BTCUSDT", side="BUY", entry=1.0, stop=0.5,  # noqa: E731
                                                  target=2.0, confidence=0.5, features={"b": 1.0, "a": 2.0}),
                             publisher="brain:1-1", event_ns=t)
    for e in (sig("S2", 20), sig("S1", 10), sig("S0", 20),
              env(wire.OrderRequest(client_order_id="c1", symbol="BTCUSDT", side="BUY", order_type="MARKET", qty=1.0,
                                    signal_id="S1"), publisher="brain:1-1", event_ns=11),
              env(wire.Fill(client_order_id="c1", exchange_order_id="1", trade_id="1", symbol="BTCUSDT", side="BUY",
                            qty=1.0, price=1.0), publisher="brain:1-1", event_ns=12),
              env(wire.RiskReject(symbol="BTCUSDT", reason="MAX_POSITIONS", signal_id="S2"),
                  publisher="brain:999-123456", seq=7, event_ns=20)):
        rows += db.rows_for(e)
    db.write_batch(conn, rows)
    return conn


class TestDecisions:
    def test_fixed_order_and_no_process_identity(self, short_tmp):
        conn = _db(short_tmp)
        items = rc.decisions(conn)
        conn.close()
        assert [(d["type"], d.get("signal_id")) for d in items] == [
            ("signal", "S1"), ("signal", "S0"), ("signal", "S2"), ("order", "S1"), ("fill", None),
            ("risk_reject", "S2")]
        assert items[0]["features"] == {"a": 2.0, "b": 1.0}
        assert "publisher" not in items[-1] and items[-1]["seq"] == 7
        text = rc.decision_lines(items)
        first = text.splitlines()[0]
        assert first == json.dumps(items[0], sort_keys=True, separators=(",", ":"))
        assert "999-123456" not in text

    def test_progress_of_newest_stats(self):
        assert rc.progress_of([]) == {}
        assert rc.progress_of([{"replay": {"frames": 1}}, {"replay": {"frames": 2}}]) == {"frames": 2}


class TestRefusals:
    def test_no_symbol_rules_at_all_is_refused_with_the_fix(self, short_tmp, capsys):
        """Raw frames but neither an exchangeInfo header nor the feed's symbol messages: exit 2,
        and the message names --exchange-info."""
        p = short_tmp / "c.cap"
        write_capture(p, raw_ms=[T0])
        assert rc.main([str(p), "--workdir", str(short_tmp / "w")]) == 2
        err = capsys.readouterr().err
        assert "carries no symbol rules" in err and "--exchange-info FILE" in err

    def test_no_raw_frames_is_refused_saying_what_the_file_is_for(self, short_tmp, capsys):
        """A capture of events only (aegis capture --no-raw): exit 2 before anything starts,
        saying it cannot be replayed and which commands read it instead (not a complaint about
        exchangeInfo, which it may lack too)."""
        p = short_tmp / "c.cap"
        write_capture(p, zmq=[env(candle("BTCUSDT", T0))])
        assert rc.main([str(p), "--workdir", str(short_tmp / "w")]) == 2
        err = capsys.readouterr().err
        assert f"aegis replay: {p} holds no raw WebSocket frames" in err
        assert f"aegis capture-info {p}" in err and f"aegis replay {p} --pub ENDPOINT" in err
        assert "exchangeInfo" not in err
        assert not (short_tmp / "w").exists()

    def test_raw_frames_outside_the_range_are_named(self, short_tmp, capsys):
        """Raw frames, none between --from and --to: the message says the file has them."""
        p = short_tmp / "c.cap"
        write_capture(p, meta={"exchange_info": INFO}, raw_ms=[T0, T0 + 1])
        assert rc.main([str(p), "--from", str(T0 + 5), "--workdir", str(short_tmp / "w")]) == 2
        assert f"{p} holds 2 raw WebSocket frames, none between --from and --to" in capsys.readouterr().err

    def test_unreadable_file_and_bad_options(self, short_tmp, capsys):
        assert rc.main([str(short_tmp / "missing.cap")]) == 2
        (short_tmp / "junk.cap").write_bytes(b"not a capture at all")
        assert rc.main([str(short_tmp / "junk.cap")]) == 2
        assert rc.main([str(short_tmp / "junk.cap"), "--speed", "0"]) == 2
        assert rc.main([str(short_tmp / "junk.cap"), "--from", "5", "--to", "5"]) == 2
        err = capsys.readouterr().err
        assert "cannot read" in err and "--speed must be > 0" in err and "--to must be after --from" in err

    def test_clear_workdir_removes_only_its_own_files(self, short_tmp):
        w = short_tmp / "w"
        (w / "data").mkdir(parents=True)
        (w / "decisions.jsonl").write_text("old")
        (w / "mine.txt").write_text("keep")
        rc.clear_workdir(w)
        assert sorted(x.name for x in w.iterdir()) == ["mine.txt"]


class TestExchangeInfoFromRules:
    def test_gives_the_paper_broker_the_same_filters_as_the_rules_themselves(self):
        """An exchangeInfo body made of the feed's rules yields exactly the filters the brain's
        own fallback builds from those rules (decimal strings without exponents: 1e-05 -> 0.00001)."""
        from venue import filters

        rules = [wire.SymbolInfo(symbol="ETHUSDT", tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=20.0),
                 wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.00001, min_qty=0.00001,
                                 min_notional=5.0, price_precision=2, quantity_precision=5)]
        body = exchange_info_from_rules(rules)
        assert [e["symbol"] for e in body["symbols"]] == ["BTCUSDT", "ETHUSDT"]
        assert body["symbols"][0]["filters"][1] == {"filterType": "LOT_SIZE", "stepSize": "0.00001",
                                                    "minQty": "0.00001"}
        assert filters.filters_from_exchange_info(body) == {r.symbol: filters.filters_from_symbol_info(r)
                                                            for r in rules}

    def test_a_capture_header_falls_back_to_the_stacks_rules_when_the_exchange_is_silent(self, short_tmp):
        """aegis capture of a stack whose exchange does not answer: the header's exchangeInfo is
        made of the rules the stack's feed published (its database), said so, with the error."""
        from cli import capture as capture_cli
        from common import config

        rd, data = short_tmp / "run", short_tmp / "data"
        rd.mkdir()
        cfg = config.replace(config.load(None, {}), run_dir=str(rd), data_dir=str(data),
                             feed={"rest_url": "http://127.0.0.1:9"})  # discard port: refused at once
        (rd / "config.json").write_text(json.dumps(config.to_dict(cfg)))
        rules = [wire.SymbolInfo(symbol="BTCUSDT", tick_size=0.1, step_size=0.001),
                 wire.SymbolInfo(symbol="ETHUSDT", tick_size=0.01, step_size=0.001)]
        conn = db.connect(data / cfg.orchestrator.db_file)
        db.write_batch(conn, [row for r in rules for row in db.rows_for(env(r))])
        conn.close()
        meta = capture_cli.header_exchange_info(rd, ("ETHUSDT",), timeout_s=2.0)
        assert meta["exchange_info"] == exchange_info_from_rules(rules[1:])
        assert meta["exchange_info_source"] == "feed symbol rules"
        assert "Connection refused" in meta["exchange_info_error"]
        assert capture_cli.header_exchange_info(short_tmp / "nothing", ()) == {
            "exchange_info_error": f"ConfigError('no stack config in {short_tmp / 'nothing'}')"}


class TestCompactExchangeInfo:
    BODY = {"timezone": "UTC", "symbols": [
        {"symbol": "BTCUSDT", "status": "TRADING", "filters": [{"filterType": "PRICE_FILTER"}], "orderTypes": ["LIMIT"],
         "underlyingSubType": ["DERIVED-DEMO"]},
        {"symbol": "OLDUSDT", "status": "SETTLING", "filters": []},
        "junk"]}

    def test_keeps_filters_and_labels_of_trading_or_chosen_symbols(self):
        out = compact_exchange_info(self.BODY)
        assert out == {"symbols": [{"symbol": "BTCUSDT", "status": "TRADING",
                                    "filters": [{"filterType": "PRICE_FILTER"}],
                                    "underlyingSubType": ["DERIVED-DEMO"]}]}
        assert [e["symbol"] for e in compact_exchange_info(self.BODY, ["OLDUSDT"])["symbols"]] == ["OLDUSDT"]

    @pytest.mark.parametrize("bad", [None, [], {"symbols": "x"}, {"other": 1}])
    def test_not_an_exchange_info_raises(self, bad):
        """A body without a symbols list is a DecodeError (bad_exchange_info)."""
        with pytest.raises(DecodeError, match="not an exchangeInfo body"):
            compact_exchange_info(bad)


class TestPublish:
    def test_publishes_frames_in_order_paced_by_receive_time(self, short_tmp):
        p = short_tmp / "c.cap"
        sig = env(wire.SignalGenerated(signal_id="S", symbol="BTCUSDT", side="BUY", entry=1.0, stop=0.5,
                                       target=2.0, confidence=0.5), event_ns=(T0 + 1000) * 1_000_000)
        write_capture(p, raw_ms=[T0, T0 + 2000], zmq=[sig])
        now = [100.0]
        sent, slept = [], []

        def sleep(s):
            slept.append(round(s, 6))
            now[0] += s

        with open_capture(p) as cap:
            counts, damage = rc.publish_capture(cap, sent.append, speed=2.0, from_ns=None, to_ns=None,
                                                prefixes=(), sleep=sleep, clock=lambda: now[0])
        assert damage == ""
        assert [f[0] for f in sent] == [wire.RAW_WS_TOPIC, b"signal.BTCUSDT", wire.RAW_WS_TOPIC]
        assert sent[1] == tuple(wire.encode(sig)) and sent[0][1] == b'{"s":"BTCUSDT"}'
        assert slept == [0.5, 0.5]  # 1 s and 2 s of capture time at twice the pace
        assert counts == {"raw.ws": 2, "signal.BTCUSDT": 1}

    def test_topic_filter_and_max_speed(self, short_tmp):
        p = short_tmp / "c.cap"
        write_capture(p, raw_ms=[T0, T0 + 5000], zmq=[env(candle("BTCUSDT", T0 + 10))])
        sent = []
        with open_capture(p) as cap:
            counts, _ = rc.publish_capture(cap, sent.append, speed=0.0, from_ns=None, to_ns=None,
                                           prefixes=(b"candle.",), sleep=lambda s: pytest.fail("slept"))
        assert [f[0] for f in sent] == [b"candle.BTCUSDT"] and counts == {"candle.BTCUSDT": 1}


def test_model_scores_are_prequential_against_the_running_base_rate():
    trades = [  # opened, closed, confidence, R
        {"trade_id": "a", "opened_ms": 0, "closed_ms": 10, "confidence": 0.5, "outcome_r": 2.0},
        {"trade_id": "b", "opened_ms": 5, "closed_ms": 30, "confidence": 0.8, "outcome_r": -1.0},
        {"trade_id": "c", "opened_ms": 20, "closed_ms": 40, "confidence": 0.6, "outcome_r": 1.0},
    ]
    s = rc.model_scores(trades)
    # base rate with the Beta(2, 2) prior: a and b open before anything closed -> 0.5;
    # c opens after a (a win) closed -> (1 + 2) / (1 + 4) = 0.6
    assert s["n"] == 3 and s["wins"] == 2
    assert s["brier"]["model"] == pytest.approx(((0.5 - 1) ** 2 + 0.8 ** 2 + (0.6 - 1) ** 2) / 3)
    assert s["brier"]["base_rate"] == pytest.approx(((0.5 - 1) ** 2 + 0.5 ** 2 + (0.6 - 1) ** 2) / 3)
    assert s["brier"]["constant"] == pytest.approx(0.25)
    assert rc.model_scores([])["n"] == 0
