"""The account as JSON and as a state file: what a sim restart (or SIGKILL) keeps."""

from __future__ import annotations

from decimal import Decimal as D

import orjson
import pytest

from common.errors import DecodeError
from services.exchange_sim import state_file, trading
from services.exchange_sim.account import from_json, new_account, to_json
from services.exchange_sim.state_file import StateFileError
from tests.unit.exchange_sim.trading_helpers import T0, go, lim, mkt


@pytest.fixture
def traded():
    """Long 0.500 after a walk, a resting reduce-only sell, a cancelled buy, leverage 25."""
    acc = trading.set_leverage(new_account(), "BTCUSDT", 25, T0)
    acc = go(acc, mkt("BUY", "0.500", client_id="open-1")).account
    acc = go(acc, lim("SELL", "0.200", "61000.00", reduce_only=True, client_id="tp-1")).account
    acc = go(acc, lim("BUY", "0.010", "59000.00", client_id="bid-1")).account
    acc, _ = trading.cancel(acc, "BTCUSDT", None, "bid-1", T0 + 1)
    return acc


class TestJsonRoundTrip:
    def test_to_json_then_from_json_gives_the_same_account(self, traded):
        assert from_json(orjson.loads(orjson.dumps(to_json(traded)))) == traded

    def test_restored_account_keeps_trading_where_it_left_off(self, traded):
        """Ids continue, the resting order still matches, the client id index still works."""
        back = from_json(orjson.loads(orjson.dumps(to_json(traded))))
        p = go(back, mkt("BUY", "0.010"))
        assert (p.order.order_id, p.account.fills[-1].trade_id) == (4100000004, 272600003)
        assert back.order_by_client_id("tp-1").is_open and back.open_ids == {"BTCUSDT": (4100000002,)}

    def test_a_document_of_another_schema_is_refused(self):
        """Another schema is a DecodeError."""
        with pytest.raises(DecodeError, match="not a sim account state"):
            from_json({"schema": 999})

    def test_a_number_that_is_not_one_is_a_decode_error(self, traded):
        """int("x") inside the document is a DecodeError too, not Python's bare ValueError."""
        doc = to_json(traded)
        doc["nextOrderId"] = "x"
        with pytest.raises(DecodeError, match="malformed sim account state"):
            from_json(doc)


class TestStateFile:
    def test_save_then_load_round_trips_and_leaves_no_temporary_file(self, tmp_path, traded):
        path = tmp_path / "sim-account.json"
        state_file.save(path, traded)
        assert state_file.load(path) == traded
        assert [p.name for p in tmp_path.iterdir()] == ["sim-account.json"]

    def test_later_save_replaces_the_earlier_one(self, tmp_path, traded):
        path = tmp_path / "sim-account.json"
        state_file.save(path, new_account())
        state_file.save(path, traded)
        assert state_file.load(path).wallet == traded.wallet

    def test_no_file_yet_is_none(self, tmp_path):
        assert state_file.load(tmp_path / "absent.json") is None

    @pytest.mark.parametrize("content", [b"{not json", b'{"schema": 1}', b"[]"])
    def test_unreadable_file_is_a_state_file_error(self, tmp_path, content):
        path = tmp_path / "sim-account.json"
        path.write_bytes(content)
        with pytest.raises(StateFileError):
            state_file.load(path)


class TestHistoryBounds:
    def test_fills_and_finished_orders_are_kept_up_to_their_caps(self, monkeypatch):
        """With caps of 3, five market orders keep the last 3 fills and 3 orders; the
        resting order is kept whatever its age."""
        monkeypatch.setattr(trading, "MAX_FILLS", 3)
        monkeypatch.setattr(trading, "MAX_CLOSED_ORDERS", 3)
        acc = go(new_account(), lim("BUY", "0.010", "59000.00", client_id="rest")).account
        for i in range(5):
            acc = go(acc, mkt("BUY", "0.010", client_id=f"m{i}")).account
        assert [f.trade_id for f in acc.fills] == [272600003, 272600004, 272600005]
        assert acc.fills_total == 5
        assert [o.client_id for o in acc.orders.values()] == ["rest", "m2", "m3", "m4"]
        assert set(acc.client_ids) == {"rest", "m2", "m3", "m4"}
        assert acc.wallet == D("10000") - sum((D("0.30000050") for _ in range(5)), D(0))
