"""``aegis report`` end to end in-process: a real database written through the journal path
(``db.rows_for``), the report directory it produces, and the refusals of bad input.

The trades are those of test_report_metrics.py's three-trade run (net +198.98 USDT on
10,000), so the metrics here are the same hand-computed values.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from dataclasses import asdict
from html import escape

import pytest

from common import cli, wire
from common.histogram import LatencyHistogram
from cli import report as report_cli
from services.orchestrator import db, report_html, report_metrics

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
H = 3_600_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def closed(tid, symbol, side, qty, entry, exit_, stop, target, opened, closed_, pnl, fees, r,
           reason, confidence, learned):
    return wire.TradeClosed(trade_id=tid, symbol=symbol, side=side, qty=qty, entry_price=entry,
                            exit_price=exit_, stop=stop, target=target, opened_ms=opened,
                            closed_ms=closed_, pnl=pnl, fees=fees, outcome_r=r,
                            exit_reason=reason, confidence=confidence, learned=learned)


TRADES = [
    closed("sig-a", "BTCUSDT", "BUY", 0.1, 35_000.0, 37_100.0, 34_000.0, 37_100.0, T0, T0 + H,
           210.0, 10.0, 2.0, "TARGET", 0.6, True),
    closed("sig-b", "ETHUSDT", "SELL", 1.0, 2_000.0, 2_097.0, 2_097.0, 1_800.0, T0 + H // 2,
           T0 + 2 * H, -97.0, 5.0, -1.0, "STOP", 0.55, True),
    closed("sig-c", "SOLUSDT", "BUY", 10.0, 50.0, 60.5, 39.5, 60.5, T0 + 3 * H, T0 + 4 * H,
           105.0, 4.02, 1.0, "TARGET", 0.7, False),
]


def activity():
    """4 signals, 6 orders and 6 fills (an entry and an exit per trade), 3 risk rejects,
    one position still open and one flat."""
    out: list = [wire.SignalGenerated(signal_id=f"sig-{c}", symbol="BTCUSDT", side="BUY",
                                      entry=100.0, stop=99.0, target=102.0, confidence=0.6)
                 for c in "abcd"]
    for i in range(6):
        out.append(wire.OrderRequest(client_order_id=f"c{i}", symbol="BTCUSDT", side="BUY",
                                     order_type="MARKET", qty=0.1))
        out.append(wire.Fill(client_order_id=f"c{i}", exchange_order_id=str(i), trade_id=str(i),
                             symbol="BTCUSDT", side="BUY", qty=0.1, price=100.0, fee=0.01))
    out += [wire.RiskReject(symbol="BTCUSDT", reason="MAX_POSITIONS", signal_id="sig-d"),
            wire.RiskReject(symbol="ETHUSDT", reason="STALE_DATA"),
            wire.RiskReject(symbol="SOLUSDT", reason="MAX_POSITIONS")]
    out += [wire.Position(symbol="XRPUSDT", qty=5.0, entry_price=0.6),
            wire.Position(symbol="BTCUSDT", qty=0.0)]
    return out


def write_db(path, bodies):
    """The journal path: every body in an envelope, through rows_for, one batch."""
    conn = db.connect(path)
    envs = [wire.Envelope(wire.SCHEMA_VERSION, "brain:1", seq, (T0 + seq) * 1_000_000,
                          (T0 + seq) * 1_000_000, b) for seq, b in enumerate(bodies, 1)]
    db.write_batch(conn, [r for e in envs for r in db.rows_for(e)])
    return conn


@pytest.fixture
def run_db(tmp_path):
    path = tmp_path / "aegis.sqlite3"
    write_db(path, activity() + TRADES).close()
    return path


def write_stats(stats_dir, name, values_ns):
    h = LatencyHistogram()
    for v in values_ns:
        h.record(v)
    stats_dir.mkdir(parents=True, exist_ok=True)
    (stats_dir / name).write_text(json.dumps({"service": "brain", "latency_hist": h.to_dict()}))


def run(argv, capsys):
    rc = report_cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


EXPECTED_CSV = [
    ["trade_id", "symbol", "side", "qty", "entry_price", "exit_price", "stop", "target",
     "opened_ms", "closed_ms", "opened_utc", "closed_utc", "holding_s", "pnl", "fees",
     "outcome_r", "exit_reason", "confidence", "learned", "funding", "slippage_bps", "net_pnl"],
    ["sig-a", "BTCUSDT", "BUY", "0.1", "35000.0", "37100.0", "34000.0", "37100.0",
     "1700000000000", "1700003600000", "2023-11-14 22:13:20.000", "2023-11-14 23:13:20.000",
     "3600.0", "210.0", "10.0", "2.0", "TARGET", "0.6", "1", "0.0", "", "200.0"],
    ["sig-b", "ETHUSDT", "SELL", "1.0", "2000.0", "2097.0", "2097.0", "1800.0",
     "1700001800000", "1700007200000", "2023-11-14 22:43:20.000", "2023-11-15 00:13:20.000",
     "5400.0", "-97.0", "5.0", "-1.0", "STOP", "0.55", "1", "0.0", "", "-102.0"],
    ["sig-c", "SOLUSDT", "BUY", "10.0", "50.0", "60.5", "39.5", "60.5",
     "1700010800000", "1700014400000", "2023-11-15 01:13:20.000", "2023-11-15 02:13:20.000",
     "3600.0", "105.0", "4.02", "1.0", "TARGET", "0.7", "0", "0.0", "", "100.98"],
]

EXPECTED_METRICS = {
    "start_equity_usdt": 10_000.0, "final_equity_usdt": 10_198.98, "trades": 3, "wins": 2,
    "losses": 1, "win_rate": 2 / 3, "gross_pnl_usdt": 218.0, "trade_fees_usdt": 19.02,
    "funding_usdt": 0.0, "net_pnl_usdt": 198.98, "return_pct": 1.9898, "profit_factor": 300.98 / 102,
    "avg_r": 2 / 3, "median_r": 1.0, "expectancy_usdt": 198.98 / 3, "avg_holding_s": 4200.0,
    "first_open_ms": T0, "last_close_ms": T0 + 4 * H, "span_s": 14_400.0, "exposure": 0.75,
    "max_drawdown_usdt": 102.0, "max_drawdown_pct": 1.0, "trades_per_year": 6570.0,
    "sharpe_annualised": 2 * math.sqrt(6570 / 21), "sortino_annualised": 2 * math.sqrt(6570 / 3),
}


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000  # axes, lines and labels, not an empty canvas


class TestFeesAreOneNumber:
    def test_fees_paid_count_open_positions_as_the_run_summary_does(self, tmp_path, capsys):
        """A closed round trip (entry fee 0.5, exit fee 0.5) and an open position (entry fee
        0.82499687): the report's fees_usdt is every fill's fee, 1.824997 rounded to 6 decimals
        as the run summary rounds the brain's sum of the same fills; the closed trade's 1.0 is
        trade_fees_usdt, inside its net profit. (aegis report once said 0.0 where the run
        summary said 2.47: it summed closed trades only, and there were none.)"""
        from services.orchestrator import policy

        def fill(cid, fee):
            return wire.Fill(client_order_id=cid, exchange_order_id=cid, trade_id=cid, symbol="BTCUSDT",
                             side="BUY", qty=0.1, price=100.0, fee=fee)

        t = closed("sig-a", "BTCUSDT", "BUY", 0.1, 100.0, 110.0, 95.0, 110.0, T0, T0 + H, 1.0, 1.0, 2.0,
                   "TARGET", 0.6, True)
        path = tmp_path / "aegis.sqlite3"
        write_db(path, [fill("e1", 0.5), fill("x1", 0.5), fill("e2", 0.82499687), t]).close()
        rc, out, _ = run(["--db", path, "--out", tmp_path / "rep"], capsys)
        s = json.loads((tmp_path / "rep" / "summary.json").read_text())
        run_summary = policy.trading_summary([{"execution": {"fees": 0.5 + 0.5 + 0.82499687}}])
        assert rc == 0 and s["fees_usdt"] == run_summary["fees_usdt"] == 1.824997
        assert s["metrics"]["trade_fees_usdt"] == 1.0 and s["metrics"]["net_pnl_usdt"] == 0.0
        assert out.endswith("fees paid 1.82 USDT\n")
        page = (tmp_path / "rep" / "index.html").read_text()
        assert "<td>fees paid</td><td class=\"n\">1.82" in page


class TestReportOfARun:
    def test_writes_every_file_and_exits_zero(self, run_db, tmp_path, capsys):
        """Without --stats-dir: csv, json, equity.png and index.html; no latency.png."""
        out = tmp_path / "rep"
        rc, stdout, err = run(["--db", run_db, "--out", out], capsys)
        assert (rc, err) == (0, "")
        assert stdout == (f"report written to {out}: 3 closed trades, net 198.98 USDT (+1.99 %), "
                          "fees paid 0.06 USDT\n")
        assert sorted(p.name for p in out.iterdir()) == [
            "equity.png", "index.html", "summary.json", "trades.csv"]

    def test_trades_csv_has_every_trade_with_net_pnl_and_holding_time(self, run_db, tmp_path,
                                                                        capsys):
        """One row per closed trade in closing order, floats written exactly."""
        run(["--db", run_db, "--out", tmp_path / "rep"], capsys)
        with open(tmp_path / "rep" / "trades.csv", newline="") as f:
            assert list(csv.reader(f)) == EXPECTED_CSV

    def test_summary_holds_the_hand_computed_metrics_and_the_activity(self, run_db, tmp_path,
                                                                       capsys):
        """The metrics of the three-trade run; 4 signals, 6 orders, 6 fills, rejects by reason."""
        run(["--db", run_db, "--out", tmp_path / "rep"], capsys)
        s = json.loads((tmp_path / "rep" / "summary.json").read_text())
        assert sorted(s) == ["counts", "database", "fees_usdt", "latency_us", "metrics",
                             "risk_rejects_by_reason"]
        assert s["fees_usdt"] == 0.06  # the six fills' fees (this made-up run's trades say otherwise)
        assert s["database"] == str(run_db)
        slips = {k: s["metrics"].pop(k) for k in ("avg_slippage_bps", "worst_slippage_bps")}
        assert slips == {"avg_slippage_bps": None, "worst_slippage_bps": None}  # no signal price on these trades
        assert s["metrics"] == pytest.approx(EXPECTED_METRICS, rel=1e-12, abs=1e-12)
        assert list(s["metrics"]) == list(EXPECTED_METRICS)
        assert s["counts"] == {"signals": 4, "orders": 6, "fills": 6, "risk_rejects": 3,
                               "positions_open": 1}
        assert s["risk_rejects_by_reason"] == {"MAX_POSITIONS": 2, "STALE_DATA": 1}
        assert s["latency_us"] is None

    def test_start_equity_option(self, run_db, tmp_path, capsys):
        """--start-equity 20000: the same net PnL is half the return."""
        run(["--db", run_db, "--out", tmp_path / "rep", "--start-equity", "20000"], capsys)
        m = json.loads((tmp_path / "rep" / "summary.json").read_text())["metrics"]
        assert m["start_equity_usdt"] == 20_000.0
        assert m["return_pct"] == pytest.approx(0.9949, abs=1e-12)

    def test_equity_png_is_a_real_picture(self, run_db, tmp_path, capsys):
        run(["--db", run_db, "--out", tmp_path / "rep"], capsys)
        assert_png(tmp_path / "rep" / "equity.png")

    def test_index_html_ties_the_files_together(self, run_db, tmp_path, capsys):
        """The page shows the metrics with their explanations, links the files, lists trades
        and says why there is no latency picture."""
        run(["--db", run_db, "--out", tmp_path / "rep"], capsys)
        page = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
        assert '<img src="equity.png"' in page
        assert 'href="trades.csv"' in page and 'href="summary.json"' in page
        assert "latency.png" not in page
        assert "Latency histogram skipped: no --stats-dir given." in page
        for label, _, help_ in report_html.METRICS.values():
            assert escape(label) in page and escape(help_) in page
        for tid in ("sig-a", "sig-b", "sig-c"):
            assert f"<td>{tid}</td>" in page
        assert "198.98 USDT" in page and "75.0 %" in page  # net profit, exposure
        assert "MAX_POSITIONS" in page
        assert "No closed trades yet" not in page

    def test_reads_a_database_a_writer_still_holds_open(self, tmp_path, capsys):
        """A running orchestrator keeps its connection (rows still in the WAL): the
        read-only report sees them and changes nothing."""
        path = tmp_path / "live.sqlite3"
        conn = write_db(path, TRADES)
        try:
            before = path.read_bytes()
            rc, _, _ = run(["--db", path, "--out", tmp_path / "rep"], capsys)
            assert rc == 0
            assert json.loads((tmp_path / "rep" / "summary.json").read_text())[
                "metrics"]["trades"] == 3
            assert path.read_bytes() == before
        finally:
            conn.close()

    def test_registered_as_an_aegis_subcommand(self, run_db, tmp_path, capsys):
        """``aegis report`` dispatches to report_cli.main."""
        assert cli.COMMANDS["report"][0] == "cli.report"
        assert cli.main(["report", "--db", str(run_db), "--out", str(tmp_path / "rep")]) == 0
        assert (tmp_path / "rep" / "index.html").exists()


class TestLatency:
    def test_stats_dir_adds_the_merged_histogram(self, run_db, tmp_path, capsys):
        """Two brain incarnations (9 x 100 ns, 1 x 250 ns) merge into one stage of 10
        samples: p50 and p90 0.1 us, p99 and max 0.25 us (exact buckets below 256 ns)."""
        stats = tmp_path / "run" / "stats"
        write_stats(stats, "brain.11-1.json", [100] * 9)
        write_stats(stats, "brain.12-2.json", [250])
        (stats / "feed.10-1.json").write_text("{}")  # other services' files are not read
        out = tmp_path / "rep"
        rc, _, _ = run(["--db", run_db, "--out", out, "--stats-dir", tmp_path / "run"], capsys)
        assert rc == 0
        s = json.loads((out / "summary.json").read_text())
        assert s["latency_us"] == {"feed receive -> brain": {
            "count": 10, "p50": 0.1, "p90": 0.1, "p99": 0.25, "p999": 0.25, "max": 0.25}}
        assert_png(out / "latency.png")
        page = (out / "index.html").read_text(encoding="utf-8")
        assert '<img src="latency.png"' in page
        assert "skipped" not in page

    def test_stats_dir_without_brain_files_skips_the_picture_and_says_so(self, run_db,
                                                                         tmp_path, capsys):
        empty = tmp_path / "stats"
        empty.mkdir()
        out = tmp_path / "rep"
        rc, _, _ = run(["--db", run_db, "--out", out, "--stats-dir", empty], capsys)
        assert rc == 0
        assert not (out / "latency.png").exists()
        assert f"Latency histogram skipped: no brain stats file in {empty}." in (
            out / "index.html").read_text(encoding="utf-8")


class TestNoClosedTrades:
    def test_every_file_is_still_written(self, tmp_path, capsys):
        """Signals and rejects but no trade yet: header-only CSV, None ratios, a flat equity
        picture, and the page says so."""
        path = tmp_path / "young.sqlite3"
        write_db(path, activity()).close()
        out = tmp_path / "rep"
        rc, stdout, _ = run(["--db", path, "--out", out], capsys)
        assert rc == 0
        assert stdout == f"report written to {out}: 0 closed trades, net 0.00 USDT (+0.00 %), fees paid 0.06 USDT\n"
        with open(out / "trades.csv", newline="") as f:
            assert list(csv.reader(f)) == EXPECTED_CSV[:1]
        s = json.loads((out / "summary.json").read_text())
        assert s["metrics"] == asdict(report_metrics.metrics([], report_metrics.ReportConfig()))
        assert (s["metrics"]["trades"], s["metrics"]["win_rate"], s["metrics"]["sharpe_annualised"],
                s["metrics"]["final_equity_usdt"]) == (0, None, None, 10_000.0)
        assert s["counts"]["signals"] == 4
        assert_png(out / "equity.png")
        page = (out / "index.html").read_text(encoding="utf-8")
        assert "No closed trades yet." in page
        assert "no closed trades yet" in page
        assert '<img src="equity.png"' in page

    def test_fresh_database_from_connect(self, tmp_path, capsys):
        """The schema alone (the orchestrator just started) is a valid, empty run."""
        db.connect(tmp_path / "new.sqlite3").close()
        rc, _, err = run(["--db", tmp_path / "new.sqlite3", "--out", tmp_path / "rep"], capsys)
        assert (rc, err) == (0, "")


class TestBadInput:
    def assert_refused(self, argv, capsys, message):
        rc, stdout, err = run(argv, capsys)
        assert rc == 2
        assert stdout == ""
        assert err == f"aegis report: {message}\n"

    def test_missing_database_file(self, tmp_path, capsys):
        missing = tmp_path / "nope.sqlite3"
        self.assert_refused(["--db", missing, "--out", tmp_path / "rep"], capsys,
                            f"database not found: {missing}")
        assert not (tmp_path / "rep").exists()

    def test_file_that_is_not_a_database(self, tmp_path, capsys):
        text = tmp_path / "notes.txt"
        text.write_text("this is not SQLite, just some words long enough for a header\n" * 4)
        self.assert_refused(["--db", text, "--out", tmp_path / "rep"], capsys,
                            f"cannot read {text} as an AEGIS database: file is not a database")

    def test_database_without_the_tables(self, tmp_path, capsys):
        other = tmp_path / "other.sqlite3"
        conn = sqlite3.connect(other)
        conn.execute("CREATE TABLE trades (x)")
        conn.commit()
        conn.close()
        self.assert_refused(["--db", other, "--out", tmp_path / "rep"], capsys,
                            f"{other} is not an AEGIS database: missing table(s) signals, "
                            "orders, fills, risk_rejects, positions")

    def test_trades_table_of_another_shape(self, tmp_path, capsys):
        """Every table there, but trades lacks the columns: refused, no traceback."""
        odd = tmp_path / "odd.sqlite3"
        conn = sqlite3.connect(odd)
        for t in report_cli.REQUIRED_TABLES:
            conn.execute(f"CREATE TABLE {t} (x)")
        conn.commit()
        conn.close()
        rc, _, err = run(["--db", odd, "--out", tmp_path / "rep"], capsys)
        assert rc == 2
        assert err.startswith(f"aegis report: cannot read {odd}: no such column")
        assert err.count("\n") == 1

    @pytest.mark.parametrize("equity", ["0", "-5", "nan"])
    def test_start_equity_must_be_positive(self, run_db, tmp_path, capsys, equity):
        rc, _, err = run(["--db", run_db, "--out", tmp_path / "rep", "--start-equity", equity],
                         capsys)
        assert rc == 2
        assert err.startswith("aegis report: --start-equity: start_equity_usdt must be a "
                              "positive number")

    def test_missing_stats_dir(self, run_db, tmp_path, capsys):
        self.assert_refused(["--db", run_db, "--out", tmp_path / "rep", "--stats-dir",
                             tmp_path / "nope"], capsys,
                            f"stats directory not found: {tmp_path / 'nope'}")

    def test_malformed_stats_file(self, run_db, tmp_path, capsys):
        """A histogram whose count disagrees with its buckets is refused with its file name."""
        stats = tmp_path / "stats"
        write_stats(stats, "brain.1-1.json", [100])
        bad = stats / "brain.1-1.json"
        d = json.loads(bad.read_text())
        d["latency_hist"]["count"] = 7
        bad.write_text(json.dumps(d))
        self.assert_refused(["--db", run_db, "--out", tmp_path / "rep", "--stats-dir", stats],
                            capsys, f"unreadable stats file {bad}: histogram count differs "
                                    "from its buckets")

    def test_out_is_a_file(self, run_db, tmp_path, capsys):
        blocker = tmp_path / "rep"
        blocker.write_text("")
        self.assert_refused(["--db", run_db, "--out", blocker], capsys,
                            f"cannot write the report to {blocker}: File exists")


class TestHtml:
    def test_values_from_the_database_are_escaped(self):
        """A trade id or exit reason with markup is shown as text, never as HTML."""
        t = report_metrics.Trade(trade_id="<script>x</script>", symbol="BTCUSDT", side="BUY", qty=1.0,
                         entry_price=1.0, exit_price=2.0, stop=0.5, target=2.0, opened_ms=0,
                         closed_ms=1_000, pnl=1.0, fees=0.0, outcome_r=2.0,
                         exit_reason="<b>TARGET</b>", confidence=0.5, learned=True)
        summary = report_cli.build_summary(
            database="a&b.sqlite3", m=report_metrics.metrics([t]), by_reason={"<i>": 1},
            counts={"signals": 0, "orders": 0, "fills": 0, "risk_rejects": 1,
                    "positions_open": 0}, latency=None)
        page = report_html.render(summary, [t], latency_note="none <here>")
        assert "<script>" not in page and "<b>TARGET" not in page and "<i>" not in page
        assert "&lt;script&gt;x&lt;/script&gt;" in page
        assert "a&amp;b.sqlite3" in page
        assert "none &lt;here&gt;" in page

    @pytest.mark.parametrize(("seconds", "text"), [
        (12.5, "12.5 s"), (245, "4 m 05 s"), (4_200, "1 h 10 m"), (90_000, "1 d 1 h")])
    def test_durations_are_written_in_two_units(self, seconds, text):
        assert report_html.duration_text(seconds) == text


class TestFundingInTheReport:
    def test_a_trades_funding_is_in_the_metrics_the_csv_and_the_page(self, tmp_path, capsys):
        """One trade with funding -0.059: funding_usdt in summary.json, the trades.csv column,
        the HTML trades table, and the printed line."""
        from services.orchestrator import db as dbm
        path = tmp_path / "aegis.sqlite3"
        conn = dbm.connect(path)
        body = wire.TradeClosed(trade_id="sig-f", symbol="BTCUSDT", side="BUY", qty=0.01, entry_price=59000.0,
                                exit_price=59500.0, stop=58000.0, target=61000.0, opened_ms=1_700_000_000_000,
                                closed_ms=1_700_000_060_000, pnl=4.941, fees=0.59, outcome_r=0.4941,
                                exit_reason="EXTERNAL", learned=False, funding=-0.059)
        dbm.write_batch(conn, dbm.rows_for(wire.Envelope(wire.SCHEMA_VERSION, "brain:1", 1, 1, 2, body)))
        conn.close()
        run(["--db", path, "--out", tmp_path / "rep"], capsys)
        s = json.loads((tmp_path / "rep" / "summary.json").read_text())
        assert s["metrics"]["funding_usdt"] == -0.059 and s["metrics"]["gross_pnl_usdt"] == 4.941
        with open(tmp_path / "rep" / "trades.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["funding"] for r in rows] == ["-0.059"]
        page = next((tmp_path / "rep").glob("*.html")).read_text()
        assert "<th>funding</th>" in page and "-0.0590" in page


class TestSlippageInTheReport:
    def test_entry_slippage_is_in_the_metrics_the_csv_and_the_page(self, tmp_path, capsys):
        """Two trades at +12.5 and -2.5 bps and one without a signal price: the average and the
        worst over the two, the trades.csv column (empty for the third), the HTML column."""
        from services.orchestrator import db as dbm
        path = tmp_path / "aegis.sqlite3"
        conn = dbm.connect(path)
        bodies = [wire.TradeClosed(trade_id=f"sig-{i}", symbol="BTCUSDT", side="BUY", qty=0.01, entry_price=100.0,
                                   exit_price=101.0, stop=99.0, target=102.0, opened_ms=1_700_000_000_000 + i,
                                   closed_ms=1_700_000_060_000 + i, pnl=0.01, fees=0.0, outcome_r=1.0,
                                   exit_reason="TARGET", learned=True, signal_price=sp, slippage_bps=bps)
                  for i, (sp, bps) in enumerate([(99.875, 12.5), (100.025, -2.5), (0.0, None)])]
        dbm.write_batch(conn, [r for i, b in enumerate(bodies, 1)
                               for r in dbm.rows_for(wire.Envelope(wire.SCHEMA_VERSION, "brain:1", i, i, i, b))])
        conn.close()
        run(["--db", path, "--out", tmp_path / "rep"], capsys)
        s = json.loads((tmp_path / "rep" / "summary.json").read_text())
        assert (s["metrics"]["avg_slippage_bps"], s["metrics"]["worst_slippage_bps"]) == (5.0, 12.5)
        with open(tmp_path / "rep" / "trades.csv", newline="") as f:
            assert [r["slippage_bps"] for r in csv.DictReader(f)] == ["12.5", "-2.5", ""]
        page = next((tmp_path / "rep").glob("*.html")).read_text()
        assert "<th>slippage (bps)</th>" in page and "+12.5" in page and "-2.5" in page

    def test_a_database_from_before_slippage_gets_the_columns_and_reads_none(self, tmp_path, capsys):
        """An older trades table (no signal_price / slippage_bps): connect adds both columns,
        the old row reads NULL (unknown, not zero) and the report says None."""
        import sqlite3

        from services.orchestrator import db as dbm
        path = tmp_path / "old.sqlite3"
        old = sqlite3.connect(path)
        old.execute("CREATE TABLE trades (trade_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,"
                    " qty REAL NOT NULL, entry_price REAL NOT NULL, exit_price REAL NOT NULL, stop REAL NOT NULL,"
                    " target REAL NOT NULL, opened_ms INTEGER NOT NULL, closed_ms INTEGER NOT NULL,"
                    " pnl REAL NOT NULL, fees REAL NOT NULL, outcome_r REAL NOT NULL, exit_reason TEXT NOT NULL,"
                    " confidence REAL NOT NULL, learned INTEGER NOT NULL, PRIMARY KEY (trade_id, closed_ms))"
                    " WITHOUT ROWID")
        old.execute("INSERT INTO trades VALUES ('t1','BTCUSDT','BUY',1,100,101,99,102,1,2,1,0,1,'TARGET',0.5,1)")
        old.commit()
        old.close()
        dbm.connect(path).close()
        conn = sqlite3.connect(path)
        cols = [r[1] for r in conn.execute("PRAGMA table_info(trades)")]
        assert cols[-3:] == ["funding", "signal_price", "slippage_bps"]
        assert conn.execute("SELECT signal_price, slippage_bps FROM trades").fetchall() == [(0.0, None)]
        conn.close()
        run(["--db", path, "--out", tmp_path / "rep"], capsys)
        s = json.loads((tmp_path / "rep" / "summary.json").read_text())
        assert (s["metrics"]["trades"], s["metrics"]["avg_slippage_bps"]) == (1, None)
