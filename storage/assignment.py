"""Which pair an annotator labels next, and recording their decision: the server side of the Annotate page.

Rules (issue 4): each pair wants ``overlap`` non-skip judgments (per purpose); an annotator never gets a
pair twice; a pair handed out is leased for ``lease_seconds`` so two people working at once never exceed
its overlap, and an expired lease frees it; skipped pairs go back to others; eval pairs are interleaved at
``eval_share``; left/right order is randomised per (annotator, pair) with a stable seed and stored with
the judgment. Every call is one write transaction, so SQLite (BEGIN IMMEDIATE) and PostgreSQL (row locks
with SKIP LOCKED) both hand out each slot once.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, and_, case, delete, func, literal
from sqlmodel import Session, select

from prefloop.config import AnnotateConfig
from prefloop.errors import PrefloopError
from storage.db import session_scope
from storage.models import Annotator, Candidate, Choice, Comparison, Judgment, Lease, Prompt, Purpose, utcnow

Side = Literal["a", "b"]
NOTE_MAX_CHARS = 500
_CANDIDATES_PER_PICK = 16  # eligible pairs fetched at once; on PostgreSQL the locked ones are skipped
_SHUFFLE_MULTIPLIER = 2654435761  # Knuth's multiplicative hash: a fixed, prompt-mixing serving order
_SHUFFLE_MODULUS = 2**32
_CONTENDED_RETRIES = 200  # PostgreSQL: all open pairs locked by others -> look again (about 2 s at most)
_CONTENDED_SLEEP_S = 0.01


@dataclass(frozen=True)
class Assigned:
    """What the Annotate page shows: texts and display order only, never the model, version or purpose."""

    comparison_id: int
    round_id: int | None
    prompt: str
    system: str | None
    history: list[dict[str, str]]  # earlier turns of a multi-turn prompt ([] for a single turn)
    left: Side  # which comparison candidate ("a" or "b") is displayed on the left
    left_text: str
    right_text: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class Progress:
    round_id: int | None  # the current round: the newest round that has pairs
    done: int  # pairs of that round whose overlap is met
    total: int  # pairs in that round
    mine_today: int  # this annotator's decisions (skips excluded) since local midnight


def left_side(annotator_id: int, comparison_id: int) -> Side:
    """Stable coin flip per (annotator, pair): a reload shows the same order; annotators differ."""
    digest = hashlib.sha256(f"{annotator_id}:{comparison_id}".encode()).digest()
    return "a" if digest[0] & 1 else "b"


def side_to_choice(side: Literal["left", "right"], left: Side) -> Choice:
    """Map the button the annotator pressed (left/right) to the comparison's terms (a/b)."""
    if side == "left":
        return Choice(left)
    return Choice.b if left == "a" else Choice.a


def overlap_for(purpose: Purpose, settings: AnnotateConfig) -> int:
    return settings.overlap_eval if purpose == Purpose.eval else settings.overlap_train


def _lock_annotator(session: Session, annotator_id: int) -> Annotator:
    """Serialise one annotator's calls (two tabs) on PostgreSQL; SQLite's BEGIN IMMEDIATE already does."""
    annotator = session.exec(select(Annotator).where(Annotator.id == annotator_id).with_for_update()).first()
    if annotator is None:
        raise PrefloopError(
            f"annotator id {annotator_id} does not exist: add one with `prefloop annotators add`"
        )
    return annotator


def _current(annotator_id: int | None = None):
    """SQL condition: a judgment that is not superseded (optionally by one annotator)."""
    cond = Judgment.superseded_at.is_(None)
    return and_(cond, Judgment.annotator_id == annotator_id) if annotator_id is not None else cond


def _decisions_on(comparison_id_col):
    """Correlated count of current non-skip judgments of a pair: what fills its overlap."""
    return (
        select(func.count(Judgment.id))
        .where(Judgment.comparison_id == comparison_id_col, _current(), Judgment.choice != Choice.skip)
        .scalar_subquery()
    )


