"""A few of the seed's labels: enough for a real DPO run that finishes in seconds."""

from __future__ import annotations

import csv
from pathlib import Path

from core.paths import REPO_ROOT

SEED_LABELS = REPO_ROOT / "data" / "youtube-titles" / "idea-title_pairs-preferences.csv"


def seed_label_subset(path: Path, ideas: int) -> Path:
    """The seed's label CSV cut to its first ``ideas`` ideas (10 labelled pairs each)."""
    with open(SEED_LABELS, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = list(dict.fromkeys(r["idea"] for r in rows))[:ideas]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["idea"] in keep)
    return path
