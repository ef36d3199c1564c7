"""``index.html`` of ``aegis report`` (pure: the summary and the trades in, one page out).

Self-contained: inline CSS, no script, no external file except the two PNGs next to it in
the report directory. Every value taken from the database is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any, Mapping, Sequence

from services.orchestrator.report_metrics import Trade, utc_text

# metric -> (label, format, one line in simple language). The order is the table's order.
METRICS: dict[str, tuple[str, str, str]] = {
    "trades": ("Closed trades", "int", "Round trips completed: a position opened, then closed."),
    "wins": ("Winning trades", "int", "Trades that made money after fees."),
    "losses": ("Losing trades", "int", "Trades that lost money after fees."),
    "win_rate": ("Win rate", "frac", "Share of the trades that made money after fees."),
    "start_equity_usdt": ("Starting equity", "usdt", "The account before the first trade."),
    "final_equity_usdt": ("Final equity", "usdt", "The account after the last closed trade."),
    "gross_pnl_usdt": ("Gross profit", "usdt", "Profit or loss of all trades before fees."),
    "trade_fees_usdt": ("Fees of these trades", "usdt",
                        "Commissions of the closed trades, entries and exits (in their net profit)."),
    "funding_usdt": ("Funding of these trades", "usdt",
                     "Funding received (+) or paid (-) while the trades were open (in their profit)."),
    "net_pnl_usdt": ("Net profit", "usdt", "Profit or loss after fees: what the account gained."),
    "return_pct": ("Return", "pct", "Net profit as a percentage of the starting equity."),
    "profit_factor": ("Profit factor", "num",
                      "Money won by winners divided by money lost by losers; above 1 the winners "
                      "paid for the losers (empty when no trade lost)."),
    "avg_r": ("Average R", "r", "Average result in R, where 1 R is the amount risked (entry to "
                                "stop): +2 R won twice the risk."),
    "median_r": ("Median R", "r", "The middle result in R: half the trades did better, half worse."),
    "expectancy_usdt": ("Expectancy", "usdt", "Average net profit per trade: what one more trade "
                                              "is worth if the future looks like the past."),
    "avg_holding_s": ("Average holding time", "dur", "How long a position stayed open, on average."),
    "first_open_ms": ("First opening", "time", "When the first of these trades opened (UTC)."),
    "last_close_ms": ("Last close", "time", "When the last of these trades closed (UTC)."),
    "span_s": ("Time covered", "dur", "From the first opening to the last close."),
    "exposure": ("Exposure", "frac", "Share of that time with at least one position open."),
    "max_drawdown_usdt": ("Max drawdown", "usdt", "The largest fall of equity from a high point "
                                                  "before a new high was reached."),
    "max_drawdown_pct": ("Max drawdown %", "pct", "That fall as a percentage of the high it fell "
                                                  "from."),
    "trades_per_year": ("Trades per year", "num", "This run's trading pace, scaled to a year; it "
                                                  "annualises the two ratios below."),
    "sharpe_annualised": ("Sharpe (per trade, annualised)", "num",
                          "Average return per trade divided by how much returns vary, scaled to a "
                          "year: higher is steadier. Per trade, not per day: compare it only "
                          "between runs of this engine."),
    "sortino_annualised": ("Sortino (per trade, annualised)", "num",
                           "Like Sharpe, but only losing trades count as risk."),
    "avg_slippage_bps": ("Average entry slippage", "num",
                         "How far the entries filled from the signal's price, in basis points "
                         "(1/100 of a percent); positive = worse for us."),
    "worst_slippage_bps": ("Worst entry slippage", "num", "The entry that filled furthest from its "
                                                          "signal's price against us, in basis points."),
}

COUNTS: dict[str, str] = {
    "signals": "Setups the strategy found (SIGNAL_GENERATED).",
    "orders": "Orders decided and journaled, entries and exits.",
    "fills": "Executions at the exchange.",
    "risk_rejects": "Orders refused by a risk check before sending.",
    "positions_open": "Positions still open at the end (not in the trades above).",
}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.help { color: #555; }
.note { color: #555; font-style: italic; }
img { max-width: 100%; }
.pos { color: #1a7f37; } .neg { color: #c62828; }
"""


def fmt(kind: str, v: Any) -> str:
    """A value as the page shows it; None (cannot be computed) is a dash."""
    if v is None:
        return "–"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "usdt":
        return f"{v:,.2f} USDT"
    if kind == "pct":
        return f"{v:,.2f} %"
    if kind == "frac":
        return f"{v * 100:,.1f} %"
    if kind == "r":
        return f"{v:+.2f} R"
    if kind == "dur":
        return duration_text(v)
    if kind == "time":
        return utc_text(int(v))
    return f"{v:,.2f}"


