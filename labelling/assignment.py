"""Which pair an annotator labels next, and recording their decision: the server side of the Annotate page.

Rules (issue 4): each pair wants ``overlap`` non-skip judgments (per purpose); an annotator never gets a
pair twice; a pair handed out is leased for ``lease_seconds`` so two people working at once never exceed
its overlap, and an expired lease frees it; skipped pairs go back to others; eval pairs are interleaved at
``eval_share``; left/right order is randomised per (annotator, pair) with a stable seed and stored with
the judgment. A decision is accepted only on the annotator's live lease, or after it expired while the
pair still has room (issue 14); changing one goes through ``undo_last``, which reaches back one recent
decision. Every call is one write transaction, so SQLite (BEGIN IMMEDIATE) and PostgreSQL (row locks)
both hand out and fill each slot once.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, Engine, and_, bindparam, case, delete, func, insert, literal, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from core.config import AnnotateConfig
from core.errors import PrefloopError
from storage.db import session_scope
from storage.models import (
    Annotator,
    Candidate,
    Choice,
    Comparison,
    Judgment,
    Lease,
    Prompt,
    Purpose,
    Strength,
    utcnow,
)
from storage.queries import current
from storage.templates import subject_of

Side = Literal["a", "b"]
NOTE_MAX_CHARS = 500
_CANDIDATES_PER_PICK = 16  # eligible pairs fetched at once; on PostgreSQL the locked ones are skipped
_SHUFFLE_MULTIPLIER = 2654435761  # Knuth's multiplicative hash: a fixed, prompt-mixing serving order
_SHUFFLE_MODULUS = 2**32
_UNRANKED = 2**31 - 1  # pairs queued without a selection rank (imports, older rounds) come after ranked ones
_CONTENDED_RETRIES = 200  # PostgreSQL: all open pairs locked by others -> look again (about 2 s at most)
_CONTENDED_SLEEP_S = 0.01


@dataclass(frozen=True)
class Assigned:
    """What the Annotate page shows: texts and display order only, never the model, version or purpose."""

    comparison_id: int
    round_id: int | None
    prompt: str
    subject: str | None  # the raw input the prompt was made from by a template (e.g. the video idea)
    subject_label: str  # what that input is ("Video idea")
    system: str | None
    history: list[dict[str, str]]  # earlier turns of a multi-turn prompt ([] for a single turn)
    left: Side  # which comparison candidate ("a" or "b") is displayed on the left
    left_text: str
    right_text: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class Progress:
    """One annotator's view of the queue: their own work and what is left for them, beside the team's."""

    round_id: int | None  # the current round: the newest round that has pairs
    done: int  # pairs of that round whose overlap is met (the team's)
    total: int  # pairs in that round
    mine: int  # this annotator's current decisions (skips excluded) in that round
    left_for_me: int  # pairs ``next_pair`` could still hand them, any round (their own lease included)
    held_by_others: int  # open pairs kept from them only by others' live leases (may come back)


_CANDIDATE_A = aliased(Candidate, name="candidate_a")  # built once: a fresh alias per call costs ~1 ms
_CANDIDATE_B = aliased(Candidate, name="candidate_b")


@contextmanager
def _write_scope(engine: Engine) -> Iterator[Session]:
    """A write transaction: on SQLite, the writers of every thread and process queue for their turn
    (``storage.db.session_scope``), so 32 annotators at once never wait out the busy timeout."""
    with session_scope(engine, write=True) as session:
        yield session


def left_side(annotator_id: int, comparison_id: int) -> Side:
    """Stable coin flip per (annotator, pair): a reload shows the same order; annotators differ."""
    digest = hashlib.sha256(f"{annotator_id}:{comparison_id}".encode()).digest()
    return "a" if digest[0] & 1 else "b"


def side_to_choice(side: Literal["left", "right"], left: Side) -> Choice:
    """Map the button the annotator pressed (left/right) to the comparison's terms (a/b)."""
    if side == "left":
        return Choice(left)
    return Choice.b if left == "a" else Choice.a


