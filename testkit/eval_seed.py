"""Evaluation data for the report and Arena tests, built with the repo helpers and real judgments.

``build_eval_db`` writes a small, hand-countable history (see the counts in its docstring) so tests can
assert exact statistics; ``write_seed_battles`` writes the seed tutorial's 50 judgments as an Arena file.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from storage.db import session_scope
from storage.models import (
    AnnotatorKind,
    Candidate,
    Choice,
    Comparison,
    Judgment,
    ModelVersion,
    Prompt,
    Purpose,
    Split,
    TrainingRun,
    VersionKind,
    prompt_key,
    text_hash,
    utcnow,
)
from storage.repo import (
    get_or_create_annotator,
    get_or_create_candidate,
    get_or_create_comparison,
    get_or_create_round,
    get_or_create_version,
)

TEMPLATE = (
    "Given the YouTube video idea write an engaging title.\n\n**Video Idea**: {idea}\n\n"
    "**Additional Guidance**:\n- Title should be between 30 and 75 characters long\n"
    "- Only return the title idea, nothing else!"
)
IDEAS = [f"Baking sourdough bread, lesson {k}" for k in range(10)]

# outcomes of round-1 against base, per prompt: W round-1 wins, L base wins, T tie, B both bad
ALICE = "WWWLWWWLTB"  # prompts 0-9; she always picks the side shown on the LEFT
BOB = "WWWLLT"  # prompts 0-5; he always picks the side shown on the RIGHT; he skips prompt 6
SIM_VS_BASE = "WWWWWWWWWL"  # simulated annotator: round-2 against base
SIM_VS_ROUND_1 = "WWWWWWWLLL"  # simulated annotator: round-2 against round-1


def _prompt(session: Session, idea: str, split: Split) -> Prompt:
    text = TEMPLATE.format(idea=idea)
    prompt = Prompt(text=text, normalized_hash=text_hash(prompt_key(text)), raw=idea, split=split)
    session.add(prompt)
    session.flush()
    return prompt


def _adapter(session: Session, name: str, round_id: int) -> ModelVersion:
    get_or_create_round(session, round_id)
    run = TrainingRun(round_id=round_id)
    session.add(run)
    session.flush()
    return get_or_create_version(session, name, VersionKind.adapter, "tiny", training_run_id=run.id)


def judge(
    session: Session,
    comp: Comparison,
    annotator_id: int,
    winner: Candidate | str,
    left: Candidate | None,
    **fields,
) -> Judgment:
    """Record a judgment naming the winning candidate (or "tie"/"both_bad"/"skip") and the left one."""
    if isinstance(winner, Candidate):
        choice = Choice.a if winner.id == comp.candidate_a_id else Choice.b
    else:
        choice = Choice(winner)
    side = None if left is None else ("a" if left.id == comp.candidate_a_id else "b")
    judgment = Judgment(comparison_id=comp.id, annotator_id=annotator_id, choice=choice, left=side, **fields)
    session.add(judgment)
    session.flush()
    return judgment


def _outcome(session, comp, annotator_id, code, model, baseline, *, picks_left: bool) -> None:
    """W: model wins, L: baseline wins, T/B: tie/both bad; the winner shown left or right as asked."""
    if code in "TB":
        judge(session, comp, annotator_id, "tie" if code == "T" else "both_bad", model)
        return
    winner, loser = (model, baseline) if code == "W" else (baseline, model)
    judge(session, comp, annotator_id, winner, winner if picks_left else loser)


def build_eval_db(engine: Engine, suffix: str = "") -> None:
    """base, round-1 (round 1) and round-2 (round 2) on 10 held-out prompts.

    Humans, round-1 vs base: alice (10 judgments) + bob (6, plus a skip) = 9 wins, 4 losses, 2 ties,
    1 both-bad; alice's first answer on prompt 0 (L) was revised to W (the old row is superseded).
    Simulated "sim": round-2 vs base 9-1, round-2 vs round-1 7-3; round-2's outputs are truncated and
    repetitive (finish_reason "length"), so its health is flagged. A judged train pair must be ignored.
    ``suffix`` makes the prompts new, so the bench can stack several copies in one database.
    """
    with session_scope(engine, write=True) as session:
        get_or_create_round(session, 0)
        base = get_or_create_version(session, "base", VersionKind.base, "tiny")
        round_1 = _adapter(session, "round-1", 1)
        round_2 = _adapter(session, "round-2", 2)
        alice = get_or_create_annotator(session, "alice").id
        bob = get_or_create_annotator(session, "bob").id
        sim = get_or_create_annotator(session, "sim", kind=AnnotatorKind.simulated).id
        for k, idea in enumerate(IDEAS):
            prompt = _prompt(session, idea + suffix, Split.eval)
            c_base, _ = get_or_create_candidate(
                session, prompt, base, f"Sourdough at Home, Lesson {k}: Bread Basics", finish_reason="stop"
            )
            c_r1, _ = get_or_create_candidate(
                session,
                prompt,
                round_1,
                f"My Sourdough Bread Journey at Home, Lesson {k} of 10",
                finish_reason="stop",
            )
            c_r2, _ = get_or_create_candidate(
                session, prompt, round_2, f"Bread Bread Bread Bread Bread Bread {k}", finish_reason="length"
            )
            r1_base, _ = get_or_create_comparison(session, c_r1, c_base, Purpose.eval, 1)
            if k == 0:
                old = judge(session, r1_base, alice, c_base, c_base)
                old.superseded_at = utcnow() + timedelta(seconds=1)
            _outcome(session, r1_base, alice, ALICE[k], c_r1, c_base, picks_left=True)
            if k < len(BOB):
                _outcome(session, r1_base, bob, BOB[k], c_r1, c_base, picks_left=False)
            if k == len(BOB):
                judge(session, r1_base, bob, "skip", c_base)
            r2_base, _ = get_or_create_comparison(session, c_r2, c_base, Purpose.eval, 2)
            _outcome(session, r2_base, sim, SIM_VS_BASE[k], c_r2, c_base, picks_left=k % 2 == 0)
            r2_r1, _ = get_or_create_comparison(session, c_r2, c_r1, Purpose.eval, 2)
            _outcome(session, r2_r1, sim, SIM_VS_ROUND_1[k], c_r2, c_r1, picks_left=k % 2 == 1)
        train_prompt = _prompt(session, "A train-split idea" + suffix, Split.train)
        t1, _ = get_or_create_candidate(session, train_prompt, base, "Train title one")
        t2, _ = get_or_create_candidate(session, train_prompt, base, "Train title two")
        train_pair, _ = get_or_create_comparison(session, t1, t2, Purpose.train, 0)
        judge(session, train_pair, alice, t1, t1)


def seed_battle_rows(wins: int = 34, n: int = 50) -> list[dict]:
    """The seed tutorial's evaluation as Arena battles: fine-tuned ("round-1") preferred in ``wins`` of ``n``,
    shown on the left in every other battle."""
    rows = []
    for i in range(n):
        prompt = TEMPLATE.format(idea=f"Seed video idea {i}")
        tuned, base = f"The One Sourdough Trick Bakers Swear By, Part {i}", f"Sourdough video {i}"
        tuned_won = i < wins
        if i % 2:
            row = {"model_a": "base", "model_b": "round-1", "response_a": base, "response_b": tuned}
            row["winner"] = "model_b" if tuned_won else "model_a"
        else:
            row = {"model_a": "round-1", "model_b": "base", "response_a": tuned, "response_b": base}
            row["winner"] = "model_a" if tuned_won else "model_b"
        rows.append({**row, "prompt": prompt, "judge": "seed-author"})
    return rows


def write_battles(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
