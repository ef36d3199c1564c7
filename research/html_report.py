"""The HTML reports of ``aegis backtest --workers``, ``aegis sweep`` and ``aegis walkforward``.

One self-contained file each: the plots are PNGs drawn with matplotlib's object API on the Agg
canvas (as ``services/orchestrator/report_plots.py`` draws, never ``pyplot``) and embedded as
``data:`` URIs; no script, no CDN, no external file. The numbers come from
``research.metrics.trade_stats``; the page only formats them.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime, timezone
from html import escape
from typing import Any, Callable, Mapping, Sequence

from research import metrics

DPI = 90
_PNG_META = {"Software": None}  # same data, same bytes

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.is { border-left: 6px solid #c90; padding-left: 1em; } .oos { border-left: 6px solid #27a; padding-left: 1em; }
.note { color: #555; font-size: 0.9em; } img { max-width: 100%; } .wide { overflow-x: auto; }
"""

METRIC_ROWS = (
    ("trades", "closed trades"),
    ("win_rate", "share of trades with an outcome > 0 R"),
    ("net_pnl", "net PnL (USDT): PnL - fees - funding"),
    ("fees", "fees paid (USDT)"),
    ("funding", "funding paid (USDT, + = paid)"),
    ("return_pct", "return on the starting equity (%)"),
    ("max_drawdown_pct", "largest fall from a running peak (%)"),
    ("sharpe", "Sharpe: mean / sd of daily returns x sqrt(365)"),
    ("sortino", "Sortino: mean / downside deviation of daily returns x sqrt(365)"),
    ("calmar", "Calmar: annualised return / max drawdown"),
    ("profit_factor", "gross profit / gross loss"),
    ("expectancy_net_r", "expectancy after fees and funding: mean net PnL per trade in R (R = risk planned at entry)"),
    ("expectancy_net_r_ci95", "95% bootstrap interval of it (2,000 resamples, fixed seed): contains 0 = no edge shown"),
    ("expectancy_r", "expectancy before fees: mean price move per trade in R (what the model learns from)"),
    ("expectancy_r_ci95", "95% bootstrap interval of the expectancy before fees"),
    ("brier", "Brier score of the model's confidence (lower is better)"),
    ("brier_base_rate", "Brier score of always saying the observed win rate (to beat)"),
)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(x is None or isinstance(x, float) for x in v):
        return f"[{fmt(v[0])}, {fmt(v[1])}]"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)


def day(ms: int) -> str:
    return _utc(ms).strftime("%Y-%m-%d")


