"""Files written next to an adapter from a run's per-step metrics: ``metrics.csv`` and ``loss_curve.png``."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

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


def plot_loss_curve(rows: list[dict[str, Any]], path: Path, title: str = "DPO training") -> Path:
    """Training and validation loss against step, and reward accuracy on a second panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label, style in (("loss", "train loss", "-"), ("eval_loss", "validation loss", "o--")):
        steps, values = curve(rows, key)
        if steps:
            ax_loss.plot(steps, values, style, label=label)
    ax_loss.set(xlabel="step", ylabel="loss", title=title)
    ax_loss.legend()
    for key, label, style in (
        ("rewards/accuracies", "train", "-"),
        ("eval_rewards/accuracies", "validation", "o--"),
    ):
        steps, values = curve(rows, key)
        if steps:
            ax_acc.plot(steps, values, style, label=label)
    ax_acc.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax_acc.set(xlabel="step", ylabel="reward accuracy", ylim=(0, 1), title="chosen reward > rejected")
    ax_acc.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
