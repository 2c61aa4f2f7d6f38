"""Chatbot Arena battle files in and out, so judgments made elsewhere get the same statistics.

One JSON object per line::

    {"model_a": "base", "model_b": "round-1", "winner": "model_b", "judge": "alice",
     "prompt": "...", "response_a": "...", "response_b": "..."}

``winner`` is ``model_a``, ``model_b``, ``tie`` or ``tie (bothbad)``. Instead of ``prompt`` and the two
responses a row may carry Arena's single-turn ``conversation_a`` / ``conversation_b`` message lists.

Import creates (or reuses, by name) the model versions — a name that matches an existing version such
as ``base`` or ``round-1`` is that version, any other becomes an external one — plus the prompts (split
``eval``; an existing prompt keeps its split), candidates, eval comparisons and one judgment per row by
the annotator ``judge`` (kind ``imported``). Arena shows model_a on the left, so each judgment records
model_a's candidate as the left one. Export writes every current eval judgment the same way, with the
candidate that was shown on the left as model_a (comparison side a when the side was not recorded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from core.errors import PrefloopError
from storage.db import session_scope
from storage.files import atomic_write_bytes, checked_text, jsonl_records, read_text, where
from storage.imports import replace_judgment, store_prompts
from storage.judgments import current_eval_judgments
from storage.models import (
    Annotator,
    AnnotatorKind,
    Candidate,
    Choice,
    Comparison,
    Judgment,
    ModelVersion,
    Purpose,
    Split,
    VersionKind,
)
from storage.parsing import PromptRecord
from storage.repo import (
    get_or_create_annotator,
    get_or_create_candidate,
    get_or_create_comparison,
    get_or_create_version,
)

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")


@dataclass(frozen=True)
class Battle:
    line: int
    model_a: str
    model_b: str
    winner: str
    judge: str
    prompt: str
    response_a: str
    response_b: str


@dataclass
class ArenaImportResult:
    rows: int = 0
    prompts_added: int = 0
    versions_added: int = 0
    judgments_added: int = 0
    duplicates: int = 0  # rows whose identical judgment was already stored
    revised: int = 0  # rows that changed the same judge's earlier judgment of the same pair


def _single_turn(row: dict[str, Any], field: str, path: Path, line: int) -> tuple[str, str]:
    """(user prompt, assistant answer) of an Arena ``conversation_x`` with exactly one turn."""
    messages = row.get(field)
    if not isinstance(messages, list) or [
        m.get("role") if isinstance(m, dict) else None for m in messages
    ] != ["user", "assistant"]:
        raise PrefloopError(
            f"{where(path, line, field)}: expected one user and one assistant message (multi-turn battles "
            "are not supported); or give 'prompt', 'response_a' and 'response_b'"
        )
    return (
        checked_text(messages[0].get("content"), path, line, f"{field}[0].content"),
        checked_text(messages[1].get("content"), path, line, f"{field}[1].content"),
    )


def parse_battle(row: Any, line: int, path: Path) -> Battle:
    """Validate one row; the error names the file, line and field and says what is expected."""
    if not isinstance(row, dict):
        raise PrefloopError(
            f"{where(path, line)}: expected a JSON object, got {type(row).__name__}; fix the line"
        )
    model_a = checked_text(row.get("model_a"), path, line, "model_a")
    model_b = checked_text(row.get("model_b"), path, line, "model_b")
    if model_a == model_b:
        raise PrefloopError(
            f"{where(path, line, 'model_b')}: same model as model_a; a battle needs two models"
        )
    winner = row.get("winner")
    if winner not in WINNERS:
        raise PrefloopError(f"{where(path, line, 'winner')}: {winner!r} is not one of {', '.join(WINNERS)}")
    if "prompt" in row or "conversation_a" not in row:
        prompt = checked_text(row.get("prompt"), path, line, "prompt")
        response_a = checked_text(row.get("response_a"), path, line, "response_a")
        response_b = checked_text(row.get("response_b"), path, line, "response_b")
    else:
        prompt, response_a = _single_turn(row, "conversation_a", path, line)
        prompt_b, response_b = _single_turn(row, "conversation_b", path, line)
        if prompt_b != prompt:
            raise PrefloopError(
                f"{where(path, line, 'conversation_b')}: asks another question than conversation_a"
            )
    judge = checked_text(row.get("judge"), path, line, "judge")
    return Battle(line, model_a, model_b, winner, judge, prompt, response_a, response_b)


def read_battles(path: Path) -> list[Battle]:
    """Every row of the file, validated before anything is written."""
    battles = [parse_battle(row, line, path) for line, row in jsonl_records(path, read_text(path))]
    if not battles:
        raise PrefloopError(
            f"{path}: no battles; expected JSON lines with model_a, model_b, winner, judge, ..."
        )
    return battles


def _annotator(session: Session, name: str, battle: Battle, path: Path) -> Annotator:
    annotator = get_or_create_annotator(session, name, kind=AnnotatorKind.imported)
    if annotator.kind != AnnotatorKind.imported:
        raise PrefloopError(
            f"{where(path, battle.line, 'judge')}: {name!r} is an existing {annotator.kind.value} "
            f"annotator; imported judgments are kept apart: rename the judge (e.g. 'arena:{name}')"
        )
    return annotator


def _choice(battle: Battle, comp: Comparison, cand_a: Candidate) -> Choice:
    if battle.winner == "tie":
        return Choice.tie
    if battle.winner == "tie (bothbad)":
        return Choice.both_bad
    a_won = battle.winner == "model_a"
    a_is_side_a = cand_a.id == comp.candidate_a_id
    return Choice.a if a_won == a_is_side_a else Choice.b


def import_battles(engine: Engine, path: Path) -> ArenaImportResult:
    """All rows in one transaction: a bad row anywhere leaves the database untouched."""
    path = Path(path)
    battles = read_battles(path)
    result = ArenaImportResult(rows=len(battles))
    with session_scope(engine, write=True) as session:
        records = [PromptRecord(row=b.line, text=b.prompt) for b in battles]
        prompts, added = store_prompts(
            session, records, template=None, split=Split.eval, source=f"arena:{path.name}", eval_share=1.0
        )
        result.prompts_added = added.added
        known = set(session.exec(select(ModelVersion.name)))
        versions: dict[str, ModelVersion] = {}
        annotators: dict[str, Annotator] = {}
        for battle, record in zip(battles, records, strict=True):
            prompt = prompts[record.key]
            for name in (battle.model_a, battle.model_b):
                if name not in versions:
                    versions[name] = get_or_create_version(session, name, VersionKind.external)
            if battle.judge not in annotators:
                annotators[battle.judge] = _annotator(session, battle.judge, battle, path)
            cand_a, _ = get_or_create_candidate(
                session, prompt, versions[battle.model_a], battle.response_a, backend="arena"
            )
            cand_b, _ = get_or_create_candidate(
                session, prompt, versions[battle.model_b], battle.response_b, backend="arena"
            )
            comp, _ = get_or_create_comparison(session, cand_a, cand_b, Purpose.eval)
            _store_judgment(
                session, annotators[battle.judge], comp, _choice(battle, comp, cand_a), cand_a, result
            )
        result.versions_added = len(set(versions) - known)
    return result


def _store_judgment(
    session: Session,
    annotator: Annotator,
    comp: Comparison,
    choice: Choice,
    left: Candidate,
    result: ArenaImportResult,
) -> None:
    """Identical to the judge's current judgment of this pair: a duplicate; different: supersedes it."""
    previous = session.exec(
        select(Judgment).where(
            Judgment.comparison_id == comp.id,
            Judgment.annotator_id == annotator.id,
            Judgment.superseded_at.is_(None),
        )
    ).first()
    side = "a" if left.id == comp.candidate_a_id else "b"
    if replace_judgment(session, previous, comp.id, annotator.id, choice, left=side) is None:
        result.duplicates += 1
        return
    if previous is not None:
        result.revised += 1
    session.flush()
    result.judgments_added += 1


