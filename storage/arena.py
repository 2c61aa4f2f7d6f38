"""Chatbot Arena battle files in and out, so judgments made elsewhere get the same statistics.

One JSON object per line::

    {"model_a": "base", "model_b": "round-1", "winner": "model_b", "judge": "alice",
     "prompt": "...", "response_a": "...", "response_b": "..."}

``winner`` is ``model_a``, ``model_b``, ``tie`` or ``tie (bothbad)``. Instead of ``prompt`` and the two
responses a row may carry Arena's single-turn ``conversation_a`` / ``conversation_b`` message lists.

Import creates (or reuses, by name) the model versions — a name that matches an existing version is that
version; any other becomes an external one, except prefloop's reserved names (``base``, ``round-N``),
which are stored as ``imported:base`` etc. so ``generate --policy base`` keeps meaning prefloop's base —
plus the prompts (split ``eval``; an existing prompt keeps its split, and battles on a train-split prompt
are not made eval pairs: counted in ``on_train_prompts``), candidates, eval comparisons and one judgment
per row by the annotator ``judge`` (kind ``imported``). Arena shows model_a on the left, so each judgment
records model_a's candidate as the left one. Export writes every current eval judgment the same way, with
the candidate that was shown on the left as model_a (comparison side a when the side was not recorded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, select

from core.errors import PrefloopError
from storage import queries
from storage.auth import LOCAL_USER
from storage.db import session_scope
from storage.files import atomic_write_bytes, checked_text, json_line, read_text, where
from storage.imports import bulk_insert, chunks, store_prompts
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
    Role,
    Split,
    VersionKind,
    text_hash,
    utcnow,
)
from storage.parsing import PromptRecord
from storage.versions import IMPORTED_PREFIX, is_reserved

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
    on_train_prompts: int = 0  # rows whose prompt is a stored train-split prompt: not made eval pairs
    skipped: list[Skipped] = field(default_factory=list)  # invalid rows left out (``skip_invalid``)
    renamed: dict[str, str] = field(default_factory=dict)  # reserved model names -> the names stored


@dataclass(frozen=True)
class Skipped:
    line: int
    reason: str


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
        raise PrefloopError(
            f"{where(path, line, 'winner')}: {winner!r} is not one of {', '.join(WINNERS)}; fix the value"
        )
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


def read_battles(path: Path, skip_invalid: bool = False) -> tuple[list[Battle], list[Skipped]]:
    """Every row of the file, validated before anything is written; with ``skip_invalid`` a bad row is
    set aside with its line and reason instead of stopping the import."""
    battles: list[Battle] = []
    skipped: list[Skipped] = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            battles.append(parse_battle(json_line(path, number, line), number, path))
        except PrefloopError as exc:
            if not skip_invalid:
                raise
            skipped.append(Skipped(number, str(exc)))
    if not battles:
        raise PrefloopError(
            f"{path}: no valid battles; expected JSON lines with model_a, model_b, winner, judge, ..."
        )
    return battles, skipped


def _set_aside(battle: Battle, reason: str, skip_invalid: bool, skipped: list[Skipped]) -> bool:
    """A row that cannot be stored: raise (all-or-nothing), or record it when skipping; True if set aside."""
    if not skip_invalid:
        raise PrefloopError(reason)
    skipped.append(Skipped(battle.line, reason))
    return True


def _annotators(
    session: Session, battles: list[Battle], path: Path, skip_invalid: bool, skipped: list[Skipped]
) -> tuple[dict[str, int], list[Battle]]:
    """Each judge's annotator id (created as kind imported); rows by a human or simulated annotator's
    name are refused, so imported judgments never mix into theirs."""
    names = sorted({b.judge for b in battles})
    found = {a.name: a for a in session.exec(select(Annotator).where(Annotator.name.in_(names)))}
    wrong = {name for name, a in found.items() if a.kind != AnnotatorKind.imported}
    kept = []
    for battle in battles:
        if battle.judge == LOCAL_USER:  # it would become the app's token-free local admin's row
            reason = (
                f"{where(path, battle.line, 'judge')}: {battle.judge!r} is reserved for the app's local "
                f"operator; rename the judge (e.g. 'arena:{battle.judge}')"
            )
            _set_aside(battle, reason, skip_invalid, skipped)
        elif battle.judge in wrong:
            kind = found[battle.judge].kind.value
            reason = (
                f"{where(path, battle.line, 'judge')}: {battle.judge!r} is an existing {kind} annotator; "
                f"imported judgments are kept apart: rename the judge (e.g. 'arena:{battle.judge}')"
            )
            _set_aside(battle, reason, skip_invalid, skipped)
        else:
            kept.append(battle)
    wanted = sorted({b.judge for b in kept})
    now = utcnow()
    rows = [
        {"name": n, "role": Role.annotator, "kind": AnnotatorKind.imported, "created_at": now}
        for n in wanted
        if n not in found
    ]
    bulk_insert(session, Annotator, rows)
    query = select(Annotator.id, Annotator.name).where(Annotator.name.in_(wanted))
    return {name: annotator_id for annotator_id, name in session.exec(query)}, kept


def _versions(session: Session, battles: list[Battle], result: ArenaImportResult) -> dict[str, int]:
    """Each model name's version id. An existing version of that name is reused; a new name becomes an
    external version, except prefloop's reserved names (base, round-N), stored as ``imported:<name>``."""
    existing = set(session.exec(select(ModelVersion.name)))
    stored: dict[str, str] = {}
    for name in sorted({m for b in battles for m in (b.model_a, b.model_b)}):
        stored[name] = name
        if name not in existing and is_reserved(name):
            stored[name] = result.renamed[name] = IMPORTED_PREFIX + name
    new = sorted(set(stored.values()) - existing)
    now = utcnow()
    rows = [{"name": n, "kind": VersionKind.external, "base_model": "", "created_at": now} for n in new]
    bulk_insert(session, ModelVersion, rows)
    result.versions_added = len(new)
    query = select(ModelVersion.id, ModelVersion.name).where(
        ModelVersion.name.in_(sorted(set(stored.values())))
    )
    ids = {name: version_id for version_id, name in session.exec(query)}
    return {name: ids[as_stored] for name, as_stored in stored.items()}


