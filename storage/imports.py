"""Data in: prompt lists and existing preference labels, each file in one transaction.

Files are parsed and validated completely first (``storage.parsing``), then written in bulk inside one
``session_scope``, so a bad row leaves the database exactly as it was and 1,000 labels take well under
a second. Imported labels keep their provenance: a labels *source*, by default the file's name, is an
external model version and an annotator named ``imported:<source>`` (kind ``imported``) that records the
file it came from (``Annotator.origin``). Importing that file again revises its own labels; another file
of the same name is refused unless given its own ``source``, so one file never revises another's labels.
Their comparisons have purpose ``train`` and no round (``round_id`` None): rounds number prefloop's own
generate -> label -> train cycles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from sqlmodel import Session, SQLModel, select

from core.errors import PrefloopError
from storage import queries
from storage.db import session_scope
from storage.models import (
    Annotator,
    AnnotatorKind,
    Candidate,
    Choice,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    Split,
    VersionKind,
    text_hash,
    utcnow,
)
from storage.parsing import LabelRecord, PromptRecord, parse_label_file, parse_prompt_file
from storage.repo import get_or_create_version
from storage.versions import IMPORTED_PREFIX

DEFAULT_EVAL_SHARE = 0.1
_CHUNK = 500  # ids per IN (...) query


def assign_split(key: str, eval_share: float = DEFAULT_EVAL_SHARE) -> Split:
    """Train or eval from a stable hash of the prompt key: the same prompt lands in the same split forever."""
    fraction = int(hashlib.sha256(f"split:{key}".encode()).hexdigest()[:15], 16) / 16**15
    return Split.eval if fraction < eval_share else Split.train


@dataclass
class ImportResult:
    added: int = 0
    duplicates: int = 0  # rows whose prompt was already stored or came earlier in the file
    by_split: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Split})  # of added prompts


@dataclass
class LabelsImportResult:
    format: str
    rows: int
    annotator: str
    prompts: ImportResult
    candidates_added: int = 0
    comparisons_added: int = 0
    judgments_added: int = 0
    duplicates: int = 0  # rows whose identical label was already stored
    revised: int = 0  # rows that changed this file's earlier label of the same pair (history kept)


def import_prompts(
    engine: Engine,
    path: Path,
    *,
    column: str | None = None,
    template: str | None = None,
    split: Split | str | None = None,
    source: str | None = None,
    eval_share: float = DEFAULT_EVAL_SHARE,
) -> ImportResult:
    """Add one prompt per row; normalised duplicates are skipped and counted. ``split`` overrides the hash."""
    path = Path(path)
    records = parse_prompt_file(path, column=column, template=template)
    with session_scope(engine, write=True) as session:
        _, result = store_prompts(
            session,
            records,
            template=template,
            split=Split(split) if split else None,
            source=source or path.name,
            eval_share=eval_share,
        )
    return result


@dataclass(frozen=True)
class StoredPrompt:
    """What an importer needs of a prompt row: its id and split (existing prompts keep theirs)."""

    id: int
    split: Split


def bulk_insert(session: Session, table: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` as one executemany on the session's connection (no ORM objects, no per-row
    RETURNING): callers look the new ids up by their unique key afterwards. Python-side defaults are not
    applied here, so each row carries every non-null column."""
    if rows:
        session.connection().execute(insert(table.__table__), rows)


def _stored_prompts(session: Session, hashes: dict[str, str]) -> dict[str, StoredPrompt]:
    """Prompt key -> stored prompt, for the given {normalised hash: key}, one query per 500."""
    found: dict[str, StoredPrompt] = {}
    for chunk in chunks(list(hashes)):
        query = select(Prompt.id, Prompt.normalized_hash, Prompt.split).where(
            Prompt.normalized_hash.in_(chunk)
        )
        for prompt_id, digest, prompt_split in session.exec(query):
            found[hashes[digest]] = StoredPrompt(prompt_id, Split(prompt_split))
    return found