def _live_leases_on(comparison_id_col, now: datetime, other_than: int):
    return (
        select(func.count())
        .select_from(Lease)
        .where(
            Lease.comparison_id == comparison_id_col, Lease.expires_at > now, Lease.annotator_id != other_than
        )
        .scalar_subquery()
    )


def _assigned(session: Session, annotator_id: int, comparison: Comparison, expires_at: datetime) -> Assigned:
    cand_a = session.get(Candidate, comparison.candidate_a_id)
    cand_b = session.get(Candidate, comparison.candidate_b_id)
    prompt = session.get(Prompt, comparison.prompt_id)
    left = left_side(annotator_id, comparison.id)
    left_cand, right_cand = (cand_a, cand_b) if left == "a" else (cand_b, cand_a)
    return Assigned(
        comparison_id=comparison.id,
        round_id=comparison.round_id,
        prompt=prompt.text,
        system=prompt.system,
        history=list(prompt.history or []),
        left=left,
        left_text=left_cand.text,
        right_text=right_cand.text,
        lease_expires_at=expires_at,
    )


def _own_live_lease(session: Session, annotator_id: int, now: datetime) -> Lease | None:
    return session.exec(
        select(Lease)
        .where(Lease.annotator_id == annotator_id, Lease.expires_at > now)
        .order_by(Lease.expires_at.desc())
    ).first()


def _purpose_order(session: Session, annotator_id: int, settings: AnnotateConfig) -> list[Purpose]:
    """Eval first with probability ``eval_share``; seeded by how many decisions this annotator has made,
    so the interleaving is irregular (annotators cannot spot the eval pairs) yet reproducible."""
    n_made = session.exec(select(func.count(Judgment.id)).where(Judgment.annotator_id == annotator_id)).one()
    rng = random.Random(f"{annotator_id}:{n_made}")
    if rng.random() < settings.eval_share:
        return [Purpose.eval, Purpose.train]
    return [Purpose.train, Purpose.eval]


def _eligible(annotator_id: int, purpose: Purpose, overlap: int, now: datetime):
    """SQL condition: a pair of ``purpose`` this annotator has not judged whose overlap is not taken yet."""
    decisions = _decisions_on(Comparison.id)
    leases = _live_leases_on(Comparison.id, now, annotator_id)
    already = (
        select(literal(1)).where(Judgment.comparison_id == Comparison.id, _current(annotator_id)).exists()
    )
    return and_(Comparison.purpose == purpose, ~already, decisions + leases < overlap)


def _eligible_ids(
    session: Session, annotator_id: int, purpose: Purpose, overlap: int, now: datetime
) -> list[int]:
    """Pairs this annotator may get, best first: newest round, nearly-full pairs (so overlapping
    judgments arrive together), then a fixed pseudo-random order that mixes prompts."""
    decisions = _decisions_on(Comparison.id)
    leases = _live_leases_on(Comparison.id, now, annotator_id)
    stmt = (
        select(Comparison.id)
        .where(_eligible(annotator_id, purpose, overlap, now))
        .order_by(
            func.coalesce(Comparison.round_id, -1).desc(),
            (decisions + leases).desc(),
            (Comparison.id * _SHUFFLE_MULTIPLIER) % _SHUFFLE_MODULUS,
        )
        .limit(_CANDIDATES_PER_PICK)
    )
    return list(session.exec(stmt))


def _taken_slots(session: Session, comparison_id: int, annotator_id: int, now: datetime) -> int:
    """Slots of a pair taken: current decisions plus other annotators' live leases."""
    decisions = session.exec(
        select(func.count(Judgment.id)).where(
            Judgment.comparison_id == comparison_id, _current(), Judgment.choice != Choice.skip
        )
    ).one()
    leases = session.exec(
        select(func.count())
        .select_from(Lease)
        .where(
            Lease.comparison_id == comparison_id, Lease.expires_at > now, Lease.annotator_id != annotator_id
        )
    ).one()
    return decisions + leases


