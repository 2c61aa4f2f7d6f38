"""The report's figures as PNG bytes (matplotlib's Agg canvas: no display, no global pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

GROUP_STYLE = {"human": ("tab:blue", "o"), "simulated": ("tab:orange", "s"), "imported": ("tab:green", "D")}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def win_rate_plot(groups: dict[str, list[dict[str, Any]]]) -> bytes:
    """Win rate of each model against each baseline, Wilson 95% error bars, one colour per annotator kind."""
    rows = [(kind, c) for kind, comps in groups.items() for c in comps]
    fig = Figure(figsize=(7, 0.55 * max(len(rows), 2) + 1.4))
    ax = fig.subplots()
    labels = []
    for y, (kind, comp) in enumerate(rows):
        colour, marker = GROUP_STYLE.get(kind, ("tab:gray", "^"))
        lo, hi = comp["ci95"]
        ax.errorbar(
            comp["win_rate"],
            y,
            xerr=[[comp["win_rate"] - lo], [hi - comp["win_rate"]]],
            fmt=marker,
            color=colour,
            capsize=4,
            label=kind if kind not in {k for k, _ in rows[:y]} else None,
        )
        ax.annotate(
            f"{comp['win_rate']:.2f} (n={comp['n']})", (hi, y), xytext=(6, -3), textcoords="offset points"
        )
        labels.append(f"{comp['model']} vs {comp['baseline']}")
    ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("win rate (ties count ½), Wilson 95% interval")
    ax.set_title("Head-to-head win rates on held-out prompts")
    ax.legend(title="annotators", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _png(fig)


def bradley_terry_plot(ratings: dict[str, dict[str, Any]], kind: str) -> bytes:
    """Rating of every model version with bootstrap 95% bars, in round order (external models last)."""
    names = sorted(ratings, key=lambda m: (ratings[m]["round"] is None, ratings[m]["round"] or 0))
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    xs = range(len(names))
    values = [ratings[m]["rating"] for m in names]
    lows = [ratings[m]["rating"] - ratings[m]["ci95"][0] for m in names]
    highs = [ratings[m]["ci95"][1] - ratings[m]["rating"] for m in names]
    in_rounds = [i for i, m in enumerate(names) if ratings[m]["round"] is not None]
    if len(in_rounds) > 1:
        ax.plot([xs[i] for i in in_rounds], [values[i] for i in in_rounds], color="lightgray", zorder=0)
    ax.errorbar(xs, values, yerr=[lows, highs], fmt="o", capsize=5, color=GROUP_STYLE.get(kind, ("k",))[0])
    for x, value in zip(xs, values, strict=True):
        ax.annotate(f"{value:.0f}", (x, value), xytext=(8, 0), textcoords="offset points", va="center")
    ax.set_xticks(
        list(xs),
        [m if ratings[m]["round"] is None else f"{m}\n(round {ratings[m]['round']})" for m in names],
    )
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel("Bradley-Terry rating (Elo scale)")
    ax.set_title(f"Ratings per round, bootstrap 95% intervals ({kind} annotators)")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def length_plot(lengths: dict[str, Sequence[int]], band: tuple[int, int], base: str) -> bytes:
    """Length distribution (characters) of each model's eval outputs against base, with the target band."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    every = [n for values in lengths.values() for n in values]
    top = max([*every, band[1] + 10])
    bins = range(0, top + 6, 5)
    ax.axvspan(*band, color="green", alpha=0.08, label=f"target {band[0]}-{band[1]} chars")
    for name, values in lengths.items():
        style = {"color": "black", "linewidth": 2.2} if name == base else {"linewidth": 1.4}
        weights = [1 / len(values)] * len(values)
        ax.hist(
            values, bins=bins, weights=weights, histtype="step", label=f"{name} (n={len(values)})", **style
        )
    ax.set_xlabel("output length (characters, 5-character bins)")
    ax.set_ylabel("share of the model's outputs")
    ax.set_title("Output length of each model on eval prompts, against base")
    ax.legend(fontsize=8)
    return _png(fig)