# The graded scale (``annotate.graded_choices``) in screen terms: (label, button action, strength).
GRADED_SCALE: list[tuple[str, str, Strength | None]] = [
    ("A much better", "left", Strength.much),
    ("A slightly better", "left", Strength.slightly),
    ("Tie", Choice.tie.value, None),
    ("B slightly better", "right", Strength.slightly),
    ("B much better", "right", Strength.much),
]


def overlap_for(purpose: Purpose, settings: AnnotateConfig) -> int:
    return settings.overlap_eval if purpose == Purpose.eval else settings.overlap_train


def _current(annotator_id: int | None = None):
    """SQL condition: a judgment that is not superseded (optionally by one annotator)."""
    cond = current()
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


def _assigned(conn: Connection, annotator_id: int, comparison_id: int, expires_at: datetime) -> Assigned:
    """The pair as the page shows it, read in one query."""
    round_id, prompt_text, raw, template, system, history, a_text, b_text = conn.execute(
        _SQL_PAIR_TEXTS, {"comparison": comparison_id}
    ).one()
    left = left_side(annotator_id, comparison_id)
    return Assigned(
        comparison_id=comparison_id,
        round_id=round_id,
        prompt=prompt_text,
        subject=raw if template and raw else None,
        subject_label=subject_of(template),
        system=system,
        history=list(history or []),
        left=left,
        left_text=a_text if left == "a" else b_text,
        right_text=b_text if left == "a" else a_text,
        lease_expires_at=expires_at,
    )


def _purpose_order(conn: Connection, annotator_id: int, settings: AnnotateConfig) -> list[Purpose]:
    """Eval first with probability ``eval_share``; seeded by how many decisions this annotator has made,
    so the interleaving is irregular (annotators cannot spot the eval pairs) yet reproducible."""
    n_made = conn.execute(_SQL_N_MADE, {"annotator": annotator_id}).scalar_one()
    rng = random.Random(f"{annotator_id}:{n_made}")
    if rng.random() < settings.eval_share:
        return [Purpose.eval, Purpose.train]
    return [Purpose.train, Purpose.eval]


def _eligible(annotator_id, purpose, overlap, now):
    """SQL condition: a pair of ``purpose`` this annotator has not judged whose overlap is not taken yet.
    Arguments are values or ``bindparam``s (the prebuilt statements below)."""
    decisions = _decisions_on(Comparison.id)
    leases = _live_leases_on(Comparison.id, now, annotator_id)
    already = (
        select(literal(1)).where(Judgment.comparison_id == Comparison.id, _current(annotator_id)).exists()
    )
    return and_(Comparison.purpose == purpose, ~already, decisions + leases < overlap)


def _eligible_statement():
    """Pairs an annotator may get, best first: newest round, nearly-full pairs (so overlapping
    judgments arrive together), the pair selection's rank (``Comparison.queue_rank``: its first choices
    first, unranked pairs last), then a fixed pseudo-random order that mixes prompts."""
    annotator, now = bindparam("annotator"), bindparam("now")
    decisions = _decisions_on(Comparison.id)
    leases = _live_leases_on(Comparison.id, now, annotator)
    return (
        select(Comparison.id)
        .where(_eligible(annotator, bindparam("purpose"), bindparam("overlap"), now))
        .order_by(
            func.coalesce(Comparison.round_id, -1).desc(),
            (decisions + leases).desc(),
            func.coalesce(Comparison.queue_rank, _UNRANKED),
            (Comparison.id * _SHUFFLE_MULTIPLIER) % _SHUFFLE_MODULUS,
        )
        .limit(_CANDIDATES_PER_PICK)
    )


