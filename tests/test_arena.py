"""Chatbot Arena battles in and out: the seed's 50 judgments, round trips, and bad files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from sqlalchemy import func
from sqlmodel import select

from core.config import ReportConfig
from core.errors import PrefloopError
from evaluation.report import build_report
from storage.arena import export_arena, import_battles
from storage.db import make_engine, migrate, session_scope
from storage.imports import import_prompts
from storage.models import (
    Annotator,
    AnnotatorKind,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    Split,
    VersionKind,
)
from storage.repo import get_or_create_annotator, get_or_create_version
from testkit.eval_seed import build_eval_db, seed_battle_rows, write_battles

FAST = ReportConfig(bootstrap_rounds=100)
REPO = Path(__file__).resolve().parent.parent


def _count(engine, table) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


def test_seed_evaluation_imported_gives_the_seed_statistics(any_engine, tmp_path):
    """The seed's 50 comparisons, fine-tuned preferred in 34: 0.68, Wilson [0.542, 0.792], p = 0.015."""
    engine = any_engine
    result = import_battles(engine, write_battles(tmp_path / "seed.jsonl", seed_battle_rows()))
    assert (result.rows, result.judgments_added, result.prompts_added, result.versions_added) == (
        50,
        50,
        50,
        2,
    )
    # base and round-1 are prefloop's reserved names: the file's models are stored apart
    assert result.renamed == {"base": "imported:base", "round-1": "imported:round-1"}
    data = build_report(engine, FAST).data.to_json()
    assert data["annotator_kind"] == "imported"
    [comp] = data["comparisons"]
    assert (comp["model"], comp["baseline"], comp["n"], comp["wins"], comp["losses"]) == (
        "imported:round-1",
        "imported:base",
        50,
        34,
        16,
    )
    # one judgment per item: the item-level figures are the seed's per-judgment ones
    assert (comp["items"], comp["item_wins"], comp["item_losses"]) == (50, 34, 16)
    assert comp["win_rate"] == 0.68
    assert comp["ci95"] == [0.542, 0.792]
    assert comp["p_value"] == 0.015 and binomtest(34, 50).pvalue == pytest.approx(0.0153, abs=5e-5)
    assert "imported:round-1 is preferred over imported:base" in data["headline"]
    # no prefloop round here: the headline is the leaderboard, and the ratings are centred, not anchored
    assert data["headline_rule"].endswith("the Bradley-Terry leaderboard")
    assert data["headline"].startswith("Leaderboard (2 models): 1. imported:round-1")
    assert "centred on a mean of 1000" in data["bradley_terry_scale"]
    assert data["method"][0].startswith("Imported records")
    # Arena shows model_a on the left: half the battles had the fine-tuned model there
    assert data["position_bias"]["n"] == 50


def test_import_creates_eval_rows_with_provenance(engine, tmp_path):
    import_battles(engine, write_battles(tmp_path / "seed.jsonl", seed_battle_rows(n=4)))
    with session_scope(engine) as session:
        assert {v.kind for v in session.exec(select(ModelVersion))} == {VersionKind.external}
        assert {p.split for p in session.exec(select(Prompt))} == {Split.eval}
        assert {c.purpose for c in session.exec(select(Comparison))} == {Purpose.eval}
        [judge] = session.exec(select(Annotator)).all()
        assert (judge.name, judge.kind) == ("seed-author", AnnotatorKind.imported)
        assert all(j.left in ("a", "b") for j in session.exec(select(Judgment)))


def test_existing_versions_are_reused_by_name(engine, tmp_path):
    with session_scope(engine, write=True) as session:
        get_or_create_version(session, "base", VersionKind.base, "tiny")
    result = import_battles(engine, write_battles(tmp_path / "seed.jsonl", seed_battle_rows(n=4)))
    assert result.versions_added == 1
    with session_scope(engine) as session:
        kinds = {v.name: v.kind for v in session.exec(select(ModelVersion))}
    assert kinds == {"base": VersionKind.base, "imported:round-1": VersionKind.external}


