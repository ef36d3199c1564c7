"""The user stream client's pure parts (backoff, timers, listenKey answers, redaction) and its
frame handling without a socket (``on_frame``, the bounded queue, the counters)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from common.errors import ConfigError
from venue.binance import user_stream as us
from venue.binance import user_stream_client as usc
from venue.binance import user_updates as uu
from venue.binance import user_data_url
from tests.unit.venue.binance.test_user_stream_decoder import ACCOUNT_UPDATE, ALGO_UPDATE, ORDER_TRADE_UPDATE

KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"  # Binance's documented example
CFG = usc.UserStreamConfig(rest_url="http://127.0.0.1:1", ws_url="ws://127.0.0.1:1")


def client(**kw) -> usc.UserStreamClient:
    c = CFG if not kw else usc.UserStreamConfig(rest_url=CFG.rest_url, ws_url=CFG.ws_url, **kw)
    return usc.UserStreamClient(c, api_key="the-api-key")


class TestBackoff:
    def test_doubles_from_one_second_and_stops_at_the_cap(self):
        """0 right after a stable connection, then 1, 2, 4, 8, 16, 30, 30 s."""
        assert [usc.backoff_s(a) for a in range(8)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]

    def test_a_huge_attempt_count_stays_at_the_cap(self):
        """No overflow however many attempts failed."""
        assert usc.backoff_s(10_000, max_s=60.0) == 60.0

    @pytest.mark.parametrize("reason", [usc.ROLLOVER, usc.EXPIRED, usc.KEY_LOST])
    def test_an_end_by_choice_or_by_the_key_reconnects_at_once(self, reason):
        """The connection was fine: no reason to wait, whatever its age."""
        assert usc.next_attempt(reason, lived_s=0.1, attempt=3, stable_s=5.0) == 0

    def test_a_connection_that_died_young_backs_off_further(self):
        """A server that accepts and drops at once is not hammered."""
        assert usc.next_attempt(usc.ABORTED, lived_s=0.1, attempt=2, stable_s=5.0) == 3

    def test_a_connection_that_lived_long_enough_reconnects_at_once(self):
        """After stable_s of life, a drop reconnects without waiting."""
        assert usc.next_attempt(usc.CLOSED, lived_s=5.0, attempt=4, stable_s=5.0) == 0


class TestTimers:
    def test_the_watchdog_pings_after_the_silence(self):
        """Last frame at 100 s, silence 60 s, now 130 s: ping in 30 s."""
        assert usc.next_timer(now_s=130.0, last_frame_s=100.0, connected_s=0.0, silence_s=60.0,
                              max_connection_s=86_000.0) == (usc.SILENT, 30.0)

    def test_the_rollover_comes_first_when_it_is_nearer(self):
        """Ten seconds before the planned replacement: the rollover is next."""
        assert usc.next_timer(now_s=85_990.0, last_frame_s=85_980.0, connected_s=0.0, silence_s=60.0,
                              max_connection_s=86_000.0) == (usc.ROLLOVER, 10.0)

    def test_an_overdue_timer_is_due_now(self):
        """A timer in the past is due now, never negative."""
        assert usc.next_timer(now_s=500.0, last_frame_s=100.0, connected_s=0.0, silence_s=60.0,
                              max_connection_s=86_000.0) == (usc.SILENT, 0.0)

    def test_the_keepalive_waits_the_period_or_the_retry_after_a_failure(self):
        """30 min normally, the retry delay after a failed keepalive."""
        assert usc.keepalive_delay_s(failed=False, keepalive_s=1800.0, retry_s=60.0) == 1800.0
        assert usc.keepalive_delay_s(failed=True, keepalive_s=1800.0, retry_s=60.0) == 60.0

    def test_the_defaults_are_binances_30_minute_keepalive_and_24_hour_limit(self):
        """Keepalive every 30 min, replacement 10 min before the 24 h cut, 1 s first backoff."""
        assert (CFG.keepalive_s, CFG.max_connection_s, CFG.initial_backoff_s) == (1800.0, 85_800.0, 1.0)


class TestListenKeyAnswers:
    @pytest.mark.parametrize("status, body, expected", [
        (200, orjson.dumps({"listenKey": KEY}), (usc.OK, KEY)),
        (200, b"{}", (usc.OK, "")),  # an old-style keepalive answer
        (200, orjson.dumps({"listenKey": "../../etc"}), (usc.RETRY, "")),  # goes into a URL path: refused
        (200, orjson.dumps({"listenKey": ""}), (usc.RETRY, "")),
        (200, b"not json", (usc.RETRY, "")),
        (400, orjson.dumps({"code": -1125, "msg": "This listenKey does not exist."}), (usc.KEY_LOST, "")),
        (401, orjson.dumps({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}), (usc.AUTH, "")),
        (400, orjson.dumps({"code": -2014, "msg": "API-key format invalid."}), (usc.AUTH, "")),
        (429, orjson.dumps({"code": -1003, "msg": "Too many requests."}), (usc.RETRY, "")),
        (503, b"<html>", (usc.RETRY, "")),
    ])
    def test_each_answer_means_one_thing(self, status, body, expected):
        """Each listenKey answer maps to exactly one verdict."""
        assert usc.listen_key_answer(status, body) == expected


class TestSecrecy:
    def test_only_the_last_four_characters_of_a_key_are_shown(self):
        """A listenKey is a credential: logs carry its tail only."""
        assert usc.key_tail(KEY) == "...65a1" and usc.key_tail("") == ""

    def test_a_key_in_an_error_text_is_replaced_by_its_tail(self):
        """An error quoting the URL is scrubbed before it is logged."""
        text = f"cannot connect to ws://h/private/ws/{KEY}: refused"
        assert usc.scrub(text, KEY) == "cannot connect to ws://h/private/ws/...65a1: refused"

    def test_neither_the_listen_key_nor_the_api_key_is_in_the_repr(self):
        """The client's repr shows URLs and state, no credential."""
        c = client()
        c._key = KEY
        assert KEY not in repr(c) and "the-api-key" not in repr(c) and "65a1" not in repr(c)

    def test_the_private_url_puts_the_key_in_the_path(self):
        """Binance's /private/ws/<listenKey> on production and testnet hosts."""
        assert user_data_url("wss://fstream.binance.com", "k1") == "wss://fstream.binance.com/private/ws/k1"
        assert user_data_url("wss://fstream.binancefuture.com/", "k1") == \
            "wss://fstream.binancefuture.com/private/ws/k1"