# Built once: constructing a statement costs more than running it on SQLite (ORM coercion), and the
# page asks for a pair on every click.
_SQL_ANNOTATOR = select(Annotator.id).where(Annotator.id == bindparam("annotator")).with_for_update()
_SQL_DROP_MY_EXPIRED_LEASES = delete(Lease).where(
    Lease.annotator_id == bindparam("annotator"), Lease.expires_at <= bindparam("now")
)
_SQL_MY_LIVE_LEASE = (
    select(Lease.comparison_id, Comparison.purpose)
    .join(Comparison, Comparison.id == Lease.comparison_id)
    .where(Lease.annotator_id == bindparam("annotator"), Lease.expires_at > bindparam("now"))
    .order_by(Lease.expires_at.desc())
    .limit(1)
)
_SQL_SET_LEASE_EXPIRY = (
    update(Lease)
    .where(Lease.annotator_id == bindparam("annotator"), Lease.comparison_id == bindparam("comparison"))
    .values(expires_at=bindparam("expires"))
)
_SQL_DROP_LEASE = delete(Lease).where(
    Lease.annotator_id == bindparam("annotator"), Lease.comparison_id == bindparam("comparison")
)
_SQL_INSERT_LEASE = insert(Lease).values(
    comparison_id=bindparam("comparison"),
    annotator_id=bindparam("annotator"),
    expires_at=bindparam("expires"),
)
_SQL_N_MADE = select(func.count(Judgment.id)).where(Judgment.annotator_id == bindparam("annotator"))
_SQL_ELIGIBLE = _eligible_statement()
_SQL_TAKEN = select(
    _decisions_on(bindparam("comparison"))
    + _live_leases_on(bindparam("comparison"), bindparam("now"), bindparam("annotator"))
)
_SQL_LOCK_PAIR = (
    select(Comparison.id).where(Comparison.id == bindparam("comparison")).with_for_update(skip_locked=True)
)
_SQL_LOCK_PAIR_WAIT = select(Comparison.id).where(Comparison.id == bindparam("comparison")).with_for_update()
_SQL_PAIR_PURPOSE = select(Comparison.purpose).where(Comparison.id == bindparam("comparison"))
_SQL_MY_CURRENT = select(Judgment.id).where(
    Judgment.comparison_id == bindparam("comparison"), _current(bindparam("annotator"))
)
_SQL_PAIR_TEXTS = (
    select(
        Comparison.round_id,
        Prompt.text,
        Prompt.raw,
        Prompt.template,
        Prompt.system,
        Prompt.history,
        _CANDIDATE_A.text,
        _CANDIDATE_B.text,
    )
    .join(Prompt, Prompt.id == Comparison.prompt_id)
    .join(_CANDIDATE_A, _CANDIDATE_A.id == Comparison.candidate_a_id)
    .join(_CANDIDATE_B, _CANDIDATE_B.id == Comparison.candidate_b_id)
    .where(Comparison.id == bindparam("comparison"))
)


def _lock_annotator(conn: Connection, annotator_id: int) -> None:
    """Serialise one annotator's calls (two tabs) on PostgreSQL; SQLite's BEGIN IMMEDIATE already does."""
    if conn.execute(_SQL_ANNOTATOR, {"annotator": annotator_id}).first() is None:
        raise PrefloopError(
            f"annotator id {annotator_id} does not exist: add one with `prefloop annotators add`"
        )


def _eligible_ids(
    conn: Connection, annotator_id: int, purpose: Purpose, overlap: int, now: datetime
) -> list[int]:
    params = {"annotator": annotator_id, "purpose": purpose, "overlap": overlap, "now": now}
    return list(conn.execute(_SQL_ELIGIBLE, params).scalars())


def _claim_postgres(
    conn: Connection, ids: list[int], annotator_id: int, overlap: int, now: datetime
) -> tuple[int | None, bool]:
    """Lock one pair row (SKIP LOCKED: a pair someone else is being given right now is passed over), then
    re-count under READ COMMITTED, which now sees every committed lease. Returns the claimed id (or None)
    and whether some open pair was passed over because another transaction held it."""
    contended = False
    for comparison_id in ids:
        if conn.execute(_SQL_LOCK_PAIR, {"comparison": comparison_id}).first() is None:
            contended = True
            continue
        taken = conn.execute(
            _SQL_TAKEN, {"comparison": comparison_id, "now": now, "annotator": annotator_id}
        ).scalar_one()
        if taken < overlap:
            return comparison_id, contended
    return None, contended


