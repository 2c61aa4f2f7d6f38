"""The tables: the single source of truth for prefloop's data shapes.

Defined in an imported module (never in a Streamlit script) so SQLModel's metadata is built once.
Every schema change goes through a migration in ``storage/migrations/versions``.
"""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_text(text: str) -> str:
    """Key for "the same prompt": NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_key(text: str, system: str | None = None, history: list[dict[str, str]] | None = None) -> str:
    """What makes two prompts "the same": the normalised text, plus system and earlier turns if any.

    A plain prompt's key is ``normalize_text(text)``, so an idea imported as a prompt and the same idea
    in a labels file (same template) are one prompt; a system prompt or a conversation history makes a
    different prompt. ``Prompt.normalized_hash`` is ``text_hash(prompt_key(...))``.
    """
    if not system and not history:
        return normalize_text(text)
    turns = [("system", system or "")] + [(m["role"], m["content"]) for m in history or []] + [("user", text)]
    return "\x1e".join(f"{role}\x1f{normalize_text(content)}" for role, content in turns)


def prompt_messages(prompt: Prompt) -> list[dict[str, str]]:
    """The chat messages a model is given for this prompt: [system], earlier turns, the user text."""
    system = [{"role": "system", "content": prompt.system}] if prompt.system else []
    return [*system, *(prompt.history or []), {"role": "user", "content": prompt.text}]


class Split(StrEnum):
    train = "train"
    eval = "eval"


class Purpose(StrEnum):
    train = "train"
    eval = "eval"


class Choice(StrEnum):
    a = "a"
    b = "b"
    tie = "tie"
    both_bad = "both_bad"
    skip = "skip"


class Strength(IntEnum):
    """How much better the chosen answer is, on a graded (Argilla-style) scale; only with choice a or b."""

    slightly = 1
    much = 2


class Role(StrEnum):
    annotator = "annotator"
    admin = "admin"


class AnnotatorKind(StrEnum):
    human = "human"
    simulated = "simulated"
    imported = "imported"


class VersionKind(StrEnum):
    base = "base"  # a base model (hub name or local path)
    adapter = "adapter"  # a LoRA adapter trained by prefloop on top of a base
    external = "external"  # text written elsewhere (imported labels, Arena battles)


class RunStatus(StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"


class Prompt(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    normalized_hash: str = Field(index=True, unique=True, max_length=64)  # text_hash(prompt_key(...))
    raw: str | None = Field(default=None, sa_column=Column(Text))  # input before --template (e.g. the idea)
    template: str | None = None
    system: str | None = Field(default=None, sa_column=Column(Text))
    # earlier turns of a multi-turn conversation ([{role, content}], user/assistant alternating) that come
    # before ``text``, the final user turn; None for a single-turn prompt (migration 0002)
    history: list[dict[str, str]] | None = Field(default=None, sa_column=Column(JSON))
    source: str = ""
    split: Split = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_version"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)  # "base", "round-1", ... or an external model's name
    kind: VersionKind
    base_model: str = ""  # hub name or local path of the weights; "" for external
    adapter_path: str | None = None
    parent_id: int | None = Field(default=None, foreign_key="model_version.id")
    training_run_id: int | None = Field(default=None, foreign_key="training_run.id")
    created_at: datetime = Field(default_factory=utcnow)


class Round(SQLModel, table=True):
    id: int = Field(primary_key=True)  # the round number: round 0 labels the base model's candidates
    created_at: datetime = Field(default_factory=utcnow)


class Candidate(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("prompt_id", "model_version_id", "text_hash"),)
    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    model_version_id: int = Field(foreign_key="model_version.id", index=True)
    round_id: int | None = Field(default=None, foreign_key="round.id")
    text: str = Field(sa_column=Column(Text, nullable=False))
    text_hash: str = Field(max_length=64)
    sampling: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    seed: int | None = None
    backend: str = ""
    finish_reason: str | None = None  # "stop": ended at end-of-turn; "length": cut at max_new_tokens
    created_at: datetime = Field(default_factory=utcnow)


class Comparison(SQLModel, table=True):
    """Two candidates of one prompt; stored with candidate_a_id < candidate_b_id so a pair exists once."""

    __table_args__ = (UniqueConstraint("candidate_a_id", "candidate_b_id", "purpose"),)
    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    candidate_a_id: int = Field(foreign_key="candidate.id")
    candidate_b_id: int = Field(foreign_key="candidate.id")
    purpose: Purpose = Field(index=True)
    round_id: int | None = Field(default=None, foreign_key="round.id", index=True)
    # position in its round's pair selection (labelling.pairs.select_pairs): the queue serves rank 0 first,
    # so the first N labels of a round are the N pairs the selection chose; None: unranked (served last)
    queue_rank: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Annotator(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    role: Role = Role.annotator
    kind: AnnotatorKind = AnnotatorKind.human
    token_hash: str | None = None
    # bumped by sign-out, revoke and rotate: every session cookie signed under an older value stops working
    session_epoch: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # an imported labels source: the resolved path of the file it was imported from (migration 0005)
    origin: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)


class Judgment(SQLModel, table=True):
    """One decision. Revisions append a row and stamp the old one's ``superseded_at`` (history kept)."""

    __table_args__ = (Index("ix_judgment_current", "comparison_id", "annotator_id", "superseded_at"),)
    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", index=True)
    annotator_id: int = Field(foreign_key="annotator.id", index=True)
    choice: Choice
    left: str | None = Field(default=None, max_length=1)  # "a" or "b": shown on the left; None if unknown
    ms_to_decide: int | None = None
    note: str | None = None
    # graded choices (``annotate.graded_choices``): a Strength value beside an a/b choice; None for a plain
    # pairwise decision and for tie / both bad / skip (migration 0004)
    strength: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    superseded_at: datetime | None = None


class TrainingRun(SQLModel, table=True):
    __tablename__ = "training_run"
    id: int | None = Field(default=None, primary_key=True)
    round_id: int | None = Field(default=None, foreign_key="round.id")
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    data_hash: str = ""
    metrics: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: RunStatus = RunStatus.running
    adapter_path: str | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class Lease(SQLModel, table=True):
    """A pair handed to an annotator and not yet judged; expires so abandoned pairs return to the queue."""

    comparison_id: int = Field(foreign_key="comparison.id", primary_key=True)
    annotator_id: int = Field(foreign_key="annotator.id", primary_key=True)
    expires_at: datetime = Field(index=True)
