"""EventBus over real ZeroMQ ipc sockets: typed delivery, exact gaps, bad frames counted."""

from __future__ import annotations

import time

import zmq

from common import bus, wire, zmqutil


def hb(i):
    return wire.Heartbeat(service="feed", pid=1, uptime_s=float(i))


def status():
    return wire.FeedStatus(state="STREAMING")


def wait_joined(pub, sub, body):
    """PUB/SUB drops messages until the subscription propagates: send probes until one arrives."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pub.publish(body)
        if sub.recv(50) is not None:
            return
    raise AssertionError("subscriber never joined")


def test_subscriber_filtering_by_type_sees_no_false_gaps(short_tmp):
    """Interleaved types on one publisher: a heartbeat-only subscriber sees a gapless sequence."""
    ep = f"ipc://{short_tmp / 'p.pub'}"
    pub = bus.Publisher.bind_pub("feed", ep)
    sub = bus.Subscriber([ep], [wire.EventType.HEARTBEAT])
    try:
        wait_joined(pub, sub, hb(0))
        for i in range(100):
            pub.publish(hb(i))
            pub.publish(status())
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 100 and time.monotonic() < deadline:
            env = sub.recv(100)
            if env is not None:
                got.append(env)
        assert len(got) == 100
        assert all(isinstance(e.body, wire.Heartbeat) for e in got)
        assert sub.tracker.gaps == 0
    finally:
        pub.close(), sub.close(), zmqutil.term()


def test_journal_push_pull_delivers_everything_in_order(short_tmp):
    """PUSH/PULL journal: 1,000 messages arrive, in order, no gap, no duplicate."""
    ep = f"ipc://{short_tmp / 'j.pull'}"
    pull = bus.Subscriber.bind_pull(ep)
    push = bus.Publisher.connect_journal("brain", ep)
    try:
        for i in range(1000):
            push.publish(hb(i))
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 1000 and time.monotonic() < deadline:
            got.extend(pull.drain())
            time.sleep(0.01)
        assert [e.seq for e in got] == list(range(1, 1001))
        assert (pull.tracker.gaps, pull.tracker.duplicates) == (0, 0)
    finally:
        push.close(), pull.close(), zmqutil.term()


def test_malformed_frames_are_counted_and_skipped(short_tmp):
    """Garbage on the journal socket is counted by reason; the next good message still arrives."""
    ep = f"ipc://{short_tmp / 'j2.pull'}"
    pull = bus.Subscriber.bind_pull(ep)
    raw = zmqutil.context().socket(zmq.PUSH)
    raw.connect(ep)
    push = bus.Publisher.connect_journal("brain", ep)
    try:
        raw.send_multipart([b"heartbeat.feed", b"\xc1\xc1"])
        raw.send(b"one frame only")
        raw.send_multipart([b"heartbeat.feed", b"\x96\x07"])
        time.sleep(0.2)
        push.publish(hb(1))
        got = []
        deadline = time.monotonic() + 5  # PULL fair-queues the two PUSH pipes: wait for all four
        while (not got or sum(pull.rejected.values()) < 3) and time.monotonic() < deadline:
            env = pull.recv(100)
            if env is not None:
                got.append(env)
        assert len(got) == 1 and got[0].body == hb(1)
        assert dict(pull.rejected) == {"malformed": 1, "frame_count": 1, "schema_version": 1}
    finally:
        raw.close(0), push.close(), pull.close(), zmqutil.term()


def test_apply_subscription_and_covers_are_the_xpub_rules():
    """\\x01prefix adds a prefix, \\x00prefix removes it, anything else changes nothing; a
    prefix covers every topic it starts, b"" covers all."""
    subs = frozenset()
    for msg in (b"\x01candle.", b"\x01", b"\x01raw.", b"junk", b"\x00raw."):
        subs = bus.apply_subscription(subs, msg)
    assert subs == {b"candle.", b""}
    assert bus.covers({b"raw."}, b"raw.ws") and bus.covers({b""}, b"raw.ws")
    assert not bus.covers({b"candle.", b"raw.x"}, b"raw.ws") and not bus.covers(set(), b"raw.ws")


def test_an_xpub_publisher_knows_while_a_topic_is_wanted(short_tmp):
    """Publisher.wanted on an XPUB: False before anyone subscribes, True while a subscriber to
    "raw." or to everything is connected, False again once it has gone; a PUB is never asked."""
    ep = f"ipc://{short_tmp / 'x.pub'}"
    pub = bus.Publisher.bind_pub("feed", ep, xpub=True)
    plain = bus.Publisher.bind_pub("brain", f"ipc://{short_tmp / 'y.pub'}")

    def wait_for(want: bool) -> bool:
        deadline = time.monotonic() + 5
        while pub.wanted(wire.RAW_WS_TOPIC) != want and time.monotonic() < deadline:
            time.sleep(0.02)
        return pub.wanted(wire.RAW_WS_TOPIC)

    try:
        assert pub.wanted(wire.RAW_WS_TOPIC) is False
        candles = zmqutil.sub([ep], [b"candle."])
        assert wait_for(False) is False and pub.subscriptions <= {b"candle."}
        for prefixes in ([b"raw."], [b""]):
            s = zmqutil.sub([ep], prefixes)
            assert wait_for(True) is True
            s.close(0)
            assert wait_for(False) is False
        assert b"candle." in pub.subscriptions
        candles.close(0)
        assert plain.wanted(b"") is False
    finally:
        pub.close()
        plain.close()
        zmqutil.term()
