"""Compare's blind votes into the eval pool: two versions' answers to one prompt become an eval pair.

The Compare page shows two anonymous answers side by side; when the admin votes, the answers are stored
as candidates of an eval comparison (created once per pair of texts) and the vote as a judgment with the
side that was on the left and the time to decide, all in one transaction. (Not through
``record_judgment``: that one accepts only the pair leased to the annotator on the Annotate page, and a
Compare pair is never leased: the admin made it by asking.) The report, the Arena export
and the Dashboard then count it like any other eval judgment, and the pair stays open on the Annotate
page until it has ``overlap_eval`` decisions. A prompt typed in Compare is stored in the eval split; a
prompt already in the train split is refused, since the model may have been trained on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine
from sqlmodel import col, select

from core.errors import PrefloopError
from labelling.assignment import Side, side_to_choice
from storage.db import session_scope
from storage.imports import store_prompts
from storage.models import Candidate, Choice, Judgment, ModelVersion, Prompt, Purpose, Split, text_hash
from storage.parsing import PromptRecord
from storage.repo import get_or_create_candidate, get_or_create_comparison

SOURCE = "compare"  # Prompt.source of prompts typed in Compare


@dataclass(frozen=True)
class Answer:
    """One version's reply as it was shown, with how it was sampled (stored with the candidate)."""

    version: str  # ModelVersion.name
    text: str
    sampling: dict[str, Any]
    seed: int
    backend: str
    finish_reason: str | None


def held_out_prompts(engine: Engine, limit: int = 500) -> list[Prompt]:
    """Eval-split prompts to pick from, oldest first (the seed data's held-out ideas come first)."""
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(Prompt).where(Prompt.split == Split.eval).order_by(col(Prompt.id)).limit(limit)
            )
        )


def split_of(engine: Engine, record: PromptRecord) -> Split | None:
    """The split of the stored prompt with this record's key, or None when it is new."""
    with session_scope(engine) as session:
        found = session.exec(
            select(Prompt.split).where(Prompt.normalized_hash == text_hash(record.key))
        ).first()
    return found


def store_battle(
    engine: Engine,
    record: PromptRecord,
    template: str | None,
    left: Answer,
    right: Answer,
    vote: Literal["left", "right", "tie", "both_bad"],
    annotator_id: int,
    ms_to_decide: int | None = None,
) -> Judgment:
    """Store the prompt (eval split if new), both answers, their eval comparison and the vote (in screen
    terms: left, right, tie, both_bad) in one transaction; returns the judgment."""
    if left.version == right.version:
        raise PrefloopError(f"both answers are from {left.version!r}: a battle needs two model versions")
    with session_scope(engine, write=True) as session:
        prompts, _ = store_prompts(
            session, [record], template=template, split=Split.eval, source=SOURCE, eval_share=1.0
        )
        prompt = prompts[record.key]
        if prompt.split != Split.eval:
            raise PrefloopError(
                f"prompt {prompt.id} is a training prompt: a vote on it would measure a model on what it "
                "was trained on. Pick a held-out prompt or type a new one."
            )
        versions = {
            v.name: v
            for v in session.exec(
                select(ModelVersion).where(col(ModelVersion.name).in_([left.version, right.version]))
            )
        }
        shown: list[Candidate] = []
        for ans in (left, right):
            if ans.version not in versions:
                raise PrefloopError(f"model version {ans.version!r} does not exist (any more)")
            cand, _ = get_or_create_candidate(
                session,
                prompt,
                versions[ans.version],
                ans.text,
                sampling=ans.sampling,
                seed=ans.seed,
                backend=ans.backend,
                finish_reason=ans.finish_reason,
            )
            shown.append(cand)
        comp, _ = get_or_create_comparison(session, shown[0], shown[1], Purpose.eval)
        already = session.exec(
            select(Judgment.id).where(
                Judgment.comparison_id == comp.id,
                Judgment.annotator_id == annotator_id,
                col(Judgment.superseded_at).is_(None),
            )
        ).first()
        if already is not None:
            raise PrefloopError(f"you have already voted on these two answers (pair {comp.id})")
        left_side: Side = "a" if shown[0].id == comp.candidate_a_id else "b"
        choice = side_to_choice(vote, left_side) if vote in ("left", "right") else Choice(vote)
        judgment = Judgment(
            comparison_id=comp.id,
            annotator_id=annotator_id,
            choice=choice,
            left=left_side,
            ms_to_decide=ms_to_decide,
        )
        session.add(judgment)
        session.flush()
        return judgment