def test_reimport_is_idempotent_and_a_changed_winner_revises(engine, tmp_path):
    rows = seed_battle_rows(n=6)
    path = write_battles(tmp_path / "seed.jsonl", rows)
    import_battles(engine, path)
    again = import_battles(engine, path)
    assert (again.judgments_added, again.duplicates, again.revised) == (0, 6, 0)
    rows[0] = {**rows[0], "winner": "tie"}
    changed = import_battles(engine, write_battles(tmp_path / "changed.jsonl", rows))
    assert (changed.judgments_added, changed.duplicates, changed.revised) == (1, 5, 1)
    assert _count(engine, Judgment) == 7  # history kept: the old answer is superseded, not deleted


def _arena_view(rows: list[dict]) -> list[tuple]:
    keys = ("model_a", "model_b", "winner", "judge", "prompt", "response_a", "response_b")
    return sorted(tuple(r[k] for k in keys) for r in rows)


def test_round_trip_export_import_export(engine, tmp_path):
    build_eval_db(engine)
    first = tmp_path / "first.jsonl"
    count = export_arena(engine, first)
    # current eval judgments only: 10 alice + 6 bob + 20 sim (revision, skip and train pair left out)
    assert count == 36
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    assert {r["winner"] for r in rows} == {"model_a", "model_b", "tie", "tie (bothbad)"}
    # alice always chose the side shown on the left, which export writes as model_a
    assert {r["winner"] for r in rows if r["judge"] == "alice"} <= {"model_a", "tie", "tie (bothbad)"}

    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    migrate(other)
    # the other database names its annotators apart from ours: imported judges are kind "imported"
    result = import_battles(other, first)
    assert result.judgments_added == 36
    assert result.renamed == {m: f"imported:{m}" for m in ("base", "round-1", "round-2")}
    second = tmp_path / "second.jsonl"
    export_arena(other, second)
    back = [
        {
            **r,
            "model_a": r["model_a"].removeprefix("imported:"),
            "model_b": r["model_b"].removeprefix("imported:"),
        }
        for r in map(json.loads, second.read_text().splitlines())
    ]
    assert _arena_view(rows) == _arena_view(back)

    ours, theirs = build_report(engine, FAST).data.to_json(), build_report(other, FAST).data.to_json()
    other.dispose()
    by_kind = {k: g["comparisons"] for k, g in ours["groups"].items()}
    stats = (
        "model",
        "baseline",
        "n",
        "wins",
        "losses",
        "ties",
        "both_bad",
        "items",
        "win_rate",
        "ci95",
        "p_value",
    )

    def view(comps, prefix=""):
        return sorted(
            tuple(c[k].removeprefix(prefix) if k in ("model", "baseline") else c[k] for k in stats)
            for c in comps
        )

    # prefloop's rounds face newer against older; the imported copies (no rounds) face by rating: the same
    assert view(theirs["groups"]["imported"]["comparisons"], "imported:") == view(
        by_kind["human"] + by_kind["simulated"]
    )
    assert (
        theirs["position_bias"]["k"]
        == ours["groups"]["human"]["position_bias"]["k"] + (ours["groups"]["simulated"]["position_bias"]["k"])
    )


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "bad JSON"),
        ('["a list"]', "expected a JSON object"),
        (
            '{"model_a": "x", "model_b": "y", "winner": "model_c", "judge": "j", "prompt": "p", '
            '"response_a": "r", "response_b": "s"}',
            "field winner: 'model_c' is not one of",
        ),
        (
            '{"model_a": "x", "model_b": "x", "winner": "tie", "judge": "j", "prompt": "p", '
            '"response_a": "r", "response_b": "s"}',
            "field model_b: same model as model_a",
        ),
        (
            '{"model_a": "x", "model_b": "y", "winner": "tie", "prompt": "p", "response_a": "r", '
            '"response_b": "s"}',
            "field judge",
        ),
        (
            '{"model_a": "x", "model_b": "y", "winner": "tie", "judge": "j", "prompt": "p", "response_a": ""'
            ', "response_b": "s"}',
            "field response_a: empty text",
        ),
        (
            '{"model_a": "x", "model_b": "y", "winner": "tie", "judge": "j", "conversation_a": '
            '[{"role": "user", "content": "q"}], "conversation_b": []}',
            "field conversation_a",
        ),
    ],
)
def test_bad_row_names_line_and_field_and_writes_nothing(engine, tmp_path, line, needle):
    good = seed_battle_rows(n=2)
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good[0]) + "\n\n" + line + "\n" + json.dumps(good[1]) + "\n")
    with pytest.raises(PrefloopError) as err:
        import_battles(engine, path)
    assert str(err.value).startswith(f"{path}:3")
    assert needle in str(err.value)
    assert _count(engine, Judgment) == 0 and _count(engine, Prompt) == 0


