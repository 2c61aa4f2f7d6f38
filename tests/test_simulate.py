"""`prefloop simulate` labels through the real assignment queue (overlap, display order) as a simulated
annotator, on a real SQLite file; the CLI is run as an operator would."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from sqlmodel import select

from core.config import AnnotateConfig
from core.errors import PrefloopError
from labelling.assignment import left_side
from labelling.oracles import shorter, with_noise
from labelling.simulate import simulate, stored_choice
from storage.db import session_scope
from storage.models import (
    Annotator,
    AnnotatorKind,
    Candidate,
    Comparison,
    Judgment,
    Prompt,
    Purpose,
    Split,
    VersionKind,
    prompt_key,
    text_hash,
)
from storage.repo import (
    get_or_create_annotator,
    get_or_create_candidate,
    get_or_create_comparison,
    get_or_create_round,
    get_or_create_version,
)
from storage.templates import render

SETTINGS = AnnotateConfig(overlap_train=1, overlap_eval=2, eval_share=0.3)
TITLES = ["Short one", "A medium-length title here", "A really rather long title for this video idea"]


def seed(engine, train_prompts: int = 4, eval_prompts: int = 2) -> None:
    """Every pair of three titles of different lengths, per prompt: 3 pairs each."""
    with session_scope(engine, write=True) as session:
        get_or_create_round(session, 0)
        base = get_or_create_version(session, "base", VersionKind.base, "tiny")
        for i in range(train_prompts + eval_prompts):
            purpose = Purpose.train if i < train_prompts else Purpose.eval
            text = render("youtube-title", f"idea number {i}")
            prompt = Prompt(
                text=text, normalized_hash=text_hash(prompt_key(text)), split=Split(purpose.value)
            )
            session.add(prompt)
            session.flush()
            # reversed for odd prompts, so the shorter candidate is sometimes "a", sometimes "b"
            titles = TITLES if i % 2 == 0 else TITLES[::-1]
            cands = [get_or_create_candidate(session, prompt, base, t, round_id=0)[0] for t in titles]
            for x in range(3):
                for y in range(x + 1, 3):
                    get_or_create_comparison(session, cands[x], cands[y], purpose, 0)


def judged(engine, annotator: str) -> list[tuple[Judgment, Comparison, str, str]]:
    with session_scope(engine) as session:
        ann = session.exec(select(Annotator).where(Annotator.name == annotator)).one()
        out = []
        for j in session.exec(select(Judgment).where(Judgment.annotator_id == ann.id)):
            comp = session.get(Comparison, j.comparison_id)
            a, b = (
                session.get(Candidate, comp.candidate_a_id).text,
                session.get(Candidate, comp.candidate_b_id).text,
            )
            out.append((j, comp, a, b))
        return out


def test_stored_choice_maps_the_displayed_verdict_to_candidates():
    assert stored_choice("a", left="a") == "a" and stored_choice("b", left="a") == "b"
    assert stored_choice("a", left="b") == "b" and stored_choice("b", left="b") == "a"
    assert stored_choice("tie", left="b") == "tie"


def test_every_train_pair_is_judged_once_in_its_display_order(engine):
    seed(engine)
    ticks = []
    summary = simulate(
        engine, shorter, "shorter", annotator="sim:shorter", settings=SETTINGS,
        purpose=Purpose.train, on_progress=lambda done, total: ticks.append((done, total)),
    )  # fmt: skip
    assert summary.judged == 12 and summary.purposes == {"train": 12} and summary.remaining == 0
    assert ticks[0] == (1, 12) and ticks[-1] == (12, 12)
    rows = judged(engine, "sim:shorter")
    assert len({comp.id for _, comp, _, _ in rows}) == 12
    sides = set()
    for j, comp, a, b in rows:
        assert comp.purpose == Purpose.train
        assert j.left == left_side(j.annotator_id, comp.id)  # the order the queue chose, recorded
        assert j.choice == ("a" if len(a) < len(b) else "b")  # the shorter title, whichever side it was on
        assert j.ms_to_decide is None
        sides.add(j.left)
    assert sides == {"a", "b"}
    assert summary.left_chosen not in (0, 12)  # a rule without position bias picks both sides
    with session_scope(engine) as session:
        ann = session.exec(select(Annotator).where(Annotator.name == "sim:shorter")).one()
        assert ann.kind == AnnotatorKind.simulated


def test_purpose_limit_and_overlap_are_respected(engine):
    seed(engine)
    first = simulate(engine, shorter, "shorter", annotator="sim:1", settings=SETTINGS, purpose=Purpose.eval)
    assert first.judged == 6 and first.purposes == {"eval": 6}
    again = simulate(engine, shorter, "shorter", annotator="sim:1", settings=SETTINGS, purpose=Purpose.eval)
    assert again.judged == 0  # an annotator never judges a pair twice
    second = simulate(engine, shorter, "shorter", annotator="sim:2", settings=SETTINGS, limit=5)
    assert second.judged == 5 and second.remaining == 13  # 12 train + 6 eval open to sim:2, 5 done
    rest = simulate(engine, shorter, "shorter", annotator="sim:2", settings=SETTINGS)
    assert rest.judged == 13 and rest.purposes["eval"] + second.purposes["eval"] == 6
    third = simulate(engine, shorter, "shorter", annotator="sim:3", settings=SETTINGS)
    assert third.judged == 0  # train overlap 1 and eval overlap 2 are full


def test_noise_flips_decisive_answers(engine):
    seed(engine, train_prompts=10, eval_prompts=0)
    always_wrong = with_noise(shorter, 1.0, random.Random(0))
    simulate(engine, always_wrong, "shorter", annotator="sim:contrarian", settings=SETTINGS)
    assert all(
        j.choice == ("b" if len(a) < len(b) else "a") for j, _, a, b in judged(engine, "sim:contrarian")
    )


def test_a_human_name_is_refused_and_a_bad_verdict_names_the_oracle(engine):
    seed(engine)
    with session_scope(engine, write=True) as session:
        get_or_create_annotator(session, "alice")
    with pytest.raises(PrefloopError, match="alice: that name belongs to a human annotator"):
        simulate(engine, shorter, "shorter", annotator="alice", settings=SETTINGS)
    with pytest.raises(PrefloopError, match="--oracle sloppy returned 'left'"):
        simulate(engine, lambda p, a, b: "left", "sloppy", annotator="sim:sloppy", settings=SETTINGS)
    assert judged(engine, "sim:sloppy") == []  # nothing recorded for the bad answer


def _prefloop(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFLOOP_DB": url}
    return subprocess.run(
        [sys.executable, "-m", "prefloop.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_labels_and_summarises_and_fails_in_one_line(engine, sqlite_url, tmp_path):
    seed(engine)
    rules = tmp_path / "rules.py"
    rules.write_text("def longer(prompt, a, b):\n    return 'a' if len(a) > len(b) else 'b'\n")
    done = _prefloop(
        sqlite_url, "simulate", "--oracle", f"{rules}:longer", "--purpose", "train", "--noise", "0.2"
    )
    assert done.returncode == 0, done.stderr
    assert f"sim:{rules}:longer+noise0.2: judged 12 pairs (12 train)" in done.stdout
    assert "0 still pending" in done.stdout
    nothing = _prefloop(
        sqlite_url, "simulate", "--oracle", f"{rules}:longer", "--purpose", "train", "--noise", "0.2"
    )
    assert "no pending train pairs" in nothing.stdout
    bad = _prefloop(sqlite_url, "simulate", "--oracle", "longest")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: --oracle longest: unknown oracle; use one of length-band, keywords, shorter, number, "
        "clean-title, MODULE:FUNC or FILE.py:FUNC"
    ]


def test_cli_limit_labels_the_pairs_the_selection_ranked_first(engine, sqlite_url):
    """`simulate --limit N` (like a person's first N decisions) judges the N pairs of rank 0..N-1."""
    seed(engine)
    with session_scope(engine, write=True) as session:
        train = session.exec(select(Comparison).where(Comparison.purpose == Purpose.train)).all()
        order = random.Random(5).sample([c.id for c in train], len(train))
        for rank, comparison_id in enumerate(order):
            session.get(Comparison, comparison_id).queue_rank = rank
    done = _prefloop(sqlite_url, "simulate", "--oracle", "shorter", "--purpose", "train", "--limit", "5")
    assert done.returncode == 0, done.stderr
    with session_scope(engine) as session:
        judged = session.exec(select(Judgment.comparison_id).order_by(Judgment.id)).all()
    assert judged == order[:5]