def battle_rows(session: Session) -> list[dict[str, Any]]:
    """Every current, non-skip eval judgment as an Arena row (left candidate as model_a).

    Only the prompt's final user text is written: a system prompt or earlier turns are not exported.
    """
    rows = []
    for ej in current_eval_judgments(session):
        judgment, ca, cb, va, vb = ej.judgment, ej.candidate_a, ej.candidate_b, ej.version_a, ej.version_b
        swap = judgment.left == "b"
        (left, lv), (right, rv) = ((cb, vb), (ca, va)) if swap else ((ca, va), (cb, vb))
        winner = {
            Choice.tie: "tie",
            Choice.both_bad: "tie (bothbad)",
            Choice.a: "model_b" if swap else "model_a",
            Choice.b: "model_a" if swap else "model_b",
        }[judgment.choice]
        rows.append(
            {
                "question_id": f"prefloop-{judgment.comparison_id}",
                "model_a": lv.name,
                "model_b": rv.name,
                "winner": winner,
                "judge": ej.annotator.name,
                "prompt": ej.prompt.text,
                "response_a": left.text,
                "response_b": right.text,
                "turn": 1,
                "tstamp": judgment.created_at.timestamp(),
            }
        )
    return rows


def export_arena(engine: Engine, path: Path) -> int:
    """Write prefloop's eval judgments as Arena battles (atomically); returns the number of rows."""
    with session_scope(engine) as session:
        rows = battle_rows(session)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write_bytes(Path(path), text.encode("utf-8"))
    return len(rows)
