"""Get-or-create helpers shared by import, generation and training, so every writer stores rows alike."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from storage.models import (
    Annotator,
    AnnotatorKind,
    Candidate,
    Comparison,
    ModelVersion,
    Prompt,
    Purpose,
    Role,
    Round,
    VersionKind,
    text_hash,
)


def get_or_create_round(session: Session, round_id: int) -> Round:
    rnd = session.get(Round, round_id)
    if rnd is None:
        rnd = Round(id=round_id)
        session.add(rnd)
        session.flush()
    return rnd


def get_or_create_version(
    session: Session, name: str, kind: VersionKind, base_model: str = "", **fields: Any
) -> ModelVersion:
    version = session.exec(select(ModelVersion).where(ModelVersion.name == name)).first()
    if version is None:
        version = ModelVersion(name=name, kind=kind, base_model=base_model, **fields)
        session.add(version)
        session.flush()
    return version


def get_or_create_annotator(
    session: Session, name: str, kind: AnnotatorKind = AnnotatorKind.human, role: Role = Role.annotator
) -> Annotator:
    annotator = session.exec(select(Annotator).where(Annotator.name == name)).first()
    if annotator is None:
        annotator = Annotator(name=name, kind=kind, role=role)
        session.add(annotator)
        session.flush()
    return annotator


def get_or_create_candidate(
    session: Session, prompt: Prompt, version: ModelVersion, text: str, **fields: Any
) -> tuple[Candidate, bool]:
    """The candidate with this exact text for (prompt, version); ``created`` is False for a duplicate."""
    digest = text_hash(text)
    found = session.exec(
        select(Candidate).where(
            Candidate.prompt_id == prompt.id,
            Candidate.model_version_id == version.id,
            Candidate.text_hash == digest,
        )
    ).first()
    if found is not None:
        return found, False
    cand = Candidate(prompt_id=prompt.id, model_version_id=version.id, text=text, text_hash=digest, **fields)
    session.add(cand)
    session.flush()
    return cand, True


def get_or_create_comparison(
    session: Session,
    first: Candidate,
    second: Candidate,
    purpose: Purpose,
    round_id: int | None = None,
    queue_rank: int | None = None,
) -> tuple[Comparison, bool]:
    """A pair is stored once per purpose, with the lower candidate id as ``a``; an existing pair keeps
    its ``queue_rank``."""
    if first.prompt_id != second.prompt_id or first.id == second.id:
        raise ValueError("a comparison needs two different candidates of the same prompt")
    a_id, b_id = sorted((first.id, second.id))
    found = session.exec(
        select(Comparison).where(
            Comparison.candidate_a_id == a_id,
            Comparison.candidate_b_id == b_id,
            Comparison.purpose == purpose,
        )
    ).first()
    if found is not None:
        return found, False
    comp = Comparison(
        prompt_id=first.prompt_id,
        candidate_a_id=a_id,
        candidate_b_id=b_id,
        purpose=purpose,
        round_id=round_id,
        queue_rank=queue_rank,
    )
    session.add(comp)
    session.flush()
    return comp, True
