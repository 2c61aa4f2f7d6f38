"""The Annotate page through ``streamlit.testing.v1.AppTest`` on a real SQLite database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import select
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from annotate_app.context import ENV_SET
from storage.auth import create_annotator
from storage.db import session_scope
from storage.models import Candidate, Choice, Comparison, Judgment, Lease, Strength
from testkit.annotate_seed import add_annotator, app_env, seed_pairs  # noqa: F401  (app_env is a fixture)

MAIN = str(Path(__file__).resolve().parent.parent / "annotate_app" / "main.py")
HEAVY = ("torch", "transformers", "trl", "peft")
pytestmark = pytest.mark.usefixtures("app_env")


def run_app(engine=None) -> AppTest:
    """The app as a browser-less client sees it; with ``engine``, signed in as the annotator "ann"."""
    at = AppTest.from_file(MAIN, default_timeout=20)
    at.run()
    assert not at.exception, at.exception
    if engine is not None:
        with session_scope(engine, write=True) as session:
            token = create_annotator(session, "ann")
        at.text_input(key="signin_name").input("ann")
        at.text_input(key="signin_token").input(token)
        at.button[0].click().run()
        assert not at.exception, at.exception
    return at


def choose(at: AppTest, action: str) -> AppTest:
    """Click a decision button: its key carries the pair's id and the showing's id."""
    (button,) = [b for b in at.button if b.key and b.key.startswith(f"choose_{action}_")]
    return button.click().run()


def undo(at: AppTest) -> AppTest:
    (button,) = [b for b in at.button if b.key and b.key.startswith("undo")]
    return button.click().run()


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def current(engine) -> list[Judgment]:
    with session_scope(engine) as session:
        return list(session.exec(select(Judgment).where(Judgment.superseded_at.is_(None))))


def test_a_pair_shows_as_plain_text_with_progress(engine):
    seed_pairs(engine, train=3, texts=("<script>alert(1)</script>", "![x](http://example.com/x.png)"))
    at = run_app(engine)
    shown = texts(at)
    assert "<script>alert(1)</script>" in shown and "![x](http://example.com/x.png)" in shown
    assert any(t.startswith("Given the idea write a title.") for t in shown), "prompt shown as text"
    assert at.get("progress")[0].proto.text == "you: 0 done · 3 left for you · team 0 / 3 in round 0"
    labels = {b.label: b.proto.shortcut for b in at.button}
    assert labels["A is better"] == "1" and labels["B is better"] == "2" and labels["Skip"] == "0"
    assert labels["Tie"] == "3" and labels["Both bad"] == "4"


def test_no_local_admin_without_a_loopback_host_header(engine):
    """AppTest's client sends no Host header: on a loopback server that is not a local request."""
    seed_pairs(engine, train=1)
    at = run_app()
    assert [t.label for t in at.text_input] == ["Name", "Token"]
    assert not any("local user" in b.label for b in at.button)


def test_choosing_left_records_the_left_candidate_and_shows_the_next_pair(engine):
    seed_pairs(engine, train=2)
    at = run_app(engine)
    left_text, right_text = at.text[1].value, at.text[2].value  # [0] is the prompt (the sidebar's is last)
    at.text_input(key="annotate_note").input("  left is  punchier ")
    choose(at, "left")
    (judgment,) = current(engine)
    with session_scope(engine) as session:
        comp = session.get(Comparison, judgment.comparison_id)
        chosen = session.get(
            Candidate, comp.candidate_a_id if judgment.choice == Choice.a else comp.candidate_b_id
        )
    assert chosen.text == left_text
    assert judgment.left in ("a", "b") and judgment.ms_to_decide is not None and judgment.ms_to_decide >= 0
    assert judgment.note == "left is punchier"
    assert at.text_input(key="annotate_note").value == "", "the note is cleared for the next pair"
    assert {at.text[1].value, at.text[2].value}.isdisjoint({left_text, right_text}), "next pair on screen"
    assert at.get("progress")[0].proto.text == "you: 1 done · 1 left for you · team 1 / 2 in round 0"


def test_tie_both_bad_skip_and_undo(engine):
    seed_pairs(engine, train=4)
    at = run_app(engine)
    for action in ("tie", "both_bad", "skip"):
        choose(at, action)
    assert sorted(j.choice for j in current(engine)) == sorted([Choice.tie, Choice.both_bad, Choice.skip])
    assert any(
        c.value.startswith("Undo withdraws your last decision, “Skipped” on “Given") for c in at.caption
    )
    undo(at)
    assert sorted(j.choice for j in current(engine)) == sorted([Choice.tie, Choice.both_bad])
    assert any("Undone" in c.value for c in at.caption)
    undo_button = next(b for b in at.button if b.key and b.key.startswith("undo"))
    assert undo_button.disabled, "undo reaches back one decision only"
    choose(at, "right")
    assert len(current(engine)) == 3