def _claim_postgres(
    session: Session, ids: list[int], annotator_id: int, overlap: int, now: datetime
) -> tuple[int | None, bool]:
    """Lock one pair row (SKIP LOCKED: a pair someone else is being given right now is passed over), then
    re-count under READ COMMITTED, which now sees every committed lease. Returns the claimed id (or None)
    and whether some open pair was passed over because another transaction held it."""
    contended = False
    for comparison_id in ids:
        locked = session.exec(
            select(Comparison.id).where(Comparison.id == comparison_id).with_for_update(skip_locked=True)
        ).first()
        if locked is None:
            contended = True
        elif _taken_slots(session, comparison_id, annotator_id, now) < overlap:
            return comparison_id, contended
    return None, contended


def _pick(
    session: Session,
    annotator_id: int,
    settings: AnnotateConfig,
    now: datetime,
    postgres: bool,
    only: Purpose | None = None,
) -> int | None:
    for purpose in [only] if only is not None else _purpose_order(session, annotator_id, settings):
        overlap = overlap_for(purpose, settings)
        ids = _eligible_ids(session, annotator_id, purpose, overlap, now)
        if not postgres:  # BEGIN IMMEDIATE: no other writer runs until we commit, the first one is ours
            if ids:
                return ids[0]
            continue
        for _attempt in range(_CONTENDED_RETRIES):
            claimed, contended = _claim_postgres(session, ids, annotator_id, overlap, now)
            if claimed is not None:
                return claimed
            if not contended:
                break
            time.sleep(_CONTENDED_SLEEP_S)  # the holders commit within milliseconds; look again
            ids = _eligible_ids(session, annotator_id, purpose, overlap, now)
    return None


def next_pair(
    engine: Engine,
    annotator_id: int,
    settings: AnnotateConfig,
    *,
    now: datetime | None = None,
    purpose: Purpose | None = None,
) -> Assigned | None:
    """The annotator's own live lease if any (a reload shows the same pair), else a newly leased pair;
    None when nothing is open for them right now (a pair leased to someone else may come back later).

    ``purpose`` serves only train or only eval pairs (``prefloop simulate --purpose``); a live lease on a
    pair of the other purpose is released."""
    now = now or utcnow()
    expires_at = now + timedelta(seconds=settings.lease_seconds)
    with session_scope(engine, write=True) as session:
        _lock_annotator(session, annotator_id)
        # Only this annotator's stale rows are removed (others' are ignored by the expires_at filters):
        # two transactions never delete the same rows, so PostgreSQL cannot deadlock on them.
        session.exec(delete(Lease).where(Lease.annotator_id == annotator_id, Lease.expires_at <= now))
        own = _own_live_lease(session, annotator_id, now)
        if (
            own is not None
            and purpose is not None
            and session.get(Comparison, own.comparison_id).purpose != purpose
        ):
            session.delete(own)
            own = None
        if own is not None:
            own.expires_at = expires_at
            session.add(own)
            return _assigned(session, annotator_id, session.get(Comparison, own.comparison_id), expires_at)
        postgres = engine.dialect.name == "postgresql"
        comparison_id = _pick(session, annotator_id, settings, now, postgres, purpose)
        if comparison_id is None:
            return None
        session.add(Lease(comparison_id=comparison_id, annotator_id=annotator_id, expires_at=expires_at))
        session.flush()
        return _assigned(session, annotator_id, session.get(Comparison, comparison_id), expires_at)


def open_pair_count(
    engine: Engine,
    annotator_id: int,
    settings: AnnotateConfig,
    *,
    purpose: Purpose | None = None,
    now: datetime | None = None,
) -> int:
    """How many pairs ``next_pair`` could still hand this annotator now (a progress bar's total)."""
    now = now or utcnow()
    purposes = [purpose] if purpose is not None else list(Purpose)
    with session_scope(engine) as session:
        return sum(
            session.exec(
                select(func.count(Comparison.id)).where(
                    _eligible(annotator_id, p, overlap_for(p, settings), now)
                )
            ).one()
            for p in purposes
        )


def _clean_note(note: str | None) -> str | None:
    if note is None:
        return None
    one_line = " ".join(note.split())[:NOTE_MAX_CHARS]
    return one_line or None


