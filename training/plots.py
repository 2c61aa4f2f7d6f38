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


# (panel, y label, title, series (metric key, legend label, line style)): a line for the training
# figure logged every few steps, points joined by a dashed line for validation (logged a few times)
PANELS = {
    "loss": ("loss", None, (("loss", "train loss", "-"), ("eval_loss", "validation loss", "o--"))),
    "accuracy": (
        "reward accuracy",
        "chosen reward > rejected",
        (("rewards/accuracies", "train", "-"), ("eval_rewards/accuracies", "validation", "o--")),
    ),
}


def loss_curve_figure(
    rows: list[dict[str, Any]], title: str = "DPO training", panels: tuple[str, ...] = tuple(PANELS)
) -> Figure:
    """Training loss as a line and validation loss as points against step, and reward accuracy alike,
    side by side (``panels`` picks which). Each series joins only its own steps, so a training line never
    breaks where an evaluation row has no training figure."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot state: safe in the app's threads

    fig = Figure(figsize=(5 * len(panels), 3.8), layout="tight")
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        ylabel, panel_title, series = PANELS[panel]
        for key, label, style in series:
            steps, values = curve(rows, key)
            if steps:
                ax.plot(steps, values, style, label=label)
        if ax.lines:
            ax.legend()
        if panel == "accuracy":
            ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
            ax.set_ylim(0, 1)
        ax.set(xlabel="step", ylabel=ylabel, title=panel_title or title)
    return fig


def loss_curve_png(
    rows: list[dict[str, Any]], title: str = "DPO training", panels: tuple[str, ...] = tuple(PANELS)
) -> bytes:
    buf = io.BytesIO()
    loss_curve_figure(rows, title, panels).savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def plot_loss_curve(rows: list[dict[str, Any]], path: Path, title: str = "DPO training") -> Path:
    """``loss_curve_png`` written next to the adapter."""
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(loss_curve_png(rows, title))
    os.replace(tmp, path)
    return path
