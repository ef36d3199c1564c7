"""aegis replay's pure parts: what it takes from a capture, the decision stream's fixed order
and content, its refusals; and the capture's compact exchangeInfo."""

from __future__ import annotations

import json

import pytest

from common import wire
from common.capture import KIND_WS_RAW, Header, create_capture, open_capture
from common.capture_cli import compact_exchange_info
from services.orchestrator import db
from services.orchestrator import replay_cli as rc

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
    def test_no_exchange_info_is_refused_with_the_fix(self, short_tmp, capsys):
        p = short_tmp / "c.cap"
        write_capture(p, raw_ms=[T0])
        assert rc.main([str(p), "--workdir", str(short_tmp / "w")]) == 2
        assert "--exchange-info FILE" in capsys.readouterr().err

    def test_no_raw_frames_is_refused(self, short_tmp, capsys):
        p = short_tmp / "c.cap"
        write_capture(p, meta={"exchange_info": INFO}, zmq=[env(candle("BTCUSDT", T0))])
        assert rc.main([str(p), "--workdir", str(short_tmp / "w")]) == 2
        assert "no raw WebSocket frames" in capsys.readouterr().err

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
        with pytest.raises(ValueError):
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