def record_judgment(
    engine: Engine,
    annotator_id: int,
    comparison_id: int,
    choice: Choice | str,
    *,
    left: Side,
    ms_to_decide: int | None = None,
    note: str | None = None,
) -> Judgment:
    """Store a decision (a/b in comparison terms) and release the lease.

    A second decision by the same annotator on the same pair is a revision: the old row gets
    ``superseded_at`` so there is never more than one current judgment per (annotator, pair).
    A decision arriving after its lease expired is kept: the work was done, and the overlap is a target.
    """
    choice = Choice(choice)
    if left not in ("a", "b"):
        raise PrefloopError(f"left={left!r}: expected 'a' or 'b' (which candidate was shown on the left)")
    if ms_to_decide is not None and ms_to_decide < 0:
        raise PrefloopError(f"ms_to_decide={ms_to_decide}: must be >= 0")
    now = utcnow()
    with session_scope(engine, write=True) as session:
        _lock_annotator(session, annotator_id)
        if session.get(Comparison, comparison_id) is None:
            raise PrefloopError(f"comparison id {comparison_id} does not exist")
        for old in session.exec(
            select(Judgment).where(Judgment.comparison_id == comparison_id, _current(annotator_id))
        ):
            old.superseded_at = now
            session.add(old)
        judgment = Judgment(
            comparison_id=comparison_id,
            annotator_id=annotator_id,
            choice=choice,
            left=left,
            ms_to_decide=ms_to_decide,
            note=_clean_note(note),
            created_at=now,
        )
        session.add(judgment)
        session.exec(
            delete(Lease).where(Lease.annotator_id == annotator_id, Lease.comparison_id == comparison_id)
        )
        session.flush()
        return judgment


def undo_last(
    engine: Engine, annotator_id: int, settings: AnnotateConfig | None = None, *, now: datetime | None = None
) -> Judgment | None:
    """Withdraw the annotator's latest current judgment (kept as history) and lease its pair back to
    them, so ``next_pair`` shows it again; the pair they were looking at returns to the queue."""
    now = now or utcnow()
    lease_seconds = (settings or AnnotateConfig()).lease_seconds
    with session_scope(engine, write=True) as session:
        _lock_annotator(session, annotator_id)
        last = session.exec(
            select(Judgment).where(_current(annotator_id)).order_by(Judgment.id.desc()).limit(1)
        ).first()
        if last is None:
            return None
        last.superseded_at = now
        session.add(last)
        session.exec(delete(Lease).where(Lease.annotator_id == annotator_id))
        session.add(
            Lease(
                comparison_id=last.comparison_id,
                annotator_id=annotator_id,
                expires_at=now + timedelta(seconds=lease_seconds),
            )
        )
        session.flush()
        return last


def progress(
    engine: Engine, annotator_id: int, settings: AnnotateConfig, *, now: datetime | None = None
) -> Progress:
    """Done/total pairs in the current round (team-wide, against the overlap) and today's own count."""
    now = now or utcnow()
    midnight = now.astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    with session_scope(engine) as session:
        mine_today = session.exec(
            select(func.count(Judgment.id)).where(
                _current(annotator_id), Judgment.choice != Choice.skip, Judgment.created_at >= midnight
            )
        ).one()
        round_id = session.exec(select(func.max(Comparison.round_id))).one()
        in_round = Comparison.round_id == round_id if round_id is not None else Comparison.round_id.is_(None)
        wanted = case(
            (Comparison.purpose == Purpose.eval, settings.overlap_eval), else_=settings.overlap_train
        )
        decisions = _decisions_on(Comparison.id)
        total, done = session.exec(
            select(
                func.count(Comparison.id), func.coalesce(func.sum(case((decisions >= wanted, 1), else_=0)), 0)
            ).where(in_round)
        ).one()
    return Progress(round_id=round_id, done=int(done), total=int(total), mine_today=int(mine_today))


__all__ = [
    "Assigned",
    "Progress",
    "left_side",
    "next_pair",
    "open_pair_count",
    "overlap_for",
    "progress",
    "record_judgment",
    "side_to_choice",
    "undo_last",
]
