"""The Dashboard's numbers: one query for the rows, then pure functions (testable without Streamlit).

Only current judgments count (a revision or undo supersedes the old row). Skips are counted but are not
decisions: they are left out of rates, overlap coverage and agreement. The statistics themselves come
from ``evaluation.stats`` so the Dashboard and the report never disagree.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from core.config import AnnotateConfig
from evaluation.stats import agreement_pairs, binomial_p, cohen_kappa, krippendorff_alpha_nominal
from storage.db import session_scope
from storage.models import Annotator, Choice, Comparison, Judgment, Purpose, TrainingRun
from storage.queries import current

NO_ROUND = "imported"  # label for pairs without a round (imported labels)


@dataclass(frozen=True)
class JudgmentRow:
    comparison_id: int
    round_id: int | None
    purpose: str
    annotator: str
    annotator_kind: str
    choice: str
    left: str | None
    ms_to_decide: int | None


@dataclass(frozen=True)
class PairRow:
    comparison_id: int
    round_id: int | None
    purpose: str


def load_rows(engine: Engine) -> tuple[list[PairRow], list[JudgmentRow]]:
    with session_scope(engine) as session:
        pairs = [
            PairRow(cid, rid, purpose.value)
            for cid, rid, purpose in session.exec(
                select(Comparison.id, Comparison.round_id, Comparison.purpose)
            )
        ]
        query = (
            select(
                Judgment.comparison_id,
                Comparison.round_id,
                Comparison.purpose,
                Annotator.name,
                Annotator.kind,
                Judgment.choice,
                Judgment.left,
                Judgment.ms_to_decide,
            )
            .join(Comparison, Comparison.id == Judgment.comparison_id)
            .join(Annotator, Annotator.id == Judgment.annotator_id)
            .where(current())
        )
        judgments = [
            JudgmentRow(cid, rid, purpose.value, name, kind.value, choice.value, left, ms)
            for cid, rid, purpose, name, kind, choice, left, ms in session.exec(query)
        ]
    return pairs, judgments


def _round_label(round_id: int | None) -> str:
    return NO_ROUND if round_id is None else str(round_id)


def round_table(
    pairs: Sequence[PairRow], judgments: Sequence[JudgmentRow], settings: AnnotateConfig
) -> list[dict]:
    """Per round: pairs (train/eval), decisions, skips, and coverage = share of pairs whose overlap is met."""
    decisions = Counter(j.comparison_id for j in judgments if j.choice != Choice.skip)
    skips = Counter(j.round_id for j in judgments if j.choice == Choice.skip)
    by_round: dict[int | None, list[PairRow]] = defaultdict(list)
    for pair in pairs:
        by_round[pair.round_id].append(pair)
    table = []
    for round_id in sorted(by_round, key=lambda r: (r is None, -(r or 0))):
        rows = by_round[round_id]
        wanted = {
            p.comparison_id: settings.overlap_eval if p.purpose == Purpose.eval else settings.overlap_train
            for p in rows
        }
        covered = sum(decisions[cid] >= need for cid, need in wanted.items())
        table.append(
            {
                "round": _round_label(round_id),
                "train pairs": sum(p.purpose == Purpose.train for p in rows),
                "eval pairs": sum(p.purpose == Purpose.eval for p in rows),
                "decisions": sum(decisions[cid] for cid in wanted),
                "skips": skips[round_id],
                "coverage": covered / len(rows),
            }
        )
    return table


def annotator_table(judgments: Sequence[JudgmentRow]) -> list[dict]:
    """Per annotator: volume, speed, tie and both-bad rates, and position bias (left-choice rate with an
    exact two-sided binomial p-value against 50%, over decisive judgments whose display order is known)."""
    by_name: dict[str, list[JudgmentRow]] = defaultdict(list)
    for j in judgments:
        by_name[j.annotator].append(j)
    kappas = mean_kappa_by_annotator(judgments)
    table = []
    for name in sorted(by_name):
        rows = by_name[name]
        decided = [j for j in rows if j.choice != Choice.skip]
        timed = [j.ms_to_decide for j in decided if j.ms_to_decide is not None]
        sided = [j for j in decided if j.choice in (Choice.a, Choice.b) and j.left in ("a", "b")]
        left_hits = sum(j.choice == j.left for j in sided)
        table.append(
            {
                "annotator": name,
                "kind": rows[0].annotator_kind,
                "decisions": len(decided),
                "skips": len(rows) - len(decided),
                "median s": statistics.median(timed) / 1000 if timed else None,
                "tie rate": _share(sum(j.choice == Choice.tie for j in decided), len(decided)),
                "both-bad rate": _share(sum(j.choice == Choice.both_bad for j in decided), len(decided)),
                "left-choice rate": _share(left_hits, len(sided)),
                "left p-value": binomial_p(left_hits, len(sided)) if sided else None,
                "mean κ vs others": kappas.get(name),
            }
        )
    return table


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _labels_on_shared_pairs(judgments: Sequence[JudgmentRow]) -> dict[int, dict[str, str]]:
    labels: dict[int, dict[str, str]] = defaultdict(dict)
    for j in judgments:
        if j.choice != Choice.skip:
            labels[j.comparison_id][j.annotator] = j.choice
    return {cid: by for cid, by in labels.items() if len(by) > 1}


def pairwise_kappa(judgments: Sequence[JudgmentRow]) -> list[dict]:
    """Cohen's κ for every two annotators who judged at least one pair in common."""
    table = []
    for (first, second), (xs, ys) in sorted(agreement_pairs(_labels_on_shared_pairs(judgments)).items()):
        kappa = cohen_kappa(xs, ys)
        table.append(
            {
                "annotators": f"{first} × {second}",
                "shared pairs": len(xs),
                "agreement": sum(x == y for x, y in zip(xs, ys, strict=True)) / len(xs),
                "κ": None if math.isnan(kappa) else kappa,
            }
        )
    return table


