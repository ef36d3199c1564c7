"""Files of the wrong kind: recognised by their first bytes, refused by every command that
takes a file, with the command that reads them named (exit 2, nothing read as the wrong kind)."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from common import filekind
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden" / "demo_240s.aegiscap"
DECISIONS = REPO / "tests" / "golden" / "demo_240s.decisions.jsonl"
CANDLES = REPO / "services" / "exchange_sim" / "data" / "BTCUSDT_1m_2024-12.csv"
TICKS = REPO / "services" / "exchange_sim" / "data" / "hftbacktest_btcusdt_20240808.gz"
FRAME = b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1}}'
INFO = {"timezone": "UTC", "symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "filters": []}]}


class TestSniff:
    @pytest.mark.parametrize("head, kind", [
        (b"AEGISCAP\x01\x00", "aegis_capture"),
        (b"SQLite format 3\x00\x10\x00", "sqlite"),
        (b"open,high,low,close,volume,close_datetime\n1,2,0.5,1.5,3,x\n", "candle_csv"),
        (b"\xef\xbb\xbf\"Open Time\",\"Open\",\"High\",\"Low\",\"Close\"\r\n", "candle_csv"),
        (FRAME + b"\n" + FRAME, "raw_frames"),
        (b"1723161255030314667 " + FRAME + b"\n", "raw_frames"),
        (b'{"e":"trade","s":"BTCUSDT"}\n', "raw_frames"),
        (b'{"result":null,"id":1}\n', "raw_frames"),
        (json.dumps(INFO).encode(), "exchange_info"),
        (json.dumps(INFO, indent=1).encode(), "exchange_info"),
        (b'{"type":"signal","signal_id":"a"}\n{"type":"order"}\n', "decisions"),
        (b"[sim]\nspeed = 2.0\n", None),
        (b'{"mode": "demo"}', None),
        (b"", None),
        (b"\x00\x01\x02 binary", None),
    ])
    def test_first_bytes_give_the_kind(self, head, kind):
        """Each kind AEGIS writes or reads is told by its first bytes; anything else is unknown."""
        assert filekind.sniff(head) == kind

    def test_the_repositorys_own_files(self, tmp_path):
        """The golden capture, its decisions, the bundled candles and tick capture (gzip: the
        kind of what is inside), and a real run database are each recognised."""
        db = tmp_path / "aegis.sqlite3"
        sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
        gz = tmp_path / "frames.gz"
        gz.write_bytes(gzip.compress(FRAME + b"\n"))
        got = {p.name: filekind.kind_of(p) for p in (GOLDEN, DECISIONS, CANDLES, TICKS, db, gz)}
        assert got == {GOLDEN.name: "aegis_capture", DECISIONS.name: "decisions", CANDLES.name: "candle_csv",
                       TICKS.name: "raw_frames", "aegis.sqlite3": "sqlite", "frames.gz": "raw_frames"}
        assert filekind.kind_of(tmp_path / "missing") is None

    def test_refusal_names_the_reader_and_accepts_its_own_and_unknown_kinds(self, tmp_path):
        """A known other kind: one line naming the command that reads it, the file's name in
        place of FILE. Its own kind or an unknown file: None (the command reads it)."""
        junk = tmp_path / "junk.txt"
        junk.write_text("hello\n")
        assert filekind.refusal(GOLDEN, ("aegis_capture",), "an AEGIS capture") is None
        assert filekind.refusal(junk, ("raw_frames",), "raw WebSocket frames") is None
        assert filekind.refusal(GOLDEN, ("raw_frames",), "raw WebSocket frames") == (
            f"{GOLDEN} is an AEGIS capture (written by aegis capture or aegis run --capture), not raw "
            f"WebSocket frames: read it with aegis replay {GOLDEN} or aegis capture-info {GOLDEN}")


def _db(tmp_path: Path) -> Path:
    from services.orchestrator import db

    path = tmp_path / "aegis.sqlite3"
    db.connect(path).close()
    return path


class TestCommandsRefuseTheWrongKind:
    """Every command that takes a file, given another kind: exit 2, the reader named on stderr."""

    def test_decode_of_a_capture(self, capsys):
        """aegis decode of the golden AEGIS capture: refused (it once counted 9,178 not_utf8 frames, exit 0)."""
        from cli import decode as decode_cli

        assert decode_cli.main([str(GOLDEN)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"aegis decode: {GOLDEN} is an AEGIS capture") and f"aegis replay {GOLDEN}" in err

    def test_decode_of_frames_still_reads_them(self, capsys):
        """Its own kind (the bundled tick capture) is read as before: exit 0."""
        from cli import decode as decode_cli

        assert decode_cli.main([str(TICKS), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["lines"] > 0

    def test_replay_and_capture_info_of_a_candle_csv(self, capsys, tmp_path):
        """aegis replay and capture-info of a candle CSV name aegis smc."""
        from cli import capture as capture_cli
        from cli import replay as replay_cli

        assert replay_cli.main([str(CANDLES), "--workdir", str(tmp_path / "w")]) == 2
        assert capture_cli.info_main([str(CANDLES)]) == 2
        assert replay_cli.main([str(CANDLES), "--pub", f"ipc://{tmp_path}/p"]) == 2
        err = capsys.readouterr().err.splitlines()
        assert [line.split(":")[0] for line in err] == ["aegis replay", "aegis capture-info", "aegis replay"]
        assert all(f"aegis smc {CANDLES} --out OUT.csv" in line for line in err)
        assert not (tmp_path / "w").exists()

    def test_replay_exchange_info_of_a_database(self, capsys, tmp_path):
        """aegis replay --exchange-info given a database: refused, naming aegis report."""
        from cli import replay as replay_cli

        db = _db(tmp_path)
        assert replay_cli.main([str(GOLDEN), "--exchange-info", str(db), "--workdir", str(tmp_path / "w")]) == 2
        err = capsys.readouterr().err
        assert f"--exchange-info: {db} is an SQLite database" in err and f"aegis report --db {db}" in err

    def test_report_of_a_capture(self, capsys, tmp_path):
        """aegis report --db given the golden capture names aegis replay; no report is written."""
        from cli import report as report_cli

        assert report_cli.main(["--db", str(GOLDEN), "--out", str(tmp_path / "r")]) == 2
        assert f"aegis report: {GOLDEN} is an AEGIS capture" in capsys.readouterr().err
        assert not (tmp_path / "r").exists()

    def test_smc_and_model_eval_of_a_database_and_of_binary(self, capsys, tmp_path):
        """aegis smc and model_eval given a database name aegis report; a binary file of no
        known kind is "not UTF-8 text", never a traceback."""
        from services.brain import model_eval, smc_cli

        db = _db(tmp_path)
        blob = tmp_path / "blob.bin"
        blob.write_bytes(b"\xff\xfe\x00\x81" * 100)
        assert smc_cli.main([str(db), "--out", str(tmp_path / "f.csv")]) == 2
        assert model_eval.main(["--candles", str(db)]) == 2
        assert smc_cli.main([str(blob), "--out", str(tmp_path / "f.csv")]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith(f"aegis smc: {db} is an SQLite database") and f"aegis report --db {db}" in err[0]
        assert err[1].startswith(f"model_eval: {db} is an SQLite database")
        assert err[2] == f"aegis smc: {blob}: not a candle CSV (not UTF-8 text)"
        assert not (tmp_path / "f.csv").exists()

    def test_config_file_of_a_capture(self):
        """--config given a capture: a ConfigError naming aegis replay (every command prints it, exit 2)."""
        from common import config
        from common.errors import ConfigError

        with pytest.raises(ConfigError, match="is an AEGIS capture .* not a config file"):
            config.read_file(GOLDEN)

    def test_exchange_sim_inputs(self, capsys):
        """python -m services.exchange_sim --candles CAPTURE / --capture CANDLES: exit 2 before serving."""
        from services.exchange_sim import __main__ as sim_main

        assert sim_main.main(["--candles", str(GOLDEN)]) == 2
        assert sim_main.main(["--source", "ticks", "--capture", str(CANDLES)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith(f"exchange-sim: {GOLDEN} is an AEGIS capture") and "not a candle CSV" in err[0]
        assert err[1].startswith(f"exchange-sim: {CANDLES} is a candle CSV") and "not a tick capture" in err[1]