def _png(draw: Callable[[Any], None], size: tuple[float, float]) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    draw(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=_PNG_META)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def equity_png(trades: Sequence[Mapping[str, Any]], start_equity: float, start_ms: int, title: str) -> str:
    """Equity after each closed trade (a step line) over the drawdown in % below it."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    curve = [(start_ms, start_equity)] + metrics.equity_curve(
        start_equity, [(int(t["closed_ms"]), float(t["net_pnl"])) for t in trades])
    dd = metrics.drawdowns(start_equity, curve)

    def draw(fig: Any) -> None:
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        top.set_title(title)
        top.axhline(start_equity, color="grey", linewidth=0.8, linestyle="--")
        xs = [_utc(ms) for ms, _ in curve]
        top.plot(xs, [e for _, e in curve], drawstyle="steps-post", color="tab:blue")
        ys = [-p for _, _, p in dd]
        bottom.set_title("Drawdown below the running peak (%)")
        bottom.fill_between(xs, ys, 0.0, step="post", color="tab:red", alpha=0.4)
        loc = AutoDateLocator()
        bottom.xaxis.set_major_locator(loc)
        bottom.xaxis.set_major_formatter(ConciseDateFormatter(loc))
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)

    return _png(draw, (10, 5))


def reliability_png(calibration: Sequence[Sequence[Any]], title: str) -> str:
    """Observed win rate against the mean forecast per bin (dot area ~ trades), the diagonal."""

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect calibration")
        pts = [(b[3], b[4], b[2]) for b in calibration if b[3] is not None]
        if pts:
            big = max(n for _, _, n in pts)
            ax.scatter([p for p, _, _ in pts], [w for _, w, _ in pts], s=[20 + 300 * n / big for _, _, n in pts],
                       color="tab:blue", alpha=0.7, label="bins (area ~ trades)")
            ax.plot([p for p, _, _ in pts], [w for _, w, _ in pts], color="tab:blue", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence at entry (model forecast of a win)")
        ax.set_ylabel("observed win rate")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)

    return _png(draw, (5, 4.2))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1, last_left: bool = False) -> str:
    def cls(i: int) -> str:
        return " class='l'" if i < left or (last_left and i == len(head) - 1) else ""

    h = "".join(f"<th{cls(i)}>{escape(c)}</th>" for i, c in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{escape(fmt(c))}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<div class='wide'><table><tr>{h}</tr>{body}</table></div>"


def section(title: str, stats: Mapping[str, Any], trades: Sequence[Mapping[str, Any]], *, start_ms: int,
            css: str = "", note: str = "", per_symbol: Mapping[str, Any] | None = None) -> str:
    """One block of numbers: metrics, equity and drawdown, exit reasons, calibration, per symbol."""
    out = [f"<div class='{css}'><h2>{escape(title)}</h2>"]
    if note:
        out.append(f"<p class='note'>{escape(note)}</p>")
    out.append(_table(["number", "value", "what it is"], [[k, stats.get(k), what] for k, what in METRIC_ROWS],
                      left=1, last_left=True))
    if trades:
        out.append(f"<img alt='equity and drawdown' src='{equity_png(trades, float(stats['start_equity']), start_ms, 'Equity after each closed trade (USDT)')}'>")
    reasons = stats.get("exit_reasons") or {}
    n = sum(reasons.values()) or 1
    out.append("<h3>Exit reasons</h3>" + _table(["reason", "trades", "share"],
                                                [[k, v, v / n] for k, v in reasons.items()]))
    cal = stats.get("calibration") or []
    out.append("<h3>Calibration of the confidence model</h3>")
    if cal:
        out.append(f"<p class='note'>Brier {fmt(stats.get('brier'))} against {fmt(stats.get('brier_base_rate'))} "
                   "for always forecasting the observed win rate: the model helps only if its score is lower.</p>")
        out.append(f"<img alt='reliability' src='{reliability_png(cal, 'Reliability')}'>")
        out.append(_table(["forecast bin", "trades", "mean forecast", "observed win rate"],
                          [[f"{b[0]:.1f}-{b[1]:.1f}", b[2], b[3], b[4]] for b in cal]))
    else:
        out.append("<p class='note'>No closed trades: nothing to calibrate.</p>")
    if per_symbol:
        cols = ("candles", "signals", "trades", "win_rate", "net_pnl", "fees", "max_drawdown_pct", "sharpe",
                "expectancy_net_r", "expectancy_net_r_ci95", "expectancy_r")
        out.append("<h3>Per symbol (each its own account)</h3>" + _table(
            ["symbol", *cols], [[s, *[v.get(c) for c in cols]] for s, v in per_symbol.items()]))
    out.append("</div>")
    return "".join(out)


def page(title: str, blocks: Sequence[str], subtitle: str = "") -> str:
    sub = f"<p class='note'>{escape(subtitle)}</p>" if subtitle else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>{sub}{''.join(blocks)}</body></html>\n")


def backtest_page(summary: Mapping[str, Any], trades: Sequence[Mapping[str, Any]]) -> str:
    """The report of one backtest (split or not)."""
    head = (f"{summary.get('strategy')} {json.dumps(summary.get('params', {}))} on {', '.join(summary.get('symbols', []))}, "
            f"{day(summary['from_ms'])} .. {day(summary['to_ms'] - 1)} (UTC). {summary.get('candles')} candles, "
            f"{summary.get('signals')} signals. Trades: trades.csv; every number: summary.json.")
    counters = _table(["counter", "value"], sorted({**summary.get("trader_counters", {}),
                                                    **summary.get("strategy_counters", {})}.items()))
    return page("AEGIS backtest", [section("Results", summary, trades, start_ms=summary["from_ms"],
                                            per_symbol=summary.get("per_symbol")),
                                    "<h2>Counters</h2>" + counters], head)


def sweep_page(sweep: Mapping[str, Any], best_trades: Sequence[Mapping[str, Any]]) -> str:
    """The report of a sweep: every parameter set ranked, then the best one in full. All of
    it is in-sample: the best set was chosen on the same data it is shown on."""
    obj = sweep["objective"]
    rows = [[i + 1, json.dumps(r["params"]), r["objective"], r["trades"], r["net_pnl"], r["sharpe"],
             r["expectancy_net_r"], r["max_drawdown_pct"]] for i, r in enumerate(sweep["ranked"])]
    table = "<h2>Parameter sets, best first</h2>" + _table(
        ["rank", "params", obj, "trades", "net_pnl", "sharpe", "expectancy_net_r", "max_drawdown_pct"], rows, left=2)
    best = sweep["best"]
    note = ("IN-SAMPLE: this set was picked as the best of the ones tried on this very data, so its numbers are "
            "optimistic. Only a walk-forward (aegis walkforward) says what it earns on data it has not seen.")
    head = (f"{sweep['strategy']} on {', '.join(sweep['symbols'])}, {day(sweep['from_ms'])} .. "
            f"{day(sweep['to_ms'] - 1)}; {len(sweep['ranked'])} parameter sets ({sweep['method']}), "
            f"objective {obj}.")
    return page("AEGIS sweep", [table, section(f"Best set {json.dumps(best['params'])}", best["summary"], best_trades,
                                               start_ms=sweep["from_ms"], css="is", note=note,
                                               per_symbol=best["summary"].get("per_symbol"))], head)


def walkforward_page(wf: Mapping[str, Any], is_trades: Sequence[Mapping[str, Any]],
                     oos_trades: Sequence[Mapping[str, Any]]) -> str:
    """The report of a walk-forward: the windows, then out-of-sample and in-sample apart."""
    rows = [[w["window"], f"{day(w['train_from_ms'])} .. {day(w['train_to_ms'] - 1)}",
             f"{day(w['test_from_ms'])} .. {day(w['test_to_ms'] - 1)}", json.dumps(w["best_params"]),
             w["is"]["objective"], w["is"]["trades"], w["is"]["net_pnl"], w["oos"]["objective"], w["oos"]["trades"],
             w["oos"]["net_pnl"], w["oos"]["expectancy_net_r"]] for w in wf["windows"]]
    obj = wf["objective"]
    table = "<h2>Windows</h2>" + _table(
        ["window", "train (in-sample)", "test (out-of-sample)", "best params on train", f"IS {obj}", "IS trades",
         "IS net_pnl", f"OOS {obj}", "OOS trades", "OOS net_pnl", "OOS expectancy_net_r"], rows, left=4)
    oos = section("OUT-OF-SAMPLE: the test windows, stitched", wf["oos"], oos_trades, start_ms=wf["oos_from_ms"],
                  css="oos", note="Each test window was run with the parameters picked on the train window before it "
                  "and a confidence model trained only on that train window (then learning online from its own "
                  "closed trades). These are the numbers to believe.")
    ins = section("IN-SAMPLE: the train windows with their best parameters", wf["is"], is_trades,
                  start_ms=wf["is_from_ms"], css="is",
                  note="Optimistic by construction (the parameters were chosen on this data). When train windows "
                  "overlap, a trade appears once per window it falls in. Compare with the out-of-sample block: "
                  "a large gap means the sweep fitted noise.")
    head = (f"{wf['strategy']} on {', '.join(wf['symbols'])}; train {wf['train_days']} d, test {wf['test_days']} d, "
            f"step {wf['step_days']} d; {len(wf['windows'])} windows; objective {obj}; {wf['method']}.")
    return page("AEGIS walk-forward", [table, oos, ins], head)