def store_prompts(
    session: Session,
    records: Iterable[PromptRecord],
    *,
    template: str | None,
    split: Split | None,
    source: str,
    eval_share: float,
) -> tuple[dict[str, StoredPrompt], ImportResult]:
    """The stored prompt for every record's key (existing ones keep their split) and what was added.

    One lookup per 500 keys and one bulk insert, so the cost grows linearly with the file."""
    records = list(records)
    by_key = {r.key: r for r in reversed(records)}  # first occurrence wins
    hashes = {text_hash(key): key for key in by_key}
    prompts = _stored_prompts(session, hashes)
    result = ImportResult()
    new: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    now = utcnow()
    for key, record in sorted(by_key.items(), key=lambda kv: kv[1].row):
        if key in prompts:
            continue
        chosen = split or assign_split(key, eval_share)
        rows.append(
            {
                "text": record.text,
                "normalized_hash": text_hash(key),
                "raw": record.raw,
                "template": template if record.raw is not None else None,
                "system": record.system,
                "history": record.history_messages(),
                "source": source,
                "split": chosen,
                "created_at": now,
            }
        )
        new[text_hash(key)] = key
        result.by_split[chosen.value] += 1
    bulk_insert(session, Prompt, rows)
    prompts.update(_stored_prompts(session, new))
    result.added = len(new)
    result.duplicates = len(records) - result.added
    return prompts, result


def import_labels(
    engine: Engine,
    path: Path,
    *,
    format: str | None = None,
    template: str | None = None,
    split: Split | str | None = None,
    eval_share: float = DEFAULT_EVAL_SHARE,
    source: str | None = None,
) -> LabelsImportResult:
    """Existing preference data -> prompts, candidates, train comparisons and imported judgments.

    ``source`` names the labels source (default: the file name); see the module docstring.
    """
    path = Path(path)
    if source is not None and not source.strip():
        raise PrefloopError("--source: empty name; give the labels source a name")
    fmt, records = parse_label_file(path, format=format, template=template)
    name = f"{IMPORTED_PREFIX}{source or path.name}"
    with session_scope(engine, write=True) as session:
        annotator = _source_annotator(session, name, path, named=source is not None)
        prompts, prompt_result = store_prompts(
            session,
            (r.prompt for r in records),
            template=template,
            split=Split(split) if split else None,
            source=path.name,
            eval_share=eval_share,
        )
        result = LabelsImportResult(format=fmt, rows=len(records), annotator=name, prompts=prompt_result)
        version = get_or_create_version(session, name, VersionKind.external)
        candidates = _store_candidates(session, version, records, prompts, result)
        comparisons = _store_comparisons(session, version, records, prompts, candidates, result)
        _store_judgments(session, annotator, records, prompts, candidates, comparisons, result)
    return result


def _source_annotator(session: Session, name: str, path: Path, *, named: bool) -> Annotator:
    """The annotator of a labels source; a default-named source belongs to one file only.

    A source from before migration 0005 has no recorded origin: the first file imported into it since
    is taken as its origin.
    """
    origin = str(path.resolve())
    annotator = session.exec(select(Annotator).where(Annotator.name == name)).first()
    if annotator is None:
        annotator = Annotator(name=name, kind=AnnotatorKind.imported, origin=origin)
    elif not named and annotator.origin not in (None, origin):
        source = name.removeprefix(IMPORTED_PREFIX)
        raise PrefloopError(
            f"{path}: the labels source {source!r} holds the labels of {annotator.origin}; pass "
            f"--source NAME to import this file as its own source (or --source {source} to revise those)"
        )
    annotator.origin = origin
    session.add(annotator)
    session.flush()
    return annotator