def test_judge_who_is_a_human_annotator_is_refused(engine, tmp_path):
    with session_scope(engine, write=True) as session:
        get_or_create_annotator(session, "seed-author")
    with pytest.raises(PrefloopError, match=r"seed.jsonl:1: field judge: 'seed-author' is an existing human"):
        import_battles(engine, write_battles(tmp_path / "seed.jsonl", seed_battle_rows(n=3)))
    assert _count(engine, Judgment) == 0


def test_single_turn_conversations_are_accepted(engine, tmp_path):
    row = {
        "model_a": "gpt-x",
        "model_b": "base",
        "winner": "tie (bothbad)",
        "judge": "arena-user",
        "conversation_a": [{"role": "user", "content": "Title?"}, {"role": "assistant", "content": "One"}],
        "conversation_b": [{"role": "user", "content": "Title?"}, {"role": "assistant", "content": "Two"}],
    }
    import_battles(engine, write_battles(tmp_path / "conv.jsonl", [row]))
    with session_scope(engine) as session:
        [judgment] = session.exec(select(Judgment)).all()
        assert judgment.choice == "both_bad"
        assert session.exec(select(Prompt.text)).one() == "Title?"


def test_cli_import_then_bad_file_exits_1(sqlite_url, tmp_path):
    env = {**os.environ, "PREFLOOP_DB": sqlite_url}
    good = write_battles(tmp_path / "seed.jsonl", seed_battle_rows())
    run = [sys.executable, "-m", "prefloop.cli", "judgments", "import"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "50 judgments added" in " ".join(ok.stdout.split())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model_a": "x"}\n')
    failed = subprocess.run([*run, str(bad)], capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert failed.returncode == 1
    assert "bad.jsonl:1: field model_b" in " ".join(failed.stderr.split())


def _panel_rows(seed: int = 3) -> list[dict]:
    """60 prompts, 3 models, each prompt's pair judged by 2-3 judges who see it in either order."""
    rng = np.random.default_rng(seed)
    strength = {"gpt-x": 0.8, "llama-y": 0.3, "mistral-z": 0.0}
    names = sorted(strength)
    rows = []
    for k in range(60):
        first, second = (str(m) for m in rng.choice(names, 2, replace=False))
        answers = {first: f"{first} answers question {k} at length.", second: f"{second}: reply {k}"}
        p = 1 / (1 + math.exp(strength[second] - strength[first]))
        for judge in ("ann", "bob", "cy")[: 2 + k % 2]:
            a, b = (first, second) if rng.random() < 0.5 else (second, first)
            r = rng.random()
            won = "tie" if r < 0.1 else (first if r < 0.1 + 0.9 * p else second)
            winner = "tie" if won == "tie" else ("model_a" if won == a else "model_b")
            rows.append(
                {"model_a": a, "model_b": b, "winner": winner, "judge": judge, "prompt": f"Question {k}?"}
                | {"response_a": answers[a], "response_b": answers[b]}
            )
    return rows


def test_the_same_file_imported_shuffled_gives_identical_figures(tmp_path):
    rows = _panel_rows()
    shuffled = [rows[k] for k in np.random.default_rng(0).permutation(len(rows))]
    reports = []
    for name, content in (("in-order", rows), ("shuffled", shuffled)):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        migrate(engine)
        import_battles(engine, write_battles(tmp_path / f"{name}.jsonl", content))
        data = build_report(engine, FAST).data.to_json()
        engine.dispose()
        data.pop("generated_at")
        reports.append(data)
    assert reports[0] == reports[1]
    agreement = reports[0]["agreement"]
    assert agreement["items"] == 60 and agreement["fleiss_kappa"]["raters_per_item"] in (2, 3)
    assert reports[0]["comparisons"][0]["items"] < reports[0]["comparisons"][0]["n"]


def test_skip_invalid_keeps_the_good_rows_and_lists_the_bad(engine, tmp_path):
    good = seed_battle_rows(n=4)
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(good[0]), "{not json", json.dumps(good[1]), json.dumps({**good[2], "response_a": ""})]
    path.write_text("\n".join([*lines, json.dumps(good[3])]) + "\n")
    with pytest.raises(PrefloopError, match=r"mixed.jsonl:2: bad JSON"):
        import_battles(engine, path)  # the default stays all-or-nothing
    assert _count(engine, Judgment) == 0
    result = import_battles(engine, path, skip_invalid=True)
    assert (result.rows, result.judgments_added) == (5, 3)
    assert [s.line for s in result.skipped] == [2, 4]
    assert result.skipped[0].reason.startswith(f"{path}:2: bad JSON")
    assert result.skipped[1].reason == f"{path}:4: field response_a: empty text; fill it in or remove the row"


def test_cli_skip_invalid_writes_the_skipped_rows_report(sqlite_url, tmp_path):
    env = {**os.environ, "PREFLOOP_DB": sqlite_url}
    good = seed_battle_rows(n=3)
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join([json.dumps(good[0]), '["a list"]', json.dumps(good[1]), json.dumps(good[2])]) + "\n"
    )
    run = [sys.executable, "-m", "prefloop.cli", "judgments", "import", str(path), "--skip-invalid"]
    done = subprocess.run(run, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "1 invalid rows skipped, listed in" in out and "3 judgments added" in out
    assert "reserved model names (prefloop's own versions) stored apart: base as imported:base" in out
    [skipped] = [
        json.loads(line) for line in (tmp_path / "mixed.jsonl.skipped.jsonl").read_text().splitlines()
    ]
    assert skipped["line"] == 2 and "expected a JSON object, got list" in skipped["reason"]


def test_battles_on_train_split_prompts_are_kept_out(engine, tmp_path):
    rows = seed_battle_rows(n=4)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": rows[0]["prompt"]}) + "\n")
    import_prompts(engine, prompts, split="train")
    result = import_battles(engine, write_battles(tmp_path / "b.jsonl", rows))
    assert (result.on_train_prompts, result.judgments_added) == (1, 3)
    with session_scope(engine) as session:
        assert {p.split for p in session.exec(select(Prompt)) if p.text == rows[0]["prompt"]} == {Split.train}
        assert len(session.exec(select(Comparison)).all()) == 3


def test_report_leaves_out_eval_judgments_on_train_split_prompts(engine):
    build_eval_db(engine)
    with session_scope(engine, write=True) as session:
        prompt = session.exec(select(Prompt).where(Prompt.split == Split.eval)).first()
        prompt.split = Split.train
        session.add(prompt)
    data = build_report(engine, FAST).data
    # prompt 0: alice's and bob's round-1 vs base, and the simulated annotator's two pairs
    assert data.excluded == [
        "4 eval judgments on train-split prompts left out (the policy trains on those prompts)."
    ]
    assert data.comparisons[0].n == 14


def test_reserved_names_are_reused_when_they_are_prefloop_versions(engine, tmp_path):
    with session_scope(engine, write=True) as session:
        get_or_create_version(session, "base", VersionKind.base, "tiny")
        get_or_create_version(session, "imported:round-1", VersionKind.external)
    result = import_battles(engine, write_battles(tmp_path / "seed.jsonl", seed_battle_rows(n=4)))
    assert result.renamed == {"round-1": "imported:round-1"} and result.versions_added == 0