def test_a_second_press_on_the_same_showing_is_ignored(engine):
    """What a double click does: two clicks on the buttons of one showing of a pair."""
    seed_pairs(engine, train=3)
    at = run_app(engine)
    (stale,) = [b for b in at.button if b.key and b.key.startswith("choose_left_")]
    stale.click().run()
    assert len(current(engine)) == 1
    stale.click().run()  # the replaced button's callback still carries the first pair and showing
    assert len(current(engine)) == 1, "the second click stored a decision on a pair never seen"


def test_nothing_left_says_so(engine):
    at = run_app(engine)
    assert "Nothing left to label" in at.success[0].value


def test_sign_in_is_mandatory_off_localhost(engine):
    st_config.set_option("server.address", "0.0.0.0")
    seed_pairs(engine, train=1)
    at = run_app()
    assert [t.label for t in at.text_input] == ["Name", "Token"]
    assert not at.button or all(b.key != "choose_left" for b in at.button)
    assert not any("local user" in b.label for b in at.button), "no token-free way in off localhost"


FRESH_APP_RUN = """
import sys
from streamlit import config
from streamlit.testing.v1 import AppTest
config.set_option("server.address", "127.0.0.1")
at = AppTest.from_file(sys.argv[1], default_timeout=60)
at.run()
at.text_input(key="signin_name").input("ann")
at.text_input(key="signin_token").input(sys.argv[2])
at.button[0].click().run()
assert not at.exception, at.exception
assert any(b.key.startswith("choose_left_") for b in at.button if b.key), "no pair rendered"
print(",".join(m for m in sys.argv[3:] if m in sys.modules))
"""


def test_annotate_path_does_not_import_the_training_stack(engine):
    """In a fresh interpreter, so other tests' imports cannot hide (or skip) the check."""
    seed_pairs(engine, train=1)
    with session_scope(engine, write=True) as session:
        token = create_annotator(session, "ann")
    done = subprocess.run(
        [sys.executable, "-c", FRESH_APP_RUN, MAIN, token, *HEAVY],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1:] in ([], [""]), f"imported: {done.stdout.strip()}"


def test_graded_choices_store_the_strength_beside_the_choice(engine, monkeypatch):
    monkeypatch.setenv(ENV_SET, json.dumps(["annotate.eval_share=0", "annotate.graded_choices=true"]))
    seed_pairs(engine, train=2)
    at = run_app(engine)
    labels = [b.label for b in at.button if b.key and b.key.startswith("choose_")]
    assert labels == [
        "A much better",
        "A slightly better",
        "Tie",
        "B slightly better",
        "B much better",
        "Both bad",
        "Skip",
    ]
    right_text = at.text[2].value
    choose(at, "right_much")
    (judgment,) = current(engine)
    assert judgment.strength == Strength.much
    with session_scope(engine) as session:
        comp = session.get(Comparison, judgment.comparison_id)
        chosen = comp.candidate_a_id if judgment.choice == Choice.a else comp.candidate_b_id
        assert session.get(Candidate, chosen).text == right_text


def test_the_subject_of_a_templated_prompt_stands_out_and_the_full_prompt_is_one_click_away(engine):
    seed_pairs(engine, train=1, template="youtube-title")
    at = run_app(engine)
    assert at.text[0].value == "Idea 0-0: *bold* train", "the video idea first, as plain text"
    assert "Video idea" in [c.value for c in at.caption]
    (full,) = [e for e in at.expander if e.label == "Full prompt"]
    assert any(t.value.startswith("Given the YouTube video idea") for t in full.text)


def test_an_empty_queue_says_when_others_hold_the_last_pairs(engine):
    seed_pairs(engine, train=1)
    at = run_app(engine)  # ann leases the only pair...
    other = add_annotator(engine, "other")
    with session_scope(engine, write=True) as session:  # ...and it is someone else's now
        session.exec(update(Lease).values(annotator_id=other))
    at.run()
    assert "being labelled by others" in at.info[0].value


@pytest.mark.parametrize(
    ("name", "token", "message"),
    [
        ("", "x", "Enter your name"),
        ("ann", "", "Enter your token"),
        ("ann", "wrong", "Unknown name or wrong token"),
    ],
)
def test_a_missing_name_a_missing_token_and_a_wrong_token_say_different_things(engine, name, token, message):
    with session_scope(engine, write=True) as session:
        create_annotator(session, "ann")
    at = run_app()
    at.text_input(key="signin_name").input(name)
    at.text_input(key="signin_token").input(token)
    at.button[0].click().run()
    (error,) = at.error
    assert error.value.startswith(message), error.value
