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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import aliased
from sqlmodel import select

from core.config import AnnotateConfig
from evaluation.analysis import canonical_first_is_a
from evaluation.stats import agreement_pairs, binomial_p, cohen_kappa, krippendorff_alpha_nominal
from storage.db import session_scope
from storage.models import (
    Annotator,
    AnnotatorKind,
    Candidate,
    Choice,
    Comparison,
    Judgment,
    ModelVersion,
    Purpose,
    TrainingRun,
)
from storage.queries import current

NO_ROUND = "no round"  # label for pairs outside the rounds (imported labels, Compare votes)
PAUSE = timedelta(minutes=10)  # a longer gap between two decisions is a break, not labelling time
THROUGHPUT_WINDOW = timedelta(hours=72)  # the throughput chart's span, back from the newest decision


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
    created_at: datetime  # UTC, naive (SQLite returns naive, PostgreSQL aware: normalised on load)
    a_is_first: bool = True  # side a is the pair's canonical first candidate (agreement labels use it)


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
                Judgment.created_at,
            )
            .join(Comparison, Comparison.id == Judgment.comparison_id)
            .join(Annotator, Annotator.id == Judgment.annotator_id)
            .where(current())
        )
        cand_a, cand_b = aliased(Candidate), aliased(Candidate)
        ver_a, ver_b = aliased(ModelVersion), aliased(ModelVersion)
        sides = (
            select(Comparison.id, ver_a.name, cand_a.text, ver_b.name, cand_b.text)
            .join(cand_a, cand_a.id == Comparison.candidate_a_id)
            .join(cand_b, cand_b.id == Comparison.candidate_b_id)
            .join(ver_a, ver_a.id == cand_a.model_version_id)
            .join(ver_b, ver_b.id == cand_b.model_version_id)
        )
        a_is_first = {cid: canonical_first_is_a(*texts) for cid, *texts in session.exec(sides)}
        judgments = [
            JudgmentRow(
                cid, rid, purpose.value, name, kind.value, choice.value, left, ms, _utc(at), a_is_first[cid]
            )
            for cid, rid, purpose, name, kind, choice, left, ms, at in session.exec(query)
        ]
    return pairs, judgments


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


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
    """Per annotator: volume, speed (median seconds per decision, decisions per active hour), tie and
    both-bad rates, and position bias (left-choice rate with an exact two-sided binomial p-value against
    50%, over decisive judgments whose display order is known)."""
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
                "decisions / h": decisions_per_active_hour([j.created_at for j in decided]),
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


def _oriented(j: JudgmentRow) -> str:
    """ "first"/"second" by the pair's canonical order (not by which candidate was stored first), or the
    choice itself for tie and both bad."""
    if j.choice not in (Choice.a, Choice.b):
        return j.choice
    return "first" if (j.choice == Choice.a) == j.a_is_first else "second"


def _labels_on_shared_pairs(judgments: Sequence[JudgmentRow]) -> dict[int, dict[str, str]]:
    labels: dict[int, dict[str, str]] = defaultdict(dict)
    for j in judgments:
        if j.choice != Choice.skip:
            labels[j.comparison_id][j.annotator] = _oriented(j)
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


def decisions_per_active_hour(times: Sequence[datetime], pause: timedelta = PAUSE) -> float | None:
    """Decisions per hour while labelling: 3600 / the mean seconds between consecutive decisions, with
    gaps longer than ``pause`` (a break, another day) left out; None with fewer than two decisions."""
    ordered = sorted(times)
    gaps = [(b - a).total_seconds() for a, b in zip(ordered, ordered[1:], strict=False)]
    working = [g for g in gaps if g <= pause.total_seconds()]
    if not working:
        return None
    return 3600 * len(working) / max(sum(working), 1e-3)


def decisions_per_hour(judgments: Sequence[JudgmentRow]) -> dict[str, dict[datetime, int]]:
    """Human decisions (skips excluded) per annotator and clock hour (UTC), over the last
    ``THROUGHPUT_WINDOW`` before the newest one; simulated and imported annotators are left out."""
    human = [j for j in judgments if j.annotator_kind == AnnotatorKind.human and j.choice != Choice.skip]
    if not human:
        return {}
    since = max(j.created_at for j in human) - THROUGHPUT_WINDOW
    counts: dict[str, Counter[datetime]] = defaultdict(Counter)
    for j in human:
        if j.created_at > since:
            counts[j.annotator][j.created_at.replace(minute=0, second=0, microsecond=0)] += 1
    return {name: dict(c) for name, c in counts.items()}


def decide_seconds(judgments: Sequence[JudgmentRow]) -> dict[str, list[float]]:
    """Seconds from showing the pair to the decision, per human annotator (skips and untimed left out)."""
    out: dict[str, list[float]] = defaultdict(list)
    for j in judgments:
        if j.annotator_kind == AnnotatorKind.human and j.choice != Choice.skip and j.ms_to_decide is not None:
            out[j.annotator].append(j.ms_to_decide / 1000)
    return dict(out)


def training_runs(engine: Engine) -> list[TrainingRun]:
    with session_scope(engine) as session:
        return list(session.exec(select(TrainingRun).order_by(TrainingRun.id)))


def read_report(report_json: Path) -> dict[str, Any] | None:
    """The latest ``prefloop report`` (report.json), or None until one exists."""
    try:
        report = json.loads(report_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return report if isinstance(report, dict) else None


def win_rate_rows(report: dict[str, Any]) -> list[dict]:
    """Each model against each baseline, per annotator kind: the table beside the report's win-rate
    figure (``win_rates.png``), with the report's unit (items) and the judgments behind them."""
    return [
        {
            "annotators": kind,
            "model": comp.get("model"),
            "baseline": comp.get("baseline"),
            "items": comp.get("items"),
            "judgments": comp.get("n"),
            "win rate": comp.get("win_rate"),
            "95% low": (comp.get("ci95") or [None, None])[0],
            "95% high": (comp.get("ci95") or [None, None])[1],
            "p (sign)": comp.get("p_value"),
        }
        for kind, group in (report.get("groups") or {}).items()
        for comp in group.get("comparisons") or []
    ]
