"""Read queries more than one layer asks; ``current()`` is the one meaning of "a current judgment"."""

from __future__ import annotations

from sqlalchemy import or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, func, select

from storage.models import (
    Annotator,
    Candidate,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    Split,
    TrainingRun,
)


def current():
    """SQL condition: a judgment not superseded by a revision (the decision its annotator stands by)."""
    return Judgment.superseded_at.is_(None)


def prompt_ids(session: Session, split: Split) -> list[int]:
    return list(session.exec(select(Prompt.id).where(Prompt.split == split).order_by(Prompt.id)))


def candidates_by_prompt(session: Session, version_id: int, prompt_ids: list[int]) -> dict[int, list[int]]:
    """Candidate ids of one version per prompt (only prompts that have some)."""
    found: dict[int, list[int]] = {}
    if not prompt_ids:
        return found
    rows = session.exec(
        select(Candidate.prompt_id, Candidate.id)
        .where(Candidate.model_version_id == version_id, Candidate.prompt_id.in_(prompt_ids))
        .order_by(Candidate.id)
    )
    for prompt_id, cand_id in rows:
        found.setdefault(prompt_id, []).append(cand_id)
    return found


def comparison_count(session: Session, round_id: int, purpose: Purpose) -> int:
    return session.exec(
        select(func.count())
        .select_from(Comparison)
        .where(Comparison.round_id == round_id, Comparison.purpose == purpose)
    ).one()


def eval_pairs_against(session: Session, round_id: int, baseline_id: int) -> int:
    """Round ``round_id``'s eval pairs with a candidate of version ``baseline_id`` on either side."""
    side_a, side_b = aliased(Candidate), aliased(Candidate)
    return session.exec(
        select(func.count())
        .select_from(Comparison)
        .join(side_a, side_a.id == Comparison.candidate_a_id)
        .join(side_b, side_b.id == Comparison.candidate_b_id)
        .where(
            Comparison.round_id == round_id,
            Comparison.purpose == Purpose.eval,
            or_(side_a.model_version_id == baseline_id, side_b.model_version_id == baseline_id),
        )
    ).one()


def training_data_hash(session: Session, version: ModelVersion | None) -> str | None:
    """The hash of the labels ``version`` was trained on (None for a version without a training run)."""
    if version is None or version.training_run_id is None:
        return None
    run = session.get(TrainingRun, version.training_run_id)
    return run.data_hash if run else None


def candidate_count(session: Session) -> int:
    return session.exec(select(func.count(Candidate.id))).one()


def train_prompt_ids(session: Session) -> list[int]:
    """The train split's prompt ids, in import order."""
    return list(session.exec(select(Prompt.id).where(Prompt.split == Split.train).order_by(Prompt.id)))


def annotators_with_judgments(session: Session) -> list[tuple[Annotator, int]]:
    """Every annotator by name, with their number of current judgments."""
    counts = dict(
        session.exec(
            select(Judgment.annotator_id, func.count()).where(current()).group_by(Judgment.annotator_id)
        ).all()
    )
    return [(a, counts.get(a.id, 0)) for a in session.exec(select(Annotator).order_by(Annotator.name))]