class TestConfig:
    @pytest.mark.parametrize("kw", [{"keepalive_s": 0}, {"silence_s": -1}, {"queue_max": 0},
                                    {"rest_url": "ftp://x"}, {"ws_url": "http://x"}])
    def test_a_bad_setting_is_refused(self, kw):
        """Non-positive timers, an empty queue, wrong URL schemes: ConfigError."""
        base = {"rest_url": CFG.rest_url, "ws_url": CFG.ws_url, **kw}
        with pytest.raises(ConfigError):
            usc.UserStreamConfig(**base)


def _trade_event() -> bytes:
    e = orjson.loads(orjson.dumps(ORDER_TRADE_UPDATE))
    e["o"].update({"x": "TRADE", "X": "FILLED", "l": "0.001", "L": "7103.04", "z": "0.001", "t": 12, "n": "0.003"})
    return orjson.dumps(e)


class TestFrames:
    def test_the_events_the_trader_needs_are_queued_in_order(self):
        """ORDER_TRADE_UPDATE, ACCOUNT_UPDATE, ALGO_UPDATE: decoded, queued, counted by type."""
        c = client()
        for raw in (_trade_event(), orjson.dumps(ACCOUNT_UPDATE), orjson.dumps(ALGO_UPDATE)):
            assert c.on_frame(raw, recv_ns=5) == ""
        items = c.drain(10)
        assert [type(e) for _, e in items] == [us.OrderUpdate, us.AccountUpdate, us.AlgoUpdate]
        assert [ns for ns, _ in items] == [5, 5, 5]
        assert items[0][1].last_qty == Decimal("0.001") and items[0][1].trade_id == "12"
        assert c.stats()["events"] == {"ORDER_TRADE_UPDATE": 1, "ACCOUNT_UPDATE": 1, "ALGO_UPDATE": 1}

    def test_trade_lite_and_unknown_events_are_counted_and_go_no_further(self):
        """Counted by type, never queued for the trader."""
        c = client()
        lite = {"e": "TRADE_LITE", "E": 1, "T": 1, "s": "BTCUSDT", "q": "0.001", "p": "0", "m": False, "c": "x",
                "S": "BUY", "L": "100", "l": "0.001", "t": 3, "i": 4}
        c.on_frame(orjson.dumps(lite))
        c.on_frame(b'{"e":"ACCOUNT_CONFIG_UPDATE","E":1,"ac":{"s":"BTCUSDT","l":5}}')
        assert c.drain(10) == []
        assert c.stats()["events"] == {"TRADE_LITE": 1, "ACCOUNT_CONFIG_UPDATE": 1}

    def test_listen_key_expired_ends_the_connection_and_is_not_queued(self):
        """Both spellings of E (the page's string, the old number) are read."""
        c = client()
        assert c.on_frame(b'{"e":"listenKeyExpired","E":"1736996475556","listenKey":"' + KEY.encode() + b'"}') \
            == usc.EXPIRED
        assert c.on_frame(b'{"e":"listenKeyExpired","E":1576653824250}') == usc.EXPIRED
        assert c.drain(10) == [] and c.stats()["events"] == {"listenKeyExpired": 2}

    def test_malformed_frames_are_counted_by_reason_and_never_raise(self):
        """Each malformed frame is one rejection under its reason."""
        c = client()
        for raw in (b"not json", b"[1,2]", b'{"E":1}', b'{"e":"ORDER_TRADE_UPDATE","E":1}', b"\xff\xfe"):
            assert c.on_frame(raw) == ""
        assert c.drain(10) == []
        assert c.stats()["rejects"] == {"not_json": 2, "not_object": 1, "no_event_type": 1, "missing_field": 1}

    def test_endless_new_event_names_are_counted_under_other(self):
        """At most MAX_EVENT_NAMES names are kept; the rest count as other."""
        c = client()
        for i in range(usc.MAX_EVENT_NAMES + 5):
            c.on_frame(orjson.dumps({"e": f"NEW_{i}", "E": 1}))
        events = c.stats()["events"]
        assert len(events) == usc.MAX_EVENT_NAMES + 1 and events["other"] == 5

    def test_a_full_queue_drops_the_newest_and_asks_for_a_resync_once_drained(self):
        """queue_max 2: the third event is dropped (counted); the drain that empties the queue
        ends with one Resync(queue_full); nothing more after that."""
        c = client(queue_max=2)
        for _ in range(3):
            c.on_frame(orjson.dumps(ACCOUNT_UPDATE))
        items = c.drain(10)
        assert [type(e) for _, e in items] == [us.AccountUpdate, us.AccountUpdate, uu.Resync]
        assert items[-1][1] == uu.Resync(reason=usc.QUEUE_FULL)
        assert c.stats()["counters"] == {"queue_dropped": 1, "resyncs": 1}
        assert c.drain(10) == []

    def test_after_an_overflow_the_resync_goes_ahead_of_the_next_event(self):
        """Room again before the queue was emptied: the next event is preceded by the Resync."""
        c = client(queue_max=2)
        for raw in (ACCOUNT_UPDATE, ACCOUNT_UPDATE, ALGO_UPDATE):  # the third is dropped
            c.on_frame(orjson.dumps(raw))
        assert [type(e) for _, e in c.drain(1)] == [us.AccountUpdate]
        c.on_frame(orjson.dumps(ALGO_UPDATE))
        assert [type(e) for _, e in c.drain(10)] == [us.AccountUpdate, uu.Resync, us.AlgoUpdate]

    def test_drain_takes_at_most_what_it_is_asked(self):
        """A burst is spread over polls."""
        c = client()
        for _ in range(5):
            c.on_frame(orjson.dumps(ACCOUNT_UPDATE))
        assert len(c.drain(3)) == 3 and len(c.drain(3)) == 2