def _pick(
    conn: Connection,
    annotator_id: int,
    settings: AnnotateConfig,
    now: datetime,
    postgres: bool,
    only: Purpose | None = None,
) -> int | None:
    for purpose in [only] if only is not None else _purpose_order(conn, annotator_id, settings):
        overlap = overlap_for(purpose, settings)
        ids = _eligible_ids(conn, annotator_id, purpose, overlap, now)
        if not postgres:  # BEGIN IMMEDIATE: no other writer runs until we commit, the first one is ours
            if ids:
                return ids[0]
            continue
        for _attempt in range(_CONTENDED_RETRIES):
            claimed, contended = _claim_postgres(conn, ids, annotator_id, overlap, now)
            if claimed is not None:
                return claimed
            if not contended:
                break
            time.sleep(_CONTENDED_SLEEP_S)  # the holders commit within milliseconds; look again
            ids = _eligible_ids(conn, annotator_id, purpose, overlap, now)
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
    mine = {"annotator": annotator_id, "now": now}
    with _write_scope(engine) as session:
        conn = session.connection()
        _lock_annotator(conn, annotator_id)
        # Only this annotator's stale rows are removed (others' are ignored by the expires_at filters):
        # two transactions never delete the same rows, so PostgreSQL cannot deadlock on them.
        conn.execute(_SQL_DROP_MY_EXPIRED_LEASES, mine)
        own = conn.execute(_SQL_MY_LIVE_LEASE, mine).first()
        if own is not None and purpose is not None and own.purpose != purpose:
            conn.execute(_SQL_DROP_LEASE, {"annotator": annotator_id, "comparison": own.comparison_id})
            own = None
        if own is not None:
            lease = {"annotator": annotator_id, "comparison": own.comparison_id, "expires": expires_at}
            conn.execute(_SQL_SET_LEASE_EXPIRY, lease)
            return _assigned(conn, annotator_id, own.comparison_id, expires_at)
        postgres = engine.dialect.name == "postgresql"
        comparison_id = _pick(conn, annotator_id, settings, now, postgres, purpose)
        if comparison_id is None:
            return None
        conn.execute(
            _SQL_INSERT_LEASE, {"annotator": annotator_id, "comparison": comparison_id, "expires": expires_at}
        )
        return _assigned(conn, annotator_id, comparison_id, expires_at)


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


class DecisionRefused(PrefloopError):
    """A decision on a pair that is not, or no longer, the annotator's to decide; nothing was stored."""


@dataclass(frozen=True)
class Undoable:
    """The one decision "Undo" would withdraw, as the page describes it before the click."""

    judgment_id: int
    comparison_id: int
    choice: Choice
    left: Side
    prompt: str
    created_at: datetime


def _refusal(
    conn: Connection, annotator_id: int, comparison_id: int, settings: AnnotateConfig, now: datetime
):
    """Why this annotator may not decide this pair now (None: they may). Runs inside the write transaction
    that then stores the decision, with the pair row locked on PostgreSQL, so the counts cannot move."""
    pair = {"annotator": annotator_id, "comparison": comparison_id, "now": now}
    purpose = conn.execute(_SQL_PAIR_PURPOSE, pair).scalar_one_or_none()
    if purpose is None:
        raise PrefloopError(f"comparison id {comparison_id} does not exist")
    if conn.execute(_SQL_MY_CURRENT, pair).first() is not None:
        return f"pair {comparison_id} is already decided by this annotator; change it through undo"
    own = conn.execute(_SQL_MY_LIVE_LEASE, pair).first()
    if own is not None and own.comparison_id == comparison_id:
        return None
    if own is not None:
        return f"pair {comparison_id} is not the one on screen: this annotator's pair is {own.comparison_id}"
    overlap = overlap_for(Purpose(purpose), settings)
    if conn.execute(_SQL_TAKEN, pair).scalar_one() >= overlap:
        return f"pair {comparison_id} has its {overlap} judgment(s) or live leases already; the lease expired"
    return None


def _checked_strength(strength: Strength | int | None, choice: Choice) -> int | None:
    if strength is None:
        return None
    if choice not in (Choice.a, Choice.b):
        raise PrefloopError(f"strength={strength}: only an A or B choice has a strength, not {choice.value}")
    try:
        return int(Strength(strength))
    except ValueError:
        allowed = ", ".join(f"{s.value} ({s.name})" for s in Strength)
        raise PrefloopError(f"strength={strength!r}: expected one of {allowed}") from None