def chunks(items: list, size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _store_candidates(
    session: Session,
    version: ModelVersion,
    records: list[LabelRecord],
    prompts: dict[str, StoredPrompt],
    result: LabelsImportResult,
) -> dict[tuple[int, str], Candidate]:
    """Each distinct (prompt, text) once, under the file's external model version."""
    existing = session.exec(select(Candidate).where(Candidate.model_version_id == version.id))
    candidates = {(c.prompt_id, c.text_hash): c for c in existing}
    for record in records:
        prompt_id = prompts[record.prompt.key].id
        for text in (record.chosen, record.rejected):
            key = (prompt_id, text_hash(text))
            if key not in candidates:
                cand = Candidate(
                    prompt_id=prompt_id,
                    model_version_id=version.id,
                    text=text,
                    text_hash=key[1],
                    backend="import",
                )
                session.add(cand)
                candidates[key] = cand
                result.candidates_added += 1
    session.flush()
    return candidates


def _pair_ids(record: LabelRecord, prompts: dict[str, StoredPrompt], candidates: dict) -> tuple[int, int]:
    """(chosen candidate id, rejected candidate id) of a record."""
    prompt_id = prompts[record.prompt.key].id
    return (
        candidates[(prompt_id, text_hash(record.chosen))].id,
        candidates[(prompt_id, text_hash(record.rejected))].id,
    )


def _store_comparisons(
    session: Session,
    version: ModelVersion,
    records: list[LabelRecord],
    prompts: dict[str, StoredPrompt],
    candidates: dict,
    result: LabelsImportResult,
) -> dict[tuple[int, int], Comparison]:
    """One train comparison per distinct pair, stored with the lower candidate id as ``a``."""
    ids = [c.id for c in candidates.values()]
    comparisons: dict[tuple[int, int], Comparison] = {}
    for chunk in chunks(ids):
        query = select(Comparison).where(
            Comparison.purpose == Purpose.train, Comparison.candidate_a_id.in_(chunk)
        )
        comparisons.update({(c.candidate_a_id, c.candidate_b_id): c for c in session.exec(query)})
    for record in records:
        a_id, b_id = sorted(_pair_ids(record, prompts, candidates))
        if (a_id, b_id) not in comparisons:
            comp = Comparison(
                prompt_id=prompts[record.prompt.key].id,
                candidate_a_id=a_id,
                candidate_b_id=b_id,
                purpose=Purpose.train,
                round_id=None,
            )
            session.add(comp)
            comparisons[(a_id, b_id)] = comp
            result.comparisons_added += 1
    session.flush()
    return comparisons


def _store_judgments(
    session: Session,
    annotator: Annotator,
    records: list[LabelRecord],
    prompts: dict[str, StoredPrompt],
    candidates: dict,
    comparisons: dict[tuple[int, int], Comparison],
    result: LabelsImportResult,
) -> None:
    """The source's decision per pair; an identical one is a duplicate, a changed one supersedes the old."""
    current = {
        j.comparison_id: j
        for j in session.exec(
            select(Judgment).where(Judgment.annotator_id == annotator.id, queries.current())
        )
    }
    for record in records:
        chosen_id, rejected_id = _pair_ids(record, prompts, candidates)
        comp = comparisons[tuple(sorted((chosen_id, rejected_id)))]
        choice = Choice.a if chosen_id == comp.candidate_a_id else Choice.b
        previous = current.get(comp.id)
        judgment = replace_judgment(session, previous, comp.id, annotator.id, choice)
        if judgment is None:
            result.duplicates += 1
            continue
        if previous is not None:
            result.revised += 1
        result.judgments_added += 1
        current[comp.id] = judgment
    session.flush()


def replace_judgment(
    session: Session,
    previous: Judgment | None,
    comparison_id: int,
    annotator_id: int,
    choice: Choice,
    left: str | None = None,
) -> Judgment | None:
    """An imported decision on a pair, given the importer's current judgment of it (``previous``).

    None when it is the same decision (a duplicate: nothing is written); otherwise the new current
    judgment, and ``previous``, if any, is superseded (kept as history).
    """
    if previous is not None and previous.choice == choice:
        return None
    if previous is not None:
        previous.superseded_at = utcnow()
        session.add(previous)
    judgment = Judgment(comparison_id=comparison_id, annotator_id=annotator_id, choice=choice, left=left)
    session.add(judgment)
    return judgment
