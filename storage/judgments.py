"""The one query both the report and the Arena export start from: current judgments of eval pairs."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from storage.models import Annotator, Candidate, Choice, Comparison, Judgment, ModelVersion, Prompt, Purpose
from storage.queries import current


@dataclass(frozen=True)
class EvalJudgment:
    judgment: Judgment
    annotator: Annotator
    prompt: Prompt
    candidate_a: Candidate  # the comparison's side "a" (lower candidate id), not the screen side
    candidate_b: Candidate
    version_a: ModelVersion
    version_b: ModelVersion


def current_eval_judgments(session: Session) -> list[EvalJudgment]:
    """Judgments of eval pairs that are current (not superseded by a revision) and not skips, oldest first."""
    cand_a, cand_b = aliased(Candidate), aliased(Candidate)
    ver_a, ver_b = aliased(ModelVersion), aliased(ModelVersion)
    query = (
        select(Judgment, Annotator, Prompt, cand_a, cand_b, ver_a, ver_b)
        .join(Comparison, Judgment.comparison_id == Comparison.id)
        .join(Annotator, Judgment.annotator_id == Annotator.id)
        .join(Prompt, Comparison.prompt_id == Prompt.id)
        .join(cand_a, Comparison.candidate_a_id == cand_a.id)
        .join(cand_b, Comparison.candidate_b_id == cand_b.id)
        .join(ver_a, cand_a.model_version_id == ver_a.id)
        .join(ver_b, cand_b.model_version_id == ver_b.id)
        .where(
            Comparison.purpose == Purpose.eval,
            current(),
            Judgment.choice != Choice.skip,
        )
        .order_by(Judgment.id)
    )
    return [EvalJudgment(*row) for row in session.exec(query)]