def record_judgment(
    engine: Engine,
    annotator_id: int,
    comparison_id: int,
    choice: Choice | str,
    *,
    left: Side,
    settings: AnnotateConfig,
    ms_to_decide: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
    strength: Strength | int | None = None,
) -> Judgment:
    """Store a decision (a/b in comparison terms) on the pair leased to the annotator, and release it.

    Raises ``DecisionRefused`` (storing nothing) for a pair they already decided (an earlier decision
    changes only through ``undo_last``), for a pair other than the one leased to them, and, once their
    lease expired, for a pair whose overlap is now met by others' decisions and live leases. A decision
    arriving after its lease expired is kept while the pair still has room: the work was done.

    ``strength`` (graded choices, ``GRADED_SCALE``) says how much better the chosen answer is; it goes
    with an a/b choice only and is stored beside it, so everything that reads ``choice`` is unchanged.
    """
    choice = Choice(choice)
    if left not in ("a", "b"):
        raise PrefloopError(f"left={left!r}: expected 'a' or 'b' (which candidate was shown on the left)")
    if ms_to_decide is not None and ms_to_decide < 0:
        raise PrefloopError(f"ms_to_decide={ms_to_decide}: must be >= 0")
    strength = _checked_strength(strength, choice)
    now = now or utcnow()
    pair = {"annotator": annotator_id, "comparison": comparison_id}
    with _write_scope(engine) as session:
        conn = session.connection()
        _lock_annotator(conn, annotator_id)
        if engine.dialect.name == "postgresql":
            conn.execute(_SQL_LOCK_PAIR_WAIT, pair)  # two late decisions on one pair count one at a time
        refusal = _refusal(conn, annotator_id, comparison_id, settings, now)
        if refusal is not None:
            raise DecisionRefused(refusal)
        conn.execute(_SQL_DROP_LEASE, pair)
        judgment = Judgment(
            comparison_id=comparison_id,
            annotator_id=annotator_id,
            choice=choice,
            left=left,
            ms_to_decide=ms_to_decide,
            note=_clean_note(note),
            strength=strength,
            created_at=now,
        )
        session.add(judgment)
        session.flush()
        return judgment


def _undoable(
    session: Session, annotator_id: int, settings: AnnotateConfig, now: datetime
) -> Undoable | None:
    """The annotator's latest decision, if it is still current and younger than ``undo_seconds``:
    undo reaches back one decision, so a run of undos cannot unpick a session's work."""
    latest = select(func.max(Judgment.id)).where(Judgment.annotator_id == annotator_id).scalar_subquery()
    row = session.exec(
        select(
            Judgment.id,
            Judgment.comparison_id,
            Judgment.choice,
            Judgment.left,
            Judgment.created_at,
            Prompt.text,
        )
        .join(Comparison, Comparison.id == Judgment.comparison_id)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        .where(
            Judgment.id == latest,
            current(),
            Judgment.created_at > now - timedelta(seconds=settings.undo_seconds),
        )
    ).first()
    if row is None:
        return None
    return Undoable(row.id, row.comparison_id, Choice(row.choice), row.left, row.text, row.created_at)


def undoable(
    engine: Engine, annotator_id: int, settings: AnnotateConfig, *, now: datetime | None = None
) -> Undoable | None:
    """What ``undo_last`` would withdraw right now (None: nothing)."""
    with session_scope(engine) as session:
        return _undoable(session, annotator_id, settings, now or utcnow())


def undo_last(
    engine: Engine,
    annotator_id: int,
    settings: AnnotateConfig,
    *,
    expected: int | None = None,
    now: datetime | None = None,
) -> Judgment | None:
    """Withdraw the annotator's latest decision (kept as history) if ``undoable`` allows it, and lease its
    pair back to them, so ``next_pair`` shows it again; the pair they were looking at returns to the queue.

    ``expected`` is the judgment id the page showed as "what will be undone": anything else is refused.
    """
    now = now or utcnow()
    with _write_scope(engine) as session:
        _lock_annotator(session.connection(), annotator_id)
        target = _undoable(session, annotator_id, settings, now)
        if target is None or (expected is not None and target.judgment_id != expected):
            return None
        last = session.get(Judgment, target.judgment_id)
        last.superseded_at = now
        session.add(last)
        session.exec(delete(Lease).where(Lease.annotator_id == annotator_id))
        session.add(
            Lease(
                comparison_id=last.comparison_id,
                annotator_id=annotator_id,
                expires_at=now + timedelta(seconds=settings.lease_seconds),
            )
        )
        session.flush()
        return last


