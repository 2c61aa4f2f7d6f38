"""Storage speed: importing the seed's 1,140 labels and exporting them, each against a same-run baseline.

- Labels import: ``storage.imports.import_labels`` (whole file validated first, then written in bulk with
  one lookup query per table) against the same rows written one at a time through ``storage.repo``'s
  get-or-create helpers (a query per prompt, candidate, comparison and judgment), in one transaction too.
- TRL export: ``export_trl`` (JSONL files + the ``datasets`` DatasetDict on disk) against the JSONL part
  alone (``preference_pairs`` + writing the rows), so the cost of the DatasetDict is visible.
Both on a fresh SQLite file (WAL), median of a few repeats.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from sqlmodel import select

from bench.common import BenchRow, machine, row
from core.paths import REPO_ROOT
from storage.db import make_engine, migrate, session_scope
from storage.exports import export_trl, preference_pairs
from storage.imports import assign_split, import_labels
from storage.models import AnnotatorKind, Choice, Judgment, Prompt, Purpose, VersionKind, text_hash
from storage.parsing import parse_label_file
from storage.repo import (
    get_or_create_annotator,
    get_or_create_candidate,
    get_or_create_comparison,
    get_or_create_version,
)

SEED_LABELS = REPO_ROOT / "data/youtube-titles/idea-title_pairs-preferences.csv"


def _fresh_engine(folder: Path, name: str):
    engine = make_engine(f"sqlite:///{folder / name}.db")
    migrate(engine)
    return engine


def _row_by_row_import(engine, path: Path) -> None:
    """Baseline: the same labels, one get-or-create query chain per row."""
    _, records = parse_label_file(path, template="youtube-title")
    with session_scope(engine, write=True) as s:
        version = get_or_create_version(s, f"imported:{path.name}", VersionKind.external)
        annotator = get_or_create_annotator(s, f"imported:{path.name}", kind=AnnotatorKind.imported)
        for record in records:
            key = text_hash(record.prompt.key)
            prompt = s.exec(select(Prompt).where(Prompt.normalized_hash == key)).first()
            if prompt is None:
                prompt = Prompt(
                    text=record.prompt.text, normalized_hash=key, split=assign_split(record.prompt.key)
                )
                s.add(prompt)
                s.flush()
            chosen, _ = get_or_create_candidate(s, prompt, version, record.chosen)
            rejected, _ = get_or_create_candidate(s, prompt, version, record.rejected)
            comp, _ = get_or_create_comparison(s, chosen, rejected, Purpose.train)
            choice = Choice.a if chosen.id == comp.candidate_a_id else Choice.b
            s.add(Judgment(comparison_id=comp.id, annotator_id=annotator.id, choice=choice))
            s.flush()


def _jsonl_only(engine, out: Path) -> None:
    with session_scope(engine) as s:
        pairs, _ = preference_pairs(s)
    rows = [{"prompt": p.prompt.text, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _median_seconds(fn, repeats: int, prepare=lambda i: i) -> float:
    """Median wall time of ``fn(prepare(i))``; ``prepare`` (e.g. a fresh database) is not timed."""
    times = []
    for i in range(repeats):
        arg = prepare(i)
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool = False) -> list[BenchRow]:
    repeats = 1 if quick else 5
    where = machine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bulk = _median_seconds(
            lambda engine: import_labels(engine, SEED_LABELS, template="youtube-title"),
            repeats,
            prepare=lambda i: _fresh_engine(folder, f"bulk{i}"),
        )
        per_row = _median_seconds(
            lambda engine: _row_by_row_import(engine, SEED_LABELS),
            repeats,
            prepare=lambda i: _fresh_engine(folder, f"row{i}"),
        )
        engine = _fresh_engine(folder, "export")
        import_labels(engine, SEED_LABELS, template="youtube-title")
        export = _median_seconds(lambda i: export_trl(engine, folder / f"trl{i}"), repeats)
        jsonl = _median_seconds(lambda i: _jsonl_only(engine, folder / f"plain{i}.jsonl"), repeats)
    note = f"SQLite WAL, median of {repeats}; lower is better; {where}"
    return [
        row(
            "storage",
            "labels import, 1,140 seed labels (bulk)",
            bulk,
            "s",
            "same rows, one get-or-create chain per row",
            per_row,
            note,
        ),
        row(
            "storage",
            "export --format trl, 1,140 labels (JSONL + DatasetDict)",
            export,
            "s",
            "pairs + plain JSONL only",
            jsonl,
            note,
        ),
    ]


if __name__ == "__main__":
    for r in run(quick=False):
        print(r)
