"""status: the counts other parts and operators rely on, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from storage.db import session_scope
from storage.imports import import_labels, import_prompts
from storage.models import AnnotatorKind, Choice, Judgment, Prompt, Purpose, Split, VersionKind, utcnow
from storage.repo import (
    get_or_create_annotator,
    get_or_create_candidate,
    get_or_create_comparison,
    get_or_create_round,
    get_or_create_version,
)
from storage.status import collect_status

REPO = Path(__file__).resolve().parent.parent


def test_empty_database_has_every_key_at_zero(engine):
    info = collect_status(engine)
    assert info["prompts"] == {"train": 0, "eval": 0}
    assert info["comparisons"] == {"train": 0, "eval": 0} and info["judgments"] == {"train": 0, "eval": 0}
    assert (info["candidates"], info["model_versions"], info["rounds"], info["judgments_by"]) == (
        0,
        [],
        [],
        [],
    )


def test_counts_by_split_purpose_round_and_annotator(any_engine):
    ideas = import_prompts(
        any_engine, REPO / "data/youtube-titles/ideas.csv", column="Idea", template="youtube-title"
    )
    import_labels(
        any_engine, REPO / "data/youtube-titles/idea-title_pairs-preferences.csv", template="youtube-title"
    )
    with session_scope(any_engine) as s:
        prompt = Prompt(text="held out", normalized_hash="c" * 64, split=Split.eval)
        s.add(prompt)
        s.flush()
        get_or_create_round(s, 1)
        base = get_or_create_version(s, "base", VersionKind.base, base_model="tiny")
        one, two = (get_or_create_candidate(s, prompt, base, t, round_id=1)[0] for t in ("x", "y"))
        comp = get_or_create_comparison(s, one, two, Purpose.eval, round_id=1)[0]
        alice = get_or_create_annotator(s, "alice")
        sim = get_or_create_annotator(s, "sim-1", kind=AnnotatorKind.simulated)
        s.add(Judgment(comparison_id=comp.id, annotator_id=alice.id, choice=Choice.a, superseded_at=utcnow()))
        s.add(Judgment(comparison_id=comp.id, annotator_id=alice.id, choice=Choice.b))
        s.add(Judgment(comparison_id=comp.id, annotator_id=sim.id, choice=Choice.tie))
    info = collect_status(any_engine)
    assert info["prompts"] == {"train": ideas.by_split["train"], "eval": ideas.by_split["eval"] + 1}
    assert info["candidates"] == 572
    assert info["comparisons"] == {"train": 1140, "eval": 1}
    assert info["judgments"] == {"train": 1140, "eval": 2} and info["superseded_judgments"] == 1
    assert info["model_versions"] == ["imported:idea-title_pairs-preferences.csv", "base"]
    assert info["rounds"] == [1]
    assert info["annotators"] == {"human": 1, "simulated": 1, "imported": 1}
    assert info["judgments_by"] == [
        {
            "round": None,
            "purpose": "train",
            "annotator": "imported:idea-title_pairs-preferences.csv",
            "kind": "imported",
            "count": 1140,
        },
        {"round": 1, "purpose": "eval", "annotator": "alice", "kind": "human", "count": 1},
        {"round": 1, "purpose": "eval", "annotator": "sim-1", "kind": "simulated", "count": 1},
    ]
