"""Files written next to an adapter from a run's per-step metrics: ``metrics.csv`` and ``loss_curve.png``."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LEADING_COLUMNS = ("step", "epoch", "loss", "eval_loss", "rewards/accuracies", "rewards/margins")


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key that occurs, the common ones first, the rest sorted (a stable CSV header)."""
    seen = {key for row in rows for key in row}
    lead = [key for key in LEADING_COLUMNS if key in seen]
    return lead + sorted(seen - set(lead))


def write_metrics_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """One line per logging step (train and eval rows alike; absent figures left empty)."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=metric_columns(rows), restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def curve(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one metric over the run, skipping rows that lack it."""
    points = [(row["step"], row[key]) for row in rows if key in row and "step" in row]
    return [float(s) for s, _ in points], [float(v) for _, v in points]


def loss_curve_figure(rows: list[dict[str, Any]], title: str = "DPO training") -> Figure:
    """Training loss as a line and validation loss as points (logged at a few steps only), against step;
    reward accuracy alike on a second panel. Each series joins only its own steps, so a training line
    never breaks where an evaluation row has no training figure."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in the app's threads

    fig = Figure(figsize=(10, 3.8), layout="tight")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, series in (
        (ax_loss, (("loss", "train loss", "-"), ("eval_loss", "validation loss", "o--"))),
        (ax_acc, (("rewards/accuracies", "train", "-"), ("eval_rewards/accuracies", "validation", "o--"))),
    ):
        for key, label, style in series:
            steps, values = curve(rows, key)
            if steps:
                ax.plot(steps, values, style, label=label)
        if ax.lines:
            ax.legend()
    ax_loss.set(xlabel="step", ylabel="loss", title=title)
    ax_acc.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax_acc.set(xlabel="step", ylabel="reward accuracy", ylim=(0, 1), title="chosen reward > rejected")
    return fig


def loss_curve_png(rows: list[dict[str, Any]], title: str = "DPO training") -> bytes:
    buf = io.BytesIO()
    loss_curve_figure(rows, title).savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def plot_loss_curve(rows: list[dict[str, Any]], path: Path, title: str = "DPO training") -> Path:
    """``loss_curve_png`` written next to the adapter."""
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(loss_curve_png(rows, title))
    os.replace(tmp, path)
    return path
