"""Label pending pairs with an oracle, through the same assignment API the annotation app uses.

So overlap, leases and the randomised display order behave exactly as for people: the oracle sees the pair
in its displayed order (left, right), like a person would, and its verdict is mapped back to the stored
candidates. The annotator is recorded as ``AnnotatorKind.simulated`` so reports keep its labels apart.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, func
from sqlmodel import select

from core.config import AnnotateConfig
from core.errors import PrefloopError
from labelling.assignment import next_pair, open_pair_count, record_judgment
from labelling.oracles import Oracle, checked_verdict
from storage.db import session_scope
from storage.models import AnnotatorKind, Choice, Comparison, Judgment, Purpose
from storage.repo import get_or_create_annotator


@dataclass
class SimulationSummary:
    annotator: str
    judged: int = 0
    choices: Counter[str] = field(default_factory=Counter)  # stored choice: a / b / tie
    purposes: Counter[str] = field(default_factory=Counter)  # train / eval
    left_chosen: int = 0  # decisive verdicts that picked the left side (position-bias check)
    seconds: float = 0.0
    remaining: int = 0  # pairs still pending for this annotator afterwards


def default_annotator_name(spec: str, noise: float) -> str:
    return f"sim:{spec}" + (f"+noise{noise:g}" if noise else "")


def stored_choice(verdict: str, left: str) -> Choice:
    """An oracle verdict about the displayed (left, right) pair, as a choice about stored (a, b)."""
    if verdict == "tie":
        return Choice.tie
    picked_left = verdict == "a"
    return Choice.a if picked_left == (left == "a") else Choice.b


def simulated_annotator_id(engine: Engine, name: str) -> int:
    """The simulated annotator ``name``, created if new; refuses a name that belongs to a person."""
    with session_scope(engine, write=True) as session:
        annotator = get_or_create_annotator(session, name, kind=AnnotatorKind.simulated)
        if annotator.kind != AnnotatorKind.simulated:
            raise PrefloopError(
                f"--annotator {name}: that name belongs to a {annotator.kind.value} annotator; "
                "pick another name for simulated labels"
            )
        return annotator.id


def simulate(
    engine: Engine,
    oracle: Oracle,
    spec: str,
    *,
    annotator: str,
    settings: AnnotateConfig,
    purpose: Purpose | None = None,
    limit: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimulationSummary:
    """Judge pending pairs until none is left (or ``limit`` are done); ``purpose`` None means both kinds.

    ``on_progress(done, total)`` is called after each judgment; ``total`` is the pending count at start.
    """
    annotator_id = simulated_annotator_id(engine, annotator)
    summary = SimulationSummary(annotator=annotator)
    total = open_pair_count(engine, annotator_id, settings, purpose=purpose)
    first_judgment_id = _last_judgment_id(engine)
    if limit is not None:
        total = min(total, limit)
    started = time.perf_counter()
    while limit is None or summary.judged < limit:
        pair = next_pair(engine, annotator_id, settings, purpose=purpose)
        if pair is None:
            break
        verdict = checked_verdict(oracle(pair.prompt, pair.left_text, pair.right_text), spec)
        choice = stored_choice(verdict, pair.left)
        record_judgment(engine, annotator_id, pair.comparison_id, choice, left=pair.left, settings=settings)
        summary.judged += 1
        summary.choices[choice.value] += 1
        summary.left_chosen += verdict == "a"
        if on_progress is not None:
            on_progress(summary.judged, max(total, summary.judged))
    summary.seconds = time.perf_counter() - started
    summary.remaining = open_pair_count(engine, annotator_id, settings, purpose=purpose)
    summary.purposes = _purposes_judged(engine, annotator_id, after_id=first_judgment_id)
    return summary


def _last_judgment_id(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.coalesce(func.max(Judgment.id), 0))).one()


def _purposes_judged(engine: Engine, annotator_id: int, after_id: int) -> Counter[str]:
    """This run's judgments by pair purpose (the assignment API hides purpose from what it serves)."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Comparison.purpose, func.count(Judgment.id))
            .join(Comparison, Comparison.id == Judgment.comparison_id)
            .where(Judgment.annotator_id == annotator_id, Judgment.id > after_id)
            .group_by(Comparison.purpose)
        )
        return Counter({Purpose(purpose).value: n for purpose, n in rows})