def _candidates(
    session: Session, wanted: set[tuple[int, int, str]], texts: dict[tuple[int, int, str], str]
) -> dict[tuple[int, int, str], int]:
    """(prompt id, version id, text hash) -> candidate id: existing ones looked up per 500 prompts, the rest
    inserted in one bulk statement and looked up the same way."""

    def lookup(prompt_ids: list[int]) -> dict[tuple[int, int, str], int]:
        versions = sorted({v for _, v, _ in wanted})
        found = {}
        for chunk in chunks(prompt_ids):
            query = select(
                Candidate.id, Candidate.prompt_id, Candidate.model_version_id, Candidate.text_hash
            ).where(Candidate.prompt_id.in_(chunk), Candidate.model_version_id.in_(versions))
            for cand_id, prompt_id, version_id, digest in session.exec(query):
                if (prompt_id, version_id, digest) in wanted:
                    found[(prompt_id, version_id, digest)] = cand_id
        return found

    ids = lookup(sorted({p for p, _, _ in wanted}))
    new = sorted(wanted - set(ids))
    now = utcnow()
    rows = [
        {"prompt_id": p, "model_version_id": v, "text": texts[(p, v, h)], "text_hash": h, "sampling": {}}
        | {"backend": "arena", "created_at": now}
        for p, v, h in new
    ]
    bulk_insert(session, Candidate, rows)
    ids.update(lookup(sorted({p for p, _, _ in new})))
    return ids


def _comparisons(session: Session, pairs: dict[tuple[int, int], int]) -> dict[tuple[int, int], int]:
    """(candidate a id, candidate b id), a < b -> eval comparison id; ``pairs`` maps each to its prompt."""

    def lookup(first_ids: list[int]) -> dict[tuple[int, int], int]:
        found = {}
        for chunk in chunks(first_ids):
            query = select(Comparison.id, Comparison.candidate_a_id, Comparison.candidate_b_id).where(
                Comparison.purpose == Purpose.eval, Comparison.candidate_a_id.in_(chunk)
            )
            for comp_id, a, b in session.exec(query):
                if (a, b) in pairs:
                    found[(a, b)] = comp_id
        return found

    ids = lookup(sorted({a for a, _ in pairs}))
    new = sorted(set(pairs) - set(ids))
    now = utcnow()
    rows = [
        {"prompt_id": pairs[p], "candidate_a_id": p[0], "candidate_b_id": p[1], "purpose": Purpose.eval}
        | {"created_at": now}
        for p in new
    ]
    bulk_insert(session, Comparison, rows)
    ids.update(lookup(sorted({a for a, _ in new})))
    return ids