@dataclass(frozen=True)
class Decision:
    """One of an annotator's current decisions, as "review your work" lists it."""

    judgment_id: int
    comparison_id: int
    prompt: str
    subject: str | None  # the template's raw input (the video idea), when there is one
    choice: Choice
    left: Side
    strength: int | None
    note: str | None
    created_at: datetime


def recent_decisions(engine: Engine, annotator_id: int, limit: int = 50) -> list[Decision]:
    """The annotator's current decisions, newest first (withdrawn ones are not listed)."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(
                Judgment.id,
                Judgment.comparison_id,
                Prompt.text,
                Prompt.raw,
                Prompt.template,
                Judgment.choice,
                Judgment.left,
                Judgment.strength,
                Judgment.note,
                Judgment.created_at,
            )
            .join(Comparison, Comparison.id == Judgment.comparison_id)
            .join(Prompt, Prompt.id == Comparison.prompt_id)
            .where(_current(annotator_id))
            .order_by(Judgment.id.desc())
            .limit(limit)
        ).all()
    return [
        Decision(jid, cid, text, raw if template else None, Choice(choice), left, strength, note, at)
        for jid, cid, text, raw, template, choice, left, strength, note, at in rows
    ]


def _progress_statement():
    """The page's counts in one statement (one round trip per key press instead of four): per pair, whether
    it is in the current round (the newest round that has pairs), how many decisions and others' live
    leases it holds and whether this annotator judged it; then the sums."""
    annotator, now = bindparam("annotator"), bindparam("now")
    wanted = case(
        (Comparison.purpose == Purpose.eval, bindparam("overlap_eval")), else_=bindparam("overlap_train")
    )
    newest_round = select(func.max(Comparison.round_id)).correlate(None).scalar_subquery()
    mine = select(func.count(Judgment.id)).where(Judgment.comparison_id == Comparison.id, _current(annotator))
    pairs = select(
        Comparison.round_id,
        (func.coalesce(Comparison.round_id, -1) == func.coalesce(newest_round, -1)).label("in_round"),
        wanted.label("wanted"),
        _decisions_on(Comparison.id).label("decisions"),
        _live_leases_on(Comparison.id, now, annotator).label("others"),
        mine.scalar_subquery().label("judged"),
        mine.where(Judgment.choice != Choice.skip).scalar_subquery().label("decided"),
    ).subquery("pairs")
    count_if = lambda cond: func.coalesce(func.sum(case((cond, 1), else_=0)), 0)  # noqa: E731
    c = pairs.c
    return select(
        newest_round,
        count_if(c.in_round),
        count_if(and_(c.in_round, c.decisions >= c.wanted)),
        func.coalesce(func.sum(case((c.in_round, c.decided), else_=0)), 0),
        count_if(and_(c.judged == 0, c.decisions + c.others < c.wanted)),
        count_if(and_(c.judged == 0, c.decisions < c.wanted, c.decisions + c.others >= c.wanted)),
    ).select_from(pairs)


_SQL_PROGRESS = _progress_statement()


def progress(
    engine: Engine, annotator_id: int, settings: AnnotateConfig, *, now: datetime | None = None
) -> Progress:
    """The annotator's decisions and open pairs, and the team's done/total pairs in the current round
    (against each pair's overlap)."""
    params = {
        "annotator": annotator_id,
        "now": now or utcnow(),
        "overlap_eval": settings.overlap_eval,
        "overlap_train": settings.overlap_train,
    }
    with session_scope(engine) as session:
        round_id, total, done, mine, left, held = session.connection().execute(_SQL_PROGRESS, params).one()
    return Progress(round_id, int(done), int(total), int(mine), int(left), int(held))


__all__ = [
    "GRADED_SCALE",
    "Assigned",
    "Decision",
    "DecisionRefused",
    "Progress",
    "Undoable",
    "left_side",
    "next_pair",
    "open_pair_count",
    "overlap_for",
    "progress",
    "recent_decisions",
    "record_judgment",
    "side_to_choice",
    "undo_last",
    "undoable",
]
