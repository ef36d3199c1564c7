"""Component states are an enum of the wire contract (``wire.ServiceState`` for heartbeats,
``wire.FeedState`` for the feed's status): they travel as their names, a state nobody
defined is refused at decode, and a state compares equal to its name (the supervisor's JSON
and the dashboard read them as text)."""

from __future__ import annotations

import json

import msgspec
import pytest

from common import wire


def roundtrip(body: wire._Body) -> wire._Body:
    return msgspec.json.decode(msgspec.json.encode(body), type=type(body))


def test_heartbeat_state_travels_as_its_name_and_comes_back_as_the_enum():
    """A heartbeat is RUNNING unless it says otherwise; DEGRADED comes back as the member."""
    beat = wire.Heartbeat(service="feed", pid=7, uptime_s=1.0)
    assert b'"state":"RUNNING"' in msgspec.json.encode(beat)
    back = roundtrip(wire.Heartbeat(service="feed", pid=7, uptime_s=1.0, state=wire.ServiceState.DEGRADED))
    assert back.state is wire.ServiceState.DEGRADED
    assert back.state == "DEGRADED" and json.dumps({"s": back.state}) == '{"s": "DEGRADED"}'


@pytest.mark.parametrize("state", list(wire.FeedState))
def test_every_feed_state_round_trips(state):
    """Each of the feed's five states (live and replay) survives the wire as itself."""
    assert roundtrip(wire.FeedStatus(state=state)).state is state


@pytest.mark.parametrize("body", [b'{"type":"FEED_STATUS","state":"ONLINE"}',
                                  b'{"type":"HEARTBEAT","service":"feed","pid":1,"uptime_s":0.0,"state":"FAULTED"}'])
def test_a_state_nobody_defined_is_refused(body):
    """A free string is no longer a state: decoding it fails with msgspec's validation error."""
    with pytest.raises(msgspec.ValidationError, match="Invalid enum value"):
        msgspec.json.decode(body, type=wire.Body)


def test_the_two_sets_are_what_the_processes_send():
    """The names are pinned: the dashboard, the telegram alerts and the docs use them."""
    assert [s.value for s in wire.ServiceState] == ["RUNNING", "DEGRADED"]
    assert [s.value for s in wire.FeedState] == ["CONNECTING", "STREAMING", "DEGRADED", "REPLAYING", "REPLAY_DONE"]
