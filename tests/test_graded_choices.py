"""Graded choices ("A much better ... B much better"): the strength is stored beside the pairwise choice,
exported in judgments.jsonl, and ignored by everything that reads the choice (majority exports)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import inspect

from core.errors import PrefloopError
from labelling.assignment import GRADED_SCALE, next_pair, record_judgment, side_to_choice
from storage.db import make_engine, migrate
from storage.exports import export_judgments, export_trl
from storage.models import Choice, Strength
from testkit.annotate_seed import add_annotator, seed_pairs
from tests.test_assignment import SETTINGS


def test_each_grade_stores_its_choice_and_strength_and_exports_them(any_engine, tmp_path):
    seed_pairs(any_engine, train=len(GRADED_SCALE))
    who = add_annotator(any_engine, "alice")
    stored = []
    for label, action, strength in GRADED_SCALE:
        pair = next_pair(any_engine, who, SETTINGS)
        choice = side_to_choice(action, pair.left) if action in ("left", "right") else Choice(action)
        judgment = record_judgment(
            any_engine, who, pair.comparison_id, choice, left=pair.left, strength=strength, settings=SETTINGS
        )
        stored.append((label, judgment.choice, judgment.strength))
    assert [s for _, _, s in stored] == [2, 1, None, 1, 2]
    assert [c for _, c, _ in stored][2] == Choice.tie
    export_judgments(any_engine, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert [(r["choice"], r["strength"]) for r in rows] == [(c.value, s) for _, c, s in stored]
    plain = export_trl(any_engine, tmp_path / "trl", validation_share=0)
    assert plain.n_train == 4 and plain.dropped == {"tie": 1}, "the majority export reads the choice only"


@pytest.mark.parametrize(
    ("choice", "strength", "message"),
    [
        (Choice.tie, Strength.much, "only an A or B choice has a strength"),
        (Choice.skip, 1, "only an A or B choice has a strength"),
        (Choice.a, 3, r"strength=3: expected one of 1 \(slightly\), 2 \(much\)"),
    ],
)
def test_a_strength_without_a_side_or_off_the_scale_is_refused(engine, choice, strength, message):
    (pair,) = seed_pairs(engine, train=1)
    who = add_annotator(engine, "alice")
    with pytest.raises(PrefloopError, match=message):
        record_judgment(engine, who, pair, choice, left="a", strength=strength, settings=SETTINGS)


def test_migration_adds_a_nullable_strength_to_existing_judgments(db_url):
    engine = make_engine(db_url)  # not migrated yet
    migrate(engine, "0003")
    assert "strength" not in {c["name"] for c in inspect(engine).get_columns("judgment")}
    migrate(engine)
    column = next(c for c in inspect(engine).get_columns("judgment") if c["name"] == "strength")
    assert column["nullable"]
    engine.dispose()
