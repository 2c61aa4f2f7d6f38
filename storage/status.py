"""What is in the database, as one plain dict (``prefloop status --json`` prints it as is)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import select

from storage.db import session_scope
from storage.models import (
    Annotator,
    AnnotatorKind,
    Candidate,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    Round,
    RunStatus,
    Split,
    TrainingRun,
)
from storage.queries import current


def _counts(session, column, enum) -> dict[str, int]:
    rows = session.exec(select(column, func.count()).group_by(column)).all()
    found = {str(getattr(key, "value", key)): n for key, n in rows}
    return {member.value: found.get(member.value, 0) for member in enum}


def collect_status(engine: Engine) -> dict[str, Any]:
    """Counts of prompts by split, candidates, comparisons and current judgments by purpose, and more.

    ``judgments`` counts current decisions (``superseded_at`` NULL); revised ones are in
    ``superseded_judgments``. ``judgments_by`` breaks current judgments down by round, purpose and
    annotator (round None: imported labels, which belong to no round).
    """
    with session_scope(engine) as session:
        current_judgment = current()
        by_purpose = session.exec(
            select(Comparison.purpose, func.count())
            .join(Judgment, Judgment.comparison_id == Comparison.id)
            .where(current_judgment)
            .group_by(Comparison.purpose)
        ).all()
        breakdown = session.exec(
            select(Comparison.round_id, Comparison.purpose, Annotator.name, Annotator.kind, func.count())
            .join(Judgment, Judgment.comparison_id == Comparison.id)
            .join(Annotator, Annotator.id == Judgment.annotator_id)
            .where(current_judgment)
            .group_by(Comparison.round_id, Comparison.purpose, Annotator.name, Annotator.kind)
        ).all()
        judgments = {p.value: 0 for p in Purpose} | {Purpose(p).value: n for p, n in by_purpose}
        return {
            "prompts": _counts(session, Prompt.split, Split),
            "candidates": session.exec(select(func.count()).select_from(Candidate)).one(),
            "comparisons": _counts(session, Comparison.purpose, Purpose),
            "judgments": judgments,
            "superseded_judgments": session.exec(
                select(func.count()).select_from(Judgment).where(Judgment.superseded_at.is_not(None))
            ).one(),
            "judgments_by": [
                {
                    "round": rnd,
                    "purpose": Purpose(p).value,
                    "annotator": name,
                    "kind": AnnotatorKind(k).value,
                    "count": n,
                }
                for rnd, p, name, k, n in sorted(
                    breakdown, key=lambda r: (r[0] is not None, r[0] or 0, r[1], r[2])
                )
            ],
            "model_versions": list(session.exec(select(ModelVersion.name).order_by(ModelVersion.id))),
            "rounds": list(session.exec(select(Round.id).order_by(Round.id))),
            "annotators": _counts(session, Annotator.kind, AnnotatorKind),
            "training_runs": _counts(session, TrainingRun.status, RunStatus),
        }
