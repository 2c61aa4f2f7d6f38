"""The report's and the Dashboard's figures as PNG bytes (matplotlib's Agg canvas: no display, no global
pyplot state, so the app's threads can draw at once)."""

from __future__ import annotations

import io
import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from matplotlib.dates import DateFormatter, HourLocator
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from evaluation.analysis import Group, Rating

GROUP_STYLE = {"human": ("tab:blue", "o"), "simulated": ("tab:orange", "s"), "imported": ("tab:green", "D")}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


MAX_PAIR_ROWS = 24  # beyond this many model pairs the plot shows each model against all others instead


def win_rate_plot(groups: dict[str, Group]) -> bytes:
    """Win rate over items with Wilson 95% error bars, one colour per annotator kind: each model pair, or,
    with more pairs than ``MAX_PAIR_ROWS``, each model against all the others."""
    pairs = sum(len(g.comparisons) for g in groups.values())
    rows = [
        (kind, f"{c.model} vs {c.baseline}", c.win_rate, c.ci95, c.items)
        for kind, g in groups.items()
        for c in g.comparisons
    ]
    if pairs > MAX_PAIR_ROWS:
        rows = [
            (kind, f"{s.model} vs all others", s.item_win_rate, s.ci95, s.items)
            for kind, g in groups.items()
            for s in g.per_model
        ]
    fig = Figure(figsize=(7, 0.55 * max(len(rows), 2) + 1.4))
    ax = fig.subplots()
    labels = []
    for y, (kind, label, rate, (lo, hi), items) in enumerate(rows):
        colour, marker = GROUP_STYLE.get(kind, ("tab:gray", "^"))
        ax.errorbar(
            rate,
            y,
            xerr=[[rate - lo], [hi - rate]],
            fmt=marker,
            color=colour,
            capsize=4,
            label=kind if kind not in {k for k, *_ in rows[:y]} else None,
        )
        ax.annotate(f"{rate:.2f} ({items} items)", (hi, y), xytext=(6, -3), textcoords="offset points")
        labels.append(label)
    ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("win rate over items (ties count ½), Wilson 95% interval")
    ax.set_title("Head-to-head win rates on eval prompts")
    ax.legend(title="annotators", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _png(fig)


def bradley_terry_plot(ratings: dict[str, Rating], kind: str, scale: str) -> bytes:
    """Rating of every model version with bootstrap 95% bars, highest first (the leaderboard's order)."""
    names = list(ratings)
    fig = Figure(figsize=(7, 0.45 * max(len(names), 2) + 1.6))
    ax = fig.subplots()
    ys = range(len(names))
    values = [ratings[m].rating for m in names]
    lows = [ratings[m].rating - ratings[m].ci95[0] for m in names]
    highs = [ratings[m].ci95[1] - ratings[m].rating for m in names]
    ax.errorbar(values, ys, xerr=[lows, highs], fmt="o", capsize=4, color=GROUP_STYLE.get(kind, ("k",))[0])
    for y, value in zip(ys, values, strict=True):
        ax.annotate(f"{value:.0f}", (value, y), xytext=(0, 7), textcoords="offset points", ha="center")
    ax.set_yticks(
        list(ys),
        [m if ratings[m].round is None else f"{m} (round {ratings[m].round})" for m in names],
    )
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel("Bradley-Terry rating (Elo scale)")
    ax.set_title(f"Bradley-Terry leaderboard, bootstrap 95% intervals ({kind} annotators)", fontsize=10)
    fig.text(0.01, -0.02, scale.split(";")[1].strip() if ";" in scale else scale, fontsize=7, wrap=True)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


MAX_BINS = 60


def length_bins(every: Sequence[int], band: tuple[int, int] | None) -> np.ndarray:
    """Bin edges that fit the data's range: numpy's "auto" rule, at most ``MAX_BINS`` bins, whole numbers."""
    top = max([*every, (band[1] + 10) if band else 1])
    edges = np.histogram_bin_edges(list(every) or [0], bins="auto", range=(0, top))
    if len(edges) - 1 > MAX_BINS:
        edges = np.linspace(0, top, MAX_BINS + 1)
    width = max(1, round(float(edges[1] - edges[0])))
    return np.arange(0, top + width + 1, width)


def length_plot(lengths: dict[str, Sequence[int]], band: tuple[int, int] | None, base: str | None) -> bytes:
    """Length distribution (characters) of each model's eval outputs, with the title band when the
    prompts ask for titles."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    every = [n for values in lengths.values() for n in values]
    bins = length_bins(every, band)
    if band:
        ax.axvspan(*band, color="green", alpha=0.08, label=f"title band {band[0]}-{band[1]} chars")
    for name, values in lengths.items():
        style = {"color": "black", "linewidth": 2.2} if name == base else {"linewidth": 1.4}
        weights = [1 / len(values)] * len(values)
        ax.hist(
            values, bins=bins, weights=weights, histtype="step", label=f"{name} (n={len(values)})", **style
        )
    ax.set_xlabel(f"output length (characters, {int(bins[1] - bins[0])}-character bins)")
    ax.set_ylabel("share of the model's outputs")
    ax.set_title("Output length of each model on eval prompts")
    ax.legend(fontsize=8)
    return _png(fig)


def throughput_plot(per_hour: dict[str, dict[datetime, int]]) -> bytes:
    """Decisions per clock hour (UTC) of each annotator, as points joined by a thin line; hours without
    a decision count as 0, so a pause shows as a dip rather than a missing stretch."""
    hours = sorted({h for counts in per_hour.values() for h in counts})
    span = [
        hours[0] + timedelta(hours=i) for i in range(int((hours[-1] - hours[0]).total_seconds() // 3600) + 1)
    ]
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    for name, counts in sorted(per_hour.items()):
        values = [counts.get(h, 0) for h in span]
        ax.plot(span, values, marker="o", linewidth=1, label=f"{name} ({sum(values)})")
    ax.set_ylim(bottom=0)
    # explicit limits: a single hour would otherwise be widened to days of hourly ticks
    ax.set_xlim(span[0] - timedelta(minutes=30), span[-1] + timedelta(minutes=30))
    ax.set_ylabel("decisions per hour")
    ax.set_xlabel("hour (UTC)")
    ax.xaxis.set_major_locator(HourLocator(interval=max(1, len(span) // 6)))  # whole hours, <= ~7 ticks
    ax.xaxis.set_major_formatter(DateFormatter("%m-%d %H:00"))
    fig.autofmt_xdate()
    ax.set_title("Labelling throughput")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="annotator (decisions)", fontsize=8, title_fontsize=8)
    return _png(fig)


def decide_time_plot(seconds: dict[str, Sequence[float]]) -> bytes:
    """Distribution of seconds from showing a pair to the decision, per annotator: share of each one's
    decisions in log-spaced bins (times are skewed: most are quick, a few are long pauses)."""
    every = [s for values in seconds.values() for s in values]
    low, high = max(min(every), 0.1), max(max(every), 1.0)
    edges = [low * (high / low) ** (i / 24) for i in range(25)] if high > low else [low * 0.9, high * 1.1]
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    for name, values in sorted(seconds.items()):
        clipped = [min(max(v, low), high) for v in values]
        ax.hist(
            clipped,
            bins=edges,
            weights=[1 / len(values)] * len(values),
            histtype="step",
            linewidth=1.4,
            label=f"{name} (n={len(values)}, median {statistics.median(values):.1f} s)",
        )
    ax.set_xscale("log")
    seconds_label = FuncFormatter(lambda value, _pos: f"{value:g}")  # "2", "10", not "2 × 10⁰"
    ax.xaxis.set_major_formatter(seconds_label)
    ax.xaxis.set_minor_formatter(seconds_label)
    ax.set_xlabel("seconds to decide (log scale)")
    ax.set_ylabel("share of the annotator's decisions")
    ax.set_title("Time to decide")
    ax.legend(fontsize=8)
    return _png(fig)