class TestWhichModesHaveAStream:
    def test_demo_and_live_have_a_stream_paper_and_replay_do_not(self):
        """The stream goes with the ccxt broker: demo and live yes, paper and replay no, and
        ``trading.user_stream = false`` turns it off."""
        from common import config
        from venue import brokers

        def cfg(mode: str, **trading) -> config.AegisConfig:
            extra = {"replay": {"file": "capture.jsonl.gz"}} if mode == "replay" else {}
            return config.from_dict({"mode": mode, "trading": trading, **extra})

        assert [brokers.has_user_stream(cfg(m)) for m in ("demo", "live", "paper", "replay")] == [
            True, True, False, False]
        assert not brokers.has_user_stream(cfg("demo", user_stream=False))
        assert brokers.make_user_stream(cfg("paper")) is None

    def test_the_demo_stream_talks_to_the_sim_and_live_to_binance_with_the_brokers_key(self, monkeypatch):
        """Demo: the sim's REST and WebSocket host with the sim's demo key; live: Binance's
        production hosts (testnet with trading.testnet) with BINANCE_API_KEY."""
        from common import config
        from venue import brokers
        from venue.demo import DEMO_API_KEY

        monkeypatch.delenv("BINANCE_API_KEY", raising=False)
        monkeypatch.delenv("BINANCE_API_SECRET", raising=False)
        monkeypatch.setattr(config, "SECRET_DIR", config.Path("/nonexistent-aegis-secrets"))
        demo = brokers.make_user_stream(config.from_dict({"mode": "demo", "sim": {"port": 8765}}))
        assert (demo.config.rest_url, demo.config.ws_url) == ("http://127.0.0.1:8765", "ws://127.0.0.1:8765")
        assert demo._api_key == DEMO_API_KEY
        monkeypatch.setenv("BINANCE_API_KEY", "live-key")
        monkeypatch.setenv("BINANCE_API_SECRET", "live-secret")
        live = brokers.make_user_stream(config.from_dict({"mode": "live"}))
        assert (live.config.rest_url, live.config.ws_url, live._api_key) == (
            "https://fapi.binance.com", "wss://fstream.binance.com", "live-key")
        test = brokers.make_user_stream(config.from_dict({"mode": "live", "trading": {"testnet": True}}))
        assert (test.config.rest_url, test.config.ws_url) == (
            "https://testnet.binancefuture.com", "wss://fstream.binancefuture.com")
