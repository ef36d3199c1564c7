"""The pictures of ``aegis report``: equity and drawdown, per-stage latency.

matplotlib's object API on the Agg canvas, never ``pyplot``: no global figure registry, no
backend chosen from the environment, nothing left open. Each function takes plain data and
a path and writes one PNG.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from common.histogram import N_BUCKETS, LatencyHistogram, bucket_bounds

DPI = 100
# the PNG metadata would otherwise carry the matplotlib version: same data, same bytes
_PNG_META = {"Software": None}


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)


def plot_equity(path: Path, equity: Sequence[tuple[int, float]],
                drawdown: Sequence[tuple[int, float, float]], start_equity: float) -> None:
    """Two stacked panels sharing a UTC date axis: equity after each closed trade (a step
    line: equity only moves when a trade closes) and the drawdown in percent below it.
    No points: a flat line at the starting equity and no dates."""
    fig = Figure(figsize=(10, 6), dpi=DPI)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.set_title("Equity after each closed trade (USDT)")
    top.axhline(start_equity, color="grey", linewidth=0.8, linestyle="--")
    bottom.set_title("Drawdown below the running peak (%)")
    if equity:
        xs = [_utc(ms) for ms, _ in equity]
        top.plot(xs, [e for _, e in equity], drawstyle="steps-post", color="tab:blue")
        dd = [-pct for _, _, pct in drawdown]
        bottom.fill_between(xs, dd, 0.0, step="post", color="tab:red", alpha=0.4)
        bottom.plot(xs, dd, drawstyle="steps-post", color="tab:red", linewidth=0.8)
        locator = AutoDateLocator()
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        bottom.set_xlabel("time (UTC)")
    else:
        top.plot([0, 1], [start_equity, start_equity], color="tab:blue")
        bottom.plot([0, 1], [0.0, 0.0], color="tab:red")
        top.text(0.5, 0.6, "no closed trades yet", transform=top.transAxes, ha="center",
                 va="bottom", color="grey")
        bottom.set_xticks([])
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata=_PNG_META)


def plot_latency(path: Path, stages: Mapping[str, LatencyHistogram]) -> None:
    """One panel per stage: the histogram's non-empty buckets as bars on a logarithmic
    microsecond axis (HDR buckets are nearly even in log space), p50 and p99 marked."""
    fig = Figure(figsize=(10, 3.2 * max(1, len(stages))), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(stages)), 1, squeeze=False)[:, 0]
    for ax, (name, hist) in zip(axes, stages.items()):
        ax.set_title(f"{name}: {hist.count:,} samples")
        ax.set_xlabel("latency (µs, log scale)")
        ax.set_ylabel("samples")
        ax.grid(alpha=0.3)
        if not hist.count:
            ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center")
            continue
        idx = np.flatnonzero(hist.counts[:N_BUCKETS]).tolist()
        bounds = [bucket_bounds(i) for i in idx]
        # a 0 ns bucket cannot sit on a log axis: draw it at 1 ns
        ax.bar([max(lo, 1) / 1e3 for lo, _ in bounds], [int(hist.counts[i]) for i in idx],
               width=[w / 1e3 for _, w in bounds], align="edge", color="tab:blue")
        ax.set_xscale("log")
        for q, color in ((50, "tab:green"), (99, "tab:red")):
            us = hist.percentile(q) / 1e3
            ax.axvline(max(us, 1e-3), color=color, linestyle="--", linewidth=1,
                       label=f"p{q} = {us:,.1f} µs")
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata=_PNG_META)