def _judgments(
    session: Session, decisions: list[tuple[int, int, Choice, str]], result: ArenaImportResult
) -> None:
    """(comparison id, annotator id, choice, left side) in file order. Against the judge's current judgment
    of the pair (stored, or earlier in the file): the same choice is a duplicate, another supersedes it
    (history kept). All new rows go in one bulk insert, the superseded stored ones in one update."""
    keys = {(c, a) for c, a, _, _ in decisions}
    current: dict[tuple[int, int], tuple[int | None, Choice]] = {}
    for chunk in chunks(sorted({c for c, _ in keys})):
        query = select(Judgment.id, Judgment.comparison_id, Judgment.annotator_id, Judgment.choice).where(
            Judgment.comparison_id.in_(chunk), queries.current()
        )
        for judgment_id, comp_id, annotator_id, choice in session.exec(query):
            if (comp_id, annotator_id) in keys:
                current[(comp_id, annotator_id)] = (judgment_id, Choice(choice))
    now = utcnow()
    rows: list[dict[str, Any]] = []
    latest: dict[tuple[int, int], int] = {}  # key -> index in rows of its newest new judgment
    superseded: list[int] = []  # stored judgment ids
    for comp_id, annotator_id, choice, left in decisions:
        key = (comp_id, annotator_id)
        previous = current.get(key)
        if previous is not None and previous[1] == choice:
            result.duplicates += 1
            continue
        if previous is not None:
            result.revised += 1
            if key in latest:
                rows[latest[key]]["superseded_at"] = now
            elif previous[0] is not None:
                superseded.append(previous[0])
        latest[key] = len(rows)
        rows.append(
            {"comparison_id": comp_id, "annotator_id": annotator_id, "choice": choice, "left": left}
            | {"created_at": now, "superseded_at": None}
        )
        current[key] = (None, choice)
    for chunk in chunks(superseded):
        session.execute(update(Judgment).where(Judgment.id.in_(chunk)).values(superseded_at=now))
    bulk_insert(session, Judgment, rows)
    result.judgments_added = len(rows)


def _choice(winner: str, a_is_side_a: bool) -> Choice:
    if winner == "tie":
        return Choice.tie
    if winner == "tie (bothbad)":
        return Choice.both_bad
    return Choice.a if (winner == "model_a") == a_is_side_a else Choice.b


def import_battles(engine: Engine, path: Path, skip_invalid: bool = False) -> ArenaImportResult:
    """All rows in one transaction: by default a bad row anywhere leaves the database untouched; with
    ``skip_invalid`` the good rows are stored and the bad ones listed in ``result.skipped``.

    Bulk and linear in the file: each table is read once per 500 keys and written in one bulk insert.
    """
    path = Path(path)
    battles, skipped = read_battles(path, skip_invalid)
    result = ArenaImportResult(rows=len(battles) + len(skipped), skipped=skipped)
    with session_scope(engine, write=True) as session:
        annotators, battles = _annotators(session, battles, path, skip_invalid, skipped)
        records = [PromptRecord(row=b.line, text=b.prompt) for b in battles]
        prompts, added = store_prompts(
            session, records, template=None, split=Split.eval, source=f"arena:{path.name}", eval_share=1.0
        )
        result.prompts_added = added.added
        eval_rows = [(b, prompts[r.key]) for b, r in zip(battles, records, strict=True)]
        result.on_train_prompts = sum(p.split != Split.eval for _, p in eval_rows)
        eval_rows = [(b, p.id) for b, p in eval_rows if p.split == Split.eval]
        versions = _versions(session, [b for b, _ in eval_rows], result)
        texts: dict[tuple[int, int, str], str] = {}
        sides = []
        for battle, prompt_id in eval_rows:
            key_a = (prompt_id, versions[battle.model_a], text_hash(battle.response_a))
            key_b = (prompt_id, versions[battle.model_b], text_hash(battle.response_b))
            texts[key_a], texts[key_b] = battle.response_a, battle.response_b
            sides.append((key_a, key_b))
        candidates = _candidates(session, set(texts), texts)
        pairs = {}
        for (key_a, key_b), (_, prompt_id) in zip(sides, eval_rows, strict=True):
            pairs[tuple(sorted((candidates[key_a], candidates[key_b])))] = prompt_id
        comparisons = _comparisons(session, pairs)
        decisions = []
        for (key_a, key_b), (battle, _) in zip(sides, eval_rows, strict=True):
            left, right = candidates[key_a], candidates[key_b]
            comp = comparisons[(min(left, right), max(left, right))]
            a_is_side_a = left < right  # model_a's candidate is the comparison's side a
            side = "a" if a_is_side_a else "b"
            decisions.append((comp, annotators[battle.judge], _choice(battle.winner, a_is_side_a), side))
        _judgments(session, decisions, result)
    return result


def write_skipped(path: Path, skipped: list[Skipped]) -> None:
    """The skipped-rows report: one JSON object per line, {"line": N, "reason": "..."} (written whole)."""
    text = "".join(
        json.dumps({"line": s.line, "reason": s.reason}, ensure_ascii=False) + "\n" for s in skipped
    )
    atomic_write_bytes(path, text.encode("utf-8"))


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