def mean_kappa_by_annotator(judgments: Sequence[JudgmentRow]) -> dict[str, float]:
    per: dict[str, list[float]] = defaultdict(list)
    for row in pairwise_kappa(judgments):
        if row["κ"] is not None:
            for name in row["annotators"].split(" × "):
                per[name].append(row["κ"])
    return {name: statistics.fmean(values) for name, values in per.items()}


def overall_alpha(judgments: Sequence[JudgmentRow]) -> tuple[float | None, int]:
    """Krippendorff's α (nominal) over all pairs with two or more decisions, and how many there were."""
    shared = _labels_on_shared_pairs(judgments)
    if not shared:
        return None, 0
    alpha = krippendorff_alpha_nominal([list(by.values()) for by in shared.values()])
    return (None if math.isnan(alpha) else alpha), len(shared)


def training_runs(engine: Engine) -> list[TrainingRun]:
    with session_scope(engine) as session:
        return list(session.exec(select(TrainingRun).order_by(TrainingRun.id)))


def loss_curve(metrics: Sequence[dict[str, Any]]) -> dict[str, dict[float, float]]:
    """``{series: {step: value}}`` for the logged losses and reward accuracy; other keys are ignored."""
    curves: dict[str, dict[float, float]] = defaultdict(dict)
    for i, entry in enumerate(metrics):
        step = entry.get("step", i)
        for key in ("loss", "eval_loss", "rewards/accuracies", "eval_rewards/accuracies"):
            value = entry.get(key)
            if isinstance(value, int | float) and not math.isnan(value):
                curves[key][step] = float(value)
    return dict(curves)


def win_rate_history(report_json: Path) -> list[dict]:
    """Each model against its baseline from the latest ``prefloop report`` (one row per round's model);
    empty until a report exists."""
    try:
        report = json.loads(report_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return [
        {
            "model": comp.get("model"),
            "baseline": comp.get("baseline"),
            "win rate": comp.get("win_rate"),
            "ci95 low": (comp.get("ci95") or [None, None])[0],
            "ci95 high": (comp.get("ci95") or [None, None])[1],
            "n": comp.get("n"),
            "p-value": comp.get("p_value"),
        }
        for comp in report.get("comparisons", [])
    ]