def duration_text(s: float) -> str:
    """``1 h 10 m``, ``4 m 05 s``, ``12.5 s``: the two largest units."""
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m:02d} m"
    return f"{m} m {sec:02d} s"


def _row(*cells: str, classes: Sequence[str] = ()) -> str:
    cls = list(classes) + [""] * (len(cells) - len(classes))
    return "<tr>" + "".join(f'<td class="{c}">{x}</td>' if c else f"<td>{x}</td>"
                            for c, x in zip(cls, cells)) + "</tr>"


def _signed(v: float, text: str) -> str:
    return f'<span class="{"pos" if v > 0 else "neg" if v < 0 else ""}">{text}</span>'


def _trades_table(trades: Sequence[Trade]) -> str:
    head = ("closed (UTC)", "trade", "symbol", "side", "qty", "entry", "slippage (bps)", "exit", "PnL", "funding",
            "fees", "net", "R", "held", "exit reason")
    rows = [_row(escape(utc_text(t.closed_ms)), escape(t.trade_id), escape(t.symbol),
                 escape(t.side), f"{t.qty:g}", f"{t.entry_price:g}",
                 "-" if t.slippage_bps is None else f"{t.slippage_bps:+.1f}", f"{t.exit_price:g}",
                 f"{t.pnl:,.2f}", f"{t.funding:,.4f}", f"{t.fees:,.2f}", _signed(t.net_pnl, f"{t.net_pnl:,.2f}"),
                 f"{t.outcome_r:+.2f}", duration_text(t.holding_s), escape(t.exit_reason),
                 classes=("", "", "", "", "n", "n", "n", "n", "n", "n", "n", "n", "n", "n"))
            for t in trades]
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>")


def render(summary: Mapping[str, Any], trades: Sequence[Trade], *,
           latency_note: str | None) -> str:
    """The page. ``latency_note``: None when ``latency.png`` was drawn, else why it was not."""
    m = summary["metrics"]
    counts = summary["counts"]
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>AEGIS report</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>AEGIS report</h1>",
        f'<p>Database <code>{escape(str(summary["database"]))}</code>; figures after fees '
        "unless marked gross; times in UTC.</p>",
    ]
    if not trades:
        parts.append('<p class="note"><strong>No closed trades yet.</strong> The metrics that '
                     "need trades are empty and the equity curve is flat.</p>")
    parts += ["<h2>Summary</h2>", "<table><tr><th>metric</th><th>value</th><th>what it means</th></tr>"]
    parts += [_row(escape(label), fmt(kind, m[key]), escape(help_),
                   classes=("", "n", "help"))
              for key, (label, kind, help_) in METRICS.items()]
    parts.append("</table>")
    parts += ["<h2>Equity and drawdown</h2>",
              '<img src="equity.png" alt="equity curve and drawdown">']
    parts += ["<h2>Activity</h2>", "<table><tr><th>what</th><th>count</th><th>meaning</th></tr>"]
    parts += [_row(escape(k), fmt("int", counts[k]), escape(help_), classes=("", "n", "help"))
              for k, help_ in COUNTS.items()]
    parts.append(_row("fees paid", fmt("usdt", summary.get("fees_usdt", 0.0)),
                      escape("Every commission paid, the entries of positions still open included "
                             "(the run summary's fees_usdt)."), classes=("", "n", "help")))
    parts.append("</table>")
    by_reason = summary["risk_rejects_by_reason"]
    if by_reason:
        parts += ["<h3>Risk rejects by reason</h3>",
                  "<table><tr><th>reason</th><th>count</th></tr>"]
        parts += [_row(escape(r), fmt("int", n), classes=("", "n")) for r, n in by_reason.items()]
        parts.append("</table>")
    parts.append("<h2>Latency</h2>")
    if latency_note is None:
        parts += ["<p>Time from the feed receiving a tick to the brain processing it "
                  "(brain stats files; bars are histogram buckets).</p>",
                  '<img src="latency.png" alt="latency histograms">',
                  "<table><tr><th>stage</th><th>samples</th><th>p50</th><th>p90</th>"
                  "<th>p99</th><th>max</th></tr>"]
        parts += [_row(escape(stage), fmt("int", s["count"]),
                       *(f"{s[q]:,.1f} µs" for q in ("p50", "p90", "p99", "max")),
                       classes=("", "n", "n", "n", "n", "n"))
                  for stage, s in (summary.get("latency_us") or {}).items()]
        parts.append("</table>")
    else:
        parts.append(f'<p class="note">Latency histogram skipped: {escape(latency_note)}</p>')
    parts += [f"<h2>Trades ({len(trades)})</h2>",
              _trades_table(trades) if trades else '<p class="note">no closed trades yet</p>',
              '<p>The same rows with every field: <a href="trades.csv">trades.csv</a>; the '
              'numbers above: <a href="summary.json">summary.json</a>.</p>',
              "</body></html>", ""]
    return "\n".join(parts)
