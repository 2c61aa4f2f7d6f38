"""Assignment rules on a real SQLite file and a real PostgreSQL server (the ``any_engine`` fixture)."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
import types
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from core.config import AnnotateConfig
from core.errors import PrefloopError
from labelling.assignment import (
    DecisionRefused,
    Progress,
    left_side,
    next_pair,
    progress,
    record_judgment,
    side_to_choice,
    undo_last,
    undoable,
)
from storage.db import make_engine, session_scope
from storage.models import Candidate, Choice, Comparison, Judgment, Lease, Purpose, utcnow
from testkit.annotate_seed import add_annotator, seed_pairs

SETTINGS = AnnotateConfig(overlap_train=1, overlap_eval=2, eval_share=0.25, lease_seconds=300)


def current_judgments(engine) -> list[Judgment]:
    with session_scope(engine) as session:
        return list(session.exec(select(Judgment).where(Judgment.superseded_at.is_(None))))


def test_reload_returns_the_same_pair_in_the_same_order(any_engine):
    seed_pairs(any_engine, train=5)
    ann = add_annotator(any_engine, "ann")
    first = next_pair(any_engine, ann, SETTINGS)
    again = next_pair(any_engine, ann, SETTINGS)
    assert first is not None and again is not None
    assert again.comparison_id == first.comparison_id
    assert (again.left, again.left_text, again.right_text) == (first.left, first.left_text, first.right_text)
    assert again.left == left_side(ann, first.comparison_id)


def test_train_pairs_are_served_in_the_selections_rank_order(any_engine):
    """The first N labels of a round are the N pairs the selection ranked first; unranked ones come last."""
    ids = seed_pairs(any_engine, train=8)
    ranks = {ids[5]: 0, ids[2]: 1, ids[7]: 2, ids[0]: 3}  # ids[1], 3, 4, 6: unranked (an import, say)
    with session_scope(any_engine, write=True) as session:
        for comparison_id, rank in ranks.items():
            session.get(Comparison, comparison_id).queue_rank = rank
    ann = add_annotator(any_engine, "ranked")
    served = []
    while (pair := next_pair(any_engine, ann, SETTINGS)) is not None:
        served.append(pair.comparison_id)
        record_judgment(any_engine, ann, pair.comparison_id, Choice.a, left=pair.left, settings=SETTINGS)
    assert served[:4] == [ids[5], ids[2], ids[7], ids[0]]
    assert sorted(served[4:]) == [ids[1], ids[3], ids[4], ids[6]]


def test_left_text_is_the_candidate_named_by_left(any_engine):
    seed_pairs(any_engine, train=12)
    anns = [add_annotator(any_engine, f"a{i}") for i in range(6)]
    seen_sides = set()
    for ann in anns:
        got = next_pair(any_engine, ann, SETTINGS)
        with session_scope(any_engine) as session:
            comp = session.get(Comparison, got.comparison_id)
            a_text = session.get(Candidate, comp.candidate_a_id).text
            b_text = session.get(Candidate, comp.candidate_b_id).text
        expected = (a_text, b_text) if got.left == "a" else (b_text, a_text)
        assert (got.left_text, got.right_text) == expected
        seen_sides.add(got.left)
    assert seen_sides == {"a", "b"}, "left/right must be randomised across (annotator, pair)"


def test_side_to_choice_maps_display_to_comparison_terms():
    assert side_to_choice("left", "a") == Choice.a
    assert side_to_choice("right", "a") == Choice.b
    assert side_to_choice("left", "b") == Choice.b
    assert side_to_choice("right", "b") == Choice.a


def test_overlap_one_train_pair_goes_to_one_annotator_and_never_twice(any_engine):
    (only,) = seed_pairs(any_engine, train=1)
    ann, other = add_annotator(any_engine, "ann"), add_annotator(any_engine, "other")
    got = next_pair(any_engine, ann, SETTINGS)
    assert got.comparison_id == only
    assert next_pair(any_engine, other, SETTINGS) is None, "leased pair must not go beyond its overlap"
    record_judgment(any_engine, ann, only, Choice.a, left=got.left, settings=SETTINGS, ms_to_decide=1200)
    assert next_pair(any_engine, ann, SETTINGS) is None, "an annotator never gets a pair twice"
    assert next_pair(any_engine, other, SETTINGS) is None, "a full pair is not served again"


def test_eval_pairs_get_two_annotators(any_engine):
    (pair,) = seed_pairs(any_engine, train=0, eval=1)
    anns = [add_annotator(any_engine, n) for n in ("x", "y", "z")]
    assert next_pair(any_engine, anns[0], SETTINGS).comparison_id == pair
    assert next_pair(any_engine, anns[1], SETTINGS).comparison_id == pair
    assert next_pair(any_engine, anns[2], SETTINGS) is None


def test_expired_lease_frees_the_pair(any_engine):
    (pair,) = seed_pairs(any_engine, train=1)
    ann, other = add_annotator(any_engine, "ann"), add_annotator(any_engine, "other")
    t0 = utcnow()
    assert next_pair(any_engine, ann, SETTINGS, now=t0).comparison_id == pair
    assert next_pair(any_engine, other, SETTINGS, now=t0 + timedelta(seconds=299)) is None
    later = t0 + timedelta(seconds=SETTINGS.lease_seconds + 1)
    assert next_pair(any_engine, other, SETTINGS, now=later).comparison_id == pair


def test_skip_returns_the_pair_to_others_only(any_engine):
    (pair,) = seed_pairs(any_engine, train=1)
    ann, other = add_annotator(any_engine, "ann"), add_annotator(any_engine, "other")
    got = next_pair(any_engine, ann, SETTINGS)
    record_judgment(any_engine, ann, pair, Choice.skip, left=got.left, settings=SETTINGS, ms_to_decide=300)
    assert next_pair(any_engine, ann, SETTINGS) is None
    assert next_pair(any_engine, other, SETTINGS).comparison_id == pair


def test_eval_pairs_are_interleaved_at_the_configured_share(any_engine):
    seed_pairs(any_engine, train=60, eval=60)
    ann = add_annotator(any_engine, "ann")
    purposes = []
    for _ in range(60):
        got = next_pair(any_engine, ann, SETTINGS)
        with session_scope(any_engine) as session:
            purposes.append(session.get(Comparison, got.comparison_id).purpose)
        record_judgment(any_engine, ann, got.comparison_id, Choice.tie, left=got.left, settings=SETTINGS)
    n_eval = purposes.count(Purpose.eval)
    assert 5 <= n_eval <= 26, f"{n_eval} of 60 eval with eval_share 0.25"
    first_eval = purposes.index(Purpose.eval)
    assert Purpose.train in purposes[first_eval:], "eval pairs are mixed in, not served as a block"


def test_eval_pairs_still_served_when_train_is_exhausted(any_engine):
    seed_pairs(any_engine, train=1, eval=1)
    ann = add_annotator(any_engine, "ann")
    never_eval = SETTINGS.model_copy(update={"eval_share": 0.0})
    for _ in range(2):
        got = next_pair(any_engine, ann, never_eval)
        record_judgment(any_engine, ann, got.comparison_id, Choice.a, left=got.left, settings=SETTINGS)
    with session_scope(any_engine) as session:
        done = {session.get(Comparison, j.comparison_id).purpose for j in current_judgments(any_engine)}
    assert done == {Purpose.train, Purpose.eval}


def test_an_earlier_decision_changes_only_through_undo(any_engine):
    (pair,) = seed_pairs(any_engine, train=1)
    ann = add_annotator(any_engine, "ann")
    got = next_pair(any_engine, ann, SETTINGS)
    record_judgment(any_engine, ann, pair, Choice.a, left=got.left, settings=SETTINGS, note="first\nthought")
    with pytest.raises(DecisionRefused, match="already decided"):
        record_judgment(any_engine, ann, pair, Choice.b, left=got.left, settings=SETTINGS)
    assert undo_last(any_engine, ann, SETTINGS).comparison_id == pair
    again = next_pair(any_engine, ann, SETTINGS)
    second = record_judgment(any_engine, ann, pair, Choice.tie, left=again.left, settings=SETTINGS, note="  ")
    with session_scope(any_engine) as session:
        rows = list(session.exec(select(Judgment).order_by(Judgment.id)))
    assert [r.choice for r in rows] == [Choice.a, Choice.tie]
    assert rows[0].superseded_at is not None and rows[1].superseded_at is None
    assert rows[0].note == "first thought", "a note is one line"
    assert second.note is None and second.left == got.left


def test_a_decision_must_be_on_the_pair_leased_to_the_annotator(any_engine):
    first, second = seed_pairs(any_engine, train=2)
    ann = add_annotator(any_engine, "ann")
    got = next_pair(any_engine, ann, SETTINGS)
    other = second if got.comparison_id == first else first
    with pytest.raises(DecisionRefused, match=f"pair {other} is not the one on screen"):
        record_judgment(any_engine, ann, other, Choice.a, left="a", settings=SETTINGS)
    assert current_judgments(any_engine) == []


def test_overlap_is_never_exceeded_once_a_lease_has_expired(any_engine):
    """A's lease runs out, B is handed the pair: A's late decision is refused while B holds it and after B
    decided, and one with no lease at all is refused too (the audit stored 2, then 3, at overlap 1)."""
    (pair,) = seed_pairs(any_engine, train=1)
    a, b, c = (add_annotator(any_engine, name) for name in ("a", "b", "c"))
    long_ago = utcnow() - timedelta(seconds=SETTINGS.lease_seconds + 5)
    late = next_pair(any_engine, a, SETTINGS, now=long_ago)
    assert next_pair(any_engine, b, SETTINGS).comparison_id == pair, "an expired lease frees the pair"
    with pytest.raises(DecisionRefused, match="lease expired"):
        record_judgment(any_engine, a, pair, Choice.a, left=late.left, settings=SETTINGS)
    record_judgment(any_engine, b, pair, Choice.b, left=left_side(b, pair), settings=SETTINGS)
    for who in (a, c):
        with pytest.raises(DecisionRefused, match="lease expired"):
            record_judgment(any_engine, who, pair, Choice.a, left="a", settings=SETTINGS)
    assert [(j.annotator_id, j.choice) for j in current_judgments(any_engine)] == [(b, Choice.b)]


def test_a_late_decision_is_kept_while_the_pair_still_has_room(any_engine):
    (pair,) = seed_pairs(any_engine, train=1)
    ann = add_annotator(any_engine, "ann")
    late = next_pair(any_engine, ann, SETTINGS, now=utcnow() - timedelta(seconds=SETTINGS.lease_seconds + 5))
    record_judgment(any_engine, ann, pair, Choice.a, left=late.left, settings=SETTINGS)
    assert len(current_judgments(any_engine)) == 1


def test_late_decisions_racing_for_one_slot_store_exactly_one(any_engine):
    """Eight annotators whose leases all expired decide the same overlap-1 pair at the same moment."""
    (pair,) = seed_pairs(any_engine, train=1)
    people = [add_annotator(any_engine, f"p{i}") for i in range(8)]
    start, outcomes = threading.Barrier(len(people)), []

    def decide(who: int) -> None:
        start.wait()
        try:
            record_judgment(any_engine, who, pair, Choice.a, left="a", settings=SETTINGS)
            outcomes.append("stored")
        except DecisionRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=decide, args=(who,)) for who in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["stored"]
    assert len(current_judgments(any_engine)) == 1


def test_undo_reaches_back_one_recent_decision_and_says_which(any_engine):
    seed_pairs(any_engine, train=8)
    ann = add_annotator(any_engine, "ann")
    made = []
    for _ in range(6):
        got = next_pair(any_engine, ann, SETTINGS)
        made.append(
            record_judgment(any_engine, ann, got.comparison_id, Choice.a, left=got.left, settings=SETTINGS)
        )
    shown = undoable(any_engine, ann, SETTINGS)
    assert (shown.judgment_id, shown.comparison_id) == (made[-1].id, made[-1].comparison_id)
    assert shown.prompt.startswith("Given the idea") and shown.choice == Choice.a
    assert undo_last(any_engine, ann, SETTINGS, expected=made[-2].id) is None, "only what the page showed"
    assert undo_last(any_engine, ann, SETTINGS, expected=shown.judgment_id).id == made[-1].id
    assert undoable(any_engine, ann, SETTINGS) is None
    assert [undo_last(any_engine, ann, SETTINGS) for _ in range(5)] == [None] * 5, "six undos withdrew six"
    assert len(current_judgments(any_engine)) == 5
    later = utcnow() + timedelta(seconds=SETTINGS.undo_seconds + 1)
    got = next_pair(any_engine, ann, SETTINGS)
    record_judgment(any_engine, ann, got.comparison_id, Choice.b, left=got.left, settings=SETTINGS)
    assert undo_last(any_engine, ann, SETTINGS, now=later) is None, "too old to undo"


def test_undo_brings_the_pair_back_and_releases_the_open_one(any_engine):
    seed_pairs(any_engine, train=3)
    ann, other = add_annotator(any_engine, "ann"), add_annotator(any_engine, "other")
    assert undo_last(any_engine, ann, SETTINGS) is None
    first = next_pair(any_engine, ann, SETTINGS)
    record_judgment(any_engine, ann, first.comparison_id, Choice.b, left=first.left, settings=SETTINGS)
    shown = next_pair(any_engine, ann, SETTINGS)
    undone = undo_last(any_engine, ann, SETTINGS)
    assert undone.comparison_id == first.comparison_id and undone.superseded_at is not None
    back = next_pair(any_engine, ann, SETTINGS)
    assert back.comparison_id == first.comparison_id and back.left == first.left
    # the pair shown before the undo is free again for someone else
    assert next_pair(any_engine, other, SETTINGS).comparison_id == shown.comparison_id
    assert current_judgments(any_engine) == []


def test_progress_counts_mine_what_is_left_for_me_and_the_team(any_engine):
    seed_pairs(any_engine, train=2, round_id=0)
    seed_pairs(any_engine, train=3, eval=1, round_id=1)
    ann, other = add_annotator(any_engine, "ann"), add_annotator(any_engine, "other")
    assert progress(any_engine, ann, SETTINGS) == progress(any_engine, ann, SETTINGS)
    start = progress(any_engine, ann, SETTINGS)
    assert start == Progress(round_id=1, done=0, total=4, mine=0, left_for_me=6, held_by_others=0)
    for _ in range(4):
        got = next_pair(any_engine, ann, SETTINGS)
        assert got.round_id == 1, "the newest round is served first"
        record_judgment(any_engine, ann, got.comparison_id, Choice.a, left=got.left, settings=SETTINGS)
    got = next_pair(any_engine, ann, SETTINGS)
    record_judgment(any_engine, ann, got.comparison_id, Choice.skip, left=got.left, settings=SETTINGS)
    mine = progress(any_engine, ann, SETTINGS)
    assert (mine.done, mine.total, mine.mine) == (3, 4, 4), "the eval pair wants 2; skips don't count"
    assert mine.left_for_me == 1, "the skipped pair is not offered to them again; one round-0 pair is"
    got = next_pair(any_engine, other, SETTINGS.model_copy(update={"eval_share": 1.0}))
    record_judgment(any_engine, other, got.comparison_id, Choice.b, left=got.left, settings=SETTINGS)
    assert progress(any_engine, other, SETTINGS).done == 4
    last = next_pair(any_engine, ann, SETTINGS)
    with session_scope(any_engine, write=True) as session:  # the other holds ann's last open pair now
        session.exec(
            update(Lease).where(Lease.comparison_id == last.comparison_id).values(annotator_id=other)
        )
    held = progress(any_engine, ann, SETTINGS)
    assert (held.left_for_me, held.held_by_others) == (0, 1), "the last pair is someone else's lease"
    assert progress(any_engine, other, SETTINGS).left_for_me == 2, "their lease and ann's skip"


def test_bad_input_is_refused(any_engine):
    (pair,) = seed_pairs(any_engine, train=1)
    ann = add_annotator(any_engine, "ann")
    with pytest.raises(PrefloopError, match="annotator id 999"):
        next_pair(any_engine, 999, SETTINGS)
    with pytest.raises(PrefloopError, match="left="):
        record_judgment(any_engine, ann, pair, Choice.a, left="left", settings=SETTINGS)
    with pytest.raises(PrefloopError, match="comparison id 12345"):
        record_judgment(any_engine, ann, 12345, Choice.a, left="a", settings=SETTINGS)
    with pytest.raises(ValueError):
        record_judgment(any_engine, ann, pair, "better", left="a", settings=SETTINGS)
    assert current_judgments(any_engine) == []


def anyone_holds_a_lease(engine) -> bool:
    with session_scope(engine) as session:
        return session.exec(select(Lease).where(Lease.expires_at > utcnow())).first() is not None


def label_until_done(engine, annotator_id: int, settings: AnnotateConfig, errors: list) -> None:
    """Label like a person who keeps going: None only means "nothing open for you right now", since a
    pair leased to someone else comes back if they skip it. Stop once no lease is live and a fresh
    look (after that check) still finds nothing."""
    try:
        while True:
            got = next_pair(engine, annotator_id, settings)
            if got is None and anyone_holds_a_lease(engine):
                time.sleep(0.005)
                continue
            got = got or next_pair(engine, annotator_id, settings)
            if got is None:
                return
            choice = Choice.skip if got.comparison_id % 7 == annotator_id % 7 else Choice.a
            record_judgment(
                engine,
                annotator_id,
                got.comparison_id,
                choice,
                left=got.left,
                settings=settings,
                ms_to_decide=1,
            )
    except Exception as exc:  # surfaced by the assertion in the test
        errors.append(exc)


def assert_fully_and_exactly_covered(engine, pair_ids: list[int], settings: AnnotateConfig) -> None:
    judgments = current_judgments(engine)
    per_annotator_pair = Counter((j.annotator_id, j.comparison_id) for j in judgments)
    assert max(per_annotator_pair.values()) == 1, "an annotator judged a pair twice"
    decisions = Counter(j.comparison_id for j in judgments if j.choice != Choice.skip)
    with session_scope(engine) as session:
        purposes = {c.id: c.purpose for c in session.exec(select(Comparison))}
        assert list(session.exec(select(Lease).where(Lease.expires_at > utcnow()))) == []
    for pair in pair_ids:
        wanted = settings.overlap_eval if purposes[pair] == Purpose.eval else settings.overlap_train
        assert decisions[pair] == wanted, f"pair {pair}: {decisions[pair]} decisions, overlap {wanted}"


def test_concurrent_threads_lose_and_duplicate_nothing(any_engine):
    pair_ids = seed_pairs(any_engine, train=40, eval=20)
    annotators = [add_annotator(any_engine, f"t{i}") for i in range(12)]
    errors: list = []
    threads = [
        threading.Thread(target=label_until_done, args=(any_engine, ann, SETTINGS, errors))
        for ann in annotators
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert_fully_and_exactly_covered(any_engine, pair_ids, SETTINGS)


def _process_worker(url: str, annotator_id: int, queue) -> None:
    engine = make_engine(url)
    errors: list = []
    label_until_done(engine, annotator_id, SETTINGS, errors)
    queue.put([repr(e) for e in errors])


@pytest.mark.slow
def test_concurrent_processes_lose_and_duplicate_nothing(db_url, any_engine, monkeypatch):
    # spawn re-runs the parent's __main__ in each child; an earlier AppTest may have left it pointing
    # at a deleted temp script, so give the children a clean, file-less __main__.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    pair_ids = seed_pairs(any_engine, train=30, eval=10)
    annotators = [add_annotator(any_engine, f"p{i}") for i in range(6)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(db_url, ann, queue)) for ann in annotators]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=600) for _ in procs]  # generous: spawned interpreters on a busy machine
    for p in procs:
        p.join(timeout=30)
    assert reports == [[]] * len(procs)
    assert_fully_and_exactly_covered(any_engine, pair_ids, SETTINGS)
