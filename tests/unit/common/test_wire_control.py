"""The operator's command on the wire (``wire.Control``): round trip, topic, and refusal of bad ones."""

from __future__ import annotations

import msgspec
import pytest

from common import wire
from common.errors import DecodeError

C, S = wire.ControlCommand, wire.ControlStatus


def control(**kw) -> wire.Control:
    base = dict(request_id="0123456789abcdef", command=C.PAUSE, requested_ms=1_733_011_200_000, client="127.0.0.1",
                via="page")
    base.update(kw)
    return wire.Control(**base)


def frames(body) -> list[bytes]:
    return wire.encode(wire.Envelope(wire.SCHEMA_VERSION, "dashboard:1", 1, 10, 11, body))


class TestControlCodec:
    @pytest.mark.parametrize("body", [
        control(),
        control(command=C.CLOSE, symbol="BTCUSDT"),
        control(command=C.CLOSE_ALL, status=S.DONE, detail="BTCUSDT: exit sent (ax-s-1)"),
        control(command=C.CLEAR_KILL_SWITCH, status=S.REFUSED, detail="the kill switch is not tripped"),
        control(command=C.RESUME),
    ])
    def test_every_command_round_trips_exactly(self, body):
        """Encode then decode gives the same frozen message, enums included."""
        assert wire.decode(frames(body)).body == body

    def test_topic_is_control_dot_symbol_or_all(self):
        """CLOSE is filed under its symbol, the others under ``all`` (prefix ``control.``)."""
        assert frames(control(command=C.CLOSE, symbol="ETHUSDT"))[0] == b"control.ETHUSDT"
        assert frames(control())[0] == b"control.all"
        assert wire.topic_prefix(wire.EventType.CONTROL) == b"control."

    def test_close_without_a_symbol_is_refused_on_construction(self):
        """CLOSE needs its symbol; the others must not carry one."""
        with pytest.raises(ValueError, match="symbol is required by CLOSE"):
            control(command=C.CLOSE)
        with pytest.raises(ValueError, match="symbol is required by CLOSE"):
            control(command=C.PAUSE, symbol="BTCUSDT")

    def test_a_forged_pause_with_a_symbol_is_a_decode_error(self):
        """A peer that skips our constructor still meets the same rule when we decode."""
        raw = msgspec.msgpack.encode([wire.SCHEMA_VERSION, "x:1", 1, 1, 1, {
            "type": "CONTROL", "request_id": "0123456789abcdef", "command": "PAUSE", "requested_ms": 5,
            "symbol": "BTCUSDT"}])
        with pytest.raises(DecodeError) as e:
            wire.decode([b"control.BTCUSDT", raw])
        assert e.value.reason == "invalid"

    @pytest.mark.parametrize("field,value", [
        ("command", "SELL_EVERYTHING"), ("request_id", "short"), ("request_id", "has space in it!"),
        ("status", "MAYBE"), ("requested_ms", -1), ("symbol", "btcusdt"),
    ])
    def test_unknown_commands_and_malformed_fields_are_decode_errors(self, field, value):
        """Only the five commands and the three statuses exist; ids, times and symbols are checked."""
        body = {"type": "CONTROL", "request_id": "0123456789abcdef", "command": "CLOSE", "requested_ms": 5,
                "symbol": "BTCUSDT", field: value}
        raw = msgspec.msgpack.encode([wire.SCHEMA_VERSION, "x:1", 1, 1, 1, body])
        with pytest.raises(DecodeError):
            wire.decode([b"control.BTCUSDT", raw])
